"""wscodec.asgi:UvicornWebSocketProtocol under a real uvicorn, against real clients, beside uvicorn's own.

Every test runs twice: with ``--ws wscodec.asgi:UvicornWebSocketProtocol`` and with uvicorn's
``--ws websockets-sansio`` as the reference, so a difference in behaviour shows up as a test result.
Where we differ on purpose (we are stricter per RFC 6455 or the ASGI spec), the reference case is an
``xfail(strict=True)`` naming the difference.

Servers are uvicorn subprocesses (``python -m uvicorn ...``) on a free loopback port, started on first use
and killed at teardown, each on both event loops uvicorn offers (``--loop asyncio`` and ``--loop uvloop``,
what ``--loop auto`` picks wherever uvloop is installed); the test clients run on asyncio's default loop;
the environment is passed through, so ``WSCODEC_PURE_PYTHON=1`` reaches them, and
they import the same ``wscodec`` as the tests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# uvicorn, starlette and fastapi are in the test extra: missing, they fail the import (never a quiet skip).
import fastapi  # noqa: F401
import pytest
import starlette  # noqa: F401
import uvicorn  # noqa: F401
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import wscodec
from wscodec import FrameDecoder, encode_frame

# The server's loop is the parameter here (SERVER_LOOPS); the clients need not run on both as well.
pytestmark = [pytest.mark.interop, pytest.mark.asyncio(loop_factories=["asyncio"])]

ROOT = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parent / "apps"
WSCODEC_HOME = str(Path(wscodec.__file__).resolve().parents[1])
OURS = "wscodec"
REFERENCE = "websockets-sansio"
WS_IMPLS = {OURS: "wscodec.asgi:UvicornWebSocketProtocol", REFERENCE: "websockets-sansio"}
SERVER_LOOPS = ("asyncio", "uvloop")
STARTUP_TIMEOUT = 20.0
STEP = 5.0  # bound on any single network wait in a test

# Server configurations: app and extra uvicorn options.
CONFIGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "starlette": ("uvicorn_apps:starlette_app", ()),
    "fastapi": ("uvicorn_apps:fastapi_app", ()),
    # No compression, a small message limit and a fast keepalive.
    "strict": (
        "uvicorn_apps:starlette_app",
        (
            "--ws-per-message-deflate",
            "false",
            "--ws-max-size",
            "65536",
            "--ws-ping-interval",
            "0.3",
            "--ws-ping-timeout",
            "0.6",
        ),
    ),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class UvicornServer:
    """One ``python -m uvicorn`` subprocess on a free loopback port."""

    def __init__(self, impl: str, app: str, options: tuple[str, ...] = (), loop: str = "asyncio") -> None:
        self.impl = impl
        self.port = _free_port()
        env = os.environ.copy()
        # The server imports the very wscodec this test imported (the installed one in CI, src/ in a checkout).
        env["PYTHONPATH"] = os.pathsep.join(p for p in (WSCODEC_HOME, str(APPS), env.get("PYTHONPATH", "")) if p)
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                app,
                "--app-dir",
                str(APPS),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--ws",
                WS_IMPLS[impl],
                "--log-level",
                "info",
                "--no-access-log",
                "--loop",
                loop,
                *options,
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"uvicorn did not start within {STARTUP_TIMEOUT}s:\n{self.output()}")

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def record(self, key: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/record/{key}", timeout=STEP) as resp:
            data: dict[str, Any] = json.loads(resp.read())
            return data

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def stop(self) -> None:
        # SIGTERM first: uvicorn shuts down gracefully and coverage (sigterm = true) writes the worker's data.
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


@pytest.fixture(scope="module", params=list(WS_IMPLS))
def impl(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module", params=SERVER_LOOPS)
def server_loop(request: pytest.FixtureRequest) -> str:
    """The event loop of the uvicorn subprocess (``--loop``)."""
    return str(request.param)


Servers = dict[tuple[str, str, str], UvicornServer]


@pytest.fixture(scope="module")
def _servers() -> Iterator[Servers]:
    servers: Servers = {}
    yield servers
    for server in servers.values():
        server.stop()


def _server(servers: Servers, impl: str, config: str, loop: str) -> UvicornServer:
    key = (impl, config, loop)
    if key not in servers:
        app, options = CONFIGS[config]
        servers[key] = UvicornServer(impl, app, options, loop)
    return servers[key]


@pytest.fixture
def server(impl: str, server_loop: str, _servers: Servers) -> UvicornServer:
    return _server(_servers, impl, "starlette", server_loop)


@pytest.fixture
def fastapi_server(impl: str, server_loop: str, _servers: Servers) -> UvicornServer:
    return _server(_servers, impl, "fastapi", server_loop)


@pytest.fixture
def strict_server(impl: str, server_loop: str, _servers: Servers) -> UvicornServer:
    return _server(_servers, impl, "strict", server_loop)


def _differs(request: pytest.FixtureRequest, impl: str, reason: str) -> None:
    """Mark the reference run of this test as a deliberate, documented difference."""
    if impl == REFERENCE:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


async def _recv(ws: Any) -> Any:
    return await asyncio.wait_for(ws.recv(), STEP)


async def _closed_by_server(ws: Any) -> ConnectionClosed:
    """Wait until the server closes ``ws``; the exception carries the Close frames."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), STEP)
    except ConnectionClosed as exc:
        return exc


