"""Activation functions: 004's neuron with a binary and a bipolar sigmoid, the derivatives, ranges, shapes."""

from __future__ import annotations

import numpy as np
import sympy as sp

from toolkit.ops.activations import activation_backward, activation_forward
from toolkit.ops.dense import dense_forward

from ..arrays import host, tensor
from ..documents import KERAS_COURSE, KERAS_COURSE_NOTES, UNIVERSITY_MODULE
from ..example import Example, Step, Topic
from ..render import fmt
from ..symbolic import DerivationError, kernel_within, spot_check, symbolic_range

TOPIC = Topic(
    name="activations",
    title="Activation functions: one neuron, two sigmoids, and the rest of the family",
    summary="004's neuron with two sigmoids; derivatives, ranges, plots",
    documents=(UNIVERSITY_MODULE, KERAS_COURSE_NOTES, KERAS_COURSE),
    needs=("activations", "dense"),
    order=10,
)

# 004, "Obtain the output of the neuron Y": inputs, weights and bias (its input is always 1)
INPUTS = (0.8, 0.6, 0.4)
WEIGHTS = (0.1, 0.3, -0.2)
BIAS = 0.35

X = sp.Symbol("x", real=True)
LAM = sp.Symbol("lambda", positive=True)
ALPHA_PLOT = 0.1  # leaky ReLU slope for the table and plots: the default 0.01 is invisible at this scale


def _forward(values, name, **params) -> np.ndarray:
    y, _ = activation_forward(tensor(values), name, **params)
    return host(y)


def _derivative(values, name, **params) -> np.ndarray:
    """f'(x) from the kernel: the backward pass with dL/dy = 1."""
    x = tensor(values)
    y, cache = activation_forward(x, name, **params)
    return host(activation_backward(tensor(np.ones(host(y).shape)), cache))


def _neuron(ex: Example) -> None:
    ex.section("One neuron, two sigmoids (004)",
               "A neuron with three inputs and a bias computes its net input y_in = b + Σ xᵢwᵢ, then "
               "an activation: the binary sigmoid 1/(1 + e^(−y_in)) or the bipolar sigmoid "
               "2/(1 + e^(−y_in)) − 1 (steepness λ = 1).")
    ex.inputs("inputs (004, output of the neuron Y)", [
        ("x", INPUTS, "inputs x1, x2, x3"),
        ("w", WEIGHTS, "weights w1, w2, w3"),
        ("b", BIAS, "bias (its input is always 1)"),
    ])
    x = tensor(INPUTS, (1, 3))
    # each product xᵢwᵢ is a dense layer whose i-th output sees only input i: W = diag(w)
    products, _ = dense_forward(x, tensor(np.diag(WEIGHTS)))
    net, _ = dense_forward(x, tensor(WEIGHTS, (3, 1)), tensor([BIAS]))
    binary, _ = activation_forward(net, "sigmoid")
    bipolar, _ = activation_forward(net, "bipolar_sigmoid")
    p, y_in = host(products).ravel(), host(net).item()
    ex.steps("forward pass (toolkit: dense_forward, activation_forward)", [
        Step("xᵢ · wᵢ", ", ".join(f"({a})({w})" for a, w in zip(INPUTS, WEIGHTS)), p),
        Step("y_in = b + Σ xᵢwᵢ", f"{BIAS} + " + " + ".join(fmt(v) for v in p), y_in),
        Step("binary: 1 / (1 + e^(−y_in))", f"1 / (1 + e^(−{fmt(y_in)}))", host(binary).item()),
        Step("bipolar: 2 / (1 + e^(−y_in)) − 1", f"2 / (1 + e^(−{fmt(y_in)})) − 1", host(bipolar).item()),
    ])
    ex.claim("activations.products", p, label="products xᵢwᵢ")
    ex.claim("activations.net-input", y_in, label="net input y_in")
    ex.claim("activations.binary-sigmoid", host(binary).item(), label="binary sigmoid output y")
    ex.claim("activations.bipolar-sigmoid", host(bipolar).item(), label="bipolar sigmoid output y")


