"""The send path of Connection: zero-copy large frames, the one-step fast path and its bookkeeping.

Every frame queued is checked by decoding the bytes with an independent FrameDecoder (RFC 6455 section 5.2),
whichever of ``data_to_send`` and ``data_to_send_buffers`` hands them out.
"""

from __future__ import annotations

import os
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wscodec import FrameDecoder, encode_frame
from wscodec.connection import ZERO_COPY_MIN, Connection
from wscodec.errors import ConnectionClosed
from wscodec.events import BinaryMessage, TextMessage
from wscodec.extensions import PerMessageDeflate


def decode(data: bytes, role: str = "client") -> list:
    return FrameDecoder(role, None).feed(data)


def test_large_bytes_go_out_as_header_and_the_payload_object_itself() -> None:
    conn = Connection.established("server", max_message_size=None)
    payload = os.urandom(ZERO_COPY_MIN + 1000)
    conn.send_binary(payload)
    buffers = conn.data_to_send_buffers()
    assert len(buffers) == 2
    assert buffers[1] is payload  # not copied
    assert b"".join(buffers) == encode_frame(2, payload)
    assert conn.data_to_send_buffers() == []
    assert conn.data_to_send() == b""


@pytest.mark.parametrize("size", [ZERO_COPY_MIN, 65535, 65536, 1 << 20])
def test_zero_copy_header_lengths_rfc6455_5_2(size: int) -> None:
    """Both extended-length forms (16 and 64 bit) and the boundary between them."""
    conn = Connection.established("server", max_message_size=None)
    text = "é" * (size // 2)
    conn.send_text(text)
    conn.send_binary(bytes(size))
    buffers = conn.data_to_send_buffers()
    assert len(buffers) == 4
    frames = decode(b"".join(buffers))
    assert [(f.opcode, f.fin, f.rsv1) for f in frames] == [(1, True, False), (2, True, False)]
    assert frames[0].payload.decode() == text and frames[1].payload == bytes(size)
    assert b"".join(buffers) == encode_frame(1, text.encode()) + encode_frame(2, bytes(size))


def test_data_to_send_joins_what_was_queued_without_copy() -> None:
    conn = Connection.established("server", max_message_size=None)
    big = b"z" * (ZERO_COPY_MIN * 2)
    conn.send_text("a")
    conn.send_binary(big)
    conn.send_binary(b"b")
    assert conn.bytes_to_send == 3 + 4 + len(big) + 3
    data = conn.data_to_send()
    assert data == encode_frame(1, b"a") + encode_frame(2, big) + encode_frame(2, b"b")
    assert conn.bytes_to_send == 0


def test_draining_one_frame_hands_over_the_queue_s_reference_and_the_queue_keeps_working() -> None:
    # The compiled data_to_send takes a lone frame out without shrinking the list (no realloc per
    # message): the frame must then be the caller's alone, and the queue still whole for the next frames.
    conn = Connection.established("server", max_message_size=None)
    for i in range(3):
        conn.send_binary(bytes([i]) * 20)
        frame = conn.data_to_send()
        assert frame == encode_frame(2, bytes([i]) * 20)
        assert sys.getrefcount(frame) == 2  # this name and getrefcount's argument: no one else holds it
        assert conn.data_to_send() == b""
        assert conn.bytes_to_send == 0
    conn.send_text("a")
    conn.send_text("b")
    assert conn.data_to_send_buffers() == [encode_frame(1, b"a"), encode_frame(1, b"b")]
    conn.send_text("c")
    assert conn.data_to_send() == encode_frame(1, b"c")


def test_small_messages_stay_one_buffer_each() -> None:
    conn = Connection.established("server")
    conn.send_binary(b"x" * (ZERO_COPY_MIN - 1))
    conn.send_text("hi")
    buffers = conn.data_to_send_buffers()
    assert buffers == [encode_frame(2, b"x" * (ZERO_COPY_MIN - 1)), encode_frame(1, b"hi")]


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_mutable_buffers_are_copied_so_later_changes_do_not_leak(kind) -> None:
    conn = Connection.established("server", max_message_size=None)
    source = bytearray(b"a" * (ZERO_COPY_MIN * 2))
    conn.send_binary(kind(source))
    source[:] = b"b" * len(source)
    buffers = conn.data_to_send_buffers()
    assert len(buffers) == 1
    assert decode(buffers[0])[0].payload == b"a" * (ZERO_COPY_MIN * 2)


def test_client_masks_large_payload_into_one_buffer_once() -> None:
    conn = Connection.established("client", max_message_size=None)
    payload = os.urandom(ZERO_COPY_MIN * 3)
    conn.send_binary(payload)
    buffers = conn.data_to_send_buffers()
    assert len(buffers) == 1
    frame = buffers[0]
    assert frame[1] & 0x80  # masked (RFC 6455 section 5.3)
    assert decode(frame, "server")[0].payload == payload


def test_compressed_large_message_is_zero_copy_too() -> None:
    """A deflated payload is a fresh bytes object: queued beside its header with RSV1 set (RFC 7692 6.1)."""
    srv = Connection.established("server", extensions=[PerMessageDeflate(is_server=True)], max_message_size=None)
    cli = Connection.established("client", extensions=[PerMessageDeflate(is_server=False)], max_message_size=None)
    payload = os.urandom(ZERO_COPY_MIN * 2)  # incompressible: the deflated form stays above the threshold
    srv.send_binary(payload)
    buffers = srv.data_to_send_buffers()
    assert len(buffers) == 2 and buffers[0][0] == 0xC2  # FIN, RSV1, binary
    assert cli.receive_data(b"".join(buffers)) == [BinaryMessage(payload)]


def test_fragment_size_setter_validates_and_switches_the_fast_path_off() -> None:
    conn = Connection.established("server", max_message_size=None)
    with pytest.raises(ValueError, match="fragment_size must be >= 1 or None"):
        conn.fragment_size = 0
    conn.fragment_size = 4
    conn.send_binary(b"0123456789")
    frames = decode(conn.data_to_send())
    assert [(f.opcode, f.fin, f.payload) for f in frames] == [
        (2, False, b"0123"),
        (0, False, b"4567"),
        (0, True, b"89"),
    ]
    conn.fragment_size = None
    conn.send_binary(b"0123456789")
    assert conn.data_to_send() == encode_frame(2, b"0123456789")


def test_fast_path_respects_a_fragmented_send_in_progress() -> None:
    conn = Connection.established("server")
    assert not conn.sending_fragmented
    conn.send_fragment(b"part", fin=False)
    assert conn.sending_fragmented
    with pytest.raises(RuntimeError, match="fragmented message is being sent"):
        conn.send_binary(b"x")
    with pytest.raises(RuntimeError, match="fragmented message is being sent"):
        conn.send_text("x")
    conn.send_fragment(b"end", fin=True)
    assert not conn.sending_fragmented
    conn.send_text("after")
    frames = decode(conn.data_to_send())
    assert [(f.opcode, f.fin, f.payload) for f in frames] == [
        (2, False, b"part"),
        (0, True, b"end"),
        (1, True, b"after"),
    ]


@pytest.mark.parametrize("role", ["server", "client"])
def test_fast_path_refuses_after_close(role: str) -> None:
    conn = Connection.established(role)
    conn.close()
    with pytest.raises(ConnectionClosed):
        conn.send_binary(b"x")
    with pytest.raises(ConnectionClosed):
        conn.send_text("x")


@settings(max_examples=60, deadline=None)
@given(
    messages=st.lists(
        st.one_of(
            st.binary(max_size=300), st.text(max_size=100), st.integers(ZERO_COPY_MIN - 2, ZERO_COPY_MIN + 70000)
        ),
        max_size=6,
    ),
    role=st.sampled_from(["server", "client"]),
    buffers=st.booleans(),
)
def test_whatever_is_sent_decodes_back_in_order(messages, role: str, buffers: bool) -> None:
    conn = Connection.established(role, max_message_size=None)
    peer = Connection.established("client" if role == "server" else "server", max_message_size=None)
    expected = []
    for item in messages:
        if isinstance(item, int):
            item = bytes([item & 0xFF]) * item
        if isinstance(item, str):
            conn.send_text(item)
            expected.append(TextMessage(item))
        else:
            conn.send_binary(item)
            expected.append(BinaryMessage(item))
    wire = b"".join(conn.data_to_send_buffers()) if buffers else conn.data_to_send()
    assert (peer.receive_data(wire) if wire else []) == expected


def test_connection_state_lives_in_slots_and_subclasses_may_still_add_attributes() -> None:
    """Everything a Connection sets is a slot (see ``Connection.__slots__``): with an instance dict, CPython
    3.11 left every ``self.x`` of the receive and send paths an unspecialised lookup. A new attribute
    missing from ``__slots__`` shows here, once every path that sets state has run on both sides."""
    from wscodec.events import Request, Response

    client = Connection("client", host="example.com", stream_messages=True, defer_errors=True)
    server = Connection("server", stream_messages=True)
    assert vars(client) == {} and vars(server) == {}
    request = [e for e in server.receive_data(client.data_to_send()) if isinstance(e, Request)]
    assert request
    server.accept()
    assert any(isinstance(e, Response) for e in client.receive_data(server.data_to_send()))
    assert client.extensions and server.extensions  # permessage-deflate: the compressing paths run too
    client.send_fragment("hé", fin=False)
    client.send_fragment("llo", fin=True)
    client.send_binary(b"x" * 3000)
    server.receive_data(client.data_to_send())
    server.hold_pongs()
    client.send_ping(b"1")
    client.send_ping(b"2")
    server.receive_data(client.data_to_send())
    server.release_pongs()
    client.receive_data(server.data_to_send())
    client.receive_data(encode_frame(1, b"\xff"))  # invalid UTF-8, held by defer_errors
    assert client.pending_error is not None
    client.close()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    assert client.closed and server.closed
    assert vars(client) == {} and vars(server) == {}

    class Tagged(Connection):
        pass

    tagged = Tagged.established("server")
    tagged.user = "alice"  # type: ignore[attr-defined]
    assert vars(tagged) == {"user": "alice"}


def test_send_encoded_queues_a_shared_frame_in_order_and_counts_it() -> None:
    """broadcast() frames a message once and hands the same bytes to every connection: they go out after
    what the connection queued before, and count as that connection's sends."""
    frame = encode_frame(1, b"to everyone")
    first, second = Connection.established("server"), Connection.established("server")
    first.send_text("own")
    for conn in (first, second):
        conn.send_encoded(frame, len(b"to everyone"))
    assert [f.payload for f in decode(first.data_to_send())] == [b"own", b"to everyone"]
    assert second.data_to_send() == frame
    assert (first.messages_sent, first.payload_bytes_sent) == (2, 3 + 11)
    assert (second.messages_sent, second.payload_bytes_sent) == (1, 11)


def test_send_encoded_refuses_a_client_a_fragmented_send_and_a_closed_connection() -> None:
    client = Connection.established("client")
    with pytest.raises(RuntimeError, match="masks"):
        client.send_encoded(encode_frame(2, b"x"), 1)
    server = Connection.established("server")
    server.send_fragment(b"part", fin=False)
    with pytest.raises(RuntimeError, match="fragmented"):
        server.send_encoded(encode_frame(2, b"x"), 1)
    server.send_fragment(b"end", fin=True)
    server.close(1000)
    with pytest.raises(ConnectionClosed):
        server.send_encoded(encode_frame(2, b"x"), 1)
    assert server.messages_sent == 1
