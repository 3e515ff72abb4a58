"""Loss functions: 004's quadratic, cross-entropy and MSE (and Keras' others), their gradients in SymPy."""

from __future__ import annotations

import numpy as np
import sympy as sp

from toolkit.ops.activations import activation_forward
from toolkit.ops.losses import loss_backward, loss_forward

from ..arrays import host, scalar, tensor
from ..documents import KERAS_COURSE_NOTES, UNIVERSITY_MODULE
from ..example import Example, Topic
from ..render import fmt
from ..symbolic import spot_check

TOPIC = Topic(
    name="loss-functions",
    title="Loss functions: how far the prediction y is from the truth t",
    summary="quadratic, cross-entropy, MSE: formulas and gradients",
    documents=(UNIVERSITY_MODULE, KERAS_COURSE_NOTES),
    needs=("losses", "activations"),
    order=60,
)

N = 3  # entries i = 0..N in the notes' sums


def _formulas(ex: Example) -> None:
    ex.section("The notes' formulas (004)",
               "004 writes the cross-entropy −Σᵢ ŷᵢ log yᵢ and the MSE (1/N) Σᵢ (yᵢ − ŷᵢ)², both with "
               "i = 0..N (ŷ the truth, t below). The cross-entropy is the negative log-likelihood of the "
               "truth under the predicted distribution; the MSE should be the mean of the squared errors.")
    y, t = sp.IndexedBase("y", positive=True), sp.IndexedBase("t", real=True)
    i = sp.Idx("i")
    ns = {"y": y, "t": t, "i": i, "N": N}
    entries = range(N + 1)
    likelihood = sp.Mul(*[y[k] ** t[k] for k in entries])
    ex.claim("loss-functions.cross-entropy", -sp.expand_log(sp.log(likelihood), force=True),
             label=f"−log Π yᵢ^tᵢ over i = 0..{N}", namespace=ns)
    mean = sp.Add(*[(y[k] - t[k]) ** 2 for k in entries]) / (N + 1)
    ex.claim("loss-functions.mse", mean, label=f"the mean of the {N + 1} squared errors i = 0..{N}", namespace=ns)


# name -> (SymPy loss of a prediction vector ys against truth ts, description)
def _symbolic(name: str, ys, ts):
    n = len(ys)
    if name == "quadratic":
        return sp.Add(*[(a - b) ** 2 for a, b in zip(ys, ts)]) / 2
    if name == "mse":
        return sp.Add(*[(a - b) ** 2 for a, b in zip(ys, ts)]) / n
    if name == "mse_half":
        return sp.Add(*[(a - b) ** 2 for a, b in zip(ys, ts)]) / (2 * n)
    if name == "categorical_crossentropy":
        return -sp.Add(*[b * sp.log(a) for a, b in zip(ys, ts)])
    if name == "softmax_crossentropy":
        total = sp.Add(*[sp.exp(a) for a in ys])
        return -sp.Add(*[b * sp.log(sp.exp(a) / total) for a, b in zip(ys, ts)])
    if name == "binary_crossentropy":
        return -sp.Add(*[b * sp.log(a) + (1 - b) * sp.log(1 - a) for a, b in zip(ys, ts)]) / n
    raise ValueError(name)


LOSSES = {
    "quadratic": "½ Σ (y − t)² (004's quadratic loss; the notes' E)",
    "mse": "(1/n) Σ (y − t)² (Keras' MSE)",
    "mse_half": "(1/2n) Σ (y − t)² (the notes' cost J)",
    "categorical_crossentropy": "−Σ t log y (y probabilities)",
    "softmax_crossentropy": "−Σ t log softmax(z) (z scores)",
    "binary_crossentropy": "−(1/n) Σ [t log y + (1 − t) log(1 − y)]",
}


