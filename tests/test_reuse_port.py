"""serve(reuse_port=True) as websockets takes it: several servers (processes, here loops and threads) listen on
one port and the kernel shares the connections among them. Without it the second bind fails."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from wscodec import sync
from wscodec.asyncio import WebSocket, connect, serve

pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="the platform has no SO_REUSEPORT")

CONNECTIONS = 40  # all on one of two servers: about 2**-39 were the kernel not sharing them


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_two_asyncio_servers_share_one_port() -> None:
    served: list[list[str]] = [[], []]

    def handler_for(index: int):  # type: ignore[no-untyped-def]
        async def handler(ws: WebSocket) -> None:
            async for message in ws:
                served[index].append(str(message))
                await ws.send(f"{index}:{message}")

        return handler

    port = free_port()
    async with serve(handler_for(0), "127.0.0.1", port, reuse_port=True):
        with pytest.raises(OSError):  # (what reuse_port changes: without it, the port is taken)
            await serve(handler_for(1), "127.0.0.1", port)
        async with serve(handler_for(1), "127.0.0.1", port, reuse_port=True):
            answers = []
            for i in range(CONNECTIONS):
                async with connect(f"ws://127.0.0.1:{port}/") as ws:
                    await ws.send(str(i))
                    answers.append(await asyncio.wait_for(ws.recv(), 5))
    assert sorted(int(answer.split(":")[1]) for answer in answers) == list(range(CONNECTIONS))
    assert served[0] and served[1]  # each server got some of them
    assert sorted(served[0] + served[1], key=int) == [str(i) for i in range(CONNECTIONS)]


def test_two_threaded_servers_share_one_port() -> None:
    served: list[list[str]] = [[], []]

    def handler_for(index: int):  # type: ignore[no-untyped-def]
        def handler(ws: sync.WebSocket) -> None:
            for message in ws:
                served[index].append(str(message))
                ws.send(f"{index}:{message}")

        return handler

    port = free_port()
    first = sync.serve(handler_for(0), "127.0.0.1", port, reuse_port=True)
    with pytest.raises(OSError):
        sync.serve(handler_for(1), "127.0.0.1", port)
    second = sync.serve(handler_for(1), "127.0.0.1", port, reuse_port=True)
    threads = [threading.Thread(target=server.serve_forever, daemon=True) for server in (first, second)]
    for thread in threads:
        thread.start()
    try:
        for i in range(CONNECTIONS):
            with sync.connect(f"ws://127.0.0.1:{port}/") as ws:
                ws.send(str(i))
                assert ws.recv(timeout=5).endswith(f":{i}")
    finally:
        for server in (first, second):
            server.shutdown()
        for thread in threads:
            thread.join(10)
    assert served[0] and served[1]
    assert sorted(served[0] + served[1], key=int) == [str(i) for i in range(CONNECTIONS)]
