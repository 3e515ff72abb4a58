"""Window arithmetic of 2-D pooling: padding, output size, and how many real cells each window holds.

Pure Python/NumPy on small integers, shared by reference.py, cpu.py and the validation in __init__.py.
The padding spellings and the output-size formula are convolution's (toolkit/ops/conv2d/geometry.py,
imported here); this module adds what only pooling needs: every window must hold a real cell, and the
average divides by the number of real cells.

Conventions, per spatial axis of size ``n`` with window ``k``, stride ``s`` and padding ``(before, after)``:

* out = (n + before + after - k) // s + 1  (windows that would run past the padded end are dropped);
* window ``o`` covers padded rows [o*s, o*s + k), i.e. input rows [o*s - before, o*s - before + k);
* "valid" means no padding;
* "same" is Keras/TensorFlow's: out = ceil(n / s), total padding max((out - 1)*s + k - n, 0), split
  with the extra cell at the END (bottom/right): before = total // 2, after = total - before.
"""

from __future__ import annotations

import functools

from typing import Any

import numpy as np

from ... import backend, validate
from ..conv2d.geometry import Pads as Padding  # ((top, bottom), (left, right))
from ..conv2d.geometry import output_size, padded_hw, resolve_padding, same_padding

__all__ = ["Padding", "output_size", "resolve_padding", "same_padding", "output_hw", "check_windows",
           "check_limits", "window_bounds", "real_cell_counts"]


def output_hw(spatial: tuple[int, int], pool: tuple[int, int], stride: tuple[int, int],
              padding: Padding) -> tuple[int, int]:
    """(OH, OW): the output's spatial size."""
    return (output_size(spatial[0], pool[0], stride[0], *padding[0]),
            output_size(spatial[1], pool[1], stride[1], *padding[1]))


def check_windows(spatial: tuple[int, int], pool: tuple[int, int], padding: Padding) -> None:
    """Raise a ValueError naming pool_size/padding when some window would hold no real cell.

    Every window must fit in the padded input, and each padding side must be smaller than the
    window along that axis: then every window holds at least one real cell, so max is defined
    and the average never divides by zero. ("same" padding always satisfies both.)
    """
    padded = tuple(n + b + a for n, (b, a) in zip(spatial, padding))
    if pool[0] > padded[0] or pool[1] > padded[1]:
        raise ValueError(f"pool_size {pool} is larger than the padded input {padded} "
                         f"(input {spatial}, padding {padding})")
    for axis_name, k, (before, after) in zip(("rows", "cols"), pool, padding):
        if before >= k or after >= k:
            raise ValueError(f"padding {axis_name} must be smaller than pool_size ({k}) on each side so every "
                             f"window holds a real cell; got {(before, after)}")


def check_limits(x: Any, pool: tuple[int, int], stride: tuple[int, int], padding: Padding, mode: str) -> None:
    """Refuse, before any allocation or launch, a pooling whose arrays cannot fit in memory
    (validate.AllocationError naming the arguments) or whose sizes overflow the CUDA kernels' ints.

    Counted: the output y, max mode's int64 argmax of y's shape, and on the CPU the average's (OH, OW)
    divisors. The kernels never pad x in memory (padded cells are skipped), so padding costs only
    through the output size.
    """
    n, h, w, c = x.shape
    oh, ow = output_hw((h, w), pool, stride, padding)
    hp, wp = padded_hw((h, w), padding)
    # pool2d.cu takes every size as int, and o * stride - top runs up to the padded sides
    validate.kernel_ints(x, [("H + top + bottom", hp), ("W + left + right", wp), ("C", c)])

    def shapes() -> str:
        return f"x {tuple(x.shape)}, pool_size {tuple(pool)}, stride {tuple(stride)} and padding {padding}"

    needs = [(shapes, "the output y (N, OH, OW, C)", (n, oh, ow, c), x.dtype)]
    if mode == "max":
        needs.append((shapes, "the argmax (N, OH, OW, C) of the max pooling", (n, oh, ow, c), np.int64))
    elif mode == "avg" and not backend.is_gpu_array(x):
        needs.append((shapes, "the window sizes (OH, OW) the average divides by", (oh, ow), x.dtype))
    validate.fits(x, needs)


def window_bounds(o: int, s: int, k: int, before: int, n: int) -> tuple[int, int]:
    """Input rows [start, stop) of window ``o`` clipped to the real input (padding excluded)."""
    start = o * s - before
    return max(start, 0), min(start + k, n)


def real_cell_counts(spatial: tuple[int, int], out: tuple[int, int], pool: tuple[int, int],
                     stride: tuple[int, int], padding: Padding, dtype) -> np.ndarray:
    """(OH, OW) number of real (non-padded) cells in each window, in ``dtype``: the average's divisor."""
    rows, columns = _window_lengths(tuple(spatial), tuple(out), tuple(pool), tuple(stride),
                                    tuple(map(tuple, padding)))
    return np.outer(rows, columns).astype(dtype)


@functools.lru_cache(maxsize=256)
def _window_lengths(spatial, out, pool, stride, padding) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Remembered per geometry: a model calls its pooling layers with the same shapes every step, and
    these Python loops cost more than the pooling kernels of a small layer."""
    def lengths(axis: int) -> tuple[int, ...]:
        spans = (window_bounds(o, stride[axis], pool[axis], padding[axis][0], spatial[axis]) for o in range(out[axis]))
        return tuple(stop - start for start, stop in spans)

    return lengths(0), lengths(1)
