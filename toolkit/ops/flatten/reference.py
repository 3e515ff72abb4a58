"""Flatten in plain NumPy: (N, d1, d2, ...) -> (N, d1*d2*...), and back for the gradient.

Conventions a learner could trip on:

* The batch axis stays; everything else is laid out in row-major (C) order, the last axis fastest, as
  Keras' Flatten does. For a channels-last image (N, H, W, C) the feature index is (h*W + w)*C + c.
  PyTorch flattens channels-first (N, C, H, W) tensors, giving (c*H + h)*W + w: the same image gives
  the features in a different order, so Dense weights after a Flatten do not carry over between the two.
* A 1-D input (N,) becomes (N, 1) (one feature per example), as in Keras.
* No arithmetic happens: the gradient of a reshape is the reshape back, dx = dy.reshape(x.shape).
* The result is a *view*: y shares memory with x (and dx with dy), as torch.flatten's result does.
  Copy it before writing into it in place.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class FlattenCache(NamedTuple):
    x_shape: tuple[int, ...]  # the shape to restore in backward
    dtype: Any  # the dtype dy must have

    @property
    def y_shape(self) -> tuple[int, int]:
        return self.x_shape[0], int(np.prod(self.x_shape[1:], dtype=np.int64))


def forward(x: np.ndarray) -> tuple[np.ndarray, FlattenCache]:
    cache = FlattenCache(tuple(x.shape), x.dtype)
    return x.reshape(cache.y_shape), cache


def backward(dy: np.ndarray, cache: FlattenCache) -> np.ndarray:
    return dy.reshape(cache.x_shape)
