"""A throwaway ``redis-server`` (Debian package ``redis-server``) on a free loopback port, for the tests.

No persistence (``--save '' --appendonly no``), bound to 127.0.0.1 only, stopped by the test that started
it. Without the program the tests skip, naming the package; with ``CI`` set they fail instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

PACKAGE_HINT = "redis-server not found: install the Debian package redis-server (apt-get install redis-server)"


def redis_server_path() -> str:
    """The redis-server program, or skip (fail under CI) naming the package; also needs the redis client."""
    path = shutil.which("redis-server")
    try:
        import redis  # noqa: F401
    except ImportError:
        missing = "the redis Python package is missing: pip install 'wscodec[redis]'"
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{PACKAGE_HINT} (required when CI is set)")
        pytest.skip(PACKAGE_HINT)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """``start()``/``stop()`` a redis-server on ``port`` (the same port across restarts), or with
    ``unix_socket`` (a path) on that Unix socket only, no TCP port (``unix://`` URLs)."""

    def __init__(self, path: str, tls_dir: str | None = None, unix_socket: str | None = None) -> None:
        self.path = path
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.tls_dir = tls_dir  # with cert.pem and key.pem: TLS only (rediss://), see make_certificate()
        self.unix_socket = unix_socket

    @property
    def url(self) -> str:
        if self.unix_socket is not None:
            return f"unix://{self.unix_socket}?db=0"
        if self.tls_dir is not None:
            return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls_dir}/cert.pem"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> None:
        assert self.proc is None
        if self.tls_dir is not None:
            ports = [
                "--port", "0", "--tls-port", str(self.port),
                "--tls-cert-file", f"{self.tls_dir}/cert.pem", "--tls-key-file", f"{self.tls_dir}/key.pem",
                "--tls-ca-cert-file", f"{self.tls_dir}/cert.pem", "--tls-auth-clients", "no",
            ]  # fmt: skip
        elif self.unix_socket is not None:
            ports = ["--port", "0", "--unixsocket", self.unix_socket, "--unixsocketperm", "700"]
        else:
            ports = ["--port", str(self.port)]
        self.proc = subprocess.Popen(
            [
                self.path,
                *ports,
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                self.proc = None
                raise RuntimeError(f"redis-server exited at start: {err[-2000:]}")
            if self.ping():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout} s")

    def ping(self) -> bool:
        if self.tls_dir is not None:
            return self._ping_tls()
        try:
            if self.unix_socket is not None:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.settimeout(1.0)
                    sock.connect(self.unix_socket)
                    sock.sendall(b"PING\r\n")
                    return sock.recv(64).startswith(b"+PONG")
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _ping_tls(self) -> bool:
        import ssl

        context = ssl.create_default_context(cafile=f"{self.tls_dir}/cert.pem")
        try:
            with (
                socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
            ):
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()


def make_certificate(directory: str) -> None:
    """A self-signed certificate for 127.0.0.1 (cert.pem, key.pem) made with the openssl program (Debian
    package openssl); skip without it, fail under CI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        hint = "openssl not found: install the Debian package openssl"
        if os.environ.get("CI"):
            pytest.fail(hint)
        pytest.skip(hint)
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", f"{directory}/key.pem", "-out", f"{directory}/cert.pem"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
