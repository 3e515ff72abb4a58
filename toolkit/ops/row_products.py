"""Products of a few rows by a matrix, register-tiled with toolkit.ops.simd, callable inside Numba threads.

    packed = pack(b)                                     # once: b (K, M) in column blocks
    rows_times(a, a_start, a_stride, rows, packed, out, out_start, out_stride)
    out row r (r < rows) = a row r @ b, where a row r is a.flat[a_start + r*a_stride :][:K] and
    out row r is out.flat[out_start + r*out_stride :][:M]

    strided_rows_times(...)    the same tile with a's elements any stride apart (columns of a: rows of a^T
                               without a copy), over a range of k, stored or added into out; for
                               attention's tiled path (toolkit/ops/attention/tiled.py)

Why not BLAS: a recurrence (the LSTM's h_{t-1} U, and dz_t U^T going back) needs one small product per
time step, and its batch rows are independent sequences. Split by rows over Numba's threads, each thread
runs the whole time loop for its rows, one parallel region for all T steps; a BLAS call inside it
would be SciPy's OpenBLAS with a thread pool of its own (see toolkit/ops/lstm/cpu.py), and outside it
a parallel region per step (or OpenBLAS's threads on 32 rows) is what cost the LSTM its speed.

The tile: 4 rows x one vector of L columns (16 float32, 8 float64) of out in registers; each step over k
loads b[k, j : j + L] once and multiplies it by a broadcast a value of each of the 4 rows. Columns are the
outer loop, so a column block of b (K x L values: 16 KB for K = 256, float32) stays in the L1 cache while
every row group passes over it. That needs the block contiguous (``pack``): read in place from b's rows (4
KB apart for M = 1024) its lines all fall in the same L1 sets and evict each other; the 16 x 256 x 1024
float32 product ran at 17.6 GMAC/s in place, 43 packed (one core). Every row is computed with the same
operations in the same order whether it falls in a tile of 4 or in the remainder loop, so the bits of a
row do not depend on how rows are split between threads.

Requires (the caller checks, nothing here does): every flat index in range; rows_times writes whole
vectors, so an out row needs room for ceil(M / L) * L values (``product`` makes that room where M is not
a multiple of L, ``fits`` says when it is).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from .scratch import scratch
from .simd import (wide_add, wide_fma, wide_fma4, wide_lanes, wide_load, wide_splat, wide_store, wide_store4,
                   wide_zeros)


PARALLEL_MIN_MACS = 1 << 22  # a product (or a pack of this / 64 elements) from which Numba's threads help


def fits(m: int, dtype) -> bool:
    """Whether rows_times can produce M columns of this dtype: whole vectors only."""
    return m % (64 // np.dtype(dtype).itemsize) == 0


def pack(b: np.ndarray, slot: str | None = None) -> np.ndarray:
    """b (K, M) as (ceil(M / L), K, L): each block of L columns contiguous, for rows_times; columns past M
    (when M is no whole number of vectors) are zeros, and products by them are dropped by ``product``.
    slot: write it into that scratch slot (toolkit.ops.scratch) instead of a fresh array."""
    k_size, m_size = b.shape
    lane = 64 // b.itemsize
    shape = (-(-m_size // lane), k_size, lane)
    packed = np.empty(shape, dtype=b.dtype) if slot is None else scratch(slot, shape, b.dtype)
    (_pack_parallel if b.size >= PARALLEL_MIN_MACS // 64 else _pack_serial)(b, packed)
    return packed


@njit(cache=True, inline="always")
def _pack_rows(b, packed, k_start, k_stop):
    """Rows [k_start, k_stop) of b into packed: each row read once, left to right."""
    m_size = b.shape[1]
    lane = packed.shape[2]
    whole = m_size // lane
    for k in range(k_start, k_stop):
        for jb in range(whole):
            for i in range(lane):
                packed[jb, k, i] = b[k, jb * lane + i]
        for i in range(packed.shape[0] * lane - whole * lane):  # the last, partial block: zero-filled
            j = whole * lane + i
            packed[whole, k, i] = b[k, j] if j < m_size else 0


@njit(cache=True)
def _pack_serial(b, packed):
    _pack_rows(b, packed, 0, b.shape[0])


@njit(cache=True, parallel=True)
def _pack_parallel(b, packed):
    k_size = b.shape[0]
    per = 64
    for blk in prange((k_size + per - 1) // per):  # block blk writes only rows of its own k
        _pack_rows(b, packed, blk * per, min(k_size, (blk + 1) * per))


def product(a: np.ndarray, packed: np.ndarray, m: int, parallel: bool) -> np.ndarray:
    """a (R, K), C-contiguous, @ the (K, m) matrix that ``packed`` holds: a new (R, m) array. The rows
    are split in blocks over Numba's threads when ``parallel``. For the big products of a layer whose
    other work runs on Numba's threads: going to OpenBLAS's threads in between makes each pool spin
    against the other (see toolkit/ops/lstm/cpu.py)."""
    rows, k_size = a.shape
    assert packed.shape[1] == k_size and packed.dtype == a.dtype and a.flags.c_contiguous
    width = packed.shape[0] * packed.shape[2]
    out = np.empty((rows, width), dtype=a.dtype)
    blocks = min(rows, 8 * numba.get_num_threads()) if parallel else 1  # a few per thread: balance
    (_product_parallel if parallel else _product_serial)(a, packed, out, max(1, blocks))
    return out if width == m else np.ascontiguousarray(out[:, :m])


@njit(cache=True)
def _product_serial(a, packed, out, blocks):
    rows_times(a, 0, a.shape[1], a.shape[0], packed, out, 0, out.shape[1])


@njit(cache=True, parallel=True)
def _product_parallel(a, packed, out, blocks):
    rows, k_size = a.shape
    per = (rows + blocks - 1) // blocks
    for blk in prange(blocks):  # block blk writes only its rows of out
        r0 = min(rows, blk * per)
        rows_times(a, r0 * k_size, k_size, min(rows, r0 + per) - r0, packed, out, r0 * out.shape[1], out.shape[1])


@njit(cache=True)
def rows_times(a, a_start, a_stride, rows, packed, out, out_start, out_stride):
    blocks, k_size, _ = packed.shape
    strided_rows_times(a, a_start, a_stride, 1, rows, packed, 0, blocks, k_size, 0, k_size, out, out_start,
                       out_stride, False)


@njit(cache=True)
def strided_rows_times(a, a_start, a_row, a_step, rows, b, b_start, blocks, k_size, k0, k1, out, out_start,
                       out_stride, accumulate):
    """out row r (r < rows) = (or +=, when accumulate) the sum over k in [k0, k1) of a.flat[a_start + r*a_row
    + k*a_step] * B[k, :], where B (k_size, blocks * L) is packed from b.flat[b_start:] as ``pack`` lays
    it out (column block jb at b_start + jb*k_size*L). a_step = 1 reads rows of a; a_row = 1 and a_step =
    a row stride read columns of a, i.e. rows of a^T, without a transposed copy. A range of k keeps the
    packed column block of a long product in the L1 cache (the caller sums the ranges, accumulate=True
    after the first)."""
    lane = wide_lanes(b)
    zero = wide_zeros(b)
    for jb in range(blocks):
        j = jb * lane
        col = b_start + jb * k_size * lane
        r = 0
        while r + 4 <= rows:
            a0 = a_start + r * a_row
            a1 = a0 + a_row
            a2 = a1 + a_row
            a3 = a2 + a_row
            s0 = zero
            s1 = zero
            s2 = zero
            s3 = zero
            for k in range(k0, k1):
                step = k * a_step
                s0, s1, s2, s3 = wide_fma4(a, a0 + step, a1 + step, a2 + step, a3 + step,
                                           wide_load(b, col + k * lane), s0, s1, s2, s3)
            o = out_start + r * out_stride + j
            if accumulate:
                wide_add(out, o, s0)
                wide_add(out, o + out_stride, s1)
                wide_add(out, o + 2 * out_stride, s2)
                wide_add(out, o + 3 * out_stride, s3)
            else:
                wide_store4(out, o, out_stride, s0, s1, s2, s3)
            r += 4
        while r < rows:
            a0 = a_start + r * a_row
            s0 = zero
            for k in range(k0, k1):
                s0 = wide_fma(wide_splat(a, a0 + k * a_step), wide_load(b, col + k * lane), s0)
            if accumulate:
                wide_add(out, out_start + r * out_stride + j, s0)
            else:
                wide_store(out, out_start + r * out_stride + j, s0)
            r += 1
