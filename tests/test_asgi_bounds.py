"""The uvicorn protocol's bounds against clients and applications that push them, in-process (the same
fixture as ``test_asgi_paths.py``): decompressed data waiting for the application, the last messages of
an application that returns, the keepalive while reading is paused, ``receive()`` after the disconnect,
the size of the upgrade request, and the access log of an accept that fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from test_asgi_paths import UPGRADE, asgi_server, read_all, until

from wscodec import ConnectionClosed
from wscodec.asyncio import connect
from wscodec.compression import INFLATING_READ

pytestmark = pytest.mark.timeout(60)

MiB = 1 << 20


def queued_bytes(protocol: Any) -> int:
    """Decompressed bytes of the messages waiting for the application."""
    return sum(len(message.get("bytes") or message.get("text") or "") for message in protocol._queue)


async def test_compressed_messages_waiting_for_the_app_stay_within_the_byte_bound() -> None:
    """200 compressed messages of 1 MiB of zeros (a few hundred bytes each on the wire, sent in a burst) to an
    application that reads none yet: reading pauses at max(ws_max_size, 1 MiB) of waiting data plus what
    one INFLATING_READ slice inflates to, not at ws_max_queue x ws_max_size (32 MiB here, and what every
    message of a large read held before). Then the application reads all 200, in order."""
    release = asyncio.Event()
    got: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await release.wait()
        while (message := await receive())["type"] == "websocket.receive":
            data = message["bytes"]
            assert data == bytes(len(data))
            got.append(len(data))
            if len(got) == 200:
                await send({"type": "websocket.send", "text": "got 200"})

    async with asgi_server(app, ws_max_size=MiB, ws_max_queue=32, ws_ping_interval=None) as served:
        ws = await connect(served.url, open_timeout=10, compression="deflate", max_size=None)
        assert ws.extensions
        for _ in range(200):
            await ws.send(bytes(MiB))
        protocol = served.protocol
        await until(lambda: protocol.read_paused)
        await asyncio.sleep(0.3)  # whatever else arrives has to wait
        assert protocol.max_queue_bytes == MiB
        bound = protocol.max_queue_bytes + 1032 * INFLATING_READ + MiB
        assert queued_bytes(protocol) <= bound, f"{queued_bytes(protocol) / MiB:.1f} MiB waiting"
        assert queued_bytes(protocol) == protocol._queued_bytes
        release.set()
        assert await asyncio.wait_for(ws.recv(), 30) == "got 200"
        assert got == [MiB] * 200
        assert protocol._queued_bytes == 0 and not protocol.read_paused
        await ws.close()


async def test_text_of_wide_characters_is_counted_by_the_memory_it_holds() -> None:
    """1 MiB text messages of 4-byte characters (256 Ki characters each, held four bytes a character) to an
    application that reads none yet: reading pauses once the waiting messages hold max(ws_max_size, 1 MiB)
    of memory, plus at most the message that crossed it, not at four times that (their len() counts
    characters). Then the application reads all 12, in order."""
    release = asyncio.Event()
    got: list[str] = []
    text = "\U0001f600" * (MiB // 4)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await release.wait()
        while (message := await receive())["type"] == "websocket.receive":
            got.append(message["text"])
            if len(got) == 12:
                await send({"type": "websocket.send", "text": "got 12"})

    async with asgi_server(app, ws_max_size=MiB, ws_max_queue=32, ws_ping_interval=None) as served:
        ws = await connect(served.url, open_timeout=10, compression=None, max_size=None)
        sending = asyncio.ensure_future(asyncio.gather(*(ws.send(f"{i:02}" + text[2:]) for i in range(12))))
        protocol = served.protocol
        await until(lambda: protocol.read_paused)
        await asyncio.sleep(0.3)  # whatever else arrives has to wait
        held = sum(sys.getsizeof(message["text"]) for message in protocol._queue)
        assert held == protocol._queued_bytes
        assert held <= protocol.max_queue_bytes + sys.getsizeof(text), f"{held / MiB:.1f} MiB waiting"
        release.set()
        assert await asyncio.wait_for(ws.recv(), 30) == "got 12"
        await sending
        assert [message[:2] for message in got] == [f"{i:02}" for i in range(12)]
        assert all(message[2:] == text[2:] for message in got)
        assert protocol._queued_bytes == 0 and not protocol.read_paused
        await ws.close()


def slow_reader(port: int, result: dict[str, Any], pause: float) -> None:
    """A raw client that reads 64 KiB every ``pause`` seconds until the server closes TCP."""
    with socket.create_connection(("127.0.0.1", port), 10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.settimeout(20)
        sock.sendall(UPGRADE)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
                if pause:
                    time.sleep(pause)
        except OSError as exc:
            result["error"] = exc
        result["data"] = data


async def test_an_app_that_returns_while_its_last_message_is_written_loses_none_of_it() -> None:
    """The application sends 8 MiB and returns without websocket.close; the client reads at about 3 MB/s, so
    the message needs more than close_timeout (1 s) to go out. It gets all of it, then the Close (1000)."""
    payload = bytes(range(256)) * (8 * MiB // 256)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "bytes": payload})

    async with asgi_server(app, close_timeout=1.0, ws_per_message_deflate=False, ws_ping_interval=None) as served:
        result: dict[str, Any] = {}
        thread = threading.Thread(target=slow_reader, args=(served.port, result, 0.02))
        thread.start()
        await asyncio.to_thread(thread.join, 40)
        data = result["data"]
        head, _, frames = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        assert frames[:2] == b"\x82\x7f" and int.from_bytes(frames[2:10], "big") == len(payload)
        assert frames[10 : 10 + len(payload)] == payload, f"{len(frames) - 10} of {len(payload)} bytes"
        assert frames[10 + len(payload) :] == b"\x88\x02\x03\xe8"


@contextlib.asynccontextmanager
async def client_reading_nothing(served: Any) -> AsyncIterator[socket.socket]:
    """A raw client, its receive buffer at 4 KiB, that upgrades and then reads nothing."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", served.port))
        sock.send(UPGRADE)
        await until(lambda: served.protocols and served.protocol.handshake_complete)
        yield sock
    finally:
        sock.close()


