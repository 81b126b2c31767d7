"""Pick the kernel backend once, at import: compiled unless told otherwise or missing.

``WSCODEC_PURE_PYTHON=1`` forces the pure-Python twin. Everything above this module imports the kernels
from here and never learns which backend it got; ``BACKEND`` tells the truth for those who ask.
"""

from __future__ import annotations

import os

if os.environ.get("WSCODEC_PURE_PYTHON", "") not in ("", "0"):
    from ._pure import (
        ZERO_COPY_MIN,
        Frame,
        FrameDecoder,
        FrameQueue,
        Utf8Validator,
        apply_mask,
        apply_mask_inplace,
        encode_frame,
        validate_utf8,
    )

    BACKEND = "python"
else:
    try:
        from ._speedups import (  # type: ignore[no-redef]
            ZERO_COPY_MIN,
            Frame,
            FrameDecoder,
            FrameQueue,
            Utf8Validator,
            apply_mask,
            apply_mask_inplace,
            encode_frame,
            validate_utf8,
        )

        BACKEND = "cython"
    except ImportError:
        from ._pure import (
            ZERO_COPY_MIN,
            Frame,
            FrameDecoder,
            FrameQueue,
            Utf8Validator,
            apply_mask,
            apply_mask_inplace,
            encode_frame,
            validate_utf8,
        )

        BACKEND = "python"

__all__ = [
    "BACKEND",
    "ZERO_COPY_MIN",
    "Frame",
    "FrameDecoder",
    "FrameQueue",
    "Utf8Validator",
    "apply_mask",
    "apply_mask_inplace",
    "encode_frame",
    "validate_utf8",
]
