# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# cython: embedsignature=True, embedsignature.format=clinic
"""The kernels compiled: the same names, signatures, results and exceptions as ``_pure.py``.

Hot loops work on raw pointers: masking and UTF-8 validation are C helpers (``_speedups_impl.h``) with a
portable 8-byte-word path and an AVX2 path picked at run time. Every error path that is not a plain
protocol violation (odd argument types, non-contiguous buffers) falls back on the same Python calls the
pure twin makes, so both raise the very same exception with the very same message.
"""

cimport cython
from cpython.buffer cimport (
    PyBUF_FORMAT,
    PyBUF_ND,
    PyBUF_SIMPLE,
    PyBUF_WRITABLE,
    PyBuffer_Release,
)
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_Clear, PyErr_Occurred
from cpython.list cimport PyList_GET_SIZE
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy, memset

import codecs
import os

from .errors import PayloadTooBig, ProtocolError

cdef extern from "Python.h":
    # no "except -1": a refused buffer sends us down the pure twin's path, which raises its own error
    int PyObject_GetBuffer(object obj, Py_buffer *view, int flags)
    Py_ssize_t _as_ssize_t "PyLong_AsSsize_t"(object obj)

cdef extern from "_speedups_impl.h" nogil:
    void ws_init_cpu()
    uint32_t ws_load_key(const unsigned char *k)
    uint32_t ws_rotate_key(uint32_t key, size_t shift)
    void ws_mask(unsigned char *dst, const unsigned char *src, size_t n, uint32_t key)
    void ws_mask_words(unsigned char *dst, const unsigned char *src, size_t n, uint32_t key)
    int ws_utf8_valid(const unsigned char *s, size_t n)
    uint32_t ws_utf8_feed(uint32_t state, const unsigned char *s, size_t n)
    uint32_t WS_UTF8_FAIL
    int ws_utf8_set_impl(int impl)
    const char *WS_UTF8_SIMD128

ws_init_cpu()

__all__ = [
    "Frame",
    "FrameDecoder",
    "Utf8Validator",
    "apply_mask",
    "apply_mask_inplace",
    "encode_frame",
    "validate_utf8",
]

# Mask keys for encode_frame(..., mask=True): one os.urandom call fills MASK_POOL_SIZE bytes, 1024 keys,
# instead of one system call per frame. Still the OS entropy source (RFC 6455 section 10.3); every key is
# used once; a forked child starts a fresh block instead of replaying its parent's keys. os.urandom is
# looked up at each refill (once per 1024 frames), so the pure twin and this one draw the same keys from
# the same os.urandom output, in the same order.
MASK_POOL_SIZE = 4096
cdef unsigned char _mask_pool[4096]
cdef Py_ssize_t _mask_pos = 4096


cdef int _refill_mask_pool() except -1:
    global _mask_pos
    cdef bytes block = _os.urandom(4096)
    if PyBytes_GET_SIZE(block) != 4096:
        raise RuntimeError("os.urandom returned a short block")
    memcpy(_mask_pool, PyBytes_AS_STRING(block), 4096)
    _mask_pos = 0
    return 0


cdef inline int _next_mask(unsigned char *dst) except -1:
    """Copy the next unused key of the pool to dst (no GIL release between reading and advancing)."""
    global _mask_pos
    if _mask_pos > 4096 - 4:
        _refill_mask_pool()
    memcpy(dst, _mask_pool + _mask_pos, 4)
    memset(_mask_pool + _mask_pos, 0, 4)  # a used key does not linger in memory
    _mask_pos += 4
    return 0


def _reset_mask_pool():
    """Drop the keys left in the pool (after fork, and for tests): the next key starts a fresh block."""
    global _mask_pos
    memset(_mask_pool, 0, 4096)
    _mask_pos = 4096


if hasattr(os, "register_at_fork"):  # POSIX; no fork elsewhere
    os.register_at_fork(after_in_child=_reset_mask_pool)

cdef object _ZERO = 0  # the cached small int: the default offset, tested by identity
cdef object _MAX_LENGTH = (1 << 63) - 1
cdef uint64_t _C_MAX_LENGTH = (<uint64_t>1 << 63) - 1
cdef object _utf8_decode = codecs.utf_8_decode
cdef object _os = os
cdef object _ProtocolError = ProtocolError
cdef object _PayloadTooBig = PayloadTooBig


