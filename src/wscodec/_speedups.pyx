# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# cython: embedsignature=True, embedsignature.format=clinic
"""The kernels compiled: the same names, signatures, results and exceptions as ``_pure.py``.

Hot loops work on raw pointers: masking and UTF-8 validation are C helpers (``_speedups_impl.h``) with a
portable 8-byte-word path and SIMD paths (SSE4.1, AVX2, AVX-512, NEON) picked at run time. Every error path
that is not a plain protocol violation (odd argument types, non-contiguous buffers) falls back on the same
Python calls the pure twin makes, so both raise the very same exception with the very same message.
"""

cimport cython
from cpython.buffer cimport (
    PyBUF_FORMAT,
    PyBUF_ND,
    PyBUF_SIMPLE,
    PyBUF_WRITABLE,
    PyBuffer_Release,
    PyObject_CheckBuffer,
)
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_Clear, PyErr_Occurred
from cpython.pyport cimport PY_SSIZE_T_MAX
from cpython.list cimport PyList_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8String, PyUnicode_DecodeUTF8
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy, memset

import codecs
import operator
import os

from .errors import PayloadTooBig, ProtocolError

cdef extern from "Python.h":
    # no "except -1": a refused buffer sends us down the pure twin's path, which raises its own error
    int PyObject_GetBuffer(object obj, Py_buffer *view, int flags)
    Py_ssize_t _as_ssize_t "PyLong_AsSsize_t"(object obj)

cdef extern from *:
    """
    /* 1 if an instance of ``type`` can hold nothing but its ``nslots`` slots: no instance dict, no weakref
       list, no other slot, no base with fields of its own. A record of such a type built below holds a str
       or bytes and True only, so it can never be part of a reference cycle. */
    static int ws_record_untrackable(PyObject *type, int nslots) {
        PyTypeObject *tp = (PyTypeObject *)type;
        return PyType_IS_GC(tp) && tp->tp_dictoffset == 0 && tp->tp_weaklistoffset == 0 && tp->tp_itemsize == 0
            && tp->tp_basicsize == (Py_ssize_t)(sizeof(PyObject) + (size_t)nslots * sizeof(PyObject *));
    }

    /* A record instance as object.__new__(type) followed by the ``data`` slot's setter: what a frozen,
       slotted dataclass allows, without its __init__ (or a Python frame). ``untrack``: the type passed
       ws_record_untrackable, so the record leaves the cyclic garbage collector's lists at once, as CPython
       does for tuples of atomic items. A read of thousands of small messages otherwise triggers a
       collection every 700 records that walks every record still in the list being built, a third of the
       cost of such a read. */
    static PyObject *ws_new_record(PyObject *type, PyObject *slot, PyObject *value, PyObject *final_slot,
                                   int untrack) {
        PyTypeObject *tp = (PyTypeObject *)type;
        descrsetfunc set = Py_TYPE(slot)->tp_descr_set;
        descrsetfunc set_final = final_slot == Py_None ? NULL : Py_TYPE(final_slot)->tp_descr_set;
        PyObject *obj;
        if (set == NULL || (final_slot != Py_None && set_final == NULL)) {
            PyErr_SetString(PyExc_TypeError, "the record's data (or final) attribute is not a settable slot");
            return NULL;
        }
        obj = tp->tp_alloc(tp, 0);
        if (obj == NULL)
            return NULL;
        if (set(slot, obj, value) < 0 || (set_final != NULL && set_final(final_slot, obj, Py_True) < 0)) {
            Py_DECREF(obj);
            return NULL;
        }
        if (untrack)
            PyObject_GC_UnTrack(obj);
        return obj;
    }
    """
    bint ws_record_untrackable(object type, int nslots)
    object ws_new_record(object type, object slot, object value, object final_slot, bint untrack)

