"""pool2d: LeNet-5's 2x2 subsampling layers at batch 128 (S2: 28x28x6 -> 14x14x6; S4: 10x10x16 ->
5x5x16), max and average. PyTorch runs F.max_pool2d / F.avg_pool2d on NCHW tensors converted once,
outside the timed region (its max pooling also keeps the argmax indices, as ours does).

The CuPy built-in baseline (GPU) exists because these windows do not overlap and tile the image: x
reshaped to (N, OH, pool, OW, pool, C) holds each window on two axes. Average pooling is a mean over
them and its backward a broadcast of dy / pool^2; max pooling moves each window to one last axis (a
transposed copy), takes max and argmax there (the first maximum in row-major window order, as ours)
and scatters dy back through a one-hot of the argmax."""

from __future__ import annotations

from .cases import F32, ArrayGraph, Case, TorchGraph, Work, requires_grad


def _builtin_avg_pool(pool: int):
    def build(xp, inp):
        x, dy = inp["x"], inp["dy"]
        n, h, w, c = x.shape
        split = (n, h // pool, pool, w // pool, pool, c)  # output cell (oh, ow), offset (i, j) in its window

        def backward(result):
            share = (dy / (pool * pool))[:, :, None, :, None, :]
            return xp.broadcast_to(share, split).reshape(x.shape)  # reshape copies the broadcast

        return ArrayGraph(forward=lambda: (x.reshape(split).mean(axis=(2, 4)), None), backward=backward)

    return build


def _builtin_max_pool(pool: int):
    def build(xp, inp):
        x, dy = inp["x"], inp["dy"]
        n, h, w, c = x.shape
        oh, ow, cells = h // pool, w // pool, pool * pool

        def forward():
            # (N, OH, OW, C, pool * pool): window offset i * pool + j on the last axis
            split = x.reshape(n, oh, pool, ow, pool, c)
            windows = split.transpose(0, 1, 3, 5, 2, 4).reshape(n, oh, ow, c, cells)
            return windows.max(axis=-1), windows.argmax(axis=-1)

        def backward(result):
            winner = xp.arange(cells) == result[1][..., None]
            dx_windows = (winner * dy[..., None]).reshape(n, oh, ow, c, pool, pool)
            return dx_windows.transpose(0, 1, 4, 2, 5, 3).reshape(x.shape)

        return ArrayGraph(forward=forward, backward=backward)

    return build


def _pool(layer: str, mode: str, n: int, hw: int, c: int, quick: bool, pool: int = 2) -> Case:
    out = hw // pool
    if hw % pool:
        raise ValueError(f"{hw}x{hw} with {pool}x{pool} windows: the built-in baseline's reshape needs "
                         f"windows that tile the image")

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
        torch=torch_impl, cupy={"max": _builtin_max_pool, "avg": _builtin_avg_pool}[mode](pool),
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
