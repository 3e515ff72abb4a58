"""The simple RNN as Numba kernels (CPU). Same signatures and cache as reference.py.

Only the recurrence is sequential, so the work is split by what depends on it:

* The input projection x_t W_xh + b_h does not depend on h_{t-1}: it is one BLAS GEMM over all N*T
  rows before the time loop (cuDNN does the same). Likewise in backward, once every delta_t = dL/da_t
  is known, dW_xh = sum_t x_t^T delta_t, dW_hh = sum_t h_{t-1}^T delta_t and dx are single GEMMs
  over the flattened (N*T) axis: the BPTT sum over time is the sum over that axis.
* The time loop is sequential: per step one BLAS product (N, H) x (H, H), then one @njit kernel for
  the tanh (forward) or the tanh' product (backward) of every batch row, a short loop over contiguous
  slices that LLVM vectorises (tanh from activations.vector_math for float32, error_model="numpy" so
  no division check blocks it).

The per-step product goes through NumPy's BLAS (np.matmul), not np.dot inside @njit: that one is
SciPy's OpenBLAS, a second library with its own thread pool, and alternating the two (NumPy's for
the input projection, SciPy's in the loop) made the loop up to 30x slower on a busy 2-core machine
(each pool's idle threads spin against the other's). One Python-level call per step costs a few
microseconds; the measured loss on tiny shapes (N=4, H=16, T=50) was 0.15 ms.

Float32 stays float32 throughout (BLAS sgemm, float32 tanh, the constant one passed in the input's
dtype so Numba does not promote to float64).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from ..ieee import ieee_quiet
from ..activations.vector_math import tanh
from .reference import RNNCache

# The parallel kernels start a thread team at every time step, next to BLAS's own threads. Measured
# on a loaded 2-core machine they lost to the serial kernels at every size tried (up to N*H = 16384,
# T = 50: 2x to 15x slower, Numba's OpenMP threads spinning against OpenBLAS's), so they run only with
# enough threads and a large step; both limits are guesses to re-tune with bench/ on a quiet machine.
PARALLEL_MIN_SIZE = 1 << 14  # N*H of one time step
PARALLEL_MIN_THREADS = 4

_KERNEL = dict(cache=True, error_model="numpy")
_PARALLEL_KERNEL = dict(cache=True, error_model="numpy", parallel=True)


@njit(cache=True, inline="always", error_model="numpy")
def _tanh_row(z, rec, h):
    """One batch row of one step: h_t = tanh(z + rec), z = x_t W_xh + b_h, rec = h_{t-1} W_hh."""
    for j in range(h.shape[0]):
        h[j] = tanh(z[j] + rec[j])


@njit(**_KERNEL)
def _step_serial(t, xw, rec, h):
    for n in range(h.shape[0]):
        _tanh_row(xw[n, t], rec[n], h[n, t])


@njit(**_PARALLEL_KERNEL)
def _step_parallel(t, xw, rec, h):
    for n in prange(h.shape[0]):  # row n writes only row n of h
        _tanh_row(xw[n, t], rec[n], h[n, t])


@njit(cache=True, inline="always", error_model="numpy")
def _delta_row(direct, from_later, h, delta, one):
    """One batch row of one step back: delta = dL/da_t = (dL/dh_t) * tanh'(a_t), tanh' = 1 - h_t^2."""
    for j in range(h.shape[0]):
        delta[j] = (direct[j] + from_later[j]) * (one - h[j] * h[j])


@njit(**_KERNEL)
def _delta_step_serial(t, direct, from_later, h, delta, one):
    for n in range(h.shape[0]):
        _delta_row(direct[n, t], from_later[n], h[n, t], delta[n, t], one)


@njit(**_PARALLEL_KERNEL)
def _delta_step_parallel(t, direct, from_later, h, delta, one):
    for n in prange(h.shape[0]):  # row n writes only row n of delta
        _delta_row(direct[n, t], from_later[n], h[n, t], delta[n, t], one)


def _use_parallel(N: int, H: int) -> bool:
    return N * H >= PARALLEL_MIN_SIZE and numba.get_num_threads() >= PARALLEL_MIN_THREADS


@ieee_quiet
def forward(x, h0, W_xh, W_hh, b_h, W_hy=None, b_y=None):
    N, T, D = x.shape
    H = W_hh.shape[0]
    xw = (x.reshape(N * T, D) @ W_xh).reshape(N, T, H)
    xw += b_h
    h = np.empty((N, T, H), dtype=x.dtype)
    rec = np.empty((N, H), dtype=x.dtype)  # h_{t-1} W_hh
    step = _step_parallel if _use_parallel(N, H) else _step_serial
    for t in range(T):
        # h[:, t - 1] is a strided view with contiguous rows: BLAS reads it in place (lda = T*H)
        np.matmul(h0 if t == 0 else h[:, t - 1], W_hh, out=rec)
        step(t, xw, rec, h)  # h[:, t] = tanh(xw[:, t] + rec)
    y = None
    if W_hy is not None:
        y = (h.reshape(N * T, H) @ W_hy).reshape(N, T, -1)
        if b_y is not None:
            y += b_y
    return y, h, RNNCache(x, h0, W_xh, W_hh, b_h, W_hy, b_y, h)


@ieee_quiet
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
    from_later = np.zeros_like(h0)  # delta_{t+1} W_hh^T: what h_t receives from step t+1
    kernel = _delta_step_parallel if _use_parallel(N, H) else _delta_step_serial
    one = x.dtype.type(1)
    for t in range(T - 1, -1, -1):
        kernel(t, direct, from_later, h, delta, one)  # delta[:, t]
        np.matmul(delta[:, t], W_hh.T, out=from_later)
    dh0 = from_later
    delta_flat = delta.reshape(N * T, H)
    h_prev = np.concatenate([h0[:, None, :], h[:, :-1]], axis=1).reshape(N * T, H)
    dx = (delta_flat @ W_xh.T).reshape(N, T, D)
    dW_xh = x.reshape(N * T, D).T @ delta_flat
    dW_hh = h_prev.T @ delta_flat
    db_h = delta_flat.sum(axis=0)
    return dx, dh0, dW_xh, dW_hh, db_h, dW_hy, db_y
