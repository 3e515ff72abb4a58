"""Backpropagation through the two-neuron sigmoid chain: every factor of the chain rule, then one update."""

from __future__ import annotations

import numpy as np
import sympy as sp

from toolkit.ops.activations import activation_backward, activation_forward
from toolkit.ops.dense import dense_backward, dense_forward
from toolkit.ops.losses import loss_backward, loss_forward
from toolkit.ops.optim import sgd_update

from ..arrays import scalar, tensor
from ..documents import FIGURE_FACTS, KERAS_COURSE, KERAS_COURSE_NOTES
from ..example import Example, Step, Topic
from ..render import fmt
from ..symbolic import sigma, spot_check

TOPIC = Topic(
    name="backprop",
    title="Backpropagation: the chain rule through two sigmoid neurons",
    summary="the chain rule through two sigmoid neurons; one update",
    documents=(KERAS_COURSE_NOTES, KERAS_COURSE, FIGURE_FACTS),
    needs=("dense", "activations", "losses", "optim"),
    order=30,
)

# the chain of 003 / NOTES.md
X1, W1, B1, W2, B2 = 0.1, 0.15, 0.4, 0.45, 0.65
# The notes state no target and no learning rate for this network: these are illustrative choices.
TARGET, LEARNING_RATE = 0.25, 0.4

x1, w1, b1, w2, b2, T = sp.symbols("x1 w1 b1 w2 b2 T", real=True)
a1, a2, z1, z2 = sp.symbols("a1 a2 z1 z2", real=True)  # local variables of single factors
A1 = sigma(w1 * x1 + b1)  # the whole network in its parameters (σ shown, written out for the checks)
A2 = sigma(w2 * A1 + b2)
E = (T - A2) ** 2 / 2  # the notes' 1/(2n) Σ (T - a2)^2 for one sample


def _sig(e):
    return 1 / (1 + sp.exp(-e))


def _network(params: dict[str, float], target: float):
    """Forward and backward pass with the toolkit; every intermediate gradient, as floats."""
    x = tensor([[params["x1"]]])
    z1, c1 = dense_forward(x, tensor([[params["w1"]]]), tensor([params["b1"]]))
    a1, s1 = activation_forward(z1, "sigmoid")
    z2, c2 = dense_forward(a1, tensor([[params["w2"]]]), tensor([params["b2"]]))
    a2, s2 = activation_forward(z2, "sigmoid")
    error, lc = loss_forward("mse_half", a2, tensor([[target]]))  # 1/(2n) Σ (a2 - T)^2 with n = 1
    d_a2 = loss_backward(lc)
    d_z2 = activation_backward(d_a2, s2)
    d_a1, d_w2, d_b2 = dense_backward(d_z2, c2)
    d_z1 = activation_backward(d_a1, s1)
    _, d_w1, d_b1 = dense_backward(d_z1, c1)
    out = dict(z1=z1, a1=a1, z2=z2, a2=a2, E=error, dE_da2=d_a2, dE_dz2=d_z2, dE_da1=d_a1, dE_dz1=d_z1,
               dE_dw2=d_w2, dE_db2=d_b2, dE_dw1=d_w1, dE_db1=d_b1)
    return {k: scalar(v) for k, v in out.items()}


def _factors(ex: Example) -> None:
    ex.section("The factors of the chain rule (003, 002)",
               "E is not a function of w2 directly, so ∂E/∂w2 = ∂E/∂a2 · ∂a2/∂z2 · ∂z2/∂w2, and for w1 the "
               "chain runs back through the hidden neuron: ∂E/∂w1 = ∂E/∂a2 · ∂a2/∂z2 · ∂z2/∂a1 · ∂a1/∂z1 · "
               "∂z1/∂w1. SymPy derives each factor; each printed factor is judged against it.")
    # Each factor is derived in its own local variables; ``ns`` says what the printed symbols mean there.
    factors = {  # key: (derived, namespace for the printed form)
        "dE-da2": (sp.diff((T - a2) ** 2 / 2, a2), {"T": T, "a2": a2}),
        "da2-dz2": (sp.diff(_sig(z2), z2), {"a2": _sig(z2)}),
        "dz2-dw2": (sp.diff(a1 * w2 + b2, w2), {"a1": a1}),
        "dz2-da1": (sp.diff(a1 * w2 + b2, a1), {"w2": w2}),
        "da1-dz1": (sp.diff(_sig(z1), z1), {"a1": _sig(z1)}),
        "dz1-dw1": (sp.diff(x1 * w1 + b1, w1), {"x1": x1}),
    }
    labels = {"dE-da2": "∂E/∂a2", "da2-dz2": "∂a2/∂z2", "dz2-dw2": "∂z2/∂w2", "dz2-da1": "∂z2/∂a1",
              "da1-dz1": "∂a1/∂z1", "dz1-dw1": "∂z1/∂w1"}
    for key, (value, ns) in factors.items():
        ex.claim(f"backprop.{key}-003", value, label=f"{labels[key]} (003)", namespace=ns)
    for key in ("dE-da2", "da2-dz2", "dz2-dw2"):
        ex.claim(f"backprop.{key}-002", factors[key][0], label=f"{labels[key]} (002, update of w2)",
                 namespace=factors[key][1])
    # whole derivatives of E: through the output neuron (in a1, w2, b2), or the whole network
    out = _sig(a1 * w2 + b2)
    ex.claim("backprop.dE-db2-002", sp.diff((T - out) ** 2 / 2, b2), label="∂E/∂b2 (002)",
             namespace={"T": T, "a2": out})
    ex.claim("backprop.dE-da1-002", sp.diff((T - out) ** 2 / 2, a1), label="∂E/∂a1 (002)",
             namespace={"T": T, "a2": out, "w2": w2, "a1": a1})
    for key in ("da1-dz1", "dz1-dw1"):
        ex.claim(f"backprop.{key}-002", factors[key][0], label=f"{labels[key]} (002, update of w1)",
                 namespace=factors[key][1])
    hidden = _sig(w1 * x1 + b1)
    ex.claim("backprop.dE-db1-002", sp.diff((T - _sig(w2 * hidden + b2)) ** 2 / 2, b1), label="∂E/∂b1 (002)",
             namespace={"T": T, "a2": _sig(w2 * hidden + b2), "w2": w2, "a1": hidden})


