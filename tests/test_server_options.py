"""wscodec.asyncio.serve() options: process_response, server_header, sock=, logger=, the exception
hierarchy (ConnectionClosedOK/Error), and typed options checked by ``mypy --strict`` on user scripts."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import pickle
import re
import socket
import subprocess
import sys
import tempfile
import textwrap
from typing import Any

import pytest

from wscodec import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidStatus,
)
from wscodec.asyncio import WebSocket, connect, serve, unix_serve
from wscodec.client_network import DEFAULT_USER_AGENT
from wscodec.events import Request, Response

pytestmark = pytest.mark.timeout(120)


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


def url(port: int | None) -> str:
    return f"ws://127.0.0.1:{port}/"


async def test_server_header_default_custom_and_none() -> None:
    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server.port)) as ws:
        assert ws.response is not None and ws.response.header("Server") == DEFAULT_USER_AGENT
    async with serve(echo, "127.0.0.1", 0, server_header="mine/2") as server, connect(url(server.port)) as ws:
        assert ws.response is not None and ws.response.header("Server") == "mine/2"
    async with serve(echo, "127.0.0.1", 0, server_header=None) as server, connect(url(server.port)) as ws:
        assert ws.response is not None and ws.response.header("Server") is None


async def test_process_response_adds_headers_to_the_101() -> None:
    seen: list[tuple[Any, Request | None, Response]] = []

    def add_header(ws: WebSocket, request: Request | None, response: Response) -> Response:
        seen.append((ws, request, response))
        return dataclasses.replace(response, headers=(*response.headers, ("X-Session", "abc")))

    async with serve(echo, "127.0.0.1", 0, process_response=add_header) as server, connect(url(server.port)) as ws:
        assert ws.response is not None and ws.response.header("X-Session") == "abc"
        await ws.send("after the hook")
        assert await ws.recv() == "after the hook"
    (hook_ws, request, response) = seen[0]
    assert isinstance(hook_ws, WebSocket) and request is not None and request.path == "/"
    assert response.status_code == 101


async def test_process_response_may_replace_the_101_and_sees_rejections() -> None:
    async def deny(ws: WebSocket, request: Request | None, response: Response) -> Any:
        await asyncio.sleep(0)
        if response.status_code == 101:
            return (451, {"Content-Type": "text/plain"}, "unavailable")
        return dataclasses.replace(response, headers=(*response.headers, ("X-Seen", "1")))

    handled: list[WebSocket] = []

    async def handler(ws: WebSocket) -> None:
        handled.append(ws)

    def reject_health(request: Request) -> Any:
        return (200, [], b"ok") if request.path == "/health" else None

    async with serve(handler, "127.0.0.1", 0, process_response=deny, process_request=reject_health) as server:
        with pytest.raises(InvalidStatus) as info:
            await connect(url(server.port))
        assert info.value.status_code == 451 and info.value.body == b"unavailable"
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200 ") and b"X-Seen: 1\r\n" in answer
        assert b"Server: " + DEFAULT_USER_AGENT.encode() in answer
    assert handled == []


async def test_serve_on_a_listening_unix_socket() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "activated.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen()
        async with unix_serve(echo, sock=listener):
            from wscodec.asyncio import unix_connect

            async with unix_connect(path) as ws:
                await ws.send(b"socket activation")
                assert await ws.recv() == b"socket activation"


async def test_logger_reaches_the_websocket() -> None:
    named: list[Any] = []

    async def handler(ws: WebSocket) -> None:
        named.append(ws.logger)

    custom = logging.getLogger("my.app.ws")
    async with serve(handler, "127.0.0.1", 0, logger="my.app.server") as server, connect(url(server.port)):
        pass
    async with connect_and_wait(server_logger=custom) as got:
        named.append(got)
    # ws.logger adds the connection's identity to every line (a LoggerAdapter) over the logger given
    assert named[0].logger is logging.getLogger("my.app.server")
    assert named[1].logger is custom


class connect_and_wait:
    """Serve with ``logger=server_logger``, connect with ``logger="client.log"``; yield the server's logger."""

    def __init__(self, server_logger: logging.Logger) -> None:
        self.server_logger = server_logger
        self.loggers: list[Any] = []

    async def __aenter__(self) -> Any:
        async def handler(ws: WebSocket) -> None:
            self.loggers.append(ws.logger)

        async with (
            serve(handler, "127.0.0.1", 0, logger=self.server_logger) as server,
            connect(url(server.port), logger="client.log") as ws,
        ):
            assert ws.logger.logger is logging.getLogger("client.log")
            await ws.wait_closed()
        return self.loggers[0]

    async def __aexit__(self, *args: object) -> None:
        return None


