"""Dense layer on the CPU: BLAS matrix products and Numba kernels for the bias. Same signatures and cache
as reference.py.

GEMM *is* the dense layer, and BLAS's blocked, vectorised GEMM runs far closer to the machine's peak than
a loop we could write, so the three products go to NumPy's BLAS (OpenBLAS), one call each, exactly as
the reference makes them: y = x W, dx = dy W^T, dW = x^T dy. (One call each on purpose: OpenBLAS's
float32 result depends on how a product is cut up, and on how many threads it uses, in the last bits;
the same calls as the reference give the same bits.) NumPy's BLAS rather than np.dot inside @njit,
which calls SciPy's OpenBLAS: a second BLAS thread pool whose busy-waiting threads would compete with
NumPy's (conv2d and the reference use NumPy's).

What is left for our own loops is the bias: its broadcast add over the rows and its gradient, a column
sum of dy (fixed blocks of rows into per-block partial sums, then one pass adding the partials: no two
threads write the same memory, and because the blocks depend only on N, not on the thread count, the
result is the same bit for bit on every machine). Below PARALLEL_MIN_SIZE elements (about 0.3 ms of
work) a serial twin runs instead: there, waking Numba's threads costs more than the loop, and on a
busy machine a parallel region can wait milliseconds for a descheduled thread.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..ieee import ieee_quiet
from .reference import DenseCache

ROWS_PER_BLOCK = 256  # rows of dy each parallel iteration sums for db
PARALLEL_MIN_SIZE = 1 << 20  # elements of y below which the bias kernels run serially (~0.3 ms of work)


@njit(cache=True)
def _add_bias_serial(y, b):
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            y[i, j] += b[j]


@njit(cache=True, parallel=True)
def _add_bias_parallel(y, b):
    for i in prange(y.shape[0]):  # one row per iteration: disjoint writes
        for j in range(y.shape[1]):
            y[i, j] += b[j]


def _affine_serial(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x W + b with the bias added by one thread."""
    y = x @ W
    _add_bias_serial(y, b)
    return y


def _affine_parallel(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x W + b with the bias added by Numba's threads (large y)."""
    y = x @ W
    _add_bias_parallel(y, b)
    return y


@njit(cache=True, inline="always")
def _block_sum(dy, k, partial):
    for i in range(k * ROWS_PER_BLOCK, min(dy.shape[0], (k + 1) * ROWS_PER_BLOCK)):
        for j in range(dy.shape[1]):
            partial[k, j] += dy[i, j]


@njit(cache=True, inline="always")
def _add_partials(partial, like):
    out = np.empty(partial.shape[1], dtype=like.dtype)  # the result in dy's dtype
    for j in range(partial.shape[1]):
        s = 0.0
        for k in range(partial.shape[0]):
            s += partial[k, j]
        out[j] = s
    return out


# Sums over the rows of dy, accumulated in float64: a float32 running sum over a large batch drifts
# by O(N eps), and the float64 accumulator costs nothing in this memory-bound loop. The serial twin
# adds the same blocks in the same order, so both give the same bits.
@njit(cache=True)
def _column_sums_serial(dy):
    partial = np.zeros(((dy.shape[0] + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK, dy.shape[1]), dtype=np.float64)
    for k in range(partial.shape[0]):
        _block_sum(dy, k, partial)
    return _add_partials(partial, dy)


@njit(cache=True, parallel=True)
def _column_sums_parallel(dy):
    partial = np.zeros(((dy.shape[0] + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK, dy.shape[1]), dtype=np.float64)
    for k in prange(partial.shape[0]):  # each iteration owns row k of partial
        _block_sum(dy, k, partial)
    return _add_partials(partial, dy)


@ieee_quiet
def forward(x: np.ndarray, W: np.ndarray, b: np.ndarray | None) -> tuple[np.ndarray, DenseCache]:
    if b is None:
        y = x @ W
    else:
        y = (_affine_parallel if x.shape[0] * W.shape[1] >= PARALLEL_MIN_SIZE else _affine_serial)(x, W, b)
    return y, DenseCache(x, W, b is not None)


@ieee_quiet
def backward(dy: np.ndarray, cache: DenseCache,
             need_dx: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    x, W, has_bias = cache
    dx = dy @ W.T if need_dx else None  # None: the first layer's dx has no one to go to (reference.py)
    dW = x.T @ dy
    if not has_bias:
        return dx, dW, None
    return dx, dW, (_column_sums_parallel if dy.size >= PARALLEL_MIN_SIZE else _column_sums_serial)(dy)
