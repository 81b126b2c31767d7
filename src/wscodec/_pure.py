"""The kernels in pure Python: the reference semantics, and the fallback where nothing compiled.

Every name here has a twin in ``_speedups.pyx`` with the same signature, results and exceptions (messages
included); ``tests/test_kernels.py`` and the fuzz target hold the two to that. No per-byte Python loops:
masking is one big-integer XOR over the whole payload and UTF-8 goes through the C codec, with the one
early check the codec leaves out done by hand.
"""

from __future__ import annotations

import codecs
import operator
import os
import struct
from typing import Any

from .errors import PayloadTooBig, ProtocolError

__all__ = [
    "Frame",
    "FrameDecoder",
    "Utf8Validator",
    "apply_mask",
    "apply_mask_inplace",
    "encode_frame",
    "validate_utf8",
]

_MAX_LENGTH = (1 << 63) - 1

# Mask keys for encode_frame(..., mask=True): one os.urandom call fills MASK_POOL_SIZE bytes, 1024 keys,
# instead of one system call per frame. Still the OS entropy source (RFC 6455 section 10.3); every key is
# used once, in the order os.urandom produced them (as the compiled twin); a forked child starts a fresh
# block. The keys wait in a list, last first: list.pop is atomic, so two threads never share a key.
MASK_POOL_SIZE = 4096
_mask_keys: list[bytes] = []


def _next_mask() -> bytes:
    try:
        return _mask_keys.pop()
    except IndexError:
        block = os.urandom(MASK_POOL_SIZE)
        if len(block) != MASK_POOL_SIZE:
            raise RuntimeError("os.urandom returned a short block") from None
        _mask_keys[:] = [block[i : i + 4] for i in range(MASK_POOL_SIZE - 4, -4, -4)]
        return _mask_keys.pop()


def _reset_mask_pool() -> None:
    """Drop the keys left in the pool (after fork, and for tests): the next key starts a fresh block."""
    _mask_keys.clear()


if hasattr(os, "register_at_fork"):  # POSIX; no fork elsewhere
    os.register_at_fork(after_in_child=_reset_mask_pool)
_utf8_decode = codecs.utf_8_decode
_from_bytes = int.from_bytes


def _as_bytes_view(data: Any) -> memoryview:
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    return view


def _check_mask(mask: Any) -> bytes:
    key = bytes(memoryview(mask))  # a bytes-like object only: bytes(4) would be a zero key
    if len(key) != 4:
        raise ValueError("mask must be 4 bytes")
    return key


def _xor(view: memoryview | bytes, key: bytes, n: int) -> bytes:
    repeated = key * (n >> 2) + key[: n & 3]
    return (_from_bytes(view, "little") ^ _from_bytes(repeated, "little")).to_bytes(n, "little")


def apply_mask(data: Any, mask: Any) -> bytes:
    """Return ``data`` XORed with the 4-byte ``mask`` repeated (RFC 6455 section 5.3)."""
    key = _check_mask(mask)
    view = _as_bytes_view(data)
    n = view.nbytes
    if n == 0:
        return b""
    return _xor(view, key, n)


def apply_mask_inplace(buffer: Any, mask: Any, offset: int = 0) -> None:
    """XOR ``buffer[offset:]`` in place with ``mask``, the mask's first byte applying at ``offset``."""
    key = _check_mask(mask)
    view = memoryview(buffer)
    if view.readonly:
        raise TypeError("buffer is read-only")
    view = _as_bytes_view(view)
    n = view.nbytes
    if offset < 0 or offset > n:
        raise ValueError("offset out of range")
    if offset == n:
        return
    segment = view[offset:]
    segment[:] = _xor(segment, key, n - offset)


# Allowed range of the second byte of a sequence, by lead byte (RFC 3629 section 4), and its length.
def _second_byte_range(lead: int) -> tuple[int, int, int]:
    if 0xC2 <= lead <= 0xDF:
        return 0x80, 0xBF, 2
    if lead == 0xE0:
        return 0xA0, 0xBF, 3
    if lead == 0xED:
        return 0x80, 0x9F, 3
    if 0xE1 <= lead <= 0xEF:
        return 0x80, 0xBF, 3
    if lead == 0xF0:
        return 0x90, 0xBF, 4
    if 0xF1 <= lead <= 0xF3:
        return 0x80, 0xBF, 4
    if lead == 0xF4:
        return 0x80, 0x8F, 4
    return 1, 0, 0


