"""Moving from websockets is a rename: its server hooks, ``connection.respond()``, ``basic_auth`` and its
header look-ups work unchanged on wscodec's asyncio and threaded servers.

Each hook here is written as websockets' documentation writes it and is run, the same function object, on
websockets' own server and on wscodec's, with the answers compared over loopback.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http
import http.client
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import websockets.asyncio.client
import websockets.asyncio.server
import websockets.exceptions
import websockets.sync.client
import websockets.sync.server
from test_sync import silent_peer
from websockets.datastructures import Headers as WsHeaders
from websockets.http11 import Response as WsResponse

import wscodec.asyncio
import wscodec.sync
from wscodec import InvalidStatus, MultipleValuesError
from wscodec.basic_auth import BasicAuth, parse_authorization_basic
from wscodec.errors import Close
from wscodec.events import Headers, Request, Response
from wscodec.server_hooks import as_response, takes_connection

pytestmark = pytest.mark.timeout(60)


# --------------------------------------------------------------------------- hooks as websockets writes them


async def process_request(connection: Any, request: Any) -> Any:
    if request.path == "/healthz":
        return connection.respond(http.HTTPStatus.OK, "OK\n")
    if request.headers.get("X-Token") != "secret":
        return connection.respond(http.HTTPStatus.FORBIDDEN, "Forbidden\n")
    return None


def sync_process_request(connection: Any, request: Any) -> Any:
    if request.path == "/healthz":
        return connection.respond(http.HTTPStatus.OK, "OK\n")
    if "X-Token" not in request.headers or request.headers["X-Token"] != "secret":
        return connection.respond(http.HTTPStatus.FORBIDDEN, "Forbidden\n")
    return None


def select_subprotocol(connection: Any, subprotocols: Any) -> Any:
    return "chat.v2" if "chat.v2" in subprotocols else None


async def echo(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


def sync_echo(ws: Any) -> None:
    for message in ws:
        ws.send(message)


def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """A plain HTTP GET (a health check), as a load balancer sends it."""
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        client.request("GET", path, headers=headers or {})
        response = client.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        client.close()


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# --------------------------------------------------------------------------- asyncio


@contextlib.asynccontextmanager
async def both_servers(handler: Any, **hooks: Any) -> Any:
    """websockets' server and wscodec's, each with the same hooks; yields their ports."""
    async with (
        websockets.asyncio.server.serve(handler, "127.0.0.1", 0, **hooks) as theirs,
        wscodec.asyncio.serve(handler, "127.0.0.1", 0, **hooks) as ours,
    ):
        yield {"websockets": theirs.sockets[0].getsockname()[1], "wscodec": ours.port}


async def test_a_websockets_process_request_and_select_subprotocol_run_unchanged() -> None:
    async with both_servers(
        echo,
        process_request=process_request,
        select_subprotocol=select_subprotocol,
        subprotocols=["chat.v1", "chat.v2"],
    ) as ports:
        answers = {}
        for name, port in ports.items():
            health = await asyncio.to_thread(http_get, port, "/healthz")
            forbidden = await asyncio.to_thread(http_get, port, "/", {"Upgrade": "websocket"})
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                async with websockets.asyncio.client.connect(f"ws://127.0.0.1:{port}/"):
                    pass
            async with wscodec.asyncio.connect(
                f"ws://127.0.0.1:{port}/", additional_headers={"X-Token": "secret"}, subprotocols=["chat.v2"]
            ) as ws:
                await ws.send("hello")
                echoed = await ws.recv()
                subprotocol = ws.subprotocol
            answers[name] = (
                health[0],
                health[1]["content-type"],
                health[2],
                forbidden[0],
                forbidden[2],
                refused.value.response.status_code,
                echoed,
                subprotocol,
            )
        assert answers["wscodec"] == answers["websockets"]
        assert answers["wscodec"] == (
            200,
            "text/plain; charset=utf-8",
            b"OK\n",
            403,
            b"Forbidden\n",
            403,
            "hello",
            "chat.v2",
        )


async def test_the_short_hook_forms_still_work() -> None:
    seen: list[Any] = []

    def one_argument(request: Request) -> Any:
        seen.append(request.path)
        return (404, {"X-Why": "short form"}, "no") if request.path == "/nothing" else None

    async with wscodec.asyncio.serve(
        echo,
        "127.0.0.1",
        0,
        process_request=one_argument,
        select_subprotocol=lambda offered: offered[-1],
        subprotocols=["a", "b"],
    ) as srv:
        status, headers, body = await asyncio.to_thread(http_get, srv.port, "/nothing")
        assert (status, headers["x-why"], body) == (404, "short form", b"no")
        async with wscodec.asyncio.connect(f"ws://127.0.0.1:{srv.port}/x", subprotocols=["a", "b"]) as ws:
            assert ws.subprotocol == "b"
    assert seen == ["/nothing", "/x"]


async def test_process_request_may_return_websockets_own_response() -> None:
    def teapot(connection: Any, request: Any) -> WsResponse:
        return WsResponse(418, "I'm a teapot", WsHeaders([("X-A", "1"), ("X-A", "2")]), b"tea\n")

    async with wscodec.asyncio.serve(echo, "127.0.0.1", 0, process_request=teapot) as server:
        client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        await asyncio.to_thread(client.request, "GET", "/")
        response = await asyncio.to_thread(client.getresponse)
        assert response.status == 418
        assert response.msg.get_all("X-A") == ["1", "2"]  # both fields, in order
        assert await asyncio.to_thread(response.read) == b"tea\n"
        client.close()


async def test_basic_auth_lets_in_valid_users_and_challenges_the_rest() -> None:
    seen: list[str | None] = []

    async def who(ws: wscodec.asyncio.ServerWebSocket) -> None:
        seen.append(ws.username)
        await ws.send(f"hello {ws.username}")

    auth = wscodec.asyncio.basic_auth(realm="chat", credentials=[("alice", "s3cret"), ("bob", "pässword")])
    async with wscodec.asyncio.serve(who, "127.0.0.1", 0, process_request=auth) as server:
        port = server.port
        missing = await asyncio.to_thread(http_get, port, "/")
        wrong = await asyncio.to_thread(http_get, port, "/", basic("alice", "guess"))
        unknown = await asyncio.to_thread(http_get, port, "/", basic("carol", "s3cret"))
        garbage = await asyncio.to_thread(http_get, port, "/", {"Authorization": "Basic !!!"})
        bearer = await asyncio.to_thread(http_get, port, "/", {"Authorization": "Bearer abc"})
        for status, headers, _body in (missing, wrong, unknown, garbage, bearer):
            assert status == 401
            assert headers["www-authenticate"] == 'Basic realm="chat", charset="UTF-8"'
        assert (missing[2], wrong[2], unknown[2], garbage[2], bearer[2]) == (
            b"Missing credentials\n",
            b"Invalid credentials\n",
            b"Invalid credentials\n",
            b"Unsupported credentials\n",
            b"Unsupported credentials\n",
        )
        # websockets' client sends the URI's user information as Basic credentials; so does ours.
        async with websockets.asyncio.client.connect(f"ws://alice:s3cret@127.0.0.1:{port}/") as theirs:
            assert await theirs.recv() == "hello alice"
        async with wscodec.asyncio.connect(f"ws://bob:p%C3%A4ssword@127.0.0.1:{port}/") as ours:
            assert await ours.recv() == "hello bob"
        with pytest.raises(InvalidStatus) as refused:
            async with wscodec.asyncio.connect(f"ws://bob:wrong@127.0.0.1:{port}/"):
                pass
        assert refused.value.status_code == 401
    assert seen == ["alice", "bob"]


async def test_basic_auth_with_an_async_check_and_a_duplicated_header() -> None:
    checked: list[tuple[str, str]] = []

    async def check(username: str, password: str) -> bool:
        await asyncio.sleep(0)
        checked.append((username, password))
        return password == "ok"

    async def who(ws: wscodec.asyncio.ServerWebSocket) -> None:
        await ws.send(ws.username or "")

    auth = wscodec.asyncio.basic_auth(check_credentials=check)
    async with wscodec.asyncio.serve(who, "127.0.0.1", 0, process_request=auth) as server:
        async with wscodec.asyncio.connect(f"ws://127.0.0.1:{server.port}/", additional_headers=basic("u", "ok")) as ws:
            assert await ws.recv() == "u"
        twice = [*basic("u", "ok").items(), *basic("v", "no").items()]
        with pytest.raises(InvalidStatus) as refused:
            async with wscodec.asyncio.connect(f"ws://127.0.0.1:{server.port}/", additional_headers=twice):
                pass
        assert refused.value.status_code == 401 and refused.value.body == b"Unsupported credentials\n"
    assert checked == [("u", "ok")]  # the ambiguous request never reached the check


def test_basic_auth_refuses_bad_arguments() -> None:
    for make in (wscodec.asyncio.basic_auth, wscodec.sync.basic_auth):
        with pytest.raises(ValueError, match="either credentials or check_credentials"):
            make()
        with pytest.raises(ValueError, match="either credentials or check_credentials"):
            make(credentials=("a", "b"), check_credentials=lambda u, p: True)
        with pytest.raises(TypeError, match="credentials must be"):
            make(credentials=[("a", "b"), ("c",)])  # type: ignore[list-item]
        with pytest.raises(TypeError, match="credentials must be"):
            make(credentials=[])
        with pytest.raises(ValueError, match="realm"):
            make(realm='a"b', credentials=("a", "b"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Basic YWxpY2U6czNjcmV0", ("alice", "s3cret")),
        ("basic YWxpY2U6czNjcmV0", ("alice", "s3cret")),  # the scheme is case-insensitive (RFC 7617)
        ("Basic YTpiOmM=", ("a", "b:c")),  # the password may hold colons
        ("Basic Ojo=", ("", ":")),
        ("Basic cMOkOg==", ("pä", "")),  # UTF-8
        ("Basic", ValueError),
        ("Bearer YWxpY2U6czNjcmV0", ValueError),
        ("Basic YWxpY2U=", ValueError),  # no colon
        ("Basic YWxp Y2U6", ValueError),
        ("Basic *&^%", ValueError),
        ("Basic /w==", ValueError),  # not UTF-8
    ],
)
def test_parse_authorization_basic(value: str, expected: Any) -> None:
    if expected is ValueError:
        with pytest.raises(ValueError):
            parse_authorization_basic(value)
    else:
        assert parse_authorization_basic(value) == expected


def test_credentials_check_needs_the_right_user_and_password() -> None:
    auth = BasicAuth(credentials=("alice", "s3cret"))
    assert auth.check("alice", "s3cret") is True
    assert auth.check("alice", "s3cre") is False
    assert auth.check("bob", "s3cret") is False
    assert auth.check("", "") is False


async def test_recv_decode_subprotocol_and_state_as_in_websockets() -> None:
    async def sender(ws: Any) -> None:
        for message in ("text é", b"bin \xc3\xa9", "again", b"raw", b"\xff"):
            await ws.send(message)
        await ws.wait_closed()

    async with wscodec.asyncio.serve(sender, "127.0.0.1", 0, subprotocols=["p"]) as server:
        async with wscodec.asyncio.connect(f"ws://127.0.0.1:{server.port}/", subprotocols=["p"]) as ws:
            assert ws.subprotocol == "p" and ws.state is wscodec.State.OPEN
            assert await ws.recv(decode=False) == "text é".encode()
            assert await ws.recv(decode=True) == "bin é"
            assert await ws.recv(decode=True) == "again"
            assert await ws.recv(decode=False) == b"raw"
            with pytest.raises(UnicodeDecodeError):
                await ws.recv(decode=True)
        assert ws.state is wscodec.State.CLOSED
        with pytest.raises(wscodec.InvalidStatus) as info:  # no subprotocol offered: 400, as from websockets
            await wscodec.asyncio.connect(f"ws://127.0.0.1:{server.port}/")
        assert info.value.status_code == 400


def test_sync_recv_decode_and_id() -> None:
    def sender(ws: wscodec.sync.WebSocket) -> None:
        ws.send("text é")
        ws.send(b"bin \xc3\xa9")
        ws.recv(timeout=10)

    server = wscodec.sync.serve(sender, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with wscodec.sync.connect(f"ws://127.0.0.1:{server.socket.getsockname()[1]}/") as ws:
            assert ws.recv(timeout=10, decode=False) == "text é".encode()
            assert ws.recv(timeout=10, decode=True) == "bin é"
            assert ws.id.version == 4
            ws.send("done")
    finally:
        server.shutdown()
        thread.join(10)


# --------------------------------------------------------------------------- Headers


def test_headers_answer_websockets_look_ups_and_stay_a_tuple() -> None:
    request = Request("GET", "/", [("Host", "a"), ("Cookie", "x=1"), ("cookie", "y=2")])
    headers = request.headers
    assert type(headers) is Headers
    assert headers["HOST"] == "a" and headers.get("host") == "a" and headers.get("Origin") is None
    assert headers.get("Origin", "none") == "none"
    assert headers.get_all("COOKIE") == ["x=1", "y=2"] and headers.get_all("Origin") == []
    with pytest.raises(MultipleValuesError):
        headers["Cookie"]
    with pytest.raises(MultipleValuesError):
        headers.get("Cookie")
    with pytest.raises(KeyError):
        headers["Origin"]
    assert "host" in headers and "Origin" not in headers
    assert ("Host", "a") in headers and ("Host", "b") not in headers
    assert headers[0] == ("Host", "a") and headers[-1] == ("cookie", "y=2") and headers[1:2] == (("Cookie", "x=1"),)
    assert list(headers) == list(headers.raw_items()) == [("Host", "a"), ("Cookie", "x=1"), ("cookie", "y=2")]
    assert headers == (("Host", "a"), ("Cookie", "x=1"), ("cookie", "y=2"))
    assert request == Request("GET", "/", (("Host", "a"), ("Cookie", "x=1"), ("cookie", "y=2")))
    assert Response(200, "OK", {"A": "1"}).headers == (("A", "1"),)


def test_as_response_takes_every_form_a_hook_returns() -> None:
    ours = Response(404, "Not Found", [("A", "1")], b"x")
    assert as_response(ours) is ours
    assert as_response((http.HTTPStatus.NOT_FOUND, [("A", "1")], "x")) == Response(404, "Not Found", [("A", "1")], b"x")
    assert as_response((404, {"A": "1"}, b"x")) == Response(404, "Not Found", [("A", "1")], b"x")
    theirs = WsResponse(404, "Not Found", WsHeaders([("A", "1"), ("a", "2")]), b"x")
    assert as_response(theirs) == Response(404, "Not Found", [("A", "1"), ("a", "2")], b"x")
    with pytest.raises(ValueError):
        as_response((99, [], b""))
    with pytest.raises(ValueError):  # a 1xx other than 101 is interim, never an answer
        as_response((103, [], b""))
    assert as_response((101, [], b""), upgrade=True).status_code == 101  # (process_response's, the 101 it got)
    with pytest.raises(ValueError):  # process_request answers instead of the upgrade
        as_response((101, [], b""))


def test_takes_connection_reads_the_signature() -> None:
    def two(connection: Any, request: Any) -> None: ...
    def one(request: Any) -> None: ...
    def one_with_option(request: Any, extra: Any = None) -> None: ...
    def star(*args: Any) -> None: ...

    class Hooks:
        def method(self, connection: Any, request: Any) -> None: ...

    assert [takes_connection(f) for f in (two, one, one_with_option, star, Hooks().method, len)] == [
        True,
        False,
        False,
        True,
        True,
        False,
    ]


# --------------------------------------------------------------------------- threaded


@contextlib.contextmanager
def sync_servers(handler: Any, **hooks: Any) -> Iterator[dict[str, int]]:
    theirs = websockets.sync.server.serve(handler, "127.0.0.1", 0, **hooks)
    ours = wscodec.sync.serve(handler, "127.0.0.1", 0, **hooks)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (theirs, ours)]
    for thread in threads:
        thread.start()
    try:
        yield {"websockets": theirs.socket.getsockname()[1], "wscodec": ours.socket.getsockname()[1]}
    finally:
        theirs.shutdown()
        ours.shutdown()
        for thread in threads:
            thread.join(10)
            assert not thread.is_alive()


def test_sync_hooks_written_for_websockets_run_unchanged() -> None:
    with sync_servers(
        sync_echo,
        process_request=sync_process_request,
        select_subprotocol=select_subprotocol,
        subprotocols=["chat.v1", "chat.v2"],
    ) as ports:
        answers = {}
        for name, port in ports.items():
            health = http_get(port, "/healthz")
            forbidden = http_get(port, "/")
            with wscodec.sync.connect(
                f"ws://127.0.0.1:{port}/", additional_headers={"X-Token": "secret"}, subprotocols=["chat.v1", "chat.v2"]
            ) as ws:
                ws.send("hi")
                answers[name] = (health[0], health[2], forbidden[0], forbidden[2], ws.recv(timeout=10), ws.subprotocol)
        assert answers["wscodec"] == answers["websockets"] == (200, b"OK\n", 403, b"Forbidden\n", "hi", "chat.v2")


def test_sync_basic_auth() -> None:
    def who(ws: wscodec.sync.WebSocket) -> None:
        ws.send(f"hello {ws.username}")

    responses: list[tuple[Any, str | None, int]] = []

    def process_response(connection: Any, request: Any, response: Any) -> None:
        responses.append((type(connection), connection.username, response.status_code))

    server = wscodec.sync.serve(
        who,
        "127.0.0.1",
        0,
        process_response=process_response,
        process_request=wscodec.sync.basic_auth(
            realm="r", check_credentials=lambda username, password: (username, password) == ("alice", "s3cret")
        ),
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.socket.getsockname()[1]
        status, headers, body = http_get(port, "/", basic("alice", "nope"))
        assert (status, body) == (401, b"Invalid credentials\n")
        assert headers["www-authenticate"] == 'Basic realm="r", charset="UTF-8"'
        with websockets.sync.client.connect(f"ws://alice:s3cret@127.0.0.1:{port}/") as theirs:
            assert theirs.recv(timeout=10) == "hello alice"
        with wscodec.sync.connect(f"ws://alice:s3cret@127.0.0.1:{port}/") as ours:
            assert ours.recv(timeout=10) == "hello alice"
    finally:
        server.shutdown()
        thread.join(10)
    assert not thread.is_alive()
    pending = wscodec.sync.PendingConnection
    assert responses == [(pending, None, 401), (pending, "alice", 101), (pending, "alice", 101)]


def test_an_invalid_answer_from_process_request_is_a_500_on_both_servers(caplog: pytest.LogCaptureFixture) -> None:
    def invalid(connection: Any, request: Any) -> Any:
        return (99, [], b"no such status")

    async def run_asyncio() -> int:
        async with wscodec.asyncio.serve(echo, "127.0.0.1", 0, process_request=invalid) as server:
            return (await asyncio.to_thread(http_get, server.port, "/"))[0]

    assert asyncio.run(run_asyncio()) == 500
    server = wscodec.sync.serve(sync_echo, "127.0.0.1", 0, process_request=invalid)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert http_get(server.socket.getsockname()[1], "/")[0] == 500
    finally:
        server.shutdown()
        thread.join(10)
    assert sum("invalid response from process_request" in r.getMessage() for r in caplog.records) == 2


def raw_answer(port: int, path: str) -> bytes:
    """The bytes a server answers a plain GET with, up to its end of TCP (the answer says Connection: close)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), 10) as sock:
        sock.settimeout(10)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    return data


