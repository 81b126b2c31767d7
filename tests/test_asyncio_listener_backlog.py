"""Async message listeners under a peer faster than they are: at most ``max_queue`` of their tasks run.

One socket read may hold tens of thousands of tiny frames (a 6-byte masked empty frame: 43,690 in 256 KiB).
Started as a task each, they cost about two kilobytes apiece: a 300-fold amplification of what the peer
sent. The messages beyond ``max_queue`` running tasks wait as parsed, in order, and each task that ends hands
the next one over; what comes after them (the error of a protocol violation, the close event) waits behind
them, and when the last listener goes they move to ``recv()``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from test_asyncio_websocket import masked, raw_client, until, url

from wscodec.asyncio import MessageEvent, WebSocket, connect, serve

MAX_QUEUE = 8
COUNT = 5000  # tiny messages in one write: one or a few reads at the server


BAD_FRAME = bytes([0x83, 0x80]) + b"\x00" * 4  # a reserved opcode (3), masked and empty: 1002


def tiny_messages(count: int) -> bytes:
    return b"".join(masked(0x1, str(i).encode()) for i in range(count))


async def read_until_close(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """What the server sent before its Close frame, and the Close frame (unmasked frames of digits here)."""
    data = b""
    while b"\x88" not in data:
        chunk = await asyncio.wait_for(reader.read(65536), 10)
        assert chunk, f"the server closed without a Close frame: {data!r}"
        data += chunk
    while len(data) - data.index(b"\x88") < 4:
        data += await asyncio.wait_for(reader.read(65536), 10)
    return data[: data.index(b"\x88")], data[data.index(b"\x88") :]


class SlowListener:
    """An async onmessage that records each message in its first step and waits for ``release``."""

    def __init__(self, ws: WebSocket, *, reply: bool = False) -> None:
        self.ws = ws
        self.reply = reply
        self.release = asyncio.Event()
        self.log: list[Any] = []  # messages, then ("error", ...) and ("close", code) in the order fired
        self.peak = 0
        ws.onmessage = self.on_message
        ws.onerror = lambda event: self.log.append(("error", type(event.error).__name__))
        ws.onclose = lambda event: self.log.append(("close", event.code))

    async def on_message(self, event: MessageEvent) -> None:
        self.peak = max(self.peak, len(self.ws._callback_tasks))
        self.log.append(event.data)
        await self.release.wait()
        if self.reply:
            await self.ws.send(event.data)

    def messages(self) -> list[Any]:
        return [item for item in self.log if not isinstance(item, tuple)]


async def listening_server(**options: Any) -> tuple[Any, list[SlowListener]]:
    listeners: list[SlowListener] = []
    reply = options.pop("reply", False)

    async def handler(ws: WebSocket) -> None:
        listeners.append(SlowListener(ws, reply=reply))
        await ws.wait_closed()
        await asyncio.sleep(0.5)  # the handler's return must not cut the listeners short

    server = await serve(handler, "127.0.0.1", 0, compression=None, max_queue=MAX_QUEUE, **options)
    return server, listeners


async def served_afterwards(server: Any, listeners: list[SlowListener]) -> None:
    """After the attack, a fresh client is still served: its message reaches a listener of its own."""
    count = len(listeners)
    client = await connect(url(server), compression=None)
    await client.send("fresh")
    await until(lambda: len(listeners) == count + 1 and listeners[-1].log == ["fresh"])
    listeners[-1].release.set()
    await asyncio.wait_for(client.close(), 5)


async def test_one_read_of_tiny_messages_starts_at_most_max_queue_listener_tasks() -> None:
    server, listeners = await listening_server()
    async with server:
        _, writer = await raw_client(server.port)
        writer.write(tiny_messages(COUNT))
        await until(lambda: listeners and len(listeners[0].log) >= MAX_QUEUE)
        (listener,) = listeners
        ws = listener.ws
        await asyncio.sleep(0.3)  # time for the server to read and parse what was sent
        # Without the backlog, each message of the read got its task at once: thousands here.
        assert len(ws._callback_tasks) == MAX_QUEUE and listener.peak <= MAX_QUEUE
        assert len(listener.log) == MAX_QUEUE and len(ws._cb_backlog) >= 1000  # (a read or more parsed)
        assert ws._listeners_paused and not ws._transport_reading
        listener.release.set()
        await until(lambda: len(listener.log) == COUNT, timeout=30)
        assert listener.log == [str(i) for i in range(COUNT)]  # none lost, none reordered
        assert listener.peak <= MAX_QUEUE
        await until(lambda: not ws._callback_tasks and not ws._listeners_paused)
        writer.close()
        await served_afterwards(server, listeners)


async def test_the_error_of_a_violation_waits_behind_the_messages_and_their_replies_go_first() -> None:
    """Messages, then a frame with a reserved opcode, in one write, fewer than max_queue waiting beyond the
    running tasks: every message reaches the listener and its reply goes out before the Close (1002);
    onerror fires after the last message, onclose last."""
    count = MAX_QUEUE + MAX_QUEUE // 2
    server, listeners = await listening_server(reply=True)
    async with server:
        reader, writer = await raw_client(server.port)
        writer.write(tiny_messages(count) + BAD_FRAME)
        await until(lambda: listeners and len(listeners[0].log) >= MAX_QUEUE)
        (listener,) = listeners
        await asyncio.sleep(0.1)
        assert listener.log == [str(i) for i in range(MAX_QUEUE)]  # the error is held behind the rest
        assert listener.ws.ready_state == 1
        listener.release.set()
        replies, close = await read_until_close(reader)
        assert replies == b"".join(bytes([0x81, len(str(i))]) + str(i).encode() for i in range(count))
        assert close[2:4] == (1002).to_bytes(2, "big")
        writer.close()
        await until(lambda: ("close", 1002) in listener.log)
        assert listener.log == [*(str(i) for i in range(count)), ("error", "ProtocolError"), ("close", 1002)]
        await served_afterwards(server, listeners)


async def test_past_max_queue_waiting_the_violation_closes_at_once_and_the_messages_still_come_first() -> None:
    """As for recv(): with more than max_queue messages waiting, the replies cannot all go out, so the Close
    (1002) goes at once; the listener still gets every message, then onerror, then onclose."""
    count = 300
    server, listeners = await listening_server()
    async with server:
        reader, writer = await raw_client(server.port)
        writer.write(tiny_messages(count) + BAD_FRAME)
        replies, close = await read_until_close(reader)
        assert replies == b"" and close[2:4] == (1002).to_bytes(2, "big")
        (listener,) = listeners
        await asyncio.sleep(0.1)
        assert listener.log == [str(i) for i in range(MAX_QUEUE)]  # neither error nor close yet
        assert listener.peak <= MAX_QUEUE
        listener.release.set()
        await until(lambda: ("close", 1002) in listener.log)
        assert listener.log == [*(str(i) for i in range(count)), ("error", "ProtocolError"), ("close", 1002)]
        assert listener.peak <= MAX_QUEUE
        writer.close()
        await served_afterwards(server, listeners)


async def test_the_close_event_waits_behind_the_messages_still_waiting_for_a_listener() -> None:
    count = 400
    server, listeners = await listening_server()
    async with server:
        _, writer = await raw_client(server.port)
        writer.write(tiny_messages(count) + masked(0x8, (1000).to_bytes(2, "big")))
        await until(lambda: listeners and listeners[0].ws._lost)
        (listener,) = listeners
        assert listener.log == [str(i) for i in range(MAX_QUEUE)]  # the close event has not fired
        listener.release.set()
        await until(lambda: ("close", 1000) in listener.log)
        assert listener.log == [*(str(i) for i in range(count)), ("close", 1000)]
        writer.close()
        await served_afterwards(server, listeners)


async def test_messages_waiting_for_a_listener_go_to_recv_when_it_is_removed() -> None:
    count = 200
    taken: list[str] = []
    server, listeners = await listening_server()
    async with server:
        _, writer = await raw_client(server.port)
        writer.write(tiny_messages(count))
        await until(lambda: listeners and len(listeners[0].ws._cb_backlog) > 0)
        (listener,) = listeners
        ws = listener.ws
        ws.onmessage = None
        assert not ws._cb_backlog
        while len(listener.log) + len(taken) < count:
            taken.append(str(await asyncio.wait_for(ws.recv(), 5)))
        assert listener.log + taken == [str(i) for i in range(count)]
        listener.release.set()
        writer.close()
        await served_afterwards(server, listeners)


async def test_messages_queued_before_a_listener_appears_wait_their_turn_too() -> None:
    """recv()'s queue handed over to a listener set later: no more than max_queue tasks at once either."""
    count = 200
    handlers: list[WebSocket] = []

    async def handler(ws: WebSocket) -> None:
        handlers.append(ws)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None, max_queue=None) as server:
        _, writer = await raw_client(server.port)
        writer.write(tiny_messages(count))
        await until(lambda: handlers and len(handlers[0]._queue) == count)
        (ws,) = handlers
        ws.max_queue = MAX_QUEUE
        listener = SlowListener(ws)
        await until(lambda: len(listener.log) == MAX_QUEUE)
        await asyncio.sleep(0.1)
        assert len(listener.log) == MAX_QUEUE and len(ws._callback_tasks) == MAX_QUEUE
        assert len(ws._cb_backlog) == count - MAX_QUEUE
        listener.release.set()
        await until(lambda: len(listener.log) == count)
        assert listener.log == [str(i) for i in range(count)] and listener.peak <= MAX_QUEUE
        writer.close()
        client = await connect(url(server), compression=None)  # a fresh client is still served
        await client.send("fresh")
        await until(lambda: len(handlers) == 2 and len(handlers[1]._queue) == 1)
        assert await handlers[1].recv() == "fresh"
        await asyncio.wait_for(client.close(), 5)
