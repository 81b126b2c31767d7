"""A burst of small compressed frames that each inflate to ``max_size``, against an application that reads
none yet: the asyncio and threaded servers read at most INFLATING_READ bytes at a time once
permessage-deflate is on, so what waits in memory is ``max_queue`` messages plus what one such read
inflates to, not what a 256 KiB (asyncio) or 64 KiB (threaded) read of them does (up to 256 MiB).

Memory is measured with tracemalloc (the decompressed payloads are Python bytes objects), as the peak
while the burst is read; then the application reads every message, none lost, and a fresh client is served.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
import tracemalloc
import zlib
from typing import Any

import pytest

import wscodec.asyncio
import wscodec.sync
from wscodec.compression import INFLATING_READ

pytestmark = pytest.mark.timeout(120)

MiB = 1 << 20
COUNT = 300
MAX_QUEUE = 16
UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
)
#: max_queue messages, what one read inflates to (DEFLATE: at most about 1032 to 1), one message more
#: (the one a paused read completes) and room for the rest of the process's allocations meanwhile.
BOUND = MAX_QUEUE * MiB + 1032 * INFLATING_READ + MiB + 8 * MiB


def compressed_frame(payload: bytes) -> bytes:
    """One masked binary frame of ``payload``, compressed on its own (RSV1), as a client sends it."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -9)
    body = (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(body))
    assert 126 <= len(body) < 65536
    return bytes([0xC2, 0x80 | 126]) + struct.pack("!H", len(body)) + mask + masked


CLOSE = bytes([0x88, 0x82]) + b"\x01\x02\x03\x04" + bytes(b ^ k for b, k in zip(b"\x03\xe8", b"\x01\x02", strict=True))


def burst_and_peak(port: int, settle: float) -> tuple[int, socket.socket]:
    """Upgrade with permessage-deflate, send COUNT compressed 1 MiB messages at once; the peak of traced
    memory while the server reads what it will before pausing."""
    sock = socket.create_connection(("127.0.0.1", port), 10)
    sock.settimeout(10)
    sock.sendall(UPGRADE)
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101") and b"permessage-deflate" in head.lower(), head
    tracemalloc.start()
    try:
        sock.sendall(compressed_frame(bytes(MiB)) * COUNT)
        time.sleep(settle)
        return tracemalloc.get_traced_memory()[1], sock
    finally:
        tracemalloc.stop()


def finish(sock: socket.socket) -> None:
    """Our Close, then read to the end: the server's Close comes after the application read everything."""
    with sock:
        sock.sendall(CLOSE)
        while sock.recv(65536):
            pass


async def test_asyncio_server() -> None:
    release = asyncio.Event()
    counted: list[int] = []

    async def handler(ws: Any) -> None:
        if ws.request.path == "/next":
            await ws.send("served")
            return
        await release.wait()
        count = 0
        async for message in ws:
            assert message == bytes(MiB)
            count += 1
        counted.append(count)

    async with wscodec.asyncio.serve(
        handler, "127.0.0.1", 0, compression="deflate", max_size=MiB, max_queue=MAX_QUEUE, ping_interval=None
    ) as server:
        peak, sock = await asyncio.to_thread(burst_and_peak, server.port, 1.0)
        assert peak <= BOUND, f"{peak / MiB:.0f} MiB held for an application that reads nothing"
        release.set()
        await asyncio.to_thread(finish, sock)
        for _ in range(200):
            if counted:
                break
            await asyncio.sleep(0.05)
        assert counted == [COUNT]
        async with wscodec.asyncio.connect(f"ws://127.0.0.1:{server.port}/next") as ws:
            assert await asyncio.wait_for(ws.recv(), 10) == "served"


def test_threaded_server() -> None:
    release = threading.Event()
    counted: list[int] = []

    def handler(ws: Any) -> None:
        if ws.request.path == "/next":
            ws.send("served")
            return
        assert release.wait(30)
        count = 0
        for message in ws:
            assert message == bytes(MiB)
            count += 1
        counted.append(count)

    server = wscodec.sync.serve(
        handler, "127.0.0.1", 0, compression="deflate", max_size=MiB, max_queue=MAX_QUEUE, ping_interval=None
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.socket.getsockname()[1]
        peak, sock = burst_and_peak(port, 1.0)
        assert peak <= BOUND, f"{peak / MiB:.0f} MiB held for an application that reads nothing"
        release.set()
        finish(sock)
        deadline = time.monotonic() + 10
        while not counted and time.monotonic() < deadline:
            time.sleep(0.05)
        assert counted == [COUNT]
        with wscodec.sync.connect(f"ws://127.0.0.1:{port}/next") as ws:
            assert ws.recv(timeout=10) == "served"
    finally:
        server.shutdown()
        thread.join(10)
