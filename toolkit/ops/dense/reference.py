"""Dense (fully connected) layer in plain NumPy: the readable oracle for the Numba and CUDA kernels.

Keras convention, rows are samples:

    y = x W + b        x (N, in), W (in, out), b (out,) or None, y (N, out)

so W is stored (in, out), the transpose of the textbook "W x" with W (out, in). The bias is broadcast
over the N rows. Given dy = dL/dy the backward pass is three matrix products / sums:

    dx = dy W^T        (N, out) (out, in)  -> (N, in)
    dW = x^T dy        (in, N)  (N, out)   -> (in, out)   summed over the batch, not averaged
    db = sum_n dy      (out,)                             None when the layer has no bias

dW and db are *sums* over the batch: any 1/N belongs to the loss (e.g. mse), not to the layer.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class DenseCache(NamedTuple):
    x: Any  # the input (N, in): dW = x^T dy
    W: Any  # the weights (in, out): dx = dy W^T
    has_bias: bool  # whether db is computed (a layer without bias returns db = None)


def forward(x: np.ndarray, W: np.ndarray, b: np.ndarray | None) -> tuple[np.ndarray, DenseCache]:
    y = x @ W
    if b is not None:
        y = y + b  # broadcast over the rows
    return y, DenseCache(x, W, b is not None)


def backward(dy: np.ndarray, cache: DenseCache) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    x, W, has_bias = cache
    dx = dy @ W.T
    dW = x.T @ dy
    db = dy.sum(axis=0) if has_bias else None
    return dx, dW, db
