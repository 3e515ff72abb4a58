"""Recurrent networks (004, 003, 002): a sequence through the recurrence, BPTT term by term, vanishing and exploding."""

from __future__ import annotations

import numpy as np
import sympy as sp

from toolkit.ops.losses import loss_backward, loss_forward
from toolkit.ops.rnn import rnn_backward, rnn_forward

from ..arrays import host, tensor
from ..documents import KERAS_COURSE, KERAS_COURSE_NOTES, UNIVERSITY_MODULE
from ..example import Example, Step, Topic
from ..render import fmt
from ..symbolic import spot_check

TOPIC = Topic(
    name="rnn",
    title="Recurrent networks: one weight shared across time, and BPTT",
    summary="004's recurrence and BPTT sum; vanishing/exploding",
    documents=(UNIVERSITY_MODULE, KERAS_COURSE_NOTES, KERAS_COURSE),
    needs=("rnn", "losses"),
    order=150,
)

STEPS = 3  # the notes' BPTT example: h_1, h_2, h_3

# the one-unit RNN of the derivation: h_k = f(w h_(k-1) + u x_k), L = L(h_3)
W, U, H0 = sp.symbols("W U h_0", real=True)
XS = sp.symbols(f"x_1:{STEPS + 1}", real=True)
HS = sp.symbols(f"h_1:{STEPS + 1}", real=True)
SLOPES = sp.symbols(f"f'_1:{STEPS + 1}", real=True)  # f'(a_k), the activation's slope at step k
DL_DH3 = sp.Symbol("∂L/∂h_3", real=True)
F = sp.Function("f")
G = sp.Function("L")
_S = sp.Symbol("s", real=True)


def _pre(k: int, previous) -> sp.Expr:
    """a_k = W h_(k-1) + U x_k (k counts from 1)."""
    return W * previous + U * XS[k - 1]


class _Unrolled:
    """h_k as nested f(...) for SymPy to differentiate, and the renaming back to h_k, f'_k, ∂L/∂h_3."""

    def __init__(self) -> None:
        self.h = [H0]
        for k in range(1, STEPS + 1):
            self.h.append(F(_pre(k, self.h[-1])))
        self.step_of = {_pre(k, ([H0, *HS])[k - 1]): k for k in range(1, STEPS + 1)}

    def rename(self, e: sp.Expr) -> sp.Expr:
        e = e.replace(F, lambda a: HS[self.step_of[a] - 1] if a in self.step_of else F(a))
        e = e.replace(lambda z: isinstance(z, sp.Subs) and z.point[0] in self.step_of,
                      lambda z: SLOPES[self.step_of[z.point[0]] - 1])
        return e.replace(lambda z: isinstance(z, sp.Derivative) and z.expr.func == G, lambda z: DL_DH3)

    def explicit(self, k: int) -> sp.Expr:
        """∂h_k^+/∂W: h_(k-1) held constant."""
        return self.rename(sp.diff(F(_pre(k, _S)), W).subs(_S, self.h[k - 1]))

    def jacobian(self, k: int, j: int) -> sp.Expr:
        """∂h_k/∂h_j, every path from h_j to h_k (j <= k)."""
        e = _S
        for step in range(j + 1, k + 1):
            e = F(_pre(step, e))
        return self.rename(sp.diff(e, _S).subs(_S, self.h[j]))

    def total(self, k: int) -> sp.Expr:
        """dh_k/dW, the total derivative."""
        return self.rename(sp.diff(self.h[k], W))


def _sequence(ex: Example) -> None:
    ex.section("A sequence through the recurrence (004, 003, 002)",
               "004: h_t = tanh(W_hh h_(t−1) + W_xh x_t), y_t = W_hy h_t; 003 writes the same step as "
               "z_t = x_t w + b + a_(t−1) w_(t−1,t), a_t = f(z_t), with the weights shared across steps. No "
               "numbers are given: the sequence and weights below are seeded random (illustrative), with "
               "004's zero biases. Keras's row convention: h_t = tanh(x_t W_xh + h_(t−1) W_hh).")
    rng = np.random.default_rng(150)
    x = rng.normal(size=(1, 4, 2))
    w_xh, w_hh, w_hy = rng.normal(scale=0.7, size=(2, 3)), rng.normal(scale=0.6, size=(3, 3)), rng.normal(size=(3, 1))
    ex.inputs("illustrative inputs: T = 4 steps, D = 2 inputs, H = 3 hidden units, 1 output", [
        ("x", x[0], "x_1 .. x_4 (rows)"), ("W_xh", w_xh, "2 × 3"), ("W_hh", w_hh, "3 × 3, shared by every step"),
        ("W_hy", w_hy, "3 × 1"), ("h_0", np.zeros(3), "Keras' initial state")])
    y, h, _ = rnn_forward(tensor(x), None, tensor(w_xh), tensor(w_hh), tensor(np.zeros(3)), tensor(w_hy))
    hs, ys = host(h)[0], host(y)[0]
    previous = np.zeros(3)
    steps = []
    for t in range(4):
        steps.append(Step(f"h_{t + 1} = tanh(x_{t + 1} W_xh + h_{t} W_hh)",
                          f"tanh({fmt(x[0, t], 3)} W_xh + {fmt(previous, 3)} W_hh)", fmt(hs[t], 4)))
        previous = hs[t]
    ex.steps("toolkit: rnn_forward (b_h = 0, read-out without bias)", steps)
    ex.table("outputs y_t = h_t W_hy", ["t", "y_t"], [(t + 1, ys[t, 0]) for t in range(4)])


