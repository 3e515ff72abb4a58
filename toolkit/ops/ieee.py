"""IEEE results without NumPy warnings, on every machine: the decorator for op functions that call BLAS.

NaN and Inf propagate through every operation by IEEE rules, silently (README conventions). NumPy warns
("invalid value encountered in matmul") when a call leaves the CPU's invalid or overflow flag set, and
whether OpenBLAS's GEMM sets them for NaN/Inf inputs depends on the kernel it picked for the CPU: the
Haswell/Zen kernels leave them clear, the SkylakeX (AVX-512) kernels set them for the same inputs. A
warning that comes and goes with the machine is worse than none, so every op function that calls NumPy's
BLAS (``@``, matmul, tensordot) runs under ``ieee_quiet``; only these two flags are silenced, and only
inside the op: the values are exactly what IEEE arithmetic gives.
"""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

import numpy as np

F = TypeVar("F", bound=Callable)


def ieee_quiet(func: F) -> F:
    """Run ``func`` with NumPy's invalid/overflow warnings off (a fresh errstate per call: thread-safe, nestable)."""

    @functools.wraps(func)
    def quiet(*args, **kwargs):
        with np.errstate(invalid="ignore", over="ignore"):
            return func(*args, **kwargs)

    return quiet  # type: ignore[return-value]
