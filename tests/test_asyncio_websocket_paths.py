"""The asyncio WebSocket's less travelled paths, against a hand-driven raw peer: pings pending when the
connection is lost, sending while CLOSING, recv_streaming() edges, keepalive edges, close() while
CONNECTING, callbacks that raise, and two senders blocked on backpressure at once or racing close().
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from _raw_handshake import accept_response
from _waiting import until

from wscodec import ConnectionClosed, FrameDecoder, InvalidHandshake, encode_frame
from wscodec.asyncio import Server, WebSocket, connect, create_websocket, serve

pytestmark = pytest.mark.timeout(60)

RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawPeer:
    """A server that answers the upgrade by hand, then reads frames (decoded) and writes what it is told."""

    def __init__(self, *, upgrade: bool = True) -> None:
        self.upgrade = upgrade
        self.writer: asyncio.StreamWriter | None = None
        self.frames: list[Any] = []
        self.reading = asyncio.Event()
        self.reading.set()
        self.connected = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None
        self._decoder = FrameDecoder("server", None)

    async def __aenter__(self) -> RawPeer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.connected.set()
        if not self.upgrade:
            await reader.read()
            return
        head = await reader.readuntil(b"\r\n\r\n")
        writer.write(accept_response(head))
        try:
            while True:
                await self.reading.wait()
                data = await reader.read(65536)
                if not data:
                    return
                self.frames.extend(self._decoder.feed(data))
        except ConnectionError:
            return

    def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)

    def finish_close(self, code: int = 1000, reason: bytes = b"") -> None:
        """Answer the client's Close and end TCP, as a server does (RFC 6455 section 7.1.1)."""
        assert self.writer is not None
        self.writer.write(encode_frame(8, code.to_bytes(2, "big") + reason))
        self.writer.close()

    def opcodes(self) -> list[int]:
        return [f.opcode for f in self.frames]


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


def url(server: Server) -> str:
    return f"ws://127.0.0.1:{server.port}/"


# --------------------------------------------------------------------------- attributes


async def test_websocket_state_lives_in_slots_and_applications_may_still_add_attributes() -> None:
    """Everything the WebSocket sets is a slot (see ``WebSocket.__slots__``): past 29 keys CPython unshares an
    instance dict, and every ``self.x`` on the per-message path becomes a slower lookup. A new attribute
    missing from ``__slots__`` shows here. Applications may still hang their own attributes on it."""
    seen: list[dict[str, Any]] = []

    async def handler(ws: WebSocket) -> None:
        seen.append(dict(vars(ws)))
        ws.user = "alice"  # type: ignore[attr-defined]
        await ws.send(ws.user)  # type: ignore[attr-defined]
        await echo(ws)
        seen.append(dict(vars(ws)))

    async with (
        serve(handler, "127.0.0.1", 0, ping_interval=0.05) as server,
        connect(url(server), ping_interval=0.05) as ws,
    ):
        assert await ws.recv() == "alice"
        ws.onmessage = lambda event: None
        ws.onmessage = None
        await ws.send("ping")
        assert await ws.recv() == "ping"
        await asyncio.sleep(0.15)  # keepalive pings both ways
        assert vars(ws) == {}
    await ws.wait_closed()
    assert vars(ws) == {}
    assert seen == [{}, {"user": "alice"}]


# --------------------------------------------------------------------------- pings, CLOSING


async def test_pending_pings_fail_when_the_connection_is_lost() -> None:
    async with RawPeer() as peer:
        ws = await connect(peer.url, ping_interval=None, open_timeout=10)
        first = asyncio.ensure_future(ws.ping(b"one"))
        second = asyncio.ensure_future(ws.ping(b"two"))
        await until(lambda: peer.opcodes().count(9) == 2)
        assert not first.done() and not second.done()
        assert peer.writer is not None
        peer.writer.transport.abort()
        for waiter in (first, second):
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(waiter, 10)
            assert info.value.code == 1006
        assert ws._pings == []


async def test_a_pong_answers_its_ping_and_every_earlier_one() -> None:
    async with RawPeer() as peer:
        ws = await connect(peer.url, ping_interval=None, open_timeout=10)
        first = asyncio.ensure_future(ws.ping(b"one"))
        second = asyncio.ensure_future(ws.ping("two"))
        await until(lambda: peer.opcodes().count(9) == 2)
        peer.send(encode_frame(10, b"two"))  # RFC 6455 section 5.5.3: answers "one" too
        rtts = await asyncio.wait_for(asyncio.gather(first, second), 10)
        assert all(isinstance(r, float) and r > 0 for r in rtts)
        assert rtts[0] >= rtts[1]  # the earlier ping waited longer
        assert ws.latency == rtts[1]
        await ws.close()


