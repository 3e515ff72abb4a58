"""Activation functions as Numba kernels (CPU). Same signatures and caches as reference.py, plus the fused
``forward_backward`` (y and dx in one pass over memory).

Elementwise activations share one loop driven by an integer code. The code is the same for every
element, so LLVM moves the branch on it out of the loop ("unswitching") and vectorises one specialised
loop per activation: measured on 2^22 float32 values, the shared loop ran as fast as hand-written
per-activation loops. What makes the loops vectorise at all:

* exp and tanh come from vector_math (plain arithmetic LLVM can vectorise) instead of one C-library
  call per element, which made sigmoid and tanh compute-bound (about 10 ns per value);
* ``error_model="numpy"``: a division by zero gives inf/NaN as in NumPy, instead of Python's
  ZeroDivisionError check, a branch in front of every division that stops the vectoriser;
* the constants (0, 1) are passed in the array's dtype, so float32 is computed in float32.

Memory traffic is the remaining cost: the fused forward_backward reads x and dy and writes y and dx once
(16 bytes per float32 value) where forward then backward moves 20.

Threads: arrays below PARALLEL_MIN_SIZE run a serial twin of each kernel. Waking Numba's threads costs
microseconds on an idle machine and milliseconds on a busy one (a thread that is not scheduled holds
up the whole parallel region), so only loops long enough to amortise that run in parallel.
Softmax and log-softmax run one row per iteration after moving the reduction axis last; their row sums
accumulate in float64 (see vector_math.exp_shifted_sum).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from .reference import ELEMENTWISE, ActivationCache
from .vector_math import exp, exp_shifted_sum, row_dot, row_max, row_sum, tanh

CODE = {name: i for i, name in enumerate(ELEMENTWISE)}
# Elements (elementwise) or row elements (softmax) below which the serial kernels run: 0.3 to 2 ms of
# single-threaded work, long enough for two threads to pay off even when the machine is busy.
PARALLEL_MIN_SIZE = 1 << 20
CHUNK = 1 << 16  # elements per parallel iteration (256 KB of float32 per array)

_KERNEL = dict(cache=True, error_model="numpy")
_PARALLEL_KERNEL = dict(cache=True, error_model="numpy", parallel=True)


@njit(cache=True, inline="always")
def _value(code, x, threshold, steepness, alpha, one):
    zero = one - one
    if code == 0:  # identity
        return x
    if code == 1:  # binary step
        return one if x >= threshold else zero
    if code == 2:  # bipolar step
        return one if x >= threshold else -one
    if code == 3:  # sigmoid; exp only ever sees -|z| <= 0, so it never overflows
        z = steepness * x
        e = exp(-abs(z))
        d = one / (one + e)
        return d if z >= 0 else e * d  # z < 0: e / (1 + e); NaN takes this branch and stays NaN
    if code == 4:  # bipolar sigmoid = tanh(lambda x / 2)
        return tanh((steepness / (one + one)) * x)
    if code == 5:
        return tanh(x)
    if code == 6:  # ReLU (NaN stays NaN)
        return zero if x <= 0 else x
    if code == 7:  # leaky ReLU
        return x if x > 0 else alpha * x
    # ramp (code 8): clip to [0, 1]
    if x < 0:
        return zero
    if x > 1:
        return one
    return x


@njit(cache=True, inline="always")
def _derivative(code, x, y, steepness, alpha, one):
    zero = one - one
    if code == 0:
        return one
    if code == 1 or code == 2:
        return zero
    if code == 3:
        return steepness * y * (one - y)
    if code == 4:
        return steepness / (one + one) * (one + y) * (one - y)
    if code == 5:
        return one - y * y
    if code == 6:
        return one if x > 0 else zero
    if code == 7:
        return one if x > 0 else alpha
    return one if (x > 0 and x < 1) else zero


# --------------------------------------------------------------------------- elementwise loops
# Each loop is written once with the code as a parameter and inlined (Numba IR) at nine call sites, each
# with a literal code: LLVM then folds _value/_derivative down to one activation and vectorises each
# loop. A single loop branching on a run-time code is NOT unswitched by LLVM with nine cases: measured
# 10-20x slower for the cheap activations (ReLU, steps) on 2^22 float32 values.
@njit(cache=True, inline="always")
def _forward_loop(code, x, y, threshold, steepness, alpha, one):
    for i in range(x.size):
        y[i] = _value(code, x[i], threshold, steepness, alpha, one)


@njit(cache=True, inline="always")
def _backward_loop(code, x, y, dy, dx, steepness, alpha, one):
    for i in range(x.size):
        dx[i] = dy[i] * _derivative(code, x[i], y[i], steepness, alpha, one)


@njit(cache=True, inline="always")
def _fused_loop(code, x, dy, y, dx, threshold, steepness, alpha, one):
    for i in range(x.size):
        v = _value(code, x[i], threshold, steepness, alpha, one)
        y[i] = v
        dx[i] = dy[i] * _derivative(code, x[i], v, steepness, alpha, one)


# The serial kernels: one specialised loop per activation code.
@njit(**_KERNEL)
def _forward_serial(code, x, y, threshold, steepness, alpha, one):
    if code == 0:
        _forward_loop(0, x, y, threshold, steepness, alpha, one)
    elif code == 1:
        _forward_loop(1, x, y, threshold, steepness, alpha, one)
    elif code == 2:
        _forward_loop(2, x, y, threshold, steepness, alpha, one)
    elif code == 3:
        _forward_loop(3, x, y, threshold, steepness, alpha, one)
    elif code == 4:
        _forward_loop(4, x, y, threshold, steepness, alpha, one)
    elif code == 5:
        _forward_loop(5, x, y, threshold, steepness, alpha, one)
    elif code == 6:
        _forward_loop(6, x, y, threshold, steepness, alpha, one)
    elif code == 7:
        _forward_loop(7, x, y, threshold, steepness, alpha, one)
    else:  # 8, ramp
        _forward_loop(8, x, y, threshold, steepness, alpha, one)


@njit(**_KERNEL)
def _backward_serial(code, x, y, dy, dx, steepness, alpha, one):
    if code == 0:
        _backward_loop(0, x, y, dy, dx, steepness, alpha, one)
    elif code == 1:
        _backward_loop(1, x, y, dy, dx, steepness, alpha, one)
    elif code == 2:
        _backward_loop(2, x, y, dy, dx, steepness, alpha, one)
    elif code == 3:
        _backward_loop(3, x, y, dy, dx, steepness, alpha, one)
    elif code == 4:
        _backward_loop(4, x, y, dy, dx, steepness, alpha, one)
    elif code == 5:
        _backward_loop(5, x, y, dy, dx, steepness, alpha, one)
    elif code == 6:
        _backward_loop(6, x, y, dy, dx, steepness, alpha, one)
    elif code == 7:
        _backward_loop(7, x, y, dy, dx, steepness, alpha, one)
    else:  # 8, ramp
        _backward_loop(8, x, y, dy, dx, steepness, alpha, one)


@njit(**_KERNEL)
def _fused_serial(code, x, dy, y, dx, threshold, steepness, alpha, one):
    if code == 0:
        _fused_loop(0, x, dy, y, dx, threshold, steepness, alpha, one)
    elif code == 1:
        _fused_loop(1, x, dy, y, dx, threshold, steepness, alpha, one)
    elif code == 2:
        _fused_loop(2, x, dy, y, dx, threshold, steepness, alpha, one)
    elif code == 3:
        _fused_loop(3, x, dy, y, dx, threshold, steepness, alpha, one)
    elif code == 4:
        _fused_loop(4, x, dy, y, dx, threshold, steepness, alpha, one)
    elif code == 5:
        _fused_loop(5, x, dy, y, dx, threshold, steepness, alpha, one)
    elif code == 6:
        _fused_loop(6, x, dy, y, dx, threshold, steepness, alpha, one)
    elif code == 7:
        _fused_loop(7, x, dy, y, dx, threshold, steepness, alpha, one)
    else:  # 8, ramp
        _fused_loop(8, x, dy, y, dx, threshold, steepness, alpha, one)


# The parallel kernels run the serial ones on fixed chunks of the flat arrays (disjoint slices, so no
# race): the specialised loops are compiled once, and each thread streams long contiguous runs.
@njit(**_PARALLEL_KERNEL)
def _forward_parallel(code, x, y, threshold, steepness, alpha, one):
    for c in prange((x.size + CHUNK - 1) // CHUNK):
        s = slice(c * CHUNK, min(x.size, (c + 1) * CHUNK))
        _forward_serial(code, x[s], y[s], threshold, steepness, alpha, one)


@njit(**_PARALLEL_KERNEL)
def _backward_parallel(code, x, y, dy, dx, steepness, alpha, one):
    for c in prange((x.size + CHUNK - 1) // CHUNK):
        s = slice(c * CHUNK, min(x.size, (c + 1) * CHUNK))
        _backward_serial(code, x[s], y[s], dy[s], dx[s], steepness, alpha, one)


@njit(**_PARALLEL_KERNEL)
def _fused_parallel(code, x, dy, y, dx, threshold, steepness, alpha, one):
    for c in prange((x.size + CHUNK - 1) // CHUNK):
        s = slice(c * CHUNK, min(x.size, (c + 1) * CHUNK))
        _fused_serial(code, x[s], dy[s], y[s], dx[s], threshold, steepness, alpha, one)


# --------------------------------------------------------------------------- softmax / log-softmax, one row
@njit(cache=True, inline="always")
def _softmax_row(x, y, log, zero):
    m = row_max(x)
    s = exp_shifted_sum(x, m, y, zero)  # y holds exp(x - m) for now
    if log:
        log_s = np.log(s)
        for j in range(x.shape[0]):
            y[j] = (x[j] - m) - log_s
    else:
        inv = 1.0 / s
        for j in range(x.shape[0]):
            y[j] = y[j] * inv


@njit(cache=True, inline="always")
def _softmax_row_backward(y, dy, dx, log, zero):
    if log:  # dx = dy - softmax(x) * sum(dy), softmax(x) = exp(log_softmax(x))
        s = row_sum(dy, zero)
        for j in range(y.shape[0]):
            dx[j] = dy[j] - exp(y[j]) * s
    else:  # dx = y * (dy - sum(dy * y))
        s = row_dot(dy, y, zero)
        for j in range(y.shape[0]):
            dx[j] = y[j] * (dy[j] - s)


@njit(**_KERNEL)
def _softmax_rows_serial(x, y, log, zero):
    for r in range(x.shape[0]):
        _softmax_row(x[r], y[r], log, zero)


@njit(**_PARALLEL_KERNEL)
def _softmax_rows_parallel(x, y, log, zero):
    for r in prange(x.shape[0]):  # one row per iteration: disjoint writes
        _softmax_row(x[r], y[r], log, zero)


@njit(**_KERNEL)
def _softmax_rows_backward_serial(y, dy, dx, log, zero):
    for r in range(y.shape[0]):
        _softmax_row_backward(y[r], dy[r], dx[r], log, zero)


@njit(**_PARALLEL_KERNEL)
def _softmax_rows_backward_parallel(y, dy, dx, log, zero):
    for r in prange(y.shape[0]):
        _softmax_row_backward(y[r], dy[r], dx[r], log, zero)


@njit(**_KERNEL)
def _softmax_rows_fused_serial(x, dy, y, dx, log, zero):
    for r in range(x.shape[0]):  # the row is still in cache for its backward
        _softmax_row(x[r], y[r], log, zero)
        _softmax_row_backward(y[r], dy[r], dx[r], log, zero)


@njit(**_PARALLEL_KERNEL)
def _softmax_rows_fused_parallel(x, dy, y, dx, log, zero):
    for r in prange(x.shape[0]):
        _softmax_row(x[r], y[r], log, zero)
        _softmax_row_backward(y[r], dy[r], dx[r], log, zero)


# --------------------------------------------------------------------------- the op
def _rows(a: np.ndarray, axis: int) -> np.ndarray:
    """``a`` with ``axis`` moved last, as a C-contiguous (rows, n) matrix (a view when it already is last)."""
    moved = np.ascontiguousarray(np.moveaxis(a, axis, -1))
    return moved.reshape(-1, a.shape[axis])


def _unrows(m: np.ndarray, like: np.ndarray, axis: int) -> np.ndarray:
    moved_shape = tuple(np.delete(np.array(like.shape), axis)) + (like.shape[axis],)
    return np.ascontiguousarray(np.moveaxis(m.reshape(moved_shape), -1, axis))


def _parallel(size: int) -> bool:
    return size >= PARALLEL_MIN_SIZE


def _scalars(dtype: np.dtype, params: dict, *keys: str) -> tuple:
    """The parameters and the constant 1 in the array's dtype (float32 stays float32 in the kernels)."""
    t = dtype.type
    defaults = {"threshold": 0.0, "steepness": 1.0, "alpha": 0.01}
    return tuple(t(params.get(k, defaults[k])) for k in keys) + (t(1),)


