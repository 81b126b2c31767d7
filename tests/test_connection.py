"""The sans-I/O Connection: RFC 6455 sections 4-7 and RFC 7692 as seen from the state machine.

Frame-level cases start from ``Connection.established`` and feed frames built with ``encode_frame``; the
handshake and deflate cases wire a client and a server Connection back to back.
"""

from __future__ import annotations

import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wscodec import FrameDecoder, encode_frame
from wscodec.connection import CLOSED, CLOSING, CONNECTING, OPEN, ZERO_COPY_MIN, Connection
from wscodec.errors import ConnectionClosed
from wscodec.events import (
    BinaryFragment,
    BinaryMessage,
    Closed,
    CloseReceived,
    Ping,
    Pong,
    ProtocolViolation,
    Request,
    Response,
    TextFragment,
    TextMessage,
)
from wscodec.extensions import ClientPerMessageDeflate, ServerPerMessageDeflate

MASK = b"\x01\x02\x03\x04"


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False) -> bytes:
    """A frame as a client sends it (masked)."""
    return encode_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=MASK)


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


def sent_frames(conn: Connection) -> list:
    """The frames a server connection queued, decoded as a client would."""
    return FrameDecoder("client", None).feed(conn.data_to_send())


def sent_close_code(conn: Connection) -> int:
    frames = [f for f in sent_frames(conn) if f.opcode == 8]
    assert len(frames) == 1, frames
    return int.from_bytes(frames[0].payload[:2], "big")


def server(**options) -> Connection:
    return Connection.established("server", **options)


# --------------------------------------------------------------------------- section 4: handshake


def pair(client_options: dict | None = None, server_options: dict | None = None) -> tuple[Connection, Connection]:
    """A client and a server Connection that completed the opening handshake with each other."""
    client = Connection("client", host="example.com", path="/chat?x=1", **(client_options or {}))
    srv = Connection("server", **(server_options or {}))
    events = srv.receive_data(client.data_to_send())
    assert len(events) == 1 and isinstance(events[0], Request)
    assert events[0].path == "/chat?x=1"
    assert srv.state is CONNECTING
    assert srv.accept() == []
    assert srv.state is OPEN
    events = client.receive_data(srv.data_to_send())
    assert len(events) == 1 and isinstance(events[0], Response) and events[0].status_code == 101
    assert client.state is OPEN
    return client, srv


def pump(sender: Connection, receiver: Connection) -> list:
    return receiver.receive_data(sender.data_to_send())


def test_4_1_client_queues_request_at_once() -> None:
    client = Connection("client", host="example.com:8080", path="/ws")
    request = client.data_to_send()
    assert request.startswith(b"GET /ws HTTP/1.1\r\n")
    assert b"\r\nHost: example.com:8080\r\n" in request
    assert b"Sec-WebSocket-Version: 13\r\n" in request
    assert client.state is CONNECTING


def test_4_1_client_needs_host() -> None:
    with pytest.raises(ValueError):
        Connection("client")


def test_4_2_request_in_pieces_then_accept() -> None:
    client = Connection("client", host="h", subprotocols=["chat", "superchat"])
    srv = Connection("server", subprotocols=["superchat", "chat"])
    data = client.data_to_send()
    for i in range(len(data) - 1):
        assert srv.receive_data(data[i : i + 1]) == []
    (request,) = srv.receive_data(data[-1:])
    assert isinstance(request, Request)
    srv.accept()
    assert srv.subprotocol == "superchat"
    (response,) = client.receive_data(srv.data_to_send())
    assert isinstance(response, Response)
    assert client.subprotocol == "superchat"


def test_4_2_server_explicit_subprotocol_choice() -> None:
    client = Connection("client", host="h", subprotocols=["a", "b"])
    srv = Connection("server", subprotocols=["a", "b"])
    srv.receive_data(client.data_to_send())
    srv.accept(subprotocol="b")
    client.receive_data(srv.data_to_send())
    assert (srv.subprotocol, client.subprotocol) == ("b", "b")


def test_4_2_bad_request_gets_http_error_and_closes() -> None:
    srv = Connection("server")
    events = srv.receive_data(
        b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n"
    )
    assert isinstance(events[0], ProtocolViolation)
    assert isinstance(events[-1], Closed) and not events[-1].was_clean
    response = srv.data_to_send()
    assert response.startswith(b"HTTP/1.1 426 ")
    assert b"Sec-WebSocket-Version: 13" in response
    assert srv.state is CLOSED


def test_4_2_reject_with_any_status() -> None:
    client = Connection("client", host="h")
    srv = Connection("server")
    srv.receive_data(client.data_to_send())
    srv.reject(401, [("WWW-Authenticate", "Bearer")], b"who are you?")
    assert srv.state is CLOSED
    events = client.receive_data(srv.data_to_send())
    response = events[0]
    assert isinstance(response, Response)
    assert response.status_code == 401 and response.body == b"who are you?"
    assert isinstance(events[1], ProtocolViolation)
    assert getattr(events[1].error, "status_code", None) == 401
    assert client.state is CLOSED


def test_4_1_client_rejects_wrong_accept() -> None:
    client = Connection("client", host="h")
    client.data_to_send()
    events = client.receive_data(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    )
    assert isinstance(events[0], ProtocolViolation)
    assert "Accept" in str(events[0].error)
    assert client.state is CLOSED


def test_4_1_frames_right_after_101_are_not_lost() -> None:
    client = Connection("client", host="h")
    srv = Connection("server")
    srv.receive_data(client.data_to_send())
    srv.accept()
    srv.send_text("hello")
    srv.send_binary(b"\x00\x01")
    events = client.receive_data(srv.data_to_send())
    assert [type(e) for e in events] == [Response, TextMessage, BinaryMessage]
    assert events[1].data == "hello" and events[2].data == b"\x00\x01"


