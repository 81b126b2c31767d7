"""wscodec.asyncio client networking over loopback: proxies (pproxy as HTTP CONNECT and SOCKS5 proxy),
redirects (a plain asyncio HTTP server), credentials, identity headers, reconnection, Unix sockets and
sockets made by the caller. Error paths: refusing proxies, an unreachable proxy, redirect loops, too many
redirects, SOCKS without python-socks (import blocked in a subprocess).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from wscodec import (
    ConnectionClosed,
    InvalidProxy,
    InvalidStatus,
    InvalidURI,
    OpenTimeout,
    ProxyError,
    RedirectError,
    SecurityError,
    WebSocketError,
)
from wscodec.asyncio import Server, WebSocket, connect, create_websocket, serve, unix_connect, unix_serve
from wscodec.client_network import (
    DEFAULT_USER_AGENT,
    Backoff,
    RedirectPolicy,
    parse_uri,
    redirect_location,
    select_proxy,
)
from wscodec.events import Request
from wscodec.sync import connect as sync_connect
from wscodec.sync import serve as sync_serve

pytestmark = pytest.mark.timeout(90)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"pproxy exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError("pproxy did not start listening")


@contextlib.contextmanager
def pproxy(listen: str, *extra: str) -> Iterator[int]:
    """Start ``pproxy -l <scheme>://127.0.0.1:<free port>[#user:pass]`` and yield its port."""
    port = free_port()
    spec = listen.replace("PORT", str(port))
    # --auth 0: pproxy otherwise remembers an address that authenticated once and lets it in without.
    # pproxy installs uvloop when it can and then fails to find a loop with recent uvloop: keep it on asyncio's.
    launcher = "import sys; sys.modules['uvloop'] = None; from pproxy.server import main; main()"
    args = ["pproxy", "-l", spec, "--auth", "0", *extra]
    proc = subprocess.Popen(
        [sys.executable, "-c", launcher, *args[1:]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_listening(port, proc)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def proxy_port() -> Iterator[int]:
    with pproxy("http+socks5://127.0.0.1:PORT") as port:
        yield port


@pytest.fixture(scope="module")
def auth_proxy_port() -> Iterator[int]:
    with pproxy("http+socks5://127.0.0.1:PORT#alice:s3cret") as port:
        yield port


ENV_PROXY_SCHEMES = ("http", "https", "ws", "wss", "socks", "all", "no")


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for scheme in ENV_PROXY_SCHEMES:
        monkeypatch.delenv(f"{scheme}_proxy", raising=False)
        monkeypatch.delenv(f"{scheme.upper()}_PROXY", raising=False)


seen_requests: list[Request] = []


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


def recording(request: Request) -> None:
    seen_requests.append(request)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    seen_requests.clear()
    async with serve(echo, "127.0.0.1", 0, process_request=recording) as srv:
        yield srv


def url(server: Server, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


# --------------------------------------------------------------------------- proxies


def on_transports(ws: WebSocket, transport: str) -> bool:
    """Whether ``ws`` runs on the transports ``transport`` names (aiofastnet's, or the loop's own)."""
    return type(ws.transport).__module__.startswith("aiofastnet") == (transport == "aiofastnet")


@pytest.mark.parametrize("transport", ["loop", "aiofastnet"])
async def test_http_connect_proxy(server: Server, proxy_port: int, transport: str) -> None:
    async with connect(url(server), proxy=f"http://127.0.0.1:{proxy_port}", transport=transport) as ws:
        assert on_transports(ws, transport)
        await ws.send("through the proxy")
        assert await ws.recv() == "through the proxy"
        # The server saw the proxy's address, not ours directly: same host here, but a different socket.
        assert ws.remote_address[1] == proxy_port


@pytest.mark.parametrize("transport", ["loop", "aiofastnet"])
async def test_socks5_proxy(server: Server, proxy_port: int, transport: str) -> None:
    for scheme in ("socks5", "socks5h"):
        async with connect(url(server), proxy=f"{scheme}://127.0.0.1:{proxy_port}", transport=transport) as ws:
            assert on_transports(ws, transport)
            await ws.send(b"socks")
            assert await ws.recv() == b"socks"
            assert ws.remote_address[1] == proxy_port


async def test_proxy_credentials_from_the_url(server: Server, auth_proxy_port: int) -> None:
    async with connect(url(server), proxy=f"http://alice:s3cret@127.0.0.1:{auth_proxy_port}") as ws:
        await ws.send("authorized")
        assert await ws.recv() == "authorized"
    async with connect(url(server), proxy=f"socks5://alice:s3cret@127.0.0.1:{auth_proxy_port}") as ws:
        await ws.send("socks authorized")
        assert await ws.recv() == "socks authorized"


async def test_proxy_that_requires_authentication_raises_407(server: Server, auth_proxy_port: int) -> None:
    with pytest.raises(ProxyError, match="407") as info:
        await connect(url(server), proxy=f"http://127.0.0.1:{auth_proxy_port}")
    assert info.value.status_code == 407
    assert isinstance(info.value, WebSocketError)


async def test_socks_proxy_that_refuses_raises_proxy_error(server: Server, auth_proxy_port: int) -> None:
    with pytest.raises(ProxyError, match="SOCKS"):
        await connect(url(server), proxy=f"socks5://alice:wrong@127.0.0.1:{auth_proxy_port}")


async def test_proxy_answering_403(server: Server) -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    refusing = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = refusing.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ProxyError, match="403") as info:
            await connect(url(server), proxy=f"http://127.0.0.1:{port}")
        assert info.value.status_code == 403
    finally:
        refusing.close()
        await refusing.wait_closed()


@pytest.mark.parametrize(
    "status_line",
    [b"HTTP/2 200 OK", b"SSH-2.0 200 x", b"HTTP/1.1 2_00 OK", b"HTTP/1.1 +200 OK", b"HTTP/1.1 2000 OK", b"ICY 200 OK"],
)
async def test_a_proxy_answer_that_is_not_an_http_1_status_line_is_refused(server: Server, status_line: bytes) -> None:
    """Only ``HTTP/1.x`` and three digits open the tunnel (RFC 9112 section 4), as websockets requires: a
    token followed by something int() reads as 200 is not a proxy's answer, whatever follows it."""

    async def odd_proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(status_line + b"\r\n\r\n")
            await writer.drain()
            await reader.read()  # (until the client gives up)
        writer.close()

    odd = await asyncio.start_server(odd_proxy, "127.0.0.1", 0)
    port = odd.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ProxyError, match="invalid status line"):
            await connect(url(server), proxy=f"http://127.0.0.1:{port}", open_timeout=5)
        with pytest.raises(ProxyError, match="invalid status line"):
            await asyncio.to_thread(sync_connect, url(server), proxy=f"http://127.0.0.1:{port}", open_timeout=5)
    finally:
        odd.close()
        await odd.wait_closed()


async def test_proxy_ssl_for_a_proxy_without_tls_is_refused(server: Server, proxy_port: int) -> None:
    """``proxy_ssl=`` means TLS to the proxy, which only an https:// proxy has: for another, a ValueError as in
    websockets, before anything connects, rather than a tunnel in the clear."""
    import ssl

    context = ssl.create_default_context()
    for scheme in ("http", "socks5"):
        proxy = f"{scheme}://127.0.0.1:{proxy_port}"
        with pytest.raises(ValueError, match=f"proxy_ssl .* {scheme}://"):
            await connect(url(server), proxy=proxy, proxy_ssl=context)
        with pytest.raises(ValueError, match=f"proxy_ssl .* {scheme}://"):
            await asyncio.to_thread(sync_connect, url(server), proxy=proxy, proxy_ssl=context, open_timeout=5)
    async with connect(url(server), proxy=f"http://127.0.0.1:{proxy_port}") as ws:  # without it: through
        await ws.send("plain")
        assert await ws.recv() == "plain"


async def test_unreachable_proxy(server: Server) -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(OSError):
        await connect(url(server), proxy=f"http://127.0.0.1:{port}", open_timeout=10)
    with pytest.raises(OSError):
        await connect(url(server), proxy=f"socks5://127.0.0.1:{port}", open_timeout=10)


async def test_unknown_proxy_scheme() -> None:
    with pytest.raises(InvalidProxy, match="ftp"):
        await connect("ws://127.0.0.1:1/", proxy="ftp://127.0.0.1:21")


def test_socks_without_python_socks_names_the_extra() -> None:
    script = """
import asyncio, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "python_socks" or name.startswith("python_socks."):
            raise ImportError("blocked for the test")
sys.meta_path.insert(0, Block())
from wscodec.asyncio import connect
from wscodec.errors import InvalidProxy
from wscodec.sync import connect as sync_connect
async def main():
    try:
        await connect("ws://127.0.0.1:9/", proxy="socks5://127.0.0.1:1080")
    except InvalidProxy as exc:
        print("ASYNC", exc)
    try:
        sync_connect("ws://127.0.0.1:9/", proxy="socks5://127.0.0.1:1080")
    except InvalidProxy as exc:
        print("SYNC", exc)
asyncio.run(main())
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "ASYNC a SOCKS proxy needs the python-socks package: pip install 'wscodec[socks]'" in result.stdout
    assert "SYNC a SOCKS proxy needs the python-socks package" in result.stdout


async def test_proxy_from_the_environment_and_no_proxy(
    server: Server, proxy_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_port}")
    async with connect(url(server)) as ws:  # proxy=True is the default
        assert ws.remote_address[1] == proxy_port
    async with connect(url(server), proxy=None) as ws:
        assert ws.remote_address[1] == server.port
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with connect(url(server)) as ws:
        assert ws.remote_address[1] == server.port


async def test_proxies_named_for_websockets_in_the_environment(
    server: Server, proxy_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WS_PROXY, SOCKS_PROXY and HTTPS_PROXY are each used for ws://, ahead of an HTTP_PROXY (here one where
    nothing listens), as websockets uses them."""
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    for name, value in [
        ("WS_PROXY", f"http://127.0.0.1:{proxy_port}"),
        ("SOCKS_PROXY", f"socks5://127.0.0.1:{proxy_port}"),
        ("HTTPS_PROXY", f"http://127.0.0.1:{proxy_port}"),
    ]:
        monkeypatch.setenv(name, value)
        async with connect(url(server), open_timeout=10) as ws:
            assert ws.remote_address[1] == proxy_port, name
            await ws.send(name)
            assert await ws.recv() == name
        monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("env", "for_wss", "for_ws"),
    [
        ({"HTTPS_PROXY": "http://https-p:3128"}, "http://https-p:3128", "http://https-p:3128"),
        ({"HTTP_PROXY": "http://http-p:3128"}, None, "http://http-p:3128"),
        ({"HTTPS_PROXY": "http://https-p:1", "HTTP_PROXY": "http://http-p:2"}, "http://https-p:1", "http://https-p:1"),
        (
            {"WSS_PROXY": "http://wss-p:1", "WS_PROXY": "http://ws-p:2", "SOCKS_PROXY": "socks5://socks-p:3",
             "HTTPS_PROXY": "http://https-p:4", "HTTP_PROXY": "http://http-p:5"},
            "http://wss-p:1",
            "http://ws-p:2",
        ),
        (
            {"SOCKS_PROXY": "socks5://socks-p:3", "HTTPS_PROXY": "http://https-p:4", "HTTP_PROXY": "http://http-p:5"},
            "socks5://socks-p:3",
            "socks5://socks-p:3",
        ),
        ({"SOCKS_PROXY": "http://socks-p:1080"}, "socks5h://socks-p:1080", "socks5h://socks-p:1080"),
        ({"SOCKS_PROXY": "socks-p:1080"}, "socks5h://socks-p:1080", "socks5h://socks-p:1080"),
        ({"ALL_PROXY": "socks5h://all:1080"}, "socks5h://all:1080", "socks5h://all:1080"),
        ({"ALL_PROXY": "socks5h://all:1080", "HTTP_PROXY": "http://http-p:2"}, "socks5h://all:1080", "http://http-p:2"),
        ({"ws_proxy": "http://lower:1", "WS_PROXY": "http://upper:2"}, None, "http://lower:1"),
    ],
)  # fmt: skip
def test_select_proxy_reads_the_environment_as_websockets_does(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], for_wss: str | None, for_ws: str | None
) -> None:
    """websockets' get_proxy(): wss, socks, https for wss://; ws, socks, https, http for ws://; and ALL_PROXY
    after those (wscodec's own fallback, which urllib.request reads too)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for target, expected in (("wss://example.com/", for_wss), ("ws://example.com/", for_ws)):
        proxy = select_proxy(parse_uri(target), True)
        assert (None if proxy is None else f"{proxy.scheme}://{proxy.host}:{proxy.port}") == expected, target


def test_select_proxy_follows_urllib_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://secure-proxy:3128")
    monkeypatch.setenv("HTTP_PROXY", "socks5://plain-proxy:1080")
    secure = select_proxy(parse_uri("wss://example.com/"), True)
    plain = select_proxy(parse_uri("ws://example.com/"), True)
    assert secure is not None and (secure.scheme, secure.host, secure.port) == ("http", "secure-proxy", 3128)
    assert plain == secure  # websockets' order: an HTTPS proxy goes before the HTTP one for ws:// too
    monkeypatch.setenv("NO_PROXY", ".example.com,localhost")
    assert select_proxy(parse_uri("wss://api.example.com/"), True) is None
    assert select_proxy(parse_uri("wss://example.org/"), True) is not None
    assert select_proxy(parse_uri("wss://example.org/"), None) is None
    # An entry may name the port, the default one too (websockets checks host:port, as urllib reads it).
    monkeypatch.setenv("NO_PROXY", "internal.example:443,other.example:80,[::1]:9000")
    assert select_proxy(parse_uri("wss://internal.example/"), True) is None
    assert select_proxy(parse_uri("wss://internal.example:443/"), True) is None
    assert select_proxy(parse_uri("ws://other.example/"), True) is None
    assert select_proxy(parse_uri("ws://[::1]:9000/"), True) is None
    assert select_proxy(parse_uri("wss://internal.example:8443/"), True) is not None
    assert select_proxy(parse_uri("ws://other.example:8080/"), True) is not None
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.delenv("HTTP_PROXY")
    monkeypatch.setenv("ALL_PROXY", "socks5h://all:1080")
    every = select_proxy(parse_uri("ws://example.org/"), True)
    assert every is not None and every.scheme == "socks5h"


# --------------------------------------------------------------------------- redirects


@contextlib.asynccontextmanager
async def redirector(answer: Callable[[str], tuple[int, str]]) -> AsyncIterator[int]:
    """A plain HTTP server: ``answer(path) -> (status, Location)`` for every request."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ")[1].decode()
        status, location = answer(path)
        writer.write(f"HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        srv.close()
        await srv.wait_closed()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirect_is_followed_and_final_url_kept(server: Server, status: int) -> None:
    target = url(server, "/final?x=1").replace("ws://", "http://")  # http:// maps to ws://
    async with redirector(lambda path: (status, target)) as port, connect(f"ws://127.0.0.1:{port}/start") as ws:
        await ws.send("redirected")
        assert await ws.recv() == "redirected"
        assert ws.url == url(server, "/final?x=1")
    assert seen_requests[-1].path == "/final?x=1"


async def test_relative_redirect_and_chain(server: Server) -> None:
    final = url(server, "/end")

    def answer(path: str) -> tuple[int, str]:
        return (302, "/two") if path == "/one" else (307, final)

    async with redirector(answer) as port, connect(f"ws://127.0.0.1:{port}/one") as ws:
        assert ws.url == final


async def test_redirect_loop_is_detected() -> None:
    async with redirector(lambda path: (302, "/b" if path == "/a" else "/a")) as port:
        with pytest.raises(RedirectError, match="loop"):
            await connect(f"ws://127.0.0.1:{port}/a")


async def test_too_many_redirects() -> None:
    async with redirector(lambda path: (302, f"/{int(path[1:]) + 1}")) as port:
        with pytest.raises(RedirectError, match="more than 3 redirects"):
            await connect(f"ws://127.0.0.1:{port}/0", max_redirects=3)
        with pytest.raises(InvalidStatus) as info:
            await connect(f"ws://127.0.0.1:{port}/0", max_redirects=0)
        assert info.value.status_code == 302


# --------------------------------------------------------------------------- credentials and identity


async def test_credentials_in_the_url_become_basic_auth(server: Server) -> None:
    async with connect(f"ws://al%40ice:pa%3Ass@127.0.0.1:{server.port}/") as ws:
        assert ws.url == url(server)  # no credentials in the URL kept on the connection
    expected = "Basic " + base64.b64encode(b"al@ice:pa:ss").decode()
    assert seen_requests[-1].header("Authorization") == expected


@pytest.mark.parametrize(
    "bad",
    [
        "ws://alice:s3cret@127.0.0.1:99999/",
        "ws://alice:s3cret@host/#x",
        "ftp://alice:s3cret@host/",
        "wss://alice@corp.example:s3cret@host:99999/",
    ],
)
def test_no_invalid_uri_shows_the_password(bad: str) -> None:
    """Whatever is wrong with the URL, the error shows it with the password masked."""
    with pytest.raises(InvalidURI) as info:
        connect(bad)
    assert "s3cret" not in str(info.value) and ":***@" in str(info.value)


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ("http://alice:s3cret@127.0.0.1:99999", InvalidURI),
        ("http://alice:s3cret@:8080", InvalidURI),
        ("gopher://alice:s3cret@127.0.0.1:8080", InvalidProxy),
        ("ftp://alice@corp.example:s3cret@proxy", InvalidProxy),  # an e-mail address as the user
        ("http://alice@corp.example:s3cret@proxy:80x", InvalidURI),
        ("http://alice:s3cr/et@proxy:8080", InvalidURI),  # urllib reads "s3cr" as the port, and says so
        ("http://alice:s3?cr#et@proxy:8080", InvalidURI),
    ],
)
def test_no_invalid_proxy_url_shows_the_password(bad: str, error: type[Exception]) -> None:
    """A proxy URL's password is masked in its errors too (they end up in logs)."""
    with pytest.raises(error) as info:
        select_proxy(parse_uri("ws://127.0.0.1/"), bad)
    assert not any(piece in str(info.value) for piece in ("s3c", "cr", "et@")), info.value
    assert ":***@" in str(info.value), info.value


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("ws://alice@127.0.0.1/", "username provided without password"),
        ("ws://a%3Ab:s3cret@127.0.0.1/", "username contains a colon"),
        ("ws://alice:%ffs3cret@127.0.0.1/", "not percent-encoded UTF-8"),
        ("ws://%c3%28:s3cret@127.0.0.1/", "not percent-encoded UTF-8"),
    ],
)
def test_credentials_basic_authentication_cannot_carry_are_refused(bad: str, why: str) -> None:
    """As websockets' parse_uri: a user needs a password, escapes must be UTF-8 (not replaced with U+FFFD);
    and, since the server splits ``user:password`` at the first colon (RFC 7617), a user has none. Both
    clients refuse the URL before connecting; the error does not show the password."""
    from wscodec.sync import connect as sync_connect

    for attempt in (lambda: connect(bad), lambda: sync_connect(bad, open_timeout=1)):
        with pytest.raises(InvalidURI, match=why) as info:
            attempt()
        assert "s3cret" not in str(info.value)


