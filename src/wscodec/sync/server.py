"""The threaded server: :func:`serve` and :func:`unix_serve` return a :class:`Server`; a thread per connection.

Same option names, hooks, limits and errors as :func:`wscodec.asyncio.serve`: ``process_request``,
``process_response``, ``server_header``, ``select_subprotocol``, ``origins``, ``compression``,
``max_size``, ``max_connections``, keepalive, ``open_timeout``/``close_timeout``.
"""

from __future__ import annotations

import contextlib
import errno
import http
import logging
import os
import selectors
import socket
import ssl as ssl_module
import stat
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any

from .. import _options as checks
from .._logging import LoggerLike, PeerLogger, base_logger, peer_of
from ..basic_auth import BasicAuth
from ..client_network import DEFAULT_USER_AGENT
from ..compression import INFLATING_READ, Compression, extension_factories
from ..connection import CLOSED, OPEN, REJECT_LINGER, Connection
from ..errors import ConnectionClosed, NegotiationError
from ..events import Request, Response
from ..frames import build_close_payload
from ..handshake import HandshakeRejected, HttpParser, parse_subprotocols
from ..server_hooks import (
    INTERNAL_ERROR,
    as_response,
    going_away_reason,
    hook_request,
    respond,
    response_bytes,
    takes_connection,
)
from .websocket import WebSocket, close_notify

__all__ = ["PendingConnection", "Server", "basic_auth", "serve", "unix_serve"]

logger = logging.getLogger(__name__)

Handler = Callable[[WebSocket], Any]
HttpResponse = Response | tuple[int | http.HTTPStatus, Any, bytes | str]
#: ``process_request(connection, request)`` as in websockets (a :class:`PendingConnection`), or
#: ``process_request(request)``.
ProcessRequest = Callable[..., HttpResponse | None]
#: ``process_response(connection, request, response)``: the :class:`PendingConnection` (None if the
#: request could not be parsed).
ProcessResponse = Callable[[Any, Request | None, Response], HttpResponse | None]
#: ``select_subprotocol(connection, offered)`` as in websockets, or ``select_subprotocol(offered)``.
SelectSubprotocol = Callable[..., str | None]


class PendingConnection:
    """What ``process_request(connection, request)``, ``select_subprotocol(connection, offered)`` and
    ``process_response(connection, request, response)`` get in the threaded server: the connection before
    its upgrade, whose :class:`WebSocket` does not exist yet. It offers what websockets' ServerConnection
    offers at that point: ``request``, the addresses, :meth:`respond`, and ``username``, which the
    WebSocket then carries (set by :func:`basic_auth`)."""

    __slots__ = ("local_address", "remote_address", "request", "username")

    def __init__(self, sock: socket.socket, request: Request) -> None:
        self.request = request
        self.remote_address: Any = _address(sock.getpeername)
        self.local_address: Any = _address(sock.getsockname)
        self.username: str | None = None

    def respond(self, status: int | http.HTTPStatus, text: str) -> Response:
        """A plain-text HTTP response to return instead of the upgrade (websockets' ``respond()``)."""
        return respond(status, text)


def _address(get: Callable[[], Any]) -> Any:
    try:
        return get()
    except OSError:
        return None


def basic_auth(
    realm: str = "",
    credentials: tuple[str, str] | Iterable[tuple[str, str]] | None = None,
    check_credentials: Callable[[str, str], bool] | None = None,
) -> Callable[[PendingConnection, Request], Response | None]:
    """A ``process_request`` that lets in only requests with valid HTTP Basic credentials, as websockets'
    ``basic_auth``: see :func:`wscodec.asyncio.basic_auth` (here ``check_credentials`` is a plain
    function). The handler finds the user in ``ws.username``."""
    auth = BasicAuth(realm, credentials, check_credentials)

    def process_request(connection: PendingConnection, request: Request) -> Response | None:
        found = auth.credentials(request)
        if isinstance(found, Response):
            return found
        valid = auth.check(*found)
        if not isinstance(valid, bool):
            raise TypeError("the threaded server's check_credentials must return a bool, not an awaitable")
        if not valid:
            return auth.challenge()
        connection.username = found[0]
        return None

    return process_request


