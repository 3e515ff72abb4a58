"""2-D convolution on the CPU: Numba im2col/col2im kernels around a BLAS matrix product.

Same signatures and cache as reference.py. Why im2col + GEMM rather than a direct loop: a convolution
is a matrix product in disguise, and BLAS's blocked, vectorised GEMM runs far closer to the machine's
peak than a plain Numba loop (which LLVM does not vectorise well). Direct loops win only when written
with explicit register tiles, and only while their operands stay in cache: direct.py, taken first where
it applies. Everywhere else, im2col copies each window into one row of a matrix

    cols[(n, i, j), (kh, kw, ci)] = xp[n, i*sh + kh, j*sw + kw, ci]      (M = N*OH*OW rows, K = KH*KW*Cin columns)

so that, with w viewed as a (K, Cout) matrix and y as (M, Cout):

    forward:   y  = cols @ w + b
    backward:  dw = cols^T @ dy,   dcols = dy @ w^T  (then col2im adds dcols back onto the windows),   db = sum of dy

Channels-last makes this cheap: the Cin values of one pixel are contiguous in x and in a cols row, and
y's memory layout *is* the (M, Cout) matrix, so the product writes straight into y.

* im2col fills the rows of cols of a range of (image, output row) pairs: the parallel driver gives each
  block of rows to one iteration, which fills its own rows of cols. Padding is not materialised:
  windows read zeros where they stick out of x.
* col2im is written as a *gather* over input rows: iteration (n, input row) sums into its own row of dx
  every dcols entry that came from it, so parallel iterations never write the same memory (a scatter
  over windows would race where windows overlap).
* The batch is processed in chunks of images whose cols matrix fits in CHUNK_BYTES: that bounds the
  extra memory (cols is KH*KW times the size of x). Chunks from 1 MB to the whole batch ran within
  10% of each other single-threaded, so the chunk is kept large: fewer parallel regions and BLAS calls.
* Threads. Small problems run the serial kernels (PARALLEL_MIN_WORK): waking Numba's threads costs
  more than their loops, and on a busy machine a parallel region can wait milliseconds for a thread
  that is not scheduled. The matrix products go to NumPy's BLAS through ``matmul``: OpenBLAS runs a
  product above about 2^19 multiply-adds on its own threads (measured: 128x64x64 uses two, 127x64x64
  one), and those threads busy-wait after each call, competing with whatever runs next; a product that
  waited on a descheduled BLAS thread was measured at 1.5 ms instead of 27 us. So products below
  THREADED_GEMM_MIN_MACS (LeNet-sized ones) are issued as row blocks OpenBLAS runs on the calling
  thread, and only large ones use its threads. The row blocks give the same values as one call up to
  float32 rounding (OpenBLAS's summation order differs between its kernels).
  One thread pool at a time: when the products do go to OpenBLAS's threads, im2col/col2im run
  serially. Numba's OpenMP threads spin-wait after a parallel region and OpenBLAS's after a product;
  alternating the two pools on 2 cores made each wait for the other (3x3, 64 -> 64 channels, 56x56,
  batch 8: forward 59 ms with parallel im2col, 25 ms with serial im2col; PyTorch 13-17 ms).
* The GEMM runs in the input dtype (float32 stays float32, as in PyTorch/cuDNN); only db, a sum over
  all N*OH*OW positions, is accumulated in float64 because a long float32 sum loses digits.
* The bias add and the db sum are small Numba loops too: NumPy's broadcasting over rows of a few
  channels costs more than the loops themselves.
* A 1x1 kernel with stride 1 and no padding needs no im2col: x viewed as (M, Cin) already is cols.
* Checked right after the 1x1 case: a layer whose w fits the L2 cache (LeNet's C1 and C3, the 3x3
  64 -> 64 benchmark, most layers up to 64 channels) needs no im2col and no BLAS: direct.py's
  register-tiled kernels compute it, on Numba's threads over blocks of images (3x faster than im2col on
  C3, 1.4x faster than shifted.py on the 3x3 layer; see there). One large image (N = 1, above
  IMAGE_PARALLEL_MIN_WORK) is left to the paths below, whose products use OpenBLAS's threads. This
  replaced an image-by-image im2col path (each image's cols in cache, its products on the calling
  thread), which direct.py beat on every layer it covered.
* A large stride-1 "same" layer with many channels (VGG's 128 and more) needs none either: shifted.py
  computes it as KH*KW products over shifted views of one padded copy of x (see there).
* Scratch: cols and dcols live in a per-thread buffer reused across calls (``toolkit.ops.scratch``: a
  fresh multi-megabyte array page-faults in on every call, which cost as much as the im2col itself).
* ``backward(..., need_dx=False)`` (a model's first layer, whose dx nothing uses) skips dx on every path:
  no dcols product and no col2im, no pointwise dx product, no shifted dx products, no direct dx kernel. dw
  and db are computed exactly as with dx, so they keep their bits.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..scratch import scratch
from . import direct, shifted
from ..ieee import ieee_quiet
from .reference import Conv2DCache

CHUNK_BYTES = 16 << 20  # cols of one chunk of images: fits the L3 cache, big enough for an efficient GEMM
# cols elements (N*OH*OW*K) below which the serial kernels run: about a millisecond of im2col/col2im.
PARALLEL_MIN_WORK = 1 << 20
ROW_BLOCKS = 32  # row blocks of a parallel im2col/col2im: a few per thread, to balance uneven rows
IMAGE_BLOCKS = 64  # at most this many blocks of images (and dw partials) on the direct path
# Window elements (N*OH*OW*K) from which the direct path runs its blocks of images on Numba's threads:
# LeNet's C1 and C3 at batch 32 (0.6 and 0.5 million) do; a test model's layers do not.
IMAGE_PARALLEL_MIN_WORK = 1 << 18
SUM_BLOCKS = 64  # row blocks of the db reduction: enough to balance the threads, few partials to add
OPENBLAS_SERIAL_MACS = 1 << 18  # a product this small runs on the calling thread (OpenBLAS threads at 2^19)
THREADED_GEMM_MIN_MACS = 1 << 24  # products this big go to OpenBLAS whole, on its threads (~0.5 ms of work)


def _parallel(work: int) -> bool:
    return work >= PARALLEL_MIN_WORK


def _threaded_gemm(macs: int) -> bool:
    """Whether ``matmul`` hands a product of this size to OpenBLAS's threads."""
    return macs >= THREADED_GEMM_MIN_MACS


