"""wscodec.workers: worker processes on one port under a supervisor, with the in-process broker and with
Redis (one suite, two brokers). Servers run as real subprocesses (tests/_scaleout_app.py); clients are
wscodec's asyncio client over loopback; Redis is a real redis-server (tests/_redis_server.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _redis_server import RedisServer, redis_server_path
from _silent_client import SilentClient

import wscodec
from wscodec import ConnectionClosed
from wscodec.asyncio import WebSocket, connect

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; SO_REUSEPORT spreads only on Linux"),
]

APP = str(Path(__file__).with_name("_scaleout_app.py"))
WSCODEC_ROOT = str(Path(wscodec.__file__).resolve().parents[1])


def children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (from /proc)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def app_env() -> dict[str, str]:
    """The environment to run tests/_scaleout_app.py in, on the wscodec under test."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = WSCODEC_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


class App:
    """``python tests/_scaleout_app.py ARGS`` until it prints its address; stderr goes to a file.
    ``new_session``: in a process group of its own (its workers with it), as a terminal's Ctrl-C reaches it.
    ``cli``: ``python -m wscodec serve --port 0 ARGS`` (an echo server) instead."""

    def __init__(self, tmp: Path, *args: str, new_session: bool = False, cli: bool = False) -> None:
        self.log = tmp / f"app-{time.monotonic_ns()}.log"
        self._err = open(self.log, "wb")  # noqa: SIM115 (closed in stop)
        program = ["-m", "wscodec", "serve", "--port", "0"] if cli else [APP]
        self.proc = subprocess.Popen(
            [sys.executable, *program, *args],
            stdout=subprocess.PIPE,
            stderr=self._err,
            env=app_env(),
            start_new_session=new_session,
        )
        self.port = self._wait_listening(60.0)

    def _wait_listening(self, timeout: float) -> int:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline and b"\n" not in buf:
                if sel.select(max(0.0, deadline - time.monotonic())):
                    chunk = os.read(self.proc.stdout.fileno(), 4096)
                    if not chunk:
                        break
                    buf += chunk
        line = buf.split(b"\n", 1)[0].decode()
        if not line.startswith("listening on ws://"):
            self.stop()
            pytest.fail(f"server did not start: {buf!r}\n{self.stderr()[-3000:]}")
        return int(line.rsplit(":", 1)[1])

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    @property
    def workers(self) -> set[int]:
        return children(self.proc.pid)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                for pid in self.workers:
                    os.kill(pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._err.close()
        return self.proc.returncode


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[list[App]]:
    started: list[App] = []
    try:
        yield started
    finally:
        for app in started:
            app.stop()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(redis_server_path())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["memory", "redis"])
def broker(request: pytest.FixtureRequest) -> str | None:
    if request.param == "memory":
        return None
    redis: RedisServer = request.getfixturevalue("redis_server")
    return redis.url


def start(apps: list[App], tmp: Path, *args: str, new_session: bool = False, cli: bool = False) -> App:
    app = App(tmp, *args, new_session=new_session, cli=cli)
    apps.append(app)
    return app


WORKER_IDS: dict[int, str] = {}  # pid -> what wscodec.workers.worker_id() said in that process


async def client(port: int) -> tuple[WebSocket, int]:
    ws = await connect(f"ws://127.0.0.1:{port}/", compression=None)
    hello = await asyncio.wait_for(ws.recv(), 20)
    assert isinstance(hello, str) and hello.startswith("hello ")
    _hello, pid, ident = hello.split()
    WORKER_IDS[int(pid)] = ident
    return ws, int(pid)


async def clients_on_every_worker(app: App, count: int) -> list[tuple[WebSocket, int]]:
    """``count`` clients, more if needed (bounded) until every worker of ``app`` has at least one."""
    out = [await client(app.port) for _ in range(count)]
    workers = app.workers
    for _ in range(64):
        if {pid for _ws, pid in out} >= workers:
            break
        out.append(await client(app.port))
    assert {pid for _ws, pid in out} == workers, "SO_REUSEPORT should spread connections over every worker"
    assert {WORKER_IDS[pid] for pid in workers} <= {str(i) for i in range(1, len(workers) + 1)}
    return out


