"""The server the worker tests run as a subprocess: ``python tests/_scaleout_app.py [options]``.

Every connection joins the channel "room", is greeted with ``hello PID WORKER_ID`` (so a test knows which
worker it reached), and publishes to "room" what it sends; a publish the broker refuses is answered "unavailable".
Prints ``listening on ws://127.0.0.1:PORT`` once every worker listens.
"""

from __future__ import annotations

import argparse
import os
import sys

from wscodec.asyncio import WebSocket
from wscodec.broker import BrokerUnavailable
from wscodec.workers import run, worker_id


async def handler(ws: WebSocket) -> None:
    server = ws.server  # type: ignore[attr-defined]
    await server.join(ws, "room")
    await ws.send(f"hello {os.getpid()} {worker_id()}")
    async for message in ws:
        try:
            await server.publish("room", message)
        except BrokerUnavailable:
            await ws.send("unavailable")


def crash_loop() -> object:
    raise SystemExit(3)  # a worker that dies as it starts


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--broker", default=None)
    parser.add_argument("--share", default=None)
    parser.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    parser.add_argument("--crash", action="store_true")
    args = parser.parse_args()
    factory = None
    if args.loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    if args.crash:
        factory = crash_loop  # type: ignore[assignment]

    def ready(address: str, port: int) -> None:
        print(f"listening on ws://127.0.0.1:{port}", flush=True)

    return run(
        handler,
        "127.0.0.1",
        args.port,
        workers=args.workers,
        share=args.share,
        broker=args.broker,
        ready=ready,
        loop_factory=factory,
        compression=None,
        close_timeout=3,
        max_failures=2,
        stable_after=5.0,
    )


if __name__ == "__main__":
    sys.exit(main())
