"""Run every kernel test on both backends and every async test on both event loops, and refuse to pass
quietly without the compiled backend or without uvloop.

The ``kernels`` fixture is parametrized over ``wscodec._speedups`` (id ``cython``) and ``wscodec._pure`` (id
``python``). If the compiled module cannot be imported the session fails at start, unless
``WSCODEC_BUILD_EXTENSION=no`` says the pure backend is all that was built; then the ``cython`` cases are
skipped with a reason naming the import error. The pytest header says which backend ``wscodec`` runs on.

Every ``async def`` test runs on asyncio's default loop and on uvloop (ids ``[asyncio]``/``[uvloop]``),
the loop uvicorn and most production servers pick wherever it is installed. uvloop is in the ``test``
extra; where it cannot be installed (Windows) the uvloop cases are skipped with that reason, elsewhere a
missing uvloop stops the session.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Mapping
from types import ModuleType

import pytest

import wscodec
from wscodec import _pure

OPTED_OUT = os.environ.get("WSCODEC_BUILD_EXTENSION", "").strip().lower() == "no"

_speedups: ModuleType | None
try:
    from wscodec import _speedups
except ImportError as exc:
    _speedups = None
    SPEEDUPS_ERROR: str | None = f"{type(exc).__name__}: {exc}"
else:
    SPEEDUPS_ERROR = None

try:
    import uvloop
except ImportError as exc:
    uvloop = None
    UVLOOP_ERROR: str | None = f"{type(exc).__name__}: {exc}"
else:
    UVLOOP_ERROR = None
UVLOOP_OPTIONAL = sys.platform == "win32"  # uvloop does not exist there

SKIP_REASON = (
    f"WSCODEC_BUILD_EXTENSION=no and wscodec._speedups is not importable ({SPEEDUPS_ERROR}): "
    "the COMPILED BACKEND IS NOT TESTED"
)


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [
        f"wscodec {wscodec.__version__} from {os.path.dirname(wscodec.__file__)}: "
        f"live backend BACKEND={wscodec.BACKEND!r} "
        f"(WSCODEC_PURE_PYTHON={os.environ.get('WSCODEC_PURE_PYTHON', '')!r})"
    ]
    if _speedups is not None:
        lines.append(f"wscodec._speedups: {_speedups.__file__}")
    elif OPTED_OUT:
        lines.append(f"wscodec._speedups: SKIPPED, {SKIP_REASON}")
    else:
        lines.append(f"wscodec._speedups: NOT IMPORTABLE ({SPEEDUPS_ERROR})")
    if uvloop is not None:
        lines.append(f"event loops: asyncio and uvloop {uvloop.__version__}")
    else:
        lines.append(f"event loops: asyncio only, uvloop NOT IMPORTABLE ({UVLOOP_ERROR})")
    return lines


def pytest_sessionstart(session: pytest.Session) -> None:
    if _speedups is None and not OPTED_OUT:
        pytest.exit(
            f"wscodec._speedups cannot be imported ({SPEEDUPS_ERROR}). Build it "
            "(WSCODEC_BUILD_EXTENSION=yes python setup.py build_ext --inplace) or opt out explicitly with "
            "WSCODEC_BUILD_EXTENSION=no to test the pure-Python backend alone.",
            returncode=1,
        )
    if os.environ.get("COVERAGE_PROCESS_START"):
        import coverage  # the test extra installs it

        if coverage.Coverage.current() is None:
            pytest.exit(
                "COVERAGE_PROCESS_START is set but coverage is not measuring this process: coverage's .pth "
                "file (coverage>=7.10, in the test extra) must be installed in this interpreter's site-packages.",
                returncode=1,
            )
    if uvloop is None and not UVLOOP_OPTIONAL:
        pytest.exit(
            f"uvloop cannot be imported ({UVLOOP_ERROR}): install the test extra (pip install '.[test]'); "
            "every async test runs on uvloop as well as on asyncio's default loop.",
            returncode=1,
        )


def _uvloop_missing() -> asyncio.AbstractEventLoop:
    pytest.skip(f"uvloop is not available on {sys.platform} ({UVLOOP_ERROR})")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every async test on both loops: asyncio's default and uvloop."""
    return {
        "asyncio": asyncio.new_event_loop,
        "uvloop": uvloop.new_event_loop if uvloop is not None else _uvloop_missing,
    }


_CYTHON_MARKS = [pytest.mark.skip(reason=SKIP_REASON)] if _speedups is None else []

BACKEND_PARAMS = [
    pytest.param("cython", id="cython", marks=_CYTHON_MARKS),
    pytest.param("python", id="python"),
]


@pytest.fixture(params=BACKEND_PARAMS)
def kernels(request: pytest.FixtureRequest) -> ModuleType:
    """One kernel backend module: ``wscodec._speedups`` or ``wscodec._pure``."""
    if request.param == "python":
        return _pure
    assert _speedups is not None  # the session would not have started (or the param is skipped)
    return _speedups


@pytest.fixture(scope="session")
def compiled() -> ModuleType:
    """The compiled backend, for differential tests against :mod:`wscodec._pure`."""
    if _speedups is None:
        pytest.skip(SKIP_REASON)
    return _speedups


@pytest.fixture(scope="session")
def pure() -> ModuleType:
    return _pure