def _derivatives(ex: Example) -> None:
    ex.section("Derivatives of the sigmoids (004)",
               "With steepness λ: f(x) = 1/(1 + e^(−λx)) has f' = λ f (1 − f); the bipolar "
               "g(x) = 2/(1 + e^(−λx)) − 1 = tanh(λx/2) has g' = (λ/2)(1 + g)(1 − g). SymPy proves each "
               "identity; the toolkit's backward pass (dL/dy = 1) must give the same numbers.")
    lam = 1.7  # any steepness: the spot checks use one that is not 1
    points = [-2.5, -0.3, 0.0, 0.7, 2.5]
    ns = {"lam": LAM, "x": X}

    f = 1 / (1 + sp.exp(-LAM * X))
    ex.derivation("binary sigmoid", sp.Derivative(f, X), LAM * f * (1 - f),
                  spot_check(LAM * f * (1 - f), [X], [[p] for p in points],
                             _derivative(points, "sigmoid", steepness=lam), fixed={LAM: lam}))
    ex.claim("activations.binary-sigmoid-derivative", sp.diff(f, X), label="f'(x) as the notes end it",
             namespace={**ns, "f": f})

    g = 2 / (1 + sp.exp(-LAM * X)) - 1
    ex.claim("activations.bipolar-sigmoid-rewritten", g, label="bipolar sigmoid rewritten", namespace=ns)
    ex.derivation("bipolar sigmoid is tanh(λx/2), as the kernel computes it", g, sp.tanh(LAM * X / 2),
                  spot_check(g, [X], [[p] for p in points], _forward(points, "bipolar_sigmoid", steepness=lam),
                             fixed={LAM: lam}))
    ex.derivation("bipolar sigmoid", sp.Derivative(g, X), LAM / 2 * (1 + g) * (1 - g),
                  spot_check(sp.diff(g, X), [X], [[p] for p in points],
                             _derivative(points, "bipolar_sigmoid", steepness=lam), fixed={LAM: lam}))
    ex.claim("activations.bipolar-sigmoid-derivative", sp.diff(g, X), label="g'(x) where the notes stop",
             namespace=ns)


# name -> (SymPy form, toolkit name, params, claims about its range)
RANGES = {
    "sigmoid": (1 / (1 + sp.exp(-X)), "sigmoid", {},
                ["activations.range.sigmoid-004", "activations.range.sigmoid-002", "activations.range.sigmoid-003",
                 "activations.table.sigmoid"]),
    "bipolar sigmoid": (2 / (1 + sp.exp(-X)) - 1, "bipolar_sigmoid", {}, ["activations.range.bipolar-sigmoid-004"]),
    "tanh": (sp.tanh(X), "tanh", {},
             ["activations.range.tanh-004", "activations.range.tanh-002", "activations.range.tanh-003",
              "activations.table.tanh"]),
    "ReLU": (sp.Max(0, X), "relu", {}, ["activations.range.relu-003", "activations.table.relu"]),
    "leaky ReLU": (sp.Piecewise((X, X > 0), (sp.Rational(1, 100) * X, True)), "leaky_relu", {"alpha": 0.01},
                   ["activations.table.leaky-relu"]),
    "linear (identity)": (X, "identity", {}, ["activations.table.linear"]),
    "binary step": (sp.Piecewise((1, X >= 0), (0, True)), "binary_step", {}, ["activations.table.binary-step"]),
    "bipolar step": (sp.Piecewise((1, X >= 0), (-1, True)), "bipolar_step", {}, []),
    "ramp": (sp.Piecewise((0, X < 0), (X, X <= 1), (1, True)), "ramp", {}, []),
}


def _ranges(ex: Example, rng: np.random.Generator) -> None:
    ex.section("Ranges (003's table, 002, 004)",
               "SymPy finds each range (piece by piece for the piecewise functions); the toolkit's "
               "kernel, evaluated from x = −1000 to 1000, must stay inside it. Open ends are never reached "
               "mathematically, though floating point rounds σ(−1000) to exactly 0.")
    grid = np.concatenate([[-1000.0, -50.0], np.linspace(-8, 8, 161), [50.0, 1000.0]])
    rows, found = [], {}
    from ..registry import format_set

    for label, (expr, name, params, _) in RANGES.items():
        values = symbolic_range(expr, X)
        kernel = _forward(grid, name, **params)
        if not kernel_within(kernel, values):
            raise DerivationError(f"the {name} kernel leaves its range {values}: min {kernel.min()}, max {kernel.max()}")
        found[label] = values
        rows.append((label, format_set(values), kernel.min(), kernel.max()))
    # softmax: one output against the rest lumped together, e^u / (e^u + e^v), over every u - v
    u = sp.Symbol("u", real=True)
    soft = symbolic_range(1 / (1 + sp.exp(-u)), u)
    logits = rng.normal(scale=4.0, size=(200, 5))
    probabilities = _forward(logits, "softmax")
    if not kernel_within(probabilities, soft):
        raise DerivationError("softmax outputs leave [0, 1]")
    rows.append(("softmax (each output)", format_set(soft), probabilities.min(), probabilities.max()))
    ex.table("ranges: SymPy, and the kernel's extremes on the grid", ["function", "range", "kernel min", "kernel max"],
             rows)
    for label, (_, _, _, claim_ids) in RANGES.items():
        for claim_id in claim_ids:
            ex.claim(claim_id, found[label], label=f"range of {label}")
    ex.claim("activations.range.softmax-003", soft, label="range of each softmax output")
    ex.claim("activations.table.softmax", soft, label="range of each softmax output")
    sums = probabilities.sum(axis=1)
    worst = sums[np.argmax(np.abs(sums - 1))]
    ex.claim("activations.table.softmax-sum", worst,
             label="sum of the softmax outputs (the one farthest from 1, of 200 random rows)")


