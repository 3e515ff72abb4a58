"""Classification: one-hot targets, a softmax output layer whose rows sum to 1, argmax, cross-entropy."""

from __future__ import annotations

import numpy as np
import sympy as sp

from toolkit.nn import to_categorical
from toolkit.ops.activations import activation_backward, activation_forward
from toolkit.ops.dense import dense_forward
from toolkit.ops.losses import loss_forward

from ..arrays import host, scalar, tensor
from ..documents import KERAS_COURSE, KERAS_COURSE_NOTES
from ..example import Example, Step, Topic
from ..render import fmt
from ..symbolic import spot_check

TOPIC = Topic(
    name="classification",
    title="Classification: one-hot targets, softmax probabilities, argmax",
    summary="one-hot targets, softmax rows summing to 1, argmax",
    documents=(KERAS_COURSE_NOTES, KERAS_COURSE),
    needs=("dense", "activations", "losses"),
    order=50,
)

CLASSES = ("bad choice", "acceptable choice", "good choice", "very good choice")  # 002's car classes 0..3
LAYERS = (8, 5, 5, 4)  # 002: 8 predictors, two hidden ReLU layers of 5, a softmax layer of 4


def _one_hot(labels: np.ndarray, classes: int) -> np.ndarray:
    """The toolkit's to_categorical (Keras'): row i is 1 at index labels[i], 0 elsewhere (float64 here)."""
    return host(to_categorical(labels, classes, dtype="float64"))


def _targets(ex: Example) -> None:
    ex.section("One-hot targets (003, 002)",
               "A class label c among K classes becomes a row of K numbers: 1 at index c, 0 elsewhere "
               "(Keras: to_categorical). The softmax output layer has one neuron per class to match.")
    labels = np.arange(len(CLASSES))
    rows = _one_hot(labels, len(CLASSES))
    ex.table("toolkit: to_categorical(labels) for 002's four car classes", ["label", "class", "one-hot row"],
             [(int(i), CLASSES[i], fmt(r)) for i, r in zip(labels, rows)])
    ex.claim("classification.one-hot", rows[2], label="one-hot row of class 2 of 4")


def _network(ex: Example) -> None:
    ex.section("A softmax output layer (002's car classifier)",
               "8 predictors, two hidden layers of 5 ReLU neurons and an output layer of 4 softmax neurons. "
               "The weights below are seeded random numbers (the network is untrained): whatever they "
               "are, each row of outputs is a probability distribution.")
    rng = np.random.default_rng(50)
    cars = rng.normal(size=(5, LAYERS[0]))
    h = tensor(cars)
    for i, (m, n) in enumerate(zip(LAYERS[:-1], LAYERS[1:])):
        z, _ = dense_forward(h, tensor(rng.normal(scale=0.8, size=(m, n))), tensor(rng.normal(scale=0.1, size=n)))
        h, _ = activation_forward(z, "softmax" if i == len(LAYERS) - 2 else "relu")
    probabilities = host(h)
    sums = probabilities.sum(axis=1)
    chosen = probabilities.argmax(axis=1)
    ex.table("predicted probabilities (toolkit: dense_forward, relu, softmax)",
             ["car", "p(class 0..3)", "sum", "argmax"],
             [(i, fmt(p, 3), s, f"{c}: {CLASSES[c]}") for i, (p, s, c) in enumerate(zip(probabilities, sums, chosen))])
    ex.claim("classification.probabilities-sum", sums[np.argmax(np.abs(sums - 1))],
             label="row sum of the probabilities (the one farthest from 1)")


def _prediction(ex: Example) -> None:
    ex.section("Reading a prediction (003)",
               "003 shows a prediction for four classes; the predicted class is the index of the largest "
               "probability (np.argmax), and the categorical cross-entropy −Σ t·log(y) measures it "
               "against the one-hot target.")
    prediction = ex.printed_input("classification.prediction")
    ex.claim("classification.prediction", prediction, label="the example prediction (an input here)")
    label = int(np.argmax(prediction))
    target = _one_hot(np.array([label]), len(prediction))
    loss, _ = loss_forward("categorical_crossentropy", tensor(prediction, (1, -1)), tensor(target))
    wrong = _one_hot(np.array([(label + 2) % len(prediction)]), len(prediction))
    loss_wrong, _ = loss_forward("categorical_crossentropy", tensor(prediction, (1, -1)), tensor(wrong))
    ex.steps("toolkit: loss_forward('categorical_crossentropy')", [
        Step("predicted class = argmax y", fmt(prediction), f"{label}: {CLASSES[label]}"),
        Step("−Σ t log y, t = that class", f"−log({fmt(prediction[label])})", scalar(loss)),
        Step("−Σ t log y if the truth were another class",
             f"−log({fmt(prediction[(label + 2) % len(prediction)])})", scalar(loss_wrong)),
    ])


def _jacobian(ex: Example) -> None:
    ex.section("How softmax passes gradients back",
               "∂sᵢ/∂zⱼ = sᵢ(δᵢⱼ − sⱼ): raising one score raises its own probability and lowers the "
               "others. The toolkit's backward pass computes the Jacobian-vector product; fed unit vectors "
               "it returns the Jacobian row by row.")
    z = sp.symbols("z1:4", real=True)
    total = sp.Add(*[sp.exp(zi) for zi in z])
    s = [sp.exp(zi) / total for zi in z]
    scores = np.array([0.3, -1.2, 2.0])
    y, cache = activation_forward(tensor(scores, (1, 3)), "softmax")
    # for dy = e_j the kernel returns Σ_i e_j,i ∂s_i/∂z = ∂s_j/∂z, row j of the Jacobian
    kernel = np.vstack([host(activation_backward(tensor(np.eye(3)[j], (1, 3)), cache)) for j in range(3)])
    point = [tuple(scores)]
    ex.derivation("∂s₁/∂z₁ = s₁(1 − s₁) (3 classes)", sp.Derivative(s[0], z[0]), s[0] * (1 - s[0]),
                  spot_check(sp.diff(s[0], z[0]), list(z), point, kernel[0, 0]),
                  note=f"spot check: the toolkit's backward pass at z = {fmt(scores)}")
    ex.derivation("∂s₁/∂z₂ = −s₁s₂", sp.Derivative(s[0], z[1]), -s[0] * s[1],
                  spot_check(sp.diff(s[0], z[1]), list(z), point, kernel[0, 1]))
    jacobian = sp.Matrix(3, 3, lambda i, j: sp.diff(s[i], z[j])).subs(dict(zip(z, scores)))
    ex.table("the whole Jacobian at that z: SymPy / toolkit", ["i", "∂sᵢ/∂z (SymPy)", "∂sᵢ/∂z (toolkit)"],
             [(i, fmt([float(v) for v in jacobian.row(i)], 5), fmt(kernel[i], 5)) for i in range(3)])


def run(ex: Example) -> None:
    _targets(ex)
    _network(ex)
    _prediction(ex)
    _jacobian(ex)
