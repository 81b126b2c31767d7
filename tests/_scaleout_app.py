"""The server the worker tests run as a subprocess: ``python tests/_scaleout_app.py [options]``.

Every connection joins the channel "room", is greeted with ``hello PID WORKER_ID`` (so a test knows which
worker it reached), and publishes to "room" what it sends; a publish the broker refuses is answered "unavailable".
Prints ``listening on ws://127.0.0.1:PORT`` once every worker listens.
"""

from __future__ import annotations

import argparse
import os
import signal
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


def signal_at_fork(name: str, forks: int) -> None:
    """Send this process (the supervisor) SIG``name`` from within its ``forks``-th fork, in the parent: a real
    signal at the moment the worker just forked cannot have set up its own signal handling yet."""
    count = 0

    def after_fork() -> None:
        nonlocal count
        count += 1
        if count == forks:
            os.kill(os.getpid(), signal.Signals[f"SIG{name}"])

    os.register_at_fork(after_in_parent=after_fork)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--broker", default=None)
    parser.add_argument("--share", default=None)
    parser.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    parser.add_argument("--crash", action="store_true")
    parser.add_argument("--close-timeout", type=float, default=3.0)
    parser.add_argument("--signal-at-last-fork", choices=["TERM", "INT"], default=None)
    args = parser.parse_args()
    if args.signal_at_last_fork:
        signal_at_fork(args.signal_at_last_fork, args.workers)
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
        close_timeout=args.close_timeout,
        max_failures=2,
        stable_after=5.0,
    )


if __name__ == "__main__":
    sys.exit(main())
