"""Gradient descent: 004's single step on a one-weight loss, and 003's fit of z = 2x from w = 0."""

from __future__ import annotations

import numpy as np
import sympy as sp

from toolkit.ops.dense import dense_backward, dense_forward
from toolkit.ops.losses import loss_backward, loss_forward
from toolkit.ops.optim import sgd_update

from ..arrays import scalar, tensor
from ..documents import FIGURE_FACTS, KERAS_COURSE, KERAS_COURSE_NOTES, UNIVERSITY_MODULE
from ..example import Example, Step, Topic
from ..render import fmt
from ..symbolic import spot_check

TOPIC = Topic(
    name="gradient-descent",
    title="Gradient descent: w ← w − α dJ/dw",
    summary="004's single step; 003's fit of z = 2x; learning rates",
    documents=(UNIVERSITY_MODULE, FIGURE_FACTS, KERAS_COURSE_NOTES, KERAS_COURSE),
    needs=("dense", "losses", "optim"),
    order=40,
)

# 004 with NOTES.md: one input x1 = 2, label 6, initial weight 5, learning rate 0.1, L = 1/2 (6 - w x1)^2
X1, LABEL, W_START, RATE = 2.0, 6.0, 5.0, 0.1
# 003 / 002: z = 2x, J(w) = 1/(2n) Σ (z - w x)^2 from w0 = 0. The data and the learning rates were in
# lost figures: these are illustrative.
SLOPE = 2.0
DATA_X = np.array([0.5, 1.0, 1.5, 2.0, 2.5])
RATES = {"too small": 0.01, "good": 0.25, "too large": 0.75}
ITERATIONS = 20
CONVERGED = 1e-12


class Fit:
    """w x fitted to targets by the toolkit: dense_forward, loss_forward, dense_backward, sgd_update."""

    def __init__(self, x: np.ndarray, targets: np.ndarray, loss: str, w0: float):
        self.x = tensor(x.reshape(-1, 1))
        self.targets = tensor(targets.reshape(-1, 1))
        self.loss = loss
        self.w = tensor([[w0]])

    def cost_and_gradient(self) -> tuple[float, float]:
        y, cache = dense_forward(self.x, self.w)
        cost, loss_cache = loss_forward(self.loss, y, self.targets)
        _, dw, _ = dense_backward(loss_backward(loss_cache), cache)
        return scalar(cost), scalar(dw)

    def step(self, rate: float) -> tuple[float, float, float]:
        """(cost, gradient) at the current w, then one update; returns them with the new w."""
        cost, gradient = self.cost_and_gradient()
        sgd_update(self.w, tensor([[gradient]]), lr=rate)
        return cost, gradient, scalar(self.w)

    def converge(self, rate: float, limit: int = 100_000) -> float:
        for _ in range(limit):
            before = scalar(self.w)
            _, _, after = self.step(rate)
            if abs(after - before) < CONVERGED:
                return after
        raise RuntimeError(f"gradient descent did not converge in {limit} steps at rate {rate}")


def _single_step(ex: Example) -> None:
    ex.section("One step on a one-weight loss (004, NOTES.md)",
               "One input x1 with label 6 and a single weight w11: L(w11) = ½(6 − w11·x1)². The gradient "
               "at the initial weight says which way the loss rises; the step goes the other way.")
    ex.inputs("inputs (004's figure, NOTES.md)", [("x1", X1, "the input"), ("label", LABEL, "the target"),
                                                  ("w11", W_START, "initial weight"), ("ε", RATE, "learning rate")])
    fit = Fit(np.array([X1]), np.array([LABEL]), "quadratic", W_START)  # quadratic: ½ Σ (y − t)²
    loss, gradient = fit.cost_and_gradient()
    _, _, new_w = fit.step(RATE)
    new_loss, _ = fit.cost_and_gradient()
    ex.steps("toolkit: dense_forward, loss_forward('quadratic'), dense_backward, sgd_update", [
        Step("L(w11) = ½(6 − w11·x1)²", f"½({fmt(LABEL)} − {fmt(W_START)}·{fmt(X1)})²", loss),
        Step("∂L/∂w11 = −x1(6 − w11·x1)", f"−{fmt(X1)}({fmt(LABEL)} − {fmt(W_START)}·{fmt(X1)})", gradient),
        Step("w11 ← w11 − ε·∂L/∂w11", f"{fmt(W_START)} − {fmt(RATE)}·{fmt(gradient)}", new_w),
        Step("L at the new weight", f"½({fmt(LABEL)} − {fmt(new_w)}·{fmt(X1)})²", new_loss),
    ])
    w, x = sp.symbols("w11 x1", real=True)
    loss_expr = (LABEL_SYMBOL - w * x) ** 2 / 2
    derived = sp.diff(loss_expr, w).subs(LABEL_SYMBOL, sp.nsimplify(LABEL))
    ex.claim("gradient-descent.gradient-formula", derived, label="∂L/∂w11 (004)", namespace={"x1": x, "w11": w})
    ex.claim("gradient-descent.gradient", gradient, label="gradient at w11 = 5")
    ex.claim("gradient-descent.new-weight", new_w, label="weight after one step")
    optimum = Fit(np.array([X1]), np.array([LABEL]), "quadratic", W_START).converge(RATE)
    root = sp.solve(sp.Eq(derived.subs(x, sp.nsimplify(X1)), 0), w)
    ex.steps("the optimum", [Step("∂L/∂w11 = 0 (SymPy solve)", f"−{fmt(X1)}({fmt(LABEL)} − 2w11) = 0", root[0]),
                             Step("gradient descent until |Δw| < 1e-12 (toolkit)", f"from w11 = {fmt(W_START)}",
                                  optimum)])
    ex.claim("gradient-descent.optimum-004", optimum, label="optimal weight")


