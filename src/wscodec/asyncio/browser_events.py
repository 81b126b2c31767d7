"""The browser's event objects (``Event``, ``MessageEvent``, ``CloseEvent``, ``ErrorEvent``), given to the
``onopen``/``onmessage``/``onerror``/``onclose`` listeners of :class:`~wscodec.asyncio.WebSocket`.

A module of their own so that both backends of the hot path (``_hotpath`` and its pure twin) build
``MessageEvent`` objects without importing the WebSocket that imports them.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = ["CloseEvent", "ErrorEvent", "Event", "MessageEvent"]


class Event:
    """A browser-style event: ``type`` is "open", "message", "error" or "close"; ``target`` the WebSocket.

    Read-only, as in browsers. Slotted classes with plain constructors, not frozen dataclasses: one
    ``MessageEvent`` is made per message delivered to a listener, and a frozen dataclass costs about four
    times as much to build. Equal when type and fields are (``target`` is not compared).
    """

    __slots__ = ("_target", "_type")
    _fields: ClassVar[tuple[str, ...]] = ("type",)

    def __init__(self, type: str, target: Any = None) -> None:
        self._type = type
        self._target = target

    @property
    def type(self) -> str:
        """ "open", "message", "error" or "close"."""
        return self._type

    @property
    def target(self) -> Any:
        """The :class:`WebSocket` the event is about."""
        return self._target

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self._fields)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, name) for name in self._fields))


class MessageEvent(Event):
    """A whole message: ``data`` is a str (text) or bytes-like per ``binary_type``."""

    __slots__ = ("_data",)
    _fields = ("type", "data")

    def __init__(self, type: str, target: Any = None, data: Any = None) -> None:
        # (no super().__init__: one is made per message delivered, and the call would cost a fifth of it)
        self._type = type
        self._target = target
        self._data = data

    @property
    def data(self) -> Any:
        """The message: str for text; bytes, bytearray or memoryview for binary (``binary_type``)."""
        return self._data


class CloseEvent(Event):
    """The connection is closed: the close ``code``, ``reason`` and whether the closing handshake completed."""

    __slots__ = ("_code", "_reason", "_was_clean")
    _fields = ("type", "code", "reason", "was_clean")

    def __init__(
        self, type: str, target: Any = None, code: int = 1006, reason: str = "", was_clean: bool = False
    ) -> None:
        super().__init__(type, target)
        self._code = code
        self._reason = reason
        self._was_clean = was_clean

    @property
    def code(self) -> int:
        """The close code (1006 when the connection ended without a Close frame)."""
        return self._code

    @property
    def reason(self) -> str:
        """The close reason, "" if none."""
        return self._reason

    @property
    def was_clean(self) -> bool:
        """True when the closing handshake completed."""
        return self._was_clean


class ErrorEvent(Event):
    """Something went wrong (protocol violation, keepalive timeout, failed handshake): see ``error``."""

    __slots__ = ("_error",)
    _fields = ("type", "error")

    def __init__(self, type: str, target: Any = None, error: BaseException | None = None) -> None:
        super().__init__(type, target)
        self._error = error

    @property
    def error(self) -> BaseException | None:
        """The exception that describes what went wrong."""
        return self._error
