"""What :class:`~wscodec.connection.Connection` hands back from ``receive_data``: plain frozen records.

Events carry data and nothing else; behaviour stays in the connection (a :class:`Ping` reports the ping,
the connection has already queued the pong).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, SupportsIndex, overload

from .errors import MultipleValuesError, WebSocketError

__all__ = [
    "BinaryFragment",
    "BinaryMessage",
    "CloseReceived",
    "Closed",
    "Event",
    "Headers",
    "HeadersLike",
    "Ping",
    "Pong",
    "ProtocolViolation",
    "Request",
    "Response",
    "TextFragment",
    "TextMessage",
    "decoded",
]


class Headers(tuple[tuple[str, str], ...]):
    """Header fields in the order they came, as ``(name, value)`` pairs with names as sent.

    A tuple, so that events stay immutable records that compare, hash and iterate as pairs; with
    websockets' look-ups by name on top (case-insensitive), so that code moving from websockets keeps
    ``headers["Origin"]``, ``headers.get("Authorization")``, ``headers.get_all("Cookie")``,
    ``"Host" in headers`` and ``headers.raw_items()``. Integer indexes and slices are the tuple's.
    """

    __slots__ = ()

    def __new__(cls, fields: Any = ()) -> Headers:
        if type(fields) is cls:
            return fields  # immutable: the same object, as tuple(t) is t
        if isinstance(fields, Mapping):
            fields = fields.items()
        return super().__new__(cls, fields)

    @overload
    def __getitem__(self, key: SupportsIndex) -> tuple[str, str]: ...
    @overload
    def __getitem__(self, key: slice) -> tuple[tuple[str, str], ...]: ...
    @overload
    def __getitem__(self, key: str) -> str: ...
    def __getitem__(self, key: Any) -> Any:
        """By name: the value of the one field so named; KeyError if none, :class:`MultipleValuesError`
        if several (websockets' rule)."""
        if not isinstance(key, str):
            return tuple.__getitem__(self, key)
        values = self.get_all(key)
        if not values:
            raise KeyError(key)
        if len(values) > 1:
            raise MultipleValuesError(key)
        return values[0]

    def get(self, key: str, default: Any = None) -> Any:
        """``headers[key]``, or ``default`` when there is no such field."""
        try:
            return self[key]
        except KeyError:
            return default

    def get_all(self, key: str) -> list[str]:
        """Every value of the fields named ``key``, in order (case-insensitive)."""
        lkey = key.lower()
        return [value for name, value in self if name.lower() == lkey]

    def __contains__(self, key: object) -> bool:
        """A str asks for a field name (case-insensitive); a pair, for that exact field."""
        if isinstance(key, str):
            lkey = key.lower()
            return any(name.lower() == lkey for name, _ in self)
        return tuple.__contains__(self, key)

    def raw_items(self) -> Iterator[tuple[str, str]]:
        """The fields as sent, in order (websockets' name for iterating the pairs)."""
        return iter(self)


def _first(headers: Headers, name: str, default: str | None) -> str | None:
    lname = name.lower()
    for key, value in headers:
        if key.lower() == lname:
            return value
    return default


HeadersLike = Iterable[tuple[str, str]] | Mapping[str, str]
"""What a Request or Response may be built with: pairs (a :class:`Headers`, a tuple, a list) or a mapping."""


@dataclass(frozen=True, slots=True, init=False)
class Request:
    """The client's opening handshake request, as the server received it (or the client sent it)."""

    method: str
    path: str
    headers: Headers
    http_version: str

    def __init__(self, method: str, path: str, headers: HeadersLike, http_version: str = "HTTP/1.1") -> None:
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "headers", Headers(headers))
        object.__setattr__(self, "http_version", http_version)

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (case-insensitive)."""
        return _first(self.headers, name, default)


@dataclass(frozen=True, slots=True, init=False)
class Response:
    """The server's answer to the opening handshake; ``status_code`` 101 means the upgrade succeeded."""

    status_code: int
    reason: str
    headers: Headers
    body: bytes

    def __init__(self, status_code: int, reason: str, headers: HeadersLike, body: bytes = b"") -> None:
        object.__setattr__(self, "status_code", status_code)
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "headers", Headers(headers))
        object.__setattr__(self, "body", body)

    @property
    def reason_phrase(self) -> str:
        """``reason`` under websockets' name for it."""
        return self.reason

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (case-insensitive)."""
        return _first(self.headers, name, default)


@dataclass(frozen=True, slots=True)
class TextMessage:
    """A complete text message, validated UTF-8, reassembled and decompressed."""

    data: str


@dataclass(frozen=True, slots=True)
class BinaryMessage:
    """A complete binary message, reassembled and decompressed."""

    data: bytes


@dataclass(frozen=True, slots=True)
class TextFragment:
    """Part of a text message (only with ``stream_messages=True``); the text so far is valid UTF-8.

    The frames of the message that one ``receive_data`` call completes come as one fragment; a character
    split across frames is delivered whole in the fragment that completes it.
    """

    data: str
    final: bool


@dataclass(frozen=True, slots=True)
class BinaryFragment:
    """Part of a binary message (only with ``stream_messages=True``): the frames of it that one
    ``receive_data`` call completes, as one piece."""

    data: bytes
    final: bool


@dataclass(frozen=True, slots=True)
class Ping:
    """The peer pinged; the connection has already queued the matching pong."""

    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class Pong:
    """The peer sent a pong (an answer to our ping, or unsolicited)."""

    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class CloseReceived:
    """The peer sent a Close frame; 1005 stands for a Close without a code."""

    code: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """The peer broke the protocol; once the connection is open, a Close frame with ``error.close_code`` is
    already queued. A failed opening handshake (``error`` is an :class:`~wscodec.errors.InvalidHandshake`)
    queues no Close frame, which RFC 6455 has only for an open connection: a server has queued its HTTP
    refusal instead, a client nothing (``code`` then says 1002, the code of a protocol error)."""

    error: WebSocketError = field(compare=False)

    @property
    def code(self) -> int:
        return getattr(self.error, "close_code", 1002)

    @property
    def reason(self) -> str:
        return str(self.error)


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection is CLOSED: the I/O layer sends what is queued and closes the transport.

    ``code``/``reason`` are the peer's after a closing handshake (1005 if it gave none); 1006 if the
    transport ended without a Close, or if we failed the connection (a :class:`ProtocolViolation` came first:
    ``reason`` is then its reason, and the code our Close carried is that event's); ``was_clean`` is True
    when both Close frames were exchanged.
    """

    code: int
    reason: str = ""
    was_clean: bool = True


Event = (
    Request
    | Response
    | TextMessage
    | BinaryMessage
    | TextFragment
    | BinaryFragment
    | Ping
    | Pong
    | CloseReceived
    | ProtocolViolation
    | Closed
)


def decoded(data: str | bytes | bytearray | memoryview, decode: bool) -> str | bytes:
    """A message's data as websockets' ``recv(decode=...)`` returns it: ``decode=True`` makes a binary
    message a str (UnicodeDecodeError if it is not UTF-8), ``decode=False`` a text message its UTF-8 bytes."""
    if isinstance(data, str):
        return data if decode else data.encode("utf-8")
    return bytes(data).decode("utf-8") if decode else bytes(data)
