"""Activations: Numba vs the NumPy reference, backward vs finite differences, derivatives vs SymPy."""

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from numba import njit
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.helpers import assert_close, check_gradient, random_array, tolerance
from toolkit.ops import activations as act
from toolkit.ops.activations import cpu, reference, vector_math

ELEMENTWISE = reference.ELEMENTWISE
SHAPES = [(1,), (7,), (3, 5), (2, 3, 4), (40000,)]  # the parallel path: test_parallel_path_matches_reference
PARAMS = {"binary_step": {"threshold": 0.3}, "bipolar_step": {"threshold": -0.2},
          "sigmoid": {"steepness": 2.0}, "bipolar_sigmoid": {"steepness": 0.5}, "leaky_relu": {"alpha": 0.1}}


def full_params(name, **extra):
    return {**reference.PARAMETERS.get(name, {}), **PARAMS.get(name, {}), **extra}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_numba_matches_reference(name, shape, dtype, rng):
    x = random_array(rng, shape, dtype, scale=3.0)
    dy = random_array(rng, shape, dtype)
    params = full_params(name)
    y, cache = act.activation_forward(x, name, **PARAMS.get(name, {}))
    y_ref, cache_ref = reference.forward(name, x, **params)
    assert y.dtype == dtype
    assert_close(y, y_ref, **tolerance(dtype), name=f"{name} forward")
    assert_close(act.activation_backward(dy, cache), reference.backward(dy, cache_ref), **tolerance(dtype),
                 name=f"{name} backward")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", [((1, 1), -1), ((4, 10), -1), ((4, 10), 0), ((2, 3, 5), 1), ((3, 2000), -1)])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_numba_matches_reference(name, shape, axis, dtype, rng):
    x = random_array(rng, shape, dtype, scale=4.0)
    dy = random_array(rng, shape, dtype)
    y, cache = act.activation_forward(x, name, axis=axis)
    y_ref, cache_ref = reference.forward(name, x, axis=axis % x.ndim)
    assert_close(y, y_ref, **tolerance(dtype), name=f"{name} forward")
    assert_close(act.activation_backward(dy, cache), reference.backward(dy, cache_ref), **tolerance(dtype),
                 name=f"{name} backward")


def _away_from_kinks(name, x):
    """Finite differences are meaningless across a kink or jump: move such points away from it."""
    kinks = {"binary_step": [0.3], "bipolar_step": [-0.2], "relu": [0.0], "leaky_relu": [0.0], "ramp": [0.0, 1.0]}
    for k in kinks.get(name, []):
        near = np.abs(x - k) < 1e-3
        x[near] += 1e-2
    return x


@pytest.mark.parametrize("name", ELEMENTWISE + ("softmax", "log_softmax"))
@pytest.mark.parametrize("impl", ["numba", "reference"])
def test_backward_matches_finite_differences(name, impl, rng):
    shape = (3, 4)
    x = _away_from_kinks(name, random_array(rng, shape, np.float64, scale=1.5))
    dy = random_array(rng, shape)
    params = full_params(name, **({"axis": 1} if name in ("softmax", "log_softmax") else {}))
    module = cpu if impl == "numba" else reference
    _, cache = module.forward(name, x, **params)
    dx = module.backward(dy, cache)
    check_gradient(lambda: float((module.forward(name, x, **params)[0] * dy).sum()), x, dx, name=f"{name} x")


# --- SymPy: each derivative the kernels use equals the symbolic derivative of f -------------------
X, LAM, ALPHA = sp.symbols("x lambda alpha", real=True)
SYMBOLIC = {  # f(x), and the derivative as the kernels write it (in terms of f where the notes do)
    "identity": (X, lambda f: sp.Integer(1)),
    "sigmoid": (1 / (1 + sp.exp(-LAM * X)), lambda f: LAM * f * (1 - f)),
    "bipolar_sigmoid": (2 / (1 + sp.exp(-LAM * X)) - 1, lambda f: LAM / 2 * (1 + f) * (1 - f)),
    "tanh": (sp.tanh(X), lambda f: 1 - f**2),
}


