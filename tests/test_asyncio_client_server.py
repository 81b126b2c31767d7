"""wscodec.asyncio client against wscodec.asyncio server, over loopback: messages, handshake options, shutdown.

Every test binds port 0 on 127.0.0.1 and is bounded by ``asyncio.wait_for``/pytest-timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from _tls_peers import seconds_held_after_a_tls_refusal, seconds_until_dropped_after_a_late_tls_start
from _waiting import until

from wscodec import ConcurrencyError, ConnectionClosed, ConnectionClosedError, InvalidHandshake, InvalidStatus
from wscodec.asyncio import Server, WebSocket, broadcast, broadcast_wait, connect, serve, unix_serve

pytestmark = pytest.mark.timeout(60)

MIB = 1 << 20


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


def url(server: Server, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


async def raw_http(port: int, request: bytes) -> bytes:
    """Send ``request`` on a fresh TCP connection; everything the server answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


# --------------------------------------------------------------------------- messages


@pytest.mark.parametrize("compression", ["deflate", None])
@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, MIB, 16 * MIB])
async def test_echo_binary_sizes(compression: str | None, size: int) -> None:
    # 16 MiB compressed: a compressible payload keeps the deflate run short.
    payload = bytes(range(256)) * (size // 256) if compression and size == 16 * MIB else os.urandom(size)
    async with (
        serve(echo, "127.0.0.1", 0, compression=compression, max_size=None) as server,
        connect(url(server), compression=compression, max_size=None) as ws,
    ):
        assert ws.extensions.startswith("permessage-deflate") == (compression == "deflate")
        await ws.send(payload)
        got = await asyncio.wait_for(ws.recv(), 30)
        assert got == payload


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_echo_text(compression: str | None) -> None:
    texts = ["", "hello", "héllo ✓ 🚀" * 1000, "x" * (3 * MIB)]
    async with (
        serve(echo, "127.0.0.1", 0, compression=compression, max_size=None) as server,
        connect(url(server), compression=compression, max_size=None) as ws,
    ):
        for text in texts:
            await ws.send(text)
            assert await asyncio.wait_for(ws.recv(), 10) == text


async def test_many_messages_keep_order() -> None:
    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server)) as ws:
        for i in range(500):
            await ws.send(f"m{i}")
        for i in range(500):
            assert await asyncio.wait_for(ws.recv(), 5) == f"m{i}"


async def test_fragmented_send_from_sync_and_async_iterables() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(5):
            await asyncio.sleep(0)
            yield bytes([i]) * 1000

    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server)) as ws:
        await ws.send(["frag", "mented ", "✓"])
        assert await ws.recv() == "fragmented ✓"
        await ws.send(chunks())
        assert await ws.recv() == b"".join(bytes([i]) * 1000 for i in range(5))
        await ws.send([b"one"])
        assert await ws.recv() == b"one"
        await ws.send([])  # nothing is sent
        await ws.send("after")
        assert await ws.recv() == "after"


async def test_concurrent_connections_share_the_read_buffer_safely() -> None:
    """Every connection of a loop reads into one shared buffer: partial frames of several connections in
    flight at once, large and small, masked both ways, must all come back intact."""
    rng = random.Random(7)
    messages = [rng.randbytes(rng.choice([1, 125, 70_000, 300_000])) for _ in range(6)]

    async def one_client(index: int) -> None:
        async with connect(url(server), compression=None, max_size=None) as ws:
            for n, message in enumerate(messages):
                payload = bytes([index]) + message if n % 2 else message + bytes([index])
                await ws.send(payload)
                assert await asyncio.wait_for(ws.recv(), 10) == payload

    async with serve(echo, "127.0.0.1", 0, compression=None, max_size=None) as server:
        await asyncio.wait_for(asyncio.gather(*(one_client(i) for i in range(6))), 60)


async def test_messages_sent_during_a_fragmented_send_wait_for_it() -> None:
    release = asyncio.Event()

    async def slow() -> AsyncIterator[str]:
        yield "a"
        await release.wait()
        yield "b"

    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server)) as ws:
        fragmented = asyncio.ensure_future(ws.send(slow()))
        await asyncio.sleep(0.05)
        other = asyncio.ensure_future(ws.send("other"))
        await asyncio.sleep(0.05)
        assert not other.done()
        release.set()
        await asyncio.wait_for(asyncio.gather(fragmented, other), 5)
        assert await ws.recv() == "ab"
        assert await ws.recv() == "other"


async def test_send_rejects_other_types() -> None:
    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server)) as ws:
        with pytest.raises(TypeError):
            await ws.send(42)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await ws.send({"a": 1})  # type: ignore[arg-type]
        await ws.send("still fine")
        assert await ws.recv() == "still fine"


