"""The uvicorn protocol's flow control and shutdown paths, in-process: a real ``uvicorn.Config`` and
``ServerState``, the protocol class listening on loopback exactly as uvicorn wires it after an upgrade
(the request bytes go to ``data_received``), plain ASGI applications, and our client or a raw socket.

In-process so each state (paused, CLOSING, handshaking) can be reached and held on purpose; the full
uvicorn subprocess runs are in ``tests/interop/test_uvicorn.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from _reading_client import UPGRADE, assert_message_then_close, read_slowly
from _unheeding_client import send_too_big_and_keep_sending
from _waiting import until
from uvicorn.config import Config
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.server import ServerState

from wscodec import ConnectionClosed, encode_frame
from wscodec.asgi import UvicornWebSocketProtocol
from wscodec.asyncio import connect

pytestmark = pytest.mark.timeout(60)

MASK = b"\x01\x02\x03\x04"


class Served:
    def __init__(self, port: int, protocols: list[UvicornWebSocketProtocol]) -> None:
        self.port = port
        self.protocols = protocols
        self.url = f"ws://127.0.0.1:{port}/"

    @property
    def protocol(self) -> UvicornWebSocketProtocol:
        assert len(self.protocols) == 1, self.protocols
        return self.protocols[0]


@asynccontextmanager
async def asgi_server(app: Any, *, close_timeout: float = 10.0, **config: Any) -> AsyncIterator[Served]:
    cfg = Config(app, ws=UvicornWebSocketProtocol, lifespan="off", log_level="warning", **config)
    cfg.load()
    state = ServerState()
    protocols: list[UvicornWebSocketProtocol] = []
    loop = asyncio.get_running_loop()

    def factory() -> UvicornWebSocketProtocol:
        protocol = UvicornWebSocketProtocol(cfg, state, {}, _loop=loop)
        protocol.close_timeout = close_timeout
        protocols.append(protocol)
        return protocol

    server = await loop.create_server(factory, "127.0.0.1", 0)
    try:
        yield Served(server.sockets[0].getsockname()[1], protocols)
    finally:
        server.close()
        for protocol in protocols:
            if not protocol.disconnected:
                protocol.transport.abort()
        for task in list(state.tasks):
            task.cancel()
        await asyncio.sleep(0)


async def read_all(reader: asyncio.StreamReader, timeout: float = 10.0) -> bytes:
    chunks = []
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), timeout):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


# --------------------------------------------------------------------------- attributes


async def test_protocol_state_lives_in_slots() -> None:
    """Everything the protocol sets is a slot (see ``UvicornWebSocketProtocol.__slots__``): past 29 keys
    CPython unshares an instance dict, and every ``self.x`` on the per-message path is a slower lookup. A
    new attribute missing from ``__slots__`` shows here (``close_timeout`` is the fixture's own)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message["text"]})

    async with asgi_server(app, ws_ping_interval=0.05, ws_ping_timeout=5) as served:
        ws = await connect(served.url, open_timeout=10)
        await ws.send("hello")
        assert await asyncio.wait_for(ws.recv(), 10) == "hello"
        await asyncio.sleep(0.15)  # the keepalive's pings
        protocol = served.protocol
        assert protocol.last_ping_rtt > 0
        assert set(vars(protocol)) == {"close_timeout"}
        await ws.close()
        await until(lambda: protocol.disconnected)
        assert set(vars(protocol)) == {"close_timeout"}


# --------------------------------------------------------------------------- reading paused at ws_max_queue


async def test_reading_pauses_at_ws_max_queue_and_resumes_as_the_app_reads() -> None:
    release = asyncio.Event()
    got: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await release.wait()
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            got.append(message["text"])
            if len(got) == 40:
                await send({"type": "websocket.send", "text": f"got {len(got)}"})

    async with asgi_server(app, ws_max_queue=4, ws_per_message_deflate=False) as served:
        ws = await connect(served.url, open_timeout=10, compression=None)
        for i in range(40):
            await ws.send(f"m{i}")
        protocol = served.protocol
        await until(lambda: protocol.read_paused)
        assert len(protocol._queue) >= protocol.max_queue  # paused because the queue is full, not before
        release.set()
        assert await asyncio.wait_for(ws.recv(), 20) == "got 40"
        assert got == [f"m{i}" for i in range(40)]
        assert not protocol.read_paused
        await ws.close()


# --------------------------------------------------------------------------- send() after the client left


async def test_send_after_the_client_left_raises_client_disconnected() -> None:
    outcome: list[Any] = []
    accepted = asyncio.Event()
    gone = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        accepted.set()
        await gone.wait()
        try:
            await send({"type": "websocket.send", "text": "anyone?"})
        except ClientDisconnected as exc:
            outcome.append(exc)
        outcome.append(await receive())

    async with asgi_server(app) as served:
        ws = await connect(served.url, open_timeout=10)
        await asyncio.wait_for(accepted.wait(), 10)
        assert ws.transport is not None
        ws.transport.abort()
        await until(lambda: served.protocol.disconnected)
        gone.set()
        await until(lambda: len(outcome) == 2)
        assert isinstance(outcome[0], ClientDisconnected)
        assert outcome[1] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}


