"""The LSTM as Numba kernels (CPU). Same signatures and cache as reference.py.

Only the recurrence is sequential, so the work is split by what depends on it:

* The input projection x_t W + b does not depend on h_{t-1}: one BLAS GEMM over all N*T rows before
  the time loop (as cuDNN does). In backward, once every dz_t (the gradient on the four gates'
  pre-activations) is known, dW = sum_t x_t^T dz_t, dU = sum_t h_{t-1}^T dz_t, db and dx are single
  GEMMs / sums over the flattened (N*T) axis: the BPTT sum over time is the sum over that axis.
* The time loop runs inside one @njit function: per step one np.dot (BLAS through SciPy) for the
  (N, H) x (H, 4H) recurrent product, then the gate math of each batch row.

The gate math is written as short loops over contiguous row slices, one quantity per loop, with
exp/tanh from activations.vector_math and error_model="numpy": LLVM vectorises such loops (8 float32
lanes with AVX2). Measured on one (256, 256) float32 step, this ran 5-8x faster than one loop
computing all four gates per element (which does not vectorise) and 2-3x faster than NumPy.
Float32 stays float32 throughout (BLAS sgemm, the constant one passed in the input's dtype); float64
uses the C library's exp/tanh. The sigmoid only exponentiates -|z|, so it never overflows.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from ..activations.vector_math import exp, tanh
from .reference import LSTMCache

# The parallel kernels start a thread team at every time step, next to BLAS's own threads. Measured
# on a loaded 2-core machine they lost to the serial kernels at every size tried (up to N*H = 16384,
# T = 50: 2x to 15x slower, OpenMP threads spinning against OpenBLAS's), so they are used only with
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
def _cell_row(z, rec, gates, c_prev, h_prev, c, h, one):
    """One batch row of one step. z = x_t W + b and rec = h_{t-1} U (4H each); writes the activated
    gates (4H), c_t and h_t (H each), and overwrites c_prev, h_prev with c_t, h_t for the next step."""
    H = c.shape[0]
    for j in range(2 * H):  # input and forget gates
        gates[j] = _sigmoid(z[j] + rec[j], one)
    for j in range(2 * H, 3 * H):  # candidate
        gates[j] = tanh(z[j] + rec[j])
    for j in range(3 * H, 4 * H):  # output gate
        gates[j] = _sigmoid(z[j] + rec[j], one)
    for j in range(H):
        cv = gates[H + j] * c_prev[j] + gates[j] * gates[2 * H + j]
        c[j] = cv
        c_prev[j] = cv
    for j in range(H):
        hv = gates[3 * H + j] * tanh(c[j])
        h[j] = hv
        h_prev[j] = hv  # contiguous copy of h_t: the next step's np.dot needs contiguous input


@njit(**_KERNEL)
def _recurrence_serial(xwb, U, h0, c0, h, c, gates, one):
    h_prev, c_prev = h0.copy(), c0.copy()
    for t in range(h.shape[1]):
        rec = np.dot(h_prev, U)
        for n in range(h.shape[0]):
            _cell_row(xwb[n, t], rec[n], gates[n, t], c_prev[n], h_prev[n], c[n, t], h[n, t], one)


@njit(**_PARALLEL_KERNEL)
def _recurrence_parallel(xwb, U, h0, c0, h, c, gates, one):
    h_prev, c_prev = h0.copy(), c0.copy()
    for t in range(h.shape[1]):
        rec = np.dot(h_prev, U)
        for n in prange(h.shape[0]):  # row n writes only row n of every output
            _cell_row(xwb[n, t], rec[n], gates[n, t], c_prev[n], h_prev[n], c[n, t], h[n, t], one)


@njit(cache=True, inline="always", error_model="numpy")
def _gate_grad_row(gates, c, c_prev, dh, dh_next, dc, dz, dz_step, one):
    """One batch row of one step back. dh is the upstream dL/dh_t, dh_next what h_t receives from
    step t+1; dc holds dL/dc_t from step t+1 on entry and dL/dc_{t-1} on exit. Writes dz (4H)."""
    H = c.shape[0]
    for j in range(H):  # through h_t = o * tanh(c_t): the output gate, and the rest of dL/dc_t
        o = gates[3 * H + j]
        tanh_c = tanh(c[j])
        dh_t = dh[j] + dh_next[j]
        dz[3 * H + j] = dh_t * tanh_c * o * (one - o)
        dc[j] += dh_t * o * (one - tanh_c * tanh_c)
    for j in range(H):  # input gate: c_t = ... + i * g
        i = gates[j]
        dz[j] = dc[j] * gates[2 * H + j] * i * (one - i)
    for j in range(H):  # candidate
        g = gates[2 * H + j]
        dz[2 * H + j] = dc[j] * gates[j] * (one - g * g)
    for j in range(H):  # forget gate, and dL/dc_{t-1} = dL/dc_t * f
        f = gates[H + j]
        dz[H + j] = dc[j] * c_prev[j] * f * (one - f)
        dc[j] *= f
    for j in range(4 * H):
        dz_step[j] = dz[j]  # contiguous copy: the np.dot after the step needs it


@njit(**_KERNEL)
def _bptt_serial(dh, dc_last, c, c0, gates, U_T, dz, one):
    N, T, H = c.shape
    dh_next = np.zeros((N, H), dtype=c.dtype)
    dc = dc_last.copy()
    dz_step = np.empty((N, 4 * H), dtype=c.dtype)
    for t in range(T - 1, -1, -1):
        for n in range(N):
            c_prev = c[n, t - 1] if t > 0 else c0[n]
            _gate_grad_row(gates[n, t], c[n, t], c_prev, dh[n, t], dh_next[n], dc[n], dz[n, t], dz_step[n], one)
        dh_next = np.dot(dz_step, U_T)
    return dh_next, dc  # after t = 0: dL/dh0, dL/dc0


@njit(**_PARALLEL_KERNEL)
def _bptt_parallel(dh, dc_last, c, c0, gates, U_T, dz, one):
    N, T, H = c.shape
    dh_next = np.zeros((N, H), dtype=c.dtype)
    dc = dc_last.copy()
    dz_step = np.empty((N, 4 * H), dtype=c.dtype)
    for t in range(T - 1, -1, -1):
        for n in prange(N):  # row n reads and writes only row n of dc, dz, dz_step
            c_prev = c[n, t - 1] if t > 0 else c0[n]
            _gate_grad_row(gates[n, t], c[n, t], c_prev, dh[n, t], dh_next[n], dc[n], dz[n, t], dz_step[n], one)
        dh_next = np.dot(dz_step, U_T)
    return dh_next, dc


def _use_parallel(N: int, H: int) -> bool:
    return N * H >= PARALLEL_MIN_SIZE and numba.get_num_threads() >= PARALLEL_MIN_THREADS


def forward(x, h0, c0, W, U, b):
    N, T, D = x.shape
    H = U.shape[0]
    xwb = (x.reshape(N * T, D) @ W).reshape(N, T, 4 * H)
    xwb += b
    h = np.empty((N, T, H), dtype=x.dtype)
    c = np.empty((N, T, H), dtype=x.dtype)
    gates = np.empty((N, T, 4 * H), dtype=x.dtype)
    kernel = _recurrence_parallel if _use_parallel(N, H) else _recurrence_serial
    kernel(xwb, U, h0, c0, h, c, gates, x.dtype.type(1))
    return h, c, LSTMCache(x, h0, c0, W, U, b, h, c, gates)


def backward(dh, cache: LSTMCache, dc_last=None):
    x, h0, c0, W, U, _, h, c, gates = cache
    N, T, D = x.shape
    H = U.shape[0]
    dh = np.zeros_like(h) if dh is None else dh
    dc_last = np.zeros_like(c0) if dc_last is None else dc_last
    dz = np.empty_like(gates)
    bptt = _bptt_parallel if _use_parallel(N, H) else _bptt_serial
    dh0, dc0 = bptt(dh, dc_last, c, c0, gates, np.ascontiguousarray(U.T), dz, x.dtype.type(1))
    dz_flat = dz.reshape(N * T, 4 * H)
    h_prev = np.concatenate([h0[:, None, :], h[:, :-1]], axis=1).reshape(N * T, H)
    dx = (dz_flat @ W.T).reshape(N, T, D)
    dW = x.reshape(N * T, D).T @ dz_flat
    dU = h_prev.T @ dz_flat
    db = dz_flat.sum(axis=0)
    return dx, dh0, dc0, dW, dU, db
