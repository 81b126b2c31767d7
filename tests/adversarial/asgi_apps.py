"""A bare ASGI application (no framework: uvicorn starts it fast) for the adversarial suite under uvicorn.

    python -m uvicorn asgi_apps:app --app-dir tests/adversarial --ws wscodec.asgi:UvicornWebSocketProtocol

Routes by path, as ``ws_server.py``: ``/echo`` (and anything else) echoes, ``/stream`` sends 64 KiB binary
messages forever, ``/close`` closes after the first message and waits for the disconnect; ``GET /debug``
answers with JSON ``tasks`` and ``fds``. :class:`ShortCloseProtocol` is wscodec's protocol with a
``close_timeout`` of one second (uvicorn has no option for it), for the peer that never answers our Close.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

from wscodec.asgi import UvicornWebSocketProtocol

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

STREAM_CHUNK = b"\x5a" * 65536


class ShortCloseProtocol(UvicornWebSocketProtocol):
    """wscodec's uvicorn protocol, waiting at most one second for the peer's Close."""

    close_timeout = 1.0


async def _http(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["path"] == "/debug":
        snapshot = {
            "tasks": len(asyncio.all_tasks()),
            "fds": len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else -1,
        }
        status, body = 200, json.dumps(snapshot).encode()
    else:
        status, body = 404, b"not found\n"
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _websocket(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    message = await receive()
    assert message["type"] == "websocket.connect", message
    await send({"type": "websocket.accept"})
    path = scope["path"]
    if path == "/stream":
        while True:
            await send({"type": "websocket.send", "bytes": STREAM_CHUNK})
    if path == "/close":
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.close", "code": 1000, "reason": "bye"})
        await receive()  # the disconnect, once the peer answered or close_timeout passed
        return
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await _http(scope, receive, send)
    elif scope["type"] == "websocket":
        await _websocket(scope, receive, send)
    elif scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
