"""Logging of ``wscodec.asyncio`` and ``wscodec.sync``: every line about a connection carries its identity;
INFO says when it opened (path, subprotocol, extensions) and closed (code, reason, duration, traffic), DEBUG
shows frames, and no payload is ever logged at INFO. Both APIs write the same lines to the ``logger=`` given."""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

import pytest
from _waiting import until

from wscodec import Connection, encode_frame, sync
from wscodec.asyncio import WebSocket, connect, serve
from wscodec.errors import ConnectionClosed, InvalidStatus

SECRET = "payload-that-must-not-be-logged-at-info"
IDENTITY = re.compile(r"^\[127\.0\.0\.1:\d+ [0-9a-f]{8}\] ")


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


# --------------------------------------------------------------------------- the threaded API


def _records(caplog: pytest.LogCaptureFixture, name: str, *, timeout: float = 5.0, until_text: str = "") -> list[Any]:
    deadline = time.monotonic() + timeout
    while until_text and not any(until_text in r.getMessage() for r in caplog.records if r.name == name):
        assert time.monotonic() < deadline, f"no {until_text!r} on {name}: {caplog.text}"
        time.sleep(0.01)
    return [r for r in caplog.records if r.name == name]


def test_threaded_api_writes_the_same_lines_to_the_logger_given(caplog: pytest.LogCaptureFixture) -> None:
    """``logger=`` on the threaded serve/connect: opened and closed lines with the identity prefix, as the
    asyncio API writes them (the threaded API used to keep the argument and never log through it)."""
    caplog.set_level(logging.INFO)
    seen: list[sync.WebSocket] = []

    def echo(ws: sync.WebSocket) -> None:
        seen.append(ws)
        for message in ws:
            ws.send(message)

    server = sync.serve(echo, "127.0.0.1", 0, subprotocols=["chat"], logger="myapp.sync", ping_interval=None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.socket.getsockname()[1]
        with sync.connect(f"ws://127.0.0.1:{port}/room?x=1", subprotocols=["chat"], logger="myapp.client") as ws:
            client_port = ws.local_address[1]
            ws.send(SECRET)
            assert ws.recv(timeout=10) == SECRET
            ws.close(4000, "done here")
        server_lines = _records(caplog, "myapp.sync", until_text="closed")
    finally:
        server.shutdown()
        thread.join(10)
    client_lines = _records(caplog, "myapp.client")
    assert [getattr(r, "event", None) for r in server_lines] == ["opened", "closed"], caplog.text
    assert [getattr(r, "event", None) for r in client_lines] == ["opened", "closed"], caplog.text
    (server_ws,) = seen
    opened, closed = (r.getMessage() for r in server_lines)
    assert opened.startswith(f"[127.0.0.1:{client_port} {server_ws.id.hex[:8]}] "), opened
    assert "opened /room?x=1 (subprotocol: chat, extensions: permessage-deflate" in opened
    assert re.search(r"closed /room\?x=1 4000 'done here' in \d+\.\d{3} s", closed), closed
    assert f"received 1 messages ({len(SECRET)} bytes), sent 1 messages ({len(SECRET)} bytes)" in closed
    assert all(r.websocket is server_ws for r in server_lines)  # type: ignore[attr-defined]
    assert client_lines[0].getMessage().startswith(f"[127.0.0.1:{port} {ws.id.hex[:8]}] ")
    assert not any(SECRET in r.getMessage() for r in caplog.records)


def test_threaded_server_failures_go_to_the_logger_given(caplog: pytest.LogCaptureFixture) -> None:
    """A handler that raises, a client that breaks the protocol, a process_request hook that raises: each
    logged on ``logger=``, naming the client, none on the threaded modules' own loggers."""
    caplog.set_level(logging.INFO)

    def handler(ws: sync.WebSocket) -> None:
        if ws.request is not None and ws.request.path == "/raise":
            raise RuntimeError("boom")
        for _ in ws:
            pass

    def hook(request: Any) -> Any:
        if request.path == "/hook":
            raise RuntimeError("hook boom")
        return None

    server = sync.serve(handler, "127.0.0.1", 0, logger="myapp.sync", ping_interval=None, process_request=hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
        with sync.connect(base + "/raise") as ws, pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == 1011
        _records(caplog, "myapp.sync", until_text="connection handler failed")
        with sync.connect(base + "/violate") as ws:
            ws.socket.sendall(encode_frame(0x1, b"not masked"))  # a client's frame must be masked
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=10)
        assert ws.close_code == 1002
        _records(caplog, "myapp.sync", until_text="(close code 1002)")
        with pytest.raises(InvalidStatus, match="500"):
            sync.connect(base + "/hook", open_timeout=10)
        lines = _records(caplog, "myapp.sync", until_text="error in process_request")
    finally:
        server.shutdown()
        thread.join(10)
    texts = [r.getMessage() for r in lines]
    failed = next(r for r in lines if "connection handler failed" in r.getMessage())
    assert failed.levelno == logging.ERROR and failed.exc_info is not None
    assert IDENTITY.match(failed.getMessage()), failed.getMessage()
    assert any(IDENTITY.match(t) and "failed: " in t and "(close code 1002)" in t for t in texts), texts
    assert any(re.match(r"^\[127\.0\.0\.1:\d+\] error in process_request$", t) for t in texts), texts
    assert not [r for r in caplog.records if r.name.startswith("wscodec.sync")], caplog.text


def _tenant_records(caplog: pytest.LogCaptureFixture) -> list[Any]:
    records = [r for r in caplog.records if r.name == "myapp.tenant"]
    assert [getattr(r, "event", None) for r in records] == ["opened", "closed"], caplog.text
    for record in records:
        assert record.tenant == "a"  # type: ignore[attr-defined]
        assert IDENTITY.match(record.getMessage()), record.getMessage()
        assert f" {record.connection_id}] " in record.getMessage()  # type: ignore[attr-defined]
        assert record.websocket.id.hex[:8] == record.connection_id  # type: ignore[attr-defined]
    return records


async def test_a_logger_adapter_keeps_its_extra_and_ours(caplog: pytest.LogCaptureFixture) -> None:
    """``logger=LoggerAdapter(...)``: its ``extra`` (a tenant, say) and the connection's attributes both
    reach the record (an adapter's process() replaces the extra it is given, before Python 3.13)."""
    caplog.set_level(logging.INFO)
    adapter = logging.LoggerAdapter(logging.getLogger("myapp.tenant"), {"tenant": "a"})
    async with (
        serve(lambda ws: ws.wait_closed(), "127.0.0.1", 0, logger=adapter) as server,
        connect(f"ws://127.0.0.1:{server.port}/") as ws,
    ):
        pass
    await until(lambda: sum(r.name == "myapp.tenant" for r in caplog.records) >= 2)
    records = _tenant_records(caplog)
    assert all(r.websocket is not ws for r in records)  # type: ignore[attr-defined]  # (the server's)


def test_a_logger_adapter_keeps_its_extra_and_ours_threaded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    adapter = logging.LoggerAdapter(logging.getLogger("myapp.tenant"), {"tenant": "a"})
    server = sync.serve(lambda ws: None, "127.0.0.1", 0, logger=adapter, ping_interval=None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with (
            sync.connect(f"ws://127.0.0.1:{server.socket.getsockname()[1]}/") as ws,
            pytest.raises(ConnectionClosed),
        ):
            ws.recv(timeout=10)
        _records(caplog, "myapp.tenant", until_text="closed")
    finally:
        server.shutdown()
        thread.join(10)
    _tenant_records(caplog)


async def test_connection_lines_name_the_line_that_logged_and_keep_every_adapters_extra() -> None:
    """A record names the caller of ``ws.logger.info`` (the adapter's own frame is skipped, as the stdlib
    adapter's is), and every adapter of a chain given as ``logger=`` keeps its ``extra``."""
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    base = logging.getLogger("myapp.chain")
    base.addHandler(Keep())
    base.setLevel(logging.INFO)
    base.propagate = False
    try:
        chain = logging.LoggerAdapter(logging.LoggerAdapter(base, {"a": 1}), {"b": 2})
        ws = WebSocket(Connection("client", host="example.com"), logger=chain)
        ws.logger.info("from the test")
        ws.logger.info("one level up", stacklevel=2)
    finally:
        base.handlers.clear()
        base.propagate = True
    first, second = seen
    assert (first.filename, first.funcName) == (
        "test_logging.py",
        "test_connection_lines_name_the_line_that_logged_and_keep_every_adapters_extra",
    )
    assert second.funcName != first.funcName
    assert (first.a, first.b, first.connection_id) == (1, 2, ws.id.hex[:8])  # type: ignore[attr-defined]
