"""Input checks shared by every operation, run before any kernel.

Numba and CUDA kernels do no bounds checks, so every public function validates its arguments here
first. Each error names the argument, what was expected and what was received.

Conventions (documented in the README):
* Arrays must be NumPy or CuPy arrays of float32 or float64, non-empty; all float inputs of one call
  share a dtype (no silent up/down-casting).
* Non-contiguous or read-only *inputs* are accepted: they are copied to a fresh C-contiguous array
  (our kernels index flat memory). Arrays an operation writes *in place* (optimizer parameters and
  state) must be C-contiguous and writeable, else a ValueError: a copy would silently drop the update.
* Array types: NumPy arrays, NumPy scalars and CuPy arrays. Subclasses of numpy.ndarray (np.matrix,
  np.memmap, ...) are taken as the plain ndarray they hold (np.asarray): np.matrix's 2-D-only shapes
  and matrix-product ``*`` must not leak into the kernels. Masked arrays (numpy.ma) are refused with a
  TypeError: the kernels would read the hidden values under the mask and give silently wrong numbers,
  so the caller decides what a masked entry is (``a.filled(0.0)``, or ``a.data`` to keep them).
  Other array-likes (lists, pandas, PyTorch tensors) are refused: convert them with backend.asarray.
* Integers have one documented upper bound per kind, checked in Python before any NumPy, Numba or CUDA
  code sees them (a larger value would overflow there, or wrap silently):
  GEOMETRY_LIMIT = 2**31 - 1 for strides, padding and pooling windows (the CUDA kernels' 32-bit int;
  the same bound on the CPU, so a call is valid or not whatever the device), SIZE_LIMIT = 2**63 - 1
  for sizes and counts (dimensions, units: NumPy's and Numba's int64), [0, 2**64) for seeds, and
  [-ndim, ndim) for axes. GPU inputs must also keep every size a CUDA kernel takes as an int (image
  sides, channel counts, per-image pixel counts) within GEOMETRY_LIMIT: ``kernel_ints``.
* Memory: before allocating anything, each forward computes with Python ints the bytes of its outputs
  and large temporaries (``fits``) and refuses with an ``AllocationError`` (a ValueError and a
  MemoryError) naming the argument responsible and the bytes needed when they exceed ``memory_limit``:
  the machine's physical memory (or its cgroup limit, when lower) for NumPy inputs, the device's total
  memory for CuPy inputs. A call under the limit may still fail if other processes hold the memory;
  one over it never could succeed (and would die from inside a kernel, or swap for hours).
"""

from __future__ import annotations

import functools
import math
import os
from numbers import Integral, Real
from typing import Any, Sequence

import numpy as np

from . import backend

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

GEOMETRY_LIMIT = 2**31 - 1  # strides, padding, pooling windows; sizes CUDA kernels take as int
SIZE_LIMIT = 2**63 - 1  # sizes and counts: NumPy's and Numba's int64
_LIMIT_REASONS = {
    GEOMETRY_LIMIT: "2**31 - 1, the 32-bit int the CUDA kernels index with",
    SIZE_LIMIT: "2**63 - 1, the int64 NumPy and Numba index with",
}


