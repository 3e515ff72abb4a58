"""2-D pooling (max, average, sum) over x (N, H, W, C): validate, then run where x lives.

    y, cache = pool2d_forward(x, pool_size=2, stride=None, padding="valid", mode="max")
    dx = pool2d_backward(dy, cache)

``stride=None`` means stride = pool_size (as Keras' MaxPooling2D). ``pool_size`` and ``stride`` are an
int or a pair (rows, cols). ``padding``: "valid", "same" (Keras: output ceil(H / stride), the odd extra
padded cell at the bottom/right), an int, a pair (rows, cols), or ((top, bottom), (left, right));
each padding side must be smaller than the window. Padded cells are ignored: never the maximum,
not counted in the average (see reference.py for all conventions, e.g. ties go to the first maximum).
Shortcuts: max_pool2d_forward, avg_pool2d_forward, sum_pool2d_forward.
"""

from __future__ import annotations

from typing import Any

from ... import backend, validate
from .. import cache_checks
from .geometry import check_limits, check_windows, resolve_padding
from .reference import MODES, Pool2DCache

__all__ = ["MODES", "Pool2DCache", "pool2d_forward", "pool2d_backward",
           "max_pool2d_forward", "avg_pool2d_forward", "sum_pool2d_forward"]


def pool2d_forward(x: Any, pool_size: Any = 2, stride: Any = None, padding: Any = "valid",
                   mode: str = "max") -> tuple[Any, Pool2DCache]:
    """y (N, OH, OW, C) = pooling of x (N, H, W, C) over pool_size windows; returns (y, cache)."""
    validate.choice("mode", mode, MODES)
    x = validate.array("x", x, ndim=4)
    pool = validate.pair("pool_size", pool_size)
    strides = pool if stride is None else validate.pair("stride", stride)
    spatial = (int(x.shape[1]), int(x.shape[2]))
    pads = resolve_padding(padding, spatial, pool, strides)
    check_windows(spatial, pool, pads)
    check_limits(x, pool, strides, pads, mode)
    return backend.dispatch("pool2d", x=x).forward(x, pool, strides, pads, mode)


def pool2d_backward(dy: Any, cache: Pool2DCache) -> Any:
    """dx = dL/dx (N, H, W, C) given dy = dL/dy (N, OH, OW, C) and the cache of the forward pass."""
    cache = cache_checks.pool2d(cache)  # before any kernel: its fields agree (shapes, dtypes, device)
    dy = validate.array("dy", dy, shape=cache.y_shape, dtype=cache.dtype)
    return backend.dispatch("pool2d", dy=dy, argmax=cache.argmax).backward(dy, cache)


def max_pool2d_forward(x, pool_size=2, stride=None, padding="valid"):
    return pool2d_forward(x, pool_size, stride, padding, mode="max")


def avg_pool2d_forward(x, pool_size=2, stride=None, padding="valid"):
    return pool2d_forward(x, pool_size, stride, padding, mode="avg")


def sum_pool2d_forward(x, pool_size=2, stride=None, padding="valid"):
    return pool2d_forward(x, pool_size, stride, padding, mode="sum")
