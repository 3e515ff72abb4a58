"""Scaled dot-product attention as fused CUDA kernels (attention.cu) on CuPy arrays. Same functions,
signatures and cache type (``AttentionCache``) as reference.py and cpu.py.

``forward``/``backward``/``scores`` are the public CuPy path; ``forward_on``/``backward_on``/``scores_on``
hold all launch code and run unchanged on the host harness (NumPy arrays, the kernels compiled for the
CPU) in the tests.

Flash-attention style: the forward never writes the (N, Tq, Tk) scores or weights to global memory. It
keeps, per query row, the softmax statistics m (the row max of the allowed scores) and l (the sum of
exp(score - m)), so memory is linear in the sequence length; the backward recomputes the weights
W_ij = exp(S_ij - m_i) / l_i tile by tile from them. Deterministic: every output element is summed by
one thread in a fixed order (dk and dv by key tiles, dq by query tiles: no atomics).

The cache's weights (a choice, documented here and in ``DeferredWeights``): ``cache.weights`` is a
``DeferredWeights``, not an array. It holds what the fused forward saved (m, l and the output) and
computes the (N, Tq, Tk) weights with a separate kernel the first time a learner asks for them:

    out, cache = attention_forward(q, k, v)        # CuPy arrays: linear memory
    w = cache.weights.materialize()                # CuPy array (N, Tq, Tk), computed once, then kept
    w = cupy.asarray(cache.weights)                # the same array (__cuda_array_interface__)
    w = np.asarray(cache.weights)                  # a NumPy copy (also cache.weights.get())
    cache.weights[0, 3]                            # indexing materialises too

Everything else in the cache (q, k, v, mask, scale) is what cpu.py keeps.

Limits: d and dv up to ``MAX_FEATURES`` (256). Larger feature sizes would work (the kernels loop over
64-wide feature chunks) but each extra chunk recomputes q k^T, so the cost grows as d^2: a ValueError
says so before any launch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ... import backend
from ...cuda import launch, modules
from ...cuda.launch import Target
from .reference import AttentionCache

OP = "attention"
TILE = 64  # attn::kTile: queries, keys and output features per block tile
THREADS = 256  # attn::kThreads
MAX_FEATURES = 256  # d and dv; see the module docstring
ROW_DOT_THREADS = 256  # attention_row_dot: 8 warps, one row each
MASK_MODE = {"none": 0, "shared": 1, "per_batch": 2}  # attn::MaskMode


def _target() -> Target:
    return modules.target(OP)


def _tiles(extent: int) -> int:
    return launch.blocks_for(extent, TILE)


def check_features(d: int, dv: int) -> None:
    """The GPU kernels' feature limit, checked before any launch."""
    for name, size, what in (("d", d, "q and k"), ("dv", dv, "v")):
        if size > MAX_FEATURES:
            raise ValueError(
                f"{what} must have at most {name}={MAX_FEATURES} features on the GPU (each 64-wide chunk past "
                f"the first recomputes q k^T); got {name}={size}; use the CPU backend for wider features")


def _mask_args(xp: Any, mask: Any | None, batch: int) -> tuple[Any, np.int32]:
    """(mask array, mode) for the kernels; a 1-element dummy that is never read stands in for None."""
    if mask is None:
        return xp.zeros((1,), dtype=np.bool_), launch.i32(MASK_MODE["none"])
    mode = "per_batch" if mask.shape[0] == batch and batch > 1 else "shared"
    return mask, launch.i32(MASK_MODE[mode])


def _grid(items: int, target: Target) -> tuple[tuple[int], tuple[int]]:
    return (min(max(1, items), target.max_grid_blocks),), (THREADS,)


class DeferredWeights:
    """``cache.weights`` of a GPU forward: the (N, Tq, Tk) attention weights, computed when first asked for.

    The fused forward never writes the Tq x Tk weights (its memory stays linear in the sequence length).
    It keeps each query row's softmax statistics, ``row_max`` m_i and ``row_sum`` l_i (N, Tq), from which
    any weight is W_ij = exp(s q_i . k_j - m_i) / l_i (0 where masked), and its output ``out`` (the
    backward needs rowsum(dout * out)). ``materialize()`` runs one kernel that writes the whole array,
    then keeps it; ``np.asarray(w)`` / ``w.get()`` copy it to the host, ``cupy.asarray(w)`` gives it
    without a copy, ``w[index]`` indexes it. ``shape``, ``dtype``, ``ndim`` and ``size`` need no kernel.
    """

    def __init__(self, target: Target, q: Any, k: Any, mask: Any | None, scale: float, row_max: Any,
                 row_sum: Any, out: Any):
        self.target, self.q, self.k, self.mask, self.scale = target, q, k, mask, scale
        self.row_max, self.row_sum, self.out = row_max, row_sum, out
        self._array: Any = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.q.shape[0], self.q.shape[1], self.k.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return self.q.dtype

    @property
    def ndim(self) -> int:
        return 3

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def materialized(self) -> bool:
        return self._array is not None

    def materialize(self) -> Any:
        """The (N, Tq, Tk) weights as an array of the forward's device (one kernel, on first call only)."""
        if self._array is None:
            self._array = _tile_scores_on(self.target, self.q, self.k, self.mask, self.scale,
                                          stats=(self.row_max, self.row_sum))
        return self._array

    def get(self) -> np.ndarray:
        """The weights as a NumPy array (copied from the GPU)."""
        return backend.to_numpy(self.materialize())

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self.get()
        return a if dtype is None else a.astype(dtype)

    @property
    def __cuda_array_interface__(self) -> dict:
        # AttributeError (so hasattr is False) when the weights live in host memory (the host harness)
        return self.materialize().__cuda_array_interface__

    def __getitem__(self, index: Any) -> Any:
        return self.materialize()[index]

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        state = "materialized" if self.materialized else "not computed yet: .materialize()"
        return f"DeferredWeights(shape={self.shape}, dtype={self.dtype}, {state})"


