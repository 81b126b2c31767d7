"""The kernels' fast paths for the Connection: ``FrameDecoder.feed_messages`` and ``FrameQueue``, on both backends.

``feed_messages`` must give exactly what ``feed`` gives with the whole, uncompressed data frames outside a
fragmented message turned into records, and fail on invalid UTF-8 with 1007 (RFC 6455 section 8.1) keeping
what came before. ``FrameQueue``'s one-step sends must put on the wire what ``encode_frame`` does.
"""

from __future__ import annotations

import gc
import itertools
import sys
from dataclasses import dataclass
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wscodec.errors import ProtocolError

KEY = b"\x0a\x0b\x0c\x0d"


@dataclass(frozen=True, slots=True)
class Text:
    data: str


@dataclass(frozen=True, slots=True)
class Binary:
    data: bytes


def reference(frames: list, in_message: bool) -> list:
    """What feed_messages must return for ``frames`` from feed: written out, rule by rule."""
    return reference_and_state(frames, in_message)[0]


def reference_and_state(frames: list, in_message: bool) -> tuple[list, bool]:
    out = []
    inside = in_message
    for f in frames:
        if inside:
            if f.opcode == 0 and f.fin:
                inside = False
        elif f.opcode in (1, 2):
            if f.fin and not f.rsv1:
                out.append(Text(f.payload.decode()) if f.opcode == 1 else Binary(f.payload))
                continue
            if not f.fin:
                inside = True
        out.append(f)
    return out, inside


def as_comparable(items: list) -> list:
    return [x if isinstance(x, (Text, Binary)) else ("frame", x.opcode, x.payload, x.fin, x.rsv1) for x in items]


# one frame: (opcode, payload, fin, rsv1); only frames a server decoder accepts one by one
frame_st = st.one_of(
    st.tuples(st.sampled_from([0, 1]), st.text(max_size=20).map(str.encode), st.booleans(), st.booleans()),
    st.tuples(st.just(2), st.binary(max_size=20), st.booleans(), st.booleans()),
    st.tuples(st.sampled_from([9, 10]), st.binary(max_size=10), st.just(True), st.just(False)),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(frame_st, max_size=12), in_message=st.booleans())
def test_feed_messages_is_feed_with_whole_messages_as_records(kernels: ModuleType, frames, in_message) -> None:
    stream = b"".join(
        kernels.encode_frame(op, payload, fin=fin, rsv1=rsv1 and op < 8, mask=KEY) for op, payload, fin, rsv1 in frames
    )
    plain = kernels.FrameDecoder("server", None, allow_rsv1=True).feed(stream)
    items, left = kernels.FrameDecoder("server", None, allow_rsv1=True).feed_messages(stream, in_message, Text, Binary)
    assert as_comparable(items) == as_comparable(reference(plain, in_message))
    assert left == sum(1 for x in items if isinstance(x, kernels.Frame))
    assert all(type(x) in (Text, Binary, kernels.Frame) for x in items)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    frames=st.lists(frame_st, max_size=16),
    sizes=st.lists(st.integers(0, 300), max_size=6),
    cuts=st.lists(st.integers(1, 40), min_size=1, max_size=30),
    merge=st.booleans(),
    masked=st.booleans(),
)
def test_feed_messages_chunked_as_a_connection_feeds_it(kernels: ModuleType, frames, sizes, cuts, merge, masked):
    """Chunked reads, merged continuations, large frames (received into their own buffer), both roles: each
    call's result is feed's for the same chunk with the records applied, the open-message state carried."""
    big = [(2 if i % 2 else 1, b"x" * (4096 + 997 * i), True, False) for i, _ in enumerate(sizes[:2])]
    small = [(1, b"y" * n, True, False) for n in sizes]
    every = frames + big + small + frames
    key = KEY if masked else None
    role = "server" if masked else "client"
    stream = b"".join(
        kernels.encode_frame(op, payload, fin=fin, rsv1=rsv1 and op < 8, mask=key) for op, payload, fin, rsv1 in every
    )
    plain = kernels.FrameDecoder(role, None, allow_rsv1=True, merge_continuations=merge)
    fast = kernels.FrameDecoder(role, None, allow_rsv1=True, merge_continuations=merge)
    inside = False
    pos = 0
    i = 0
    while pos < len(stream):
        chunk = stream[pos : pos + cuts[i % len(cuts)] * (97 if i % 3 == 0 else 1)]
        pos += len(chunk)
        i += 1
        expected, after = reference_and_state(plain.feed(chunk), inside)
        items, left = fast.feed_messages(chunk, inside, Text, Binary)
        assert as_comparable(items) == as_comparable(expected)
        assert left == sum(1 for x in items if isinstance(x, kernels.Frame))
        inside = after


