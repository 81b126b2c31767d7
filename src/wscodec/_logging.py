"""The log lines about a connection, shared by the asyncio and the threaded API so that both write the same
lines to the same loggers (``logger=``, by default ``wscodec.server`` or ``wscodec.client``): every line
starts with the connection's identity; INFO says when it opened and closed; never a payload at INFO."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .connection import Connection

    LoggerLike = logging.Logger | logging.LoggerAdapter[Any] | str | None
else:  # LoggerAdapter is subscriptable at run time only from Python 3.11 (get_type_hints and the docs read this)
    LoggerLike = logging.Logger | logging.LoggerAdapter | str | None


def base_logger(logger: LoggerLike, role: str) -> logging.Logger | logging.LoggerAdapter[Any]:
    """The logger a ``logger=`` argument names: a Logger or adapter as given, a name looked up, None the
    role's default (``wscodec.server`` or ``wscodec.client``)."""
    if logger is None:
        logger = f"wscodec.{role}"
    return logging.getLogger(logger) if isinstance(logger, str) else logger


def format_peer(address: Any) -> str:
    """``host:port`` (``[host]:port`` for IPv6) of a socket address; a Unix socket's path; ``-`` if unknown."""
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address) if address else "-"


def peer_of(sock: Any) -> str:
    """``format_peer`` of a socket's peer; ``-`` when it has left already (``getpeername`` fails)."""
    try:
        return format_peer(sock.getpeername())
    except OSError:
        return "-"


class _KeepingAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A LoggerAdapter over a ``logger=`` that may be an adapter itself: that one's ``process()`` replaces a
    record's ``extra`` with its own (before Python 3.13's ``merge_extra``), which would drop the attributes
    the docs promise. Each adapter below runs its ``process()`` here, and the ``extra`` of every one of
    them reaches the record with ours."""

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        options: Any
        msg, options = self.process(msg, kwargs)
        kept = options.get("extra") or {}
        base: Any = self.logger
        while isinstance(base, logging.LoggerAdapter):
            msg, options = base.process(msg, options)
            kept = options["extra"] = {**(options.get("extra") or {}), **kept}
            base = base.logger
        # This frame is not the logging module's, which findCaller skips: one more level, so that a record
        # names the line that logged (as the stdlib adapter's would), not this one.
        options["stacklevel"] = options.get("stacklevel", 1) + 1
        base.log(level, msg, *args, **options)


class PeerLogger(_KeepingAdapter):
    """Prefixes every line with ``[remote-address]`` and adds ``remote_address`` to the record's ``extra``:
    for what the threaded server logs about a handshake, before the connection (and its id) exists."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter[Any], peer: str) -> None:
        super().__init__(logger, {})
        self.peer = peer

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs.setdefault("extra", {}).setdefault("remote_address", self.peer)
        return f"[{self.peer}] {msg}", kwargs


class ConnectionLogger(_KeepingAdapter):
    """Prefixes every line with the connection's identity, ``[remote-address short-id]``, and adds
    ``websocket``, ``remote_address`` and ``connection_id`` to the record's ``extra`` for structured handlers.

    ``ws`` is the asyncio or threaded WebSocket: its ``id`` and ``_peer`` (the remote address, formatted
    by ``format_peer``) are read at each line, since the asyncio one learns its peer after it is made.
    ``logger.info`` and friends check the level first, so a disabled level costs no formatting.
    """

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter[Any], ws: Any) -> None:
        super().__init__(logger, {})
        self.ws = ws

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        ws = self.ws
        extra = kwargs.setdefault("extra", {})
        extra.setdefault("websocket", ws)
        extra.setdefault("remote_address", ws._peer)
        extra.setdefault("connection_id", ws.id.hex[:8])
        return f"[{ws._peer} {ws.id.hex[:8]}] {msg}", kwargs


def _path(conn: Connection, url: str) -> str:
    """What the lines name the connection by: the request's path, else the URL."""
    request = conn.request
    return request.path if request is not None else url


def log_opened(logger: ConnectionLogger, conn: Connection, url: str) -> None:
    """The INFO line for a connection that opened: path, subprotocol, extensions (as the server sent them)."""
    if logger.isEnabledFor(logging.INFO):
        response = conn.response
        extensions = response.header("Sec-WebSocket-Extensions") if response is not None else None
        logger.info(
            "opened %s (subprotocol: %s, extensions: %s)",
            _path(conn, url),
            conn.subprotocol or "-",
            extensions or "-",
            extra={"event": "opened"},
        )


def log_closed(logger: ConnectionLogger, conn: Connection, url: str, code: int, reason: str, opened_at: float) -> None:
    """The INFO line for the end of an opened connection: code, reason, duration, traffic each way (the
    Connection's counters)."""
    if logger.isEnabledFor(logging.INFO):
        logger.info(
            "closed %s %d%s in %.3f s; received %d messages (%d bytes), sent %d messages (%d bytes)",
            _path(conn, url),
            code,
            f" {reason!r}" if reason else "",
            time.monotonic() - opened_at,
            conn.messages_received,
            conn.payload_bytes_received,
            conn.messages_sent,
            conn.payload_bytes_sent,
            extra={"event": "closed"},
        )
