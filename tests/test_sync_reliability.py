"""The threaded API against peers that stop reading, and closes that race a full message queue.

A ``send()`` blocked on a peer that stopped reading holds the send lock; the keepalive, ``close()`` and
``Server.shutdown()`` must still end the connection within their timeouts, and every thread of it with
them. A close that arrives while ``max_queue`` messages are unread must not cost one of them. Real sockets
over loopback, raw ones for the peers that misbehave; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _raw_handshake import accept_response
from _silent_client import SilentClient
from _tls_peers import seconds_held_after_a_tls_refusal, seconds_until_dropped_after_a_late_tls_start, tls_contexts
from test_sync import silent_peer, sync_echo, sync_server

import wscodec
from wscodec import ConnectionClosed, ConnectionClosedOK, encode_frame
from wscodec.sync import WebSocket, connect, serve

WSCODEC_ROOT = str(Path(wscodec.__file__).resolve().parents[1])

pytestmark = pytest.mark.timeout(60)

UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
BIG = os.urandom(64 * 1024)


@dataclasses.dataclass
class Sender:
    """What a thread that sends BIG in a loop saw: how many went out, and how its last send() ended."""

    sent: int = 0
    last_progress: float = dataclasses.field(default_factory=time.monotonic)
    error: BaseException | None = None
    ended_at: float | None = None
    ended: threading.Event = dataclasses.field(default_factory=threading.Event)

    def run(self, ws: WebSocket) -> None:
        try:
            while True:
                ws.send(BIG)
                self.sent += 1
                self.last_progress = time.monotonic()
        except Exception as exc:  # the assertions look at it
            self.error = exc
        finally:
            self.ended_at = time.monotonic()
            self.ended.set()

    def wait_blocked(self, quiet: float = 0.5, timeout: float = 20) -> None:
        """Wait until send() has not returned for ``quiet`` seconds: the peer's window is closed."""
        deadline = time.monotonic() + timeout
        while self.sent == 0 or time.monotonic() - self.last_progress < quiet:
            assert not self.ended.is_set(), f"send() ended: {self.error!r}"
            assert time.monotonic() < deadline, "send() never blocked"
            time.sleep(0.05)


@dataclasses.dataclass
class StuckHandler:
    """A server handler: on /echo it echoes; elsewhere it sends BIG until send() raises."""

    sender: Sender = dataclasses.field(default_factory=Sender)
    ws: WebSocket | None = None
    thread: threading.Thread | None = None
    opened: threading.Event = dataclasses.field(default_factory=threading.Event)

    def __call__(self, ws: WebSocket) -> None:
        if ws.request is not None and ws.request.path == "/echo":
            for message in ws:
                ws.send(message)
            return
        self.ws, self.thread = ws, threading.current_thread()
        self.opened.set()
        self.sender.run(ws)


def connection_threads(ws: WebSocket) -> list[str]:
    """The live threads of one connection (the reader, the keepalive, a shutdown's closer), by name."""
    tag = f"-{id(ws):x}"
    return [thread.name for thread in threading.enumerate() if thread.name.endswith(tag)]


