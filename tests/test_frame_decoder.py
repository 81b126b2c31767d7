"""Frame parsing (RFC 6455 sections 5.1-5.5): ``FrameDecoder`` on both backends.

Wire bytes are laid out by hand (``wire`` below follows the section 5.2 diagram) so the decoder is never
checked against the encoder it is meant to agree with. Error messages and close codes are those of the
reference ``wscodec._pure``; the close code is what RFC 6455 section 7.4.1 assigns (1002 protocol error,
1009 message too big).
"""

from __future__ import annotations

import importlib.util
import pathlib
import random
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wscodec.errors import PayloadTooBig, ProtocolError

_spec = importlib.util.spec_from_file_location(
    "wscodec_fuzz_kernels", pathlib.Path(__file__).parent / "fuzz" / "fuzz_kernels.py"
)
assert _spec is not None and _spec.loader is not None
fk = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fk)

KEY = b"\x37\xfa\x21\x3d"
H = bytes.fromhex
CORPUS = pathlib.Path(__file__).parent / "fuzz" / "corpus"


def wire(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    key: bytes | None = None,
    length: int | None = None,
) -> bytes:
    """A frame per the section 5.2 diagram; ``length`` overrides the announced payload length."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | rsv | opcode
    m = 0x80 if key is not None else 0
    if n < 126:
        head = bytes([b0, m | n])
    elif n < 65536:
        head = bytes([b0, m | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, m | 127]) + n.to_bytes(8, "big")
    if key is None:
        return head + payload
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def as_tuples(frames):
    return [(f.opcode, f.payload, f.fin, f.rsv1, f.rsv2, f.rsv3) for f in frames]


# ---- RFC 6455 section 5.7 examples, decoded ----

RFC_5_7 = [
    ("single-frame unmasked text", "client", H("810548656c6c6f"), [(1, b"Hello", True)]),
    ("single-frame masked text", "server", H("818537fa213d7f9f4d5158"), [(1, b"Hello", True)]),
    ("fragmented unmasked text", "client", H("010348656c") + H("80026c6f"), [(1, b"Hel", False), (0, b"lo", True)]),
    ("unmasked ping", "client", H("890548656c6c6f"), [(9, b"Hello", True)]),
    ("masked pong", "server", H("8a8537fa213d7f9f4d5158"), [(10, b"Hello", True)]),
]


@pytest.mark.parametrize(("name", "role", "data", "expected"), RFC_5_7, ids=[n for n, *_ in RFC_5_7])
def test_rfc6455_5_7_examples(kernels, name, role, data, expected):
    frames = kernels.FrameDecoder(role).feed(data)
    assert [(f.opcode, f.payload, f.fin) for f in frames] == expected
    for f in frames:
        assert type(f.payload) is bytes
        assert (f.rsv1, f.rsv2, f.rsv3) == (False, False, False)
        assert f.fin is True or f.fin is False


def test_rfc6455_5_7_256_bytes_and_64k_binary(kernels):
    small = bytes(range(256))
    big = bytes(i & 0xFF for i in range(65536))
    data = H("827e0100") + small + H("827f0000000000010000") + big
    frames = kernels.FrameDecoder("client").feed(data)
    assert as_tuples(frames) == [(2, small, True, False, False, False), (2, big, True, False, False, False)]


def test_frame_equality_and_fields(kernels):
    f = kernels.Frame(1, b"Hello")
    assert (f.opcode, f.payload, f.fin, f.rsv1, f.rsv2, f.rsv3) == (1, b"Hello", True, False, False, False)
    assert f == kernels.Frame(1, b"Hello", True, False, False, False)
    assert f != kernels.Frame(1, b"Hello", False)
    assert f != kernels.Frame(2, b"Hello")
    assert kernels.FrameDecoder("client").feed(H("810548656c6c6f")) == [f]


# ---- section 5.2: length encodings at their boundaries, both roles ----


@pytest.mark.parametrize("n", [0, 1, 125, 126, 127, 65535, 65536, 65537])
@pytest.mark.parametrize("role", ["server", "client"])
def test_rfc6455_5_2_payload_length_boundaries(kernels, n, role):
    payload = bytes((i * 13 + 1) & 0xFF for i in range(n))
    data = wire(2, payload, key=KEY if role == "server" else None)
    decoder = kernels.FrameDecoder(role)
    # one byte short: nothing yet, all of it held
    assert decoder.feed(data[:-1]) == []
    assert decoder.buffered == len(data) - 1
    frames = decoder.feed(data[-1:])
    assert as_tuples(frames) == [(2, payload, True, False, False, False)]
    assert decoder.buffered == 0


@pytest.mark.parametrize("n", [0, 125, 126, 65535, 65536])
def test_rfc6455_5_2_max_frame_size_boundary(kernels, n):
    ok = wire(2, b"z" * n, key=KEY)
    assert as_tuples(kernels.FrameDecoder("server", max_frame_size=n).feed(ok)) == [
        (2, b"z" * n, True, False, False, False)
    ]
    assert as_tuples(kernels.FrameDecoder("server", max_frame_size=None).feed(ok))[0][1] == b"z" * n
    if n:
        with pytest.raises(PayloadTooBig) as info:
            kernels.FrameDecoder("server", max_frame_size=n - 1).feed(ok)
        assert str(info.value) == f"frame payload of {n} bytes exceeds the limit of {n - 1} bytes"
        assert info.value.close_code == 1009


@pytest.mark.parametrize("limit", [0, 10, 124])
@pytest.mark.parametrize("merge", [False, True])
def test_rfc6455_5_5_control_frames_keep_125_bytes_under_a_smaller_limit(kernels, limit, merge):
    """max_frame_size bounds data frames; a control frame may carry 125 bytes (section 5.5) whatever it is,
    while a data frame (or a continuation merged into one) one byte over it is refused with 1009."""
    decoder = kernels.FrameDecoder("server", max_frame_size=limit, merge_continuations=merge)
    controls = [wire(opcode, bytes([opcode]) * 125, key=KEY) for opcode in (9, 10)] + [
        wire(8, b"\x03\xe8" + b"r" * 123, key=KEY)
    ]
    assert [(f.opcode, len(f.payload)) for f in decoder.feed(b"".join(controls))] == [(9, 125), (10, 125), (8, 125)]
    if limit:
        assert [len(f.payload) for f in decoder.feed(wire(2, b"d" * limit, key=KEY))] == [limit]
    for data in (wire(2, b"d" * (limit + 1), key=KEY), wire(1, b"t" * (limit + 1), fin=False, key=KEY)):
        with pytest.raises(PayloadTooBig) as info:
            kernels.FrameDecoder("server", max_frame_size=limit, merge_continuations=merge).feed(data)
        assert info.value.close_code == 1009
    # A continuation that would take a merged frame over the limit starts a frame of its own instead.
    if limit:
        run = wire(2, b"a" * limit, fin=False, key=KEY) + wire(0, b"b", key=KEY)
        frames = kernels.FrameDecoder("server", max_frame_size=limit, merge_continuations=merge).feed(run)
        assert [(f.opcode, len(f.payload), f.fin) for f in frames] == [(2, limit, False), (0, 1, True)]


def test_rfc6455_5_2_non_minimal_length_accepted(kernels):
    # section 5.2 says senders MUST use the minimal encoding; this decoder, like most, accepts the others
    data = bytes([0x82, 126, 0, 5]) + b"abcde" + bytes([0x82, 127]) + (3).to_bytes(8, "big") + b"xyz"
    assert [f.payload for f in kernels.FrameDecoder("client").feed(data)] == [b"abcde", b"xyz"]


# ---- every framing error, its close code and message ----

ERRORS = [
    # section 5.1: a server MUST close on an unmasked frame; a client on a masked one
    ("5.1 unmasked frame to server", "server", {}, wire(1, b"Hi"), "unmasked frame from client", 1002),
    ("5.1 masked frame to client", "client", {}, wire(1, b"Hi", key=KEY), "masked frame from server", 1002),
    ("5.1 unmasked control to server", "server", {}, wire(9, b""), "unmasked frame from client", 1002),
    ("5.1 masked control to client", "client", {}, wire(10, b"", key=KEY), "masked frame from server", 1002),
    # section 5.2: reserved opcodes
    *[
        (
            f"5.2 reserved opcode {op}",
            role,
            {},
            wire(op, b"", key=KEY if role == "server" else None),
            f"reserved opcode 0x{op:x}",
            1002,
        )
        for op in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15)
        for role in ("server", "client")
    ],
    # section 5.2: RSV bits without a negotiated extension
    (
        "5.2 RSV1",
        "client",
        {},
        wire(1, b"x", rsv=0x40),
        "reserved bit RSV1 set without an extension that defines it",
        1002,
    ),
    (
        "5.2 RSV2",
        "client",
        {},
        wire(1, b"x", rsv=0x20),
        "reserved bit RSV2 set without an extension that defines it",
        1002,
    ),
    (
        "5.2 RSV3",
        "server",
        {},
        wire(1, b"x", rsv=0x10, key=KEY),
        "reserved bit RSV3 set without an extension that defines it",
        1002,
    ),
    (
        "5.2 RSV1+RSV2 reports RSV1",
        "client",
        {},
        wire(1, b"x", rsv=0x60),
        "reserved bit RSV1 set without an extension that defines it",
        1002,
    ),
    (
        "5.2 RSV2 with RSV1 allowed",
        "client",
        {"allow_rsv1": True},
        wire(1, b"x", rsv=0x60),
        "reserved bit RSV2 set without an extension that defines it",
        1002,
    ),
    (
        "5.2 RSV3 with RSV1+2 allowed",
        "client",
        {"allow_rsv1": True, "allow_rsv2": True},
        wire(1, b"x", rsv=0x70),
        "reserved bit RSV3 set without an extension that defines it",
        1002,
    ),
    (
        "5.2 RSV1 with RSV3 allowed",
        "client",
        {"allow_rsv3": True},
        wire(1, b"x", rsv=0x50),
        "reserved bit RSV1 set without an extension that defines it",
        1002,
    ),
    # section 5.5: control frames are never fragmented and carry at most 125 bytes
    *[
        (f"5.5 fragmented control {op}", "client", {}, wire(op, b"", fin=False), "fragmented control frame", 1002)
        for op in (8, 9, 10)
    ],
    *[
        (
            f"5.5 control {op} of {n} bytes",
            "client",
            {},
            wire(op, b"a" * n),
            "control frame with an extended payload length (at most 125 bytes, in 7 bits)",
            1002,
        )
        for op in (8, 9, 10)
        for n in (126, 65536)
    ],
    # section 5.2: a payload length in its minimal number of bytes; a control frame's is 7 bits, whatever
    # the payload (3 bytes here, in a 16-bit length): the reason must not say it is too long
    (
        "5.2 control frame with a non-minimal length",
        "client",
        {},
        bytes([0x89, 126]) + (3).to_bytes(2, "big") + b"abc",
        "control frame with an extended payload length (at most 125 bytes, in 7 bits)",
        1002,
    ),
    # section 5.2: "the most significant bit MUST be 0"
    (
        "5.2 64-bit length MSB set",
        "client",
        {"max_frame_size": None},
        bytes([0x82, 127]) + (1 << 63).to_bytes(8, "big"),
        "payload length has its most significant bit set",
        1002,
    ),
    (
        "5.2 64-bit length all ones",
        "server",
        {"max_frame_size": None},
        bytes([0x82, 0xFF]) + b"\xff" * 8,
        "payload length has its most significant bit set",
        1002,
    ),
    # section 10.4 / 7.4.1: a frame over the configured limit closes with 1009
    (
        "10.4 frame over max_frame_size",
        "client",
        {"max_frame_size": 10},
        wire(2, b"a" * 11),
        "frame payload of 11 bytes exceeds the limit of 10 bytes",
        1009,
    ),
    (
        "10.4 16-bit length over max_frame_size",
        "server",
        {"max_frame_size": 1000},
        wire(2, b"a" * 1001, key=KEY),
        "frame payload of 1001 bytes exceeds the limit of 1000 bytes",
        1009,
    ),
    (
        "10.4 64-bit length over max_frame_size",
        "client",
        {"max_frame_size": 1 << 20},
        bytes([0x82, 127]) + ((1 << 63) - 1).to_bytes(8, "big"),
        f"frame payload of {(1 << 63) - 1} bytes exceeds the limit of {1 << 20} bytes",
        1009,
    ),
    (
        "10.4 zero limit",
        "client",
        {"max_frame_size": 0},
        wire(1, b"a"),
        "frame payload of 1 bytes exceeds the limit of 0 bytes",
        1009,
    ),
]


def _header_len(data: bytes) -> int:
    n = data[1] & 0x7F
    return 2 + (2 if n == 126 else 8 if n == 127 else 0)


@pytest.mark.parametrize(("name", "role", "kw", "data", "message", "code"), ERRORS, ids=[e[0] for e in ERRORS])
def test_rfc6455_framing_errors(kernels, name, role, kw, data, message, code):
    ok = b"ok" if kw.get("max_frame_size", 2) is None or kw.get("max_frame_size", 2) >= 2 else b""
    good = wire(2, ok, key=KEY if role == "server" else None)
    decoder = kernels.FrameDecoder(role, **kw)
    # the error is raised on the header alone, before any payload (or mask key) has arrived
    with pytest.raises(ProtocolError) as info:
        decoder.feed(good + good + data[: _header_len(data)])
    exc = info.value
    assert type(exc) is (PayloadTooBig if code == 1009 else ProtocolError)
    assert str(exc) == message
    assert exc.close_code == code
    # the valid frames before the violation in the same feed are handed over
    assert as_tuples(exc.frames) == [(2, ok, True, False, False, False)] * 2
    assert decoder.buffered == 0
    # the decoder stays failed: the same error again, whatever comes next
    for more in (good, b"", data):
        with pytest.raises(ProtocolError) as again:
            decoder.feed(more)
        assert type(again.value) is type(exc)
        assert str(again.value) == message
        assert again.value.close_code == code
        assert as_tuples(again.value.frames) == []


@pytest.mark.parametrize(("name", "role", "kw", "data", "message", "code"), ERRORS, ids=[e[0] for e in ERRORS])
def test_rfc6455_framing_errors_whole_frame_byte_by_byte(kernels, name, role, kw, data, message, code):
    decoder = kernels.FrameDecoder(role, **kw)
    raised = None
    for i in range(min(len(data), 64)):
        try:
            assert decoder.feed(data[i : i + 1]) == []
        except ProtocolError as exc:
            raised = (i, type(exc), str(exc), exc.close_code)
            break
    # rules on the first two bytes fail at the second byte; length rules once the extended length is complete
    at = _header_len(data) - 1 if code == 1009 or message.startswith("payload length") else 1
    assert raised == (at, PayloadTooBig if code == 1009 else ProtocolError, message, code)


def test_rfc6455_10_4_too_big_before_payload_arrives(kernels):
    decoder = kernels.FrameDecoder("client", max_frame_size=1 << 20)
    header = bytes([0x82, 127]) + (1 << 40).to_bytes(8, "big")
    with pytest.raises(PayloadTooBig) as info:
        decoder.feed(header)
    assert info.value.close_code == 1009
    assert decoder.buffered == 0


@pytest.mark.parametrize(
    ("kw", "rsv", "bits"),
    [
        ({"allow_rsv1": True}, 0x40, (True, False, False)),
        ({"allow_rsv2": True}, 0x20, (False, True, False)),
        ({"allow_rsv3": True}, 0x10, (False, False, True)),
        ({"allow_rsv1": True, "allow_rsv2": True, "allow_rsv3": True}, 0x70, (True, True, True)),
    ],
)
def test_rfc6455_5_2_rsv_bits_allowed_by_extension(kernels, kw, rsv, bits):
    frames = kernels.FrameDecoder("client", **kw).feed(wire(1, b"x", rsv=rsv) + wire(2, b"y", fin=False))
    assert as_tuples(frames) == [(1, b"x", True, *bits), (2, b"y", False, False, False, False)]


def test_rfc6455_5_4_data_frames_may_be_fragmented(kernels):
    # the decoder passes fragments through; message assembly is the connection's job
    data = wire(1, b"a", fin=False, key=KEY) + wire(9, b"p", key=KEY) + wire(0, b"b", fin=False, key=KEY)
    data += wire(0, b"c", key=KEY)
    frames = kernels.FrameDecoder("server").feed(data)
    assert as_tuples(frames) == [
        (1, b"a", False, False, False, False),
        (9, b"p", True, False, False, False),
        (0, b"b", False, False, False, False),
        (0, b"c", True, False, False, False),
    ]


def test_rfc6455_5_5_control_frame_of_125_bytes(kernels):
    for op in (8, 9, 10):
        assert as_tuples(kernels.FrameDecoder("client").feed(wire(op, b"c" * 125))) == [
            (op, b"c" * 125, True, False, False, False)
        ]


@pytest.mark.parametrize("kwargs", [{"role": "both"}, {"role": ""}, {"max_frame_size": -1}])
def test_frame_decoder_bad_arguments(kernels, kwargs):
    with pytest.raises(ValueError):
        kernels.FrameDecoder(**kwargs)


def test_frame_decoder_buffer_types(kernels):
    data = H("818537fa213d7f9f4d5158")
    for obj in (bytearray(data), memoryview(data)):
        assert as_tuples(kernels.FrameDecoder("server").feed(obj)) == [(1, b"Hello", True, False, False, False)]


# ---- split feeds ----


def _stream(role: str) -> tuple[bytes, list[tuple]]:
    key = KEY if role == "server" else None
    parts = [
        (1, b"Hello", True),
        (2, b"", True),
        (9, b"ping", True),
        (1, "Grüße €𝄞".encode(), False),
        (0, bytes(range(126)), False),
        (0, bytes(range(125)), True),
        (10, b"", True),
        (2, bytes(300), True),
        (8, b"\x03\xe8bye", True),
    ]
    data = b"".join(wire(op, p, fin=fin, key=key) for op, p, fin in parts)
    return data, [(op, p, fin, False, False, False) for op, p, fin in parts]


@pytest.mark.parametrize("role", ["server", "client"])
def test_rfc6455_5_2_split_at_every_offset(kernels, role):
    data, expected = _stream(role)
    for cut in range(len(data) + 1):
        decoder = kernels.FrameDecoder(role)
        first = decoder.feed(data[:cut])
        assert decoder.buffered <= cut
        second = decoder.feed(data[cut:])
        assert as_tuples(first + second) == expected, cut
        assert decoder.buffered == 0


@pytest.mark.parametrize("role", ["server", "client"])
def test_rfc6455_5_2_byte_by_byte(kernels, role):
    data, expected = _stream(role)
    decoder = kernels.FrameDecoder(role)
    frames = []
    for i in range(len(data)):
        frames += decoder.feed(data[i : i + 1])
    assert as_tuples(frames) == expected
    assert decoder.buffered == 0


def test_rfc6455_5_2_64bit_length_split_in_header_and_payload(kernels):
    payload = bytes(i & 0xFF for i in range(65536))
    data = wire(2, payload, key=KEY) + wire(1, b"tail", key=KEY)
    for cut in [*range(0, 20), 1000, 65535, 65549, 65550, 65551, len(data) - 1]:
        decoder = kernels.FrameDecoder("server")
        frames = decoder.feed(data[:cut]) + decoder.feed(data[cut:])
        assert as_tuples(frames) == [(2, payload, True, False, False, False), (1, b"tail", True, False, False, False)]


@pytest.mark.parametrize("role", ["server", "client"])
def test_rfc6455_5_2_500_frames_in_one_feed(kernels, role):
    payloads = [bytes([i & 0xFF]) * 125 for i in range(500)]
    data = b"".join(wire(2, p, key=KEY if role == "server" else None) for p in payloads)
    assert 62_000 < len(data) < 66_000
    frames = kernels.FrameDecoder(role).feed(data)
    assert len(frames) == 500
    assert [f.payload for f in frames] == payloads


def test_frame_decoder_empty_feed(kernels):
    decoder = kernels.FrameDecoder("client")
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\x81") == []
    assert decoder.feed(b"") == []
    assert decoder.buffered == 1
    assert as_tuples(decoder.feed(b"\x00")) == [(1, b"", True, False, False, False)]


# ---- differential: both backends on random frames and random bytes ----


@st.composite
def frame_streams(draw):
    role = draw(st.sampled_from(["server", "client"]))
    allow = draw(st.tuples(st.booleans(), st.booleans(), st.booleans()))
    max_frame_size = draw(st.sampled_from([None, 0, 5, 125, 126, 300, 65535, 1 << 20]))
    pieces = []
    for _ in range(draw(st.integers(1, 6))):
        opcode = draw(st.integers(0, 15))
        payload = draw(st.one_of(st.binary(max_size=140), st.integers(126, 400).map(lambda n: b"\x5a" * n)))
        fin = draw(st.booleans())
        rsv = draw(st.sampled_from([0, 0, 0, 0x40, 0x20, 0x10, 0x70]))
        masked = draw(st.sampled_from([role == "server"] * 4 + [role != "server"]))
        key = draw(st.binary(min_size=4, max_size=4)) if masked else None
        encoder = draw(st.sampled_from(["pure", "compiled", "raw"]))
        pieces.append((opcode, payload, fin, rsv, key, encoder))
    cuts = draw(st.lists(st.integers(0, 120), max_size=5))
    return role, allow, max_frame_size, pieces, cuts


@settings(max_examples=200, deadline=None)
@given(frame_streams())
def test_differential_random_frames(pure, compiled, case):
    role, allow, max_frame_size, pieces, cuts = case
    data = b""
    for opcode, payload, fin, rsv, key, encoder in pieces:
        raw = wire(opcode, payload, fin=fin, rsv=rsv, key=key)
        if encoder != "raw" and opcode in (0, 1, 2, 8, 9, 10) and (opcode < 8 or (fin and len(payload) <= 125)):
            mod = pure if encoder == "pure" else compiled
            built = mod.encode_frame(
                opcode, payload, fin=fin, rsv1=bool(rsv & 0x40), rsv2=bool(rsv & 0x20), rsv3=bool(rsv & 0x10), mask=key
            )
            assert built == raw
        data += raw
    chunks = fk.split(data, cuts)
    expected = fk.decode_trace(pure, chunks, role, max_frame_size, allow)
    assert fk.decode_trace(compiled, chunks, role, max_frame_size, allow) == expected


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=300),
    cuts=st.lists(st.integers(0, 60), max_size=6),
    role=st.sampled_from(["server", "client"]),
    max_frame_size=st.sampled_from([None, 0, 1, 125, 126, 65535, 65536]),
    allow=st.tuples(st.booleans(), st.booleans(), st.booleans()),
)
def test_differential_random_bytes(pure, compiled, data, cuts, role, max_frame_size, allow):
    chunks = fk.split(data, cuts)
    assert fk.decode_trace(compiled, chunks, role, max_frame_size, allow) == fk.decode_trace(
        pure, chunks, role, max_frame_size, allow
    )


def test_differential_random_streams_seeded(pure, compiled):
    """Longer streams than hypothesis draws: valid frames with occasional corruption, random cuts."""
    rng = random.Random(6455)
    for _ in range(150):
        role = rng.choice(["server", "client"])
        data = b"".join(
            wire(
                rng.choice([0, 1, 2, 8, 9, 10]),
                rng.randbytes(rng.choice([0, 1, 7, 125, 126, 127, 1000, 70000]) if rng.random() < 0.9 else 3),
                key=rng.randbytes(4) if role == "server" else None,
            )
            for _ in range(rng.randint(1, 8))
        )
        if rng.random() < 0.5:
            pos = rng.randrange(len(data))
            data = data[:pos] + bytes([rng.randrange(256)]) + data[pos + 1 :]
        cuts = [rng.randrange(0, 5000) for _ in range(rng.randint(0, 6))]
        chunks = fk.split(data, cuts)
        max_frame_size = rng.choice([None, 125, 65536, 1 << 20])
        assert fk.decode_trace(compiled, chunks, role, max_frame_size, (False, False, False)) == fk.decode_trace(
            pure, chunks, role, max_frame_size, (False, False, False)
        )


@pytest.mark.parametrize("role", ["server", "client"])
@pytest.mark.parametrize("size", [4095, 4096, 65535, 65536, 65537, 300_000])
@pytest.mark.parametrize("step", [1, 3, 4099, 16384, 65536])
def test_differential_large_frames_split_anywhere(pure, compiled, role, size, step):
    """Frames of 4 KiB and more are received straight into their payload once their header is here (past
    64 KiB, once an eighth of the payload is): same frames and same ``buffered`` as the pure twin at every
    feed, the mask phase carried across cuts, the frames around the large one untouched."""
    rng = random.Random(size * 31 + step)
    key = KEY if role == "server" else None
    big = rng.randbytes(size)
    data = b"".join(
        [wire(1, b"before", key=key), wire(2, big, key=key), wire(9, b"after", key=key), wire(0, big[:5000], key=key)]
    )
    whole = step > 1 or len(data) <= 70_000
    if not whole:
        data = data[:70_000]  # byte by byte through a whole 300 kB frame is slow and adds nothing
    chunks = [data[i : i + step] for i in range(0, len(data), step)]
    trace = fk.decode_trace(compiled, chunks, role, None)
    assert trace == fk.decode_trace(pure, chunks, role, None)
    frames = [f[:2] for kind, *rest in trace if kind == "frames" for f in rest[0]]
    expected = [(1, b"before"), (2, big), (9, b"after"), (0, big[:5000])]
    assert frames == expected[: len(frames)]
    assert len(frames) == 4 if whole else len(frames) >= 1


@pytest.mark.parametrize("role", ["server", "client"])
def test_large_frame_cut_inside_header_and_mask(pure, compiled, role):
    key = KEY if role == "server" else None
    big = bytes(range(256)) * 300
    data = wire(2, big, key=key)
    for cut in range(1, 16):
        for second in (1, 5, 4096, len(data)):
            chunks = [data[:cut], data[cut : cut + second], data[cut + second :], wire(10, b"x", key=key)]
            trace = fk.decode_trace(compiled, chunks, role, None)
            assert trace == fk.decode_trace(pure, chunks, role, None)
            frames = [f for kind, *rest in trace if kind == "frames" for f in rest[0]]
            assert [f[:2] for f in frames] == [(2, big), (10, b"x")]


def test_large_frame_header_alone_allocates_little(kernels):
    """A peer announcing a 16 MiB frame and sending 100 bytes of it does not make us allocate 16 MiB."""
    import tracemalloc

    data = wire(2, b"", key=KEY, length=16 << 20) + bytes(100)
    decoder = kernels.FrameDecoder("server", None)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        assert decoder.feed(data) == []
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert decoder.buffered == len(data)
    assert grown < 64 * 1024, grown


def test_large_frame_not_a_buffer_while_receiving(pure, compiled):
    """A non-buffer fed in the middle of a large frame raises the same error on both backends."""
    data = wire(2, bytes(10_000), key=KEY)
    for mod in (pure, compiled):
        decoder = mod.FrameDecoder("server", None)
        assert decoder.feed(data[:5000]) == []
        with pytest.raises(TypeError):
            decoder.feed("not bytes")
        assert decoder.buffered == 5000
        assert [f.payload for f in decoder.feed(data[5000:])] == [bytes(10_000)]


# ---- the fuzz seed corpus, replayed through the fuzz target's own check ----


def test_fuzz_corpus_replay(pure, compiled):
    """Every corpus input through the fuzz target's check, parsed without atheris (runs everywhere)."""
    files = sorted(p for p in CORPUS.iterdir() if p.is_file())
    assert len(files) >= 30
    for path in files:
        fk.check_input(path.read_bytes(), pure, compiled, provider=fk.ReplayProvider)


