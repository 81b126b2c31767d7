"""wscodec.broker and Server.join/leave/publish in one process, over real sockets: the in-process broker
and the Redis one (a real redis-server, see _redis_server.py) pass the same cases; then the Redis faults."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from _redis_server import RedisServer, redis_server_path
from _waiting import until

from wscodec import ConnectionClosed
from wscodec.asyncio import Server, WebSocket, connect, serve
from wscodec.broker import Broker, BrokerUnavailable, InProcessBroker, make_broker

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(redis_server_path())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["memory", "redis"])
def broker_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    redis: RedisServer = request.getfixturevalue("redis_server")
    return redis.url


async def room(ws: WebSocket) -> None:
    """Joins the channel named by the path, says so, then publishes what it receives there."""
    server: Server = ws.server  # type: ignore[attr-defined]
    channel = ws.request.path.strip("/") if ws.request is not None else ""
    await server.join(ws, channel)
    await ws.send("joined")
    async for message in ws:
        try:
            await server.publish(channel, message)
        except BrokerUnavailable:
            await ws.send("unavailable")


@pytest.fixture
async def room_server(broker_url: str) -> AsyncIterator[Server]:
    server = await serve(room, "127.0.0.1", 0, broker=broker_url, compression=None, close_timeout=2)
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()


async def join(server: Server, channel: str, **options: Any) -> WebSocket:
    ws = await connect(f"ws://127.0.0.1:{server.port}/{channel}", **options)
    assert await asyncio.wait_for(ws.recv(), 10) == "joined"
    return ws


def server_sides(server: Server, clients: list[WebSocket]) -> list[WebSocket]:
    """Each client's connection on the server, in the clients' order: matched by port, not by sorting the
    ports (ephemeral ports may wrap around, and a test then took one connection for another)."""
    by_port = {ws.remote_address[1]: ws for ws in server.connections}
    return [by_port[client.local_address[1]] for client in clients]


def slow_to_subscribe(broker_url: str) -> Broker:
    """The broker of ``broker_url``, its bus subscriptions delayed by 0.3 s: the window in which a second
    join, or a cancelled first one, must not slip through."""
    base = type(make_broker(broker_url))

    class SlowToSubscribe(base):  # type: ignore[valid-type,misc]
        async def _subscribe_channel(self, channel: str) -> None:
            await asyncio.sleep(0.3)
            await super()._subscribe_channel(channel)

    broker: Broker = SlowToSubscribe(broker_url) if base.__name__ == "RedisBroker" else SlowToSubscribe()
    return broker


async def test_publish_reaches_the_members_of_the_channel_only(room_server: Server) -> None:
    a = [await join(room_server, "a") for _ in range(3)]
    b = [await join(room_server, "b") for _ in range(2)]
    await a[0].send("to a")
    await b[1].send(b"\x00to b")
    for ws in a:
        assert await asyncio.wait_for(ws.recv(), 10) == "to a"
    for ws in b:
        assert await asyncio.wait_for(ws.recv(), 10) == b"\x00to b"
    await a[1].send("again")  # b saw nothing of a: its next message is the next one sent to b
    await b[0].send("b2")
    assert await asyncio.wait_for(b[1].recv(), 10) == "b2"
    assert await asyncio.wait_for(a[2].recv(), 10) == "again"
    for ws in a + b:
        await ws.close()


async def test_one_publisher_in_order_and_framed_once(room_server: Server) -> None:
    members = [await join(room_server, "order") for _ in range(4)]
    publisher = members[0]
    count = 300
    for i in range(count):
        await publisher.send(f"m{i}")
    for ws in members:
        got = [await asyncio.wait_for(ws.recv(), 10) for _ in range(count)]
        assert got == [f"m{i}" for i in range(count)]
    # each message crossed the bus once for the whole process, whatever the number of members
    assert room_server.broker.stats.received == count
    for ws in members:
        await ws.close()


async def test_leave_and_close_remove_memberships(room_server: Server) -> None:
    a, b = await join(room_server, "x"), await join(room_server, "x")
    server_side = {ws for ws in room_server.connections}
    assert room_server._hub().members("x") == server_side
    await b.close()
    for _ in range(200):
        if len(room_server._hub().members("x")) == 1:
            break
        await asyncio.sleep(0.01)
    assert len(room_server._hub().members("x")) == 1
    (remaining,) = room_server._hub().members("x")
    await room_server.leave(remaining, "x")
    assert room_server._hub().members("x") == frozenset()
    for _ in range(200):  # the last member left: this process no longer subscribes to "x"
        if "x" not in room_server.broker.channels:
            break
        await asyncio.sleep(0.01)
    assert "x" not in room_server.broker.channels
    await room_server.publish("x", "nobody")
    await a.send("still open")  # a left x: its own publish does not come back to it either
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(a.recv(), 0.5)
    assert a.ready_state == WebSocket.OPEN
    await a.close()


async def test_callbacks_subscribe_too(broker_url: str) -> None:
    broker = make_broker(broker_url)
    await broker.start()
    seen: list[tuple[str, Any]] = []
    got = asyncio.Event()

    def callback(channel: str, message: Any) -> None:
        seen.append((channel, message))
        if len(seen) == 2:
            got.set()

    try:
        await broker.subscribe("cb", callback)
        await broker.publish("cb", "text")
        await broker.publish("cb", bytearray(b"bin"))
        await asyncio.wait_for(got.wait(), 10)
        assert seen == [("cb", "text"), ("cb", b"bin")]
        with pytest.raises(TypeError):
            await broker.publish("cb", 42)  # type: ignore[arg-type]
        await broker.unsubscribe("cb", callback)
        assert "cb" not in broker.channels
    finally:
        await broker.close()


async def _silent_member(server: Server, channel: str) -> tuple[asyncio.StreamWriter, WebSocket]:
    """A member that never reads, with a small receive buffer, whose server-side buffer is then filled."""
    import socket

    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    writer.write(
        f"GET /{channel} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    sockname = writer.get_extra_info("sockname")
    for _ in range(500):
        found = [ws for ws in server.connections if ws.remote_address == sockname]
        if found and found[0] in server._hub().members(channel):
            break
        await asyncio.sleep(0.01)
    (slow,) = found
    from wscodec import encode_frame

    for _ in range(2000):
        if slow.buffered_amount > slow.slow_consumer_limit:
            return writer, slow
        assert slow.transport is not None
        slow.transport.write(encode_frame(2, b"x" * 65536))
        await asyncio.sleep(0)
    raise AssertionError("could not fill the silent member's buffer")


@pytest.mark.parametrize("policy", ["close", "skip", "wait"])
async def test_slow_consumer_policy_applies_to_publish(broker_url: str, policy: str) -> None:
    server = await serve(
        room, "127.0.0.1", 0, broker=broker_url, compression=None, close_timeout=1,
        slow_consumer=policy, slow_consumer_limit=256 * 1024,
    )  # fmt: skip
    try:
        fast = [await join(server, "s") for _ in range(3)]
        writer, slow = await _silent_member(server, "s")
        await fast[0].send("to all")
        for ws in fast:
            assert await asyncio.wait_for(ws.recv(), 10) == "to all"
        if policy == "close":
            await asyncio.wait_for(slow.wait_closed(), 10)
            assert slow.close_code == 1008
        else:
            assert slow.ready_state == WebSocket.OPEN
        if policy == "wait":  # written to (a channel cannot wait), but only up to WAIT_CEILING times the limit
            big = "z" * (256 * 1024)
            for _ in range(8):
                await fast[0].send(big)
                for ws in fast:
                    assert await asyncio.wait_for(ws.recv(), 10) == big
            await asyncio.wait_for(slow.wait_closed(), 10)
            assert slow.close_code == 1008
        writer.close()
        for ws in fast:
            await ws.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_compressed_members_get_the_message_too(broker_url: str) -> None:
    server = await serve(room, "127.0.0.1", 0, broker=broker_url)  # deflate on offer
    try:
        plain = await join(server, "z", compression=None)
        deflated = await join(server, "z")
        assert "permessage-deflate" in deflated.extensions
        await plain.send("é" * 1000)
        assert await asyncio.wait_for(plain.recv(), 10) == "é" * 1000
        assert await asyncio.wait_for(deflated.recv(), 10) == "é" * 1000
        await plain.close()
        await deflated.close()
    finally:
        server.close()
        await server.wait_closed()


# --------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("redis://127.0.0.1:notaport/0", "invalid Redis URL"),
        ("redis://127.0.0.1:6379/db", "database number"),
        ("redis:///0", "no host"),
        ("nats://127.0.0.1:4222", "unsupported broker URL"),
        ("127.0.0.1:6379", "unsupported broker URL"),
    ],
)
def test_bad_broker_url_is_a_clear_error_at_start(url: str, words: str) -> None:
    pytest.importorskip("redis")

    async def handler(ws: WebSocket) -> None:
        pass

    with pytest.raises(ValueError, match=words):
        serve(handler, "127.0.0.1", 0, broker=url)


def test_password_is_not_shown() -> None:
    pytest.importorskip("redis")
    broker = make_broker("redis://user:s3cret@127.0.0.1:6379/1")
    assert "s3cret" not in repr(broker)
    with pytest.raises(ValueError) as info:
        make_broker("redis://user:s3cret@127.0.0.1:x/1")
    assert "s3cret" not in str(info.value)


def test_default_broker_is_in_process() -> None:
    async def handler(ws: WebSocket) -> None:
        pass

    assert isinstance(make_broker(None), InProcessBroker)
    assert isinstance(make_broker("memory://"), InProcessBroker)
    mine = InProcessBroker()
    assert make_broker(mine) is mine
    assert isinstance(Server(handler).broker, Broker)


# --------------------------------------------------------------------------- Redis faults


async def test_redis_restart_keeps_connections_and_restores_subscriptions(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="wscodec.broker.redis")
    server = await serve(room, "127.0.0.1", 0, broker=redis_server.url, compression=None, close_timeout=2)
    broker = server.broker
    try:
        members = [await join(server, "r") for _ in range(3)]
        redis_server.stop()
        await until(lambda: not broker.available, timeout=20.0)
        # publishes fail fast and are counted; the WebSocket connections stay open and answer pings
        await members[0].send("lost")
        assert await asyncio.wait_for(members[0].recv(), 10) == "unavailable"
        with pytest.raises(BrokerUnavailable):
            await server.publish("r", "direct")
        assert broker.stats.failed >= 2
        await asyncio.sleep(1.0)  # several reconnection attempts fail meanwhile
        for ws in members:
            await asyncio.wait_for(ws.ping(), 10)
            assert ws.ready_state == WebSocket.OPEN
        redis_server.start()
        await until(lambda: broker.available, timeout=20.0)
        for i in range(5):
            await members[1].send(f"back {i}")
        for ws in members:
            got = [await asyncio.wait_for(ws.recv(), 10) for _ in range(5)]
            assert got == [f"back {i}" for i in range(5)]
        outage_logs = [r for r in caplog.records if "publishes fail until it is back" in r.getMessage()]
        assert len(outage_logs) == 1, [r.getMessage() for r in caplog.records]
        assert any("is back after" in r.getMessage() for r in caplog.records)
        assert broker.stats.outages == 1
        for ws in members:
            await ws.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_redis_down_at_start_then_up(redis_server: RedisServer) -> None:
    redis_server.stop()
    server = await serve(room, "127.0.0.1", 0, broker=redis_server.url, compression=None, close_timeout=2)
    try:
        assert not server.broker.available  # the server started all the same
        ws = await join(server, "late")  # joining while Redis is down is remembered
        with pytest.raises(BrokerUnavailable):
            await server.publish("late", "early")
        redis_server.start()
        await until(lambda: server.broker.available, timeout=20.0)
        await ws.send("now")
        assert await asyncio.wait_for(ws.recv(), 10) == "now"
        await ws.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_two_servers_share_channels_through_redis(redis_server: RedisServer) -> None:
    one = await serve(room, "127.0.0.1", 0, broker=redis_server.url, compression=None)
    two = await serve(room, "127.0.0.1", 0, broker=redis_server.url, compression=None)
    try:
        a, b = await join(one, "shared"), await join(two, "shared")
        await a.send("from one")
        await b.send("from two")
        for ws in (a, b):
            got = {await asyncio.wait_for(ws.recv(), 10), await asyncio.wait_for(ws.recv(), 10)}
            assert got == {"from one", "from two"}
        await a.close()
        await b.close()
        with pytest.raises(ConnectionClosed):
            await a.recv()
    finally:
        for server in (one, two):
            server.close()
            await server.wait_closed()


async def test_foreign_messages_on_the_redis_channel_are_dropped(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever else publishes on a wscodec channel (invalid UTF-8, no type tag) is dropped with a warning;
    the subscription survives it."""
    import redis.asyncio as aioredis

    caplog.set_level(logging.WARNING, logger="wscodec.broker.redis")
    server = await serve(room, "127.0.0.1", 0, broker=redis_server.url, compression=None)
    other = aioredis.Redis.from_url(redis_server.url)
    try:
        ws = await join(server, "g")
        for junk in (b"t\xff\xfe", b"no tag", b""):
            assert await other.publish("wscodec:g", junk) == 1
        await ws.send("valid")
        assert await asyncio.wait_for(ws.recv(), 10) == "valid"
        assert sum("not published by wscodec" in r.getMessage() for r in caplog.records) == 3
        assert server.broker.stats.outages == 0
        assert server.broker.stats.dropped == 3
        await ws.close()
    finally:
        await other.aclose()
        server.close()
        await server.wait_closed()


