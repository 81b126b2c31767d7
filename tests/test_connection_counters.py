"""The Connection's traffic counters (``messages_received``, ``payload_bytes_received``, ``messages_sent``,
``payload_bytes_sent``): every path a message takes counts it once, in payload bytes (text as UTF-8, inflated
on receipt, before compression on sending), whether the kernels' one-step paths or the Connection's own
handle it. The asyncio server's "closed" log line reports them."""

from __future__ import annotations

import array
import logging

import pytest
from _waiting import until

from wscodec import FrameDecoder, ProtocolError, encode_frame
from wscodec.asyncio import connect, serve
from wscodec.connection import Connection
from wscodec.events import BinaryFragment, BinaryMessage, TextFragment, TextMessage
from wscodec.extensions import PerMessageDeflate


def _pair(*, deflate: bool = False, **options: object) -> tuple[Connection, Connection]:
    def extensions(is_server: bool) -> list[PerMessageDeflate]:
        return [PerMessageDeflate(is_server=is_server)] if deflate else []

    client = Connection.established("client", extensions=extensions(False), **options)  # type: ignore[arg-type]
    server = Connection.established("server", extensions=extensions(True), **options)  # type: ignore[arg-type]
    return client, server


def _counts(conn: Connection) -> tuple[int, int, int, int]:
    return conn.messages_received, conn.payload_bytes_received, conn.messages_sent, conn.payload_bytes_sent


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
@pytest.mark.parametrize("stream_messages", [False, True], ids=["whole", "streamed"])
def test_every_send_path_counts_once_in_payload_bytes(deflate: bool, stream_messages: bool) -> None:
    client, server = _pair(deflate=deflate, stream_messages=stream_messages, max_message_size=None)
    assert _counts(client) == _counts(server) == (0, 0, 0, 0)
    client.send_text("héllo")  # 6 bytes of UTF-8
    client.send_binary(b"abc")
    client.send_binary(memoryview(array.array("i", [1, 2])))  # 8 bytes, 2 items
    client.send_message("x" * 70_000, compress=False)
    client.send_fragment("ab", fin=False)
    client.send_fragment("cd", fin=True)
    client.send_binary(b"z" * 200_000)  # large: the zero-copy path on a server, masked here
    assert client.messages_sent == 6
    assert client.payload_bytes_sent == 6 + 3 + 8 + 70_000 + 4 + 200_000
    events = server.receive_data(client.data_to_send())
    final = [e for e in events if type(e) in (TextMessage, BinaryMessage) or getattr(e, "final", False)]
    assert len(final) == 6
    assert server.messages_received == 6
    assert server.payload_bytes_received == client.payload_bytes_sent
    # and the other way: a server's one-step path, its large bytes without a copy, and a fragmented send
    server.send_text("ü" * 10)
    server.send_binary(b"q" * 100_000)
    server.send_fragment(b"12", fin=False)
    server.send_fragment(b"345", fin=True)
    assert (server.messages_sent, server.payload_bytes_sent) == (3, 20 + 100_000 + 5)
    client.receive_data(server.data_to_send())
    assert (client.messages_received, client.payload_bytes_received) == (3, 20 + 100_000 + 5)


def test_a_message_split_across_reads_and_frames_counts_once() -> None:
    _, server = _pair(stream_messages=True)
    wire = (
        encode_frame(1, "dé".encode(), fin=False, mask=True)
        + encode_frame(0, b"j", fin=False, mask=True)
        + encode_frame(0, "à vu".encode(), fin=True, mask=True)
        + encode_frame(2, b"0123456789", mask=True)
    )
    events = []
    for i in range(0, len(wire), 3):  # three bytes per read: every frame arrives in pieces
        events += server.receive_data(wire[i : i + 3])
    texts = "".join(e.data for e in events if type(e) is TextFragment)
    assert texts == "déjà vu"
    assert [e.data for e in events if type(e) is BinaryFragment] == [b"0123456789"]
    assert (server.messages_received, server.payload_bytes_received) == (2, len("déjà vu".encode()) + 10)


def test_what_is_refused_is_not_counted() -> None:
    client, server = _pair()
    with pytest.raises(TypeError):
        client.send_binary(12345)  # type: ignore[arg-type]
    assert client.messages_sent == client.payload_bytes_sent == 0
    events = server.receive_data(encode_frame(1, b"ok", mask=True) + encode_frame(1, b"\xff\xfe", mask=True))
    assert [type(e).__name__ for e in events][-2:] == ["ProtocolViolation", "Closed"]
    assert (server.messages_received, server.payload_bytes_received) == (1, 2)  # the valid one only


@pytest.mark.parametrize(
    "reads",
    [
        # a fragmented text message with bad UTF-8, then whole messages, in one read
        [b"\x01\x01\xff" + b"\x80\x00" + b"\x81\x02ok" + b"\x82\x03abc"],
        # a large text frame completed across reads whose last byte is bad, then whole messages
        [b"\x81\x7e\x13\x88" + b"a" * 1000, b"a" * 3999 + b"\xff" + b"\x81\x02ok" + b"\x82\x03abc"],
    ],
    ids=["fragmented", "large"],
)
def test_messages_after_a_bad_one_are_not_counted(reads: list[bytes]) -> None:
    """The messages that come after a 1007 in the same read are never delivered, so never counted; and the
    failed decoder holds nothing (the same on both backends)."""
    client = Connection.established("client")
    events = [event for data in reads for event in client.receive_data(data)]
    assert [type(e).__name__ for e in events] == ["ProtocolViolation", "Closed"]
    assert events[0].code == 1007
    assert (client.messages_received, client.payload_bytes_received) == (0, 0)


def test_a_failed_decoder_holds_nothing() -> None:
    """After feed_messages' 1007, nothing is reported as held, as after feed()'s own errors."""
    decoder = FrameDecoder("client", None, merge_continuations=True)
    with pytest.raises(ProtocolError) as info:
        decoder.feed_messages(b"\x01\x01\xff\x80\x00\x82\x7e\x20\x00" + b"x" * 5000, False, TextMessage, BinaryMessage)
    assert info.value.close_code == 1007
    assert (decoder.buffered, decoder.partial_header(), decoder.partial_payload()) == (0, -1, b"")


async def test_the_closed_log_line_reports_the_connection_counters(caplog: pytest.LogCaptureFixture) -> None:
    async def echo(ws) -> None:  # type: ignore[no-untyped-def]
        async for message in ws:
            await ws.send(message)

    def server_closed_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "wscodec.server" and "closed" in r.getMessage()]

    caplog.set_level(logging.INFO, logger="wscodec")
    async with serve(echo, "127.0.0.1", 0, ping_interval=None) as srv:
        async with connect(f"ws://127.0.0.1:{srv.port}/", ping_interval=None) as ws:
            for message in ("héllo", b"\x00" * 3000, "x"):
                await ws.send(message)
                assert await ws.recv() == message
        await until(lambda: bool(server_closed_lines()))
    # three messages of 6 (UTF-8), 3000 and 1 payload bytes, each way
    (closed,) = server_closed_lines()
    assert "received 3 messages (3007 bytes), sent 3 messages (3007 bytes)" in closed, closed
