"""Kernel benchmarks, side by side with the peers, in one run: ``python bench/bench_kernels.py [--quick]``.

Measures the compiled kernels (``wscodec._speedups``) and the pure twin (``wscodec._pure``) against:

* masking: ``websockets.speedups.apply_mask``, aiohttp's Cython mask (in place on a bytearray) and
  ``bytearray(data)`` (one plain copy, the floor for anything that returns a new buffer);
* UTF-8: ``bytes.decode("utf-8")`` on 64 KiB of ASCII and of Chinese text, one shot and in 4 KiB chunks;
* frame decoding: 16 MiB of masked client frames (16-byte and 125-byte binary payloads) fed in 64 KiB chunks,
  against wsproto's ``FrameProtocol`` and the sans-I/O ``ServerProtocol`` of websockets.

Every figure is the best of N runs timed with ``time.perf_counter``; contenders of one row are measured in
alternation so that a noisy neighbour hurts them alike. Each target of the issue prints PASS or FAIL; a peer
that is not installed prints a note and its rows are skipped. Exit status: 0 if every measured target passed.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import timeit
from collections.abc import Callable
from functools import partial
from typing import Any

try:  # run from a checkout without installing: prefer src/ only when wscodec is not importable
    import wscodec  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from wscodec import _pure

try:
    from wscodec import _speedups
except ImportError:  # pragma: no cover - depends on the build
    _speedups = None  # type: ignore[assignment]

KIB = 1024
MIB = 1024 * KIB
MASK = b"\x37\xfa\x21\x3d"

_results: list[tuple[str, bool]] = []


def _fmt_size(n: int) -> str:
    if n >= MIB:
        return f"{n // MIB} MiB"
    if n >= KIB:
        return f"{n // KIB} KiB"
    return f"{n} B"


def _fmt_rate(bytes_per_s: float) -> str:
    if bytes_per_s >= 1e9:
        return f"{bytes_per_s / 1e9:6.2f} GB/s"
    return f"{bytes_per_s / 1e6:6.0f} MB/s"


def _fmt_time(seconds: float) -> str:
    if seconds < 1e-6:
        return f"{seconds * 1e9:7.1f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:7.2f} us"
    return f"{seconds * 1e3:7.2f} ms"


def _target(name: str, ok: bool) -> str:
    _results.append((name, ok))
    return "PASS" if ok else "FAIL"


def _calls(fn: Callable[[], Any], number: int) -> float:
    """Seconds per call. A ``partial`` is unwrapped and called directly from timeit's loop, so that the
    wrapper's own cost (tens of ns) does not blur the small sizes."""
    if isinstance(fn, partial) and not fn.keywords:
        names = [f"a{i}" for i in range(len(fn.args))]
        namespace = dict(zip(names, fn.args, strict=True), f=fn.func)
        timer = timeit.Timer(f"f({', '.join(names)})", globals=namespace)
    else:
        timer = timeit.Timer("f()", globals={"f": fn})
    return timer.timeit(number) / number


def _race(contenders: dict[str, Callable[[], Any]], number: int, repeat: int) -> dict[str, float]:
    """Best seconds per call of each contender, measured in alternation."""
    best = {name: float("inf") for name in contenders}
    for fn in contenders.values():  # warm up
        fn()
    for _ in range(repeat):
        for name, fn in contenders.items():
            fn()  # settle the allocator (the previous contender may have left it in another state)
            best[name] = min(best[name], _calls(fn, number))
    return best


def _number_for(size: int, budget: float) -> int:
    # rough cost model: 100 ns per call plus 0.15 ns per byte
    return max(1, int(budget / (100e-9 + size * 0.15e-9)))


# ---------------------------------------------------------------------------------------------------------------------
# Masking


def _mask_contenders(data: bytes, ws_apply_mask: Any, aio_mask: Any) -> dict[str, Callable[[], Any]]:
    buf = bytearray(data)
    buf2 = bytearray(data)
    contenders: dict[str, Callable[[], Any]] = {"ours": partial(_speedups.apply_mask, data, MASK)}
    if ws_apply_mask is not None:
        contenders["websockets"] = partial(ws_apply_mask, data, MASK)
    if aio_mask is not None:
        contenders["aiohttp"] = lambda: aio_mask(MASK, bytearray(data))
    contenders["bytearray"] = partial(bytearray, data)
    contenders["ours_inplace"] = partial(_speedups.apply_mask_inplace, buf, MASK)
    if aio_mask is not None:
        contenders["aiohttp_inplace"] = partial(aio_mask, MASK, buf2)
    return contenders


