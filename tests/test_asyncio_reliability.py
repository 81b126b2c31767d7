"""Peers that stop reading, vanish, flood or stall must never freeze the event loop or bloat the server.

Regression tests for issue "Reliability first" (sections 1, 2, 4 and 5), in-process over loopback, on both
event loops (the conftest runs every async test on asyncio's loop and on uvloop). A defect of the kind
these tests guard against spins the loop, so nothing inside it can time out: the pytest-timeout bound of
each test (a signal) is what turns such a hang into a failure. The subprocess versions with RSS
measurements live in ``tests/adversarial/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from typing import Any

import pytest
from _raw_handshake import accept_response
from _reading_client import UPGRADE, assert_message_then_close, read_slowly
from _unheeding_client import send_too_big_and_keep_sending
from _waiting import until

from wscodec import ConnectionClosed, encode_frame
from wscodec.asyncio import Server, WebSocket, connect, serve

pytestmark = pytest.mark.timeout(60)

KEY = b"\x01\x02\x03\x04"
BIG = 64 * 1024


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


def url(server: Server) -> str:
    return f"ws://127.0.0.1:{server.port}/"


async def raw_upgrade(port: int, *, rcvbuf: int = 4096) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw client with a small receive buffer, upgraded; its StreamReader stops reading at 64 KiB."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=BIG)
    writer.write(UPGRADE)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


async def write_until_pushed_back(writer: asyncio.StreamWriter, frame: bytes, limit: int = 32 << 20) -> int:
    """Write ``frame`` repeatedly until the server stops reading (our buffer stops draining) or ``limit``."""
    sent = 0
    transport = writer.transport
    while sent < limit:
        writer.write(frame)
        sent += len(frame)
        if transport.get_write_buffer_size() > 4 << 20:
            try:
                await asyncio.wait_for(writer.drain(), 1.0)
            except asyncio.TimeoutError:
                return sent  # pushed back: the server stopped reading
        else:
            await asyncio.sleep(0)
    return sent


def vanish(writer: asyncio.StreamWriter, *, reset: bool) -> None:
    """Drop the TCP connection: a FIN, or a RST (SO_LINGER 0) as a crashed peer or a middlebox would."""
    sock = writer.get_extra_info("socket")
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def served(server: Server) -> None:
    """A fresh client gets its echo: the server is still serving."""
    async with connect(url(server) + "fresh", open_timeout=10) as ws:
        await ws.send("still there?")
        assert await asyncio.wait_for(ws.recv(), 10) == "still there?"


# --------------------------------------------------------------------------- 1. send() after the transport is lost


@pytest.mark.timeout(20)
async def test_send_blocked_on_backpressure_raises_once_the_transport_is_lost() -> None:
    """Unit level: writing paused, a send() waiting, the connection lost: ConnectionClosed, not a spin."""
    async with serve(echo, "127.0.0.1", 0) as server:
        ws = await connect(url(server), compression=None)
        ws.pause_writing()  # as the transport does above write_limit
        sender = asyncio.ensure_future(ws.send("blocked"))
        await asyncio.sleep(0.05)
        assert not sender.done()  # waiting for the transport to drain
        assert ws.transport is not None
        ws.transport.abort()
        with pytest.raises(ConnectionClosed) as caught:
            await asyncio.wait_for(sender, 5)
        assert caught.value.code == 1006
        with pytest.raises(ConnectionClosed):  # and every later send fails at once too
            await asyncio.wait_for(ws.send("again"), 5)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.send([b"a", b"b"]), 5)  # a fragmented one as well


@pytest.mark.timeout(20)
async def test_fragmented_send_blocked_on_backpressure_raises_once_the_transport_is_lost() -> None:
    async with serve(echo, "127.0.0.1", 0) as server:
        ws = await connect(url(server), compression=None)

        async def pieces() -> Any:
            yield b"first"
            ws.pause_writing()
            yield b"second"
            yield b"third"

        sender = asyncio.ensure_future(ws.send(pieces()))
        await until(lambda: ws._write_paused)
        assert ws.transport is not None
        ws.transport.abort()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(sender, 5)


async def test_a_failed_connection_still_delivers_what_was_sent_to_a_reading_client() -> None:
    """A failure (1002) while a large message is on its way to a client that reads it, slowly at first (the
    transport is over write_limit then): the message, then the Close, not a cut."""
    size = 8 << 20

    async def handler(ws: WebSocket) -> None:
        if ws.request is not None and ws.request.path != "/":
            await echo(ws)  # served() checks on "/fresh"
            return
        with contextlib.suppress(ConnectionClosed):
            await ws.send(b"x" * size)
            await ws.recv()

    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
        head, frames = await read_slowly(server.port, b"\x81\x02hi")  # unmasked: a client MUST mask (5.1)
        await asyncio.wait_for(served(server), 10)
    assert head.startswith(b"HTTP/1.1 101"), head
    assert_message_then_close(frames, size, 1002)


@pytest.mark.timeout(45)
@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
async def test_echo_to_a_client_that_stops_reading_then_vanishes(reset: bool) -> None:
    """The issue's reproduction: the echo handler is blocked in send() when the client goes away."""
    handler_errors: list[BaseException] = []

    async def recording_echo(ws: WebSocket) -> None:
        try:
            await echo(ws)
        except ConnectionClosed as exc:
            handler_errors.append(exc)
            raise

    async with serve(recording_echo, "127.0.0.1", 0, compression=None, max_size=None) as server:
        _reader, writer = await raw_upgrade(server.port)
        sent = await write_until_pushed_back(writer, encode_frame(2, b"x" * BIG, mask=KEY))
        assert sent > 1 << 20  # the server took a good deal before pushing back
        (ws,) = server.connections
        await until(lambda: ws._write_paused)  # the handler is stuck in send()
        vanish(writer, reset=reset)
        await until(lambda: handler_errors, 10)
        assert isinstance(handler_errors[0], ConnectionClosed)
        await asyncio.wait_for(served(server), 10)
        await until(lambda: not server.connections, 10)


