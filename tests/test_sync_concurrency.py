"""The threaded API where its threads meet: a fragmented send() and everything else that wants the send lock,
calls that fail on their arguments, and the server's shutdown() and limits from unusual threads.

Each test reproduces a defect a review found over loopback (real sockets, every wait bounded): a slow
fragment iterator that starved the reader thread and the keepalive, a close() whose ValueError left the
queue dropping messages, a ping() whose ValueError kept its entry, shutdown() from a signal handler or a
handler, max_connections passed by handshakes running together, accept() spinning on EMFILE.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_sync import sync_server
from test_sync_reliability import assert_echoes, echo_server_process

import wscodec
from wscodec import ConcurrencyError, ConnectionClosed, ConnectionClosedError, ConnectionClosedOK, InvalidStatus
from wscodec.sync import WebSocket, connect, serve

WSCODEC_ROOT = str(Path(wscodec.__file__).resolve().parents[1])

pytestmark = pytest.mark.timeout(60)


def subprocess_env() -> dict[str, str]:
    """The environment of the scripts below, which import this wscodec. The scripts that send themselves
    SIGINT set its handler and unblock it first: a child inherits the signal mask of the thread that
    started it and an ignored disposition, and Python makes SIGINT a KeyboardInterrupt only if the parent
    left it at its default (once in a full run, they hung: a test before them had left SIGINT so)."""
    return dict(os.environ, PYTHONPATH=WSCODEC_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def run_script(script: str) -> str:
    """Run ``script`` in a Python of its own (signals and limits stay there); its output, once it exits 0."""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30, env=subprocess_env())
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    return result.stdout.decode()


# --------------------------------------------------------------------------- fragmented sends


def test_a_slow_fragment_iterator_holds_back_neither_recv_nor_the_keepalive() -> None:
    """The iterator is advanced without the send lock: while it sleeps, the reader thread reads (the
    client's message reaches recv(), the keepalive's Pongs are read) and the keepalive sends its Pings;
    the connection is not failed, and the message arrives whole."""
    received: list[tuple[str | bytes, float]] = []
    outcome: dict[str, Any] = {}

    def slow_chunks() -> Iterator[str]:
        for index in range(6):
            time.sleep(0.3)
            yield f"c{index};"

    def handler(ws: WebSocket) -> None:
        reader = threading.Thread(target=lambda: received.append((ws.recv(timeout=10), time.monotonic())))
        reader.start()
        try:
            ws.send(slow_chunks())
            outcome["sent"] = time.monotonic()
        except Exception as exc:
            outcome["error"] = exc
        reader.join(10)
        ws.recv(timeout=10)  # until the client closes

    with (
        sync_server(handler, ping_interval=0.4, ping_timeout=1.0) as server,
        connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None) as ws,
    ):
        ws.send("hello from the client")
        assert ws.recv(timeout=10) == "c0;c1;c2;c3;c4;c5;"
        assert ws.latency == 0.0  # (the client pinged nothing: the Pings were the server's)
    assert "error" not in outcome, outcome
    assert received and received[0][0] == "hello from the client"
    assert received[0][1] < outcome["sent"] - 0.5, "recv() waited for the fragmented send to end"


def test_other_sends_wait_for_the_end_of_a_fragmented_message_and_pings_go_between() -> None:
    """Frames of another message may not go between a message's fragments: a send() from another thread
    waits for the end of the fragmented one; a ping() does not wait (control frames may go between)."""
    started = threading.Event()
    ping_done = threading.Event()

    def chunks() -> Iterator[bytes]:
        yield b"first "
        started.set()
        assert ping_done.wait(5)
        time.sleep(0.2)  # the other send() waits meanwhile
        yield b"second"

    def handler(ws: WebSocket) -> None:
        other = threading.Thread(target=lambda: (started.wait(5), ws.send(b"other")))
        pinger = threading.Thread(target=lambda: (started.wait(5), ws.ping(b"between"), ping_done.set()))
        other.start()
        pinger.start()
        ws.send(chunks())
        other.join(10)
        pinger.join(10)
        ws.recv(timeout=10)

    with (
        sync_server(handler, ping_interval=None) as server,
        connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None) as ws,
    ):
        assert ws.recv(timeout=10) == b"first second"
        assert ws.recv(timeout=10) == b"other"
    assert ping_done.is_set()


def test_send_from_the_fragment_iterator_itself_raises_concurrency_error() -> None:
    """The iterator runs in the sending thread: a send() from it would wait for its own message's end."""
    errors: list[BaseException] = []

    def handler(ws: WebSocket) -> None:
        def chunks() -> Iterator[str]:
            yield "a"
            try:
                ws.send("inside")
            except ConcurrencyError as exc:
                errors.append(exc)
            yield "b"

        ws.send(chunks())
        ws.recv(timeout=10)

    with (
        sync_server(handler, ping_interval=None) as server,
        connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None) as ws,
    ):
        assert ws.recv(timeout=10) == "ab"
    assert len(errors) == 1


