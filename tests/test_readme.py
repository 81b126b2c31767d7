"""The README's Python examples run as written, on both backends (they are the first code users copy)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from wscodec import _pure

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
with open(README, encoding="utf-8") as readme:
    BLOCKS = re.findall(r"```python\n(.*?)```", readme.read(), re.S)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.timeout(60)
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(kernels, index: int) -> None:  # type: ignore[no-untyped-def]
    backend = "python" if kernels is _pure else "cython"
    env = dict(os.environ)
    if backend == "python":
        env["WSCODEC_PURE_PYTHON"] = "1"
    else:
        env.pop("WSCODEC_PURE_PYTHON", None)
    code = f"import wscodec\nassert wscodec.BACKEND == {backend!r}, wscodec.BACKEND\n" + BLOCKS[index]
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr
