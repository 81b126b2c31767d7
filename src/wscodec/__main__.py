"""Command line: ``python -m wscodec serve | connect | bench``.

``serve`` runs an echo (or ``--chat`` broadcast) server that also answers ``GET /`` with a demo page
written against the browser's WebSocket API; ``connect`` is an interactive client in the manner of
wscat that also works from a pipe; ``bench`` runs the kernel and echo benchmarks of a source checkout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import signal
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

from ._options import MAX_BUSY_POLL
from .transports import TRANSPORTS, resolve_transport

__all__ = ["main"]

_EOF_WAIT = 2.0  # seconds `connect` waits for replies after stdin ends


def _demo_page() -> bytes:
    """The demo page shipped as package data."""
    from importlib.resources import files

    return files("wscodec").joinpath("_demo.html").read_bytes()


def _is_upgrade(request: Any) -> bool:
    upgrade = request.header("Upgrade") or ""
    return "websocket" in upgrade.lower()


# --------------------------------------------------------------------------- serve

_ACCESS = logging.getLogger("wscodec.server")


def _server_ssl(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.tls_key and not args.tls_cert:
        raise ValueError("--tls-key needs --tls-cert")
    if not args.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(args.tls_cert, args.tls_key)
    except OSError as exc:  # ssl.SSLError included; neither names the file
        files = args.tls_cert + (f" / --tls-key {args.tls_key}" if args.tls_key else "")
        raise OSError(f"cannot load --tls-cert {files}: {exc.strerror or exc}") from None
    return context


def _http_answer(request: Any, page: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """The plain-HTTP side of the demo server: the page at /, an empty favicon, 404 elsewhere; HEAD gets the
    headers of GET (Content-Length included) and no body."""
    path = request.path.split("?", 1)[0]
    method = request.method.upper()
    if method not in ("GET", "HEAD"):
        status, headers, body = 405, [("Allow", "GET, HEAD"), ("Content-Type", "text/plain; charset=utf-8")], b""
        body = b"Method Not Allowed\n"
    elif path in ("/", "/index.html"):
        status, headers, body = 200, [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")], page
    elif path == "/favicon.ico":
        status, headers, body = 204, [("Cache-Control", "max-age=86400")], b""
    else:
        status, headers, body = 404, [("Content-Type", "text/plain; charset=utf-8")], b"Not Found\n"
    if method == "HEAD" and body:
        return status, [*headers, ("Content-Length", str(len(body)))], b""
    return status, headers, body


def _process_request(page: bytes) -> Callable[[Any], tuple[int, list[tuple[str, str]], bytes] | None]:
    """The ``process_request`` of ``serve``, in one process or many: upgrades go on, the rest gets
    :func:`_http_answer`."""

    def process_request(request: Any) -> tuple[int, list[tuple[str, str]], bytes] | None:
        return None if _is_upgrade(request) else _http_answer(request, page)

    return process_request


def _access_line(connection: Any, request: Any, response: Any) -> None:
    """The ``process_response`` of ``serve``: one access line for every answer that opens no connection (a
    page, a 404, an upgrade refused with 400, 403 or 503); an opened connection has its line when it closes."""
    if response.status_code != 101 and _ACCESS.isEnabledFor(logging.INFO):
        _ACCESS.info(  # the request line is the client's: escaped, it cannot drive the operator's terminal
            '"%s %s" %d (%d bytes)',
            "-" if request is None else _escape(request.method),
            "-" if request is None else _escape(request.path),
            response.status_code,
            len(response.body),
            extra={"event": "http"},
        )


async def _serve(args: argparse.Namespace) -> int:
    from .asyncio import broadcast, serve
    from .workers import _shut_down

    server: Any = None
    tls = _server_ssl(args)

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async def chat(ws: Any) -> None:
        async for message in ws:
            broadcast(server.connections, message)

    server = await serve(
        chat if args.chat else echo,
        args.host,
        args.port,
        subprotocols=tuple(args.subprotocol),
        process_request=_process_request(_demo_page()),
        process_response=_access_line,
        compression=_compression(args),
        max_size=args.max_size or None,
        ssl=tls,
        ping_interval=args.ping_interval or None,
        ping_timeout=args.ping_timeout or None,
        transport=args.transport,
        busy_poll=args.busy_poll or None,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    host = f"[{args.host}]" if ":" in args.host else args.host
    mode = "chat" if args.chat else "echo"
    secure = "s" if tls is not None else ""
    print(f"listening on ws{secure}://{host}:{server.port}", flush=True)
    print(
        f"{mode} server on {_loop_name()}{_transport_note(args.transport)}{_busy_poll_note(args.busy_poll)}; "
        f"demo page at http{secure}://{host}:{server.port}/ (Ctrl-C to stop)",
        file=sys.stderr,
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        forced = await _shut_down(server, say=_say)  # which gives SIGINT and SIGTERM back
    return 130 if forced else 0


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- serve --workers / --broker


#: The longest chat line ``serve --chat`` hands a Redis broker (a longer one is dropped): under Redis's default
#: bounds on a subscriber's output buffer (``client-output-buffer-limit pubsub 32mb 8mb 60``), past which Redis
#: disconnects every worker subscribed to the room.
_CHAT_BUS_MAX = 8 * 1024 * 1024


def _serve_scaled(args: argparse.Namespace) -> int:
    """``serve`` with ``--workers`` other than 1 or a ``--broker``: :func:`wscodec.workers.run`, the chat
    room being the channel "chat" on the broker (shared by every worker and server using it)."""
    import logging

    from .broker import BrokerUnavailable
    from .workers import run

    log = logging.getLogger("wscodec.cli")

    try:
        tls = _server_ssl(args)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async def chat(ws: Any) -> None:
        broker = ws.server.broker
        bound = min(args.max_size or _CHAT_BUS_MAX, _CHAT_BUS_MAX)  # (--max-size 0: no bound of the server's)
        if getattr(broker, "max_message_size", bound) < bound:
            # The Redis broker's own bound (1 MiB) follows --max-size up, to _CHAT_BUS_MAX: a line the server
            # accepts goes out to every client. (Each worker's broker, made from --broker; set before it
            # publishes.)
            broker.max_message_size = bound
        await ws.server.join(ws, "chat")
        async for message in ws:
            try:
                await ws.server.publish("chat", message)
            except BrokerUnavailable as exc:  # the connection stays open; the line is lost, and counted
                log.debug("%s", exc)
            except ValueError as exc:  # over the broker's max_message_size (_CHAT_BUS_MAX): the line is dropped
                log.debug("%s", exc)

    host = f"[{args.host}]" if ":" in args.host else args.host
    mode = "chat" if args.chat else "echo"

    secure = "s" if tls is not None else ""

    try:
        factory = _loop_factory(args.loop)
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    loop_name = "asyncio" if factory is None else "uvloop"
    announced = False

    def ready(address: str, port: int) -> None:
        nonlocal announced
        announced = True
        print(f"listening on ws{secure}://{host}:{port}", flush=True)
        print(
            f"{mode} server on {loop_name}{_transport_note(args.transport)}{_busy_poll_note(args.busy_poll)}, "
            f"{args.workers or 'one per core'} workers, broker {args.broker or 'in-process'}; "
            f"demo page at http{secure}://{host}:{port}/ (Ctrl-C to stop)",
            file=sys.stderr,
            flush=True,
        )

    if args.chat and args.workers != 1 and (not args.broker or args.broker.startswith("memory:")):
        print("note: without --broker redis://... each worker has its own chat room", file=sys.stderr, flush=True)
    try:
        status = run(
            chat if args.chat else echo,
            args.host,
            args.port,
            workers=args.workers,
            ready=ready,
            broker=args.broker,
            subprotocols=tuple(args.subprotocol),
            process_request=_process_request(_demo_page()),
            process_response=_access_line,
            compression=_compression(args),
            max_size=args.max_size or None,
            ssl=tls,
            ping_interval=args.ping_interval or None,
            ping_timeout=args.ping_timeout or None,
            loop_factory=factory,
            transport=args.transport,
            busy_poll=args.busy_poll or None,
        )
    except (ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except OSError as exc:  # a busy port: as without --workers
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    # Stopped before it listened (a Ctrl-C while the workers start): 130, as without --workers (the supervisor
    # does not say which signal it was: a SIGTERM then gives 130 too).
    return 130 if status == 0 and not announced else status


# --------------------------------------------------------------------------- connect


def _parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def _stdin_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    """Thread body: read stdin with os.read (no buffered-reader lock held at exit), queue lines, None at EOF."""
    fd = sys.stdin.fileno()
    pending = b""
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                loop.call_soon_threadsafe(queue.put_nowait, line.decode(errors="replace").rstrip("\r"))
        if pending:
            loop.call_soon_threadsafe(queue.put_nowait, pending.decode(errors="replace").rstrip("\r"))
    except (OSError, RuntimeError):  # stdin closed, or the loop went away first
        pass
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(queue.put_nowait, None)


# C0 and C1 controls, DEL, the bidirectional marks, overrides and isolates that can disguise what is printed
# (U+061C, U+200E-F, U+202A-E, U+2066-9), the line and paragraph separators some terminals break lines at, and
# the invisible zero width space and byte order mark. Joiners (U+200C-D) stay: emoji and scripts need them.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _escape(text: str, *, backslashes: bool = True) -> str:
    """Received text made safe for a terminal: control characters (escape sequences could move the cursor,
    retitle the window or worse) and bidi overrides become visible escapes like ``\\x1b``; a backslash
    is doubled so the output stays unambiguous. ``backslashes=False`` for an error's text, whose quotes of
    the peer's bytes went through ``repr()`` already: their escapes shown once, a raw character escaped."""
    if backslashes and "\\" in text:
        text = text.replace("\\", "\\\\")
    return _UNSAFE.sub(_escape_char, text)


