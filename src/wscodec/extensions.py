"""WebSocket extensions: the ``Sec-WebSocket-Extensions`` grammar and permessage-deflate (RFC 7692).

Three kinds of objects:

* :class:`Extension` is a *negotiated* extension, owned by one connection: it transforms the payload of
  incoming and outgoing data messages. :class:`PerMessageDeflate` is the one wscodec ships.
* :class:`ClientExtensionFactory` offers an extension in the client's request and turns the server's
  answer into an :class:`Extension` (:class:`ClientPerMessageDeflate`).
* :class:`ServerExtensionFactory` reads the client's offers and picks one it can honour
  (:class:`ServerPerMessageDeflate`).
"""

from __future__ import annotations

import abc
import importlib
import os
import re
import zlib
from collections.abc import Sequence
from typing import Any

from .errors import (
    DuplicateParameter,
    InvalidHandshake,
    InvalidHeaderFormat,
    InvalidParameterName,
    InvalidParameterValue,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
)

__all__ = [
    "ClientExtensionFactory",
    "ClientPerMessageDeflate",
    "Extension",
    "ExtensionHeader",
    "ExtensionParams",
    "PerMessageDeflate",
    "ServerExtensionFactory",
    "ServerPerMessageDeflate",
    "build_extension_header",
    "parse_extension_header",
]

ExtensionParams = list[tuple[str, str | None]]
"""The parameters of one extension offer or response, in order: ``(name, value or None)``."""

ExtensionHeader = list[tuple[str, ExtensionParams]]
"""A parsed ``Sec-WebSocket-Extensions`` header: ``(extension name, parameters)`` in order."""

# --------------------------------------------------------------------------- header grammar

# RFC 7230 section 3.2.6: token = 1*tchar; quoted-string with quoted-pair.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED = re.compile(r'"((?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*)"')
_ESCAPE = re.compile(r"\\(.)")
_OWS = re.compile(r"[ \t]*")


def _is_token(value: str) -> bool:
    return _TOKEN.fullmatch(value) is not None


def _parse_one(header: str, result: ExtensionHeader) -> None:
    def fail(what: str) -> InvalidHandshake:
        return InvalidHeaderFormat(
            "Sec-WebSocket-Extensions",
            what,
            header,
            pos,
            message=f"invalid Sec-WebSocket-Extensions header {header!r}: {what} at {pos}",
        )

    pos = 0
    end = len(header)

    def skip_ows(p: int) -> int:
        match = _OWS.match(header, p)
        assert match is not None
        return match.end()

    pos = skip_ows(pos)
    while pos < end:
        if header[pos] == ",":  # empty list element (RFC 7230 section 7): ignored
            pos = skip_ows(pos + 1)
            continue
        match = _TOKEN.match(header, pos)
        if match is None:
            raise fail("expected an extension token")
        name = match.group()
        pos = skip_ows(match.end())
        params: ExtensionParams = []
        while pos < end and header[pos] == ";":
            pos = skip_ows(pos + 1)
            match = _TOKEN.match(header, pos)
            if match is None:
                raise fail("expected a parameter name")
            param = match.group()
            value: str | None = None
            pos = skip_ows(match.end())
            if pos < end and header[pos] == "=":
                pos = skip_ows(pos + 1)
                if pos < end and header[pos] == '"':
                    match = _QUOTED.match(header, pos)
                    if match is None:
                        raise fail("unterminated or invalid quoted string")
                    value = _ESCAPE.sub(r"\1", match.group(1))
                    # RFC 6455 section 9.1: a quoted value must still be a token once unquoted.
                    if not _is_token(value):
                        raise fail(f"quoted value {value!r} is not a token")
                else:
                    match = _TOKEN.match(header, pos)
                    if match is None:
                        raise fail("expected a parameter value")
                    value = match.group()
                pos = skip_ows(match.end())
            params.append((param, value))
        result.append((name, params))
        if pos < end:
            if header[pos] != ",":
                raise fail("expected ',' or ';'")
            pos = skip_ows(pos + 1)


def parse_extension_header(values: Sequence[str]) -> ExtensionHeader:
    """Parse the values of every ``Sec-WebSocket-Extensions`` field (RFC 6455 section 9.1).

    Quoted parameter values are unquoted; a malformed header raises :class:`InvalidHandshake`.
    """
    result: ExtensionHeader = []
    for value in values:
        _parse_one(value, result)
    return result


