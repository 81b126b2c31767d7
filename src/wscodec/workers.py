"""Worker processes on one port, under a supervising parent: :func:`run`.

``run(handler, host, port, workers=N, **serve_options)`` forks N processes that each run an ordinary
:func:`wscodec.asyncio.serve` on the same port, and supervises them:

- **One port.** On Linux each worker binds its own listening socket with ``SO_REUSEPORT`` and the kernel
  spreads new connections over them. Elsewhere (or with ``share="inherit"``) the parent opens one listening
  socket and the forked workers inherit it. Port 0 picks a free port once, for every worker. A port another
  process listens on fails with EADDRINUSE, as with :func:`~wscodec.asyncio.serve` (rather than joining its
  ``SO_REUSEPORT`` group).
- **Restarts.** A worker that dies is started again, at once the first time. One that dies again within
  ``stable_after`` seconds of its start is restarted after a back-off (0.5 s, doubling, at most 10 s);
  after ``max_failures`` such deaths in a row (so ``max_failures`` + 1 deaths in all, the first one
  included) the supervisor stops the other workers and :func:`run` returns 1. A worker that ran longer
  than ``stable_after`` resets its count. A start that fails (the supervisor out of file descriptors,
  memory or processes) is no death: it is retried on the same back-off, with one WARNING, until it works.
- **Shutdown.** SIGINT or SIGTERM to the parent is forwarded to every worker, which stops listening and
  closes its connections with 1001 (going away), waiting at most ``close_timeout`` for each; the parent
  waits for them (``close_timeout`` + 5 s, then SIGKILL) and :func:`run` returns 0. A second stop signal to
  the parent meanwhile (Ctrl-C again) kills the workers still running at once and :func:`run` returns 130;
  with ``workers=1`` it aborts the connections left, as the CLI's ``serve`` does. Once a stop signal is
  pending no worker is started or restarted (with Ctrl-C the workers get the signal too, and exit), and a
  worker is forked with the stop signals blocked until its event loop handles them, so none is lost during
  its start-up. A worker whose parent disappears (SIGKILL) shuts itself down the same way within a second.
  With ``workers=1`` the event loop's handlers of both signals are removed before :func:`run` returns (uvloop
  would keep them past its close), so Ctrl-C is a KeyboardInterrupt in the caller again.
- **Logging identity.** Workers are named ``worker-1`` … ``worker-N`` (``%(processName)s`` in a log
  format; :data:`LOG_FORMAT` uses it, and :func:`run` installs it when logging is not configured), and
  ``os.environ["WSCODEC_WORKER"]`` holds the number (``worker_id()`` returns it).

Every option of :func:`~wscodec.asyncio.serve` applies **per worker**: ``max_connections=1000`` with 4
workers admits up to 4000 connections in all, each worker having its own connections, its own
``broadcast()`` reach and its own in-process broker. To reach the clients of every worker, give
``broker="redis://host:port/db"`` and use :meth:`Server.publish <wscodec.asyncio.Server.publish>`.

The handler reaches its server as ``ws.server`` (for ``await ws.server.join(ws, channel)``). Workers are
forked (the handler need not be importable), so call :func:`run` from a program's main thread, before
any event loop runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import multiprocessing
import os
import selectors
import signal
import socket
import stat
import sys
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .asyncio import Server

__all__ = ["LOG_FORMAT", "run", "worker_id"]

logger = logging.getLogger(__name__)

#: The logging format :func:`run` installs when logging is not configured yet: it names the process
#: (``supervisor``, ``worker-1``...) so that the lines of several workers can be told apart.
LOG_FORMAT = "%(asctime)s %(processName)s[%(process)d] %(levelname)s %(name)s: %(message)s"

_BACKOFF_FIRST = 0.5
_BACKOFF_MAX = 10.0
_SHUTDOWN_GRACE = 5.0  # beyond close_timeout, before a worker that does not exit is killed
_SIGNAL_POLL = 0.05  # how soon a repeated stop signal is acted on while the supervisor waits for its workers
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def worker_id() -> int | None:
    """The number (1..N) of the worker process this code runs in, None outside :func:`run`'s workers."""
    value = os.environ.get("WSCODEC_WORKER")
    return int(value) if value and value.isdigit() else None


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))  # type: ignore[attr-defined,unused-ignore]
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _backoff(attempt: int) -> float:
    """The wait before retry number ``attempt`` (1, 2...): 0.5 s, doubling, at most 10 s."""
    return min(_BACKOFF_MAX, _BACKOFF_FIRST * 2.0 ** (attempt - 1))


