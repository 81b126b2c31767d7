"""Fixtures of the adversarial suite (the harness itself, and its documented API, is in ``harness.py``).

- ``loop``: "asyncio" or "uvloop", the event loop the server subprocess runs. Without uvloop the uvloop
  cases skip, naming the package, except under ``CI`` where they fail.
- ``servers``: a factory that starts servers through the harness and stops (SIGKILL) every one of them at
  teardown: ``servers.wscodec(**options)``, ``servers.cli()``, ``servers.uvicorn(*options, ws=...)``, each
  on the ``loop`` of the test.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import harness
import pytest

LOOPS = ["asyncio", "uvloop"]


@pytest.fixture(params=LOOPS)
def loop(request: pytest.FixtureRequest) -> str:
    name = str(request.param)
    if name == "uvloop" and importlib.util.find_spec("uvloop") is None:
        message = "uvloop is not installed (pip install uvloop; it is in the test extra where it installs)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return name


class Servers:
    """Start servers on one event loop; all are killed at teardown."""

    def __init__(self, loop: str) -> None:
        self.loop = loop
        self.started: list[harness.ServerProcess] = []

    def _keep(self, server: harness.ServerProcess) -> harness.ServerProcess:
        self.started.append(server)
        return server

    def wscodec(self, **options: Any) -> harness.ServerProcess:
        return self._keep(harness.start_wscodec(self.loop, **options))

    def cli(self) -> harness.ServerProcess:
        return self._keep(harness.start_cli(self.loop))

    def uvicorn(self, *options: str, ws: str = harness.UVICORN_WS) -> harness.ServerProcess:
        return self._keep(harness.start_uvicorn(self.loop, *options, ws=ws))

    def stop(self) -> None:
        for server in self.started:
            server.stop()


@pytest.fixture
def servers(loop: str) -> Iterator[Servers]:
    factory = Servers(loop)
    try:
        yield factory
    finally:
        factory.stop()
