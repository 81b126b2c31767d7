"""Which twin of the hot path this process runs: ``_hotpath`` (compiled) with the compiled kernels, whose
``FrameQueue`` it reads as a C type, else ``_hotpath_pure``. Never a mix: the choice is made here, once,
for the WebSocket (``HotPath``, ``Pieces``, the ``MessageWaiter`` its readers await) and the browser events
it builds (``Event``, ``MessageEvent``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._kernels import BACKEND as _KERNELS_BACKEND

__all__ = [
    "DATA_TYPES",
    "HOT_PATH_BACKEND",
    "LONE_WRITES",
    "READ_SIZE",
    "Event",
    "HotPath",
    "MessageEvent",
    "MessageWaiter",
    "Pieces",
]

if TYPE_CHECKING or _KERNELS_BACKEND != "cython":
    from ._hotpath_pure import DATA_TYPES, LONE_WRITES, READ_SIZE, Event, HotPath, MessageEvent, MessageWaiter, Pieces

    HOT_PATH_BACKEND = "python"
else:
    try:  # the compiled twin, built with the kernels
        from ._hotpath import DATA_TYPES, LONE_WRITES, READ_SIZE, Event, HotPath, MessageEvent, MessageWaiter, Pieces

        HOT_PATH_BACKEND = "cython"
    except ImportError:
        from ._hotpath_pure import (
            DATA_TYPES,
            LONE_WRITES,
            READ_SIZE,
            Event,
            HotPath,
            MessageEvent,
            MessageWaiter,
            Pieces,
        )

        HOT_PATH_BACKEND = "python"
