"""What :class:`~wscodec.connection.Connection` hands back from ``receive_data``: plain frozen records.

Events carry data and nothing else; behaviour stays in the connection (a :class:`Ping` reports the ping,
the connection has already queued the pong).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import WebSocketError

__all__ = [
    "BinaryFragment",
    "BinaryMessage",
    "CloseReceived",
    "Closed",
    "Event",
    "Headers",
    "Ping",
    "Pong",
    "ProtocolViolation",
    "Request",
    "Response",
    "TextFragment",
    "TextMessage",
]

Headers = tuple[tuple[str, str], ...]
"""Header fields in the order they came, names as sent; look-ups are case-insensitive (see ``handshake``)."""


@dataclass(frozen=True, slots=True)
class Request:
    """The client's opening handshake request, as the server received it (or the client sent it)."""

    method: str
    path: str
    headers: Headers
    http_version: str = "HTTP/1.1"

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (case-insensitive)."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return default


@dataclass(frozen=True, slots=True)
class Response:
    """The server's answer to the opening handshake; ``status_code`` 101 means the upgrade succeeded."""

    status_code: int
    reason: str
    headers: Headers
    body: bytes = b""

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (case-insensitive)."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return default


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
    """The peer broke the protocol; a Close frame with ``error.close_code`` is already queued."""

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

    ``code``/``reason`` are the peer's (1005 if it gave none, 1006 if the transport ended without a Close);
    ``was_clean`` is True when both Close frames were exchanged.
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
