"""Extensions: the header grammar (RFC 6455 section 9.1) and permessage-deflate (RFC 7692)."""

from __future__ import annotations

import asyncio
import importlib
import random
import tracemalloc
import zlib
from typing import Any

import pytest

from wscodec import Connection, extensions
from wscodec._kernels import FrameDecoder
from wscodec.asyncio import WebSocket, connect, serve
from wscodec.errors import InvalidHandshake, PayloadTooBig, ProtocolError
from wscodec.events import ProtocolViolation, TextMessage
from wscodec.extensions import (
    ClientExtensionFactory,
    ClientPerMessageDeflate,
    Extension,
    ExtensionParams,
    PerMessageDeflate,
    ServerExtensionFactory,
    ServerPerMessageDeflate,
    build_extension_header,
    parse_extension_header,
)
from wscodec.handshake import compute_accept

# --------------------------------------------------------------------------- section 9.1: grammar


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["permessage-deflate"], [("permessage-deflate", [])]),
        ([""], []),
        ([], []),
        (
            ["permessage-deflate; client_max_window_bits"],
            [("permessage-deflate", [("client_max_window_bits", None)])],
        ),
        (
            ["permessage-deflate;client_max_window_bits=10;server_no_context_takeover"],
            [("permessage-deflate", [("client_max_window_bits", "10"), ("server_no_context_takeover", None)])],
        ),
        (
            ['  foo ; a = "1" ;b="x\\yz" , bar\t;\tc  '],
            [("foo", [("a", "1"), ("b", "xyz")]), ("bar", [("c", None)])],
        ),
        (["a, , b,"], [("a", []), ("b", [])]),
        (["a", "b; x=1", "a"], [("a", []), ("b", [("x", "1")]), ("a", [])]),
        (
            ["mux; max-channels=4; flow-control, deflate-stream"],
            [
                ("mux", [("max-channels", "4"), ("flow-control", None)]),
                ("deflate-stream", []),
            ],
        ),
    ],
)
def test_9_1_parse(values: list[str], expected: list) -> None:
    assert parse_extension_header(values) == expected


@pytest.mark.parametrize(
    "value",
    [
        ";",
        "a;",
        "a;;",
        "a; =1",
        "a; b=",
        "a; b==1",
        'a; b="unterminated',
        'a; b="has space"',  # section 9.1: a quoted value must be a token once unquoted
        'a; b=""',
        "a b",
        "a; b c",
        "a; b=1 2",
        "a/b",
        "a; b=@",
        "a; b=1;",
        "a\x00",
    ],
)
def test_9_1_parse_rejects_malformed(value: str) -> None:
    with pytest.raises(InvalidHandshake):
        parse_extension_header([value])


@pytest.mark.parametrize(
    ("extensions", "expected"),
    [
        ([("permessage-deflate", [])], "permessage-deflate"),
        (
            [("permessage-deflate", [("client_max_window_bits", None), ("server_max_window_bits", "10")])],
            "permessage-deflate; client_max_window_bits; server_max_window_bits=10",
        ),
        ([("a", [("x", "1")]), ("b", [])], "a; x=1, b"),
        ([("a", [("x", 'sp "q"')])], 'a; x="sp \\"q\\""'),
    ],
)
def test_9_1_build(extensions: list, expected: str) -> None:
    assert build_extension_header(extensions) == expected


@pytest.mark.parametrize(
    "extensions",
    [[("permessage-deflate", [("client_max_window_bits", None), ("server_max_window_bits", "10")])], [("a", [])]],
)
def test_9_1_build_then_parse_round_trips(extensions: list) -> None:
    assert parse_extension_header([build_extension_header(extensions)]) == extensions


@pytest.mark.parametrize("extensions", [[("bad name", [])], [("a", [("b c", None)])], [("a", [("b", "x\r\n")])]])
def test_9_1_build_refuses_invalid(extensions: list) -> None:
    with pytest.raises(ValueError):
        build_extension_header(extensions)


def test_extension_is_an_abstract_interface() -> None:
    with pytest.raises(TypeError):
        Extension()  # type: ignore[abstract]
    assert issubclass(PerMessageDeflate, Extension)
    assert PerMessageDeflate.rsv1 is True
    assert (
        ClientPerMessageDeflate.name == ServerPerMessageDeflate.name == PerMessageDeflate.name == "permessage-deflate"
    )


# --------------------------------------------------------------------------- section 7.1: negotiation, client offer


