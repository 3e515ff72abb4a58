"""batchnorm on a real GPU: the public API on CuPy arrays vs the NumPy reference (running statistics
updated in place on the device), CPU/GPU parity, bit-reproducibility for any grid, the host harness vs
the device, dispatch and validation.

Deselected by default (pyproject: -m 'not gpu'). On a machine with a GPU:

    python -m pytest -m gpu tests/cuda/test_gpu_batchnorm.py
    compute-sanitizer --tool memcheck  python -m pytest -m gpu tests/cuda/test_gpu_batchnorm.py
    compute-sanitizer --tool racecheck python -m pytest -m gpu tests/cuda/test_gpu_batchnorm.py -k reference
    compute-sanitizer --tool synccheck python -m pytest -m gpu tests/cuda/test_gpu_batchnorm.py -k reference

Asking for these tests where the GPU is not usable is an error (with the reason), not a skip.
"""

import numpy as np
import pytest

from tests.cuda.conftest import requires_cxx
from tests.cuda.test_host_batchnorm import make_inputs
from tests.helpers import assert_close, random_array, tolerance
from toolkit import backend
from toolkit.cuda import launch, modules
from toolkit.ops import batchnorm as bn
from toolkit.ops.batchnorm import cpu, gpu, reference

cp = pytest.importorskip("cupy")
pytestmark = pytest.mark.gpu

SHAPES = [(1, 3), (5, 7), (2, 5, 4), (70, 33), (3, 4, 5, 6), (300, 1), (4096, 3), (256, 1024), (8, 56, 56, 64)]
FIELDS = ("x_hat", "gamma", "mean", "var", "inv_std")


def test_dispatch_picks_the_gpu_module():
    assert backend.dispatch("batchnorm", x=cp.ones((2, 3))) is gpu
    with pytest.raises(backend.DeviceMismatchError, match="two devices"):
        backend.dispatch("batchnorm", x=cp.ones((2, 3)), gamma=np.ones(3))


@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_public_api_on_gpu_matches_reference(shape, dtype, training, rng):
    x, gamma, beta, rm, rv = make_inputs(rng, shape, dtype)
    dy = random_array(rng, shape, dtype)
    rm_ref, rv_ref = rm.copy(), rv.copy()
    rm_gpu, rv_gpu = cp.asarray(rm), cp.asarray(rv)
    y, cache = bn.batchnorm_forward(cp.asarray(x), cp.asarray(gamma), cp.asarray(beta), rm_gpu, rv_gpu,
                                    training=training, momentum=0.9, eps=1e-3)
    assert isinstance(y, cp.ndarray) and y.dtype == dtype and y.shape == shape
    assert all(isinstance(getattr(cache, f), cp.ndarray) for f in FIELDS) and cache.training is training
    y_ref, cache_ref = reference.forward(x, gamma, beta, rm_ref, rv_ref, training, 0.9, 1e-3)
    tol = tolerance(dtype)
    assert_close(cp.asnumpy(y), y_ref, **tol, name="y")
    for field in FIELDS:
        assert_close(cp.asnumpy(getattr(cache, field)), getattr(cache_ref, field), **tol, name=field)
    assert_close(cp.asnumpy(rm_gpu), rm_ref, **tol, name="running_mean (in place)")
    assert_close(cp.asnumpy(rv_gpu), rv_ref, **tol, name="running_var (in place)")
    grads = bn.batchnorm_backward(cp.asarray(dy), cache)
    for name, ours, theirs in zip(("dx", "dgamma", "dbeta"), grads, reference.backward(dy, cache_ref)):
        assert isinstance(ours, cp.ndarray) and ours.dtype == dtype
        assert_close(cp.asnumpy(ours), theirs, **tol, name=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(257, 129), (16, 28, 28, 32)], ids=lambda s: "x".join(map(str, s)))
def test_cpu_gpu_parity(shape, dtype, rng):
    x, gamma, beta, rm, rv = make_inputs(rng, shape, dtype)
    dy = random_array(rng, shape, dtype)
    rm_gpu, rv_gpu = cp.asarray(rm), cp.asarray(rv)
    y_cpu, cache_cpu = cpu.forward(x, gamma, beta, rm, rv, True, 0.99, 1e-3)
    y_gpu, cache_gpu = gpu.forward(cp.asarray(x), cp.asarray(gamma), cp.asarray(beta), rm_gpu, rv_gpu, True, 0.99,
                                   1e-3)
    tol = tolerance(dtype)
    assert_close(cp.asnumpy(y_gpu), y_cpu, **tol, name="y CPU vs GPU")
    assert_close(cp.asnumpy(rm_gpu), rm, **tol, name="running_mean CPU vs GPU")
    assert_close(cp.asnumpy(rv_gpu), rv, **tol, name="running_var CPU vs GPU")
    for ours, theirs, name in zip(gpu.backward(cp.asarray(dy), cache_gpu), cpu.backward(dy, cache_cpu),
                                  ("dx", "dgamma", "dbeta")):
        assert_close(cp.asnumpy(ours), theirs, **tol, name=f"{name} CPU vs GPU")


