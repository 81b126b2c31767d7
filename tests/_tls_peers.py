"""TLS clients that leave a server waiting: one slow to start its handshake, one that reads a refusal and
never answers the server's close_notify. What the server's timeouts must bound, measured from outside.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import time


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a throwaway certificate for 127.0.0.1 and a client context that trusts it
    (a throwaway CA made in Python by trustme)."""
    import trustme

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    return server_context, client_context


def seconds_until_dropped_after_a_late_tls_start(port: int, context: ssl.SSLContext, delay: float) -> float:
    """Connect, wait ``delay`` seconds, do the TLS handshake, send nothing: seconds from the TCP connect
    until the server closes the connection."""
    raw = socket.create_connection(("127.0.0.1", port), 10)
    started = time.monotonic()
    time.sleep(delay)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.settimeout(30)
        with contextlib.suppress(OSError):
            while sock.recv(4096):
                pass
    return time.monotonic() - started


def seconds_held_after_a_tls_refusal(port: int, context: ssl.SSLContext) -> tuple[bytes, float]:
    """Over TLS, send a request that is no upgrade, read the refusal, never send close_notify: the
    response's status line and the seconds from then until the server closes TCP."""
    raw = socket.create_connection(("127.0.0.1", port), 10)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.settimeout(10)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        response = sock.recv(4096)
        started = time.monotonic()
        # The TLS layer would answer the server's close_notify: watch the TCP stream underneath instead.
        with socket.socket(fileno=os.dup(sock.fileno())) as tcp:
            tcp.settimeout(30)
            with contextlib.suppress(OSError):
                while tcp.recv(4096):
                    pass
        return response.split(b"\r\n", 1)[0], time.monotonic() - started
