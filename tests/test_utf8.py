"""Strict UTF-8 (RFC 3629, required by RFC 6455 sections 5.6 and 8.1): ``validate_utf8`` and ``Utf8Validator``.

Expectations come from RFC 3629 section 4 (the ``utf8_reference`` automaton in ``tests/fuzz/fuzz_kernels.py``
and, for complete input, CPython's strict codec) and from Markus Kuhn's UTF-8 decoder stress test, whose
sections 1-5 are written out below.
"""

from __future__ import annotations

import importlib.util
import pathlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

_spec = importlib.util.spec_from_file_location(
    "wscodec_fuzz_kernels", pathlib.Path(__file__).parent / "fuzz" / "fuzz_kernels.py"
)
assert _spec is not None and _spec.loader is not None
fk = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fk)

H = bytes.fromhex

# ---- RFC 3629 boundary code points ----

VALID_CODE_POINTS = [
    ("U+0000", H("00")),
    ("U+007F", H("7f")),
    ("U+0080", H("c280")),
    ("U+07FF", H("dfbf")),
    ("U+0800", H("e0a080")),
    ("U+D7FF", H("ed9fbf")),
    ("U+E000", H("ee8080")),
    ("U+FFFD", H("efbfbd")),
    ("U+FFFF", H("efbfbf")),
    ("U+10000", H("f0908080")),
    ("U+10FFFF", H("f48fbfbf")),
]


@pytest.mark.parametrize(("name", "data"), VALID_CODE_POINTS, ids=[n for n, _ in VALID_CODE_POINTS])
def test_rfc3629_boundary_code_points_valid(kernels, name, data):
    assert data == chr(int(name[2:], 16)).encode("utf-8")  # the table itself is right
    assert kernels.validate_utf8(data) is True
    v = kernels.Utf8Validator()
    assert v.feed(data) is True
    assert v.finish() is True


# (name, bytes, index of the first byte that makes the input impossible, or None if only truncated)
INVALID = [
    # overlongs (RFC 3629 section 3: "must not" decode overlong forms)
    ("overlong 2-byte NUL C0 80", H("c080"), 0),
    ("overlong 2-byte C1 BF", H("c1bf"), 0),
    ("overlong 3-byte NUL E0 80 80", H("e08080"), 1),
    ("overlong 3-byte E0 9F BF", H("e09fbf"), 1),
    ("overlong 4-byte NUL F0 80 80 80", H("f0808080"), 1),
    ("overlong 4-byte F0 8F BF BF", H("f08fbfbf"), 1),
    # UTF-16 surrogates U+D800..U+DFFF
    ("surrogate ED A0 80", H("eda080"), 1),
    ("surrogate ED AF BF", H("edafbf"), 1),
    ("surrogate ED B0 80", H("edb080"), 1),
    ("surrogate ED BF BF", H("edbfbf"), 1),
    # above U+10FFFF
    ("U+110000 F4 90 80 80", H("f4908080"), 1),
    ("U+13FFFF F4 BF BF BF", H("f4bfbfbf"), 1),
    ("F5 80 80 80", H("f5808080"), 0),
    ("F7 BF BF BF", H("f7bfbfbf"), 0),
    ("F8", H("f8"), 0),
    ("FC", H("fc"), 0),
    ("FE", H("fe"), 0),
    ("FF", H("ff"), 0),
    # truncated sequences: impossible only at the end
    ("truncated C2", H("c2"), None),
    ("truncated E0 A0", H("e0a0"), None),
    ("truncated E1", H("e1"), None),
    ("truncated ED 9F", H("ed9f"), None),
    ("truncated F0 90 80", H("f09080"), None),
    ("truncated F4 8F BF", H("f48fbf"), None),
    ("truncated then ASCII C2 41", H("c241"), 1),
    ("truncated then ASCII E1 80 41", H("e18041"), 2),
    ("truncated then ASCII F1 80 80 41", H("f1808041"), 3),
    # lone continuation bytes
    ("lone 80", H("80"), 0),
    ("lone BF", H("bf"), 0),
    ("ASCII then lone 80", H("414280"), 2),
    ("extra continuation C2 80 80", H("c28080"), 2),
]