def test_4_1_eof_during_handshake() -> None:
    client = Connection("client", host="h")
    client.data_to_send()
    events = client.receive_data(b"")
    assert isinstance(events[-1], Closed) and events[-1].code == 1006
    assert client.state is CLOSED


def test_send_before_open_is_refused() -> None:
    client = Connection("client", host="h")
    with pytest.raises(RuntimeError):
        client.send_text("too early")


# --------------------------------------------------------------------------- section 5: messages


def test_5_6_text_and_binary_messages_in_one_read() -> None:
    conn = server()
    data = b"".join(client_frame(1, f"m{i}".encode()) for i in range(500)) + client_frame(2, b"\xff" * 300)
    events = conn.receive_data(data)
    assert len(events) == 501
    assert events[0] == TextMessage("m0") and events[499] == TextMessage("m499")
    assert events[500] == BinaryMessage(b"\xff" * 300)


def test_5_4_fragmented_message_with_control_frames_between() -> None:
    conn = server()
    data = (
        client_frame(1, "h\u00e9".encode()[:2], fin=False)
        + client_frame(9, b"are you there")
        + client_frame(0, "h\u00e9".encode()[2:] + b"llo", fin=False)
        + client_frame(10, b"unsolicited")
        + client_frame(0, b"!", fin=True)
    )
    events = conn.receive_data(data)
    assert events == [Ping(b"are you there"), Pong(b"unsolicited"), TextMessage("h\u00e9llo!")]
    (pong,) = sent_frames(conn)
    assert (pong.opcode, pong.payload) == (10, b"are you there")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        pytest.param(client_frame(0, b"x"), 1002, id="continuation-without-message"),
        pytest.param(client_frame(1, b"a", fin=False) + client_frame(2, b"b"), 1002, id="new-message-mid-fragment"),
        pytest.param(client_frame(1, b"\xff"), 1007, id="invalid-utf8-single-frame"),
        pytest.param(client_frame(1, b"\xed\xa0\x80"), 1007, id="surrogate"),
        pytest.param(client_frame(1, b"\xe2\x82", fin=False) + client_frame(0, b""), 1007, id="truncated-at-fin"),
        pytest.param(client_frame(1, b"x", rsv1=True), 1002, id="rsv1-without-deflate"),
        pytest.param(encode_frame(1, b"unmasked"), 1002, id="unmasked-from-client"),
        pytest.param(bytes([0x83, 0x80]) + MASK, 1002, id="reserved-opcode"),
        pytest.param(client_frame(8, b"\x03"), 1002, id="close-payload-of-1-byte"),
        pytest.param(client_frame(8, close_payload(1005)), 1002, id="close-code-1005-on-wire"),
        pytest.param(client_frame(8, close_payload(999)), 1002, id="close-code-999"),
        pytest.param(client_frame(8, close_payload(2000)), 1002, id="close-code-2000"),
        pytest.param(client_frame(8, close_payload(1000, b"\xff")), 1007, id="close-reason-not-utf8"),
    ],
)
def test_5_protocol_errors_close_with_the_right_code(data: bytes, code: int) -> None:
    conn = server()
    events = conn.receive_data(client_frame(2, b"before") + data)
    assert events[0] == BinaryMessage(b"before"), "frames before the error are delivered"
    assert isinstance(events[-2], ProtocolViolation) and events[-2].code == code
    assert isinstance(events[-1], Closed) and events[-1].code == 1006 and not events[-1].was_clean
    assert sent_close_code(conn) == code
    assert conn.state is CLOSED
    assert conn.receive_data(client_frame(1, b"after")) == []


def test_8_1_invalid_utf8_fails_at_the_first_bad_fragment() -> None:
    conn = server()
    assert conn.receive_data(client_frame(1, b"good ", fin=False)) == []
    events = conn.receive_data(client_frame(0, b"\xf4\x90", fin=False))
    assert isinstance(events[0], ProtocolViolation) and events[0].code == 1007
    assert sent_close_code(conn) == 1007


def test_8_1_character_split_across_fragments_is_fine() -> None:
    conn = server()
    encoded = "\U0001f600".encode()
    data = b"".join(client_frame(1 if i == 0 else 0, encoded[i : i + 1], fin=i == 3) for i in range(4))
    assert conn.receive_data(data) == [TextMessage("\U0001f600")]


@pytest.mark.parametrize("fragmented", [False, True])
def test_10_4_message_too_big(fragmented: bool) -> None:
    conn = server(max_message_size=1000)
    if fragmented:
        data = client_frame(2, b"x" * 600, fin=False) + client_frame(0, b"x" * 600)
    else:
        data = client_frame(2, b"x" * 1001)[:20]  # header only: refused before the payload arrives
    events = conn.receive_data(data)
    assert isinstance(events[0], ProtocolViolation) and events[0].code == 1009
    assert sent_close_code(conn) == 1009


def test_10_4_message_at_the_limit_passes() -> None:
    conn = server(max_message_size=1000)
    data = client_frame(2, b"x" * 500, fin=False) + client_frame(0, b"x" * 500)
    assert conn.receive_data(data) == [BinaryMessage(b"x" * 1000)]


def test_small_limit_still_allows_control_frames() -> None:
    conn = server(max_message_size=4)
    assert conn.receive_data(client_frame(9, b"p" * 125)) == [Ping(b"p" * 125)]
    assert conn.receive_data(client_frame(10, b"q" * 125)) == [Pong(b"q" * 125)]


