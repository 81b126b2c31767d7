"""A message bus for broadcast: publish a message to a channel, subscribe callbacks to channels.

A server publishes through a :class:`Broker` and subscribes to it once per channel per process; the
broker's job is only to carry messages between processes (or not: :class:`InProcessBroker`), while
framing, the slow-consumer policy and the list of connections stay in the server
(:mod:`wscodec.broker.channels`). So a new engine (NATS, Redis Streams for replay) is one class with
five methods:

- ``await start()`` / ``await close()``: connect and disconnect (the server calls them);
- ``await publish(channel, message)``: hand ``message`` (``str`` or ``bytes``) to every subscriber of
  ``channel`` in every process sharing the broker, in the order one publisher called it;
- ``await subscribe(channel, callback)`` / ``await unsubscribe(channel, callback)``: ``callback(channel,
  message)`` is called (synchronously, in the event loop) for every message published to ``channel``
  once ``subscribe`` has returned. A bus that refuses the channel (Redis ACL) makes ``subscribe`` raise
  :class:`BrokerUnavailable`; one that refuses it later (subscribing it again after an outage) forgets it
  and calls the ``on_dropped(channel, error)`` given to ``subscribe``.

Delivery is at most once: a broker may drop messages (a Redis outage, a subscriber that fell too far
behind) but never duplicates or reorders the messages of one publisher.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import WebSocketError

__all__ = [
    "Broker",
    "BrokerStats",
    "BrokerUnavailable",
    "Dropped",
    "InProcessBroker",
    "Message",
    "Subscriber",
    "make_broker",
]

logger = logging.getLogger(__name__)

#: What goes through a broker: a text (str) or binary (bytes) WebSocket message.
Message = str | bytes
#: A callback subscribed to channels: called with the channel and the message, on the event loop.
Subscriber = Callable[[str, Message], None]


class BrokerUnavailable(WebSocketError):
    """The broker cannot carry the message now (its server is down or unreachable); nothing was sent.
    Also raised by a join (subscribe) to a channel the bus refuses, such as one outside the Redis user's
    ACL channel patterns: nothing of that join is kept.

    Publishing fails fast instead of queueing: a chat line or a price tick delayed by a minute of outage
    is worth less than an error the caller can count, show or retry.
    """


#: Called with the channel and the error when the bus refuses a channel it had subscribed (see subscribe).
Dropped = Callable[[str, BrokerUnavailable], None]


@dataclass
class BrokerStats:
    """Counters of one broker in one process (since it was created)."""

    published: int = 0  #: messages handed to the bus by :meth:`Broker.publish`
    #: publishes refused with :class:`BrokerUnavailable`, and accepted ones given up on: dropped from the
    #: queue by an outage or by close(), in a batch the bus did not confirm in time (which a slow Redis
    #: may still have run: lost or late, not known), or refused by the bus alone (a Redis ACL)
    failed: int = 0
    received: int = 0  #: messages received from the bus for a local subscription
    outages: int = 0  #: times the connection to the bus was lost (or could not be made)
    #: messages from the bus not delivered: not in wscodec's format, or over the broker's max_message_size
    dropped: int = 0


class Broker(abc.ABC):
    """The interface a server publishes and subscribes through. See the module docstring."""

    def __init__(self) -> None:
        self.stats = BrokerStats()
        self._subscribers: dict[str, list[Subscriber]] = {}
        self._on_dropped: dict[tuple[str, Subscriber], Dropped] = {}
        # Lambdas, not bound methods: looked up at each call, so that one replaced on the instance is followed.
        self._shared = _SharedSubscriptions(
            subscribe=lambda channel: self._subscribe_channel(channel),
            unsubscribe=lambda channel: self._unsubscribe_channel(channel),
            forget=lambda channel: self._forget(channel),
            wanted=lambda channel: channel in self._subscribers,
        )

    @property
    def available(self) -> bool:
        """True while :meth:`publish` can hand messages to the bus."""
        return True

    @property
    def channels(self) -> frozenset[str]:
        """The channels this process is subscribed to."""
        return frozenset(self._subscribers)

    async def start(self) -> None:  # noqa: B027 (an optional hook, empty by default)
        """Connect to the bus. A bus that is down is not an error here: the broker keeps trying."""

    async def close(self) -> None:  # noqa: B027
        """Disconnect; later publishes raise :class:`BrokerUnavailable`."""

    @abc.abstractmethod
    async def publish(self, channel: str, message: Message) -> None:
        """Send ``message`` to every subscriber of ``channel``; :class:`BrokerUnavailable` if the bus is down."""

    async def subscribe(self, channel: str, callback: Subscriber, on_dropped: Dropped | None = None) -> None:
        """Call ``callback(channel, message)`` for every message published to ``channel`` from now on.

        Raises :class:`BrokerUnavailable` if the bus refuses the channel (a Redis ACL), for every subscriber
        waiting for that subscription, and forgets it. If the bus refuses it later, when subscribing it
        again after an outage, the channel is forgotten and ``on_dropped(channel, error)`` called, so that
        the subscriber can forget it too (a server removes the channel's members).

        Cancelled before it returns (a timeout), nothing of this call is kept; the bus subscription it
        started completes for the other subscribers waiting for it, or is undone if none is left.
        """
        self._check_channel(channel)
        first = channel not in self._subscribers
        callbacks = self._subscribers.setdefault(channel, [])
        added = callback not in callbacks
        if added:
            callbacks.append(callback)
        self._set_on_dropped(channel, callback, on_dropped)

        def give_up() -> None:  # (nothing of this call is kept)
            if added:
                self._remove_callback(channel, callback)

        await self._shared.wait(channel, first, give_up)

    def _remove_callback(self, channel: str, callback: Subscriber) -> asyncio.Task[None] | None:
        """Remove one subscriber; the last one out unsubscribes the channel on the bus, in a task of its own
        (returned): a caller cancelled while it waits for a subscription on its way does not stop it."""
        callbacks = self._subscribers.get(channel)
        if callbacks is None or callback not in callbacks:
            return None
        callbacks.remove(callback)
        self._on_dropped.pop((channel, callback), None)
        if callbacks:
            return None
        del self._subscribers[channel]
        return self._shared.release(channel)

    def _set_on_dropped(self, channel: str, callback: Subscriber, on_dropped: Dropped | None) -> None:
        if on_dropped is not None:
            self._on_dropped[channel, callback] = on_dropped

    def _forget(self, channel: str) -> list[Subscriber]:
        """Remove ``channel`` and what its subscribers registered; return its subscribers."""
        callbacks = self._subscribers.pop(channel, [])
        for callback in callbacks:
            self._on_dropped.pop((channel, callback), None)
        return callbacks

    def _drop(self, channel: str, error: BrokerUnavailable) -> None:
        """The bus refused ``channel`` with no subscribe() waiting for it (a resubscription after an outage):
        forget it with a WARNING and tell each subscriber that gave ``on_dropped``."""
        logger.warning(
            "%s: channel dropped, its %d local subscribers removed; the other channels work",
            error,
            len(self._subscribers.get(channel, ())),
        )
        hooks = [self._on_dropped.get((channel, callback)) for callback in self._subscribers.get(channel, ())]
        self._forget(channel)
        for hook in hooks:
            if hook is None:
                continue
            try:
                hook(channel, error)
            except Exception:
                logger.exception("on_dropped hook %r of channel %r failed", hook, channel)

    async def unsubscribe(self, channel: str, callback: Subscriber) -> None:
        """Stop calling ``callback`` for ``channel`` (nothing happens if it was not subscribed)."""
        release = self._remove_callback(channel, callback)
        if release is not None:
            await asyncio.shield(release)

    def _check_channel(self, channel: Any) -> None:
        """A channel this broker can carry (a ValueError or TypeError otherwise), before anything is done."""
        _check_channel(channel)

    async def _subscribe_channel(self, channel: str) -> None:  # noqa: B027
        """The first local subscriber of ``channel`` arrived: subscribe on the bus."""

    async def _unsubscribe_channel(self, channel: str) -> None:  # noqa: B027
        """The last local subscriber of ``channel`` left: unsubscribe on the bus."""

    def _dispatch(self, channel: str, message: Message) -> None:
        """Hand a message from the bus to the local subscribers of ``channel``."""
        callbacks = self._subscribers.get(channel)
        if not callbacks:
            return
        self.stats.received += 1
        for callback in tuple(callbacks):
            try:
                callback(channel, message)
            except Exception:
                logger.exception("subscriber %r of channel %r failed", callback, channel)


class InProcessBroker(Broker):
    """The default: channels inside this process only, no dependency (what
    :func:`~wscodec.asyncio.broadcast` does).

    With several worker processes each has its own channels; share them through :class:`RedisBroker`.
    """

    def __init__(self) -> None:
        super().__init__()
        self._closed = False

    def __repr__(self) -> str:
        return "InProcessBroker()"

    @property
    def available(self) -> bool:
        return not self._closed

    async def close(self) -> None:
        self._closed = True

    async def publish(self, channel: str, message: Message) -> None:
        self._check_channel(channel)
        if isinstance(message, str):
            if not message.isascii():
                # Raised here, as by the Redis broker: a lone surrogate (JSON's "\ud800") failed each
                # member's send at delivery, logged there, the publish returning as if delivered.
                message.encode("utf-8")
        elif not isinstance(message, bytes):
            message = _check_message(message)
        if self._closed:  # after the checks of the message, as the Redis broker
            self.stats.failed += 1
            raise BrokerUnavailable("the in-process broker is closed: message not published")
        self.stats.published += 1
        self._dispatch(channel, message)


#: The one channel name no broker takes (a ValueError): the Redis broker's own subscription, which keeps its
#: connection in pub/sub mode (joined then left, it was unsubscribed). Refused by every broker alike.
_RESERVED_CHANNEL = "\x00control"


def _check_channel(channel: Any) -> None:
    """A channel name is a str a bus can carry: UTF-8 encodable, and not ``_RESERVED_CHANNEL``. Checked by
    every broker, the in-process one included, so that a name from a client (a lone surrogate from JSON's
    "\\ud800") fails the join or publish that brought it, with this error, on every broker alike; stored,
    it made every later reconnection to Redis fail."""
    if not isinstance(channel, str):
        raise TypeError(f"a channel is a str, not {type(channel).__name__}")
    if channel.isascii():
        if channel == _RESERVED_CHANNEL:
            raise ValueError(f"channel {channel!r} is reserved: the Redis broker's own subscription")
        return
    try:
        channel.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"a channel name must be valid Unicode text (UTF-8 encodable): {channel!r}") from None


class _SharedSubscriptions:
    """One bus subscription per channel, shared by the local subscribers of the channel: those of a
    :class:`Broker` (its callbacks) and those of :class:`~wscodec.broker.channels.Channels` (its
    connections), which both wait for the bus to confirm and both must survive a waiter that gives up.

    ``wanted(channel)`` says whether the channel still has a local subscriber; ``subscribe`` and
    ``unsubscribe`` act on the bus, and ``forget`` drops the channel's local subscribers when the bus
    subscription fails.
    """

    def __init__(
        self,
        *,
        subscribe: Callable[[str], Awaitable[None]],
        unsubscribe: Callable[[str], Awaitable[None]],
        forget: Callable[[str], object],
        wanted: Callable[[str], bool],
    ) -> None:
        self._subscribe = subscribe
        self._unsubscribe = unsubscribe
        self._forget = forget
        self._wanted = wanted
        # The bus subscription of a channel on its way, until the bus confirms: its result is the refusal, if
        # the bus refused. A task of its own, so that a waiter cancelled meanwhile (a timeout) leaves it to
        # complete for the others waiting for it, or to be undone once it has (see _release).
        self._subscribing: dict[str, asyncio.Task[BrokerUnavailable | None]] = {}
        # Unsubscriptions in flight, held here so that they are not collected before they are done.
        self.tasks: set[asyncio.Task[None]] = set()

    async def wait(self, channel: str, first: bool, give_up: Callable[[], None]) -> None:
        """Wait for the bus subscription of ``channel``, started here by its ``first`` local subscriber, and
        raise its refusal. A caller cancelled meanwhile calls ``give_up`` (to undo its own membership); the
        subscription goes on for the others waiting for it, and the last one out unsubscribes once it is done.
        """
        subscribing = self._subscribing.get(channel)
        if subscribing is None:
            if not first:
                return  # subscribed on the bus already
            subscribing = asyncio.get_running_loop().create_task(self._subscribe_first(channel))
            subscribing.add_done_callback(_retrieve)  # (its waiters may all have been cancelled)
            self._subscribing[channel] = subscribing
        try:
            refused = await asyncio.shield(subscribing)
        except asyncio.CancelledError:
            give_up()
            raise
        if refused is not None:
            raise refused

    async def _subscribe_first(self, channel: str) -> BrokerUnavailable | None:
        """Subscribe ``channel`` on the bus for every waiter: None, or the bus's refusal (then the channel is
        forgotten, as it is on any other failure, which is raised)."""
        try:
            await self._subscribe(channel)
        except BrokerUnavailable as exc:
            self._forget(channel)
            return exc
        except BaseException:
            self._forget(channel)
            raise
        finally:
            del self._subscribing[channel]
        return None

    def release(self, channel: str) -> asyncio.Task[None]:
        """``channel`` has lost its last local subscriber: unsubscribe it on the bus in a task of its own
        (returned), so that a caller cancelled while that waits for a subscription on its way does not stop it."""
        task = asyncio.get_running_loop().create_task(self._release(channel))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _release(self, channel: str) -> None:
        """Unsubscribe once the subscription in flight (if any) is done, so that the UNSUBSCRIBE follows the
        SUBSCRIBE; unless subscribed again meanwhile."""
        subscribing = self._subscribing.get(channel)
        if subscribing is not None:
            await asyncio.wait({subscribing})
            if _retrieve(subscribing) is not None:
                return  # refused by the bus, or failed: the channel is forgotten, nothing to undo there
        if not self._wanted(channel) and channel not in self._subscribing:
            await self._unsubscribe(channel)


def _retrieve(task: asyncio.Task[BrokerUnavailable | None]) -> BaseException | None:
    """What a finished subscription task ended with, if not a success: its refusal, exception or
    cancellation (retrieved, so asyncio does not log it as never retrieved)."""
    if task.cancelled():
        return asyncio.CancelledError()
    return task.exception() or task.result()


def _check_message(message: Any) -> bytes:
    if isinstance(message, (bytearray, memoryview)):
        return bytes(message)
    raise TypeError(f"publish() takes str or bytes-like, not {type(message).__name__}")


def make_broker(broker: Broker | str | None) -> Broker:
    """A :class:`Broker` from what ``serve(broker=...)`` accepts: None or ``"memory://"`` (in-process),
    ``"redis://[user:password@]host[:port][/db]"``, ``"rediss://..."`` (TLS), ``"unix:///path?db=N"``, or a
    Broker instance. Raises ValueError at once on a URL it cannot use, so a typo stops the start-up."""
    if broker is None:
        return InProcessBroker()
    if isinstance(broker, Broker):
        return broker
    if not isinstance(broker, str):
        raise TypeError(f"broker must be a URL or a Broker, not {type(broker).__name__}")
    scheme = urlsplit(broker).scheme.lower()
    if scheme in ("memory", "inprocess") or broker in ("memory", "inprocess"):
        return InProcessBroker()
    if scheme in ("redis", "rediss", "unix"):
        from .redis import RedisBroker

        return RedisBroker(broker)
    raise ValueError(
        f"unsupported broker URL {broker!r}: use memory:// (in-process), redis://host:port/db, "
        "rediss://host:port/db (TLS) or unix:///path/to/redis.sock"
    )


def __getattr__(name: str) -> Any:
    if name == "RedisBroker":  # imported on use: the redis package is an optional extra
        from .redis import RedisBroker

        return RedisBroker
    raise AttributeError(name)
