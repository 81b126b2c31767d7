"""Client networking shared by :mod:`wscodec.asyncio` and :mod:`wscodec.sync`: URLs, proxies, redirects,
credentials, identity and the reconnection backoff.

This module sits *under* the I/O layers and above nothing: it turns a ``ws://``/``wss://`` URL and a
``proxy=`` setting into a connected stream (an asyncio transport, or a socket for the threaded API), and
holds the policy both layers follow (which proxy the environment names, which redirects to follow, how long
to wait before reconnecting). Neither :class:`~wscodec.connection.Connection` nor the kernels know about
proxies: the WebSocket handshake starts on the stream this module returns, whatever it went through.

Proxies: ``http://`` and ``https://`` proxies tunnel with ``CONNECT`` (RFC 9110 section 9.3.6), with
``Proxy-Authorization: Basic`` from the proxy URL's credentials; ``socks5://``, ``socks5h://``,
``socks4://`` and ``socks4a://`` go through the optional ``python-socks`` package (``pip install
'wscodec[socks]'``). ``proxy=True`` reads the environment through :mod:`urllib.request` and picks as websockets does:
``WSS_PROXY``, ``SOCKS_PROXY`` then ``HTTPS_PROXY`` for ``wss://``; ``WS_PROXY``, ``SOCKS_PROXY``,
``HTTPS_PROXY`` then ``HTTP_PROXY`` for ``ws://``; then, unlike websockets, ``ALL_PROXY`` when none of
those is set (as curl and requests read it); ``NO_PROXY`` exempts hosts, with or without their port.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import ipaddress
import random
import re
import socket
import ssl as ssl_module
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .errors import InvalidProxy, InvalidStatus, InvalidURI, ProxyError, RedirectError
from .handshake import HttpParser, check_header
from .transports import TransportChoice, opener

__all__ = [
    "DEFAULT_USER_AGENT",
    "Backoff",
    "ProxyURL",
    "WebSocketURI",
    "basic_auth_header",
    "is_fatal_status",
    "open_asyncio_stream",
    "open_socket",
    "parse_proxy",
    "parse_uri",
    "redirect_location",
    "select_proxy",
]


def _version() -> str:
    from . import __version__

    return __version__


DEFAULT_USER_AGENT = f"Python/{sys.version_info.major}.{sys.version_info.minor} wscodec/{_version()}"
"""``User-Agent`` (client) and ``Server`` (server) header by default, as websockets does."""

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_SOCKS_SCHEMES = frozenset({"socks5", "socks5h", "socks4", "socks4a"})
_MAX_PROXY_RESPONSE = 8192
_PROXY_STATUS_LINE = re.compile(r"HTTP/1\.[01] ([0-9]{3})(?: (.*))?")
# The keys of urllib.request.getproxies() (FOO_PROXY -> "foo") tried in turn, as websockets' get_proxy().
_ENV_PROXY_SCHEMES_WSS = ("wss", "socks", "https")
_ENV_PROXY_SCHEMES_WS = ("ws", "socks", "https", "http")


# --------------------------------------------------------------------------- URLs


@dataclasses.dataclass(frozen=True)
class WebSocketURI:
    """A parsed ``ws://`` or ``wss://`` URL."""

    secure: bool
    host: str
    port: int
    path: str
    username: str | None = None
    password: str | None = None

    @property
    def host_header(self) -> str:
        """The ``Host`` header: the port only when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == (443 if self.secure else 80) else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The URL without credentials."""
        return f"{'wss' if self.secure else 'ws'}://{self.host_header}{self.path}"

    @property
    def http_url(self) -> str:
        """The same place as ``http(s)://``, which is what proxy rules (``NO_PROXY``) are written for."""
        return f"{'https' if self.secure else 'http'}://{self.host_header}{self.path}"


# What stays as it is when a path with non-ASCII characters is percent-encoded: RFC 3986's delimiters,
# its unreserved "~", and "%" (an escape already there is kept, not encoded twice).
_URI_SAFE = ":/?#[]@!$&'()*+,;=~%"


