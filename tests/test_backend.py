"""The backend selector (``wscodec._kernels``): ``WSCODEC_PURE_PYTHON`` is obeyed and ``BACKEND`` tells the truth.

Subprocesses run with a controlled environment and import the same ``wscodec`` as this process (the installed
build in CI, ``src/`` in a checkout).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import wscodec
from wscodec import _kernels, _pure

NAMES = ["Frame", "FrameDecoder", "Utf8Validator", "apply_mask", "apply_mask_inplace", "encode_frame", "validate_utf8"]

OPTED_OUT = os.environ.get("WSCODEC_BUILD_EXTENSION", "").strip().lower() == "no"

try:
    from wscodec import _speedups
except ImportError:
    if not OPTED_OUT:
        raise  # the compiled module failing to import is a failure, never a skip
    _speedups = None

PROBE = """
import json, sys
import wscodec, wscodec._kernels as k
from wscodec import _pure
names = __NAMES__
live = sys.modules.get("wscodec._speedups") if wscodec.BACKEND == "cython" else _pure
print(json.dumps({
    "backend": wscodec.BACKEND,
    "speedups_imported": "wscodec._speedups" in sys.modules,
    "from_live": all(getattr(wscodec, n) is getattr(live, n) and getattr(k, n) is getattr(live, n) for n in names),
    "from_pure": all(getattr(wscodec, n) is getattr(_pure, n) for n in names),
}))
""".replace("__NAMES__", repr(NAMES))


def probe(pure_python: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "WSCODEC_PURE_PYTHON"}
    if pure_python is not None:
        env["WSCODEC_PURE_PYTHON"] = pure_python
    # import this very wscodec: its parent directory first on the path
    root = os.path.dirname(os.path.dirname(os.path.abspath(wscodec.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("value", ["1", "yes", "true"])
def test_pure_python_forced(value):
    result = probe(value)
    assert result == {"backend": "python", "speedups_imported": False, "from_live": True, "from_pure": True}


@pytest.mark.parametrize("value", [None, "", "0"])
def test_default_picks_compiled(value):
    if _speedups is None:
        pytest.skip("wscodec._speedups is not importable (WSCODEC_BUILD_EXTENSION=no)")
    result = probe(value)
    assert result == {"backend": "cython", "speedups_imported": True, "from_live": True, "from_pure": False}


def test_public_names_come_from_live_backend():
    """The backend this run asked for (by the environment alone) is the one behind every public name, and
    the other one is not."""
    forced = os.environ.get("WSCODEC_PURE_PYTHON", "") not in ("", "0")
    expected = "python" if forced or _speedups is None else "cython"  # None only when opted out
    assert expected == wscodec.BACKEND
    assert expected == _kernels.BACKEND
    if expected == "python":
        live, other = _pure, _speedups
    else:
        assert _speedups is not None
        live, other = _speedups, _pure
    for name in NAMES:
        assert getattr(wscodec, name) is getattr(live, name), name
        assert getattr(_kernels, name) is getattr(live, name), name
        if other is not None:
            assert getattr(wscodec, name) is not getattr(other, name), name
        assert name in wscodec.__all__


def test_both_backends_have_every_name():
    assert sorted(_pure.__all__) == sorted(NAMES)
    if _speedups is None:
        pytest.skip("wscodec._speedups is not importable (WSCODEC_BUILD_EXTENSION=no)")
    for name in NAMES:
        assert callable(getattr(_speedups, name)), name
    # the compiled module raises the package's own exception classes, not copies
    from wscodec.errors import ProtocolError

    with pytest.raises(ProtocolError):
        _speedups.FrameDecoder("server").feed(b"\x81\x00")
