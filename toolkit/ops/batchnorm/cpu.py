"""Batch normalisation as Numba kernels (CPU). Same signatures and cache as reference.py.

x is viewed as a (M, C) matrix (M = all leading axes, C = features, contiguous in memory), cut into
at most MAX_CHUNKS blocks of rows. Each kernel is written once for one block (serial); a parallel
driver runs the blocks in a prange, and inputs too small for threads (one block, or fewer than
PARALLEL_MIN_SIZE elements) run the block kernel on the calling thread.

Per-feature reductions (mean, variance, dbeta, dgamma) use per-block partials, not a prange over
feature columns: with C = 3 channels a column prange would use 3 threads and walk memory with
stride C. Block k writes its float64 partial sums to row k of a (blocks, C) array (disjoint memory,
no race) and the rows are added afterwards, in order. The block count depends only on the shape,
never on the thread count, so results are bit-reproducible on any machine.

Statistics are two-pass: pass one sums x for the mean, pass two sums (x - mean)^2. The one-pass
E[x^2] - E[x]^2 cancels catastrophically when |mean| >> std (e.g. pixel values around 1e4); a
second pass over memory is cheap next to that. Float32 inputs are accumulated in float64 (see
reference.py). The elementwise passes (normalise, input gradient) stay in the input dtype.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .reference import BatchNormCache

MAX_CHUNKS = 64  # upper bound on row blocks: enough for any thread count we run on
MIN_CHUNK_ELEMENTS = 1 << 14  # a block smaller than this costs more in thread hand-off than it saves
# Below this many elements the blocks run one after another on the calling thread (the same blocks in
# the same order: the same bits). About 0.5 ms of work: waking Numba's threads costs more than that
# for smaller inputs, and on a busy machine a parallel region can wait milliseconds for a thread.
PARALLEL_MIN_SIZE = 1 << 20


def _row_blocks(m: int, c: int) -> tuple[int, int]:
    """(rows per block, number of blocks): a function of the shape only, so sums are reproducible.
    One block means the work is too small for threads: the block kernel is then called directly."""
    blocks = max(1, min(MAX_CHUNKS, (m * c) // MIN_CHUNK_ELEMENTS, m))
    rows = -(-m // blocks)
    return rows, -(-m // rows)


# --------------------------------------------------------------------------- one block of rows (serial)
@njit(cache=True)
def _sum_block(a, center, square, start, stop, out):
    """out[j] += sum over rows [start, stop) of (a - center[j]), or of its square; in float64."""
    for i in range(start, stop):
        for j in range(a.shape[1]):
            d = np.float64(a[i, j]) - center[j]
            out[j] += d * d if square else d


@njit(cache=True)
def _gradient_sum_block(dy, x_hat, start, stop, out):
    """out[0] += sum of dy (= dbeta), out[1] += sum of dy * x_hat (= dgamma), over rows [start, stop)."""
    for i in range(start, stop):
        for j in range(dy.shape[1]):
            g = np.float64(dy[i, j])
            out[0, j] += g
            out[1, j] += g * np.float64(x_hat[i, j])


@njit(cache=True)
def _normalize_block(x, mean, inv_std, gamma, beta, x_hat, y, start, stop):
    for i in range(start, stop):
        for j in range(x.shape[1]):
            h = (x[i, j] - mean[j]) * inv_std[j]
            x_hat[i, j] = h
            y[i, j] = gamma[j] * h + beta[j]


@njit(cache=True)
def _input_gradient_block(dy, x_hat, scale, mean_dy, mean_dy_xhat, training, dx, start, stop):
    for i in range(start, stop):
        if training:
            for j in range(dy.shape[1]):
                dx[i, j] = scale[j] * (dy[i, j] - mean_dy[j] - x_hat[i, j] * mean_dy_xhat[j])
        else:
            for j in range(dy.shape[1]):
                dx[i, j] = scale[j] * dy[i, j]


# --------------------------------------------------------------------------- all blocks (parallel)
# Each prange iteration k owns rows [k * rows, (k + 1) * rows) and, for reductions, row k of the
# partials: iterations never write the same memory.
@njit(cache=True, parallel=True)
def _sum_blocks(a, center, square, rows, partial):
    for k in prange(partial.shape[0]):
        _sum_block(a, center, square, k * rows, min(a.shape[0], (k + 1) * rows), partial[k])


@njit(cache=True, parallel=True)
def _gradient_sum_blocks(dy, x_hat, rows, partial):
    for k in prange(partial.shape[0]):
        _gradient_sum_block(dy, x_hat, k * rows, min(dy.shape[0], (k + 1) * rows), partial[k])


@njit(cache=True, parallel=True)
def _normalize_blocks(x, mean, inv_std, gamma, beta, x_hat, y, rows, blocks):
    for k in prange(blocks):
        _normalize_block(x, mean, inv_std, gamma, beta, x_hat, y, k * rows, min(x.shape[0], (k + 1) * rows))


@njit(cache=True, parallel=True)
def _input_gradient_blocks(dy, x_hat, scale, mean_dy, mean_dy_xhat, training, dx, rows, blocks):
    for k in prange(blocks):
        _input_gradient_block(dy, x_hat, scale, mean_dy, mean_dy_xhat, training, dx,
                              k * rows, min(dy.shape[0], (k + 1) * rows))


@njit(cache=True)
def _update_running(running, batch_stat, momentum):
    """running <- momentum * running + (1 - momentum) * batch_stat, in float64, stored in running's dtype."""
    for j in range(running.size):
        running[j] = momentum * np.float64(running[j]) + (1.0 - momentum) * batch_stat[j]


