"""The handshake's errors under websockets' names and hierarchy, so that ``except InvalidMessage`` (a
reconnection loop's favourite), ``except InvalidHeader`` or ``except NegotiationError`` carry over with an
import changed: each failure raises the class websockets raises for it, still an InvalidHandshake."""

from __future__ import annotations

import asyncio
import pickle
import socket
import threading
from typing import Any

import pytest
import websockets.exceptions
from test_handshake import client, response_bytes

import wscodec
import wscodec.sync
from wscodec import errors
from wscodec.asyncio import connect

NEW = [
    "DuplicateParameter",
    "InvalidHeader",
    "InvalidHeaderFormat",
    "InvalidHeaderValue",
    "InvalidMessage",
    "InvalidParameterName",
    "InvalidParameterValue",
    "InvalidUpgrade",
    "NegotiationError",
    "SecurityError",
    "WebSocketException",
]


@pytest.mark.parametrize("name", NEW)
def test_each_class_has_websockets_name_and_bases(name: str) -> None:
    """Every base websockets gives the class that wscodec also has, wscodec gives it too (differential)."""
    ours = getattr(wscodec, name)
    assert ours is getattr(errors, name)
    theirs = getattr(websockets.exceptions, name)
    for base in theirs.__mro__:
        counterpart = getattr(errors, base.__name__, None)
        if counterpart is not None and base.__module__.startswith("websockets"):
            assert issubclass(ours, counterpart), (name, base.__name__)
    assert issubclass(ours, errors.WebSocketError)


@pytest.mark.parametrize(
    ("lines", "drop", "expected", "header"),
    [
        pytest.param(("Upgrade: h2c",), ("Upgrade",), errors.InvalidUpgrade, ("Upgrade", "h2c"), id="upgrade"),
        pytest.param((), ("Connection",), errors.InvalidUpgrade, ("Connection", None), id="connection"),
        pytest.param((), ("Sec-WebSocket-Accept",), errors.InvalidHeader, ("Sec-WebSocket-Accept", None), id="accept"),
        pytest.param(
            ("Sec-WebSocket-Accept: bm90IGl0",),
            ("Sec-WebSocket-Accept",),
            errors.InvalidHeaderValue,
            ("Sec-WebSocket-Accept", "bm90IGl0"),
            id="wrong-accept",
        ),
        pytest.param(("Sec-WebSocket-Protocol: chat",), (), errors.NegotiationError, None, id="protocol"),
        pytest.param(("Sec-WebSocket-Extensions: x-unknown",), (), errors.NegotiationError, None, id="extension"),
    ],
)
def test_an_invalid_101_raises_websockets_class(
    lines: tuple[str, ...], drop: tuple[str, ...], expected: type[Exception], header: tuple[str, str | None] | None
) -> None:
    hs = client()
    with pytest.raises(expected) as raised:
        hs.receive_data(response_bytes(hs.key, *lines, drop=drop))
    assert isinstance(raised.value, errors.InvalidHandshake)
    if header is not None:
        error: Any = raised.value
        assert (error.name, error.value) == header
        again = pickle.loads(pickle.dumps(error))  # its fields survive a trip to another process
        assert (type(again), again.name, again.value, str(again)) == (type(error), *header, str(error))


@pytest.mark.parametrize(
    ("params", "expected", "name"),
    [
        pytest.param("; x_unknown=1", errors.InvalidParameterName, "x_unknown", id="unknown"),
        pytest.param(
            "; client_no_context_takeover; client_no_context_takeover",
            errors.DuplicateParameter,
            "client_no_context_takeover",
            id="twice",
        ),
        pytest.param("; server_max_window_bits=99", errors.InvalidParameterValue, "server_max_window_bits", id="value"),
        pytest.param("; server_max_window_bits", errors.InvalidParameterValue, "server_max_window_bits", id="no-value"),
    ],
)
def test_a_bad_deflate_parameter_raises_websockets_class(params: str, expected: type[Exception], name: str) -> None:
    hs = client(extensions=[wscodec.extensions.ClientPerMessageDeflate()])
    with pytest.raises(expected) as raised:
        hs.receive_data(response_bytes(hs.key, f"Sec-WebSocket-Extensions: permessage-deflate{params}"))
    assert isinstance(raised.value, errors.NegotiationError)
    assert raised.value.name == name  # type: ignore[attr-defined]


def test_a_response_that_is_not_http_is_an_invalid_message() -> None:
    hs = client()
    with pytest.raises(errors.InvalidMessage, match="status line"):
        hs.receive_data(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")


def test_a_response_head_past_its_limit_is_an_invalid_message_from_a_security_error() -> None:
    hs = client(max_header_size=200)
    with pytest.raises(errors.InvalidMessage, match="larger than 200 bytes") as raised:
        hs.receive_data(response_bytes(hs.key, "X: " + "a" * 300))
    assert isinstance(raised.value.__cause__, errors.SecurityError)


class HalfAnswer:
    """A loopback server that reads the upgrade request and answers half a status line, then closes."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(10)
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            conn.sendall(b"HTTP/1.1 101 Swi")

    def close(self) -> None:
        self.thread.join(10)
        self.listener.close()


def test_a_server_that_closes_mid_response_is_an_invalid_message_for_the_threaded_client() -> None:
    server = HalfAnswer()
    try:
        with pytest.raises(errors.InvalidMessage, match="connection closed during"):
            wscodec.sync.connect(f"ws://127.0.0.1:{server.port}/", open_timeout=5)
    finally:
        server.close()


async def test_a_server_that_closes_mid_response_is_an_invalid_message_for_the_asyncio_client() -> None:
    server = HalfAnswer()
    try:
        with pytest.raises(errors.InvalidMessage, match="connection closed during"):
            await connect(f"ws://127.0.0.1:{server.port}/", open_timeout=5)
    finally:
        await asyncio.to_thread(server.close)
