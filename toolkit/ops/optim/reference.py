"""Optimizer updates in plain NumPy: the readable oracle the Numba and CUDA kernels are held against.

Every update works IN PLACE on the parameter and the optimizer state, elementwise, in the dtype of
the parameter (hyper-parameters are rounded to it first, as Keras casts them to the variable's dtype).

SGD (Keras 3 ``keras.optimizers.SGD``, defaults lr = 0.01, momentum = 0):
    plain:     param <- param - lr * grad                         (the notes' gradient-descent step)
    momentum:  velocity <- momentum * velocity - lr * grad;  param <- param + velocity
    nesterov:  velocity <- momentum * velocity - lr * grad;  param <- param + momentum * velocity - lr * grad
Keras keeps no velocity when momentum = 0; here a velocity, when given, is still updated by the same
formula (it becomes -lr * grad), which leaves param exactly as plain gradient descent would.

Adam (Keras 3 ``keras.optimizers.Adam``, keras/src/optimizers/adam.py; defaults lr = 0.001,
beta1 = 0.9, beta2 = 0.999, eps = 1e-7), with step = t the 1-BASED iteration count:
    m <- beta1 m + (1 - beta1) grad
    v <- beta2 v + (1 - beta2) grad^2
    alpha_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)
    param <- param - alpha_t * m / (sqrt(v) + eps)
This is Kingma & Ba's Section 2 "efficient" form: eps is their "epsilon hat", added to sqrt(v) before
any bias correction. It equals Algorithm 1 (m_hat / (sqrt(v_hat) + eps')) only with
eps' = eps / sqrt(1 - beta2^t); tests/ops/test_optim.py proves that with SymPy. alpha_t is computed
in float64 and rounded once to the parameter dtype (Keras evaluates the powers in that dtype).
"""

from __future__ import annotations

import math

import numpy as np


def adam_step_size(lr: float, beta1: float, beta2: float, step: int) -> float:
    """alpha_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t), in float64 (beta1 < 1 keeps it finite)."""
    return lr * math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)


def sgd_update(param: np.ndarray, grad: np.ndarray, velocity: np.ndarray | None, lr: float, momentum: float,
               nesterov: bool) -> np.ndarray:
    t = param.dtype.type
    lr_, mu = t(lr), t(momentum)
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/Inf propagate by IEEE rules, quietly
        if velocity is None:
            param -= lr_ * grad
            return param
        velocity[...] = mu * velocity - lr_ * grad
        if nesterov:
            param += mu * velocity - lr_ * grad
        else:
            param += velocity
    return param


def adam_update(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, step: int, lr: float,
                beta1: float, beta2: float, eps: float) -> np.ndarray:
    t = param.dtype.type
    b1, b2 = t(beta1), t(beta2)
    with np.errstate(invalid="ignore", over="ignore"):  # an Inf gradient gives Inf / Inf = NaN, by IEEE
        m[...] = b1 * m + (1 - b1) * grad
        v[...] = b2 * v + (1 - b2) * (grad * grad)
        param -= t(adam_step_size(lr, beta1, beta2, step)) * m / (np.sqrt(v) + t(eps))
    return param
