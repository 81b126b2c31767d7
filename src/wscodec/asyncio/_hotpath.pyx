# cython: language_level=3
"""The compiled twin of ``_hotpath_pure.py``: what the asyncio WebSocket does once per read and once per reply.

Same class, fields, methods and behaviour as the pure module (its docstrings say why each step is shaped
as it is); here the fields are C fields of the base class, so the steps read them without a dictionary
or descriptor look-up, and the steps run without an interpreter frame. With one message in flight that
is most of what this layer costs per round trip. Everything else stays in ``websocket.py``, which these
steps call by name (``self._write_out()``...), as the pure twin does.
"""

from asyncio import CancelledError, InvalidStateError
from contextvars import copy_context
from io import StringIO

from cpython.memoryview cimport PyMemoryView_Check, PyMemoryView_GET_BUFFER

from .._speedups cimport FrameQueue

from .._write import write_buffers
from ..connection import CLOSED, OPEN
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
FLUSH_BYTES = 16384
FLUSH_COUNT = 8
LONE_WRITES = 4
NO_MESSAGE = object()
READ_SIZE = 256 * 1024

cdef Py_ssize_t _FLUSH_BYTES = FLUSH_BYTES
cdef Py_ssize_t _FLUSH_COUNT = FLUSH_COUNT
cdef int _LONE_WRITES = LONE_WRITES
cdef Py_ssize_t _READ_SIZE = READ_SIZE
cdef object _DATA_TYPES = DATA_TYPES
cdef object _NO_MESSAGE = NO_MESSAGE
cdef object _TextFragment = TextFragment
cdef object _BinaryFragment = BinaryFragment
cdef object _OPEN = OPEN
cdef object _CLOSED = CLOSED


# The kernels' contract (see _speedups.pxd): ``_fast_send`` is nonzero, and ``_fast_receive`` is set, only
# while the Connection is OPEN; ``_fast_receive`` only while no violation is held either. Either flag
# answers the common case in a C field read; the Connection's own attributes answer the rest.
cdef inline bint _is_open(FrameQueue conn):
    return conn._fast_send != 0 or conn._fast_receive is not None or conn.state is _OPEN


cdef inline bint _is_closed(FrameQueue conn):
    return conn._fast_receive is None and conn._fast_send == 0 and conn.state is _CLOSED


cdef inline bint _holds_error(FrameQueue conn):
    return conn._fast_receive is None and conn.pending_error is not None


cdef class Event:
    """A browser-style event: ``type`` is "open", "message", "error" or "close"; ``target`` the WebSocket.

    Read-only, as in browsers; equal when type and fields are (``target`` is not compared). The pure
    twin's class in behaviour; here a C type, so a listener reads ``data`` through a C getter, not an
    interpreter frame, and freeing one is a C function of three fields.
    """

    cdef object _type
    cdef object _target
    _fields = ("type",)

    def __init__(self, type, target=None):
        self._type = type
        self._target = target

    @property
    def type(self):
        """ "open", "message", "error" or "close"."""
        return self._type

    @property
    def target(self):
        """The :class:`WebSocket` the event is about."""
        return self._target

    def __repr__(self):
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self._fields)

    def __hash__(self):
        return hash(tuple(getattr(self, name) for name in self._fields))


cdef class MessageEvent(Event):
    """A whole message: ``data`` is a str (text) or bytes-like per ``binary_type``."""

    cdef object _data
    _fields = ("type", "data")

    def __init__(self, type, target=None, data=None):
        self._type = type
        self._target = target
        self._data = data

    @property
    def data(self):
        """The message: str for text; bytes, bytearray or memoryview for binary (``binary_type``)."""
        return self._data


