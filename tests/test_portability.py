"""The suite's kernel-dependent tests, rerun under every OpenBLAS core type this CPU can execute.

NumPy's OpenBLAS picks its GEMM kernels for the CPU at load time: Haswell's on AVX2 machines (AMD Zen
included), SkylakeX's on AVX-512 ones. The kernels differ in the last bits of a product and in whether
they set the CPU's invalid flag for NaN/Inf inputs (NumPy then warns, and the suite turns warnings into
errors). A suite green on one machine was red on the next (issue 11). OPENBLAS_CORETYPE forces a kernel
family, so one machine can run the tests marked ``portability`` (NaN/Inf tests by name, the rendered
snapshots; see tests/conftest.py) under each family its CPU supports, and a kernel-dependent result fails
here rather than on someone else's machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SKYLAKEX_FLAGS = {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}
# OPENBLAS_CORETYPE -> (CPU flags it needs, the kernel families OpenBLAS may report for it). NumPy's
# OpenBLAS build maps Zen onto the Haswell kernels; the name is run anyway, as machines report it.
CORE_TYPES = {
    "Haswell": ({"avx2", "fma"}, {"Haswell"}),
    "Zen": ({"avx2", "fma"}, {"Zen", "Haswell"}),
    "SkylakeX": (SKYLAKEX_FLAGS, {"SkylakeX"}),
}

# Prints the kernel family of every OpenBLAS the process loads (NumPy's, and SciPy's that Numba's
# np.dot calls), after importing what the tests import.
PROBE = """
import json
import numpy, scipy.linalg, toolkit
from threadpoolctl import threadpool_info
print(json.dumps([i.get("architecture") for i in threadpool_info() if i["internal_api"] == "openblas"]))
"""


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _run(args: list[str], core: str, timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENBLAS_CORETYPE": core}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("core", sorted(CORE_TYPES))
def test_kernel_dependent_tests_pass_on_each_openblas_core_type(core):
    needed, reported = CORE_TYPES[core]
    flags = cpu_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo: the CPU's instruction sets are unknown")
    if not needed <= flags:
        pytest.skip(f"this CPU lacks {', '.join(sorted(needed - flags))}, which OpenBLAS's {core} kernels need")

    probe = _run([sys.executable, "-c", PROBE], core, timeout=300)
    assert probe.returncode == 0, probe.stderr[-3000:]
    families = json.loads(probe.stdout.strip().splitlines()[-1])
    assert families and set(families) <= reported, (
        f"OPENBLAS_CORETYPE={core} was not honoured: OpenBLAS reports {families}")

    suite = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                  "-m", "portability and not gpu", "tests"], core, timeout=1200)
    tail = (suite.stdout + suite.stderr)[-6000:]
    assert suite.returncode == 0, f"with OPENBLAS_CORETYPE={core} ({families}):\n{tail}"
    assert " passed" in tail and "no tests ran" not in tail, tail
