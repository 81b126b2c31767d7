"""``transport="aiofastnet"``: server and client on aiofastnet's transports instead of the loop's, over loopback.

aiofastnet is in the test extra, so these run everywhere the suite runs (both loops, both backends); what is
checked is that every part of the I/O layer that touches a transport behaves as on the loop's own: large
messages (header and payload handed over as separate buffers), backpressure both ways, the close handshake,
a protocol error and the fresh client after it, TLS, Unix sockets, the CLI, and worker options.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import platform
import socket
import ssl
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

if importlib.util.find_spec("aiofastnet") is None:  # pragma: no cover
    if platform.python_implementation() == "CPython":
        raise RuntimeError("aiofastnet is missing: install the test extra (pip install '.[test]')")
    pytest.skip("aiofastnet is CPython-only", allow_module_level=True)

import wscodec
from wscodec.asyncio import Server, WebSocket, connect, serve, unix_connect, unix_serve
from wscodec.transports import TRANSPORTS, opener, resolve_transport

pytestmark = pytest.mark.timeout(60)

MIB = 1 << 20


def on_aiofastnet(ws: WebSocket) -> bool:
    return type(ws.transport).__module__.startswith("aiofastnet")


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


def url(server: Server) -> str:
    return f"ws://127.0.0.1:{server.port}/"


# --------------------------------------------------------------------------- choosing


def test_the_choices_resolve_to_a_transport_family() -> None:
    assert TRANSPORTS == ("loop", "aiofastnet", "auto")
    assert resolve_transport("loop") == "loop"
    assert resolve_transport("aiofastnet") == "aiofastnet"
    assert resolve_transport("auto") == "aiofastnet"  # installed with the test extra
    with pytest.raises(ValueError, match="transport must be one of loop, aiofastnet, auto, not 'fast'"):
        resolve_transport("fast")


def test_without_aiofastnet_auto_falls_back_and_an_explicit_choice_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "aiofastnet", None)  # import aiofastnet now raises ImportError
    assert resolve_transport("auto") == "loop"
    with pytest.raises(ImportError, match=r"pip install 'wscodec\[aiofastnet\]'"):
        resolve_transport("aiofastnet")
    with pytest.raises(ImportError, match="aiofastnet"):
        serve(echo, "127.0.0.1", 0, transport="aiofastnet")
    with pytest.raises(ImportError, match="aiofastnet"):
        connect("ws://127.0.0.1:1/", transport="aiofastnet")
    with pytest.raises(ValueError, match="transport must be one of"):
        connect("ws://127.0.0.1:1/", transport="tcp")  # type: ignore[arg-type]


async def test_the_opener_binds_the_running_loop() -> None:
    loop = asyncio.get_running_loop()
    assert opener("loop", loop).create_server == loop.create_server
    fast = opener("auto", loop)
    assert fast.name == "aiofastnet"
    assert fast.create_server.args == (loop,)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- messages and limits


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_echo_of_every_size_on_aiofastnet_both_ends(compression: str | None) -> None:
    async with (
        serve(echo, "127.0.0.1", 0, transport="aiofastnet", compression=compression, max_size=None) as server,
        connect(url(server), transport="aiofastnet", compression=compression, max_size=None) as ws,
    ):
        assert on_aiofastnet(ws)
        (peer,) = server.connections
        assert on_aiofastnet(peer)
        for size in (0, 1, 125, 126, 65535, 65536, 4 * MIB):  # 4 MiB: header and payload as separate buffers
            payload = os.urandom(size)
            await ws.send(payload)
            assert await ws.recv() == payload
        await ws.send("ünïcødé " * 1000)
        assert await ws.recv() == "ünïcødé " * 1000
        await ws.send(["frag", "ment", "ed"])
        assert await ws.recv() == "fragmented"
        assert await ws.ping(b"x") >= 0
    assert ws.close_code == 1000


async def test_callback_replies_keep_their_order() -> None:
    async def handler(ws: WebSocket) -> None:
        ws.onmessage = lambda event: ws.send_nowait(event.data)
        await ws.wait_closed()

    async with (
        serve(handler, "127.0.0.1", 0, transport="aiofastnet", compression=None) as server,
        connect(url(server), transport="loop", compression=None) as ws,
    ):
        assert not on_aiofastnet(ws)
        for i in range(500):
            ws.send_nowait(f"m{i}")
        assert [await ws.recv() for _ in range(500)] == [f"m{i}" for i in range(500)]


async def test_backpressure_when_the_client_stops_reading() -> None:
    """A client that stops reading (``max_queue`` reached): once TCP is full the server's sends wait at
    ``write_limit``, and nothing is lost or reordered when it reads again. The client's receive buffer is fixed
    at 256 KiB: left to itself, Linux grows it up to ``tcp_rmem``'s maximum (32 MiB here) and everything sent
    would fit in the kernels' buffers, with nothing to wait for."""
    released = asyncio.Event()
    sent: list[int] = []
    count = 128  # 8 MiB: more than that buffer and the sender's largest send buffer (tcp_wmem, 4 MiB) hold

    async def producer(ws: WebSocket) -> None:
        for i in range(count):
            await ws.send(struct.pack("!I", i) + bytes(64 * 1024))
            sent.append(i)
        await released.wait()

    async with serve(producer, "127.0.0.1", 0, transport="aiofastnet", compression=None, write_limit=65536) as server:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
        async with connect(url(server), sock=sock, transport="aiofastnet", compression=None, max_queue=2) as ws:
            await asyncio.sleep(0.5)
            assert len(sent) < count  # the producer waits: the client's reading paused, TCP filled up
            (peer,) = server.connections
            assert peer.buffered_amount > 0
            got = [struct.unpack("!I", (await ws.recv())[:4])[0] for _ in range(count)]
            assert got == list(range(count))
            released.set()