cdef class MessageWaiter:
    """What a coroutine waiting for the next message awaits: the part of :class:`asyncio.Future` a Task
    uses, with one thing more (see the pure twin): the read that brings the message resumes the waiting
    task at once, inside that read, instead of one loop turn later through ``call_soon``."""

    cdef public object _loop
    cdef public bint _asyncio_future_blocking
    cdef int _state  # 0 pending, 1 done, 2 cancelled
    cdef object _cancel_message
    cdef object _callback
    cdef object _context
    cdef list _more  # further (callback, context) pairs: a Task adds only one
    cdef bint _yielded

    def __init__(self, loop):
        self._loop = loop

    def get_loop(self):
        return self._loop

    def done(self):
        return self._state != 0

    def cancelled(self):
        return self._state == 2

    def result(self):
        if self._state == 2:
            raise self._cancelled_error()
        if self._state == 0:
            raise InvalidStateError("Result is not ready.")
        return None

    def exception(self):
        if self._state == 2:
            raise self._cancelled_error()
        if self._state == 0:
            raise InvalidStateError("Exception is not set.")
        return None

    def _cancelled_error(self):
        message = self._cancel_message
        return CancelledError() if message is None else CancelledError(message)

    def add_done_callback(self, fn, *, context=None):
        if context is None:
            context = copy_context()
        if self._state:
            self._loop.call_soon(fn, self, context=context)
        elif self._callback is None:
            self._callback = fn
            self._context = context
        else:
            if self._more is None:
                self._more = []
            self._more.append((fn, context))

    def remove_done_callback(self, fn):
        cdef int removed = 0
        if self._callback is not None and self._callback == fn:
            self._callback = None
            self._context = None
            removed = 1
        if self._more:
            kept = [pair for pair in self._more if pair[0] != fn]
            removed += len(self._more) - len(kept)
            self._more = kept
        return removed

    def cancel(self, msg=None):
        if self._state:
            return False
        self._state = 2
        self._cancel_message = msg
        self._c_schedule()
        return True

    def set_result(self, result):
        """Done (the message arrived, or the connection closed): the waiting task resumes on the next loop
        turn, as a Future's would."""
        if self._state:
            raise InvalidStateError("invalid state")
        self._c_done()

    cdef object _c_done(self):
        """``set_result`` without its check, for a caller that has just read ``_state`` as pending."""
        self._state = 1
        self._c_schedule()

    def _schedule(self):
        self._c_schedule()

    cdef object _c_schedule(self):
        cdef object callback = self._callback
        cdef list more = self._more
        self._callback = None
        self._more = None
        if callback is not None:
            self._loop.call_soon(callback, self, context=self._context)
            self._context = None
        if more:
            for fn, context in more:
                self._loop.call_soon(fn, self, context=context)

    cdef object _c_wake_now(self, object resumed):
        """Done, and the waiting task resumes now, inside this call; its callback receives ``resumed``
        (see the pure twin)."""
        cdef object callback = self._callback
        cdef object context = self._context
        if self._state:
            return
        self._state = 1
        if callback is None or context is None or self._more is not None:
            self._c_schedule()
            return
        self._callback = None
        self._context = None
        try:
            context.run(callback, resumed)
        except RuntimeError:
            # The task could not be entered (another task is running, or its context is entered): that
            # happens before it runs anything, so it resumes on the next loop turn instead.
            self._loop.call_soon(callback, self, context=context)

    def wake_now(self, resumed=None):
        self._c_wake_now(self if resumed is None else resumed)

    def __await__(self):
        return self

    def __next__(self):
        # The waiter is its own iterator (the pure twin's generator, without a generator object per wait):
        # it yields itself to the Task once, then ends. A bare StopIteration leaves a Cython __next__ as a
        # NULL return with no exception made.
        if self._state == 0:
            if self._yielded:
                raise RuntimeError("await wasn't used with future")
            self._yielded = True
            self._asyncio_future_blocking = True
            return self
        if self._state == 2:
            raise self._cancelled_error()
        raise StopIteration


cdef inline int _text_or_binary(object message):
    """1 for a text message (a str, subclasses included), 0 for binary (bytes-like), -1 for anything else."""
    cdef object kind = type(message)
    if kind is bytes:
        return 0
    if kind is str:
        return 1
    if isinstance(message, _DATA_TYPES):
        return 1 if isinstance(message, str) else 0
    return -1


cdef class Pieces:
    """The pieces of one message as they arrive, gathered into one growing buffer (see the pure twin)."""

    cdef public object _first
    cdef public object _buffer

    def __bool__(self):
        return self._first is not None

    def add(self, data):
        cdef object buffer, first
        if self._first is None:
            self._first = data
            return
        buffer = self._buffer
        if buffer is None:
            first = self._first
            if type(first) is str:
                buffer = self._buffer = StringIO()
                buffer.write(first)
            else:
                buffer = self._buffer = bytearray(first)
        if type(buffer) is bytearray:
            buffer += data
        else:
            buffer.write(data)

    def take(self):
        """Everything added so far, as one str or bytes; empties the gatherer."""
        cdef object buffer = self._buffer
        cdef object data
        if buffer is None:
            data = self._first
        elif type(buffer) is bytearray:
            data = bytes(buffer)
        else:
            data = buffer.getvalue()
        self._first = None
        self._buffer = None
        return data


