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