def _is_valid_prefix(tail: bytes) -> bool:
    """True if ``tail`` (what the codec held back) can still start a valid character.

    CPython's decoder already rejects most impossible prefixes early, but holds back a surrogate prefix
    such as ``ED A0``; RFC 6455 section 8.1 wants that failure now, not at the end of the message.
    """
    low, high, need = _second_byte_range(tail[0])
    if len(tail) >= need:
        return False
    if len(tail) > 1 and not low <= tail[1] <= high:
        return False
    return not (len(tail) > 2 and not 0x80 <= tail[2] <= 0xBF)


def validate_utf8(data: Any) -> bool:
    """True if ``data`` is complete, strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF)."""
    try:
        _utf8_decode(data, "strict", True)
    except UnicodeDecodeError:
        return False
    except BufferError:  # not contiguous: the codec takes a copy (so does the compiled twin)
        return validate_utf8(memoryview(data).tobytes())
    return True


class Utf8Validator:
    """Incremental strict UTF-8 check across fragments; fails at the first impossible byte."""

    __slots__ = ("_pending", "_valid")

    def __init__(self) -> None:
        self._pending = b""
        self._valid = True

    def feed(self, data: Any) -> bool:
        """Check one more chunk; False as soon as the text so far cannot be valid UTF-8."""
        if not self._valid:
            memoryview(data)  # same TypeError as the compiled twin for a non-buffer
            return False
        if type(data) is not bytes:
            view = memoryview(data)
            if not view.c_contiguous:
                data = view.tobytes()  # the codec takes no strided view (the compiled twin copies it too)
            elif view.itemsize != 1 or view.ndim != 1:
                data = view.cast("B")  # the codec counts bytes: so must len() and slices below
        if self._pending:
            data = self._pending + bytes(data)
        try:
            _, consumed = _utf8_decode(data, "strict", False)
        except UnicodeDecodeError:
            self._valid = False
            return False
        tail = bytes(data[consumed:]) if consumed < len(data) else b""
        if tail and not _is_valid_prefix(tail):
            self._valid = False
            return False
        self._pending = tail
        return True

    def finish(self) -> bool:
        """True if everything fed so far is valid and ends on a character boundary."""
        return self._valid and not self._pending

    def reset(self) -> None:
        """Forget everything fed so far, ready for the next message."""
        self._pending = b""
        self._valid = True


