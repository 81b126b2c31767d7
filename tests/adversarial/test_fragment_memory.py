"""One-byte fragments against a real server process: memory follows the payload, not the fragment count.

Issue 9, section 3. Each hostile client upgrades, starts a binary message and sends 1,040,000 masked frames
of one byte (a message under the default 1 MiB ``max_size``, 7.3 MB on the wire) without the final one, then
holds the connection. Before the fix a server kept a ``bytes`` object, a list slot, a frame and an event per
fragment: +313 MiB of RSS for 8 such clients (39 MiB each), and +135 MiB to echo one completed message.

The servers are subprocesses (``serve()`` with an echo handler, and uvicorn with
``--ws wscodec.asgi:UvicornWebSocketProtocol``) on a loopback port; their RSS is read with psutil, and the
peak with Linux's ``VmHWM`` after resetting it through ``/proc/PID/clear_refs``. The environment is passed
through, so ``WSCODEC_PURE_PYTHON=1`` reaches the server. A client knows the server has taken in everything
it sent when the Pong to a Ping sent behind the fragments comes back.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import wscodec
from wscodec import FrameDecoder, encode_frame

psutil = pytest.importorskip("psutil")

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmHWM from /proc (Linux)"),
    pytest.mark.timeout(600),
]

MAX_SIZE = 1 << 20  # the default max_size of serve() and of uvicorn's --ws-max-size
FRAGMENTS = 1_040_000  # one-byte fragments per message: under MAX_SIZE
CLIENTS = 8
STEP = 120.0  # bound on any single network wait (a pure-Python server takes a while over 8M frames)
STARTUP = 30.0
WSCODEC_HOME = str(Path(wscodec.__file__).resolve().parents[1])
APPS = Path(__file__).resolve().parents[1] / "interop" / "apps"

_SERVE = """
import asyncio, os, sys
from wscodec.asyncio import serve

async def echo(ws):
    async for message in ws:
        await ws.send(message)

async def main():
    async with serve(echo, "127.0.0.1", 0) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

if os.environ.get("WSCODEC_TEST_LOOP") == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""