@pytest.mark.parametrize(("name", "data", "bad"), INVALID, ids=[n for n, _, _ in INVALID])
def test_rfc3629_invalid_sequences(kernels, name, data, bad):
    assert fk.utf8_reference(data) == (bad, False)  # the reference agrees with the table
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    assert kernels.validate_utf8(data) is False
    v = kernels.Utf8Validator()
    # RFC 6455 section 8.1: fail as soon as the input cannot be valid, not at the end of the message
    assert v.feed(data) is (bad is None)
    assert v.finish() is False


# ---- Markus Kuhn, "UTF-8 decoder capability and stress test", sections 1-5 ----

KUHN_VALID = [
    ("1 kosme", H("cebae1bdb9cf83cebcceb5")),
    ("2.1.1 U+0000", H("00")),
    ("2.1.2 U+0080", H("c280")),
    ("2.1.3 U+0800", H("e0a080")),
    ("2.1.4 U+10000", H("f0908080")),
    ("2.2.1 U+007F", H("7f")),
    ("2.2.2 U+07FF", H("dfbf")),
    ("2.2.3 U+FFFF", H("efbfbf")),
    ("2.3.1 U+D7FF", H("ed9fbf")),
    ("2.3.2 U+E000", H("ee8080")),
    ("2.3.3 U+FFFD", H("efbfbd")),
    ("2.3.4 U+10FFFF", H("f48fbfbf")),
    # 5.3 noncharacters are valid code points (RFC 3629 encodes every scalar value)
    ("5.3.1 U+FFFE", H("efbfbe")),
    ("5.3.2 U+FFFF", H("efbfbf")),
    ("5.3 U+FDD0", H("efb790")),
    ("5.3 U+FDEF", H("efb7af")),
    ("5.3 U+1FFFE", H("f09fbfbe")),
    ("5.3 U+10FFFF", H("f48fbfbf")),
]

_LONELY = (
    [bytes([b, 0x20]) for b in range(0xC0, 0xE0)]
    + [bytes([b, 0x20]) for b in range(0xE0, 0xF0)]
    + [bytes([b, 0x20]) for b in range(0xF0, 0xF8)]
    + [bytes([b, 0x20]) for b in range(0xF8, 0xFC)]
    + [bytes([b, 0x20]) for b in (0xFC, 0xFD)]
)
_MISSING_LAST = [
    H("c0"),
    H("e080"),
    H("f08080"),
    H("f8808080"),
    H("fc80808080"),
    H("df"),
    H("efbf"),
    H("f7bfbf"),
    H("fbbfbfbf"),
    H("fdbfbfbfbf"),
]