async def test_an_empty_password_is_still_a_password(server: Server) -> None:
    async with connect(f"ws://alice:@127.0.0.1:{server.port}/"):
        pass
    assert seen_requests[-1].header("Authorization") == "Basic " + base64.b64encode(b"alice:").decode()


async def test_user_agent_default_none_and_custom(server: Server) -> None:
    async with connect(url(server)):
        pass
    assert seen_requests[-1].header("User-Agent") == DEFAULT_USER_AGENT
    assert DEFAULT_USER_AGENT.startswith("Python/3.") and " wscodec/" in DEFAULT_USER_AGENT
    async with connect(url(server), user_agent_header=None):
        pass
    assert seen_requests[-1].header("User-Agent") is None
    async with connect(url(server), user_agent_header="probe/1"):
        pass
    assert seen_requests[-1].header("User-Agent") == "probe/1"


async def test_additional_headers_and_the_extra_headers_alias(server: Server) -> None:
    async with connect(url(server), additional_headers={"X-Trace": "a"}):
        pass
    assert seen_requests[-1].header("X-Trace") == "a"
    async with connect(url(server), extra_headers=[("X-Trace", "b")]):
        pass
    assert seen_requests[-1].header("X-Trace") == "b"
    with pytest.raises(TypeError):
        connect(url(server), additional_headers={"a": "1"}, extra_headers={"b": "2"})