def _show(message: str | bytes | bytearray | memoryview) -> str:
    if isinstance(message, str):
        return _escape(message)
    data = bytes(message)
    return f"[binary {len(data)} bytes] {data.hex()}"


class _Console:
    """Where ``connect`` prints. On a terminal with readline, lines are typed with editing and history, and a
    message printed while a line is being typed erases the prompt line, prints, then redraws the prompt and
    what was typed so far; elsewhere (a pipe), plain lines."""

    PROMPT = "> "

    def __init__(self, interactive: bool, quiet: bool = False) -> None:
        self.readline: Any = None
        self.quiet = quiet
        if interactive:
            with contextlib.suppress(ImportError):
                import readline

                self.readline = readline
        self._lock = threading.Lock()
        self.gone = False  # the terminal hung up: nothing more is printed

    def out(self, text: str, stream: Any = None) -> None:
        stream = stream or sys.stdout
        with self._lock:
            if self.readline is not None:
                if self.gone:
                    return
                try:
                    typed = self.readline.get_line_buffer()
                    sys.stdout.write("\r\x1b[K")
                    sys.stdout.flush()
                    stream.write(text + "\n")
                    stream.flush()
                    sys.stdout.write(self.PROMPT + typed)
                    sys.stdout.flush()
                except OSError:  # the terminal hung up (EIO): nobody reads any more; the session ends by EOF
                    self.gone = True
            elif stream is sys.stderr:  # what we say about the session: a closed stderr must not end it
                try:
                    stream.write(text + "\n")
                    stream.flush()
                except OSError:
                    _stream_gone(stream)
            else:  # the peer's messages: a closed stdout (| head) ends the session (see _connect)
                stream.write(text + "\n")
                stream.flush()

    def info(self, text: str) -> None:
        if not self.quiet:
            self.out(f"* {text}", sys.stderr)