def test_recv_from_a_second_thread_while_one_waits_raises_concurrency_error() -> None:
    """As websockets' recv(): two threads waiting for the next message is a ConcurrencyError for the second
    (which of them a message would reach is chance); the first still gets it, and recv() works after."""
    with sync_server() as server, connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None) as ws:
        got: list[Any] = []
        first = threading.Thread(target=lambda: got.append(ws.recv(timeout=10)))
        first.start()
        deadline = time.monotonic() + 5
        while not ws._messages._getting:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(ConcurrencyError):
            ws.recv(timeout=1)
        ws.send("one")
        first.join(10)
        assert got == ["one"]
        ws.send("two")
        assert ws.recv(timeout=10) == "two"
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.1)
        ws.send("three")
        assert ws.recv(timeout=10) == "three"  # a timed-out recv() leaves no waiter behind


def test_close_during_a_fragmented_send_fails_the_connection_1011() -> None:
    """A Close between two fragments would end the message short of its end, unnoticed by the peer (a clean
    1000 and no message): close() fails the connection with 1011 instead, as websockets does."""
    outcome: dict[str, Any] = {}
    middle = threading.Event()

    def chunks() -> Iterator[bytes]:
        yield b"first "
        yield b"second "
        middle.set()  # (a fragment goes out once the next is known: here "first " is out)
        time.sleep(0.5)
        yield b"third"

    def handler(ws: WebSocket) -> None:
        closer = threading.Thread(target=lambda: (middle.wait(5), ws.close()))
        closer.start()
        try:
            ws.send(chunks())
        except ConnectionClosed as exc:
            outcome["sender"] = exc.code
        closer.join(10)

    with sync_server(handler, ping_interval=None) as server:
        ws = connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None)
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=10)
        assert (info.value.code, info.value.reason) == (1011, "close during fragmented message")
        ws.close()
    assert outcome == {"sender": 1011}


def test_close_before_the_first_fragment_is_out_is_a_normal_close() -> None:
    """While the iterator has yielded nothing yet, no part of the message is out: close() closes with its
    own code (the sender gets ConnectionClosedOK), not the 1011 of a message cut short."""
    outcome: dict[str, Any] = {}

    def slow_start() -> Iterator[bytes]:
        time.sleep(0.5)
        yield b"never sent"

    def handler(ws: WebSocket) -> None:
        closer = threading.Timer(0.1, ws.close)
        closer.start()
        try:
            ws.send(slow_start())
        except ConnectionClosed as exc:
            outcome["sender"] = (type(exc).__name__, exc.code)
        closer.join(10)

    with sync_server(handler, ping_interval=None) as server:
        ws = connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None)
        with pytest.raises(ConnectionClosedOK) as info:
            ws.recv(timeout=10)
        assert info.value.code == 1000
        ws.close()
    assert outcome == {"sender": ("ConnectionClosedOK", 1000)}


# --------------------------------------------------------------------------- arguments refused first


