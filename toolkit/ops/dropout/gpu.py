"""Inverted dropout as CUDA kernels (dropout.cu) on CuPy arrays. Same signatures and cache as
reference.py and cpu.py: the cache holds the bool keep mask (a CuPy array), as cpu.py's does, so the
backward pass reads it instead of regenerating it.

``forward``/``backward``/``dropout_mask`` are the public CuPy path; they call the ``*_on`` functions
with the CuPy target. The host tests call the same functions with a host-harness target (NumPy arrays,
the kernels compiled for the CPU), so this launch code is exercised without a GPU.

Everything the mask depends on is computed here, on the host, exactly as cpu.py computes it: the
Philox key from the seed (philox.seed_key), the integer threshold ceil(rate * 2^24)
(philox.keep_threshold) and the divisor 1 - rate rounded to x's dtype (reference.keep_divisor).
The kernels then give masks and outputs bit-identical to the CPU's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...cuda import launch, modules
from ...cuda.launch import Target
from .philox import keep_threshold, seed_key
from .reference import DropoutCache, keep_divisor

OP = "dropout"
THREADS = 256  # drop::kThreads in dropout.cu: the tiled kernels need exactly this block size
TILE = 4 * THREADS  # elements per tile (drop::kTile)
_UINT32_MAX = 0xFFFFFFFF


def _target() -> Target:
    return modules.target(OP)


def u32(value: Any, name: str = "value") -> np.uint32:
    """An ``unsigned`` kernel argument, range-checked (launch.py has i32/i64 only)."""
    v = int(value)
    if not 0 <= v <= _UINT32_MAX:
        raise OverflowError(f"{name} = {v} does not fit a 32-bit unsigned kernel argument")
    return np.uint32(v)


def _philox_args(rate: float, seed: int) -> tuple[np.uint32, np.uint32, np.uint32]:
    k0, k1 = seed_key(seed)
    return u32(k0, "key[0]"), u32(k1, "key[1]"), u32(keep_threshold(rate), "threshold")


def _tiled_grid(n: int, target: Target) -> tuple[tuple[int], tuple[int]]:
    """One block per tile of TILE elements, capped (the kernels grid-stride over tiles)."""
    return (min(launch.blocks_for(n, TILE), target.max_grid_blocks),), (THREADS,)


def dropout_mask_on(target: Target, shape: tuple[int, ...], rate: float, seed: int) -> Any:
    """dropout_mask, with the kernels and arrays of ``target``."""
    mask = target.xp.empty(shape, dtype=bool)
    grid, block = _tiled_grid(mask.size, target)
    # The mask does not depend on the float type: the float instantiation serves both.
    target.kernel("dropout_mask", np.float32)(grid, block, (mask, launch.i64(mask.size), *_philox_args(rate, seed)))
    return mask


def forward_on(target: Target, x: Any, rate: float, seed: int, training: bool) -> tuple[Any, DropoutCache]:
    """forward, with the kernels and arrays of ``target`` (CuPy, or the host harness)."""
    if not training:
        return x.copy(), DropoutCache(None, rate, seed, False, tuple(x.shape), x.dtype)
    xp = target.xp
    y = xp.empty_like(x)
    mask = xp.empty(x.shape, dtype=bool)
    grid, block = _tiled_grid(x.size, target)
    target.kernel("dropout_forward", x.dtype)(
        grid, block, (x, y, mask, launch.i64(x.size), *_philox_args(rate, seed),
                      launch.scalar(keep_divisor(rate, x.dtype), x.dtype)))
    return y, DropoutCache(mask, rate, seed, True, tuple(x.shape), x.dtype)


def backward_on(target: Target, dy: Any, cache: DropoutCache) -> Any:
    """backward, with the kernels and arrays of ``target``."""
    if cache.mask is None:  # inference: the identity
        return dy.copy()
    dx = target.xp.empty_like(dy)
    grid, block = launch.grid_1d(dy.size, target)
    target.kernel("dropout_backward", dy.dtype)(
        grid, block, (dy, cache.mask, dx, launch.i64(dy.size), launch.scalar(keep_divisor(cache.rate, dy.dtype),
                                                                             dy.dtype)))
    return dx


# ------------------------------------------------------------------ the generator itself, for tests
def philox_words_on(target: Target, counter: Any, key: Any, dtype=np.float64) -> tuple[Any, Any]:
    """Philox-4x32-10 on the device: counter (n, 4) and key (n, 2) uint32 -> (words (n, 4) uint32,
    uniforms (n, 4) = (word >> 8) * 2^-24 in ``dtype``). Mirrors philox.philox4x32_10 (one row per call)."""
    xp = target.xp
    counter = xp.ascontiguousarray(counter, dtype=xp.uint32).reshape(-1, 4)
    key = xp.ascontiguousarray(key, dtype=xp.uint32).reshape(-1, 2)
    if counter.shape[0] != key.shape[0]:
        raise ValueError(f"counter and key must have as many rows; got {counter.shape[0]} and {key.shape[0]}")
    words = xp.empty(counter.shape, dtype=xp.uint32)
    uniforms = xp.empty(counter.shape, dtype=dtype)
    grid, block = launch.grid_1d(counter.shape[0], target)
    target.kernel("philox_words", dtype)(grid, block, (counter, key, words, uniforms, launch.i64(counter.shape[0])))
    return words, uniforms


def element_words_on(target: Target, indices: Any, seed: int, dtype=np.float64) -> tuple[Any, Any]:
    """The random word (uint32) and uniform (``dtype``) of each element index under ``seed``, through the
    device's block mapping. Mirrors philox.element_words."""
    xp = target.xp
    indices = xp.ascontiguousarray(indices, dtype=xp.uint64).reshape(-1)
    words = xp.empty(indices.shape, dtype=xp.uint32)
    uniforms = xp.empty(indices.shape, dtype=dtype)
    k0, k1, _ = _philox_args(0.0, seed)
    grid, block = launch.grid_1d(indices.size, target)
    target.kernel("element_words", dtype)(grid, block, (indices, words, uniforms, launch.i64(indices.size), k0, k1))
    return words, uniforms


# ------------------------------------------------------------------ the public CuPy path
def dropout_mask(shape: tuple[int, ...], rate: float, seed: int) -> Any:
    return dropout_mask_on(_target(), shape, rate, seed)


def forward(x: Any, rate: float, seed: int, training: bool) -> tuple[Any, DropoutCache]:
    return forward_on(_target(), x, rate, seed, training)


def backward(dy: Any, cache: DropoutCache) -> Any:
    return backward_on(_target(), dy, cache)
