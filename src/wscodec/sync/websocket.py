"""The threaded ``WebSocket``: a blocking socket driving the same sans-I/O ``Connection`` as asyncio.

One background thread reads the socket, feeds the :class:`~wscodec.connection.Connection` and queues whole
messages (at most ``max_queue``: when the application does not keep up, the thread stops reading and TCP
pushes back on the peer). Sends happen in the caller's thread under a lock (a fragmented send takes it for
each fragment, so that its iterator runs without it). A second, optional thread runs
the keepalive. No RFC 6455 rule lives here either: framing, close codes, UTF-8 and limits are the
Connection's job. A protocol violation behind valid messages is held by the Connection (``defer_errors``):
the reader stops until the application asks for the next message (or ``close_timeout``), so the replies to
those messages go out before the Close, as in the asyncio layer.

Why one lock guards both the Connection and the socket's writes, held across ``sendall``: frames must
leave in the order the Connection made them (a compressed stream cannot be reordered), and a peer that
stops reading must block the senders, which is the backpressure. A ``send()`` to such a peer keeps the
lock for as long as the peer does not read. ``close()`` and the keepalive promise bounds
(``close_timeout``, ``ping_timeout``), so they wait for the lock at most that long and, when the time runs
out, shut the socket down from their own thread, without the lock: the blocked ``sendall`` (and the
reader's ``recv``) fails at once, and every thread of the connection ends. They write their own Close or
Ping (a few bytes) only once the socket can take it, so that they never block in ``sendall`` themselves.
A separate write lock would not spare this: whoever holds it is blocked all the same, and keeping the
frames in order ties it to the Connection's lock.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

from .._logging import ConnectionLogger, LoggerLike, base_logger, log_closed, log_opened, peer_of
from ..compression import INFLATING_READ
from ..connection import CLOSED, OPEN, Connection
from ..errors import ConcurrencyError, ConnectionClosed
from ..events import (
    BinaryMessage,
    Closed,
    Ping,
    Pong,
    ProtocolViolation,
    Request,
    Response,
    TextMessage,
    decoded,
)
from ..frames import build_close_payload, control_payload

__all__ = ["WebSocket"]


_READ_SIZE = 65536
_END = object()  # what _MessageQueue.get() returns once the messages are over


class _MessageQueue:
    """The messages the reader thread received and the application has not read yet, then their end.

    Not a :class:`queue.Queue` with an end marker: the marker would need room in a full queue, and the
    reader thread must neither wait for that room (an application that stopped reading would block it
    forever) nor take a message's place (``recv()`` returns every message received before the close).
    The end is a flag beside the messages instead: it needs no room, and ``max_queue`` bounds the
    messages alone.
    """

    def __init__(self, limit: int | None) -> None:
        self._items: deque[Any] = deque()
        self._limit = limit
        self._ended = False
        self._discarding = False
        self._dropping = False  # a message found no room while discarding: every later one is dropped too
        self._waiting = False  # the reader waits (for room, or for the application to ask) instead of reading
        self._waited = False  # it waited since reader_waited() last looked
        self._holding = False  # the application took a message and has not asked for the next one yet
        self._getting = False  # a get() is under way (it may wait): a second one is a ConcurrencyError
        self._cond = threading.Condition(threading.Lock())

    def put(self, item: Any) -> None:
        """Add a message, waiting while ``limit`` are unread (the reader stops reading meanwhile); once
        :meth:`discard` was called, a message that finds no room is dropped instead, and so is every one
        after it: what the application reads is then a prefix of what arrived, never a stream with holes
        (one that had made room would otherwise get a later message right after an earlier one)."""
        with self._cond:
            if self._dropping:
                return
            limit = self._limit
            try:
                while limit is not None and len(self._items) >= limit:
                    if self._discarding:
                        self._dropping = True
                        return
                    self._waiting = self._waited = True
                    self._cond.wait()
            finally:
                self._waiting = False
            self._items.append(item)
            self._cond.notify_all()

    def reader_waited(self) -> bool:
        """Whether :meth:`put` waited for room since the last call, or waits now: the reader thread did
        not read meanwhile, so a Pong may be unread in the socket."""
        with self._cond:
            waited = self._waited or self._waiting
            self._waited = self._waiting
            return waited

    def discard(self) -> None:
        """The application is closing: the reader must keep reading until the peer's Close, so it stops
        waiting for room; the messages already queued stay."""
        with self._cond:
            self._discarding = True
            self._cond.notify_all()

    def end(self) -> None:
        """No more messages: :meth:`get` returns :data:`_END` once the queued ones are taken."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def get(self, timeout: float | None) -> Any:
        """The oldest message, or :data:`_END` after the last one; :class:`TimeoutError` after ``timeout``.
        A get() while another thread's waits is a ConcurrencyError, as websockets' ``recv()`` raises: which
        of the two a message would reach is chance."""
        with self._cond:
            if self._getting:
                raise ConcurrencyError("recv() is already waiting for a message in another thread")
            self._holding = False
            if not self._items and not self._ended:
                self._cond.notify_all()  # a reader in wait_until_asked()
            try:
                self._getting = True
                if not self._cond.wait_for(lambda: self._items or self._ended, timeout):
                    raise TimeoutError(f"no message within {timeout} s")
            finally:
                self._getting = False
            if not self._items:
                return _END
            item = self._items.popleft()
            self._holding = True
            self._cond.notify_all()
            return item

    def wait_until_asked(self, timeout: float) -> None:
        """For the reader thread, which holds a protocol error behind the queued messages: wait until the
        application holds no message and none is left (it asked for the next one, or never took any: no
        reply is due, so the connection fails at once, as in the asyncio layer), or starts closing
        (:meth:`discard`), at most ``timeout`` seconds. Counts as waiting for :meth:`reader_waited`: the
        reader does not read."""
        with self._cond:
            self._waiting = self._waited = True
            try:
                self._cond.wait_for(lambda: (not self._holding and not self._items) or self._discarding, timeout)
            finally:
                self._waiting = False


