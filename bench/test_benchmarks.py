"""pytest-benchmark suite: the cases of ``python -m wscodec bench``, one test per (case, contender).

    pip install '.[bench]'
    python -m pytest bench/ --benchmark-only                      # a table per group, peers side by side
    python -m pytest bench/ --benchmark-only --benchmark-autosave  # keep a run in .benchmarks/
    python -m pytest bench/ --benchmark-only --benchmark-compare   # ... and compare the next one with it
    python -m pytest bench/ --benchmark-only -k "receive and websockets"

Groups are ``<group>: <case>`` (group: kernels, receive, send, frames), so wscodec and every peer doing the
same work sit in one table; the test id names the contender. A peer that is not installed is skipped with
the extra that installs it. The default ``python -m pytest`` run does not collect this folder
(``testpaths = ["tests"]``).
"""

from __future__ import annotations

from typing import Any

import pytest

from wscodec import _bench

pytest.importorskip("pytest_benchmark", reason="pytest-benchmark is not installed (pip install '.[bench]')")

CONTENDERS = ("wscodec", "websockets", "wsproto", "aiohttp", "stdlib")
_CASES = {case.id: case for case in _bench.all_cases(quick=True)}


def _params() -> list[Any]:
    params = []
    for case in _CASES.values():
        for name in CONTENDERS:
            if name in case.contenders or name in case.missing:
                params.append(pytest.param(case.id, name, id=f"{case.id}:{name}"))
    return params


@pytest.mark.parametrize(("case_id", "contender"), _params())
def test_bench(benchmark: Any, case_id: str, contender: str) -> None:
    case = _CASES[case_id]
    if contender in case.missing:
        pytest.skip(f"{contender}: {case.missing[contender]}")
    benchmark.group = f"{case.group}: {case.name}"
    benchmark.extra_info.update({"unit": case.unit, "work": case.work})
    fn = case.contenders[contender]
    result = benchmark(fn)
    assert result is not None or case.group in ("kernels", "frames")