def test_a_hook_answer_is_framed_as_the_servers_own_refusals() -> None:
    """A 204 has no Content-Length (RFC 9110 section 8.6), and an empty body keeps the Content-Length the hook
    gives (the answer to HEAD carries GET's length): the same rules as the handshake's own refusals."""

    def hook(connection: Any, request: Any) -> Any:
        if request.path == "/empty":
            return (204, [("X-Seen", "1")], b"")
        return (200, [("Content-Length", "42")], b"")

    def check(port: int) -> None:
        empty = raw_answer(port, "/empty")
        assert empty.startswith(b"HTTP/1.1 204 No Content\r\n"), empty
        assert b"x-seen: 1" in empty.lower() and b"content-length" not in empty.lower(), empty
        head = raw_answer(port, "/head")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n"), head
        assert head.lower().count(b"content-length") == 1 and b"Content-Length: 42\r\n" in head, head

    async def run_asyncio() -> None:
        async with wscodec.asyncio.serve(echo, "127.0.0.1", 0, process_request=hook) as server:
            await asyncio.to_thread(check, server.port)

    asyncio.run(run_asyncio())
    server = wscodec.sync.serve(sync_echo, "127.0.0.1", 0, process_request=hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        check(server.socket.getsockname()[1])
    finally:
        server.shutdown()
        thread.join(10)


# --------------------------------------------------------------------------- ConnectionClosed.rcvd / .sent


def close_frames(exc: BaseException) -> tuple[Any, Any, Any]:
    """What websockets' ConnectionClosed tells of the Close frames, as plain tuples."""
    assert isinstance(exc, (wscodec.ConnectionClosed, websockets.exceptions.ConnectionClosed)), exc
    rcvd, sent = exc.rcvd, exc.sent  # type: ignore[union-attr]
    return (
        None if rcvd is None else (int(rcvd.code), rcvd.reason),
        None if sent is None else (int(sent.code), sent.reason),
        exc.rcvd_then_sent,  # type: ignore[union-attr]
    )


async def test_connection_closed_reports_the_close_frames_as_websockets_does() -> None:
    """The same clients (websockets' and wscodec's) against the same servers (websockets' and wscodec's): a
    server that closes with 1001, a client that closes with 4000, a server that drops TCP. Every exception
    reports the same rcvd, sent and rcvd_then_sent as websockets' own."""
    dropped: list[Any] = []

    async def handler(ws: Any) -> None:
        path = ws.request.path
        if path == "/server-closes":
            await ws.close(1001, "going")
        elif path == "/drop":
            transport = getattr(ws, "transport", None) or ws._transport
            transport.abort()
        else:
            try:
                await ws.recv()
            except Exception as exc:  # the assertions look at it
                dropped.append(exc)

    seen: dict[tuple[str, str, str], Any] = {}
    async with both_servers(handler) as ports:
        for server, port in ports.items():
            for client, connect in (
                ("websockets", websockets.asyncio.client.connect),
                ("wscodec", wscodec.asyncio.connect),
            ):
                async with connect(f"ws://127.0.0.1:{port}/server-closes") as ws:
                    with pytest.raises((wscodec.ConnectionClosed, websockets.exceptions.ConnectionClosed)) as info:
                        await asyncio.wait_for(ws.recv(), 10)
                    seen[server, client, "server closes"] = close_frames(info.value)
                async with connect(f"ws://127.0.0.1:{port}/client-closes") as ws:
                    await asyncio.wait_for(ws.close(4000, "done"), 10)
                    with pytest.raises((wscodec.ConnectionClosed, websockets.exceptions.ConnectionClosed)) as info:
                        await ws.send("after")
                    seen[server, client, "client closes"] = close_frames(info.value)
                async with connect(f"ws://127.0.0.1:{port}/drop") as ws:
                    with pytest.raises((wscodec.ConnectionClosed, websockets.exceptions.ConnectionClosed)) as info:
                        await asyncio.wait_for(ws.recv(), 10)
                    seen[server, client, "drop"] = close_frames(info.value)
        for _ in range(100):
            if len(dropped) == 4:
                break
            await asyncio.sleep(0.05)
    assert seen["websockets", "websockets", "server closes"] == ((1001, "going"), (1001, "going"), True)
    assert seen["websockets", "websockets", "client closes"] == ((4000, "done"), (4000, "done"), False)
    assert seen["websockets", "websockets", "drop"] == (None, None, None)
    for (server, client, case), frames in seen.items():
        assert frames == seen["websockets", "websockets", case], (server, client, case)
    # the servers' side of "client closes": the handler's recv() saw the client's Close first
    assert len(dropped) == 4
    assert {close_frames(exc) for exc in dropped} == {((4000, "done"), (4000, "done"), True)}


def test_sync_connection_closed_reports_the_close_frames() -> None:
    got: list[Any] = []
    entered = threading.Event()

    def handler(ws: Any) -> None:
        entered.set()
        try:
            ws.recv(timeout=10)
        except Exception as exc:  # the assertions look at it
            got.append(exc)

    server = wscodec.sync.serve(handler, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with wscodec.sync.connect(f"ws://127.0.0.1:{server.socket.getsockname()[1]}/") as ws:
            # (a shutdown that comes before the server's thread reaches the handler skips it, by design)
            assert entered.wait(10)
            ws.close(4000, "done")
            with pytest.raises(wscodec.ConnectionClosed) as info:
                ws.send("after")
        assert close_frames(info.value) == ((4000, "done"), (4000, "done"), False)
    finally:
        server.shutdown()
        thread.join(10)
    assert len(got) == 1 and close_frames(got[0]) == ((4000, "done"), (4000, "done"), True)


def test_close_frames_survive_pickling_and_each_raise_is_a_new_exception() -> None:
    import pickle

    from wscodec import ConnectionClosedOK
    from wscodec.errors import Close

    exc = wscodec.ConnectionClosed(1000, "bye", rcvd=Close(1000, "bye"), sent=Close(1000, "bye"), rcvd_then_sent=True)
    assert isinstance(exc, ConnectionClosedOK)
    for copy in (pickle.loads(pickle.dumps(exc)), exc._renewed()):
        assert copy is not exc and type(copy) is ConnectionClosedOK
        assert close_frames(copy) == ((1000, "bye"), (1000, "bye"), True)
        assert (copy.code, copy.reason, copy.was_clean) == (1000, "bye", True)
    # rcvd_then_sent means something only with both frames
    assert wscodec.ConnectionClosed(1006, rcvd=Close(1000, ""), rcvd_then_sent=True).rcvd_then_sent is None


async def test_connection_request_is_set_while_process_request_runs() -> None:
    """websockets' process_request may read connection.request instead of its argument; so may wscodec's,
    on a request it lets through and on one it answers itself."""
    seen: list[tuple[int, bool, str]] = []

    def hook(connection: Any, request: Any) -> Any:
        seen.append((connection.local_address[1], connection.request is request, connection.request.path))
        if request.path == "/refused":
            return connection.respond(http.HTTPStatus.FORBIDDEN, "no\n")
        return None

    async with both_servers(echo, process_request=hook) as ports:
        for port in ports.values():
            async with wscodec.asyncio.connect(f"ws://127.0.0.1:{port}/let-in") as ws:
                await ws.send("hi")
                assert await asyncio.wait_for(ws.recv(), 10) == "hi"
            with pytest.raises(InvalidStatus):
                await wscodec.asyncio.connect(f"ws://127.0.0.1:{port}/refused")
    for port in ports.values():
        assert [(same, path) for p, same, path in seen if p == port] == [(True, "/let-in"), (True, "/refused")]


# --------------------------------------------------------------------------- options and calls ported code uses


def test_sync_recv_streaming_a_mapping_and_a_failed_fragmented_send_as_in_websockets() -> None:
    """websockets' sync code: ``recv_streaming()`` yields the message (here in one piece); ``send(dict)``
    is a TypeError, not its keys sent; a fragmented send that fails part-way fails the connection (1011)
    instead of leaving every later send refused."""
    server = wscodec.sync.serve(lambda ws: [ws.send(m) for m in ws], "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"ws://127.0.0.1:{server.socket.getsockname()[1]}/"
        with wscodec.sync.connect(url) as ws:
            ws.send("streamed")
            assert list(ws.recv_streaming()) == ["streamed"]
            with pytest.raises(TypeError, match="mapping"):
                ws.send({"a": 1})
            with pytest.raises(TypeError):
                ws.send([5, b"x"])  # refused before anything is sent: the connection stays usable
            ws.send("still open")
            assert ws.recv(timeout=10) == "still open"
            with pytest.raises(TypeError):
                ws.send(["a", b"b"])  # a str fragment, then bytes: the message cannot be finished
            with pytest.raises(wscodec.ConnectionClosedError) as info:
                ws.send("after")
            assert info.value.code == 1011
            assert ws.close_code == 1011
    finally:
        server.shutdown()
        thread.join(10)


@pytest.mark.parametrize("api", ["asyncio", "sync"])
async def test_websockets_pairs_for_max_size_and_max_queue_and_a_clear_close_timeout_error(api: str) -> None:
    """websockets 14+ takes max_size and max_queue as (high, low) pairs: the high mark is the bound.
    close_timeout=None (websockets: no bound) is refused at once, with a clear error, on every entry point."""
    async with wscodec.asyncio.serve(echo, "127.0.0.1", 0, max_size=(2**20, 2**10), max_queue=(16, 4)) as server:
        url = f"ws://127.0.0.1:{server.port}/"
        if api == "asyncio":
            async with wscodec.asyncio.connect(url, max_size=(1000, None), max_queue=(8, 2)) as ws:
                await ws.send("x" * 999)
                assert await ws.recv() == "x" * 999
                assert ws.max_queue == 8 and ws.connection.max_message_size == 1000
            with pytest.raises(ValueError, match="close_timeout=None is not supported"):
                wscodec.asyncio.connect(url, close_timeout=None)  # type: ignore[arg-type]
        else:

            def sync_side() -> None:
                with wscodec.sync.connect(url, max_size=(1000, None), max_queue=(8, 2)) as ws:
                    ws.send("x" * 999)
                    assert ws.recv(timeout=10) == "x" * 999
                    assert ws.max_queue == 8 and ws.connection.max_message_size == 1000
                with pytest.raises(ValueError, match="close_timeout=None is not supported"):
                    wscodec.sync.connect(url, close_timeout=None)  # type: ignore[arg-type]
                with pytest.raises(ValueError, match="close_timeout=None is not supported"):
                    wscodec.sync.serve(echo, "127.0.0.1", 0, close_timeout=None)  # type: ignore[arg-type]

            await asyncio.to_thread(sync_side)
    with pytest.raises(ValueError, match="close_timeout=None is not supported"):
        wscodec.asyncio.Server(echo, close_timeout=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="a number, None, or a"):
        wscodec.asyncio.Server(echo, max_queue=(1, 2, 3))  # type: ignore[arg-type]


async def test_websockets_pair_for_write_limit_sets_both_water_marks() -> None:
    """websockets takes write_limit as a number or a (high, low) pair; both reach the transport, on the
    server's connections and the client's. A pair that cannot be is refused where it is given."""
    seen: list[tuple[int, int]] = []

    async def handler(ws: wscodec.asyncio.WebSocket) -> None:
        assert ws.transport is not None
        seen.append(ws.transport.get_write_buffer_limits())
        await echo(ws)

    async with wscodec.asyncio.serve(handler, "127.0.0.1", 0, write_limit=(65536, 1000)) as server:
        url = f"ws://127.0.0.1:{server.port}/"
        async with wscodec.asyncio.connect(url, write_limit=(8192, None)) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            assert ws.transport is not None
            assert ws.transport.get_write_buffer_limits() == (8192 // 4, 8192)
            assert ws.write_limit == 8192
        async with wscodec.asyncio.connect(url, write_limit=4096) as ws:
            assert ws.transport is not None
            assert ws.transport.get_write_buffer_limits() == (1024, 4096)
    assert seen[0] == (1000, 65536)
    for bad in [(10, 20), (1, 2, 3), -1, (None, 1), "big"]:
        with pytest.raises(ValueError, match="write_limit"):
            wscodec.asyncio.connect(url, write_limit=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="write_limit"):
            wscodec.asyncio.Server(echo, write_limit=bad)  # type: ignore[arg-type]


def test_sync_shutdown_with_a_code_fileno_and_ping_ack_on_close_as_in_websockets() -> None:
    """websockets' threaded server: ``shutdown(code=, reason=)`` (1012 tells clients to come back) and
    ``fileno()``; its connection's ``ping(ack_on_close=)``: False leaves the event unset at the end."""
    entered = threading.Event()
    handlers: list[wscodec.sync.WebSocket] = []

    def hold(ws: wscodec.sync.WebSocket) -> None:
        handlers.append(ws)
        entered.set()
        for _ in ws:
            pass

    server = wscodec.sync.serve(hold, "127.0.0.1", 0)
    assert server.fileno() == server.socket.fileno() and server.fileno() >= 0
    with pytest.raises(ValueError, match="invalid close code"):
        server.shutdown(code=1005)  # refused before anything stops
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with wscodec.sync.connect(f"ws://127.0.0.1:{server.port}/") as client:
        assert entered.wait(10)
        (ws,) = handlers
        acked = ws.ping(ack_on_close=True)
        unacked = ws.ping(b"second", ack_on_close=False)
        client_side = client.ping(b"mine")  # the default: set when the connection ends too
        assert acked.wait(10) and unacked.wait(10) and client_side.wait(10)  # the peer answers
        server.shutdown(code=1012, reason="service restart")
        thread.join(10)
        with pytest.raises(wscodec.ConnectionClosed) as info:
            client.recv(timeout=10)
        assert (info.value.code, info.value.reason) == (1012, "service restart")


def test_sync_ping_ack_on_close_false_is_left_unset_when_the_connection_ends() -> None:
    """No Pong ever comes (the peer never reads): the default event is set when the connection ends,
    the one asked with ack_on_close=False is not."""
    with silent_peer() as port:
        ws = wscodec.sync.connect(f"ws://127.0.0.1:{port}/", ping_interval=None, close_timeout=0.5)
        acked = ws.ping(b"a")
        unacked = ws.ping(b"b", ack_on_close=False)
        ws.close()  # no answer: given up after close_timeout
        assert acked.wait(10)
        assert not unacked.is_set()


async def test_asyncio_server_close_with_a_code_as_in_websockets() -> None:
    """``Server.close(close_connections=True, code=, reason=)``: the open connections get that Close."""
    async with wscodec.asyncio.serve(echo, "127.0.0.1", 0) as server:
        with pytest.raises(ValueError, match="invalid close code"):
            server.close(code=999)
        async with wscodec.asyncio.connect(f"ws://127.0.0.1:{server.port}/") as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            server.close(code=1012, reason="service restart")
            await asyncio.wait_for(ws.wait_closed(), 10)
            assert (ws.close_code, ws.close_reason) == (1012, "service restart")


async def test_a_shutdown_code_other_than_1001_carries_no_reason_unless_given() -> None:
    """As websockets: ``close(code=1012)`` sends no reason; 1001 keeps "going away"; a reason given is sent."""
    for code, reason, expected in [(1012, None, ""), (1001, None, "going away"), (4000, "bye", "bye")]:
        async with (
            wscodec.asyncio.serve(echo, "127.0.0.1", 0) as server,
            wscodec.asyncio.connect(f"ws://127.0.0.1:{server.port}/") as ws,
        ):
            server.close(code=code, reason=reason)
            await asyncio.wait_for(ws.wait_closed(), 10)
            assert (ws.close_code, ws.close_reason) == (code, expected)

    def threaded() -> list[tuple[int | None, str | None]]:
        seen = []
        for code in (1012, 1001):
            entered = threading.Event()

            def hold(ws: wscodec.sync.WebSocket, entered: threading.Event = entered) -> None:
                entered.set()
                for _ in ws:
                    pass

            server = wscodec.sync.serve(hold, "127.0.0.1", 0)
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            with wscodec.sync.connect(f"ws://127.0.0.1:{server.port}/") as client:
                assert entered.wait(10)
                server.shutdown(code=code)
                thread.join(10)
                with pytest.raises(wscodec.ConnectionClosed) as info:
                    client.recv(timeout=10)
                seen.append((info.value.code, info.value.reason))
        return seen

    assert await asyncio.to_thread(threaded) == [(1012, ""), (1001, "going away")]


# --------------------------------------------------------------------------- which ConnectionClosed


@pytest.mark.parametrize("ours", [1011, 4000])
async def test_our_error_close_answered_with_1000_is_an_error_as_in_websockets(ours: int) -> None:
    """websockets' rule for ConnectionClosedOK: both Close frames say 1000, 1001 or nothing. A handler
    that closes with an error code, answered 1000 (aiohttp's client answers every Close so), sees its
    ``async for`` raise ConnectionClosedError (sent ``ours``, then received 1000), not end quietly."""
    import aiohttp

    outcome: list[Any] = []

    async def handler(ws: wscodec.asyncio.WebSocket) -> None:
        await ws.close(ours)
        try:
            async for _ in ws:
                pass
            outcome.append("ended quietly")
        except wscodec.ConnectionClosed as exc:
            outcome.append((type(exc), exc.sent, exc.rcvd))

    async with wscodec.asyncio.serve(handler, "127.0.0.1", 0) as server:
        async with aiohttp.ClientSession() as session, session.ws_connect(f"http://127.0.0.1:{server.port}/") as ws:
            async for _ in ws:
                pass
            assert ws.close_code == ours
        for _ in range(500):
            if outcome:
                break
            await asyncio.sleep(0.01)
    assert outcome == [(wscodec.ConnectionClosedError, Close(ours, ""), Close(1000, ""))]


def test_threaded_shutdown_with_1012_answered_with_1000_is_an_error_as_in_websockets() -> None:
    """The threaded server's ``shutdown(code=1012)`` against a client that answers 1000: the handler's
    iteration raises ConnectionClosedError, as websockets.sync's does."""
    import aiohttp

    outcome: list[Any] = []
    started = threading.Event()

    def handler(ws: wscodec.sync.WebSocket) -> None:
        started.set()
        try:
            for _ in ws:
                pass
            outcome.append("ended quietly")
        except wscodec.ConnectionClosed as exc:
            outcome.append(type(exc))

    server = wscodec.sync.serve(handler, "127.0.0.1", 0, ping_interval=None, close_timeout=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    async def client() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(f"http://127.0.0.1:{server.port}/") as ws:
            assert await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
            stopping = threading.Thread(target=server.shutdown, kwargs={"code": 1012})
            stopping.start()
            async for _ in ws:
                pass
            await asyncio.get_running_loop().run_in_executor(None, stopping.join, 20)

    try:
        asyncio.run(client())
        thread.join(10)
    finally:
        server.shutdown()
    assert outcome == [wscodec.ConnectionClosedError]
