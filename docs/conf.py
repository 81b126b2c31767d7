"""Sphinx configuration: the API reference comes from the docstrings of the installed package (autodoc).

Build (CI does, warnings are errors): ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
"""

from __future__ import annotations

import importlib
from typing import Any

import wscodec

project = "wscodec"
author = "wscodec developers"
copyright = "2026, wscodec developers"  # noqa: A001 - the name Sphinx reads
release = version = wscodec.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "myst_parser",  # docs/scaling.md
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}  # offline builds: no inventories fetched
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
html_theme = "alabaster"
html_title = f"wscodec {release}"
exclude_patterns = ["_build"]
# Every cross-reference must resolve (with -W a broken one fails the build), except to what has no page here:
# the standard library and third-party packages (offline builds fetch no inventories), and private names
# (a public class's private base, shown in its "Bases:" line).
nitpicky = True
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(collections|http|ssl|socket|logging|abc|enum|asyncio|threading|urllib|typing|uuid|redis|concurrent|"
        r"uvicorn|aiofastnet|os|io|types|zlib)(\..*)?",
    ),
    (r"py:.*", r"(wscodec\.)?(\w+\.)*_\w+(\..*)?"),
    # names in signatures that Sphinx sees unqualified: uvicorn's (asgi) and a type alias of ours
    (r"py:class", r"Config|ServerState|LoggerLike"),
]
autodoc_inherit_docstrings = False
# Type hints name ``WebSocket`` unqualified in both wscodec.asyncio and wscodec.sync; Sphinx cannot tell which
# class a bare name in a signature means and warns that it found two. The links are a nicety, not content.
suppress_warnings = ["ref.python"]


def _canonical(target: str) -> str | None:
    """Where the object ``target`` names is defined and documented (``wscodec.asyncio.serve`` is
    ``wscodec.asyncio.server.serve``), found by importing it; None when it cannot be imported."""
    parts = target.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        rest = parts[split:]
        for index, name in enumerate(rest):
            if not hasattr(obj, name):
                return None
            obj = getattr(obj, name)
            module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
            if isinstance(module, str) and isinstance(qualname, str) and module.startswith("wscodec"):
                return ".".join([module, qualname, *rest[index + 1 :]])
        return None
    return None


def _resolve_reexport(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve a reference to a re-exported name (``wscodec.Connection``, ``wscodec.asyncio.serve``) or to a
    name of the referring module (``serve`` in ``wscodec.compression``) at the object's own entry."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    scopes = [target]
    module, cls = node.get("py:module"), node.get("py:class")
    if module:
        if cls:
            scopes.append(f"{module}.{cls}.{target}")
        package = module
        while package:
            scopes.append(f"{package}.{target}")
            package = package.rpartition(".")[0]
    domain = env.get_domain("py")
    for candidate in scopes:
        canonical = _canonical(candidate)
        if canonical is None or canonical == target:
            continue
        found = domain.resolve_xref(env, node["refdoc"], app.builder, "obj", canonical, node, contnode)
        if found is not None:
            return found
    return None


def setup(app: Any) -> None:
    app.connect("missing-reference", _resolve_reexport)