@pytest.mark.parametrize(
    ("kwargs", "offer"),
    [
        ({}, [("client_max_window_bits", None)]),
        ({"client_max_window_bits": None}, []),
        ({"client_max_window_bits": 10}, [("client_max_window_bits", "10")]),
        (
            {
                "server_no_context_takeover": True,
                "client_no_context_takeover": True,
                "server_max_window_bits": 9,
                "client_max_window_bits": 8,
            },
            [
                ("server_no_context_takeover", None),
                ("client_no_context_takeover", None),
                ("server_max_window_bits", "9"),
                ("client_max_window_bits", "8"),
            ],
        ),
    ],
)
def test_7_1_client_offer(kwargs: dict, offer: list) -> None:
    assert ClientPerMessageDeflate(**kwargs).offer() == ("permessage-deflate", offer)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"server_max_window_bits": 7},
        {"server_max_window_bits": 16},
        {"client_max_window_bits": 0},
        {"server_max_window_bits": 12.5},  # would go out in every offer or answer: peers refuse it
        {"client_max_window_bits": 10.5},
        {"server_max_window_bits": "12"},
    ],
)
def test_7_1_factories_refuse_invalid_window_bits(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ClientPerMessageDeflate(**kwargs)
    with pytest.raises(ValueError):
        ServerPerMessageDeflate(**kwargs)


# Client offer kwargs, server response params, expected negotiated attributes
# (server_nct, client_nct, server_bits, client_bits) or None when the client must fail the handshake.
CLIENT_ACCEPT = [
    ({}, [], (False, False, None, None)),
    ({}, [("server_no_context_takeover", None)], (True, False, None, None)),
    ({}, [("client_no_context_takeover", None)], (False, True, None, None)),
    ({}, [("server_max_window_bits", "10")], (False, False, 10, None)),
    ({}, [("client_max_window_bits", "9")], (False, False, None, 9)),
    ({"client_no_context_takeover": True}, [], (False, True, None, None)),
    ({"server_no_context_takeover": True}, [("server_no_context_takeover", None)], (True, False, None, None)),
    ({"server_no_context_takeover": True}, [], None),  # section 7.1.1.1: the server must honour it
    ({"server_max_window_bits": 10}, [("server_max_window_bits", "10")], (False, False, 10, None)),
    ({"server_max_window_bits": 10}, [("server_max_window_bits", "8")], (False, False, 8, None)),
    ({"server_max_window_bits": 10}, [("server_max_window_bits", "11")], None),  # greater than requested
    ({"server_max_window_bits": 10}, [], None),  # section 7.1.2.1: must be in the response
    ({"client_max_window_bits": None}, [("client_max_window_bits", "10")], None),  # not offered
    ({"client_max_window_bits": 10}, [("client_max_window_bits", "9")], (False, False, None, 9)),
    ({"client_max_window_bits": 10}, [("client_max_window_bits", "11")], None),
    ({"client_max_window_bits": 10}, [], (False, False, None, 10)),  # we keep to the limit we announced
    ({}, [("client_max_window_bits", None)], None),  # a response value is mandatory
    ({}, [("server_max_window_bits", None)], None),
    ({}, [("server_max_window_bits", "7")], None),
    ({}, [("server_max_window_bits", "16")], None),
    ({}, [("server_max_window_bits", "010")], None),  # no leading zeros
    ({}, [("server_max_window_bits", "x")], None),
    ({}, [("server_no_context_takeover", "1")], None),
    ({}, [("client_no_context_takeover", None), ("client_no_context_takeover", None)], None),
    ({}, [("unknown", None)], None),
]


@pytest.mark.parametrize(("kwargs", "response", "expected"), CLIENT_ACCEPT)
def test_7_1_client_accepts_or_refuses_response(kwargs: dict, response: list, expected: tuple | None) -> None:
    factory = ClientPerMessageDeflate(**kwargs)
    if expected is None:
        with pytest.raises(InvalidHandshake):
            factory.accept(response)
        return
    ext = factory.accept(response)
    assert isinstance(ext, PerMessageDeflate) and not ext.is_server
    got = (
        ext.server_no_context_takeover,
        ext.client_no_context_takeover,
        ext.server_max_window_bits,
        ext.client_max_window_bits,
    )
    assert got == expected


# Server preferences, client offers, expected response params (None: every offer declined).
SERVER_NEGOTIATE = [
    ({}, [[]], []),
    ({}, [[("client_max_window_bits", None)]], []),
    ({}, [[("client_max_window_bits", "10")]], [("client_max_window_bits", "10")]),
    ({}, [[("server_no_context_takeover", None)]], [("server_no_context_takeover", None)]),
    ({}, [[("client_no_context_takeover", None)]], [("client_no_context_takeover", None)]),
    ({}, [[("server_max_window_bits", "9")]], [("server_max_window_bits", "9")]),
    ({"server_max_window_bits": 12}, [[("server_max_window_bits", "9")]], [("server_max_window_bits", "9")]),
    ({"server_max_window_bits": 9}, [[("server_max_window_bits", "12")]], [("server_max_window_bits", "9")]),
    ({"server_max_window_bits": 11}, [[]], [("server_max_window_bits", "11")]),
    ({"server_no_context_takeover": True}, [[]], [("server_no_context_takeover", None)]),
    ({"client_no_context_takeover": True}, [[]], [("client_no_context_takeover", None)]),
    ({"client_max_window_bits": 11}, [[("client_max_window_bits", None)]], [("client_max_window_bits", "11")]),
    ({"client_max_window_bits": 11}, [[("client_max_window_bits", "9")]], [("client_max_window_bits", "9")]),
    ({"client_max_window_bits": 11}, [[("client_max_window_bits", "13")]], [("client_max_window_bits", "11")]),
    # Section 7.1.2.2: client_max_window_bits only if the client offered it; accepted without the limit.
    ({"client_max_window_bits": 11}, [[]], []),
    # Malformed or duplicated offers are declined; the next offer is tried.
    ({}, [[("server_max_window_bits", None)]], None),
    ({}, [[("server_max_window_bits", "7")]], None),
    ({}, [[("client_max_window_bits", "16")]], None),
    ({}, [[("server_no_context_takeover", "yes")]], None),
    ({}, [[("x-unknown", None)]], None),
    ({}, [[("server_no_context_takeover", None), ("server_no_context_takeover", None)]], None),
    ({}, [[("x-unknown", None)], [("server_max_window_bits", "10")]], [("server_max_window_bits", "10")]),
    ({}, [[("server_max_window_bits", "10")], []], [("server_max_window_bits", "10")]),
    (
        {"server_no_context_takeover": True, "client_no_context_takeover": True, "server_max_window_bits": 10},
        [[("server_max_window_bits", "12"), ("client_max_window_bits", None)]],
        [("server_no_context_takeover", None), ("client_no_context_takeover", None), ("server_max_window_bits", "10")],
    ),
]


@pytest.mark.parametrize(("prefs", "offers", "expected"), SERVER_NEGOTIATE)
def test_7_1_server_negotiation(prefs: dict, offers: list, expected: list | None) -> None:
    result = ServerPerMessageDeflate(**prefs).negotiate(offers)
    if expected is None:
        assert result is None
        return
    assert result is not None
    params, ext = result
    assert params == expected
    assert ext.is_server and ext.response_params() == expected


CLIENT_MATRIX = [
    {},
    {"client_max_window_bits": None},
    {"client_max_window_bits": 9},
    {"server_no_context_takeover": True},
    {"client_no_context_takeover": True, "server_max_window_bits": 8},
    {"server_max_window_bits": 12, "client_max_window_bits": 12},
]
SERVER_MATRIX = [
    {},
    {"server_no_context_takeover": True},
    {"client_no_context_takeover": True},
    {"server_max_window_bits": 10},
    {"client_max_window_bits": 8},
    {"server_max_window_bits": 15, "client_max_window_bits": 15, "client_no_context_takeover": True},
]


@pytest.mark.parametrize("client_kwargs", CLIENT_MATRIX)
@pytest.mark.parametrize("server_kwargs", SERVER_MATRIX)
def test_7_1_every_server_answer_is_accepted_by_our_client(client_kwargs: dict, server_kwargs: dict) -> None:
    client_factory = ClientPerMessageDeflate(**client_kwargs)
    result = ServerPerMessageDeflate(**server_kwargs).negotiate([client_factory.offer()[1]])
    assert result is not None
    params, server_ext = result
    client_ext = client_factory.accept(params)
    for name in (
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    ):
        client_value, server_value = getattr(client_ext, name), getattr(server_ext, name)
        assert client_value == server_value or (name == "client_max_window_bits" and server_value is None)
    # Whatever was agreed, both directions work.
    message = b"negotiated " * 50
    for sender, receiver in ((client_ext, server_ext), (server_ext, client_ext)):
        for _ in range(2):
            payload, rsv1 = sender.encode(message)
            receiver.decode_start(rsv1)
            assert receiver.decode(payload, True, None) == message


# --------------------------------------------------------------------------- section 7.2: compression

HELLO = bytes.fromhex("f248cdc9c90700")


def pmd(is_server: bool, **kwargs) -> PerMessageDeflate:
    kwargs.setdefault("compress_threshold", 0)
    return PerMessageDeflate(is_server=is_server, **kwargs)


def decode(ext: PerMessageDeflate, frames: list[bytes], rsv1: bool = True, max_size: int | None = None) -> bytes:
    ext.decode_start(rsv1)
    out = b""
    for i, frame in enumerate(frames):
        out += ext.decode(frame, i == len(frames) - 1, None if max_size is None else max_size - len(out))
    return out


def test_7_2_3_1_hello_compressed() -> None:
    assert pmd(True).encode(b"Hello") == (HELLO, True)
    assert decode(pmd(False), [HELLO]) == b"Hello"


def test_7_2_3_1_hello_fragmented() -> None:
    assert decode(pmd(False), [bytes.fromhex("f248cd"), bytes.fromhex("c9c90700")]) == b"Hello"


@pytest.fixture
def stdlib_zlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """The RFC's example bytes are what zlib's encoder writes; ISA-L and zlib-ng write other, equally valid ones."""
    monkeypatch.setattr(extensions, "_deflate_module", zlib)
    monkeypatch.setattr(extensions, "DEFLATE_BACKEND", "zlib")


def test_7_2_3_2_shared_sliding_window(stdlib_zlib: None) -> None:
    sender = pmd(True)
    assert sender.encode(b"Hello") == (HELLO, True)
    second = bytes.fromhex("f200110000")
    assert sender.encode(b"Hello") == (second, True)
    receiver = pmd(False)
    assert decode(receiver, [HELLO]) == b"Hello"
    assert decode(receiver, [second]) == b"Hello"


@pytest.mark.parametrize("backend", ["zlib", "zlib-ng", "isal"])
def test_7_2_3_2_shared_sliding_window_every_deflate_backend(monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    """Whichever implementation compresses, the second message refers to the first (shorter than it alone) and
    a stdlib-zlib receiver with the shared window decodes both; and the other way round."""
    module = {"zlib": "zlib", "zlib-ng": "zlib_ng.zlib_ng", "isal": "isal.isal_zlib"}[backend]
    mod = pytest.importorskip(module)
    monkeypatch.setattr(extensions, "_deflate_module", mod)
    monkeypatch.setattr(extensions, "DEFLATE_BACKEND", backend)
    monkeypatch.setattr(extensions, "_DEFLATE_ERRORS", (zlib.error, mod.error))
    text = b'{"event": "update", "id": 12345, "values": [1, 2, 3, 4, 5, 6, 7, 8]}' * 3
    sender = pmd(True)
    first, rsv1 = sender.encode(text)
    second, _ = sender.encode(text)
    assert rsv1 and len(second) < len(first) < len(text)
    inflate = zlib.decompressobj(wbits=-15)
    assert inflate.decompress(first + b"\x00\x00\xff\xff") == text
    assert inflate.decompress(second + b"\x00\x00\xff\xff") == text
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    receiver = pmd(False)
    for _ in range(2):
        wire = deflate.compress(text) + deflate.flush(zlib.Z_SYNC_FLUSH)
        assert decode(receiver, [wire[:-4]]) == text
    with pytest.raises(ProtocolError, match="invalid compressed data"):
        decode(pmd(False), [b"\xff\xff\xff\xff"])


def test_7_2_3_2_no_context_takeover_repeats_the_same_bytes(stdlib_zlib: None) -> None:
    sender = pmd(True, server_no_context_takeover=True)
    assert sender.encode(b"Hello") == (HELLO, True)
    assert sender.encode(b"Hello") == (HELLO, True)
    receiver = pmd(False, server_no_context_takeover=True)
    assert decode(receiver, [HELLO]) == b"Hello"
    assert decode(receiver, [HELLO]) == b"Hello"


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param("0005 00fa ff48 656c 6c6f 00", id="7.2.3.3-stored-block"),
        pytest.param("f348 cdc9 c907 0000", id="7.2.3.4-BFINAL"),
        pytest.param("f248 0500 0000 ffff cac9 c907 00", id="7.2.3.5-two-blocks"),
    ],
)
def test_7_2_3_other_encodings_of_hello(payload: str) -> None:
    receiver = pmd(False)
    assert decode(receiver, [bytes.fromhex(payload)]) == b"Hello"
    assert decode(receiver, [HELLO]) == b"Hello"  # and the next message still decodes


