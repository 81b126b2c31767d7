"""The asyncio server: :func:`serve`, :func:`unix_serve`, :class:`Server`, and :func:`broadcast`."""

from __future__ import annotations

import asyncio
import http
import inspect
import logging
import socket
import ssl as ssl_module
import sys
import traceback
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from types import TracebackType
from typing import Any, Literal

from .. import _options as checks
from .._kernels import encode_frame
from .._logging import LoggerLike
from ..basic_auth import BasicAuth
from ..broker import Broker, Message, make_broker
from ..client_network import DEFAULT_USER_AGENT
from ..compression import Compression, extension_factories
from ..connection import OPEN, REJECT_LINGER, Connection, check_utf8
from ..errors import ConcurrencyError, ConnectionClosed, NegotiationError
from ..events import Request, Response
from ..frames import build_close_payload
from ..handshake import HandshakeRejected, HttpParser, parse_subprotocols
from ..server_hooks import (
    INTERNAL_ERROR,
    as_response,
    going_away_reason,
    hook_request,
    respond,
    response_bytes,
    takes_connection,
)
from ..transports import Opener, TransportChoice, opener, resolve_transport
from .busy_poll import BusyPoller, check_busy_poll
from .websocket import WebSocket

__all__ = ["Server", "ServerWebSocket", "basic_auth", "broadcast", "broadcast_wait", "serve", "unix_serve"]

logger = logging.getLogger(__name__)

Handler = Callable[[WebSocket], Awaitable[Any]]

#: What a handshake still under way when the server closes gets instead of its 101, as in websockets.
SHUTTING_DOWN = Response(503, "Service Unavailable", (("Content-Type", "text/plain"),), b"Server is shutting down.\n")
HttpResponse = Response | tuple[int | http.HTTPStatus, Any, bytes | str]
#: ``process_request(connection, request)`` as in websockets, or ``process_request(request)``.
ProcessRequest = Callable[..., HttpResponse | Awaitable[HttpResponse | None] | None]
ProcessResponse = Callable[[WebSocket, Request | None, Response], HttpResponse | Awaitable[HttpResponse | None] | None]
#: ``select_subprotocol(connection, offered)`` as in websockets, or ``select_subprotocol(offered)``.
SelectSubprotocol = Callable[..., str | None]


