"""Optimizer updates as CUDA kernels (optim.cu) on CuPy arrays, in place. Same functions and signatures as
reference.py and cpu.py; both return ``param``, the same (updated) array.

``sgd_update``/``adam_update`` are the public CuPy path; the ``*_on`` functions hold all launch code and
run unchanged on the host harness (NumPy arrays, the kernels compiled for the CPU) in the tests.

Each update is one fused grid-stride kernel over the flat arrays (param, grad and the state are
C-contiguous, so reshape(-1) is a view and the kernel writes reach the caller's arrays). Hyper-parameters
are cast to the parameter dtype with launch.scalar, as cpu.py rounds them with ``t(...)``; the
step-dependent Adam factor alpha_t = lr sqrt(1 - beta2^t) / (1 - beta1^t) is computed on the host in
float64 (reference.adam_step_size) and then rounded once to the dtype, and 1 - beta is taken in the
dtype, both exactly as cpu.py does. The kernels keep cpu.py's operation order and never fuse a product
into an FMA, so the GPU's results are bit-for-bit those of reference.py and cpu.py.
"""

from __future__ import annotations

from typing import Any

from ...cuda import launch, modules
from ...cuda.launch import Target
from .reference import adam_step_size

OP = "optim"


def _target() -> Target:
    return modules.target(OP)


def sgd_update_on(target: Target, param: Any, grad: Any, velocity: Any | None, lr: float, momentum: float,
                  nesterov: bool) -> Any:
    """sgd_update, with the kernels and arrays of ``target`` (CuPy, or the host harness)."""
    dtype = param.dtype
    n = param.size
    grid, block = launch.grid_1d(n, target)
    if velocity is None:
        target.kernel("sgd_step", dtype)(
            grid, block, (param.reshape(-1), grad.reshape(-1), launch.i64(n), launch.scalar(lr, dtype)))
    else:
        target.kernel("sgd_momentum_step", dtype)(
            grid, block, (param.reshape(-1), grad.reshape(-1), velocity.reshape(-1), launch.i64(n),
                          launch.scalar(lr, dtype), launch.scalar(momentum, dtype), launch.i32(bool(nesterov))))
    return param


def adam_update_on(target: Target, param: Any, grad: Any, m: Any, v: Any, step: int, lr: float, beta1: float,
                   beta2: float, eps: float) -> Any:
    """adam_update, with the kernels and arrays of ``target``."""
    dtype = param.dtype
    t = dtype.type
    b1, b2 = t(beta1), t(beta2)
    n = param.size
    grid, block = launch.grid_1d(n, target)
    target.kernel("adam_step", dtype)(
        grid, block, (param.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1), launch.i64(n),
                      b1, t(1) - b1, b2, t(1) - b2,  # rounded to the dtype first, then 1 - beta in it: as cpu.py
                      launch.scalar(adam_step_size(lr, beta1, beta2, step), dtype), launch.scalar(eps, dtype)))
    return param


def sgd_update(param: Any, grad: Any, velocity: Any | None, lr: float, momentum: float, nesterov: bool) -> Any:
    return sgd_update_on(_target(), param, grad, velocity, lr, momentum, nesterov)


def adam_update(param: Any, grad: Any, m: Any, v: Any, step: int, lr: float, beta1: float, beta2: float,
                eps: float) -> Any:
    return adam_update_on(_target(), param, grad, m, v, step, lr, beta1, beta2, eps)
