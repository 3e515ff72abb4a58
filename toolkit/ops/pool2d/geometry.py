"""Window arithmetic of 2-D pooling: padding, output size, and how many real cells each window holds.

Pure Python/NumPy on small integers, shared by reference.py, cpu.py and the validation in __init__.py.
(conv2d needs the same arithmetic; the two could share one module once both are finished.)

Conventions, per spatial axis of size ``n`` with window ``k``, stride ``s`` and padding ``(before, after)``:

* out = (n + before + after - k) // s + 1  (windows that would run past the padded end are dropped);
* window ``o`` covers padded rows [o*s, o*s + k), i.e. input rows [o*s - before, o*s - before + k);
* "valid" means no padding;
* "same" is Keras/TensorFlow's: out = ceil(n / s), total padding max((out - 1)*s + k - n, 0), split
  with the extra cell at the END (bottom/right): before = total // 2, after = total - before.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np

Padding = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))


def _non_negative(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be a non-negative integer; got {value!r} ({type(value).__name__})")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative integer; got {value}")
    return int(value)


def same_padding_1d(n: int, k: int, s: int) -> tuple[int, int]:
    """Keras 'same' padding of one axis: output ceil(n / s), the odd extra cell after (bottom/right)."""
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def resolve_padding(padding: Any, spatial: tuple[int, int], pool: tuple[int, int],
                    stride: tuple[int, int]) -> Padding:
    """Any accepted padding spelling as ((top, bottom), (left, right)).

    Accepted: "valid", "same", an int p (all four sides), a pair (ph, pw) (top = bottom = ph,
    left = right = pw), or ((top, bottom), (left, right)).
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding == "same":
            return (same_padding_1d(spatial[0], pool[0], stride[0]),
                    same_padding_1d(spatial[1], pool[1], stride[1]))
        raise ValueError(f"padding must be 'valid', 'same', an int, a pair or ((top, bottom), (left, right)); "
                         f"got {padding!r}")
    if isinstance(padding, (tuple, list)):
        if len(padding) != 2:
            raise ValueError(f"padding must be an int, a pair (rows, cols) or ((top, bottom), (left, right)); "
                             f"got {padding!r}")
        sides = []
        for axis_name, item in zip(("rows", "cols"), padding):
            if isinstance(item, (tuple, list)):
                if len(item) != 2:
                    raise ValueError(f"padding {axis_name} must be an int or a pair (before, after); got {item!r}")
                sides.append((_non_negative(f"padding {axis_name}[0]", item[0]),
                              _non_negative(f"padding {axis_name}[1]", item[1])))
            else:
                p = _non_negative(f"padding {axis_name}", item)
                sides.append((p, p))
        return sides[0], sides[1]
    p = _non_negative("padding", padding)
    return (p, p), (p, p)


def output_size(n: int, k: int, s: int, before: int, after: int) -> int:
    """Number of windows along one axis (the padded size must be >= k; see check_windows)."""
    return (n + before + after - k) // s + 1


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


def window_bounds(o: int, s: int, k: int, before: int, n: int) -> tuple[int, int]:
    """Input rows [start, stop) of window ``o`` clipped to the real input (padding excluded)."""
    start = o * s - before
    return max(start, 0), min(start + k, n)


def real_cell_counts(spatial: tuple[int, int], out: tuple[int, int], pool: tuple[int, int],
                     stride: tuple[int, int], padding: Padding, dtype) -> np.ndarray:
    """(OH, OW) number of real (non-padded) cells in each window, in ``dtype``: the average's divisor."""
    def lengths(axis: int) -> list[int]:
        spans = (window_bounds(o, stride[axis], pool[axis], padding[axis][0], spatial[axis]) for o in range(out[axis]))
        return [stop - start for start, stop in spans]

    return np.outer(lengths(0), lengths(1)).astype(dtype)
