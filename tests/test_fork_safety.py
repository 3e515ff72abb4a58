"""Fork and thread safety of Numba's threading layer (toolkit/threads.py).

Under GNU OpenMP, a fork after one parallel kernel hangs a multiprocessing Pool forever and kills an
os.fork() child. Each scenario runs in a fresh interpreter with a timeout, so a hang fails the test
instead of hanging CI, and a layer that aborts the process (workqueue under two threads) fails it
instead of killing pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numba
import pytest

from toolkit import threads

TIMEOUT_S = 120

# A parallel kernel: relu on 2^21 values, above activations.cpu.PARALLEL_MIN_SIZE (checked below).
PRELUDE = """
import os, sys, threading
import numpy as np
import numba
import toolkit
from toolkit.ops.activations import activation_forward, cpu

X = np.linspace(-1.0, 1.0, 1 << 21, dtype=np.float32)
EXPECTED = float(np.maximum(X, 0).sum(dtype=np.float64))
assert X.size >= cpu.PARALLEL_MIN_SIZE

def relu_sum(_=None):
    y, _cache = activation_forward(X, "relu")
    return float(y.sum(dtype=np.float64))

assert relu_sum() == EXPECTED  # starts Numba's threads in the parent
print("layer", numba.threading_layer(), flush=True)
"""


def _start(body: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    code = PRELUDE + textwrap.dedent(body)
    try:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT_S,
                              env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"hung for {TIMEOUT_S} s (a fork after a parallel kernel); output so far: {exc.stdout!r}")


def _run(body: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = _start(body, env)
    assert done.returncode == 0, f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    return done


def _default_layer() -> str:
    """The layer toolkit picks here: tbb where the tbb wheel is installed, else workqueue on Linux."""
    return "tbb" if threads.load_tbb() is None else "workqueue"


@pytest.mark.skipif(sys.platform != "linux", reason="fork is the Linux default start method")
def test_fork_pool_after_a_parallel_kernel():
    done = _run("""
        import multiprocessing
        with multiprocessing.get_context("fork").Pool(2) as pool:
            assert pool.map(relu_sum, range(4)) == [EXPECTED] * 4
        print("pool ok")
    """)
    assert f"layer {_default_layer()}" in done.stdout and "pool ok" in done.stdout


FORK_CHILD = """
    pid = os.fork()
    if pid == 0:
        os._exit(0 if relu_sum() == EXPECTED else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"child status {status}"
    print("child ok")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_os_fork_child_runs_a_parallel_kernel_and_exits_0():
    assert "child ok" in _run(FORK_CHILD).stdout


@pytest.mark.skipif(sys.platform != "linux", reason="GNU OpenMP is the Linux omp layer")
def test_the_fork_check_fails_under_gnu_openmp():
    """The check above catches the bug: under omp (Numba's default on Linux without the selection) the
    child is terminated ("fork() called from a process already using GNU OpenMP")."""
    done = _start(FORK_CHILD, env={"NUMBA_THREADING_LAYER": "omp"})
    assert done.returncode != 0 and "child ok" not in done.stdout
    assert "layer omp" in done.stdout


@pytest.mark.skipif(threads.load_tbb() is not None, reason="the fallback layer (workqueue) is not thread-safe")
def test_two_threads_call_a_parallel_kernel_at_once():
    done = _run("""
        barrier = threading.Barrier(2)
        results = []
        def worker():
            barrier.wait()  # start together, so the calls overlap
            results.extend(relu_sum() for _ in range(20))
        workers = [threading.Thread(target=worker) for _ in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert results == [EXPECTED] * 40, results
        print("threads ok")
    """)
    assert "layer tbb" in done.stdout and "threads ok" in done.stdout


def test_the_users_threading_layer_is_honoured():
    done = _run("", env={"NUMBA_THREADING_LAYER": "workqueue"})
    assert "layer workqueue" in done.stdout


def test_this_process_runs_the_selected_layer():
    """The test session itself imported toolkit first, so its layer is the one threads.select picked
    (unless NUMBA_THREADING_LAYER chose another)."""
    from toolkit.info import numba_threading

    layer, _ = numba_threading()
    wanted = os.environ.get("NUMBA_THREADING_LAYER", _default_layer())
    assert layer == wanted or wanted not in ("tbb", "omp", "workqueue")
    assert numba.threading_layer() == layer
    assert "fork-safe" in threads.safety("tbb") and "NOT thread-safe" in threads.safety("workqueue")
