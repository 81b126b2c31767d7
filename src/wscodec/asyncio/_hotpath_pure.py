"""The pure-Python twin of ``_hotpath.pyx``: what the asyncio WebSocket does once per read and once per reply.

:class:`HotPath` is the base class of :class:`~wscodec.asyncio.WebSocket`. It holds the state those steps
read and the steps themselves: a socket read into the shared buffer (``get_buffer``, ``buffer_updated``);
the read's events to the listeners or the queue (``_handle``); ``async for`` taking a whole message or
getting ready to wait for one (``_take_message``, ``_anext_waiter``, ``_data_waiter``); and a reply to the
transport (``send_nowait``, ``send()``'s ``_send_at_once``, ``_queued``, ``_write_out``, ``_flush``).
:class:`Pieces` gathers a message's fragments. With one message in flight these run once per round trip,
and compiled they cost a fraction of what the interpreter spends on them. Everything else (timers,
waiters, the close handshake, the browser API's bookkeeping) stays in ``websocket.py``, and these steps
call it by name.

Why fields rather than attributes, in the compiled twin: Python code reads a C field through a descriptor
that CPython 3.11 does not specialise, so a step that stayed in Python and read these fields would cost
more than before. That is why every step on the per-message path of both ``onmessage`` and ``async for``
is here, not only the callback's.

Both backends have the same fields, the same methods and the same behaviour; the WebSocket's tests run
on each (``WSCODEC_PURE_PYTHON=1`` picks this one), and the compiled one is used only with the compiled
kernels, whose ``FrameQueue`` it reads as a C type.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import io
from collections.abc import AsyncIterable, Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from .._write import write_buffers
from ..connection import CLOSED, OPEN, Connection
from ..errors import ConcurrencyError, ConnectionClosed
from ..events import BinaryFragment, TextFragment

__all__ = [
    "DATA_TYPES",
    "FLUSH_BYTES",
    "FLUSH_COUNT",
    "LONE_WRITES",
    "NO_MESSAGE",
    "READ_SIZE",
    "Event",
    "HotPath",
    "MessageEvent",
    "MessageWaiter",
    "Pieces",
]

DATA_TYPES = (str, bytes, bytearray, memoryview)
# What a message can be sent as (send()'s annotation; websocket.py takes it from here).
Data = str | bytes | bytearray | memoryview
# Bytes of small messages held back for one write at the end of the loop iteration (see HotPath._queued).
FLUSH_BYTES = 16384
FLUSH_COUNT = 8
# Replies of one step (a read, the consumer's wait for data, a flush) written at once, each alone, while
# nothing waits to be written; after these the step's replies batch (see HotPath._queued).
LONE_WRITES = 4
# Bytes of one socket read, unless the connection's reads are of large messages (see WebSocket._size_reads).
READ_SIZE = 256 * 1024
# What _take_message returns when there is no whole message to take (a message's data is never None, but
# a sentinel does not rely on that).
NO_MESSAGE: Any = object()
# A MessageEvent per delivered message is built with this and its three slots (see _handle).
_new_object = object.__new__


class Event:
    """A browser-style event: ``type`` is "open", "message", "error" or "close"; ``target`` the WebSocket.

    Read-only, as in browsers. Slotted classes with plain constructors, not frozen dataclasses: one
    ``MessageEvent`` is made per message delivered to a listener, and a frozen dataclass costs about four
    times as much to build. Equal when type and fields are (``target`` is not compared).
    """

    __slots__ = ("_target", "_type")
    _fields: ClassVar[tuple[str, ...]] = ("type",)

    def __init__(self, type: str, target: Any = None) -> None:
        self._type = type
        self._target = target

    @property
    def type(self) -> str:
        """ "open", "message", "error" or "close"."""
        return self._type

    @property
    def target(self) -> Any:
        """The :class:`WebSocket` the event is about."""
        return self._target

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self._fields)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, name) for name in self._fields))


class MessageEvent(Event):
    """A whole message: ``data`` is a str (text) or bytes-like per ``binary_type``."""

    __slots__ = ("_data",)
    _fields = ("type", "data")

    def __init__(self, type: str, target: Any = None, data: Any = None) -> None:
        # (no super().__init__: one is made per message delivered, and the call would cost a fifth of it)
        self._type = type
        self._target = target
        self._data = data

    @property
    def data(self) -> Any:
        """The message: str for text; bytes, bytearray or memoryview for binary (``binary_type``)."""
        return self._data


def _text_or_binary(message: Any) -> int:
    """1 for a text message (a str, subclasses included), 0 for binary (bytes-like), -1 for anything else."""
    kind = type(message)
    if kind is bytes:
        return 0
    if kind is str:
        return 1
    if isinstance(message, DATA_TYPES):
        return 1 if isinstance(message, str) else 0
    return -1


class MessageWaiter:
    """What a coroutine waiting for the next message awaits: the part of :class:`asyncio.Future` that a
    Task uses (``_asyncio_future_blocking``, ``get_loop``, ``add_done_callback``, ``result``, ``cancel``...),
    with one thing more, :meth:`wake_now`.

    Why not a Future: a Future's ``set_result`` resumes the waiting task through ``call_soon``, one loop
    turn after the read that brought the message, with a Future and a Handle made and run for it. A read
    from the transport wakes this waiter with :meth:`wake_now` instead, which resumes the task inside the
    read, as an ``onmessage`` callback runs: at one message in flight an ``async for`` echo answers within
    the read, as the callback does. Anything else that wakes it (a close, a failure, a cancellation) goes
    through ``call_soon``, as a Future would.
    """

    __slots__ = ("_asyncio_future_blocking", "_callback", "_cancel_message", "_context", "_loop", "_more", "_state")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._asyncio_future_blocking = False
        self._state = 0  # 0 pending, 1 done, 2 cancelled
        self._cancel_message: Any = None
        self._callback: Callable[[Any], object] | None = None
        self._context: contextvars.Context | None = None
        self._more: list[tuple[Callable[[Any], object], contextvars.Context]] | None = None  # a Task adds one

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def done(self) -> bool:
        return self._state != 0

    def cancelled(self) -> bool:
        return self._state == 2

    def result(self) -> None:
        if self._state == 2:
            raise self._cancelled_error()
        if self._state == 0:
            raise asyncio.InvalidStateError("Result is not ready.")
        return None

    def exception(self) -> None:
        if self._state == 2:
            raise self._cancelled_error()
        if self._state == 0:
            raise asyncio.InvalidStateError("Exception is not set.")
        return None

    def _cancelled_error(self) -> asyncio.CancelledError:
        message = self._cancel_message
        return asyncio.CancelledError() if message is None else asyncio.CancelledError(message)

    def add_done_callback(self, fn: Callable[[Any], object], *, context: contextvars.Context | None = None) -> None:
        if context is None:
            context = contextvars.copy_context()
        if self._state:
            self._loop.call_soon(fn, self, context=context)
        elif self._callback is None:
            self._callback = fn
            self._context = context
        else:
            if self._more is None:
                self._more = []
            self._more.append((fn, context))

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        removed = 0
        if self._callback is not None and self._callback == fn:
            self._callback = None
            self._context = None
            removed = 1
        if self._more:
            kept = [pair for pair in self._more if pair[0] != fn]
            removed += len(self._more) - len(kept)
            self._more = kept
        return removed

    def cancel(self, msg: Any = None) -> bool:
        if self._state:
            return False
        self._state = 2
        self._cancel_message = msg
        self._schedule()
        return True

    def set_result(self, result: None) -> None:
        """Done (the message arrived, or the connection closed): the waiting task resumes on the next loop
        turn, as a Future's would."""
        if self._state:
            raise asyncio.InvalidStateError("invalid state")
        self._state = 1
        self._schedule()

    def _schedule(self) -> None:
        callback, more = self._callback, self._more
        self._callback = None
        self._more = None
        if callback is not None:
            self._loop.call_soon(callback, self, context=self._context)
            self._context = None
        if more:
            for fn, context in more:
                self._loop.call_soon(fn, self, context=context)

    def wake_now(self, resumed: Any = None) -> None:
        """Done, and the waiting task resumes now, inside this call, in its own context (what the loop
        would do one turn later). Only a read from the transport calls this: no task is running then.

        ``resumed``, when given, is what the task's callback receives in place of this waiter: an
        :class:`asyncio.Future` already done with None (HotPath keeps one per connection, ``_resumed``). A
        Task's wakeup only asks whether its future ended without error, and takes an exact Future's answer
        from its fields, where it would call this waiter's ``result()`` by name (a string built, hashed and
        looked up: about 1,300 of the 16,000 instructions an ``async for`` echo spends per message)."""
        if self._state:
            return
        callback, context = self._callback, self._context
        self._state = 1
        if callback is None or context is None or self._more is not None:
            self._schedule()
            return
        self._callback = None
        self._context = None
        try:
            context.run(callback, self if resumed is None else resumed)
        except RuntimeError:
            # The task could not be entered (another task is running, or its context is entered): that
            # happens before it runs anything, so it resumes on the next loop turn instead.
            self._loop.call_soon(callback, self, context=context)

    def __await__(self) -> Generator[Any, None, None]:
        if self._state == 0:
            self._asyncio_future_blocking = True
            yield self
        if self._state == 0:
            raise RuntimeError("await wasn't used with future")
        return self.result()


