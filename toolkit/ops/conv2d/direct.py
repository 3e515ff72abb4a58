"""Direct convolution with register tiles: no im2col, no BLAS, for layers whose operands fit in cache.

Why: LeNet's C3 (6 -> 16 channels, 5x5, 14x14 -> 10x10) through im2col and BLAS moved 150 values per
output pixel through a cols matrix and ran its products with 16 output columns, a shape OpenBLAS
runs at a third of its speed. PyTorch (oneDNN) was 1.5-2x faster. Computed directly, each output
pixel's 16 channels are one 64-byte vector (``toolkit.ops.simd``; two AVX2 registers), and a tile of
4 pixels x L channels stays in registers for the whole window sum. Measured on 2 cores, float32,
batch 128 (``python -m bench --op conv2d``): forward 1.93 -> 0.65 ms, backward 4.6 -> 1.5 ms (PyTorch
0.8-0.9 and 2.4-3.3 ms).

Layout (channels last, all arrays flat and C-contiguous): pixel (n, i, j) of x starts at element
(n*H + i)*W*C + j*C, and the KW pixels of one filter row are KW*C consecutive elements. So for output
pixel (i, j) and filter row kh, with t = kw*C + c running over that row of the window:

    y[n, i, j, :]      = b + sum over kh, t of  x[(n*H + i*sh + kh)*W*C + j*sw*C + t] * w[kh, t, :]
    dw[kh, t, :]       = sum over n, i, j of   x[(n*H + i*sh + kh)*W*C + j*sw*C + t] * dy[n, i, j, :]
    dx[... same x index ...] += sum over co of  dy[n, i, j, co] * w[kh, t, co]

* forward: 4 output pixels x L channels of y in 4 vector accumulators; each step loads one vector of w
  and broadcasts one x value per pixel (4 multiply-adds). The bias is the accumulators' start.
* dw: 4 consecutive t x L channels in 4 accumulators, summed over a band of an image's output rows (each
  step: one vector of dy, 4 broadcasts of x), then added in float64 to the block's partial (see below).
* dx: the t of one filter row in vectors (w transposed to (KH, Cout, KW*C), zero-padded to a whole
  number of vectors), summed over the output channels for 4 pixels, then added onto dx. The 4 pixels
  lie on 4 different output rows (pixels taken column by column): the dx windows of neighbours in a
  row overlap, and a load of a range that the previous store half wrote stalls the CPU. The last
  vector of a filter row is partial: its spare lanes add -0.0 (``wide_add_head``), within the image.
  Near the end of an image, where those lanes would fall in the next image (another thread's), the
  lanes are added one by one (``wide_add_lanes``).

Channels that do not fill whole vectors (LeNet's C1 has 6, a float32 vector 16 lanes): w and b get zero
output channels up to the next multiple of L, y is computed on a scratch array that wide and its first
Cout channels copied out; dy gets zero channels, which add exact zeros to dx. Even with 15 of 16 lanes
spare (Cout = 1) this beat im2col + BLAS on every layer measured (single thread, f+b; C1 on 32x32 at
batch 128: forward 2.2 vs 4.4 ms, backward 7.6 vs 9.9 ms; 3x3 3 -> 1 on 32x32 b64: 6.3 vs 9.3 ms).

Threads: blocks of whole images on Numba's threads (at most cpu.IMAGE_BLOCKS blocks); dw is summed per
band of rows in the input dtype, per block in float64, then over the blocks in order, so its bits do not
depend on the thread count. Padding is applied by copying x into a zero-bordered scratch grid first (dx is
computed on that grid and its interior copied out), so the kernels only see "valid" windows.

Applies (``applies``): MIN_PIXELS output pixels an image or more, and w within MAX_CACHED_BYTES
(measurements at both); images of any size, in bands of rows (BAND_BYTES). cpu.py checks it right after the plain 1x1 case (a 1x1 filter
with stride 1 and no padding is one matrix product).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..scratch import scratch
from ..simd import (wide_add, wide_add_f64, wide_add_head, wide_add_lanes, wide_fma, wide_fma4, wide_lanes,
                    wide_load, wide_splat, wide_store, wide_store4, wide_zeros)

# w at most this big (half of this machine's 512 KB L2 per core). Measured f+b, float32, 2 cores, direct vs
# the best other path: inside the bound it won everywhere tried (LeNet C3 2.1 vs 6.3 ms; 3x3 32->64 on
# 32x32 b32 39 vs 77 ms; 5x5 16->32 "same" 28x28 b64 37 vs 78; 5x5 32->64 80 vs 125; with bands, 3x3
# 64->64 "same" 56x56 b8 53-57 vs 75 through shifted.py, 48->64 44-46 vs 48-64, 64->128 stride 2
# 32-37 vs 35-37); outside, 3x3 128->128 16x16 (w 590 KB) lost, 118 vs 92 ms.
MAX_CACHED_BYTES = 256 << 10
# Output pixels an image from which the path pays: dw adds each image's (KH*KW*Cin, Cout) sums to a float64
# partial, and a tile of 4 pixels needs 4. LeNet's C5 (1 pixel, 5x5 16 -> 120, batch 32) took 4.8 ms
# direct against 0.43 through one im2col product; at 16 pixels (3x3 16 -> 32 on 6x6) direct won, 0.46 vs 0.80.
MIN_PIXELS = 16
# The forward and dw kernels work through an image in bands of output rows, every tile of one band before
# the next, so that the band's dy (dw) or x rows (forward) are read from L2, not from memory, by the
# tiles after the first: a band is as many rows as fill BAND_BYTES of dy.
BAND_BYTES = 128 << 10


def lanes(dtype) -> int:
    """Vector width in elements for this dtype (64 bytes)."""
    return 64 // np.dtype(dtype).itemsize


def padded_channels(cout: int, dtype) -> int:
    """Cout rounded up to whole vectors: the kernels compute (and then drop) the spare channels."""
    return -(-cout // lanes(dtype)) * lanes(dtype)


def applies(w_shape: tuple[int, ...], dtype, oh: int, ow: int) -> bool:
    """At least MIN_PIXELS output pixels an image, and w small enough to stay in the L2 cache
    (MAX_CACHED_BYTES, counting the padding channels): the dx kernel streams all of it for every tile of
    4 pixels. dy and x need no bound: the kernels take them in bands (BAND_BYTES)."""
    kh, kw, cin, cout = w_shape
    wide = padded_channels(cout, dtype)
    return oh * ow >= MIN_PIXELS and kh * kw * cin * wide * np.dtype(dtype).itemsize <= MAX_CACHED_BYTES


# --------------------------------------------------------------------------- kernels (flat arrays)
@njit(cache=True, inline="always")
def _forward_pixels(x, w, y, bias, xn, n, co, p_start, p_stop, wc, c, kh_size, run, cout, sh, sw, ow_size, pix):
    """Output pixels [p_start, p_stop) of image n, channels [co, co + L): 4 at a time, then one by one."""
    p = p_start
    while p + 4 <= p_stop:  # 4 pixels in row-major order: they only read x
        x0 = xn + (p // ow_size) * sh * wc + (p % ow_size) * sw * c
        x1 = xn + ((p + 1) // ow_size) * sh * wc + ((p + 1) % ow_size) * sw * c
        x2 = xn + ((p + 2) // ow_size) * sh * wc + ((p + 2) % ow_size) * sw * c
        x3 = xn + ((p + 3) // ow_size) * sh * wc + ((p + 3) % ow_size) * sw * c
        a0 = bias
        a1 = bias
        a2 = bias
        a3 = bias
        for kh in range(kh_size):
            row = kh * wc
            wrow = kh * run * cout + co
            for t in range(run):
                a0, a1, a2, a3 = wide_fma4(x, x0 + row + t, x1 + row + t, x2 + row + t, x3 + row + t,
                                           wide_load(w, wrow + t * cout), a0, a1, a2, a3)
        wide_store4(y, (n * pix + p) * cout + co, cout, a0, a1, a2, a3)
        p += 4
    while p < p_stop:
        x0 = xn + (p // ow_size) * sh * wc + (p % ow_size) * sw * c
        a0 = bias
        for kh in range(kh_size):
            for t in range(run):
                a0 = wide_fma(wide_splat(x, x0 + kh * wc + t), wide_load(w, (kh * run + t) * cout + co), a0)
        wide_store(y, (n * pix + p) * cout + co, a0)
        p += 1


@njit(cache=True)
def _forward_images(x, w, b, y, h, wd, c, kh_size, kw_size, cout, sh, sw, oh_size, ow_size, band, n_start,
                    n_stop):
    """y of images [n_start, n_stop); x (N, H, W, C), w (KH, KW*C, Cout), b (Cout,), y (N, OH, OW, Cout).
    ``band`` output rows at a time, every channel block of them before the next band (see BAND_BYTES)."""
    lane = wide_lanes(w)
    wc = wd * c
    run = kw_size * c
    pix = oh_size * ow_size
    for n in range(n_start, n_stop):
        for first_row in range(0, oh_size, band):
            p_stop = min(oh_size, first_row + band) * ow_size
            for co in range(0, cout, lane):
                _forward_pixels(x, w, y, wide_load(b, co), n * h * wc, n, co, first_row * ow_size, p_stop, wc, c,
                                kh_size, run, cout, sh, sw, ow_size, pix)


@njit(cache=True)
def _weight_grad_images(x, dy, dw_partial, h, wd, c, kh_size, kw_size, cout, sh, sw, oh_size, ow_size, band,
                        n_start, n_stop):
    """dw_partial (KH, KW*C, Cout) float64 += dw of images [n_start, n_stop), each band of ``band`` output
    rows summed in the input dtype first (every tile of a band before the next: see BAND_BYTES)."""
    zero = wide_zeros(dy)
    for n in range(n_start, n_stop):
        for first_row in range(0, oh_size, band):
            _weight_grad_band(x, dy, dw_partial, h, wd, c, kh_size, kw_size, cout, sh, sw, oh_size, ow_size, zero, n,
                              first_row, min(oh_size, first_row + band))


@njit(cache=True, inline="always")
def _weight_grad_band(x, dy, dw_partial, h, wd, c, kh_size, kw_size, cout, sh, sw, oh_size, ow_size, zero, n,
                      row_start, row_stop):
    """Output rows [row_start, row_stop) of image n: 4 taps x L channels a tile, their sums into dw_partial."""
    lane = wide_lanes(dy)
    wc = wd * c
    run = kw_size * c
    xn = n * h * wc
    dn = n * oh_size * ow_size * cout
    for kh in range(kh_size):
        for co in range(0, cout, lane):
            t = 0
            while t < run:
                taps = min(4, run - t)
                if taps == 3:
                    taps = 2  # 4, then 2, then 1: no tile reads x past the window row
                a0 = zero
                a1 = zero
                a2 = zero
                a3 = zero
                for i in range(row_start, row_stop):
                    xr = xn + (i * sh + kh) * wc + t
                    dr = dn + i * ow_size * cout + co
                    for j in range(ow_size):
                        g = wide_load(dy, dr + j * cout)
                        xj = xr + j * sw * c
                        a0 = wide_fma(wide_splat(x, xj), g, a0)
                        if taps >= 2:
                            a1 = wide_fma(wide_splat(x, xj + 1), g, a1)
                            if taps == 4:
                                a2 = wide_fma(wide_splat(x, xj + 2), g, a2)
                                a3 = wide_fma(wide_splat(x, xj + 3), g, a3)
                out = (kh * run + t) * cout + co
                wide_add_f64(dw_partial, out, a0)
                if taps >= 2:
                    wide_add_f64(dw_partial, out + cout, a1)
                    if taps == 4:
                        wide_add_f64(dw_partial, out + 2 * cout, a2)
                        wide_add_f64(dw_partial, out + 3 * cout, a3)
                t += taps


@njit(cache=True, inline="always")
def _add_row(dx, at, acc, count, image_end, lane):
    """dx.flat[at : at + count] += acc[:count]; spare lanes stay within the image or are skipped."""
    if count >= lane:
        wide_add(dx, at, acc)
    elif at + lane <= image_end:
        wide_add_head(dx, at, acc, count)
    else:
        wide_add_lanes(dx, at, acc, count)


@njit(cache=True)
def _input_grad_images(dy, wt, dx, h, wd, c, kh_size, kw_size, cout, sh, sw, oh_size, ow_size, n_start, n_stop):
    """dx (N, H, W, C), zeroed, += dx of images [n_start, n_stop); wt is w as (KH, Cout, run_padded):
    each filter row's run = KW*C values, zero-padded to whole vectors."""
    lane = wide_lanes(dy)
    zero = wide_zeros(dy)
    wc = wd * c
    run = kw_size * c
    run_padded = wt.size // (kh_size * cout)
    pix = oh_size * ow_size
    image = h * wc
    for n in range(n_start, n_stop):
        dn = n * pix * cout
        xn = n * image
        end = xn + image
        p = 0
        while p + 4 <= pix:  # column-major pixel order: 4 pixels on different output rows
            j0, i0 = p // oh_size, p % oh_size
            j1, i1 = (p + 1) // oh_size, (p + 1) % oh_size
            j2, i2 = (p + 2) // oh_size, (p + 2) % oh_size
            j3, i3 = (p + 3) // oh_size, (p + 3) % oh_size
            x0 = xn + i0 * sh * wc + j0 * sw * c
            x1 = xn + i1 * sh * wc + j1 * sw * c
            x2 = xn + i2 * sh * wc + j2 * sw * c
            x3 = xn + i3 * sh * wc + j3 * sw * c
            d0 = dn + (i0 * ow_size + j0) * cout
            d1 = dn + (i1 * ow_size + j1) * cout
            d2 = dn + (i2 * ow_size + j2) * cout
            d3 = dn + (i3 * ow_size + j3) * cout
            for kh in range(kh_size):
                for t in range(0, run_padded, lane):
                    a0 = zero
                    a1 = zero
                    a2 = zero
                    a3 = zero
                    wrow = kh * cout * run_padded + t
                    for co in range(cout):
                        a0, a1, a2, a3 = wide_fma4(dy, d0 + co, d1 + co, d2 + co, d3 + co,
                                                   wide_load(wt, wrow + co * run_padded), a0, a1, a2, a3)
                    row = kh * wc + t
                    _add_row(dx, x0 + row, a0, run - t, end, lane)
                    _add_row(dx, x1 + row, a1, run - t, end, lane)
                    _add_row(dx, x2 + row, a2, run - t, end, lane)
                    _add_row(dx, x3 + row, a3, run - t, end, lane)
            p += 4
        while p < pix:
            j0, i0 = p // oh_size, p % oh_size
            x0 = xn + i0 * sh * wc + j0 * sw * c
            d0 = dn + (i0 * ow_size + j0) * cout
            for kh in range(kh_size):
                for t in range(0, run_padded, lane):
                    a0 = zero
                    wrow = kh * cout * run_padded + t
                    for co in range(cout):
                        a0 = wide_fma(wide_splat(dy, d0 + co), wide_load(wt, wrow + co * run_padded), a0)
                    _add_row(dx, x0 + kh * wc + t, a0, run - t, end, lane)
            p += 1


