"""``tests/_system.py``: a missing system program skips with the package named, and fails when ``CI`` is set."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

PROBE = textwrap.dedent(
    """
    from _system import require_program

    def test_needs_missing_program():
        require_program("wscodec-no-such-program", "wscodec-no-such-package")

    def test_finds_python(tmp_path):
        import os
        assert os.path.isabs(require_program("python3", "python3"))
    """
)


def _run_probe(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "-q", "-o", "addopts=",
         "--rootdir", str(tmp_path), str(tmp_path / "test_probe.py")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
    )  # fmt: skip


def test_missing_program_skips_naming_program_and_package(tmp_path: Path) -> None:
    out = _run_probe(tmp_path, None)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed, 1 skipped" in out.stdout
    assert "wscodec-no-such-program" in out.stdout
    assert "apt-get install wscodec-no-such-package" in out.stdout


@pytest.mark.parametrize("value", ["true", "1"])
def test_missing_program_fails_under_ci(tmp_path: Path, value: str) -> None:
    out = _run_probe(tmp_path, value)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "1 failed, 1 passed" in out.stdout
    assert "required when CI is set" in out.stdout


async def test_run_program_returns_status_and_output_and_kills_a_hung_program() -> None:
    from _system import run_program

    code, out, err = await run_program(sys.executable, "-c", "import sys; print('out'); sys.exit(3)", timeout=30)
    assert (code, out.strip(), err) == (3, b"out", b"")
    started = asyncio.get_running_loop().time()
    with pytest.raises(TimeoutError):
        await run_program(sys.executable, "-c", "import time; time.sleep(60)", timeout=0.5)
    assert asyncio.get_running_loop().time() - started < 30  # killed, not waited for
