"""permessage-deflate settings shared by every I/O layer: :class:`Deflate` and :func:`extension_factories`.

``serve()``/``connect()`` (asyncio and sync) and the CLI take ``compression="deflate"`` (these defaults),
a :class:`Deflate` (tuned), or None (no compression). The defaults were chosen by measurement
(``bench/bench_deflate_memory.py``, 400 connections that each echoed three ~1 KiB JSON messages, server RSS
growth per connection): zlib's own defaults (15-bit windows, memLevel 8) cost 124 KiB per connection,
``websockets`` (12-bit windows, memLevel 5) 63 KiB, wscodec's defaults 48.5 KiB (0.77x). Most of a
deflate connection's memory is the compressor's hash table and pending buffer, which scale with memLevel,
not the window, so wscodec keeps websockets' 12-bit windows and lowers memLevel to 2, paying for it with
compression level 7 (longer lazy matches): on JSON the output is 1.079x zlib's default for a stream of
~1 KiB messages and 1.036x for one 16 KiB message (zlib's default with websockets' settings: 1.108x and
1.027x).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .extensions import ClientPerMessageDeflate, ServerPerMessageDeflate, _check_deflate_settings

__all__ = ["Compression", "Deflate", "extension_factories"]

#: The most bytes an I/O layer reads (and hands to the Connection) at a time once permessage-deflate is on.
#: DEFLATE inflates up to about 1032 to 1, and all the messages one read completes are decompressed before
#: reading can pause: so one read adds at most about 16 MiB to the messages waiting for the application,
#: however many small compressed frames a peer packs into it (a 256 KiB read could add 256 MiB). The
#: opening handshake is read in slices of this size too, before extensions are known: the read that ends
#: the request (or the 101 response) may hold frames pipelined behind it, decoded as soon as it opens.
INFLATING_READ = 16 * 1024


@dataclass(frozen=True)
class Deflate:
    """Tunable permessage-deflate (RFC 7692) for :func:`~wscodec.asyncio.serve` and
    :class:`~wscodec.asyncio.connect`.

    ``server_max_window_bits``/``client_max_window_bits`` (9-15, None: 15) bound each side's LZ77 window:
    the server asks the client for ``client_max_window_bits`` when the client allows it, and the client
    asks the server for ``server_max_window_bits``; each side always compresses with at most its own
    limit. ``server_no_context_takeover``/``client_no_context_takeover`` make each message independent
    (less memory between messages, a worse ratio on small similar messages). ``memory_level`` (1-9) and
    ``compression_level`` (0-9, -1 zlib's default) tune zlib's compressor; messages shorter than
    ``compress_threshold`` bytes are sent uncompressed, but for one sent in fragments (compressed whatever
    its size: its first frame goes out before its size is known).
    """

    server_max_window_bits: int | None = 12
    client_max_window_bits: int | None = 12
    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    memory_level: int = 2
    compression_level: int = 7
    compress_threshold: int = 128

    def __post_init__(self) -> None:
        for name in ("server_max_window_bits", "client_max_window_bits"):
            bits = getattr(self, name)
            # RFC 7692 allows 8, but zlib cannot deflate with a 256-byte window and websockets refuses it.
            if bits is not None and (isinstance(bits, bool) or not isinstance(bits, int) or not 9 <= bits <= 15):
                raise ValueError(f"{name} must be between 9 and 15, or None")
        _check_deflate_settings(self.compression_level, self.memory_level, self.compress_threshold)
        # zlib refuses some combinations only when the compressor is built: find out now, not mid-connection.
        zlib.compressobj(
            self.compression_level, zlib.DEFLATED, -max(self.server_max_window_bits or 15, 9), self.memory_level
        )

    def client_factory(self) -> ClientPerMessageDeflate:
        """The client's offer: our window limit announced, the server's requested."""
        return ClientPerMessageDeflate(
            server_no_context_takeover=self.server_no_context_takeover,
            client_no_context_takeover=self.client_no_context_takeover,
            server_max_window_bits=self.server_max_window_bits,
            client_max_window_bits=self.client_max_window_bits if self.client_max_window_bits is not None else True,
            compress_threshold=self.compress_threshold,
            compression_level=self.compression_level,
            memory_level=self.memory_level,
        )

    def server_factory(self) -> ServerPerMessageDeflate:
        """The server's preferences, applied to whatever the client offers."""
        return ServerPerMessageDeflate(
            server_no_context_takeover=self.server_no_context_takeover,
            client_no_context_takeover=self.client_no_context_takeover,
            server_max_window_bits=self.server_max_window_bits,
            client_max_window_bits=self.client_max_window_bits,
            compress_threshold=self.compress_threshold,
            compression_level=self.compression_level,
            memory_level=self.memory_level,
        )


Compression = Literal["deflate"] | Deflate | None
"""What ``compression=`` accepts: ``"deflate"`` (the measured defaults), a :class:`Deflate`, or None."""


def extension_factories(
    compression: Compression, role: Literal["client", "server"], extensions: Sequence[Any] | None = None
) -> Sequence[Any]:
    """The extension factories a connection of ``role`` offers or accepts.

    ``extensions`` (factories such as :class:`~wscodec.extensions.ServerPerMessageDeflate`, as in
    websockets) replaces what ``compression`` would give, for full control.
    """
    if extensions is not None:
        factories = tuple(extensions)
        for factory in factories:
            _check_factory(factory, role)
        return factories
    if compression is None:
        return ()
    if compression == "deflate":
        compression = Deflate()
    if not isinstance(compression, Deflate):
        raise ValueError(f"unsupported compression {compression!r}: use 'deflate', a Deflate(...), or None")
    return (compression.client_factory() if role == "client" else compression.server_factory(),)


def _check_factory(factory: Any, role: Literal["client", "server"]) -> None:
    """A factory of ``role``, or TypeError when the server or client is made, not a 500 for every client
    (or a failed connect) later. Duck-typed: any object with a factory's ``name`` and methods will do, not
    only a subclass of ours."""
    needs = ("offer", "accept") if role == "client" else ("negotiate",)
    if isinstance(getattr(factory, "name", None), str) and all(callable(getattr(factory, n, None)) for n in needs):
        return
    if isinstance(factory, Deflate):
        raise TypeError("a Deflate is compression=Deflate(...), not an item of extensions=")
    kind = "ClientExtensionFactory" if role == "client" else "ServerExtensionFactory"
    raise TypeError(f"extensions= takes {role} extension factories ({kind}), not {type(factory).__name__}")
