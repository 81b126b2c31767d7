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

import pytest
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


async def test_swapping_the_listener_keeps_error_and_close_behind_the_waiting_messages() -> None:
    """remove_event_listener(f) then add_event_listener(g) in one step, with messages waiting and an error
    and the close held behind them: g gets every message waiting before onerror and onclose fire."""
    count = 300  # (more than max_queue waiting: the Close goes at once, the events wait)
    server, listeners = await listening_server()
    async with server:
        _, writer = await raw_client(server.port)
        writer.write(tiny_messages(count) + BAD_FRAME)
        await until(lambda: listeners and listeners[0].ws._lost)
        (first,) = listeners
        ws = first.ws

        async def second(event: MessageEvent) -> None:
            first.log.append(event.data)

        ws.onmessage = None
        ws.add_event_listener("message", second)
        first.release.set()
        await until(lambda: ("close", 1002) in first.log)
        await asyncio.sleep(0.05)
        assert first.log == [*(str(i) for i in range(count)), ("error", "ProtocolError"), ("close", 1002)]
        writer.close()
        await served_afterwards(server, listeners)


async def test_the_close_event_does_not_overtake_the_last_message_handed_over() -> None:
    """The transport ends in the very loop step the last waiting message is handed to a new task: that
    task's listener still runs before onclose."""
    log: list[Any] = []
    waits: dict[str, asyncio.Future[None]] = {}
    handlers: list[WebSocket] = []

    async def handler(ws: WebSocket) -> None:
        async def listener(event: MessageEvent) -> None:
            log.append(event.data)
            waits[event.data] = asyncio.get_running_loop().create_future()
            await waits[event.data]

        handlers.append(ws)
        ws.onmessage = listener
        ws.onclose = lambda event: log.append(("close", event.code))
        await ws.wait_closed()
        await asyncio.sleep(0.2)

    async with serve(handler, "127.0.0.1", 0, compression=None, max_queue=1) as server:
        _, writer = await raw_client(server.port)
        writer.write(tiny_messages(2))
        await until(lambda: "0" in waits and len(handlers[0]._cb_backlog) == 1)
        transport = handlers[0].transport
        assert transport is not None
        waits["0"].set_result(None)  # its task ends in the next step, and hands "1" over in the one after
        asyncio.get_running_loop().call_soon(transport.abort)  # the transport ends in between
        await until(lambda: ("close", 1006) in log)
        await asyncio.sleep(0.05)
        assert log == ["0", "1", ("close", 1006)]
        waits["1"].set_result(None)
        writer.close()


async def test_listener_tasks_cancelled_from_outside_start_no_more_and_the_close_still_fires() -> None:
    """What asyncio.run() does to every task as it ends: the tasks cancelled hand nothing over (a task
    started then would be destroyed pending); once none is left, the waiting messages are dropped and the
    close event held behind them fires."""
    server, listeners = await listening_server()
    async with server:
        _, writer = await raw_client(server.port)
        writer.write(tiny_messages(300) + masked(0x8, (1000).to_bytes(2, "big")))
        await until(lambda: listeners and listeners[0].ws._lost)
        (listener,) = listeners
        ws = listener.ws
        assert ws._cb_backlog and ws._close_held
        for task in list(ws._callback_tasks):
            task.cancel()
        await until(lambda: ("close", 1000) in listener.log)
        assert listener.log == [*(str(i) for i in range(MAX_QUEUE)), ("close", 1000)]
        assert not ws._callback_tasks and not ws._cb_backlog
        writer.close()
        await served_afterwards(server, listeners)


async def test_a_long_lived_listener_task_does_not_stop_reading_while_slots_are_free() -> None:
    """max_queue=2 and one message whose task lives on (a subscription, say): the others still arrive."""
    got: list[str] = []
    forever = asyncio.Event()
    handlers: list[WebSocket] = []

    async def handler(ws: WebSocket) -> None:
        async def listener(event: MessageEvent) -> None:
            got.append(event.data)
            if event.data == "subscribe":
                await forever.wait()

        handlers.append(ws)
        ws.onmessage = listener
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None, max_queue=2) as server:
        client = await connect(url(server), compression=None)
        await client.send("subscribe")
        for i in range(10):  # one at a time: one read each, each read after the last task ended
            await client.send(str(i))
            await until(lambda n=i + 2: len(got) == n and len(handlers[0]._callback_tasks) == 1)
        assert got == ["subscribe", *(str(i) for i in range(10))]
        assert len(handlers[0]._callback_tasks) == 1
        forever.set()
        await client.close()


