"""Scaled dot-product attention as Numba kernels (CPU). Same signatures and cache as reference.py.

Three paths, tried in this order:

* the tiled path (tiled.py) when its tiles fit the shapes (d, dv and Tk whole numbers of vectors) and the
  call is big enough for Numba's threads: blocks of query rows, then of keys, on Numba's threads, their
  products register-tiled, no BLAS; with a mask, the keys a whole block may not see are skipped;
* the masked path, for the other shapes, which skips the keys a mask forbids to whole blocks of query
  rows (causal and padding masks) with BLAS products on views, below;
* the whole-matrix path (no mask, or a mask that skips little) for the rest, below.

Whole-matrix path. Two kinds of work, kept apart on purpose:

* the five matrix products, one BLAS GEMM per batch element (np.dot inside njit):
      forward   S[n] = q[n] k[n]^T        out[n] = W[n] v[n]
      backward  dW[n] = dout[n] v[n]^T    dq[n] = s dS[n] k[n]    dk[n] = s dS[n]^T q[n]    dv[n] = W[n]^T dout[n]
* the row-wise work, one query row per prange iteration (rows write disjoint memory, no race):
      forward   W[n, i] = masked softmax(S[n, i] * s)              in place, in the weights array
      backward  dS[n, i] = W[n, i] * (dW[n, i] - sum(dW[n, i] * W[n, i]))   in place, in the dW array

The GEMMs run in a plain loop over the batch, not inside prange: OpenBLAS threads each call itself, and
BLAS calls nested inside Numba's threads would oversubscribe the cores (measured: 50x slower on a busy
2-core machine). The row loops use Numba's threads; below ``PARALLEL_MIN_SIZE`` score entries a serial
twin of each row kernel runs, because waking the thread pool costs more than the work. One thread pool
at a time: when the per-batch products are big enough for OpenBLAS's threads (OPENBLAS_THREADED_MACS),
the row kernels run serially too. Both pools' threads spin-wait after their work, and alternating them
on 2 cores made each wait for the other (N8 T512 d64, fwd+bwd: 69 ms with parallel rows, 38 ms serial).

Masked path, as PyTorch's CPU flash kernel skips fully masked blocks:

* Query rows go in blocks of BLOCK_ROWS. stops[b] = 1 + the last key any row of block b may attend to
  (the maximum over the block's rows; 0 when all are fully masked), found once per call from the mask:
  (1, Tq, Tk) is shared by the batch, (N, Tq, Tk) per element. Keys from stops[b] on are masked for the
  whole block, so their weights are exactly 0 and every product over them is skipped.
* Forward, per (element, block): scores over keys [0, stop), the softmax rows, zeros written beyond stop
  (the cache keeps the full (N, Tq, Tk) weights), out = W[:, :stop] v[:stop].
  Backward, per (element, block): dW and dS over [0, stop), dq; then per (element, range of keys): dk and
  dv, summing the query blocks that reach those keys in block order. Every output element is written by
  one iteration in one fixed order: the serial and parallel twins give the same bits.
* Threads: the (element, block) and (element, key range) iterations run on Numba's threads, and each
  product is cut into pieces of at most ``_key_chunk`` keys so that it stays below OPENBLAS_THREADED_MACS,
  which OpenBLAS runs on the calling thread (as conv2d.cpu.matmul's pieces): one pool at a time, and the
  softmax rows are parallel too. Blocks and keys are views with the row stride of the full matrix; ``_gemm``
  hands them to BLAS as they are (np.dot would copy them).
* It runs when the blocks skip at least MIN_SKIPPED of the score entries: on one thread a mask that skips
  nothing ran 1.25x slower through the blocks than through the whole-matrix products (32-row products
  reach about 2/3 of the big ones' GFLOP/s). And only when skipping is exact: a skipped term is 0 * x, NaN
  by IEEE when x is Inf or NaN, as the reference's full products give. The forward needs v finite; the
  backward q, k, v and dout finite and q k^T, dout v^T bounded away from overflow (``_skipping_is_exact``).
  Otherwise the whole-matrix path runs and the NaN lands where the reference has it.
* Measured, N8 T512 d64 float32 causal (a shape the tiled path takes now), fwd+bwd on this 2-core machine
  (2026-11-21, load average 0.8 to 1.6): ``python -m bench --op attention`` run alternately with the old
  and the new cpu.py, 34-35 ms -> 17-18.5 ms, vs PyTorch 0.69-0.84x -> 1.16-1.40x (4 runs each; the
  unmasked row, whose path did not change, moved between 0.68x and 1.11x in the same runs: that is the
  noise). On one thread (process CPU
  time) 33-39 ms -> 29-33 ms: the skipped half of the products is mostly paid back in the smaller
  products' lower speed; the gain on two threads is that the softmax rows and the products all run on
  both (the whole-matrix path runs its rows on one thread while OpenBLAS threads the products).
* Unmasked calls do not take the masked path's blocks. Tried 2026-11-21 (N8 T512 d64 float32,
  load average 1.3 to 1.7, alternating runs): mask=None through the parallel blocks with every stop at Tk
  gave ``python -m bench --op attention`` f+b 28-43 ms (median 33) vs 24-35 ms (median 27), backward
  16-22 ms vs 10-18 ms; timed f+b loops were a draw (medians 22-36 vs 22-32 ms). The parallel
  softmax rows save about 3 of the forward's 6.5 serial ms, but products kept below
  OPENBLAS_THREADED_MACS run at 44-49 GFLOP/s per thread against 70-82 for one whole per-batch product on
  one thread, and the backward's dk and dv add up 16 products of depth 32 per key range. Blocks for the
  forward with the whole-matrix backward was worse still (42-50 ms: the two pools alternate). The tiled
  path, whose products need no BLAS and so run at full speed on Numba's threads, replaced the
  whole-matrix path for these calls: see tiled.py for its measurements.

Memory: the weights W (N, Tq, Tk) are O(T^2) per batch element and the cache keeps them by contract
(the scores are computed straight into that array, no second copy). The backward holds dS, one more
(N, Tq, Tk) array, so that dk and dv are single large GEMMs (the masked path writes only its [0, stop)
columns). dS is reused scratch (``toolkit.ops.scratch``): a fresh 8 MB array costs about 2.5 ms of page
faults per call on this VM.

Precision: float32 stays float32 in the GEMMs, the maximum and the exponentials; the row sums of the
softmax and of dW * W accumulate in float64 (a float32 sum over thousands of keys loses digits). The
masked path's products sum over keys in pieces (beta = 1 GEMMs): float32 partial sums, as inside BLAS.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.linalg import check_blas_return, ensure_blas

from . import tiled
from .blocks import balanced, block_key_stops
from .rows import NO_MASK, mask_row, masked_scores_row, softmax_grad_row, softmax_row
from ..scratch import scratch
from .reference import AttentionCache

PARALLEL_MIN_SIZE = 1 << 15  # score entries N*Tq*Tk; below this the serial row kernels run
OPENBLAS_THREADED_MACS = 1 << 19  # OpenBLAS runs a product this big on its own threads (measured on 2 cores)
BLOCK_ROWS = 32  # query rows per block of the masked path
MIN_SKIPPED = 0.125  # the masked path runs when its blocks skip at least this fraction of the score entries
MIN_CHUNK_KEYS = 16  # fewer keys per product than this (a huge d): the masked path runs serially instead


# --------------------------------------------------------------------------- batched GEMMs (BLAS)
@njit(cache=True)
def _bmm_nt(a, b, out, alpha):
    """out[n] = alpha * a[n] b[n]^T"""
    for n in range(a.shape[0]):
        np.dot(a[n], b[n].T, out[n])
        if alpha != 1:
            out[n] *= alpha


@njit(cache=True)
def _bmm_nn(a, b, out, alpha):
    """out[n] = alpha * a[n] b[n]"""
    for n in range(a.shape[0]):
        np.dot(a[n], b[n], out[n])
        if alpha != 1:
            out[n] *= alpha


@njit(cache=True)
def _bmm_tn(a, b, out, alpha):
    """out[n] = alpha * a[n]^T b[n]"""
    for n in range(a.shape[0]):
        np.dot(a[n].T, b[n], out[n])
        if alpha != 1:
            out[n] *= alpha


# --------------------------------------------------------------------------- GEMM on views (BLAS, no copy)
@intrinsic
def _xgemm(typingctx, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Fortran-order c = alpha op(a) op(b) + beta c through numba_xxgemm, the helper np.dot itself calls
    (SciPy's BLAS). np.dot would copy a view that is not contiguous, such as a block of rows and keys."""
    if not (isinstance(a, types.Array) and a.dtype in (types.float32, types.float64)
            and b.dtype == a.dtype and c.dtype == a.dtype):
        return None
    ensure_blas()  # SciPy's BLAS is there (ImportError otherwise), as np.dot checks
    sig = types.void(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

    def codegen(context, builder, signature, args):
        i8, intp = ir.IntType(8), context.get_value_type(types.intp)
        void_p = i8.as_pointer()
        fnty = ir.FunctionType(ir.IntType(32), [i8, i8, i8, intp, intp, intp, void_p, void_p, intp, void_p,
                                                intp, void_p, void_p, intp])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")
        values = dict(zip(("ta", "tb", "m", "n", "k", "alpha", "a", "lda", "b", "ldb", "beta", "c", "ldc"),
                          zip(args, signature.args)))

        def flag(name):
            value, ty = values[name]
            yes = context.cast(builder, value, ty, types.boolean)
            return builder.select(yes, ir.Constant(i8, ord("t")), ir.Constant(i8, ord("n")))

        def integer(name):
            return context.cast(builder, *values[name], types.intp)

        def scalar_slot(name):  # BLAS takes alpha and beta by pointer
            value = context.cast(builder, *values[name], a.dtype)
            return builder.bitcast(cgutils.alloca_once_value(builder, value), void_p)

        def data(name):
            value, ty = values[name]
            return builder.bitcast(context.make_array(ty)(context, builder, value).data, void_p)

        kind = ir.Constant(i8, ord("s" if a.dtype == types.float32 else "d"))
        status = builder.call(fn, [kind, flag("ta"), flag("tb"), integer("m"), integer("n"), integer("k"),
                                   scalar_slot("alpha"), data("a"), integer("lda"), data("b"), integer("ldb"),
                                   scalar_slot("beta"), data("c"), integer("ldc")])
        check_blas_return(context, builder, status)  # as np.dot: a missing BLAS function is fatal, not silent
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True)
def _gemm(a, b, c, alpha, beta, trans_a, trans_b):
    """c = alpha op(a) op(b) + beta c, op(x) = x.T when trans_x, for 2-D views of C arrays (rows
    contiguous, any row stride). Row-major c = op(a) op(b) is column-major c^T = op(b)^T op(a)^T, hence
    the swapped operands. OpenBLAS runs it on the calling thread below OPENBLAS_THREADED_MACS."""
    m, n = c.shape
    depth = a.shape[0] if trans_a else a.shape[1]
    size = c.itemsize
    _xgemm(trans_b, trans_a, n, m, depth, alpha, b, b.strides[0] // size, a, a.strides[0] // size, beta, c,
           c.strides[0] // size)


# --------------------------------------------------------------------------- all rows: parallel and serial twins
# Row r of the flattened (N * Tq) rows is query i = r % Tq of batch element n = r // Tq.
@njit(cache=True, parallel=True, error_model="numpy")
def _softmax_rows_parallel(w, mask, has_mask, scale, neg_inf, zero):
    tq = w.shape[1]
    for r in prange(w.shape[0] * tq):
        n, i = r // tq, r % tq
        softmax_row(w[n, i], mask_row(mask, has_mask, n, i), has_mask, scale, neg_inf, zero)


@njit(cache=True, error_model="numpy")
def _softmax_rows_serial(w, mask, has_mask, scale, neg_inf, zero):
    for n in range(w.shape[0]):
        for i in range(w.shape[1]):
            softmax_row(w[n, i], mask_row(mask, has_mask, n, i), has_mask, scale, neg_inf, zero)


@njit(cache=True, parallel=True, error_model="numpy")
def _masked_scores_parallel(s, mask, has_mask, neg_inf):
    tq = s.shape[1]
    for r in prange(s.shape[0] * tq):
        n, i = r // tq, r % tq
        masked_scores_row(s[n, i], mask_row(mask, has_mask, n, i), has_mask, neg_inf)


@njit(cache=True, error_model="numpy")
def _masked_scores_serial(s, mask, has_mask, neg_inf):
    for n in range(s.shape[0]):
        for i in range(s.shape[1]):
            masked_scores_row(s[n, i], mask_row(mask, has_mask, n, i), has_mask, neg_inf)


@njit(cache=True, parallel=True, error_model="numpy")
def _softmax_grad_rows_parallel(ds, w, zero):
    tq = ds.shape[1]
    for r in prange(ds.shape[0] * tq):
        n, i = r // tq, r % tq
        softmax_grad_row(ds[n, i], w[n, i], zero)


@njit(cache=True, error_model="numpy")
def _softmax_grad_rows_serial(ds, w, zero):
    for n in range(ds.shape[0]):
        for i in range(ds.shape[1]):
            softmax_grad_row(ds[n, i], w[n, i], zero)


# --------------------------------------------------------------------------- masked path: blocks of query rows
# Block b holds query rows [b*block, (b+1)*block); blocks.block_key_stops says which keys it reaches.
@njit(cache=True, inline="always")
def _even_step(stop, chunk):
    """The step that cuts [0, stop) into as few pieces of at most chunk keys as possible, all about the same
    size (300 keys in chunks of 255: two of 150, not 255 + 45, whose product runs at a fraction of the speed)."""
    return (stop + (stop + chunk - 1) // chunk - 1) // ((stop + chunk - 1) // chunk)


@njit(cache=True, error_model="numpy")
def _forward_block(q, k, v, mask, n, r0, r1, stop, chunk, w, out, scale, neg_inf, zero):
    """Weights and output of query rows [r0, r1) of element n over keys [0, stop); weights beyond are 0.
    The products go `chunk` keys at a time (small enough for OpenBLAS to stay on the calling thread)."""
    if stop == 0:  # every row of the block fully masked: zero weights, zero output
        w[n, r0:r1] = zero
        out[n, r0:r1] = zero
        return
    step = _even_step(stop, chunk)
    for c0 in range(0, stop, step):
        c1 = min(stop, c0 + step)
        _gemm(q[n, r0:r1], k[n, c0:c1], w[n, r0:r1, c0:c1], 1.0, 0.0, False, True)
    for i in range(r0, r1):
        softmax_row(w[n, i, :stop], mask_row(mask, True, n, i)[:stop], True, scale, neg_inf, zero)
        w[n, i, stop:] = zero
    for c0 in range(0, stop, step):
        c1 = min(stop, c0 + step)
        _gemm(w[n, r0:r1, c0:c1], v[n, c0:c1], out[n, r0:r1], 1.0, 0.0 if c0 == 0 else 1.0, False, False)


@njit(cache=True, error_model="numpy")
def _backward_query_block(dout, k, v, w, n, r0, r1, stop, chunk, ds, dq, scale, zero):
    """dS (in ds, over keys [0, stop); nothing reads it beyond) and dq of query rows [r0, r1) of element n."""
    if stop == 0:
        dq[n, r0:r1] = zero
        return
    step = _even_step(stop, chunk)
    for c0 in range(0, stop, step):
        c1 = min(stop, c0 + step)
        _gemm(dout[n, r0:r1], v[n, c0:c1], ds[n, r0:r1, c0:c1], 1.0, 0.0, False, True)
    for i in range(r0, r1):
        softmax_grad_row(ds[n, i, :stop], w[n, i, :stop], zero)
    for c0 in range(0, stop, step):
        c1 = min(stop, c0 + step)
        _gemm(ds[n, r0:r1, c0:c1], k[n, c0:c1], dq[n, r0:r1], scale, 0.0 if c0 == 0 else 1.0, False, False)


@njit(cache=True)
def _backward_key_chunk(dout, q, w, ds, stops, block, n, c0, c1, dk, dv, scale, zero):
    """dk and dv of keys [c0, c1) of element n, summed over the query blocks that reach them in block
    order: each element's summation order is fixed, serial or parallel."""
    dk[n, c0:c1] = zero
    dv[n, c0:c1] = zero
    tq = q.shape[1]
    for b in range(stops.shape[0]):
        end = min(c1, stops[b])
        if end > c0:
            r0, r1 = b * block, min(tq, (b + 1) * block)
            _gemm(ds[n, r0:r1, c0:end], q[n, r0:r1], dk[n, c0:end], scale, 1.0, True, False)
            _gemm(w[n, r0:r1, c0:end], dout[n, r0:r1], dv[n, c0:end], 1.0, 1.0, True, False)


# Parallel and serial twins: each iteration writes its own rows (of w, out, ds, dq) or its own keys (of
# dk, dv); every BLAS call inside is below OpenBLAS's threading size when the caller picks the parallel
# twin, so only Numba's threads run.
@njit(cache=True, parallel=True, error_model="numpy")
def _forward_blocks_parallel(q, k, v, mask, stops, block, chunk, w, out, scale, neg_inf, zero):
    tq, blocks = q.shape[1], stops.shape[1]
    for u in prange(q.shape[0] * blocks):
        n, b = u // blocks, balanced(u % blocks, blocks)
        _forward_block(q, k, v, mask, n, b * block, min(tq, (b + 1) * block),
                       stops[n if stops.shape[0] > 1 else 0, b], chunk, w, out, scale, neg_inf, zero)


@njit(cache=True, error_model="numpy")
def _forward_blocks_serial(q, k, v, mask, stops, block, chunk, w, out, scale, neg_inf, zero):
    tq, blocks = q.shape[1], stops.shape[1]
    for n in range(q.shape[0]):
        for b in range(blocks):
            _forward_block(q, k, v, mask, n, b * block, min(tq, (b + 1) * block),
                           stops[n if stops.shape[0] > 1 else 0, b], chunk, w, out, scale, neg_inf, zero)


@njit(cache=True, parallel=True, error_model="numpy")
def _backward_blocks_parallel(dout, q, k, v, w, stops, block, chunk, ds, dq, dk, dv, scale, zero):
    tq, blocks = q.shape[1], stops.shape[1]
    for u in prange(q.shape[0] * blocks):
        n, b = u // blocks, balanced(u % blocks, blocks)
        _backward_query_block(dout, k, v, w, n, b * block, min(tq, (b + 1) * block),
                              stops[n if stops.shape[0] > 1 else 0, b], chunk, ds, dq, scale, zero)
    tk = k.shape[1]
    step = _even_step(tk, chunk)
    chunks = (tk + step - 1) // step
    for u in prange(q.shape[0] * chunks):  # after every dS is written
        n, c = u // chunks, balanced(u % chunks, chunks)
        _backward_key_chunk(dout, q, w, ds, stops[n if stops.shape[0] > 1 else 0], block, n, c * step,
                            min(tk, (c + 1) * step), dk, dv, scale, zero)


@njit(cache=True, error_model="numpy")
def _backward_blocks_serial(dout, q, k, v, w, stops, block, chunk, ds, dq, dk, dv, scale, zero):
    tq, tk, blocks = q.shape[1], k.shape[1], stops.shape[1]
    for n in range(q.shape[0]):
        for b in range(blocks):
            _backward_query_block(dout, k, v, w, n, b * block, min(tq, (b + 1) * block),
                                  stops[n if stops.shape[0] > 1 else 0, b], chunk, ds, dq, scale, zero)
        step = _even_step(tk, chunk)
        for c0 in range(0, tk, step):
            _backward_key_chunk(dout, q, w, ds, stops[n if stops.shape[0] > 1 else 0], block, n, c0,
                                min(tk, c0 + step), dk, dv, scale, zero)


# --------------------------------------------------------------------------- the op
def _mask_args(mask: np.ndarray | None) -> tuple[np.ndarray, bool]:
    return (NO_MASK, False) if mask is None else (mask, True)


def _parallel(scores_shape: tuple[int, ...], width: int) -> bool:
    """Row kernels on Numba's threads: for enough score entries, and only while the per-batch products
    (Tq x Tk x width multiply-adds, width = max(d, dv)) stay on the calling thread. When OpenBLAS runs
    them on its own threads, the row kernels run serially: one thread pool at a time (see above)."""
    n, tq, tk = scores_shape
    return n * tq * tk >= PARALLEL_MIN_SIZE and tq * tk * width < OPENBLAS_THREADED_MACS


def scores(q: np.ndarray, k: np.ndarray, mask: np.ndarray | None, scale: float) -> np.ndarray:
    t = q.dtype.type
    s = np.empty((q.shape[0], q.shape[1], k.shape[1]), dtype=q.dtype)
    _bmm_nt(q, k, s, t(scale))
    m, has_mask = _mask_args(mask)
    if has_mask:
        kernel = _masked_scores_parallel if _parallel(s.shape, q.shape[2]) else _masked_scores_serial
        kernel(s, m, has_mask, t(-np.inf))
    return s


def _key_chunk(width: int) -> int:
    """Keys per product of the masked path: BLOCK_ROWS x chunk x width multiply-adds stay below
    OPENBLAS_THREADED_MACS, so that OpenBLAS runs each on the calling thread; 0 when width is so large
    that fewer than MIN_CHUNK_KEYS keys would fit."""
    chunk = (OPENBLAS_THREADED_MACS - 1) // (BLOCK_ROWS * width)
    return chunk if chunk >= MIN_CHUNK_KEYS else 0


def _max_abs(a: np.ndarray) -> float:
    """max |a|: inf when a holds an infinity, NaN when it holds a NaN (np.max and np.min both return NaN
    then, and max() of two NaNs is NaN)."""
    return max(float(a.max()), -float(a.min()))


def _dot_products_bounded(a: np.ndarray, b: np.ndarray, width: float, dtype) -> bool:
    """Every dot product of a row of a with a row of b (width terms, width may include a scale factor)
    stays below a quarter of the dtype's largest value: |a_i . b_j| <= width max|a| max|b|. False as soon
    as a or b holds a NaN or an Inf (inf * 0 is NaN, and NaN < x is False)."""
    return width * _max_abs(a) * _max_abs(b) * 4 < float(np.finfo(dtype).max)


def _masked_plan(mask: np.ndarray | None) -> np.ndarray | None:
    """The block stops when the mask lets the blocks skip at least MIN_SKIPPED of the score entries (a
    smaller saving does not pay for the smaller, slower products), else None: the whole-matrix path."""
    if mask is None:
        return None
    stops, skipped = block_key_stops(mask, BLOCK_ROWS)
    return stops if skipped >= MIN_SKIPPED * mask.size else None


def _parallel_blocks(shape: tuple[int, ...], chunk: int) -> bool:
    """Blocks on Numba's threads: for enough score entries, and only when every product fits under
    OpenBLAS's threading size (chunk > 0), so that one thread pool runs at a time."""
    n, tq, tk = shape
    return chunk > 0 and n * tq * tk >= PARALLEL_MIN_SIZE


def _tiled(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> bool:
    """The register-tiled path (tiled.py) for what would run the whole-matrix products: when its tiles fit
    the shapes (whole vectors) and the call is big enough for Numba's threads."""
    return (tiled.applies(q.shape, k.shape, v.shape, q.dtype)
            and q.shape[0] * q.shape[1] * k.shape[1] >= tiled.PARALLEL_MIN_SIZE)


def forward(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None,
            scale: float) -> tuple[np.ndarray, AttentionCache]:
    t = q.dtype.type
    w = np.empty((q.shape[0], q.shape[1], k.shape[1]), dtype=q.dtype)
    out = np.empty((q.shape[0], q.shape[1], v.shape[2]), dtype=q.dtype)
    # A skipped key's term is 0 * v[j]: NaN by IEEE when v[j] is Inf or NaN, as in the reference's full
    # product, which then has to run.
    if _tiled(q, k, v):
        tiled.forward(q, k, v, mask, scale, mask is not None and math.isfinite(_max_abs(v)), w, out)
        return out, AttentionCache(q, k, v, mask, w, float(scale))
    stops = _masked_plan(mask)
    if stops is not None and math.isfinite(_max_abs(v)):
        chunk = _key_chunk(max(q.shape[2], v.shape[2]))
        blocks = _forward_blocks_parallel if _parallel_blocks(w.shape, chunk) else _forward_blocks_serial
        blocks(q, k, v, mask, stops, BLOCK_ROWS, chunk or k.shape[1], w, out, t(scale), t(-np.inf), t(0))
        return out, AttentionCache(q, k, v, mask, w, float(scale))
    _bmm_nt(q, k, w, t(1))  # raw scores, turned into weights in place
    m, has_mask = _mask_args(mask)
    softmax_rows = _softmax_rows_parallel if _parallel(w.shape, max(q.shape[2], v.shape[2])) else _softmax_rows_serial
    softmax_rows(w, m, has_mask, t(scale), t(-np.inf), t(0))
    _bmm_nn(w, v, out, t(1))
    return out, AttentionCache(q, k, v, mask, w, float(scale))


def _skipping_is_exact(dout: np.ndarray, cache: AttentionCache) -> bool:
    """The backward's skipped terms are 0 * k, 0 * q, 0 * dout and 0 * (dW - sum(dW * W)): exactly 0, as
    in the reference's full products, only when those factors are finite. So no input may hold a NaN or an
    Inf, dout v^T must not overflow (dW), nor q k^T (an infinite score makes its row of W, and with it
    sum(dW * W), NaN)."""
    q, k, v, _, _, scale = cache
    return (_dot_products_bounded(q, k, q.shape[2] * max(1.0, scale), q.dtype)
            and _dot_products_bounded(dout, v, v.shape[2], q.dtype))


def backward(dout: np.ndarray, cache: AttentionCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    q, k, v, mask, w, scale = cache
    t = q.dtype.type
    if _tiled(q, k, v):
        return tiled.backward(dout, q, k, v, w, mask, scale, mask is not None and _skipping_is_exact(dout, cache))
    stops = _masked_plan(mask)
    if stops is not None and _skipping_is_exact(dout, cache):
        ds = scratch("attention.ds", w.shape, w.dtype)  # dS never leaves backward: reused, not page-faulted in
        dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
        chunk = _key_chunk(max(q.shape[2], v.shape[2]))
        blocks = _backward_blocks_parallel if _parallel_blocks(w.shape, chunk) else _backward_blocks_serial
        blocks(dout, q, k, v, w, stops, BLOCK_ROWS, chunk or k.shape[1], ds, dq, dk, dv, t(scale), t(0))
        return dq, dk, dv
    ds = scratch("attention.ds", w.shape, w.dtype)
    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
    _bmm_nt(dout, v, ds, t(1))  # dW = dout v^T, turned into dS in place
    grad_rows = (_softmax_grad_rows_parallel if _parallel(w.shape, max(q.shape[2], v.shape[2]))
                 else _softmax_grad_rows_serial)
    grad_rows(ds, w, t(0))
    _bmm_nn(ds, k, dq, t(scale))
    _bmm_tn(ds, q, dk, t(scale))
    _bmm_tn(w, dout, dv, t(1))
    return dq, dk, dv
