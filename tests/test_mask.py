"""Masking kernels (RFC 6455 section 5.3): ``apply_mask`` and ``apply_mask_inplace`` on both backends.

Expectations come from the RFC's definition, ``transformed-octet-i = original-octet-i XOR masking-key-octet-j``
with ``j = i MOD 4``, computed byte by byte here.
"""

from __future__ import annotations

import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

KEY = b"\x37\xfa\x21\x3d"  # the key of the RFC 6455 section 5.7 examples


def reference_mask(data: bytes, key: bytes, phase: int = 0) -> bytes:
    """Section 5.3, octet by octet."""
    return bytes(b ^ key[(i + phase) % 4] for i, b in enumerate(data))


def sample(n: int) -> bytes:
    return bytes((i * 131 + 7) & 0xFF for i in range(n))


def test_rfc6455_5_7_masked_hello(kernels):
    # "Hello" masked with 37 fa 21 3d is 7f 9f 4d 51 58 (section 5.7)
    assert kernels.apply_mask(b"Hello", KEY) == bytes.fromhex("7f9f4d5158")
    assert kernels.apply_mask(bytes.fromhex("7f9f4d5158"), KEY) == b"Hello"


@pytest.mark.parametrize("n", range(81))
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_rfc6455_5_3_apply_mask_lengths(kernels, kind, n):
    data = sample(n)
    out = kernels.apply_mask(kind(data), KEY)
    assert type(out) is bytes
    assert out == reference_mask(data, KEY)
    # 5.3: "the same algorithm applies regardless of the direction" -- masking twice is the identity
    assert kernels.apply_mask(out, KEY) == data