async def test_send_ping_and_recv_while_closing() -> None:
    """Once close() has sent its Close, send() and ping() raise ConnectionClosed at once; recv() raises it
    when the close completes, after the messages that arrived before the peer's Close."""
    async with RawPeer() as peer:
        ws = await connect(peer.url, ping_interval=None, open_timeout=10, close_timeout=30)
        closing = asyncio.ensure_future(ws.close(4000, "bye"))
        await until(lambda: 8 in peer.opcodes())
        assert ws.ready_state == 2  # CLOSING
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.send("after close"), 10)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.ping(), 10)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.send([b"a", b"b"]), 10)
        peer.send(encode_frame(1, b"last words"))
        peer.finish_close(4000, b"bye")
        assert await asyncio.wait_for(ws.recv(), 10) == "last words"
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
        assert info.value.code == 4000
        await asyncio.wait_for(closing, 10)
        assert peer.opcodes().count(8) == 1
        assert peer.frames[-1].payload == (4000).to_bytes(2, "big") + b"bye"


# --------------------------------------------------------------------------- recv_streaming


async def test_recv_during_recv_streaming_is_refused_then_the_stream_goes_on() -> None:
    async with RawPeer() as peer:
        ws = await connect(peer.url, ping_interval=None, open_timeout=10)
        # One write per fragment, each awaited: the fragments of one read come as one piece.
        peer.send(encode_frame(2, b"ab", fin=False))
        stream = await ws.recv_streaming()
        assert await asyncio.wait_for(stream.__anext__(), 10) == b"ab"
        with pytest.raises(RuntimeError, match="recv_streaming"):
            await ws.recv()
        peer.send(encode_frame(0, b"cd", fin=False))
        assert await asyncio.wait_for(stream.__anext__(), 10) == b"cd"
        peer.send(encode_frame(0, b"ef", fin=True) + encode_frame(1, b"next"))
        assert await asyncio.wait_for(stream.__anext__(), 10) == b"ef"
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
        assert await asyncio.wait_for(ws.recv(), 10) == "next"  # recv() works again after the message
        await ws.close()


async def test_recv_streaming_after_a_cancelled_recv_starts_with_what_it_took() -> None:
    async with RawPeer() as peer:
        ws = await connect(peer.url, ping_interval=None, open_timeout=10)
        peer.send(encode_frame(1, "héllo ".encode(), fin=False))
        pending = asyncio.ensure_future(ws.recv())
        await until(lambda: ws._partial)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        peer.send(encode_frame(0, b"world", fin=True))
        pieces = [piece async for piece in ws.recv_streaming()]
        assert pieces == ["héllo ", "world"]
        await ws.close()


async def test_recv_streaming_when_the_connection_closes_mid_message() -> None:
    async with RawPeer() as peer:
        ws = await connect(peer.url, ping_interval=None, open_timeout=10)
        peer.send(encode_frame(2, b"half", fin=False))
        pieces = []
        with pytest.raises(ConnectionClosed) as info:
            async for piece in ws.recv_streaming():
                pieces.append(piece)
                assert peer.writer is not None
                peer.writer.transport.abort()
        assert pieces == [b"half"]
        assert info.value.code == 1006
        assert not ws._streaming
        with pytest.raises(ConnectionClosed):
            await ws.recv()


# --------------------------------------------------------------------------- keepalive


async def test_keepalive_fails_a_peer_that_never_answers_with_1011() -> None:
    async with RawPeer() as peer:
        errors: list[Any] = []
        ws = await connect(peer.url, ping_interval=0.2, ping_timeout=0.5, open_timeout=10, close_timeout=2)
        ws.onerror = errors.append
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 30)
        assert info.value.code == 1011
        assert 9 in peer.opcodes()
        closes = [f for f in peer.frames if f.opcode == 8]
        assert [int.from_bytes(f.payload[:2], "big") for f in closes] == [1011]
        assert b"keepalive" in closes[0].payload
        assert len(errors) == 1 and isinstance(errors[0].error, TimeoutError)


async def test_keepalive_without_ping_timeout_pings_but_never_fails() -> None:
    async with RawPeer() as peer:
        ws = await connect(peer.url, ping_interval=0.05, ping_timeout=None, open_timeout=10)
        await until(lambda: peer.opcodes().count(9) >= 3, timeout=20)
        assert ws.ready_state == 1  # no pong ever came, and that is not a failure without ping_timeout
        # ... nor a leak: only the latest unanswered keepalive Ping is remembered (for its round trip)
        assert len(ws._pings) == 1 and ws._pings[0][1] is None
        # a ping() whose caller gave up is forgotten at the next Ping
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ws.ping(b"given up"), 0.01)
        await until(lambda: all(entry[0] != b"given up" for entry in ws._pings), timeout=20)
        assert len(ws._pings) == 1
        await ws.close()