KUHN_INVALID = [
    ("2.1.5 5-byte U+200000", H("f888808080")),
    ("2.1.6 6-byte U+4000000", H("fc8480808080")),
    ("2.2.4 U+1FFFFF", H("f7bfbfbf")),
    ("2.2.5 U+3FFFFFF", H("fbbfbfbfbf")),
    ("2.2.6 U+7FFFFFFF", H("fdbfbfbfbfbf")),
    ("2.3.5 U+110000", H("f4908080")),
    ("3.1.1 80", H("80")),
    ("3.1.2 BF", H("bf")),
    ("3.1.3 80 BF", H("80bf")),
    ("3.1.4 80 BF 80", H("80bf80")),
    ("3.1.5 80 BF 80 BF", H("80bf80bf")),
    ("3.1.6 80 BF 80 BF 80", H("80bf80bf80")),
    ("3.1.7 80 BF 80 BF 80 BF", H("80bf80bf80bf")),
    ("3.1.8 80 BF 80 BF 80 BF 80", H("80bf80bf80bf80")),
    ("3.1.9 all 64 continuation bytes", bytes(range(0x80, 0xC0))),
    *[(f"3.2 lonely start {d[0]:02X} + space", d) for d in _LONELY],
    *[(f"3.3 last byte missing {d.hex(' ')}", d) for d in _MISSING_LAST],
    ("3.4 concatenation of 3.3", b"".join(_MISSING_LAST)),
    ("3.5.1 FE", H("fe")),
    ("3.5.2 FF", H("ff")),
    ("3.5.3 FE FE FF FF", H("fefeffff")),
    ("4.1.1 / C0 AF", H("c0af")),
    ("4.1.2 / E0 80 AF", H("e080af")),
    ("4.1.3 / F0 80 80 AF", H("f08080af")),
    ("4.1.4 / F8 80 80 80 AF", H("f8808080af")),
    ("4.1.5 / FC 80 80 80 80 AF", H("fc80808080af")),
    ("4.2.1 C1 BF", H("c1bf")),
    ("4.2.2 E0 9F BF", H("e09fbf")),
    ("4.2.3 F0 8F BF BF", H("f08fbfbf")),
    ("4.2.4 F8 87 BF BF BF", H("f887bfbfbf")),
    ("4.2.5 FC 83 BF BF BF BF", H("fc83bfbfbfbf")),
    ("4.3.1 NUL C0 80", H("c080")),
    ("4.3.2 NUL E0 80 80", H("e08080")),
    ("4.3.3 NUL F0 80 80 80", H("f0808080")),
    ("4.3.4 NUL F8 80 80 80 80", H("f880808080")),
    ("4.3.5 NUL FC 80 80 80 80 80", H("fc8080808080")),
    ("5.1.1 U+D800", H("eda080")),
    ("5.1.2 U+DB7F", H("edadbf")),
    ("5.1.3 U+DB80", H("edae80")),
    ("5.1.4 U+DBFF", H("edafbf")),
    ("5.1.5 U+DC00", H("edb080")),
    ("5.1.6 U+DF80", H("edbe80")),
    ("5.1.7 U+DFFF", H("edbfbf")),
    ("5.2.1 U+D800 U+DC00", H("eda080edb080")),
    ("5.2.2 U+D800 U+DFFF", H("eda080edbfbf")),
    ("5.2.3 U+DB7F U+DC00", H("edadbfedb080")),
    ("5.2.4 U+DB7F U+DFFF", H("edadbfedbfbf")),
    ("5.2.5 U+DB80 U+DC00", H("edae80edb080")),
    ("5.2.6 U+DB80 U+DFFF", H("edae80edbfbf")),
    ("5.2.7 U+DBFF U+DC00", H("edafbfedb080")),
    ("5.2.8 U+DBFF U+DFFF", H("edafbfedbfbf")),
]


@pytest.mark.parametrize(("name", "data"), KUHN_VALID, ids=[n for n, _ in KUHN_VALID])
def test_kuhn_stress_valid(kernels, name, data):
    assert fk.utf8_reference(data) == (None, True)
    data.decode("utf-8")
    assert kernels.validate_utf8(data) is True
    assert kernels.validate_utf8(b"abc" + data + b"xyz") is True
    v = kernels.Utf8Validator()
    assert all(v.feed(data[i : i + 1]) for i in range(len(data)))
    assert v.finish() is True


@pytest.mark.parametrize(("name", "data"), KUHN_INVALID, ids=[n for n, _ in KUHN_INVALID])
def test_kuhn_stress_invalid(kernels, name, data):
    bad, complete = fk.utf8_reference(data)
    assert not complete
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    assert kernels.validate_utf8(data) is False
    assert kernels.validate_utf8(b"ok " + data + b" ok") is False
    # byte by byte: True exactly while a valid completion still exists, then False for good
    v = kernels.Utf8Validator()
    got = [v.feed(data[i : i + 1]) for i in range(len(data))]
    assert got == [bad is None or i < bad for i in range(len(data))]
    assert v.finish() is False