def parse_uri(url: str) -> WebSocketURI:
    """Parse a ``ws://``/``wss://`` URL; raises :class:`~wscodec.errors.InvalidURI` (a ValueError).

    A URL with non-ASCII characters (an IRI) is mapped to a URI as RFC 3987 section 3.1 says and as
    websockets does: the host to its IDNA A-labels (``bücher.example`` is ``xn--bcher-kva.example``, in
    the Host header, a proxy's CONNECT and the name resolved), the path and query to UTF-8
    percent-escapes; ASCII parts are kept as given."""
    if not isinstance(url, str):
        raise InvalidURI(repr(url), "not a string")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _invalid(url, str(exc)) from None
    if parts.scheme not in ("ws", "wss"):
        raise _invalid(url, "scheme isn't ws or wss")
    if not parts.hostname:
        raise _invalid(url, "no host")
    if parts.fragment:
        raise _invalid(url, "a WebSocket URI has no fragment")
    if any(c <= " " or c == "\x7f" for c in url):  # RFC 3986 has no place for them, escaped or not
        raise _invalid(url, "whitespace or control character")
    secure = parts.scheme == "wss"
    host = parts.hostname
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise _invalid(url, f"host is not a valid internationalized domain name ({exc})") from None
    if not path.isascii():
        path = urllib.parse.quote(path, safe=_URI_SAFE)
    username, password = _credentials(url, parts)
    return WebSocketURI(secure, host, port or (443 if secure else 80), path, username, password)


def _invalid(url: str, why: str) -> InvalidURI:
    """The error for ``url``, which shows it, and ``why``, without its password (error texts end up in
    logs; urllib's own texts may quote a piece of it, as the port it could not read: ``as 's3cr'``)."""
    shown = _without_password(url)
    if shown != url:
        for piece in re.split(r"[/?#]", _password_part(url)):
            if piece:
                why = why.replace(f"'{piece}'", "'***'")
    return InvalidURI(shown, why)


def _password_part(url: str) -> str:
    """What ``ws://user:password@host/`` holds between the user's colon and the last ``@``: the password
    as written, even where it holds ``/``, ``?``, ``#`` or the user an ``@`` (which urllib reads as such,
    or fails on); "" if the URL has no ``user:`` part before an ``@``."""
    start = url.find("://")
    at = url.rfind("@")
    if start < 0 or at < start + 3:
        return ""
    colon = url.find(":", start + 3, at)
    return "" if colon < 0 else url[colon + 1 : at]


def _without_password(url: str) -> str:
    """``url`` with the password of its userinfo (``ws://user:password@host/``) shown as ``***``, for error
    messages and logs. Errs on the side of hiding: whatever lies between the first colon after ``://`` and
    the last ``@`` is masked (in a URL without credentials but with an ``@`` in its path, that hides the
    port and part of the path from the message, never a password)."""
    password = _password_part(url)
    if not password:
        return url
    at = url.rfind("@")
    return url[: at - len(password)] + "***" + url[at:]


def _credentials(url: str, parts: urllib.parse.SplitResult) -> tuple[str, str] | tuple[None, None]:
    """The user and password of ``ws://user:password@host/``, percent-decoded, for ``Authorization:
    Basic``. Refused, as websockets refuses them: a user without a password, escapes that are not UTF-8
    (not replaced by U+FFFD); and a user with a colon, which RFC 7617 section 2 forbids (the server would
    split it at the colon)."""
    if parts.username is None:
        return None, None
    userinfo = _userinfo(parts)
    if userinfo is None:
        raise _invalid(url, "username or password is not percent-encoded UTF-8")
    username, password = userinfo
    if password is None:
        raise _invalid(url, "username provided without password")
    if ":" in username:
        raise _invalid(url, "username contains a colon, which Basic authentication cannot carry")
    return username, password


def _userinfo(parts: urllib.parse.SplitResult) -> tuple[str, str | None] | None:
    """The percent-decoded user and password (None where absent) of a URL that has a user; None where
    either is not percent-encoded UTF-8: refused, not replaced by U+FFFD."""
    try:
        username = urllib.parse.unquote(parts.username or "", errors="strict")
        password = None if parts.password is None else urllib.parse.unquote(parts.password, errors="strict")
    except UnicodeDecodeError:
        return None
    return username, password


