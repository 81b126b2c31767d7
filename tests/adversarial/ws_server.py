"""A wscodec server for the adversarial suite, run as a subprocess on the event loop of your choice.

    python ws_server.py --loop asyncio|uvloop [--open-timeout S] [--ping-interval S] [--ping-timeout S]
                        [--close-timeout S] [--max-size N] [--write-limit N] [--no-compression]
    python ws_server.py --loop asyncio|uvloop --cli [ARGS OF `python -m wscodec` ...]

The first form serves, by request path: ``/echo`` (anything else too) echoes every message; ``/stream``
sends 64 KiB binary messages forever (``while True: await ws.send(...)``); ``/close`` waits for one
message, then closes (``await ws.close()``) and waits for the end; ``GET /debug`` (plain HTTP) answers with
JSON: ``tasks`` (``len(asyncio.all_tasks())``), ``protocols`` (connections, handshakes included),
``connections`` (open ones), ``fds`` (open file descriptors). It prints ``listening on ws://HOST:PORT``
once it listens (port 0: a free one).

The second form is the README's ``python -m wscodec serve`` itself (``wscodec.__main__.main``), with the
event loop policy set first, so that the CLI's ``asyncio.run`` runs on uvloop when asked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import warnings
from typing import Any

STREAM_CHUNK = b"\x5a" * 65536


def _set_loop(name: str) -> None:
    if name == "uvloop":
        import uvloop

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the policy API, deprecated from 3.14
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    elif name != "asyncio":
        raise SystemExit(f"unknown loop {name!r}")


def _debug_snapshot(server: Any) -> dict[str, int]:
    return {
        "tasks": len(asyncio.all_tasks()),
        "protocols": len(server._protocols),
        "connections": len(server.connections),
        "fds": len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else -1,
    }


async def _main(args: argparse.Namespace) -> None:
    from wscodec.asyncio import serve

    server: Any = None

    def process_request(request: Any) -> Any:
        if request.path.split("?", 1)[0] == "/debug":
            body = json.dumps(_debug_snapshot(server)).encode()
            return 200, [("Content-Type", "application/json"), ("Connection", "close")], body
        return None

    async def handler(ws: Any) -> None:
        path = ws.request.path.split("?", 1)[0]
        if path == "/stream":
            while True:
                await ws.send(STREAM_CHUNK)
        elif path == "/close":
            await ws.recv()
            await ws.close(1000, "bye")
        else:
            async for message in ws:
                await ws.send(message)

    server = await serve(
        handler,
        "127.0.0.1",
        0,
        process_request=process_request,
        compression=None if args.no_compression else "deflate",
        open_timeout=args.open_timeout,
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
        close_timeout=args.close_timeout,
        max_size=args.max_size,
        write_limit=args.write_limit,
    )
    print(f"listening on ws://127.0.0.1:{server.port}", flush=True)
    await asyncio.Event().wait()  # until killed


def _seconds(text: str) -> float | None:
    return None if text == "none" else float(text)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    parser.add_argument("--cli", action="store_true", help="run `python -m wscodec` with the remaining arguments")
    parser.add_argument("--open-timeout", type=_seconds, default=10.0)
    parser.add_argument("--ping-interval", type=_seconds, default=20.0)
    parser.add_argument("--ping-timeout", type=_seconds, default=20.0)
    parser.add_argument("--close-timeout", type=float, default=10.0)
    parser.add_argument("--max-size", type=int, default=2**20)
    parser.add_argument("--write-limit", type=int, default=65536)
    parser.add_argument("--no-compression", action="store_true")
    args, rest = parser.parse_known_args(argv)
    _set_loop(args.loop)
    if args.cli:
        from wscodec.__main__ import main as cli_main

        return cli_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {rest}")
    asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