async def test_send_cancelled_while_waiting_for_the_transport_leaves_no_waiter() -> None:
    """The client stops reading; the app's send() waits for the buffer to drain and is cancelled: no waiter
    stays behind, and once the client reads again the connection still works."""
    blocked = asyncio.Event()
    outcome: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        chunk = b"x" * 65536
        sender = None
        for _ in range(2000):
            sender = asyncio.ensure_future(send({"type": "websocket.send", "bytes": chunk}))
            await asyncio.sleep(0)
            if not sender.done():
                break
            sender.result()
        assert sender is not None and not sender.done(), "the transport never pushed back"
        blocked.set()
        sender.cancel()
        try:
            await sender
        except asyncio.CancelledError:
            outcome.append("cancelled")
        outcome.append(f"waiters={len(served_ref[0].protocol._drain_waiters)}")
        await send({"type": "websocket.send", "text": "after"})
        outcome.append("sent after")
        await send({"type": "websocket.close", "code": 1000})

    served_ref: list[Served] = []
    async with asgi_server(app, close_timeout=1.0, ws_per_message_deflate=False) as served:  # (no Close comes back)
        served_ref.append(served)
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port, limit=1 << 16)
        writer.write(UPGRADE)
        await asyncio.wait_for(blocked.wait(), 30)
        await until(lambda: len(outcome) >= 2)
        assert outcome[:2] == ["cancelled", "waiters=0"]
        data = await read_all(reader, timeout=30)  # reading again drains everything, "after" last
        writer.close()
        assert outcome == ["cancelled", "waiters=0", "sent after"]
        assert data.startswith(b"HTTP/1.1 101 ")
        assert encode_frame(1, b"after") in data


async def test_receive_cancelled_by_timeouts_on_an_idle_connection_leaves_no_waiters() -> None:
    """An app polling ``wait_for(receive(), t)`` on a quiet connection: each timeout cancels a receive();
    none of them may stay behind, and the next message is still delivered."""
    counts: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        for _ in range(20):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(receive(), 0.001)
        counts.append(len(served_ref[0].protocol._waiters))
        await send({"type": "websocket.send", "text": "polled"})
        message = await receive()
        await send({"type": "websocket.send", "text": message["text"]})

    served_ref: list[Served] = []
    async with asgi_server(app) as served:
        served_ref.append(served)
        ws = await connect(served.url, open_timeout=10)
        assert await asyncio.wait_for(ws.recv(), 20) == "polled"
        assert counts == [0]
        await ws.send("still delivered")
        assert await asyncio.wait_for(ws.recv(), 10) == "still delivered"
        await ws.close()


# --------------------------------------------------------------------------- shutdown()


