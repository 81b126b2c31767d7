"""The sans-I/O Connection by itself against the real ``websockets`` (PyPI), over blocking loopback sockets.

No asyncio layer of ours in between: these tests drive ``Connection`` by hand, the way any other event
loop or server would, so a bug in the Connection cannot hide behind the asyncio glue. Our client against
a ``websockets`` echo server, a ``websockets`` client against our server, with and without
permessage-deflate, whole and fragmented messages.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.sync.client import connect as ws_connect
from websockets.sync.server import serve as ws_serve

from wscodec import Connection
from wscodec.events import (
    BinaryMessage,
    Closed,
    CloseReceived,
    Ping,
    Pong,
    ProtocolViolation,
    Request,
    Response,
    TextMessage,
)
from wscodec.extensions import ClientPerMessageDeflate, ServerPerMessageDeflate

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

TIMEOUT = 10.0
MESSAGES: list[str | bytes] = [
    "",
    "héllo ✓",
    "x" * 125,
    "€" * 30_000,  # 90 kB of 3-byte characters: 64-bit length, many reads
    b"",
    os.urandom(126),
    os.urandom(70_000),
    bytes(200_000),  # compresses to almost nothing
]


def pump(sock: socket.socket, conn: Connection, until: Any) -> list[Any]:
    """Write what ``conn`` has queued, then read and feed until ``until(events)`` is true; the events."""
    events: list[Any] = []
    while True:
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
        if until(events):
            return events
        data = sock.recv(65536)
        new = conn.receive_data(data)
        events.extend(new)
        if not data and not until(events):
            raise AssertionError(f"EOF before the expected events: {events}")


def messages_in(events: list[Any]) -> list[str | bytes]:
    return [e.data for e in events if isinstance(e, (TextMessage, BinaryMessage))]


# --------------------------------------------------------------------------- our client, their server


@pytest.fixture(params=[None, "deflate"], ids=["plain", "deflate"])
def websockets_server(request: pytest.FixtureRequest) -> Iterator[tuple[int, str | None]]:
    def echo(ws: Any) -> None:
        for message in ws:
            ws.send(message)

    with ws_serve(echo, "127.0.0.1", 0, compression=request.param, max_size=None) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server.socket.getsockname()[1], request.param
        finally:
            server.shutdown()
            thread.join(TIMEOUT)


@pytest.mark.parametrize("fragment_size", [None, 1000])
def test_our_client_connection_against_websockets_server(
    websockets_server: tuple[int, str | None], fragment_size: int | None
) -> None:
    port, compression = websockets_server
    extensions = [ClientPerMessageDeflate()] if compression else []
    conn = Connection(
        "client",
        host=f"127.0.0.1:{port}",
        path="/echo",
        extensions=extensions,
        max_message_size=None,
        fragment_size=fragment_size,
    )
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        (response,) = pump(sock, conn, lambda ev: bool(ev))
        assert isinstance(response, Response) and response.status_code == 101
        assert [ext.name for ext in conn.extensions] == (["permessage-deflate"] if compression else [])

        for message in MESSAGES:
            conn.send_message(message)
        conn.send_ping(b"ours")
        events = pump(sock, conn, lambda ev: len(messages_in(ev)) == len(MESSAGES) and Pong(b"ours") in ev)
        assert messages_in(events) == MESSAGES
        assert Pong(b"ours") in events  # the server answered our Ping (RFC 6455 section 5.5.3)

        conn.close(4001, "done")
        events = pump(sock, conn, lambda ev: any(isinstance(e, CloseReceived) for e in ev))
        assert [e for e in events if isinstance(e, CloseReceived)] == [CloseReceived(4001, "done")]
        # RFC 6455 section 7.1.1: the server closes TCP first; we see its EOF.
        assert sock.recv(1) == b""
        assert conn.closed and conn.close_code == 4001  # CLOSED by the Close exchange, before the EOF
        assert conn.receive_data(b"") == []  # so the EOF adds nothing (no 1006)
        assert conn.close_code == 4001


def test_our_client_connection_fails_on_a_bad_frame_from_websockets_server() -> None:
    """A real server sending an unmasked text frame with invalid UTF-8 gets our 1007 Close."""

    def bad(ws: Any) -> None:
        ws.send(b"\xc3\x28".decode("latin-1"))  # valid text for websockets: 'Ã('
        ws.socket.sendall(b"\x81\x02\xc3\x28")  # a raw frame: invalid UTF-8
        try:
            for _ in ws:
                pass
        except Exception:
            pass

    with ws_serve(bad, "127.0.0.1", 0, compression=None) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        port = server.socket.getsockname()[1]
        try:
            conn = Connection("client", host=f"127.0.0.1:{port}", extensions=[])
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
                # The frames may come in the same read as the 101 response: one pump for all of it.
                events = pump(sock, conn, lambda ev: any(isinstance(e, ProtocolViolation) for e in ev))
                assert isinstance(events[0], Response) and events[0].status_code == 101
                assert messages_in(events) == ["Ã("]
                violation = next(e for e in events if isinstance(e, ProtocolViolation))
                assert violation.code == 1007
                assert conn.close_sent is not None and conn.close_sent[0] == 1007
                sock.sendall(conn.data_to_send())
        finally:
            server.shutdown()
            thread.join(TIMEOUT)


# --------------------------------------------------------------------------- their client, our server


def serve_one(listener: socket.socket, deflate: bool, received: list[Any]) -> None:
    """Accept one connection and echo it with a bare server Connection until the close handshake ends."""
    sock, _ = listener.accept()
    with sock:
        sock.settimeout(TIMEOUT)
        extensions = [ServerPerMessageDeflate()] if deflate else []
        conn = Connection("server", extensions=extensions, max_message_size=None, subprotocols=["chat"])
        while not conn.closed:
            data = sock.recv(65536)
            for event in conn.receive_data(data):
                received.append(event)
                if isinstance(event, Request):
                    conn.accept()
                elif isinstance(event, TextMessage):
                    conn.send_text(event.data)
                elif isinstance(event, BinaryMessage):
                    conn.send_binary(event.data)
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
            if not data:
                break
        # RFC 6455 section 7.1.1: the server closes the TCP connection first.


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_websockets_client_against_our_server_connection(compression: str | None) -> None:
    received: list[Any] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        thread = threading.Thread(target=serve_one, args=(listener, compression is not None, received))
        thread.start()
        try:
            with ws_connect(
                f"ws://127.0.0.1:{port}/path?q=1",
                compression=compression,
                subprotocols=["chat"],  # type: ignore[list-item]
                max_size=None,
                open_timeout=TIMEOUT,
                close_timeout=TIMEOUT,
            ) as ws:
                assert ws.subprotocol == "chat"
                extensions = ws.protocol.extensions
                assert [type(e).__name__ for e in extensions] == (["PerMessageDeflate"] if compression else [])
                for message in MESSAGES:
                    ws.send(message)
                    assert ws.recv(timeout=TIMEOUT) == message
                ws.send(["frag", "mented"])  # one message in two frames
                assert ws.recv(timeout=TIMEOUT) == "fragmented"
                ws.ping(b"theirs").wait(TIMEOUT)
                ws.close(1000, "bye")
            assert ws.close_code == 1000 and ws.close_reason == "bye"
        finally:
            thread.join(TIMEOUT)
    assert not thread.is_alive()
    request = received[0]
    assert isinstance(request, Request) and request.path == "/path?q=1"
    assert Ping(b"theirs") in received
    assert CloseReceived(1000, "bye") in received
    assert received[-1] == Closed(1000, "bye", was_clean=True)
