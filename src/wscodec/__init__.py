"""wscodec: a fast, strict WebSocket codec (RFC 6455, RFC 7692) with Cython kernels and a pure-Python twin.

Three layers, each usable alone: the kernels (masking, UTF-8, frame parsing and building), the sans-I/O
:class:`Connection`, and the asyncio client and server in :mod:`wscodec.asyncio`.
"""

from __future__ import annotations

from ._kernels import (
    BACKEND,
    Frame,
    FrameDecoder,
    Utf8Validator,
    apply_mask,
    apply_mask_inplace,
    encode_frame,
    validate_utf8,
)
from .connection import Connection, State
from .errors import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    DuplicateParameter,
    InvalidHandshake,
    InvalidHeader,
    InvalidHeaderFormat,
    InvalidHeaderValue,
    InvalidMessage,
    InvalidParameterName,
    InvalidParameterValue,
    InvalidProxy,
    InvalidStatus,
    InvalidUpgrade,
    InvalidURI,
    MultipleValuesError,
    NegotiationError,
    OpenTimeout,
    PayloadTooBig,
    ProtocolError,
    ProxyError,
    RedirectError,
    SecurityError,
    WebSocketError,
    WebSocketException,
)
from .frames import CloseCode, Opcode

__version__ = "0.1.0"

__all__ = [
    "BACKEND",
    "CloseCode",
    "ConcurrencyError",
    "Connection",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "DuplicateParameter",
    "Frame",
    "FrameDecoder",
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
    "Opcode",
    "OpenTimeout",
    "PayloadTooBig",
    "ProtocolError",
    "ProxyError",
    "RedirectError",
    "SecurityError",
    "State",
    "Utf8Validator",
    "WebSocketError",
    "WebSocketException",
    "apply_mask",
    "apply_mask_inplace",
    "encode_frame",
    "validate_utf8",
]
