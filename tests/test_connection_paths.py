"""Edges of the sans-I/O Connection that the main module leaves out: input while the server application is
still deciding, EOF inside a fragmented message, and what may (not) be sent once a Close has gone either way.

Each case states the RFC 6455 rule it checks; the expected bytes come from the RFC, not from the code.
"""

from __future__ import annotations

import pytest

from wscodec import ConnectionClosed, FrameDecoder, encode_frame
from wscodec.connection import CLOSED, CLOSING, OPEN, Connection
from wscodec.events import (
    BinaryFragment,
    BinaryMessage,
    Closed,
    CloseReceived,
    Ping,
    ProtocolViolation,
    Request,
    TextFragment,
    TextMessage,
)

MASK = b"\x01\x02\x03\x04"
UPGRADE = (
    b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    return encode_frame(opcode, payload, fin=fin, mask=MASK)


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


def frames_out(conn: Connection) -> list:
    """What a server Connection queued, decoded as the client would decode it."""
    return FrameDecoder("client", None).feed(conn.data_to_send())


def events_of(events: list, kind: type) -> list:
    return [e for e in events if type(e) is kind]


# --------------------------------------------------------------------------- the server application deciding


def test_frames_arriving_while_the_application_decides_are_delivered_after_accept() -> None:
    """A client may pipeline its first frames behind the request (RFC 6455 section 4.1 lets it send as
    soon as it has the 101): they wait for accept() and come out, in order, right after it."""
    conn = Connection("server")
    events = conn.receive_data(UPGRADE)
    assert [type(e) for e in events] == [Request]
    # Frames arrive before the application has decided: nothing may come out of them yet.
    early = client_frame(1, b"first") + client_frame(2, b"second")
    assert conn.receive_data(early[:7]) == []
    assert conn.receive_data(early[7:]) == []
    after = conn.accept()
    assert conn.state is OPEN
    assert conn.data_to_send().startswith(b"HTTP/1.1 101 ")
    assert after == [TextMessage("first"), BinaryMessage(b"second")]


def test_eof_while_the_application_decides_closes_1006() -> None:
    """The client left before accept()/reject(): the connection is CLOSED, abnormally (1006), and there is
    nothing to answer."""
    conn = Connection("server")
    assert [type(e) for e in conn.receive_data(UPGRADE)] == [Request]
    events = conn.receive_data(b"")
    assert events == [Closed(1006, "", was_clean=False)]
    assert conn.state is CLOSED
    assert conn.close_code == 1006
    assert conn.receive_data(client_frame(1, b"late")) == []


def test_eof_inside_the_request_head_fails_the_handshake() -> None:
    conn = Connection("server")
    assert conn.receive_data(UPGRADE[:30]) == []
    events = conn.receive_data(b"")
    assert [type(e) for e in events] == [ProtocolViolation, Closed]
    assert events[-1].code == 1006 and not events[-1].was_clean
    assert conn.state is CLOSED


# --------------------------------------------------------------------------- EOF inside a fragmented message


@pytest.mark.parametrize("stream_messages", [False, True], ids=["whole", "streamed"])
def test_eof_inside_a_fragmented_message_is_an_abnormal_close(stream_messages: bool) -> None:
    """TCP ends after the first fragment: no message is delivered whole, the close is 1006 (RFC 6455
    section 7.1.5: no Close frame was received)."""
    conn = Connection.established("server", stream_messages=stream_messages)
    events = conn.receive_data(client_frame(2, b"part one", fin=False))
    if stream_messages:
        assert events == [BinaryFragment(b"part one", False)]
    else:
        assert events == []
    events = conn.receive_data(b"")
    assert events == [Closed(1006, "", was_clean=False)]
    assert not any(isinstance(e, (BinaryMessage, TextMessage)) for e in events)
    assert conn.state is CLOSED and conn.close_code == 1006
    assert conn.data_to_send() == b""  # no one left to send a Close to


# --------------------------------------------------------------------------- after a Close


def test_frames_after_the_peers_close_are_ignored() -> None:
    """RFC 6455 section 5.5.1: after sending a Close, the peer sends nothing more; whatever comes anyway
    (a message, a Ping, even garbage) is not delivered and is not answered."""
    conn = Connection.established("server")
    tail = client_frame(1, b"too late") + client_frame(9, b"ping?") + b"\xff\xff\xff"
    events = conn.receive_data(client_frame(8, close_payload(1000, b"bye")) + tail)
    assert events == [CloseReceived(1000, "bye"), Closed(1000, "bye", was_clean=True)]
    out = frames_out(conn)
    assert [(f.opcode, f.payload) for f in out] == [(8, close_payload(1000, b"bye"))]  # the echo, nothing else
    assert conn.receive_data(client_frame(1, b"later still")) == []
    assert conn.data_to_send() == b""


@pytest.mark.parametrize("role", ["server", "client"])
def test_a_ping_after_our_close_is_answered_until_the_peers_close(role: str) -> None:
    """RFC 6455 section 5.5.2: a Ping MUST be answered "unless it already received a Close frame"; our own
    Close forbids only data frames after it (5.5.1). So a Ping arriving while we wait for the peer's Close
    gets its Pong, after our Close; one arriving after the peer's Close gets none."""
    conn = Connection.established(role)
    peer = "client" if role == "server" else "server"
    mask = MASK if role == "server" else None
    conn.close(1000, "done")
    assert [f.opcode for f in FrameDecoder(peer, None).feed(conn.data_to_send())] == [8]
    assert conn.state is CLOSING
    events = conn.receive_data(encode_frame(9, b"are you there", mask=mask))
    assert events == [Ping(b"are you there")]
    pongs = FrameDecoder(peer, None).feed(conn.data_to_send())
    assert [(f.opcode, f.payload) for f in pongs] == [(10, b"are you there")]
    events = conn.receive_data(
        encode_frame(8, close_payload(1000), mask=mask) + encode_frame(9, b"too late", mask=mask)
    )
    assert events[-1] == Closed(1000, "", was_clean=True)
    assert conn.data_to_send() == b""  # no Pong after the peer's Close, and no second Close either


@pytest.mark.parametrize(("code", "reason", "expected"), [(1000, "done", 1000), (4001, "bye", 4001), (None, "", 1005)])
def test_sending_while_our_close_waits_for_an_answer_reports_our_close(code, reason, expected) -> None:
    """After close() no data frame may go out (RFC 6455 section 5.5.1): a send raises ConnectionClosed with
    the code and reason of the clean close under way, not an abnormal 1006."""
    conn = Connection.established("server")
    conn.close(code, reason)
    conn.data_to_send()
    for send in (lambda: conn.send_text("late"), lambda: conn.send_binary(b"late")):
        with pytest.raises(ConnectionClosed) as info:
            send()
        assert (info.value.code, info.value.reason, info.value.was_clean) == (expected, reason, True)
    assert conn.data_to_send() == b""


@pytest.mark.parametrize("role", ["server", "client"])
def test_control_frames_may_follow_our_close(role: str) -> None:
    """RFC 6455 section 5.5.1 ends only data frames with our Close: a Ping or Pong still goes out while the
    peer's answer is awaited (as websockets' sans-I/O protocol allows), within the 125-byte limit, and
    once the peer's Close is in, nothing goes out."""
    conn = Connection.established(role)
    conn.close(1000)
    conn.data_to_send()
    conn.send_ping(b"still there?")
    conn.send_pong(b"beat")
    decoder = FrameDecoder("client" if role == "server" else "server")
    assert [(f.opcode, f.payload) for f in decoder.feed(conn.data_to_send())] == [(9, b"still there?"), (10, b"beat")]
    with pytest.raises(ValueError):
        conn.send_ping(b"x" * 2000)
    mask = None if role == "client" else MASK
    assert [type(e) for e in conn.receive_data(encode_frame(8, close_payload(1000), mask=mask))] == [
        CloseReceived,
        Closed,
    ]
    for send in (conn.send_ping, conn.send_pong):
        with pytest.raises(ConnectionClosed):
            send(b"late")
    assert conn.data_to_send() == b""


@pytest.mark.parametrize("stream_messages", [False, True])
def test_drop_messages_checks_data_but_returns_only_control_events(stream_messages: bool) -> None:
    """drop_messages (for an I/O layer whose application closed with messages unread): data is still
    checked, here a bad UTF-8 byte still fails with 1007, but not returned; Pings are answered and the peer's
    Close completes the handshake. Set while OPEN, it also keeps the one-step receive path from taking
    the read."""
    conn = Connection.established("server", stream_messages=stream_messages)
    conn.drop_messages = True
    assert conn.receive_data(client_frame(1, b"dropped") + client_frame(2, b"also", fin=False)) == []
    assert conn.receive_data(client_frame(0, b" dropped") + client_frame(9, b"p")) == [Ping(b"p")]
    assert [(f.opcode, f.payload) for f in frames_out(conn)] == [(10, b"p")]
    conn.close(1000, "done")
    conn.data_to_send()
    events = conn.receive_data(client_frame(1, b"late") + client_frame(8, close_payload(1000)))
    assert [type(e) for e in events] == [CloseReceived, Closed]
    bad = Connection.established("server", stream_messages=stream_messages)
    bad.drop_messages = True
    events = bad.receive_data(client_frame(1, b"\xff"))
    assert [type(e) for e in events] == [ProtocolViolation, Closed] and events[0].code == 1007
    conn.drop_messages = False
    fresh = Connection.established("server", stream_messages=stream_messages)
    fresh.drop_messages = True
    fresh.drop_messages = False
    assert [type(e) for e in fresh.receive_data(client_frame(1, b"kept"))] == [
        TextFragment if stream_messages else TextMessage
    ]


def test_a_protocol_error_while_closing_sends_no_second_close() -> None:
    """A peer that breaks the protocol after our Close fails the connection, but only one Close frame is
    ever sent (RFC 6455 section 5.5.1)."""
    conn = Connection.established("server")
    conn.close(1001, "going away")
    first = frames_out(conn)
    assert [(f.opcode, f.payload[:2]) for f in first] == [(8, (1001).to_bytes(2, "big"))]
    # Unmasked frame from a client: a protocol error (RFC 6455 section 5.1).
    events = conn.receive_data(encode_frame(1, b"unmasked"))
    assert [type(e) for e in events] == [ProtocolViolation, Closed]
    assert events[-1].code == 1006 and not events[-1].was_clean
    assert conn.state is CLOSED
    assert conn.data_to_send() == b""


def test_invalid_utf8_after_our_close_sends_no_second_close() -> None:
    conn = Connection.established("server")
    conn.close(1000, "")
    conn.data_to_send()
    events = conn.receive_data(client_frame(1, b"\xc3\x28"))
    assert [type(e) for e in events] == [ProtocolViolation, Closed]
    assert conn.data_to_send() == b""


# --------------------------------------------------------------------------- API misuse and our own failures


@pytest.mark.parametrize(
    "options",
    [{"role": "peer"}, {"role": "server", "max_message_size": -1}, {"role": "server", "fragment_size": 0}],
    ids=["role", "max_message_size", "fragment_size"],
)
def test_invalid_options_are_refused(options: dict) -> None:
    with pytest.raises(ValueError):
        Connection(**options)


def test_accept_and_reject_only_where_they_make_sense() -> None:
    client = Connection("client", host="example.com", path="/")
    with pytest.raises(RuntimeError, match="server"):
        client.accept()
    with pytest.raises(RuntimeError, match="server"):
        client.reject(403)
    with pytest.raises(RuntimeError, match="received a request"):
        Connection("server").accept()  # no request yet
    server = Connection("server")
    server.receive_data(UPGRADE)
    server.accept()
    with pytest.raises(RuntimeError, match="already over"):
        server.accept()
    with pytest.raises(RuntimeError, match="already over"):
        server.reject(403)
    rejected = Connection("server")
    rejected.receive_data(UPGRADE)
    with pytest.raises(RuntimeError, match="reject"):
        rejected.close()  # before the handshake a server answers with reject()


def test_unsolicited_pong_and_close_once() -> None:
    conn = Connection.established("server")
    conn.send_pong(b"heartbeat")  # RFC 6455 section 5.5.3: a unidirectional heartbeat
    conn.close(1000, "once")
    conn.close(1001, "twice")  # a Close was sent: nothing more
    assert [(f.opcode, f.payload) for f in frames_out(conn)] == [
        (10, b"heartbeat"),
        (8, close_payload(1000, b"once")),
    ]


def test_fail_sends_one_close_then_is_closed() -> None:
    conn = Connection.established("server")
    conn.fail(1011, "internal error")
    assert conn.state is CLOSED and conn.close_code == 1006
    conn.fail(1011, "again")  # already CLOSED: nothing
    out = frames_out(conn)
    assert [(f.opcode, f.payload) for f in out] == [(8, close_payload(1011, b"internal error"))]
    closing = Connection.established("server")
    closing.close(1000)
    closing.data_to_send()
    closing.fail(1011)  # after our Close: no second one
    assert closing.data_to_send() == b"" and closing.state is CLOSED


def test_eof_inside_the_response_head_fails_the_client_handshake() -> None:
    client = Connection("client", host="example.com", path="/")
    client.data_to_send()
    assert client.receive_data(b"HTTP/1.1 101 Switching Protocols\r\nUpgr") == []
    events = client.receive_data(b"")
    assert [type(e) for e in events] == [ProtocolViolation, Closed]
    assert events[-1].code == 1006 and client.state is CLOSED


# --------------------------------------------------------------------------- stream_messages edges


def test_streamed_fragments_keep_their_place_around_control_frames() -> None:
    """RFC 6455 section 5.4: control frames MAY be injected in the middle of a fragmented message. Streamed,
    each piece comes out where it was, between the Pings, and each Ping is answered with its own payload."""
    conn = Connection.established("server", stream_messages=True)
    events = conn.receive_data(
        client_frame(2, b"a", fin=False)
        + client_frame(9, b"p1")
        + client_frame(0, b"b", fin=False)
        + client_frame(9, b"p2")
        + client_frame(0, b"c")
    )
    assert events == [
        BinaryFragment(b"a", False),
        Ping(b"p1"),
        BinaryFragment(b"b", False),
        Ping(b"p2"),
        BinaryFragment(b"c", True),
    ]
    assert [(f.opcode, f.payload) for f in frames_out(conn)] == [(10, b"p1"), (10, b"p2")]


def test_a_streamed_fragment_before_a_protocol_error_is_delivered_first() -> None:
    """What the peer sent correctly is never lost: the piece read before the bad frame comes out, then the
    violation (RFC 6455 section 5.4: a new data frame inside a fragmented message) and a 1002 Close."""
    conn = Connection.established("server", stream_messages=True)
    assert conn.fragment_size is None
    events = conn.receive_data(client_frame(1, "d\u00e9".encode(), fin=False) + client_frame(1, b"x"))
    assert events[0] == TextFragment("d\u00e9", False)
    assert type(events[1]) is ProtocolViolation and events[1].code == 1002
    close = frames_out(conn)[-1]
    assert close.opcode == 8 and int.from_bytes(close.payload[:2], "big") == 1002
