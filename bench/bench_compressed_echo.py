"""Compressed echo throughput: wscodec's asyncio server against websockets' and Node's ws (with its native
add-ons), permessage-deflate on (each library's defaults), a 16 KiB JSON text message, 1 and 64 messages in
flight.

    python bench/bench_compressed_echo.py [--duration S] [--inflight 1,64]
    BENCH_DEFLATE_LEVEL=6 BENCH_DEFLATE_MEMLEVEL=5 python bench/bench_compressed_echo.py  # other server settings

Each server runs in its own process; one client (wscodec's asyncio client, the same for every server) keeps
``inflight`` messages outstanding on one connection for ``--duration`` seconds after a warm-up, and counts
round trips. Every echo is compressed by the server and inflated by the client, and the other way round, so
the client's cost is in the figure too, equally for every server. The last lines are the ratios
wscodec / peer for each column. Node's ws is installed by ``npm ci`` into ``bench/node`` on first use
(``_node_ws.py``); where that fails it is left out, and the output says why.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _node_ws
from bench_deflate_memory import big_json

#: The peers, each with permessage-deflate: websockets in Python, ws in Node.
PEERS = ("websockets", "node-ws")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_server(kind: str, port: int) -> None:
    async def main() -> None:
        if kind == "websockets":
            from websockets.asyncio.server import serve as ws_serve

            async def ws_echo(ws: object) -> None:
                async for message in ws:  # type: ignore[attr-defined]
                    await ws.send(message)  # type: ignore[attr-defined]

            async with ws_serve(ws_echo, "127.0.0.1", port, ping_interval=None, max_size=None):
                print("READY", flush=True)
                await asyncio.Future()
        else:
            from wscodec.asyncio import serve
            from wscodec.compression import Deflate

            level = os.environ.get("BENCH_DEFLATE_LEVEL")
            mem_level = os.environ.get("BENCH_DEFLATE_MEMLEVEL")
            compression: object = "deflate"
            if level or mem_level:
                compression = Deflate(compression_level=int(level or 7), memory_level=int(mem_level or 2))

            async def echo(ws: object) -> None:
                async for message in ws:  # type: ignore[attr-defined]
                    await ws.send(message)  # type: ignore[attr-defined]

            async with serve(echo, "127.0.0.1", port, ping_interval=None, max_size=None, compression=compression):  # type: ignore[arg-type]
                print("READY", flush=True)
                await asyncio.Future()

    asyncio.run(main())


async def drive(port: int, message: str, inflight: int, warmup: float, duration: float) -> tuple[float, str]:
    from wscodec.asyncio import connect

    async with connect(f"ws://127.0.0.1:{port}/", ping_interval=None, max_size=None, proxy=None) as ws:
        extensions = ws.extensions
        for _ in range(inflight):
            await ws.send(message)
        count = 0
        started = time.perf_counter()
        measuring_from = started + warmup
        counted_since = 0.0
        while True:
            echoed = await asyncio.wait_for(ws.recv(), 30)
            assert len(echoed) == len(message)
            now = time.perf_counter()
            if now >= measuring_from:
                if not counted_since:
                    counted_since = now
                    count = 0
                count += 1
                if now - counted_since >= duration:
                    break
            await ws.send(message)
        rate = count / (time.perf_counter() - counted_since)
        for _ in range(inflight - 1):
            await asyncio.wait_for(ws.recv(), 30)
        return rate, str(extensions)


def measure(kind: str, message: str, inflights: list[int], warmup: float, duration: float) -> dict[int, float]:
    port = free_port()
    if kind == "node-ws":
        command = _node_ws.server_command("127.0.0.1", port, deflate=True, lifetime=600.0)
    else:
        command = [sys.executable, __file__, "--serve", kind, "--port", str(port)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() not in ("READY", f"listening on {port}"):
            raise RuntimeError(f"{kind} server did not start")
        rates = {}
        for inflight in inflights:
            rate, extensions = asyncio.run(drive(port, message, inflight, warmup, duration))
            rates[inflight] = rate
            print(f"  {kind:10} {inflight:3} in flight: {rate:8.0f} msg/s  ({extensions})", flush=True)
        return rates
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds measured per cell")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--inflight", default="1,64")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", metavar="FILE", help="also write the rates (messages/s) as JSON")
    args = parser.parse_args()
    if args.serve:
        run_server(args.serve, args.port)
        return
    message = big_json(16384)
    json.loads(message)
    inflights = [int(x) for x in args.inflight.split(",")]
    print(f"compressed echo, {len(message)} B JSON text, python {sys.version.split()[0]}")
    peers = list(PEERS)
    problem = _node_ws.install()
    if problem is not None:
        print(f"  node-ws left out: {problem}", flush=True)
        peers.remove("node-ws")
    ours = measure("wscodec", message, inflights, args.warmup, args.duration)
    results: dict[str, object] = {"size": len(message), "wscodec": ours}
    for peer in peers:
        theirs = measure(peer, message, inflights, args.warmup, args.duration)
        results[peer] = theirs
        ratios = ", ".join(f"{n} in flight {ours[n] / theirs[n]:.2f}x" for n in inflights)
        print(f"  ratio wscodec/{peer}: {ratios}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
