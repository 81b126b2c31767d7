"""The threaded API: a close that races a full message queue must not cost a message.

Real sockets over loopback, a raw one for the peer; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from wscodec import ConnectionClosedOK
from wscodec.sync import Server, WebSocket, connect, serve

pytestmark = pytest.mark.timeout(60)

UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(10)
        assert not thread.is_alive()


def masked_frame(opcode: int, payload: bytes) -> bytes:
    assert len(payload) < 126
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + mask + masked


def test_close_with_a_full_queue_loses_no_message() -> None:
    """max_queue=4: four messages and a Close arrive while the handler is busy. The close needs no room in
    the full queue: the handler gets the four, in order, then ConnectionClosedOK."""
    got: list[Any] = []
    done = threading.Event()

    def handler(ws: WebSocket) -> None:
        try:
            assert ws.wait_closed(10)  # busy until the connection is over: the four wait in a full queue
            while True:
                got.append(ws.recv(timeout=5))
        except Exception as exc:  # the assertions look at it
            got.append(exc)
        finally:
            done.set()

    server = serve(handler, "127.0.0.1", 0, max_queue=4, ping_interval=None, close_timeout=2)
    with running(server):
        with socket.create_connection(("127.0.0.1", server.port or 0), 10) as sock:
            sock.settimeout(10)
            sock.sendall(UPGRADE)
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(4096)
                assert chunk
                answer += chunk
            for i in range(4):
                sock.sendall(masked_frame(1, f"msg-{i}".encode()))
            sock.sendall(masked_frame(8, struct.pack("!H", 1000)))
            while chunk := sock.recv(4096):  # the server's Close, then its end of TCP
                answer += chunk
        assert done.wait(10)
    assert got[:4] == ["msg-0", "msg-1", "msg-2", "msg-3"], got
    assert len(got) == 5 and isinstance(got[4], ConnectionClosedOK) and got[4].code == 1000, got


def test_close_with_a_full_queue_loses_no_message_client_side() -> None:
    """The same on the client: the server sends four messages and closes before the client reads any."""

    def handler(ws: WebSocket) -> None:
        for i in range(4):
            ws.send(f"msg-{i}")
        ws.close()

    with running(serve(handler, "127.0.0.1", 0, ping_interval=None)) as server:
        ws = connect(f"ws://127.0.0.1:{server.port}/", max_queue=4, ping_interval=None, close_timeout=2)
        assert ws.wait_closed(10)
        assert [ws.recv(timeout=5) for _ in range(4)] == ["msg-0", "msg-1", "msg-2", "msg-3"]
        with pytest.raises(ConnectionClosedOK):
            ws.recv(timeout=5)
