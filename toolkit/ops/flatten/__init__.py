"""Flatten: validate, then reshape where the input lives.

    y, cache = flatten_forward(x)        # x (N, ...) -> y (N, prod(...)), row-major as Keras
    dx = flatten_backward(dy, cache)     # dy (N, prod(...)) -> dx with x's shape

y is a view of x (dx of dy): no copy is made. See reference.py for the feature order and why it differs
from PyTorch's channels-first flatten.
"""

from __future__ import annotations

from typing import Any

from ... import backend, validate
from .. import cache_checks
from .reference import FlattenCache

__all__ = ["FlattenCache", "flatten_forward", "flatten_backward"]


def flatten_forward(x: Any) -> tuple[Any, FlattenCache]:
    """y = x reshaped to (N, -1), the batch axis first; returns (y, cache)."""
    x = validate.array("x", x)
    if x.ndim < 1:
        raise ValueError("x must have at least 1 dimension (the batch axis comes first); got a 0-d array")
    return backend.dispatch("flatten", x=x).forward(x)


def flatten_backward(dy: Any, cache: FlattenCache) -> Any:
    """dx = dy reshaped back to the forward input's shape."""
    cache = cache_checks.flatten(cache)  # before any kernel: its fields agree (shapes, dtypes, device)
    dy = validate.array("dy", dy, shape=cache.y_shape, dtype=cache.dtype)
    return backend.dispatch("flatten", dy=dy).backward(dy, cache)
