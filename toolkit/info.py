"""What `python -m toolkit info` prints: versions, threading, the backend and the GPU's availability."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

from . import backend, blas


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cupy_version() -> str:
    for dist in ("cupy-cuda13x", "cupy-cuda12x", "cupy"):
        v = _version(dist)
        if v != "not installed":
            return f"{v} ({dist})"
    return "not installed"


def nvrtc_status() -> tuple[bool, str]:
    """NVRTC compiles our kernels without a GPU (CI uses it to check every .cu)."""
    try:
        from cupy_backends.cuda.libs import nvrtc

        major, minor = nvrtc.getVersion()
        return True, f"NVRTC {major}.{minor}"
    except Exception as exc:  # missing wheel or library
        return False, f"{type(exc).__name__}: {exc}"


def numba_threading() -> tuple[str, int]:
    import numba
    from numba import njit, prange

    @njit(parallel=True)
    def touch(n):  # the threading layer is chosen at the first parallel launch
        s = 0
        for i in prange(n):
            s += i
        return s

    touch(4)
    return numba.threading_layer(), numba.get_num_threads()


def collect() -> dict[str, str]:
    layer, threads = numba_threading()
    gpu_ok, gpu_reason = backend.gpu_status()
    nvrtc_ok, nvrtc_reason = nvrtc_status()
    return {
        "toolkit": _version("nn-toolkit"),
        "Python": f"{platform.python_version()} ({sys.executable})",
        "NumPy": _version("numpy"),
        "BLAS (toolkit.blas.gemm)": blas.source(),
        "Numba": f"{_version('numba')} (threading layer {layer}, {threads} threads)",
        "SciPy": _version("scipy"),
        "SymPy": _version("sympy"),
        "rich": _version("rich"),
        "CuPy": _cupy_version(),
        "backend": f"{backend.current()} (asked for {backend.requested()!r}; set with toolkit.backend.use or {backend.ENV_VAR})",
        "GPU": ("available: " if gpu_ok else "not available: ") + gpu_reason,
        "NVRTC": ("available: " if nvrtc_ok else "not available: ") + nvrtc_reason,
    }


def render() -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="nn-toolkit", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, val in collect().items():
        table.add_row(key, val)
    Console().print(table)
