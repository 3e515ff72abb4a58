"""Flatten on CuPy arrays: same signatures and cache as reference.py and cpu.py, and no CUDA kernel.

Why no kernel (so there is no flatten.cu): the public functions hand over C-contiguous arrays
(toolkit.validate copies strided ones), and reshaping a C-contiguous CuPy array, like a NumPy one, only
changes its shape metadata: the result is a view of the same device memory, no element is read or
written. A kernel could only add a copy (a full read and write of the tensor) for the same values.
So y shares memory with x (and dx with dy) on the GPU exactly as on the CPU.

``forward_on``/``backward_on`` take a launch.Target like every other op's gpu.py, so the host tests and
generic launch code can treat all ops alike; flatten never asks the target for a kernel or an array.
"""

from __future__ import annotations

from typing import Any

from ...cuda.launch import Target
from .reference import FlattenCache

__all__ = ["FlattenCache", "forward", "backward", "forward_on", "backward_on"]


def forward_on(target: Target | None, x: Any) -> tuple[Any, FlattenCache]:
    """forward; ``target`` is accepted for symmetry with the other ops and not used (nothing is launched)."""
    cache = FlattenCache(tuple(x.shape), x.dtype)
    return x.reshape(cache.y_shape), cache


def backward_on(target: Target | None, dy: Any, cache: FlattenCache) -> Any:
    """backward: dy reshaped back to the forward input's shape (a view)."""
    return dy.reshape(cache.x_shape)


def forward(x: Any) -> tuple[Any, FlattenCache]:
    return forward_on(None, x)


def backward(dy: Any, cache: FlattenCache) -> Any:
    return backward_on(None, dy, cache)
