"""Activation functions as CUDA kernels (activations.cu) on CuPy arrays. Same signatures and caches as
reference.py and cpu.py.

``forward``/``backward`` are the public CuPy path. They call ``forward_on``/``backward_on`` with the
CuPy target; the host tests call the very same functions with a host-harness target (NumPy arrays,
the kernels compiled for the CPU), so this launch code is exercised without a GPU.

Elementwise activations: one fused grid-stride kernel per pass (codes as cpu.CODE). Softmax and
log-softmax: the axis is moved last (a contiguous copy unless it already is last), then one block per
row reduces with warp shuffles and shared memory.
"""

from __future__ import annotations

from typing import Any

from ...cuda import launch, modules
from ...cuda.launch import Target
from .reference import ALONG_AXIS, ELEMENTWISE, ActivationCache

OP = "activations"
CODE = {name: i for i, name in enumerate(ELEMENTWISE)}  # the order of act::Code in activations.cu


def _target() -> Target:
    return modules.target(OP)


def _rows(xp: Any, a: Any, axis: int) -> Any:
    """``a`` with ``axis`` moved last, as a C-contiguous (rows, n) matrix."""
    return xp.ascontiguousarray(xp.moveaxis(a, axis, -1)).reshape(-1, a.shape[axis])


def _unrows(xp: Any, m: Any, like: Any, axis: int) -> Any:
    moved_shape = tuple(s for i, s in enumerate(like.shape) if i != axis) + (like.shape[axis],)
    return xp.ascontiguousarray(xp.moveaxis(m.reshape(moved_shape), -1, axis))


def forward_on(target: Target, name: str, x: Any, **params: Any) -> tuple[Any, ActivationCache]:
    """forward, with the kernels and arrays of ``target`` (CuPy, or the host harness)."""
    xp = target.xp
    if name in ALONG_AXIS:
        axis = params["axis"]
        rows = _rows(xp, x, axis)
        out = xp.empty_like(rows)
        grid, block = launch.grid_rows(rows.shape[0], rows.shape[1], target)
        target.kernel("softmax_forward", x.dtype)(
            grid, block, (rows, out, launch.i64(rows.shape[0]), launch.i64(rows.shape[1]),
                          launch.i32(name == "log_softmax")))
        y = _unrows(xp, out, x, axis)
        return y, ActivationCache(name, x, y, params)
    y = xp.empty_like(x)
    grid, block = launch.grid_1d(x.size, target)
    dt = x.dtype
    target.kernel("activation_forward", dt)(
        grid, block, (x, y, launch.i64(x.size), launch.i32(CODE[name]),
                      launch.scalar(params.get("threshold", 0.0), dt), launch.scalar(params.get("steepness", 1.0), dt),
                      launch.scalar(params.get("alpha", 0.01), dt)))
    return y, ActivationCache(name, x, y, params)


def backward_on(target: Target, dy: Any, cache: ActivationCache) -> Any:
    """backward, with the kernels and arrays of ``target``."""
    xp = target.xp
    name, x, y, params = cache
    if name in ALONG_AXIS:
        axis = params["axis"]
        y_rows, dy_rows = _rows(xp, y, axis), _rows(xp, dy, axis)
        out = xp.empty_like(y_rows)
        grid, block = launch.grid_rows(y_rows.shape[0], y_rows.shape[1], target)
        target.kernel("softmax_backward", y.dtype)(
            grid, block, (y_rows, dy_rows, out, launch.i64(y_rows.shape[0]), launch.i64(y_rows.shape[1]),
                          launch.i32(name == "log_softmax")))
        return _unrows(xp, out, y, axis)
    dx = xp.empty_like(x)
    grid, block = launch.grid_1d(x.size, target)
    dt = x.dtype
    target.kernel("activation_backward", dt)(
        grid, block, (x, y, dy, dx, launch.i64(x.size), launch.i32(CODE[name]),
                      launch.scalar(params.get("steepness", 1.0), dt), launch.scalar(params.get("alpha", 0.01), dt)))
    return dx


def forward(name: str, x: Any, **params: Any) -> tuple[Any, ActivationCache]:
    return forward_on(_target(), name, x, **params)


def backward(dy: Any, cache: ActivationCache) -> Any:
    return backward_on(_target(), dy, cache)