@pytest.mark.parametrize(("code", "reason"), [(999, ""), (1000, "x" * 124)])
def test_close_with_invalid_arguments_changes_nothing(code: int, reason: str) -> None:
    """A ValueError from close() leaves the connection as it was: open, and every message the peer then
    sends (more than max_queue) is received, none dropped."""

    def handler(ws: WebSocket) -> None:
        assert ws.recv(timeout=10) == "go"
        for index in range(40):
            ws.send(str(index))
        ws.recv(timeout=10)

    with (
        sync_server(handler, ping_interval=None) as server,
        connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None, max_queue=4) as ws,
    ):
        with pytest.raises(ValueError):
            ws.close(code, reason)
        assert ws.state == 1  # OPEN
        ws.send("go")
        assert [ws.recv(timeout=10) for _ in range(40)] == [str(index) for index in range(40)]


def test_ping_with_a_payload_too_long_keeps_nothing() -> None:
    """Each ping() refused on its payload raises the same ValueError (not a ConcurrencyError for a Ping
    that never went out), and one with a valid payload is answered."""
    with sync_server(ping_interval=None) as server, connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None) as ws:
        for _ in range(3):
            with pytest.raises(ValueError, match="125"):
                ws.ping(b"x" * 126)
        assert ws.ping(b"x" * 125).wait(10)
        assert ws.state == 1


# --------------------------------------------------------------------------- the server's own threads


_SHUTDOWN_FROM_A_SIGNAL = """
import os, signal, sys, threading, time
from wscodec.sync import serve

server = serve(lambda ws: ws.recv(timeout=5), "127.0.0.1", 0, ping_interval=None, close_timeout=2)
signal.signal(signal.SIGUSR1, lambda signum, frame: server.shutdown())
threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGUSR1)).start()
started = time.monotonic()
server.serve_forever()
print(f"{time.monotonic() - started:.2f}", flush=True)
"""


_SHUTDOWN_FROM_A_SIGNAL_UNDER_THE_LOCK = """
import os, signal, socket, threading, time
from wscodec.sync import serve

server = serve(lambda ws: ws.recv(timeout=5), "127.0.0.1", 0, ping_interval=None, close_timeout=1)
lock = server._lock

class SignalUnderTheLock:
    armed = False

    def __enter__(self):
        lock.acquire()
        if SignalUnderTheLock.armed and threading.current_thread() is threading.main_thread():
            SignalUnderTheLock.armed = False
            os.kill(os.getpid(), signal.SIGUSR1)  # the handler runs now, this thread holding the lock
        return self

    def __exit__(self, *exc_info):
        lock.release()

server._lock = SignalUnderTheLock()
signal.signal(signal.SIGUSR1, lambda signum, frame: server.shutdown())

def client():
    time.sleep(0.3)
    SignalUnderTheLock.armed = True
    socket.create_connection(("127.0.0.1", server.port), timeout=3).close()

threading.Thread(target=client, daemon=True).start()
started = time.monotonic()
server.serve_forever()
print(f"{time.monotonic() - started:.2f}", flush=True)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="SIGUSR1: POSIX")
def test_shutdown_from_a_signal_handler_while_serve_forever_holds_its_lock() -> None:
    """The signal lands while serve_forever's thread holds the server's lock (accepting a connection): the
    handler's shutdown() must not take that lock in that thread; serve_forever finishes it and returns."""
    output = run_script(_SHUTDOWN_FROM_A_SIGNAL_UNDER_THE_LOCK)
    assert float(output) < 3.0


_SERVE_AGAIN_AFTER_CTRL_C = """
import os, signal, threading
from wscodec.sync import connect, serve

signal.signal(signal.SIGINT, signal.default_int_handler)  # (see subprocess_env)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

def echo(ws):
    for message in ws:
        ws.send(message)

server = serve(echo, "127.0.0.1", 0, ping_interval=None, close_timeout=1)
threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
try:
    server.serve_forever()
except KeyboardInterrupt:
    print("interrupted", flush=True)
thread = threading.Thread(target=server.serve_forever, daemon=True)
thread.start()
with connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None, open_timeout=5) as ws:
    ws.send("served again")
    print(ws.recv(timeout=5), flush=True)
server.shutdown()
thread.join(5)
print("stopped" if not thread.is_alive() else "still serving", flush=True)
"""