async def collect(ws: WebSocket, expected: int, quiet: float = 0.3) -> list[str]:
    """``expected`` messages, then check that nothing more arrives for ``quiet`` seconds."""
    got = [str(await asyncio.wait_for(ws.recv(), 20)) for _ in range(expected)]
    with pytest.raises(asyncio.TimeoutError):
        extra = await asyncio.wait_for(ws.recv(), quiet)
        got.append(f"UNEXPECTED {extra!r}")
    return got


async def check_delivery(members: list[tuple[WebSocket, int]], shared: bool, per_sender: int = 10) -> None:
    """One sender per worker sends numbered messages; every member in the sender's scope (every member
    with a shared broker, the members of the same worker with the in-process one) gets them all, in order."""
    senders: dict[int, WebSocket] = {}
    for ws, pid in members:
        senders.setdefault(pid, ws)
    for pid, ws in senders.items():
        for i in range(per_sender):
            await ws.send(f"{pid}:{i}")
    for ws, pid in members:
        scope = list(senders) if shared else [pid]
        got = await collect(ws, per_sender * len(scope))
        for sender in scope:
            assert [m for m in got if m.startswith(f"{sender}:")] == [f"{sender}:{i}" for i in range(per_sender)]
        assert len(got) == per_sender * len(scope), got


async def close_all(members: list[tuple[WebSocket, int]]) -> None:
    await asyncio.gather(*(ws.close() for ws, _pid in members), return_exceptions=True)


# --------------------------------------------------------------------------- the suite, two brokers


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_every_message_reaches_every_subscriber(
    apps: list[App], tmp_path: Path, broker: str | None, loop: str
) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    args = ["--workers", "2", "--loop", loop] + (["--broker", broker] if broker else [])
    servers = [start(apps, tmp_path, *args)]
    if broker:  # two server instances (two ports, as two machines would be) on one Redis
        servers.append(start(apps, tmp_path, *args))
    members = []
    for app in servers:
        assert len(app.workers) == 2
        members += await clients_on_every_worker(app, 8)
    assert len({pid for _ws, pid in members}) == 2 * len(servers)
    await check_delivery(members, shared=broker is not None)
    await close_all(members)


async def test_killed_worker_is_replaced_and_clients_reconnect(
    apps: list[App], tmp_path: Path, broker: str | None
) -> None:
    app = start(apps, tmp_path, "--workers", "2", *(["--broker", broker] if broker else []))
    members = await clients_on_every_worker(app, 8)
    victim = members[0][1]
    os.kill(victim, signal.SIGKILL)
    orphans = [ws for ws, pid in members if pid == victim]
    for ws in orphans:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 20)
        assert ws.close_code == 1006
    survivors = [(ws, pid) for ws, pid in members if pid != victim]
    deadline = time.monotonic() + 60
    while len(app.workers - {victim}) < 2 or victim in app.workers:
        assert time.monotonic() < deadline, "the killed worker was not replaced"
        await asyncio.sleep(0.05)
    # the orphans reconnect; the port is served by both workers again, the new one included
    members = survivors + await clients_on_every_worker(app, len(orphans))
    assert victim not in {pid for _ws, pid in members}
    await check_delivery(members, shared=broker is not None)
    log = app.stderr()
    assert "killed by signal 9" in log and "restarting it" in log
    # per-worker logging identity: each line names its process
    assert "supervisor[" in log and "worker-1[" in log and "worker-2[" in log
    assert app.proc.poll() is None
    await close_all(members)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_graceful_shutdown_closes_every_client_with_1001(
    apps: list[App], tmp_path: Path, broker: str | None, sig: int
) -> None:
    app = start(apps, tmp_path, "--workers", "2", *(["--broker", broker] if broker else []))
    members = await clients_on_every_worker(app, 6)
    workers = app.workers
    started = time.monotonic()
    app.proc.send_signal(sig)
    for ws, _pid in members:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 20)
        assert ws.close_code == 1001
    assert await asyncio.get_running_loop().run_in_executor(None, app.proc.wait, 30) == 0
    assert time.monotonic() - started < 3 + 5 + 10  # close_timeout 3 s + the supervisor's grace, generously
    assert not any(os.path.exists(f"/proc/{pid}") and pid in children(app.proc.pid) for pid in workers)
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# --------------------------------------------------------------------------- Redis faults, supervisor policy


