"""The LSTM as Numba kernels (CPU). Same signatures and cache as reference.py.

Only the recurrence is sequential, so the work is split by what depends on it:

* The input projection x_t W + b does not depend on h_{t-1}: one BLAS GEMM over all N*T rows before
  the time loop (as cuDNN does). In backward, once every dz_t (the gradient on the four gates'
  pre-activations) is known, dW = sum_t x_t^T dz_t, dU = sum_t h_{t-1}^T dz_t, db and dx are single
  GEMMs / sums over the flattened (N*T) axis: the BPTT sum over time is the sum over that axis.
* The time loop is sequential: per step one BLAS product (N, H) x (H, 4H), then one @njit kernel
  with the gate math of every batch row (forward: the four activations, c_t, h_t; backward: the
  whole chain rule through the gates down to dz_t and dL/dc_{t-1}).

The gate math is written as short loops over contiguous row slices, one quantity per loop, with
exp/tanh from activations.vector_math and error_model="numpy": LLVM vectorises such loops (8 float32
lanes with AVX2). Measured on one (256, 256) float32 step, this ran 5-8x faster than one loop
computing all four gates per element (which does not vectorise) and 2-3x faster than NumPy.

The per-step product goes through NumPy's BLAS (np.matmul), not np.dot inside @njit: that one is
SciPy's OpenBLAS, a second library with its own thread pool, and alternating the two (NumPy's for
the input projection, SciPy's in the loop) made the loop up to 30x slower on a busy 2-core machine
(each pool's idle threads spin against the other's). One Python-level call per step costs a few
microseconds.

Temporaries that never leave the op (the input projection, h_{t-1} U, dz and the shifted h) are
reused scratch (``toolkit.ops.scratch``): allocating them fresh page-faulted 10 ms of a 37 ms forward in
(N32 T64 D128 H256). h, c and gates are returned in the cache, and so are fresh arrays.

Float32 stays float32 throughout (BLAS sgemm, the constant one passed in the input's dtype); float64
uses the C library's exp/tanh. The sigmoid only exponentiates -|z|, so it never overflows.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from ..activations.vector_math import exp, tanh
from ..scratch import scratch
from .reference import LSTMCache

# The parallel kernels start a thread team at every time step, next to BLAS's own threads. Measured
# on a loaded 2-core machine they lost to the serial kernels at every size tried (up to N*H = 16384,
# T = 50: 2x to 15x slower, Numba's OpenMP threads spinning against OpenBLAS's), so they run only with
# enough threads and a large step; both limits are guesses to re-tune with bench/ on a quiet machine.
PARALLEL_MIN_SIZE = 1 << 14  # N*H of one time step
PARALLEL_MIN_THREADS = 4

_KERNEL = dict(cache=True, error_model="numpy")
_PARALLEL_KERNEL = dict(cache=True, error_model="numpy", parallel=True)


@njit(cache=True, inline="always", error_model="numpy")
def _sigmoid(z, one):
    e = exp(-abs(z))  # exp of a non-positive number only: never overflows
    d = one / (one + e)
    return d if z >= 0 else e * d  # z < 0: e / (1 + e); NaN takes this branch and stays NaN


@njit(cache=True, inline="always", error_model="numpy")
def _cell_row(z, rec, c_prev, gates, c, h, one):
    """One batch row of one step. z = x_t W + b and rec = h_{t-1} U (4H each); writes the activated
    gates (4H), c_t and h_t (H each)."""
    H = c.shape[0]
    for j in range(2 * H):  # input and forget gates
        gates[j] = _sigmoid(z[j] + rec[j], one)
    for j in range(2 * H, 3 * H):  # candidate
        gates[j] = tanh(z[j] + rec[j])
    for j in range(3 * H, 4 * H):  # output gate
        gates[j] = _sigmoid(z[j] + rec[j], one)
    for j in range(H):
        c[j] = gates[H + j] * c_prev[j] + gates[j] * gates[2 * H + j]
    for j in range(H):
        h[j] = gates[3 * H + j] * tanh(c[j])


@njit(**_KERNEL)
def _step_serial(t, xwb, rec, c0, gates, c, h, one):
    for n in range(h.shape[0]):
        c_prev = c[n, t - 1] if t > 0 else c0[n]
        _cell_row(xwb[n, t], rec[n], c_prev, gates[n, t], c[n, t], h[n, t], one)


@njit(**_PARALLEL_KERNEL)
def _step_parallel(t, xwb, rec, c0, gates, c, h, one):
    for n in prange(h.shape[0]):  # row n writes only row n of gates, c and h
        c_prev = c[n, t - 1] if t > 0 else c0[n]
        _cell_row(xwb[n, t], rec[n], c_prev, gates[n, t], c[n, t], h[n, t], one)


@njit(cache=True, inline="always", error_model="numpy")
def _gate_grad_row(gates, c, c_prev, dh, dh_next, dc, dz, one):
    """One batch row of one step back. dh is the upstream dL/dh_t, dh_next what h_t receives from
    step t+1; dc holds dL/dc_t from step t+1 on entry and dL/dc_{t-1} on exit. Writes dz (4H)."""
    H = c.shape[0]
    for j in range(H):  # through h_t = o * tanh(c_t): the output gate, and the rest of dL/dc_t
        o = gates[3 * H + j]
        tanh_c = tanh(c[j])
        dh_t = dh[j] + dh_next[j]
        dz[3 * H + j] = dh_t * tanh_c * o * (one - o)
        dc[j] += dh_t * o * (one - tanh_c * tanh_c)
    for j in range(H):  # input gate: c_t = f * c_{t-1} + i * g
        i = gates[j]
        dz[j] = dc[j] * gates[2 * H + j] * i * (one - i)
    for j in range(H):  # candidate
        g = gates[2 * H + j]
        dz[2 * H + j] = dc[j] * gates[j] * (one - g * g)
    for j in range(H):  # forget gate, and dL/dc_{t-1} = dL/dc_t * f
        f = gates[H + j]
        dz[H + j] = dc[j] * c_prev[j] * f * (one - f)
        dc[j] *= f


@njit(**_KERNEL)
def _grad_step_serial(t, dh, dh_next, dc, c, c0, gates, dz, one):
    for n in range(c.shape[0]):
        c_prev = c[n, t - 1] if t > 0 else c0[n]
        _gate_grad_row(gates[n, t], c[n, t], c_prev, dh[n, t], dh_next[n], dc[n], dz[n, t], one)


@njit(**_PARALLEL_KERNEL)
def _grad_step_parallel(t, dh, dh_next, dc, c, c0, gates, dz, one):
    for n in prange(c.shape[0]):  # row n writes only row n of dc and dz
        c_prev = c[n, t - 1] if t > 0 else c0[n]
        _gate_grad_row(gates[n, t], c[n, t], c_prev, dh[n, t], dh_next[n], dc[n], dz[n, t], one)


def _use_parallel(N: int, H: int) -> bool:
    return N * H >= PARALLEL_MIN_SIZE and numba.get_num_threads() >= PARALLEL_MIN_THREADS


def forward(x, h0, c0, W, U, b):
    N, T, D = x.shape
    H = U.shape[0]
    one = x.dtype.type(1)
    xwb = scratch("lstm.xwb", (N, T, 4 * H), x.dtype)  # never leaves forward: reused, not page-faulted in
    np.matmul(x.reshape(N * T, D), W, out=xwb.reshape(N * T, 4 * H))
    xwb += b
    h = np.empty((N, T, H), dtype=x.dtype)
    c = np.empty((N, T, H), dtype=x.dtype)
    gates = np.empty((N, T, 4 * H), dtype=x.dtype)
    rec = scratch("lstm.rec", (N, 4 * H), x.dtype)  # h_{t-1} U
    step = _step_parallel if _use_parallel(N, H) else _step_serial
    for t in range(T):
        # h[:, t - 1] is a strided view with contiguous rows: BLAS reads it in place (lda = T*H)
        np.matmul(h0 if t == 0 else h[:, t - 1], U, out=rec)
        step(t, xwb, rec, c0, gates, c, h, one)
    return h, c, LSTMCache(x, h0, c0, W, U, b, h, c, gates)


def backward(dh, cache: LSTMCache, dc_last=None):
    x, h0, c0, W, U, _, h, c, gates = cache
    N, T, D = x.shape
    H = U.shape[0]
    one = x.dtype.type(1)
    dh = np.zeros_like(h) if dh is None else dh
    dc = np.zeros_like(c0) if dc_last is None else dc_last.copy()  # dL/dc_t, updated in place step by step
    dh_next = np.zeros_like(h0)  # dz_{t+1} U^T: what h_t receives from step t+1
    dz = scratch("lstm.dz", gates.shape, gates.dtype)  # every step writes its dz before anything reads it
    step = _grad_step_parallel if _use_parallel(N, H) else _grad_step_serial
    for t in range(T - 1, -1, -1):
        step(t, dh, dh_next, dc, c, c0, gates, dz, one)
        np.matmul(dz[:, t], U.T, out=dh_next)
    dz_flat = dz.reshape(N * T, 4 * H)
    h_prev = scratch("lstm.h_prev", (N, T, H), h.dtype)  # h_{t-1} for every t
    h_prev[:, 0] = h0
    h_prev[:, 1:] = h[:, :-1]
    h_prev = h_prev.reshape(N * T, H)
    dx = (dz_flat @ W.T).reshape(N, T, D)
    dW = x.reshape(N * T, D).T @ dz_flat
    dU = h_prev.T @ dz_flat
    db = dz_flat.sum(axis=0)
    return dx, dh_next, dc, dW, dU, db  # after t = 0: dh_next = dL/dh0, dc = dL/dc0
