"""Fan-out: one publisher, many subscribed clients; wscodec workers and brokers against websockets' broadcast().

    python bench/bench_fanout.py [--quick] [--clients 1000] [--sizes 16,1024] [--duration S] [--json FILE]

Every configuration runs in one go, each server in its own process(es), the clients in a separate load
process (``bench_fanout.py load``):

- ``wscodec 1w memory``: one process, the in-process broker (``server.publish``);
- ``wscodec 2w memory``: two workers (``wscodec.workers.run``, SO_REUSEPORT); the in-process broker does not
  cross processes, so the publisher holds one connection per worker and sends each message on each;
- ``wscodec 1w redis`` / ``wscodec 2w redis``: the Redis broker (a redis-server started here on a free
  loopback port); the publisher sends each message once;
- ``websockets 1p broadcast``: a single-process websockets server calling ``websockets.broadcast()``.

The subscribers are raw asyncio protocols that count bytes (the frames have a fixed size), and parse the
timestamps of a sample of connections for the delivery latency (publisher send to subscriber receipt, one
monotonic clock). The publisher keeps at most ``--window`` messages in flight (sent, not yet delivered to
every subscriber), so the servers run saturated: delivered messages per second (one message to one client
= one) and the p50/p99 latency of that state (mostly queueing behind the window). A second, short phase
keeps one message in flight for the latency of a single fan-out. Also reported: the server's memory per
connection (RSS growth while the clients connected and subscribed, all workers), the CPU the server
processes, the load process and redis-server used, and deliveries per server CPU second (steadier than
the rates when the machine is shared; Redis's own CPU is in its column, not in this one).

The ratios at the end are the issue's targets: 2 workers >= 1.6x 1 worker, one wscodec worker >= 3x
websockets' broadcast(), the Redis broker costing <= 20% against in-process at 1 worker (PASS/FAIL).
Every wait is bounded; every process started here is stopped here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SRC = os.path.join(ROOT, "src")
GREETING = 10  # bytes of the greeting frame: text, "w" + the worker's pid on 7 digits
SAMPLED = 50  # subscriber connections whose timestamps are parsed for latency
MAX_SIZE = 1 << 20


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _greeting() -> str:
    return "w" + str(os.getpid() % 10_000_000).rjust(7, "0")


# --------------------------------------------------------------------------- servers


def serve_wscodec(port: int, workers: int, broker: str | None) -> int:
    from wscodec.workers import run

    async def handler(ws: Any) -> None:
        server = ws.server
        if ws.request.path == "/pub":
            await ws.send(_greeting())
            async for message in ws:
                await server.publish("room", message)
            return
        await server.join(ws, "room")
        await ws.send(_greeting())
        await ws.wait_closed()

    def ready(address: str, bound: int) -> None:
        print(f"listening on {bound}", flush=True)

    return run(
        handler,
        "127.0.0.1",
        port,
        workers=workers,
        broker=broker,
        ready=ready,
        compression=None,
        ping_interval=None,
        max_size=MAX_SIZE,
        max_connections=None,
        slow_consumer="wait",  # never drop or close a subscriber: delivered counts must add up
        slow_consumer_limit=1 << 24,
        close_timeout=2,
    )


def serve_websockets(port: int) -> int:
    from websockets.asyncio.server import broadcast, serve

    subscribers: set[Any] = set()

    async def handler(ws: Any) -> None:
        if ws.request.path == "/pub":
            await ws.send(_greeting())
            async for message in ws:
                broadcast(subscribers, message)
            return
        subscribers.add(ws)
        try:
            await ws.send(_greeting())
            await ws.wait_closed()
        finally:
            subscribers.discard(ws)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with serve(handler, "127.0.0.1", port, compression=None, ping_interval=None, max_size=MAX_SIZE) as s:
            bound = next(iter(s.sockets)).getsockname()[1]
            print(f"listening on {bound}", flush=True)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 900)
        return 0

    return asyncio.run(main())


# --------------------------------------------------------------------------- load process

_UPGRADE = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class _State:
    def __init__(self, frame: int) -> None:
        self.frame = frame
        self.total = 0  # data bytes received by every subscriber
        self.target = 1 << 62
        self.progress = asyncio.Event()
        self.latencies: list[int] = []
        self.sampling = False


class Subscriber(asyncio.BufferedProtocol):
    """Counts bytes; a sampled one also reads the publisher's timestamp out of each fixed-size frame."""

    def __init__(self, state: _State, sampled: bool) -> None:
        self.state = state
        self.sampled = sampled
        self.buffer = bytearray(1 << 16)
        self.view = memoryview(self.buffer)
        self.head = bytearray()
        self.opened: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.pending = bytearray()  # sampled: bytes of an incomplete frame
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        if not self.opened.done():
            self.head += self.view[:nbytes]
            end = self.head.find(b"\r\n\r\n")
            if end < 0 or len(self.head) < end + 4 + GREETING:
                return
            greeting = bytes(self.head[end + 4 + 2 : end + 4 + GREETING]).decode()
            rest = self.head[end + 4 + GREETING :]
            self.opened.set_result(greeting)
            self.head = bytearray()
            if rest:
                self._data(rest, len(rest))
            return
        self._data(self.view, nbytes)

    def _data(self, data: Any, nbytes: int) -> None:
        state = self.state
        state.total += nbytes
        if state.total >= state.target:
            state.progress.set()
        if self.sampled:
            pending = self.pending
            pending += data[:nbytes]
            frame = state.frame
            if len(pending) >= frame:
                count = len(pending) // frame
                if state.sampling:
                    now = time.monotonic_ns()
                    header = 2 if frame - 2 <= 125 else 4
                    for i in range(count):
                        start = i * frame + header
                        state.latencies.append(now - int.from_bytes(pending[start : start + 8], "big"))
                del pending[: count * frame]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during the handshake: {exc}"))