def basic_auth_header(username: str, password: str | None) -> str:
    """``Basic <base64(user:password)>`` (RFC 7617), for ``Authorization`` and ``Proxy-Authorization``
    (:func:`parse_uri` has refused a URL's user without a password or with a colon)."""
    token = base64.b64encode(f"{username}:{password or ''}".encode()).decode("ascii")
    return f"Basic {token}"


# --------------------------------------------------------------------------- proxies


@dataclasses.dataclass(frozen=True)
class ProxyURL:
    """A parsed proxy URL."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    url: str = ""

    @property
    def is_socks(self) -> bool:
        return self.scheme in _SOCKS_SCHEMES


def parse_proxy(url: str) -> ProxyURL:
    """Parse a proxy URL; raises :class:`~wscodec.errors.InvalidProxy` for an unknown scheme."""
    if "://" not in url:
        url = "http://" + url  # urllib.request accepts "host:port" in the environment; so do we
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _invalid(url, str(exc)) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") and scheme not in _SOCKS_SCHEMES:
        raise InvalidProxy(
            f"unsupported proxy scheme {scheme!r} in {_without_password(url)!r}: use http, https, "
            "socks5, socks5h, socks4 or socks4a"
        )
    if not parts.hostname:
        raise _invalid(url, "no host")
    default_port = {"http": 80, "https": 443}.get(scheme, 1080)
    username, password = _proxy_credentials(url, parts, scheme)
    return ProxyURL(scheme, parts.hostname, port or default_port, username, password, url)


def _proxy_credentials(url: str, parts: urllib.parse.SplitResult, scheme: str) -> tuple[str | None, str | None]:
    """A proxy URL's user and password, refused as websockets' ``parse_proxy`` refuses them: a user without
    a password (Basic and SOCKS5 authentication need both), escapes that are not UTF-8. SOCKS4 has a user
    ID and no password."""
    if parts.username is None:
        return None, None
    if parts.password is None and not scheme.startswith("socks4"):
        raise InvalidProxy(f"username provided without password in {_without_password(url)!r}")
    userinfo = _userinfo(parts)
    if userinfo is None:
        raise InvalidProxy(f"username or password is not percent-encoded UTF-8 in {_without_password(url)!r}")
    return userinfo


def select_proxy(uri: WebSocketURI, proxy: str | bool | None) -> ProxyURL | None:
    """The proxy to go through for ``uri``: ``proxy`` itself (a URL), none (None/False), or with ``True``
    the environment's, read as :mod:`urllib.request` reads it (``NO_PROXY`` honoured), in websockets'
    order so that moving from it keeps the proxy: ``wss``, ``socks``, ``https`` for ``wss://``; ``ws``,
    ``socks``, ``https``, ``http`` for ``ws://`` (RFC 6455's "Proxy Usage" prefers SOCKS, then the HTTPS
    proxy); then ``all``, which websockets does not read. A ``SOCKS_PROXY`` written ``http://host:port`` or
    ``host:port`` is ``socks5h``."""
    if proxy is None or proxy is False:
        return None
    if isinstance(proxy, str):
        return parse_proxy(proxy)
    if proxy is not True:
        raise TypeError(f"proxy must be a URL, True or None, not {type(proxy).__name__}")
    proxies = urllib.request.getproxies()
    if not proxies:
        return None
    # NO_PROXY entries may name a port: the host as the Host header has it (no default port), and with its
    # port (what websockets checks, and what an entry naming the default port matches).
    with_port = f"[{uri.host}]:{uri.port}" if ":" in uri.host else f"{uri.host}:{uri.port}"
    for host in (uri.host_header, with_port):
        if urllib.request.proxy_bypass(host):
            return None
    if "no" in proxies and any(_bypass_env(host, proxies["no"]) for host in (uri.host, with_port)):
        return None
    for scheme in (*(_ENV_PROXY_SCHEMES_WSS if uri.secure else _ENV_PROXY_SCHEMES_WS), "all"):
        url = proxies.get(scheme)
        if url:
            if scheme == "socks" and (url.startswith("http://") or "://" not in url):
                url = "socks5h://" + url.removeprefix("http://")  # how the OS settings name a SOCKS proxy
            return parse_proxy(url)
    return None


def _bypass_env(host: str, no_proxy: str) -> bool:
    # urllib.request.proxy_bypass() reads the environment through getproxies(), which on some platforms
    # skips the environment; this is proxy_bypass_environment's rule applied to what getproxies() found.
    bypass: Any = getattr(urllib.request, "proxy_bypass_environment")  # noqa: B009 - not in typeshed
    return bool(bypass(host, {"no": no_proxy}))


def connect_request(uri: WebSocketURI, proxy: ProxyURL, user_agent: str | None) -> bytes:
    """The ``CONNECT host:port`` request that opens a tunnel through an HTTP proxy."""
    target = f"[{uri.host}]:{uri.port}" if ":" in uri.host else f"{uri.host}:{uri.port}"
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if user_agent is not None:
        check_header("User-Agent", user_agent)  # a CR or LF would inject lines into what the proxy reads
        lines.append(f"User-Agent: {user_agent}")
    if proxy.username is not None:
        lines.append(f"Proxy-Authorization: {basic_auth_header(proxy.username, proxy.password)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class ConnectResponse:
    """Reads the proxy's answer to ``CONNECT``: :meth:`feed` until True, then :attr:`leftover` holds the
    bytes after the head (the start of the tunnel's stream). A status other than 2xx raises
    :class:`~wscodec.errors.ProxyError`."""

    def __init__(self, proxy: ProxyURL) -> None:
        self._parser = HttpParser(max_header_size=_MAX_PROXY_RESPONSE)
        self._proxy = proxy
        self.leftover = b""

    def feed(self, data: bytes) -> bool:
        if not data:
            raise ProxyError(f"proxy {self._proxy.host}:{self._proxy.port} closed the connection before answering")
        try:
            done = self._parser.feed(data)
        except Exception as exc:
            raise ProxyError(f"invalid response from proxy {self._proxy.host}:{self._proxy.port}: {exc}") from None
        if not done:
            return False
        # RFC 9112 section 4: HTTP-version SP 3DIGIT SP [reason]; anything else is no answer to CONNECT.
        line = _PROXY_STATUS_LINE.fullmatch(self._parser.start_line)
        if line is None:
            raise ProxyError(f"invalid status line from proxy: {self._parser.start_line!r}")
        status, reason = int(line[1]), line[2] or ""
        if not 200 <= status < 300:
            what = "requires authentication" if status == 407 else "refused the tunnel"
            raise ProxyError(
                f"proxy {self._proxy.host}:{self._proxy.port} {what}: HTTP {status} {reason}".rstrip(), status
            )
        self.leftover = bytes(self._parser.leftover)
        return True


def _proxy_tls(proxy: ProxyURL, proxy_ssl: ssl_module.SSLContext | None) -> ssl_module.SSLContext | None:
    """The TLS context for the connection to the proxy itself, which only an https:// proxy has. A
    ``proxy_ssl`` for any other is a ValueError, as in websockets: whoever gave it expects TLS to the proxy."""
    if proxy.scheme != "https":
        if proxy_ssl is not None:
            raise ValueError(f"proxy_ssl argument is incompatible with a {proxy.scheme}:// proxy")
        return None
    return proxy_ssl if proxy_ssl is not None else ssl_module.create_default_context()


def _socks_module(sync: bool) -> Any:
    import importlib

    try:
        return importlib.import_module("python_socks.sync" if sync else "python_socks.async_.asyncio")
    except ImportError:
        raise InvalidProxy("a SOCKS proxy needs the python-socks package: pip install 'wscodec[socks]'") from None


def _socks_proxy(module: Any, proxy: ProxyURL) -> Any:
    """python-socks' proxy object: socks5h/socks4a resolve the name at the proxy (rdns), socks5/socks4 here."""
    from python_socks import ProxyType

    kind = ProxyType.SOCKS5 if proxy.scheme.startswith("socks5") else ProxyType.SOCKS4
    rdns = proxy.scheme in ("socks5h", "socks4a")
    return module.Proxy(kind, proxy.host, proxy.port, proxy.username, proxy.password, rdns=rdns)


def _socks_error(exc: Exception, proxy: ProxyURL) -> Exception:
    if type(exc).__module__.startswith("python_socks"):
        name = type(exc).__name__
        if name == "ProxyTimeoutError":
            return TimeoutError(f"SOCKS proxy {proxy.host}:{proxy.port} timed out")
        if name == "ProxyConnectionError":
            return ConnectionRefusedError(f"cannot reach SOCKS proxy {proxy.host}:{proxy.port}: {exc}")
        return ProxyError(f"SOCKS proxy {proxy.host}:{proxy.port} refused the connection: {exc}")
    return exc


# --------------------------------------------------------------------------- asyncio


def _mark_retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class _TunnelProtocol(asyncio.Protocol):
    """Collects the proxy's answer to CONNECT; after that, the transport is handed to the WebSocket."""

    def __init__(self, response: ConnectResponse) -> None:
        self.response = response
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # A connect cancelled (or timed out) while the loop was still making the connection never awaits
        # done; the transport it closes then fails done: marked as read, that logs no "Future exception
        # was never retrieved". An await of done still raises it.
        self.done.add_done_callback(_mark_retrieved)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            self.response.leftover += data
            return
        try:
            if self.response.feed(data):
                assert self.transport is not None
                self.transport.pause_reading()
                self.done.set_result(None)
        except Exception as exc:
            self.done.set_exception(exc)

    def eof_received(self) -> bool | None:
        if not self.done.done():
            try:
                self.response.feed(b"")
            except Exception as exc:
                self.done.set_exception(exc)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ProxyError("proxy closed the connection before answering"))


