"""A client that upgrades over a raw socket and then never answers: it reads what the server sends but sends
nothing more, not even the reply to a Close. What a shutdown must not wait on for long.
"""

from __future__ import annotations

import base64
import os
import socket


class SilentClient:
    """An upgraded connection to ``127.0.0.1:port`` that reads frames and never writes after its request."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.buffer = b""
        self.frames: list[tuple[int, bytes]] = []  # (opcode, payload) of the frames read before the Close
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101 "), head

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, f"the connection ended early: {self.buffer!r}"
        self.buffer += chunk

    def next_frame(self) -> tuple[int, bytes]:
        """The server's next frame (unmasked, under 126 bytes) as ``(opcode, payload)``."""
        while len(self.buffer) < 2 or len(self.buffer) < 2 + (self.buffer[1] & 0x7F):
            self._fill()
        opcode, length = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F
        assert length < 126 and not self.buffer[1] & 0x80, self.buffer
        payload, self.buffer = self.buffer[2 : 2 + length], self.buffer[2 + length :]
        return opcode, payload

    def until(self, opcode: int) -> bytes:
        """Read the server's frames up to one with ``opcode``, keeping the others in :attr:`frames`; its
        payload."""
        while True:
            got, payload = self.next_frame()
            if got == opcode:
                return payload
            self.frames.append((got, payload))

    def close_code(self) -> int:
        """Read up to the server's Close (see :meth:`until`); the code in it."""
        return int.from_bytes(self.until(0x8)[:2], "big")

    def ended(self) -> bool:
        """Whether the server ended the connection (EOF or reset), reading what it sent after its Close."""
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()