def build_extension_header(extensions: Sequence[tuple[str, Sequence[tuple[str, str | None]]]]) -> str:
    """The ``Sec-WebSocket-Extensions`` value for ``extensions`` (values that are not tokens get quoted)."""
    parts = []
    for name, params in extensions:
        if not _is_token(name):
            raise ValueError(f"invalid extension name {name!r}")
        items = [name]
        for param, value in params:
            if not _is_token(param):
                raise ValueError(f"invalid extension parameter name {param!r}")
            if value is None:
                items.append(param)
            elif _is_token(value):
                items.append(f"{param}={value}")
            else:
                if any(c in value for c in "\r\n\x00"):
                    raise ValueError(f"invalid extension parameter value {value!r}")
                escaped = value.replace("\\", "\\\\").replace('"', '\\"')
                items.append(f'{param}="{escaped}"')
        parts.append("; ".join(items))
    return ", ".join(parts)


# --------------------------------------------------------------------------- interfaces


class Extension(abc.ABC):
    """A negotiated extension, owned by one connection, transforming data message payloads.

    wscodec applies extensions the way permessage-deflate works, through the RSV1 bit, and so applies at most
    one per connection: a server declines a second extension once one is negotiated, and a client refuses
    a response that accepts two. The bit marks the messages the extension transformed:

    * incoming, on a data message whose first frame has RSV1 set, the connection calls
      :meth:`decode_start` (``True``) then :meth:`decode` on each of its frames in order; a message without
      RSV1 is delivered as it came;
    * outgoing, :meth:`encode` on each whole message (unless sent with ``compress=False``), whose second
      result sets RSV1 on its first frame. A message sent with ``send_fragment()`` is transformed only if
      the extension has ``encode_fragment(data, final)``, as :class:`PerMessageDeflate` does, and goes
      untransformed otherwise.

    ``rsv1`` must stay True: a subclass that sets it False is refused (TypeError) when it is defined, and an
    instance that sets it False when it is negotiated, since it would be agreed with the peer and never
    applied.
    """

    #: The extension token, as in ``Sec-WebSocket-Extensions``.
    name: str = ""
    #: The extension gives the RSV1 bit a meaning (the frame decoder then lets it through). Always True.
    rsv1: bool = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _check_applicable(cls)

    def decode_start(self, rsv1: bool) -> None:  # noqa: B027 - optional hook
        """A new incoming data message with RSV1 set starts (``rsv1`` is True)."""

    @abc.abstractmethod
    def decode(self, data: bytes, final: bool, max_size: int | None) -> bytes:
        """Transform one incoming frame's payload; ``final`` marks the message's last frame.

        ``max_size`` is how many more output bytes this message may have (None: no limit); exceeding it
        raises :class:`~wscodec.errors.PayloadTooBig`.
        """

    @abc.abstractmethod
    def encode(self, data: bytes) -> tuple[bytes, bool]:
        """Transform a whole outgoing message: ``(payload, rsv1 bit of its first frame)``."""

    @abc.abstractmethod
    def response_params(self) -> ExtensionParams:
        """The parameters a server puts in its response to describe this negotiated extension."""

    def __str__(self) -> str:
        return build_extension_header([(self.name, self.response_params())])


def _check_applicable(extension: Extension | type[Extension]) -> None:
    """Raise TypeError for an extension (class or instance) that wscodec could negotiate but not apply: one
    whose ``rsv1`` is False (see :class:`Extension`)."""
    if not getattr(extension, "rsv1", False):
        what = extension.__name__ if isinstance(extension, type) else type(extension).__name__
        raise TypeError(
            f"{what}: wscodec applies an extension only through the RSV1 bit, as permessage-deflate does, so "
            "rsv1 must be True; with rsv1 = False it would be negotiated with the peer and never applied"
        )


class ClientExtensionFactory(abc.ABC):
    """Client side: offers an extension and accepts (or refuses) the server's response."""

    name: str = ""

    @abc.abstractmethod
    def offer_params(self) -> ExtensionParams:
        """The parameters of the offer in the request."""

    def offer(self) -> tuple[str, ExtensionParams]:
        """``(name, parameters)`` of the offer, ready for :func:`build_extension_header`."""
        return self.name, self.offer_params()

    @abc.abstractmethod
    def accept(self, params: ExtensionParams) -> Extension:
        """The negotiated extension for the server's response ``params``; raises :class:`InvalidHandshake`
        if the response is not acceptable."""


