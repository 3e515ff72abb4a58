"""Metrics for ``Sequential.compile(metrics=[...])``: batch means, averaged over an epoch by batch size.

"accuracy" is resolved as Keras resolves it: binary accuracy for binary cross-entropy or a single
output unit, categorical accuracy otherwise. Categorical accuracy compares argmax(y) with argmax(t)
along the last axis (ties: the first maximum, as argmax); binary accuracy compares (y > 0.5) with t.
"""

from __future__ import annotations

from typing import Any, Callable

from .. import backend
from .losses import Loss


def categorical_accuracy(y: Any, t: Any) -> float:
    xp = backend.array_module(y)
    return float(xp.mean(xp.argmax(y, axis=-1) == xp.argmax(t, axis=-1)))


def binary_accuracy(y: Any, t: Any, threshold: float = 0.5) -> float:
    xp = backend.array_module(y)
    return float(xp.mean((y > threshold).astype(y.dtype) == t))


def mean_squared_error(y: Any, t: Any) -> float:
    xp = backend.array_module(y)
    return float(xp.mean((y - t) ** 2))


def mean_absolute_error(y: Any, t: Any) -> float:
    xp = backend.array_module(y)
    return float(xp.mean(xp.abs(y - t)))


FUNCTIONS: dict[str, Callable[[Any, Any], float]] = {
    "categorical_accuracy": categorical_accuracy, "binary_accuracy": binary_accuracy,
    "mse": mean_squared_error, "mean_squared_error": mean_squared_error,
    "mae": mean_absolute_error, "mean_absolute_error": mean_absolute_error,
}
NAMES = ("accuracy", "acc", *FUNCTIONS)


class Metric:
    def __init__(self, name: str, fn: Callable[[Any, Any], float]):
        self.name, self.fn = name, fn

    def __call__(self, y: Any, t: Any) -> float:
        return self.fn(y, t)

    def __repr__(self) -> str:
        return f"Metric({self.name!r})"


def get(identifier: Any, loss: Loss | None, output_units: int | None) -> Metric:
    """A Metric from its Keras name ("accuracy" resolved against the loss and the output width)."""
    if isinstance(identifier, Metric):
        return identifier
    if not isinstance(identifier, str) or identifier not in NAMES:
        raise ValueError(f"metrics must hold names from {NAMES}; got {identifier!r}")
    if identifier in ("accuracy", "acc"):
        binary = (loss is not None and loss.op == "binary_crossentropy") or output_units == 1
        return Metric(identifier, binary_accuracy if binary else categorical_accuracy)
    return Metric(identifier, FUNCTIONS[identifier])
