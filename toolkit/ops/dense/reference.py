"""Dense (fully connected) layer in plain NumPy: the readable oracle for the Numba and CUDA kernels.

Keras convention, rows are samples:

    y = x W + b        x (N, in), W (in, out), b (out,) or None, y (N, out)

so W is stored (in, out), the transpose of the textbook "W x" with W (out, in). The bias is broadcast
over the N rows. Given dy = dL/dy the backward pass is three matrix products / sums:

    dx = dy W^T        (N, out) (out, in)  -> (N, in)
    dW = x^T dy        (in, N)  (N, out)   -> (in, out)   summed over the batch, not averaged
    db = sum_n dy      (out,)                             None when the layer has no bias

dW and db are *sums* over the batch: any 1/N belongs to the loss (e.g. mse), not to the layer.
``backward(dy, cache, need_dx=False)`` skips dx (returned as None): the first layer of a model has no
layer below it to pass dx to, and dy W^T is a third of the backward's multiply-adds.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..ieee import ieee_quiet


class DenseCache(NamedTuple):
    x: Any  # the input (N, in): dW = x^T dy
    W: Any  # the weights (in, out): dx = dy W^T
    has_bias: bool  # whether db is computed (a layer without bias returns db = None)


@ieee_quiet
def forward(x: np.ndarray, W: np.ndarray, b: np.ndarray | None) -> tuple[np.ndarray, DenseCache]:
    y = x @ W
    if b is not None:
        y = y + b  # broadcast over the rows
    return y, DenseCache(x, W, b is not None)


@ieee_quiet
def backward(dy: np.ndarray, cache: DenseCache,
             need_dx: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """(dx, dW, db); dx is None, and dy W^T not computed, when need_dx is False (a model's first layer)."""
    x, W, has_bias = cache
    dx = dy @ W.T if need_dx else None
    dW = x.T @ dy
    db = dy.sum(axis=0) if has_bias else None
    return dx, dW, db
