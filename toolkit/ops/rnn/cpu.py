"""The simple RNN as Numba kernels (CPU). Same signatures and cache as reference.py.

Only the recurrence is sequential, so the work is split by what depends on it:

* The input projection x_t W_xh + b_h does not depend on h_{t-1}: it is one BLAS GEMM over all N*T
  rows before the time loop (cuDNN does the same). Likewise in backward, once every delta_t = dL/da_t
  is known, dW_xh = sum_t x_t^T delta_t, dW_hh = sum_t h_{t-1}^T delta_t and dx are single GEMMs
  over the flattened (N*T) axis: the BPTT sum over time is the sum over that axis.
* The time loop runs inside one @njit function: per step one np.dot (BLAS through SciPy) for the
  (N, H) x (H, H) recurrent product, then the tanh (forward) or the tanh' product (backward) of each
  batch row, a short loop over contiguous slices that LLVM vectorises (tanh from
  activations.vector_math for float32, error_model="numpy" so no division check blocks it).

Float32 stays float32 throughout (BLAS sgemm, float32 tanh, the constant one passed in the input's
dtype so Numba does not promote to float64).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from ..activations.vector_math import tanh
from .reference import RNNCache

# The parallel kernels start a thread team at every time step, next to BLAS's own threads. Measured
# on a loaded 2-core machine they lost to the serial kernels at every size tried (up to N*H = 16384,
# T = 50: 2x to 15x slower, OpenMP threads spinning against OpenBLAS's), so they are used only with
# enough threads and a large step; both limits are guesses to re-tune with bench/ on a quiet machine.
PARALLEL_MIN_SIZE = 1 << 14  # N*H of one time step
PARALLEL_MIN_THREADS = 4

_KERNEL = dict(cache=True, error_model="numpy")
_PARALLEL_KERNEL = dict(cache=True, error_model="numpy", parallel=True)


@njit(cache=True, inline="always", error_model="numpy")
def _tanh_row(z, rec, h, h_prev):
    """One batch row of one step: h_t = tanh(z + rec), z = x_t W_xh + b_h, rec = h_{t-1} W_hh."""
    for j in range(h.shape[0]):
        v = tanh(z[j] + rec[j])
        h[j] = v
        h_prev[j] = v  # contiguous copy of h_t: the next step's np.dot needs contiguous input


@njit(**_KERNEL)
def _recurrence_serial(xw, W_hh, h0, h):
    h_prev = h0.copy()
    for t in range(h.shape[1]):
        rec = np.dot(h_prev, W_hh)
        for n in range(h.shape[0]):
            _tanh_row(xw[n, t], rec[n], h[n, t], h_prev[n])


@njit(**_PARALLEL_KERNEL)
def _recurrence_parallel(xw, W_hh, h0, h):
    h_prev = h0.copy()
    for t in range(h.shape[1]):
        rec = np.dot(h_prev, W_hh)
        for n in prange(h.shape[0]):  # row n writes only row n of h and h_prev
            _tanh_row(xw[n, t], rec[n], h[n, t], h_prev[n])


@njit(cache=True, inline="always", error_model="numpy")
def _delta_row(direct, from_later, h, delta, step, one):
    """One batch row of one step back: delta = dL/da_t = (dL/dh_t) * tanh'(a_t), tanh' = 1 - h_t^2."""
    for j in range(h.shape[0]):
        d = (direct[j] + from_later[j]) * (one - h[j] * h[j])
        delta[j] = d
        step[j] = d  # contiguous copy: the np.dot after the step needs it


@njit(**_KERNEL)
def _bptt_serial(direct, h, W_hh_T, delta, one):
    N, T, H = h.shape
    from_later = np.zeros((N, H), dtype=h.dtype)
    step = np.empty((N, H), dtype=h.dtype)
    for t in range(T - 1, -1, -1):
        for n in range(N):
            _delta_row(direct[n, t], from_later[n], h[n, t], delta[n, t], step[n], one)
        from_later = np.dot(step, W_hh_T)
    return from_later  # after t = 0 this is dL/dh0


@njit(**_PARALLEL_KERNEL)
def _bptt_parallel(direct, h, W_hh_T, delta, one):
    N, T, H = h.shape
    from_later = np.zeros((N, H), dtype=h.dtype)
    step = np.empty((N, H), dtype=h.dtype)
    for t in range(T - 1, -1, -1):
        for n in prange(N):
            _delta_row(direct[n, t], from_later[n], h[n, t], delta[n, t], step[n], one)
        from_later = np.dot(step, W_hh_T)
    return from_later


def _use_parallel(N: int, H: int) -> bool:
    return N * H >= PARALLEL_MIN_SIZE and numba.get_num_threads() >= PARALLEL_MIN_THREADS


def forward(x, h0, W_xh, W_hh, b_h, W_hy=None, b_y=None):
    N, T, D = x.shape
    H = W_hh.shape[0]
    xw = (x.reshape(N * T, D) @ W_xh).reshape(N, T, H)
    xw += b_h
    h = np.empty((N, T, H), dtype=x.dtype)
    (_recurrence_parallel if _use_parallel(N, H) else _recurrence_serial)(xw, W_hh, h0, h)
    y = None
    if W_hy is not None:
        y = (h.reshape(N * T, H) @ W_hy).reshape(N, T, -1)
        if b_y is not None:
            y += b_y
    return y, h, RNNCache(x, h0, W_xh, W_hh, b_h, W_hy, b_y, h)


def backward(dy, dh, cache: RNNCache):
    x, h0, W_xh, W_hh, _, W_hy, b_y, h = cache
    N, T, D = x.shape
    H = W_hh.shape[0]
    direct = np.zeros_like(h) if dh is None else dh.copy()
    dW_hy = db_y = None
    if W_hy is not None:
        if dy is None:
            dW_hy = np.zeros_like(W_hy)
            db_y = None if b_y is None else np.zeros_like(b_y)
        else:
            dy_flat = dy.reshape(N * T, -1)
            direct += (dy_flat @ W_hy.T).reshape(N, T, H)
            dW_hy = h.reshape(N * T, H).T @ dy_flat
            db_y = None if b_y is None else dy_flat.sum(axis=0)
    delta = np.empty_like(h)
    W_hh_T = np.ascontiguousarray(W_hh.T)
    bptt = _bptt_parallel if _use_parallel(N, H) else _bptt_serial
    dh0 = bptt(direct, h, W_hh_T, delta, x.dtype.type(1))
    delta_flat = delta.reshape(N * T, H)
    h_prev = np.concatenate([h0[:, None, :], h[:, :-1]], axis=1).reshape(N * T, H)
    dx = (delta_flat @ W_xh.T).reshape(N, T, D)
    dW_xh = x.reshape(N * T, D).T @ delta_flat
    dW_hh = h_prev.T @ delta_flat
    db_h = delta_flat.sum(axis=0)
    return dx, dh0, dW_xh, dW_hh, db_h, dW_hy, db_y