# ------------------------------------------------------------------------------------------------------
# Argument helpers. Fast path: a C-contiguous 1-D byte buffer; anything else goes the pure twin's way.

cdef object _as_bytes_view(object data):
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    return view


cdef inline int _get_bytes(object obj, Py_buffer *buf) except -1:
    """Fill ``buf`` with obj's bytes (1 on success) or return 0 when the pure path must decide."""
    if PyObject_GetBuffer(obj, buf, PyBUF_ND | PyBUF_FORMAT) != 0:
        PyErr_Clear()
        return 0
    if buf.ndim != 1 or buf.itemsize != 1:
        PyBuffer_Release(buf)
        return 0
    return 1


cdef object _slow_bytes(object obj):
    """What the pure twin sees of a buffer that missed the fast path (raises what it raises)."""
    return _as_bytes_view(obj).tobytes()


cdef inline uint32_t _key_of(object mask) except? 0xFFFFFFFF:
    cdef bytes key
    if type(mask) is bytes and len(<bytes>mask) == 4:
        return ws_load_key(<const unsigned char *>PyBytes_AS_STRING(mask))
    key = bytes(memoryview(mask))  # a bytes-like object only: bytes(4) would be a zero key
    if len(key) != 4:
        raise ValueError("mask must be 4 bytes")
    return ws_load_key(<const unsigned char *>PyBytes_AS_STRING(key))


cdef bytes _masked(const unsigned char *src, Py_ssize_t n, uint32_t key):
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n)
    cdef unsigned char *dst = <unsigned char *>PyBytes_AS_STRING(out)
    if n >= 65536:
        with nogil:
            ws_mask(dst, src, <size_t>n, key)
    else:
        ws_mask(dst, src, <size_t>n, key)
    return out


# ------------------------------------------------------------------------------------------------------
# Masking

@cython.binding(False)
def apply_mask(data, mask):
    """Return ``data`` XORed with the 4-byte ``mask`` repeated (RFC 6455 section 5.3)."""
    cdef uint32_t key = _key_of(mask)
    cdef Py_buffer buf
    cdef bytes tmp
    cdef Py_ssize_t n
    if type(data) is bytes:  # immutable: no buffer export needed, even without the GIL
        n = PyBytes_GET_SIZE(data)
        if n == 0:
            return b""
        return _masked(<const unsigned char *>PyBytes_AS_STRING(data), n, key)
    if _get_bytes(data, &buf):
        try:
            if buf.len == 0:
                return b""
            return _masked(<const unsigned char *>buf.buf, buf.len, key)
        finally:
            PyBuffer_Release(&buf)
    tmp = _slow_bytes(data)
    if len(tmp) == 0:
        return b""
    return _masked(<const unsigned char *>PyBytes_AS_STRING(tmp), len(tmp), key)


@cython.binding(False)
def apply_mask_inplace(buffer, mask, offset=0):
    """XOR ``buffer[offset:]`` in place with ``mask``, the mask's first byte applying at ``offset``."""
    cdef uint32_t key = _key_of(mask)
    cdef Py_buffer buf
    cdef Py_ssize_t off = -1, n
    cdef unsigned char *p
    if offset is _ZERO:
        off = 0
    elif type(offset) is int:
        off = _as_ssize_t(offset)
        if off == -1 and PyErr_Occurred():
            PyErr_Clear()  # far out of range: the slow path says so
            off = -1
        elif off < 0:
            off = -2  # negative: the slow path raises (after the checks that come first)
    if off >= 0 and type(buffer) is bytearray and PyByteArray_GET_SIZE(buffer) < 65536:
        # small bytearray, GIL held throughout: nobody can resize it under us
        n = PyByteArray_GET_SIZE(buffer)
        if off > n:
            raise ValueError("offset out of range")
        p = <unsigned char *>PyByteArray_AS_STRING(buffer)
        ws_mask(p + off, p + off, <size_t>(n - off), key)
        return None
    if off >= 0 and PyObject_GetBuffer(buffer, &buf, PyBUF_WRITABLE | PyBUF_ND | PyBUF_FORMAT) == 0:
        if buf.ndim == 1 and buf.itemsize == 1:
            try:
                n = buf.len
                if off > n:
                    raise ValueError("offset out of range")
                p = <unsigned char *>buf.buf
                if n - off >= 65536:
                    with nogil:  # the export pins the buffer
                        ws_mask(p + off, p + off, <size_t>(n - off), key)
                else:
                    ws_mask(p + off, p + off, <size_t>(n - off), key)
                return None
            finally:
                PyBuffer_Release(&buf)
        PyBuffer_Release(&buf)
    else:
        PyErr_Clear()
    # the pure twin's path, errors included
    view = memoryview(buffer)
    if view.readonly:
        raise TypeError("buffer is read-only")
    view = _as_bytes_view(view)
    n = view.nbytes
    if offset < 0 or offset > n:
        raise ValueError("offset out of range")
    if offset == n:
        return None
    segment = view[offset:]
    cdef bytes data = segment.tobytes()
    segment[:] = _masked(<const unsigned char *>PyBytes_AS_STRING(data), len(data), key)
    return None


