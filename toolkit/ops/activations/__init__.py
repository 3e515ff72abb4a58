"""Activation functions: validate, then run on the device the input lives on.

    y, cache = activation_forward(x, "sigmoid", steepness=1.0)
    dx = activation_backward(dy, cache)
    y, dx = activation_forward_backward(x, dy, "sigmoid")   # both in one pass, when dy is known already

Named shortcuts (``sigmoid_forward(x)`` ...) call the same pair. See reference.py for the formulas and
the conventions at the kinks (ReLU'(0) = 0, step derivatives 0, ...).
"""

from __future__ import annotations

from typing import Any

from ... import backend, validate
from .. import cache_checks
from .reference import ALL, ALONG_AXIS, PARAMETERS, ActivationCache

__all__ = [
    "ALL", "ActivationCache", "activation_forward", "activation_backward", "activation_forward_backward",
    "identity_forward", "binary_step_forward", "bipolar_step_forward", "sigmoid_forward",
    "bipolar_sigmoid_forward", "tanh_forward", "relu_forward", "leaky_relu_forward", "ramp_forward",
    "softmax_forward", "log_softmax_forward",
]


def _params(name: str, given: dict[str, Any], ndim: int) -> dict[str, Any]:
    allowed = dict(PARAMETERS.get(name, {}))
    if name in ALONG_AXIS:
        allowed["axis"] = -1
    unknown = set(given) - set(allowed)
    if unknown:
        raise TypeError(f"activation {name!r} takes parameters {sorted(allowed) or 'none'}; got {sorted(unknown)}")
    params = {**allowed, **given}
    for key in ("threshold", "steepness", "alpha"):
        if key in params:
            params[key] = validate.real(key, params[key])
    if "steepness" in params and params["steepness"] <= 0:
        raise ValueError(f"steepness must be > 0; got {params['steepness']}")
    if "axis" in params:
        params["axis"] = validate.axis("axis", params["axis"], ndim)
    return params


def _check_limits(x: Any, name: str, params: dict[str, Any], outputs: int) -> None:
    """Refuse outputs that cannot fit, before allocating: ``outputs`` arrays of x's shape (y; y and dx
    fused), and for softmax along an axis that is not the last, x and each output moved to rows (copies)."""
    arrays = outputs
    if name in ALONG_AXIS and params["axis"] != x.ndim - 1:
        arrays += 2 * outputs  # the rows of x (and dy) and each output's rows, before moving back
    what = "the output y" if arrays == 1 else f"{arrays} arrays of x's shape (outputs and row copies)"
    validate.fits(x, [(lambda: f"x {tuple(x.shape)}", what, (arrays, *x.shape), x.dtype)])


def activation_forward(x: Any, name: str, **params: Any) -> tuple[Any, ActivationCache]:
    """y = f(x) for activation ``name`` (one of ALL); returns (y, cache)."""
    validate.choice("name", name, ALL)
    x = validate.array("x", x)
    params = _params(name, params, x.ndim)
    _check_limits(x, name, params, 1)
    return backend.dispatch("activations", x=x).forward(name, x, **params)


def activation_backward(dy: Any, cache: ActivationCache) -> Any:
    """dx = dL/dx given dy = dL/dy and the cache of the forward pass."""
    cache = cache_checks.activation(cache)  # before any kernel: its fields agree (shapes, dtypes, device)
    dy = validate.array("dy", dy, shape=cache.y.shape, dtype=cache.y.dtype)
    return backend.dispatch("activations", dy=dy, x=cache.x).backward(dy, cache)


def activation_forward_backward(x: Any, dy: Any, name: str, **params: Any) -> tuple[Any, Any]:
    """(y, dx) = (f(x), dL/dx given dy = dL/dy), the forward and backward of activation ``name`` fused:
    the CPU kernels read x and dy and write y and dx in a single pass over memory (forward then backward
    reads x twice). The same values as ``activation_forward`` followed by ``activation_backward``; no
    cache is returned because nothing is left to differentiate. dy must have x's shape and dtype."""
    validate.choice("name", name, ALL)
    x = validate.array("x", x)
    dy = validate.array("dy", dy, shape=x.shape, dtype=x.dtype)
    params = _params(name, params, x.ndim)
    _check_limits(x, name, params, 2)
    impl = backend.dispatch("activations", x=x, dy=dy)
    fused = getattr(impl, "forward_backward", None)
    if fused is None:  # an implementation without the fused kernel: the same result in two passes
        y, cache = impl.forward(name, x, **params)
        return y, impl.backward(dy, cache)
    return fused(name, x, dy, **params)


def identity_forward(x):
    return activation_forward(x, "identity")


def binary_step_forward(x, threshold=0.0):
    return activation_forward(x, "binary_step", threshold=threshold)


def bipolar_step_forward(x, threshold=0.0):
    return activation_forward(x, "bipolar_step", threshold=threshold)


def sigmoid_forward(x, steepness=1.0):
    return activation_forward(x, "sigmoid", steepness=steepness)


def bipolar_sigmoid_forward(x, steepness=1.0):
    return activation_forward(x, "bipolar_sigmoid", steepness=steepness)


def tanh_forward(x):
    return activation_forward(x, "tanh")


def relu_forward(x):
    return activation_forward(x, "relu")


def leaky_relu_forward(x, alpha=0.01):
    return activation_forward(x, "leaky_relu", alpha=alpha)


def ramp_forward(x):
    return activation_forward(x, "ramp")


def softmax_forward(x, axis=-1):
    return activation_forward(x, "softmax", axis=axis)


def log_softmax_forward(x, axis=-1):
    return activation_forward(x, "log_softmax", axis=axis)