def close_notify(sock: socket.socket, timeout: float) -> None:
    """On TLS, send close_notify before TCP's end (RFC 8446 section 6.1), waiting at most ``timeout`` for the
    peer's: ``shutdown()`` on an :class:`ssl.SSLSocket` drops TLS without it, which a strict peer reports as
    a truncation. After this the socket is plain TCP (or, when the TLS shutdown failed, still TLS, which
    ``shutdown()`` then drops); nothing for a plain socket."""
    if isinstance(sock, ssl.SSLSocket) and timeout > 0:
        sock.settimeout(timeout)
        with contextlib.suppress(OSError, ValueError):
            sock.unwrap()


def _writable(sock: socket.socket, timeout: float) -> bool:
    """Whether ``sock`` can take more bytes within ``timeout`` seconds.

    ``poll()`` rather than a selector: an epoll selector is a file descriptor of its own, and a process out
    of descriptors (a flood of idle connections) then failed the Close and the keepalive's Pings with
    EMFILE. ``select()`` where there is no ``poll()`` (Windows), which needs none either.
    """
    timeout = max(timeout, 0.0)
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLOUT)
        return bool(poller.poll(timeout * 1000))
    return bool(select.select([], [sock], [], timeout)[1])


class WebSocket:
    """One WebSocket connection over a blocking socket, client or server side.

    Built by :func:`wscodec.sync.client.connect` and :func:`wscodec.sync.server.serve`. ``recv(timeout)``,
    iteration, ``send()``, ``ping()``, ``close()``; the same errors as :mod:`wscodec.asyncio`
    (:class:`~wscodec.errors.ConnectionClosedOK`/:class:`~wscodec.errors.ConnectionClosedError`).
    Thread-safe: several threads may send; one at a time should receive.
    """

    def __init__(
        self,
        sock: socket.socket,
        connection: Connection,
        *,
        url: str = "",
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 10.0,
        max_queue: int | None = 16,
        logger: LoggerLike = None,
        events: Sequence[Any] = (),
    ) -> None:
        if max_queue is not None and max_queue < 1:
            raise ValueError("max_queue must be >= 1 or None")
        self.socket = sock
        self._conn = connection
        self.url = url
        #: A unique identifier of the connection, for logs (as in websockets).
        self.id: uuid.UUID = uuid.uuid4()
        #: On a server, the user :func:`~wscodec.sync.basic_auth` let in (None otherwise), as in websockets.
        self.username: str | None = None
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.max_queue = max_queue
        self._peer = peer_of(sock)
        #: Logs about this connection: a :class:`~wscodec.asyncio.websocket.ConnectionLogger` over the
        #: ``logger`` argument (default ``wscodec.server`` or ``wscodec.client``), the same lines as the
        #: asyncio API's. INFO: opened and closed, protocol violations, keepalive timeouts; never payloads.
        self.logger = ConnectionLogger(base_logger(logger, connection.role), self)
        #: Round-trip time of the last ping answered, in seconds.
        self.latency = 0.0
        self._messages = _MessageQueue(max_queue)
        self._send_lock = threading.Lock()  # the Connection and the socket's write side (module docstring)
        # A fragmented send() in progress: other sends wait for its end (_send_turn), the rest goes on.
        self._send_turn = threading.Condition(self._send_lock)
        self._fragmenting: threading.Thread | None = None  # the thread sending one, fragment by fragment
        self._pings: dict[bytes, tuple[threading.Event, float, bool]] = {}  # event, sent at, ack_on_close
        self._close_exc: ConnectionClosed | None = None
        self._failure: tuple[int, str] | None = None  # we failed the connection: code and reason
        self._socket_lock = threading.Lock()  # shutdown from another thread vs close: never a reused fd
        self._socket_closed = False
        self._done = threading.Event()  # the reader thread has finished and the socket is closed
        connection.defer_errors = True  # see _fail_held_error
        sock.settimeout(None)
        self._opened_at = time.monotonic()  # for the "closed" line's duration
        log_opened(self.logger, connection, url)
        self._reader = threading.Thread(
            target=self._read_loop, args=(list(events),), daemon=True, name=f"wscodec-reader-{id(self):x}"
        )
        self._reader.start()
        self._keepalive: threading.Thread | None = None
        if ping_interval is not None:
            self._keepalive = threading.Thread(
                target=self._keepalive_loop, daemon=True, name=f"wscodec-keepalive-{id(self):x}"
            )
            self._keepalive.start()

    # ------------------------------------------------------------------ attributes

    @property
    def connection(self) -> Connection:
        """The sans-I/O Connection underneath."""
        return self._conn

    @property
    def subprotocol(self) -> str | None:
        return self._conn.subprotocol

    @property
    def request(self) -> Request | None:
        return self._conn.request

    @property
    def response(self) -> Response | None:
        return self._conn.response

    @property
    def state(self) -> int:
        return int(self._conn.state)

    @property
    def close_code(self) -> int | None:
        exc = self._close_exc
        return exc.code if exc is not None else None

    @property
    def close_reason(self) -> str | None:
        exc = self._close_exc
        return exc.reason if exc is not None else None

    @property
    def remote_address(self) -> Any:
        try:
            return self.socket.getpeername()
        except OSError:
            return None

    @property
    def local_address(self) -> Any:
        try:
            return self.socket.getsockname()
        except OSError:
            return None

    def __repr__(self) -> str:
        return f"<wscodec.sync.WebSocket {self._conn.role} {self.url} {self._conn.state.name}>"

    # ------------------------------------------------------------------ the reader thread

    def _write(self, data: bytes, deadline: float | None = None) -> bool:
        """Write ``data`` (the send lock held); False if the socket failed, which ends the connection.

        With a ``deadline`` (a Close or Ping from ``close()`` or the keepalive) nothing is written unless
        the socket can take it before then, and False is returned: their waits are bounded.
        """
        if not data:
            return True
        if deadline is not None and not _writable(self.socket, deadline - time.monotonic()):
            return False
        try:
            self.socket.sendall(data)
        except OSError:
            self._abort()  # part of a frame may be out: nothing else can follow; the reader sees the end
            return False
        return True

    def _abort(self) -> None:
        """Shut the socket down from any thread, without the send lock: a ``sendall`` or ``recv`` blocked
        on it fails at once, so every thread of the connection ends."""
        with self._socket_lock:
            if not self._socket_closed:
                with contextlib.suppress(OSError):
                    self.socket.shutdown(socket.SHUT_RDWR)

    def _read_loop(self, events: list[Any]) -> None:
        conn = self._conn
        try:
            if events:  # what arrived with the handshake: its Pong or Close reply is queued
                with self._send_lock:
                    self._write(conn.data_to_send())
                self._process(events)
                self._fail_held_error()
            data = b""
            read_size = INFLATING_READ if conn.extensions else _READ_SIZE  # see INFLATING_READ
            while True:
                if data:
                    with self._send_lock:
                        events = conn.receive_data(data)
                        self._write(conn.data_to_send())
                    self._process(events)
                    self._fail_held_error()
                if conn.state is CLOSED:
                    break
                try:
                    data = self.socket.recv(read_size)
                except OSError:
                    data = b""
                if not data:
                    with self._send_lock:
                        events = conn.receive_data(b"")
                    self._process(events)
                    break
            self._finish_tcp()
        finally:
            if self._close_exc is None:
                self._close_exc = self._conn.closed_error(1006, "", was_clean=False)
            close = self._close_exc
            log_closed(self.logger, conn, self.url, close.code, close.reason, self._opened_at)
            self._messages.end()
            for event, _sent, ack_on_close in list(self._pings.values()):
                if ack_on_close:
                    event.set()
            try:
                with self._socket_lock:
                    self._socket_closed = True
                    self.socket.close()
            finally:
                self._done.set()
                with self._send_turn:  # a send() waiting behind a fragmented one raises now
                    self._send_turn.notify_all()

    def _fail_held_error(self) -> None:
        """The peer broke the protocol behind messages the application may still answer (the Connection
        holds the error, ``defer_errors``): read nothing more until the application asks for a message with
        none left, starts closing, or ``close_timeout`` passes; then fail the connection, its Close going
        out behind the replies to those messages, as the asyncio layer does."""
        conn = self._conn
        if conn.pending_error is None:
            return
        self._messages.wait_until_asked(self.close_timeout)
        with self._send_lock:
            events = conn.fail_pending()
            self._write(conn.data_to_send())
        self._process(events)

    def _finish_tcp(self) -> None:
        """RFC 6455 section 7.1.1: the server closes TCP first; a client waits for that, a bounded time.

        One deadline for the whole wait, each ``recv`` given only what is left of it: a peer that trickles
        bytes after the closing handshake cannot stretch the wait past ``close_timeout``."""
        deadline = time.monotonic() + self.close_timeout
        try:
            if not self._conn.is_client:
                close_notify(self.socket, deadline - time.monotonic())
                self.socket.shutdown(socket.SHUT_WR)
            while (left := deadline - time.monotonic()) > 0:
                self.socket.settimeout(left)
                if not self.socket.recv(_READ_SIZE):
                    break
        except OSError:  # socket.timeout included: the time is up
            pass

    def _process(self, events: list[Any]) -> None:
        for event in events:
            kind = type(event)
            if kind is TextMessage or kind is BinaryMessage:
                self._messages.put(event.data)
            elif kind is Pong:
                self._received_pong(event.payload)
            elif kind is Ping:
                pass  # the Connection queued the Pong already
            elif kind is ProtocolViolation:
                self.logger.info("failed: %s (close code %d)", event.reason, event.code)
                # Report the code our Close carried (1002, 1007, 1009...), as the asyncio layer does.
                if self._failure is None:
                    self._failure = (event.code, event.reason)
            elif kind is Closed:
                code, reason = event.code, event.reason
                if self._failure is not None:
                    code, reason = self._failure
                self._close_exc = self._conn.closed_error(code, reason, was_clean=event.was_clean)

    # ------------------------------------------------------------------ receiving

    def _closed_error(self) -> ConnectionClosed:
        exc = self._close_exc
        if exc is not None:
            return exc._renewed()
        failure = self._failure
        if failure is not None:  # we failed it; the reader thread has not finished yet
            return self._conn.closed_error(failure[0], failure[1], was_clean=False)
        closing = self._conn.closing_error()
        if closing is not None:  # we are closing: the peer has not answered yet
            return closing
        return self._conn.closed_error(1006, "", was_clean=False)

    def recv(self, timeout: float | None = None, decode: bool | None = None) -> str | bytes:
        """The next message (str for text, bytes for binary), waiting at most ``timeout`` seconds (then
        :class:`TimeoutError`). Raises :class:`~wscodec.errors.ConnectionClosed` once the connection is
        closed and every message received before has been returned. ``decode`` is websockets': True
        returns a binary message decoded as UTF-8, False a text message as its UTF-8 bytes."""
        item = self._messages.get(timeout)
        if item is _END:
            raise self._closed_error()
        if decode is not None:
            return decoded(item, decode)
        return item  # type: ignore[no-any-return]

    def recv_streaming(self, decode: bool | None = None) -> Iterator[str | bytes]:
        """The next message as an iterator of its pieces, as websockets' ``recv_streaming()``. The reader
        thread reassembles every message (within ``max_size``) before queuing it, so here the message comes
        in one piece; for messages streamed in bounded memory, use the asyncio API's ``recv_streaming()``."""
        yield self.recv(decode=decode)

    def __iter__(self) -> Iterator[str | bytes]:
        """``for message in ws``: ends after a normal close, raises after an abnormal one."""
        from ..errors import ConnectionClosedOK

        while True:
            try:
                yield self.recv()
            except ConnectionClosedOK:
                return

    # ------------------------------------------------------------------ sending

    def send(
        self, message: str | bytes | bytearray | memoryview | Iterable[str | bytes], *, text: bool | None = None
    ) -> None:
        """Send a text (str) or binary (bytes-like) message; an iterable of str or bytes is sent as one
        fragmented message (compressed where permessage-deflate was negotiated), other ``send()`` calls
        waiting for its end while Pings and the Close may go between its fragments. ``text=True`` sends bytes
        that are already UTF-8 as a Text frame (a ValueError if they are not UTF-8), ``text=False`` a str
        as a Binary frame, as websockets' ``send(text=...)``.

        Blocks while the peer does not read (backpressure). Raises
        :class:`~wscodec.errors.ConnectionClosed` if the connection is closed or ends meanwhile: a
        ``send()`` blocked on a peer that stopped reading ends with 1011 when the keepalive fails the
        connection (``ping_timeout``), with 1006 when ``close()`` gives up after ``close_timeout``."""
        conn = self._conn
        if isinstance(message, Mapping):  # iterating it would send its keys
            raise TypeError("send() takes str, bytes-like or an iterable of them, not a mapping")
        if not isinstance(message, (str, bytes, bytearray, memoryview)):
            self._send_fragments(iter(message), text)
            return
        with self._send_turn:
            self._wait_for_turn()
            if text is not None:
                conn.send_message(message, text=text)
            elif isinstance(message, str):
                conn.send_text(message)
            else:
                conn.send_binary(message)
            if not self._write(conn.data_to_send()):
                raise self._closed_error()

    def _wait_for_turn(self) -> None:
        """With the send lock (``_send_turn``) held: wait until no fragmented message is part-way out, then
        raise if the connection is not open (the reader thread's end wakes this wait too)."""
        if self._fragmenting is threading.current_thread():  # (the message's own iterator: it never ends)
            raise ConcurrencyError("send() from the iterator of a fragmented send()")
        self._send_turn.wait_for(lambda: self._fragmenting is None or self._done.is_set())
        if self._conn.state is not OPEN:
            raise self._closed_error()

    def _send_fragments(self, iterator: Iterator[str | bytes], text: bool | None) -> None:
        """One message from the fragments ``iterator`` yields. The send lock is held for each fragment, not
        across the iterator: a slow one holds back neither the reader thread (which needs the lock to
        answer a Ping), the keepalive nor ``close()``, whose control frames may go between fragments (RFC
        6455 section 5.4). Other ``send()`` calls wait for the message's end: their frames may not."""
        conn = self._conn
        turn = started = False
        try:
            with self._send_turn:
                self._wait_for_turn()
                turn = True  # (first: _fragmenting is None until the next line, so the finally is right either way)
                self._fragmenting = threading.current_thread()
            current: Any = next(iterator, _END)  # (an element None is send_fragment's TypeError, not the end)
            while current is not _END:
                following = next(iterator, _END)  # (without the lock: see above)
                with self._send_lock:
                    if conn.state is not OPEN:
                        raise self._closed_error()
                    conn.send_fragment(current, fin=following is _END, text=text)
                    started = True
                    if not self._write(conn.data_to_send()):
                        raise self._closed_error()
                current = following
        except BaseException:  # (KeyboardInterrupt from the iterator too: never half a message left)
            if started:
                with self._send_lock:
                    if conn.state is OPEN:
                        # Part of the message is out and nothing else may follow it: fail the connection
                        # (1011), as the asyncio API does, rather than leave every later send refused.
                        self._fail_locked(1011, "error in fragmented message", time.monotonic() + self.close_timeout)
            raise
        finally:
            if turn:
                with self._send_turn:
                    self._fragmenting = None
                    self._send_turn.notify_all()

    def ping(
        self, data: str | bytes | bytearray | memoryview | None = None, *, ack_on_close: bool = True
    ) -> threading.Event:
        """Send a Ping; the returned :class:`threading.Event` is set when its Pong arrives, and also when the
        connection ends unless ``ack_on_close=False`` (websockets' default is False: here a wait on the
        event cannot outlive the connection unless asked; check ``state`` to tell a Pong from the end).
        Raises :class:`~wscodec.errors.ConnectionClosed` if closed."""
        payload = os.urandom(4) if data is None else control_payload(data)
        event = self._send_ping(payload, None, ack_on_close)
        assert event is not None
        return event

    def _send_ping(self, payload: bytes, deadline: float | None, ack_on_close: bool = True) -> threading.Event | None:
        """:meth:`ping`; with a ``deadline`` (the keepalive), None if the Ping could not go out by then."""
        if not self._send_lock.acquire(timeout=-1 if deadline is None else max(deadline - time.monotonic(), 0)):
            return None
        try:
            if self._conn.state is not OPEN:
                raise self._closed_error()
            if payload in self._pings:
                raise ConcurrencyError("a ping with this payload is already waiting for its pong")
            self._conn.send_ping(payload)  # (an invalid payload raises here, before anything is kept)
            event = threading.Event()
            self._pings[payload] = (event, time.monotonic(), ack_on_close)
            if not self._write(self._conn.data_to_send(), deadline):
                if deadline is None:
                    raise self._closed_error()
                return None
            return event
        finally:
            self._send_lock.release()

    def pong(self, data: str | bytes | bytearray | memoryview = b"") -> None:
        """Send an unsolicited Pong."""
        payload = control_payload(data)
        with self._send_lock:
            if self._conn.state is not OPEN:
                raise self._closed_error()
            self._conn.send_pong(payload)
            if not self._write(self._conn.data_to_send()):
                raise self._closed_error()

    def _received_pong(self, payload: bytes) -> None:
        # A pong answers its ping and every earlier one (RFC 6455 section 5.5.3 allows skipping pongs).
        if payload not in self._pings:
            return
        now = time.monotonic()
        for key in list(self._pings):
            entry = self._pings.pop(key, None)  # (the keepalive thread may have dropped it meanwhile)
            if entry is None:
                continue
            event, sent, _ack_on_close = entry
            event.set()
            if key == payload:
                self.latency = now - sent
                break

    def _keepalive_loop(self) -> None:
        interval = self.ping_interval
        assert interval is not None
        timeout = self.ping_timeout
        previous: bytes | None = None
        while not self._done.wait(interval):
            if previous is not None and timeout is None:
                # Nobody waits for the last Ping any more (no ping_timeout): forget it, so that a peer that
                # never answers cannot grow the table; a late Pong for it matches nothing.
                self._pings.pop(previous, None)
            previous = os.urandom(4)
            # ping_timeout bounds the whole round: getting the send lock (a send() blocked on a peer that
            # stopped reading holds it), writing the Ping, and its Pong.
            deadline = None if timeout is None else time.monotonic() + timeout
            try:
                pong = self._send_ping(previous, deadline)
            except (ConnectionClosed, RuntimeError):
                return
            if deadline is None:
                continue
            self._messages.reader_waited()  # from now on
            answered = pong is not None and pong.wait(max(deadline - time.monotonic(), 0))
            while not answered and pong is not None and timeout is not None and self._messages.reader_waited():
                # The reader thread waited for room in a full queue (a slow application): the Pong may be
                # unread behind that, from a peer that answers. Wait again while that lasts. A peer that
                # reads nothing either blocks a send() that holds the send lock: no Ping goes out then
                # (pong is None), and that fails the connection.
                answered = pong.wait(timeout)
            if not answered and not self._done.is_set():
                self.logger.info("no pong within %s s, failing the connection", timeout)
                # Not even the Ping went out: the socket will not take a Close either, do not wait for it.
                self._fail(1011, "keepalive ping timeout", 0 if pong is None else self.close_timeout)
                return

    def _fail(self, code: int, reason: str, timeout: float) -> None:
        """Fail the connection from our side: a Close with ``code`` if it can go out within ``timeout``,
        then the socket is shut down, whoever holds the send lock."""
        deadline = time.monotonic() + timeout  # one bound for the lock and the Close both
        if self._send_lock.acquire(timeout=timeout):
            try:
                if self._conn.state is CLOSED:
                    return  # it ended meanwhile: the reader thread reports how
                self._fail_locked(code, reason, deadline)
            finally:
                self._send_lock.release()
        else:
            self._failure = (code, reason)  # before the shutdown: the send() it ends reports this code
            self._close_exc = self._conn.closed_error(code, reason, was_clean=False)
            self._abort()

    def _fail_locked(self, code: int, reason: str, deadline: float) -> None:
        """:meth:`_fail` with the send lock held: the Close goes out if it can by ``deadline``."""
        self._failure = (code, reason)
        self._conn.fail(code, reason)
        self._write(self._conn.data_to_send(), deadline)
        self._close_exc = self._conn.closed_error(code, reason, was_clean=False)
        self._abort()

    # ------------------------------------------------------------------ closing

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Run the closing handshake (at most ``close_timeout`` seconds), then close the socket.

        When the handshake cannot finish in time (the peer does not answer, or stopped reading so that
        not even our Close goes out while a ``send()`` is blocked), the socket is shut down: every thread
        of the connection ends, and the blocked ``send()`` raises
        :class:`~wscodec.errors.ConnectionClosed` (1006). Messages received before stay for
        :meth:`recv`, up to ``max_queue`` of them. Reading goes on until the peer's Close: once a message
        finds ``max_queue`` unread after ``close()`` began (one the reader thread had read from the socket
        already, waiting for room, included), it and every message after it are dropped; the ones before
        it stay, so what :meth:`recv` returns has no holes. (:mod:`wscodec.asyncio` keeps every message
        of the read in hand as well.)"""
        deadline = time.monotonic() + self.close_timeout
        build_close_payload(code, reason)  # a code or reason not allowed on the wire: ValueError, before anything
        self._messages.discard()
        sent = False
        if self._send_lock.acquire(timeout=self.close_timeout):
            try:
                if self._conn.state is OPEN and self._conn.sending_fragmented:
                    # Part of a message is out (a send() of an iterable, in another thread or in this one's
                    # iterator), not its last fragment: a Close would cut it short unnoticed. Fail instead,
                    # as websockets does.
                    self._fail_locked(1011, "close during fragmented message", deadline)
                    sent = True
                elif self._conn.state is OPEN:
                    self._conn.close(code, reason)
                    sent = self._write(self._conn.data_to_send(), deadline)
                else:
                    sent = True  # closing or closed already: the reader thread finishes it
            finally:
                self._send_lock.release()
        if threading.current_thread() is self._reader:
            return
        if not sent or not self._done.wait(max(deadline - time.monotonic(), 0)):
            self._abort()
            self._done.wait(self.close_timeout)  # the reader's recv fails at once: a formality

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the connection is closed; False if ``timeout`` ran out first."""
        return self._done.wait(timeout)

    def __enter__(self) -> WebSocket:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close: with 1000, or 1011 when the block ended on an exception, as websockets does."""
        if exc_type is None:
            self.close()
        else:
            self.close(1011)
