"""The WebSocket's per-read and per-reply steps (``wscodec.asyncio._hotpath`` and its pure twin): the backend
this run asked for is the one in use, both twins have the same fields and steps, and the paths they took
over from ``websocket.py`` behave as before, over loopback. The rest of the asyncio suite runs on both
twins (each run of the suite on one backend)."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import os
from typing import Any

import pytest
from _waiting import until

import wscodec
from wscodec import encode_frame
from wscodec.asyncio import Server, WebSocket, _hotpath_pure, connect, serve
from wscodec.asyncio import websocket as websocket_module
from wscodec.errors import ConnectionClosed

pytestmark = pytest.mark.timeout(60)

OPTED_OUT = os.environ.get("WSCODEC_BUILD_EXTENSION", "").strip().lower() == "no"

try:
    from wscodec.asyncio import _hotpath as compiled
except ImportError:
    if not OPTED_OUT:
        raise  # built with the kernels: failing to import is a failure, never a skip
    compiled = None


def url(server: Server) -> str:
    return f"ws://127.0.0.1:{server.port}/"


def test_the_hot_path_backend_is_the_kernels_backend() -> None:
    """Compiled kernels come with the compiled hot path, the pure ones with the pure twin: never a mix."""
    assert websocket_module.HOT_PATH_BACKEND == wscodec.BACKEND
    live = compiled if wscodec.BACKEND == "cython" else _hotpath_pure
    assert live is not None
    assert WebSocket.__mro__[1] is live.HotPath
    assert websocket_module.DATA_TYPES == live.DATA_TYPES


def _fields(cls: type) -> set[str]:
    return {
        name for name, value in vars(cls).items() if type(value).__name__ in ("getset_descriptor", "member_descriptor")
    }


def _steps(cls: type) -> set[str]:
    return {
        name
        for name, value in vars(cls).items()
        if callable(value) and not (name.startswith("__") and name.endswith("__"))
    }


def test_both_twins_have_the_same_fields_and_steps() -> None:
    if compiled is None:
        pytest.skip("wscodec.asyncio._hotpath is not built (WSCODEC_BUILD_EXTENSION=no)")
    for name in ("HotPath", "Pieces"):
        pure, built = getattr(_hotpath_pure, name), getattr(compiled, name)
        assert _fields(pure) == set(pure.__slots__), name
        assert _fields(built) == _fields(pure), name
        assert _steps(built) == _steps(pure), name
    # The waiter's state is private to each twin (only what a Task reads is a field of the compiled one).
    assert _steps(compiled.MessageWaiter) == _steps(_hotpath_pure.MessageWaiter)
    assert (compiled.FLUSH_BYTES, compiled.FLUSH_COUNT, compiled.LONE_WRITES, compiled.READ_SIZE) == (
        _hotpath_pure.FLUSH_BYTES,
        _hotpath_pure.FLUSH_COUNT,
        _hotpath_pure.LONE_WRITES,
        _hotpath_pure.READ_SIZE,
    )
    assert compiled.DATA_TYPES == _hotpath_pure.DATA_TYPES


def _twins() -> list[Any]:
    return [_hotpath_pure] if compiled is None else [_hotpath_pure, compiled]


def test_the_browser_events_come_from_the_live_twin() -> None:
    """``Event`` and ``MessageEvent`` are the hot path's own (compiled with the compiled backend), and the
    events made once per connection subclass that ``Event``."""
    from wscodec.asyncio import CloseEvent, ErrorEvent, Event, MessageEvent

    live = compiled if wscodec.BACKEND == "cython" else _hotpath_pure
    assert live is not None
    assert (Event, MessageEvent) == (live.Event, live.MessageEvent)
    assert issubclass(MessageEvent, Event) and issubclass(CloseEvent, Event) and issubclass(ErrorEvent, Event)


@pytest.mark.parametrize("twin", _twins(), ids=lambda twin: twin.__name__.rsplit(".", 1)[-1])
def test_both_twins_build_the_same_events(twin: Any) -> None:
    """Read-only, compared by type and fields (not target), the same repr and hash, keyword arguments,
    no attribute of their own: in each twin alike, and in a subclass as ``CloseEvent`` makes one."""
    target = object()
    message = twin.MessageEvent(type="message", target=target, data="hé")
    assert (message.type, message.target, message.data) == ("message", target, "hé")
    assert twin.MessageEvent("message", None, b"") == twin.MessageEvent("message", target, b"")
    assert message != twin.MessageEvent("message", target, "other")
    assert message != twin.Event("message") and twin.Event("message") != message
    assert hash(message) == hash(twin.MessageEvent("message", None, "hé"))
    assert repr(message) == "MessageEvent(type='message', data='hé')"
    assert repr(twin.Event("open")) == "Event(type='open')" and twin.Event("open").target is None
    assert twin.MessageEvent("message").data is None
    for name in ("type", "target", "data"):
        with pytest.raises(AttributeError):
            setattr(message, name, None)
    with pytest.raises(AttributeError):
        message.extra = 1
    assert not hasattr(message, "__dict__")

    class Closing(twin.Event):  # type: ignore[misc,name-defined]
        __slots__ = ("_code",)
        _fields = ("type", "code")

        def __init__(self, type: str, target: Any = None, code: int = 1006) -> None:
            super().__init__(type, target)
            self._code = code

        @property
        def code(self) -> int:
            return self._code

    closing = Closing("close", target, 1001)
    assert (closing.type, closing.target, closing.code) == ("close", target, 1001)
    assert repr(closing) == "Closing(type='close', code=1001)" and closing == Closing("close", None, 1001)
    assert closing != Closing("close", None, 1000) and hash(closing) == hash(Closing("close", None, 1001))


def test_message_events_outlive_their_delivery() -> None:
    """MessageEvents a listener keeps stay whole while others are made and freed around them."""
    kept = [_live_twin().MessageEvent("message", None, i) for i in range(64)]
    del kept[::2]
    fresh = [_live_twin().MessageEvent("message", None, -i) for i in range(64)]
    assert [event.data for event in kept] == list(range(1, 64, 2))
    assert [event.data for event in fresh] == [-i for i in range(64)]
    assert len({id(event) for event in kept + fresh}) == len(kept) + len(fresh)


def _live_twin() -> Any:
    return compiled if wscodec.BACKEND == "cython" and compiled is not None else _hotpath_pure


def test_fields_keep_what_the_websocket_stores() -> None:
    """The C fields take what the Python side stores in them: objects, None, flags and counts."""

    class Probe(_live_hot_path()):  # type: ignore[misc]
        pass

    probe = Probe()
    probe._conn = probe._queue = probe._flush_handle = None
    probe.max_queue = None
    probe.max_queue = 16
    probe._lost = True
    probe._unflushed = 1 << 40
    assert (probe.max_queue, probe._lost, probe._unflushed, probe._conn) == (16, True, 1 << 40, None)
    probe._lost = False
    assert probe._lost is False


def _live_hot_path() -> type:
    return compiled.HotPath if wscodec.BACKEND == "cython" and compiled is not None else _hotpath_pure.HotPath


class _Text(str):
    pass


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


async def test_send_takes_every_data_type_and_a_str_subclass_is_text() -> None:
    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server), compression=None) as ws:
        sent: list[Any] = ["héllo", b"\x00\x01", bytearray(b"ba"), memoryview(b"mv"), _Text("sub"), "", b""]
        for message in sent:
            await ws.send(message)
        received = [await asyncio.wait_for(ws.recv(), 5) for _ in sent]
        assert received == ["héllo", b"\x00\x01", b"ba", b"mv", "sub", "", b""]
        assert [type(message) for message in received] == [str, bytes, bytes, bytes, str, str, bytes]
        with pytest.raises(TypeError):
            await ws.send(42)  # type: ignore[arg-type]
        await ws.send(["frag", "ments"])  # not a message: send() takes it from there
        assert await asyncio.wait_for(ws.recv(), 5) == "fragments"


async def test_async_for_takes_whole_messages_and_hands_fragments_to_recv() -> None:
    """``async for`` takes whole messages itself; a fragmented one arriving piece by piece goes through
    recv(), and both keep the order."""
    release = asyncio.Event()

    async def handler(ws: WebSocket) -> None:
        await ws.send("one")

        async def pieces() -> Any:
            yield "t"
            await release.wait()
            yield "wo"

        await ws.send(pieces())
        await ws.send(b"three")
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server, connect(url(server), compression=None) as ws:
        got: list[Any] = []

        async def consume() -> None:
            async for message in ws:
                got.append(message)
                if len(got) == 3:
                    return

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.05)
        assert got == ["one"]  # the second message is part-way: nothing more is handed out yet
        release.set()
        await asyncio.wait_for(task, 5)
        assert got == ["one", "two", b"three"]


async def test_reads_are_taken_from_the_shared_buffer_and_what_is_kept_is_copied() -> None:
    """``buffer_updated(n)`` decodes the first ``n`` bytes of the shared read buffer; a frame cut across two
    reads survives the buffer being overwritten in between (the decoder copies what it keeps), and a count
    the buffer cannot hold is refused without touching the connection."""
    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server), compression=None) as ws:
        large = bytes(range(256)) * 32  # 8 KiB: the decoder fills its payload as the pieces arrive
        frames = encode_frame(1, "héllo".encode()) + encode_frame(2, b"\x00" * 300) + encode_frame(2, large)
        view = ws._read_view
        view[: 2 * len(frames)] = b"\x81\x7e" * len(frames)  # stale bytes past each read: never decoded
        for cut in (1, 2, 5, 8, 320, 400, 4000, len(frames) - 1):
            view[:cut] = frames[:cut]
            ws.buffer_updated(cut)
            view[: len(frames)] = b"\xff" * len(frames)  # the next read overwrites the shared buffer
            view[: len(frames) - cut] = frames[cut:]
            ws.buffer_updated(len(frames) - cut)
            assert await asyncio.wait_for(ws.recv(), 5) == "héllo"
            assert await asyncio.wait_for(ws.recv(), 5) == b"\x00" * 300
            assert await asyncio.wait_for(ws.recv(), 5) == large
        for nbytes in (-1, len(view) + 1):
            with pytest.raises(ValueError, match="read buffer"):
                ws.buffer_updated(nbytes)
        await ws.send("still open")
        assert await asyncio.wait_for(ws.recv(), 5) == "still open"


def _read_into(ws: WebSocket, data: bytes) -> int:
    """One socket read as a transport makes it: into ``get_buffer``'s view, then ``buffer_updated``."""
    view = ws.get_buffer(-1)
    nbytes = min(len(view), len(data))
    view[:nbytes] = data[:nbytes]
    ws.buffer_updated(nbytes)
    return nbytes