@pytest.mark.parametrize(
    "bad", ["http://example.com/", "ws://", "ws://host:99999/", "ws://host/#frag", "example.com", "wss://a b/"]
)
async def test_invalid_uri(bad: str) -> None:
    with pytest.raises(InvalidURI) as info:
        await connect(bad)
    assert isinstance(info.value, ValueError) and isinstance(info.value, WebSocketError)


def test_an_iri_is_mapped_to_a_uri_as_rfc3987_says() -> None:
    """Non-ASCII host: IDNA A-labels; non-ASCII path or query: UTF-8 percent-escapes; ASCII kept as given."""
    uri = parse_uri("ws://Bücher.example:8080/päth/ä%20b?q=ä&r=%C3%A9#")
    assert uri.host == "xn--bcher-kva.example"
    assert uri.host_header == "xn--bcher-kva.example:8080"
    assert uri.path == "/p%C3%A4th/%C3%A4%20b?q=%C3%A4&r=%C3%A9"
    assert parse_uri("ws://пример.испытание/").host == "xn--e1afmkfd.xn--80akhbyknj4f"
    assert parse_uri("ws://h/a%20b?c=d;e").path == "/a%20b?c=d;e"  # unchanged
    with pytest.raises(InvalidURI, match="internationalized domain name"):
        parse_uri("ws://" + "ä" * 70 + ".example/")  # a label longer than 63 octets


