# The compiled FrameQueue's fields and C-level methods, for other compiled modules of the package to cimport:
# the asyncio hot path (asyncio/_hotpath.pyx) reads ``_out`` and calls the send and receive steps without an
# attribute look-up. Everything else in _speedups stays private to it.

cdef class FrameQueue:
    cdef public list _out
    cdef public int _fast_send
    # Messages queued and their payload bytes (text as UTF-8, before compression): counted here by the
    # one-step path, and by the subclass for every other send (see Connection.messages_sent).
    cdef public Py_ssize_t _messages_out
    cdef public Py_ssize_t _bytes_out
    # The one-step receive path: the subclass's FrameDecoder while it applies (else None), and the record
    # types its whole messages become.
    # A contract the asyncio hot path relies on: _fast_send is nonzero, and _fast_receive is set, only while
    # the Connection is OPEN, and _fast_receive only while it holds no violation (pending_error is None).
    cdef public object _fast_receive
    cdef public object _text_record
    cdef public object _binary_record

    cdef int _queue(self, unsigned int b0, object payload) except -1
    cpdef receive_data(self, data)
    cdef object receive_prefix(self, data, Py_ssize_t n)
    cdef object _receive(self, data, Py_ssize_t limit)
    cpdef send_text(self, text)
    cpdef send_binary(self, data)
    cpdef list data_to_send_buffers(self)
