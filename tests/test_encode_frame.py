"""Frame building (RFC 6455 section 5.2): ``encode_frame`` on both backends, byte for byte.

Expected bytes are the examples of section 5.7 or are laid out by hand from the section 5.2 diagram.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

KEY = b"\x37\xfa\x21\x3d"
H = bytes.fromhex


def rfc_mask(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


# ---- RFC 6455 section 5.7 examples ----

RFC_5_7 = [
    ("single-frame unmasked text", dict(opcode=1, payload=b"Hello"), H("810548656c6c6f")),
    ("single-frame masked text", dict(opcode=1, payload=b"Hello", mask=KEY), H("818537fa213d7f9f4d5158")),
    ("fragmented text Hel", dict(opcode=1, payload=b"Hel", fin=False), H("010348656c")),
    ("fragmented text lo", dict(opcode=0, payload=b"lo"), H("80026c6f")),
    ("unmasked ping", dict(opcode=9, payload=b"Hello"), H("890548656c6c6f")),
    ("masked pong", dict(opcode=10, payload=b"Hello", mask=KEY), H("8a8537fa213d7f9f4d5158")),
]


@pytest.mark.parametrize(("name", "kwargs", "wire"), RFC_5_7, ids=[n for n, _, _ in RFC_5_7])
def test_rfc6455_5_7_examples(kernels, name, kwargs, wire):
    kwargs = dict(kwargs)
    out = kernels.encode_frame(kwargs.pop("opcode"), kwargs.pop("payload"), **kwargs)
    assert type(out) is bytes
    assert out == wire


def test_rfc6455_5_7_256_bytes_binary(kernels):
    payload = bytes(range(256))
    out = kernels.encode_frame(2, payload)
    assert out[:4] == H("827e0100")
    assert out[4:] == payload
    assert len(out) == 260


def test_rfc6455_5_7_64k_binary(kernels):
    payload = bytes(i & 0xFF for i in range(65536))
    out = kernels.encode_frame(2, payload)
    assert out[:10] == H("827f0000000000010000")
    assert out[10:] == payload


# ---- section 5.2: the three length encodings at their boundaries ----

LENGTHS = [
    (0, b"\x00"),
    (1, b"\x01"),
    (125, b"\x7d"),
    (126, b"\x7e\x00\x7e"),
    (127, b"\x7e\x00\x7f"),
    (65535, b"\x7e\xff\xff"),
    (65536, b"\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    (65537, b"\x7f\x00\x00\x00\x00\x00\x01\x00\x01"),
]


@pytest.mark.parametrize(("n", "length_bytes"), LENGTHS, ids=[str(n) for n, _ in LENGTHS])
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_rfc6455_5_2_payload_length_encodings(kernels, n, length_bytes, masked):
    payload = bytes((i * 7) & 0xFF for i in range(n))
    out = kernels.encode_frame(2, payload, mask=KEY if masked else None)
    mask_bit = 0x80 if masked else 0
    header = bytes([0x82, length_bytes[0] | mask_bit]) + length_bytes[1:]
    if masked:
        assert out == header + KEY + rfc_mask(payload, KEY)
    else:
        assert out == header + payload


@pytest.mark.parametrize("payload_type", [bytes, bytearray, memoryview])
def test_rfc6455_5_2_payload_buffer_types(kernels, payload_type):
    assert kernels.encode_frame(1, payload_type(b"Hello")) == H("810548656c6c6f")
    assert kernels.encode_frame(1, payload_type(b"Hello"), mask=KEY) == H("818537fa213d7f9f4d5158")


@pytest.mark.parametrize("key_type", [bytes, bytearray, memoryview])
def test_rfc6455_5_3_mask_key_types(kernels, key_type):
    assert kernels.encode_frame(1, b"Hello", mask=key_type(KEY)) == H("818537fa213d7f9f4d5158")


@pytest.mark.parametrize(
    ("kwargs", "first_byte"),
    [
        (dict(), 0x82),
        (dict(fin=False), 0x02),
        (dict(rsv1=True), 0xC2),
        (dict(rsv2=True), 0xA2),
        (dict(rsv3=True), 0x92),
        (dict(fin=False, rsv1=True, rsv2=True, rsv3=True), 0x72),
    ],
)
def test_rfc6455_5_2_fin_and_rsv_bits(kernels, kwargs, first_byte):
    assert kernels.encode_frame(2, b"x", **kwargs) == bytes([first_byte, 1]) + b"x"


@pytest.mark.parametrize("opcode", [0, 1, 2, 8, 9, 10])
def test_rfc6455_5_2_opcodes(kernels, opcode):
    assert kernels.encode_frame(opcode, b"") == bytes([0x80 | opcode, 0])


def test_rfc6455_5_2_opcode_enum(kernels):
    from wscodec import Opcode

    assert kernels.encode_frame(Opcode.PING, b"") == b"\x89\x00"


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15, 16, -1])
def test_rfc6455_5_2_reserved_opcode_rejected(kernels, opcode):
    with pytest.raises(ValueError, match=rf"^invalid opcode {opcode}$"):
        kernels.encode_frame(opcode, b"")


@pytest.mark.parametrize("opcode", [8, 9, 10])
def test_rfc6455_5_5_control_frame_limits(kernels, opcode):
    assert kernels.encode_frame(opcode, b"x" * 125)[:2] == bytes([0x80 | opcode, 125])
    with pytest.raises(ValueError, match=r"^control frame payload longer than 125 bytes$"):
        kernels.encode_frame(opcode, b"x" * 126)
    with pytest.raises(ValueError, match=r"^control frames cannot be fragmented$"):
        kernels.encode_frame(opcode, b"", fin=False)


def test_rfc6455_5_3_mask_true_draws_a_random_key(kernels):
    out = kernels.encode_frame(1, b"Hello", mask=True)
    assert out[:2] == b"\x81\x85"
    key = out[2:6]
    assert rfc_mask(out[6:], key) == b"Hello"
    keys = {kernels.encode_frame(1, b"", mask=True)[2:6] for _ in range(64)}
    assert len(keys) > 32  # 32 random bits each: collisions among 64 are all but impossible


@pytest.mark.parametrize("mask", [None, False])
def test_rfc6455_5_1_no_mask(kernels, mask):
    assert kernels.encode_frame(1, b"Hello", mask=mask) == H("810548656c6c6f")


@pytest.mark.parametrize("bad", [b"", b"abc", b"abcde"])
def test_encode_frame_bad_mask_length(kernels, bad):
    with pytest.raises(ValueError, match=r"^mask must be 4 bytes$"):
        kernels.encode_frame(1, b"Hello", mask=bad)


def test_encode_frame_empty_masked(kernels):
    assert kernels.encode_frame(1, b"", mask=KEY) == b"\x81\x80" + KEY


# ---- differential ----


@settings(max_examples=200, deadline=None)
@given(
    opcode=st.sampled_from([0, 1, 2, 8, 9, 10]),
    payload=st.one_of(st.binary(max_size=300), st.integers(65530, 65540).map(lambda n: b"\xa5" * n)),
    fin=st.booleans(),
    rsv=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    mask=st.one_of(st.none(), st.binary(min_size=4, max_size=4)),
)
def test_differential_encode_frame(pure, compiled, opcode, payload, fin, rsv, mask):
    outcomes = []
    for mod in (pure, compiled):
        try:
            outcomes.append(
                mod.encode_frame(opcode, payload, fin=fin, rsv1=rsv[0], rsv2=rsv[1], rsv3=rsv[2], mask=mask)
            )
        except ValueError as exc:
            outcomes.append((type(exc), str(exc)))
    assert outcomes[0] == outcomes[1]
    if isinstance(outcomes[0], bytes):
        wire = outcomes[0]
        assert wire[0] == (0x80 * fin | 0x40 * rsv[0] | 0x20 * rsv[1] | 0x10 * rsv[2] | opcode)
        assert bool(wire[1] & 0x80) is (mask is not None)
        assert wire.endswith(payload if mask is None else rfc_mask(payload, mask))
    else:
        assert opcode >= 8 and (len(payload) > 125 or not fin)


# ---- mask keys from a pool of os.urandom output (RFC 6455 section 10.3) ----


def test_rfc6455_10_3_mask_keys_come_from_os_urandom_in_blocks(kernels, monkeypatch):
    """One os.urandom call per 1024 keys, each key used once, in the order os.urandom produced them:
    both backends draw the very same keys from the same entropy."""
    import os

    blocks: list[bytes] = []
    real = os.urandom

    def counting(n: int) -> bytes:
        block = real(n)
        blocks.append(block)
        return block

    kernels._reset_mask_pool()
    monkeypatch.setattr(os, "urandom", counting)
    keys = [kernels.encode_frame(2, b"abc", mask=True)[2:6] for _ in range(1025)]
    assert [len(b) for b in blocks] == [kernels.MASK_POOL_SIZE, kernels.MASK_POOL_SIZE]
    assert kernels.MASK_POOL_SIZE == 4096
    expected = [blocks[0][i : i + 4] for i in range(0, 4096, 4)] + [blocks[1][:4]]
    assert keys == expected
    frame = kernels.encode_frame(2, b"abc", mask=True)
    assert frame[2:6] == blocks[1][4:8]
    assert rfc_mask(frame[6:], frame[2:6]) == b"abc"


def test_rfc6455_10_3_forked_child_does_not_replay_parent_keys(kernels):
    """After fork the child drops the keys left in the pool: it must not send the parent's next keys."""
    import os

    if not hasattr(os, "fork"):
        pytest.skip("os.fork is POSIX only")
    kernels.encode_frame(2, b"", mask=True)  # the pool holds unused keys now
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(read_end)
            child = b"".join(kernels.encode_frame(2, b"", mask=True)[2:6] for _ in range(4))
            os.write(write_end, child)
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        child_keys = b""
        while len(child_keys) < 16:
            chunk = os.read(read_end, 16)
            if not chunk:
                break
            child_keys += chunk
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    parent_keys = b"".join(kernels.encode_frame(2, b"", mask=True)[2:6] for _ in range(4))
    assert len(child_keys) == 16
    assert child_keys != parent_keys  # 128 random bits: equal only if the pool were replayed