#: accept()'s failures for want of a resource (file descriptors, memory): retried after a delay.
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_RETRY_DELAY = 1.0
#: How often serve_forever's select() wakes up with nothing to do. Python runs signal handlers in the main
#: thread only: a signal the kernel hands to another thread (Ctrl-C, SIGTERM) leaves a select() without a
#: timeout asleep until the next connection, the handler (and its KeyboardInterrupt) waiting with it.
#: socketserver's ``poll_interval`` is the same bound.
_SIGNAL_POLL_INTERVAL = 0.5


class Server:
    """A running threaded server: :meth:`serve_forever` until :meth:`shutdown` (from another thread, a
    signal handler or a handler). :attr:`connections` holds the open WebSockets."""

    def __init__(self, sock: socket.socket, handler: Handler, options: dict[str, Any]) -> None:
        self.socket = sock
        self.handler = handler
        self._o = options
        self._live: set[WebSocket] = set()  # every connection whose handler runs (closed or not)
        self._threads: set[threading.Thread] = set()
        self._admitting: set[threading.Thread] = set()  # handshakes that passed the max_connections check
        self._lock = threading.Lock()
        self._shutdown = threading.Event()
        self._stopped = threading.Event()
        self._serving = False
        self._serving_thread: threading.Thread | None = None  # serve_forever's, while it runs
        self._loop_running = False  # serve_forever's thread is inside it (with the locks it may hold)
        self._deferred: tuple[bool, int, str] | None = None  # a signal handler's shutdown(), for serve_forever
        self._wake_r, self._wake_w = socket.socketpair()
        self._refused = 0  # connections closed in a row for want of a thread
        self._going_away = (1001, "going away")  # the Close that shutdown() sends

    @property
    def connections(self) -> set[WebSocket]:
        """The open WebSockets (not closing), as a new set: handler threads come and go while the caller
        loops over it (``for ws in server.connections: ws.send(...)``), as websockets' threaded ``Server``
        returns one. A connection's ``max_connections`` place is freed once it is closed, though its
        handler may run on (cleaning up), as in the asyncio server."""
        with self._lock:
            return {ws for ws in self._live if ws.state == OPEN}

    def _unclosed(self) -> int:
        return sum(1 for ws in self._live if ws.state != CLOSED)

    @property
    def port(self) -> int | None:
        name = self.socket.getsockname()
        return int(name[1]) if isinstance(name, tuple) else None

    def serve_forever(self) -> None:
        """Accept connections until :meth:`shutdown`; each runs the handshake and the handler in a thread.
        Interrupted otherwise (a KeyboardInterrupt), it may be called again."""
        self._serving_thread = threading.current_thread()  # (first: see shutdown())
        self._loop_running = True
        try:
            with self._lock:
                if self._shutdown.is_set():
                    return
                self._serving = True
                self._stopped.clear()
            self._accept_until_shutdown()
        finally:
            try:
                with self._lock:
                    ended = self._shutdown.is_set() or self._deferred is not None
                    if not ended:
                        self._serving = False
                        self._serving_thread = None
                if ended:
                    # Closed here once the select() is over, not by a shutdown() from another thread,
                    # which cannot know when that is (it waits for it, but only close_timeout).
                    self._wake_r.close()
                    self._wake_w.close()
            finally:
                self._loop_running = False  # from here a signal handler's shutdown() runs at once
                self._stopped.set()
            deferred, self._deferred = self._deferred, None
            if deferred is not None:  # (also when serve_forever ends on an exception: SystemExit...)
                self.shutdown(*deferred)

    def _accept_until_shutdown(self) -> None:
        """serve_forever's loop: shutdown() ends it with a byte on the wake-up socket."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._shutdown.is_set() and self._deferred is None:
                for key, _ in selector.select(_SIGNAL_POLL_INTERVAL):
                    if key.fileobj is self._wake_r:
                        break
                    try:
                        client, _address = self.socket.accept()
                    except OSError as exc:
                        if exc.errno in _OUT_OF_RESOURCES:
                            # The connection stays in the backlog, so the socket stays readable: retry in
                            # a second, as asyncio does, rather than spin on accept().
                            logger.warning("accept() failed: %s; retrying in %s s", exc, _ACCEPT_RETRY_DELAY)
                            self._wait_for_wake_up(_ACCEPT_RETRY_DELAY)
                        continue
                    self._start_thread(client)

    def _wait_for_wake_up(self, timeout: float) -> None:
        """Wait ``timeout`` seconds, less if shutdown() writes its wake-up byte (left for the select()).
        No new descriptor (the reason to wait may be that there is none), no lock (see shutdown())."""
        self._wake_r.settimeout(timeout)
        try:
            self._wake_r.recv(1, socket.MSG_PEEK)
        except OSError:  # the time is up (TimeoutError)
            pass
        finally:
            self._wake_r.settimeout(None)

    def _start_thread(self, client: socket.socket) -> None:
        """Run ``client``'s connection in a thread of its own. Every connection, in its handshake or open,
        holds a thread; the system's limit on threads (or on memory for their stacks) bounds them. A
        connection past that bound is closed at once and the server goes on serving the others, rather
        than ``serve_forever`` ending on the RuntimeError."""
        thread = threading.Thread(target=self._run, args=(client,), daemon=True, name="wscodec-connection")
        with self._lock:
            self._threads.add(thread)
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread"
            with self._lock:
                self._threads.discard(thread)
            client.close()
            if not self._refused:  # one line per episode, not one per connection of a flood
                logger.warning("refusing connections: %s (%d connection threads running)", exc, len(self._threads))
            self._refused += 1
            return
        if self._refused:
            logger.warning("accepting connections again, after refusing %d", self._refused)
            self._refused = 0

    def fileno(self) -> int:
        """The listening socket's file descriptor (as ``socketserver.BaseServer.fileno()``)."""
        return self.socket.fileno()

    def shutdown(self, close_connections: bool = True, code: int = 1001, reason: str | None = None) -> None:
        """Stop :meth:`serve_forever`, close the listening socket and (by default) close every open
        connection with ``code`` and ``reason`` (1001, "going away"; websockets' arguments, the reason
        empty for another code unless given), all at once:
        each gets at most ``close_timeout``, then its socket is shut down (which also ends a ``send()``
        blocked on a client that stopped reading). Returns when the connections' threads have ended, or
        after ``close_timeout`` + 1 s for a handler that keeps running once its connection is closed; from
        a signal handler that interrupted :meth:`serve_forever`, at once: serve_forever does all this
        before it returns."""
        reason = going_away_reason(code, reason)
        build_close_payload(code, reason)  # a code or reason not allowed on the wire: ValueError, before anything
        if self._loop_running and threading.current_thread() is self._serving_thread:
            # A signal handler, run in serve_forever's thread wherever it was, maybe holding a lock taken
            # below (this one's, a thread start's): serve_forever does the rest once its loop ends.
            self._deferred = (close_connections, code, reason)
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
            return
        with self._lock:
            if not self._shutdown.is_set():
                self._going_away = (code, reason)
            self._shutdown.set()
            serving = self._serving
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if serving and threading.current_thread() is not self._serving_thread:  # (not serve_forever's own)
            self._stopped.wait(self._o["close_timeout"])
        self.socket.close()
        if close_connections:
            with self._lock:
                connections = list(self._live)
                threads = list(self._threads)
            for ws in connections:
                closer = threading.Thread(
                    target=ws.close, args=self._going_away, daemon=True, name=f"wscodec-close-{id(ws):x}"
                )
                closer.start()
                threads.append(closer)
                threads.extend(thread for thread in (ws._reader, ws._keepalive) if thread is not None)
            deadline = time.monotonic() + self._o["close_timeout"] + 1
            for thread in threads:
                if thread is not threading.current_thread():  # (a handler's shutdown() waits for the others)
                    thread.join(max(deadline - time.monotonic(), 0))
        if not serving:  # (serve_forever closes them as it ends)
            self._wake_r.close()
            self._wake_w.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()

    # ------------------------------------------------------------------ one connection

    def _run(self, sock: socket.socket) -> None:
        try:
            ws = self._handshake(sock)
            with self._lock:  # shutdown() sets the flag under this lock, then closes what it finds here
                self._admitting.discard(threading.current_thread())  # (its place: the connection's now, or free)
                if ws is None:
                    return
                stopping = self._shutdown.is_set()
                if not stopping:
                    self._live.add(ws)
            if stopping:  # the server stopped while this handshake ran: as shutdown() closes the others
                ws.close(*self._going_away)
                return
            code, reason = 1000, ""
            try:
                self.handler(ws)
            except ConnectionClosed as exc:  # the peer left or broke the protocol: not the handler's fault
                ws.logger.debug("handler ended on %s", exc)
            except Exception:
                ws.logger.exception("connection handler failed")
                code, reason = 1011, "internal error"
            except BaseException as exc:
                code, reason = 1011, "internal error"
                if not isinstance(exc, SystemExit):  # sys.exit() ends its thread quietly, as in any thread
                    raise
            finally:
                try:
                    ws.close(code, reason)
                finally:
                    with self._lock:
                        self._live.discard(ws)
        except Exception:
            logger.exception("error on a connection")
            sock.close()
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())
                self._admitting.discard(threading.current_thread())

    def _handshake_logger(self, sock: socket.socket) -> PeerLogger:
        """Where the lines about a handshake go: the ``logger`` option's logger, as the connection's lines
        once it opens; each line names the client, since the connection (and its id) does not exist yet."""
        return PeerLogger(base_logger(self._o["options"]["logger"], "server"), peer_of(sock))

    def _send_response(
        self,
        sock: socket.socket,
        pending: PendingConnection | None,
        request: Request | None,
        response: Response,
        head: bytes,
    ) -> tuple[Response, bytes]:
        hook = self._o["process_response"]
        if hook is None:
            return response, head
        try:
            result = hook(pending, request, response)
        except Exception:
            self._handshake_logger(sock).exception("error in process_response")
            result = INTERNAL_ERROR
        if result is None or result is response:
            return response, head
        try:
            new = as_response(result, upgrade=True)
            return new, response_bytes(new)
        except Exception:
            self._handshake_logger(sock).exception("invalid response from process_response: %r", result)
            return INTERNAL_ERROR, response_bytes(INTERNAL_ERROR)

    def _handshake(self, sock: socket.socket) -> WebSocket | None:
        o = self._o
        ssl = o["ssl"]
        timeout = o["open_timeout"]
        deadline = None if timeout is None else time.monotonic() + timeout
        sock.settimeout(timeout)
        try:
            if ssl is not None:
                sock = ssl.wrap_socket(sock, server_side=True)  # the TLS handshake, within open_timeout
                if deadline is not None:  # what is left of it for the request
                    sock.settimeout(max(deadline - time.monotonic(), 0.001))
            parser = HttpParser()
            received = bytearray()
            malformed = False
            while True:
                data = sock.recv(INFLATING_READ)  # frames may follow the request: see INFLATING_READ
                if not data:
                    sock.close()
                    return None
                received += data
                try:
                    if parser.feed(data):
                        break
                except HandshakeRejected:
                    malformed = True
                    break
                if deadline is not None:
                    sock.settimeout(max(deadline - time.monotonic(), 0.001))
        except (OSError, ssl_module.SSLError):
            sock.close()
            return None
        conn = Connection("server", **o["connection"])
        request = None if malformed else hook_request(parser)
        answer: Any = None
        pending = PendingConnection(sock, request) if request is not None else None
        if request is not None and o["process_request"] is not None:
            try:
                if o["process_request_takes_connection"]:
                    answer = o["process_request"](pending, request)
                else:
                    answer = o["process_request"](request)
            except Exception:
                self._handshake_logger(sock).exception("error in process_request")
                answer = INTERNAL_ERROR
        # A request no hook can read is left to the Connection's 400, before any limit (as websockets).
        if answer is None and request is not None and self._shutdown.is_set():
            answer = (503, [("Content-Type", "text/plain"), ("Retry-After", "1")], b"server shutting down\n")
        limit = o["max_connections"]
        if answer is None and limit is not None and request is not None:
            # The handshakes past this check hold a place (their thread's) until they open or fail: several
            # running at once must not open past the limit together.
            with self._lock:
                if self._unclosed() + len(self._admitting) >= limit:
                    answer = (503, [("Content-Type", "text/plain"), ("Retry-After", "1")], b"too many connections\n")
                else:
                    self._admitting.add(threading.current_thread())
        server_header = o["server_header"]
        extra = [("Server", server_header)] if server_header is not None else []
        if answer is not None:
            try:
                response = as_response(answer)
            except Exception:  # as the asyncio server answers a hook's invalid response
                self._handshake_logger(sock).exception("invalid response from process_request: %r", answer)
                response = INTERNAL_ERROR
            if server_header is not None and response.header("Server") is None:
                response = Response(response.status_code, response.reason, (*response.headers, *extra), response.body)
            _, head = self._send_response(sock, pending, request, response, response_bytes(response))
            self._finish_http(sock, head)
            return None
        events = conn.receive_data(bytes(received))
        if not events or type(events[0]) is not Request:
            self._refuse(sock, pending, request, conn)
            return None
        try:
            select = o["select_subprotocol"]
            if select is not None:
                offered = parse_subprotocols(events[0].headers)
                chosen = select(pending, offered) if o["select_subprotocol_takes_connection"] else select(offered)
                events = conn.accept(chosen, extra_headers=extra)
            else:
                events = conn.accept(extra_headers=extra)
        except NegotiationError as exc:  # no subprotocol in common (or the hook's own refusal): 400
            self._handshake_logger(sock).info("rejected opening handshake: %s", exc)
            conn.reject(400, [("Content-Type", "text/plain"), *extra], f"{exc}\n".encode())
            self._refuse(sock, pending, request, conn)
            return None
        except Exception:
            self._handshake_logger(sock).exception("error while accepting the connection")
            conn = Connection("server")  # a fresh one, to answer 500
            conn.reject(500, list(INTERNAL_ERROR.headers), INTERNAL_ERROR.body)
            self._refuse(sock, pending, request, conn)
            return None
        queued = conn.data_to_send()
        end = queued.find(b"\r\n\r\n") + 4
        assert conn.response is not None
        response, head = self._send_response(sock, pending, conn.request, conn.response, queued[:end])
        if response.status_code != 101:
            self._finish_http(sock, head)
            return None
        try:
            sock.sendall(head + queued[end:])
        except OSError:
            sock.close()
            return None
        host = request.header("Host", "") if request is not None else ""
        url = f"{'wss' if ssl is not None else 'ws'}://{host}{request.path if request is not None else '/'}"
        ws = WebSocket(sock, conn, url=url, events=events, **o["options"])
        ws.username = pending.username if pending is not None else None
        return ws

    def _refuse(
        self, sock: socket.socket, pending: PendingConnection | None, request: Request | None, conn: Connection
    ) -> None:
        """Send the Connection's refusal of the upgrade, through ``process_response`` when the request could be
        read (as the asyncio server, and websockets, which calls it after ``accept()`` whatever its answer)."""
        data = conn.data_to_send()
        if request is not None and conn.response is not None:
            _, data = self._send_response(sock, pending, request, conn.response, data)
        self._finish_http(sock, data)

    def _finish_http(self, sock: socket.socket, data: bytes) -> None:
        try:
            sock.sendall(data)
            close_notify(sock, min(REJECT_LINGER, self._o["close_timeout"]))
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            sock.close()