async def test_an_iri_reaches_the_server_percent_encoded_from_both_clients(server: Server) -> None:
    async with connect(url(server, "/päth?q=ä")) as ws:
        assert ws.request is not None and ws.request.path == "/p%C3%A4th?q=%C3%A4"
    assert seen_requests[-1].path == "/p%C3%A4th?q=%C3%A4"
    from wscodec.sync import connect as sync_connect

    def threaded() -> str:
        with sync_connect(url(server, "/ü")) as ws:
            assert ws.request is not None
            return ws.request.path

    assert await asyncio.to_thread(threaded) == "/%C3%BC"


def test_a_refused_header_fails_before_any_socket_or_proxy_sees_it() -> None:
    """The threaded client checks its request before it connects: nothing reaches a proxy (no CONNECT
    carrying an injected line), and no socket is left open (it was never opened)."""
    from wscodec.client_network import ProxyURL, connect_request
    from wscodec.sync import connect as sync_connect

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.3)
        proxy = f"http://127.0.0.1:{listener.getsockname()[1]}"
        for options in ({"user_agent_header": "ua\r\nProxy-Authorization: Basic eDp5"},
                        {"additional_headers": {"X-Bad": "a\r\nb"}}):  # fmt: skip
            with pytest.raises(ValueError, match="invalid value for header"):
                sync_connect("ws://example.test/", proxy=proxy, open_timeout=5, **options)  # type: ignore[arg-type]
            with pytest.raises(TimeoutError):
                listener.accept()  # nobody connected
    target = parse_uri("ws://example.test/")
    with pytest.raises(ValueError, match="invalid value for header User-Agent"):
        connect_request(target, ProxyURL("http", "127.0.0.1", 1, None, None, "http://127.0.0.1:1"), "a\nb")


