"""The LSTM as Numba kernels (CPU). Same signatures and cache as reference.py.

Only the recurrence is sequential, so the work is split by what depends on it:

* The input projection x_t W + b does not depend on h_{t-1}: one product over all N*T rows before the
  time loop (as cuDNN does). In backward, once every dz_t (the gradient on the four gates'
  pre-activations) is known, dW = sum_t x_t^T dz_t, dU = sum_t h_{t-1}^T dz_t, db and dx are single
  products / sums over the flattened (N*T) axis: the BPTT sum over time is the sum over that axis.
* The time loop is sequential in t but not across the batch: each batch row is its own sequence.

Row blocks (H a whole number of 64-byte vectors: a multiple of 16 float32 / 8 float64). Blocks of batch
rows, one per thread, run on Numba's threads in ONE parallel region: the block's input projection,
then every time step: a register-tiled product h_{t-1} U of its rows (toolkit.ops.row_products, U
packed once), then the gate math of those rows. Backward the same way (the chain rule through the gates
down to dz_t and dL/dc_{t-1}, then dz_t U^T), and then dx, dW and dU as row_products on Numba's threads
too: no BLAS anywhere, so no second thread pool spinning against Numba's (OpenBLAS's threads busy-wait
after a call; with the input projection and the backward's products on them, the forward took 31 ms
instead of 18 and the f+b 87 ms). N32 T64 D128 H256 float32, 2 cores, ``python -m bench``, against the
per-step BLAS path it replaced: forward 28 -> 16-19 ms, f+b 66 -> 44-50 ms (PyTorch 47-54 ms in the same
runs; the VM's neighbours move every number). The products run at 57-70 GMAC/s on 2 threads, NumPy's
BLAS at 63-69 on the same shapes.

Otherwise (H = 131, say): per step one BLAS product (N, H) x (H, 4H), then one @njit kernel with the gate
math of every batch row, and the input projection and backward products as single BLAS calls.

The gate math is written as short loops over contiguous row slices, one quantity per loop, with
exp/tanh from activations.vector_math and error_model="numpy": LLVM vectorises such loops (8 float32
lanes with AVX2). Measured on one (256, 256) float32 step, this ran 5-8x faster than one loop
computing all four gates per element (which does not vectorise) and 2-3x faster than NumPy.

That per-step product goes through NumPy's BLAS (np.matmul), not np.dot inside @njit: that one is
SciPy's OpenBLAS, a second library with its own thread pool, and alternating the two (NumPy's for
the input projection, SciPy's in the loop) made the loop up to 30x slower on a busy 2-core machine
(each pool's idle threads spin against the other's). One Python-level call per step costs a few
microseconds.

Temporaries that never leave the op (the input projection, h_{t-1} U, dz, the shifted h, the packed
weights and dz, x^T) are reused scratch (``toolkit.ops.scratch``): allocating them fresh page-faulted 10
ms of a 37 ms forward in (N32 T64 D128 H256). h, c and gates are returned in the cache, and so are fresh
arrays.

Float32 stays float32 throughout (sgemm or float32 tiles, the constant one passed in the input's dtype); float64
uses the C library's exp/tanh. The sigmoid only exponentiates -|z|, so it never overflows.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from ..ieee import ieee_quiet
from ..activations.vector_math import exp, tanh
from ..row_products import fits, pack, product, rows_times
from ..scratch import scratch
from .reference import LSTMCache

# The parallel kernels start a thread team at every time step, next to BLAS's own threads. Measured
# on a loaded 2-core machine they lost to the serial kernels at every size tried (up to N*H = 16384,
# T = 50: 2x to 15x slower, Numba's OpenMP threads spinning against OpenBLAS's), so they run only with
# enough threads and a large step; both limits are guesses to re-tune with bench/ on a quiet machine.
PARALLEL_MIN_SIZE = 1 << 14  # N*H of one time step
PARALLEL_MIN_THREADS = 4
# Multiply-adds of the whole recurrence (N*T*H*4H) from which the row blocks run on Numba's threads: one
# parallel region for all T steps, about 0.1 ms of work or more.
TILED_PARALLEL_MIN_MACS = 1 << 22

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


# --------------------------------------------------------------------------- row blocks (whole time loop)
# Batch rows are independent sequences: with H in whole vectors, each block of rows runs every time step
# itself, its products register-tiled (toolkit.ops.row_products), the blocks on Numba's threads in ONE
# parallel region for the whole loop, no BLAS in the loop at all.
@njit(**_KERNEL)
def _recurrence_rows(x, W, b, h0, c0, U, xwb, gates, c, h, rec, one, n_start, n_stop):
    """Every step of batch rows [n_start, n_stop), their input projection x_t W + b first (into xwb).
    W and U are packed (row_products.pack); rec (rows, 4H) holds this block's h_{t-1} U."""
    N, T, H = h.shape
    D = x.shape[2]
    rows = n_stop - n_start
    rows_times(x, n_start * T * D, D, rows * T, W, xwb, n_start * T * 4 * H, 4 * H)
    for n in range(n_start, n_stop):
        for t in range(T):
            z = xwb[n, t]
            for j in range(4 * H):
                z[j] += b[j]
    for t in range(T):
        if t == 0:
            rows_times(h0, n_start * H, H, rows, U, rec, 0, 4 * H)
        else:  # h_{t-1} of row n is h[n, t - 1]: rows T*H apart
            rows_times(h, (n_start * T + t - 1) * H, T * H, rows, U, rec, 0, 4 * H)
        for n in range(n_start, n_stop):
            c_prev = c[n, t - 1] if t > 0 else c0[n]
            _cell_row(xwb[n, t], rec[n - n_start], c_prev, gates[n, t], c[n, t], h[n, t], one)


