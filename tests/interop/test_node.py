"""Node's built-in WebSocket client (undici) against the wscodec asyncio server, over loopback.

``node_client.mjs`` runs two sessions and prints what it saw as JSON: text, a binary ArrayBuffer and a
1 MiB binary message echoed; subprotocol and permessage-deflate negotiated; a close started by the client
(4000 "client bye") and one started by the server (4001 "server bye"). ``node_client.mjs URL traffic`` runs
the server-to-client scenario of ``tests/_traffic.py`` (fragmented and compressed messages from the server,
keepalive through a silence, ``server.close()``), as Chromium does in ``test_chromium.py``. Without node the
test skips, or fails when ``CI`` is set (``tests/_system.py``; Debian package ``nodejs``, 20.10 or later: an
older one counts as absent).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from _system import missing, require_program, run_program
from _traffic import check_traffic, run_traffic

from wscodec.asyncio import serve
from wscodec.errors import ConnectionClosedError

pytestmark = pytest.mark.interop

SCRIPT = Path(__file__).with_name("node_client.mjs")


def _node() -> list[str]:
    hint = "version 20.10 or later, which has the built-in WebSocket client; Debian 12's own is 18"
    node = require_program("node", "nodejs", hint=hint)
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    major, minor = (int(part) for part in version.lstrip("v").split(".")[:2])
    if (major, minor) < (20, 10):  # an older node is as good as none: skip, or fail under CI
        missing(f"node 20.10 or later (this one is {version})", "nodejs", hint=hint)
    return [node, "--experimental-websocket"] if major < 22 else [node]


async def test_node_client_against_our_server() -> None:
    node = _node()
    seen: list[dict[str, Any]] = []

    async def handler(ws: Any) -> None:
        record: dict[str, Any] = {"protocol": ws.protocol, "messages": 0}
        seen.append(record)
        with contextlib.suppress(ConnectionClosedError):  # a close with 3000-4999 is not a ConnectionClosedOK
            async for message in ws:
                record["messages"] += 1
                if message == "please close":
                    await ws.close(4001, "server bye")
                    break
                await ws.send(message)
        record["close"] = (ws.close_code, ws.close_reason)

    async with serve(handler, "127.0.0.1", 0, subprotocols=("superchat", "chat"), max_size=4 * 2**20) as server:
        returncode, stdout, stderr = await run_program(*node, str(SCRIPT), f"ws://127.0.0.1:{server.port}/", timeout=60)
        # Let the handlers see the end of their connections.
        for _ in range(100):
            if len(seen) == 2 and all("close" in r for r in seen):
                break
            await asyncio.sleep(0.05)

    assert returncode == 0, stderr.decode()
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    client, server_closed = result["client"], result["server"]

    # Session 1: the client offers chat and superchat; the server prefers superchat.
    assert client["errors"] == [], client
    assert client["opened"] is True
    assert client["protocol"] == "superchat"
    assert "permessage-deflate" in client["extensions"]
    assert client["messages"] == [
        {"kind": "string", "ok": True},
        {"kind": "binary", "ok": True},
        {"kind": "binary", "size": 2**20, "ok": True},
    ]
    assert client["close"] == {"code": 4000, "reason": "client bye", "wasClean": True}

    # Session 2: the server closes.
    assert server_closed["errors"] == [], server_closed
    assert server_closed["protocol"] == "chat"
    assert server_closed["close"] == {"code": 4001, "reason": "server bye", "wasClean": True}

    # What the server saw.
    assert len(seen) == 2, seen
    assert seen[0]["protocol"] == "superchat"
    assert seen[0]["messages"] == 3
    assert seen[0]["close"] == (4000, "client bye")
    assert seen[1]["protocol"] == "chat"
    assert seen[1]["close"][0] == 4001  # our own close; the peer echoed it


async def test_node_server_traffic_keepalive_and_going_away() -> None:
    """Node receives three fragmented messages, 200 compressed texts in order and a 1 MiB compressed text,
    answers the 0.2 s keepalive Pings through 1.5 s of silence, and sees ``server.close()``'s 1001 as a clean
    close (``tests/_traffic.py``, ``apps/traffic.mjs``)."""
    node = _node()

    async def client(_port: int, url: str) -> dict[str, Any]:
        returncode, stdout, stderr = await run_program(*node, str(SCRIPT), url, "traffic", timeout=30)
        assert returncode == 0, stderr.decode()
        return json.loads(stdout.decode().strip().splitlines()[-1])["traffic"]  # type: ignore[no-any-return]

    result, record = await run_traffic(client)
    check_traffic(result, record, echoed_reason="")
