"""ASGI applications served by a real uvicorn in ``tests/interop/test_uvicorn.py`` (and the bench).

``starlette_app`` and ``fastapi_app`` are ordinary applications, written as their users write them; the
WebSocket implementation under them is chosen on uvicorn's command line. What an endpoint saw (the
disconnect code, the scope) is kept in ``RECORDS`` under the ``id`` query parameter and read back over
plain HTTP at ``/record/{id}``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Query
from fastapi import WebSocket as FastAPIWebSocket
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

RECORDS: dict[str, dict[str, Any]] = {}


def _record(websocket: WebSocket, **values: Any) -> None:
    key = websocket.query_params.get("id")
    if key:
        RECORDS.setdefault(key, {}).update(values)


async def _echo_until_disconnect(websocket: WebSocket) -> None:
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                _record(websocket, code=message.get("code"), reason=message.get("reason") or "")
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            else:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect as exc:  # pragma: no cover - receive() above does not raise
        _record(websocket, code=exc.code, reason=exc.reason or "")


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await _echo_until_disconnect(websocket)


async def subprotocol(websocket: WebSocket) -> None:
    offered = websocket.scope["subprotocols"]
    chosen = next((p for p in ("chat.v2", "chat.v1") if p in offered), None)
    await websocket.accept(subprotocol=chosen)
    await websocket.send_text(f"chosen={chosen}")
    await _echo_until_disconnect(websocket)


async def scope(websocket: WebSocket) -> None:
    await websocket.accept(headers=[(b"x-wscodec-test", b"yes")])
    s = websocket.scope
    await websocket.send_json(
        {
            "type": s["type"],
            "asgi": s["asgi"],
            "http_version": s["http_version"],
            "scheme": s["scheme"],
            "server": list(s["server"]),
            "client": list(s["client"]),
            "root_path": s["root_path"],
            "path": s["path"],
            "raw_path": s["raw_path"].decode("latin-1"),
            "query_string": s["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in s["headers"]],
            "subprotocols": s["subprotocols"],
            "extensions": sorted(s.get("extensions", {})),
            "state": dict(s.get("state", {})),
        }
    )
    await websocket.close()


async def deny(websocket: WebSocket) -> None:
    await websocket.send_denial_response(PlainTextResponse("no entry\n", status_code=418, headers={"x-denied": "yes"}))


async def deny_streamed(websocket: WebSocket) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"part one, "
        await asyncio.sleep(0.01)
        yield b"part two"

    await websocket.send_denial_response(StreamingResponse(body(), status_code=401, media_type="text/plain"))


async def close_before_accept(websocket: WebSocket) -> None:
    await websocket.close()


async def raise_before_accept(websocket: WebSocket) -> None:
    raise RuntimeError("boom before accept")


async def raise_after_accept(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.receive_text()
    raise RuntimeError("boom after accept")


async def return_after_accept(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.receive_text()


async def server_close(websocket: WebSocket) -> None:
    """Close with the code and reason the client sends as "code reason"."""
    await websocket.accept()
    code, _, reason = (await websocket.receive_text()).partition(" ")
    await websocket.close(int(code), reason)
    # The client's Close echo arrives as the disconnect; record it.
    message = await websocket.receive()
    _record(websocket, after_close=message["type"])


async def flood(websocket: WebSocket) -> None:
    """Send ``n`` binary messages of 64 KiB as fast as ``send`` allows, counting them in the record."""
    await websocket.accept()
    payload = b"\xab" * 65536
    for i in range(int(websocket.query_params["n"])):
        await websocket.send_bytes(payload)
        _record(websocket, sent=i + 1)
    await websocket.close()


async def record(request: Request) -> JSONResponse:
    return JSONResponse(RECORDS.get(request.path_params["key"], {}))


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
    yield {"greeting": "hello from lifespan"}


starlette_app = Starlette(
    routes=[
        WebSocketRoute("/echo", echo),
        WebSocketRoute("/subprotocol", subprotocol),
        WebSocketRoute("/scope/{rest:path}", scope),
        WebSocketRoute("/deny", deny),
        WebSocketRoute("/deny-streamed", deny_streamed),
        WebSocketRoute("/close-before-accept", close_before_accept),
        WebSocketRoute("/raise-before-accept", raise_before_accept),
        WebSocketRoute("/raise-after-accept", raise_after_accept),
        WebSocketRoute("/return-after-accept", return_after_accept),
        WebSocketRoute("/server-close", server_close),
        WebSocketRoute("/flood", flood),
        Route("/record/{key}", record),
    ],
    lifespan=lifespan,
)


fastapi_app = FastAPI()


@fastapi_app.websocket("/echo")
async def fastapi_echo(websocket: FastAPIWebSocket, prefix: str = Query("")) -> None:
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_text(prefix + text)
    except WebSocketDisconnect as exc:
        _record(websocket, code=exc.code, reason=exc.reason or "")


@fastapi_app.websocket("/items/{item_id}")
async def fastapi_items(websocket: FastAPIWebSocket, item_id: int) -> None:
    await websocket.accept()
    await websocket.send_json({"item_id": item_id})
    await websocket.close(code=4001, reason="done")


@fastapi_app.get("/record/{key}")
async def fastapi_record(key: str) -> dict[str, Any]:
    return RECORDS.get(key, {})
