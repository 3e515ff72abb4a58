"""Activation functions in plain NumPy: the readable oracle the Numba and CUDA kernels are held against.

Each elementwise activation is a pair (f, f') written as the notes write it; ``forward`` keeps x and
y = f(x) in the cache and ``backward`` returns dx = dy * f'(x). Conventions a learner could trip on:

* binary step: 1 if x >= q else 0; bipolar step: 1 if x >= q else -1. Their derivative is taken as 0
  everywhere (it is 0 almost everywhere and undefined at q), so no gradient flows through them.
* ramp: 0 for x < 0, x on [0, 1], 1 for x > 1; derivative 1 on the open interval (0, 1), else 0.
* ReLU'(0) = 0; leaky ReLU'(0) = alpha (the negative side includes 0, as in PyTorch).
* sigmoid with steepness lambda: 1 / (1 + exp(-lambda x)), f' = lambda f (1 - f).
* bipolar sigmoid: 2 / (1 + exp(-lambda x)) - 1 = tanh(lambda x / 2), f' = lambda/2 (1 + f)(1 - f).
* softmax and log-softmax act along ``axis`` (default the last) and subtract the maximum first,
  so inputs of magnitude 1e4 neither overflow nor warn.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

ELEMENTWISE = (
    "identity", "binary_step", "bipolar_step", "sigmoid", "bipolar_sigmoid",
    "tanh", "relu", "leaky_relu", "ramp",
)
ALONG_AXIS = ("softmax", "log_softmax")
ALL = ELEMENTWISE + ALONG_AXIS

# Parameters each activation takes, with defaults.
PARAMETERS: dict[str, dict[str, float]] = {
    "binary_step": {"threshold": 0.0},
    "bipolar_step": {"threshold": 0.0},
    "sigmoid": {"steepness": 1.0},
    "bipolar_sigmoid": {"steepness": 1.0},
    "leaky_relu": {"alpha": 0.01},
}


class ActivationCache(NamedTuple):
    name: str
    x: Any  # the input (elementwise derivatives that need it)
    y: Any  # the output f(x)
    params: dict  # threshold / steepness / alpha / axis


def _stable_sigmoid(z: np.ndarray) -> np.ndarray:
    # exp of a non-positive number only: never overflows.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def value(name: str, x: np.ndarray, threshold=0.0, steepness=1.0, alpha=0.01) -> np.ndarray:
    """f(x) for an elementwise activation."""
    one = x.dtype.type(1)
    if name == "identity":
        return x.copy()
    if name == "binary_step":
        return np.where(x >= threshold, one, x.dtype.type(0))
    if name == "bipolar_step":
        return np.where(x >= threshold, one, -one)
    if name == "sigmoid":
        return _stable_sigmoid(x * x.dtype.type(steepness))
    if name == "bipolar_sigmoid":
        return np.tanh(x * x.dtype.type(steepness / 2))
    if name == "tanh":
        return np.tanh(x)
    if name == "relu":
        return np.maximum(x, 0).astype(x.dtype, copy=False)
    if name == "leaky_relu":
        return np.where(x > 0, x, x * x.dtype.type(alpha))
    if name == "ramp":
        return np.clip(x, 0, 1).astype(x.dtype, copy=False)
    raise ValueError(f"unknown elementwise activation {name!r}")


def derivative(name: str, x: np.ndarray, y: np.ndarray, threshold=0.0, steepness=1.0, alpha=0.01) -> np.ndarray:
    """f'(x), written with y = f(x) where the notes do."""
    t = x.dtype.type
    if name == "identity":
        return np.ones_like(x)
    if name in ("binary_step", "bipolar_step"):
        return np.zeros_like(x)
    if name == "sigmoid":
        return t(steepness) * y * (1 - y)
    if name == "bipolar_sigmoid":
        return t(steepness / 2) * (1 + y) * (1 - y)
    if name == "tanh":
        return 1 - y * y
    if name == "relu":
        return (x > 0).astype(x.dtype)
    if name == "leaky_relu":
        return np.where(x > 0, t(1), t(alpha))
    if name == "ramp":
        return ((x > 0) & (x < 1)).astype(x.dtype)
    raise ValueError(f"unknown elementwise activation {name!r}")


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def forward(name: str, x: np.ndarray, **params: Any) -> tuple[np.ndarray, ActivationCache]:
    if name == "softmax":
        y = softmax(x, params["axis"])
    elif name == "log_softmax":
        y = log_softmax(x, params["axis"])
    else:
        y = value(name, x, **params)
    return y, ActivationCache(name, x, y, params)


def backward(dy: np.ndarray, cache: ActivationCache) -> np.ndarray:
    name, x, y, params = cache
    if name == "softmax":
        # Jacobian-vector product of softmax: dx = y * (dy - sum(dy * y)).
        return y * (dy - (dy * y).sum(axis=params["axis"], keepdims=True))
    if name == "log_softmax":
        # d log_softmax: dx = dy - softmax(x) * sum(dy).
        return dy - np.exp(y) * dy.sum(axis=params["axis"], keepdims=True)
    return dy * derivative(name, x, y, **params)


def forward_backward(name: str, x: np.ndarray, dy: np.ndarray, **params: Any) -> tuple[np.ndarray, np.ndarray]:
    """(y, dx): the forward and then the backward of the same call, for a dy known in advance. The
    kernels fuse the two into one pass over memory; here it is simply one after the other."""
    y, cache = forward(name, x, **params)
    return y, backward(dy, cache)