def _options(
    ssl: ssl_module.SSLContext | None,
    subprotocols: Sequence[str],
    select_subprotocol: SelectSubprotocol | None,
    origins: Sequence[str | None] | None,
    process_request: ProcessRequest | None,
    process_response: ProcessResponse | None,
    server_header: str | None,
    compression: Compression,
    extensions: Sequence[Any] | None,
    open_timeout: float | None,
    ping_interval: float | None,
    ping_timeout: float | None,
    close_timeout: float,
    max_size: checks.Bound,
    max_queue: checks.Bound,
    max_connections: int | None,
    logger: LoggerLike,
) -> dict[str, Any]:
    close_timeout, max_size, max_queue = checks.limits(close_timeout, max_size, max_queue)
    return {
        "ssl": ssl,
        "select_subprotocol": select_subprotocol,
        "select_subprotocol_takes_connection": select_subprotocol is not None and takes_connection(select_subprotocol),
        "process_request_takes_connection": process_request is not None and takes_connection(process_request),
        "process_request": process_request,
        "process_response": process_response,
        "server_header": server_header,
        "open_timeout": open_timeout,
        "close_timeout": close_timeout,
        "max_connections": max_connections,
        "connection": {
            "subprotocols": checks.subprotocols(subprotocols),
            "origins": origins,
            "extensions": extension_factories(compression, "server", extensions),
            "max_message_size": max_size,
        },
        "options": {
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "close_timeout": close_timeout,
            "max_queue": max_queue,
            "logger": logger,
        },
    }