class ServerExtensionFactory(abc.ABC):
    """Server side: picks the first of the client's offers (all of this extension) it can honour."""

    name: str = ""

    @abc.abstractmethod
    def negotiate(self, offers: list[ExtensionParams]) -> tuple[ExtensionParams, Extension] | None:
        """``(response parameters, negotiated extension)`` for the first acceptable offer, or None."""


# --------------------------------------------------------------------------- permessage-deflate

_EMPTY_BLOCK = b"\x00\x00\xff\xff"
# A peer may end DEFLATE streams mid-message (BFINAL, RFC 7692 section 7.2.3.4), at the end of each fragment
# say. Each new stream costs a decompressor: a message may hold this many, plus one per _BYTES_PER_STREAM
# bytes of its compressed data before the stream starts (1007 beyond), so that two-byte streams cannot cost
# hundreds of times what inflating the same bytes costs. Counted by position in the message, not per read
# or frame: how TCP splits the bytes does not matter.
_FREE_STREAMS = 8
_BYTES_PER_STREAM = 16
# Longer pieces are inflated this many bytes at a time, so that what follows the end of a stream, which
# zlib copies aside (unused_data), is never more than this.
_INFLATE_CHUNK = 16384


# --------------------------------------------------------------------------- DEFLATE implementation
#
# Any zlib-compatible module does: python-isal (Intel ISA-L) and zlib-ng compress a typical JSON message 10-20x
# faster than the standard library's zlib at level 6 and inflate 1.5-3x faster, and both read and write plain
# DEFLATE, so peers see no difference. The fastest one installed is the default; WSCODEC_DEFLATE=zlib|zlib-ng|isal
# picks one (an unknown or missing name is an error, not a silent fallback).


def _load_deflate_backend() -> tuple[str, Any]:
    wanted = os.environ.get("WSCODEC_DEFLATE", "").strip().lower()
    if wanted not in ("", "isal", "zlib-ng", "zlib"):
        raise ValueError(f"WSCODEC_DEFLATE must be 'zlib', 'zlib-ng' or 'isal', not {wanted!r}")
    for name in ("isal", "zlib-ng", "zlib") if not wanted else (wanted,):
        try:
            if name == "isal":
                return name, importlib.import_module("isal.isal_zlib")
            if name == "zlib-ng":
                return name, importlib.import_module("zlib_ng.zlib_ng")
        except ImportError:
            if wanted:
                raise
    return "zlib", zlib


#: The DEFLATE implementation in use: ``"isal"``, ``"zlib-ng"`` or ``"zlib"``.
DEFLATE_BACKEND, _deflate_module = _load_deflate_backend()
_DEFLATE_ERRORS: tuple[type[BaseException], ...] = (zlib.error, _deflate_module.error)


def _compressobj(level: int, wbits: int, memory_level: int) -> Any:
    """A raw-DEFLATE compressor (``wbits`` 8-15) from the fastest implementation that honours ``level`` and
    the window.

    ISA-L has four levels of its own (0-3) and no stored-only mode: zlib's level 0 stays with zlib, 1-3 map to
    ISA-L 1, 4-7 (the default 6, also asked for as -1) to 2 and 8-9 to 3.

    An agreed 8-bit window (256 bytes, RFC 7692 section 7.2.1: a MUST NOT exceed) stays with the standard
    library's zlib: its deflate refuses 8 for raw DEFLATE, and with 9 it never reaches back further than
    512 - 262 = 250 bytes (its MAX_DIST), so the stream fits in 256. ISA-L with 9 uses all 512 bytes.
    """
    module = _deflate_module
    if wbits == 8:
        return zlib.compressobj(level, zlib.DEFLATED, -9, memory_level)
    if module is zlib or level == 0:
        return zlib.compressobj(level, zlib.DEFLATED, -wbits, memory_level)
    if DEFLATE_BACKEND == "isal":
        if level < 0:
            level = 6  # zlib's Z_DEFAULT_COMPRESSION
        level = 1 if level <= 3 else 2 if level <= 7 else 3
    return module.compressobj(level, module.DEFLATED, -wbits, memory_level)


def _decompressobj(wbits: int) -> Any:
    """A raw-DEFLATE decompressor for windows of up to 2**wbits bytes."""
    return _deflate_module.decompressobj(wbits=-wbits)


