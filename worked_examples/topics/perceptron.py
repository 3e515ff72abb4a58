"""The McCulloch-Pitts neuron and the perceptron (004): thresholds, the bias as a weight, logic gates."""

from __future__ import annotations

import numpy as np

from toolkit.ops.activations import activation_forward
from toolkit.ops.dense import dense_backward, dense_forward
from toolkit.ops.optim import sgd_update

from ..arrays import host, tensor
from ..documents import UNIVERSITY_MODULE
from ..example import Example, Topic
from ..render import fmt

TOPIC = Topic(
    name="perceptron",
    title="McCulloch-Pitts neurons and perceptrons as logic gates",
    summary="McCulloch-Pitts and perceptron logic gates",
    documents=(UNIVERSITY_MODULE,),
    needs=("dense", "activations", "optim"),
    order=80,
)

INPUTS = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
GATES = {"AND": np.array([0.0, 0.0, 0.0, 1.0]), "OR": np.array([0.0, 1.0, 1.0, 1.0]),
         "XOR": np.array([0.0, 1.0, 1.0, 0.0])}
EPOCHS = 25
RATE = 0.5


def _fire(x, w, b, threshold: float = 0.0) -> np.ndarray:
    """Binary step of the net input x W + b: 1 where it reaches the threshold, else 0."""
    net, _ = dense_forward(tensor(x), tensor(w), None if b is None else tensor(b))
    y, _ = activation_forward(net, "binary_step", threshold=threshold)
    return host(y).ravel()


def _mcculloch_pitts(ex: Example) -> None:
    ex.section("The McCulloch-Pitts neuron (004)",
               "004: y = 1 if Σ xᵢ ≥ 0, else 0 (no inhibitory inputs). With inputs 0 or 1 the sum is never "
               "negative, so with threshold 0 the neuron always fires; McCulloch and Pitts' threshold θ "
               "(y = 1 if Σ xᵢ ≥ θ) is what makes it compute: θ = 2 gives AND of two inputs, θ = 1 gives OR.")
    ones = np.ones((2, 1))
    rows = [(fmt(x), a, b, c) for x, a, b, c in zip(INPUTS, _fire(INPUTS, ones, None, 0.0),
                                                    _fire(INPUTS, ones, None, 2.0), _fire(INPUTS, ones, None, 1.0))]
    ex.table("toolkit: dense_forward (weights 1), activation 'binary_step' with threshold θ",
             ["x1, x2", "θ = 0 (as printed)", "θ = 2: AND", "θ = 1: OR"], rows)


def _bias_as_weight(ex: Example) -> None:
    ex.section("The bias is another weight (004)",
               "004: the input vector becomes X = {1, X1, ..., Xn} and the bias is the weight of the "
               "constant input 1. Both ways give the same net input.")
    rng = np.random.default_rng(80)
    w, b = rng.normal(size=(2, 1)), rng.normal(size=1)
    augmented_x = np.hstack([np.ones((4, 1)), INPUTS])
    augmented_w = np.vstack([b.reshape(1, 1), w])
    with_bias, _ = dense_forward(tensor(INPUTS), tensor(w), tensor(b))
    as_weight, _ = dense_forward(tensor(augmented_x), tensor(augmented_w))
    ex.table(f"net input: x W + b with w = {fmt(w.ravel(), 3)}, b = {fmt(b[0], 3)} (illustrative)",
             ["x1, x2", "x W + b", "[1, x] [b; W]"],
             [(fmt(x), p, q) for x, p, q in zip(INPUTS, host(with_bias).ravel(), host(as_weight).ravel())])
    if not np.allclose(host(with_bias), host(as_weight), rtol=0, atol=1e-15):
        raise AssertionError("the bias as a weight changed the net input")


def _train(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The perceptron rule w ← w + η (t − y) x, bias included as the weight of a constant 1.

    As a gradient step: with dL/dy = y − t (the step's own slope is ignored, as the rule does),
    dense_backward gives ∂/∂W = xᵀ(y − t), and sgd_update subtracts η times it.
    """
    x = tensor(np.hstack([np.ones((4, 1)), INPUTS]))
    w = tensor(np.zeros((3, 1)))
    errors = []
    for _ in range(EPOCHS):
        net, cache = dense_forward(x, w)
        y, _ = activation_forward(net, "binary_step")
        miss = host(y).ravel() - targets
        errors.append(int(np.count_nonzero(miss)))
        _, dw, _ = dense_backward(tensor(miss.reshape(-1, 1)), cache)
        sgd_update(w, dw, lr=RATE)
    net, _ = dense_forward(x, w)
    final, _ = activation_forward(net, "binary_step")
    return host(w).ravel(), host(final).ravel(), errors


def _gates(ex: Example) -> None:
    ex.section("The perceptron learns gates (004)",
               f"004's perceptron: y = 1 if Σᵢ wᵢxᵢ ≥ 0 (i = 0..n, x0 = 1), else 0. The perceptron rule "
               f"w ← w + η (t − y) x, from w = 0 with η = {RATE}, over the four inputs {EPOCHS} times "
               "(toolkit: dense_forward, binary_step, dense_backward, sgd_update). It stops changing once "
               "every input is right; for XOR no line separates the 1s from the 0s, so it never does.")
    curves = []
    rows = []
    epochs = np.arange(1, EPOCHS + 1)
    for name, targets in GATES.items():
        w, y, errors = _train(targets)
        rows.append((name, fmt(targets), fmt(y), fmt(w), errors[-1]))
        curves.append((name, epochs, errors))
    ex.table("after training (w = [bias, w1, w2])", ["gate", "target", "perceptron", "w", "errors"], rows)
    ex.plot("wrong outputs per epoch", curves, xlabel="epoch", height=12)


def run(ex: Example) -> None:
    _mcculloch_pitts(ex)
    _bias_as_weight(ex)
    _gates(ex)
