"""The asyncio server's opening-handshake paths: malformed, oversized, trickled or truncated request heads,
bytes pipelined behind the head, clients that leave mid-decision, faulty hooks, and shutdown while
connections are still handshaking or will not end.

Every test ends by checking that a fresh client still gets its echo: a path that breaks the server breaks
that too. Waits are for conditions, with generous bounds (a loaded 2-core machine).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

import pytest
from _waiting import until

from wscodec import ConnectionClosed, InvalidStatus, encode_frame
from wscodec.asyncio import Server, WebSocket, connect, serve
from wscodec.connection import REJECT_LINGER
from wscodec.errors import NegotiationError
from wscodec.events import Request

pytestmark = pytest.mark.timeout(60)

MASK = b"\x01\x02\x03\x04"
UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


def url(server: Server) -> str:
    return f"ws://127.0.0.1:{server.port}/"


async def served(server: Server) -> None:
    """A fresh client gets its echo: the server is still serving."""
    async with connect(url(server), open_timeout=10) as ws:
        await ws.send("still there?")
        assert await asyncio.wait_for(ws.recv(), 10) == "still there?"


async def read_all(reader: asyncio.StreamReader, timeout: float = 10.0) -> bytes:
    """Everything until the server closes (a reset counts as the end)."""
    chunks = []
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), timeout):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


async def raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


# --------------------------------------------------------------------------- bad request heads


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"NONSENSE\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n", b"400"),  # a field without a colon
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 9000 + b"\r\n\r\n", b"431"),
        (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n", b"431"),
    ],
    ids=["garbage", "malformed-field", "oversized", "too-many-fields"],
)
async def test_bad_request_head_gets_its_status_and_the_server_survives(head: bytes, status: bytes) -> None:
    handled = []

    async def handler(ws: WebSocket) -> None:
        handled.append(ws)

    async with serve(handler, "127.0.0.1", 0, open_timeout=None) as server:
        reader, writer = await raw(server.port)
        writer.write(head)
        answer = await read_all(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer[:200]
        await until(lambda: not server._protocols)
        assert handled == []
        server.handler = echo
        await served(server)


async def test_slowloris_request_head_is_cut_off_by_open_timeout() -> None:
    """A head trickled one byte at a time never completes: open_timeout drops the client, even though it
    keeps sending, and the server serves others meanwhile."""
    async with serve(echo, "127.0.0.1", 0, open_timeout=1.0) as server:
        reader, writer = await raw(server.port)
        started = time.monotonic()
        dropped = False
        for byte in UPGRADE[:-4] + b"X-Slow: " + b"z" * 200:  # never reaches the blank line
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except ConnectionError:
                dropped = True
                break
            if reader.at_eof():
                dropped = True
                break
            await asyncio.sleep(0.02)
            if time.monotonic() - started > 0.5 and not server.connections:
                await served(server)  # others are served while the slow head trickles
        if not dropped:
            dropped = await read_all(reader, timeout=10) == b""
        writer.close()
        assert dropped, "the slowloris client was never dropped"
        elapsed = time.monotonic() - started
        assert elapsed < 30, elapsed
        await until(lambda: not server._protocols)
        await served(server)


async def test_eof_in_the_middle_of_the_request_head_ends_the_connection() -> None:
    """A client half-closes after part of the head: the server drops it at once (no open_timeout here to
    do it instead) and forgets it."""
    async with serve(echo, "127.0.0.1", 0, open_timeout=None) as server:
        reader, writer = await raw(server.port)
        writer.write(UPGRADE[:40])
        await writer.drain()
        await until(lambda: len(server._protocols) == 1)
        writer.write_eof()
        assert await read_all(reader) == b""
        writer.close()
        await until(lambda: not server._protocols)
        await served(server)


# --------------------------------------------------------------------------- the handshake being decided


async def test_frames_pipelined_behind_the_head_wait_for_an_async_process_request() -> None:
    """The client sends its first frame right behind the request, while an async process_request is still
    deciding: the frame reaches the handler once the upgrade is accepted."""
    deciding = asyncio.Event()
    go = asyncio.Event()

    async def process_request(request: Request) -> None:
        deciding.set()
        await go.wait()

    async with serve(echo, "127.0.0.1", 0, process_request=process_request, compression=None) as server:
        reader, writer = await raw(server.port)
        writer.write(UPGRADE + encode_frame(1, b"pipelined", mask=MASK))
        await asyncio.wait_for(deciding.wait(), 10)
        writer.write(encode_frame(1, b"second", mask=MASK))  # more bytes while the decision is pending
        await writer.drain()
        await asyncio.sleep(0.05)
        go.set()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101 ")
        first = await asyncio.wait_for(reader.readexactly(2 + len(b"pipelined")), 10)
        second = await asyncio.wait_for(reader.readexactly(2 + len(b"second")), 10)
        assert first == encode_frame(1, b"pipelined")
        assert second == encode_frame(1, b"second")
        writer.close()


async def test_client_leaving_while_process_request_runs_is_forgotten() -> None:
    deciding = asyncio.Event()
    go = asyncio.Event()
    decided = []
    cancelled = []
    handled = []

    async def process_request(request: Request) -> None:
        deciding.set()
        try:
            await go.wait()
        except asyncio.CancelledError:
            cancelled.append(request.path)
            raise
        decided.append(request.path)

    async def handler(ws: WebSocket) -> None:
        handled.append(ws)
        await echo(ws)

    # Reading is paused while the decision is pending, so the server learns of the client's departure no
    # later than open_timeout; the decision is then cancelled, and the handler never runs.
    async with serve(handler, "127.0.0.1", 0, process_request=process_request, open_timeout=1.0) as server:
        _reader, writer = await raw(server.port)
        writer.write(UPGRADE)
        await asyncio.wait_for(deciding.wait(), 10)
        writer.transport.abort()
        await until(lambda: not server._protocols, timeout=20)
        await until(lambda: not server._tasks)
        assert cancelled == ["/"]
        go.set()
        assert decided == []
        assert handled == []
        assert not server.connections
        await served(server)  # process_request now lets everyone in at once
        assert len(handled) == 1


@pytest.mark.parametrize(
    "response",
    [(200, 5, b"x"), ("not a status", [], b""), (200, [("Bad\r\nName", "v")], b""), (42,)],
    ids=["headers-not-iterable", "status-not-int", "header-injection", "wrong-shape"],
)
async def test_invalid_process_request_result_is_500(response: Any, caplog: pytest.LogCaptureFixture) -> None:
    async with serve(echo, "127.0.0.1", 0, process_request=lambda request: response) as server:
        reader, writer = await raw(server.port)
        writer.write(UPGRADE)
        answer = await read_all(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 500 "), answer[:200]
        assert b"Bad\r\nName" not in answer
        assert "invalid response from process_request" in caplog.text
        server.process_request = None
        await served(server)


async def test_select_subprotocol_raising_is_500(caplog: pytest.LogCaptureFixture) -> None:
    def select(offered: list[str]) -> str | None:
        raise ValueError("boom")

    async with serve(echo, "127.0.0.1", 0, subprotocols=["chat"], select_subprotocol=select) as server:
        reader, writer = await raw(server.port)
        writer.write(UPGRADE.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Protocol: chat\r\n\r\n"))
        answer = await read_all(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 500 "), answer[:200]
        assert "error while accepting the connection" in caplog.text
        assert "boom" in caplog.text
        server.select_subprotocol = None
        async with connect(url(server), subprotocols=["chat"], open_timeout=10) as ws:
            assert ws.subprotocol == "chat"


# --------------------------------------------------------------------------- shutting down


async def test_close_aborts_connections_still_handshaking() -> None:
    """server.close() does not wait for a half-sent request head (there is no one to send a Close to)."""
    server = await serve(echo, "127.0.0.1", 0, open_timeout=None)
    reader, writer = await raw(server.port)
    writer.write(UPGRADE[:50])
    await until(lambda: len(server._protocols) == 1)
    server.close()
    assert await read_all(reader) == b""
    writer.close()
    started = time.monotonic()
    await asyncio.wait_for(server.wait_closed(), 30)
    assert not server._protocols
    assert time.monotonic() - started < server.close_timeout  # not by the close timer


async def test_wait_closed_cancels_handlers_still_running_after_close_timeout(caplog: pytest.LogCaptureFixture) -> None:
    """A handler that ignores the end of its connection is cancelled once close_timeout has passed."""
    entered = asyncio.Event()
    outcome: list[str] = []

    async def stubborn(ws: WebSocket) -> None:
        entered.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    server = await serve(stubborn, "127.0.0.1", 0, close_timeout=1.0)
    client = await connect(url(server), open_timeout=10)
    await asyncio.wait_for(entered.wait(), 10)
    server.close()
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(client.recv(), 10)
    assert info.value.code == 1001
    with caplog.at_level(logging.WARNING, logger="wscodec.asyncio.server"):
        await asyncio.wait_for(server.wait_closed(), 30)
    assert outcome == ["cancelled"]
    assert "still open after" in caplog.text
    assert not server._tasks


def hanging_hook(which: str, entered: asyncio.Event, cancelled: list[str], release: asyncio.Event) -> dict[str, Any]:
    """``process_request`` or ``process_response`` (``which``) that waits for ``release``, noting its
    cancellation: the ``serve()`` keyword argument."""

    async def wait() -> None:
        entered.set()
        try:
            await release.wait()
        except asyncio.CancelledError:
            cancelled.append(which)
            raise

    async def process_request(connection: WebSocket, request: Request) -> None:
        await wait()

    async def process_response(connection: WebSocket, request: Request, response: Any) -> None:
        await wait()

    return {which: process_request if which == "process_request" else process_response}


HOOKS = pytest.mark.parametrize("which", ["process_request", "process_response"])


@HOOKS
async def test_close_while_a_hook_awaits_answers_503_alone(which: str) -> None:
    """A handshake whose request is in when the server closes gets one answer, 503, as websockets gives it:
    not a 101 followed by a Close and a second HTTP head, and the handler never starts."""
    entered, release = asyncio.Event(), asyncio.Event()
    handled: list[WebSocket] = []

    async def handler(ws: WebSocket) -> None:
        handled.append(ws)
        await echo(ws)

    server = await serve(handler, "127.0.0.1", 0, close_timeout=5, **hanging_hook(which, entered, [], release))
    reader, writer = await raw(server.port)
    writer.write(UPGRADE)
    await asyncio.wait_for(entered.wait(), 10)
    server.close()
    await asyncio.sleep(0.1)  # close() itself must not answer
    release.set()
    answer = await read_all(reader)
    writer.close()
    await asyncio.wait_for(server.wait_closed(), 30)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 "), answer[:200]
    assert body == b"Server is shutting down.\n"
    assert answer.count(b"HTTP/1.1") == 1
    assert handled == []


@HOOKS
async def test_open_timeout_bounds_the_hooks(which: str) -> None:
    """open_timeout covers process_request and process_response, as websockets' asyncio.timeout around the
    whole handshake: a hook that never returns is cancelled, the connection aborted, its place freed."""
    entered, release = asyncio.Event(), asyncio.Event()
    cancelled: list[str] = []
    hook = hanging_hook(which, entered, cancelled, release)
    async with serve(echo, "127.0.0.1", 0, open_timeout=0.5, max_connections=1, **hook) as server:
        reader, writer = await raw(server.port)
        writer.write(UPGRADE)
        await asyncio.wait_for(entered.wait(), 10)
        assert await read_all(reader) == b""
        writer.close()
        await until(lambda: cancelled == [which])
        await until(lambda: not server._tasks and not server._admitting)
        setattr(server, which, None)
        await served(server)  # the one place is free again


async def test_clients_leaving_during_a_hook_leave_no_task_behind(caplog: pytest.LogCaptureFixture) -> None:
    """Each client that leaves while process_request awaits has its handshake cancelled once the server
    learns of it (reading is paused meanwhile: at open_timeout at the latest), so the shutdown that follows
    has nothing to wait for or warn about."""
    entered, release = asyncio.Event(), asyncio.Event()
    cancelled: list[str] = []
    hook = hanging_hook("process_request", entered, cancelled, release)
    server = await serve(echo, "127.0.0.1", 0, open_timeout=0.5, close_timeout=5, **hook)
    for _ in range(20):
        entered.clear()
        _reader, writer = await raw(server.port)
        writer.write(UPGRADE)
        await asyncio.wait_for(entered.wait(), 10)
        writer.transport.abort()
    await until(lambda: len(cancelled) == 20 and not server._tasks and not server._protocols)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        server.close()
        await asyncio.wait_for(server.wait_closed(), 30)
    assert time.monotonic() - started < server.close_timeout
    assert "still open" not in caplog.text
    assert "never retrieved" not in caplog.text


async def test_close_without_closing_connections_lets_them_finish() -> None:
    """close(close_connections=False) leaves the open connections alone, as in websockets: they are served
    past close_timeout, and wait_closed() returns once their handlers have."""
    server = await serve(echo, "127.0.0.1", 0, close_timeout=0.3)
    address = url(server)
    client = await connect(address, open_timeout=10)
    server.close(close_connections=False)
    waiter = asyncio.ensure_future(server.wait_closed())
    for _ in range(10):  # 1 s, several close_timeouts
        await client.send("still served")
        assert await asyncio.wait_for(client.recv(), 10) == "still served"
        await asyncio.sleep(0.1)
    assert not waiter.done()
    with pytest.raises(OSError):
        await connect(address, open_timeout=10)  # no longer accepting
    await client.close()
    assert client.close_code == 1000
    await asyncio.wait_for(waiter, 10)
    assert not server._tasks


# --------------------------------------------------------------------------- what process_request is given

MALFORMED_LINES = [
    pytest.param(b"GET /a\x1b[2Jb HTTP/1.1", id="control-character-in-target"),
    pytest.param(b"G(T / HTTP/1.1", id="method-not-a-token"),
    pytest.param(b"GET / HTTX/1.1", id="not-a-version"),
]


@pytest.mark.parametrize("line", MALFORMED_LINES)
async def test_a_malformed_request_line_never_reaches_process_request(line: bytes) -> None:
    """The request line is checked before ``process_request`` runs: no hook (nor a log line it writes) is
    handed a target with control characters. The Connection answers 400, and the server goes on."""
    seen: list[str] = []

    def hook(request: Request) -> None:
        seen.append(request.path)

    status = b"400"

    async with serve(echo, "127.0.0.1", 0, process_request=hook) as server:
        reader, writer = await raw(server.port)
        writer.write(UPGRADE.replace(b"GET / HTTP/1.1", line, 1))
        answer = await read_all(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer[:200]
        assert seen == []
        async with connect(url(server) + "ok", open_timeout=10) as ws:
            await ws.send("still served")
            assert await ws.recv() == "still served"
        assert seen == ["/ok"]


async def test_process_request_may_answer_another_method() -> None:
    """A well-formed request of another method or version still reaches the hook, which may answer it as
    an HTTP server does (the CLI answers HEAD); left to the Connection, it is refused as an upgrade."""
    seen: list[tuple[str, str]] = []

    def hook(request: Request) -> Any:
        seen.append((request.method, request.http_version))
        return (200, [("Content-Type", "text/plain")], b"headed\n") if request.method == "HEAD" else None

    async with serve(echo, "127.0.0.1", 0, process_request=hook) as server:
        for line, status in ((b"HEAD / HTTP/1.1", b"200"), (b"POST / HTTP/1.1", b"405"), (b"GET / HTTP/1.0", b"505")):
            reader, writer = await raw(server.port)
            writer.write(UPGRADE.replace(b"GET / HTTP/1.1", line, 1))
            answer = await read_all(reader)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer[:200]
    assert seen == [("HEAD", "HTTP/1.1"), ("POST", "HTTP/1.1"), ("GET", "HTTP/1.0")]


async def test_process_response_sees_and_may_replace_a_refused_upgrade() -> None:
    """As websockets calls it after ``accept()`` whatever its answer: a request the upgrade refuses (here, no
    Sec-WebSocket-Key; then no subprotocol in common) goes through ``process_response``, which may replace
    the refusal. A malformed head, which no hook can read, does not."""
    seen: list[tuple[str, int]] = []

    def hook(connection: WebSocket, request: Request | None, response: Any) -> Any:
        assert request is not None
        seen.append((request.path, response.status_code))
        if request.path == "/replace":
            return connection.respond(418, "replaced")
        return None

    async with serve(echo, "127.0.0.1", 0, process_response=hook, subprotocols=["chat"]) as server:
        keyless = UPGRADE.replace(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b"")
        answers = []
        for head in (
            keyless.replace(b"GET /", b"GET /keep", 1),
            keyless.replace(b"GET /", b"GET /replace", 1),
            UPGRADE.replace(b"GET /", b"GET /nochat", 1),
            b"GET /a\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        ):
            reader, writer = await raw(server.port)
            writer.write(head)
            answers.append(await read_all(reader))
            writer.close()
        assert [answer[9:12] for answer in answers] == [b"400", b"418", b"400", b"400"]
        assert answers[1].endswith(b"replaced")
        async with connect(url(server) + "ok", subprotocols=["chat"], open_timeout=10) as ws:
            await ws.send("still served")
            assert await ws.recv() == "still served"
    assert seen == [("/keep", 400), ("/replace", 400), ("/nochat", 400), ("/ok", 101)]


KEYLESS = UPGRADE.replace(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b"").replace(b"GET /", b"GET /x", 1)


@pytest.mark.parametrize("replace", [False, True], ids=["kept", "replaced"])
async def test_a_client_gone_while_process_response_awaits_a_refusal_is_forgotten_quietly(
    replace: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The client left while the hook awaited (reading is paused then, so its FIN is unseen): writing the
    refusal meets a reset, and the half-close that follows fails. The connection is closed, its place and
    task freed, and nothing is logged as an error."""
    caplog.set_level(logging.WARNING)
    started = asyncio.Event()

    async def hook(connection: WebSocket, request: Request | None, response: Any) -> Any:
        if request is not None and request.path == "/x":
            started.set()
            await asyncio.sleep(0.5)
            return connection.respond(418, "teapot") if replace else None
        return None

    async with serve(echo, "127.0.0.1", 0, process_response=hook, max_connections=1, close_timeout=3) as server:
        _, writer = await raw(server.port)
        writer.write(KEYLESS)
        await asyncio.wait_for(started.wait(), 5)
        writer.close()
        await until(lambda: not server._protocols and not server._admitting, timeout=1.5)
        await served(server)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