def test_7_2_3_6_empty_message(stdlib_zlib: None) -> None:
    assert pmd(True).encode(b"") == (b"\x00", True)
    assert decode(pmd(False), [b"\x00"]) == b""
    assert decode(pmd(False), [b""]) == b""


def test_7_2_compress_threshold() -> None:
    ext = PerMessageDeflate(is_server=True, compress_threshold=128)
    assert ext.encode(b"x" * 127) == (b"x" * 127, False)
    payload, rsv1 = ext.encode(b"x" * 128)
    assert rsv1 and len(payload) < 128
    assert ext.encode(bytearray(b"ab")) == (b"ab", False)


def test_7_2_uncompressed_message_passes_through_decode() -> None:
    ext = pmd(False)
    assert decode(ext, [b"plain", b" text"], rsv1=False) == b"plain text"
    assert decode(ext, [HELLO]) == b"Hello"


def test_7_2_encode_accepts_any_buffer() -> None:
    data = b"buffer " * 40
    for buffer in (data, bytearray(data), memoryview(data)):
        payload, rsv1 = pmd(True).encode(buffer)
        assert rsv1 and decode(pmd(False), [payload]) == data


def test_7_2_invalid_compressed_data_is_1007() -> None:
    with pytest.raises(ProtocolError) as info:
        decode(pmd(False), [b"\xff\xff\xff\xff"])
    assert info.value.close_code == 1007