async def test_join_racing_the_first_subscription_waits_for_it(broker_url: str) -> None:
    """A second connection joins a new channel while the first one's subscription is on its way: its join
    returns only once the subscription is active, so a message published right after reaches it."""
    broker = slow_to_subscribe(broker_url)
    server = await serve(room, "127.0.0.1", 0, broker=broker, compression=None)
    try:
        clients = [await join(server, "warmup"), await join(server, "warmup")]
        one, two = server_sides(server, clients)
        first = asyncio.ensure_future(server.join(one, "new"))
        await asyncio.sleep(0)  # the first join is now waiting for the bus
        await server.join(two, "new")
        await server.publish("new", "right after")
        for ws in clients:
            assert await asyncio.wait_for(ws.recv(), 10) == "right after"
        await first
        for ws in clients:
            await ws.close()
    finally:
        server.close()
        await server.wait_closed()
        await broker.close()  # a Broker instance belongs to the caller


async def test_redis_publish_queue_is_bounded_and_waits_for_room(redis_server: RedisServer) -> None:
    """With Redis paused (CLIENT PAUSE), publishes fill the bounded queue, then wait for room instead of
    growing it; when Redis resumes, everything arrives, in order, nothing dropped."""
    import redis.asyncio as aioredis

    from wscodec.broker.redis import RedisBroker

    broker = RedisBroker(redis_server.url, max_pending=4)
    await broker.start()
    other = aioredis.Redis.from_url(redis_server.url)
    got: list[Any] = []
    done = asyncio.Event()

    def callback(channel: str, message: Any) -> None:
        got.append(message)
        if len(got) == 40:
            done.set()

    try:
        await broker.subscribe("q", callback)
        await other.execute_command("CLIENT", "PAUSE", "1000")
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(40):
            await broker.publish("q", f"m{i}")
            assert len(broker._queue) <= 4
        assert loop.time() - started > 0.5  # the publisher was held back while Redis was paused
        await asyncio.wait_for(done.wait(), 20)
        assert got == [f"m{i}" for i in range(40)]
        assert broker.stats.failed == 0
    finally:
        await other.aclose()
        await broker.close()


