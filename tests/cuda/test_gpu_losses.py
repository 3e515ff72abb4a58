"""losses on a real GPU: the public API on CuPy arrays vs the NumPy reference, CPU/GPU parity, the host
harness vs the device, determinism, dispatch and validation.

Deselected by default (pyproject: -m 'not gpu'). On a machine with a GPU:

    python -m pytest -m gpu tests/cuda/test_gpu_losses.py
    compute-sanitizer --tool memcheck  python -m pytest -m gpu tests/cuda/test_gpu_losses.py
    compute-sanitizer --tool racecheck python -m pytest -m gpu tests/cuda/test_gpu_losses.py -k softmax

Asking for these tests where the GPU is not usable is an error (with the reason), not a skip.
Tolerances are tests/helpers.tolerance(dtype).
"""

import numpy as np
import pytest

from tests.cuda.conftest import requires_cxx
from tests.cuda.test_host_losses import CASE_IDS, CASES, full_params, inputs
from tests.helpers import assert_close, tolerance
from toolkit import backend
from toolkit.ops import losses as L
from toolkit.ops.losses import cpu, gpu, reference

cp = pytest.importorskip("cupy")
pytestmark = pytest.mark.gpu

SHAPES = [(1,), (7,), (3, 5), (2, 3, 33), (9000,), (1_000_003,), (4096, 1000)]
ROW_SHAPES = [((4, 3), 0), ((2, 3, 5), 1), ((20, 32), -1), ((3, 256), -1), ((2, 257), -1),
              ((100_000, 10), -1), ((64, 50_000), -1)]


def on_gpu_vs_reference(name, params, y_np, t_np, dloss=0.7):
    y, t = cp.asarray(y_np), cp.asarray(t_np)
    loss, cache = L.loss_forward(name, y, t, **params)
    assert isinstance(loss, cp.ndarray) and loss.shape == () and loss.dtype == y.dtype
    dy = L.loss_backward(cache, dloss)
    assert isinstance(dy, cp.ndarray) and dy.shape == y.shape and dy.dtype == y.dtype
    full = full_params(name, params, y_np.ndim, params.get("axis", -1))
    loss_ref, cache_ref = reference.forward(name, y_np, t_np, **full)
    tol = tolerance(y_np.dtype)
    assert_close(cp.asnumpy(loss), loss_ref, **tol, name=f"{name} loss")
    assert_close(cp.asnumpy(dy), reference.backward(cache_ref, dloss), **tol, name=f"{name} gradient")


