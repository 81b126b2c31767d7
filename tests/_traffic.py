"""The server side of the server-to-client interop scenario whose client is ``tests/interop/apps/traffic.mjs``
(headless Chromium through ``apps/traffic.html``, Node through ``node_client.mjs traffic``).

:func:`traffic_handler` sends three fragmented messages, a burst of :data:`BURST` compressed text messages and
a 1 MiB text message; then, while the client stays silent, it samples ``ws.latency`` (set by each Pong that
answers a keepalive Ping) and echoes the client's message after the silence. :func:`run_traffic` runs it
under a server with a 0.2 s ``ping_interval`` and ends with ``server.close()`` (1001, "going away"); the
client's result and the server's record are checked by :func:`check_traffic`. The client reaches the
server through a relay on 127.0.0.1 that reads the frame headers both ways, so the checks see the wire too:
fragments as separate frames, RSV1 (compressed) where expected, the burst's frames tiny thanks to context
takeover, every Ping answered by a Pong. The texts here and in ``traffic.mjs`` must stay the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from wscodec.asyncio import serve
from wscodec.errors import ConnectionClosed

__all__ = ["BURST", "IDLE", "MIB", "big_text", "burst_text", "check_traffic", "run_traffic"]

BURST = 200
IDLE = 1.5  # seconds the client stays silent (IDLE_MS in traffic.mjs)
MIB = 2**20
AFTER_IDLE = "after idle \u2713"
FRAGMENTED_TEXT = ("fragmented \u2713 ", "\u00e9" * 3000, " the end \U0001f680")
SPLIT_TEXT = "split \u2192 \u2713 \U0001f680".encode()
SPLIT_AT = (7, 11, 15)  # inside \u2192, \u2713 and \U0001f680: no fragment is valid UTF-8 on its own
PING_INTERVAL = 0.2
PING_TIMEOUT = 2.0


def burst_text(i: int) -> str:
    return f"burst {i:03d} " + "the quick brown fox jumps over the lazy dog " * 4 + str(i * i)


def big_text() -> str:
    lines: list[str] = []
    length = i = 0
    while length < MIB:
        line = f"{i} {chr(97 + i % 26) * (i % 61)}\n"
        lines.append(line)
        length += len(line)
        i += 1
    return "".join(lines)[:MIB]


async def _binary_fragments() -> AsyncIterator[bytes]:
    for k in range(3):
        await asyncio.sleep(0)
        yield bytes((i * 31 + k) & 0xFF for i in range(1000))


def traffic_handler(record: dict[str, Any], echoed: asyncio.Event) -> Callable[[Any], Awaitable[None]]:
    """The handler; ``record`` gets what the server saw, ``echoed`` is set once the echo after the silence is out."""

    async def handler(ws: Any) -> None:
        record.update(received=[], latencies=[], extra=[], close=None, error=None)
        try:
            await ws.send(list(FRAGMENTED_TEXT))
            cuts = (0, *SPLIT_AT, len(SPLIT_TEXT))
            await ws.send([SPLIT_TEXT[a:b] for a, b in itertools.pairwise(cuts)], text=True)
            await ws.send(_binary_fragments())
            for i in range(BURST):
                await ws.send(burst_text(i))
            await ws.send(big_text())
            record["received"].append(await asyncio.wait_for(ws.recv(), 15))
            # The client is silent now: every new value of latency is a Pong it sent for a keepalive Ping.
            sampler = asyncio.ensure_future(_sample_latency(ws, record["latencies"]))
            try:
                message = await asyncio.wait_for(ws.recv(), 15)
            finally:
                sampler.cancel()
            record["received"].append(message)
            await ws.send(message)
            echoed.set()
            async for extra in ws:  # until server.close()
                record["extra"].append(extra)
        except ConnectionClosed:
            pass
        except BaseException as exc:
            record["error"] = repr(exc)
            raise
        finally:
            record["close"] = (ws.close_code, ws.close_reason)
            echoed.set()  # (also when it failed: the test need not wait for its timeout)

    return handler


async def _sample_latency(ws: Any, latencies: list[float]) -> None:
    while True:
        if ws.latency and (not latencies or ws.latency != latencies[-1]):
            latencies.append(ws.latency)
        await asyncio.sleep(0.01)


class _FrameTap:
    """Reads one direction of a relayed WebSocket connection: skips the HTTP head, then keeps each frame's
    (opcode, FIN, RSV1, payload length), unmasking nothing (only the headers matter). Independent of wscodec's
    own frame code, so the wire is checked by something other than what wrote it."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, bool, bool, int]] = []
        self._buffer = bytearray()
        self._head_done = False

    def feed(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if not self._head_done:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            del buffer[: end + 4]
            self._head_done = True
        while len(buffer) >= 2:
            length, pos = buffer[1] & 0x7F, 2
            if length == 126:
                length, pos = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                length, pos = int.from_bytes(buffer[2:10], "big"), 10
            pos += 4 if buffer[1] & 0x80 else 0  # the client's masking key
            if len(buffer) < pos + length:
                return
            self.frames.append((buffer[0] & 0x0F, bool(buffer[0] & 0x80), bool(buffer[0] & 0x40), length))
            del buffer[: pos + length]


async def _relay(server_port: int, taps: list[tuple[_FrameTap, _FrameTap]]) -> asyncio.Server:
    """A TCP relay on 127.0.0.1 to ``server_port`` whose connections each append (server's frames, client's
    frames) to ``taps``."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tap: _FrameTap) -> None:
        try:
            while data := await reader.read(2**16):
                tap.feed(data)
                writer.write(data)
                await writer.drain()
            writer.write_eof()
        except OSError:  # (ConnectionResetError...) the other pipe sees it too
            writer.transport.abort()

    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", server_port)
        tap = (_FrameTap(), _FrameTap())
        taps.append(tap)
        try:
            await asyncio.wait_for(
                asyncio.gather(pipe(server_reader, client_writer, tap[0]), pipe(client_reader, server_writer, tap[1])),
                40,
            )
        finally:
            client_writer.transport.abort()
            server_writer.transport.abort()

    return await asyncio.start_server(relay, "127.0.0.1", 0)


async def run_traffic(
    client: Callable[[int, str], Awaitable[Any]], *, process_request: Any = None
) -> tuple[Any, dict[str, Any]]:
    """Serve :func:`traffic_handler` on 127.0.0.1, run ``client(port, url)`` (an awaitable that returns the
    client's result; ``url`` is the WebSocket's, through a relay that reads the frames both ways), close the
    server with 1001 once the echo after the silence is out; (result, record), the frames in ``record["wire"]``."""
    record: dict[str, Any] = {}
    echoed = asyncio.Event()
    taps: list[tuple[_FrameTap, _FrameTap]] = []
    async with serve(
        traffic_handler(record, echoed),
        "127.0.0.1",
        0,
        process_request=process_request,
        ping_interval=PING_INTERVAL,
        ping_timeout=PING_TIMEOUT,
        close_timeout=5,
    ) as server:
        assert server.port is not None
        relay = await _relay(server.port, taps)
        relay_port = relay.sockets[0].getsockname()[1]
        task = asyncio.ensure_future(client(server.port, f"ws://127.0.0.1:{relay_port}/ws"))
        try:
            waiter = asyncio.ensure_future(echoed.wait())
            await asyncio.wait({task, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            server.close()  # 1001 "going away" to every connection
            await asyncio.wait_for(server.wait_closed(), 10)
            result = await asyncio.wait_for(task, 30)
        finally:
            relay.close()
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
    record["wire"] = [(down.frames, up.frames) for down, up in taps]
    return result, record


def check_traffic(result: dict[str, Any], record: dict[str, Any], *, echoed_reason: str) -> None:
    """What both clients must have seen, and the server with them. The server's ``close_reason`` is the
    reason of the client's answering Close, ``echoed_reason``: Chromium repeats ours, Node's undici sends the
    code alone."""
    assert result["errors"] == [], result
    assert result["opened"] is True
    # Compressed, with context takeover both ways (Deflate's default): no *_no_context_takeover agreed.
    assert "permessage-deflate" in result["extensions"], result["extensions"]
    assert "no_context_takeover" not in result["extensions"], result["extensions"]
    assert result["fragments"] == {"text": True, "split_utf8": True, "binary": True}, result
    assert result["burst"] == {"count": BURST, "bad": []}, result["burst"]
    assert result["big"] == {"length": MIB, "ok": True}
    assert result["unexpected"] == [], result["unexpected"]
    assert result["idle_ms"] >= IDLE * 1000 - 50, result["idle_ms"]
    assert result["echo_after_idle"] is True
    assert result["close"] == {"code": 1001, "reason": "going away", "wasClean": True}, result["close"]

    assert record["error"] is None, record
    assert record["received"] == ["received", AFTER_IDLE], record["received"]
    # 1.5 s of silence at one Ping per 0.2 s: about 7 Pongs; at least 3 must have been seen.
    assert len(record["latencies"]) >= 3, record["latencies"]
    assert all(0 < latency < PING_TIMEOUT for latency in record["latencies"]), record["latencies"]
    assert record["extra"] == [], record["extra"]
    assert record["close"] == (1001, echoed_reason), record["close"]

    # On the wire (the relay's reading of the headers): one connection; the server's data frames...
    assert len(record["wire"]) == 1, record["wire"]
    down, up = record["wire"][0]
    data = [frame for frame in down if frame[0] < 8]
    text, cont, binary = 1, 0, 2
    # ...three fragmented messages, each compressed as one message (a fragmented send cannot know it will
    # stay under compress_threshold, so RSV1 on its first frame): 3 str fragments, 4 cuts of UTF-8, an async
    # generator's 3 fragments and the empty frame that ends them (deflate's few bytes for no data),
    assert [frame[:3] for frame in data[:11]] == [
        (text, False, True), (cont, False, False), (cont, True, False),
        (text, False, True), (cont, False, False), (cont, False, False), (cont, True, False),
        (binary, False, True), (cont, False, False), (cont, False, False), (cont, True, False),
    ], data[:11]  # fmt: skip
    assert data[10][3] < 8, data[10]
    # ...the burst, each message one compressed frame; with context takeover all but the first are tiny
    # (each repeats the last; about 10 bytes, against about 60 compressed alone and 190 raw),
    burst = data[11 : 11 + BURST]
    assert all(frame[:3] == (text, True, True) for frame in burst), burst
    assert max(length for *_, length in burst[1:]) < 30, [length for *_, length in burst]
    # ...the 1 MiB text compressed, and the short echo after the silence not compressed.
    assert [frame[:3] for frame in data[11 + BURST :]] == [(text, True, True), (text, True, False)], data[11 + BURST :]
    assert data[11 + BURST][3] < MIB // 4, data[11 + BURST]
    # The keepalive: the server's Pings (0x9), each answered by a Pong (0xA) from the client, and the closing
    # handshake: the server's Close, then the client's.
    pings, pongs = sum(frame[0] == 0x9 for frame in down), sum(frame[0] == 0xA for frame in up)
    assert pings >= 3, down  # (about 8: one per 0.2 s and round trip, for 1.5 s of silence and the traffic)
    assert pongs == pings, (pings, pongs)
    assert down[-1][0] == 0x8 and up[-1][0] == 0x8, (down[-5:], up[-5:])
    assert [frame[0] for frame in up if frame[0] < 8] == [text, text], up
