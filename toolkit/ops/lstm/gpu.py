"""The LSTM as CUDA kernels (lstm.cu, toolkit/cuda/gemm.cuh and reduce.cuh) on CuPy arrays. Same functions,
signatures and cache type (``LSTMCache``) as reference.py and cpu.py; the cache holds CuPy arrays, laid out
as the CPU's (gates (N, T, 4H) activated, in the order i, f, c, o).

``forward``/``backward`` are the public CuPy path; ``forward_on``/``backward_on`` hold all launch code and
run unchanged on the host harness (NumPy arrays, the kernels compiled for the CPU) in the tests.

Only the recurrence is sequential, so the work is split by what depends on it (as cpu.py does):

* before the time loop, the input projection x_t W + b of every step in ONE product over the N*T rows (a
  standard optimisation: it does not depend on h);
* the loop, on the host: one launch per time step. Forward fuses the recurrent product h_{t-1} U with the
  four gate activations and the cell update (a block's tile holds the same hidden units of all four gates);
  backward fuses dz_{t+1} U^T with the whole gate chain rule and the cell-gradient carry;
* after the loop, dx, dW, dU and dh0 as one product each (the BPTT sums over time are the k loop of one
  deterministic dot product per element: no float atomics), db as a two-stage float64 column sum.

The products, column sums and state shift are the shared launchers of toolkit/cuda/gemm.py and reduce.py
(the RNN uses them too): their kernels come with lstm.cu's includes of gemm.cuh and reduce.cuh.
"""

from __future__ import annotations

from typing import Any

from ...cuda import launch, modules
from ...cuda.gemm import matmul_on, recurrent_gradients_on, step_grid
from ...cuda.launch import Target
from .reference import LSTMCache

OP = "lstm"
GATES = 4
UNITS_PER_TILE = 8  # lstm::kUnits: hidden units (each with its 4 gates) per forward step tile


def _target() -> Target:
    return modules.target(OP)


def forward_on(target: Target, x: Any, h0: Any, c0: Any, W: Any, U: Any, b: Any) -> tuple[Any, Any, LSTMCache]:
    """forward, with the kernels and arrays of ``target`` (CuPy, or the host harness)."""
    xp = target.xp
    N, T, D = x.shape
    H = U.shape[0]
    xwb = matmul_on(target, x, W, N * T, GATES * H, D, lda=D, ldb=GATES * H, bias=b)  # (N, T, 4H) in memory
    h = xp.empty((N, T, H), dtype=x.dtype)
    c = xp.empty((N, T, H), dtype=x.dtype)
    gates = xp.empty((N, T, GATES * H), dtype=x.dtype)
    step = target.kernel("lstm_step_forward", x.dtype)
    grid, block = step_grid(target, N, H, UNITS_PER_TILE)
    for t in range(T):  # each launch reads step t - 1 of h and c, written by the previous one
        step(grid, block, (xwb, U, h0, c0, h, c, gates, launch.i64(N), launch.i64(T), launch.i64(H), launch.i64(t)))
    return h, c, LSTMCache(x, h0, c0, W, U, b, h, c, gates)


def backward_on(target: Target, dh: Any | None, cache: LSTMCache, dc_last: Any | None = None):
    """backward, with the kernels and arrays of ``target``; returns (dx, dh0, dc0, dW, dU, db)."""
    xp = target.xp
    x, h0, c0, W, U, _, h, c, gates = cache
    N, T, _ = x.shape
    H = U.shape[0]
    dz = xp.empty((N, T, GATES * H), dtype=x.dtype)  # dL/dz_t, the four gates' pre-activations, every step
    dc_carry = xp.empty((N, H), dtype=x.dtype)  # dL/dc_t carried back; dL/dc0 after the last launch
    step = target.kernel("lstm_step_backward", x.dtype)
    grid, block = step_grid(target, N, H)
    # A missing dh / dc_last is a zero gradient: the kernel is told by a flag and never reads the stand-in.
    upstream = (c if dh is None else dh, c0 if dc_last is None else dc_last)
    flags = (launch.i32(dh is not None), launch.i32(dc_last is not None))
    for t in reversed(range(T)):  # each launch reads dz[:, t + 1] and dc_carry, written by the previous one
        step(grid, block, (*upstream, U, c0, c, gates, dz, dc_carry, launch.i64(N), launch.i64(T), launch.i64(H),
                           launch.i64(t), *flags))
    dx, dh0, dW, dU, db = recurrent_gradients_on(target, x, h0, h, dz, W, U)
    return dx, dh0, dc_carry, dW, dU, db


def forward(x: Any, h0: Any, c0: Any, W: Any, U: Any, b: Any):
    return forward_on(_target(), x, h0, c0, W, U, b)


def backward(dh: Any | None, cache: LSTMCache, dc_last: Any | None = None):
    return backward_on(_target(), dh, cache, dc_last)
