"""``python -m wscodec``: the serve and connect commands, run as real processes on loopback."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _silent_client import SilentClient
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

import wscodec
from wscodec.__main__ import main

# The subprocesses run the same wscodec as this test process (an installed build in CI, else src/).
WSCODEC_ROOT = str(Path(wscodec.__file__).resolve().parents[1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = WSCODEC_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class CliServer:
    """``python -m wscodec serve --port 0 ARGS`` until it prints its address."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wscodec", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
        )
        self.url = self._wait_listening(20.0)
        self.port = int(self.url.rsplit(":", 1)[1])
        self.http = f"http://127.0.0.1:{self.port}"

    def _wait_listening(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline and b"\n" not in buf:
                if sel.select(max(0.0, deadline - time.monotonic())):
                    chunk = os.read(self.proc.stdout.fileno(), 4096)
                    if not chunk:
                        break
                    buf += chunk
        line = buf.split(b"\n", 1)[0].decode()
        if not line.startswith("listening on ws://"):
            self.stop()
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            pytest.fail(f"server did not start: {buf!r}\n{err[-3000:]}")
        return line.split(" ")[-1]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return self.proc.returncode


@contextlib.contextmanager
def cli_server(*args: str) -> Iterator[CliServer]:
    server = CliServer(*args)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def echo_server() -> Iterator[CliServer]:
    with cli_server() as server:
        yield server


@pytest.fixture(scope="module")
def chat_server() -> Iterator[CliServer]:
    """A server with ``--subprotocol``: a client must offer one of them (400 otherwise, as the library)."""
    with cli_server("--subprotocol", "chat", "--subprotocol", "superchat") as server:
        yield server


# --------------------------------------------------------------------------- serve


def test_get_root_returns_demo_page(echo_server: CliServer) -> None:
    with urllib.request.urlopen(echo_server.http + "/", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")
        body = response.read().decode()
    assert "<html" in body
    assert "new WebSocket(" in body
    assert 'binaryType = "arraybuffer"' in body
    assert 'id="result"' in body


def test_get_unknown_path_is_404(echo_server: CliServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(echo_server.http + "/nope", timeout=10)
    assert info.value.code == 404
    info.value.close()


async def test_echo_with_our_client(echo_server: CliServer) -> None:
    from wscodec.asyncio import connect

    async with connect(echo_server.url + "/", open_timeout=10) as ws:
        await ws.send("hello ✓")
        assert await ws.recv() == "hello ✓"
        await ws.send(b"\x00\x01\xff")
        assert await ws.recv() == b"\x00\x01\xff"
        big = "x" * 100_000
        await ws.send(big)
        assert await ws.recv() == big
        assert ws.protocol in (None, "")  # nothing offered, nothing chosen
        assert "permessage-deflate" in str(ws.extensions)


def test_echo_with_websockets_client(echo_server: CliServer) -> None:
    with ws_connect(echo_server.url, open_timeout=10) as ws:
        ws.send("bonjour")
        assert ws.recv(timeout=10) == "bonjour"
        ws.send(b"\xde\xad\xbe\xef")
        assert ws.recv(timeout=10) == b"\xde\xad\xbe\xef"
        assert "permessage-deflate" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")


def test_subprotocol_negotiated(chat_server: CliServer) -> None:
    with ws_connect(chat_server.url, subprotocols=["superchat"], open_timeout=10) as ws:
        assert ws.subprotocol == "superchat"
    with ws_connect(chat_server.url, subprotocols=["other", "chat"], open_timeout=10) as ws:
        assert ws.subprotocol == "chat"
    for offered in (None, ["other"]):
        with pytest.raises(InvalidStatus) as info, ws_connect(chat_server.url, subprotocols=offered, open_timeout=10):
            pass
        assert info.value.response.status_code == 400


def test_chat_broadcasts_to_every_client() -> None:
    with (
        cli_server("--chat") as server,
        ws_connect(server.url, open_timeout=10) as alice,
        ws_connect(server.url, open_timeout=10) as bob,
    ):
        alice.send("hi from alice")
        bob.send(b"\x01\x02")
        assert _drain_until(alice, {"hi from alice", b"\x01\x02"})
        assert _drain_until(bob, {"hi from alice", b"\x01\x02"})


@pytest.mark.parametrize(("max_size", "line", "delivered"), [("4000000", 1_500_000, True), ("0", 1_500_000, True),
                                                           ("40000000", 33_000_000, False)])  # fmt: skip
def test_chat_through_redis_takes_lines_up_to_max_size_and_8_mib(max_size: str, line: int, delivered: bool) -> None:
    """serve --chat --broker redis://... with --max-size above the Redis broker's own bound (1 MiB), or 0: a
    line the server accepts reaches every client, up to 8 MiB (past that Redis would disconnect the room's
    subscribers). It raised ValueError from publish(), which closed the sender with 1011. A longer line is
    dropped; the sender stays connected."""
    import redis as redis_py
    from _redis_server import RedisServer, redis_server_path

    redis = RedisServer(redis_server_path())
    redis.start()
    try:
        with (
            contextlib.ExitStack() as stack,
            cli_server("--chat", "--broker", redis.url, "--max-size", max_size) as server,
            ws_connect(server.url, open_timeout=10, max_size=None) as alice,
            ws_connect(server.url, open_timeout=10, max_size=None) as bob,
        ):
            admin = stack.enter_context(redis_py.Redis.from_url(redis.url))
            connections = admin.info("stats")["total_connections_received"]
            big = "x" * line
            alice.send(big)
            if delivered:
                assert bob.recv(timeout=10) == big
                assert alice.recv(timeout=10) == big
            # (After the big line is read: sent with it, the small one found it still buffered, over the
            # slow-consumer limit, and closed the reader the test had not got to yet with 1008.)
            alice.send("small")
            assert bob.recv(timeout=10) == "small"
            assert alice.recv(timeout=10) == "small"
            # Redis disconnected no subscriber for its output buffer (a 33 MB line made it, and the broker
            # connected again): no connection since the line was sent.
            assert admin.info("stats")["total_connections_received"] == connections
    finally:
        redis.stop()


def _drain_until(ws: object, expected: set[object]) -> bool:
    deadline = time.monotonic() + 10
    missing = set(expected)
    while missing and time.monotonic() < deadline:
        message = ws.recv(timeout=max(0.01, deadline - time.monotonic()))  # type: ignore[attr-defined]
        missing.discard(message)
    return not missing


def test_max_size_enforced_with_1009() -> None:
    with cli_server("--max-size", "1000") as server, ws_connect(server.url, open_timeout=10, max_size=None) as ws:
        ws.send(b"x" * 1000)
        assert ws.recv(timeout=10) == b"x" * 1000
        ws.send(b"x" * 1001)
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1009


def test_max_size_zero_means_unlimited() -> None:
    with cli_server("--max-size", "0") as server, ws_connect(server.url, open_timeout=10, max_size=None) as ws:
        big = os.urandom(3 * 2**20)
        ws.send(big)
        assert ws.recv(timeout=30) == big


@pytest.mark.parametrize("loop", ["uvloop", "asyncio", "auto"])
def test_serve_on_the_chosen_event_loop(loop: str) -> None:
    """``--loop`` picks the event loop the server runs on (its banner says which), and it serves."""
    server = CliServer("--loop", loop)
    try:
        with ws_connect(server.url, open_timeout=10) as ws:
            ws.send("loop")
            assert ws.recv(timeout=10) == "loop"
        server.proc.send_signal(signal.SIGTERM)
        _, err = server.proc.communicate(timeout=15)
    finally:
        server.stop()
    expected = "asyncio" if loop == "asyncio" else "uvloop"  # uvloop is in the test extra
    assert f"echo server on {expected};" in err.decode()
    assert server.proc.returncode == 0


@pytest.mark.parametrize("scaled", [[], ["--workers", "2"]], ids=["single", "workers"])
@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_serve_with_busy_polling(loop: str, scaled: list[str]) -> None:
    """``--busy-poll SECONDS`` serves as usual (in order), and the banner says the loop is kept polling,
    with ``--workers`` too."""
    server = CliServer("--loop", loop, "--busy-poll", "0.0005", *scaled)
    try:
        with ws_connect(server.url, open_timeout=10) as ws:
            for i in range(20):
                ws.send(f"poll {i}")
            assert [ws.recv(timeout=10) for _ in range(20)] == [f"poll {i}" for i in range(20)]
        server.proc.send_signal(signal.SIGTERM)
        _, err = server.proc.communicate(timeout=15)
    finally:
        server.stop()
    assert f"echo server on {loop}, busy-polling 500 us after each read" in err.decode()
    assert server.proc.returncode == 0


def test_serve_with_workers_and_a_missing_uvloop_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--workers 2 --loop uvloop`` without uvloop: one line and status 2, as without ``--workers``."""
    monkeypatch.setitem(sys.modules, "uvloop", None)  # (import uvloop raises ImportError)
    for scaled in ([], ["--workers", "2"]):
        assert main(["serve", "--port", "0", "--loop", "uvloop", *scaled]) == 2
        assert "needs uvloop" in capsys.readouterr().err


@pytest.mark.parametrize("announced", [True, False])
def test_serve_with_workers_stopped_before_it_listens_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], announced: bool
) -> None:
    """The supervisor returns 0 after a stop signal; before its workers listened (nothing announced) that
    was a Ctrl-C while starting, which exits 130 without ``--workers``, and so it does with them."""
    import wscodec.workers

    def run(handler: Any, host: Any, port: Any, *, ready: Any, **options: Any) -> int:
        if announced:
            ready("127.0.0.1", 8765)
        return 0  # what workers.run returns after a signal

    monkeypatch.setattr(wscodec.workers, "run", run)
    assert main(["serve", "--port", "0", "--workers", "2"]) == (0 if announced else 130)
    assert ("listening on ws://127.0.0.1:8765" in capsys.readouterr().out) is announced


def test_no_compression() -> None:
    with cli_server("--no-compression") as server, ws_connect(server.url, open_timeout=10) as ws:
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        ws.send("plain")
        assert ws.recv(timeout=10) == "plain"


def test_sigterm_shuts_down_gracefully() -> None:
    server = CliServer()
    try:
        with ws_connect(server.url, open_timeout=10) as ws:
            ws.send("x")
            assert ws.recv(timeout=10) == "x"
            server.proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=15)
            assert info.value.rcvd is not None  # a Close frame, not a dropped connection
            assert info.value.rcvd.code == 1001  # going away: the server is shutting down
        assert server.proc.wait(15) == 0
    finally:
        server.stop()


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_second_signal_aborts_connections_that_do_not_close(second: signal.Signals) -> None:
    """A client that never answers the server's Close would hold the shutdown for ``close_timeout`` (10 s);
    a second signal (Ctrl-C again) aborts it at once: the client's connection ends, the server says so and
    exits with 130."""
    server = CliServer()
    client = None
    try:
        client = SilentClient(server.port)
        server.proc.send_signal(signal.SIGTERM)
        assert client.close_code() == 1001  # the server's Close, which this client never answers
        server.proc.send_signal(second)
        assert server.proc.wait(8) == 130  # well before close_timeout would have ended it (10 s)
        assert client.ended()
        assert server.proc.stderr is not None
        assert "aborting 1 connections" in server.proc.stderr.read().decode()
    finally:
        if client is not None:
            client.close()
        server.stop()


# --------------------------------------------------------------------------- connect


def _run_connect(url: str, stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wscodec", "connect", url, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )


def test_connect_through_a_pipe_prints_echoes(echo_server: CliServer) -> None:
    out = _run_connect(echo_server.url, "hello\nsecond line ✓\n/binary 0102ff\n/ping\n//slash\n")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "< hello" in lines
    assert "< second line ✓" in lines
    assert "< [binary 3 bytes] 0102ff" in lines
    assert "< /slash" in lines
    assert any(line.startswith("* pong in ") and line.endswith(" ms") for line in lines), out.stdout
    assert "connected" in out.stderr


def test_connect_with_subprotocol_and_header(chat_server: CliServer) -> None:
    out = _run_connect(
        chat_server.url, "x\n", "--subprotocol", "superchat", "--header", "X-Test: 1", "--no-compression"
    )
    assert out.returncode == 0, out.stderr
    assert "< x" in out.stdout.splitlines()
    assert "protocol: superchat" in out.stderr
    assert "extensions: -" in out.stderr


def test_connect_close_command(echo_server: CliServer) -> None:
    out = _run_connect(echo_server.url, "a\n/close 4000 done here\nnever sent\n")
    assert out.returncode == 0, out.stderr
    assert "< a" in out.stdout.splitlines()  # replies pending at /close are printed first
    assert "< never sent" not in out.stdout
    assert "disconnected (4000 done here)" in out.stderr.splitlines()[-1], out.stderr


def _close_stdin() -> None:
    os.close(0)


def test_connect_with_stdin_closed_ends_its_input_at_once(echo_server: CliServer) -> None:
    """``connect URL <&-``: Python's sys.stdin is None; nothing to send, a normal close."""
    out = subprocess.run(
        [sys.executable, "-m", "wscodec", "connect", echo_server.url],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        preexec_fn=_close_stdin,  # after the DEVNULL became fd 0: the child starts with no fd 0
    )
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert "disconnected (1000)" in out.stderr.splitlines()[-1], out.stderr


def test_connect_refused_exits_1() -> None:

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = _run_connect(f"ws://127.0.0.1:{port}/", "")
    assert out.returncode == 1
    assert "could not connect" in out.stderr


def test_bad_header_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["connect", "ws://127.0.0.1:1/", "--header", "no colon"])
    assert info.value.code == 2
    assert "Name: value" in capsys.readouterr().err
