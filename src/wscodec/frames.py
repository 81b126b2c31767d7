"""Opcodes, close codes and close-frame payload helpers (RFC 6455 sections 5.2, 5.5.1, 7.4)."""

from __future__ import annotations

import enum

from .errors import Close, ProtocolError

__all__ = [
    "Close",
    "CloseCode",
    "Opcode",
    "build_close_payload",
    "is_valid_close_code",
    "parse_close_payload",
]


class Opcode(enum.IntEnum):
    """Frame opcodes; 0x3-0x7 and 0xB-0xF are reserved and rejected."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA

    @property
    def is_control(self) -> bool:
        return self >= 0x8


class CloseCode(enum.IntEnum):
    """Registered close codes (RFC 6455 section 7.4.1 and the IANA registry)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_FRAME_PAYLOAD_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015


# Codes an endpoint may put on the wire. 1004 is reserved, 1005/1006/1015 are for reporting only;
# 1012-1014 are registered with IANA and sent by real servers (uvicorn sends 1012 on restart).
_SENDABLE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


def control_payload(data: object) -> bytes:
    """A Ping's or Pong's payload as websockets takes it, in both I/O layers: str (as UTF-8) or bytes-like
    (copied: a Ping's payload is kept to match its Pong, and must not change meanwhile). Anything else is
    a TypeError, not ``bytes(data)``'s reading of an int n as n zero bytes."""
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"data must be str or bytes-like, not {type(data).__name__}")


def is_valid_close_code(code: int) -> bool:
    """True if ``code`` may appear in a Close frame on the wire."""
    return code in _SENDABLE or 3000 <= code <= 4999


def build_close_payload(code: int | None = None, reason: str = "") -> bytes:
    """The payload of a Close frame; ``code=None`` gives an empty payload (no status). A code that is not
    an int or a reason that is not a str is a TypeError (an AttributeError from deep inside before)."""
    if not isinstance(reason, str):
        raise TypeError(f"close reason must be a str, not {type(reason).__name__}")
    if code is None:
        if reason:
            raise ValueError("a close reason needs a close code")
        return b""
    if not isinstance(code, int) or isinstance(code, bool):
        raise TypeError(f"close code must be an int, not {type(code).__name__}")
    if not is_valid_close_code(code):
        raise ValueError(f"invalid close code {code}")
    data = code.to_bytes(2, "big") + reason.encode("utf-8")
    if len(data) > 125:
        raise ValueError("close reason is longer than 123 bytes once encoded")
    return data


def parse_close_payload(payload: bytes) -> tuple[int, str]:
    """Code and reason of a received Close frame; 1005 if it had no payload.

    Raises :class:`ProtocolError` (1002) for a 1-byte payload or an invalid code and (1007) for a reason
    that is not UTF-8.
    """
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise ProtocolError("close frame payload of 1 byte")
    code = int.from_bytes(payload[:2], "big")
    if not is_valid_close_code(code):
        raise ProtocolError(f"invalid close code {code}")
    try:
        reason = bytes(payload[2:]).decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("close reason is not valid UTF-8", 1007) from None
    return code, reason