def test_records_are_built_without_init_even_when_frozen(kernels: ModuleType) -> None:
    stream = kernels.encode_frame(1, "héllo".encode(), mask=KEY) + kernels.encode_frame(2, b"\x00\xff", mask=KEY)
    items, left = kernels.FrameDecoder("server").feed_messages(stream, False, Text, Binary)
    assert items == [Text("héllo"), Binary(b"\x00\xff")] and left == 0
    assert type(items[1].data) is bytes


def test_fragment_records_are_final(kernels: ModuleType) -> None:
    """A record type with a ``final`` slot (the Connection's TextFragment/BinaryFragment when streaming) gets
    ``final=True``: a whole message is its own last fragment."""
    from wscodec.events import BinaryFragment, TextFragment

    stream = kernels.encode_frame(1, b"t", mask=KEY) + kernels.encode_frame(2, b"b" * 300, mask=KEY)
    items, left = kernels.FrameDecoder("server").feed_messages(stream, False, TextFragment, BinaryFragment)
    assert items == [TextFragment("t", True), BinaryFragment(b"b" * 300, True)] and left == 0


class TextWithDict:  # an instance dict too: anything may be attached to it later
    __slots__ = ("__dict__", "data")


@dataclass(frozen=True, slots=True, weakref_slot=True)
class BinaryWithWeakref:
    data: bytes


@dataclass(frozen=True, slots=True)
class BinaryWithMore:
    data: bytes
    extra: object = None


def test_records_that_cannot_reach_a_cycle_leave_the_garbage_collector(kernels: ModuleType) -> None:
    """The compiled backend untracks a record whose type holds nothing but the slots it sets (a str or
    bytes, and True): a read of thousands of small messages would otherwise set off a collection every 700
    records, walking the list being built. The pure backend cannot untrack; the records are equal either way.
    Types that could later hold more (an instance dict, a weakref list, another slot) stay tracked."""
    from wscodec.events import BinaryFragment, TextFragment, TextMessage

    stream = kernels.encode_frame(1, b"t", mask=KEY) + kernels.encode_frame(2, b"b" * 300, mask=KEY)
    compiled = kernels.__name__.endswith("_speedups")
    for text_type, binary_type in ((TextMessage, Binary), (TextFragment, BinaryFragment)):
        items, _ = kernels.FrameDecoder("server").feed_messages(stream, False, text_type, binary_type)
        assert [gc.is_tracked(item) for item in items] == [not compiled, not compiled]
        assert items[1].data == b"b" * 300
    for binary_type in (BinaryWithWeakref, BinaryWithMore):
        items, _ = kernels.FrameDecoder("server").feed_messages(stream, False, TextWithDict, binary_type)
        assert [gc.is_tracked(item) for item in items] == [True, True]
        assert items[0].data == "t" and items[1].data == b"b" * 300
    # an untracked record is still freed like any other: its payload loses the record's reference
    items, _ = kernels.FrameDecoder("server").feed_messages(stream, False, Text, Binary)
    payload = items[1].data
    held = sys.getrefcount(payload)
    del items
    assert sys.getrefcount(payload) == held - 1


@pytest.mark.parametrize("bad", [b"\xff", b"\xed\xa0\x80", b"\xc0\xaf", b"ab\xf4\x90\x80\x80"])
def test_invalid_utf8_is_1007_with_what_came_before(kernels: ModuleType, bad: bytes) -> None:
    ping = kernels.encode_frame(9, b"p", mask=KEY)
    good = kernels.encode_frame(2, b"ok", mask=KEY)
    stream = good + ping + kernels.encode_frame(1, bad, mask=KEY) + good
    decoder = kernels.FrameDecoder("server")
    with pytest.raises(ProtocolError) as info:
        decoder.feed_messages(stream, False, Text, Binary)
    assert info.value.close_code == 1007
    assert str(info.value) == "invalid UTF-8 in text message"
    assert as_comparable(info.value.frames) == [Binary(b"ok"), ("frame", 9, b"p", True, False)]
    with pytest.raises(ProtocolError) as again:  # the decoder stays failed, as after any violation
        decoder.feed_messages(good, False, Text, Binary)
    assert again.value.close_code == 1007


