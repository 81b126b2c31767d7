"""Command line: ``python -m wscodec serve | connect | bench``.

``serve`` runs an echo (or ``--chat`` broadcast) server that also answers ``GET /`` with a demo page
written against the browser's WebSocket API; ``connect`` is an interactive client in the manner of
wscat that also works from a pipe; ``bench`` runs the kernel and echo benchmarks of a source checkout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

_EOF_WAIT = 2.0  # seconds `connect` waits for replies after stdin ends


def _demo_page() -> bytes:
    """The demo page shipped as package data."""
    from importlib.resources import files

    return files("wscodec").joinpath("_demo.html").read_bytes()


def _is_upgrade(request: Any) -> bool:
    upgrade = request.header("Upgrade") or ""
    return "websocket" in upgrade.lower()


# --------------------------------------------------------------------------- serve


async def _serve(args: argparse.Namespace) -> int:
    from .asyncio import broadcast, serve

    page = _demo_page()
    server: Any = None

    def process_request(request: Any) -> tuple[int, list[tuple[str, str]], bytes] | None:
        if _is_upgrade(request):
            return None
        path = request.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            return (
                200,
                [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")],
                page,
            )
        return 404, [("Content-Type", "text/plain; charset=utf-8")], b"Not Found\n"

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async def chat(ws: Any) -> None:
        async for message in ws:
            broadcast(server.connections, message)

    server = await serve(
        chat if args.chat else echo,
        args.host,
        args.port,
        subprotocols=tuple(args.subprotocol),
        process_request=process_request,
        compression=None if args.no_compression else "deflate",
        max_size=args.max_size or None,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    host = f"[{args.host}]" if ":" in args.host else args.host
    mode = "chat" if args.chat else "echo"
    print(f"listening on ws://{host}:{server.port}", flush=True)
    print(f"{mode} server; demo page at http://{host}:{server.port}/ (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        print("shutting down", file=sys.stderr, flush=True)
        server.close()
        try:
            await asyncio.wait_for(server.wait_closed(), 10)
        except asyncio.TimeoutError:
            print("some connections did not close in time", file=sys.stderr, flush=True)
    return 0


# --------------------------------------------------------------------------- connect


def _parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def _stdin_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    """Thread body: read stdin with os.read (no buffered-reader lock held at exit), queue lines, None at EOF."""
    fd = sys.stdin.fileno()
    pending = b""
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                loop.call_soon_threadsafe(queue.put_nowait, line.decode(errors="replace").rstrip("\r"))
        if pending:
            loop.call_soon_threadsafe(queue.put_nowait, pending.decode(errors="replace").rstrip("\r"))
    except (OSError, RuntimeError):  # stdin closed, or the loop went away first
        pass
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(queue.put_nowait, None)


def _show(message: str | bytes | bytearray | memoryview) -> str:
    if isinstance(message, str):
        return message
    data = bytes(message)
    return f"[binary {len(data)} bytes] {data.hex()}"


def _out(text: str) -> None:
    print(text, flush=True)


def _info(text: str) -> None:
    print(f"* {text}", file=sys.stderr, flush=True)


async def _command(ws: Any, line: str, counts: dict[str, int]) -> bool:
    """Run one ``/command``; False when the client should stop reading stdin.

    A message it sends counts in ``counts["sent"]``, so the pipe mode waits for its echo too.
    """
    name, _, rest = line[1:].partition(" ")
    if name == "ping":
        start = time.perf_counter()
        waiter = ws.ping(rest.encode()) if rest else ws.ping()
        result = await asyncio.wait_for(waiter, 10)
        if asyncio.isfuture(result) or asyncio.iscoroutine(result):
            result = await asyncio.wait_for(result, 10)
        _out(f"* pong in {(time.perf_counter() - start) * 1000:.2f} ms")
    elif name == "close":
        parts = rest.split(" ", 1)
        code = int(parts[0]) if parts[0] else 1000
        reason = parts[1] if len(parts) > 1 else ""
        await ws.close(code, reason)
        return False
    elif name == "binary":
        try:
            data = bytes.fromhex(rest)
        except ValueError:
            _info(f"not hex: {rest!r}")
        else:
            await ws.send(data)
            counts["sent"] += 1
            return True
    elif name == "help":
        _info("/ping [data]  /close [code [reason]]  /binary HEX  //text sends '/text'")
    else:
        _info(f"unknown command /{name} (try /help)")
    return True


async def _connect(args: argparse.Namespace) -> int:
    from .asyncio import connect

    try:
        ws = await connect(
            args.url,
            subprotocols=tuple(args.subprotocol),
            extra_headers=tuple(args.header),
            compression=None if args.no_compression else "deflate",
            max_size=args.max_size or None,
        )
    except Exception as exc:  # refused, timed out, rejected handshake: say so plainly
        _info(f"could not connect to {args.url}: {exc}")
        return 1

    extensions = ws.extensions
    if not isinstance(extensions, str):
        extensions = ", ".join(str(e) for e in extensions or ())
    _info(f"connected to {args.url} (protocol: {ws.protocol or '-'}, extensions: {extensions or '-'})")

    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    threading.Thread(target=_stdin_lines, args=(loop, lines), name="stdin", daemon=True).start()

    counts = {"sent": 0, "received": 0}
    progress = asyncio.Event()

    async def reader() -> None:
        with contextlib.suppress(Exception):
            async for message in ws:
                counts["received"] += 1
                progress.set()
                _out(f"< {_show(message)}")

    reading = asyncio.ensure_future(reader())

    async def drain() -> None:
        """Wait (bounded by --wait) until every message sent has had an answer, or the connection ends."""
        deadline = loop.time() + args.wait
        while counts["received"] < counts["sent"] and not reading.done():
            progress.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(progress.wait(), remaining)

    async def writer() -> None:
        while True:
            line = await lines.get()
            if line is None:  # stdin ended: print what comes back, then close normally
                await drain()
                await ws.close(1000, "")
                return
            if line.startswith("/") and not line.startswith("//"):
                if line.startswith("/close"):
                    await drain()
                if not await _command(ws, line, counts):
                    return
                continue
            await ws.send(line[1:] if line.startswith("//") else line)
            counts["sent"] += 1

    writing = asyncio.ensure_future(writer())
    status = 0
    try:
        await asyncio.wait({reading, writing}, return_when=asyncio.FIRST_COMPLETED)
        if writing.done() and writing.exception() is not None:
            _info(f"error: {writing.exception()}")
            status = 1
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(reading), args.wait + 5)
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C: asyncio.run() cancels this task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(1000, ""), 5)
        status = 130  # the shell's convention for SIGINT (128 + 2), as main() returns before connecting
    finally:
        for task in (reading, writing):
            task.cancel()
    _info(f"disconnected ({ws.close_code} {ws.close_reason})".replace(" )", ")"))
    return status


# --------------------------------------------------------------------------- bench


def _find_bench_dir() -> Path | None:
    candidates = [Path(__file__).resolve().parents[2] / "bench", Path.cwd() / "bench"]
    for path in candidates:
        if (path / "bench_echo.py").is_file() or (path / "bench_kernels.py").is_file():
            return path
    return None


def _load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"_wscodec_bench_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _bench(args: argparse.Namespace) -> int:
    bench = _find_bench_dir()
    if bench is None:
        print(
            "the benchmarks live in the bench/ folder of a wscodec source checkout, not in the installed "
            "package; run this from a checkout (or pass through its path)",
            file=sys.stderr,
        )
        return 2
    status = 0
    quick = ["--quick"] if args.quick else []
    for name, wanted in (("bench_kernels.py", not args.echo_only), ("bench_echo.py", not args.kernels_only)):
        if not wanted:
            continue
        path = bench / name
        if not path.is_file():
            print(f"{path} not found; skipped", file=sys.stderr)
            status = status or 2
            continue
        print(f"== {name} ==", flush=True)
        result = _load(path).main(quick)
        status = status or int(result or 0)
    return status


# --------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m wscodec", description="wscodec command line tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{serve,connect,bench}")

    serve = sub.add_parser("serve", help="echo (or chat) server with a demo page at /")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    serve.add_argument("--chat", action="store_true", help="broadcast every message to every client")
    serve.add_argument("--max-size", type=int, default=2**20, metavar="BYTES", help="0 = unlimited")
    serve.add_argument("--no-compression", action="store_true", help="do not accept permessage-deflate")
    serve.add_argument("--subprotocol", action="append", default=[], metavar="NAME", help="repeatable")

    connect = sub.add_parser("connect", help="interactive client: lines in, messages out")
    connect.add_argument("url")
    connect.add_argument("--subprotocol", action="append", default=[], metavar="NAME", help="repeatable")
    connect.add_argument("--header", action="append", default=[], type=_parse_header, metavar="'Name: value'")
    connect.add_argument("--no-compression", action="store_true", help="do not offer permessage-deflate")
    connect.add_argument("--max-size", type=int, default=0, metavar="BYTES", help="0 = unlimited (default)")
    connect.add_argument(
        "--wait", type=float, default=_EOF_WAIT, metavar="S", help="after stdin ends, wait this long for replies"
    )

    bench = sub.add_parser("bench", help="kernel and echo benchmarks (from a source checkout)")
    bench.add_argument("--quick", action="store_true")
    only = bench.add_mutually_exclusive_group()
    only.add_argument("--kernels-only", action="store_true")
    only.add_argument("--echo-only", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m wscodec`` and the ``wscodec`` script."""
    args = _parser().parse_args(argv)
    if args.command == "bench":
        return _bench(args)
    runner = _serve if args.command == "serve" else _connect
    try:
        return asyncio.run(runner(args))
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