# ------------------------------------------------------------------------------------------------------
# UTF-8

@cython.binding(False)
def validate_utf8(data):
    """True if ``data`` is complete, strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF)."""
    cdef Py_buffer buf
    cdef int ok
    if type(data) is bytes and PyBytes_GET_SIZE(data) < 65536:
        return ws_utf8_valid(<const unsigned char *>PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data)) != 0
    if PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE) != 0:
        PyErr_Clear()
        _utf8_decode(data, "strict", True)  # raises what the pure twin raises
        return True
    try:
        if buf.len >= 65536:
            with nogil:
                ok = ws_utf8_valid(<const unsigned char *>buf.buf, <size_t>buf.len)
        else:
            ok = ws_utf8_valid(<const unsigned char *>buf.buf, <size_t>buf.len)
    finally:
        PyBuffer_Release(&buf)
    return ok != 0


_UTF8_IMPLS = ("scalar", WS_UTF8_SIMD128.decode(), "avx2")
#: The UTF-8 validator this CPU runs (picked at import from what it offers): "avx2", "sse4", "neon" or "scalar".
UTF8_IMPL = _UTF8_IMPLS[ws_utf8_set_impl(-1)]


def _utf8_use(name):
    """Run the UTF-8 kernels on path ``name`` ("scalar", "sse4", "neon", "avx2") if this CPU has it (tests);
    returns the path in use. Every path gives the same answers: the tests check each against the C codec."""
    if name not in _UTF8_IMPLS:
        return _UTF8_IMPLS[ws_utf8_set_impl(-1)]
    return _UTF8_IMPLS[ws_utf8_set_impl(_UTF8_IMPLS.index(name))]


@cython.final
cdef class Utf8Validator:
    """Utf8Validator()
--

Incremental strict UTF-8 check across fragments; fails at the first impossible byte."""

    cdef uint32_t _state

    def __init__(self):
        self._state = 0

    def feed(self, data):
        """Check one more chunk; False as soon as the text so far cannot be valid UTF-8."""
        cdef Py_buffer buf
        cdef bytes joined
        cdef uint32_t state = self._state
        if state == WS_UTF8_FAIL:
            memoryview(data)  # same TypeError as the pure twin for a non-buffer
            return False
        if type(data) is bytes and PyBytes_GET_SIZE(data) < 65536:  # the common case, without the buffer protocol
            state = ws_utf8_feed(state, <const unsigned char *>PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data))
            self._state = state
            return state != WS_UTF8_FAIL
        if PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE) != 0:
            PyErr_Clear()
            if self._state != 0:
                joined = bytes(data)  # the pure twin does pending + bytes(data)
                return self.feed(joined)
            _utf8_decode(data, "strict", False)  # raises what the pure twin raises
            return True
        try:
            if buf.len >= 65536:
                with nogil:
                    self._state = ws_utf8_feed(self._state, <const unsigned char *>buf.buf, <size_t>buf.len)
            else:
                self._state = ws_utf8_feed(self._state, <const unsigned char *>buf.buf, <size_t>buf.len)
        finally:
            PyBuffer_Release(&buf)
        return self._state != WS_UTF8_FAIL

    def finish(self):
        """True if everything fed so far is valid and ends on a character boundary."""
        return self._state == 0

    def reset(self):
        """Forget everything fed so far, ready for the next message."""
        self._state = 0