cdef extern from *:
    """
    /* The last item of a non-empty list, taken out without shrinking the list's storage. list.pop() of
       the only item hands the storage back to the allocator, and the next append asks for it again: two
       realloc calls per message on a connection that sends one frame per drain. The list's reference
       becomes the caller's; the slot past the new size is not the list's any more. */
    static PyObject *ws_list_take_last(PyObject *list) {
        Py_ssize_t n = PyList_GET_SIZE(list) - 1;
        PyObject *item = PyList_GET_ITEM(list, n);
        Py_SET_SIZE(list, n);
        return item;
    }
    """
    object ws_list_take_last(list items)

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
        if not PyObject_CheckBuffer(data):
            _utf8_decode(data, "strict", True)  # raises what the pure twin raises
        return validate_utf8(memoryview(data).tobytes())  # not contiguous: copied, as the pure twin does
    try:
        if buf.len >= 65536:
            with nogil:
                ok = ws_utf8_valid(<const unsigned char *>buf.buf, <size_t>buf.len)
        else:
            ok = ws_utf8_valid(<const unsigned char *>buf.buf, <size_t>buf.len)
    finally:
        PyBuffer_Release(&buf)
    return ok != 0


_UTF8_IMPLS = ("scalar", WS_UTF8_SIMD128.decode(), "avx2", "avx512")
#: The UTF-8 validator this CPU runs (picked at import from what it offers): "avx512", "avx2", "sse4", "neon" or
#: "scalar".
UTF8_IMPL = _UTF8_IMPLS[ws_utf8_set_impl(-1)]