def bench_mask(quick: bool) -> None:
    print("\n## apply_mask: a new buffer (aiohttp: bytearray(data) + its in-place mask) and in place\n")
    ws_apply_mask = aio_mask = None
    try:
        from websockets.speedups import apply_mask as ws_apply_mask
    except ImportError:
        print("note: websockets.speedups not importable, its column is skipped")
    try:
        from aiohttp._websocket.mask import _websocket_mask_cython as aio_mask
    except ImportError:
        try:
            from aiohttp._websocket import _websocket_mask_cython as aio_mask  # type: ignore[no-redef]
        except ImportError:
            print("note: aiohttp's Cython mask not importable, its columns are skipped")
    sizes = [2, 16, 125, 1 * KIB, 4 * KIB, 64 * KIB, 1 * MIB, 16 * MIB]
    repeat = 3 if quick else 9
    budget = 0.004 if quick else 0.02
    names = ("ours", "websockets", "aiohttp", "bytearray", "pure", "ours_inplace", "aiohttp_inplace")
    print(
        f"{'size':>8} {'wscodec':>10} {'websockets':>10} {'aiohttp':>10} {'bytearray':>10} {'pure':>10}"
        f" | {'in place':>10} {'aio inpl.':>10} |  ours/ws ours/aio ours/copy inpl/aio  target"
    )
    for size in sizes:
        data = os.urandom(size)
        contenders = _mask_contenders(data, ws_apply_mask, aio_mask)
        best = _race(contenders, _number_for(size, budget), repeat)
        # the pure twin on its own: its huge temporaries would disturb the allocator for the others
        if size <= 64 * KIB or not quick:
            pure = {"pure": partial(_pure.apply_mask, data, MASK)}
            best["pure"] = _race(pure, _number_for(size * 50, budget), 2)["pure"]
        cells = [_fmt_time(best[k]) if k in best else "-" for k in names]
        nan = float("nan")
        r_ws = best["websockets"] / best["ours"] if "websockets" in best else nan
        r_aio = best["aiohttp"] / best["ours"] if "aiohttp" in best else nan
        r_copy = best["bytearray"] / best["ours"]
        r_inpl = best["aiohttp_inplace"] / best["ours_inplace"] if "aiohttp_inplace" in best else nan
        ok = not r_ws < 1.0 and not r_aio <= 1.0 and not r_inpl <= 1.0  # a missing peer (nan) passes
        if size >= 64 * KIB:
            ok = ok and r_copy >= 1.0
        verdict = _target(f"apply_mask {_fmt_size(size)}", ok)
        print(
            f"{_fmt_size(size):>8} "
            + " ".join(f"{c:>10}" for c in cells[:5])
            + " | "
            + " ".join(f"{c:>10}" for c in cells[5:])
            + f" | {r_ws:6.2f}x {r_aio:6.2f}x {r_copy:7.2f}x {r_inpl:6.2f}x   {verdict}"
        )
    print("(time per call; ratios: peer time / our time, above 1 we are faster; the copy ratio counts from 64 KiB up)")


# ---------------------------------------------------------------------------------------------------------------------
# UTF-8

_CHINESE = (
    "WebSocket 是一种网络传输协议可在单个 TCP 连接上进行全双工通信位于 OSI 模型的应用层。"
    "它使得客户端和服务器之间的数据交换变得更加简单允许服务端主动向客户端推送数据。"
)