# ------------------------------------------------------------------------------------------------------
# Frames

@cython.freelist(512)
@cython.final
@cython.no_gc
cdef class Frame:
    """Frame(opcode, payload, fin=True, rsv1=False, rsv2=False, rsv3=False)
--

One decoded frame: opcode, unmasked payload and the header bits."""

    # Not tracked by the cyclic GC: a frame holds an int, bytes and bools, and thousands of them per feed would
    # otherwise trigger collections that cost as much as the decoding (a Frame made to hold itself would leak).

    cdef public object opcode
    cdef public object payload
    cdef public object fin
    cdef public object rsv1
    cdef public object rsv2
    cdef public object rsv3

    def __init__(self, opcode, payload, fin=True, rsv1=False, rsv2=False, rsv3=False):
        self.opcode = opcode
        self.payload = payload
        self.fin = fin
        self.rsv1 = rsv1
        self.rsv2 = rsv2
        self.rsv3 = rsv3

    def __eq__(self, other):
        if not hasattr(other, "opcode") or not hasattr(other, "rsv3"):
            return NotImplemented
        return (
            self.opcode == other.opcode
            and self.payload == other.payload
            and self.fin == other.fin
            and self.rsv1 == other.rsv1
            and self.rsv2 == other.rsv2
            and self.rsv3 == other.rsv3
        )

    def __ne__(self, other):
        result = self.__eq__(other)
        if result is NotImplemented:
            return result
        return not result

    __hash__ = None

    def __repr__(self):
        return (
            f"Frame(opcode={self.opcode}, payload={self.payload[:32]!r}{'...' if len(self.payload) > 32 else ''}, "
            f"fin={self.fin}, rsv1={self.rsv1}, rsv2={self.rsv2}, rsv3={self.rsv3})"
        )


cdef object _check_role(object role):
    if role == "server":
        return True
    if role == "client":
        return False
    raise ValueError("role must be 'server' or 'client'")


cdef object _replay(object error):
    again = type(error)(str(error), error.close_code)
    return again


cdef int _check_first_bytes(unsigned int b0, unsigned int b1, unsigned int rsv_allowed, bint expect_mask) except -1:
    cdef unsigned int rsv = b0 & 0x70 & ~rsv_allowed
    cdef unsigned int opcode
    cdef int bit
    if rsv:
        bit = 1 if rsv & 0x40 else 2 if rsv & 0x20 else 3
        raise _ProtocolError(f"reserved bit RSV{bit} set without an extension that defines it")
    opcode = b0 & 0x0F
    if (3 <= opcode <= 7) or opcode >= 11:
        raise _ProtocolError(f"reserved opcode {opcode:#x}")
    if opcode >= 8:
        if not b0 & 0x80:
            raise _ProtocolError("fragmented control frame")
        if b1 & 0x7F > 125:
            raise _ProtocolError("control frame payload longer than 125 bytes")
    if expect_mask:
        if not b1 & 0x80:
            raise _ProtocolError("unmasked frame from client")
    elif b1 & 0x80:
        raise _ProtocolError("masked frame from server")
    return 0


@cython.final
cdef inline Frame _frame(unsigned int b0, bytes payload):
    cdef Frame frame = Frame.__new__(Frame)
    frame.opcode = <long>(b0 & 0x0F)
    frame.payload = payload
    frame.fin = True if b0 & 0x80 else False
    frame.rsv1 = True if b0 & 0x40 else False
    frame.rsv2 = True if b0 & 0x20 else False
    frame.rsv3 = True if b0 & 0x10 else False
    return frame