async def test_reads_grow_for_large_messages_and_shrink_back() -> None:
    """A connection whose reads fill the buffer with large messages reads twice as much next time, up to
    min(max_size, READ_MAX); a read of small frames takes it back to READ_SIZE at once, a read that fills
    less than half of a grown buffer halves it; and every message arrives whole and in order."""
    read_size, read_max = websocket_module.READ_SIZE, websocket_module.READ_MAX
    large = [bytes([index]) * 65536 for index in range(256)]  # 16 MiB of 64 KiB messages
    stream = b"".join(encode_frame(2, payload) for payload in large)
    async with (
        serve(echo, "127.0.0.1", 0) as server,
        connect(url(server), compression=None, max_size=None, max_queue=None) as ws,
    ):
        sizes = [len(ws.get_buffer(-1))]
        offset = 0
        while offset < len(stream):
            offset += _read_into(ws, stream[offset:])
            sizes.append(len(ws.get_buffer(-1)))
        assert sizes[:6] == [read_size, 2 * read_size, 4 * read_size, 8 * read_size, read_max, read_max]
        assert max(sizes) == read_max
        assert [await asyncio.wait_for(ws.recv(), 5) for _ in large] == large

        # A read of small frames (1 KiB messages), filling most of a grown buffer, goes straight back to
        # READ_SIZE (not halved, as a read filling less than half would be).
        grown = len(ws.get_buffer(-1))
        assert grown > read_size
        small = encode_frame(2, b"s" * 1024) * (grown // 1028)
        assert 2 * len(small) >= grown
        assert _read_into(ws, small) == len(small)
        assert len(ws.get_buffer(-1)) == read_size
        assert ws.get_buffer(-1) is ws.get_buffer(-1)  # the shared READ_SIZE buffer, not a new view
        for _ in range(grown // 1028):
            assert await asyncio.wait_for(ws.recv(), 5) == b"s" * 1024

        # Grown again, a read that fills less than half the buffer halves it.
        offset = 0
        while len(ws.get_buffer(-1)) < read_max:
            offset += _read_into(ws, stream[offset:])
        offset += _read_into(ws, stream[offset : offset + read_max // 2 - 1])
        assert len(ws.get_buffer(-1)) == read_max // 2
        tail = stream[offset:]
        while tail:
            tail = tail[_read_into(ws, tail) :]
        for payload in large:
            assert await asyncio.wait_for(ws.recv(), 5) == payload
        await ws.send("still open")
        assert await asyncio.wait_for(ws.recv(), 5) == "still open"


async def test_a_grown_read_is_acted_on_read_size_bytes_at_a_time() -> None:
    """A read into a grown buffer reaches the listeners READ_SIZE bytes at a time: when the read's first
    message is delivered, the Connection has decoded only the messages of the first READ_SIZE bytes (so a
    reply leaves while its payload is still in the CPU cache), and all of them still arrive, in order."""
    read_size, read_max = websocket_module.READ_SIZE, websocket_module.READ_MAX
    payloads = [index.to_bytes(4, "big") * 16384 for index in range(1024)]  # 64 MiB of 64 KiB messages
    frames = [encode_frame(2, payload) for payload in payloads]
    stream = b"".join(frames)
    async with (
        serve(echo, "127.0.0.1", 0) as server,
        connect(url(server), compression=None, max_size=None, max_queue=None) as ws,
    ):
        received: list[bytes] = []
        decoded_at_delivery: list[int] = []
        ws.onmessage = lambda event: (
            received.append(event.data),
            decoded_at_delivery.append(ws.connection.messages_received),
        )
        offset = 0
        while len(ws.get_buffer(-1)) < read_max:  # grow the reads first
            offset += _read_into(ws, stream[offset:])
        before = ws.connection.messages_received
        assert len(received) == before
        nbytes = _read_into(ws, stream[offset:])
        assert nbytes == read_max
        first_step = offset + read_size  # the messages the first READ_SIZE bytes of this read complete
        whole_in_first_step = sum(1 for end in itertools.accumulate(map(len, frames)) if end <= first_step)
        assert decoded_at_delivery[before] == whole_in_first_step < before + read_max // len(frames[0])
        offset += nbytes
        while offset < len(stream):
            offset += _read_into(ws, stream[offset:])
        assert received == payloads
        assert decoded_at_delivery == sorted(decoded_at_delivery)
        ws.onmessage = None
        await ws.send("still open")
        assert await asyncio.wait_for(ws.recv(), 5) == "still open"


@pytest.mark.parametrize(("bad_frame", "code"), [(b"\x83\x08reserved", 1002), (b"\x88\x00", 1005)])
async def test_a_grown_read_stops_at_a_violation_or_a_close_in_a_later_step(bad_frame: bytes, code: int) -> None:
    """A frame that ends the connection in the middle of a grown read (a violation, or the peer's Close)
    stops it there: every message before it is delivered, in order, none after it, and the close code is
    the one that frame calls for."""
    read_size, read_max = websocket_module.READ_SIZE, websocket_module.READ_MAX
    payloads = [index.to_bytes(4, "big") * 16384 for index in range(1024)]
    frames = [encode_frame(2, payload) for payload in payloads]
    async with (
        serve(echo, "127.0.0.1", 0) as server,
        connect(url(server), compression=None, max_size=None, max_queue=None) as ws,
        connect(url(server), compression=None) as fresh,
    ):
        received: list[bytes] = []
        ws.onmessage = lambda event: received.append(event.data)
        stream = b"".join(frames)
        offset = 0
        while len(ws.get_buffer(-1)) < read_max:
            offset += _read_into(ws, stream[offset:])
        # The next read: the frames that reach past READ_SIZE and a half of it, the bad frame, then more
        # messages (so the bad frame is in its second step).
        ends = list(itertools.accumulate(len(frame) for frame in frames))
        last = next(index for index, end in enumerate(ends) if end > offset + read_size * 3 // 2)
        read = stream[offset : ends[last]] + bad_frame + stream[ends[last] :]
        assert _read_into(ws, read) == read_max
        assert received == payloads[: last + 1]
        await asyncio.wait_for(ws.wait_closed(), 10)
        assert ws.close_code == code
        assert received == payloads[: last + 1]
        await fresh.send("fresh")
        assert await asyncio.wait_for(fresh.recv(), 5) == "fresh"


async def test_reads_of_messages_made_of_small_fragments_do_not_grow() -> None:
    """Reads that fill the buffer and complete messages, but messages of 20,000 one-byte fragments: a read
    is then mostly frame headers, and stays at READ_SIZE. Its events merge the fragments (two or so per
    message), which passed for large frames: the reads grew to max_size, and a flood of such messages kept a uvloop
    server from its other connections for seconds. Every message arrives whole."""
    read_size = websocket_module.READ_SIZE
    message = (
        encode_frame(2, b"\x01", fin=False)
        + encode_frame(0, b"\x01", fin=False) * 19998
        + encode_frame(0, b"\x01", fin=True)
    )
    stream = message * 10  # 200,000 frames, about 1.4 MB: several full reads
    async with (
        serve(echo, "127.0.0.1", 0) as server,
        connect(url(server), compression=None, max_size=None, max_queue=None) as ws,
    ):
        sizes = set()
        offset = 0
        while offset < len(stream):
            offset += _read_into(ws, stream[offset:])
            sizes.add(len(ws.get_buffer(-1)))
        assert sizes == {read_size}
        for _ in range(10):
            assert await asyncio.wait_for(ws.recv(), 5) == b"\x01" * 20000


async def test_reads_of_fragments_or_of_one_large_message_do_not_grow() -> None:
    """Reads that complete no message never grow the buffer: a run of one-byte fragments (where each read
    holds thousands of frames) and the middle of one 8 MiB message keep READ_SIZE reads; both messages
    arrive whole."""
    read_size = websocket_module.READ_SIZE
    count = 200_000
    fragments = encode_frame(2, b"\x01", fin=False) + encode_frame(0, b"\x01", fin=False) * (count - 2)
    large = bytes(range(256)) * 32768
    async with (
        serve(echo, "127.0.0.1", 0) as server,
        connect(url(server), compression=None, max_size=None, max_queue=None) as ws,
    ):
        sizes = set()
        for stream in (fragments, encode_frame(0, b"\x02", fin=True), encode_frame(2, large)):
            offset = 0
            while offset < len(stream):
                offset += _read_into(ws, stream[offset:])
                sizes.add(len(ws.get_buffer(-1)))
        assert sizes == {read_size}
        assert await asyncio.wait_for(ws.recv(), 5) == b"\x01" * (count - 1) + b"\x02"
        assert await asyncio.wait_for(ws.recv(), 5) == large


@pytest.mark.parametrize(("max_size", "expected"), [(300 * 1024, 300 * 1024), (1 << 20, 1 << 20), (65536, None)])
async def test_reads_grow_no_larger_than_max_size(max_size: int, expected: int | None) -> None:
    """A grown read holds no more than one message may hold already (``max_size``), and never less than
    READ_SIZE: a connection that takes only small messages keeps the shared READ_SIZE buffer."""
    read_size = websocket_module.READ_SIZE
    message = min(max_size, 65536)
    count = 8 * 1024 * 1024 // message
    stream = encode_frame(2, b"m" * message) * count
    async with (
        serve(echo, "127.0.0.1", 0) as server,
        connect(url(server), compression=None, max_size=max_size, max_queue=None) as ws,
    ):
        sizes = set()
        offset = 0
        while offset < len(stream):
            offset += _read_into(ws, stream[offset:])
            sizes.add(len(ws.get_buffer(-1)))
        assert max(sizes) == (expected or read_size)
        for _ in range(count):
            assert await asyncio.wait_for(ws.recv(), 5) == b"m" * message


async def test_large_messages_over_loopback_grow_the_servers_reads() -> None:
    """Over a real socket: 16 MiB of 64 KiB messages sent at once are echoed whole and in order, and the
    server's reads grew past READ_SIZE on the way; a fresh client is served afterwards."""
    grown = 0

    async def watching_echo(ws: WebSocket) -> None:
        nonlocal grown
        async for message in ws:
            grown = max(grown, len(ws.get_buffer(-1)))
            await ws.send(message)

    payloads = [index.to_bytes(4, "big") * 16384 for index in range(256)]
    async with serve(watching_echo, "127.0.0.1", 0, max_size=None, compression=None) as server:
        async with connect(url(server), compression=None, max_size=None, max_queue=None) as ws:
            sending = asyncio.ensure_future(asyncio.gather(*(ws.send(payload) for payload in payloads)))
            echoed = [await asyncio.wait_for(ws.recv(), 20) for _ in payloads]
            await asyncio.wait_for(sending, 20)
            assert echoed == payloads
        assert grown > websocket_module.READ_SIZE
        async with connect(url(server), compression=None) as fresh:
            await fresh.send("fresh")
            assert await asyncio.wait_for(fresh.recv(), 5) == "fresh"


async def test_many_replies_from_one_read_arrive_in_order_in_few_writes() -> None:
    """Replies sent by ``async for`` while messages wait are batched (``_queued``), never reordered."""
    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server), compression=None) as ws:
        count = 200
        for index in range(count):
            ws.send_nowait(f"m{index}")
        received = [await asyncio.wait_for(ws.recv(), 5) for _ in range(count)]
        assert received == [f"m{index}" for index in range(count)]


async def test_send_and_the_async_for_step_are_coroutines_to_asyncio() -> None:
    """Compiled or not, ``send()`` is a coroutine function and what it and ``__anext__`` return are coroutines
    to asyncio: ``create_task`` and ``gather`` take them, as they take the pure twin's."""
    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server), compression=None) as ws:
        assert asyncio.iscoroutinefunction(ws.send)
        sending = ws.send("task")
        assert asyncio.iscoroutine(sending)
        await asyncio.wait_for(asyncio.create_task(sending), 5)
        await asyncio.gather(ws.send("g1"), ws.send(b"g2"))
        step = ws.__anext__()
        assert asyncio.iscoroutine(step)
        assert await asyncio.wait_for(asyncio.create_task(step), 5) == "task"
        assert [await asyncio.wait_for(anext(ws), 5) for _ in range(2)] == ["g1", b"g2"]


async def _held_server() -> tuple[Server, asyncio.Queue[WebSocket]]:
    """A server whose handler hands its connection to the test and stays until the client closes."""
    accepted: asyncio.Queue[WebSocket] = asyncio.Queue()

    async def handler(ws: WebSocket) -> None:
        await accepted.put(ws)
        await ws.wait_closed()

    server = await serve(handler, "127.0.0.1", 0)
    return server, accepted


async def test_async_for_step_cancelled_while_waiting_releases_the_wait() -> None:
    """A step cancelled while it waits (a timeout on ``anext``, a cancelled task) leaves no waiter behind:
    the next step and ``recv()`` wait again, and the message that arrives then is the next one, not lost."""
    server, accepted = await _held_server()
    async with server, connect(url(server), compression=None) as ws:
        peer = await asyncio.wait_for(accepted.get(), 5)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(anext(ws), 0.05)
        assert ws._waiter is None
        task = asyncio.ensure_future(anext(ws))
        await until(lambda: ws._waiter is not None)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert ws._waiter is None
        await peer.send("first")
        assert await asyncio.wait_for(ws.recv(), 5) == "first"
        await peer.send("second")
        assert await asyncio.wait_for(anext(ws), 5) == "second"


async def test_async_for_step_dropped_unawaited_or_closed_releases_the_wait() -> None:
    """A step made and never finished (closed by its owner, or dropped) does not keep the connection's
    single wait taken."""
    server, accepted = await _held_server()
    async with server, connect(url(server), compression=None) as ws:
        peer = await asyncio.wait_for(accepted.get(), 5)
        step = ws.__anext__()
        if hasattr(step, "close"):
            step.close()  # a coroutine (pure twin) never started, or the compiled step: both let go
        del step
        assert ws._waiter is None
        await peer.send("after")
        assert await asyncio.wait_for(anext(ws), 5) == "after"


async def test_async_for_step_is_awaited_once_and_takes_waiting_messages_in_order() -> None:
    """Messages already queued are taken without waiting, in order; a finished step cannot be reused."""
    server, accepted = await _held_server()
    async with server, connect(url(server), compression=None) as ws:
        peer = await asyncio.wait_for(accepted.get(), 5)
        for index in range(5):
            await peer.send(f"m{index}")
        await until(lambda: len(ws._queue) == 5)
        step = ws.__anext__()
        assert await step == "m0"
        with pytest.raises(RuntimeError):
            await step
        assert [await anext(ws) for _ in range(4)] == ["m1", "m2", "m3", "m4"]


async def test_async_for_ends_on_a_clean_close_and_raises_on_an_abnormal_one() -> None:
    """Waiting in ``async for`` when the close arrives: a normal close ends the loop (the step hands over to
    ``recv()``), any other raises ConnectionClosed, an application's 4000 included (as websockets')."""
    for code, ends in ((1000, True), (1001, True), (4000, False), (1011, False)):
        server, accepted = await _held_server()
        async with server, connect(url(server), compression=None) as ws:
            peer = await asyncio.wait_for(accepted.get(), 5)
            got: list[Any] = []

            async def consume(ws: WebSocket = ws, got: list[Any] = got) -> None:
                async for message in ws:
                    got.append(message)

            task = asyncio.ensure_future(consume())
            await peer.send("before")
            await until(lambda got=got: got == ["before"])
            await peer.close(code)
            if ends:
                await asyncio.wait_for(task, 5)
            else:
                with pytest.raises(ConnectionClosed) as caught:
                    await asyncio.wait_for(task, 5)
                assert caught.value.code == code
            assert got == ["before"]


@pytest.mark.parametrize("module", _twins(), ids=lambda module: module.__name__.rsplit(".", 1)[-1])
def test_pieces_gather_a_message_and_keep_a_lone_piece_as_is(module: Any) -> None:
    pieces = module.Pieces()
    assert not pieces
    lone = b"only"
    pieces.add(lone)
    assert pieces
    assert pieces.take() is lone  # one piece: no copy
    assert not pieces
    for piece in (b"a", bytearray(b"b"), memoryview(b"c")):
        pieces.add(piece)
    assert pieces.take() == b"abc"
    for piece in ("é", "\U0001f600", ""):
        pieces.add(piece)
    text = pieces.take()
    assert (text, type(text)) == ("é\U0001f600", str)
    assert pieces.take() is None


# ---------------------------------------------------------------------------- the waiter a reader awaits


@pytest.mark.parametrize("twin", _twins(), ids=lambda twin: twin.__name__.rsplit(".", 1)[-1])
async def test_a_waiter_woken_now_resumes_its_task_inside_the_call(twin: Any) -> None:
    """``wake_now`` from a loop callback (where a read runs) resumes the awaiting task before it returns,
    in the task's own context; ``set_result`` resumes it one loop turn later, as a Future does."""
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="outside")

    async def reader(waiter: Any, name: str) -> None:
        marker.set(name)
        await waiter
        seen.append(f"{name} resumed in {marker.get()}")

    now = twin.MessageWaiter(loop)
    task = asyncio.ensure_future(reader(now, "now"))
    await asyncio.sleep(0)  # the task now waits on the waiter
    assert not now.done() and now.get_loop() is loop

    def from_a_read() -> None:
        now.wake_now()
        seen.append("wake_now returned")

    loop.call_soon(from_a_read)
    await task
    assert seen == ["now resumed in now", "wake_now returned"]
    assert now.done() and not now.cancelled() and now.result() is None and now.exception() is None

    seen.clear()
    later = twin.MessageWaiter(loop)
    task = asyncio.ensure_future(reader(later, "later"))
    await asyncio.sleep(0)

    def set_result() -> None:
        later.set_result(None)
        seen.append("set_result returned")

    loop.call_soon(set_result)
    await task
    assert seen == ["set_result returned", "later resumed in later"]
    with pytest.raises(asyncio.InvalidStateError):
        later.set_result(None)


