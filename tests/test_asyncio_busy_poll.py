"""Busy polling (``serve(busy_poll=...)``, ``connect(busy_poll=...)``): the loop keeps iterating for the window
after each read and sleeps again once it has passed; off by default; bad windows refused; traffic is
unchanged, hostile input still closes with its code and stops the polling, and a fresh client is served
after it. Every async test runs on asyncio's loop and on uvloop (conftest), and the suite on both backends."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest

from wscodec import encode_frame
from wscodec.__main__ import main as cli_main
from wscodec.asyncio import Server, WebSocket, connect, serve, unix_connect, unix_serve
from wscodec.asyncio.busy_poll import MAX_BUSY_POLL, BusyPoller, check_busy_poll
from wscodec.errors import ConnectionClosed

pytestmark = pytest.mark.timeout(60)


class CountingPoller(BusyPoller):
    """Counts the loop iterations it kept awake."""

    __slots__ = ("spins",)

    def __init__(self, loop: asyncio.AbstractEventLoop, window: float) -> None:
        super().__init__(loop, window)
        self.spins = 0

    def _spin(self) -> None:
        self.spins += 1
        super()._spin()


async def until_idle(poller: BusyPoller, timeout: float = 5.0) -> None:
    """Wait until ``poller`` stops spinning (fails past ``timeout``)."""
    start = time.perf_counter()
    while poller.spinning:
        assert time.perf_counter() - start < timeout, "the poller kept spinning"
        await asyncio.sleep(0.001)


def url(server: Server) -> str:
    return f"ws://127.0.0.1:{server.port}/"


@pytest.mark.parametrize("window", [0, -1e-6, 1.5, 50, math.nan, math.inf])
def test_a_window_outside_0_to_1_second_is_refused(window: float) -> None:
    with pytest.raises(ValueError, match="busy_poll"):
        check_busy_poll(window)
    with pytest.raises(ValueError, match="busy_poll"):
        connect("ws://127.0.0.1:1/", busy_poll=window)
    with pytest.raises(ValueError, match="busy_poll"):
        serve(lambda ws: None, "127.0.0.1", 0, busy_poll=window)


def test_windows_accepted() -> None:
    assert check_busy_poll(None) is None
    assert check_busy_poll(50e-6) == 50e-6
    assert check_busy_poll(MAX_BUSY_POLL) == MAX_BUSY_POLL


async def test_the_poller_keeps_the_loop_iterating_for_its_window_then_lets_it_sleep() -> None:
    poller = CountingPoller(asyncio.get_running_loop(), 0.02)
    assert not poller.spinning
    start = time.perf_counter()
    poller.touch()
    poller.touch()  # a second read within the window: still one callback per iteration
    assert poller.spinning
    await asyncio.sleep(0)
    assert poller.spins == 1
    await until_idle(poller)
    assert time.perf_counter() - start >= 0.02  # kept awake for the window ...
    spins = poller.spins
    assert spins >= 3  # ... by iterating (thousands of times on an idle machine), not by one late callback
    await asyncio.sleep(0.05)
    assert poller.spins == spins  # asleep again: no callback once the window has passed


async def test_each_read_extends_the_window() -> None:
    poller = CountingPoller(asyncio.get_running_loop(), 0.2)
    start = time.perf_counter()
    for _ in range(3):
        poller.touch()
        await asyncio.sleep(0.05)
        assert poller.spinning
    await until_idle(poller)
    assert time.perf_counter() - start >= 0.3  # touches at 0, 50 and 100 ms (or later), then the 200 ms window


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


async def test_off_by_default_the_connections_keep_the_bare_read_method() -> None:
    assert connect("ws://127.0.0.1:1/").busy_poll is None
    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server)) as client:
        assert server.busy_poll is None
        assert "buffer_updated" not in vars(client)
        await client.send("x")
        assert await client.recv() == "x"
        (handler_ws,) = server.connections
        assert "buffer_updated" not in vars(handler_ws)
        assert server._poller is None


@pytest.mark.parametrize("transport", ["loop", "aiofastnet"])
async def test_echo_with_busy_polling_on_both_sides_keeps_order_and_goes_back_to_sleep(transport: str) -> None:
    async with serve(echo, "127.0.0.1", 0, busy_poll=0.2, transport=transport) as server:
        assert server.busy_poll == 0.2
        async with connect(url(server), busy_poll=0.2, transport=transport) as client:
            assert "buffer_updated" in vars(client)
            messages = [f"m{i}" if i % 2 else f"b{i}".encode() for i in range(200)]
            for message in messages:
                await client.send(message)
            received = [await client.recv() for _ in messages]
            assert received == messages
            poller = server._poller
            assert poller is not None
            assert poller.spinning  # the last read was within the window
            await until_idle(poller)
            await client.send("again")  # asleep, and the next read wakes it
            assert await client.recv() == "again"
            assert poller.spinning
        async with connect(url(server)) as second:  # one poller for every connection of the server
            await second.send("second")
            assert await second.recv() == "second"
            assert server._poller is poller
        await until_idle(poller)


async def test_hostile_input_still_closes_with_its_code_and_the_polling_stops() -> None:
    async with serve(echo, "127.0.0.1", 0, busy_poll=0.2) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101")
        writer.write(encode_frame(0x1, b"\xc3\x28", mask=True))  # invalid UTF-8 in a text message
        close = await asyncio.wait_for(reader.readexactly(4), 5)
        assert close[0] == 0x88 and int.from_bytes(close[2:4], "big") == 1007
        writer.close()
        poller = server._poller
        assert poller is not None
        await until_idle(poller)
        async with connect(url(server)) as fresh:  # and a fresh client is served
            await fresh.send("fresh")
            assert await fresh.recv() == "fresh"


async def test_unix_serve_takes_the_option_too(tmp_path: Any) -> None:
    """``unix_serve`` (and ``unix_connect``, which passes its options on) poll like their TCP twins, and
    refuse the same bad windows."""
    path = str(tmp_path / "ws.sock")
    with pytest.raises(ValueError, match="busy_poll"):
        unix_serve(echo, path, busy_poll=50)
    async with unix_serve(echo, path, busy_poll=0.2) as server:
        assert server.busy_poll == 0.2
        async with unix_connect(path, busy_poll=0.2) as client:
            assert "buffer_updated" in vars(client)
            messages = [f"m{i}" if i % 2 else f"b{i}".encode() for i in range(50)]
            for message in messages:
                await client.send(message)
            assert [await client.recv() for _ in messages] == messages
            poller = server._poller
            assert poller is not None and poller.spinning
            await until_idle(poller)


async def test_a_client_with_busy_polling_sees_the_servers_close() -> None:
    async def close_at_once(ws: WebSocket) -> None:
        await ws.close(1001, "bye")

    async with serve(close_at_once, "127.0.0.1", 0) as server, connect(url(server), busy_poll=0.002) as client:
        with pytest.raises(ConnectionClosed) as caught:
            await asyncio.wait_for(client.recv(), 5)
        assert caught.value.code == 1001


@pytest.mark.parametrize("workers", ["1", "2"])
def test_cli_refuses_a_window_given_in_microseconds(workers: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Before it listens, in one process or with workers (nothing forked): the argument parser refuses it,
    naming the flag and its bound (status 2)."""
    with pytest.raises(SystemExit) as info:
        cli_main(["serve", "--port", "0", "--workers", workers, "--busy-poll", "50"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--busy-poll: 50 is out of range" in err and "from 0 to 1" in err
