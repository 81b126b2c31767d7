"""Option values as websockets takes them, checked once where a server or a client is made.

websockets 14+ takes ``max_size`` and ``max_queue`` as a number or as a ``(high, low)`` pair of water
marks; the high mark is the bound here (reading resumes at this library's own low marks). Code moving from
websockets keeps working instead of failing at the first message with a comparison between a tuple and an
int. ``close_timeout=None`` (websockets: wait for ever) is refused with this message at once rather than
failing in the middle of a close: every close here is bounded.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "MAX_BUSY_POLL",
    "Bound",
    "WriteLimit",
    "broadcast_timeout",
    "check_busy_poll",
    "close_timeout",
    "high_mark",
    "limits",
    "slow_consumer_limit",
    "write_limits",
]

#: ``max_size`` or ``max_queue``: a number, None (no bound), or websockets' ``(high, low)`` pair.
Bound = int | tuple[int | None, int | None] | None

#: ``write_limit``: bytes, or websockets' ``(high, low)`` pair of water marks for the transport's buffer.
WriteLimit = int | tuple[int, int | None]


def subprotocols(value: Any) -> tuple[str, ...]:
    """The subprotocols as a tuple (None: none); a lone string is refused, not offered one character at a
    time ("chat" as "c, h, a, t")."""
    if value is None:
        return ()
    if isinstance(value, (str, bytes)):
        raise TypeError(f"subprotocols must be a list of strings, not {type(value).__name__} {value!r}")
    return tuple(value)


def high_mark(name: str, value: Any) -> int | None:
    """``max_size`` or ``max_queue``: None, a number, or websockets' ``(high, low)`` pair (its high mark)."""
    if isinstance(value, tuple):
        if len(value) != 2:
            raise ValueError(f"{name} is a number, None, or a (high, low) pair, not {value!r}")
        value = value[0]
    if value is not None and not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, not {type(value).__name__}")
    least = 1 if name == "max_queue" else 0  # a queue of no message could never hand one over
    if value is not None and value < least:
        raise ValueError(f"{name} must be at least {least} or None, not {value!r}")
    return value


def close_timeout(value: Any) -> float:
    """A number of seconds, finite and positive: every closing handshake has a bound."""
    if value is None:
        raise ValueError("close_timeout=None is not supported: every close is bounded here; give a number of seconds")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
        raise ValueError(f"close_timeout must be a positive number of seconds, not {value!r}")
    return float(value)


def limits(close_timeout_: Any, max_size: Any, max_queue: Any) -> tuple[float, int | None, int | None]:
    """The three options every server and client takes, checked in one place so their rules cannot drift."""
    return close_timeout(close_timeout_), high_mark("max_size", max_size), high_mark("max_queue", max_queue)


def write_limits(value: Any) -> tuple[int, int | None]:
    """``write_limit`` as ``(high, low)``: a number is the high mark, low then None (asyncio's default, a
    quarter of high), as websockets reads it; checked where the server or client is made, not at the
    first connection."""
    low = None
    if isinstance(value, tuple):
        if len(value) != 2:
            raise ValueError(f"write_limit is a number or a (high, low) pair, not {value!r}")
        value, low = value
    for mark in (value, low):
        if mark is not None and (isinstance(mark, bool) or not isinstance(mark, int) or mark < 0):
            raise ValueError(f"write_limit takes numbers of bytes, not {mark!r}")
    if value is None:
        raise ValueError("write_limit needs a high mark: a number of bytes")
    if low is not None and low > value:
        raise ValueError(f"write_limit's low mark {low} is above its high mark {value}")
    return value, low


#: The longest window accepted, in seconds. A larger value is far more likely microseconds passed where
#: seconds are expected (``busy_poll=50`` for 50 µs) than a wish to burn a core for over a second.
MAX_BUSY_POLL = 1.0


def check_busy_poll(window: float | None) -> float | None:
    """The window to poll for, in seconds (None: off), or ValueError for one outside (0, MAX_BUSY_POLL]."""
    if window is None:
        return None
    if not 0 < window <= MAX_BUSY_POLL:  # also refuses NaN
        raise ValueError(f"busy_poll must be None or seconds in (0, {MAX_BUSY_POLL:g}], got {window!r}")
    return float(window)


def slow_consumer_limit(value: Any) -> int:
    """Bytes a connection may hold unsent before a broadcast applies its ``slow_consumer`` policy: an int
    of at least 0. None is refused rather than read as "no bound": the limit is what keeps one client that
    never reads from growing the server's memory (and a comparison with None would fail every broadcast)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"slow_consumer_limit must be an int (bytes), not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"slow_consumer_limit must be >= 0, got {value}")
    return value


def broadcast_timeout(value: Any) -> float | None:
    """How long ``broadcast_wait()`` waits for a slow connection: None (until its peer reads, or the
    keepalive fails it) or seconds >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"timeout must be None or seconds, not {type(value).__name__}")
    if not value >= 0:  # also refuses NaN
        raise ValueError(f"timeout must be None or seconds >= 0, got {value!r}")
    return float(value)