def serve(
    handler: Handler,
    host: str | None = "127.0.0.1",
    port: int | None = 8765,
    *,
    sock: socket.socket | None = None,
    ssl: ssl_module.SSLContext | None = None,
    subprotocols: Sequence[str] = (),
    select_subprotocol: SelectSubprotocol | None = None,
    origins: Sequence[str | None] | None = None,
    process_request: ProcessRequest | None = None,
    process_response: ProcessResponse | None = None,
    server_header: str | None = DEFAULT_USER_AGENT,
    compression: Compression = "deflate",
    extensions: Sequence[Any] | None = None,
    open_timeout: float | None = 10.0,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    close_timeout: float = 10.0,
    max_size: checks.Bound = 2**20,
    max_queue: checks.Bound = 16,
    max_connections: int | None = None,
    logger: LoggerLike = None,
    backlog: int = 100,
    reuse_port: bool = False,
) -> Server:
    """Listen on ``host``:``port`` (or the listening socket ``sock``) and return the :class:`Server`;
    call ``serve_forever()``. ``handler(ws)`` runs in a thread per connection; the options are those of
    :func:`wscodec.asyncio.serve` that do not belong to an event loop (``reuse_port`` too: websockets passes it to
    :func:`socket.create_server`, as here). Its hooks get the connection as a :class:`PendingConnection`, since the
    :class:`WebSocket` exists only after the upgrade."""
    options = _options(
        ssl,
        subprotocols,
        select_subprotocol,
        origins,
        process_request,
        process_response,
        server_header,
        compression,
        extensions,
        open_timeout,
        ping_interval,
        ping_timeout,
        close_timeout,
        max_size,
        max_queue,
        max_connections,
        logger,
    )  # checked before binding
    if sock is None:
        sock = socket.create_server((host or "", port or 0), backlog=backlog, reuse_port=reuse_port)
    return Server(sock, handler, options)