@pytest.mark.parametrize("name", sorted(SYMBOLIC))
def test_derivative_equals_sympy(name):
    f, kernel_form = SYMBOLIC[name]
    symbolic = sp.diff(f, X)
    assert sp.simplify((symbolic - kernel_form(f)).rewrite(sp.exp)) == 0
    # and the Numba kernel evaluates it: spot check at a few points
    lam = 1.7
    xs = np.array([-2.5, -0.3, 0.0, 0.53, 3.0])
    params = {"steepness": lam} if "sigmoid" in name else {}
    _, cache = cpu.forward(name, xs, **params)
    dx = cpu.backward(np.ones_like(xs), cache)
    expected = [float(symbolic.subs({LAM: lam, X: v})) for v in xs]
    assert_close(dx, expected, atol=1e-12, rtol=1e-10, name=f"{name}'")


@pytest.mark.parametrize("name,f", [
    ("relu", sp.Max(0, X)),
    ("leaky_relu", sp.Piecewise((X, X > 0), (ALPHA * X, True))),
    ("ramp", sp.Piecewise((0, X < 0), (X, X <= 1), (1, True))),
    ("binary_step", sp.Piecewise((1, X >= 0), (0, True))),
    ("bipolar_step", sp.Piecewise((1, X >= 0), (-1, True))),
])
def test_piecewise_derivative_equals_sympy_away_from_kinks(name, f):
    symbolic = sp.diff(f, X)
    xs = np.array([-1.3, -0.2, 0.4, 0.9, 2.5])
    _, cache = cpu.forward(name, xs, **({"alpha": 0.1} if name == "leaky_relu" else {}))
    dx = cpu.backward(np.ones_like(xs), cache)
    expected = [float(symbolic.subs({ALPHA: 0.1, X: v})) for v in xs]
    assert_close(dx, expected, atol=0, rtol=0, name=f"{name}'")


# --- conventions at the kinks --------------------------------------------------------------------
def test_kink_conventions():
    x = np.array([0.0, 1.0, -0.0])
    ones = np.ones_like(x)
    assert act.activation_backward(ones, act.relu_forward(x)[1])[0] == 0.0  # ReLU'(0) = 0
    assert act.activation_backward(ones, act.leaky_relu_forward(x, 0.2)[1])[0] == pytest.approx(0.2)
    assert list(act.activation_backward(ones, act.ramp_forward(x)[1])) == [0.0, 0.0, 0.0]
    assert list(act.binary_step_forward(np.array([0.5, 0.49]), threshold=0.5)[0]) == [1.0, 0.0]
    assert list(act.bipolar_step_forward(np.array([0.5, 0.49]), threshold=0.5)[0]) == [1.0, -1.0]


# --- numerical stability ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["sigmoid", "bipolar_sigmoid", "tanh", "softmax", "log_softmax"])
def test_large_inputs_do_not_overflow(name, dtype):
    # pytest turns RuntimeWarning (overflow) into errors: this fails on any overflow warning.
    x = np.array([[-1e4, -50.0, 0.0, 50.0, 1e4]], dtype=dtype)
    y, cache = act.activation_forward(x, name)
    dx = act.activation_backward(np.ones_like(x), cache)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    params = {"axis": 1} if "softmax" in name else reference.PARAMETERS.get(name, {})
    y_ref, _ = reference.forward(name, x.astype(np.float64), **params)
    assert_close(y, y_ref, **tolerance(dtype), name=name)


def test_nan_and_inf_follow_ieee():
    x = np.array([np.nan, np.inf, -np.inf, 0.5])
    for name in ELEMENTWISE:
        y, _ = act.activation_forward(x, name)
        y_ref, _ = reference.forward(name, x, **reference.PARAMETERS.get(name, {}))
        assert_close(y, y_ref, atol=1e-12, rtol=1e-12, name=name)


