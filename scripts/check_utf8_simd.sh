#!/bin/sh
# Every SIMD UTF-8 path of src/wscodec/_speedups_impl.h against its scalar automaton (tests/fuzz/utf8_paths.c):
# natively (x86-64: scalar, SSE4.1, AVX2, AVX-512 as the CPU has them) and, when the cross tools are installed
# (Debian: gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user), the AArch64 NEON path under qemu.
# Builds into a temporary directory; nothing is left behind.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
${CC:-cc} -O2 -I"$root/src/wscodec" -o "$tmp/native" "$root/tests/fuzz/utf8_paths.c"
echo "native: $("$tmp/native")"
if command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null; then
    aarch64-linux-gnu-gcc -O2 -static -I"$root/src/wscodec" -o "$tmp/arm64" "$root/tests/fuzz/utf8_paths.c"
    echo "aarch64 (qemu): $(qemu-aarch64 "$tmp/arm64")"
else
    echo "aarch64: skipped (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)"
fi
