"""Loss functions: validate, then run on the device the inputs live on.

    loss, cache = loss_forward("mse", y, t)      # y the prediction, t the target (Keras: y_true first!)
    dy = loss_backward(cache)                    # dL/dy, y's shape; dloss scales it (chain rule)

The loss is a 0-d array of y's dtype. Named shortcuts (``mse_forward(y, t)`` ...) call the same pair.
See reference.py for each definition, its gradient and its Keras equivalent (1/n vs the notes' 1/(2n),
the 1e-7 clip of probabilities, ...).
"""

from __future__ import annotations

from typing import Any

from ... import backend, validate
from .. import cache_checks
from .reference import ALL, ALONG_AXIS, EPSILON, PARAMETERS, LossCache

__all__ = [
    "ALL", "EPSILON", "LossCache", "loss_forward", "loss_backward",
    "mse_forward", "mse_half_forward", "quadratic_forward", "categorical_crossentropy_forward",
    "softmax_crossentropy_forward", "binary_crossentropy_forward", "mape_forward",
]


def _params(name: str, given: dict[str, Any], ndim: int) -> dict[str, Any]:
    allowed = PARAMETERS.get(name, {})
    unknown = set(given) - set(allowed)
    if unknown:
        raise TypeError(f"loss {name!r} takes parameters {sorted(allowed) or 'none'}; got {sorted(unknown)}")
    params = {**allowed, **given}
    if name in ALONG_AXIS:
        if ndim == 0:
            raise ValueError(f"y must have at least 1 dimension (the class axis) for {name}; got a 0-d array")
        params["axis"] = validate.axis("axis", params["axis"], ndim)
    if "from_logits" in params:
        params["from_logits"] = validate.flag("from_logits", params["from_logits"])
    return params


def loss_forward(name: str, y: Any, t: Any, **params: Any) -> tuple[Any, LossCache]:
    """The loss ``name`` (one of ALL) of prediction y against target t (same shape and dtype)."""
    validate.choice("name", name, ALL)
    y = validate.array("y", y)
    t = validate.array("t", t, dtype=y.dtype)
    validate.same_shape("t", t, "y", y)
    params = _params(name, params, y.ndim)
    _check_limits(name, y, params)
    return backend.dispatch("losses", y=y, t=t).forward(name, y, t, **params)


def _check_limits(name: str, y: Any, params: dict[str, Any]) -> None:
    """Refuse what cannot fit before allocating. Only the fused softmax cross-entropy makes arrays of
    y's size: the probabilities it caches, one float64 loss per row, and for an axis that is not the last,
    y and t moved to rows and the probabilities moved back (copies). The other losses sum in place."""
    if name != "softmax_crossentropy":
        return
    arrays = 1 if params["axis"] == y.ndim - 1 else 4
    rows = y.size // y.shape[params["axis"]]
    sizes = lambda: f"y {tuple(y.shape)}"  # noqa: E731  (formatted only for an error)
    validate.fits(y, [(sizes, "the probabilities (and row copies) of y's shape", (arrays, *y.shape), y.dtype),
                      (sizes, "the per-row losses (float64)", (rows,), "float64")])


def _scalar(dloss: Any) -> float:
    if hasattr(dloss, "shape") and hasattr(dloss, "dtype"):
        if tuple(dloss.shape) != ():
            raise ValueError(
                f"dloss must be a scalar (the loss is one number); got an array of shape {tuple(dloss.shape)}"
            )
        if dloss.dtype.kind not in "iuf":
            raise TypeError(f"dloss must be a real number; got an array of dtype {dloss.dtype}")
        dloss = float(dloss)
    return validate.real("dloss", dloss)


def loss_backward(cache: LossCache, dloss: Any = 1.0) -> Any:
    """dL/dy (y's shape and dtype) times the upstream gradient ``dloss`` (1 when the loss is the output)."""
    cache = cache_checks.loss(cache)  # before any kernel: its fields agree (shapes, dtypes, device)
    dloss = _scalar(dloss)
    return backend.dispatch("losses", y=cache.y, t=cache.t).backward(cache, dloss)


def mse_forward(y, t):
    return loss_forward("mse", y, t)


def mse_half_forward(y, t):
    return loss_forward("mse_half", y, t)


def quadratic_forward(y, t):
    return loss_forward("quadratic", y, t)


def categorical_crossentropy_forward(y, t, axis=-1):
    return loss_forward("categorical_crossentropy", y, t, axis=axis)


def softmax_crossentropy_forward(z, t, axis=-1):
    return loss_forward("softmax_crossentropy", z, t, axis=axis)


def binary_crossentropy_forward(y, t, from_logits=False):
    return loss_forward("binary_crossentropy", y, t, from_logits=from_logits)


def mape_forward(y, t):
    return loss_forward("mape", y, t)
