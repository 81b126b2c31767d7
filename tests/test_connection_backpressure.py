"""Connection.hold_pongs/release_pongs: automatic Pongs under backpressure (RFC 6455 section 5.5.3)."""

from __future__ import annotations

from wscodec import Connection, FrameDecoder, encode_frame
from wscodec.connection import PING_FLOOD_LIMIT

KEY = b"\x0a\x0b\x0c\x0d"


def server() -> Connection:
    return Connection.established("server")


def ping(payload: bytes) -> bytes:
    return encode_frame(9, payload, mask=KEY)


def sent_frames(conn: Connection) -> list[tuple[int, bytes]]:
    return [(f.opcode, bytes(f.payload)) for f in FrameDecoder("client", 1 << 20).feed(conn.data_to_send())]


def test_pings_are_answered_at_once_by_default() -> None:
    conn = server()
    conn.receive_data(ping(b"a") + ping(b"b"))
    assert sent_frames(conn) == [(10, b"a"), (10, b"b")]


def test_held_pongs_answer_only_the_latest_ping_once_released() -> None:
    conn = server()
    conn.hold_pongs()
    events = conn.receive_data(ping(b"1") + ping(b"2") + ping(b"3"))
    assert [type(e).__name__ for e in events] == ["Ping", "Ping", "Ping"]  # every Ping is still reported
    assert conn.data_to_send() == b""
    conn.receive_data(ping(b"4"))
    assert conn.data_to_send() == b""
    conn.release_pongs()
    assert sent_frames(conn) == [(10, b"4")]
    conn.release_pongs()  # nothing held any more
    assert conn.data_to_send() == b""
    conn.receive_data(ping(b"5"))  # released: answered at once again
    assert sent_frames(conn) == [(10, b"5")]


def test_flooded_after_more_than_the_limit_of_held_pings() -> None:
    conn = server()
    conn.hold_pongs()
    conn.receive_data(b"".join(ping(bytes([i])) for i in range(PING_FLOOD_LIMIT)))
    assert not conn.flooded
    conn.receive_data(ping(b"one more"))
    assert conn.flooded
    conn.release_pongs()
    assert not conn.flooded
    assert sent_frames(conn) == [(10, b"one more")]


def test_a_held_pong_goes_out_before_our_close() -> None:
    conn = server()
    conn.hold_pongs()
    conn.receive_data(ping(b"p"))
    conn.close(1001, "bye")
    frames = sent_frames(conn)
    assert frames[0] == (10, b"p")
    assert frames[1][0] == 8 and frames[1][1][:2] == (1001).to_bytes(2, "big")


def test_a_held_pong_goes_out_before_the_close_reply() -> None:
    conn = server()
    conn.hold_pongs()
    conn.receive_data(ping(b"p") + encode_frame(8, (1000).to_bytes(2, "big"), mask=KEY))
    assert [f[0] for f in sent_frames(conn)] == [10, 8]


def test_a_held_pong_goes_out_before_a_failure_close() -> None:
    conn = server()
    conn.hold_pongs()
    conn.receive_data(ping(b"p") + encode_frame(1, b"\xff", mask=KEY))  # invalid UTF-8: 1007
    frames = sent_frames(conn)
    assert frames[0] == (10, b"p")
    assert frames[1][0] == 8 and frames[1][1][:2] == (1007).to_bytes(2, "big")


def test_a_pong_held_after_our_close_goes_out_once_released() -> None:
    """RFC 6455 section 5.5.2: a Ping that arrives while we wait for the peer's Close is still answered;
    under backpressure its Pong waits, like any other, for the transport to drain."""
    conn = server()
    conn.close()
    conn.data_to_send()
    conn.hold_pongs()
    conn.receive_data(ping(b"late") + ping(b"later"))
    assert conn.data_to_send() == b""
    conn.release_pongs()
    assert sent_frames(conn) == [(10, b"later")]
