"""batchnorm in training mode (batch statistics, running statistics updated in place), features on the
last axis: a dense layer's (256, 1024) and a convolution's (8, 56, 56, 64). PyTorch's F.batch_norm
normalises axis 1, so the 4-D input is converted once to contiguous NCHW outside the timed region;
Keras' momentum 0.99 (weight of the old value) is PyTorch's momentum 0.01."""

from __future__ import annotations

import numpy as np

from .cases import F32, Case, TorchGraph, Work, requires_grad

MOMENTUM, EPS = 0.99, 1e-3


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
        torch=torch_impl,
        bytes_moved=Work(fwd=3 * n * F32, bwd=3 * n * F32),  # x -> y, x_hat (the cache); dy, x_hat -> dx
    )


def cases() -> list[Case]:
    return [_batchnorm((64, 128), True), _batchnorm((8, 14, 14, 16), True),
            _batchnorm((256, 1024), False), _batchnorm((8, 56, 56, 64), False)]