async def _record(server: UvicornServer, key: str, field: str) -> dict[str, Any]:
    """The server's record for ``key`` once it has ``field`` (the app may still be finishing)."""
    deadline = time.monotonic() + STEP
    while True:
        data = await asyncio.to_thread(server.record, key)
        if field in data or time.monotonic() > deadline:
            return data
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------- a raw client, for what libraries won't send


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, leftover: bytes) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = FrameDecoder("client")
        self.frames: list[Any] = list(self.decoder.feed(leftover)) if leftover else []

    @classmethod
    async def connect(cls, server: UvicornServer, path: str) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await asyncio.wait_for(reader.read(4096), STEP)
            assert chunk, f"connection closed during the handshake: {head!r}"
            head += chunk
        head, _, leftover = head.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer, leftover)

    def send(self, opcode: int, payload: bytes, *, fin: bool = True) -> None:
        self.writer.write(encode_frame(opcode, payload, fin=fin, mask=True))

    async def next_frame(self, *, skip_pings: bool = True) -> Any:
        """The next frame, or None at EOF."""
        while True:
            while self.frames:
                frame = self.frames.pop(0)
                if skip_pings and frame.opcode == 9:
                    continue
                return frame
            data = await asyncio.wait_for(self.reader.read(65536), STEP)
            if not data:
                return None
            self.frames.extend(self.decoder.feed(data))

    def abort(self) -> None:
        self.writer.transport.abort()


def _close_code(frame: Any) -> int:
    assert frame is not None, "connection dropped without a Close frame"
    assert frame.opcode == 8, frame
    return int.from_bytes(frame.payload[:2], "big")


# ---------------------------------------------------------------- messages


async def test_echo_text_and_binary(server: UvicornServer) -> None:
    async with connect(server.url("/echo"), open_timeout=STEP) as ws:
        await ws.send("hello, ✓")
        assert await _recv(ws) == "hello, ✓"
        await ws.send(b"\x00\xff" * 8)
        assert await _recv(ws) == b"\x00\xff" * 8
        big = os.urandom(300_000)
        await ws.send(big)
        assert await _recv(ws) == big
        await ws.send(["frag", "mented ", "text"])
        assert await _recv(ws) == "fragmented text"


async def test_many_messages_in_flight(server: UvicornServer) -> None:
    """Many more messages than ws_max_queue sent before reading any reply all come back, in order. (The
    pause of reading at ws_max_queue is held and observed in-process in tests/test_asgi_paths.py.)"""
    count = 500
    async with connect(server.url("/echo"), open_timeout=STEP) as ws:
        for i in range(count):
            await ws.send(f"message {i}")
        for i in range(count):
            assert await _recv(ws) == f"message {i}"


