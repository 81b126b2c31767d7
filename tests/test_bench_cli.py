"""``python -m wscodec bench`` after a plain install: runs from any directory, names the peers it skips and the
extra that installs them, shows progress, ends with a table of ratios, exits 0 when it ran (``--check``: 1
when a target is missed). Small groups only (``--only send``), so this stays a few seconds."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wscodec import _bench
from wscodec.__main__ import main

ROOT_OF_PACKAGE = str(Path(_bench.__file__).resolve().parents[1])


def _bench_process(tmp_path: Path, *args: str, block: str = "") -> subprocess.CompletedProcess[str]:
    """Run the bench in a fresh directory (no checkout around); ``block`` makes a peer unimportable."""
    code = "import sys\n"
    if block:
        code += f"sys.modules[{block!r}] = None  # as if it were not installed\n"
    code += "from wscodec.__main__ import main\nsys.exit(main(sys.argv[1:]))\n"
    env = dict(os.environ, PYTHONPATH=ROOT_OF_PACKAGE)
    return subprocess.run(
        [sys.executable, "-c", code, "bench", "--quick", *args],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env,
    )  # fmt: skip


def test_bench_runs_anywhere_with_progress_and_a_ratio_table(tmp_path: Path) -> None:
    out = _bench_process(tmp_path, "--only", "send", "--json", "results.json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    # progress: in a pipe, one plain line per case on stderr (no carriage returns)
    assert "[1/2] send/text 16 B" in out.stderr and "[2/2] send/text 1 KiB" in out.stderr
    assert "\r" not in out.stderr
    lines = out.stdout.splitlines()
    header = next(line for line in lines if line.startswith("case"))
    assert "wscodec" in header
    row = next(line for line in lines if line.startswith("send/text 16 B"))
    assert "M/s" in row
    if "websockets" in header:
        assert row.rstrip().split()[-2].endswith("x")
    assert "echo" not in out.stdout or "skipped" in out.stdout or "not run" in out.stdout
    assert (tmp_path / "results.json").is_file()


def test_bench_names_a_missing_peer_and_its_extra(tmp_path: Path) -> None:
    out = _bench_process(tmp_path, "--only", "send", block="wsproto")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "skipped peer wsproto: not installed (pip install 'wscodec[bench]'" in out.stdout
    header = next(line for line in out.stdout.splitlines() if line.startswith("case"))
    assert "wsproto" not in header


def test_echo_outside_a_checkout_says_so_in_one_line(tmp_path: Path) -> None:
    out = _bench_process(tmp_path, "--only", "echo")
    assert out.returncode == 0, out.stdout + out.stderr
    notes = [line for line in out.stdout.splitlines() if line.startswith("echo:")]
    if (Path(ROOT_OF_PACKAGE).parent / "bench" / "bench_echo.py").is_file():
        pytest.skip("wscodec is imported from a source checkout: the echo benchmark would run")
    assert len(notes) == 1 and "skipped" in notes[0] and "checkout" in notes[0]


def test_check_turns_a_missed_target_into_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    case_ids = {case.id for case in _bench.send_cases(quick=True)}
    assert "send/text 16 B" in case_ids
    ns = argparse.Namespace(quick=True, only=["send"], check=False, json=None)
    monkeypatch.setattr(_bench, "TARGETS", [("send/text 16 B", "wscodec", 2.0)])  # ours vs ours: 1.0x < 2x
    monkeypatch.setattr(_bench, "_targets_apply", lambda: True)
    assert _bench.run(ns) == 0  # it ran: exit 0 without --check
    ns.check = True
    assert _bench.run(ns) == 1
    monkeypatch.setattr(_bench, "TARGETS", [("send/text 16 B", "wscodec", 0.5)])
    assert _bench.run(ns) == 0


def test_check_fails_a_target_not_measured_and_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = argparse.Namespace(quick=True, only=["send"], check=False, json=None)
    monkeypatch.setattr(_bench, "TARGETS", [("send/text 16 B", "no-such-peer", 1.0)])
    monkeypatch.setattr(_bench, "_targets_apply", lambda: True)
    assert _bench.run(ns) == 0
    assert "not measured send/text 16 B vs no-such-peer" in capsys.readouterr().out
    ns.check = True
    assert _bench.run(ns) == 1


def test_check_is_passed_to_the_echo_benchmark_and_its_failure_is_the_exit_status(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    script = tmp_path / "bench" / "bench_echo.py"
    script.parent.mkdir()
    script.write_text("import sys\nsys.exit(2 if '--check' in sys.argv else 0)\n")
    monkeypatch.setattr(_bench, "_checkout_echo", lambda: script)
    ns = argparse.Namespace(quick=True, only=["echo"], check=False, json=None)
    assert _bench.run(ns) == 0
    ns.check = True
    assert _bench.run(ns) == 1
    monkeypatch.setattr(_bench, "_checkout_echo", lambda: None)  # not run: its targets are not measured
    assert _bench.run(ns) == 1
    ns.check = False
    assert _bench.run(ns) == 0


def test_check_counts_the_echo_benchmark_not_run_only_when_asked_for_by_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Outside a checkout a full run skips the echo benchmark, with or without --quick: that is no target
    # missed, or every `pip install` then `bench --check` would exit 1; `--only echo` asked for it.
    monkeypatch.setattr(_bench, "all_cases", lambda quick, groups: [])
    monkeypatch.setattr(_bench, "_checkout_echo", lambda: None)
    for quick in (True, False):
        assert _bench.run(argparse.Namespace(quick=quick, only=None, check=True, json=None)) == 0, quick
    assert _bench.run(argparse.Namespace(quick=False, only=["echo"], check=True, json=None)) == 1
    assert "1 not measured" in capsys.readouterr().out


def test_bench_help_names_the_extra(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert "wscodec[bench]" in capsys.readouterr().out


def test_cases_compare_like_for_like() -> None:
    cases = {case.id: case for case in _bench.all_cases(quick=True)}
    for kind in ("ascii", "chinese", "mixed"):
        assert f"kernels/utf8 validate {kind} 64 KiB" in cases
        data = _bench.text(kind, 64 * 1024)
        assert 64 * 1024 - 4 <= len(data) <= 64 * 1024
        data.decode("utf-8")
    assert max(_bench.text("mixed", 4096)) >= 0xE0  # multi-byte sequences present
    # copying masks against copying masks, in place against in place
    copy = cases["kernels/apply_mask copy 1 KiB"]
    inplace = cases["kernels/apply_mask in place 1 KiB"]
    assert isinstance(copy.contenders["wscodec"](), bytes)
    assert copy.contenders["wscodec"]() is not copy.contenders["wscodec"]()
    assert inplace.contenders["wscodec"]() is None
    # every contender of a receive case delivers the same number of messages (and str, see the peers' code)
    for case in (c for c in cases.values() if c.group == "receive"):
        assert {fn() for fn in case.contenders.values()} == {case.work}


def test_progress_is_a_bar_on_a_terminal_and_lines_in_a_pipe() -> None:
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Terminal(), io.StringIO()
    for stream in (tty, pipe):
        progress = _bench.Progress(4, stream)
        for label in ("a", "b", "c", "d"):
            progress.show(label)
            progress.step()
        progress.finish()
    assert tty.getvalue().count("\r\x1b[K") == 5  # redrawn in place, then cleared
    assert "[##############..............] 2/4 c" in tty.getvalue()
    assert "\n" not in tty.getvalue().rstrip("\n").split("measured")[0]
    assert pipe.getvalue().splitlines()[:4] == ["[1/4] a", "[2/4] b", "[3/4] c", "[4/4] d"]
    assert "\r" not in pipe.getvalue()


def test_a_failing_peer_is_named_and_the_rest_still_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken() -> None:
        raise ValueError("read of closed file")

    def cases(quick: bool) -> list[_bench.Case]:
        case = _bench.Case("send", "tiny", "msg", 1)
        case.contenders["wscodec"] = lambda: 1
        case.contenders["websockets"] = broken
        return [case]

    monkeypatch.setitem(_bench.BUILDERS, "send", cases)
    ns = argparse.Namespace(quick=True, only=["send"], check=True, json=None)
    assert _bench.run(ns) == 0
    out = capsys.readouterr().out
    assert "send/tiny: websockets skipped (failed: ValueError: read of closed file)" in out
    assert any(line.startswith("send/tiny") and "M/s" in line for line in out.splitlines())
