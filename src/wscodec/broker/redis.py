"""The Redis broker: channels shared by every process and machine connected to one Redis, over pub/sub.

Needs the ``redis`` package (``pip install 'wscodec[redis]'``), whose asyncio client it uses. Per process:
one connection subscribed to the channels that have local members (a SUBSCRIBE when the first member
joins, an UNSUBSCRIBE when the last leaves) and one connection that publishes. Publishes from one process
are queued (bounded) and one writer sends the queue in order, pipelined in batches, so one publisher's
messages arrive in order and a burst costs one round trip (and reaches subscribers as a burst, which they
write out with one system call per connection).

Faults: when Redis cannot be reached the broker logs it once (a WARNING), counts it in
``stats.outages``, and reconnects with exponential back-off (``reconnect_min`` to ``reconnect_max``
seconds, with jitter so that many workers do not reconnect in step; a connection lost again within
``reconnect_max`` of coming back goes on from the back-off it had reached, so a Redis, or a proxy, that
accepts and drops the connection at once is retried ever more slowly, not every ``reconnect_min``, with
two WARNINGs each time). Meanwhile :meth:`RedisBroker.publish`
raises :class:`~wscodec.broker.BrokerUnavailable` at once (counted in ``stats.failed``), the messages
that were queued when the connection broke are dropped and counted there too, and WebSocket connections
are untouched. Once Redis answers again every channel with local members is subscribed again
and a second WARNING says so; messages published during the outage are lost (Redis pub/sub delivers at
most once, and so does this broker).

Redis itself disconnects a subscriber that falls too far behind (``client-output-buffer-limit pubsub``,
32 MB by default): that is an outage like any other, and the messages in between are lost. So that one
message cannot do that to every subscriber at once, a publish over ``max_message_size`` (1 MiB, the
server's default ``max_size``) raises ValueError before it is queued; a message from Redis over it
(another program's, or a process configured with a larger bound) is dropped with a WARNING and counted in
``stats.dropped``, as is one not in the format below.

On the bus a message is one type byte, ``t`` (text, the rest UTF-8) or ``b`` (binary), then the WebSocket
message. That tag is all that tells wscodec's payloads from others: whoever may PUBLISH under ``prefix``
can reach the members (restrict it with Redis ACLs).

Each channel is subscribed with its own SUBSCRIBE, because Redis refuses a whole SUBSCRIBE for one channel
its user may not have (an ACL): a channel refused at ``join()`` raises BrokerUnavailable there and is not
kept; one refused when subscribed again after an outage is dropped with a WARNING and its subscribers told
(``on_dropped``); the other channels work either way. A PUBLISH Redis refuses (an ACL, any error reply
to that one command) fails that message alone: counted in ``stats.failed`` and logged (one WARNING a
minute at most, with the count), never an outage; the other messages of its batch are delivered.

A subscription whose connection dies without a word (a NAT, a firewall or a load balancer that drops the
flow: no FIN, no reset) is found by a PING on it after ``ping_interval`` seconds without traffic, answered
within ``command_timeout``; else it is an outage, and the reconnection subscribes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from . import _RESERVED_CHANNEL, Broker, BrokerUnavailable, Message

__all__ = ["RedisBroker"]

logger = logging.getLogger(__name__)

_TEXT, _BINARY = b"t", b"b"  # first byte of a payload on the bus: the WebSocket message type
_BATCH = 256  # publishes per pipeline round trip
_REFUSED_LOG_INTERVAL = 60  # seconds between two WARNINGs about publishes Redis refused


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


def _validate(url: str) -> None:
    """Raise ValueError naming what is wrong with ``url``."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a port that is not a number in range
    except ValueError as exc:
        raise ValueError(f"invalid Redis URL {_redact(url)!r}: {exc}") from None
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"invalid Redis URL {_redact(url)!r}: unix:// needs a socket path")
        return
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"invalid Redis URL {_redact(url)!r}: the scheme must be redis://, rediss:// or unix://")
    if not parts.hostname:
        raise ValueError(f"invalid Redis URL {_redact(url)!r}: no host (expected redis://host:port/db)")
    if port == 0:
        raise ValueError(f"invalid Redis URL {_redact(url)!r}: port 0")
    db = parts.path.lstrip("/")
    if db and not (db.isdigit() and int(db) < 2**16):
        raise ValueError(f"invalid Redis URL {_redact(url)!r}: the path must be a database number, not {db!r}")


