"""Instructions a server spends per echo round trip, counted by callgrind: the cost of one message at one in
flight, free of the timing noise of a shared machine.

    python bench/bench_server_cpu.py [--servers SPEC,...] [--size 16] [--round-trips 3000] [--warm-up 300]
                                     [--cache-sim]

With one message in flight every server waits on the same loopback round trip; what tells them apart is the
work each does per message, and on a busy two-core virtual machine the timings of ``bench_echo.py`` spread by
10-50%. ``valgrind --tool=callgrind`` counts the instructions a process executes instead: the same count for
the same program and input, whatever else the machine is doing. Each server (a spec of ``bench_echo.py``:
``NAME[@LOOP][+aiofastnet]``) runs under callgrind twice, answering ``--warm-up`` round
trips and then ``--warm-up`` + ``--round-trips``; the difference over ``--round-trips`` is what one round trip
costs that process in user space: the event loop, the transport, the protocol and the application's echo
handler. Start-up, imports and the handshake cancel out; the system calls' kernel time is not counted (the
servers make the same three per round trip: one ``epoll_wait``, one ``recv``, one ``send``).

The client is a blocking socket sending one masked binary frame at a time; it is not measured. The table gives
instructions per round trip and the ratio of the fewest a peer needs to each server's (above 1.0: fewer than
every peer). Needs ``valgrind`` (Debian package ``valgrind``); a run takes about a minute per server.

``--cache-sim`` runs cachegrind's cache simulation instead (32 KiB level-1 caches, as valgrind models this
machine) and adds level-1 instruction and data cache misses per round trip. Fewer instructions do not make a
faster server by themselves: at one message in flight each round trip runs a path that is cold in the
instruction cache, so the code a round trip touches counts too, and its misses show how much.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import re
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from bench_echo import (  # noqa: E402
    ServerProcess,
    _is_ours,
    _valid_spec,
    _wscodec_root,
    echo_server_command,
    parse_spec,
)

DEFAULT_SERVERS = ("wscodec-nowait@uvloop+aiofastnet", "wscodec@uvloop+aiofastnet", "picows@uvloop+aiofastnet")
_EVENTS = re.compile(rb"^events:\s*(.+)$", re.MULTILINE)
_SUMMARY = re.compile(rb"^(?:summary|totals):\s*(.+)$", re.MULTILINE)


@dataclass
class Count:
    server: str
    size: int
    round_trips: int
    instructions: float  # per round trip
    i1_misses: float | None = None  # level-1 instruction cache misses per round trip (--cache-sim)
    d1_misses: float | None = None  # level-1 data cache misses (reads and writes) per round trip


def event_totals(path: str) -> dict[str, int]:
    """Every event total a callgrind or cachegrind output file records for the whole process, by name."""
    with open(path, "rb") as f:
        text = f.read()
    events, summary = _EVENTS.search(text), _SUMMARY.search(text)
    if events is None or summary is None:
        raise RuntimeError(f"no event totals in {path}")
    names = events.group(1).decode().split()
    values = [int(v) for v in summary.group(1).split()]
    if len(names) != len(values):
        raise RuntimeError(f"{len(names)} events but {len(values)} totals in {path}")
    return dict(zip(names, values, strict=True))


def _frame(size: int) -> bytes:
    """A masked binary frame of ``size`` bytes (mask key zero: the payload goes as it is)."""
    if size < 126:
        header = bytes([0x82, 0x80 | size])
    elif size < 65536:
        header = bytes([0x82, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([0x82, 0x80 | 127]) + size.to_bytes(8, "big")
    return header + b"\0\0\0\0" + b"x" * size


def echo_round_trips(port: int, count: int, size: int, timeout: float = 60.0) -> None:
    """Open a WebSocket on ``port`` and make ``count`` round trips of ``size`` bytes, one at a time."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                raise RuntimeError("the server closed the connection during the handshake")
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            status = head.split(b"\r\n", 1)[0]
            raise RuntimeError(f"handshake refused: {status!r}")
        frame = _frame(size)
        echo_length = size + (2 if size < 126 else 4 if size < 65536 else 10)
        for _ in range(count):
            sock.sendall(frame)
            got = 0
            while got < echo_length:
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError("the server closed the connection")
                got += len(chunk)
        sock.sendall(b"\x88\x82\0\0\0\0\x03\xe8")  # Close 1000, then wait for the server's Close
        with contextlib.suppress(OSError):
            sock.recv(16)


