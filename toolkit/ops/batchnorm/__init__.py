"""Batch normalisation (Keras BatchNormalization): validate, then run on the device the input lives on.

    y, cache = batchnorm_forward(x, gamma, beta, running_mean, running_var, training=True,
                                 momentum=0.99, eps=1e-3)
    dx, dgamma, dbeta = batchnorm_backward(dy, cache)

Features are on the LAST axis of x (any rank >= 2); gamma, beta, running_mean and running_var have
shape (C,). In training mode the batch statistics normalise x and running_mean / running_var are
updated IN PLACE (so they must be C-contiguous, writeable, distinct arrays); in inference mode
the running statistics normalise x and are only read (read-only arrays are fine). running_var must
be >= 0. Start them as Keras does: running_mean = zeros, running_var = ones. See reference.py for
the formulas and conventions (biased variance, Keras' momentum = weight of the OLD value).
"""

from __future__ import annotations

from typing import Any

from ... import backend, validate
from .. import cache_checks
from .reference import BatchNormCache

__all__ = ["BatchNormCache", "batchnorm_forward", "batchnorm_backward"]


def batchnorm_forward(x: Any, gamma: Any, beta: Any, running_mean: Any, running_var: Any, training: bool = True,
                      momentum: float = 0.99, eps: float = 1e-3) -> tuple[Any, BatchNormCache]:
    """y = gamma * (x - mean) / sqrt(var + eps) + beta per feature (last axis); returns (y, cache)."""
    x = validate.array("x", x)
    if x.ndim < 2:
        raise ValueError(f"x must have at least 2 dimensions (batch, ..., features); got shape {tuple(x.shape)} "
                         f"({x.ndim} dimension{'s' if x.ndim != 1 else ''})")
    features = (x.shape[-1],)
    gamma = validate.array("gamma", gamma, shape=features, dtype=x.dtype)
    beta = validate.array("beta", beta, shape=features, dtype=x.dtype)
    checked_mean = validate.array("running_mean", running_mean, shape=features, dtype=x.dtype)
    checked_var = validate.array("running_var", running_var, shape=features, dtype=x.dtype)
    training = validate.flag("training", training)
    momentum = validate.real("momentum", momentum, low=0.0, high=1.0)
    eps = validate.real("eps", eps, low=0.0, low_open=True)
    if training:  # updated in place: a copy would silently drop the update
        validate.writable("running_mean", running_mean)
        validate.writable("running_var", running_var)
        if backend.array_module(running_mean).may_share_memory(running_mean, running_var):
            raise ValueError("running_mean and running_var are both updated in place, so they must be different "
                             "arrays; got two views of the same memory")
    lowest = float(checked_var.min())
    if lowest < 0:  # NaN compares False: it propagates instead
        raise ValueError(f"running_var must be >= 0 (it is a variance); got a minimum of {lowest}")
    validate.fits(x, [(lambda: f"x {tuple(x.shape)}", "the output y and the cache's normalised x_hat (2, *x.shape)",
                       (2, *x.shape), x.dtype)])
    return backend.dispatch("batchnorm", x=x, gamma=gamma, beta=beta, running_mean=checked_mean,
                            running_var=checked_var).forward(x, gamma, beta, checked_mean, checked_var,
                                                             training, momentum, eps)


def batchnorm_backward(dy: Any, cache: BatchNormCache) -> tuple[Any, Any, Any]:
    """(dx, dgamma, dbeta) given dy = dL/dy and the cache of the forward pass."""
    cache = cache_checks.batchnorm(cache)  # before any kernel: its fields agree (shapes, dtypes, device)
    dy = validate.array("dy", dy, shape=cache.x_hat.shape, dtype=cache.x_hat.dtype)
    return backend.dispatch("batchnorm", dy=dy, x_hat=cache.x_hat).backward(dy, cache)
