"""A real browser against the wscodec server: headless Chromium runs the demo page's self-test.

The server (in this process) serves ``_demo.html`` at ``/`` through ``process_request`` and echoes on the
same port with subprotocol ``chat``. Chromium, driven by selenium and chromedriver, opens
``/?selftest=1&protocol=chat&code=4000&reason=bye``; the page's script uses the browser WebSocket API
(``new WebSocket``, ``binaryType``, ``onopen``/``onmessage``/``onclose``, ``send``, ``close``), checks the
echoes and writes a JSON summary into ``<pre id="result">``. Without chromium and chromedriver (Debian packages
``chromium`` and ``chromium-driver``) the test skips, or fails when ``CI`` is set (``.ci/run`` installs them); see
``tests/_system.py``. If selenium cannot start a session, ``chromium --headless --dump-dom`` runs the same page.

A second page, ``apps/traffic.html``, runs the server-to-client scenario of ``tests/_traffic.py`` (its script,
``apps/traffic.mjs``, is Node's in ``test_node.py`` too): fragmented and compressed messages from the server,
keepalive Pings through a silence, and ``server.close()``'s 1001. The demo page's self-test runs once more
against the threaded server (``wscodec.sync.serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import re
import subprocess
import tempfile
import threading
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from _system import missing, require_program
from _traffic import check_traffic, run_traffic

from wscodec import sync
from wscodec.asyncio import serve
from wscodec.errors import ConnectionClosedError

pytestmark = [pytest.mark.interop, pytest.mark.browser]

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-extensions",
)
PAGE = files("wscodec").joinpath("_demo.html").read_bytes()
APPS = Path(__file__).with_name("apps")
#: The server-to-browser scenario (tests/_traffic.py): its page and the module it imports, which Node runs too.
TRAFFIC_FILES = {
    "/traffic.html": ("text/html; charset=utf-8", (APPS / "traffic.html").read_bytes()),
    "/traffic.mjs": ("text/javascript; charset=utf-8", (APPS / "traffic.mjs").read_bytes()),
}


def _browser_programs() -> tuple[str, str]:
    chromium = require_program("chromium", "chromium", env="WSCODEC_CHROMIUM")
    chromedriver = require_program("chromedriver", "chromium-driver", env="WSCODEC_CHROMEDRIVER")
    return chromium, chromedriver


def _serve_demo_page(request: Any) -> tuple[int, list[tuple[str, str]], bytes] | None:
    if "websocket" in (request.header("Upgrade") or "").lower():
        return None
    if request.path.split("?", 1)[0] == "/":
        return 200, [("Content-Type", "text/html; charset=utf-8")], PAGE
    return 404, [("Content-Type", "text/plain")], b"not found\n"


def _run_selenium(url: str, profile: str, chromium: str, chromedriver: str) -> dict[str, Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        driver.set_page_load_timeout(30)
        driver.get(url)
        WebDriverWait(driver, 30, poll_frequency=0.1).until(lambda d: d.title == "DONE")
        text = driver.find_element(By.ID, "result").text
    finally:
        driver.quit()
    return json.loads(text)  # type: ignore[no-any-return]


def _run_dump_dom(url: str, profile: str, chromium: str) -> dict[str, Any]:
    out = subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=20000", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r'<pre id="result">(.*?)</pre>', out.stdout, re.S)
    assert match and match.group(1), f"no result in the dumped page: {out.stderr[-2000:]}"
    return json.loads(html.unescape(match.group(1)))  # type: ignore[no-any-return]


def run_browser(url: str, chromium: str, chromedriver: str) -> tuple[dict[str, Any], str]:
    """The page's self-test result, and which driver produced it."""
    with tempfile.TemporaryDirectory(prefix="wscodec-chromium-") as profile:
        try:
            from selenium.common.exceptions import WebDriverException
        except ImportError:  # pragma: no cover - selenium is in the test extra
            return _run_dump_dom(url, profile, chromium), "dump-dom"
        try:
            return _run_selenium(url, profile, chromium, chromedriver), "selenium"
        except WebDriverException as exc:
            if "session not created" not in str(exc) and "unable to" not in str(exc).lower():
                raise
    with tempfile.TemporaryDirectory(prefix="wscodec-chromium-") as profile:
        return _run_dump_dom(url, profile, chromium), "dump-dom"


def assert_selftest_result(result: dict[str, Any], driver: str, seen: list[dict[str, Any]]) -> None:
    """What the demo page's self-test must report, and the one connection its echo handler must have seen,
    whichever server (asyncio or threaded) ran it: one list, so that the two runs cannot drift apart."""
    assert result["errors"] == [], (driver, result)
    assert result["opened"] is True
    assert result["text_ok"] is True, result
    assert result["binary_ok"] is True, result
    assert result["large_ok"] is True, result
    assert result["protocol"] == "chat"
    assert "permessage-deflate" in result["extensions"]
    assert result["readyStates"] == [0, 1, 2, 3]
    assert result["close"] == {"code": 4000, "reason": "bye", "wasClean": True}
    assert len(seen) == 1, seen
    assert seen[0]["protocol"] == "chat"
    assert seen[0]["close"] == (4000, "bye")


