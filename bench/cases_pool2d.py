"""pool2d: LeNet-5's 2x2 subsampling layers at batch 128 (S2: 28x28x6 -> 14x14x6; S4: 10x10x16 ->
5x5x16), max and average. PyTorch runs F.max_pool2d / F.avg_pool2d on NCHW tensors converted once,
outside the timed region (its max pooling also keeps the argmax indices, as ours does)."""

from __future__ import annotations

from .cases import F32, Case, TorchGraph, Work, requires_grad


def _pool(layer: str, mode: str, n: int, hw: int, c: int, quick: bool, pool: int = 2) -> Case:
    out = hw // pool

    def make(rng, dtype):
        return {"x": rng.standard_normal((n, hw, hw, c)).astype(dtype),
                "dy": rng.standard_normal((n, out, out, c)).astype(dtype)}

    def torch_impl(torch, inp):
        fn = {"max": torch.nn.functional.max_pool2d, "avg": torch.nn.functional.avg_pool2d}[mode]
        (x,) = requires_grad(inp["x"].permute(0, 3, 1, 2).contiguous())
        dy = inp["dy"].permute(0, 3, 1, 2).contiguous()
        return TorchGraph(run=lambda: ([fn(x, pool)], [dy]), inputs=[x])

    x_bytes, y_bytes = n * hw * hw * c * F32, n * out * out * c * F32
    return Case(
        op="pool2d", name=f"{layer} {mode}", size=f"{n}x{hw}x{hw}x{c} {pool}x{pool}", make_inputs=make,
        quick=quick,
        forward=lambda mod, inp: mod.forward(inp["x"], (pool, pool), (pool, pool), ((0, 0), (0, 0)), mode),
        backward=lambda mod, inp, res: mod.backward(inp["dy"], res[1]),
        torch=torch_impl,
        # x -> y; dy -> dx (the argmax indices of max pooling are not counted)
        bytes_moved=Work(fwd=x_bytes + y_bytes, bwd=y_bytes + x_bytes),
    )


def cases() -> list[Case]:
    out = []
    for mode in ("max", "avg"):
        out.append(_pool("S2", mode, 8, 28, 6, True))
        out.append(_pool("S2", mode, 128, 28, 6, False))
        out.append(_pool("S4", mode, 128, 10, 16, False))
    return out
