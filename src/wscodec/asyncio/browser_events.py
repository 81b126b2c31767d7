"""The browser's event objects (``Event``, ``MessageEvent``, ``CloseEvent``, ``ErrorEvent``), given to the
``onopen``/``onmessage``/``onerror``/``onclose`` listeners of :class:`~wscodec.asyncio.WebSocket`.

``Event`` and ``MessageEvent`` come from the hot path in use (``_hotpath`` or its pure twin, the same
classes in behaviour): one ``MessageEvent`` is made per message delivered to a listener, so the compiled
backend builds it as a C type, reads ``data`` without an interpreter frame and frees it without
CPython's generic slot-by-slot deallocation. ``CloseEvent`` and ``ErrorEvent``, one per connection at
most, are Python subclasses of whichever ``Event`` that is.
"""

from __future__ import annotations

from typing import Any

from ._hot_backend import Event, MessageEvent

__all__ = ["CloseEvent", "ErrorEvent", "Event", "MessageEvent"]


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