@pytest.mark.timeout(45)
async def test_streaming_handler_to_a_never_reading_client_dropped_by_keepalive() -> None:
    """No malice needed: a handler that streams to a client that stopped reading (a closed laptop lid)."""
    outcome: list[BaseException] = []

    async def stream(ws: WebSocket) -> None:
        if ws.request is not None and ws.request.path != "/":
            await echo(ws)  # served() checks on "/fresh"; the raw client streams on "/"
            return
        try:
            while True:
                await ws.send(b"y" * BIG)
        except ConnectionClosed as exc:
            outcome.append(exc)

    async with serve(
        stream, "127.0.0.1", 0, compression=None, ping_interval=0.2, ping_timeout=0.5, close_timeout=0.5
    ) as server:
        _reader, writer = await raw_upgrade(server.port)
        try:
            await until(lambda: outcome, 20)  # keepalive fails it, the close timer aborts it
            assert isinstance(outcome[0], ConnectionClosed)
            assert outcome[0].code == 1011
            await asyncio.wait_for(served(server), 10)
        finally:
            writer.transport.abort()


@pytest.mark.timeout(45)
async def test_client_send_to_a_server_that_stops_reading_then_vanishes() -> None:
    """The client role: connect() sending to a server that stops reading, then drops TCP."""
    accepted: asyncio.Future[asyncio.StreamWriter] = asyncio.get_running_loop().create_future()

    async def silent_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        writer.write(accept_response(head))
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader._limit = BIG  # type: ignore[attr-defined]  # the stream stops reading beyond this
        accepted.set_result(writer)
        await asyncio.sleep(3600)

    tcp = await asyncio.start_server(silent_server, "127.0.0.1", 0, limit=BIG)
    port = tcp.sockets[0].getsockname()[1]
    try:
        ws = await connect(f"ws://127.0.0.1:{port}/", compression=None, ping_interval=None)
        assert ws.ready_state == WebSocket.OPEN
        server_writer = await asyncio.wait_for(accepted, 10)
        sends = 0

        async def flood() -> None:
            nonlocal sends
            while True:
                await ws.send(b"z" * BIG)
                sends += 1

        sender = asyncio.ensure_future(flood())
        await until(lambda: ws._write_paused, 20)
        server_writer.transport.abort()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(sender, 10)
        assert sends > 0
    finally:
        tcp.close()


