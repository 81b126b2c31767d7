"""Tunable permessage-deflate (wscodec.compression.Deflate): validation, negotiation on serve()/connect()
with websockets as the peer, fragmented sends compressed with RSV1 on the first frame only, and the JSON
compression ratio of the defaults against zlib's default settings."""

from __future__ import annotations

import json
import random
import zlib
from typing import Any

import pytest
import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from wscodec import Connection
from wscodec._kernels import FrameDecoder
from wscodec.asyncio import WebSocket, connect, serve
from wscodec.compression import Deflate, extension_factories
from wscodec.events import TextMessage
from wscodec.extensions import PerMessageDeflate

pytestmark = pytest.mark.timeout(60)


def json_messages(count: int) -> list[bytes]:
    rng = random.Random(3)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    return [
        json.dumps(
            {
                "seq": i,
                "records": [
                    {
                        "id": 1000 + i * 6 + j,
                        "user": f"{rng.choice(words)}_{rng.randrange(999)}",
                        "score": round(rng.random() * 100, 2),
                        "tags": rng.sample(words, 3),
                    }
                    for j in range(6)
                ],
            }
        ).encode()
        for i in range(count)
    ]


def test_deflate_validates_its_settings() -> None:
    for bad in (
        {"server_max_window_bits": 8},
        {"client_max_window_bits": 16},
        {"memory_level": 0},
        {"compression_level": 10},
        {"compress_threshold": -1},
        {"server_max_window_bits": True},
    ):
        with pytest.raises(ValueError):
            Deflate(**bad)
    with pytest.raises(ValueError):
        extension_factories("gzip", "server")  # type: ignore[arg-type]
    assert extension_factories(None, "client") == ()


def test_extensions_must_be_factories_of_the_role() -> None:
    """Checked when the server or client is made: not an HTTP 500 for every client, or a failed connect."""
    from wscodec.extensions import ClientPerMessageDeflate, ServerPerMessageDeflate

    with pytest.raises(TypeError, match=r"compression=Deflate"):
        extension_factories("deflate", "server", [Deflate()])
    with pytest.raises(TypeError, match="ServerExtensionFactory"):
        extension_factories("deflate", "server", [ClientPerMessageDeflate()])
    with pytest.raises(TypeError, match="ClientExtensionFactory"):
        extension_factories("deflate", "client", [ServerPerMessageDeflate()])
    server = ServerPerMessageDeflate()
    assert extension_factories("deflate", "server", [server]) == (server,)
    assert extension_factories("deflate", "client", []) == ()


async def test_serve_refuses_a_deflate_among_extensions() -> None:
    async def handler(ws: WebSocket) -> None:
        pass

    with pytest.raises(TypeError, match=r"compression=Deflate"):
        await serve(handler, "127.0.0.1", 0, extensions=[Deflate()])  # type: ignore[list-item]


def test_defaults_compress_json_within_ten_percent_of_zlib_default() -> None:
    """The measured defaults: a stream of JSON messages with context takeover, and one 16 KiB message."""
    defaults = Deflate()
    stream = json_messages(200)
    big = b"[" + b",".join(json_messages(40)) + b"]"

    def size(messages: list[bytes], wbits: int, mem_level: int, level: int) -> int:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -wbits, mem_level)
        return sum(len(compressor.compress(m) + compressor.flush(zlib.Z_SYNC_FLUSH)) - 4 for m in messages)

    for messages in (stream, [big]):
        reference = size(messages, 15, 8, 6)
        ours = size(messages, defaults.server_max_window_bits or 15, defaults.memory_level, defaults.compression_level)
        assert ours <= reference * 1.10, (ours, reference)


