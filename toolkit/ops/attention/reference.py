"""Scaled dot-product attention in plain NumPy: the readable oracle the Numba and CUDA kernels are held against.

Shapes (batch first, as Keras): q (N, Tq, d), k (N, Tk, d), v (N, Tk, dv) -> out (N, Tq, dv).

    scores  S = q k^T * s                 (N, Tq, Tk); row i = how much query i matches every key
    weights W = softmax(S, axis=-1)        each row sums to 1 over the keys it may attend to
    out       = W v                        a weighted average of the value vectors

Conventions a learner could trip on:

* ``scale`` s is a plain float here (the public function resolves it): 1/sqrt(d) is the Transformer's
  choice (scale=True); the notes' "The dog runs" example uses raw dot products (scale=False, s = 1).
* ``mask`` is None or a bool array of shape (1 or N, Tq, Tk); True = query i MAY attend to key j.
  A masked score is -inf before the softmax, so its weight is exactly 0.
* A query row whose keys are all masked has no distribution to normalise. Instead of 0/0 = NaN it gets
  all-zero weights, so its output row is 0 and it passes no gradient to q, k or v.
* The softmax subtracts each row's maximum first: scores of 1e6 neither overflow nor warn.
* Inputs that hold NaN or +-Inf give NaN/Inf by IEEE rules (a row containing +inf is inf - inf = NaN);
  NumPy's "invalid value" warnings for those are silenced on purpose, the values are what IEEE says.

Backward, with W from the cache and dout = dL/dout:

    dv = W^T dout
    dW = dout v^T
    dS = W * (dW - sum(dW * W, axis=-1))   the softmax Jacobian-vector product, row by row
    dq = dS k * s
    dk = dS^T q * s

Memory: W is (N, Tq, Tk), O(T^2) per batch element; the cache keeps it (learners want to look at it).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..ieee import ieee_quiet


class AttentionCache(NamedTuple):
    q: Any  # (N, Tq, d)
    k: Any  # (N, Tk, d)
    v: Any  # (N, Tk, dv)
    mask: Any  # None, or bool (1 or N, Tq, Tk); True = may attend
    weights: Any  # (N, Tq, Tk) softmax of the scores; 0 where masked, all 0 on a fully masked row
    scale: float  # the s actually used: scores = q k^T * s


@ieee_quiet  # huge or infinite inputs: IEEE results
def scores(q: np.ndarray, k: np.ndarray, mask: np.ndarray | None, scale: float) -> np.ndarray:
    """S = q k^T * s, with -inf where the mask forbids attending (what the softmax sees)."""
    s = np.matmul(q, k.transpose(0, 2, 1)) * q.dtype.type(scale)
    if mask is not None:
        s = np.where(mask, s, q.dtype.type(-np.inf))
    return s


def masked_softmax(s: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Softmax over the last axis of the scores; 0 at masked entries and on rows with nothing to attend to."""
    if mask is None:
        allowed = np.ones(s.shape, dtype=bool)
    else:
        allowed = np.broadcast_to(mask, s.shape)
    row_has_key = allowed.any(axis=-1, keepdims=True)
    m = np.where(allowed, s, s.dtype.type(-np.inf)).max(axis=-1, keepdims=True)
    m = np.where(row_has_key, m, s.dtype.type(0))  # a fully masked row: avoid -inf - -inf
    with np.errstate(invalid="ignore"):  # +inf scores give inf - inf = NaN, as IEEE says
        e = np.where(allowed, np.exp(np.where(allowed, s, m) - m), s.dtype.type(0))
        total = e.sum(axis=-1, keepdims=True)
        # masked entries (every entry of a fully masked row among them) are 0, even when the row is NaN
        return np.where(allowed, e / np.where(row_has_key, total, 1), s.dtype.type(0))


@ieee_quiet
def forward(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None,
            scale: float) -> tuple[np.ndarray, AttentionCache]:
    w = masked_softmax(scores(q, k, mask, scale), mask)
    out = np.matmul(w, v)  # 0 * inf from a masked weight times an infinite value is NaN, quietly
    return out, AttentionCache(q, k, v, mask, w, float(scale))


@ieee_quiet
def backward(dout: np.ndarray, cache: AttentionCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    q, k, v, _, w, scale = cache
    s = q.dtype.type(scale)
    dv = np.matmul(w.transpose(0, 2, 1), dout)
    dw = np.matmul(dout, v.transpose(0, 2, 1))
    ds = w * (dw - (dw * w).sum(axis=-1, keepdims=True))
    dq = np.matmul(ds, k) * s
    dk = np.matmul(ds.transpose(0, 2, 1), q) * s
    return dq, dk, dv
