"""attention: scaled dot-product attention softmax(q k^T / sqrt(d)) v at the performance target's size,
N=8, T=512, d=64 (fwd+bwd within 1.5x of PyTorch), unmasked and causal. PyTorch:
F.scaled_dot_product_attention on the same (N, T, d) tensors (is_causal=True for the causal case),
backward to q, k and v. Ours keeps the (N, T, T) weights for its backward; PyTorch's CPU kernel may
recompute them (flash attention), so the memory traffic differs: FLOP/s count the four matrix products,
at their full T x T size for both cases (see the causal note in _attention).
On the GPU also sequence 4096, the size of its target (>= 1x PyTorch SDPA, memory linear in T)."""

from __future__ import annotations

import numpy as np

from .cases import Case, TorchGraph, Work, requires_grad


def _attention(n: int, t: int, d: int, causal: bool, quick: bool, devices=("cpu", "gpu")) -> Case:
    def make(rng, dtype):
        inp = {key: rng.standard_normal((n, t, d)).astype(dtype) for key in ("q", "k", "v", "dout")}
        inp["mask"] = np.tril(np.ones((1, t, t), dtype=np.bool_)) if causal else None  # True = may attend
        return inp

    def torch_impl(torch, inp):
        q, k, v = requires_grad(inp["q"], inp["k"], inp["v"])
        sdpa = torch.nn.functional.scaled_dot_product_attention
        return TorchGraph(run=lambda: ([sdpa(q, k, v, is_causal=causal)], [inp["dout"]]), inputs=[q, k, v])

    # q k^T and w v (d = dv) over all T x T scores. With the causal mask ours skips the key blocks no query
    # of a row block may see (cpu.py's masked path, about 47% of the products at T512), as PyTorch's flash
    # kernel does; the causal row still counts these nominal full products, the count PyTorch is compared
    # on, so its GF/s is nominal: above what a kernel that skips executes.
    products = 2 * n * t * t * d * 2
    return Case(
        op="attention", name="causal" if causal else "sdpa", size=f"N{n} T{t} d{d}", make_inputs=make,
        quick=quick,
        forward=lambda mod, inp: mod.forward(inp["q"], inp["k"], inp["v"], inp["mask"], 1.0 / d ** 0.5),
        backward=lambda mod, inp, res: mod.backward(inp["dout"], res[1]),
        torch=torch_impl, flops=Work(fwd=products, bwd=2 * products),  # bwd: dv, dw, dq, dk
        devices=devices,
    )


def cases() -> list[Case]:
    return [_attention(2, 16, 8, False, True), _attention(2, 16, 8, True, True),
            _attention(8, 512, 64, False, False), _attention(8, 512, 64, True, False),
            _attention(8, 4096, 64, False, False, devices=("gpu",))]  # GPU target: sequence 4096, d 64