cdef class HotPath:
    """The per-read and per-reply steps of the WebSocket, and the state they read (see the module)."""

    cdef public object _binary_type
    cdef public bint _busy
    cdef public object _cb_backlog
    cdef public Pieces _cb_partial
    cdef public object _close_exc
    cdef public FrameQueue _conn
    cdef public bint _debug
    cdef public bint _flood_paused
    cdef public object _flush_handle
    cdef public object _fragmenting
    cdef public bint _handling
    cdef public bint _has_message_listener
    cdef public bint _listeners_paused
    cdef public object _loop
    cdef public bint _lost
    cdef public object _message_callbacks
    cdef public Pieces _partial
    cdef public object _pre
    cdef public object _queue
    cdef public object _read_view
    cdef public bint _reading_paused
    cdef public object _resumed
    cdef public bint _streaming
    cdef public object _transport
    cdef public Py_ssize_t _unflushed
    cdef public Py_ssize_t _unflushed_count
    cdef public object _waiter
    cdef public bint _write_paused
    cdef public int _lone_left
    cdef public object max_queue

    # ------------------------------------------------------------------ asyncio.BufferedProtocol

    def get_buffer(self, sizehint):
        return self._read_view

    def buffer_updated(self, Py_ssize_t nbytes):
        cdef Py_buffer *shared
        cdef Py_ssize_t size
        cdef object events
        if not PyMemoryView_Check(self._read_view):
            raise TypeError("the read buffer is not a memoryview")
        shared = PyMemoryView_GET_BUFFER(self._read_view)
        size = shared.len
        if not 0 <= nbytes <= size:  # a loop's bug
            raise ValueError(f"{nbytes} bytes read do not fit the {size}-byte read buffer")
        if self._pre is None:
            # The first nbytes of the shared buffer, without a slice of it (a slice object and a new view per
            # read): the decoder takes the buffer and the count.
            if nbytes > _READ_SIZE:
                self._handle_large_read(nbytes)
                return
            events = self._conn.receive_prefix(self._read_view, nbytes)
            if nbytes == size or size > _READ_SIZE:
                self._size_reads(nbytes, events)
            self._c_handle(events, True)
        else:
            self.data_received(self._read_view[:nbytes])

    def _handle_large_read(self, Py_ssize_t nbytes):
        """A read into a grown buffer (more than READ_SIZE bytes): decoded and acted on READ_SIZE bytes at a
        time, so the replies to its first messages leave while their payloads are still in the CPU cache.

        Decoded whole (4 MiB of 64 KiB messages), a read turned into payloads the cache no longer held by
        the time the application echoed them: the kernel's copy of each reply then cost 1.5 times the rest
        of the round trip (0.58 of picows' rate, which unmasks and writes each frame as it goes). A frame
        cut by a step's end is completed by the next step (the compiled decoder unmasks a large payload
        straight into its message, so that costs no copy either).
        """
        cdef object view = self._read_view
        cdef list seen = []
        cdef Py_ssize_t start = 0, step
        while start < nbytes:
            step = min(nbytes - start, _READ_SIZE)
            events = self._conn.receive_prefix(view[start:], step)
            seen += events
            self._c_handle(events, True)
            if _is_closed(self._conn) or _holds_error(self._conn):
                return  # (what is left of the read would decode to nothing: RFC 6455 section 5.5.1)
            start += step
        self._size_reads(nbytes, seen)

    # ------------------------------------------------------------------ events from the Connection

    def _handle(self, events, bint inline=False):
        return self._c_handle(events, inline)

    cdef object _c_handle(self, events, bint inline):
        """Act on the events of one read (or of a failure): deliver, queue, wake; then write the replies.
        ``inline``: a read from the transport, which resumes a task waiting for a message at once."""
        cdef object queue = self._queue
        cdef object kind, data, callback, result, max_queue
        cdef MessageWaiter waiter
        cdef MessageEvent message
        cdef FrameQueue conn
        self._handling = True
        self._lone_left = _LONE_WRITES
        try:
            for event in events:
                kind = type(event)
                if kind is _TextFragment or kind is _BinaryFragment:
                    data = event.data
                    if (
                        self._has_message_listener
                        and not queue
                        and self._partial._first is None
                        and not self._streaming
                    ):
                        if self._listeners_paused:  # max_queue listener tasks run: it waits its turn
                            self._cb_backlog.append(event)
                            continue
                        if event.final and self._cb_partial._first is None:
                            if kind is _BinaryFragment and self._binary_type != "bytes":
                                data = self._convert_binary(data)
                            message = MessageEvent.__new__(MessageEvent)  # (tp_new only: no __init__ call)
                            message._type = "message"
                            message._target = self
                            message._data = data
                            for callback in self._message_callbacks:
                                try:
                                    result = callback(message)
                                except ConnectionClosed as exc:  # (closed under it: not the listener's bug)
                                    self.logger.debug("message callback ended on %s", exc)
                                    continue
                                except (Exception, CancelledError):  # (a cancelled future's result(): its bug)
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
                        waiter._c_wake_now(self._resumed)
                    else:
                        waiter._c_done()
                max_queue = self.max_queue
                if max_queue is not None and len(queue) >= max_queue and not self._reading_paused:
                    self._reading_paused = True
                    self._sync_reading()
            if self._write_paused and not self._flood_paused and self._conn.flooded:
                self._flood_paused = True
                self._sync_reading()
            if _holds_error(self._conn):
                self._on_pending_error()
        finally:
            self._handling = False
        conn = self._conn
        if conn._out:
            self._c_write_out()
        if _is_closed(conn):
            self._after_closed()

    # ------------------------------------------------------------------ receiving

    def _data_waiter(self):
        return self._c_data_waiter()

    cdef object _c_data_waiter(self):
        """Get ready to wait for the next message: the future to await (the caller resets ``_waiter`` once
        it has), or None when there is nothing to wait for (a held protocol error was acted on)."""
        if self._waiter is not None:
            raise ConcurrencyError("another coroutine is already waiting for the next message")
        handle = self._flush_handle
        if handle is not None:
            handle.cancel()
            self._c_flush()
        self._lone_left = _LONE_WRITES
        self._busy = False
        if _holds_error(self._conn):
            self._fail_pending()
            return None
        cdef MessageWaiter waiter = MessageWaiter.__new__(MessageWaiter)
        waiter._loop = self._loop
        self._waiter = waiter
        return waiter

    def _take_message(self):
        return self._c_take_message()

    cdef object _c_take_message(self):
        """The whole message at the head of the queue, taken as ``recv()`` takes it; ``NO_MESSAGE`` when
        there is none to take this way."""
        cdef object queue = self._queue
        cdef object event
        if queue and queue[0].final and self._partial._first is None and not self._streaming:
            event = queue.popleft()
            if self._reading_paused:
                self._maybe_resume_reading()
            self._busy = True
            if type(event) is _BinaryFragment and self._binary_type != "bytes":
                return self._convert_binary(event.data)
            return event.data
        return _NO_MESSAGE

    def _anext_waiter(self):
        return self._c_anext_waiter()

    cdef object _c_anext_waiter(self):
        """For ``async for``: the future to await when nothing at all waits to be taken, else None."""
        if not self._queue and self._close_exc is None and self._partial._first is None and not self._streaming:
            return self._c_data_waiter()
        return None

    async def __anext__(self):
        """``async for message in ws``: ends after a normal close (:class:`~wscodec.errors.ConnectionClosedOK`),
        raises :class:`~wscodec.errors.ConnectionClosedError` after any other, as websockets' does.

        The pure twin's coroutine, compiled: no interpreter frame per message, and the message handed to the
        awaiting coroutine without a StopIteration (the ``am_send`` protocol)."""
        cdef object waiter = self._c_anext_waiter()
        cdef object data
        if waiter is not None:
            try:
                await waiter
            finally:
                self._waiter = None
        data = self._c_take_message()
        if data is not _NO_MESSAGE:
            return data
        return await self._next_or_stop()

    # ------------------------------------------------------------------ sending

    async def send(self, message, *, bint compress=True, text=None):
        """Send a message: str as text, bytes-like as binary; a (sync or async) iterable of str or of
        bytes-like as one fragmented message, one frame per item (compressed as one message where
        permessage-deflate was negotiated); an async iterable's items go out as they come, and an empty
        frame ends the message, as in websockets.

        Waits while the transport buffer is above ``write_limit``; cancelled while waiting, nothing was
        sent. ``compress=False`` skips compression of this message. ``text=True`` sends bytes that are
        already UTF-8 as a Text frame (a ValueError if they are not UTF-8), ``text=False`` a str as a
        Binary frame, as websockets' ``send(text=...)``.
        """
        if text is None and self._c_send_at_once(message, compress):
            return
        await self._send_waiting(message, compress, text)

    def _send_at_once(self, message, bint compress):
        return self._c_send_at_once(message, compress)

    cdef bint _c_send_at_once(self, message, bint compress) except -1:
        """``send()`` when it need not wait; False, with nothing done, when it must (see the pure twin)."""
        cdef int text
        cdef Py_ssize_t size
        cdef FrameQueue conn
        if self._write_paused or self._fragmenting is not None:
            return False
        text = _text_or_binary(message)
        if text < 0:
            return False
        conn = self._conn
        if not _is_open(conn):
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
            self._lone_left -= 1
            self._c_write_out()
        else:
            self._c_queued(size)
        return True

    def _write_out(self):
        return self._c_write_out()

    cdef object _c_write_out(self):
        """Hand everything the Connection has queued to the transport, in order."""
        cdef object out
        self._unflushed = 0
        self._unflushed_count = 0
        out = self._conn.data_to_send_buffers()
        if out and not self._lost and self._transport is not None:
            if len(out) == 1:
                self._transport.write(out[0])
            else:
                write_buffers(self._transport, out)

    def _flush(self):
        return self._c_flush()

    cdef object _c_flush(self):
        self._flush_handle = None
        self._lone_left = _LONE_WRITES
        self._c_write_out()

    def _queued(self, Py_ssize_t size):
        return self._c_queued(size)

    cdef object _c_queued(self, Py_ssize_t size):
        """A message was queued in the Connection: write it now or with the ones after it (see the pure twin)."""
        cdef Py_ssize_t unflushed = self._unflushed + size
        cdef Py_ssize_t count = self._unflushed_count + 1
        if count == 1 and self._lone_left and self._flush_handle is None:
            self._c_write_out()
            self._lone_left -= 1
        elif self._handling and unflushed < _FLUSH_BYTES and count < _FLUSH_COUNT:
            self._unflushed = unflushed
            self._unflushed_count = count
        elif unflushed >= _FLUSH_BYTES or count >= _FLUSH_COUNT:
            self._c_write_out()
        else:
            self._unflushed = unflushed
            self._unflushed_count = count
            if self._flush_handle is None:
                self._flush_handle = self._loop.call_soon(self._flush)


    def send_nowait(self, message):
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
        :class:`RuntimeError` while :meth:`send` is sending a fragmented message.
        """
        cdef int text = _text_or_binary(message)
        cdef Py_ssize_t size
        cdef FrameQueue conn
        cdef object out
        if text < 0:
            raise TypeError(f"send_nowait() takes str or bytes-like, not {type(message).__name__}")
        if self._fragmenting is not None:
            raise ConcurrencyError("a fragmented message is being sent; await send() instead")
        conn = self._conn
        if self._lost or not _is_open(conn):
            self._check_open()
            if self._lost:
                raise self._closed_error()
        if text:
            conn.send_text(message)
        else:
            conn.send_binary(message)
        if self._debug:
            self.logger.debug("> %s message of %d (nowait)", "text" if text else "binary", len(message))
        if self._lone_left:
            if not self._unflushed_count and self._flush_handle is None:
                self._lone_left -= 1
                out = conn.data_to_send_buffers()
                if len(out) == 1:
                    self._transport.write(out[0])
                else:
                    write_buffers(self._transport, out)
            else:
                self._c_queued(len(message))
        else:
            size = len(message)
            if self._handling and self._unflushed + size < _FLUSH_BYTES and self._unflushed_count < _FLUSH_COUNT - 1:
                self._unflushed += size
                self._unflushed_count += 1
            else:
                self._c_queued(size)
        if self._write_paused and not self._flood_paused:
            self._flood_paused = True
            self._sync_reading()
