"""Input too large to accept: deflate bombs (1009, no memory growth) and a huge request head (431, delivered).

Issue 9: bombs stopped at ``max_size`` with 1009 and no RSS growth, on the asyncio server and the uvicorn
protocol; section 5, first bullet: the 431 answer to a client still writing a huge request head must reach
it, the connection ended gracefully (FIN), not by a reset.
"""

from __future__ import annotations

import base64
import errno
import functools
import os
import select
import struct
import time
import tracemalloc
import zlib

import pytest
from harness import (
    STEP,
    MiB,
    RssSampler,
    ServerProcess,
    assert_serves,
    connect_raw,
    handshake,
)

MAX_SIZE = MiB
BOMB_SIZE = 64 * MiB  # inflated size of one bomb; compressed it is about 64 KiB
BOMBS = 6  # per test, each on a fresh connection
BOMB_RSS_BOUND = 4 * MAX_SIZE + 4 * MiB  # one message's worth at most, plus buffers and allocator slack
HEAD_SIZE = MiB  # the huge request head


@functools.lru_cache(maxsize=1)
def _bomb() -> bytes:
    """BOMB_SIZE zero bytes, raw DEFLATE, without the final empty block's 00 00 ff ff (RFC 7692 7.2.1)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = compressor.compress(bytes(BOMB_SIZE)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


def _explode(server: ServerProcess, fragmented: bool) -> None:
    client = handshake(server, "/echo", deflate=True)
    try:
        bomb = _bomb()
        if fragmented:
            pieces = [bomb[i : i + 8192] for i in range(0, len(bomb), 8192)]
            for i, piece in enumerate(pieces):
                client.send_frame(0x2 if i == 0 else 0x0, piece, fin=i == len(pieces) - 1, rsv1=i == 0)
        else:
            client.send_frame(0x2, bomb, rsv1=True)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may fail the connection before the whole bomb is written
    try:
        opcode, payload, _fin, _rsv1 = client.recv_frame(STEP)
        assert opcode == 0x8, f"expected a Close frame, got opcode {opcode} ({len(payload)} bytes)"
        code = struct.unpack("!H", payload[:2])[0]
        assert code == 1009, f"a deflate bomb got close code {code}, not 1009 (message too big)"
        client.wait_closed(STEP)
    finally:
        client.close()


def _check_bombs(server: ServerProcess, fragmented: bool) -> None:
    assert_serves(server, what="before the attack")
    _bomb()
    with RssSampler(server) as rss:
        for _ in range(BOMBS):
            _explode(server, fragmented)
    print(f"{BOMBS} bombs of {BOMB_SIZE // MiB} MiB: RSS growth {rss.growth / MiB:.1f} MiB")
    assert rss.growth <= BOMB_RSS_BOUND, (
        f"RSS grew by {rss.growth / MiB:.1f} MiB over {BOMBS} bombs of {BOMB_SIZE // MiB} MiB each "
        f"(bound {BOMB_RSS_BOUND / MiB:.0f} MiB, max_size {MAX_SIZE // MiB} MiB)"
    )
    assert_serves(server, what="after deflate bombs")


@pytest.mark.parametrize("fragmented", [False, True], ids=["one-frame", "fragmented"])
def test_deflate_bombs_get_1009_without_memory_growth(servers, fragmented: bool) -> None:
    _check_bombs(servers.wscodec(max_size=MAX_SIZE), fragmented)


@pytest.mark.parametrize("fragmented", [False, True], ids=["one-frame", "fragmented"])
def test_uvicorn_deflate_bombs_get_1009_without_memory_growth(servers, fragmented: bool) -> None:
    _check_bombs(servers.uvicorn("--ws-max-size", str(MAX_SIZE)), fragmented)


def test_a_bombed_connection_keeps_nothing_of_the_bomb() -> None:
    """In process, with tracemalloc: what a Connection refused with 1009 keeps (its error included, as an
    I/O layer keeps it) is its compression state, not the inflated max_size bytes. Before the fix the
    error's traceback held them: 1.2 MiB per connection until the cyclic garbage collector ran."""
    from wscodec import Connection, encode_frame
    from wscodec.events import ProtocolViolation

    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    ).encode()
    wire = encode_frame(0x2, _bomb(), rsv1=True, mask=os.urandom(4))
    kept = []
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(4):
            conn = Connection("server", max_message_size=MAX_SIZE)
            conn.receive_data(request)
            conn.accept()
            conn.data_to_send()
            events = conn.receive_data(wire)
            assert [e.code for e in events if isinstance(e, ProtocolViolation)] == [1009], events
            conn.data_to_send()
            kept.append((conn, events))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held <= 4 * MAX_SIZE // 2, f"4 bombed connections hold {held / MiB:.1f} MiB"


def _huge_head(server: ServerProcess) -> tuple[bytes, str]:
    """Write a request head of HEAD_SIZE bytes (never finished) while reading the answer: (answer, ending),
    ending being "eof" (a FIN after the answer), "reset" (an RST, on read or write) or "timeout"."""
    line = b"X-Padding: " + b"a" * 1000 + b"\r\n"
    head = (
        f"GET /echo HTTP/1.1\r\nHost: {server.host}:{server.port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    ).encode() + line * (HEAD_SIZE // len(line))
    sock = connect_raw(server)
    sock.setblocking(False)
    answer = b""
    written = 0
    deadline = time.monotonic() + 2 * STEP
    try:
        while time.monotonic() < deadline:
            want_write = [sock] if written < len(head) else []
            readable, writable, _ = select.select([sock], want_write, [], 0.2)
            if writable:
                try:
                    written += sock.send(head[written : written + 65536])
                except BlockingIOError:
                    pass
                except OSError as exc:
                    if exc.errno in (errno.EPIPE, errno.ECONNRESET):
                        return answer, "reset"
                    raise
            if readable:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    return answer, "reset"
                if not chunk:
                    return answer, "eof"
                answer += chunk
        return answer, "timeout"
    finally:
        sock.close()


def test_huge_request_head_gets_431_then_a_graceful_close(servers) -> None:
    server = servers.wscodec()
    assert_serves(server, what="before the attack")
    answer, ending = _huge_head(server)
    assert answer.startswith(b"HTTP/1.1 431 "), f"no 431 status line before the connection ended: {answer[:200]!r}"
    assert ending == "eof", f"the 431 was followed by a {ending}, not a graceful close (FIN)"
    assert_serves(server, what="after a huge request head")
