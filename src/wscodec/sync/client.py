"""The threaded client: :func:`connect` and :func:`unix_connect`, with the asyncio client's option names.

The stream comes from :mod:`wscodec.client_network` (proxies, redirects, credentials), the protocol from
:class:`~wscodec.connection.Connection`; this module only runs the handshake over a blocking socket.
"""

from __future__ import annotations

import logging
import socket
import ssl as ssl_module
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from .. import _options as checks
from .. import client_network as net
from .._logging import LoggerLike
from ..compression import INFLATING_READ, Compression, extension_factories
from ..connection import Connection
from ..errors import InvalidStatus, OpenTimeout, _closed_during_handshake
from ..events import ProtocolViolation, Response
from .websocket import WebSocket

__all__ = ["connect", "unix_connect"]

logger = logging.getLogger(__name__)

HeadersLike = Mapping[str, str] | Sequence[tuple[str, str]]


def connect(
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
    unix_path: str | None = None,
    max_redirects: int = 10,
    open_timeout: float | None = 10.0,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    close_timeout: float = 10.0,
    max_size: checks.Bound = 2**20,
    max_header_size: int = 8192,
    max_queue: checks.Bound = 16,
    logger: LoggerLike = None,
) -> WebSocket:
    """Open a client connection and return it once open: ``with connect(url) as ws: ws.send("hi")``.

    The options mean what they mean for :func:`wscodec.asyncio.connect`. Errors too:
    :class:`~wscodec.errors.InvalidURI`, :class:`~wscodec.errors.InvalidStatus`,
    :class:`~wscodec.errors.InvalidHandshake`, :class:`~wscodec.errors.ProxyError`,
    :class:`~wscodec.errors.OpenTimeout` (a :class:`TimeoutError`) when everything up to the open
    connection takes longer than ``open_timeout``. ``wss://`` through an ``https://`` proxy (TLS inside
    TLS) needs the asyncio client.
    """
    if additional_headers is not None and extra_headers is not None:
        raise TypeError("pass additional_headers or its alias extra_headers, not both")
    close_timeout, max_size, max_queue = checks.limits(close_timeout, max_size, max_queue)
    uri_parsed = net.parse_uri(uri)
    if not uri_parsed.secure and ssl not in (None, False):
        raise ValueError("ssl= is for wss:// URLs")
    headers = net.header_list(additional_headers if additional_headers is not None else extra_headers)
    factories = extension_factories(compression, "client", extensions)
    deadline = None if open_timeout is None else time.monotonic() + open_timeout
    redirects = net.RedirectPolicy(uri_parsed.url, max_redirects)
    current = uri_parsed
    while True:
        try:
            return _connect_once(
                current,
                deadline,
                open_timeout,
                ssl=ssl,
                server_hostname=server_hostname,
                sock=sock,
                unix_path=unix_path,
                proxy=proxy,
                proxy_ssl=proxy_ssl,
                headers=headers,
                user_agent=user_agent_header,
                factories=factories,
                connection={
                    "origin": origin,
                    "subprotocols": checks.subprotocols(subprotocols),
                    "max_message_size": max_size,
                    "max_header_size": max_header_size,
                },
                options={
                    "ping_interval": ping_interval,
                    "ping_timeout": ping_timeout,
                    "close_timeout": close_timeout,
                    "max_queue": max_queue,
                    "logger": logger,
                },
            )
        except InvalidStatus as exc:
            location = redirects.next_url(current, exc)
            if location is None or sock is not None:
                raise
            current, headers = redirects.follow(current, location, headers, unix_socket=unix_path is not None)


def _connect_once(
    uri: net.WebSocketURI,
    deadline: float | None,
    open_timeout: float | None,
    *,
    ssl: ssl_module.SSLContext | bool | None,
    server_hostname: str | None,
    sock: socket.socket | None,
    unix_path: str | None,
    proxy: str | Literal[True] | None,
    proxy_ssl: ssl_module.SSLContext | None,
    headers: list[tuple[str, str]],
    user_agent: str | None,
    factories: Sequence[Any],
    connection: dict[str, Any],
    options: dict[str, Any],
) -> WebSocket:
    context = None
    if uri.secure:
        context = ssl if isinstance(ssl, ssl_module.SSLContext) else ssl_module.create_default_context()
    proxy_url = net.select_proxy(uri, proxy) if sock is None and unix_path is None else None
    # The request first: a header it refuses (a CR or LF in a value) fails here, before a proxy is sent a
    # CONNECT carrying it or a socket is opened that nothing would close.
    conn = Connection(
        "client",
        host=uri.host_header,
        path=uri.path,
        extra_headers=net.client_headers(uri, headers, user_agent),
        extensions=factories,
        **connection,
    )
    try:
        raw, leftover = net.open_socket(
            uri,
            proxy=proxy_url,
            ssl=context,
            server_hostname=server_hostname,
            sock=sock,
            unix_path=unix_path,
            timeout=net.time_left(deadline),
            user_agent=user_agent,
            proxy_ssl=proxy_ssl,
        )
    except TimeoutError:
        raise OpenTimeout(f"opening handshake with {uri.url} timed out after {open_timeout} s") from None
    try:
        raw.sendall(conn.data_to_send())
        data = leftover
        while True:
            events = conn.receive_data(data) if data else []
            for index, event in enumerate(events):
                if type(event) is ProtocolViolation:
                    raise event.error  # InvalidStatus for a refusal, InvalidHandshake otherwise
                if type(event) is Response and event.status_code == 101:  # (a refusal's violation follows it)
                    # Frames the server sent right behind its 101 are the WebSocket's: their messages come
                    # first, a Ping or Close among them is answered, a bad frame fails the connection
                    # with its close code after the messages before it.
                    return WebSocket(raw, conn, url=uri.url, events=events[index + 1 :], **options)
            if data == b"" and events:
                raise _closed_during_handshake("connection closed during the opening handshake")
            raw.settimeout(net.time_left(deadline))
            data = raw.recv(INFLATING_READ)  # frames may follow the 101: see INFLATING_READ
            if not data:
                events = conn.receive_data(b"")
                for event in events:
                    if type(event) is ProtocolViolation:
                        raise event.error
                raise _closed_during_handshake("connection closed during the opening handshake")
    except TimeoutError:
        raw.close()
        raise OpenTimeout(f"opening handshake with {uri.url} timed out after {open_timeout} s") from None
    except OSError as exc:  # a reset (or a TLS error) once connected: as the asyncio client reports it
        raw.close()
        error = _closed_during_handshake(f"connection closed during the opening handshake ({exc})", exc)
        raise error from error.__cause__  # (an EOFError, itself from exc)
    except BaseException:
        raw.close()
        raise


def unix_connect(path: str, uri: str | None = None, **options: Any) -> WebSocket:
    """:func:`connect` over the Unix socket at ``path``; ``uri`` (default ``ws://localhost/``) gives the
    Host header and path of the request."""
    return connect(uri if uri is not None else "ws://localhost/", unix_path=path, proxy=None, **options)
