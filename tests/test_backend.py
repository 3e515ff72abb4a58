"""The backend switch: selection, context manager, environment variable, arrays, dispatch."""

import os
import subprocess
import sys

import numpy as np
import pytest

from toolkit import backend
from toolkit.info import collect


def test_default_and_use_as_context_manager():
    assert backend.current() == "cpu"
    with backend.use("auto") as chosen:
        assert backend.requested() == "auto"
        assert backend.current() == ("gpu" if backend.gpu_available() else "cpu")
        assert "toolkit backend" in repr(chosen)
    assert backend.current() == "cpu" and backend.requested() == "cpu"


def test_use_without_with_takes_effect_now():
    backend.use("cpu")
    assert backend.current() == "cpu"


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match=r"backend must be one of \('cpu', 'gpu', 'auto'\); got 'tpu'"):
        backend.use("tpu")


@pytest.mark.skipif(backend.gpu_available(), reason="this machine has a usable GPU")
def test_gpu_without_gpu_raises_with_reason():
    usable, reason = backend.gpu_status()
    assert not usable and reason
    with pytest.raises(backend.BackendError, match="GPU backend was asked for but cannot work: " + reason[:20]):
        backend.use("gpu")
    with pytest.raises(backend.BackendError):
        backend.to_device(np.ones(3), "gpu")


@pytest.mark.skipif(backend.gpu_available(), reason="this machine has a usable GPU")
def test_auto_falls_back_and_says_so_once(capfd):
    backend._say_fallback_once.cache_clear()
    with backend.use("auto"):
        pass
    with backend.use("auto"):
        pass
    err = capfd.readouterr().err
    assert err.count("backend 'auto' uses the CPU") == 1


def _run_with_env(value):
    code = "from toolkit import backend; print(backend.requested(), backend.current())"
    env = {**os.environ, backend.ENV_VAR: value}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


def test_environment_variable_selects_backend():
    out = _run_with_env("cpu")
    assert out.returncode == 0 and out.stdout.split() == ["cpu", "cpu"]
    bad = _run_with_env("quantum")
    assert bad.returncode != 0 and "TOOLKIT_BACKEND must be one of" in bad.stderr


def test_asarray_and_to_numpy_on_cpu():
    a = backend.asarray([1, 2, 3])
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    b = backend.asarray(np.arange(3.0))
    assert b.dtype == np.float64
    assert backend.asarray(np.arange(3.0), dtype=np.float32).dtype == np.float32
    assert backend.to_numpy(b) is b or np.shares_memory(backend.to_numpy(b), b)
    assert backend.xp() is np and backend.array_module(b) is np
    with pytest.raises(ValueError, match="device must be 'cpu' or 'gpu'; got 'tpu'"):
        backend.to_device(b, "tpu")


class _FakeGpuArray:
    """Stands in for a CuPy array: the backend recognises CuPy by the type's module."""
    __module__ = "cupy._core.core"


def test_dispatch_by_input_device_and_mixed_devices_raise():
    x = np.ones(3)
    assert backend.device_of(x=x, b=None) == "cpu"
    assert backend.dispatch("activations", x=x).__name__ == "toolkit.ops.activations.cpu"
    fake = _FakeGpuArray()
    assert backend.device_of(x=fake) == "gpu"
    with pytest.raises(backend.DeviceMismatchError, match="x on the CPU .* W on the GPU"):
        backend.device_of(x=x, W=fake)


def test_info_reports_versions_and_gpu_reason():
    info = collect()
    for key in ("Python", "NumPy", "BLAS (toolkit.blas.gemm)", "Numba", "SciPy", "SymPy", "CuPy", "backend", "GPU", "NVRTC"):
        assert key in info and info[key]
    assert "threading layer" in info["Numba"]
    out = subprocess.run([sys.executable, "-m", "toolkit", "info"], capture_output=True, text=True)
    assert out.returncode == 0 and "NVRTC" in out.stdout
