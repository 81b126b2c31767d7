"""The asyncio WebSocket object: browser API, keepalive, backpressure, cancellation, streaming, over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from _waiting import until

from wscodec import ConcurrencyError, ConnectionClosed, ConnectionClosedError, FrameDecoder, encode_frame
from wscodec.asyncio import (
    CloseEvent,
    ErrorEvent,
    Event,
    MessageEvent,
    Server,
    WebSocket,
    connect,
    create_websocket,
    serve,
)
from wscodec.asyncio import websocket as websocket_module

pytestmark = pytest.mark.timeout(60)

MIB = 1 << 20
UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


def url(server: Server) -> str:
    return f"ws://127.0.0.1:{server.port}/"


async def raw_client(port: int, *, rcvbuf: int | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if rcvbuf is not None:
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    writer.write(UPGRADE)
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return reader, writer


def masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    return encode_frame(opcode, payload, fin=fin, mask=b"\x01\x02\x03\x04")


# --------------------------------------------------------------------------- browser API


async def test_browser_callbacks_and_ready_state() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.send("welcome")
        async for message in ws:
            await ws.send(message)

    async with serve(handler, "127.0.0.1", 0, subprotocols=("chat",)) as server:
        events: list[Any] = []
        states: list[int] = []
        closed = asyncio.Event()
        ws = create_websocket(url(server), ["chat"])
        states.append(ws.ready_state)
        assert ws.ready_state == WebSocket.CONNECTING == 0

        def onopen(event: Any) -> None:
            states.append(ws.ready_state)
            events.append(("open", ws.protocol))
            ws_send = asyncio.ensure_future(ws.send(b"\x00\x01"))
            ws_send.add_done_callback(lambda t: t.result())

        async def onmessage(event: Any) -> None:  # async callbacks run as tasks
            events.append(("message", event.data))
            if event.data == b"\x00\x01":
                await ws.close(4000, "done")
                states.append(ws.ready_state)

        def onclose(event: Any) -> None:
            states.append(ws.ready_state)
            events.append(("close", event.code, event.reason, event.was_clean))
            closed.set()

        ws.onopen = onopen
        ws.onmessage = onmessage
        ws.onclose = onclose
        ws.onerror = lambda event: events.append(("error", event.error))
        await asyncio.wait_for(closed.wait(), 5)
    assert events == [
        ("open", "chat"),
        ("message", "welcome"),
        ("message", b"\x00\x01"),
        ("close", 4000, "done", True),  # the peer echoes the code and the reason
    ]
    assert states == [0, 1, 3, 3] or states == [0, 1, 2, 3], states


async def test_add_event_listener_and_binary_type() -> None:
    async with serve(echo, "127.0.0.1", 0) as server:
        ws = await connect(url(server))
        got: list[Any] = []
        arrived = asyncio.Event()

        def listener(event: Any) -> None:
            got.append(event.data)
            arrived.set()

        ws.binary_type = "bytearray"
        ws.add_event_listener("message", listener)
        await ws.send(b"abc")
        await asyncio.wait_for(arrived.wait(), 5)
        assert got == [bytearray(b"abc")] and isinstance(got[0], bytearray)
        ws.remove_event_listener("message", listener)
        ws.binary_type = "memoryview"
        await ws.send(b"xyz")
        view = await asyncio.wait_for(ws.recv(), 5)
        assert isinstance(view, memoryview) and bytes(view) == b"xyz"
        with pytest.raises(ValueError):
            ws.binary_type = "blob"
        await ws.close()


async def test_create_websocket_failure_fires_error_then_close() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    events: list[str] = []
    done = asyncio.Event()
    ws = create_websocket(f"ws://127.0.0.1:{port}/")
    ws.onerror = lambda event: events.append("error")

    def onclose(event: Any) -> None:
        events.append(f"close {event.code} {event.was_clean}")
        done.set()

    ws.onclose = onclose
    await asyncio.wait_for(done.wait(), 5)
    assert events == ["error", "close 1006 False"]
    assert ws.ready_state == WebSocket.CLOSED


@pytest.mark.parametrize("when", ["in the same step", "at once", "during the handshake"])
async def test_close_while_connecting_abandons_the_attempt(when: str) -> None:
    """close() on a CONNECTING create_websocket() (in the same step, before its opening task ever ran;
    before its TCP connection exists; or during the opening handshake), as a browser's close() does:
    ready_state CLOSING at once, then error and close (1006), once each; it never opens."""
    handled: list[WebSocket] = []
    peer_seen = asyncio.Event()

    async def handler(ws: WebSocket) -> None:
        handled.append(ws)
        await ws.wait_closed()

    async def process_request(connection: Any, request: Any) -> None:
        peer_seen.set()
        await asyncio.sleep(0.3)  # the handshake is under way while the client closes

    async with serve(handler, "127.0.0.1", 0, process_request=process_request) as server:
        events: list[str] = []
        closed = asyncio.Event()
        ws = create_websocket(url(server))
        ws.onopen = lambda event: events.append("open")
        ws.onerror = lambda event: events.append("error")

        def onclose(event: Any) -> None:
            events.append(f"close {event.code} {event.was_clean}")
            closed.set()

        ws.onclose = onclose
        if when == "during the handshake":
            await asyncio.wait_for(peer_seen.wait(), 10)
        if when == "in the same step":
            await ws.close()  # (no wait_for: its task would let the opening task take its first step)
        else:
            await asyncio.wait_for(ws.close(), 10)
        assert ws.ready_state in (WebSocket.CLOSING, WebSocket.CLOSED)
        await asyncio.wait_for(closed.wait(), 10)
        await asyncio.sleep(0.5)  # nothing more: no late open
        assert events == ["error", "close 1006 False"]
        assert ws.ready_state == WebSocket.CLOSED
        # (reading is paused while process_request runs, so the server may notice the abort only when its
        # 101 fails: a handler then starts on a connection already closed, and ends)
        await until(lambda: all(h.ready_state == WebSocket.CLOSED for h in handled))
        assert when == "during the handshake" or handled == []
        assert ws.close_code == 1006
        await asyncio.wait_for(ws.wait_closed(), 5)  # CLOSED: waiting for the end returns at once
        await asyncio.wait_for(ws.close(), 5)


@pytest.mark.parametrize("steps", range(8))
async def test_close_while_connecting_ends_whenever_it_comes(steps: int) -> None:
    """close() a few loop steps into create_websocket()'s TCP connect: the attempt ends with error, then
    close (1006), and wait_closed() returns. uvloop calls connection_made() for a connection that
    completes as create_connection() is cancelled, then closes it without connection_lost(): the socket
    stayed CLOSING, with no events, and wait_closed() never returned."""

    async def handler(ws: WebSocket) -> None:
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        events: list[str] = []
        ws = create_websocket(url(server))
        ws.onopen = lambda event: events.append("open")
        ws.onerror = lambda event: events.append("error")
        ws.onclose = lambda event: events.append(f"close {event.code}")
        for _ in range(steps):
            await asyncio.sleep(0)
        await asyncio.wait_for(ws.close(), 5)
        await until(lambda: any(event.startswith("close") for event in events))
        assert ws.ready_state == WebSocket.CLOSED
        await asyncio.wait_for(ws.wait_closed(), 5)
        # (after a few steps the connection may be open already: then close() is a normal closing handshake)
        assert events == ["error", "close 1006"] or (steps > 0 and events == ["open", "close 1000"])


@pytest.mark.parametrize("open_timeout", [1e-5, 1e-4, 1e-3, 3e-3])
async def test_open_timeout_whenever_it_runs_out_ends_with_one_close(open_timeout: float) -> None:
    """create_websocket() whose open_timeout runs out during the TCP connect, the handshake, or as it
    completes: one close event, last; no error after open. On uvloop a connect cancelled as it completed
    left the WebSocket CONNECTING for ever, with no event; and a handshake completed as the timeout ran
    out fired open, close, error, close."""

    async def handler(ws: WebSocket) -> None:
        await ws.wait_closed()

    async def attempt(server: Server) -> list[str]:
        events: list[str] = []
        ws = create_websocket(url(server), open_timeout=open_timeout)
        ws.onopen = lambda event: events.append("open")
        ws.onerror = lambda event: events.append("error")
        ws.onclose = lambda event: events.append(f"close {event.code}")
        await until(lambda: bool(events))  # opened, or failed: not left CONNECTING
        await asyncio.wait_for(ws.close(), 5)
        await until(lambda: any(event.startswith("close") for event in events))
        await asyncio.sleep(0.01)  # nothing more
        assert ws.ready_state == WebSocket.CLOSED
        return events

    async with serve(handler, "127.0.0.1", 0) as server:
        for _ in range(10):
            events = await attempt(server)
            assert events in (["error", "close 1006"], ["open", "close 1006"], ["open", "close 1000"]), events


async def test_create_websocket_follows_no_redirect() -> None:
    with pytest.raises(ValueError, match="max_redirects"):
        create_websocket("ws://127.0.0.1:1/", max_redirects=3)


@pytest.mark.parametrize("method", ["ping", "pong"])
async def test_ping_and_pong_take_str_or_bytes_like(method: str) -> None:
    """As websockets': ``bytes(5)`` would have sent five zero bytes."""
    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server)) as ws:
        with pytest.raises(TypeError, match="str or bytes-like"):
            await getattr(ws, method)(5)
        await asyncio.wait_for(getattr(ws, method)(memoryview(b"ok")), 5)
        await ws.send("still open")
        assert await asyncio.wait_for(ws.recv(), 5) == "still open"