async def test_chromium_selftest_page() -> None:
    chromium, chromedriver = _browser_programs()
    seen: list[dict[str, Any]] = []

    async def echo(ws: Any) -> None:
        record: dict[str, Any] = {"protocol": ws.protocol, "messages": []}
        seen.append(record)
        with contextlib.suppress(ConnectionClosedError):  # the page closes with 4000: not a ConnectionClosedOK
            async for message in ws:
                record["messages"].append((type(message).__name__, len(message)))
                await ws.send(message)
        record["close"] = (ws.close_code, ws.close_reason)

    async with serve(echo, "127.0.0.1", 0, subprotocols=("chat",), process_request=_serve_demo_page) as server:
        url = f"http://127.0.0.1:{server.port}/?selftest=1&protocol=chat&code=4000&reason=bye"
        result, driver = await asyncio.wait_for(asyncio.to_thread(run_browser, url, chromium, chromedriver), 120)
        for _ in range(100):  # the handler may finish just after the browser's close event
            if seen and "close" in seen[-1]:
                break
            await asyncio.sleep(0.05)

    assert_selftest_result(result, driver, seen)
    kinds = [kind for kind, _ in seen[0]["messages"]]
    assert kinds == ["str", "bytes", "str"], seen
    assert [size for _, size in seen[0]["messages"][1:]] == [256, 65536]


async def test_chromium_server_traffic_keepalive_and_going_away() -> None:
    """Server-to-browser traffic, keepalive and a server shutdown, in one browser run (``tests/_traffic.py``):
    Chromium reassembles three fragmented messages (str fragments; UTF-8 cut inside characters; an async
    generator's binary fragments), checks 200 compressed texts (context takeover) in order and a 1 MiB
    compressed text, answers the 0.2 s keepalive Pings through 1.5 s of silence, gets the echo after it, and
    sees ``server.close()``'s 1001 "going away" as a clean close."""
    chromium, chromedriver = _browser_programs()

    def process_request(request: Any) -> tuple[int, list[tuple[str, str]], bytes] | None:
        path = request.path.split("?", 1)[0]
        if path == "/ws":
            return None
        if path in TRAFFIC_FILES:
            content_type, body = TRAFFIC_FILES[path]
            return 200, [("Content-Type", content_type)], body
        return 404, [("Content-Type", "text/plain")], b"not found\n"

    async def browser(port: int, ws_url: str) -> tuple[dict[str, Any], str]:
        url = f"http://127.0.0.1:{port}/traffic.html?url={ws_url}"
        return await asyncio.to_thread(run_browser, url, chromium, chromedriver)

    (result, driver), record = await run_traffic(browser, process_request=process_request)
    if driver != "selenium":  # --dump-dom's virtual time would skip the silence the keepalive checks need
        missing("a selenium session with chromedriver (only --dump-dom ran)", "chromium-driver")
    check_traffic(result, record, echoed_reason="going away")


def test_chromium_selftest_page_threaded_server() -> None:
    """The demo page's self-test, as in :func:`test_chromium_selftest_page`, against ``wscodec.sync.serve``:
    its handler runs in a thread per connection, the server in a thread of its own."""
    chromium, chromedriver = _browser_programs()
    seen: list[dict[str, Any]] = []

    def echo(ws: sync.WebSocket) -> None:
        record: dict[str, Any] = {"protocol": ws.subprotocol, "messages": [], "thread": threading.current_thread().name}
        seen.append(record)
        with contextlib.suppress(ConnectionClosedError):  # the page closes with 4000
            for message in ws:
                record["messages"].append((type(message).__name__, len(message)))
                ws.send(message)
        record["close"] = (ws.close_code, ws.close_reason)

    server = sync.serve(echo, "127.0.0.1", 0, subprotocols=("chat",), process_request=_serve_demo_page)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="wscodec-test-server")
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.port}/?selftest=1&protocol=chat&code=4000&reason=bye"
        result, driver = run_browser(url, chromium, chromedriver)
        deadline = time.monotonic() + 5  # the handler may finish just after the browser's close event
        while not (seen and "close" in seen[-1]) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.shutdown()
        thread.join(10)
    assert not thread.is_alive()

    assert_selftest_result(result, driver, seen)
    assert seen[0]["thread"] == "wscodec-connection"
    assert seen[0]["messages"] == [("str", 29), ("bytes", 256), ("str", 65536)], seen
