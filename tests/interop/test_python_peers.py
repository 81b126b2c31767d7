"""wscodec.asyncio against the Python peers from PyPI, over loopback: websockets (17) and aiohttp, both ways.

Our client against their echo servers, their clients against our echo server; text and binary messages
up to 16 MiB, with and without permessage-deflate (a message sent twice, so that the second refers back to
the first when compressed), a message fragmented by websockets' client, and the close codes and reasons
each side sees.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import serve as ws_serve

from wscodec.asyncio import WebSocket, connect, serve
from wscodec.errors import ConnectionClosedError

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

MIB = 1 << 20
SIZES = [0, 125, 70_000, MIB, 16 * MIB]
COMPRESSION = [None, "deflate"]
STEP = 30


def payload(size: int) -> bytes:
    if size >= 16 * MIB:  # compressible, so the deflate runs stay short on a shared CI core
        return (bytes(range(256)) + os.urandom(256)) * (size // 512)
    return os.urandom(size)


def text(size: int) -> str:
    return ("héllo ✓ " * (size // 10 + 1))[: max(size // 2, 0)]


# --------------------------------------------------------------------------- peer servers


async def websockets_echo(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


async def start_websockets_server(compression: str | None) -> tuple[int, Callable[[], Awaitable[None]]]:
    server = await ws_serve(websockets_echo, "127.0.0.1", 0, compression=compression, max_size=None)
    port = (
        server.sockets[0].getsockname()[1] if hasattr(server, "sockets") else server.server.sockets[0].getsockname()[1]
    )

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return port, stop


async def start_aiohttp_app(
    handler: Callable[[web.Request], Awaitable[web.WebSocketResponse]],
) -> tuple[int, Callable[[], Awaitable[None]]]:
    """An aiohttp server on a free loopback port with ``handler`` at "/": its port, and how to stop it."""
    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()

    async def stop() -> None:
        await runner.cleanup()

    return runner.addresses[0][1], stop


async def start_aiohttp_server(compression: str | None) -> tuple[int, Callable[[], Awaitable[None]]]:
    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=compression is not None, max_msg_size=0)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    return await start_aiohttp_app(echo)


PEER_SERVERS = {"websockets": start_websockets_server, "aiohttp": start_aiohttp_server}


@pytest.fixture(params=sorted(PEER_SERVERS))
def peer_server(request: pytest.FixtureRequest) -> Any:
    return PEER_SERVERS[request.param]


@pytest.mark.parametrize("compression", COMPRESSION)
@pytest.mark.parametrize("size", SIZES)
async def test_our_client_against_peer_server(peer_server: Any, compression: str | None, size: int) -> None:
    port, stop = await peer_server(compression)
    try:
        async with connect(f"ws://127.0.0.1:{port}/", compression=compression, max_size=None) as ws:
            assert ("permessage-deflate" in ws.extensions) == (compression is not None)
            data = payload(size)
            await ws.send(data)
            assert await asyncio.wait_for(ws.recv(), STEP) == data
            message = text(size)
            for _ in range(2 if size <= MIB else 1):  # the second one, compressed, refers back to the first
                await ws.send(message)
                assert await asyncio.wait_for(ws.recv(), STEP) == message
            await ws.send([b"frag", b"mented"])
            assert await asyncio.wait_for(ws.recv(), STEP) == b"fragmented"
            rtt = await asyncio.wait_for(ws.ping(b"interop"), STEP)
            assert isinstance(rtt, float) and rtt > 0 and ws.latency == rtt  # the peer's Pong matched ours
        assert ws.close_code == 1000
    finally:
        await stop()


# --------------------------------------------------------------------------- peer clients


async def our_echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


async def websockets_client(
    port: int, compression: str | None, messages: list[Any]
) -> tuple[list[Any], tuple[int | None, str | None]]:
    """What came back of each message, then of one sent in fragments; and the Close the client got back."""
    out = []
    async with ws_connect(f"ws://127.0.0.1:{port}/", compression=compression, max_size=None) as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
        assert ("permessage-deflate" in extensions) == (compression is not None)
        for message in messages:
            await ws.send(message)
            out.append(await asyncio.wait_for(ws.recv(), STEP))
        await ws.send(["frag", "mented ✓"])  # a fragmented message, each fragment compressed with deflate
        out.append(await asyncio.wait_for(ws.recv(), STEP))
        await ws.close(1000, "done")
    return out, (ws.close_code, ws.close_reason)


async def aiohttp_client(
    port: int, compression: str | None, messages: list[Any]
) -> tuple[list[Any], tuple[int | None, str | None]]:
    """What came back of each message; the Close code the client got back (aiohttp keeps no reason)."""
    out = []
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            f"ws://127.0.0.1:{port}/", compress=15 if compression else 0, max_msg_size=0, autoping=True
        ) as ws,
    ):
        assert bool(ws.compress) == (compression is not None)
        for message in messages:
            if isinstance(message, str):
                await ws.send_str(message)
            else:
                await ws.send_bytes(message)
            msg = await asyncio.wait_for(ws.receive(), STEP)
            out.append(msg.data)
        await ws.close(code=1000, message=b"done")
    return out, (ws.close_code, None)


PEER_CLIENTS = {"websockets": websockets_client, "aiohttp": aiohttp_client}


@pytest.mark.parametrize("peer", sorted(PEER_CLIENTS))
@pytest.mark.parametrize("compression", COMPRESSION)
@pytest.mark.parametrize("size", SIZES)
async def test_peer_client_against_our_server(peer: str, compression: str | None, size: int) -> None:
    closes: list[tuple[int | None, str]] = []

    async def handler(ws: WebSocket) -> None:
        await our_echo(ws)
        closes.append((ws.close_code, ws.close_reason))

    # The text twice (not the 16 MiB one, for time): compressed, the second refers back to the first.
    messages = [payload(size), text(size)] + ([text(size)] if size <= MIB else [])
    async with serve(handler, "127.0.0.1", 0, compression=compression, max_size=None) as server:
        out, close = await PEER_CLIENTS[peer](server.port, compression, messages)
        for _ in range(200):
            if closes:
                break
            await asyncio.sleep(0.01)
    if peer == "websockets":
        assert out.pop() == "fragmented ✓"
        assert close == (1000, "done")  # our Close echoes the client's code and reason
    else:
        assert close == (1000, None)
    assert out == messages
    assert closes == [(1000, "done")]


async def test_websockets_client_sees_our_close_code() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.recv()
        await ws.close(4001, "server bye")

    async with serve(handler, "127.0.0.1", 0) as server, ws_connect(f"ws://127.0.0.1:{server.port}/") as ws:
        await ws.send("x")
        await asyncio.wait_for(ws.wait_closed(), STEP)
        assert ws.close_code == 4001 and ws.close_reason == "server bye"


async def test_aiohttp_client_sees_our_close_code() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.recv()
        await ws.close(4001, "server bye")

    async with (
        serve(handler, "127.0.0.1", 0) as server,
        aiohttp.ClientSession() as session,
        session.ws_connect(f"ws://127.0.0.1:{server.port}/") as ws,
    ):
        await ws.send_str("x")
        msg = await asyncio.wait_for(ws.receive(), STEP)
        assert (msg.type, msg.data, msg.extra) == (aiohttp.WSMsgType.CLOSE, 4001, "server bye")
        assert ws.close_code == 4001


async def test_our_client_sees_aiohttp_server_close_code() -> None:
    async def closing(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close(code=4002, message=b"peer bye")
        return ws

    port, stop = await start_aiohttp_app(closing)
    try:
        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            with pytest.raises(ConnectionClosedError) as info:
                await asyncio.wait_for(ws.recv(), STEP)
            assert (info.value.code, info.value.reason) == (4002, "peer bye")
            assert (ws.close_code, ws.close_reason) == (4002, "peer bye")
    finally:
        await stop()


async def test_our_client_sees_websockets_server_close_code() -> None:
    async def handler(ws: Any) -> None:
        await ws.close(4002, "peer bye")

    async with ws_serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1] if hasattr(server, "sockets") else 0

        async def messages(ws: WebSocket) -> AsyncIterator[Any]:
            async for message in ws:
                yield message

        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            with pytest.raises(ConnectionClosedError) as info:  # 4002: as websockets' async for raises
                assert [m async for m in messages(ws)] == []
            assert (info.value.code, info.value.reason) == (4002, "peer bye")
            assert (ws.close_code, ws.close_reason) == (4002, "peer bye")