def test_replay_provider_parses_as_atheris_does():
    """The plain-Python provider reads every corpus input (and some arbitrary bytes) exactly as atheris'
    FuzzedDataProvider does, so the replay above checks what the fuzzer checks."""
    try:
        import atheris
    except ImportError as exc:
        if sys.version_info < (3, 13) and sys.platform == "linux":  # the test extra installs it there
            raise
        pytest.skip(f"atheris is not installable on this Python ({exc}); the replay still runs")
    inputs = [p.read_bytes() for p in sorted(CORPUS.iterdir()) if p.is_file()]
    inputs += [b"", b"\x01", bytes(range(256)), bytes(range(255, -1, -1)) * 3]
    for data in inputs:
        assert fk.parse_input(fk.ReplayProvider(data)) == fk.parse_input(atheris.FuzzedDataProvider(data)), data[:40]


# ---- merge_continuations and the frame in progress (issue 9, sections 3 and 6) ----


def _merge_trace(mod, chunks, role, max_frame_size, merge=True):
    """Feed ``chunks``; after each feed record the frames (or the error), ``partial_header()`` and the
    frame in progress's payload from three offsets."""
    decoder = mod.FrameDecoder(role, max_frame_size, merge_continuations=merge)
    trace = []
    for chunk in chunks:
        try:
            trace.append(("frames", as_tuples(decoder.feed(chunk))))
        except ProtocolError as exc:
            trace.append(("error", str(exc), exc.close_code, as_tuples(exc.frames)))
        trace.append(
            (
                "partial",
                decoder.buffered,
                decoder.partial_header(),
                decoder.partial_length(),
                *(decoder.partial_payload(k) for k in (0, 1, 5)),
            )
        )
    return trace


