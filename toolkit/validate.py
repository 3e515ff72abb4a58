"""Input checks shared by every operation, run before any kernel.

Numba and CUDA kernels do no bounds checks, so every public function validates its arguments here
first. Each error names the argument, what was expected and what was received.

Conventions (documented in the README):
* Arrays must be NumPy or CuPy arrays of float32 or float64, non-empty; all float inputs of one call
  share a dtype (no silent up/down-casting).
* Non-contiguous or read-only *inputs* are accepted: they are copied to a fresh C-contiguous array
  (our kernels index flat memory). Arrays an operation writes *in place* (optimizer parameters and
  state) must be C-contiguous and writeable, else a ValueError: a copy would silently drop the update.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any, Sequence

import numpy as np

from . import backend

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _describe(a: Any) -> str:
    if hasattr(a, "dtype") and hasattr(a, "shape"):
        return f"{type(a).__module__.split('.')[0]} array of shape {tuple(a.shape)} and dtype {a.dtype}"
    return f"{type(a).__name__}"


def array(
    name: str,
    a: Any,
    *,
    ndim: int | Sequence[int] | None = None,
    shape: Sequence[int | None] | None = None,
    dtype: Any = None,
    allow_empty: bool = False,
) -> Any:
    """Check one float array and return it C-contiguous (a copy only when it was not).

    ``shape`` may hold None for "any size"; ``dtype`` pins the dtype (e.g. to match another input).
    """
    if not (hasattr(a, "dtype") and hasattr(a, "shape") and hasattr(a, "ndim")):
        raise TypeError(
            f"{name} must be a NumPy or CuPy array; got {_describe(a)} "
            f"(convert it with toolkit.backend.asarray)"
        )
    if a.dtype not in FLOAT_DTYPES:
        kind = "complex" if a.dtype.kind == "c" else "integer" if a.dtype.kind in "iub" else a.dtype.kind
        raise TypeError(f"{name} must have dtype float32 or float64; got {a.dtype} ({kind})")
    if dtype is not None and a.dtype != np.dtype(dtype):
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)} like the other inputs; got {a.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if a.ndim not in allowed:
            want = " or ".join(str(n) for n in allowed)
            raise ValueError(f"{name} must have {want} dimensions; got shape {tuple(a.shape)} ({a.ndim} dimensions)")
    if shape is not None:
        want = tuple(shape)
        if a.ndim != len(want) or any(w is not None and w != s for w, s in zip(want, a.shape)):
            shown = "(" + ", ".join("any" if w is None else str(w) for w in want) + ("," if len(want) == 1 else "") + ")"
            raise ValueError(f"{name} must have shape {shown}; got {tuple(a.shape)}")
    if not allow_empty and a.size == 0:
        raise ValueError(f"{name} must not be empty; got shape {tuple(a.shape)}")
    if not a.flags.c_contiguous:
        a = backend.array_module(a).ascontiguousarray(a)
    return a


def writable(name: str, a: Any) -> None:
    """For arrays updated in place: they must be C-contiguous and writeable."""
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} is updated in place, so it must be C-contiguous; got a strided view of shape {tuple(a.shape)}")
    if hasattr(a.flags, "writeable") and not a.flags.writeable:
        raise ValueError(f"{name} is updated in place, so it must be writeable; got a read-only array")


def same_shape(name: str, a: Any, like_name: str, like: Any) -> None:
    if tuple(a.shape) != tuple(like.shape):
        raise ValueError(f"{name} must have the shape of {like_name} {tuple(like.shape)}; got {tuple(a.shape)}")


def flag(name: str, value: Any) -> bool:
    """A Python or NumPy bool, as bool; 0/1, strings and None are refused (a typo must not mean False)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r} ({type(value).__name__})")
    return bool(value)


def positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be a positive integer; got {value!r} ({type(value).__name__})")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer; got {value}")
    return int(value)


def non_negative_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be a non-negative integer; got {value!r} ({type(value).__name__})")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative integer; got {value}")
    return int(value)


def pair(name: str, value: Any, *, check=positive_int) -> tuple[int, int]:
    """An int or a pair of ints (rows, columns), e.g. stride=2 or stride=(2, 1)."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints; got {value!r}")
        return check(f"{name}[0]", value[0]), check(f"{name}[1]", value[1])
    v = check(name, value)
    return v, v


def real(name: str, value: Any, *, low: float | None = None, high: float | None = None,
         low_open: bool = False, high_open: bool = False) -> float:
    """A finite real scalar within [low, high] (ends excluded when *_open)."""
    if isinstance(value, bool) or not isinstance(value, (Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number; got {value!r} ({type(value).__name__})")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite; got {v}")
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}; got {v}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}; got {v}")
    return v


def axis(name: str, value: Any, ndim: int) -> int:
    """A normalised (non-negative) axis index."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer; got {value!r}")
    if not -ndim <= value < ndim:
        raise ValueError(f"{name} must be in [{-ndim}, {ndim - 1}] for an array of {ndim} dimensions; got {value}")
    return int(value) % ndim


def choice(name: str, value: Any, options: Sequence[str]) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}; got {value!r}")
    return value