def test_a_frame_level_violation_keeps_the_records_before_it(kernels: ModuleType) -> None:
    stream = kernels.encode_frame(1, b"one", mask=KEY) + b"\x83\x80" + KEY  # reserved opcode 3
    with pytest.raises(ProtocolError) as info:
        kernels.FrameDecoder("server").feed_messages(stream, False, Text, Binary)
    assert info.value.close_code == 1002
    assert info.value.frames == [Text("one")]


def test_record_types_must_be_classes_with_a_data_slot(kernels: ModuleType) -> None:
    decoder = kernels.FrameDecoder("server")
    with pytest.raises(TypeError):
        decoder.feed_messages(b"", False, Text(""), Binary)
    with pytest.raises(KeyError):
        decoder.feed_messages(b"", False, int, Binary)


@dataclass(frozen=True, slots=True)
class FinalText:
    data: str
    final: bool = False


@dataclass(frozen=True, slots=True)
class FinalBinary:
    data: bytes
    final: bool = False


def test_record_types_may_change_between_calls(kernels: ModuleType) -> None:
    """The slots are looked up once per pair of types and kept: a call with other types uses those, a
    failed lookup leaves nothing half-cached, and the check that they are classes still runs."""
    decoder = kernels.FrameDecoder("server")
    text, binary = kernels.encode_frame(1, b"t", mask=KEY), kernels.encode_frame(2, b"b", mask=KEY)
    assert decoder.feed_messages(text + binary, False, Text, Binary) == ([Text("t"), Binary(b"b")], 0)
    assert decoder.feed_messages(text + binary, False, FinalText, FinalBinary) == (
        [FinalText("t", True), FinalBinary(b"b", True)],
        0,
    )
    assert decoder.feed_messages(text, False, Text, FinalBinary) == ([Text("t")], 0)
    with pytest.raises(KeyError):
        decoder.feed_messages(text, False, Text, int)
    with pytest.raises(TypeError):
        decoder.feed_messages(text, False, Text, Binary(b""))
    items, left = decoder.feed_messages(binary + text, False, Text, Binary)
    assert (items, left) == ([Binary(b"b"), Text("t")], 0)
    assert [type(item) for item in items] == [Binary, Text]


# --------------------------------------------------------------------------- FrameQueue


class Queue:
    """A FrameQueue subclass recording what its slow path was asked, per backend."""

    @staticmethod
    def make(kernels: ModuleType, fast: int) -> object:
        class Recorder(kernels.FrameQueue):  # type: ignore[misc,name-defined]
            def __init__(self) -> None:
                super().__init__()
                self.slow: list = []

            def _send_slow(self, opcode: int, data: object) -> None:
                self.slow.append((opcode, data))

        queue = Recorder()
        queue._fast_send = fast
        return queue


def test_a_bare_frame_queue_has_no_slow_path(kernels: ModuleType) -> None:
    queue = kernels.FrameQueue()
    assert queue.data_to_send() == b"" and queue.data_to_send_buffers() == []
    with pytest.raises(NotImplementedError):
        queue.send_text("x")
    with pytest.raises(NotImplementedError):
        queue.send_binary(b"x")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536])