async def open_asyncio_stream(
    protocol: asyncio.BufferedProtocol | asyncio.Protocol,
    uri: WebSocketURI,
    *,
    proxy: ProxyURL | None = None,
    ssl: ssl_module.SSLContext | None = None,
    server_hostname: str | None = None,
    proxy_ssl: ssl_module.SSLContext | None = None,
    sock: socket.socket | None = None,
    unix_path: str | None = None,
    user_agent: str | None = None,
    transport: TransportChoice = "loop",
) -> asyncio.BaseTransport:
    """Connect ``protocol`` to ``uri``: directly, over ``sock`` or ``unix_path``, or through ``proxy``;
    TLS (``ssl``) when the URI is ``wss://``; on the loop's transports or aiofastnet's (``transport``, see
    :mod:`wscodec.transports`). Returns the transport ``protocol`` is connected to."""
    streams = opener(transport, asyncio.get_running_loop())
    hostname = server_hostname if server_hostname is not None else uri.host
    tls_name = hostname if ssl is not None else None
    stream: asyncio.BaseTransport
    if sock is not None:
        stream, _ = await streams.create_connection(lambda: protocol, sock=sock, ssl=ssl, server_hostname=tls_name)
        return stream
    if unix_path is not None:
        stream, _ = await streams.create_unix_connection(lambda: protocol, unix_path, ssl=ssl, server_hostname=tls_name)
        return stream
    if proxy is None:
        stream, _ = await streams.create_connection(
            lambda: protocol, uri.host, uri.port, ssl=ssl, server_hostname=tls_name
        )
        return stream
    tunnel_ssl = _proxy_tls(proxy, proxy_ssl)
    if proxy.is_socks:
        module = _socks_module(sync=False)
        try:
            raw = await _socks_proxy(module, proxy).connect(uri.host, uri.port)
        except Exception as exc:
            raise _socks_error(exc, proxy) from None
        stream, _ = await streams.create_connection(lambda: protocol, sock=raw, ssl=ssl, server_hostname=tls_name)
        return stream
    # HTTP CONNECT, TLS to the proxy itself for https:// proxies.
    response = ConnectResponse(proxy)
    tunnel, tunnel_protocol = await streams.create_connection(
        lambda: _TunnelProtocol(response),
        proxy.host,
        proxy.port,
        ssl=tunnel_ssl,
        server_hostname=proxy.host if tunnel_ssl is not None else None,
    )
    try:
        tunnel.write(connect_request(uri, proxy, user_agent))
        await tunnel_protocol.done
        stream = tunnel
        if ssl is not None and response.leftover:
            # Bytes behind the proxy's 200 came from the proxy, outside the TLS we are about to start: taken
            # as the server's, they would let a proxy forge the server's answer to a wss:// handshake.
            raise ProxyError("the proxy sent data before the TLS handshake")
        if ssl is not None:
            tls = await streams.start_tls(tunnel, tunnel_protocol, ssl, server_hostname=tls_name)
            if tls is None:
                raise ProxyError("TLS through the proxy tunnel could not start")
            stream = tls
    except BaseException:
        tunnel.abort()
        raise
    stream.set_protocol(protocol)
    protocol.connection_made(stream)
    if response.leftover:
        _feed(protocol, response.leftover)
    stream.resume_reading()
    return stream


