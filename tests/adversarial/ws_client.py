"""A wscodec client that never reads messages, run as a subprocess (its RSS and CPU are measured).

    python ws_client.py --loop asyncio|uvloop --mode idle|send URL

It prints ``open`` once the handshake succeeded (keepalive off). ``idle``: it waits with the connection
open; whatever the server sends is read by the protocol (Pings answered by the Connection) but no message
is consumed by the application. ``send``: ``while True: await ws.send(64 KiB)``. It exits with status 3
once the connection is closed (``send()`` raised ``ConnectionClosed``), or when killed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from ws_server import _set_loop


async def _main(url: str, mode: str) -> int:
    from wscodec.asyncio import connect
    from wscodec.errors import ConnectionClosed

    ws = await connect(url, ping_interval=None, open_timeout=3)
    print("open", flush=True)
    if mode == "send":
        chunk = b"\x5a" * 65536
        try:
            while True:
                await ws.send(chunk)
        except ConnectionClosed as exc:
            print(f"send() raised {exc!r}", flush=True)
    else:
        await ws.wait_closed()
    print(f"closed {ws.close_code}", flush=True)
    return 3


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    parser.add_argument("--mode", default="idle", choices=["idle", "send"])
    parser.add_argument("url")
    args = parser.parse_args(argv)
    _set_loop(args.loop)
    return asyncio.run(_main(args.url, args.mode))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
