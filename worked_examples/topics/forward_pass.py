"""Forward propagation: one sigmoid neuron, the two-neuron chain, a layer as x^T W, and a deeper stack."""

from __future__ import annotations

import numpy as np
import sympy as sp

from toolkit.ops.activations import activation_forward
from toolkit.ops.dense import dense_forward

from ..arrays import host, scalar, tensor
from ..documents import FIGURE_FACTS, KERAS_COURSE, KERAS_COURSE_NOTES, UNIVERSITY_MODULE
from ..example import Example, Step, Topic
from ..render import fmt
from ..symbolic import DerivationError, sigma, spot_check

TOPIC = Topic(
    name="forward-pass",
    title="Forward propagation: z = xw + b, a = σ(z), layer after layer",
    summary="z = xw + b, a = σ(z): one neuron, a chain, x^T W, 5 layers",
    documents=(KERAS_COURSE, KERAS_COURSE_NOTES, FIGURE_FACTS, UNIVERSITY_MODULE),
    needs=("dense", "activations"),
    order=20,
)

# 002 "Example Calculation" and NOTES.md (the figure of 003's two-neuron chain)
X1, W1, B1 = 0.1, 0.15, 0.4
W2, B2 = 0.45, 0.65


def _neuron(x, w, b):
    """(z, a) of one sigmoid neuron, as toolkit arrays: z = x w + b, a = σ(z)."""
    z, _ = dense_forward(x, tensor([[w]]), tensor([b]))
    a, _ = activation_forward(z, "sigmoid")
    return z, a


def _chain(x1, w1, b1, w2, b2) -> float:
    _, a1 = _neuron(tensor([[x1]]), w1, b1)
    _, a2 = _neuron(a1, w2, b2)
    return scalar(a2)


def _single_and_chain(ex: Example) -> None:
    ex.section("One neuron, then two in a chain (002, 003, NOTES.md)",
               "Each neuron computes a linear combination z = x·w + b and passes it through the sigmoid "
               "a = 1/(1 + e^(−z)). In the chain the first neuron's output a1 is the second one's input.")
    ex.inputs("inputs", [
        ("x1", X1, "input (002, NOTES.md)"), ("w1", W1, "weight of neuron 1"), ("b1", B1, "bias of neuron 1"),
        ("w2", W2, "weight of neuron 2 (NOTES.md)"), ("b2", B2, "bias of neuron 2 (NOTES.md)"),
    ])
    z1, a1 = _neuron(tensor([[X1]]), W1, B1)
    z2, a2 = _neuron(a1, W2, B2)
    z1v, a1v, z2v, a2v = (scalar(v) for v in (z1, a1, z2, a2))
    ex.steps("forward pass (toolkit: dense_forward, activation_forward 'sigmoid')", [
        Step("z1 = x1·w1 + b1", f"({X1})({W1}) + {B1}", z1v),
        Step("a1 = σ(z1)", f"1 / (1 + e^(−{fmt(z1v)}))", a1v),
        Step("z2 = a1·w2 + b2", f"({fmt(a1v)})({W2}) + {B2}", z2v),
        Step("a2 = σ(z2)", f"1 / (1 + e^(−{fmt(z2v)}))", a2v),
    ])
    ex.claim("forward-pass.single.z-002", z1v, label="z of the single neuron (002)")
    ex.claim("forward-pass.single.a-002", a1v, label="a = σ(z) of the single neuron (002)")
    ex.claim("forward-pass.single.a-003", a1v, label="output of the single neuron (003)")
    ex.claim("forward-pass.chain.z1", z1v, label="z1 of the chain (003's figure)")
    ex.claim("forward-pass.chain.a1", a1v, label="a1 of the chain (003's figure)")
    ex.claim("forward-pass.chain.output-figure", a2v, label="final output a2 (003's figure)")
    ex.claim("forward-pass.chain.output", a2v, label="final output a2 (003's text)")

    x, w1, b1, w2, b2 = sp.symbols("x1 w1 b1 w2 b2", real=True)
    a2_formula = sigma(w2 * sigma(w1 * x + b1) + b2)
    rng = np.random.default_rng(20)
    points = [(X1, W1, B1, W2, B2)] + [tuple(rng.normal(size=5)) for _ in range(3)]
    ex.derivation("the chain as one formula, evaluated by SymPy and by the toolkit",
                  a2_formula, 1 / (1 + sp.exp(-(w2 / (1 + sp.exp(-(w1 * x + b1))) + b2))),
                  spot_check(a2_formula, [x, w1, b1, w2, b2], points, [_chain(*p) for p in points]),
                  note="spot check at the notes' values and at three random ones")