async def test_redis_stopped_and_restarted_mid_run(apps: list[App], tmp_path: Path, redis_server: RedisServer) -> None:
    app = start(apps, tmp_path, "--workers", "2", "--broker", redis_server.url)
    members = await clients_on_every_worker(app, 8)
    await check_delivery(members, shared=True, per_sender=3)
    redis_server.stop()
    sender = members[0][0]
    deadline = time.monotonic() + 30
    while True:  # once the outage is seen, publishes fail fast (the sender is told), connections stay up
        await sender.send("during the outage")
        with contextlib.suppress(asyncio.TimeoutError):  # queued as Redis went away: dropped, no answer
            if await asyncio.wait_for(sender.recv(), 1.0) == "unavailable":
                break
        assert time.monotonic() < deadline
    for ws, _pid in members:
        await asyncio.wait_for(ws.ping(), 10)
        assert ws.ready_state == WebSocket.OPEN
    redis_server.start()
    # each worker resubscribes on its own back-off: probe until a message reaches every member
    received = [0] * len(members)

    async def drain(index: int, ws: WebSocket) -> None:
        while True:
            message = await ws.recv()
            if message == "probe":
                received[index] += 1

    readers = [asyncio.ensure_future(drain(i, ws)) for i, (ws, _pid) in enumerate(members)]
    try:
        deadline = time.monotonic() + 60
        while not all(received):
            assert time.monotonic() < deadline, f"delivery did not resume: {received}"
            await sender.send("probe")
            await asyncio.sleep(0.2)
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    await asyncio.sleep(0.5)  # let the last probes land, then start from a clean slate
    for ws, _pid in members:
        while True:
            try:
                await asyncio.wait_for(ws.recv(), 0.3)
            except asyncio.TimeoutError:
                break
    await check_delivery(members, shared=True, per_sender=5)
    log = app.stderr()
    assert log.count("publishes fail until it is back") == 2  # one WARNING per worker, not one per attempt
    assert log.count("is back after") == 2
    await close_all(members)