cdef class FrameDecoder:
    """FrameDecoder(role='server', max_frame_size=1048576, *, allow_rsv1=False, allow_rsv2=False, allow_rsv3=False, merge_continuations=False)
--

Turns a byte stream into frames, enforcing every frame-level rule of RFC 6455 section 5.

    ``role`` is the side this decoder runs on: a server requires masked frames, a client unmasked ones.
    ``max_frame_size`` (None: no limit) is checked on the header, before any payload is buffered.
    ``merge_continuations=True`` folds a run of continuation frames (no RSV bit) into the unfinished data
    frame before them in the same :meth:`feed`, so a read full of tiny fragments yields one frame, not one
    object per fragment; the merged frame's ``fin`` is the last one's, its payload stays within
    ``max_frame_size`` (a continuation that would overflow it starts a new frame).
    """

    cdef bytearray _buffer
    cdef object _error
    cdef bint _expect_mask
    # Where _parse stopped on a frame whose payload had not all arrived: its header size (mask included;
    # 0 if the header itself was incomplete) and payload length.
    cdef Py_ssize_t _stop_header
    cdef uint64_t _stop_length
    # A large frame being received: its payload is allocated once and each read is unmasked straight into
    # it, instead of piling reads up in _buffer and copying them again (see _start_payload).
    cdef bytes _payload
    cdef Py_ssize_t _payload_filled
    cdef Py_ssize_t _payload_header
    cdef uint32_t _payload_key
    cdef unsigned int _payload_b0
    cdef bint _payload_masked
    cdef object _max
    cdef uint64_t _cmax
    cdef unsigned int _rsv_allowed
    cdef bint _merge
    cdef public object max_frame_size
    cdef public object role

    def __init__(self, role="server", max_frame_size=1 << 20, *, allow_rsv1=False, allow_rsv2=False, allow_rsv3=False,
                 merge_continuations=False):
        self._expect_mask = _check_role(role)
        if max_frame_size is not None and max_frame_size < 0:
            raise ValueError("max_frame_size must be >= 0 or None")
        self.role = role
        self.max_frame_size = max_frame_size
        self._max = _MAX_LENGTH if max_frame_size is None else max_frame_size
        self._cmax = _C_MAX_LENGTH
        if max_frame_size is not None:
            try:
                limit = int(max_frame_size)  # lengths are integers: length > x  <=>  length > floor(x), x >= 0
            except (OverflowError, ValueError):
                limit = _MAX_LENGTH
            if limit < _MAX_LENGTH:
                self._cmax = <uint64_t>limit
        self._rsv_allowed = (0x40 if allow_rsv1 else 0) | (0x20 if allow_rsv2 else 0) | (0x10 if allow_rsv3 else 0)
        self._buffer = bytearray()
        self._error = None
        self._merge = True if merge_continuations else False

    @property
    def buffered(self):
        """Bytes held for an incomplete frame."""
        if self._payload is not None:
            return self._payload_header + self._payload_filled
        return PyByteArray_GET_SIZE(self._buffer)

    cdef Py_ssize_t _partial(self, uint64_t *length) except -2:
        """Header size of the frame in progress held in _buffer (its payload length in ``length``), or -1
        while its header is incomplete."""
        cdef Py_ssize_t n = PyByteArray_GET_SIZE(self._buffer)
        cdef const unsigned char *p = <const unsigned char *>PyByteArray_AS_STRING(self._buffer)
        cdef Py_ssize_t header = 2
        cdef unsigned int b1
        cdef int i
        if self._error is not None or n < 2:
            return -1
        b1 = p[1]
        length[0] = b1 & 0x7F
        if length[0] == 126:
            header = 4
        elif length[0] == 127:
            header = 10
        if b1 & 0x80:
            header += 4
        if n < header:
            return -1
        if length[0] == 126:
            length[0] = (<uint64_t>p[2] << 8) | p[3]
        elif length[0] == 127:
            length[0] = 0
            for i in range(2, 10):
                length[0] = (length[0] << 8) | p[i]
        return header

    def partial_header(self):
        """The first header byte (FIN, RSV bits, opcode) of the frame being received, -1 if none has a
        complete header yet. With :meth:`partial_payload`, lets a caller check a frame while it arrives."""
        cdef uint64_t length
        if self._payload is not None:
            return <long>self._payload_b0
        if self._partial(&length) < 0:
            return -1
        return <long>(<const unsigned char *>PyByteArray_AS_STRING(self._buffer))[0]

    def partial_payload(self, start=0):
        """The unmasked payload received so far of the frame in progress, from offset ``start``."""
        cdef uint64_t length
        cdef Py_ssize_t header, received, begin
        cdef const unsigned char *p
        cdef bytes out
        begin = max(<Py_ssize_t>start, 0)
        if self._payload is not None:
            if begin >= self._payload_filled:
                return b""
            return PyBytes_FromStringAndSize(PyBytes_AS_STRING(self._payload) + begin, self._payload_filled - begin)
        header = self._partial(&length)
        if header < 0:
            return b""
        p = <const unsigned char *>PyByteArray_AS_STRING(self._buffer)
        received = PyByteArray_GET_SIZE(self._buffer) - header
        if <uint64_t>received > length:
            received = <Py_ssize_t>length
        if begin >= received:
            return b""
        if not p[1] & 0x80:
            return PyBytes_FromStringAndSize(<const char *>p + header + begin, received - begin)
        out = PyBytes_FromStringAndSize(NULL, received - begin)
        ws_mask(<unsigned char *>PyBytes_AS_STRING(out), p + header + begin, <size_t>(received - begin),
                ws_rotate_key(ws_load_key(p + header - 4), <size_t>begin))
        return out

    cdef Py_ssize_t _parse(self, const unsigned char *p, Py_ssize_t end, list frames) except -1:
        """Decode every complete frame of p[0:end] into ``frames``; return the bytes consumed."""
        cdef Py_ssize_t pos = 0, start, header, size
        cdef unsigned int b0, b1
        cdef uint64_t length
        cdef bint expect_mask = self._expect_mask
        cdef unsigned int rsv_allowed = self._rsv_allowed
        cdef uint64_t cmax = self._cmax
        cdef bytes payload
        cdef Frame frame
        cdef Frame target = None  # with _merge: the unfinished data frame continuations merge into
        cdef bytearray merged = None  # its payload so far, once something merged into it
        cdef bint merge = self._merge
        if merge and PyList_GET_SIZE(frames):  # a large frame completed just before may be continued
            frame = <Frame>frames[PyList_GET_SIZE(frames) - 1]
            if frame.fin is False and <long>frame.opcode < 8:
                target = frame
        self._stop_header = 0
        try:
            while end - pos >= 2:
                b0 = p[pos]
                b1 = p[pos + 1]
                # fast test: FIN or not, no RSV bit, data opcode, mask bit as the role wants; else the full check
                if (b0 & 0x7F) > 2 or ((b1 & 0x80) != 0) != expect_mask:
                    _check_first_bytes(b0, b1, rsv_allowed, expect_mask)
                length = b1 & 0x7F
                header = 2
                if length == 126:
                    if end - pos < 4:
                        break
                    length = (<uint64_t>p[pos + 2] << 8) | p[pos + 3]
                    header = 4
                elif length == 127:
                    if end - pos < 10:
                        break
                    length = (
                        (<uint64_t>p[pos + 2] << 56) | (<uint64_t>p[pos + 3] << 48) | (<uint64_t>p[pos + 4] << 40)
                        | (<uint64_t>p[pos + 5] << 32) | (<uint64_t>p[pos + 6] << 24) | (<uint64_t>p[pos + 7] << 16)
                        | (<uint64_t>p[pos + 8] << 8) | <uint64_t>p[pos + 9]
                    )
                    header = 10
                    if length >> 63:
                        raise _ProtocolError("payload length has its most significant bit set")
                if length > cmax:
                    raise _PayloadTooBig(f"frame payload of {length} bytes exceeds the limit of {self._max} bytes")
                if b1 & 0x80:
                    header += 4
                start = pos + header
                if end < start:
                    break
                if <uint64_t>(end - start) < length:
                    self._stop_header = header
                    self._stop_length = length
                    break
                if target is not None and (b0 & 0x7F) == 0:  # a continuation without RSV bits: merge it
                    size = PyBytes_GET_SIZE(target.payload) if merged is None else PyByteArray_GET_SIZE(merged)
                    if length > cmax - <uint64_t>size:  # (size <= cmax) the merged frame would be too big
                        if merged is not None:
                            target.payload = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(merged),
                                                                       PyByteArray_GET_SIZE(merged))
                            merged = None
                        target = None
                if target is not None and (b0 & 0x7F) == 0:
                    if merged is None:
                        merged = bytearray(target.payload)
                    size = PyByteArray_GET_SIZE(merged)
                    PyByteArray_Resize(merged, size + <Py_ssize_t>length)
                    if b1 & 0x80:
                        ws_mask(<unsigned char *>PyByteArray_AS_STRING(merged) + size, p + start, <size_t>length,
                                ws_load_key(p + start - 4))
                    else:
                        memcpy(PyByteArray_AS_STRING(merged) + size, p + start, <size_t>length)
                    pos = start + <Py_ssize_t>length
                    if b0 & 0x80:
                        target.payload = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(merged),
                                                                   PyByteArray_GET_SIZE(merged))
                        target.fin = True
                        target = None
                        merged = None
                    continue
                if merged is not None:
                    target.payload = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(merged), PyByteArray_GET_SIZE(merged))
                    merged = None
                if b1 & 0x80:
                    if length:
                        payload = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>length)
                        ws_mask(<unsigned char *>PyBytes_AS_STRING(payload), p + start, <size_t>length,
                                ws_load_key(p + start - 4))
                    else:
                        payload = b""
                else:
                    payload = PyBytes_FromStringAndSize(<const char *>p + start, <Py_ssize_t>length)
                frame = _frame(b0, payload)
                frames.append(frame)
                target = frame if merge and (b0 & 0x88) == 0 else None  # an unfinished data frame
                pos = start + <Py_ssize_t>length
        finally:
            if merged is not None:
                target.payload = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(merged), PyByteArray_GET_SIZE(merged))
        return pos

    cdef bint _start_payload(self, const unsigned char *p, Py_ssize_t n):
        """p[0:n] is an incomplete frame whose header _parse has checked: when the frame is large, allocate
        its payload now, unmask what has arrived into it and return True (the caller drops p[0:n]).

        Only for frames of at least 4 KiB (below, buffering is as cheap), and beyond 64 KiB only once an
        eighth of the payload is here: a peer cannot make us allocate much more than it has sent.
        """
        cdef Py_ssize_t header = self._stop_header
        cdef uint64_t length = self._stop_length
        cdef Py_ssize_t have
        cdef uint32_t key = 0
        if header == 0 or length < 4096:
            return False
        have = n - header
        if length > 65536 and length > 8 * <uint64_t>have:
            return False
        self._payload = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>length)
        self._payload_b0 = p[0]
        self._payload_header = header
        self._payload_masked = (p[1] & 0x80) != 0
        if self._payload_masked:
            key = ws_load_key(p + header - 4)
        self._payload_key = key
        self._payload_filled = 0
        self._fill_payload(p + header, have)
        return True

    cdef Py_ssize_t _fill_payload(self, const unsigned char *p, Py_ssize_t n):
        """Unmask (or copy) up to n bytes of p into the payload being received; return how many it took."""
        cdef Py_ssize_t filled = self._payload_filled
        cdef Py_ssize_t take = PyBytes_GET_SIZE(self._payload) - filled
        cdef unsigned char *dst = <unsigned char *>PyBytes_AS_STRING(self._payload) + filled
        if take > n:
            take = n
        if take:
            if self._payload_masked:
                ws_mask(dst, p, <size_t>take, ws_rotate_key(self._payload_key, <size_t>filled))
            else:
                memcpy(dst, p, <size_t>take)
        self._payload_filled = filled + take
        return take

    cdef Py_ssize_t _continue_payload(self, const unsigned char *p, Py_ssize_t n, list frames):
        """Feed p[0:n] to the payload being received; when complete, the frame joins ``frames``."""
        cdef Py_ssize_t took = self._fill_payload(p, n)
        cdef bytes payload
        if self._payload_filled == PyBytes_GET_SIZE(self._payload):
            payload = self._payload
            self._payload = None
            frames.append(_frame(self._payload_b0, payload))
        return took

    def feed(self, data):
        """Every frame completed by ``data``; a partial frame is kept for the next call.

        On a violation raises :class:`ProtocolError` whose ``frames`` holds the valid frames before it;
        the decoder then stays failed and raises the same error again.
        """
        cdef Py_buffer buf
        cdef bint have_buf = False
        cdef Py_ssize_t consumed, n, skip = 0
        cdef bytearray store = self._buffer
        cdef list frames = []
        if self._error is not None:
            raise _replay(self._error)
        if PyByteArray_GET_SIZE(store) == 0:
            if PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE) == 0:
                have_buf = True
            else:
                PyErr_Clear()
        if self._payload is not None:  # (then the store is empty)
            if not have_buf:
                bytearray().__iadd__(data)  # not a buffer: raise what the pure twin's ``buf += data`` raises
            skip = self._continue_payload(<const unsigned char *>buf.buf, buf.len, frames)
            if self._payload is not None:  # still incomplete: all of data went into it
                PyBuffer_Release(&buf)
                return frames
        if not have_buf:
            store += data  # raises what the pure twin's ``buf += data`` raises
            PyObject_GetBuffer(store, &buf, PyBUF_SIMPLE)  # pins the bytearray's size while parsing
        n = buf.len
        try:
            consumed = self._parse(<const unsigned char *>buf.buf + skip, n - skip, frames) + skip
        except ProtocolError as exc:
            PyBuffer_Release(&buf)
            self._error = exc
            del store[:]
            exc.frames = frames
            raise
        except BaseException:
            PyBuffer_Release(&buf)
            if have_buf:
                store += data[skip:]  # keep what the pure twin keeps: everything fed, nothing consumed
            raise
        if consumed < n and self._start_payload(<const unsigned char *>buf.buf + consumed, n - consumed):
            consumed = n
        if have_buf:
            try:
                if consumed < n:
                    PyByteArray_Resize(store, n - consumed)
                    memcpy(PyByteArray_AS_STRING(store), <const char *>buf.buf + consumed, n - consumed)
            finally:
                PyBuffer_Release(&buf)
        else:
            PyBuffer_Release(&buf)
            if consumed:
                del store[:consumed]
        return frames


