"""Per-connection server memory with permessage-deflate, wscodec against websockets, and the JSON ratio.

    python bench/bench_deflate_memory.py                 # 400 connections, both servers, the defaults
    python bench/bench_deflate_memory.py --deflate 15,15,8,6  # wscodec with zlib's defaults (bits, memLevel, level)

Each server runs in its own process; one client process (websockets' client, the same for both servers)
opens ``--connections`` connections, each of which exchanges ``--messages`` JSON messages of about 1 KiB
with the echo server, and stays open. The figure is the server's RSS growth divided by the number of
connections. The compression ratio is measured in-process on the same JSON, for a stream of messages
(context takeover) and for one 16 KiB message, against zlib's defaults (32 KiB window, memLevel 8, level 6).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
import zlib


def json_messages(count: int, seed: int = 7) -> list[str]:
    """Realistic JSON: records with repeated keys, ids, short strings and numbers."""
    rng = random.Random(seed)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
    out = []
    for i in range(count):
        records = [
            {
                "id": 100000 + i * 10 + j,
                "user": f"{rng.choice(words)}_{rng.randrange(1000)}",
                "status": rng.choice(["active", "idle", "away"]),
                "score": round(rng.random() * 1000, 3),
                "tags": rng.sample(words, 3),
                "updated_at": f"2026-11-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:00:00Z",
            }
            for j in range(6)
        ]
        out.append(json.dumps({"type": "update", "seq": i, "records": records}))
    return out


def big_json(size: int = 16384, seed: int = 11) -> str:
    """Valid JSON of at most ``size`` bytes (and close to it): a list of update messages."""
    items: list[object] = []
    i = 0
    while True:
        candidate = [*items, json.loads(json_messages(1, seed + i)[0])]
        if len(json.dumps(candidate)) > size:
            return json.dumps(items)
        items = candidate
        i += 1


def ratio(messages: list[bytes], wbits: int, mem_level: int, level: int = 6) -> float:
    compressor = zlib.compressobj(level, zlib.DEFLATED, -wbits, mem_level)
    raw = compressed = 0
    for message in messages:
        raw += len(message)
        compressed += len(compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)) - 4
    return compressed / raw


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# --------------------------------------------------------------------------- servers (subprocesses)


def run_server(kind: str, port: int, deflate: str | None) -> None:
    async def main() -> None:
        if kind == "websockets":
            from websockets.asyncio.server import serve as ws_serve

            async def echo(ws: object) -> None:
                async for message in ws:  # type: ignore[attr-defined]
                    await ws.send(message)  # type: ignore[attr-defined]

            async with ws_serve(echo, "127.0.0.1", port, ping_interval=None):
                print("READY", flush=True)
                await asyncio.Future()
        else:
            from wscodec.asyncio import serve
            from wscodec.compression import Deflate

            compression: object = "deflate"
            if deflate == "none":
                compression = None
            elif deflate:
                server_bits, client_bits, mem_level, *level = (int(x) for x in deflate.split(","))
                compression = Deflate(
                    server_max_window_bits=server_bits,
                    client_max_window_bits=client_bits,
                    memory_level=mem_level,
                    compression_level=level[0] if level else 6,
                )

            async def echo(ws: object) -> None:
                async for message in ws:  # type: ignore[attr-defined]
                    await ws.send(message)  # type: ignore[attr-defined]

            async with serve(echo, "127.0.0.1", port, ping_interval=None, compression=compression):  # type: ignore[arg-type]
                print("READY", flush=True)
                await asyncio.Future()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def clients(port: int, connections: int, messages: list[str]) -> list[object]:
    from websockets.asyncio.client import connect

    opened = []
    for _ in range(connections):
        ws = await connect(f"ws://127.0.0.1:{port}/", ping_interval=None, open_timeout=30)
        for message in messages:
            await ws.send(message)
            assert await asyncio.wait_for(ws.recv(), 30) == message
        opened.append(ws)
    return opened


def measure(kind: str, connections: int, count: int, deflate: str | None) -> float:
    port = free_port()
    cmd = [sys.executable, __file__, "--serve", kind, "--port", str(port)]
    if deflate:
        cmd += ["--deflate", deflate]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "READY":
            raise RuntimeError(f"{kind} server did not start")
        messages = json_messages(count)

        async def run() -> float:
            warm = await clients(port, 5, messages)  # first-use allocations are not per connection
            for ws in warm:
                await ws.close()  # type: ignore[attr-defined]
            await asyncio.sleep(0.5)
            before = rss_kib(proc.pid)
            opened = await clients(port, connections, messages)
            await asyncio.sleep(1.0)
            after = rss_kib(proc.pid)
            for ws in opened:
                await ws.close()  # type: ignore[attr-defined]
            return (after - before) / connections

        return asyncio.run(run())
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=400)
    parser.add_argument("--messages", type=int, default=3)
    parser.add_argument(
        "--deflate", help="wscodec server_bits,client_bits,memLevel[,level] or 'none' (default: wscodec's defaults)"
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        run_server(args.serve, args.port, args.deflate)
        return
    from wscodec.compression import Deflate

    d = Deflate()
    if args.deflate and args.deflate != "none":
        sb, _cb, ml, *levels = (int(x) for x in args.deflate.split(","))
        level = levels[0] if levels else 6
    else:
        sb, ml, level = d.server_max_window_bits or 15, d.memory_level, d.compression_level
    stream = [m.encode() for m in json_messages(200)]
    big = [big_json().encode()]
    base_stream, base_big = ratio(stream, 15, 8), ratio(big, 15, 8)
    ours_stream, ours_big = ratio(stream, max(sb, 9), ml, level), ratio(big, max(sb, 9), ml, level)
    ws_stream, ws_big = ratio(stream, 12, 5), ratio(big, 12, 5)
    print(f"JSON compression ratio (compressed/raw), window {sb} bits, memLevel {ml}, level {level}:")
    print(
        f"  stream of 200 ~1 KiB messages: zlib default {base_stream:.4f}  wscodec {ours_stream:.4f} "
        f"({ours_stream / base_stream:.3f}x)  websockets {ws_stream:.4f}"
    )
    print(
        f"  one 16 KiB message:            zlib default {base_big:.4f}  wscodec {ours_big:.4f} "
        f"({ours_big / base_big:.3f}x)  websockets {ws_big:.4f}"
    )
    started = time.perf_counter()
    ours = measure("wscodec", args.connections, args.messages, args.deflate)
    theirs = measure("websockets", args.connections, args.messages, None)
    print(f"server RSS per connection, {args.connections} connections x {args.messages} JSON messages each way:")
    print(
        f"  wscodec {ours:.1f} KiB   websockets {theirs:.1f} KiB   ratio {ours / theirs:.2f}x "
        f"({time.perf_counter() - started:.0f} s)"
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