def test_worker_that_keeps_dying_makes_the_supervisor_give_up(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=WSCODEC_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(
        [sys.executable, APP, "--workers", "2", "--crash"], capture_output=True, env=env, timeout=120, check=False
    )
    err = result.stderr.decode(errors="replace")
    assert result.returncode == 1, err[-3000:]
    assert "giving up" in err
    assert "exited with status 3" in err
    assert "restarting it in 0.5 s" in err  # the back-off
    # max_failures=2: the first death, then two quick ones after a restart each; the third is not restarted.
    for index in (1, 2):
        assert err.count(f"worker-{index} (pid") <= 3, err[-3000:]
    assert "died 3 times in a row: giving up" in err, err[-3000:]


async def test_inherited_socket_when_reuse_port_is_not_used(apps: list[App], tmp_path: Path) -> None:
    app = start(apps, tmp_path, "--workers", "2", "--share", "inherit")
    assert len(app.workers) == 2
    members = [await client(app.port) for _ in range(6)]
    first = members[0][1]
    os.kill(first, signal.SIGKILL)  # the shared socket outlives a worker: the other one still accepts
    others = [(ws, pid) for ws, pid in members if pid != first]
    more = [await client(app.port) for _ in range(4)]
    assert all(pid != first for _ws, pid in more)
    await close_all(others + more)
    assert app.stop() == 0


def test_cli_serve_workers_and_broker(tmp_path: Path, redis_server: RedisServer) -> None:
    """``python -m wscodec serve --chat --workers 2 --broker URL``: one room over both workers, the page."""
    import urllib.request

    from websockets.sync.client import connect as sync_connect

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = WSCODEC_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    err = open(tmp_path / "cli.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "wscodec", "serve", "--chat", "--port", "0", "--workers", "2",
         "--broker", redis_server.url],
        stdout=subprocess.PIPE, stderr=err, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("listening on ws://"), (tmp_path / "cli.log").read_text()
        port = int(line.rsplit(":", 1)[1])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            assert b"new WebSocket(" in page.read()
        assert len(children(proc.pid)) == 2
        with contextlib.ExitStack() as stack:
            conns = [stack.enter_context(sync_connect(f"ws://127.0.0.1:{port}/", open_timeout=10)) for _ in range(8)]
            # a client joins the room just after its handshake: repeat the line until everyone has it
            heard = [False] * len(conns)
            deadline = time.monotonic() + 30
            while not all(heard):
                assert time.monotonic() < deadline, heard
                conns[0].send("hello room")
                for i, ws in enumerate(conns):
                    with contextlib.suppress(TimeoutError):
                        while True:
                            assert ws.recv(timeout=0.05) == "hello room"
                            heard[i] = True
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()  # type: ignore[union-attr]
        err.close()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--broker", "redis://127.0.0.1:notaport/0"], "invalid Redis URL"),
        (["--broker", "kafka://127.0.0.1:9092"], "unsupported broker URL"),
        (["--workers", "-1"], "-1 is out of range: a number of workers"),
    ],
)
def test_cli_bad_options_are_clear_errors(args: list[str], words: str) -> None:
    pytest.importorskip("redis")
    env = dict(os.environ, PYTHONPATH=WSCODEC_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(
        [sys.executable, "-m", "wscodec", "serve", "--chat", "--port", "0", *args],
        capture_output=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert words in result.stderr.decode()
    assert b"listening" not in result.stdout


async def test_workers_stop_when_the_supervisor_is_killed(apps: list[App], tmp_path: Path) -> None:
    app = start(apps, tmp_path, "--workers", "2")
    members = await clients_on_every_worker(app, 6)
    workers = app.workers
    app.proc.kill()  # SIGKILL: nothing is forwarded; each worker notices its parent is gone
    for ws, _pid in members:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 30)
        assert ws.close_code == 1001
    deadline = time.monotonic() + 30
    while any(os.path.exists(f"/proc/{pid}") for pid in workers):
        assert time.monotonic() < deadline, "orphaned workers did not exit"
        await asyncio.sleep(0.05)


def test_bad_options_fail_before_any_fork() -> None:
    from wscodec.workers import run

    async def handler(ws: WebSocket) -> None:
        pass

    before = children(os.getpid())
    with pytest.raises(ValueError, match="slow_consumer"):
        run(handler, "127.0.0.1", 0, workers=2, slow_consumer="sometimes")
    with pytest.raises(ValueError, match="unsupported broker URL"):
        run(handler, "127.0.0.1", 0, workers=2, broker="amqp://127.0.0.1")
    with pytest.raises(TypeError):
        run(handler, "127.0.0.1", 0, workers=2, no_such_option=1)
    with pytest.raises(ValueError, match="share"):
        run(handler, "127.0.0.1", 0, workers=2, share="sometimes")
    with socket.socket() as sock, pytest.raises(TypeError, match="sock"):  # each worker binds or inherits
        run(handler, "127.0.0.1", 0, workers=2, sock=sock)
    assert children(os.getpid()) == before


async def test_workers_0_means_one_per_core(apps: list[App], tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    app = start(apps, tmp_path, "--workers", "0")
    assert len(app.workers) == (cores if cores > 1 else 0)  # one core: served in the process itself
    ws, _pid = await client(app.port)
    await ws.close()


# --------------------------------------------------------------------------- stop signals, a port in use

CLOSE_TIMEOUT = 3.0  # tests/_scaleout_app.py's close_timeout; the supervisor kills a worker 5 s after it

_SIGNALS_GIVEN_BACK = """
import os, signal, socket, sys, threading, time
from wscodec.workers import run

signal.signal(signal.SIGINT, signal.default_int_handler)  # a child may inherit it ignored, or blocked
signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT, signal.SIGTERM])
factory = None
if sys.argv[1] == "uvloop":
    import uvloop
    factory = uvloop.new_event_loop

async def handler(ws):
    pass

def given_back(when):
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, (when, signal.getsignal(signal.SIGINT))
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, (when, signal.getsignal(signal.SIGTERM))

def ready(address, port):
    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()

assert run(handler, "127.0.0.1", 0, workers=1, ready=ready, loop_factory=factory) == 0
given_back("after a stop")
with socket.socket() as taken:
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        run(handler, "127.0.0.1", taken.getsockname()[1], workers=1, loop_factory=factory)
    except OSError:
        pass
given_back("after a port in use")
try:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(10)
except KeyboardInterrupt:
    print("interrupted")
"""


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_run_in_process_gives_the_stop_signals_back(loop: str) -> None:
    """``workers=1`` handles SIGINT and SIGTERM on the caller's thread; once run() returns, Ctrl-C is a
    KeyboardInterrupt again. uvloop gives a signal back only when its handler is removed, not on close."""
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    result = subprocess.run(
        [sys.executable, "-c", _SIGNALS_GIVEN_BACK, loop], capture_output=True, env=app_env(), timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    assert result.stdout.decode().split() == ["interrupted"]


def test_ctrl_c_to_the_process_group_stops_every_worker_without_restarts(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the whole group): the workers exit on their own signal, in the same select() round
    that wakes the supervisor; it must take their exits for the stop, not for deaths to restart."""
    for _ in range(10):
        app = App(tmp_path, "--workers", "4", new_session=True)
        try:
            started = time.monotonic()
            os.killpg(app.proc.pid, signal.SIGINT)
            assert app.proc.wait(30) == 0
            took = time.monotonic() - started
        finally:
            app.stop()
        log = app.stderr()
        assert "restarting" not in log and "did not stop in time" not in log, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
        assert took < CLOSE_TIMEOUT + 3, log[-3000:]  # a worker killed after the grace takes 3 + 5 s


@pytest.mark.parametrize("name", ["TERM", "INT"])
def test_stop_signal_sent_as_a_worker_is_forked_stops_it_gracefully(tmp_path: Path, name: str) -> None:
    """The supervisor gets the signal from within the fork of its last worker (a real signal, at that very
    moment) and forwards it to a child that has not set up its own handling yet: it must not be lost."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, APP, "--workers", "2", "--signal-at-last-fork", name],
        capture_output=True, env=app_env(), timeout=60, check=False,
    )  # fmt: skip
    took = time.monotonic() - started
    err = result.stderr.decode(errors="replace")
    assert result.returncode == 0, err[-3000:]
    assert f"received SIG{name}: stopping" in err
    assert "did not stop in time" not in err, err[-3000:]
    assert "restarting" not in err and "Traceback" not in err, err[-3000:]
    assert took < CLOSE_TIMEOUT + 5, err[-3000:]  # the signal lost, the worker is killed after 3 + 5 s


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_second_stop_signal_ends_a_shutdown_held_by_a_silent_client(tmp_path: Path, workers: str) -> None:
    """A client that never answers the server's Close holds the shutdown for close_timeout (20 s here); a
    second stop signal (Ctrl-C again) ends it at once: the workers left are killed (one connection
    aborted, with one worker), the client's connection ends and run() returns 130."""
    app = App(tmp_path, "--workers", workers, "--close-timeout", "20")
    client = None
    try:
        pids = app.workers
        client = SilentClient(app.port)
        app.proc.send_signal(signal.SIGTERM)
        assert client.close_code() == 1001  # going away, which this client never answers
        app.proc.send_signal(signal.SIGINT)
        assert app.proc.wait(10) == 130  # the first stop alone would have taken 20 s
        assert client.ended()
    finally:
        if client is not None:
            client.close()
        app.stop()
    log = app.stderr()
    if workers == "1":
        assert "aborting 1 connections" in log, log[-3000:]
    else:
        assert "stop signal repeated: killing worker-" in log, log[-3000:]
        assert "did not stop in time" not in log, log[-3000:]
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.parametrize("share", ["inherit", "reuse_port"])
def test_a_stopping_server_refuses_new_clients(tmp_path: Path, share: str) -> None:
    """Once the stop signal is forwarded, a new client is refused at once, whichever way the port is shared;
    it is not accepted by a listening socket that nobody reads any more (the supervisor's own copy, with
    share="inherit"), to wait for the whole shutdown, held here 20 s by a client that never closes."""
    app = App(tmp_path, "--workers", "2", "--share", share, "--close-timeout", "20")
    client = None
    try:
        client = SilentClient(app.port)
        app.proc.send_signal(signal.SIGTERM)
        assert client.close_code() == 1001  # its worker is shutting down, held by this client
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", app.port), timeout=5).close()
            except ConnectionRefusedError:
                break
            assert time.monotonic() < deadline, "a new client is still accepted 5 s into the shutdown"
            time.sleep(0.1)
        assert app.proc.poll() is None  # (the silent client still holds the shutdown)
        app.proc.send_signal(signal.SIGINT)
        assert app.proc.wait(10) == 130
    finally:
        if client is not None:
            client.close()
        app.stop()
    assert "Traceback" not in app.stderr()


def run_on_port(port: int, *args: str) -> tuple[int, str, str]:
    """Run tests/_scaleout_app.py on ``port`` until it exits (it should: the port is taken) or 30 s passed."""
    proc = subprocess.Popen(
        [sys.executable, APP, "--port", str(port), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=app_env()
    )
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_second_instance_on_a_port_in_use_fails_with_eaddrinuse(
    apps: list[App], tmp_path: Path, workers: str
) -> None:
    """With SO_REUSEPORT, a second ``run(workers=2)`` would join the first one's listening group and take
    half its connections; it must fail as ``workers=1`` (a plain serve()) does."""
    first = start(apps, tmp_path, "--workers", "2")
    code, out, err = run_on_port(first.port, "--workers", workers)
    assert code == 1 and "listening" not in out, err[-3000:]
    assert f"error while attempting to bind on address ('127.0.0.1', {first.port}): address already in use" in err
    assert first.proc.poll() is None and len(first.workers) == 2


async def test_the_port_of_a_stopped_instance_can_be_used_at_once(apps: list[App], tmp_path: Path) -> None:
    """The test bind for a port in use is a server's bind (SO_REUSEADDR): the connections a stopped
    instance closed (TIME_WAIT) do not keep the next one off its port."""
    first = start(apps, tmp_path, "--workers", "2")
    members = await clients_on_every_worker(first, 4)
    assert first.stop() == 0
    for ws, _pid in members:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 20)
        assert ws.close_code == 1001
    second = start(apps, tmp_path, "--workers", "2", "--port", str(first.port))
    assert second.port == first.port
    ws, _pid = await client(second.port)
    await ws.close()


# --------------------------------------------------------------------------- a supervisor out of descriptors


def squeeze_descriptors(pid: int, limit: int | None = None) -> tuple[int, int]:
    """Lower the soft RLIMIT_NOFILE of process ``pid`` to ``limit``, by default its lowest free descriptor, so
    that it can open nothing more (but reuse what it closes); the limits it had, to restore them."""
    import resource

    if limit is None:
        limit = next(fd for fd in range(100_000) if not os.path.exists(f"/proc/{pid}/fd/{fd}"))
    saved = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    set_descriptor_limit(pid, (limit, saved[1]))
    return saved


def set_descriptor_limit(pid: int, limits: tuple[int, int]) -> None:
    import resource  # (Unix only)

    resource.prlimit(pid, resource.RLIMIT_NOFILE, limits)


def sockets(pid: int) -> int:
    """How many sockets process ``pid`` holds open (0 once it is gone)."""
    try:
        entries = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    count = 0
    for entry in entries:
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/{pid}/fd/{entry}").startswith("socket:")
    return count


async def echo(port: int) -> WebSocket:
    ws = await connect(f"ws://127.0.0.1:{port}/", compression=None, open_timeout=10)
    await ws.send("ping")
    assert await asyncio.wait_for(ws.recv(), 10) == "ping"
    return ws


async def echo_on(port: int, pid: int) -> list[WebSocket]:
    """Echo clients, held open, until (bounded) one of them is served by worker ``pid``: the kernel spreads
    the connections over the workers, and the worker that serves one holds one socket more."""
    before = sockets(pid)
    held = []
    for _ in range(64):
        held.append(await echo(port))
        if sockets(pid) > before:
            return held
    await asyncio.gather(*(ws.close() for ws in held), return_exceptions=True)
    raise AssertionError(f"worker {pid} served none of 64 clients")


async def test_a_worker_that_dies_while_the_supervisor_is_out_of_descriptors_is_restarted(
    apps: list[App], tmp_path: Path
) -> None:
    """Out of descriptors when a worker died, the supervisor raised EMFILE (reaping it, then starting its
    replacement) and stopped the other worker too: the whole server was down. Now the start is retried on
    the back-off schedule, the other worker serving on, until descriptors allow."""
    app = start(apps, tmp_path, "--workers", "2", cli=True)
    victim, survivor = sorted(app.workers)
    saved = squeeze_descriptors(app.proc.pid)
    try:
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while victim in app.workers:  # (its listening socket resets the clients it was given until it is gone)
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            ws = await echo(app.port)  # the other worker serves on, alone
            await ws.close()
            assert app.proc.poll() is None, app.stderr()[-3000:]
            await asyncio.sleep(0.2)
        assert app.workers == {survivor}, app.stderr()[-3000:]
    finally:
        if app.proc.poll() is None:
            set_descriptor_limit(app.proc.pid, saved)
    deadline = time.monotonic() + 15  # the retries are 0.5, 1, 2, 4 s apart by now
    while len(app.workers - {victim}) < 2:
        assert time.monotonic() < deadline, "the killed worker was not replaced\n" + app.stderr()[-3000:]
        await asyncio.sleep(0.05)
    (replacement,) = app.workers - {survivor}
    held = await echo_on(app.port, replacement)
    await asyncio.gather(*(ws.close() for ws in held), return_exceptions=True)
    log = app.stderr()
    assert log.count("cannot start worker-") == 1, log[-3000:]  # one WARNING, not one per attempt
    assert "Too many open files" in log and re.search(r"worker-\d started \(pid \d+\) after \d+ failed", log), log[
        -3000:
    ]
    assert "Traceback" not in log and "error:" not in log, log[-3000:]
    assert app.stop(signal.SIGINT) == 0, app.stderr()[-3000:]
    assert not app.workers


async def test_a_stop_signal_to_a_supervisor_out_of_descriptors_stops_its_workers(
    apps: list[App], tmp_path: Path
) -> None:
    """SIGTERM to a supervisor out of descriptors: it raised EMFILE waiting for its workers (and exited with
    status 1 without waiting); now it stops them as always and exits with status 0 once they are gone."""
    app = start(apps, tmp_path, "--workers", "2", cli=True)
    workers = app.workers
    ws = await echo(app.port)
    # 3: no descriptor at all, even the one freed when the supervisor closes its socket on the way
    squeeze_descriptors(app.proc.pid, 3)
    app.proc.send_signal(signal.SIGTERM)
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 20)
    assert ws.close_code == 1001
    assert app.proc.wait(20) == 0, app.stderr()[-3000:]
    assert not any(os.path.exists(f"/proc/{pid}") for pid in workers)  # reaped by the supervisor
    log = app.stderr()
    # (not "no Traceback": under coverage, as in CI, the supervisor's own exit cannot write coverage's data
    # file with no descriptor free, and coverage prints a traceback of its own in its atexit hook)
    assert "Too many open files" not in log and "error:" not in log, log[-3000:]


def test_a_failed_fork_is_retried_on_the_back_off_schedule_and_leaks_no_descriptor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fork that fails (EAGAIN: too many processes) leaves multiprocessing's two pipes open; the supervisor
    closes them with its own, and plans the next attempt 0.5 s, then 1 s... later, without counting a death."""
    from wscodec import workers

    async def handler(ws: WebSocket) -> None:
        pass

    supervisor = workers._Supervisor(handler, "127.0.0.1", 0, 2, "inherit", 16, {}, None, None, 5, 10.0)
    try:
        slot = supervisor.slots[0]

        def no_fork() -> int:
            raise BlockingIOError(11, "Resource temporarily unavailable")

        monkeypatch.setattr(os, "fork", no_fork)
        before = sorted(os.listdir("/proc/self/fd"))
        for attempt, delay in enumerate([0.5, 1.0, 2.0], 1):
            supervisor._start(slot)
            assert sorted(os.listdir("/proc/self/fd")) == before
            assert slot.process is None and slot.ready_fd == -1
            assert slot.start_failures == attempt and slot.failures == 0
            assert slot.restart_at is not None
            assert delay - 0.2 < slot.restart_at - time.monotonic() <= delay
    finally:
        supervisor.selector.close()
        os.close(supervisor.wake_r)
        os.close(supervisor.wake_w)
        supervisor.sock.close()


def test_a_join_that_needs_a_descriptor_becomes_a_bounded_poll() -> None:
    from wscodec.workers import _join

    class Process:
        def __init__(self, exits_in: float) -> None:
            self.exits_at = time.monotonic() + exits_in

        def join(self, timeout: float | None = None) -> None:
            raise OSError(24, "Too many open files")

        def is_alive(self) -> bool:
            return time.monotonic() < self.exits_at

    started = time.monotonic()
    _join(Process(0.2), 5.0)  # waits for the exit...
    assert 0.2 <= time.monotonic() - started < 1.0
    started = time.monotonic()
    _join(Process(60.0), 0.3)  # ...no longer than the timeout
    assert 0.3 <= time.monotonic() - started < 1.0
