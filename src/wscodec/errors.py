"""One exception hierarchy, rooted in :class:`WebSocketError`.

A protocol violation is a :class:`ProtocolError` that carries the close code the connection must send, so
the layer that catches it never has to guess which code a rule maps to.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = [
    "Close",
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "DuplicateParameter",
    "InvalidHandshake",
    "InvalidHeader",
    "InvalidHeaderFormat",
    "InvalidHeaderValue",
    "InvalidMessage",
    "InvalidParameterName",
    "InvalidParameterValue",
    "InvalidProxy",
    "InvalidStatus",
    "InvalidURI",
    "InvalidUpgrade",
    "MultipleValuesError",
    "NegotiationError",
    "OpenTimeout",
    "PayloadTooBig",
    "ProtocolError",
    "ProxyError",
    "RedirectError",
    "SecurityError",
    "WebSocketError",
    "WebSocketException",
]


class WebSocketError(Exception):
    """Base class of every error wscodec raises on purpose."""


#: websockets' name for the base class.
WebSocketException = WebSocketError


class ConcurrencyError(WebSocketError, RuntimeError):
    """Two coroutines used a connection in a way that cannot be shared: two waiting for the next message,
    ``send_nowait()`` or a broadcast during a fragmented send. A RuntimeError, as before it had a class of
    its own; named as in websockets, so its ``except`` clauses carry over."""


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


class MultipleValuesError(WebSocketError, LookupError):
    """``headers[name]`` found that header more than once: use ``headers.get_all(name)`` (as in websockets,
    so that a duplicated ``Authorization`` or ``Origin`` is never read as just one of its values)."""


class InvalidHandshake(WebSocketError):
    """The opening handshake failed; the message names the header or rule that was wrong."""


class InvalidMessage(InvalidHandshake):
    """The handshake's HTTP message was malformed, or the connection ended in the middle of it (the
    response, for a client): websockets' name, so ``except InvalidMessage`` in a reconnection loop carries
    over. The parser's own error, when there was one, is the ``__cause__``."""


def _closed_during_handshake(message: str, cause: BaseException | None = None) -> InvalidMessage:
    """The connection ended before the handshake did: an :class:`InvalidMessage` from an :class:`EOFError`
    (from ``cause``, a reset say), as websockets reports it; its reconnection policy retries exactly those."""
    eof = EOFError("connection closed while reading the HTTP head")
    eof.__cause__ = cause
    error = InvalidMessage(message)
    error.__cause__ = eof
    return error


class SecurityError(InvalidHandshake):
    """The handshake's HTTP head went past a limit (its size, its number of fields), or a redirect could not
    be followed safely (:class:`RedirectError`), as websockets names it."""


class _Fields:
    """For errors whose constructor takes other arguments than their message: pickled with their fields."""

    def __reduce__(self) -> tuple[Any, ...]:
        assert isinstance(self, BaseException)
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> BaseException:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class InvalidHeader(_Fields, InvalidHandshake):
    """A header of the handshake is missing (``value`` None) or wrong: ``name`` and ``value`` as websockets
    has them; the message says what was wrong with it."""

    def __init__(self, name: str, value: str | None = None, *, message: str | None = None) -> None:
        self.name = name
        self.value = value
        if message is None:
            if value is None:
                message = f"missing {name} header"
            else:
                message = f"empty {name} header" if value == "" else f"invalid {name} header: {value}"
        super().__init__(message)


class InvalidHeaderFormat(InvalidHeader):
    """A header that could not be parsed: ``error`` found at ``pos`` of ``header`` (websockets' arguments)."""

    def __init__(self, name: str, error: str, header: str, pos: int, *, message: str | None = None) -> None:
        super().__init__(name, f"{error} at {pos} in {header}", message=message)


class InvalidHeaderValue(InvalidHeader):
    """A header parsed, with a value that is not acceptable."""


class InvalidUpgrade(InvalidHeader):
    """``Upgrade: websocket`` or ``Connection: Upgrade`` missing or wrong."""


class NegotiationError(InvalidHandshake):
    """A subprotocol or an extension could not be agreed on."""


class DuplicateParameter(_Fields, NegotiationError):
    """An extension parameter given twice: ``name``."""

    def __init__(self, name: str, *, message: str | None = None) -> None:
        self.name = name
        super().__init__(f"duplicate parameter: {name}" if message is None else message)


class InvalidParameterName(_Fields, NegotiationError):
    """An extension parameter this side does not know: ``name``."""

    def __init__(self, name: str, *, message: str | None = None) -> None:
        self.name = name
        super().__init__(f"invalid parameter name: {name}" if message is None else message)


class InvalidParameterValue(_Fields, NegotiationError):
    """An extension parameter with a value missing (None) or not acceptable: ``name`` and ``value``."""

    def __init__(self, name: str, value: str | None, *, message: str | None = None) -> None:
        self.name = name
        self.value = value
        if message is None:
            if value is None:
                message = f"missing value for parameter {name}"
            elif value == "":
                message = f"empty value for parameter {name}"
            else:
                message = f"invalid value for parameter {name}: {value}"
        super().__init__(message)


