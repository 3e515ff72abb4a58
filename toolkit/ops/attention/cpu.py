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
twin of each row kernel runs, because waking the thread pool costs more than the work.

Memory: the weights W (N, Tq, Tk) are O(T^2) per batch element and the cache keeps them by contract
(the scores are computed straight into that array, no second copy). The backward holds dS, one more
(N, Tq, Tk) array, so that dk and dv are single large GEMMs.

Precision: float32 stays float32 in the GEMMs, the maximum and the exponentials; the row sums of the
softmax and of dW * W accumulate in float64 (a float32 sum over thousands of keys loses digits).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .reference import AttentionCache

PARALLEL_MIN_SIZE = 1 << 15  # score entries N*Tq*Tk; below this the serial row kernels run
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
@njit(cache=True, inline="always")
def _mask_row(mask, has_mask, n, i):
    if not has_mask:
        return mask[0, 0]  # never read
    return mask[n if mask.shape[0] > 1 else 0, i]


@njit(cache=True, inline="always")
def _softmax_row(row, mrow, has_mask, scale, neg_inf):
    """In place: raw scores q.k in, weights softmax(scores * scale) out; masked keys get exactly 0,
    and a row with every key masked gets all zeros (not 0/0 = NaN)."""
    tk = row.shape[0]
    m = neg_inf
    any_key = False
    for j in range(tk):
        if has_mask and not mrow[j]:
            continue
        any_key = True
        x = row[j] * scale
        row[j] = x
        if x > m:
            m = x
    if not any_key:
        for j in range(tk):
            row[j] = 0.0
        return
    total = 0.0  # float64 accumulator
    for j in range(tk):
        if has_mask and not mrow[j]:
            row[j] = 0.0
        else:
            e = np.exp(row[j] - m)
            row[j] = e
            total += e
    inv = 1.0 / total
    for j in range(tk):
        if not has_mask or mrow[j]:  # a masked weight stays exactly 0, even when the row is NaN
            row[j] = row[j] * inv


@njit(cache=True, inline="always")
def _masked_scores_row(row, mrow, has_mask, neg_inf):
    if has_mask:
        for j in range(row.shape[0]):
            if not mrow[j]:
                row[j] = neg_inf


@njit(cache=True, inline="always")
def _softmax_grad_row(row, wrow):
    """In place: dW row in, dS = W * (dW - sum(dW * W)) out (the softmax Jacobian-vector product)."""
    acc = 0.0  # float64 accumulator
    for j in range(row.shape[0]):
        acc += row[j] * wrow[j]
    for j in range(row.shape[0]):
        row[j] = wrow[j] * (row[j] - acc)


# --------------------------------------------------------------------------- all rows: parallel and serial twins
# Row r of the flattened (N * Tq) rows is query i = r % Tq of batch element n = r // Tq.
@njit(cache=True, parallel=True)
def _softmax_rows_parallel(w, mask, has_mask, scale, neg_inf):
    tq = w.shape[1]
    for r in prange(w.shape[0] * tq):
        n, i = r // tq, r % tq
        _softmax_row(w[n, i], _mask_row(mask, has_mask, n, i), has_mask, scale, neg_inf)


@njit(cache=True)
def _softmax_rows_serial(w, mask, has_mask, scale, neg_inf):
    for n in range(w.shape[0]):
        for i in range(w.shape[1]):
            _softmax_row(w[n, i], _mask_row(mask, has_mask, n, i), has_mask, scale, neg_inf)


@njit(cache=True, parallel=True)
def _masked_scores_parallel(s, mask, has_mask, neg_inf):
    tq = s.shape[1]
    for r in prange(s.shape[0] * tq):
        n, i = r // tq, r % tq
        _masked_scores_row(s[n, i], _mask_row(mask, has_mask, n, i), has_mask, neg_inf)


@njit(cache=True)
def _masked_scores_serial(s, mask, has_mask, neg_inf):
    for n in range(s.shape[0]):
        for i in range(s.shape[1]):
            _masked_scores_row(s[n, i], _mask_row(mask, has_mask, n, i), has_mask, neg_inf)


@njit(cache=True, parallel=True)
def _softmax_grad_rows_parallel(ds, w):
    tq = ds.shape[1]
    for r in prange(ds.shape[0] * tq):
        n, i = r // tq, r % tq
        _softmax_grad_row(ds[n, i], w[n, i])


@njit(cache=True)
def _softmax_grad_rows_serial(ds, w):
    for n in range(ds.shape[0]):
        for i in range(ds.shape[1]):
            _softmax_grad_row(ds[n, i], w[n, i])


# --------------------------------------------------------------------------- the op
def _mask_args(mask: np.ndarray | None) -> tuple[np.ndarray, bool]:
    return (_NO_MASK, False) if mask is None else (mask, True)


def _parallel(scores_shape: tuple[int, ...]) -> bool:
    return int(np.prod(scores_shape)) >= PARALLEL_MIN_SIZE


def scores(q: np.ndarray, k: np.ndarray, mask: np.ndarray | None, scale: float) -> np.ndarray:
    t = q.dtype.type
    s = np.empty((q.shape[0], q.shape[1], k.shape[1]), dtype=q.dtype)
    _bmm_nt(q, k, s, t(scale))
    m, has_mask = _mask_args(mask)
    if has_mask:
        kernel = _masked_scores_parallel if _parallel(s.shape) else _masked_scores_serial
        kernel(s, m, has_mask, t(-np.inf))
    return s


def forward(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None,
            scale: float) -> tuple[np.ndarray, AttentionCache]:
    t = q.dtype.type
    w = np.empty((q.shape[0], q.shape[1], k.shape[1]), dtype=q.dtype)
    _bmm_nt(q, k, w, t(1))  # raw scores, turned into weights in place
    m, has_mask = _mask_args(mask)
    softmax_rows = _softmax_rows_parallel if _parallel(w.shape) else _softmax_rows_serial
    softmax_rows(w, m, has_mask, t(scale), t(-np.inf))
    out = np.empty((q.shape[0], q.shape[1], v.shape[2]), dtype=q.dtype)
    _bmm_nn(w, v, out, t(1))
    return out, AttentionCache(q, k, v, mask, w, float(scale))


def backward(dout: np.ndarray, cache: AttentionCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    q, k, v, _, w, scale = cache
    t = q.dtype.type
    ds = np.empty_like(w)
    _bmm_nt(dout, v, ds, t(1))  # dW = dout v^T, turned into dS in place
    grad_rows = _softmax_grad_rows_parallel if _parallel(w.shape) else _softmax_grad_rows_serial
    grad_rows(ds, w)
    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
    _bmm_nn(ds, k, dq, t(scale))
    _bmm_tn(ds, q, dk, t(scale))
    _bmm_tn(w, dout, dv, t(1))
    return dq, dk, dv
