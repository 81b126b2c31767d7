"""The asyncio server: :func:`serve`, :func:`unix_serve`, :class:`Server`, and :func:`broadcast`."""

from __future__ import annotations

import asyncio
import http
import inspect
import logging
import socket
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from .._kernels import encode_frame
from ..connection import OPEN, Connection
from ..errors import ConnectionClosed
from ..events import Request
from ..handshake import HandshakeRejected, HttpParser, parse_subprotocols
from .websocket import WebSocket

__all__ = ["Server", "ServerWebSocket", "broadcast", "broadcast_wait", "serve", "unix_serve"]

logger = logging.getLogger(__name__)

Handler = Callable[[WebSocket], Awaitable[Any]]

#: Seconds an HTTP error response (400, 403, 431, 503...) waits for the client to stop sending before the
#: socket is closed: closing with unread input makes the kernel send a reset, which can destroy the response.
REJECT_LINGER = 2.0
HttpResponse = tuple[int | http.HTTPStatus, Any, bytes | str]
ProcessRequest = Callable[[Request], HttpResponse | Awaitable[HttpResponse | None] | None]


def _extensions(compression: str | None) -> Sequence[Any] | None:
    if compression == "deflate":
        return None  # the Connection's default: permessage-deflate
    if compression is None:
        return ()
    raise ValueError(f"unsupported compression {compression!r}: use 'deflate' or None")


