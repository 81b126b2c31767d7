"""The benchmark cases of ``python -m wscodec bench`` and of the pytest-benchmark suite in ``bench/``.

Shipped in the package so that ``python -m wscodec bench`` works after a plain ``pip install .``, from any
directory: wscodec's own figures always, each peer when it is installed (``pip install 'wscodec[bench]'``
installs them all), and a one-line note for each peer that is not.

Like for like, so that no ratio flatters us:

* masking: a copying mask against copying masks (websockets' ``apply_mask``; aiohttp's in-place mask charged
  for the ``bytearray(data)`` copy it needs to return a new buffer; a bare ``bytearray(data)`` copy as the
  floor), in place against in place (aiohttp's Cython mask on a bytearray);
* UTF-8: ASCII, Chinese (3-byte) and mixed text, against CPython's own decoder, one shot and incremental;
* receive: text frames through each sans-I/O connection, and a peer that hands over bytes (websockets) is
  charged for the ``.decode()`` it needs to deliver ``str`` as we do;
* send: ``str`` in, bytes for the socket out (websockets is charged for its ``.encode()``);
* frame building: unmasked (server) and masked with a random key (client), one frame per call.

Every case is a dict of zero-argument callables doing the same work; ``wscodec`` is always first. The
timing here is a best-of-N over calibrated loops, contenders measured in alternation so that a noisy
neighbour hurts them alike.
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import random
import subprocess
import sys
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TextIO

KIB = 1024
MIB = 1024 * KIB
MASK = b"\x37\xfa\x21\x3d"
GROUPS = ("kernels", "receive", "send", "frames")
# Peers: the import that proves one is there, and the extra that installs it.
PEERS = {
    "websockets": ("websockets", "bench"),
    "wsproto": ("wsproto", "bench"),
    "aiohttp": ("aiohttp", "bench"),
    "picows": ("picows", "bench"),
}
# (case id, peer, least ratio ours/peer) checked by --check on the compiled backend. Chosen with room:
# they catch a regression, not the noise of a shared machine.
TARGETS = [
    ("kernels/apply_mask copy 1 KiB", "websockets", 1.0),
    ("kernels/utf8 validate ascii 64 KiB", "stdlib", 2.0),
    ("kernels/utf8 validate chinese 64 KiB", "stdlib", 1.5),
    ("kernels/FrameDecoder 16 B frames", "wsproto", 30.0),
    ("receive/text 16 B", "websockets", 5.0),
    ("receive/text 16 B", "wsproto", 15.0),
    ("send/text 16 B", "websockets", 3.0),
]

Fn = Callable[[], Any]


@dataclass
class Case:
    """One benchmark: contenders doing the same ``work`` (``unit``: "B" or "msg") per call."""

    group: str
    name: str
    unit: str
    work: int
    contenders: dict[str, Fn] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # peer -> why it is absent

    @property
    def id(self) -> str:
        return f"{self.group}/{self.name}"


def _have(peer: str) -> bool:
    try:
        __import__(PEERS[peer][0])
    except ImportError:
        return False
    return True


def missing_peers() -> dict[str, str]:
    """The peers that are not installed, each with the extra that installs it."""
    return {peer: extra for peer, (_module, extra) in PEERS.items() if not _have(peer)}


def _size(n: int) -> str:
    return f"{n // MIB} MiB" if n >= MIB else f"{n // KIB} KiB" if n >= KIB else f"{n} B"


# --------------------------------------------------------------------------- inputs

_CHINESE = (
    "WebSocket是一种网络传输协议可在单个TCP连接上进行全双工通信位于OSI模型的应用层"
    "它使得客户端和服务器之间的数据交换变得更加简单允许服务端主动向客户端推送数据"
)


def text(kind: str, size: int) -> bytes:
    """``size`` bytes (or a few less, cut on a character boundary) of valid UTF-8: ascii, chinese or mixed."""
    if kind == "ascii":
        rng = random.Random(7)
        unit = bytes(rng.randrange(32, 127) for _ in range(4096)).decode()
    elif kind == "chinese":
        unit = "".join(ch for ch in _CHINESE if ord(ch) > 0x2000)
    else:  # mixed: mostly ASCII with accented Latin, Chinese and emoji, as chat traffic looks
        unit = "Hello, wörld! Ça va? 你好世界。 🎉 naïve café. " * 8
    data = (unit * (size // len(unit.encode()) + 2)).encode()[:size]
    return data.decode("utf-8", "ignore").encode()


def client_stream(payload: bytes, opcode: int, total: int) -> tuple[list[bytes], int]:
    """About ``total`` bytes of masked client frames carrying ``payload``, in 64 KiB chunks, and their count."""
    from ._pure import encode_frame

    frame = encode_frame(opcode, payload, mask=MASK)
    count = max(1, total // len(frame))
    stream = frame * count
    return [stream[i : i + 64 * KIB] for i in range(0, len(stream), 64 * KIB)], count


_UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def _websockets_server() -> Any:
    from websockets.server import ServerProtocol

    proto = ServerProtocol(max_size=None)
    proto.receive_data(_UPGRADE)
    (request,) = proto.events_received()
    proto.send_response(proto.accept(request))  # type: ignore[arg-type]
    proto.data_to_send()
    return proto


def _wsproto_server() -> Any:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection

    conn = WSConnection(ConnectionType.SERVER)
    conn.receive_data(_UPGRADE)
    list(conn.events())
    conn.send(AcceptConnection())
    return conn


# --------------------------------------------------------------------------- cases


def _add(case: Case, peer: str, build: Callable[[], Fn]) -> None:
    """Add ``peer``'s contender, or record why it is missing (not installed, or an API it lacks)."""
    try:
        case.contenders[peer] = build()
    except ImportError:
        case.missing[peer] = f"not installed (pip install 'wscodec[{PEERS[peer][1]}]')"
    except Exception as exc:  # an API change in a peer: say so, measure the rest
        case.missing[peer] = f"{type(exc).__name__}: {exc}"