async def test_wait_closed_on_a_connecting_websocket_waits_for_its_end() -> None:
    """wait_closed() on a CONNECTING create_websocket() waits until the connection it opens is closed; it
    returned at once."""
    release = asyncio.Event()

    async def handler(ws: WebSocket) -> None:
        await release.wait()
        await ws.close()

    async with serve(handler, "127.0.0.1", 0) as server:
        ws = create_websocket(url(server))
        assert ws.ready_state == WebSocket.CONNECTING
        waiting = asyncio.ensure_future(ws.wait_closed())
        await until(lambda: ws.ready_state == WebSocket.OPEN)
        await asyncio.sleep(0.1)
        assert not waiting.done()
        release.set()
        await asyncio.wait_for(waiting, 5)
        assert ws.ready_state == WebSocket.CLOSED and ws.close_code == 1000


@pytest.mark.parametrize("code, reason", [(999, ""), (1005, ""), (5000, ""), (1000, "x" * 124)])
async def test_close_checks_its_arguments_while_connecting(code: int, reason: str) -> None:
    """As a browser's close() does (and as on an open connection): a code or reason that cannot go on the
    wire is a ValueError before anything, and the attempt goes on; it was abandoned silently."""

    async def handler(ws: WebSocket) -> None:
        await ws.send("hello")
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        ws = create_websocket(url(server))
        with pytest.raises(ValueError):
            await ws.close(code, reason)
        assert ws.ready_state == WebSocket.CONNECTING
        assert await asyncio.wait_for(ws.recv(), 5) == "hello"
        await ws.close()


@pytest.mark.parametrize("name", ["onopen", "onmessage", "onerror", "onclose"])
async def test_an_event_handler_that_cannot_be_called_is_a_type_error(name: str) -> None:
    """``ws.onmessage = 42`` was accepted; then every message was an error logged, and lost to recv()."""
    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server)) as ws:
        with pytest.raises(TypeError, match="callable"):
            setattr(ws, name, 42)
        assert getattr(ws, name) is None
        callback = print
        setattr(ws, name, callback)
        assert getattr(ws, name) is callback
        setattr(ws, name, None)
        await ws.send("still served")
        assert await asyncio.wait_for(ws.recv(), 5) == "still served"


async def test_a_message_part_way_through_moves_from_a_listener_to_recv_and_back() -> None:
    """The first fragment of a message goes to onmessage; the listener is removed; the rest goes to recv(),
    which returns the whole message. A cancelled recv() that took the first fragment of the next one, then
    a listener set: the listener gets that whole message, and the ones after."""
    server_ws: list[WebSocket] = []
    release = asyncio.Event()

    async def handler(ws: WebSocket) -> None:
        server_ws.append(ws)
        await release.wait()

    async with serve(handler, "127.0.0.1", 0) as server:
        assert server.port is not None
        _reader, writer = await raw_client(server.port)
        await until(lambda: bool(server_ws))
        ws = server_ws[0]
        heard: list[Any] = []
        ws.onmessage = lambda event: heard.append(event.data)
        writer.write(masked(1, b"AB", fin=False))
        await until(lambda: bool(ws._cb_partial))
        ws.onmessage = None
        writer.write(masked(0, b"CD"))
        assert await asyncio.wait_for(ws.recv(), 10) == "ABCD"
        writer.write(masked(1, b"EF", fin=False))
        task = asyncio.ensure_future(ws.recv())
        await until(lambda: bool(ws._partial))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        ws.add_event_listener("message", lambda event: heard.append(event.data))
        writer.write(masked(0, b"GH") + masked(1, b"IJ"))
        await until(lambda: len(heard) >= 2)
        await asyncio.sleep(0.1)
        assert heard == ["EFGH", "IJ"]
        release.set()
        writer.close()


