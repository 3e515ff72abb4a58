"""Numba's threading layer, chosen when ``toolkit`` is imported, before any parallel kernel runs.

Why: Numba's default layer on Linux is GNU OpenMP (``omp``), which is not fork-safe. After one parallel
kernel, a ``multiprocessing.Pool`` (fork, the Linux default start method) hangs forever and an
``os.fork()`` child is killed ("fork() called from a process already using GNU OpenMP"). Intel TBB is
both fork-safe and thread-safe (Numba's "safe"); the ``tbb`` wheel is a dependency on Linux x86-64.

The order:

1. a layer the user chose is kept: ``NUMBA_THREADING_LAYER``, ``.numba_config.yaml`` or
   ``numba.config.THREADING_LAYER`` set before importing toolkit;
2. otherwise ``tbb`` when TBB loads;
3. otherwise Numba's ``forksafe``: ``workqueue`` on Linux, which is fork-safe but NOT thread-safe (two
   Python threads running parallel kernels at once abort the process), OpenMP elsewhere.

If Numba's threads already started before toolkit was imported, the layer in use cannot change and is
left alone. ``python -m toolkit info`` prints the layer in use.
"""

from __future__ import annotations

import ctypes
import os
import sys
from importlib import metadata

# Numba's own minimum (numba/np/ufunc/parallel.py): TBB 2021 update 6.
MIN_TBB_INTERFACE = 12060
# The layers Numba documents as safe under fork / under concurrent calls from Python threads (on Linux).
FORK_SAFE = ("tbb", "workqueue")
THREAD_SAFE = ("tbb", "omp")

if sys.platform.startswith("win"):
    TBB_LIBRARY = "tbb12.dll"
elif sys.platform == "darwin":
    TBB_LIBRARY = "libtbb.12.dylib"
else:
    TBB_LIBRARY = "libtbb.so.12"

# Why TBB is not used when it is not (None: it loaded, or select() has not run).
tbb_problem: str | None = None


def _wheel_library() -> str | None:
    """The TBB library the ``tbb`` wheel installed, by full path, or None without the wheel.

    The wheel puts it in <prefix>/lib, which is not on the dynamic loader's path inside a virtual
    environment, so Numba's load by name alone would miss it."""
    try:
        files = metadata.distribution("tbb").files or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == TBB_LIBRARY:
            return str(f.locate())
    return None


def load_tbb() -> str | None:
    """Load TBB once, globally, so that Numba's later load by name finds it. Returns None when TBB is
    usable by Numba, else the reason it is not."""
    path = _wheel_library()
    try:
        lib = ctypes.CDLL(path or TBB_LIBRARY, mode=ctypes.RTLD_GLOBAL)
    except OSError as exc:
        return f"{TBB_LIBRARY} not found ({exc}); install it with pip install tbb"
    version = lib.TBB_runtime_interface_version
    version.restype = ctypes.c_int
    if version() < MIN_TBB_INTERFACE:
        return f"TBB interface version {version()} is older than the {MIN_TBB_INTERFACE} Numba needs"
    try:  # Numba's TBB layer itself, linked against the library loaded above
        import numba.np.ufunc.tbbpool  # noqa: F401
    except ImportError as exc:
        return f"Numba's TBB layer does not load: {exc}"
    return None


def _started() -> bool:
    """True once Numba's threads run (the layer is then fixed for the life of the process)."""
    import numba

    try:
        numba.threading_layer()
    except ValueError:  # "Threading layer is not initialized."
        return False
    return True


def select() -> None:
    """Pick the layer (see the module docstring). Safe to call more than once."""
    global tbb_problem
    import numba

    if _started():
        return
    chosen = str(numba.config.THREADING_LAYER).lower()
    if chosen in ("omp", "workqueue"):  # the user's choice needs no TBB
        return
    tbb_problem = load_tbb()  # also for a user's "tbb" / "safe", which Numba alone misses in a venv
    if chosen != "default" or "NUMBA_THREADING_LAYER" in os.environ:
        return
    numba.config.THREADING_LAYER = "tbb" if tbb_problem is None else "forksafe"


def safety(layer: str) -> str:
    """A short note on what a layer is safe under, for ``python -m toolkit info``."""
    fork = "fork-safe" if layer in FORK_SAFE or not sys.platform.startswith("linux") else "NOT fork-safe"
    thread = "thread-safe" if layer in THREAD_SAFE else "NOT thread-safe"
    note = f"{fork}, {thread}"
    if layer != "tbb" and tbb_problem is not None:
        note += f"; TBB unavailable: {tbb_problem}"
    return note