def _aiohttp_mask() -> Any:
    import importlib

    try:
        return importlib.import_module("aiohttp._websocket.mask")._websocket_mask_cython
    except ImportError:
        return importlib.import_module("aiohttp._websocket")._websocket_mask_cython


def kernel_cases(quick: bool) -> list[Case]:
    import wscodec

    cases: list[Case] = []
    for size in (16, 1 * KIB, 64 * KIB, 1 * MIB):
        data = os.urandom(size)
        case = Case("kernels", f"apply_mask copy {_size(size)}", "B", size)
        case.contenders["wscodec"] = partial(wscodec.apply_mask, data, MASK)

        def ws(data: bytes = data) -> Fn:
            from websockets.speedups import apply_mask

            return lambda: apply_mask(data, MASK)

        def aio(data: bytes = data) -> Fn:
            mask = _aiohttp_mask()
            return lambda: mask(MASK, bytearray(data))

        _add(case, "websockets", ws)
        _add(case, "aiohttp", aio)
        case.contenders["stdlib"] = partial(bytearray, data)  # the floor: one plain copy
        cases.append(case)
    for size in (1 * KIB, 64 * KIB):
        ours_buf, peer_buf = bytearray(os.urandom(size)), bytearray(os.urandom(size))
        case = Case("kernels", f"apply_mask in place {_size(size)}", "B", size)
        case.contenders["wscodec"] = partial(wscodec.apply_mask_inplace, ours_buf, MASK)

        def aio_inplace(buf: bytearray = peer_buf) -> Fn:
            mask = _aiohttp_mask()
            return lambda: mask(MASK, buf)

        _add(case, "aiohttp", aio_inplace)
        cases.append(case)
    for kind in ("ascii", "chinese", "mixed"):
        data = text(kind, 64 * KIB)
        assert wscodec.validate_utf8(data)
        chunks = [data[i : i + 4 * KIB] for i in range(0, len(data), 4 * KIB)]
        case = Case("kernels", f"utf8 validate {kind} 64 KiB", "B", len(data))
        case.contenders["wscodec"] = partial(wscodec.validate_utf8, data)
        case.contenders["stdlib"] = partial(data.decode, "utf-8")
        cases.append(case)
        case = Case("kernels", f"utf8 incremental {kind} 64 KiB in 4 KiB", "B", len(data))
        validator = wscodec.Utf8Validator()

        def feed(chunks: list[bytes] = chunks, validator: Any = validator) -> bool:
            validator.reset()
            for chunk in chunks:
                validator.feed(chunk)
            return bool(validator.finish())

        def decode(chunks: list[bytes] = chunks) -> str:
            decoder = codecs.getincrementaldecoder("utf-8")()
            out = [decoder.decode(chunk) for chunk in chunks]
            out.append(decoder.decode(b"", final=True))
            return "".join(out)

        case.contenders["wscodec"] = feed
        case.contenders["stdlib"] = decode
        cases.append(case)
    total = 256 * KIB if quick else 2 * MIB
    for size in (16, 125):
        chunks, count = client_stream(os.urandom(size), 2, total)
        case = Case("kernels", f"FrameDecoder {size} B frames", "msg", count)

        def ours(chunks: list[bytes] = chunks, count: int = count) -> int:
            feed = wscodec.FrameDecoder("server", None).feed
            n = 0
            for chunk in chunks:
                n += len(feed(chunk))
            assert n == count
            return n

        def wsproto(chunks: list[bytes] = chunks, count: int = count) -> Fn:
            from wsproto.frame_protocol import FrameProtocol

            def run() -> int:
                proto = FrameProtocol(client=False, extensions=[])
                n = 0
                for chunk in chunks:
                    proto.receive_bytes(chunk)
                    for frame in proto.received_frames():
                        n += frame.frame_finished  # wsproto may hand a payload over in pieces
                assert n == count
                return n

            return run

        case.contenders["wscodec"] = ours
        _add(case, "wsproto", wsproto)
        cases.append(case)
    return cases


