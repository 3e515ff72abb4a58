"""dropout: inverted dropout at rate 0.5 on 2^24 float32 values. Ours draws the mask from Philox-4x32-10
(counter-based, the same bits on CPU and GPU); PyTorch's F.dropout from its own generator: the work
compared is the same (a random bit per value, a scale, a saved mask), the masks are not."""

from __future__ import annotations

from .cases import F32, Case, TorchGraph, Work, requires_grad

RATE = 0.5
SEED = 1234


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
        torch=torch_impl,
        bytes_moved=Work(fwd=n * (2 * F32 + 1), bwd=n * (2 * F32 + 1)),  # x -> y, mask (1 byte); dy, mask -> dx
    )


def cases() -> list[Case]:
    return [_dropout(1 << 16, "2^16", True), _dropout(1 << 24, "2^24", False)]
