"""dense on a real GPU: the public API on CuPy arrays vs the NumPy reference, CPU/GPU parity, the host
harness vs the device, determinism, dispatch and validation (speed is measured by bench/, never by tests).

Deselected by default (pyproject: -m 'not gpu'). On a machine with a GPU:

    python -m pytest -m gpu tests/cuda/test_gpu_dense.py
    compute-sanitizer --tool memcheck  python -m pytest -m gpu tests/cuda/test_gpu_dense.py -k "not speed"
    compute-sanitizer --tool racecheck python -m pytest -m gpu tests/cuda/test_gpu_dense.py -k "not speed"

Asking for these tests where the GPU is not usable is an error (with the reason), not a skip.
Tolerance: per element 2 (k + 1) eps (|A| |B| + |b|), the dot-product bound (see test_host_dense.py).
"""

import numpy as np
import pytest

from tests.cuda.conftest import requires_cxx
from tests.cuda.test_host_dense import gemm_bound, inputs
from tests.helpers import assert_close, random_array
from toolkit import backend
from toolkit.cuda import modules
from toolkit.ops import dense as D
from toolkit.ops.dense import cpu, gpu, reference

cp = pytest.importorskip("cupy")
pytestmark = pytest.mark.gpu

SHAPES = [(1, 1, 1), (33, 65, 17), (70, 129, 3), (130, 7, 260), (1100, 5, 3),  # the host-test shapes
          (64, 784, 128), (256, 1024, 1024),  # the benchmark's layers
          (4097, 129, 1025),  # partial tiles everywhere at scale, many tiles
          (20000, 64, 10)]  # dW over a deep batch: split-k into 16 slices


def to_gpu(*arrays):
    return tuple(None if a is None else cp.asarray(a) for a in arrays)