async def test_a_protocol_error_closes_1002_and_a_fresh_client_is_served() -> None:
    async with serve(echo, "127.0.0.1", 0, transport="aiofastnet") as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101")
        writer.write(b"\x81\x02hi")  # unmasked, from a client: RFC 6455 section 5.1
        head2 = await asyncio.wait_for(reader.readexactly(2), 10)
        assert head2[0] == 0x88 and head2[1] < 126  # an unmasked Close from the server, with a short reason
        body = await asyncio.wait_for(reader.readexactly(head2[1]), 10)
        assert struct.unpack("!H", body[:2])[0] == 1002
        writer.close()
        async with connect(url(server), transport="aiofastnet") as ws:
            await ws.send("still served")
            assert await ws.recv() == "still served"


async def test_message_too_big_closes_1009() -> None:
    async with (
        serve(echo, "127.0.0.1", 0, transport="aiofastnet", max_size=1024) as server,
        connect(url(server), transport="aiofastnet", max_size=None) as ws,
    ):
        await ws.send(bytes(4096))
        await asyncio.wait_for(ws.wait_closed(), 10)
        assert ws.close_code == 1009


# --------------------------------------------------------------------------- TLS, Unix sockets


async def test_wss_on_aiofastnet() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    async with (
        serve(echo, "localhost", 0, ssl=server_context, transport="aiofastnet") as server,
        connect(f"wss://localhost:{server.port}/", ssl=client_context, transport="aiofastnet") as ws,
    ):
        assert on_aiofastnet(ws)
        assert ws.transport is not None and ws.transport.get_extra_info("ssl_object") is not None
        payload = os.urandom(MIB // 2)
        await ws.send(payload)
        assert await ws.recv() == payload


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets on this platform")
async def test_unix_socket_on_aiofastnet(tmp_path: Path) -> None:
    path = str(tmp_path / "ws.sock")
    async with (
        unix_serve(echo, path, transport="aiofastnet") as server,
        unix_connect(path, transport="aiofastnet") as ws,
    ):
        assert on_aiofastnet(ws)
        assert len(server.connections) == 1
        await ws.send("over a unix socket")
        assert await ws.recv() == "over a unix socket"


# --------------------------------------------------------------------------- CLI and workers


def _cli(*args: str, timeout: float = 30) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(wscodec.__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen(
        [sys.executable, "-m", "wscodec", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )


async def test_cli_serve_on_aiofastnet() -> None:
    proc = _cli("serve", "--port", "0", "--transport", "aiofastnet")
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
        assert line.startswith(b"listening on ws://"), line
        banner = await asyncio.wait_for(asyncio.to_thread(proc.stderr.readline), 20)
        assert b"aiofastnet transports" in banner, banner
        async with connect(line.split()[-1].decode(), transport="aiofastnet") as ws:
            await ws.send("cli")
            assert await ws.recv() == "cli"
    finally:
        proc.terminate()
        proc.wait(15)


def test_cli_refuses_an_unknown_transport() -> None:
    proc = _cli("serve", "--port", "0", "--transport", "tcp")
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert b"invalid choice: 'tcp'" in err


def test_workers_check_the_transport_before_any_fork() -> None:
    from wscodec.workers import run

    with pytest.raises(ValueError, match="transport must be one of"):
        run(echo, "127.0.0.1", 0, workers=2, transport="tcp")