@pytest.mark.parametrize("style", ["sync", "async"])
async def test_an_echo_listener_meeting_the_peers_close_logs_no_error(
    style: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A message and the peer's Close in one read: the echo listener's send raises ConnectionClosedOK (the
    closing handshake is under way). That is the connection ending under it, not a bug of the listener:
    a DEBUG line, not "error in message callback" at ERROR."""
    heard: list[Any] = []

    async def handler(ws: WebSocket) -> None:
        def echo_now(event: Any) -> None:
            heard.append(event.data)
            ws.send_nowait(event.data)

        async def echo_later(event: Any) -> None:
            heard.append(event.data)
            await ws.send(event.data)

        ws.onmessage = echo_now if style == "sync" else echo_later
        await ws.wait_closed()

    with caplog.at_level(logging.DEBUG, logger="wscodec"):
        async with serve(handler, "127.0.0.1", 0) as server:
            assert server.port is not None
            reader, writer = await raw_client(server.port)
            writer.write(masked(1, b"last words") + masked(8, (1000).to_bytes(2, "big")))
            await until(lambda: bool(heard))
            await asyncio.wait_for(reader.read(), 10)  # the server's Close, then the end of TCP
            writer.close()
            await until(lambda: not server.connections)
    assert heard == ["last words"]
    assert "callback ended on" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_a_listener_that_is_none_does_nothing_and_one_not_callable_is_refused() -> None:
    async with serve(echo, "127.0.0.1", 0) as server:
        ws = await connect(url(server))
        ws.add_event_listener("message", None)  # type: ignore[arg-type]  # the DOM's null callback
        with pytest.raises(TypeError, match="must be callable"):
            ws.add_event_listener("message", "print")  # type: ignore[arg-type]
        await ws.send("still for recv")
        assert await asyncio.wait_for(ws.recv(), 10) == "still for recv"  # no listener took it
        await ws.close()


async def test_a_fragmented_send_is_compressed_unless_told_not_to() -> None:
    """With permessage-deflate, an iterable sent is one compressed message (RSV1 on its first frame only);
    ``compress=False`` sends it uncompressed, as it does a whole message."""

    async def handler(ws: WebSocket) -> None:
        await ws.send(["ab" * 100, "cd" * 100], compress=False)
        await ws.send(["ef" * 100, "gh" * 100])
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(UPGRADE.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert b"permessage-deflate" in head
        decoder = FrameDecoder("client", None, allow_rsv1=True)
        frames: list[Any] = []
        while len(frames) < 4:
            frames += decoder.feed(await asyncio.wait_for(reader.read(65536), 5))
        shapes = [(f.opcode, f.fin, f.rsv1) for f in frames]
        assert shapes == [(1, False, False), (0, True, False), (1, False, True), (0, True, False)]
        assert frames[0].payload + frames[1].payload == b"ab" * 100 + b"cd" * 100
        assert len(frames[2].payload) + len(frames[3].payload) < 200  # compressed
        writer.close()


def test_a_fragment_that_is_not_bytes_like_changes_nothing() -> None:
    """send_fragment(5) is a TypeError before the message is begun: the next message goes out as usual
    (the threaded send() of [5, b"x"] left every later send refused)."""
    from wscodec import Connection

    conn = Connection("server")
    conn.receive_data(UPGRADE)
    conn.accept()
    conn.data_to_send()
    with pytest.raises(TypeError):
        conn.send_fragment(5, fin=False)  # type: ignore[arg-type]
    conn.send_text("after")
    assert conn.data_to_send() == encode_frame(1, b"after")


async def test_attributes() -> None:
    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server) + "?q=1", compression=None) as ws:
        assert ws.url.endswith("/?q=1")
        assert ws.protocol == "" and ws.extensions == ""
        assert ws.remote_address[1] == server.port
        assert ws.response is not None and ws.response.status_code == 101
        assert ws.close_code is None and ws.close_reason is None  # (as websockets')
        assert ws.buffered_amount == 0
        latency = await ws.ping(b"abc")
        assert isinstance(latency, float) and latency > 0 and ws.latency == latency
        first = asyncio.ensure_future(ws.ping())
        second = asyncio.ensure_future(ws.ping("text payload"))
        rtt_first, rtt_second = await asyncio.wait_for(asyncio.gather(first, second), 10)
        assert rtt_first > 0 and rtt_second > 0
        assert ws.latency == rtt_second  # the last Pong to arrive answered the last Ping
        assert ws._pings == []  # every Ping was answered and forgotten


# --------------------------------------------------------------------------- close semantics


async def test_async_for_ends_on_1000_and_raises_on_errors() -> None:
    """As websockets' does: ``async for`` ends after a ConnectionClosedOK (1000, 1001); after any other
    close, an application's code (4000) included, it raises what recv() raises."""

    async def handler(ws: WebSocket) -> None:
        code = int(await ws.recv())
        await ws.send("last")
        await ws.close(code, "bye")

    async with serve(handler, "127.0.0.1", 0) as server:
        for code in (1000, 1001):
            async with connect(url(server)) as ws:
                await ws.send(str(code))
                assert [m async for m in ws] == ["last"]
                assert ws.close_code == code
        for code in (4000, 1011):
            async with connect(url(server)) as ws:
                await ws.send(str(code))
                messages = []
                with pytest.raises(ConnectionClosedError) as info:
                    async for message in ws:
                        messages.append(message)
                assert messages == ["last"] and info.value.code == code


async def test_abrupt_tcp_close_is_1006() -> None:
    async with serve(echo, "127.0.0.1", 0) as server:
        ws = await connect(url(server))
        (peer,) = server.connections
        assert peer.transport is not None
        peer.transport.abort()
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
        assert info.value.code == 1006 and not info.value.was_clean
        with pytest.raises(ConnectionClosed):
            await ws.send("too late")


async def test_protocol_violation_fires_onerror_and_closes_1002() -> None:
    errors: list[Any] = []

    async def handler(ws: WebSocket) -> None:
        ws.onerror = lambda event: errors.append(event.error)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        assert server.port is not None
        reader, writer = await raw_client(server.port)
        writer.write(encode_frame(1, b"unmasked"))  # a client must mask
        data = await asyncio.wait_for(reader.read(), 5)
        assert data[:1] == b"\x88" and int.from_bytes(data[2:4], "big") == 1002
        writer.close()
        await until(lambda: bool(errors))


async def test_close_timeout_aborts_a_silent_peer() -> None:
    async with serve(echo, "127.0.0.1", 0, close_timeout=0.3) as server:
        assert server.port is not None
        _reader, writer = await raw_client(server.port)
        (ws,) = server.connections
        started = time.monotonic()
        await asyncio.wait_for(ws.close(), 20)
        assert time.monotonic() - started < 9  # close_timeout (0.3 s), not the 10 s default
        assert ws.ready_state == WebSocket.CLOSED and ws.close_code == 1006
        writer.close()


# --------------------------------------------------------------------------- keepalive


async def test_keepalive_detects_a_silent_peer() -> None:
    outcome: list[Any] = []

    async def handler(ws: WebSocket) -> None:
        started = time.monotonic()
        try:
            await ws.recv()
        except ConnectionClosed as exc:
            outcome.append((exc.code, exc.reason, time.monotonic() - started))

    async with serve(handler, "127.0.0.1", 0, ping_interval=0.2, ping_timeout=0.2) as server:
        assert server.port is not None
        _reader, writer = await raw_client(server.port)  # completes the handshake, then never answers
        await until(lambda: bool(outcome), 30)
        writer.close()
    code, reason, elapsed = outcome[0]
    assert code == 1011 and reason == "keepalive ping timeout"
    assert elapsed >= 0.2  # not before one interval and one timeout could pass (no upper bound: load varies)


async def test_keepalive_keeps_a_live_peer() -> None:
    async with (
        serve(echo, "127.0.0.1", 0, ping_interval=0.05, ping_timeout=20) as server,
        connect(url(server), ping_interval=0.05, ping_timeout=20) as ws,
    ):
        # Several keepalive pings answered (each Pong sets latency), then the connection still echoes.
        seen: set[float] = set()
        deadline = time.monotonic() + 30
        while len(seen) < 4:
            assert time.monotonic() < deadline, "the keepalive pings were not answered"
            if ws.latency > 0:
                seen.add(ws.latency)
            await asyncio.sleep(0.01)
        await ws.send("alive")
        assert await asyncio.wait_for(ws.recv(), 10) == "alive"
        assert ws.ready_state == WebSocket.OPEN


# --------------------------------------------------------------------------- backpressure


async def test_send_waits_for_a_slow_reader() -> None:
    """The peer reads nothing: send() stops returning once the buffer passes write_limit, then all arrive."""
    write_limit = 64 * 1024
    size = 16 * 1024
    total = 2000  # 32 MiB at most, more than loopback socket buffers hold
    peer_reading = asyncio.Event()
    received: list[bytes] = []

    async def handler(ws: WebSocket) -> None:
        await peer_reading.wait()
        async for message in ws:
            assert isinstance(message, bytes)
            received.append(message[:8])

    async with serve(handler, "127.0.0.1", 0, max_queue=4, max_size=None) as server:
        ws = await connect(url(server), write_limit=write_limit, compression=None)
        sent = 0
        max_buffered = 0

        async def sender() -> None:
            nonlocal sent, max_buffered
            for i in range(total):
                await ws.send(i.to_bytes(8, "big") + b"\x00" * (size - 8))
                sent += 1
                max_buffered = max(max_buffered, ws.buffered_amount)

        task = asyncio.ensure_future(sender())
        await until(lambda: ws._write_paused or task.done(), 30)
        assert not task.done(), "send() never waited"
        stalled = sent
        for _ in range(100):  # loop turns, not time: nothing can move while the peer reads nothing
            await asyncio.sleep(0)
        assert sent == stalled and not task.done()  # still blocked
        assert max_buffered <= write_limit + size + 16
        peer_reading.set()
        await asyncio.wait_for(task, 30)
        await until(lambda: len(received) == total, 30)
        assert [int.from_bytes(r, "big") for r in received] == list(range(total))
        await ws.close()


class _CountingTransport:
    """A transport that records each write before passing it on (uvloop's transports cannot be patched)."""

    def __init__(self, inner: asyncio.Transport) -> None:
        self._inner = inner
        self.writes: list[bytes] = []

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))
        self._inner.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_small_sends_leave_in_batches_in_order() -> None:
    """Small messages sent in one loop iteration share writes: counted in buffered_amount until written,
    far fewer writes than messages, every write made of whole frames, never reordered, and the batch is
    out by the next iteration."""
    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server), compression=None) as ws:
        assert ws.transport is not None
        counting = _CountingTransport(ws.transport)
        ws._transport = counting  # type: ignore[assignment]
        writes = counting.writes
        total = 50
        for i in range(total):
            await ws.send(f"m{i}")
        pending = ws.connection.bytes_to_send
        assert pending > 0 and ws.buffered_amount >= pending  # queued, counted, not yet written
        await asyncio.sleep(0)  # the end of this loop iteration flushes the rest
        assert ws.connection.bytes_to_send == 0
        assert 1 <= len(writes) <= total // 4  # batched: not one write per message
        decoded = []
        for data in writes:  # each write ends on a frame boundary: a decoder fed one write keeps nothing
            decoder = FrameDecoder("server", None)
            decoded.extend(frame.payload for frame in decoder.feed(data))
            assert decoder.buffered == 0
        assert decoded == [f"m{i}".encode() for i in range(total)]
        assert [await asyncio.wait_for(ws.recv(), 5) for _ in range(total)] == [f"m{i}" for i in range(total)]


