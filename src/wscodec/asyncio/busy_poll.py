"""Busy polling: keep an event loop awake for a short window after each read, trading CPU for latency.

Why: a loop with nothing to do sleeps in ``epoll_wait``, and waking a sleeping thread is what costs most
of a loopback round trip on a virtual machine or a CPU in a deep idle state. On the 2-core VM where the
benchmarks run, a raw C echo server that blocks in ``read()`` answers one message in flight in about
75 µs at p50; the same server polling for 50 µs before it blocks answers in about 23 µs. Nothing in the
WebSocket code is left to remove from that 75 µs: the wake-up is the kernel's and the hypervisor's.

A :class:`BusyPoller` keeps the loop iterating (each iteration polls the sockets with a zero timeout)
until ``window`` seconds have passed without a read, then lets it sleep again; the next read re-arms it.
It is opt-in (``serve(busy_poll=...)``, ``connect(busy_poll=...)``): while it spins, the loop's thread
uses a whole core, which is the right trade only where latency matters more than CPU.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .._options import MAX_BUSY_POLL, check_busy_poll

__all__ = ["MAX_BUSY_POLL", "BusyPoller", "check_busy_poll"]


class BusyPoller:
    """Keeps ``loop`` iterating for ``window`` seconds after the last :meth:`touch`.

    One poller serves any number of connections on its loop (a server shares one among its connections):
    however many touch it, at most one callback is scheduled per loop iteration.
    """

    __slots__ = ("_clock", "_deadline", "_loop", "_spinning", "window")

    def __init__(self, loop: asyncio.AbstractEventLoop, window: float) -> None:
        checked = check_busy_poll(window)
        if checked is None:
            raise ValueError("a BusyPoller needs a window")
        self._loop = loop
        #: Seconds the loop keeps polling after the last read.
        self.window = checked
        self._clock = time.perf_counter
        self._deadline = 0.0
        self._spinning = False

    @property
    def spinning(self) -> bool:
        """True while the loop is kept awake."""
        return self._spinning

    def touch(self) -> None:
        """A read happened: keep the loop awake for another ``window`` seconds."""
        self._deadline = self._clock() + self.window
        if not self._spinning:
            self._spinning = True
            self._loop.call_soon(self._spin)

    def _spin(self) -> None:
        # A ready callback makes the loop poll its sockets with a zero timeout instead of sleeping.
        if self._clock() < self._deadline:
            self._loop.call_soon(self._spin)
        else:
            self._spinning = False

    def wrap(self, read: Callable[[int], None]) -> Callable[[int], None]:
        """``read`` (a protocol's ``buffer_updated``), then :meth:`touch`: the window starts once the read's
        replies are written, when the loop would otherwise go to sleep waiting for the next message."""
        touch = self.touch

        def buffer_updated(nbytes: int) -> None:
            try:
                read(nbytes)
            finally:
                touch()

        return buffer_updated
