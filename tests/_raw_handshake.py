"""The server's half of the opening handshake, written out by hand (RFC 6455 section 4.2.2) for the raw
servers of the tests: a peer that misbehaves after a valid upgrade must not depend on the code under test
to compute that upgrade.
"""

from __future__ import annotations

import base64
import hashlib

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` value for a request's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def request_key(head: bytes) -> bytes:
    """The ``Sec-WebSocket-Key`` of a request head."""
    return next(
        line.split(b":", 1)[1].strip() for line in head.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key:")
    )


def accept_response(head: bytes) -> bytes:
    """A 101 answer, without extensions or subprotocol, to a request head."""
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(request_key(head)) + b"\r\n\r\n"
    )
