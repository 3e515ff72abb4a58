"""Moving numbers between a topic and the toolkit, on whichever backend is in use.

Topics create every array with ``tensor`` (``toolkit.backend.asarray``, float64 so that printed
values with four or more decimals are judged without float32 rounding in the way) and read every
result back with ``host``/``scalar`` (``toolkit.backend.to_numpy``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toolkit import backend


def tensor(values: Any, shape: tuple[int, ...] | None = None) -> Any:
    """values as a float64 array on the backend in use (NumPy on the CPU, CuPy on the GPU)."""
    a = np.asarray(values, dtype=np.float64)
    if shape is not None:
        a = a.reshape(shape)
    return backend.asarray(np.ascontiguousarray(a), dtype=np.float64)


def host(a: Any) -> np.ndarray:
    """A toolkit result as a NumPy array."""
    return np.asarray(backend.to_numpy(a))


def scalar(a: Any) -> float:
    """A toolkit result holding one number, as a float."""
    h = host(a)
    if h.size != 1:
        raise ValueError(f"expected one number; got an array of shape {h.shape}")
    return float(h.reshape(()))