async def test_a_connect_cancelled_while_reaching_a_proxy_logs_nothing() -> None:
    """Cancelled at each step of opening the tunnel, connect() raises CancelledError and nothing else:
    no "Future exception was never retrieved" from the tunnel's answer that nobody awaits any more."""
    errors: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda loop, context: errors.append(context))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)  # the kernel accepts; the proxy never answers
        proxy = f"http://127.0.0.1:{listener.getsockname()[1]}"
        try:
            for steps in range(12):
                task = asyncio.ensure_future(connect("ws://127.0.0.1:9/", proxy=proxy, open_timeout=5))
                for _ in range(steps):
                    await asyncio.sleep(0)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                await asyncio.sleep(0.02)
                gc.collect()
                assert errors == [], (steps, errors)
        finally:
            loop.set_exception_handler(None)


async def test_open_timeout_is_a_timeout_error() -> None:
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)  # accepts, never answers
    port = silent.sockets[0].getsockname()[1]
    try:
        with pytest.raises(OpenTimeout) as info:
            await connect(f"ws://127.0.0.1:{port}/", open_timeout=0.5)
        assert isinstance(info.value, TimeoutError) and isinstance(info.value, WebSocketError)
    finally:
        silent.close()
        await silent.wait_closed()


async def test_the_urls_password_is_in_no_message_nor_log(caplog: pytest.LogCaptureFixture) -> None:
    """The URL in an OpenTimeout, in the reconnection's and in create_websocket's log lines is the one
    without credentials (as ``ws.url``)."""
    caplog.set_level(logging.DEBUG, logger="wscodec")
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)  # accepts, never answers
    port = silent.sockets[0].getsockname()[1]
    secret_url = f"ws://alice:s3cret@127.0.0.1:{port}/"
    try:
        with pytest.raises(OpenTimeout) as info:
            await connect(secret_url, open_timeout=0.2)
        assert f"ws://127.0.0.1:{port}/" in str(info.value)
        with pytest.raises(OpenTimeout):
            async for _ws in connect(secret_url, open_timeout=0.2, reconnect_delays=lambda: iter([0.01])):
                raise AssertionError("nothing answers")
        closed = asyncio.get_running_loop().create_future()
        ws = create_websocket(secret_url, open_timeout=0.2)
        ws.onclose = lambda event: closed.set_result(None)
        await asyncio.wait_for(closed, 5)
    finally:
        silent.close()
        await silent.wait_closed()
    assert "retrying" in caplog.text and "could not connect" in caplog.text
    assert "s3cret" not in str(info.value) and "s3cret" not in caplog.text