class AllocationError(ValueError, MemoryError):
    """A call whose outputs or temporaries cannot fit in memory, refused before anything is allocated.

    Both a ValueError (an argument is too large, and the message names it) and a MemoryError (what the
    allocation would have raised), so ``except ValueError`` and ``except MemoryError`` both catch it."""


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
    An ndarray subclass (np.matrix, ...) comes back as a plain ndarray; a masked array is refused.
    """
    a = plain(name, a)
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
    return contiguous(name, a)


def plain(name: str, a: Any) -> Any:
    """``a`` as a plain NumPy or CuPy array: ndarray subclasses unwrapped, masked arrays and others refused."""
    if isinstance(a, np.ma.MaskedArray):  # before ndarray: it is one, and np.asarray would drop the mask
        raise TypeError(
            f"{name} must be a plain NumPy or CuPy array; got a masked array (numpy.ma) of shape {tuple(a.shape)}, "
            f"whose mask the kernels would ignore (they read the hidden values). Fill the masked entries "
            f"first, e.g. {name}.filled(0.0), or pass {name}.data to use the hidden values as they are"
        )
    if isinstance(a, (np.ndarray, np.generic)):
        return np.asarray(a)  # np.matrix & co: no subclass semantics (2-D reshapes, * as product) in kernels
    if backend.is_gpu_array(a) and hasattr(a, "dtype") and hasattr(a, "shape") and hasattr(a, "flags"):
        return a
    raise TypeError(
        f"{name} must be a NumPy or CuPy array; got {_describe(a)} (convert it with toolkit.backend.asarray)"
    )


def contiguous(name: str, a: Any) -> Any:
    """``a`` itself when C-contiguous, else a C-contiguous copy, after checking that the copy fits
    (a broadcast view of a few bytes can stand for terabytes)."""
    if a.flags.c_contiguous:
        return a
    fits(a, [(f"{name} (a strided or broadcast view of shape {tuple(a.shape)})",
              "its C-contiguous copy (the kernels index flat memory)", a.shape, a.dtype)])
    return backend.array_module(a).ascontiguousarray(a)


# --------------------------------------------------------------------------- memory and kernel limits
def _human(nbytes: int) -> str:
    """1.6e+19 -> "16 EB" (decimal units, as memory is sold)."""
    value, unit = float(nbytes), "bytes"
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"):
        if value < 1000 or unit == "YB":
            break
        value /= 1000
    return f"{value:.3g} {unit}" if unit != "bytes" else f"{int(nbytes)} bytes"


def _cgroup_limit() -> int | None:
    """The memory limit of this process's cgroup (v2, then v1), None when there is none or it is unreadable."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < SIZE_LIMIT // 2:  # "max", or v1's "unlimited" near 2**63
            return int(text)
    return None


@functools.lru_cache(maxsize=None)
def _host_memory() -> tuple[int, str]:
    """(bytes, description) of the host: physical memory, or the cgroup limit when lower."""
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): only absurd sizes are refused
        physical = None
    cgroup = _cgroup_limit()
    if cgroup is not None and (physical is None or cgroup < physical):
        return cgroup, f"this process's cgroup is limited to {_human(cgroup)} of memory"
    if physical is None or physical <= 0:
        return SIZE_LIMIT, f"NumPy cannot index more than {_human(SIZE_LIMIT)}"
    return physical, f"this machine has {_human(physical)} of memory"


@functools.lru_cache(maxsize=None)
def _device_memory(device_id: int) -> tuple[int, str]:
    """(bytes, description) of CUDA device ``device_id``: its total memory (never changes while we run)."""
    import cupy

    total = int(cupy.cuda.Device(device_id).mem_info[1])
    return total, f"GPU {device_id} has {_human(total)} of memory"


def memory_limit(where: Any) -> tuple[int, str]:
    """(bytes, description) that no allocation on the device of ``where`` can exceed: ``where`` is an
    array (NumPy: the host; CuPy: its GPU) or a device name, "cpu" or "gpu" (the current CUDA device)."""
    device = where if isinstance(where, str) else backend.device_of_array(where)
    if device != "gpu":
        return _host_memory()
    try:
        import cupy

        device_id = where.device.id if not isinstance(where, str) else cupy.cuda.Device().id
        return _device_memory(int(device_id))
    except Exception:  # a stand-in CuPy without device queries: refuse only what NumPy could not index
        return SIZE_LIMIT, f"CUDA cannot index more than {_human(SIZE_LIMIT)}"