def wait_no_threads(ws: WebSocket, *others: threading.Thread | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while connection_threads(ws) or any(t is not None and t.is_alive() for t in others):
        alive = connection_threads(ws) + [t.name for t in others if t is not None and t.is_alive()]
        assert time.monotonic() < deadline, f"threads still alive: {alive}"
        time.sleep(0.05)


@contextlib.contextmanager
def client_that_never_reads(port: int) -> Iterator[socket.socket]:
    """A raw client with a small receive buffer: it completes the handshake, then never reads again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    try:
        sock.connect(("127.0.0.1", port))
        sock.sendall(UPGRADE)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1)  # byte by byte: nothing past the head is read
            assert chunk, "closed during the handshake"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101")
        yield sock
    finally:
        sock.close()


def test_keepalive_fails_a_client_that_never_reads_while_the_handler_sends() -> None:
    """The handler's send() blocks on the client's closed window; the keepalive still fails the
    connection (1011), every thread of it ends, and the next client is served."""
    handler = StuckHandler()
    with (
        sync_server(handler, ping_interval=0.5, ping_timeout=0.5, close_timeout=1) as server,
        client_that_never_reads(server.port or 0),
    ):
        assert handler.opened.wait(10)
        handler.sender.wait_blocked()
        # interval + ping_timeout + close_timeout (a Close that cannot go out) = 2 s, plus a margin
        assert handler.sender.ended.wait(8), "send() still blocked: the keepalive did not fail the connection"
        assert isinstance(handler.sender.error, ConnectionClosed)
        assert handler.sender.error.code == 1011 and "keepalive" in handler.sender.error.reason
        assert handler.ws is not None
        wait_no_threads(handler.ws, handler.thread, timeout=5)
        with connect(f"ws://127.0.0.1:{server.port}/echo") as ws:
            ws.send("next")
            assert ws.recv(timeout=10) == "next"


def test_close_ends_a_send_blocked_on_a_client_that_never_reads() -> None:
    """Server side: close() from another thread returns within about close_timeout, and the blocked
    send() raises ConnectionClosed (1006: the Close could not go out)."""
    handler = StuckHandler()
    with sync_server(handler, ping_interval=None, close_timeout=1) as server, client_that_never_reads(server.port or 0):
        assert handler.opened.wait(10)
        handler.sender.wait_blocked()
        assert handler.ws is not None
        closer = threading.Thread(target=handler.ws.close, daemon=True)
        started = time.monotonic()
        closer.start()
        closer.join(5)
        assert not closer.is_alive(), "close() still blocked after 5 s (close_timeout=1)"
        assert time.monotonic() - started < 1 + 1.5
        assert handler.sender.ended.wait(5)
        assert isinstance(handler.sender.error, ConnectionClosed) and handler.sender.error.code == 1006
        wait_no_threads(handler.ws, handler.thread, timeout=5)


def test_close_ends_a_send_blocked_on_a_server_that_never_reads() -> None:
    """Client side: the same, against a server that answers the handshake and never reads."""
    with silent_peer(rcvbuf=4096) as port:
        ws = connect(f"ws://127.0.0.1:{port}/", ping_interval=None, close_timeout=1)
        sender = Sender()
        thread = threading.Thread(target=sender.run, args=(ws,), daemon=True)
        thread.start()
        sender.wait_blocked()
        closer = threading.Thread(target=ws.close, daemon=True)
        started = time.monotonic()
        closer.start()
        closer.join(5)
        assert not closer.is_alive(), "close() still blocked after 5 s (close_timeout=1)"
        assert time.monotonic() - started < 1 + 1.5
        assert sender.ended.wait(5)
        assert isinstance(sender.error, ConnectionClosed) and sender.error.code == 1006
        wait_no_threads(ws, thread, timeout=5)
        assert ws.close_code == 1006


def test_shutdown_leaves_no_thread_of_a_connection_stuck_in_send() -> None:
    """Server.shutdown() with a handler blocked in send() (no keepalive to help): it returns within
    close_timeout + 1 s and no thread of that connection is left."""
    handler = StuckHandler()
    server = serve(handler, "127.0.0.1", 0, ping_interval=None, close_timeout=1)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with client_that_never_reads(server.port or 0):
        assert handler.opened.wait(10)
        handler.sender.wait_blocked()
        started = time.monotonic()
        server.shutdown()
        assert time.monotonic() - started < 1 + 1 + 0.5
        thread.join(10)
        assert not thread.is_alive()
        assert handler.ws is not None
        alive = connection_threads(handler.ws)
        assert not alive and handler.thread is not None and not handler.thread.is_alive(), alive
        assert isinstance(handler.sender.error, ConnectionClosed) and handler.sender.error.code == 1006


def masked_frame(opcode: int, payload: bytes) -> bytes:
    assert len(payload) < 126
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + mask + masked


def test_close_with_a_full_queue_loses_no_message() -> None:
    """max_queue=4: four messages and a Close arrive while the handler is busy. The close needs no room in
    the full queue: the handler gets the four, in order, then ConnectionClosedOK."""
    got: list[Any] = []
    done = threading.Event()

    def handler(ws: WebSocket) -> None:
        try:
            assert ws.wait_closed(10)  # busy until the connection is over: the four wait in a full queue
            while True:
                got.append(ws.recv(timeout=5))
        except Exception as exc:  # the assertions look at it
            got.append(exc)
        finally:
            done.set()

    with sync_server(handler, max_queue=4, ping_interval=None, close_timeout=2) as server:
        with socket.create_connection(("127.0.0.1", server.port or 0), 10) as sock:
            sock.settimeout(10)
            sock.sendall(UPGRADE)
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(4096)
                assert chunk
                answer += chunk
            for i in range(4):
                sock.sendall(masked_frame(1, f"msg-{i}".encode()))
            sock.sendall(masked_frame(8, struct.pack("!H", 1000)))
            while chunk := sock.recv(4096):  # the server's Close, then its end of TCP
                answer += chunk
        assert done.wait(10)
    assert got[:4] == ["msg-0", "msg-1", "msg-2", "msg-3"], got
    assert len(got) == 5 and isinstance(got[4], ConnectionClosedOK) and got[4].code == 1000, got


def test_close_with_a_full_queue_loses_no_message_client_side() -> None:
    """The same on the client: the server sends four messages and closes before the client reads any."""

    def handler(ws: WebSocket) -> None:
        for i in range(4):
            ws.send(f"msg-{i}")
        ws.close()

    with sync_server(handler, ping_interval=None) as server:
        ws = connect(f"ws://127.0.0.1:{server.port}/", max_queue=4, ping_interval=None, close_timeout=2)
        assert ws.wait_closed(10)
        assert [ws.recv(timeout=5) for _ in range(4)] == ["msg-0", "msg-1", "msg-2", "msg-3"]
        with pytest.raises(ConnectionClosedOK):
            ws.recv(timeout=5)


def test_the_wait_for_the_end_of_tcp_is_one_close_timeout_however_the_client_trickles() -> None:
    """After the closing handshake the server shuts its side of TCP and waits for the client's, at most
    close_timeout (1 s) in all: a client that keeps sending a byte every 0.9 s cannot stretch it (each
    recv given a whole close_timeout of its own used to let it run to 1.8 s). The next client is served."""
    closed_at: list[float] = []
    done = threading.Event()

    def handler(ws: WebSocket) -> None:
        if done.is_set():  # the next client: an echo
            for message in ws:
                ws.send(message)
            return
        assert ws.wait_closed(20)
        closed_at.append(time.monotonic())
        done.set()

    with sync_server(handler, ping_interval=None, close_timeout=1) as server:
        with socket.create_connection(("127.0.0.1", server.port or 0), 10) as sock:
            sock.settimeout(10)
            sock.sendall(UPGRADE)
            sock.sendall(masked_frame(8, struct.pack("!H", 1000)))
            answer = b""
            while chunk := sock.recv(4096):  # the 101, the server's Close, then its end of TCP
                answer += chunk
            ended = time.monotonic()
            assert answer.startswith(b"HTTP/1.1 101") and answer.endswith(b"\x88\x02\x03\xe8"), answer
            while not done.is_set() and time.monotonic() < ended + 10:
                with contextlib.suppress(OSError):
                    sock.sendall(b"x")  # after the handshake: read and dropped, but it keeps the wait busy
                done.wait(0.9)
        assert done.is_set()
        assert closed_at[0] - ended < 1.5, f"the server waited {closed_at[0] - ended:.2f} s for the end of TCP"
        with connect(f"ws://127.0.0.1:{server.port}/echo") as ws:
            ws.send("next")
            assert ws.recv(timeout=10) == "next"


def test_the_tls_server_sends_close_notify_before_its_end_of_tcp() -> None:
    """RFC 8446 section 6.1: close_notify before TCP's FIN, after the closing handshake and after an HTTP
    answer. A strict client (suppress_ragged_eofs=False) reads to a clean end instead of SSLEOFError."""
    server_context, client_context = tls_contexts()

    def refuse_404(request: Any) -> Any:
        return (404, [], b"nope\n") if request.path == "/404" else None

    def strict_exchange(port: int, path: str) -> tuple[bytes, bytes]:
        raw = socket.create_connection(("127.0.0.1", port), 10)
        with client_context.wrap_socket(raw, server_hostname="127.0.0.1", suppress_ragged_eofs=False) as sock:
            sock.settimeout(10)
            sock.sendall(UPGRADE.replace(b"GET / ", f"GET {path} ".encode(), 1))
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(4096)
            if data.startswith(b"HTTP/1.1 101"):
                sock.sendall(masked_frame(8, struct.pack("!H", 1000)))
            while chunk := sock.recv(4096):  # raises SSLEOFError at a FIN without close_notify
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            return head, rest

    server = serve(
        lambda ws: [ws.send(m) for m in ws],
        "127.0.0.1",
        0,
        ssl=server_context,
        process_request=refuse_404,
        ping_interval=None,
        close_timeout=2,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.socket.getsockname()[1]
        head, rest = strict_exchange(port, "/")
        assert head.startswith(b"HTTP/1.1 101") and rest == b"\x88\x02\x03\xe8", (head, rest)
        head, rest = strict_exchange(port, "/404")
        assert head.startswith(b"HTTP/1.1 404") and rest == b"nope\n", (head, rest)
    finally:
        server.shutdown()
        thread.join(10)


def test_a_handshake_that_completes_during_shutdown_is_not_served() -> None:
    """A client sends half its upgrade request, the server's shutdown() starts, the client sends the rest:
    it gets 503, not an upgrade that would go on being served after shutdown() returned."""
    with sync_server(close_timeout=1) as server:
        with socket.create_connection(("127.0.0.1", server.port or 0), 10) as sock:
            sock.settimeout(10)
            sock.sendall(UPGRADE[:40])
            time.sleep(0.2)  # the connection's thread is in its handshake, waiting for the rest
            stopper = threading.Thread(target=server.shutdown)
            stopper.start()
            time.sleep(0.3)
            sock.sendall(UPGRADE[40:])
            data = b""
            with contextlib.suppress(OSError):
                while chunk := sock.recv(4096):
                    data += chunk
            stopper.join(10)
            assert not stopper.is_alive()
        assert data.startswith(b"HTTP/1.1 503"), data


def test_the_keepalive_spares_a_client_whose_pongs_wait_behind_a_full_queue() -> None:
    """A slow handler (0.3 s per message) with max_queue=2: the reader thread waits for room most of the
    time while the keepalive pings every 0.2 s with a 0.4 s timeout. The client answers every ping, but
    its Pongs wait unread in the socket; the server waits for them instead of failing it with 1011."""
    got: list[Any] = []

    def handler(ws: WebSocket) -> None:
        for message in ws:
            got.append(message)
            time.sleep(0.3)
            if len(got) == 10:
                ws.send("done")

    with sync_server(handler, max_queue=2, ping_interval=0.2, ping_timeout=0.4) as server:
        with connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None) as ws:
            for i in range(10):
                ws.send(f"m{i}")
            assert ws.recv(timeout=20) == "done"
        assert ws.close_code == 1000
    assert got == [f"m{i}" for i in range(10)]


def test_open_timeout_bounds_the_tls_handshake_and_the_request_together() -> None:
    """open_timeout=1: a client that takes 0.7 s to start TLS, then sends nothing, is dropped 1 s after it
    connected (the request used to get a whole open_timeout of its own after the TLS handshake: 1.7 s)."""
    server_context, client_context = tls_contexts()
    server = serve(lambda ws: None, "127.0.0.1", 0, ssl=server_context, open_timeout=1)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.socket.getsockname()[1]
        elapsed = seconds_until_dropped_after_a_late_tls_start(port, client_context, 0.7)
        assert 0.9 < elapsed < 1.45, f"dropped after {elapsed:.2f} s"
    finally:
        server.shutdown()
        thread.join(10)


def test_a_refusal_over_tls_holds_the_socket_for_reject_linger_at_most() -> None:
    """A refused request over TLS from a client that never answers close_notify: the socket (and its
    thread) is let go after REJECT_LINGER (2 s), not after close_timeout."""
    server_context, client_context = tls_contexts()
    server = serve(lambda ws: None, "127.0.0.1", 0, ssl=server_context, close_timeout=8)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        status, held = seconds_held_after_a_tls_refusal(server.socket.getsockname()[1], client_context)
        assert status.startswith(b"HTTP/1.1 426 "), status
        assert held < 4, f"held {held:.2f} s"
    finally:
        server.shutdown()
        thread.join(10)


BAD_FRAMES = {
    "invalid UTF-8": (encode_frame(1, b"\xff\xfe", mask=True), 1007),
    "reserved opcode": (b"\x83\x81\x00\x00\x00\x00x", 1002),  # opcode 3, a zero mask key
    "unmasked": (encode_frame(1, b"x"), 1002),
    "oversize": (encode_frame(2, b"x" * 2000, mask=True), 1009),
}


@pytest.mark.parametrize("bad", list(BAD_FRAMES))
def test_messages_before_a_protocol_error_are_answered_before_the_close(
    bad: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Three messages and a bad frame in one write: the three echoes go out, then the Close with the
    error's code (the Connection holds the error until the handler asks for a fourth message), as on the
    asyncio server. The handler's loop ends on the ConnectionClosedError: no ERROR logged for that."""
    frame, code = BAD_FRAMES[bad]
    with caplog.at_level("DEBUG", logger="wscodec"), sync_server(max_size=1000, ping_interval=None) as server:
        assert server.port is not None
        client = SilentClient(server.port)
        try:
            client.sock.sendall(b"".join(encode_frame(1, m, mask=True) for m in (b"one", b"two", b"three")) + frame)
            assert client.close_code() == code
            assert client.frames == [(1, b"one"), (1, b"two"), (1, b"three")]
            assert client.ended()
        finally:
            client.close()
        with connect(f"ws://127.0.0.1:{server.port}/") as ws:  # and the next client is served
            ws.send("fresh")
            assert ws.recv(timeout=10) == "fresh"
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
    assert "handler ended on" in caplog.text


def test_a_held_protocol_error_fails_the_connection_after_close_timeout_if_never_asked() -> None:
    """A handler that stops asking for messages: the Close for the held error still goes out, after
    close_timeout."""
    got = threading.Event()

    def handler(ws: WebSocket) -> None:
        ws.recv(timeout=10)
        got.set()
        ws.wait_closed(20)  # never asks again

    with sync_server(handler, close_timeout=1, ping_interval=None) as server:
        assert server.port is not None
        client = SilentClient(server.port)
        try:
            client.sock.sendall(encode_frame(1, b"one", mask=True) + encode_frame(1, b"two", mask=True)
                                + BAD_FRAMES["reserved opcode"][0])  # fmt: skip
            started = time.monotonic()
            assert client.close_code() == 1002
            assert got.is_set()
            assert 0.8 < time.monotonic() - started < 5
        finally:
            client.close()


def test_a_protocol_error_with_no_message_to_answer_fails_the_connection_at_once() -> None:
    """A handler that only sends and never took a message has no reply due: the peer's protocol error fails
    the connection at once (RFC 6455 section 7.1.7), as in the asyncio layer and websockets, not after
    close_timeout with the handler's data still going out."""
    sent = []

    def handler(ws: WebSocket) -> None:
        with contextlib.suppress(ConnectionClosed):
            for n in range(1000):
                ws.send(f"tick {n}")
                sent.append(n)
                time.sleep(0.01)

    with sync_server(handler, close_timeout=10, ping_interval=None) as server:
        assert server.port is not None
        client = SilentClient(server.port)
        try:
            client.sock.sendall(BAD_FRAMES["reserved opcode"][0])
            started = time.monotonic()
            assert client.close_code() == 1002
            assert time.monotonic() - started < 3
            assert all(opcode == 1 for opcode, _ in client.frames)
        finally:
            client.close()
        assert len(sent) < 500
        with connect(f"ws://127.0.0.1:{server.port}/") as ws:  # and the next client is served
            assert ws.recv(timeout=10) == "tick 0"


_THREADED_ECHO = """
import sys
from wscodec.sync import serve

def echo(ws):
    for message in ws:
        ws.send(message)

with serve(echo, "127.0.0.1", 0, open_timeout=2, ping_interval=None) as server:
    print(server.port, flush=True)
    server.serve_forever()
"""


@contextlib.contextmanager
def echo_server_process(log: list[str]) -> Iterator[tuple[int, int]]:
    """A threaded echo server in a process of its own, for limits set on it alone (``resource.prlimit``):
    its pid and port. Once it is stopped, what it wrote to stderr is appended to ``log``."""
    import subprocess

    env = dict(os.environ, PYTHONPATH=WSCODEC_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-c", _THREADED_ECHO], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        assert proc.stdout is not None
        yield proc.pid, int(proc.stdout.readline())
        assert proc.poll() is None, "the server died"
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=20)
        log.append(err.decode(errors="replace"))


def assert_echoes(port: int, text: str) -> None:
    with connect(f"ws://127.0.0.1:{port}/", ping_interval=None, open_timeout=10) as ws:
        ws.send(text)
        assert ws.recv(timeout=10) == text


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="resource.prlimit on another process: Linux")
def test_a_connection_no_thread_can_be_started_for_is_refused_and_the_server_goes_on() -> None:
    """Each connection holds a thread; when the system refuses one (here its address space is capped a
    few thread stacks above what the server uses), that connection is closed and serve_forever goes on:
    once the idle connections time out (open_timeout), a fresh client is served."""
    import resource

    idle: list[socket.socket] = []
    logs: list[str] = []
    try:
        with echo_server_process(logs) as (pid, port):
            with open(f"/proc/{pid}/status") as f:
                size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
            room = size + 6 * 8 * 1024 * 1024  # about six 8 MiB thread stacks more
            resource.prlimit(pid, resource.RLIMIT_AS, (room, room))
            refused = 0
            for _ in range(40):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                idle.append(sock)
                sock.settimeout(0.2)
                try:
                    refused += sock.recv(1) == b""  # closed at once: no thread for it
                except TimeoutError:
                    pass  # a thread waits for its request
                except ConnectionResetError:
                    refused += 1
            assert refused > 0
            for sock in idle:
                sock.close()
            time.sleep(2.5)  # the idle connections that got a thread time out (open_timeout 2 s)
            assert_echoes(port, "still serving")
    finally:
        for sock in idle:
            sock.close()
    log = logs[0]
    assert "refusing connections: can't start new thread" in log, log[-3000:]
    assert "accepting connections again, after refusing" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


