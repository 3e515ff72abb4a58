"""activations on a real GPU: the public API on CuPy arrays vs the NumPy reference, CPU/GPU parity,
the host harness vs the device, dispatch and validation.

Deselected by default (pyproject: -m 'not gpu'). On a machine with a GPU:

    python -m pytest -m gpu tests/cuda/test_gpu_activations.py
    compute-sanitizer --tool memcheck  python -m pytest -m gpu tests/cuda/test_gpu_activations.py
    compute-sanitizer --tool racecheck python -m pytest -m gpu tests/cuda/test_gpu_activations.py -k softmax

Asking for these tests where the GPU is not usable is an error (with the reason), not a skip.
"""

import numpy as np
import pytest

from tests.cuda.conftest import requires_cxx
from tests.helpers import assert_close, random_array, tolerance
from toolkit import backend
from toolkit.ops import activations as act
from toolkit.ops.activations import cpu, gpu, reference

cp = pytest.importorskip("cupy")
pytestmark = pytest.mark.gpu

PARAMS = {"binary_step": {"threshold": 0.3}, "bipolar_step": {"threshold": -0.2},
          "sigmoid": {"steepness": 2.0}, "bipolar_sigmoid": {"steepness": 0.5}, "leaky_relu": {"alpha": 0.1}}
ELEMENTWISE_SHAPES = [(1,), (31,), (33,), (1025,), (3, 5), (2, 3, 4), (1_000_003,)]
SOFTMAX_SHAPES = [((1, 1), -1), ((3, 5), -1), ((2, 33), -1), ((5, 1025), -1), ((7, 4), 0), ((2, 3, 40), 1),
                  ((64, 100_000), -1), ((20_000, 10), -1)]


def full_params(name, **extra):
    return {**reference.PARAMETERS.get(name, {}), **PARAMS.get(name, {}), **extra}


def on_gpu_vs_reference(name, x_np, dy_np, params):
    x, dy = cp.asarray(x_np), cp.asarray(dy_np)
    y, cache = act.activation_forward(x, name, **PARAMS.get(name, {}), **params)
    assert isinstance(y, cp.ndarray) and y.dtype == x.dtype and y.shape == x.shape
    dx = act.activation_backward(dy, cache)
    assert isinstance(dx, cp.ndarray)
    y_ref, cache_ref = reference.forward(name, x_np, **full_params(name, **params))
    dtype = x_np.dtype
    assert_close(cp.asnumpy(y), y_ref, **tolerance(dtype), name=f"{name} forward")
    assert_close(cp.asnumpy(dx), reference.backward(dy_np, cache_ref), **tolerance(dtype), name=f"{name} backward")


def test_dispatch_picks_the_gpu_module():
    assert backend.dispatch("activations", x=cp.ones(3)) is gpu
    with pytest.raises(backend.DeviceMismatchError, match="two devices"):
        backend.dispatch("activations", x=cp.ones(3), dy=np.ones(3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES)
@pytest.mark.parametrize("name", reference.ELEMENTWISE)
def test_elementwise_on_gpu_matches_reference(name, shape, dtype, rng):
    on_gpu_vs_reference(name, random_array(rng, shape, dtype, scale=3.0), random_array(rng, shape, dtype), {})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", SOFTMAX_SHAPES)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_on_gpu_matches_reference(name, shape, axis, dtype, rng):
    on_gpu_vs_reference(name, random_array(rng, shape, dtype, scale=4.0), random_array(rng, shape, dtype),
                        {"axis": axis})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", reference.ALL)
def test_cpu_gpu_parity(name, dtype, rng):
    x_np = random_array(rng, (257, 129), dtype, scale=3.0)
    dy_np = random_array(rng, x_np.shape, dtype)
    params = full_params(name, **({"axis": 1} if name in reference.ALONG_AXIS else {}))
    y_cpu, cache_cpu = cpu.forward(name, x_np, **params)
    y_gpu, cache_gpu = gpu.forward(name, cp.asarray(x_np), **params)
    assert_close(cp.asnumpy(y_gpu), y_cpu, **tolerance(dtype), name=f"{name} forward CPU vs GPU")
    assert_close(cp.asnumpy(gpu.backward(cp.asarray(dy_np), cache_gpu)), cpu.backward(dy_np, cache_cpu),
                 **tolerance(dtype), name=f"{name} backward CPU vs GPU")


@requires_cxx
@pytest.mark.parametrize("name", ["sigmoid", "softmax", "log_softmax"])
def test_host_harness_agrees_with_the_device(name, rng):
    # The harness's claim: it runs the same source with the same launch code. Check it against the GPU.
    from toolkit.cuda.host import harness

    x_np = random_array(rng, (5, 1025), np.float32, scale=3.0)
    params = full_params(name, **({"axis": 1} if name in reference.ALONG_AXIS else {}))
    y_host, _ = gpu.forward_on(harness.target("activations"), name, x_np, **params)
    y_gpu, _ = gpu.forward(name, cp.asarray(x_np), **params)
    assert_close(cp.asnumpy(y_gpu), y_host, atol=1e-6, rtol=1e-5, name=f"{name} GPU vs host harness")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["sigmoid", "bipolar_sigmoid", "tanh", "softmax", "log_softmax"])
def test_large_inputs_do_not_overflow(name, dtype):
    x = cp.asarray(np.array([[-1e4, -50.0, 0.0, 50.0, 1e4]], dtype=dtype))
    y, cache = act.activation_forward(x, name)
    dx = act.activation_backward(cp.ones_like(x), cache)
    assert bool(cp.isfinite(y).all()) and bool(cp.isfinite(dx).all())


def test_nan_and_inf_follow_ieee():
    x_np = np.array([np.nan, np.inf, -np.inf, 0.5, -0.0])
    for name in reference.ELEMENTWISE:
        y, _ = act.activation_forward(cp.asarray(x_np), name)
        y_ref, _ = reference.forward(name, x_np, **reference.PARAMETERS.get(name, {}))
        assert_close(cp.asnumpy(y), y_ref, atol=1e-12, rtol=1e-12, name=name)


def test_strided_gpu_input_is_copied(rng):
    base = cp.asarray(random_array(rng, (6, 8)))
    view = base[::2, ::3]
    y, _ = act.tanh_forward(view)
    assert_close(cp.asnumpy(y), np.tanh(cp.asnumpy(view)), atol=1e-15, rtol=1e-15, name="tanh of a strided view")
    y, _ = act.softmax_forward(view, axis=0)
    assert_close(cp.asnumpy(y), reference.softmax(cp.asnumpy(view), 0), atol=1e-15, rtol=1e-12, name="softmax")


def test_bad_gpu_input_is_named():
    with pytest.raises(TypeError, match="x must have dtype float32 or float64; got int64"):
        act.sigmoid_forward(cp.arange(4))
    with pytest.raises(ValueError, match=r"x must not be empty; got shape \(0, 3\)"):
        act.sigmoid_forward(cp.ones((0, 3)))
    _, cache = act.relu_forward(cp.ones((2, 3)))
    with pytest.raises(backend.DeviceMismatchError, match="two devices"):
        act.activation_backward(np.ones((2, 3)), cache)
    with pytest.raises(TypeError, match="dy must have dtype float64 like the other inputs; got float32"):
        act.activation_backward(cp.ones((2, 3), cp.float32), cache)