def _fold(frames, limit):
    """The merge rule applied by hand to one feed's unmerged frames."""
    out = []
    open_ = False  # the last frame out is an unfinished data frame that may take continuations
    for opcode, payload, fin, rsv1, rsv2, rsv3 in frames:
        if open_ and opcode == 0 and not (rsv1 or rsv2 or rsv3) and len(out[-1][1]) + len(payload) <= limit:
            last = out[-1]
            out[-1] = (last[0], last[1] + payload, fin, *last[3:])
            open_ = not fin
            continue
        out.append((opcode, payload, fin, rsv1, rsv2, rsv3))
        open_ = opcode < 8 and not fin
    return out


@st.composite
def fragment_streams(draw):
    role = draw(st.sampled_from(["server", "client"]))
    max_frame_size = draw(st.sampled_from([None, 3, 125, 300, 5000, 1 << 20]))
    key = (lambda: draw(st.binary(min_size=4, max_size=4))) if role == "server" else (lambda: None)
    data = b""
    for _ in range(draw(st.integers(1, 12))):
        opcode = draw(st.sampled_from([0, 0, 0, 0, 1, 2, 9, 10]))
        size = draw(st.sampled_from([0, 1, 1, 2, 7, 125, 126, 4096, 5000]))
        payload = bytes(draw(st.integers(0, 255)) for _ in range(min(size, 3))) * (size // 3 + 1)
        payload = payload[:size] if opcode < 8 else payload[:125]
        fin = draw(st.booleans()) if opcode < 8 else True
        rsv = draw(st.sampled_from([0, 0, 0, 0, 0x40]))
        data += wire(opcode, payload, fin=fin, rsv=rsv, key=key())
    cuts = draw(st.lists(st.integers(0, 6000), max_size=6))
    return role, max_frame_size, data, cuts


@settings(max_examples=300, deadline=None)
@given(fragment_streams())
def test_differential_merge_continuations(pure, compiled, case):
    """Both backends merge alike, and merging is the unmerged frames folded by the rule, feed by feed."""
    role, max_frame_size, data, cuts = case
    chunks = fk.split(data, cuts)
    merged = _merge_trace(compiled, chunks, role, max_frame_size)
    assert merged == _merge_trace(pure, chunks, role, max_frame_size)
    plain = _merge_trace(pure, chunks, role, max_frame_size, merge=False)
    limit = (1 << 63) if max_frame_size is None else max_frame_size
    assert len(merged) == len(plain)
    for got, want in zip(merged, plain, strict=True):
        if want[0] == "frames":
            assert got == ("frames", _fold(want[1], limit))
        elif want[0] == "error":
            assert got[:3] == want[:3] and got[3] == _fold(want[3], limit)
        else:
            assert got == want  # the frame in progress is never merged into anything


def test_merge_continuations_folds_a_run_of_one_byte_fragments(kernels):
    """A read of 100,000 one-byte fragments yields one frame (not 100,000), split by control frames."""
    run = wire(2, b"a", fin=False, key=KEY) + wire(0, b"b", fin=False, key=KEY) * 99_998
    data = run + wire(9, b"ping", key=KEY) + wire(0, b"c", fin=False, key=KEY) * 10 + wire(0, b"d", key=KEY)
    frames = kernels.FrameDecoder("server", None, merge_continuations=True).feed(data)
    assert as_tuples(frames) == [
        (2, b"a" + b"b" * 99_998, False, False, False, False),
        (9, b"ping", True, False, False, False),
        (0, b"c" * 10 + b"d", True, False, False, False),
    ]
    # A continuation that would take the merged frame past max_frame_size starts a new frame.
    frames = kernels.FrameDecoder("server", 5, merge_continuations=True).feed(run[:70])
    assert [(f.opcode, f.payload) for f in frames] == [(2, b"abbbb"), (0, b"bbbbb")]
    # Without the option every frame comes out.
    assert len(kernels.FrameDecoder("server", None).feed(run)) == 99_999


def test_merge_continuations_error_keeps_the_merged_frames(kernels):
    data = wire(1, b"a", fin=False, key=KEY) + wire(0, b"b", fin=False, key=KEY) + wire(3, b"x", key=KEY)
    with pytest.raises(ProtocolError) as info:
        kernels.FrameDecoder("server", None, merge_continuations=True).feed(data)
    assert info.value.close_code == 1002
    assert as_tuples(info.value.frames) == [(1, b"ab", False, False, False, False)]


@pytest.mark.parametrize("role", ["server", "client"])
@pytest.mark.parametrize("size", [10, 125, 126, 4095, 4096, 65536, 100_000])
@pytest.mark.parametrize("step", [1, 7, 4099, 30_000])
def test_differential_partial_payload_at_every_cut(pure, compiled, role, size, step):
    """The frame in progress (header byte and unmasked payload so far, from any offset) is the same on both
    backends, whether it sits in the buffer or is being received into its payload (4 KiB and more)."""
    rng = random.Random(size + step)
    key = KEY if role == "server" else None
    payload = rng.randbytes(size)
    data = wire(1, payload, fin=False, key=key)
    decoders = [mod.FrameDecoder(role, None) for mod in (pure, compiled)]
    header = len(data) - size
    count = 0
    for pos in range(0, len(data), step):
        chunk = data[pos : pos + step]
        results = []
        for decoder in decoders:
            frames = decoder.feed(chunk)
            results.append((as_tuples(frames), decoder.partial_header(), decoder.partial_payload(0)))
            if pos + step < len(data):
                got = pos + step - header  # payload bytes received so far
                assert decoder.partial_header() == (0x01 if got >= 0 else -1)
                assert decoder.partial_length() == (size if got >= 0 else -1)
                assert decoder.partial_payload(0) == (payload[:got] if got >= 0 else b"")
                for start in (1, 3, got - 1, got, got + 5):
                    assert decoder.partial_payload(start) == (payload[max(start, 0) : got] if got >= 0 else b"")
        assert results[0] == results[1]
        count += 1
        if count > 3000:
            break
    if count <= 3000:
        assert decoders[0].partial_header() == decoders[1].partial_header() == -1
        assert decoders[0].partial_length() == decoders[1].partial_length() == -1
        assert decoders[0].partial_payload() == decoders[1].partial_payload() == b""


@pytest.mark.parametrize("role", ["server", "client"])
@pytest.mark.parametrize("size", [10, 5000])  # in the buffer; being received into its payload
def test_differential_partial_payload_of_any_start(pure, compiled, role, size):
    """Any int is a start, a huge one past the end (the compiled twin raised OverflowError), a negative one
    the beginning; what is not an int is the same TypeError on both."""
    key = KEY if role == "server" else None
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    data = wire(2, payload, fin=False, key=key)[:-3]
    decoders = [mod.FrameDecoder(role, None) for mod in (pure, compiled)]
    for decoder in decoders:
        assert decoder.feed(data) == []
    got = size - 3
    for start in (2**70, 2**63, got, got - 1, 1, True, 0, -1, -(2**70)):
        results = [decoder.partial_payload(start) for decoder in decoders]
        assert results[0] == results[1] == payload[max(int(start), 0) : got], start
    idle = [mod.FrameDecoder(role, None) for mod in (pure, compiled)]  # no frame in progress: checked too
    for bad in (2.0, None, "1"):
        errors = []
        for decoder in (*decoders, *idle):
            with pytest.raises(TypeError) as info:
                decoder.partial_payload(bad)
            errors.append(str(info.value))
        assert errors[0] == errors[1] == errors[2] == errors[3], errors