async def test_a_lone_reply_is_written_at_once_and_what_follows_it_batches() -> None:
    """Request-response (one message in flight): the reply reaches the transport inside send(), not a loop
    turn later. The first LONE_WRITES replies of a step go at once, each alone; messages sent after them in
    the same iteration share one write, in order."""
    lone = websocket_module.LONE_WRITES
    assert lone >= 1
    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server), compression=None) as ws:
        assert ws.transport is not None
        counting = _CountingTransport(ws.transport)
        ws._transport = counting  # type: ignore[assignment]
        await asyncio.sleep(0)  # any flush armed before the swap has run
        counting.writes.clear()
        await ws.send("lone")
        assert len(counting.writes) == 1  # no await in between: written by send() itself
        assert ws._flush_handle is None  # nothing scheduled for a lone reply: no loop turn spent on it
        assert FrameDecoder("server", None).feed(counting.writes[0])[0].payload == b"lone"
        for i in range(1, lone):
            await ws.send(f"a{i}")
            assert len(counting.writes) == i + 1 and ws._flush_handle is None  # each alone, at once
        for i in range(5):
            await ws.send(f"f{i}")
        assert len(counting.writes) == lone and ws.connection.bytes_to_send > 0  # batched behind them
        await asyncio.sleep(0)
        assert len(counting.writes) == lone + 1 and ws.connection.bytes_to_send == 0
        replies = [await asyncio.wait_for(ws.recv(), 5) for _ in range(lone + 5)]
        assert replies == ["lone", *(f"a{i}" for i in range(1, lone)), *(f"f{i}" for i in range(5))]
        counting.writes.clear()
        await ws.send("lone again")  # the recv() that waited ended the step: a lone reply goes at once
        assert len(counting.writes) == 1 and ws._flush_handle is None


def test_browser_events_are_read_only_values() -> None:
    """The events handed to listeners: read-only attributes, compared by type and fields (not target)."""
    message = MessageEvent("message", object(), b"\x01")
    assert (message.type, message.data) == ("message", b"\x01")
    assert message == MessageEvent("message", None, b"\x01") and message != MessageEvent("message", None, b"")
    assert message != Event("message") and hash(message) == hash(MessageEvent("message", None, b"\x01"))
    assert repr(message) == "MessageEvent(type='message', data=b'\\x01')"
    close = CloseEvent("close", None, 1001, "bye", True)
    assert (close.code, close.reason, close.was_clean) == (1001, "bye", True)
    assert repr(close) == "CloseEvent(type='close', code=1001, reason='bye', was_clean=True)"
    error = ErrorEvent("error", None, ValueError("x"))
    assert isinstance(error.error, ValueError) and Event("open").target is None
    for event, name in ((message, "data"), (close, "code"), (error, "error"), (message, "type")):
        with pytest.raises(AttributeError):
            setattr(event, name, None)
    with pytest.raises(AttributeError):
        message.extra = 1  # type: ignore[attr-defined]


async def test_batched_sends_go_out_before_a_close_and_a_ping() -> None:
    received: list[Any] = []

    async def collect(ws: WebSocket) -> None:
        async for message in ws:
            received.append(message)

    async with serve(collect, "127.0.0.1", 0) as server:
        ws = await connect(url(server), compression=None)
        await ws.send("one")
        await ws.send(b"two")
        await asyncio.wait_for(ws.ping(), 5)  # the ping is written after what send() queued
        await ws.send("three")
        await ws.close()  # no iteration of the loop in between: the Close follows "three"
        assert ws.close_code == 1000
        await until(lambda: len(received) == 3)
        assert received == ["one", b"two", "three"]


async def test_reading_pauses_at_max_queue() -> None:
    # 800 KiB in all: more than one socket read, so pausing has something to hold back (one read's
    # worth of messages is always queued whole).
    messages = [f"{i}".ljust(4096, ".") for i in range(200)]

    async def flood(ws: WebSocket) -> None:
        for message in messages:
            await ws.send(message)
        await ws.wait_closed()

    # Uncompressed: deflate shrinks the 200 messages to a few KiB, which arrive in one read.
    async with serve(flood, "127.0.0.1", 0, compression=None) as server:
        ws = await connect(url(server), max_queue=8, compression=None)
        await until(lambda: len(ws._queue) >= 8)
        await asyncio.sleep(0.2)  # time to read everything, were reading not paused
        assert 8 <= len(ws._queue) < 200  # reading paused; the rest waits in the kernel and the server
        assert ws._reading_paused
        assert [await asyncio.wait_for(ws.recv(), 5) for _ in range(200)] == messages
        await ws.close()