async def test_shutdown_while_the_app_decides_answers_500() -> None:
    deciding = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        deciding.set()
        await asyncio.sleep(3600)

    async with asgi_server(app) as served:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(UPGRADE)
        await asyncio.wait_for(deciding.wait(), 10)
        served.protocol.shutdown()
        answer = await read_all(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 500 "), answer[:200]


@pytest.mark.parametrize("answer", ["accept", "deny"])
async def test_the_app_answering_after_shutdown_answered_500_finds_the_client_gone(answer: str) -> None:
    """The app's own answer, once shutdown() answered for it, raises ClientDisconnected (an OSError, which
    Starlette turns into WebSocketDisconnect), as uvicorn's own protocols do, even while the client keeps its
    socket open: not a RuntimeError about a websocket.close the app never sent."""
    deciding, decided = asyncio.Event(), asyncio.Event()
    raised: list[BaseException] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        if answer == "deny":
            await send({"type": "websocket.http.response.start", "status": 403, "headers": []})
        deciding.set()
        await asyncio.sleep(0.3)
        try:
            if answer == "deny":
                await send({"type": "websocket.http.response.body", "body": b"no"})
            else:
                await send({"type": "websocket.accept"})
        except BaseException as exc:
            raised.append(exc)
            raise
        finally:
            decided.set()

    async with asgi_server(app) as served:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(UPGRADE)
        await asyncio.wait_for(deciding.wait(), 10)
        served.protocol.shutdown()
        assert (await asyncio.wait_for(reader.read(65536), 10)).startswith(b"HTTP/1.1 500 ")
        await asyncio.wait_for(decided.wait(), 10)  # the client's socket still open
        writer.close()
    assert len(raised) == 1 and isinstance(raised[0], ClientDisconnected), raised


@pytest.mark.parametrize(("status", "answer"), [(100, b"HTTP/1.1 500 "), (101, b"HTTP/1.1 500 "), (204, None)])
async def test_a_denial_is_a_final_answer_with_content_only_where_allowed(status: int, answer: bytes | None) -> None:
    """websocket.http.response.start with a 1xx is the app's error (a 1xx is only ever interim; wsproto
    refuses it too): the client gets a 500. A 204's body is not sent (RFC 9110 section 15.3.5): the client
    would read it as another answer."""
    errors: list[BaseException] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        try:
            await send({"type": "websocket.http.response.start", "status": status, "headers": []})
            await send({"type": "websocket.http.response.body", "body": b"abc"})
        except RuntimeError as exc:
            errors.append(exc)
            raise

    async with asgi_server(app) as served:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(UPGRADE)
        data = await asyncio.wait_for(read_all(reader), 10)
        writer.close()
    if answer is not None:
        assert data.startswith(answer), data[:200]
        assert len(errors) == 1 and "status" in str(errors[0])
    else:
        assert data.startswith(b"HTTP/1.1 204 ") and data.endswith(b"\r\n\r\n"), data
        assert not errors


async def test_a_large_denial_body_reaches_a_client_that_reads_it() -> None:
    """The whole body goes out before the socket closes, however far it is over the high-water mark."""
    size = 8 << 20

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 403, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"d" * size})

    async with asgi_server(app) as served:
        head, body = await read_slowly(served.port)
    assert head.startswith(b"HTTP/1.1 403"), head[:200]
    assert len(body) == size, f"body truncated: {len(body)} of {size} bytes"


async def test_a_failed_connection_still_delivers_what_was_sent_to_a_reading_client() -> None:
    """A failure (1002) while a large message is on its way to a client that reads it: the message, then
    the Close, not a cut."""
    size = 8 << 20

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        with contextlib.suppress(OSError):
            await send({"type": "websocket.send", "bytes": b"x" * size})
        await receive()

    async with asgi_server(app) as served:
        head, frames = await read_slowly(served.port, b"\x81\x02hi")  # unmasked: 1002
    assert head.startswith(b"HTTP/1.1 101"), head
    assert_message_then_close(frames, size, 1002)


async def test_shutdown_when_open_closes_1012() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    async with asgi_server(app) as served:
        ws = await connect(served.url, open_timeout=10)
        served.protocol.shutdown()
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
        assert info.value.code == 1012
        await until(lambda: served.protocol.disconnected)


async def test_shutdown_while_closing_bounds_the_wait_by_shutdown_timeout() -> None:
    """Our Close is out and the client never answers: shutdown() cuts the close_timeout wait down to
    shutdown_timeout."""
    closed = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})
        closed.set()
        await asyncio.sleep(3600)

    async with asgi_server(app, close_timeout=600) as served:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(UPGRADE)
        await asyncio.wait_for(closed.wait(), 10)
        protocol = served.protocol
        assert not protocol.disconnected
        protocol.shutdown_timeout = 0.2
        started = time.monotonic()
        protocol.shutdown()
        data = await read_all(reader, timeout=30)
        writer.close()
        assert data.startswith(b"HTTP/1.1 101 ")
        assert data.endswith(encode_frame(8, (1000).to_bytes(2, "big")))  # one Close: ours
        await until(lambda: protocol.disconnected)
        assert time.monotonic() - started < 30  # not close_timeout (600 s)