_console = _Console(False)


def _out(text: str) -> None:
    _console.out(text)


def _info(text: str) -> None:
    _console.info(text)


def _failure(task: asyncio.Task[Any]) -> BaseException | None:
    """The exception a finished task of ``connect`` ended with (None while it runs, or if it was cancelled)."""
    return task.exception() if task.done() and not task.cancelled() else None


def _stream_gone(stream: Any) -> None:
    """``stream`` (stdout or stderr) was closed under us (``connect ... | head``): point it at /dev/null, so
    that nothing printed later, nor the interpreter's flush at exit, raises BrokenPipeError again (the recipe
    of Python's ``signal`` documentation)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)


def _interactive() -> bool:
    """Whether ``connect`` has a person at a terminal (readline, a prompt) rather than a pipe. Python makes
    ``sys.stdin`` None when it was closed (``<&-``)."""
    return sys.stdin is not None and sys.stdin.isatty() and sys.stdout.isatty()


@contextlib.contextmanager
def _terminal_kept() -> Iterator[None]:
    """The terminal's modes as they were, put back however ``connect`` ends. readline turns echo and line
    mode off while it waits for a line, and when the server closes or Ctrl-C comes its thread is still
    waiting: the process would exit leaving the shell with neither."""
    try:
        import termios
    except ImportError:  # not POSIX: no terminal modes to keep
        yield
        return
    try:
        saved = termios.tcgetattr(0)
    except termios.error:
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(termios.error):
            termios.tcsetattr(0, termios.TCSADRAIN, saved)


def _readline_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    """Thread body on a terminal: ``input()`` with readline (editing, history), None at EOF (Ctrl-D)."""
    try:
        while True:
            line = input(_Console.PROMPT)
            loop.call_soon_threadsafe(queue.put_nowait, line)
    except (EOFError, KeyboardInterrupt, OSError, RuntimeError):
        pass
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(queue.put_nowait, None)


def _client_ssl(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.url.lower().startswith("wss:"):
        if args.insecure or args.cafile:
            raise ValueError("--insecure and --cafile are for wss:// URLs")
        return None
    try:
        context = ssl.create_default_context(cafile=args.cafile)
    except OSError as exc:  # (ssl.SSLError too): the message names the file, which OSError's str() may not
        raise ValueError(f"cannot load --cafile {args.cafile}: {exc.strerror or exc}") from None
    if args.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def _command(ws: Any, line: str, counts: dict[str, int]) -> bool:
    """Run one ``/command``; False when the client should stop reading stdin.

    A message it sends counts in ``counts["sent"]``, so the pipe mode waits for its echo too.
    """
    name, _, rest = line[1:].partition(" ")
    if name == "ping":
        start = time.perf_counter()
        try:
            waiter = ws.ping(rest.encode()) if rest else ws.ping()
            result = await asyncio.wait_for(waiter, 10)
            if asyncio.isfuture(result) or asyncio.iscoroutine(result):
                result = await asyncio.wait_for(result, 10)
        except asyncio.TimeoutError:  # the session goes on: a slow peer is not a reason to leave
            _info("no pong within 10 s")
            return True
        except ValueError as exc:  # a payload over 125 bytes
            _info(f"cannot ping: {exc}")
            return True
        _out(f"* pong in {(time.perf_counter() - start) * 1000:.2f} ms")
    elif name == "close":
        parts = rest.split(" ", 1)
        reason = parts[1] if len(parts) > 1 else ""
        try:
            code = int(parts[0]) if parts[0] else 1000
            await ws.close(code, reason)
        except ValueError as exc:  # not a number, a code that may not be sent, a reason over 123 bytes
            _info(f"cannot close with {rest!r}: {exc} (usage: /close [code [reason]])")
            return True
        return False
    elif name == "binary":
        try:
            data = bytes.fromhex(rest)
        except ValueError:
            _info(f"not hex: {rest!r}")
        else:
            await ws.send(data)
            counts["sent"] += 1
            return True
    elif name == "help":
        _info("/ping [data]  /close [code [reason]]  /binary HEX  //text sends '/text'")
    else:
        _info(f"unknown command /{name} (try /help)")
    return True


async def _connect(args: argparse.Namespace) -> int:
    from .asyncio import connect
    from .errors import ConnectionClosed, _ends_without_error

    global _console
    _console = _Console(_interactive(), quiet=args.quiet)
    try:
        ws = await connect(
            args.url,
            subprotocols=tuple(args.subprotocol),
            extra_headers=tuple(args.header),
            compression=_compression(args),
            max_size=args.max_size or None,
            ssl=_client_ssl(args),
            ping_interval=args.ping_interval or None,
            ping_timeout=args.ping_timeout or None,
            proxy=True if args.proxy is None else (args.proxy or None),
        )
    except Exception as exc:  # refused, timed out, rejected handshake: say so plainly
        # (the text may quote the server's answer, repr()'d already)
        _info(f"could not connect to {args.url}: {_escape(str(exc), backslashes=False)}")
        return 1

    loop = asyncio.get_running_loop()
    # SIGTERM and SIGHUP end the session as Ctrl-C does (a Close, the terminal given back), with 1001 and
    # the shell's 128 + signal number: their default action would kill the process mid-readline.
    stopping: list[int] = []  # the signal that ends the session, first come (SIGINT: Ctrl-C, via asyncio.run)
    handled: list[int] = []
    main_task = asyncio.current_task()

    def on_signal(signum: int) -> None:
        if not stopping and main_task is not None:  # (another while closing: the close is bounded anyway)
            stopping.append(signum)
            main_task.cancel()

    for signum in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)):
        if signum is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # (not POSIX, not main thread)
                loop.add_signal_handler(signum, on_signal, signum)
                handled.append(signum)

    extensions = ws.extensions
    if not isinstance(extensions, str):
        extensions = ", ".join(str(e) for e in extensions or ())
    protocol = _escape(ws.protocol or "-")
    _info(f"connected to {args.url} (protocol: {protocol}, extensions: {_escape(extensions or '-')})")

    lines: asyncio.Queue[str | None] = asyncio.Queue()
    if sys.stdin is None:  # started with stdin closed (<&-): the input is over at once
        lines.put_nowait(None)
    else:
        source = _readline_lines if _console.readline is not None else _stdin_lines
        threading.Thread(target=source, args=(loop, lines), name="stdin", daemon=True).start()

    counts = {"sent": 0, "received": 0}
    progress = asyncio.Event()

    async def reader() -> None:
        """Print what comes; an error other than the connection's end (stdout closed under us: ``| head``)
        ends the session, reported and closed with 1000 below."""
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                counts["received"] += 1
                progress.set()
                _out(f"< {_show(message)}")

    reading = asyncio.ensure_future(reader())

    async def drain() -> None:
        """Wait (bounded by --wait) until every message sent has had an answer, or the connection ends."""
        deadline = loop.time() + args.wait
        while counts["received"] < counts["sent"] and not reading.done():
            progress.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(progress.wait(), remaining)

    async def writer() -> None:
        try:
            while True:
                line = await lines.get()
                if line is None:  # stdin ended: print what comes back, then close normally
                    await drain()
                    await ws.close(1000, "")
                    return
                if line.startswith("/") and not line.startswith("//"):
                    if line.startswith("/close"):
                        await drain()
                    if not await _command(ws, line, counts):
                        return
                    continue
                await ws.send(line[1:] if line.startswith("//") else line)
                counts["sent"] += 1
        except ConnectionClosed:  # the peer closed while a line was on its way: its close code tells how it went
            return

    writing = asyncio.ensure_future(writer())
    status = 0
    try:
        await asyncio.wait({reading, writing}, return_when=asyncio.FIRST_COMPLETED)
        failure = _failure(writing) or _failure(reading)
        if failure is None:  # the session's normal end: what is still coming is printed
            with contextlib.suppress(Exception):  # (the reader's own error is taken from its task below)
                await asyncio.wait_for(asyncio.shield(reading), args.wait + 5)
            failure = _failure(reading)
        if failure is not None:
            if isinstance(failure, BrokenPipeError):
                _stream_gone(sys.stdout)
            status = 1
            with contextlib.suppress(Exception):  # end it with a closing handshake, not a dropped socket, first
                await asyncio.wait_for(ws.close(1000, ""), 5)
            _info(f"error: {_escape(str(failure), backslashes=False) or type(failure).__name__}")
            if not reading.done():  # (the writer failed: what the peer sent before its Close is still printed)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(reading), args.wait + 5)
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C: asyncio.run() cancels this task
        if not stopping:
            stopping.append(signal.SIGINT)
        # (a Ctrl-C cuts this wait short, through asyncio's own handler; a SIGTERM or SIGHUP after the first
        # signal is ignored, the wait being bounded anyway; the session ends with the first one's status)
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(ws.close(1000 if stopping[0] == signal.SIGINT else 1001, ""), 5)
        # the shell's convention, 128 + the signal's number: 130 for SIGINT, as main() returns before connecting
        status = 128 + stopping[0]
    finally:
        for task in (reading, writing):
            task.cancel()
        for signum in handled:
            loop.remove_signal_handler(signum)
    if ws.close_code is None:  # our Close went unanswered in the 5 s given: the socket is dropped at exit
        _info("disconnected (the server did not answer our Close)")
    else:
        _info(f"disconnected ({ws.close_code} {_escape(ws.close_reason or '')})".replace(" )", ")"))
    if status == 0 and not _ends_without_error(ws.close_code):
        status = 1  # the server vanished (1006) or the connection failed (1002, 1009, 1011...)
    return status


# --------------------------------------------------------------------------- bench


def _bench(args: argparse.Namespace) -> int:
    from ._bench import run

    try:
        if args.json:  # before minutes of measuring, not after
            with open(args.json, "a"):
                pass
        return run(args)
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


# --------------------------------------------------------------------------- arguments


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (``prog: error: ... (see --help)``) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Defaults shown after every help text that has one worth showing (not for on/off flags or unset
    options); descriptions keep their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or default in (None, False, [], argparse.SUPPRESS)
            or not action.option_strings
            or action.nargs == 0
        ):
            return text
        return text + " (default: %(default)s)"


def _bounded(kind: type[int] | type[float], low: float, high: float | None, what: str) -> Callable[[str], Any]:
    """An argparse ``type=`` that parses ``kind`` and checks ``low <= value <= high``, with one clear line."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} expected, not {text!r}") from None
        if value != value or value < low or (high is not None and value > high):  # NaN fails too
            bound = f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: {what} {bound}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