def test_failing_a_connection_is_bounded_once_for_the_lock_and_the_close() -> None:
    """The keepalive fails a connection with ``_fail(code, reason, timeout)``: waiting for the send lock (a
    ``send()`` blocked on a peer that stopped reading holds it) and writing the Close share one bound."""
    with silent_peer(rcvbuf=4096) as port:
        ws = connect(f"ws://127.0.0.1:{port}/", ping_interval=None, compression=None)
        held = threading.Event()

        def hold_the_send_lock() -> None:
            with ws._send_lock:
                held.set()
                with contextlib.suppress(BlockingIOError):
                    for _ in range(10_000):  # fill the socket's buffers: the Close cannot go out either
                        ws.socket.send(b"\x82\x00" * 32768, socket.MSG_DONTWAIT)
                time.sleep(0.8)

        holder = threading.Thread(target=hold_the_send_lock, daemon=True)
        holder.start()
        assert held.wait(10)
        started = time.monotonic()
        ws._fail(1011, "keepalive ping timeout", 1.0)
        elapsed = time.monotonic() - started
        holder.join(10)
        assert elapsed < 1.4, elapsed  # one bound of 1 s (it was 0.8 s for the lock, then 1 s more)
        with pytest.raises(ConnectionClosed):
            ws.send("after")