async def test_the_apps_close_after_a_large_message_waits_while_a_slow_client_reads_it() -> None:
    """The application sends 8 MiB, then websocket.close; the client reads at about 3 MB/s, so the message
    needs more than close_timeout (1 s) to go out. It gets all of it, then the Close (1000): close_timeout
    bounds a client that stopped reading, not one that reads slowly."""
    payload = bytes(range(256)) * (8 * MiB // 256)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "bytes": payload})
        await send({"type": "websocket.close", "code": 1000})

    async with asgi_server(app, close_timeout=1.0, ws_per_message_deflate=False, ws_ping_interval=None) as served:
        result: dict[str, Any] = {}
        thread = threading.Thread(target=slow_reader, args=(served.port, result, 0.02))
        thread.start()
        await asyncio.to_thread(thread.join, 40)
        frames = result["data"].partition(b"\r\n\r\n")[2]
        assert frames[10 : 10 + len(payload)] == payload, f"{len(frames) - 10} of {len(payload)} bytes"
        assert frames[10 + len(payload) :] == b"\x88\x02\x03\xe8"


async def test_a_send_waiting_for_the_transport_goes_out_before_a_close_sent_after_it() -> None:
    """One task's websocket.send waits for a slow client to drain the buffer; the application's main task
    then sends websocket.close: the waiting message goes out first, then the Close."""
    outcome: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "bytes": bytes(16 * MiB)})  # over the high-water mark for a while

        async def last() -> None:
            await send({"type": "websocket.send", "bytes": b"LAST" * 16})
            outcome["last"] = "sent"

        waiting = asyncio.ensure_future(last())
        await asyncio.sleep(0.1)
        outcome["waited"] = not waiting.done()
        await send({"type": "websocket.close", "code": 1000})
        await waiting

    async with asgi_server(app, close_timeout=5.0, ws_per_message_deflate=False, ws_ping_interval=None) as served:
        result: dict[str, Any] = {}
        thread = threading.Thread(target=slow_reader, args=(served.port, result, 0.005))
        thread.start()
        await asyncio.to_thread(thread.join, 40)
        assert outcome == {"waited": True, "last": "sent"}
        assert result["data"].endswith(b"\x82\x40" + b"LAST" * 16 + b"\x88\x02\x03\xe8")


