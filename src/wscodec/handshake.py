"""The opening handshake (RFC 6455 section 4), client and server side, sans-I/O.

:class:`ClientHandshake` builds the upgrade request and checks the server's response;
:class:`ServerHandshake` checks the client's request and builds the 101 (or any rejection). Both read
HTTP/1.1 heads with :class:`HttpParser`, incrementally and within size limits. No sockets, no clocks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import http
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

from . import _options as checks
from .errors import (
    InvalidHandshake,
    InvalidHeader,
    InvalidHeaderValue,
    InvalidMessage,
    InvalidStatus,
    InvalidUpgrade,
    NegotiationError,
    SecurityError,
)
from .events import Headers, Request, Response
from .extensions import (
    ClientExtensionFactory,
    Extension,
    ExtensionParams,
    ServerExtensionFactory,
    _check_applicable,
    build_extension_header,
    parse_extension_header,
)

__all__ = [
    "GUID",
    "ClientHandshake",
    "HandshakeRejected",
    "HttpParser",
    "ServerHandshake",
    "check_request_line",
    "compute_accept",
    "generate_key",
    "has_token",
    "header_values",
    "parse_request_line",
    "parse_subprotocols",
    "split_tokens",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
"""The magic string of RFC 6455 section 1.3, appended to the key before hashing."""

MAX_BODY_SIZE = 65536
"""How much of a non-101 response body the client keeps for :class:`~wscodec.errors.InvalidStatus`."""

_DEFAULT: Any = object()


class HandshakeRejected(InvalidHandshake):
    """The request (or a head) is unacceptable: ``status`` and ``headers`` are for the HTTP error response."""

    def __init__(self, message: str, status: int = 400, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.headers = Headers(headers)


def generate_key() -> str:
    """A fresh ``Sec-WebSocket-Key``: base64 of 16 random bytes."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def compute_accept(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` that answers ``key``: base64(SHA-1(key + GUID))."""
    digest = hashlib.sha1((key + GUID).encode("ascii"), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode("ascii")


# --------------------------------------------------------------------------- header helpers


def header_values(headers: Iterable[tuple[str, str]], name: str) -> list[str]:
    """Every value of header ``name`` (case-insensitive), in order."""
    lname = name.lower()
    return [value for key, value in headers if key.lower() == lname]


def split_tokens(values: Iterable[str]) -> list[str]:
    """The elements of comma-separated lists, whitespace-trimmed, empty elements dropped."""
    return [item for value in values for item in (part.strip(" \t") for part in value.split(",")) if item]


def has_token(headers: Iterable[tuple[str, str]], name: str, token: str) -> bool:
    """True if ``token`` (case-insensitive) is in the comma list(s) of header ``name``."""
    ltoken = token.lower()
    return any(item.lower() == ltoken for item in split_tokens(header_values(headers, name)))


def parse_subprotocols(headers: Iterable[tuple[str, str]]) -> list[str]:
    """The subprotocols listed in ``Sec-WebSocket-Protocol``, in order."""
    return split_tokens(header_values(headers, "Sec-WebSocket-Protocol"))


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9112 section 3.2 / RFC 3986 section 3.2: uri-host [ ":" port ]; uri-host an IP literal in brackets, or a
# reg-name or IPv4 address (unreserved, pct-encoded, sub-delims).
_HOST = re.compile(r"(?:\[[0-9A-Za-z:.%~_\-]+\]|[0-9A-Za-z\-._~!$&'()*+,;=%]+)(?::[0-9]*)?")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")  # RFC 7230 field-content (obs-text allowed)
_BARE_LF = re.compile(rb"(?<!\r)\n")
_VERSION = re.compile(r"HTTP/[0-9]\.[0-9]")
_TARGET = re.compile(r"[\x21-\x7e]+")
_CONTENT_LENGTH = re.compile(r"[0-9]{1,15}")
_STATUS_CODE = re.compile(r"[1-9][0-9]{2}")  # ASCII digits only: str.isdigit() also takes "²" or "٣"


def check_header(name: str, value: str) -> None:
    """Refuse header fields we would send that are not valid HTTP (and could inject lines)."""
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"invalid header name {name!r}")
    if not _FIELD_VALUE.fullmatch(value) or value != value.strip(" \t"):
        raise ValueError(f"invalid value for header {name}: {value!r}")