async def test_reading_pauses_while_max_queue_async_listeners_run() -> None:
    """An async onmessage runs as a task per message, holding its message: a listener slower than its peer
    must not grow tasks and memory without bound. At most max_queue of them run (the rest of the read in
    hand waits its turn), reading pauses, the peer is held back by TCP, and once the listeners finish every
    message arrives, in order."""
    messages = [f"{i}".ljust(4096, ".") for i in range(300)]  # 1.2 MiB: many reads
    release = asyncio.Event()
    got: list[str] = []
    peak = 0
    server_ws: list[WebSocket] = []

    async def handler(ws: WebSocket) -> None:
        async def slow_listener(event: MessageEvent) -> None:
            nonlocal peak
            peak = max(peak, len(ws._callback_tasks))
            got.append(event.data)  # (in arrival order: the task's first step runs in creation order)
            await release.wait()

        server_ws.append(ws)
        ws.onmessage = slow_listener
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None, max_queue=8) as server:
        client = await connect(url(server), compression=None)

        async def send_all() -> None:
            for message in messages:
                await client.send(message)

        sending = asyncio.ensure_future(send_all())
        await until(lambda: len(got) >= 8)
        await asyncio.sleep(0.3)  # time to read everything, were reading not paused
        assert len(got) == 8 and peak == 8
        (ws,) = server_ws
        assert ws._listeners_paused
        release.set()
        await until(lambda: len(got) == len(messages))
        await asyncio.wait_for(sending, 5)
        assert got == messages
        assert not ws._listeners_paused and not ws._callback_tasks
        await client.close()


async def test_close_with_reading_paused_still_completes_the_closing_handshake() -> None:
    """A handler that closes with max_queue messages unread (reading paused) still reads the peer's Close:
    the handshake completes at once, with 1000, not after close_timeout with 1006. The messages queued
    before the close are still returned; those that arrive after it, beyond the bound, are dropped."""
    result: dict[str, Any] = {}
    done = asyncio.Event()

    async def handler(ws: WebSocket) -> None:
        await until(lambda: ws._reading_paused)
        started = time.monotonic()
        await ws.close(1000, "bye")
        result["seconds"] = time.monotonic() - started
        result["code"] = ws.close_code
        got = []
        with contextlib.suppress(ConnectionClosed):
            while True:
                got.append(await ws.recv())
        result["got"] = got
        done.set()

    async with serve(handler, "127.0.0.1", 0, max_queue=2, close_timeout=5, compression=None) as server:
        client = await connect(url(server), compression=None)
        messages = [f"{i}".ljust(4096, ".") for i in range(200)]
        for message in messages:
            await client.send(message)
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await asyncio.wait_for(client.recv(), 10)
        assert (info.value.code, info.value.reason) == (1000, "bye")
        await asyncio.wait_for(done.wait(), 10)
    assert result["seconds"] < 2 and result["code"] == 1000
    assert 2 <= len(result["got"]) < 200 and result["got"] == messages[: len(result["got"])]


# --------------------------------------------------------------------------- cancellation


async def test_cancelled_recv_loses_nothing() -> None:
    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server)) as ws:
        for _ in range(20):
            task = asyncio.ensure_future(ws.recv())
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        # A message that arrives just as recv() is cancelled stays queued.
        await ws.send("kept")
        task = asyncio.ensure_future(ws.recv())
        await until(lambda: bool(ws._queue) or task.done())
        if not task.done():
            task.cancel()
        results = await asyncio.gather(task, return_exceptions=True)
        if isinstance(results[0], asyncio.CancelledError):
            assert await ws.recv() == "kept"
        else:
            assert results[0] == "kept"
        await ws.send("next")
        assert await asyncio.wait_for(ws.recv(), 5) == "next"


async def test_cancelled_recv_in_the_middle_of_a_fragmented_message() -> None:
    go = asyncio.Event()
    got: list[Any] = []
    server_ws: list[WebSocket] = []

    async def handler(ws: WebSocket) -> None:
        server_ws.append(ws)
        await go.wait()
        got.append(await ws.recv())

    async with serve(handler, "127.0.0.1", 0) as server:
        assert server.port is not None
        _reader, writer = await raw_client(server.port)
        await until(lambda: bool(server_ws))
        ws = server_ws[0]
        writer.write(masked(1, b"part one, ", fin=False))
        task = asyncio.ensure_future(ws.recv())
        await until(lambda: bool(ws._partial))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        writer.write(masked(0, b"part two"))
        go.set()
        await until(lambda: bool(got))
        assert got == ["part one, part two"]
        writer.close()


async def test_cancelled_send_while_waiting_sends_nothing() -> None:
    hold = asyncio.Event()
    received: list[Any] = []

    async def handler(ws: WebSocket) -> None:
        await hold.wait()
        async for message in ws:
            received.append(message if isinstance(message, str) else len(message))

    async with serve(handler, "127.0.0.1", 0, max_queue=2, max_size=None) as server:
        ws = await connect(url(server), write_limit=16 * 1024, compression=None)
        blob = b"\x00" * 256 * 1024
        sent = 0
        for _ in range(400):  # at most 100 MiB: fill until a send() has to wait
            try:
                await asyncio.wait_for(ws.send(blob), 0.3)
            except asyncio.TimeoutError:  # that send() was cancelled while waiting: nothing sent
                break
            sent += 1
        else:
            raise AssertionError("send() never waited")
        task = asyncio.ensure_future(ws.send("cancelled"))
        await asyncio.sleep(0.05)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        hold.set()
        await asyncio.wait_for(ws.send("after"), 30)
        await until(lambda: "after" in received, 30)
        assert received == [len(blob)] * sent + ["after"]
        await ws.close()


async def test_cancelled_fragmented_send_fails_the_connection() -> None:
    """An async iterable's fragments are on the wire as soon as they are yielded; cancelled after that,
    the message cannot be finished, and the connection fails (1011), as in websockets."""

    async def endless() -> AsyncIterator[str]:
        yield "start"
        yield "more"
        await asyncio.sleep(10)
        yield "never"

    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server)) as ws:
        errors: list[BaseException] = []
        ws.onerror = lambda event: errors.append(event.error)
        task = asyncio.ensure_future(ws.send(endless()))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
        assert info.value.code == 1011
        assert (ws.close_code, ws.close_reason) == (1011, "error in fragmented message")
        assert len(errors) == 1 and isinstance(errors[0], asyncio.CancelledError), errors  # what cut it short


async def test_cancelled_fragmented_send_before_any_frame_sends_nothing() -> None:
    async def stalled() -> AsyncIterator[str]:
        await asyncio.sleep(10)
        yield "never"

    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server)) as ws:
        task = asyncio.ensure_future(ws.send(stalled()))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await ws.send("intact")
        assert await asyncio.wait_for(ws.recv(), 5) == "intact"


async def test_close_with_arguments_of_the_wrong_type_is_a_type_error_and_changes_nothing() -> None:
    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server)) as ws:
        for args in ((1000.0,), ("1000",), (1000, None), (1000, b"bytes")):
            with pytest.raises(TypeError):
                await ws.close(*args)
        await ws.send("still open")
        assert await asyncio.wait_for(ws.recv(), 5) == "still open"