async def test_messages_left_to_recv_streaming_hold_back_no_error_or_close() -> None:
    """A listener set while recv_streaming() is part-way through a message: the rest of that message is the
    stream's, not the listeners', so an error and the close behind it are not held for it (they were, for
    ever)."""
    log: list[Any] = []
    pieces: list[str] = []
    started = asyncio.Event()
    handlers: list[WebSocket] = []

    async def handler(ws: WebSocket) -> None:
        handlers.append(ws)

        async def listener(event: MessageEvent) -> None:
            log.append(event.data)

        ws.onerror = lambda event: log.append(("error", type(event.error).__name__))
        ws.onclose = lambda event: log.append(("close", event.code))
        stream = ws.recv_streaming()
        pieces.append(await stream.__anext__())
        ws.onmessage = listener
        started.set()
        await asyncio.sleep(0.2)  # the rest of the message and the bad frame arrive meanwhile
        async for piece in stream:
            pieces.append(piece)
        await ws.wait_closed()

    # max_queue=1 and two messages queued when the bad frame comes: the connection fails at once.
    async with serve(handler, "127.0.0.1", 0, compression=None, max_queue=1) as server:
        _, writer = await raw_client(server.port)
        writer.write(masked(0x1, b"first ", fin=False))
        await asyncio.wait_for(started.wait(), 5)
        writer.write(masked(0x0, b"last", fin=True) + masked(0x1, b"next") + BAD_FRAME)
        await until(lambda: ("close", 1002) in log)
        assert [item for item in log if isinstance(item, tuple)] == [("error", "ProtocolError"), ("close", 1002)]
        await until(lambda: pieces == ["first ", "last"])  # the stream still gets the rest of its message
        writer.close()


async def test_messages_behind_a_streamed_message_reach_a_listener_set_meanwhile() -> None:
    """A listener set while recv_streaming() is part-way through a message: the messages that queued behind
    that message are the listener's once the stream takes its last piece, in order and ahead of those that
    come later (they stayed in the queue, unseen, while the later ones waited behind them)."""
    got: list[Any] = []
    pieces: list[str] = []
    started = asyncio.Event()

    async def handler(ws: WebSocket) -> None:
        stream = ws.recv_streaming()
        pieces.append(await stream.__anext__())
        ws.onmessage = lambda event: got.append(event.data)
        started.set()
        await asyncio.sleep(0.2)  # the rest of the message and two more arrive meanwhile
        async for piece in stream:
            pieces.append(piece)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        _, writer = await raw_client(server.port)
        writer.write(masked(0x1, b"first ", fin=False))
        await asyncio.wait_for(started.wait(), 5)
        writer.write(masked(0x0, b"last", fin=True) + masked(0x1, b"m1") + masked(0x1, b"m2"))
        await until(lambda: pieces == ["first ", "last"])
        await until(lambda: got == ["m1", "m2"])
        writer.write(masked(0x1, b"m3"))
        await until(lambda: got == ["m1", "m2", "m3"])
        writer.close()


async def stream_then_message_then_close(port: int, started: asyncio.Event) -> asyncio.StreamWriter:
    """A raw client: the first piece of a message; once the handler is ``started`` (its listener set
    while its stream is part-way), the last piece, a message ``m1`` and a Close (1000)."""
    _, writer = await raw_client(port)
    writer.write(masked(0x1, b"first ", fin=False))
    await asyncio.wait_for(started.wait(), 5)
    writer.write(masked(0x0, b"last", fin=True) + masked(0x1, b"m1") + masked(0x8, b"\x03\xe8"))
    return writer


async def test_a_close_behind_messages_queued_behind_a_streamed_message_waits_for_them() -> None:
    """The same, the peer closing right behind those messages: the close event comes after them, as
    everywhere else (it came first, the messages reaching the listener after the close)."""
    log: list[Any] = []
    started = asyncio.Event()

    async def handler(ws: WebSocket) -> None:
        stream = ws.recv_streaming()
        await stream.__anext__()
        ws.onmessage = lambda event: log.append(event.data)
        ws.onclose = lambda event: log.append(("close", event.code))
        started.set()
        await asyncio.sleep(0.2)  # the rest of the message, a message and the Close arrive meanwhile
        async for _piece in stream:
            pass
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        writer = await stream_then_message_then_close(server.port, started)
        await until(lambda: ("close", 1000) in log)
        assert log == ["m1", ("close", 1000)]
        writer.close()


@pytest.mark.parametrize("then", ["abandon the stream", "remove the listener"])
async def test_a_close_behind_a_stream_that_is_never_finished_still_fires(then: str) -> None:
    """The same, but the stream is left part-way (nothing would ever take its last piece), or the listener
    removed before it is finished: the listener gets the message behind the stream, then the close fires;
    neither waits for ever."""
    log: list[Any] = []
    started = asyncio.Event()
    ended = asyncio.Event()

    async def handler(ws: WebSocket) -> None:
        stream = ws.recv_streaming()
        await stream.__anext__()
        ws.onmessage = lambda event: log.append(event.data)
        ws.onclose = lambda event: (log.append(("close", event.code)), ended.set())
        started.set()
        await asyncio.sleep(0.3)  # the rest of the message, a message, the Close and the end of TCP
        if then == "remove the listener":
            ws.onmessage = None
            async for _piece in stream:
                pass
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        writer = await stream_then_message_then_close(server.port, started)
        await asyncio.sleep(0.05)
        writer.close()
        await asyncio.wait_for(ended.wait(), 5)
        assert log == ["m1", ("close", 1000)]