_port = _bounded(int, 0, 65535, "a port number")
_size = _bounded(int, 0, 2**62, "a size in bytes")
_workers = _bounded(int, 0, 1024, "a number of workers (0: one per core)")
_seconds = _bounded(float, 0, 10**9, "a number of seconds")
# microseconds given for seconds are refused here, before listening, with or without workers
_busy_poll = _bounded(float, 0, MAX_BUSY_POLL, "a number of seconds")


def _add_verbosity(parser: argparse.ArgumentParser, quiet_help: str) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help=quiet_help)
    group.add_argument(
        "-v", "--verbose", action="store_true", help="log everything wscodec does at DEBUG (frames, never payloads)"
    )


def _add_keepalive(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ping-interval", type=_seconds, default=20.0, metavar="S", help="seconds between keepalive pings; 0 disables"
    )
    parser.add_argument(
        "--ping-timeout",
        type=_seconds,
        default=20.0,
        metavar="S",
        help="close with 1011 when a ping is not answered within S seconds; 0 waits forever",
    )


_window_bits = _bounded(int, 9, 15, "window bits")


def _add_deflate_arguments(parser: argparse.ArgumentParser) -> None:
    """permessage-deflate tuning, the fields of :class:`wscodec.compression.Deflate` (defaults: measured)."""
    from .compression import Deflate

    d = Deflate()
    group = parser.add_argument_group("permessage-deflate")
    group.add_argument("--no-compression", action="store_true", help="no permessage-deflate")
    group.add_argument(
        "--server-max-window-bits",
        type=_window_bits,
        default=d.server_max_window_bits,
        metavar="9-15",
        help="LZ77 window of what the server sends (default: %(default)s)",
    )
    group.add_argument(
        "--client-max-window-bits",
        type=_window_bits,
        default=d.client_max_window_bits,
        metavar="9-15",
        help="LZ77 window of what the client sends (default: %(default)s)",
    )
    group.add_argument(
        "--server-no-context-takeover", action="store_true", help="the server compresses every message on its own"
    )
    group.add_argument(
        "--client-no-context-takeover", action="store_true", help="the client compresses every message on its own"
    )
    group.add_argument(
        "--memory-level",
        type=int,
        choices=range(1, 10),
        default=d.memory_level,
        metavar="1-9",
        help="zlib memLevel: memory for speed and ratio (default: %(default)s)",
    )
    group.add_argument(
        "--compression-level",
        type=int,
        choices=range(-1, 10),
        default=d.compression_level,
        metavar="0-9",
        help="zlib level, -1 for zlib's own default (default: %(default)s)",
    )