# --------------------------------------------------------------------------- 4. ping flood with unread pongs


def _ping(i: int, *, mask: bytes | None = KEY) -> bytes:
    return encode_frame(9, i.to_bytes(4, "big") * 31 + b"!", mask=mask)  # 125 bytes, numbered


def reader_socket(reader: asyncio.StreamReader) -> socket.socket:
    transport = reader._transport  # type: ignore[attr-defined]
    sock: socket.socket = transport.get_extra_info("socket")
    return sock


async def _read_pongs(reader: asyncio.StreamReader, last: bytes, timeout: float = 20.0) -> list[bytes]:
    """Read frames until the Pong answering ``last`` arrives; returns the Pong payloads seen."""
    from wscodec import FrameDecoder

    # A 4 KiB receive window with delayed ACKs moves ~100 KB/s: open it wide before reading the backlog.
    reader_socket(reader).setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    decoder = FrameDecoder("client", 1 << 20)
    pongs: list[bytes] = []
    deadline = time.monotonic() + timeout
    while not pongs or pongs[-1] != last:
        data = await asyncio.wait_for(reader.read(1 << 16), max(0.1, deadline - time.monotonic()))
        assert data, "connection closed before the last Pong"
        pongs.extend(bytes(f.payload) for f in decoder.feed(data) if f.opcode == 10)
    return pongs


@pytest.mark.timeout(90)
async def test_ping_flood_with_unread_pongs_is_bounded_at_the_server() -> None:
    count = 100_000  # 12.5 MiB of Pings; each unbounded Pong would cost ~130 bytes of transport buffer
    write_limit = 65536
    async with serve(echo, "127.0.0.1", 0, compression=None, write_limit=write_limit) as server:
        reader, writer = await raw_upgrade(server.port)
        (ws,) = server.connections
        peak = 0
        flood_paused = False

        def sample() -> None:
            nonlocal peak, flood_paused
            assert ws.transport is not None
            peak = max(peak, ws.transport.get_write_buffer_size())
            flood_paused = flood_paused or ws._flood_paused

        batch = b"".join(_ping(i) for i in range(1000))
        for start in range(0, count, 1000):
            writer.write(batch if start + 1000 < count else b"".join(_ping(i) for i in range(start, count)))
            sample()
            try:
                await asyncio.wait_for(writer.drain(), 0.2)
            except asyncio.TimeoutError:
                sample()  # pushed back: the server stopped reading
                await asyncio.sleep(0.01)
        last = _ping(count - 1, mask=None)[2:]
        await until(lambda: ws.transport is None or ws.transport.get_write_buffer_size() > 0 or ws._flood_paused)
        sample()
        # Two reads of Pongs (256 KiB each) at most before holding kicks in, and far from 100,000 Pongs.
        assert peak <= write_limit + 2 * 256 * 1024, peak
        assert flood_paused, "the server kept reading a ping flood it could not answer"
        pongs = await _read_pongs(reader, last)  # the client finally reads: the latest Ping is answered
        assert pongs[-1] == last
        assert len(pongs) < count  # some answered together, as RFC 6455 section 5.5.3 allows
        writer.transport.abort()
        await asyncio.wait_for(served(server), 10)