def _text(kind: str, size: int) -> bytes:
    if kind == "ascii":
        rng = random.Random(7)
        unit = bytes(rng.randrange(32, 127) for _ in range(4096))
    else:
        unit = "".join(ch for ch in _CHINESE if ord(ch) > 0x2000).encode()  # pure 3-byte text
    out = (unit * (size // len(unit) + 1))[:size]
    while True:  # cut on a character boundary
        try:
            out.decode()
            return out
        except UnicodeDecodeError:
            out = out[:-1]


def _utf8_contenders(data: bytes) -> dict[str, Callable[[], Any]]:
    chunks = [data[i : i + 4 * KIB] for i in range(0, len(data), 4 * KIB)]
    validator = _speedups.Utf8Validator()

    def feed_all() -> bool:
        validator.reset()
        for chunk in chunks:
            validator.feed(chunk)
        return validator.finish()

    assert feed_all()
    return {
        "decode": partial(data.decode, "utf-8"),
        "validate": partial(_speedups.validate_utf8, data),
        "feed": feed_all,
        "pure": partial(_pure.validate_utf8, data),
    }


def bench_utf8(quick: bool) -> None:
    print("\n## validate_utf8 / Utf8Validator.feed (64 KiB; feed in 4 KiB chunks) vs bytes.decode('utf-8')\n")
    repeat = 3 if quick else 7
    budget = 0.005 if quick else 0.015
    print(
        f"{'text':>8} {'decode':>11} {'validate':>11} {'feed 4K':>11} {'pure val.':>11}"
        "   val/dec  feed/dec  need  target"
    )
    for kind, need in (("ascii", 2.0), ("chinese", 1.5)):
        data = _text(kind, 64 * KIB)
        assert _speedups.validate_utf8(data) and _pure.validate_utf8(data)
        best = _race(_utf8_contenders(data), _number_for(len(data), budget), repeat)
        r_val = best["decode"] / best["validate"]
        r_feed = best["decode"] / best["feed"]
        verdict = _target(f"utf8 {kind}", r_val >= need and r_feed >= need)
        rates = [_fmt_rate(len(data) / best[k]) for k in ("decode", "validate", "feed", "pure")]
        print(
            f"{kind:>8} "
            + " ".join(f"{r:>11}" for r in rates)
            + f"   {r_val:6.2f}x  {r_feed:6.2f}x  {need:3.1f}x  {verdict}"
        )


# ---------------------------------------------------------------------------------------------------------------------
# Frame decoding


def _client_frames(payload_size: int, total: int) -> bytes:
    """About ``total`` bytes of masked binary client frames with random keys (1 MiB of them, repeated)."""
    rng = random.Random(payload_size)
    unit = bytearray()
    while len(unit) < min(total, MIB):
        payload = rng.randbytes(payload_size)
        unit += _pure.encode_frame(2, payload, mask=rng.randbytes(4))
    return (bytes(unit) * (total // len(unit) + 1))[:total]


def _count_frames(stream: bytes) -> int:
    decoder = _speedups.FrameDecoder("server", None) if _speedups else _pure.FrameDecoder("server", None)
    return len(decoder.feed(stream))


def _run_wscodec(module: Any, chunks: list[bytes]) -> int:
    decoder = module.FrameDecoder("server", None)
    feed = decoder.feed
    n = 0
    for chunk in chunks:
        n += len(feed(chunk))
    return n


def _run_wsproto(chunks: list[bytes]) -> int:
    from wsproto.frame_protocol import FrameProtocol

    proto = FrameProtocol(client=False, extensions=[])
    n = 0
    for chunk in chunks:
        proto.receive_bytes(chunk)
        for frame in proto.received_frames():
            n += frame.frame_finished  # wsproto hands over a frame's payload in pieces as it arrives
    return n


_UPGRADE = (
    b"GET /bench HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def _run_websockets(chunks: list[bytes]) -> int:
    from websockets.server import ServerProtocol

    proto = ServerProtocol(max_size=None)
    proto.receive_data(_UPGRADE)
    [request] = proto.events_received()
    proto.send_response(proto.accept(request))
    proto.data_to_send()
    n = 0
    for chunk in chunks:
        proto.receive_data(chunk)
        n += len(proto.events_received())
    return n


def _best_run(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    best = float("inf")
    count = 0
    for _ in range(repeat):
        start = time.perf_counter()
        count = fn()
        best = min(best, time.perf_counter() - start)
    return best, count


def bench_decoder(quick: bool) -> None:
    total = 4 * MIB if quick else 16 * MIB
    # --quick: the slow peers get a prefix of the stream (their rate does not depend on its length)
    peer_total = 1 * MIB if quick else total
    repeat = 2 if quick else 3
    peer_repeat = 2
    print(
        f"\n## FrameDecoder.feed: masked client frames, {_fmt_size(total)} in 64 KiB chunks"
        + (f" (peers and pure on the first {_fmt_size(peer_total)})" if peer_total < total else "")
        + "\n"
    )
    have_wsproto = have_websockets = True
    try:
        import wsproto.frame_protocol  # noqa: F401
    except ImportError:
        have_wsproto = False
        print("note: wsproto not importable, its column is skipped")
    try:
        import websockets.server  # noqa: F401
    except ImportError:
        have_websockets = False
        print("note: websockets not importable, its column is skipped")
    print(
        f"{'payload':>8} {'wscodec':>12} {'pure':>12} {'wsproto':>12} {'websockets':>12}"
        "   ours/wsproto  ours/websockets  pure/wsproto  targets"
    )
    for payload_size in (16, 125):
        stream = _client_frames(payload_size, total)
        chunks = [stream[i : i + 64 * KIB] for i in range(0, len(stream), 64 * KIB)]
        peer_chunks = chunks[: peer_total // (64 * KIB)]
        rates: dict[str, float] = {}
        expect_all = _count_frames(stream)
        expect_peer = expect_all if peer_total == total else _count_frames(b"".join(peer_chunks))
        seconds, count = _best_run(partial(_run_wscodec, _speedups, chunks), repeat)
        assert count == expect_all, (count, expect_all)
        rates["ours"] = count / seconds
        seconds, count = _best_run(partial(_run_wscodec, _pure, peer_chunks), peer_repeat)
        assert count == expect_peer
        rates["pure"] = count / seconds
        if have_wsproto:
            seconds, count = _best_run(partial(_run_wsproto, peer_chunks), peer_repeat)
            assert count == expect_peer, (count, expect_peer)
            rates["wsproto"] = count / seconds
        if have_websockets:
            seconds, count = _best_run(partial(_run_websockets, peer_chunks), peer_repeat)
            assert count == expect_peer, (count, expect_peer)
            rates["websockets"] = count / seconds
        cells = [
            f"{rates[k] / 1e6:8.3f} M/s" if k in rates else f"{'-':>12}"
            for k in ("ours", "pure", "wsproto", "websockets")
        ]
        r_wp = rates["ours"] / rates["wsproto"] if "wsproto" in rates else float("nan")
        r_ws = rates["ours"] / rates["websockets"] if "websockets" in rates else float("nan")
        r_pure = rates["pure"] / rates["wsproto"] if "wsproto" in rates else float("nan")
        verdicts = []
        if "wsproto" in rates:
            verdicts.append("30x wsproto " + _target(f"decoder {payload_size} B vs wsproto", r_wp >= 30))
            verdicts.append("pure>=wsproto " + _target(f"pure decoder {payload_size} B vs wsproto", r_pure >= 1))
        if "websockets" in rates:
            verdicts.append("10x websockets " + _target(f"decoder {payload_size} B vs websockets", r_ws >= 10))
        print(
            f"{payload_size:>6} B "
            + " ".join(f"{c:>12}" for c in cells)
            + f"   {r_wp:11.1f}x  {r_ws:14.1f}x  {r_pure:11.2f}x  "
            + ", ".join(verdicts)
        )
    print("(messages per second; ratios are our rate / peer rate)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller streams (about 5 s)")
    args = parser.parse_args(argv)
    if _speedups is None:
        print("wscodec._speedups is not built: run WSCODEC_BUILD_EXTENSION=yes python setup.py build_ext --inplace")
        return 2
    print(f"# wscodec kernel benchmarks ({'quick' if args.quick else 'full'}), Python {sys.version.split()[0]}")
    _results.clear()
    start = time.perf_counter()
    bench_mask(args.quick)
    bench_utf8(args.quick)
    bench_decoder(args.quick)
    failed = [name for name, ok in _results if not ok]
    print(
        f"\n{len(_results) - len(failed)}/{len(_results)} targets met in {time.perf_counter() - start:.0f} s"
        + (f"; FAIL: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
