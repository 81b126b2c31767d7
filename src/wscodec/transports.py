"""Which asyncio transports carry a connection: the event loop's own, or aiofastnet's.

`aiofastnet <https://pypi.org/project/aiofastnet/>`_ (aio-libs, Cython) reimplements asyncio's socket and TLS
transports for any event loop, asyncio's or uvloop's, with the same calls (``create_server(loop, ...)`` for
``loop.create_server(...)``). Its transports cost less per read and per write than the loop's, which shows
where a round trip is mostly fixed costs: one message in flight. picows depends on it and uses it by
default, so that is how the fastest peer runs. wscodec makes it a choice, ``transport="aiofastnet"`` (or
``"auto"``: aiofastnet when installed), and keeps the loop's own transports as the default: they are what
every other asyncio library runs on, and nothing changes under an application that did not ask.

Only the opening of streams differs; the :class:`~wscodec.asyncio.WebSocket` above them uses the standard
transport methods either way.

One difference under resource exhaustion: when ``accept()`` fails for want of file descriptors (EMFILE),
the loop's own listeners back off (asyncio's retries a second later), while aiofastnet 1.2.0's calls a method its socket
lacks and stays registered, so it spins a core and logs an error on every pass of the loop until a
descriptor is free (the connections already open are still served). Size ``ulimit -n`` (or
``max_connections``) with that in mind when choosing aiofastnet.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["TRANSPORTS", "Opener", "TransportChoice", "opener", "resolve_transport"]

TransportChoice = Literal["loop", "aiofastnet", "auto"]
"""``"loop"``: the event loop's own transports (the default). ``"aiofastnet"``: aiofastnet's, an ImportError
naming the extra if it is not installed. ``"auto"``: aiofastnet's when it can be imported, else the loop's."""

#: The values ``transport=`` takes (and the command line's ``--transport``), in that order.
TRANSPORTS: tuple[str, ...] = ("loop", "aiofastnet", "auto")

_MISSING = "transport='aiofastnet' needs aiofastnet: pip install 'wscodec[aiofastnet]'"


def resolve_transport(transport: str) -> Literal["loop", "aiofastnet"]:
    """What ``transport`` means on this machine: ``"auto"`` becomes ``"aiofastnet"`` or ``"loop"``.

    Called when ``serve()`` or ``connect()`` is constructed, so that a typo or a missing package fails
    there, not at the first connection."""
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
    if transport == "loop":
        return "loop"
    try:
        import aiofastnet  # noqa: F401
    except ImportError:
        if transport == "auto":
            return "loop"
        raise ImportError(_MISSING) from None
    return "aiofastnet"


@dataclass(frozen=True)
class Opener:
    """The calls that open streams, bound to one loop: the loop's methods, or aiofastnet's functions of the
    same names and signatures with the loop bound as their first argument."""

    name: Literal["loop", "aiofastnet"]
    create_connection: Callable[..., Awaitable[tuple[asyncio.Transport, Any]]]
    create_unix_connection: Callable[..., Awaitable[tuple[asyncio.Transport, Any]]]
    create_server: Callable[..., Awaitable[asyncio.AbstractServer]]
    create_unix_server: Callable[..., Awaitable[asyncio.AbstractServer]]
    start_tls: Callable[..., Awaitable[asyncio.Transport | None]]


def opener(transport: str, loop: asyncio.AbstractEventLoop) -> Opener:
    """The :class:`Opener` for ``transport`` (see :data:`TransportChoice`) on ``loop``."""
    if resolve_transport(transport) == "loop":
        return Opener(
            "loop",
            loop.create_connection,
            loop.create_unix_connection,
            loop.create_server,
            loop.create_unix_server,
            loop.start_tls,
        )
    import aiofastnet

    bind = functools.partial
    return Opener(
        "aiofastnet",
        bind(aiofastnet.create_connection, loop),
        bind(aiofastnet.create_unix_connection, loop),
        bind(aiofastnet.create_server, loop),
        bind(aiofastnet.create_unix_server, loop),
        bind(aiofastnet.start_tls, loop),
    )
