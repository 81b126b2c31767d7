"""A client that sends on after the server failed the connection: what must still read the server's Close
(a reset would destroy it) and what must be cut off after a bounded time if it never stops.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time

from wscodec import encode_frame

UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
KEY = b"\x01\x02\x03\x04"


def send_too_big_and_keep_sending(port: int, seconds: float, *, stop_at_eof: bool = True) -> int | None:
    """A client in its own thread (so that it sends while the server runs): upgrade, send a message over the
    server's max_size, then keep sending frames as fast as the socket takes them for ``seconds`` (or, with
    ``stop_at_eof``, until the server's EOF, as a client that read the Close) while reading. Returns the
    code of the Close frame the server sent first (None if none came before the end or a reset)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    received = bytearray()
    try:
        sock.sendall(UPGRADE)
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(4096)
            assert chunk, "no 101"
            received += chunk
        del received[: received.index(b"\r\n\r\n") + 4]
        sock.setblocking(False)
        frame = encode_frame(2, b"x" * 5000, mask=KEY)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(BlockingIOError):
                sock.send(frame)
            with contextlib.suppress(BlockingIOError):
                chunk = sock.recv(65536)
                if not chunk and stop_at_eof:
                    break
                received += chunk
    except OSError:  # a reset (ECONNRESET, EPIPE): what was read before it is what counts
        pass
    finally:
        sock.close()
    if len(received) < 4 or received[0] != 0x88:
        return None
    code: int = struct.unpack("!H", received[2:4])[0]
    return code