def _matrix_form(ex: Example) -> None:
    ex.section("A layer as a matrix product (004)",
               "Two inputs feed three neurons. W has one row per input and one column per output, so "
               "the layer computes z = x^T W (Keras' Dense keeps W as (inputs, outputs) too) and h = σ(z).")
    x1, x2 = sp.symbols("x1 x2", real=True)
    w = sp.Matrix(2, 3, lambda i, j: sp.Symbol(f"w{i + 1}{j + 1}", real=True))
    x = sp.Matrix([[x1, x2]])
    ns = {"x1": x1, "x2": x2, **{str(s): s for s in w}}
    ex.claim("forward-pass.matrix.layer", x * w, label="x^T W written out (004)", namespace=ns)
    # illustrative numbers (the notes give none): the toolkit and SymPy must agree on them
    xv = np.array([[0.5, -1.5]])
    wv = np.array([[0.2, -0.4, 1.0], [0.7, 0.3, -0.6]])
    z, _ = dense_forward(tensor(xv), tensor(wv))
    h, _ = activation_forward(z, "sigmoid")
    ex.inputs("illustrative values (not in the notes)", [("x", xv[0], "two inputs"), ("W", wv, "2 × 3 weights")])
    values = {x1: xv[0, 0], x2: xv[0, 1], **{w[i, j]: wv[i, j] for i in range(2) for j in range(3)}}
    ex.steps("z = x^T W and h = σ(z) (toolkit: dense_forward, activation_forward)", [
        Step(f"z{j + 1} = x1·w1{j + 1} + x2·w2{j + 1}", f"({xv[0, 0]})({wv[0, j]}) + ({xv[0, 1]})({wv[1, j]})",
             host(z)[0, j]) for j in range(3)
    ] + [Step("h = σ(z)", fmt(host(z)[0]), host(h)[0])])
    layer = (x * w).applyfunc(sigma)
    ex.derivation("σ(x^T W), one sigmoid per column of W",
                  layer, sp.Matrix([[1 / (1 + sp.exp(-(x1 * w[0, j] + x2 * w[1, j]))) for j in range(3)]]),
                  spot_check(layer, list(values), [tuple(values.values())], host(h)),
                  note="spot check: the toolkit's layer at the illustrative values")


def _deep(ex: Example) -> None:
    ex.section("A deeper stack (004)",
               "Five layers: the input, three hidden layers and the output, four weight matrices. Each "
               "hidden vector is the input of the next layer: h1 = σ(x^T W1), h2 = σ(h1 W2), "
               "h3 = σ(h2 W3), y = σ(h3 W4).")
    rng = np.random.default_rng(5)
    sizes = [2, 3, 3, 3, 1]
    weights = [np.round(rng.normal(size=(m, n)), 2) for m, n in zip(sizes[:-1], sizes[1:])]
    x = np.array([[0.5, -1.5]])
    ex.inputs("illustrative values (not in the notes)",
              [("x", x[0], "input")] + [(f"W{i + 1}", w, f"{w.shape[0]} × {w.shape[1]}") for i, w in enumerate(weights)])
    h = tensor(x)
    steps = []
    names = ["h1 = σ(x^T W1)", "h2 = σ(h1 W2)", "h3 = σ(h2 W3)", "y = σ(h3 W4)"]
    for name, w in zip(names, weights):
        z, _ = dense_forward(h, tensor(w))
        h, _ = activation_forward(z, "sigmoid")
        steps.append(Step(name, f"σ({fmt(host(z)[0], 4)})", host(h)[0]))
    ex.steps("layer by layer (toolkit)", steps)
    # SymPy composes the same four layers exactly (rational weights) and evaluates the result to 30 digits
    def exact(a):
        return sp.Matrix(a.tolist()).applyfunc(sp.nsimplify)

    hs = exact(x)
    for w in weights:
        hs = (hs * exact(w)).applyfunc(lambda e: 1 / (1 + sp.exp(-e)))
    check = spot_check(hs, [], [()], host(h))
    if not check.ok:
        raise DerivationError(f"the toolkit's stack gives {check.kernel}, SymPy {check.symbolic}")
    ex.table("y: SymPy's exact composition against the toolkit", ["", "y"],
             [("SymPy", check.symbolic[0]), ("toolkit", check.kernel[0]),
              # a bound at rounding level: the last bits depend on the CPU's BLAS kernel
              ("|difference|", check.difference_text())])


def run(ex: Example) -> None:
    _single_and_chain(ex)
    _matrix_form(ex)
    _deep(ex)