async def test_an_app_that_returns_while_the_client_reads_nothing_is_still_closed_in_time() -> None:
    """The same application, and a client that never reads: the wait for the write buffer ends after a
    close_timeout without progress, and the connection is aborted (no keepalive to do it)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "bytes": bytes(8 * MiB)})

    async with asgi_server(app, close_timeout=0.5, ws_per_message_deflate=False, ws_ping_interval=None) as served:
        async with client_reading_nothing(served):
            started = time.monotonic()
            await until(lambda: served.protocol.disconnected, timeout=10)
            assert time.monotonic() - started < 5
        ws = await connect(served.url, open_timeout=10)  # the next client is served
        with pytest.raises(ConnectionClosed):
            while True:
                assert len(await asyncio.wait_for(ws.recv(), 10)) == 8 * MiB


@pytest.mark.parametrize("ending", ["returns", "raises"])
async def test_an_app_that_ends_while_the_client_floods_it_closes_without_waiting_for_close_timeout(
    ending: str,
) -> None:
    """The application ends (returns: 1000; raises: 1011) without websocket.close, unread messages queued,
    while the client goes on sending 64 KiB messages. What arrives before the client's Close is dropped, so
    reading goes on to that Close: the handshake completes at once. Queued, those messages paused reading
    again, the client's Close waited unread, and close_timeout (5 s here) aborted the connection."""
    ended = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await asyncio.sleep(0.5)  # reads nothing meanwhile: the queue fills and reading pauses
        ended.set()
        if ending == "raises":
            raise RuntimeError("the application's bug")

    async with asgi_server(app, close_timeout=5.0, ws_per_message_deflate=False, ws_ping_interval=None) as served:
        ws = await connect(served.url, open_timeout=10, compression=None)
        payload = bytes(64 * 1024)

        async def flood() -> int:
            sent = 0
            with contextlib.suppress(ConnectionClosed):
                while sent < 5000:  # 320 MiB at most; the Close ends it long before
                    await ws.send(payload)
                    sent += 1
            return sent

        flooding = asyncio.ensure_future(flood())
        await asyncio.wait_for(ended.wait(), 10)
        started = time.monotonic()
        await asyncio.wait_for(ws.wait_closed(), 10)
        elapsed = time.monotonic() - started
        assert await asyncio.wait_for(flooding, 10) < 5000
        assert ws.close_code == (1011 if ending == "raises" else 1000)
        assert elapsed < 3, f"closed {elapsed:.1f} s after the application ended (close_timeout 5 s)"
        protocol = served.protocol
        await until(lambda: protocol.disconnected)
        assert not protocol._queue and protocol._queued_bytes == 0


async def test_the_apps_close_to_a_client_that_reads_nothing_is_bounded_by_close_timeout() -> None:
    """The application's sends wait on a client that reads nothing (keepalive off); it gives up and sends
    websocket.close. That waits for the buffer to drain while the client reads, so no longer than
    close_timeout here, and the connection is aborted. It waited for the buffer to drain, for ever, and
    close_timeout never started."""
    outcome: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        with contextlib.suppress(asyncio.TimeoutError):
            while True:
                await asyncio.wait_for(send({"type": "websocket.send", "bytes": bytes(MiB)}), 0.5)
        try:
            await asyncio.wait_for(send({"type": "websocket.close", "code": 1001}), 5)
            outcome.append("close returned")
        except asyncio.TimeoutError:
            outcome.append("close still waiting after 5 s")

    async with asgi_server(app, close_timeout=0.5, ws_per_message_deflate=False, ws_ping_interval=None) as served:
        async with client_reading_nothing(served):
            await until(lambda: bool(outcome), timeout=10)
            assert outcome == ["close returned"]
            started = time.monotonic()
            await until(lambda: served.protocol.disconnected, timeout=10)
            assert time.monotonic() - started < 5
        ws = await connect(served.url, open_timeout=10, compression=None, max_size=None)  # the next is served
        await ws.close()