# --------------------------------------------------------------------------- the server's bookkeeping


def test_server_connections_can_be_iterated_while_clients_come_and_go() -> None:
    """``connections`` is a snapshot taken under the server's lock: the broadcast loop
    ``for ws in server.connections: ws.send(...)`` raised "Set changed size during iteration" as handler
    threads added and removed connections (``send`` lets other threads run)."""

    def handler(ws: WebSocket) -> None:
        for _ in ws:
            pass

    with sync_server(handler, ping_interval=None, close_timeout=1) as server:
        url = f"ws://127.0.0.1:{server.port}/"
        stop = time.monotonic() + 1.5
        errors: list[BaseException] = []

        def churn() -> None:
            try:
                while time.monotonic() < stop:
                    with connect(url, ping_interval=None, close_timeout=1):
                        pass
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=churn) for _ in range(4)]
        for thread in threads:
            thread.start()
        sent = 0
        try:
            while time.monotonic() < stop:
                for ws in server.connections:
                    with contextlib.suppress(ConnectionClosed):
                        ws.send("tick")
                        sent += 1
                time.sleep(0.001)
        finally:
            for thread in threads:
                thread.join(10)
        assert not errors, errors
        assert sent > 0
        assert server.connections is not server.connections  # a new set each time, not the live one