def _join(process: Any, timeout: float) -> None:
    """``process.join(timeout)`` that survives a supervisor out of file descriptors: a timed join may need
    one (a lazy import), and the supervisor must still wait for its workers, so it polls instead."""
    try:
        process.join(timeout)
        return
    except OSError:
        pass
    deadline = time.monotonic() + timeout
    while process.is_alive() and time.monotonic() < deadline:
        time.sleep(min(_SIGNAL_POLL, max(0.0, deadline - time.monotonic())))


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _run_loop(coro: Coroutine[Any, Any, int], loop_factory: Callable[[], asyncio.AbstractEventLoop] | None) -> int:
    if loop_factory is None:
        return asyncio.run(coro)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(coro)
    loop = loop_factory()  # pragma: no cover (3.10)
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _bind(host: str | None, port: int, *, reuse_port: bool, listen: bool, backlog: int) -> socket.socket:
    """A TCP socket bound to the first address ``host`` resolves to (as a worker would bind it).

    A failed bind raises the OSError (errno and words) that :func:`~wscodec.asyncio.serve` would, so that
    ``workers=N`` fails on a port in use exactly as ``workers=1`` does.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    if not infos:
        raise OSError(f"cannot resolve {host!r}")
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as asyncio's create_server does
        try:
            sock.bind(address)
        except OSError as err:  # in the words of asyncio's create_server
            words = (err.strerror or str(err)).lower()
            raise OSError(err.errno, f"error while attempting to bind on address {address!r}: {words}") from None
        if listen:
            sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _remove_stop_handlers(loop: asyncio.AbstractEventLoop) -> None:
    """SIGINT and SIGTERM given back (to KeyboardInterrupt and the default) by the loop that handled them.
    asyncio's loop does it when it closes, uvloop's only here: left to it, Ctrl-C after :func:`run` went to
    a closed loop and was ignored."""
    for sig in _STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(sig)


async def _shut_down(server: Server, *, say: Callable[[str], None]) -> bool:
    """Close every connection of ``server`` with 1001 and wait for them (``close_timeout``, after which the
    server aborts what is left); a second SIGINT or SIGTERM meanwhile aborts them at once, as uvicorn's
    second Ctrl-C does, rather than leave the operator waiting on clients that never answer. True when that
    happened. ``say`` tells the operator what goes on (stderr for the CLI, the log for :func:`run`). The
    loop's handlers of both signals are gone on return, the caller's too: the server is down by then."""
    loop = asyncio.get_running_loop()
    force = asyncio.Event()
    for sig in _STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, force.set)
    say("shutting down (Ctrl-C again to abort the connections)")
    server.close()
    closing = asyncio.ensure_future(server.wait_closed())
    forcing = asyncio.ensure_future(force.wait())
    try:
        # (the server's own bound is close_timeout, then a second for the handlers and one for the sockets)
        done, _ = await asyncio.wait(
            {closing, forcing}, timeout=server.close_timeout + _SHUTDOWN_GRACE, return_when=asyncio.FIRST_COMPLETED
        )
        if closing in done:
            closing.result()
            return False
        if forcing not in done:
            say("some connections did not close in time")
            return False
        connections = list(server.connections)
        say(f"aborting {len(connections)} connections")
        for ws in connections:
            if ws.transport is not None:
                ws.transport.abort()
        await asyncio.wait({closing}, timeout=_SHUTDOWN_GRACE)
        return True
    finally:
        closing.cancel()
        forcing.cancel()
        _remove_stop_handlers(loop)


def _ignore_signal(signum: int, frame: Any) -> None:
    """A worker's stop signals once it is stopping."""