async def test_the_keepalive_spares_a_client_whose_pongs_wait_behind_paused_reading() -> None:
    """A slow application (one message every 0.3 s) and ws_max_queue=2: reading pauses for long stretches
    while the keepalive pings every 0.2 s with a 0.4 s timeout. The client answers every ping, but its Pongs
    wait in the socket; the deadline waits with them, and all ten messages are handled, none lost to 1011."""
    got: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            got.append(message["text"])
            await asyncio.sleep(0.3)
            if len(got) == 10:
                await send({"type": "websocket.send", "text": "done"})

    async with asgi_server(
        app, ws_max_queue=2, ws_ping_interval=0.2, ws_ping_timeout=0.4, ws_per_message_deflate=False
    ) as served:
        ws = await connect(served.url, open_timeout=10, ping_interval=None)
        for i in range(10):
            await ws.send(f"m{i}")
        assert await asyncio.wait_for(ws.recv(), 20) == "done"
        assert got == [f"m{i}" for i in range(10)]
        assert served.protocol.last_ping_rtt > 0
        await ws.close()
        assert ws.close_code == 1000


def masked(opcode: int, payload: bytes) -> bytes:
    """A client frame, payload under 126 bytes, masked with a fixed key."""
    key = b"\x01\x02\x03\x04"
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


async def read_frame(reader: asyncio.StreamReader, timeout: float = 10.0) -> tuple[int, bytes]:
    """One unmasked server frame: its opcode and payload."""
    head = await asyncio.wait_for(reader.readexactly(2), timeout)
    length = head[1] & 0x7F
    if length >= 126:
        length = int.from_bytes(await asyncio.wait_for(reader.readexactly(2 if length == 126 else 8), timeout), "big")
    return head[0] & 0x0F, await asyncio.wait_for(reader.readexactly(length), timeout)


async def test_the_keepalive_spares_a_client_that_reads_again_while_our_reading_stays_paused() -> None:
    """The keepalive's Ping goes out while the client reads nothing (writing paused: its deadline runs);
    then the client reads everything and answers each Ping at once, but reading stays paused for the
    application (ws_max_queue=2, it sleeps): the Pong waits unread, and its deadline must wait with it
    once writing resumes, or a healthy client is failed with 1011."""
    got: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        for _ in range(64):
            await send({"type": "websocket.send", "bytes": bytes(65536)})
        await asyncio.sleep(2.5)
        while len(got) < 10 and (message := await receive())["type"] == "websocket.receive":
            got.append(message["text"])
        await send({"type": "websocket.send", "text": "done"})

    async with asgi_server(
        app, ws_max_queue=2, ws_ping_interval=0.6, ws_ping_timeout=1.0, ws_per_message_deflate=False
    ) as served:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", served.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 14)
        try:
            writer.write(UPGRADE)
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            writer.write(b"".join(masked(1, f"m{i}".encode()) for i in range(10)))
            await asyncio.sleep(1.0)  # reading nothing: the server's writing pauses
            pings = 0
            while True:
                opcode, payload = await read_frame(reader)
                assert opcode != 8, f"closed: {int.from_bytes(payload[:2], 'big')} {payload[2:]!r}"
                if opcode == 9:
                    pings += 1
                    writer.write(masked(10, payload))
                elif opcode == 1:
                    assert payload == b"done"
                    break
        finally:
            writer.close()
        assert got == [f"m{i}" for i in range(10)]
        assert pings >= 1


async def test_an_app_looping_on_receive_after_the_disconnect_lets_the_loop_run() -> None:
    """receive() after the disconnect returns it again, but yields to the loop each time: an application
    stuck in that loop does not freeze the server (a timer fires, the next client is served)."""
    fired = asyncio.Event()
    calls: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] != "/spin":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": "served"})
            await receive()
            return
        await receive()
        await send({"type": "websocket.accept"})
        count = 0
        while count < 200_000 and not fired.is_set():
            assert (await receive())["type"] in ("websocket.receive", "websocket.disconnect")
            count += 1
        calls.append(count)

    async with asgi_server(app) as served:
        ws = await connect(served.url + "spin", open_timeout=10)
        await ws.close()
        asyncio.get_running_loop().call_later(0.05, fired.set)
        other = await connect(served.url + "other", open_timeout=10)
        assert await asyncio.wait_for(other.recv(), 10) == "served"
        await other.close()
        await until(lambda: bool(calls))
        assert fired.is_set() and calls[0] < 200_000


