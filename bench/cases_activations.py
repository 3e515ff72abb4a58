"""Activations: elementwise sigmoid, tanh, ReLU at 2^24 float32 (the CPU target: fwd+bwd >= 2x the NumPy
reference and >= 1x PyTorch; on the GPU also 2^28, the size of its bandwidth target) and softmax over rows
of 4096x1000 (ImageNet's class count). The f+b phase runs ``forward_backward`` (y and dx in one pass over
memory, 16 bytes per float32 value instead of 20) where the module has it.

The CuPy built-in baseline (GPU) writes each activation and its derivative as array expressions, one
kernel per operator and a temporary between them, as a CuPy user without custom kernels would."""

from __future__ import annotations

from .cases import F32, ArrayGraph, Case, TorchGraph, Work, requires_grad


def _fused(name: str, **params):
    """f+b through the fused forward_backward (one pass: x, dy in; y, dx out) where the module has it;
    the reference's is forward then backward, and a module without one (a gpu.py) runs the two calls."""
    def run(mod, inp):
        if hasattr(mod, "forward_backward"):
            return mod.forward_backward(name, inp["x"], inp["dy"], **params)
        y, cache = mod.forward(name, inp["x"], **params)
        return y, mod.backward(inp["dy"], cache)

    return run


def _defaults(name: str) -> dict:
    from toolkit.ops.activations.reference import PARAMETERS

    return dict(PARAMETERS.get(name, {}))


# (xp, x) -> (y, what the derivative needs) and (dy, saved) -> dx, for the built-in baseline. The
# bench's x (3 standard normals, |x| < 88) keeps the plain sigmoid's exp(-x) finite in float32.
_BUILTIN_ELEMENTWISE = {
    "sigmoid": (lambda xp, x: _saved_output(1 / (1 + xp.exp(-x))), lambda dy, y: dy * y * (1 - y)),
    "tanh": (lambda xp, x: _saved_output(xp.tanh(x)), lambda dy, y: dy * (1 - y * y)),
    "relu": (lambda xp, x: (xp.maximum(x, 0), x > 0), lambda dy, positive: dy * positive),
}


def _saved_output(y):
    return y, y


def _builtin_elementwise(name: str):
    forward, backward = _BUILTIN_ELEMENTWISE[name]

    def build(xp, inp):
        return ArrayGraph(forward=lambda: forward(xp, inp["x"]),
                          backward=lambda result: backward(inp["dy"], result[1]))

    return build


def _builtin_softmax(xp, inp):
    def forward():
        x = inp["x"]
        e = xp.exp(x - x.max(axis=1, keepdims=True))
        y = e / e.sum(axis=1, keepdims=True)
        return y, y

    def backward(result):
        y, dy = result[1], inp["dy"]
        return y * (dy - (dy * y).sum(axis=1, keepdims=True))

    return ArrayGraph(forward=forward, backward=backward)


def _elementwise(name: str, n: int, label: str, quick: bool, devices=("cpu", "gpu")) -> Case:
    def make(rng, dtype):
        return {"x": (rng.standard_normal(n) * 3).astype(dtype), "dy": rng.standard_normal(n).astype(dtype)}

    def torch_impl(torch, inp):
        fn = getattr(torch, name)  # torch.sigmoid, torch.tanh, torch.relu
        (x,) = requires_grad(inp["x"])
        return TorchGraph(run=lambda: ([fn(x)], [inp["dy"]]), inputs=[x])

    return Case(
        op="activations", name=name, size=label, make_inputs=make, quick=quick,
        forward=lambda mod, inp: mod.forward(name, inp["x"], **_defaults(name)),
        backward=lambda mod, inp, res: mod.backward(inp["dy"], res[1]),
        torch=torch_impl,
        bytes_moved=Work(fwd=2 * n * F32, bwd=3 * n * F32, both=4 * n * F32),  # x -> y; y, dy -> dx; fused
        devices=devices, fused=_fused(name, **_defaults(name)), cupy=_builtin_elementwise(name),
    )


def _softmax(rows: int, cols: int, quick: bool) -> Case:
    def make(rng, dtype):
        return {"x": (rng.standard_normal((rows, cols)) * 3).astype(dtype),
                "dy": rng.standard_normal((rows, cols)).astype(dtype)}

    def torch_impl(torch, inp):
        (x,) = requires_grad(inp["x"])
        return TorchGraph(run=lambda: ([torch.softmax(x, -1)], [inp["dy"]]), inputs=[x])

    n = rows * cols
    return Case(
        op="activations", name="softmax", size=f"{rows}x{cols}", make_inputs=make, quick=quick,
        forward=lambda mod, inp: mod.forward("softmax", inp["x"], axis=1),
        backward=lambda mod, inp, res: mod.backward(inp["dy"], res[1]),
        torch=torch_impl, bytes_moved=Work(fwd=2 * n * F32, bwd=3 * n * F32, both=4 * n * F32),
        fused=_fused("softmax", axis=1), cupy=_builtin_softmax,
    )


def cases() -> list[Case]:
    out = []
    for name in ("sigmoid", "tanh", "relu"):
        out.append(_elementwise(name, 1 << 16, "2^16", True))
        out.append(_elementwise(name, 1 << 24, "2^24", False))
        out.append(_elementwise(name, 1 << 28, "2^28", False, devices=("gpu",)))  # GPU target: 90% of copy
    out.append(_softmax(256, 1000, True))
    out.append(_softmax(4096, 1000, False))
    return out
