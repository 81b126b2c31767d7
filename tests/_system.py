"""Tests that need a program outside Python (a browser, node, redis-server...) ask for it here.

One rule for all of them: on a developer's machine a missing program *skips* the test with a reason that names
the program and the Debian package that installs it, so the README's test command passes on a fresh machine;
when the environment variable ``CI`` is set (``.ci/run`` installs every such program) a missing program is a
*failure*, so CI can never go green by skipping what it was meant to run.

    from _system import require_program

    def test_something() -> None:
        redis = require_program("redis-server", "redis-server")

``tests/`` is on ``sys.path`` because ``tests/conftest.py`` lives there (pytest's default import mode), so
``import _system`` works from every test module, ``tests/interop/`` included.
"""

from __future__ import annotations

import asyncio
import os
import shutil

import pytest

__all__ = ["in_ci", "missing", "require_program", "run_program"]


def in_ci() -> bool:
    """True when ``CI`` is set to anything but an empty string, ``0`` or ``false`` (GitHub, GitLab, .ci/run)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(what: str, package: str, *, hint: str = "") -> None:
    """Skip (or, under ``CI``, fail) because ``what`` is absent; ``package`` is the Debian package to install."""
    reason = f"{what} not found; install it with `apt-get install {package}`" + (f" ({hint})" if hint else "")
    if in_ci():
        pytest.fail(f"{reason}: required when CI is set", pytrace=False)
    pytest.skip(reason)


def require_program(name: str, package: str, *, env: str | None = None, hint: str = "") -> str:
    """The absolute path of program ``name``, or skip/fail (see the module docstring) when it is absent.

    ``env`` names an environment variable that may point at the program explicitly (it wins over ``PATH``).
    """
    candidate = os.environ.get(env, "") if env else ""
    if candidate:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
        missing(f"{name} ({env}={candidate!r} is not an executable file)", package, hint=hint)
    found = shutil.which(name)
    if found is None:
        missing(f"the program `{name}`", package, hint=hint)
    assert found is not None  # missing() raised
    return found


async def run_program(*command: str, timeout: float, env: dict[str, str] | None = None) -> tuple[int, bytes, bytes]:
    """Run ``command`` to its end, its output captured: (exit status, stdout, stderr). After ``timeout``
    seconds it is killed and :class:`TimeoutError` raised, so a hung peer program cannot hang the test."""
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
        raise TimeoutError(f"{command[0]} did not finish in {timeout} s") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, stdout, stderr