async def test_rediss_tls(tmp_path: Any) -> None:
    """``rediss://``: the broker talks TLS to a redis-server that only listens with TLS."""
    from _redis_server import make_certificate

    path = redis_server_path()
    make_certificate(str(tmp_path))
    tls = RedisServer(path, tls_dir=str(tmp_path))
    tls.start()
    try:
        server = await serve(room, "127.0.0.1", 0, broker=tls.url, compression=None)
        try:
            assert server.broker.available
            members = [await join(server, "tls"), await join(server, "tls")]
            await members[0].send("over TLS")
            for ws in members:
                assert await asyncio.wait_for(ws.recv(), 10) == "over TLS"
                await ws.close()
        finally:
            server.close()
            await server.wait_closed()
    finally:
        tls.stop()


async def test_redis_unix_socket_url() -> None:
    """``unix:///path?db=0`` (as documented): the broker joins, publishes and receives over a redis-server
    that listens on a Unix socket only. It never connected: a TCP-only option made every attempt fail."""
    import tempfile

    path = redis_server_path()
    with tempfile.TemporaryDirectory(prefix="wsr") as directory:  # short: a socket path has ~100 bytes
        unix = RedisServer(path, unix_socket=f"{directory}/redis.sock")
        unix.start()
        try:
            server = await serve(room, "127.0.0.1", 0, broker=unix.url, compression=None)
            try:
                assert server.broker.available, server.broker.stats
                members = [await join(server, "sock"), await join(server, "sock")]
                await members[0].send("over a Unix socket")
                for ws in members:
                    assert await asyncio.wait_for(ws.recv(), 10) == "over a Unix socket"
                    await ws.close()
                assert server.broker.stats.outages == 0
            finally:
                server.close()
                await server.wait_closed()
        finally:
            unix.stop()


async def _guarded_room(ws: WebSocket) -> None:
    """As room(), but a join the broker refuses is answered "refused" (the connection stays)."""
    server: Server = ws.server  # type: ignore[attr-defined]
    channel = ws.request.path.strip("/") if ws.request is not None else ""
    try:
        await server.join(ws, channel)
    except BrokerUnavailable as exc:
        await ws.send(f"refused: {exc}")
    else:
        await ws.send("joined")
    async for message in ws:
        try:
            await server.publish(channel, message)
        except BrokerUnavailable:
            await ws.send("unavailable")


