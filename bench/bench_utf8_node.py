"""UTF-8 validation against Node's simdutf-based ``buffer.isUtf8``, on the same bytes, interleaved.

    python bench/bench_utf8_node.py [--rounds 5] [--node node]

Inputs: Chinese text and mixed text (ASCII, Latin-1, Cyrillic, CJK, emoji) of 4 KiB, 64 KiB and 1 MiB, written
to a temporary directory that both sides read. Each round runs Node's timing script once (every input, best
of its own repetitions) and then ours (``validate_utf8`` one shot and ``Utf8Validator.feed`` on a validator
that stays on a character boundary), so that a noisy neighbour hurts both alike; every cell is the minimum
over the rounds, per call, call overhead included on both sides. Prints ns per call and ratios (Node / ours:
above 1 means wscodec is faster). Needs ``node`` >= 18.14 (Debian package ``nodejs``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

SIZES = (4096, 65536, 1 << 20)
BUDGET_NS = 40_000_000  # per input and repetition: bounded whatever the machine

NODE_SCRIPT = r"""
const { isUtf8 } = require('buffer');
const fs = require('fs');
const budget = Number(process.argv[2]);
const out = {};
for (const name of process.argv.slice(3)) {
  const buf = fs.readFileSync(name);
  const iters = Math.max(5, Math.floor(budget / (buf.length / 8)));
  let best = Infinity;
  for (let r = 0; r < 7; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iters; i++) if (!isUtf8(buf)) throw new Error('invalid ' + name);
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / iters);
  }
  out[name] = best;
}
console.log(JSON.stringify(out));
"""


def make_inputs(directory: str) -> dict[str, str]:
    rng = random.Random(14)
    chinese = "中文字符测试数据网络协议验证速度的比较和分析\uff0c我们需要更多的汉字来填充这段文本\u3002"
    pieces = ["hello world ", "héllo ", "中文 ", "😀 ", "Привет ", "abc123 ", "naïve café ", "ελληνικά "]
    paths = {}
    for size in SIZES:
        zh = (chinese * (size // len(chinese.encode()) + 1)).encode()[:size].decode("utf-8", "ignore").encode()
        parts: list[str] = []
        total = 0
        while total < size:
            piece = rng.choice(pieces)
            parts.append(piece)
            total += len(piece.encode())
        mixed = "".join(parts).encode()[:size].decode("utf-8", "ignore").encode()
        for kind, data in (("chinese", zh), ("mixed", mixed)):
            path = os.path.join(directory, f"{kind}_{size}.txt")
            with open(path, "wb") as f:
                f.write(data)
            paths[f"{kind} {size // 1024} KiB"] = path
    return paths


def best_ns(fn: Callable[[Any], Any], data: bytes) -> float:
    iters = max(5, BUDGET_NS // max(1, len(data) // 8))
    best = float("inf")
    for _ in range(7):
        start = time.perf_counter_ns()
        for _ in range(iters):
            fn(data)
        best = min(best, (time.perf_counter_ns() - start) / iters)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--node", default="node")
    parser.add_argument("--json", metavar="FILE", help="also write the results (ns per call) as JSON")
    args = parser.parse_args()
    node = shutil.which(args.node)
    if node is None:
        print(f"{args.node} not found (Debian package nodejs)", file=sys.stderr)
        return 2
    from wscodec import BACKEND, Utf8Validator, validate_utf8

    try:
        from wscodec._speedups import UTF8_IMPL
    except ImportError:
        UTF8_IMPL = "pure Python"
    validator = Utf8Validator()
    feed = validator.feed
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="wscodec-utf8-") as directory:
        inputs = make_inputs(directory)
        script = os.path.join(directory, "is_utf8.js")
        with open(script, "w") as f:
            f.write(NODE_SCRIPT)
        blobs = {}
        for label, path in inputs.items():
            with open(path, "rb") as f:
                blobs[label] = f.read()
        for _ in range(args.rounds):
            proc = subprocess.run(
                [node, script, str(BUDGET_NS), *inputs.values()],
                capture_output=True,
                text=True,
                timeout=300,
                check=True,
            )
            node_ns = json.loads(proc.stdout)
            for label, path in inputs.items():
                data = blobs[label]
                assert validate_utf8(data) and feed(data) and validator.finish()
                cell = results.setdefault(label, {"node": float("inf"), "ours": float("inf"), "feed": float("inf")})
                cell["node"] = min(cell["node"], node_ns[path])
                cell["ours"] = min(cell["ours"], best_ns(validate_utf8, data))
                cell["feed"] = min(cell["feed"], best_ns(feed, data))
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    print(f"wscodec backend {BACKEND}, UTF-8 path {UTF8_IMPL}; node {version}")
    print(f"{'input':18s} {'node ns':>10s} {'ours ns':>10s} {'feed ns':>10s} {'node/ours':>10s} {'node/feed':>10s}")
    for label, cell in results.items():
        print(
            f"{label:18s} {cell['node']:10.0f} {cell['ours']:10.0f} {cell['feed']:10.0f} "
            f"{cell['node'] / cell['ours']:10.2f} {cell['node'] / cell['feed']:10.2f}"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"backend": BACKEND, "utf8_impl": UTF8_IMPL, "node": version, "ns": results}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