def fits(where: Any, needs: Sequence[tuple[Any, str, Sequence[int], Any]]) -> None:
    """Refuse, before anything is allocated, a call whose new arrays cannot fit in memory.

    ``needs`` lists what the call would allocate, each as (argument, what, shape, dtype): ``argument``
    names what makes the array large, with its value ("padding ((5, 5), (5, 5))"), or is a function
    returning that text (formatted only for the error: this check runs on every call), ``what`` names
    the array ("the padded input (N, H+top+bottom, W+left+right, Cin)"). Sizes are Python ints (no
    overflow). When their sum exceeds ``memory_limit(where)``, an AllocationError names the first need
    that alone exceeds it (callers list the most telling first), else the largest, with the bytes needed.
    """
    sizes = [math.prod(map(int, shape)) * np.dtype(dtype).itemsize for _, _, shape, dtype in needs]
    total = sum(sizes)
    limit, description = memory_limit(where)
    if total <= limit:
        return
    over = [i for i, nbytes in enumerate(sizes) if nbytes > limit]
    i = over[0] if over else max(range(len(sizes)), key=sizes.__getitem__)
    argument, what, shape, _ = needs[i]
    text = argument() if callable(argument) else argument
    rest = "" if over else f", {total:.3g} bytes with this call's other new arrays"
    raise AllocationError(f"{text}: {what} = {tuple(map(int, shape))} would need {sizes[i]:.3g} bytes "
                          f"({_human(sizes[i])}{rest}); {description}")


def kernel_ints(like: Any, values: Sequence[tuple[str, int]]) -> None:
    """For CuPy inputs: each (name, value) is a size a CUDA kernel takes as a 32-bit int, so it must be at
    most GEOMETRY_LIMIT; a ValueError before any launch, instead of an index that wraps on the GPU."""
    if not backend.is_gpu_array(like):
        return
    for name, value in values:
        if int(value) > GEOMETRY_LIMIT:
            raise ValueError(f"{name} = {int(value)} does not fit the 32-bit int the CUDA kernels index with "
                             f"(at most {GEOMETRY_LIMIT}); use the CPU (NumPy inputs), whose kernels use int64")


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


def _bounded_int(name: str, value: Any, kind: str, low: int, high: int) -> int:
    """``value`` as a Python int in [low, high]; converted first, so NumPy's uint64 and ints beyond int64
    are compared exactly (no wraparound, no OverflowError from a mixed-type comparison)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be a {kind} integer; got {value!r} ({type(value).__name__})")
    v = int(value)
    if v < low:
        raise ValueError(f"{name} must be a {kind} integer; got {v}")
    if v > high:
        reason = _LIMIT_REASONS.get(high, str(high))
        raise ValueError(f"{name} must be a {kind} integer at most {high} ({reason}); got {v}")
    return v


def positive_int(name: str, value: Any, *, high: int = SIZE_LIMIT) -> int:
    return _bounded_int(name, value, "positive", 1, high)


def non_negative_int(name: str, value: Any, *, high: int = SIZE_LIMIT) -> int:
    return _bounded_int(name, value, "non-negative", 0, high)


def pair(name: str, value: Any, *, check=positive_int, high: int = GEOMETRY_LIMIT) -> tuple[int, int]:
    """An int or a pair of ints (rows, columns), e.g. stride=2 or stride=(2, 1); at most ``high``
    (GEOMETRY_LIMIT: pairs are strides and windows)."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints; got {value!r}")
        return check(f"{name}[0]", value[0], high=high), check(f"{name}[1]", value[1], high=high)
    v = check(name, value, high=high)
    return v, v


def real(name: str, value: Any, *, low: float | None = None, high: float | None = None,
         low_open: bool = False, high_open: bool = False) -> float:
    """A finite real scalar within [low, high] (ends excluded when *_open)."""
    if isinstance(value, bool) or not isinstance(value, (Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number; got {value!r} ({type(value).__name__})")
    try:
        v = float(value)
    except OverflowError:  # an int beyond float's range, e.g. 10**400
        raise ValueError(f"{name} must be finite; got an integer of {int(value).bit_length()} bits") from None
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite; got {v}")
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}; got {v}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}; got {v}")
    return v


def axis(name: str, value: Any, ndim: int) -> int:
    """A normalised (non-negative) axis index."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer; got {value!r}")
    v = int(value)  # first: -ndim <= np.uint64(...) would raise OverflowError inside NumPy
    if not -ndim <= v < ndim:
        raise ValueError(f"{name} must be in [{-ndim}, {ndim - 1}] for an array of {ndim} dimensions; got {v}")
    return v % ndim


def choice(name: str, value: Any, options: Sequence[str]) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}; got {value!r}")
    return value
