"""``compliance/autobahn_client.py`` against a fake fuzzing server written with ``wscodec.asyncio.serve``.

The fake answers ``/getCaseCount`` with 2, runs two echo cases (small text and binary; then a 3 MiB binary
message, over the default 1 MiB limit, and a compressible text) and records ``/updateReports``. It checks
the client's loop: the order of requests, the agent, every echo intact and of the right type.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from wscodec.asyncio import serve

pytestmark = pytest.mark.interop

SCRIPT = Path(__file__).resolve().parents[2] / "compliance" / "autobahn_client.py"


def _load_client() -> Any:
    spec = importlib.util.spec_from_file_location("autobahn_client", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["autobahn_client"] = module
    spec.loader.exec_module(module)
    return module


CASES: dict[int, list[str | bytes]] = {
    1: ["hello", b"\x00\x01\xfe\xff"],
    2: [os.urandom(3 * 2**20), "compress me " * 1000],
}


async def test_autobahn_client_loop() -> None:
    client = _load_client()
    paths: list[str] = []
    log: list[Any] = []

    def process_request(request: Any) -> None:
        paths.append(request.path)  # connections come one after another: the handler takes the last

    async def fake_fuzzing_server(ws: Any) -> None:
        path = getattr(getattr(ws, "request", None), "path", None) or paths[-1]
        url = urlsplit(path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/getCaseCount":
            await ws.send(str(len(CASES)))
            await ws.close()
        elif url.path == "/runCase":
            case = int(query["case"])
            for message in CASES[case]:
                await ws.send(message)
                echo = await ws.recv()
                log.append((case, query["agent"], type(echo) is type(message) and echo == message))
            await ws.close(1000)
        elif url.path == "/updateReports":
            log.append(("report", query["agent"]))
            await ws.close()
        else:
            await ws.close(1008, "unknown path")

    async with serve(fake_fuzzing_server, "127.0.0.1", 0, process_request=process_request, max_size=None) as server:
        count = await client.run(f"ws://127.0.0.1:{server.port}/", "wscodec-test", progress=False)

    assert count == 2
    assert [urlsplit(p).path for p in paths] == ["/getCaseCount", "/runCase", "/runCase", "/updateReports"]
    assert paths[1].endswith("case=1&agent=wscodec-test")
    assert paths[2].endswith("case=2&agent=wscodec-test")
    assert log == [
        (1, "wscodec-test", True),
        (1, "wscodec-test", True),
        (2, "wscodec-test", True),
        (2, "wscodec-test", True),
        ("report", "wscodec-test"),
    ]