def _chains(ex: Example) -> None:
    ex.section("The chains equal the direct derivatives",
               "Multiplying the factors gives the same expression as differentiating E directly; the "
               "toolkit's backward passes (loss, sigmoid, dense, twice) give the same numbers.")
    rng = np.random.default_rng(30)
    names = (x1, w1, b1, w2, b2, T)
    points = [(X1, W1, B1, W2, B2, TARGET)] + [tuple(rng.normal(size=6)) for _ in range(3)]
    runs = [_network(dict(zip(("x1", "w1", "b1", "w2", "b2"), p[:5])), p[5]) for p in points]
    # the printed factors, in the network's parameters: (a2 - T), a2(1 - a2), a1 or w2, a1(1 - a1), x1
    output = (A2 - T) * A2 * (1 - A2)
    hidden = w2 * A1 * (1 - A1)
    chains = {
        "∂E/∂w2": (w2, output * A1, "dE_dw2"),
        "∂E/∂b2": (b2, output, "dE_db2"),
        "∂E/∂w1": (w1, output * hidden * x1, "dE_dw1"),
        "∂E/∂b1": (b1, output * hidden, "dE_db1"),
    }
    for title, (variable, product, key) in chains.items():
        ex.derivation(f"{title}: chain of factors = direct derivative (toolkit backward pass)",
                      sp.Derivative(E, variable), product,
                      spot_check(product, names, points, [r[key] for r in runs]),
                      note="spot check at the notes' values (T = 0.25 illustrative) and three random points")


def _update(ex: Example) -> None:
    ex.section("One training step",
               "The notes give no target and no learning rate for this network; the values below are "
               "illustrative. Each parameter moves against its gradient: p ← p − α ∂E/∂p (toolkit: "
               "sgd_update, in place).")
    ex.inputs("inputs", [("x1, w1, b1, w2, b2", (X1, W1, B1, W2, B2), "003 / NOTES.md"),
                         ("T", TARGET, "target (illustrative)"), ("α", LEARNING_RATE, "learning rate (illustrative)")])
    before = _network(dict(x1=X1, w1=W1, b1=B1, w2=W2, b2=B2), TARGET)
    ex.steps("backward pass (toolkit: loss_backward, activation_backward, dense_backward)", [
        Step("∂E/∂a2 = −(T − a2)", f"−({TARGET} − {fmt(before['a2'])})", before["dE_da2"]),
        Step("∂E/∂z2 = ∂E/∂a2 · a2(1 − a2)", f"{fmt(before['dE_da2'])} · {fmt(before['a2'])}(1 − {fmt(before['a2'])})",
             before["dE_dz2"]),
        Step("∂E/∂w2 = ∂E/∂z2 · a1", f"{fmt(before['dE_dz2'])} · {fmt(before['a1'])}", before["dE_dw2"]),
        Step("∂E/∂b2 = ∂E/∂z2 · 1", fmt(before["dE_dz2"]), before["dE_db2"]),
        Step("∂E/∂a1 = ∂E/∂z2 · w2", f"{fmt(before['dE_dz2'])} · {W2}", before["dE_da1"]),
        Step("∂E/∂z1 = ∂E/∂a1 · a1(1 − a1)", f"{fmt(before['dE_da1'])} · {fmt(before['a1'])}(1 − {fmt(before['a1'])})",
             before["dE_dz1"]),
        Step("∂E/∂w1 = ∂E/∂z1 · x1", f"{fmt(before['dE_dz1'])} · {X1}", before["dE_dw1"]),
        Step("∂E/∂b1 = ∂E/∂z1 · 1", fmt(before["dE_dz1"]), before["dE_db1"]),
    ])
    rows, updated = [], {}
    for name, value, grad in (("w1", W1, "dE_dw1"), ("b1", B1, "dE_db1"), ("w2", W2, "dE_dw2"), ("b2", B2, "dE_db2")):
        param = tensor([value])
        sgd_update(param, tensor([before[grad]]), lr=LEARNING_RATE)
        updated[name] = scalar(param)
        rows.append((name, value, before[grad], updated[name]))
    ex.table("the update p ← p − α ∂E/∂p (toolkit: sgd_update)", ["parameter", "before", "gradient", "after"], rows)
    after = _network(dict(x1=X1, **updated), TARGET)
    ex.table("the error before and after the step", ["", "a2", "E"],
             [("before", before["a2"], before["E"]), ("after", after["a2"], after["E"])])
    ratio = abs(before["dE_dw1"] / before["dE_dw2"])
    ex.text(f"|∂E/∂w1| is {fmt(ratio, 3)} times |∂E/∂w2|: the gradient shrinks by a factor w2·a1(1 − a1)·x1/a1 on "
            "its way back through the hidden sigmoid, the start of the vanishing gradient (topic "
            "vanishing-gradient).")


def run(ex: Example) -> None:
    _factors(ex)
    _chains(ex)
    _update(ex)