@njit(cache=True)
def _im2col_rows(x3, c_size, kh_size, kw_size, sh, sw, top, left, oh_size, ow_size, cols, r_start, r_stop,
                 row_base):
    """Output rows r = n*OH + i in [r_start, r_stop) of:
    cols[(n*OH + i)*OW + j - row_base, (kh*KW + kw)*C + c] = x[n, i*sh + kh - top, j*sw + kw - left, c],
    0 outside x (row_base: the first cols row held by ``cols``, 0 for the whole batch).

    x3 is x viewed as (N, H, W*C), so pixel iw, channel c of a row sits at x3[n, ih, iw*C + c].

    The KW pixels of one filter row lie side by side in x, so their KW*C values are one contiguous run:
    copied with a single loop (a memcpy for LLVM) unless the window crosses the left/right border.
    """
    h, wc = x3.shape[1], x3.shape[2]
    w = wc // c_size
    run = kw_size * c_size
    for r in range(r_start, r_stop):
        n = r // oh_size
        i = r % oh_size
        for j in range(ow_size):
            row = r * ow_size + j - row_base
            iw0 = j * sw - left
            for kh in range(kh_size):
                ih = i * sh + kh - top
                col0 = kh * run
                if ih < 0 or ih >= h:  # a whole padded row of zeros
                    for t in range(run):
                        cols[row, col0 + t] = 0
                elif iw0 >= 0 and iw0 + kw_size <= w:  # fully inside: one contiguous run
                    for t in range(run):
                        cols[row, col0 + t] = x3[n, ih, iw0 * c_size + t]
                else:  # crosses the left/right padding: pixel by pixel
                    for kw in range(kw_size):
                        iw = iw0 + kw
                        inside = iw >= 0 and iw < w
                        for c in range(c_size):
                            cols[row, col0 + kw * c_size + c] = x3[n, ih, iw * c_size + c] if inside else 0