def _normalize(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    status, headers, body = response
    if isinstance(headers, Mapping):
        headers = list(headers.items())
    if isinstance(body, str):
        body = body.encode("utf-8")
    return int(status), [(str(k), str(v)) for k, v in headers], bytes(body)


class ServerWebSocket(WebSocket):
    """The server side of a connection: runs the opening handshake, then the handler."""

    def __init__(self, server: Server, connection: Connection, **options: Any) -> None:
        super().__init__(connection, **options)
        self._server = server
        self._pre: bytearray | None = bytearray()  # bytes received before the handshake is decided
        self._parser = HttpParser()
        self._head_malformed = False
        self._head_waiter: asyncio.Future[None] = self._loop.create_future()
        self._open_timer: asyncio.TimerHandle | None = None
        self._handler_task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        server = self._server
        server._protocols.add(self)
        if server._closing:
            self._abort_now()
            return
        timeout = server.open_timeout
        if timeout is not None:
            self._open_timer = self._loop.call_later(timeout, self._open_timed_out)
        task = self._handler_task = self._loop.create_task(self._run())
        server._tasks.add(task)
        task.add_done_callback(server._tasks.discard)

    def _open_timed_out(self) -> None:
        self._open_timer = None
        if self._pre is not None:
            logger.info("opening handshake from %s timed out", self.remote_address)
            self._abort_now()

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

    def connection_lost(self, exc: Exception | None) -> None:
        if self._open_timer is not None:
            self._open_timer.cancel()
            self._open_timer = None
        if not self._head_waiter.done():
            self._head_waiter.set_result(None)
        super().connection_lost(exc)
        self._server.connections.discard(self)
        self._server._protocols.discard(self)

    def _after_closed(self) -> None:
        response = self._conn.response
        if response is not None and response.status_code == 101:
            super()._after_closed()
            return
        # Refused before the upgrade: the client may still be sending (a huge request head). Shut down
        # our side once the response is out, read and drop what comes for a short while, then close.
        transport = self._transport
        if self._transport_closing or self._lost or transport is None:
            return
        self._transport_closing = True
        if transport.can_write_eof():
            transport.write_eof()  # after the buffered response
            transport.resume_reading()
            self._arm_abort(min(REJECT_LINGER, self.close_timeout))
        else:  # TLS: no half-close
            transport.close()
            self._arm_abort()

    def _parsed_request(self) -> Request | None:
        if self._head_malformed:
            return None
        parts = self._parser.start_line.split(" ")
        if len(parts) != 3:
            return None
        return Request(parts[0], parts[1], self._parser.headers, parts[2])

    async def _handshake(self) -> bool:
        """Answer the request: plain HTTP (process_request), a rejection, or 101. True once OPEN."""
        server = self._server
        conn = self._conn
        transport = self._transport
        assert transport is not None
        request = self._parsed_request()
        response: Any = None
        if request is not None and server.process_request is not None:
            try:
                response = server.process_request(request)
                if inspect.isawaitable(response):
                    response = await response
            except Exception:
                logger.exception("error in process_request")
                response = (500, [("Content-Type", "text/plain")], b"Internal Server Error\n")
            if self._lost:
                return False
        limit = server.max_connections
        if response is None and limit is not None and len(server.connections) >= limit:
            response = (503, [("Content-Type", "text/plain"), ("Retry-After", "1")], b"too many connections\n")
        if response is not None:
            try:
                status, headers, body = _normalize(response)
                conn.reject(status, headers, body)
            except Exception:
                logger.exception("invalid response from process_request: %r", response)
                conn.reject(500, [("Content-Type", "text/plain")], b"Internal Server Error\n")
            self._pre = None
            self._handle([])
            return False
        pre, self._pre = self._pre, None
        assert pre is not None
        events = conn.receive_data(bytes(pre))
        if not events or type(events[0]) is not Request:
            logger.info("rejected opening handshake from %s: %s", self.remote_address, events[0] if events else "")
            self._handle(events)
            return False
        try:
            if server.select_subprotocol is not None:
                offered = parse_subprotocols(events[0].headers)
                events = conn.accept(server.select_subprotocol(offered))
            else:
                events = conn.accept()
        except Exception:
            logger.exception("error while accepting the connection")
            self._conn = conn = Connection("server", stream_messages=True)  # a fresh one, to answer 500
            conn.reject(500, [("Content-Type", "text/plain")], b"Internal Server Error\n")
            self._handle([])
            return False
        if self._open_timer is not None:
            self._open_timer.cancel()
            self._open_timer = None
        request = conn.request
        host = request.header("Host", "") if request is not None else ""
        scheme = "wss" if transport.get_extra_info("sslcontext") is not None else "ws"
        self.url = f"{scheme}://{host}{request.path if request is not None else '/'}"
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
            logger.exception("error in the opening handshake")
            self._abort_now()
            return
        try:
            await self._server.handler(self)
        except ConnectionClosed as exc:
            logger.debug("%r: handler ended on %s", self, exc)
        except asyncio.CancelledError:
            self._abort_now()
            raise
        except Exception:
            logger.exception("connection handler failed")
            self._start_close(1011, "internal error")
        self._start_close(1000, "")
        await self.wait_closed()


class Server:
    """A running WebSocket server; :func:`serve` builds it.

    ``connections`` is the set of open WebSockets; ``close()`` stops listening and closes them with 1001;
    ``await wait_closed()`` waits for the end (at most ``close_timeout``, then aborts what is left).
    """

    def __init__(
        self,
        handler: Handler,
        *,
        subprotocols: Sequence[str] = (),
        select_subprotocol: Callable[[list[str]], str | None] | None = None,
        origins: Sequence[str | None] | None = None,
        process_request: ProcessRequest | None = None,
        compression: str | None = "deflate",
        open_timeout: float | None = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 10.0,
        max_size: int | None = 2**20,
        max_queue: int | None = 16,
        write_limit: int = 65536,
        max_connections: int | None = None,
        slow_consumer: str = "close",
        slow_consumer_limit: int = 1 << 20,
    ) -> None:
        if slow_consumer not in ("close", "skip", "wait"):
            raise ValueError("slow_consumer must be 'close', 'skip' or 'wait'")
        self.handler = handler
        self.select_subprotocol = select_subprotocol
        self.process_request = process_request
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.max_connections = max_connections
        self._connection_options: dict[str, Any] = {
            "subprotocols": tuple(subprotocols or ()),
            "origins": origins,
            "extensions": _extensions(compression),
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
        #: The open connections.
        self.connections: set[WebSocket] = set()
        self._protocols: set[ServerWebSocket] = set()  # every connection, handshake included
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.AbstractServer | None = None
        self._closing = False
        self._closed_event = asyncio.Event()

    def _protocol_factory(self) -> ServerWebSocket:
        conn = Connection("server", stream_messages=True, **self._connection_options)
        return ServerWebSocket(self, conn, **self._options)

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
        """Serve until cancelled (then closes)."""
        assert self._server is not None
        try:
            await self._server.serve_forever()
        finally:
            self.close()

    def close(self, close_connections: bool = True) -> None:
        """Stop accepting connections; with ``close_connections``, close every open one with 1001."""
        if self._server is not None:
            self._server.close()
        self._closing = True
        self._closed_event.set()
        if close_connections:
            for ws in list(self._protocols):
                if ws._pre is not None:
                    ws._abort_now()  # still in the handshake
                else:
                    ws._start_close(1001, "going away")

    async def wait_closed(self) -> None:
        """Wait until :meth:`close` was called and every connection has ended: at most ``close_timeout``
        for the connections, after which what is left is aborted and its handler cancelled."""
        await self._closed_event.wait()
        tasks = set(self._tasks)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self.close_timeout)
            if pending:
                logger.warning("%d connections still open after %s s: aborting them", len(pending), self.close_timeout)
                for ws in list(self._protocols):
                    ws._abort_now()
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=1.0)
        for ws in list(self._protocols):
            ws._abort_now()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            except asyncio.TimeoutError:
                logger.warning("the listening sockets did not close in time")

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
    raises with 1011 (and the error is logged). ``process_request(request)`` is called with the
    :class:`~wscodec.events.Request` of every HTTP request, WebSocket upgrade or not, before it is
    checked: return None to go on, or ``(status, headers, body)`` to answer with plain HTTP (health
    checks, a page); it may be a coroutine. ``select_subprotocol(offered) -> str | None`` overrides the
    choice among ``subprotocols`` (the server's preference list). ``origins`` lists the allowed ``Origin``
    values (None in it: no Origin header), others get 403. Beyond ``max_connections`` open connections
    upgrades get 503. ``slow_consumer`` ("close", "skip" or "wait") is what :func:`broadcast` does with
    a connection whose buffer holds more than ``slow_consumer_limit`` bytes. Other options as in
    :class:`~wscodec.asyncio.connect`; ``ssl`` is an :class:`ssl.SSLContext` for wss.
    """

    def __init__(
        self,
        handler: Handler,
        host: str | None = "127.0.0.1",
        port: int | None = 8765,
        *,
        ssl: Any = None,
        **options: Any,
    ) -> None:
        self._server = Server(handler, **options)
        self._host = host
        self._port: Any = port
        self._ssl = ssl
        self._unix_path: str | None = None

    async def _start(self) -> Server:
        loop = asyncio.get_running_loop()
        server = self._server
        tls: dict[str, Any] = {"ssl": self._ssl}
        if self._ssl is not None and server.open_timeout is not None:
            # The protocol (and its open_timeout timer) only exists once TLS is up: bound the TLS handshake
            # by the same timeout, or a client that never sends its ClientHello holds a socket for 60 s.
            tls["ssl_handshake_timeout"] = server.open_timeout
        if self._unix_path is not None:
            server._server = await loop.create_unix_server(server._protocol_factory, self._unix_path, **tls)
        else:
            server._server = await loop.create_server(
                server._protocol_factory, self._host, self._port, reuse_address=True, **tls
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


def unix_serve(handler: Handler, path: str, **options: Any) -> serve:
    """:func:`serve` on a Unix socket at ``path``."""
    starter = serve(handler, None, None, **options)
    starter._unix_path = path
    return starter


# --------------------------------------------------------------------------- broadcast


def _frame_for(message: Any) -> tuple[int, Any]:
    if isinstance(message, str):
        return 1, message.encode("utf-8")
    if isinstance(message, (bytes, bytearray, memoryview)):
        return 2, message
    raise TypeError(f"broadcast() takes str or bytes-like, not {type(message).__name__}")


def _write(ws: WebSocket, message: Any, frame: bytes | None, opcode: int, payload: Any, compress: bool) -> bytes | None:
    """Write ``message`` to ``ws``: the shared unmasked frame, or the connection's own framing when it must
    mask (client) or compress. Returns the shared frame (built on first use)."""
    conn = ws._conn
    if conn.is_client or (compress and conn.extensions):
        conn.send_message(message, compress=compress)
        ws._handle([])
        return frame
    if frame is None:
        frame = encode_frame(opcode, payload)
    ws._write_out()  # what ws.send() queued goes first
    assert ws._transport is not None
    ws._transport.write(frame)
    return frame


def _eligible(ws: WebSocket) -> bool:
    if ws._conn.state is not OPEN or ws._lost or ws._transport is None:
        return False
    if ws._fragmenting is not None:
        logger.warning("%r is sending a fragmented message: broadcast skipped for it", ws)
        return False
    return True


def _broadcast(
    connections: Iterable[WebSocket], message: Any, compress: bool, hold_slow: bool
) -> tuple[int, Any, bytes | None, list[WebSocket]]:
    """Write ``message`` to every eligible connection, applying each one's slow-consumer policy; with
    ``hold_slow``, the slow connections of policy "wait" are returned instead of written to."""
    opcode, payload = _frame_for(message)
    frame: bytes | None = None
    slow: list[WebSocket] = []
    for ws in connections:
        if not _eligible(ws):
            continue
        if ws.buffered_amount > ws.slow_consumer_limit:
            if ws.slow_consumer == "close":
                logger.info("%r: slow consumer, closing it", ws)
                ws._fail(1008, "slow consumer")
                continue
            if ws.slow_consumer == "skip":
                continue
            if hold_slow:
                slow.append(ws)
                continue
        frame = _write(ws, message, frame, opcode, payload, compress)
    return opcode, payload, frame, slow


def broadcast(connections: Iterable[WebSocket], message: Any, *, compress: bool = False) -> None:
    """Send ``message`` to every OPEN connection without waiting: the frame is built once and written to
    each transport (``compress=True`` compresses per connection instead, where deflate was negotiated).

    A connection holding more than its ``slow_consumer_limit`` unsent bytes is closed with 1008 (policy
    "close"), skipped for this message ("skip"), or still written to ("wait": use :func:`broadcast_wait`
    to wait for it instead).
    """
    _broadcast(connections, message, compress, hold_slow=False)


async def broadcast_wait(connections: Iterable[WebSocket], message: Any, *, compress: bool = False) -> None:
    """:func:`broadcast`, but a slow connection with policy "wait" is waited for (concurrently with the
    others) until its buffer is back under ``slow_consumer_limit``; returns when every write is done."""
    opcode, payload, frame, slow = _broadcast(connections, message, compress, hold_slow=True)
    if not slow:
        return
    shared = frame if frame is not None else encode_frame(opcode, payload)

    async def wait_and_write(ws: WebSocket) -> None:
        while ws.buffered_amount > ws.slow_consumer_limit and ws._write_paused and not ws._lost:
            await ws._wait_writable()
        if _eligible(ws):
            _write(ws, message, shared, opcode, payload, compress)

    await asyncio.gather(*(wait_and_write(ws) for ws in slow))