def _utf8_use(name):
    """Run the UTF-8 kernels on path ``name`` ("scalar", "sse4", "neon", "avx2", "avx512") if this CPU has
    it (tests); returns the path in use. Every path gives the same answers: the tests check each against the
    C codec."""
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
            # Not a buffer: the pure twin's TypeError. Not contiguous: copied, as the pure twin does.
            joined = memoryview(data).tobytes()
            return self.feed(joined)
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
            raise _ProtocolError("control frame with an extended payload length (at most 125 bytes, in 7 bits)")
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
    ``max_frame_size`` (None: no limit) bounds data frames, checked on the header before any payload is
    buffered; control frames may carry their 125 bytes (RFC 6455 section 5.5) whatever the limit.
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
    # While feed_messages runs: the record types and their ``data`` slots (None otherwise), and whether the
    # frames parsed so far leave a fragmented message open (whole messages inside one are not records).
    cdef object _text_type
    cdef object _text_slot
    cdef object _text_final
    cdef object _binary_type
    cdef object _binary_slot
    cdef object _binary_final
    cdef bint _text_untrack  # records of this type hold only what _record puts in: not tracked by the GC
    cdef bint _binary_untrack
    cdef bint _records  # feed_messages is running: whole messages become records in _parse
    # Records made by feed_messages since the decoder was created, and their payload bytes: the Connection's
    # message counters, kept here at no cost per message (see Connection.messages_received).
    cdef public Py_ssize_t _record_count
    cdef public Py_ssize_t _record_bytes
    cdef bint _inside
    cdef bint _inside_before
    cdef public object max_frame_size
    cdef public object role

    def __init__(self, role="server", max_frame_size=1 << 20, *, allow_rsv1=False, allow_rsv2=False, allow_rsv3=False,
                 merge_continuations=False):
        self._expect_mask = _check_role(role)
        if max_frame_size is not None and not max_frame_size >= 0:  # (NaN too)
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
        return self._partial_header()

    cdef long _partial_header(self) except -2:
        cdef uint64_t length
        if self._payload is not None:
            return <long>self._payload_b0
        if self._partial(&length) < 0:
            return -1
        return <long>(<const unsigned char *>PyByteArray_AS_STRING(self._buffer))[0]

    def partial_length(self):
        """The payload length the frame being received declares, -1 if none has a complete header yet: a
        caller adding it to the message so far can refuse a message too large before its payload comes."""
        cdef uint64_t length
        if self._payload is not None:
            return PyBytes_GET_SIZE(self._payload)
        if self._partial(&length) < 0:
            return -1
        return length

    def partial_payload(self, start=0):
        """The unmasked payload received so far of the frame in progress, from offset ``start``."""
        cdef uint64_t length
        cdef Py_ssize_t header, received, begin
        cdef const unsigned char *p
        cdef bytes out
        start = operator.index(start)  # any int, as the pure twin: a huge one is past the end, not an OverflowError
        begin = 0 if start < 0 else (start if start < PY_SSIZE_T_MAX else PY_SSIZE_T_MAX)
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

    cdef inline void _track(self, unsigned int b0) noexcept:
        """Follow whether a fragmented message is open, frame by frame as they are appended (the rules of
        feed_messages' second pass). An unfinished data frame may still become whole by merging its
        continuations: the state before it is kept for that (see _merged)."""
        cdef unsigned int op = b0 & 0x0F
        if op == 0:
            if b0 & 0x80:
                self._inside = False
        elif op < 3 and not b0 & 0x80:
            self._inside_before = self._inside
            self._inside = True

    cdef inline void _merged(self, Frame target) noexcept:
        """``target``'s last continuation was merged into it: it is now a finished frame."""
        if <long>target.opcode == 0:
            self._inside = False
        else:
            self._inside = self._inside_before

    cdef object _record(self, unsigned int b0, const unsigned char *src, Py_ssize_t n, bint masked):
        """The record of a whole text (UTF-8 checked) or binary message whose payload is src[0:n]."""
        cdef unsigned char small[256]
        cdef bytes payload
        cdef const unsigned char *data = src
        if masked and n:
            if (b0 & 0x0F) == 1 and n <= 256:  # text decodes from an unmasked copy on the stack
                ws_mask(small, src, <size_t>n, ws_load_key(src - 4))
                data = small
            else:
                payload = PyBytes_FromStringAndSize(NULL, n)
                ws_mask(<unsigned char *>PyBytes_AS_STRING(payload), src, <size_t>n, ws_load_key(src - 4))
                data = <const unsigned char *>PyBytes_AS_STRING(payload)
        elif (b0 & 0x0F) == 2:
            payload = PyBytes_FromStringAndSize(<const char *>src, n) if n else b""
        if (b0 & 0x0F) == 2:
            self._record_count += 1
            self._record_bytes += n
            return ws_new_record(self._binary_type, self._binary_slot, payload, self._binary_final, self._binary_untrack)
        try:
            text = PyUnicode_DecodeUTF8(<const char *>data, n, NULL)
        except UnicodeDecodeError:
            raise _ProtocolError("invalid UTF-8 in text message", 1007) from None
        self._record_count += 1
        self._record_bytes += n
        return ws_new_record(self._text_type, self._text_slot, text, self._text_final, self._text_untrack)

    cdef int _uncount(self, list items, Py_ssize_t start, object text_type) except -1:
        """Take back the counts of the records in ``items[start:]``: ``_parse`` counted them as it made them,
        but a message before them failed (1007), so they are never delivered (the pure twin, which makes
        its records in order, never counts them)."""
        cdef Py_ssize_t i
        for i in range(start, len(items)):
            item = items[i]
            if type(item) is Frame:
                continue
            self._record_count -= 1
            if type(item) is text_type:
                self._record_bytes -= len((<str>item.data).encode("utf-8"))
            else:
                self._record_bytes -= len(item.data)
        return 0

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
        if merge and PyList_GET_SIZE(frames):  # a frame completed just before may be continued
            last = frames[PyList_GET_SIZE(frames) - 1]
            if type(last) is Frame:  # (not a message record of feed_messages)
                frame = <Frame>last
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
                if length > cmax and not b0 & 0x08:  # control frames: 125 bytes, checked above
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
                        self._merged(target)
                        target = None
                        merged = None
                    continue
                if merged is not None:
                    target.payload = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(merged), PyByteArray_GET_SIZE(merged))
                    merged = None
                if (self._records and not self._inside and (b0 & 0xF0) == 0x80
                        and ((b0 & 0x0F) == 1 or (b0 & 0x0F) == 2)):
                    # feed_messages: a whole message in one frame becomes its record, without a Frame
                    frames.append(self._record(b0, p + start, <Py_ssize_t>length, (b1 & 0x80) != 0))
                    target = None
                    pos = start + <Py_ssize_t>length
                    continue
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
                self._track(b0)
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
            self._track(self._payload_b0)
        return took

    def feed(self, data):
        """Every frame completed by ``data``; a partial frame is kept for the next call.

        On a violation raises :class:`ProtocolError` whose ``frames`` holds the valid frames before it;
        the decoder then stays failed and raises the same error again.
        """
        return self._feed(data, -1)

    cdef int _complete_stored(self, const unsigned char *p, Py_ssize_t need, list frames) except -1:
        """Append p[0:need] to the store, which then holds exactly one whole frame, and decode it into
        ``frames``. The store keeps its bytes until the caller is done with data (see _feed)."""
        cdef bytearray store = self._buffer
        cdef Py_ssize_t have = PyByteArray_GET_SIZE(store)
        cdef Py_buffer sbuf
        PyByteArray_Resize(store, have + need)
        memcpy(PyByteArray_AS_STRING(store) + have, p, <size_t>need)
        PyObject_GetBuffer(store, &sbuf, PyBUF_SIMPLE)  # pins the bytearray's size while parsing
        try:
            self._parse(<const unsigned char *>sbuf.buf, sbuf.len, frames)
        finally:
            PyBuffer_Release(&sbuf)
        return 0

    cdef list _feed(self, data, Py_ssize_t limit):
        """:meth:`feed`; with ``limit`` >= 0, of ``data[:limit]`` only, without making that slice (the asyncio
        hot path's reads: the first bytes of its shared read buffer)."""
        cdef Py_buffer buf
        cdef bint have_buf = False
        cdef Py_ssize_t consumed, n, skip = 0, header
        cdef uint64_t length, need
        cdef bint completing = False
        cdef bytearray store = self._buffer
        cdef list frames = []
        if self._error is not None:
            raise _replay(self._error)
        if PyByteArray_GET_SIZE(store) == 0:
            if PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE) == 0:
                have_buf = True
                if 0 <= limit < buf.len:
                    buf.len = limit
            else:
                PyErr_Clear()
        else:
            # The store holds the start of one frame. Once its header has arrived, a read that completes it
            # adds only the missing bytes to the store, and the rest of the read is parsed where it is, not
            # copied (a read ending inside a frame would otherwise copy all of the next read).
            header = self._partial(&length)
            if header >= 0:
                if PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE) == 0:
                    if 0 <= limit < buf.len:
                        buf.len = limit
                    # (in 64 bits: header + length fits, length < 2**63, and exceeds what the store holds)
                    need = <uint64_t>header + length - <uint64_t>PyByteArray_GET_SIZE(store)
                    if need <= <uint64_t>buf.len:
                        skip = <Py_ssize_t>need
                        have_buf = completing = True
                    else:
                        PyBuffer_Release(&buf)
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
            store += data if limit < 0 else data[:limit]  # raises what the pure twin's ``buf += data`` raises
            PyObject_GetBuffer(store, &buf, PyBUF_SIMPLE)  # pins the bytearray's size while parsing
        n = buf.len
        try:
            if completing:
                self._complete_stored(<const unsigned char *>buf.buf, skip, frames)
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
                # keep what the pure twin keeps: everything fed, nothing consumed (the store still holds the
                # frame _complete_stored completed, and data[:skip] with it)
                store += data[skip:] if limit < 0 else data[skip:limit]
            raise
        if consumed < n and self._start_payload(<const unsigned char *>buf.buf + consumed, n - consumed):
            consumed = n
        if have_buf:
            try:
                if consumed < n:
                    PyByteArray_Resize(store, n - consumed)
                    memcpy(PyByteArray_AS_STRING(store), <const char *>buf.buf + consumed, n - consumed)
                elif PyByteArray_GET_SIZE(store):  # the frame completed from the store
                    del store[:]
            finally:
                PyBuffer_Release(&buf)
        else:
            PyBuffer_Release(&buf)
            if consumed:
                del store[:consumed]
        return frames

    def feed_messages(self, data, in_message, text_type, binary_type):
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
        cdef Py_ssize_t left
        cdef list items = self._feed_messages(data, -1, bool(in_message), text_type, binary_type, &left)
        return items, left

    cdef list _feed_messages(
        self, data, Py_ssize_t limit, bint in_message, text_type, binary_type, Py_ssize_t *left_out
    ):
        """:meth:`feed_messages` for C callers (``FrameQueue.receive_data``): the Frame count in ``left_out``."""
        cdef list items
        cdef list out
        cdef Py_ssize_t left = 0
        cdef bint inside = in_message
        cdef object error = None
        cdef Frame frame
        cdef object opcode
        cdef bytes payload
        if text_type is not self._text_type or binary_type is not self._binary_type:
            # The slots are looked up once per pair of types, not per call: with one message per read (one
            # message in flight) these lookups would cost more than parsing the frame. All are done before
            # anything is stored, so a failed lookup leaves the cache as it was.
            if not isinstance(text_type, type) or not isinstance(binary_type, type):
                raise TypeError("text_type and binary_type must be classes")
            text_slot = text_type.__dict__["data"]
            binary_slot = binary_type.__dict__["data"]
            text_final = text_type.__dict__.get("final")
            binary_final = binary_type.__dict__.get("final")
            self._text_slot = text_slot
            self._binary_slot = binary_slot
            self._text_final = text_final
            self._binary_final = binary_final
            self._text_untrack = ws_record_untrackable(text_type, 1 if text_final is None else 2)
            self._binary_untrack = ws_record_untrackable(binary_type, 1 if binary_final is None else 2)
            self._text_type = text_type
            self._binary_type = binary_type
        text_type = self._text_type
        binary_type = self._binary_type
        text_slot = self._text_slot
        binary_slot = self._binary_slot
        text_final = self._text_final
        binary_final = self._binary_final
        # Small whole messages become records as they are parsed (no Frame made); what is left as a Frame
        # (large frames, fragments, control frames) is converted below where it qualifies.
        self._inside = inside
        self._records = True
        try:
            items = self._feed(data, limit)
        except ProtocolError as exc:
            items = exc.frames
            error = exc
        finally:
            self._records = False
        if error is None:
            # The common read, whole small messages only, is already the answer: no second list.
            for item in items:
                if type(item) is Frame:
                    break
            else:
                left_out[0] = 0
                return items
        out = []
        cdef Py_ssize_t index = -1
        for item in items:
            index += 1
            if type(item) is not Frame:
                out.append(item)
                continue
            frame = <Frame>item
            opcode = frame.opcode
            if inside:
                if opcode == 0 and frame.fin:
                    inside = False
            elif opcode == 1 or opcode == 2:
                if frame.fin and not frame.rsv1:
                    payload = <bytes>frame.payload
                    if opcode == 1:
                        try:
                            text = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload), NULL)
                        except UnicodeDecodeError:
                            error = _ProtocolError("invalid UTF-8 in text message", 1007)
                            self._error = error
                            error.frames = out
                            self._uncount(items, index + 1, text_type)
                            self._payload = None  # nothing held once failed, as after _feed's errors
                            del self._buffer[:]
                            raise error from None
                        out.append(ws_new_record(text_type, text_slot, text, text_final, self._text_untrack))
                    else:
                        out.append(ws_new_record(binary_type, binary_slot, payload, binary_final, self._binary_untrack))
                    self._record_count += 1
                    self._record_bytes += PyBytes_GET_SIZE(payload)
                    continue
                if not frame.fin:
                    inside = True  # compressed or not: a fragmented message is open
            out.append(frame)
            left += 1
        if error is not None:
            error.frames = out
            raise error
        left_out[0] = left
        return out