async def test_send_waits_for_a_slow_reader(server: UvicornServer) -> None:
    """The application's send() blocks while the client reads nothing (pause_writing/resume_writing)."""
    key = uuid.uuid4().hex
    count = 1000  # 64 MiB: far more than the loopback socket buffers hold
    client = await RawClient.connect(server, f"/flood?id={key}&n={count}")
    # Wait for the application to stall (its count stops moving), not for a fixed time.
    deadline = time.monotonic() + 60
    previous = -1
    while True:
        stalled_at = (await _record(server, key, "sent")).get("sent", 0)
        if stalled_at == previous and stalled_at > 0:
            break
        assert time.monotonic() < deadline, f"the application never stalled (sent {stalled_at})"
        previous = stalled_at
        await asyncio.sleep(0.3)
    assert 0 < stalled_at < count // 2
    received = 0
    while received < count:
        frame = await client.next_frame()
        assert frame is not None and frame.opcode == 2 and len(frame.payload) == 65536
        received += 1
    assert _close_code(await client.next_frame()) == 1000
    assert (await _record(server, key, "sent"))["sent"] == count
    client.abort()


async def test_fastapi_endpoints(fastapi_server: UvicornServer) -> None:
    async with connect(fastapi_server.url("/echo?prefix=>%20"), open_timeout=STEP) as ws:
        await ws.send("hi")
        assert await _recv(ws) == "> hi"
    async with connect(fastapi_server.url("/items/7"), open_timeout=STEP) as ws:
        assert json.loads(await _recv(ws)) == {"item_id": 7}
        closed = await _closed_by_server(ws)
        assert closed.rcvd is not None
        assert (closed.rcvd.code, closed.rcvd.reason) == (4001, "done")


async def test_fastapi_client_close_reaches_endpoint(fastapi_server: UvicornServer) -> None:
    key = uuid.uuid4().hex
    async with connect(fastapi_server.url(f"/echo?id={key}"), open_timeout=STEP) as ws:
        await ws.send("x")
        await _recv(ws)
        await ws.close(4002, "client-bye")
    assert await _record(fastapi_server, key, "code") == {"code": 4002, "reason": "client-bye"}


# ---------------------------------------------------------------- handshake


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [(["chat.v1", "chat.v2"], "chat.v2"), (["chat.v1"], "chat.v1"), (["other"], None), ([], None)],
)
async def test_subprotocol_selection(server: UvicornServer, offered: list[str], chosen: str | None) -> None:
    async with connect(server.url("/subprotocol"), subprotocols=offered or None, open_timeout=STEP) as ws:
        assert ws.subprotocol == chosen
        assert await _recv(ws) == f"chosen={chosen}"


async def test_scope(server: UvicornServer) -> None:
    headers = {"X-Custom": "Value-1"}
    async with connect(
        server.url("/scope/a%20b?x=1&y=%2F"), additional_headers=headers, subprotocols=["p1", "p2"], open_timeout=STEP
    ) as ws:
        response_headers = ws.response.headers
        scope = json.loads(await _recv(ws))
    assert response_headers["x-wscodec-test"] == "yes"
    assert response_headers["server"] == "uvicorn"
    assert "date" in response_headers
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["server"] == ["127.0.0.1", server.port]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["root_path"] == ""
    assert scope["path"] == "/scope/a b"
    assert scope["raw_path"] == "/scope/a%20b"
    assert scope["query_string"] == "x=1&y=%2F"
    names = [name for name, _ in scope["headers"]]
    assert names == [name.lower() for name in names]
    assert ["x-custom", "Value-1"] in scope["headers"]
    assert ["sec-websocket-version", "13"] in scope["headers"]
    assert scope["subprotocols"] == ["p1", "p2"]
    assert "websocket.http.response" in scope["extensions"]
    assert scope["state"] == {"greeting": "hello from lifespan"}


async def test_denial_response(server: UvicornServer) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(server.url("/deny"), open_timeout=STEP):
            pass
    response = info.value.response
    assert response.status_code == 418
    assert response.headers["x-denied"] == "yes"
    assert response.body == b"no entry\n"


