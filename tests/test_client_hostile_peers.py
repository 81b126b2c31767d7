"""Clients facing a hostile or broken server or proxy: what an HTTP proxy slips in before TLS, credentials
and redirects, a deadline that dripping peers cannot stretch, frames that come with the 101, and RFC 6455
section 4.1's rule on the Upgrade header. Fake peers are raw sockets on loopback, so that they can break
the rules a real implementation keeps."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl as ssl_module
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import wscodec.asyncio
import wscodec.sync
from wscodec import ConnectionClosedError, InvalidHandshake, OpenTimeout, ProxyError, RedirectError
from wscodec.events import Request
from wscodec.handshake import compute_accept

pytestmark = pytest.mark.timeout(60)


@contextlib.contextmanager
def raw_peer(serve_one: Callable[[socket.socket], None], connections: int = 4) -> Iterator[int]:
    """A listening socket whose accepted connections are each handed to ``serve_one`` in a thread."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def accept_loop() -> None:
        while not stop.is_set() and len(threads) < connections:
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(10)
            thread = threading.Thread(target=_serve_and_close, args=(serve_one, sock), daemon=True)
            threads.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept_loop, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        acceptor.join(5)
        listener.close()
        for thread in threads:
            thread.join(15)
            assert not thread.is_alive()


def _serve_and_close(serve_one: Callable[[socket.socket], None], sock: socket.socket) -> None:
    try:
        serve_one(sock)
    except OSError:
        pass
    finally:
        sock.close()


def read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def switching_protocols(request: bytes, *, upgrade: str = "Upgrade: websocket\r\n") -> bytes:
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    return (
        f"HTTP/1.1 101 Switching Protocols\r\n{upgrade}Connection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {compute_accept(key.decode())}\r\n\r\n"
    ).encode()


def server_frame(opcode: int, payload: bytes, *, mask: bool = False) -> bytes:
    if not mask:
        return bytes([0x80 | opcode, len(payload)]) + payload
    key = b"\x01\x02\x03\x04"
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def unmask(frame: bytes) -> tuple[int, bytes]:
    """Opcode and payload of one small masked client frame."""
    length = frame[1] & 0x7F
    key = frame[2:6]
    return frame[0] & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(frame[6 : 6 + length]))


# --------------------------------------------------------------------------- a proxy before TLS


def proxy_that_speaks_first(sock: socket.socket) -> None:
    """Answers CONNECT with 200 and, in the same packet, a forged 'server' answer in plain text."""
    read_head(sock)
    sock.sendall(
        b"HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.1 302 Found\r\nLocation: wss://attacker.invalid/\r\n\r\n"
    )
    sock.recv(4096)  # wait for the client to give up


async def test_asyncio_wss_refuses_what_a_proxy_sends_before_tls() -> None:
    with raw_peer(proxy_that_speaks_first) as port, pytest.raises(ProxyError, match="before the TLS handshake"):
        await wscodec.asyncio.connect(
            "wss://example.invalid/",
            proxy=f"http://127.0.0.1:{port}",
            ssl=ssl_module.create_default_context(),
            open_timeout=10,
        )


def test_sync_wss_refuses_what_a_proxy_sends_before_tls() -> None:
    with raw_peer(proxy_that_speaks_first) as port, pytest.raises(ProxyError, match="before the TLS handshake"):
        wscodec.sync.connect("wss://example.invalid/", proxy=f"http://127.0.0.1:{port}", open_timeout=10)


# --------------------------------------------------------------------------- redirects and credentials

SECRETS = {"Authorization": "Bearer SECRET", "Cookie": "session=SECRET", "Proxy-Authorization": "Basic SECRET"}


@contextlib.asynccontextmanager
async def recording_server(seen: list[Request]) -> Any:
    """Records each request; ``/moved`` redirects (302) to ``/here`` on the same origin."""

    def process_request(connection: Any, request: Request) -> Any:
        seen.append(request)
        if request.path == "/moved":
            return (302, [("Location", "/here")], b"")
        return None

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async with wscodec.asyncio.serve(echo, "127.0.0.1", 0, process_request=process_request) as server:
        yield server.port


