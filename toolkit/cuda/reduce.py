"""Launchers of reduce.cuh's kernels, shared by the ops whose .cu includes it (dense, conv2d, rnn, lstm).

* ``column_sums_on``: the sum over the rows of a (rows, cols) matrix in two deterministic stages, float64
  partial sums per chunk of rows, then the chunks added in order (every bias gradient);
* ``sum_slices_on``: the second pass of a split-k product, the slices added in order (+ bias, + addend);
* ``split_reduction``: how many slices a product with few output tiles but a deep reduction is cut into.

Every choice depends on the shapes only, never on the device or the grid, so the summation order, hence
every result, is the same bits on every run and every GPU. No atomics.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import launch
from .launch import Target

SUM_ROWS_PER_CHUNK = 256  # column sums: rows per float64 partial sum (as cpu.py's blocks of 256 rows) ...
SUM_MAX_CHUNKS = 1024  # ... grown for huge row counts, so that the final pass adds at most this many per column
SUM_THREADS = 256  # column_sums_partial: 8 warps, each taking every 8th row of a chunk


def column_sum_chunks(rows: int) -> tuple[int, int]:
    """(rows_per_chunk, chunks) of the first column-sum stage: from the row count alone (deterministic)."""
    rows_per_chunk = max(SUM_ROWS_PER_CHUNK, launch.blocks_for(rows, SUM_MAX_CHUNKS))
    return rows_per_chunk, launch.blocks_for(rows, rows_per_chunk)


def column_sums_on(target: Target, x: Any) -> Any:
    """The sum over the rows of x (rows, cols) -> (cols,) in x's dtype, accumulated in float64."""
    xp = target.xp
    rows, cols = x.shape
    rows_per_chunk, chunks = column_sum_chunks(rows)
    partial = xp.empty((chunks, cols), dtype=np.float64)
    items = chunks * launch.blocks_for(cols, launch.WARP_SIZE)  # (chunk, 32 columns) per work item
    target.kernel("column_sums_partial", x.dtype)(
        (min(items, target.max_grid_blocks),), (SUM_THREADS,),
        (x, partial, launch.i64(rows), launch.i64(cols), launch.i64(rows_per_chunk)))
    sums = xp.empty((cols,), dtype=x.dtype)
    grid, block = launch.grid_1d(cols, target)
    target.kernel("column_sums_finish", x.dtype)(grid, block, (partial, sums, launch.i64(chunks), launch.i64(cols)))
    return sums


def split_reduction(tiles: int, depth: int, *, step: int, target_items: int, min_depth: int,
                    max_splits: int) -> tuple[int, int]:
    """(splits, depth_per_split) of a product with ``tiles`` output tiles reducing over ``depth`` (its k).

    A product with few tiles but a deep reduction (a weight gradient summed over a whole batch) would leave
    most of the GPU idle: cut k into slices until about ``target_items`` (slice, tile) work items exist,
    at most ``max_splits``, each slice at least ``min_depth`` deep (a tile's fixed costs amortised) and a
    whole number of the kernel's k ``step``s. (1, depth) when splitting does not pay.
    """
    splits = min(max_splits, launch.blocks_for(target_items, tiles), depth // min_depth)
    if splits <= 1:
        return 1, depth
    per_split = launch.blocks_for(launch.blocks_for(depth, splits), step) * step
    return launch.blocks_for(depth, per_split), per_split


def sum_slices_on(target: Target, partial: Any, out: Any, *, bias: Any | None = None,
                  addend: Any | None = None) -> Any:
    """out = partial[0] + partial[1] + ... in slice order (+ bias over out's last axis) (+ addend, out's
    shape); partial is (splits, *out.shape). Returns out."""
    splits = partial.shape[0]
    # `partial` stands in for a missing bias or addend: the kernel never reads it when the flag is 0.
    extras = (partial if bias is None else bias, partial if addend is None else addend)
    flags = (launch.i32(bias is not None), launch.i32(addend is not None))
    grid, block = launch.grid_1d(out.size, target)
    target.kernel("sum_slices", out.dtype)(
        grid, block, (partial, *extras, out, launch.i64(out.size), launch.i64(out.shape[-1]), launch.i32(splits),
                      *flags))
    return out