def _feed(protocol: asyncio.BufferedProtocol | asyncio.Protocol, data: bytes) -> None:
    if isinstance(protocol, asyncio.BufferedProtocol):
        view = memoryview(data)
        while view:
            buf = memoryview(protocol.get_buffer(len(view)))
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            protocol.buffer_updated(n)
            view = view[n:]
    else:
        protocol.data_received(data)


# --------------------------------------------------------------------------- blocking sockets


def open_socket(
    uri: WebSocketURI,
    *,
    proxy: ProxyURL | None = None,
    ssl: ssl_module.SSLContext | None = None,
    server_hostname: str | None = None,
    sock: socket.socket | None = None,
    unix_path: str | None = None,
    timeout: float | None = None,
    user_agent: str | None = None,
    proxy_ssl: ssl_module.SSLContext | None = None,
) -> tuple[socket.socket, bytes]:
    """The blocking twin of :func:`open_asyncio_stream` for :mod:`wscodec.sync`: a connected socket (TLS
    wrapped for ``wss://``) and the bytes already read past a proxy's answer.

    ``timeout`` bounds the whole: connecting, the proxy's answer and the TLS handshakes share one deadline
    (a :class:`TimeoutError` when it passes), so a proxy or server that sends a byte now and then cannot
    stretch it."""
    deadline = None if timeout is None else time.monotonic() + timeout
    leftover = b""
    if sock is None:
        if unix_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(unix_path)
            except BaseException:
                sock.close()
                raise
        elif proxy is None:
            sock = connect_tcp(uri.host, uri.port, deadline)
        else:
            context = _proxy_tls(proxy, proxy_ssl)  # first: it refuses a proxy_ssl for a proxy without TLS
            if proxy.is_socks:
                sock = _socks_connect(proxy, uri, deadline)
            else:
                if context is not None and ssl is not None:
                    raise InvalidProxy("wss:// through an https:// proxy (TLS inside TLS) needs wscodec.asyncio")
                sock = connect_tcp(proxy.host, proxy.port, deadline)
                try:
                    if context is not None:
                        sock.settimeout(time_left(deadline))
                        sock = context.wrap_socket(sock, server_hostname=proxy.host)
                    sock.settimeout(time_left(deadline))
                    sock.sendall(connect_request(uri, proxy, user_agent))
                    response = ConnectResponse(proxy)
                    while True:
                        sock.settimeout(time_left(deadline))
                        if response.feed(sock.recv(4096)):
                            break
                    leftover = response.leftover
                except BaseException:
                    sock.close()
                    raise
    assert sock is not None
    if ssl is not None:
        if leftover:
            sock.close()
            raise ProxyError("the proxy sent data before the TLS handshake")
        hostname = server_hostname if server_hostname is not None else uri.host
        try:
            sock.settimeout(time_left(deadline))
            sock = ssl.wrap_socket(sock, server_hostname=hostname)
        except BaseException:
            sock.close()
            raise
    sock.settimeout(timeout)
    return sock, leftover