def test_dispatch_picks_the_gpu_module():
    assert backend.dispatch("losses", y=cp.ones(3), t=cp.ones(3)) is gpu
    with pytest.raises(backend.DeviceMismatchError, match="two devices"):
        L.loss_forward("mse", cp.ones(3), np.ones(3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name,params", CASES, ids=CASE_IDS)
def test_losses_on_gpu_match_reference(name, params, shape, dtype, rng):
    y, t = inputs(name, params, shape, dtype, rng)
    on_gpu_vs_reference(name, params, y, t)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", ROW_SHAPES, ids=lambda v: str(v))
@pytest.mark.parametrize("name", ["categorical_crossentropy", "softmax_crossentropy"])
def test_class_axis_and_row_widths_on_gpu(name, shape, axis, dtype, rng):
    y, t = inputs(name, {}, shape, dtype, rng, axis)
    on_gpu_vs_reference(name, {"axis": axis}, y, t)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,params", CASES, ids=CASE_IDS)
def test_cpu_gpu_parity(name, params, dtype, rng):
    y, t = inputs(name, params, (257, 129), dtype, rng)
    full = full_params(name, params, 2)
    loss_cpu, cache_cpu = cpu.forward(name, y, t, **full)
    loss_gpu, cache_gpu = gpu.forward(name, cp.asarray(y), cp.asarray(t), **full)
    assert_close(cp.asnumpy(loss_gpu), loss_cpu, **tolerance(dtype), name=f"{name} loss CPU vs GPU")
    assert_close(cp.asnumpy(gpu.backward(cache_gpu, 0.3)), cpu.backward(cache_cpu, 0.3), **tolerance(dtype),
                 name=f"{name} gradient CPU vs GPU")


@requires_cxx
@pytest.mark.parametrize("name,params", CASES, ids=CASE_IDS)
def test_host_harness_agrees_with_the_device(name, params, rng):
    # The harness's claim: it runs the same source with the same launch code. Check it against the GPU.
    from toolkit.cuda.host import harness

    y, t = inputs(name, params, (40, 300), np.float32, rng)
    full = full_params(name, params, 2)
    target = harness.target("losses")
    loss_host, cache_host = gpu.forward_on(target, name, y, t, **full)
    loss_gpu, cache_gpu = gpu.forward(name, cp.asarray(y), cp.asarray(t), **full)
    assert_close(cp.asnumpy(loss_gpu), loss_host, atol=1e-6, rtol=1e-5, name=f"{name} GPU vs host harness")
    assert_close(cp.asnumpy(gpu.backward(cache_gpu)), gpu.backward_on(target, cache_host), atol=1e-6, rtol=1e-5,
                 name=f"{name} gradient GPU vs host harness")


@pytest.mark.parametrize("name,params", CASES, ids=CASE_IDS)
def test_the_loss_is_deterministic(name, params, rng):
    # Fixed chunks, fixed summation order, no atomics: the same bits on every run.
    y, t = (cp.asarray(a) for a in inputs(name, params, (3000, 333), np.float32, rng))
    full = full_params(name, params, 2)
    first = cp.asnumpy(gpu.forward(name, y, t, **full)[0])
    for _ in range(3):
        assert cp.asnumpy(gpu.forward(name, y, t, **full)[0]).tobytes() == first.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_logits_do_not_overflow(dtype):
    z = np.array([[-1e4, -50.0, 0.0, 50.0, 1e4], [1e4, 1e4, -1e4, 0.0, 3.0]], dtype=dtype)
    t = np.array([[0.0, 0.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.0, 0.0, 0.0]], dtype=dtype)
    for name, params in [("softmax_crossentropy", {}), ("binary_crossentropy", {"from_logits": True})]:
        loss, cache = L.loss_forward(name, cp.asarray(z), cp.asarray(t), **params)
        dz = L.loss_backward(cache)
        assert bool(cp.isfinite(loss)) and bool(cp.isfinite(dz).all())
        on_gpu_vs_reference(name, params, z, t)


@pytest.mark.parametrize("name,params", CASES, ids=CASE_IDS)
def test_nan_and_inf_follow_the_reference(name, params):
    y = np.array([[0.5, np.nan, 0.2], [np.inf, 0.1, 0.3], [0.2, 0.3, 0.5], [-np.inf, 0.5, 0.5]])
    t = np.array([[0.2, 0.3, 0.5], [0.0, 1.0, 0.0], [np.nan, 0.5, 0.5], [0.0, 0.5, 0.5]])
    loss, cache = L.loss_forward(name, cp.asarray(y), cp.asarray(t), **params)
    full = full_params(name, params, 2)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        loss_ref, cache_ref = reference.forward(name, y, t, **full)
        dy_ref = reference.backward(cache_ref)
    assert_close(cp.asnumpy(loss), loss_ref, atol=1e-12, rtol=1e-12, name=f"{name} loss")
    assert_close(cp.asnumpy(L.loss_backward(cache)), dy_ref, atol=1e-12, rtol=1e-12, name=f"{name} gradient")


def test_strided_gpu_input_is_copied(rng):
    base_y, base_t = cp.asarray(rng.standard_normal((6, 8))), cp.asarray(rng.standard_normal((6, 8)))
    y, t = base_y[::2, ::3], base_t[::2, ::3]
    loss, cache = L.mse_forward(y, t)
    y_np, t_np = cp.asnumpy(y), cp.asnumpy(t)
    assert_close(cp.asnumpy(loss), ((y_np - t_np) ** 2).mean(), atol=1e-15, rtol=1e-13, name="mse of strided views")
    loss, cache = L.softmax_crossentropy_forward(y, t, axis=0)
    assert_close(cp.asnumpy(loss), reference.forward("softmax_crossentropy", y_np, t_np, axis=0)[0], atol=1e-15,
                 rtol=1e-12, name="softmax cross-entropy of strided views")


def test_bad_gpu_input_is_named():
    with pytest.raises(TypeError, match="y must have dtype float32 or float64; got int64"):
        L.mse_forward(cp.arange(4), cp.arange(4))
    with pytest.raises(ValueError, match=r"y must not be empty; got shape \(0, 3\)"):
        L.mse_forward(cp.ones((0, 3)), cp.ones((0, 3)))
    with pytest.raises(TypeError, match="t must have dtype float64 like the other inputs; got float32"):
        L.mse_forward(cp.ones(3), cp.ones(3, cp.float32))
    _, cache = L.mse_forward(cp.ones(3), cp.zeros(3))
    with pytest.raises(ValueError, match=r"dloss must be a scalar"):
        L.loss_backward(cache, cp.ones(2))
