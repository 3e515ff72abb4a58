"""Convolution (004): sliding a filter, output sizes with and without padding, and the filter's gradient."""

from __future__ import annotations

import numpy as np
import sympy as sp

from toolkit.ops.conv2d import conv2d_backward, conv2d_forward

from ..arrays import host, tensor
from ..documents import UNIVERSITY_MODULE
from ..example import Example, Step, Topic
from ..render import fmt
from ..symbolic import spot_check

TOPIC = Topic(
    name="convolution",
    title="Convolution: a filter slid over an image",
    summary="004's 6x6 image; output sizes n - f + 1, n + 2p - f + 1",
    documents=(UNIVERSITY_MODULE,),
    needs=("conv2d",),
    order=90,
)

# 004, "Illustration of the input image and its pixel representation"
PIXELS = np.array([
    [0.0, 0.0, 0.0, 0.0, 0.2, 0.0],
    [0.0, 0.0, 0.0, 0.0, 0.2, 0.3],
    [0.0, 0.0, 0.1, 0.0, 0.5, 0.2],
    [0.0, 0.2, 0.0, 0.2, 0.2, 0.6],
    [0.0, 0.2, 0.0, 0.0, 0.9, 0.7],
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
])
# 004's 3x3 kernel of zeros and ones was in a lost figure: this one is illustrative
KERNEL = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])


def _image(m: np.ndarray):
    """A matrix as one image of one channel (N, H, W, C) = (1, H, W, 1)."""
    return tensor(m.reshape(1, *m.shape, 1))


def _sliding(ex: Example) -> None:
    ex.section("Sliding a 3x3 filter over 004's image",
               "At each position the filter is laid on the image, the overlapping numbers are multiplied "
               "and summed, and the sum is one pixel of the feature map; then the filter moves one pixel "
               "(stride 1). Like Keras, the filter is not flipped (cross-correlation).")
    ex.inputs("inputs", [("image", PIXELS, "004's pixel representation, 6 × 6"),
                         ("filter", KERNEL, "illustrative: 004's figure is lost")])
    y, cache = conv2d_forward(_image(PIXELS), tensor(KERNEL.reshape(3, 3, 1, 1)))
    feature_map = host(y)[0, :, :, 0]
    corner = PIXELS[:3, :3]
    ex.steps("the top-left output pixel", [
        Step("y₀₀ = Σ x[a, b]·w[a, b]", " + ".join(f"{fmt(p)}·{fmt(k)}" for p, k in zip(corner.ravel(), KERNEL.ravel())),
             feature_map[0, 0]),
    ])
    ex.table("feature map, 4 × 4 (toolkit: conv2d_forward)", ["row", "y"], [(i, fmt(r)) for i, r in enumerate(feature_map)])
    _, dw, _ = conv2d_backward(tensor(np.ones((1, 4, 4, 1))), cache)
    ex.table("∂(Σ y)/∂w: each weight collects the pixels it touched (toolkit: conv2d_backward)", ["row", "∂/∂w"],
             [(a, fmt(host(dw)[a, :, 0, 0])) for a in range(3)])
    # the same rule in SymPy on a 3x3 image and a 2x2 filter (small enough to read)
    x = sp.Matrix(3, 3, lambda i, j: sp.Symbol(f"x{i}{j}", real=True))
    w = sp.Matrix(2, 2, lambda i, j: sp.Symbol(f"w{i}{j}", real=True))
    total = sum(x[i + a, j + b] * w[a, b] for i in range(2) for j in range(2) for a in range(2) for b in range(2))
    small = np.random.default_rng(90).normal(size=(3, 3))
    _, small_cache = conv2d_forward(_image(small), tensor(np.ones((2, 2, 1, 1))))
    _, small_dw, _ = conv2d_backward(tensor(np.ones((1, 2, 2, 1))), small_cache)
    ex.derivation("∂(Σ y)/∂w₀₀ is the sum of the pixels w₀₀ touched", sp.Derivative(total, w[0, 0]),
                  x[0, 0] + x[0, 1] + x[1, 0] + x[1, 1],
                  spot_check(sp.diff(total, w[0, 0]), list(x), [tuple(small.ravel())], host(small_dw)[0, 0, 0, 0]),
                  note="3 × 3 image, 2 × 2 filter; spot check: conv2d_backward on a random image")
    _lost_kernel(ex)