async def _serve_worker(
    handler: Any,
    host: str | None,
    port: int,
    sock: socket.socket | None,
    backlog: int,
    options: dict[str, Any],
    ready_fd: int,
    parent: int,
) -> int:
    from .asyncio import serve

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    # Forked with the stop signals blocked (see _Supervisor._start): one sent since the fork has waited,
    # pending, and reaches stop.set now instead of being lost; the stop is then graceful like any other.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    if sock is None:  # SO_REUSEPORT: a listening socket of our own on the shared port
        sock = _bind(host, port, reuse_port=True, listen=True, backlog=backlog)
    server = await serve(handler, sock=sock, **options)
    os.write(ready_fd, b"R")
    os.close(ready_fd)
    logger.debug("worker %s listening on %s", worker_id(), sock.getsockname())
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        if os.getppid() != parent:
            logger.warning("the supervisor (pid %d) is gone: shutting down", parent)
            break
    # Stopping already: a further stop signal (Ctrl-C reaches a worker twice, from the terminal and from the
    # supervisor) does nothing. Left to the loop, one arriving as asyncio.run closes it would find its wakeup
    # pipe closed ("Exception ignored ... Bad file descriptor") or, for SIGINT, raise KeyboardInterrupt.
    # A handler rather than SIG_IGN, which the subprocesses of a handler would inherit.
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)  # no default disposition in between
    for sig in _STOP_SIGNALS:
        loop.remove_signal_handler(sig)
        signal.signal(sig, _ignore_signal)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    server.close()
    await server.wait_closed()
    return 0


def _worker_main(
    index: int,
    handler: Any,
    host: str | None,
    port: int,
    sock: socket.socket | None,
    backlog: int,
    options: dict[str, Any],
    ready_fd: int,
    close_fds: list[int],
    parent: int,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None,
) -> None:
    """Body of a worker process (forked from the supervisor, with SIGINT and SIGTERM blocked until
    :func:`_serve_worker` handles them)."""
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)  # the supervisor's handler came along with the fork
    for fd in close_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    os.environ["WSCODEC_WORKER"] = str(index)
    sys.exit(_run_loop(_serve_worker(handler, host, port, sock, backlog, options, ready_fd, parent), loop_factory))


