"""The one switch between the CPU (NumPy arrays, Numba kernels) and the GPU (CuPy arrays, our CUDA kernels).

Two rules, and this module is the only place that knows about devices:

* ``use()`` decides where *new* arrays are made (``asarray``, ``xp()``).
* Operations run where their *inputs* live: NumPy arrays go to ``toolkit/ops/<op>/cpu.py``,
  CuPy arrays to ``toolkit/ops/<op>/gpu.py``; inputs on both devices raise ``DeviceMismatchError``.

    >>> from toolkit import backend
    >>> backend.use("cpu")            # or "gpu", or "auto" (GPU when usable, else CPU)
    >>> with backend.use("gpu"):      # also a context manager: restores the previous choice
    ...     ...

The environment variable ``TOOLKIT_BACKEND`` sets the choice at import time (default "cpu").
"""

from __future__ import annotations

import ctypes.util
import functools
import importlib
import os
import sys
from types import ModuleType
from typing import Any

import numpy as np

ENV_VAR = "TOOLKIT_BACKEND"
CHOICES = ("cpu", "gpu", "auto")


class BackendError(RuntimeError):
    """The GPU was asked for where it cannot work (the message says why)."""


class DeviceMismatchError(ValueError):
    """An operation received arrays that live on different devices."""


# --------------------------------------------------------------------------- GPU availability
@functools.lru_cache(maxsize=None)
def gpu_status() -> tuple[bool, str]:
    """(usable, reason). The reason names the device when usable, else what is missing."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install raising at import
        return False, f"CuPy is not installed ({type(exc).__name__}: {exc}); install it with: pip install -e '.[gpu]'"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        text = str(exc)
        if ctypes.util.find_library("cuda") is None and not os.path.exists("/usr/lib/x86_64-linux-gnu/libcuda.so.1"):
            return False, f"no NVIDIA driver on this machine (libcuda not found; CuPy said: {text})"
        if "InsufficientDriver" in text:
            return False, f"the NVIDIA driver is too old for CuPy's CUDA runtime ({text})"
        if "NoDevice" in text:
            return False, f"no CUDA device is visible ({text})"
        return False, f"the CUDA runtime failed: {text}"
    if count == 0:
        return False, "no CUDA device is visible"
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return True, f"{name} (compute capability {props['major']}.{props['minor']}, {count} device(s))"


def gpu_available() -> bool:
    return gpu_status()[0]


# --------------------------------------------------------------------------- the choice
def _resolve(choice: str) -> str:
    if choice not in CHOICES:
        raise ValueError(f"backend must be one of {CHOICES}; got {choice!r}")
    if choice == "cpu":
        return "cpu"
    usable, reason = gpu_status()
    if choice == "gpu":
        if not usable:
            raise BackendError(f"the GPU backend was asked for but cannot work: {reason}")
        return "gpu"
    if not usable:  # "auto": fall back, and say so once per process
        _say_fallback_once(reason)
        return "cpu"
    return "gpu"


@functools.lru_cache(maxsize=None)
def _say_fallback_once(reason: str) -> None:
    print(f"toolkit: backend 'auto' uses the CPU because the GPU is not usable: {reason}", file=sys.stderr)


_requested: str = "cpu"
_current: str = "cpu"


class use:
    """Select the backend now; as a context manager, restore the previous selection on exit."""

    def __init__(self, choice: str):
        global _requested, _current
        resolved = _resolve(choice)
        self._previous = (_requested, _current)
        _requested, _current = choice, resolved

    def __enter__(self) -> "use":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        global _requested, _current
        _requested, _current = self._previous

    def __repr__(self) -> str:
        return f"<toolkit backend {_current!r} (asked for {_requested!r})>"


def current() -> str:
    """The backend in use: "cpu" or "gpu"."""
    return _current


def requested() -> str:
    """What was asked for: "cpu", "gpu" or "auto"."""
    return _requested


def _init_from_environment() -> None:
    choice = os.environ.get(ENV_VAR, "").strip().lower()
    if not choice:
        return
    if choice not in CHOICES:
        raise ValueError(f"environment variable {ENV_VAR} must be one of {CHOICES}; got {choice!r}")
    use(choice)


# --------------------------------------------------------------------------- arrays
def _cupy() -> ModuleType:
    import cupy

    return cupy


def is_gpu_array(a: Any) -> bool:
    # Checked by module name so that the CPU path never imports CuPy.
    return type(a).__module__.startswith("cupy")


def device_of_array(a: Any) -> str:
    return "gpu" if is_gpu_array(a) else "cpu"


def xp(device: str | None = None) -> ModuleType:
    """The array module of a device (default: the backend in use): numpy or cupy."""
    return _cupy() if (device or _current) == "gpu" else np


def array_module(a: Any) -> ModuleType:
    """numpy or cupy, whichever owns ``a``."""
    return _cupy() if is_gpu_array(a) else np


def to_numpy(a: Any) -> np.ndarray:
    """A NumPy array with the values of ``a``, copied from the GPU if it lives there."""
    return a.get() if is_gpu_array(a) else np.asarray(a)


def to_device(a: Any, device: str) -> Any:
    """``a`` on ``device`` ("cpu" or "gpu"); no copy when it is already there."""
    if device == "cpu":
        return to_numpy(a)
    if device == "gpu":
        _resolve("gpu")  # raises with the reason when the GPU cannot work
        return _cupy().asarray(a)
    raise ValueError(f"device must be 'cpu' or 'gpu'; got {device!r}")


def asarray(a: Any, dtype: Any = None) -> Any:
    """``a`` as an array on the backend in use (float32 by default for non-array input)."""
    if dtype is None and not hasattr(a, "dtype"):
        dtype = np.float32
    out = to_device(a, _current)
    return out if dtype is None else out.astype(dtype, copy=False)


# --------------------------------------------------------------------------- dispatch
def device_of(**arrays: Any) -> str:
    """The one device all named arrays live on; None entries are skipped. Mixed devices raise."""
    on_gpu = [name for name, a in arrays.items() if a is not None and is_gpu_array(a)]
    on_cpu = [name for name, a in arrays.items() if a is not None and not is_gpu_array(a)]
    if on_gpu and on_cpu:
        raise DeviceMismatchError(
            f"inputs live on two devices: {', '.join(on_cpu)} on the CPU (NumPy) and "
            f"{', '.join(on_gpu)} on the GPU (CuPy); move them with toolkit.backend.to_device(a, 'cpu'|'gpu')"
        )
    return "gpu" if on_gpu else "cpu"


_implementations: dict[tuple[str, str], ModuleType] = {}


def implementation(op: str, device: str) -> ModuleType:
    """The module that implements ``op`` on ``device``: toolkit.ops.<op>.cpu or .gpu."""
    if device == "gpu":
        _resolve("gpu")
    module = _implementations.get((op, device))
    if module is None:  # imported once: every op call goes through here (a model step makes dozens)
        module = _implementations[(op, device)] = importlib.import_module(f"toolkit.ops.{op}.{device}")
    return module


def dispatch(op: str, **arrays: Any) -> ModuleType:
    """The implementation module of ``op`` for the device its input arrays live on."""
    return implementation(op, device_of(**arrays))


_init_from_environment()
