"""Scaled dot-product attention: validate, then run on the device the inputs live on.

    out, cache = attention_forward(q, k, v, mask=None, scale=True)
    cache.weights                      # (N, Tq, Tk) attention weights, each row sums to 1
    dq, dk, dv = attention_backward(dout, cache)
    s = attention_scores(q, k, mask=None, scale=True)   # the scores q k^T * s the softmax sees

Shapes: q (N, Tq, d), k (N, Tk, d), v (N, Tk, dv) -> out (N, Tq, dv). ``scale``: True = 1/sqrt(d)
(the Transformer's choice), False = 1 (raw dot products, as in the notes' "The dog runs" example), or a
positive float. ``mask``: bool (Tq, Tk) shared by the batch or (N, Tq, Tk); True = query i may attend to
key j (a causal mask is ``np.tril(np.ones((T, T), bool))``). A query whose keys are all masked gets
zero weights, a zero output row and zero gradients (not NaN). See reference.py for the formulas.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ... import backend, validate
from .. import cache_checks
from .reference import AttentionCache

__all__ = ["AttentionCache", "attention_forward", "attention_backward", "attention_scores"]


def _inputs(q: Any, k: Any, v: Any | None) -> tuple[Any, Any, Any]:
    q = validate.array("q", q, ndim=3)
    k = validate.array("k", k, ndim=3, dtype=q.dtype)
    n, _, d = q.shape
    if k.shape[0] != n:
        raise ValueError(f"k must have the batch size N={n} of q (shape (N, Tq, d) = {tuple(q.shape)}); "
                         f"got shape {tuple(k.shape)}")
    if k.shape[2] != d:
        raise ValueError(f"k must have the feature size d={d} of q (q {tuple(q.shape)}: q and k are "
                         f"dot-multiplied); got shape {tuple(k.shape)}")
    if v is not None:
        v = validate.array("v", v, ndim=3, dtype=q.dtype)
        if v.shape[:2] != k.shape[:2]:
            raise ValueError(f"v must have shape (N, Tk, dv) = ({n}, {k.shape[1]}, dv), one value per key "
                             f"of k {tuple(k.shape)}; got {tuple(v.shape)}")
    return q, k, v


def _mask(mask: Any, n: int, tq: int, tk: int) -> Any:
    """None, or a C-contiguous bool mask of shape (1 or N, Tq, Tk)."""
    if mask is None:
        return None
    if not (hasattr(mask, "dtype") and hasattr(mask, "shape") and hasattr(mask, "ndim")):
        raise TypeError(f"mask must be None or a bool array of shape ({tq}, {tk}) or ({n}, {tq}, {tk}); "
                        f"got {type(mask).__name__}")
    if mask.dtype != np.bool_:
        raise TypeError(f"mask must have dtype bool (True = may attend); got {mask.dtype}")
    if tuple(mask.shape) not in ((tq, tk), (n, tq, tk)):
        raise ValueError(f"mask must have shape (Tq, Tk) = ({tq}, {tk}) or (N, Tq, Tk) = ({n}, {tq}, {tk}); "
                         f"got {tuple(mask.shape)}")
    if isinstance(mask, np.ma.MaskedArray):
        raise TypeError("mask must be a plain bool array; got a masked array (numpy.ma), whose own mask would "
                        "be ignored: fill it first, e.g. mask.filled(False)")
    if isinstance(mask, np.ndarray):
        mask = np.asarray(mask)  # np.matrix & co as a plain array
    return validate.contiguous("mask", mask.reshape((-1, tq, tk)))


def _scale(scale: Any, d: int) -> float:
    if isinstance(scale, (bool, np.bool_)):
        return 1.0 / math.sqrt(d) if scale else 1.0
    if isinstance(scale, (int, float, np.integer, np.floating)):
        return validate.real("scale", scale, low=0.0, low_open=True)
    raise TypeError(f"scale must be True (1/sqrt(d)), False (no scaling) or a positive float; "
                    f"got {scale!r} ({type(scale).__name__})")


def _check_limits(q: Any, k: Any, v: Any | None) -> None:
    """Refuse what cannot fit before anything is allocated: the (N, Tq, Tk) scores or weights (the CPU
    keeps them; the GPU's fused forward does not, only its statistics), the output (N, Tq, dv)."""
    n, tq, d = (int(s) for s in q.shape)
    tk = int(k.shape[1])
    def sizes() -> str:  # formatted only for an error
        return f"q {tuple(q.shape)} and k {tuple(k.shape)} (Tq = {tq}, Tk = {tk})"

    scores = (sizes, "the attention scores (N, Tq, Tk)", (n, tq, tk), q.dtype)
    if v is None:  # attention_scores: the scores are its output, on either device
        validate.kernel_ints(q, [("d", d)])
        validate.fits(q, [scores])
        return
    dv = int(v.shape[2])
    needs = [(lambda: f"q {tuple(q.shape)} and v {tuple(v.shape)}", "the output (N, Tq, dv)", (n, tq, dv), q.dtype)]
    if backend.is_gpu_array(q):
        needs.append((sizes, "the softmax statistics (2, N, Tq)", (2, n, tq), q.dtype))
    else:
        needs.append((sizes, "the attention weights (N, Tq, Tk)", (n, tq, tk), q.dtype))
    validate.fits(q, needs)


def attention_forward(q: Any, k: Any, v: Any, mask: Any = None, scale: Any = True) -> tuple[Any, AttentionCache]:
    """out = softmax(q k^T * s, masked) v; returns (out (N, Tq, dv), cache with the weights)."""
    q, k, v = _inputs(q, k, v)
    _check_limits(q, k, v)
    mask = _mask(mask, q.shape[0], q.shape[1], k.shape[1])
    s = _scale(scale, q.shape[2])
    return backend.dispatch("attention", q=q, k=k, v=v, mask=mask).forward(q, k, v, mask, s)


def attention_backward(dout: Any, cache: AttentionCache) -> tuple[Any, Any, Any]:
    """(dq, dk, dv) given dout = dL/dout (N, Tq, dv) and the cache of the forward pass."""
    if not isinstance(cache, AttentionCache):
        raise TypeError(f"cache must be the AttentionCache returned by attention_forward; got {type(cache).__name__}")
    # The implementation decides the weights' form: an array (CPU), or the GPU's DeferredWeights (its statistics).
    impl = backend.dispatch("attention", dout=dout, q=cache.q)
    cache = cache_checks.attention(cache, deferred=getattr(impl, "DeferredWeights", None))
    n, tq, _ = cache.q.shape
    dout = validate.array("dout", dout, shape=(n, tq, cache.v.shape[2]), dtype=cache.q.dtype)
    return impl.backward(dout, cache)


def attention_scores(q: Any, k: Any, mask: Any = None, scale: Any = True) -> Any:
    """The scores S = q k^T * s (N, Tq, Tk) the softmax receives, -inf where masked."""
    q, k, _ = _inputs(q, k, None)
    _check_limits(q, k, None)
    mask = _mask(mask, q.shape[0], q.shape[1], k.shape[1])
    s = _scale(scale, q.shape[2])
    return backend.dispatch("attention", q=q, k=k, mask=mask).scores(q, k, mask, s)