class ServerWebSocket(WebSocket):
    """The server side of a connection: runs the opening handshake, then the handler."""

    __slots__ = (
        "_accepted_at",
        "_handler_task",
        "_head_malformed",
        "_head_waiter",
        "_hook_request",
        "_open_timer",
        "_parser",
        "_server",
        "username",
    )

    def __init__(self, server: Server, connection: Connection, **options: Any) -> None:
        super().__init__(connection, **options)
        #: The user :func:`basic_auth` let in (None without it), as in websockets.
        self.username: str | None = None
        self._server = server
        self._pre = bytearray()  # bytes received before the handshake is decided (HotPath.buffer_updated)
        self._parser = HttpParser()
        self._head_malformed = False
        self._head_waiter: asyncio.Future[None] = self._loop.create_future()
        self._open_timer: asyncio.TimerHandle | None = None
        self._handler_task: asyncio.Task[None] | None = None
        self._hook_request: Request | None = None
        # Made at TCP accept, before a TLS handshake; connection_made() comes once TLS is up.
        self._accepted_at = self._loop.time()

    @property
    def request(self) -> Request | None:
        """The opening handshake request; already while ``process_request`` runs (as in websockets), before
        the connection has taken it in, and after ``process_request`` answered it instead."""
        request = self._conn.request
        return request if request is not None else self._hook_request

    @property
    def server(self) -> Server:
        """The :class:`Server` this connection belongs to (for ``ws.server.join(ws, channel)`` and the like)."""
        return self._server

    def respond(self, status: int | http.HTTPStatus, text: str) -> Response:
        """A plain-text HTTP response for ``process_request`` or ``process_response`` to return instead of
        the upgrade, as websockets' ``connection.respond()`` (see :func:`wscodec.server_hooks.respond`)."""
        return respond(status, text)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        server = self._server
        server._protocols.add(self)
        if server._closing:
            self._abort_now()
            return
        timeout = server.open_timeout
        if timeout is not None:  # from TCP accept, the TLS handshake included
            self._open_timer = self._loop.call_at(self._accepted_at + timeout, self._open_timed_out)
        task = self._handler_task = self._loop.create_task(self._run())
        server._tasks.add(task)
        task.add_done_callback(server._tasks.discard)

    def _open_timed_out(self) -> None:
        """``open_timeout`` bounds the whole opening handshake, ``process_request`` and ``process_response``
        included, as websockets' ``asyncio.timeout`` around it: the connection is aborted, the hook's await
        cancelled, and a ``max_connections`` place freed. (The timer ends once the handshake is decided.)"""
        self._open_timer = None
        self.logger.info("opening handshake timed out")
        self._abort_now()
        self._cancel_handshake()

    def _cancel_handshake(self) -> None:
        """Cancel the task of a connection that never opened: nobody is left to answer, and a hook awaiting
        (an auth backend that never replies) must not outlive the connection."""
        task = self._handler_task
        if task is not None and self._opened_at is None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    def data_received(self, data: bytes | memoryview) -> None:
        pre = self._pre
        if pre is None:
            self._handle(self._conn.receive_data(data))
            return
        pre += data
        if self._head_waiter.done():
            return
        try:
            complete = self._parser.feed(bytes(data))
        except HandshakeRejected:
            complete = self._head_malformed = True  # the Connection will answer with the right status
        if complete:
            assert self._transport is not None
            self._transport.pause_reading()  # until the handshake is decided
            self._head_waiter.set_result(None)

    def eof_received(self) -> bool | None:
        if self._pre is not None:
            return False
        return super().eof_received()

    def _cancel_open_timer(self) -> None:
        """The handshake is decided (or the connection gone): a refusal lingering to be read, or an open
        connection, is not timed out by ``open_timeout``."""
        if self._open_timer is not None:
            self._open_timer.cancel()
            self._open_timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_open_timer()
        if not self._head_waiter.done():
            self._head_waiter.set_result(None)
        self._cancel_handshake()
        super().connection_lost(exc)
        self._server.connections.discard(self)
        self._server._protocols.discard(self)
        if self._server._channels is not None:
            self._server._channels.discard(self)

    def _after_closed(self) -> None:
        response = self._conn.response
        if response is not None and response.status_code == 101:
            super()._after_closed()
            # CLOSED is not open any more, though the transport may linger a while (FAIL_LINGER): its
            # max_connections place is free now. At the next loop step, not here: this runs inside loops
            # over server.connections (broadcast() failing a slow consumer), which must not see it change.
            self._loop.call_soon(self._server.connections.discard, self)
            return
        # Refused before the upgrade: the client may still be sending (a huge request head). Shut down
        # our side once the response is out, read and drop what comes for a short while, then close.
        transport = self._transport
        if self._transport_closing or self._lost or transport is None:
            return
        self._transport_closing = True
        if self._linger(transport, REJECT_LINGER):
            transport.resume_reading()  # (paused since the request head was complete)
        else:  # TLS (close_notify is awaited as long), or a client that does not read: 2 s at most
            transport.close()
            self._arm_abort(min(REJECT_LINGER, self.close_timeout))

    def _parsed_request(self) -> Request | None:
        return None if self._head_malformed else hook_request(self._parser)

    async def _process_refusal(self, request: Request | None) -> None:
        """``process_response`` sees the refusal of a request it could read (a missing key, no subprotocol
        in common...) and may replace it, as websockets calls it after ``accept()`` whatever its answer; not
        a request whose head was malformed, which websockets never hands a hook either."""
        if request is not None:
            await self._process_response(request)

    async def _process_response(self, request: Request | None) -> bool:
        """Give ``process_response`` the queued response; send what it returns instead. False when a 101
        was replaced by another status (sent; the connection then ends without opening)."""
        server = self._server
        hook = server.process_response
        conn = self._conn
        response = conn.response
        if response is None:
            return True
        result: Any = None
        if hook is not None:
            try:
                result = hook(self, request, response)
                if inspect.isawaitable(result):
                    result = await result
                if result is not None:
                    result = as_response(result, upgrade=True)
            except Exception:
                self.logger.exception("error in process_response")
                result = INTERNAL_ERROR
        if server._closing and (response if result is None else result).status_code == 101:
            # The server began closing during the handshake: one answer, 503, as websockets gives (checked
            # after the last await, so no 101 goes out that close() has not seen).
            headers = server._with_server_header(list(SHUTTING_DOWN.headers))
            result = Response(503, SHUTTING_DOWN.reason, headers, SHUTTING_DOWN.body)
        if result is None or result is response or self._lost:
            return True
        try:
            head = response_bytes(result)
        except Exception:
            self.logger.exception("invalid response from process_response: %r", result)
            head = response_bytes(INTERNAL_ERROR)
            result = INTERNAL_ERROR
        queued = conn.data_to_send()
        end = queued.find(b"\r\n\r\n") + 4
        transport = self._transport
        assert transport is not None
        if response.status_code == 101 and result.status_code == 101:
            transport.write(head + queued[end:])  # frames answered behind the 101 stay behind it
            return True
        transport.write(head)
        if response.status_code == 101:
            self._pre = None
            transport.close()
            return False
        return True

    async def _handshake(self) -> bool:
        """Answer the request: plain HTTP (process_request), a rejection, or 101. True once OPEN."""
        server = self._server
        conn = self._conn
        transport = self._transport
        assert transport is not None
        request = self._hook_request = self._parsed_request()
        response: Any = None
        if request is not None and server.process_request is not None:
            try:
                if server._process_request_takes_connection:
                    response = server.process_request(self, request)
                else:
                    response = server.process_request(request)
                if inspect.isawaitable(response):
                    response = await response
            except Exception:
                self.logger.exception("error in process_request")
                response = (500, [("Content-Type", "text/plain")], b"Internal Server Error\n")
            if self._lost:
                return False
        limit = server.max_connections
        if response is None and limit is not None and request is not None:  # (malformed: 400, no place taken)
            # The handshakes past this check hold a place until they open or fail: process_response may
            # await, and several handshakes waiting there must not open past the limit together.
            if len(server.connections) + len(server._admitting) >= limit:
                response = (503, [("Content-Type", "text/plain"), ("Retry-After", "1")], b"too many connections\n")
            else:
                server._admitting.add(self)
        if response is not None:
            try:
                answer = as_response(response)
                conn.reject(answer.status_code, self._server._with_server_header(list(answer.headers)), answer.body)
            except Exception:
                self.logger.exception("invalid response from process_request: %r", response)
                conn.reject(500, [("Content-Type", "text/plain")], b"Internal Server Error\n")
            self._pre = None
            await self._process_response(request)
            self._handle([])
            return False
        pre, self._pre = self._pre, None
        assert pre is not None
        events = conn.receive_data(bytes(pre))
        if not events or type(events[0]) is not Request:
            self.logger.info("rejected opening handshake: %s", events[0] if events else "")
            await self._process_refusal(request)
            self._handle(events)
            return False
        try:
            headers = server._with_server_header([])
            if server.select_subprotocol is not None:
                offered = parse_subprotocols(events[0].headers)
                if server._select_subprotocol_takes_connection:
                    chosen = server.select_subprotocol(self, offered)
                else:
                    chosen = server.select_subprotocol(offered)
                events = conn.accept(chosen, extra_headers=headers)
            else:
                events = conn.accept(extra_headers=headers)
        except NegotiationError as exc:  # no subprotocol in common (or the hook's own refusal): 400
            self.logger.info("rejected opening handshake: %s", exc)
            conn.reject(400, server._with_server_header([("Content-Type", "text/plain")]), f"{exc}\n".encode())
            await self._process_refusal(request)
            self._handle([])
            return False
        except Exception:
            self.logger.exception("error while accepting the connection")
            self._conn = conn = Connection("server", stream_messages=True)  # a fresh one, to answer 500
            conn.reject(500, [("Content-Type", "text/plain")], b"Internal Server Error\n")
            await self._process_refusal(request)
            self._handle([])
            return False
        if not await self._process_response(conn.request):
            return False
        request = conn.request
        host = request.header("Host", "") if request is not None else ""
        scheme = "wss" if transport.get_extra_info("sslcontext") is not None else "ws"
        self.url = f"{scheme}://{host}{request.path if request is not None else '/'}"
        server._admitting.discard(self)
        server.connections.add(self)
        self._opened()
        transport.resume_reading()
        self._handle(events)
        return True

    async def _run(self) -> None:
        try:
            await self._head_waiter
            if self._lost or self._pre is None:
                return
            if not await self._handshake():
                return
        except Exception:
            self.logger.exception("error in the opening handshake")
            self._abort_now()
            return
        finally:
            self._server._admitting.discard(self)  # (a handshake that failed gives its place back)
            self._cancel_open_timer()
        try:
            await self._server.handler(self)
        except ConnectionClosed as exc:
            self.logger.debug("handler ended on %s", exc)
        except asyncio.CancelledError:
            self._abort_now()
            raise
        except Exception:
            self.logger.exception("connection handler failed")
            self._start_close(1011, "internal error")
        self._start_close(1000, "")
        await self.wait_closed()


