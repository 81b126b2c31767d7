"""Hostile raw clients and real server subprocesses for the adversarial tests of fragments and errors.

:class:`ServerProcess` runs an echo server in a subprocess: ``serve()`` from ``wscodec.asyncio`` (on asyncio's
loop or uvloop, per ``WSCODEC_TEST_LOOP``), or uvicorn with ``--ws wscodec.asgi:UvicornWebSocketProtocol``
and the Starlette echo of ``tests/interop/apps``. The environment is passed through, so
``WSCODEC_PURE_PYTHON=1`` reaches the server. :class:`RawClient` speaks WebSocket over a blocking socket and
sends whatever bytes it is told to, valid or not.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

import wscodec
from wscodec import FrameDecoder, encode_frame

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
    # No keepalive: the raw clients do not answer Pings, and a pure-Python server on a loaded machine can
    # take longer than ping_interval + ping_timeout over 8M frames; memory is what these tests measure.
    async with serve(echo, "127.0.0.1", 0, ping_interval=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

if os.environ.get("WSCODEC_TEST_LOOP") == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""


def loops() -> list[Any]:
    """Parameters for the event loop of the server: asyncio's default, and uvloop where installed."""
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
                    "--ws-ping-interval", "0",
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

    def __init__(self, port: int, path: str, timeout: float = STEP) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
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


def masked_frame(b0: int, payload: bytes) -> bytes:
    """A client frame with any first header byte (reserved bits and opcodes included), masked."""
    assert len(payload) < 126
    key = os.urandom(4)
    return bytes((b0, 0x80 | len(payload))) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def frames_until_eof(client: RawClient, timeout: float = 10.0) -> list[Any]:
    """Every frame the server sends (keepalive Pings left out) until it closes the TCP connection."""
    client.sock.settimeout(timeout)
    frames = [f for f in client.frames if f.opcode != 9]
    client.frames = []
    while True:
        try:
            chunk = client.sock.recv(1 << 16)
        except ConnectionResetError:
            break
        if not chunk:
            break
        frames.extend(f for f in client.decoder.feed(chunk) if f.opcode != 9)
    return frames


def close_code(frame: Any) -> int:
    assert frame.opcode == 8, frame
    return int.from_bytes(frame.payload[:2], "big")
