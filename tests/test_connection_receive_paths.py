"""``Connection.receive_data`` has two paths: the kernels' one step (``FrameQueue.receive_data``), which takes a
read of whole messages in the common state, and ``Connection._receive_slow`` for everything else. Each state
that leaves the common case must send the next read down the slow path, and the common case must come back
when it ends; both backends, same events."""

from __future__ import annotations

import pytest

from wscodec import encode_frame
from wscodec.connection import CLOSED, CLOSING, OPEN, Connection
from wscodec.events import (
    BinaryFragment,
    BinaryMessage,
    Closed,
    CloseReceived,
    ProtocolViolation,
    TextFragment,
    TextMessage,
)


def _masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    return encode_frame(opcode, payload, fin=fin, mask=b"\x01\x02\x03\x04")


def _fast(conn: Connection) -> bool:
    return conn._fast_receive is not None


def test_the_one_step_path_stops_inside_a_fragmented_message_and_comes_back_after_it() -> None:
    conn = Connection.established("server")
    assert _fast(conn)
    events = conn.receive_data(_masked(1, b"one"))
    assert [(type(e), e.data) for e in events] == [(TextMessage, "one")]
    events = conn.receive_data(_masked(2, b"par", fin=False))
    assert events == [] and not _fast(conn)  # a message is open: the next read is the Connection's
    events = conn.receive_data(_masked(0, b"ts") + _masked(2, b"next"))
    assert [(type(e), e.data) for e in events] == [(BinaryMessage, b"parts"), (BinaryMessage, b"next")]
    assert _fast(conn)
    assert [e.data for e in conn.receive_data(_masked(1, b"again"))] == ["again"]


def test_a_text_frame_checked_in_part_is_finished_by_either_path() -> None:
    conn = Connection.established("server")
    frame = _masked(1, "héllo wörld".encode())
    events = conn.receive_data(frame[:9])  # header and a few payload bytes: checked as they arrive
    assert events == [] and not _fast(conn)
    events = conn.receive_data(frame[9:])
    assert [e.data for e in events] == ["héllo wörld"] and _fast(conn)
    bad = _masked(1, b"ok \xff")
    events = conn.receive_data(bad[:-1])  # the start is valid so far
    assert events == []
    events = conn.receive_data(bad[-1:])
    assert [type(e) for e in events] == [ProtocolViolation, Closed] and events[0].error.close_code == 1007
    assert conn.state is CLOSED and not _fast(conn)


def test_after_our_close_frames_still_arrive_then_the_peer_close_ends_it() -> None:
    conn = Connection.established("server")
    conn.close(1000, "bye")
    assert conn.state is CLOSING and not _fast(conn)
    events = conn.receive_data(_masked(1, b"late") + _masked(8, b"\x03\xe8"))
    assert [type(e) for e in events] == [TextMessage, CloseReceived, Closed]
    assert events[0].data == "late" and conn.state is CLOSED
    assert conn.receive_data(_masked(1, b"after")) == []


@pytest.mark.parametrize("how", ["fail", "peer close", "eof", "violation"])
def test_nothing_is_delivered_once_closed(how: str) -> None:
    conn = Connection.established("server")
    if how == "fail":
        conn.fail(1011)
    elif how == "peer close":
        conn.receive_data(_masked(8, b"\x03\xe8"))
    elif how == "eof":
        conn.receive_data(b"")
    else:
        conn.receive_data(encode_frame(1, b"unmasked"))  # a server requires masked frames: 1002
    assert conn.state is CLOSED and not _fast(conn)
    assert conn.receive_data(_masked(1, b"x") + _masked(2, b"y")) == []


def test_a_held_violation_stops_delivery_until_it_is_failed() -> None:
    conn = Connection.established("server", defer_errors=True)
    events = conn.receive_data(_masked(1, b"before") + encode_frame(2, b"unmasked"))
    assert [e.data for e in events] == ["before"] and conn.pending_error is not None
    assert conn.state is OPEN and not _fast(conn)
    assert conn.receive_data(_masked(1, b"ignored")) == []
    assert [type(e) for e in conn.fail_pending()] == [ProtocolViolation, Closed]


def test_stream_messages_switched_after_opening_changes_the_events() -> None:
    conn = Connection.established("server")
    assert [type(e) for e in conn.receive_data(_masked(1, b"a"))] == [TextMessage]
    conn.stream_messages = True
    events = conn.receive_data(_masked(1, b"b") + _masked(2, b"c"))
    assert [(type(e), e.data, e.final) for e in events] == [(TextFragment, "b", True), (BinaryFragment, b"c", True)]
    conn.stream_messages = False
    assert [type(e) for e in conn.receive_data(_masked(2, b"d"))] == [BinaryMessage]


def test_a_frame_split_across_reads_then_whole_messages() -> None:
    """A partial header leaves the read to the Connection (its early checks), then the common case returns."""
    conn = Connection.established("server", max_message_size=100)
    events = conn.receive_data(_masked(2, b"z" * 50)[:1])
    assert events == []
    events = conn.receive_data(_masked(2, b"z" * 50)[1:] + _masked(1, b"w"))
    assert [e.data for e in events] == [b"z" * 50, "w"] and _fast(conn)
    events = conn.receive_data(_masked(2, b"z" * 200)[:8])  # over max_message_size: refused on its header
    assert [type(e) for e in events] == [ProtocolViolation, Closed] and events[0].error.close_code == 1009