async def test_a_browser_sized_upgrade_request_is_accepted() -> None:
    """Three 4 KiB cookies (a 12 KiB head) and 110 header fields: uvicorn accepted and bounded this request
    already (h11: 16 KiB), so the protocol does not refuse it with 431 (the Connection's own default is 8 KiB)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": str(len(scope["headers"]))})

    cookies = b"".join(b"Cookie: c%d=%s\r\n" % (i, b"x" * 4000) for i in range(3))
    fields = b"".join(b"X-Field-%d: %d\r\n" % (i, i) for i in range(110))
    async with asgi_server(app) as served:
        for extra in (cookies, fields):
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(UPGRADE[:-2] + extra + b"\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 101"), head
            writer.close()
            await read_all(reader)


async def test_an_accept_that_fails_is_not_logged_as_accepted(caplog: pytest.LogCaptureFixture) -> None:
    """A subprotocol the client never offered makes the accept fail (the client gets a 500): only the accept
    that succeeded is in the access log."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        if scope["path"] == "/bad":
            await send({"type": "websocket.accept", "subprotocol": "never-offered"})
        else:
            await send({"type": "websocket.accept"})
            await receive()

    async with asgi_server(app) as served:
        logger = logging.getLogger("uvicorn.error")  # uvicorn's config: its records stop at "uvicorn"
        level = logger.level
        logger.setLevel(logging.INFO)
        logger.addHandler(caplog.handler)
        try:
            for path, status in ((b"/bad", b"500"), (b"/ok", b"101")):
                reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
                writer.write(UPGRADE.replace(b"GET / ", b"GET " + path + b" ", 1))
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                writer.close()
                assert head.startswith(b"HTTP/1.1 " + status), head
                await read_all(reader)
        finally:
            logger.removeHandler(caplog.handler)
            logger.setLevel(level)
    accepted = [record.getMessage() for record in caplog.records if "[accepted]" in record.getMessage()]
    assert len(accepted) == 1 and "/ok" in accepted[0], accepted


async def test_frames_pipelined_behind_the_request_wait_undecoded_while_the_app_decides() -> None:
    """300 compressed messages of 1 MiB of zeros sent in the same write as the upgrade request, to an
    application that takes its time to accept and then reads none yet: they wait undecoded while it decides
    (reading pauses past _MAX_EARLY_DATA), and after the accept they are inflated a slice at a time like any
    compressed read, so what waits stays within the byte bound (the Connection decoded every one of them on
    accept before: 300 MiB). Then the application reads all 300, in order, and a fresh client is served."""
    from test_inflating_reads import CLOSE, compressed_frame
    from test_inflating_reads import UPGRADE as DEFLATE_UPGRADE

    accept, release = asyncio.Event(), asyncio.Event()
    got: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        if scope["path"] == "/next":
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": "served"})
            return
        await accept.wait()
        await send({"type": "websocket.accept"})
        await release.wait()
        while (message := await receive())["type"] == "websocket.receive":
            data = message["bytes"]
            assert data == bytes(len(data))
            got.append(len(data))

    async with asgi_server(app, ws_max_size=MiB, ws_max_queue=32, ws_ping_interval=None) as served:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(DEFLATE_UPGRADE + compressed_frame(bytes(MiB)) * 300)
        protocol = served.protocol
        await until(lambda: protocol.read_paused and protocol.conn.request is not None)
        assert not protocol._queue
        accept.set()
        await until(lambda: protocol.handshake_complete and protocol.read_paused and bool(protocol._queue))
        await asyncio.sleep(0.3)  # whatever else arrives has to wait
        bound = protocol.max_queue_bytes + 1032 * INFLATING_READ + MiB
        assert queued_bytes(protocol) <= bound, f"{queued_bytes(protocol) / MiB:.1f} MiB waiting"
        release.set()
        await until(lambda: len(got) == 300, timeout=30)
        writer.write(CLOSE)
        head = await read_all(reader)
        assert head.startswith(b"HTTP/1.1 101") and b"permessage-deflate" in head.lower()
        writer.close()
        assert got == [MiB] * 300
        async with connect(f"ws://127.0.0.1:{served.port}/next", open_timeout=10) as ws:
            assert await asyncio.wait_for(ws.recv(), 10) == "served"