def _loops() -> list[Any]:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        uvloop_mark = [pytest.mark.skip(reason="uvloop is not installed (pip install uvloop)")]
    else:
        uvloop_mark = []
    return [pytest.param("asyncio", id="asyncio"), pytest.param("uvloop", id="uvloop", marks=uvloop_mark)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A WebSocket echo server in a subprocess: ``kind`` is "serve" (wscodec.asyncio) or "uvicorn"."""

    def __init__(self, kind: str, loop: str) -> None:
        env = os.environ.copy()
        env["PYTHONPATH"] = os.pathsep.join(p for p in (WSCODEC_HOME, str(APPS), env.get("PYTHONPATH", "")) if p)
        env["WSCODEC_TEST_LOOP"] = loop
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        if kind == "serve":
            self.path = "/"
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _SERVE], env=env, stdout=subprocess.PIPE, stderr=self.log
            )
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if not line.strip():
                self.stop()
                raise RuntimeError(f"the server did not start:\n{self.output()}")
            self.port = int(line)
        else:
            self.path = "/echo"
            self.port = _free_port()
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "uvicorn", "uvicorn_apps:starlette_app", "--app-dir", str(APPS),
                    "--host", "127.0.0.1", "--port", str(self.port), "--loop", loop,
                    "--ws", "wscodec.asgi:UvicornWebSocketProtocol", "--log-level", "warning",
                ],
                env=env,
                stdout=self.log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            self._wait_listening()
        self.process = psutil.Process(self.proc.pid)

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + STARTUP
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the server did not start within {STARTUP}s:\n{self.output()}")

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    def reset_peak(self) -> None:
        """Make VmHWM (the peak RSS) start again from the current RSS."""
        with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
            f.write("5")

    def peak(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc/PID/status")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()


class RawClient:
    """A client over a blocking socket that sends whatever frames it is told to."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=STEP)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            assert chunk, f"connection closed during the handshake: {head!r}"
            head += chunk
        head, _, leftover = head.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        self.decoder = FrameDecoder("client", None)
        self.frames = list(self.decoder.feed(leftover))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def next_frame(self) -> Any:
        """The next frame from the server other than a keepalive Ping."""
        while True:
            while self.frames:
                frame = self.frames.pop(0)
                if frame.opcode != 9:
                    return frame
            chunk = self.sock.recv(1 << 20)
            assert chunk, "the server closed the connection"
            self.frames.extend(self.decoder.feed(chunk))

    def sync(self) -> None:
        """Return once the server has read everything sent so far (its Pong to our Ping is back)."""
        payload = os.urandom(8)
        self.send(encode_frame(9, payload, mask=True))
        while True:
            frame = self.next_frame()
            if frame.opcode == 10 and frame.payload == payload:
                return

    def close(self) -> None:
        self.sock.close()


def _fragments() -> bytes:
    """A binary message of FRAGMENTS one-byte frames, all but the final one."""
    first = encode_frame(2, b"\x01", fin=False, mask=b"\x9a\x3c\x55\xe1")
    more = encode_frame(0, b"\x01", fin=False, mask=b"\x9a\x3c\x55\xe1")
    return first + more * (FRAGMENTS - 1)


@pytest.fixture(scope="module")
def fragments() -> bytes:
    return _fragments()


@pytest.fixture(params=["serve", "uvicorn"])
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "uvicorn":
        pytest.importorskip("uvicorn")
        pytest.importorskip("starlette")
    return str(request.param)


@pytest.fixture(params=_loops())
def server(request: pytest.FixtureRequest, kind: str) -> Iterator[ServerProcess]:
    proc = ServerProcess(kind, request.param)
    try:
        yield proc
    finally:
        proc.stop()


def _warm_up(server: ServerProcess) -> None:
    """One small echo, so that the baseline includes the modules and buffers every connection uses."""
    client = RawClient(server.port, server.path)
    client.send(encode_frame(2, b"warm-up", mask=True))
    frame = client.next_frame()
    assert (frame.opcode, frame.payload) == (2, b"warm-up")
    client.close()
    time.sleep(0.2)


def test_unfinished_one_byte_fragments_cost_their_payload(server: ServerProcess, fragments: bytes) -> None:
    """8 clients each hold a message of 1,040,000 one-byte fragments: at most 3x max_size per connection."""
    _warm_up(server)
    baseline = server.rss()
    clients = [RawClient(server.port, server.path) for _ in range(CLIENTS)]
    errors: list[BaseException] = []

    def attack(client: RawClient) -> None:
        try:
            client.send(fragments)
            client.sync()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=attack, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(STEP * 2)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads), "a client did not get its Pong"
    growth = server.rss() - baseline
    per_connection = growth / CLIENTS
    print(f"\n{server.path} RSS +{growth / 2**20:.1f} MiB, {CLIENTS} connections, {per_connection / 2**20:.2f} each")
    assert per_connection <= 3 * MAX_SIZE, f"{per_connection / 2**20:.1f} MiB per connection"
    # The messages are valid: one of them completes and comes back whole.
    clients[0].send(encode_frame(0, b"\x02", fin=True, mask=True))
    frame = clients[0].next_frame()
    assert frame.opcode == 2 and frame.fin
    assert frame.payload == b"\x01" * FRAGMENTS + b"\x02"
    for client in clients:
        client.close()


def test_completed_one_byte_fragments_echo_within_4x_max_size(server: ServerProcess, fragments: bytes) -> None:
    """A message of 1,040,001 one-byte fragments is echoed with a peak of at most 4x max_size."""
    _warm_up(server)
    baseline = server.rss()
    server.reset_peak()
    client = RawClient(server.port, server.path)
    client.send(fragments + encode_frame(0, b"\x02", fin=True, mask=True))
    frame = client.next_frame()
    assert frame.opcode == 2 and frame.fin
    assert frame.payload == b"\x01" * FRAGMENTS + b"\x02"
    peak = server.peak() - baseline
    print(f"\n{server.path} peak RSS +{peak / 2**20:.1f} MiB to echo {FRAGMENTS + 1} one-byte fragments")
    assert peak <= 4 * MAX_SIZE, f"peak +{peak / 2**20:.1f} MiB"
    client.close()
