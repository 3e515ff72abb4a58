"""The simple RNN as CUDA kernels (rnn.cu, toolkit/cuda/gemm.cuh and reduce.cuh) on CuPy arrays. Same
functions, signatures and cache type (``RNNCache``) as reference.py and cpu.py; the cache holds CuPy arrays,
laid out as the CPU's.

``forward``/``backward`` are the public CuPy path; ``forward_on``/``backward_on`` hold all launch code and
run unchanged on the host harness (NumPy arrays, the kernels compiled for the CPU) in the tests.

Only the recurrence is sequential, so the work is split by what depends on it (as cpu.py does):

* before the time loop, the input projection x_t W_xh + b_h of every step in ONE product over the N*T rows
  (a standard optimisation: it does not depend on h, and one big product keeps the GPU busy where T small
  per-step products would not);
* the loop, on the host: one launch per time step, the recurrent product h_{t-1} W_hh (forward) or
  delta_{t+1} W_hh^T (backward) with the tanh, or the tanh' product, fused in the product's epilogue;
* after the loop, the read-out and every weight gradient as one product each over the N*T rows: the BPTT
  sums over time, sum_t x_t^T delta_t and friends, are the k loop of one dot product per element. That
  is deterministic (a fixed summation order, no float atomics) and does the work of accumulating T per-step
  products into the gradient buffers in one launch. db_h and db_y: two-stage column sums in float64.

The products, the column sums and the state shift are the shared launchers of toolkit/cuda/gemm.py and
reduce.py (the LSTM uses them too); this module adds the per-step kernels of rnn.cu. Float32 stays float32
except in the column sums (float64 partial sums).
"""

from __future__ import annotations

from typing import Any

from ...cuda import launch, modules
from ...cuda.gemm import matmul_on, recurrent_gradients_on, step_grid
from ...cuda.launch import Target
from ...cuda.reduce import column_sums_on
from .reference import RNNCache

OP = "rnn"


def _target() -> Target:
    return modules.target(OP)


def forward_on(target: Target, x: Any, h0: Any, W_xh: Any, W_hh: Any, b_h: Any, W_hy: Any | None = None,
               b_y: Any | None = None) -> tuple[Any | None, Any, RNNCache]:
    """forward, with the kernels and arrays of ``target`` (CuPy, or the host harness)."""
    N, T, D = x.shape
    H = W_hh.shape[0]
    dims = (launch.i64(N), launch.i64(T), launch.i64(H))
    xw = matmul_on(target, x, W_xh, N * T, H, D, lda=D, ldb=H, bias=b_h)  # (N*T, H) = (N, T, H) in memory
    h = target.xp.empty((N, T, H), dtype=x.dtype)
    step = target.kernel("rnn_step_forward", x.dtype)
    grid, block = step_grid(target, N, H)
    for t in range(T):  # each launch reads h[:, t - 1], written by the previous one (same stream: in order)
        step(grid, block, (xw, W_hh, h0, h, *dims, launch.i64(t)))
    y = None
    if W_hy is not None:
        O = W_hy.shape[1]
        y = matmul_on(target, h, W_hy, N * T, O, H, lda=H, ldb=O, bias=b_y).reshape(N, T, O)
    return y, h, RNNCache(x, h0, W_xh, W_hh, b_h, W_hy, b_y, h)


def backward_on(target: Target, dy: Any | None, dh: Any | None, cache: RNNCache):
    """backward, with the kernels and arrays of ``target``; returns (dx, dh0, dW_xh, dW_hh, db_h, dW_hy, db_y)."""
    xp = target.xp
    x, h0, W_xh, W_hh, _, W_hy, b_y, h = cache
    N, T, _ = x.shape
    H = W_hh.shape[0]
    rows = N * T
    direct = dh  # dL/dh_t from outside the recurrence: dh, plus dy W_hy^T when there is a read-out
    dW_hy = db_y = None
    if W_hy is not None:
        O = W_hy.shape[1]
        if dy is None:
            dW_hy = xp.zeros_like(W_hy)
            db_y = None if b_y is None else xp.zeros_like(b_y)
        else:
            direct = matmul_on(target, dy, W_hy, rows, H, O, lda=O, ldb=O, b_transposed=True, addend=dh)
            dW_hy = matmul_on(target, h, dy, H, O, rows, lda=H, ldb=O, a_transposed=True)
            db_y = None if b_y is None else column_sums_on(target, dy.reshape(rows, O))
    if direct is None:  # neither dh nor a read-out gradient (rnn_backward refuses that; reference.py gives 0)
        direct = xp.zeros_like(h)
    delta = xp.empty((N, T, H), dtype=x.dtype)  # dL/da_t for every step
    step = target.kernel("rnn_step_backward", x.dtype)
    grid, block = step_grid(target, N, H)
    for t in reversed(range(T)):  # each launch reads delta[:, t + 1], written by the previous one
        step(grid, block, (direct, W_hh, h, delta, launch.i64(N), launch.i64(T), launch.i64(H), launch.i64(t)))
    dx, dh0, dW_xh, dW_hh, db_h = recurrent_gradients_on(target, x, h0, h, delta, W_xh, W_hh)
    return dx, dh0, dW_xh, dW_hh, db_h, dW_hy, db_y


def forward(x: Any, h0: Any, W_xh: Any, W_hh: Any, b_h: Any, W_hy: Any | None = None, b_y: Any | None = None):
    return forward_on(_target(), x, h0, W_xh, W_hh, b_h, W_hy, b_y)


def backward(dy: Any | None, dh: Any | None, cache: RNNCache):
    return backward_on(_target(), dy, dh, cache)