def test_results_are_bit_reproducible_for_any_grid(rng):
    # Chunks from the shape only, fixed summation order, no atomics: repeated runs and other grid caps give
    # the same bits on the device.
    x, gamma, beta, rm, rv = (cp.asarray(a) for a in make_inputs(rng, (16, 28, 28, 48), np.float32))
    dy = cp.asarray(random_array(rng, x.shape, np.float32))
    default = modules.target("batchnorm")
    results = []
    for target in (default, default, launch.Target("cupy-1", cp, default.get_function, 1),
                   launch.Target("cupy-7", cp, default.get_function, 7)):
        rm_i, rv_i = rm.copy(), rv.copy()
        y, cache = gpu.forward_on(target, x, gamma, beta, rm_i, rv_i, True, 0.99, 1e-3)
        results.append([cp.asnumpy(a) for a in (y, *cache[:5], rm_i, rv_i, *gpu.backward_on(target, dy, cache))])
    for other in results[1:]:
        for ours, first in zip(other, results[0]):
            assert ours.tobytes() == first.tobytes()


def test_float32_statistics_survive_a_large_mean(rng):
    x_np = (1e4 + 1e-2 * rng.standard_normal((4096, 8))).astype(np.float32)
    mean, var = gpu.statistics(cp.asarray(x_np))
    mean_ref, var_ref = reference.statistics(x_np)
    assert mean.dtype == var.dtype == cp.float64
    assert_close(cp.asnumpy(mean), mean_ref, atol=0, rtol=1e-14, name="mean")
    assert_close(cp.asnumpy(var), var_ref, atol=0, rtol=1e-10, name="var")


@requires_cxx
def test_host_harness_agrees_with_the_device(rng):
    # The harness's claim: it runs the same source with the same launch code. Check it against the GPU.
    from toolkit.cuda.host import harness

    x, gamma, beta, rm, rv = make_inputs(rng, (40, 9, 33), np.float64)
    dy = random_array(rng, x.shape)
    host = harness.target("batchnorm")
    y_host, cache_host = gpu.forward_on(host, x, gamma, beta, rm.copy(), rv.copy(), True, 0.9, 1e-3)
    y_gpu, cache_gpu = gpu.forward(*(cp.asarray(a) for a in (x, gamma, beta, rm, rv)), True, 0.9, 1e-3)
    assert_close(cp.asnumpy(y_gpu), y_host, atol=1e-13, rtol=1e-12, name="y GPU vs host harness")
    for ours, theirs in zip(gpu.backward(cp.asarray(dy), cache_gpu), gpu.backward_on(host, dy, cache_host)):
        assert_close(cp.asnumpy(ours), theirs, atol=1e-13, rtol=1e-12, name="gradients GPU vs host harness")


def test_nan_and_inf_poison_only_their_feature():
    x_np = np.array([[1.0, np.nan, 2.0, np.inf], [2.0, 0.5, 3.0, 1.0], [4.0, 0.25, -1.0, 0.0]])
    args = [np.ones(4), np.zeros(4), np.zeros(4), np.ones(4)]
    y, _ = bn.batchnorm_forward(cp.asarray(x_np), *(cp.asarray(a) for a in args))
    with np.errstate(invalid="ignore"):
        y_ref, _ = reference.forward(x_np, *args, True, 0.99, 1e-3)
    assert_close(cp.asnumpy(y), y_ref, atol=1e-12, rtol=1e-12, name="y")


def test_strided_gpu_input_is_copied(rng):
    base = cp.asarray(random_array(rng, (6, 8)))
    view = base[::2, ::2]  # (3, 4), not contiguous
    args = [np.ones(4), np.zeros(4), np.zeros(4), np.ones(4)]
    y, _ = bn.batchnorm_forward(view, *(cp.asarray(a) for a in args))
    y_ref, _ = reference.forward(cp.asnumpy(view), *args, True, 0.99, 1e-3)
    assert_close(cp.asnumpy(y), y_ref, **tolerance(np.float64), name="y of a strided view")


def test_bad_gpu_input_is_named():
    x = cp.ones((4, 3))
    ok = [cp.ones(3), cp.zeros(3), cp.zeros(3), cp.ones(3)]
    with pytest.raises(TypeError, match="x must have dtype float32 or float64; got int64"):
        bn.batchnorm_forward(cp.arange(12).reshape(4, 3), *ok)
    with pytest.raises(ValueError, match=r"gamma must have shape \(3,\); got \(4,\)"):
        bn.batchnorm_forward(x, cp.ones(4), *ok[1:])
    with pytest.raises(TypeError, match="beta must have dtype float64 like the other inputs; got float32"):
        bn.batchnorm_forward(x, ok[0], cp.zeros(3, cp.float32), *ok[2:])
    with pytest.raises(ValueError, match="running_var must be >= 0"):
        bn.batchnorm_forward(x, *ok[:3], -cp.ones(3))
    with pytest.raises(ValueError, match="running_mean is updated in place, so it must be C-contiguous"):
        bn.batchnorm_forward(x, ok[0], ok[1], cp.zeros(6)[::2], ok[3])
    with pytest.raises(backend.DeviceMismatchError, match="two devices"):
        bn.batchnorm_forward(x, np.ones(3), *ok[1:])
    _, cache = bn.batchnorm_forward(x, *ok)
    with pytest.raises(backend.DeviceMismatchError, match="two devices"):
        bn.batchnorm_backward(np.ones((4, 3)), cache)