def _tile_scores_on(target: Target, q: Any, k: Any, mask: Any | None, scale: float,
                    stats: tuple[Any, Any] | None) -> Any:
    """The (N, Tq, Tk) scores (stats None: -inf where masked) or weights (stats = (row_max, row_sum))."""
    xp = target.xp
    dtype = q.dtype
    batch, tq, d = q.shape
    tk = k.shape[1]
    out = xp.empty((batch, tq, tk), dtype=dtype)
    mask_arr, mode = _mask_args(xp, mask, batch)
    row_max, row_sum = stats if stats is not None else (q, q)  # never read when weights == 0
    grid, block = _grid(batch * _tiles(tq) * _tiles(tk), target)
    target.kernel("attention_tile_scores", dtype)(
        grid, block, (q, k, mask_arr, row_max, row_sum, out, launch.i64(batch), launch.i64(tq), launch.i64(tk),
                      launch.i32(d), mode, launch.scalar(scale, dtype), launch.i32(stats is not None)))
    return out


def scores_on(target: Target, q: Any, k: Any, mask: Any | None, scale: float) -> Any:
    """scores, with the kernels and arrays of ``target`` (any d: one product, no feature chunks)."""
    return _tile_scores_on(target, q, k, mask, scale, stats=None)


def forward_on(target: Target, q: Any, k: Any, v: Any, mask: Any | None,
               scale: float) -> tuple[Any, AttentionCache]:
    """forward, with the kernels and arrays of ``target`` (CuPy, or the host harness)."""
    xp = target.xp
    dtype = q.dtype
    batch, tq, d = q.shape
    tk, dv = v.shape[1], v.shape[2]
    check_features(d, dv)
    out = xp.empty((batch, tq, dv), dtype=dtype)
    row_max = xp.empty((batch, tq), dtype=dtype)
    row_sum = xp.empty((batch, tq), dtype=dtype)
    mask_arr, mode = _mask_args(xp, mask, batch)
    grid, block = _grid(batch * _tiles(tq) * _tiles(dv), target)
    target.kernel("attention_forward", dtype)(
        grid, block, (q, k, v, mask_arr, out, row_max, row_sum, launch.i64(batch), launch.i64(tq), launch.i64(tk),
                      launch.i32(d), launch.i32(dv), mode, launch.scalar(scale, dtype)))
    weights = DeferredWeights(target, q, k, mask, float(scale), row_max, row_sum, out)
    return out, AttentionCache(q, k, v, mask, weights, float(scale))


def backward_on(target: Target, dout: Any, cache: AttentionCache) -> tuple[Any, Any, Any]:
    """backward, with the kernels and arrays of ``target``."""
    q, k, v, mask, weights, scale = cache
    if not isinstance(weights, DeferredWeights):
        raise TypeError(f"cache.weights must be the DeferredWeights of a GPU attention_forward; got "
                        f"{type(weights).__name__} (was the cache made on the CPU?)")
    xp = target.xp
    dtype = q.dtype
    batch, tq, d = q.shape
    tk, dv = v.shape[1], v.shape[2]
    check_features(d, dv)
    # D_i = rowsum(dout_i * out_i) = sum_j dW_ij W_ij (the softmax backward's row term)
    delta = xp.empty((batch, tq), dtype=dtype)
    rows = batch * tq
    target.kernel("attention_row_dot", dtype)(
        (min(launch.blocks_for(rows * launch.WARP_SIZE, ROW_DOT_THREADS), target.max_grid_blocks),),
        (ROW_DOT_THREADS,), (dout, weights.out, delta, launch.i64(rows), launch.i64(dv)))
    mask_arr, mode = _mask_args(xp, mask, batch)
    s = launch.scalar(scale, dtype)
    sizes = (launch.i64(batch), launch.i64(tq), launch.i64(tk), launch.i32(d), launch.i32(dv), mode, s)
    dq, dk, dv_ = xp.empty_like(q), xp.empty_like(k), xp.empty_like(v)
    grid, block = _grid(batch * _tiles(tk) * _tiles(max(d, dv)), target)
    target.kernel("attention_backward_keys", dtype)(
        grid, block, (q, k, v, mask_arr, dout, weights.row_max, weights.row_sum, delta, dk, dv_, *sizes))
    grid, block = _grid(batch * _tiles(tq) * _tiles(d), target)
    target.kernel("attention_backward_queries", dtype)(
        grid, block, (q, k, v, mask_arr, dout, weights.row_max, weights.row_sum, delta, dq, *sizes))
    return dq, dk, dv_


def scores(q: Any, k: Any, mask: Any | None, scale: float) -> Any:
    return scores_on(_target(), q, k, mask, scale)


def forward(q: Any, k: Any, v: Any, mask: Any | None, scale: float) -> tuple[Any, AttentionCache]:
    return forward_on(_target(), q, k, v, mask, scale)


def backward(dout: Any, cache: AttentionCache) -> tuple[Any, Any, Any]:
    return backward_on(_target(), dout, cache)