def _compression(args: argparse.Namespace) -> Any:
    from .compression import Deflate

    if args.no_compression:
        return None
    return Deflate(
        server_max_window_bits=args.server_max_window_bits,
        client_max_window_bits=args.client_max_window_bits,
        server_no_context_takeover=args.server_no_context_takeover,
        client_no_context_takeover=args.client_no_context_takeover,
        memory_level=args.memory_level,
        compression_level=args.compression_level,
    )


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog="python -m wscodec",
        description="wscodec command line tools: an echo/chat server, an interactive client, benchmarks.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"wscodec {__version__} ({_backend()} backend)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{serve,connect,bench}")

    def subparser(name: str, help: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=description, formatter_class=_Formatter)

    serve = subparser(
        "serve",
        "echo (or chat) server with a demo page at /",
        "Echo every message back (--chat: to every client). GET / is a demo page that uses the browser's WebSocket.\n"
        "One access line per connection goes to stderr (-q: none, -v: DEBUG logs).",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 or :: for all)")
    serve.add_argument("--port", type=_port, default=8765, help="TCP port, 0 to 65535; 0 picks a free port")
    serve.add_argument("--chat", action="store_true", help="broadcast every message to every client")
    serve.add_argument(
        "--max-size", type=_size, default=2**20, metavar="BYTES", help="largest message accepted; 0 = unlimited"
    )
    _add_deflate_arguments(serve)
    serve.add_argument(
        "--subprotocol",
        action="append",
        default=[],
        metavar="NAME",
        help="subprotocol to accept (repeatable); a client offering none of them gets 400",
    )
    _add_keepalive(serve)
    serve.add_argument("--tls-cert", metavar="PEM", help="certificate chain (PEM) to serve wss:// and https://")
    serve.add_argument("--tls-key", metavar="PEM", help="private key (PEM) for --tls-cert, if not in the same file")
    serve.add_argument(
        "--loop",
        choices=("asyncio", "uvloop", "auto"),
        default="asyncio",
        help="event loop: asyncio's, uvloop (pip install 'wscodec[uvloop]'), or auto (uvloop when installed)",
    )
    serve.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default="loop",
        help="asyncio transports: the event loop's own, aiofastnet's (pip install 'wscodec[aiofastnet]'), "
        "or auto (aiofastnet when installed)",
    )
    serve.add_argument(
        "--busy-poll",
        type=_busy_poll,
        metavar="SECONDS",
        help="keep the event loop polling this long after each read (at most 1; default: 0, off): lower latency "
        "for a busy core",
    )
    _add_verbosity(serve, "no access lines")
    # scale-out: worker processes on one port, and the bus that carries --chat across them
    serve.add_argument(
        "--workers", type=_workers, default=1, metavar="N", help="worker processes sharing the port (0 = one per core)"
    )
    serve.add_argument(
        "--broker", metavar="URL", help="chat bus across workers and servers: redis://host:port/db, rediss://"
    )

    connect = subparser(
        "connect",
        "interactive client: lines in, messages out",
        "Send each line typed (or piped) as a text message; print each message received.\n"
        "Commands: /ping [data], /close [code [reason]], /binary HEX, /help; //text sends '/text'.\n"
        "Control characters in received text and close reasons are shown escaped (\\x1b, \\n...).",
    )
    connect.add_argument("url", help="ws:// or wss:// URL")
    connect.add_argument(
        "--subprotocol", action="append", default=[], metavar="NAME", help="subprotocol to offer (repeatable)"
    )
    connect.add_argument(
        "--header",
        action="append",
        default=[],
        type=_parse_header,
        metavar="'Name: value'",
        help="extra request header (repeatable)",
    )
    _add_deflate_arguments(connect)
    connect.add_argument(
        "--proxy",
        metavar="URL",
        help="http://, https://, socks5://... ('' = none; default: the first set of WSS_PROXY or WS_PROXY, "
        "SOCKS_PROXY, HTTPS_PROXY, HTTP_PROXY (ws:// only), ALL_PROXY; NO_PROXY exempts hosts)",
    )
    connect.add_argument(
        "--max-size", type=_size, default=0, metavar="BYTES", help="largest message accepted; 0 (default) = unlimited"
    )
    connect.add_argument(
        "--wait", type=_seconds, default=_EOF_WAIT, metavar="S", help="after stdin ends, wait this long for replies"
    )
    _add_keepalive(connect)
    connect.add_argument("--cafile", metavar="PEM", help="trust the CA certificates in this file (wss://)")
    connect.add_argument(
        "--insecure", action="store_true", help="wss:// without verifying the certificate or host name (testing only)"
    )
    _add_verbosity(connect, "no connection notes on stderr")

    bench = subparser(
        "bench",
        "benchmarks against the peers that are installed",
        "Kernels, Connection receive/send and frame building, side by side with every installed peer\n"
        "(pip install 'wscodec[bench]' installs them all). Prints ratios: ours / peer, above 1 we are faster.",
    )
    bench.add_argument("--quick", action="store_true", help="fewer repeats and smaller inputs (about 20 s)")
    bench.add_argument(
        "--check",
        action="store_true",
        help="exit 1 when a target is missed or not measured (for CI); without it, 1 only when the echo run failed",
    )
    bench.add_argument(
        "--only",
        action="append",
        default=[],
        choices=("kernels", "receive", "send", "frames", "echo"),
        help="run only these groups (repeatable); echo needs a source checkout",
    )
    bench.add_argument("--json", metavar="FILE", help="also write every measurement to FILE as JSON")
    return parser


