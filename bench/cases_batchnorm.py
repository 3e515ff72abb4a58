"""batchnorm in training mode (batch statistics, running statistics updated in place), features on the
last axis: a dense layer's (256, 1024) and a convolution's (8, 56, 56, 64). PyTorch's F.batch_norm
normalises axis 1, so the 4-D input is converted once to contiguous NCHW outside the timed region;
Keras' momentum 0.99 (weight of the old value) is PyTorch's momentum 0.01.

The CuPy built-in baseline (GPU) computes the batch statistics with xp reductions over every axis but
the last (mean, then the biased variance), updates the running statistics in place and normalises with
array expressions; its backward is the compact formula of the reference, in float32 throughout."""

from __future__ import annotations

import numpy as np

from .cases import F32, ArrayGraph, Case, TorchGraph, Work, requires_grad

MOMENTUM, EPS = 0.99, 1e-3


def _builtin_batchnorm(xp, inp):
    x, gamma, beta, dy = inp["x"], inp["gamma"], inp["beta"], inp["dy"]
    axes = tuple(range(x.ndim - 1))
    per_feature = x.size // x.shape[-1]

    def forward():
        mean = x.mean(axis=axes)
        var = x.var(axis=axes)  # biased, as Keras' training statistics
        for running, batch in ((inp["running_mean"], mean), (inp["running_var"], var)):
            running *= MOMENTUM
            running += (1 - MOMENTUM) * batch
        inv_std = 1 / xp.sqrt(var + EPS)
        x_hat = (x - mean) * inv_std
        return gamma * x_hat + beta, (x_hat, inv_std)

    def backward(result):
        x_hat, inv_std = result[1]
        dbeta = dy.sum(axis=axes)
        dgamma = (dy * x_hat).sum(axis=axes)
        dx = (gamma * inv_std) * (dy - dbeta / per_feature - x_hat * (dgamma / per_feature))
        return dx, dgamma, dbeta

    return ArrayGraph(forward=forward, backward=backward)


def _batchnorm(shape: tuple[int, ...], quick: bool) -> Case:
    c = shape[-1]

    def make(rng, dtype):
        return {"x": (rng.standard_normal(shape) * 2 + 1).astype(dtype),
                "gamma": rng.uniform(0.5, 1.5, c).astype(dtype), "beta": rng.standard_normal(c).astype(dtype),
                "running_mean": np.zeros(c, dtype), "running_var": np.ones(c, dtype),
                "dy": rng.standard_normal(shape).astype(dtype)}

    def forward(mod, inp):
        return mod.forward(inp["x"], inp["gamma"], inp["beta"], inp["running_mean"], inp["running_var"],
                           True, MOMENTUM, EPS)

    def torch_impl(torch, inp):
        x, dy = inp["x"], inp["dy"]
        if x.ndim > 2:  # channels last -> channels first
            order = (0, x.ndim - 1, *range(1, x.ndim - 1))
            x, dy = x.permute(order).contiguous(), dy.permute(order).contiguous()
        x, gamma, beta = requires_grad(x, inp["gamma"], inp["beta"])
        mean, var = inp["running_mean"], inp["running_var"]

        def run():
            y = torch.nn.functional.batch_norm(x, mean, var, gamma, beta, training=True,
                                               momentum=1 - MOMENTUM, eps=EPS)
            return [y], [dy]

        return TorchGraph(run=run, inputs=[x, gamma, beta])

    n = int(np.prod(shape))
    return Case(
        op="batchnorm", name="train", size="x".join(map(str, shape)), make_inputs=make, quick=quick,
        forward=forward, backward=lambda mod, inp, res: mod.backward(inp["dy"], res[1]),
        torch=torch_impl, cupy=_builtin_batchnorm,
        bytes_moved=Work(fwd=3 * n * F32, bwd=3 * n * F32),  # x -> y, x_hat (the cache); dy, x_hat -> dx
    )


def cases() -> list[Case]:
    return [_batchnorm((64, 128), True), _batchnorm((8, 14, 14, 16), True),
            _batchnorm((256, 1024), False), _batchnorm((8, 56, 56, 64), False)]