async def test_denial_response_streamed_body(server: UvicornServer) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(server.url("/deny-streamed"), open_timeout=STEP):
            pass
    response = info.value.response
    assert response.status_code == 401
    assert response.body == b"part one, part two"


async def test_close_before_accept_is_403(server: UvicornServer) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(server.url("/close-before-accept"), open_timeout=STEP):
            pass
    assert info.value.response.status_code == 403


async def test_raise_before_accept_is_500(server: UvicornServer) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(server.url("/raise-before-accept"), open_timeout=STEP):
            pass
    assert info.value.response.status_code == 500


async def test_not_a_websocket_route_is_403(server: UvicornServer) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(server.url("/no-such-route"), open_timeout=STEP):
            pass
    assert info.value.response.status_code == 403


# ---------------------------------------------------------------- closing


@pytest.mark.parametrize(("code", "reason"), [(1000, ""), (1001, "going"), (4001, "bye")])
async def test_server_closes_with_code(server: UvicornServer, code: int, reason: str) -> None:
    key = uuid.uuid4().hex
    async with connect(server.url(f"/server-close?id={key}"), open_timeout=STEP) as ws:
        await ws.send(f"{code} {reason}")
        closed = await _closed_by_server(ws)
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (code, reason)
    assert (await _record(server, key, "after_close"))["after_close"] == "websocket.disconnect"


@pytest.mark.parametrize(("code", "reason"), [(1000, ""), (1001, "tab closed"), (4002, "client-bye")])
async def test_client_close_code_reaches_app(server: UvicornServer, code: int, reason: str) -> None:
    key = uuid.uuid4().hex
    async with connect(server.url(f"/echo?id={key}"), open_timeout=STEP) as ws:
        await ws.send("x")
        await _recv(ws)
        await ws.close(code, reason)
    assert await _record(server, key, "code") == {"code": code, "reason": reason}


async def test_client_vanishes(request: pytest.FixtureRequest, impl: str, server: UvicornServer) -> None:
    _differs(request, impl, "uvicorn reports a dropped TCP connection as 1005 (no status); RFC 6455 7.1.5 says 1006")
    key = uuid.uuid4().hex
    client = await RawClient.connect(server, f"/echo?id={key}")
    client.send(1, b"ping?")
    frame = await client.next_frame()
    assert frame.payload == b"ping?"
    client.abort()
    assert (await _record(server, key, "code"))["code"] == 1006


