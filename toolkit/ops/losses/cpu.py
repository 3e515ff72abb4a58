"""Loss functions as Numba kernels (CPU). Same signatures and cache as reference.py.

Every loss except softmax cross-entropy is a sum of per-element terms times a factor (see
``reference.scale``), so one kernel driven by an integer code computes the terms and one computes their
derivatives. The sum is a parallel reduction without races: the flat arrays are cut into fixed chunks
of CHUNK elements, each prange iteration sums one chunk into its own slot of a partial-sums array, and
the partials are added in order afterwards. The chunks depend only on the size, not on the thread
count, so the loss is the same bit for bit on any machine. Arrays below PARALLEL_MIN_SIZE elements
run a serial twin of each kernel (same chunks, same order, same result): for them starting threads
costs more than the loop.

Precision: the terms are computed in y's dtype; the running sums are float64, because a float32
accumulator over n terms drifts by O(n eps) (about 1e-3 relative for a million elements), and a
float64 add costs nothing in a memory-bound loop. The result is rounded once to y's dtype.

Softmax cross-entropy runs one sample (row) per prange iteration, after moving the class axis last:
the row maximum, the exponentials (kept as softmax probabilities for the backward pass), the
log-sum-exp and the row's loss, each a vectorised loop over a row that stays in L1 cache. exp is
vector_math's (vectorisable in float32), and the row sums add float32 blocks into float64 (see
vector_math.exp_shifted_sum): a plain float64 running sum would be one dependency chain that LLVM does
not vectorise, three times slower on 4096 x 1000 logits. ``error_model="numpy"`` on the softmax kernels:
without it every division carries a zero check, a branch that stops the vectoriser.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from ..activations.vector_math import REDUCE_BLOCK, exp_shifted_sum, row_max, row_sum
from .codes import BINARY, BINARY_LOGITS, CATEGORICAL, MAPE, SQUARED, kernel_code
from .reference import EPSILON, LossCache, scale

CHUNK = 1 << 14  # elements per partial sum
# Below this many elements the serial twins run: about 0.2 ms of single-threaded work, enough for two
# threads to pay off even on a busy machine (where a parallel region can wait milliseconds for a thread).
PARALLEL_MIN_SIZE = 1 << 20



# The scalar helpers receive lo = eps, hi = 1 - eps and one = 1 in y's dtype, so float32 stays
# float32 (a Python float literal would promote every expression to float64).
@njit(cache=True, inline="always")
def _clip(y, lo, hi):
    if y < lo:
        return lo
    if y > hi:
        return hi
    return y  # NaN falls through: NaN


@njit(cache=True, inline="always")
def _term(code, y, t, lo, hi, one):
    if code == SQUARED:
        d = y - t
        return d * d
    if code == CATEGORICAL:
        return -t * np.log(_clip(y, lo, hi))
    if code == BINARY:
        c = _clip(y, lo, hi)
        return -(t * np.log(c) + (one - t) * np.log(one - c))
    if code == BINARY_LOGITS:  # max(z, 0) - z t + log1p(exp(-|z|)): exp never sees a positive number
        relu = y if y > 0 else one - one
        return relu - y * t + np.log1p(np.exp(-abs(y)))
    floor = abs(t)  # MAPE: |t - y| / max(|t|, eps)
    if floor < lo:
        floor = lo
    return abs((t - y) / floor)


@njit(cache=True, inline="always")
def _term_derivative(code, y, t, lo, hi, one):
    if code == SQUARED:
        d = y - t
        return d + d
    if code == CATEGORICAL or code == BINARY:
        if y < lo or y > hi:  # the clip is flat there (a NaN is never outside: it stays NaN)
            return one - one
        if code == CATEGORICAL:
            return -t / y
        return -t / y + (one - t) / (one - y)
    if code == BINARY_LOGITS:  # sigmoid(z) - t, the sigmoid written without overflow
        if y >= 0:
            return one / (one + np.exp(-y)) - t
        e = np.exp(y)
        return e / (one + e) - t
    floor = abs(t)  # MAPE: sign(y - t) / max(|t|, eps), sign(0) = 0
    if floor < lo:
        floor = lo
    d = y - t
    if d > 0:
        return one / floor
    if d < 0:
        return -one / floor
    return d / floor  # 0 -> 0, NaN -> NaN


@njit(cache=True, inline="always")
def _chunk_sum(code, y, t, k, lo, hi, one):
    s = 0.0
    for i in range(k * CHUNK, min(y.size, (k + 1) * CHUNK)):
        s += _term(code, y[i], t[i], lo, hi, one)
    return s


@njit(cache=True)
def _sum_of_terms_serial(code, y, t, lo, hi, one):
    # The same chunks added in the same order as the parallel kernel: the same result bit for bit.
    total = 0.0
    for k in range((y.size + CHUNK - 1) // CHUNK):
        total += _chunk_sum(code, y, t, k, lo, hi, one)
    return total


@njit(cache=True, parallel=True)
def _sum_of_terms_parallel(code, y, t, lo, hi, one):
    chunks = (y.size + CHUNK - 1) // CHUNK
    partial = np.empty(chunks, dtype=np.float64)
    for k in prange(chunks):  # each iteration writes only its own slot
        partial[k] = _chunk_sum(code, y, t, k, lo, hi, one)
    total = 0.0
    for k in range(chunks):
        total += partial[k]
    return total


@njit(cache=True)
def _scaled_term_derivatives_serial(code, y, t, factor, lo, hi, one, dy):
    for i in range(y.size):
        dy[i] = factor * _term_derivative(code, y[i], t[i], lo, hi, one)


@njit(cache=True, parallel=True)
def _scaled_term_derivatives_parallel(code, y, t, factor, lo, hi, one, dy):
    for i in prange(y.size):
        dy[i] = factor * _term_derivative(code, y[i], t[i], lo, hi, one)


@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _weighted_shifted_sum(t, z, shift, zero):
    """sum_j t[j] (z[j] - shift) in float64, summed by blocks like vector_math.row_dot (vectorised:
    only 'reassoc' is set, NaN and Inf follow IEEE)."""
    n = z.shape[0]
    total = 0.0
    for start in range(0, n, REDUCE_BLOCK):
        part = zero
        for j in range(start, min(n, start + REDUCE_BLOCK)):
            part += t[j] * (z[j] - shift)
        total += part
    return total


@njit(cache=True, inline="always")
def _softmax_crossentropy_row(z, t, p, zero):
    """p = softmax(z) for one sample; returns -sum_c t_c log p_c = log(s) sum_c t_c - sum_c t_c (z_c - max),
    s = sum_c exp(z_c - max), from the stable log p = (z - max) - log s. Sums in float64 (see vector_math)."""
    m = row_max(z)
    s = exp_shifted_sum(z, m, p, zero)  # p holds exp(z - m) <= 1 for now: never overflows
    inv = 1.0 / s
    for j in range(z.shape[0]):
        p[j] = p[j] * inv
    return np.log(s) * row_sum(t, zero) - _weighted_shifted_sum(t, z, m, zero)


@njit(cache=True, error_model="numpy")
def _softmax_crossentropy_rows_serial(z, t, p, row_loss, zero):
    for r in range(z.shape[0]):
        row_loss[r] = _softmax_crossentropy_row(z[r], t[r], p[r], zero)


@njit(cache=True, error_model="numpy", parallel=True)
def _softmax_crossentropy_rows_parallel(z, t, p, row_loss, zero):
    for r in prange(z.shape[0]):  # one sample per iteration: disjoint rows of p and slots of row_loss
        row_loss[r] = _softmax_crossentropy_row(z[r], t[r], p[r], zero)


@njit(cache=True, inline="always")
def _softmax_crossentropy_row_backward(p, t, factor, dz, zero):
    """dz = factor (p sum_c t_c - t): factor (p - t) when the sample's targets sum to 1."""
    total = row_sum(t, zero)
    for j in range(p.shape[0]):
        dz[j] = factor * (p[j] * total - t[j])


