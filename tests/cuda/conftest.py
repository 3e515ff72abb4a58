"""Fixtures of the CUDA tests: host-harness targets (no GPU needed) and the g++ requirement."""

import shutil

import pytest

# The host harness compiles the kernels with g++ (C++20); without a compiler there is nothing to run.
requires_cxx = pytest.mark.skipif(shutil.which("g++") is None, reason="the host harness needs g++ (C++20) on PATH")

ORDERS = ("forward", "reverse")


@pytest.fixture(scope="session")
def activations_host():
    """The host build of activations.cu (built once, cached on disk by content)."""
    from toolkit.cuda.host import harness

    return harness.load("activations")
