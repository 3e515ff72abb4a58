"""Attention with register-tiled products on Numba's threads: no BLAS, one thread pool.

Taken by cpu.py, masked or not, when d, dv and Tk are whole numbers of vectors (16 float32 or 8 float64
values: the tiles store whole vectors into rows of Tk, d or dv values, ``applies``) and the call is big
enough for the threads. The products are toolkit.ops.row_products' 4-row x one-vector tiles
(``strided_rows_times``), the row kernels are rows.py's.

    forward, per (element n, block of query rows):  W_blk = q_blk k^T, softmax rows in place, out_blk = W_blk v
    backward, per (element n, block of query rows): dW_blk = dout_blk v^T, s * dS rows in place, dq_blk = (s dS_blk) k
    backward, per (element n, block of keys):       dk_blk = (s dS[:, keys])^T q, dv_blk = W[:, keys]^T dout

Every block writes its own rows of W, out, dS and dq, or its own keys of dk and dv, so the blocks run on
Numba's threads with no reduction, and each output value is computed by one block in one order: the same
bits on any number of threads. The products of the key blocks read dS and W by columns (``a_step`` = a
row stride), so no transposed copy is made. The right-hand matrices (k^T, v, v^T, k, q, dout of each
element) are packed in column blocks first (``_pack``), a pass over N x T x d values each.

Masks are applied in the softmax rows. When skipping is exact (the caller's ``skip``: no Inf or NaN a
skipped 0 * x would turn into NaN, see cpu.py), a block of query rows also leaves out of its products the
keys from its stop on (blocks.py: no row of the block may attend to them), and a block of keys sums only
the query blocks that reach it: a causal mask skips about half the products, as cpu.py's masked path
does. Otherwise every product runs over all keys, masked ones included, as in the reference.

Why: the whole-matrix path runs its products as per-element OpenBLAS calls on OpenBLAS's threads and the
softmax rows between them serially (two pools that spin against each other must not alternate, see
cpu.py). Here the forward is two parallel regions, the backward three, and the products run at the
tiles' speed, 35-45 GMAC/s a thread when their operands are in cache (q_blk k^T 64x64x512, W_blk v
64x512x64, dS^T q by columns 512x64x64, timed alone).

Measured on this 2-core VM (2026-11-21, float32, f+b medians, load average < 1), ours through the
whole-matrix path -> this path, PyTorch's scaled_dot_product_attention alongside:
N8 T512 d64 22-28 -> 16.7-18.5 ms (PyTorch 21.7-22.4; 14.3 ms in ``python -m bench --op attention``,
1.29x PyTorch); N2 T2048 d64 90 -> 76 ms (140);
N1 T4096 d64 161 -> 150 ms (234); N64 T64 d64 6.7 -> 3.9 ms (4.4); N16 T512 d16 25-38 -> 17 ms (30).
BLOCK_BYTES: with blocks of 128 KB of W (16 rows at T2048) the T2048 forward took 44 ms, with 512 KB
(64 rows) 29-30 ms: a block streams all of the packed k^T and v (512 KB each at T2048), too few rows
for that. At T2048 the key blocks, which read dS and W by columns 8 KB apart, take 22-25 of the
backward's 45 ms against 16-21 for the query blocks; at T512 both take about 5 ms.

Precision: float32 products sum in float32, in k ranges of ``K_RANGE`` (partial sums added into the
output tile, as BLAS does across its own blocks); the scale s of the backward is applied to dS, before
its products (the reference applies it after: the results differ in the last bits).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..row_products import strided_rows_times
from ..scratch import scratch
from .blocks import balanced, block_key_stops
from .rows import NO_MASK, mask_row, scaled_softmax_grad_row, softmax_row

BLOCK_BYTES = 512 * 1024  # a block of query rows holds about this much of W (or dS) at most
MAX_BLOCK_ROWS = 64
K_RANGE = 128  # depth of one pass of a long product: its packed column block (K_RANGE x 64 B) stays in L1
PARALLEL_MIN_SIZE = 1 << 15  # score entries N*Tq*Tk from which the parallel twins run (as cpu.py's rows)


def lanes(dtype) -> int:
    return 64 // np.dtype(dtype).itemsize


def applies(q_shape: tuple[int, ...], k_shape: tuple[int, ...], v_shape: tuple[int, ...], dtype) -> bool:
    """Whether this path can run: every tile stores whole vectors into rows of Tk (W, dS), d (dq, dk) and
    dv (out, dv) values."""
    lane = lanes(dtype)
    return q_shape[2] % lane == 0 and v_shape[2] % lane == 0 and k_shape[1] % lane == 0


def block_rows(tk: int, itemsize: int) -> int:
    """Query rows a block: rows of Tk values filling about BLOCK_BYTES, a multiple of 4 (the tile height)
    between 4 and MAX_BLOCK_ROWS."""
    rows = BLOCK_BYTES // (tk * itemsize)
    return max(4, min(MAX_BLOCK_ROWS, rows - rows % 4))


# --------------------------------------------------------------------------- packing
@njit(cache=True, inline="always")
def _pack(src, transpose, packed):
    """packed[jb, kk, i] = B[kk, jb*L + i], for B = src (K, M), or src^T when transpose: the column blocks
    of B, each contiguous (row_products.pack's layout). M is a whole number of vectors here."""
    blocks, k_size, lane = packed.shape
    for jb in range(blocks):
        for kk in range(k_size):
            for i in range(lane):
                packed[jb, kk, i] = src[jb * lane + i, kk] if transpose else src[kk, jb * lane + i]


@njit(cache=True, inline="always")
def _pack_pair(u, u_transpose, u_packed, w, w_transpose, w_packed, job):
    """Job 2n packs element n of u, job 2n+1 element n of w (the parallel drivers split the 2N jobs over
    Numba's threads)."""
    n = job // 2
    if job % 2 == 0:
        _pack(u[n], u_transpose, u_packed[n])
    else:
        _pack(w[n], w_transpose, w_packed[n])


# --------------------------------------------------------------------------- products
@njit(cache=True)
def _product(a, a_start, a_row, a_step, rows, b, b_start, blocks, k0, k1, out, out_start, out_stride, k_range,
             accumulate):
    """out rows = (or +=, when accumulate) a rows (a_step = 1) or a columns (a_row = 1) times the first
    ``blocks`` column blocks of the packed matrix b.flat[b_start:] of shape (blocks', K, L) = b.shape[1:],
    summed over k in [k0, k1) in ranges of k_range (K_RANGE)."""
    k_size = b.shape[2]
    for r0 in range(k0, k1, k_range):
        strided_rows_times(a, a_start, a_row, a_step, rows, b, b_start, blocks, k_size, r0, min(k1, r0 + k_range),
                           out, out_start, out_stride, accumulate or r0 > k0)


# --------------------------------------------------------------------------- one block
# Flat offsets: row r of element n of a (N, T, width) array starts at (n*T + r) * width; element n of a packed
# (N, blocks, K, L) array at n * packed[0].size. stop: the block's key stop (blocks.py), Tk when the block
# reaches every key; the products run over whole vectors of keys, [0, stop rounded up to a vector).
@njit(cache=True, error_model="numpy")
def _forward_block(q, mask, has_mask, w, out, kt_packed, v_packed, n, r0, r1, stop, k_range, scale, neg_inf, zero):
    """W and out of query rows [r0, r1) of element n (the mask applied in the softmax rows); weights from
    key stop on are 0 and the products skip them."""
    tq, d = q.shape[1], q.shape[2]
    tk, dv = w.shape[2], out.shape[2]
    row, rows = n * tq + r0, r1 - r0
    if stop == 0:  # every row of the block fully masked: zero weights, zero output
        w[n, r0:r1] = zero
        out[n, r0:r1] = zero
        return
    lane = kt_packed.shape[3]
    _product(q, row * d, d, 1, rows, kt_packed, n * kt_packed[0].size, (stop + lane - 1) // lane, 0, d, w, row * tk,
             tk, k_range, False)
    for i in range(r0, r1):
        softmax_row(w[n, i, :stop], mask_row(mask, has_mask, n, i)[:stop], has_mask, scale, neg_inf, zero)
        w[n, i, stop:] = zero
    _product(w, row * tk, tk, 1, rows, v_packed, n * v_packed[0].size, v_packed.shape[1], 0, stop, out, row * dv,
             dv, k_range, False)


@njit(cache=True, error_model="numpy")
def _backward_query_block(dout, w, ds, dq, vt_packed, k_packed, n, r0, r1, stop, key_block, k_range, scale):
    """scale * dS (into ds, rows of stride ds.shape[2]) and dq of query rows [r0, r1) of element n, over
    keys [0, stop). dS is also zeroed from stop to the end of its key block (of key_block keys), the
    columns a key block reaching into this block reads (``_backward_key_block``)."""
    tq, tk, dv, d = w.shape[1], w.shape[2], dout.shape[2], dq.shape[2]
    stride = ds.shape[2]
    row, rows = n * tq + r0, r1 - r0
    zero = scale * 0
    end = min(tk, (stop + key_block - 1) // key_block * key_block)
    if stop == 0:
        ds[n, r0:r1, :end] = zero
        dq[n, r0:r1] = zero
        return
    lane = vt_packed.shape[3]
    _product(dout, row * dv, dv, 1, rows, vt_packed, n * vt_packed[0].size, (stop + lane - 1) // lane, 0, dv, ds,
             row * stride, stride, k_range, False)
    for i in range(r0, r1):
        scaled_softmax_grad_row(ds[n, i, :stop], w[n, i, :stop], scale, zero)
        ds[n, i, stop:end] = zero  # after the product, which wrote whole vectors of keys past stop
    _product(ds, row * stride, stride, 1, rows, k_packed, n * k_packed[0].size, k_packed.shape[1], 0, stop, dq,
             row * d, d, k_range, False)


@njit(cache=True, error_model="numpy")
def _backward_key_block(w, ds, dk, dv, q_packed, dout_packed, n, c0, c1, stops, block, k_range):
    """dk and dv of keys [c0, c1) of element n: columns of scale * dS and of W times q and dout, summed over
    the query rows of the blocks that reach key c0 (stops[b] > c0), runs of consecutive blocks at once."""
    tq, tk = w.shape[1], w.shape[2]
    stride, d, dvw = ds.shape[2], dk.shape[2], dv.shape[2]
    key, keys = n * tk + c0, c1 - c0
    written = False
    b = 0
    while b < stops.shape[0]:
        if stops[b] <= c0:
            b += 1
            continue
        first = b
        while b < stops.shape[0] and stops[b] > c0:
            b += 1
        q0, q1 = first * block, min(tq, b * block)  # the query rows of blocks [first, b)
        _product(ds, n * tq * stride + c0, 1, stride, keys, q_packed, n * q_packed[0].size, q_packed.shape[1], q0,
                 q1, dk, key * d, d, k_range, written)
        _product(w, n * tq * tk + c0, 1, tk, keys, dout_packed, n * dout_packed[0].size, dout_packed.shape[1], q0,
                 q1, dv, key * dvw, dvw, k_range, written)
        written = True
    if not written:  # no query may attend to these keys
        dk[n, c0:c1] = 0
        dv[n, c0:c1] = 0


# --------------------------------------------------------------------------- parallel and serial twins
# sizes = (rows of a block of queries or keys, k_range); stops (masks, blocks) as blocks.py makes them.
@njit(cache=True, inline="always")
def _stops_of(stops, n):
    return stops[n if stops.shape[0] > 1 else 0]


@njit(cache=True, parallel=True, error_model="numpy")
def _forward_parallel(q, k, v, mask, has_mask, stops, w, out, kt_packed, v_packed, sizes, scale, neg_inf, zero):
    block, k_range = sizes
    for job in prange(2 * q.shape[0]):
        _pack_pair(k, True, kt_packed, v, False, v_packed, job)
    tq = q.shape[1]
    blocks = stops.shape[1]
    for u in prange(q.shape[0] * blocks):
        n, b = u // blocks, balanced(u % blocks, blocks)
        r0 = b * block
        _forward_block(q, mask, has_mask, w, out, kt_packed, v_packed, n, r0, min(tq, r0 + block),
                       _stops_of(stops, n)[b], k_range, scale, neg_inf, zero)


@njit(cache=True, error_model="numpy")
def _forward_serial(q, k, v, mask, has_mask, stops, w, out, kt_packed, v_packed, sizes, scale, neg_inf, zero):
    block, k_range = sizes
    for job in range(2 * q.shape[0]):
        _pack_pair(k, True, kt_packed, v, False, v_packed, job)
    tq = q.shape[1]
    for n in range(q.shape[0]):
        for b in range(stops.shape[1]):
            r0 = b * block
            _forward_block(q, mask, has_mask, w, out, kt_packed, v_packed, n, r0, min(tq, r0 + block),
                           _stops_of(stops, n)[b], k_range, scale, neg_inf, zero)


@njit(cache=True, parallel=True, error_model="numpy")
def _backward_parallel(dout, q, k, v, w, stops, ds, dq, dk, dv, packs, sizes, scale):
    block, k_range = sizes
    vt_packed, k_packed, q_packed, dout_packed = packs
    n_size, tq, tk = q.shape[0], q.shape[1], k.shape[1]
    for job in prange(4 * n_size):
        if job < 2 * n_size:
            _pack_pair(v, True, vt_packed, k, False, k_packed, job)
        else:
            _pack_pair(q, False, q_packed, dout, False, dout_packed, job - 2 * n_size)
    blocks = stops.shape[1]
    for u in prange(n_size * blocks):
        n, b = u // blocks, balanced(u % blocks, blocks)
        r0 = b * block
        _backward_query_block(dout, w, ds, dq, vt_packed, k_packed, n, r0, min(tq, r0 + block),
                              _stops_of(stops, n)[b], block, k_range, scale)
    key_blocks = (tk + block - 1) // block
    for u in prange(n_size * key_blocks):  # after every row of dS is written
        n, c = u // key_blocks, balanced(u % key_blocks, key_blocks)
        c0 = c * block
        _backward_key_block(w, ds, dk, dv, q_packed, dout_packed, n, c0, min(tk, c0 + block), _stops_of(stops, n),
                            block, k_range)


@njit(cache=True, error_model="numpy")
def _backward_serial(dout, q, k, v, w, stops, ds, dq, dk, dv, packs, sizes, scale):
    block, k_range = sizes
    vt_packed, k_packed, q_packed, dout_packed = packs
    for job in range(2 * q.shape[0]):
        _pack_pair(v, True, vt_packed, k, False, k_packed, job)
        _pack_pair(q, False, q_packed, dout, False, dout_packed, job)
    tq, tk = q.shape[1], k.shape[1]
    for n in range(q.shape[0]):
        for b in range(stops.shape[1]):
            r0 = b * block
            _backward_query_block(dout, w, ds, dq, vt_packed, k_packed, n, r0, min(tq, r0 + block),
                                  _stops_of(stops, n)[b], block, k_range, scale)
        for c0 in range(0, tk, block):
            _backward_key_block(w, ds, dk, dv, q_packed, dout_packed, n, c0, min(tk, c0 + block),
                                _stops_of(stops, n), block, k_range)


# --------------------------------------------------------------------------- the op
def _packed(slot: str, n: int, k_size: int, m: int, dtype) -> np.ndarray:
    """Scratch for N matrices (K, M) packed in column blocks: (N, M / L, K, L)."""
    lane = lanes(dtype)
    return scratch(slot, (n, m // lane, k_size, lane), dtype)


def _stops(mask: np.ndarray | None, skip: bool, tq: int, tk: int, block: int) -> np.ndarray:
    """The key stops of the blocks (blocks.py) when the caller lets masked keys be skipped, else every block
    reaching all Tk keys."""
    if mask is not None and skip:
        return block_key_stops(mask, block)[0]
    return np.full((1, (tq + block - 1) // block), tk, dtype=np.int64)


def forward(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None, scale: float, skip: bool,
            w: np.ndarray, out: np.ndarray) -> None:
    """The weights into w (N, Tq, Tk) and the output into out (N, Tq, dv); the caller checked ``applies``.
    A mask (True = may attend) is applied in the softmax rows; with ``skip`` the keys a whole block of rows
    may not attend to are left out of the products too (exact only when v is finite: the caller checks)."""
    n, tq, d = q.shape
    tk, dv = k.shape[1], v.shape[2]
    t = q.dtype.type
    block = block_rows(tk, q.itemsize)
    kt_packed = _packed("attention.tiled.kt", n, d, tk, q.dtype)
    v_packed = _packed("attention.tiled.v", n, tk, dv, q.dtype)
    kernel = _forward_parallel if n * tq * tk >= PARALLEL_MIN_SIZE else _forward_serial
    has_mask = mask is not None
    kernel(q, k, v, mask if has_mask else NO_MASK, has_mask, _stops(mask, skip, tq, tk, block), w, out, kt_packed,
           v_packed, (block, K_RANGE), t(scale), t(-np.inf), t(0))


def backward(dout: np.ndarray, q: np.ndarray, k: np.ndarray, v: np.ndarray, w: np.ndarray, mask: np.ndarray | None,
             scale: float, skip: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dq, dk, dv) from the forward's weights w; the caller checked ``applies``. With ``skip``, the keys a
    whole block of rows may not attend to are left out of the products (exact only when no product term
    there is Inf or NaN: the caller checks)."""
    n, tq, d = q.shape
    tk, dvw = k.shape[1], v.shape[2]
    t = q.dtype.type
    block = block_rows(tk, q.itemsize)
    # dS rows one vector longer than Tk: the key blocks read dS by columns, and rows 2^k bytes apart would
    # all fall in the same few L1 sets.
    ds = scratch("attention.ds", (n, tq, tk + lanes(q.dtype)), q.dtype)
    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
    packs = (_packed("attention.tiled.vt", n, dvw, tk, q.dtype), _packed("attention.tiled.k", n, tk, d, q.dtype),
             _packed("attention.tiled.q", n, tq, d, q.dtype), _packed("attention.tiled.dout", n, tq, dvw, q.dtype))
    kernel = _backward_parallel if n * tq * tk >= PARALLEL_MIN_SIZE else _backward_serial
    kernel(dout, q, k, v, w, _stops(mask, skip, tq, tk, block), ds, dq, dk, dv, packs, (block, K_RANGE), t(scale))
    return dq, dk, dv
