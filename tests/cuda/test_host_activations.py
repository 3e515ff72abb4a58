"""activations.cu executed on the CPU by the host harness, through gpu.py's own launch code, vs the
NumPy reference: every activation, float32 and float64, forward and backward.

Sizes exercise every branch of the launch math: a single element, less than a warp, just over a warp,
a partial last block (1025 = 4 * 256 + 1), rows shorter than a warp and longer than a block, more rows
than blocks (grid-stride over rows). Each check runs under three schedules: threads (and blocks) in
forward and in reverse order with the grid capped at 3 blocks (so grid-stride loops loop), and forward
with an uncapped grid (one element per thread).
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.cuda import fakes
from tests.cuda.conftest import requires_cxx, scheduled_targets
from tests.helpers import assert_close, random_array, tolerance
from toolkit.cuda import launch, modules
from toolkit.cuda.host import harness
from toolkit.ops.activations import gpu, reference

pytestmark = requires_cxx

ELEMENTWISE = reference.ELEMENTWISE
PARAMS = {"binary_step": {"threshold": 0.3}, "bipolar_step": {"threshold": -0.2},
          "sigmoid": {"steepness": 2.0}, "bipolar_sigmoid": {"steepness": 0.5}, "leaky_relu": {"alpha": 0.1}}


def full_params(name, **extra):
    return {**reference.PARAMETERS.get(name, {}), **PARAMS.get(name, {}), **extra}


target = scheduled_targets("activations_host")


def check_pair(target, name, x, dy, params):
    """gpu.py's forward and backward on the host target against the reference."""
    dtype = x.dtype
    y, cache = gpu.forward_on(target, name, x, **params)
    y_ref, cache_ref = reference.forward(name, x, **params)
    assert y.dtype == dtype and y.shape == x.shape
    assert_close(y, y_ref, **tolerance(dtype), name=f"{name} forward")
    assert_close(gpu.backward_on(target, dy, cache), reference.backward(dy, cache_ref), **tolerance(dtype),
                 name=f"{name} backward")


def check_special_values(target, name, x):
    """An elementwise activation and its derivative (dy = 1) on NaN/Inf inputs: the reference's values (NaN where
    it has NaN) within 1e-12."""
    params = reference.PARAMETERS.get(name, {})
    y, cache = gpu.forward_on(target, name, x, **params)
    y_ref, cache_ref = reference.forward(name, x, **params)
    assert_close(y, y_ref, atol=1e-12, rtol=1e-12, name=name)
    dy = np.ones_like(x)
    with np.errstate(invalid="ignore"):  # inf * 0 in the reference's derivative is NaN by IEEE
        expected = reference.backward(dy, cache_ref)
    assert_close(gpu.backward_on(target, dy, cache), expected, atol=1e-12, rtol=1e-12, name=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [1, 31, 33, 1025])
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_kernels_match_reference(target, name, size, dtype, rng):
    x = random_array(rng, (size,), dtype, scale=3.0)
    x[: min(size, 4)] = np.array([0.0, 1.0, 0.3, -0.2], dtype)[: min(size, 4)]  # the kinks and thresholds
    check_pair(target, name, x, random_array(rng, (size,), dtype), full_params(name))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", [
    ((1, 1), -1),       # one row of one element
    ((3, 5), -1),       # rows shorter than a warp (most lanes idle)
    ((2, 33), -1),      # a second, nearly empty warp
    ((5, 1025), -1),    # rows longer than a block (256 threads stride) and more rows than blocks
    ((7, 4), 0),        # the reduction axis first: moved last, then back
    ((2, 3, 40), 1),    # a middle axis
])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_kernels_match_reference(target, name, shape, axis, dtype, rng):
    x = random_array(rng, shape, dtype, scale=4.0)
    check_pair(target, name, x, random_array(rng, shape, dtype), {"axis": axis % len(shape)})


@pytest.mark.parametrize("name", ELEMENTWISE + ("softmax", "log_softmax"))
def test_n_dimensional_input(target, name, rng):
    x = random_array(rng, (2, 3, 4), np.float64, scale=2.0)
    extra = {"axis": 2} if name in ("softmax", "log_softmax") else {}
    check_pair(target, name, x, random_array(rng, x.shape), full_params(name, **extra))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["sigmoid", "bipolar_sigmoid", "tanh", "softmax", "log_softmax"])
def test_large_inputs_do_not_overflow(target, name, dtype):
    x = np.array([[-1e4, -50.0, 0.0, 50.0, 1e4]], dtype=dtype)
    params = {"axis": 1} if "softmax" in name else reference.PARAMETERS.get(name, {})
    y, cache = gpu.forward_on(target, name, x, **params)
    dx = gpu.backward_on(target, np.ones_like(x), cache)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    assert_close(y, reference.forward(name, x.astype(np.float64), **params)[0], **tolerance(dtype), name=name)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_nan_and_inf_follow_ieee(target, name):
    check_special_values(target, name, np.array([np.nan, np.inf, -np.inf, 0.5, -0.0]))


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_rows_with_nan_or_inf_become_nan(target, name):
    # A NaN or +inf anywhere in a row makes the whole row NaN, as in the reference; other rows are untouched.
    x = np.array([[1.0, np.nan, 2.0], [1.0, np.inf, 2.0], [-np.inf, 0.0, 1.0], [0.5, -1.0, 2.0]])
    y, _ = gpu.forward_on(target, name, x, axis=1)
    with np.errstate(invalid="ignore"):  # the reference computes inf - inf
        y_ref, _ = reference.forward(name, x, axis=1)
    assert_close(y, y_ref, atol=1e-12, rtol=1e-12, name=name)
    assert np.isnan(y[:2]).all() and np.isfinite(y[3]).all()


