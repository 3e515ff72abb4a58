"""Inverted dropout as Numba kernels (CPU). Same signatures and cache as reference.py.

Philox-4x32-10 is written with 32-bit words held in uint64 variables: the 32x32 -> 64-bit multiply is
then one uint64 product, and sums are masked back to 32 bits explicitly. Every constant is a
np.uint64, because Numba turns uint64-with-int64 arithmetic into float64 (silently losing bits).
Each Philox call makes the words of one block of 4 elements, and writes only those 4.
See philox.py for the exact counter/key/threshold mapping shared with the CUDA kernel.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .philox import MULTIPLIERS, ROUNDS, WEYL, keep_threshold, seed_key
from .reference import DropoutCache, keep_divisor

M0 = np.uint64(MULTIPLIERS[0])
M1 = np.uint64(MULTIPLIERS[1])
W0 = np.uint64(WEYL[0])
W1 = np.uint64(WEYL[1])
LOW32 = np.uint64(0xFFFFFFFF)
U32 = np.uint64(32)
U8 = np.uint64(8)
U2 = np.uint64(2)
U3 = np.uint64(3)
ZERO = np.uint64(0)
# Below this many elements the serial kernels run (about 0.5 ms of Philox work at the top): waking
# Numba's threads costs more than that, and on a busy machine a parallel region can wait milliseconds
# for a thread that is not scheduled.
PARALLEL_MIN_SIZE = 1 << 18
BLOCK_CHUNKS = 64  # chunks of a parallel call: several per thread


@njit(cache=True, inline="always")
def _round(c0, c1, c2, c3, k0, k1):
    p0 = M0 * c0  # < 2^64: exact
    p1 = M1 * c2
    return (p1 >> U32) ^ c1 ^ k0, p1 & LOW32, (p0 >> U32) ^ c3 ^ k1, p0 & LOW32


@njit(cache=True, inline="always")
def _philox(c0, c1, c2, c3, k0, k1):
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0, k1)
    for _ in range(ROUNDS - 1):
        k0 = (k0 + W0) & LOW32
        k1 = (k1 + W1) & LOW32
        c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0, k1)
    return c0, c1, c2, c3


@njit(cache=True)
def philox4x32_10_words(c0, c1, c2, c3, k0, k1):
    """Philox-4x32-10 on uint64-held 32-bit words (callable from Python with np.uint64 arguments)."""
    return _philox(c0, c1, c2, c3, k0, k1)


@njit(cache=True)
def element_word(index, k0, k1):
    """The random word of element ``index`` (np.uint64): word (index & 3) of block index >> 2."""
    block = index >> U2
    words = _philox(block & LOW32, block >> U32, ZERO, ZERO, k0, k1)
    return words[index & U3]


# Each kernel is written once for a range [b_start, b_stop) of 4-element Philox blocks (serial); the
# parallel drivers split the blocks into BLOCK_CHUNKS chunks and run them in a prange (disjoint
# elements per chunk). Arrays below PARALLEL_MIN_SIZE elements call the serial kernel on every block.
@njit(cache=True)
def _mask_blocks(mask, k0, k1, threshold, b_start, b_stop):
    size = mask.size
    for b in range(b_start, b_stop):
        block = np.uint64(b)
        words = _philox(block & LOW32, block >> U32, ZERO, ZERO, k0, k1)
        for lane in range(4):
            i = 4 * b + lane
            if i < size:
                mask[i] = (words[lane] >> U8) >= threshold


@njit(cache=True)
def _forward_blocks(x, y, mask, k0, k1, threshold, divisor, b_start, b_stop):
    size = x.size
    for b in range(b_start, b_stop):
        block = np.uint64(b)
        words = _philox(block & LOW32, block >> U32, ZERO, ZERO, k0, k1)
        for lane in range(4):
            i = 4 * b + lane
            if i < size:
                kept = (words[lane] >> U8) >= threshold
                mask[i] = kept
                if kept:
                    y[i] = x[i] / divisor
                else:
                    y[i] = 0  # a selection, not a product: a dropped NaN becomes 0


@njit(cache=True)
def _backward_range(dy, mask, dx, divisor, start, stop):
    for i in range(start, stop):
        if mask[i]:
            dx[i] = dy[i] / divisor
        else:
            dx[i] = 0


@njit(cache=True, parallel=True)
def _mask_parallel(mask, k0, k1, threshold):
    blocks = (mask.size + 3) // 4
    per = (blocks + BLOCK_CHUNKS - 1) // BLOCK_CHUNKS
    for c in prange(BLOCK_CHUNKS):
        _mask_blocks(mask, k0, k1, threshold, min(blocks, c * per), min(blocks, (c + 1) * per))


@njit(cache=True, parallel=True)
def _forward_parallel(x, y, mask, k0, k1, threshold, divisor):
    blocks = (x.size + 3) // 4
    per = (blocks + BLOCK_CHUNKS - 1) // BLOCK_CHUNKS
    for c in prange(BLOCK_CHUNKS):
        _forward_blocks(x, y, mask, k0, k1, threshold, divisor, min(blocks, c * per), min(blocks, (c + 1) * per))


@njit(cache=True, parallel=True)
def _backward_parallel(dy, mask, dx, divisor):
    size = dy.size
    per = (size + BLOCK_CHUNKS - 1) // BLOCK_CHUNKS
    for c in prange(BLOCK_CHUNKS):
        _backward_range(dy, mask, dx, divisor, min(size, c * per), min(size, (c + 1) * per))


def _key(seed: int) -> tuple[np.uint64, np.uint64]:
    k0, k1 = seed_key(seed)
    return np.uint64(k0), np.uint64(k1)


def dropout_mask(shape: tuple[int, ...], rate: float, seed: int) -> np.ndarray:
    mask = np.empty(shape, dtype=np.bool_)
    flat, key, threshold = mask.reshape(-1), _key(seed), np.uint64(keep_threshold(rate))
    if flat.size >= PARALLEL_MIN_SIZE:
        _mask_parallel(flat, *key, threshold)
    else:
        _mask_blocks(flat, *key, threshold, 0, (flat.size + 3) // 4)
    return mask


def forward(x: np.ndarray, rate: float, seed: int, training: bool) -> tuple[np.ndarray, DropoutCache]:
    if not training:
        return x.copy(), DropoutCache(None, rate, seed, False, tuple(x.shape), x.dtype)
    y = np.empty_like(x)
    mask = np.empty(x.shape, dtype=np.bool_)
    args = (x.reshape(-1), y.reshape(-1), mask.reshape(-1), *_key(seed), np.uint64(keep_threshold(rate)),
            keep_divisor(rate, x.dtype))
    if x.size >= PARALLEL_MIN_SIZE:
        _forward_parallel(*args)
    else:
        _forward_blocks(*args, 0, (x.size + 3) // 4)
    return y, DropoutCache(mask, rate, seed, True, tuple(x.shape), x.dtype)


def backward(dy: np.ndarray, cache: DropoutCache) -> np.ndarray:
    if cache.mask is None:
        return dy.copy()
    dx = np.empty_like(dy)
    args = (dy.reshape(-1), cache.mask.reshape(-1), dx.reshape(-1), keep_divisor(cache.rate, dy.dtype))
    if dy.size >= PARALLEL_MIN_SIZE:
        _backward_parallel(*args)
    else:
        _backward_range(*args, 0, dy.size)
    return dx
