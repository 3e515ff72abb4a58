"""2-D pooling in plain NumPy: the readable oracle the Numba and CUDA kernels are held against.

x is (N, H, W, C), channels last as in Keras. Output cell (n, oh, ow, c) looks at the window of
pool_size cells starting at padded row oh*stride_h and padded column ow*stride_w (see geometry.py).

Conventions a learner could trip on:

* Padded cells are not values. Max never selects one (it is not a 0 and not -inf), and the average
  divides by the number of REAL cells in the window, as Keras/TensorFlow 'same' average pooling
  does: a 2x2 corner window holding 1 real cell averages over 1, not 4. Sum adds the real cells.
* Max-pool ties go to the FIRST maximum in row-major window order (top row first, left to right):
  the whole gradient of that output goes to that one cell, none to the other tied cells.
* NaN propagates: a window holding a NaN has maximum NaN (the first NaN, like np.max/np.argmax),
  and the gradient goes to it.
* Windows may overlap (stride < pool_size): an input cell in several windows receives the SUM of the
  gradients of all of them.
"""

from __future__ import annotations

from typing import Any, Iterator, NamedTuple

import numpy as np

from .geometry import Padding, output_hw, real_cell_counts

MODES = ("max", "avg", "sum")


class Pool2DCache(NamedTuple):
    mode: str
    x_shape: tuple[int, int, int, int]
    dtype: Any  # dtype of x, y, dy and dx
    pool: tuple[int, int]
    stride: tuple[int, int]
    padding: Padding  # ((top, bottom), (left, right)), resolved
    argmax: Any  # max mode: (N, OH, OW, C) int64 flat spatial index h*W + w of the selected cell; else None

    @property
    def y_shape(self) -> tuple[int, int, int, int]:
        n, h, w, c = self.x_shape
        return (n, *output_hw((h, w), self.pool, self.stride, self.padding), c)


def _window_offsets(x: np.ndarray, pool, stride, padding: Padding, out) -> Iterator[tuple]:
    """For each offset (i, j) inside the window, in row-major order, yield three aligned arrays:
    values (N, OH, OW, C): padded x at row oh*sh + i, column ow*sw + j (0 where padded);
    real (1, OH, OW, 1): whether that cell is part of the input; index (1, OH, OW, 1): its h*W + w."""
    n, h, w, c = x.shape
    (top, bottom), (left, right) = padding
    padded = np.zeros((n, h + top + bottom, w + left + right, c), dtype=x.dtype)
    padded[:, top:top + h, left:left + w, :] = x
    index = np.full(padded.shape[1:3], -1, dtype=np.int64)
    index[top:top + h, left:left + w] = np.arange(h * w).reshape(h, w)
    for i in range(pool[0]):
        rows = slice(i, i + stride[0] * (out[0] - 1) + 1, stride[0])
        for j in range(pool[1]):
            cols = slice(j, j + stride[1] * (out[1] - 1) + 1, stride[1])
            cell_index = index[rows, cols][None, :, :, None]
            yield padded[:, rows, cols, :], cell_index >= 0, cell_index


def forward(x: np.ndarray, pool: tuple[int, int], stride: tuple[int, int], padding: Padding,
            mode: str) -> tuple[np.ndarray, Pool2DCache]:
    out = output_hw(x.shape[1:3], pool, stride, padding)
    y_shape = (x.shape[0], *out, x.shape[3])
    argmax = None
    if mode == "max":
        y = np.zeros(y_shape, dtype=x.dtype)
        argmax = np.full(y_shape, -1, dtype=np.int64)
        seen = np.zeros(y_shape, dtype=bool)  # has this window met a real cell yet?
        for values, real, index in _window_offsets(x, pool, stride, padding, out):
            # Strictly greater, so an equal later value does not replace the first maximum;
            # a NaN replaces a non-NaN so that NaN propagates.
            better = (values > y) | (np.isnan(values) & ~np.isnan(y))
            take = real & (~seen | better)
            y = np.where(take, values, y)
            argmax = np.where(take, index, argmax)
            seen |= real
    else:
        y = np.zeros(y_shape, dtype=x.dtype)
        for values, _, _ in _window_offsets(x, pool, stride, padding, out):
            y += values  # padded cells hold 0, so they add nothing
        if mode == "avg":
            y /= real_cell_counts(x.shape[1:3], out, pool, stride, padding, x.dtype)[None, :, :, None]
    return y, Pool2DCache(mode, tuple(x.shape), x.dtype, pool, stride, padding, argmax)


def backward(dy: np.ndarray, cache: Pool2DCache) -> np.ndarray:
    mode, x_shape, dtype, pool, stride, padding, argmax = cache
    n, h, w, c = x_shape
    if mode == "max":
        # Scatter-add each output gradient onto the one cell its maximum came from; np.add.at adds
        # repeated targets (overlapping windows) instead of keeping only the last write.
        dx = np.zeros((n, h * w, c), dtype=dtype)
        batch = np.arange(n)[:, None, None, None]
        channel = np.arange(c)[None, None, None, :]
        np.add.at(dx, (np.broadcast_to(batch, dy.shape), argmax, np.broadcast_to(channel, dy.shape)), dy)
        return dx.reshape(x_shape)
    out = dy.shape[1:3]
    share = dy
    if mode == "avg":  # each real cell of a window gets 1/count of the window's gradient
        share = dy / real_cell_counts((h, w), out, pool, stride, padding, dtype)[None, :, :, None]
    (top, bottom), (left, right) = padding
    dx_padded = np.zeros((n, h + top + bottom, w + left + right, c), dtype=dtype)
    for i in range(pool[0]):
        rows = slice(i, i + stride[0] * (out[0] - 1) + 1, stride[0])
        for j in range(pool[1]):
            cols = slice(j, j + stride[1] * (out[1] - 1) + 1, stride[1])
            dx_padded[:, rows, cols, :] += share  # one offset hits distinct cells: no collisions here
    return dx_padded[:, top:top + h, left:left + w, :].copy()
