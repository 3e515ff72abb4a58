"""2-D convolution in plain NumPy: the readable oracle the Numba and CUDA kernels are held against.

Shapes (Keras, channels last):  x (N, H, W, Cin),  w (KH, KW, Cin, Cout),  b (Cout,) or None,
y (N, OH, OW, Cout) with OH = floor((H + top + bottom - KH) / sh) + 1 (see geometry.py).

What deep-learning libraries call "convolution" is a *cross-correlation*: the filter is not flipped.
Every output pixel is the dot product of the filter with the window of the (zero-padded) input under it:

    y[n, i, j, co] = b[co] + sum_{kh, kw, ci} xp[n, i*sh + kh, j*sw + kw, ci] * w[kh, kw, ci, co]

where xp is x with the padding rows/columns of zeros added. The backward pass follows from the same
sum: each window receives dy times the filter (windows overlap, so contributions *add*), the filter
receives the windows weighted by dy, and the bias receives the sum of dy over batch and positions:

    dxp[n, i*sh + kh, j*sw + kw, ci] += sum_co dy[n, i, j, co] * w[kh, kw, ci, co]
    dw[kh, kw, ci, co]               = sum_{n, i, j} xp[n, i*sh + kh, j*sw + kw, ci] * dy[n, i, j, co]
    db[co]                           = sum_{n, i, j} dy[n, i, j, co]

dx is dxp with the padding cut off: a gradient that lands on a padded zero goes nowhere. The loops below
run over output positions (i, j) and let ``np.tensordot`` do the sum over the window for the whole batch.
``backward(dy, cache, need_dx=False)`` returns dx as None without computing it: a model's first layer
has no layer below it to pass dx to.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..ieee import ieee_quiet
from .geometry import Pads, output_size


class Conv2DCache(NamedTuple):
    x: Any  # the input (N, H, W, Cin), unpadded
    w: Any  # the filters (KH, KW, Cin, Cout)
    has_bias: bool  # False when forward got b=None: backward then returns db=None
    stride: tuple[int, int]  # (sh, sw)
    padding: Pads  # ((top, bottom), (left, right)), already resolved from "same"/"valid"/ints

    @property
    def y_shape(self) -> tuple[int, int, int, int]:
        (top, bottom), (left, right) = self.padding
        n, h, wd, _ = self.x.shape
        kh, kw, _, cout = self.w.shape
        return (n, output_size(h, kh, self.stride[0], top, bottom),
                output_size(wd, kw, self.stride[1], left, right), cout)


def pad(x: np.ndarray, padding: Pads) -> np.ndarray:
    """x with zero rows on top/bottom and zero columns left/right (batch and channels untouched)."""
    (top, bottom), (left, right) = padding
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))


@ieee_quiet
def forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: tuple[int, int],
            padding: Pads) -> tuple[np.ndarray, Conv2DCache]:
    cache = Conv2DCache(x, w, b is not None, stride, padding)
    n, oh, ow, cout = cache.y_shape
    kh, kw = w.shape[:2]
    sh, sw = stride
    xp = pad(x, padding)
    y = np.empty((n, oh, ow, cout), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            window = xp[:, i * sh:i * sh + kh, j * sw:j * sw + kw, :]  # (N, KH, KW, Cin)
            # Sum over the window's 3 axes (kh, kw, ci) against w's first 3: (N, Cout).
            y[:, i, j, :] = np.tensordot(window, w, axes=3)
    if b is not None:
        y += b
    return y, cache


@ieee_quiet
def backward(dy: np.ndarray, cache: Conv2DCache,
             need_dx: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """(dx, dw, db); dx is None, and not computed, when need_dx is False (a model's first layer)."""
    x, w, has_bias, (sh, sw), padding = cache
    kh, kw = w.shape[:2]
    xp = pad(x, padding)
    dxp = np.zeros_like(xp) if need_dx else None
    dw = np.zeros_like(w)
    _, oh, ow, _ = dy.shape
    for i in range(oh):
        for j in range(ow):
            rows, cols = slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw)
            g = dy[:, i, j, :]  # (N, Cout): the gradient reaching this output position
            if need_dx:
                # Every input pixel of the window gets g times its filter weight; overlapping windows add up.
                dxp[:, rows, cols, :] += np.tensordot(g, w, axes=([1], [3]))  # (N, KH, KW, Cin)
            # The filter gets the window weighted by g, summed over the batch.
            dw += np.tensordot(xp[:, rows, cols, :], g, axes=([0], [0]))  # (KH, KW, Cin, Cout)
    db = dy.sum(axis=(0, 1, 2)) if has_bias else None
    if not need_dx:
        return None, dw, db
    (top, bottom), (left, right) = padding
    h, wd = x.shape[1:3]
    dx = np.ascontiguousarray(dxp[:, top:top + h, left:left + wd, :])  # the padding's gradient goes nowhere
    return dx, dw, db
