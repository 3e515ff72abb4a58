"""pool2d on a real GPU: the public API on CuPy arrays vs the NumPy reference, CPU/GPU parity (bit for
bit: max is a selection, sum/avg add the same cells in the same order and divide in the same dtype),
determinism of the gather backward, the host harness vs the device, dispatch and validation.

Deselected by default (pyproject: -m 'not gpu'). On a machine with a GPU:

    python -m pytest -m gpu tests/cuda/test_gpu_pool2d.py
    compute-sanitizer --tool memcheck  python -m pytest -m gpu tests/cuda/test_gpu_pool2d.py
    compute-sanitizer --tool initcheck python -m pytest -m gpu tests/cuda/test_gpu_pool2d.py

Asking for these tests where the GPU is not usable is an error (with the reason), not a skip.
"""

import numpy as np
import pytest

from tests.cuda.conftest import requires_cxx
from tests.helpers import assert_close, random_array, tolerance
from toolkit import backend
from toolkit.ops import pool2d as pool
from toolkit.ops.pool2d import cpu, geometry, gpu, reference

cp = pytest.importorskip("cupy")
pytestmark = pytest.mark.gpu

MODES = reference.MODES
CASES = [
    ((1, 2, 2, 1), 2, None, "valid"),
    ((2, 7, 5, 3), 2, None, "valid"),
    ((2, 7, 5, 3), 2, None, "same"),
    ((1, 6, 7, 2), 3, 1, "same"),
    ((3, 9, 8, 4), (3, 2), (2, 1), "valid"),
    ((2, 8, 9, 3), 2, 3, "valid"),
    ((2, 5, 6, 2), 3, 2, 1),
    ((1, 5, 6, 3), (2, 3), (1, 2), (1, 2)),
    ((2, 6, 5, 2), 3, (2, 1), ((2, 0), (1, 2))),
    ((1, 3, 3, 33), 3, 1, "same"),
    ((4, 33, 31, 70), 3, 2, "same"),
]
# Sizes that fill the GPU: VGG's first pooling on a batch, and overlapping 3x3/2 windows (ResNet's stem).
LARGE_CASES = [((16, 224, 224, 64), 2, None, "valid"), ((8, 112, 112, 64), 3, 2, "same")]


def normalised(x_shape, pool_size, stride, padding):
    pool_pair = (pool_size, pool_size) if isinstance(pool_size, int) else tuple(pool_size)
    stride_pair = pool_pair if stride is None else (stride, stride) if isinstance(stride, int) else tuple(stride)
    return pool_pair, stride_pair, geometry.resolve_padding(padding, x_shape[1:3], pool_pair, stride_pair)