class Pieces:
    """The pieces of one message as they arrive, gathered into one growing buffer (a ``bytearray``, or a
    ``StringIO`` for text) instead of one object per piece; a single piece is kept as is (no copy)."""

    __slots__ = ("_buffer", "_first")

    def __init__(self) -> None:
        self._first: Any = None
        self._buffer: Any = None

    def __bool__(self) -> bool:
        return self._first is not None

    def add(self, data: Any) -> None:
        if self._first is None:
            self._first = data
            return
        buffer = self._buffer
        if buffer is None:
            first = self._first
            if type(first) is str:
                buffer = self._buffer = io.StringIO()
                buffer.write(first)
            else:
                buffer = self._buffer = bytearray(first)
        if type(buffer) is bytearray:
            buffer += data
        else:
            buffer.write(data)

    def take(self) -> Any:
        """Everything added so far, as one str or bytes; empties the gatherer."""
        buffer = self._buffer
        if buffer is None:
            data = self._first
        elif type(buffer) is bytearray:
            data = bytes(buffer)
        else:
            data = buffer.getvalue()
        self._first = self._buffer = None
        return data


class HotPath:
    """The per-read and per-reply steps of the WebSocket, and the state they read (see the module)."""

    __slots__ = (
        "_binary_type",
        "_busy",
        "_cb_backlog",
        "_cb_partial",
        "_close_exc",
        "_conn",
        "_debug",
        "_flood_paused",
        "_flush_handle",
        "_fragmenting",
        "_handling",
        "_has_message_listener",
        "_listeners_paused",
        "_lone_left",
        "_loop",
        "_lost",
        "_message_callbacks",
        "_partial",
        "_pre",
        "_queue",
        "_read_view",
        "_reading_paused",
        "_resumed",
        "_streaming",
        "_transport",
        "_unflushed",
        "_unflushed_count",
        "_waiter",
        "_write_paused",
        "max_queue",
    )

    # Set by WebSocket.__init__ (declared for the type checker; the compiled twin declares C fields).
    _binary_type: str
    _busy: bool
    _cb_backlog: collections.deque[TextFragment | BinaryFragment]
    _cb_partial: Pieces
    _close_exc: ConnectionClosed | None
    _conn: Connection
    _debug: bool
    _flood_paused: bool
    _flush_handle: asyncio.Handle | None
    _fragmenting: asyncio.Future[None] | None
    _handling: bool
    _has_message_listener: bool
    _listeners_paused: bool
    _loop: asyncio.AbstractEventLoop
    _lost: bool
    _message_callbacks: tuple[Any, ...]
    _partial: Pieces
    _pre: bytearray | None
    _queue: collections.deque[TextFragment | BinaryFragment]
    _read_view: memoryview
    _reading_paused: bool
    _resumed: asyncio.Future[None]
    _streaming: bool
    _transport: asyncio.Transport | None
    _unflushed: int
    _unflushed_count: int
    _waiter: MessageWaiter | None
    _write_paused: bool
    _lone_left: int
    max_queue: int | None
    logger: Any

    # ------------------------------------------------------------------ asyncio.BufferedProtocol

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read_view

    def buffer_updated(self, nbytes: int) -> None:
        view = self._read_view
        size = len(view)
        if not 0 <= nbytes <= size:  # a loop's bug (the compiled twin would read past the buffer)
            raise ValueError(f"{nbytes} bytes read do not fit the {size}-byte read buffer")
        if self._pre is None:  # open: what data_received does, without its call (this runs once per read)
            if nbytes > READ_SIZE:
                self._handle_large_read(nbytes)
                return
            events = self._conn.receive_data(view[:nbytes])
            if nbytes == size or size > READ_SIZE:  # a full read, or a grown buffer: size the next read
                self._size_reads(nbytes, events)
            self._handle(events, True)
        else:  # a server's opening handshake is still being read
            self.data_received(view[:nbytes])

    def _handle_large_read(self, nbytes: int) -> None:
        """A read into a grown buffer (more than READ_SIZE bytes): decoded and acted on READ_SIZE bytes at a
        time, so the replies to its first messages leave while their payloads are still in the CPU cache.

        Decoded whole (4 MiB of 64 KiB messages), a read turned into payloads the cache no longer held by
        the time the application echoed them: the kernel's copy of each reply then cost 1.5 times the rest
        of the round trip (0.58 of picows' rate, which unmasks and writes each frame as it goes). A frame
        cut by a step's end is completed by the next step (the compiled decoder unmasks a large payload
        straight into its message, so that costs no copy either).
        """
        view = self._read_view
        seen: list[Any] = []
        for start in range(0, nbytes, READ_SIZE):
            events = self._conn.receive_data(view[start : min(start + READ_SIZE, nbytes)])
            seen += events
            self._handle(events, True)
            if self._conn.state is CLOSED or self._conn.pending_error is not None:
                return  # (what is left of the read would decode to nothing: RFC 6455 section 5.5.1)
        self._size_reads(nbytes, seen)

    # ------------------------------------------------------------------ events from the Connection

    def _handle(self, events: list[Any], inline: bool = False) -> None:
        """Act on the events of one read (or of a failure): deliver, queue, wake; then write the replies.
        ``inline``: a read from the transport, which resumes a task waiting for a message at once (see
        :class:`MessageWaiter`).

        At one message in flight this runs once per round trip: so the common case, a whole message for
        the listeners, is delivered here inline (what ``_dispatch_message`` does), and this is one method,
        not a wrapper and a loop.
        """
        self._handling = True
        self._lone_left = LONE_WRITES  # a new step: its first replies may go at once again
        queue = self._queue
        try:
            for event in events:
                kind = type(event)
                if kind is TextFragment or kind is BinaryFragment:
                    data: Any = event.data
                    # (_first is None: the Pieces are empty, without a call to their __bool__)
                    if (
                        self._has_message_listener
                        and not queue
                        and self._partial._first is None
                        and not self._streaming
                    ):
                        if self._listeners_paused:  # max_queue listener tasks run: it waits its turn
                            self._cb_backlog.append(event)
                            continue
                        if event.final and self._cb_partial._first is None:  # a whole message: no gathering
                            if kind is BinaryFragment and self._binary_type != "bytes":
                                data = self._convert_binary(data)
                            # MessageEvent("message", self, data) without the class call, which runs __init__ in
                            # an interpreter frame of its own: 600 instructions, 3% of a 16-byte round trip
                            message = _new_object(MessageEvent)
                            message._type = "message"
                            message._target = self
                            message._data = data
                            for callback in self._message_callbacks:  # (a tuple: a snapshot already)
                                try:
                                    result = callback(message)
                                except ConnectionClosed as exc:  # (closed under it: not the listener's bug)
                                    self.logger.debug("message callback ended on %s", exc)
                                    continue
                                except (Exception, asyncio.CancelledError):  # (a cancelled future's result(): its bug)
                                    self.logger.exception("error in message callback")
                                    continue
                                if result is not None:
                                    self._listener_returned(result)
                        else:
                            self._deliver_to_listeners(event)
                        continue
                    queue.append(event)
                    if self._debug:
                        self.logger.debug("< %s fragment of %d (final=%s)", kind.__name__, len(data), event.final)
                else:
                    self._handle_other(event)
            if queue:
                waiter = self._waiter
                if waiter is not None and not waiter._state:
                    if inline:
                        waiter.wake_now(self._resumed)
                    else:
                        waiter.set_result(None)
                max_queue = self.max_queue
                if max_queue is not None and len(queue) >= max_queue and not self._reading_paused:
                    self._reading_paused = True
                    self._sync_reading()
            if self._write_paused and not self._flood_paused and self._conn.flooded:
                # Pings keep coming while our answers cannot leave: read again once the transport drains.
                self._flood_paused = True
                self._sync_reading()
            if self._conn.pending_error is not None:
                self._on_pending_error()
        finally:
            self._handling = False
        conn = self._conn
        if conn._out:  # (a callback's lone reply already went: nothing to write, no call)
            self._write_out()
        if conn.state is CLOSED:
            self._after_closed()

    # ------------------------------------------------------------------ receiving

    def _data_waiter(self) -> Any:
        """Get ready to wait for the next message: the future to await (the caller resets ``_waiter`` once
        it has), or None when there is nothing to wait for (a held protocol error was acted on)."""
        if self._waiter is not None:
            raise ConcurrencyError("another coroutine is already waiting for the next message")
        handle = self._flush_handle
        if handle is not None:
            # The consumer is about to sleep: what it sent goes out now rather than one loop turn later
            # (an echo answering one message in flight saves a loop iteration per round trip).
            handle.cancel()
            self._flush()
        self._lone_left = LONE_WRITES  # the step that wrote replies at once ends here
        self._busy = False
        if self._conn.pending_error is not None:
            # The application has taken every message before the peer's error and asks for more: fail
            # now, its replies are already queued ahead of our Close.
            self._fail_pending()
            return None
        waiter = self._waiter = MessageWaiter(self._loop)
        return waiter

    def _take_message(self) -> Any:
        """The whole message at the head of the queue, taken as ``recv()`` takes it; ``NO_MESSAGE`` when
        there is none to take this way (nothing waits, a fragment is next, or a message is being gathered
        or streamed: ``recv()`` handles those)."""
        queue = self._queue
        if queue and queue[0].final and self._partial._first is None and not self._streaming:
            event = queue.popleft()
            if self._reading_paused:
                self._maybe_resume_reading()
            self._busy = True
            if type(event) is BinaryFragment and self._binary_type != "bytes":
                return self._convert_binary(event.data)
            return event.data
        return NO_MESSAGE

    def _anext_waiter(self) -> Any:
        """For ``async for``: the future to await when nothing at all waits to be taken (the common case
        at one message in flight), else None (see ``_data_waiter``)."""
        if not self._queue and self._close_exc is None and self._partial._first is None and not self._streaming:
            return self._data_waiter()
        return None

    async def __anext__(self) -> Any:
        """``async for message in ws``: ends after a normal close (:class:`~wscodec.errors.ConnectionClosedOK`),
        raises :class:`~wscodec.errors.ConnectionClosedError` after any other, as websockets' does."""
        # Nothing waits (the common case at one message in flight): wait here, without a recv() or
        # _wait_for_data() coroutine made for the purpose; what arrives is taken below.
        waiter = self._anext_waiter()
        if waiter is not None:
            try:
                await waiter
            finally:
                self._waiter = None
        # A whole message waits (the common case under load): taken without a second coroutine for recv().
        data = self._take_message()
        if data is not NO_MESSAGE:
            return data
        return await self._next_or_stop()

    # ------------------------------------------------------------------ sending

    async def send(
        self,
        message: Data | Iterable[Data] | AsyncIterable[Data],
        *,
        compress: bool = True,
        text: bool | None = None,
    ) -> None:
        """Send a message: str as text, bytes-like as binary; a (sync or async) iterable of str or of
        bytes-like as one fragmented message, one frame per item (compressed as one message where
        permessage-deflate was negotiated); an async iterable's items go out as they come, and an empty
        frame ends the message, as in websockets.

        Waits while the transport buffer is above ``write_limit``; cancelled while waiting, nothing was
        sent. ``compress=False`` skips compression of this message. ``text=True`` sends bytes that are
        already UTF-8 as a Text frame (a ValueError if they are not UTF-8), ``text=False`` a str as a
        Binary frame, as websockets' ``send(text=...)``.
        """
        if text is None and self._send_at_once(message, compress):
            return
        await self._send_waiting(message, compress, text)

    def _send_at_once(self, message: Any, compress: bool) -> bool:
        """``send()`` when it need not wait: queue ``message`` (str or bytes-like) and write it or arrange
        its write (see ``_queued``). False, with nothing done, when the transport is over ``write_limit``,
        a fragmented send is in progress or ``message`` is neither: ``send()`` takes it from there."""
        if self._write_paused or self._fragmenting is not None:
            return False
        text = _text_or_binary(message)
        if text < 0:
            return False
        conn = self._conn
        if conn.state is not OPEN:
            self._check_open()
        if not compress:
            conn.send_message(message, compress=False)
        elif text:
            conn.send_text(message)
        else:
            conn.send_binary(message)
        size = len(message)
        if self._debug:
            self.logger.debug("> %s message of %d", "text" if text else "binary", size)
        if self._lone_left and not self._unflushed_count and self._flush_handle is None:
            self._lone_left -= 1  # _queued's first case, without the call to _queued
            self._write_out()
        else:
            self._queued(size)
        return True

    def _write_out(self) -> None:
        """Hand everything the Connection has queued to the transport, in order."""
        self._unflushed = self._unflushed_count = 0
        out = self._conn.data_to_send_buffers()
        if out and not self._lost and self._transport is not None:
            if len(out) == 1:
                self._transport.write(out[0])
            else:  # several frames, or a large payload that goes out without a copy
                write_buffers(self._transport, out)

    def _flush(self) -> None:
        self._flush_handle = None
        self._lone_left = LONE_WRITES
        self._write_out()

    def _queued(self, size: int) -> None:
        """A message was queued in the Connection: write it at the end of this loop iteration with the
        ones queued after it, so that a handler answering a batch of messages makes one ``send()`` system
        call per few messages, not one per message. Every ``FLUSH_COUNT`` messages or ``FLUSH_BYTES``
        bytes (``size`` is the message's length; characters for text are close enough) the batch goes at
        once: the peer starts on it while we frame the rest, and a producer that never yields stays bounded.

        The first ``LONE_WRITES`` replies of a step go at once, each alone, while nothing waits to be
        written and no flush is due in this iteration; a step is what follows a read, the consumer's wait
        for data or a flush, which reset the budget (``_lone_left``). With one message in flight that is
        every reply, and it saves the loop turn to the flush. With several messages in one read, the peer
        gets the first answers while we handle the rest, and then the rest in batches. Measured over
        loopback against the C load client (16 B): one reply at once per read gave 23-29% more round
        trips per second at 8 in flight than one write per read, but still 0.74-0.81 of picows, which
        writes every reply at once; every reply at once matched picows at 8 in flight and lost 80% at 64;
        four at once gave 1.09-1.17 of picows at 8 and 3.4-4.0 at 64 (one at once: 3.9).
        """
        unflushed = self._unflushed + size
        count = self._unflushed_count + 1
        if count == 1 and self._lone_left and self._flush_handle is None:
            self._write_out()
            self._lone_left -= 1
        elif self._handling and unflushed < FLUSH_BYTES and count < FLUSH_COUNT:
            # sent by a callback of the read being handled: _handle writes it at its end
            self._unflushed = unflushed
            self._unflushed_count = count
        elif unflushed >= FLUSH_BYTES or count >= FLUSH_COUNT:
            self._write_out()
        else:
            self._unflushed = unflushed
            self._unflushed_count = count
            if self._flush_handle is None:
                self._flush_handle = self._loop.call_soon(self._flush)

    def send_nowait(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send a message at once, from synchronous code: an ``onmessage`` callback, a protocol or timer
        callback. This is the browser's ``send()``, with the same counters as :meth:`send`, except that it
        raises once the connection is closing (a browser drops the message silently; inside a listener the
        raise is logged at DEBUG and goes no further).

        ``send_nowait`` never waits. When the transport is over ``write_limit`` the message is queued all
        the same, and the WebSocket stops reading until the transport drains. So a callback that answers
        the messages it gets cannot queue more than about one read's worth of replies beyond
        ``write_limit``: the peer's sending backs up into TCP instead. From a coroutine, prefer
        ``await send()``, which waits instead.

        A callback that answers each message with ``send_nowait`` runs within the read that delivered the
        message, with no task switch. That is the lowest latency this layer offers, at one message in
        flight. Raises :class:`~wscodec.errors.ConnectionClosed` once closing or closed, :class:`TypeError` for
        anything but str or a bytes-like object (fragmented messages need :meth:`send`), and
        :class:`~wscodec.errors.ConcurrencyError` (a RuntimeError) while :meth:`send` is sending a fragmented message.
        """
        text = _text_or_binary(message)
        if text < 0:
            raise TypeError(f"send_nowait() takes str or bytes-like, not {type(message).__name__}")
        if self._fragmenting is not None:
            raise ConcurrencyError("a fragmented message is being sent; await send() instead")
        conn = self._conn
        if conn.state is not OPEN or self._lost:
            self._check_open()
            if self._lost:
                raise self._closed_error()
        if text:
            conn.send_text(message)  # type: ignore[arg-type]
        else:
            conn.send_binary(message)  # type: ignore[arg-type]
        if self._debug:
            self.logger.debug("> %s message of %d (nowait)", "text" if text else "binary", len(message))
        # The two common cases of _queued, inline (one message in flight is the first, every time).
        if self._lone_left:
            if not self._unflushed_count and self._flush_handle is None:
                # one of the first replies of a step: written at once, alone (_write_out inline: 3% of the
                # round trip)
                self._lone_left -= 1
                out = conn.data_to_send_buffers()
                if len(out) == 1:
                    self._transport.write(out[0])  # type: ignore[union-attr]  # (open: a transport)
                else:
                    write_buffers(self._transport, out)
            else:
                self._queued(len(message))
        else:
            size = len(message)
            if self._handling and self._unflushed + size < FLUSH_BYTES and self._unflushed_count < FLUSH_COUNT - 1:
                # a callback's further reply, written at the end of the read
                self._unflushed += size
                self._unflushed_count += 1
            else:
                self._queued(size)
        if self._write_paused and not self._flood_paused:
            # Nothing can wait here: stop taking input that asks for more output until the transport drains.
            self._flood_paused = True
            self._sync_reading()

    if TYPE_CHECKING:  # implemented by WebSocket

        def _maybe_resume_reading(self) -> None:
            raise NotImplementedError

        def _fail_pending(self) -> None:
            raise NotImplementedError

        def data_received(self, data: bytes | memoryview) -> None:
            raise NotImplementedError

        def _size_reads(self, nbytes: int, events: list[Any]) -> None:
            raise NotImplementedError

        def _convert_binary(self, data: bytes) -> Any:
            raise NotImplementedError

        def _listener_returned(self, result: Any) -> None:
            raise NotImplementedError

        def _deliver_to_listeners(self, event: Any) -> None:
            raise NotImplementedError

        def _handle_other(self, event: Any) -> None:
            raise NotImplementedError

        def _sync_reading(self) -> None:
            raise NotImplementedError

        def _on_pending_error(self) -> None:
            raise NotImplementedError

        def _after_closed(self) -> None:
            raise NotImplementedError

        def _check_open(self) -> None:
            raise NotImplementedError

        def _closed_error(self) -> BaseException:
            raise NotImplementedError

        async def _next_or_stop(self) -> Any:
            raise NotImplementedError

        async def _send_waiting(self, message: Any, compress: bool, text: bool | None = None) -> None:
            raise NotImplementedError