@pytest.mark.timeout(90)
async def test_ping_flood_with_unread_pongs_is_bounded_at_the_client() -> None:
    """A server floods our client with Pings and never reads the Pongs."""
    count = 50_000
    loop = asyncio.get_running_loop()
    go: asyncio.Future[None] = loop.create_future()
    done: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = loop.create_future()

    async def flooding_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        writer.write(accept_response(head))
        await go
        for start in range(0, count, 1000):  # the StreamReader stops reading at 2 * BIG
            writer.write(b"".join(_ping(i, mask=None) for i in range(start, min(count, start + 1000))))
            try:
                await asyncio.wait_for(writer.drain(), 0.2)
            except asyncio.TimeoutError:
                await asyncio.sleep(0.01)
        done.set_result((reader, writer))
        await asyncio.sleep(3600)

    tcp = await asyncio.start_server(flooding_server, "127.0.0.1", 0, limit=BIG)
    port = tcp.sockets[0].getsockname()[1]
    try:
        ws = await connect(f"ws://127.0.0.1:{port}/", compression=None, ping_interval=None, write_limit=65536)
        assert ws.transport is not None
        client_socket = ws.transport.get_extra_info("socket")
        client_socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # the kernel holds little
        go.set_result(None)
        peak = 0
        flood_paused = False
        while not done.done():
            peak = max(peak, ws.transport.get_write_buffer_size())
            flood_paused = flood_paused or ws._flood_paused
            await asyncio.sleep(0.005)
        reader, writer = done.result()
        assert peak <= 65536 + 2 * 256 * 1024, peak
        assert flood_paused, "the client kept reading a ping flood it could not answer"
        client_socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        last = _ping(count - 1, mask=None)[2:]
        pongs: list[bytes] = []
        from wscodec import FrameDecoder

        decoder = FrameDecoder("server", 1 << 20)
        while not pongs or pongs[-1] != last:
            data = await asyncio.wait_for(reader.read(1 << 16), 20)
            assert data
            pongs.extend(bytes(f.payload) for f in decoder.feed(data) if f.opcode == 10)
        assert len(pongs) < count
        writer.transport.abort()
        await asyncio.wait_for(ws.wait_closed(), 10)
    finally:
        tcp.close()


# --------------------------------------------------------------------------- 5. the 431 reaches a client still sending


@pytest.mark.timeout(60)
async def test_huge_request_head_gets_its_431_before_the_socket_closes() -> None:
    """A client still writing a huge head must read the 431, not a reset (graceful close with a drain)."""
    async with serve(echo, "127.0.0.1", 0) as server:
        for _attempt in range(3):  # a reset loses the response often, not always: try a few times
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            filler = b"X-Filler: " + b"a" * 1000 + b"\r\n"
            for _ in range(1024):  # 1 MiB of header lines, written while the server answers
                writer.write(filler)
                if writer.transport.get_write_buffer_size() > 1 << 16:
                    try:
                        await asyncio.wait_for(writer.drain(), 1)
                    except (ConnectionError, asyncio.TimeoutError):
                        break
            try:
                response = await asyncio.wait_for(reader.read(), 10)
            except ConnectionResetError:
                response = b"<reset>"
            writer.transport.abort()
            assert response.startswith(b"HTTP/1.1 431 "), response[:80]
        await asyncio.wait_for(served(server), 10)


# --------------------------------------------------------------------------- 6. a failure's Close reaches the client


@pytest.mark.timeout(120)
async def test_a_failed_connections_close_reaches_a_client_still_sending() -> None:
    """A message over max_size fails the connection with 1009 while the client is still sending. Closing
    the socket with its input unread would send a reset, which destroys the Close frame in flight often
    (about one time in ten on asyncio's loop, one in five on uvloop): our side shuts down, and input is
    read and dropped until the client's EOF, so that it reads 1009, every time."""
    async with serve(echo, "127.0.0.1", 0, max_size=1000) as server:
        for _attempt in range(30):
            assert await asyncio.to_thread(send_too_big_and_keep_sending, server.port, 5) == 1009
        await asyncio.wait_for(served(server), 10)