@njit(**_KERNEL)
def _recurrence_blocks_serial(x, W, b, h0, c0, U, xwb, gates, c, h, rec, one, per_block):
    for blk in range(rec.shape[0]):
        _recurrence_rows(x, W, b, h0, c0, U, xwb, gates, c, h, rec[blk], one, blk * per_block,
                         min(h.shape[0], (blk + 1) * per_block))


@njit(**_PARALLEL_KERNEL)
def _recurrence_blocks_parallel(x, W, b, h0, c0, U, xwb, gates, c, h, rec, one, per_block):
    for blk in prange(rec.shape[0]):  # block blk writes only its rows of xwb, gates, c, h and its rec[blk]
        _recurrence_rows(x, W, b, h0, c0, U, xwb, gates, c, h, rec[blk], one, blk * per_block,
                         min(h.shape[0], (blk + 1) * per_block))


@njit(**_KERNEL)
def _bptt_rows(dh, dh_next, dc, c, c0, gates, dz, UT, one, n_start, n_stop):
    """Every step back of batch rows [n_start, n_stop): dz_t, then dh_next = dz_t U^T (UT: U^T packed)."""
    N, T, H = c.shape
    rows = n_stop - n_start
    for t in range(T - 1, -1, -1):
        for n in range(n_start, n_stop):
            c_prev = c[n, t - 1] if t > 0 else c0[n]
            _gate_grad_row(gates[n, t], c[n, t], c_prev, dh[n, t], dh_next[n], dc[n], dz[n, t], one)
        rows_times(dz, (n_start * T + t) * 4 * H, T * 4 * H, rows, UT, dh_next, n_start * H, H)


@njit(**_KERNEL)
def _bptt_blocks_serial(dh, dh_next, dc, c, c0, gates, dz, UT, one, per_block, blocks):
    for blk in range(blocks):
        _bptt_rows(dh, dh_next, dc, c, c0, gates, dz, UT, one, blk * per_block, min(c.shape[0], (blk + 1) * per_block))


@njit(**_PARALLEL_KERNEL)
def _bptt_blocks_parallel(dh, dh_next, dc, c, c0, gates, dz, UT, one, per_block, blocks):
    for blk in prange(blocks):  # block blk writes only its rows of dz, dc and dh_next
        _bptt_rows(dh, dh_next, dc, c, c0, gates, dz, UT, one, blk * per_block, min(c.shape[0], (blk + 1) * per_block))


