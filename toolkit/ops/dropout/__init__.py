"""Inverted dropout: validate, then run where x lives.

    y, cache = dropout_forward(x, rate=0.5, seed=42, training=True)
    dx = dropout_backward(dy, cache)
    mask = dropout_mask(x.shape, rate=0.5, seed=42)   # the same keep mask, for tests and teaching

``rate`` is the fraction dropped, in [0, 1); survivors are divided by 1 - rate; training=False is
the identity. The mask comes from Philox-4x32-10 keyed by ``seed`` (an integer in [0, 2^64)) and
counted by element index, so CPU and GPU give bit-identical masks (see philox.py and reference.py).
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np

from ... import backend, validate
from .. import cache_checks
from .reference import DropoutCache

__all__ = ["DropoutCache", "dropout_forward", "dropout_backward", "dropout_mask"]

SEED_LIMIT = 2**64


def _seed(seed: Any) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, Integral):
        raise TypeError(f"seed must be an integer in [0, 2**64); got {seed!r} ({type(seed).__name__})")
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"seed must be an integer in [0, 2**64); got {seed}")
    return int(seed)


def _rate(rate: Any) -> float:
    return validate.real("rate", rate, low=0.0, high=1.0, high_open=True)


def dropout_forward(x: Any, rate: Any, seed: Any, training: Any = True) -> tuple[Any, DropoutCache]:
    """y = x / (1 - rate) where kept, 0 where dropped (identity when training is False)."""
    x = validate.array("x", x)
    rate = _rate(rate)
    seed = _seed(seed)
    training = validate.flag("training", training)
    shape = lambda: f"x {tuple(x.shape)}"  # noqa: E731  (formatted only for an error)
    needs = [(shape, "the output y", x.shape, x.dtype)]
    if training:
        needs.append((shape, "the keep mask (bool, x's shape)", x.shape, np.bool_))
    validate.fits(x, needs)
    return backend.dispatch("dropout", x=x).forward(x, rate, seed, training)


def dropout_backward(dy: Any, cache: DropoutCache) -> Any:
    """dx = dy / (1 - rate) where kept, 0 where dropped (dy itself after an inference pass)."""
    cache = cache_checks.dropout(cache)  # before any kernel: its fields agree (shapes, dtypes, device)
    dy = validate.array("dy", dy, shape=cache.x_shape, dtype=cache.dtype)
    return backend.dispatch("dropout", dy=dy, mask=cache.mask).backward(dy, cache)


def dropout_mask(shape: Any, rate: Any, seed: Any) -> Any:
    """The bool keep mask (True = kept) dropout_forward uses for an array of ``shape``, on the backend in use."""
    dims = (shape,) if isinstance(shape, Integral) and not isinstance(shape, bool) else shape
    if not isinstance(dims, (tuple, list)):
        raise TypeError(f"shape must be an int or a tuple of ints; got {shape!r} ({type(shape).__name__})")
    dims = tuple(validate.positive_int(f"shape[{i}]", d) for i, d in enumerate(dims))
    rate = _rate(rate)
    seed = _seed(seed)
    device = backend.current()
    validate.fits(device, [(f"shape {dims}", "the bool mask", dims, np.bool_)])
    return backend.implementation("dropout", device).dropout_mask(dims, rate, seed)