def receive_cases(quick: bool) -> list[Case]:
    from .connection import Connection

    total = 512 * KIB if quick else 4 * MIB
    cases = []
    for size, kind in ((16, "ascii"), (125, "ascii"), (1 * KIB, "mixed")):
        payload = text(kind, size)
        chunks, count = client_stream(payload, 1, total)
        label = f"text {_size(size)}" + (" mixed" if kind == "mixed" else "")
        case = Case("receive", label, "msg", count)

        def ours(chunks: list[bytes] = chunks, count: int = count) -> int:
            receive = Connection.established("server", max_message_size=None).receive_data
            n = 0
            for chunk in chunks:
                n += len(receive(chunk))
            assert n == count
            return n

        def websockets(chunks: list[bytes] = chunks, count: int = count) -> Fn:
            _websockets_server()  # fail here, at build time, if the API moved

            def run() -> int:
                proto = _websockets_server()
                n = 0
                for chunk in chunks:
                    proto.receive_data(chunk)
                    for frame in proto.events_received():
                        frame.data.decode()  # charged: websockets hands over bytes, we hand over str
                        n += 1
                assert n == count
                return n

            return run

        def wsproto(chunks: list[bytes] = chunks, count: int = count) -> Fn:
            _wsproto_server()

            def run() -> int:
                conn = _wsproto_server()
                n = 0
                for chunk in chunks:
                    conn.receive_data(chunk)
                    n += sum(1 for event in conn.events() if event.message_finished)
                assert n == count
                return n

            return run

        case.contenders["wscodec"] = ours
        _add(case, "websockets", websockets)
        _add(case, "wsproto", wsproto)
        cases.append(case)
    return cases


def send_cases(quick: bool) -> list[Case]:
    from .connection import Connection

    count = 2000 if quick else 20000
    cases = []
    for size in (16, 1 * KIB):
        message = text("ascii", size).decode()
        case = Case("send", f"text {_size(size)}", "msg", count)

        def ours(message: str = message) -> int:
            conn = Connection.established("server")
            send, drain = conn.send_text, conn.data_to_send
            for _ in range(count):
                send(message)
                drain()
            return count

        def websockets(message: str = message) -> Fn:
            _websockets_server()

            def run() -> int:
                proto = _websockets_server()
                send, drain = proto.send_text, proto.data_to_send
                for _ in range(count):
                    send(message.encode())  # charged: websockets takes bytes
                    drain()
                return count

            return run

        def wsproto(message: str = message) -> Fn:
            from wsproto.events import TextMessage

            _wsproto_server()

            def run() -> int:
                send = _wsproto_server().send
                for _ in range(count):
                    send(TextMessage(data=message))
                return count

            return run

        case.contenders["wscodec"] = ours
        _add(case, "websockets", websockets)
        _add(case, "wsproto", wsproto)
        cases.append(case)
    return cases