async def test_the_apps_close_after_shutdown_keeps_the_shutdown_bound() -> None:
    """The app answers the shutdown's websocket.disconnect with websocket.close (Starlette's ``finally:
    await websocket.close()``): the wait for a client that never answers stays shutdown_timeout, not a
    fresh close_timeout."""
    answered = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] == "websocket.receive":
            pass
        await send({"type": "websocket.close", "code": 1000})
        answered.set()

    async with asgi_server(app, close_timeout=600) as served:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(UPGRADE)
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        protocol = served.protocol
        protocol.shutdown_timeout = 0.5
        started = time.monotonic()
        protocol.shutdown()
        try:
            await asyncio.wait_for(answered.wait(), 10)
            await until(lambda: protocol.disconnected)
        finally:
            writer.transport.abort()
        assert time.monotonic() - started < 5  # shutdown_timeout, not close_timeout (600 s)


async def test_the_app_is_told_the_close_code_that_went_out() -> None:
    """A protocol error held back behind a message the app had not read goes out (1002) when the app
    closes: the app's websocket.disconnect says 1002, not the code the app asked for."""
    disconnect: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        assert (await receive())["text"] == "hi"
        await send({"type": "websocket.close", "code": 4000})
        disconnect.update(await receive())

    async with asgi_server(app, close_timeout=2) as served:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(UPGRADE)
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.write(encode_frame(1, b"hi", mask=True) + b"\x83\x80" + MASK)  # then a reserved opcode
        try:
            header = await asyncio.wait_for(reader.readexactly(4), 10)
        finally:
            writer.transport.abort()
        assert header[0] == 0x88 and int.from_bytes(header[2:4], "big") == 1002
        await until(lambda: bool(disconnect))
        assert disconnect["type"] == "websocket.disconnect" and disconnect["code"] == 1002


