"""flatten's GPU side (toolkit/ops/flatten/gpu.py) on the host: no GPU, no CuPy, and no kernel.

flatten has no .cu: a reshape of a C-contiguous array is a view (see gpu.py). These tests run gpu.py's
forward_on/backward_on with a launch target that *fails* if asked for a kernel or an array, proving
that nothing is launched or allocated, and hold the results to the reference bit for bit: the same
values, the same feature order, the same cache, a view of the input.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.helpers import random_array
from toolkit.cuda import launch, sources
from toolkit.ops.flatten import cpu, gpu, reference


class _NoArrays:
    def __getattr__(self, name):
        raise AssertionError(f"flatten's gpu.py asked its target's array module for {name!r}: it must not allocate")


def _no_kernel(expression):
    raise AssertionError(f"flatten's gpu.py asked for kernel {expression!r}: it must not launch any")


NO_LAUNCH = launch.Target(name="no-launch", xp=_NoArrays(), get_function=_no_kernel, max_grid_blocks=3)


def test_flatten_has_no_kernel_source():
    with pytest.raises(FileNotFoundError, match="has no CUDA source"):
        sources.op_source("flatten")
    assert all(p.parent.name != "flatten" for p in sources.cu_files())


def test_gpu_module_mirrors_cpu():
    for name in ("forward", "backward"):
        assert callable(getattr(gpu, name)) and callable(getattr(cpu, name))
    assert gpu.FlattenCache is cpu.FlattenCache is reference.FlattenCache


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 5, 5, 16), (3, 4, 2, 5), (2, 7), (4,), (2, 1, 3, 1, 2), (1, 1)])
def test_forward_and_backward_are_views_equal_to_the_reference(shape, dtype, rng):
    x = random_array(rng, shape, dtype)
    y, cache = gpu.forward_on(NO_LAUNCH, x)
    y_ref, cache_ref = reference.forward(x)
    assert cache == cache_ref and type(cache) is type(cache_ref)
    assert y.shape == y_ref.shape == cache.y_shape and y.dtype == dtype
    assert np.array_equal(y, y_ref) and np.shares_memory(y, x)  # a view: no copy, no kernel
    dy = random_array(rng, y.shape, dtype)
    dx = gpu.backward_on(NO_LAUNCH, dy, cache)
    assert dx.shape == shape and dx.dtype == dtype and np.shares_memory(dx, dy)
    assert np.array_equal(dx, reference.backward(dy, cache_ref))
    assert np.array_equal(gpu.backward_on(NO_LAUNCH, y, cache), x)  # the exact round trip


def test_public_gpu_functions_use_the_same_code(rng):
    # gpu.forward/backward need no CuPy module of their own: on NumPy arrays they behave identically.
    x = random_array(rng, (2, 3, 4, 5))
    y, cache = gpu.forward(x)
    assert np.array_equal(y, x.reshape(2, 60)) and np.shares_memory(y, x)
    assert np.array_equal(gpu.backward(y, cache), x)


def test_keras_feature_order_and_caches_interchangeable_with_cpu():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    y, cache = gpu.forward_on(NO_LAUNCH, x)
    assert y[1, (2 * 4 + 3) * 5 + 4] == x[1, 2, 3, 4]  # feature (h*W + w)*C + c
    _, cache_cpu = cpu.forward(x)
    assert np.array_equal(cpu.backward(y, cache), gpu.backward_on(NO_LAUNCH, y, cache_cpu))


@given(x=hnp.arrays(st.sampled_from([np.float32, np.float64]), hnp.array_shapes(min_dims=1, max_dims=5, max_side=5),
                    elements=st.floats(allow_nan=True, allow_infinity=True, width=32)))
def test_property_round_trip_is_exact(x):
    y, cache = gpu.forward_on(NO_LAUNCH, x)
    assert y.shape == (x.shape[0], x.size // x.shape[0]) and y.dtype == x.dtype
    assert np.array_equal(y.ravel(), x.ravel(), equal_nan=True)
    dx = gpu.backward_on(NO_LAUNCH, y, cache)
    assert dx.shape == x.shape and np.array_equal(dx, x, equal_nan=True)