# --------------------------------------------------------------------------- Unix sockets, sock=


async def test_unix_connect() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ws.sock")
        async with unix_serve(echo, path), unix_connect(path) as ws:
            await ws.send("over unix")
            assert await ws.recv() == "over unix"
        async with unix_serve(echo, path), unix_connect(path, "ws://example.test/chat") as ws:
            assert ws.request is not None and ws.request.header("Host") == "example.test"


async def test_sock_on_connect_and_serve() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    async with serve(echo, sock=listener) as srv:
        assert srv.port == port
        client = socket.create_connection(("127.0.0.1", port))
        async with connect(f"ws://127.0.0.1:{port}/", sock=client) as ws:
            await ws.send("made by me")
            assert await ws.recv() == "made by me"


# --------------------------------------------------------------------------- reconnection


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    import random

    delays = Backoff(initial_delay=1.0, factor=2.0, max_delay=5.0).delays(random.Random(1))
    values = [next(delays) for _ in range(8)]
    caps = [1, 2, 4, 5, 5, 5, 5, 5]
    assert all(0 <= v <= cap for v, cap in zip(values, caps, strict=True))
    assert len(set(values)) == len(values)  # jitter: not the same delay twice


async def test_reconnect_delays_as_websockets_takes_them() -> None:
    """``reconnect_delays`` (a function returning delays) replaces the backoff: one attempt, then one per
    delay; when the delays run out, iteration stops with the last error. After a connection that worked,
    the function is called anew."""
    port = free_port()  # nothing listens
    calls = 0
    attempts = 0

    def delays() -> Iterator[float]:
        nonlocal calls
        calls += 1
        yield from (0.01, 0.02)

    def count(exc: Exception) -> Exception | None:
        nonlocal attempts
        attempts += 1
        return None

    started = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        async for _ws in connect(f"ws://127.0.0.1:{port}/", reconnect_delays=delays, process_exception=count):
            raise AssertionError("nothing listens")
    assert (calls, attempts) == (1, 3)
    assert time.monotonic() - started < 5  # not the default backoff's 3.1 s and more

    ends = 0
    requests = 0

    async def close_at_once(ws: WebSocket) -> None:
        await ws.close()  # 1000: the client reconnects all the same, as websockets' does

    def every_other_refused(request: Request) -> tuple[int, list[tuple[str, str]], bytes] | None:
        nonlocal requests
        requests += 1
        return (503, [], b"busy") if requests % 2 == 0 else None

    async with serve(close_at_once, "127.0.0.1", 0, process_request=every_other_refused) as server:
        calls = attempts = 0
        async for ws in connect(url(server), reconnect_delays=delays, process_exception=count):
            await ws.wait_closed()
            ends += 1
            if ends == 3:
                break
    # opened, refused (a delay), opened, refused (a delay from a new run: the last one worked), opened
    assert (ends, attempts, calls) == (3, 2, 2)


async def test_reconnects_to_a_server_that_goes_down_and_comes_back() -> None:
    port = free_port()
    first = await serve(echo, "127.0.0.1", port)
    connections: list[WebSocket] = []
    attempts = 0

    def count(exc: Exception) -> Exception | None:
        nonlocal attempts
        attempts += 1
        return None if isinstance(exc, OSError) else exc

    restarted: Server | None = None

    async def bring_back() -> None:
        nonlocal restarted
        await asyncio.sleep(0.3)
        restarted = await serve(echo, "127.0.0.1", port)

    restart_task: asyncio.Task[None] | None = None
    try:
        async for ws in connect(
            f"ws://127.0.0.1:{port}/",
            process_exception=count,
            backoff_initial_delay=0.05,
            backoff_max_delay=0.2,
            open_timeout=5,
        ):
            connections.append(ws)
            await ws.send(f"hello {len(connections)}")
            assert await ws.recv() == f"hello {len(connections)}"
            if len(connections) == 1:
                first.close()  # the server goes down: close 1001, then refused connections
                await first.wait_closed()
                restart_task = asyncio.create_task(bring_back())
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                continue
            if len(connections) == 2:
                await ws.close()  # a normal closure: the loop reconnects all the same
                continue
            break
    finally:
        if restart_task is not None:
            await restart_task
        if restarted is not None:
            restarted.close()
            await restarted.wait_closed()
    assert len(connections) == 3
    assert attempts >= 1  # at least one refused attempt while the server was down