@pytest.mark.parametrize("twin", _twins(), ids=lambda twin: twin.__name__.rsplit(".", 1)[-1])
async def test_wake_now_hands_the_waiting_callback_the_done_future_it_is_given(twin: Any) -> None:
    """A read passes its connection's ``_resumed`` (a Future already done with None): that is what the
    waiting callback receives, so a Task reads an exact Future rather than calling the waiter's ``result()``
    by name; without it the callback gets the waiter. A task awaiting the waiter still resumes inline."""
    loop = asyncio.get_running_loop()
    resumed: asyncio.Future[None] = asyncio.Future(loop=loop)
    resumed.set_result(None)
    got: list[Any] = []
    given = twin.MessageWaiter(loop)
    given.add_done_callback(got.append, context=contextvars.copy_context())
    given.wake_now(resumed)
    bare = twin.MessageWaiter(loop)
    bare.add_done_callback(got.append, context=contextvars.copy_context())
    bare.wake_now()
    assert got == [resumed, bare] and given.done() and bare.done()

    seen: list[str] = []

    async def reader(waiter: Any) -> None:
        await waiter
        seen.append("resumed")

    waiter = twin.MessageWaiter(loop)
    task = asyncio.ensure_future(reader(waiter))
    await asyncio.sleep(0)

    def from_a_read() -> None:
        waiter.wake_now(resumed)
        seen.append("wake_now returned")

    loop.call_soon(from_a_read)
    await asyncio.wait_for(task, 5)
    assert seen == ["resumed", "wake_now returned"]