class Server:
    """A running WebSocket server; :func:`serve` builds it.

    ``connections`` is the set of open WebSockets; ``close()`` stops listening and closes them with 1001
    (``close_connections=False``: leaves them open); ``await wait_closed()`` waits for the end (at most
    ``close_timeout`` for the connections ``close()`` closed, then aborts what is left of them).
    """

    def __init__(
        self,
        handler: Handler,
        *,
        subprotocols: Sequence[str] = (),
        select_subprotocol: SelectSubprotocol | None = None,
        origins: Sequence[str | None] | None = None,
        process_request: ProcessRequest | None = None,
        process_response: ProcessResponse | None = None,
        server_header: str | None = DEFAULT_USER_AGENT,
        compression: Compression = "deflate",
        extensions: Sequence[Any] | None = None,
        open_timeout: float | None = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 10.0,
        max_size: checks.Bound = 2**20,
        max_queue: checks.Bound = 16,
        write_limit: checks.WriteLimit = 65536,
        max_connections: int | None = None,
        slow_consumer: Literal["close", "skip", "wait"] = "close",
        slow_consumer_limit: int = 1 << 20,
        broker: Broker | str | None = None,
        logger: LoggerLike = None,
        busy_poll: float | None = None,
    ) -> None:
        if slow_consumer not in ("close", "skip", "wait"):
            raise ValueError("slow_consumer must be 'close', 'skip' or 'wait'")
        close_timeout, max_size, max_queue = checks.limits(close_timeout, max_size, max_queue)
        checks.write_limits(write_limit)  # refused here, not at the first connection
        checks.slow_consumer_limit(slow_consumer_limit)  # (likewise: a broadcast would fail on it)
        self.handler = handler
        self.select_subprotocol = select_subprotocol
        self.process_request = process_request
        self._process_request_takes_connection = process_request is not None and takes_connection(process_request)
        self._select_subprotocol_takes_connection = select_subprotocol is not None and takes_connection(
            select_subprotocol
        )
        self.process_response = process_response
        self.server_header = server_header
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.max_connections = max_connections
        self._connection_options: dict[str, Any] = {
            "subprotocols": checks.subprotocols(subprotocols),
            "origins": origins,
            "extensions": extension_factories(compression, "server", extensions),
            "max_message_size": max_size,
        }
        self._options: dict[str, Any] = {
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "close_timeout": close_timeout,
            "max_queue": max_queue,
            "write_limit": write_limit,
            "slow_consumer": slow_consumer,
            "slow_consumer_limit": slow_consumer_limit,
        }
        if logger is not None:
            self._options["logger"] = logger
        #: Seconds the event loop keeps polling after each read (None: off); see :mod:`wscodec.asyncio.busy_poll`.
        self.busy_poll = check_busy_poll(busy_poll)
        self._poller: BusyPoller | None = None  # one for all the connections, made with the first
        #: The open connections.
        self.connections: set[WebSocket] = set()
        self._admitting: set[WebSocket] = set()  # handshakes that passed the max_connections check
        self._protocols: set[ServerWebSocket] = set()  # every connection, handshake included
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed_tasks: set[asyncio.Task[None]] = set()  # the tasks of the connections close() closed
        self._server: asyncio.AbstractServer | None = None
        self._closing = False
        self._closed_event = asyncio.Event()
        #: The bus :meth:`publish` goes through (see :mod:`wscodec.broker`); in-process unless ``broker`` says.
        self.broker: Broker = make_broker(broker)
        self._owns_broker = not isinstance(broker, Broker)
        self._broker_spec = broker  # to make it again after a start that could not listen (see serve)
        self._channels: Any = None  # wscodec.broker.channels.Channels, made on first use

    def _with_server_header(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        if self.server_header is None or any(k.lower() == "server" for k, _ in headers):
            return headers
        return [*headers, ("Server", self.server_header)]

    def _protocol_factory(self) -> ServerWebSocket:
        conn = Connection("server", stream_messages=True, **self._connection_options)
        if self.busy_poll is not None and self._poller is None:
            self._poller = BusyPoller(asyncio.get_running_loop(), self.busy_poll)
        return ServerWebSocket(self, conn, busy_poller=self._poller, **self._options)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets."""
        sockets = getattr(self._server, "sockets", None)
        return tuple(sockets) if sockets else ()

    @property
    def port(self) -> int | None:
        """The port of the first listening TCP socket (None for a Unix socket)."""
        for sock in self.sockets:
            name = sock.getsockname()
            if isinstance(name, tuple):
                return int(name[1])
        return None

    def is_serving(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def serve_forever(self) -> None:
        """Serve until :meth:`close` (from another task, a signal handler) or until cancelled, as websockets'
        does: after ``close()`` it returns once the server is closed (:meth:`wait_closed`); cancelled, it
        closes, waits, and raises the cancellation. (``asyncio.Server.serve_forever`` raises
        ``CancelledError`` on ``close()``, which would end ``asyncio.run()`` with it.)"""
        assert self._server is not None
        try:
            if not self._server.is_serving():
                await self._server.start_serving()
            await self.wait_closed()
        except asyncio.CancelledError:
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise

    def close(self, close_connections: bool = True, code: int = 1001, reason: str | None = None) -> None:
        """Stop accepting connections; with ``close_connections``, close every open one with ``code`` and
        ``reason`` (websockets' arguments: 1012, service restart, tells clients to come back soon; the
        reason is "going away" for 1001 unless given, where websockets sends none, and empty for another
        code, as in websockets).

        Either way, as in websockets, a handshake whose request is in (``process_request`` or
        ``process_response`` may still be running) is answered 503 "Server is shutting down." instead of
        its 101, and one whose request head is not complete yet is aborted. ``close_connections=False``
        leaves the open connections alone: :meth:`wait_closed` then waits for their handlers to return.
        """
        reason = going_away_reason(code, reason)
        build_close_payload(code, reason)  # a code or reason not allowed on the wire: ValueError, before anything
        if self._server is not None:
            self._server.close()
        self._closing = True
        self._closed_event.set()
        if close_connections:  # every handler, those of connections already lost included, gets close_timeout
            self._closed_tasks.update(self._tasks)
        for ws in list(self._protocols):
            if ws._opened_at is None and not ws._head_waiter.done():
                ws._abort_now()  # no request yet to answer
            elif close_connections and ws._opened_at is not None:
                ws._start_close(code, reason)
            # (A connection still in its handshake is not sent a Close: _process_response answers it 503.)

    async def wait_closed(self) -> None:
        """Wait until :meth:`close` was called and every connection has ended.

        The connections :meth:`close` closed get ``close_timeout``; what is left of them then is aborted and
        its handler cancelled. The others (``close_connections=False``) are waited for until their handlers
        return, as websockets waits: each stays bounded by its own keepalive and timeouts only, so bound
        this wait yourself if needed (``async with asyncio.timeout(30): await server.wait_closed()``).
        """
        await self._closed_event.wait()
        tasks = set(self._tasks)
        closed = tasks & self._closed_tasks
        if closed:
            _done, pending = await asyncio.wait(closed, timeout=self.close_timeout)
            if pending:
                logger.warning("%d connections still open after %s s: aborting them", len(pending), self.close_timeout)
                for ws in list(self._protocols):
                    if ws._handler_task in pending:
                        ws._abort_now()
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=1.0)
        others = tasks - closed
        if others:
            await asyncio.wait(others)
        for ws in list(self._protocols):
            ws._abort_now()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            except asyncio.TimeoutError:
                logger.warning("the listening sockets did not close in time")
        if self._channels is not None:
            await self._channels.close()
        if self._owns_broker:
            await self.broker.close()

    # ------------------------------------------------------------------ channels (wscodec.broker)

    def _hub(self) -> Any:
        if self._channels is None:
            from ..broker.channels import Channels

            self._channels = Channels(self.broker)
        return self._channels

    async def join(self, ws: WebSocket, channel: str) -> None:
        """Subscribe ``ws`` to ``channel``: it receives what :meth:`publish` sends there, from this process
        and from every process sharing the broker. Returns once the subscription is active. A connection
        leaves its channels when it closes. Raises :class:`~wscodec.broker.BrokerUnavailable` if the bus
        refuses the channel (a Redis ACL): ``ws`` is not a member then."""
        await self._hub().join(ws, channel)

    async def leave(self, ws: WebSocket, channel: str) -> None:
        """Unsubscribe ``ws`` from ``channel``."""
        await self._hub().leave(ws, channel)

    async def publish(self, channel: str, message: Message) -> None:
        """Send ``message`` (str or bytes) to every connection subscribed to ``channel`` on every worker and
        machine sharing the broker; each process frames it once and applies each connection's
        ``slow_consumer`` policy as :func:`broadcast` does. One publisher's messages arrive in order, at
        most once. Raises :class:`~wscodec.broker.BrokerUnavailable` at once while the broker is down."""
        await self._hub().publish(channel, message)

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()


class serve:
    """Start a server: ``server = await serve(handler, host, port)`` or ``async with serve(...) as server:``.

    ``handler(ws)`` runs once per connection; when it returns the connection is closed with 1000, when it
    raises with 1011 (and the error is logged). ``process_request(connection, request)`` (websockets'
    form; ``process_request(request)`` too) is called with the :class:`~wscodec.events.Request` of every
    HTTP request, WebSocket upgrade or not, before it is checked: return None to go on, or a response to
    answer with plain HTTP (health checks, a page, :func:`basic_auth`'s 401): ``connection.respond(status,
    text)``, a :class:`~wscodec.events.Response` or ``(status, headers, body)``; it may be a coroutine.
    ``subprotocols`` is the server's preference list: the first one the client offers is chosen, and a
    client that offers none of them gets 400, as in websockets. ``select_subprotocol(connection, offered)
    -> str | None`` (or ``select_subprotocol(offered)``) replaces that rule (None: no subprotocol; raising
    :class:`~wscodec.errors.NegotiationError`: 400). ``origins`` lists the allowed ``Origin``
    values (None in it: no Origin header), others get 403. Beyond ``max_connections`` open connections
    upgrades get 503. ``slow_consumer`` ("close", "skip" or "wait") is what :func:`broadcast` does with
    a connection whose buffer holds more than ``slow_consumer_limit`` bytes. ``broker`` (a URL such as
    ``"redis://host:6379/0"`` or a :class:`~wscodec.broker.Broker`) carries :meth:`Server.publish` across
    processes.

    ``process_response(ws, request, response)`` sees every response (the 101 included) before it is sent:
    return None to send it, or a :class:`~wscodec.events.Response` (``dataclasses.replace`` it to add
    headers to the 101) or ``(status, headers, body)`` to send instead. ``server_header`` is the
    ``Server`` header (None: none). ``compression`` is ``"deflate"``, a
    :class:`~wscodec.compression.Deflate` or None, as for ``connect()``; ``extensions`` (factories)
    replaces it. ``sock`` is an already bound or listening socket (TCP or Unix) instead of ``host``/``port``
    (what :mod:`wscodec.workers` hands a worker); ``reuse_port=True`` sets ``SO_REUSEPORT`` on the sockets
    ``host``/``port`` bind, so that several processes each ``serve()`` the same port and the kernel shares
    the connections among them (websockets passes it to ``create_server()`` the same way); ``logger`` (a
    Logger or its name) is where connections log. ``transport`` (``"loop"``, ``"aiofastnet"`` or
    ``"auto"``) picks the asyncio transports the connections run on, as for ``connect()``: see
    :mod:`wscodec.transports`. ``busy_poll`` (seconds, at most 1.0; None, the default: off) keeps the event
    loop polling instead of sleeping for that long after each read, one poller for all the connections:
    about 3x lower latency with one message in flight on a VM, for a core kept busy meanwhile (see
    :mod:`wscodec.asyncio.busy_poll`). Other options as in :class:`~wscodec.asyncio.connect`; ``ssl`` is an
    :class:`ssl.SSLContext` for wss.
    """

    def __init__(
        self,
        handler: Handler,
        host: str | None = "127.0.0.1",
        port: int | None = 8765,
        *,
        sock: socket.socket | None = None,
        ssl: ssl_module.SSLContext | None = None,
        subprotocols: Sequence[str] = (),
        select_subprotocol: SelectSubprotocol | None = None,
        origins: Sequence[str | None] | None = None,
        process_request: ProcessRequest | None = None,
        process_response: ProcessResponse | None = None,
        server_header: str | None = DEFAULT_USER_AGENT,
        compression: Compression = "deflate",
        extensions: Sequence[Any] | None = None,
        open_timeout: float | None = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 10.0,
        max_size: checks.Bound = 2**20,
        max_queue: checks.Bound = 16,
        write_limit: checks.WriteLimit = 65536,
        max_connections: int | None = None,
        slow_consumer: Literal["close", "skip", "wait"] = "close",
        slow_consumer_limit: int = 1 << 20,
        logger: LoggerLike = None,
        broker: Broker | str | None = None,
        reuse_address: bool = True,
        reuse_port: bool = False,
        backlog: int = 100,
        transport: TransportChoice = "loop",
        busy_poll: float | None = None,
    ) -> None:
        self._transport = resolve_transport(transport)
        self._server = Server(
            handler,
            subprotocols=subprotocols,
            select_subprotocol=select_subprotocol,
            origins=origins,
            process_request=process_request,
            process_response=process_response,
            server_header=server_header,
            compression=compression,
            extensions=extensions,
            open_timeout=open_timeout,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
            max_size=max_size,
            max_queue=max_queue,
            write_limit=write_limit,
            max_connections=max_connections,
            slow_consumer=slow_consumer,
            slow_consumer_limit=slow_consumer_limit,
            logger=logger,
            broker=broker,
            busy_poll=busy_poll,
        )
        self._host = host
        self._port: Any = port
        self._ssl = ssl
        self._sock = sock
        self._reuse_address = reuse_address
        self._reuse_port = reuse_port
        self._backlog = backlog
        self._unix_path: str | None = None

    async def _start(self) -> Server:
        streams = opener(self._transport, asyncio.get_running_loop())
        server = self._server
        await server.broker.start()
        try:
            return await self._listen(streams)
        except BaseException:
            # No server to close it later (a busy port): a broker made here goes now, or every failed attempt
            # would leave its Redis connections and tasks running, and a new one, not started, takes its
            # place for the next attempt (awaiting this serve() again). One passed in is the caller's.
            if server._owns_broker:
                await server.broker.close()
                server.broker = make_broker(server._broker_spec)
            raise

    async def _listen(self, streams: Opener) -> Server:
        server = self._server
        tls: dict[str, Any] = {"ssl": self._ssl, "backlog": self._backlog}
        if self._ssl is not None and server.open_timeout is not None:
            # The protocol (and its open_timeout timer) only exists once TLS is up: bound the TLS handshake
            # by the same timeout, or a client that never sends its ClientHello holds a socket for 60 s.
            tls["ssl_handshake_timeout"] = server.open_timeout
        if self._sock is not None:
            # An already bound or listening socket (systemd socket activation, workers, tests): TCP or Unix.
            if self._sock.family == getattr(socket, "AF_UNIX", None):
                server._server = await streams.create_unix_server(server._protocol_factory, sock=self._sock, **tls)
            else:
                server._server = await streams.create_server(server._protocol_factory, sock=self._sock, **tls)
        elif self._unix_path is not None:
            server._server = await streams.create_unix_server(server._protocol_factory, self._unix_path, **tls)
        else:
            server._server = await streams.create_server(
                server._protocol_factory,
                self._host,
                self._port,
                reuse_address=self._reuse_address,
                reuse_port=self._reuse_port or None,  # (None: the platform may lack SO_REUSEPORT)
                **tls,
            )
        logger.info("server listening on %s", ", ".join(str(s.getsockname()) for s in server.sockets))
        return server

    def __await__(self) -> Generator[Any, None, Server]:
        return self._start().__await__()

    async def __aenter__(self) -> Server:
        return await self._start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.close()
        await self._server.wait_closed()


def unix_serve(
    handler: Handler,
    path: str | None = None,
    *,
    sock: socket.socket | None = None,
    ssl: ssl_module.SSLContext | None = None,
    subprotocols: Sequence[str] = (),
    select_subprotocol: SelectSubprotocol | None = None,
    origins: Sequence[str | None] | None = None,
    process_request: ProcessRequest | None = None,
    process_response: ProcessResponse | None = None,
    server_header: str | None = DEFAULT_USER_AGENT,
    compression: Compression = "deflate",
    extensions: Sequence[Any] | None = None,
    open_timeout: float | None = 10.0,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    close_timeout: float = 10.0,
    max_size: checks.Bound = 2**20,
    max_queue: checks.Bound = 16,
    write_limit: checks.WriteLimit = 65536,
    max_connections: int | None = None,
    slow_consumer: Literal["close", "skip", "wait"] = "close",
    slow_consumer_limit: int = 1 << 20,
    logger: LoggerLike = None,
    broker: Broker | str | None = None,
    backlog: int = 100,
    transport: TransportChoice = "loop",
    busy_poll: float | None = None,
) -> serve:
    """:func:`serve` on a Unix socket at ``path`` (or the listening Unix socket ``sock``); the same options
    (``host``, ``port``, ``reuse_address`` and ``reuse_port`` aside, which name a TCP socket)."""
    if path is None and sock is None:
        raise TypeError("unix_serve() needs path or sock")
    starter = serve(
        handler,
        None,
        None,
        sock=sock,
        ssl=ssl,
        subprotocols=subprotocols,
        select_subprotocol=select_subprotocol,
        origins=origins,
        process_request=process_request,
        process_response=process_response,
        server_header=server_header,
        compression=compression,
        extensions=extensions,
        open_timeout=open_timeout,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        close_timeout=close_timeout,
        max_size=max_size,
        max_queue=max_queue,
        write_limit=write_limit,
        max_connections=max_connections,
        slow_consumer=slow_consumer,
        slow_consumer_limit=slow_consumer_limit,
        logger=logger,
        broker=broker,
        backlog=backlog,
        transport=transport,
        busy_poll=busy_poll,
    )
    starter._unix_path = path
    return starter


# --------------------------------------------------------------------------- basic auth


def basic_auth(
    realm: str = "",
    credentials: tuple[str, str] | Iterable[tuple[str, str]] | None = None,
    check_credentials: Callable[[str, str], bool | Awaitable[bool]] | None = None,
) -> Callable[[ServerWebSocket, Request], Awaitable[Response | None]]:
    """A ``process_request`` that lets in only requests with valid HTTP Basic credentials, as websockets'
    ``basic_auth``: give ``credentials`` (a ``(username, password)`` pair or an iterable of them) or
    ``check_credentials(username, password)`` (it may be a coroutine). Others get 401 with a
    ``WWW-Authenticate`` challenge for ``realm``; the handler finds the user in ``ws.username``."""
    auth = BasicAuth(realm, credentials, check_credentials)

    async def process_request(connection: ServerWebSocket, request: Request) -> Response | None:
        found = auth.credentials(request)
        if isinstance(found, Response):
            return found
        valid = auth.check(*found)
        if inspect.isawaitable(valid):
            valid = await valid
        if not valid:
            return auth.challenge()
        connection.username = found[0]
        return None

    return process_request


# --------------------------------------------------------------------------- broadcast


def _frame_for(message: Any, text: bool | None) -> tuple[int, Any]:
    if isinstance(message, str):
        return 2 if text is False else 1, message.encode("utf-8")
    if isinstance(message, (bytes, bytearray, memoryview)):
        if not text:
            return 2, message
        check_utf8(message)  # once for every connection (the rule of Connection.send_message)
        return 1, message
    raise TypeError(f"broadcast() takes str or bytes-like, not {type(message).__name__}")


def _write(
    ws: WebSocket, message: Any, frame: bytes | None, opcode: int, payload: Any, compress: bool, defer: bool = False
) -> bytes | None:
    """Write ``message`` to ``ws``: the shared unmasked frame, or the connection's own framing when it must
    mask (client) or compress. Returns the shared frame (built on first use)."""
    conn = ws._conn
    if conn.is_client or (compress and conn.extensions):
        conn.send_message(message, compress=compress, text=opcode == 1)
        ws._handle([])
        return frame
    if frame is None:
        frame = encode_frame(opcode, payload)
    # Queued after what ws.send() queued, and counted as the Connection's own sends (the closed line).
    conn.send_encoded(frame, payload.nbytes if isinstance(payload, memoryview) else len(payload))
    if not defer:  # (deferred: the caller writes them out soon, ws._write_out)
        ws._write_out()
    return frame


def _eligible(ws: WebSocket, errors: list[Exception] | None = None) -> bool:
    """Open, and not part-way through a fragmented send (that one is skipped: logged, or in ``errors``)."""
    if ws._conn.state is not OPEN or ws._lost or ws._transport is None:
        return False
    if ws._fragmenting is not None:
        error = ConcurrencyError("sending a fragmented message")
        if errors is None:
            ws.logger.warning("skipped broadcast: %s", error)
        else:
            errors.append(error)
        return False
    return True


def _check_raise_exceptions(raise_exceptions: bool) -> list[Exception] | None:
    """The list a broadcast gathers its errors in, with ``raise_exceptions``; None: they are logged."""
    if not raise_exceptions:
        return None
    if sys.version_info < (3, 11):  # (websockets refuses it the same way: ExceptionGroup is 3.11's)
        raise ValueError("raise_exceptions requires at least Python 3.11")
    return []


def _raise_errors(errors: list[Exception] | None) -> None:
    if errors and sys.version_info >= (3, 11):  # (a list only there: see _check_raise_exceptions)
        raise ExceptionGroup("skipped broadcast", errors)  # noqa: F821 (a builtin since 3.11)


#: With ``slow_consumer="wait"``, what :func:`broadcast` and channel deliveries (which cannot wait) still
#: write to a slow connection: up to this many times ``slow_consumer_limit``, then it is closed with 1008.
WAIT_CEILING = 4


def _broadcast(
    connections: Iterable[WebSocket],
    message: Any,
    compress: bool,
    hold_slow: bool,
    defer: bool = False,
    text: bool | None = None,
    errors: list[Exception] | None = None,
) -> tuple[int, Any, bytes | None, list[WebSocket]]:
    """Write ``message`` to every eligible connection, applying each one's slow-consumer policy; with
    ``hold_slow``, the slow connections of policy "wait" are returned instead of written to; with
    ``defer``, the frame is only queued in each Connection and the caller calls ``ws._write_out()`` later
    (several messages, one system call: see wscodec.broker.channels). A connection whose write fails is
    skipped: the error is logged, or appended to ``errors`` when given (``raise_exceptions``)."""
    opcode, payload = _frame_for(message, text)
    frame: bytes | None = None
    slow: list[WebSocket] = []
    overflowing: list[tuple[WebSocket, int]] = []  # failed after the loop: their error listeners run then
    for ws in connections:
        if not _eligible(ws, errors):
            continue
        buffered = ws.buffered_amount
        if buffered > ws.slow_consumer_limit:
            policy = ws.slow_consumer
            if policy == "wait" and hold_slow:
                slow.append(ws)
                continue
            if policy == "close" or (policy == "wait" and buffered > ws.slow_consumer_limit * WAIT_CEILING):
                # ("wait" where the caller cannot wait, broadcast() or a channel: written to up to the
                # ceiling, then closed, so a client that never reads cannot grow the server's memory.)
                overflowing.append((ws, buffered))
                continue
            if policy == "skip":
                continue
        frame = _write_or_skip(ws, message, frame, opcode, payload, compress, defer, errors)
    for ws, buffered in overflowing:
        ws.logger.info("slow consumer, closing it")
        error = BufferError(f"slow consumer: {buffered} bytes unsent, over slow_consumer_limit")
        ws._fail_with(error, 1008, "slow consumer")
    return opcode, payload, frame, slow


def _write_or_skip(
    ws: WebSocket,
    message: Any,
    frame: bytes | None,
    opcode: int,
    payload: Any,
    compress: bool,
    defer: bool,
    errors: list[Exception] | None,
) -> bytes | None:
    """:func:`_write`, where one connection's failure (its transport's, its compressor's) skips it and not
    the connections after it, as websockets' broadcast does."""
    try:
        return _write(ws, message, frame, opcode, payload, compress, defer)
    except Exception as exc:
        _skip_failed_write(ws, exc, errors)
        return frame


def _skip_failed_write(ws: WebSocket, exc: Exception, errors: list[Exception] | None) -> None:
    """One connection's failed write, which skips it: logged as websockets logs it (one WARNING line, no
    traceback), or, with ``errors`` (``raise_exceptions``), appended as websockets raises it: a
    RuntimeError from ``exc``, so one ``except*`` catches every skip."""
    if errors is None:
        reason = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        ws.logger.warning("skipped broadcast: failed to write message: %s", reason)
    else:
        error = RuntimeError("failed to write message")
        error.__cause__ = exc
        errors.append(error)


def broadcast(
    connections: Iterable[WebSocket],
    message: Any,
    *,
    compress: bool = False,
    text: bool | None = None,
    raise_exceptions: bool = False,
) -> None:
    """Send ``message`` to every OPEN connection without waiting: the frame is built once and written to
    each transport (``compress=True`` compresses per connection instead, where deflate was negotiated).
    ``text`` overrides the frame type as in :meth:`WebSocket.send`: bytes already UTF-8 (checked once)
    as Text, a str as Binary.

    A connection holding more than its ``slow_consumer_limit`` unsent bytes is closed with 1008 (policy
    "close"), skipped for this message ("skip"), or still written to ("wait": use :func:`broadcast_wait`
    to wait for it instead) up to ``WAIT_CEILING`` (4) times that limit, beyond which it is closed with
    1008 too: one client that never reads cannot grow the server's memory whatever the policy.

    A connection part-way through a fragmented send, or whose write fails, is skipped and the others
    still get the message; as in websockets, each skip is a WARNING, or with ``raise_exceptions=True``
    (Python 3.11+) the skips are raised together afterwards as an ``ExceptionGroup("skipped broadcast")``
    (a :class:`~wscodec.errors.ConcurrencyError` for a fragmented send, a ``RuntimeError("failed to write
    message")`` from the write's own error for a failed write).
    """
    errors = _check_raise_exceptions(raise_exceptions)
    _broadcast(connections, message, compress, hold_slow=False, text=text, errors=errors)
    _raise_errors(errors)


async def broadcast_wait(
    connections: Iterable[WebSocket],
    message: Any,
    *,
    compress: bool = False,
    text: bool | None = None,
    raise_exceptions: bool = False,
    timeout: float | None = None,
) -> None:
    """:func:`broadcast`, but a connection with policy "wait" holding more than ``slow_consumer_limit``
    unsent bytes is waited for (concurrently with the others) until its transport takes writes again (its
    buffer under the low-water mark of ``write_limit``, as :meth:`WebSocket.send` waits), then written to;
    returns when every write is done.

    ``timeout`` bounds each of those waits: a connection still full after ``timeout`` seconds is closed
    with 1008, as policy "close" closes it. Without one, the wait ends when the peer reads, or when the
    keepalive fails a peer that reads nothing (``ping_interval`` + ``ping_timeout``); with
    ``ping_interval=None`` only the peer can end it.

    A connection that closes or vanishes while waited for is skipped, as :func:`broadcast` skips closed
    ones: its ConnectionClosed is not the caller's (a handler broadcasting in ``async for message in ws``
    would take it for its own connection's end). Skips are logged or raised as :func:`broadcast`'s.
    """
    timeout = checks.broadcast_timeout(timeout)
    errors = _check_raise_exceptions(raise_exceptions)
    opcode, payload, frame, slow = _broadcast(connections, message, compress, hold_slow=True, text=text, errors=errors)
    if not slow:
        _raise_errors(errors)
        return
    shared = frame if frame is not None else encode_frame(opcode, payload)

    def full(ws: WebSocket) -> bool:
        return ws.buffered_amount > ws.slow_consumer_limit and ws._write_paused and not ws._lost

    async def drained(ws: WebSocket) -> None:
        while full(ws):
            await ws._wait_writable()

    async def wait_and_write(ws: WebSocket) -> None:
        try:
            if full(ws):  # (not in wait_for: before Python 3.12 a timeout of 0 cancels before the first check)
                await asyncio.wait_for(drained(ws), timeout)
        except ConnectionClosed:
            return
        except asyncio.TimeoutError:
            if ws._conn.state is OPEN:  # (one the application is closing meanwhile keeps its own close)
                ws.logger.info("slow consumer, closing it after %s s", timeout)
                error = TimeoutError(f"slow consumer: over slow_consumer_limit for {timeout} s")
                ws._fail_with(error, 1008, "slow consumer")
            return
        if _eligible(ws, errors):
            _write_or_skip(ws, message, shared, opcode, payload, compress, False, errors)

    await asyncio.gather(*(wait_and_write(ws) for ws in slow))
    _raise_errors(errors)
