"""Loss functions in plain NumPy: the readable oracle the Numba and CUDA kernels are held against.

Argument order: ``loss_forward(name, y, t)`` takes the *prediction* y first and the *target* t second,
the notes' order. Keras losses take them the other way round, ``loss(y_true, y_pred)``.

Every loss returns one number, a 0-d array of y's dtype, and ``backward`` returns dL/dy of y's shape.
n is the number of elements of y; M the number of samples (n divided by the size of the class axis).

* ``mse``        L = 1/n sum (y - t)^2                 dL/dy = 2 (y - t) / n
  Keras ``MeanSquaredError`` (its mean over the last axis, then over the batch, is the same 1/n).
* ``mse_half``   L = 1/(2n) sum (y - t)^2              dL/dy = (y - t) / n
  The notes' J = 1/(2n) sum (y - t)^2: the 1/2 cancels the 2 of the derivative. Half of Keras' MSE.
* ``quadratic``  L = 1/2 sum (y - t)^2 (a sum, no mean) dL/dy = y - t
  The notes' per-sample squared error E = 1/2 (t - y)^2, summed over all elements.
* ``categorical_crossentropy`` (y probabilities, classes on ``axis``, default -1; t one-hot or soft)
                 L = -1/M sum t log(clip(y, eps, 1 - eps))   dL/dy = -t / (M y) inside the clip range
  eps = 1e-7, Keras' backend epsilon. Where y < eps or y > 1 - eps the clip is flat, so the gradient
  there is exactly 0 (the boundaries themselves pass the gradient, as TensorFlow's clip does). Keras'
  ``categorical_crossentropy`` also rescales y to sum to 1 along the axis first; we do not (it makes
  no difference for the output of a softmax, which already sums to 1).
* ``softmax_crossentropy`` (y are logits z, classes on ``axis``): categorical cross-entropy of
  softmax(z), fused and computed from a stable log-softmax, log p = (z - max z) - log sum exp(z - max z),
  so logits of magnitude 1e4 neither overflow nor warn. No clipping.
                 L = -1/M sum t log softmax(z)      dL/dz = (softmax(z) sum_c t - t) / M
  which is the familiar (p - t) / M whenever each sample's targets sum to 1 (one-hot or a
  distribution). Keras: ``CategoricalCrossentropy(from_logits=True)``.
* ``binary_crossentropy`` (probabilities, same clip as above; mean over all elements)
                 L = -1/n sum [t log c + (1 - t) log(1 - c)], c = clip(y, eps, 1 - eps)
                 dL/dy = (-t / c + (1 - t) / (1 - c)) / n inside the clip range, else 0
  With ``from_logits=True`` y are logits z and, stably (no exp of a positive number),
                 L = 1/n sum [max(z, 0) - z t + log1p(exp(-|z|))]     dL/dz = (sigmoid(z) - t) / n
  Keras ``BinaryCrossentropy`` (from_logits as there).
* ``mape``       L = 100/n sum |(t - y) / max(|t|, eps)|    dL/dy = 100/n sign(y - t) / max(|t|, eps)
  Keras ``MeanAbsolutePercentageError`` (eps = 1e-7). sign(0) = 0: no gradient where y == t exactly.

NaN in y or t gives a NaN loss; the gradient is NaN at that element (a NaN is never "outside" the clip
range). Infinities follow IEEE: a +inf logit makes its sample NaN (inf - inf), and so does a -inf logit
even where its target is 0 (0 * -inf); mse and mape of an infinite y are inf.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

EPSILON = 1e-7  # Keras' backend epsilon: the clip of probabilities and the floor of |t| in mape

ELEMENTWISE = ("mse", "mse_half", "quadratic", "categorical_crossentropy", "binary_crossentropy", "mape")
ALL = ("mse", "mse_half", "quadratic", "categorical_crossentropy", "softmax_crossentropy",
       "binary_crossentropy", "mape")
ALONG_AXIS = ("categorical_crossentropy", "softmax_crossentropy")

# Parameters each loss takes, with defaults.
PARAMETERS: dict[str, dict[str, Any]] = {
    "categorical_crossentropy": {"axis": -1},
    "softmax_crossentropy": {"axis": -1},
    "binary_crossentropy": {"from_logits": False},
}


class LossCache(NamedTuple):
    name: str
    y: Any  # the prediction (probabilities or logits)
    t: Any  # the target
    params: dict  # axis / from_logits (normalised)
    probabilities: Any  # softmax(z) for softmax_crossentropy (y's layout), else None


def scale(name: str, shape: tuple[int, ...], params: dict) -> float:
    """The factor in front of the sum over elements: 1/n, 1/(2n), 1/2, 1/M or 100/n."""
    n = int(np.prod(shape))
    if name == "mse":
        return 1.0 / n
    if name == "mse_half":
        return 0.5 / n
    if name == "quadratic":
        return 0.5
    if name in ALONG_AXIS:
        return shape[params["axis"]] / n  # 1/M, M = n / classes
    if name == "mape":
        return 100.0 / n
    if name == "binary_crossentropy":
        return 1.0 / n
    raise ValueError(f"unknown loss {name!r}")


def _clip_bounds(dtype) -> tuple[Any, Any]:
    t = np.dtype(dtype).type
    return t(EPSILON), t(1) - t(EPSILON)  # in y's dtype: 1 - 1e-7 rounds to 1 - 2^-23 in float32


def _outside(y: np.ndarray, lo, hi) -> np.ndarray:
    # NaN compares False both ways, so a NaN is never outside and its NaN gradient survives.
    return (y < lo) | (y > hi)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(z))  # never exp of a positive number
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)


def terms(name: str, y: np.ndarray, t: np.ndarray, params: dict) -> np.ndarray:
    """The per-element terms whose sum, times ``scale``, is the loss."""
    lo, hi = _clip_bounds(y.dtype)
    if name in ("mse", "mse_half", "quadratic"):
        return (y - t) ** 2
    if name == "categorical_crossentropy":
        return -t * np.log(np.clip(y, lo, hi))
    if name == "binary_crossentropy" and params["from_logits"]:
        return np.maximum(y, 0) - y * t + np.log1p(np.exp(-np.abs(y)))
    if name == "binary_crossentropy":
        c = np.clip(y, lo, hi)
        return -(t * np.log(c) + (1 - t) * np.log(1 - c))
    if name == "mape":
        return np.abs((t - y) / np.maximum(np.abs(t), lo))
    raise ValueError(f"no elementwise terms for loss {name!r}")


def term_derivatives(name: str, y: np.ndarray, t: np.ndarray, params: dict) -> np.ndarray:
    """d term / dy for each element (multiply by ``scale`` for dL/dy)."""
    lo, hi = _clip_bounds(y.dtype)
    if name in ("mse", "mse_half", "quadratic"):
        return 2 * (y - t)
    if name == "categorical_crossentropy":
        # Divide by the clipped y: equal to y wherever the result is kept, and never 0.
        return np.where(_outside(y, lo, hi), y.dtype.type(0), -t / np.clip(y, lo, hi))
    if name == "binary_crossentropy" and params["from_logits"]:
        return _sigmoid(y) - t
    if name == "binary_crossentropy":
        c = np.clip(y, lo, hi)  # equal to y wherever the result is kept; never 0 or 1
        return np.where(_outside(y, lo, hi), y.dtype.type(0), -t / c + (1 - t) / (1 - c))
    if name == "mape":
        return np.sign(y - t) / np.maximum(np.abs(t), lo)
    raise ValueError(f"no elementwise terms for loss {name!r}")


def log_softmax(z: np.ndarray, axis: int) -> np.ndarray:
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def forward(name: str, y: np.ndarray, t: np.ndarray, **params: Any) -> tuple[np.ndarray, LossCache]:
    k = y.dtype.type(scale(name, y.shape, params))
    probabilities = None
    if name == "softmax_crossentropy":
        log_p = log_softmax(y, params["axis"])
        probabilities = np.exp(log_p)
        loss = k * (-t * log_p).sum()
    else:
        loss = k * terms(name, y, t, params).sum()
    return np.asarray(loss, dtype=y.dtype), LossCache(name, y, t, params, probabilities)


def backward(cache: LossCache, dloss: float = 1.0) -> np.ndarray:
    name, y, t, params, probabilities = cache
    k = y.dtype.type(dloss * scale(name, y.shape, params))
    if name == "softmax_crossentropy":
        return k * (probabilities * t.sum(axis=params["axis"], keepdims=True) - t)
    return k * term_derivatives(name, y, t, params)
