"""Differential fuzz target for the kernels: the compiled backend and the pure twin must agree on everything.

Run it with atheris (libFuzzer flags pass through)::

    python tests/fuzz/fuzz_kernels.py -max_total_time=60 tests/fuzz/corpus

or through ``tests/fuzz/run_fuzz.py``, which keeps crash artifacts out of the working tree. The comparison
functions below are plain Python (atheris only parses the input): ``tests/test_frame_decoder.py`` replays the
seed corpus through :func:`check_input` on every test run.

Input layout (what :func:`parse_input` reads through ``atheris.FuzzedDataProvider``, whose integers come from
the *end* of the data and whose bytes come from the front): the last byte holds the flags (bit 0: client role,
bits 1-3: allow RSV1/2/3, bit 4: feed byte by byte), the one before it picks ``max_frame_size`` from
:data:`MAX_SIZES`, the next one the number of chunk lengths (0-7), then one byte per chunk length and four
bytes of mask key; everything left, from the front, is the byte stream.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType
from typing import Any

MAX_HEADER = 14  # 2 + 8 bytes of 64-bit length + 4 bytes of mask key
MAX_SIZES: tuple[int | None, ...] = (0, 1, 2, 125, 126, 127, 65535, 65536, 1 << 20, None, 16, 300)

# --------------------------------------------------------------------------------------------------------
# RFC 3629 section 4, as a byte-level automaton: the reference the UTF-8 kernels are held to.
#   UTF8-2 = %xC2-DF UTF8-tail
#   UTF8-3 = %xE0 %xA0-BF UTF8-tail / %xE1-EC 2( UTF8-tail ) / %xED %x80-9F UTF8-tail / %xEE-EF 2( UTF8-tail )
#   UTF8-4 = %xF0 %x90-BF 2( UTF8-tail ) / %xF1-F3 3( UTF8-tail ) / %xF4 %x80-8F 2( UTF8-tail )


def _lead(byte: int) -> tuple[int, int, int] | None:
    """(low, high) of the second byte and the sequence length, or None if ``byte`` cannot start a character."""
    if 0xC2 <= byte <= 0xDF:
        return 0x80, 0xBF, 2
    if byte == 0xE0:
        return 0xA0, 0xBF, 3
    if 0xE1 <= byte <= 0xEC or 0xEE <= byte <= 0xEF:
        return 0x80, 0xBF, 3
    if byte == 0xED:
        return 0x80, 0x9F, 3
    if byte == 0xF0:
        return 0x90, 0xBF, 4
    if 0xF1 <= byte <= 0xF3:
        return 0x80, 0xBF, 4
    if byte == 0xF4:
        return 0x80, 0x8F, 4
    return None


def utf8_reference(data: bytes) -> tuple[int | None, bool]:
    """(index of the first byte after which no valid completion exists, or None; True if complete and valid)."""
    need = 0  # continuation bytes still expected
    low, high = 0x80, 0xBF
    for i, byte in enumerate(data):
        if need:
            if not low <= byte <= high:
                return i, False
            need -= 1
            low, high = 0x80, 0xBF
        elif byte < 0x80:
            continue
        else:
            lead = _lead(byte)
            if lead is None:
                return i, False
            low, high, length = lead
            need = length - 1
    return None, need == 0


# --------------------------------------------------------------------------------------------------------
# Traces: everything observable about one backend on one input, as plain comparable data.


def frame_tuple(frame: Any) -> tuple[Any, ...]:
    """A frame as a tuple, with the types of its fields (a compiled ``1`` where ``True`` is due is a bug)."""
    fields = (frame.opcode, frame.payload, frame.fin, frame.rsv1, frame.rsv2, frame.rsv3)
    return fields + tuple(type(value).__name__ for value in fields)


def error_tuple(exc: BaseException) -> tuple[Any, ...]:
    frames = getattr(exc, "frames", None)
    return (
        type(exc).__name__,
        str(exc),
        getattr(exc, "close_code", None),
        None if frames is None else [frame_tuple(f) for f in frames],
    )


def decode_trace(
    mod: ModuleType,
    chunks: list[bytes],
    role: str = "server",
    max_frame_size: int | None = 1 << 20,
    allow: tuple[bool, bool, bool] = (False, False, False),
) -> list[tuple[Any, ...]]:
    """Feed ``chunks`` one by one to ``mod.FrameDecoder``; record frames or error, and ``buffered``, per feed.

    Only :class:`wscodec.errors.ProtocolError` (and subclasses) may escape ``feed``; anything else propagates
    and is a finding. The memory bound is asserted after every feed.
    """
    from wscodec.errors import ProtocolError

    decoder = mod.FrameDecoder(role, max_frame_size, allow_rsv1=allow[0], allow_rsv2=allow[1], allow_rsv3=allow[2])
    trace: list[tuple[Any, ...]] = []
    for chunk in chunks:
        try:
            frames = decoder.feed(chunk)
        except ProtocolError as exc:
            trace.append(("error", *error_tuple(exc)))
        else:
            assert type(frames) is list, type(frames)
            trace.append(("frames", [frame_tuple(f) for f in frames]))
        buffered = decoder.buffered
        if max_frame_size is not None:
            # One frame in progress at most: a data frame within max_frame_size, or a control frame's 125
            # bytes, which any limit allows (RFC 6455 section 5.5).
            assert buffered <= MAX_HEADER + max(max_frame_size, 125), (buffered, max_frame_size)
        trace.append(("buffered", buffered))
    return trace


class TextRecord:
    """The record type :func:`messages_trace` asks ``feed_messages`` for (as the Connection's TextMessage).

    A plain slotted class: this module is also loaded by file path, outside ``sys.modules``, where
    ``dataclass(slots=True)`` cannot run."""

    __slots__ = ("data",)


class BinaryRecord:
    __slots__ = ("data",)


def item_tuple(item: Any) -> tuple[Any, ...]:
    if type(item) in (TextRecord, BinaryRecord):
        return (type(item).__name__, item.data, type(item.data).__name__)
    return ("Frame", *frame_tuple(item))


def open_after(item: Any, inside: bool) -> bool:
    """Whether a fragmented message is open after ``item`` (the rule feed_messages documents)."""
    if type(item) in (TextRecord, BinaryRecord):
        return inside
    if inside:
        return not (item.opcode == 0 and item.fin)
    return item.opcode in (1, 2) and not item.fin


def messages_trace(
    mod: ModuleType,
    chunks: list[bytes],
    role: str = "server",
    max_frame_size: int | None = 1 << 20,
    allow: tuple[bool, bool, bool] = (False, False, False),
) -> list[tuple[Any, ...]]:
    """Feed ``chunks`` to ``FrameDecoder.feed_messages`` as the Connection does (continuations merged, the
    open-message state carried from one read to the next); record the items or the error per feed."""
    from wscodec.errors import ProtocolError

    decoder = mod.FrameDecoder(
        role,
        max_frame_size,
        allow_rsv1=allow[0],
        allow_rsv2=allow[1],
        allow_rsv3=allow[2],
        merge_continuations=True,
    )
    inside = False
    trace: list[tuple[Any, ...]] = []
    for chunk in chunks:
        try:
            items, left = decoder.feed_messages(chunk, inside, TextRecord, BinaryRecord)
        except ProtocolError as exc:
            items = exc.frames
            trace.append(("error", type(exc).__name__, str(exc), exc.close_code, [item_tuple(i) for i in items]))
        else:
            assert left == sum(1 for i in items if type(i) not in (TextRecord, BinaryRecord)), (left, items)
            trace.append(("items", [item_tuple(i) for i in items]))
        for item in items:
            inside = open_after(item, inside)
    return trace


def utf8_trace(mod: ModuleType, chunks: list[bytes]) -> list[Any]:
    validator = mod.Utf8Validator()
    trace: list[Any] = [validator.feed(chunk) for chunk in chunks]
    trace.append(validator.finish())
    trace.append(mod.validate_utf8(b"".join(chunks)))
    return trace


def utf8_expected(chunks: list[bytes]) -> list[Any]:
    """What RFC 3629 says :func:`utf8_trace` must be: each feed False from the chunk holding the first bad byte."""
    data = b"".join(chunks)
    bad, complete = utf8_reference(data)
    expected: list[Any] = []
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        expected.append(bad is None or bad >= seen)
    expected.append(complete)
    expected.append(complete)
    return expected


def split(data: bytes, lengths: list[int]) -> list[bytes]:
    """``data`` cut into pieces of the given lengths, the rest as one last piece (empty pieces kept)."""
    chunks = []
    pos = 0
    for n in lengths:
        chunks.append(data[pos : pos + n])
        pos += n
    chunks.append(data[pos:])
    return chunks


def check_stream(
    pure: ModuleType,
    compiled: ModuleType | None,
    chunks: list[bytes],
    role: str,
    max_frame_size: int | None,
    allow: tuple[bool, bool, bool],
    key: bytes = b"\x37\xfa\x21\x3d",
) -> None:
    """Every check of one input: decoder traces, UTF-8 traces against RFC 3629, masking, re-encoding."""
    data = b"".join(chunks)
    ref = decode_trace(pure, chunks, role, max_frame_size, allow)
    utf8_ref = utf8_trace(pure, chunks)
    assert utf8_ref == utf8_expected(chunks), (chunks, utf8_ref)
    masked = pure.apply_mask(data, key)
    assert pure.apply_mask(masked, key) == data
    if compiled is not None:
        got = decode_trace(compiled, chunks, role, max_frame_size, allow)
        assert got == ref, f"FrameDecoder differs on {chunks!r} role={role} max={max_frame_size} allow={allow}"
        got_messages = messages_trace(compiled, chunks, role, max_frame_size, allow)
        ref_messages = messages_trace(pure, chunks, role, max_frame_size, allow)
        assert got_messages == ref_messages, f"feed_messages differs on {chunks!r} role={role} allow={allow}"
        assert utf8_trace(compiled, chunks) == utf8_ref, f"UTF-8 differs on {chunks!r}"
        check_utf8_paths(pure, compiled, chunks)
        assert compiled.apply_mask(data, key) == masked
    # Every decoded frame re-encodes to the same bytes on both backends and decodes back to itself.
    for entry in ref:
        if entry[0] != "frames":
            continue
        for opcode, payload, fin, rsv1, rsv2, rsv3, *_ in entry[1]:
            wire_key = key if role == "server" else None
            wire = pure.encode_frame(opcode, payload, fin=fin, rsv1=rsv1, rsv2=rsv2, rsv3=rsv3, mask=wire_key)
            if compiled is not None:
                assert (
                    compiled.encode_frame(opcode, payload, fin=fin, rsv1=rsv1, rsv2=rsv2, rsv3=rsv3, mask=wire_key)
                    == wire
                )
            back = decode_trace(pure, [wire], role, max_frame_size, allow)
            assert back[0] == ("frames", [frame_tuple(pure.Frame(opcode, payload, fin, rsv1, rsv2, rsv3))])


def check_utf8_paths(pure: ModuleType, compiled: ModuleType, chunks: list[bytes]) -> None:
    """Every SIMD path this CPU has (AVX-512, AVX2, SSE4 or NEON, scalar) against the pure twin, on the chunks
    and on the input repeated past 64 bytes (below that the compiled validator never leaves its scalar code)."""
    use = getattr(compiled, "_utf8_use", None)
    if use is None:
        return
    data = b"".join(chunks)
    long = data * (200 // len(data) + 2) if data else b""
    long_chunks = split(long, [len(long) // 3, 64])
    ref_long = utf8_trace(pure, long_chunks)
    best = compiled.UTF8_IMPL
    try:
        for name in ("scalar", "sse4", "neon", "avx2", "avx512"):
            if use(name) != name:
                continue
            assert utf8_trace(compiled, chunks) == utf8_trace(pure, chunks), f"UTF-8 ({name}) differs on {chunks!r}"
            assert utf8_trace(compiled, long_chunks) == ref_long, f"UTF-8 ({name}) differs on {long!r}"
    finally:
        use(best)


def parse_input(fdp: Any) -> tuple[list[bytes], str, int | None, tuple[bool, bool, bool], bytes]:
    """Derive chunks, role, max_frame_size, RSV allowance and a mask key from a ``FuzzedDataProvider``."""
    flags = fdp.ConsumeIntInRange(0, 255)
    max_frame_size = MAX_SIZES[fdp.ConsumeIntInRange(0, 255) % len(MAX_SIZES)]
    lengths = [fdp.ConsumeIntInRange(0, 255) for _ in range(fdp.ConsumeIntInRange(0, 7))]
    key = bytes(fdp.ConsumeIntInRange(0, 255) for _ in range(4))
    data = fdp.ConsumeBytes(fdp.remaining_bytes())
    role = "client" if flags & 1 else "server"
    allow = (bool(flags & 2), bool(flags & 4), bool(flags & 8))
    chunks = [data[i : i + 1] for i in range(len(data))] if flags & 16 else split(data, lengths)
    return chunks, role, max_frame_size, allow, key


def build_input(
    stream: bytes,
    *,
    client: bool = False,
    allow: tuple[bool, bool, bool] = (False, False, False),
    byte_by_byte: bool = False,
    max_index: int = 8,
    lengths: tuple[int, ...] = (),
    key: bytes = b"\x37\xfa\x21\x3d",
) -> bytes:
    """The fuzzer input that :func:`parse_input` reads back as these settings (for writing a seed corpus)."""
    flags = int(client) | allow[0] << 1 | allow[1] << 2 | allow[2] << 3 | int(byte_by_byte) << 4
    tail = [flags, max_index, len(lengths), *lengths, *key]
    return stream + bytes(reversed(tail))


class ReplayProvider:
    """The part of ``atheris.FuzzedDataProvider`` that :func:`parse_input` uses, in plain Python: the corpus
    replays where atheris cannot be installed (it has no wheels for every Python). As libFuzzer's provider,
    integers are taken from the end of the data (big-endian, as many bytes as the range needs) and bytes
    from the front. ``tests/test_frame_decoder.py`` checks it against atheris where both exist."""

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)

    def remaining_bytes(self) -> int:
        return len(self._data)

    def ConsumeIntInRange(self, low: int, high: int) -> int:  # atheris names it so
        span = high - low
        result = 0
        offset = 0
        while offset < 64 and span >> offset > 0 and self._data:
            result = (result << 8) | self._data[-1]
            self._data = self._data[:-1]
            offset += 8
        if span != (1 << 64) - 1:
            result %= span + 1
        return low + result

    def ConsumeBytes(self, count: int) -> bytes:  # atheris names it so
        out, self._data = self._data[:count], self._data[count:]
        return out


def check_input(data: bytes, pure: ModuleType, compiled: ModuleType | None, provider: Any = None) -> None:
    """The whole fuzz check of one raw input (what the atheris target and the corpus replay test run);
    ``provider`` parses the input: ``atheris.FuzzedDataProvider`` by default, or :class:`ReplayProvider`."""
    if provider is None:
        import atheris

        provider = atheris.FuzzedDataProvider
    chunks, role, max_frame_size, allow, key = parse_input(provider(data))
    check_stream(pure, compiled, chunks, role, max_frame_size, allow, key)


def _safe_argv(argv: list[str]) -> list[str]:
    """libFuzzer flags with crash artifacts and new inputs kept out of the repository.

    libFuzzer writes crashes to ``./`` unless ``-artifact_prefix`` says otherwise, and new inputs to the first
    corpus directory: a temporary directory goes first, so the committed seed corpus is only read.
    """
    import tempfile

    args = list(argv[1:])
    work = tempfile.mkdtemp(prefix="wscodec-fuzz-")
    if not any(a.startswith("-artifact_prefix=") for a in args):
        os.makedirs(os.path.join(work, "artifacts"))
        args.insert(0, f"-artifact_prefix={os.path.join(work, 'artifacts')}{os.sep}")
    dirs = [i for i, a in enumerate(args) if not a.startswith("-")]
    seed_corpus = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    if dirs and os.path.abspath(args[dirs[0]]) == seed_corpus:
        os.makedirs(os.path.join(work, "corpus"))
        args.insert(dirs[0], os.path.join(work, "corpus"))
    print(f"fuzz_kernels: artifacts and new inputs under {work}", file=sys.stderr)
    return [argv[0], *args]


def main() -> None:
    import atheris

    with atheris.instrument_imports(include=["wscodec"]):
        from wscodec import _pure, _speedups

    def test_one_input(data: bytes) -> None:
        check_input(data, _pure, _speedups)

    atheris.Setup(_safe_argv(sys.argv), test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    src = os.path.join(os.path.dirname(os.path.dirname(here)), "src")
    if importlib.util.find_spec("wscodec") is None and os.path.isdir(src):
        sys.path.insert(0, src)  # a checkout without an installed wscodec (import it only under instrumentation)
    main()