SIZES = [0, 1, 200, 5000, 70000]


def _message(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    words = [rng.randbytes(rng.randint(1, 12)) for _ in range(64)]
    out = b"".join(rng.choice(words) for _ in range(size // 4 + 1))
    return out[:size]


@pytest.mark.parametrize("bits", range(8, 16))
@pytest.mark.parametrize("no_context", [False, True], ids=["takeover", "no-takeover"])
@pytest.mark.parametrize("server_sends", [True, False], ids=["server-to-client", "client-to-server"])
def test_7_2_round_trip_window_bits_and_context(bits: int, no_context: bool, server_sends: bool) -> None:
    params = {
        "server_max_window_bits": bits,
        "client_max_window_bits": bits,
        "server_no_context_takeover": no_context,
        "client_no_context_takeover": no_context,
    }
    sender, receiver = pmd(server_sends, **params), pmd(not server_sends, **params)
    for n_frames in (1, 3, 7):
        for size in SIZES:
            message = _message(size, size + bits)
            payload, rsv1 = sender.encode(message)
            assert rsv1
            step = max(1, -(-len(payload) // n_frames))
            frames = [payload[i : i + step] for i in range(0, len(payload), step)] or [b""]
            assert decode(receiver, frames) == message
            if no_context:  # each message stands alone: a fresh inflater with the window decodes it
                fresh = zlib.decompressobj(wbits=-max(bits, 9))
                assert fresh.decompress(payload + b"\x00\x00\xff\xff") == message


def test_7_2_window_bits_limit_what_the_sender_refers_to() -> None:
    # A message repeating a 1 KiB block: with a 9-bit window the repeat is out of reach, with 15 it is not.
    block = random.Random(1).randbytes(1024)
    small = pmd(True, server_max_window_bits=9).encode(block * 4)[0]
    large = pmd(True, server_max_window_bits=15).encode(block * 4)[0]
    assert len(large) < 1300 < len(small)
    assert zlib.decompressobj(wbits=-9).decompress(small + b"\x00\x00\xff\xff") == block * 4


@pytest.fixture(params=["zlib", "zlib-ng", "isal"])
def deflate_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each DEFLATE implementation in turn (all three are in the test extras)."""
    name: str = request.param
    mod = importlib.import_module({"zlib": "zlib", "zlib-ng": "zlib_ng.zlib_ng", "isal": "isal.isal_zlib"}[name])
    monkeypatch.setattr(extensions, "_deflate_module", mod)
    monkeypatch.setattr(extensions, "DEFLATE_BACKEND", name)
    monkeypatch.setattr(extensions, "_DEFLATE_ERRORS", (zlib.error, mod.error))
    return name


def _inflate_strictly(wbits: int, payloads: list[bytes]) -> list[bytes]:
    """Inflate messages one byte per call, so that every back-reference must come from the 2**wbits window
    (in one call zlib also lets a reference reach into that call's own output)."""
    inflater = zlib.decompressobj(wbits=-wbits)
    messages = []
    for payload in payloads:
        out = bytearray()
        for i in range(len(payload) + 4):
            out += inflater.decompress((payload + b"\x00\x00\xff\xff")[i : i + 1])
        messages.append(bytes(out))
    return messages


@pytest.mark.parametrize("is_server", [True, False], ids=["server", "client"])
def test_7_2_1_an_agreed_8_bit_window_is_kept_by_every_deflate_backend(deflate_backend: str, is_server: bool) -> None:
    """RFC 7692 section 7.2.1: with max_window_bits=8 agreed, the sender MUST NOT use a window longer than 256
    bytes. zlib refuses 8 for raw DEFLATE; wscodec compresses with zlib's 9, whose matches reach back at most
    250 bytes, whatever DEFLATE implementation it otherwise uses (ISA-L's 9 reaches 512)."""
    rng = random.Random(8)
    block = rng.randbytes(300)  # repeats at distance 300: in reach of a 512-byte window, not of a 256-byte one
    near = rng.randbytes(100)
    messages = [block * 3, near * 2 + block, near * 3]  # the later ones may refer back into the earlier ones
    sender = pmd(is_server, server_max_window_bits=8, client_max_window_bits=8)
    payloads = [sender.encode(message)[0] for message in messages]
    assert _inflate_strictly(8, payloads) == messages
    assert len(payloads[2]) < 150  # it still compresses: the repeats within 250 bytes are found


def test_7_2_context_carries_across_messages_only_with_takeover() -> None:
    message = _message(3000, 7)
    with_context = pmd(True)
    first = with_context.encode(message)[0]
    assert len(with_context.encode(message)[0]) < len(first) // 4
    without = pmd(True, server_no_context_takeover=True)
    assert without.encode(message)[0] == without.encode(message)[0] == first


# --------------------------------------------------------------------------- decompression bombs (1009)


def _bomb(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = compressor.compress(b"\x00" * size) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return payload[:-4]


def test_7692_bomb_is_refused_while_inflating_with_bounded_memory() -> None:
    bomb = _bomb(200_000_000)
    assert len(bomb) < 250_000
    receiver = pmd(False)
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooBig) as info:
            decode(receiver, [bomb], max_size=1 << 20)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.close_code == 1009
    assert peak < 8 << 20  # about the limit, not the 200 MB the payload inflates to


def test_7692_limit_is_exact() -> None:
    payload = pmd(True).encode(b"a" * 1000)[0]
    assert decode(pmd(False), [payload], max_size=1000) == b"a" * 1000
    with pytest.raises(PayloadTooBig):
        decode(pmd(False), [payload], max_size=999)
    with pytest.raises(PayloadTooBig):
        decode(pmd(False), [payload], max_size=0)


def test_7692_limit_spans_the_frames_of_a_message() -> None:
    payload = pmd(True).encode(_message(50_000, 3))[0]
    frames = [payload[i : i + 100] for i in range(0, len(payload), 100)]
    assert len(decode(pmd(False), frames, max_size=50_000)) == 50_000
    with pytest.raises(PayloadTooBig):
        decode(pmd(False), frames, max_size=49_999)


def test_7692_limit_counts_the_flush_at_the_end() -> None:
    # The last bytes only come out once 00 00 ff ff is appended; the limit still applies to them.
    payload = pmd(True).encode(b"b" * 300)[0]
    receiver = pmd(False)
    receiver.decode_start(True)
    with pytest.raises(PayloadTooBig):
        receiver.decode(payload, True, 299)


# --------------------------------------------------------------------------- extensions of one's own


class Upper(Extension):
    """An application's own extension: sends text upper-cased, marked with RSV1, and lower-cases it back."""

    name = "x-upper"
    made: list[Upper] = []

    def __init__(self) -> None:
        self.encoded = self.decoded = 0
        Upper.made.append(self)

    def decode(self, data: bytes, final: bool, max_size: int | None) -> bytes:
        self.decoded += 1
        return bytes(data).lower()

    def encode(self, data: bytes) -> tuple[bytes, bool]:
        self.encoded += 1
        return bytes(data).upper(), True

    def response_params(self) -> ExtensionParams:
        return []


class RsvOff(Upper):
    """An instance that turns RSV1 off after its class was accepted."""

    def __init__(self) -> None:
        super().__init__()
        self.rsv1 = False


class UpperClient(ClientExtensionFactory):
    name = "x-upper"

    def __init__(self, extension: type[Upper] = Upper) -> None:
        self.extension = extension

    def offer_params(self) -> ExtensionParams:
        return []

    def accept(self, params: ExtensionParams) -> Extension:
        return self.extension()


class UpperServer(ServerExtensionFactory):
    name = "x-upper"

    def __init__(self, extension: type[Upper] = Upper) -> None:
        self.extension = extension

    def negotiate(self, offers: list[ExtensionParams]) -> tuple[ExtensionParams, Extension]:
        return [], self.extension()


def open_pair(client_factories: list, server_factories: list) -> tuple[Connection, Connection]:
    client = Connection("client", host="h", extensions=client_factories)
    server = Connection("server", extensions=server_factories)
    server.receive_data(client.data_to_send())
    server.accept()
    client.receive_data(server.data_to_send())
    return client, server


def test_an_extension_that_does_not_use_rsv1_is_refused_where_it_is_defined() -> None:
    """wscodec applies an extension through RSV1 only: one with rsv1 = False would be negotiated with the peer
    and then never called, both sides believing it active."""
    with pytest.raises(TypeError, match="rsv1 must be True"):

        class NoRsv1(Extension):
            name = "x-upper"
            rsv1 = False

            def decode(self, data: bytes, final: bool, max_size: int | None) -> bytes:
                return bytes(data).lower()

            def encode(self, data: bytes) -> tuple[bytes, bool]:
                return bytes(data).upper(), False

            def response_params(self) -> ExtensionParams:
                return []


def test_an_extension_instance_that_turns_rsv1_off_is_refused_when_negotiated() -> None:
    client = Connection("client", host="h", extensions=[UpperClient()])
    server = Connection("server", extensions=[UpperServer(RsvOff)])
    server.receive_data(client.data_to_send())
    with pytest.raises(TypeError, match=r"RsvOff: .*rsv1 must be True"):
        server.accept()
    client, server = (
        Connection("client", host="h", extensions=[UpperClient(RsvOff)]),
        Connection("server", extensions=[UpperServer()]),
    )
    server.receive_data(client.data_to_send())
    server.accept()
    with pytest.raises(TypeError, match=r"RsvOff: .*rsv1 must be True"):
        client.receive_data(server.data_to_send())
    with pytest.raises(TypeError, match=r"RsvOff: .*rsv1 must be True"):
        Connection.established("server", extensions=[RsvOff()])


def test_an_extension_of_ones_own_is_applied_both_ways() -> None:
    client, server = open_pair([UpperClient()], [UpperServer()])
    assert dict(server.response.headers)["Sec-WebSocket-Extensions"] == "x-upper"  # type: ignore[union-attr]
    (cext,) = client.extensions
    (sext,) = server.extensions
    assert isinstance(cext, Upper) and isinstance(sext, Upper)
    client.send_message("hello")
    wire = client.data_to_send()
    (frame,) = FrameDecoder("server", None, allow_rsv1=True).feed(wire)
    assert frame.rsv1 and frame.payload == b"HELLO"
    assert server.receive_data(wire) == [TextMessage("hello")]
    server.send_message("back")
    assert client.receive_data(server.data_to_send()) == [TextMessage("back")]
    assert (cext.encoded, cext.decoded, sext.encoded, sext.decoded) == (1, 1, 1, 1)


@pytest.mark.parametrize("deflate_first", [True, False], ids=["deflate-first", "custom-first"])
def test_only_the_first_of_two_extensions_offered_is_negotiated(deflate_first: bool) -> None:
    """Both use RSV1, so there is room for one: the server takes the first of the client's offers it accepts,
    and both sides apply that one and no other."""
    offers: list = [ClientPerMessageDeflate(), UpperClient()]
    if not deflate_first:
        offers.reverse()
    client, server = open_pair(offers, [UpperServer(), ServerPerMessageDeflate()])
    header = dict(server.response.headers)["Sec-WebSocket-Extensions"]  # type: ignore[union-attr]
    expected = PerMessageDeflate if deflate_first else Upper
    assert header.startswith(expected.name) and "," not in header
    assert [type(e) for e in client.extensions] == [type(e) for e in server.extensions] == [expected]
    client.send_message("hello " * 50)
    assert server.receive_data(client.data_to_send()) == [TextMessage("hello " * 50)]


def test_a_client_refuses_a_response_that_accepts_two_extensions() -> None:
    client = Connection("client", host="h", extensions=[ClientPerMessageDeflate(), UpperClient()])
    key = client._handshake.key
    response = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {compute_accept(key)}\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate, x-upper\r\n\r\n"
    )
    events = client.receive_data(response.encode())
    assert isinstance(events[0], ProtocolViolation) and "two extensions" in str(events[0].error)
    assert client.closed and client.extensions == []


def test_established_takes_one_extension_at_most() -> None:
    with pytest.raises(ValueError, match="at most one extension"):
        Connection.established("server", extensions=[PerMessageDeflate(is_server=True), Upper()])


async def test_an_extension_of_ones_own_over_a_socket() -> None:
    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    Upper.made.clear()
    async with (
        serve(echo, "127.0.0.1", 0, extensions=[UpperServer()]) as server,
        connect(f"ws://127.0.0.1:{server.port}/", extensions=[UpperClient()]) as ws,
    ):
        assert ws.extensions == "x-upper"
        await asyncio.wait_for(ws.send("over the wire"), 5)
        assert await asyncio.wait_for(ws.recv(), 5) == "over the wire"
    assert sorted((e.encoded, e.decoded) for e in Upper.made) == [(1, 1), (1, 1)]


# --------------------------------------------------------------------------- compressor settings

BAD_SETTINGS = [
    {"compression_level": 10},
    {"compression_level": 12},
    {"compression_level": -2},
    {"compression_level": 6.5},
    {"memory_level": 0},
    {"memory_level": 10},
    {"memory_level": True},
    {"compress_threshold": -1},
    {"compress_threshold": float("nan")},
]


def _permessage_deflate(**kwargs: Any) -> PerMessageDeflate:
    return PerMessageDeflate(is_server=True, **kwargs)


@pytest.mark.parametrize("kwargs", BAD_SETTINGS, ids=lambda kw: "{}={}".format(*next(iter(kw.items()))))
@pytest.mark.parametrize("make", [ServerPerMessageDeflate, ClientPerMessageDeflate, _permessage_deflate])
def test_bad_compressor_settings_are_refused_when_the_factory_is_built(
    deflate_backend: str, make: Any, kwargs: dict
) -> None:
    """Not in the server's handshake (an HTTP 500 for every client) or at the first compressed send, and not
    only with some DEFLATE implementations: ISA-L remaps any level, zlib and zlib-ng refuse 10 and up."""
    (name,) = kwargs
    with pytest.raises(ValueError, match=name):
        make(**kwargs)


@pytest.mark.parametrize("make", [ServerPerMessageDeflate, ClientPerMessageDeflate, _permessage_deflate])
def test_a_compress_threshold_is_a_number(make: Any) -> None:
    """A float threshold works, as it did before the checks; what is not a number is a TypeError."""
    assert make(compress_threshold=10.5).compress_threshold == 10.5
    with pytest.raises(TypeError, match="compress_threshold must be a number"):
        make(compress_threshold="128")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"compression_level": -1},
        {"compression_level": 0},
        {"compression_level": 9, "memory_level": 9},
        {"memory_level": 1, "compress_threshold": 0},
        {"compress_threshold": 299.5},
    ],
)
def test_the_edges_of_the_compressor_settings_work_with_every_deflate_backend(
    deflate_backend: str, kwargs: dict
) -> None:
    client, server = open_pair([ClientPerMessageDeflate(**kwargs)], [ServerPerMessageDeflate(**kwargs)])
    for sender, receiver in ((server, client), (client, server)):
        sender.send_message("x" * 300)
        assert receiver.receive_data(sender.data_to_send()) == [TextMessage("x" * 300)]


def test_zlibs_default_level_is_the_default_on_isal_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """-1 is zlib's default, 6, which maps to ISA-L's level 2, not to its fastest."""
    monkeypatch.setattr(extensions, "_deflate_module", importlib.import_module("isal.isal_zlib"))
    monkeypatch.setattr(extensions, "DEFLATE_BACKEND", "isal")
    data = b"".join(b"%d: %s\n" % (i, b"word" * (i % 7)) for i in range(2000))

    def deflate(level: int) -> bytes:
        compressor = extensions._compressobj(level, 15, 8)
        return bytes(compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))

    assert deflate(-1) == deflate(6) != deflate(1)
