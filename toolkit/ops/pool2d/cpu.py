"""2-D pooling as Numba kernels (CPU). Same signatures and cache as reference.py.

Forward works on output rows (n, oh); backward is written as a GATHER over input rows (n, h): each
input cell sums the gradients of the windows that contain it. Every row therefore writes its own
memory only, so overlapping windows (stride < pool_size) need no atomics and have no races. The
channel loop is innermost because channels are contiguous in memory (N, H, W, C). Float32 stays
float32 (windows are small sums). The average divides by the window's count of real cells, exactly as
gpu.py does (the two are bit-identical), and the kernels use ``error_model="numpy"``: no zero-division
branch in the loops, which lets LLVM vectorise the channel loops. The backward's window ranges along a
row are computed once per call (integer divisions per cell cost more than the sums).

2x2 windows with stride 2 and no padding (LeNet's, VGG's, most CNNs' pooling) have their own kernels
(``_tiled_*``): the four cells of a window are read in one expression instead of through window
loops. The generic loops spend most of their time on loop bounds when a window has 4 cells and a pixel
6 channels (LeNet's S2 at batch 32: average 242 -> 45-70 us for the kernel, maximum 842 -> 102 us for
cpu.forward). They
visit the cells in the same order and start from the same zero, so both give the same bits (the tests
compare them).

Threads: each kernel is written once for a range of rows (serial); a parallel driver splits the rows
into ROW_BLOCKS blocks and runs them in a prange. Inputs below PARALLEL_MIN_SIZE elements (a LeNet
layer at batch 32, about 0.1-0.3 ms of work) call the serial kernel on all rows: waking Numba's
threads costs more than that, and on a busy machine a parallel region can wait milliseconds for a
thread that is not scheduled.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .geometry import Padding, output_hw, real_cell_counts
from .reference import Pool2DCache

PARALLEL_MIN_SIZE = 1 << 20  # elements of x (or dx) below which the serial kernels run
ROW_BLOCKS = 32  # row blocks of a parallel call: a few per thread, to balance uneven rows
_KERNEL = dict(cache=True, error_model="numpy")
_NO_ARGMAX = np.zeros((1, 1, 1, 1), dtype=np.int64)  # stands in for argmax in the sum/avg backward (one compile)


@njit(**_KERNEL)
def _max_forward(x, y, argmax, ph, pw, sh, sw, top, left, row_start, row_stop):
    """Output rows row = n*OH + oh in [row_start, row_stop)."""
    h_in, w_in, channels = x.shape[1], x.shape[2], x.shape[3]
    out_h, out_w = y.shape[1], y.shape[2]
    for row in range(row_start, row_stop):
        n = row // out_h
        oh = row % out_h
        h_start = max(oh * sh - top, 0)
        h_stop = min(oh * sh - top + ph, h_in)
        for ow in range(out_w):
            w_start = max(ow * sw - left, 0)
            w_stop = min(ow * sw - left + pw, w_in)
            # The first real cell of the window seeds the maximum (validation guarantees one exists);
            # padded cells are never visited, so they can never be selected.
            for c in range(channels):
                y[n, oh, ow, c] = x[n, h_start, w_start, c]
                argmax[n, oh, ow, c] = h_start * w_in + w_start
            for h in range(h_start, h_stop):
                for w in range(w_start, w_stop):
                    for c in range(channels):
                        v = x[n, h, w, c]
                        best = y[n, oh, ow, c]
                        # strictly greater: ties keep the first maximum; v != v is NaN, which wins
                        if v > best or (v != v and best == best):
                            y[n, oh, ow, c] = v
                            argmax[n, oh, ow, c] = h * w_in + w


@njit(**_KERNEL)
def _sum_forward(x, y, counts, ph, pw, sh, sw, top, left, average, row_start, row_stop):
    """Output rows row = n*OH + oh in [row_start, row_stop)."""
    h_in, w_in, channels = x.shape[1], x.shape[2], x.shape[3]
    out_h, out_w = y.shape[1], y.shape[2]
    for row in range(row_start, row_stop):
        n = row // out_h
        oh = row % out_h
        h_start = max(oh * sh - top, 0)
        h_stop = min(oh * sh - top + ph, h_in)
        for ow in range(out_w):
            w_start = max(ow * sw - left, 0)
            w_stop = min(ow * sw - left + pw, w_in)
            for c in range(channels):
                y[n, oh, ow, c] = 0
            for h in range(h_start, h_stop):
                for w in range(w_start, w_stop):
                    for c in range(channels):
                        y[n, oh, ow, c] += x[n, h, w, c]
            if average:  # counts has x's dtype, so float32 stays float32
                count = counts[oh, ow]
                for c in range(channels):
                    y[n, oh, ow, c] = y[n, oh, ow, c] / count


@njit(cache=True, inline="always")
def _windows_containing(i, stride, pool, before, n_out):
    """Output indices [first, last] of the windows (along one axis) that contain input index i."""
    reach = i + before - pool + 1  # window o contains i iff o*stride - before <= i < o*stride - before + pool
    first = 0 if reach <= 0 else (reach + stride - 1) // stride
    last = min((i + before) // stride, n_out - 1)
    return first, last


@njit(cache=True, inline="always")
def _column_windows(w_in, sw, pw, left, out_w):
    """For every input column w, the first and last output column whose window contains it: computed
    once per call (integer divisions are slow; per cell they cost more than the sums)."""
    first = np.empty(w_in, dtype=np.int64)
    last = np.empty(w_in, dtype=np.int64)
    for w in range(w_in):
        first[w], last[w] = _windows_containing(w, sw, pw, left, out_w)
    return first, last


@njit(**_KERNEL)
def _max_backward(dy, argmax, dx, ph, pw, sh, sw, top, left, row_start, row_stop):
    """Input rows row = n*H + h in [row_start, row_stop)."""
    h_in, w_in, channels = dx.shape[1], dx.shape[2], dx.shape[3]
    out_h, out_w = dy.shape[1], dy.shape[2]
    ow_first, ow_last = _column_windows(w_in, sw, pw, left, out_w)
    for row in range(row_start, row_stop):
        n = row // h_in
        h = row % h_in
        oh_first, oh_last = _windows_containing(h, sh, ph, top, out_h)
        for w in range(w_in):
            cell = h * w_in + w
            for c in range(channels):
                dx[n, h, w, c] = 0
            for oh in range(oh_first, oh_last + 1):
                for ow in range(ow_first[w], ow_last[w] + 1):
                    for c in range(channels):
                        if argmax[n, oh, ow, c] == cell:
                            dx[n, h, w, c] += dy[n, oh, ow, c]


@njit(**_KERNEL)
def _sum_backward(dy, counts, dx, ph, pw, sh, sw, top, left, row_start, row_stop):
    """Input rows row = n*H + h in [row_start, row_stop)."""
    h_in, w_in, channels = dx.shape[1], dx.shape[2], dx.shape[3]
    out_h, out_w = dy.shape[1], dy.shape[2]
    ow_first, ow_last = _column_windows(w_in, sw, pw, left, out_w)
    for row in range(row_start, row_stop):
        n = row // h_in
        h = row % h_in
        oh_first, oh_last = _windows_containing(h, sh, ph, top, out_h)
        for w in range(w_in):
            for c in range(channels):
                dx[n, h, w, c] = 0
            for oh in range(oh_first, oh_last + 1):
                for ow in range(ow_first[w], ow_last[w] + 1):
                    count = counts[oh, ow]  # the real cells for "avg", exactly 1 for "sum"
                    for c in range(channels):
                        dx[n, h, w, c] += dy[n, oh, ow, c] / count


# --------------------------------------------------------------------------- 2x2 windows, stride 2, no padding
@njit(**_KERNEL)
def _tiled_sum_forward(x, y, average, row_start, row_stop):
    """Output rows [row_start, row_stop) of a sum or average over the 2x2 tiles (the generic kernel's
    order: 0 + top-left + top-right + bottom-left + bottom-right, then / 4)."""
    out_h, out_w, channels = y.shape[1], y.shape[2], y.shape[3]
    zero, four = x.dtype.type(0), x.dtype.type(4)
    for row in range(row_start, row_stop):
        n = row // out_h
        h = 2 * (row % out_h)
        for ow in range(out_w):
            w = 2 * ow
            for c in range(channels):
                total = zero + x[n, h, w, c] + x[n, h, w + 1, c] + x[n, h + 1, w, c] + x[n, h + 1, w + 1, c]
                y[n, h // 2, ow, c] = total / four if average else total


@njit(**_KERNEL)
def _tiled_max_forward(x, y, argmax, row_start, row_stop):
    """Output rows [row_start, row_stop) of the 2x2 tiles' maximum, by the generic kernel's rules: the
    first cell seeds, the others follow in row-major order, strictly greater wins (ties keep the first)
    and a NaN wins and stays. The NaN rule costs a compound test per cell that LLVM leaves as branches
    (random data mispredicts them: 600 us for LeNet's S2 against 90 us with a plain ">"), so the plain
    comparisons run first and a window holding a NaN (its sum is NaN) is redone with the full rule."""
    w_in = x.shape[2]
    out_h, out_w, channels = y.shape[1], y.shape[2], y.shape[3]
    for row in range(row_start, row_stop):
        n = row // out_h
        h = 2 * (row % out_h)
        for ow in range(out_w):
            w = 2 * ow
            first = h * w_in + w
            for c in range(channels):
                a, b = x[n, h, w, c], x[n, h, w + 1, c]
                d, e = x[n, h + 1, w, c], x[n, h + 1, w + 1, c]
                best, cell = a, first
                if b > best:
                    best, cell = b, first + 1
                if d > best:
                    best, cell = d, first + w_in
                if e > best:
                    best, cell = e, first + w_in + 1
                total = a + b + d + e
                if total != total:  # a NaN in the window (or inf - inf, which the full rule handles too)
                    best, cell = a, first
                    if b > best or (b != b and best == best):
                        best, cell = b, first + 1
                    if d > best or (d != d and best == best):
                        best, cell = d, first + w_in
                    if e > best or (e != e and best == best):
                        best, cell = e, first + w_in + 1
                y[n, h // 2, ow, c] = best
                argmax[n, h // 2, ow, c] = cell


@njit(**_KERNEL)
def _tiled_backward(dy, argmax, dx, is_max, average, row_start, row_stop):
    """Input rows [row_start, row_stop) of dx: each cell gets its one tile's gradient (max: only the
    selected cell; average: / 4), written as 0 + g like the generic gather; the last row/column of an
    odd-sized input is in no tile and gets 0. One loop per mode: a mode test inside the channel loop
    kept LLVM from vectorising it."""
    h_in, w_in, channels = dx.shape[1], dx.shape[2], dx.shape[3]
    out_h, out_w = dy.shape[1], dy.shape[2]
    zero, four = dx.dtype.type(0), dx.dtype.type(4)
    for row in range(row_start, row_stop):
        n = row // h_in
        h = row % h_in
        oh = h // 2
        for w in range(w_in):
            ow = w // 2
            if oh >= out_h or ow >= out_w:
                for c in range(channels):
                    dx[n, h, w, c] = zero
            elif is_max:
                cell = h * w_in + w
                for c in range(channels):
                    dx[n, h, w, c] = zero + dy[n, oh, ow, c] if argmax[n, oh, ow, c] == cell else zero
            elif average:
                for c in range(channels):
                    dx[n, h, w, c] = zero + dy[n, oh, ow, c] / four
            else:
                for c in range(channels):
                    dx[n, h, w, c] = zero + dy[n, oh, ow, c]


def _tiled(pool, stride, padding) -> bool:
    return tuple(pool) == (2, 2) and tuple(stride) == (2, 2) and tuple(map(tuple, padding)) == ((0, 0), (0, 0))


# --------------------------------------------------------------------------- parallel drivers
@njit(cache=True, parallel=True)
def _max_forward_parallel(x, y, argmax, ph, pw, sh, sw, top, left):
    rows = y.shape[0] * y.shape[1]
    per = (rows + ROW_BLOCKS - 1) // ROW_BLOCKS
    for blk in prange(ROW_BLOCKS):  # disjoint output rows per block
        _max_forward(x, y, argmax, ph, pw, sh, sw, top, left, min(rows, blk * per), min(rows, (blk + 1) * per))


@njit(cache=True, parallel=True)
def _sum_forward_parallel(x, y, counts, ph, pw, sh, sw, top, left, average):
    rows = y.shape[0] * y.shape[1]
    per = (rows + ROW_BLOCKS - 1) // ROW_BLOCKS
    for blk in prange(ROW_BLOCKS):
        _sum_forward(x, y, counts, ph, pw, sh, sw, top, left, average,
                     min(rows, blk * per), min(rows, (blk + 1) * per))


@njit(cache=True, parallel=True)
def _max_backward_parallel(dy, argmax, dx, ph, pw, sh, sw, top, left):
    rows = dx.shape[0] * dx.shape[1]
    per = (rows + ROW_BLOCKS - 1) // ROW_BLOCKS
    for blk in prange(ROW_BLOCKS):  # disjoint input rows per block (the gather form)
        _max_backward(dy, argmax, dx, ph, pw, sh, sw, top, left, min(rows, blk * per), min(rows, (blk + 1) * per))


@njit(cache=True, parallel=True)
def _tiled_sum_forward_parallel(x, y, average):
    rows = y.shape[0] * y.shape[1]
    per = (rows + ROW_BLOCKS - 1) // ROW_BLOCKS
    for blk in prange(ROW_BLOCKS):
        _tiled_sum_forward(x, y, average, min(rows, blk * per), min(rows, (blk + 1) * per))


@njit(cache=True, parallel=True)
def _tiled_max_forward_parallel(x, y, argmax):
    rows = y.shape[0] * y.shape[1]
    per = (rows + ROW_BLOCKS - 1) // ROW_BLOCKS
    for blk in prange(ROW_BLOCKS):
        _tiled_max_forward(x, y, argmax, min(rows, blk * per), min(rows, (blk + 1) * per))


@njit(cache=True, parallel=True)
def _tiled_backward_parallel(dy, argmax, dx, is_max, average):
    rows = dx.shape[0] * dx.shape[1]
    per = (rows + ROW_BLOCKS - 1) // ROW_BLOCKS
    for blk in prange(ROW_BLOCKS):
        _tiled_backward(dy, argmax, dx, is_max, average, min(rows, blk * per), min(rows, (blk + 1) * per))


@njit(cache=True, parallel=True)
def _sum_backward_parallel(dy, counts, dx, ph, pw, sh, sw, top, left):
    rows = dx.shape[0] * dx.shape[1]
    per = (rows + ROW_BLOCKS - 1) // ROW_BLOCKS
    for blk in prange(ROW_BLOCKS):
        _sum_backward(dy, counts, dx, ph, pw, sh, sw, top, left, min(rows, blk * per), min(rows, (blk + 1) * per))


def _counts(x_hw, out_hw, pool, stride, padding, dtype, average: bool) -> np.ndarray:
    """(OH, OW): the real cells of each window in the array's dtype for "avg"; ones for "sum" (the
    backward divides by them: by exactly 1 for a sum)."""
    if not average:
        return np.ones(out_hw, dtype=dtype)
    return real_cell_counts(x_hw, out_hw, pool, stride, padding, dtype)


def forward(x: np.ndarray, pool: tuple[int, int], stride: tuple[int, int], padding: Padding,
            mode: str) -> tuple[np.ndarray, Pool2DCache]:
    out = output_hw(x.shape[1:3], pool, stride, padding)
    y = np.empty((x.shape[0], *out, x.shape[3]), dtype=x.dtype)
    geometry = (pool[0], pool[1], stride[0], stride[1], padding[0][0], padding[1][0])
    parallel = x.size >= PARALLEL_MIN_SIZE
    rows = (0, y.shape[0] * y.shape[1])
    argmax = None
    if _tiled(pool, stride, padding):
        if mode == "max":
            argmax = np.empty(y.shape, dtype=np.int64)
            if parallel:
                _tiled_max_forward_parallel(x, y, argmax)
            else:
                _tiled_max_forward(x, y, argmax, *rows)
        elif parallel:
            _tiled_sum_forward_parallel(x, y, mode == "avg")
        else:
            _tiled_sum_forward(x, y, mode == "avg", *rows)
        return y, Pool2DCache(mode, tuple(x.shape), x.dtype, pool, stride, padding, argmax)
    if mode == "max":
        argmax = np.empty(y.shape, dtype=np.int64)
        if parallel:
            _max_forward_parallel(x, y, argmax, *geometry)
        else:
            _max_forward(x, y, argmax, *geometry, *rows)
    else:
        average = mode == "avg"
        counts = _counts(x.shape[1:3], out, pool, stride, padding, x.dtype, average)
        if parallel:
            _sum_forward_parallel(x, y, counts, *geometry, average)
        else:
            _sum_forward(x, y, counts, *geometry, average, *rows)
    return y, Pool2DCache(mode, tuple(x.shape), x.dtype, pool, stride, padding, argmax)


def backward(dy: np.ndarray, cache: Pool2DCache) -> np.ndarray:
    mode, x_shape, dtype, pool, stride, padding, argmax = cache
    dx = np.empty(x_shape, dtype=dtype)
    geometry = (pool[0], pool[1], stride[0], stride[1], padding[0][0], padding[1][0])
    parallel = dx.size >= PARALLEL_MIN_SIZE
    rows = (0, x_shape[0] * x_shape[1])
    if _tiled(pool, stride, padding):
        selected = argmax if mode == "max" else _NO_ARGMAX
        if parallel:
            _tiled_backward_parallel(dy, selected, dx, mode == "max", mode == "avg")
        else:
            _tiled_backward(dy, selected, dx, mode == "max", mode == "avg", *rows)
        return dx
    if mode == "max":
        if parallel:
            _max_backward_parallel(dy, argmax, dx, *geometry)
        else:
            _max_backward(dy, argmax, dx, *geometry, *rows)
    else:
        average = mode == "avg"
        counts = _counts(x_shape[1:3], dy.shape[1:3], pool, stride, padding, np.dtype(dtype), average)
        if parallel:
            _sum_backward_parallel(dy, counts, dx, *geometry)
        else:
            _sum_backward(dy, counts, dx, *geometry, *rows)
    return dx
