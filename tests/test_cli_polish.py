"""``python -m wscodec``: --version, help on every flag, validated numbers, HEAD and favicon, keepalive and TLS
flags, access lines, escaped output and readline on a terminal. Real processes on loopback."""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _raw_handshake import accept_response
from _system import require_program
from _waiting import until_blocking
from test_cli import CliServer, _env, _run_connect, cli_server
from websockets.sync.client import connect as ws_connect

import wscodec
from wscodec import Connection
from wscodec.__main__ import _escape, _parser, main
from wscodec.events import Closed, CloseReceived, Ping, Response

# --------------------------------------------------------------------------- arguments


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.strip() == f"wscodec {wscodec.__version__} ({wscodec.BACKEND} backend)"


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = _parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("command", ["serve", "connect", "bench"])
def test_every_flag_has_help_and_defaults_are_shown(command: str) -> None:
    parser = _subparsers()[command]
    text = parser.format_help()
    for action in parser._actions:
        assert action.help, f"{command} {action.option_strings or action.dest} has no help"
        worth_showing = action.default not in (None, False, [], argparse.SUPPRESS) and action.nargs != 0
        if action.option_strings and worth_showing:
            assert f"(default: {action.default})" in " ".join(text.split()), (command, action.dest)
    if command != "bench":
        assert "(default: 20.0)" in text  # --ping-interval and --ping-timeout


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--port", "70000"],
        ["serve", "--port", "-1"],
        ["serve", "--port", "http"],
        ["serve", "--max-size", "-5"],
        ["serve", "--ping-interval", "nan"],
        ["serve", "--ping-timeout", "-1"],
        ["connect", "ws://127.0.0.1:1/", "--wait", "-1"],
        ["connect", "ws://127.0.0.1:1/", "--max-size", "1e3"],
        ["serve", "--busy-poll", "50"],
    ],
)
def test_numeric_flags_are_validated_with_one_line(argv: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "wscodec", *argv], capture_output=True, text=True, timeout=60, env=_env()
    )
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert argv[-2] in lines[0] and "error" in lines[0]