class RedisBroker(Broker):
    """Channels shared through Redis pub/sub: ``RedisBroker("redis://127.0.0.1:6379/0")``.

    ``rediss://`` connects with TLS (query parameters such as ``ssl_cert_reqs`` and ``ssl_ca_certs`` go to
    the redis client, as in :func:`redis.asyncio.from_url`). Channel ``name`` is the Redis channel
    ``prefix + name``, so several applications can share one Redis. A bad URL raises ValueError here.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "wscodec:",
        connect_timeout: float = 3.0,
        command_timeout: float = 5.0,
        reconnect_min: float = 0.1,
        reconnect_max: float = 5.0,
        max_pending: int = 10_000,
        max_pending_bytes: int = 16 * 2**20,
        max_message_size: int = 2**20,
        ping_interval: float | None = 15.0,
    ) -> None:
        super().__init__()
        _validate(url)
        try:
            import redis.asyncio  # noqa: F401
            from redis.asyncio.connection import parse_url
        except ImportError:
            raise ImportError("the Redis broker needs the redis package: pip install 'wscodec[redis]'") from None
        try:
            parse_url(url)
        except ValueError as exc:
            raise ValueError(f"invalid Redis URL {_redact(url)!r}: {exc}") from None
        self.url = url
        self.prefix = prefix
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.max_message_size = max_message_size
        self.ping_interval = ping_interval
        self._control = prefix + _RESERVED_CHANNEL  # always subscribed: keeps the reader's connection in pub/sub mode
        self._pub: Any = None  # redis.asyncio.Redis for PUBLISH
        self._sub: Any = None  # redis.asyncio.Redis the pub/sub connections come from
        self._pubsub: Any = None
        self._up = False
        self._closed = False
        self._back_at: float | None = None  # when the last reconnection succeeded
        self._back_attempt = 0  # ... and at which attempt of its back-off
        self._started = False
        self._down_since: float | None = None
        self._reader: asyncio.Task[None] | None = None
        self._reconnector: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._queue: deque[tuple[bytes, bytes]] = deque()
        self._queued_bytes = 0
        self._wakeup: asyncio.Event | None = None
        self._drained: asyncio.Event | None = None  # set while the queue has room
        self._idle: asyncio.Event | None = None  # set while nothing is queued or being written
        # Per channel, the subscribe() calls waiting for Redis's answer: None (subscribed) or the refusal.
        self._acks: dict[bytes, deque[asyncio.Future[BrokerUnavailable | None]]] = {}
        # The channel of each SUBSCRIBE sent on self._pubsub and not answered yet, oldest first (Redis
        # answers in order, and an error reply names no channel: it is the oldest one's), and the lock that
        # keeps that order the order of the writes.
        self._inflight: deque[bytes] = deque()
        self._subscribe_lock = asyncio.Lock()
        self._refusals = 0  # publishes Redis refused since the last WARNING about them
        self._refusal_logged_at: float | None = None

    def __repr__(self) -> str:
        return f"RedisBroker({_redact(self.url)!r})"

    @property
    def available(self) -> bool:
        return self._up and not self._closed

    def _key(self, channel: str) -> bytes:
        return (self.prefix + channel).encode("utf-8")

    def _client(self) -> Any:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        options: dict[str, Any] = {}
        if urlsplit(self.url).scheme != "unix":
            # TCP only: redis-py's UnixDomainSocketConnection refuses the option (a TypeError on every
            # attempt, so a unix:// broker never connected).
            options["socket_keepalive"] = True
        return aioredis.Redis.from_url(
            self.url,
            retry=Retry(NoBackoff(), 0),  # fail fast: reconnection is this class's job, with its own back-off
            socket_connect_timeout=self.connect_timeout,
            health_check_interval=0,
            **options,
        )

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect (at most ``connect_timeout + command_timeout`` in all); if Redis is down or that slow,
        log it and go on reconnecting in the background: the WebSocket server starts all the same."""
        if self._started:
            return
        self._started = True
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._pub = self._client()
        self._sub = self._client()
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())
        try:
            await asyncio.wait_for(self._connect(), self.connect_timeout + self.command_timeout)
        except Exception as exc:  # (a TimeoutError among them)
            self._outage(exc)

    async def close(self) -> None:
        """Refuse new publishes, send what publish() accepted (it returned: the caller counts on it; at most
        ``command_timeout``, what is left then is counted in ``stats.failed``), then disconnect."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._up and self._idle is not None and not self._idle.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), self.command_timeout)
        finally:  # cancelled meanwhile (a wait_closed() under a timeout): taken down all the same
            await self._tear_down()

    async def _tear_down(self) -> None:
        self._up = False
        for task in (self._reader, self._reconnector, self._writer):
            if task is not None:
                task.cancel()
        for task in (self._reader, self._reconnector, self._writer):
            if task is not None:
                with contextlib.suppress(BaseException):
                    await task
        self._fail_queue("the Redis broker is closed")
        await self._drop_pubsub()
        for client in (self._pub, self._sub):
            if client is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.aclose(), self.connect_timeout)

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), self.connect_timeout)
        for waiters in self._acks.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)  # join() does not wait for a subscription that will be redone
        self._acks.clear()

    async def _connect(self) -> None:
        """One attempt: PING on the publishing side, then subscribe to every channel with local members.

        One SUBSCRIBE per channel, not one for all: Redis refuses a whole SUBSCRIBE when its user may not
        have one of the channels (an ACL), so one such channel took every other down, at each reconnection.
        A channel refused here is dropped by the reader (:meth:`_refused`); the others work."""
        await asyncio.wait_for(self._pub.ping(), self.connect_timeout + self.command_timeout)
        pubsub = self._sub.pubsub(ignore_subscribe_messages=False)
        self._pubsub = pubsub
        inflight = self._inflight = deque()
        channels = [self._key(c) for c in self._subscribers]
        control = self._control.encode()
        ack = self._expect_ack(control)

        async def subscribe_all() -> None:
            for key in (control, *channels):
                inflight.append(key)
                await pubsub.subscribe(key)

        await asyncio.wait_for(subscribe_all(), self.connect_timeout + self.command_timeout)
        self._reader = asyncio.get_running_loop().create_task(self._read_loop(pubsub, inflight))
        await asyncio.wait_for(asyncio.shield(ack), self.command_timeout)
        if self._pubsub is not pubsub:  # the reader failed in between
            raise ConnectionError("the subscription connection closed while subscribing")
        self._up = True
        # Channels joined, or left, while the SUBSCRIBE above was on its way (_subscribe_channel and
        # _unsubscribe_channel do nothing while Redis is not up).
        # Each checked again just before: the awaits let members join and leave meanwhile.
        subscribed = {c.decode("utf-8")[len(self.prefix) :] for c in channels}
        for channel in set(self._subscribers) - subscribed:
            if channel in self._subscribers:
                try:
                    await self._subscribe_channel(channel)
                except BrokerUnavailable as exc:  # joined meanwhile, and refused (an ACL): that channel alone
                    self._drop(channel, exc)
        for channel in subscribed - set(self._subscribers):
            if channel not in self._subscribers:
                await self._unsubscribe_channel(channel)
        if not self._up:  # one of those failed: _outage() saw us reconnecting and left the retry to us
            raise ConnectionError("the subscription connection failed while subscribing")

    def _outage(self, exc: BaseException) -> None:
        """The bus is gone: log once, fail fast from now on, reconnect in the background."""
        if self._closed:
            return
        was_up = self._up
        self._up = False
        if self._reconnector is not None and not self._reconnector.done():
            return  # already reconnecting
        self.stats.outages += 1
        self._down_since = time.monotonic()
        logger.warning(
            "Redis broker %s %s (%s: %s): publishes fail until it is back, reconnecting with back-off",
            _redact(self.url),
            "lost" if was_up else "unreachable",
            type(exc).__name__,
            exc,
        )
        self._fail_queue("Redis is unreachable")
        back_at = self._back_at
        flapping = back_at is not None and time.monotonic() - back_at < self.reconnect_max
        attempt = self._back_attempt if flapping else 0
        self._reconnector = asyncio.get_running_loop().create_task(self._reconnect(attempt))

    async def _reconnect(self, attempt: int = 0) -> None:
        """Reconnect with back-off, from ``attempt`` on (beyond 0 when the last connection did not last)."""
        while not self._closed:
            if self._reader is not None:
                self._reader.cancel()
                self._reader = None
            await self._drop_pubsub()
            # (2**attempt capped: past 2**1023 the product is an OverflowError, which would end this task
            # some 85 minutes into an outage, and the broker would never come back)
            delay = min(self.reconnect_max, self.reconnect_min * 2 ** min(attempt, 64)) * random.uniform(0.5, 1.0)
            attempt += 1
            await asyncio.sleep(delay)
            try:
                await self._connect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.debug("Redis broker %s: reconnection %d failed: %s", _redact(self.url), attempt, exc)
                continue
            since = self._down_since
            logger.warning(
                "Redis broker %s is back after %.1f s: %d channels subscribed again",
                _redact(self.url),
                time.monotonic() - since if since is not None else 0.0,
                len(self._subscribers),
            )
            self._back_at, self._back_attempt = time.monotonic(), attempt
            self._reconnector = None
            return

    # ------------------------------------------------------------------ subscribing

    def _expect_ack(self, key: bytes) -> asyncio.Future[BrokerUnavailable | None]:
        waiter: asyncio.Future[BrokerUnavailable | None] = asyncio.get_running_loop().create_future()
        self._acks.setdefault(key, deque()).append(waiter)
        return waiter

    def _unexpect_ack(self, key: bytes, waiter: asyncio.Future[BrokerUnavailable | None]) -> None:
        waiters = self._acks.get(key)
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._acks[key]

    async def _subscribe_channel(self, channel: str) -> None:
        """SUBSCRIBE, and wait for Redis to confirm it (so a publish made after ``join()`` returns is seen).
        While Redis is down the channel is only remembered: the reconnection subscribes it. A channel Redis
        refuses (an ACL) raises BrokerUnavailable, and the caller forgets it: Redis is not down."""
        pubsub, inflight = self._pubsub, self._inflight
        if not self._up or pubsub is None:
            return
        key = self._key(channel)
        try:
            async with self._subscribe_lock:
                if self._pubsub is not pubsub or not self._up:
                    return  # an outage while we waited: the reconnection subscribes the channel
                # Registered only now, just before the write: a subscribe cancelled while it waited for the
                # lock left a waiter that took the answer to the next SUBSCRIBE of the channel.
                ack = self._expect_ack(key)
                inflight.append(key)
                try:
                    await asyncio.wait_for(pubsub.subscribe(key), self.command_timeout)
                except BaseException:  # not written, or not known to be: no answer to wait for
                    self._unexpect_ack(key, ack)
                    with contextlib.suppress(ValueError):
                        inflight.remove(key)
                    raise
            refused = await asyncio.wait_for(asyncio.shield(ack), self.command_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._outage(exc)
            return
        if refused is not None:
            raise refused

    def _refused(self, pubsub: Any, key: bytes, exc: Exception) -> None:
        """Redis refused the SUBSCRIBE of ``key``: fail the subscribe() waiting for it, or, with none (the
        reconnection subscribing it again), drop the channel with a WARNING and tell its subscribers."""
        pubsub.channels.pop(key, None)  # redis-py would subscribe it again if it reconnected this connection
        channel = key.decode("utf-8")[len(self.prefix) :]
        error = BrokerUnavailable(
            f"Redis broker {_redact(self.url)} refused the subscription to channel {channel!r} "
            f"({type(exc).__name__}: {exc})"
        )
        waiters = self._acks.get(key)
        if waiters:
            waiter = waiters.popleft()
            if not waiters:
                del self._acks[key]
            if not waiter.done():
                waiter.set_result(error)
            return
        if channel in self._subscribers:
            self._drop(channel, error)

    async def _unsubscribe_channel(self, channel: str) -> None:
        pubsub = self._pubsub
        if not self._up or pubsub is None:
            return
        try:
            async with self._subscribe_lock:  # in the order of the SUBSCRIBEs: one sent before it goes first
                if self._pubsub is not pubsub:
                    return  # an outage while we waited: the reconnection subscribes what has subscribers
                await asyncio.wait_for(pubsub.unsubscribe(self._key(channel)), self.command_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._outage(exc)

    async def _read_loop(self, pubsub: Any, inflight: deque[bytes]) -> None:
        from redis.exceptions import ResponseError

        control = self._control.encode()
        prefix = len(self.prefix)
        dispatch = self._dispatch
        loop = asyncio.get_running_loop()
        interval = self.ping_interval
        ping_sent: float | None = None  # while a PING on an idle subscription waits for its answer
        try:
            while True:
                if ping_sent is not None:
                    timeout: float | None = max(ping_sent + self.command_timeout - loop.time(), 0.0)
                else:
                    timeout = interval
                try:
                    message = await pubsub.get_message(timeout=timeout)
                except ResponseError as exc:
                    # An error reply answers the oldest SUBSCRIBE in flight: that channel is refused, not
                    # the connection. Anything else (the control channel refused) is an outage.
                    if not inflight or inflight[0] == control:
                        raise
                    ping_sent = None
                    self._refused(pubsub, inflight.popleft(), exc)
                    continue
                if message is None:
                    if ping_sent is not None:
                        if loop.time() >= ping_sent + self.command_timeout:
                            raise ConnectionError(f"no answer to PING on the subscription in {self.command_timeout} s")
                    elif interval is not None:
                        await asyncio.wait_for(pubsub.ping(), self.command_timeout)
                        ping_sent = loop.time()
                    continue
                ping_sent = None  # whatever Redis sent, the connection is alive
                kind = message["type"]
                if kind == "message":
                    data: bytes = message["data"]
                    channel = message["channel"].decode("utf-8", "replace")[prefix:]
                    if len(data) - 1 > self.max_message_size:  # the bound publish() keeps, for the others
                        self.stats.dropped += 1
                        logger.warning(
                            "Redis broker: dropped a message of %d bytes on %r: over max_message_size (%d)",
                            len(data) - 1,
                            channel,
                            self.max_message_size,
                        )
                        continue
                    tag = data[:1]
                    if tag == _BINARY:
                        dispatch(channel, data[1:])
                        continue
                    try:
                        text = data[1:].decode("utf-8") if tag == _TEXT else None
                    except UnicodeDecodeError:
                        text = None
                    if text is None:
                        self.stats.dropped += 1
                        logger.warning("Redis broker: dropped a message on %r not published by wscodec", channel)
                    else:
                        dispatch(channel, text)
                elif kind == "subscribe":
                    key = message["channel"]
                    with contextlib.suppress(ValueError):
                        inflight.remove(key)
                    waiters = self._acks.get(key)
                    if waiters:
                        waiter = waiters.popleft()
                        if not waiters:
                            del self._acks[key]  # bounded by the subscriptions in flight, not by history
                        if not waiter.done():
                            waiter.set_result(None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self._pubsub is pubsub:
                self._pubsub = None
                self._reader = None
                self._outage(exc)
            # Closed here, the reconnection no longer sees it (_drop_pubsub): left open, redis-py connected
            # it again with its subscriptions on its next use, one more subscriber per outage, never read.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), self.connect_timeout)

    # ------------------------------------------------------------------ publishing

    async def publish(self, channel: str, message: Message) -> None:
        """Queue ``message`` for Redis and return: one writer sends the queue in order, many publishes per
        round trip. Raises :class:`~wscodec.broker.BrokerUnavailable` at once while Redis is known to be
        down. A publish queued just before Redis went away is dropped and counted in ``stats.failed``
        (at most once), as is one Redis refuses (an ACL: logged, not an outage). While ``max_pending``
        messages or ``max_pending_bytes`` bytes wait, it waits for room (at most ``command_timeout``, then
        BrokerUnavailable): backpressure, as ``send()`` has."""
        self._check_channel(channel)
        if isinstance(message, str):
            payload = _TEXT + message.encode("utf-8")
        elif isinstance(message, (bytes, bytearray, memoryview)):
            payload = _BINARY + bytes(message)
        else:
            raise TypeError(f"publish() takes str or bytes-like, not {type(message).__name__}")
        if len(payload) - 1 > self.max_message_size:
            raise ValueError(
                f"a message of {len(payload) - 1} bytes is over the Redis broker's max_message_size "
                f"({self.max_message_size}): Redis would disconnect every subscriber it cannot buffer"
            )
        if not self._up or self._closed:
            self.stats.failed += 1
            raise BrokerUnavailable(f"Redis broker {_redact(self.url)} is unavailable: message not published")
        assert self._wakeup is not None and self._drained is not None
        if self._full():
            # Backpressure: wait for room, both bounds checked again after every wake-up (another
            # publisher woken with us may have taken it), at most command_timeout in all.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.command_timeout
            while self._full():
                left = deadline - loop.time()
                if not self._up or self._closed or left <= 0:
                    self.stats.failed += 1
                    why = "too many publishes pending" if self._up and not self._closed else "unavailable"
                    raise BrokerUnavailable(f"Redis broker {_redact(self.url)}: {why}: message not published")
                self._drained.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._drained.wait(), left)
            if not self._up or self._closed:  # the outage or close() that emptied the queue while we waited
                self.stats.failed += 1
                raise BrokerUnavailable(f"Redis broker {_redact(self.url)} is unavailable: message not published")
        self._queue.append((self._key(channel), payload))
        self._queued_bytes += len(payload)
        assert self._idle is not None
        self._idle.clear()
        self._wakeup.set()

    def _full(self) -> bool:
        return len(self._queue) >= self.max_pending or self._queued_bytes >= self.max_pending_bytes

    def _fail_queue(self, why: str) -> None:
        dropped = len(self._queue)
        self._queue.clear()
        self._queued_bytes = 0
        if self._drained is not None:
            self._drained.set()  # waiting publishers see the outage
        if dropped:
            self.stats.failed += dropped
            logger.debug("Redis broker %s: %s: %d queued messages dropped", _redact(self.url), why, dropped)

    async def _write_loop(self) -> None:
        """The one writer: batches of PUBLISH in one pipeline per round trip, in the order they were made."""
        from redis.exceptions import ResponseError

        assert self._wakeup is not None and self._drained is not None and self._idle is not None
        queue = self._queue
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while queue:
                batch = [queue.popleft() for _ in range(min(_BATCH, len(queue)))]
                self._queued_bytes -= sum(len(payload) for _key, payload in batch)
                if len(queue) <= self.max_pending // 2 and self._queued_bytes <= self.max_pending_bytes // 2:
                    self._drained.set()  # (<=: with max_pending=1 an empty queue has room)
                try:
                    pipe = self._pub.pipeline(transaction=False)
                    for key, payload in batch:
                        pipe.publish(key, payload)
                    # Redis refusing one PUBLISH (an ACL, any error reply) is that message's failure, not an
                    # outage: the replies come back in the list, the others of the batch were delivered.
                    results = await asyncio.wait_for(pipe.execute(raise_on_error=False), self.command_timeout)
                except asyncio.CancelledError:
                    self.stats.failed += len(batch)  # close() gave up on it (or the loop is going)
                    raise
                except Exception as exc:
                    # Not known to be lost: a Redis too slow for command_timeout may still run the batch.
                    self.stats.failed += len(batch)
                    self._outage(exc)
                    continue
                refused = 0
                for (key, _payload), result in zip(batch, results, strict=True):
                    if isinstance(result, ResponseError):
                        refused += 1
                        self._refused_publish(key, result)
                self.stats.published += len(batch) - refused
                self.stats.failed += refused
            self._idle.set()

    def _refused_publish(self, key: bytes, exc: Exception) -> None:
        """Redis refused one PUBLISH: a WARNING, at most one per ``_REFUSED_LOG_INTERVAL`` seconds (a
        publisher may try a refused channel at every message), saying how many since the last one."""
        self._refusals += 1
        now = time.monotonic()
        if self._refusal_logged_at is not None and now - self._refusal_logged_at < _REFUSED_LOG_INTERVAL:
            return
        logger.warning(
            "Redis broker %s refused %d publish(es) (the last to channel %r: %s: %s): counted in stats.failed, "
            "the other channels work; next such WARNING in %d s at the earliest",
            _redact(self.url),
            self._refusals,
            key.decode("utf-8", "replace")[len(self.prefix) :],
            type(exc).__name__,
            exc,
            _REFUSED_LOG_INTERVAL,
        )
        self._refusals = 0
        self._refusal_logged_at = now