async def test_a_refusal_to_a_client_that_does_not_read_is_held_at_most_reject_linger() -> None:
    """An answer larger than the transport takes, to a client that never reads: the socket is aborted after
    REJECT_LINGER (2 s), as for any refusal, not after close_timeout."""

    def page(request: Request) -> Any:
        return None if request.header("Upgrade") else (200, [("Content-Type", "text/plain")], b"x" * (8 << 20))

    async with serve(echo, "127.0.0.1", 0, process_request=page, close_timeout=6) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            started = time.monotonic()
            await until(lambda: any(p._write_paused for p in server._protocols), timeout=5)
            await until(lambda: not server._protocols, timeout=8)
            assert time.monotonic() - started < REJECT_LINGER + 1
        finally:
            sock.close()
        await served(server)


async def test_a_malformed_request_at_max_connections_gets_400_and_no_hook() -> None:
    """A request no hook can read takes no max_connections place and gets its 400, not a 503 handed to
    process_response with no request (as websockets refuses it before any hook or limit)."""
    seen: list[tuple[Request | None, int]] = []

    def hook(connection: WebSocket, request: Request | None, response: Any) -> None:
        seen.append((request, response.status_code))

    async def hold(ws: WebSocket) -> None:
        await ws.wait_closed()

    async with serve(hold, "127.0.0.1", 0, process_response=hook, max_connections=1) as server:
        client = await connect(url(server), open_timeout=10)
        reader, writer = await raw(server.port)
        writer.write(b"GET /a\x1b[2J HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await read_all(reader)
        writer.close()
        await client.close()
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert [status for _, status in seen] == [101] and seen[0][0] is not None


# --------------------------------------------------------------------------- subprotocols


@pytest.mark.parametrize(
    ("offered", "reason"),
    [(b"", b"missing subprotocol"), (b"Sec-WebSocket-Protocol: other\r\n", b"invalid subprotocol")],
    ids=["none-offered", "none-in-common"],
)
async def test_no_subprotocol_in_common_is_400(offered: bytes, reason: bytes) -> None:
    """With ``subprotocols`` and no ``select_subprotocol``, a client offering none of them is refused with
    400, as websockets refuses it, and the handler never runs."""
    handled: list[WebSocket] = []

    async def handler(ws: WebSocket) -> None:
        handled.append(ws)
        await echo(ws)

    async with serve(handler, "127.0.0.1", 0, subprotocols=["chat"]) as server:
        reader, writer = await raw(server.port)
        writer.write(UPGRADE.replace(b"\r\n\r\n", b"\r\n" + offered + b"\r\n", 1))
        answer = await read_all(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
        assert reason in answer
        assert handled == []
        async with connect(url(server), subprotocols=["other", "chat"], open_timeout=10) as ws:
            assert ws.subprotocol == "chat"


async def test_select_subprotocol_replaces_the_rule() -> None:
    """A ``select_subprotocol`` hook decides instead: None opens without a subprotocol, websockets'
    ``NegotiationError`` refuses with 400."""

    def select(offered: list[str]) -> str | None:
        if "refuse" in offered:
            raise NegotiationError("refused by the hook")
        return None

    async with serve(echo, "127.0.0.1", 0, subprotocols=["chat"], select_subprotocol=select) as server:
        async with connect(url(server), open_timeout=10) as ws:
            assert ws.subprotocol is None
        with pytest.raises(InvalidStatus) as info:
            await connect(url(server), subprotocols=["refuse"], open_timeout=10)
        assert info.value.status_code == 400
        assert info.value.response.body == b"refused by the hook\n"
