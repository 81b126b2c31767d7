"""Sphinx configuration: the API reference comes from the docstrings of the installed package (autodoc).

Build (CI does, warnings are errors): ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
"""

from __future__ import annotations

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
nitpicky = False
autodoc_inherit_docstrings = False
# Type hints name ``WebSocket`` unqualified in both wscodec.asyncio and wscodec.sync; Sphinx cannot tell which
# class a bare name in a signature means and warns that it found two. The links are a nicety, not content.
suppress_warnings = ["ref.python"]
