"""The opening handshake, RFC 6455 section 4: HttpParser, ClientHandshake and ServerHandshake."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from wscodec.errors import InvalidHandshake, InvalidStatus, NegotiationError
from wscodec.events import Request, Response
from wscodec.extensions import ClientPerMessageDeflate, PerMessageDeflate, ServerPerMessageDeflate
from wscodec.handshake import (
    GUID,
    ClientHandshake,
    HandshakeRejected,
    HttpParser,
    ServerHandshake,
    compute_accept,
    generate_key,
    has_token,
    header_values,
    parse_subprotocols,
    split_tokens,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def request_bytes(*lines: str, start: str = "GET /chat HTTP/1.1", drop: tuple[str, ...] = ()) -> bytes:
    """A valid upgrade request (RFC 6455 section 1.3 example) with ``lines`` added and ``drop`` removed."""
    base = [
        "Host: server.example.com",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY}",
        "Sec-WebSocket-Version: 13",
    ]
    kept = [line for line in base if line.split(":")[0] not in drop]
    return ("\r\n".join([start, *kept, *lines]) + "\r\n\r\n").encode("latin-1")


def response_bytes(key: str, *lines: str, start: str = "HTTP/1.1 101 Switching Protocols", drop=()) -> bytes:
    base = ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Accept: {compute_accept(key)}"]
    kept = [line for line in base if line.split(":")[0] not in drop]
    return ("\r\n".join([start, *kept, *lines]) + "\r\n\r\n").encode("latin-1")


# --------------------------------------------------------------------------- section 1.3 / 4.1: keys


def test_1_3_accept_example() -> None:
    assert GUID == "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    assert compute_accept(KEY) == ACCEPT


def test_4_1_generated_key_is_base64_of_16_random_bytes() -> None:
    keys = {generate_key() for _ in range(20)}
    assert len(keys) == 20
    for key in keys:
        assert len(base64.b64decode(key, validate=True)) == 16


# --------------------------------------------------------------------------- header helpers

HEADERS = (
    ("Connection", "keep-alive, Upgrade"),
    ("X-List", " a ,, b,"),
    ("x-list", "c"),
    ("Upgrade", "WebSocket"),
)


def test_header_values_case_insensitive_in_order() -> None:
    assert header_values(HEADERS, "X-LIST") == [" a ,, b,", "c"]
    assert header_values(HEADERS, "missing") == []


def test_split_tokens_trims_and_drops_empties() -> None:
    assert split_tokens(header_values(HEADERS, "x-list")) == ["a", "b", "c"]
    assert split_tokens([]) == []


@pytest.mark.parametrize(
    ("name", "token", "expected"),
    [
        ("connection", "upgrade", True),
        ("Connection", "KEEP-ALIVE", True),
        ("Connection", "close", False),
        ("Upgrade", "websocket", True),
        ("Connection", "Upgrade, keep-alive", False),
        ("Missing", "x", False),
    ],
)
def test_has_token(name: str, token: str, expected: bool) -> None:
    assert has_token(HEADERS, name, token) is expected


def test_parse_subprotocols_joins_lists() -> None:
    headers = (("Sec-WebSocket-Protocol", "chat, superchat"), ("sec-websocket-protocol", "v2"))
    assert parse_subprotocols(headers) == ["chat", "superchat", "v2"]


# --------------------------------------------------------------------------- HttpParser

HEAD = b"GET / HTTP/1.1\r\nHost: h\r\nX-A:  spaced value \t\r\nX-B:tight\r\nX-E:\r\n\r\n"


def test_parser_whole_head_and_leftover() -> None:
    parser = HttpParser()
    assert parser.feed(HEAD + b"\x81\x00rest")
    assert parser.start_line == "GET / HTTP/1.1"
    assert parser.headers == (("Host", "h"), ("X-A", "spaced value"), ("X-B", "tight"), ("X-E", ""))
    assert parser.leftover == b"\x81\x00rest"
    assert parser.feed(b"more") and parser.leftover == b"\x81\x00restmore"


def test_parser_byte_by_byte() -> None:
    parser = HttpParser()
    data = HEAD + b"x"
    for i in range(len(HEAD) - 1):
        assert parser.feed(data[i : i + 1]) is False
    assert parser.feed(data[len(HEAD) - 1 :]) is True
    assert parser.headers[1] == ("X-A", "spaced value")
    assert parser.leftover == b"x"


def test_parser_keeps_obs_text_as_latin_1() -> None:
    parser = HttpParser()
    assert parser.feed(b"GET / HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n")
    assert parser.headers == (("X", "caf\xc3\xa9"),)


@pytest.mark.parametrize(
    ("head", "status"),
    [
        pytest.param(b"GET / HTTP/1.1\nHost: h\n\n", 400, id="bare-LF"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: h\n\r\n", 400, id="bare-LF-in-header"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: h\r\n continued\r\n\r\n", 400, id="obs-fold"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: h\r\n\tcontinued\r\n\r\n", 400, id="obs-fold-tab"),
        pytest.param(b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400, id="space-before-colon"),
        pytest.param(b"GET / HTTP/1.1\r\nHo(st: h\r\n\r\n", 400, id="invalid-name"),
        pytest.param(b"GET / HTTP/1.1\r\nno colon\r\n\r\n", 400, id="no-colon"),
        pytest.param(b"GET / HTTP/1.1\r\n: empty name\r\n\r\n", 400, id="empty-name"),
        pytest.param(b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", 400, id="NUL-in-value"),
        pytest.param(b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n", 400, id="DEL-in-value"),
        pytest.param(b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400, id="bare-CR"),
        pytest.param(b"\r\nGET / HTTP/1.1\r\n\r\n", 400, id="empty-start-line"),
    ],
)
def test_parser_rejects_malformed_heads(head: bytes, status: int) -> None:
    with pytest.raises(HandshakeRejected) as info:
        HttpParser().feed(head)
    assert info.value.status == status


def test_parser_head_size_limit_counts_the_whole_head() -> None:
    head = b"GET / HTTP/1.1\r\nX: " + b"a" * 100 + b"\r\n\r\n"
    assert HttpParser(max_header_size=len(head)).feed(head)
    with pytest.raises(HandshakeRejected) as info:
        HttpParser(max_header_size=len(head) - 1).feed(head)
    assert info.value.status == 431


def test_parser_size_limit_without_end_of_head_is_refused_early() -> None:
    parser = HttpParser(max_header_size=100)
    assert not parser.feed(b"GET / HTTP/1.1\r\nX: " + b"a" * 50)
    with pytest.raises(HandshakeRejected) as info:
        parser.feed(b"a" * 60)
    assert info.value.status == 431


def test_parser_header_count_limit() -> None:
    lines = b"".join(b"X-%d: v\r\n" % i for i in range(100))
    assert HttpParser(max_header_size=1 << 20).feed(b"GET / HTTP/1.1\r\n" + lines + b"\r\n")
    with pytest.raises(HandshakeRejected) as info:
        HttpParser(max_header_size=1 << 20).feed(b"GET / HTTP/1.1\r\n" + lines + b"Y: v\r\n\r\n")
    assert info.value.status == 431


def test_parser_crlfcrlf_split_across_feeds() -> None:
    parser = HttpParser()
    assert not parser.feed(b"GET / HTTP/1.1\r\nHost: h\r")
    assert not parser.feed(b"\n\r")
    assert parser.feed(b"\nabc")
    assert parser.leftover == b"abc"


# --------------------------------------------------------------------------- section 4.1: client request


def test_4_1_client_request_fields() -> None:
    hs = ClientHandshake(
        "example.com:8080",
        "/chat?room=1",
        origin="http://example.com",
        subprotocols=["chat", "superchat"],
        extensions=[ClientPerMessageDeflate()],
        extra_headers=[("Authorization", "Bearer x")],
    )
    data = hs.request_bytes()
    assert data.startswith(b"GET /chat?room=1 HTTP/1.1\r\n") and data.endswith(b"\r\n\r\n")
    request = hs.request
    assert isinstance(request, Request) and request.method == "GET" and request.path == "/chat?room=1"
    assert request.header("host") == "example.com:8080"
    assert request.header("Upgrade") == "websocket"
    assert request.header("Connection") == "Upgrade"
    assert request.header("Sec-WebSocket-Key") == hs.key
    assert request.header("Sec-WebSocket-Version") == "13"
    assert request.header("Origin") == "http://example.com"
    assert request.header("Sec-WebSocket-Protocol") == "chat, superchat"
    assert request.header("Sec-WebSocket-Extensions") == "permessage-deflate; client_max_window_bits"
    assert request.header("Authorization") == "Bearer x"
    parser = HttpParser()
    assert parser.feed(data) and parser.headers == request.headers


def test_4_1_minimal_request_has_no_optional_fields() -> None:
    request = ClientHandshake("h").request
    names = [name for name, _ in request.headers]
    assert names == ["Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version"]
    assert request.path == "/"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"host": "h\r\nX: injected"},
        {"host": ""},
        {"host": "h", "path": "/a b"},
        {"host": "h", "path": ""},
        {"host": "h", "subprotocols": ["bad protocol"]},
        {"host": "h", "extra_headers": [("X", "a\r\nY: b")]},
        {"host": "h", "extra_headers": [("Bad Name", "v")]},
        {"host": "h", "origin": "o\n"},
    ],
)
def test_4_1_client_refuses_invalid_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ClientHandshake(**kwargs)


# --------------------------------------------------------------------------- section 4.1: client checks the response


def client(**kwargs) -> ClientHandshake:
    return ClientHandshake("server.example.com", "/chat", **kwargs)


def test_4_1_valid_response_byte_by_byte_with_frames_after() -> None:
    hs = client(subprotocols=["chat"])
    data = response_bytes(hs.key, "Sec-WebSocket-Protocol: chat") + b"\x81\x02hi"
    head_len = len(data) - 4
    for i in range(head_len - 1):
        assert hs.receive_data(data[i : i + 1]) is None
    response = hs.receive_data(data[head_len - 1 :])
    assert isinstance(response, Response) and response.status_code == 101
    assert response.reason == "Switching Protocols"
    assert hs.response is response
    assert hs.subprotocol == "chat"
    assert hs.extensions == []
    assert hs.leftover == b"\x81\x02hi"


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param(("upgrade: WebSocket", "connection: keep-alive, UPGRADE"), id="case-and-lists"),
        pytest.param(("Upgrade: websocket", "Connection: Upgrade"), id="plain"),
    ],
)
def test_4_1_upgrade_and_connection_are_case_insensitive_token_lists(lines: tuple[str, ...]) -> None:
    hs = client()
    data = response_bytes(hs.key, *lines, drop=("Upgrade", "Connection"))
    assert hs.receive_data(data) is not None


@pytest.mark.parametrize(
    ("lines", "drop", "message"),
    [
        pytest.param((), ("Upgrade",), "Upgrade", id="no-upgrade"),
        pytest.param(("Upgrade: h2c",), ("Upgrade",), "Upgrade", id="wrong-upgrade"),
        pytest.param((), ("Connection",), "Connection", id="no-connection"),
        pytest.param(("Connection: close",), ("Connection",), "Connection", id="wrong-connection"),
        pytest.param((), ("Sec-WebSocket-Accept",), "Accept", id="no-accept"),
        pytest.param((f"Sec-WebSocket-Accept: {ACCEPT}",), ("Sec-WebSocket-Accept",), "Accept", id="wrong-accept"),
        pytest.param(("Sec-WebSocket-Accept: x",), (), "Accept", id="two-accepts"),
        pytest.param(("Sec-WebSocket-Protocol: chat",), (), "subprotocol", id="protocol-not-offered"),
        pytest.param(("Sec-WebSocket-Extensions: permessage-deflate",), (), "extension", id="ext-not-offered"),
    ],
)
def test_4_1_client_fails_invalid_101(lines: tuple[str, ...], drop: tuple[str, ...], message: str) -> None:
    hs = client()
    with pytest.raises(InvalidHandshake, match=message):
        hs.receive_data(response_bytes(hs.key, *lines, drop=drop))
    assert hs.response is None


@pytest.mark.parametrize(
    ("offered", "line"),
    [
        pytest.param(["chat"], "Sec-WebSocket-Protocol: superchat", id="not-in-offer"),
        pytest.param(["chat", "superchat"], "Sec-WebSocket-Protocol: chat, superchat", id="two-values"),
        pytest.param(["chat"], "Sec-WebSocket-Protocol: ", id="empty"),
    ],
)
def test_4_1_client_fails_bad_subprotocol(offered: list[str], line: str) -> None:
    hs = client(subprotocols=offered)
    with pytest.raises(InvalidHandshake, match=r"subprotocol|Sec-WebSocket-Protocol"):
        hs.receive_data(response_bytes(hs.key, line))


def test_4_1_no_subprotocol_chosen_is_fine() -> None:
    hs = client(subprotocols=["chat"])
    assert hs.receive_data(response_bytes(hs.key)) is not None
    assert hs.subprotocol is None


@pytest.mark.parametrize(
    "line",
    [
        pytest.param("Sec-WebSocket-Extensions: x-unknown", id="unknown"),
        pytest.param("Sec-WebSocket-Extensions: permessage-deflate, permessage-deflate", id="duplicate"),
        pytest.param("Sec-WebSocket-Extensions: permessage-deflate; foo", id="bad-param"),
        pytest.param("Sec-WebSocket-Extensions: permessage-deflate; =", id="malformed"),
    ],
)
def test_9_1_client_fails_bad_extension_response(line: str) -> None:
    hs = client(extensions=[ClientPerMessageDeflate()])
    with pytest.raises(InvalidHandshake):
        hs.receive_data(response_bytes(hs.key, line))


def test_9_1_client_gets_negotiated_extension_objects() -> None:
    hs = client(extensions=[ClientPerMessageDeflate()])
    line = "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_max_window_bits=10"
    assert hs.receive_data(response_bytes(hs.key, line)) is not None
    (ext,) = hs.extensions
    assert isinstance(ext, PerMessageDeflate) and not ext.is_server
    assert ext.server_no_context_takeover and ext.client_max_window_bits == 10


@pytest.mark.parametrize(
    ("offers", "line", "check"),
    [
        pytest.param(
            [ClientPerMessageDeflate(server_no_context_takeover=True), ClientPerMessageDeflate()],
            "permessage-deflate",
            lambda ext: not ext.server_no_context_takeover,
            id="second-without-no-context-takeover",
        ),
        pytest.param(
            [
                ClientPerMessageDeflate(client_max_window_bits=None),
                ClientPerMessageDeflate(client_max_window_bits=True),
            ],
            "permessage-deflate; client_max_window_bits=10",
            lambda ext: ext.client_max_window_bits == 10,
            id="second-offers-client-max-window-bits",
        ),
        pytest.param(
            [ClientPerMessageDeflate(server_max_window_bits=10), ClientPerMessageDeflate()],
            "permessage-deflate; server_max_window_bits=12",
            lambda ext: ext.server_max_window_bits == 12,
            id="second-without-a-window-limit",
        ),
        pytest.param(
            [ClientPerMessageDeflate(server_max_window_bits=10), ClientPerMessageDeflate()],
            "permessage-deflate; server_max_window_bits=9",
            lambda ext: ext.server_max_window_bits == 9,
            id="first-still-preferred",
        ),
    ],
)
def test_7692_5_client_accepts_a_response_to_any_of_its_offers(offers: list, line: str, check: Any) -> None:
    """RFC 7692 section 5: several offers of permessage-deflate, in order of preference; the server accepts
    one of them, without saying which: the first offer that accepts the response is negotiated."""
    hs = client(extensions=offers)
    assert hs.request_bytes().count(b"permessage-deflate") == 2
    assert hs.receive_data(response_bytes(hs.key, f"Sec-WebSocket-Extensions: {line}")) is not None
    (ext,) = hs.extensions
    assert isinstance(ext, PerMessageDeflate) and check(ext)


def test_7692_5_client_refuses_a_response_no_offer_accepts_with_the_first_offers_reason() -> None:
    hs = client(
        extensions=[
            ClientPerMessageDeflate(server_max_window_bits=10),
            ClientPerMessageDeflate(server_max_window_bits=11),
        ]
    )
    line = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12"
    with pytest.raises(InvalidHandshake, match="12 is more than the 10 requested"):
        hs.receive_data(response_bytes(hs.key, line))
    assert hs.extensions == []


def test_9_1_server_may_decline_extensions() -> None:
    hs = client(extensions=[ClientPerMessageDeflate()])
    assert hs.receive_data(response_bytes(hs.key)) is not None
    assert hs.extensions == []


@pytest.mark.parametrize(
    "start",
    ["HTTP/1.0 101 Switching Protocols", "HTTP/1.1 1O1 Switching", "ICY 200 OK", "HTTP/1.1"],
)
def test_4_1_client_fails_bad_status_line(start: str) -> None:
    hs = client()
    with pytest.raises(InvalidHandshake) as info:
        hs.receive_data(response_bytes(hs.key, start=start))
    assert not isinstance(info.value, InvalidStatus)


def test_4_1_status_line_without_reason_is_tolerated() -> None:
    hs = client()
    response = hs.receive_data(response_bytes(hs.key, start="HTTP/1.1 101"))
    assert response is not None and response.reason == ""


# --------------------------------------------------------------------------- section 4.1: non-101 responses


def test_4_1_non_101_with_content_length_carries_its_body() -> None:
    hs = client()
    data = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\nX: y\r\n\r\nno entry!"
    assert hs.receive_data(data[:-3]) is None
    with pytest.raises(InvalidStatus) as info:
        hs.receive_data(data[-3:])
    exc = info.value
    assert (exc.status_code, exc.reason, exc.body) == (403, "Forbidden", b"no entry!")
    assert ("X", "y") in exc.headers


def test_4_1_non_101_without_length_reads_until_eof() -> None:
    hs = client()
    assert hs.receive_data(b"HTTP/1.1 500 Oops\r\n\r\npart one, ") is None
    assert hs.receive_data(b"part two") is None
    with pytest.raises(InvalidStatus) as info:
        hs.receive_data(b"")
    assert info.value.body == b"part one, part two"


def test_4_1_non_101_eof_before_content_length_gives_what_came() -> None:
    hs = client()
    assert hs.receive_data(b"HTTP/1.1 404 Not Found\r\nContent-Length: 100\r\n\r\nshort") is None
    with pytest.raises(InvalidStatus) as info:
        hs.receive_data(b"")
    assert info.value.body == b"short"


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
    ],
)
def test_4_1_non_101_without_body_fails_at_once(head: bytes) -> None:
    with pytest.raises(InvalidStatus) as info:
        client().receive_data(head)
    assert info.value.body == b""


def test_4_1_non_101_body_is_capped() -> None:
    hs = client()
    assert hs.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n") is None
    with pytest.raises(InvalidStatus) as info:
        for _ in range(100):
            hs.receive_data(b"x" * 1000)
    assert len(info.value.body) == 65536


def test_4_1_eof_before_head_returns_none() -> None:
    hs = client()
    assert hs.receive_data(b"HTTP/1.1 101 Swi") is None
    assert hs.receive_data(b"") is None
    assert hs.response is None


def test_4_1_client_response_head_size_limit() -> None:
    hs = client(max_header_size=200)
    with pytest.raises(InvalidHandshake):
        hs.receive_data(response_bytes(hs.key, "X: " + "a" * 300))


# --------------------------------------------------------------------------- section 4.2.1: server reads the request


def test_4_2_1_valid_request_byte_by_byte() -> None:
    hs = ServerHandshake()
    data = request_bytes("Origin: http://example.com", "Sec-WebSocket-Protocol: chat, superchat") + b"\x81"
    for i in range(len(data) - 2):
        assert hs.receive_data(data[i : i + 1]) is None
    request = hs.receive_data(data[-2:])
    assert isinstance(request, Request)
    assert (request.method, request.path, request.http_version) == ("GET", "/chat", "HTTP/1.1")
    assert request.header("origin") == "http://example.com"
    assert hs.offered_subprotocols == ["chat", "superchat"]
    assert hs.leftover == b"\x81"
    assert hs.receive_data(b"\x80") is None and hs.leftover == b"\x81\x80"


@pytest.mark.parametrize(
    ("data", "status", "headers"),
    [
        pytest.param(request_bytes(start="POST /chat HTTP/1.1"), 405, (("Allow", "GET"),), id="not-GET"),
        pytest.param(request_bytes(start="GET /chat HTTP/1.0"), 505, (), id="HTTP/1.0"),
        pytest.param(request_bytes(start="GET /chat HTTP/2.0"), 505, (), id="HTTP/2.0"),
        pytest.param(request_bytes(start="GET /chat HTTP/1.1 x"), 400, (), id="bad-request-line"),
        pytest.param(request_bytes(start="GET  /chat HTTP/1.1"), 400, (), id="double-space"),
        pytest.param(request_bytes(start="GET /chat HTTX/1.1"), 400, (), id="bad-version"),
        pytest.param(request_bytes(drop=("Host",)), 400, (), id="no-Host"),
        pytest.param(request_bytes("Host: other"), 400, (), id="two-Hosts"),
        pytest.param(request_bytes("Content-Length: 8"), 400, (), id="body-Content-Length"),
        pytest.param(request_bytes("Content-Length: 0, 8"), 400, (), id="body-Content-Length-list"),
        pytest.param(request_bytes("Transfer-Encoding: chunked"), 400, (), id="body-chunked"),
        pytest.param(request_bytes("Content-Length:"), 400, (), id="body-Content-Length-empty"),
        pytest.param(request_bytes(drop=("Upgrade",)), 426, (("Upgrade", "websocket"),), id="no-Upgrade"),
        pytest.param(
            request_bytes("Upgrade: h2c", drop=("Upgrade",)), 426, (("Upgrade", "websocket"),), id="wrong-Upgrade"
        ),
        pytest.param(request_bytes(drop=("Connection",)), 400, (), id="no-Connection"),
        pytest.param(request_bytes("Connection: keep-alive", drop=("Connection",)), 400, (), id="no-upgrade-token"),
        pytest.param(request_bytes(drop=("Sec-WebSocket-Key",)), 400, (), id="no-key"),
        pytest.param(request_bytes(f"Sec-WebSocket-Key: {KEY}"), 400, (), id="two-keys"),
        pytest.param(
            request_bytes("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ", drop=("Sec-WebSocket-Key",)),
            400,
            (),
            id="key-not-padded",
        ),
        pytest.param(
            request_bytes("Sec-WebSocket-Key: c2hvcnQ=", drop=("Sec-WebSocket-Key",)), 400, (), id="key-8-bytes"
        ),
        pytest.param(
            request_bytes("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZSE=", drop=("Sec-WebSocket-Key",)),
            400,
            (),
            id="key-17-bytes",
        ),
        pytest.param(
            request_bytes("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ*==", drop=("Sec-WebSocket-Key",)),
            400,
            (),
            id="key-not-base64",
        ),
        pytest.param(
            request_bytes("Sec-WebSocket-Version: 8", drop=("Sec-WebSocket-Version",)),
            426,
            (("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")),
            id="version-8",
        ),
        pytest.param(
            request_bytes(drop=("Sec-WebSocket-Version",)),
            426,
            (("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")),
            id="no-version",
        ),
        *(
            pytest.param(request_bytes(f"Host: {host}", drop=("Host",)), 400, (), id=f"Host-{host!r}")
            for host in ("a b", "a/b", "@@@", "h:1:2", "\x80\x81", "[::1", "h:8x")
        ),
        *(
            pytest.param(request_bytes(f"Sec-WebSocket-Protocol: {offer}"), 400, (), id=f"subprotocol-{offer!r}")
            for offer in ("a b", "", "chat;v=1", "chat, a b", ",")
        ),
        pytest.param(request_bytes("Sec-WebSocket-Version: 13"), 400, (), id="two-versions"),
        pytest.param(request_bytes("Sec-WebSocket-Extensions: a;;"), 400, (), id="malformed-extensions"),
        pytest.param(b"GET / HTTP/1.1\nHost: h\n\n", 400, (), id="bare-LF"),
        pytest.param(request_bytes("X: " + "a" * 9000), 431, (), id="head-too-large"),
    ],
)
def test_4_2_1_server_rejects_bad_requests(data: bytes, status: int, headers: tuple) -> None:
    hs = ServerHandshake()
    with pytest.raises(HandshakeRejected) as info:
        hs.receive_data(data)
    assert info.value.status == status
    assert info.value.headers == headers
    assert hs.request is None


@pytest.mark.parametrize(
    ("origins", "origin", "allowed"),
    [
        (None, "http://evil.example", True),
        (None, None, True),
        (["http://a.example"], "http://a.example", True),
        (["http://a.example"], "http://b.example", False),
        (["http://a.example"], None, False),
        (["http://a.example", None], None, True),
        ([None], "http://a.example", False),
        ([], None, False),
    ],
)
def test_4_2_1_origin_check(origins: list | None, origin: str | None, allowed: bool) -> None:
    hs = ServerHandshake(origins=origins)
    data = request_bytes(f"Origin: {origin}") if origin else request_bytes()
    if allowed:
        assert hs.receive_data(data) is not None
    else:
        with pytest.raises(HandshakeRejected) as info:
            hs.receive_data(data)
        assert info.value.status == 403


def test_4_2_1_server_max_header_size() -> None:
    data = request_bytes("X: " + "a" * 500)
    assert ServerHandshake(max_header_size=len(data)).receive_data(data) is not None
    with pytest.raises(HandshakeRejected) as info:
        ServerHandshake(max_header_size=len(data) - 1).receive_data(data)
    assert info.value.status == 431


def test_4_2_1_an_empty_body_declared_is_no_body() -> None:
    """``Content-Length: 0`` (some clients send it on every GET) declares no body: accepted, and what follows
    the head is kept for the frames."""
    hs = ServerHandshake()
    assert hs.receive_data(request_bytes("Content-Length: 0") + b"\x81\x80") is not None
    assert hs.leftover == b"\x81\x80"


def test_4_2_1_eof_returns_none() -> None:
    hs = ServerHandshake()
    assert hs.receive_data(b"GET / HT") is None
    assert hs.receive_data(b"") is None


# --------------------------------------------------------------------------- section 4.2.2: server answers


def received(hs: ServerHandshake, *lines: str) -> ServerHandshake:
    assert hs.receive_data(request_bytes(*lines)) is not None
    return hs


def test_4_2_2_accept_builds_101() -> None:
    hs = received(ServerHandshake())
    data = hs.accept(extra_headers=[("Server", "wscodec")])
    assert data == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nServer: wscodec\r\n\r\n"
    )
    assert hs.response == Response(
        101,
        "Switching Protocols",
        (("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", ACCEPT), ("Server", "wscodec")),
    )
    assert hs.subprotocol is None and hs.extensions == []


@pytest.mark.parametrize(
    ("server", "offered", "expected"),
    [
        (["superchat", "chat"], "chat, superchat", "superchat"),
        (["chat"], "superchat, chat", "chat"),
        ([], "chat", None),
        ([], None, None),
    ],
)
def test_4_2_2_subprotocol_selection(server: list[str], offered: str | None, expected: str | None) -> None:
    hs = received(ServerHandshake(subprotocols=server), *([f"Sec-WebSocket-Protocol: {offered}"] if offered else []))
    assert hs.select_subprotocol(hs.offered_subprotocols) == expected
    data = hs.accept()
    assert hs.subprotocol == expected
    assert (b"Sec-WebSocket-Protocol: " in data) is (expected is not None)


@pytest.mark.parametrize(
    ("offered", "message"),
    [(None, "missing subprotocol"), ("v1, chat", "invalid subprotocol; expected one of v2, superchat")],
    ids=["none-offered", "none-in-common"],
)
def test_4_2_2_no_subprotocol_in_common_is_a_negotiation_error(offered: str | None, message: str) -> None:
    """A server that lists subprotocols does not open without one (websockets' rule, answered 400): the
    client would speak something the server does not. The handshake stays unanswered, for reject()."""
    hs = received(
        ServerHandshake(subprotocols=["v2", "superchat"]), *([f"Sec-WebSocket-Protocol: {offered}"] if offered else [])
    )
    with pytest.raises(NegotiationError, match=message):
        hs.accept()
    assert hs.response is None
    assert b"Sec-WebSocket-Protocol" not in hs.accept(subprotocol=None)  # an explicit choice still goes


def test_4_2_2_explicit_subprotocol() -> None:
    hs = received(ServerHandshake(subprotocols=["a"]), "Sec-WebSocket-Protocol: a, b")
    assert b"Sec-WebSocket-Protocol: b\r\n" in hs.accept(subprotocol="b")
    assert hs.subprotocol == "b"


def test_4_2_2_explicit_none_subprotocol() -> None:
    hs = received(ServerHandshake(subprotocols=["a"]), "Sec-WebSocket-Protocol: a")
    assert b"Sec-WebSocket-Protocol" not in hs.accept(subprotocol=None)
    assert hs.subprotocol is None


def test_4_2_2_subprotocol_not_offered_is_refused() -> None:
    hs = received(ServerHandshake(), "Sec-WebSocket-Protocol: a")
    with pytest.raises(ValueError):
        hs.accept(subprotocol="b")


def test_4_2_2_accept_twice_or_early_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        ServerHandshake().accept()
    hs = received(ServerHandshake())
    hs.accept()
    with pytest.raises(RuntimeError):
        hs.accept()


def test_4_2_2_extensions_negotiated_at_accept() -> None:
    hs = received(
        ServerHandshake(extensions=[ServerPerMessageDeflate()]),
        "Sec-WebSocket-Extensions: x-unknown, permessage-deflate; client_max_window_bits=12",
    )
    data = hs.accept()
    assert b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=12\r\n" in data
    (ext,) = hs.extensions
    assert isinstance(ext, PerMessageDeflate) and ext.is_server and ext.client_max_window_bits == 12


def test_4_2_2_no_extension_header_when_nothing_negotiated() -> None:
    hs = received(ServerHandshake(extensions=[ServerPerMessageDeflate()]), "Sec-WebSocket-Extensions: x-unknown")
    assert b"Sec-WebSocket-Extensions" not in hs.accept()
    assert hs.extensions == []


@pytest.mark.parametrize(
    ("status", "headers", "body", "expected"),
    [
        (
            403,
            (),
            b"",
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ),
        (
            426,
            (("Sec-WebSocket-Version", "13"),),
            b"upgrade",
            b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nContent-Length: 7\r\n"
            b"Connection: close\r\n\r\nupgrade",
        ),
        (
            200,
            (("Content-Length", "99"), ("Connection", "keep-alive")),
            b"ok",
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
        ),
        (599, (), b"", b"HTTP/1.1 599 \r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        (
            # RFC 9110 section 7.8: a sender of Upgrade MUST also send the "upgrade" connection option.
            426,
            (("Upgrade", "websocket"),),
            b"",
            b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nContent-Length: 0\r\n"
            b"Connection: Upgrade, close\r\n\r\n",
        ),
    ],
)
def test_4_2_2_reject_builds_any_response(status: int, headers: tuple, body: bytes, expected: bytes) -> None:
    hs = received(ServerHandshake())
    assert hs.reject(status, headers, body) == expected
    assert hs.response is not None and hs.response.status_code == status and hs.response.body == body


@pytest.mark.parametrize("status", [204, 304])
def test_4_2_2_reject_sends_no_content_where_there_can_be_none(status: int) -> None:
    """RFC 9110 sections 15.3.5 and 15.4.5: a body after a 204 or 304 would be read as the next answer."""
    hs = received(ServerHandshake())
    data = hs.reject(status, (("X-Why", "test"),), b"abc")
    assert data.endswith(b"\r\n\r\n") and b"abc" not in data
    assert hs.response is not None and hs.response.body == b""


@pytest.mark.parametrize("status", [99, 100, 101, 103, 199, 600])
def test_4_2_2_reject_refuses_invalid_status(status: int) -> None:
    with pytest.raises(ValueError):
        ServerHandshake().reject(status)


def test_4_2_2_rejection_status_feeds_reject() -> None:
    hs = ServerHandshake()
    with pytest.raises(HandshakeRejected) as info:
        hs.receive_data(request_bytes(start="PUT /chat HTTP/1.1"))
    data = hs.reject(info.value.status, info.value.headers)
    assert data.startswith(b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\n")


# --------------------------------------------------------------------------- both sides together


@pytest.mark.parametrize(
    ("client_kwargs", "server_kwargs", "subprotocol", "n_extensions"),
    [
        ({}, {}, None, 0),
        ({"subprotocols": ["a", "b"]}, {"subprotocols": ["b"]}, "b", 0),
        ({"extensions": [ClientPerMessageDeflate()]}, {"extensions": [ServerPerMessageDeflate()]}, None, 1),
        ({"extensions": [ClientPerMessageDeflate()]}, {}, None, 0),
        ({}, {"extensions": [ServerPerMessageDeflate()]}, None, 0),
        (
            {
                "extensions": [ClientPerMessageDeflate(server_max_window_bits=10, client_no_context_takeover=True)],
                "subprotocols": ["y", "x"],
            },
            {"extensions": [ServerPerMessageDeflate(client_max_window_bits=9)], "subprotocols": ["x"]},
            "x",
            1,
        ),
    ],
)
def test_4_client_and_server_agree(client_kwargs: dict, server_kwargs: dict, subprotocol, n_extensions: int) -> None:
    c = ClientHandshake("h", **client_kwargs)
    s = ServerHandshake(**server_kwargs)
    assert s.receive_data(c.request_bytes()) == c.request
    response = c.receive_data(s.accept())
    assert response == s.response
    assert c.subprotocol == s.subprotocol == subprotocol
    assert len(c.extensions) == len(s.extensions) == n_extensions
    for ce, se in zip(c.extensions, s.extensions, strict=True):
        assert ce.response_params() == se.response_params()


@pytest.mark.parametrize(
    "host", ["127.0.0.1:8765", "[::1]:8765", "[fe80::1%25eth0]", "example.com:", "xn--bcher-kva.example", "a_b.local"]
)
def test_4_2_1_a_valid_host_is_accepted(host: str) -> None:
    """uri-host [":" port] (RFC 9112 section 3.2): IP literals, IPv4, reg-names (any unreserved character)."""
    assert ServerHandshake().receive_data(request_bytes(f"Host: {host}", drop=("Host",))) is not None


def test_4_2_1_a_subprotocol_list_with_empty_elements_is_accepted() -> None:
    """RFC 9110 section 5.6.1.2: empty list elements are ignored, as long as one token is offered."""
    hs = received(ServerHandshake(), "Sec-WebSocket-Protocol: chat, , v2,")
    assert hs.offered_subprotocols == ["chat", "v2"]