def test_server_frames_are_encode_frame_s(kernels: ModuleType, size: int) -> None:
    queue = Queue.make(kernels, 1)
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    queue.send_binary(payload)
    queue.send_binary(bytearray(payload))
    queue.send_text("é" * (size // 2))
    expected = kernels.encode_frame(2, payload) * 2 + kernels.encode_frame(1, ("é" * (size // 2)).encode())
    assert queue.data_to_send() == expected
    assert queue.slow == []


def test_large_server_bytes_are_queued_beside_their_header(kernels: ModuleType) -> None:
    queue = Queue.make(kernels, 1)
    payload = bytes(kernels_zero_copy_min(kernels))
    queue.send_binary(payload)
    buffers = queue.data_to_send_buffers()
    assert buffers[0] == kernels.encode_frame(2, b"")[:1] + b"\x7e" + len(payload).to_bytes(2, "big")
    assert buffers[1] is payload


def kernels_zero_copy_min(kernels: ModuleType) -> int:
    return kernels.ZERO_COPY_MIN


@pytest.mark.parametrize("size", [0, 16, 1024, 70000])
def test_client_frames_are_masked_with_pooled_keys(kernels: ModuleType, size: int) -> None:
    queue = Queue.make(kernels, 2)
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    queue.send_binary(payload)
    queue.send_text("ok")
    wire = queue.data_to_send()
    frames = kernels.FrameDecoder("server", None).feed(wire)
    assert [(f.opcode, f.payload) for f in frames] == [(2, payload), (1, b"ok")]
    first_key = wire[2 + (2 if 126 <= size < 65536 else 8 if size >= 65536 else 0) :][:4]
    assert wire[1] & 0x80 and len(first_key) == 4


def test_what_the_fast_path_refuses_goes_to_the_slow_path(kernels: ModuleType) -> None:
    off = Queue.make(kernels, 0)
    off.send_text("a")
    off.send_binary(b"b")
    assert off.slow == [(1, "a"), (2, b"b")] and off.data_to_send() == b""
    on = Queue.make(kernels, 1)

    class Str(str):
        pass

    on.send_text(Str("sub"))  # not exactly str: the Connection's own path decides
    on.send_text(b"not text")  # type: ignore[arg-type]
    assert [(op, type(d)) for op, d in on.slow] == [(1, Str), (1, bytes)]
    on.send_binary(memoryview(b"abcdef")[::2])  # not contiguous: copied as encode_frame copies it
    assert on.data_to_send() == kernels.encode_frame(2, b"ace")
    with pytest.raises(TypeError) as info:
        on.send_binary("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError) as same:
        kernels.encode_frame(2, "text")
    assert str(info.value) == str(same.value)


def test_surrogates_in_text_raise_like_str_encode(kernels: ModuleType) -> None:
    queue = Queue.make(kernels, 1)
    with pytest.raises(UnicodeEncodeError):
        queue.send_text("\ud800")
    assert queue.data_to_send() == b""


# ---- a read that completes the frame held from the previous read ----


def _records_trace(kernels: ModuleType, chunks: list[bytes]) -> list:
    """feed_messages chunk by chunk as the Connection calls it (merging continuations), comparable."""
    decoder = kernels.FrameDecoder("server", None, merge_continuations=True)
    out: list = []
    inside = False
    for chunk in chunks:
        items, _ = decoder.feed_messages(chunk, inside, Text, Binary)
        out.append(as_comparable(items))
        for item in items:
            if isinstance(item, kernels.Frame) and item.opcode in (0, 1, 2):
                inside = not item.fin
    return out


WHOLE = b"\x81\xfe\x01\x2c" + KEY  # the header of a 300-byte masked text frame: complete at cut 8


@pytest.mark.parametrize("cut", [3, 7, 8, 40, 299, 308 + 5, 308 + 8])
def test_a_frame_completed_from_the_store_then_the_rest_of_the_read(pure: ModuleType, compiled: ModuleType, cut: int):
    """The compiled decoder copies only the missing bytes of a held frame and parses the rest of the read
    where it is: the records and frames must be those of the pure twin, which joins the whole read to what
    it holds. The held frame is a whole message (a record) or the first frame of a fragmented message; the
    continuations after it in the read merge into that first frame (never into a record)."""
    whole = pure.encode_frame(1, "é".encode() * 150, mask=KEY)
    assert whole.startswith(WHOLE) and len(whole) == 308
    first = pure.encode_frame(2, b"a" * 10, fin=False, mask=KEY)
    more = pure.encode_frame(0, b"b" * 5, fin=False, mask=KEY) + pure.encode_frame(0, b"c", mask=KEY)
    tail = pure.encode_frame(2, b"x" * 200, mask=KEY)
    stream = whole + first + more + tail
    end = len(whole) + len(first) + len(more)
    chunks = [stream[:cut], stream[cut:end], stream[end:-50], stream[-50:]]
    trace = _records_trace(compiled, chunks)
    assert trace == _records_trace(pure, chunks)
    flat = [item for step in trace for item in step]
    assert flat[0] == Text("é" * 150) and flat[-1] == Binary(b"x" * 200)
    assert Binary(b"a" * 10 + b"b" * 5 + b"c") in flat  # merged, then whole: a record


def test_invalid_utf8_in_a_frame_completed_from_the_store(kernels: ModuleType) -> None:
    """1007 from the frame the store completes: what came before is kept, the decoder stays failed, and the
    read's buffer is released (a bytearray still held would refuse to resize)."""
    good = kernels.encode_frame(2, b"ok", mask=KEY)
    bad = kernels.encode_frame(1, b"ab\xff" * 20, mask=KEY)
    decoder = kernels.FrameDecoder("server", None, merge_continuations=True)
    items, _ = decoder.feed_messages(good + bad[:10], False, Text, Binary)
    assert items == [Binary(b"ok")]
    rest = bytearray(bad[10:] + good)
    with pytest.raises(ProtocolError) as info:
        decoder.feed_messages(rest, False, Text, Binary)
    assert info.value.close_code == 1007 and info.value.frames == []
    rest.extend(b"more")  # BufferError if the decoder kept the buffer exported
    with pytest.raises(ProtocolError):
        decoder.feed_messages(good, False, Text, Binary)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.sampled_from([0, 1, 5, 125, 126, 300, 5000, 70000]), min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=1, max_value=200_000), max_size=6),
)
def test_reads_cut_anywhere_give_the_same_records_on_both_backends(pure: ModuleType, compiled: ModuleType, sizes, cuts):
    stream = b"".join(
        pure.encode_frame(1 + i % 2, (b"z" * size) if i % 2 else ("\u00e9" * (size // 2)).encode(), mask=KEY)
        for i, size in enumerate(sizes)
    )
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    chunks = [stream[a:b] for a, b in itertools.pairwise(points)]
    assert _records_trace(compiled, chunks) == _records_trace(pure, chunks)


@pytest.mark.parametrize("bits", [16, 63])
def test_a_held_frame_longer_than_any_read_stays_held(pure: ModuleType, compiled: ModuleType, bits: int) -> None:
    """A held frame whose declared length is far beyond the next read (up to 2**63 - 1 without a limit):
    what it lacks must not be computed so that it wraps around; the read joins the store as before."""
    length = (1 << bits) - 1
    head = (b"\x82\xfe" + length.to_bytes(2, "big")) if bits == 16 else (b"\x82\xff" + length.to_bytes(8, "big"))
    for kernels in (pure, compiled):
        decoder = kernels.FrameDecoder("server", None)
        assert decoder.feed(head[:3]) == []
        assert decoder.feed(head[3:] + KEY + b"abc") == []
        assert decoder.feed(b"x" * 5000) == []
        assert decoder.feed(bytearray(b"y" * 10)) == []
        assert decoder.partial_header() == 0x82


# --------------------------------------------------------------------------- found by differential fuzzing


@pytest.mark.parametrize("mask", [4, [1, 2, 3, 4], (1, 2, 3, 4), "abcd"])
def test_encode_frame_takes_only_a_bytes_like_mask(kernels: ModuleType, mask: object) -> None:
    """An int would make bytes(4), a zero key, and a list a key of its items: both backends refuse any
    mask that is not a bytes-like object (or None, False, True), with the same TypeError."""
    with pytest.raises(TypeError, match="bytes-like object is required"):
        kernels.encode_frame(2, b"hi", mask=mask)
    assert kernels.encode_frame(2, b"hi", mask=bytearray(b"\x00\x00\x00\x00")) == b"\x82\x82\x00\x00\x00\x00hi"


def test_utf8_validator_counts_bytes_of_buffers_with_wider_items(kernels: ModuleType) -> None:
    """Buffers whose items are 2 bytes (array('H'), a cast memoryview) are validated as their bytes."""
    import array

    validator = kernels.Utf8Validator()
    assert validator.feed(array.array("H", b"ab\xed\xa0")) is False  # a surrogate's first bytes
    validator = kernels.Utf8Validator()
    assert validator.feed(memoryview(b"ab\xe2\x82").cast("H")) is True  # the start of the euro sign
    assert validator.feed(b"\xac") is True
    assert validator.finish() is True


def test_frame_decoder_refuses_a_nan_limit(kernels: ModuleType) -> None:
    with pytest.raises(ValueError, match="max_frame_size must be >= 0 or None"):
        kernels.FrameDecoder("server", float("nan"))
    assert kernels.FrameDecoder("server", float("inf")).max_frame_size == float("inf")
