"""Clients that stop reading: the server must push back, keep serving others, and let go of them.

Issue 9, section 1: a peer that stops reading and then goes away must not hang the event loop; a streaming
handler whose client stopped reading must be dropped by keepalive without hanging the loop either. Every
test ends with a fresh client that must get its echo within ``harness.ECHO_BOUND`` seconds.
"""

from __future__ import annotations

import os
import time

import pytest
from harness import (
    ECHO_BOUND,
    MiB,
    RssSampler,
    assert_serves,
    frame,
    handshake,
    holds_connection,
    send_until_pushback,
    wait_until,
)

FRAME = frame(0x2, os.urandom(65536))  # one 64 KiB binary frame, masked
PUSHBACK_LIMIT = 64 * MiB  # a server that has not pushed back by then buffers without bound
KEEPALIVE = {"ping_interval": 0.3, "ping_timeout": 0.3, "close_timeout": 1.0}
UVICORN_KEEPALIVE = ("--ws-ping-interval", "0.3", "--ws-ping-timeout", "0.3")
SHORT_CLOSE_WS = "asgi_apps:ShortCloseProtocol"
DROP_BOUND = 0.3 + 0.3 + 1.0 + 6.0  # ping interval + ping timeout + close timeout + slack for a loaded machine
HOG_RSS_BOUND = 32 * MiB  # max_queue (16) x 64 KiB + write_limit + reads + decoder state, with room to spare


def _stop_reading_then_vanish(server, path: str, ending: str) -> None:
    assert_serves(server, what="before the attack")
    client = handshake(server, path)
    sent = send_until_pushback(client.sock, FRAME, limit=PUSHBACK_LIMIT)
    assert sent < PUSHBACK_LIMIT, f"the server never pushed back: it took {sent / MiB:.0f} MiB without reading"
    if ending == "rst":
        client.reset()
    else:
        client.close()
    assert_serves(server, what=f"after a client wrote {sent / MiB:.1f} MiB without reading, then left ({ending})")


@pytest.mark.parametrize("ending", ["fin", "rst"])
def test_cli_echo_peer_stops_reading_then_vanishes(servers, ending: str) -> None:
    """The critical reproduction, against the README's ``python -m wscodec serve``."""
    _stop_reading_then_vanish(servers.cli(), "/", ending)


@pytest.mark.parametrize("ending", ["fin", "rst"])
def test_uvicorn_echo_peer_stops_reading_then_vanishes(servers, ending: str) -> None:
    _stop_reading_then_vanish(servers.uvicorn(), "/echo", ending)


def _never_reading_client(server, path: str, *, write: bool) -> None:
    """A client that never reads (and, for an echo, writes until pushed back) is dropped by keepalive;
    meanwhile others are served and the server's memory stays bounded; afterwards too."""
    assert_serves(server, what="before the attack")
    with RssSampler(server) as rss:
        client = handshake(server, path)
        port = client.sock.getsockname()[1]
        start = time.monotonic()
        if write:
            sent = send_until_pushback(client.sock, FRAME, limit=PUSHBACK_LIMIT, stall=0.5)
            assert sent < PUSHBACK_LIMIT, f"the server never pushed back ({sent / MiB:.0f} MiB)"
        assert_serves(server, what="while a client does not read")
        # The hog is never read from: reading would let the server flush and close gracefully instead.
        dropped = wait_until(lambda: not holds_connection(server, port), DROP_BOUND, interval=0.1)
        elapsed = time.monotonic() - start
    try:
        assert dropped, f"the server still holds the never-reading client after {elapsed:.1f} s (keepalive)"
        assert_serves(server, what=f"after keepalive dropped a never-reading client of {path}")
        print(f"{path}: dropped after {elapsed:.1f} s, RSS growth {rss.growth / MiB:.1f} MiB")
        assert rss.growth <= HOG_RSS_BOUND, f"RSS grew by {rss.growth / MiB:.1f} MiB for one never-reading client"
    finally:
        client.reset()


@pytest.mark.parametrize("path", ["/echo", "/stream"])
def test_never_reading_client_dropped_by_keepalive(servers, path: str) -> None:
    server = servers.wscodec(**KEEPALIVE)
    _never_reading_client(server, path, write=path == "/echo")


@pytest.mark.parametrize("path", ["/echo", "/stream"])
def test_uvicorn_never_reading_client_dropped_by_keepalive(servers, path: str) -> None:
    server = servers.uvicorn(*UVICORN_KEEPALIVE, ws=SHORT_CLOSE_WS)
    _never_reading_client(server, path, write=path == "/echo")


def test_echo_bound_is_the_issue_bound_on_an_idle_machine(servers) -> None:
    """The generous bound of the suite, ``ECHO_BOUND``, covers a loaded CI machine; on the server at rest
    a fresh echo takes far less than the issue's one second."""
    server = servers.wscodec()
    assert_serves(server)
    best = min(assert_serves(server) for _ in range(3))
    assert best < 1.0 <= ECHO_BOUND, best
