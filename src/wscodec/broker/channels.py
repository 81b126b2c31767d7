"""The server's side of the bus: which local connections joined which channel, and delivery to them.

One :class:`Channels` per server. The broker sees one subscriber per channel per process (this object),
however many connections joined, so a message crosses the bus once per process and is framed once per
process by :func:`wscodec.asyncio.server._broadcast`, which also applies each connection's slow-consumer
policy exactly as :func:`~wscodec.asyncio.broadcast` does. Writes are deferred to the end of the event loop
iteration (one callback for all of them), joining the connection's own pending sends, so that a burst of
messages (a publisher's batch, a read from Redis holding several) costs one system call per connection,
not one per message; at most ``_BURST`` messages wait so.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from . import Broker, BrokerUnavailable, Message, _SharedSubscriptions

if TYPE_CHECKING:
    from ..asyncio.websocket import WebSocket

__all__ = ["Channels"]

_BURST = 16  # messages queued per connection at most before they are written out

logger = logging.getLogger(__name__)


class Channels:
    """Channel membership of the connections of one server, subscribed through ``broker``."""

    def __init__(self, broker: Broker, *, compress: bool = False) -> None:
        # Here, not at the top: asyncio.server imports this module.
        from ..asyncio.server import _broadcast, _skip_failed_write

        self.broker = broker
        self.compress = compress
        self._broadcast = _broadcast
        self._skip_failed_write = _skip_failed_write
        self._members: dict[str, set[WebSocket]] = {}
        self._snapshots: dict[str, tuple[WebSocket, ...]] = {}  # what a delivery iterates (members may change)
        self._joined: dict[WebSocket, set[str]] = {}
        self._shared = _SharedSubscriptions(
            subscribe=lambda channel: self.broker.subscribe(channel, self._deliver, self._dropped),
            unsubscribe=lambda channel: self.broker.unsubscribe(channel, self._deliver),
            forget=lambda channel: self._forget(channel),
            wanted=lambda channel: channel in self._members,
        )
        # The members delivered to this loop iteration and not written yet, one entry per snapshot (by
        # identity: a channel's membership may change between two deliveries, and both sets need writing).
        self._unwritten: dict[int, tuple[WebSocket, ...]] = {}
        self._burst = 0  # messages delivered since the last write-out
        self._flush_handle: asyncio.Handle | None = None

    def members(self, channel: str) -> frozenset[WebSocket]:
        """The local connections that joined ``channel``."""
        return frozenset(self._members.get(channel, ()))

    def channels_of(self, ws: WebSocket) -> frozenset[str]:
        """The channels ``ws`` joined."""
        return frozenset(self._joined.get(ws, ()))

    async def join(self, ws: WebSocket, channel: str) -> None:
        """Add ``ws`` to ``channel``; the first local member subscribes this process on the bus (and waits
        for the bus to confirm, so that what is published after ``join`` returns reaches ``ws``).

        A channel the bus refuses (a Redis ACL) raises :class:`~wscodec.broker.BrokerUnavailable` in the
        join of every member waiting for that subscription, and none of them stays a member. Refused later,
        when the broker subscribes it again after an outage, the channel is dropped: its members are removed
        from it (:meth:`channels_of` no longer lists it; their connections stay open) and the broker logs a
        WARNING. A join cancelled before it returns (a timeout) leaves ``ws`` no member; the subscription
        goes on for the members waiting for it."""
        self.broker._check_channel(channel)
        if ws.connection.closed or getattr(ws, "_lost", False):
            return  # it would never be removed: connection_lost has run already
        members = self._members.get(channel)
        first = members is None
        if members is None:
            members = self._members[channel] = set()
        added = ws not in members
        members.add(ws)
        self._snapshots.pop(channel, None)
        self._joined.setdefault(ws, set()).add(channel)

        def give_up() -> None:  # (asyncio.timeout, a TaskGroup): ``ws`` is no member
            if added and self._remove(ws, channel):
                self._shared.release(channel)

        await self._shared.wait(channel, first, give_up)

    async def leave(self, ws: WebSocket, channel: str) -> None:
        """Remove ``ws`` from ``channel``; the last local member unsubscribes this process (in a task of its
        own: a leave cancelled while that waits for a subscription on its way still unsubscribes)."""
        if self._remove(ws, channel):
            await asyncio.shield(self._shared.release(channel))

    def discard(self, ws: WebSocket) -> None:
        """``ws`` is gone: remove it from every channel (the server calls this when a connection ends)."""
        channels = self._joined.pop(ws, None)
        if not channels:
            return
        for channel in channels:
            if self._remove(ws, channel, forget=False):
                self._shared.release(channel)

    def _remove(self, ws: WebSocket, channel: str, forget: bool = True) -> bool:
        """Remove one membership; True if ``channel`` has no local member left."""
        if forget:
            joined = self._joined.get(ws)
            if joined is not None:
                joined.discard(channel)
                if not joined:
                    del self._joined[ws]
        members = self._members.get(channel)
        if members is None or ws not in members:
            return False
        members.discard(ws)
        self._snapshots.pop(channel, None)
        if members:
            return False
        del self._members[channel]
        return True

    def _forget(self, channel: str) -> None:
        """Remove every member of ``channel``, without a word to the broker (which no longer has it)."""
        members = self._members.pop(channel, set())
        self._snapshots.pop(channel, None)
        for ws in members:
            joined = self._joined.get(ws)
            if joined is not None:
                joined.discard(channel)
                if not joined:
                    del self._joined[ws]

    def _dropped(self, channel: str, error: BrokerUnavailable) -> None:
        """The broker dropped ``channel`` (refused when subscribed again): its members are members no more."""
        if channel in self._members:
            logger.debug(
                "channel %r dropped by the broker, %d members removed: %s", channel, len(self._members[channel]), error
            )
        self._forget(channel)

    async def publish(self, channel: str, message: Message) -> None:
        """Publish through the broker (see :meth:`wscodec.asyncio.Server.publish`)."""
        await self.broker.publish(channel, message)

    def _deliver(self, channel: str, message: Message) -> None:
        """A message from the bus: frame it once, queue it for every local member of ``channel``; the
        writes go out at the end of the loop iteration, or at once every ``_BURST`` messages."""
        snapshot = self._snapshots.get(channel)
        if snapshot is None:
            members = self._members.get(channel)
            if not members:
                return
            snapshot = self._snapshots[channel] = tuple(members)
        self._broadcast(snapshot, message, self.compress, False, True)
        self._unwritten[id(snapshot)] = snapshot  # (held here, so its id is not reused meanwhile)
        self._burst += 1
        if self._burst >= _BURST:
            self._write_out()
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._write_out)

    def _write_out(self) -> None:
        """Hand what the deliveries queued to each member's transport: one write per connection."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._burst = 0
        unwritten, self._unwritten = self._unwritten, {}
        for members in unwritten.values():
            for ws in members:
                try:
                    ws._write_out()
                except Exception as exc:  # one member's failure must not hold back the members after it
                    self._skip_failed_write(ws, exc, None)

    async def close(self) -> None:
        """Write out what is queued; wait for the unsubscriptions in flight (bounded: the broker's timeouts)."""
        self._write_out()
        if self._shared.tasks:
            await asyncio.wait(set(self._shared.tasks), timeout=5.0)

    def __repr__(self) -> str:
        return f"<Channels {len(self._members)} channels, {len(self._joined)} connections, via {self.broker!r}>"
