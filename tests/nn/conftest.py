import numba
import pytest


@pytest.fixture(autouse=True)
def _one_numba_thread():
    """The models here are tiny: run the ops' parallel kernels on one thread.

    On this shared 2-core machine an OpenMP parallel region costs 20-50 ms per call when the cores are
    busy (threads spin-wait for each other), which turns a finite-difference check of a small CNN
    (hundreds of conv calls) into minutes. The kernels' parallel correctness is tested in tests/ops.
    """
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)
