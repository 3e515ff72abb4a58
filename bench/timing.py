"""How a benchmark is timed: warm up (Numba compile and module load excluded), then the median of repeats.

The warm-up calls (``warmup`` of them, then one more that measures how long a call takes) are not
timed. The number of repeats fills ``budget_s``, between ``min_repeats`` and ``max_repeats``; a call
slower than the whole budget (the NumPy reference of a large case) is repeated only SLOW_REPEATS times:
its median is already stable and five repeats of a five-second call would cost minutes.

CPU work is timed with perf_counter. GPU work (CuPy arrays) is timed with CUDA events, with the L2
cache flushed before every repeat by writing a buffer larger than L2, so each repeat starts cold.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Timing:
    median_s: float
    min_s: float
    repeats: int


SLOW_REPEATS = 3


def _repeats_for(thunk: Callable[[], object], budget_s: float, min_repeats: int, max_repeats: int) -> int:
    start = time.perf_counter()
    thunk()
    once = max(time.perf_counter() - start, 1e-9)
    if once >= budget_s:
        return min(min_repeats, SLOW_REPEATS)
    return int(min(max_repeats, max(min_repeats, budget_s / once)))


def time_once(thunk: Callable[[], object], **_: object) -> Timing:
    """One call, no warm-up, no repeats: what --smoke uses to check that every case runs. Not a benchmark
    (the first call includes Numba's compilation or cache load)."""
    start = time.perf_counter()
    thunk()
    elapsed = time.perf_counter() - start
    return Timing(elapsed, elapsed, 1)


def time_cpu(thunk: Callable[[], object], *, warmup: int = 1, budget_s: float = 1.0,
             min_repeats: int = 5, max_repeats: int = 200) -> Timing:
    for _ in range(warmup):
        thunk()
    n = _repeats_for(thunk, budget_s, min_repeats, max_repeats)
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        thunk()
        samples.append(time.perf_counter() - start)
    return Timing(statistics.median(samples), min(samples), n)


class _L2Flusher:
    def __init__(self):
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        self.buffer = cupy.empty(int(props["l2CacheSize"]) * 2 // 4 + 1, dtype=cupy.float32)

    def __call__(self) -> None:
        self.buffer.fill(0)


_flusher = None


def time_gpu(thunk: Callable[[], object], *, warmup: int = 3, budget_s: float = 1.0,
             min_repeats: int = 10, max_repeats: int = 200) -> Timing:
    import cupy

    global _flusher
    if _flusher is None:
        _flusher = _L2Flusher()
    for _ in range(warmup):
        thunk()
    cupy.cuda.Device().synchronize()
    n = _repeats_for(lambda: (thunk(), cupy.cuda.Device().synchronize()), budget_s, min_repeats, max_repeats)
    samples = []
    start, stop = cupy.cuda.Event(), cupy.cuda.Event()
    for _ in range(n):
        _flusher()
        start.record()
        thunk()
        stop.record()
        stop.synchronize()
        samples.append(cupy.cuda.get_elapsed_time(start, stop) / 1e3)
    return Timing(statistics.median(samples), min(samples), n)
