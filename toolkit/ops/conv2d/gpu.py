"""2-D convolution as CUDA kernels (conv2d.cu, conv2d.cuh) on CuPy arrays. Same signatures and cache as
reference.py and cpu.py: the cache holds the (CuPy) input x and filters w, so a GPU forward pairs with a
GPU backward exactly as a CPU forward pairs with a CPU backward.

``forward``/``backward`` are the public CuPy path; ``forward_on``/``backward_on`` hold all launch code and
run unchanged on the host harness (NumPy arrays, the kernels compiled for the CPU) in the tests.

cpu.py materialises the im2col matrix and calls BLAS; here the three products are *implicit* GEMMs:
each 128 x 128 (or 128 x 64) tile of the result gathers its patches of x or dy straight from the tensors
into shared memory, so no (N*OH*OW, KH*KW*Cin) matrix is ever stored:

    y  = P W + b        P = im2col(x) (M x K), W = w as (K, Cout)           M = N*OH*OW, K = KH*KW*Cin
    dx = G W'           G = the dy value each tap of each input pixel meets, W' = w with Cin/Cout swapped
    dw = P^T dy         a reduction over all M pixels: split into ranges, summed in a fixed order
    db = sum of dy      two deterministic stages in float64 (as cpu.py; toolkit/cuda/reduce.py)

No atomics anywhere: every output element is written by one thread, partial results are added in an
order fixed by the shapes. The same inputs give the same bits on any GPU and for any grid size.

Which kernel runs: the narrow (128 x 64 tile) variant when the product has at most 64 columns (Cout for
y and dw, Cin for dx), else the wide (128 x 128) one; dw's split (``split_rows``) depends on the shapes only.

One convention differs from cpu.py, for non-finite *filters* only: dx is evaluated as the textbook
transposed convolution, where every input pixel sums dy * w over all KH*KW taps, dy being 0 where a tap
meets no output position (at the borders, and between strides). With finite w those terms are 0 and dx
equals the reference; an Inf or NaN weight turns them into 0 * Inf = NaN (IEEE), so dx is NaN for every
pixel of that input channel, where the reference (which adds only the taps that exist) may be finite at
pixels the weight never reaches. NaN/Inf in x or dy propagate exactly as in the reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...cuda import launch, modules, reduce
from ...cuda.launch import Target
from .reference import Conv2DCache

OP = "conv2d"
TILE_M = 128  # conv::kTileM: rows (pixels, or filter taps for dw) of a product tile
TILE_N_WIDE = 128  # conv::kWide: columns of a wide tile
TILE_N_NARROW = 64  # conv::kNarrow: columns of a narrow tile, used when the product has <= 64 columns
TILE_K = 8  # conv::kTileK: the k step; dw's pixel ranges are whole steps
GEMM_THREADS = 256  # conv::kThreads
SPLIT_TARGET_ITEMS = 256  # dw: split the pixels until about this many (split, tile) work items exist ...
SPLIT_MIN_ROWS = 256  # ... keeping each range at least 32 k steps deep (the tile's fixed costs amortised) ...
MAX_SPLITS = 128  # ... and the slice sum (splits * K * Cout reads) small next to the product


def _target() -> Target:
    return modules.target(OP)


def tile_columns(cols: int) -> int:
    """Columns of the tile that covers a product with ``cols`` columns: narrow when that leaves less idle."""
    return TILE_N_NARROW if cols <= TILE_N_NARROW else TILE_N_WIDE


def _variant(kernel: str, cols: int) -> str:
    return kernel + ("_narrow" if tile_columns(cols) == TILE_N_NARROW else "")


def tiles(rows: int, cols: int) -> int:
    """Work items (tiles) of a rows x cols product."""
    return launch.blocks_for(rows, TILE_M) * launch.blocks_for(cols, tile_columns(cols))


def split_rows(k: int, cout: int, pixels: int) -> tuple[int, int]:
    """(splits, pixels_per_split) of dw = P^T dy (K x Cout, reducing over ``pixels`` = N*OH*OW rows).

    dw has few tiles (a 3x3, 64 -> 64 layer: K = 576, one 5 x 1 column of tiles) but a deep reduction (all
    pixels of the batch): without a split, five blocks would do all the work. From the shapes alone, so the
    summation order, hence the result, never depends on the device.
    """
    return reduce.split_reduction(tiles(k, cout), pixels, step=TILE_K, target_items=SPLIT_TARGET_ITEMS,
                                  min_depth=SPLIT_MIN_ROWS, max_splits=MAX_SPLITS)


def _geometry(cache: Conv2DCache) -> tuple[np.int32, ...]:
    """The kernels' geometry arguments (conv::Geometry), each checked to fit the kernels' 32-bit ints.

    Per-image sizes (H*W, OH*OW), channel counts and the depths KH*KW*Cin, KH*KW*Cout are int in the
    kernels (k indexes w, whose size is checked); only the batch-wide counts are 64-bit.
    """
    n, h, w, cin = cache.x.shape
    kh, kw, _, cout = cache.w.shape
    _, oh, ow, _ = cache.y_shape
    (top, _), (left, _) = cache.padding
    for value, name in [(h * w, "H*W"), (oh * ow, "OH*OW"), (kh * kw * cin, "KH*KW*Cin"),
                        (kh * kw * cout, "KH*KW*Cout")]:
        launch.i32(value, name)
    values = (n, h, w, cin, oh, ow, cout, kh, kw, cache.stride[0], cache.stride[1], top, left)
    names = ("N", "H", "W", "Cin", "OH", "OW", "Cout", "KH", "KW", "stride_h", "stride_w", "top", "left")
    return tuple(launch.i32(v, name) for v, name in zip(values, names))


def _gemm_launch(target: Target, count: int) -> tuple[tuple[int], tuple[int]]:
    return (min(count, target.max_grid_blocks),), (GEMM_THREADS,)


def forward_on(target: Target, x: Any, w: Any, b: Any | None, stride: tuple[int, int],
               padding) -> tuple[Any, Conv2DCache]:
    """forward, with the kernels and arrays of ``target`` (CuPy, or the host harness)."""
    cache = Conv2DCache(x, w, b is not None, stride, padding)
    n, oh, ow, cout = cache.y_shape
    y = target.xp.empty((n, oh, ow, cout), dtype=x.dtype)
    grid, block = _gemm_launch(target, tiles(n * oh * ow, cout))
    # w stands in for a missing bias: the kernel never reads it when has_bias is 0.
    target.kernel(_variant("conv2d_forward", cout), x.dtype)(
        grid, block, (x, w, w if b is None else b, y, *_geometry(cache), launch.i32(b is not None)))
    return y, cache


def filter_gradient_on(target: Target, dy: Any, cache: Conv2DCache) -> Any:
    """dw = P^T dy, the pixels split into ranges summed in order (see split_rows)."""
    xp = target.xp
    x, w = cache.x, cache.w
    k, cout = w.shape[0] * w.shape[1] * w.shape[2], w.shape[3]
    pixels = dy.shape[0] * dy.shape[1] * dy.shape[2]
    splits, per = split_rows(k, cout, pixels)
    dw = xp.empty(w.shape, dtype=w.dtype)
    out = dw if splits == 1 else xp.empty((splits, *w.shape), dtype=w.dtype)
    grid, block = _gemm_launch(target, tiles(k, cout) * splits)
    target.kernel(_variant("conv2d_backward_filter", cout), w.dtype)(
        grid, block, (x, dy, out, *_geometry(cache), launch.i64(per), launch.i32(splits)))
    if splits > 1:
        reduce.sum_slices_on(target, out, dw)
    return dw


def bias_gradient_on(target: Target, dy: Any) -> Any:
    """db = the sum of dy over batch and positions (dy as (N*OH*OW, Cout)), deterministic, in float64."""
    cols = dy.shape[-1]
    return reduce.column_sums_on(target, dy.reshape(dy.size // cols, cols))


def backward_on(target: Target, dy: Any, cache: Conv2DCache,
                need_dx: bool = True) -> tuple[Any | None, Any, Any | None]:
    """backward, with the kernels and arrays of ``target``; need_dx=False launches no dx kernel (dx None)."""
    x, w = cache.x, cache.w
    n, h, wd, cin = x.shape
    dx = None
    if need_dx:
        dx = target.xp.empty(x.shape, dtype=x.dtype)
        grid, block = _gemm_launch(target, tiles(n * h * wd, cin))
        target.kernel(_variant("conv2d_backward_data", cin), x.dtype)(grid, block, (dy, w, dx, *_geometry(cache)))
    dw = filter_gradient_on(target, dy, cache)
    db = bias_gradient_on(target, dy) if cache.has_bias else None
    return dx, dw, db


def forward(x: Any, w: Any, b: Any | None, stride: tuple[int, int], padding) -> tuple[Any, Conv2DCache]:
    return forward_on(_target(), x, w, b, stride, padding)


def backward(dy: Any, cache: Conv2DCache, need_dx: bool = True) -> tuple[Any | None, Any, Any | None]:
    return backward_on(_target(), dy, cache, need_dx)