async def test_a_failure_during_shutdown_keeps_the_shutdown_bound() -> None:
    """shutdown() bounds the wait for the client's Close by shutdown_timeout; a client that answers with a
    protocol violation instead, keeping TCP open, starts a linger (FAIL_LINGER, 2 s) that must not push
    that bound back."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] == "websocket.receive":
            pass

    async with asgi_server(app, close_timeout=10) as served:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(UPGRADE)
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        protocol = served.protocol
        protocol.shutdown_timeout = 1.0
        started = time.monotonic()
        protocol.shutdown()
        assert (await asyncio.wait_for(reader.readexactly(2), 10))[0] == 0x88  # the 1012
        await asyncio.sleep(0.5)
        writer.write(b"\x83\x80" + MASK)  # a reserved opcode instead of a Close; TCP stays open
        try:
            await until(lambda: protocol.disconnected)
        finally:
            writer.transport.abort()
        assert time.monotonic() - started < 1.8  # shutdown_timeout, not 0.5 s + FAIL_LINGER


async def test_shutdown_when_closed_closes_the_transport() -> None:
    """The closing handshake is over but the client keeps TCP open (and stops reading): shutdown() ends it."""
    closed = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        assert message["type"] == "websocket.disconnect"
        closed.set()

    async with asgi_server(app, close_timeout=600) as served:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(UPGRADE)
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.write(encode_frame(8, (1000).to_bytes(2, "big"), mask=MASK))
        await asyncio.wait_for(closed.wait(), 10)
        protocol = served.protocol
        protocol.shutdown()
        await asyncio.wait_for(read_all(reader), 30)
        writer.close()
        await until(lambda: protocol.disconnected)


# --------------------------------------------------------------------------- the close timer


async def test_close_timer_aborts_a_client_that_never_answers_our_close() -> None:
    closed = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4001, "reason": "go"})
        closed.set()
        message = await receive()
        assert message == {"type": "websocket.disconnect", "code": 4001, "reason": "go"}

    async with asgi_server(app, close_timeout=0.3) as served:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(UPGRADE)
        await asyncio.wait_for(closed.wait(), 10)
        started = time.monotonic()
        data = await read_all(reader, timeout=30)  # the client stays silent; the server must drop it
        writer.close()
        assert data.endswith(encode_frame(8, (4001).to_bytes(2, "big") + b"go"))
        assert served.protocol.disconnected
        assert time.monotonic() - started < 20


@pytest.mark.timeout(120)
async def test_a_failed_connections_close_reaches_a_client_still_sending() -> None:
    """A message over ws_max_size fails the connection with 1009 while the client is still sending: the
    client reads the 1009 every time, not a reset that destroyed it (about one time in thirty on asyncio's
    loop, one in ten on uvloop, before our side shut down and read on until the client's EOF); and one
    that sends on regardless is cut off after close_timeout."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] == "websocket.receive":
            pass

    async with asgi_server(app, ws_max_size=1000, close_timeout=0.5) as served:
        for _attempt in range(60):
            assert await asyncio.to_thread(send_too_big_and_keep_sending, served.port, 5) == 1009
        started = time.monotonic()
        assert await asyncio.to_thread(send_too_big_and_keep_sending, served.port, 10, stop_at_eof=False) == 1009
        assert time.monotonic() - started < 5
        await until(lambda: all(protocol.disconnected for protocol in served.protocols))
        ws = await connect(served.url, open_timeout=10)  # and a fresh client is served
        await ws.close()
        assert ws.close_code == 1000


class _RecordingTransport:
    """Records each write before passing it on (uvloop's transports cannot be patched)."""

    def __init__(self, inner: Any, writes: list[tuple[str, bytes]]) -> None:
        self._inner = inner
        self.writes = writes

    def write(self, data: Any) -> None:
        self.writes.append(("write", bytes(data)))
        self._inner.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_a_lone_reply_is_written_inside_send_and_a_burst_after_it_batches() -> None:
    """The application's first send of a step reaches the transport before send() returns (one loop turn
    sooner at one message in flight); the sends after it in the same step go out together."""
    log: list[tuple[str, bytes]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        message = await receive()
        protocol = served.protocol
        protocol.transport = _RecordingTransport(protocol.transport, log)  # type: ignore[assignment]
        await send({"type": "websocket.send", "text": message["text"]})
        log.append(("returned", b""))
        for i in range(4):
            await send({"type": "websocket.send", "text": f"b{i}"})
        log.append(("burst queued", b""))
        await receive()

    async with asgi_server(app) as served, connect(served.url, compression=None) as ws:
        await ws.send("ping")
        replies = [await asyncio.wait_for(ws.recv(), 10) for _ in range(5)]
        assert replies == ["ping", "b0", "b1", "b2", "b3"]
        kinds = [kind for kind, _ in log]
        assert kinds[:3] == ["write", "returned", "burst queued"], kinds
        assert kinds[3:] == ["write"]  # the four of the burst in one write


async def test_the_first_answer_to_a_read_of_several_messages_goes_at_once() -> None:
    """Five messages that arrive in one read: the application's answer to the first reaches the transport
    inside its send(), though four more wait to be received; the other four answers share one write."""
    log: list[tuple[str, bytes]] = []
    recording = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        protocol = served.protocol
        protocol.transport = _RecordingTransport(protocol.transport, log)  # type: ignore[assignment]
        recording.set()
        for _ in range(5):
            message = await receive()
            await send({"type": "websocket.send", "text": message["text"]})
            log.append(("sent", b""))
        await receive()

    async with asgi_server(app) as served, connect(served.url, compression=None) as ws:
        await asyncio.wait_for(recording.wait(), 10)
        assert ws.transport is not None  # five frames in one write: one read at the server
        ws.transport.write(b"".join(encode_frame(1, f"m{i}".encode(), mask=MASK) for i in range(5)))
        replies = [await asyncio.wait_for(ws.recv(), 10) for _ in range(5)]
        assert replies == [f"m{i}" for i in range(5)]
        kinds = [kind for kind, _ in log]
        assert kinds == ["write", "sent", "sent", "sent", "sent", "sent", "write"], kinds
        assert b"m0" in log[0][1] and b"m1" not in log[0][1]
        assert all(f"m{i}".encode() in log[-1][1] for i in range(1, 5))