def _piecewise(ex: Example) -> None:
    ex.section("Step, ramp, ReLU, leaky ReLU (004, 003)",
               "Values and derivatives from the toolkit's kernels. Conventions: the derivative of a step "
               "is taken as 0 (it is 0 except at the jump, where it does not exist); ReLU'(0) = 0; ramp' is "
               "1 only strictly inside (0, 1).")
    xs = np.array([-2.0, -0.5, 0.0, 0.5, 1.0, 2.0])
    names = [("binary step", "binary_step", {}), ("bipolar step", "bipolar_step", {}), ("ramp", "ramp", {}),
             ("ReLU", "relu", {}), (f"leaky {ALPHA_PLOT}", "leaky_relu", {"alpha": ALPHA_PLOT})]
    values = {label: _forward(xs, n, **p) for label, n, p in names}
    slopes = {label: _derivative(xs, n, **p) for label, n, p in names}
    ex.table("f(x)", ["x"] + [label for label, _, _ in names],
             [[x] + [values[label][i] for label, _, _ in names] for i, x in enumerate(xs)])
    ex.table("f'(x) (backward pass with dL/dy = 1)", ["x"] + [label for label, _, _ in names],
             [[x] + [slopes[label][i] for label, _, _ in names] for i, x in enumerate(xs)])


def _softmax(ex: Example) -> None:
    ex.section("Softmax (002, 003)",
               "P(yᵢ) = e^(zᵢ) / Σⱼ e^(zⱼ) turns raw scores into probabilities. The kernel subtracts the "
               "largest score first, so scores of 1000 neither overflow nor change the answer.")
    scores = np.array([[2.0, 1.0, 0.1], [1002.0, 1001.0, 1000.1]])
    probabilities = _forward(scores, "softmax")
    ex.table("softmax of each row of scores", ["scores", "probabilities", "sum"],
             [(fmt(s), fmt(p, 4), p.sum()) for s, p in zip(scores, probabilities)])


def _plots(ex: Example) -> None:
    xs = np.linspace(-6, 6, 241)
    smooth = [("sigmoid", "sigmoid", {}), ("bipolar sigmoid", "bipolar_sigmoid", {}), ("tanh", "tanh", {})]
    ex.plot("sigmoid, bipolar sigmoid, tanh", [(label, xs, _forward(xs, n, **p)) for label, n, p in smooth],
            xlabel="x", height=14)
    ex.plot("their derivatives (toolkit backward pass)",
            [(label + "'", xs, _derivative(xs, n, **p)) for label, n, p in smooth], xlabel="x", height=14)
    xs = np.linspace(-2, 2, 241)
    kinks = [("binary step", "binary_step", {}), ("ramp", "ramp", {}), ("ReLU", "relu", {}),
             (f"leaky ReLU {ALPHA_PLOT}", "leaky_relu", {"alpha": ALPHA_PLOT})]
    ex.plot("binary step, ramp, ReLU, leaky ReLU", [(label, xs, _forward(xs, n, **p)) for label, n, p in kinks],
            xlabel="x", height=14)
    ex.plot("their derivatives (0 at the step; ReLU'(0) = 0)",
            [(label + "'", xs, _derivative(xs, n, **p)) for label, n, p in kinks], xlabel="x", height=14)


def run(ex: Example) -> None:
    rng = np.random.default_rng(4)
    _neuron(ex)
    _derivatives(ex)
    _ranges(ex, rng)
    _piecewise(ex)
    _softmax(ex)
    _plots(ex)
