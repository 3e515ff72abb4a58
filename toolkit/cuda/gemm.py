"""Launchers of gemm.cuh's kernels (the tiled products of the recurrent layers), shared by rnn/gpu.py and
lstm/gpu.py, whose .cu files include gemm.cuh (and with it reduce.cuh).

* ``matmul_on``: C (m, n) = op(a) op(b) (+ bias) (+ addend) over whole matrices, operands read in place
  (a transpose by a flag, one time step of an (N, T, width) array by a leading dimension), split-k when C
  has few tiles but k is deep (the weight gradients, summed over all N*T rows);
* ``shift_states_on``: h_{t-1} lined up with step t, so that sum_t h_{t-1}^T delta_t is one product;
* ``recurrent_gradients_on``: every gradient a recurrent backward computes after its time loop;
* ``step_grid``: the launch of an op's own per-step kernel over StepTiling tiles.

The constants mirror gemm.cuh's (``gemm::StepTiling``, ``gemm::WideTiling``, ``gemm::kThreads``).
"""

from __future__ import annotations

from typing import Any

from . import launch, reduce
from .launch import Target

GEMM_THREADS = 256  # gemm::kThreads (both tilings)
STEP_TILE = 32  # gemm::StepTiling: 32 x 32 outputs per block in the per-step kernels
WIDE_TILE = 64  # gemm::WideTiling: 64 x 64 outputs per block in matmul ...
TILE_K = 16  # ... and k slices of 16 (split-k ranges are whole slices)
SPLIT_TARGET_ITEMS = 128  # split k until about this many (split, tile) blocks exist (about one per SM) ...
SPLIT_MIN_DEPTH = 128  # ... keeping each split at least 8 slices deep (the tile's fixed costs amortised) ...
MAX_SPLITS = 16  # ... and the workspace pass (splits * m * n reads) small next to the product
SHIFT_THREADS = 256


def split_k(m: int, n: int, k: int) -> tuple[int, int]:
    """(splits, k_per_split) of a product C (m, n) with depth k: from the shapes alone, never the device,
    so results are the same bits on every GPU. A weight gradient (D x H, H x H, ...) sums over all N*T
    rows into a few 64 x 64 tiles; cutting k gives the GPU about SPLIT_TARGET_ITEMS blocks to run."""
    tiles = launch.blocks_for(m, WIDE_TILE) * launch.blocks_for(n, WIDE_TILE)
    return reduce.split_reduction(tiles, k, step=TILE_K, target_items=SPLIT_TARGET_ITEMS,
                                  min_depth=SPLIT_MIN_DEPTH, max_splits=MAX_SPLITS)


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
    # `a` stands in for a missing bias or addend: the kernel never reads it when the flag is 0. With split-k
    # both are added once, by the slice sum.
    extras = (a if bias is None else bias, a if addend is None else addend)
    flags = (launch.i32(bias is not None), launch.i32(addend is not None))
    product = out if splits == 1 else xp.empty((splits, m, n), dtype=dtype)
    target.kernel("matmul", dtype)(
        (min(tiles * splits, target.max_grid_blocks),), (GEMM_THREADS,),
        (a, b, *extras, product, launch.i64(m), launch.i64(n), launch.i64(k), launch.i64(lda), launch.i64(ldb),
         launch.i32(a_transposed), launch.i32(b_transposed), launch.i64(k_per_split), launch.i32(splits),
         *(flags if splits == 1 else (launch.i32(0), launch.i32(0)))))
    if splits > 1:
        reduce.sum_slices_on(target, product, out, bias=bias, addend=addend)
    return out


def shift_states_on(target: Target, initial: Any, states: Any) -> Any:
    """previous (N, T, W): previous[:, 0] = initial (N, W), previous[:, t] = states[:, t - 1]."""
    N, T, width = states.shape
    previous = target.xp.empty_like(states)
    grid, block = launch.grid_1d(states.size, target, SHIFT_THREADS)
    target.kernel("shift_states", states.dtype)(
        grid, block, (initial, states, previous, launch.i64(N), launch.i64(T), launch.i64(width)))
    return previous


def recurrent_gradients_on(target: Target, x: Any, h0: Any, h: Any, delta: Any, w_input: Any,
                           w_recurrent: Any) -> tuple[Any, Any, Any, Any, Any]:
    """What a recurrent layer's backward computes after its time loop: (dx, dh0, dW, dU, db).

    The layer's pre-activations are z_t = x_t W + h_{t-1} U + b (RNN: width H; LSTM: the four gates, 4H),
    and delta (N, T, width) holds dL/dz_t of every step. Then dx = delta W^T, dh0 = delta_0 U^T, and the
    sums over time dW = sum_t x_t^T delta_t, dU = sum_t h_{t-1}^T delta_t, db = sum_t sum_n delta_t are one
    product (or column sum) each over the N*T rows: one deterministic dot product per element.
    """
    N, T, D = x.shape
    H = h.shape[2]
    width = delta.shape[2]
    rows = N * T
    dh0 = matmul_on(target, delta, w_recurrent, N, H, width, lda=T * width, ldb=width, b_transposed=True)
    h_prev = shift_states_on(target, h0, h)
    dx = matmul_on(target, delta, w_input, rows, D, width, lda=width, ldb=width, b_transposed=True).reshape(N, T, D)
    dW = matmul_on(target, x, delta, D, width, rows, lda=D, ldb=width, a_transposed=True)
    dU = matmul_on(target, h_prev, delta, H, width, rows, lda=H, ldb=width, a_transposed=True)
    db = reduce.column_sums_on(target, delta.reshape(rows, width))
    return dx, dh0, dW, dU, db


def step_grid(target: Target, rows: int, cols: int, cols_per_tile: int = STEP_TILE) -> tuple[tuple[int], tuple[int]]:
    """(grid, block) of a per-step kernel over a (rows, cols) output in StepTiling tiles, grid-strided."""
    tiles = launch.blocks_for(rows, STEP_TILE) * launch.blocks_for(cols, cols_per_tile)
    return (min(tiles, target.max_grid_blocks),), (GEMM_THREADS,)
