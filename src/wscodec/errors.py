"""One exception hierarchy, rooted in :class:`WebSocketError`.

A protocol violation is a :class:`ProtocolError` that carries the close code the connection must send, so
the layer that catches it never has to guess which code a rule maps to.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConnectionClosed",
    "InvalidHandshake",
    "InvalidStatus",
    "PayloadTooBig",
    "ProtocolError",
    "WebSocketError",
]


class WebSocketError(Exception):
    """Base class of every error wscodec raises on purpose."""


class ProtocolError(WebSocketError):
    """The peer broke RFC 6455 / RFC 7692; ``close_code`` is the code to fail the connection with.

    ``frames`` holds the frames that were complete and valid before the violation in the same input, so a
    caller can still deliver what the peer sent correctly.
    """

    close_code: int
    frames: list[Any]

    def __init__(self, message: str, close_code: int = 1002) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.frames = []

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and isinstance(other, ProtocolError)
            and other.args == self.args
            and other.close_code == self.close_code
        )

    def __hash__(self) -> int:
        return hash((type(self), self.args, self.close_code))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.close_code))


class PayloadTooBig(ProtocolError):
    """A frame or message is larger than the configured limit (close code 1009)."""

    def __init__(self, message: str, close_code: int = 1009) -> None:
        super().__init__(message, close_code)


class InvalidHandshake(WebSocketError):
    """The opening handshake failed; the message names the header or rule that was wrong."""


class InvalidStatus(InvalidHandshake):
    """The server answered the upgrade request with something other than 101."""

    def __init__(self, status_code: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> None:
        super().__init__(f"server rejected WebSocket connection: HTTP {status_code} {reason}".rstrip())
        self.status_code = status_code
        self.reason = reason
        self.headers = headers
        self.body = body


class ConnectionClosed(WebSocketError):
    """Raised when sending on, or receiving from, a connection that is closed."""

    def __init__(self, code: int, reason: str = "", *, was_clean: bool = True) -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason
        self.was_clean = was_clean