def forward(name: str, x: np.ndarray, **params: Any) -> tuple[np.ndarray, ActivationCache]:
    if name in ("softmax", "log_softmax"):
        axis = params["axis"]
        rows = _rows(x, axis)
        out = np.empty_like(rows)
        kernel = _softmax_rows_parallel if _parallel(x.size) else _softmax_rows_serial
        kernel(rows, out, name == "log_softmax", x.dtype.type(0))
        return (y := _unrows(out, x, axis)), ActivationCache(name, x, y, params)
    y = np.empty_like(x)
    kernel = _forward_parallel if _parallel(x.size) else _forward_serial
    kernel(CODE[name], x.reshape(-1), y.reshape(-1), *_scalars(x.dtype, params, "threshold", "steepness", "alpha"))
    return y, ActivationCache(name, x, y, params)


def backward(dy: np.ndarray, cache: ActivationCache) -> np.ndarray:
    name, x, y, params = cache
    if name in ("softmax", "log_softmax"):
        axis = params["axis"]
        out = np.empty(_rows(y, axis).shape, dtype=y.dtype)
        kernel = _softmax_rows_backward_parallel if _parallel(y.size) else _softmax_rows_backward_serial
        kernel(_rows(y, axis), _rows(dy, axis), out, name == "log_softmax", y.dtype.type(0))
        return _unrows(out, y, axis)
    dx = np.empty_like(x)
    kernel = _backward_parallel if _parallel(x.size) else _backward_serial
    kernel(CODE[name], x.reshape(-1), y.reshape(-1), dy.reshape(-1), dx.reshape(-1),
           *_scalars(x.dtype, params, "steepness", "alpha"))
    return dx


