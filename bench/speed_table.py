"""Every cell of the speed table in one command: echo, send, receive, UTF-8 and deflate, each beside its peers.

    python bench/speed_table.py [--quick] [--keep DIR]

It runs the benchmarks that measure each cell, one after the other so that none disturbs another, each with
``--json``, and then prints one table: for each cell, wscodec against the fastest peer measured in the same
run (above 1.00 wscodec is faster), the target, and whether it is met. The raw numbers stay in ``--keep
DIR`` (the benchmarks' own JSON) for a closer look, and every line of the benchmarks' own output is shown as
they run. A benchmark that failed (an exit status other than 0 or 1, or no JSON written) is named under the
table, its cells say "not measured", and the exit status is 1; ``--keep DIR`` removes each benchmark's JSON
from an earlier run before running it, so none is shown as this run's.

* echo: ``bench_echo.py`` with the C load client, every Python server on asyncio's loop and on uvloop, Node's
  ``ws`` with its native add-ons (installed by ``npm ci`` into ``bench/node`` on the first run), the raw C
  TCP echo as the floor, 1, 8 and 64 messages in flight, 16 B, 1 KiB and 64 KiB;
* echo with busy polling: the same at 1 in flight, 16 B and 1 KiB, with ``--busy-poll 50e-6`` (every server
  and the floor polling alike; an opt-in setting, reported beside the cells, without a target);
* send and receive: ``bench_connection.py`` (``Connection`` against ``encode_frame`` and against picows'
  ``WSTransport.send`` and ``WSProtocol`` parser, driven without a network);
* UTF-8: ``bench_utf8_node.py`` (Node's simdutf-based ``buffer.isUtf8`` on the same bytes);
* deflate: ``bench_compressed_echo.py`` (a 16 KiB JSON message, against websockets and Node's ws; picows has
  no deflate).

On this project's 2-core machine the full run takes about 13 minutes, ``--quick`` under 4.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # bench_echo, beside this file, parses the echo server specs
from bench_echo import die_with_parent, server_name  # noqa: E402

#: The echo servers: ours in both styles, every Python peer, each on asyncio's loop and on uvloop; the two
#: libraries with a transport option, wscodec and picows (whose default it is), on uvloop with aiofastnet's
#: transports too; and Node's ws with its native add-ons, on Node's own loop. Each side's fastest variant
#: counts, from the same menu.
ECHO_SERVERS = (
    [
        f"{name}{loop}"
        for name in ("wscodec", "wscodec-nowait", "websockets", "aiohttp", "picows", "tornado")
        for loop in ("", "@uvloop")
    ]
    + [f"{name}@uvloop+aiofastnet" for name in ("wscodec", "wscodec-nowait", "picows")]
    + ["node-ws"]
)

OURS = {"wscodec": "async for", "wscodec-nowait": "onmessage + send_nowait"}
#: The benchmarks run, each writing ``NAME.json``.
BENCHMARKS = ("echo", "echo_busy_poll", "connection", "utf8", "deflate")
#: The window of the busy-polling echo run (``bench_echo.py --busy-poll``): every server polls alike.
BUSY_POLL = 50e-6


@dataclass
class Row:
    """One cell of the table: ``ratio`` is wscodec / the fastest peer (above 1 wscodec is faster)."""

    cell: str
    ratio: float | None
    target: float | None  # None: measured, no target
    detail: str

    @property
    def verdict(self) -> str:
        if self.ratio is None:
            return "not measured"
        if self.target is None:
            return "measured"
        return "met" if self.ratio >= self.target else "NOT MET"


def _size(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} B"


def echo_rows(echo: dict[str, Any]) -> list[Row]:
    """Each (in flight, size) cell: each of our two server styles against the fastest peer and the floor."""
    poll = echo.get("busy_poll")
    polling = f", every server busy-polling {poll * 1e6:g} us" if poll else ""
    cells: dict[tuple[int, int], dict[str, dict[str, Any]]] = {}
    for cell in echo.get("cells", []):
        cells.setdefault((cell["inflight"], cell["size"]), {})[cell["server"]] = cell
    rows = []
    for (inflight, size), servers in sorted(cells.items()):
        peers = {n: c for n, c in servers.items() if server_name(n) not in OURS and n != "floor"}
        if not peers:
            continue
        best_peer = max(peers, key=lambda n: peers[n]["rate"])
        floor = servers.get("floor")
        # 64 KiB: no target, the cells are to be measured with a client that is not the limit; busy polling
        # (every server alike) is an opt-in setting beside the cells, not one of them
        target = None if size >= 65536 or poll else 1.0 if inflight == 1 else 1.2 if inflight >= 64 else None
        for style, label in OURS.items():
            ours = {n: c for n, c in servers.items() if server_name(n) == style}
            if not ours:
                continue
            name = max(ours, key=lambda n: ours[n]["rate"])
            mine = ours[name]
            spread = (mine["rate_max"] - mine["rate_min"]) / mine["rate"] * 100 if mine.get("rate") else 0.0
            detail = (
                f"{name} {mine['rate']:,.0f}/s (spread {spread:.0f}%, p50 {mine['p50_us']:.0f} us) vs "
                f"{best_peer} {peers[best_peer]['rate']:,.0f}/s (p50 {peers[best_peer]['p50_us']:.0f} us)"
            )
            if floor:
                detail += f"; {mine['rate'] / floor['rate']:.2f} of the C echo floor"
            rows.append(
                Row(
                    f"echo, {inflight} in flight, {_size(size)}, {label}{polling}",
                    mine["rate"] / peers[best_peer]["rate"],
                    target,
                    detail,
                )
            )
    return rows


def connection_rows(conn: dict[str, Any]) -> list[Row]:
    """Send (unmasked and masked), the Connection around ``encode_frame``, and receive, against picows."""
    rows = []
    missing = "picows not installed" if conn else "not run"
    picows = conn.get("picows") or {}
    send = picows.get("send", {})
    for key, label, target in (
        ("16/server", "send one frame, 16 B (send_binary + data_to_send)", 1.0),
        ("65536/server", "send one frame, 64 KiB", 0.8),
        ("16/client", "send one masked frame, 16 B (a pooled mask key)", 1.0),
    ):
        cell = send.get(key)
        ratio = cell["picows"] / cell["ours"] if cell else None
        detail = f"{cell['ours']:.0f} ns vs picows {cell['picows']:.0f} ns" if cell else missing
        rows.append(Row(label, ratio, target, detail))
    around = (conn.get("send_vs_encode") or {}).get("16/server")
    if around:
        # The budget: the Connection costs at most 1.3x encode_frame alone, as a ratio above 1 = met.
        rows.append(
            Row(
                "send_binary + drain within 1.3x encode_frame, 16 B",
                1.3 * around["encode"] / around["send"],
                1.0,
                f"{around['send']:.0f} ns vs {around['encode']:.0f} ns: {around['send'] / around['encode']:.2f}x",
            )
        )
    for key, label in (("16/text", "receive_data, 16 B text"), ("16/binary", "receive_data, 16 B binary")):
        cell = picows.get("receive", {}).get(key)
        ratio = cell["ours"] / cell["picows"] if cell else None
        detail = f"{cell['ours']:,.0f} vs picows {cell['picows']:,.0f} messages/s" if cell else missing
        rows.append(Row(label, ratio, 1.0, detail))
    return rows


def utf8_rows(utf8: dict[str, Any]) -> list[Row]:
    rows = []
    for label, cell in utf8.get("ns", {}).items():
        slower = max(cell["ours"], cell["feed"])  # the one-shot and the incremental validator, the slower one
        rows.append(
            Row(
                f"validate_utf8 and feed, {label}",
                cell["node"] / slower,
                1.0,
                f"ours {cell['ours']:.0f} ns, feed {cell['feed']:.0f} ns vs node {cell['node']:.0f} ns "
                f"({utf8.get('utf8_impl', '?')}, node {utf8.get('node', '?')})",
            )
        )
    return rows


def deflate_rows(deflate: dict[str, Any]) -> list[Row]:
    """wscodec against the fastest peer that ran (websockets, Node's ws; picows has no permessage-deflate)."""
    rows = []
    for inflight, rate in deflate.get("wscodec", {}).items():
        peers = {p: deflate[p][inflight] for p in ("websockets", "node-ws") if deflate.get(p, {}).get(inflight)}
        if peers:
            fastest = max(peers, key=peers.__getitem__)
            listed = ", ".join(f"{p} {r:,.0f}" for p, r in peers.items())
            rows.append(
                Row(
                    f"compressed echo, 16 KiB JSON, {inflight} in flight",
                    rate / peers[fastest],
                    None,
                    f"{rate:,.0f} vs {listed} messages/s (picows has no permessage-deflate)",
                )
            )
    return rows


#: What each benchmark measures, for the row that says it was not measured.
SECTIONS = {
    "echo": "echo (bench_echo.py)",
    "echo_busy_poll": "echo with busy polling (bench_echo.py --busy-poll)",
    "connection": "send and receive (bench_connection.py)",
    "utf8": "validate_utf8 and feed (bench_utf8_node.py)",
    "deflate": "compressed echo (bench_compressed_echo.py)",
}


def table(results: dict[str, dict[str, Any]], failed: Collection[str] = ()) -> list[Row]:
    """The table from the benchmarks' JSON (keys: echo, connection, utf8, deflate; any may be missing: a
    benchmark without results has a "not measured" row, the send and receive cells one each). A benchmark in
    ``failed`` whose JSON holds no row for the table (wscodec's own servers failed their cells) has one too."""
    rows = []
    for name, rows_of in (
        ("echo", echo_rows),
        ("echo_busy_poll", echo_rows),
        ("connection", connection_rows),
        ("utf8", utf8_rows),
        ("deflate", deflate_rows),
    ):
        found = rows_of(results.get(name, {}))
        if not found and (name not in results or name in failed):
            found = [Row(SECTIONS[name], None, None, "no results (see its output above)")]
        rows += found
    return rows


def format_table(rows: list[Row]) -> str:
    width = max((len(r.cell) for r in rows), default=10)
    lines = [f"{'cell':<{width}}  {'ratio':>6}  {'target':>6}  {'verdict':<12}  detail"]
    for r in rows:
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        target = f">={r.target:g}" if r.target is not None else "-"
        lines.append(f"{r.cell:<{width}}  {ratio:>6}  {target:>6}  {r.verdict:<12}  {r.detail}")
    return "\n".join(lines)


#: Seconds a benchmark has to stop (its servers with it) after SIGTERM, once its time is up, before SIGKILL.
GRACE = 30.0


def _run(command: list[str], timeout: float) -> int | None:
    """Run one benchmark; its exit status (negative: the signal that ended it), None when it ran past
    ``timeout``: then it gets SIGTERM (it stops its servers and removes its temporary files), and SIGKILL
    after :data:`GRACE` seconds."""
    print("$ python " + " ".join(os.path.relpath(c, os.getcwd()) if c.startswith(HERE) else c for c in command[1:]))
    sys.stdout.flush()
    # SIGTERM to the benchmark if this process ends first, however it ends: it stops its servers and cleans up
    with subprocess.Popen(command, preexec_fn=die_with_parent(signal.SIGTERM)) as proc:
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(GRACE)
                print(f"(stopped after {timeout:.0f} s)")
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                print(f"(stopped after {timeout:.0f} s, killed {GRACE:.0f} s after SIGTERM)")
            return None
        except BaseException:  # Ctrl-C: SIGINT went to it too; give it the same grace
            proc.terminate()
            try:
                proc.wait(GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise


def echo_servers() -> list[str]:
    """:data:`ECHO_SERVERS`, with Node's ws installed first (``npm ci``); without it when that fails, said why."""
    import _node_ws

    problem = _node_ws.install()
    if problem is None:
        return list(ECHO_SERVERS)
    print(f"node-ws left out of this run: {problem}", flush=True)
    return [s for s in ECHO_SERVERS if server_name(s) != "node-ws"]


def run_all(directory: str, quick: bool) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Run each benchmark with ``--json`` into ``directory``; return what each wrote, and the benchmarks that
    failed (why): an exit status other than 0 or 1 (1 is a target of its own missed, which the table shows),
    or no JSON written. A ``NAME.json`` from an earlier run is removed first, so it is never shown as this one's."""
    py = sys.executable
    files = {name: os.path.join(directory, name + ".json") for name in BENCHMARKS}
    servers = echo_servers()
    echo = [py, os.path.join(HERE, "bench_echo.py"), "--servers", ",".join(servers), "--skip-missing"]
    echo += ["--inflight", "1,8,64", "--sizes", "16,1024,65536", "--json", files["echo"]]
    if quick:
        timing = ["--duration", "0.5", "--warmup", "0.2", "--repeat", "1"]
    else:
        timing = ["--duration", "1", "--repeat", "3"]
    polled = [
        py,
        os.path.join(HERE, "bench_echo.py"),
        "--servers",
        ",".join(servers),
        "--skip-missing",
        "--inflight",
        "1",
    ]
    polled += ["--sizes", "16,1024", "--busy-poll", repr(BUSY_POLL), "--json", files["echo_busy_poll"]]
    commands = {
        "echo": (echo + timing, 3600),
        "echo_busy_poll": (polled + timing, 1800),
        "connection": ([py, os.path.join(HERE, "bench_connection.py"), "--live-only", "--json", files["connection"]]
                       + (["--quick"] if quick else []), 1800),
        "utf8": ([py, os.path.join(HERE, "bench_utf8_node.py"), "--json", files["utf8"]]
                 + (["--rounds", "2"] if quick else []), 1800),
        "deflate": ([py, os.path.join(HERE, "bench_compressed_echo.py"), "--json", files["deflate"]]
                    + (["--duration", "1"] if quick else []), 1800),
    }  # fmt: skip
    failed = {}
    for name, (command, timeout) in commands.items():
        with contextlib.suppress(FileNotFoundError):
            os.remove(files[name])
        status = _run(command, timeout)
        if status is None:
            failed[name] = f"stopped after {timeout} s"
        elif status < 0:
            failed[name] = f"killed by signal {-status}"
        elif status not in (0, 1):
            failed[name] = f"exit status {status}"
        elif not os.path.exists(files[name]):
            failed[name] = "no results written"
    return load_results(directory), failed


def load_results(directory: str) -> dict[str, dict[str, Any]]:
    """What each benchmark wrote to ``directory`` (one that wrote nothing is said so, and left out)."""
    results = {}
    for name in BENCHMARKS:
        path = os.path.join(directory, name + ".json")
        if os.path.exists(path):
            with open(path) as fh:
                results[name] = json.load(fh)
        else:
            print(f"{name}: no results in {directory}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short repetition per echo cell (noisier)")
    parser.add_argument("--keep", metavar="DIR", help="write the benchmarks' JSON here (default: a temporary dir)")
    parser.add_argument("--from", dest="source", metavar="DIR", help="print the table from an earlier --keep DIR")
    args = parser.parse_args(argv)
    started = time.monotonic()
    failed: dict[str, str] = {}
    if args.source:
        results = load_results(args.source)
    elif args.keep:
        os.makedirs(args.keep, exist_ok=True)
        results, failed = run_all(args.keep, args.quick)
    else:
        with tempfile.TemporaryDirectory(prefix="wscodec-speed-") as directory:
            results, failed = run_all(directory, args.quick)
    print("\nratio: wscodec / the fastest peer in the same run (above 1.00 wscodec is faster)")
    print(format_table(table(results, failed)))
    for name, why in failed.items():
        print(f"FAILED {name}: {why}")
    print(f"({time.monotonic() - started:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