class Publisher(asyncio.Protocol):
    def __init__(self) -> None:
        self.head = bytearray()
        self.opened: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.opened.done():
            return
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end >= 0 and len(self.head) >= end + 4 + GREETING:
            self.opened.set_result(bytes(self.head[end + 4 + 2 : end + 4 + GREETING]).decode())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during the handshake: {exc}"))


async def _open(loop: asyncio.AbstractEventLoop, port: int, path: str, protocol: Any) -> Any:
    transport, proto = await asyncio.wait_for(loop.create_connection(lambda: protocol, "127.0.0.1", port), 30)
    transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport.write(_UPGRADE.format(path=path).encode())
    await asyncio.wait_for(proto.opened, 30)
    return proto


def _rss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def _cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by ``pids``."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / ticks


async def load(args: argparse.Namespace) -> dict[str, Any]:
    from wscodec import encode_frame

    loop = asyncio.get_running_loop()
    size = args.size
    frame = (2 if size <= 125 else 4) + size
    state = _State(frame)
    server_pids = [int(p) for p in args.server_pids.split(",") if p]
    bus_pids = [int(p) for p in args.bus_pids.split(",") if p]
    rss_before = _rss(server_pids)
    subs: list[Subscriber] = []
    batch = 50
    for start in range(0, args.clients, batch):  # connect in bounded batches, not all at once
        group = [Subscriber(state, sampled=len(subs) + i < SAMPLED) for i in range(min(batch, args.clients - start))]
        await asyncio.gather(*(_open(loop, args.port, "/sub", s) for s in group))
        subs += group
    workers = {s.opened.result() for s in subs}
    rss_after = _rss(server_pids)
    publishers: dict[str, Publisher] = {}
    tries = 0
    while True:  # one publisher connection, or one per worker when the broker does not cross processes
        pub = await _open(loop, args.port, "/pub", Publisher())
        name = pub.opened.result()
        if name in publishers:
            pub.transport.close()
        else:
            publishers[name] = pub
        tries += 1
        if not args.per_worker or set(publishers) >= workers:
            break
        if tries > 200:
            raise RuntimeError(f"no publisher reached some worker: {sorted(publishers)} of {sorted(workers)}")
    pubs = list(publishers.values())
    clients = len(subs)
    padding = bytes(size - 8)
    sent = 0

    async def publish_until(deadline: float, window: int) -> None:
        nonlocal sent
        while loop.time() < deadline:
            delivered = state.total // frame
            if sent * clients - delivered >= window * clients:
                state.target = (sent - window + 1) * clients * frame
                state.progress.clear()
                if state.total < state.target:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(state.progress.wait(), max(0.001, deadline - loop.time()))
                continue
            data = encode_frame(2, time.monotonic_ns().to_bytes(8, "big") + padding, mask=b"\x00\x00\x00\x00")
            for pub in pubs:
                pub.transport.write(data)
            sent += 1
            if sent % 4 == 0:
                await asyncio.sleep(0)

    await publish_until(loop.time() + args.warmup, args.window)
    state.sampling = True
    state.latencies.clear()
    t0, bytes0 = time.perf_counter(), state.total
    cpu0, own0, bus0 = _cpu(server_pids), time.process_time(), _cpu(bus_pids)
    await publish_until(loop.time() + args.duration, args.window)
    seconds = time.perf_counter() - t0
    server_cpu, own_cpu = _cpu(server_pids) - cpu0, time.process_time() - own0
    bus_cpu = _cpu(bus_pids) - bus0
    delivered = (state.total - bytes0) // frame
    saturated = sorted(state.latencies) or [0]
    # then the latency of one message at a time (no queueing behind the others), after a bounded drain
    state.sampling = False
    state.target = sent * clients * frame
    state.progress.clear()
    if state.total < state.target:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(state.progress.wait(), 30)
    state.latencies = []
    state.sampling = True
    await publish_until(loop.time() + min(1.5, args.duration), 1)
    state.sampling = False
    for sub in subs:
        sub.transport.abort()
    for pub in pubs:
        pub.transport.abort()
    single = sorted(state.latencies) or [0]

    def pct(values: list[int], q: float) -> float:
        return values[min(len(values) - 1, int(len(values) * q))] / 1000

    return {
        "clients": clients,
        "workers_reached": len(workers),
        "delivered": delivered,
        "seconds": seconds,
        "rate": delivered / seconds,
        "p50_us": pct(saturated, 0.5),
        "p99_us": pct(saturated, 0.99),
        "one_p50_us": pct(single, 0.5),
        "one_p99_us": pct(single, 0.99),
        "bytes_per_connection": max(0, rss_after - rss_before) / max(1, clients),
        "server_cpu": server_cpu / seconds,
        "load_cpu": own_cpu / seconds,
        "bus_cpu": bus_cpu / seconds,
        "per_cpu_second": delivered / server_cpu if server_cpu else 0.0,
    }


