"""Build the optional compiled kernels (``wscodec._speedups``).

``WSCODEC_BUILD_EXTENSION`` decides what a failed compile means:

* unset (default): try to compile; if there is no compiler or no Cython, install the pure-Python backend
  and say so once.
* ``yes``: the extension is required; a failed compile fails the install (what CI and wheel builds set).
* ``no``: do not even try; pure Python only.
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

MODE = os.environ.get("WSCODEC_BUILD_EXTENSION", "").strip().lower()
if MODE not in ("", "yes", "no"):
    sys.exit(f"WSCODEC_BUILD_EXTENSION must be 'yes', 'no' or unset, not {MODE!r}")


def _extensions() -> list[Extension]:
    if MODE == "no":
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if MODE == "yes":
            raise
        print("wscodec: Cython is not available; installing the pure-Python backend", file=sys.stderr)
        return []
    if sys.platform == "win32":
        compile_args = ["/O2"]
    else:
        compile_args = ["-O3", "-fno-strict-aliasing"]
    ext = Extension(
        "wscodec._speedups",
        sources=["src/wscodec/_speedups.pyx"],
        include_dirs=["src/wscodec"],
        extra_compile_args=compile_args,
        optional=MODE != "yes",
    )
    return cythonize(
        [ext],
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    )


class BuildExt(build_ext):
    """Turn a failed optional compile into one clear line instead of a wall of compiler output."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            if MODE == "yes":
                raise
            print(f"wscodec: compiled kernels not built ({exc}); using the pure-Python backend", file=sys.stderr)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            if MODE == "yes":
                raise
            print(f"wscodec: compiled kernels not built ({exc}); using the pure-Python backend", file=sys.stderr)


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExt})
