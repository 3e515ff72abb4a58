"""Blocks of query rows and the keys they reach, shared by the masked path (cpu.py) and the tiled path
(tiled.py).

Block b holds query rows [b*block, (b+1)*block). stops[m, b] = 1 + the last key any row of block b may
attend to (mask m: 0 for a shared (1, Tq, Tk) mask, n for a per-element (N, Tq, Tk) one; 0 when every row
of the block is fully masked). Every key from stops on is masked for the whole block, so its weights are
exactly 0 and the products over it can be skipped.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def block_key_stops(mask, block):
    """(stops (masks, blocks), number of score entries the blocks skip)."""
    masks, tq, tk = mask.shape
    blocks = (tq + block - 1) // block
    stops = np.zeros((masks, blocks), dtype=np.int64)
    for m in range(masks):
        for i in range(tq):
            b = i // block
            j = tk
            while j > stops[m, b] and not mask[m, i, j - 1]:  # keys below the block's stop change nothing
                j -= 1
            stops[m, b] = j
    skipped = 0
    for m in range(masks):
        for b in range(blocks):
            skipped += (min(tq, (b + 1) * block) - b * block) * (tk - stops[m, b])
    return stops, skipped


@njit(cache=True, inline="always")
def balanced(position, count):
    """Blocks in the order 0, count-1, 1, count-2, ...: a causal mask's work grows with the block index,
    and Numba splits a prange into contiguous halves, so each half gets light and heavy blocks."""
    return position // 2 if position % 2 == 0 else count - 1 - position // 2
