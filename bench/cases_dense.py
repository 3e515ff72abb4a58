"""Dense: y = x W + b. The performance target is batch 256, 1024 -> 1024 in float32: fwd+bwd within
1.1x of the NumPy reference (its time is BLAS time: three matrix products) and 1.2x of PyTorch. On the
GPU also 4096 x 4096 -> 4096, the GEMM of its target (>= 70% of cuBLAS).

The CuPy built-in baseline (GPU) is the cuBLAS column of that target: xp.matmul for y = x W (+ b),
dx = dy W^T and dW = x^T dy, and a sum over the batch for db."""

from __future__ import annotations

from .cases import ArrayGraph, Case, TorchGraph, Work, requires_grad


def _builtin_dense(xp, inp):
    x, W, b, dy = inp["x"], inp["W"], inp["b"], inp["dy"]
    return ArrayGraph(forward=lambda: (xp.matmul(x, W) + b, None),
                      backward=lambda result: (xp.matmul(dy, W.T), xp.matmul(x.T, dy), dy.sum(axis=0)))


def _dense(n: int, fan_in: int, fan_out: int, quick: bool, devices=("cpu", "gpu")) -> Case:
    def make(rng, dtype):
        return {"x": rng.standard_normal((n, fan_in)).astype(dtype),
                "W": (rng.standard_normal((fan_in, fan_out)) / fan_in ** 0.5).astype(dtype),
                "b": rng.standard_normal(fan_out).astype(dtype),
                "dy": rng.standard_normal((n, fan_out)).astype(dtype)}

    def torch_impl(torch, inp):
        # nn.Linear stores its weight (out, in): the transpose is made once, outside the timed region.
        x, weight, b = requires_grad(inp["x"], inp["W"].T.contiguous(), inp["b"])
        return TorchGraph(run=lambda: ([torch.nn.functional.linear(x, weight, b)], [inp["dy"]]),
                          inputs=[x, weight, b])

    products = 2 * n * fan_in * fan_out  # one (N, in) x (in, out) matrix product
    return Case(
        op="dense", name="dense", size=f"{n}x{fan_in}>{fan_out}", make_inputs=make, quick=quick,
        forward=lambda mod, inp: mod.forward(inp["x"], inp["W"], inp["b"]),
        backward=lambda mod, inp, res: mod.backward(inp["dy"], res[1]),
        torch=torch_impl, flops=Work(fwd=products, bwd=2 * products),  # bwd: dx = dy W^T and dW = x^T dy
        devices=devices, cupy=_builtin_dense,
    )


def cases() -> list[Case]:
    return [_dense(64, 784, 128, True), _dense(256, 1024, 1024, False),
            _dense(4096, 4096, 4096, False, devices=("gpu",))]  # GPU target: GEMM 4096^3 >= 70% of cuBLAS
