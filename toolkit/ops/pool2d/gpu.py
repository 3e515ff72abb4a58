"""2-D pooling as CUDA kernels (pool2d.cu) on CuPy arrays. Same signatures and cache as reference.py
and cpu.py: in max mode the cache holds argmax as an int64 (N, OH, OW, C) CuPy array of flat spatial
indices h*W + w, exactly as cpu.py stores it, so a GPU cache carries the same information.

``forward``/``backward`` are the public CuPy path; they call ``forward_on``/``backward_on`` with the
CuPy target. The host tests call the same functions with a host-harness target (NumPy arrays, the
kernels compiled for the CPU), so this launch code is exercised without a GPU.

Forward: one thread per output element; backward: one thread per input element gathering the windows
that contain it (no atomics: deterministic, also when windows overlap). See pool2d.cu.
"""

from __future__ import annotations

from typing import Any

from ...cuda import launch, modules
from ...cuda.launch import Target
from .geometry import Padding, output_hw
from .reference import Pool2DCache

OP = "pool2d"


def _target() -> Target:
    return modules.target(OP)


def _geometry(x_shape: tuple[int, ...], out: tuple[int, int], pool: tuple[int, int], stride: tuple[int, int],
              padding: Padding) -> tuple:
    """The kernels' shared int arguments after the element count: h_in, w_in, channels, out_h, out_w,
    pool_h, pool_w, stride_h, stride_w, top, left (bottom/right padding only shortens the output)."""
    _, h_in, w_in, channels = x_shape
    values = (h_in, w_in, channels, out[0], out[1], pool[0], pool[1], stride[0], stride[1],
              padding[0][0], padding[1][0])
    names = ("H", "W", "C", "OH", "OW", "pool_h", "pool_w", "stride_h", "stride_w", "top", "left")
    return tuple(launch.i32(v, name) for v, name in zip(values, names))


def forward_on(target: Target, x: Any, pool: tuple[int, int], stride: tuple[int, int], padding: Padding,
               mode: str) -> tuple[Any, Pool2DCache]:
    """forward, with the kernels and arrays of ``target`` (CuPy, or the host harness)."""
    xp = target.xp
    out = output_hw(x.shape[1:3], pool, stride, padding)
    y = xp.empty((x.shape[0], *out, x.shape[3]), dtype=x.dtype)
    geometry = _geometry(x.shape, out, pool, stride, padding)
    grid, block = launch.grid_1d(y.size, target)
    argmax = None
    if mode == "max":
        argmax = xp.empty(y.shape, dtype=xp.int64)
        target.kernel("max_pool_forward", x.dtype)(grid, block, (x, y, argmax, launch.i64(y.size), *geometry))
    else:
        target.kernel("sum_pool_forward", x.dtype)(
            grid, block, (x, y, launch.i64(y.size), *geometry, launch.i32(mode == "avg")))
    return y, Pool2DCache(mode, tuple(x.shape), x.dtype, pool, stride, padding, argmax)


def backward_on(target: Target, dy: Any, cache: Pool2DCache) -> Any:
    """backward, with the kernels and arrays of ``target``."""
    mode, x_shape, dtype, pool, stride, padding, argmax = cache
    dx = target.xp.empty(x_shape, dtype=dtype)
    geometry = _geometry(x_shape, tuple(dy.shape[1:3]), pool, stride, padding)
    grid, block = launch.grid_1d(dx.size, target)
    if mode == "max":
        target.kernel("max_pool_backward", dtype)(grid, block, (dy, argmax, dx, launch.i64(dx.size), *geometry))
    else:
        target.kernel("sum_pool_backward", dtype)(
            grid, block, (dy, dx, launch.i64(dx.size), *geometry, launch.i32(mode == "avg")))
    return dx


def forward(x: Any, pool: tuple[int, int], stride: tuple[int, int], padding: Padding,
            mode: str) -> tuple[Any, Pool2DCache]:
    return forward_on(_target(), x, pool, stride, padding, mode)


def backward(dy: Any, cache: Pool2DCache) -> Any:
    return backward_on(_target(), dy, cache)
