"""Seeded weight initialisers with Keras' names and formulas.

Every initialiser is a function ``init(shape, dtype, seed) -> numpy.ndarray``; the layer moves the
result to the device in use (``toolkit.backend``). Random initialisers draw from NumPy's PCG64
``Generator`` keyed by ``seed``, so the same seed gives the same weights on every machine and on CPU
and GPU alike (the draw is always made on the CPU, in float64, then rounded once to ``dtype``).
The numbers are NOT bit-identical to Keras' (Keras draws through its own backend RNG); the
*distributions* are the same.

Fans, as Keras computes them (``keras.src.initializers.random_initializers.compute_fans``):

* a matrix (in, out):                      fan_in = in,          fan_out = out
* a convolution kernel (KH, KW, Cin, Cout): fan_in = KH*KW*Cin,   fan_out = KH*KW*Cout
* an LSTM kernel (D, 4H) is a matrix:      fan_in = D,           fan_out = 4H (the four gates together)

``glorot_uniform`` (Keras' default for Dense/Conv2D/RNN kernels): U(-limit, limit),
limit = sqrt(6 / (fan_in + fan_out)).  ``orthogonal`` (Keras' default recurrent kernel): the Q of a
QR decomposition of a standard-normal matrix, signs fixed by diag(R) so the result is uniformly
distributed over orthogonal matrices; a non-square (rows, cols) gets orthonormal rows or columns.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

Initializer = Callable[[tuple[int, ...], Any, int], np.ndarray]


def compute_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of ``shape`` (Keras' rule: leading axes are the receptive field)."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[:-2]))
    return shape[-2] * receptive, shape[-1] * receptive


def _generator(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed))


def zeros(shape: tuple[int, ...], dtype: Any = np.float32, seed: int = 0) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


def ones(shape: tuple[int, ...], dtype: Any = np.float32, seed: int = 0) -> np.ndarray:
    return np.ones(shape, dtype=dtype)


def glorot_uniform(shape: tuple[int, ...], dtype: Any = np.float32, seed: int = 0) -> np.ndarray:
    """U(-limit, limit) with limit = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""
    fan_in, fan_out = compute_fans(shape)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return _generator(seed).uniform(-limit, limit, size=shape).astype(dtype)


def glorot_normal(shape: tuple[int, ...], dtype: Any = np.float32, seed: int = 0) -> np.ndarray:
    """Truncated normal (at 2 standard deviations, as Keras) with stddev sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = compute_fans(shape)
    # 0.87962566 is the stddev of a unit normal truncated to [-2, 2]: Keras divides by it too.
    std = np.sqrt(2.0 / (fan_in + fan_out)) / 0.87962566103423978
    return _truncated_normal(shape, std, seed).astype(dtype)


def he_uniform(shape: tuple[int, ...], dtype: Any = np.float32, seed: int = 0) -> np.ndarray:
    """U(-limit, limit) with limit = sqrt(6 / fan_in) (He et al. 2015, for ReLU layers)."""
    fan_in, _ = compute_fans(shape)
    limit = np.sqrt(6.0 / fan_in)
    return _generator(seed).uniform(-limit, limit, size=shape).astype(dtype)


def _truncated_normal(shape: tuple[int, ...], std: float, seed: int) -> np.ndarray:
    rng = _generator(seed)
    out = rng.standard_normal(shape)
    outside = np.abs(out) > 2.0
    while outside.any():  # redraw the tails: about 4.6% per round
        out[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(out) > 2.0
    return out * std


def orthogonal(shape: tuple[int, ...], dtype: Any = np.float32, seed: int = 0, gain: float = 1.0) -> np.ndarray:
    """A (semi-)orthogonal matrix: Keras' recurrent_initializer default (Saxe et al. 2014)."""
    if len(shape) < 2:
        raise ValueError(f"orthogonal needs a shape of at least 2 dimensions; got {shape}")
    rows, cols = int(np.prod(shape[:-1])), shape[-1]
    a = _generator(seed).standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))  # makes the decomposition unique: uniform (Haar) over orthogonal matrices
    if rows < cols:
        q = q.T
    return (gain * q.reshape(shape)).astype(dtype)


INITIALIZERS: dict[str, Initializer] = {
    "zeros": zeros, "ones": ones, "glorot_uniform": glorot_uniform, "glorot_normal": glorot_normal,
    "he_uniform": he_uniform, "orthogonal": orthogonal,
}


def get(identifier: str | Initializer) -> Initializer:
    """An initialiser by Keras name, or a callable ``(shape, dtype, seed) -> array`` passed through."""
    if callable(identifier):
        return identifier
    if identifier not in INITIALIZERS:
        raise ValueError(f"initializer must be one of {tuple(INITIALIZERS)} or a callable (shape, dtype, seed); "
                         f"got {identifier!r}")
    return INITIALIZERS[identifier]