LABEL_SYMBOL = sp.Symbol("y_hat", real=True)


def _fit_line(ex: Example) -> None:
    ex.section("Fitting z = 2x from w0 = 0 (003, 002)",
               "The cost J(w) = 1/(2n) Σ (zᵢ − w·xᵢ)² is a parabola in w. Its derivative "
               "dJ/dw = −(1/n) Σ xᵢ(zᵢ − w·xᵢ) vanishes at w = 2 for any data on the line z = 2x, and "
               "each step moves w a fixed fraction of the way there. The data and learning rates of the "
               "notes' figures are lost: these are illustrative.")
    targets = SLOPE * DATA_X
    ex.inputs("illustrative data on z = 2x", [("x", DATA_X, "inputs"), ("z", targets, "targets z = 2x"),
                                              ("w0", 0.0, "initial weight (003)")])
    # SymPy, for three symbolic points on z = 2x (any three: the spot check uses the first three above)
    n = 3
    xs = sp.symbols(f"x1:{n + 1}", real=True)
    w = sp.Symbol("w", real=True)
    slope = sp.nsimplify(SLOPE)
    cost = sp.Add(*[(slope * xi - w * xi) ** 2 for xi in xs]) / (2 * n)
    gradient = sp.diff(cost, w)
    trial = (0.0, 1.3, 5.0)
    ex.derivation("dJ/dw for three points on z = 2x: a multiple of (w − 2)",
                  sp.Derivative(cost, w), (w - 2) * sp.Add(*[xi ** 2 for xi in xs]) / n,
                  spot_check(gradient, [w, *xs], [(wv, *DATA_X[:n]) for wv in trial],
                             [Fit(DATA_X[:n], targets[:n], "mse_half", wv).cost_and_gradient()[1] for wv in trial]),
                  note="spot check: the toolkit's gradient (mse_half, dense_backward) on the first three "
                       "points, at w = 0, 1.3, 5")
    ex.text(f"SymPy: dJ/dw = 0 at w = {fmt(sp.solve(gradient, w)[0])} whatever the xᵢ (none of them zero).")
    optimum = Fit(DATA_X, targets, "mse_half", 0.0).converge(RATES["good"])
    ex.claim("gradient-descent.optimum-003", optimum, label="the minimum of J (gradient descent to convergence)")
    ex.claim("gradient-descent.optimum-002", optimum, label="the value w approaches")

    history = {}
    for name, rate in RATES.items():
        fit = Fit(DATA_X, targets, "mse_half", 0.0)
        rows = [fit.step(rate) for _ in range(ITERATIONS)]
        history[name] = (rate, np.array([r[0] for r in rows]), np.array([0.0] + [r[2] for r in rows]))
    rate, costs, ws = history["good"]
    ex.table(f"the first steps at α = {rate} (toolkit)", ["iteration", "w before", "J(w)", "w after"],
             [(i, ws[i], costs[i], ws[i + 1]) for i in range(6)])
    ex.claim("gradient-descent.four-iterations", ws[4], label=f"w after four iterations (α = {rate})")
    ex.table("after 20 iterations", ["learning rate", "α", "w", "J(w)"],
             [(name, rate, ws[-1], costs[-1]) for name, (rate, costs, ws) in history.items()])
    iterations = np.arange(ITERATIONS + 1)
    ex.plot("w per iteration", [(f"α = {rate} ({name})", iterations, ws) for name, (rate, _, ws) in history.items()],
            xlabel="iteration")
    good = [(f"α = {rate} ({name})", iterations[:-1], costs) for name, (rate, costs, _) in history.items()
            if name != "too large"]
    ex.plot("cost J(w) per iteration (the too-large rate grows without bound: left out)", good,
            xlabel="iteration")


def run(ex: Example) -> None:
    _single_step(ex)
    _fit_line(ex)