async def test_keepalive_stops_once_closing() -> None:
    async with RawPeer() as peer:
        ws = await connect(peer.url, ping_interval=0.05, ping_timeout=None, open_timeout=10, close_timeout=30)
        closing = asyncio.ensure_future(ws.close())
        await until(lambda: 8 in peer.opcodes())
        count = peer.opcodes().count(9)
        await asyncio.sleep(0.3)  # several intervals: no Ping may follow our Close
        assert peer.opcodes().count(9) == count
        assert peer.opcodes()[-1] == 8
        peer.finish_close()
        await asyncio.wait_for(closing, 10)


# --------------------------------------------------------------------------- close while CONNECTING, callbacks


async def test_close_while_connecting_aborts_the_open() -> None:
    async with RawPeer(upgrade=False) as peer:
        opener = connect(peer.url, open_timeout=None)
        ws = opener.websocket()
        opening = asyncio.ensure_future(opener.open())
        await asyncio.wait_for(peer.connected.wait(), 10)
        await until(lambda: ws.transport is not None)
        assert ws.ready_state == 0
        await asyncio.wait_for(ws.close(), 10)
        with pytest.raises(InvalidHandshake):
            await asyncio.wait_for(opening, 10)
        assert ws.ready_state == 3


async def test_close_before_the_transport_exists_returns_and_the_open_then_fails() -> None:
    """close() before anything connects returns at once (CLOSING, as a browser's close() while
    CONNECTING); an open() after it does not open: the connection it makes is dropped."""
    async with RawPeer() as peer:
        opener = connect(peer.url, open_timeout=10)
        ws = opener.websocket()
        await asyncio.wait_for(ws.close(), 5)
        assert ws.ready_state == 2
        with pytest.raises(InvalidHandshake):
            await opener.open()
        assert ws.ready_state == 3
        assert peer.frames == []


async def test_callbacks_that_raise_are_logged_and_do_not_stop_delivery(caplog: pytest.LogCaptureFixture) -> None:
    async with serve(echo, "127.0.0.1", 0) as server:
        ws = await connect(url(server), open_timeout=10)
        received: list[str] = []
        closed = asyncio.Event()

        def sync_boom(event: Any) -> None:
            raise ValueError("sync boom")

        async def async_boom(event: Any) -> None:
            raise KeyError("async boom")

        ws.add_event_listener("message", sync_boom)
        ws.add_event_listener("message", async_boom)
        ws.add_event_listener("message", lambda event: received.append(event.data))
        ws.onclose = lambda event: closed.set()
        with caplog.at_level(logging.ERROR):
            await ws.send("one")
            await ws.send("two")
            await until(lambda: received == ["one", "two"])
            await until(lambda: caplog.text.count("async boom") >= 2)
        assert caplog.text.count("sync boom") >= 2
        assert "error in message callback" in caplog.text
        assert "error in event callback" in caplog.text
        await ws.close()
        await asyncio.wait_for(closed.wait(), 10)