# --- bad input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad,error,words", [
    (np.arange(4), TypeError, "x must have dtype float32 or float64; got int64"),
    (np.ones(3, dtype=np.complex128), TypeError, "complex"),
    (np.ones((0, 3)), ValueError, "x must not be empty; got shape (0, 3)"),
    ([1.0, 2.0], TypeError, "x must be a NumPy or CuPy array; got list"),
])
def test_bad_input_is_named(bad, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        act.sigmoid_forward(bad)


def test_bad_parameters_are_named():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="name must be one of"):
        act.activation_forward(x, "swish")
    with pytest.raises(TypeError, match=r"takes parameters \['steepness'\]; got \['alpha'\]"):
        act.activation_forward(x, "sigmoid", alpha=1.0)
    with pytest.raises(ValueError, match="axis must be in"):
        act.softmax_forward(x, axis=2)
    with pytest.raises(ValueError, match="steepness must be > 0"):
        act.sigmoid_forward(x, steepness=0)
    y, cache = act.relu_forward(x)
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 3\); got \(3, 2\)"):
        act.activation_backward(np.ones((3, 2)), cache)
    with pytest.raises(TypeError, match="dy must have dtype float64 like the other inputs; got float32"):
        act.activation_backward(np.ones((2, 3), np.float32), cache)
    with pytest.raises(TypeError, match="cache must be the ActivationCache"):
        act.activation_backward(np.ones((2, 3)), (x, y))


def test_strided_and_read_only_inputs_are_copied_not_rejected(rng):
    base = random_array(rng, (6, 8))
    view = base[::2, ::3]
    view.flags.writeable = False
    y, _ = act.tanh_forward(view)
    assert_close(y, np.tanh(view), atol=1e-15, rtol=1e-15, name="tanh of a strided view")
    y, _ = act.softmax_forward(view, axis=0)
    assert_close(y, reference.softmax(np.ascontiguousarray(view), 0), atol=1e-15, rtol=1e-12, name="softmax")


# --- property-based ------------------------------------------------------------------------------------
finite = st.floats(-60, 60, allow_nan=False, width=32)


@given(name=st.sampled_from(ELEMENTWISE),
       x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6),
                    elements=st.floats(allow_nan=True, allow_infinity=True, width=32)))
def test_property_elementwise_matches_reference(name, x):
    y, cache = act.activation_forward(x, name)
    y_ref, cache_ref = reference.forward(name, x, **reference.PARAMETERS.get(name, {}))
    assert_close(y, y_ref, atol=1e-12, rtol=1e-12, name=name)
    dy = np.ones_like(x)
    with np.errstate(invalid="ignore"):  # inf * 0 in the reference's derivative is NaN by IEEE
        expected = reference.backward(dy, cache_ref)
    assert_close(act.activation_backward(dy, cache), expected, atol=1e-12, rtol=1e-12, name=name)


@given(x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=7), elements=finite),
       name=st.sampled_from(["softmax", "log_softmax"]), data=st.data())