async def test_reconnection_goes_on_after_a_normal_closure_until_the_loop_breaks() -> None:
    """As in websockets: a close with 1000, by the server or by the loop's next turn, is followed by a new
    connection at once; only ``break`` ends the loop."""
    opened = 0

    async def hi(ws: WebSocket) -> None:
        nonlocal opened
        opened += 1
        await ws.send("hi")
        if opened != 2:  # the second time the client's next turn of the loop closes it
            await ws.close(1000)
        else:
            await ws.wait_closed()

    received: list[tuple[list[str | bytes], int | None]] = []
    async with serve(hi, "127.0.0.1", 0) as srv:
        async for ws in connect(url(srv), reconnect_delays=lambda: iter(())):
            if len(received) == 1:
                received.append(([await ws.recv()], None))  # left open: the loop closes it
                continue
            received.append(([message async for message in ws], ws.close_code))
            if len(received) == 3:
                break
    assert received == [(["hi"], 1000), (["hi"], None), (["hi"], 1000)]
    assert opened == 3


async def test_reconnection_stops_on_a_fatal_status() -> None:
    async with serve(echo, "127.0.0.1", 0, process_request=lambda request: (403, [], b"no")) as srv:
        with pytest.raises(InvalidStatus) as info:
            async for _ws in connect(url(srv), backoff_initial_delay=0.01):
                pytest.fail("should not connect")
        assert info.value.status_code == 403


async def test_reconnection_retries_503_then_connects() -> None:
    answers = [(503, [], b"busy"), (503, [], b"busy"), None]

    def flaky(request: Request) -> Any:
        return answers.pop(0) if answers else None

    async with serve(echo, "127.0.0.1", 0, process_request=flaky) as srv:
        async for ws in connect(url(srv), backoff_initial_delay=0.01, backoff_max_delay=0.05):
            await ws.send("finally")
            assert await ws.recv() == "finally"
            break
    assert answers == []