_VALID_OPCODES = frozenset({0, 1, 2, 8, 9, 10})


def encode_frame(opcode, payload, *, fin=True, rsv1=False, rsv2=False, rsv3=False, mask=None):
    """One frame on the wire. ``mask``: None/False (server side), 4 bytes, or True for a random key."""
    cdef Py_buffer buf
    cdef bint have_buf
    cdef bytes tmp = None
    cdef const unsigned char *src
    cdef Py_ssize_t n, hlen
    cdef unsigned int b0, mask_bit, op
    cdef bytes key = None
    cdef bytes out
    cdef unsigned char *dst
    cdef unsigned char pooled[4]
    cdef const unsigned char *keyp = NULL
    cdef int i
    opcode = int(opcode)
    if opcode not in _VALID_OPCODES:
        raise ValueError(f"invalid opcode {opcode}")
    op = opcode
    have_buf = _get_bytes(payload, &buf)
    try:
        if have_buf:
            src = <const unsigned char *>buf.buf
            n = buf.len
        else:
            tmp = _slow_bytes(payload)
            src = <const unsigned char *>PyBytes_AS_STRING(tmp)
            n = len(tmp)
        if op >= 8:
            if n > 125:
                raise ValueError("control frame payload longer than 125 bytes")
            if not fin:
                raise ValueError("control frames cannot be fragmented")
        b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0) | (0x10 if rsv3 else 0) | op
        if mask is None or mask is False:
            mask_bit = 0
        else:
            if mask is True:
                _next_mask(pooled)
                keyp = pooled
            else:
                key = bytes(mask)
                if len(key) != 4:
                    raise ValueError("mask must be 4 bytes")
                keyp = <const unsigned char *>PyBytes_AS_STRING(key)
            mask_bit = 0x80
        hlen = 2 if n < 126 else 4 if n < 65536 else 10
        out = PyBytes_FromStringAndSize(NULL, hlen + (4 if mask_bit else 0) + n)
        dst = <unsigned char *>PyBytes_AS_STRING(out)
        dst[0] = <unsigned char>b0
        if n < 126:
            dst[1] = <unsigned char>(mask_bit | n)
        elif n < 65536:
            dst[1] = <unsigned char>(mask_bit | 126)
            dst[2] = <unsigned char>(n >> 8)
            dst[3] = <unsigned char>n
        else:
            dst[1] = <unsigned char>(mask_bit | 127)
            for i in range(8):
                dst[2 + i] = <unsigned char>((<uint64_t>n) >> (56 - 8 * i))
        dst += hlen
        if mask_bit:
            memcpy(dst, keyp, 4)
            if n:
                ws_mask(dst + 4, src, <size_t>n, ws_load_key(keyp))
        elif n:
            memcpy(dst, src, n)
        return out
    finally:
        if have_buf:
            PyBuffer_Release(&buf)