@pytest.mark.parametrize("stream_messages", [False, True])
@pytest.mark.parametrize(
    ("limit", "frames"),
    [
        (10, [(2, b"x" * 100, True)]),
        (10, [(1, b"y" * 11, True)]),
        (0, [(2, b"z", True)]),
        (100, [(2, b"x" * 60, False), (0, b"x" * 60, True)]),
        (100, [(1, b"y" * 60, False), (9, b"ping", True), (0, b"y" * 41, True)]),
    ],
    ids=["one-frame", "text", "limit-0", "two-fragments", "fragments-and-a-ping"],
)
def test_10_4_a_limit_below_125_bytes_is_kept_too(limit: int, frames: list, stream_messages: bool) -> None:
    """Control frames may carry 125 bytes whatever the limit, so the frame decoder lets them through; data
    messages over a smaller max_message_size are still refused with 1009, in one read or byte by byte."""
    data = b"".join(client_frame(opcode, payload, fin=fin) for opcode, payload, fin in frames)
    for step in (len(data), 1):
        conn = server(max_message_size=limit)
        conn.stream_messages = stream_messages
        events = []
        for i in range(0, len(data), step):
            events += conn.receive_data(data[i : i + step])
        violations = [e for e in events if isinstance(e, ProtocolViolation)]
        assert [v.code for v in violations] == [1009], events
        assert not [e for e in events if isinstance(e, (TextMessage, BinaryMessage))]
        assert sum(len(e.data) for e in events if isinstance(e, (TextFragment, BinaryFragment))) <= limit
        assert sent_close_code(conn) == 1009


def test_stream_messages_delivers_fragments() -> None:
    conn = server(stream_messages=True)
    encoded = "d\u00e9j\u00e0".encode()
    data = (
        client_frame(1, encoded[:2], fin=False)
        + client_frame(0, encoded[2:], fin=True)
        + client_frame(2, b"ab", fin=False)
        + client_frame(0, b"c")
    )
    events = [event for i in range(0, len(data), 7) for event in conn.receive_data(data[i : i + 7])]
    assert "".join(e.data for e in events if isinstance(e, TextFragment)) == "d\u00e9j\u00e0"
    assert [e for e in events if isinstance(e, TextFragment)][:1] == [TextFragment("d", False)]
    assert b"".join(e.data for e in events if isinstance(e, BinaryFragment)) == b"abc"
    texts = [e.final for e in events if isinstance(e, TextFragment)]
    binaries = [e.final for e in events if isinstance(e, BinaryFragment)]
    assert texts[-1] and binaries[-1] and not any(texts[:-1]) and not any(binaries[:-1])
    # In one call, the fragments of each message come as one event.
    conn = server(stream_messages=True)
    assert conn.receive_data(data) == [TextFragment("d\u00e9j\u00e0", True), BinaryFragment(b"abc", True)]


def test_5_3_client_masks_every_frame_with_a_fresh_key() -> None:
    client = Connection.established("client")
    for _ in range(50):
        client.send_binary(b"\x00" * 8)
    data = client.data_to_send()
    keys = {data[i * 14 + 2 : i * 14 + 6] for i in range(50)}
    assert len(keys) > 45  # 32 random bits per key: collisions are near impossible
    assert all(data[i * 14 + 1] & 0x80 for i in range(50))
    assert all(f.payload == b"\x00" * 8 for f in FrameDecoder("server").feed(data))


def test_5_1_server_never_masks() -> None:
    conn = server()
    conn.send_text("hi")
    assert conn.data_to_send() == b"\x81\x02hi"


@pytest.mark.parametrize("payload", [b"", b"a" * 125, bytearray(b"b" * 126), memoryview(b"c" * 70000)])
def test_send_binary_accepts_buffers(payload) -> None:
    conn = server()
    conn.send_binary(payload)
    (frame,) = sent_frames(conn)
    assert frame.payload == bytes(payload)


def test_5_4_fragment_size_splits_outgoing_messages() -> None:
    conn = server(fragment_size=10)
    conn.send_text("x" * 25)
    frames = sent_frames(conn)
    assert [(f.opcode, f.fin, len(f.payload)) for f in frames] == [(1, False, 10), (0, False, 10), (0, True, 5)]


def test_send_fragment_streams_a_message() -> None:
    client, srv = pair(client_options={"extensions": ()})
    client.send_fragment("ab", fin=False)
    client.send_ping(b"between")
    client.send_fragment("cd", fin=True)
    events = pump(client, srv)
    assert events == [Ping(b"between"), TextMessage("abcd")]
    # A message's fragments share its type (RFC 6455 section 5.4): bytes may not continue a text message.
    client.send_fragment("x", fin=False)
    with pytest.raises(TypeError):
        client.send_fragment(b"y", fin=True)
    client.send_fragment("y", fin=True)  # the refused call left the message open, still text
    assert pump(client, srv) == [TextMessage("xy")]


@pytest.mark.parametrize("size", [126, ZERO_COPY_MIN, 70_000])
@pytest.mark.parametrize("role", ["client", "server"])
@pytest.mark.parametrize("method", ["send_ping", "send_pong"])
def test_ping_and_pong_payloads_over_125_are_refused(method: str, role: str, size: int) -> None:
    """RFC 6455 section 5.5: a control frame carries at most 125 bytes. A server's large payloads go out
    without encode_frame (header and payload apart, no copy), so the check must not live there alone: 16 KiB
    and more once went out as a Ping or Pong with an extended length."""
    client, srv = pair()
    conn = client if role == "client" else srv
    with pytest.raises(ValueError, match=r"^control frame payload longer than 125 bytes$"):
        getattr(conn, method)(b"x" * size)
    assert conn.data_to_send() == b"" and conn.state is OPEN
    getattr(conn, method)(b"x" * 125)
    peer = srv if role == "client" else client
    assert pump(conn, peer) == [(Ping if method == "send_ping" else Pong)(b"x" * 125)]


# --------------------------------------------------------------------------- section 7: closing


def test_7_close_initiated_by_us() -> None:
    client, srv = pair()
    client.close(1001, "bye")
    assert client.state is CLOSING
    with pytest.raises(ConnectionClosed):
        client.send_text("after close")
    events = pump(client, srv)
    assert events == [CloseReceived(1001, "bye"), Closed(1001, "bye", was_clean=True)]
    assert srv.state is CLOSED
    events = pump(srv, client)
    assert events == [CloseReceived(1001, "bye"), Closed(1001, "bye", was_clean=True)]
    assert client.state is CLOSED
    assert (client.close_code, srv.close_code, srv.close_reason) == (1001, 1001, "bye")


