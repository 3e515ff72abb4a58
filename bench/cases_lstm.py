"""lstm: a Keras-style LSTM layer (gates i, f, c, o) over a whole sequence at the performance target's
size, N=32, T=64, D=128, H=256 (fwd+bwd within 1.5x of PyTorch). PyTorch: torch.nn.LSTM with
batch_first=True, our weights copied in (PyTorch's gate order i, f, g, o is the same; its weights are
the transposes; its second bias is zero); backward to x, h0, c0 and every parameter, as ours."""

from __future__ import annotations

from .cases import Case, TorchGraph, Work, requires_grad


def _lstm(n: int, t: int, d: int, h: int, quick: bool) -> Case:
    def make(rng, dtype):
        return {"x": rng.standard_normal((n, t, d)).astype(dtype),
                "h0": (rng.standard_normal((n, h)) * 0.1).astype(dtype),
                "c0": (rng.standard_normal((n, h)) * 0.1).astype(dtype),
                "W": (rng.standard_normal((d, 4 * h)) / d ** 0.5).astype(dtype),
                "U": (rng.standard_normal((h, 4 * h)) / h ** 0.5).astype(dtype),
                "b": (rng.standard_normal(4 * h) * 0.1).astype(dtype),
                "dh": rng.standard_normal((n, t, h)).astype(dtype)}

    def forward(mod, inp):
        return mod.forward(inp["x"], inp["h0"], inp["c0"], inp["W"], inp["U"], inp["b"])

    def torch_impl(torch, inp):
        x = inp["x"]
        layer = torch.nn.LSTM(d, h, batch_first=True, device=x.device, dtype=x.dtype)
        with torch.no_grad():
            layer.weight_ih_l0.copy_(inp["W"].T)
            layer.weight_hh_l0.copy_(inp["U"].T)
            layer.bias_ih_l0.copy_(inp["b"])
            layer.bias_hh_l0.zero_()
        x, h0, c0 = requires_grad(x, inp["h0"][None], inp["c0"][None])  # PyTorch's states are (layers, N, H)
        return TorchGraph(run=lambda: ([layer(x, (h0, c0))[0]], [inp["dh"]]),
                          inputs=[x, h0, c0, *layer.parameters()])

    products = 2 * n * t * (d + h) * 4 * h  # x_t W and h_{t-1} U (four gates wide) at every step
    return Case(
        op="lstm", name="lstm", size=f"N{n} T{t} D{d} H{h}", make_inputs=make, quick=quick,
        forward=forward, backward=lambda mod, inp, res: mod.backward(inp["dh"], res[2], None),
        torch=torch_impl, flops=Work(fwd=products, bwd=2 * products),  # bwd: input and weight gradients
    )


def cases() -> list[Case]:
    return [_lstm(4, 8, 16, 32, True), _lstm(32, 64, 128, 256, False)]
