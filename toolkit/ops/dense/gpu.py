"""Dense layer as CUDA kernels (dense.cu) on CuPy arrays. Same signatures and cache as reference.py and cpu.py.

``forward``/``backward`` are the public CuPy path; ``forward_on``/``backward_on`` hold all launch code and
run unchanged on the host harness (NumPy arrays, the kernels compiled for the CPU) in the tests.

All three products go through one tiled GEMM kernel, C = A B (+ bias), which reads a transposed operand
in place (a flag), so nothing is transposed in memory:

    y  = x W + b     A = x (N, in),          B = W (in, out)
    dx = dy W^T      A = dy (N, out),        B = W^T, read from W's storage     (b_transposed)
    dW = x^T dy      A = x^T, from x's storage (a_transposed),  B = dy (N, out)

db is a column sum of dy in two deterministic stages (per-chunk partial sums in float64, then the chunks
added in order; toolkit/cuda/reduce.py): no atomics, the same bits whatever the grid size.

Split-k: when C has few 128 x 128 tiles but k is deep (a 256 x 1024 -> 1024 layer has only 16 output
tiles for a GPU of 100+ SMs; dW of a small layer over a large batch has one or two), the k range is cut
into ``splits`` slices computed by separate blocks into a workspace and summed in a fixed order
(reduce.sum_slices_on). The split depends on the shapes only, never on the device, so results do not vary
between GPUs.
"""

from __future__ import annotations

from typing import Any

from ...cuda import launch, modules, reduce
from ...cuda.launch import Target
from .reference import DenseCache

OP = "dense"
TILE = 128  # dense::kTile: rows and columns of C per block
TILE_K = 8  # dense::kTileK: the k step; split-k slices are whole steps
GEMM_THREADS = 256  # dense::kThreads: 16 x 16 threads, 8 x 8 outputs each
SPLIT_TARGET_ITEMS = 128  # split k until about this many (split, tile) work items exist (about one per SM) ...
SPLIT_MIN_DEPTH = 128  # ... keeping each slice at least 16 k steps deep (the tile's fixed costs amortised)
MAX_SPLITS = 16  # the slice sum reads splits * m * n elements: keep that pass small next to the product


def _target() -> Target:
    return modules.target(OP)


def _tiles(m: int, n: int) -> int:
    return launch.blocks_for(m, TILE) * launch.blocks_for(n, TILE)


def split_k(m: int, n: int, k: int) -> tuple[int, int]:
    """(splits, k_per_split) for C (m, n) = A (m, k) B (k, n): from the shapes alone (deterministic)."""
    return reduce.split_reduction(_tiles(m, n), k, step=TILE_K, target_items=SPLIT_TARGET_ITEMS,
                                  min_depth=SPLIT_MIN_DEPTH, max_splits=MAX_SPLITS)


def gemm_on(target: Target, a: Any, b: Any, bias: Any | None, *, a_transposed: bool = False,
            b_transposed: bool = False) -> Any:
    """C = op(a) op(b) (+ bias), op = transpose where flagged (read in place); C-contiguous operands."""
    xp = target.xp
    dtype = a.dtype
    m, k = (a.shape[1], a.shape[0]) if a_transposed else a.shape
    n = b.shape[0] if b_transposed else b.shape[1]
    out = xp.empty((m, n), dtype=dtype)
    splits, k_per_split = split_k(m, n, k)
    has_bias = bias is not None
    gemm = target.kernel("gemm", dtype)
    grid = (min(_tiles(m, n) * splits, target.max_grid_blocks),)
    flags = (launch.i32(a_transposed), launch.i32(b_transposed))
    if splits == 1:
        # `a` stands in for a missing bias: the kernel never reads it when has_bias is 0.
        gemm(grid, (GEMM_THREADS,), (a, b, bias if has_bias else a, out, launch.i64(m), launch.i64(n),
                                     launch.i64(k), launch.i64(k), launch.i32(1), *flags, launch.i32(has_bias)))
        return out
    partial = xp.empty((splits, m, n), dtype=dtype)
    gemm(grid, (GEMM_THREADS,), (a, b, a, partial, launch.i64(m), launch.i64(n), launch.i64(k),
                                 launch.i64(k_per_split), launch.i32(splits), *flags, launch.i32(0)))
    return reduce.sum_slices_on(target, partial, out, bias=bias)


def forward_on(target: Target, x: Any, W: Any, b: Any | None) -> tuple[Any, DenseCache]:
    """forward, with the kernels and arrays of ``target`` (CuPy, or the host harness)."""
    return gemm_on(target, x, W, b), DenseCache(x, W, b is not None)


def backward_on(target: Target, dy: Any, cache: DenseCache,
                need_dx: bool = True) -> tuple[Any | None, Any, Any | None]:
    """backward, with the kernels and arrays of ``target``; need_dx=False launches no dx GEMM (dx None)."""
    x, W, has_bias = cache
    dx = gemm_on(target, dy, W, None, b_transposed=True) if need_dx else None
    dW = gemm_on(target, x, dy, None, a_transposed=True)
    return dx, dW, reduce.column_sums_on(target, dy) if has_bias else None


def forward(x: Any, W: Any, b: Any | None) -> tuple[Any, DenseCache]:
    return forward_on(_target(), x, W, b)


def backward(dy: Any, cache: DenseCache, need_dx: bool = True) -> tuple[Any | None, Any, Any | None]:
    return backward_on(_target(), dy, cache, need_dx)
