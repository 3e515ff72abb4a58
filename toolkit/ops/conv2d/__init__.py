"""2-D convolution (cross-correlation, channels last): validate, then run where the inputs live.

    y, cache = conv2d_forward(x, w, b=None, stride=1, padding="valid")
    dx, dw, db = conv2d_backward(dy, cache)          # db is None when b was None
    _, dw, db = conv2d_backward(dy, cache, need_dx=False)   # dx None, not computed (a model's first layer)

x (N, H, W, Cin), w (KH, KW, Cin, Cout), b (Cout,) or None -> y (N, OH, OW, Cout).
stride: int or (sh, sw). padding: "valid", "same" (Keras: output ceil(H / sh), extra pad bottom/right),
an int, (ph, pw) or ((top, bottom), (left, right)). OH = floor((H + top + bottom - KH) / sh) + 1.
Conventions a learner could trip on: the filter is *not* flipped (cross-correlation, as Keras and
PyTorch compute it); padding adds zeros; a window that would run past the padded border is dropped
(the floor); the kernel layout is Keras' (KH, KW, Cin, Cout), not PyTorch's (Cout, Cin, KH, KW).
See reference.py for the formulas, geometry.py for the size arithmetic, cpu.py for the im2col kernels.
"""

from __future__ import annotations

from typing import Any

from ... import backend, validate
from .. import cache_checks
from . import geometry
from .reference import Conv2DCache

__all__ = ["Conv2DCache", "conv2d_forward", "conv2d_backward", "geometry"]


def conv2d_forward(x: Any, w: Any, b: Any = None, stride: Any = 1,
                   padding: Any = "valid") -> tuple[Any, Conv2DCache]:
    """y = x (*) w + b over every window; returns (y, cache)."""
    x = validate.array("x", x, ndim=4)
    w = validate.array("w", w, ndim=4, dtype=x.dtype)
    if w.shape[2] != x.shape[3]:
        raise ValueError(
            f"w must have {x.shape[3]} input channels to match x; got {w.shape[2]} "
            f"(w has shape {tuple(w.shape)} = (KH, KW, Cin, Cout), x has shape {tuple(x.shape)} = (N, H, W, Cin))"
        )
    if b is not None:
        b = validate.array("b", b, shape=(w.shape[3],), dtype=x.dtype)
    stride = validate.pair("stride", stride)
    input_hw, kernel_hw = (x.shape[1], x.shape[2]), (w.shape[0], w.shape[1])
    pads = geometry.resolve_padding(padding, input_hw, kernel_hw, stride)
    out_hw = geometry.output_shape(input_hw, kernel_hw, stride, pads, kernel_name="kernel (w)")
    geometry.check_limits(x, w, stride, pads, out_hw)
    return backend.dispatch("conv2d", x=x, w=w, b=b).forward(x, w, b, stride, pads)


def conv2d_backward(dy: Any, cache: Conv2DCache, need_dx: bool = True) -> tuple[Any, Any, Any]:
    """(dx, dw, db) = gradients of the loss given dy = dL/dy and the forward cache (db None without bias).

    need_dx=False: dx is None and its work (the dy w^T product and col2im, or the dx kernel) is skipped,
    for a layer whose input is the data (nothing below it needs dx); dw and db are unchanged, bit for bit.
    """
    need_dx = validate.flag("need_dx", need_dx)
    cache = cache_checks.conv2d(cache)  # before any kernel: its fields agree (shapes, dtypes, device)
    dy = validate.array("dy", dy, shape=cache.y_shape, dtype=cache.x.dtype)
    return backend.dispatch("conv2d", dy=dy, x=cache.x).backward(dy, cache, need_dx=need_dx)
