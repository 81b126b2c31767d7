"""The asyncio client: :func:`connect` (``ws://`` and ``wss://``) and :func:`create_websocket` (``new WebSocket``)."""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
import urllib.parse
from collections.abc import Generator, Mapping, Sequence
from types import TracebackType
from typing import Any

from ..connection import Connection
from .websocket import WebSocket

__all__ = ["connect", "create_websocket"]

logger = logging.getLogger(__name__)


def _extensions(compression: str | None) -> Sequence[Any] | None:
    if compression == "deflate":
        return None  # the Connection's default: permessage-deflate
    if compression is None:
        return ()
    raise ValueError(f"unsupported compression {compression!r}: use 'deflate' or None")


def _header_list(headers: Any) -> list[tuple[str, str]]:
    if isinstance(headers, Mapping):
        return [(str(k), str(v)) for k, v in headers.items()]
    return [(str(k), str(v)) for k, v in headers]


class _Target:
    def __init__(self, url: str, ssl: Any) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("ws", "wss"):
            raise ValueError(f"{url!r} is not a ws:// or wss:// URL")
        if parts.hostname is None:
            raise ValueError(f"{url!r} has no host")
        secure = parts.scheme == "wss"
        if not secure and ssl not in (None, False):
            raise ValueError("ssl= is for wss:// URLs")
        self.host = parts.hostname
        self.port = parts.port or (443 if secure else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if self.port == (443 if secure else 80) else f"{host}:{self.port}"
        self.ssl: ssl_module.SSLContext | None = None
        if secure:
            self.ssl = ssl if isinstance(ssl, ssl_module.SSLContext) else ssl_module.create_default_context()


class connect:
    """Open a client connection: ``ws = await connect(url)`` or ``async with connect(url) as ws:``.

    ``compression="deflate"`` offers permessage-deflate (None: no extension). ``max_size`` bounds a received
    message (None: no limit); ``max_queue`` received messages wait unread before reading pauses;
    ``send()`` waits while more than ``write_limit`` bytes wait in the transport. ``ping_interval`` (None:
    no keepalive) and ``ping_timeout`` drive the keepalive; ``open_timeout`` bounds TCP + TLS + handshake
    (raises :class:`TimeoutError`); ``close_timeout`` bounds the closing handshake. A refused upgrade raises
    :class:`~wscodec.errors.InvalidStatus` (status, headers, body), another invalid handshake
    :class:`~wscodec.errors.InvalidHandshake`. ``ssl``: an :class:`ssl.SSLContext` for ``wss://``
    (default: :func:`ssl.create_default_context`, certificates verified).
    """

    def __init__(
        self,
        url: str,
        *,
        subprotocols: Sequence[str] = (),
        extra_headers: Sequence[tuple[str, str]] | Mapping[str, str] = (),
        origin: str | None = None,
        ssl: ssl_module.SSLContext | bool | None = None,
        compression: str | None = "deflate",
        open_timeout: float | None = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 10.0,
        max_size: int | None = 2**20,
        max_queue: int | None = 16,
        write_limit: int = 65536,
        binary_type: str = "bytes",
    ) -> None:
        self.url = url
        self._target = _Target(url, ssl)
        self._options: dict[str, Any] = {
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "close_timeout": close_timeout,
            "max_queue": max_queue,
            "write_limit": write_limit,
            "binary_type": binary_type,
        }
        self._connection: dict[str, Any] = {
            "host": self._target.host_header,
            "path": self._target.path,
            "origin": origin,
            "extra_headers": _header_list(extra_headers),
            "subprotocols": tuple(subprotocols or ()),
            "extensions": _extensions(compression),
            "max_message_size": max_size,
        }
        self.open_timeout = open_timeout
        self._ws: WebSocket | None = None

    def websocket(self) -> WebSocket:
        """The WebSocket object, CONNECTING until :meth:`open` completes (needs a running loop)."""
        if self._ws is None:
            conn = Connection("client", stream_messages=True, **self._connection)
            self._ws = WebSocket(conn, url=self.url, **self._options)
        return self._ws

    async def _establish(self, ws: WebSocket) -> None:
        target = self._target
        loop = asyncio.get_running_loop()
        await loop.create_connection(
            lambda: ws,
            target.host,
            target.port,
            ssl=target.ssl,
            server_hostname=target.host if target.ssl is not None else None,
        )
        await asyncio.shield(ws._open_waiter)

    async def open(self) -> WebSocket:
        """Connect and run the opening handshake; the open WebSocket."""
        ws = self.websocket()
        try:
            await asyncio.wait_for(self._establish(ws), self.open_timeout)
        except asyncio.TimeoutError:
            ws._abort_now()
            raise TimeoutError(f"opening handshake with {self.url} timed out after {self.open_timeout} s") from None
        except BaseException:
            ws._abort_now()
            raise
        ws.logger.debug("connected to %s", self.url)
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
        if self._ws is not None:
            await self._ws.close()


def create_websocket(url: str, subprotocols: Sequence[str] = (), **options: Any) -> WebSocket:
    """The twin of JavaScript's ``new WebSocket(url, protocols)``: returns at once, CONNECTING.

    Set ``onopen``/``onmessage``/``onerror``/``onclose`` (or ``add_event_listener``) right after; the
    connection opens in the background. A failed handshake fires ``error`` then ``close`` (code 1006).
    ``options`` are those of :class:`connect`. Needs a running event loop.
    """
    opener = connect(url, subprotocols=subprotocols, **options)
    ws = opener.websocket()

    async def run() -> None:
        try:
            await opener.open()
        except Exception as exc:
            logger.info("could not connect to %s: %s", url, exc)
            await ws.wait_closed()
            ws._handshake_failed(exc)

    task = asyncio.get_running_loop().create_task(run())
    ws._callback_tasks.add(task)
    task.add_done_callback(ws._callback_tasks.discard)
    return ws