# --------------------------------------------------------------------------- TLS through proxies


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A throwaway self-signed certificate for 127.0.0.1 (openssl CLI)."""
    import shutil

    if shutil.which("openssl") is None:
        if os.environ.get("CI"):
            pytest.fail("openssl is required in CI (Debian package: openssl)")
        pytest.skip("openssl is needed to make a test certificate (Debian package: openssl)")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


@pytest.mark.parametrize("transport", ["loop", "aiofastnet"])
async def test_wss_through_http_and_https_proxies(tls_files: tuple[str, str], proxy_port: int, transport: str) -> None:
    import ssl

    cert, key = tls_files
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=cert)
    async with serve(echo, "127.0.0.1", 0, ssl=server_context) as server:
        wss = f"wss://127.0.0.1:{server.port}/secure"
        # TLS to the server inside a CONNECT tunnel.
        async with connect(wss, ssl=trusting, proxy=f"http://127.0.0.1:{proxy_port}", transport=transport) as ws:
            assert on_transports(ws, transport)
            assert ws.remote_address[1] == proxy_port
            await ws.send("secret via proxy")
            assert await ws.recv() == "secret via proxy"
        # TLS to the proxy itself, then TLS to the server inside it (TLS in TLS).
        with pproxy("http+ssl://127.0.0.1:PORT", "--ssl", f"{cert},{key}") as tls_proxy:
            async with connect(
                wss, ssl=trusting, proxy=f"https://127.0.0.1:{tls_proxy}", proxy_ssl=trusting, transport=transport
            ) as ws:
                assert on_transports(ws, transport)
                await ws.send("secret via https proxy")
                assert await ws.recv() == "secret via https proxy"


# --------------------------------------------------------------------------- the threaded client's open_timeout


@contextlib.contextmanager
def unanswered_address(host: str) -> Iterator[int]:
    """A port on ``host`` whose accept queue is full (one connection held, backlog 0): the kernel drops
    further SYNs, so a connect there waits, as to a host that does not answer."""
    with socket.socket() as listener:
        listener.bind((host, 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        with socket.create_connection((host, port), 2):
            yield port


@pytest.fixture
def slow_names(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``two.test`` resolves to two loopback addresses that do not answer (a dual-stack name, a host with
    several A records); ``slow.test`` to one, after a resolver delay of 3 s."""
    real = socket.getaddrinfo
    with unanswered_address("127.0.0.1") as first, unanswered_address("127.0.0.2") as second:

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host == "two.test":
                return [
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", first)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", second)),
                ]
            if host == "slow.test":
                time.sleep(3)
                return real("127.0.0.1", first, *args, **kwargs)
            return real(host, port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        yield


@pytest.mark.parametrize(
    ("url", "proxy"),
    [
        ("ws://two.test/", None),
        ("ws://example.test/", "http://two.test:3128"),
        ("ws://slow.test/", None),
        ("ws://example.test/", "http://slow.test:3128"),
    ],
    ids=["two-addresses", "proxy-with-two-addresses", "slow-lookup", "proxy-with-a-slow-lookup"],
)
def test_sync_open_timeout_bounds_the_name_lookup_and_every_address(
    slow_names: None, url: str, proxy: str | None
) -> None:
    """``open_timeout`` is one deadline for the whole opening, name lookup included: each address gets the
    time left, not the whole timeout again (``socket.create_connection`` took 3 s here, for 1 s asked)."""
    started = time.monotonic()
    with pytest.raises(OpenTimeout):
        sync_connect(url, proxy=proxy, open_timeout=1.0)
    assert time.monotonic() - started < 1.6


def test_sync_connect_tries_the_next_address_when_one_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Addresses are still tried in turn: a refused first one (nothing listening) leads to the second."""
    real = socket.getaddrinfo
    closed = free_port()

    def serve_echo(ws: Any) -> None:
        for message in ws:
            ws.send(message)

    with sync_serve(serve_echo, "127.0.0.1", 0) as server:
        port = server.port

        def getaddrinfo(host: Any, port_: Any, *args: Any, **kwargs: Any) -> Any:
            if host == "two.test":
                return [
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", closed)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
                ]
            return real(host, port_, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with sync_connect("ws://two.test/", open_timeout=5) as ws:
                ws.send("hello")
                assert ws.recv(timeout=5) == "hello"
        finally:
            server.shutdown()


# --------------------------------------------------------------------------- proxy credentials, redirect errors


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("http://alice@127.0.0.1:3128", "username provided without password"),
        ("socks5://alice@127.0.0.1:1080", "username provided without password"),
        ("http://alice:%ffs3cret@127.0.0.1:3128", "not percent-encoded UTF-8"),
    ],
)
def test_proxy_credentials_authentication_cannot_carry_are_refused(bad: str, why: str) -> None:
    """As websockets' ``parse_proxy``: a user needs a password (it sent ``Proxy-Authorization`` for
    ``alice:``), and escapes must be UTF-8 (they were replaced with U+FFFD and sent)."""
    with pytest.raises(InvalidProxy, match=why) as info:
        select_proxy(parse_uri("ws://127.0.0.1/"), bad)
    assert "s3cret" not in str(info.value)


def test_a_socks4_user_id_needs_no_password() -> None:
    proxy = select_proxy(parse_uri("ws://127.0.0.1/"), "socks4://alice@127.0.0.1:1080")
    assert proxy is not None and (proxy.username, proxy.password) == ("alice", None)


def _redirect(status: int, location: str) -> InvalidStatus:
    return InvalidStatus(status, "Found", [("Location", location)], b"")


@pytest.mark.parametrize(
    ("start", "location", "why"),
    [
        ("ws://h/", "http://[::1", "invalid Location"),
        ("wss://h/", "ws://h/", "would drop TLS"),
        ("ws://h/", "ftp://h/", "not a ws, wss, http or https URL"),
    ],
)
def test_a_redirect_that_cannot_be_followed_is_a_redirect_error_and_a_security_error(
    start: str, location: str, why: str
) -> None:
    """A malformed ``Location`` raised urllib's bare ValueError; every redirect not followed is a
    ``RedirectError``, which is a ``SecurityError`` as websockets raises for a downgrade and too many."""
    with pytest.raises(RedirectError, match=why) as info:
        redirect_location(parse_uri(start), _redirect(302, location))
    assert isinstance(info.value, SecurityError)


def test_redirect_errors_do_not_show_a_password_from_the_location() -> None:
    """The password a server's ``Location`` carries is masked in the loop's and the limit's messages, as
    every other URL in an error is (they end up in logs)."""
    uri = parse_uri("ws://h/a")
    policy = RedirectPolicy("ws://h/a", 10)
    policy.next_url(uri, _redirect(302, "ws://u:hunter2@h/a"))
    with pytest.raises(RedirectError, match="redirect loop") as loop:
        policy.next_url(uri, _redirect(302, "ws://u:hunter2@h/a"))
    limited = RedirectPolicy("ws://h/a", 1)
    limited.next_url(uri, _redirect(302, "ws://h/b"))
    with pytest.raises(RedirectError, match="more than 1 redirects") as limit:
        limited.next_url(uri, _redirect(302, "ws://u:hunter2@h/c"))
    for error in (loop.value, limit.value):
        assert "hunter2" not in str(error) and ":***@" in str(error), error
    insecure = parse_uri("wss://h/")
    with pytest.raises(RedirectError) as dropped:
        redirect_location(insecure, _redirect(302, "ws://u:hunter2@h/"))
    assert "hunter2" not in str(dropped.value)


@pytest.mark.parametrize("char", ["\x01", "\x0b", "\x1f", "\x7f"])
def test_a_control_character_in_the_url_is_an_invalid_uri(char: str) -> None:
    """Every C0 control and DEL, not only CR, LF, TAB and NUL: ``\\x0b`` in the path reached the request
    builder, which raised a bare ValueError."""
    with pytest.raises(InvalidURI, match="control character"):
        parse_uri(f"ws://127.0.0.1/a{char}b")
    with pytest.raises(InvalidURI):
        sync_connect(f"ws://127.0.0.1:9/a{char}b", open_timeout=1)