def frame_cases(quick: bool) -> list[Case]:
    import wscodec

    cases = []
    for masked in (False, True):
        for size in (16, 1 * KIB, 64 * KIB):
            payload = os.urandom(size)
            case = Case("frames", f"{'masked' if masked else 'unmasked'} {_size(size)}", "B", size)
            mask: Any = True if masked else None
            case.contenders["wscodec"] = partial(wscodec.encode_frame, 2, payload, mask=mask)

            def websockets(p: bytes = payload, m: bool = masked) -> Fn:
                from websockets.frames import Frame, Opcode

                frame = Frame(Opcode.BINARY, p)
                return lambda: frame.serialize(mask=m, extensions=[])

            def wsproto(p: bytes = payload, m: bool = masked) -> Fn:
                from wsproto.frame_protocol import FrameProtocol

                send = FrameProtocol(client=m, extensions=[]).send_data
                return lambda: send(p, True)

            _add(case, "websockets", websockets)
            _add(case, "wsproto", wsproto)
            cases.append(case)
    return cases


BUILDERS: dict[str, Callable[[bool], list[Case]]] = {
    "kernels": kernel_cases,
    "receive": receive_cases,
    "send": send_cases,
    "frames": frame_cases,
}


def all_cases(quick: bool, groups: tuple[str, ...] = GROUPS) -> list[Case]:
    return [case for group in groups for case in BUILDERS[group](quick)]


# --------------------------------------------------------------------------- timing


def _calibrate(fn: Fn, budget: float) -> int:
    """Calls per timing so that one timing lasts about ``budget`` seconds (at least one call)."""
    number = 1
    while True:
        elapsed = timeit.timeit(fn, number=number)
        if elapsed >= budget / 4 or number >= 1 << 24:
            return max(1, int(number * budget / max(elapsed, 1e-9)))
        number *= 4


def measure(case: Case, quick: bool, tick: Callable[[], None] | None = None) -> dict[str, float]:
    """Best seconds per call of each contender of ``case``, measured in alternation."""
    budget = 0.02 if quick else 0.1
    repeat = 3 if quick else 5
    numbers = {}
    for name, fn in list(case.contenders.items()):
        try:
            numbers[name] = _calibrate(fn, budget)
        except Exception as exc:
            if name == "wscodec":
                raise  # our own failure is a bug: loud
            del case.contenders[name]  # a peer's: noted in the output, the rest still measured
            case.missing[name] = f"failed: {type(exc).__name__}: {exc}"
    best = {name: float("inf") for name in case.contenders}
    for _ in range(repeat):
        for name, fn in case.contenders.items():
            best[name] = min(best[name], timeit.timeit(fn, number=numbers[name]) / numbers[name])
        if tick is not None:
            tick()
    return best


# --------------------------------------------------------------------------- the command


