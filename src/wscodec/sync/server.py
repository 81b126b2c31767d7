"""The threaded server: :func:`serve` and :func:`unix_serve` return a :class:`Server`; a thread per connection.

Same option names, hooks, limits and errors as :func:`wscodec.asyncio.serve`: ``process_request``,
``process_response``, ``server_header``, ``select_subprotocol``, ``origins``, ``compression``,
``max_size``, ``max_connections``, keepalive, ``open_timeout``/``close_timeout``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http
import logging
import os
import selectors
import socket
import ssl as ssl_module
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from ..client_network import DEFAULT_USER_AGENT
from ..compression import Compression, extension_factories
from ..connection import Connection
from ..events import Request, Response
from ..handshake import HandshakeRejected, HttpParser, _serialize, parse_subprotocols
from .websocket import WebSocket

__all__ = ["Server", "serve", "unix_serve"]

logger = logging.getLogger(__name__)

Handler = Callable[[WebSocket], Any]
HttpResponse = tuple[int | http.HTTPStatus, Any, bytes | str]
ProcessRequest = Callable[[Request], HttpResponse | None]
ProcessResponse = Callable[[WebSocket | None, Request | None, Response], Response | HttpResponse | None]


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def _as_response(value: Any) -> Response:
    if isinstance(value, Response):
        return value
    status, headers, body = value
    if isinstance(headers, Mapping):
        headers = list(headers.items())
    if isinstance(body, str):
        body = body.encode()
    return Response(int(status), _phrase(int(status)), tuple((str(k), str(v)) for k, v in headers), bytes(body))


def _response_bytes(response: Response) -> bytes:
    if response.status_code == 101:
        return _serialize(f"HTTP/1.1 101 {response.reason or 'Switching Protocols'}", response.headers)
    headers = [(k, v) for k, v in response.headers if k.lower() != "content-length"]
    headers.append(("Content-Length", str(len(response.body))))
    if not any(k.lower() == "connection" for k, _ in headers):
        headers.append(("Connection", "close"))
    return _serialize(f"HTTP/1.1 {response.status_code} {response.reason or _phrase(response.status_code)}",
                      headers) + response.body


_INTERNAL_ERROR = Response(500, "Internal Server Error", (("Content-Type", "text/plain"),), b"Internal Server Error\n")


class Server:
    """A running threaded server: :meth:`serve_forever` until :meth:`shutdown` (from another thread, a
    signal handler or a handler). ``connections`` holds the open WebSockets."""

    def __init__(self, sock: socket.socket, handler: Handler, options: dict[str, Any]) -> None:
        self.socket = sock
        self.handler = handler
        self._o = options
        self.connections: set[WebSocket] = set()
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._shutdown = threading.Event()
        self._stopped = threading.Event()
        self._serving = False
        self._wake_r, self._wake_w = socket.socketpair()

    @property
    def port(self) -> int | None:
        name = self.socket.getsockname()
        return int(name[1]) if isinstance(name, tuple) else None

    def serve_forever(self) -> None:
        """Accept connections until :meth:`shutdown`; each runs the handshake and the handler in a thread."""
        with self._lock:
            if self._shutdown.is_set():
                return
            self._serving = True
        selector = selectors.DefaultSelector()
        selector.register(self.socket, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._shutdown.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r:
                        break
                    try:
                        client, _address = self.socket.accept()
                    except OSError:
                        continue
                    thread = threading.Thread(target=self._run, args=(client,), daemon=True,
                                              name="wscodec-connection")
                    with self._lock:
                        self._threads.add(thread)
                    thread.start()
        finally:
            selector.close()
            self._stopped.set()

    def shutdown(self, close_connections: bool = True) -> None:
        """Stop :meth:`serve_forever`, close the listening socket and (by default) close every open
        connection with 1001, all at once: each gets at most ``close_timeout``, then its socket is shut
        down (which also ends a ``send()`` blocked on a client that stopped reading). Returns when the
        connections' threads have ended, or after ``close_timeout`` + 1 s for a handler that keeps
        running once its connection is closed."""
        with self._lock:
            self._shutdown.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._serving:
            self._stopped.wait(self._o["close_timeout"])
        self.socket.close()
        if close_connections:
            with self._lock:
                connections = list(self.connections)
                threads = list(self._threads)
            for ws in connections:
                closer = threading.Thread(target=ws.close, args=(1001, "going away"), daemon=True,
                                          name=f"wscodec-close-{id(ws):x}")
                closer.start()
                threads.append(closer)
                threads.extend(thread for thread in (ws._reader, ws._keepalive) if thread is not None)
            deadline = time.monotonic() + self._o["close_timeout"] + 1
            for thread in threads:
                thread.join(max(deadline - time.monotonic(), 0))
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
            if ws is None:
                return
            with self._lock:
                self.connections.add(ws)
            try:
                self.handler(ws)
            except Exception:
                logger.exception("connection handler failed")
                ws.close(1011, "internal error")
            ws.close(1000, "")
            with self._lock:
                self.connections.discard(ws)
        except Exception:
            logger.exception("error on a connection")
            sock.close()
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _send_response(self, sock: socket.socket, request: Request | None, response: Response, head: bytes,
                       ws_for_hook: WebSocket | None = None) -> tuple[Response, bytes]:
        hook = self._o["process_response"]
        if hook is None:
            return response, head
        try:
            result = hook(ws_for_hook, request, response)
        except Exception:
            logger.exception("error in process_response")
            result = _INTERNAL_ERROR
        if result is None or result is response:
            return response, head
        try:
            new = _as_response(result)
            return new, _response_bytes(new)
        except Exception:
            logger.exception("invalid response from process_response: %r", result)
            return _INTERNAL_ERROR, _response_bytes(_INTERNAL_ERROR)

    def _handshake(self, sock: socket.socket) -> WebSocket | None:
        o = self._o
        ssl = o["ssl"]
        timeout = o["open_timeout"]
        deadline = None if timeout is None else time.monotonic() + timeout
        sock.settimeout(timeout)
        try:
            if ssl is not None:
                sock = ssl.wrap_socket(sock, server_side=True)
            parser = HttpParser()
            received = bytearray()
            malformed = False
            while True:
                data = sock.recv(65536)
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
        request = None
        if not malformed:
            parts = parser.start_line.split(" ")
            if len(parts) == 3:
                request = Request(parts[0], parts[1], parser.headers, parts[2])
        answer: Any = None
        if request is not None and o["process_request"] is not None:
            try:
                answer = o["process_request"](request)
            except Exception:
                logger.exception("error in process_request")
                answer = _INTERNAL_ERROR
        limit = o["max_connections"]
        if answer is None and limit is not None and len(self.connections) >= limit:
            answer = (503, [("Content-Type", "text/plain"), ("Retry-After", "1")], b"too many connections\n")
        server_header = o["server_header"]
        extra = [("Server", server_header)] if server_header is not None else []
        if answer is not None:
            response = _as_response(answer)
            if server_header is not None and response.header("Server") is None:
                response = dataclasses.replace(response, headers=(*response.headers, *extra))
            _, head = self._send_response(sock, request, response, _response_bytes(response))
            self._finish_http(sock, head)
            return None
        events = conn.receive_data(bytes(received))
        if not events or type(events[0]) is not Request:
            self._finish_http(sock, conn.data_to_send())
            return None
        try:
            select = o["select_subprotocol"]
            if select is not None:
                events = conn.accept(select(parse_subprotocols(events[0].headers)), extra_headers=extra)
            else:
                events = conn.accept(extra_headers=extra)
        except Exception:
            logger.exception("error while accepting the connection")
            self._finish_http(sock, _response_bytes(_INTERNAL_ERROR))
            return None
        queued = conn.data_to_send()
        end = queued.find(b"\r\n\r\n") + 4
        assert conn.response is not None
        response, head = self._send_response(sock, conn.request, conn.response, queued[:end])
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
        return WebSocket(sock, conn, url=url, events=events, **o["options"])

    def _finish_http(self, sock: socket.socket, data: bytes) -> None:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            sock.close()


def _options(
    ssl: ssl_module.SSLContext | None,
    subprotocols: Sequence[str],
    select_subprotocol: Callable[[list[str]], str | None] | None,
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
    max_size: int | None,
    max_queue: int | None,
    max_connections: int | None,
    logger: logging.Logger | logging.LoggerAdapter[Any] | str | None,
) -> dict[str, Any]:
    return {
        "ssl": ssl,
        "select_subprotocol": select_subprotocol,
        "process_request": process_request,
        "process_response": process_response,
        "server_header": server_header,
        "open_timeout": open_timeout,
        "close_timeout": close_timeout,
        "max_connections": max_connections,
        "connection": {
            "subprotocols": tuple(subprotocols or ()),
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
    select_subprotocol: Callable[[list[str]], str | None] | None = None,
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
    max_size: int | None = 2**20,
    max_queue: int | None = 16,
    max_connections: int | None = None,
    logger: logging.Logger | logging.LoggerAdapter[Any] | str | None = None,
    backlog: int = 100,
) -> Server:
    """Listen on ``host``:``port`` (or the listening socket ``sock``) and return the :class:`Server`;
    call ``serve_forever()``. ``handler(ws)`` runs in a thread per connection; the options are those of
    :func:`wscodec.asyncio.serve` (``process_response(ws, request, response)`` gets None for ``ws``
    before the upgrade)."""
    if sock is None:
        sock = socket.create_server((host or "", port or 0), backlog=backlog, reuse_port=False)
    options = _options(ssl, subprotocols, select_subprotocol, origins, process_request, process_response,
                       server_header, compression, extensions, open_timeout, ping_interval, ping_timeout,
                       close_timeout, max_size, max_queue, max_connections, logger)
    return Server(sock, handler, options)


def unix_serve(
    handler: Handler,
    path: str | None = None,
    *,
    sock: socket.socket | None = None,
    ssl: ssl_module.SSLContext | None = None,
    subprotocols: Sequence[str] = (),
    select_subprotocol: Callable[[list[str]], str | None] | None = None,
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
    max_size: int | None = 2**20,
    max_queue: int | None = 16,
    max_connections: int | None = None,
    logger: logging.Logger | logging.LoggerAdapter[Any] | str | None = None,
    backlog: int = 100,
) -> Server:
    """:func:`serve` on a Unix socket at ``path`` (or the listening Unix socket ``sock``); the same options."""
    if sock is None:
        if path is None:
            raise TypeError("unix_serve() needs path or sock")
        if os.path.exists(path) and not os.path.isfile(path):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(backlog)
    options = _options(ssl, subprotocols, select_subprotocol, origins, process_request, process_response,
                       server_header, compression, extensions, open_timeout, ping_interval, ping_timeout,
                       close_timeout, max_size, max_queue, max_connections, logger)
    return Server(sock, handler, options)