_SIGNAL_TO_ANOTHER_THREAD = """
import signal, threading, time
from wscodec.sync import serve

signal.signal(signal.SIGINT, signal.default_int_handler)  # (see subprocess_env)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

server = serve(lambda ws: None, "127.0.0.1", 0, ping_interval=None, close_timeout=1)

def other_thread():
    time.sleep(0.3)
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # to this thread, not to serve_forever's

threading.Thread(target=other_thread, daemon=True).start()
started = time.monotonic()
try:
    server.serve_forever()
except KeyboardInterrupt:
    print(f"{time.monotonic() - started:.2f}", flush=True)
server.shutdown()
"""


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="signal.pthread_kill: POSIX")
def test_ctrl_c_delivered_to_another_thread_still_interrupts_serve_forever() -> None:
    """The kernel may hand a process's signal to any of its threads, and Python runs the handler in the
    main thread only, once it wakes: serve_forever's select() wakes up twice a second for it (it slept
    until the next connection, and Ctrl-C did nothing; a test sending SIGINT from a timer thread hung)."""
    output = run_script(_SIGNAL_TO_ANOTHER_THREAD)
    assert float(output) < 2.0


def test_serve_forever_interrupted_by_ctrl_c_may_be_called_again() -> None:
    """A KeyboardInterrupt ends serve_forever() but not the server (as socketserver's): called again, it
    serves, and shutdown() then stops it."""
    output = run_script(_SERVE_AGAIN_AFTER_CTRL_C)
    assert output.split() == ["interrupted", "served", "again", "stopped"]


_SHUTDOWN_THEN_EXIT_FROM_A_SIGNAL = """
import signal, threading, time
from wscodec.sync import connect, serve

def handler(ws):
    for message in ws:
        pass

server = serve(handler, "127.0.0.1", 0, close_timeout=2)
codes = []

def client():
    ws = connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None)
    for message in ws:
        pass
    codes.append(ws.close_code)

thread = threading.Thread(target=client, daemon=True)
thread.start()

def on_alarm(signum, frame):
    server.shutdown()
    raise SystemExit(0)

signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, 0.5)
try:
    server.serve_forever()
except SystemExit:
    pass
thread.join(5)
print(codes, server.socket.fileno(), flush=True)
server.serve_forever()  # ended: returns at once
"""


@pytest.mark.skipif(not hasattr(signal, "SIGALRM"), reason="SIGALRM: POSIX")
def test_a_signal_handlers_shutdown_is_done_when_serve_forever_ends_on_its_exception() -> None:
    """The handler calls shutdown(), then raises SystemExit: serve_forever still closes the connections
    (1001) and the listening socket on its way out, and the server is over."""
    output = run_script(_SHUTDOWN_THEN_EXIT_FROM_A_SIGNAL)
    assert output.split() == ["[1001]", "-1"]


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="SIGUSR1: POSIX")
def test_shutdown_from_a_signal_handler_ends_serve_forever() -> None:
    """The handler runs in serve_forever's own thread, inside its select(): shutdown() must not wait for
    that thread, nor close what the select() waits on, or serve_forever never returns."""
    output = run_script(_SHUTDOWN_FROM_A_SIGNAL)
    assert float(output) < 2.0  # the signal came at 0.3 s; close_timeout (2 s) was not waited


