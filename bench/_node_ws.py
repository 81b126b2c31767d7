"""Node's ``ws`` (with its native add-ons ``bufferutil`` and ``utf-8-validate``) as an echo server peer.

The versions are pinned in ``bench/node/package.json`` and its lock file, and installed into
``bench/node/node_modules`` by ``npm ci`` from the npm registry: :func:`install` runs it the first time a
benchmark or test needs the peer, so the repository alone reproduces every cell. The server is
``bench/node/ws_echo_server.js``; :func:`server_command` is its command line.
"""

from __future__ import annotations

import os
import shutil
import subprocess

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")
SCRIPT = os.path.join(NODE_DIR, "ws_echo_server.js")
#: How long ``npm ci`` may take (four small packages; their binaries come prebuilt in the packages).
INSTALL_TIMEOUT = 300.0


def installed() -> bool:
    """Whether ``npm ci`` has put ``ws`` in ``bench/node/node_modules``."""
    return os.path.isfile(os.path.join(NODE_DIR, "node_modules", "ws", "package.json"))


def install(timeout: float = INSTALL_TIMEOUT) -> str | None:
    """Install the pinned packages unless they are there: None once they are, else why they are not."""
    if installed():
        return None
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        return "Node's ws needs node and npm (Debian packages nodejs and npm)"
    command = [npm, "ci", "--no-audit", "--no-fund", "--prefix", NODE_DIR]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"`{' '.join(command)}` did not finish in {timeout:.0f} s"
    if done.returncode != 0 or not installed():
        return f"`{' '.join(command)}` failed ({done.returncode}): {(done.stderr or done.stdout)[-1500:]}"
    return None


def server_command(
    host: str, port: int, *, deflate: bool, lifetime: float, busy_poll: float | None = None
) -> list[str]:
    """The command line of the ws echo server (it prints ``listening on PORT``, then the add-ons in use)."""
    node = shutil.which("node") or "node"
    return [
        node,
        SCRIPT,
        "--host",
        host,
        "--port",
        str(port),
        "--lifetime",
        repr(lifetime),
        *(["--deflate"] if deflate else []),
        *(["--busy-poll", repr(busy_poll)] if busy_poll is not None else []),
    ]
