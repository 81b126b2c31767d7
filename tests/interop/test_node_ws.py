"""Node's ``ws`` (8.23, with its native add-ons bufferutil and utf-8-validate) and wscodec, over loopback.

Our asyncio client and our threaded client talk to ws' echo server (``bench/node/ws_echo_server.js``, the echo
benchmark's ``node-ws`` peer), with and without permessage-deflate: text, binary, a 1 MiB message, a fragmented
message, a ping and a clean close; a message over ws' ``maxPayload`` gets close code 1009 and a fresh client is
still served. ws' client (``node_ws_client.js``) talks to our server. The packages come from ``bench/node``'s lock
file, installed by ``npm ci`` on first use (``bench/_node_ws.py``). Without node or npm the tests skip, and
fail when ``CI`` is set (``tests/_system.py``); so does an ``npm ci`` that cannot reach the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import platform
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from _system import in_ci, require_program, run_program

from wscodec import sync
from wscodec.asyncio import connect, serve
from wscodec.errors import ConnectionClosedError

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
CLIENT_SCRIPT = Path(__file__).with_name("node_ws_client.js")
MIB = 1 << 20


def _from_bench(name: str) -> ModuleType:
    """A module of ``bench/``: ``_node_ws`` (ws' install and command line), ``bench_echo`` (its server runner)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "bench"))


@pytest.fixture(scope="module")
def node_ws() -> ModuleType:
    """bench/_node_ws.py, with the pinned packages installed."""
    require_program("node", "nodejs", hint="version 20 or later")
    require_program("npm", "npm")
    _node_ws = _from_bench("_node_ws")
    problem = _node_ws.install()
    if problem is not None:
        if in_ci():
            pytest.fail(f"Node's ws could not be installed: {problem} (required when CI is set)", pytrace=False)
        pytest.skip(f"Node's ws could not be installed: {problem}")
    return _node_ws


def _check_add_ons(line: str) -> None:
    assert line.startswith("add-ons: "), line
    if sys.platform == "linux" and platform.machine() == "x86_64":  # where the packages ship prebuilt binaries
        assert "bufferutil=native" in line, line


@contextlib.contextmanager
def ws_echo_server(node_ws: ModuleType, *, deflate: bool, max_payload: int = 16 * MIB) -> Iterator[int]:
    """ws' echo server on a free loopback port, started and stopped as the echo benchmark does
    (``bench_echo.ServerProcess``, bounded waits): yields the port, once the add-ons line is checked."""
    command = node_ws.server_command("127.0.0.1", 0, deflate=deflate, lifetime=120.0)
    server = _from_bench("bench_echo").ServerProcess("node-ws", command=[*command, "--max-payload", str(max_payload)])
    try:
        assert server.banner, "ws' server did not say which add-ons it runs with"
        _check_add_ons(server.banner[0])
        yield server.port
    finally:
        server.stop()


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
async def test_our_client_against_ws_server(node_ws: ModuleType, deflate: bool) -> None:
    text = "héllo ✓ 🚀 " * 50
    small = bytes(range(256))
    big = os.urandom(MIB)
    pieces = [b"frag-1 ", b"frag-2 ", b"frag-3"]
    with ws_echo_server(node_ws, deflate=deflate) as port:
        async with connect(
            f"ws://127.0.0.1:{port}/", compression="deflate" if deflate else None, max_size=4 * MIB
        ) as ws:
            assert ws.extensions.startswith("permessage-deflate") is deflate, ws.extensions
            await ws.send(text)
            assert await asyncio.wait_for(ws.recv(), 10) == text
            await ws.send(small)
            assert await asyncio.wait_for(ws.recv(), 10) == small
            await ws.send(big)
            assert await asyncio.wait_for(ws.recv(), 10) == big
            await ws.send(pieces)  # one message in three frames: ws reassembles it and echoes it whole
            assert await asyncio.wait_for(ws.recv(), 10) == b"".join(pieces)
            assert await asyncio.wait_for(ws.ping(b"are you there"), 10) >= 0.0
            await ws.close()
        assert ws.close_code == 1000


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
def test_our_threaded_client_against_ws_server(node_ws: ModuleType, deflate: bool) -> None:
    text = "héllo ✓ 🚀 " * 50
    big = os.urandom(MIB)
    with ws_echo_server(node_ws, deflate=deflate) as port:
        with sync.connect(
            f"ws://127.0.0.1:{port}/", compression="deflate" if deflate else None, max_size=4 * MIB, proxy=None
        ) as ws:
            extensions = ws.response.header("Sec-WebSocket-Extensions") if ws.response else None
            assert (extensions or "").startswith("permessage-deflate") is deflate, extensions
            ws.send(text)
            assert ws.recv(timeout=10) == text
            ws.send(big)
            assert ws.recv(timeout=10) == big
            ws.send([b"one ", b"two"])  # a fragmented message, echoed whole
            assert ws.recv(timeout=10) == b"one two"
            assert ws.ping(b"ping").wait(10)
            ws.close()
        assert ws.close_code == 1000


async def test_ws_server_closes_an_oversized_message_with_1009(node_ws: ModuleType) -> None:
    with ws_echo_server(node_ws, deflate=False, max_payload=1024) as port:
        async with connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
            await ws.send(b"x" * 1024)  # at the limit: echoed
            assert await asyncio.wait_for(ws.recv(), 10) == b"x" * 1024
            await ws.send(b"x" * 1025)
            with pytest.raises(ConnectionClosedError) as caught:
                await asyncio.wait_for(ws.recv(), 10)
        assert caught.value.code == 1009
        assert ws.close_code == 1009
        async with connect(f"ws://127.0.0.1:{port}/", compression=None) as fresh:  # the server still serves
            await fresh.send("still there?")
            assert await asyncio.wait_for(fresh.recv(), 10) == "still there?"


async def test_ws_client_against_our_server(node_ws: ModuleType) -> None:
    closes: list[tuple[int | None, str | None]] = []

    async def echo(ws: Any) -> None:
        with contextlib.suppress(ConnectionClosedError):  # the client closes with 4000: not a ConnectionClosedOK
            async for message in ws:
                await ws.send(message)
        closes.append((ws.close_code, ws.close_reason))

    async with serve(echo, "127.0.0.1", 0, max_size=4 * MIB) as server:
        env = dict(os.environ, NODE_PATH=os.path.join(node_ws.NODE_DIR, "node_modules"))
        returncode, stdout, stderr = await run_program(
            require_program("node", "nodejs"), str(CLIENT_SCRIPT), f"ws://127.0.0.1:{server.port}/", timeout=60, env=env
        )
        for _ in range(100):  # the handler sees the end of its connection
            if closes:
                break
            await asyncio.sleep(0.05)

    assert returncode == 0, stderr.decode()
    seen = json.loads(stdout.decode().strip().splitlines()[-1])
    assert seen["errors"] == [], seen
    assert seen["opened"] is True
    assert seen["extensions"].startswith("permessage-deflate"), seen["extensions"]
    assert seen["echoes"] == [
        {"binary": False, "length": len("héllo from ws ✓ 🚀".encode()), "same": True},
        {"binary": True, "length": 256, "same": True},
        {"binary": True, "length": MIB, "same": True},
    ]
    assert seen["close"] == {"code": 4000, "reason": "client bye"}
    assert closes == [(4000, "client bye")]