def test_property_softmax(x, name, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    y, _ = act.activation_forward(x, name, axis=axis)
    assert_close(y, reference.forward(name, x, axis=axis % x.ndim)[0], atol=1e-5, rtol=1e-4, name=name)
    if name == "softmax":
        assert_close(y.sum(axis=axis), np.ones(np.delete(x.shape, axis % x.ndim)), atol=1e-5, rtol=0, name="sum")


# --- the fused forward_backward ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_fused_forward_backward_matches_reference(name, dtype, rng):
    x = random_array(rng, (3, 37), dtype, scale=3.0)
    x[0, :4] = [0.0, -0.0, 1.0, PARAMS.get(name, {}).get("threshold", 0.5)]  # kinks and thresholds
    dy = random_array(rng, x.shape, dtype)
    params = PARAMS.get(name, {})
    y, dx = act.activation_forward_backward(x, dy, name, **params)
    y_ref, dx_ref = reference.forward_backward(name, x, dy, **full_params(name))
    assert y.dtype == dx.dtype == dtype and y.shape == dx.shape == x.shape
    assert y.flags.c_contiguous and dx.flags.c_contiguous and not np.shares_memory(y, dx)  # one allocation, halves
    assert_close(y, y_ref, **tolerance(dtype), name=f"{name} fused y")
    assert_close(dx, dx_ref, **tolerance(dtype), name=f"{name} fused dx")
    # ... and exactly what the two separate kernels give
    y2, cache = act.activation_forward(x, name, **params)
    assert np.array_equal(y, y2) and np.array_equal(dx, act.activation_backward(dy, cache))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", [((1, 1), -1), ((4, 10), 0), ((2, 3, 5), 1), ((3, 700), -1)])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_fused_softmax_matches_reference(name, shape, axis, dtype, rng):
    x = random_array(rng, shape, dtype, scale=4.0)
    dy = random_array(rng, shape, dtype)
    y, dx = act.activation_forward_backward(x, dy, name, axis=axis)
    y_ref, dx_ref = reference.forward_backward(name, x, dy, axis=axis % x.ndim)
    assert_close(y, y_ref, **tolerance(dtype), name=f"{name} fused y")
    assert_close(dx, dx_ref, **tolerance(dtype), name=f"{name} fused dx")


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "ramp", "softmax", "log_softmax"])
def test_fused_backward_matches_finite_differences(name, rng):
    x = _away_from_kinks(name, random_array(rng, (3, 4), np.float64, scale=1.5))
    dy = random_array(rng, (3, 4))
    params = full_params(name, **({"axis": 1} if "softmax" in name else {}))
    _, dx = cpu.forward_backward(name, x, dy, **params)
    check_gradient(lambda: float((cpu.forward(name, x, **params)[0] * dy).sum()), x, dx, name=f"{name} x")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "leaky_relu", "binary_step", "softmax"])
def test_parallel_path_matches_reference(name, dtype, rng, monkeypatch):
    # Every kernel above PARALLEL_MIN_SIZE: the chunked prange loops, with a ragged last chunk.
    monkeypatch.setattr(cpu, "PARALLEL_MIN_SIZE", 0)
    shape = (3, 1000) if name == "softmax" else (2 * cpu.CHUNK + 3,)
    x = random_array(rng, shape, dtype, scale=3.0)
    dy = random_array(rng, shape, dtype)
    params = full_params(name, **({"axis": 1} if name == "softmax" else {}))
    y_ref, dx_ref = reference.forward_backward(name, x, dy, **params)
    y, cache = cpu.forward(name, x, **params)
    assert_close(y, y_ref, **tolerance(dtype), name=f"{name} forward")
    assert_close(cpu.backward(dy, cache), dx_ref, **tolerance(dtype), name=f"{name} backward")
    y, dx = cpu.forward_backward(name, x, dy, **params)
    assert_close(y, y_ref, **tolerance(dtype), name=f"{name} fused y")
    assert_close(dx, dx_ref, **tolerance(dtype), name=f"{name} fused dx")


def test_fused_nan_and_inf_follow_ieee():
    x = np.array([np.nan, np.inf, -np.inf, 0.5, -1e4, 1e4], dtype=np.float32)
    dy = np.ones_like(x)
    for name in ELEMENTWISE:
        y, dx = act.activation_forward_backward(x, dy, name)
        with np.errstate(invalid="ignore"):  # inf * 0 in the reference's derivative is NaN by IEEE
            y_ref, dx_ref = reference.forward_backward(name, x, dy, **reference.PARAMETERS.get(name, {}))
        assert_close(y, y_ref, atol=1e-7, rtol=1e-6, name=f"{name} y")
        assert_close(dx, dx_ref, atol=1e-7, rtol=1e-6, name=f"{name} dx")


def test_fused_bad_input_is_named():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 3\); got \(3, 2\)"):
        act.activation_forward_backward(x, np.ones((3, 2)), "relu")
    with pytest.raises(TypeError, match="dy must have dtype float64 like the other inputs; got float32"):
        act.activation_forward_backward(x, np.ones((2, 3), np.float32), "relu")
    with pytest.raises(TypeError, match="dy must have dtype float32 or float64; got int64"):
        act.activation_forward_backward(x, np.ones((2, 3), np.int64), "relu")
    with pytest.raises(ValueError, match="name must be one of"):
        act.activation_forward_backward(x, x, "swish")
    with pytest.raises(TypeError, match=r"takes parameters \['alpha'\]; got \['steepness'\]"):
        act.activation_forward_backward(x, x, "leaky_relu", steepness=2.0)
    with pytest.raises(ValueError, match="x must not be empty"):
        act.activation_forward_backward(np.ones((0, 3)), np.ones((0, 3)), "tanh")


