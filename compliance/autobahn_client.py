"""Autobahn|Testsuite fuzzing-server client for wscodec.

    python compliance/autobahn_client.py [BASE_URL] [AGENT]

BASE_URL defaults to ``ws://127.0.0.1:9001`` and AGENT to ``wscodec``. Run the suite's ``fuzzingserver``
first; this follows the client protocol its documentation describes:

1. connect to ``BASE_URL/getCaseCount``: the server sends the number of cases N as a text message;
2. for each case i in 1..N connect to ``BASE_URL/runCase?case=i&agent=AGENT`` and echo every message back
   (text as text, binary as binary) until the server closes;
3. connect to ``BASE_URL/updateReports?agent=AGENT`` so the server writes its reports.

No message size limit, permessage-deflate offered, no keepalive pings (they would show in the reports).
Each case is bounded in time so a stuck case cannot hang the run.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any

from wscodec.asyncio import connect

logger = logging.getLogger("autobahn_client")

CASE_TIMEOUT = 120.0  # seconds; the suite's slowest cases (9.x with big messages) take a few seconds here


def _options() -> dict[str, Any]:
    return {"max_size": None, "compression": "deflate", "ping_interval": None, "open_timeout": 30}


async def get_case_count(base_url: str) -> int:
    async with connect(f"{base_url}/getCaseCount", **_options()) as ws:
        count = int(await ws.recv())
        await ws.close()
    return count


async def run_case(base_url: str, case: int, agent: str) -> None:
    """Echo everything until the server closes; errors are the suite's business to judge, so log them."""
    try:
        async with connect(f"{base_url}/runCase?case={case}&agent={agent}", **_options()) as ws:
            async for message in ws:
                await ws.send(message)
    except Exception as exc:  # the fuzzing server breaks connections on purpose
        logger.debug("case %d ended with %r", case, exc)


async def update_reports(base_url: str, agent: str) -> None:
    async with connect(f"{base_url}/updateReports?agent={agent}", **_options()) as ws:
        async for _ in ws:  # the server closes once the reports are written
            pass


async def run(base_url: str = "ws://127.0.0.1:9001", agent: str = "wscodec", *, progress: bool = True) -> int:
    """Run every case; returns the number of cases run."""
    base_url = base_url.rstrip("/")
    count = await get_case_count(base_url)
    started = time.monotonic()
    for case in range(1, count + 1):
        try:
            await asyncio.wait_for(run_case(base_url, case, agent), CASE_TIMEOUT)
        except asyncio.TimeoutError:
            logger.warning("case %d did not finish within %.0f s", case, CASE_TIMEOUT)
        if progress and (case % 50 == 0 or case == count):
            print(f"ran case {case}/{count} ({time.monotonic() - started:.0f} s)", flush=True)
    await update_reports(base_url, agent)
    return count


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 2 or any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return 2
    base_url = args[0] if args else "ws://127.0.0.1:9001"
    agent = args[1] if len(args) > 1 else "wscodec"
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    count = asyncio.run(run(base_url, agent))
    print(f"{count} cases run against {base_url} as {agent}; reports updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
