"""Logging of ``wscodec.asyncio``: every line about a connection carries its identity; INFO says when it
opened (path, subprotocol, extensions) and closed (code, reason, duration, traffic), DEBUG shows frames,
and no payload is ever logged at INFO."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

import pytest

from wscodec import Connection
from wscodec.asyncio import WebSocket, connect, serve

SECRET = "payload-that-must-not-be-logged-at-info"
IDENTITY = re.compile(r"^\[127\.0\.0\.1:\d+ [0-9a-f]{8}\] ")


async def until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def _exchange(caplog: pytest.LogCaptureFixture, level: int) -> tuple[WebSocket, list[WebSocket]]:
    seen: list[WebSocket] = []

    async def echo(ws: WebSocket) -> None:
        seen.append(ws)
        async for message in ws:
            await ws.send(message)

    caplog.set_level(level, logger="wscodec")
    async with serve(echo, "127.0.0.1", 0, subprotocols=["chat"]) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/room?x=1", subprotocols=["chat"]) as ws:
            await ws.send(SECRET)
            assert await ws.recv() == SECRET
            await ws.send(b"\x00" * 10)
            assert await ws.recv() == b"\x00" * 10
            await ws.close(4000, "done here")
        await until(lambda: bool(seen) and seen[0].ready_state == WebSocket.CLOSED)
        await until(lambda: any("closed" in r.getMessage() for r in caplog.records if r.name == "wscodec.server"))
    return ws, seen


async def test_info_lines_open_and_close_with_identity(caplog: pytest.LogCaptureFixture) -> None:
    client, (server_ws,) = await _exchange(caplog, logging.INFO)
    server_lines = [r for r in caplog.records if r.name == "wscodec.server"]
    client_lines = [r for r in caplog.records if r.name == "wscodec.client"]
    assert [getattr(r, "event", None) for r in server_lines] == ["opened", "closed"], [
        r.getMessage() for r in server_lines
    ]
    assert [getattr(r, "event", None) for r in client_lines] == ["opened", "closed"]

    opened, closed = (r.getMessage() for r in server_lines)
    short = server_ws.id.hex[:8]
    assert opened.startswith(f"[127.0.0.1:{server_ws.remote_address[1]} {short}] "), opened
    assert "opened /room?x=1" in opened
    assert "subprotocol: chat" in opened
    assert "extensions: permessage-deflate" in opened
    assert re.search(r"closed /room\?x=1 4000 'done here' in \d+\.\d{3} s", closed), closed
    assert "received 2 messages (" in closed and "sent 2 messages (" in closed
    # payload bytes each way: the text (39 bytes) and 10 binary bytes
    assert f"({len(SECRET) + 10} bytes)" in closed
    for record in server_lines:
        assert IDENTITY.match(record.getMessage())
        assert record.connection_id == short  # type: ignore[attr-defined]
        assert record.websocket is server_ws  # type: ignore[attr-defined]
    assert client_lines[0].getMessage().startswith(f"[127.0.0.1:{client.remote_address[1]} {client.id.hex[:8]}]")
    assert server_ws.id != client.id


async def test_no_payload_at_info_and_frames_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    await _exchange(caplog, logging.DEBUG)
    info = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO and r.name.startswith("wscodec")]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG and r.name.startswith("wscodec")]
    assert info and not any(SECRET in line for line in info)
    assert any("> text message of" in line for line in debug), debug
    assert any("fragment of" in line or "TextFragment" in line for line in debug), debug
    # every line about a connection names it, DEBUG included
    assert all(IDENTITY.match(line) for line in debug), [line for line in debug if not IDENTITY.match(line)]


async def test_logger_argument_accepts_logger_adapter_name_or_none() -> None:
    custom = logging.getLogger("myapp.ws")
    ws = WebSocket(Connection("client", host="example.com"), logger=custom)
    assert ws.logger.logger is custom
    ws = WebSocket(Connection("client", host="example.com"), logger="myapp.other")
    assert ws.logger.logger is logging.getLogger("myapp.other")
    ws = WebSocket(Connection("server"))
    assert ws.logger.logger is logging.getLogger("wscodec.server")
    adapter = logging.LoggerAdapter(custom, {"tenant": "a"})
    ws = WebSocket(Connection("client", host="example.com"), logger=adapter)
    assert ws.logger.logger is adapter