@njit(cache=True)
def _col2im_rows(dcols, c_size, kh_size, kw_size, sh, sw, top, left, oh_size, ow_size, dx3, r_start, r_stop,
                 row_base):
    """Input rows r = n*H + ih in [r_start, r_stop) of:
    dx[n, ih, iw, c] += every dcols entry im2col copied from x[n, ih, iw, c]; dx3 is dx as (N, H, W*C), zeroed,
    and dcols holds the cols rows from row_base on.

    Gather form: the iteration for (n, ih) finds the (output row i, filter row kh) pairs with
    i*sh + kh - top == ih and adds their runs into row ih of image n only: race-free in parallel.
    """
    h, wc = dx3.shape[1], dx3.shape[2]
    w = wc // c_size
    run = kw_size * c_size
    for r in range(r_start, r_stop):
        n = r // h
        ih = r % h
        for kh in range(kh_size):
            t = ih + top - kh  # = i * sh for the output row i whose filter row kh lands on ih
            if t < 0 or t % sh != 0:
                continue
            i = t // sh
            if i >= oh_size:
                continue
            col0 = kh * run
            for j in range(ow_size):
                row = (n * oh_size + i) * ow_size + j - row_base
                iw0 = j * sw - left
                if iw0 >= 0 and iw0 + kw_size <= w:  # fully inside: one contiguous run
                    for u in range(run):
                        dx3[n, ih, iw0 * c_size + u] += dcols[row, col0 + u]
                else:  # entries that came from padded zeros send their gradient nowhere
                    for kw in range(kw_size):
                        iw = iw0 + kw
                        if iw >= 0 and iw < w:
                            for c in range(c_size):
                                dx3[n, ih, iw * c_size + c] += dcols[row, col0 + kw * c_size + c]


# The parallel drivers split the rows into ROW_BLOCKS fixed blocks and run the serial kernel on each
# (disjoint rows, so no race); small problems call the serial kernels on all rows directly.
@njit(cache=True, parallel=True)
def _im2col_parallel(x3, c_size, kh_size, kw_size, sh, sw, top, left, oh_size, ow_size, cols):
    rows = x3.shape[0] * oh_size
    per = (rows + ROW_BLOCKS - 1) // ROW_BLOCKS
    for blk in prange(ROW_BLOCKS):
        _im2col_rows(x3, c_size, kh_size, kw_size, sh, sw, top, left, oh_size, ow_size, cols,
                     min(rows, blk * per), min(rows, (blk + 1) * per), 0)


@njit(cache=True, parallel=True)
def _col2im_parallel(dcols, c_size, kh_size, kw_size, sh, sw, top, left, oh_size, ow_size, dx3):
    rows = dx3.shape[0] * dx3.shape[1]
    per = (rows + ROW_BLOCKS - 1) // ROW_BLOCKS
    for blk in prange(ROW_BLOCKS):
        _col2im_rows(dcols, c_size, kh_size, kw_size, sh, sw, top, left, oh_size, ow_size, dx3,
                     min(rows, blk * per), min(rows, (blk + 1) * per), 0)


def _im2col(x3, c_size, kh_size, kw_size, sh, sw, top, left, oh_size, ow_size, cols, parallel):
    if parallel:
        _im2col_parallel(x3, c_size, kh_size, kw_size, sh, sw, top, left, oh_size, ow_size, cols)
    else:
        _im2col_rows(x3, c_size, kh_size, kw_size, sh, sw, top, left, oh_size, ow_size, cols, 0,
                     x3.shape[0] * oh_size, 0)


def _col2im(dcols, c_size, kh_size, kw_size, sh, sw, top, left, oh_size, ow_size, dx3, parallel):
    if parallel:
        _col2im_parallel(dcols, c_size, kh_size, kw_size, sh, sw, top, left, oh_size, ow_size, dx3)
    else:
        _col2im_rows(dcols, c_size, kh_size, kw_size, sh, sw, top, left, oh_size, ow_size, dx3, 0,
                     dx3.shape[0] * dx3.shape[1], 0)


@njit(cache=True)
def _add_bias(y2, b):
    """y2[r, :] += b for every row: NumPy's broadcast add is slow when the rows are short (few channels).
    One pass over y, memory-bound: not worth threads."""
    for r in range(y2.shape[0]):
        for c in range(y2.shape[1]):
            y2[r, c] += b[c]


@njit(cache=True, inline="always")
def _sum_block(a, blk, per, partial):
    for r in range(blk * per, min(a.shape[0], (blk + 1) * per)):
        for c in range(a.shape[1]):
            partial[blk, c] += a[r, c]


