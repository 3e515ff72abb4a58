import re

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Hypothesis: bounded and deterministic so the suite stays quick and repeatable on 2 cores.
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _cpu_backend():
    """Every test starts on the CPU backend and leaves it there."""
    from toolkit import backend

    with backend.use("cpu"):
        yield


# Tests whose outcome a machine's BLAS kernel could change: NaN/Inf propagation (and the warnings NumPy
# raises when a kernel sets the CPU's invalid flag) and rendered text. Marked by name, so a new
# test_nan_... is covered without anyone remembering; tests/test_portability.py runs them once per
# OpenBLAS core type the CPU supports.
_NON_FINITE_NAME = re.compile(r"(^|_)(nan|inf|infinity|infinite|non_finite|nonfinite|ieee|overflow)(_|$)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = getattr(item, "originalname", None) or item.name
        if _NON_FINITE_NAME.search(name):
            item.add_marker(pytest.mark.portability)