class _Slot:
    """One worker position: the current process in it and its record of failures."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: Any = None
        self.ready_fd = -1
        self.ready = False
        self.started = 0.0
        self.failures = 0
        self.start_failures = 0  # attempts in a row that could not fork it (no descriptors, no memory...)
        self.restart_at: float | None = None


class _Supervisor:
    def __init__(
        self,
        handler: Any,
        host: str | None,
        port: int,
        workers: int,
        share: str,
        backlog: int,
        options: dict[str, Any],
        ready: Callable[[str, int], None] | None,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None,
        max_failures: int,
        stable_after: float,
    ) -> None:
        self.handler = handler
        self.host = host
        self.share = share
        self.backlog = backlog
        self.options = options
        self.ready_callback = ready
        self.loop_factory = loop_factory
        self.max_failures = max_failures
        self.stable_after = stable_after
        self.close_timeout = float(options.get("close_timeout", 10.0))
        # A timed join imports multiprocessing.connection on its first use, which opens a file: out of
        # descriptors when a worker died, that import failed and took the whole server down. Imported now, no
        # join needs a descriptor (nor does a fork, which imports popen_fork the first time).
        importlib.import_module("multiprocessing.connection")
        importlib.import_module("multiprocessing.popen_fork")
        self.context = multiprocessing.get_context("fork")
        # The shared socket (inherit) or a bound, not listening, one that holds the port (SO_REUSEPORT).
        self.sock = _bind(host, port, reuse_port=share == "reuse_port", listen=share == "inherit", backlog=backlog)
        if share == "reuse_port":
            self._check_port_free()
        name = self.sock.getsockname()
        self.address = str(name[0])
        self.port = int(name[1])
        self.slots = [_Slot(i + 1) for i in range(workers)]
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.signals: list[int] = []
        self.announced = False

    def _check_port_free(self) -> None:
        """Fail with EADDRINUSE, as ``serve()`` would, when another process listens on our port.

        With ``SO_REUSEPORT`` our placeholder would join the listening group of another process of the same
        user (a second instance, say) and the kernel would split the connections between the two. A bind
        without ``SO_REUSEPORT`` (but with ``SO_REUSEADDR``, as a server binds) fails against a listener
        and succeeds beside our placeholder, which is not listening and keeps the port (port 0 included).
        """
        try:
            probe = _bind(self.host, self.sock.getsockname()[1], reuse_port=False, listen=False, backlog=0)
        except BaseException:
            self.sock.close()
            raise
        probe.close()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)
        with contextlib.suppress(OSError):
            os.write(self.wake_w, b"s")

    def _start(self, slot: _Slot) -> None:
        """Start a worker in ``slot``. A start that fails for want of descriptors, memory or processes is
        the supervisor's trouble, not the worker's code's: it is retried on the back-off schedule without
        counting as a death, while the other workers serve on: a shortage must not take the server down."""
        try:
            self._spawn(slot)
        except OSError as exc:
            slot.start_failures += 1
            delay = _backoff(slot.start_failures)
            slot.restart_at = time.monotonic() + delay
            # one WARNING per episode: retried up to every 10 s, a long shortage would flood the log
            log = logger.warning if slot.start_failures == 1 else logger.debug
            log(
                "cannot start worker-%d (%s): retrying in %.1f s, then less often, until it starts",
                slot.index,
                exc,
                delay,
            )
            return
        if slot.start_failures:
            logger.warning(
                "worker-%d started (pid %d) after %d failed attempts",
                slot.index,
                slot.process.pid,
                slot.start_failures,
            )
            slot.start_failures = 0

    def _spawn(self, slot: _Slot) -> None:
        ready_r, ready_w = os.pipe()
        # multiprocessing makes two pipes before it forks and leaks them when its pipe or fork fails. Make
        # (and free) two first: a shortage of descriptors fails here, with nothing to leak; after a failed
        # fork the descriptors it leaked have the numbers just freed (lowest first) and are closed.
        spare: list[int] = []
        try:
            for _ in range(2):
                spare.extend(os.pipe())
        except OSError:
            _close_fds([ready_r, ready_w, *spare])
            raise
        _close_fds(spare)
        others = [s.ready_fd for s in self.slots if s.ready_fd >= 0 and s is not slot]
        process = self.context.Process(
            target=_worker_main,
            name=f"worker-{slot.index}",
            args=(
                slot.index,
                self.handler,
                self.host,
                self.port,
                self.sock if self.share == "inherit" else None,
                self.backlog,
                self.options,
                ready_w,
                [ready_r, self.wake_r, self.wake_w, self.selector.fileno(), *others]
                + ([self.sock.fileno()] if self.share != "inherit" else []),
                os.getpid(),
                self.loop_factory,
            ),
        )
        # Fork with the stop signals blocked. Unblocked, a stop sent to the new child before its event loop
        # handles it would run the supervisor's handler, inherited, and be lost: the worker would serve on
        # until killed. Blocked, it stays pending until the child's loop handles it (_serve_worker); here,
        # one that came during the fork runs our handler as soon as the mask is restored.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            process.start()
        except OSError:
            for fd in spare:
                with contextlib.suppress(OSError):
                    if stat.S_ISFIFO(os.fstat(fd).st_mode):
                        os.close(fd)
            _close_fds([ready_r, ready_w])
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        os.close(ready_w)
        slot.process = process
        slot.ready_fd = ready_r
        slot.ready = False
        slot.started = time.monotonic()
        slot.restart_at = None
        self.selector.register(ready_r, selectors.EVENT_READ, ("ready", slot))
        self.selector.register(process.sentinel, selectors.EVENT_READ, ("exit", slot))
        logger.debug("started worker-%d (pid %d)", slot.index, process.pid)

    def _reap(self, slot: _Slot) -> bool:
        """The worker in ``slot`` exited (and no stop is pending): plan its restart. False when it keeps
        dying: give up."""
        process = slot.process
        self.selector.unregister(process.sentinel)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(slot.ready_fd)
        with contextlib.suppress(OSError):
            os.close(slot.ready_fd)
        slot.ready_fd = -1
        _join(process, 1.0)
        code = process.exitcode
        slot.process = None
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exited with status {code}"
        lived = time.monotonic() - slot.started
        if lived < self.stable_after and slot.failures > 0:
            slot.failures += 1
        else:
            slot.failures = 1
        if slot.failures > self.max_failures:
            logger.error(
                "worker-%d (pid %d) %s after %.1f s; it died %d times in a row: giving up",
                slot.index,
                process.pid,
                how,
                lived,
                slot.failures,
            )
            return False
        delay = 0.0 if slot.failures == 1 else _backoff(slot.failures - 1)
        logger.warning(
            "worker-%d (pid %d) %s after %.1f s: restarting it%s",
            slot.index,
            process.pid,
            how,
            lived,
            f" in {delay:.1f} s" if delay else "",
        )
        slot.restart_at = time.monotonic() + delay
        return True

    def _stop_all(self, signum: int) -> bool:
        """Forward ``signum`` to every worker and wait for them (``close_timeout`` + 5 s, then SIGKILL). A
        further stop signal to the supervisor meanwhile (Ctrl-C again) kills the workers left at once: the
        workers themselves ignore it, since one Ctrl-C reaches them twice (from the terminal and from here).
        True when that happened."""
        deadline = time.monotonic() + self.close_timeout + _SHUTDOWN_GRACE
        first = 1 if self.signals else 0  # a stop for repeated failures has no signal of its own
        # Our copy of an inherited listening socket would keep it listening once every worker closed its own:
        # the kernel would accept new clients that nobody answers until the shutdown ends.
        self.sock.close()
        for slot in self.slots:
            if slot.process is not None and slot.process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.process.pid, signum)
        forced = False
        for slot in self.slots:
            if slot.process is None:
                continue
            while not forced and slot.process.is_alive() and time.monotonic() < deadline:
                _join(slot.process, min(_SIGNAL_POLL, max(0.0, deadline - time.monotonic())))
                forced = len(self.signals) > first
            if not slot.process.is_alive():
                continue
            if forced:
                logger.warning("stop signal repeated: killing worker-%d (pid %d)", slot.index, slot.process.pid)
            else:
                logger.error("worker-%d (pid %d) did not stop in time: killing it", slot.index, slot.process.pid)
            slot.process.kill()
            _join(slot.process, 5.0)
        return forced

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _STOP_SIGNALS}
        self.selector.register(self.wake_r, selectors.EVENT_READ, ("signal", None))
        status = 0
        stop_signal: int = signal.SIGTERM
        try:
            # A stop signal is checked before every start and every reap: once one is pending, no worker is
            # started, and no exit is a failure to restart. Ctrl-C or a stop of the whole process group
            # reaches the workers too, and their exits may wake the same select() as the signal does.
            for slot in self.slots:
                if self.signals:
                    break
                self._start(slot)
            while not self.signals:
                now = time.monotonic()
                pending = [s.restart_at for s in self.slots if s.process is None and s.restart_at is not None]
                timeout = max(0.0, min(pending) - now) if pending else None
                for key, _mask in self.selector.select(timeout):
                    what, slot = key.data
                    if self.signals:
                        break
                    if what == "signal":
                        with contextlib.suppress(OSError):
                            os.read(self.wake_r, 512)
                    elif what == "ready":
                        data = b""
                        with contextlib.suppress(OSError):
                            data = os.read(slot.ready_fd, 16)
                        if slot.ready_fd >= 0 and not data:  # EOF: wait for the sentinel
                            self.selector.unregister(slot.ready_fd)
                        elif data:
                            slot.ready = True
                            self._announce()
                    elif what == "exit" and slot.process is not None and not self._reap(slot):
                        status = 1
                    if status:
                        break
                if status:
                    break
                now = time.monotonic()
                for slot in self.slots:
                    if self.signals:
                        break
                    if slot.process is None and slot.restart_at is not None and slot.restart_at <= now:
                        self._start(slot)
            if self.signals:
                stop_signal = self.signals[0]
                logger.info("received %s: stopping %d workers", signal.Signals(stop_signal).name, len(self.slots))
        finally:
            if self._stop_all(stop_signal):
                status = 130
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.selector.close()
            for fd in (self.wake_r, self.wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
            for slot in self.slots:
                if slot.ready_fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(slot.ready_fd)
            self.sock.close()
        logger.info("all workers stopped")
        return status

    def _announce(self) -> None:
        if self.announced or not all(slot.ready for slot in self.slots):
            return
        self.announced = True
        logger.info("%d workers listening on %s port %d (%s)", len(self.slots), self.address, self.port, self.share)
        if self.ready_callback is not None:
            self.ready_callback(self.address, self.port)


async def _serve_single(
    handler: Any, host: str | None, port: int, options: dict[str, Any], ready: Callable[[str, int], None] | None
) -> int:
    from .asyncio import serve

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in _STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        server = await serve(handler, host, port, **options)
        name = server.sockets[0].getsockname()
        if ready is not None:
            ready(str(name[0]), int(name[1]))
        try:
            await stop.wait()
        finally:
            forced = await _shut_down(server, say=logger.info)
    finally:
        _remove_stop_handlers(loop)  # a port in use too
    return 130 if forced else 0


def run(
    handler: Any,
    host: str | None = "127.0.0.1",
    port: int = 8765,
    *,
    workers: int = 1,
    share: str | None = None,
    backlog: int = 1024,
    ready: Callable[[str, int], None] | None = None,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    max_failures: int = 5,
    stable_after: float = 10.0,
    **options: Any,
) -> int:
    """Serve ``handler`` from ``workers`` processes on ``host``:``port`` until SIGINT or SIGTERM; returns the
    exit status (0 after a signal, 130 when a second one cut the shutdown short, 1 when a worker kept
    dying). See the module docstring.

    ``workers=0`` means one per core; 1 serves in this process, as :func:`~wscodec.asyncio.serve` does.
    ``share`` is ``"reuse_port"`` or ``"inherit"`` (default: the first on Linux). ``ready(address, port)``
    is called in the parent once every worker listens. ``loop_factory`` makes each worker's event loop
    (``uvloop.new_event_loop``, say). Other keyword arguments go to :func:`~wscodec.asyncio.serve`,
    per worker; they are checked here first, so a bad option or broker URL fails before any fork.
    """
    from .asyncio import Server
    from .transports import resolve_transport

    if workers < 0:
        raise ValueError("workers must be 0 (one per core) or more")
    count = workers or _cpu_count()
    if share is None:
        share = "reuse_port" if sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT") else "inherit"
    if share not in ("reuse_port", "inherit"):
        raise ValueError("share must be 'reuse_port' or 'inherit'")
    if share == "reuse_port" and not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("SO_REUSEPORT is not available here: use share='inherit'")
    if "sock" in options:
        raise TypeError("run() listens on host:port itself: it takes no sock")
    Server(handler, **{k: v for k, v in options.items() if k not in ("ssl", "transport")})  # bad option?
    resolve_transport(options.get("transport", "loop"))  # a typo, or aiofastnet missing, before any fork
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    if count == 1:
        return _run_loop(_serve_single(handler, host, port, options, ready), loop_factory)
    if "fork" not in multiprocessing.get_all_start_methods():
        raise RuntimeError("worker processes need os.fork(), which this platform lacks")
    multiprocessing.current_process().name = "supervisor"
    supervisor = _Supervisor(
        handler, host, port, count, share, backlog, options, ready, loop_factory, max_failures, stable_after
    )
    return supervisor.run()