def test_7_data_received_while_closing_is_delivered() -> None:
    client, srv = pair()
    srv.send_text("in flight")
    client.close()
    events = pump(srv, client)
    assert events == [TextMessage("in flight")]
    assert client.state is CLOSING


def test_7_close_without_code_reports_1005_and_echoes_empty() -> None:
    conn = server()
    events = conn.receive_data(client_frame(8))
    assert events == [CloseReceived(1005, ""), Closed(1005, "", was_clean=True)]
    (reply,) = sent_frames(conn)
    assert (reply.opcode, reply.payload) == (8, b"")


def test_7_nothing_after_the_peers_close_counts() -> None:
    conn = server()
    events = conn.receive_data(client_frame(8, close_payload(1000)) + client_frame(1, b"late"))
    assert [type(e) for e in events] == [CloseReceived, Closed]
    assert conn.receive_data(client_frame(1, b"later")) == []


def test_7_eof_without_close_is_1006() -> None:
    _client, srv = pair()
    assert srv.receive_data(b"") == [Closed(1006, "", was_clean=False)]
    assert srv.close_code == 1006 and srv.state is CLOSED


def test_7_eof_after_close_handshake_is_quiet() -> None:
    client, srv = pair()
    client.close()
    pump(client, srv)
    pump(srv, client)
    assert client.receive_data(b"") == []


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999])
def test_7_4_valid_codes_are_accepted_and_echoed(code: int) -> None:
    conn = server()
    events = conn.receive_data(client_frame(8, close_payload(code, b"why")))
    assert events[0] == CloseReceived(code, "why")
    assert sent_close_code(conn) == code


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
def test_7_4_invalid_codes_cannot_be_sent(code: int) -> None:
    with pytest.raises(ValueError):
        server().close(code)


def test_close_reason_longer_than_123_bytes_is_refused() -> None:
    with pytest.raises(ValueError):
        server().close(1000, "x" * 124)


def test_fail_queues_close_and_closes() -> None:
    conn = server()
    conn.fail(1011, "keepalive ping timeout")
    assert sent_close_code(conn) == 1011
    assert conn.state is CLOSED


# --------------------------------------------------------------------------- RFC 7692: permessage-deflate


def deflate_pair(client_pmd: dict, server_pmd: dict, **options) -> tuple[Connection, Connection]:
    return pair(
        {"extensions": [ClientPerMessageDeflate(**client_pmd)], **options},
        {"extensions": [ServerPerMessageDeflate(**server_pmd)], **options},
    )


DEFLATE_SETTINGS = [
    ({}, {}),
    ({"client_no_context_takeover": True}, {}),
    ({"server_no_context_takeover": True}, {}),
    ({"server_max_window_bits": 10}, {}),
    ({"client_max_window_bits": 9}, {"server_no_context_takeover": True}),
    ({}, {"server_max_window_bits": 8}),
    ({}, {"client_max_window_bits": 12, "client_no_context_takeover": True}),
]


@pytest.mark.parametrize(("client_pmd", "server_pmd"), DEFLATE_SETTINGS)
def test_7692_round_trip_each_parameter_set(client_pmd: dict, server_pmd: dict) -> None:
    client, srv = deflate_pair(client_pmd, server_pmd)
    assert client.extensions and srv.extensions
    messages = ["hello " * 100, b"\x00" * 5000, "tiny", "caf\u00e9 " * 300, b"", "x" * 70000]
    for _ in range(3):  # several rounds exercise context takeover
        for message in messages:
            client.send_message(message)
            srv.send_message(message)
        got_server = pump(client, srv)
        got_client = pump(srv, client)
        expected = [TextMessage(m) if isinstance(m, str) else BinaryMessage(m) for m in messages]
        assert got_server == expected
        assert got_client == expected


def test_7692_compressed_messages_set_rsv1_on_first_frame_only() -> None:
    _client, srv = deflate_pair({}, {}, fragment_size=8)
    srv.send_text("compress me " * 50)
    frames = FrameDecoder("client", None, allow_rsv1=True).feed(srv.data_to_send())
    assert len(frames) > 1
    assert frames[0].rsv1 and not any(f.rsv1 for f in frames[1:])
    assert not frames[-1].payload.endswith(b"\x00\x00\xff\xff")


def test_7692_compress_false_sends_plain() -> None:
    _client, srv = deflate_pair({}, {})
    srv.send_message("plain " * 100, compress=False)
    (frame,) = FrameDecoder("client", None, allow_rsv1=True).feed(srv.data_to_send())
    assert not frame.rsv1 and frame.payload == b"plain " * 100


def test_7692_decompression_bomb_is_refused_while_inflating() -> None:
    _client, srv = deflate_pair({}, {}, max_message_size=100_000)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = compressor.compress(b"\x00" * 50_000_000) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert len(bomb) < 100_000
    events = srv.receive_data(client_frame(2, bomb[:-4], rsv1=True))
    assert isinstance(events[0], ProtocolViolation) and events[0].code == 1009
    assert sent_close_code(srv) == 1009


@pytest.mark.parametrize("opcode", [0, 9])
def test_7692_rsv1_on_continuation_or_control_is_an_error(opcode: int) -> None:
    _client, srv = deflate_pair({}, {})
    prefix = client_frame(1, b"a", fin=False) if opcode == 0 else b""
    events = srv.receive_data(prefix + client_frame(opcode, b"b", rsv1=True))
    assert isinstance(events[0], ProtocolViolation) and events[0].code == 1002


# RFC 7692 section 7.2.3.4: "Hello" as a final DEFLATE block (BFINAL set) and one more 0x00 byte.
HELLO_BFINAL = bytes.fromhex("f348cdc9c9070000")


