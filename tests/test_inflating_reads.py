"""A burst of small compressed frames that each inflate to ``max_size``, against an application that reads
none yet: the asyncio and threaded servers read at most INFLATING_READ bytes at a time once
permessage-deflate is on, so what waits in memory is ``max_queue`` messages plus what one such read
inflates to, not what a 256 KiB (asyncio) or 64 KiB (threaded) read of them does (up to 256 MiB).

Memory is measured with tracemalloc (the decompressed payloads are Python bytes objects), as the peak
while the burst is read; then the application reads every message, none lost, and a fresh client is served.
The same holds for frames sent in the same write as the upgrade request, and for clients against a server
that sends them right behind its 101: the opening handshake is read INFLATING_READ bytes at a time too.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
import threading
import time
import tracemalloc
import zlib
from typing import Any

import pytest
from _raw_handshake import accept_key

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


def burst_and_peak(port: int, settle: float, pipelined: bool = False) -> tuple[int, socket.socket]:
    """Upgrade with permessage-deflate, send COUNT compressed 1 MiB messages at once; the peak of traced
    memory while the server reads what it will before pausing. ``pipelined``: the burst goes in the same
    write as the request, before the 101 (a client may send frames optimistically), so the read that
    completes the request already holds frames."""
    burst = compressed_frame(bytes(MiB)) * COUNT
    sock = socket.create_connection(("127.0.0.1", port), 10)
    sock.settimeout(10)
    tracemalloc.start()
    try:
        if pipelined:
            sock.sendall(UPGRADE + burst)
        else:
            sock.sendall(UPGRADE)
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101") and b"permessage-deflate" in head.lower(), head
        if not pipelined:
            tracemalloc.reset_peak()
            sock.sendall(burst)
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


@pytest.mark.parametrize("pipelined", [False, True], ids=["after-101", "pipelined"])
async def test_asyncio_server(pipelined: bool) -> None:
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
        peak, sock = await asyncio.to_thread(burst_and_peak, server.port, 1.0, pipelined)
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


@pytest.mark.parametrize("pipelined", [False, True], ids=["after-101", "pipelined"])
def test_threaded_server(pipelined: bool) -> None:
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
        peak, sock = burst_and_peak(port, 1.0, pipelined)
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


def server_frame(payload: bytes) -> bytes:
    """One unmasked binary frame of ``payload``, compressed on its own (RSV1), as a server sends it."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -9)
    body = (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    return bytes([0xC2, 126]) + struct.pack("!H", len(body)) + body


class PipeliningServer:
    """A hostile server on loopback: it answers the upgrade with permessage-deflate and, in the same write,
    COUNT compressed 1 MiB messages, then waits (bounded) for the client to go."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(20)
        with self.listener, contextlib.suppress(OSError):
            sock, _ = self.listener.accept()
            with sock:
                sock.settimeout(20)
                request = b""
                while b"\r\n\r\n" not in request:
                    request += sock.recv(4096)
                key = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", request)
                assert key is not None
                accept = accept_key(key.group(1))
                offer = re.search(rb"(?i)sec-websocket-extensions:\s*([^\r]*)", request)
                assert offer is not None and offer.group(1).startswith(b"permessage-deflate"), request
                # Accepted as offered, but for a bare client_max_window_bits (a hint a response may not echo).
                params = [p.strip() for p in offer.group(1).split(b",")[0].split(b";")]
                agreed = b"; ".join(p for p in params if p.lower() != b"client_max_window_bits")
                head = RESPONSE.replace(b"{accept}", accept).replace(b"{extensions}", agreed)
                sock.sendall(head + server_frame(bytes(MiB)) * COUNT)
                while sock.recv(65536):
                    pass


RESPONSE = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Extensions: {extensions}\r\n\r\n"
)


async def test_asyncio_client_against_frames_pipelined_behind_the_101() -> None:
    server = PipeliningServer()
    tracemalloc.start()
    try:
        ws = await wscodec.asyncio.connect(
            f"ws://127.0.0.1:{server.port}/", compression="deflate", max_size=MiB, max_queue=MAX_QUEUE,
            ping_interval=None, open_timeout=10,
        )  # fmt: skip
        await asyncio.sleep(1.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    try:
        assert ws.extensions
        assert peak <= BOUND, f"{peak / MiB:.0f} MiB held for an application that reads nothing"
        for _ in range(COUNT):
            assert await asyncio.wait_for(ws.recv(), 10) == bytes(MiB)
    finally:
        await ws.close()
    await asyncio.to_thread(server.thread.join, 10)


def test_threaded_client_against_frames_pipelined_behind_the_101() -> None:
    server = PipeliningServer()
    tracemalloc.start()
    try:
        ws = wscodec.sync.connect(
            f"ws://127.0.0.1:{server.port}/", compression="deflate", max_size=MiB, max_queue=MAX_QUEUE,
            ping_interval=None, open_timeout=10,
        )  # fmt: skip
        time.sleep(1.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    with ws:
        assert peak <= BOUND, f"{peak / MiB:.0f} MiB held for an application that reads nothing"
        for _ in range(COUNT):
            assert ws.recv(timeout=10) == bytes(MiB)
    server.thread.join(10)
