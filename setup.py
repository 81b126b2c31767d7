"""Build the optional compiled modules: the kernels (``wscodec._speedups``) and the asyncio WebSocket's hot path
(``wscodec.asyncio._hotpath``, which cimports the kernels' ``FrameQueue`` through ``_speedups.pxd``). Each has a
pure-Python twin; the compiled hot path is used only with the compiled kernels, and the tests fail if one of the
two is missing from a build that has the other.

``WSCODEC_BUILD_EXTENSION`` decides what a failed compile means:

* unset (default): try to compile; if there is no compiler, no Cython or no ``.pyx``, install the pure-Python
  backend and say so in one line (pip shows build output only with ``-v``; the install succeeds either way).
* ``yes``: the extension is required; a failed compile fails the install (what CI and wheel builds set).
* ``no``: do not even try; pure Python only.

The sdist ships ``_speedups.pyx``, not the generated C: Cython is a build requirement (``pyproject.toml``), never a
runtime one, so every build regenerates the C from the one source of truth.
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

MODE = os.environ.get("WSCODEC_BUILD_EXTENSION", "").strip().lower()
if MODE not in ("", "yes", "no"):
    sys.exit(f"WSCODEC_BUILD_EXTENSION must be 'yes', 'no' or unset, not {MODE!r}")

PYX = os.path.join("src", "wscodec", "_speedups.pyx")
HOT_PATH_PYX = os.path.join("src", "wscodec", "asyncio", "_hotpath.pyx")
PURE = "using the pure-Python backend"

# setup.py runs several times per install (egg_info, dist_info, bdist_wheel); speak only in the run that builds.
_BUILDING = any(
    cmd in sys.argv for cmd in ("build", "build_ext", "bdist_wheel", "install", "develop", "editable_wheel")
)


def _say(message: str) -> None:
    if _BUILDING:
        print(f"wscodec: {message}", file=sys.stderr)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if len(first) > 160:
        first = first[:157] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _extensions() -> list[Extension]:
    if MODE == "no":
        _say(f"WSCODEC_BUILD_EXTENSION=no; compiled kernels not built, {PURE}")
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if MODE == "yes":
            raise
        _say(f"Cython is not available; compiled kernels not built, {PURE}")
        return []
    if not (os.path.exists(PYX) and os.path.exists(HOT_PATH_PYX)):
        if MODE == "yes":
            sys.exit(f"wscodec: WSCODEC_BUILD_EXTENSION=yes but {PYX} or {HOT_PATH_PYX} is missing")
        _say(f"{PYX} or {HOT_PATH_PYX} is missing; compiled kernels not built, {PURE}")
        return []
    if sys.platform == "win32":
        compile_args = ["/O2"]
    else:
        compile_args = ["-O3", "-fno-strict-aliasing"]
    # Release builds leave the debug info out (1.2 MB -> about 200 KB); WSCODEC_DEBUG=1 keeps it.
    strip = sys.platform.startswith("linux") and not os.environ.get("WSCODEC_DEBUG")
    link_args = ["-Wl,--strip-debug"] if strip else []
    kernels = Extension(
        "wscodec._speedups",
        sources=[PYX],
        depends=["src/wscodec/_speedups_impl.h"],
        include_dirs=["src/wscodec"],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        optional=MODE != "yes",
    )
    # The asyncio WebSocket's per-read and per-reply steps (its pure twin is _hotpath_pure.py).
    hot_path = Extension(
        "wscodec.asyncio._hotpath",
        sources=[HOT_PATH_PYX],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        optional=MODE != "yes",
    )
    try:
        return cythonize(
            [kernels, hot_path],
            language_level=3,
            quiet=True,
            compiler_directives={
                "boundscheck": False,
                "wraparound": False,
                "cdivision": True,
                "initializedcheck": False,
                "embedsignature": True,
            },
        )
    except Exception as exc:
        if MODE == "yes":
            raise
        _say(f"Cython could not translate {PYX} ({_short(exc)}); {PURE}")
        return []


def _pure_wheel(command: build_ext) -> None:
    """An optional compile failed: the wheel being built (if any) holds no compiled module, so it is tagged
    ``py3-none-any`` (it runs on any Python 3 of any platform), like the builds that never tried to compile."""
    bdist = command.distribution.command_obj.get("bdist_wheel")
    if bdist is not None:
        bdist.root_is_pure = True  # type: ignore[attr-defined]


class BuildExt(build_ext):
    """Turn a failed optional compile into one clear line instead of a wall of compiler output."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            if MODE == "yes":
                raise
            _pure_wheel(self)
            _say(f"compiled kernels not built ({_short(exc)}); {PURE}")

    _failed = False

    def build_extension(self, ext: Extension) -> None:
        # Both modules or neither: the hot path cimports the kernels, and a wheel tagged pure holds no binary.
        if self._failed:
            return
        try:
            super().build_extension(ext)
        except Exception as exc:
            if MODE == "yes":
                raise
            self._failed = True
            for other in self.extensions:
                built = self.get_ext_fullpath(other.name)
                if os.path.exists(built):
                    os.remove(built)
            _pure_wheel(self)
            _say(f"compiled kernels not built, no working C compiler? ({_short(exc)}); {PURE}")


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExt})