@pytest.mark.parametrize("split", range(1, len(HELLO_BFINAL)))
@pytest.mark.parametrize("delivery", ["one read", "two reads", "a ping between"])
def test_7692_a_final_deflate_block_decodes_however_its_message_is_fragmented(split: int, delivery: str) -> None:
    """A sender may cut a message into fragments anywhere (RFC 6455 section 5.4), so the byte after the final
    block may come in a frame of its own; the message decodes whichever read that frame arrives in, and the
    next message (a new DEFLATE stream) decodes too."""
    _client, srv = deflate_pair({}, {})
    first = client_frame(1, HELLO_BFINAL[:split], fin=False, rsv1=True)
    second = client_frame(0, HELLO_BFINAL[split:])
    ping = client_frame(9, b"still there?")
    if delivery == "one read":
        events = srv.receive_data(first + second)
    elif delivery == "two reads":
        events = srv.receive_data(first) + srv.receive_data(second)
    else:
        events = srv.receive_data(first + ping) + srv.receive_data(second)
    expected = [TextMessage("Hello")] if delivery != "a ping between" else [Ping(b"still there?"), TextMessage("Hello")]
    assert events == expected
    assert srv.receive_data(client_frame(1, HELLO_BFINAL, rsv1=True)) == [TextMessage("Hello")]
    assert srv.state is OPEN
    assert [f.opcode for f in sent_frames(srv)] == ([10] if delivery == "a ping between" else [])


@pytest.mark.parametrize("padding", [b"\x00", b""])
def test_7692_a_stream_ended_mid_message_is_followed_by_a_new_one(padding: bytes) -> None:
    """A peer that flushes each fragment with a final block (RFC 7692 section 7.2.3.4) starts a new DEFLATE
    stream in the next fragment: nothing of it is dropped, and the messages after it decode. (The padding
    byte, where there is one, opens the stored block our trailer ends: only a message's end has it.)"""
    _client, srv = deflate_pair({}, {})
    hello_final = HELLO_BFINAL[:7]
    hello = bytes.fromhex("f248cdc9c90700")  # "Hello", not final, ending on the empty block's first byte
    events = srv.receive_data(client_frame(1, hello_final, fin=False, rsv1=True) + client_frame(0, hello))
    assert events == [TextMessage("HelloHello")]
    events = srv.receive_data(
        client_frame(1, hello_final, fin=False, rsv1=True) + client_frame(0, hello_final + padding)
    )
    assert events == [TextMessage("HelloHello")]
    assert srv.receive_data(client_frame(1, hello_final + padding, rsv1=True)) == [TextMessage("Hello")]
    assert srv.state is OPEN


def test_7692_bytes_after_a_final_block_that_are_not_deflate_fail_1007() -> None:
    _client, srv = deflate_pair({}, {})
    events = srv.receive_data(client_frame(1, HELLO_BFINAL[:7] + b"\xffgarbage", rsv1=True))
    assert isinstance(events[0], ProtocolViolation) and events[0].code == 1007
    assert not [e for e in events if isinstance(e, TextMessage)]