# --------------------------------------------------------------------------- drivers
def _column_sums(a: np.ndarray, center: np.ndarray, square: bool) -> np.ndarray:
    rows, blocks = _row_blocks(*a.shape)
    partial = np.zeros((blocks, a.shape[1]), dtype=np.float64)
    if blocks == 1 or a.size < PARALLEL_MIN_SIZE:
        for k in range(blocks):
            _sum_block(a, center, square, k * rows, min(a.shape[0], (k + 1) * rows), partial[k])
    else:
        _sum_blocks(a, center, square, rows, partial)
    return partial.sum(axis=0)  # blocks added in order: deterministic


def statistics(x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and biased variance of a (M, C) matrix, in float64, two passes."""
    m = x2.shape[0]
    mean = _column_sums(x2, np.zeros(x2.shape[1]), False) / m
    var = _column_sums(x2, mean, True) / m
    return mean, var


def forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
            running_var: np.ndarray, training: bool, momentum: float, eps: float) -> tuple[np.ndarray, BatchNormCache]:
    dtype = x.dtype
    c = x.shape[-1]
    x2 = x.reshape(-1, c)
    if training:
        mean64, var64 = statistics(x2)
        _update_running(running_mean, mean64, momentum)
        _update_running(running_var, var64, momentum)
    else:
        mean64, var64 = running_mean.astype(np.float64), running_var.astype(np.float64)
    inv_std = (1.0 / np.sqrt(var64 + eps)).astype(dtype)
    mean = mean64.astype(dtype)
    x_hat = np.empty_like(x)
    y = np.empty_like(x)
    args = (x2, mean, inv_std, gamma, beta, x_hat.reshape(-1, c), y.reshape(-1, c))
    rows, blocks = _row_blocks(*x2.shape)
    if blocks == 1 or x2.size < PARALLEL_MIN_SIZE:
        _normalize_block(*args, 0, x2.shape[0])  # elementwise: one call over all rows
    else:
        _normalize_blocks(*args, rows, blocks)
    return y, BatchNormCache(x_hat, gamma.copy(), mean, var64.astype(dtype), inv_std, bool(training))


def backward(dy: np.ndarray, cache: BatchNormCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x_hat, gamma, _, _, inv_std, training = cache
    dtype = x_hat.dtype
    c = x_hat.shape[-1]
    dy2, x_hat2 = dy.reshape(-1, c), x_hat.reshape(-1, c)
    m = dy2.shape[0]
    rows, blocks = _row_blocks(m, c)
    partial = np.zeros((blocks, 2, c), dtype=np.float64)
    parallel = blocks > 1 and dy2.size >= PARALLEL_MIN_SIZE
    if not parallel:
        for k in range(blocks):
            _gradient_sum_block(dy2, x_hat2, k * rows, min(m, (k + 1) * rows), partial[k])
    else:
        _gradient_sum_blocks(dy2, x_hat2, rows, partial)
    dbeta64, dgamma64 = partial.sum(axis=0)
    dx = np.empty_like(dy)
    args = (dy2, x_hat2, gamma * inv_std, (dbeta64 / m).astype(dtype), (dgamma64 / m).astype(dtype),
            bool(training), dx.reshape(-1, c))
    if not parallel:
        _input_gradient_block(*args, 0, m)
    else:
        _input_gradient_blocks(*args, rows, blocks)
    return dx, dgamma64.astype(dtype), dbeta64.astype(dtype)
