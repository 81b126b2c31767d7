"""Echo round trips: wscodec's asyncio server against websockets, aiohttp, picows and tornado, on asyncio's loop
and on uvloop, and Node's ws with its native add-ons, beside a raw C TCP echo server (the physical floor).

    python bench/bench_echo.py [--quick] [--repeat 3] [--servers wscodec,picows@uvloop,...] [--inflight 1,64]
                               [--sizes 16,1024,65536] [--client c|raw|picows] [--deflate] [--loop uvloop]

Each server runs in its own process (``echo_servers.py``), compression off unless ``--deflate`` (which leaves
picows out, and says so: it has no permessage-deflate). With ``--deflate`` each library runs with its own
defaults, as in ``bench_compressed_echo.py``, so the servers do not do the same work: wscodec does not
compress messages under 128 B (the others do, so at 16 B it sends them as they came), and window bits,
levels and memory levels differ between libraries; the run says so. Without ``--servers``, every server runs that can: a
peer that cannot (not installed, Node missing) is skipped with a ``skipped NAME: reason`` line; a server
named in ``--servers`` that cannot run stops the run, unless ``--skip-missing``. A server spec
``NAME@uvloop`` runs that server on uvloop (``--loop`` sets the default), and ``NAME+aiofastnet`` (or
``NAME@uvloop+aiofastnet``) on aiofastnet's transports instead of the loop's: wscodec's ``transport=``,
picows' ``use_aiofastnet=`` (picows' own default), a patched loop for websockets and aiohttp. Like is compared
with like only between specs on the same loop and transports. ``node-ws`` is Node's ``ws`` on Node's own libuv
loop (no ``@LOOP``, no ``+aiofastnet``); the first run installs it with ``npm ci`` (``_node_ws.py``), and the
server's second line says whether its native add-ons loaded. The default client, ``c``, is
a C program compiled for this run by ``_c_load.py`` with the system C compiler into a temporary directory: it
keeps the messages in flight with non-blocking I/O and parses the echoes in place, so the servers, not the
client, are what gets measured; ``floor``, a C TCP echo server compiled beside it, answers the upgrade with a
fixed 101 and echoes bytes, and every cell is reported as a ratio to it and to the fastest peer on the same
loop and transports (``-`` when no peer ran there; Node's ws is alone on its own loop).
``--client raw`` (an asyncio Protocol writing pre-built frames) and ``--client picows`` need no compiler.
Cells are interleaved: every repetition runs each cell on every server in turn, and the table gives the
median of the repetitions and their spread (min-max, as a percentage of the median).
For every cell (messages kept in flight x message size) the client keeps that many binary messages
outstanding on one connection for a bounded time, after a short warm-up, and reports round trips per
second and p50/p99 latency (send to echo). With the C client on Linux it also gives the server's CPU time per
round trip (user and system, from ``/proc``, over the measured window): with one message in flight every
server waits on the same loopback round trip, and its CPU per round trip is what tells them apart.
Every client checks what comes back: each reply must be as long as the message sent (echoes come back in
order on one connection), and the first 8 of each connection byte for byte the same; a server whose replies
are not echoes has its cell FAILED (said at once and again under the table), is left out of its other cells,
and the exit status is 2. (With ``--deflate`` the C client does not inflate compressed replies: the first 8
are inflated here afterwards and compared, the length of the later ones is not checked.)

SIGTERM stops a run as Ctrl-C does (servers stopped, the temporary directory removed, exit 130); on Linux
the servers are also killed by the kernel when this process ends in any other way (SIGKILL included).

The table ends with the issue's targets at 64 in flight, 16 B: at least 2x websockets and 1.0x picows
(PASS/FAIL), one line for every loop and transports on which wscodec and that peer both ran; all must pass.
``--check`` makes a FAIL, or a target not measured (no such pair), exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import importlib.util
import json
import os
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SRC = os.path.join(ROOT, "src")

OURS = "wscodec"
ALL_SERVERS = ("wscodec", "wscodec-nowait", "websockets", "aiohttp", "picows", "tornado", "node-ws")
#: Servers that bring their own event loop and sockets: no ``@LOOP`` and no ``+aiofastnet`` for them.
OWN_LOOP = ("node-ws",)
FLOOR = "floor"
TARGETS = {"websockets": 2.0, "picows": 1.0}  # ours / peer, at 64 in flight, 16 B
TARGET_CELL = (64, 16)
#: Replies compared byte for byte with the message sent, per connection; every reply's length is compared.
CHECK_FIRST = 8


class EchoMismatch(RuntimeError):
    """A reply is not the message sent: the server does not echo, so its cell is not a measurement."""


def check_reply(payload: bytes, reply_no: int, got: bytes | int) -> None:
    """Raise :class:`EchoMismatch` unless reply ``reply_no`` (0-based) echoes ``payload``: ``got`` is the reply's
    bytes, or only its length once the first :data:`CHECK_FIRST` have been compared."""
    length = got if isinstance(got, int) else len(got)
    if length != len(payload):
        raise EchoMismatch(f"reply {reply_no + 1} is {length} bytes, the message sent {len(payload)}: not an echo")
    if not isinstance(got, int) and got != payload:
        at = next(i for i, (a, b) in enumerate(zip(got, payload, strict=True)) if a != b)
        raise EchoMismatch(f"reply {reply_no + 1} differs from the message sent at byte {at}: not an echo")


@dataclass
class Cell:
    server: str
    inflight: int
    size: int
    round_trips: int
    seconds: float
    rate: float
    p50_us: float
    p99_us: float
    rate_min: float = 0.0
    rate_max: float = 0.0
    repeats: int = 1
    user_us: float | None = None  # the server's CPU time per round trip (C client, Linux)
    system_us: float | None = None


# --------------------------------------------------------------------------- servers


def _wscodec_root() -> str:
    """Where this process finds wscodec (an installed build, or src/ of the checkout), for the servers to share."""
    spec = importlib.util.find_spec("wscodec")
    if spec is not None and spec.origin:
        return os.path.dirname(os.path.dirname(spec.origin))
    return SRC


def echo_server_command(
    name: str, *, loop: str, transport: str, deflate: bool = False, busy_poll: float | None = None
) -> list[str]:
    """The command line of ``echo_servers.py`` serving ``name`` on any free port (it prints the port)."""
    return [
        sys.executable,
        os.path.join(HERE, "echo_servers.py"),
        name,
        "--port",
        "0",
        "--lifetime",
        "900",
        "--loop",
        loop,
        *(["--deflate"] if deflate else []),
        "--transport",
        transport,
        *(["--busy-poll", repr(busy_poll)] if busy_poll is not None else []),
    ]


def die_with_parent(sig: int = signal.SIGKILL) -> Any:
    """A ``preexec_fn`` for a server process: on Linux the kernel sends it ``sig`` when this process ends, however
    it ends (SIGKILL included), so no server outlives the benchmark; ``exec`` keeps the setting (Node's ws and the
    C floor get it too). None elsewhere: there the servers' ``--lifetime`` bounds them."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(1, sig, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl: the signal will never come
            os._exit(1)

    return preexec


