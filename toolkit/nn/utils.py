"""Keras' ``to_categorical``: class labels -> one-hot rows."""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np

from .. import backend


def to_categorical(y: Any, num_classes: int | None = None, dtype: Any = "float32") -> Any:
    """One-hot encode integer labels: y of shape (...) -> (..., num_classes), on y's device.

    ``num_classes`` defaults to max(y) + 1. Labels must be integers (or integral floats) in
    [0, num_classes). As Keras, a trailing axis of size 1 is squeezed first: (N, 1) -> (N, num_classes).
    """
    xp = backend.array_module(y) if hasattr(y, "dtype") else np
    labels = xp.asarray(y)
    if labels.dtype.kind == "f":
        if labels.size and not bool(xp.all(labels == xp.floor(labels))):
            raise ValueError("y must hold integer class labels; got non-integral floats")
    elif labels.dtype.kind not in "iu":
        raise TypeError(f"y must hold integer class labels; got dtype {labels.dtype}")
    if labels.ndim >= 1 and labels.shape[-1] == 1 and labels.ndim > 1:
        labels = labels.reshape(labels.shape[:-1])
    if labels.size == 0:
        raise ValueError(f"y must not be empty; got shape {tuple(labels.shape)}")
    labels = labels.astype(np.int64)
    lowest, highest = int(labels.min()), int(labels.max())
    if num_classes is None:
        num_classes = highest + 1
    elif isinstance(num_classes, bool) or not isinstance(num_classes, Integral) or num_classes <= 0:
        raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}")
    if lowest < 0 or highest >= num_classes:
        raise ValueError(f"class labels must be in [0, {num_classes}); got labels from {lowest} to {highest}")
    return (labels[..., None] == xp.arange(int(num_classes))).astype(dtype)
