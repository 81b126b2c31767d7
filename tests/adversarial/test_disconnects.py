"""Peers that vanish, stall or never finish: nothing may outlive its timeout, nothing may leak.

Issue 9, the adversarial suite: 1,000 abrupt disconnects mid-handshake and mid-frame (fds and tasks back to
baseline), half-open and slowloris handshakes dropped at the open timeout, a peer that never answers our
Close dropped at the close timeout. After each attack a fresh client gets its echo.
"""

from __future__ import annotations

import os
import random
import select
import socket
import struct
import time

from harness import (
    STEP,
    MiB,
    RssSampler,
    ServerProcess,
    assert_serves,
    connect_raw,
    frame,
    handshake,
    random_key,
    request_bytes,
    settle,
    snapshot,
)

DISCONNECTS = 1000  # half mid-handshake, half mid-frame
BATCH = 50  # sockets open at once
OPEN_TIMEOUT = 1.0
CLOSE_TIMEOUT = 1.0
SLACK = 4.0  # seconds a loaded 2-core machine may add to a timer
STALLERS = 20  # of each kind: half-open, slowloris


def _linger0(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _end(sock: socket.socket, i: int) -> None:
    """Close abruptly: an RST for odd ``i``, a FIN for even ones."""
    if i % 2:
        _linger0(sock)
    sock.close()


def _disconnects(server: ServerProcess, count: int) -> None:
    host = f"{server.host}:{server.port}"
    rng = random.Random(9)
    done = 0
    # Mid-handshake: part of the request head, then gone.
    while done < count // 2:
        batch = []
        for _ in range(min(BATCH, count // 2 - done)):
            head = request_bytes(host, "/echo", random_key())
            sock = connect_raw(server)
            sock.sendall(head[: rng.randrange(1, len(head) - 1)])
            batch.append(sock)
        for sock in batch:
            _end(sock, done)
            done += 1
    # Mid-frame: upgraded, then part of a frame (header only, or part of the payload), then gone.
    payload = os.urandom(4096)
    while done < count:
        batch = []
        for _ in range(min(BATCH, count - done)):
            client = handshake(server, "/echo")
            wire = frame(0x2, payload)
            client.sock.sendall(wire[: rng.randrange(1, len(wire) - 1)])
            batch.append(client.sock)
        for sock in batch:
            _end(sock, done)
            done += 1


def _check_abrupt_disconnects(server: ServerProcess) -> None:
    assert_serves(server, what="before the attack")
    baseline = snapshot(server)
    with RssSampler(server) as rss:
        _disconnects(server, DISCONNECTS)
    after = settle(server, baseline)
    assert after["fds"] <= baseline["fds"], f"fds not back to baseline: {baseline} -> {after}"
    assert after["tasks"] <= baseline["tasks"], f"tasks not back to baseline: {baseline} -> {after}"
    print(f"{DISCONNECTS} disconnects: {baseline} -> {after}, RSS growth {rss.growth / MiB:.1f} MiB")
    assert rss.growth <= 32 * MiB, f"RSS grew by {rss.growth / MiB:.1f} MiB over {DISCONNECTS} disconnects"
    assert_serves(server, what=f"after {DISCONNECTS} abrupt disconnects")


def test_abrupt_disconnects_mid_handshake_and_mid_frame(servers) -> None:
    _check_abrupt_disconnects(servers.wscodec())


def test_uvicorn_abrupt_disconnects_mid_handshake_and_mid_frame(servers) -> None:
    _check_abrupt_disconnects(servers.uvicorn())


def test_half_open_and_slowloris_dropped_at_open_timeout(servers) -> None:
    server = servers.wscodec(open_timeout=OPEN_TIMEOUT)
    assert_serves(server, what="before the attack")
    baseline = snapshot(server)
    host = f"{server.host}:{server.port}"
    connected: dict[socket.socket, float] = {}  # when each connection was made: its timer starts then
    for _ in range(2 * STALLERS):
        sock = connect_raw(server)
        connected[sock] = time.monotonic()
    half_open, slow = list(connected)[:STALLERS], list(connected)[STALLERS:]
    opened = time.monotonic()
    head = request_bytes(host, "/echo", random_key())  # ~150 bytes at 10 per second: never done in time
    sent = {s: 0 for s in slow}
    dropped: dict[socket.socket, float] = {}
    try:
        assert_serves(server, what="while half-open and slowloris clients wait")
        deadline = opened + OPEN_TIMEOUT + SLACK
        while len(dropped) < 2 * STALLERS and time.monotonic() < deadline:
            for sock in slow:
                if sock not in dropped and sent[sock] < len(head) - 4:
                    try:
                        sock.send(head[sent[sock] : sent[sock] + 1])
                        sent[sock] += 1
                    except OSError:
                        dropped[sock] = time.monotonic() - connected[sock]
            waiting = [s for s in half_open + slow if s not in dropped]
            readable, _, _ = select.select(waiting, [], [], 0.1)
            for sock in readable:
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                assert not data, f"a server answered an unfinished request head: {data[:200]!r}"
                dropped[sock] = time.monotonic() - connected[sock]
        assert len(dropped) == 2 * STALLERS, (
            f"{2 * STALLERS - len(dropped)} stalled handshakes still open {OPEN_TIMEOUT + SLACK} s after connecting"
        )
        early = sorted(t for t in dropped.values() if t < OPEN_TIMEOUT * 0.5)
        assert not early, f"dropped before the open timeout ({OPEN_TIMEOUT} s): {early}"
        assert max(sent.values()) < len(head) - 4
    finally:
        for sock in half_open + slow:
            sock.close()
    after = settle(server, baseline)
    assert after["fds"] <= baseline["fds"] and after["tasks"] <= baseline["tasks"], (baseline, after)
    assert_serves(server, what="after half-open and slowloris handshakes")


def _never_answers_close(server: ServerProcess) -> None:
    assert_serves(server, what="before the attack")
    baseline = snapshot(server)
    client = handshake(server, "/close")
    try:
        client.send_frame(0x1, b"close me")
        opcode, payload, _fin, _rsv1 = client.recv_frame()
        assert opcode == 0x8 and payload[:2] == struct.pack("!H", 1000), (opcode, payload)
        start = time.monotonic()
        ending = client.wait_closed(CLOSE_TIMEOUT + SLACK + STEP)  # we read, but never answer the Close
        elapsed = time.monotonic() - start
    finally:
        client.close()
    assert elapsed >= CLOSE_TIMEOUT * 0.5, f"the server did not wait for our Close ({elapsed:.2f} s, {ending})"
    assert elapsed <= CLOSE_TIMEOUT + SLACK, f"the server waited {elapsed:.1f} s for a Close that never came"
    after = settle(server, baseline)
    assert after["fds"] <= baseline["fds"] and after["tasks"] <= baseline["tasks"], (baseline, after)
    assert_serves(server, what="after a peer that never answered our Close")


def test_peer_never_answers_our_close(servers) -> None:
    _never_answers_close(servers.wscodec(close_timeout=CLOSE_TIMEOUT))


def test_uvicorn_peer_never_answers_our_close(servers) -> None:
    _never_answers_close(servers.uvicorn(ws="asgi_apps:ShortCloseProtocol"))