#: The statuses whose answer has no content (RFC 9110 sections 15.3.5 and 15.4.5).
_NO_CONTENT = frozenset((204, 304))


def http_answer(
    status: int, reason: str, headers: Iterable[tuple[str, str]], body: bytes
) -> tuple[list[tuple[str, str]], bytes, bytes]:
    """A plain HTTP/1.1 answer (not a 101): its header fields, the body it carries, and its bytes on the wire.

    The one place the server's framing rules live, for the handshake's own refusals and for what a
    server hook returns: Content-Length is the body's length, except that a 204 has none (RFC 9110
    section 8.6) and an empty body keeps a Content-Length the caller gives (the answer to HEAD carries
    the length GET would have); ``Connection: close`` unless the caller names a Connection, with the
    ``upgrade`` option too when the answer carries ``Upgrade`` (RFC 9110 section 7.8: its sender MUST).
    A 204 or 304 has no content (RFC 9110 sections 15.3.5 and 15.4.5): a body given is not sent, since the
    client would read it as the start of another answer. A 1xx is no answer (only ever an interim one):
    ValueError.
    """
    if status < 200:
        raise ValueError(f"HTTP status {status} is informational, not a final answer")
    if status in _NO_CONTENT:
        body = b""
    given = [value for name, value in headers if name.lower() == "content-length"]
    fields = [(name, value) for name, value in headers if name.lower() != "content-length"]
    if status != 204:
        length = given[-1].strip() if given and not body and given[-1].strip().isdigit() else str(len(body))
        fields.append(("Content-Length", length))
    if not header_values(fields, "Connection"):
        fields.append(("Connection", "Upgrade, close" if header_values(fields, "Upgrade") else "close"))
    body = bytes(body)
    return fields, body, _serialize(f"HTTP/1.1 {status} {reason}", fields) + body