def test_a_handler_ending_on_a_base_exception_closes_1011_and_frees_its_place() -> None:
    """``sys.exit()`` in a handler ends its thread: the connection is closed with 1011 and its
    ``max_connections`` place freed (it stayed open, and every later client got 503)."""

    def handler(ws: WebSocket) -> None:
        if ws.recv() == "exit":
            raise SystemExit(0)
        ws.send("served")

    with sync_server(handler, max_connections=1, ping_interval=None, close_timeout=1) as server:
        url = f"ws://127.0.0.1:{server.port}/"
        with connect(url, ping_interval=None, close_timeout=1) as ws:
            ws.send("exit")
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1011
        deadline = time.monotonic() + 5
        while server.connections and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not server.connections
        with connect(url, ping_interval=None, close_timeout=1) as ws:
            ws.send("again")
            assert ws.recv(timeout=5) == "served"


def test_a_closed_connection_frees_its_place_while_its_handler_cleans_up() -> None:
    """As in the asyncio server: a connection leaves ``connections`` (and its ``max_connections`` place is
    free) once it is closed, though its handler still runs; it held the place until the handler returned."""
    cleaning = threading.Event()
    release = threading.Event()

    def handler(ws: WebSocket) -> None:
        for message in ws:
            ws.send(message)
        cleaning.set()
        release.wait(10)

    with sync_server(handler, max_connections=1, ping_interval=None, close_timeout=1) as server:
        url = f"ws://127.0.0.1:{server.port}/"
        try:
            with connect(url, ping_interval=None, close_timeout=1):
                pass
            assert cleaning.wait(5)
            assert not server.connections
            with connect(url, ping_interval=None, close_timeout=1) as ws:
                ws.send("second")
                assert ws.recv(timeout=5) == "second"
        finally:
            release.set()


