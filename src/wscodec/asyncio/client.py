"""The asyncio client: :func:`connect` (``ws://`` and ``wss://``), :func:`unix_connect` and
:func:`create_websocket` (``new WebSocket``).

Getting a stream to the server (proxies, Unix sockets, a socket you made, redirects, credentials) is
:mod:`wscodec.client_network`'s job; this module runs the WebSocket handshake on that stream.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl as ssl_module
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal

from .. import _options as checks
from .. import client_network as net
from .._logging import LoggerLike
from ..compression import Compression, extension_factories
from ..connection import Connection
from ..errors import InvalidMessage, InvalidStatus, InvalidURI, OpenTimeout, ProxyError
from ..transports import TransportChoice, resolve_transport
from .busy_poll import BusyPoller, check_busy_poll
from .websocket import WebSocket

__all__ = ["connect", "create_websocket", "process_exception", "unix_connect"]

logger = logging.getLogger(__name__)

HeadersLike = Mapping[str, str] | Sequence[tuple[str, str]]


def process_exception(exc: Exception) -> Exception | None:
    """The default reconnection policy of ``async for ws in connect(url)``: None to retry, or the
    exception to raise.

    Retried: network errors (refused, reset, unreachable, timeouts), a connection dropped during the
    handshake, and answers that may change (HTTP 5xx, 408, 429). Fatal: an invalid URL or proxy, a proxy
    that refuses, a redirect error, another 4xx, any other handshake error.
    """
    if isinstance(exc, (ProxyError, InvalidURI, ValueError, TypeError)):
        return exc
    if isinstance(exc, (OSError, TimeoutError, asyncio.TimeoutError, EOFError)):
        return None
    if isinstance(exc, InvalidStatus):
        return (
            None
            if exc.status_code >= 500 or (not net.is_fatal_status(exc.status_code) and exc.status_code >= 400)
            else exc
        )
    if isinstance(exc, InvalidMessage) and isinstance(exc.__cause__, EOFError):  # dropped during the handshake
        return None
    return exc


class connect:
    """Open a client connection: ``ws = await connect(url)``, ``async with connect(url) as ws:``, or
    ``async for ws in connect(url):`` to reconnect automatically.

    Identity and credentials: ``ws://user:password@host/`` sends ``Authorization: Basic`` (percent-encoded
    UTF-8; a user without a password, or with a colon, is an :class:`~wscodec.errors.InvalidURI`);
    ``user_agent_header`` (None omits it) and ``additional_headers`` (``extra_headers`` is an alias) go with
    the request; ``origin`` sets ``Origin``. Networking: ``proxy`` is a proxy URL (``http://``,
    ``https://``, ``socks5://``, ``socks5h://``, ``socks4://``, ``socks4a://``), True (the default: from the
    environment, as :mod:`urllib.request` reads it) or None (direct); ``proxy_ssl`` is the TLS context for
    an ``https://`` proxy; ``sock`` an already connected socket; 301/302/303/307/308 answers are followed up
    to ``max_redirects`` times (the final URL is ``ws.url``). ``ssl``: an :class:`ssl.SSLContext` for
    ``wss://`` (default: certificates verified); ``server_hostname`` overrides the name TLS checks.
    ``transport`` picks the asyncio transports under the connection: ``"loop"`` (the event loop's own, the
    default), ``"aiofastnet"`` (faster per read and write; ``pip install 'wscodec[aiofastnet]'``, an
    ImportError here without it) or ``"auto"`` (aiofastnet when installed); see :mod:`wscodec.transports`.
    ``busy_poll`` (seconds, at most 1.0; None, the default: off) keeps the event loop polling instead of
    sleeping for that long after each read, for lower latency at the cost of a busy core (see
    :mod:`wscodec.asyncio.busy_poll`).

    Protocol: ``compression`` is ``"deflate"`` (tuned defaults), a :class:`~wscodec.compression.Deflate`
    or None; ``extensions`` (extension factories) replaces it. ``max_size`` bounds a received message
    (None: no limit); ``max_header_size`` bounds the server's response head (8 KiB, 100 fields: a larger
    one fails the handshake); ``max_queue`` messages wait unread before reading pauses; ``send()`` waits while more
    than ``write_limit`` bytes wait in the transport. ``ping_interval`` (None: no keepalive) and
    ``ping_timeout`` drive the keepalive; ``open_timeout`` bounds everything up to the open connection
    (raises :class:`~wscodec.errors.OpenTimeout`, a :class:`TimeoutError`); ``close_timeout`` bounds the
    closing handshake. A refused upgrade raises :class:`~wscodec.errors.InvalidStatus`, another invalid
    handshake :class:`~wscodec.errors.InvalidHandshake`, a bad URL :class:`~wscodec.errors.InvalidURI`.

    Reconnection (``async for``), as websockets does it: whenever a connection ends, whatever its close code
    and whichever side closed it (the next turn of the loop closes the previous connection), a new one is
    opened at once, until the loop body breaks out. Failed attempts are retried after a delay growing from
    ``backoff_initial_delay`` by ``backoff_factor`` up to ``backoff_max_delay`` (each randomised), while
    ``process_exception(exc)`` returns None; when it returns an exception, iteration stops with it.
    ``reconnect_delays`` (websockets' name) replaces that backoff: a function returning an iterator of
    delays in seconds, called anew after each successful connection; when its iterator ends, iteration
    stops with the last error.
    """

    def __init__(
        self,
        uri: str,
        *,
        origin: str | None = None,
        extensions: Sequence[Any] | None = None,
        subprotocols: Sequence[str] | None = None,
        compression: Compression = "deflate",
        additional_headers: HeadersLike | None = None,
        extra_headers: HeadersLike | None = None,
        user_agent_header: str | None = net.DEFAULT_USER_AGENT,
        proxy: str | Literal[True] | None = True,
        proxy_ssl: ssl_module.SSLContext | None = None,
        ssl: ssl_module.SSLContext | bool | None = None,
        server_hostname: str | None = None,
        sock: socket.socket | None = None,
        max_redirects: int = 10,
        open_timeout: float | None = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 10.0,
        max_size: checks.Bound = 2**20,
        max_header_size: int = 8192,
        max_queue: checks.Bound = 16,
        write_limit: checks.WriteLimit = 65536,
        binary_type: Literal["bytes", "bytearray", "memoryview"] = "bytes",
        process_exception: Callable[[Exception], Exception | None] = process_exception,
        backoff_initial_delay: float = 3.1,
        backoff_factor: float = 1.618,
        backoff_max_delay: float = 90.0,
        reconnect_delays: Callable[[], Iterator[float]] | None = None,
        logger: LoggerLike = None,
        transport: TransportChoice = "loop",
        busy_poll: float | None = None,
    ) -> None:
        if additional_headers is not None and extra_headers is not None:
            raise TypeError("pass additional_headers or its alias extra_headers, not both")
        if max_redirects < 0:
            raise ValueError("max_redirects must be >= 0")
        close_timeout, max_size, max_queue = checks.limits(close_timeout, max_size, max_queue)
        checks.write_limits(write_limit)  # refused here, not at the first connection
        self.url = uri  # as given, credentials included: messages and logs show self._uri.url
        self._uri = net.parse_uri(uri)
        if not self._uri.secure and ssl not in (None, False):
            raise ValueError("ssl= is for wss:// URLs")
        self._ssl_option = ssl
        self.server_hostname = server_hostname
        self.proxy = proxy
        self.proxy_ssl = proxy_ssl
        self.sock = sock
        self.unix_path: str | None = None
        self.max_redirects = max_redirects
        self.transport = resolve_transport(transport)
        self.user_agent_header = user_agent_header
        self._headers = net.header_list(additional_headers if additional_headers is not None else extra_headers)
        self._options: dict[str, Any] = {
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "close_timeout": close_timeout,
            "max_queue": max_queue,
            "write_limit": write_limit,
            "binary_type": binary_type,
        }
        if logger is not None:
            self._options["logger"] = logger
        #: Seconds the event loop keeps polling after each read (None: off).
        self.busy_poll = check_busy_poll(busy_poll)
        self._connection: dict[str, Any] = {
            "origin": origin,
            "subprotocols": checks.subprotocols(subprotocols),
            "extensions": extension_factories(compression, "client", extensions),
            "max_message_size": max_size,
            "max_header_size": max_header_size,
        }
        self.open_timeout = open_timeout
        self.process_exception = process_exception
        self.backoff = net.Backoff(backoff_initial_delay, backoff_factor, backoff_max_delay)
        #: Makes the delays of one run of failed attempts (websockets' ``reconnect_delays``).
        self.reconnect_delays: Callable[[], Iterator[float]] = (
            reconnect_delays if reconnect_delays is not None else self.backoff.delays
        )
        self._ws: WebSocket | None = None  # the connection last opened: what ``async with`` closes
        self._next: WebSocket | None = None  # made by websocket() for the next open() (create_websocket)

    def _ssl_for(self, uri: net.WebSocketURI) -> ssl_module.SSLContext | None:
        if not uri.secure:
            return None
        ssl = self._ssl_option
        return ssl if isinstance(ssl, ssl_module.SSLContext) else ssl_module.create_default_context()

    def _websocket_for(self, uri: net.WebSocketURI, headers: list[tuple[str, str]] | None = None) -> WebSocket:
        conn = Connection(
            "client",
            stream_messages=True,
            host=uri.host_header,
            path=uri.path,
            extra_headers=net.client_headers(
                uri, self._headers if headers is None else headers, self.user_agent_header
            ),
            **self._connection,
        )
        poller = None if self.busy_poll is None else BusyPoller(asyncio.get_running_loop(), self.busy_poll)
        return WebSocket(conn, url=uri.url, busy_poller=poller, **self._options)

    def websocket(self) -> WebSocket:
        """The WebSocket the next :meth:`open` connects, CONNECTING until then (needs a running loop)."""
        if self._next is None:
            self._next = self._websocket_for(self._uri)
        return self._next

    async def _establish(self, ws: WebSocket, uri: net.WebSocketURI) -> None:
        proxy = None
        if self.sock is None and self.unix_path is None:
            proxy = net.select_proxy(uri, self.proxy)
        await net.open_asyncio_stream(
            ws,
            uri,
            proxy=proxy,
            ssl=self._ssl_for(uri),
            server_hostname=self.server_hostname,
            proxy_ssl=self.proxy_ssl,
            sock=self.sock,
            unix_path=self.unix_path,
            user_agent=self.user_agent_header,
            transport=self.transport,
        )
        await asyncio.shield(ws._open_waiter)

    async def _open_following_redirects(self, ws: WebSocket) -> WebSocket:
        uri = self._uri
        headers = self._headers
        redirects = net.RedirectPolicy(uri.url, self.max_redirects)
        while True:
            try:
                await self._establish(ws, uri)
                return ws
            except InvalidStatus as exc:
                ws._abandon()
                location = redirects.next_url(uri, exc)
                if location is None or self.sock is not None:
                    raise
            except BaseException:
                ws._abandon()
                raise
            new, headers = redirects.follow(uri, location, headers, unix_socket=self.unix_path is not None)
            logger.debug("redirected from %s to %s", uri.url, new.url)
            uri = new
            ws = self._websocket_for(uri, headers)

    async def open(self) -> WebSocket:
        """Connect and run the opening handshake; the open WebSocket.

        Each call opens a connection of its own, as each ``await connect(...)`` does in websockets: only the
        WebSocket :meth:`websocket` made beforehand is taken over, once.
        """
        first, self._next = self.websocket(), None
        try:
            ws = await asyncio.wait_for(self._open_following_redirects(first), self.open_timeout)
        except asyncio.TimeoutError:
            first._abandon()  # (timed out before its first step; the redirect loop abandons the one it was at)
            raise OpenTimeout(f"opening handshake with {self._uri.url} timed out after {self.open_timeout} s") from None
        ws.logger.debug("connected to %s (protocol %r, extensions %r)", ws.url, ws.protocol, ws.extensions)
        self._ws = ws
        return ws

    def __await__(self) -> Generator[Any, None, WebSocket]:
        return self.open().__await__()

    async def __aenter__(self) -> WebSocket:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close: with 1000, or 1011 when the block ended on an exception, as websockets does."""
        if self._ws is not None:
            if exc_type is None:
                await self._ws.close()
            else:
                await self._ws.close(1011)

    async def __aiter__(self) -> AsyncIterator[WebSocket]:
        """Connect, yield the connection, and connect again when it ends (see the class docstring)."""
        delays = None
        while True:
            try:
                ws = await self.open()
            except Exception as exc:
                decision = self.process_exception(exc)
                if decision is exc:
                    raise
                if decision is not None:
                    raise decision from exc
                if delays is None:
                    delays = iter(self.reconnect_delays())
                delay = next(delays, None)
                if delay is None:  # the caller's delays ran out: give up with the last error
                    raise
                logger.info("connection to %s failed (%s); retrying in %.1f s", self._uri.url, exc, delay)
                await asyncio.sleep(delay)
                continue
            delays = None
            try:
                yield ws
            finally:
                await ws.close()
            logger.info("connection to %s ended (%s %s); reconnecting", ws.url, ws.close_code, ws.close_reason)


def unix_connect(path: str, uri: str | None = None, **options: Any) -> connect:
    """:func:`connect` over the Unix socket at ``path``; ``uri`` (default ``ws://localhost/``) gives the
    Host header and path of the request."""
    opener = connect(uri if uri is not None else "ws://localhost/", proxy=None, **options)
    opener.unix_path = path
    return opener


def create_websocket(url: str, subprotocols: str | Sequence[str] = (), **options: Any) -> WebSocket:
    """The twin of JavaScript's ``new WebSocket(url, protocols)``: returns at once, CONNECTING.

    As in the browser, one string is one subprotocol, and one listed twice is an error (ValueError).
    Set ``onopen``/``onmessage``/``onerror``/``onclose`` (or ``add_event_listener``) right after; the
    connection opens in the background. A failed handshake fires ``error`` then ``close`` (code 1006).
    ``options`` are those of :class:`connect`; as in browsers, redirects are not followed. Needs a running
    event loop.
    """
    if options.setdefault("max_redirects", 0) != 0:
        raise ValueError("create_websocket() follows no redirect, as a browser's WebSocket: max_redirects is 0")
    protocols = [subprotocols] if isinstance(subprotocols, str) else list(checks.subprotocols(subprotocols))
    if len(set(protocols)) != len(protocols):
        raise ValueError(f"a subprotocol is listed twice in {protocols!r}")
    opener = connect(url, subprotocols=protocols, **options)
    ws = opener.websocket()

    async def run() -> None:
        error: BaseException
        try:
            await opener.open()
            return
        except asyncio.CancelledError:
            if not ws.connection.closed:  # not close() (WebSocket._start_close): the loop is going away
                raise
            error = ConnectionAbortedError(_ABANDONED)
        except Exception as exc:
            logger.info("could not connect to %s: %s", ws.url, exc)
            error = exc
        finally:
            ws._opening = None
        await ws.wait_closed()
        if ws._opened_at is None:
            ws._handshake_failed(error)
        # else open_timeout ran out as the handshake completed: the open event fired, and the connection's
        # end (1006) fired close; no error after open, no second close, as in browsers

    def settled(task: asyncio.Task[None]) -> None:
        ws._callback_done(task)  # (counted among the listeners' tasks meanwhile: may resume the listeners)
        if task.cancelled() and ws._opening is task and ws.connection.closed:
            # close() in the same step as this call: the task was cancelled before its first step, so run()
            # never ran to report it. The browser's order all the same: error, then close (1006).
            ws._opening = None
            ws._handshake_failed(ConnectionAbortedError(_ABANDONED))

    task = asyncio.get_running_loop().create_task(run())
    ws._opening = task
    ws._callback_tasks.add(task)
    task.add_done_callback(settled)
    return ws


_ABANDONED = "close() was called before the connection opened"