class Progress:
    """A bar redrawn in place on a terminal; one plain line per case in a pipe or a file."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total, self.done, self.stream = total, 0, stream
        self.tty = stream.isatty()
        self.start = time.monotonic()

    def show(self, label: str) -> None:
        if self.tty:
            width = 28
            filled = width * self.done // max(1, self.total)
            line = f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {label}"
            self.stream.write("\r\x1b[K" + line[:110])
        else:
            self.stream.write(f"[{self.done + 1}/{self.total}] {label}\n")
        self.stream.flush()

    def step(self) -> None:
        self.done += 1

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
        self.stream.write(f"measured {self.total} cases in {time.monotonic() - self.start:.0f} s\n")
        self.stream.flush()


def _rate(case: Case, seconds: float) -> str:
    per_s = case.work / seconds
    if case.unit == "B":
        return f"{per_s / 1e9:8.2f} GB/s" if per_s >= 1e9 else f"{per_s / 1e6:8.0f} MB/s"
    return f"{per_s / 1e6:8.3f} M/s "


def summary(cases: list[Case], results: dict[str, dict[str, float]], out: TextIO) -> None:
    """One table: our rate, then ours/peer for every peer measured (above 1: we are faster)."""
    peers = [p for p in ("websockets", "wsproto", "aiohttp", "stdlib") if any(p in r for r in results.values())]
    head = f"{'case':<50} {'wscodec':>12} " + " ".join(f"{p:>11}" for p in peers)
    out.write("\n" + head + "\n" + "-" * len(head) + "\n")
    for case in cases:
        best = results[case.id]
        cells = []
        for peer in peers:
            cells.append(f"{best[peer] / best['wscodec']:10.2f}x" if peer in best else f"{'-':>11}")
        out.write(f"{case.id:<50} {_rate(case, best['wscodec']):>12} " + " ".join(cells) + "\n")
    out.write(
        "ratios: the peer's time / ours for the same work; above 1 wscodec is faster. stdlib: bytearray copy "
        "(masking), bytes.decode (UTF-8).\n"
    )


def _checkout_echo() -> Path | None:
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        script = base / "bench" / "bench_echo.py"
        if script.is_file():
            return script
    return None


def _run_echo(quick: bool, out: TextIO, check: bool = False) -> int | None:
    """Run ``bench/bench_echo.py`` (with ``--check`` passed on); its exit status, None when not run."""
    script = _checkout_echo()
    if script is None:
        out.write("echo: skipped; the echo benchmark runs servers as processes from a source checkout "
                  "(run from the checkout's root: bench/bench_echo.py)\n")  # fmt: skip
        return None
    servers = ["wscodec", *(p for p in ("websockets", "aiohttp", "picows") if _have(p))]
    command = [sys.executable, str(script), "--servers", ",".join(servers), *(["--quick"] if quick else [])]
    command += ["--check"] if check else []
    out.write(f"echo: {' '.join(command[1:])}\n")
    out.flush()
    try:
        return subprocess.run(command, check=False, timeout=1800).returncode
    except subprocess.TimeoutExpired:
        out.write("echo: stopped after 30 minutes\n")
        return -1


def run(args: argparse.Namespace) -> int:
    """``python -m wscodec bench``: exit 0 when it ran, 1 when the echo benchmark failed; with ``--check``, 1 when
    a target was missed or not measured (its peer skipped, or ``--only echo`` not run: outside a checkout)."""
    import wscodec

    out, err = sys.stdout, sys.stderr
    groups = tuple(g for g in GROUPS if not args.only or g in args.only)
    out.write(
        f"wscodec {wscodec.__version__} bench ({'quick' if args.quick else 'full'}), backend {wscodec.BACKEND}, "
        f"Python {sys.version.split()[0]}\n"
    )
    for peer, extra in missing_peers().items():
        out.write(f"skipped peer {peer}: not installed (pip install 'wscodec[{extra}]' installs every peer)\n")
    out.flush()
    cases = all_cases(args.quick, groups) if groups else []
    results: dict[str, dict[str, float]] = {}
    progress = Progress(len(cases), err)
    for case in cases:
        progress.show(case.id)
        results[case.id] = measure(case, args.quick)
        progress.step()
    if cases:
        progress.finish()
    for case in cases:
        for peer, why in case.missing.items():
            if _have(peer):  # installed, but this case could not use it
                out.write(f"{case.id}: {peer} skipped ({why})\n")
    if cases:
        summary(cases, results, out)
    failed, unmeasured = _targets(results, out)
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps({"backend": wscodec.BACKEND, "results": results}, indent=1))
    echo_status: int | None = 0
    if "echo" in (args.only or ()) or (not args.only and not args.quick):
        echo_status = _run_echo(args.quick, out, check=args.check)
    elif not args.only:
        out.write("echo: not run with --quick (add --only echo, from a source checkout)\n")
    if echo_status:  # its own targets missed under --check, or it failed: its output above says which
        out.write(f"echo: exit status {echo_status}\n")
        return 1
    if args.check:
        if echo_status is None and "echo" in (args.only or ()):  # asked for by name, and not run
            unmeasured.append("echo")
        if failed or unmeasured:
            out.write(f"--check: {len(failed)} target(s) missed, {len(unmeasured)} not measured\n")
            return 1
    return 0


def _targets_apply() -> bool:
    """The targets are the compiled kernels' (the pure twin is measured, not held to them)."""
    import wscodec

    return wscodec.BACKEND == "cython"


def _targets(results: dict[str, dict[str, float]], out: TextIO) -> tuple[list[str], list[str]]:
    """Each target whose case was measured: PASS, FAIL, or not measured (its peer missing). The targets
    missed, and those not measured."""
    if not results:
        return [], []
    if not _targets_apply():
        out.write("targets: not checked on the pure-Python backend (they are the compiled kernels' targets)\n")
        return [], []
    failed = []
    unmeasured = []
    lines = []
    for case_id, peer, need in TARGETS:
        best = results.get(case_id)
        if best is None:
            continue  # a group not selected (--only)
        if peer not in best:
            unmeasured.append(case_id)
            lines.append(f"  not measured {case_id} vs {peer}: {peer} skipped (target {need:g}x)")
            continue
        ratio = best[peer] / best["wscodec"]
        ok = ratio >= need
        if not ok:
            failed.append(case_id)
        lines.append(f"  {'PASS' if ok else 'FAIL'} {case_id} vs {peer}: {ratio:.2f}x (target {need:g}x)")
    if lines:
        out.write("targets:\n" + "\n".join(lines) + "\n")
    return failed, unmeasured
