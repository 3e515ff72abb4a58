"""rnn: a simple (Elman) recurrent layer over a whole sequence, h_t = tanh(x_t W_xh + h_{t-1} W_hh + b_h),
without read-out, at the LSTM target's size (N=32, T=64, D=128, H=256). PyTorch: torch.nn.RNN with
batch_first=True and our weights copied in (its weights are the transposes; its second bias is zero),
backward to x, h0 and every parameter, as ours."""

from __future__ import annotations

from .cases import Case, TorchGraph, Work, requires_grad


def _rnn(n: int, t: int, d: int, h: int, quick: bool) -> Case:
    def make(rng, dtype):
        return {"x": rng.standard_normal((n, t, d)).astype(dtype),
                "h0": (rng.standard_normal((n, h)) * 0.1).astype(dtype),
                "W_xh": (rng.standard_normal((d, h)) / d ** 0.5).astype(dtype),
                "W_hh": (rng.standard_normal((h, h)) / h ** 0.5).astype(dtype),
                "b_h": (rng.standard_normal(h) * 0.1).astype(dtype),
                "dh": rng.standard_normal((n, t, h)).astype(dtype)}

    def forward(mod, inp):
        return mod.forward(inp["x"], inp["h0"], inp["W_xh"], inp["W_hh"], inp["b_h"], None, None)

    def torch_impl(torch, inp):
        x = inp["x"]
        layer = torch.nn.RNN(d, h, batch_first=True, nonlinearity="tanh", device=x.device, dtype=x.dtype)
        with torch.no_grad():
            layer.weight_ih_l0.copy_(inp["W_xh"].T)
            layer.weight_hh_l0.copy_(inp["W_hh"].T)
            layer.bias_ih_l0.copy_(inp["b_h"])
            layer.bias_hh_l0.zero_()
        x, h0 = requires_grad(x, inp["h0"][None])  # PyTorch's h0 is (layers, N, H)
        return TorchGraph(run=lambda: ([layer(x, h0)[0]], [inp["dh"]]), inputs=[x, h0, *layer.parameters()])

    products = 2 * n * t * (d * h + h * h)  # x_t W_xh and h_{t-1} W_hh at every step
    return Case(
        op="rnn", name="tanh", size=f"N{n} T{t} D{d} H{h}", make_inputs=make, quick=quick,
        forward=forward, backward=lambda mod, inp, res: mod.backward(None, inp["dh"], res[2]),
        torch=torch_impl, flops=Work(fwd=products, bwd=2 * products),  # bwd: input and weight gradients
    )


def cases() -> list[Case]:
    return [_rnn(4, 8, 16, 32, True), _rnn(32, 64, 128, 256, False)]
