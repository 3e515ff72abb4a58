"""LSTM (004): one unit's gates on a short sequence, the cell update, ranges, the forget gate's gradient path."""

from __future__ import annotations

import numpy as np
import sympy as sp

from toolkit.ops.activations import activation_forward
from toolkit.ops.dense import dense_forward
from toolkit.ops.lstm import lstm_backward, lstm_forward

from ..arrays import host, tensor
from ..documents import UNIVERSITY_MODULE
from ..example import Example, Step, Topic
from ..render import fmt
from ..symbolic import DerivationError, difference_text, kernel_within, sigma, spot_check, symbolic_range

TOPIC = Topic(
    name="lstm",
    title="LSTM: input, forget and output gates around a memory cell",
    summary="one LSTM unit gate by gate; ranges; the forget path",
    documents=(UNIVERSITY_MODULE,),
    needs=("lstm", "dense", "activations"),
    order=160,
)

GATES = ("i", "f", "g", "o")  # Keras' order: input, forget, candidate ("c" in Keras' names), output
Z = sp.Symbol("z", real=True)


def _split(packed: np.ndarray) -> dict[str, np.ndarray]:
    """(..., 4H) packed in Keras' order -> {"i": (..., H), "f": ..., "g": ..., "o": ...}."""
    return dict(zip(GATES, np.split(packed, 4, axis=-1)))


def _illustrative_weights(rng: np.random.Generator, inputs: int, forget_bias: float):
    """W (D, 4), U (1, 4), b (4,) of one unit, rounded to one decimal so that a reader can follow them."""
    w = np.round(rng.normal(scale=0.8, size=(inputs, 4)), 1)
    u = np.round(rng.normal(scale=0.8, size=(1, 4)), 1)
    b = np.zeros(4)
    b[1] = forget_bias  # Keras' unit_forget_bias=True starts b_f at 1
    return w, u, b


def _gates(ex: Example) -> None:
    ex.section("One LSTM unit, step by step (004)",
               "004 describes three sigmoid gates around a memory cell: the input gate lets new information "
               "in, the forget gate decides what the cell keeps, the output gate what it shows. With "
               "z = x_t W + h_(t−1) U + b split into four parts (Keras' order i, f, c, o):\n"
               "  i = σ(z_i)   f = σ(z_f)   g = tanh(z_c)   o = σ(z_o)\n"
               "  c_t = f·c_(t−1) + i·g     h_t = o·tanh(c_t)\n"
               "004 gives no numbers: the inputs and weights below are ours (seeded, illustrative).")
    rng = np.random.default_rng(160)
    x = np.round(rng.normal(size=(1, 3, 2)), 1)
    w, u, b = _illustrative_weights(rng, 2, forget_bias=1.0)
    ex.inputs("illustrative inputs: one unit (H = 1), D = 2, T = 3", [
        ("x", x[0], "x_1 .. x_3"), ("W", w, "columns i, f, c, o"), ("U", u, "columns i, f, c, o"),
        ("b", b, "b_f = 1, as Keras starts it"), ("h_0, c_0", "0, 0", "Keras' initial state")])
    h, c, cache = lstm_forward(tensor(x), None, None, tensor(w), tensor(u), tensor(b))
    hs, cs, gates = host(h)[0, :, 0], host(c)[0, :, 0], _split(host(cache.gates)[0])
    # the same gates from the pre-activations: one dense layer on [x_t, h_(t-1)], then σ or tanh
    previous_h, previous_c, steps, checks = 0.0, 0.0, [], []
    for t in range(3):
        z, _ = dense_forward(tensor(np.append(x[0, t], previous_h)[None]), tensor(np.vstack([w, u])), tensor(b))
        parts = _split(host(z)[0])
        for name in GATES:
            y, _ = activation_forward(tensor(parts[name]), "tanh" if name == "g" else "sigmoid")
            checks.append(abs(host(y).item() - gates[name][t, 0]))
        i, f, g, o = (gates[name][t, 0] for name in GATES)
        steps += [
            Step(f"t = {t + 1}: z = x_t W + h_(t−1) U + b", f"x_t = {fmt(x[0, t])}, h_(t−1) = {fmt(previous_h, 4)}",
                 fmt(host(z)[0], 4)),
            Step("i, f, g, o", "σ, σ, tanh, σ of z", fmt([i, f, g, o], 4)),
            Step("c = f·c_prev + i·g", f"{fmt(f, 4)}·{fmt(previous_c, 4)} + {fmt(i, 4)}·{fmt(g, 4)}", cs[t]),
            Step("h = o·tanh(c)", f"{fmt(o, 4)}·tanh({fmt(cs[t], 4)})", hs[t]),
        ]
        previous_h, previous_c = hs[t], cs[t]
    ex.steps("toolkit: lstm_forward (gates from its cache; z from dense_forward)", steps)
    if max(checks) > 1e-12:
        raise DerivationError(f"the LSTM kernel's gates differ from σ/tanh of dense_forward's z by {max(checks)}")
    ex.text(f"dense_forward + activation_forward reproduce the kernel's twelve gate values (largest "
            f"difference {difference_text(max(checks), 1.0, host(z).dtype.name)}). The forget gate scales "
            "the old cell; the input gate scales "
            "the new information g.")


