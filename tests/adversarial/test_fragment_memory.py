"""One-byte fragments against a real server process: memory follows the payload, not the fragment count.

Issue 9, section 3. Each hostile client upgrades, starts a binary message and sends 1,040,000 masked frames
of one byte (a message under the default 1 MiB ``max_size``, 7.3 MB on the wire) without the final one, then
holds the connection. Before the fix a server kept a ``bytes`` object, a list slot, a frame and an event per
fragment: +313 MiB of RSS for 8 such clients (39 MiB each), and +135 MiB to echo one completed message.

The servers are subprocesses (``serve()`` with an echo handler, and uvicorn with
``--ws wscodec.asgi:UvicornWebSocketProtocol``) on a loopback port; their RSS is read with psutil, and the
peak with Linux's ``VmHWM`` after resetting it through ``/proc/PID/clear_refs``. The environment is passed
through, so ``WSCODEC_PURE_PYTHON=1`` reaches the server. A client knows the server has taken in everything
it sent when the Pong to a Ping sent behind the fragments comes back.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator

import pytest

from wscodec import encode_frame

pytest.importorskip("psutil")

from _fragment_peers import STEP, RawClient, ServerProcess, loops

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmHWM from /proc (Linux)"),
    pytest.mark.timeout(600),
]

MAX_SIZE = 1 << 20  # the default max_size of serve() and of uvicorn's --ws-max-size
FRAGMENTS = 1_040_000  # one-byte fragments per message: under MAX_SIZE
CLIENTS = 8


def _fragments() -> bytes:
    """A binary message of FRAGMENTS one-byte frames, all but the final one."""
    first = encode_frame(2, b"\x01", fin=False, mask=b"\x9a\x3c\x55\xe1")
    more = encode_frame(0, b"\x01", fin=False, mask=b"\x9a\x3c\x55\xe1")
    return first + more * (FRAGMENTS - 1)


@pytest.fixture(scope="module")
def fragments() -> bytes:
    return _fragments()


@pytest.fixture(params=["serve", "uvicorn"])
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "uvicorn":
        pytest.importorskip("uvicorn")
        pytest.importorskip("starlette")
    return str(request.param)


@pytest.fixture(params=loops())
def server(request: pytest.FixtureRequest, kind: str) -> Iterator[ServerProcess]:
    proc = ServerProcess(kind, request.param)
    try:
        yield proc
    finally:
        proc.stop()


def _warm_up(server: ServerProcess) -> None:
    """One small echo, so that the baseline includes the modules and buffers every connection uses."""
    client = RawClient(server.port, server.path)
    client.send(encode_frame(2, b"warm-up", mask=True))
    frame = client.next_frame()
    assert (frame.opcode, frame.payload) == (2, b"warm-up")
    client.close()
    time.sleep(0.2)


def test_unfinished_one_byte_fragments_cost_their_payload(server: ServerProcess, fragments: bytes) -> None:
    """8 clients each hold a message of 1,040,000 one-byte fragments: at most 3x max_size per connection."""
    _warm_up(server)
    baseline = server.rss()
    clients = [RawClient(server.port, server.path) for _ in range(CLIENTS)]
    errors: list[BaseException] = []

    def attack(client: RawClient) -> None:
        try:
            client.send(fragments)
            client.sync()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=attack, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(STEP * 2)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads), "a client did not get its Pong"
    growth = server.rss() - baseline
    per_connection = growth / CLIENTS
    print(f"\n{server.path} RSS +{growth / 2**20:.1f} MiB, {CLIENTS} connections, {per_connection / 2**20:.2f} each")
    assert per_connection <= 3 * MAX_SIZE, f"{per_connection / 2**20:.1f} MiB per connection"
    # The messages are valid: one of them completes and comes back whole.
    clients[0].send(encode_frame(0, b"\x02", fin=True, mask=True))
    frame = clients[0].next_frame()
    assert frame.opcode == 2 and frame.fin
    assert frame.payload == b"\x01" * FRAGMENTS + b"\x02"
    for client in clients:
        client.close()


def test_completed_one_byte_fragments_echo_within_4x_max_size(server: ServerProcess, fragments: bytes) -> None:
    """A message of 1,040,001 one-byte fragments is echoed with a peak of at most 4x max_size."""
    _warm_up(server)
    baseline = server.rss()
    server.reset_peak()
    client = RawClient(server.port, server.path)
    client.send(fragments + encode_frame(0, b"\x02", fin=True, mask=True))
    frame = client.next_frame()
    assert frame.opcode == 2 and frame.fin
    assert frame.payload == b"\x01" * FRAGMENTS + b"\x02"
    peak = server.peak() - baseline
    print(f"\n{server.path} peak RSS +{peak / 2**20:.1f} MiB to echo {FRAGMENTS + 1} one-byte fragments")
    assert peak <= 4 * MAX_SIZE, f"peak +{peak / 2**20:.1f} MiB"
    client.close()
