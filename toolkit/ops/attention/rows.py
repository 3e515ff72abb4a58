"""The row-wise work of attention, one query row at a time: the (masked) softmax of a row of scores and the
softmax's Jacobian-vector product. Shared by the whole-matrix and masked paths (cpu.py) and the tiled
path (tiled.py); all are inlined into their callers' loops.

The callers compile these with error_model="numpy": a division by zero gives inf/NaN as in NumPy instead
of a zero check, a branch that stops LLVM from vectorising the loop.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..activations.vector_math import exp_shifted_sum_inplace, row_dot, row_max, select

NO_MASK = np.ones((1, 1, 1), dtype=np.bool_)  # stands in for mask=None so both cases share one compile


@njit(cache=True, inline="always")
def mask_row(mask, has_mask, n, i):
    if not has_mask:
        return mask[0, 0]  # never read
    return mask[n if mask.shape[0] > 1 else 0, i]


@njit(cache=True, inline="always")
def softmax_row(row, mrow, has_mask, scale, neg_inf, zero):
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
def masked_scores_row(row, mrow, has_mask, neg_inf):
    if has_mask:
        for j in range(row.shape[0]):
            if not mrow[j]:
                row[j] = neg_inf


@njit(cache=True, inline="always")
def softmax_grad_row(row, wrow, zero):
    """In place: dW row in, dS = W * (dW - sum(dW * W)) out (the softmax Jacobian-vector product)."""
    acc = row_dot(row, wrow, zero)  # float64 sum of float32 blocks (vector_math)
    for j in range(row.shape[0]):
        row[j] = wrow[j] * (row[j] - acc)


@njit(cache=True, inline="always")
def scaled_softmax_grad_row(row, wrow, scale, zero):
    """softmax_grad_row times scale: dW row in, scale * dS out (the tiled path folds the 1/sqrt(d) of
    dq = s dS k and dk = s dS^T q into dS, so its products need no scaling pass)."""
    acc = row_dot(row, wrow, zero)
    for j in range(row.shape[0]):
        row[j] = scale * (wrow[j] * (row[j] - acc))
