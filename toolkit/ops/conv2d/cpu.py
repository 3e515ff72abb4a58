"""2-D convolution on the CPU: Numba im2col/col2im kernels around a BLAS matrix product.

Same signatures and cache as reference.py. Why im2col + GEMM rather than a direct loop: a convolution
is a matrix product in disguise, and BLAS's blocked, vectorised GEMM runs far closer to the machine's
peak than any loop we could write. im2col copies each window into one row of a matrix

    cols[(n, i, j), (kh, kw, ci)] = xp[n, i*sh + kh, j*sw + kw, ci]      (M = N*OH*OW rows, K = KH*KW*Cin columns)

so that, with w viewed as a (K, Cout) matrix and y as (M, Cout):

    forward:   y  = cols @ w + b
    backward:  dw = cols^T @ dy,   dcols = dy @ w^T  (then col2im adds dcols back onto the windows),   db = sum of dy

Channels-last makes this cheap: the Cin values of one pixel are contiguous in x and in a cols row, and
y's memory layout *is* the (M, Cout) matrix, so the product writes straight into y.

* im2col runs in parallel over (image, output row): each iteration fills its own rows of cols. Padding
  is not materialised: windows read zeros where they stick out of x.
* col2im is written as a *gather* over input rows: iteration (n, input row) sums into its own row of dx
  every dcols entry that came from it, so parallel iterations never write the same memory (a scatter
  over windows would race where windows overlap).
* The batch is processed in chunks of images whose cols matrix fits in CHUNK_BYTES: that bounds the
  extra memory (cols is KH*KW times the size of x). Chunks from 1 MB to the whole batch ran within
  10% of each other single-threaded, so the chunk is kept large: fewer parallel regions and BLAS calls.
* Small problems run on one thread (see _threads_for): starting a parallel region costs more than
  their loops.
* The GEMM runs in the input dtype (float32 stays float32, as in PyTorch/cuDNN); only db, a sum over
  all N*OH*OW positions, is accumulated in float64 because a long float32 sum loses digits.
* The bias add and the db sum are small Numba loops too: NumPy's broadcasting over rows of a few
  channels costs more than the loops themselves.
* A 1x1 kernel with stride 1 and no padding needs no im2col: x viewed as (M, Cin) already is cols.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numba
import numpy as np
from numba import njit, prange

from .reference import IEEE_QUIET, Conv2DCache

CHUNK_BYTES = 16 << 20  # cols of one chunk of images: fits the L3 cache, big enough for an efficient GEMM
PARALLEL_MIN_WORK = 1 << 16  # cols elements below which waking the threads costs more than the loops
SUM_BLOCKS = 64  # row blocks of the db reduction: enough to balance the threads, few partials to add


@njit(cache=True, parallel=True)
def _im2col(x3, c_size, kh_size, kw_size, sh, sw, top, left, oh_size, ow_size, cols):
    """cols[(n*OH + i)*OW + j, (kh*KW + kw)*C + c] = x[n, i*sh + kh - top, j*sw + kw - left, c], 0 outside x.

    x3 is x viewed as (N, H, W*C), so pixel iw, channel c of a row sits at x3[n, ih, iw*C + c].

    The KW pixels of one filter row lie side by side in x, so their KW*C values are one contiguous run:
    copied with a single loop (a memcpy for LLVM) unless the window crosses the left/right border.
    """
    n_size, h, wc = x3.shape
    w = wc // c_size
    run = kw_size * c_size
    for r in prange(n_size * oh_size):
        n = r // oh_size
        i = r % oh_size
        for j in range(ow_size):
            row = r * ow_size + j
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


@njit(cache=True, parallel=True)
def _col2im(dcols, c_size, kh_size, kw_size, sh, sw, top, left, oh_size, ow_size, dx3):
    """dx[n, ih, iw, c] += every dcols entry im2col copied from x[n, ih, iw, c]; dx3 is dx as (N, H, W*C), zeroed.

    Gather form: the iteration for (n, ih) finds the (output row i, filter row kh) pairs with
    i*sh + kh - top == ih and adds their runs into row ih of image n only: race-free in parallel.
    """
    n_size, h, wc = dx3.shape
    w = wc // c_size
    run = kw_size * c_size
    for r in prange(n_size * h):
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
                row = (n * oh_size + i) * ow_size + j
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


@njit(cache=True, parallel=True)
def _add_bias(y2, b):
    """y2[r, :] += b for every row: NumPy's broadcast add is slow when the rows are short (few channels)."""
    for r in prange(y2.shape[0]):
        for c in range(y2.shape[1]):
            y2[r, c] += b[c]