async def test_cancelled_close_still_closes() -> None:
    async with serve(echo, "127.0.0.1", 0) as server:
        ws = await connect(url(server))
        task = asyncio.ensure_future(ws.close(1000, "x"))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(ws.wait_closed(), 5)
        assert ws.close_code == 1000


async def test_concurrent_recv_is_refused() -> None:
    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server)) as ws:
        first = asyncio.ensure_future(ws.recv())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError):
            await ws.recv()
        await ws.send("one")
        assert await asyncio.wait_for(first, 5) == "one"


# --------------------------------------------------------------------------- streaming


async def test_recv_streaming_yields_fragments() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.send([b"a" * 1000, b"b" * 1000, b"c" * 1000])
        await ws.send(["x", "y"])
        await ws.send("whole")
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server, connect(url(server)) as ws:
        # Fragments that arrive in one read come as one piece (memory follows the payload, not the count).
        parts = [fragment async for fragment in ws.recv_streaming()]
        assert b"".join(parts) == b"a" * 1000 + b"b" * 1000 + b"c" * 1000 and 1 <= len(parts) <= 3
        stream = await ws.recv_streaming()
        assert "".join([fragment async for fragment in stream]) == "xy"
        assert [fragment async for fragment in ws.recv_streaming()] == ["whole"]


async def test_recv_streaming_decodes_each_piece_as_recv_does() -> None:
    """recv_streaming(decode=...) as websockets' takes it: a binary message's pieces decoded as UTF-8 as
    they come (a character straddling two pieces included), a text message's as its UTF-8 bytes; a piece
    that cannot be UTF-8 is a UnicodeDecodeError."""

    async def pieces(*parts: bytes) -> AsyncIterator[bytes]:
        for part in parts:
            yield part
            await asyncio.sleep(0.05)  # each piece a read of its own

    async def handler(ws: WebSocket) -> None:
        await ws.send(pieces(b"\xe2\x82", b"\xac!", b" ok"))
        await ws.send(["x\u20ac", "y"])
        await ws.send(pieces(b"fine", b"\xff"))
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server, connect(url(server)) as ws:
        parts: list[Any] = [piece async for piece in ws.recv_streaming(decode=True)]
        assert all(isinstance(piece, str) for piece in parts) and "".join(parts) == "\u20ac! ok"
        parts = [piece async for piece in ws.recv_streaming(decode=False)]
        assert all(isinstance(piece, bytes) for piece in parts) and b"".join(parts) == "x\u20acy".encode()
        with pytest.raises(UnicodeDecodeError):
            async for _piece in ws.recv_streaming(decode=True):
                pass


async def test_pong_sends_an_unsolicited_pong() -> None:
    """pong() as websockets' (a one-way heartbeat); after the close, ConnectionClosed as for ping()."""
    sent = asyncio.Event()

    async def handler(ws: WebSocket) -> None:
        await ws.pong(b"beat")
        await ws.pong("text beat")
        sent.set()
        await ws.wait_closed()
        with pytest.raises(ConnectionClosed):
            await ws.pong()

    async with serve(handler, "127.0.0.1", 0) as server:
        reader, writer = await raw_client(server.port)
        await asyncio.wait_for(sent.wait(), 5)
        decoder = FrameDecoder("client", None)
        frames: list[Any] = []
        while len(frames) < 2:
            frames += decoder.feed(await asyncio.wait_for(reader.read(65536), 5))
        assert [(frame.opcode, frame.payload) for frame in frames] == [(10, b"beat"), (10, b"text beat")]
        writer.close()


async def test_large_fragmented_message_with_a_small_queue() -> None:
    """More fragments than max_queue in one message: recv() still assembles it."""

    async def handler(ws: WebSocket) -> None:
        await ws.send(b"%04d" % i * 4096 for i in range(100))
        await ws.wait_closed()

    async with (
        serve(handler, "127.0.0.1", 0, max_size=None) as server,
        connect(url(server), max_queue=2, max_size=None) as ws,
    ):
        message = await asyncio.wait_for(ws.recv(), 10)
        assert message == b"".join(b"%04d" % i * 4096 for i in range(100))


# --------------------------------------------------------------------------- errors in their place (issue 9)

RSV2_FRAME = encode_frame(1, b"bad", rsv2=True, mask=b"\x01\x02\x03\x04")


async def frames_until_eof(reader: asyncio.StreamReader, timeout: float = 10.0) -> list[Any]:
    """Every frame the server sends until it closes TCP (keepalive Pings left out)."""
    from wscodec import FrameDecoder

    decoder = FrameDecoder("client", None)
    frames: list[Any] = []
    deadline = time.monotonic() + timeout
    while chunk := await asyncio.wait_for(reader.read(65536), max(deadline - time.monotonic(), 0.01)):
        frames.extend(f for f in decoder.feed(chunk) if f.opcode != 9)
    return frames


def close_code(frame: Any) -> int:
    assert frame.opcode == 8, frame
    return int.from_bytes(frame.payload[:2], "big")


async def test_pending_error_waits_for_a_stalled_handler_no_longer_than_close_timeout() -> None:
    got: list[Any] = []

    async def stalled(ws: WebSocket) -> None:
        got.append(await ws.recv())
        await asyncio.sleep(60)

    async with serve(stalled, "127.0.0.1", 0, close_timeout=0.5) as server:
        reader, writer = await raw_client(server.port)
        writer.write(masked(1, b"hi") + RSV2_FRAME + masked(9, b"no pong"))
        start = time.monotonic()
        frames = await frames_until_eof(reader)
        assert got == ["hi"]
        assert len(frames) == 1 and close_code(frames[0]) == 1002
        assert time.monotonic() - start >= 0.4  # it did wait for the handler's reply, a bounded time
        writer.close()


async def test_pending_error_fails_at_once_beyond_max_queue() -> None:
    """More messages than max_queue before the error: no waiting for replies (close_timeout is a minute)."""
    release = asyncio.Event()

    async def stalled(ws: WebSocket) -> None:
        await ws.recv()
        await release.wait()

    async with serve(stalled, "127.0.0.1", 0, close_timeout=30, max_queue=2) as server:
        reader, writer = await raw_client(server.port)
        writer.write(b"".join(masked(1, b"%d" % i) for i in range(6)) + RSV2_FRAME)
        try:
            frames = await frames_until_eof(reader, timeout=10)
        finally:
            release.set()
        assert len(frames) == 1 and close_code(frames[0]) == 1002
        writer.close()


async def test_pending_error_with_message_listeners() -> None:
    """onmessage listeners get the messages before the error; their replies go out before the Close."""

    async def handler(ws: WebSocket) -> None:
        ws.onmessage = lambda event: ws.send(event.data)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        reader, writer = await raw_client(server.port)
        await asyncio.sleep(0.1)  # the listener is set
        writer.write(masked(1, b"one") + masked(2, b"two") + RSV2_FRAME + masked(9, b"no pong"))
        frames = await frames_until_eof(reader)
        assert [(f.opcode, f.payload) for f in frames[:2]] == [(1, b"one"), (2, b"two")]
        assert len(frames) == 3 and close_code(frames[2]) == 1002
        writer.close()


async def test_close_while_an_error_is_pending_sends_the_errors_code() -> None:
    closed: list[Any] = []

    async def handler(ws: WebSocket) -> None:
        await ws.recv()
        await ws.close(1000, "bye")
        closed.append((ws.close_code, ws.ready_state))

    async with serve(handler, "127.0.0.1", 0, close_timeout=30) as server:
        reader, writer = await raw_client(server.port)
        writer.write(masked(1, b"hi") + RSV2_FRAME)
        frames = await frames_until_eof(reader)
        assert len(frames) == 1 and close_code(frames[0]) == 1002
        await until(lambda: bool(closed))
        assert closed == [(1002, WebSocket.CLOSED)]
        writer.close()


