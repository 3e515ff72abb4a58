"""The vanishing gradient: σ' ≤ 1/4, so a gradient shrinks through every sigmoid layer it crosses."""

from __future__ import annotations

import numpy as np
import sympy as sp

from toolkit.ops.activations import activation_backward, activation_forward
from toolkit.ops.dense import dense_backward, dense_forward
from toolkit.ops.losses import loss_backward, loss_forward

from ..arrays import host, scalar, tensor
from ..documents import KERAS_COURSE, KERAS_COURSE_NOTES
from ..example import Example, Step, Topic
from ..render import fmt
from ..registry import format_set
from ..symbolic import sigma, spot_check, symbolic_range

TOPIC = Topic(
    name="vanishing-gradient",
    title="The vanishing gradient: products of σ' ≤ 1/4 across depth",
    summary="σ' ≤ 1/4, and gradients through 12 layers",
    documents=(KERAS_COURSE_NOTES, KERAS_COURSE),
    needs=("activations", "dense", "losses"),
    order=70,
)

Z = sp.Symbol("z", real=True)
DEPTH = 12  # layers of the deep stacks
WIDTH = 16  # neurons per layer


def _slope(values) -> np.ndarray:
    """σ'(z) from the kernel: the backward pass of the sigmoid with dL/dy = 1."""
    y, cache = activation_forward(tensor(values), "sigmoid")
    return host(activation_backward(tensor(np.ones(host(y).shape)), cache))


def _sigmoid_slope(ex: Example) -> float:
    ex.section("How small is σ'? (003)",
               "σ(z) = 1/(1 + e^(−z)) and σ'(z) = σ(z)(1 − σ(z)). SymPy finds where σ' is largest (σ'' = 0) "
               "and the set of its values; the kernel's backward pass gives the same numbers.")
    s = 1 / (1 + sp.exp(-Z))
    slope = sp.diff(s, Z)
    ex.derivation("σ''(z) = σ(1 − σ)(1 − 2σ): zero only where σ = 1/2, at z = 0",
                  sp.Derivative(sigma(Z), Z, 2), sigma(Z) * (1 - sigma(Z)) * (1 - 2 * sigma(Z)), None,
                  note="(no kernel computes σ''; the kernel checks below are of σ and σ')")
    peak = sp.solve(sp.Eq(sp.diff(slope, Z), 0), Z)
    grid = np.linspace(-10, 10, 2001)  # contains z = 0 exactly
    kernel_slope = _slope(grid)
    values = symbolic_range(slope, Z)
    at_zero, _ = activation_forward(tensor([0.0]), "sigmoid")
    ex.steps("SymPy and the toolkit", [
        Step("σ'' = 0 (SymPy solve)", "σ(1 − σ)(1 − 2σ) = 0", fmt(peak)),
        Step("σ(0) (toolkit)", "1 / (1 + e^0)", scalar(at_zero)),
        Step("max σ' on z ∈ [−10, 10] (toolkit)", "σ(0)(1 − σ(0))", kernel_slope.max()),
        Step("values of σ' (SymPy)", "σ'(ℝ)", format_set(values)),
    ])
    ex.claim("vanishing-gradient.sigmoid-at-zero", scalar(at_zero), label="σ(0)")
    ex.claim("vanishing-gradient.derivative-max", kernel_slope.max(), label="largest σ' (toolkit, on the grid)")
    ex.claim("vanishing-gradient.derivative-range", values, label="the values σ' takes (SymPy)")
    ex.claim("vanishing-gradient.output-range", symbolic_range(s, Z), label="the values σ takes (SymPy)")
    ex.derivation("σ'(z) = σ(z)(1 − σ(z))", sp.Derivative(sigma(Z), Z), sigma(Z) * (1 - sigma(Z)),
                  spot_check(slope, [Z], [[v] for v in (-2.5, 0.0, 1.5)], _slope([-2.5, 0.0, 1.5])))
    # the notes' rule of thumb "beyond ± 3" is an example: its threshold is read from the registry
    threshold = float(ex.printed_input("vanishing-gradient.saturation-003")[0])
    far = np.array([1.0, 2.0, threshold, 5.0, 10.0])
    ex.table("saturation: σ' far from 0 (toolkit)", ["z", "σ(z)", "σ'(z)", "σ'(z) / σ'(0)"],
             [(z, scalar(activation_forward(tensor([z]), "sigmoid")[0]), d, d / kernel_slope.max())
              for z, d in zip(far, _slope(far))])
    at_threshold = _slope([threshold])[0]
    label = f"σ'({fmt(threshold)}), at the notes' saturation threshold"
    ex.claim("vanishing-gradient.saturation-003", at_threshold, label=label)
    ex.claim("vanishing-gradient.saturation-002", at_threshold, label=label)
    xs = np.linspace(-8, 8, 241)
    ex.plot("σ and σ' (toolkit)", [("σ(z)", xs, host(activation_forward(tensor(xs), "sigmoid")[0])),
                                    ("σ'(z)", xs, _slope(xs))], xlabel="z", height=12)
    return float(kernel_slope.max())