@pytest.mark.timeout(60)
async def test_a_client_that_never_stops_sending_after_a_failure_is_dropped() -> None:
    """The wait for the peer's EOF after a failure is bounded (``FAIL_LINGER``, at most ``close_timeout``):
    a client that sends on regardless is cut off, and it still got its 1009 first."""
    closed_at: list[float] = []

    async def handler(ws: WebSocket) -> None:
        with contextlib.suppress(ConnectionClosed):
            await echo(ws)
        await ws.wait_closed()
        closed_at.append(time.monotonic())

    async with serve(handler, "127.0.0.1", 0, max_size=1000, close_timeout=0.5) as server:
        started = time.monotonic()
        assert await asyncio.to_thread(send_too_big_and_keep_sending, server.port, 10, stop_at_eof=False) == 1009
        await until(lambda: bool(closed_at))
        assert closed_at[0] - started < 5  # cut off after 0.5 s, not after the client's 10 s
        await asyncio.wait_for(served(server), 10)


async def _upgraded_then_bad_frame_kept_open(port: int, *, after_close: bool) -> asyncio.StreamWriter:
    """A raw client that upgrades, (with ``after_close``, reads the server's Close first, then) sends a frame
    with a reserved opcode instead of a Close, and keeps TCP open without sending anything more."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(UPGRADE)
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    if after_close:
        assert (await asyncio.wait_for(reader.readexactly(2), 10))[0] == 0x88
    writer.write(b"\x83\x80" + KEY)
    return writer


@pytest.mark.timeout(60)
async def test_a_failure_while_closing_lingers_for_fail_linger_not_close_timeout() -> None:
    """Our Close is out (close_timeout armed: 8 s) and the peer breaks the protocol instead of answering:
    the linger that follows is bounded by FAIL_LINGER (2 s), the tighter of the two."""
    took: list[float] = []

    async def handler(ws: WebSocket) -> None:
        started = time.monotonic()
        await ws.close()
        took.append(time.monotonic() - started)

    async with serve(handler, "127.0.0.1", 0, close_timeout=8) as server:
        writer = await _upgraded_then_bad_frame_kept_open(server.port, after_close=True)
        try:
            await until(lambda: bool(took), timeout=20)
        finally:
            writer.transport.abort()
    assert took[0] < 5, took


@pytest.mark.timeout(60)
async def test_a_lingering_connection_frees_its_max_connections_place() -> None:
    """A failed connection whose peer keeps TCP open is CLOSED: it no longer counts as open, so another
    client is let in while it lingers (not refused with 503 for up to FAIL_LINGER)."""
    async with serve(echo, "127.0.0.1", 0, max_connections=1) as server:
        writer = await _upgraded_then_bad_frame_kept_open(server.port, after_close=False)
        try:
            await until(lambda: not server.connections, timeout=1.0)  # well before FAIL_LINGER ends
            await asyncio.wait_for(served(server), 10)
        finally:
            writer.transport.abort()


@pytest.mark.parametrize("style", ["async for", "onmessage"])
async def test_the_keepalive_spares_a_client_whose_pongs_wait_behind_paused_reading(style: str) -> None:
    """A slow handler (0.3 s per message) with max_queue=2: reading pauses for long stretches while the
    keepalive pings every 0.2 s with a 0.4 s timeout. The client answers every ping, but its Pongs wait in
    the socket behind the pause; the server waits for them instead of failing it with 1011, and all ten
    messages are handled. (A client that reads nothing either is still failed: see test_backpressure.)"""
    got: list[str] = []
    done = asyncio.Event()

    async def handler(ws: WebSocket) -> None:
        if style == "async for":
            async for message in ws:
                got.append(message)  # type: ignore[arg-type]
                await asyncio.sleep(0.3)
                if len(got) == 10:
                    await ws.send("done")
        else:

            async def slow(event: Any) -> None:  # an async listener: max_queue of them run at once
                await asyncio.sleep(0.3)
                got.append(event.data)
                if len(got) == 10:
                    await ws.send("done")

            ws.onmessage = slow
            await ws.wait_closed()
        done.set()

    async with serve(handler, "127.0.0.1", 0, max_queue=2, ping_interval=0.2, ping_timeout=0.4) as server:
        async with connect(url(server), ping_interval=None) as client:
            for i in range(10):
                await client.send(f"m{i}")
            assert await asyncio.wait_for(client.recv(), 20) == "done"
        assert client.close_code == 1000
        assert sorted(got) == sorted(f"m{i}" for i in range(10))
        await asyncio.wait_for(done.wait(), 10)


@pytest.mark.parametrize("peer", ["silent", "gone"])
async def test_a_keepalive_that_gives_up_logs_no_unretrieved_future(
    peer: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A peer that never answers the keepalive's Ping ("silent": failed with 1011 after ping_timeout), or
    that leaves while a Ping waits ("gone"): no "Future exception was never retrieved" ERROR for the
    Ping's waiter once it is collected, and the next client is served."""
    import gc

    from _silent_client import SilentClient

    timeout = 0.3 if peer == "silent" else 30
    async with serve(echo, "127.0.0.1", 0, ping_interval=0.2, ping_timeout=timeout, close_timeout=0.5) as server:

        def peer_side() -> int | None:
            client = SilentClient(server.port)
            try:
                if peer == "silent":
                    return client.close_code()
                client.until(0x9)
                return None
            finally:
                client.close()  # "gone": with the Ping unanswered

        code = await asyncio.to_thread(peer_side)
        if peer == "silent":
            assert code == 1011
        await until(lambda: not server.connections, 10)
        async with connect(url(server)) as ws:  # and the next client is served
            await ws.send("fresh")
            assert await asyncio.wait_for(ws.recv(), 10) == "fresh"
    gc.collect()
    await asyncio.sleep(0.05)
    assert "never retrieved" not in caplog.text, caplog.text


