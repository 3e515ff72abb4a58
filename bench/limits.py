"""The machine's limits the achieved rates are held against, measured in the same run:

* copy bandwidth: a copy of a large float32 array (bytes read + bytes written per second), as numpy.copyto
  on the CPU (2^25 values, 128 MiB: well past the last-level cache) and a device-to-device CuPy copy on
  the GPU (2^28 values, 1 GiB);
* matrix-product FLOP/s: a float32 square matrix product through BLAS (NumPy, n = 2048) on the CPU and
  cuBLAS (CuPy, n = 4096, TF32 off unless CUPY_TF32=1 is set, which is recorded) on the GPU.
"""

from __future__ import annotations

import os

import numpy as np

from .timing import time_cpu, time_gpu


def cpu_limits(budget_s: float) -> dict:
    n = 1 << 25
    src, dst = np.ones(n, np.float32), np.empty(n, np.float32)
    copy = time_cpu(lambda: np.copyto(dst, src), budget_s=budget_s).median_s
    m = 2048
    a, b = np.ones((m, m), np.float32), np.ones((m, m), np.float32)
    gemm = time_cpu(lambda: a @ b, budget_s=budget_s).median_s
    return {"copy_GBps": 2 * n * 4 / copy / 1e9, "copy_what": "numpy.copyto float32 2^25",
            "gemm_GFLOPs": 2 * m**3 / gemm / 1e9, "gemm_what": f"numpy float32 matmul {m}^3"}


def gpu_limits(budget_s: float, copy_values: int = 1 << 28, gemm_n: int = 4096) -> dict:
    """The GPU's limits (the sizes are parameters so that the tests can run this on a fake CuPy)."""
    import cupy

    n = copy_values
    src, dst = cupy.ones(n, cupy.float32), cupy.empty(n, cupy.float32)
    copy = time_gpu(lambda: cupy.copyto(dst, src), budget_s=budget_s).median_s
    del src, dst
    m = gemm_n
    a, b = cupy.ones((m, m), cupy.float32), cupy.ones((m, m), cupy.float32)
    gemm = time_gpu(lambda: a @ b, budget_s=budget_s).median_s
    tf32 = os.environ.get("CUPY_TF32", "0")
    return {"copy_GBps": 2 * n * 4 / copy / 1e9,
            "copy_what": f"cupy.copyto float32 {_power_of_two(n)} device to device",
            "gemm_GFLOPs": 2 * m**3 / gemm / 1e9, "gemm_what": f"cuBLAS float32 matmul {m}^3 (CUPY_TF32={tf32})"}


def _power_of_two(n: int) -> str:
    return f"2^{n.bit_length() - 1}" if n & (n - 1) == 0 else str(n)
