"""Scaled dot-product attention as Numba kernels (CPU). Same signatures and cache as reference.py.

Two kinds of work, kept apart on purpose:

* the five matrix products, one BLAS GEMM per batch element (np.dot inside njit):
      forward   S[n] = q[n] k[n]^T        out[n] = W[n] v[n]
      backward  dW[n] = dout[n] v[n]^T    dq[n] = s dS[n] k[n]    dk[n] = s dS[n]^T q[n]    dv[n] = W[n]^T dout[n]
* the row-wise work, one query row per prange iteration (rows write disjoint memory, no race):
      forward   W[n, i] = masked softmax(S[n, i] * s)              in place, in the weights array
      backward  dS[n, i] = W[n, i] * (dW[n, i] - sum(dW[n, i] * W[n, i]))   in place, in the dW array

The GEMMs run in a plain loop over the batch, not inside prange: OpenBLAS threads each call itself, and
BLAS calls nested inside Numba's threads would oversubscribe the cores (measured: 50x slower on a busy
2-core machine). The row loops use Numba's threads; below ``PARALLEL_MIN_SIZE`` score entries a serial
twin of each row kernel runs, because waking the thread pool costs more than the work. One thread pool
at a time: when the per-batch products are big enough for OpenBLAS's threads (OPENBLAS_THREADED_MACS),
the row kernels run serially too. Both pools' threads spin-wait after their work, and alternating them
on 2 cores made each wait for the other (N8 T512 d64, fwd+bwd: 69 ms with parallel rows, 38 ms serial).

Memory: the weights W (N, Tq, Tk) are O(T^2) per batch element and the cache keeps them by contract
(the scores are computed straight into that array, no second copy). The backward holds dS, one more
(N, Tq, Tk) array, so that dk and dv are single large GEMMs.

Precision: float32 stays float32 in the GEMMs, the maximum and the exponentials; the row sums of the
softmax and of dW * W accumulate in float64 (a float32 sum over thousands of keys loses digits).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..activations.vector_math import exp_shifted_sum_inplace, row_dot, row_max, select
from .reference import AttentionCache

PARALLEL_MIN_SIZE = 1 << 15  # score entries N*Tq*Tk; below this the serial row kernels run
OPENBLAS_THREADED_MACS = 1 << 19  # OpenBLAS runs a product this big on its own threads (measured on 2 cores)
_NO_MASK = np.ones((1, 1, 1), dtype=np.bool_)  # stands in for mask=None so both cases share one compile


# --------------------------------------------------------------------------- batched GEMMs (BLAS)
@njit(cache=True)
def _bmm_nt(a, b, out, alpha):
    """out[n] = alpha * a[n] b[n]^T"""
    for n in range(a.shape[0]):
        np.dot(a[n], b[n].T, out[n])
        if alpha != 1:
            out[n] *= alpha


@njit(cache=True)
def _bmm_nn(a, b, out, alpha):
    """out[n] = alpha * a[n] b[n]"""
    for n in range(a.shape[0]):
        np.dot(a[n], b[n], out[n])
        if alpha != 1:
            out[n] *= alpha


@njit(cache=True)
def _bmm_tn(a, b, out, alpha):
    """out[n] = alpha * a[n]^T b[n]"""
    for n in range(a.shape[0]):
        np.dot(a[n].T, b[n], out[n])
        if alpha != 1:
            out[n] *= alpha


# --------------------------------------------------------------------------- one query row
# The row kernels are compiled with error_model="numpy": a division by zero gives inf/NaN as in
# NumPy instead of a zero check, a branch that stops LLVM from vectorising the loop.
@njit(cache=True, inline="always")
def _mask_row(mask, has_mask, n, i):
    if not has_mask:
        return mask[0, 0]  # never read
    return mask[n if mask.shape[0] > 1 else 0, i]


@njit(cache=True, inline="always")
def _softmax_row(row, mrow, has_mask, scale, neg_inf, zero):
    """In place: raw scores q.k in, weights softmax(scores * scale) out; masked keys get exactly 0,
    and a row with every key masked gets all zeros (not 0/0 = NaN). exp and the row sums come from
    activations.vector_math: vectorised loops, float64 sums of float32 blocks."""
    tk = row.shape[0]
    if has_mask:  # branch-free loops (select), so that they vectorise like the unmasked one
        keys = 0
        for j in range(tk):
            keys += mrow[j]
        if keys == 0:
            for j in range(tk):
                row[j] = 0.0
            return
        for j in range(tk):
            row[j] = select(mrow[j], row[j] * scale, neg_inf)  # exp(-inf - max) = 0
    else:
        for j in range(tk):
            row[j] = row[j] * scale
    m = row_max(row)
    total = exp_shifted_sum_inplace(row, m, zero)
    inv = 1.0 / total
    for j in range(tk):
        row[j] = row[j] * inv
    if has_mask:
        for j in range(tk):  # a masked weight stays exactly 0, even when the row is NaN
            row[j] = select(mrow[j], row[j], zero)


@njit(cache=True, inline="always")
def _masked_scores_row(row, mrow, has_mask, neg_inf):
    if has_mask:
        for j in range(row.shape[0]):
            if not mrow[j]:
                row[j] = neg_inf


@njit(cache=True, inline="always")
def _softmax_grad_row(row, wrow, zero):
    """In place: dW row in, dS = W * (dW - sum(dW * W)) out (the softmax Jacobian-vector product)."""
    acc = row_dot(row, wrow, zero)  # float64 sum of float32 blocks (vector_math)
    for j in range(row.shape[0]):
        row[j] = wrow[j] * (row[j] - acc)


# --------------------------------------------------------------------------- all rows: parallel and serial twins
# Row r of the flattened (N * Tq) rows is query i = r % Tq of batch element n = r // Tq.
@njit(cache=True, parallel=True, error_model="numpy")
def _softmax_rows_parallel(w, mask, has_mask, scale, neg_inf, zero):
    tq = w.shape[1]
    for r in prange(w.shape[0] * tq):
        n, i = r // tq, r % tq
        _softmax_row(w[n, i], _mask_row(mask, has_mask, n, i), has_mask, scale, neg_inf, zero)


@njit(cache=True, error_model="numpy")
def _softmax_rows_serial(w, mask, has_mask, scale, neg_inf, zero):
    for n in range(w.shape[0]):
        for i in range(w.shape[1]):
            _softmax_row(w[n, i], _mask_row(mask, has_mask, n, i), has_mask, scale, neg_inf, zero)


@njit(cache=True, parallel=True, error_model="numpy")
def _masked_scores_parallel(s, mask, has_mask, neg_inf):
    tq = s.shape[1]
    for r in prange(s.shape[0] * tq):
        n, i = r // tq, r % tq
        _masked_scores_row(s[n, i], _mask_row(mask, has_mask, n, i), has_mask, neg_inf)


@njit(cache=True, error_model="numpy")
def _masked_scores_serial(s, mask, has_mask, neg_inf):
    for n in range(s.shape[0]):
        for i in range(s.shape[1]):
            _masked_scores_row(s[n, i], _mask_row(mask, has_mask, n, i), has_mask, neg_inf)


@njit(cache=True, parallel=True, error_model="numpy")
def _softmax_grad_rows_parallel(ds, w, zero):
    tq = ds.shape[1]
    for r in prange(ds.shape[0] * tq):
        n, i = r // tq, r % tq
        _softmax_grad_row(ds[n, i], w[n, i], zero)


@njit(cache=True, error_model="numpy")
def _softmax_grad_rows_serial(ds, w, zero):
    for n in range(ds.shape[0]):
        for i in range(ds.shape[1]):
            _softmax_grad_row(ds[n, i], w[n, i], zero)


# --------------------------------------------------------------------------- the op
def _mask_args(mask: np.ndarray | None) -> tuple[np.ndarray, bool]:
    return (_NO_MASK, False) if mask is None else (mask, True)


def _parallel(scores_shape: tuple[int, ...], width: int) -> bool:
    """Row kernels on Numba's threads: for enough score entries, and only while the per-batch products
    (Tq x Tk x width multiply-adds, width = max(d, dv)) stay on the calling thread. When OpenBLAS runs
    them on its own threads, the row kernels run serially: one thread pool at a time (see above)."""
    n, tq, tk = scores_shape
    return n * tq * tk >= PARALLEL_MIN_SIZE and tq * tk * width < OPENBLAS_THREADED_MACS


def scores(q: np.ndarray, k: np.ndarray, mask: np.ndarray | None, scale: float) -> np.ndarray:
    t = q.dtype.type
    s = np.empty((q.shape[0], q.shape[1], k.shape[1]), dtype=q.dtype)
    _bmm_nt(q, k, s, t(scale))
    m, has_mask = _mask_args(mask)
    if has_mask:
        kernel = _masked_scores_parallel if _parallel(s.shape, q.shape[2]) else _masked_scores_serial
        kernel(s, m, has_mask, t(-np.inf))
    return s


def forward(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None,
            scale: float) -> tuple[np.ndarray, AttentionCache]:
    t = q.dtype.type
    w = np.empty((q.shape[0], q.shape[1], k.shape[1]), dtype=q.dtype)
    _bmm_nt(q, k, w, t(1))  # raw scores, turned into weights in place
    m, has_mask = _mask_args(mask)
    softmax_rows = _softmax_rows_parallel if _parallel(w.shape, max(q.shape[2], v.shape[2])) else _softmax_rows_serial
    softmax_rows(w, m, has_mask, t(scale), t(-np.inf), t(0))
    out = np.empty((q.shape[0], q.shape[1], v.shape[2]), dtype=q.dtype)
    _bmm_nn(w, v, out, t(1))
    return out, AttentionCache(q, k, v, mask, w, float(scale))


def backward(dout: np.ndarray, cache: AttentionCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    q, k, v, _, w, scale = cache
    t = q.dtype.type
    ds = np.empty_like(w)
    _bmm_nt(dout, v, ds, t(1))  # dW = dout v^T, turned into dS in place
    grad_rows = (_softmax_grad_rows_parallel if _parallel(w.shape, max(q.shape[2], v.shape[2]))
                 else _softmax_grad_rows_serial)
    grad_rows(ds, w, t(0))
    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
    _bmm_nn(ds, k, dq, t(scale))
    _bmm_tn(ds, q, dk, t(scale))
    _bmm_tn(w, dout, dv, t(1))
    return dq, dk, dv