def forward_backward(name: str, x: np.ndarray, dy: np.ndarray, **params: Any) -> tuple[np.ndarray, np.ndarray]:
    """(y, dx) = (f(x), dy * f'(x)) in one pass: each element (softmax: each row) is read once and its
    output and gradient written while it is in registers (in cache)."""
    if name in ("softmax", "log_softmax"):
        axis = params["axis"]
        rows = _rows(x, axis)
        y_rows, dx_rows = np.empty_like(rows), np.empty_like(rows)
        kernel = _softmax_rows_fused_parallel if _parallel(x.size) else _softmax_rows_fused_serial
        kernel(rows, _rows(dy, axis), y_rows, dx_rows, name == "log_softmax", x.dtype.type(0))
        return _unrows(y_rows, x, axis), _unrows(dx_rows, x, axis)
    # y and dx are the two halves of one allocation, freed when both are: one mmap and one munmap a call
    # instead of two. Measured at 2^24 float32 on the 2-core VM (2026-11-21, medians of 30, three rounds):
    # relu 14.7-18.0 -> 12.4-15.3 ms, sigmoid 21.4-24.0 -> 18.5-20.7, tanh 25.6-27.4 -> 22.9-24.1.
    pair = np.empty((2,) + x.shape, dtype=x.dtype)
    y, dx = pair[0], pair[1]
    kernel = _fused_parallel if _parallel(x.size) else _fused_serial
    kernel(CODE[name], x.reshape(-1), dy.reshape(-1), y.reshape(-1), dx.reshape(-1),
           *_scalars(x.dtype, params, "threshold", "steepness", "alpha"))
    return y, dx