def test_dispatch_picks_the_gpu_module():
    assert backend.dispatch("pool2d", x=cp.ones(3)) is gpu
    with pytest.raises(backend.DeviceMismatchError, match="two devices"):
        backend.dispatch("pool2d", dy=cp.ones(3), argmax=np.ones(3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-p{c[1]}-s{c[2]}-{c[3]}" for c in CASES])
def test_public_api_on_gpu_matches_reference(case, mode, dtype, rng):
    x_shape, pool_size, stride, padding = case
    x_np = random_array(rng, x_shape, dtype, scale=2.0)
    y, cache = pool.pool2d_forward(cp.asarray(x_np), pool_size, stride, padding, mode)
    assert isinstance(y, cp.ndarray) and y.dtype == dtype and y.shape == cache.y_shape
    y_ref, cache_ref = reference.forward(x_np, *normalised(x_shape, pool_size, stride, padding), mode)
    assert_close(cp.asnumpy(y), y_ref, **tolerance(dtype), name=f"{mode} forward")
    if mode == "max":
        assert isinstance(cache.argmax, cp.ndarray) and cache.argmax.dtype == np.int64
        assert np.array_equal(cp.asnumpy(cache.argmax), cache_ref.argmax)
    dy_np = random_array(rng, y_ref.shape, dtype)
    dx = pool.pool2d_backward(cp.asarray(dy_np), cache)
    assert isinstance(dx, cp.ndarray) and dx.shape == x_shape
    assert_close(cp.asnumpy(dx), reference.backward(dy_np, cache_ref), **tolerance(dtype), name=f"{mode} backward")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES[-3:] + LARGE_CASES, ids=lambda c: f"{c[0]}-p{c[1]}-s{c[2]}-{c[3]}")
def test_cpu_gpu_parity_bit_for_bit(case, mode, dtype, rng):
    x_shape, pool_size, stride, padding = case
    args = (*normalised(x_shape, pool_size, stride, padding), mode)
    x_np = random_array(rng, x_shape, dtype, scale=2.0)
    y_cpu, cache_cpu = cpu.forward(x_np, *args)
    y_gpu, cache_gpu = gpu.forward(cp.asarray(x_np), *args)
    assert np.array_equal(cp.asnumpy(y_gpu), y_cpu), f"{mode} forward CPU vs GPU"
    if mode == "max":
        assert np.array_equal(cp.asnumpy(cache_gpu.argmax), cache_cpu.argmax)
    dy_np = random_array(rng, y_cpu.shape, dtype)
    dx_gpu = gpu.backward(cp.asarray(dy_np), cache_gpu)
    assert np.array_equal(cp.asnumpy(dx_gpu), cpu.backward(dy_np, cache_cpu)), f"{mode} backward CPU vs GPU"
    # The gather has no atomics: running it again gives the very same bits.
    assert bool((gpu.backward(cp.asarray(dy_np), cache_gpu) == dx_gpu).all())


@requires_cxx
@pytest.mark.parametrize("mode", MODES)
def test_host_harness_agrees_with_the_device(mode, rng):
    # The harness's claim: it runs the same source with the same launch code. Check it against the GPU.
    from toolkit.cuda.host import harness

    x_np = random_array(rng, (2, 9, 8, 5), np.float32)
    args = (*normalised(x_np.shape, 3, 2, "same"), mode)
    y_host, cache_host = gpu.forward_on(harness.target("pool2d"), x_np, *args)
    y_gpu, cache_gpu = gpu.forward(cp.asarray(x_np), *args)
    assert np.array_equal(cp.asnumpy(y_gpu), y_host)
    dy_np = random_array(rng, y_host.shape, np.float32)
    assert np.array_equal(cp.asnumpy(gpu.backward(cp.asarray(dy_np), cache_gpu)),
                          gpu.backward_on(harness.target("pool2d"), dy_np, cache_host))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_inf_and_ties(dtype):
    x_np = np.array([[1.0, np.nan, 5.0, np.inf], [2.0, 7.0, -np.inf, 0.0],
                     [-np.inf, -np.inf, 3.0, 3.0], [-np.inf, -np.inf, 3.0, -np.inf]], dtype=dtype)[None, :, :, None]
    y, cache = pool.max_pool2d_forward(cp.asarray(x_np))
    y = cp.asnumpy(y)
    assert np.isnan(y[0, 0, 0, 0]) and y[0, 0, 1, 0] == np.inf and y[0, 1, 0, 0] == -np.inf and y[0, 1, 1, 0] == 3.0
    assert cp.asnumpy(cache.argmax)[0, :, :, 0].tolist() == [[1, 3], [8, 10]]  # NaN wins; ties: the first
    for mode in ("avg", "sum"):
        with np.errstate(invalid="ignore"):
            y_ref, _ = reference.forward(x_np, (2, 2), (2, 2), ((0, 0), (0, 0)), mode)
        y, _ = pool.pool2d_forward(cp.asarray(x_np), 2, 2, "valid", mode)
        assert_close(cp.asnumpy(y), y_ref, atol=0, rtol=0, name=mode)


def test_strided_gpu_input_is_copied(rng):
    base = cp.asarray(random_array(rng, (2, 8, 10, 6)))
    view = base[:, ::2, 1::2, ::3]
    y, _ = pool.max_pool2d_forward(view)
    y_ref, _ = reference.forward(cp.asnumpy(view), (2, 2), (2, 2), ((0, 0), (0, 0)), "max")
    assert np.array_equal(cp.asnumpy(y), y_ref)


def test_bad_gpu_input_is_named():
    with pytest.raises(TypeError, match="x must have dtype float32 or float64; got int64"):
        pool.pool2d_forward(cp.ones((1, 4, 4, 1), dtype=cp.int64))
    with pytest.raises(ValueError, match=r"x must have 4 dimensions; got shape \(4, 4\)"):
        pool.pool2d_forward(cp.ones((4, 4)))
    with pytest.raises(ValueError, match=r"x must not be empty; got shape \(0, 4, 4, 1\)"):
        pool.pool2d_forward(cp.ones((0, 4, 4, 1)))
    with pytest.raises(ValueError, match=r"pool_size \(5, 5\) is larger than the padded input \(4, 4\)"):
        pool.pool2d_forward(cp.ones((1, 4, 4, 1)), pool_size=5)
    _, cache = pool.max_pool2d_forward(cp.ones((1, 4, 4, 2)))
    with pytest.raises(backend.DeviceMismatchError, match="two devices"):
        pool.pool2d_backward(np.ones((1, 2, 2, 2)), cache)
    with pytest.raises(TypeError, match="dy must have dtype float64 like the other inputs; got float32"):
        pool.pool2d_backward(cp.ones((1, 2, 2, 2), cp.float32), cache)
    with pytest.raises(ValueError, match=r"dy must have shape \(1, 2, 2, 2\); got \(1, 2, 2, 1\)"):
        pool.pool2d_backward(cp.ones((1, 2, 2, 1)), cache)