def _deflate_stream(text: str) -> bytes:
    """``text`` as a whole raw DEFLATE stream, its last block final (BFINAL)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(text.encode()) + compressor.flush(zlib.Z_FINISH)


@pytest.mark.parametrize("read_size", [None, 7, 1])
def test_7692_a_fragment_per_deflate_stream_decodes_however_it_is_read(read_size: int | None) -> None:
    """Twelve fragments, each a DEFLATE stream of its own: one message, whether the frames come in one
    read (the decoder then joins the continuations) or a few bytes at a time."""
    _client, srv = deflate_pair({}, {})
    parts = [f"part{i:02d} " for i in range(12)]
    frames = [client_frame(0, _deflate_stream(part), fin=i == 11) for i, part in enumerate(parts)]
    frames[0] = client_frame(1, _deflate_stream(parts[0]), fin=False, rsv1=True)
    data = b"".join(frames)
    chunks = [data] if read_size is None else [data[i : i + read_size] for i in range(0, len(data), read_size)]
    events = [event for chunk in chunks for event in srv.receive_data(chunk)]
    assert events == [TextMessage("".join(parts))]
    assert srv.receive_data(client_frame(1, HELLO_BFINAL, rsv1=True)) == [TextMessage("Hello")]


@pytest.mark.parametrize("read_size", [None, 3])
def test_7692_a_message_of_many_tiny_deflate_streams_is_refused_1007(read_size: int | None) -> None:
    """Each stream costs a decompressor: thousands of two-byte streams (03 00, an empty final block) would
    cost hundreds of times what inflating as many bytes costs. Beyond 8 streams and one per 16 compressed
    bytes, the message is refused, however it is read."""
    _client, srv = deflate_pair({}, {})
    data = client_frame(2, b"\x03\x00" * 50_000, rsv1=True)
    chunks = [data] if read_size is None else [data[i : i + read_size] for i in range(0, len(data), read_size)]
    events = []
    for chunk in chunks:
        events += srv.receive_data(chunk)
        if events:
            break
    assert isinstance(events[0], ProtocolViolation) and events[0].code == 1007
    assert "10 DEFLATE streams in the first 18 compressed bytes" in str(events[0].error)
    _client, srv = deflate_pair({}, {})
    assert srv.receive_data(client_frame(2, b"\x03\x00" * 8 + b"\x00", rsv1=True)) == [BinaryMessage(b"")]


@pytest.mark.parametrize("role", ["client", "server"])
def test_one_string_for_subprotocols_is_a_type_error(role: str) -> None:
    """Iterated, "chat" was offered as "c, h, a, t" (and a server listing it refused every client)."""
    with pytest.raises(TypeError, match="list of strings"):
        Connection(role, host="example.com", subprotocols="chat") if role == "client" else Connection(
            role, subprotocols="chat"
        )


def test_7692_no_compression_when_the_server_declines() -> None:
    client, srv = pair({"extensions": [ClientPerMessageDeflate()]}, {"extensions": ()})
    assert client.extensions == [] and srv.extensions == []
    srv.send_text("a" * 1000)
    (frame,) = FrameDecoder("client", None).feed(srv.data_to_send())
    assert not frame.rsv1


# --------------------------------------------------------------------------- properties


message_strategy = st.one_of(st.text(max_size=300), st.binary(max_size=300))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=st.lists(message_strategy, max_size=20),
    fragment_size=st.one_of(st.none(), st.integers(1, 64)),
    deflate=st.booleans(),
    no_context=st.booleans(),
    chunk=st.integers(1, 500),
)
def test_random_message_sequences_arrive_intact_and_in_order(
    messages: list, fragment_size: int | None, deflate: bool, no_context: bool, chunk: int
) -> None:
    extensions_c = [ClientPerMessageDeflate(client_no_context_takeover=no_context)] if deflate else []
    extensions_s = [ServerPerMessageDeflate(server_no_context_takeover=no_context)] if deflate else []
    client, srv = pair(
        {"extensions": extensions_c, "fragment_size": fragment_size},
        {"extensions": extensions_s, "fragment_size": fragment_size},
    )
    for sender, receiver in ((client, srv), (srv, client)):
        for message in messages:
            sender.send_message(message)
        data = sender.data_to_send()
        events = []
        for i in range(0, len(data), chunk):
            events.extend(receiver.receive_data(data[i : i + chunk]))
        assert events == [TextMessage(m) if isinstance(m, str) else BinaryMessage(m) for m in messages]


def test_eof_while_the_application_decides_is_reported() -> None:
    client = Connection("client", host="h")
    srv = Connection("server")
    srv.receive_data(client.data_to_send())
    assert srv.receive_data(b"") == [Closed(1006, "", was_clean=False)]
    assert srv.state is CLOSED


def test_5_4_no_whole_message_inside_a_fragmented_send() -> None:
    conn = server()
    conn.send_fragment(b"part", fin=False)
    with pytest.raises(RuntimeError):
        conn.send_binary(b"interleaved")
    conn.send_fragment(b"end", fin=True)
    conn.send_binary(b"now fine")
    assert [(f.opcode, f.fin) for f in sent_frames(conn)] == [(2, False), (0, True), (2, True)]


# --------------------------------------------------------------------------- issue 9: fragments and errors


def test_one_byte_fragments_make_one_event_per_read() -> None:
    """A read of 10,000 one-byte fragments is one event (streaming) or one growing buffer (whole messages)."""
    data = client_frame(2, b"a", fin=False) + client_frame(0, b"b", fin=False) * 9_998
    streaming = server(stream_messages=True)
    assert streaming.receive_data(data) == [BinaryFragment(b"a" + b"b" * 9_998, False)]
    assert streaming.receive_data(client_frame(0, b"c", fin=False) * 3 + client_frame(0, b"d")) == [
        BinaryFragment(b"cccd", True)
    ]
    whole = server()
    assert whole.receive_data(data) == []
    assert type(whole._msg_buf) is bytearray and len(whole._msg_buf) == 9_999
    assert whole.receive_data(client_frame(0, b"d")) == [BinaryMessage(b"a" + b"b" * 9_998 + b"d")]
    assert whole._msg_buf is None


def test_streamed_text_fragments_stay_whole_characters() -> None:
    """Coalesced text fragments split a character nowhere, however the frames cut it."""
    text = "d\u00e9j\u00e0 \U0001f600 vu"
    encoded = text.encode()
    data = client_frame(1, encoded[:1], fin=False) + b"".join(
        client_frame(0, encoded[i : i + 1], fin=i + 1 == len(encoded)) for i in range(1, len(encoded))
    )
    for step in (1, 5, 6, 13, len(data)):
        conn = server(stream_messages=True)
        events = [e for i in range(0, len(data), step) for e in conn.receive_data(data[i : i + step])]
        assert all(isinstance(e, TextFragment) for e in events)
        assert "".join(e.data for e in events) == text
        assert [e.final for e in events][-1] and not any(e.final for e in events[:-1])


def test_control_frame_inside_a_run_keeps_its_place() -> None:
    data = client_frame(1, b"a", fin=False) + client_frame(0, b"b", fin=False) + client_frame(9, b"p")
    data += client_frame(0, b"c", fin=False) + client_frame(0, b"d")
    assert server(stream_messages=True).receive_data(data) == [
        TextFragment("ab", False),
        Ping(b"p"),
        TextFragment("cd", True),
    ]
    assert server().receive_data(data) == [Ping(b"p"), TextMessage("abcd")]


def test_many_fragments_still_respect_max_message_size() -> None:
    conn = server(max_message_size=1000)
    events = conn.receive_data(client_frame(2, b"a", fin=False) + client_frame(0, b"b", fin=False) * 1000)
    assert isinstance(events[0], ProtocolViolation) and events[0].code == 1009
    assert sent_close_code(conn) == 1009


BAD_AFTER_A_MESSAGE = [
    ("rsv2", encode_frame(1, b"x", rsv2=True, mask=MASK)),
    ("reserved opcode", bytes([0x83, 0x81]) + MASK + bytes([ord("x") ^ MASK[0]])),
    ("stray continuation", client_frame(0, b"x")),
]


@pytest.mark.parametrize(("name", "bad"), BAD_AFTER_A_MESSAGE, ids=[b[0] for b in BAD_AFTER_A_MESSAGE])
@pytest.mark.parametrize("stream", [False, True])
def test_defer_errors_delivers_what_came_before_and_replies_go_first(name: str, bad: bytes, stream: bool) -> None:
    """Section 6 of issue 9: the message before the bad frame is delivered, the reply goes out before the
    Close (1002), and the Ping behind the bad frame gets no Pong."""
    conn = server(defer_errors=True, stream_messages=stream)
    first = client_frame(1, b"he", fin=False) + client_frame(0, b"llo")
    events = conn.receive_data(first + bad + client_frame(9, b"ping") + client_frame(1, b"after"))
    assert "".join(e.data for e in events) == "hello"  # type: ignore[union-attr]
    assert conn.pending_error is not None and conn.pending_error.close_code == 1002
    assert conn.state is OPEN and conn.data_to_send() == b""  # no Pong, no Close yet
    assert conn.receive_data(client_frame(9, b"again")) == []  # nothing after the bad frame counts
    conn.send_text("hello")
    events = conn.fail_pending()
    assert isinstance(events[0], ProtocolViolation) and events[0].code == 1002
    assert isinstance(events[1], Closed) and conn.state is CLOSED
    frames = sent_frames(conn)
    assert [(f.opcode, f.payload[:2]) for f in frames] == [(1, b"he"), (8, (1002).to_bytes(2, "big"))]
    assert frames[0].payload == b"hello"
    assert conn.pending_error is None and conn.fail_pending() == []


def test_without_defer_errors_the_connection_fails_at_once() -> None:
    conn = server()
    events = conn.receive_data(client_frame(1, b"hi") + BAD_AFTER_A_MESSAGE[0][1] + client_frame(9, b"p"))
    assert events[0] == TextMessage("hi")
    assert isinstance(events[1], ProtocolViolation) and isinstance(events[2], Closed)
    assert [f.opcode for f in sent_frames(conn)] == [8]


def test_defer_errors_close_eof_and_fail_end_a_pending_error() -> None:
    bad = client_frame(1, b"hi") + BAD_AFTER_A_MESSAGE[1][1]
    conn = server(defer_errors=True)
    assert conn.receive_data(bad) == [TextMessage("hi")]
    conn.close(1000, "bye")  # the peer broke the protocol: our Close says so
    assert conn.state is CLOSED and sent_close_code(conn) == 1002
    events = conn.fail_pending()
    assert isinstance(events[0], ProtocolViolation) and isinstance(events[1], Closed)

    conn = server(defer_errors=True)
    conn.receive_data(bad)
    events = conn.receive_data(b"")
    assert isinstance(events[0], ProtocolViolation) and events[1] == Closed(1006, events[1].reason, was_clean=False)

    conn = server(defer_errors=True)
    conn.receive_data(bad)
    conn.fail(1011, "timeout")
    assert conn.pending_error is None and sent_close_code(conn) == 1011


INVALID_AT_BYTE = "valid caf\u00e9 ".encode() + b"\xf4\x90\x80\x80" + b" tail"  # U+110000: above U+10FFFF


@pytest.mark.parametrize("size", [0, 200, 70_000])
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("fragmented", [False, True])
def test_invalid_utf8_fails_at_the_chop_that_brings_it(size: int, stream: bool, fragmented: bool) -> None:
    """A text frame sent in three chops, the second making it invalid: 1007 right after the second,
    whether the frame is small (buffered) or large (received straight into its payload)."""
    valid = b"x" * size + "valid caf\u00e9 ".encode()
    payload = valid + b"\xf4\x90\x80\x80" + b" tail"
    data = client_frame(0 if fragmented else 1, payload, fin=False)
    conn = server(stream_messages=stream, max_message_size=None)
    if fragmented:
        assert not [e for e in conn.receive_data(client_frame(1, "d\u00e9".encode(), fin=False)) if e.final]  # type: ignore[union-attr]
    cut1 = len(data) - len(payload) + len(valid) - 2  # inside "é": a character still arriving is fine
    cut2 = len(data) - 5
    events = conn.receive_data(data[:cut1])
    assert conn.state is OPEN and not any(isinstance(e, ProtocolViolation) for e in events)
    events = conn.receive_data(data[cut1:cut2])
    assert isinstance(events[-2], ProtocolViolation) and events[-2].code == 1007
    assert isinstance(events[-1], Closed) and sent_close_code(conn) == 1007


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
@pytest.mark.parametrize("stream", [False, True])
def test_text_checked_while_arriving_still_decodes_whole(step: int, stream: bool) -> None:
    """Checking a frame as it arrives changes nothing for valid text, however it is cut."""
    text = "\u00e9\U0001f600\u4e2d" * 700
    encoded = text.encode()
    data = client_frame(1, encoded[:3000], fin=False) + client_frame(0, encoded[3000:]) + client_frame(1, b"ok")
    conn = server(stream_messages=stream)
    events = [e for i in range(0, len(data), step) for e in conn.receive_data(data[i : i + step])]
    if stream:
        finals = [i for i, e in enumerate(events) if e.final]  # type: ignore[union-attr]
        assert "".join(e.data for e in events[: finals[0] + 1]) == text  # type: ignore[union-attr]
        assert events[-1] == TextFragment("ok", True)
    else:
        assert events == [TextMessage(text), TextMessage("ok")]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    payload=st.binary(max_size=40) | st.text(max_size=20).map(lambda t: t.encode()),
    cuts=st.lists(st.integers(1, 30), max_size=5),
    fragment_at=st.integers(0, 40),
)
def test_utf8_checked_while_arriving_matches_the_whole_check(payload: bytes, cuts: list[int], fragment_at: int) -> None:
    """Fed in any chops, a text message fails (1007) iff it fails fed whole, and no later than the chop
    that holds the first byte that makes it invalid."""
    head, tail = payload[:fragment_at], payload[fragment_at:]
    data = client_frame(1, head, fin=False) + client_frame(0, tail)
    whole = server().receive_data(data)
    valid = len(whole) == 1
    # Where the text becomes impossible: the shortest prefix no valid UTF-8 string starts with.
    bad_at = next((i for i in range(1, len(payload) + 1) if _impossible(payload[:i])), None)
    conn = server()
    pos = 0
    failed_at = None
    for n in [*cuts, len(data)]:
        events = conn.receive_data(data[pos : pos + n])
        pos += n
        if any(isinstance(e, ProtocolViolation) for e in events):
            failed_at = min(pos, len(data))
            assert [e.code for e in events if isinstance(e, ProtocolViolation)] == [1007]
            break
    assert (failed_at is None) == valid
    if bad_at is not None:  # it fails in the very chop that brings the byte making the text impossible
        j = bad_at - 1
        offset = 6 + j if j < len(head) else 12 + j
        ends = [min(sum(cuts[: k + 1]), len(data)) for k in range(len(cuts))] + [len(data)]
        assert failed_at == min(end for end in ends if end > offset)


def _impossible(prefix: bytes) -> bool:
    """True if no valid UTF-8 text starts with ``prefix`` (tried against every way to go on)."""
    if _valid_start(prefix):
        return False
    return not any(_valid_start(prefix + bytes([b]) + b"\x80" * k) for b in range(0x80, 0xC0) for k in range(3))


def _valid_start(data: bytes) -> bool:
    try:
        data.decode()
        return True
    except UnicodeDecodeError:
        return False


@pytest.mark.parametrize("stream", [False, True])
def test_one_byte_fragments_cost_their_payload_in_memory(stream: bool) -> None:
    """50,000 one-byte fragments (350 kB on the wire, in 64 KiB reads): traced memory peaks within 3x
    the message, with and without streaming (before: about 40x, an object per fragment)."""
    import tracemalloc

    fragments = 50_000
    data = client_frame(2, b"a", fin=False) + client_frame(0, b"b", fin=False) * (fragments - 1) + client_frame(0, b"c")
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    conn = server(stream_messages=stream)
    received = 0
    tracemalloc.start()
    try:
        for chunk in chunks:
            for event in conn.receive_data(chunk):
                received += len(event.data)  # type: ignore[union-attr]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == fragments + 1
    assert peak <= 3 * fragments, f"peak {peak / 2**20:.1f} MiB"


@pytest.mark.parametrize("whole_opcode", [1, 2])
@pytest.mark.parametrize("split", [False, True])
def test_7692_a_whole_message_inside_a_compressed_fragmented_one_is_1002(whole_opcode: int, split: bool) -> None:
    """RFC 6455 section 5.4: a new data frame while a (compressed) fragmented message is open fails the
    connection, whether it arrives in the same read as the first fragment or in a later one."""
    _client, srv = deflate_pair({}, {})
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = compressor.compress(b"hello " * 20) + compressor.flush(zlib.Z_SYNC_FLUSH)
    first = client_frame(1, body[:-4], fin=False, rsv1=True)
    intruder = client_frame(whole_opcode, b"intruder")
    events = srv.receive_data(first) + srv.receive_data(intruder) if split else srv.receive_data(first + intruder)
    assert not any(isinstance(e, (TextMessage, BinaryMessage)) for e in events)
    assert isinstance(events[0], ProtocolViolation) and events[0].code == 1002
    assert sent_close_code(srv) == 1002


def test_the_close_frames_both_ways_are_recorded_and_carried_by_closed_error() -> None:
    """close_rcvd, close_rcvd_then_sent and closed_error() (websockets' close_rcvd, close_rcvd_then_sent and
    the rcvd/sent of its exceptions), on the side that closes first and on the side that answers."""
    from wscodec.errors import Close

    client, server = Connection.established("client"), Connection.established("server")
    assert (client.close_rcvd, client.close_rcvd_then_sent) == (None, None)
    client.close(4000, "done")
    closing = client.closing_error()
    assert closing is not None and (closing.rcvd, closing.sent) == (None, Close(4000, "done"))
    server.receive_data(client.data_to_send())
    assert (server.close_rcvd, server.close_rcvd_then_sent) == (Close(4000, "done"), True)
    client.receive_data(server.data_to_send())
    assert (client.close_rcvd, client.close_rcvd_then_sent) == (Close(4000, "done"), False)
    for conn, first in ((server, True), (client, False)):
        exc = conn.closed_error(4000, "done", was_clean=True)
        assert (exc.rcvd, exc.sent, exc.rcvd_then_sent) == (Close(4000, "done"), Close(4000, "done"), first)
        with pytest.raises(ConnectionClosed) as info:
            conn.send_text("late")
        assert (info.value.code, info.value.rcvd, info.value.sent) == (4000, Close(4000, "done"), Close(4000, "done"))

    # a Close without code is 1005 both ways; a failed connection sent its Close and received none
    quiet_client, quiet_server = Connection.established("client"), Connection.established("server")
    quiet_client.close(None)
    quiet_server.receive_data(quiet_client.data_to_send())
    assert quiet_server.closed_error(1005, was_clean=True).sent == Close(1005, "")
    failing = Connection.established("server")
    failing.receive_data(b"\x81\x05hello")  # unmasked from a client: 1002
    exc = failing.closed_error(1006, was_clean=False)
    assert exc.rcvd is None and exc.sent is not None and exc.sent.code == 1002 and exc.rcvd_then_sent is None


@pytest.mark.parametrize("compressed", [True, False])
@pytest.mark.parametrize("role", ["client", "server"])
def test_a_strided_memoryview_is_sent_compressed_or_not(compressed: bool, role: str) -> None:
    """``memoryview(data)[::2]`` is a valid bytes-like message: sent whole, compressed where deflate was
    negotiated (zlib takes only contiguous buffers: it raised BufferError there and only there), as one
    message or fragment by fragment."""
    client, srv = deflate_pair({}, {}) if compressed else pair({"extensions": []}, {"extensions": []})
    sender, receiver = (client, srv) if role == "client" else (srv, client)
    data = bytes(range(256)) * 200
    view = memoryview(data)[::2]
    sender.send_binary(view)
    assert pump(sender, receiver) == [BinaryMessage(data[::2])]
    sender.send_fragment(view, fin=False)
    sender.send_fragment(memoryview(data)[1::2], fin=True)
    assert pump(sender, receiver) == [BinaryMessage(data[::2] + data[1::2])]
    assert bool(sender.extensions) == compressed
