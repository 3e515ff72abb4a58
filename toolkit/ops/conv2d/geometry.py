"""Output-size and padding arithmetic of sliding windows (convolution and pooling share it).

Pure Python on ints: no arrays, so it runs before any kernel and on any device.

The notes' formula: an (n x n) image, padded with p rows/columns of zeros on every side and scanned by
an (f x f) filter with stride s, gives an output of side

    (n + 2p - f) / s + 1          e.g. n=8, f=3, p=0, s=1  ->  6  (the notes' "8x8 with 3x3 gives 6x6")

The division is a *floor*: a window that would stick out past the (padded) border is dropped, as in
Keras and PyTorch. With padding that differs per side (``before``/``after``) the formula is

    floor((n + before + after - f) / s) + 1

Padding modes (Keras names):

* ``"valid"``: no padding; the output shrinks to floor((n - f) / s) + 1.
* ``"same"``: pad so that the output has ceil(n / s) positions (n itself when s = 1). The total padding is
  max((ceil(n / s) - 1) * s + f - n, 0); when it is odd the extra row/column goes to the bottom/right
  (Keras/TensorFlow semantics; PyTorch's padding="same" puts it the same way).
* an int p: p on all four sides; a pair (ph, pw): ph top and bottom, pw left and right;
  ((top, bottom), (left, right)): each side explicitly.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

from ... import backend, validate

Pads = tuple[tuple[int, int], tuple[int, int]]
MODES = ("valid", "same")
ACCEPTED = "'valid', 'same', an int, (ph, pw) or ((top, bottom), (left, right))"


def output_size(size: int, kernel: int, stride: int = 1, pad_before: int = 0, pad_after: int = 0) -> int:
    """floor((size + pad_before + pad_after - kernel) / stride) + 1: positions of a window along one axis.

    The caller guarantees kernel <= size + pad_before + pad_after (``output_shape`` checks it).
    """
    return (size + pad_before + pad_after - kernel) // stride + 1


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of Keras' "same" mode along one axis: the extra pixel goes after."""
    out = -(-size // stride)  # ceil(size / stride) without floats
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _side_pair(name: str, value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair (before, after) of ints; got {value!r}")
        return _pad(f"{name}[0]", value[0]), _pad(f"{name}[1]", value[1])
    p = _pad(name, value)
    return p, p


def _pad(name: str, value: Any) -> int:
    return validate.non_negative_int(name, value, high=validate.GEOMETRY_LIMIT)


def resolve_padding(padding: Any, input_hw: tuple[int, int], kernel_hw: tuple[int, int],
                    stride_hw: tuple[int, int], name: str = "padding") -> Pads:
    """Any accepted ``padding`` as explicit ((top, bottom), (left, right)) ints.

    Accepted: "valid", "same" (any case, as Keras lowercases it), an int, (ph, pw), ((top, bottom), (left, right)).
    Invalid values raise TypeError/ValueError naming ``name``, what is accepted and what was given.
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode not in MODES:
            raise ValueError(f"{name} must be {ACCEPTED}; got {padding!r}")
        if mode == "valid":
            return (0, 0), (0, 0)
        return (same_padding(input_hw[0], kernel_hw[0], stride_hw[0]),
                same_padding(input_hw[1], kernel_hw[1], stride_hw[1]))
    if isinstance(padding, (tuple, list)):
        if len(padding) != 2:
            raise ValueError(f"{name} must be {ACCEPTED}; got {padding!r} (a sequence of {len(padding)})")
        return _side_pair(f"{name}[0]", padding[0]), _side_pair(f"{name}[1]", padding[1])
    if isinstance(padding, bool) or not isinstance(padding, Integral):
        raise TypeError(f"{name} must be {ACCEPTED}; got {padding!r} ({type(padding).__name__})")
    p = _pad(name, padding)
    return (p, p), (p, p)


def output_shape(input_hw: tuple[int, int], kernel_hw: tuple[int, int], stride_hw: tuple[int, int],
                 pads: Pads, kernel_name: str = "kernel") -> tuple[int, int]:
    """(OH, OW) of a window scan, after checking that the window fits in the padded input.

    A window larger than the padded input leaves no output position: a ValueError naming both sizes.
    """
    out = []
    for axis, n, k, s, (before, after) in zip(("height", "width"), input_hw, kernel_hw, stride_hw, pads):
        padded = n + before + after
        if k > padded:
            raise ValueError(
                f"{kernel_name} {axis} {k} is larger than the padded input {axis} {padded} "
                f"(input {n} + padding {before} + {after}); use a smaller {kernel_name} or more padding"
            )
        out.append(output_size(n, k, s, before, after))
    return out[0], out[1]


def padded_hw(input_hw: tuple[int, int], pads: Pads) -> tuple[int, int]:
    """(H + top + bottom, W + left + right)."""
    return input_hw[0] + pads[0][0] + pads[0][1], input_hw[1] + pads[1][0] + pads[1][1]


def check_limits(x: Any, w: Any, stride: tuple[int, int], pads: Pads, out_hw: tuple[int, int]) -> None:
    """Refuse, before any allocation or launch, a convolution whose arrays cannot fit in memory
    (validate.AllocationError naming the argument) or whose sizes overflow the CUDA kernels' ints.

    Counted: the output y; on the CPU also the padded input (the direct and shifted paths build it; the
    GPU's implicit GEMM reads the padding as zeros) and one image's im2col columns (the im2col path's
    smallest chunk). Not counted: x and w, which exist already.
    """
    n, h, wd, cin = x.shape
    kh, kw, _, cout = w.shape
    oh, ow = out_hw
    hp, wp = padded_hw((h, wd), pads)
    if backend.is_gpu_array(x):  # conv2d.cu's Geometry is all int, and oh*sh - top + kh spans the padded sides
        validate.kernel_ints(x, [("N", n), ("H + top + bottom", hp), ("W + left + right", wp), ("Cin", cin),
                                 ("Cout", cout), ("H*W", h * wd), ("OH*OW", oh * ow), ("KH*KW*Cin", kh * kw * cin),
                                 ("KH*KW*Cout", kh * kw * cout)])

    def shapes() -> str:
        return f"x {tuple(x.shape)}, w {tuple(w.shape)}, stride {tuple(stride)} and padding {pads}"

    needs = [(shapes, "the output y (N, OH, OW, Cout)", (n, oh, ow, cout), x.dtype)]
    if not backend.is_gpu_array(x):
        needs.append((shapes, "one image's im2col columns (OH*OW, KH*KW*Cin)", (oh * ow, kh * kw * cin), x.dtype))
        if hp != h or wp != wd:  # first: when it alone cannot fit, padding is the argument to blame
            needs.insert(0, (lambda: f"padding {pads}", "the padded input (N, H+top+bottom, W+left+right, Cin)",
                             (n, hp, wp, cin), x.dtype))
    validate.fits(x, needs)