def _stack_gradients(activation: str, rng: np.random.Generator) -> np.ndarray:
    """|∂E/∂W_l| (Frobenius norm) for each layer l of a deep stack, from the toolkit's backward passes."""
    scale = {"sigmoid": 1.0, "relu": np.sqrt(2.0)}[activation]  # He scaling keeps ReLU signals steady
    x = tensor(rng.normal(size=(8, WIDTH)))
    h, caches = x, []
    for _ in range(DEPTH):
        w = tensor(rng.normal(scale=scale / np.sqrt(WIDTH), size=(WIDTH, WIDTH)))
        z, dense_cache = dense_forward(h, w, tensor(np.zeros(WIDTH)))
        h, act_cache = activation_forward(z, activation)
        caches.append((dense_cache, act_cache))
    _, loss_cache = loss_forward("mse_half", h, tensor(rng.normal(size=(8, WIDTH))))
    grad = loss_backward(loss_cache)
    norms = []
    for dense_cache, act_cache in reversed(caches):
        grad, dw, _ = dense_backward(activation_backward(grad, act_cache), dense_cache)
        norms.append(np.linalg.norm(host(dw)))
    return np.array(norms[::-1])


def _depth(ex: Example, peak: float) -> None:
    ex.section("Across depth (003, 002)",
               f"Backpropagation multiplies one σ' per layer. Two stacks of {DEPTH} dense layers of {WIDTH} "
               "neurons with random weights (seeded), one with sigmoid, one with ReLU (He-scaled weights); "
               "the gradient of each layer's weights from the toolkit's backward passes. The sigmoid "
               "stack's gradients shrink towards the input; ReLU's slope is 1 where active, and they do not.")
    rng = np.random.default_rng(70)
    sig = _stack_gradients("sigmoid", rng)
    relu = _stack_gradients("relu", rng)
    layers = np.arange(1, DEPTH + 1)
    bound = peak ** (DEPTH - layers)  # the largest σ' once per layer above: all the weights aside
    ex.table("|∂E/∂W| per layer (layer 1 is next to the input)", ["layer", "sigmoid", "ReLU", "max σ'^(depth−layer)"],
             [(int(l), s, r, b) for l, s, r, b in zip(layers, sig, relu, bound)])
    ex.text(f"sigmoid: the first layer's gradient is {fmt(sig[0] / sig[-1], 3)} times the last one's; "
            f"ReLU: {fmt(relu[0] / relu[-1], 3)} times.")
    ex.plot("log10 |∂E/∂W| per layer", [("sigmoid", layers, np.log10(sig)), ("ReLU", layers, np.log10(relu)),
                                         ("max σ'^(depth−layer)", layers, np.log10(bound))],
            xlabel="layer (1 = next to the input)", height=18)


def run(ex: Example) -> None:
    peak = _sigmoid_slope(ex)
    _depth(ex, peak)