def _row_blocks(N: int, T: int, H: int, dtype) -> tuple[int, int, bool] | None:
    """(blocks, rows per block, parallel) for the row-block path, or None where it does not apply (H not
    in whole vectors). One block per thread when the loop's products are worth the threads."""
    if not fits(H, dtype):
        return None
    parallel = N > 1 and N * T * H * 4 * H >= TILED_PARALLEL_MIN_MACS and numba.get_num_threads() > 1
    blocks = min(N, numba.get_num_threads()) if parallel else 1
    per_block = -(-N // blocks)
    return -(-N // per_block), per_block, parallel


@ieee_quiet
def forward(x, h0, c0, W, U, b):
    N, T, D = x.shape
    H = U.shape[0]
    one = x.dtype.type(1)
    xwb = scratch("lstm.xwb", (N, T, 4 * H), x.dtype)  # never leaves forward: reused, not page-faulted in
    h = np.empty((N, T, H), dtype=x.dtype)
    c = np.empty((N, T, H), dtype=x.dtype)
    gates = np.empty((N, T, 4 * H), dtype=x.dtype)
    tiled = _row_blocks(N, T, H, x.dtype)
    if tiled is not None:
        blocks, per_block, parallel = tiled
        rec = scratch("lstm.rec", (blocks, per_block, 4 * H), x.dtype)  # each block's h_{t-1} U
        driver = _recurrence_blocks_parallel if parallel else _recurrence_blocks_serial
        W_packed, U_packed = pack(W, "lstm.w_packed"), pack(U, "lstm.u_packed")
        driver(x, W_packed, b, h0, c0, U_packed, xwb, gates, c, h, rec, one, per_block)
        return h, c, LSTMCache(x, h0, c0, W, U, b, h, c, gates)
    np.matmul(x.reshape(N * T, D), W, out=xwb.reshape(N * T, 4 * H))
    xwb += b
    rec = scratch("lstm.rec", (N, 4 * H), x.dtype)  # h_{t-1} U
    step = _step_parallel if _use_parallel(N, H) else _step_serial
    for t in range(T):
        # h[:, t - 1] is a strided view with contiguous rows: BLAS reads it in place (lda = T*H)
        np.matmul(h0 if t == 0 else h[:, t - 1], U, out=rec)
        step(t, xwb, rec, c0, gates, c, h, one)
    return h, c, LSTMCache(x, h0, c0, W, U, b, h, c, gates)


@ieee_quiet
def backward(dh, cache: LSTMCache, dc_last=None):
    x, h0, c0, W, U, _, h, c, gates = cache
    N, T, D = x.shape
    H = U.shape[0]
    one = x.dtype.type(1)
    dh = np.zeros_like(h) if dh is None else dh
    dc = np.zeros_like(c0) if dc_last is None else dc_last.copy()  # dL/dc_t, updated in place step by step
    dh_next = np.zeros_like(h0)  # dz_{t+1} U^T: what h_t receives from step t+1
    dz = scratch("lstm.dz", gates.shape, gates.dtype)  # every step writes its dz before anything reads it
    tiled = _row_blocks(N, T, H, x.dtype)
    if tiled is not None:
        blocks, per_block, parallel = tiled
        driver = _bptt_blocks_parallel if parallel else _bptt_blocks_serial
        driver(dh, dh_next, dc, c, c0, gates, dz, pack(U.T, "lstm.u_t_packed"), one, per_block, blocks)
        dx, dW, dU, db = _weight_products(x, h0, h, W, dz, parallel)
        return dx, dh_next, dc, dW, dU, db
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


def _weight_products(x, h0, h, W, dz, parallel):
    """dx, dW, dU and db from every dz_t, for the row-block path: the products on Numba's threads too
    (row_products.product), so that the whole backward uses one thread pool."""
    N, T, D = x.shape
    H = h.shape[2]
    dz_flat = dz.reshape(N * T, 4 * H)
    dz_packed = pack(dz_flat, "lstm.dz_packed")  # the right-hand side of dW and dU
    x_t = scratch("lstm.x_t", (D, N * T), x.dtype)  # x^T: the rows of dW's left side
    x_t[...] = x.reshape(N * T, D).T
    h_prev_t = scratch("lstm.h_prev_t", (H, N, T), h.dtype)  # h_{t-1}^T for every t: dU's left side
    h_prev_t[:, :, 0] = h0.T
    h_prev_t[:, :, 1:] = h[:, :-1].transpose(2, 0, 1)
    dW = product(x_t, dz_packed, 4 * H, parallel)
    dU = product(h_prev_t.reshape(H, N * T), dz_packed, 4 * H, parallel)
    dx = product(dz_flat, pack(W.T, "lstm.w_t_packed"), D, parallel).reshape(N, T, D)
    return dx, dW, dU, dz_flat.sum(axis=0)