def test_port_range_message(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--port", "65536"])
    assert "from 0 to 65535" in capsys.readouterr().err


# --------------------------------------------------------------------------- serve: HTTP side


def _http(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


@pytest.fixture(scope="module")
def server() -> Iterator[CliServer]:
    with cli_server() as running:
        yield running


def test_head_answers_headers_without_body(server: CliServer) -> None:
    get = _http(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head = _http(server.port, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    get_head, _, get_body = get.partition(b"\r\n\r\n")
    head_head, _, head_body = head.partition(b"\r\n\r\n")
    assert head_head.startswith(b"HTTP/1.1 200 ")
    assert head_body == b""
    assert f"Content-Length: {len(get_body)}".encode() in head_head.split(b"\r\n")
    assert b"Content-Type: text/html" in head_head
    assert get_head.split(b"\r\n")[0] == head_head.split(b"\r\n")[0]


def test_favicon_is_204(server: CliServer) -> None:
    response = _http(server.port, b"GET /favicon.ico HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, rest = response.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 204 ")
    assert rest.endswith(b"\r\n\r\n")  # no body
    assert b"content-length" not in rest.lower()


def test_other_methods_are_405(server: CliServer) -> None:
    response = _http(server.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 405 ")
    assert b"Allow: GET, HEAD" in response


# --------------------------------------------------------------------------- serve: keepalive


def _raw_client(port: int) -> tuple[socket.socket, Connection]:
    """A client that answers nothing by itself: its Connection queues pongs, we never send them."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = Connection("client", host=f"127.0.0.1:{port}", path="/")
    sock.sendall(conn.data_to_send())
    events: list[object] = []
    while not any(isinstance(e, Response) for e in events):
        events += conn.receive_data(sock.recv(65536))
    conn.data_to_send()
    return sock, conn


def _events_for(sock: socket.socket, conn: Connection, seconds: float) -> list[object]:
    events: list[object] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not any(isinstance(e, Closed) for e in events):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        events += conn.receive_data(data)
        if not data:
            break
    return events


def test_ping_timeout_closes_a_silent_client_with_1011() -> None:
    with cli_server("--ping-interval", "0.1", "--ping-timeout", "0.3") as running:
        sock, conn = _raw_client(running.port)
        with sock:
            events = _events_for(sock, conn, 20)
    assert any(isinstance(e, Ping) for e in events)
    (close,) = [e for e in events if isinstance(e, CloseReceived)]
    assert close.code == 1011


def test_ping_interval_zero_disables_keepalive() -> None:
    with cli_server("--ping-interval", "0", "--ping-timeout", "0.1") as running:  # 0: no keepalive at all
        sock, conn = _raw_client(running.port)
        with sock:
            events = _events_for(sock, conn, 1.0)  # ten intervals of 0.1 s would have brought pings
        assert events == []


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = require_program("openssl", "openssl")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@contextlib.contextmanager
def _tls_server(cert: Path, key: Path) -> Iterator[int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "wscodec", "serve", "--port", "0", "--tls-cert", str(cert), "--tls-key", str(key)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline().decode() if ready else ""
        assert line.startswith("listening on wss://"), (line, proc.stderr.read() if proc.poll() is not None else "")
        yield int(line.strip().rsplit(":", 1)[1])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_tls_serve_and_connect_with_cafile_or_insecure(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    with _tls_server(cert, key) as port:
        trusted = _run_connect(f"wss://localhost:{port}/", "over tls\n", "--cafile", str(cert))
        assert trusted.returncode == 0, trusted.stderr
        assert "< over tls" in trusted.stdout.splitlines()

        insecure = _run_connect(f"wss://127.0.0.1:{port}/", "anyway\n", "--insecure")  # wrong name, unverified
        assert insecure.returncode == 0, insecure.stderr
        assert "< anyway" in insecure.stdout.splitlines()

        refused = _run_connect(f"wss://localhost:{port}/", "x\n")  # self-signed: not trusted by default
        assert refused.returncode == 1
        assert "could not connect" in refused.stderr and "certificate" in refused.stderr.lower()

        page = _http_tls(port, cert)
        assert page.startswith(b"HTTP/1.1 200 ") and b"new WebSocket(" in page


@pytest.mark.parametrize("content", [None, b"not a certificate\n"])
def test_connect_cafile_errors_name_the_file(content: bytes | None, tmp_path: Path) -> None:
    """A --cafile that is missing or holds no certificate is reported with its name, in one line."""
    cafile = tmp_path / "ca.pem"
    if content is not None:
        cafile.write_bytes(content)
    out = subprocess.run(
        [sys.executable, "-m", "wscodec", "connect", "--cafile", str(cafile), "wss://127.0.0.1:1/"],
        capture_output=True, text=True, timeout=60, env=_env(), stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot load --cafile {cafile}: " in lines[0], out.stderr
    assert ("No such file" in lines[0]) == (content is None)


def _http_tls(port: int, cert: Path) -> bytes:
    import ssl

    context = ssl.create_default_context(cafile=str(cert))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = b""
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            while chunk := sock.recv(65536):
                data += chunk
    return data


SCALED = pytest.mark.parametrize("scaled", [[], ["--workers", "2"], ["--broker", "memory://"]])


@SCALED
def test_tls_file_errors_are_one_line_with_or_without_workers(scaled: list[str], tmp_path: Path) -> None:
    """A usage error (``--tls-key`` alone) exits 2; a certificate that cannot be loaded exits 1 naming the
    file; a port in use exits 1; each in one line, with or without worker processes or a broker."""
    missing = str(tmp_path / "missing.pem")

    def serve(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "wscodec", "serve", *argv, *scaled],
            capture_output=True, text=True, timeout=60, env=_env(),
        )  # fmt: skip

    out = serve("--port", "0", "--tls-key", "k.pem")
    assert out.returncode == 2 and "--tls-key needs --tls-cert" in out.stderr, out.stderr
    out = serve("--port", "0", "--tls-cert", missing)
    assert out.returncode == 1, out.stderr
    assert out.stderr.strip().splitlines()[-1] == f"error: cannot load --tls-cert {missing}: No such file or directory"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        out = serve("--host", "127.0.0.1", "--port", str(busy.getsockname()[1]))
    assert out.returncode == 1 and "address already in use" in out.stderr.splitlines()[-1], out.stderr
    for result in (out,):
        assert "Traceback" not in result.stderr


def test_bench_json_path_is_checked_before_measuring(tmp_path: Path) -> None:
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "wscodec", "bench", "--json", str(tmp_path / "no" / "such" / "dir.json")],
        capture_output=True, text=True, timeout=120, env=_env(),
    )  # fmt: skip
    assert out.returncode == 1 and out.stderr.startswith("error: "), out.stderr
    assert "Traceback" not in out.stderr and "measured" not in out.stderr
    assert time.monotonic() - started < 30


def test_connect_reports_a_bad_command_and_goes_on(echo_server_for_commands: CliServer) -> None:
    """/close with a bad code or reason, and /ping with a payload too long: one note each, the session goes
    on (the next line is echoed) and ends with a clean 1000 at the end of input."""
    stdin = "/close abc\n/close 5000\n/close 1000 " + "x" * 130 + "\n/ping " + "p" * 200 + "\nstill here\n"
    out = _run_connect(echo_server_for_commands.url, stdin)
    assert out.returncode == 0, out.stderr
    assert "< still here" in out.stdout.splitlines()
    notes = [line for line in out.stderr.splitlines() if "cannot" in line]
    assert len(notes) == 4, out.stderr
    assert out.stderr.strip().splitlines()[-1] == "* disconnected (1000)"


@pytest.fixture(scope="module")
def echo_server_for_commands() -> Iterator[CliServer]:
    with cli_server() as server:
        yield server


@contextlib.contextmanager
def _handler_server(handler: Any) -> Iterator[int]:
    """A wscodec asyncio server running ``handler`` on a thread of its own; yields its port."""
    import asyncio
    import threading

    import wscodec.asyncio

    ready = threading.Event()
    port: list[int] = []
    stop: list[Any] = []

    async def run() -> None:
        async with wscodec.asyncio.serve(handler, "127.0.0.1", 0) as server:
            port.append(server.port)
            done = asyncio.Event()
            stop.append((asyncio.get_running_loop(), done))
            ready.set()
            await done.wait()

    thread = threading.Thread(target=asyncio.run, args=(run(),))
    thread.start()
    try:
        assert ready.wait(10)
        yield port[0]
    finally:
        if stop:
            loop, done = stop[0]
            loop.call_soon_threadsafe(done.set)
        thread.join(10)


@pytest.mark.parametrize(("code", "status"), [(1000, 0), (1001, 0), (4000, 0), (1011, 1), (None, 1)])
def test_connect_exit_status_says_how_the_connection_ended(code: int | None, status: int) -> None:
    """0 after a closing handshake that reports no error; 1 after an error code, or when the server
    vanished without one (1006)."""

    async def handler(ws: Any) -> None:
        await ws.recv()
        if code is None:
            ws.transport.abort()
        else:
            await ws.close(code, "bye")

    with _handler_server(handler) as port:
        out = _run_connect(f"ws://127.0.0.1:{port}/", "hello\n", "--wait", "5")
        assert out.returncode == status, out.stderr


def test_connect_exit_status_does_not_depend_on_a_line_being_sent_as_the_server_closes() -> None:
    """A send that meets the server's Close (1000) is not an error of the client's: it still exits 0."""

    async def handler(ws: Any) -> None:
        await ws.close(1000, "bye")

    with _handler_server(handler) as port:
        for _ in range(6):  # the send meets the close about every other time
            out = _run_connect(f"ws://127.0.0.1:{port}/", "hello\n" * 50)
            assert out.returncode == 0, out.stderr
            assert "error" not in out.stderr and "disconnected (1000 bye)" in out.stderr, out.stderr


# --------------------------------------------------------------------------- access lines


_collected: dict[int, str] = {}


def _peek(running: CliServer) -> str:
    assert running.proc.stderr is not None
    text = _collected.get(id(running), "")
    while select.select([running.proc.stderr], [], [], 0)[0]:
        chunk = os.read(running.proc.stderr.fileno(), 65536)
        if not chunk:
            break
        text += chunk.decode(errors="replace")
    _collected[id(running)] = text
    return text


@SCALED
def test_serve_prints_one_access_line_per_connection(scaled: list[str]) -> None:
    running = CliServer(*scaled)
    try:
        with ws_connect(running.url + "/access?x=1", open_timeout=10) as ws:
            ws.send("secret text")
            assert ws.recv(timeout=10) == "secret text"
        _http(running.port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        deadline = time.monotonic() + 10
        while "closed /access" not in _peek(running) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        running.stop()
    text = _collected.pop(id(running), "")
    access = [line for line in text.splitlines() if "closed /access" in line]
    assert len(access) == 1, text
    assert "1000" in access[0] and "received 1 messages" in access[0] and "sent 1 messages" in access[0]
    assert '"GET /nope" 404' in text
    assert "opened" not in text  # one line per connection, not two
    assert "secret text" not in text


@SCALED
def test_serve_refuses_control_characters_in_the_request_line(scaled: list[str]) -> None:
    """The method and path are the client's bytes; written raw to an access line, they would drive the
    operator's terminal. A target with control characters is malformed (RFC 9112): 400 before any hook,
    so it never reaches the access line; the next request is served and logged."""
    running = CliServer(*scaled)
    try:
        answer = _http(running.port, b"GET /\x1b]0;pwned\x07\x1b[2J HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400"), answer
        assert _http(running.port, b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 404")
        keyless = b"GET /keyless HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        assert _http(running.port, keyless).startswith(b"HTTP/1.1 426")  # (no Sec-WebSocket-Version either)
        deadline = time.monotonic() + 10
        while '"GET /keyless" 426' not in _peek(running) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        running.stop()
    text = _collected.pop(id(running), "")
    assert "\x1b" not in text and "\x07" not in text
    assert "pwned" not in text
    assert '"GET /next" 404' in text, text
    assert '"GET /keyless" 426' in text, text  # a refused upgrade has its access line too


@pytest.mark.parametrize(("flag", "expect"), [("-q", False), ("-v", True)])
def test_quiet_and_verbose(flag: str, expect: bool) -> None:
    running = CliServer(flag)
    try:
        with ws_connect(running.url + "/access", open_timeout=10) as ws:
            ws.send("hello")
            assert ws.recv(timeout=10) == "hello"
        deadline = time.monotonic() + (10 if expect else 1)
        while time.monotonic() < deadline and "closed /access" not in _peek(running):
            time.sleep(0.05)
    finally:
        running.stop()
    text = _collected.pop(id(running), "")
    assert ("closed /access" in text) is expect, text
    if expect:
        assert "DEBUG" in text and "> text message of 5" in text
    else:
        assert "INFO" not in text and "DEBUG" not in text


# --------------------------------------------------------------------------- connect: terminal safety


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain ✓ 你好 🎉", "plain ✓ 你好 🎉"),
        ("\x1b[2J\x1b]0;pwned\x07", "\\x1b[2J\\x1b]0;pwned\\x07"),
        ("a\nb\r\tc", "a\\nb\\r\\tc"),
        ("back\\slash", "back\\\\slash"),
        ("\x9b31m \x7f", "\\x9b31m \\x7f"),
        ("abc\u202edcba", "abc\\u202edcba"),
        ("\u061c\u200b\u2028\u2029\ufeff", "\\u061c\\u200b\\u2028\\u2029\\ufeff"),
        ("family \U0001f468\u200d\U0001f469\u200d\U0001f467", "family \U0001f468\u200d\U0001f469\u200d\U0001f467"),
    ],
)
def test_escape(text: str, shown: str) -> None:
    assert _escape(text) == shown


def test_connect_escapes_control_characters(server: CliServer) -> None:
    out = _run_connect(server.url, "red \x1b[31malert\x07 done\n")
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout and "\x07" not in out.stdout
    assert "< red \\x1b[31malert\\x07 done" in out.stdout.splitlines()


def test_connect_escapes_the_close_reason() -> None:
    """The reason comes from the peer as much as a message does; it is printed on stderr."""

    async def handler(ws: Any) -> None:
        await ws.close(1000, "\x1b]0;pwned\x07\x1b[2J\u202e")

    with _handler_server(handler) as port:
        out = _run_connect(f"ws://127.0.0.1:{port}/", "")
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stderr and "\x07" not in out.stderr and "\u202e" not in out.stderr
    assert "* disconnected (1000 \\x1b]0;pwned\\x07\\x1b[2J\\u202e)" in out.stderr.splitlines()


def test_connect_shows_the_escapes_of_an_error_once() -> None:
    """An error's text quotes the server's bytes with repr() already ("'Forbidden\\x1b[2J'"): shown as it
    is, not with its backslashes doubled; a raw control character left in it would still be escaped."""
    assert _escape("reason 'x\\x1b' and \x1b", backslashes=False) == "reason 'x\\x1b' and \\x1b"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(20)

    def answer() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 403 Forbidden\x1b[2J\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        out = _run_connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/", "")
    finally:
        listener.close()
        thread.join(10)
    assert out.returncode == 1 and "\x1b" not in out.stderr, out.stderr
    assert "'Forbidden\\x1b[2J'" in out.stderr and "\\\\x1b" not in out.stderr, out.stderr


def test_connect_insecure_needs_wss(server: CliServer) -> None:
    out = _run_connect(server.url, "", "--insecure")
    assert out.returncode == 1
    assert "wss://" in out.stderr and "Traceback" not in out.stderr


# --------------------------------------------------------------------------- connect: readline on a TTY


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class _Terminal:
    """``python -m wscodec connect`` on a pseudo-terminal: what it draws, and keys typed into it."""

    def __init__(self, url: str) -> None:
        import pty

        self.master, slave = pty.openpty()
        env = _env()
        env["TERM"] = "dumb"  # no bracketed paste or other escape noise from readline
        env["INPUTRC"] = "/dev/null"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wscodec", "connect", url],
            stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True,
            preexec_fn=_default_sigint,  # a background job inherits SIGINT ignored; a terminal's has it
        )  # fmt: skip
        os.close(slave)
        self.screen = b""

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def wait_for(self, needle: bytes, timeout: float = 20, count: int = 1) -> bytes:
        deadline = time.monotonic() + timeout
        while self.screen.count(needle) < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{needle!r} not seen; screen: {self.screen[-2000:]!r}"
            if select.select([self.master], [], [], min(remaining, 0.5))[0]:
                try:
                    self.screen += os.read(self.master, 65536)
                except OSError:  # the child closed the terminal
                    break
        return self.screen

    def wait_idle_prompt(self, timeout: float = 20) -> None:
        """Until the screen ends with the empty prompt (the line editor is waiting for keys)."""
        deadline = time.monotonic() + timeout
        while not self.screen.endswith(b"> "):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no prompt; screen: {self.screen[-2000:]!r}"
            if select.select([self.master], [], [], min(remaining, 0.5))[0]:
                self.screen += os.read(self.master, 65536)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        os.close(self.master)


def test_connect_on_a_terminal_has_history_and_keeps_the_typed_line() -> None:
    pytest.importorskip("readline")
    with cli_server("--chat") as running:
        term = _Terminal(running.url)
        try:
            term.wait_for(b"connected to")
            term.wait_for(b"> ")
            term.type(b"hello\r")
            term.wait_for(b"< hello")
            term.type(b"\x1b[A\r")  # up arrow: the last line again, from readline's history
            term.wait_for(b"< hello", 20, count=2)
            term.wait_idle_prompt()  # printed, and the prompt drawn again
            term.type(b"half-typ")
            term.wait_for(b"half-typ")
            with ws_connect(running.url, open_timeout=10) as other:
                other.send("from elsewhere")
                # the message is printed on its own line, then the prompt comes back with the typed text
                screen = term.wait_for(b"< from elsewhere")
                # the typed line shows once as typed, then again when the prompt is redrawn after the message
                after = term.wait_for(b"> half-typ", 20, count=2)[screen.index(b"< from elsewhere") :]
                assert b"> half-typ" in after
            term.type(b"ed\r")
            term.wait_for(b"< half-typed")
            term.type(b"\x04")  # Ctrl-D: end of input, the client closes normally
            assert term.proc.wait(20) == 0
            term.wait_for(b"disconnected")
        finally:
            term.close()


@pytest.mark.parametrize("ending", ["server closes", "Ctrl-C", "SIGTERM", "SIGHUP"])
def test_connect_on_a_terminal_gives_it_back_with_echo_and_line_mode(ending: str) -> None:
    """readline turns echo and line mode off while it waits for a line; a session that ends while it
    waits, other than by Ctrl-D, must not leave the terminal that way (a signal's default action would)."""
    termios = pytest.importorskip("termios")
    pytest.importorskip("readline")
    running = CliServer()
    term = _Terminal(running.url)
    try:
        term.wait_for(b"connected to")
        term.wait_idle_prompt()
        if ending != "server closes":
            signum = {"Ctrl-C": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGHUP": signal.SIGHUP}[ending]
            term.proc.send_signal(signum)
            assert term.proc.wait(20) == 128 + signum  # 130, 143, 129
        else:
            running.stop()
            assert term.proc.wait(20) == 0  # 1001, going away
        lflag = termios.tcgetattr(term.master)[3]
        assert lflag & termios.ECHO and lflag & termios.ICANON
    finally:
        term.close()
        running.stop()


@contextlib.contextmanager
def _recording_server(messages: int = 0) -> Iterator[tuple[str, list[int | None]]]:
    """A websockets server that sends ``messages`` messages (at most one per 5 ms) then echoes, and records
    the close code each client sent; its URL and that list."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.server import serve as ws_serve

    codes: list[int | None] = []

    def handler(ws: Any) -> None:
        try:
            for index in range(messages):
                ws.send(f"message {index}")
                time.sleep(0.005)
            for message in ws:
                ws.send(message)
        except ConnectionClosed:
            pass
        codes.append(ws.protocol.close_rcvd.code if ws.protocol.close_rcvd is not None else None)

    with ws_serve(handler, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}/", codes
        finally:
            server.shutdown()
            thread.join(10)


@contextlib.contextmanager
def _connect_process(url: str, **streams: Any) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m wscodec connect URL`` with pipes (or the ``streams`` given), killed and closed after."""
    options: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    options.update(streams)
    proc = subprocess.Popen(
        [sys.executable, "-m", "wscodec", "connect", url], env=options.pop("env", _env()), **options
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_connect_stopped_by_a_signal_closes_1001(signum: int) -> None:
    """SIGTERM or SIGHUP ends a session as Ctrl-C does, with a closing handshake (1001, going away) and the
    shell's 128 + the signal's number; their default action dropped the TCP connection (1006)."""
    with _recording_server() as (url, codes), _connect_process(url) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"hello\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"< hello\n"  # connected and served
        proc.send_signal(signum)
        assert proc.wait(20) == 128 + signum
        until_blocking(lambda: codes)
        assert codes == [1001]
        assert proc.stderr is not None and b"Traceback" not in proc.stderr.read()


def test_connect_whose_output_is_closed_closes_1000_and_says_so() -> None:
    """``connect ... | head -1``: standard output closes under it while messages keep coming. The session
    ends with a closing handshake (1000), one line on stderr and status 1, not a dropped connection."""
    with _recording_server(messages=2000) as (url, codes), _connect_process(url) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().startswith(b"< message ")
        proc.stdout.close()  # what head does after its line
        assert proc.wait(20) == 1
        until_blocking(lambda: codes)
        assert codes == [1000]
        err = proc.stderr.read().decode()
        assert "Traceback" not in err and "Exception ignored" not in err, err
        assert err.count("error:") == 1 and "* disconnected (1000" in err, err  # said once, then the end


@contextlib.contextmanager
def _mute_server() -> Iterator[str]:
    """A server that completes the opening handshake and then reads without ever answering: our Close waits."""

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)
    done = threading.Event()

    def serve_one() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(1)
                head = b""
                while b"\r\n\r\n" not in head:
                    head += conn.recv(4096)
                conn.sendall(accept_response(head))
                while not done.is_set():
                    with contextlib.suppress(socket.timeout):
                        if not conn.recv(65536):
                            break

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        done.set()
        listener.close()
        thread.join(10)


@pytest.mark.parametrize(
    ("first", "second"),
    [(signal.SIGTERM, signal.SIGINT), (signal.SIGINT, signal.SIGTERM)],
    ids=["TERM-INT", "INT-TERM"],
)
def test_connect_given_two_signals_while_its_close_waits_ends_with_the_first(first: int, second: int) -> None:
    """A second signal while our Close waits for its answer: the session ends as the first signal said (128 +
    its number), with no traceback (a CancelledError escaped before). A Ctrl-C cuts the wait short; a
    SIGTERM after a Ctrl-C is ignored (the wait is bounded)."""
    with _mute_server() as url, _connect_process(url, preexec_fn=_default_sigint) as proc:
        assert proc.stderr is not None
        assert b"connected to" in proc.stderr.readline()
        time.sleep(0.3)
        proc.send_signal(first)
        time.sleep(0.5)
        proc.send_signal(second)
        assert proc.wait(20) == 128 + first
        err = proc.stderr.read().decode()
        assert "Traceback" not in err and "did not answer our Close" in err, err


def test_connect_whose_terminal_hangs_up_closes_without_a_traceback() -> None:
    """The terminal goes away (its master side closes: a hangup, SIGHUP and end of input together). The
    session ends with a closing handshake and no error from writing to the dead terminal."""
    pytest.importorskip("readline")
    import pty

    with _recording_server() as (url, codes):
        master, slave = pty.openpty()
        env = _env()
        env["TERM"] = "dumb"
        env["INPUTRC"] = "/dev/null"
        with _connect_process(url, stdin=slave, stdout=slave, env=env, close_fds=True, start_new_session=True) as proc:
            os.close(slave)
            assert proc.stderr is not None
            assert b"connected to" in proc.stderr.readline()
            time.sleep(0.5)  # (readline waiting for a line)
            os.close(master)
            assert proc.wait(20) in (0, 128 + signal.SIGHUP)  # end of input (1000) or the hangup (1001) first
            until_blocking(lambda: codes)
            assert codes[0] in (1000, 1001), codes
            err = proc.stderr.read().decode()
            assert "Traceback" not in err and "error:" not in err, err


def test_connect_whose_output_and_errors_share_a_closed_pipe_still_closes_1000() -> None:
    """``connect ... 2>&1 | head -1``: stdout and stderr are one pipe, closed after a line. The Close goes
    out first (1000), then nothing printed raises: status 1, no traceback to a closed pipe."""
    with _recording_server(messages=2000) as (url, codes):
        read_end, write_end = os.pipe()
        with _connect_process(url, stdout=write_end, stderr=write_end) as proc:
            os.close(write_end)
            with os.fdopen(read_end, "rb") as pipe:
                assert pipe.readline()  # the first line, then head exits
            assert proc.wait(20) == 1
            until_blocking(lambda: codes)
            assert codes == [1000]