def test_rfc3629_all_code_points_round_trip(kernels):
    """Every scalar value, encoded by CPython, is valid; the text is split into chunks at odd offsets."""
    text = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    data = text.encode("utf-8")
    assert kernels.validate_utf8(data) is True
    v = kernels.Utf8Validator()
    pos = 0
    step = 1
    while pos < len(data):
        assert v.feed(data[pos : pos + step]) is True
        pos += step
        step = step * 7 % 65521 + 1
    assert v.finish() is True


def test_validate_utf8_buffer_types(kernels):
    data = "héllo €𝄞".encode()
    for obj in (data, bytearray(data), memoryview(data)):
        assert kernels.validate_utf8(obj) is True
    assert kernels.validate_utf8(b"") is True
    v = kernels.Utf8Validator()
    assert v.feed(bytearray(data[:2])) is True
    assert v.feed(memoryview(data)[2:]) is True
    assert v.finish() is True


def _shapes(data):
    """``data`` as the buffer shapes an application may hand a text send: strided, 2-D, wide items."""
    doubled = bytearray(2 * len(data))
    doubled[::2] = data
    yield "strided", memoryview(doubled)[::2]
    if len(data) % 2 == 0 and data:
        yield "2-D", memoryview(data).cast("B", (2, len(data) // 2))
        yield "words", memoryview(data).cast("H")


@pytest.mark.parametrize(
    "data", [b"", "h\xe9llo \u20ac\U0001d11e!".encode(), b"ab\xc3", b"a\xc3", b"\xff\xfe", "\u20ac\u20ac".encode()]
)
def test_every_buffer_shape_is_validated_as_its_bytes(kernels, data):
    """Differential against bytes.decode, one-shot and incremental (whole, and after a split character):
    a strided or 2-D view was a BufferError, or counted by rows in the pure validator."""
    try:
        data.decode()
        valid = True
    except UnicodeDecodeError:
        valid = False
    for shape, obj in _shapes(data):
        assert kernels.validate_utf8(obj) is valid, shape
        v = kernels.Utf8Validator()
        assert (v.feed(obj) and v.finish()) is valid, shape
        v = kernels.Utf8Validator()  # after a character split by the chunk before
        assert v.feed(b"\xc3") and (v.feed(b"\xa9") and v.feed(obj) and v.finish()) is valid, shape


def test_validate_utf8_not_a_buffer(kernels):
    with pytest.raises(TypeError):
        kernels.validate_utf8("str is not bytes")
    with pytest.raises(TypeError):
        kernels.Utf8Validator().feed("str is not bytes")


# ---- incremental behaviour (RFC 6455 section 8.1 across fragments) ----

MULTIBYTE = ["é", "€", "\uffff", "𝄞", "\U0010ffff", "aé€𝄞z"]


@pytest.mark.parametrize("char", MULTIBYTE)
def test_rfc6455_8_1_split_at_every_offset(kernels, char):
    data = char.encode("utf-8") * 3
    for cut in range(len(data) + 1):
        v = kernels.Utf8Validator()
        assert v.feed(data[:cut]) is True
        # a cut inside a character is incomplete, not invalid
        assert v.finish() is (data[:cut].decode("utf-8", "ignore").encode() == data[:cut])
        assert v.feed(data[cut:]) is True
        assert v.finish() is True
    for a in range(len(data) + 1):
        for b in range(a, len(data) + 1):
            v = kernels.Utf8Validator()
            assert (v.feed(data[:a]), v.feed(data[a:b]), v.feed(data[b:]), v.finish()) == (True, True, True, True)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (b"\xed", b"\xa0"),  # surrogate prefix
        (b"\xf4", b"\x90"),  # above U+10FFFF
        (b"\xe0", b"\x80"),  # overlong 3-byte
        (b"\xf0", b"\x80"),  # overlong 4-byte
        (b"\xc2", b"A"),  # continuation missing
        (b"\xe1\x80", b"\xc0"),  # continuation missing, bad byte after
        (b"abc\xf3\xbf", b"\xbf\x7f"),  # truncated 4-byte sequence
    ],
)
def test_rfc6455_8_1_impossible_byte_reported_at_its_feed(kernels, first, second):
    v = kernels.Utf8Validator()
    assert v.feed(first) is True
    assert v.feed(second) is False
    assert v.finish() is False