@pytest.mark.parametrize("twin", _twins(), ids=lambda twin: twin.__name__.rsplit(".", 1)[-1])
async def test_a_waiter_woken_now_from_inside_a_task_resumes_its_own_later(twin: Any) -> None:
    """Inside another task's step a second task cannot be entered: ``wake_now`` falls back on the next loop
    turn instead of failing, and the waiting task still gets its wake-up exactly once."""
    loop = asyncio.get_running_loop()
    waiter = twin.MessageWaiter(loop)
    resumed: list[int] = []

    async def reader() -> None:
        await waiter
        resumed.append(1)

    task = asyncio.ensure_future(reader())
    await asyncio.sleep(0)
    waiter.wake_now()  # this test is itself a running task
    assert resumed == [] and waiter.done()
    await asyncio.wait_for(task, 5)
    assert resumed == [1]


@pytest.mark.parametrize("twin", _twins(), ids=lambda twin: twin.__name__.rsplit(".", 1)[-1])
async def test_a_waiting_task_cancelled_gets_cancelled_error_and_the_waiter_reports_it(twin: Any) -> None:
    loop = asyncio.get_running_loop()
    waiter = twin.MessageWaiter(loop)
    task = asyncio.ensure_future(asyncio.wait_for(waiter, 0.05))
    with pytest.raises(asyncio.TimeoutError):
        await task
    assert waiter.cancelled() and waiter.done()
    with pytest.raises(asyncio.CancelledError):
        waiter.result()
    with pytest.raises(asyncio.CancelledError):
        waiter.exception()
    assert waiter.cancel() is False  # already done
    waiter.wake_now()  # a late wake-up of a cancelled waiter changes nothing and resumes no one
    assert waiter.cancelled()

    fresh = twin.MessageWaiter(loop)
    with pytest.raises(asyncio.InvalidStateError):
        fresh.result()
    calls: list[Any] = []
    fresh.add_done_callback(calls.append)
    fresh.add_done_callback(lambda done: calls.append("second"))
    assert fresh.remove_done_callback(calls.append) == 1
    assert fresh.cancel("because") is True
    await asyncio.sleep(0)
    assert calls == ["second"]
    with pytest.raises(asyncio.CancelledError, match="because"):
        fresh.result()
    fresh.add_done_callback(calls.append)  # added once done: called on the next turn, as a Future does
    await asyncio.sleep(0)
    assert calls == ["second", fresh]


async def test_a_read_resumes_the_async_for_step_inside_the_read() -> None:
    """At one message in flight the handler's ``async for`` step runs within the read that brought the
    message (``_handling`` is set only there), its reply written at once; under a burst nothing is lost or
    reordered, and a ``recv()`` under a timeout still loses nothing."""
    inside: list[bool] = []

    async def handler(ws: WebSocket) -> None:
        async for message in ws:
            inside.append(ws._handling)
            await ws.send(message)

    async with serve(handler, "127.0.0.1", 0) as server, connect(url(server), compression=None) as ws:
        for index in range(20):
            await ws.send(f"one {index}")
            assert await asyncio.wait_for(ws.recv(), 5) == f"one {index}"
        # (the first may have arrived before the handler's first step: then it was queued, not awaited)
        assert inside[1:] == [True] * 19
        burst = [f"burst {index}" for index in range(300)]
        for message in burst:
            await ws.send(message)
        assert [await asyncio.wait_for(ws.recv(), 5) for _ in burst] == burst
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.02)
        await ws.send("after the timeout")
        assert await asyncio.wait_for(ws.recv(), 5) == "after the timeout"
