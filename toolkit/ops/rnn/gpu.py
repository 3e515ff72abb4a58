"""The simple RNN as CUDA kernels (rnn.cu, gemm.cuh) on CuPy arrays. Same functions, signatures and cache
type (``RNNCache``) as reference.py and cpu.py; the cache holds CuPy arrays, laid out as the CPU's.

``forward``/``backward`` are the public CuPy path; ``forward_on``/``backward_on`` hold all launch code and
run unchanged on the host harness (NumPy arrays, the kernels compiled for the CPU) in the tests.

Only the recurrence is sequential, so the work is split by what depends on it (as cpu.py does):

* before the time loop, the input projection x_t W_xh + b_h of every step in ONE product over the N*T rows
  (a standard optimisation: it does not depend on h, and one big product keeps the GPU busy where T small
  per-step products would not);
* the loop, on the host: one launch per time step, the recurrent product h_{t-1} W_hh (forward) or
  delta_{t+1} W_hh^T (backward) with the tanh, or the tanh' product, fused in the product's epilogue;
* after the loop, the read-out and every weight gradient as one product each over the N*T rows: the BPTT
  sums over time, sum_t x_t^T delta_t and friends, are the k loop of one dot product per element. That
  is deterministic (a fixed summation order, no float atomics) and does the work of accumulating T per-step
  products into the gradient buffers in one launch. db_h and db_y: two-stage column sums in float64.

The products go through ``matmul_on``, which the LSTM's gpu.py reuses (lstm.cu defines the same kernels
from the same gemm.cuh). Float32 stays float32 except in the column sums (float64 partial sums).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...cuda import launch, modules
from ...cuda.launch import Target
from .reference import RNNCache

OP = "rnn"
GEMM_THREADS = 256  # gemm::kThreads (both tilings)
STEP_TILE = 32  # gemm::StepTiling: 32 x 32 outputs per block in the per-step kernels
WIDE_TILE = 64  # gemm::WideTiling: 64 x 64 outputs per block in matmul ...
TILE_K = 16  # ... and k slices of 16 (split-k ranges are whole slices)
SPLIT_TARGET_ITEMS = 128  # split k until about this many (split, tile) blocks exist (about one per SM) ...
SPLIT_MIN_DEPTH = 128  # ... keeping each split at least 8 slices deep (the tile's fixed costs amortised) ...
MAX_SPLITS = 16  # ... and the workspace pass (splits * m * n reads) small next to the product
SUM_ROWS_PER_CHUNK = 256  # column sums: rows per float64 partial sum ...
SUM_MAX_CHUNKS = 1024  # ... grown for huge N*T so that the final pass adds at most this many per column
SUM_THREADS = 256
SHIFT_THREADS = 256


def _target() -> Target:
    return modules.target(OP)


# --------------------------------------------------------------------------- building blocks (LSTM too)
def split_k(m: int, n: int, k: int) -> tuple[int, int]:
    """(splits, k_per_split) of a product C (m, n) with depth k: from the shapes alone, never the device,
    so results are the same bits on every GPU. A weight gradient (D x H, H x H, ...) sums over all N*T
    rows into a few 64 x 64 tiles; cutting k gives the GPU about SPLIT_TARGET_ITEMS blocks to run."""
    tiles = launch.blocks_for(m, WIDE_TILE) * launch.blocks_for(n, WIDE_TILE)
    splits = min(MAX_SPLITS, launch.blocks_for(SPLIT_TARGET_ITEMS, tiles), k // SPLIT_MIN_DEPTH)
    if splits <= 1:
        return 1, k
    k_per_split = launch.blocks_for(launch.blocks_for(k, splits), TILE_K) * TILE_K
    return launch.blocks_for(k, k_per_split), k_per_split


def matmul_on(target: Target, a: Any, b: Any, m: int, n: int, k: int, *, lda: int, ldb: int,
              a_transposed: bool = False, b_transposed: bool = False, bias: Any | None = None,
              addend: Any | None = None) -> Any:
    """C (m, n) = op(a) op(b) (+ bias over the rows) (+ addend (m, n)), a new C-contiguous array.

    op(a) is (m, k): a's memory holds it row-major with rows ``lda`` apart, or (a_transposed) holds its
    transpose (k, m) with rows ``lda`` apart; likewise b (k, n) with ``ldb``. A leading dimension larger
    than the row length reads one time step of an (N, T, width) array as an (N, width) matrix.
    """
    xp = target.xp
    dtype = a.dtype
    out = xp.empty((m, n), dtype=dtype)
    splits, k_per_split = split_k(m, n, k)
    tiles = launch.blocks_for(m, WIDE_TILE) * launch.blocks_for(n, WIDE_TILE)
    # `a` stands in for a missing bias or addend: the kernels never read it when the flag is 0.
    extras = (a if bias is None else bias, a if addend is None else addend)
    flags = (launch.i32(bias is not None), launch.i32(addend is not None))
    product = out if splits == 1 else xp.empty((splits, m, n), dtype=dtype)
    target.kernel("matmul", dtype)(
        (min(tiles * splits, target.max_grid_blocks),), (GEMM_THREADS,),
        (a, b, *extras, product, launch.i64(m), launch.i64(n), launch.i64(k), launch.i64(lda), launch.i64(ldb),
         launch.i32(a_transposed), launch.i32(b_transposed), launch.i64(k_per_split), launch.i32(splits),
         *(flags if splits == 1 else (launch.i32(0), launch.i32(0)))))
    if splits > 1:
        grid, block = launch.grid_1d(m * n, target)
        target.kernel("matmul_split_sum", dtype)(
            grid, block, (product, *extras, out, launch.i64(m * n), launch.i64(n), launch.i32(splits), *flags))
    return out


def column_sum_chunks(rows: int) -> tuple[int, int]:
    """(rows_per_chunk, chunks) of the first column-sum stage: from the row count alone (deterministic)."""
    rows_per_chunk = max(SUM_ROWS_PER_CHUNK, launch.blocks_for(rows, SUM_MAX_CHUNKS))
    return rows_per_chunk, launch.blocks_for(rows, rows_per_chunk)


def column_sums_on(target: Target, x: Any) -> Any:
    """The sum over the rows of x (rows, cols) -> (cols,): float64 partial sums added in a fixed order."""
    xp = target.xp
    rows, cols = x.shape
    rows_per_chunk, chunks = column_sum_chunks(rows)
    partial = xp.empty((chunks, cols), dtype=np.float64)
    items = chunks * launch.blocks_for(cols, launch.WARP_SIZE)
    target.kernel("column_sums_partial", x.dtype)(
        (min(items, target.max_grid_blocks),), (SUM_THREADS,),
        (x, partial, launch.i64(rows), launch.i64(cols), launch.i64(rows_per_chunk)))
    sums = xp.empty((cols,), dtype=x.dtype)
    grid, block = launch.grid_1d(cols, target)
    target.kernel("column_sums_finish", x.dtype)(grid, block, (partial, sums, launch.i64(chunks), launch.i64(cols)))
    return sums


def shift_states_on(target: Target, initial: Any, states: Any) -> Any:
    """previous (N, T, W): previous[:, 0] = initial (N, W), previous[:, t] = states[:, t - 1]."""
    N, T, width = states.shape
    previous = target.xp.empty_like(states)
    grid, block = launch.grid_1d(states.size, target, SHIFT_THREADS)
    target.kernel("shift_states", states.dtype)(
        grid, block, (initial, states, previous, launch.i64(N), launch.i64(T), launch.i64(width)))
    return previous


def step_grid(target: Target, rows: int, cols: int, cols_per_tile: int = STEP_TILE) -> tuple[tuple[int], tuple[int]]:
    """(grid, block) of a per-step kernel over a (rows, cols) output in StepTiling tiles, grid-strided."""
    tiles = launch.blocks_for(rows, STEP_TILE) * launch.blocks_for(cols, cols_per_tile)
    return (min(tiles, target.max_grid_blocks),), (GEMM_THREADS,)


# --------------------------------------------------------------------------- the layer
def forward_on(target: Target, x: Any, h0: Any, W_xh: Any, W_hh: Any, b_h: Any, W_hy: Any | None = None,
               b_y: Any | None = None) -> tuple[Any | None, Any, RNNCache]:
    """forward, with the kernels and arrays of ``target`` (CuPy, or the host harness)."""
    N, T, D = x.shape
    H = W_hh.shape[0]
    dims = (launch.i64(N), launch.i64(T), launch.i64(H))
    xw = matmul_on(target, x, W_xh, N * T, H, D, lda=D, ldb=H, bias=b_h)  # (N*T, H) = (N, T, H) in memory
    h = target.xp.empty((N, T, H), dtype=x.dtype)
    step = target.kernel("rnn_step_forward", x.dtype)
    grid, block = step_grid(target, N, H)
    for t in range(T):  # each launch reads h[:, t - 1], written by the previous one (same stream: in order)
        step(grid, block, (xw, W_hh, h0, h, *dims, launch.i64(t)))
    y = None
    if W_hy is not None:
        O = W_hy.shape[1]
        y = matmul_on(target, h, W_hy, N * T, O, H, lda=H, ldb=O, bias=b_y).reshape(N, T, O)
    return y, h, RNNCache(x, h0, W_xh, W_hh, b_h, W_hy, b_y, h)


def backward_on(target: Target, dy: Any | None, dh: Any | None, cache: RNNCache):
    """backward, with the kernels and arrays of ``target``; returns (dx, dh0, dW_xh, dW_hh, db_h, dW_hy, db_y)."""
    xp = target.xp
    x, h0, W_xh, W_hh, _, W_hy, b_y, h = cache
    N, T, D = x.shape
    H = W_hh.shape[0]
    rows = N * T
    direct = dh  # dL/dh_t from outside the recurrence: dh, plus dy W_hy^T when there is a read-out
    dW_hy = db_y = None
    if W_hy is not None:
        O = W_hy.shape[1]
        if dy is None:
            dW_hy = xp.zeros_like(W_hy)
            db_y = None if b_y is None else xp.zeros_like(b_y)
        else:
            direct = matmul_on(target, dy, W_hy, rows, H, O, lda=O, ldb=O, b_transposed=True, addend=dh)
            dW_hy = matmul_on(target, h, dy, H, O, rows, lda=H, ldb=O, a_transposed=True)
            db_y = None if b_y is None else column_sums_on(target, dy.reshape(rows, O))
    if direct is None:  # neither dh nor a read-out gradient (rnn_backward refuses that; reference.py gives 0)
        direct = xp.zeros_like(h)
    delta = xp.empty((N, T, H), dtype=x.dtype)  # dL/da_t for every step
    step = target.kernel("rnn_step_backward", x.dtype)
    grid, block = step_grid(target, N, H)
    for t in reversed(range(T)):  # each launch reads delta[:, t + 1], written by the previous one
        step(grid, block, (direct, W_hh, h, delta, launch.i64(N), launch.i64(T), launch.i64(H), launch.i64(t)))
    dh0 = matmul_on(target, delta, W_hh, N, H, H, lda=T * H, ldb=H, b_transposed=True)  # delta_1 W_hh^T
    h_prev = shift_states_on(target, h0, h)
    dx = matmul_on(target, delta, W_xh, rows, D, H, lda=H, ldb=H, b_transposed=True).reshape(N, T, D)
    dW_xh = matmul_on(target, x, delta, D, H, rows, lda=D, ldb=H, a_transposed=True)
    dW_hh = matmul_on(target, h_prev, delta, H, H, rows, lda=H, ldb=H, a_transposed=True)
    db_h = column_sums_on(target, delta.reshape(rows, H))
    return dx, dh0, dW_xh, dW_hh, db_h, dW_hy, db_y


def forward(x: Any, h0: Any, W_xh: Any, W_hh: Any, b_h: Any, W_hy: Any | None = None, b_y: Any | None = None):
    return forward_on(_target(), x, h0, W_xh, W_hh, b_h, W_hy, b_y)


def backward(dy: Any | None, dh: Any | None, cache: RNNCache):
    return backward_on(_target(), dy, dh, cache)
