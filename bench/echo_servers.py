"""Echo servers for ``bench_echo.py``: one per implementation, each run as its own process.

    python bench/echo_servers.py NAME [--host 127.0.0.1] [--port 0] [--loop asyncio|uvloop]
                                      [--transport loop|aiofastnet]

NAME is one of ``wscodec`` (``async for`` and ``await send``), ``wscodec-nowait`` (an ``onmessage`` callback
answering with ``send_nowait``), ``websockets``, ``aiohttp``, ``picows``, ``tornado``, ``node-ws`` (Node's ``ws``
with its native add-ons: this process becomes ``node bench/node/ws_echo_server.js``, on Node's own libuv loop,
whatever ``--loop``; ``_node_ws.py`` installs it). Every server echoes text as
text and binary as binary, with compression off (``--deflate``: permessage-deflate on, except picows, which has
none) and a message limit above the largest benchmark message, on the default asyncio event loop or on uvloop
(``--loop uvloop``; tornado runs on whichever asyncio loop is current), on the loop's own transports or on
aiofastnet's (``--transport aiofastnet``: wscodec's ``transport=`` and picows' ``use_aiofastnet=``, which
picows turns on by default; websockets and aiohttp on a loop patched by ``aiofastnet.patch_loop``). Once
bound it prints ``listening on PORT`` (flushed) and serves until SIGTERM, SIGINT or a bounded ``--lifetime``
(seconds, default 600) runs out, so a lost server never lingers. ``--busy-poll SECONDS`` keeps every
server's loop polling for that long after each message: wscodec's ``busy_poll=`` option, and for the
peers (none has such an option) the same poller touched from their echo handlers.

Each server is written the way that library's documentation shows an echo server, so the benchmark
compares what a user of each library gets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import inspect
import os
import signal
import sys
from collections.abc import Awaitable, Callable

MAX_SIZE = 16 * 2**20
DEFLATE = False  # --deflate: permessage-deflate on, where the library has it (picows has not)
TRANSPORT = "loop"  # --transport aiofastnet: aiofastnet's transports, where the library has the choice
BUSY_POLL: float | None = None  # --busy-poll SECONDS: every server keeps its loop polling after each message

_Starter = Callable[[str, int], Awaitable[tuple[int, Callable[[], Awaitable[None]]]]]


def _bound_port(server: asyncio.AbstractServer) -> int:
    sockets = getattr(server, "sockets", None) or ()
    for sock in sockets:
        return int(sock.getsockname()[1])
    raise RuntimeError("server has no bound socket")


def _find_wscodec() -> None:
    # bench_echo.py puts the caller's wscodec first on PYTHONPATH; run alone from a checkout, fall back on src/.
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    if importlib.util.find_spec("wscodec") is None and os.path.isdir(src):
        sys.path.insert(0, src)


def _poll_touch() -> Callable[[], None] | None:
    """With ``--busy-poll``, what a peer's handler calls on each message: the same loop-level poller that
    wscodec's ``busy_poll=`` option runs (a peer has no such option), so that like is compared with like."""
    if BUSY_POLL is None:
        return None
    _find_wscodec()
    from wscodec.asyncio.busy_poll import BusyPoller

    return BusyPoller(asyncio.get_running_loop(), BUSY_POLL).touch


async def _serve_wscodec(host: str, port: int, nowait: bool) -> tuple[int, Callable[[], Awaitable[None]]]:
    _find_wscodec()
    from wscodec.asyncio import serve

    async def echo(ws):  # type: ignore[no-untyped-def]
        async for message in ws:
            await ws.send(message)

    async def echo_nowait(ws):  # type: ignore[no-untyped-def]
        ws.onmessage = lambda event: ws.send_nowait(event.data)
        await ws.wait_closed()

    server = await serve(
        echo_nowait if nowait else echo,
        host,
        port,
        compression="deflate" if DEFLATE else None,
        max_size=MAX_SIZE,
        ping_interval=None,
        transport=TRANSPORT,
        # only when asked: older builds (compared with PYTHONPATH=their build) have no such option
        **({"busy_poll": BUSY_POLL} if BUSY_POLL is not None else {}),
    )
    bound = getattr(server, "port", None) or _bound_port(server)

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return int(bound), stop


async def start_wscodec(host: str, port: int) -> tuple[int, Callable[[], Awaitable[None]]]:
    """wscodec as its README shows an echo server: ``async for`` and ``await send``."""
    return await _serve_wscodec(host, port, nowait=False)


async def start_wscodec_nowait(host: str, port: int) -> tuple[int, Callable[[], Awaitable[None]]]:
    """wscodec in the callback style (the one picows' listener is compared with): each message answered
    with ``send_nowait`` inside the read that delivered it, no task switch per message."""
    return await _serve_wscodec(host, port, nowait=True)


async def start_websockets(host: str, port: int) -> tuple[int, Callable[[], Awaitable[None]]]:
    from websockets.asyncio.server import serve

    poll = _poll_touch()

    async def echo(ws):  # type: ignore[no-untyped-def]
        async for message in ws:
            if poll is not None:
                poll()
            await ws.send(message)

    server = await serve(
        echo, host, port, compression="deflate" if DEFLATE else None, max_size=MAX_SIZE, ping_interval=None
    )

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return _bound_port(server.server), stop