async def test_a_listener_raising_cancelled_error_is_logged_and_the_connection_lives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A sync listener calling result() on a cancelled future raises CancelledError, a BaseException: out of
    data_received, asyncio aborted the transport (no Close, 1006). It is that listener's error, as in a
    browser, where an exception in a handler leaves the connection up."""

    def cancelled(event: Any) -> None:
        future = asyncio.get_running_loop().create_future()
        future.cancel()
        future.result()

    async with serve(echo, "127.0.0.1", 0) as server:
        ws = create_websocket(url(server), open_timeout=10)
        received: list[str] = []
        opened = asyncio.Event()
        ws.add_event_listener("open", cancelled)
        ws.add_event_listener("open", lambda event: opened.set())
        ws.onmessage = cancelled
        ws.add_event_listener("message", lambda event: received.append(event.data))
        with caplog.at_level(logging.ERROR):
            await asyncio.wait_for(opened.wait(), 10)
            await ws.send("one")
            await until(lambda: received == ["one"])
            await ws.send("two")
            await until(lambda: received == ["one", "two"])
        assert ws.ready_state == 1
        assert "error in open callback" in caplog.text and "error in message callback" in caplog.text
        await ws.close()
        assert ws.close_code == 1000


async def test_subprotocols_as_one_string() -> None:
    """create_websocket(url, "chat") is new WebSocket(url, "chat"): one subprotocol; a name listed twice is
    an error, as in the browser. connect() and serve() refuse a lone string (it was offered letter by
    letter)."""
    with pytest.raises(TypeError, match="list of strings"):
        serve(echo, "127.0.0.1", 0, subprotocols="chat")
    async with serve(echo, "127.0.0.1", 0, subprotocols=["chat"]) as server:
        with pytest.raises(TypeError, match="list of strings"):
            await connect(url(server), subprotocols="chat")
        with pytest.raises(ValueError, match="twice"):
            create_websocket(url(server), ["chat", "chat"])
        none = create_websocket(url(server), None)  # (no subprotocol: the server refuses it, 400)
        failed = asyncio.Event()
        none.onclose = lambda event: failed.set()
        await asyncio.wait_for(failed.wait(), 10)
        ws = create_websocket(url(server), "chat")
        opened = asyncio.Event()
        ws.onopen = lambda event: opened.set()
        await asyncio.wait_for(opened.wait(), 10)
        assert ws.protocol == "chat"
        await ws.close()


# --------------------------------------------------------------------------- senders racing


async def test_two_senders_blocked_on_backpressure_both_finish_in_order() -> None:
    """The peer stops reading; two tasks block in send(); once it reads again both messages arrive whole,
    in the order the tasks blocked, after what was sent before."""
    async with RawPeer() as peer:
        ws = await connect(peer.url, ping_interval=None, open_timeout=10, write_limit=16384, compression=None)
        peer.reading.clear()
        chunk = b"x" * 65536
        sent = 0
        while not ws._write_paused and sent < 4096:
            await ws.send(chunk)
            sent += 1
            await asyncio.sleep(0)
        assert ws._write_paused, "the transport never pushed back"
        first = asyncio.ensure_future(ws.send(b"first"))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(ws.send(b"second"))
        await asyncio.sleep(0.1)
        assert not first.done() and not second.done()
        peer.reading.set()
        await asyncio.wait_for(asyncio.gather(first, second), 30)
        await until(lambda: len(peer.frames) >= sent + 2, timeout=30)
        payloads = [f.payload for f in peer.frames]
        assert payloads[:sent] == [chunk] * sent
        assert payloads[sent : sent + 2] == [b"first", b"second"]
        await ws.close()


async def test_send_racing_close_either_sends_or_raises_connection_closed() -> None:
    """send() blocked on backpressure while close() runs: the send raises ConnectionClosed (or went out
    before the Close); the Close is the last frame on the wire; nothing hangs."""
    async with RawPeer() as peer:
        ws = await connect(peer.url, ping_interval=None, open_timeout=10, write_limit=16384, close_timeout=30)
        peer.reading.clear()
        chunk = b"y" * 65536
        sent = 0
        while not ws._write_paused and sent < 4096:
            await ws.send(chunk, compress=False)
            sent += 1
            await asyncio.sleep(0)
        assert ws._write_paused
        blocked = asyncio.ensure_future(ws.send(b"racing"))
        await asyncio.sleep(0.05)
        closing = asyncio.ensure_future(ws.close(1000, "racing"))
        await asyncio.sleep(0.05)
        peer.reading.set()
        await until(lambda: 8 in peer.opcodes(), timeout=30)
        peer.finish_close()
        await asyncio.wait_for(closing, 30)
        try:
            await asyncio.wait_for(blocked, 10)
        except ConnectionClosed:
            assert b"racing" not in [f.payload for f in peer.frames]
        else:
            assert [f.payload for f in peer.frames].count(b"racing") == 1
        assert peer.opcodes()[-1] == 8
        assert peer.opcodes().count(8) == 1


# --------------------------------------------------------------------------- browser API edges


def test_constructor_refuses_a_bad_max_queue_or_slow_consumer_policy() -> None:
    from wscodec.connection import Connection

    with pytest.raises(ValueError, match="max_queue"):
        WebSocket(Connection.established("client"), max_queue=0)
    with pytest.raises(ValueError, match="slow_consumer"):
        WebSocket(Connection.established("client"), slow_consumer="drop")


async def test_browser_attributes_before_open_and_after_close() -> None:
    """Before the handshake and after the close the browser attributes still answer, with the empty values
    a browser gives (no transport: nothing buffered; no 101 response: no extensions)."""
    from wscodec.connection import Connection

    fresh = WebSocket(Connection("client", host="127.0.0.1"), url="ws://127.0.0.1:1/")
    assert fresh.ready_state == WebSocket.CONNECTING
    assert fresh.buffered_amount == 0
    assert fresh.extensions == "" and fresh.protocol == ""
    assert fresh.binary_type == "bytes" and fresh.onmessage is None
    assert repr(fresh).startswith("<WebSocket client CONNECTING")
    with pytest.raises(ValueError, match="unknown event type"):
        fresh.add_event_listener("mesage", lambda event: None)

    async with serve(echo, "127.0.0.1", 0, compression=None) as server:
        ws = await connect(url(server), open_timeout=10, compression=None)
        assert repr(ws).startswith("<WebSocket client OPEN")
        assert ws.extensions == ""
        await ws.close()
        assert repr(ws).startswith("<WebSocket client CLOSED")
        assert ws.buffered_amount == 0


async def test_listeners_are_added_once_and_removing_an_unknown_one_is_harmless() -> None:
    async with serve(echo, "127.0.0.1", 0) as server:
        ws = await connect(url(server), open_timeout=10)
        got: list[str] = []
        opened: list[object] = []

        def on_message(event: Any) -> None:
            got.append(event.data)

        ws.add_event_listener("message", on_message)
        ws.add_event_listener("message", on_message)  # the DOM's rule: the same listener is added once
        ws.remove_event_listener("message", lambda event: None)  # never added: nothing changes
        ws.add_event_listener("open", opened.append)
        ws.remove_event_listener("open", opened.append)
        ws.remove_event_listener("close", opened.append)
        await ws.send("one")
        await until(lambda: got == ["one"])
        await asyncio.sleep(0.05)
        assert got == ["one"]
        ws.remove_event_listener("message", on_message)
        await ws.send("two")
        assert await ws.recv() == "two"  # no listener left: recv() gets it
        assert got == ["one"]
        await ws.close()


async def test_messages_queued_before_a_listener_appears_reach_it_in_order(caplog: pytest.LogCaptureFixture) -> None:
    """Messages read while nobody listened wait in the queue; the first message listener gets them all, in
    order and whole (a fragmented one reassembled, binary converted per ``binary_type``), then new ones;
    a listener that raises is logged and the others still get every message."""
    async with RawPeer() as peer:
        ws = await connect(peer.url, open_timeout=10, ping_interval=None)
        await peer.connected.wait()
        peer.send(encode_frame(1, b"first"))
        peer.send(encode_frame(2, b"se", fin=False) + encode_frame(0, b"co", fin=False) + encode_frame(0, b"nd"))
        peer.send(encode_frame(1, "th\u00efrd".encode()))
        await asyncio.sleep(0.1)  # read and queued: nobody listens yet
        got: list[Any] = []

        def boom(event: Any) -> None:
            raise RuntimeError("listener boom")

        ws.binary_type = "bytearray"
        with caplog.at_level(logging.ERROR):
            ws.add_event_listener("message", boom)
            ws.onmessage = lambda event: got.append(event.data)
            await until(lambda: len(got) == 3)
            assert got == ["first", bytearray(b"second"), "th\u00efrd"]
            peer.send(encode_frame(2, b"fourth"))
            await until(lambda: len(got) == 4)
        assert got[3] == bytearray(b"fourth")
        assert caplog.text.count("RuntimeError: listener boom") == 4
        ws.onmessage = None
        ws.remove_event_listener("message", boom)
        peer.send(encode_frame(1, b"fifth"))
        assert await asyncio.wait_for(ws.recv(), 10) == "fifth"
        closing = asyncio.ensure_future(ws.close())
        await until(lambda: 8 in peer.opcodes())
        peer.finish_close()
        await asyncio.wait_for(closing, 10)


async def test_a_server_refuses_a_large_ping_or_pong_and_stays_open() -> None:
    """A server's ping() and pong() of 16 KiB and more (the size whose frames go out without a copy) are a
    ValueError, as at 126 bytes: a websockets client would otherwise fail the connection with 1002."""
    import websockets.asyncio.client

    refused: list[str] = []

    async def handler(ws: WebSocket) -> None:
        for method in (ws.ping, ws.pong):
            try:
                await method(b"x" * 20_000)
            except ValueError as exc:
                refused.append(str(exc))
        async for message in ws:
            await ws.send(message)

    async with (
        serve(handler, "127.0.0.1", 0) as server,
        websockets.asyncio.client.connect(f"ws://127.0.0.1:{server.port}/") as peer,
    ):
        await peer.send("still open")
        assert await asyncio.wait_for(peer.recv(), 10) == "still open"
    assert refused == ["control frame payload longer than 125 bytes"] * 2