class ServerProcess:
    """One echo server in its own process; ``port`` once it has said it is listening."""

    def __init__(
        self,
        name: str,
        *,
        cpu: int | None = None,
        loop: str = "asyncio",
        startup_timeout: float = 30.0,
        command: list[str] | None = None,
        deflate: bool = False,
        transport: str = "loop",
        busy_poll: float | None = None,
    ) -> None:
        self.name = name
        self.banner: list[str] = []  # what the server said after ``listening on`` (node-ws: its add-ons)
        env = dict(os.environ)
        env["PYTHONPATH"] = _wscodec_root() + os.pathsep + env.get("PYTHONPATH", "")
        if command is None:
            command = echo_server_command(name, loop=loop, transport=transport, deflate=deflate, busy_poll=busy_poll)
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            preexec_fn=die_with_parent(),
        )
        if cpu is not None and hasattr(os, "sched_setaffinity"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(self.proc.pid, {cpu})
        self.port = self._wait_listening(startup_timeout)

    def _wait_listening(self, timeout: float) -> int:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not sel.select(max(0.0, deadline - time.monotonic())):
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
                if b"\n" in buf:
                    line, _, rest = buf.decode(errors="replace").partition("\n")
                    if line.startswith("listening on "):
                        self.banner = [x for x in rest.splitlines() if x.startswith("add-ons:")]
                        return int(line.rsplit(" ", 1)[1])
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            _, raw_err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, raw_err = self.proc.communicate(timeout=5)
        err = (raw_err or b"").decode(errors="replace")
        self.stop()
        raise RuntimeError(f"{self.name} echo server did not start: {buf.decode(errors='replace')}{err[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


# --------------------------------------------------------------------------- clients


class _Meter:
    """Keeps ``inflight`` messages outstanding; records latencies of those sent after the warm-up."""

    def __init__(self, send: Any, inflight: int, warmup: float, duration: float) -> None:
        self.send = send
        self.inflight = inflight
        self.warmup = warmup
        self.duration = duration
        self.sent: collections.deque[int] = collections.deque()
        self.latencies: list[int] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.measure_from = 0
        self.stop_at = 0
        self.last_recv = 0

    def start(self) -> None:
        now = time.perf_counter_ns()
        self.measure_from = now + int(self.warmup * 1e9)
        self.stop_at = self.measure_from + int(self.duration * 1e9)
        for _ in range(self.inflight):
            self.sent.append(time.perf_counter_ns())
            self.send()

    def echoed(self) -> None:
        now = time.perf_counter_ns()
        sent = self.sent.popleft()
        if sent >= self.measure_from:
            self.latencies.append(now - sent)
            self.last_recv = now
        if now < self.stop_at:
            self.sent.append(now)
            self.send()
        elif not self.sent and not self.done.done():
            self.done.set_result(None)

    def echoed_many(self, count: int, send_many: Any) -> None:
        """``count`` echoes arrived in one read: record them, then refill the window with one write."""
        now = time.perf_counter_ns()
        popleft = self.sent.popleft
        measure_from = self.measure_from
        append = self.latencies.append
        for _ in range(count):
            sent = popleft()
            if sent >= measure_from:
                append(now - sent)
                self.last_recv = now
        if now < self.stop_at:
            self.sent.extend([now] * count)
            send_many(count)
        elif not self.sent and not self.done.done():
            self.done.set_result(None)

    def fail(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


async def _run_picows(port: int, payload: bytes, inflight: int, warmup: float, duration: float) -> _Meter:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    meter_box: list[_Meter] = []
    size = len(payload)

    class Client(WSListener):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.replies = 0
            self.parts: list[bytes] = []  # a fragmented reply, so far

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type in (WSMsgType.BINARY, WSMsgType.CONTINUATION):
                if not frame.fin or self.parts:
                    self.parts.append(frame.get_payload_as_bytes())
                    if not frame.fin:
                        return
                    got: bytes | int = b"".join(self.parts)
                    self.parts = []
                elif self.replies < CHECK_FIRST:
                    got = frame.get_payload_as_bytes()
                else:
                    got = frame.payload_size
                if got != size:  # a length (the usual case) equal to the size sent needs no more
                    try:
                        check_reply(payload, self.replies, got)
                    except EchoMismatch as exc:
                        meter_box[0].fail(exc)
                        return
                self.replies += 1
                meter_box[0].echoed()
            elif frame.msg_type == WSMsgType.CLOSE:
                meter_box[0].fail(ConnectionError(f"server closed: {frame.get_close_code()}"))

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            if meter_box:
                meter_box[0].fail(ConnectionError("disconnected"))

    transport, _listener = await ws_connect(Client, f"ws://127.0.0.1:{port}/", max_frame_size=16 * 2**20)
    binary = WSMsgType.BINARY
    meter = _Meter(lambda: transport.send(binary, payload), inflight, warmup, duration)
    meter_box.append(meter)
    try:
        meter.start()
        await asyncio.wait_for(meter.done, warmup + duration + 30)
    finally:
        transport.send_close(1000)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(transport.wait_disconnected(), 2)
        transport.disconnect()
    return meter


class _RawClient(asyncio.Protocol):
    """A minimal client: one handshake, then pre-built masked frames out, ``FrameDecoder`` in."""

    def __init__(self) -> None:
        from wscodec import FrameDecoder

        self.decoder = FrameDecoder("client", 2**31)
        self.handshake_buf = b""
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.meter: _Meter | None = None
        self.frame = b""
        self.payload = b""
        self.replies = 0
        self.parts: list[bytes] = []  # a fragmented reply, so far
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(  # type: ignore[attr-defined]
            (
                "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        if not self.opened.done():
            self.handshake_buf += data
            head, sep, rest = self.handshake_buf.partition(b"\r\n\r\n")
            if not sep:
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(ConnectionError(head.decode(errors="replace")))
                return
            self.opened.set_result(None)
            data = rest
            if not data:
                return
        meter = self.meter
        echoes = 0
        size = len(self.payload)
        for frame in self.decoder.feed(data):
            if frame.opcode in (1, 2, 0):
                if not frame.fin or self.parts:
                    self.parts.append(frame.payload)
                    if not frame.fin:
                        continue
                    got = b"".join(self.parts)
                    self.parts = []
                else:
                    got = frame.payload
                if len(got) != size or self.replies < CHECK_FIRST:
                    try:
                        check_reply(self.payload, self.replies, got)
                    except EchoMismatch as exc:
                        if meter is not None:
                            meter.fail(exc)
                        return
                self.replies += 1
                echoes += 1
            elif frame.opcode == 8 and meter is not None:
                meter.fail(ConnectionError("server closed"))
        if echoes and meter is not None:
            meter.echoed_many(echoes, self.send_many)

    def send_many(self, count: int) -> None:
        assert self.transport is not None
        self.transport.write(self.frame * count if count > 1 else self.frame)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during handshake"))
        if self.meter is not None:
            self.meter.fail(exc or ConnectionError("disconnected"))


async def _run_raw(port: int, payload: bytes, inflight: int, warmup: float, duration: float) -> _Meter:
    from wscodec import encode_frame

    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(_RawClient, "127.0.0.1", port)
    try:
        await asyncio.wait_for(client.opened, 10)
        client.frame = encode_frame(2, payload, mask=os.urandom(4))
        client.payload = payload
        meter = _Meter(lambda: client.send_many(1), inflight, warmup, duration)
        client.meter = meter
        meter.start()
        await asyncio.wait_for(meter.done, warmup + duration + 30)
        transport.write(encode_frame(8, b"\x03\xe8", mask=os.urandom(4)))
        await asyncio.sleep(0.05)
    finally:
        transport.close()
    return meter


CLIENTS = {"picows": _run_picows, "raw": _run_raw}
C_CLIENT: list[str] = []  # the compiled client's path, once built (--client c)


def _json_records(size: int) -> list[dict[str, Any]]:
    """JSON records of a typical API message, at least ``size`` bytes once serialized (deterministic)."""
    records: list[dict[str, Any]] = []
    i = 0
    while len(json.dumps(records)) < size:
        records.append(
            {
                "id": i,
                "user": f"user{i * 7919 % 10007}",
                "email": f"user{i * 7919 % 10007}@example.com",
                "active": i % 3 == 0,
                "score": round((i * 2654435761 % 2**32) / 2**32, 6),
                "tags": ["alpha", "beta", "gamma", "delta"][: i % 5],
            }
        )
        i += 1
    return records


def _c_payload(size: int) -> bytes:
    """The message the C client sends: ``size`` bytes of its payload file, repeated, or bytes 0..255 repeated."""
    if len(C_CLIENT) > 1:
        with open(C_CLIENT[1], "rb") as f:
            data = f.read()
    else:
        data = bytes(range(256))
    return (data * (size // len(data) + 1))[:size]


def _check_compressed(replies: list[str], size: int) -> None:
    """Inflate the compressed replies the C client kept (the first ones, in order) and compare each with the
    message sent; one that does not inflate is not an echo either."""
    if not replies:
        return
    payload = _c_payload(size)
    inflater = zlib.decompressobj(wbits=-15)
    for i, data in enumerate(replies):
        try:
            got, inflater = _inflate_message(inflater, bytes.fromhex(data))
        except zlib.error as exc:
            raise EchoMismatch(f"compressed reply {i + 1} does not inflate ({exc}): not an echo") from None
        check_reply(payload, i, got)


def _inflate_message(inflater: Any, data: bytes) -> tuple[bytes, Any]:
    """One message's payload inflated, and the inflater for the next message. RFC 7692: the sender removed
    the trailer of its last block (section 7.2.1), put back here unless the stream ended with the message;
    a stream may end with a BFINAL block anywhere, a new one with an empty window following (7.2.3.4)."""
    parts = []
    while True:
        parts.append(inflater.decompress(data))
        if not inflater.eof:
            parts.append(inflater.decompress(b"\x00\x00\xff\xff"))
            return b"".join(parts), inflater
        data = inflater.unused_data
        inflater = zlib.decompressobj(wbits=-15)
        if not data:
            return b"".join(parts), inflater


def _cpu_ticks(pid: int) -> tuple[int, int] | None:
    """User and system CPU time of process ``pid`` so far, in clock ticks (None off Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]), int(fields[12])


def _run_c(
    port: int, size: int, inflight: int, warmup: float, duration: float, deflate: bool, server_pid: int | None = None
) -> dict[str, Any]:
    """Run the C client once; with ``server_pid``, add the server's CPU µs per round trip over the measured
    window (sampled once the warm-up is over and again when the client is done)."""
    proc = subprocess.Popen(
        [
            C_CLIENT[0],
            str(port),
            str(inflight),
            str(size),
            str(warmup),
            str(duration),
            "1" if deflate else "0",
            *C_CLIENT[1:],
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=die_with_parent(),
    )
    before = after = None
    try:
        if server_pid is not None:
            time.sleep(warmup + 0.005)  # (the client's clock starts after its handshake, a millisecond or so)
            before = _cpu_ticks(server_pid)
        out, err = proc.communicate(timeout=warmup + duration + 60)
        if server_pid is not None:
            after = _cpu_ticks(server_pid)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if proc.returncode == 3:  # a reply that is not the message sent
        raise EchoMismatch(err.strip()[-500:].removeprefix("client: "))
    if proc.returncode != 0:
        raise RuntimeError(f"C client failed: {err.strip()[-500:]}")
    result: dict[str, Any] = json.loads(out)
    _check_compressed(result.pop("compressed", []), size)
    if before is not None and after is not None and result["round_trips"]:
        tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
        result["user_us"] = (after[0] - before[0]) * tick_us / result["round_trips"]
        result["system_us"] = (after[1] - before[1]) * tick_us / result["round_trips"]
    return result


def _percentile(sorted_ns: list[int], q: float) -> float:
    if not sorted_ns:
        return float("nan")
    index = min(len(sorted_ns) - 1, int(q * len(sorted_ns)))
    return sorted_ns[index] / 1000.0


async def measure(
    client: str,
    server: str,
    port: int,
    inflight: int,
    size: int,
    warmup: float,
    duration: float,
    deflate: bool = False,
    server_pid: int | None = None,
) -> Cell:
    if client == "c":
        got = _run_c(port, size, inflight, warmup, duration, deflate, server_pid)
        rate = got["round_trips"] / max(1e-9, got["seconds"])
        return Cell(
            server,
            inflight,
            size,
            got["round_trips"],
            got["seconds"],
            rate,
            got["p50_us"],
            got["p99_us"],
            user_us=got.get("user_us"),
            system_us=got.get("system_us"),
        )
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    meter = await CLIENTS[client](port, payload, inflight, warmup, duration)
    lat = sorted(meter.latencies)
    seconds = max(1e-9, (meter.last_recv - meter.measure_from) / 1e9)
    return Cell(
        server=server,
        inflight=inflight,
        size=size,
        round_trips=len(lat),
        seconds=round(seconds, 3),
        rate=len(lat) / seconds,
        p50_us=_percentile(lat, 0.50),
        p99_us=_percentile(lat, 0.99),
    )


# --------------------------------------------------------------------------- report


def _size_label(size: int) -> str:
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} B"


def parse_spec(spec: str) -> tuple[str, str | None, str]:
    """``NAME[@LOOP][+aiofastnet]`` as (name, loop or None for --loop's, transport)."""
    base, plus, transport = spec.partition("+")
    name, at, loop = base.partition("@")
    return name, (loop if at else None), (transport if plus else "loop")


def _valid_spec(spec: str) -> bool:
    """A known server, loop and transports; tornado uses no asyncio transports, so never aiofastnet's; Node's
    ws runs on Node's loop and sockets only."""
    name, loop, transport = parse_spec(spec)
    return (
        name in ALL_SERVERS
        and loop in (None, "asyncio", "uvloop")
        and transport in ("loop", "aiofastnet")
        and not (name == "tornado" and transport == "aiofastnet")
        and not (name in OWN_LOOP and (loop is not None or transport != "loop"))
    )


def server_name(spec: str) -> str:
    """The implementation a spec runs (``picows`` for ``picows@uvloop+aiofastnet``)."""
    return parse_spec(spec)[0]


def _is_ours(server: str) -> bool:
    return server_name(server) in (OURS, OURS + "-nowait")


def setting(spec: str, loop: str = "asyncio") -> str:
    """The loop and transports a spec runs on (``loop``: ``--loop``, for a spec without ``@LOOP``): specs are
    compared only within one setting. Node's ws has its own (``node``)."""
    name, spec_loop, transport = parse_spec(spec)
    if name in OWN_LOOP:
        return "node"
    return (spec_loop or loop) + ("+aiofastnet" if transport == "aiofastnet" else "")


def format_table(cells: list[Cell], loop: str = "asyncio") -> str:
    """One row per server and cell: median rate, spread, latency, and ratios to the fastest peer on the same
    loop and transports (the best server there that is neither wscodec nor the floor; "-" when there is none)
    and to the floor."""
    groups: dict[tuple[int, int], list[Cell]] = collections.defaultdict(list)
    for c in cells:
        groups[(c.inflight, c.size)].append(c)
    lines = [
        f"{'in flight':>9}  {'size':>7}  {'server':<32} {'round trips/s':>13}  {'spread':>7}  {'p50 us':>9}  "
        f"{'p99 us':>9}  {'/fastest peer':>13}  {'/floor':>7}  {'cpu/rt us':>9}  {'user':>6}",
    ]
    lines.append("-" * len(lines[0]))
    for (_inflight, _size), group in groups.items():
        fastest: dict[str, float] = {}
        for c in group:
            if not _is_ours(c.server) and c.server != FLOOR:
                where = setting(c.server, loop)
                fastest[where] = max(fastest.get(where, 0.0), c.rate)
        floor = next((c.rate for c in group if c.server == FLOOR), 0.0)
        for c in group:
            spread = (c.rate_max - c.rate_min) / c.rate * 100 if c.rate > 0 and c.repeats > 1 else 0.0
            peer = 0.0 if c.server == FLOOR else fastest.get(setting(c.server, loop), 0.0)
            vs_peer = f"{c.rate / peer:13.2f}" if peer > 0 else f"{'-':>13}"
            vs_floor = f"{c.rate / floor:7.2f}" if floor > 0 else f"{'-':>7}"
            if c.user_us is not None and c.system_us is not None:
                cpu = f"{c.user_us + c.system_us:9.1f}  {c.user_us:6.1f}"
            else:
                cpu = f"{'-':>9}  {'-':>6}"
            lines.append(
                f"{c.inflight:>9}  {_size_label(c.size):>7}  {c.server:<32} {c.rate:>13,.0f}  {spread:>6.1f}%  "
                f"{c.p50_us:>9.1f}  {c.p99_us:>9.1f}  {vs_peer}  {vs_floor}  {cpu}"
            )
    return "\n".join(lines)


def check_targets(cells: list[Cell], loop: str = "asyncio") -> tuple[list[str], bool]:
    """The targets at :data:`TARGET_CELL`, wscodec against each peer on every loop and transports both ran on
    (one line each; all must pass). A target with no such pair is not measured, and not met under --check."""
    inflight, size = TARGET_CELL
    at_target = {
        (server_name(c.server), setting(c.server, loop)): c
        for c in cells
        if (c.inflight, c.size) == TARGET_CELL and c.server != FLOOR
    }
    lines: list[str] = []
    ok = True
    for peer, target in TARGETS.items():
        pairs = [
            (where, ours, at_target.get((peer, where))) for (name, where), ours in at_target.items() if name == OURS
        ]
        pairs = [(where, ours, other) for where, ours, other in pairs if other is not None and other.rate > 0]
        label = f"target ours/{peer} >= {target:.1f}x at {inflight} in flight, {size} B"
        if not pairs:
            lines.append(f"{label}: not measured (no {OURS} and {peer} in that cell on the same loop and transports)")
            ok = False  # under --check, a target not measured is not met
            continue
        for where, ours, other in pairs:
            assert other is not None
            ratio = ours.rate / other.rate
            ok = ok and ratio >= target
            lines.append(f"{label}, on {where}: {ratio:.2f}x {'PASS' if ratio >= target else 'FAIL'}")
    return lines, ok


# --------------------------------------------------------------------------- main


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


async def _run_all(args: argparse.Namespace) -> tuple[list[Cell], dict[str, str]]:
    """The cells measured, and the servers whose replies were not echoes (what was wrong): those are left out of
    their remaining cells."""
    servers: dict[str, ServerProcess] = {}
    failed: dict[str, str] = {}
    samples: dict[tuple[str, int, int], list[Cell]] = collections.defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="wscodec-bench-") as tmp:
        try:
            if args.client == "c":
                sys.path.insert(0, HERE)
                import _c_load

                client_exe, echo_exe = _c_load.build(tmp)
                C_CLIENT[:] = [client_exe]
                if args.deflate:  # compressible like real traffic: JSON records, not a byte ramp
                    payload_file = os.path.join(tmp, "payload.json")
                    with open(payload_file, "w") as f:
                        json.dump(_json_records(max(args.sizes)), f)
                    C_CLIENT.append(payload_file)
            if any(server_name(spec) == "node-ws" for spec in args.servers):
                sys.path.insert(0, HERE)
                import _node_ws

                # npm ci, the first time: not a cost of any cell
                problem = "node is not on PATH" if shutil.which("node") is None else _node_ws.install()
                if problem is not None:
                    if args.explicit:
                        raise SystemExit(f"node-ws: {problem}")
                    print(f"skipped node-ws: {problem}", flush=True)
                    args.servers = [s for s in args.servers if server_name(s) != "node-ws"]
            for spec in list(args.servers):
                name, loop, transport = parse_spec(spec)
                try:
                    servers[spec] = ServerProcess(
                        name,
                        cpu=args.server_cpu,
                        loop=loop or args.loop,
                        deflate=args.deflate,
                        transport=transport,
                        busy_poll=args.busy_poll,
                    )
                except RuntimeError as exc:
                    if args.explicit or _is_ours(spec):  # named by the user, or ours: the run is about it
                        raise
                    lines = [line for line in str(exc).splitlines() if line.strip()]
                    print(f"skipped {spec}: did not start: {lines[-1] if lines else exc}", flush=True)
                    args.servers.remove(spec)
                    continue
                for line in servers[spec].banner:
                    print(f"{spec}: {line}", flush=True)
            if args.client == "c" and not args.no_floor:
                spin_us = str(round(args.busy_poll * 1e6)) if args.busy_poll else "0"
                servers[FLOOR] = ServerProcess(FLOOR, cpu=args.server_cpu, command=[echo_exe, "900", spin_us])
            for _ in range(args.repeat):  # interleaved: each cell on every server in turn, every repetition
                for inflight in args.inflight:
                    for size in args.sizes:
                        for spec, server in servers.items():
                            if spec in failed:
                                continue
                            try:
                                cell = await measure(
                                    args.client,
                                    spec,
                                    server.port,
                                    inflight,
                                    size,
                                    args.warmup,
                                    args.duration,
                                    args.deflate,
                                    server_pid=server.proc.pid,
                                )
                            except EchoMismatch as exc:
                                failed[spec] = f"{inflight} x {_size_label(size)}: {exc}"
                                print(f"{spec}: FAILED at {failed[spec]}; left out of the other cells", flush=True)
                                continue
                            samples[(spec, inflight, size)].append(cell)
                            if args.verbose:
                                print(
                                    f"  {spec:<18} {inflight:>3} x {_size_label(size):>7}: {cell.rate:,.0f}/s",
                                    flush=True,
                                )
        finally:
            for server in servers.values():
                server.stop()
    cells = []
    for (spec, inflight, size), runs in samples.items():
        if spec in failed:
            continue
        rates = [c.rate for c in runs]
        cells.append(
            Cell(
                server=spec,
                inflight=inflight,
                size=size,
                round_trips=int(statistics.median(c.round_trips for c in runs)),
                seconds=round(statistics.median(c.seconds for c in runs), 3),
                rate=statistics.median(rates),
                p50_us=statistics.median(c.p50_us for c in runs),
                p99_us=statistics.median(c.p99_us for c in runs),
                rate_min=min(rates),
                rate_max=max(rates),
                repeats=len(runs),
                user_us=_median_or_none([c.user_us for c in runs]),
                system_us=_median_or_none([c.system_us for c in runs]),
            )
        )
    # Group the table by cell so that ratios sit next to each other.
    order = {name: i for i, name in enumerate([*args.servers, FLOOR])}
    cells.sort(key=lambda c: (args.inflight.index(c.inflight), args.sizes.index(c.size), order[c.server]))
    return cells, failed


def _median_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0.5 s per cell instead of 2 s")
    parser.add_argument("--duration", type=float, default=None, help="seconds measured per cell")
    parser.add_argument("--warmup", type=float, default=None, help="seconds of warm-up per cell")
    parser.add_argument(
        "--servers",
        help="comma-separated, from " + ",".join(ALL_SERVERS) + " (default: all; those that cannot run are skipped)",
    )
    parser.add_argument(
        "--skip-missing", action="store_true", help="skip the peers of --servers that cannot run, as the defaults'"
    )
    parser.add_argument("--inflight", default="1,64", help="messages kept in flight, comma-separated")
    parser.add_argument("--sizes", default="16,1024,65536", help="message sizes in bytes, comma-separated")
    parser.add_argument("--client", choices=sorted([*CLIENTS, "c"]), default="c")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved repetitions per cell (median, spread)")
    parser.add_argument(
        "--deflate",
        action="store_true",
        help="permessage-deflate on, each library with its own defaults (picows has none: skipped)",
    )
    parser.add_argument("--no-floor", action="store_true", help="without the raw C TCP echo server")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio", help="every server's event loop")
    parser.add_argument("--no-pin", action="store_true", help="do not pin client and server to separate CPUs")
    parser.add_argument(
        "--busy-poll",
        type=float,
        metavar="SECONDS",
        help="every server (and the C floor) keeps polling this long after each message instead of sleeping",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target FAILs or is not measured")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    args.duration = args.duration if args.duration is not None else (0.5 if args.quick else 2.0)
    args.warmup = args.warmup if args.warmup is not None else (0.1 if args.quick else 0.3)
    if not 0 < args.duration <= 60 or not 0 <= args.warmup <= 10:
        parser.error("--duration must be in (0, 60] and --warmup in [0, 10]")
    # named servers must run; of the defaults (or with --skip-missing), those that cannot are skipped
    args.explicit = args.servers is not None and not args.skip_missing
    args.servers = [s for s in (args.servers or ",".join(ALL_SERVERS)).split(",") if s]
    unknown = {s for s in args.servers if not _valid_spec(s)}
    if unknown:
        parser.error(
            f"unknown servers: {', '.join(sorted(unknown))} (NAME[@uvloop][+aiofastnet], NAME from "
            f"{', '.join(ALL_SERVERS)}; tornado uses no asyncio transports; node-ws runs on Node's own loop)"
        )
    if args.busy_poll is not None and not 0 < args.busy_poll <= 0.01:
        parser.error("--busy-poll must be in (0, 0.01] seconds")
    if not 1 <= args.repeat <= 20:
        parser.error("--repeat must be in [1, 20]")
    if args.deflate and any(server_name(s) == "picows" for s in args.servers):
        print("picows left out: --deflate, and picows has no permessage-deflate", flush=True)
        args.servers = [s for s in args.servers if server_name(s) != "picows"]
    if args.client != "c" and args.deflate:
        parser.error("--deflate needs --client c")
    args.servers.sort(key=lambda s: not _is_ours(s))  # ours first, so its rows lead each group
    args.inflight = _ints(args.inflight)
    args.sizes = _ints(args.sizes)
    if args.client == "raw" and importlib.util.find_spec("wscodec") is None:
        sys.path.insert(0, SRC)

    args.server_cpu = None
    if not args.no_pin and hasattr(os, "sched_getaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) >= 2:
            os.sched_setaffinity(0, {cpus[0]})
            args.server_cpu = cpus[1]

    started = time.monotonic()
    print(
        f"echo benchmark: client={args.client}, {args.duration:g} s per cell after {args.warmup:g} s warm-up, "
        f"{args.repeat} repetitions, binary messages, "
        f"compression {'deflate (each library with its own defaults)' if args.deflate else 'off'}, "
        f"servers on {args.loop} unless NAME@uvloop, "
        + (f"every server busy-polling {args.busy_poll * 1e6:g} us after each message, " if args.busy_poll else "")
        + f"python {sys.version.split()[0]}",
        flush=True,
    )
    # SIGTERM (a timeout, a plain ``kill``) stops the run as Ctrl-C does: servers stopped, temporary dir removed.
    # Both at once, even in the C client's wait (asyncio's own SIGINT handler would wait for the cell to end,
    # and Ctrl-C at a terminal has stopped the servers by then).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        cells, failed = asyncio.run(_run_all(args))
    except KeyboardInterrupt:
        print("interrupted: servers stopped", file=sys.stderr, flush=True)
        return 130
    if args.deflate:
        print(
            "--deflate: each library with its own defaults, not the same work: wscodec does not compress "
            "messages under 128 B (the others do), and window bits and levels differ between libraries"
        )
    print(format_table(cells, args.loop))
    target_lines, ok = check_targets(cells, args.loop)
    for line in target_lines:
        print(line)
    for spec, why in failed.items():
        print(f"FAILED {spec}: {why}")
    print(f"({time.monotonic() - started:.1f} s)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "client": args.client,
                    "duration": args.duration,
                    "repeat": args.repeat,
                    "busy_poll": args.busy_poll,
                    "cells": [asdict(c) for c in cells],
                    "failed": failed,  # server spec: why its replies were not echoes
                },
                fh,
                indent=2,
            )
    return 2 if failed else 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