def count_events(
    spec: str, round_trips: int, *, size: int, valgrind: str, workdir: str, cache_sim: bool = False
) -> dict[str, int]:
    """Run ``spec`` under callgrind (or cachegrind with its cache simulation), make ``round_trips`` round trips,
    stop it; its whole-process event totals (``Ir``, and with ``cache_sim`` the cache misses)."""
    name, loop, transport = parse_spec(spec)
    out = os.path.join(workdir, f"grind.{os.getpid()}.{len(os.listdir(workdir))}.out")
    tool = ["--tool=cachegrind", "--cache-sim=yes", f"--cachegrind-out-file={out}"] if cache_sim else [
        "--tool=callgrind", f"--callgrind-out-file={out}"]  # fmt: skip
    command = [valgrind, *tool, *echo_server_command(name, loop=loop or "asyncio", transport=transport)]
    server = ServerProcess(name, command=command, startup_timeout=180.0)
    try:
        echo_round_trips(server.port, round_trips, size)
        server.proc.terminate()  # SIGTERM: the server exits and valgrind writes its counts (slowly: wait)
        server.proc.wait(120)
    finally:
        server.stop()
    return event_totals(out)


def measure(spec: str, *, size: int, round_trips: int, warm_up: int, valgrind: str, cache_sim: bool = False) -> Count:
    with tempfile.TemporaryDirectory(prefix="wscodec-callgrind-") as workdir:
        base = count_events(spec, warm_up, size=size, valgrind=valgrind, workdir=workdir, cache_sim=cache_sim)
        more = count_events(
            spec, warm_up + round_trips, size=size, valgrind=valgrind, workdir=workdir, cache_sim=cache_sim
        )

    def per_round_trip(*names: str) -> float:
        return sum(more[n] - base[n] for n in names) / round_trips

    if not cache_sim:
        return Count(spec, size, round_trips, per_round_trip("Ir"))
    return Count(spec, size, round_trips, per_round_trip("Ir"), per_round_trip("I1mr"), per_round_trip("D1mr", "D1mw"))


def format_table(counts: list[Count]) -> str:
    peers = [c.instructions for c in counts if not _is_ours(c.server)]
    fewest = min(peers) if peers else None
    width = max([len(c.server) for c in counts] + [6])
    cache = any(c.i1_misses is not None for c in counts)
    extra = f"  {'I1 misses':>10}  {'D1 misses':>10}" if cache else ""
    lines = [
        f"{'server':<{width}}  {'size':>6}  {'instructions/round trip':>24}  {'fewest peer / this':>18}{extra}",
        "-" * (width + 54 + len(extra)),
    ]
    for c in counts:
        ratio = f"{fewest / c.instructions:.2f}" if fewest is not None and c.instructions > 0 else "-"
        misses = ""
        if cache:
            i1 = f"{c.i1_misses:,.0f}" if c.i1_misses is not None else "-"
            d1 = f"{c.d1_misses:,.0f}" if c.d1_misses is not None else "-"
            misses = f"  {i1:>10}  {d1:>10}"
        lines.append(f"{c.server:<{width}}  {c.size:>5} B  {c.instructions:>24,.0f}  {ratio:>18}{misses}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default=",".join(DEFAULT_SERVERS), help="comma-separated server specs")
    parser.add_argument("--size", type=int, default=16, help="message size in bytes")
    parser.add_argument("--round-trips", type=int, default=3000, help="round trips counted per server")
    parser.add_argument("--warm-up", type=int, default=300, help="round trips in the baseline run")
    parser.add_argument(
        "--cache-sim", action="store_true", help="cachegrind with cache simulation: add L1 misses per round trip"
    )
    args = parser.parse_args(argv)
    specs = [s.strip() for s in args.servers.split(",") if s.strip()]
    bad = [s for s in specs if not _valid_spec(s)]
    if bad:
        parser.error(f"unknown server spec(s): {', '.join(bad)}")
    if args.size < 0 or args.round_trips < 1 or args.warm_up < 1:
        parser.error("--size must be >= 0, --round-trips and --warm-up >= 1")
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("valgrind not found; install it with `apt-get install valgrind`", file=sys.stderr)
        return 2
    tool = "cachegrind, cache simulation" if args.cache_sim else "callgrind"
    print(
        f"server instructions per echo round trip ({tool}), one {args.size}-byte binary message in flight, "
        f"{args.round_trips} round trips after {args.warm_up}; wscodec from {_wscodec_root()}",
        flush=True,
    )
    counts = []
    for spec in specs:
        counts.append(
            measure(
                spec,
                size=args.size,
                round_trips=args.round_trips,
                warm_up=args.warm_up,
                valgrind=valgrind,
                cache_sim=args.cache_sim,
            )
        )
        print(f"  {spec}: {counts[-1].instructions:,.0f}", flush=True)
    print(format_table(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