_PARAM_NAMES = frozenset(
    {"server_no_context_takeover", "client_no_context_takeover", "server_max_window_bits", "client_max_window_bits"}
)
_WINDOW_BITS = {str(bits): bits for bits in range(8, 16)}  # RFC 7692 section 7.1.2: 8-15, no leading zeros


def _check_bits(name: str, value: int | None) -> None:
    """An int in 8..15 (or None): 12.5 or "12" would go out in every offer or answer, which peers refuse."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 8 <= value <= 15):
        raise ValueError(f"{name} must be an integer between 8 and 15")


def _check_deflate_settings(compression_level: int, memory_level: int, compress_threshold: int) -> None:
    """Refuse the compressor settings that the standard library's zlib would refuse only when a connection
    builds its first compressor (mid-handshake or at the first large send), and a negative threshold.

    The ranges are zlib's whichever implementation runs: ISA-L maps any level onto its own four, and would
    let through a level that fails the day the same code runs with zlib or zlib-ng.
    """
    ranges = (("compression_level", compression_level, -1, 9), ("memory_level", memory_level, 1, 9))
    for name, value, low, high in ranges:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{name} must be between {low} and {high}")
    if isinstance(compress_threshold, bool) or not isinstance(compress_threshold, (int, float)):
        raise TypeError(f"compress_threshold must be a number, not {type(compress_threshold).__name__}")
    if not compress_threshold >= 0:  # (NaN included)
        raise ValueError("compress_threshold must be >= 0")


class PerMessageDeflate(Extension):
    """permessage-deflate once negotiated (RFC 7692): raw DEFLATE per message, RSV1 on compressed ones.

    ``is_server`` says which side we are: the ``server_*`` parameters then describe what we send and the
    ``client_*`` ones what we receive (the other way round on a client). Window bits None mean 15.
    Messages shorter than ``compress_threshold`` bytes (>= 0) are sent uncompressed, except a message sent in
    fragments, which is compressed whatever its size (its first frame goes out before its size is known);
    ``compression_level`` (0-9, -1 zlib's default) and ``memory_level`` (1-9) tune the compressor, with
    zlib's ranges whichever DEFLATE implementation runs (ValueError otherwise, here).
    """

    name = "permessage-deflate"
    rsv1 = True

    def __init__(
        self,
        *,
        is_server: bool,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = None,
        client_max_window_bits: int | None = None,
        compress_threshold: int = 128,
        compression_level: int = 6,
        memory_level: int = 8,
    ) -> None:
        _check_bits("server_max_window_bits", server_max_window_bits)
        _check_bits("client_max_window_bits", client_max_window_bits)
        _check_deflate_settings(compression_level, memory_level, compress_threshold)
        self.is_server = is_server
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.compress_threshold = compress_threshold
        self.compression_level = compression_level
        self.memory_level = memory_level
        if is_server:
            local_bits, remote_bits = server_max_window_bits, client_max_window_bits
            self.local_no_context_takeover = server_no_context_takeover
            self.remote_no_context_takeover = client_no_context_takeover
        else:
            local_bits, remote_bits = client_max_window_bits, server_max_window_bits
            self.local_no_context_takeover = client_no_context_takeover
            self.remote_no_context_takeover = server_no_context_takeover
        # An 8-bit window compresses with zlib's 9, whose matches stay within 256 bytes (see _compressobj).
        # Peers compress 8 with 9 too (zlib refuses 8 for raw DEFLATE), so we inflate with at least 9: a
        # larger window decodes every smaller-window stream.
        self._compress_bits = local_bits or 15
        self._decompress_bits = max(remote_bits or 15, 9)
        self._compressor: Any = None
        self._decompressor: Any = None
        self._decoding = False  # the incoming message in progress is compressed
        self._position = 0  # compressed bytes of the incoming message inflated so far
        self._streams = 1  # DEFLATE streams the incoming message has begun

    def __repr__(self) -> str:
        role = "server" if self.is_server else "client"
        return f"<PerMessageDeflate {role} {self.response_params()!r}>"

    def response_params(self) -> ExtensionParams:
        params: ExtensionParams = []
        if self.server_no_context_takeover:
            params.append(("server_no_context_takeover", None))
        if self.client_no_context_takeover:
            params.append(("client_no_context_takeover", None))
        if self.server_max_window_bits is not None:
            params.append(("server_max_window_bits", str(self.server_max_window_bits)))
        if self.client_max_window_bits is not None:
            params.append(("client_max_window_bits", str(self.client_max_window_bits)))
        return params

    # ------------------------------------------------------------------ incoming

    def decode_start(self, rsv1: bool) -> None:
        self._decoding = rsv1
        self._position = 0
        self._streams = 1
        if rsv1 and (self._decompressor is None or self.remote_no_context_takeover):
            self._decompressor = _decompressobj(self._decompress_bits)

    def decode(self, data: bytes, final: bool, max_size: int | None) -> bytes:
        if not self._decoding:
            return bytes(data)
        assert self._decompressor is not None, "decode() before decode_start(True)"
        output = self._inflate(data, max_size)
        if final:
            # Our trailer ends the message's last block; a stream that ended with the message (BFINAL on
            # its last byte) has no block to end, and the trailer alone would open one never finished.
            if not self._decompressor.eof:
                remaining = None if max_size is None else max_size - len(output)
                output += self._inflate(_EMPTY_BLOCK, remaining)
            self._decoding = False
            if self._decompressor.eof or self.remote_no_context_takeover:
                self._decompressor = None  # free the window now; decode_start makes a fresh one
        return output

    def _inflate(self, data: bytes, max_size: int | None) -> bytes:
        """Inflate ``data``, the next bytes of the message.

        A peer may end a DEFLATE stream in the middle of a message with a block that has BFINAL set
        (RFC 7692 section 7.2.3.4): what follows is a new stream, started with an empty window as the next
        message would be. The padding byte of that section's "Hello" is the header of an empty stored
        block, which our trailer completes; a peer that flushes each fragment that way sends a whole
        stream after it. Nothing after the end of a stream is skipped: it decodes or fails the
        connection (1007). See _FREE_STREAMS for how many streams a message may hold."""
        if len(data) <= _INFLATE_CHUNK:
            return self._inflate_piece(data, max_size)
        view = memoryview(data)
        parts = []
        produced = 0
        for start in range(0, len(view), _INFLATE_CHUNK):
            left = None if max_size is None else max_size - produced
            part = self._inflate_piece(view[start : start + _INFLATE_CHUNK], left)
            produced += len(part)
            parts.append(part)
        return b"".join(parts)

    def _inflate_piece(self, data: Any, max_size: int | None) -> bytes:
        end = self._position + len(data)
        # More than one stream in a piece is rare: their outputs are joined once at the end (adding each to
        # the last would copy a large first stream's output again per tiny stream after it).
        outputs: list[bytes] = []
        produced = 0
        while data:
            decompressor = self._decompressor
            if decompressor.eof:
                self._streams += 1
                position = end - len(data)
                if self._streams > _FREE_STREAMS + position // _BYTES_PER_STREAM:
                    raise ProtocolError(
                        f"{self._streams} DEFLATE streams in the first {position} compressed bytes of a message",
                        1007,
                    )
                decompressor = self._decompressor = _decompressobj(self._decompress_bits)
            output = self._inflate_stream(decompressor, data, None if max_size is None else max_size - produced)
            data = decompressor.unused_data if decompressor.eof else b""
            if not data and not outputs:  # (nearly always: one stream, nothing to join)
                self._position = end
                return output
            outputs.append(output)
            produced += len(output)
        self._position = end
        return b"".join(outputs)

    @staticmethod
    def _inflate_stream(decompressor: Any, data: bytes, max_size: int | None) -> bytes:
        try:
            if max_size is None:
                whole: bytes = decompressor.decompress(data)
                return whole
            # At most one byte beyond the limit is ever produced: the bomb is refused while inflating.
            output: bytes = decompressor.decompress(data, max(max_size, 0) + 1)  # never 0: that means unbounded
        except _DEFLATE_ERRORS as exc:
            raise ProtocolError(f"invalid compressed data: {exc}", 1007) from None
        if len(output) > max_size or decompressor.unconsumed_tail:
            # The error is kept (ProtocolViolation.error) and its traceback references this frame: without
            # the del, up to max_size inflated bytes would live as long as the error, past the connection.
            del output
            # (Not the bytes that were left: that depends on how the reads split the message.)
            raise PayloadTooBig("decompressed message is larger than the size limit")
        return output

    # ------------------------------------------------------------------ outgoing

    def _compressor_for(self, data: bytes) -> tuple[Any, bytes]:
        """The compressor, made at the first message sent; the data as zlib takes it. zlib takes only
        contiguous buffers: a strided memoryview is copied (sent uncompressed, it would go out)."""
        compressor = self._compressor
        if compressor is None:
            compressor = self._compressor = _compressobj(self.compression_level, self._compress_bits, self.memory_level)
        if isinstance(data, memoryview) and not data.c_contiguous:
            data = data.tobytes()
        return compressor, data

    def encode(self, data: bytes) -> tuple[bytes, bool]:
        if len(data) < self.compress_threshold:
            return (data if isinstance(data, bytes) else bytes(data)), False
        compressor, data = self._compressor_for(data)
        # A full flush also resets the LZ77 window: the next message cannot refer to this one.
        flush = zlib.Z_FULL_FLUSH if self.local_no_context_takeover else zlib.Z_SYNC_FLUSH
        payload = compressor.compress(data) + compressor.flush(flush)
        assert payload.endswith(_EMPTY_BLOCK)
        return payload[:-4], True

    def encode_fragment(self, data: bytes, final: bool) -> bytes:
        """Compress one fragment of a message sent in pieces (RFC 7692 section 6.1): each fragment ends on
        a sync flush so the peer can inflate it at once; the last one drops the flush's empty block, as a
        whole message does. The caller sets RSV1 on the first frame only."""
        compressor, data = self._compressor_for(data)
        if not final:
            piece: bytes = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
            return piece
        flush = zlib.Z_FULL_FLUSH if self.local_no_context_takeover else zlib.Z_SYNC_FLUSH
        payload: bytes = compressor.compress(data) + compressor.flush(flush)
        return payload[:-4]


def _parse_deflate_params(params: ExtensionParams, *, response: bool) -> dict[str, int | bool]:
    """Validate permessage-deflate parameters (RFC 7692 section 7): known, not repeated, valid values.

    Returns the parameters by name: True for a valueless one, the window bits otherwise. Raises
    :class:`InvalidHandshake`.
    """
    seen: dict[str, int | bool] = {}
    for name, value in params:
        if name not in _PARAM_NAMES:
            raise InvalidParameterName(name, message=f"unknown permessage-deflate parameter {name!r}")
        if name in seen:
            raise DuplicateParameter(name, message=f"duplicate permessage-deflate parameter {name!r}")
        if name.endswith("no_context_takeover"):
            if value is not None:
                raise InvalidParameterValue(name, value, message=f"permessage-deflate parameter {name} takes no value")
            seen[name] = True
        elif value is None:
            # Only the client's offer may carry client_max_window_bits without a value.
            if response or name == "server_max_window_bits":
                raise InvalidParameterValue(name, None, message=f"permessage-deflate parameter {name} needs a value")
            seen[name] = True
        else:
            bits = _WINDOW_BITS.get(value)
            if bits is None:
                raise InvalidParameterValue(
                    name, value, message=f"invalid value {value!r} for permessage-deflate parameter {name}"
                )
            seen[name] = bits
    return seen


class ClientPerMessageDeflate(ClientExtensionFactory):
    """Client side permessage-deflate: what to offer, and which server responses to accept.

    ``client_max_window_bits=True`` offers the parameter without a value (the server may then pick a
    limit); an int announces our own limit; None leaves it out. ``compress_threshold``,
    ``compression_level`` and ``memory_level`` are checked here, as :class:`PerMessageDeflate` would.
    """

    name = "permessage-deflate"

    def __init__(
        self,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = None,
        client_max_window_bits: int | bool | None = True,
        *,
        compress_threshold: int = 128,
        compression_level: int = 6,
        memory_level: int = 8,
    ) -> None:
        _check_bits("server_max_window_bits", server_max_window_bits)
        if client_max_window_bits is not True and client_max_window_bits is not False:
            _check_bits("client_max_window_bits", client_max_window_bits)
        _check_deflate_settings(compression_level, memory_level, compress_threshold)
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits or None
        self.compress_threshold = compress_threshold
        self.compression_level = compression_level
        self.memory_level = memory_level

    def offer_params(self) -> ExtensionParams:
        params: ExtensionParams = []
        if self.server_no_context_takeover:
            params.append(("server_no_context_takeover", None))
        if self.client_no_context_takeover:
            params.append(("client_no_context_takeover", None))
        if self.server_max_window_bits is not None:
            params.append(("server_max_window_bits", str(self.server_max_window_bits)))
        if self.client_max_window_bits is True:
            params.append(("client_max_window_bits", None))
        elif self.client_max_window_bits is not None:
            params.append(("client_max_window_bits", str(self.client_max_window_bits)))
        return params

    def accept(self, params: ExtensionParams) -> PerMessageDeflate:
        """The negotiated extension for the server's response (RFC 7692 section 7.1); raises
        :class:`InvalidHandshake` if the server answered something we did not allow."""
        got = _parse_deflate_params(params, response=True)
        if self.server_no_context_takeover and "server_no_context_takeover" not in got:
            raise NegotiationError("permessage-deflate: server ignored server_no_context_takeover")
        server_bits = got.get("server_max_window_bits")
        if self.server_max_window_bits is not None:
            if server_bits is None:
                raise NegotiationError("permessage-deflate: server ignored server_max_window_bits")
            if server_bits > self.server_max_window_bits:
                raise NegotiationError(
                    f"permessage-deflate: server_max_window_bits={server_bits} is more than the "
                    f"{self.server_max_window_bits} requested"
                )
        client_bits = got.get("client_max_window_bits")
        offered = self.client_max_window_bits
        if client_bits is not None:
            if offered is None:
                raise NegotiationError("permessage-deflate: client_max_window_bits in response but not offered")
            if offered is not True and client_bits > offered:
                raise NegotiationError(
                    f"permessage-deflate: client_max_window_bits={client_bits} is more than the {offered} offered"
                )
        elif offered is not True:
            client_bits = offered  # we announced our own limit: keep to it
        return PerMessageDeflate(
            is_server=False,
            server_no_context_takeover="server_no_context_takeover" in got,
            client_no_context_takeover=self.client_no_context_takeover or "client_no_context_takeover" in got,
            server_max_window_bits=int(server_bits) if server_bits is not None else None,
            client_max_window_bits=int(client_bits) if client_bits is not None else None,
            compress_threshold=self.compress_threshold,
            compression_level=self.compression_level,
            memory_level=self.memory_level,
        )


class ServerPerMessageDeflate(ServerExtensionFactory):
    """Server side permessage-deflate with the server's own preferences.

    ``server_no_context_takeover``/``server_max_window_bits`` limit what we send (a client's request for
    less is honoured by lowering); ``client_no_context_takeover`` asks the client to reset its context,
    ``client_max_window_bits`` asks it for a smaller window (only possible when the client offered the
    parameter; otherwise the offer is accepted without that limit). ``compress_threshold``,
    ``compression_level`` and ``memory_level`` are checked here, as :class:`PerMessageDeflate` would: not
    in each client's handshake.
    """

    name = "permessage-deflate"

    def __init__(
        self,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = None,
        client_max_window_bits: int | None = None,
        *,
        compress_threshold: int = 128,
        compression_level: int = 6,
        memory_level: int = 8,
    ) -> None:
        _check_bits("server_max_window_bits", server_max_window_bits)
        _check_bits("client_max_window_bits", client_max_window_bits)
        _check_deflate_settings(compression_level, memory_level, compress_threshold)
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.compress_threshold = compress_threshold
        self.compression_level = compression_level
        self.memory_level = memory_level

    def negotiate(self, offers: list[ExtensionParams]) -> tuple[ExtensionParams, PerMessageDeflate] | None:
        """Accept the first offer we can honour (RFC 7692 sections 7.1.1, 7.1.2); None if there is none."""
        for params in offers:
            try:
                got = _parse_deflate_params(params, response=False)
            except InvalidHandshake:
                continue  # a malformed offer is declined; the next one may do
            server_bits: int | None = self.server_max_window_bits
            requested = got.get("server_max_window_bits")
            if requested is not None:
                server_bits = min(int(requested), server_bits or 15)
            client_offer = got.get("client_max_window_bits")
            client_bits: int | None = None
            if client_offer is not None:
                client_bits = self.client_max_window_bits
                if client_offer is not True:  # the client's own announced limit
                    client_bits = min(int(client_offer), client_bits or 15)
            extension = PerMessageDeflate(
                is_server=True,
                server_no_context_takeover=self.server_no_context_takeover or "server_no_context_takeover" in got,
                client_no_context_takeover=self.client_no_context_takeover or "client_no_context_takeover" in got,
                server_max_window_bits=server_bits,
                client_max_window_bits=client_bits,
                compress_threshold=self.compress_threshold,
                compression_level=self.compression_level,
                memory_level=self.memory_level,
            )
            return extension.response_params(), extension
        return None
