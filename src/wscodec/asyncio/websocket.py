"""The asyncio ``WebSocket``: an :class:`asyncio.BufferedProtocol` driving a sans-I/O ``Connection``.

Each socket read lands in a shared buffer and is one ``Connection.receive_data`` call; a coroutine blocked in
:meth:`WebSocket.recv` is woken through a future it owns, without a task hop per message. No RFC 6455 rule
lives here: framing, close codes, UTF-8 and size limits are the Connection's job; this layer moves bytes,
wakes waiters and runs timers (keepalive, close and open timeouts).

Messages are always taken from the Connection frame by frame (``stream_messages=True``) and reassembled
here, so :meth:`WebSocket.recv` (whole messages) and :meth:`WebSocket.recv_streaming` (fragments, bounded
memory) work on the same connection without a mode switch. The pieces of a message are gathered into one
growing buffer (``Pieces``, in ``_hotpath``), so memory follows the payload, not the number of fragments.

A protocol violation behind valid messages is held by the Connection (``defer_errors``): reading stops,
the application gets those messages and its replies go out before the Close, which is sent when it asks
for the next message, or after ``close_timeout`` (see :meth:`WebSocket._on_pending_error`).
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import contextlib
import inspect
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Generator, Iterable, Mapping, Sequence
from typing import Any, ClassVar, cast

from .. import _options as checks
from .._logging import ConnectionLogger, LoggerLike, base_logger, format_peer, log_closed, log_opened
from .._write import half_close
from ..compression import INFLATING_READ
from ..connection import CLOSED, CONNECTING, FAIL_LINGER, OPEN, Connection, State
from ..errors import ConcurrencyError, ConnectionClosed, ConnectionClosedOK, _closed_during_handshake
from ..events import (
    BinaryFragment,
    Closed,
    CloseReceived,
    Ping,
    Pong,
    ProtocolViolation,
    Request,
    Response,
    TextFragment,
    decoded,
)
from ..frames import build_close_payload, control_payload
from ._hot_backend import DATA_TYPES, LONE_WRITES, READ_SIZE, HotPath, MessageWaiter, Pieces
from ._hot_backend import HOT_PATH_BACKEND as HOT_PATH_BACKEND  # (which twin runs: read by the tests and checks)
from ._hotpath_pure import Data
from .browser_events import CloseEvent, ErrorEvent, Event, MessageEvent
from .busy_poll import BusyPoller

__all__ = ["CloseEvent", "ConnectionLogger", "ErrorEvent", "Event", "MessageEvent", "WebSocket"]

logger = logging.getLogger(__name__)


Listener = Callable[[Any], Any]

_BINARY_TYPES = ("bytes", "bytearray", "memoryview")
# Socket reads land in per-thread buffers (see _read_buffer): READ_SIZE bytes at a time, and up to
# READ_MAX (never more than the connection's max_size) for a connection whose reads are of large messages.
READ_MAX = 4 * 1024 * 1024
# A read is "of large messages" when it holds at least this many bytes per event it produced.
LARGE_READ = 16 * 1024
_thread_local = threading.local()
# The events that can end a message (a whole message is one, with final set).
_MESSAGE_ENDS = (TextFragment, BinaryFragment)


def _completes_whole_frames(events: list[Any]) -> bool:
    """Whether a read's ``events`` complete a message and hold no fragment of one still in progress. The
    events of a read merge its fragments (one or two per message), so a read of messages of many small
    fragments passed for one of large frames; such a read almost always ends inside a message, which shows
    as a fragment that is not final."""
    completes = False
    for event in events:
        if type(event) in _MESSAGE_ENDS:
            if not event.final:
                return False
            completes = True
    return completes


def _read_buffer(size: int = READ_SIZE) -> memoryview:
    """The buffer a socket read of ``size`` bytes goes to: per thread, shared by every connection of that
    thread's loop. There are two: READ_SIZE bytes, made with the first connection, and one for the reads
    that grew past that (see WebSocket._size_reads), replaced by a larger one when a read asks for more,
    up to READ_MAX; such a read takes its first ``size`` bytes.

    Each read is decoded before the loop does anything else (a grown one READ_SIZE bytes at a time, each
    step's messages acted on before the next is decoded: HotPath._handle_large_read), and the decoder copies
    what it keeps (a partial frame, the payloads), so no connection needs a buffer of its own; asyncio's
    default ``data_received`` path allocates (and for 256 KiB reads, maps) a new bytes object per read
    instead.
    """
    if size <= READ_SIZE:
        view: memoryview | None = getattr(_thread_local, "view", None)
        if view is None:
            view = _thread_local.view = memoryview(bytearray(READ_SIZE))
        return view
    size = min(size, READ_MAX)
    large: memoryview | None = getattr(_thread_local, "large", None)
    if large is None or len(large) < size:
        large = _thread_local.large = memoryview(bytearray(size))
    return large[:size]


class _MessageStream:
    """What :meth:`WebSocket.recv_streaming` returns: an async iterator, also awaitable (to itself)."""

    def __init__(self, ws: WebSocket, decode: bool | None) -> None:
        self._ws = ws
        self._done = False
        self._decode = decode
        # decode=True: binary fragments are decoded as they come, a character may straddle two of them.
        self._decoder = codecs.getincrementaldecoder("utf-8")() if decode else None

    def __await__(self) -> Generator[Any, None, _MessageStream]:
        return self._itself().__await__()

    async def _itself(self) -> _MessageStream:
        return self

    def __aiter__(self) -> _MessageStream:
        return self

    async def __anext__(self) -> Data:
        if self._done:
            raise StopAsyncIteration
        data, final = await self._ws._next_fragment(self)
        if final:
            self._done = True
        if self._decode is None:
            return data
        if isinstance(data, str):
            return data if self._decode else data.encode("utf-8")
        decoder = self._decoder
        return bytes(data) if decoder is None else decoder.decode(data, final)


def _cancelled_from_outside(task: asyncio.Task[Any]) -> bool:
    """A cancelled task that someone cancelled, rather than one whose coroutine raised CancelledError itself
    (Python 3.10 cannot tell them apart: both are taken as cancelled from outside)."""
    cancelling = getattr(task, "cancelling", None)
    return cancelling is None or cancelling() > 0


def _listener_or_none(callback: Any) -> Any:
    """An ``on...`` handler as set: None, or a callable. Anything else is a TypeError at once, rather than
    an error logged for every event (and every message lost to ``recv()``)."""
    if callback is not None and not callable(callback):
        raise TypeError(f"an event handler must be callable or None, not {callback.__class__.__name__}")
    return callback


def _forget(waiter: asyncio.Future[Any]) -> None:
    """The keepalive no longer awaits its Ping's waiter (answered, timed out, or the connection ended):
    cancel it if pending, else look at its exception (the connection's end, set by connection_lost), so
    that a dead peer costs no "Future exception was never retrieved" ERROR in the log."""
    if not waiter.done():
        waiter.cancel()
    elif not waiter.cancelled():
        waiter.exception()


class WebSocket(HotPath, asyncio.BufferedProtocol):
    """One WebSocket connection over an asyncio transport, client or server side.

    Built by :func:`~wscodec.asyncio.connect` and :func:`~wscodec.asyncio.serve`, not directly. Offers
    both the Python API (``await recv()``, ``async for``, ``await send()``, ``await ping()``,
    ``await close()``) and the browser's (``onopen``/``onmessage``/``onerror``/``onclose``,
    ``add_event_listener``, ``ready_state``, ``binary_type``, ``buffered_amount``...).

    While a ``message`` listener is set (``onmessage`` or ``add_event_listener("message", cb)``), whole
    messages go to the listeners instead of the queue that ``recv()`` reads.
    """

    # Slots, not the instance dict, for everything __init__ sets. CPython shares one key table among the
    # dicts of a class's instances while they have at most 29 keys; past that each instance gets a plain
    # dict: ``self.x`` takes a slower load and ``self.method()`` is not specialised. This object has about
    # 60 attributes, read on every message. ``__dict__`` stays, for applications' own attributes.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_abort_handle",
        "_callback_tasks",
        "_close_held",
        "_drain_waiters",
        "_error_timer",
        "_fail_code",
        "_fail_reason",
        "_held_errors",
        "_keepalive_task",
        "_listeners",
        "_lost_waiter",
        "_onclose",
        "_onerror",
        "_onmessage",
        "_onopen",
        "_open_waiter",
        "_opened_at",
        "_opening",
        "_paused_for_app",
        "_peer",
        "_pings",
        "_release_due",
        "_stream_owner",
        "_transport_closing",
        "_transport_reading",
        "_write_low",
        "close_timeout",
        "id",
        "latency",
        "logger",
        "ping_interval",
        "ping_timeout",
        "slow_consumer",
        "slow_consumer_limit",
        "url",
        "write_limit",
    )

    # The per-message steps live in HotPath (compiled, or its pure twin); send and send_nowait are public
    # API, so the class names them here, where the reference documents WebSocket's own members.
    send = HotPath.send
    send_nowait = HotPath.send_nowait

    CONNECTING: ClassVar[int] = 0
    OPEN: ClassVar[int] = 1
    CLOSING: ClassVar[int] = 2
    CLOSED: ClassVar[int] = 3

    def __init__(
        self,
        connection: Connection,
        *,
        url: str = "",
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 10.0,
        max_queue: int | None = 16,
        write_limit: int | tuple[int, int | None] = 65536,
        binary_type: str = "bytes",
        slow_consumer: str = "close",
        slow_consumer_limit: int = 1 << 20,
        logger: LoggerLike = None,
        busy_poller: BusyPoller | None = None,
    ) -> None:
        if max_queue is not None and max_queue < 1:
            raise ValueError("max_queue must be >= 1 or None")
        if slow_consumer not in ("close", "skip", "wait"):
            raise ValueError("slow_consumer must be 'close', 'skip' or 'wait'")
        self._conn = connection
        connection.defer_errors = True  # see _on_pending_error
        self.url = url
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.max_queue = max_queue
        #: The transport's high water mark: ``send()`` waits above it.
        self.write_limit, self._write_low = checks.write_limits(write_limit)
        self.slow_consumer = slow_consumer
        self.slow_consumer_limit = checks.slow_consumer_limit(slow_consumer_limit)
        self._binary_type = "bytes"
        self.binary_type = binary_type
        #: Round-trip time of the last ping answered, in seconds (0.0 before any).
        self.latency = 0.0
        self._loop = asyncio.get_running_loop()
        # The handshake is read INFLATING_READ bytes at a time: frames pipelined behind the request (or the
        # 101) are decoded at once when it opens, perhaps compressed. _opened sizes the reads after it.
        self._read_view = _read_buffer()[:INFLATING_READ]
        if busy_poller is not None:
            # An instance attribute shadows the class's method: the transport looks ``buffer_updated`` up
            # once it has this protocol, so connections without busy polling keep the bare compiled method.
            vars(self)["buffer_updated"] = busy_poller.wrap(self.buffer_updated)
        # The bytes of an opening handshake still being read (a server's; see ServerWebSocket): None when open.
        self._pre: bytearray | None = None
        # Any transport with asyncio's Transport methods: asyncio's own, uvloop's (not subclasses of it), TLS.
        self._transport: asyncio.Transport | None = None
        #: A random id for this connection; its first 8 hex digits appear in every log line about it.
        self.id: uuid.UUID = uuid.uuid4()
        self._peer = "-"
        base = base_logger(logger, connection.role)
        #: Logs about this connection: a :class:`ConnectionLogger` over the ``logger`` argument (default
        #: ``wscodec.server`` or ``wscodec.client``). INFO: opened and closed (records carry ``event``
        #: "opened"/"closed" in their extra); DEBUG: frames; never payloads.
        self.logger: ConnectionLogger = ConnectionLogger(base, self)
        self._debug = self.logger.isEnabledFor(logging.DEBUG)
        # The "closed" line gives the duration and the Connection's traffic counters.
        self._opened_at: float | None = None
        # Receiving: fragments wait in _queue until a consumer takes them; recv() moves the pieces of a
        # message in progress into _partial (object state, so a cancelled recv() loses nothing).
        self._queue: collections.deque[TextFragment | BinaryFragment] = collections.deque()
        self._partial = Pieces()
        self._waiter: MessageWaiter | None = None
        # What a read that brings a message hands the task waiting for it (MessageWaiter.wake_now): a
        # Future already done with None, which the Task reads cheaper than the waiter itself.
        self._resumed: asyncio.Future[None] = asyncio.Future(loop=self._loop)
        self._resumed.set_result(None)
        self._busy = False  # the application holds a message and has not asked for the next one yet
        self._error_timer: asyncio.TimerHandle | None = None  # bounds how long a pending error waits
        self._reading_paused = False  # max_queue messages wait for the application (or a held error)
        # Reading paused until the transport drains: the peer pings faster than our transport drains
        # (Connection.flooded), or send_nowait() queued past write_limit.
        self._flood_paused = False
        self._transport_reading = True  # what we last told the transport
        self._paused_for_app = False  # reading paused for the application since the keepalive looked
        self._streaming = False  # a recv_streaming() iterator is part-way through a message
        self._stream_owner: _MessageStream | None = None  # ... that one
        # Sending.
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        # Small messages sent in one loop iteration leave in one write (see _queued).
        self._flush_handle: asyncio.Handle | None = None
        self._unflushed = self._unflushed_count = 0
        # Replies this step may still write at once, each alone (see _queued); after these they batch.
        self._lone_left = LONE_WRITES
        # True while _handle delivers a read's events: what callbacks send then goes out in _handle's own
        # write at its end (one write for the replies to one read, no flush to schedule).
        self._handling = False
        self._fragmenting: asyncio.Future[None] | None = None  # a fragmented send is in progress
        self._pings: list[tuple[bytes, asyncio.Future[float] | None, float]] = []
        # Lifecycle.
        self._open_waiter: asyncio.Future[None] = self._loop.create_future()
        self._lost_waiter: asyncio.Future[None] = self._loop.create_future()
        self._lost = False
        self._close_exc: ConnectionClosed | None = None
        self._fail_code: int | None = None
        self._fail_reason = ""
        self._transport_closing = False
        self._abort_handle: asyncio.TimerHandle | None = None
        self._keepalive_task: asyncio.Task[None] | None = None
        # Browser API.
        self._listeners: dict[str, list[Listener]] = {"open": [], "message": [], "error": [], "close": []}
        self._onmessage: Listener | None = None
        self._onopen: Listener | None = None
        self._onerror: Listener | None = None
        self._onclose: Listener | None = None
        self._has_message_listener = False
        self._message_callbacks: tuple[Listener, ...] = ()  # onmessage, then the added ones (see _dispatch)
        self._cb_partial = Pieces()
        self._callback_tasks: set[asyncio.Task[Any]] = set()
        self._opening: asyncio.Task[None] | None = None  # create_websocket's connect, until it ends
        # While max_queue async listeners' tasks run, reading is paused and the messages of the read in hand
        # wait here, in order, for their turn (see _listener_returned); the close event waits behind them.
        self._listeners_paused = False
        self._cb_backlog: collections.deque[TextFragment | BinaryFragment] = collections.deque()
        self._held_errors: list[ErrorEvent] = []
        self._close_held = False
        self._release_due = False  # a _release_held() is scheduled

    # ------------------------------------------------------------------ attributes

    @property
    def connection(self) -> Connection:
        """The sans-I/O :class:`~wscodec.connection.Connection` this object drives."""
        return self._conn

    @property
    def ready_state(self) -> int:
        """0 CONNECTING, 1 OPEN, 2 CLOSING (closing handshake under way or done, TCP still up), 3 CLOSED.

        The state now, not the state an event was queued in, as a browser's would be: in ``onopen`` and
        ``onmessage`` it is already CLOSING when the peer's Close came in the same read, and in ``onerror``
        for a failure of an open connection it is CLOSING (our Close is out, TCP still up)."""
        if self._lost:
            return 3
        state = self._conn.state
        return 2 if state is CLOSED else int(state)

    @property
    def binary_type(self) -> str:
        """How ``recv()`` returns binary messages: "bytes" (default), "bytearray" (a writable copy) or
        "memoryview" (a view of the received bytes, no copy)."""
        return self._binary_type

    @binary_type.setter
    def binary_type(self, value: str) -> None:
        if value not in _BINARY_TYPES:
            raise ValueError(f"binary_type must be one of {', '.join(_BINARY_TYPES)}")
        self._binary_type = value

    @property
    def buffered_amount(self) -> int:
        """Bytes of messages sent and not yet written to the socket (framing included)."""
        transport = self._transport
        if transport is None or self._lost:
            return 0
        return transport.get_write_buffer_size() + self._conn.bytes_to_send

    @property
    def protocol(self) -> str:
        """The negotiated subprotocol, "" when none."""
        return self._conn.subprotocol or ""

    @property
    def subprotocol(self) -> str | None:
        """The negotiated subprotocol, None when none (websockets' name; :attr:`protocol` is the browser's)."""
        return self._conn.subprotocol

    @property
    def state(self) -> State:
        """The connection's :class:`~wscodec.connection.State` (websockets' name; :attr:`ready_state` is the
        browser's number)."""
        return self._conn.state

    @property
    def extensions(self) -> str:
        """The negotiated extensions as the server sent them in ``Sec-WebSocket-Extensions``, "" if none."""
        response = self._conn.response
        if response is None or response.status_code != 101:
            return ""
        return response.header("Sec-WebSocket-Extensions") or ""

    @property
    def request(self) -> Request | None:
        """The opening handshake request (sent by a client, received by a server)."""
        return self._conn.request

    @property
    def response(self) -> Response | None:
        """The opening handshake response."""
        return self._conn.response

    @property
    def close_code(self) -> int | None:
        """None while open. Then: the peer's close code after a closing handshake (1005 if it gave none);
        the code we failed the connection with (1011 keepalive timeout, 1002/1007/1009 protocol errors,
        1008 slow consumer); 1006 if the connection ended without a Close frame."""
        exc = self._close_exc
        return None if exc is None else exc.code

    @property
    def close_reason(self) -> str | None:
        """The reason that goes with :attr:`close_code`: None while open, as websockets' (and the threaded
        API's); "" for a close without one."""
        exc = self._close_exc
        return None if exc is None else exc.reason

    @property
    def remote_address(self) -> Any:
        """The peer's address (``(host, port)`` for TCP), None before the connection is made."""
        return None if self._transport is None else self._transport.get_extra_info("peername")

    @property
    def local_address(self) -> Any:
        """Our end's address."""
        return None if self._transport is None else self._transport.get_extra_info("sockname")

    @property
    def transport(self) -> asyncio.Transport | None:
        return self._transport

    def __repr__(self) -> str:
        states = ("CONNECTING", "OPEN", "CLOSING", "CLOSED")
        return f"<{type(self).__name__} {self._conn.role} {states[self.ready_state]} {self.remote_address}>"

    # ------------------------------------------------------------------ browser API

    @property
    def onmessage(self) -> Listener | None:
        """Callback (sync, or async: run as a task) for each whole message, given a :class:`MessageEvent`.

        Reading pauses while ``max_queue`` async listeners' tasks are still running, as it does for
        messages ``recv()`` has not taken."""
        return self._onmessage

    @onmessage.setter
    def onmessage(self, callback: Listener | None) -> None:
        self._onmessage = _listener_or_none(callback)
        self._message_listeners_changed()

    @property
    def onopen(self) -> Listener | None:
        """Callback (sync or async) for the open event, given an :class:`Event`."""
        return self._onopen

    @onopen.setter
    def onopen(self, callback: Listener | None) -> None:
        self._onopen = _listener_or_none(callback)

    @property
    def onerror(self) -> Listener | None:
        """Callback (sync or async) for the error event, given an :class:`ErrorEvent`."""
        return self._onerror

    @onerror.setter
    def onerror(self, callback: Listener | None) -> None:
        self._onerror = _listener_or_none(callback)

    @property
    def onclose(self) -> Listener | None:
        """Callback (sync or async) for the close event, given a :class:`CloseEvent`."""
        return self._onclose

    @onclose.setter
    def onclose(self, callback: Listener | None) -> None:
        self._onclose = _listener_or_none(callback)

    def add_event_listener(self, type: str, callback: Listener) -> None:
        """Add a listener for "open", "message", "error" or "close" (``addEventListener``). None does
        nothing, as a null callback does in the DOM; anything else that cannot be called is a TypeError here,
        rather than an error logged for every event (and every message lost to ``recv()``)."""
        if type not in self._listeners:
            raise ValueError(f"unknown event type {type!r}")
        if callback is None:
            return
        if not callable(callback):
            raise TypeError(f"an event listener must be callable, not {callback.__class__.__name__}")
        if callback not in self._listeners[type]:
            self._listeners[type].append(callback)
        if type == "message":
            self._message_listeners_changed()

    def remove_event_listener(self, type: str, callback: Listener) -> None:
        """Remove a listener added with :meth:`add_event_listener`."""
        listeners = self._listeners.get(type, [])
        if callback in listeners:
            listeners.remove(callback)
        if type == "message":
            self._message_listeners_changed()

    def _message_listeners_changed(self) -> None:
        own = self._onmessage
        self._message_callbacks = ((own,) if own is not None else ()) + tuple(self._listeners["message"])
        had = self._has_message_listener
        self._has_message_listener = bool(self._message_callbacks)
        # A message part-way through moves to its new consumer with the pieces taken so far: the first
        # listener takes over what a cancelled recv() had gathered, recv() what the last listener had.
        # (Left behind, those pieces were lost to the next message, or kept the listeners waiting forever.)
        if self._has_message_listener and not had and self._partial and not self._streaming:
            self._cb_partial.add(self._partial.take())
        elif had and not self._has_message_listener:
            if self._cb_partial:
                self._partial.add(self._cb_partial.take())
            if self._cb_backlog:
                self._backlog_to_queue()
            elif self._held_errors or self._close_held:  # nothing waits for a listener any more
                self._schedule_release()
        if self._has_message_listener and self._queue:
            self._loop.call_soon(self._drain_queue_to_listeners)

    def _backlog_to_queue(self) -> None:
        """The last message listener is gone: the messages still waiting for their turn go to ``recv()``,
        ahead of what arrived after them. What was held behind them fires once this step is over, unless a
        listener added meanwhile takes them back (``remove_event_listener(f)`` then ``add_event_listener(g)``)."""
        backlog, queue = self._cb_backlog, self._queue
        queue.extendleft(reversed(backlog))
        backlog.clear()
        max_queue = self.max_queue
        if max_queue is not None and len(queue) >= max_queue and not self._reading_paused:
            self._reading_paused = True
            self._sync_reading()
        self._wake_reader()
        self._schedule_release()

    def _drain_queue_to_listeners(self) -> None:
        """Hand messages queued before a message listener appeared to it, in order."""
        queue = self._queue
        while self._has_message_listener and queue and not self._partial and not self._streaming:
            if self._listeners_paused:  # max_queue listener tasks run: the rest waits its turn
                self._cb_backlog.extend(queue)
                queue.clear()
                break
            self._deliver_to_listeners(queue.popleft())
        self._schedule_release()  # (what was held behind these messages, once they are all handed over)
        self._maybe_resume_reading()

    def _deliver_to_listeners(self, event: TextFragment | BinaryFragment) -> None:
        if not event.final:
            self._cb_partial.add(event.data)
            return
        data: Any = event.data
        if self._cb_partial:
            self._cb_partial.add(data)
            data = self._cb_partial.take()
        if type(event) is BinaryFragment:
            data = self._convert_binary(data)
        self._dispatch_message(data)

    def _dispatch_message(self, data: Any) -> None:
        """Give one whole message to the message listeners (``onmessage`` first, then the others in order)."""
        self._call_listeners("message", self._message_callbacks, MessageEvent("message", self, data))

    def _dispatch_error(self, error: BaseException) -> None:
        """Fire "error" on an open connection: after the messages that arrived before it, when some still
        wait for the message listeners (see _listener_returned)."""
        event = ErrorEvent("error", self, error)
        self._hand_over_behind_stream()
        if self._must_hold_event():
            self._held_errors.append(event)
            self._schedule_release()
        else:
            self._dispatch("error", event)

    def _messages_wait_for_listeners(self) -> bool:
        """Messages received are not all handed to the message listeners yet: an error or the close event
        that comes now is held until they are (_release_held). (While ``recv_streaming()`` is part-way
        through a message, the rest of it is the stream's; only what is queued behind it waits for the
        listeners, which get it once the stream takes its last piece.)"""
        return (
            bool(self._cb_backlog)
            or self._release_due
            or (self._has_message_listener and bool(self._queue) and not self._partial and not self._streaming)
        )

    def _hand_over_behind_stream(self) -> None:
        """An error or the close comes while ``recv_streaming()`` is part-way through a message, with whole
        messages queued behind it for the message listeners: they get them now, ahead of the event. (At
        the stream's last piece, they would; but it may never be taken, and ``recv()`` refuses meanwhile.)"""
        if not (self._streaming and self._has_message_listener):
            return
        queue = self._queue
        for index, event in enumerate(queue):
            if event.final:  # the streamed message's last piece: the rest is the listeners'
                behind = [queue.pop() for _ in range(len(queue) - index - 1)]
                break
        else:
            return
        for event in reversed(behind):
            if self._listeners_paused:  # max_queue listener tasks run: the rest waits its turn
                self._cb_backlog.append(event)
            else:
                self._deliver_to_listeners(event)

    def _must_hold_event(self) -> bool:
        """An error or the close event that comes now waits (_release_held): behind messages not yet with
        the listeners, or behind errors that wait already, so the events keep the order they came in."""
        return bool(self._held_errors) or self._messages_wait_for_listeners()

    def _schedule_release(self) -> None:
        """Run _release_held() once this loop step is over (the listener tasks just started take their first
        step before it, as when nothing waited)."""
        if not self._release_due:
            self._release_due = True
            self._loop.call_soon(self._release_held)

    def _release_held(self) -> None:
        """Every message is with the listeners now: act on the peer's held protocol error, fire the errors
        and the close event that waited behind the messages. (Still waiting, because a listener took the
        messages back or more wait their turn: the step that hands the last over schedules this again.)"""
        self._release_due = False
        if self._messages_wait_for_listeners():  # (a drain or a task's end schedules this again)
            return
        if self._conn.pending_error is not None and self._has_message_listener:
            self._fail_pending()
        errors, self._held_errors = self._held_errors, []
        for event in errors:
            self._dispatch("error", event)
        if self._close_held:
            self._close_held = False
            self._dispatch_close()

    def _dispatch(self, type: str, event: Event) -> None:
        """Fire "open", "error" or "close" (messages go through _dispatch_message)."""
        own = getattr(self, "on" + type)
        callbacks = self._listeners[type]
        self._call_listeners(type, callbacks if own is None else [own, *callbacks], event)

    def _call_listeners(self, type: str, callbacks: Sequence[Listener], event: Event) -> None:
        """Call each listener; an exception is logged, an awaitable result (async listener) runs as a task."""
        for callback in tuple(callbacks):  # (a snapshot: listeners may add or remove listeners)
            try:
                result = callback(event)
            except ConnectionClosed as exc:  # the connection closed under it (a send): not the listener's bug
                self.logger.debug("%s callback ended on %s", type, exc)
                continue
            except (Exception, asyncio.CancelledError):  # (CancelledError from a cancelled future's result(),
                # raised out of data_received, would make asyncio abort the transport: no Close, 1006)
                self.logger.exception("error in %s callback", type)
                continue
            if result is not None:  # (isawaitable costs more than most callbacks: not for None)
                self._listener_returned(result)

    def _listener_returned(self, result: Any) -> None:
        """A listener returned something: an awaitable (an async listener's coroutine) runs as a task.

        Those tasks are the async listeners' queue: each holds its message (up to ``max_size``) until it
        ends. So, as for the messages ``recv()`` has not taken yet, at most ``max_queue`` of them run: then
        reading pauses (a peer faster than the listener, or one that never reads the replies the listener
        awaits, would otherwise grow tasks and memory without bound), the rest of the read in hand waits in
        ``_cb_backlog`` (its messages as parsed, about a hundred bytes each beyond their payload, not a task
        of about two kilobytes each), and each task that ends hands the next message over, in order. Reading
        resumes when none waits and a quarter of the slots are free again. An error or the close event that
        comes meanwhile waits behind those messages, as the browser orders them. (A message starts a task
        per async listener, and async open, error and close listeners' tasks count too.)
        """
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            tasks = self._callback_tasks
            tasks.add(task)
            task.add_done_callback(self._callback_done)
            max_queue = self.max_queue
            if max_queue is not None and len(tasks) >= max_queue and not self._listeners_paused:
                self._listeners_paused = True
                self._sync_reading()

    def _callback_done(self, task: asyncio.Task[Any]) -> None:
        tasks = self._callback_tasks
        tasks.discard(task)
        if self._listeners_paused:
            backlog = self._cb_backlog
            max_queue = self.max_queue
            if backlog and task.cancelled() and _cancelled_from_outside(task):
                # Cancelled by someone (asyncio.run() ending cancels every task): started now, the next
                # message's task would be destroyed pending. Once none is left, the waiting ones are dropped.
                if not tasks:
                    self.logger.info("listener tasks cancelled: %d waiting message parts dropped", len(backlog))
                    backlog.clear()
                    self._schedule_release()
            elif backlog:
                while backlog and (max_queue is None or len(tasks) < max_queue):
                    self._deliver_to_listeners(backlog.popleft())
                if not backlog:
                    self._schedule_release()
            # Reading resumes once a quarter of the slots are free: a few long-lived listener tasks (a
            # subscription one message started) must not hold the connection with slots to spare.
            if not backlog and (max_queue is None or len(tasks) <= max_queue - max(1, max_queue // 4)):
                self._listeners_paused = False
                self._sync_reading()
        error = None if task.cancelled() else task.exception()
        if isinstance(error, ConnectionClosed):  # the connection closed under it: not the listener's bug
            self.logger.debug("event callback ended on %s", error)
        elif error is not None:
            self.logger.error("error in event callback", exc_info=error)

    # ------------------------------------------------------------------ asyncio.BufferedProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Duck-typed: uvloop's transports have every method of asyncio.Transport but do not subclass it.
        self._transport = transport = cast(asyncio.Transport, transport)
        if self._conn.state is CLOSED:  # close() came while connecting: abandoned
            transport.abort()
            # asyncio reports the end of an aborted transport with connection_lost(); uvloop does not when
            # create_connection() was cancelled as it connected: report it ourselves, once, if it did not.
            self._loop.call_soon(self._lost_after_abort)
            return
        self._peer = format_peer(transport.get_extra_info("peername"))
        transport.set_write_buffer_limits(high=self.write_limit, low=self._write_low)
        out = self._conn.data_to_send()
        if out:
            transport.write(out)

    def _size_reads(self, nbytes: int, events: list[Any]) -> None:
        """Size the next socket read, after a read of ``nbytes`` that filled the buffer or was taken into a
        grown one and produced ``events`` (HotPath.buffer_updated calls this only then).

        With large messages in flight, READ_SIZE reads cut the stream into many small steps, each waking
        the peer for a few replies: the kernel's work per message, not this library's, then sets the pace
        (64 KiB messages, 64 in flight: 0.5-0.75 of picows' rate, whose reads grow the same way). So a
        connection whose reads fill the buffer and complete large messages reads twice as much next time,
        up to ``max_size`` (READ_MAX at most), and back down as soon as its reads hold small frames or
        fill less than half of it. A read of small frames never grows the buffer (each event is an object
        to make, a Ping's Pong a reply to queue: a ping flood stays at READ_SIZE per read), nor does one
        that completes no message (the middle of a large message, a run of fragments), nor one that ends
        inside a fragmented message (messages of many small fragments, whose events merge them: grown to
        ``max_size``, such reads kept uvloop, which reads up to 32 times per wake-up, from the other
        connections for seconds). The bound, even
        for a peer that switches from large messages to small ones, is one read of at most ``max_size``
        bytes: no more than one message may hold.
        """
        size = current = len(self._read_view)
        if len(events) * LARGE_READ > nbytes:
            size = READ_SIZE
        elif nbytes == size and _completes_whole_frames(events):
            limit = self._conn.max_message_size  # max_size (None: no limit)
            size = max(current, min(2 * size, READ_MAX, READ_MAX if limit is None else limit))
        elif 2 * nbytes < size:
            size = max(size // 2, READ_SIZE)
        if self._conn.extensions:  # what a read may inflate to: see INFLATING_READ
            size = min(size, INFLATING_READ)
        if size != current or size > READ_SIZE:
            # A grown read always takes the thread's latest buffer, so that one it replaced is soon freed.
            view = _read_buffer(size)
            self._read_view = view if len(view) <= size else view[:size]

    def data_received(self, data: bytes | memoryview) -> None:
        """One socket read (a view of the shared read buffer: valid only during this call)."""
        self._handle(self._conn.receive_data(data))

    def eof_received(self) -> bool | None:
        if not self._conn.closed:
            self._handle(self._conn.receive_data(b""))
        return False  # let the transport close itself

    def _lost_after_abort(self) -> None:
        if not self._lost:
            self.connection_lost(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost:  # reported already (_lost_after_abort, _handshake_failed)
            return
        self._lost = True
        self._write_paused = False  # asyncio never calls resume_writing() on a lost transport
        if self._error_timer is not None:
            self._error_timer.cancel()
            self._error_timer = None
        if self._abort_handle is not None:
            self._abort_handle.cancel()
            self._abort_handle = None
        conn = self._conn
        if conn.state is CONNECTING:
            conn.fail(1006)
        elif not conn.closed:
            self._handle(conn.receive_data(b""))
        if self._close_exc is None:
            self._close_exc = self._conn.closed_error(1006, "", was_clean=False)
        if not self._open_waiter.done():
            self._open_waiter.set_exception(_closed_during_handshake("connection closed during the opening handshake"))
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
        self._wake_reader()
        self._wake_writers()
        for _payload, waiter, _sent in self._pings:
            if waiter is not None and not waiter.done():
                waiter.set_exception(self._closed_error())
        self._pings.clear()
        if not self._lost_waiter.done():
            self._lost_waiter.set_result(None)
        if self._debug:
            self.logger.debug("connection lost (%s)", exc)
        opening = self._open_waiter
        if not opening.cancelled() and opening.exception() is None:  # a failed open reports its own close
            self._log_closed()
            self._hand_over_behind_stream()
            if self._must_hold_event():
                self._close_held = True
                self._schedule_release()
            else:
                self._dispatch_close()

    def _log_closed(self) -> None:
        """The INFO line for the end of an opened connection: code, reason, duration, traffic each way."""
        if self._opened_at is None:
            return
        close = self._close_exc
        code, reason = (close.code, close.reason) if close is not None else (1006, "")
        log_closed(self.logger, self._conn, self.url, code, reason, self._opened_at)

    def _dispatch_close(self) -> None:
        close = self._close_exc or self._conn.closed_error(1006, "", was_clean=False)
        self._dispatch("close", CloseEvent("close", self, close.code, close.reason, close.was_clean))

    def _handshake_failed(self, error: BaseException) -> None:
        """For :func:`~wscodec.asyncio.create_websocket`: the open failed; fire error, then close (1006)."""
        if self._conn.state is CONNECTING:
            self._conn.fail(1006)
        if self._close_exc is None:
            self._close_exc = self._conn.closed_error(1006, "", was_clean=False)
        if self._transport is None:
            self._lost = True  # no transport will ever report its end: wait_closed() returns now
            if not self._lost_waiter.done():
                self._lost_waiter.set_result(None)
        self._dispatch("error", ErrorEvent("error", self, error))
        self._dispatch_close()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._conn.hold_pongs()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._conn.release_pongs()
        self._write_out()
        if self._flood_paused:
            self._flood_paused = False
            self._sync_reading()
        self._wake_writers()

    # ------------------------------------------------------------------ events from the Connection

    def _on_pending_error(self) -> None:
        """The peer broke the protocol behind messages the application may still answer (the Connection
        holds the error, ``defer_errors``): stop reading and fail once the application asks for the next
        message with none left, or after ``close_timeout``. Fail now if nothing is waiting for it (or more
        than ``max_queue`` messages are: they are still delivered, the replies just cannot all go out), if a
        ``close()`` came meanwhile, or if message listeners have it all (after their tasks' first step)."""
        queue = self._queue
        max_queue = self.max_queue
        if (
            self._conn.state is not OPEN
            or self._lost
            or (max_queue is not None and max(len(queue), len(self._cb_backlog)) > max_queue)
        ):
            self._fail_pending()
            return
        if not self._reading_paused:
            self._reading_paused = True
            self._sync_reading()
        if self._error_timer is None:
            self._error_timer = self._loop.call_later(self.close_timeout, self._fail_pending)
        if not queue and not self._busy and not self._cb_backlog:  # (_busy is False while a recv() waits)
            if self._has_message_listener:
                self._loop.call_soon(self._fail_pending)
            else:
                self._fail_pending()

    def _fail_pending(self) -> None:
        """Fail the connection with the error the Connection holds (its Close goes behind the replies)."""
        if self._error_timer is not None:
            self._error_timer.cancel()
            self._error_timer = None
        events = self._conn.fail_pending()
        if events:
            self._handle(events)

    def _handle_other(self, event: Any) -> None:
        kind = type(event)
        if self._debug:
            self.logger.debug("< %r", event)
        if kind is Pong:
            self._received_pong(event.payload)
        elif kind is Ping or kind is CloseReceived or kind is Request:
            pass
        elif kind is Response:
            if event.status_code == 101:
                self._opened()
        elif kind is ProtocolViolation:
            if self._open_waiter.done():
                self._fail_code, self._fail_reason = event.code, event.reason
                self.logger.info("failed: %s (close code %d)", event.reason, event.code)
                self._dispatch_error(event.error)
            else:
                self._open_waiter.set_exception(event.error)
        elif kind is Closed:
            self._closed(event.code, event.reason, event.was_clean)

    def _opened(self) -> None:
        """The handshake succeeded: start the keepalive, wake ``connect()``, fire ``onopen``."""
        if not self._open_waiter.done():
            self._open_waiter.set_result(None)
        if self._opened_at is None:
            self._opened_at = time.monotonic()
            log_opened(self.logger, self._conn, self.url)
        if not self._conn.extensions and len(self._read_view) < READ_SIZE:
            self._read_view = _read_buffer()  # the handshake's smaller reads are over (see __init__)
        elif self._conn.extensions and len(self._read_view) > INFLATING_READ:
            self._read_view = self._read_view[:INFLATING_READ]  # see INFLATING_READ; _size_reads keeps it
        if self.ping_interval is not None and self._keepalive_task is None:
            self._keepalive_task = self._loop.create_task(self._keepalive())
        self._dispatch("open", Event("open", self))

    def _closed(self, code: int, reason: str, was_clean: bool) -> None:
        if self._close_exc is not None:
            return
        if self._fail_code is not None:
            code, reason = self._fail_code, self._fail_reason
        self._close_exc = self._conn.closed_error(code, reason, was_clean=was_clean)
        self._wake_reader()
        self._wake_writers()

    def _after_closed(self) -> None:
        """The Connection is CLOSED: close the transport now (a clean close, server side), after the server's
        EOF (a clean close, client side), or after the peer's EOF (a failure: see
        :data:`~wscodec.connection.FAIL_LINGER`)."""
        transport = self._transport
        if self._transport_closing or self._lost or transport is None:
            return
        self._transport_closing = True
        exc = self._close_exc
        if exc is not None and exc.was_clean:
            if self._conn.is_client:
                # RFC 6455 section 7.1.1: the server closes TCP first; wait for its EOF, a bounded time.
                self._arm_abort()
                return
        elif self._linger(transport, FAIL_LINGER):
            # We failed the connection and the peer may still be sending: close() now would reset the
            # connection and could destroy our Close frame in flight, so the peer would never learn why (as
            # websockets, shut down our side, then read and drop until its EOF).
            self._sync_reading()  # (reading goes on once our Close is out: see _sync_reading)
            return
        transport.close()
        self._arm_abort()

    def _linger(self, transport: asyncio.Transport, delay: float) -> bool:
        """Shut down our side after what is buffered and abort ``delay`` seconds from now (never later than
        ``close_timeout``); the caller lets reading go on, so the peer's input is read and dropped until its
        EOF, and ``eof_received()`` then lets the transport close. Closing with unread input would make the
        kernel send a reset, which can destroy what we wrote last (a Close frame, an HTTP refusal).

        False, and nothing done, where lingering cannot help: over TLS, which cannot half-close, or when the
        peer does not read what we send (our transport is full: it would not read the last bytes either).
        """
        if self._write_paused or not half_close(transport):
            return False
        self._arm_abort(min(delay, self.close_timeout))
        return True

    def _arm_abort(self, delay: float | None = None) -> None:
        """Abort the transport ``delay`` (default ``close_timeout``) seconds from now, or sooner if an abort
        is armed for sooner: of two bounds (a close under way, then a failure's linger), the tighter holds."""
        if self._lost:
            return
        loop = self._loop
        when = loop.time() + (self.close_timeout if delay is None else delay)
        handle = self._abort_handle
        if handle is not None:
            if handle.when() <= when:
                return
            handle.cancel()
        self._abort_handle = loop.call_at(when, self._abort)

    def _abort(self) -> None:
        self._abort_handle = None
        if self._transport is not None and not self._lost:
            if self._debug:
                self.logger.debug("aborting the transport")
            self._transport.abort()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection from our side: queue a Close with ``code``, close the transport."""
        conn = self._conn
        if conn.closed or self._lost:
            return
        self._fail_code, self._fail_reason = code, reason
        conn.fail(code, reason)
        self._closed(code, reason, False)
        self._handle([])

    def _fail_with(self, error: BaseException, code: int, reason: str) -> None:
        """Fail the connection (:meth:`_fail`) because of ``error``, and fire "error" with it before the close
        event, as a browser does when it fails a connection and as a protocol violation does here. Only an
        open connection: one already closing keeps its own Close and code."""
        if self._conn.state is not OPEN or self._lost:
            return
        self._fail(code, reason)
        self._dispatch_error(error)

    def _wake_reader(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_writers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _closed_error(self) -> ConnectionClosed:
        exc = self._close_exc
        if exc is not None:
            return exc._renewed()
        closing = self._conn.closing_error()
        if closing is not None:  # we are closing: the peer has not answered yet
            return closing
        return self._conn.closed_error(1006, "", was_clean=False)

    # ------------------------------------------------------------------ receiving

    def _convert_binary(self, data: bytes) -> Any:
        binary_type = self._binary_type
        if binary_type == "bytes":
            return data
        return bytearray(data) if binary_type == "bytearray" else memoryview(data)

    def _maybe_resume_reading(self) -> None:
        if self._reading_paused and self._conn.pending_error is None:
            max_queue = self.max_queue or 1
            if len(self._queue) <= max_queue // 4:
                self._reading_paused = False
                self._sync_reading()

    def _sync_reading(self) -> None:
        """Pause or resume the transport's reading: paused while any reason to pause holds.

        Except once our Close is out: the closing handshake needs the peer's Close, which may wait behind
        messages the application will never read. Reading goes on, and the messages that arrive while
        ``max_queue`` are unread (or async listeners run) are dropped, so the bound holds (the threaded API
        does the same); a flood of Pings still pauses it until the transport drains.
        """
        reading = not (self._reading_paused or self._flood_paused or self._listeners_paused)
        if not reading and not self._flood_paused and self._conn.close_sent is not None:
            self._conn.drop_messages = reading = True
        if reading is not self._transport_reading and self._transport is not None and not self._lost:
            self._transport_reading = reading
            if reading:
                self._transport.resume_reading()
            else:
                self._transport.pause_reading()
                if not self._flood_paused:
                    self._paused_for_app = True

    async def _wait_for_data(self) -> None:
        waiter = self._data_waiter()
        if waiter is not None:
            try:
                await waiter
            finally:
                self._waiter = None

    async def recv(self, decode: bool | None = None) -> str | bytes:
        """The next message: a str for text, bytes for binary.

        ``decode`` is websockets': True returns a binary message decoded as UTF-8 (UnicodeDecodeError if
        it is not), False returns a text message as its UTF-8 bytes; None (the default) neither.

        Typed ``str | bytes``, which is what a connection returns unless asked otherwise: with
        :attr:`binary_type` set to "bytearray" or "memoryview" (the browser API's choice), binary
        messages come as that type, which type checkers treat as bytes-compatible.

        Raises :class:`~wscodec.errors.ConnectionClosed` once the connection is closed and every message
        received before has been returned. Cancelling it loses nothing.
        """
        if self._streaming:
            raise ConcurrencyError("recv_streaming() is part-way through a message: finish iterating it first")
        queue = self._queue
        while True:
            if queue:
                event = queue.popleft()
                if self._reading_paused:
                    self._maybe_resume_reading()
                if event.final:
                    data: Any = event.data
                    partial = self._partial
                    if partial:
                        partial.add(data)
                        data = partial.take()
                    self._busy = True
                    if decode is not None:
                        return decoded(data, decode)
                    if type(event) is BinaryFragment and self._binary_type != "bytes":
                        return self._convert_binary(data)  # type: ignore[no-any-return]
                    return data  # type: ignore[no-any-return]
                self._partial.add(event.data)
                continue
            if self._close_exc is not None and not queue:
                raise self._closed_error()
            await self._wait_for_data()

    def recv_streaming(self, decode: bool | None = None) -> _MessageStream:
        """The next message piece by piece: ``async for fragment in ws.recv_streaming():`` yields its data
        (str or bytes) as it arrives, the frames of one read together, so memory stays bounded by a read
        (and the frame size). ``decode`` is :meth:`recv`'s, applied to each piece (a binary message's
        pieces decoded incrementally: a UnicodeDecodeError at the first that cannot be UTF-8).

        If a cancelled :meth:`recv` had already taken the first pieces, they come as the first fragment.
        ``await ws.recv_streaming()`` returns the same iterator.
        """
        return _MessageStream(self, decode)

    async def _next_fragment(self, owner: _MessageStream) -> tuple[Data, bool]:
        if self._streaming and self._stream_owner is not owner:
            # Another iterator is part-way through this message: the rest is its, not this one's (which
            # would take it, and leave the other to run on into the next message), as in websockets.
            raise ConcurrencyError("another recv_streaming() is part-way through a message: finish it first")
        queue = self._queue
        while True:
            if self._partial:
                data: Any = self._partial.take()
                self._streaming = True
                self._stream_owner = owner
                return data, False
            if queue:
                event = queue.popleft()
                self._maybe_resume_reading()
                self._streaming = not event.final
                self._stream_owner = None if event.final else owner
                if event.final and queue and self._has_message_listener:
                    # A listener added while this message streamed: what queued behind it is the listener's.
                    self._loop.call_soon(self._drain_queue_to_listeners)
                self._busy = True
                if type(event) is BinaryFragment:
                    return self._convert_binary(event.data), event.final
                return event.data, event.final
            if self._close_exc is not None:
                self._streaming = False
                raise self._closed_error()
            await self._wait_for_data()

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self

    # __anext__ is a HotPath step (``async for`` runs it once per message); this is its path for all the
    # cases it does not take itself.

    async def _next_or_stop(self) -> str | bytes:
        """``async for``'s step through ``recv()``, when no whole message can be taken at once (a fragmented
        message, a held error, a close): a :class:`ConnectionClosedOK` ends the loop, as in websockets; any
        other close raises as ``recv()`` does (an application's own code, 3000-4999, included: the loop
        cannot tell it is normal)."""
        try:
            return await self.recv()
        except ConnectionClosedOK:
            raise StopAsyncIteration from None

    # ------------------------------------------------------------------ sending

    async def _wait_writable(self) -> None:
        """Wait while the transport's buffer is over ``write_limit`` (``pause_writing``).

        Raises :class:`~wscodec.errors.ConnectionClosed` once the transport is lost: a caller looping
        on "wait, then check" must never see this return at once without the connection making progress.
        """
        while self._write_paused:
            if self._lost:
                raise self._closed_error()
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.done() or waiter.cancelled():
                    # Cancelled (a send() under wait_for): forgotten at once, not kept until the transport
                    # drains, so a loop of sends that time out cannot grow the list.
                    with contextlib.suppress(ValueError):
                        self._drain_waiters.remove(waiter)
        if self._lost:
            raise self._closed_error()

    def _check_open(self) -> None:
        state = self._conn.state
        if state is not OPEN:
            if state is CONNECTING:
                raise RuntimeError("the WebSocket is not open yet")
            raise self._closed_error()

    # send() is a HotPath step (its common case, writing at once, runs once per reply); this is its path
    # when it must wait, or send a fragmented message.

    async def _send_waiting(self, message: Any, compress: bool, text: bool | None = None) -> None:
        """``send()`` past its first step: wait for the transport to drain or for a fragmented message to
        finish, then send, or send an iterable of fragments; and every send with ``text`` given."""
        while self._write_paused or self._fragmenting is not None:
            if self._fragmenting is not None:
                await asyncio.shield(self._fragmenting)
            else:
                await self._wait_writable()
        if text is None:
            if self._send_at_once(message, compress):
                return
        elif isinstance(message, DATA_TYPES):
            self._check_open()
            self._conn.send_message(message, compress=compress, text=text)
            self._queued(len(message))
            return
        if isinstance(message, Mapping):
            raise TypeError("send() takes str, bytes-like or an iterable of them, not a mapping")
        if isinstance(message, AsyncIterable):
            await self._send_fragments(message.__aiter__(), is_async=True, compress=compress, text=text)
        elif isinstance(message, Iterable):
            await self._send_fragments(iter(message), is_async=False, compress=compress, text=text)
        else:
            raise TypeError(f"send() takes str, bytes-like or an iterable of them, not {type(message).__name__}")

    async def _send_fragments(self, iterator: Any, *, is_async: bool, compress: bool, text: bool | None) -> None:
        async def next_item() -> tuple[bool, Any]:
            try:
                item = await iterator.__anext__() if is_async else next(iterator)
            except (StopIteration, StopAsyncIteration):
                return False, None
            if not isinstance(item, DATA_TYPES):
                raise TypeError(f"fragments must be str or bytes-like, not {type(item).__name__}")
            return True, item

        sent = False  # part of the message is out, not its end

        async def send(fragment: Any, fin: bool) -> None:
            nonlocal sent
            await self._wait_writable()
            self._check_open()
            self._conn.send_fragment(fragment, fin=fin, compress=compress, text=text)
            sent = not fin
            self._write_out()

        self._check_open()
        gate = self._fragmenting = self._loop.create_future()
        try:
            more, current = await next_item()
            if not more:
                return  # an empty iterable sends nothing
            if is_async:
                # Each fragment goes out as it comes, and an empty one ends the message, as websockets
                # does: the next may be a while coming (a generator awaiting its data), and looking ahead
                # for it, to set FIN on the last, would hold back the one in hand until then.
                empty = "" if isinstance(current, str) else b""
                while more:
                    await send(current, False)
                    more, current = await next_item()
                await send(empty, True)
                return
            while True:  # a plain iterable: one step ahead, so that FIN goes on the last fragment itself
                more, following = await next_item()
                await send(current, not more)
                if not more:
                    return
                current = following
        except BaseException as exc:
            if sent and self._conn.state is OPEN:
                # Half a message is on the wire and cannot be finished: RFC 6455 leaves failing as the way out.
                self._fail_with(exc, 1011, "error in fragmented message")
            raise
        finally:
            self._fragmenting = None
            gate.set_result(None)

    def _send_ping(self, payload: bytes, track: bool = True) -> asyncio.Future[float] | None:
        self._check_open()
        self._conn.send_ping(payload)
        waiter: asyncio.Future[float] | None = self._loop.create_future() if track else None
        pings = self._pings
        if pings:
            # Bounded by the ping() calls still waiting: forget the Pings nobody waits for any more (a
            # keepalive Ping without ping_timeout, a ping() whose caller was cancelled), so a peer that
            # never answers cannot grow this list. A late Pong for one of them matches nothing.
            pings[:] = [entry for entry in pings if entry[1] is not None and not entry[1].done()]
        pings.append((payload, waiter, time.perf_counter()))
        self._write_out()
        return waiter

    async def ping(self, data: str | bytes | bytearray | memoryview | None = b"") -> float:
        """Send a Ping and wait for the matching Pong; returns the round-trip time in seconds.

        Pongs are matched by payload; a Pong also answers every earlier Ping still waiting. ``None`` sends
        four random bytes, as websockets' default does.
        """
        payload = os.urandom(4) if data is None else control_payload(data)
        waiter = self._send_ping(payload)
        assert waiter is not None
        return await waiter

    async def pong(self, data: str | bytes = b"") -> None:
        """Send an unsolicited Pong (a heartbeat the peer does not answer), as websockets' ``pong()``."""
        self._check_open()
        self._conn.send_pong(control_payload(data))
        self._write_out()

    def _received_pong(self, payload: bytes) -> None:
        pings = self._pings
        for index, (sent_payload, _waiter, sent_at) in enumerate(pings):
            if sent_payload == payload:
                now = time.perf_counter()  # uvloop's loop.time() ticks in milliseconds
                self.latency = now - sent_at
                for _p, waiter, at in pings[: index + 1]:
                    if waiter is not None and not waiter.done():
                        waiter.set_result(now - at)
                del pings[: index + 1]
                return

    async def _keepalive(self) -> None:
        interval = self.ping_interval
        assert interval is not None
        timeout = self.ping_timeout
        try:
            while True:
                await asyncio.sleep(interval)
                if self._conn.state is not OPEN:
                    return
                waiter = self._send_ping(os.urandom(4), track=timeout is not None)
                if waiter is None:
                    continue
                try:
                    answered = await self._pong_within(waiter, timeout)
                finally:
                    _forget(waiter)
                if not answered:
                    if self._conn.state is OPEN:
                        self.logger.info("no pong within %s s, failing the connection", timeout)
                        self._fail_with(TimeoutError("keepalive ping timeout"), 1011, "keepalive ping timeout")
                    return
        except ConnectionClosed:
            return

    async def _pong_within(self, waiter: asyncio.Future[Any], timeout: float | None) -> bool:
        """Wait for the keepalive's Pong; False after ``timeout`` without it. Not while reading is paused for
        the application (``max_queue`` unread, or its listeners busy) and the peer reads what we send: its
        Pong may wait unread behind the pause, so the wait starts again for as long as reading stays
        paused. A peer that reads nothing either (our writes are paused) gets no such respite."""
        self._paused_for_app = not self._transport_reading
        while True:
            try:
                await asyncio.wait_for(asyncio.shield(waiter), timeout)
                return True
            except asyncio.TimeoutError:
                if not (self._paused_for_app and not self._write_paused and self._conn.state is OPEN):
                    return False
                self._paused_for_app = not self._transport_reading

    # ------------------------------------------------------------------ closing

    def _start_close(self, code: int, reason: str) -> None:
        """Send a Close (if the connection is open) and bound how long we wait for the end of TCP."""
        conn = self._conn
        if conn.state is OPEN and conn.sending_fragmented:
            # Part of a message of ours is out (a send() of an iterable), not its last fragment: a Close
            # would cut it short unnoticed, and look like a normal end. Fail instead, as websockets does
            # (and as the threaded API's close() does); the send() raises ConnectionClosedError.
            error = ConcurrencyError("close() while a fragmented message is part-way out")
            self._fail_with(error, 1011, "close during fragmented message")
        elif conn.state is OPEN:
            conn.close(code, reason)
            if self._debug:
                self.logger.debug("> close %d %r", code, reason)
            self._handle([])
            self._sync_reading()  # paused for unread messages: read on, for the peer's Close
            self._arm_abort()
        elif conn.state is CONNECTING:
            # As a browser's close() does: the attempt is abandoned (ready_state CLOSING until it is over),
            # and it fires error, then close (1006), instead of opening later anyway.
            conn.fail(1006)
            if self._transport is not None and not self._lost:
                self._transport.abort()
            elif self._opening is not None:
                self._opening.cancel()  # create_websocket's connect, not at the transport yet
        else:
            self._arm_abort()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake and wait (at most ``close_timeout``) until the connection is closed.

        Does nothing more than wait if it is already closing; a cancelled ``close()`` still closes (the
        timers keep running). A code or reason that may not go on the wire is a ValueError, whatever the
        state, as in browsers; the codes RFC 6455 lets an endpoint send are all allowed (1001-1003 and
        1007-1014 too, which a browser's ``close()`` refuses), as in websockets.
        """
        build_close_payload(code, reason)
        self._start_close(code, reason)
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is closed."""
        if self._transport is None and not self._lost and self._opening is None:
            return  # never connected, and not connecting (create_websocket's attempt is _opening)
        await asyncio.shield(self._lost_waiter)

    def _abort_now(self) -> None:
        if self._transport is not None and not self._lost:
            self._transport.abort()

    def _abandon(self) -> None:
        """A client's opening failed or was given up (an error, ``open_timeout``): end this WebSocket for
        good. A connection_made() still to come then aborts its transport (uvloop makes that call for a
        connection that completes as create_connection() is cancelled), and the end is reported even where
        the loop never calls connection_lost() (uvloop, for the same connection once made)."""
        if self._conn.state is CONNECTING:
            self._conn.fail(1006)
        if self._transport is not None and not self._lost:
            self._transport.abort()
            self._loop.call_soon(self._lost_after_abort)


WebSocketHandler = Callable[[WebSocket], Awaitable[Any]]