def _backend() -> str:
    from . import BACKEND

    return BACKEND


def _setup_logging(args: argparse.Namespace) -> None:
    """Access lines (the INFO "closed" line of each connection, and HTTP answers) on stderr by default;
    ``-q``: warnings only; ``-v``: everything at DEBUG."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("wscodec")
    root.addHandler(handler)
    root.propagate = False  # workers.run() configures the root logger too: one line per record, this one
    if args.verbose:
        root.setLevel(logging.DEBUG)
        return
    if args.quiet or args.command != "serve":
        root.setLevel(logging.WARNING)
        return
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    root.setLevel(logging.INFO)

    def access_only(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or getattr(record, "event", None) in ("closed", "http")

    handler.addFilter(access_only)


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop ``--loop`` asks for: None for asyncio's own. ``uvloop`` not installed is an
    ImportError naming the extra; ``auto`` falls back on asyncio's loop."""
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if name == "auto":
            return None
        raise ImportError("--loop uvloop needs uvloop: pip install 'wscodec[uvloop]'") from None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _transport_note(transport: str) -> str:
    """How the banner names the transports: nothing for the loop's own."""
    return ", aiofastnet transports" if resolve_transport(transport) == "aiofastnet" else ""


def _busy_poll_note(busy_poll: float | None) -> str:
    """How the banner names busy polling: nothing when off."""
    return f", busy-polling {busy_poll * 1e6:g} us after each read" if busy_poll else ""


