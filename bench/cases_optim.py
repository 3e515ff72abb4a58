"""optim: one in-place optimizer step on 2^22 float32 parameters (phase "upd": an update has no
backward). Adam (Keras defaults, eps 1e-7) against torch.optim.Adam, and SGD with momentum 0.9 against
torch.optim.SGD (PyTorch folds the learning rate in after the velocity; the same reads and writes).
The step counter stays fixed across repeats: the cost of a step does not depend on it.

The CuPy built-in baseline (GPU) is the same update as in-place array expressions (m *= beta1; m +=
(1 - beta1) g; ...), Keras' eps placement as ours: one kernel per operator and a temporary between them."""

from __future__ import annotations

import numpy as np

from toolkit.ops.optim.reference import adam_step_size

from .cases import F32, ArrayGraph, Case, TorchStep, Work

LR_SGD, MOMENTUM = 0.01, 0.9
LR_ADAM, BETA1, BETA2, EPS, STEP = 1e-3, 0.9, 0.999, 1e-7, 10


def _make(n: int, state: tuple[str, ...]):
    def make(rng, dtype):
        inp = {"param": rng.standard_normal(n).astype(dtype), "grad": rng.standard_normal(n).astype(dtype)}
        inp.update({key: np.zeros(n, dtype) for key in state})
        return inp

    return make


def _torch_param(inp):
    p = inp["param"].detach().clone().requires_grad_(True)
    p.grad = inp["grad"].clone()
    return p


def _builtin_adam(xp, inp):
    step_size = adam_step_size(LR_ADAM, BETA1, BETA2, STEP)  # lr sqrt(1 - b2^t) / (1 - b1^t), a float

    def update():
        param, grad, m, v = inp["param"], inp["grad"], inp["m"], inp["v"]  # updated in place below
        m *= BETA1
        m += (1 - BETA1) * grad
        v *= BETA2
        v += (1 - BETA2) * (grad * grad)
        param -= step_size * m / (xp.sqrt(v) + EPS)
        return param

    return ArrayGraph(forward=update)


def _builtin_sgd_momentum(xp, inp):
    def update():
        param, grad, velocity = inp["param"], inp["grad"], inp["velocity"]  # updated in place below
        velocity *= MOMENTUM
        velocity -= LR_SGD * grad
        param += velocity
        return param

    return ArrayGraph(forward=update)


def _adam(n: int, label: str, quick: bool) -> Case:
    def torch_impl(torch, inp):
        p = _torch_param(inp)
        return TorchStep(torch.optim.Adam([p], lr=LR_ADAM, betas=(BETA1, BETA2), eps=EPS).step)

    return Case(
        op="optim", name="adam", size=label, make_inputs=_make(n, ("m", "v")), quick=quick,
        forward=lambda mod, inp: mod.adam_update(inp["param"], inp["grad"], inp["m"], inp["v"], STEP, LR_ADAM,
                                                 BETA1, BETA2, EPS),
        backward=None, torch=torch_impl, cupy=_builtin_adam,
        bytes_moved=Work(fwd=7 * n * F32),  # param, grad, m, v -> param, m, v
    )


def _sgd_momentum(n: int, label: str, quick: bool) -> Case:
    def torch_impl(torch, inp):
        p = _torch_param(inp)
        return TorchStep(torch.optim.SGD([p], lr=LR_SGD, momentum=MOMENTUM).step)

    return Case(
        op="optim", name="sgd momentum", size=label, make_inputs=_make(n, ("velocity",)), quick=quick,
        forward=lambda mod, inp: mod.sgd_update(inp["param"], inp["grad"], inp["velocity"], LR_SGD, MOMENTUM,
                                                False),
        backward=None, torch=torch_impl, cupy=_builtin_sgd_momentum,
        bytes_moved=Work(fwd=5 * n * F32),  # param, grad, velocity -> param, velocity
    )


def cases() -> list[Case]:
    return [_adam(1 << 16, "2^16", True), _adam(1 << 22, "2^22", False),
            _sgd_momentum(1 << 16, "2^16", True), _sgd_momentum(1 << 22, "2^22", False)]