def test_kink_conventions(target):
    x = np.array([0.0, 1.0, -0.0])
    ones = np.ones_like(x)

    def dx(name, **params):
        return gpu.backward_on(target, ones, gpu.forward_on(target, name, x, **full_params(name, **params))[1])

    assert dx("relu")[0] == 0.0  # ReLU'(0) = 0
    assert dx("leaky_relu", alpha=0.2)[0] == pytest.approx(0.2)
    assert list(dx("ramp")) == [0.0, 0.0, 0.0]
    y, _ = gpu.forward_on(target, "binary_step", np.array([0.5, 0.49]), threshold=0.5)
    assert list(y) == [1.0, 0.0]
    y, _ = gpu.forward_on(target, "bipolar_step", np.array([0.5, 0.49]), threshold=0.5)
    assert list(y) == [1.0, -1.0]


def test_launch_math_exercised_by_these_tests():
    """The schedules above really cover what the module docstring says (guards against a silent change)."""
    capped = harness.HOST_MAX_GRID_BLOCKS
    assert capped == 3 and harness.target.__kwdefaults__["max_grid_blocks"] == capped
    fake = launch.Target("probe", np, lambda e: None, max_grid_blocks=capped)
    assert launch.grid_1d(1025, fake) == ((3,), (256,))            # grid-stride loop iterates
    assert launch.grid_rows(5, 1025, fake) == ((3,), (256,))       # rows strided, row longer than block
    assert launch.grid_rows(3, 5, fake) == ((3,), (32,))           # one warp for short rows
    assert launch.grid_rows(2, 33, fake) == ((2,), (64,))          # a second warp with one live lane


# --- property-based: any shape, any axis, any float including NaN/inf, either order ---------------------
@given(name=st.sampled_from(ELEMENTWISE), order=st.sampled_from(["forward", "reverse"]),
       x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=12),
                    elements=st.floats(allow_nan=True, allow_infinity=True, width=32)))
def test_property_elementwise_kernels(activations_host, name, order, x):
    check_special_values(harness.target(activations_host, order=order), name, x)


@given(x=hnp.arrays(np.float32, st.one_of(hnp.array_shapes(min_dims=1, max_dims=2, max_side=70),  # rows of 1..70
                                          hnp.array_shapes(min_dims=3, max_dims=3, max_side=6)),
                    elements=st.floats(-60, 60, allow_nan=False, width=32)),
       name=st.sampled_from(["softmax", "log_softmax"]), order=st.sampled_from(["forward", "reverse"]),
       data=st.data())
def test_property_softmax_kernels(activations_host, x, name, order, data):
    axis = data.draw(st.integers(0, x.ndim - 1))
    target = harness.target(activations_host, order=order)
    y, cache = gpu.forward_on(target, name, x, axis=axis)
    y_ref, cache_ref = reference.forward(name, x, axis=axis)
    assert_close(y, y_ref, atol=1e-5, rtol=1e-4, name=name)
    dy = np.linspace(-1, 1, x.size, dtype=np.float32).reshape(x.shape)
    assert_close(gpu.backward_on(target, dy, cache), reference.backward(dy, cache_ref), atol=1e-5, rtol=1e-4,
                 name=f"{name} backward")
    if name == "softmax":
        assert_close(y.sum(axis=axis), np.ones(np.delete(x.shape, axis)), atol=1e-5, rtol=0, name="row sums")


@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_portable_ucontext_fibers_give_the_same_results(order, rng):
    # The x86-64 register switch is the default; the ucontext fallback (other CPUs) must agree.
    module = harness.load("activations", defines=("HOSTCUDA_USE_UCONTEXT",))
    target = harness.target(module, order=order)
    for name, shape in [("tanh", (1025,)), ("softmax", (5, 300)), ("log_softmax", (3, 40))]:
        x = random_array(rng, shape, scale=3.0)
        extra = {"axis": 1} if "softmax" in name else {}
        check_pair(target, name, x, random_array(rng, shape), full_params(name, **extra))


def test_public_gpu_path_wiring(fake_cupy, rng):
    for name, shape in [("sigmoid", (1025,)), ("softmax", (40, 70)), ("log_softmax", (3, 33))]:
        x = random_array(rng, shape, scale=3.0)
        dy = random_array(rng, shape)
        params = full_params(name, **({"axis": 1} if "softmax" in name else {}))
        y, cache = gpu.forward(name, x, **params)
        y_ref, cache_ref = reference.forward(name, x, **params)
        assert_close(y, y_ref, **tolerance(np.float64), name=name)
        assert_close(gpu.backward(dy, cache), reference.backward(dy, cache_ref), **tolerance(np.float64), name=name)
    fakes.assert_compiled_once(fake_cupy, "activations")
    assert modules.target("activations").max_grid_blocks == modules.BLOCKS_PER_SM
