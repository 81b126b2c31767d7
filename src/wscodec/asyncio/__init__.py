"""The asyncio I/O layer: :func:`connect` (client), :func:`serve` (server), :class:`WebSocket` (both sides).

Thin adapters over the sans-I/O :class:`~wscodec.connection.Connection`: they move bytes between an
asyncio transport and the Connection, wake waiters, and run the timers (keepalive, open and close
timeouts). Backpressure both ways: ``send()`` waits while the transport holds more than ``write_limit``
bytes, and reading pauses while ``max_queue`` messages wait unread.
"""

from __future__ import annotations

from .client import connect, create_websocket, process_exception, unix_connect
from .server import Server, ServerWebSocket, basic_auth, broadcast, broadcast_wait, serve, unix_serve
from .websocket import CloseEvent, ErrorEvent, Event, MessageEvent, WebSocket

__all__ = [
    "CloseEvent",
    "ErrorEvent",
    "Event",
    "MessageEvent",
    "Server",
    "ServerWebSocket",
    "WebSocket",
    "basic_auth",
    "broadcast",
    "broadcast_wait",
    "connect",
    "create_websocket",
    "process_exception",
    "serve",
    "unix_connect",
    "unix_serve",
]