def test_shutdown_from_a_handler_returns_and_ends_serve_forever() -> None:
    """A handler's shutdown() closes its own connection (1001) and the others, and returns normally: it
    does not join its own thread."""
    errors: list[BaseException] = []
    returned = threading.Event()
    server = serve(lambda ws: None, "127.0.0.1", 0, ping_interval=None, close_timeout=2)

    def handler(ws: WebSocket) -> None:
        assert ws.recv(timeout=10) == "stop"
        try:
            server.shutdown()
            returned.set()
        except BaseException as exc:
            errors.append(exc)

    server.handler = handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None) as ws:
            ws.send("stop")
            with pytest.raises(ConnectionClosedOK) as info:
                ws.recv(timeout=10)
            assert info.value.code == 1001
        assert returned.wait(10), errors
        thread.join(10)
        assert not thread.is_alive()
    finally:
        server.shutdown()
        thread.join(10)


def _admitted(port: int, clients: int) -> list[str]:
    """Open ``clients`` connections at once; what each got: "open" or the HTTP status it was refused with."""
    results: list[str] = []
    opened: list[WebSocket] = []

    def client() -> None:
        try:
            opened.append(connect(f"ws://127.0.0.1:{port}/", ping_interval=None, open_timeout=10))
            results.append("open")
        except InvalidStatus as exc:
            results.append(str(exc.response.status_code))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    for ws in opened:
        ws.close()
    return sorted(results)


def test_max_connections_holds_for_handshakes_running_together() -> None:
    """Three handshakes wait in process_request together under max_connections=1: one opens, two get 503."""
    hold = threading.Event()

    def slow_auth(connection: Any, request: Any) -> None:
        time.sleep(0.5)

    with sync_server(
        lambda ws: hold.wait(10), max_connections=1, process_request=slow_auth, ping_interval=None, close_timeout=1
    ) as server:
        try:
            assert _admitted(server.port, 3) == ["503", "503", "open"]
        finally:
            hold.set()


async def test_max_connections_holds_for_asyncio_handshakes_waiting_in_process_response() -> None:
    """The asyncio server: process_response may await, between the max_connections check and the open."""
    from wscodec.asyncio import serve as async_serve

    async def slow_response(connection: Any, request: Any, response: Any) -> None:
        await asyncio.sleep(0.5)

    hold = asyncio.Event()

    async def handler(ws: Any) -> None:
        await asyncio.wait_for(hold.wait(), 10)

    async with async_serve(
        handler, "127.0.0.1", 0, max_connections=1, process_response=slow_response, ping_interval=None, close_timeout=1
    ) as server:
        assert server.port is not None
        results = await asyncio.to_thread(_admitted, server.port, 3)
        hold.set()
    assert results == ["503", "503", "open"]


def _serving_descriptors(pid: int) -> list[str]:
    """What the server process has open, once serve_forever() runs (its selector is open: the port is
    printed before it is made)."""
    deadline = time.monotonic() + 10
    while True:
        targets = []
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(FileNotFoundError):  # (closed meanwhile)
                targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        if any("eventpoll" in target for target in targets):
            return targets
        assert time.monotonic() < deadline, targets
        time.sleep(0.01)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="resource.prlimit and /proc: Linux")
def test_accept_out_of_file_descriptors_backs_off_and_serving_resumes() -> None:
    """accept() failing with EMFILE leaves the connection in the backlog and the socket readable: the
    server waits a second between tries instead of spinning, and serves again once descriptors are free."""
    waiting: list[socket.socket] = []
    logs: list[str] = []
    try:
        with echo_server_process(logs) as (pid, port):
            in_use = len(_serving_descriptors(pid))
            limits = resource.prlimit(pid, resource.RLIMIT_NOFILE)
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use, limits[1]))  # no descriptor to spare
            waiting.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            time.sleep(0.3)
            before = _cpu_seconds(pid)
            time.sleep(2.0)
            assert _cpu_seconds(pid) - before < 0.5, "serve_forever spins on accept()"
            resource.prlimit(pid, resource.RLIMIT_NOFILE, limits)
            assert_echoes(port, "served again")
    finally:
        for sock in waiting:
            sock.close()
    log = logs[0]
    assert "Too many open files" in log, log[-2000:]
    assert log.count("accept() failed") <= 5, log[-2000:]  # about one a second, not one per spin
