"""Inverted dropout in plain NumPy: the readable oracle the Numba and CUDA kernels are held against.

Training: each element is kept with probability 1 - rate, and kept elements are divided by 1 - rate
so that the expected value of every output equals its input (nothing needs rescaling at inference):

    y = x / (1 - rate)   where kept,       y = 0   where dropped.

Inference (training=False): y = x, no mask. The backward pass is the same map applied to dy:
dx = dy / (1 - rate) where kept, 0 where dropped.

Conventions a learner could trip on:

* ``rate`` is the fraction DROPPED (Keras' Dropout(rate)), not the keep probability; rate in [0, 1).
* The divisor 1 - rate is rounded to x's dtype once; survivors are exactly x / that divisor.
* A dropped element is SET to 0 (a selection, as Keras' np.where), so a dropped NaN or Inf gives 0;
  kept NaN/Inf propagate.
* The mask depends only on (seed, rate, element index in C order), not on the shape: the same seed
  gives the same mask on CPU and GPU (see philox.py for the exact mapping). Reuse of a seed reuses
  the mask; a training loop should pass a fresh seed (e.g. base_seed + step) at every step.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .philox import keep_threshold, stream_words


class DropoutCache(NamedTuple):
    mask: Any  # bool array of x's shape, True = kept; None when training=False
    rate: float
    seed: int
    training: bool
    x_shape: tuple[int, ...]
    dtype: Any  # dtype of x, y, dy and dx


def keep_divisor(rate: float, dtype) -> Any:
    """1 - rate rounded to ``dtype``: survivors are divided by exactly this number."""
    return np.dtype(dtype).type(1.0 - rate)


def dropout_mask(shape: tuple[int, ...], rate: float, seed: int) -> np.ndarray:
    """The keep mask (bool, True = kept) of an array of ``shape`` for (rate, seed)."""
    size = int(np.prod(shape, dtype=np.int64))
    words = stream_words(size, seed)
    return ((words >> 8) >= keep_threshold(rate)).reshape(shape)


def forward(x: np.ndarray, rate: float, seed: int, training: bool) -> tuple[np.ndarray, DropoutCache]:
    if not training:
        return x.copy(), DropoutCache(None, rate, seed, False, tuple(x.shape), x.dtype)
    mask = dropout_mask(x.shape, rate, seed)
    y = np.where(mask, x / keep_divisor(rate, x.dtype), x.dtype.type(0))
    return y, DropoutCache(mask, rate, seed, True, tuple(x.shape), x.dtype)


def backward(dy: np.ndarray, cache: DropoutCache) -> np.ndarray:
    if cache.mask is None:  # inference: the identity
        return dy.copy()
    return np.where(cache.mask, dy / keep_divisor(cache.rate, dy.dtype), dy.dtype.type(0))
