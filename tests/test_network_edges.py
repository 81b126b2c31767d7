"""Network edges of the asyncio client and server: IPv6 loopback with its bracketed Host header, TLS
failures with certificates made in Python (trustme), bad frames and a huge response head from a server.

After each failure the server still serves a fresh client.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import ssl
import time
from typing import Any

import pytest
import trustme
from _raw_handshake import accept_response
from _waiting import until

from wscodec import ConnectionClosed, InvalidHandshake, encode_frame
from wscodec.asyncio import WebSocket, connect, serve

pytestmark = pytest.mark.timeout(60)


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


# --------------------------------------------------------------------------- IPv6


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback (::1) on this host")
async def test_ipv6_loopback_with_bracketed_host() -> None:
    seen: list[tuple[str, str | None]] = []

    async def handler(ws: WebSocket) -> None:
        assert ws.request is not None
        seen.append((ws.request.header("Host", ""), ws.url))
        await echo(ws)

    async with serve(handler, "::1", 0) as server:
        port = server.port
        async with connect(f"ws://[::1]:{port}/v6?x=1", open_timeout=10) as ws:
            await ws.send("over v6")
            assert await asyncio.wait_for(ws.recv(), 10) == "over v6"
            assert ws.remote_address[0] == "::1"
    # RFC 7230 section 5.4 / RFC 3986 section 3.2.2: an IPv6 literal is bracketed in Host.
    assert seen == [(f"[::1]:{port}", f"ws://[::1]:{port}/v6?x=1")]


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def wss_served(port: int, ca: trustme.CA) -> None:
    async with connect(f"wss://localhost:{port}/", ssl=client_context(ca), open_timeout=10) as ws:
        await ws.send("secure")
        assert await asyncio.wait_for(ws.recv(), 10) == "secure"
        assert ws.transport is not None and ws.transport.get_extra_info("ssl_object") is not None


@pytest.mark.parametrize(
    "junk",
    [
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        bytes(range(256)) * 4,
    ],
    ids=["plaintext-http", "garbage"],
)
async def test_plaintext_or_garbage_to_a_wss_server(ca: trustme.CA, junk: bytes) -> None:
    handled: list[WebSocket] = []

    async def handler(ws: WebSocket) -> None:
        handled.append(ws)
        await echo(ws)

    async with serve(handler, "127.0.0.1", 0, ssl=server_context(ca, "localhost")) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(junk)
        answer = b""
        with contextlib.suppress(ConnectionError):
            answer = await asyncio.wait_for(reader.read(), 20)
        writer.close()
        assert b"101" not in answer  # whatever TLS says (an alert, or nothing), never an upgrade
        assert handled == []
        await wss_served(server.port, ca)
        assert len(handled) == 1


async def test_hostname_mismatch_is_refused_by_the_client(ca: trustme.CA) -> None:
    async with serve(echo, "127.0.0.1", 0, ssl=server_context(ca, "not-this-host.example")) as server:
        with pytest.raises(ssl.SSLCertVerificationError, match=r"(?i)hostname|match"):
            await connect(f"wss://localhost:{server.port}/", ssl=client_context(ca), open_timeout=10)
        # The wrong certificate is the server's whole problem: a client that trusts it by name still works.
        context = client_context(ca)
        context.check_hostname = False
        async with connect(f"wss://localhost:{server.port}/", ssl=context, open_timeout=10) as ws:
            await ws.send("ok")
            assert await asyncio.wait_for(ws.recv(), 10) == "ok"


async def test_untrusted_certificate_is_refused(ca: trustme.CA) -> None:
    other = trustme.CA()
    async with serve(echo, "127.0.0.1", 0, ssl=server_context(other, "localhost")) as server:
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect(f"wss://localhost:{server.port}/", ssl=client_context(ca), open_timeout=10)


async def test_stalled_tls_handshake_is_bounded_by_open_timeout(ca: trustme.CA) -> None:
    """A server that accepts TCP and never speaks TLS: connect() gives up at open_timeout."""
    accepted = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        accepted.set()
        await reader.read()

    silent = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="timed out"):
            await connect(f"wss://localhost:{port}/", ssl=client_context(ca), open_timeout=1.0)
        assert accepted.is_set()
        assert time.monotonic() - started < 30
    finally:
        for writer in writers:
            writer.transport.abort()
        silent.close()


async def test_stalled_tls_handshake_at_the_server_is_bounded_by_open_timeout(ca: trustme.CA) -> None:
    """A client that opens TCP to a wss server and never sends its ClientHello is dropped at open_timeout
    (the TLS handshake counts as part of the opening handshake), and the server still serves."""
    async with serve(echo, "127.0.0.1", 0, ssl=server_context(ca, "localhost"), open_timeout=1.0) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        started = time.monotonic()
        with contextlib.suppress(ConnectionError):
            assert await asyncio.wait_for(reader.read(), 30) == b""
        writer.transport.abort()
        assert time.monotonic() - started < 20  # asyncio's own TLS handshake bound is 60 s
        await wss_served(server.port, ca)


# --------------------------------------------------------------------------- a hostile server


async def hostile_server(answer: Any) -> tuple[asyncio.AbstractServer, list[bytes]]:
    """A server that answers every request head with ``answer(head)`` and records what it reads next."""
    received: list[bytes] = []

    async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            writer.write(answer(head))
            while data := await reader.read(65536):
                received.append(data)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(serve_one, "127.0.0.1", 0), received


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (encode_frame(1, b"masked", mask=b"abcd"), 1002),  # RFC 6455 section 5.1: a server never masks
        (b"\xc1\x02hi", 1002),  # RSV1 without an extension that defines it (section 5.2)
        (b"\xa1\x02hi", 1002),  # RSV2
        (encode_frame(2, b"z" * 2048), 1009),  # over max_size
        (encode_frame(1, b"\xed\xa0\x80"), 1007),  # UTF-8 of a surrogate (section 8.1)
        (b"\x83\x00", 1002),  # reserved opcode
    ],
    ids=["masked", "rsv1", "rsv2", "oversized", "invalid-utf8", "reserved-opcode"],
)
async def test_bad_frames_from_a_server_fail_the_client(frame: bytes, code: int) -> None:
    server, received = await hostile_server(lambda head: accept_response(head) + frame)
    port = server.sockets[0].getsockname()[1]
    try:
        ws = await connect(f"ws://127.0.0.1:{port}/", open_timeout=10, max_size=1024, compression=None)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        await until(lambda: b"".join(received)[:1] == b"\x88", timeout=10)
        data = b"".join(received)
        # Our Close (masked, as a client's must be): the code of the violation.
        length = data[1] & 0x7F
        mask, payload = data[2:6], data[6 : 6 + length]
        unmasked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert int.from_bytes(unmasked[:2], "big") == code
        await asyncio.wait_for(ws.wait_closed(), 20)
        assert ws.ready_state == 3
    finally:
        server.close()


async def test_huge_response_head_at_connect_is_refused_without_waiting_for_the_end() -> None:
    """The server answers with a head that never ends: the client stops at its header bound (8 KiB) with
    InvalidHandshake instead of buffering until open_timeout."""

    def endless(head: bytes) -> bytes:
        return b"HTTP/1.1 101 Switching Protocols\r\n" + b"X-Filler: " + b"f" * (1 << 20)

    server, _received = await hostile_server(endless)
    port = server.sockets[0].getsockname()[1]
    try:
        started = time.monotonic()
        with pytest.raises(InvalidHandshake, match=r"8192|larger|head"):
            await connect(f"ws://127.0.0.1:{port}/", open_timeout=30)
        assert time.monotonic() - started < 25  # well before open_timeout
    finally:
        server.close()


async def test_connect_max_header_size_bounds_the_response_head() -> None:
    """A 101 with 20 KiB of headers: refused under the default 8 KiB bound, accepted when raised."""

    def big_head(ws: Any, request: Any, response: Any) -> Any:
        return dataclasses.replace(response, headers=(*response.headers, ("X-Big", "a" * 20000)))

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(echo, "127.0.0.1", 0, process_response=big_head) as server:
        url = f"ws://127.0.0.1:{server.port}/"
        with pytest.raises(InvalidHandshake):
            await connect(url, open_timeout=10)
        async with connect(url, open_timeout=10, max_header_size=65536) as ws:
            assert ws.response is not None and ws.response.header("X-Big") == "a" * 20000
            await ws.send("fits")
            assert await asyncio.wait_for(ws.recv(), 10) == "fits"