@pytest.mark.parametrize("n", [4095, 4096, 65536 + 3, (1 << 20) + 5])
def test_rfc6455_5_3_apply_mask_large(kernels, n):
    data = sample(n)
    key = b"\x01\x80\xff\x5a"
    out = kernels.apply_mask(data, key)
    expected = (int.from_bytes(data, "little") ^ int.from_bytes((key * (n // 4 + 1))[:n], "little")).to_bytes(
        n, "little"
    )
    assert out == expected
    assert out[:64] == reference_mask(data[:64], key)
    assert kernels.apply_mask(out, key) == data


@pytest.mark.parametrize("key_kind", [bytes, bytearray, memoryview])
def test_rfc6455_5_3_mask_key_buffer_types(kernels, key_kind):
    assert kernels.apply_mask(b"Hello", key_kind(KEY)) == bytes.fromhex("7f9f4d5158")


def test_rfc6455_5_3_zero_key_is_identity(kernels):
    data = sample(37)
    assert kernels.apply_mask(data, b"\0\0\0\0") == data


def test_rfc6455_5_3_apply_mask_sliced_memoryview(kernels):
    # a view starting mid-buffer: the key phase follows the view, not the underlying buffer
    data = sample(50)
    view = memoryview(data)[3:41]
    assert kernels.apply_mask(view, KEY) == reference_mask(data[3:41], KEY)


def test_rfc6455_5_3_apply_mask_multibyte_items(kernels):
    # a buffer of 2-byte items is masked as its raw bytes
    arr = array.array("H", [0x0102, 0x0304, 0xA0B0])
    raw = arr.tobytes()
    assert kernels.apply_mask(arr, KEY) == reference_mask(raw, KEY)


@pytest.mark.parametrize("bad", [b"", b"\x01", b"\x01\x02\x03", b"\x01\x02\x03\x04\x05", bytes(8)])
def test_apply_mask_bad_key_length(kernels, bad):
    with pytest.raises(ValueError, match=r"^mask must be 4 bytes$"):
        kernels.apply_mask(b"data", bad)
    with pytest.raises(ValueError, match=r"^mask must be 4 bytes$"):
        kernels.apply_mask_inplace(bytearray(b"data"), bad)


def test_apply_mask_not_a_buffer(kernels):
    with pytest.raises(TypeError):
        kernels.apply_mask("text is not bytes", KEY)


@pytest.mark.parametrize("bad", [4, "abcd", None, [1, 2, 3, 4]])
def test_apply_mask_key_not_bytes_like(kernels, bad):
    # bytes(4) would be a zero key and leave the payload unmasked: an int must not pass for a key.
    with pytest.raises(TypeError):
        kernels.apply_mask(b"data", bad)
    with pytest.raises(TypeError):
        kernels.apply_mask_inplace(bytearray(b"data"), bad)


@pytest.mark.parametrize(
    ("n", "offset"),
    [
        (n, offset)
        for n in (0, 1, 3, 4, 5, 7, 8, 9, 31, 32, 33, 63, 64, 65, 80, 1000, 65537)
        for offset in (0, 1, 2, 3, 4, 5, 9)
        if offset <= n
    ],
)
def test_rfc6455_5_3_apply_mask_inplace_offset(kernels, n, offset):
    data = sample(n)
    buf = bytearray(data)
    assert kernels.apply_mask_inplace(buf, KEY, offset) is None
    # bytes before offset untouched; the key's first byte applies at offset
    assert bytes(buf[:offset]) == data[:offset]
    assert bytes(buf[offset:]) == reference_mask(data[offset:], KEY)
    kernels.apply_mask_inplace(buf, KEY, offset=offset)
    assert bytes(buf) == data


def test_rfc6455_5_3_apply_mask_inplace_default_offset(kernels):
    buf = bytearray(b"Hello")
    kernels.apply_mask_inplace(buf, KEY)
    assert bytes(buf) == bytes.fromhex("7f9f4d5158")


def test_rfc6455_5_3_apply_mask_inplace_memoryview_and_array(kernels):
    data = sample(40)
    backing = bytearray(data)
    kernels.apply_mask_inplace(memoryview(backing)[8:30], KEY)
    assert bytes(backing) == data[:8] + reference_mask(data[8:30], KEY) + data[30:]
    arr = array.array("I", [0x11223344, 0x55667788])
    raw = arr.tobytes()
    kernels.apply_mask_inplace(arr, KEY)
    assert arr.tobytes() == reference_mask(raw, KEY)


@pytest.mark.parametrize("readonly", [b"Hello", memoryview(b"Hello"), memoryview(bytearray(b"Hello")).toreadonly()])
def test_apply_mask_inplace_read_only(kernels, readonly):
    with pytest.raises(TypeError):
        kernels.apply_mask_inplace(readonly, KEY)


def test_apply_mask_inplace_read_only_message(kernels):
    with pytest.raises(TypeError, match=r"^buffer is read-only$"):
        kernels.apply_mask_inplace(b"Hello", KEY)


@pytest.mark.parametrize("offset", [-1, 6, 100])
def test_apply_mask_inplace_offset_out_of_range(kernels, offset):
    buf = bytearray(b"Hello")
    with pytest.raises(ValueError, match=r"^offset out of range$"):
        kernels.apply_mask_inplace(buf, KEY, offset)
    assert buf == b"Hello"


def test_apply_mask_inplace_offset_at_end_is_noop(kernels):
    buf = bytearray(b"Hello")
    kernels.apply_mask_inplace(buf, KEY, 5)
    assert buf == b"Hello"
    empty = bytearray()
    kernels.apply_mask_inplace(empty, KEY)
    assert empty == b""


# ---- differential: both backends, random data and keys ----


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=600),
    key=st.binary(min_size=4, max_size=4),
    offset=st.integers(0, 600),
    kind=st.sampled_from([bytes, bytearray, memoryview]),
)
def test_differential_apply_mask(pure, compiled, data, key, offset, kind):
    expected = reference_mask(data, key)
    assert pure.apply_mask(kind(data), key) == expected
    assert compiled.apply_mask(kind(data), key) == expected
    offset = min(offset, len(data))
    a, b = bytearray(data), bytearray(data)
    pure.apply_mask_inplace(a, key, offset)
    compiled.apply_mask_inplace(b, key, offset)
    assert a == b == data[:offset] + reference_mask(data[offset:], key)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=64), mask=st.one_of(st.binary(max_size=8), st.integers(-1, 8), st.text(max_size=4)))
def test_differential_apply_mask_odd_keys(pure, compiled, data, mask):
    """Whatever a backend makes of an odd key (rejects or accepts), the other one does the same."""
    outcomes = []
    for mod in (pure, compiled):
        try:
            outcomes.append(("ok", mod.apply_mask(data, mask)))
        except Exception as exc:
            outcomes.append((type(exc), str(exc)))
    assert outcomes[0] == outcomes[1]