class InvalidStatus(InvalidHandshake):
    """The server answered the upgrade request with something other than 101.

    ``response`` is that answer as a :class:`~wscodec.events.Response`, as websockets has it
    (``exc.response.status_code``, ``exc.response.headers["Location"]``, ``exc.response.body``); the same
    fields are also here directly (``headers`` as a list of pairs)."""

    def __init__(self, status_code: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> None:
        from .events import Response  # (events imports this module)

        super().__init__(f"server rejected WebSocket connection: HTTP {status_code} {reason}".rstrip())
        self.status_code = status_code
        self.reason = reason
        self.headers = headers
        self.body = body
        self.response = Response(status_code, reason, headers, body)


# Close codes of a normal end (websockets' rule, plus 1005: a Close frame without a code).
_OK_CODES = frozenset({1000, 1001, 1005})


def _ends_without_error(code: int | None) -> bool:
    """True for a close code that reports no error: a normal end (``_OK_CODES``) or an application's own
    (3000-4999): the CLI's ``connect`` exits 0 after a clean close with one. (``async for`` ends only after a
    :class:`ConnectionClosedOK`, as websockets' does: an application's code may mean an error.)"""
    return code is not None and (code in _OK_CODES or 3000 <= code <= 4999)


class Close(NamedTuple):
    """A Close frame, as ``ConnectionClosed.rcvd`` and ``ConnectionClosed.sent`` report it (websockets'
    ``frames.Close``): ``code`` is 1005 for a Close that carried none."""

    code: int
    reason: str


class ConnectionClosed(WebSocketError):
    """Raised when sending on, or receiving from, a connection that is closed.

    ``ConnectionClosed(code, ...)`` builds a :class:`ConnectionClosedOK` for a normal closing handshake
    (1000, 1001, or a Close without code, both ways: the Close we sent too, as in websockets) and a
    :class:`ConnectionClosedError` otherwise, so every raise site picks the right subclass without knowing
    the rule; catch the base class for both.

    ``code``, ``reason`` and ``was_clean`` say how the connection ended (the code it ended with, 1006 when
    no closing handshake took place). ``rcvd`` and ``sent`` are the Close frames themselves, as websockets
    reports them, so that code written for websockets' exceptions keeps working: the one received from the
    peer and the one sent to it (None for a frame that never was), and ``rcvd_then_sent`` says which came
    first when there were both (None otherwise).
    """

    def __new__(
        cls,
        code: int,
        reason: str = "",
        *,
        was_clean: bool = True,
        rcvd: Close | None = None,
        sent: Close | None = None,
        rcvd_then_sent: bool | None = None,
    ) -> ConnectionClosed:
        if cls is ConnectionClosed:
            # websockets' rule: a normal end only when both Close frames say so, ours too (a close(1011) or a
            # shutdown with 1012 that the peer answers with 1000 is still an error).
            ok = was_clean and code in _OK_CODES and (sent is None or sent.code in _OK_CODES)
            cls = ConnectionClosedOK if ok else ConnectionClosedError
        return super().__new__(cls)

    def __reduce__(self) -> tuple[Any, ...]:
        fields = (self.code, self.reason, self.was_clean, self.rcvd, self.sent, self.rcvd_then_sent)
        return (_rebuild_closed, (type(self), *fields))

    def __init__(
        self,
        code: int,
        reason: str = "",
        *,
        was_clean: bool = True,
        rcvd: Close | None = None,
        sent: Close | None = None,
        rcvd_then_sent: bool | None = None,
    ) -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason
        self.was_clean = was_clean
        self.rcvd = rcvd
        self.sent = sent
        self.rcvd_then_sent = rcvd_then_sent if rcvd is not None and sent is not None else None

    def _renewed(self) -> ConnectionClosed:
        """The same exception again, without a traceback: what each raise of a closed connection's error
        raises, so that the tracebacks of two failed calls do not pile up on one object."""
        rebuild, args = self.__reduce__()
        return rebuild(*args)  # type: ignore[no-any-return]


def _rebuild_closed(
    cls: type[ConnectionClosed],
    code: int,
    reason: str,
    was_clean: bool,
    rcvd: Close | None = None,
    sent: Close | None = None,
    rcvd_then_sent: bool | None = None,
) -> ConnectionClosed:
    return cls(code, reason, was_clean=was_clean, rcvd=rcvd, sent=sent, rcvd_then_sent=rcvd_then_sent)


class ConnectionClosedOK(ConnectionClosed):
    """The connection ended with a normal closing handshake (1000, 1001, or a Close without code)."""


class ConnectionClosedError(ConnectionClosed):
    """The connection ended abnormally: an error close code, or no closing handshake (1006)."""


class InvalidURI(WebSocketError, ValueError):
    """The URL is not a valid ``ws://``/``wss://`` URL (or a proxy URL is not valid)."""

    def __init__(self, uri: str, message: str) -> None:
        super().__init__(f"{uri!r} is not a valid URI: {message}")
        self.uri = uri


class OpenTimeout(WebSocketError, TimeoutError):
    """Connecting (proxy, TCP, TLS, redirects) and the opening handshake took longer than ``open_timeout``."""


class ProxyError(InvalidHandshake):
    """The proxy refused the tunnel (``status_code`` is its HTTP status, or None for a SOCKS error)."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class InvalidProxy(WebSocketError, ValueError):
    """The proxy setting is unusable: an unknown scheme, or SOCKS without the ``python-socks`` package."""


class RedirectError(SecurityError):
    """Redirects could not be followed: a loop, more than ``max_redirects``, a bad ``Location``, or one that
    would drop TLS. A :class:`SecurityError`, which websockets raises in these cases."""