@njit(cache=True, error_model="numpy")
def _softmax_crossentropy_backward_serial(p, t, factor, dz, zero):
    for r in range(p.shape[0]):
        _softmax_crossentropy_row_backward(p[r], t[r], factor, dz[r], zero)


@njit(cache=True, error_model="numpy", parallel=True)
def _softmax_crossentropy_backward_parallel(p, t, factor, dz, zero):
    for r in prange(p.shape[0]):
        _softmax_crossentropy_row_backward(p[r], t[r], factor, dz[r], zero)


def _rows(a: np.ndarray, axis: int) -> np.ndarray:
    """``a`` with ``axis`` moved last, as a C-contiguous (samples, classes) matrix (a view if already so)."""
    return np.ascontiguousarray(np.moveaxis(a, axis, -1)).reshape(-1, a.shape[axis])


def _unrows(m: np.ndarray, like: np.ndarray, axis: int) -> np.ndarray:
    moved_shape = tuple(s for i, s in enumerate(like.shape) if i != axis) + (like.shape[axis],)
    return np.ascontiguousarray(np.moveaxis(m.reshape(moved_shape), -1, axis))


def _constants(dtype) -> tuple[Any, Any, Any]:
    t = np.dtype(dtype).type
    return t(EPSILON), t(1) - t(EPSILON), t(1)


def _pick(serial, parallel, size: int):
    return parallel if size >= PARALLEL_MIN_SIZE else serial


def forward(name: str, y: np.ndarray, t: np.ndarray, **params: Any) -> tuple[np.ndarray, LossCache]:
    factor = scale(name, y.shape, params)
    if name == "softmax_crossentropy":
        axis = params["axis"]
        z_rows, t_rows = _rows(y, axis), _rows(t, axis)
        p_rows = np.empty_like(z_rows)
        row_loss = np.empty(z_rows.shape[0], dtype=np.float64)
        kernel = _pick(_softmax_crossentropy_rows_serial, _softmax_crossentropy_rows_parallel, y.size)
        kernel(z_rows, t_rows, p_rows, row_loss, y.dtype.type(0))
        loss = np.asarray(factor * row_loss.sum(), dtype=y.dtype)
        return loss, LossCache(name, y, t, params, _unrows(p_rows, y, axis))
    kernel = _pick(_sum_of_terms_serial, _sum_of_terms_parallel, y.size)
    total = kernel(kernel_code(name, params), y.reshape(-1), t.reshape(-1), *_constants(y.dtype))
    return np.asarray(factor * total, dtype=y.dtype), LossCache(name, y, t, params, None)


def backward(cache: LossCache, dloss: float = 1.0) -> np.ndarray:
    name, y, t, params, probabilities = cache
    factor = y.dtype.type(dloss * scale(name, y.shape, params))
    if name == "softmax_crossentropy":
        axis = params["axis"]
        p_rows = _rows(probabilities, axis)
        dz_rows = np.empty_like(p_rows)
        kernel = _pick(_softmax_crossentropy_backward_serial, _softmax_crossentropy_backward_parallel, y.size)
        kernel(p_rows, _rows(t, axis), factor, dz_rows, y.dtype.type(0))
        return _unrows(dz_rows, y, axis)
    dy = np.empty_like(y)
    kernel = _pick(_scaled_term_derivatives_serial, _scaled_term_derivatives_parallel, y.size)
    kernel(kernel_code(name, params), y.reshape(-1), t.reshape(-1), factor, *_constants(y.dtype), dy.reshape(-1))
    return dy
