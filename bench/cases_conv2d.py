"""conv2d: LeNet-5's convolutions at batch 128 (C1: 32x32x1 with 6 filters 5x5; C3: 14x14x6 with 16
filters 5x5) and a VGG/ResNet-like 3x3, 64 -> 64 channel layer on 56x56 at batch 8 with 'same' padding.
The performance target: fwd+bwd within 1.5x of PyTorch (oneDNN). On the GPU also two VGG-16 layers.

PyTorch computes in NCHW with (Cout, Cin, KH, KW) filters: x, w and dy are converted once, outside the
timed region, to contiguous tensors in that layout, which is what a PyTorch user holds. Our side runs
on the channels-last arrays. Symmetric padding is passed to F.conv2d; an asymmetric one (odd 'same'
padding) would go through F.pad inside the timed region.
"""

from __future__ import annotations

from .cases import Case, TorchGraph, Work, requires_grad


def _conv(name: str, n: int, hw: int, cin: int, k: int, cout: int, stride: int, padding, quick: bool,
          devices=("cpu", "gpu")) -> Case:
    def make(rng, dtype):
        from toolkit.ops.conv2d.geometry import resolve_padding

        x = rng.standard_normal((n, hw, hw, cin)).astype(dtype)
        w = (rng.standard_normal((k, k, cin, cout)) / (k * k * cin) ** 0.5).astype(dtype)
        pads = resolve_padding(padding, (hw, hw), (k, k), (stride, stride))
        (top, bottom), (left, right) = pads
        oh, ow = (hw + top + bottom - k) // stride + 1, (hw + left + right - k) // stride + 1
        return {"x": x, "w": w, "b": rng.standard_normal(cout).astype(dtype),
                "dy": rng.standard_normal((n, oh, ow, cout)).astype(dtype),
                "stride": (stride, stride), "pads": pads}

    def forward(mod, inp):
        return mod.forward(inp["x"], inp["w"], inp["b"], inp["stride"], inp["pads"])

    def torch_impl(torch, inp):
        F = torch.nn.functional
        x, w, b = requires_grad(inp["x"].permute(0, 3, 1, 2).contiguous(),
                                inp["w"].permute(3, 2, 0, 1).contiguous(), inp["b"])
        dy = inp["dy"].permute(0, 3, 1, 2).contiguous()
        (top, bottom), (left, right) = inp["pads"]
        if top == bottom and left == right:
            def run():
                return [F.conv2d(x, w, b, stride=inp["stride"], padding=(top, left))], [dy]
        else:
            def run():
                return [F.conv2d(F.pad(x, (left, right, top, bottom)), w, b, stride=inp["stride"])], [dy]
        return TorchGraph(run=run, inputs=[x, w, b])

    side = -(-hw // stride) if padding == "same" else (hw - k) // stride + 1  # Keras: ceil(H / s) or floor
    products = 2 * n * side * side * k * k * cin * cout  # a multiply-add per filter tap of every output value
    return Case(
        op="conv2d", name=name, size=f"{n}x{hw}x{hw}x{cin} {k}x{k}>{cout}", make_inputs=make, quick=quick,
        forward=forward, backward=lambda mod, inp, res: mod.backward(inp["dy"], res[1]),
        torch=torch_impl, flops=Work(fwd=products, bwd=2 * products),  # bwd: dx and dw, one product each
        devices=devices,
    )


def cases() -> list[Case]:
    return [
        _conv("LeNet C1", 8, 32, 1, 5, 6, 1, "valid", True),
        _conv("LeNet C3", 8, 14, 6, 5, 16, 1, "valid", True),
        _conv("3x3 same", 2, 12, 8, 3, 8, 1, "same", True),
        _conv("3x3 s2 same", 2, 12, 8, 3, 8, 2, "same", True),  # padding (0, 1): F.pad
        _conv("LeNet C1", 128, 32, 1, 5, 6, 1, "valid", False),
        _conv("LeNet C3", 128, 14, 6, 5, 16, 1, "valid", False),
        _conv("3x3 same", 8, 56, 64, 3, 64, 1, "same", False),
        # GPU target: >= 50% of cuDNN on VGG-16 layers (conv1_2 and conv4_2), batch 16
        _conv("VGG conv1_2", 16, 224, 64, 3, 64, 1, "same", False, devices=("gpu",)),
        _conv("VGG conv4_2", 16, 28, 512, 3, 512, 1, "same", False, devices=("gpu",)),
    ]
