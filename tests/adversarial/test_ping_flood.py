"""A ping flood whose Pongs are never read, and a server that stops reading our client then vanishes.

Issue 9, section 4: a peer with a small receive buffer writes Pings of 125 bytes and never reads; the
Pongs must not pile up in the transport past ``write_limit``: reading stops while the write buffer is full.
Target: the flood adds at most ``write_limit`` + 2 reads + 4 MiB, on the asyncio server, the asyncio
client (a server floods our ``connect()``) and the uvicorn protocol.

``PING_FLOOD`` pings per test: the issue's 1,000,000 on the compiled backend, 200,000 on the pure one
(``WSCODEC_PING_FLOOD`` in the environment overrides it).

Issue 9, section 1, client side: ``connect()`` sending to a server that stops reading and then drops
TCP must get ``ConnectionClosed`` from ``send()``, not spin forever.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator

import psutil
from harness import (
    GUID,
    HERE,
    MiB,
    RssSampler,
    ServerProcess,
    assert_serves,
    frame,
    handshake,
    send_until_pushback,
    wait_until,
)

import wscodec

FULL_FLOOD = 1_000_000  # the count
# The count on the compiled backend (a few seconds); 200,000 on the pure one, where parsing a
# million Pings takes about 13 s per case on 2 cores (and 200,000 unread Pongs are already 25 MB).
PING_FLOOD = int(os.environ.get("WSCODEC_PING_FLOOD") or (FULL_FLOOD if wscodec.BACKEND == "cython" else 200_000))
PING = 125 * b"p"
WRITE_LIMIT = 65536  # the default of serve(), connect() and uvicorn's protocol (high-water mark)
READ_SIZE = 256 * 1024  # one socket read of the asyncio layer (and of asyncio's transports)
FLOOD_RSS_BOUND = WRITE_LIMIT + 2 * READ_SIZE + 4 * MiB
SMALL_RCVBUF = 4096


def _ping_block(masked: bool, count: int = 1000) -> bytes:
    return b"".join(frame(0x9, PING, mask=masked) for _ in range(count))


def _wait_idle(process: psutil.Process, timeout: float = 15.0) -> None:
    """Wait until ``process`` stops using CPU (it has parsed what it read), at most ``timeout`` s."""

    def cpu() -> float:
        times = process.cpu_times()
        return float(times.user + times.system)

    last = cpu()

    def idle() -> bool:
        nonlocal last
        time.sleep(0.3)
        now = cpu()
        quiet = now - last < 0.03
        last = now
        return quiet

    wait_until(idle, timeout, interval=0)


def _flood(sock: socket.socket, masked: bool) -> int:
    """Write PING_FLOOD Pings (or until pushed back); returns how many went out."""
    block = _ping_block(masked)
    size = len(block) // 1000
    sent = send_until_pushback(sock, block, limit=PING_FLOOD * size, stall=1.0, deadline=120.0)
    return sent // size


def _check_server_flood(server: ServerProcess) -> None:
    assert_serves(server, what="before the flood")
    client = handshake(server, "/echo", rcvbuf=SMALL_RCVBUF)
    try:
        with RssSampler(server) as rss:
            pings = _flood(client.sock, masked=True)
            _wait_idle(server.ps)
        assert pings > 1000, f"the flood stopped after {pings} pings"
        print(f"server: {pings} pings written before pushback, RSS growth {rss.growth / MiB:.1f} MiB")
        assert rss.growth <= FLOOD_RSS_BOUND, (
            f"RSS grew by {rss.growth / MiB:.1f} MiB under a flood of {pings} unanswered pings "
            f"(bound: write_limit + 2 reads + 4 MiB = {FLOOD_RSS_BOUND / MiB:.1f} MiB)"
        )
    finally:
        client.reset()
    assert_serves(server, what="after a ping flood")


def test_ping_flood_with_unread_pongs(servers) -> None:
    _check_server_flood(servers.wscodec())


def test_uvicorn_ping_flood_with_unread_pongs(servers) -> None:
    _check_server_flood(servers.uvicorn())


# ------------------------------------------------------------------ the client side: a hostile server


@contextlib.contextmanager
def _hostile_server(behaviour: str) -> Iterator[tuple[int, dict[str, object]]]:
    """A raw server in a thread, accepting one WebSocket client: "flood" sends PING_FLOOD Pings and never
    reads; "drop" never reads, waits until the client's writes stall, then resets the connection."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)  # inherited by the accepted socket
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(20)
    stats: dict[str, object] = {}
    stop = threading.Event()

    def run() -> None:
        try:
            conn, _ = listener.accept()
        except OSError as exc:
            stats["error"] = exc
            return
        with conn:
            conn.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            match = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", head)
            assert match is not None
            accept = base64.b64encode(hashlib.sha1(match.group(1) + GUID).digest())
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            if behaviour == "flood":
                stats["pings"] = _flood(conn, masked=False)
                stats["flooded"] = True
                stop.wait(60)
            else:
                # The client sends without end and we never read: its transport soon pauses writing.
                stop.wait(1.5)
                stats["dropped_at"] = time.monotonic()
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close: an RST

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], stats
    finally:
        stop.set()
        thread.join(130)
        listener.close()


def _client(loop: str, port: int, mode: str) -> ServerProcess:
    """``ws_client.py`` as a process (its RSS is measured like a server's): ready once it prints "open"."""
    argv = [sys.executable, str(HERE / "ws_client.py"), "--loop", loop, "--mode", mode, f"ws://127.0.0.1:{port}/"]
    return ServerProcess(argv, ready=rb"open")


def test_client_ping_flood_with_unread_pongs(loop: str) -> None:
    with _hostile_server("flood") as (port, stats):
        client = _client(loop, port, "idle")
        try:
            with RssSampler(client) as rss:
                assert wait_until(lambda: "flooded" in stats, 130, interval=0.1), "the flood did not finish"
                _wait_idle(client.ps)
            pings = int(stats["pings"])  # type: ignore[call-overload]
            assert pings > 1000, f"the flood stopped after {pings} pings"
            assert client.alive(), f"the client died:\n{client.output()}"
            print(f"client: {pings} pings written before pushback, RSS growth {rss.growth / MiB:.1f} MiB")
            assert rss.growth <= FLOOD_RSS_BOUND, (
                f"the client's RSS grew by {rss.growth / MiB:.1f} MiB under a flood of {pings} pings whose "
                f"Pongs the server never reads (bound {FLOOD_RSS_BOUND / MiB:.1f} MiB)"
            )
        finally:
            client.stop()


def test_client_send_to_a_server_that_stops_reading_then_vanishes(loop: str) -> None:
    """``send()`` in a loop against a server that never reads, then resets: ConnectionClosed, promptly."""
    with _hostile_server("drop") as (port, stats):
        client = _client(loop, port, "send")
        try:
            assert wait_until(lambda: "dropped_at" in stats, 30, interval=0.1), "the server thread did not drop"
            ended = wait_until(lambda: not client.alive(), 5.0)
            cpu = client.cpu_percent(0.5) if client.alive() else 0.0
            assert ended, (
                f"send() did not return 5 s after the server dropped TCP (client CPU {cpu:.0f}%: 100% = spinning)"
            )
            assert client.proc.returncode == 3, (client.proc.returncode, client.output())
        finally:
            client.stop()
