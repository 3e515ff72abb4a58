"""Activation functions as Numba kernels (CPU). Same signatures and caches as reference.py.

Elementwise activations share one kernel driven by an integer code, so forward and backward are each
a single pass over memory; large arrays run the loop in parallel (prange), small ones serially to
avoid the thread start-up cost. Softmax and log-softmax run one row per iteration after moving the
reduction axis last.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from .reference import ELEMENTWISE, ActivationCache

CODE = {name: i for i, name in enumerate(ELEMENTWISE)}
PARALLEL_MIN_SIZE = 1 << 15  # below this, thread start-up costs more than the loop


@njit(cache=True, inline="always")
def _value(code, x, threshold, steepness, alpha):
    if code == 0:  # identity
        return x
    if code == 1:  # binary step
        return 1.0 if x >= threshold else 0.0
    if code == 2:  # bipolar step
        return 1.0 if x >= threshold else -1.0
    if code == 3:  # sigmoid, evaluated so that exp never sees a positive argument
        z = steepness * x
        if z >= 0:
            return 1.0 / (1.0 + np.exp(-z))
        e = np.exp(z)
        return e / (1.0 + e)
    if code == 4:  # bipolar sigmoid = tanh(lambda x / 2)
        return np.tanh(0.5 * steepness * x)
    if code == 5:
        return np.tanh(x)
    if code == 6:  # ReLU (NaN stays NaN)
        return 0.0 if x <= 0 else x
    if code == 7:  # leaky ReLU
        return x if x > 0 else alpha * x
    # ramp (code 8): clip to [0, 1]
    if x < 0:
        return 0.0
    if x > 1:
        return 1.0
    return x


@njit(cache=True, inline="always")
def _derivative(code, x, y, steepness, alpha):
    if code == 0:
        return 1.0
    if code == 1 or code == 2:
        return 0.0
    if code == 3:
        return steepness * y * (1.0 - y)
    if code == 4:
        return 0.5 * steepness * (1.0 + y) * (1.0 - y)
    if code == 5:
        return 1.0 - y * y
    if code == 6:
        return 1.0 if x > 0 else 0.0
    if code == 7:
        return 1.0 if x > 0 else alpha
    return 1.0 if (x > 0 and x < 1) else 0.0


@njit(cache=True)
def _forward_serial(code, x, y, threshold, steepness, alpha):
    for i in range(x.size):
        y[i] = _value(code, x[i], threshold, steepness, alpha)


@njit(cache=True, parallel=True)
def _forward_parallel(code, x, y, threshold, steepness, alpha):
    for i in prange(x.size):
        y[i] = _value(code, x[i], threshold, steepness, alpha)


@njit(cache=True)
def _backward_serial(code, x, y, dy, dx, steepness, alpha):
    for i in range(x.size):
        dx[i] = dy[i] * _derivative(code, x[i], y[i], steepness, alpha)


@njit(cache=True, parallel=True)
def _backward_parallel(code, x, y, dy, dx, steepness, alpha):
    for i in prange(x.size):
        dx[i] = dy[i] * _derivative(code, x[i], y[i], steepness, alpha)


@njit(cache=True, parallel=True)
def _softmax_rows(x, y, log):
    rows, n = x.shape
    for r in prange(rows):
        m = x[r, 0]
        for j in range(1, n):
            if x[r, j] > m:
                m = x[r, j]
        s = 0.0
        for j in range(n):
            s += np.exp(x[r, j] - m)
        if log:
            ls = np.log(s)
            for j in range(n):
                y[r, j] = x[r, j] - m - ls
        else:
            inv = 1.0 / s
            for j in range(n):
                y[r, j] = np.exp(x[r, j] - m) * inv


@njit(cache=True, parallel=True)
def _softmax_rows_backward(y, dy, dx, log):
    rows, n = y.shape
    for r in prange(rows):
        s = 0.0
        if log:
            for j in range(n):
                s += dy[r, j]
            for j in range(n):
                dx[r, j] = dy[r, j] - np.exp(y[r, j]) * s
        else:
            for j in range(n):
                s += dy[r, j] * y[r, j]
            for j in range(n):
                dx[r, j] = y[r, j] * (dy[r, j] - s)


def _rows(a: np.ndarray, axis: int) -> np.ndarray:
    """``a`` with ``axis`` moved last, as a C-contiguous (rows, n) matrix."""
    moved = np.ascontiguousarray(np.moveaxis(a, axis, -1))
    return moved.reshape(-1, a.shape[axis])


def _unrows(m: np.ndarray, like: np.ndarray, axis: int) -> np.ndarray:
    moved_shape = tuple(np.delete(np.array(like.shape), axis)) + (like.shape[axis],)
    return np.ascontiguousarray(np.moveaxis(m.reshape(moved_shape), -1, axis))


def forward(name: str, x: np.ndarray, **params: Any) -> tuple[np.ndarray, ActivationCache]:
    if name in ("softmax", "log_softmax"):
        axis = params["axis"]
        rows = _rows(x, axis)
        out = np.empty_like(rows)
        _softmax_rows(rows, out, name == "log_softmax")
        return (y := _unrows(out, x, axis)), ActivationCache(name, x, y, params)
    t = x.dtype.type
    y = np.empty_like(x)
    kernel = _forward_parallel if x.size >= PARALLEL_MIN_SIZE else _forward_serial
    kernel(CODE[name], x.reshape(-1), y.reshape(-1), t(params.get("threshold", 0.0)),
           t(params.get("steepness", 1.0)), t(params.get("alpha", 0.01)))
    return y, ActivationCache(name, x, y, params)


def backward(dy: np.ndarray, cache: ActivationCache) -> np.ndarray:
    name, x, y, params = cache
    if name in ("softmax", "log_softmax"):
        axis = params["axis"]
        out = np.empty(_rows(y, axis).shape, dtype=y.dtype)
        _softmax_rows_backward(_rows(y, axis), _rows(dy, axis), out, name == "log_softmax")
        return _unrows(out, y, axis)
    t = x.dtype.type
    dx = np.empty_like(x)
    kernel = _backward_parallel if x.size >= PARALLEL_MIN_SIZE else _backward_serial
    kernel(CODE[name], x.reshape(-1), y.reshape(-1), dy.reshape(-1), dx.reshape(-1),
           t(params.get("steepness", 1.0)), t(params.get("alpha", 0.01)))
    return dx
