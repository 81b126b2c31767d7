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
    from wscodec.asyncio.client import process_exception

    server = HalfAnswer()
    try:
        with pytest.raises(errors.InvalidMessage, match="connection closed during") as raised:
            await connect(f"ws://127.0.0.1:{server.port}/", open_timeout=5)
    finally:
        await asyncio.to_thread(server.close)
    assert isinstance(raised.value.__cause__, EOFError)  # retried by reconnection, as websockets does
    assert process_exception(raised.value) is None


@pytest.mark.parametrize(
    "args",
    [
        ("InvalidHeader", ("X-Thing",)),
        ("InvalidHeader", ("X-Thing", "")),
        ("InvalidHeader", ("X-Thing", "bad")),
        ("InvalidUpgrade", ("Upgrade", "h2c")),
        ("InvalidHeaderValue", ("Sec-WebSocket-Accept", "bm90")),
        ("InvalidHeaderFormat", ("Sec-WebSocket-Extensions", "expected token", "a;;", 2)),
        ("DuplicateParameter", ("server_no_context_takeover",)),
        ("InvalidParameterName", ("x_param",)),
        ("InvalidParameterValue", ("client_max_window_bits", None)),
        ("InvalidParameterValue", ("client_max_window_bits", "")),
        ("InvalidParameterValue", ("client_max_window_bits", "99")),
        ("InvalidMessage", ("did not receive a valid HTTP response",)),
        ("NegotiationError", ("no subprotocol",)),
    ],
    ids=lambda args: f"{args[0]}{args[1][1:]!r}",
)
def test_built_as_websockets_builds_them_the_errors_read_the_same(args: tuple[str, tuple[Any, ...]]) -> None:
    """Differential: the constructor forms websockets' code and its users call, and what they read back."""
    name, arguments = args
    ours, theirs = getattr(errors, name)(*arguments), getattr(websockets.exceptions, name)(*arguments)
    assert str(ours) == str(theirs)
    for field in ("name", "value"):
        assert getattr(ours, field, None) == getattr(theirs, field, None), field


def test_the_messages_are_those_of_before_the_classes() -> None:
    """Only the class changed: a log or a test that reads the message sees what it saw before."""
    hs = client(max_header_size=200)
    with pytest.raises(errors.InvalidMessage) as raised:
        hs.receive_data(response_bytes(hs.key, "X: " + "a" * 300))
    assert str(raised.value) == "HTTP head larger than 200 bytes"
    for params, message in [
        ("; x_unknown=1", "unknown permessage-deflate parameter 'x_unknown'"),
        (
            "; server_no_context_takeover; server_no_context_takeover",
            "duplicate permessage-deflate parameter 'server_no_context_takeover'",
        ),
    ]:
        hs = client(extensions=[wscodec.extensions.ClientPerMessageDeflate()])
        with pytest.raises(errors.NegotiationError) as raised:
            hs.receive_data(response_bytes(hs.key, f"Sec-WebSocket-Extensions: permessage-deflate{params}"))
        assert str(raised.value) == message


def test_a_connection_closed_mid_response_stems_from_an_eof_error_as_websockets_retry_policy_expects() -> None:
    """websockets' process_exception retries an InvalidMessage whose cause is an EOFError (a network error):
    a policy moved over with its imports renamed finds the same, and wscodec's own retries it too."""
    from wscodec.asyncio.client import process_exception

    server = HalfAnswer()
    try:
        with pytest.raises(errors.InvalidMessage) as raised:
            wscodec.sync.connect(f"ws://127.0.0.1:{server.port}/", open_timeout=5)
    finally:
        server.close()
    assert isinstance(raised.value.__cause__, EOFError)
    assert process_exception(raised.value) is None
