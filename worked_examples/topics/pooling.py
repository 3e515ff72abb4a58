"""Pooling (004, 003): max, average and sum over 2x2 windows with stride 2; shapes; where gradients go."""

from __future__ import annotations

import numpy as np

from toolkit.ops.pool2d import pool2d_backward, pool2d_forward

from ..arrays import host, tensor
from ..documents import FIGURE_FACTS, UNIVERSITY_MODULE
from ..example import Example, Topic
from ..render import fmt

TOPIC = Topic(
    name="pooling",
    title="Pooling: one number per window",
    summary="004's 2x2 max pooling, average and sum pooling, shapes",
    documents=(UNIVERSITY_MODULE, FIGURE_FACTS),
    needs=("pool2d",),
    order=100,
)

def _as_image(m: np.ndarray):
    """A 2-D matrix as one image of one channel, (N, H, W, C) = (1, H, W, 1), on the backend."""
    return tensor(m.reshape(1, *m.shape, 1))


def _matrix(a) -> np.ndarray:
    return host(a)[0, :, :, 0]


def _max_pool(ex: Example) -> np.ndarray:
    ex.section("Max pooling, 2x2 windows, stride 2 (004)",
               "The 4x4 feature map is cut into four 2x2 windows that do not overlap (stride 2 = window "
               "size); each keeps its largest value, so height and width halve.")
    feature_map = ex.printed_input("pooling.input").reshape(4, 4)
    ex.claim("pooling.input", feature_map, label="the input (004's 'convoluted matrix')")
    ex.inputs("input (004, the 'convoluted matrix')", [("x", feature_map, "4 × 4, one channel")])
    x = _as_image(feature_map)
    rows = []
    results = {}
    for mode in ("max", "avg", "sum"):
        y, _ = pool2d_forward(x, pool_size=2, stride=2, mode=mode)
        results[mode] = _matrix(y)
    for i in range(2):
        for j in range(2):
            window = feature_map[2 * i:2 * i + 2, 2 * j:2 * j + 2]
            rows.append((f"({i}, {j})", fmt(window), results["max"][i, j], results["avg"][i, j], results["sum"][i, j]))
    ex.table("each window (toolkit: pool2d_forward, mode max / avg / sum)",
             ["output cell", "window", "max", "average", "sum"], rows)
    ex.claim("pooling.max-2x2", results["max"], label="max pooling result")
    ex.claim("pooling.second-figure", None, label="the second figure's result (input lost)")
    return feature_map


def _gradients(ex: Example, feature_map: np.ndarray) -> None:
    ex.section("Where the gradient goes",
               "Backpropagation through max pooling sends each window's gradient to the cell that won; a "
               "tie (the bottom-right window holds its maximum twice) goes to the first maximum in "
               "row-major order. Average pooling shares it equally.")
    x = _as_image(feature_map)
    rows = []
    for mode in ("max", "avg"):
        y, cache = pool2d_forward(x, pool_size=2, stride=2, mode=mode)
        dx = _matrix(pool2d_backward(tensor(np.ones(host(y).shape)), cache))
        rows.append((mode, fmt(dx, 3)))
    ex.table("∂L/∂x for ∂L/∂y = 1 everywhere (toolkit: pool2d_backward)", ["mode", "∂L/∂x"], rows)


def _shapes(ex: Example) -> None:
    ex.section("Shapes (004)",
               "Pooling works on each channel on its own: a 32 × 32 × 12 volume pooled with 2 × 2 windows "
               "and stride 2 keeps its 12 channels and halves the rest.")
    y, _ = pool2d_forward(tensor(np.zeros((1, 32, 32, 12))), pool_size=2, stride=2)
    shape = host(y).shape[1:]
    ex.table("toolkit: pool2d_forward on zeros", ["input (H, W, C)", "output (H, W, C)"], [("(32, 32, 12)", fmt(shape))])
    ex.claim("pooling.volume", shape, label="volume after max pooling")


def run(ex: Example) -> None:
    feature_map = _max_pool(ex)
    _gradients(ex, feature_map)
    _shapes(ex)