async def test_redis_channel_refused_by_an_acl_fails_alone(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A Redis user allowed the channels wscodec:room* only (and the broker's own). Joining another raises
    BrokerUnavailable and keeps nothing; once that channel is revoked from a member already in it, the
    reconnection drops it (a WARNING, its members removed) and subscribes the others. One SUBSCRIBE for
    every channel made Redis refuse them all: an outage of every channel, repeated at each reconnection."""
    import redis.asyncio as aioredis

    caplog.set_level(logging.WARNING, logger="wscodec.broker.redis")
    admin = aioredis.Redis.from_url(redis_server.url)
    acl = ["ACL", "SETUSER", "w", "on", ">pw", "~*", "+@all", "resetchannels", "&wscodec:room*", "&wscodec:?control"]
    await admin.execute_command(*acl, "&wscodec:secret")
    url = f"redis://w:pw@127.0.0.1:{redis_server.port}/0"
    server = await serve(_guarded_room, "127.0.0.1", 0, broker=url, compression=None, close_timeout=2)
    broker = server.broker
    try:
        a = await connect(f"ws://127.0.0.1:{server.port}/room1")
        assert await asyncio.wait_for(a.recv(), 10) == "joined"
        b = await connect(f"ws://127.0.0.1:{server.port}/secret")
        assert await asyncio.wait_for(b.recv(), 10) == "joined"
        await admin.execute_command(*acl)  # secret revoked: Redis disconnects the subscription
        await until(lambda: broker.stats.outages == 1 and broker.available, timeout=20.0)
        await until(lambda: "secret" not in broker.channels, timeout=20.0)
        assert broker.channels == {"room1"}
        assert server._hub().members("secret") == frozenset() and len(server._hub().members("room1")) == 1
        dropped = [
            r for r in caplog.records if "channel 'secret' (" in r.getMessage() and "channel dropped" in r.getMessage()
        ]
        assert len(dropped) == 1 and dropped[0].levelno == logging.WARNING
        await a.send("still here")
        assert await asyncio.wait_for(a.recv(), 10) == "still here"

        # Refused at join: that join fails alone, nothing of it is kept, Redis is not down.
        c = await connect(f"ws://127.0.0.1:{server.port}/forbidden")
        answer = await asyncio.wait_for(c.recv(), 10)
        assert isinstance(answer, str) and answer.startswith("refused: ") and "'forbidden'" in answer, answer
        assert "forbidden" not in broker.channels and server._hub().members("forbidden") == frozenset()
        await asyncio.sleep(0.5)
        assert broker.available and broker.stats.outages == 1
        await a.send("and now")
        assert await asyncio.wait_for(a.recv(), 10) == "and now"
        for ws in (a, b, c):
            assert ws.ready_state == WebSocket.OPEN
            await ws.close()
    finally:
        await admin.aclose()
        server.close()
        await server.wait_closed()


class _CountingTransport:
    """A transport that records the size of each write before passing it on."""

    def __init__(self, inner: asyncio.Transport) -> None:
        self._inner = inner
        self.writes: list[int] = []

    def write(self, data: Any) -> None:
        self.writes.append(len(data))
        self._inner.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_a_burst_is_written_once_per_connection() -> None:
    """Messages published in one loop iteration reach each member in one transport write (up to 16 at a
    time), in order; the member receives every one of them."""
    server = await serve(room, "127.0.0.1", 0, compression=None)
    try:
        member = await join(server, "burst")
        (server_side,) = server.connections
        transport = server_side.transport
        assert transport is not None
        # uvloop's transports are extension types whose methods cannot be patched: wrap the transport.
        counting = _CountingTransport(transport)
        server_side._transport = counting  # type: ignore[assignment]
        writes = counting.writes
        for i in range(10):  # the in-process broker does not suspend: one loop iteration
            await server.publish("burst", f"b{i}")
        assert writes == []  # queued until the end of the iteration
        got = [await asyncio.wait_for(member.recv(), 10) for _ in range(10)]
        assert got == [f"b{i}" for i in range(10)]
        assert len(writes) == 1
        writes.clear()
        for i in range(40):
            await server.publish("burst", f"c{i}")
        got = [await asyncio.wait_for(member.recv(), 10) for _ in range(40)]
        assert got == [f"c{i}" for i in range(40)]
        assert len(writes) == 3  # 16 + 16 at once, the last 8 at the end of the iteration
        server_side._transport = transport
        await member.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_redis_publish_queue_holds_its_byte_bound_with_many_waiting_publishers(
    redis_server: RedisServer,
) -> None:
    """Many publishers wait for room at once: each checks both bounds again when woken, so the queue never
    holds more than max_pending_bytes plus one message, and none of them fails while Redis is only slow."""
    import redis.asyncio as aioredis

    from wscodec.broker.redis import RedisBroker

    size = 256 * 1024
    broker = RedisBroker(redis_server.url, max_pending_bytes=1 << 20, command_timeout=10)
    await broker.start()
    other = aioredis.Redis.from_url(redis_server.url)
    peak = 0
    sampling = True

    async def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, broker._queued_bytes)
            await asyncio.sleep(0)

    sampler = asyncio.create_task(sample())
    try:
        await other.execute_command("CLIENT", "PAUSE", "1000", "WRITE")
        await asyncio.wait_for(asyncio.gather(*(broker.publish("big", b"x" * size) for _ in range(24))), 30)
        assert broker.stats.failed == 0
        assert peak <= (1 << 20) + size + 1
        await until(lambda: broker.stats.published == 24, timeout=20.0)
    finally:
        sampling = False
        await sampler
        await other.aclose()
        await broker.close()


async def test_redis_publish_with_max_pending_1_does_not_stall(redis_server: RedisServer) -> None:
    from wscodec.broker.redis import RedisBroker

    broker = RedisBroker(redis_server.url, max_pending=1)
    await broker.start()
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(10):
            await broker.publish("one", f"m{i}")
        await until(lambda: broker.stats.published == 10, timeout=20.0)
        assert loop.time() - started < 3.0  # it used to wait command_timeout (5 s) for each
        assert broker.stats.failed == 0
    finally:
        await broker.close()


async def test_redis_publish_over_max_message_size_is_refused_before_the_bus(redis_server: RedisServer) -> None:
    """One message bigger than a subscriber's output buffer would make Redis disconnect every subscriber."""
    from wscodec.broker.redis import RedisBroker

    broker = RedisBroker(redis_server.url, max_message_size=1000)
    await broker.start()
    got: list[Any] = []
    try:
        await broker.subscribe("size", lambda channel, message: got.append(message))
        with pytest.raises(ValueError, match="max_message_size"):
            await broker.publish("size", b"x" * 1001)
        await broker.publish("size", b"x" * 1000)
        await until(lambda: got == [b"x" * 1000], timeout=20.0)
        assert (broker.stats.failed, broker.stats.outages) == (0, 0)
    finally:
        await broker.close()


async def test_redis_message_from_the_bus_over_max_message_size_is_dropped(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The bound publish() keeps holds for what comes from Redis too (another program's message, or a
    process with a larger bound): dropped with a WARNING and counted, not handed to every member."""
    import redis.asyncio as aioredis

    from wscodec.broker.redis import RedisBroker

    caplog.set_level(logging.WARNING, logger="wscodec.broker.redis")
    broker = RedisBroker(redis_server.url, max_message_size=1000)
    await broker.start()
    other = aioredis.Redis.from_url(redis_server.url)
    got: list[Any] = []
    try:
        await broker.subscribe("big", lambda channel, message: got.append(message))
        for junk in (b"b" + b"x" * 1001, b"t" + b"y" * 1001):
            assert await other.publish("wscodec:big", junk) == 1
        assert await other.publish("wscodec:big", b"t" + b"z" * 1000) == 1  # at the bound: delivered
        await until(lambda: got == ["z" * 1000], timeout=20.0)
        assert (broker.stats.dropped, broker.stats.received, broker.stats.outages) == (2, 1, 0)
        assert sum("over max_message_size" in r.getMessage() for r in caplog.records) == 2
    finally:
        await other.aclose()
        await broker.close()


async def test_redis_reconnection_that_fails_while_resubscribing_tries_again(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis restarts; during the reconnection a channel is joined, and subscribing it fails (injected at
    that moment). The reconnection must go on trying, not report the broker back while it is down."""
    from wscodec.broker.redis import RedisBroker

    real_expect_ack = RedisBroker._expect_ack
    real_subscribe_channel = RedisBroker._subscribe_channel
    injected: list[str] = []

    def in_reconnector(broker: RedisBroker) -> bool:
        return broker._reconnector is not None and asyncio.current_task() is broker._reconnector

    def expect_ack(self: RedisBroker, key: bytes) -> Any:
        if in_reconnector(self) and key == self._control.encode() and "join" not in injected:
            injected.append("join")  # a member joins while the reconnection's SUBSCRIBE is on its way
            asyncio.get_running_loop().create_task(self.subscribe("late", lambda channel, message: got.append(message)))
        return real_expect_ack(self, key)

    async def subscribe_channel(self: RedisBroker, channel: str) -> None:
        if in_reconnector(self) and channel == "late" and "failure" not in injected:
            injected.append("failure")
            self._outage(ConnectionError("injected: the connection broke while subscribing"))
            return
        await real_subscribe_channel(self, channel)

    monkeypatch.setattr(RedisBroker, "_expect_ack", expect_ack)
    monkeypatch.setattr(RedisBroker, "_subscribe_channel", subscribe_channel)
    got: list[Any] = []
    broker = RedisBroker(redis_server.url, reconnect_min=0.05, reconnect_max=0.2)
    await broker.start()
    try:
        await broker.subscribe("room", lambda channel, message: None)
        redis_server.stop()
        redis_server.start()
        await until(lambda: injected == ["join", "failure"], timeout=20.0)
        await until(lambda: broker.available and "late" in broker.channels, timeout=20.0)
        await broker.publish("late", "after")
        await until(lambda: got == ["after"], timeout=20.0)
    finally:
        await broker.close()


class _FreezableRelay:
    """A TCP relay to Redis whose established flows can be frozen: from then on they swallow what they are
    sent and answer nothing, with no FIN and no reset, as a flow that a NAT or a load balancer forgot.
    Flows opened after the freeze relay normally."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.flows: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter, asyncio.Event]] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    def freeze(self) -> None:
        for _writer, _up_writer, frozen in self.flows:
            frozen.set()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        frozen = asyncio.Event()
        self.flows.append((writer, up_writer, frozen))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                if not frozen.is_set():
                    sink.write(data)
                    await sink.drain()

        with contextlib.suppress(Exception):
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer, up_writer, _frozen in self.flows:
            writer.close()
            up_writer.close()


async def test_redis_subscription_that_goes_silent_is_found_and_resubscribed(redis_server: RedisServer) -> None:
    """The subscription's flow goes silent without FIN or reset: a PING after ping_interval idle seconds,
    unanswered within command_timeout, makes it an outage, and the reconnection subscribes again."""
    import redis.asyncio as aioredis

    from wscodec.broker.redis import RedisBroker

    relay = _FreezableRelay(redis_server.port)
    port = await relay.start()
    broker = RedisBroker(
        f"redis://127.0.0.1:{port}/0", ping_interval=0.5, command_timeout=1.0, reconnect_min=0.05, reconnect_max=0.2
    )
    other = aioredis.Redis.from_url(redis_server.url)  # publishes straight to Redis, not through the relay
    got: list[Any] = []
    await broker.start()
    try:
        await broker.subscribe("quiet", lambda channel, message: got.append(message))
        await other.publish("wscodec:quiet", b"tbefore")
        await until(lambda: got == ["before"], timeout=20.0)
        relay.freeze()
        await until(lambda: broker.stats.outages == 1, timeout=15)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while "after" not in got and loop.time() < deadline:
            await other.publish("wscodec:quiet", b"tafter")  # lost until the subscription is back
            await asyncio.sleep(0.1)
        assert "after" in got and broker.stats.outages == 1
    finally:
        await broker.close()
        await other.aclose()
        await relay.close()


async def test_a_member_removed_between_two_publishes_gets_the_first() -> None:
    """A publish that reached A and B, B removed, then a publish to A alone, all in one loop iteration (the
    in-process broker does not suspend): B still gets the first, as a member then, and at once, not when
    something else is next written to it; A gets both."""
    server = await serve(room, "127.0.0.1", 0, compression=None, ping_interval=None)
    try:
        a = await join(server, "kick")
        (a_side,) = server.connections
        b = await join(server, "kick")
        (b_side,) = server.connections - {a_side}
        await server.publish("kick", "kicking B")
        await server.leave(b_side, "kick")
        await server.publish("kick", "B was removed")
        assert await asyncio.wait_for(b.recv(), 5) == "kicking B"
        assert [await asyncio.wait_for(a.recv(), 5) for _ in range(2)] == ["kicking B", "B was removed"]
        assert b_side.connection.bytes_to_send == 0
        await a.close()
        await b.close()
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("name", ["\ud800", "room \udfff"])
async def test_a_channel_name_no_bus_can_carry_is_refused_and_stores_nothing(
    broker_url: str, name: str, request: pytest.FixtureRequest
) -> None:
    """A channel name that is not valid Unicode text (a lone surrogate, as JSON's "\\ud800" gives): join
    and publish raise ValueError on every broker, nothing is kept, and the broker goes on serving (with
    Redis, also across a restart: a stored name made every reconnection fail)."""
    redis: RedisServer | None = None if broker_url == "memory://" else request.getfixturevalue("redis_server")
    server = await serve(room, "127.0.0.1", 0, broker=broker_url, compression=None, close_timeout=2)
    broker = server.broker
    try:
        member = await join(server, "lobby")
        (server_side,) = server.connections
        with pytest.raises(ValueError, match="valid Unicode"):
            await server.join(server_side, name)
        with pytest.raises(ValueError, match="valid Unicode"):
            await server.publish(name, "x")
        with pytest.raises(ValueError, match="valid Unicode"):
            await broker.subscribe(name, lambda channel, message: None)
        assert broker.channels == {"lobby"}
        assert server._hub().channels_of(server_side) == {"lobby"}
        if redis is not None:
            redis.stop()
            await until(lambda: not broker.available, timeout=20.0)
            redis.start()
            await until(lambda: broker.available, timeout=20.0)
        await member.send("still here")
        assert await asyncio.wait_for(member.recv(), 10) == "still here"
        await member.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_a_second_subscriber_returns_once_the_first_subscription_is_confirmed() -> None:
    """Two subscribers of one channel, the second while the first's subscription is on its way to the bus:
    neither subscribe() returns before the bus confirms it (what is published after it returns is seen)."""
    events: list[str] = []

    class SlowBus(InProcessBroker):
        async def _subscribe_channel(self, channel: str) -> None:
            await asyncio.sleep(0.3)
            events.append("confirmed")

    broker = SlowBus()

    async def subscriber(name: str) -> None:
        await broker.subscribe("room", lambda channel, message: None)
        events.append(name)

    first = asyncio.ensure_future(subscriber("first returned"))
    await asyncio.sleep(0.05)
    await asyncio.wait_for(subscriber("second returned"), 5)
    await asyncio.wait_for(first, 5)
    assert events[0] == "confirmed"
    assert sorted(events[1:]) == ["first returned", "second returned"]
    await broker.subscribe("room", lambda channel, message: None)  # later ones: at once, nothing pending
    assert events.count("confirmed") == 1


def test_the_redis_brokers_own_channel_name_is_refused() -> None:
    """The Redis broker's control subscription keeps its connection in pub/sub mode: a channel of that
    name, joined then left, unsubscribed it. It is refused, before anything is stored."""
    pytest.importorskip("redis", reason="the redis package: pip install 'wscodec[redis]'")
    from wscodec.broker.redis import RedisBroker

    broker = RedisBroker("redis://127.0.0.1:1/0")

    async def attempt() -> None:
        with pytest.raises(ValueError, match="reserved"):
            await broker.subscribe("\x00control", lambda channel, message: None)
        with pytest.raises(ValueError, match="reserved"):
            await broker.publish("\x00control", "x")

    asyncio.run(attempt())
    assert broker.channels == frozenset()


@pytest.mark.parametrize("how", ["close", "outage"])
async def test_a_publish_waiting_for_room_fails_when_the_broker_closes_or_redis_goes(
    redis_server: RedisServer, how: str
) -> None:
    """A publish waiting for room (the queue full, Redis paused) when the broker closes or Redis goes away:
    BrokerUnavailable, not a return as if queued (its message sat in the queue for ever, uncounted)."""
    import redis.asyncio as aioredis

    from wscodec.broker.redis import RedisBroker

    broker = RedisBroker(redis_server.url, max_pending=2, command_timeout=5, reconnect_min=5, reconnect_max=5)
    other = aioredis.Redis.from_url(redis_server.url)
    await broker.start()
    try:
        await other.execute_command("CLIENT", "PAUSE", "3000", "ALL")
        for i in range(3):  # the writer takes the first (stuck on the paused Redis); two fill the queue
            await broker.publish("c", f"m{i}")
            await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(broker.publish("c", "late"))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        failed = broker.stats.failed
        if how == "close":
            await broker.close()
        else:
            redis_server.stop()
        with pytest.raises(BrokerUnavailable):
            await asyncio.wait_for(waiting, 10)
        assert broker.stats.failed >= failed + 1
        assert not broker._queue
    finally:
        await broker.close()
        await other.aclose()


async def test_closing_the_redis_broker_sends_what_publish_accepted_first(redis_server: RedisServer) -> None:
    """publish() returned, so the message is the broker's to deliver: close() right after it sends the queue
    before disconnecting (it used to cancel the writer and drop the queue, or the batch in flight uncounted)."""
    from wscodec.broker.redis import RedisBroker

    listener = RedisBroker(redis_server.url)
    await listener.start()
    seen: list[Any] = []
    await listener.subscribe("flush", lambda _channel, message: seen.append(message))
    broker = RedisBroker(redis_server.url, max_pending=8)  # the queue fills: some wait on the writer
    await broker.start()
    try:
        for i in range(50):
            await broker.publish("flush", f"m{i}")
        await broker.close()
        assert (broker.stats.published, broker.stats.failed) == (50, 0)
        await until(lambda: len(seen) == 50, timeout=10)
        assert seen == [f"m{i}" for i in range(50)]
        with pytest.raises(BrokerUnavailable):
            await broker.publish("flush", "after close")
    finally:
        await broker.close()
        await listener.close()


async def test_a_broker_closed_with_redis_silent_counts_what_it_gave_up(redis_server: RedisServer) -> None:
    """Redis paused (CLIENT PAUSE) past command_timeout: close() waits that long, then what was accepted and
    not confirmed is counted in stats.failed, none of it lost silently."""
    import redis.asyncio as aioredis

    from wscodec.broker.redis import RedisBroker

    broker = RedisBroker(redis_server.url, command_timeout=1)
    other = aioredis.Redis.from_url(redis_server.url)
    await broker.start()
    try:
        await other.execute_command("CLIENT", "PAUSE", "4000", "ALL")
        for i in range(5):
            await broker.publish("quiet", f"m{i}")
        await asyncio.sleep(0.2)  # the writer has taken them: a batch in flight, stuck on the paused Redis
        loop = asyncio.get_running_loop()
        started = loop.time()
        await broker.close()
        assert loop.time() - started < 3  # command_timeout, not the pause
        assert (broker.stats.published, broker.stats.failed) == (0, 5)
    finally:
        await broker.close()
        await other.aclose()


async def test_a_close_cancelled_while_it_sends_the_queue_still_takes_the_broker_down(
    redis_server: RedisServer,
) -> None:
    """close() under a timeout (wait_closed() in asyncio.timeout, as documented) cancelled while it waits for
    the queue to go out: the broker's tasks and connections end all the same, not left running forever."""
    import redis.asyncio as aioredis

    from wscodec.broker.redis import RedisBroker

    broker = RedisBroker(redis_server.url)
    other = aioredis.Redis.from_url(redis_server.url)
    await broker.start()
    try:
        await other.execute_command("CLIENT", "PAUSE", "2000", "ALL")
        await broker.publish("held", "m")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(broker.close(), 0.3)
        tasks = [broker._reader, broker._writer, broker._reconnector]
        assert all(task is None or task.done() for task in tasks), tasks
        assert broker._pubsub is None
        assert broker.stats.published == 0 and broker.stats.failed == 1
    finally:
        await broker.close()
        await other.aclose()


async def test_a_channel_left_while_the_reconnection_subscribes_is_unsubscribed(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis restarts; a channel's last member leaves while the reconnection's SUBSCRIBE (which names it) is
    on its way. Once back, Redis must not keep that subscription (its messages crossed the bus for
    nothing, until the channel was joined and left again)."""
    import redis.asyncio as aioredis

    from wscodec.broker.redis import RedisBroker

    real_expect_ack = RedisBroker._expect_ack
    left: list[str] = []
    gone = lambda channel, message: None  # noqa: E731

    def expect_ack(self: RedisBroker, key: bytes) -> Any:
        reconnecting = self._reconnector is not None and asyncio.current_task() is self._reconnector
        if reconnecting and key == self._control.encode() and not left:
            left.append("gone")  # the last member leaves while the SUBSCRIBE is on its way
            asyncio.get_running_loop().create_task(self.unsubscribe("gone", gone))
        return real_expect_ack(self, key)

    monkeypatch.setattr(RedisBroker, "_expect_ack", expect_ack)
    broker = RedisBroker(redis_server.url, reconnect_min=0.05, reconnect_max=0.2)
    await broker.start()
    other: Any = None
    try:
        await broker.subscribe("gone", gone)
        await broker.subscribe("keep", lambda channel, message: None)
        redis_server.stop()
        redis_server.start()
        await until(lambda: left == ["gone"] and broker.available, timeout=20.0)
        other = aioredis.Redis.from_url(redis_server.url)

        async def subscriptions() -> dict[bytes, int]:
            counts = await other.execute_command("PUBSUB", "NUMSUB", "wscodec:gone", "wscodec:keep")
            return dict(zip(counts[::2], counts[1::2], strict=True))

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while (await subscriptions())[b"wscodec:gone"] != 0 and loop.time() < deadline:
            await asyncio.sleep(0.05)
        assert await subscriptions() == {b"wscodec:gone": 0, b"wscodec:keep": 1}
        assert broker.channels == frozenset({"keep"})
    finally:
        await broker.close()
        if other is not None:
            await other.aclose()


async def test_a_channel_joined_again_while_the_connection_catches_up_stays_subscribed(
    redis_server: RedisServer,
) -> None:
    """Two channels are left while start()'s SUBSCRIBE (which names them) is on its way; while the first
    one's UNSUBSCRIBE is then on its way, the other is joined again. It must stay subscribed: the list of
    channels to unsubscribe is checked again at each step (a publish to it was lost)."""
    from wscodec.broker.redis import RedisBroker

    broker = RedisBroker(redis_server.url)
    got: list[tuple[str, Any]] = []

    def callback(channel: str, message: Any) -> None:
        got.append((channel, message))

    await broker.subscribe("x1", callback)  # remembered: start() subscribes them
    await broker.subscribe("x2", callback)
    rejoined: list[str] = []
    tasks: list[asyncio.Task[None]] = []
    real_unsubscribe, real_expect_ack = broker._unsubscribe_channel, broker._expect_ack

    async def unsubscribe_channel(channel: str) -> None:
        if broker._up and not rejoined:  # the first UNSUBSCRIBE of the catching up: the other one rejoins
            rejoined.append("x2" if channel == "x1" else "x1")
            tasks.append(asyncio.ensure_future(broker.subscribe(rejoined[0], callback)))
            await asyncio.sleep(0.2)
        await real_unsubscribe(channel)

    async def leave_both() -> None:
        await broker.unsubscribe("x1", callback)
        await broker.unsubscribe("x2", callback)

    def expect_ack(key: bytes) -> Any:  # called once _connect has taken its list of channels
        if not tasks:
            tasks.append(asyncio.ensure_future(leave_both()))
        return real_expect_ack(key)

    broker._unsubscribe_channel = unsubscribe_channel  # type: ignore[method-assign]
    broker._expect_ack = expect_ack  # type: ignore[method-assign]
    await broker.start()
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        assert rejoined and broker.channels == frozenset(rejoined)
        await broker.publish(rejoined[0], "hello")
        await until(lambda: got == [(rejoined[0], "hello")], timeout=5)
    finally:
        await broker.close()


async def test_a_connection_dropped_as_soon_as_it_is_back_is_retried_ever_more_slowly(
    redis_server: RedisServer,
) -> None:
    """Redis (or a proxy in front of it) accepts the subscription and drops it at once, again and again:
    the back-off goes on growing across those short-lived connections. It started again from
    ``reconnect_min`` each time, so the broker reconnected about every 80 ms, with two WARNINGs each time."""
    import redis.asyncio as aioredis

    from wscodec.broker.redis import RedisBroker

    broker = RedisBroker(redis_server.url, reconnect_min=0.1, reconnect_max=5.0)
    admin = aioredis.Redis.from_url(redis_server.url)
    await broker.start()
    try:
        await broker.subscribe("flap", lambda channel, message: None)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3.0
        while loop.time() < deadline:
            await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            await asyncio.sleep(0.02)
        # Back-off 0.1, 0.2, 0.4, 0.8, 1.6 s (each times 0.5 to 1): at most six outages in 3 s. Without the
        # growth, 3 s / (0.05 to 0.1 s) is 30 or more.
        assert 2 <= broker.stats.outages <= 8, broker.stats.outages
        await until(lambda: broker.available, timeout=15)
    finally:
        await broker.close()
        await admin.aclose()


async def test_a_long_outage_does_not_overflow_the_back_off() -> None:
    """The reconnection's delay is ``reconnect_min * 2**attempt`` capped at ``reconnect_max``; past 1023
    attempts (some 85 minutes of outage at 5 s each) the product raised OverflowError, which ended the
    reconnection task: the broker never came back."""
    from wscodec.broker.redis import RedisBroker

    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    broker = RedisBroker(f"redis://127.0.0.1:{port}/0", reconnect_min=0.01, reconnect_max=0.02, connect_timeout=0.5)
    broker._sub = broker._pub = broker._client()
    task = asyncio.ensure_future(broker._reconnect(5000))
    try:
        await asyncio.sleep(0.3)
        assert not task.done(), task.exception() if task.done() else None
    finally:
        broker._closed = True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await broker.close()


async def test_a_refused_channel_joined_while_reconnecting_is_dropped_alone(redis_server: RedisServer) -> None:
    """A channel Redis refuses (an ACL), joined while the reconnection subscribes the others: it is
    dropped alone (``on_dropped``). Its refusal failed the whole reconnection, which was retried a back-off
    later, while ``available`` said True with no subscription connection."""
    import redis.asyncio as aioredis

    from wscodec.broker.redis import RedisBroker

    admin = aioredis.Redis.from_url(redis_server.url)
    acl = ["ACL", "SETUSER", "w", "on", ">pw", "~*", "+@all", "resetchannels", "&wscodec:ok*", "&wscodec:?control"]
    await admin.execute_command(*acl)
    broker = RedisBroker(f"redis://w:pw@127.0.0.1:{redis_server.port}/0", reconnect_min=1.0, reconnect_max=1.0)
    got: list[Any] = []
    dropped: list[str] = []
    joining: list[asyncio.Future[None]] = []
    await broker.start()
    try:
        await broker.subscribe("ok1", lambda channel, message: got.append(message))
        make_pubsub = broker._sub.pubsub

        def pubsub(**options: Any) -> Any:  # the reconnection's: a join lands while it subscribes
            made = make_pubsub(**options)
            subscribe = made.subscribe

            async def subscribing(*args: Any, **kwargs: Any) -> Any:
                if not joining:
                    joining.append(
                        asyncio.ensure_future(
                            broker.subscribe("no1", lambda *_: None, lambda channel, error: dropped.append(channel))
                        )
                    )
                    await asyncio.sleep(0)
                return await subscribe(*args, **kwargs)

            made.subscribe = subscribing
            return made

        broker._sub.pubsub = pubsub
        await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        unsubscribed_while_available = 0
        while loop.time() < deadline and not (dropped and broker.available):
            await asyncio.sleep(0.02)
            if broker.available and broker._pubsub is None:
                unsubscribed_while_available += 1
        assert dropped == ["no1"]
        assert broker.stats.outages == 1 and unsubscribed_while_available == 0
        await broker.publish("ok1", "still delivered")
        await until(lambda: got == ["still delivered"], timeout=10)
    finally:
        await broker.close()
        await admin.aclose()


async def test_a_redis_subscribe_cancelled_while_waiting_for_the_lock_keeps_nothing(redis_server: RedisServer) -> None:
    """A subscribe() cancelled (a timeout) while another channel's SUBSCRIBE holds the broker's lock: the
    channel stayed listed, never subscribed on Redis, so a later subscriber returned at once and got
    nothing; and the ack it left behind took the answer to the next SUBSCRIBE of the channel, whose
    subscriber then waited command_timeout and took Redis for down."""
    from wscodec.broker.redis import RedisBroker

    broker = RedisBroker(redis_server.url, command_timeout=2.0)
    await broker.start()
    try:

        def gone(channel: str, message: Any) -> None:
            raise AssertionError("the cancelled subscriber was called")

        async with broker._subscribe_lock:  # another channel's SUBSCRIBE on its way
            cancelled = asyncio.ensure_future(broker.subscribe("room", gone))
            await asyncio.sleep(0.05)
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            assert broker.channels == frozenset()
        await broker.unsubscribe("room", gone)  # what a careful caller does: nothing left to do
        got: list[Any] = []
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(broker.subscribe("room", lambda channel, message: got.append(message)), 5)
        assert loop.time() - started < 1.0
        await broker.publish("room", "hello")
        await until(lambda: got == ["hello"], timeout=5)
        assert broker.available and broker.stats.outages == 0
        assert not broker._acks and not broker._inflight
    finally:
        await broker.close()


async def test_a_cancelled_first_join_is_no_member_and_the_others_are_subscribed(broker_url: str) -> None:
    """The first join of a channel cancelled (asyncio.timeout, a TaskGroup) while its subscription is on its
    way to the bus: that connection is no member, the join that waited for the same subscription returns
    once it is active, and so does a later one; both receive. The cancelled one stayed a member, and with
    Redis the channel was never subscribed: later joins returned at once and their members got nothing."""
    broker = slow_to_subscribe(broker_url)
    server = await serve(room, "127.0.0.1", 0, broker=broker, compression=None)
    try:
        clients = [await join(server, "warmup") for _ in range(3)]
        one, two, three = server_sides(server, clients)
        cancelled = asyncio.ensure_future(server.join(one, "new"))
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(server.join(two, "new"))
        await asyncio.sleep(0.05)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert server._hub().channels_of(one) == {"warmup"}
        await asyncio.wait_for(waiting, 5)
        await asyncio.wait_for(server.join(three, "new"), 5)
        assert server._hub().members("new") == {two, three}
        await server.publish("new", "after")
        for ws in clients[1:]:
            assert await asyncio.wait_for(ws.recv(), 10) == "after"
        await clients[0].send("ping")  # the cancelled one got nothing of "new": its next message is its own
        assert await asyncio.wait_for(clients[0].recv(), 10) == "ping"
        for ws in clients:
            await ws.close()
    finally:
        server.close()
        await server.wait_closed()
        await broker.close()


async def test_a_channel_left_while_its_first_join_waits_for_the_lock_is_not_left_subscribed(
    redis_server: RedisServer,
) -> None:
    """leave() while the first join's SUBSCRIBE waits for the broker's lock (another channel's on its way):
    the UNSUBSCRIBE went out first, then the SUBSCRIBE, and Redis sent the channel's traffic to a process
    with no member of it."""
    import redis.asyncio as aioredis

    server = await serve(room, "127.0.0.1", 0, broker=redis_server.url, compression=None)
    admin = aioredis.Redis.from_url(redis_server.url)
    try:
        client = await join(server, "warmup")
        (member,) = server.connections
        broker: Any = server.broker
        async with broker._subscribe_lock:
            joining = asyncio.ensure_future(server.join(member, "room"))
            await asyncio.sleep(0.05)
            leaving = asyncio.ensure_future(server.leave(member, "room"))
            await asyncio.sleep(0.05)
        await asyncio.wait_for(joining, 5)
        await asyncio.wait_for(leaving, 5)  # once the subscription it undoes is done
        await until(lambda: "room" not in broker.channels, timeout=5)

        async def subscribers() -> int:
            ((_name, count),) = await admin.pubsub_numsub("wscodec:room")
            return int(count)

        deadline = asyncio.get_running_loop().time() + 5
        while await subscribers() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert await subscribers() == 0
        assert server._hub().members("room") == frozenset()
        await client.close()
    finally:
        await admin.aclose()
        server.close()
        await server.wait_closed()


async def test_a_leave_or_unsubscribe_cancelled_while_the_subscription_is_on_its_way_still_unsubscribes(
    redis_server: RedisServer,
) -> None:
    """leave() (server) and unsubscribe() (broker) under a timeout that cancels them while they wait for the
    channel's subscription on its way: the UNSUBSCRIBE after it was never sent, and Redis kept sending the
    channel's traffic to a process with no member of it (the broker no longer even listing the channel)."""
    import redis.asyncio as aioredis

    server = await serve(room, "127.0.0.1", 0, broker=redis_server.url, compression=None)
    admin = aioredis.Redis.from_url(redis_server.url)

    async def subscribers(channel: str) -> int:
        ((_name, count),) = await admin.pubsub_numsub(f"wscodec:{channel}")
        return int(count)

    try:
        client = await join(server, "warmup")
        (member,) = server.connections
        broker: Any = server.broker
        gone = lambda channel, message: None  # noqa: E731
        async with broker._subscribe_lock:  # the SUBSCRIBEs below wait behind another on its way
            joining = asyncio.ensure_future(server.join(member, "room"))
            subscribing = asyncio.ensure_future(broker.subscribe("other", gone))
            await asyncio.sleep(0.05)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(server.leave(member, "room"), 0.1)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(broker.unsubscribe("other", gone), 0.1)
        await asyncio.wait_for(asyncio.gather(joining, subscribing), 5)
        await until(lambda: not {"room", "other"} & broker.channels, timeout=5)
        deadline = asyncio.get_running_loop().time() + 5
        while (
            await subscribers("room") or await subscribers("other")
        ) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert (await subscribers("room"), await subscribers("other")) == (0, 0)
        assert await subscribers("warmup") == 1
        await client.close()
    finally:
        await admin.aclose()
        server.close()
        await server.wait_closed()


async def test_a_closed_in_process_broker_checks_the_message_first_as_the_redis_one() -> None:
    """After close(), a publish of a message no broker takes raises what it raises on every broker (a
    TypeError, a UnicodeEncodeError), counted nowhere; only a valid one is BrokerUnavailable."""
    broker = InProcessBroker()
    await broker.close()
    with pytest.raises(UnicodeEncodeError):
        await broker.publish("room", "bad \ud800")
    with pytest.raises(TypeError):
        await broker.publish("room", 42)  # type: ignore[arg-type]
    assert broker.stats.failed == 0
    with pytest.raises(BrokerUnavailable):
        await broker.publish("room", "fine")
    assert broker.stats.failed == 1


async def test_a_publish_redis_refuses_fails_alone(redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    """A Redis user whose ACL does not cover one channel: a publish to it is counted failed, with one
    WARNING however many there are, and the others of its batch and after it are delivered. It was an
    outage: the connection dropped, the queue with it, BrokerUnavailable for every channel meanwhile, and
    the delivered messages of its batch counted failed."""
    import redis.asyncio as aioredis

    from wscodec.broker.redis import RedisBroker

    caplog.set_level(logging.WARNING, logger="wscodec.broker.redis")
    admin = aioredis.Redis.from_url(redis_server.url)
    acl = ["ACL", "SETUSER", "w", "on", ">pw", "~*", "+@all", "resetchannels", "&wscodec:ok*", "&wscodec:?control"]
    await admin.execute_command(*acl)
    url = f"redis://w:pw@127.0.0.1:{redis_server.port}/0"
    publisher, other = RedisBroker(url), RedisBroker(url)
    local: list[Any] = []
    remote: list[Any] = []
    await publisher.start()
    await other.start()
    try:
        await publisher.subscribe("ok", lambda channel, message: local.append(message))
        await other.subscribe("ok", lambda channel, message: remote.append(message))
        expected = []
        for i in range(20):  # in one batch: the refused ones among the others
            await publisher.publish("ok", f"a{i}")
            expected.append(f"a{i}")
            if i % 5 == 0:
                await publisher.publish("forbidden", "x")
        await until(lambda: len(remote) == len(expected), timeout=10)
        for i in range(5):  # and after it
            await publisher.publish("ok", f"b{i}")
            expected.append(f"b{i}")
            await publisher.publish("forbidden", "x")
            await asyncio.sleep(0.01)
        await until(lambda: len(remote) == len(expected) and len(local) == len(expected), timeout=10)
        assert local == remote == expected
        assert publisher.available and publisher.stats.outages == 0
        assert publisher.stats.failed == 9 and publisher.stats.published == len(expected)
        warnings = [r for r in caplog.records if "refused" in r.getMessage() and "publish" in r.getMessage()]
        assert len(warnings) == 1 and "'forbidden'" in warnings[0].getMessage()
        assert not any("unreachable" in r.getMessage() or "lost" in r.getMessage() for r in caplog.records)
    finally:
        await publisher.close()
        await other.close()
        await admin.aclose()


async def test_a_text_message_that_is_not_valid_unicode_is_refused_at_publish(room_server: Server) -> None:
    """A str with a lone surrogate (as json.loads('"\\ud800"') gives): publish() raises UnicodeEncodeError on
    every broker and nothing is delivered. The in-process broker returned, the message lost at delivery."""
    member = await join(room_server, "c")
    published = room_server.broker.stats.published
    with pytest.raises(UnicodeEncodeError):
        await room_server.publish("c", "bad \ud800")
    assert room_server.broker.stats.published == published
    await room_server.publish("c", "good \u00e9")
    assert await asyncio.wait_for(member.recv(), 10) == "good \u00e9"
    await member.close()


async def test_every_broker_refuses_the_reserved_channel_and_publishes_after_close(broker_url: str) -> None:
    """As documented for every broker: the channel "\\x00control" (the Redis broker's own subscription) is
    refused, and a publish after close() raises BrokerUnavailable. The in-process broker took both."""
    broker = make_broker(broker_url)
    await broker.start()
    try:
        with pytest.raises(ValueError, match="reserved"):
            await broker.subscribe("\x00control", lambda channel, message: None)
        with pytest.raises(ValueError, match="reserved"):
            await broker.publish("\x00control", "x")
        assert broker.channels == frozenset()
        await broker.publish("open", "x")
    finally:
        await broker.close()
    assert not broker.available
    failed = broker.stats.failed
    with pytest.raises(BrokerUnavailable):
        await broker.publish("open", "x")
    assert broker.stats.failed == failed + 1


async def test_a_serve_that_cannot_listen_closes_the_broker_it_made(redis_server: RedisServer) -> None:
    """serve(broker="redis://...") on a busy port: the OSError comes, and the broker made from the URL
    (started first, so that the server never listens without it) is closed. There is no Server to close it
    later: each failed attempt left its Redis connections and tasks running. Awaited again once the port is
    free, the same serve() starts with a broker that works (not the closed one)."""
    import redis.asyncio as aioredis

    admin = aioredis.Redis.from_url(redis_server.url)
    try:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            clients_before = len(await admin.client_list())
            tasks_before = len(asyncio.all_tasks())
            starting = serve(room, "127.0.0.1", port, broker=redis_server.url, reuse_address=False)
            for _ in range(3):
                with pytest.raises(OSError):
                    await starting
            await asyncio.sleep(0.2)  # a connection being torn down shows in CLIENT LIST a moment longer
            assert len(await admin.client_list()) == clients_before
            assert len(asyncio.all_tasks()) == tasks_before
        server = await starting  # the port is free now: the same serve() starts, with a broker that works
        try:
            ws = await connect(f"ws://127.0.0.1:{port}/news", compression=None, open_timeout=10)
            assert await asyncio.wait_for(ws.recv(), 10) == "joined"
            await server.publish("news", "fresh")
            assert await asyncio.wait_for(ws.recv(), 10) == "fresh"
            await ws.close()
        finally:
            server.close()
            await server.wait_closed()
    finally:
        await admin.aclose()