@njit(cache=True)
def _column_sums_serial(a, blocks):
    """Column sums of a (rows, C) matrix, accumulated in float64: db sums N*OH*OW values per channel.
    The same blocks, added in the same order, as the parallel twin: the same bits."""
    per = (a.shape[0] + blocks - 1) // blocks
    partial = np.zeros((blocks, a.shape[1]), dtype=np.float64)
    for blk in range(blocks):
        _sum_block(a, blk, per, partial)
    return partial.sum(axis=0)


@njit(cache=True, parallel=True)
def _column_sums_parallel(a, blocks):
    """Each parallel iteration sums its own block of rows into its own row of partials (no shared
    accumulator, so no race); the few partial rows are added afterwards."""
    per = (a.shape[0] + blocks - 1) // blocks
    partial = np.zeros((blocks, a.shape[1]), dtype=np.float64)
    for blk in prange(blocks):
        _sum_block(a, blk, per, partial)
    return partial.sum(axis=0)


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = a @ b (2-D, any strides NumPy's BLAS accepts, e.g. transposed views) on NumPy's BLAS, with
    the thread policy of the module docstring: a product below THREADED_GEMM_MIN_MACS is cut along its
    longest dimension into pieces of at most OPENBLAS_SERIAL_MACS multiply-adds, which OpenBLAS runs on
    the calling thread. Rows of a (m) or columns of b (n) give independent pieces of out; the inner
    dimension (k, e.g. the N*OH*OW positions summed by dw = cols^T dy) gives partial products to add."""
    m, k = a.shape
    n = b.shape[1]
    macs = m * k * n
    if macs <= OPENBLAS_SERIAL_MACS or macs >= THREADED_GEMM_MIN_MACS:
        return np.matmul(a, b, out=out)
    if m >= n and m >= k:
        step = max(1, OPENBLAS_SERIAL_MACS // (k * n))
        for r in range(0, m, step):
            np.matmul(a[r:r + step], b, out=out[r:r + step])
    elif n >= k:
        step = max(1, OPENBLAS_SERIAL_MACS // (m * k))
        for c in range(0, n, step):
            np.matmul(a, b[:, c:c + step], out=out[:, c:c + step])
    else:
        step = max(1, OPENBLAS_SERIAL_MACS // (m * n))
        np.matmul(a[:, :step], b[:step], out=out)
        part = np.empty_like(out)
        for i in range(step, k, step):
            out += np.matmul(a[:, i:i + step], b[i:i + step], out=part)
    return out


def _image_parallel(n: int, oh: int, ow: int, k: int) -> bool:
    """Whether the direct path runs its blocks of images on Numba's threads."""
    return n * oh * ow * k >= IMAGE_PARALLEL_MIN_WORK and n > 1


def _direct(n: int, w: np.ndarray, oh: int, ow: int, k: int) -> bool:
    """Whether direct.py's register-tiled kernels run the layer (see ``direct.applies``). Its threads
    split the batch, so one large image goes to the paths whose products run on OpenBLAS's threads."""
    return direct.applies(w.shape, w.dtype, oh, ow) and (n > 1 or oh * ow * k < IMAGE_PARALLEL_MIN_WORK)


def _images_per_block(n: int) -> int:
    """Images per block of the direct path: at most IMAGE_BLOCKS blocks, a function of N only,
    so dw (summed per block, then over blocks in order) has the same bits serial or parallel."""
    return -(-n // min(n, IMAGE_BLOCKS))


def _is_pointwise(w: np.ndarray, stride, padding) -> bool:
    return w.shape[0] == 1 and w.shape[1] == 1 and tuple(stride) == (1, 1) and padding == ((0, 0), (0, 0))


def _chunk_images(n: int, rows_per_image: int, k: int, itemsize: int) -> int:
    """How many images per chunk so that a chunk's cols matrix stays within CHUNK_BYTES (at least 1)."""
    return max(1, min(n, CHUNK_BYTES // max(1, rows_per_image * k * itemsize)))


@ieee_quiet
def forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: tuple[int, int],
            padding) -> tuple[np.ndarray, Conv2DCache]:
    cache = Conv2DCache(x, w, b is not None, stride, padding)
    n, oh, ow, cout = cache.y_shape
    kh, kw, cin, _ = w.shape
    (top, _), (left, _) = padding
    k = kh * kw * cin
    w2 = w.reshape(k, cout)
    y = np.empty((n, oh, ow, cout), dtype=x.dtype)
    y2 = y.reshape(n * oh * ow, cout)  # a view: the product writes straight into y
    if _is_pointwise(w, stride, padding):
        matmul(x.reshape(-1, cin), w2, y2)
    elif _direct(n, w, oh, ow, k):
        return direct.forward(x, w, b, stride, padding, y, _image_parallel(n, oh, ow, k), _images_per_block(n)), cache
    elif shifted.applies(x.shape, w.shape, stride, padding):
        return shifted.forward(x, w, b, padding), cache
    else:
        per = oh * ow
        chunk = _chunk_images(n, per, k, x.itemsize)
        parallel = _parallel(n * per * k) and not _threaded_gemm(chunk * per * k * cout)
        cols = scratch("conv2d.cols", (chunk * per, k), x.dtype)
        x3 = x.reshape(n, x.shape[1], -1)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            c = cols[:(stop - start) * per]
            _im2col(x3[start:stop], cin, kh, kw, stride[0], stride[1], top, left, oh, ow, c, parallel)
            matmul(c, w2, y2[start * per:stop * per])
    if b is not None:
        _add_bias(y2, b)
    return y, cache


@ieee_quiet
def backward(dy: np.ndarray, cache: Conv2DCache,
             need_dx: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """(dx, dw, db); need_dx=False returns dx as None and skips all of its work on every path (the
    dcols product and col2im, the pointwise dx product, the shifted dx products): dw and db keep their bits."""
    x, w, has_bias, stride, padding = cache
    n, oh, ow, cout = dy.shape
    kh, kw, cin, _ = w.shape
    (top, _), (left, _) = padding
    k = kh * kw * cin
    w2 = w.reshape(k, cout)
    dy2 = dy.reshape(n * oh * ow, cout)
    per = oh * ow
    chunk = _chunk_images(n, per, k, x.itemsize)
    parallel = _parallel(n * per * max(k, cout)) and not _threaded_gemm(chunk * per * k * cout)
    db = None
    if has_bias:
        db = (_column_sums_parallel if parallel else _column_sums_serial)(dy2, SUM_BLOCKS).astype(dy.dtype)
    if _is_pointwise(w, stride, padding):
        x2 = x.reshape(-1, cin)
        dx = None
        if need_dx:
            dx = matmul(dy2, w2.T, np.empty((dy2.shape[0], cin), dtype=x.dtype)).reshape(x.shape)
        return dx, matmul(x2.T, dy2, np.empty((cin, cout), dtype=x.dtype)).reshape(w.shape), db
    if _direct(n, w, oh, ow, k):
        return (*direct.backward(dy, x, w, stride, padding, need_dx, _image_parallel(n, oh, ow, k),
                                 _images_per_block(n)), db)
    if shifted.applies(x.shape, w.shape, stride, padding):
        dx_dw = shifted.backward(dy, x, w, padding, need_dx)
        if dx_dw is not None:  # None: non-finite values, which im2col below handles as the reference does
            return (*dx_dw, db)
    dx = np.zeros_like(x) if need_dx else None
    x3 = x.reshape(n, x.shape[1], -1)
    # Without dx the kernels get a placeholder they never touch (Numba needs an array of dx3's type).
    dx3 = dx.reshape(x3.shape) if need_dx else np.empty((0, 0, 0), dtype=x.dtype)
    dw2 = np.empty((k, cout), dtype=x.dtype)
    dw_chunk = np.empty_like(dw2)
    # cols and (with dx) dcols side by side in one workspace: cols sits at the same address either way.
    buffers = scratch("conv2d.cols", ((2 if need_dx else 1), chunk * per, k), x.dtype)
    cols = buffers[0]
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        rows = slice(start * per, stop * per)
        c = cols[:(stop - start) * per]
        # dw needs the windows again: recomputing them is one memory pass, cheaper than caching
        # an (N*OH*OW, K) matrix per layer for the whole forward/backward interval.
        _im2col(x3[start:stop], cin, kh, kw, stride[0], stride[1], top, left, oh, ow, c, parallel)
        if start == 0:
            matmul(c.T, dy2[rows], dw2)
        else:
            dw2 += matmul(c.T, dy2[rows], dw_chunk)
        if need_dx:
            dc = buffers[1][:(stop - start) * per]
            matmul(dy2[rows], w2.T, dc)
            _col2im(dc, cin, kh, kw, stride[0], stride[1], top, left, oh, ow, dx3[start:stop], parallel)
    return dx, dw2.reshape(w.shape), db