cdef inline unsigned char *_put_header(unsigned char *dst, unsigned int b0, Py_ssize_t n, unsigned int mask_bit) noexcept:
    """Write a frame header (without the key) at dst; return where the key or payload goes."""
    cdef int i
    dst[0] = <unsigned char>b0
    if n < 126:
        dst[1] = <unsigned char>(mask_bit | n)
        return dst + 2
    if n < 65536:
        dst[1] = <unsigned char>(mask_bit | 126)
        dst[2] = <unsigned char>(n >> 8)
        dst[3] = <unsigned char>n
        return dst + 4
    dst[1] = <unsigned char>(mask_bit | 127)
    for i in range(8):
        dst[2 + i] = <unsigned char>((<uint64_t>n) >> (56 - 8 * i))
    return dst + 10


cdef bytes _build_frame(unsigned int b0, const unsigned char *src, Py_ssize_t n, const unsigned char *key):
    """The whole frame as one bytes object: header, then the payload copied, or masked with ``key``."""
    cdef Py_ssize_t hlen = 2 if n < 126 else 4 if n < 65536 else 10
    cdef bytes out = PyBytes_FromStringAndSize(NULL, hlen + (4 if key != NULL else 0) + n)
    cdef unsigned char *dst = <unsigned char *>PyBytes_AS_STRING(out)
    if key == NULL:
        dst = _put_header(dst, b0, n, 0)
        if n:
            memcpy(dst, src, n)
    else:
        dst = _put_header(dst, b0, n, 0x80)
        memcpy(dst, key, 4)
        if n:
            ws_mask(dst + 4, src, <size_t>n, ws_load_key(key))
    return out


