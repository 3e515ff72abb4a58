"""Peak device memory of one forward+backward on the GPU (``python -m bench --device gpu``, attention
cases): the GPU target asks for attention whose memory grows linearly with the sequence length.

Each number is the memory an implementation allocates above what was allocated before the call: its
outputs, the cache the backward reads and every temporary, not the inputs. CuPy and PyTorch keep
separate allocators, so each is read through its own:

* ours and the CuPy built-ins: CuPy's default memory pool. ``free_all_blocks()`` first returns the
  cached free blocks, then ``total_bytes()`` after the call less ``total_bytes()`` before it. The pool
  keeps blocks freed during the call and reuses them when a later request fits, so this is an upper
  bound of the peak (exact when nothing freed mid-call was left unused).
* PyTorch: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``, less
  ``memory_allocated()`` before the call: the exact peak of its caching allocator's live tensors.

Both functions take the module (cupy, torch) as an argument, so the tests run them on fakes.
"""

from __future__ import annotations

from typing import Any, Callable

from .cases import is_array

METHOD = ("bytes allocated above those held before one f+b call (outputs, cache and temporaries; not the "
          "inputs): ours/cupy from CuPy's default pool, free_all_blocks() first, then total_bytes() after "
          "minus before (an upper bound of the peak: the pool keeps blocks freed during the call); torch: "
          "torch.cuda.max_memory_allocated() after reset_peak_memory_stats(), minus memory_allocated() before")


def cupy_pool_peak_bytes(cupy: Any, thunk: Callable[[], Any]) -> int:
    pool = cupy.get_default_memory_pool()
    cupy.cuda.Device().synchronize()  # blocks of finished work only: a queued kernel may still hold one
    pool.free_all_blocks()
    before = pool.total_bytes()
    result = thunk()
    cupy.cuda.Device().synchronize()
    grown = pool.total_bytes() - before
    del result
    return int(grown)


def torch_peak_bytes(torch: Any, thunk: Callable[[], Any]) -> int:
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    result = thunk()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - before
    del result
    return int(peak)


def input_bytes(inputs: dict) -> int:
    """Bytes of the case's input arrays (NumPy or CuPy): what the peaks are compared with."""
    return int(sum(value.nbytes for value in inputs.values() if is_array(value)))