def _kernel(w: float, u: float, xs, h0: float, target: float) -> dict[str, np.ndarray]:
    """The one-unit RNN through the toolkit: states, dL/dW_hh, and δ_k = ∂L/∂a_k (from dx_k = δ_k u)."""
    _, h, cache = rnn_forward(tensor(xs, (1, STEPS, 1)), tensor([[h0]]), tensor([[u]]), tensor([[w]]), tensor([0.0]))
    _, loss_cache = loss_forward("quadratic", h[:, -1], tensor([[target]]))
    dh = np.zeros((1, STEPS, 1))
    dh[:, -1] = host(loss_backward(loss_cache))
    dx, _, _, dw_hh, _, _, _ = rnn_backward(None, tensor(dh), cache)
    return {"h": host(h).ravel(), "dW_hh": host(dw_hh).item(), "delta": host(dx).ravel() / u}


def _bptt(ex: Example) -> None:
    ex.section("Backpropagation through time (004)",
               "004 follows a loss L(θ) of h_3 back through h_3 = f(W h_2 + ...), h_2 = f(W h_1 + ...), "
               "h_1 = f(W h_0 + ...): W is in every step. SymPy differentiates the unrolled network of one "
               "unit, h_k = f(W h_(k−1) + U x_k), for ANY activation f; afterwards f(a_k) is written h_k, "
               "f'(a_k) is written f'_k, and ∂h_k^+/∂W = f'_k h_(k−1) is the explicit derivative (h_(k−1) "
               "held constant).")
    net = _Unrolled()
    d_h3 = net.total(STEPS)
    d_loss = net.rename(sp.diff(G(net.h[STEPS]), W))
    explicit = {k: net.explicit(k) for k in range(1, STEPS + 1)}
    namespace = {"dh1p_dW": explicit[1], "dh2p_dW": explicit[2], "dh3p_dW": explicit[3],
                 "dh2_dh1": net.jacobian(2, 1), "dh3_dh2": net.jacobian(3, 2), "dh3_dh1": net.jacobian(3, 1),
                 "dh3_dh3": net.jacobian(3, 3), "dL_dh3": DL_DH3, "dL_dW": d_loss, "T": STEPS,
                 "t": sp.Symbol("t", integer=True)}
    namespace.update({f"dh{k}_dW": net.total(k) for k in range(1, STEPS + 1)})
    ex.table("the pieces (SymPy)", ["derivative", "is"],
             [("∂h_3/∂h_2", net.jacobian(3, 2)), ("∂h_3/∂h_1", net.jacobian(3, 1)),
              *[(f"∂h_{k}^+/∂W", explicit[k]) for k in range(1, STEPS + 1)], ("dh_3/dW (total)", d_h3)])
    ex.claim("rnn.bptt-expansion", d_h3, label="dh_3/dW, the expansion", namespace=namespace)
    ex.claim("rnn.bptt-three-paths", d_h3, label="dh_3/dW, three paths", namespace=namespace)
    ex.claim("rnn.bptt-final", d_loss, label="dL/dW, the final formula", namespace=namespace)
    ex.claim("rnn.bptt-loss-sum", d_loss, label="dL/dW as a sum over t", namespace=namespace)
    terms = [DL_DH3 * net.jacobian(STEPS, k) * explicit[k] for k in range(1, STEPS + 1)]
    _bptt_numbers(ex, d_loss, terms)


def _as_tanh(e: sp.Expr, target: sp.Symbol) -> sp.Expr:
    """e with f = tanh and L = (h_3 − y)²/2 written out in W, U, x_k, h_0, y (for the numeric checks)."""
    states, previous = {}, H0
    for k in range(STEPS):
        previous = sp.tanh(_pre(k + 1, previous))
        states[HS[k]] = previous
    values = {**states, **{SLOPES[k]: 1 - states[HS[k]] ** 2 for k in range(STEPS)}, DL_DH3: states[HS[-1]] - target}
    return e.xreplace(values)


