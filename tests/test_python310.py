"""The oldest Python the package declares (``requires-python = ">=3.10"``) can import all of it.

CI runs a newer Python, where a 3.11-only construct evaluated at import time goes unnoticed: a module-level
``logging.LoggerAdapter[Any]`` (subscriptable at run time only from 3.11) made ``import wscodec.asyncio``
a TypeError on 3.10. Two checks: a scan of what every module evaluates at import, on any Python; and, when
a Python 3.10 interpreter is at hand, every module imported by it.
"""

from __future__ import annotations

import ast
import glob
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import wscodec

PACKAGE = Path(wscodec.__file__).resolve().parent
#: Classes that are generic only to type checkers before Python 3.11: ``X[...]`` raises at run time on 3.10.
NOT_SUBSCRIPTABLE_ON_310 = {"LoggerAdapter"}


def _evaluated_at_import(tree: ast.Module) -> Iterator[ast.AST]:
    """The nodes a module evaluates when imported: not function bodies, not annotations (``from __future__
    import annotations`` keeps them strings), not ``if TYPE_CHECKING:`` blocks."""
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            stack.extend(node.decorator_list)
            stack.extend(d for d in (*node.args.defaults, *node.args.kw_defaults) if d is not None)
            continue
        if isinstance(node, ast.AnnAssign):
            if node.value is not None:
                stack.append(node.value)
            continue
        if isinstance(node, ast.Lambda):
            stack.extend(node.args.defaults)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def test_nothing_evaluated_at_import_needs_python_311() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in _evaluated_at_import(tree):
            if isinstance(node, ast.Subscript):
                name = node.value.attr if isinstance(node.value, ast.Attribute) else getattr(node.value, "id", "")
                if name in NOT_SUBSCRIPTABLE_ON_310:
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {ast.unparse(node)}")
    assert not offenders, "subscripted at import time, a TypeError on Python 3.10:\n" + "\n".join(offenders)


def _python310() -> str | None:
    """A Python 3.10 that runs: pyenv's own binaries first (its ``python3.10`` shim on PATH fails when 3.10
    is not the selected version), then ``python3.10`` on PATH."""
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3.10")), reverse=True)
    on_path = shutil.which("python3.10")
    for candidate in [*candidates, *([on_path] if on_path else [])]:
        try:
            probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                                   text=True, timeout=30)  # fmt: skip
        except OSError:
            continue
        if probe.returncode == 0 and probe.stdout.strip() == "(3, 10)":
            return candidate
    return None


IMPORT_ALL = """
import importlib, pkgutil, wscodec
failed = []
for module in pkgutil.walk_packages(wscodec.__path__, "wscodec."):
    try:
        importlib.import_module(module.name)
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("wscodec"):  # an optional dependency this interpreter lacks
            continue
        failed.append(f"{module.name}: {exc!r}")
    except Exception as exc:
        failed.append(f"{module.name}: {exc!r}")
import typing, wscodec.asyncio, wscodec.sync
for api in (wscodec.asyncio, wscodec.sync):  # (the signatures' annotations resolve: docs, pydantic, IDEs)
    for name in ("connect", "serve", "unix_connect", "unix_serve", "WebSocket"):
        target = getattr(api, name)
        typing.get_type_hints(target.__init__ if isinstance(target, type) else target)
print(wscodec.BACKEND)
assert not failed, failed
"""


def test_the_public_signatures_resolve() -> None:
    """``typing.get_type_hints`` on the entry points: an annotation naming what exists only for type
    checkers (``if TYPE_CHECKING:``) is a NameError there, and Sphinx then shows unresolved names."""
    import inspect
    import typing

    import wscodec.asyncio
    import wscodec.sync

    with_logger = 0
    for api in (wscodec.asyncio, wscodec.sync):
        for name in ("connect", "serve", "unix_connect", "unix_serve", "WebSocket"):
            target = getattr(api, name)
            target = target.__init__ if isinstance(target, type) else target
            hints = typing.get_type_hints(target)
            if "logger" in inspect.signature(target).parameters:
                assert "logger" in hints, (api.__name__, name)
                with_logger += 1
    assert with_logger >= 6


def test_every_module_imports_on_python_310(tmp_path: Path) -> None:
    python = _python310()
    if python is None:
        pytest.skip("no Python 3.10 interpreter (python3.10 on PATH or under ~/.pyenv) to import the package with")
    # This install's package alone on the path (its compiled modules are the running Python's: 3.10 takes the
    # pure backend), not the site-packages around it, whose packages may be built for a newer Python.
    (tmp_path / "wscodec").symlink_to(PACKAGE, target_is_directory=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env["PYTHONPATH"] = str(tmp_path)
    out = subprocess.run([python, "-c", IMPORT_ALL], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() in ("cython", "python"), out.stdout  # (3.10 loads no 3.11 extension: "python")