# --------------------------------------------------------------------------- orchestration


@dataclass
class Cell:
    config: str
    size: int
    clients: int
    rate: float
    p50_us: float  #: latency at saturation (--window messages in flight)
    p99_us: float
    one_p50_us: float  #: latency with one message in flight
    one_p99_us: float
    kib_per_connection: float
    workers_reached: int
    server_cpu: float  #: CPU cores the server processes used while measured (1.0 = one core busy)
    load_cpu: float
    bus_cpu: float  #: CPU cores redis-server used while measured (0 without Redis)
    per_cpu_second: float  #: deliveries per CPU second of the server processes


class Proc:
    """A child process that prints ``listening on PORT`` first; stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, argv: list[str], env: dict[str, str], timeout: float = 60) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        assert self.proc.stdout is not None
        buf = b""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buf and time.monotonic() < deadline:
                if sel.select(max(0.0, deadline - time.monotonic())):
                    chunk = os.read(self.proc.stdout.fileno(), 4096)
                    if not chunk:
                        break
                    buf += chunk
        if not buf.startswith(b"listening on "):
            self.stop()
            raise RuntimeError(f"{argv} did not start: {buf!r}")
        self.port = int(buf.split(b"\n", 1)[0].split()[-1])

    def pids(self) -> list[int]:
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError, IndexError), open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                        found.append(int(entry))
        return found or [self.proc.pid]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Redis:
    def __init__(self, path: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [path, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1) as c:
                c.sendall(b"PING\r\n")
                if c.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    import importlib.util

    if importlib.util.find_spec("wscodec") is None and os.path.isdir(SRC):
        env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run_cell(
    config: str, server: list[str], size: int, args: argparse.Namespace, per_worker: bool, bus: list[int]
) -> Cell:
    env = _env()
    proc = Proc([sys.executable, __file__, "server", *server, "--port", "0"], env)
    try:
        pids = proc.pids()
        cmd = [
            sys.executable, __file__, "load", "--port", str(proc.port), "--clients", str(args.clients),
            "--size", str(size), "--duration", str(args.duration), "--warmup", str(args.warmup),
            "--window", str(args.window), "--server-pids", ",".join(map(str, pids)),
            "--bus-pids", ",".join(map(str, bus)),
        ] + (["--per-worker"] if per_worker else [])  # fmt: skip
        timeout = 120 + args.duration + args.warmup
        out = subprocess.run(cmd, capture_output=True, env=env, timeout=timeout, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"load process failed for {config}: {out.stderr.decode(errors='replace')[-2000:]}")
        result = json.loads(out.stdout.decode().strip().splitlines()[-1])
    finally:
        proc.stop()
    return Cell(
        config,
        size,
        result["clients"],
        result["rate"],
        result["p50_us"],
        result["p99_us"],
        result["one_p50_us"],
        result["one_p99_us"],
        result["bytes_per_connection"] / 1024,
        result["workers_reached"],
        result["server_cpu"],
        result["load_cpu"],
        result["bus_cpu"],
        result["per_cpu_second"],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="role")
    p_server = sub.add_parser("server")
    p_server.add_argument("impl", choices=["wscodec", "websockets"])
    p_server.add_argument("--port", type=int, default=0)
    p_server.add_argument("--workers", type=int, default=1)
    p_server.add_argument("--broker", default=None)
    p_load = sub.add_parser("load")
    for p in (parser, p_load):
        p.add_argument("--clients", type=int, default=1000)
        p.add_argument("--duration", type=float, default=None, help="seconds measured per cell (default 3)")
        p.add_argument("--warmup", type=float, default=None, help="seconds of warm-up per cell (default 1)")
        p.add_argument("--window", type=int, default=32, help="messages in flight (not yet delivered to all)")
    p_load.add_argument("--port", type=int, required=True)
    p_load.add_argument("--size", type=int, required=True)
    p_load.add_argument("--server-pids", default="")
    p_load.add_argument("--bus-pids", default="")
    p_load.add_argument("--per-worker", action="store_true")
    parser.add_argument("--quick", action="store_true", help="100 clients, 1 s per cell")
    parser.add_argument("--sizes", default="16,1024")
    parser.add_argument("--configs", default="", help="comma-separated subset of the configuration names")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target FAILs")
    args = parser.parse_args(argv)
    _raise_nofile()

    if args.role == "server":
        if args.impl == "websockets":
            return serve_websockets(args.port)
        return serve_wscodec(args.port, args.workers, args.broker)
    args.duration = args.duration if args.duration is not None else (1.0 if getattr(args, "quick", False) else 3.0)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if getattr(args, "quick", False) else 1.0)
    if not 0 < args.duration <= 60 or not 0 <= args.warmup <= 10 or not 1 <= args.clients <= 20000:
        parser.error("--duration in (0, 60], --warmup in [0, 10], --clients in [1, 20000]")
    if args.role == "load":
        print(json.dumps(asyncio.run(load(args))), flush=True)
        return 0

    if args.quick:
        args.clients = min(args.clients, 100)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if any(not 8 <= s <= 65535 for s in sizes):
        parser.error("sizes must be in [8, 65535] (a timestamp is 8 bytes)")
    redis_path = shutil.which("redis-server")
    redis = Redis(redis_path) if redis_path else None
    if redis is None:
        print("redis-server not found (Debian package redis-server): the Redis rows are skipped", file=sys.stderr)
    configs: list[tuple[str, list[str], bool]] = [
        ("wscodec 1w memory", ["wscodec", "--workers", "1"], False),
        ("wscodec 2w memory", ["wscodec", "--workers", "2"], True),
    ]
    if redis is not None:
        configs += [
            ("wscodec 1w redis", ["wscodec", "--workers", "1", "--broker", redis.url], False),
            ("wscodec 2w redis", ["wscodec", "--workers", "2", "--broker", redis.url], False),
        ]
    configs.append(("websockets 1p broadcast", ["websockets"], False))
    if args.configs:
        wanted = {c.strip() for c in args.configs.split(",")}
        configs = [c for c in configs if c[0] in wanted]
    cells: list[Cell] = []
    print(
        f"fan-out: 1 publisher, {args.clients} subscribers in a load process, window {args.window}, "
        f"{args.warmup} s warm-up + {args.duration} s per cell; {os.cpu_count()} CPUs",
        flush=True,
    )
    print(f"{'':50} {'saturated':^17} {'1 in flight':^17}")
    print(
        f"{'configuration':26} {'size':>6} {'delivered msg/s':>16} {'p50 ms':>8} {'p99 ms':>8} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'KiB/conn':>9} {'srv CPU':>8} {'load CPU':>9} {'Redis CPU':>9} {'msg/CPU-s':>10}"
    )
    try:
        for size in sizes:
            for name, server, per_worker in configs:
                bus = [redis.proc.pid] if redis is not None and "--broker" in server else []
                cell = _run_cell(name, server, size, args, per_worker, bus)
                cells.append(cell)
                print(
                    f"{name:26} {size:>6} {cell.rate:>16,.0f} {cell.p50_us / 1000:>8.2f} {cell.p99_us / 1000:>8.2f} "
                    f"{cell.one_p50_us / 1000:>8.2f} {cell.one_p99_us / 1000:>8.2f} "
                    f"{cell.kib_per_connection:>9.1f} {cell.server_cpu:>8.2f} {cell.load_cpu:>9.2f} "
                    f"{cell.bus_cpu:>9.2f} {cell.per_cpu_second:>10,.0f}",
                    flush=True,
                )
    finally:
        if redis is not None:
            redis.stop()

    failed = False
    rate = {(c.config, c.size): c.rate for c in cells}
    print("\nratios (targets of issue 13):")
    for size in sizes:
        checks = [
            ("2 workers / 1 worker, memory", ("wscodec 2w memory", "wscodec 1w memory"), 1.6, "min"),
            ("2 workers / 1 worker, redis", ("wscodec 2w redis", "wscodec 1w redis"), 1.6, "min"),
            ("wscodec 1w / websockets broadcast()", ("wscodec 1w memory", "websockets 1p broadcast"), 3.0, "min"),
            ("redis / memory at 1 worker", ("wscodec 1w redis", "wscodec 1w memory"), 0.8, "min"),
        ]
        for label, (a, b), target, _ in checks:
            if (a, size) not in rate or (b, size) not in rate:
                continue
            ratio = rate[(a, size)] / rate[(b, size)] if rate[(b, size)] else 0.0
            ok = ratio >= target
            failed |= not ok
            print(f"  {size:>5} B  {label:38} {ratio:6.2f}x  (target >= {target}x)  {'PASS' if ok else 'FAIL'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(c) for c in cells], f, indent=2)
    with contextlib.suppress(statistics.StatisticsError):
        mem = statistics.median(c.kib_per_connection for c in cells if c.config.startswith("wscodec"))
        print(f"\nwscodec server memory per subscribed connection (median over cells): {mem:.1f} KiB")
    return 1 if failed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
