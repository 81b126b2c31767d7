"""broadcast() and broadcast_wait() skip a connection they cannot write to, and say so as websockets does:
a WARNING per skip, or with ``raise_exceptions=True`` an ExceptionGroup("skipped broadcast") afterwards.
Also ConcurrencyError, websockets' name for using one connection from two places at once."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

import wscodec
from wscodec.asyncio import WebSocket, broadcast, broadcast_wait, connect, serve
from wscodec.errors import ConcurrencyError

GROUPS = sys.version_info >= (3, 11)
needs_groups = pytest.mark.skipif(not GROUPS, reason="ExceptionGroup is Python 3.11's")


async def three_clients() -> tuple[Any, list[WebSocket], list[WebSocket]]:
    """A server whose handlers wait, three clients, and the server's side of each (in connection order)."""
    handlers: list[WebSocket] = []

    async def handler(ws: WebSocket) -> None:
        handlers.append(ws)
        await ws.wait_closed()

    server = await serve(handler, "127.0.0.1", 0)
    clients = []
    for _ in range(3):
        clients.append(await connect(f"ws://127.0.0.1:{server.port}/"))
        while len(handlers) < len(clients):
            await asyncio.sleep(0.01)
    return server, clients, handlers


async def part_way_through_a_fragmented_send(ws: WebSocket) -> tuple[asyncio.Event, asyncio.Task[None]]:
    more = asyncio.Event()

    async def fragments() -> AsyncIterator[str]:
        yield "first half, "
        await more.wait()
        yield "second half"

    task = asyncio.ensure_future(ws.send(fragments()))
    while ws._fragmenting is None:
        await asyncio.sleep(0)
    return more, task


@pytest.mark.parametrize("waiting", [False, True], ids=["broadcast", "broadcast_wait"])
async def test_a_connection_part_way_through_a_fragmented_send_is_skipped_with_a_warning(
    waiting: bool, caplog: pytest.LogCaptureFixture
) -> None:
    server, clients, handlers = await three_clients()
    async with server:
        more, sending = await part_way_through_a_fragmented_send(handlers[1])
        with caplog.at_level(logging.WARNING):
            if waiting:
                await broadcast_wait(handlers, "news")
            else:
                broadcast(handlers, "news")
        skips = [r for r in caplog.records if "skipped broadcast" in r.getMessage()]
        assert len(skips) == 1 and skips[0].levelno == logging.WARNING
        assert skips[0].getMessage().endswith("skipped broadcast: sending a fragmented message")
        more.set()
        await asyncio.wait_for(sending, 5)
        assert await asyncio.wait_for(clients[0].recv(), 5) == "news"
        assert await asyncio.wait_for(clients[2].recv(), 5) == "news"
        assert await asyncio.wait_for(clients[1].recv(), 5) == "first half, second half"  # and nothing else
        await asyncio.gather(*(ws.close() for ws in clients))


@needs_groups
@pytest.mark.parametrize("waiting", [False, True], ids=["broadcast", "broadcast_wait"])
async def test_raise_exceptions_gathers_the_skips_in_an_exception_group_after_writing_to_the_rest(
    waiting: bool,
) -> None:
    server, clients, handlers = await three_clients()
    async with server:
        more, sending = await part_way_through_a_fragmented_send(handlers[0])
        failing = handlers[2]
        assert failing._transport is not None

        real_transport = failing._transport
        failing._transport = FailingTransport(real_transport)  # type: ignore[assignment]
        try:
            with pytest.raises(ExceptionGroup) as raised:  # noqa: F821 (3.11+)
                if waiting:
                    await broadcast_wait(handlers, b"news", raise_exceptions=True)
                else:
                    broadcast(handlers, b"news", raise_exceptions=True)
        finally:
            failing._transport = real_transport
        group = raised.value
        assert group.message == "skipped broadcast"
        # Every skip a RuntimeError, as in websockets (one ``except* RuntimeError`` handles them all); the
        # write's own error is the cause.
        assert [type(error) for error in group.exceptions] == [ConcurrencyError, RuntimeError]
        assert all(isinstance(error, RuntimeError) for error in group.exceptions)
        assert str(group.exceptions[1]) == "failed to write message"
        assert isinstance(group.exceptions[1].__cause__, OSError)
        assert await asyncio.wait_for(clients[1].recv(), 5) == b"news"  # the one in between still got it
        more.set()
        await asyncio.wait_for(sending, 5)
        assert await asyncio.wait_for(clients[0].recv(), 5) == "first half, second half"
        await asyncio.gather(*(ws.close() for ws in clients))


