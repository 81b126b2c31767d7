"""wscodec.sync (threads, blocking sockets) against the asyncio server and client, websockets.sync both
ways, and itself: messages, fragments, limits, errors, keepalive, serve_forever/shutdown, hooks, proxies.

The asyncio peers run on an event loop in a background thread; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.sync.client import connect as ws_connect
from websockets.sync.server import serve as ws_serve

from wscodec import ConnectionClosedError, ConnectionClosedOK, InvalidStatus, InvalidURI, OpenTimeout, ProxyError
from wscodec.asyncio import WebSocket as AsyncWebSocket
from wscodec.asyncio import connect as async_connect
from wscodec.asyncio import serve as async_serve
from wscodec.compression import Deflate
from wscodec.events import Request, Response
from wscodec.sync import Server, WebSocket, connect, serve, unix_connect, unix_serve

pytestmark = pytest.mark.timeout(90)


@contextlib.contextmanager
def loop_thread() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def run(loop: asyncio.AbstractEventLoop, coro: Any, timeout: float = 30) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)


@contextlib.contextmanager
def asyncio_echo_server(**options: Any) -> Iterator[int]:
    async def echo(ws: AsyncWebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    with loop_thread() as loop:
        server = run(loop, async_serve(echo, "127.0.0.1", 0, **options)._start())

        async def stop() -> None:
            server.close()
            await server.wait_closed()

        try:
            yield server.port
        finally:
            run(loop, stop())


def sync_echo(ws: WebSocket) -> None:
    for message in ws:
        ws.send(message)


@contextlib.contextmanager
def sync_server(handler: Any = sync_echo, **options: Any) -> Iterator[Server]:
    server = serve(handler, "127.0.0.1", 0, **options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(10)
        assert not thread.is_alive()


# --------------------------------------------------------------------------- against the asyncio server


@pytest.mark.parametrize("compression", ["deflate", None])
def test_sync_client_against_asyncio_server(compression: Any) -> None:
    with (
        asyncio_echo_server(compression=compression) as port,
        connect(f"ws://127.0.0.1:{port}/", compression=compression) as ws,
    ):
        assert (ws.connection.extensions != []) == (compression is not None)
        ws.send("héllo")
        assert ws.recv(timeout=10) == "héllo"
        payload = os.urandom(100_000)
        ws.send(payload)
        assert ws.recv(timeout=10) == payload
        ws.send(["frag", "mented"])  # one message in fragments (compressed when deflate is on)
        assert ws.recv(timeout=10) == "fragmented"
        assert ws.ping(b"p").wait(10)
        assert ws.latency > 0
    assert ws.close_code == 1000
    with pytest.raises(ConnectionClosedOK):
        ws.recv(timeout=10)


def test_recv_timeout_raises_timeout_error() -> None:
    with asyncio_echo_server() as port, connect(f"ws://127.0.0.1:{port}/") as ws:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.2)
        assert time.monotonic() - started >= 0.2
        ws.send("still fine")
        assert ws.recv(timeout=10) == "still fine"


def test_max_size_is_enforced_with_1009() -> None:
    with asyncio_echo_server() as port, connect(f"ws://127.0.0.1:{port}/", max_size=1000) as ws:
        ws.send("x" * 2000)  # echoed back: too big for us
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=10)
        assert info.value.code == 1009  # the code our Close carried, as the asyncio layer reports it
        assert ws.close_code == 1009
        assert ws.connection.close_sent is not None and ws.connection.close_sent[0] == 1009


def test_sync_client_errors_match_the_asyncio_ones() -> None:
    with pytest.raises(InvalidURI):
        connect("http://example.com/")
    with asyncio_echo_server(process_request=lambda request: (403, [], b"no")) as port:
        with pytest.raises(InvalidStatus) as info:
            connect(f"ws://127.0.0.1:{port}/")
        assert info.value.status_code == 403
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        with pytest.raises(OpenTimeout):
            connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/", open_timeout=0.3)
    finally:
        listener.close()


# --------------------------------------------------------------------------- the sync server


def test_asyncio_client_against_sync_server() -> None:
    async def client(port: int) -> list[Any]:
        async with async_connect(f"ws://127.0.0.1:{port}/") as ws:
            await ws.send("one")
            await ws.send(b"two")
            return [await ws.recv(), await ws.recv(), ws.extensions]

    with sync_server() as server:
        one, two, extensions = asyncio.run(client(server.port or 0))
    assert (one, two) == ("one", b"two")
    assert "permessage-deflate" in extensions


def test_sync_against_sync_with_hooks_and_server_header() -> None:
    def process_response(ws: WebSocket | None, request: Request | None, response: Response) -> Response:
        import dataclasses

        return dataclasses.replace(response, headers=(*response.headers, ("X-Hook", "yes")))

    with (
        sync_server(process_response=process_response, server_header="unit/1") as server,
        connect(f"ws://127.0.0.1:{server.port}/", subprotocols=["chat"]) as ws,
    ):
        assert ws.response is not None
        assert ws.response.header("X-Hook") == "yes"
        assert ws.response.header("Server") == "unit/1"
        ws.send("ping-pong")
        assert ws.recv(timeout=10) == "ping-pong"


def test_sync_server_process_request_and_handler_error() -> None:
    def handler(ws: WebSocket) -> None:
        raise RuntimeError("boom")

    def health(request: Request) -> Any:
        return (200, [("Content-Type", "text/plain")], b"ok") if request.path == "/health" else None

    with sync_server(handler, process_request=health) as server:
        with socket.create_connection(("127.0.0.1", server.port or 0), 5) as raw:
            raw.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            raw.settimeout(5)
            answer = b""
            while chunk := raw.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"ok")
        with connect(f"ws://127.0.0.1:{server.port}/") as ws, pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=10)
        assert info.value.code == 1011


@pytest.mark.parametrize(
    ("line", "status"),
    [(b"GET /a\x1b[2Jb HTTP/1.1", b"400"), (b"G(T / HTTP/1.1", b"400"), (b"POST / HTTP/1.1", b"405")],
    ids=["control-character-in-target", "method-not-a-token", "not-GET"],
)
def test_sync_malformed_request_line_never_reaches_process_request(line: bytes, status: bytes) -> None:
    """As in the asyncio server: a malformed request line is refused (400) before the hook runs; a
    well-formed one of another method reaches it (and, left to the Connection, gets 405)."""
    seen: list[str] = []

    def hook(request: Request) -> None:
        seen.append(request.path)

    with sync_server(process_request=hook) as server:
        with socket.create_connection(("127.0.0.1", server.port or 0), 5) as raw:
            raw.sendall(
                line + b"\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            raw.settimeout(5)
            answer = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := raw.recv(4096):
                    answer += chunk
        assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer[:200]
        assert seen == ([] if status == b"400" else ["/"])
        seen.clear()
        with connect(f"ws://127.0.0.1:{server.port}/ok") as ws:
            ws.send("still served")
            assert ws.recv(timeout=10) == "still served"
        assert seen == ["/ok"]


def test_sync_process_response_sees_and_may_replace_a_refused_upgrade() -> None:
    """As in the asyncio server and websockets: process_response runs for a refusal of a request it can read."""
    seen: list[tuple[str, int]] = []

    def hook(connection: Any, request: Request | None, response: Response) -> Any:
        assert request is not None
        seen.append((request.path, response.status_code))
        return (418, [("Content-Type", "text/plain")], b"replaced\n") if request.path == "/replace" else None

    keyless = b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"
    with sync_server(process_response=hook) as server:
        answers = []
        for path in (b"/keep", b"/replace"):
            with socket.create_connection(("127.0.0.1", server.port or 0), 5) as raw:
                raw.sendall(b"GET " + path + keyless)
                raw.settimeout(5)
                answer = b""
                with contextlib.suppress(ConnectionResetError):
                    while chunk := raw.recv(4096):
                        answer += chunk
            answers.append(answer)
        assert answers[0].startswith(b"HTTP/1.1 400 ") and answers[1].startswith(b"HTTP/1.1 418 ")
        assert answers[1].endswith(b"replaced\n")
        with connect(f"ws://127.0.0.1:{server.port}/ok") as ws:
            ws.send("still served")
            assert ws.recv(timeout=10) == "still served"
    assert seen == [("/keep", 400), ("/replace", 400), ("/ok", 101)]


def test_sync_malformed_request_at_max_connections_gets_400_and_no_hook() -> None:
    """As in the asyncio server: a request no hook can read takes no place and gets its 400, not a 503."""
    seen: list[tuple[Request | None, int]] = []

    def hook(connection: Any, request: Request | None, response: Response) -> None:
        seen.append((request, response.status_code))

    def hold(ws: WebSocket) -> None:
        with contextlib.suppress(Exception):
            ws.recv(timeout=10)

    with (
        sync_server(hold, process_response=hook, max_connections=1) as server,
        connect(f"ws://127.0.0.1:{server.port}/"),
        socket.create_connection(("127.0.0.1", server.port or 0), 5) as raw,
    ):
        raw.sendall(b"GET /a\x1b[2J HTTP/1.1\r\nHost: x\r\n\r\n")
        raw.settimeout(5)
        answer = raw.recv(200)
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert [status for _, status in seen] == [101] and seen[0][0] is not None


def test_shutdown_closes_connections_with_1001() -> None:
    server = serve(sync_echo, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    ws = connect(f"ws://127.0.0.1:{server.port}/")
    ws.send("before")
    assert ws.recv(timeout=10) == "before"
    server.shutdown()
    thread.join(10)
    assert not thread.is_alive()
    with pytest.raises(ConnectionClosedOK) as info:
        ws.recv(timeout=10)
    assert info.value.code == 1001
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port or 0), 1).close()


@contextlib.contextmanager
def silent_peer(*, rcvbuf: int | None = None) -> Iterator[int]:
    """A server that completes the handshake and then never reads again: pings go unanswered (and with a
    small ``rcvbuf``, the client's sends soon block)."""
    stalled = threading.Event()
    listener = socket.socket()
    if rcvbuf is not None:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # inherited by the accepted socket
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    key_line = b"Sec-WebSocket-Key: "

    def fake_server() -> None:
        conn, _ = listener.accept()
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(4096)
        key = data.split(key_line)[1].split(b"\r\n")[0].decode()
        from wscodec.handshake import compute_accept

        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {compute_accept(key)}\r\n\r\n".encode()
        )
        stalled.wait(20)
        conn.close()

    thread = threading.Thread(target=fake_server, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stalled.set()
        thread.join(10)
        listener.close()


def test_keepalive_fails_a_silent_peer() -> None:
    with silent_peer() as port:
        ws = connect(f"ws://127.0.0.1:{port}/", ping_interval=0.2, ping_timeout=0.3, close_timeout=1)
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=20)
        assert info.value.code == 1011 and "keepalive" in info.value.reason