async def test_messages_dropped_after_close_leave_no_hole() -> None:
    """After close(), reading goes on to reach the peer's Close, and a message that finds ``max_queue``
    unread is dropped, and every one after it: the application, reading on, gets the start of what was
    sent, never a stream with holes (the threaded API's twin test). max_queue=2, three messages unread,
    close(); then the application reads one (room again) and a fourth comes before the peer's Close."""
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    listener = await asyncio.start_server(lambda r, w: accepted.put_nowait((r, w)), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        opening = asyncio.ensure_future(
            connect(f"ws://127.0.0.1:{port}/", max_queue=2, ping_interval=None, close_timeout=5, compression=None)
        )
        reader, writer = await asyncio.wait_for(accepted.get(), 10)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.write(accept_response(head))
        ws = await asyncio.wait_for(opening, 10)
        for i in range(3):
            writer.write(encode_frame(1, f"msg-{i}".encode()))
        await asyncio.sleep(0.3)  # the three are read (reading paused behind them)
        closing = asyncio.ensure_future(ws.close())
        close_head = await asyncio.wait_for(reader.readexactly(2), 10)  # the client's Close
        assert close_head[0] == 0x88, close_head
        await asyncio.wait_for(reader.readexactly((close_head[1] & 0x7F) + 4), 10)
        assert await asyncio.wait_for(ws.recv(), 5) == "msg-0"  # room again
        writer.write(encode_frame(1, b"msg-3"))
        writer.write(encode_frame(8, struct.pack("!H", 1000)))
        writer.close()  # a server's end of TCP after its Close
        await asyncio.wait_for(closing, 10)
        got: list[Any] = ["msg-0"]
        with contextlib.suppress(ConnectionClosed):
            while len(got) < 5:
                got.append(await asyncio.wait_for(ws.recv(), 5))
        assert got in (["msg-0", "msg-1"], ["msg-0", "msg-1", "msg-2"]), got
    finally:
        listener.close()
        await listener.wait_closed()