async def start_aiohttp(host: str, port: int) -> tuple[int, Callable[[], Awaitable[None]]]:
    from aiohttp import WSMsgType, web

    poll = _poll_touch()

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=DEFLATE, max_msg_size=MAX_SIZE, autoping=True)
        await ws.prepare(request)
        async for msg in ws:
            if poll is not None:
                poll()
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server  # the asyncio server, to learn the port chosen for port 0
    assert server is not None

    async def stop() -> None:
        await runner.cleanup()

    return _bound_port(server), stop  # type: ignore[arg-type]


async def start_picows(host: str, port: int) -> tuple[int, Callable[[], Awaitable[None]]]:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

    if DEFLATE:
        raise SystemExit("picows has no permessage-deflate")

    poll = _poll_touch()

    class Echo(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            # The benchmark client sends unfragmented messages, so one frame is one message.
            if poll is not None:
                poll()
            if frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
            elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
                transport.send(frame.msg_type, frame.get_payload_as_memoryview())

    options: dict[str, object] = {"max_frame_size": MAX_SIZE}
    if "use_aiofastnet" in inspect.signature(ws_create_server).parameters:  # picows 2.3 and later
        options["use_aiofastnet"] = TRANSPORT == "aiofastnet"
    elif TRANSPORT == "aiofastnet":
        raise SystemExit("this picows has no use_aiofastnet option: pip install 'picows>=2.3'")
    server = await ws_create_server(lambda _request: Echo(), host, port, **options)

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return _bound_port(server), stop


async def start_tornado(host: str, port: int) -> tuple[int, Callable[[], Awaitable[None]]]:
    import tornado.httpserver
    import tornado.netutil
    import tornado.web
    import tornado.websocket

    poll = _poll_touch()

    class Echo(tornado.websocket.WebSocketHandler):  # type: ignore[misc]
        def get_compression_options(self) -> dict[str, object] | None:
            return {} if DEFLATE else None

        def on_message(self, message: str | bytes) -> None:
            if poll is not None:
                poll()
            self.write_message(message, binary=isinstance(message, bytes))

    app = tornado.web.Application([("/", Echo)], websocket_max_message_size=MAX_SIZE)
    server = tornado.httpserver.HTTPServer(app)
    sockets = tornado.netutil.bind_sockets(port, host)
    server.add_sockets(sockets)

    async def stop() -> None:
        server.stop()

    return int(sockets[0].getsockname()[1]), stop


#: Not a Python server: main() replaces this process with Node running bench/node/ws_echo_server.js.
NODE_WS = "node-ws"

SERVERS: dict[str, _Starter] = {
    "wscodec": start_wscodec,
    "wscodec-nowait": start_wscodec_nowait,
    "websockets": start_websockets,
    "aiohttp": start_aiohttp,
    "picows": start_picows,
    "tornado": start_tornado,
}


#: Servers that choose their transports themselves (an option of theirs); the others run on a loop that
#: aiofastnet.patch_loop() made open its streams, and tornado, which uses no asyncio transports, on neither.
_OWN_TRANSPORT_OPTION = ("wscodec", "wscodec-nowait", "picows")


async def _run(name: str, host: str, port: int, lifetime: float) -> None:
    if TRANSPORT == "aiofastnet" and name not in _OWN_TRANSPORT_OPTION:
        if name == "tornado":
            raise SystemExit("tornado uses no asyncio transports: --transport aiofastnet does not apply")
        import aiofastnet

        aiofastnet.patch_loop(asyncio.get_running_loop())
    bound, stop = await SERVERS[name](host, port)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, done.set)
    print(f"listening on {bound}", flush=True)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(done.wait(), lifetime)
    await asyncio.wait_for(stop(), 5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted([*SERVERS, NODE_WS]))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lifetime", type=float, default=600.0, help="exit after this many seconds")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio", help="the event loop")
    parser.add_argument("--deflate", action="store_true", help="permessage-deflate on (not picows)")
    parser.add_argument(
        "--transport", choices=("loop", "aiofastnet"), default="loop", help="the loop's transports or aiofastnet's"
    )
    parser.add_argument(
        "--busy-poll", type=float, metavar="SECONDS", help="keep the loop polling this long after each message"
    )
    args = parser.parse_args(argv)
    if args.name == NODE_WS:
        return _exec_node_ws(args)
    global DEFLATE, TRANSPORT, BUSY_POLL
    DEFLATE = args.deflate
    TRANSPORT = args.transport
    BUSY_POLL = args.busy_poll
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(_run(args.name, args.host, args.port, args.lifetime))
    else:
        asyncio.run(_run(args.name, args.host, args.port, args.lifetime))
    return 0


def _exec_node_ws(args: argparse.Namespace) -> int:
    """Become Node's ws echo server (the same process: the benchmark's pid, CPU time and affinity stay valid)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _node_ws

    if args.transport != "loop":
        raise SystemExit("node-ws runs on Node's own sockets: --transport aiofastnet does not apply")
    problem = _node_ws.install()
    if problem is not None:
        raise SystemExit(problem)
    command = _node_ws.server_command(
        args.host, args.port, deflate=args.deflate, lifetime=args.lifetime, busy_poll=args.busy_poll
    )
    sys.stdout.flush()
    os.execv(command[0], command)
    return 1  # not reached: execv returns only by raising


if __name__ == "__main__":
    sys.exit(main())