async def test_app_raises_after_accept(request: pytest.FixtureRequest, impl: str, server: UvicornServer) -> None:
    _differs(request, impl, "uvicorn drops the TCP connection (client sees 1006); the ASGI spec and we send 1011")
    async with connect(server.url("/raise-after-accept"), open_timeout=STEP) as ws:
        await ws.send("go")
        closed = await _closed_by_server(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1011


async def test_app_returns_without_close(request: pytest.FixtureRequest, impl: str, server: UvicornServer) -> None:
    _differs(request, impl, "uvicorn drops the TCP connection (client sees 1006); we complete a 1000 Close handshake")
    async with connect(server.url("/return-after-accept"), open_timeout=STEP) as ws:
        await ws.send("go")
        closed = await _closed_by_server(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1000


async def test_invalid_utf8_is_closed_with_1007(server: UvicornServer) -> None:
    client = await RawClient.connect(server, "/echo")
    client.send(1, b"valid")
    assert (await client.next_frame()).payload == b"valid"
    client.send(1, b"caf\xc3(")  # invalid continuation byte
    assert _close_code(await client.next_frame()) == 1007
    client.abort()


async def test_invalid_utf8_across_fragments_is_closed_with_1007(server: UvicornServer) -> None:
    client = await RawClient.connect(server, "/echo")
    client.send(1, b"\xe2\x82", fin=False)  # first two bytes of the euro sign
    client.send(0, b"(", fin=True)
    assert _close_code(await client.next_frame()) == 1007
    client.abort()


async def test_protocol_error_is_closed_with_1002(server: UvicornServer) -> None:
    client = await RawClient.connect(server, "/echo")
    client.send(0, b"continuation without a start")
    assert _close_code(await client.next_frame()) == 1002
    client.abort()


# ---------------------------------------------------------------- configuration


async def test_compression_negotiated(server: UvicornServer) -> None:
    async with connect(server.url("/echo"), compression="deflate", open_timeout=STEP) as ws:
        assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")
        text = "compressible " * 20_000
        await ws.send(text)
        assert await _recv(ws) == text
        await ws.send(b"\x01" * 100_000)
        assert await _recv(ws) == b"\x01" * 100_000


async def test_compression_off(strict_server: UvicornServer) -> None:
    async with connect(strict_server.url("/echo"), compression="deflate", open_timeout=STEP) as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        await ws.send("plain " * 1000)
        assert await _recv(ws) == "plain " * 1000


async def test_max_size(strict_server: UvicornServer) -> None:
    async with connect(strict_server.url("/echo"), max_size=None, open_timeout=STEP) as ws:
        await ws.send(b"x" * 65536)
        assert await _recv(ws) == b"x" * 65536
        await ws.send(b"x" * 65537)
        closed = await _closed_by_server(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1009


async def test_keepalive_ping_and_timeout(strict_server: UvicornServer) -> None:
    """ws_ping_interval 0.3 s, ws_ping_timeout 0.6 s: a client that never answers is closed with 1011."""
    client = await RawClient.connect(strict_server, "/echo")
    started = time.monotonic()
    ping = await client.next_frame(skip_pings=False)
    assert ping.opcode == 9
    assert len(ping.payload) == 4
    frame = await client.next_frame()
    assert _close_code(frame) == 1011  # after the unanswered ping (the order is the point, not the speed)
    assert time.monotonic() - started < 60
    client.abort()


async def test_keepalive_answered(strict_server: UvicornServer) -> None:
    """A client that answers each ping (interval 0.3 s, timeout 0.6 s) stays connected past several of them:
    counted pings, each answered with its own payload, and the connection still echoes afterwards."""
    client = await RawClient.connect(strict_server, "/echo")
    try:
        payloads = []
        while len(payloads) < 4:
            frame = await client.next_frame(skip_pings=False)
            assert frame is not None and frame.opcode == 9, frame  # a ping, never a Close
            payloads.append(frame.payload)
            client.send(10, frame.payload)
        assert len(set(payloads)) == 4  # four distinct pings, four pongs
        client.send(1, b"still here")
        while True:
            frame = await client.next_frame(skip_pings=False)
            assert frame is not None and frame.opcode in (1, 9), frame
            if frame.opcode == 9:
                client.send(10, frame.payload)
                continue
            assert frame.payload == b"still here"
            break
    finally:
        client.abort()


# ---------------------------------------------------------------- shutdown


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_shutdown_closes_with_1012(impl: str, sig: signal.Signals) -> None:
    server = await asyncio.to_thread(UvicornServer, impl, *CONFIGS["starlette"])
    try:
        clients = [await connect(server.url("/echo"), open_timeout=STEP) for _ in range(3)]
        for i, ws in enumerate(clients):
            await ws.send(f"client {i}")
            assert await _recv(ws) == f"client {i}"
        server.proc.send_signal(sig)
        closes = await asyncio.gather(*(_closed_by_server(ws) for ws in clients))
        for closed in closes:
            assert closed.rcvd is not None
            assert closed.rcvd.code == 1012
        returncode = await asyncio.to_thread(server.proc.wait, 15)
        # uvicorn re-raises the captured signal once it has shut down cleanly.
        assert returncode in (0, -sig), server.output()
    finally:
        server.stop()


# ---------------------------------------------------------------- wscodec's own client, when there is one


async def test_wscodec_client(server: UvicornServer) -> None:
    from wscodec.asyncio import connect as wscodec_connect

    ws = await asyncio.wait_for(wscodec_connect(server.url("/echo")), STEP)
    try:
        await ws.send("from wscodec")
        assert await asyncio.wait_for(ws.recv(), STEP) == "from wscodec"
        await ws.send(b"\x00" * 1000)
        assert await asyncio.wait_for(ws.recv(), STEP) == b"\x00" * 1000
    finally:
        await asyncio.wait_for(ws.close(), STEP)