def test_rfc6455_8_1_failure_is_sticky_until_reset(kernels):
    v = kernels.Utf8Validator()
    assert v.feed(b"\xff") is False
    assert v.feed(b"valid ascii") is False
    assert v.feed(b"") is False
    assert v.finish() is False
    v.reset()
    assert v.finish() is True
    assert v.feed(b"fine \xc3") is True
    assert v.finish() is False
    v.reset()  # a pending partial character is forgotten too
    assert v.feed(b"\xa9") is False
    v.reset()
    assert v.feed(b"\xc3\xa9") is True
    assert v.finish() is True


def test_rfc6455_8_1_truncated_tail_fails_finish(kernels):
    for tail in (b"\xc3", b"\xe2\x82", b"\xf0\x9d\x84"):
        v = kernels.Utf8Validator()
        assert v.feed(b"abc" + tail) is True
        assert v.finish() is False
        assert v.feed(b"") is True
        assert v.finish() is False


def test_utf8_validator_empty(kernels):
    v = kernels.Utf8Validator()
    assert v.finish() is True
    assert v.feed(b"") is True
    assert v.finish() is True


def test_utf8_large_inputs(kernels):
    # long runs exercise vectorized paths; the bad byte sits far from the start
    good = ("x" * 100 + "é€𝄞") * 2000
    data = good.encode()
    assert kernels.validate_utf8(data) is True
    for pos in (0, 31, 32, 63, 64, 4095, len(data) // 2, len(data) - 1):
        broken = data[:pos] + b"\xff" + data[pos + 1 :]
        assert kernels.validate_utf8(broken) is False
        v = kernels.Utf8Validator()
        assert v.feed(broken) is False
    surrogate = data + "\ud800".encode("utf-8", "surrogatepass") + data
    assert kernels.validate_utf8(surrogate) is False
    assert kernels.Utf8Validator().feed(surrogate) is False


# ---- differential: both backends, and RFC 3629 ----

_utf8ish = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=20).map(lambda s: s.encode("utf-8")),
    st.lists(
        st.one_of(
            st.text(max_size=3).map(lambda s: s.encode("utf-8")),
            st.sampled_from([b"\x80", b"\xbf", b"\xc0", b"\xc2", b"\xe0", b"\xed", b"\xf0", b"\xf4", b"\xf5", b"\xff"]),
            st.binary(min_size=1, max_size=2),
        ),
        max_size=12,
    ).map(b"".join),
)


@settings(max_examples=300, deadline=None)
@given(data=_utf8ish, cuts=st.lists(st.integers(0, 40), max_size=4))
def test_differential_utf8(pure, compiled, data, cuts):
    chunks = fk.split(data, cuts)
    expected = fk.utf8_expected(chunks)
    try:
        data.decode("utf-8")
        decodes = True
    except UnicodeDecodeError:
        decodes = False
    assert expected[-1] is decodes  # the automaton agrees with CPython's strict codec
    assert fk.utf8_trace(pure, chunks) == expected
    assert fk.utf8_trace(compiled, chunks) == expected


# ---- every SIMD path of the compiled validator (AVX-512, AVX2, SSE4/NEON, scalar) vs the C codec and the pure twin

#: Every path's name, narrowest first ("sse4" on x86-64 and "neon" on AArch64 are the same rank).
SIMD_PATHS = ["scalar", "sse4", "neon", "avx2", "avx512"]

_long_text = st.lists(
    st.one_of(
        st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), min_size=1, max_size=40),
        st.text(min_size=1, max_size=40),
        st.text(alphabet=st.characters(max_codepoint=0x7F), min_size=1, max_size=80),
    ),
    min_size=1,
    max_size=30,
).map(lambda parts: "".join(parts).encode("utf-8"))


def _corrupt(data: bytes, where: int, byte: int) -> bytes:
    if not data:
        return bytes([byte])
    pos = where % len(data)
    return data[:pos] + bytes([byte]) + data[pos + 1 :]