_VALID_OPCODES = frozenset({0, 1, 2, 8, 9, 10})


def encode_frame(opcode, payload, *, fin=True, rsv1=False, rsv2=False, rsv3=False, mask=None):
    """One frame on the wire. ``mask``: None/False (server side), 4 bytes, or True for a random key."""
    cdef Py_buffer buf
    cdef bint have_buf
    cdef bytes tmp = None
    cdef const unsigned char *src
    cdef Py_ssize_t n, hlen
    cdef unsigned int b0, op
    cdef bytes key = None
    cdef unsigned char pooled[4]
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
            return _build_frame(b0, src, n, NULL)
        if mask is True:
            _next_mask(pooled)
            return _build_frame(b0, src, n, pooled)
        key = bytes(memoryview(mask))  # a bytes-like object only, as the pure twin: bytes(4) is a zero key
        if len(key) != 4:
            raise ValueError("mask must be 4 bytes")
        return _build_frame(b0, src, n, <const unsigned char *>PyBytes_AS_STRING(key))
    finally:
        if have_buf:
            PyBuffer_Release(&buf)


ZERO_COPY_MIN = 16384
cdef Py_ssize_t _ZERO_COPY_MIN = 16384


cdef class FrameQueue:
    """The outgoing half of a connection: frames waiting for the transport, and the one-step send path.

    ``Connection`` derives from this class so that its hottest calls, ``send_text``/``send_binary`` of a
    plain message and ``data_to_send``, run here without a Python frame: a 16-byte message costs little
    more than ``encode_frame`` itself. The subclass decides when that path applies by setting
    ``_fast_send`` (0: never; 1: a server frame, unmasked; 2: a client frame, masked with a pooled key)
    and supplies ``_send_slow(opcode, data)`` for every other case (checks, compression, fragmentation).
    Large ``bytes`` payloads of a server are queued beside their header, not copied (see
    :meth:`data_to_send_buffers`).
    """

    # (fields and C-level methods: declared in _speedups.pxd, where the asyncio hot path cimports them)

    def __cinit__(self, *args, **kwargs):
        self._out = []
        self._fast_send = 0
        self._messages_out = 0
        self._bytes_out = 0
        self._fast_receive = None

    def _receive_slow(self, data):
        """Every read the one-step path does not take; the subclass (``Connection``) implements it."""
        raise NotImplementedError("FrameQueue._receive_slow is implemented by Connection")

    def _received(self, items, left, error):
        """The rest of a read after the decoder; the subclass (``Connection``) implements it."""
        raise NotImplementedError("FrameQueue._received is implemented by Connection")

    cpdef receive_data(self, data):
        """Feed bytes read from the transport; ``b""`` means the peer closed it (EOF).

        Returns the events those bytes complete, in order. A peer's protocol violation does not raise:
        the events before it are returned, then :class:`~wscodec.events.ProtocolViolation` and
        :class:`~wscodec.events.Closed`, with the right Close frame already queued.
        """
        if self._fast_receive is None or not data:
            return self._receive_slow(data)
        return self._receive(data, -1)

    cdef object receive_prefix(self, data, Py_ssize_t n):
        """:meth:`receive_data` of ``data[:n]`` (``0 <= n <= len(data)``), without making that slice when the
        one-step path takes the read: the asyncio hot path's reads, the first bytes of its shared buffer."""
        if self._fast_receive is None or n == 0:
            return self._receive_slow(data[:n])
        return self._receive(data, n)

    cdef object _receive(self, data, Py_ssize_t limit):
        """The one-step path of a read that is not EOF, while ``_fast_receive`` is set (see receive_data)."""
        cdef FrameDecoder decoder
        cdef Py_ssize_t left
        cdef list items
        if type(self._fast_receive) is not FrameDecoder:  # not this module's own decoder: the general path
            return self._receive_slow(data if limit < 0 else data[:limit])
        decoder = <FrameDecoder>self._fast_receive
        try:
            items = decoder._feed_messages(data, limit, False, self._text_record, self._binary_record, &left)
        except _ProtocolError as exc:
            return self._received(exc.frames, -1, exc)
        if left or decoder._partial_header() >= 0:
            return self._received(items, left, None)
        return items

    cdef int _queue(self, unsigned int b0, object payload) except -1:
        """Frame the message ``payload`` into ``_out``, and count it."""
        cdef Py_buffer buf
        cdef bint have_buf
        cdef unsigned char pooled[4]
        cdef const unsigned char *key = NULL
        cdef const unsigned char *src
        cdef bytes header
        cdef Py_ssize_t n
        if self._fast_send == 1 and type(payload) is bytes:
            n = PyBytes_GET_SIZE(payload)
            if n >= _ZERO_COPY_MIN:
                header = PyBytes_FromStringAndSize(NULL, 4 if n < 65536 else 10)
                _put_header(<unsigned char *>PyBytes_AS_STRING(header), b0, n, 0)
                self._out.append(header)
                self._out.append(payload)
            else:
                self._out.append(_build_frame(b0, <const unsigned char *>PyBytes_AS_STRING(payload), n, NULL))
            self._messages_out += 1
            self._bytes_out += n
            return 1
        have_buf = _get_bytes(payload, &buf)
        if have_buf:
            src = <const unsigned char *>buf.buf
            n = buf.len
        else:  # strided views and odd buffers: what encode_frame does with them (or its TypeError)
            payload = _slow_bytes(payload)
            src = <const unsigned char *>PyBytes_AS_STRING(payload)
            n = PyBytes_GET_SIZE(payload)
        try:
            if self._fast_send == 2:
                _next_mask(pooled)
                key = pooled
            self._out.append(_build_frame(b0, src, n, key))
        finally:
            if have_buf:
                PyBuffer_Release(&buf)
        self._messages_out += 1
        self._bytes_out += n
        return 1

    def _send_slow(self, opcode, data):
        """Every send the one-step path does not take; the subclass (``Connection``) implements it."""
        raise NotImplementedError("FrameQueue._send_slow is implemented by Connection")

    cpdef send_text(self, text):
        """Queue a text message."""
        if self._fast_send and type(text) is str:
            self._queue(0x81, PyUnicode_AsUTF8String(text))
        else:
            self._send_slow(1, text)

    cpdef send_binary(self, data):
        """Queue a binary message. Any buffer; a large ``bytes`` on a server goes out without a copy
        through :meth:`data_to_send_buffers`, anything else is copied (or masked) into its frame once."""
        if self._fast_send:
            self._queue(0x82, data)
        else:
            self._send_slow(2, data)

    def data_to_send(self):
        """Everything queued for the transport since the last call, as one bytes object.

        A large message queued without a copy (see :meth:`data_to_send_buffers`) is copied here; an I/O
        layer that can write several buffers at once (``transport.writelines``) uses that method instead.
        """
        cdef list out = self._out
        cdef Py_ssize_t n = PyList_GET_SIZE(out)
        if n == 1:
            return ws_list_take_last(out)
        if n == 0:
            return b""
        data = b"".join(out)
        del out[:]
        return data

    cpdef list data_to_send_buffers(self):
        """Everything queued since the last call, as a list of buffers to write in order, for
        ``transport.writelines`` or ``socket.sendmsg``: the zero-copy form of :meth:`data_to_send`.

        An unmasked data frame of at least :data:`ZERO_COPY_MIN` bytes whose payload is ``bytes``
        (immutable, so it cannot change before it is written) is queued as its header followed by the
        payload object itself, never copied; everything else is one buffer per frame. Empty list: nothing.
        """
        cdef list out = self._out
        if PyList_GET_SIZE(out) == 0:
            return []
        self._out = []
        return out