def _lost_kernel(ex: Example) -> None:
    ex.section("Which kernel did 004 use? (its figure is lost)",
               "004 calls its pooling example's 4 × 4 input a 'convoluted matrix', and says the kernel is "
               "3 × 3 with weights 0 and 1. All 512 such kernels, in one conv2d_forward call with 512 "
               "output channels, against that matrix:")
    target = ex.printed_input("convolution.feature-map").reshape(4, 4)
    kernels = np.array([[(k >> bit) & 1 for bit in range(9)] for k in range(512)], dtype=np.float64)
    y, _ = conv2d_forward(_image(PIXELS), tensor(kernels.T.reshape(3, 3, 1, 512)))
    maps = np.moveaxis(host(y)[0], -1, 0)  # (512, 4, 4)
    agree = (np.abs(maps - target) < 1e-9).sum(axis=(1, 2))
    best = int(np.argmax(agree))
    ex.claim("convolution.feature-map", maps[best], label="the closest 0/1 kernel's feature map")
    ex.table(f"the best 0/1 kernel agrees on {agree[best]} of 16 entries", ["kernel row", "", "its map", "004"],
             [(a, fmt(kernels[best].reshape(3, 3)[a]) if a < 3 else "", fmt(maps[best][a]), fmt(target[a]))
              for a in range(4)])
    ex.text("No 0/1 kernel reproduces all sixteen numbers, so 004's kernel cannot be recovered; it is "
            "shown as an example, not judged.")


def _sizes(ex: Example) -> None:
    ex.section("Output sizes (004)",
               "A filter of f × f fits n − f + 1 times along a row of n pixels; p rings of zeros around the "
               "image make the row n + 2p long. SymPy counts the positions; the toolkit's conv2d_forward "
               "must produce those shapes.")
    n, f, p, i = sp.symbols("n f p i", integer=True, positive=True)
    valid = sp.summation(1, (i, 0, n - f))  # window starts 0, 1, ..., n - f
    padded = sp.summation(1, (i, 0, n + 2 * p - f))
    ex.claim("convolution.valid-size-formula", valid, label="positions of an f-wide filter in n pixels",
             namespace={"n": n, "f": f})
    ex.claim("convolution.padded-size-formula", padded, label="... after p rings of zero padding",
             namespace={"n": n, "f": f, "p": p})
    rows = []
    shapes = {}
    for size, width, pad in ((8, 3, 0), (8, 3, 1), (28, 5, 0), (32, 5, 2), (6, 3, 0)):
        y, _ = conv2d_forward(tensor(np.zeros((1, size, size, 1))), tensor(np.zeros((width, width, 1, 1))),
                              padding=pad)
        shape = host(y).shape[1:3]
        shapes[(size, width, pad)] = shape
        rows.append((f"n={size}, f={width}, p={pad}", fmt(shape), padded.subs({n: size, f: width, p: pad})))
    ex.table("toolkit: conv2d_forward shapes against the formula", ["", "output", "n + 2p − f + 1"], rows)
    ex.claim("convolution.valid-8-by-3", shapes[(8, 3, 0)], label="8 × 8 image, 3 × 3 filter")
    ex.claim("convolution.padded-8-by-3", shapes[(8, 3, 1)], label="the same with one ring of padding")
    y, _ = conv2d_forward(tensor(np.zeros((1, 32, 32, 3))), tensor(np.zeros((3, 3, 3, 12))), padding="same")
    ex.claim("convolution.volume", host(y).shape[1:], label="32 × 32 × 3 through twelve 3 × 3 filters, 'same'")


def run(ex: Example) -> None:
    _sliding(ex)
    _sizes(ex)