async def test_one_byte_fragments_are_gathered_in_one_buffer() -> None:
    """recv() over 30,000 one-byte fragments arriving in many reads: one message, the pieces in one buffer."""
    seen: list[Any] = []

    async def handler(ws: WebSocket) -> None:
        seen.append(await ws.recv())
        seen.append(await ws.recv())

    async with serve(handler, "127.0.0.1", 0) as server:
        _reader, writer = await raw_client(server.port)
        data = masked(2, b"a", fin=False) + masked(0, b"b", fin=False) * 29_998 + masked(0, b"c")
        text = "\u00e9\r\n\U0001f600\r".encode() * 50  # newlines are data: no translation
        data += masked(1, text[:1], fin=False) + b"".join(masked(0, bytes([b]), fin=False) for b in text[1:])
        data += masked(0, b"!")
        for i in range(0, len(data), 999):  # many reads, each cutting frames anywhere
            writer.write(data[i : i + 999])
            await writer.drain()
        await until(lambda: len(seen) == 2)
        assert seen == [b"a" + b"b" * 29_998 + b"c", "\u00e9\r\n\U0001f600\r" * 50 + "!"]
        writer.close()


# --------------------------------------------------------------------------- send_nowait


async def callback_echo(ws: WebSocket) -> None:
    """An echo server in the callback style: each message answered inside the read that delivered it."""
    ws.onmessage = lambda event: ws.send_nowait(event.data)
    await ws.wait_closed()


async def test_send_nowait_answers_inside_the_callback_in_order() -> None:
    async with serve(callback_echo, "127.0.0.1", 0) as server, connect(url(server), compression=None) as ws:
        messages: list[str | bytes] = ["héllo", b"\x00\x01", "", b"", "x" * 70000, b"y" * 70000]
        for message in messages:
            await ws.send(message)
        assert [await asyncio.wait_for(ws.recv(), 5) for _ in messages] == messages
        ws.send_nowait("from the client too")
        ws.send_nowait(bytearray(b"ba"))
        ws.send_nowait(memoryview(b"mv"))
        ws.send_nowait(_Text("a str subclass is text"))
        received = [await asyncio.wait_for(ws.recv(), 5) for _ in range(4)]
        assert received == ["from the client too", b"ba", b"mv", "a str subclass is text"]


class _Text(str):
    pass


async def test_send_nowait_refusals() -> None:
    async with serve(callback_echo, "127.0.0.1", 0) as server:
        ws = await connect(url(server), compression=None)
        with pytest.raises(TypeError):
            ws.send_nowait(["not", "a", "message"])  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            ws.send_nowait(42)  # type: ignore[arg-type]
        gate = asyncio.Event()

        async def fragments() -> AsyncIterator[str]:
            yield "one"
            await gate.wait()
            yield "two"

        sending = asyncio.ensure_future(ws.send(fragments()))
        await until(lambda: ws._fragmenting is not None)
        with pytest.raises(RuntimeError):
            ws.send_nowait("in the middle of a fragmented message")
        gate.set()
        await asyncio.wait_for(sending, 5)
        assert await asyncio.wait_for(ws.recv(), 5) == "onetwo"
        await ws.close()
        with pytest.raises(ConnectionClosed):
            ws.send_nowait("after close")