@pytest.mark.parametrize("payload", [bytearray(b"ab"), memoryview(bytearray(b"cd"))], ids=["bytearray", "memoryview"])
def test_ping_and_pong_take_any_bytes_like_payload(payload: Any) -> None:
    """As the asyncio ``ping()`` and websockets: a mutable buffer is copied (it raised "unhashable type"),
    so changing it after the call cannot unmatch its Pong."""
    with sync_server(ping_interval=None, close_timeout=1) as server:
        with connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None, close_timeout=1) as ws:
            answered = ws.ping(payload)
            payload[0:1] = b"z"
            assert answered.wait(5)
            ws.pong(payload)
            ws.send("still open")
            assert ws.recv(timeout=5) == "still open"
        with pytest.raises(TypeError, match="bytes-like"):
            connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None, close_timeout=1).ping(3)  # type: ignore[arg-type]


def test_an_exception_in_the_with_block_closes_with_1011() -> None:
    """websockets' ``__exit__`` closes with 1011 (internal error) when the block raised; 1000 otherwise."""
    codes: list[int | None] = []

    def handler(ws: WebSocket) -> None:
        with contextlib.suppress(ConnectionClosed):
            for _ in ws:
                pass
        codes.append(ws.close_code)

    with sync_server(handler, ping_interval=None, close_timeout=1) as server:
        url = f"ws://127.0.0.1:{server.port}/"
        with pytest.raises(ZeroDivisionError), connect(url, ping_interval=None, close_timeout=1):
            1 / 0  # noqa: B018
        with connect(url, ping_interval=None, close_timeout=1):
            pass
        deadline = time.monotonic() + 5
        while len(codes) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert codes == [1011, 1000]