def test_keepalive_without_ping_timeout_remembers_only_the_last_ping() -> None:
    """No ping_timeout: a peer that never answers is not failed, and the unanswered Pings do not pile up."""
    with silent_peer() as port:
        ws = connect(f"ws://127.0.0.1:{port}/", ping_interval=0.02, ping_timeout=None, close_timeout=0.5)
        try:
            with pytest.raises(TimeoutError):
                ws.recv(timeout=0.5)  # about 25 keepalive Pings meanwhile
            assert ws.state == 1 and ws.close_code is None
            assert len(ws._pings) <= 1
        finally:
            ws.close()


def test_unix_sockets() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sync.sock")
        server = unix_serve(sync_echo, path)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            with unix_connect(path) as ws:
                ws.send("unix")
                assert ws.recv(timeout=10) == "unix"
        finally:
            server.shutdown()
            thread.join(10)


# --------------------------------------------------------------------------- against websockets.sync


@pytest.mark.interop
def test_sync_client_against_websockets_sync_server() -> None:
    def echo(ws: Any) -> None:
        for message in ws:
            ws.send(message)

    with ws_serve(echo, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        port = server.socket.getsockname()[1]
        try:
            for compression in ("deflate", Deflate(server_max_window_bits=10, client_max_window_bits=9), None):
                with connect(f"ws://127.0.0.1:{port}/", compression=compression) as ws:
                    ws.send("text")
                    assert ws.recv(timeout=10) == "text"
                    big = ('{"k": "value"}' * 5000).encode()
                    ws.send(big)
                    assert ws.recv(timeout=10) == big
                    ws.send([b"a" * 300, b"b" * 300, b"c"])  # fragments, compressed
                    assert ws.recv(timeout=10) == b"a" * 300 + b"b" * 300 + b"c"
        finally:
            server.shutdown()
            thread.join(10)


@pytest.mark.interop
def test_websockets_sync_client_against_sync_server() -> None:
    with (
        sync_server(compression=Deflate(server_no_context_takeover=True, memory_level=1)) as server,
        ws_connect(f"ws://127.0.0.1:{server.port}/") as ws,
    ):
        assert "server_no_context_takeover" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
        for i in range(5):
            message = f'{{"seq": {i}, "data": "{"x" * 500}"}}'
            ws.send(message)
            assert ws.recv(timeout=10) == message
        ws.send(["frag", "ments"])
        assert ws.recv(timeout=10) == "fragments"


def test_sync_client_through_http_and_socks_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_client_network import pproxy

    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with asyncio_echo_server() as port, pproxy("http+socks5://127.0.0.1:PORT#bob:pw") as proxy_port:
        for proxy in (f"http://bob:pw@127.0.0.1:{proxy_port}", f"socks5h://bob:pw@127.0.0.1:{proxy_port}"):
            with connect(f"ws://127.0.0.1:{port}/", proxy=proxy) as ws:
                assert ws.remote_address[1] == proxy_port
                ws.send("proxied")
                assert ws.recv(timeout=10) == "proxied"
        with pytest.raises(ProxyError):
            connect(f"ws://127.0.0.1:{port}/", proxy=f"http://127.0.0.1:{proxy_port}")


def test_sync_server_refuses_a_client_without_a_common_subprotocol() -> None:
    """The threaded server follows the asyncio server's (and websockets') rule: with ``subprotocols`` and
    no ``select_subprotocol``, no subprotocol in common is 400; one in common opens with it."""
    with sync_server(subprotocols=["chat"]) as server:
        for offered, reason in ((None, b"missing subprotocol"), (["other"], b"invalid subprotocol")):
            with pytest.raises(InvalidStatus) as info:
                connect(f"ws://127.0.0.1:{server.port}/", subprotocols=offered, open_timeout=10)
            assert info.value.status_code == 400
            assert reason in info.value.response.body
        with connect(f"ws://127.0.0.1:{server.port}/", subprotocols=["other", "chat"], open_timeout=10) as ws:
            assert ws.subprotocol == "chat"
        with pytest.raises(TypeError, match="list of strings"):
            connect(f"ws://127.0.0.1:{server.port}/", subprotocols="chat", open_timeout=10)
    with pytest.raises(TypeError, match="list of strings"):
        serve(sync_echo, "127.0.0.1", 0, subprotocols="chat")
