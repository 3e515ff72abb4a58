"""Dense (fully connected) layer: validate, then run on the device the inputs live on.

    y, cache = dense_forward(x, W, b)        # x (N, in), W (in, out), b (out,) or None
    dx, dW, db = dense_backward(dy, cache)   # db is None when b was None
    _, dW, db = dense_backward(dy, cache, need_dx=False)   # dx None, dy W^T skipped (a model's first layer)

Keras layout: W is (in, out) and y = x W + b. dW and db are sums over the batch (see reference.py).
"""

from __future__ import annotations

from typing import Any

from ... import backend, validate
from .. import cache_checks
from .reference import DenseCache

__all__ = ["DenseCache", "dense_forward", "dense_backward"]


def dense_forward(x: Any, W: Any, b: Any = None) -> tuple[Any, DenseCache]:
    """y = x W + b for x (N, in), W (in, out), b (out,) or None; returns (y, cache)."""
    x = validate.array("x", x, ndim=2)
    W = validate.array("W", W, ndim=2, dtype=x.dtype)
    features = x.shape[1]
    if W.shape[0] != features:
        raise ValueError(
            f"W must have shape ({features}, any) to match x's {features} features; got {tuple(W.shape)}"
        )
    if b is not None:
        b = validate.array("b", b, dtype=x.dtype)
        outputs = W.shape[1]
        if tuple(b.shape) != (outputs,):
            raise ValueError(f"b must have shape ({outputs},) to match W's {outputs} outputs; got {tuple(b.shape)}")
    n, out = x.shape[0], W.shape[1]
    validate.fits(x, [(lambda: f"x {tuple(x.shape)} (N = {n}) and W {tuple(W.shape)} (out = {out})",
                       "the output y (N, out)", (n, out), x.dtype)])
    return backend.dispatch("dense", x=x, W=W, b=b).forward(x, W, b)


def dense_backward(dy: Any, cache: DenseCache, need_dx: bool = True) -> tuple[Any, Any, Any]:
    """(dx, dW, db) given dy = dL/dy (N, out) and the cache of the forward pass; db None without bias.

    need_dx=False: dx is None and the dy W^T product (or its kernel launch) is skipped, for a layer whose
    input is the data (nothing below it needs dx); dW and db are unchanged, bit for bit.
    """
    need_dx = validate.flag("need_dx", need_dx)
    cache = cache_checks.dense(cache)  # before any kernel: its fields agree (shapes, dtypes, device)
    expected = (cache.x.shape[0], cache.W.shape[1])
    dy = validate.array("dy", dy, shape=expected, dtype=cache.x.dtype)
    return backend.dispatch("dense", dy=dy, x=cache.x).backward(dy, cache, need_dx=need_dx)
