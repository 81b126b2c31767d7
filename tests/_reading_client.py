"""A client that reads everything the server sends, slowly at first: a small receive buffer and half a
second before it reads, so the server's transport is over its high-water mark by then. What a server must
still deliver in full, whatever went wrong on the connection meanwhile.
"""

from __future__ import annotations

import asyncio
import socket

UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def read_slowly(port: int, after_upgrade: bytes = b"", timeout: float = 10.0) -> tuple[bytes, bytes]:
    """Send the upgrade request to ``127.0.0.1:port``, then ``after_upgrade``, then read up to the end of
    the connection (each read within ``timeout``); the server's answer head and what followed it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
    chunks = []
    try:
        writer.write(UPGRADE)
        await asyncio.sleep(0.5)
        if after_upgrade:
            writer.write(after_upgrade)
            await asyncio.sleep(0.3)
        try:
            while chunk := await asyncio.wait_for(reader.read(1 << 20), timeout):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    finally:
        writer.transport.abort()
    head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
    return head, rest


def assert_message_then_close(frames: bytes, size: int, code: int) -> None:
    """``frames`` is one unmasked binary message of ``size`` bytes (a 64-bit length), then a Close with
    ``code``: nothing cut, nothing in between."""
    assert len(frames) >= size + 10 + 4, f"got {len(frames)} bytes, expected the {size}-byte message and a Close"
    assert frames[:2] == b"\x82\x7f" and int.from_bytes(frames[2:10], "big") == size, frames[:10]
    close = frames[size + 10 :]
    assert close[0] == 0x88 and close[2:4] == code.to_bytes(2, "big"), frames[size : size + 20]
