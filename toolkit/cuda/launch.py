"""Launch helpers shared by every gpu.py: where kernels run, grid/block sizes, scalar casting.

A ``Target`` bundles an array module (``xp``: cupy on a GPU, numpy in the host harness) with a way to
get a kernel by name and dtype. Each gpu.py writes its launch code once against a Target:

    def forward(name, x, **params):                      # the public, CuPy path
        return forward_on(modules.target("activations"), name, x, **params)

    def forward_on(target, name, x, **params):           # the same code runs in the host harness
        y = target.xp.empty_like(x)
        grid, block = launch.grid_1d(x.size, target)
        target.kernel("activation_forward", x.dtype)(grid, block, (x, y, launch.i64(x.size), ...))

A kernel is called like CuPy's RawKernel: ``kernel(grid, block, args, shared_mem=0)``.

Scalars: RawKernel passes a Python int as a 64-bit ``long long`` and a Python float as a ``double``
whatever the kernel declares, which silently corrupts every later argument. Cast every scalar with
``i32`` (``int``), ``i64`` (``long long``: element counts, flat sizes) or ``scalar(v, dtype)`` (``T``).
The host harness rejects anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .sources import name_expression

WARP_SIZE = 32
MAX_BLOCK_THREADS = 1024
THREADS_PER_BLOCK = 256  # elementwise kernels: a good default on every NVIDIA GPU since Kepler
ROW_THREADS = 256  # the most threads one row-reduction block uses (a row longer than this is strided)

_INT32 = np.iinfo(np.int32)
_INT64 = np.iinfo(np.int64)


@dataclass(frozen=True)
class Target:
    """Where kernels run: ``xp`` makes the arrays, ``get_function(name_expression)`` gives a kernel.

    ``max_grid_blocks`` caps grid-stride launches: a few per SM on a GPU; deliberately tiny in the host
    harness so that its tests exercise the grid-stride loops.
    """

    name: str
    xp: Any
    get_function: Callable[[str], Callable[..., Any]]
    max_grid_blocks: int

    def kernel(self, kernel: str, dtype) -> Callable[..., Any]:
        """The instantiation of ``kernel`` for ``dtype`` (float32 -> T = float, float64 -> T = double)."""
        return self.get_function(name_expression(kernel, dtype))


# --------------------------------------------------------------------------- scalars
def i32(value: Any, name: str = "value") -> np.int32:
    """An ``int`` kernel argument, range-checked (an overflow would wrap silently on the GPU)."""
    v = int(value)
    if not _INT32.min <= v <= _INT32.max:
        raise OverflowError(f"{name} = {v} does not fit a 32-bit int kernel argument")
    return np.int32(v)


def i64(value: Any, name: str = "value") -> np.int64:
    """A ``long long`` kernel argument (element counts, flat sizes, row counts)."""
    v = int(value)
    if not _INT64.min <= v <= _INT64.max:
        raise OverflowError(f"{name} = {v} does not fit a 64-bit kernel argument")
    return np.int64(v)


def scalar(value: Any, dtype) -> np.generic:
    """A ``T`` kernel argument: ``value`` in the arrays' dtype (np.float32 or np.float64)."""
    return np.dtype(dtype).type(value)


# --------------------------------------------------------------------------- grid and block
def blocks_for(n: int, threads: int) -> int:
    """ceil(n / threads), at least 1 (a grid of 0 blocks is a launch error)."""
    return max(1, -(-int(n) // int(threads)))


def grid_1d(n: int, target: Target, threads: int = THREADS_PER_BLOCK) -> tuple[tuple[int], tuple[int]]:
    """(grid, block) for a grid-stride loop over n elements: enough blocks for one element per thread,
    capped at the target's max_grid_blocks (the loop covers the rest)."""
    return (min(blocks_for(n, threads), target.max_grid_blocks),), (threads,)


def row_threads(n: int, max_threads: int = ROW_THREADS) -> int:
    """Threads of a block that reduces one row of n elements: the smallest multiple of 32 covering the
    row, at most max_threads (longer rows are strided). Block reductions need full warps."""
    if max_threads % WARP_SIZE or not WARP_SIZE <= max_threads <= MAX_BLOCK_THREADS:
        raise ValueError(f"max_threads must be a multiple of {WARP_SIZE} in [{WARP_SIZE}, {MAX_BLOCK_THREADS}]; "
                         f"got {max_threads}")
    return min(max_threads, blocks_for(n, WARP_SIZE) * WARP_SIZE)


def grid_rows(rows: int, n: int, target: Target, max_threads: int = ROW_THREADS) -> tuple[tuple[int], tuple[int]]:
    """(grid, block) for one block per row of a (rows, n) matrix, rows grid-strided past the cap."""
    return (min(max(1, int(rows)), target.max_grid_blocks),), (row_threads(n, max_threads),)
