"""Compile each op's .cu once per process with CuPy (NVRTC) and hand out its kernels.

    from toolkit.cuda import modules
    target = modules.target("activations")            # launch.Target on CuPy
    kernel = target.kernel("softmax_forward", x.dtype)   # RawModule.get_function("softmax_forward<float>")

Only this module imports CuPy, and only when a GPU kernel is first needed, so importing any gpu.py
works on a machine without CuPy or without a GPU.

Cache keys: CuPy caches compiled modules on disk by source text and options, and does not look at
included headers. The source handed to CuPy therefore starts with a comment holding the hash of every
header the .cu may include (toolkit/cuda/*.cuh and the op's own headers): editing common.cuh, reduce.cuh
or gemm.cuh recompiles every op. A ``#line 1`` keeps compiler messages pointing at the .cu's own lines.
The name expressions cover the kernels of the project headers the .cu includes too (sources.source_kernels).
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

from . import sources
from .launch import Target

# -std=c++17 for `if constexpr` and friends; never -arch (CuPy adds the device's own).
BASE_OPTIONS = ("-std=c++17",)
BLOCKS_PER_SM = 32  # grid-stride launches: enough resident blocks to fill every SM

_lock = threading.Lock()


def options_for(path: Path) -> tuple[str, ...]:
    """NVRTC options of a .cu: the base options plus -I for its folder and toolkit/cuda."""
    return BASE_OPTIONS + tuple(f"-I{d}" for d in sources.include_dirs(path))


def code_for(path: Path) -> str:
    """The text handed to NVRTC: a header-hash comment (cache key), #line 1, then the .cu unchanged."""
    path = Path(path).resolve()
    return (f"// toolkit headers sha256 {sources.headers_digest(path)}\n"
            f"#line 1 \"{path.name}\"\n" + path.read_text())


@functools.lru_cache(maxsize=None)
def _module(path: Path) -> Any:
    import cupy  # deferred: the CPU path and the host harness never import CuPy

    return cupy.RawModule(code=code_for(path), options=options_for(path),
                          name_expressions=sources.source_name_expressions(path))


def module(op: str) -> Any:
    """The op's cupy.RawModule (compiled on first use, then cached for the process)."""
    path = sources.op_source(op)
    with _lock:  # one compile per .cu even when threads race to the first call
        return _module(path)


@functools.lru_cache(maxsize=None)
def _max_grid_blocks() -> int:
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    return BLOCKS_PER_SM * int(props["multiProcessorCount"])


@functools.lru_cache(maxsize=None)
def target(op: str) -> Target:
    """A launch.Target whose arrays are CuPy's and whose kernels are the op's RawModule functions
    (each looked up once: get_function resolves the mangled name every time it is called)."""
    import cupy

    get_function = functools.lru_cache(maxsize=None)(module(op).get_function)
    return Target(name="cupy", xp=cupy, get_function=get_function, max_grid_blocks=_max_grid_blocks())