# --------------------------------------------------------------------------- drivers: blocks of whole images
@njit(cache=True)
def _forward_serial(x, w, b, y, h, wd, c, kh, kw, cout, sh, sw, oh, ow, band, per_block):
    _forward_images(x, w, b, y, h, wd, c, kh, kw, cout, sh, sw, oh, ow, band, 0, y.size // (oh * ow * cout))


@njit(cache=True, parallel=True)
def _forward_parallel(x, w, b, y, h, wd, c, kh, kw, cout, sh, sw, oh, ow, band, per_block):
    n_size = y.size // (oh * ow * cout)
    for blk in prange((n_size + per_block - 1) // per_block):  # disjoint images per block
        _forward_images(x, w, b, y, h, wd, c, kh, kw, cout, sh, sw, oh, ow, band, blk * per_block,
                        min(n_size, (blk + 1) * per_block))


@njit(cache=True)
def _backward_block(x, wt, dy, dx, dw_partial, need_dx, h, wd, c, kh, kw, cout, sh, sw, oh, ow, band, n_start,
                    n_stop):
    _weight_grad_images(x, dy, dw_partial, h, wd, c, kh, kw, cout, sh, sw, oh, ow, band, n_start, n_stop)
    if need_dx:
        _input_grad_images(dy, wt, dx, h, wd, c, kh, kw, cout, sh, sw, oh, ow, n_start, n_stop)


@njit(cache=True)
def _backward_serial(x, wt, dy, dx, dw_partial, need_dx, h, wd, c, kh, kw, cout, sh, sw, oh, ow, band, per_block):
    """The same blocks as the parallel twin, one after another: the same dw bits."""
    n_size = dy.size // (oh * ow * cout)
    for blk in range(dw_partial.shape[0]):
        _backward_block(x, wt, dy, dx, dw_partial[blk], need_dx, h, wd, c, kh, kw, cout, sh, sw, oh, ow, band,
                        blk * per_block, min(n_size, (blk + 1) * per_block))


@njit(cache=True, parallel=True)
def _backward_parallel(x, wt, dy, dx, dw_partial, need_dx, h, wd, c, kh, kw, cout, sh, sw, oh, ow, band, per_block):
    n_size = dy.size // (oh * ow * cout)
    for blk in prange(dw_partial.shape[0]):  # disjoint images (dx) and row blk of dw_partial per block
        _backward_block(x, wt, dy, dx, dw_partial[blk], need_dx, h, wd, c, kh, kw, cout, sh, sw, oh, ow, band,
                        blk * per_block, min(n_size, (blk + 1) * per_block))


# --------------------------------------------------------------------------- Python entry points
def _padded(x: np.ndarray, padding) -> np.ndarray:
    """x on a zero-bordered grid (scratch), or x itself without padding."""
    (top, bottom), (left, right) = padding
    if top == bottom == left == right == 0:
        return x
    n, h, wd, c = x.shape
    grid = scratch("conv2d.direct.grid", (n, h + top + bottom, wd + left + right, c), x.dtype)
    grid[:, :top] = 0
    grid[:, top + h:] = 0
    grid[:, top:top + h, :left] = 0
    grid[:, top:top + h, left + wd:] = 0
    grid[:, top:top + h, left:left + wd] = x
    return grid


def _channel_padded(w: np.ndarray, b: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """w and b (zeros without bias) with Cout rounded up to whole vectors by zero output channels."""
    kh, kw, cin, cout = w.shape
    wide = padded_channels(cout, w.dtype)
    if wide == cout:
        return w, b if b is not None else np.zeros(cout, dtype=w.dtype)
    wp = np.zeros((kh, kw, cin, wide), dtype=w.dtype)
    wp[..., :cout] = w
    bp = np.zeros(wide, dtype=w.dtype)
    if b is not None:
        bp[:cout] = b
    return wp, bp


def _geometry(grid: np.ndarray, w: np.ndarray, stride, oh: int, ow: int) -> tuple:
    """The kernels' shape arguments, ending with the band: output rows whose dy (or y) fills BAND_BYTES."""
    kh, kw, cin, cout = w.shape
    band = max(1, BAND_BYTES // (ow * cout * grid.itemsize))
    return (grid.shape[1], grid.shape[2], cin, kh, kw, cout, stride[0], stride[1], oh, ow, band)


def forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride, padding, y: np.ndarray,
            parallel: bool, per_block: int) -> np.ndarray:
    """y (N, OH, OW, Cout), preallocated, = conv(x, w) + b. Requires ``applies``."""
    grid = _padded(x, padding)
    wp, bp = _channel_padded(w, b)
    n, oh, ow, cout = y.shape
    out = y if wp is w else scratch("conv2d.direct.y", (n, oh, ow, wp.shape[3]), y.dtype)
    driver = _forward_parallel if parallel else _forward_serial
    driver(grid.reshape(-1), wp.reshape(-1), bp, out.reshape(-1), *_geometry(grid, wp, stride, oh, ow), per_block)
    if out is not y:
        y[...] = out[..., :cout]
    return y


def backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray, stride, padding, need_dx: bool, parallel: bool,
             per_block: int) -> tuple[np.ndarray | None, np.ndarray]:
    """(dx or None, dw). Requires ``applies``."""
    kh, kw, cin, cout = w.shape
    grid = _padded(x, padding)
    wp, _ = _channel_padded(w, None)
    wide = wp.shape[3]
    if wide != cout:  # dy with zero gradients for the spare channels: they add exact zeros to dx
        dyp = scratch("conv2d.direct.dy", dy.shape[:3] + (wide,), dy.dtype)
        dyp[..., cout:] = 0
        dyp[..., :cout] = dy
        dy = dyp
    geometry = _geometry(grid, wp, stride, dy.shape[1], dy.shape[2])
    blocks = -(-x.shape[0] // per_block)
    dw_partial = np.zeros((blocks, kh * kw * cin * wide), dtype=np.float64)
    if need_dx:
        run = kw * cin
        run_padded = -(-run // lanes(x.dtype)) * lanes(x.dtype)
        wt = np.zeros((kh, wide, run_padded), dtype=x.dtype)
        wt[:, :, :run] = wp.reshape(kh, run, wide).transpose(0, 2, 1)
        dx_grid = np.zeros(grid.shape, dtype=x.dtype)
    else:  # placeholders the kernels never touch (Numba needs arrays of the right types)
        wt = np.zeros(1, dtype=x.dtype)
        dx_grid = np.zeros(1, dtype=x.dtype)
    driver = _backward_parallel if parallel else _backward_serial
    driver(grid.reshape(-1), wt.reshape(-1), dy.reshape(-1), dx_grid.reshape(-1), dw_partial, need_dx,
           *geometry, per_block)
    dw = np.ascontiguousarray(dw_partial.sum(axis=0).astype(x.dtype).reshape(wp.shape)[..., :cout])
    if not need_dx:
        return None, dw
    (top, _), (left, _) = padding
    if dx_grid.shape == x.shape:
        return dx_grid, dw
    return np.ascontiguousarray(dx_grid[:, top:top + x.shape[1], left:left + x.shape[2]]), dw
