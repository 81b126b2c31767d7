"""Polling for a condition that another task, thread or process makes true, with a bound on the wait: a
test that would otherwise hang fails with a clear message instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    """Yield to the event loop until ``predicate()`` is true; an ``AssertionError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def until_blocking(predicate: Callable[[], object], timeout: float = 20.0) -> None:
    """:func:`until` for a test without an event loop: sleeps between the checks."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)