FIRST_PART = _masked(1, b"a" * 60, fin=False)


@pytest.mark.parametrize("role", ["server", "client"])
@pytest.mark.parametrize("cut", [None, 2, 6, 7, 20])
def test_a_continuation_past_max_message_size_is_1009_however_the_bytes_are_split(role: str, cut: int | None) -> None:
    """A message both too large and not UTF-8: 1009 from the continuation's header (as websockets), not 1007
    when the read happens to end inside its payload (where its first bytes are checked as they arrive)."""
    conn = Connection.established(role, max_message_size=100)
    mask = b"\x01\x02\x03\x04" if role == "server" else None  # (what the peer sends: masked by a client only)
    first = encode_frame(1, b"a" * 60, fin=False, mask=mask)
    data = first + encode_frame(0, b"\xff" + b"b" * 59, mask=mask)
    reads = [data] if cut is None else [data[: len(first) + cut], data[len(first) + cut :]]
    events = [event for read in reads for event in conn.receive_data(read)]
    violations = [event for event in events if isinstance(event, ProtocolViolation)]
    assert len(violations) == 1 and violations[0].error.close_code == 1009, events
    assert conn.state is not OPEN


def test_a_continuation_past_max_message_size_fails_before_its_payload() -> None:
    conn = Connection.established("server", max_message_size=100)
    events = conn.receive_data(FIRST_PART + _masked(0, b"b" * 41)[:6])  # header only: 60 + 41 > 100
    assert [type(e) for e in events] == [ProtocolViolation, Closed] and events[0].error.close_code == 1009
    conn = Connection.established("server", max_message_size=100)
    events = conn.receive_data(FIRST_PART + _masked(0, b"b" * 40)[:6])  # exactly 100: goes on
    assert events == [] and conn.state is OPEN


def _contract_holds(conn: Connection) -> bool:
    """What the compiled asyncio hot path reads instead of ``state`` and ``pending_error`` (``_speedups.pxd``):
    either one-step flag set means OPEN, and the receive one also means no violation held."""
    if (conn._fast_send or conn._fast_receive is not None) and conn.state is not OPEN:
        return False
    return conn._fast_receive is None or conn.pending_error is None


@pytest.mark.parametrize("role", ["server", "client"])
def test_the_one_step_flags_are_set_only_while_open_and_no_violation_is_held(role: str) -> None:
    seen = []
    conn = Connection(role, host="127.0.0.1") if role == "client" else Connection(role)  # CONNECTING
    seen.append(_contract_holds(conn))
    conn = Connection.established(role)
    assert conn._fast_send and _fast(conn)  # the common case: both flags up
    seen.append(_contract_holds(conn))
    frame = encode_frame(1, b"hi", mask=b"\x01\x02\x03\x04" if role == "server" else None)
    conn.receive_data(frame)
    conn.close(1000, "bye")
    seen.append(_contract_holds(conn))
    assert conn.state is CLOSING and not conn._fast_send and not _fast(conn)
    conn.receive_data(encode_frame(8, b"\x03\xe8", mask=b"\x01\x02\x03\x04" if role == "server" else None))
    assert conn.state is CLOSED
    seen.append(_contract_holds(conn))
    held = Connection.established(role)
    held.defer_errors = True
    held.receive_data(frame + b"\x83\x80\x00\x00\x00\x00")  # a valid message, then a reserved opcode
    assert held.pending_error is not None and held.state is OPEN
    seen.append(_contract_holds(held))
    assert not _fast(held)
    held.fail_pending()
    seen.append(_contract_holds(held))
    failed = Connection.established(role)
    failed.fail(1011, "internal")
    seen.append(_contract_holds(failed))
    assert seen == [True] * 7


def test_a_decoder_of_another_type_gets_the_same_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled one step calls its own decoder's C methods only when the decoder is exactly that class; a
    subclass (its methods may be overridden) goes through the general path, with the same events."""
    from wscodec import connection as connection_module

    base = connection_module.FrameDecoder
    fed: list[int] = []

    class CountingDecoder(base):  # type: ignore[misc, valid-type]
        def feed_messages(self, data, in_message, text_type, binary_type):  # type: ignore[no-untyped-def]
            fed.append(len(data))
            return super().feed_messages(data, in_message, text_type, binary_type)

    monkeypatch.setattr(connection_module, "FrameDecoder", CountingDecoder)
    conn = Connection.established("server")
    assert type(conn._decoder) is CountingDecoder and _fast(conn)
    reads = [_masked(1, b"one") + _masked(2, b"two"), _masked(1, "é".encode())]
    events = [conn.receive_data(read) for read in reads]
    assert [[(type(e), e.data) for e in batch] for batch in events] == [
        [(TextMessage, "one"), (BinaryMessage, b"two")],
        [(TextMessage, "é")],
    ]
    assert fed == [len(read) for read in reads]  # the override ran for every read: no C shortcut around it
    bad = conn.receive_data(_masked(1, b"\xff"))
    assert [type(e) for e in bad] == [ProtocolViolation, Closed] and bad[0].error.close_code == 1007