@njit(cache=True, parallel=True)
def _column_sums(a, blocks):
    """Column sums of a (rows, C) matrix, accumulated in float64: db sums N*OH*OW values per channel.

    Each parallel iteration sums its own block of rows into its own row of partials (no shared
    accumulator, so no race); the few partial rows are added afterwards.
    """
    rows, cols = a.shape
    per = (rows + blocks - 1) // blocks
    partial = np.zeros((blocks, cols), dtype=np.float64)
    for blk in prange(blocks):
        for r in range(blk * per, min(rows, (blk + 1) * per)):
            for c in range(cols):
                partial[blk, c] += a[r, c]
    total = np.zeros(cols, dtype=np.float64)
    for blk in range(blocks):
        for c in range(cols):
            total[c] += partial[blk, c]
    return total


@contextmanager
def _threads_for(work: int) -> Iterator[None]:
    """Run small problems on one thread: a parallel region costs tens of microseconds to start (much
    more on a busy machine), more than a small convolution's loops. Numba's thread count is per calling
    thread, so this does not affect other threads."""
    if work >= PARALLEL_MIN_WORK:
        yield
        return
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def _is_pointwise(w: np.ndarray, stride, padding) -> bool:
    return w.shape[0] == 1 and w.shape[1] == 1 and tuple(stride) == (1, 1) and padding == ((0, 0), (0, 0))


def _chunk_images(n: int, rows_per_image: int, k: int, itemsize: int) -> int:
    """How many images per chunk so that a chunk's cols matrix stays within CHUNK_BYTES (at least 1)."""
    return max(1, min(n, CHUNK_BYTES // max(1, rows_per_image * k * itemsize)))


@IEEE_QUIET
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
    with _threads_for(n * oh * ow * max(k, cout)):
        if _is_pointwise(w, stride, padding):
            np.matmul(x.reshape(-1, cin), w2, out=y2)
        else:
            per = oh * ow
            chunk = _chunk_images(n, per, k, x.itemsize)
            cols = np.empty((chunk * per, k), dtype=x.dtype)
            x3 = x.reshape(n, x.shape[1], -1)
            for start in range(0, n, chunk):
                stop = min(n, start + chunk)
                c = cols[:(stop - start) * per]
                _im2col(x3[start:stop], cin, kh, kw, stride[0], stride[1], top, left, oh, ow, c)
                np.matmul(c, w2, out=y2[start * per:stop * per])
        if b is not None:
            _add_bias(y2, b)
    return y, cache


@IEEE_QUIET
def backward(dy: np.ndarray, cache: Conv2DCache) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    x, w, has_bias, stride, padding = cache
    n, oh, ow, cout = dy.shape
    kh, kw, cin, _ = w.shape
    (top, _), (left, _) = padding
    k = kh * kw * cin
    w2 = w.reshape(k, cout)
    dy2 = dy.reshape(n * oh * ow, cout)
    with _threads_for(n * oh * ow * max(k, cout)):
        db = _column_sums(dy2, SUM_BLOCKS).astype(dy.dtype) if has_bias else None
        if _is_pointwise(w, stride, padding):
            x2 = x.reshape(-1, cin)
            return (dy2 @ w2.T).reshape(x.shape), (x2.T @ dy2).reshape(w.shape), db
        dx = np.zeros_like(x)
        dx3 = dx.reshape(n, x.shape[1], -1)  # a view: col2im writes into dx
        dw2 = np.zeros((k, cout), dtype=x.dtype)
        per = oh * ow
        chunk = _chunk_images(n, per, k, x.itemsize)
        cols = np.empty((chunk * per, k), dtype=x.dtype)
        dcols = np.empty_like(cols)
        x3 = x.reshape(n, x.shape[1], -1)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            rows = slice(start * per, stop * per)
            c, dc = cols[:(stop - start) * per], dcols[:(stop - start) * per]
            # dw needs the windows again: recomputing them is one memory pass, cheaper than caching
            # an (N*OH*OW, K) matrix per layer for the whole forward/backward interval.
            _im2col(x3[start:stop], cin, kh, kw, stride[0], stride[1], top, left, oh, ow, c)
            dw2 += c.T @ dy2[rows]
            np.matmul(dy2[rows], w2.T, out=dc)
            _col2im(dc, cin, kh, kw, stride[0], stride[1], top, left, oh, ow, dx3[start:stop])
    return dx, dw2.reshape(w.shape), db