@given(name=st.sampled_from(ELEMENTWISE + ("softmax", "log_softmax")),
       x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6), elements=finite),
       data=st.data())
def test_property_fused_equals_forward_then_backward(name, x, data):
    dy = data.draw(hnp.arrays(np.float32, x.shape, elements=st.floats(-10, 10, width=32)))
    params = {"axis": data.draw(st.integers(-x.ndim, x.ndim - 1))} if "softmax" in name else {}
    y, dx = act.activation_forward_backward(x, dy, name, **params)
    y2, cache = act.activation_forward(x, name, **params)
    assert_close(y, y2, atol=0, rtol=0, name=f"{name} y")
    assert_close(dx, act.activation_backward(dy, cache), atol=1e-7, rtol=1e-6, name=f"{name} dx")


# --- vector_math: the vectorisable float32 exp and tanh -------------------------------------------------
@njit(error_model="numpy")
def _vector_exp(x, out):
    for i in range(x.size):
        out[i] = vector_math.exp(x[i])


@njit(error_model="numpy")
def _vector_tanh(x, out):
    for i in range(x.size):
        out[i] = vector_math.tanh(x[i])


def _ulps(ours, exact):
    """|ours - exact| in units of the float32 spacing at the float32-rounded exact value."""
    return np.abs(ours.astype(np.float64) - exact) / np.spacing(np.abs(exact.astype(np.float32))).astype(np.float64)


@pytest.mark.parametrize("kernel,exact,bound", [(_vector_exp, np.exp, 1.0), (_vector_tanh, np.tanh, 1.5)])
def test_vector_math_float32_accuracy(kernel, exact, bound):
    x = np.concatenate([np.linspace(-87, 88.7, 400_001), np.linspace(-1, 1, 100_001),
                        np.geomspace(1e-30, 1e-2, 2001), -np.geomspace(1e-30, 1e-2, 2001)]).astype(np.float32)
    out = np.empty_like(x)
    kernel(x, out)
    want = exact(x.astype(np.float64))
    normal = np.abs(want) >= np.finfo(np.float32).tiny
    assert _ulps(out[normal], want[normal]).max() <= bound


@pytest.mark.parametrize("kernel,exact", [(_vector_exp, np.exp), (_vector_tanh, np.tanh)])
def test_vector_math_float32_special_values(kernel, exact):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 88.72, 88.73, 100.0, -87.4, -103.0, -104.0, -200.0,
                  1e-45, -1e-45, 9.0, -9.0, 0.625, -0.625], dtype=np.float32)
    out = np.empty_like(x)
    kernel(x, out)
    with np.errstate(over="ignore", under="ignore"):
        want = exact(x.astype(np.float64)).astype(np.float32)
    # gradual underflow: a denormal result may differ by one denormal step (2^-149) from the exact rounding
    assert_close(out, want, atol=2.0 ** -148, rtol=2e-7, name=kernel.__name__)
    assert np.array_equal(np.signbit(out), np.signbit(want))  # tanh(-0.0) = -0.0, exp(-inf) = +0.0


def test_vector_math_float64_keeps_the_library_functions():
    # float64 calls the C library's exp/tanh (correctly rounded or within an ulp; NumPy's own SIMD
    # versions may differ from it in the last bit)
    x = np.array([-700.0, -1.5, 0.0, 1e-300, 2.5, 709.0, np.nan, -np.inf])
    out = np.empty_like(x)
    _vector_exp(x, out)
    assert_close(out, np.exp(x), atol=0, rtol=3e-16, name="float64 exp")
    _vector_tanh(x, out)
    assert_close(out, np.tanh(x), atol=0, rtol=3e-16, name="float64 tanh")