async def test_redirects_keep_credentials_on_the_origin_and_drop_them_elsewhere() -> None:
    seen: list[Request] = []
    async with recording_server(seen) as port:
        # Same origin: every header goes on.
        async with wscodec.asyncio.connect(f"ws://127.0.0.1:{port}/moved", additional_headers=SECRETS) as ws:
            assert ws.url.endswith("/here")
        assert [r.headers.get("Cookie") for r in seen] == ["session=SECRET", "session=SECRET"]
        sync_ws = await asyncio.to_thread(
            wscodec.sync.connect, f"ws://127.0.0.1:{port}/moved", additional_headers=SECRETS
        )
        await asyncio.to_thread(sync_ws.close)
        assert [r.headers.get("Authorization") for r in seen[2:]] == ["Bearer SECRET", "Bearer SECRET"]
        # Another origin ("localhost" is not "127.0.0.1"): no credential follows the redirect.
        other = f"ws://localhost:{port}/here"
        redirect = (f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {other}\r\nContent-Length: 0\r\n\r\n").encode()
        with raw_peer(lambda sock: (read_head(sock), sock.sendall(redirect))) as redirector:
            del seen[:]
            async with wscodec.asyncio.connect(f"ws://127.0.0.1:{redirector}/", additional_headers=SECRETS) as ws:
                assert ws.url == other
            sync_ws = await asyncio.to_thread(
                wscodec.sync.connect, f"ws://127.0.0.1:{redirector}/", additional_headers=SECRETS
            )
            assert sync_ws.url == other
            await asyncio.to_thread(sync_ws.close)
    assert len(seen) == 2
    for request in seen:
        assert not {"authorization", "cookie", "proxy-authorization"} & {k.lower() for k, _ in request.headers}


async def test_unix_socket_clients_refuse_a_cross_origin_redirect(tmp_path: Any) -> None:
    path = str(tmp_path / "ws.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 302 Found\r\nLocation: ws://other.example:8080/\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(handle, sock=listener)
    try:
        with pytest.raises(RedirectError, match="cross-origin redirect"):
            await wscodec.asyncio.unix_connect(path)
        with pytest.raises(RedirectError, match="cross-origin redirect"):
            await asyncio.to_thread(wscodec.sync.unix_connect, path)
    finally:
        server.close()
        await server.wait_closed()


# --------------------------------------------------------------------------- one deadline for the whole open


def dripping_http_proxy(sock: socket.socket) -> None:
    read_head(sock)
    for byte in b"HTTP/1.1 200 Connection established\r\n\r\n":
        sock.sendall(bytes([byte]))
        time.sleep(0.4)


def dripping_socks5_proxy(sock: socket.socket) -> None:
    sock.recv(16)  # greeting
    sock.sendall(b"\x05")
    time.sleep(0.4)
    sock.sendall(b"\x00")  # no authentication
    sock.recv(262)  # CONNECT request
    for byte in b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x50":
        sock.sendall(bytes([byte]))
        time.sleep(0.4)


@pytest.mark.parametrize(("peer", "scheme"), [(dripping_http_proxy, "http"), (dripping_socks5_proxy, "socks5h")])
def test_sync_open_timeout_bounds_a_proxy_that_drips(peer: Callable[[socket.socket], None], scheme: str) -> None:
    """Each byte within the socket timeout, all of them far past open_timeout: OpenTimeout at open_timeout."""
    with raw_peer(peer) as port:
        started = time.monotonic()
        with pytest.raises(OpenTimeout):
            wscodec.sync.connect("ws://example.invalid/", proxy=f"{scheme}://127.0.0.1:{port}", open_timeout=1.0)
        assert time.monotonic() - started < 1.8


# --------------------------------------------------------------------------- frames that come with the 101


def sync_client_sees(frames: bytes) -> tuple[list[Any], list[tuple[int, bytes]]]:
    """A server that sends ``frames`` in the packet of its 101; what the threaded client received (messages,
    then the error) and the frames it sent back."""
    replies: list[tuple[int, bytes]] = []

    def server(sock: socket.socket) -> None:
        request = read_head(sock)
        sock.sendall(switching_protocols(request) + frames)
        data = b""
        deadline = time.monotonic() + 5
        while len(replies) < 1 and time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
            while len(data) >= 6 and len(data) >= 6 + (data[1] & 0x7F):
                size = 6 + (data[1] & 0x7F)
                replies.append(unmask(data[:size]))
                data = data[size:]
        if replies and replies[0][0] == 8:
            with contextlib.suppress(OSError):
                sock.sendall(server_frame(8, replies[0][1]))

    received: list[Any] = []
    with raw_peer(server) as port:
        ws = wscodec.sync.connect(f"ws://127.0.0.1:{port}/", open_timeout=5, close_timeout=2)
        try:
            while True:
                received.append(ws.recv(timeout=5))
        except ConnectionClosedError as exc:
            received.append(exc.code)
        except Exception as exc:  # a clean close or a timeout: recorded for the assertion
            received.append(type(exc).__name__)
        finally:
            ws.close()
    return received, replies


def test_sync_client_answers_a_ping_that_came_with_the_101() -> None:
    _received, replies = sync_client_sees(server_frame(9, b"hi") + server_frame(8, struct.pack("!H", 1000)))
    assert replies[0] == (10, b"hi")  # the Pong, before anything else


def test_sync_client_answers_a_close_that_came_with_the_101() -> None:
    received, replies = sync_client_sees(server_frame(1, b"last words") + server_frame(8, struct.pack("!H", 1001)))
    assert received == ["last words", "ConnectionClosedOK"]
    assert replies == [(8, struct.pack("!H", 1001))]


def test_sync_client_keeps_messages_before_a_bad_frame_that_came_with_the_101() -> None:
    received, replies = sync_client_sees(server_frame(1, b"hello") + server_frame(1, b"masked", mask=True))
    assert received == ["hello", 1002]
    assert replies[0][0] == 8 and replies[0][1][:2] == struct.pack("!H", 1002)


# --------------------------------------------------------------------------- RFC 6455 section 4.1: Upgrade


@pytest.mark.parametrize(
    "upgrade",
    ["Upgrade: h2c, websocket\r\n", "Upgrade: websocket\r\nUpgrade: foo\r\n", "Upgrade: websocket, websocket\r\n", ""],
)
async def test_clients_fail_a_101_whose_upgrade_is_not_just_websocket(upgrade: str) -> None:
    def server(sock: socket.socket) -> None:
        sock.sendall(switching_protocols(read_head(sock), upgrade=upgrade))
        sock.recv(4096)

    with raw_peer(server) as port:
        with pytest.raises(InvalidHandshake, match="Upgrade: websocket"):
            await wscodec.asyncio.connect(f"ws://127.0.0.1:{port}/", open_timeout=5)
        with pytest.raises(InvalidHandshake, match="Upgrade: websocket"):
            await asyncio.to_thread(wscodec.sync.connect, f"ws://127.0.0.1:{port}/", open_timeout=5)


async def test_clients_accept_upgrade_websocket_in_any_case() -> None:
    def server(sock: socket.socket) -> None:
        sock.sendall(switching_protocols(read_head(sock), upgrade="Upgrade: WebSocket\r\n"))
        sock.recv(4096)

    with raw_peer(server) as port:
        ws = await wscodec.asyncio.connect(f"ws://127.0.0.1:{port}/", open_timeout=5, close_timeout=0.5)
        assert ws.subprotocol is None
        await ws.close()


def test_sync_connect_max_header_size_bounds_the_response_head() -> None:
    """As for the asyncio client: a 101 with 20 KiB of headers is refused under the default 8 KiB bound,
    accepted when the bound is raised."""

    def server(sock: socket.socket) -> None:
        head = switching_protocols(read_head(sock))
        sock.sendall(head[:-2] + b"X-Big: " + b"a" * 20000 + b"\r\n\r\n")
        sock.recv(4096)

    with raw_peer(server) as port:
        with pytest.raises(InvalidHandshake):
            wscodec.sync.connect(f"ws://127.0.0.1:{port}/", open_timeout=5)
        with wscodec.sync.connect(
            f"ws://127.0.0.1:{port}/", open_timeout=5, max_header_size=65536, close_timeout=0.5
        ) as ws:
            assert ws.response is not None and ws.response.headers["X-Big"] == "a" * 20000


def _reset_mid_response(sock: socket.socket) -> None:
    read_head(sock)
    sock.sendall(b"HTTP/1.1 101 Swi")
    time.sleep(0.05)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close() sends a RST


async def test_clients_report_a_reset_during_the_opening_handshake_as_invalid_handshake() -> None:
    """A server that resets TCP in the middle of its response: InvalidHandshake from both clients (as
    websockets' InvalidMessage is one), not the socket's ConnectionResetError from the threaded one."""
    with raw_peer(_reset_mid_response) as port:
        url = f"ws://127.0.0.1:{port}/"
        with pytest.raises(InvalidHandshake, match="connection closed during the opening handshake"):
            await wscodec.asyncio.connect(url, proxy=None, open_timeout=10)
        with pytest.raises(InvalidHandshake, match="connection closed during the opening handshake") as info:
            await asyncio.to_thread(wscodec.sync.connect, url, proxy=None, open_timeout=10)
        assert isinstance(info.value.__cause__, EOFError)  # (websockets' mark of a network error)
        assert isinstance(info.value.__cause__.__cause__, ConnectionResetError)


def _refuse_with_403(sock: socket.socket) -> None:
    read_head(sock)
    sock.sendall(b"HTTP/1.1 403 Forbidden\r\nX-Why: nope\r\nContent-Length: 4\r\n\r\ndeny")


async def test_invalid_status_carries_the_response_as_websockets_does() -> None:
    """websockets' way of reading a refusal, ``exc.response.status_code / reason_phrase / headers[...] /
    body``, works on both clients and gives what websockets' own client gives for the same answer."""
    import websockets
    import websockets.sync.client

    from wscodec import InvalidStatus

    def fields(exc: Any) -> tuple[int, str, str, bytes]:
        response = exc.response
        return response.status_code, response.reason_phrase, response.headers["X-Why"], bytes(response.body)

    with raw_peer(_refuse_with_403) as port:
        url = f"ws://127.0.0.1:{port}/"
        with pytest.raises(InvalidStatus) as ours:
            await wscodec.asyncio.connect(url, proxy=None, open_timeout=10)
        with pytest.raises(InvalidStatus) as ours_sync:
            await asyncio.to_thread(wscodec.sync.connect, url, proxy=None, open_timeout=10)
        with pytest.raises(websockets.InvalidStatus) as theirs:
            await asyncio.to_thread(websockets.sync.client.connect, url, proxy=None, open_timeout=10)
    assert fields(ours.value) == fields(ours_sync.value) == fields(theirs.value) == (403, "Forbidden", "nope", b"deny")
    assert ours.value.response.header("x-why") == "nope" and ours.value.status_code == 403