def test_dispatch_picks_the_gpu_module():
    assert backend.dispatch("dense", x=cp.ones((2, 3))) is gpu
    with pytest.raises(backend.DeviceMismatchError, match="two devices"):
        D.dense_forward(cp.ones((2, 3)), np.ones((3, 4)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_dense_on_gpu_matches_reference(shape, bias, dtype, rng):
    x, W, b, dy = inputs(rng, *shape, dtype, bias)
    n, fan_in, fan_out = shape
    y, cache = D.dense_forward(*to_gpu(x, W, b))
    assert isinstance(y, cp.ndarray) and y.dtype == dtype and y.shape == (n, fan_out)
    dx, dW, db = D.dense_backward(cp.asarray(dy), cache)
    y_ref, cache_ref = reference.forward(x, W, b)
    dx_ref, dW_ref, db_ref = reference.backward(dy, cache_ref)
    assert_close(cp.asnumpy(y), y_ref, atol=gemm_bound(x, W, fan_in, dtype, b), rtol=0, name="y")
    assert_close(cp.asnumpy(dx), dx_ref, atol=gemm_bound(dy, W.T, fan_out, dtype), rtol=0, name="dx")
    assert_close(cp.asnumpy(dW), dW_ref, atol=gemm_bound(x.T, dy, n, dtype), rtol=0, name="dW")
    if bias:
        assert_close(cp.asnumpy(db), db_ref, atol=gemm_bound(np.ones((1, n)), dy, n, dtype)[0], rtol=0, name="db")
    else:
        assert db is None


@pytest.mark.slow
def test_large_square_product_matches_cublas(rng):
    # 2048^3 in float32 against cuBLAS (a baseline here, never the implementation) and the float64 product.
    a = cp.asarray(random_array(rng, (2048, 2048), np.float32))
    b = cp.asarray(random_array(rng, (2048, 2048), np.float32))
    ours = cp.asnumpy(gpu.gemm_on(modules.target("dense"), a, b, None))
    exact = cp.asnumpy(a.astype(cp.float64) @ b.astype(cp.float64))
    bound = gemm_bound(cp.asnumpy(a), cp.asnumpy(b), 2048, np.float32) / 2
    assert_close(ours, exact, atol=bound, rtol=0, name="ours vs exact")
    assert_close(cp.asnumpy(a @ b), exact, atol=bound, rtol=0, name="cuBLAS vs exact")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cpu_gpu_parity(dtype, rng):
    x, W, b, dy = inputs(rng, 257, 129, 65, dtype)
    y_cpu, cache_cpu = cpu.forward(x, W, b)
    y_gpu, cache_gpu = gpu.forward(*to_gpu(x, W, b))
    assert_close(cp.asnumpy(y_gpu), y_cpu, atol=gemm_bound(x, W, 129, dtype, b), rtol=0, name="y CPU vs GPU")
    bounds = [gemm_bound(dy, W.T, 65, dtype), gemm_bound(x.T, dy, 257, dtype),
              gemm_bound(np.ones((1, 257)), dy, 257, dtype)[0]]
    for got, want, bound, name in zip(gpu.backward(cp.asarray(dy), cache_gpu), cpu.backward(dy, cache_cpu), bounds,
                                      ("dx", "dW", "db")):
        assert_close(cp.asnumpy(got), want, atol=bound, rtol=0, name=f"{name} CPU vs GPU")


@requires_cxx
def test_host_harness_agrees_with_the_device(rng):
    # The harness's claim: it runs the same source with the same launch code. Check it against the GPU.
    from toolkit.cuda.host import harness

    x, W, b, dy = inputs(rng, 130, 65, 33, np.float32)
    target = harness.target("dense")
    y_host, cache_host = gpu.forward_on(target, x, W, b)
    y_gpu, cache_gpu = gpu.forward(*to_gpu(x, W, b))
    assert_close(cp.asnumpy(y_gpu), y_host, atol=gemm_bound(x, W, 65, np.float32, b), rtol=0, name="y")
    for got, want, name in zip(gpu.backward(cp.asarray(dy), cache_gpu), gpu.backward_on(target, dy, cache_host),
                               ("dx", "dW", "db")):
        assert_close(cp.asnumpy(got), want, atol=1e-4, rtol=1e-4, name=f"{name} GPU vs host harness")


def test_results_are_deterministic(rng):
    # No atomics anywhere (split-k slices and db chunks are summed in a fixed order): the same bits every run.
    x, W, b, dy = to_gpu(*inputs(rng, 20000, 64, 10, np.float32))
    runs = []
    for _ in range(3):
        y, cache = D.dense_forward(x, W, b)
        runs.append([cp.asnumpy(a) for a in (y, *D.dense_backward(dy, cache))])
    for other in runs[1:]:
        for a, c in zip(runs[0], other):
            assert np.array_equal(a, c)


def test_nan_and_inf_propagate_like_the_reference():
    x = np.array([[1.0, np.nan, 2.0], [np.inf, 0.0, 1.0], [1.0, 2.0, 3.0]])
    W = np.array([[1.0, 0.0], [2.0, -1.0], [0.5, 0.25]])
    y, _ = D.dense_forward(cp.asarray(x), cp.asarray(W))
    with np.errstate(invalid="ignore"):
        y_ref, _ = reference.forward(x, W, None)
    assert_close(cp.asnumpy(y), y_ref, atol=1e-12, rtol=1e-12, name="y")


def test_strided_gpu_input_is_copied(rng):
    base = cp.asarray(random_array(rng, (12, 10)))
    x = base[::2, ::2]  # (6, 5), not contiguous
    W = cp.asarray(random_array(rng, (8, 5))).T  # (5, 8), Fortran-ordered
    y, cache = D.dense_forward(x, W)
    x_np, W_np = cp.asnumpy(x), cp.asnumpy(W)
    assert_close(cp.asnumpy(y), x_np @ W_np, atol=1e-13, rtol=1e-13, name="y of strided inputs")
    dx, dW, _ = D.dense_backward(cp.ones((6, 8)), cache)
    assert_close(cp.asnumpy(dW), x_np.T @ np.ones((6, 8)), atol=1e-13, rtol=1e-13, name="dW")


def test_bad_gpu_input_is_named():
    with pytest.raises(TypeError, match="x must have dtype float32 or float64; got int64"):
        D.dense_forward(cp.arange(6).reshape(2, 3), cp.ones((3, 2)))
    with pytest.raises(ValueError, match=r"W must have shape \(3, any\)"):
        D.dense_forward(cp.ones((2, 3)), cp.ones((4, 2)))
    with pytest.raises(ValueError, match=r"b must have shape \(2,\)"):
        D.dense_forward(cp.ones((2, 3)), cp.ones((3, 2)), cp.ones(3))
    _, cache = D.dense_forward(cp.ones((2, 3)), cp.ones((3, 2)))
    with pytest.raises(backend.DeviceMismatchError, match="two devices"):
        D.dense_backward(np.ones((2, 2)), cache)
