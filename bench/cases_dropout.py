"""dropout: inverted dropout at rate 0.5 on 2^24 float32 values. Ours draws the mask from Philox-4x32-10
(counter-based, the same bits on CPU and GPU); PyTorch's F.dropout from its own generator: the work
compared is the same (a random bit per value, a scale, a saved mask), the masks are not.

The CuPy built-in baseline (GPU) draws uniform float32 numbers from xp.random.default_rng (cuRAND's
XORWOW in CuPy), keeps those >= rate as a bool mask and scales: x * mask / (1 - rate); its masks are
its own too."""

from __future__ import annotations

from .cases import F32, ArrayGraph, Case, TorchGraph, Work, requires_grad

RATE = 0.5
SEED = 1234


def _builtin_dropout(xp, inp):
    x, dy = inp["x"], inp["dy"]
    rng = xp.random.default_rng(SEED)  # created once; each forward draws a fresh mask
    scale = 1 / (1 - RATE)

    def forward():
        keep = rng.random(x.shape, dtype=x.dtype) >= RATE
        return x * keep * scale, keep

    return ArrayGraph(forward=forward, backward=lambda result: dy * result[1] * scale)


def _dropout(n: int, label: str, quick: bool) -> Case:
    def make(rng, dtype):
        return {"x": rng.standard_normal(n).astype(dtype), "dy": rng.standard_normal(n).astype(dtype)}

    def torch_impl(torch, inp):
        (x,) = requires_grad(inp["x"])
        return TorchGraph(run=lambda: ([torch.nn.functional.dropout(x, RATE, training=True)], [inp["dy"]]),
                          inputs=[x])

    return Case(
        op="dropout", name=f"rate {RATE}", size=label, make_inputs=make, quick=quick,
        forward=lambda mod, inp: mod.forward(inp["x"], RATE, SEED, True),
        backward=lambda mod, inp, res: mod.backward(inp["dy"], res[1]),
        torch=torch_impl, cupy=_builtin_dropout,
        bytes_moved=Work(fwd=n * (2 * F32 + 1), bwd=n * (2 * F32 + 1)),  # x -> y, mask (1 byte); dy, mask -> dx
    )


def cases() -> list[Case]:
    return [_dropout(1 << 16, "2^16", True), _dropout(1 << 24, "2^24", False)]
