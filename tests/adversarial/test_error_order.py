"""Errors in their place, over real sockets: what came before a protocol error is answered first, and
invalid UTF-8 fails the connection at the very chop that brings it (issue 9, section 6).

Against an echo server in a subprocess: ``serve()`` from ``wscodec.asyncio`` and uvicorn with
``--ws wscodec.asgi:UvicornWebSocketProtocol``. Before, the connection failed first and the echo of the
valid message that shared the read with the bad frame was lost; and a text frame sent in chops was checked
only once whole.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator

import pytest

from wscodec import encode_frame
from wscodec.connection import FAIL_LINGER

pytest.importorskip("psutil")

from _fragment_peers import RawClient, ServerProcess, close_code, frames_until_eof, loops, masked_frame

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the server helper reads /proc (Linux)"),
    pytest.mark.timeout(120),
]


@pytest.fixture(scope="module", params=["serve", "uvicorn"])
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "uvicorn":
        pytest.importorskip("uvicorn")
        pytest.importorskip("starlette")
    return str(request.param)


@pytest.fixture(scope="module", params=loops())
def server(request: pytest.FixtureRequest, kind: str) -> Iterator[ServerProcess]:
    proc = ServerProcess(kind, request.param)
    try:
        yield proc
    finally:
        proc.stop()


def text(payload: bytes, *, fin: bool = True, opcode: int = 1) -> bytes:
    return encode_frame(opcode, payload, fin=fin, mask=True)


BAD_FRAMES = {
    "rsv2": encode_frame(1, b"bad", rsv2=True, mask=True),
    "reserved opcode": masked_frame(0x83, b"bad"),
}


@pytest.mark.parametrize("bad", list(BAD_FRAMES))
def test_message_before_a_bad_frame_is_echoed_before_the_close(server: ServerProcess, bad: str) -> None:
    """One write: a text message, a bad frame, a Ping. The echo arrives, then Close 1002, and no Pong."""
    client = RawClient(server.port, server.path, timeout=10)
    client.send(text(b"before the error") + BAD_FRAMES[bad] + encode_frame(9, b"no pong", mask=True))
    frames = frames_until_eof(client)
    assert [(f.opcode, f.payload) for f in frames[:1]] == [(1, b"before the error")]
    assert len(frames) == 2 and close_code(frames[1]) == 1002, frames
    assert not any(f.opcode == 10 for f in frames)
    client.close()


def test_fragmented_message_then_stray_continuation(server: ServerProcess) -> None:
    """A two-fragment message, a continuation with nothing to continue, another message: the first is
    echoed, then Close 1002; the last is not."""
    client = RawClient(server.port, server.path, timeout=10)
    data = text(b"two ", fin=False) + text(b"fragments", opcode=0) + text(b"stray", opcode=0) + text(b"after")
    client.send(data)
    frames = frames_until_eof(client)
    assert [(f.opcode, f.payload) for f in frames[:1]] == [(1, b"two fragments")]
    assert len(frames) == 2 and close_code(frames[1]) == 1002, frames
    client.close()


def test_invalid_utf8_fails_at_the_second_chop(server: ServerProcess) -> None:
    """One text frame in three chops with pauses: valid UTF-8, then bytes above U+10FFFF, then the rest.
    Close 1007 arrives right after the second chop, before the third is sent."""
    client = RawClient(server.port, server.path, timeout=10)
    payload = "valid, caf\u00e9 ".encode() + b"\xf4\x90\x80\x80" + b" and the rest"
    frame = encode_frame(1, payload, mask=os.urandom(4))
    first, second = len(frame) - len(payload) + 14, len(frame) - len(payload) + 18
    client.send(frame[:first])
    time.sleep(0.3)
    client.sock.settimeout(0.3)  # nothing may come back for a valid beginning
    with pytest.raises(TimeoutError):
        client.sock.recv(1)
    client.send(frame[first:second])
    frames = frames_until_eof(client, timeout=10)  # before the third chop is ever sent
    assert len(frames) == 1 and close_code(frames[0]) == 1007, frames
    # The server's side is shut down (the EOF above); what is still sent is read and dropped until the
    # client's EOF, and at most FAIL_LINGER: then the third chop finds no one.
    with pytest.raises(OSError):
        for _ in range(int((FAIL_LINGER + 1) / 0.02)):
            client.send(frame[second:])
            time.sleep(0.02)
    client.close()


def test_server_still_serves_after_each_error(server: ServerProcess) -> None:
    client = RawClient(server.port, server.path, timeout=10)
    client.send(text(b"still here"))
    frame = client.next_frame()
    assert (frame.opcode, frame.payload) == (1, b"still here")
    client.close()