@pytest.mark.parametrize("path", SIMD_PATHS)
@settings(max_examples=150, deadline=None)
@given(
    data=_long_text,
    corrupt=st.one_of(st.none(), st.tuples(st.integers(0, 10_000), st.integers(0x80, 0xFF))),
    cuts=st.lists(st.integers(0, 300), max_size=4),
)
def test_differential_utf8_simd_paths(pure, compiled, path, data, corrupt, cuts):
    if compiled._utf8_use(path) != path:
        compiled._utf8_use(compiled.UTF8_IMPL)
        pytest.skip(f"this CPU has no {path}")
    try:
        if corrupt is not None:
            data = _corrupt(data, *corrupt)
        try:
            data.decode("utf-8")
            decodes = True
        except UnicodeDecodeError:
            decodes = False
        assert compiled.validate_utf8(data) is decodes
        assert pure.validate_utf8(data) is decodes
        chunks = fk.split(data, cuts)
        assert fk.utf8_trace(compiled, chunks) == fk.utf8_trace(pure, chunks) == fk.utf8_expected(chunks)
    finally:
        compiled._utf8_use(compiled.UTF8_IMPL)


def test_utf8_best_path_is_in_use(compiled):
    """The import picks the widest path the CPU offers, and a test can never select one it lacks."""
    assert compiled.UTF8_IMPL in SIMD_PATHS
    assert compiled._utf8_use(compiled.UTF8_IMPL) == compiled.UTF8_IMPL
    wider = SIMD_PATHS[SIMD_PATHS.index(compiled.UTF8_IMPL) + 1 :]
    try:
        for name in wider:
            if name != "neon":  # sse4 and neon share a rank: only one exists per architecture
                assert compiled._utf8_use(name) == compiled.UTF8_IMPL
    finally:
        compiled._utf8_use(compiled.UTF8_IMPL)


def _boundary_inputs() -> list[bytes]:
    """Text laid out against the wide paths' strides: an ASCII run (the skipped groups) of 0 to 1,300 bytes,
    then CJK text (the 1 KiB stretch checked without the ASCII test), with one byte broken or one character cut
    at and around every 64-byte block edge, so that each kind of error lands in each kind of block."""
    cjk = ("中文字符测试数据网络协议验证速度" * 200).encode()
    inputs = []
    for ascii_len in (0, 3, 64, 255, 256, 1024, 1299):
        base = b"a" * ascii_len + cjk[: 2048 - ascii_len - (2048 - ascii_len) % 3]
        inputs.append(base)
        for edge in range(64, len(base), 64):
            for delta in (-3, -1, 0, 2):
                pos = edge + delta
                inputs.append(base[:pos] + b"\xff" + base[pos + 1 :])  # never valid
                inputs.append(base[:pos] + b"\x80" + base[pos + 1 :])  # a stray or misplaced continuation
                inputs.append(base[:pos])  # cut: often inside a character
    return inputs


@pytest.mark.parametrize("path", SIMD_PATHS)
def test_utf8_simd_paths_at_block_edges(compiled, path):
    """Every path agrees with CPython's codec on errors placed at each block, group and stretch edge."""
    if compiled._utf8_use(path) != path:
        compiled._utf8_use(compiled.UTF8_IMPL)
        pytest.skip(f"this CPU has no {path}")
    try:
        checked = invalid = 0
        for data in _boundary_inputs():
            try:
                data.decode("utf-8")
                decodes = True
            except UnicodeDecodeError:
                decodes = False
            assert compiled.validate_utf8(data) is decodes, (path, len(data))
            v = compiled.Utf8Validator()
            half = len(data) // 2
            assert (v.feed(data[:half]) and v.feed(data[half:]) and v.finish()) is decodes, (path, len(data))
            checked += 1
            invalid += not decodes
        assert checked > 1000 and 0 < invalid < checked
    finally:
        compiled._utf8_use(compiled.UTF8_IMPL)