def time_left(deadline: float | None) -> float | None:
    """Seconds until ``deadline`` (``time.monotonic()``; None: no deadline) for the next blocking step of
    opening a connection; TimeoutError once it has passed."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out opening the connection")
    return left


def connect_tcp(host: str, port: int, deadline: float | None) -> socket.socket:
    """A TCP connection to ``host``, every step within ``deadline``: the name lookup (which has no timeout
    of its own: a resolver that does not answer takes its retries, about 10 s), then each address in turn
    with the time left. ``socket.create_connection`` would give each address the whole timeout, so a name
    with three unreachable addresses took three times ``open_timeout``."""
    infos = _resolve(host, port, deadline)
    if not infos:
        raise OSError(f"getaddrinfo returned no address for {host}")
    error: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(time_left(deadline))
            sock.connect(address)
            return sock
        except TimeoutError:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            error = exc  # the next address, as create_connection does; the last error if none answers
        except BaseException:
            sock.close()
            raise
    assert error is not None
    raise error


def _resolve(host: str, port: int, deadline: float | None) -> list[Any]:
    """``getaddrinfo`` for a stream socket, bounded by ``deadline`` (in a helper thread: the call cannot be
    interrupted). An IP literal needs no lookup and no thread."""
    if deadline is None or _is_ip_literal(host):
        return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    result = _within(
        lambda: socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM), deadline, f"looking up {host}", "resolve"
    )
    assert isinstance(result, list)
    return result


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _within(call: Callable[[], Any], deadline: float | None, what: str, name: str) -> Any:
    """``call()`` in a helper thread, waited for until ``deadline`` (TimeoutError: "``what`` timed out"),
    for a blocking step that has no timeout of its own, or one per read only. Past the deadline the thread
    is abandoned, and a socket it may still produce is closed."""
    outcome: list[Any] = []
    lock = threading.Lock()
    done = threading.Event()

    def run() -> None:
        try:
            result: Any = call()
        except BaseException as exc:  # handed to the caller's thread
            result = exc
        with lock:
            outcome.append(result)
            if len(outcome) > 1 and isinstance(result, socket.socket):  # the caller gave up: nobody owns it
                result.close()
        done.set()

    threading.Thread(target=run, daemon=True, name=f"wscodec-{name}").start()
    done.wait(None if deadline is None else max(deadline - time.monotonic(), 0.0))
    with lock:
        if not outcome:
            outcome.append(None)  # gives up: a socket produced later is closed by the thread
            raise TimeoutError(f"{what} timed out")
        result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


def _socks_connect(proxy: ProxyURL, uri: WebSocketURI, deadline: float | None) -> socket.socket:
    """python-socks' blocking connect, bounded by ``deadline`` as a whole: python-socks gives its timeout
    to each read, so a proxy answering a byte at a time would stretch it."""
    module = _socks_module(sync=True)
    try:
        result = _within(
            lambda: _socks_proxy(module, proxy).connect(uri.host, uri.port, timeout=time_left(deadline)),
            deadline,
            f"SOCKS proxy {proxy.host}:{proxy.port}",
            "socks-connect",
        )
    except Exception as exc:
        error = _socks_error(exc, proxy)
        if error is exc:
            raise
        raise error from None
    assert isinstance(result, socket.socket)
    return result


# --------------------------------------------------------------------------- redirects and reconnection


def redirect_location(uri: WebSocketURI, error: InvalidStatus) -> str | None:
    """The URL a 301/302/303/307/308 answer sends us to (relative ``Location`` resolved, ``http(s)://``
    mapped to ``ws(s)://``), or None if ``error`` is not a redirect. Raises
    :class:`~wscodec.errors.RedirectError` for a redirect without a usable ``Location``."""
    if error.status_code not in REDIRECT_STATUSES:
        return None
    locations = [value for name, value in error.headers if name.lower() == "location"]
    if len(locations) != 1 or not locations[0].strip():
        raise RedirectError(f"HTTP {error.status_code} redirect without a single Location header")
    try:
        target = urllib.parse.urljoin(uri.http_url, locations[0].strip())
    except ValueError as exc:  # an unclosed IPv6 bracket, say
        raise RedirectError(f"HTTP {error.status_code} redirect to an invalid Location: {exc}") from None
    scheme, _, rest = target.partition(":")
    scheme = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme.lower())
    if scheme not in ("ws", "wss"):
        raise RedirectError(f"redirect to {_without_password(target)!r}: not a ws, wss, http or https URL")
    if uri.secure and scheme == "ws":
        raise RedirectError(f"redirect from {uri.url} to {_without_password(target)!r} would drop TLS")
    return f"{scheme}:{rest}"


#: Request headers that carry credentials: never sent on to another origin by a redirect.
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


class RedirectPolicy:
    """Follows redirects for one ``connect()``: at most ``max_redirects``, never the same URL twice, and
    never the caller's credentials to another origin."""

    def __init__(self, url: str, max_redirects: int) -> None:
        self.max_redirects = max_redirects
        self.seen = [url]

    def next_url(self, uri: WebSocketURI, error: InvalidStatus) -> str | None:
        if self.max_redirects == 0:
            return None  # not following redirects: the 3xx is the answer
        location = redirect_location(uri, error)
        if location is None:
            return None
        if len(self.seen) > self.max_redirects:
            raise RedirectError(f"more than {self.max_redirects} redirects (last to {_without_password(location)})")
        if location in self.seen:
            chain = " -> ".join(_without_password(url) for url in [*self.seen, location])
            raise RedirectError(f"redirect loop: {chain}")
        self.seen.append(location)
        return location

    def follow(
        self, uri: WebSocketURI, location: str, headers: list[tuple[str, str]], *, unix_socket: bool = False
    ) -> tuple[WebSocketURI, list[tuple[str, str]]]:
        """The URI and the caller's headers for the request to ``location``, where ``uri`` redirected.

        To the same origin (scheme, host, port) the URL's credentials carry over; to another one the
        ``Authorization``, ``Cookie`` and ``Proxy-Authorization`` headers are dropped, for this request and
        the ones after it, as browsers and websockets do. Over a Unix socket, whose path the redirect
        cannot change, a cross-origin redirect is refused."""
        new = parse_uri(location)
        if (new.secure, new.host, new.port) == (uri.secure, uri.host, uri.port):
            if new.username is None and uri.username is not None:
                new = WebSocketURI(new.secure, new.host, new.port, new.path, uri.username, uri.password)
            return new, headers
        if unix_socket:
            raise RedirectError(
                f"cannot follow the cross-origin redirect from {uri.url} to {new.url} over a Unix socket"
            )
        return new, [(name, value) for name, value in headers if name.lower() not in CREDENTIAL_HEADERS]


def is_fatal_status(status: int) -> bool:
    """True for an answer that reconnecting will not change: 4xx other than 408 and 429."""
    return 400 <= status < 500 and status not in (408, 429)


@dataclasses.dataclass
class Backoff:
    """Exponential backoff with full jitter: delays start at ``initial_delay`` (times ``factor`` each try,
    at most ``max_delay``), each randomised in [0, delay] so clients that lost the same server do not come
    back together. wscodec's own schedule over websockets' numbers (3.1 s growing by 1.618 up to 90 s):
    websockets waits a random part of 5 s first, then those delays exactly, with no jitter after."""

    initial_delay: float = 3.1
    factor: float = 1.618
    max_delay: float = 90.0
    min_delay: float = 0.0

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        rand = rng or random.Random()
        delay = self.initial_delay
        while True:
            yield self.min_delay + rand.uniform(0, min(delay, self.max_delay))
            delay = min(delay * self.factor, self.max_delay)


def header_list(headers: Any) -> list[tuple[str, str]]:
    """Headers given as a mapping or as pairs, as a list of pairs."""
    if headers is None:
        return []
    if hasattr(headers, "items"):
        return [(str(k), str(v)) for k, v in headers.items()]
    return [(str(k), str(v)) for k, v in headers]


def client_headers(
    uri: WebSocketURI, additional_headers: Sequence[tuple[str, str]], user_agent: str | None
) -> list[tuple[str, str]]:
    """The extra request headers: ``Authorization`` from the URL's credentials, ``User-Agent``, then the
    caller's (a caller's ``Authorization`` or ``User-Agent`` wins)."""
    names = {name.lower() for name, _ in additional_headers}
    headers: list[tuple[str, str]] = []
    if uri.username is not None and "authorization" not in names:
        headers.append(("Authorization", basic_auth_header(uri.username, uri.password)))
    if user_agent is not None and "user-agent" not in names:
        headers.append(("User-Agent", user_agent))
    headers.extend(additional_headers)
    return headers