def test_negotiated_parameters_follow_the_settings() -> None:
    settings = Deflate(
        server_max_window_bits=10,
        client_max_window_bits=9,
        server_no_context_takeover=True,
        client_no_context_takeover=True,
        memory_level=3,
        compression_level=9,
    )
    client = Connection("client", host="h", extensions=extension_factories(settings, "client"))
    server = Connection("server", extensions=extension_factories(settings, "server"))
    server.receive_data(client.data_to_send())
    server.accept()
    client.receive_data(server.data_to_send())
    (ext,) = server.extensions
    assert isinstance(ext, PerMessageDeflate)
    assert (ext.server_max_window_bits, ext.client_max_window_bits) == (10, 9)
    assert ext.server_no_context_takeover and ext.client_no_context_takeover
    assert (ext.memory_level, ext.compression_level) == (3, 9)
    (cext,) = client.extensions
    assert isinstance(cext, PerMessageDeflate)
    assert (cext.server_max_window_bits, cext.client_max_window_bits) == (10, 9)


def test_fragmented_send_is_compressed_with_rsv1_on_the_first_frame_only() -> None:
    client = Connection("client", host="h")
    server = Connection("server")
    server.receive_data(client.data_to_send())
    server.accept()
    client.receive_data(server.data_to_send())
    parts = ['{"a": "' + "x" * 400, "y" * 400, '"}']
    for i, part in enumerate(parts):
        client.send_fragment(part, fin=i == len(parts) - 1)
    wire = client.data_to_send()
    frames = FrameDecoder("server", None, allow_rsv1=True).feed(wire)
    assert [(f.opcode, f.rsv1, f.fin) for f in frames] == [(1, True, False), (0, False, False), (0, False, True)]
    assert len(wire) < 300  # compressed: 800 repeated bytes become a few dozen
    assert server.receive_data(wire) == [TextMessage("".join(parts))]
    # compress=False on the first fragment: sent as is.
    client.send_fragment(b"raw", fin=False, compress=False)
    client.send_fragment(b"bytes", fin=True)
    frames = FrameDecoder("server", None, allow_rsv1=True).feed(client.data_to_send())
    assert [f.rsv1 for f in frames] == [False, False]


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


@pytest.mark.interop
@pytest.mark.parametrize(
    "settings",
    [
        Deflate(),
        Deflate(server_max_window_bits=9, client_max_window_bits=9, memory_level=1, compression_level=1),
        Deflate(server_no_context_takeover=True, client_no_context_takeover=True),
        Deflate(server_max_window_bits=None, client_max_window_bits=None, memory_level=9, compression_level=-1),
    ],
)
async def test_serve_with_settings_against_websockets_client(settings: Deflate) -> None:
    async with (
        serve(echo, "127.0.0.1", 0, compression=settings) as server,
        websockets.connect(
            f"ws://127.0.0.1:{server.port}/",
            extensions=[ClientPerMessageDeflateFactory(client_max_window_bits=True)],
            compression=None,
        ) as ws,
    ):
        header = ws.response.headers["Sec-WebSocket-Extensions"]
        if settings.server_max_window_bits is not None:
            assert f"server_max_window_bits={settings.server_max_window_bits}" in header
        if settings.server_no_context_takeover:
            assert "server_no_context_takeover" in header
        for message in json_messages(5):
            await ws.send(message.decode())
            assert await ws.recv() == message.decode()
        await ws.send(iter([b"frag" * 100, b"ments" * 100]))  # websockets sends fragments, compressed
        assert await ws.recv() == b"frag" * 100 + b"ments" * 100


@pytest.mark.interop
async def test_connect_with_settings_against_websockets_server() -> None:
    async def ws_echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async with websockets.serve(ws_echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        settings = Deflate(server_max_window_bits=11, client_max_window_bits=10, client_no_context_takeover=True)
        async with connect(f"ws://127.0.0.1:{port}/", compression=settings) as ws:
            assert "server_max_window_bits=11" in ws.extensions
            for message in json_messages(5):
                await ws.send(message)
                assert await ws.recv() == message
            await ws.send(iter(["compressed ", "fragments " * 50]))
            assert await ws.recv() == "compressed " + "fragments " * 50