def unix_serve(
    handler: Handler,
    path: str | None = None,
    *,
    sock: socket.socket | None = None,
    ssl: ssl_module.SSLContext | None = None,
    subprotocols: Sequence[str] = (),
    select_subprotocol: SelectSubprotocol | None = None,
    origins: Sequence[str | None] | None = None,
    process_request: ProcessRequest | None = None,
    process_response: ProcessResponse | None = None,
    server_header: str | None = DEFAULT_USER_AGENT,
    compression: Compression = "deflate",
    extensions: Sequence[Any] | None = None,
    open_timeout: float | None = 10.0,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    close_timeout: float = 10.0,
    max_size: checks.Bound = 2**20,
    max_queue: checks.Bound = 16,
    max_connections: int | None = None,
    logger: LoggerLike = None,
    backlog: int = 100,
) -> Server:
    """:func:`serve` on a Unix socket at ``path`` (or the listening Unix socket ``sock``); the same options."""
    options = _options(
        ssl,
        subprotocols,
        select_subprotocol,
        origins,
        process_request,
        process_response,
        server_header,
        compression,
        extensions,
        open_timeout,
        ping_interval,
        ping_timeout,
        close_timeout,
        max_size,
        max_queue,
        max_connections,
        logger,
    )  # checked before binding
    if sock is None:
        if path is None:
            raise TypeError("unix_serve() needs path or sock")
        with contextlib.suppress(FileNotFoundError):  # a stale socket goes; anything else stays (asyncio's rule)
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(backlog)
    return Server(sock, handler, options)