def _values_and_gradients(ex: Example) -> None:
    ex.section("Every loss and its gradient",
               "One prediction against one truth, through the toolkit (loss_forward, loss_backward) and "
               "through SymPy. Conventions: 'mse' is Keras' mean (1/n); the notes' J and E carry a ½ so "
               "that the 2 of the derivative cancels.")
    probabilities = host(activation_forward(tensor([[0.4, 1.3, -0.5]]), "softmax")[0]).ravel()
    cases = {  # name -> (prediction, truth)
        "quadratic": (np.array([0.7, 0.2, 0.9]), np.array([1.0, 0.0, 1.0])),
        "mse": (np.array([0.7, 0.2, 0.9]), np.array([1.0, 0.0, 1.0])),
        "mse_half": (np.array([0.7, 0.2, 0.9]), np.array([1.0, 0.0, 1.0])),
        "categorical_crossentropy": (probabilities, np.array([0.0, 1.0, 0.0])),
        "softmax_crossentropy": (np.array([0.4, 1.3, -0.5]), np.array([0.0, 1.0, 0.0])),
        "binary_crossentropy": (np.array([0.7, 0.2, 0.9]), np.array([1.0, 0.0, 1.0])),
    }
    ys = sp.symbols("y1:4", real=True)
    ts = sp.symbols("t1:4", real=True)
    rows = []
    for name, (y, t) in cases.items():
        loss, cache = loss_forward(name, tensor(y, (1, -1)), tensor(t, (1, -1)))
        gradient = host(loss_backward(cache)).ravel()
        expr = _symbolic(name, ys, ts)
        point = {**dict(zip(ys, y)), **dict(zip(ts, t))}
        exact_loss = float(expr.subs(point))
        exact_grad = [float(sp.diff(expr, v).subs(point)) for v in ys]
        if not np.allclose([scalar(loss), *gradient], [exact_loss, *exact_grad], rtol=1e-9, atol=1e-12):
            raise AssertionError(f"{name}: toolkit {scalar(loss)}, {gradient} vs SymPy {exact_loss}, {exact_grad}")
        rows.append((name, fmt(y, 3), fmt(t), scalar(loss), fmt(gradient, 4)))
    ex.table("toolkit values (SymPy agrees to 1e-9)", ["loss", "y", "t", "L", "∂L/∂y"], rows)
    for name in ("quadratic", "categorical_crossentropy", "softmax_crossentropy"):
        ex.text(f"{name}: {LOSSES[name]}")
    # the gradients a learner should know by heart, proven
    gradients = {
        "quadratic": (sp.Derivative(_symbolic("quadratic", ys, ts), ys[0]), ys[0] - ts[0]),
        "mse": (sp.Derivative(_symbolic("mse", ys, ts), ys[0]), sp.Rational(2, 3) * (ys[0] - ts[0])),
        "softmax_crossentropy": (sp.Derivative(_symbolic("softmax_crossentropy", ys, ts), ys[0]),
                                 sp.exp(ys[0]) / sp.Add(*[sp.exp(v) for v in ys]) * sp.Add(*ts) - ts[0]),
    }
    notes = {"quadratic": "∂L/∂y = y − t: the ½ cancels the 2", "mse": "∂L/∂y = 2(y − t)/n",
             "softmax_crossentropy": "∂L/∂z = softmax(z)·Σt − t, that is p − t for a one-hot t"}
    for name, (lhs, rhs) in gradients.items():
        y, t = cases[name]
        _, cache = loss_forward(name, tensor(y, (1, -1)), tensor(t, (1, -1)))
        kernel = host(loss_backward(cache)).ravel()[0]
        ex.derivation(f"{name}: {notes[name]}", lhs, rhs,
                      spot_check(rhs, [*ys, *ts], [(*y, *t)], [kernel]),
                      note="spot check: the first entry of the toolkit's loss_backward")


def _size(ex: Example) -> None:
    ex.section("Why 1/n (003)",
               "003: the 1/n of the cost 'ensures that the cost is independent of the dataset size'. The "
               "same data repeated ten times: the mean-based costs stay, the plain sum grows tenfold.")
    y = np.array([0.7, 0.2, 0.9, 0.4])
    t = np.array([1.0, 0.0, 1.0, 0.5])
    rows = []
    for name in ("mse_half", "mse", "quadratic"):
        once = scalar(loss_forward(name, tensor(y), tensor(t))[0])
        ten = scalar(loss_forward(name, tensor(np.tile(y, 10)), tensor(np.tile(t, 10)))[0])
        rows.append((name, once, ten, ten / once))
    ex.table("the same errors, once and ten times (toolkit)", ["loss", "data once", "ten times", "ratio"], rows)


def run(ex: Example) -> None:
    _formulas(ex)
    _values_and_gradients(ex)
    _size(ex)