def _ranges(ex: Example) -> None:
    ex.section("What the gates and the cell can hold (004)",
               "SymPy finds the ranges of σ and tanh; the kernel's gates over 64 random sequences of 10 "
               "steps (8 units) must stay inside them.")
    rng = np.random.default_rng(161)
    x = rng.normal(size=(64, 10, 3))
    w, u, b = rng.normal(scale=0.7, size=(3, 32)), rng.normal(scale=0.7, size=(8, 32)), rng.normal(size=32)
    _, c, cache = lstm_forward(tensor(x), None, None, tensor(w), tensor(u), tensor(b))
    gates = _split(host(cache.gates))
    sigmoid_range = symbolic_range(1 / (1 + sp.exp(-Z)), Z)
    tanh_range = symbolic_range(sp.tanh(Z), Z)
    sigmoid_gates = np.concatenate([gates[name].ravel() for name in ("i", "f", "o")])
    if not (kernel_within(sigmoid_gates, sigmoid_range) and kernel_within(gates["g"], tanh_range)):
        raise DerivationError("the LSTM kernel's gates leave the ranges of σ and tanh")
    ex.table("kernel extremes (toolkit: lstm_forward's cache)", ["values", "range (SymPy)", "min", "max"], [
        ("gates i, f, o", "(0, 1)", sigmoid_gates.min(), sigmoid_gates.max()),
        ("candidate g", "(-1, 1)", gates["g"].min(), gates["g"].max()),
        ("cell state c", "-", host(c).min(), host(c).max())])
    ex.claim("lstm.gate-range", sigmoid_range, label="range of the gates i, f, o")
    ex.claim("lstm.candidate-range", tanh_range, label="range of the new information g")
    # tanh bounds what is added each step, not the cell: with i, f, g near 1 the cell counts up
    steps = 6
    w, u, b = np.zeros((1, 4)), np.zeros((1, 4)), np.full(4, 6.0)  # z = 6 for every gate: σ(6), tanh(6) ≈ 1
    _, c, _ = lstm_forward(tensor(np.zeros((1, steps, 1))), None, None, tensor(w), tensor(u), tensor(b))
    ex.table("the cell is not bounded by 1: every gate held open (z = 6)", ["t", "c_t"],
             [(t + 1, v) for t, v in enumerate(host(c)[0, :, 0])])


def _forget_path(ex: Example) -> None:
    ex.section("The forget gate as a gradient path (004)",
               "004: the forget gate 'can prevent gradients from vanishing'. Along the cell, one step back "
               "multiplies the gradient by f, whatever tanh does elsewhere:")
    x, h0, c0 = sp.symbols("x h_0 c_0", real=True)
    wi, wf, wc, ui, uf, uc = sp.symbols("w_i w_f w_c u_i u_f u_c", real=True)
    i, f, g = sigma(wi * x + ui * h0), sigma(wf * x + uf * h0), sp.tanh(wc * x + uc * h0)
    c1 = f * c0 + i * g
    points = [(0.3, -0.7, 1.2), (-1.1, 0.3, -0.6), (2.0, 0.9, 0.1)]  # (x, h_0, c_0)
    rng = np.random.default_rng(162)
    w, u, b = rng.normal(size=(1, 4)), rng.normal(size=(1, 4)), np.zeros(4)
    kernel = []
    for xv, hv, cv in points:
        _, _, cache = lstm_forward(tensor([[[xv]]]), tensor([[hv]]), tensor([[cv]]), tensor(w), tensor(u), tensor(b))
        kernel.append(host(lstm_backward(None, cache, dc_last=tensor([[1.0]]))[2]).item())
    fixed = {wi: w[0, 0], wf: w[0, 1], wc: w[0, 2], ui: u[0, 0], uf: u[0, 1], uc: u[0, 2]}
    ex.derivation("∂c_1/∂c_0 = f", sp.Derivative(c1, c0), f,
                  spot_check(sp.diff(c1, c0), [x, h0, c0], points, kernel, fixed=fixed),
                  note="the gates depend on x and h_0, not on c_0; spot check: lstm_backward's dc0 with "
                       "dL/dc_1 = 1, random weights, three points")
    rows = []
    steps = 25
    xs = np.random.default_rng(163).normal(scale=0.1, size=(1, steps, 1))
    for forget_bias in (0.0, 1.0, 3.0):
        w, u, b = _illustrative_weights(np.random.default_rng(164), 1, forget_bias)
        _, _, cache = lstm_forward(tensor(xs), None, None, tensor(w), tensor(u), tensor(b))
        dc0 = host(lstm_backward(None, cache, dc_last=tensor([[1.0]]))[2]).item()
        f_mean = _split(host(cache.gates)[0])["f"].mean()
        rows.append((forget_bias, f_mean, abs(dc0)))
    ex.table(f"|∂c_{steps}/∂c_0| over {steps} steps (toolkit: lstm_backward)", ["b_f", "mean f", "|∂c_T/∂c_0|"], rows)
    ex.text("With f near 1 the cell carries the gradient across many steps; a plain RNN multiplies by "
            "W_hh·tanh' instead (see the topic rnn). Keras starts b_f at 1 for this reason.")


def run(ex: Example) -> None:
    _gates(ex)
    _ranges(ex)
    _forget_path(ex)