@pytest.mark.parametrize("option", ["max_queue", "max_size"])
def test_a_limit_no_message_could_pass_is_refused_by_serve_and_connect(option: str) -> None:
    """``max_queue=0`` (or a negative ``max_size``) was taken, and every connection then failed right after
    its 101; it is refused where the server or client is made, as the other options are."""
    value = 0 if option == "max_queue" else -1
    with pytest.raises(ValueError, match=option):
        serve(sync_echo, "127.0.0.1", 0, **{option: value})
    with pytest.raises(ValueError, match=option):
        connect("ws://127.0.0.1:9/", **{option: value})


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX only")
def test_unix_serve_leaves_a_file_that_is_not_a_socket(tmp_path: Path) -> None:
    """Only a stale socket at the path is removed, as asyncio's ``create_unix_server`` does; a FIFO (or
    anything else) was unlinked and replaced."""
    from wscodec.sync import unix_serve

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError):
        unix_serve(sync_echo, str(fifo)).shutdown()
    assert fifo.is_fifo()
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as old:
        old.bind(str(stale))
    server = unix_serve(sync_echo, str(stale))
    server.shutdown()


def test_server_connections_leaves_out_a_closing_one() -> None:
    """``connections`` holds the open connections only, as websockets' threaded ``Server``: a broadcast loop
    over it met one waiting for its client's Close, whose ``send`` raised ConnectionClosedOK, and that ended
    the sending handler."""
    said: list[str] = []

    def handler(ws: WebSocket) -> None:
        for message in ws:
            if message == "bye":
                return  # the server's Close goes out; this client never answers it
            for member in server.connections:
                member.send(f"{message} to all")
            said.append(message)

    with sync_server(handler, ping_interval=None, close_timeout=3) as server:
        url = f"ws://127.0.0.1:{server.port}/"
        leaving = SilentClient(server.port)  # answers nothing, not even the server's Close
        try:
            leaving.sock.sendall(encode_frame(0x1, b"bye", mask=True))
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not any(ws.state == 2 for ws in server._live):
                time.sleep(0.01)
            assert any(ws.state == 2 for ws in server._live)  # CLOSING, for close_timeout
            with connect(url, ping_interval=None, close_timeout=1) as ws:
                ws.send("hello")
                assert ws.recv(timeout=5) == "hello to all"
            assert said == ["hello"]
        finally:
            leaving.sock.close()


# --------------------------------------------------------------------------- after close(), and out of descriptors


