"""``send(text=...)`` as websockets has it: bytes that are already UTF-8 (JSON from orjson, say) go out as a
Text frame without a decode and an encode, and a str as a Binary frame. RFC 6455 section 5.6 makes a Text
frame's payload UTF-8, so bytes sent as text are checked: a ValueError before anything is queued, not a
1007 from the peer afterwards.

Each layer is checked end to end: the sans-I/O Connection against a second Connection, the asyncio and the
threaded APIs and broadcast() against websockets' own client over loopback.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import pytest
import websockets.asyncio.client
import websockets.asyncio.server
import websockets.sync.client

import wscodec.asyncio
import wscodec.sync
from wscodec.connection import Connection
from wscodec.events import BinaryMessage, TextMessage

pytestmark = pytest.mark.timeout(60)

PAYLOAD = json.dumps({"name": "café", "n": [1, 2, 3]}, ensure_ascii=False).encode() + "€".encode()  # UTF-8, non-ASCII


def pair(deflate: bool) -> tuple[Connection, Connection]:
    """A client and a server Connection past the handshake, with or without permessage-deflate."""
    client = Connection("client", host="h", **({} if deflate else {"extensions": []}))
    server = Connection("server", **({} if deflate else {"extensions": []}))
    server.receive_data(client.data_to_send())
    server.accept()
    client.receive_data(server.data_to_send())
    assert bool(server.extensions) == deflate
    return client, server


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
def test_connection_send_message_text_overrides_the_frame_type(deflate: bool) -> None:
    client, server = pair(deflate)
    server.send_message(PAYLOAD, text=True)
    server.send_message(bytearray(PAYLOAD), text=True)
    server.send_message(memoryview(PAYLOAD), text=True)
    server.send_message("é!", text=False)
    server.send_message("plain")  # text=None: by type, as before
    server.send_message(b"raw", text=False)
    assert client.receive_data(server.data_to_send()) == [
        TextMessage(PAYLOAD.decode()),
        TextMessage(PAYLOAD.decode()),
        TextMessage(PAYLOAD.decode()),
        BinaryMessage("é!".encode()),
        TextMessage("plain"),
        BinaryMessage(b"raw"),
    ]
    # The client masks: the same from its side.
    client.send_message(PAYLOAD, text=True, compress=False)
    assert server.receive_data(client.data_to_send()) == [TextMessage(PAYLOAD.decode())]


@pytest.mark.parametrize("bad", [b"\xff", b"ok \xc3", b"\xed\xa0\x80", "é".encode("latin-1")])
def test_bytes_sent_as_text_must_be_utf8_and_nothing_is_queued_otherwise(bad: bytes) -> None:
    client, server = pair(deflate=False)
    with pytest.raises(ValueError, match="not valid UTF-8"):
        server.send_message(bad, text=True)
    assert server.bytes_to_send == 0
    server.send_message(bad)  # still usable: as binary it is fine
    assert client.receive_data(server.data_to_send()) == [BinaryMessage(bad)]


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
def test_fragments_sent_as_text_may_split_a_character(deflate: bool) -> None:
    client, server = pair(deflate)
    cut = PAYLOAD.index("é".encode()) + 1  # inside the two bytes of é
    server.send_fragment(PAYLOAD[:cut], fin=False, text=True)
    server.send_fragment(PAYLOAD[cut:], fin=True)
    server.send_fragment("as ", fin=False, text=False)
    server.send_fragment("bytes", fin=True)
    assert client.receive_data(server.data_to_send()) == [TextMessage(PAYLOAD.decode()), BinaryMessage(b"as bytes")]


def test_fragments_sent_as_text_are_checked_as_they_come() -> None:
    client, server = pair(deflate=False)
    with pytest.raises(ValueError, match="not valid UTF-8"):
        server.send_fragment(b"\xff", fin=False, text=True)
    assert server.bytes_to_send == 0
    server.send_message("after")  # no message was begun
    server.send_fragment(b"ok \xc3", fin=False, text=True)
    with pytest.raises(ValueError, match="after the others"):
        server.send_fragment(b"(", fin=False)  # not the second byte of a character
    with pytest.raises(ValueError, match="after the others"):
        server.send_fragment(b"", fin=True)  # the message would end inside a character
    with pytest.raises(TypeError, match="same type"):
        server.send_fragment("str", fin=True)
    assert client.receive_data(server.data_to_send())[0] == TextMessage("after")


# --------------------------------------------------------------------------- the I/O layers, to websockets


async def test_asyncio_send_text_and_broadcast_reach_websockets_as_the_frame_type_asked() -> None:
    received: asyncio.Queue[wscodec.asyncio.WebSocket] = asyncio.Queue()

    async def handler(ws: wscodec.asyncio.WebSocket) -> None:
        await received.put(ws)
        await ws.wait_closed()

    async with wscodec.asyncio.serve(handler, "127.0.0.1", 0, compression=None) as server:
        url = f"ws://127.0.0.1:{server.port}/"
        async with websockets.asyncio.client.connect(url, compression=None) as peer:
            ws = await asyncio.wait_for(received.get(), 10)
            await ws.send(PAYLOAD, text=True)
            await ws.send("str as binary", text=False)
            await ws.send([PAYLOAD[:3], PAYLOAD[3:]], text=True)
            await ws.send(b"by type")
            with pytest.raises(ValueError, match="not valid UTF-8"):
                await ws.send(b"\xff", text=True)
            wscodec.asyncio.broadcast([ws], PAYLOAD, text=True)
            await wscodec.asyncio.broadcast_wait([ws], "binary", text=False)
            with pytest.raises(ValueError, match="not valid UTF-8"):
                wscodec.asyncio.broadcast([ws], b"\xc3", text=True)
            got = [await asyncio.wait_for(peer.recv(), 10) for _ in range(6)]
            assert got == [
                PAYLOAD.decode(),
                b"str as binary",
                PAYLOAD.decode(),
                b"by type",
                PAYLOAD.decode(),
                b"binary",
            ]
            await ws.send("still open")  # the refused sends left the connection usable
            assert await asyncio.wait_for(peer.recv(), 10) == "still open"

    # With permessage-deflate, broadcast(compress=True) frames per connection: text= reaches that path too.
    async with (
        wscodec.asyncio.serve(handler, "127.0.0.1", 0) as server,
        websockets.asyncio.client.connect(f"ws://127.0.0.1:{server.port}/") as peer,
    ):
        ws = await asyncio.wait_for(received.get(), 10)
        assert ws.extensions
        wscodec.asyncio.broadcast([ws], PAYLOAD, compress=True, text=True)
        wscodec.asyncio.broadcast([ws], "binary", compress=True, text=False)
        assert [await asyncio.wait_for(peer.recv(), 10) for _ in range(2)] == [PAYLOAD.decode(), b"binary"]


async def test_asyncio_client_send_text_to_a_websockets_server() -> None:
    async def echo(ws: websockets.asyncio.server.ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with websockets.asyncio.server.serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with wscodec.asyncio.connect(f"ws://127.0.0.1:{port}/") as ws:  # deflate negotiated
            await ws.send(PAYLOAD, text=True)
            assert await asyncio.wait_for(ws.recv(), 10) == PAYLOAD.decode()
            await ws.send("é", text=False)
            assert await asyncio.wait_for(ws.recv(), 10) == "é".encode()


@pytest.fixture
def sync_server() -> Iterator[tuple[int, list[wscodec.sync.WebSocket], threading.Event]]:
    connections: list[wscodec.sync.WebSocket] = []
    ready = threading.Event()

    def handler(ws: wscodec.sync.WebSocket) -> None:
        connections.append(ws)
        ready.set()
        for _ in ws:
            pass

    with wscodec.sync.serve(handler, "127.0.0.1", 0, compression=None) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server.port, connections, ready
        finally:
            server.shutdown()
            thread.join(10)


def test_sync_send_text(sync_server: tuple[int, list[wscodec.sync.WebSocket], threading.Event]) -> None:
    port, connections, ready = sync_server
    with websockets.sync.client.connect(f"ws://127.0.0.1:{port}/", compression=None) as peer:
        assert ready.wait(10)
        (ws,) = connections
        ws.send(PAYLOAD, text=True)
        ws.send("str as binary", text=False)
        ws.send([PAYLOAD[:3], PAYLOAD[3:]], text=True)
        with pytest.raises(ValueError, match="not valid UTF-8"):
            ws.send(b"\xff", text=True)
        ws.send(b"by type")
        got = [peer.recv(timeout=10) for _ in range(4)]
        assert got == [PAYLOAD.decode(), b"str as binary", PAYLOAD.decode(), b"by type"]


@pytest.mark.parametrize("refused", [b"\xc3", b"\xff", b"\xa9\xa9"])
def test_a_refused_fragment_leaves_no_trace(refused: bytes) -> None:
    """Refused, a fragment is as if never given: neither what it held nor a failed state stays behind, so a
    correct fragment finishes the message and nothing invalid ever reaches the wire."""
    client, server = pair(deflate=False)
    server.send_fragment(b"caf", fin=False, text=True)
    with pytest.raises(ValueError, match="after the others"):
        server.send_fragment(refused, fin=True)
    with pytest.raises(ValueError, match="after the others"):
        server.send_fragment(b"\xa9", fin=True)  # a continuation byte with no character begun: still refused
    server.send_fragment(b"\xc3", fin=False)  # half of é
    with pytest.raises(ValueError, match="after the others"):
        server.send_fragment(b"!", fin=True)  # é unfinished
    server.send_fragment(b"\xa9!", fin=True)
    assert client.receive_data(server.data_to_send()) == [TextMessage("café!")]


@pytest.mark.parametrize(
    "text", ["a", "é", "€", "😀", "aé€😀" * 50], ids=["1-byte", "2-byte", "3-byte", "4-byte", "mixed"]
)
def test_fragments_cut_at_every_byte(text: str) -> None:
    """Every cut of the bytes into two fragments, a character split at any of its bytes, arrives whole."""
    data = text.encode()
    for cut in range(len(data) + 1):
        client, server = pair(deflate=False)
        server.send_fragment(data[:cut], fin=False, text=True)
        server.send_fragment(memoryview(data)[cut:], fin=True)
        assert client.receive_data(server.data_to_send()) == [TextMessage(text)], cut


def _as_buffer(data: bytes, kind: str) -> object:
    """``data`` as the bytes-like object ``kind`` names: the forms an application may hand send()."""
    if kind == "bytearray":
        return bytearray(data)
    if kind == "view":
        return memoryview(data)
    if kind == "words" and len(data) % 2 == 0:  # items of two bytes: lengths count items, not bytes
        return memoryview(data).cast("H")
    return data


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "view", "words"])
def test_fragments_as_any_buffer_are_checked_as_bytes_decode_would(kind: str) -> None:
    """Differential: random bytes (valid UTF-8 or broken near a cut) in three fragments of one buffer kind;
    the message is accepted exactly when ``bytes.decode`` accepts the whole, and then arrives whole."""
    import random

    rng = random.Random(6455)
    alphabet = ["a", "é", "€", "😀"]
    for _ in range(300):
        data = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12))).encode()
        if data and rng.random() < 0.4:
            at = rng.randrange(len(data))
            data = data[:at] + bytes([rng.choice([0x80, 0xC3, 0xE2, 0xF0, 0xFF])]) + data[at + 1 :]
        cuts = sorted(rng.randrange(len(data) + 1) for _ in range(2))
        parts = [data[: cuts[0]], data[cuts[0] : cuts[1]], data[cuts[1] :]]
        try:
            expected: str | None = data.decode()
        except UnicodeDecodeError:
            expected = None
        client, server = pair(deflate=False)
        try:
            server.send_fragment(_as_buffer(parts[0], kind), fin=False, text=True)
            server.send_fragment(_as_buffer(parts[1], kind), fin=False)
            server.send_fragment(_as_buffer(parts[2], kind), fin=True)
        except ValueError:
            assert expected is None, (data, parts)
            continue
        assert expected is not None, (data, parts)
        assert client.receive_data(server.data_to_send()) == [TextMessage(expected)]


def test_a_strided_fragment_after_a_split_character_is_checked_and_sent_whole() -> None:
    """A non-contiguous view continuing a character split by the fragment before: its last bytes are read
    without a cast (which a strided view refuses), the character it leaves split is carried on."""
    client, server = pair(deflate=False)
    server.send_fragment(b"caf\xc3", fin=False, text=True)
    server.send_fragment(memoryview(bytearray(b"\xa9-!-\xc3-"))[::2], fin=False)  # é! and half of é
    with pytest.raises(ValueError):
        server.send_fragment(b"!", fin=True)  # that é is still unfinished
    server.send_fragment(b"\xa9", fin=True)
    assert client.receive_data(server.data_to_send()) == [TextMessage("café!é")]
