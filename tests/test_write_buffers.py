"""Large payloads reach a real transport without a copy, small frames still coalesced (``write_buffers``).

Runs on asyncio's default loop and on uvloop (conftest): a real TCP connection over loopback, the receiving
side decoding what arrived with an independent FrameDecoder.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from wscodec import FrameDecoder, encode_frame
from wscodec._write import write_buffers
from wscodec.connection import ZERO_COPY_MIN, Connection


class _Collect(asyncio.Protocol):
    def __init__(self, expected: int, done: asyncio.Future[bytes]) -> None:
        self.data = bytearray()
        self.expected = expected
        self.done = done

    def data_received(self, data: bytes) -> None:
        self.data += data
        if len(self.data) >= self.expected and not self.done.done():
            self.done.set_result(bytes(self.data))


class _Observed:
    """The real transport, with a record of the calls made to it."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.calls: list[tuple[str, list[Any]]] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", [data]))
        self.transport.write(data)

    def writelines(self, data: list[bytes]) -> None:
        self.calls.append(("writelines", list(data)))
        self.transport.writelines(data)


async def test_large_payload_goes_to_writelines_by_reference_and_small_frames_are_joined() -> None:
    loop = asyncio.get_running_loop()
    conn = Connection.established("server", max_message_size=None)
    big = os.urandom(ZERO_COPY_MIN * 4 + 3)
    conn.send_text("a")
    conn.send_text("b")
    conn.send_binary(big)
    conn.send_binary(b"tail")
    expected = encode_frame(1, b"a") + encode_frame(1, b"b") + encode_frame(2, big) + encode_frame(2, b"tail")
    done: asyncio.Future[bytes] = loop.create_future()
    server = await loop.create_server(lambda: _Collect(len(expected), done), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    try:
        observed = _Observed(transport)
        write_buffers(observed, conn.data_to_send_buffers())
        assert len(observed.calls) == 1 and observed.calls[0][0] == "writelines"
        parts = observed.calls[0][1]
        assert len(parts) == 3
        assert parts[0] == encode_frame(1, b"a") + encode_frame(1, b"b") + encode_frame(2, big)[:10]
        assert parts[1] is big  # handed over, not copied
        assert parts[2] == encode_frame(2, b"tail")
        received = await asyncio.wait_for(done, 30)
    finally:
        transport.close()
        server.close()
        await server.wait_closed()
    assert received == expected
    frames = FrameDecoder("client", None).feed(received)
    assert [f.payload for f in frames] == [b"a", b"b", big, b"tail"]


async def test_small_frames_only_make_one_write() -> None:
    loop = asyncio.get_running_loop()
    conn = Connection.established("server")
    for i in range(10):
        conn.send_binary(bytes([i]) * 100)
    expected = b"".join(encode_frame(2, bytes([i]) * 100) for i in range(10))
    done: asyncio.Future[bytes] = loop.create_future()
    server = await loop.create_server(lambda: _Collect(len(expected), done), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    try:
        observed = _Observed(transport)
        write_buffers(observed, conn.data_to_send_buffers())
        assert observed.calls == [("write", [expected])]
        assert await asyncio.wait_for(done, 30) == expected
    finally:
        transport.close()
        server.close()
        await server.wait_closed()
