"""A drop-in WebSocket protocol for uvicorn, on top of the sans-I/O :class:`~wscodec.connection.Connection`.

Run any ASGI application (FastAPI, Starlette, ...) with::

    uvicorn app:app --ws wscodec.asgi:UvicornWebSocketProtocol

uvicorn's HTTP protocol hands the upgraded connection over by calling ``connection_made(transport)`` then
``data_received(request_bytes)``; from there this class speaks the ASGI WebSocket spec (2.4, with the
``websocket.http.response`` extension) and honours uvicorn's ``ws_*`` settings. It only moves bytes and
wakes waiters: every RFC 6455 rule lives in :class:`~wscodec.connection.Connection`.

Where it differs from uvicorn's own implementations, on purpose:

* an application that raises after ``websocket.accept`` closes the connection with 1011 (uvicorn drops
  the TCP connection, the client sees 1006); one that returns without ``websocket.close`` closes with 1000;
* a client that vanishes gives the application ``websocket.disconnect`` with 1006, not 1005;
* on shutdown the 1012 Close handshake is completed (bounded by ``shutdown_timeout``) before the TCP
  connection is closed, instead of closing the socket right behind the Close frame;
* ``receive()`` after the disconnect returns the disconnect again instead of blocking forever;
* reading pauses only once ``ws_max_queue`` messages wait for the application (not after every message),
  or once the messages waiting hold ``ws_max_size`` bytes (at least 1 MiB): a count alone let a client
  park ``ws_max_queue`` x ``ws_max_size`` (512 MiB with uvicorn's defaults) of decompressed data; with
  permessage-deflate, a read is handed to the Connection 16 KiB at a time (``INFLATING_READ``), so that
  reading pauses before a read of many small compressed frames has all been inflated;
* the keepalive does not fail a client whose Pong we could not read because reading is paused for the
  application: the Pong's deadline waits while reading is paused;
* an application that returns while its last messages are still being written lets them go out (as far
  as the client reads) before the Close and its ``close_timeout`` start;
* a protocol violation behind valid messages does not lose them: the application gets them and its
  replies go out before the Close (1002, 1007...), sent when it asks for the next message or after
  ``close_timeout`` (the Connection's ``defer_errors``); uvicorn's protocols fail at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote

from uvicorn.protocols.utils import (
    ClientDisconnected,
    get_client_addr,
    get_local_addr,
    get_path_with_query_string,
    get_remote_addr,
    is_ssl,
)

from ._write import half_close, write_buffers
from .compression import INFLATING_READ
from .connection import CLOSED, CONNECTING, FAIL_LINGER, OPEN, Connection
from .errors import ConnectionClosed
from .events import (
    BinaryMessage,
    Closed,
    CloseReceived,
    Event,
    Ping,
    Pong,
    ProtocolViolation,
    Request,
    TextMessage,
)
from .extensions import ServerPerMessageDeflate

if TYPE_CHECKING:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

__all__ = ["UvicornWebSocketProtocol"]

Message = dict[str, Any]

# Bytes a client may pipeline behind its upgrade request while the application decides; beyond this
# reading pauses until the handshake is over.
_MAX_EARLY_DATA = 1 << 16

# Outgoing bytes held back to coalesce writes (see send()) before they are written at once.
_FLUSH_AT = 1 << 16

# Reading pauses once the messages waiting for the application hold max(ws_max_size, this) bytes.
_MIN_QUEUE_BYTES = 1 << 20

# The upgrade request uvicorn hands over was parsed and bounded by uvicorn already (h11: 16 KiB by
# default); it is parsed again within these bounds, or this bound h11 is configured with if larger.
_MAX_HEAD_SIZE = 1 << 16
_MAX_HEAD_FIELDS = 1000

_logger = logging.getLogger("uvicorn.error")


def _held(data: str | bytes) -> int:
    """The memory a waiting message holds, for the bound above. A str takes 1, 2 or 4 bytes per character
    (the widest it holds), which its len() does not count: text of 4-byte characters held four times the
    bound. sys.getsizeof counts them (and the object's header, a few dozen bytes)."""
    return sys.getsizeof(data) if type(data) is str else len(data)


def _sent_close(conn: Connection, code: int, reason: str) -> tuple[int, str]:
    """The code and reason of the Close ``conn`` sent: those asked for, unless a protocol error of the
    client's, held back behind messages the application had not read, went out instead."""
    sent = conn.close_sent
    if sent is None or sent[0] is None:
        return code, reason
    return sent[0], sent[1]


class UvicornWebSocketProtocol(asyncio.Protocol):
    """uvicorn's ``--ws`` protocol class: one instance per upgraded connection, driving one ``Connection``."""

    # Slots for everything the protocol sets, as in wscodec.asyncio's WebSocket: past 29 keys CPython
    # unshares an instance dict and every ``self.x`` on the per-message path is a slower lookup.
    # ``__dict__`` stays, for the class-level defaults below set per instance, and for subclasses.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_busy",
        "_close_timer",
        "_drain_waiters",
        "_error_timer",
        "_final",
        "_final_returned",
        "_flood_paused",
        "_flush_scheduled",
        "_lingering",
        "_ping_payload",
        "_ping_sent_at",
        "_ping_timer",
        "_pong_suspended",
        "_pong_timer",
        "_queue",
        "_queued_bytes",
        "_reading",
        "_response",
        "_response_body",
        "_resume_at",
        "_server_answered",
        "_unfed",
        "_unflushed",
        "_waiters",
        "_writable",
        "app",
        "app_state",
        "asgi_version",
        "client",
        "close_sent",
        "config",
        "conn",
        "connections",
        "default_headers",
        "disconnected",
        "handshake_complete",
        "last_ping_rtt",
        "logger",
        "loop",
        "max_queue",
        "max_queue_bytes",
        "ping_interval",
        "ping_timeout",
        "read_paused",
        "root_path",
        "scheme",
        "scope",
        "server",
        "tasks",
        "transport",
    )

    #: Seconds to wait for the peer's Close after ours before dropping the connection.
    close_timeout: float = 10.0
    #: The same bound while the server shuts down.
    shutdown_timeout: float = 5.0

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app: Any = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.logger = _logger
        self.root_path: str = config.root_path
        self.asgi_version: str = config.asgi_version
        self.app_state = app_state

        # Shared server state
        self.connections: set[Any] = server_state.connections
        self.tasks: set[asyncio.Task[None]] = server_state.tasks
        self.default_headers: list[tuple[bytes, bytes]] = server_state.default_headers

        # Connection state
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "ws"
        self.scope: dict[str, Any] = {}
        self.conn = Connection(
            "server",
            extensions=[ServerPerMessageDeflate()] if config.ws_per_message_deflate else (),
            max_message_size=config.ws_max_size,
            max_header_size=max(_MAX_HEAD_SIZE, int(getattr(config, "h11_max_incomplete_event_size", 0) or 0)),
            max_headers=_MAX_HEAD_FIELDS,
            defer_errors=True,
        )

        # ASGI state
        self.handshake_complete = False  # accepted or answered with an HTTP response
        self.close_sent = False  # the application sent websocket.close (or its HTTP response)
        self.disconnected = False  # the transport is gone
        # We answered the upgrade request ourselves (500, at shutdown or after the app failed): for the app,
        # whose later sends raise ClientDisconnected as uvicorn's own protocols do, the client is gone.
        self._server_answered = False
        self._response: tuple[int, list[tuple[str, str]]] | None = None  # websocket.http.response.start
        self._response_body: list[bytes] = []
        self._unfed = bytearray()  # read and not yet handed to the Connection (see data_received)

        # Messages for the application and the flow control around them
        self._queue: deque[Message] = deque()
        self._final: Message | None = None  # the websocket.disconnect, once there is one
        self._final_returned = False  # receive() has returned it once
        self._waiters: list[asyncio.Future[None]] = []
        self.max_queue = max(1, int(config.ws_max_queue or 1))
        self._resume_at = self.max_queue // 2
        #: Bytes of messages waiting for the application past which reading pauses (resumes below half).
        self.max_queue_bytes = max(int(config.ws_max_size or 0), _MIN_QUEUE_BYTES)
        self._queued_bytes = 0
        self.read_paused = False  # ws_max_queue messages (or max_queue_bytes) wait for the application
        self._flood_paused = False  # the client pings faster than the transport drains (Connection.flooded)
        self._reading = True  # what we last told the transport
        self._lingering = False  # our side is shut down; the client's input is dropped until its EOF
        self._writable = True
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._close_timer: asyncio.TimerHandle | None = None
        self._busy = False  # the application holds a message and has not asked for the next one yet
        self._error_timer: asyncio.TimerHandle | None = None  # bounds how long a pending error waits
        self._flush_scheduled = False
        self._unflushed = 0

        # Keepalive
        self.ping_interval: float | None = config.ws_ping_interval
        self.ping_timeout: float | None = config.ws_ping_timeout
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_timer: asyncio.TimerHandle | None = None
        self._ping_payload: bytes | None = None
        self._ping_sent_at = 0.0
        self._pong_suspended = False  # a Pong deadline waits for reading to resume
        self.last_ping_rtt = 0.0

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connections.add(self)
        # Duck-typed: uvloop's transports have every method of asyncio.Transport but do not subclass it.
        self.transport = transport = cast(asyncio.Transport, transport)
        self.server = get_local_addr(transport)
        self.client = get_remote_addr(transport)
        self.scheme = "wss" if is_ssl(transport) else "ws"

    def data_received(self, data: bytes) -> None:
        if self._lingering:  # dropped: see _close_transport
            return
        if self._unfed or self.conn.state is CONNECTING or (len(data) > INFLATING_READ and self.conn.extensions):
            # Compressed, or still in the handshake: handed over INFLATING_READ bytes at a time, so that
            # reading can pause between them (see INFLATING_READ and _feed_unfed). Frames pipelined behind
            # the request wait here while the application decides, not in the Connection, which would
            # decode them all at once on accept; beyond _MAX_EARLY_DATA of them, reading pauses.
            self._unfed += data
            self._feed_unfed()
            if len(self._unfed) > _MAX_EARLY_DATA and self._deciding():
                self._pause_reading()
        else:
            self._feed(data)

    def _deciding(self) -> bool:
        """The request is in and the application has neither accepted nor refused it yet."""
        return self.conn.state is CONNECTING and self.conn.request is not None

    def _feed_unfed(self) -> None:
        """Hand what was read to the Connection a slice at a time until reading pauses; the rest waits here
        (at most one transport read, or _MAX_EARLY_DATA and one read before the accept: the transport is
        paused too) until the application reads on."""
        unfed = self._unfed
        while unfed and not self.read_paused and not self.disconnected and self.conn.state is not CLOSED:
            if self._deciding():
                return
            chunk = bytes(unfed[:INFLATING_READ])
            del unfed[:INFLATING_READ]
            self._feed(chunk)
        if self.disconnected or self.conn.state is CLOSED:
            unfed.clear()

    def _feed(self, data: bytes) -> None:
        conn = self.conn
        events = conn.receive_data(data)
        if events or conn.pending_error is not None:
            self._handle_events(events)
        if not self._writable and conn.flooded and not self._flood_paused:
            # Pings keep coming while our answers cannot leave: read again once the transport drains.
            self._flood_paused = True
            self._sync_reading()
        self._flush()
        if conn.state is CLOSED:
            self._close_transport()

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost() reports the 1006

    def connection_lost(self, exc: Exception | None) -> None:
        self.disconnected = True
        self._unfed.clear()
        self.stop_keepalive()
        self._cancel_close_timer()
        if self._error_timer is not None:
            self._error_timer.cancel()
            self._error_timer = None
        self.connections.discard(self)
        conn = self.conn
        if conn.state is not CONNECTING and conn.state is not CLOSED:
            conn.receive_data(b"")  # the abnormal closure: CLOSED, code 1006
        self._disconnect(1006, "")
        self._wake(self._drain_waiters)  # asyncio never resumes writing on a lost transport

    def pause_writing(self) -> None:
        self._writable = False
        self.conn.hold_pongs()
        if self._pong_suspended:  # the client stopped reading too: the Pong's deadline runs again
            self._pong_suspended = False
            if self._ping_payload is not None and self.ping_timeout is not None and self._pong_timer is None:
                self._pong_timer = self.loop.call_later(self.ping_timeout, self._keepalive_timeout)

    def resume_writing(self) -> None:
        self._writable = True
        if self.read_paused and self._pong_timer is not None:
            # The client reads again, while we do not: its Pong may be in what we no longer read, so the
            # deadline waits until reading resumes, as when reading paused (_pause_reading).
            self._pong_timer.cancel()
            self._pong_timer = None
            self._pong_suspended = True
        self.conn.release_pongs()
        self._flush()
        if self._flood_paused:
            self._flood_paused = False
            self._sync_reading()
        self._wake(self._drain_waiters)

    def shutdown(self) -> None:
        """Called by uvicorn on shutdown: close with 1012 and wait (bounded) for the peer's Close."""
        self.stop_keepalive()
        if self.disconnected:
            return
        conn = self.conn
        if conn.state is CONNECTING:
            if conn.request is not None:
                self._send_500_response()
            self._close_transport()
        elif conn.state is OPEN:
            conn.close(1012)
            self._disconnect(*_sent_close(conn, 1012, ""))
            self._flush()
            self._resume_reading()
            self._arm_close_timer(self.shutdown_timeout)
        elif conn.state is CLOSED:
            self._close_transport()
        else:  # CLOSING: our Close is out, keep waiting for the answer but no longer than the shutdown bound
            timer = self._close_timer
            if timer is None or timer.when() - self.loop.time() > self.shutdown_timeout:
                self._arm_close_timer(self.shutdown_timeout)

    # ------------------------------------------------------------------ incoming events

    def _handle_events(self, events: list[Event]) -> None:
        queue = self._queue
        before = len(queue)
        for event in events:
            cls = type(event)
            if cls is TextMessage:
                if self._final is None:  # after the disconnect, messages are dropped
                    queue.append({"type": "websocket.receive", "text": event.data})  # type: ignore[union-attr]
                    self._queued_bytes += _held(event.data)  # type: ignore[union-attr]
            elif cls is BinaryMessage:
                if self._final is None:
                    queue.append({"type": "websocket.receive", "bytes": event.data})  # type: ignore[union-attr]
                    self._queued_bytes += _held(event.data)  # type: ignore[union-attr]
            elif cls is Request:
                self._start_app(event)  # type: ignore[arg-type]
            elif cls is CloseReceived or cls is ProtocolViolation:
                # The peer's Close (code and reason), or the code we fail the connection with.
                self._disconnect(event.code, event.reason)  # type: ignore[union-attr]
                if cls is ProtocolViolation:
                    self.logger.info("%s - WebSocket protocol error: %s", self._client_str(), event.reason)  # type: ignore[union-attr]
            elif cls is Pong:
                self._handle_pong(event.payload)  # type: ignore[union-attr]
            elif cls is Ping or cls is Closed:
                pass  # the pong is already queued; CLOSED is acted on by the caller
        if len(queue) != before:
            if self._waiters:
                self._wake(self._waiters)
            if len(queue) >= self.max_queue or self._queued_bytes >= self.max_queue_bytes:
                self._pause_reading()
        if self.conn.pending_error is not None:
            self._on_pending_error()

    def _on_pending_error(self) -> None:
        """The peer broke the protocol behind messages the application may still answer (the Connection
        holds the error): stop reading and fail once the application asks for a message with none left,
        or after close_timeout; at once if nothing is waiting for it or more than ws_max_queue messages are."""
        queue = self._queue
        if self.conn.state is not OPEN or self.disconnected or len(queue) > self.max_queue:
            self._fail_pending()
            return
        if not queue and not self._busy:
            self._fail_pending()
            return
        self._pause_reading()
        if self._error_timer is None:
            self._error_timer = self.loop.call_later(self.close_timeout, self._fail_pending)

    def _fail_pending(self) -> None:
        """Fail the connection with the error the Connection holds: its Close goes behind the replies."""
        if self._error_timer is not None:
            self._error_timer.cancel()
            self._error_timer = None
        events = self.conn.fail_pending()
        if events:
            self._handle_events(events)
            self._flush()
            if self.conn.state is CLOSED:
                self._close_transport()

    def _start_app(self, request: Request) -> None:
        raw_path, _, query_string = request.path.partition("?")
        headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in request.headers]
        subprotocols: list[str] = []
        for name, value in request.headers:
            if name.lower() == "sec-websocket-protocol":
                subprotocols.extend(token.strip() for token in value.split(",") if token.strip())
        root_path = self.root_path
        self.scope = {
            "type": "websocket",
            "asgi": {"version": self.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": self.scheme,
            "server": self.server,
            "client": self.client,
            "root_path": root_path,
            "path": root_path + unquote(raw_path),
            "raw_path": root_path.encode("latin-1") + raw_path.encode("latin-1"),
            "query_string": query_string.encode("latin-1"),
            "headers": headers,
            "subprotocols": subprotocols,
            "state": self.app_state.copy(),
            "extensions": {"websocket.http.response": {}},
        }
        self._queue.append({"type": "websocket.connect"})
        task = self.loop.create_task(self.run_asgi())
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    # ------------------------------------------------------------------ the application

    async def run_asgi(self) -> None:
        failed = False
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            self.logger.exception("Exception in ASGI application\n")
            failed = True
        else:
            if not self.handshake_complete:
                self.logger.error("ASGI callable returned without completing handshake.")
            elif result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
        stalled = False
        if not self._writable and self.conn.state is OPEN:
            stalled = await self._drain_while_progressing()
        self._app_done(failed)
        if stalled and not self.disconnected:
            self._cancel_close_timer()
            self._abort()

    async def _drain_while_progressing(self) -> bool:
        """What the application sent last is still being written when it returns or sends websocket.close:
        let it go out before our Close (and the close_timeout that aborts the connection) for as long as the
        client keeps reading. True if the client stopped: the write buffer did not shrink for a whole
        close_timeout."""
        transport = self.transport
        while not self._writable and not self.disconnected:
            before = transport.get_write_buffer_size()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wait_writable(), self.close_timeout)
            if not self._writable and not self.disconnected and transport.get_write_buffer_size() >= before:
                return True
        return False

    def _app_done(self, failed: bool) -> None:
        if self.disconnected:
            return
        conn = self.conn
        if conn.state is CONNECTING:
            self._send_500_response()
            self._close_transport()
        elif conn.state is OPEN:
            # Finish the closing handshake on the application's behalf: 1011 after an error, else 1000.
            code = 1011 if failed else 1000
            conn.close(code)
            # Nobody will receive again: what arrives before the client's Close is dropped, and what waits
            # goes. Queued, it filled the queue again and paused reading, and the client's Close behind it
            # went unread until close_timeout aborted the connection.
            self._disconnect(*_sent_close(conn, code, ""))
            self._queue.clear()
            self._queued_bytes = 0
            self._flush()
            self._resume_reading()
            self._arm_close_timer(self.close_timeout)
        elif conn.state is CLOSED:
            self._close_transport()
        elif self._close_timer is None:
            self._arm_close_timer(self.close_timeout)

    async def receive(self) -> Message:
        """ASGI ``receive``: the next message, then ``websocket.disconnect`` (again on every later call)."""
        queue = self._queue
        while True:
            if queue:
                message = queue.popleft()
                data = message.get("text")
                if data is None:
                    data = message.get("bytes")
                if data is not None:
                    self._queued_bytes -= _held(data)
                if self.read_paused and self._queue_low() and self.conn.pending_error is None:
                    self._resume_reading()
                self._busy = True
                return message
            self._busy = False
            if self.conn.pending_error is not None:
                # Every message before the peer's error is taken and the application asks for more:
                # fail now, its replies are already queued ahead of our Close.
                self._fail_pending()
            if self._final is not None:
                if self._final_returned:
                    # Again and again: an application looping on receive() must still let the loop run
                    # (other connections, the server's shutdown) instead of spinning inside one task.
                    await asyncio.sleep(0)
                self._final_returned = True
                return self._final
            if self._flush_scheduled:  # about to wait: what was sent goes out now, not an iteration later
                self._flush()
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                # Woken: _wake() emptied the list. Cancelled (a done future too): still listed, drop it, or
                # an app that cancels its waits (wait_for with a timeout) grows the list without bound.
                if waiter.cancelled() or not waiter.done():
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)

    async def send(self, message: Message) -> None:
        """ASGI ``send``: waits while the transport's buffer is over its high-water mark.

        ``websocket.close`` waits as long as the client reads (what was sent before it goes out first,
        whatever it takes), and no longer than ``close_timeout`` without progress: a client that stopped
        reading would keep it waiting for ever (with the keepalive off), and is aborted instead, as when
        the application returns."""
        kind = message["type"]
        stalled = False
        if not self._writable:
            if kind == "websocket.close" and self.handshake_complete and not self.close_sent:
                stalled = await self._drain_while_progressing()
            else:
                await self._wait_writable()
        if self.disconnected or self._server_answered:
            raise ClientDisconnected()
        conn = self.conn

        if self.handshake_complete and not self.close_sent:
            if kind == "websocket.send":
                data = message.get("bytes")
                try:
                    if data is not None:
                        conn.send_binary(data)
                    else:
                        data = message.get("text")
                        if data is None:  # neither: nothing to send, as in uvicorn
                            return
                        conn.send_text(data)
                except ConnectionClosed:
                    raise ClientDisconnected() from None
                # Coalesce small messages: what the application sends in one step of its task goes out in
                # one write (one syscall) at the end of the step; a large backlog goes out at once. The first
                # reply of a step (nothing unflushed, no flush due) goes at once, a loop turn sooner, with the
                # flush still armed so that what follows it in this step batches: at one message in flight
                # that is every reply, and with several messages in one read the peer starts on the first
                # answer while the application handles the rest (as the asyncio WebSocket does).
                lone = not self._unflushed and not self._flush_scheduled
                self._unflushed += len(data)
                if lone:
                    self._flush()
                    self._flush_scheduled = True
                    self.loop.call_soon(self._flush)
                elif self._unflushed >= _FLUSH_AT:
                    self._flush()
                elif not self._flush_scheduled:
                    self._flush_scheduled = True
                    self.loop.call_soon(self._flush)
            elif kind == "websocket.close":
                code = message.get("code")
                code = 1000 if code is None else code
                reason = message.get("reason") or ""
                closing = conn.state is not OPEN  # (our Close is out already: shutdown()'s, say)
                conn.close(code, reason)  # ValueError for a code or reason that may not go on the wire
                self.close_sent = True
                self._disconnect(*_sent_close(conn, code, reason))
                self._flush()
                if conn.state is CLOSED:
                    self._close_transport()
                elif stalled:  # not even our Close can go out: the client read nothing for close_timeout
                    self._cancel_close_timer()
                    self._abort()
                else:
                    self._resume_reading()
                    if not closing or self._close_timer is None:  # (the bound already running holds)
                        self._arm_close_timer(self.close_timeout)
            else:
                raise RuntimeError(f"Expected ASGI message 'websocket.send' or 'websocket.close', but got '{kind}'.")
        elif not self.handshake_complete:
            if self._response is not None:
                if kind != "websocket.http.response.body":
                    raise RuntimeError(f"Expected ASGI message 'websocket.http.response.body' but got '{kind}'.")
                self._response_body.append(bytes(message.get("body", b"")))
                if not message.get("more_body", False):
                    status, headers = self._response
                    self._deny(status, headers, b"".join(self._response_body))
            elif kind == "websocket.accept":
                self._accept(message)
            elif kind == "websocket.close":
                self._log_access("403")
                self._deny(403, [], b"")
            elif kind == "websocket.http.response.start":
                status = message["status"]
                if not 200 <= status < 600:  # a 1xx is interim, never the answer (wsproto refuses it too)
                    raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
                self._log_access(str(status))
                headers = [
                    (bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in message.get("headers", ())
                ]
                self._response = (status, headers)
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' "
                    f"or 'websocket.http.response.start' but got '{kind}'."
                )
        else:
            raise RuntimeError(f"Unexpected ASGI message '{kind}', after sending 'websocket.close'.")

    def _accept(self, message: Message) -> None:
        headers = [
            (bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
            for name, value in [*self.default_headers, *message.get("headers", ())]
        ]
        events = self.conn.accept(subprotocol=message.get("subprotocol"), extra_headers=headers)
        self._log_access("[accepted]")  # once accept() took it: a subprotocol not offered raises instead
        self.handshake_complete = True
        if events:
            self._handle_events(events)
        self._flush()
        if self.conn.state is CLOSED:
            self._close_transport()
            return
        self.start_keepalive()
        if self.read_paused and self._queue_low():
            self._resume_reading()  # (which hands over what arrived meanwhile, on the next loop turn)
        elif self._unfed:
            self.loop.call_soon(self._feed_unfed)  # what arrived while the application decided

    def _deny(self, status: int, headers: Sequence[tuple[str, str]], body: bytes) -> None:
        """Answer the upgrade request with an HTTP response; the application then sees a 1006 disconnect."""
        # The body goes out whole: its framing headers are the connection's business, not the app's.
        headers = [(n, v) for n, v in headers if n.lower() not in ("content-length", "transfer-encoding", "connection")]
        names = {name.lower() for name, _ in headers}
        extra = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in self.default_headers
            if name.decode("latin-1").lower() not in names
        ]
        if "date" not in names and all(name.lower() != "date" for name, _ in extra):
            extra.append(("Date", email.utils.formatdate(usegmt=True)))
        if body and "content-type" not in names:
            extra.append(("Content-Type", "text/plain; charset=utf-8"))
        self.handshake_complete = True
        self.close_sent = True
        self._disconnect(1006, "")
        self.conn.reject(status, [*headers, *extra], body)
        self._flush()
        self._close_transport()

    def _send_500_response(self) -> None:
        if self.conn.state is not CONNECTING or self.conn.request is None:
            return
        self.handshake_complete = True
        self.close_sent = True
        self._server_answered = True
        self._disconnect(1006, "")
        self.conn.reject(500, [("Content-Type", "text/plain; charset=utf-8")], b"Internal Server Error")
        self._flush()

    # ------------------------------------------------------------------ keepalive

    def start_keepalive(self) -> None:
        if self.ping_interval is not None and self.ping_interval > 0:
            self._schedule_ping()

    def stop_keepalive(self) -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None
        if self._pong_timer is not None:
            self._pong_timer.cancel()
            self._pong_timer = None
        self._pong_suspended = False
        self._ping_payload = None

    def _schedule_ping(self) -> None:
        assert self.ping_interval is not None
        delay = max(0.0, self.ping_interval - self.last_ping_rtt)
        self._ping_timer = self.loop.call_later(delay, self._send_keepalive_ping)

    def _send_keepalive_ping(self) -> None:
        self._ping_timer = None
        if self.conn.state is not OPEN or self.transport.is_closing():
            return
        self._ping_payload = os.urandom(4)
        self._ping_sent_at = time.perf_counter()  # uvloop's loop.time() ticks in milliseconds
        self.conn.send_ping(self._ping_payload)
        self._flush()
        if self.ping_timeout is not None:
            if self.read_paused and self._writable:  # its Pong cannot be read yet: see _pause_reading
                self._pong_suspended = True
            else:
                self._pong_timer = self.loop.call_later(self.ping_timeout, self._keepalive_timeout)
        else:
            self._schedule_ping()

    def _handle_pong(self, payload: bytes) -> None:
        if self._ping_payload is None or bytes(payload) != self._ping_payload:
            return  # unsolicited or stale
        self.last_ping_rtt = time.perf_counter() - self._ping_sent_at
        self._ping_payload = None
        if self._pong_timer is not None or self._pong_suspended:
            if self._pong_timer is not None:
                self._pong_timer.cancel()
                self._pong_timer = None
            self._pong_suspended = False
            self._schedule_ping()

    def _keepalive_timeout(self) -> None:
        self._pong_timer = None
        self._ping_payload = None
        if self.conn.state is not OPEN or self.transport.is_closing():
            return
        reason = "keepalive ping timeout"
        self.conn.fail(1011, reason)
        self._disconnect(1011, reason)
        self._flush()
        self._close_transport()

    # ------------------------------------------------------------------ plumbing

    def _disconnect(self, code: int, reason: str) -> None:
        """Give the application its (only) ``websocket.disconnect``; later calls keep the first one."""
        if self._final is None:
            self._final = {"type": "websocket.disconnect", "code": code, "reason": reason}
            self._wake(self._waiters)
            self._resume_reading()  # nothing will be queued any more; keep reading for the Close

    @staticmethod
    def _wake(waiters: list[asyncio.Future[None]]) -> None:
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        waiters.clear()

    async def _wait_writable(self) -> None:
        while not self._writable and not self.disconnected:
            waiter = self.loop.create_future()
            self._drain_waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter.cancelled() or not waiter.done():  # see receive()
                    with contextlib.suppress(ValueError):
                        self._drain_waiters.remove(waiter)

    def _flush(self) -> None:
        """Write everything the connection has queued, in order (messages, pongs, Close frames)."""
        self._flush_scheduled = False
        self._unflushed = 0
        out = self.conn.data_to_send_buffers()
        if out and not self.transport.is_closing():
            if len(out) == 1:
                self.transport.write(out[0])
            else:  # several frames, or a large payload that goes out without a copy
                write_buffers(self.transport, out)

    def _queue_low(self) -> bool:
        """Few enough messages wait for the application for reading to resume (half of either bound)."""
        return len(self._queue) <= self._resume_at and self._queued_bytes <= self.max_queue_bytes // 2

    def _pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self._sync_reading()
            if self._pong_timer is not None and self._writable:
                # A Pong may be in what we no longer read: its deadline waits until reading resumes. Not
                # when the client does not read what we send either (the application waits on it, which
                # is why the queue is full): the keepalive is what ends that.
                self._pong_timer.cancel()
                self._pong_timer = None
                self._pong_suspended = True

    def _resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            self._sync_reading()
            if self._unfed:
                self.loop.call_soon(self._feed_unfed)  # not from inside receive() or a read's handling
            if self._pong_suspended and self._ping_payload is not None and self.ping_timeout is not None:
                self._pong_suspended = False
                self._pong_timer = self.loop.call_later(self.ping_timeout, self._keepalive_timeout)

    def _sync_reading(self) -> None:
        """Pause or resume the transport's reading: paused while either reason to pause holds."""
        reading = not (self.read_paused or self._flood_paused)
        if reading is not self._reading and not self.disconnected:
            self._reading = reading
            if reading:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def _arm_close_timer(self, delay: float) -> None:
        self._cancel_close_timer()
        self._close_timer = self.loop.call_later(delay, self._abort)

    def _cancel_close_timer(self) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None

    def _abort(self) -> None:
        self._close_timer = None
        self.transport.abort()

    def _close_transport(self) -> None:
        """Close TCP; abort it if it is still open ``close_timeout`` later (or when a timer already armed
        says): ``close()`` waits until the write buffer drains, which a peer that stopped reading never lets
        happen, so without the timer such a peer would hold the socket forever.

        Without the client's Close (we failed the connection, or refused the upgrade), the client may still
        be sending, and closing with its input unread would reset the connection, which can destroy our
        Close or response before the client reads it: our side shuts down instead, and the client's input
        is read and dropped until its EOF, at most ``FAIL_LINGER``. Not for a client that does not read what
        we send (our transport is full: it would not read the Close either), nor over TLS (no half-close).
        """
        self.stop_keepalive()
        if self._lingering:
            return
        transport = self.transport
        if not transport.is_closing():
            if self.conn.close_rcvd is None and self._writable and not self.disconnected and half_close(transport):
                self._lingering = True
                self._unfed.clear()
                self.read_paused = self._flood_paused = False
                self._sync_reading()
                delay = min(FAIL_LINGER, self.close_timeout)
                timer = self._close_timer  # (shutdown()'s, say: of two bounds, the tighter holds)
                if timer is None or timer.when() > self.loop.time() + delay:
                    self._arm_close_timer(delay)
                return
            transport.close()
        if self._close_timer is None and not self.disconnected:
            self._arm_close_timer(self.close_timeout)

    def _client_str(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else ""

    def _log_access(self, outcome: str) -> None:
        self.logger.info(
            '%s - "WebSocket %s" %s',
            get_client_addr(self.scope),  # type: ignore[arg-type]
            get_path_with_query_string(self.scope),  # type: ignore[arg-type]
            outcome,
        )
