"""Philox-4x32-10, the counter-based generator behind every dropout mask, in readable NumPy.

Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3" (SC 2011), as in Random123.
A counter-based generator is a pure function: random words = philox(counter, key). Any element's
random number is computed directly from its index, with no state passed between threads, so the
NumPy reference, the Numba kernel and the CUDA kernel produce the SAME mask for the same seed.

One Philox-4x32 round maps a counter (c0, c1, c2, c3) and key (k0, k1), all 32-bit words, to

    hi0, lo0 = high and low 32 bits of 0xD2511F53 * c0   (a 32x32 -> 64-bit product)
    hi1, lo1 = high and low 32 bits of 0xCD9E8D57 * c2
    (c0, c1, c2, c3) <- (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)

and between rounds the key is bumped: k0 += 0x9E3779B9, k1 += 0xBB67AE85 (mod 2^32). Ten rounds
(nine bumps) give Philox-4x32-10.

THE DROPOUT MAPPING (every implementation must follow it exactly):

* seed: an integer in [0, 2^64); key = (seed & 0xFFFFFFFF, seed >> 32).
* element i (its flat C-order index in x, 0-based, 64-bit): block b = i >> 2,
  counter = (b & 0xFFFFFFFF, b >> 32, 0, 0); its random word is output word (i & 3) of that block.
  So one Philox call serves 4 consecutive elements.
* uniform u = (word >> 8) * 2^-24, the top 24 bits: exactly representable in float32 and float64.
* the element is KEPT iff u >= rate, computed in integers as (word >> 8) >= ceil(rate * 2^24)
  (rate * 2^24 is exact in float64), so no device ever compares floats.
  P(keep) = 1 - ceil(rate * 2^24) / 2^24, within 2^-24 of 1 - rate.
"""

from __future__ import annotations

import math

import numpy as np

MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)
WEYL = (0x9E3779B9, 0xBB67AE85)  # the key bumps: golden ratio and sqrt(3) - 1, as 32-bit fractions
ROUNDS = 10
LOW32 = np.uint64(0xFFFFFFFF)
UNIFORM_BITS = 24  # u = (word >> 8) * 2^-24


def _mulhilo(multiplier: int, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Both factors are < 2^32, so the product is < 2^64: exact in uint64.
    product = np.uint64(multiplier) * a
    return product >> np.uint64(32), product & LOW32


def philox4x32_10(counter, key) -> np.ndarray:
    """Philox-4x32-10 of counter (4 words) and key (2 words); each word may be an array (vectorised).

    Returns uint32 of shape (4, ...): the four output words.
    """
    c0, c1, c2, c3 = (np.asarray(w, dtype=np.uint64) & LOW32 for w in counter)
    k0, k1 = (np.asarray(w, dtype=np.uint64) & LOW32 for w in key)
    for round_number in range(ROUNDS):
        if round_number > 0:
            k0 = (k0 + np.uint64(WEYL[0])) & LOW32
            k1 = (k1 + np.uint64(WEYL[1])) & LOW32
        hi0, lo0 = _mulhilo(MULTIPLIERS[0], c0)
        hi1, lo1 = _mulhilo(MULTIPLIERS[1], c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return np.stack(np.broadcast_arrays(c0, c1, c2, c3)).astype(np.uint32)


def seed_key(seed: int) -> tuple[int, int]:
    """The Philox key of a 64-bit seed: (low 32 bits, high 32 bits)."""
    return seed & 0xFFFFFFFF, seed >> 32


def element_words(indices, seed: int) -> np.ndarray:
    """The random 32-bit word of each element index (uint32, shape of ``indices``)."""
    i = np.asarray(indices, dtype=np.uint64)
    block = i >> np.uint64(2)
    zero = np.zeros_like(block)
    words = philox4x32_10((block & LOW32, block >> np.uint64(32), zero, zero), seed_key(seed))
    return np.take_along_axis(words, (i & np.uint64(3)).astype(np.intp)[None], axis=0)[0]


def stream_words(size: int, seed: int) -> np.ndarray:
    """Words of elements 0 .. size-1: one Philox call per block of 4, output words in order."""
    blocks = np.arange((size + 3) // 4, dtype=np.uint64)
    zero = np.zeros_like(blocks)
    words = philox4x32_10((blocks & LOW32, blocks >> np.uint64(32), zero, zero), seed_key(seed))
    return words.T.reshape(-1)[:size]  # (4, blocks) -> block-major: element 4b + lane


def uniform(words: np.ndarray) -> np.ndarray:
    """u = (word >> 8) * 2^-24 in [0, 1), float64 (exact)."""
    return (np.asarray(words, dtype=np.uint32) >> 8).astype(np.float64) * 2.0**-UNIFORM_BITS


def keep_threshold(rate: float) -> int:
    """The integer T with: keep iff (word >> 8) >= T, i.e. iff u >= rate. T = ceil(rate * 2^24)."""
    return math.ceil(rate * 2**UNIFORM_BITS)
