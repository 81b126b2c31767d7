"""The threaded ``WebSocket``: a blocking socket driving the same sans-I/O ``Connection`` as asyncio.

One background thread reads the socket, feeds the :class:`~wscodec.connection.Connection` and queues whole
messages (at most ``max_queue``: when the application does not keep up, the thread stops reading and TCP
pushes back on the peer). Sends happen in the caller's thread under a lock. A second, optional thread runs
the keepalive. No RFC 6455 rule lives here either: framing, close codes, UTF-8 and limits are the
Connection's job.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any

from ..connection import CLOSED, OPEN, Connection
from ..errors import ConnectionClosed
from ..events import (
    BinaryMessage,
    Closed,
    Ping,
    Pong,
    ProtocolViolation,
    Request,
    Response,
    TextMessage,
)

__all__ = ["WebSocket"]

logger = logging.getLogger(__name__)

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
        self._cond = threading.Condition(threading.Lock())

    def put(self, item: Any) -> None:
        """Add a message, waiting while ``limit`` are unread (the reader stops reading meanwhile); once
        :meth:`discard` was called, a message that finds no room is dropped instead."""
        with self._cond:
            limit = self._limit
            while limit is not None and len(self._items) >= limit:
                if self._discarding:
                    return
                self._cond.wait()
            self._items.append(item)
            self._cond.notify_all()

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
        """The oldest message, or :data:`_END` after the last one; :class:`TimeoutError` after ``timeout``."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._ended, timeout):
                raise TimeoutError(f"no message within {timeout} s")
            if not self._items:
                return _END
            item = self._items.popleft()
            self._cond.notify_all()
            return item


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
        logger: logging.Logger | logging.LoggerAdapter[Any] | str | None = None,
        events: Sequence[Any] = (),
    ) -> None:
        if max_queue is not None and max_queue < 1:
            raise ValueError("max_queue must be >= 1 or None")
        self.socket = sock
        self._conn = connection
        self.url = url
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.max_queue = max_queue
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        #: Round-trip time of the last ping answered, in seconds.
        self.latency = 0.0
        self._messages = _MessageQueue(max_queue)
        self._send_lock = threading.Lock()
        self._pings: dict[bytes, tuple[threading.Event, float]] = {}
        self._close_exc: ConnectionClosed | None = None
        self._done = threading.Event()  # the reader thread has finished and the socket is closed
        self._fail_code: int | None = None
        sock.settimeout(None)
        self._reader = threading.Thread(target=self._read_loop, args=(list(events),), daemon=True,
                                        name=f"wscodec-reader-{id(self):x}")
        self._reader.start()
        self._keepalive: threading.Thread | None = None
        if ping_interval is not None:
            self._keepalive = threading.Thread(target=self._keepalive_loop, daemon=True,
                                               name=f"wscodec-keepalive-{id(self):x}")
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

    def _write(self, data: bytes) -> None:
        if data:
            with contextlib.suppress(OSError):  # the reader sees the end of the socket and reports it
                self.socket.sendall(data)

    def _read_loop(self, events: list[Any]) -> None:
        conn = self._conn
        try:
            self._process(events)  # what arrived with the handshake
            data = b""
            while True:
                if data:
                    with self._send_lock:
                        events = conn.receive_data(data)
                        self._write(conn.data_to_send())
                    self._process(events)
                if conn.state is CLOSED:
                    break
                try:
                    data = self.socket.recv(_READ_SIZE)
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
                self._close_exc = ConnectionClosed(1006, "", was_clean=False)
            self._messages.end()
            for event, _sent in list(self._pings.values()):
                event.set()
            try:
                self.socket.close()
            finally:
                self._done.set()

    def _finish_tcp(self) -> None:
        """RFC 6455 section 7.1.1: the server closes TCP first; a client waits for that, a bounded time."""
        try:
            if self._conn.is_client:
                self.socket.settimeout(self.close_timeout)
                deadline = time.monotonic() + self.close_timeout
                while time.monotonic() < deadline and self.socket.recv(_READ_SIZE):
                    pass
            else:
                self.socket.shutdown(socket.SHUT_WR)
                self.socket.settimeout(self.close_timeout)
                deadline = time.monotonic() + self.close_timeout
                while time.monotonic() < deadline and self.socket.recv(_READ_SIZE):
                    pass
        except OSError:
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
                logger.info("%r: %s", self, event.error)
            elif kind is Closed:
                code, reason = event.code, event.reason
                if self._fail_code is not None:
                    code, reason = self._fail_code, "keepalive ping timeout"
                self._close_exc = ConnectionClosed(code, reason, was_clean=event.was_clean)

    # ------------------------------------------------------------------ receiving

    def _closed_error(self) -> ConnectionClosed:
        exc = self._close_exc
        if exc is None:
            return ConnectionClosed(1006, "", was_clean=False)
        return ConnectionClosed(exc.code, exc.reason, was_clean=exc.was_clean)

    def recv(self, timeout: float | None = None) -> str | bytes:
        """The next message (str for text, bytes for binary), waiting at most ``timeout`` seconds (then
        :class:`TimeoutError`). Raises :class:`~wscodec.errors.ConnectionClosed` once the connection is
        closed and every message received before has been returned."""
        item = self._messages.get(timeout)
        if item is _END:
            raise self._closed_error()
        return item  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[str | bytes]:
        """``for message in ws``: ends after a normal close, raises after an abnormal one."""
        from ..errors import ConnectionClosedOK

        while True:
            try:
                yield self.recv()
            except ConnectionClosedOK:
                return

    # ------------------------------------------------------------------ sending

    def send(self, message: str | bytes | bytearray | memoryview | Iterable[str | bytes]) -> None:
        """Send a text (str) or binary (bytes-like) message; an iterable of str or bytes is sent as one
        fragmented message (compressed where permessage-deflate was negotiated)."""
        conn = self._conn
        with self._send_lock:
            if isinstance(message, str):
                conn.send_text(message)
            elif isinstance(message, (bytes, bytearray, memoryview)):
                conn.send_binary(message)
            else:
                iterator = iter(message)
                try:
                    current = next(iterator)
                except StopIteration:
                    return
                for following in iterator:
                    conn.send_fragment(current, fin=False)
                    self._write(conn.data_to_send())
                    current = following
                conn.send_fragment(current, fin=True)
            self._write(conn.data_to_send())

    def ping(self, data: str | bytes | None = None) -> threading.Event:
        """Send a Ping; the returned :class:`threading.Event` is set when its Pong arrives (or the
        connection ends). Raises :class:`~wscodec.errors.ConnectionClosed` if closed."""
        payload = data.encode() if isinstance(data, str) else (data if data is not None else os.urandom(4))
        event = threading.Event()
        with self._send_lock:
            if self._conn.state is not OPEN:
                raise self._closed_error()
            if payload in self._pings:
                raise RuntimeError("a ping with this payload is already waiting for its pong")
            self._pings[payload] = (event, time.monotonic())
            self._conn.send_ping(payload)
            self._write(self._conn.data_to_send())
        return event

    def pong(self, data: str | bytes = b"") -> None:
        """Send an unsolicited Pong."""
        payload = data.encode() if isinstance(data, str) else data
        with self._send_lock:
            if self._conn.state is not OPEN:
                raise self._closed_error()
            self._conn.send_pong(payload)
            self._write(self._conn.data_to_send())

    def _received_pong(self, payload: bytes) -> None:
        # A pong answers its ping and every earlier one (RFC 6455 section 5.5.3 allows skipping pongs).
        if payload not in self._pings:
            return
        now = time.monotonic()
        for key in list(self._pings):
            entry = self._pings.pop(key, None)  # (the keepalive thread may have dropped it meanwhile)
            if entry is None:
                continue
            event, sent = entry
            event.set()
            if key == payload:
                self.latency = now - sent
                break

    def _keepalive_loop(self) -> None:
        interval = self.ping_interval
        assert interval is not None
        previous: bytes | None = None
        while not self._done.wait(interval):
            if previous is not None and self.ping_timeout is None:
                # Nobody waits for the last Ping any more (no ping_timeout): forget it, so that a peer that
                # never answers cannot grow the table; a late Pong for it matches nothing.
                self._pings.pop(previous, None)
            previous = os.urandom(4)
            try:
                pong = self.ping(previous)
            except (ConnectionClosed, RuntimeError):
                return
            if self.ping_timeout is None:
                continue
            if not pong.wait(self.ping_timeout) and not self._done.is_set():
                logger.info("%r: no pong within %s s, failing the connection", self, self.ping_timeout)
                self._fail(1011, "keepalive ping timeout")
                return

    def _fail(self, code: int, reason: str) -> None:
        with self._send_lock:
            if self._conn.state is CLOSED:
                return
            self._fail_code = code
            self._conn.fail(code, reason)
            self._write(self._conn.data_to_send())
        self._close_exc = ConnectionClosed(code, reason, was_clean=False)
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)

    # ------------------------------------------------------------------ closing

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Run the closing handshake (at most ``close_timeout`` seconds), then close the socket.

        Messages received before stay for :meth:`recv`; those that arrive after ``close()`` while
        ``max_queue`` are unread are dropped."""
        self._messages.discard()
        with self._send_lock:
            if self._conn.state is OPEN:
                self._conn.close(code, reason)
                self._write(self._conn.data_to_send())
        if threading.current_thread() is self._reader:
            return
        if not self._done.wait(self.close_timeout):
            with contextlib.suppress(OSError):
                self.socket.shutdown(socket.SHUT_RDWR)
            self._done.wait(self.close_timeout)

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the connection is closed; False if ``timeout`` ran out first."""
        return self._done.wait(timeout)

    def __enter__(self) -> WebSocket:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