async def test_raise_exceptions_with_nothing_skipped_returns_normally_and_before_311_is_refused() -> None:
    server, clients, handlers = await three_clients()
    async with server:
        if GROUPS:
            broadcast(handlers, "all well", raise_exceptions=True)
            await broadcast_wait(handlers, "all well", raise_exceptions=True)
            for client in clients:
                assert [await asyncio.wait_for(client.recv(), 5) for _ in range(2)] == ["all well"] * 2
        else:
            with pytest.raises(ValueError, match=r"raise_exceptions requires at least Python 3\.11"):
                broadcast(handlers, "never sent", raise_exceptions=True)
        await asyncio.gather(*(ws.close() for ws in clients))


async def test_concurrency_error_is_a_runtime_error_raised_for_two_waiting_for_the_next_message() -> None:
    assert wscodec.ConcurrencyError is ConcurrencyError and issubclass(ConcurrencyError, RuntimeError)
    server, clients, handlers = await three_clients()
    async with server:
        first = asyncio.ensure_future(clients[0].recv())
        await asyncio.sleep(0.01)
        with pytest.raises(ConcurrencyError, match="another coroutine is already waiting"):
            await clients[0].recv()
        more, sending = await part_way_through_a_fragmented_send(clients[1])
        with pytest.raises(ConcurrencyError, match="a fragmented message is being sent"):
            clients[1].send_nowait("in between")
        more.set()
        await asyncio.wait_for(sending, 5)
        await handlers[0].send("for the first")
        assert await asyncio.wait_for(first, 5) == "for the first"
        assert await asyncio.wait_for(handlers[1].recv(), 5) == "first half, second half"
        await asyncio.gather(*(ws.close() for ws in clients))


class FailingTransport:
    """A connection's real transport, but its write fails (as a broken pipe's might)."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def write(self, data: Any) -> None:
        raise OSError("the transport failed")


async def test_a_failed_write_is_one_warning_line_and_the_rest_still_get_the_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, clients, handlers = await three_clients()
    async with server:
        real = handlers[0]._transport
        handlers[0]._transport = FailingTransport(real)  # type: ignore[assignment]
        try:
            with caplog.at_level(logging.WARNING):
                broadcast(handlers, "news")
        finally:
            handlers[0]._transport = real
        (skip,) = [r for r in caplog.records if "skipped broadcast" in r.getMessage()]
        assert skip.getMessage().endswith("skipped broadcast: failed to write message: OSError: the transport failed")
        assert skip.exc_info is None  # one line, as websockets logs it
        for client in clients[1:]:
            assert await asyncio.wait_for(client.recv(), 5) == "news"
        await asyncio.gather(*(ws.close() for ws in clients))


async def test_a_channel_delivery_goes_on_past_a_member_whose_write_fails(caplog: pytest.LogCaptureFixture) -> None:
    """A channel's publish queues the frame for each member and writes them out later: one member's failed
    write there is a warning too, and the members after it get the message at once."""
    server, clients, handlers = await three_clients()
    async with server:
        for ws in handlers:
            await server.join(ws, "room")
        real = handlers[0]._transport
        handlers[0]._transport = FailingTransport(real)  # type: ignore[assignment]
        try:
            with caplog.at_level(logging.WARNING):
                await server.publish("room", "to the room")
                for client in clients[1:]:
                    assert await asyncio.wait_for(client.recv(), 5) == "to the room"
        finally:
            handlers[0]._transport = real
        assert any("failed to write message: OSError" in r.getMessage() for r in caplog.records)
        await asyncio.gather(*(ws.close() for ws in clients))


async def test_a_broadcast_counts_as_sent_on_each_connection() -> None:
    """A broadcast's shared frame bypasses each Connection's framing; it still counts in messages_sent and
    payload_bytes_sent, which the "closed ..." INFO line reports (serve --chat said "sent 0 messages")."""
    server, clients, handlers = await three_clients()
    try:
        broadcast(handlers, "hello")
        await broadcast_wait(handlers, b"\x00" * 10)
        broadcast(handlers, memoryview(b"abc"))
        for client in clients:
            assert [await asyncio.wait_for(client.recv(), 5) for _ in range(3)] == ["hello", b"\x00" * 10, b"abc"]
        for ws in handlers:
            assert (ws.connection.messages_sent, ws.connection.payload_bytes_sent) == (3, 18)
    finally:
        for client in clients:
            await client.close()
        server.close()
        await server.wait_closed()
