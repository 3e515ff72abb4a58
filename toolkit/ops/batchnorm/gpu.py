"""Batch normalisation as CUDA kernels (batchnorm.cu) on CuPy arrays. Same functions, signatures and cache
as reference.py and cpu.py; the cache holds CuPy arrays, so a GPU forward feeds a GPU backward.

``forward``/``backward``/``statistics`` are the public CuPy path; the ``*_on`` functions hold all launch
code and run unchanged on the host harness (NumPy arrays, the kernels compiled for the CPU) in the tests.

x is viewed as a (rows, features) matrix. Per-feature sums are deterministic two-stage column reductions
(no atomics): stage 1 cuts the rows into chunks and writes one float64 partial sum per (chunk, feature),
stage 2 adds the chunks in a fixed order. ``layout`` picks the chunks from the shape only (never from the
device), so the results have the same bits on every GPU and for any grid size. The statistics are
two-pass as in cpu.py (sum x, then sum (x - mean)^2 around the float64 mean) and accumulate in float64
for float32 inputs too; everything elementwise runs in the input dtype.

Training forward: 5 launches (sums, means, sums of squares, variances + running-stat update + the
cache's per-feature values, normalise). Backward: 4 (sums of dy and dy * x_hat, totals, per-feature
factors, input gradient).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ...cuda import launch, modules
from ...cuda.launch import Target
from .reference import BatchNormCache

OP = "batchnorm"
REDUCE_THREADS = 256  # threads of a reduction block, bn::kThreads in batchnorm.cu
TARGET_TILES = 1024  # stage-1 tiles to aim for: several resident 256-thread blocks on every SM of a big GPU
MIN_ROWS_PER_THREAD = 4  # each stage-1 thread sums at least this many rows: amortises the partial write


class Layout(NamedTuple):
    """How a (rows, features) column reduction is cut: a tile is `width` features x `chunk_rows` rows,
    taken by a block of (width, REDUCE_THREADS // width) threads."""

    width: int  # features per tile: the next power of two >= features, at most a warp (32)
    chunk_rows: int  # rows per chunk: a multiple of the block's row groups
    chunks: int  # ceil(rows / chunk_rows): rows of the partial-sum array
    column_tiles: int  # ceil(features / width)

    @property
    def block(self) -> tuple[int, int]:
        return self.width, REDUCE_THREADS // self.width


def layout(rows: int, features: int) -> Layout:
    """The reduction layout of a (rows, features) matrix, from the shape only (so sums are reproducible).

    Narrow matrices (features < 32) put several rows in one warp, so a warp still reads contiguous
    memory; enough chunks are made for about TARGET_TILES blocks, each thread summing at least
    MIN_ROWS_PER_THREAD rows."""
    width = min(launch.WARP_SIZE, 1 << (int(features) - 1).bit_length())
    groups = REDUCE_THREADS // width
    column_tiles = launch.blocks_for(features, width)
    chunks_wanted = launch.blocks_for(TARGET_TILES, column_tiles)
    per_thread = max(MIN_ROWS_PER_THREAD, launch.blocks_for(rows, groups * chunks_wanted))
    chunk_rows = groups * per_thread
    return Layout(width, chunk_rows, launch.blocks_for(rows, chunk_rows), column_tiles)


def _target() -> Target:
    return modules.target(OP)


def _grid(blocks: int, target: Target) -> tuple[int]:
    return (min(max(1, int(blocks)), target.max_grid_blocks),)


def _column_sums(target: Target, a: Any, lay: Layout, center: Any, square: bool, out: Any) -> None:
    """out[c] = mean over rows of a[:, c] (square False) or of (a[:, c] - center[c])^2 (square True), float64."""
    rows, features = a.shape
    partial = target.xp.empty((lay.chunks, features), dtype=np.float64)
    target.kernel("batchnorm_column_sums", a.dtype)(
        _grid(lay.chunks * lay.column_tiles, target), lay.block,
        (a, center, partial, launch.i64(rows), launch.i64(features), launch.i64(lay.chunk_rows), launch.i32(square)))
    target.kernel("batchnorm_column_totals", a.dtype)(
        _grid(lay.column_tiles, target), lay.block,
        (partial, out, launch.i64(lay.chunks), launch.i64(features), launch.i64(rows), launch.i32(1)))


def statistics_on(target: Target, x2: Any) -> tuple[Any, Any]:
    """statistics, with the kernels and arrays of ``target``."""
    xp = target.xp
    features = x2.shape[1]
    lay = layout(*x2.shape)
    mean = xp.empty((features,), dtype=np.float64)
    var = xp.empty((features,), dtype=np.float64)
    _column_sums(target, x2, lay, mean, False, mean)  # pass one: center not read
    _column_sums(target, x2, lay, mean, True, var)  # pass two: around the float64 mean
    return mean, var


def forward_on(target: Target, x: Any, gamma: Any, beta: Any, running_mean: Any, running_var: Any, training: bool,
               momentum: float, eps: float) -> tuple[Any, BatchNormCache]:
    """forward, with the kernels and arrays of ``target`` (CuPy, or the host harness)."""
    xp = target.xp
    dtype = x.dtype
    c = x.shape[-1]
    x2 = x.reshape(-1, c)
    mean, var, inv_std, gamma_copy = (xp.empty((c,), dtype=dtype) for _ in range(4))
    grid_c, block_c = launch.grid_1d(c, target)
    if training:
        mean64, var64 = statistics_on(target, x2)
        target.kernel("batchnorm_batch_statistics", dtype)(
            grid_c, block_c, (mean64, var64, gamma, running_mean, running_var, mean, var, inv_std, gamma_copy,
                              launch.i64(c), launch.scalar(momentum, np.float64), launch.scalar(eps, np.float64)))
    else:
        target.kernel("batchnorm_running_statistics", dtype)(
            grid_c, block_c, (running_mean, running_var, gamma, mean, var, inv_std, gamma_copy, launch.i64(c),
                              launch.scalar(eps, np.float64)))
    x_hat = xp.empty_like(x)
    y = xp.empty_like(x)
    grid, block = launch.grid_1d(x.size, target)
    target.kernel("batchnorm_normalize", dtype)(
        grid, block, (x, mean, inv_std, gamma, beta, x_hat, y, launch.i64(x.size), launch.i64(c)))
    return y, BatchNormCache(x_hat, gamma_copy, mean, var, inv_std, bool(training))


def backward_on(target: Target, dy: Any, cache: BatchNormCache) -> tuple[Any, Any, Any]:
    """backward, with the kernels and arrays of ``target``."""
    xp = target.xp
    x_hat, gamma, _, _, inv_std, training = cache
    dtype = x_hat.dtype
    c = x_hat.shape[-1]
    rows = x_hat.size // c
    lay = layout(rows, c)
    partial = xp.empty((2, lay.chunks, c), dtype=np.float64)  # [0]: dy, [1]: dy * x_hat
    sums = xp.empty((2, c), dtype=np.float64)
    target.kernel("batchnorm_gradient_sums", dtype)(
        _grid(lay.chunks * lay.column_tiles, target), lay.block,
        (dy, x_hat, partial, launch.i64(rows), launch.i64(c), launch.i64(lay.chunk_rows)))
    target.kernel("batchnorm_column_totals", dtype)(
        _grid(2 * lay.column_tiles, target), lay.block,
        (partial, sums, launch.i64(lay.chunks), launch.i64(c), launch.i64(1), launch.i32(2)))
    dgamma, dbeta, scale, mean_dy, mean_dy_xhat = (xp.empty((c,), dtype=dtype) for _ in range(5))
    grid_c, block_c = launch.grid_1d(c, target)
    target.kernel("batchnorm_gradient_factors", dtype)(
        grid_c, block_c, (sums, gamma, inv_std, dgamma, dbeta, scale, mean_dy, mean_dy_xhat, launch.i64(c),
                          launch.i64(rows)))
    dx = xp.empty_like(dy)
    grid, block = launch.grid_1d(dy.size, target)
    target.kernel("batchnorm_input_gradient", dtype)(
        grid, block, (dy, x_hat, scale, mean_dy, mean_dy_xhat, dx, launch.i64(dy.size), launch.i64(c),
                      launch.i32(bool(training))))
    return dx, dgamma, dbeta


def statistics(x2: Any) -> tuple[Any, Any]:
    """Per-column mean and biased variance of a (M, C) CuPy matrix, in float64, two passes."""
    return statistics_on(_target(), x2)


def forward(x: Any, gamma: Any, beta: Any, running_mean: Any, running_var: Any, training: bool, momentum: float,
            eps: float) -> tuple[Any, BatchNormCache]:
    return forward_on(_target(), x, gamma, beta, running_mean, running_var, training, momentum, eps)


def backward(dy: Any, cache: BatchNormCache) -> tuple[Any, Any, Any]:
    return backward_on(_target(), dy, cache)
