"""Loss functions as CUDA kernels (losses.cu) on CuPy arrays. Same signatures and cache as reference.py and cpu.py.

``forward``/``backward`` are the public CuPy path; ``forward_on``/``backward_on`` hold all launch code and
run unchanged on the host harness (NumPy arrays, the kernels compiled for the CPU) in the tests.

The loss is a deterministic two-stage reduction, with no atomics: the data are cut into fixed chunks
(CHUNK elements, or for softmax cross-entropy CHUNK // classes whole rows), one block sums a chunk into
a float64 partial sum, and one final block adds the partials in order and applies the factor
(reference.scale) in double, rounding once to y's dtype, as cpu.py does. The chunks depend only on the
shapes, so the loss has the same bits whatever the grid size or the GPU. The backward passes are one
elementwise kernel, or one kernel per row for softmax cross-entropy (a warp per row up to
WARP_ROW_MAX_CLASSES classes, a block per row above).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...cuda import launch, modules
from ...cuda.launch import Target
from .codes import kernel_code
from .reference import EPSILON, LossCache, scale

OP = "losses"
CHUNK = 1 << 12  # elements per partial sum: 16 per thread of a 256-thread block
REDUCE_THREADS = 256  # threads of a partial-sum block (full warps, see common.cuh's block_all_reduce)
FINISH_MAX_THREADS = 1024  # the final block strides over the partials
WARP_ROW_MAX_CLASSES = 256  # softmax cross-entropy: rows up to this wide are one warp's work


def _target() -> Target:
    return modules.target(OP)


def _clip_bounds(dtype) -> tuple[np.generic, np.generic]:
    t = np.dtype(dtype).type
    return t(EPSILON), t(1) - t(EPSILON)  # in y's dtype, as reference._clip_bounds


def _rows(xp: Any, a: Any, axis: int) -> Any:
    """``a`` with ``axis`` moved last, as a C-contiguous (samples, classes) matrix."""
    return xp.ascontiguousarray(xp.moveaxis(a, axis, -1)).reshape(-1, a.shape[axis])


def _unrows(xp: Any, m: Any, like: Any, axis: int) -> Any:
    moved_shape = tuple(s for i, s in enumerate(like.shape) if i != axis) + (like.shape[axis],)
    return xp.ascontiguousarray(xp.moveaxis(m.reshape(moved_shape), -1, axis))


def _finish(target: Target, partial: Any, factor: float, dtype) -> Any:
    """factor * sum(partial) as a 0-d array of ``dtype`` (one block, partials added in a fixed order)."""
    loss = target.xp.empty((), dtype=dtype)
    count = partial.shape[0]
    target.kernel("loss_finish", dtype)(
        (1,), (launch.row_threads(count, FINISH_MAX_THREADS),),
        (partial, launch.i64(count), launch.scalar(factor, np.float64), loss))
    return loss


def _row_kernel(classes: int, pass_: str) -> str:
    return f"softmax_crossentropy_{pass_}_{'warps' if classes <= WARP_ROW_MAX_CLASSES else 'blocks'}"


def _row_block(classes: int) -> int:
    return REDUCE_THREADS if classes <= WARP_ROW_MAX_CLASSES else launch.row_threads(classes)


def _softmax_crossentropy_forward(target: Target, y: Any, t: Any, axis: int, factor: float) -> tuple[Any, Any]:
    xp = target.xp
    z_rows, t_rows = _rows(xp, y, axis), _rows(xp, t, axis)
    rows, classes = z_rows.shape
    p_rows = xp.empty_like(z_rows)
    rows_per_chunk = max(1, CHUNK // classes)
    chunks = launch.blocks_for(rows, rows_per_chunk)
    partial = xp.empty((chunks,), dtype=np.float64)
    target.kernel(_row_kernel(classes, "forward"), y.dtype)(
        (min(chunks, target.max_grid_blocks),), (_row_block(classes),),
        (z_rows, t_rows, p_rows, partial, launch.i64(rows), launch.i64(classes), launch.i64(rows_per_chunk)))
    return _finish(target, partial, factor, y.dtype), _unrows(xp, p_rows, y, axis)


def forward_on(target: Target, name: str, y: Any, t: Any, **params: Any) -> tuple[Any, LossCache]:
    """forward, with the kernels and arrays of ``target`` (CuPy, or the host harness)."""
    factor = scale(name, y.shape, params)
    if name == "softmax_crossentropy":
        loss, probabilities = _softmax_crossentropy_forward(target, y, t, params["axis"], factor)
        return loss, LossCache(name, y, t, params, probabilities)
    n = y.size
    chunks = launch.blocks_for(n, CHUNK)
    partial = target.xp.empty((chunks,), dtype=np.float64)
    target.kernel("loss_partial_sums", y.dtype)(
        (min(chunks, target.max_grid_blocks),), (REDUCE_THREADS,),
        (y.reshape(-1), t.reshape(-1), partial, launch.i64(n), launch.i64(CHUNK), launch.i32(kernel_code(name, params)),
         *_clip_bounds(y.dtype)))
    return _finish(target, partial, factor, y.dtype), LossCache(name, y, t, params, None)


def backward_on(target: Target, cache: LossCache, dloss: float = 1.0) -> Any:
    """backward, with the kernels and arrays of ``target``."""
    xp = target.xp
    name, y, t, params, probabilities = cache
    factor = launch.scalar(dloss * scale(name, y.shape, params), y.dtype)  # as cpu.py: rounded to y's dtype
    if name == "softmax_crossentropy":
        axis = params["axis"]
        p_rows, t_rows = _rows(xp, probabilities, axis), _rows(xp, t, axis)
        rows, classes = p_rows.shape
        dz_rows = xp.empty_like(p_rows)
        block = _row_block(classes)
        per_block = block // launch.WARP_SIZE if classes <= WARP_ROW_MAX_CLASSES else 1
        target.kernel(_row_kernel(classes, "backward"), y.dtype)(
            (min(launch.blocks_for(rows, per_block), target.max_grid_blocks),), (block,),
            (p_rows, t_rows, dz_rows, launch.i64(rows), launch.i64(classes), factor))
        return _unrows(xp, dz_rows, y, axis)
    dy = xp.empty_like(y)
    grid, block = launch.grid_1d(y.size, target)
    target.kernel("loss_term_derivatives", y.dtype)(
        grid, block, (y.reshape(-1), t.reshape(-1), dy.reshape(-1), launch.i64(y.size),
                      launch.i32(kernel_code(name, params)), factor, *_clip_bounds(y.dtype)))
    return dy


def forward(name: str, y: Any, t: Any, **params: Any) -> tuple[Any, LossCache]:
    return forward_on(_target(), name, y, t, **params)


def backward(cache: LossCache, dloss: float = 1.0) -> Any:
    return backward_on(_target(), cache, dloss)