async def test_connection_closed_ok_and_error() -> None:
    async def close_with(ws: WebSocket) -> None:
        code = int(ws.request.path.strip("/")) if ws.request else 1000
        await ws.close(code, "bye")

    async with serve(close_with, "127.0.0.1", 0) as server:
        for code, kind in (
            (1000, ConnectionClosedOK),
            (1001, ConnectionClosedOK),
            (1011, ConnectionClosedError),
            (4000, ConnectionClosedError),
        ):
            async with connect(f"ws://127.0.0.1:{server.port}/{code}") as ws:
                with pytest.raises(ConnectionClosed) as info:
                    await ws.recv()
                assert type(info.value) is kind
                assert info.value.code == code
    error = ConnectionClosed(1006, "", was_clean=False)
    assert type(error) is ConnectionClosedError
    assert type(pickle.loads(pickle.dumps(error))) is ConnectionClosedError
    assert type(ConnectionClosed(1000, "")) is ConnectionClosedOK


# --------------------------------------------------------------------------- typed options


GOOD = """
import asyncio
from wscodec import Connection
from wscodec.asyncio import WebSocket, connect, serve, unix_serve
from wscodec.compression import Deflate

async def handler(ws: WebSocket) -> None:
    message = await ws.recv()
    reveal_type(message)
    await ws.send(message)

async def main() -> None:
    async with serve(handler, "127.0.0.1", 0, max_size=1024, compression=Deflate(memory_level=4),
                     server_header=None, logger="app"):
        pass
    async with unix_serve(handler, "/tmp/x.sock", ping_interval=None):
        pass
    async with connect("ws://127.0.0.1:1/", additional_headers={"a": "b"}, proxy=None) as ws:
        await ws.send("hi")
    conn = Connection("client", host="example.com")
    conn.send_text("x")

asyncio.run(main())
"""

BAD = """
from wscodec import Connection
from wscodec.asyncio import WebSocket, serve

async def handler(ws: WebSocket) -> None:
    pass

async def main() -> None:
    async with serve(handler, "127.0.0.1", 0, max_sise=1024):
        pass
    Connection("clinet")
"""


def run_mypy(source: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "user_script.py")
        with open(path, "w") as f:
            f.write(textwrap.dedent(source))
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "mypy",
                "--strict",
                "--no-incremental",
                "--cache-dir",
                os.path.join(tmp, "c"),
                "--config-file",
                os.devnull,
                path,
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp,
        )


def test_mypy_strict_accepts_a_correct_user_script() -> None:
    pytest.importorskip("mypy")
    result = run_mypy(GOOD)
    assert result.returncode == 0, result.stdout + result.stderr
    # recv() of a default connection is str | bytes, not a wider union of buffer types.
    revealed = re.search(r'Revealed type is "(.*)"', result.stdout)
    assert revealed is not None, result.stdout
    assert revealed.group(1).replace("builtins.", "") in ("str | bytes", "Union[str, bytes]"), result.stdout


def test_mypy_strict_reports_misspelled_keyword_and_role() -> None:
    pytest.importorskip("mypy")
    result = run_mypy(BAD)
    assert result.returncode == 1
    assert 'Unexpected keyword argument "max_sise"' in result.stdout
    assert "clinet" in result.stdout and "Literal['client', 'server']" in result.stdout
