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
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from . import Broker, BrokerUnavailable, Message, _retrieve

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
        self._tasks: set[asyncio.Task[None]] = set()
        # The bus subscription of a channel on its way, until confirmed: its result is the bus's refusal, if
        # it refused. A task of its own, so that a join cancelled meanwhile (a timeout) leaves it to
        # complete for the other members waiting for it, or to be undone once it has.
        self._subscribing: dict[str, asyncio.Task[BrokerUnavailable | None]] = {}
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
        subscribing = self._subscribing.get(channel)
        if subscribing is None:
            if not first:
                return  # subscribed on the bus already
            subscribing = asyncio.get_running_loop().create_task(self._subscribe(channel))
            subscribing.add_done_callback(_retrieve)  # (its waiters may all have been cancelled)
            self._subscribing[channel] = subscribing
        try:
            refused = await asyncio.shield(subscribing)
        except asyncio.CancelledError:
            # The caller gave up (asyncio.timeout, a TaskGroup): ``ws`` is no member; the subscription goes
            # on for the others waiting for it, and the last member out unsubscribes once it is done.
            if added and self._remove(ws, channel):
                self._spawn(self._unsubscribe_if_empty(channel))
            raise
        if refused is not None:
            raise refused

    async def _subscribe(self, channel: str) -> BrokerUnavailable | None:
        """Subscribe this process to ``channel`` for every join waiting: None, or the bus's refusal (then
        every member is removed from it, as on any other failure, which is raised)."""
        try:
            await self.broker.subscribe(channel, self._deliver, self._dropped)
        except BrokerUnavailable as exc:
            self._forget(channel)
            return exc
        except BaseException:
            self._forget(channel)
            raise
        finally:
            del self._subscribing[channel]
        return None

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def leave(self, ws: WebSocket, channel: str) -> None:
        """Remove ``ws`` from ``channel``; the last local member unsubscribes this process (in a task of its
        own: a leave cancelled while that waits for a subscription on its way still unsubscribes)."""
        if self._remove(ws, channel):
            await asyncio.shield(self._spawn(self._unsubscribe_if_empty(channel)))

    def discard(self, ws: WebSocket) -> None:
        """``ws`` is gone: remove it from every channel (the server calls this when a connection ends)."""
        channels = self._joined.pop(ws, None)
        if not channels:
            return
        for channel in channels:
            if self._remove(ws, channel, forget=False):
                self._spawn(self._unsubscribe_if_empty(channel))

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

    async def _unsubscribe_if_empty(self, channel: str) -> None:
        subscribing = self._subscribing.get(channel)
        if subscribing is not None:  # after the subscription on its way (an UNSUBSCRIBE before it was undone)
            await asyncio.wait({subscribing})
            if _retrieve(subscribing) is not None:
                return  # refused, or failed: the broker has forgotten the channel
        if channel not in self._members and channel not in self._subscribing:  # nobody joined again meanwhile
            await self.broker.unsubscribe(channel, self._deliver)

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
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5.0)

    def __repr__(self) -> str:
        return f"<Channels {len(self._members)} channels, {len(self._joined)} connections, via {self.broker!r}>"
