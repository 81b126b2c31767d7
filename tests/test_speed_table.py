"""``bench/speed_table.py``: the one-command speed table reads each benchmark's JSON into rows with the right
ratio (wscodec / the fastest peer of the same run), target and verdict; and the send benchmark it runs
returns the numbers it prints."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str) -> ModuleType:
    if not (BENCH / f"{name}.py").is_file():
        pytest.skip("bench/ is not beside the tests (an installed copy of the tests)")
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _cell(server: str, inflight: int, size: int, rate: float) -> dict[str, Any]:
    return {
        "server": server, "inflight": inflight, "size": size, "rate": rate, "rate_min": rate * 0.9,
        "rate_max": rate * 1.1, "p50_us": 1e6 / rate, "p99_us": 2e6 / rate,
    }  # fmt: skip


def test_echo_rows_compare_each_style_with_the_fastest_peer_and_apply_the_targets() -> None:
    table = _load("speed_table")
    echo = {
        "cells": [
            _cell("wscodec@uvloop", 1, 16, 18_000),
            _cell("wscodec-nowait", 1, 16, 20_000),
            _cell("wscodec-nowait@uvloop", 1, 16, 26_000),
            _cell("picows@uvloop", 1, 16, 24_000),
            _cell("websockets", 1, 16, 12_000),
            _cell("floor", 1, 16, 30_000),
            _cell("wscodec@uvloop", 64, 16, 110_000),
            _cell("picows", 64, 16, 100_000),
            _cell("wscodec@uvloop", 8, 65536, 20_000),
            _cell("picows@uvloop", 8, 65536, 40_000),
        ]
    }
    rows = {r.cell: r for r in table.echo_rows(echo)}
    lone = rows["echo, 1 in flight, 16 B, onmessage + send_nowait"]
    assert lone.ratio == pytest.approx(26_000 / 24_000)  # our best loop against the fastest peer, not the floor
    assert (lone.target, lone.verdict) == (1.0, "met")
    assert "wscodec-nowait@uvloop" in lone.detail and "picows@uvloop" in lone.detail
    assert f"{26_000 / 30_000:.2f} of the C echo floor" in lone.detail
    slow = rows["echo, 1 in flight, 16 B, async for"]
    assert slow.ratio == pytest.approx(0.75) and slow.verdict == "NOT MET"
    many = rows["echo, 64 in flight, 16 B, async for"]
    assert many.ratio == pytest.approx(1.1) and many.target == 1.2 and many.verdict == "NOT MET"
    big = rows["echo, 8 in flight, 64 KiB, async for"]
    assert big.target is None and big.verdict == "measured" and big.ratio == pytest.approx(0.5)
    assert "echo, 64 in flight, 16 B, onmessage + send_nowait" not in rows  # that style was not run there


def test_busy_polling_rows_say_so_and_carry_no_target() -> None:
    """The busy-polling run (every server polling alike) is reported beside the cells, never as one of them."""
    table = _load("speed_table")
    echo = {
        "busy_poll": 50e-6,
        "cells": [
            _cell("wscodec-nowait@uvloop", 1, 16, 40_000),
            _cell("picows@uvloop", 1, 16, 38_000),
            _cell("floor", 1, 16, 41_000),
        ],
    }
    (row,) = table.echo_rows(echo)
    assert row.cell == "echo, 1 in flight, 16 B, onmessage + send_nowait, every server busy-polling 50 us"
    assert row.ratio == pytest.approx(40_000 / 38_000)
    assert (row.target, row.verdict) == (None, "measured")
    assert "echo_busy_poll" in table.BENCHMARKS


def test_send_receive_utf8_and_deflate_rows() -> None:
    table = _load("speed_table")
    results = {
        "connection": {
            "send_vs_encode": {"16/server": {"encode": 70.0, "send": 98.0}},
            "picows": {
                "send": {
                    "16/server": {"picows": 155.0, "ours": 132.0},
                    "16/client": {"picows": 150.0, "ours": 200.0},
                },
                "receive": {"16/text": {"picows": 4e6, "ours": 6e6}},
            },
        },
        "utf8": {"ns": {"chinese 4 KiB": {"node": 340.0, "ours": 310.0, "feed": 400.0}}},
        "deflate": {
            "wscodec": {"1": 4600.0, "64": 9000.0},
            "websockets": {"1": 2300.0, "64": 3000.0},
            "node-ws": {"1": 2000.0, "64": 4500.0},
        },
    }
    rows = {r.cell: r for r in table.table(results)}
    send = rows["send one frame, 16 B (send_binary + data_to_send)"]
    assert send.ratio == pytest.approx(155 / 132) and send.verdict == "met"
    masked = rows["send one masked frame, 16 B (a pooled mask key)"]
    assert masked.ratio == pytest.approx(0.75) and masked.verdict == "NOT MET"
    assert rows["send one frame, 64 KiB"].verdict == "not measured"
    around = rows["send_binary + drain within 1.3x encode_frame, 16 B"]
    assert around.verdict == "NOT MET" and "1.40x" in around.detail  # 98 / 70
    assert rows["receive_data, 16 B text"].ratio == pytest.approx(1.5)
    assert rows["receive_data, 16 B binary"].verdict == "not measured"
    utf8 = rows["validate_utf8 and feed, chinese 4 KiB"]
    assert utf8.ratio == pytest.approx(340 / 400)  # the slower of the one-shot and the incremental validator
    assert rows["compressed echo, 16 KiB JSON, 1 in flight"].ratio == pytest.approx(2.0)  # websockets fastest
    many = rows["compressed echo, 16 KiB JSON, 64 in flight"]
    assert many.ratio == pytest.approx(2.0) and "node-ws 4,500" in many.detail  # Node's ws fastest
    text = table.format_table(list(rows.values()))
    assert "NOT MET" in text and "1.17" in text and text.count("\n") == len(rows)


def test_nothing_run_says_so_rather_than_blaming_picows() -> None:
    table = _load("speed_table")
    rows = table.connection_rows({})
    assert rows and all(r.verdict == "not measured" and r.detail == "not run" for r in rows)


def test_a_benchmark_without_results_has_a_not_measured_row() -> None:
    table = _load("speed_table")
    rows = {r.cell: r for r in table.table({})}
    for label in table.SECTIONS.values():
        if label.startswith("send and receive"):
            continue  # its cells say so one by one
        assert rows[label].verdict == "not measured"


def test_keep_removes_an_earlier_runs_json_and_a_failed_benchmark_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    table = _load("speed_table")
    stale = {"cells": [_cell("wscodec", 64, 16, 999_999), _cell("picows", 64, 16, 1)]}
    (tmp_path / "echo.json").write_text(json.dumps(stale))
    ran: list[str] = []

    def run(command: list[str], timeout: float) -> int:
        ran.append(Path(command[1]).name)
        if "utf8" in command[1]:
            Path(command[command.index("--json") + 1]).write_text(json.dumps({"ns": {}}))
            return 0
        return 2  # failed, wrote nothing

    monkeypatch.setattr(table, "_run", run)
    monkeypatch.setattr(table, "echo_servers", lambda: list(table.ECHO_SERVERS))
    results, failed = table.run_all(str(tmp_path), quick=True)
    assert len(ran) == len(table.BENCHMARKS)
    assert "echo" not in results and set(failed) == set(table.BENCHMARKS) - {"utf8"}
    assert failed["echo"] == "exit status 2"
    monkeypatch.setattr(table, "run_all", lambda directory, quick: (results, failed))
    assert table.main(["--keep", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "999,999" not in out and "FAILED echo: exit status 2" in out


def test_the_send_benchmark_returns_what_it_prints(capsys: pytest.CaptureFixture[str]) -> None:
    found = _load("bench_connection")._send_vs_encode(0.0)
    assert set(found) == {f"{size}/{role}" for size in (16, 1024, 65536) for role in ("server", "client")}
    for cell in found.values():
        assert 0 < cell["encode"] < 1e6 and 0 < cell["send"] < 1e6
    assert "send_binary + drain vs encode_frame" in capsys.readouterr().out


def test_aiofastnet_variants_count_on_their_side_of_the_table() -> None:
    """``NAME@LOOP+aiofastnet`` is a variant of NAME: picows on aiofastnet is a peer, ours on it is ours."""
    table = _load("speed_table")
    assert "picows@uvloop+aiofastnet" in table.ECHO_SERVERS
    assert "wscodec-nowait@uvloop+aiofastnet" in table.ECHO_SERVERS
    assert "tornado@uvloop+aiofastnet" not in table.ECHO_SERVERS  # tornado uses no asyncio transports
    echo = {
        "cells": [
            _cell("wscodec-nowait@uvloop", 1, 16, 20_000),
            _cell("wscodec-nowait@uvloop+aiofastnet", 1, 16, 21_000),
            _cell("picows@uvloop", 1, 16, 19_000),
            _cell("picows@uvloop+aiofastnet", 1, 16, 22_000),
        ]
    }
    rows = {r.cell: r for r in table.echo_rows(echo)}
    lone = rows["echo, 1 in flight, 16 B, onmessage + send_nowait"]
    assert lone.ratio == pytest.approx(21_000 / 22_000)
    assert "wscodec-nowait@uvloop+aiofastnet" in lone.detail and "picows@uvloop+aiofastnet" in lone.detail


def test_echo_specs_name_loop_and_transport() -> None:
    echo = _load("bench_echo")
    assert echo.parse_spec("picows") == ("picows", None, "loop")
    assert echo.parse_spec("picows@uvloop") == ("picows", "uvloop", "loop")
    assert echo.parse_spec("wscodec-nowait+aiofastnet") == ("wscodec-nowait", None, "aiofastnet")
    assert echo.parse_spec("wscodec@uvloop+aiofastnet") == ("wscodec", "uvloop", "aiofastnet")
    assert echo._is_ours("wscodec-nowait@uvloop+aiofastnet") and not echo._is_ours("picows+aiofastnet")
    with pytest.raises(SystemExit):
        echo.main(["--servers", "tornado+aiofastnet"])
    with pytest.raises(SystemExit):
        echo.main(["--servers", "picows@uvloop+fast"])


def test_echo_targets_and_the_fastest_peer_pair_specs_on_the_same_loop_and_transports() -> None:
    echo = _load("bench_echo")

    def cell(server: str, rate: float) -> Any:
        return echo.Cell(server, 64, 16, 1, 1.0, rate, 1.0, 1.0)

    apart = [cell("wscodec@uvloop+aiofastnet", 200_000), cell("websockets", 60_000), cell("picows@uvloop", 190_000)]
    lines, ok = echo.check_targets(apart)
    assert not ok and all("not measured" in line for line in lines)
    assert " -" in echo.format_table(apart).splitlines()[2]  # no peer on uvloop+aiofastnet: no ratio
    same = [cell("wscodec", 200_000), cell("wscodec@uvloop", 300_000), cell("websockets", 60_000)]
    same += [cell("websockets@uvloop", 200_000), cell("picows", 150_000), cell("picows@uvloop+aiofastnet", 900_000)]
    lines, ok = echo.check_targets(same)
    assert not ok  # on uvloop ours is 1.5x websockets: FAIL, whatever asyncio says
    assert "on asyncio: 3.33x PASS" in lines[0] and "on uvloop: 1.50x FAIL" in lines[1]
    assert len(lines) == 3 and "picows" in lines[2] and "on asyncio: 1.33x PASS" in lines[2]
    rows = {line.split()[3]: line.split()[-4] for line in echo.format_table(same).splitlines()[2:]}
    assert rows["wscodec"] == "1.33" and rows["wscodec@uvloop"] == "1.50" and rows["picows@uvloop+aiofastnet"] == "1.00"
    assert echo.setting("wscodec", "uvloop") == "uvloop" and echo.setting("node-ws") == "node"


def test_a_benchmark_killed_by_a_signal_is_named_so_and_one_past_its_time_as_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = _load("speed_table")
    statuses = {"bench_echo.py": -11, "bench_connection.py": None}
    monkeypatch.setattr(table, "_run", lambda command, timeout: statuses.get(Path(command[1]).name, 2))
    monkeypatch.setattr(table, "echo_servers", lambda: list(table.ECHO_SERVERS))
    _, failed = table.run_all(str(tmp_path), quick=True)
    assert failed["echo"] == "killed by signal 11"
    assert failed["connection"].startswith("stopped after ")


def test_a_failed_benchmark_whose_json_has_no_row_for_the_table_says_not_measured() -> None:
    table = _load("speed_table")
    # bench_echo.py exits 2 and writes its JSON without the cells of the servers that did not echo: here ours.
    results = {"echo": {"cells": [_cell("picows", 64, 16, 1000.0)], "failed": {"wscodec": "reply 1 is 0 bytes"}}}
    rows = {r.cell: r for r in table.table(results, failed={"echo": "exit status 2"})}
    assert rows[table.SECTIONS["echo"]].verdict == "not measured"
    assert table.SECTIONS["echo"] not in {r.cell for r in table.table(results)}  # (not failed: nothing to say)


def test_compressed_replies_inflate_across_streams_and_garbage_is_no_echo() -> None:
    import zlib

    echo = _load("bench_echo")
    payload = echo._c_payload(1024)
    # RFC 7692 section 7.2.3.4: each message may end its DEFLATE stream with a BFINAL block.
    finished = []
    for _ in range(3):
        compressor = zlib.compressobj(wbits=-15)
        finished.append((compressor.compress(payload) + compressor.flush(zlib.Z_FINISH)).hex())
    echo._check_compressed(finished, 1024)
    # The usual form: one stream, context taken over, the trailer of each message's last block removed.
    compressor = zlib.compressobj(wbits=-15)
    shared = [(compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4].hex() for _ in range(3)]
    echo._check_compressed(shared, 1024)
    with pytest.raises(echo.EchoMismatch, match="does not inflate"):
        echo._check_compressed(["fffefdfc00"], 16)
    short = zlib.compressobj(wbits=-15)
    one_byte_short = (short.compress(payload[:-1]) + short.flush(zlib.Z_FINISH)).hex()
    with pytest.raises(echo.EchoMismatch, match="reply 2 is 1023 bytes"):
        echo._check_compressed([shared[0], one_byte_short], 1024)


def test_echo_replies_are_checked_by_length_and_the_first_by_content() -> None:
    echo = _load("bench_echo")
    echo.check_reply(b"abc", 0, b"abc")
    echo.check_reply(b"abc", 100, 3)  # past the first ones: the length alone
    with pytest.raises(echo.EchoMismatch, match="reply 1 is 0 bytes, the message sent 3"):
        echo.check_reply(b"abc", 0, b"")
    with pytest.raises(echo.EchoMismatch, match="reply 9 is 2 bytes"):
        echo.check_reply(b"abc", 8, 2)
    with pytest.raises(echo.EchoMismatch, match="differs from the message sent at byte 1"):
        echo.check_reply(b"abc", 0, b"axc")


def test_node_ws_is_a_peer_on_its_own_loop() -> None:
    """Node's ws runs on Node's libuv loop and sockets: one spec, no ``@LOOP``, no ``+aiofastnet``; in the
    table it is a peer like any other."""
    echo = _load("bench_echo")
    table = _load("speed_table")
    assert "node-ws" in table.ECHO_SERVERS
    assert echo._valid_spec("node-ws") and not echo._is_ours("node-ws")
    for spec in ("node-ws@uvloop", "node-ws@asyncio", "node-ws+aiofastnet"):
        assert not echo._valid_spec(spec), spec
        with pytest.raises(SystemExit):
            echo.main(["--servers", spec])
    rows = {
        r.cell: r
        for r in table.echo_rows(
            {"cells": [_cell("wscodec-nowait@uvloop", 1, 16, 20_000), _cell("node-ws", 1, 16, 25_000)]}
        )
    }
    lone = rows["echo, 1 in flight, 16 B, onmessage + send_nowait"]
    assert lone.ratio == pytest.approx(20_000 / 25_000)
    assert "node-ws" in lone.detail


def test_node_ws_server_refuses_other_transports() -> None:
    servers = _load("echo_servers")
    with pytest.raises(SystemExit, match="aiofastnet does not apply"):
        servers.main(["node-ws", "--transport", "aiofastnet"])
