"""The command line's exits: a port already taken (1, with a message) and Ctrl-C (130). Real subprocesses.
``bench`` (from any directory, its exit status and ``--check``) is tested in ``test_bench_cli.py``."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import wscodec

ROOT = Path(__file__).resolve().parents[1]
WSCODEC_ROOT = str(Path(wscodec.__file__).resolve().parents[1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = WSCODEC_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _read_until(stream: int, needle: bytes, timeout: float) -> bytes:
    """Read the pipe ``stream`` (a file descriptor) until ``needle`` or EOF or ``timeout``."""
    buf = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        while needle not in buf and time.monotonic() < deadline:
            if sel.select(max(0.0, deadline - time.monotonic())):
                chunk = os.read(stream, 4096)
                if not chunk:
                    break
                buf += chunk
    return buf


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_serve_on_a_taken_port_exits_1_with_a_message() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "wscodec", "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env=_env(),
        )
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert out.stderr.startswith("error: "), out.stderr
    assert "address already in use" in out.stderr.lower() or str(port) in out.stderr
    assert "Traceback" not in out.stderr


def test_ctrl_c_in_connect_exits_130() -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "wscodec", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    client = None
    try:
        assert server.stdout is not None
        line = _read_until(server.stdout.fileno(), b"\n", 30).decode()
        assert line.startswith("listening on ws://"), line
        url = line.split()[-1]
        client = subprocess.Popen(
            [sys.executable, "-m", "wscodec", "connect", url],
            stdin=subprocess.PIPE,  # kept open: the client waits for lines until interrupted
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
            # A shell's background job inherits SIGINT ignored, and Python then never raises
            # KeyboardInterrupt: give the client the disposition of a terminal's foreground process.
            preexec_fn=_default_sigint,
        )
        assert client.stderr is not None
        connected = _read_until(client.stderr.fileno(), b"connected to", 30)
        assert b"connected to" in connected, connected
        client.send_signal(signal.SIGINT)
        assert client.wait(30) == 130
        assert client.stderr is not None
        assert b"Traceback" not in client.stderr.read()
    finally:
        for proc in (client, server):
            if proc is None:
                continue
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def test_ctrl_c_while_serve_with_workers_starts_exits_130_without_a_traceback() -> None:
    """The note on chat rooms is printed just before the supervisor starts: a SIGINT then comes before it
    handles the signal, as a Ctrl-C typed at once would."""
    for _ in range(3):
        server = subprocess.Popen(
            [sys.executable, "-m", "wscodec", "serve", "--port", "0", "--chat", "--workers", "2"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=_env(),
            preexec_fn=_default_sigint,
        )
        try:
            assert server.stderr is not None
            note = _read_until(server.stderr.fileno(), b"own chat room", 30)
            assert b"own chat room" in note, note
            server.send_signal(signal.SIGINT)
            assert server.wait(30) in (130, 0)  # 0: the supervisor had its handler already, a graceful stop
            err = note + server.stderr.read()
            assert b"Traceback" not in err, err.decode(errors="replace")
        finally:
            if server.poll() is None:
                server.kill()
                server.wait(5)
            if server.stderr is not None:
                server.stderr.close()