def _serialize(start_line: str, headers: Iterable[tuple[str, str]]) -> bytes:
    lines = [start_line]
    for name, value in headers:
        check_header(name, value)
        lines.append(f"{name}: {value}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


# --------------------------------------------------------------------------- HTTP/1.1 head parser


class HttpParser:
    """Incremental reader of an HTTP/1.1 request or response head (start line and header fields).

    :meth:`feed` returns True once the empty line ending the head has arrived. Strict where it matters:
    lines end with CRLF, no obs-fold, header names are tokens without whitespace before the colon,
    values carry no control characters; whitespace around values is trimmed. A head over
    ``max_header_size`` bytes or with more than ``max_headers`` fields raises :class:`HandshakeRejected`
    with status 431; a malformed one, status 400.
    """

    def __init__(self, *, max_header_size: int = 8192, max_headers: int = 100) -> None:
        self.max_header_size = max_header_size
        self.max_headers = max_headers
        self.complete = False
        self.start_line = ""
        self.headers = Headers()
        #: Bytes received after the head (frames, or a response body).
        self.leftover = b""
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer already searched for the end of the head

    def feed(self, data: bytes) -> bool:
        """Add received bytes; True once the head is complete (further bytes go to ``leftover``)."""
        if self.complete:
            self.leftover += data
            return True
        buffer = self._buffer
        buffer += data
        start = max(self._scanned - 3, 0)
        end = buffer.find(b"\r\n\r\n", start)
        head_end = len(buffer) if end < 0 else end + 4
        if _BARE_LF.search(buffer, max(start - 1, 0), head_end):
            raise HandshakeRejected("HTTP line not ended by CRLF", 400)
        if head_end > self.max_header_size:
            raise HandshakeRejected(f"HTTP head larger than {self.max_header_size} bytes", 431)
        if end < 0:
            self._scanned = len(buffer)
            return False
        self.leftover = bytes(buffer[head_end:])
        self._parse(bytes(buffer[:end]))
        self._buffer = bytearray()
        self.complete = True
        return True

    def _parse(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        if any("\r" in line for line in lines):
            raise HandshakeRejected("bare CR in HTTP head", 400)
        self.start_line = lines[0]
        if not self.start_line:
            raise HandshakeRejected("empty HTTP start line", 400)
        if len(lines) - 1 > self.max_headers:
            raise HandshakeRejected(f"more than {self.max_headers} header fields", 431)
        headers = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t"):
                raise HandshakeRejected("obsolete line folding in HTTP header", 400)
            name, colon, value = line.partition(":")
            if not colon or not _TOKEN.fullmatch(name):
                raise HandshakeRejected(f"invalid HTTP header line {line[:64]!r}", 400)
            value = value.strip(" \t")
            if not _FIELD_VALUE.fullmatch(value):
                raise HandshakeRejected(f"invalid character in HTTP header {name}", 400)
            headers.append((name, value))
        self.headers = Headers(headers)


def _single(headers: Headers, name: str) -> str | None:
    """The only value of ``name``; None if absent; :class:`HandshakeRejected` (400) if repeated."""
    values = header_values(headers, name)
    if len(values) > 1:
        raise HandshakeRejected(f"more than one {name} header", 400)
    return values[0] if values else None


def _reported(values: list[str]) -> str | None:
    """A header's values as websockets' InvalidHeader reports them: joined, or None when it is missing."""
    return ", ".join(values) if values else None


# --------------------------------------------------------------------------- client side


class ClientHandshake:
    """The client's half: :meth:`request_bytes` to send, :meth:`receive_data` with the server's bytes.

    ``extensions`` are factories (e.g. :class:`~wscodec.extensions.ClientPerMessageDeflate`), offered in
    order. After a valid 101, ``response``, ``subprotocol``, ``extensions`` (negotiated extension objects)
    and ``leftover`` (bytes the server sent after its head: frames) are set.
    """

    def __init__(
        self,
        host: str,
        path: str = "/",
        *,
        origin: str | None = None,
        subprotocols: Sequence[str] = (),
        extensions: Sequence[ClientExtensionFactory] = (),
        extra_headers: Sequence[tuple[str, str]] = (),
        max_header_size: int = 8192,
        max_headers: int = 100,
    ) -> None:
        if not host or not _FIELD_VALUE.fullmatch(host) or " " in host:
            raise ValueError(f"invalid host {host!r}")
        if not _TARGET.fullmatch(path):
            raise ValueError(f"invalid request path {path!r}")
        self.subprotocols = list(checks.subprotocols(subprotocols))
        for subprotocol in self.subprotocols:
            if not _TOKEN.fullmatch(subprotocol):
                raise ValueError(f"invalid subprotocol {subprotocol!r}")
        self.key = generate_key()
        self.factories = list(extensions)
        headers = [
            ("Host", host),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", self.key),
            ("Sec-WebSocket-Version", "13"),
        ]
        if origin is not None:
            headers.append(("Origin", origin))
        if self.subprotocols:
            headers.append(("Sec-WebSocket-Protocol", ", ".join(self.subprotocols)))
        if self.factories:
            headers.append(("Sec-WebSocket-Extensions", build_extension_header([f.offer() for f in self.factories])))
        headers.extend(extra_headers)
        for name, value in headers:
            check_header(name, value)
        self.request = Request("GET", path, tuple(headers), "HTTP/1.1")
        self.response: Response | None = None
        self.subprotocol: str | None = None
        self.extensions: list[Extension] = []
        self.leftover = b""
        self._parser = HttpParser(max_header_size=max_header_size, max_headers=max_headers)
        self._status: tuple[int, str] | None = None  # a non-101 status whose body is being read
        self._body = bytearray()
        self._body_size: int | None = None  # Content-Length; None: until EOF

    def request_bytes(self) -> bytes:
        """The upgrade request, ready to write."""
        return _serialize(f"GET {self.request.path} HTTP/1.1", self.request.headers)

    def receive_data(self, data: bytes) -> Response | None:
        """Feed the server's bytes (``b""`` for EOF); the validated 101 response once it is complete.

        Returns None while more is needed. Raises :class:`~wscodec.errors.InvalidStatus` for any other
        status (with up to 64 KiB of its body), :class:`~wscodec.errors.InvalidMessage` for a head that is
        not HTTP (from a :class:`~wscodec.errors.SecurityError` when it passes a limit), and another
        :class:`InvalidHandshake` (:class:`~wscodec.errors.InvalidHeader`,
        :class:`~wscodec.errors.NegotiationError`...) for an invalid 101.
        """
        if self.response is not None:
            raise RuntimeError("the handshake is already complete")
        if self._status is not None:
            return self._receive_body(data)
        parser = self._parser
        try:
            complete = bool(data) and parser.feed(data)
        except HandshakeRejected as exc:
            cause = SecurityError(str(exc)) if exc.status == 431 else exc
            raise InvalidMessage(str(exc)) from cause
        if not complete:
            return None  # EOF before the head is complete: the caller knows the handshake failed
        version, status, reason = self._parse_status_line(parser.start_line)
        if status != 101:
            self._status = (status, reason)
            return self._start_body(parser.leftover)
        if version != "HTTP/1.1":
            raise InvalidMessage(f"unsupported HTTP version {version} in the response")
        headers = parser.headers
        self._validate(headers)
        self.response = Response(status, reason, headers)
        self.leftover = parser.leftover
        return self.response

    @staticmethod
    def _parse_status_line(line: str) -> tuple[str, int, str]:
        version, _, rest = line.partition(" ")
        code, _, reason = rest.partition(" ")
        if not _VERSION.fullmatch(version) or not _STATUS_CODE.fullmatch(code):
            raise InvalidMessage(f"invalid HTTP status line {line[:64]!r}")
        if not _FIELD_VALUE.fullmatch(reason):  # RFC 7230 reason-phrase: HTAB, SP, VCHAR, obs-text
            raise InvalidMessage(f"invalid character in HTTP reason phrase {reason[:64]!r}")
        return version, int(code), reason

    # ------------------------------------------------------------------ non-101: read the body

    def _start_body(self, data: bytes) -> Response | None:
        status, _reason = self._status or (0, "")
        headers = self._parser.headers
        if status < 200 or status in (204, 304):
            self._body_size = 0
        elif header_values(headers, "Transfer-Encoding"):
            self._body_size = 0  # chunked bodies are not decoded: report the status without one
        else:
            lengths = set(split_tokens(header_values(headers, "Content-Length")))
            if len(lengths) > 1 or not all(_CONTENT_LENGTH.fullmatch(v) for v in lengths):
                self._body_size = 0
            elif lengths:
                self._body_size = int(lengths.pop())
        return self._receive_body(data, initial=True)

    def _receive_body(self, data: bytes, initial: bool = False) -> Response | None:
        body = self._body
        body += data
        size = self._body_size
        limit = MAX_BODY_SIZE if size is None else min(size, MAX_BODY_SIZE)
        eof = not data and not initial
        if len(body) >= limit or eof:
            status, reason = self._status or (0, "")
            raise InvalidStatus(status, reason, list(self._parser.headers), bytes(body[:limit]))
        return None

    # ------------------------------------------------------------------ 101: check it

    def _validate(self, headers: Headers) -> None:
        # RFC 6455 section 4.1: an Upgrade with any value but "websocket" MUST fail the connection.
        upgrade = header_values(headers, "Upgrade")
        if [item.lower() for item in split_tokens(upgrade)] != ["websocket"]:
            raise InvalidUpgrade(
                "Upgrade",
                _reported(upgrade),
                message=f"expected 'Upgrade: websocket' in the response (got {upgrade})",
            )
        if not has_token(headers, "Connection", "upgrade"):
            connection = header_values(headers, "Connection")
            raise InvalidUpgrade(
                "Connection",
                _reported(connection),
                message=f"missing 'Connection: Upgrade' in the response (got {connection})",
            )
        accepts = header_values(headers, "Sec-WebSocket-Accept")
        if len(accepts) != 1:
            raise InvalidHeader(
                "Sec-WebSocket-Accept",
                _reported(accepts),
                message=f"expected one Sec-WebSocket-Accept header, got {len(accepts)}",
            )
        if accepts[0] != compute_accept(self.key):
            raise InvalidHeaderValue(
                "Sec-WebSocket-Accept", accepts[0], message=f"wrong Sec-WebSocket-Accept {accepts[0]!r} for our key"
            )

        protocols = parse_subprotocols(headers)
        if protocols:
            if not self.subprotocols:
                raise NegotiationError("server chose a subprotocol but none was offered")
            if len(protocols) != 1:
                raise InvalidHeader(
                    "Sec-WebSocket-Protocol",
                    ", ".join(protocols),
                    message=f"server chose more than one subprotocol: {protocols}",
                )
            if protocols[0] not in self.subprotocols:
                raise NegotiationError(f"server chose subprotocol {protocols[0]!r}, which was not offered")
            self.subprotocol = protocols[0]
        elif header_values(headers, "Sec-WebSocket-Protocol"):
            raise InvalidHeader(
                "Sec-WebSocket-Protocol", "", message="empty Sec-WebSocket-Protocol header in the response"
            )

        accepted = parse_extension_header(header_values(headers, "Sec-WebSocket-Extensions"))
        if accepted and not self.factories:
            raise NegotiationError("server accepted extensions but none were offered")
        offers: dict[str, list[ClientExtensionFactory]] = {}
        for factory in self.factories:
            offers.setdefault(factory.name, []).append(factory)
        used: set[str] = set()
        for name, params in accepted:
            if name not in offers:
                raise NegotiationError(f"server accepted extension {name!r}, which was not offered")
            if name in used:
                raise NegotiationError(f"server accepted extension {name!r} twice")
            used.add(name)
            extension = _accept_one_offer(offers[name], params)
            _check_applicable(extension)
            if self.extensions:  # (every extension wscodec applies uses RSV1: see Extension)
                raise NegotiationError("server accepted two extensions that both use RSV1")
            self.extensions.append(extension)


def _accept_one_offer(factories: list[ClientExtensionFactory], params: ExtensionParams) -> Extension:
    """The extension negotiated by a response to several offers of one extension (RFC 7692 section 5: a
    client may offer it several times, in order of preference, and the server answers one of them without
    saying which): the first offer that accepts the response. If none does, the most preferred one's refusal
    is the error, the others' being variations of it."""
    refusal: InvalidHandshake | None = None
    for factory in factories:
        try:
            return factory.accept(params)
        except InvalidHandshake as exc:
            if refusal is None:
                refusal = exc
    assert refusal is not None  # (a name is offered by one factory at least)
    raise refusal


# --------------------------------------------------------------------------- server side


def parse_request_line(start_line: str) -> tuple[str, str, str]:
    """Method, target and version of a well-formed request line, or :class:`HandshakeRejected` (400): a
    method token, a target of visible ASCII (RFC 9112 section 3.2: no control characters, which written
    to a log would drive the reader's terminal), an ``HTTP/x.y`` version."""
    parts = start_line.split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not _TARGET.fullmatch(parts[1]):
        raise HandshakeRejected(f"invalid HTTP request line {start_line[:64]!r}", 400)
    if not _VERSION.fullmatch(parts[2]):
        raise HandshakeRejected(f"invalid HTTP version {parts[2][:16]!r}", 400)
    return parts[0], parts[1], parts[2]


def check_request_line(start_line: str) -> tuple[str, str, str]:
    """:func:`parse_request_line`, and an upgrade's own demands: 505 for another HTTP version than 1.1,
    405 for another method than GET."""
    method, target, version = parse_request_line(start_line)
    if version != "HTTP/1.1":
        raise HandshakeRejected(f"unsupported HTTP version {version}: WebSocket needs HTTP/1.1", 505)
    if method != "GET":
        raise HandshakeRejected(f"method {method} not allowed: the upgrade request is a GET", 405, [("Allow", "GET")])
    return method, target, version


class ServerHandshake:
    """The server's half: :meth:`receive_data` with the client's bytes, then :meth:`accept` or :meth:`reject`.

    ``subprotocols`` is the server's preference list; ``extensions`` are factories (e.g.
    :class:`~wscodec.extensions.ServerPerMessageDeflate`) in the server's preference order; ``origins``
    (when not None) lists the allowed ``Origin`` values, None in it allowing requests without one.
    """

    def __init__(
        self,
        *,
        subprotocols: Sequence[str] = (),
        extensions: Sequence[ServerExtensionFactory] = (),
        origins: Sequence[str | None] | None = None,
        max_header_size: int = 8192,
        max_headers: int = 100,
    ) -> None:
        self.subprotocols = list(checks.subprotocols(subprotocols))
        self.factories = list(extensions)
        self.origins = None if origins is None else list(origins)
        self.request: Request | None = None
        self.response: Response | None = None
        self.offered_subprotocols: list[str] = []
        self.offered_extensions: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.subprotocol: str | None = None
        self.extensions: list[Extension] = []
        #: Bytes the client sent after its head (frames, once accepted).
        self.leftover = b""
        self._parser = HttpParser(max_header_size=max_header_size, max_headers=max_headers)

    def receive_data(self, data: bytes) -> Request | None:
        """Feed the client's bytes; the validated :class:`~wscodec.events.Request` once the head is complete.

        None while more is needed (and on EOF, ``b""``). An unacceptable request raises
        :class:`HandshakeRejected`, whose ``status`` and ``headers`` are meant for :meth:`reject`.
        """
        if self.request is not None:
            self.leftover += data
            return None
        parser = self._parser
        if not data or not parser.feed(data):
            return None
        request = self._validate(parser.start_line, parser.headers)
        self.leftover = parser.leftover
        self.request = request
        return request

    def _validate(self, start_line: str, headers: Headers) -> Request:
        method, target, version = check_request_line(start_line)
        host = _single(headers, "Host")
        if not host:
            raise HandshakeRejected("missing Host header", 400)
        if not _HOST.fullmatch(host):  # RFC 9112 section 3.2: 400 for an invalid Host value
            raise HandshakeRejected(f"invalid Host header {host[:64]!r}", 400)
        # The upgrade request has no body (RFC 6455 section 4.1): what follows its head is frames. A body
        # declared anyway would be read as frames here and as a body by a proxy on the way, which then
        # disagree on where the frames start; refused as websockets refuses it (Content-Length: 0 is no body).
        if header_values(headers, "Transfer-Encoding"):
            raise HandshakeRejected("Transfer-Encoding on the upgrade request: it has no body", 400)
        lengths = [item.strip(" \t") for value in header_values(headers, "Content-Length") for item in value.split(",")]
        if any(length != "0" for length in lengths):  # (an empty one included: invalid, RFC 9112 section 6.3)
            raise HandshakeRejected("Content-Length on the upgrade request: it has no body", 400)
        if not has_token(headers, "Upgrade", "websocket"):
            raise HandshakeRejected("missing 'Upgrade: websocket' header", 426, [("Upgrade", "websocket")])
        if not has_token(headers, "Connection", "upgrade"):
            raise HandshakeRejected("missing 'Connection: Upgrade' header", 400)

        # The version first: a client speaking another version gets told which one we speak (section 4.4).
        version_value = _single(headers, "Sec-WebSocket-Version")
        if version_value != "13":
            # (Upgrade too: RFC 9110 section 15.5.22 wants it on every 426.)
            raise HandshakeRejected(
                f"unsupported Sec-WebSocket-Version {version_value!r}",
                426,
                [("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")],
            )
        key = _single(headers, "Sec-WebSocket-Key")
        if key is None:
            raise HandshakeRejected("missing Sec-WebSocket-Key header", 400)
        try:
            raw = base64.b64decode(key.encode("latin-1"), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 16 or len(key) != 24:
            raise HandshakeRejected(f"invalid Sec-WebSocket-Key {key[:64]!r}", 400)

        if self.origins is not None:
            origin = _single(headers, "Origin")
            if origin not in self.origins:
                raise HandshakeRejected(f"origin {origin!r} not allowed", 403)

        protocol_fields = header_values(headers, "Sec-WebSocket-Protocol")
        self.offered_subprotocols = split_tokens(protocol_fields)
        # RFC 6455 section 4.3: 1#token. What is not (a space, a ';') cannot be echoed in a valid 101 either.
        if protocol_fields and not (
            self.offered_subprotocols and all(_TOKEN.fullmatch(item) for item in self.offered_subprotocols)
        ):
            offer = ", ".join(protocol_fields)
            raise HandshakeRejected(f"invalid Sec-WebSocket-Protocol {offer[:64]!r}", 400)
        try:
            self.offered_extensions = parse_extension_header(header_values(headers, "Sec-WebSocket-Extensions"))
        except InvalidHandshake as exc:
            raise HandshakeRejected(str(exc), 400) from None
        return Request(method, target, headers, version)

    def select_subprotocol(self, offered: Sequence[str]) -> str | None:
        """The subprotocol to use: the first of the server's list that the client offered; None when the
        server lists none.

        A server that lists subprotocols and a client that offers none of them cannot agree on what the
        messages mean: :class:`~wscodec.errors.NegotiationError`, which the servers answer with 400, as
        websockets' ``ServerProtocol.select_subprotocol`` does. A ``select_subprotocol`` hook (or
        ``accept(subprotocol=...)``, as the ASGI app's choice is given) replaces this rule.
        """
        if not self.subprotocols:
            return None
        if not offered:
            raise NegotiationError("missing subprotocol")
        for subprotocol in self.subprotocols:
            if subprotocol in offered:
                return subprotocol
        raise NegotiationError("invalid subprotocol; expected one of " + ", ".join(self.subprotocols))

    def _negotiate_extensions(self) -> list[tuple[str, list[tuple[str, str | None]]]]:
        """Run each factory on the client's offers of its extension, in the client's order of names, up to
        the first one negotiated: every extension wscodec applies uses RSV1, so there is room for one."""
        by_name: dict[str, list[list[tuple[str, str | None]]]] = {}
        for name, params in self.offered_extensions:
            by_name.setdefault(name, []).append(params)
        self.extensions = []
        for name, offers in by_name.items():
            for factory in self.factories:
                if factory.name != name:
                    continue
                result = factory.negotiate(offers)
                if result is None:
                    continue
                params, extension = result
                _check_applicable(extension)
                self.extensions.append(extension)
                return [(name, params)]
        return []

    def accept(self, *, subprotocol: str | None = _DEFAULT, extra_headers: Sequence[tuple[str, str]] = ()) -> bytes:
        """The 101 response to send; sets ``subprotocol``, ``extensions`` and ``response``.

        ``subprotocol`` defaults to :meth:`select_subprotocol` (whose NegotiationError then leaves the
        handshake unanswered, for :meth:`reject` with 400); an explicit one must have been offered.
        """
        if self.request is None:
            raise RuntimeError("accept() before a request was received")
        if self.response is not None:
            raise RuntimeError("the handshake was already answered")
        if subprotocol is _DEFAULT:
            subprotocol = self.select_subprotocol(self.offered_subprotocols)
        elif subprotocol is not None and subprotocol not in self.offered_subprotocols:
            raise ValueError(f"subprotocol {subprotocol!r} was not offered by the client")
        key = self.request.header("Sec-WebSocket-Key") or ""
        headers = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", compute_accept(key)),
        ]
        if subprotocol is not None:
            headers.append(("Sec-WebSocket-Protocol", subprotocol))
        negotiated = self._negotiate_extensions()
        if negotiated:
            headers.append(("Sec-WebSocket-Extensions", build_extension_header(negotiated)))
        headers.extend(extra_headers)
        data = _serialize("HTTP/1.1 101 Switching Protocols", headers)
        self.subprotocol = subprotocol
        self.response = Response(101, "Switching Protocols", tuple(headers))
        return data

    def reject(self, status: int, headers: Sequence[tuple[str, str]] = (), body: bytes = b"") -> bytes:
        """Any final HTTP/1.1 response (200 to 599) instead of the upgrade, framed by ``http_answer``:
        Content-Length (none on a 204; an empty body keeps the caller's, as the answer to HEAD does) and
        ``Connection: close``; no content on a 204 or 304."""
        if not 200 <= status <= 599:
            raise ValueError(f"invalid HTTP status {status}")
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        fields, sent, data = http_answer(status, reason, headers, body)
        self.response = Response(status, reason, tuple(fields), sent)
        return data