class Frame:
    """One decoded frame: opcode, unmasked payload and the header bits."""

    __slots__ = ("fin", "opcode", "payload", "rsv1", "rsv2", "rsv3")

    def __init__(
        self,
        opcode: int,
        payload: bytes,
        fin: bool = True,
        rsv1: bool = False,
        rsv2: bool = False,
        rsv3: bool = False,
    ) -> None:
        self.opcode = opcode
        self.payload = payload
        self.fin = fin
        self.rsv1 = rsv1
        self.rsv2 = rsv2
        self.rsv3 = rsv3

    def __eq__(self, other: object) -> bool:
        if not hasattr(other, "opcode") or not hasattr(other, "rsv3"):
            return NotImplemented
        theirs: Any = other
        return bool(
            self.opcode == theirs.opcode
            and self.payload == theirs.payload
            and self.fin == theirs.fin
            and self.rsv1 == theirs.rsv1
            and self.rsv2 == theirs.rsv2
            and self.rsv3 == theirs.rsv3
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Frame(opcode={self.opcode}, payload={self.payload[:32]!r}{'...' if len(self.payload) > 32 else ''}, "
            f"fin={self.fin}, rsv1={self.rsv1}, rsv2={self.rsv2}, rsv3={self.rsv3})"
        )


def _check_role(role: str) -> bool:
    if role == "server":
        return True
    if role == "client":
        return False
    raise ValueError("role must be 'server' or 'client'")


class FrameDecoder:
    """Turns a byte stream into frames, enforcing every frame-level rule of RFC 6455 section 5.

    ``role`` is the side this decoder runs on: a server requires masked frames, a client unmasked ones.
    ``max_frame_size`` (None: no limit) bounds data frames, checked on the header before any payload is
    buffered; control frames may carry their 125 bytes (RFC 6455 section 5.5) whatever the limit.
    ``merge_continuations=True`` folds a run of continuation frames (no RSV bit) into the unfinished data
    frame before them in the same :meth:`feed`, so a read full of tiny fragments yields one frame, not one
    object per fragment; the merged frame's ``fin`` is the last one's, its payload stays within
    ``max_frame_size`` (a continuation that would overflow it starts a new frame).
    """

    __slots__ = (
        "_buffer",
        "_error",
        "_expect_mask",
        "_max",
        "_merge",
        "_record_bytes",
        "_record_count",
        "_record_setters",
        "_record_types",
        "_rsv_allowed",
        "max_frame_size",
        "role",
    )

    def __init__(
        self,
        role: str = "server",
        max_frame_size: int | None = 1 << 20,
        *,
        allow_rsv1: bool = False,
        allow_rsv2: bool = False,
        allow_rsv3: bool = False,
        merge_continuations: bool = False,
    ) -> None:
        self._expect_mask = _check_role(role)
        if max_frame_size is not None and not max_frame_size >= 0:  # (NaN too)
            raise ValueError("max_frame_size must be >= 0 or None")
        self.role = role
        self.max_frame_size = max_frame_size
        self._max = _MAX_LENGTH if max_frame_size is None else max_frame_size
        self._rsv_allowed = (0x40 if allow_rsv1 else 0) | (0x20 if allow_rsv2 else 0) | (0x10 if allow_rsv3 else 0)
        self._buffer = bytearray()
        self._error: ProtocolError | None = None
        self._merge = bool(merge_continuations)
        # feed_messages: the record types of the last call and their slots' setters (looked up once per pair)
        self._record_types: tuple[type, type] | None = None
        self._record_setters: tuple[Any, Any, Any, Any] = (None, None, None, None)
        # Records made by feed_messages since the decoder was created, and their payload bytes: the
        # Connection's message counters (see Connection.messages_received).
        self._record_count = 0
        self._record_bytes = 0

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame."""
        return len(self._buffer)

    def _partial(self) -> tuple[int, int, int] | None:
        """(first header byte, header size, payload length) of the frame in progress, once its header is here."""
        if self._error is not None:
            return None
        buf = self._buffer
        n = len(buf)
        if n < 2:
            return None
        b1 = buf[1]
        length = b1 & 0x7F
        header = 2
        if length == 126:
            header = 4
        elif length == 127:
            header = 10
        if b1 & 0x80:
            header += 4
        if n < header:
            return None
        if length == 126:
            length = (buf[2] << 8) | buf[3]
        elif length == 127:
            length = _from_bytes(buf[2:10], "big")
        return buf[0], header, length

    def partial_header(self) -> int:
        """The first header byte (FIN, RSV bits, opcode) of the frame being received, -1 if none has a
        complete header yet. With :meth:`partial_payload`, lets a caller check a frame while it arrives."""
        partial = self._partial()
        return -1 if partial is None else partial[0]

    def partial_length(self) -> int:
        """The payload length the frame being received declares, -1 if none has a complete header yet: a
        caller adding it to the message so far can refuse a message too large before its payload comes."""
        partial = self._partial()
        return -1 if partial is None else partial[2]

    def partial_payload(self, start: int = 0) -> bytes:
        """The unmasked payload received so far of the frame in progress, from offset ``start``."""
        start = max(operator.index(start), 0)  # (any int: past the end gives b"", as in the twin)
        partial = self._partial()
        if partial is None:
            return b""
        _, header, length = partial
        buf = self._buffer
        received = min(len(buf) - header, length)
        if start >= received:
            return b""
        n = received - start
        segment = memoryview(buf)[header + start : header + received]
        if not buf[1] & 0x80:
            return bytes(segment)
        key = bytes(buf[header - 4 : header])
        shift = start & 3
        return _xor(segment, key[shift:] + key[:shift], n)

    def feed(self, data: Any) -> list[Frame]:
        """Every frame completed by ``data``; a partial frame is kept for the next call.

        On a violation raises :class:`ProtocolError` whose ``frames`` holds the valid frames before it;
        the decoder then stays failed and raises the same error again.
        """
        if self._error is not None:
            raise _replay(self._error)
        buf = self._buffer
        buf += data
        end = len(buf)
        pos = 0
        frames: list[Frame] = []
        merge = self._merge
        target: Frame | None = None  # the unfinished data frame continuations merge into
        merged: bytearray | None = None  # its payload so far, once something merged
        try:
            while end - pos >= 2:
                b0 = buf[pos]
                b1 = buf[pos + 1]
                _check_first_bytes(b0, b1, self._rsv_allowed, self._expect_mask)
                length = b1 & 0x7F
                header = 2
                if length == 126:
                    if end - pos < 4:
                        break
                    length = (buf[pos + 2] << 8) | buf[pos + 3]
                    header = 4
                elif length == 127:
                    if end - pos < 10:
                        break
                    length = _from_bytes(buf[pos + 2 : pos + 10], "big")
                    header = 10
                    if length >> 63:
                        raise ProtocolError("payload length has its most significant bit set")
                if length > self._max and not b0 & 0x08:  # control frames: 125 bytes, checked above
                    raise PayloadTooBig(f"frame payload of {length} bytes exceeds the limit of {self._max} bytes")
                if b1 & 0x80:
                    start = pos + header + 4
                    if end - start < length:
                        break
                    payload = (
                        _xor(memoryview(buf)[start : start + length], bytes(buf[start - 4 : start]), length)
                        if length
                        else b""
                    )
                else:
                    start = pos + header
                    if end - start < length:
                        break
                    payload = bytes(buf[start : start + length])
                pos = start + length
                if (
                    target is not None
                    and not b0 & 0x7F  # a continuation without RSV bits
                    and len(target.payload if merged is None else merged) + length <= self._max
                ):
                    if merged is None:
                        merged = bytearray(target.payload)
                    merged += payload
                    if b0 & 0x80:
                        target.payload = bytes(merged)
                        target.fin = True
                        target = merged = None
                    continue
                if merged is not None:
                    assert target is not None
                    target.payload = bytes(merged)
                    merged = None
                frame = Frame(b0 & 0x0F, payload, bool(b0 & 0x80), bool(b0 & 0x40), bool(b0 & 0x20), bool(b0 & 0x10))
                frames.append(frame)
                target = frame if merge and not b0 & 0x88 else None  # an unfinished data frame
        except ProtocolError as exc:
            if merged is not None:
                assert target is not None
                target.payload = bytes(merged)
            self._error = exc
            del buf[:]
            exc.frames = frames
            raise
        if merged is not None:
            assert target is not None
            target.payload = bytes(merged)
        if pos:
            del buf[:pos]
        return frames

    def feed_messages(self, data: Any, in_message: Any, text_type: type, binary_type: type) -> tuple[list[Any], int]:
        """:meth:`feed`, with the common case already turned into the caller's message records.

        Each whole (``fin``, no RSV bit) text or binary frame outside a fragmented message becomes
        ``text_type`` (``data``: the payload decoded, strict UTF-8) or ``binary_type`` (``data``: the payload
        bytes), built as ``object.__new__`` plus the ``data`` slot's setter (and ``final`` set to True when
        the type has that slot too, for fragment records), so frozen slotted records work; every other frame
        stays a :class:`Frame`, in order. ``in_message``: a fragmented message is in
        progress when the call starts. Returns ``(items, frames)``: the list and how many Frames it holds.

        Invalid UTF-8 in such a frame raises ``ProtocolError(..., 1007)`` whose ``frames`` holds the items
        before it; like any violation, it leaves the decoder failed.
        """
        types = self._record_types
        if types is None or text_type is not types[0] or binary_type is not types[1]:
            if not isinstance(text_type, type) or not isinstance(binary_type, type):
                raise TypeError("text_type and binary_type must be classes")
            self._record_setters = (
                text_type.__dict__["data"].__set__,
                binary_type.__dict__["data"].__set__,
                text_type.__dict__.get("final"),
                binary_type.__dict__.get("final"),
            )
            self._record_types = (text_type, binary_type)
        set_text, set_binary, text_final, binary_final = self._record_setters
        error: ProtocolError | None = None
        try:
            items: list[Any] = self.feed(data)
        except ProtocolError as exc:
            items = exc.frames
            error = exc
        out: list[Any] = []
        append = out.append
        inside = bool(in_message)
        left = 0
        for frame in items:
            opcode = frame.opcode
            if inside:
                if opcode == 0 and frame.fin:
                    inside = False
            elif opcode == 1 or opcode == 2:
                if frame.fin and not frame.rsv1:
                    if opcode == 1:
                        try:
                            text = frame.payload.decode()
                        except UnicodeDecodeError:
                            error = ProtocolError("invalid UTF-8 in text message", 1007)
                            self._error = error
                            error.frames = out
                            del self._buffer[:]  # nothing held once failed, as after feed()'s errors
                            raise error from None
                        record = _new_record(text_type)
                        set_text(record, text)
                        if text_final is not None:
                            text_final.__set__(record, True)
                    else:
                        record = _new_record(binary_type)
                        set_binary(record, frame.payload)
                        if binary_final is not None:
                            binary_final.__set__(record, True)
                    append(record)
                    self._record_count += 1
                    self._record_bytes += len(frame.payload)
                    continue
                if not frame.fin:
                    inside = True  # compressed or not: a fragmented message is open
            append(frame)
            left += 1
        if error is not None:
            error.frames = out
            raise error
        return out, left


_new_record: Any = object.__new__


def _replay(error: ProtocolError) -> ProtocolError:
    again = type(error)(str(error), error.close_code)
    return again


def _check_first_bytes(b0: int, b1: int, rsv_allowed: int, expect_mask: bool) -> None:
    rsv = b0 & 0x70 & ~rsv_allowed
    if rsv:
        bit = 1 if rsv & 0x40 else 2 if rsv & 0x20 else 3
        raise ProtocolError(f"reserved bit RSV{bit} set without an extension that defines it")
    opcode = b0 & 0x0F
    if 3 <= opcode <= 7 or opcode >= 11:
        raise ProtocolError(f"reserved opcode {opcode:#x}")
    if opcode >= 8:
        if not b0 & 0x80:
            raise ProtocolError("fragmented control frame")
        if b1 & 0x7F > 125:
            raise ProtocolError("control frame with an extended payload length (at most 125 bytes, in 7 bits)")
    if expect_mask:
        if not b1 & 0x80:
            raise ProtocolError("unmasked frame from client")
    elif b1 & 0x80:
        raise ProtocolError("masked frame from server")


_VALID_OPCODES = frozenset({0, 1, 2, 8, 9, 10})


def encode_frame(
    opcode: int,
    payload: Any,
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
    mask: Any = None,
) -> bytes:
    """One frame on the wire. ``mask``: None/False (server side), 4 bytes, or True for a random key."""
    opcode = int(opcode)
    if opcode not in _VALID_OPCODES:
        raise ValueError(f"invalid opcode {opcode}")
    view = _as_bytes_view(payload)
    n = view.nbytes
    if opcode >= 8:
        if n > 125:
            raise ValueError("control frame payload longer than 125 bytes")
        if not fin:
            raise ValueError("control frames cannot be fragmented")
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0) | (0x10 if rsv3 else 0) | opcode
    if mask is None or mask is False:
        mask_bit = 0
        key = b""
    else:
        key = _next_mask() if mask is True else _check_mask(mask)
        mask_bit = 0x80
    if n < 126:
        header = bytes((b0, mask_bit | n))
    elif n < 65536:
        header = bytes((b0, mask_bit | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((b0, mask_bit | 127)) + n.to_bytes(8, "big")
    if not key:
        return header + view.tobytes() if n else header
    return header + key + (_xor(view, key, n) if n else b"")


ZERO_COPY_MIN = 16384
_pack_header16 = struct.Struct("!BBH").pack
_pack_header64 = struct.Struct("!BBQ").pack


class FrameQueue:
    """The outgoing half of a connection: frames waiting for the transport, and the one-step send path.

    ``Connection`` derives from this class so that its hottest calls, ``send_text``/``send_binary`` of a
    plain message and ``data_to_send``, run here without a Python frame: a 16-byte message costs little
    more than ``encode_frame`` itself. The subclass decides when that path applies by setting
    ``_fast_send`` (0: never; 1: a server frame, unmasked; 2: a client frame, masked with a pooled key)
    and supplies ``_send_slow(opcode, data)`` for every other case (checks, compression, fragmentation).
    Large ``bytes`` payloads of a server are queued beside their header, not copied (see
    :meth:`data_to_send_buffers`).
    """

    # Slots, as the compiled class's fields: ``Connection`` keeps all its state in slots too.
    __slots__ = (
        "_binary_record",
        "_bytes_out",
        "_fast_receive",
        "_fast_send",
        "_messages_out",
        "_out",
        "_text_record",
    )

    def __init__(self) -> None:
        self._out: list[bytes] = []
        self._fast_send = 0
        # Messages queued and their payload bytes (text as UTF-8, before compression): counted here by the
        # one-step path, and by the subclass for every other send (see Connection.messages_sent).
        self._messages_out = 0
        self._bytes_out = 0
        # The one-step receive path: the subclass's FrameDecoder while it applies (else None), and the record
        # types its whole messages become.
        self._fast_receive: Any = None
        self._text_record: Any = None
        self._binary_record: Any = None

    def _receive_slow(self, data: Any) -> list[Any]:
        """Every read the one-step path does not take; the subclass (``Connection``) implements it."""
        raise NotImplementedError("FrameQueue._receive_slow is implemented by Connection")

    def _received(self, items: list[Any], left: int, error: ProtocolError | None) -> list[Any]:
        """The rest of a read after the decoder; the subclass (``Connection``) implements it."""
        raise NotImplementedError("FrameQueue._received is implemented by Connection")

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Any]:
        """Feed bytes read from the transport; ``b""`` means the peer closed it (EOF).

        Returns the events those bytes complete, in order. A peer's protocol violation does not raise:
        the events before it are returned, then :class:`~wscodec.events.ProtocolViolation` and
        :class:`~wscodec.events.Closed`, with the right Close frame already queued.
        """
        decoder: FrameDecoder | None = self._fast_receive
        if decoder is None or not data:
            return self._receive_slow(data)
        try:
            items, left = decoder.feed_messages(data, False, self._text_record, self._binary_record)
        except ProtocolError as exc:
            return self._received(exc.frames, -1, exc)
        if left or decoder.partial_header() >= 0:
            return self._received(items, left, None)
        return items

    def _send_slow(self, opcode: int, data: Any) -> None:
        """Every send the one-step path does not take; the subclass (``Connection``) implements it."""
        raise NotImplementedError("FrameQueue._send_slow is implemented by Connection")

    def send_text(self, text: str) -> None:
        """Queue a text message."""
        fast = self._fast_send
        if fast and type(text) is str:
            data = text.encode()
            n = len(data)
            if fast == 2:
                self._out.append(encode_frame(1, data, mask=True))
            elif n < ZERO_COPY_MIN:
                self._out.append(encode_frame(1, data))
            else:
                self._out += (_pack_header16(0x81, 126, n) if n < 65536 else _pack_header64(0x81, 127, n), data)
            self._messages_out += 1
            self._bytes_out += n
        else:
            self._send_slow(1, text)

    def send_binary(self, data: bytes | bytearray | memoryview) -> None:
        """Queue a binary message. Any buffer; a large ``bytes`` on a server goes out without a copy
        through :meth:`data_to_send_buffers`, anything else is copied (or masked) into its frame once."""
        fast = self._fast_send
        if not fast:
            self._send_slow(2, data)
            return
        if fast == 2:
            self._out.append(encode_frame(2, data, mask=True))
        elif type(data) is not bytes or len(data) < ZERO_COPY_MIN:
            self._out.append(encode_frame(2, data))
        else:
            n = len(data)
            self._out += (_pack_header16(0x82, 126, n) if n < 65536 else _pack_header64(0x82, 127, n), data)
        self._messages_out += 1
        self._bytes_out += len(data) if type(data) is bytes else memoryview(data).nbytes

    def data_to_send(self) -> bytes:
        """Everything queued for the transport since the last call, as one bytes object.

        A large message queued without a copy (see :meth:`data_to_send_buffers`) is copied here; an I/O
        layer that can write several buffers at once (``transport.writelines``) uses that method instead.
        """
        out = self._out
        if len(out) == 1:
            return out.pop()
        if not out:
            return b""
        data = b"".join(out)
        out.clear()
        return data

    def data_to_send_buffers(self) -> list[bytes]:
        """Everything queued since the last call, as a list of buffers to write in order, for
        ``transport.writelines`` or ``socket.sendmsg``: the zero-copy form of :meth:`data_to_send`.

        An unmasked data frame of at least :data:`~wscodec.connection.ZERO_COPY_MIN` bytes whose payload
        is ``bytes`` (immutable, so it cannot change before it is written) is queued as its header followed
        by the payload object itself, never copied; everything else is one buffer per frame. Empty list:
        nothing.
        """
        out = self._out
        if not out:
            return []
        self._out = []
        return out