def _bptt_numbers(ex: Example, d_loss: sp.Expr, terms: list[sp.Expr]) -> None:
    target = sp.Symbol("y", real=True)
    variables = [W, U, *XS, H0, target]
    rng = np.random.default_rng(151)
    points = [tuple(p) for p in rng.normal(scale=0.8, size=(3, len(variables)))]
    kernel = [_kernel(p[0], p[1], p[2:2 + STEPS], p[2 + STEPS], p[-1]) for p in points]
    ex.derivation("BPTT: dL/dW = Σ_k ∂L/∂h_3 · ∂h_3/∂h_k · ∂h_k^+/∂W", d_loss, sp.Add(*terms),
                  spot_check(_as_tanh(sp.Add(*terms), target), variables, points, [k["dW_hh"] for k in kernel]),
                  note="any activation f; spot check with f = tanh and L = (h_3 − y)²/2 at 3 random points, "
                       "against rnn_backward's dW_hh (loss_backward('quadratic') gives ∂L/∂h_3)")
    first, at = kernel[0], dict(zip(variables, points[0]))
    h_before = np.concatenate([[at[H0]], first["h"][:-1]])
    rows = [(f"k = {k}", sp.sstr(terms[k - 1]), float(_as_tanh(terms[k - 1], target).subs(at)),
             first["delta"][k - 1] * h_before[k - 1]) for k in range(1, STEPS + 1)]
    rows.append(("sum", "dL/dW", float(_as_tanh(d_loss, target).subs(at)), first["dW_hh"]))
    ex.table(f"term by term at W = {fmt(at[W], 3)}, U = {fmt(at[U], 3)} (kernel: δ_k·h_(k−1), δ_k = dx_k / U)",
             ["", "term", "SymPy", "toolkit"], rows)
    ex.text("The kernel does not build the products ∂h_3/∂h_k: it sends δ_k = ∂L/∂a_k backwards one step at a "
            "time (δ_(k−1) = δ_k W f'_(k−1)) and adds δ_k h_(k−1) to dW at each step, which is the same sum in "
            "O(T) work instead of O(T²).")


def _one_step(ex: Example) -> None:
    h, x = sp.symbols("h x", real=True)
    step = sp.tanh(W * h + U * x)
    points = [(0.9, -0.3, 0.3, 1.2), (1.4, 0.7, -0.8, 0.1), (-0.6, 1.1, 0.6, -0.7)]  # (W, U, h, x)
    kernel = []
    for w, u, h0, x0 in points:
        _, _, cache = rnn_forward(tensor([[[x0]]]), tensor([[h0]]), tensor([[u]]), tensor([[w]]), tensor([0.0]))
        kernel.append(host(rnn_backward(None, tensor(np.ones((1, 1, 1))), cache)[1]).item())
    ex.derivation("one step back: ∂h_t/∂h_(t−1) = W_hh (1 − h_t²) for tanh", sp.Derivative(step, h),
                  W * (1 - step ** 2), spot_check(W * (1 - step ** 2), [W, U, h, x], points, kernel),
                  note="spot check: rnn_backward's dh0 for one step with dL/dh_1 = 1")


def _vanishing(ex: Example) -> None:
    ex.section("Vanishing and exploding gradients (004)",
               "Going back one step multiplies the gradient by W_hh·tanh'(a_t). Below, a one-unit RNN over 25 "
               "steps with tiny inputs (so tanh stays near its linear middle): |∂h_25/∂h_k| from rnn_backward, "
               "as log10, against the distance 25 − k. |W_hh| < 1 vanishes, |W_hh| > 1 explodes; but a large "
               "W_hh drives the state into tanh's flat tails, where tanh' ≈ 0 makes it vanish after all.")
    _one_step(ex)
    steps = 25
    xs = np.random.default_rng(152).normal(scale=0.01, size=(1, steps, 1))
    series, rows = [], []
    for w in (0.6, 0.9, 1.1, 3.0):
        _, h, cache = rnn_forward(tensor(xs), None, tensor([[1.0]]), tensor([[w]]), tensor([0.0]))
        dh = np.zeros((1, steps, 1))
        dh[:, -1] = 1.0
        dx, dh0, _, _, _, _, _ = rnn_backward(None, tensor(dh), cache)
        # ∂h_T/∂h_k = δ_(k+1) W for k < T (δ_k from dx_k = δ_k U, U = 1; k = 0 is dh0), and 1 for k = T
        by_k = np.append(host(dx).ravel() * w, 1.0)
        reach = by_k[::-1]  # index = distance T - k
        if w < 2:  # the saturated case falls so far that it would flatten the others: it is in the table
            series.append((f"W_hh = {w}", np.arange(steps + 1), np.log10(np.abs(reach))))
        rows.append((f"{w}", fmt(np.abs(host(h)).max(), 3), fmt(abs(host(dh0).item()), 3)))
    ex.plot("log10 |∂h_25/∂h_k| against 25 − k (toolkit: rnn_backward)", series, xlabel="steps back", height=14)
    ex.table("how far the gradient reaches", ["W_hh", "largest |h_t|", "|∂h_25/∂h_0|"], rows)


def run(ex: Example) -> None:
    _sequence(ex)
    _bptt(ex)
    _vanishing(ex)
