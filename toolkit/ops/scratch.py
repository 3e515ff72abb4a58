"""Reusable scratch arrays for the CPU kernels: a buffer per (slot name, Python thread), kept between calls.

Why: a fresh multi-megabyte NumPy array is page-faulted in as it is first written, and on this VM that
costs about 0.3 ms per MB (allocating and filling 8 MB: 2.5-2.9 ms; filling the same 8 MB again:
0.44 ms). glibc hands large blocks back to the kernel when they are freed, so an op that allocates its
temporaries on every call pays the faults every call: 8 MB of an LSTM forward's 21 MB were its own
temporary, 10 ms of a 37 ms forward were faults. Temporaries that never leave the op (im2col's cols,
the LSTM's input projection and gate gradients) live here instead; what an op returns, or keeps in its
cache, is always a fresh array.

A slot's buffer grows to the largest request and is shared by nothing else: one slot per distinct
temporary of an op, so two live temporaries never alias. Threads get their own buffers (``threading
.local``), so concurrent calls from several Python threads do not share them either.
"""

from __future__ import annotations

import threading
from math import prod

import numpy as np

_buffers = threading.local()


def scratch(slot: str, shape: tuple[int, ...] | int, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array of ``shape`` and ``dtype``, the same memory on every call
    with this slot name (from this thread): its previous contents are garbage to be overwritten."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    nbytes = prod(shape) * np.dtype(dtype).itemsize
    buffer = getattr(_buffers, slot, None)
    if buffer is None or buffer.nbytes < nbytes:
        buffer = np.empty(nbytes, dtype=np.uint8)
        setattr(_buffers, slot, buffer)
    return buffer[:nbytes].view(dtype).reshape(shape)