async def test_message_over_max_size_fails_with_1009() -> None:
    seen: list[BaseException] = []

    async def handler(ws: WebSocket) -> None:
        try:
            await ws.recv()
        except ConnectionClosed as exc:
            seen.append(exc)

    async with serve(handler, "127.0.0.1", 0, max_size=1000) as server, connect(url(server)) as ws:
        await ws.send(b"x" * 1001)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1009
    assert seen and isinstance(seen[0], ConnectionClosed) and seen[0].code == 1009


# --------------------------------------------------------------------------- handshake


async def test_subprotocol_negotiation() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.send(ws.protocol)

    async with serve(handler, "127.0.0.1", 0, subprotocols=("superchat", "chat")) as server:
        async with connect(url(server), subprotocols=("chat", "superchat")) as ws:
            assert ws.protocol == "superchat"
            assert await ws.recv() == "superchat"
        async with connect(url(server), subprotocols=("chat",)) as ws:
            assert ws.protocol == "chat"
        for offered in (("other",), None):  # none in common: 400, as websockets answers
            with pytest.raises(InvalidStatus) as info:
                await connect(url(server), subprotocols=offered)
            assert info.value.status_code == 400


async def test_select_subprotocol_callback() -> None:
    offers: list[list[str]] = []

    def select(offered: list[str]) -> str | None:
        offers.append(offered)
        return offered[-1] if offered else None

    async with (
        serve(echo, "127.0.0.1", 0, select_subprotocol=select) as server,
        connect(url(server), subprotocols=("a", "b")) as ws,
    ):
        assert ws.protocol == "b"
    assert offers == [["a", "b"]]


