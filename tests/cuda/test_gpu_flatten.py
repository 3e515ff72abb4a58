"""flatten on a real GPU: the public API on CuPy arrays is a view of the input (no kernel, no copy) with
the reference's values and Keras' feature order; dispatch, strided input and validation.

Deselected by default (pyproject: -m 'not gpu'). On a machine with a GPU:

    python -m pytest -m gpu tests/cuda/test_gpu_flatten.py

Asking for these tests where the GPU is not usable is an error (with the reason), not a skip.
"""

import numpy as np
import pytest

from tests.helpers import random_array
from toolkit import backend
from toolkit.ops import flatten as fl
from toolkit.ops.flatten import gpu, reference

cp = pytest.importorskip("cupy")
pytestmark = pytest.mark.gpu


def test_dispatch_picks_the_gpu_module():
    assert backend.dispatch("flatten", x=cp.ones((2, 3))) is gpu
    assert backend.dispatch("flatten", dy=cp.ones((2, 3))) is gpu


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 5, 5, 16), (3, 4, 2, 5), (2, 7), (4,), (16, 7, 7, 512)])
def test_public_api_on_gpu_is_a_view_equal_to_the_reference(shape, dtype, rng):
    x_np = random_array(rng, shape, dtype)
    x = cp.asarray(x_np)
    y, cache = fl.flatten_forward(x)
    y_ref, cache_ref = reference.forward(x_np)
    assert isinstance(y, cp.ndarray) and y.dtype == dtype and cache == cache_ref
    assert y.data.ptr == x.data.ptr  # the same device memory: nothing was copied or launched
    assert np.array_equal(cp.asnumpy(y), y_ref)
    dy_np = random_array(rng, y_ref.shape, dtype)
    dy = cp.asarray(dy_np)
    dx = fl.flatten_backward(dy, cache)
    assert isinstance(dx, cp.ndarray) and dx.shape == shape and dx.data.ptr == dy.data.ptr
    assert np.array_equal(cp.asnumpy(dx), reference.backward(dy_np, cache_ref))


def test_keras_feature_order():
    x = cp.arange(2 * 3 * 4 * 5, dtype=cp.float64).reshape(2, 3, 4, 5)
    y, _ = fl.flatten_forward(x)
    assert float(y[1, (2 * 4 + 3) * 5 + 4]) == float(x[1, 2, 3, 4])


def test_strided_gpu_input_is_copied_then_flattened(rng):
    base = cp.asarray(random_array(rng, (4, 6, 6)))
    view = base[::2, 1::2, ::3]
    y, cache = fl.flatten_forward(view)
    assert np.array_equal(cp.asnumpy(y), cp.asnumpy(view).reshape(2, -1))
    assert y.data.ptr != base.data.ptr
    assert fl.flatten_backward(cp.ones((2, 6))[:, ::-1], cache).shape == view.shape


def test_nan_and_inf_pass_through_unchanged():
    x = cp.asarray([[[np.nan, np.inf], [-np.inf, -0.0]]])
    y = cp.asnumpy(fl.flatten_forward(x)[0])
    assert np.isnan(y[0, 0]) and y[0, 1] == np.inf and y[0, 2] == -np.inf and np.signbit(y[0, 3])


def test_bad_gpu_input_is_named():
    with pytest.raises(TypeError, match="x must have dtype float32 or float64; got int64"):
        fl.flatten_forward(cp.ones((2, 3), dtype=cp.int64))
    with pytest.raises(ValueError, match=r"x must not be empty; got shape \(0, 3\)"):
        fl.flatten_forward(cp.ones((0, 3)))
    _, cache = fl.flatten_forward(cp.ones((2, 3, 4), cp.float32))
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 12\); got \(12, 2\)"):
        fl.flatten_backward(cp.ones((12, 2), cp.float32), cache)
    with pytest.raises(TypeError, match="dy must have dtype float32 like the other inputs; got float64"):
        fl.flatten_backward(cp.ones((2, 12)), cache)
    with pytest.raises(backend.DeviceMismatchError, match="two devices"):
        backend.dispatch("flatten", dy=np.ones((2, 12)), x=cp.ones(1))