@pytest.mark.parametrize("size", [16 * 1024, 1024])
async def test_send_nowait_past_write_limit_pauses_reading_until_drained(size: int) -> None:
    """A callback echo whose client stops reading: the server stops reading too once its transport is over
    write_limit (its buffer stays near the limit, not near what the client sent), and resumes when the
    client reads again; every message arrives, in order. The limit is passed by at most one read's
    replies: reads of 16 KiB messages grow, here up to READ_MAX (max_size=None), no more than one message
    could add on its own; reads of 1 KiB messages never grow past READ_SIZE."""
    write_limit = 64 * 1024
    total = 31 * 1024 * 1024 // size  # about 31 MiB each way, far more than loopback socket buffers hold
    one_read = websocket_module.READ_MAX if size >= websocket_module.LARGE_READ else websocket_module.READ_SIZE
    peers: list[WebSocket] = []

    async def handler(ws: WebSocket) -> None:
        peers.append(ws)
        await callback_echo(ws)

    # (the raw client answers no Pings: no keepalive)
    async with serve(handler, "127.0.0.1", 0, max_size=None, write_limit=write_limit, ping_interval=None) as server:
        reader, writer = await raw_client(server.port)
        payloads = [i.to_bytes(4, "big") * (size // 4) for i in range(total)]

        async def produce() -> None:
            for payload in payloads:
                writer.write(masked(2, payload))
                await writer.drain()

        producer = asyncio.ensure_future(produce())
        await until(lambda: bool(peers) and peers[0]._flood_paused, 30)
        (ws,) = peers
        most = 0
        for _ in range(50):  # meanwhile the producer fills the socket buffers: TCP carries the backpressure
            most = max(most, ws.transport.get_write_buffer_size() if ws.transport else 0)
            await asyncio.sleep(0.01)
        assert ws._flood_paused
        assert most <= write_limit + one_read + size  # the limit plus at most one read's replies
        decoder = FrameDecoder("client", None)
        echoed: list[bytes] = []
        while len(echoed) < total:
            data = await asyncio.wait_for(reader.read(1 << 20), 30)
            assert data, "the server closed the connection"
            echoed.extend(frame.payload for frame in decoder.feed(data))
        await asyncio.wait_for(producer, 30)
        assert echoed == payloads
        assert not ws._flood_paused
        writer.close()
    # a fresh client is served afterwards
    async with serve(callback_echo, "127.0.0.1", 0) as server, connect(url(server), compression=None) as fresh:
        await fresh.send("fresh")
        assert await asyncio.wait_for(fresh.recv(), 5) == "fresh"


@contextlib.asynccontextmanager
async def _server_side_counted(
    answer: Callable[[WebSocket], Awaitable[None]],
) -> AsyncIterator[tuple[WebSocket, _CountingTransport, asyncio.StreamReader, asyncio.StreamWriter]]:
    """Serve with ``answer`` and connect a raw client; yields the server's WebSocket, its transport wrapped to
    record each write, and the client's reader and writer."""
    peers: list[WebSocket] = []

    async def handler(ws: WebSocket) -> None:
        peers.append(ws)
        await answer(ws)

    async with serve(handler, "127.0.0.1", 0, ping_interval=None, compression=None) as server:
        reader, writer = await raw_client(server.port)
        await until(lambda: bool(peers) and peers[0].transport is not None)
        (ws,) = peers
        assert ws.transport is not None
        counting = _CountingTransport(ws.transport)
        ws._transport = counting  # type: ignore[assignment]
        try:
            yield ws, counting, reader, writer
        finally:
            writer.close()


async def _writes_answering_one_read(answer: Callable[[WebSocket], Awaitable[None]], count: int) -> list[bytes]:
    """Serve with ``answer``; a raw client sends ``count`` binary messages in one write (one read at the
    server). Returns what the server's transport was given, write by write, once all echoes are back."""
    async with _server_side_counted(answer) as (ws, counting, reader, writer):
        writer.write(b"".join(masked(2, bytes([i]) * 10) for i in range(count)))
        decoder = FrameDecoder("client", None)
        echoed: list[bytes] = []
        while len(echoed) < count:
            echoed.extend(f.payload for f in decoder.feed(await asyncio.wait_for(reader.read(65536), 5)))
        assert echoed == [bytes([i]) * 10 for i in range(count)]
        assert ws._flush_handle is None  # nothing left for a later loop turn
        return list(counting.writes)  # (before the close, whose frames would follow)


def _check_first_replies_alone_then_one_batch(writes: list[bytes], count: int) -> None:
    lone = websocket_module.LONE_WRITES
    assert len(writes) == lone + 1
    for i in range(lone):
        assert _payloads(writes[i]) == [bytes([i]) * 10]  # each written at once, alone
    assert _payloads(writes[lone]) == [bytes([i]) * 10 for i in range(lone, count)]  # the rest: one write


def _payloads(data: bytes) -> list[bytes]:
    return [frame.payload for frame in FrameDecoder("client", None).feed(data)]


async def test_callback_replies_to_one_read_leave_the_first_few_at_once_then_in_one_write() -> None:
    """Messages that one read delivers to an onmessage callback answering with send_nowait: the first
    LONE_WRITES replies go at once, each alone (the peer starts on them while the rest are handled), the
    others together in one write at the end of that read, none scheduled for a later loop turn."""
    count = websocket_module.LONE_WRITES + 4
    _check_first_replies_alone_then_one_batch(await _writes_answering_one_read(callback_echo, count), count)


async def test_async_for_answers_the_first_messages_of_a_read_at_once_and_batches_the_rest() -> None:
    """``async for`` + ``await send()`` over messages that arrived in one read: the first LONE_WRITES answers
    reach the transport inside their send(), though more messages wait to be answered; the rest share one
    write at the end of the loop iteration, in order."""

    async def answer(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    count = websocket_module.LONE_WRITES + 4
    _check_first_replies_alone_then_one_batch(await _writes_answering_one_read(answer, count), count)


async def test_one_in_flight_each_callback_reply_is_written_inside_send_nowait() -> None:
    """One message per read, answered by a callback: each reply reaches the transport inside its
    ``send_nowait`` (one write, nothing left for the end of the read or a later loop turn), and the event
    the callback gets is a whole MessageEvent: its type, its target and its data."""
    writes: list[list[bytes]] = []  # the counting transport's list, once installed
    seen: list[tuple[type, str, bool, Any, int]] = []

    async def answer(ws: WebSocket) -> None:
        def on_message(event: MessageEvent) -> None:
            before = len(writes[0])
            ws.send_nowait(event.data)
            seen.append((type(event), event.type, event.target is ws, event.data, len(writes[0]) - before))

        ws.onmessage = on_message
        await ws.wait_closed()

    messages: list[tuple[int, bytes]] = [(1, b"first"), (2, b"\x00\x01"), (1, "é".encode()), (2, b"z" * 1000)]
    async with _server_side_counted(answer) as (ws, counting, reader, writer):
        writes.append(counting.writes)
        decoder = FrameDecoder("client", None)
        for opcode, payload in messages:
            writer.write(masked(opcode, payload))
            frames: list[Any] = []
            while not frames:
                frames.extend(decoder.feed(await asyncio.wait_for(reader.read(65536), 5)))
            assert [(f.opcode, f.payload) for f in frames] == [(opcode, payload)]
            assert ws._flush_handle is None
        replies = counting.writes[: len(messages)]
    assert [_payloads(w) for w in replies] == [[p] for _, p in messages]
    expected = [p.decode() if opcode == 1 else p for opcode, p in messages]
    assert seen == [(MessageEvent, "message", True, data, 1) for data in expected]


async def test_sends_that_time_out_leave_no_waiter_behind() -> None:
    """``wait_for(ws.send(...), timeout)`` against a client that never reads: each cancelled send forgets
    its wait for the transport to drain, so a loop of them cannot grow the connection's memory."""
    results: list[int] = []

    async def handler(ws: WebSocket) -> None:
        timeouts = 0
        for _ in range(5000):  # (the kernel's buffers take the first megabytes)
            try:
                await asyncio.wait_for(ws.send(b"x" * 16384), 0.001)
            except asyncio.TimeoutError:
                timeouts += 1
                if timeouts == 200:
                    break
        results.extend((timeouts, len(ws._drain_waiters)))

    async with serve(handler, "127.0.0.1", 0, write_limit=4096, ping_interval=None) as server:
        assert server.port is not None
        _reader, writer = await raw_client(server.port, rcvbuf=4096)
        await until(lambda: bool(results), timeout=30)
        timeouts, waiters = results
        assert timeouts == 200 and waiters == 0
        writer.transport.abort()


async def test_create_websocket_with_a_small_max_queue_keeps_reading_for_an_async_listener() -> None:
    """The opening task of create_websocket() counts among the listeners' tasks until it ends: its end
    must resume reading like any of them, or messages that arrive with the 101 leave reading paused
    for good (max_queue=1: the first message's task reached the bound)."""
    from wscodec.handshake import compute_accept

    later = asyncio.Event()

    async def raw_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key"))  # fmt: skip
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {compute_accept(key.decode())}\r\n\r\n".encode()
            + b"".join(encode_frame(2, bytes([i])) for i in range(5))  # with the 101, in one segment
        )
        await later.wait()
        writer.write(b"".join(encode_frame(2, bytes([i])) for i in range(5, 10)))
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(raw_server, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        got: list[int] = []
        ws = create_websocket(f"ws://127.0.0.1:{port}/", max_queue=1, ping_interval=None)

        async def listener(event: Any) -> None:
            got.append(event.data[0])

        ws.onmessage = listener
        await until(lambda: len(got) == 5)
        later.set()
        await until(lambda: len(got) == 10)
        assert got == list(range(10))
        ws._abort_now()
    finally:
        server.close()


async def test_a_second_recv_streaming_cannot_take_the_rest_of_anothers_message() -> None:
    """A second ``recv_streaming()`` while the first is part-way through a message raises ConcurrencyError,
    as in websockets; it took the rest of that message, and the first then ran on into the next one."""
    release = asyncio.Event()

    async def handler(ws: WebSocket) -> None:
        async def fragments() -> AsyncIterator[str]:
            yield "m1-part1"
            await release.wait()
            yield "m1-part2"

        await ws.send(fragments())
        await ws.send("m2")
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server, connect(url(server)) as ws:
        first = ws.recv_streaming()
        assert await asyncio.wait_for(first.__anext__(), 5) == "m1-part1"
        second = ws.recv_streaming()
        with pytest.raises(ConcurrencyError):
            await second.__anext__()
        release.set()
        rest = [piece async for piece in first]
        assert "".join(str(piece) for piece in rest) == "m1-part2"
        assert await asyncio.wait_for(ws.recv(), 5) == "m2"


async def test_ping_none_sends_four_random_bytes() -> None:
    """As websockets' ``ping(None)`` (its default): a random payload, so two concurrent pings are answered
    each by its own Pong; it raised TypeError."""
    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server)) as ws:
        first, second = await asyncio.wait_for(asyncio.gather(ws.ping(None), ws.ping(None)), 5)
        assert first >= 0 and second >= 0
