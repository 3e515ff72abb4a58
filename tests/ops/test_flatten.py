"""flatten: the Keras feature order, the exact round trip, gradient vs finite differences, bad input."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.helpers import assert_close, check_gradient, random_array
from toolkit.ops import flatten as fl
from toolkit.ops.flatten import cpu, reference


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 5, 5, 16), (3, 4, 2, 5), (2, 7), (4,), (2, 1, 3, 1, 2)])
def test_forward_and_backward(shape, dtype, rng):
    x = random_array(rng, shape, dtype)
    y, cache = fl.flatten_forward(x)
    n = shape[0]
    assert y.shape == (n, int(np.prod(shape[1:], dtype=np.int64))) and y.dtype == dtype
    y_ref, cache_ref = reference.forward(x)
    assert np.array_equal(y, y_ref) and cache == cache_ref  # cpu.py is the reference: reshape is metadata only
    dy = random_array(rng, y.shape, dtype)
    dx = fl.flatten_backward(dy, cache)
    assert dx.shape == shape and dx.dtype == dtype
    assert np.array_equal(dx.reshape(y.shape), dy)
    assert np.array_equal(fl.flatten_backward(y, cache), x)  # the exact round trip


def test_feature_order_is_keras_channels_last():
    # Keras flattens (N, H, W, C) row-major: feature (h*W + w)*C + c.
    n, h, w, c = 2, 3, 4, 5
    x = np.arange(n * h * w * c, dtype=np.float64).reshape(n, h, w, c)
    y, _ = fl.flatten_forward(x)
    for (b, i, j, k), value in np.ndenumerate(x):
        assert y[b, (i * w + j) * c + k] == value
    # ... which is not PyTorch's channels-first order (c*H + h)*W + w.
    torch_order = np.transpose(x, (0, 3, 1, 2)).reshape(n, -1)
    assert not np.array_equal(y, torch_order)


def test_notes_lenet_s4_has_400_features():
    # 004 LeNet-5: "Each of the 120 units in C5 is connected to all the 400 nodes (5 x 5 x 16)".
    y, _ = fl.flatten_forward(np.ones((8, 5, 5, 16), np.float32))
    assert y.shape == (8, 400)


def test_result_is_a_view_and_one_dimensional_input_gets_a_feature_axis():
    x = np.ones((3, 2, 2))
    y, cache = fl.flatten_forward(x)
    assert np.shares_memory(y, x)  # documented: no copy, as torch.flatten
    assert fl.flatten_forward(np.ones(3))[0].shape == (3, 1)  # (N,) -> (N, 1), as Keras


@pytest.mark.parametrize("impl", ["numba", "reference"])
def test_backward_matches_finite_differences(impl, rng):
    module = cpu if impl == "numba" else reference
    x = random_array(rng, (2, 3, 2, 2))
    y, cache = module.forward(x)
    dy = random_array(rng, y.shape)
    check_gradient(lambda: float((module.forward(x)[0] * dy).sum()), x, module.backward(dy, cache), name="x")


def test_nan_and_inf_pass_through_unchanged():
    x = np.array([[[np.nan, np.inf], [-np.inf, -0.0]]])
    y, cache = fl.flatten_forward(x)
    assert_close(y, [[np.nan, np.inf, -np.inf, -0.0]], atol=0, rtol=0, name="y")
    assert np.signbit(y[0, 3])


def test_strided_and_read_only_inputs_are_copied(rng):
    base = random_array(rng, (4, 6, 6))
    view = base[::2, 1::2, ::3]
    view.flags.writeable = False
    y, cache = fl.flatten_forward(view)
    assert np.array_equal(y, np.ascontiguousarray(view).reshape(2, -1))
    assert not np.shares_memory(y, base)
    dx = fl.flatten_backward(np.ones((2, 6))[:, ::-1], cache)  # a strided dy as well
    assert dx.shape == view.shape


@pytest.mark.parametrize("bad,error,words", [
    (np.array(1.0), ValueError, "x must have at least 1 dimension"),
    (np.ones((2, 3), np.int64), TypeError, "x must have dtype float32 or float64; got int64"),
    (np.ones((2, 3), np.complex64), TypeError, r"x must have dtype float32 or float64; got complex64 \(complex\)"),
    (np.ones((0, 3)), ValueError, r"x must not be empty; got shape \(0, 3\)"),
    (np.ones((2, 0, 4)), ValueError, r"x must not be empty; got shape \(2, 0, 4\)"),
    ([[1.0, 2.0]], TypeError, "x must be a NumPy or CuPy array; got list"),
])
def test_bad_input_is_named(bad, error, words):
    with pytest.raises(error, match=words):
        fl.flatten_forward(bad)


def test_bad_backward_input_is_named():
    _, cache = fl.flatten_forward(np.ones((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 12\); got \(2, 3, 4\)"):
        fl.flatten_backward(np.ones((2, 3, 4), np.float32), cache)
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 12\); got \(12, 2\)"):
        fl.flatten_backward(np.ones((12, 2), np.float32), cache)
    with pytest.raises(TypeError, match="dy must have dtype float32 like the other inputs; got float64"):
        fl.flatten_backward(np.ones((2, 12)), cache)
    with pytest.raises(TypeError, match="cache must be the FlattenCache returned by flatten_forward; got tuple"):
        fl.flatten_backward(np.ones((2, 12), np.float32), ((2, 3, 4),))


@given(x=hnp.arrays(st.sampled_from([np.float32, np.float64]), hnp.array_shapes(min_dims=1, max_dims=5, max_side=5),
                    elements=st.floats(allow_nan=True, allow_infinity=True, width=32)))
def test_property_round_trip_is_exact(x):
    y, cache = fl.flatten_forward(x)
    assert y.shape == (x.shape[0], x.size // x.shape[0]) and y.dtype == x.dtype
    assert np.array_equal(y.ravel(), x.ravel(), equal_nan=True)
    dx = fl.flatten_backward(y, cache)
    assert dx.shape == x.shape
    assert np.array_equal(dx, x, equal_nan=True)
