"""Optimizer updates as Numba kernels (CPU). Same signatures and formulas as reference.py.

Each update is one pass over the flat arrays (param, grad and state are C-contiguous, so reshape(-1)
is a view and writes reach the caller's arrays). Every element is independent: the prange writes
disjoint memory. Large arrays run in parallel, small ones serially (thread start-up would cost more
than the loop). Hyper-parameters arrive already rounded to the parameter dtype, so float32 params
are updated in float32 arithmetic throughout.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .reference import adam_step_size

# Below this many parameters the serial kernels run (about 0.5 ms of work): waking Numba's threads costs
# more than that, and on a busy machine a parallel region can wait milliseconds for a descheduled thread.
PARALLEL_MIN_SIZE = 1 << 20

PLAIN, MOMENTUM, NESTEROV = 0, 1, 2  # SGD variants


@njit(cache=True, inline="always")
def _sgd_element(i, mode, p, g, vel, lr, mu):
    if mode == PLAIN:
        p[i] -= lr * g[i]
        return
    v_new = mu * vel[i] - lr * g[i]
    vel[i] = v_new
    if mode == NESTEROV:
        p[i] += mu * v_new - lr * g[i]
    else:
        p[i] += v_new


@njit(cache=True)
def _sgd_serial(mode, p, g, vel, lr, mu):
    for i in range(p.size):
        _sgd_element(i, mode, p, g, vel, lr, mu)


@njit(cache=True, parallel=True)
def _sgd_parallel(mode, p, g, vel, lr, mu):
    for i in prange(p.size):
        _sgd_element(i, mode, p, g, vel, lr, mu)


@njit(cache=True, inline="always")
def _adam_element(i, p, g, m, v, b1, one_minus_b1, b2, one_minus_b2, alpha, eps):
    gi = g[i]
    m_new = b1 * m[i] + one_minus_b1 * gi
    v_new = b2 * v[i] + one_minus_b2 * (gi * gi)
    m[i] = m_new
    v[i] = v_new
    p[i] -= alpha * m_new / (np.sqrt(v_new) + eps)


@njit(cache=True)
def _adam_serial(p, g, m, v, b1, one_minus_b1, b2, one_minus_b2, alpha, eps):
    for i in range(p.size):
        _adam_element(i, p, g, m, v, b1, one_minus_b1, b2, one_minus_b2, alpha, eps)


@njit(cache=True, parallel=True)
def _adam_parallel(p, g, m, v, b1, one_minus_b1, b2, one_minus_b2, alpha, eps):
    for i in prange(p.size):
        _adam_element(i, p, g, m, v, b1, one_minus_b1, b2, one_minus_b2, alpha, eps)


def sgd_update(param: np.ndarray, grad: np.ndarray, velocity: np.ndarray | None, lr: float, momentum: float,
               nesterov: bool) -> np.ndarray:
    t = param.dtype.type
    if velocity is None:
        mode, vel = PLAIN, np.empty(0, dtype=param.dtype)  # never read in PLAIN mode
    else:
        mode, vel = (NESTEROV if nesterov else MOMENTUM), velocity.reshape(-1)
    kernel = _sgd_parallel if param.size >= PARALLEL_MIN_SIZE else _sgd_serial
    kernel(mode, param.reshape(-1), grad.reshape(-1), vel, t(lr), t(momentum))
    return param


def adam_update(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, step: int, lr: float,
                beta1: float, beta2: float, eps: float) -> np.ndarray:
    t = param.dtype.type
    b1, b2 = t(beta1), t(beta2)
    kernel = _adam_parallel if param.size >= PARALLEL_MIN_SIZE else _adam_serial
    kernel(param.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1), b1, t(1) - b1, b2, t(1) - b2,
           t(adam_step_size(lr, beta1, beta2, step)), t(eps))
    return param
