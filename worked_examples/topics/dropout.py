"""Dropout (004, 003): 6 units at rate 1/3, the survivors' scale 1/(1 - r), the random count kept, inference."""

from __future__ import annotations

import numpy as np
import sympy as sp

from toolkit.ops.dropout import dropout_backward, dropout_forward, dropout_mask

from ..arrays import host, tensor
from ..documents import KERAS_COURSE_NOTES, UNIVERSITY_MODULE
from ..example import Example, Step, Topic
from ..render import fmt
from ..symbolic import spot_check

TOPIC = Topic(
    name="dropout",
    title="Dropout: switching units off at random while training",
    summary="004's 6 units at rate 1/3: survivors x 1/(1 - r)",
    documents=(UNIVERSITY_MODULE, KERAS_COURSE_NOTES),
    needs=("dropout",),
    order=130,
)

UNITS = 6  # 004's layer
RATE = 1 / 3  # 004's dropout rate
KERAS_RATE = 0.5  # 003's Keras example, Dropout(rate=0.5)
SEED = 130
MASKS = 100_000  # masks averaged for the expected count


def _survivor_value(rate: float) -> float:
    """What dropout_forward makes of a kept 1 (every survivor gets the same value)."""
    y, _ = dropout_forward(tensor(np.ones(1000)), rate, SEED)
    kept = host(y)[host(y) != 0]
    return float(kept.max())


def _layer(ex: Example) -> None:
    ex.section("A layer of 6 units at rate 1/3 (004)",
               "At each training step every unit is switched off (set to 0) with probability r = 1/3, and "
               "the units that stay are scaled up. The toolkit draws the mask from a counter-based random "
               "generator (Philox) keyed by a seed: one seed per training step.")
    ones = tensor(np.ones((1, UNITS)))
    rows = []
    for step in range(8):
        y, _ = dropout_forward(ones, RATE, SEED + step)
        values = host(y)[0]
        rows.append((step + 1, fmt(values, 3), int((values != 0).sum()), values.sum()))
    ex.table(f"8 training steps on six 1s (toolkit: dropout_forward, seeds {SEED}..{SEED + 7})",
             ["step", "output", "kept", "sum"], rows)
    ex.claim("dropout.survivor-scale", _survivor_value(RATE), label="a surviving 1 becomes")
    ex.text("The number kept changes from step to step: each unit is kept or dropped on its own, as in Keras. "
            "004 says 4 remain 'at each training step': that is the average, not a rule.")


def _expectation(ex: Example) -> None:
    ex.section("How many units survive? (004)",
               f"Each of the 6 units survives with probability 1 − r, independently, so the count is "
               f"binomial. Over {MASKS:,} masks from the toolkit (dropout_mask), against SymPy's binomial "
               "probabilities:")
    masks = host(dropout_mask((MASKS, UNITS), RATE, SEED))
    kept = masks.sum(axis=1)
    k, r = sp.symbols("k r", nonnegative=True)
    pmf = sp.binomial(UNITS, k) * (1 - r) ** k * r ** (UNITS - k)
    third = sp.Rational(1, 3)
    ex.table("units kept out of 6", ["kept", "share of the masks", "C(6,k)(2/3)^k(1/3)^(6−k)"],
             [(n, float((kept == n).mean()), float(pmf.subs({k: n, r: third}))) for n in range(UNITS + 1)])
    expected = sp.simplify(sp.summation(k * pmf, (k, 0, UNITS)))
    ex.steps("the expected count", [
        Step("E[kept] = Σ k·C(6,k)(1−r)^k r^(6−k)", sp.sstr(expected), float(expected.subs(r, third))),
        Step("average over the toolkit's masks", f"{MASKS:,} masks", kept.mean())])
    ex.claim("dropout.survivors", kept.mean(), label="units kept, on average")
    y, _ = dropout_forward(tensor(np.ones((MASKS, UNITS))), RATE, SEED)
    ex.steps("'so that the overall sum of the neuron values remains the same' (004): on average", [
        Step("sum of the 6 outputs, averaged", f"{MASKS:,} steps", host(y).sum(axis=1).mean()),
        Step("its spread (standard deviation)", "one step", host(y).sum(axis=1).std())])


def _scale(ex: Example) -> None:
    ex.section("Why 1/(1 − r)? (004)",
               "A unit with value x is kept with probability 1 − r and then scaled by s, else it is 0, so "
               "its expected output is (1 − r)·s·x. Asking for x, SymPy solves for s; the toolkit's "
               "survivors must carry exactly that scale, at any rate.")
    r, s, x = sp.symbols("r_d s x", positive=True)
    scale = sp.solve(sp.Eq((1 - r) * s * x + r * 0, x), s)[0]
    ex.claim("dropout.scale-formula", scale, label="the scale of the survivors", namespace={"r_d": r})
    rates = [0.1, 0.2, RATE, KERAS_RATE, 0.9]
    ex.derivation("survivors carry the dropped share: 1/(1 − r) = 1 + r/(1 − r)", scale, 1 + r / (1 - r),
                  spot_check(scale, [r], [[rate] for rate in rates], [_survivor_value(rate) for rate in rates]),
                  note="spot check: the value dropout_forward gives a kept 1, at 5 rates (003's Keras "
                       "example uses r = 1/2: survivors doubled)")


def _backward_and_inference(ex: Example) -> None:
    ex.section("Backward, and inference (003)",
               "The backward pass sends the gradient through the same mask with the same scale. 003: dropout "
               "is 'only applied during training, not during inference': with training=False the layer "
               "passes its input through unchanged.")
    x = np.random.default_rng(131).normal(size=(1, UNITS))
    y, cache = dropout_forward(tensor(x), RATE, SEED)
    dx = dropout_backward(tensor(np.ones((1, UNITS))), cache)
    y_inference, _ = dropout_forward(tensor(x), RATE, SEED, training=False)
    ex.steps("toolkit: dropout_forward / dropout_backward", [
        Step("training: y", fmt(x[0], 3), fmt(host(y)[0], 3)),
        Step("dL/dx for dL/dy = 1", "the same mask and scale", fmt(host(dx)[0], 3)),
        Step("inference (training=False): largest |y − x|", fmt(x[0], 3), np.abs(host(y_inference) - x).max())])


def run(ex: Example) -> None:
    _layer(ex)
    _expectation(ex)
    _scale(ex)
    _backward_and_inference(ex)
