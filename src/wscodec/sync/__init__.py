"""The threaded I/O layer, for programs without asyncio: :func:`client.connect`, :func:`server.serve`.

It mirrors :mod:`wscodec.asyncio` over the same sans-I/O :class:`~wscodec.connection.Connection`: the same
option names where they apply (not an event loop's: ``write_limit``, ``transport``, ``busy_poll``,
``broker``, the slow-consumer policy, reconnection), limits, hooks and errors, with blocking calls
(``ws.recv(timeout=...)``, ``ws.send(...)``) and one reader thread per connection.
"""

from __future__ import annotations

from .client import connect, unix_connect
from .server import PendingConnection, Server, basic_auth, serve, unix_serve
from .websocket import WebSocket

__all__ = ["PendingConnection", "Server", "WebSocket", "basic_auth", "connect", "serve", "unix_connect", "unix_serve"]