async def test_process_request_answers_plain_http() -> None:
    seen: list[Any] = []

    def process_request(request: Any) -> Any:
        seen.append(request)
        if request.path == "/health":
            return 200, [("Content-Type", "text/plain")], b"OK\n"
        return None

    async with serve(echo, "127.0.0.1", 0, process_request=process_request) as server:
        assert server.port is not None
        answer = await raw_http(server.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert answer.endswith(b"\r\n\r\nOK\n")
        # Not an upgrade and not handled: the handshake's own answer (426).
        answer = await raw_http(server.port, b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 426 ")
        async with connect(url(server, "/chat?x=1")) as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
            assert ws.request is not None and ws.request.path == "/chat?x=1"
    assert [r.path for r in seen] == ["/health", "/other", "/chat?x=1"]


async def test_async_process_request_can_refuse_upgrades() -> None:
    async def process_request(request: Any) -> Any:
        await asyncio.sleep(0)
        if request.header("Authorization") != "Bearer yes":
            return 401, {"WWW-Authenticate": "Bearer"}, "who are you?"
        return None

    async with serve(echo, "127.0.0.1", 0, process_request=process_request) as server:
        with pytest.raises(InvalidStatus) as info:
            await connect(url(server))
        assert info.value.status_code == 401
        assert info.value.body == b"who are you?"
        assert ("WWW-Authenticate", "Bearer") in info.value.headers
        async with connect(url(server), extra_headers={"Authorization": "Bearer yes"}) as ws:
            await ws.send("in")
            assert await ws.recv() == "in"


async def test_process_request_error_is_500() -> None:
    def process_request(request: Any) -> Any:
        raise RuntimeError("boom")

    async with serve(echo, "127.0.0.1", 0, process_request=process_request) as server:
        with pytest.raises(InvalidStatus) as info:
            await connect(url(server))
        assert info.value.status_code == 500


async def test_origins_403() -> None:
    async with serve(echo, "127.0.0.1", 0, origins=["https://good.example"]) as server:
        with pytest.raises(InvalidStatus) as info:
            await connect(url(server), origin="https://evil.example")
        assert info.value.status_code == 403
        with pytest.raises(InvalidStatus):
            await connect(url(server))
        async with connect(url(server), origin="https://good.example") as ws:
            await ws.send("ok")
            assert await ws.recv() == "ok"


async def test_max_connections_503() -> None:
    """Beyond max_connections the upgrade gets 503 with Retry-After; the open ones are untouched, and a
    slot freed by a close is taken by the next client."""
    async with serve(echo, "127.0.0.1", 0, max_connections=2) as server:
        first = await connect(url(server))
        second = await connect(url(server))
        with pytest.raises(InvalidStatus) as info:
            await connect(url(server))
        assert info.value.status_code == 503
        assert ("Retry-After", "1") in info.value.headers
        for ws, text in ((first, "first"), (second, "second")):
            await ws.send(text)
            assert await asyncio.wait_for(ws.recv(), 10) == text
        assert len(server.connections) == 2
        await first.close()
        deadline = time.monotonic() + 10
        while len(server.connections) >= 2:
            assert time.monotonic() < deadline, "the closed connection was never forgotten"
            await asyncio.sleep(0.01)
        third = await connect(url(server))
        await third.send("third")
        assert await asyncio.wait_for(third.recv(), 10) == "third"
        with pytest.raises(InvalidStatus):
            await connect(url(server))  # full again
        await second.close()
        await third.close()


async def test_invalid_response_raises_invalid_handshake() -> None:
    async def not_websocket(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)
        writer.close()

    server = await asyncio.start_server(not_websocket, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(InvalidHandshake) as info:
            await connect(f"ws://127.0.0.1:{port}/")
        assert not isinstance(info.value, InvalidStatus)
    finally:
        server.close()


async def test_client_open_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        # TimeoutError, not the InvalidHandshake of the server closing after 3 s: open_timeout fired.
        with pytest.raises(TimeoutError):
            await connect(f"ws://127.0.0.1:{port}/", open_timeout=0.3)
    finally:
        server.close()


async def test_awaiting_one_connect_twice_opens_two_connections() -> None:
    """As in websockets, each ``await`` of the same ``connect`` object opens a connection of its own: the
    second one while the first is still open, and a third after both have closed."""

    async def hello(ws: WebSocket) -> None:
        await ws.send("hello")
        await ws.recv()  # the client says when to close
        await ws.close()

    async with serve(hello, "127.0.0.1", 0) as server:
        opener = connect(url(server))
        first = await opener
        second = await opener
        assert second is not first
        for ws in (first, second):
            assert await asyncio.wait_for(ws.recv(), 5) == "hello"
        for ws in (second, first):
            await ws.send("bye")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1000
        third = await opener
        assert third is not first and third is not second
        assert await asyncio.wait_for(third.recv(), 5) == "hello"
        await third.close()
        # async with closes the connection it opened, not an earlier one.
        async with opener as fourth:
            assert await asyncio.wait_for(fourth.recv(), 5) == "hello"
        assert fourth.close_code == 1000 and fourth is not third


async def test_server_open_timeout_drops_silent_clients() -> None:
    async with serve(echo, "127.0.0.1", 0, open_timeout=0.3) as server:
        assert server.port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 20) == b""
        assert 0.2 < time.monotonic() - started < 9  # open_timeout, not the 10 s default (generous on load)
        writer.close()


async def test_connection_refused() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    with pytest.raises(OSError):
        await connect(f"ws://127.0.0.1:{port}/")


def test_bad_urls() -> None:
    with pytest.raises(ValueError):
        connect("http://127.0.0.1/")
    with pytest.raises(ValueError):
        connect("ws://127.0.0.1/", ssl=True)


# --------------------------------------------------------------------------- handler lifecycle


async def test_handler_return_closes_1000_and_raise_closes_1011() -> None:
    async def handler(ws: WebSocket) -> None:
        message = await ws.recv()
        if message == "fail":
            raise RuntimeError("handler bug")

    async with serve(handler, "127.0.0.1", 0) as server:
        async with connect(url(server)) as ws:
            await ws.send("bye")
            assert [m async for m in ws] == []
            assert ws.close_code == 1000
        async with connect(url(server)) as ws:
            await ws.send("fail")
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.code == 1011
            assert ws.close_code == 1011 and ws.close_reason == "internal error"


async def test_client_close_code_reaches_handler() -> None:
    closes: list[tuple[int | None, str]] = []

    async def handler(ws: WebSocket) -> None:
        with pytest.raises(ConnectionClosedError):  # 4000: not a ConnectionClosedOK, as in websockets
            async for _ in ws:
                pass
        closes.append((ws.close_code, ws.close_reason))

    async with serve(handler, "127.0.0.1", 0) as server:
        ws = await connect(url(server))
        await ws.close(4000, "client bye")
        assert ws.close_code == 4000
        assert ws.ready_state == WebSocket.CLOSED
        for _ in range(100):
            if closes:
                break
            await asyncio.sleep(0.01)
    assert closes == [(4000, "client bye")]


def test_unix_serve_takes_every_option_of_serve_but_the_tcp_ones() -> None:
    """An option added to ``serve`` and not to ``unix_serve`` (as ``busy_poll`` and ``backlog`` once were)
    fails here."""
    tcp_only = {"host", "port", "reuse_address", "reuse_port"}
    serve_options = set(inspect.signature(serve).parameters)
    unix_options = set(inspect.signature(unix_serve).parameters)
    assert serve_options - unix_options == tcp_only
    assert unix_options - serve_options == {"path"}


async def test_unix_serve(tmp_path: Any) -> None:
    path = str(tmp_path / "ws.sock")
    async with unix_serve(echo, path) as server:
        assert server.port is None
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(UPGRADE)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101 ")
        writer.write(b"\x81\x82abcd" + bytes(a ^ b for a, b in zip(b"hi", b"abcd", strict=False)))
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"\x81\x02hi"
        writer.close()


# --------------------------------------------------------------------------- shutdown


async def test_server_close_ends_100_connections_with_1001() -> None:
    server = await serve(echo, "127.0.0.1", 0, close_timeout=5)
    clients = [await connect(url(server)) for _ in range(100)]
    for _ in range(100):
        if len(server.connections) == 100:
            break
        await asyncio.sleep(0.01)
    assert len(server.connections) == 100
    started = time.monotonic()
    server.close()
    await asyncio.wait_for(server.wait_closed(), 10)
    results = await asyncio.gather(*(asyncio.wait_for(ws.recv(), 20) for ws in clients), return_exceptions=True)
    assert time.monotonic() - started < 9  # under the 10 s close_timeout: nobody was waited out
    assert all(isinstance(r, ConnectionClosed) and r.code == 1001 for r in results), results[:3]
    await asyncio.gather(*(asyncio.wait_for(ws.wait_closed(), 5) for ws in clients))
    assert {ws.close_code for ws in clients} == {1001}
    assert not server.connections


async def test_wait_closed_is_bounded_when_a_peer_never_answers() -> None:
    server = await serve(echo, "127.0.0.1", 0, close_timeout=0.5)
    assert server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(UPGRADE)
    await reader.readuntil(b"\r\n\r\n")
    started = time.monotonic()
    server.close()
    await asyncio.wait_for(server.wait_closed(), 20)
    assert time.monotonic() - started < 9  # close_timeout (0.5 s), not the 10 s default
    writer.close()


# --------------------------------------------------------------------------- broadcast


CHUNK = b"x" * 65536
SLOW_LIMIT = 256 * 1024


async def _fill(slow: WebSocket) -> int:
    """Broadcast to ``slow`` alone until its server-side buffer passes SLOW_LIMIT: the client stopped reading
    (its queue of one message is full), so what is broadcast piles up. The number of chunks sent."""
    for sent in range(1, 2001):
        broadcast([slow], CHUNK)
        if slow.buffered_amount > SLOW_LIMIT:
            return sent
        await asyncio.sleep(0)
    raise AssertionError("the slow client's buffer never filled")


async def _broadcast_setup(policy: str) -> tuple[Server, list[WebSocket], WebSocket, WebSocket, int]:
    """20 fast clients and one real client that stops reading (max_queue=1, never calls recv())."""
    server = await serve(
        echo, "127.0.0.1", 0, slow_consumer=policy, slow_consumer_limit=SLOW_LIMIT, close_timeout=1, compression=None
    )
    fast = [await connect(url(server), compression=None) for _ in range(20)]
    client = await connect(url(server), compression=None, max_queue=1, max_size=None)
    deadline = time.monotonic() + 10
    while len(server.connections) < 21:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    slow = next(ws for ws in server.connections if ws.remote_address == client.local_address)
    sent = await _fill(slow)
    return server, fast, slow, client, sent


async def _read_until(client: WebSocket, last: Any, limit: int) -> list[Any]:
    """What ``client`` receives up to ``last`` (included), or until it closes; at most ``limit`` messages."""
    got: list[Any] = []
    while len(got) < limit:
        try:
            message = await asyncio.wait_for(client.recv(), 20)
        except ConnectionClosed:
            break
        got.append(message)
        if message == last:
            break
    return got


async def _teardown(server: Server, fast: list[WebSocket], client: WebSocket) -> None:
    for ws in [*fast, client]:
        if ws.transport is not None:
            ws.transport.abort()
    server.close()
    await server.wait_closed()


def _record_failure(ws: WebSocket) -> list[Any]:
    """The error and close events ``ws`` fires, in order: (type, the error or the close code)."""
    fired: list[Any] = []
    ws.onerror = lambda event: fired.append(("error", event.error))
    ws.onclose = lambda event: fired.append(("close", event.code))
    return fired


async def test_broadcast_slow_consumer_close() -> None:
    """The slow consumer is failed with 1008 and fires error (a BufferError naming the limit), then close,
    as every failure of ours does; the others get both messages."""
    server, fast, slow, client, sent = await _broadcast_setup("close")
    fired = _record_failure(slow)
    try:
        broadcast(server.connections, "to all")
        broadcast(server.connections, b"\x01\x02")
        for ws in fast:
            assert await asyncio.wait_for(ws.recv(), 10) == "to all"
            assert await asyncio.wait_for(ws.recv(), 10) == b"\x01\x02"
        await asyncio.wait_for(slow.wait_closed(), 20)
        assert slow.close_code == 1008
        assert slow not in server.connections
        assert [kind for kind, _ in fired] == ["error", "close"] and fired[1][1] == 1008, fired
        assert isinstance(fired[0][1], BufferError) and "slow_consumer_limit" in str(fired[0][1])
        got = await _read_until(client, None, sent + 10)  # the client reads again: chunks, then the end
        assert "to all" not in got and b"\x01\x02" not in got
        assert all(message == CHUNK for message in got)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(client.recv(), 20)
    finally:
        await _teardown(server, fast, client)


async def test_a_slow_consumer_closing_when_its_turn_comes_keeps_its_own_close() -> None:
    """Two slow consumers; the first one failed (1008) has an error listener that closes the server, so the
    second is closing (1001) when the broadcast comes to fail it: it keeps its own close, no error fires."""
    server = await serve(echo, "127.0.0.1", 0, slow_consumer="close", slow_consumer_limit=SLOW_LIMIT, close_timeout=1)
    clients = [await connect(url(server), compression=None, max_queue=1, max_size=None) for _ in range(2)]
    try:
        deadline = time.monotonic() + 10
        while len(server.connections) < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        slow = list(server.connections)
        fired = {ws: _record_failure(ws) for ws in slow}
        for ws in slow:
            ws.onerror = lambda event, ws=ws: (fired[ws].append(("error", event.error)), server.close())
            await _fill(ws)
        broadcast(slow, "to all")
        for ws in slow:
            await asyncio.wait_for(ws.wait_closed(), 20)
        outcomes = sorted((ws.close_code == 1008, [kind for kind, _ in fired[ws]]) for ws in slow)
        assert outcomes == [(False, ["close"]), (True, ["error", "close"])], [fired[ws] for ws in slow]
    finally:
        for client in clients:
            if client.transport is not None:
                client.transport.abort()
        server.close()
        await server.wait_closed()


async def test_broadcast_slow_consumer_skip() -> None:
    server, fast, slow, client, sent = await _broadcast_setup("skip")
    try:
        broadcast(server.connections, "to all")
        for ws in fast:
            assert await asyncio.wait_for(ws.recv(), 10) == "to all"
        assert slow.ready_state == WebSocket.OPEN
        # The client reads again; once its buffer has drained it gets the next broadcast, not the skipped one.
        reading = asyncio.ensure_future(_read_until(client, "after", sent + 10))
        deadline = time.monotonic() + 20
        while slow.buffered_amount > SLOW_LIMIT:
            assert time.monotonic() < deadline, "the slow client's buffer never drained"
            await asyncio.sleep(0.01)
        broadcast(server.connections, "after")
        got = await asyncio.wait_for(reading, 30)
        assert got == [CHUNK] * sent + ["after"]  # "to all" was skipped for it, nothing else was lost
        for ws in fast:
            assert await asyncio.wait_for(ws.recv(), 10) == "after"
    finally:
        await _teardown(server, fast, client)


async def test_broadcast_wait_waits_for_the_slow_consumer() -> None:
    server, fast, slow, client, sent = await _broadcast_setup("wait")
    try:
        task = asyncio.ensure_future(broadcast_wait(server.connections, "to all"))
        for ws in fast:
            assert await asyncio.wait_for(ws.recv(), 10) == "to all"
        for _ in range(100):  # loop turns, not time: the slow client reads nothing, so nothing can move
            await asyncio.sleep(0)
        assert not task.done()
        assert slow.buffered_amount > SLOW_LIMIT
        # The client reads again: the broadcast completes and it gets everything, "to all" last.
        got = await _read_until(client, "to all", sent + 10)
        await asyncio.wait_for(task, 20)
        assert got == [CHUNK] * sent + ["to all"]
        assert slow.ready_state == WebSocket.OPEN
    finally:
        await _teardown(server, fast, client)


async def test_broadcast_without_waiting_bounds_a_slow_consumer_of_policy_wait() -> None:
    """Policy "wait" with broadcast(), which cannot wait: the slow client is still written to, up to
    WAIT_CEILING times slow_consumer_limit, then closed with 1008 (the same through a channel); a client
    that never reads cannot grow the server's memory under any policy."""
    from wscodec.asyncio.server import WAIT_CEILING

    server, fast, slow, client, _sent = await _broadcast_setup("wait")
    try:
        big = b"y" * SLOW_LIMIT
        sends = 0
        while slow.ready_state == WebSocket.OPEN and sends < 4 * WAIT_CEILING:
            assert slow.buffered_amount <= SLOW_LIMIT * WAIT_CEILING + len(big) + 64
            broadcast(server.connections, big)
            sends += 1
            for ws in fast:
                assert await asyncio.wait_for(ws.recv(), 10) == big
        assert sends >= WAIT_CEILING - 1  # written to beyond slow_consumer_limit first, as "wait" says
        await asyncio.wait_for(slow.wait_closed(), 20)
        assert slow.close_code == 1008
        assert all(ws.ready_state == WebSocket.OPEN for ws in fast)
    finally:
        await _teardown(server, fast, client)


async def test_broadcast_wait_timeout_closes_a_slow_consumer_with_1008() -> None:
    """broadcast_wait(timeout=0.5): the consumer that never drains is closed with 1008 after 0.5 s, as
    policy "close" closes it, and the others got the message; without a timeout only the keepalive ends it."""
    server, fast, slow, client, _sent = await _broadcast_setup("wait")
    fired = _record_failure(slow)
    try:
        started = time.monotonic()
        await asyncio.wait_for(broadcast_wait(server.connections, "to all", timeout=0.5), 10)
        assert 0.4 < time.monotonic() - started < 5
        for ws in fast:
            assert await asyncio.wait_for(ws.recv(), 10) == "to all"
        await asyncio.wait_for(slow.wait_closed(), 20)
        assert slow.close_code == 1008
        assert [kind for kind, _ in fired] == ["error", "close"] and isinstance(fired[0][1], TimeoutError), fired
        await fast[0].send("still here")
        assert await asyncio.wait_for(fast[0].recv(), 10) == "still here"
    finally:
        await _teardown(server, fast, client)


async def test_broadcast_wait_timeout_leaves_a_connection_being_closed_its_own_close() -> None:
    """The application closes the waited-for connection (1000) before the timeout: it is not then failed
    with 1008, and it ends as it does without broadcast_wait (1006: the client never reads our Close)."""
    server, fast, slow, client, _sent = await _broadcast_setup("wait")
    try:
        task = asyncio.ensure_future(broadcast_wait([slow], "to all", timeout=0.5))
        await asyncio.sleep(0)
        closing = asyncio.ensure_future(slow.close(1000, "bye"))
        await asyncio.wait_for(task, 10)
        await asyncio.wait_for(closing, 10)
        assert slow.close_code == 1006, (slow.close_code, slow.close_reason)
    finally:
        await _teardown(server, fast, client)


async def test_broadcast_wait_timeout_0_spares_a_connection_that_takes_writes() -> None:
    """More than slow_consumer_limit unsent, but under write_limit (the transport takes writes): nothing to
    wait for, so timeout=0 closes nothing (before Python 3.12, wait_for(..., 0) cancels before any check)."""
    async with serve(
        echo, "127.0.0.1", 0, slow_consumer="wait", slow_consumer_limit=0, write_limit=64 * MIB, compression=None
    ) as server:
        client = await connect(url(server), compression=None, max_queue=1, max_size=None)
        try:
            await until(lambda: len(server.connections) == 1)
            (ws,) = server.connections
            for _ in range(2000):  # until the kernel's buffers are full and the transport holds some
                broadcast([ws], CHUNK)
                if ws.buffered_amount > 0:
                    break
                await asyncio.sleep(0)
            assert ws.buffered_amount > 0 and not ws._write_paused
            await asyncio.wait_for(broadcast_wait([ws], "to all", timeout=0), 10)
            assert ws.ready_state == WebSocket.OPEN and ws.close_code is None
        finally:
            if client.transport is not None:
                client.transport.abort()


@pytest.mark.parametrize(
    ("limit", "error"), [(None, TypeError), ("1000", TypeError), (True, TypeError), (-5, ValueError)]
)
async def test_a_slow_consumer_limit_no_broadcast_could_use_is_refused_by_serve(limit: Any, error: type) -> None:
    """Refused when the server is made, not by the first broadcast (None failed every broadcast with a
    TypeError; -5 closed every healthy client with 1008)."""
    with pytest.raises(error, match="slow_consumer_limit"):
        async with serve(echo, "127.0.0.1", 0, slow_consumer_limit=limit):
            pass


@pytest.mark.parametrize("timeout", [-1, float("nan"), "1"])
async def test_broadcast_wait_refuses_a_timeout_that_is_no_seconds(timeout: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="timeout"):
        await broadcast_wait([], "x", timeout=timeout)


async def test_broadcast_wait_skips_a_slow_consumer_that_vanishes() -> None:
    """A waited-for consumer that goes away is skipped, as broadcast() skips closed connections: its
    ConnectionClosed must not reach the caller, which in the chat pattern (broadcast_wait inside
    ``async for message in ws``) would end the broadcaster's own, healthy connection."""
    server, fast, slow, client, _sent = await _broadcast_setup("wait")
    try:
        task = asyncio.ensure_future(broadcast_wait(server.connections, "to all"))
        for ws in fast:
            assert await asyncio.wait_for(ws.recv(), 10) == "to all"
        assert not task.done()
        assert client.transport is not None
        client.transport.abort()  # the slow consumer vanishes (RST) while broadcast_wait waits for it
        assert await asyncio.wait_for(task, 10) is None
        await asyncio.wait_for(slow.wait_closed(), 10)
        # The other connections are untouched and still served.
        for ws in fast:
            assert ws.ready_state == WebSocket.OPEN
        await fast[0].send("still here")
        assert await asyncio.wait_for(fast[0].recv(), 10) == "still here"
    finally:
        await _teardown(server, fast, client)


async def test_broadcast_to_many_builds_one_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """One frame per message whatever the number of connections (counted at the encoder the server calls);
    with compress=True each connection compresses its own copy instead."""
    from wscodec.asyncio import server as server_module

    built: list[bytes] = []
    real = server_module.encode_frame

    def counting(*args: Any, **kwargs: Any) -> bytes:
        frame = real(*args, **kwargs)
        built.append(frame)
        return frame

    monkeypatch.setattr(server_module, "encode_frame", counting)
    async with serve(echo, "127.0.0.1", 0) as server:
        clients = [await connect(url(server)) for _ in range(50)]
        deadline = time.monotonic() + 10
        while len(server.connections) < 50:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        for i in range(10):
            broadcast(server.connections, f"news {i}")
        assert len(built) == 10
        assert built == [real(1, f"news {i}".encode()) for i in range(10)]
        for ws in clients:
            assert [await asyncio.wait_for(ws.recv(), 10) for _ in range(10)] == [f"news {i}" for i in range(10)]
        broadcast(server.connections, "compressed " * 100, compress=True)
        assert len(built) == 10  # compressed per connection: no shared frame
        for ws in clients:
            assert await asyncio.wait_for(ws.recv(), 10) == "compressed " * 100
        await asyncio.gather(*(ws.close() for ws in clients))


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A throwaway certificate for 127.0.0.1, signed by a throwaway CA, made in Python (trustme): the
    certificate file holds the chain (leaf, then CA), so trusting it as a cafile trusts the CA."""
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems) + ca.cert_pem.bytes())
    key.write_bytes(leaf.private_key_pem.bytes())
    return str(cert), str(key)


async def test_wss(tls_files: tuple[str, str]) -> None:
    import ssl

    cert, key = tls_files
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=cert)
    async with serve(echo, "127.0.0.1", 0, ssl=server_context) as server:
        wss = f"wss://127.0.0.1:{server.port}/secure"
        async with connect(wss, ssl=client_context) as ws:
            await ws.send("secret")
            assert await ws.recv() == "secret"
            big = os.urandom(600_000)
            await ws.send(big)
            assert await asyncio.wait_for(ws.recv(), 10) == big
        assert ws.close_code == 1000
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect(wss)  # default context: verification on, the self-signed certificate is refused


async def test_open_timeout_runs_from_tcp_accept_tls_included(tls_files: tuple[str, str]) -> None:
    """open_timeout=1: a client that starts TLS 0.7 s after connecting, then sends nothing, is dropped 1 s
    after it connected; the request got a whole open_timeout of its own after TLS (1.7 s)."""
    import ssl

    cert, key = tls_files
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=cert)
    async with serve(echo, "127.0.0.1", 0, ssl=server_context, open_timeout=1) as server:
        late_start = seconds_until_dropped_after_a_late_tls_start
        elapsed = await asyncio.to_thread(late_start, server.port, client_context, 0.7)
        assert 0.9 < elapsed < 1.45, f"dropped after {elapsed:.2f} s"
        async with connect(f"wss://127.0.0.1:{server.port}/", ssl=client_context) as ws:
            await ws.send("served")
            assert await asyncio.wait_for(ws.recv(), 10) == "served"


async def test_a_refusal_over_tls_holds_the_socket_for_reject_linger_at_most(tls_files: tuple[str, str]) -> None:
    """A refused request over TLS from a client that never answers close_notify: the socket closes after
    REJECT_LINGER (2 s), as over TCP, not after close_timeout."""
    import ssl

    cert, key = tls_files
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=cert)
    async with serve(echo, "127.0.0.1", 0, ssl=server_context, close_timeout=8) as server:
        status, held = await asyncio.to_thread(seconds_held_after_a_tls_refusal, server.port, client_context)
        assert status.startswith(b"HTTP/1.1 426 "), status
        assert held < 4, f"held {held:.2f} s"


async def test_an_exception_in_the_async_with_block_closes_with_1011() -> None:
    """As websockets' ``__aexit__``: 1011 (internal error) when the block raised, 1000 otherwise."""
    codes: list[int | None] = []

    async def handler(ws: WebSocket) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                pass
        codes.append(ws.close_code)

    async with serve(handler, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.port}/"
        with pytest.raises(ZeroDivisionError):
            async with connect(url):
                1 / 0  # noqa: B018
        async with connect(url):
            pass
        deadline = time.monotonic() + 5
        while len(codes) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    assert codes == [1011, 1000]


async def test_serve_forever_returns_after_close_and_closes_when_cancelled() -> None:
    """websockets' recipe, ``loop.add_signal_handler(SIGTERM, server.close)`` then ``await
    server.serve_forever()``: ``close()`` makes it return (it raised CancelledError, as
    ``asyncio.Server.serve_forever`` does); cancelling it closes the server and raises the cancellation."""

    async def answer(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    server = await serve(answer, "127.0.0.1", 0)
    forever = asyncio.ensure_future(server.serve_forever())
    async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
        await ws.send("served")
        assert await asyncio.wait_for(ws.recv(), 5) == "served"
        asyncio.get_running_loop().call_later(0.05, server.close)
        assert await asyncio.wait_for(forever, 15) is None
        assert ws.close_code == 1001
    assert not server.is_serving()

    server = await serve(answer, "127.0.0.1", 0)
    forever = asyncio.ensure_future(server.serve_forever())
    await asyncio.sleep(0.05)
    forever.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(forever, 15)
    assert not server.is_serving()


async def test_close_during_our_fragmented_send_fails_the_connection_1011() -> None:
    """``close()`` (or the server's shutdown) while part of a message of ours is out: a Close cut it short
    and looked like a normal end (the peer's ``async for`` ended quietly, ``ConnectionClosedOK``, the frames
    thrown away). As websockets and the threaded API: 1011, and every side sees an error."""
    ended: list[BaseException | None] = []

    async def handler(ws: WebSocket) -> None:
        try:
            async for _ in ws:
                pass
        except ConnectionClosed as exc:
            ended.append(exc)
        else:
            ended.append(None)

    async with serve(handler, "127.0.0.1", 0) as server:
        ws = await connect(f"ws://127.0.0.1:{server.port}/")
        release = asyncio.Event()

        async def fragments() -> AsyncIterator[str]:
            yield "part 1"
            yield "part 2"
            await release.wait()
            yield "part 3"

        fired = _record_failure(ws)
        sending = asyncio.ensure_future(ws.send(fragments()))
        await asyncio.sleep(0.1)
        await asyncio.wait_for(ws.close(), 5)
        release.set()
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(sending, 5)
        assert (ws.close_code, ws.close_reason) == (1011, "close during fragmented message")
        await asyncio.wait_for(ws.wait_closed(), 5)
        assert [kind for kind, _ in fired] == ["error", "close"], fired
        assert isinstance(fired[0][1], ConcurrencyError) and fired[1][1] == 1011
        deadline = time.monotonic() + 5
        while not ended and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert isinstance(ended[0], ConnectionClosedError)
        assert ended[0].rcvd is not None and ended[0].rcvd.code == 1011


async def test_shutdown_during_a_handlers_fragmented_send_fails_it_1011() -> None:
    streaming = asyncio.Event()

    async def handler(ws: WebSocket) -> None:
        async def fragments() -> AsyncIterator[bytes]:
            for count in range(1000):
                yield b"x" * 100
                if count == 2:  # (one fragment is held back to know whether it is the last)
                    streaming.set()
                await asyncio.sleep(0.01)

        with contextlib.suppress(ConnectionClosed):
            await ws.send(fragments())

    server = await serve(handler, "127.0.0.1", 0)
    async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
        await asyncio.wait_for(streaming.wait(), 5)
        server.close()
        with pytest.raises(ConnectionClosedError) as info:
            await asyncio.wait_for(ws.recv(), 5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1011
    await asyncio.wait_for(server.wait_closed(), 15)


async def test_an_async_iterables_fragments_go_out_as_they_come() -> None:
    """Each fragment of an async iterable is sent when it is yielded (it was held until the next one came,
    to put FIN on the last), and an empty frame ends the message, as websockets sends it."""
    frames: list[tuple[int, bool, bytes]] = []
    got_first = asyncio.Event()
    release = asyncio.Event()

    async def handler(ws: WebSocket) -> None:
        async def fragments() -> AsyncIterator[bytes]:
            yield b"header"
            await release.wait()
            yield b"body"

        await ws.send(fragments())
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)

        async def read_frames(count: int) -> None:
            for _ in range(count):
                head = await reader.readexactly(2)
                payload = await reader.readexactly(head[1] & 0x7F)
                frames.append((head[0] & 0x0F, bool(head[0] & 0x80), payload))
                got_first.set()

        reading = asyncio.ensure_future(read_frames(3))
        await asyncio.wait_for(got_first.wait(), 5)  # before the generator has its second item
        assert frames == [(2, False, b"header")]
        release.set()
        await asyncio.wait_for(reading, 5)
        assert frames == [(2, False, b"header"), (0, False, b"body"), (0, True, b"")]
        writer.close()