def _loop_name() -> str:
    loop = asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def _run(coro: Any, factory: Callable[[], asyncio.AbstractEventLoop] | None) -> int:
    """asyncio.run() on the chosen loop (uvloop.run does the same cleanup on uvloop's, on every Python)."""
    if factory is None:
        result: int = asyncio.run(coro)
    else:
        import uvloop

        result = uvloop.run(coro)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m wscodec`` and the ``wscodec`` script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "serve" and args.tls_key and not args.tls_cert:
        parser.error("--tls-key needs --tls-cert")
    if args.command == "bench":
        return _bench(args)
    _setup_logging(args)
    if args.command == "serve" and (args.workers != 1 or args.broker):
        try:
            return _serve_scaled(args)
        except KeyboardInterrupt:  # Ctrl-C before the supervisor handles it: as without --workers
            return 130

    runner = _serve if args.command == "serve" else _connect
    try:
        factory = _loop_factory(args.loop) if args.command == "serve" else None
        if args.command == "serve":
            resolve_transport(args.transport)  # a missing aiofastnet: this message, not a traceback
    except (ImportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    kept = _terminal_kept() if args.command == "connect" and _interactive() else contextlib.nullcontext()
    try:
        with kept:
            return _run(runner(args), factory)
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError) as exc:  # a busy port, a missing certificate file, a bad URL
        with contextlib.suppress(OSError):  # (stderr itself may be a closed pipe)
            print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
