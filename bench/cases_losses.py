"""Losses: the fused softmax + cross-entropy from logits (the performance target: fwd+bwd >= 2x the NumPy
reference and >= 1x PyTorch) at 4096 samples x 1000 classes, and the elementwise mse and
binary_crossentropy at 2^24 values. The losses reduce to one number, so their forward reads the inputs
and writes almost nothing; softmax_crossentropy also keeps the probabilities for its backward.

The CuPy built-in baseline (GPU) writes each loss and its gradient as array expressions and reductions:
log-softmax from the row maximum and the gradient (p - t) / M for softmax cross-entropy (one-hot
targets), mean((y - t)^2), and the binary cross-entropy of y clipped to [eps, 1 - eps] (the bench's
probabilities lie inside, so its gradient needs no clip mask)."""

from __future__ import annotations

import numpy as np

from .cases import F32, ArrayGraph, Case, TorchGraph, Work, requires_grad

EPSILON = 1e-7  # Keras' clip of probabilities, as the reference's binary cross-entropy uses


def _builtin_softmax_crossentropy(xp, inp):
    z, t = inp["z"], inp["t"]
    samples = z.shape[0]

    def forward():
        shifted = z - z.max(axis=1, keepdims=True)
        log_p = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        # a mean over samples, not sum() / M: a 0-d array / a Python int is float64 under pre-NEP 50 rules
        return -(t * log_p).sum(axis=1).mean(), xp.exp(log_p)

    return ArrayGraph(forward=forward, backward=lambda result: (result[1] - t) / samples)


def _builtin_mse(xp, inp):
    y, t = inp["y"], inp["t"]

    def forward():
        diff = y - t
        return (diff * diff).mean(), None

    return ArrayGraph(forward=forward, backward=lambda result: (y - t) * (2.0 / y.size))


def _builtin_binary_crossentropy(xp, inp):
    y, t = inp["y"], inp["t"]

    def forward():
        c = xp.clip(y, EPSILON, 1 - EPSILON)
        return -(t * xp.log(c) + (1 - t) * xp.log(1 - c)).mean(), None

    def backward(result):
        c = xp.clip(y, EPSILON, 1 - EPSILON)
        return (c - t) / (c * (1 - c)) * (1.0 / y.size)  # = (-t / c + (1 - t) / (1 - c)) / n

    return ArrayGraph(forward=forward, backward=backward)


def _softmax_crossentropy(rows: int, classes: int, quick: bool) -> Case:
    def make(rng, dtype):
        labels = rng.integers(0, classes, rows)
        t = (labels[:, None] == np.arange(classes)).astype(dtype)  # one-hot targets, as to_categorical makes
        return {"z": (rng.standard_normal((rows, classes)) * 3).astype(dtype), "t": t}

    def torch_impl(torch, inp):
        # F.cross_entropy with probability targets: the same mean over samples of -sum t log softmax(z).
        (z,) = requires_grad(inp["z"])
        t = inp["t"]
        return TorchGraph(run=lambda: ([torch.nn.functional.cross_entropy(z, t)], None), inputs=[z])

    n = rows * classes
    return Case(
        op="losses", name="softmax_xent", size=f"{rows}x{classes}", make_inputs=make, quick=quick,
        forward=lambda mod, inp: mod.forward("softmax_crossentropy", inp["z"], inp["t"], axis=1),
        backward=lambda mod, inp, res: mod.backward(res[1], 1.0),
        torch=torch_impl, bytes_moved=Work(fwd=3 * n * F32, bwd=3 * n * F32),  # z, t -> p; p, t -> dz
        cupy=_builtin_softmax_crossentropy,
    )


def _elementwise(name: str, n: int, label: str, quick: bool) -> Case:
    def make(rng, dtype):
        if name == "binary_crossentropy":  # probabilities away from the clip, 0/1 targets
            return {"y": rng.uniform(0.01, 0.99, n).astype(dtype), "t": (rng.random(n) < 0.5).astype(dtype)}
        return {"y": rng.standard_normal(n).astype(dtype), "t": rng.standard_normal(n).astype(dtype)}

    def torch_impl(torch, inp):
        fn = {"mse": torch.nn.functional.mse_loss,
              "binary_crossentropy": torch.nn.functional.binary_cross_entropy}[name]
        (y,) = requires_grad(inp["y"])
        t = inp["t"]
        return TorchGraph(run=lambda: ([fn(y, t)], None), inputs=[y])

    short = {"mse": "mse", "binary_crossentropy": "binary_xent"}[name]
    params = {"from_logits": False} if name == "binary_crossentropy" else {}  # as loss_forward normalises
    return Case(
        op="losses", name=short, size=label, make_inputs=make, quick=quick,
        forward=lambda mod, inp: mod.forward(name, inp["y"], inp["t"], **params),
        backward=lambda mod, inp, res: mod.backward(res[1], 1.0),
        torch=torch_impl, bytes_moved=Work(fwd=2 * n * F32, bwd=3 * n * F32),  # y, t -> L; y, t -> dy
        cupy={"mse": _builtin_mse, "binary_crossentropy": _builtin_binary_crossentropy}[name],
    )


def cases() -> list[Case]:
    return [
        _softmax_crossentropy(64, 10, True),
        _softmax_crossentropy(4096, 1000, False),
        _elementwise("mse", 1 << 16, "2^16", True),
        _elementwise("mse", 1 << 24, "2^24", False),
        _elementwise("binary_crossentropy", 1 << 16, "2^16", True),
        _elementwise("binary_crossentropy", 1 << 24, "2^24", False),
    ]
