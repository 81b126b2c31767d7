"""Handing a Connection's queued frames to an asyncio transport: small frames coalesced, large payloads
without a copy.

:meth:`Connection.data_to_send_buffers` returns one buffer per small frame and, for a large unmasked
``bytes`` payload, its header and the payload object itself. Small buffers are joined into one write (one
``send()`` for a batch of small messages, as before); large payloads go to ``transport.writelines`` beside
them, which uvloop and CPython >= 3.12's selector transports write with one vectored ``sendmsg`` and keep
by reference when the socket is full. (CPython 3.11's ``writelines`` joins its argument: one copy, the
same cost as the joined write it replaces.)

:func:`half_close` is the one way both asyncio servers shut down their side before a linger.
"""

from __future__ import annotations

from typing import Any

from .connection import ZERO_COPY_MIN

__all__ = ["half_close", "write_buffers"]


def write_buffers(transport: Any, buffers: list[bytes]) -> None:
    """Write ``buffers`` (from ``data_to_send_buffers``, non-empty) to ``transport`` in order."""
    if len(buffers) == 1:
        transport.write(buffers[0])
        return
    if max(map(len, buffers)) < ZERO_COPY_MIN:
        transport.write(b"".join(buffers))
        return
    out: list[bytes] = []
    run: list[bytes] = []
    for buf in buffers:
        if len(buf) >= ZERO_COPY_MIN:
            if run:
                out.append(run[0] if len(run) == 1 else b"".join(run))
                run = []
            out.append(buf)
        else:
            run.append(buf)
    if run:
        out.append(run[0] if len(run) == 1 else b"".join(run))
    transport.writelines(out)


def half_close(transport: Any) -> bool:
    """Shut down our side of TCP after what is buffered; False, and nothing done, where that cannot be
    done (TLS) or the peer reset the connection meanwhile, which leaves nothing to linger for."""
    if not transport.can_write_eof():
        return False
    try:
        transport.write_eof()
    except OSError:
        return False
    return True
