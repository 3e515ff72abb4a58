import pytest


@pytest.fixture(params=["serial", "parallel"])
def kernels(request, monkeypatch):
    """Run a test with the serial kernels of the test module's ``cpu``, or with its prange kernels forced
    on whatever the size (recurrent ops also require a thread count: forced to 1)."""
    cpu = request.module.cpu
    if request.param == "parallel":
        monkeypatch.setattr(cpu, "PARALLEL_MIN_SIZE", 0)
        if hasattr(cpu, "PARALLEL_MIN_THREADS"):
            monkeypatch.setattr(cpu, "PARALLEL_MIN_THREADS", 1)
        if hasattr(cpu, "TILED_PARALLEL_MIN_MACS"):  # the LSTM's row blocks
            monkeypatch.setattr(cpu, "TILED_PARALLEL_MIN_MACS", 0)
    else:
        monkeypatch.setattr(cpu, "PARALLEL_MIN_SIZE", 1 << 62)
        if hasattr(cpu, "TILED_PARALLEL_MIN_MACS"):
            monkeypatch.setattr(cpu, "TILED_PARALLEL_MIN_MACS", 1 << 62)
    return request.param
