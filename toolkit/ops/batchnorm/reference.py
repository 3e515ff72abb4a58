"""Batch normalisation in plain NumPy: the readable oracle the Numba and CUDA kernels are held against.

Keras ``BatchNormalization`` semantics (keras/src/layers/normalization/batch_normalization.py):

* Features live on the LAST axis. x may have any rank >= 2, e.g. (N, C) after a Dense layer or
  (N, H, W, C) after a Conv2D; the statistics of feature c are taken over ALL other axes, so for an
  image batch each channel is normalised over N * H * W values (M below).
* Training: mu = mean(x), var = mean((x - mu)^2), the BIASED variance (divide by M, not M - 1), then
      x_hat = (x - mu) / sqrt(var + eps),   y = gamma * x_hat + beta.
  The running statistics are updated IN PLACE, exactly as Keras 3 does it:
      running_mean = momentum * running_mean + (1 - momentum) * mu
      running_var  = momentum * running_var  + (1 - momentum) * var
  Keras feeds the biased batch variance (``ops.moments``) to the moving variance too; PyTorch uses
  the unbiased one there. Note Keras' momentum is the weight of the OLD value (default 0.99),
  PyTorch's is the weight of the NEW one (default 0.1).
* Inference (training=False): mu and var are the running statistics; nothing is updated.
* A batch of one (or any constant feature) has var = 0, so x_hat = 0 and y = beta: eps keeps the
  division finite.

Backward. With M values per feature, the training-mode gradient in its compact form is
      dbeta  = sum(dy),   dgamma = sum(dy * x_hat),
      dx = gamma / sqrt(var + eps) * (dy - dbeta / M - x_hat * dgamma / M)
(the usual "(M dy - sum dy - x_hat sum(dy x_hat)) / M", written with means so that float32 does not
subtract two numbers of size M). In inference mode mu and var are constants:
      dx = dy * gamma / sqrt(running_var + eps).

Precision: for float32 inputs the statistics (mean, variance, dgamma, dbeta) are accumulated in
float64 and rounded once, because a float32 sum over M = N*H*W values loses about log2(M) bits;
everything elementwise stays in the input dtype. The running statistics are updated in float64 and
rounded to their dtype (Keras does that arithmetic in float32; the difference is one rounding).
NaN or Inf in a feature column make that column's statistics NaN, by IEEE rules.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class BatchNormCache(NamedTuple):
    x_hat: Any  # (x - mean) * inv_std, the shape of x
    gamma: Any  # (C,) a copy: an optimizer may update gamma in place before backward runs
    mean: Any  # (C,) the mean used: batch mean (training) or running mean (inference)
    var: Any  # (C,) the variance used: biased batch variance (training) or running variance
    inv_std: Any  # (C,) 1 / sqrt(var + eps)
    training: bool


def statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and biased variance of x over all axes but the last, in float64 (two passes)."""
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axis=axes, dtype=np.float64)
    var = np.square(x.astype(np.float64) - mean).mean(axis=axes)
    return mean, var


def update_running(running: np.ndarray, batch_stat: np.ndarray, momentum: float) -> None:
    """running <- momentum * running + (1 - momentum) * batch_stat, in place (float64 arithmetic)."""
    running[...] = momentum * running.astype(np.float64) + (1.0 - momentum) * batch_stat


def forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
            running_var: np.ndarray, training: bool, momentum: float, eps: float) -> tuple[np.ndarray, BatchNormCache]:
    dtype = x.dtype
    # inf - inf = NaN is the IEEE answer for a column holding Inf: propagate it quietly, as the kernels do.
    with np.errstate(invalid="ignore", over="ignore"):
        if training:
            mean64, var64 = statistics(x)
            update_running(running_mean, mean64, momentum)
            update_running(running_var, var64, momentum)
        else:
            mean64, var64 = running_mean.astype(np.float64), running_var.astype(np.float64)
        inv_std = (1.0 / np.sqrt(var64 + eps)).astype(dtype)
        mean = mean64.astype(dtype)
        x_hat = (x - mean) * inv_std
        y = gamma * x_hat + beta
    return y, BatchNormCache(x_hat, gamma.copy(), mean, var64.astype(dtype), inv_std, bool(training))


def backward(dy: np.ndarray, cache: BatchNormCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x_hat, gamma, _, _, inv_std, training = cache
    dtype = x_hat.dtype
    axes = tuple(range(x_hat.ndim - 1))
    m = x_hat.size // x_hat.shape[-1]  # values per feature
    with np.errstate(invalid="ignore", over="ignore"):
        dbeta64 = dy.sum(axis=axes, dtype=np.float64)
        dgamma64 = (dy.astype(np.float64) * x_hat).sum(axis=axes)
        scale = gamma * inv_std
        if training:
            mean_dy = (dbeta64 / m).astype(dtype)
            mean_dy_xhat = (dgamma64 / m).astype(dtype)
            dx = scale * (dy - mean_dy - x_hat * mean_dy_xhat)
        else:
            dx = scale * dy
    return dx, dgamma64.astype(dtype), dbeta64.astype(dtype)