def test_messages_dropped_after_close_leave_no_hole() -> None:
    """max_queue=2, three messages unread, then close(): the third finds no room and is dropped. The
    application then reads one, which makes room, and a fourth arrives before the peer's Close: it is
    dropped too. Kept, it came right after the first two, with the third missing and nothing to say so."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)
        port = listener.getsockname()[1]
        result: list[WebSocket] = []
        opener = threading.Thread(
            target=lambda: result.append(
                connect(f"ws://127.0.0.1:{port}/", max_queue=2, ping_interval=None, close_timeout=5, compression=None)
            )
        )
        opener.start()
        peer, _ = listener.accept()
        with peer:
            peer.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = peer.recv(4096)
                assert chunk
                head += chunk
            peer.sendall(accept_response(head))
            opener.join(10)
            (ws,) = result
            for i in range(3):
                peer.sendall(encode_frame(1, f"msg-{i}".encode()))
            time.sleep(0.3)  # the client's reader has the third and waits for room (had it not, no matter: below)
            closer = threading.Thread(target=ws.close)
            closer.start()
            received = b""
            while len(received) < 2 or len(received) < 2 + (received[1] & 0x7F) + 4:  # the client's Close
                chunk = peer.recv(4096)
                assert chunk
                received += chunk
            assert received[0] == 0x88, received
            assert ws.recv(timeout=5) == "msg-0"  # room for one more
            peer.sendall(encode_frame(1, b"msg-3"))
            peer.sendall(encode_frame(8, struct.pack("!H", 1000)))
            closer.join(10)
            assert not closer.is_alive()
        got: list[Any] = ["msg-0"]
        with contextlib.suppress(ConnectionClosedOK):
            while len(got) < 5:
                got.append(ws.recv(timeout=5))
        # What the application got is the start of what was sent: msg-0 and msg-1, and msg-2 only if the
        # reader had not taken it yet when close() came (then msg-3 found no room).
        assert got in (["msg-0", "msg-1"], ["msg-0", "msg-1", "msg-2"]), got


@contextlib.contextmanager
def no_free_descriptor() -> Iterator[None]:
    """No new file descriptor for this process meanwhile (EMFILE), as when a flood of idle connections holds
    them all: the soft limit lowered to the lowest free number (the one the next descriptor would get)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest_free = os.open(os.devnull, os.O_RDONLY)
    os.close(lowest_free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.skipif(sys.platform == "win32", reason="resource: POSIX only")
def test_close_goes_out_while_no_descriptor_is_free() -> None:
    """close() waits for the socket to be writable without a descriptor of its own: out of descriptors,
    an epoll selector failed with EMFILE after the Close had left the Connection, which never went out
    (the client saw 1006, and the handler's close() raised)."""
    go = threading.Event()
    outcome: list[str] = []

    def handler(ws: WebSocket) -> None:
        ws.recv(timeout=10)
        go.wait(10)
        try:
            ws.close(1000, "done")
            outcome.append("closed")
        except Exception as exc:  # the assertion looks at it
            outcome.append(repr(exc))

    with sync_server(handler, ping_interval=None, close_timeout=2) as server:
        ws = connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None, close_timeout=2)
        ws.send("close me")
        time.sleep(0.2)
        with no_free_descriptor():
            go.set()
            with pytest.raises(ConnectionClosed) as caught:
                ws.recv(timeout=5)
            deadline = time.monotonic() + 5
            while not outcome and time.monotonic() < deadline:
                time.sleep(0.01)
        assert outcome == ["closed"]
        assert (caught.value.code, caught.value.reason) == (1000, "done")


@pytest.mark.skipif(sys.platform == "win32", reason="resource: POSIX only")
def test_the_keepalive_outlives_a_moment_without_free_descriptors() -> None:
    """The keepalive's Pings wait for the socket without a descriptor of their own: out of descriptors for
    a moment, its thread died with EMFILE, and the connection had no keepalive (no ping_timeout) left."""
    with sync_server(lambda ws: ws.recv(timeout=10), ping_interval=0.1, ping_timeout=2, close_timeout=2) as server:
        ws = connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None, close_timeout=2)
        deadline = time.monotonic() + 5
        while not server.connections and time.monotonic() < deadline:
            time.sleep(0.01)
        (server_side,) = server.connections
        with no_free_descriptor():
            time.sleep(0.5)  # several Pings due meanwhile
        server_side.latency = -1.0
        deadline = time.monotonic() + 5
        while server_side.latency < 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server_side.latency >= 0  # a Pong came back for a Ping sent after the shortage
        ws.close()
