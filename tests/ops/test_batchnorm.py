"""Batch normalisation: Numba vs the NumPy reference, backward vs finite differences and SymPy,
running statistics, inference, bad input, properties."""

import numba
import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.helpers import assert_close, check_gradient, random_array, tolerance
from toolkit.ops import batchnorm as bn
from toolkit.ops.batchnorm import cpu, reference

# (1, 3): a batch of one; (3000, 17) and (40, 9, 9, 11) span several blocks of rows (the parallel
# kernels themselves are exercised in tests/ops/test_parallel_paths.py).
SHAPES = [(1, 3), (2, 1), (5, 7), (2, 5, 4), (4, 5, 6, 3), (3000, 17), (40, 9, 9, 11)]


def make_inputs(rng, shape, dtype, *, mean=1.0, scale=2.0):
    c = shape[-1]
    x = (random_array(rng, shape, np.float64, scale=scale) + mean).astype(dtype)
    gamma = random_array(rng, (c,), dtype, scale=1.5)
    beta = random_array(rng, (c,), dtype)
    running_mean = random_array(rng, (c,), dtype)
    running_var = (rng.uniform(0.5, 2.0, c)).astype(dtype)
    return x, gamma, beta, running_mean, running_var


# --- Numba vs reference ----------------------------------------------------------------------------------
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_numba_matches_reference(shape, dtype, training, rng):
    x, gamma, beta, rm, rv = make_inputs(rng, shape, dtype)
    rm_ref, rv_ref = rm.copy(), rv.copy()
    dy = random_array(rng, shape, dtype)
    y, cache = bn.batchnorm_forward(x, gamma, beta, rm, rv, training=training, momentum=0.9, eps=1e-3)
    y_ref, cache_ref = reference.forward(x, gamma, beta, rm_ref, rv_ref, training, 0.9, 1e-3)
    tol = tolerance(dtype)
    assert y.dtype == dtype and cache.training is training
    assert_close(y, y_ref, **tol, name="y")
    for field in ("x_hat", "mean", "var", "inv_std"):
        assert_close(getattr(cache, field), getattr(cache_ref, field), **tol, name=field)
    assert_close(rm, rm_ref, **tol, name="running_mean")
    assert_close(rv, rv_ref, **tol, name="running_var")
    grads = bn.batchnorm_backward(dy, cache)
    for name, ours, theirs in zip(("dx", "dgamma", "dbeta"), grads, reference.backward(dy, cache_ref)):
        assert ours.dtype == dtype
        assert_close(ours, theirs, **tol, name=name)


# --- backward vs central finite differences (float64) ---------------------------------------------------------
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 2, 2)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("impl", ["numba", "reference"])
def test_backward_matches_finite_differences(impl, training, shape, rng):
    module = cpu if impl == "numba" else reference
    x, gamma, beta, rm, rv = make_inputs(rng, shape, np.float64)
    dy = random_array(rng, shape)

    def loss():  # fresh running statistics each call: the forward updates them in place
        y, _ = module.forward(x, gamma, beta, rm.copy(), rv.copy(), training, 0.9, 1e-3)
        return float((y * dy).sum())

    _, cache = module.forward(x, gamma, beta, rm.copy(), rv.copy(), training, 0.9, 1e-3)
    dx, dgamma, dbeta = module.backward(dy, cache)
    check_gradient(loss, x, dx, name="x")
    check_gradient(loss, gamma, dgamma, name="gamma")
    check_gradient(loss, beta, dbeta, name="beta")


# --- SymPy: the compact training-mode gradient equals the symbolic derivative ----------------------------------
def test_compact_gradient_equals_sympy_derivative():
    n = 3  # one feature, a batch of three, everything symbolic
    xs = sp.symbols(f"x0:{n}", real=True)
    dys = sp.symbols(f"dy0:{n}", real=True)
    gamma, beta = sp.symbols("gamma beta", real=True)
    eps = sp.symbols("epsilon", positive=True)
    mu = sum(xs) / n
    var = sum((x - mu) ** 2 for x in xs) / n  # biased, as Keras
    inv_std = 1 / sp.sqrt(var + eps)
    x_hat = [(x - mu) * inv_std for x in xs]
    loss = sum(d * (gamma * h + beta) for d, h in zip(dys, x_hat))
    dbeta, dgamma = sum(dys), sum(d * h for d, h in zip(dys, x_hat))
    assert sp.simplify((sp.diff(loss, beta) - dbeta).rewrite(sp.exp)) == 0
    assert sp.simplify((sp.diff(loss, gamma) - dgamma).rewrite(sp.exp)) == 0
    compact = [gamma * inv_std * (d - dbeta / n - h * dgamma / n) for d, h in zip(dys, x_hat)]
    symbolic = [sp.diff(loss, x) for x in xs]
    for k in range(n):
        assert sp.simplify((symbolic[k] - compact[k]).rewrite(sp.exp)) == 0

    # numeric spot check: the Numba kernels evaluate the symbolic derivative
    xv, dyv = np.array([[0.3], [-1.2], [2.05]]), np.array([[0.7], [-0.4], [1.3]])
    gv, bv, ev = 1.7, -0.2, 1e-3
    values = {gamma: gv, beta: bv, eps: ev, **dict(zip(xs, xv[:, 0])), **dict(zip(dys, dyv[:, 0]))}
    _, cache = cpu.forward(xv, np.array([gv]), np.array([bv]), np.zeros(1), np.ones(1), True, 0.99, ev)
    dx, dg, db = cpu.backward(dyv, cache)
    assert_close(dx[:, 0], [float(s.subs(values)) for s in symbolic], atol=1e-12, rtol=1e-10, name="dx")
    assert_close(dg, [float(sp.diff(loss, gamma).subs(values))], atol=1e-12, rtol=1e-10, name="dgamma")
    assert_close(db, [float(sp.diff(loss, beta).subs(values))], atol=1e-12, rtol=1e-10, name="dbeta")


def test_inference_gradient_equals_sympy_derivative():
    x, mu, var, gamma, beta, eps = sp.symbols("x mu sigma2 gamma beta epsilon", positive=True)
    y = gamma * (x - mu) / sp.sqrt(var + eps) + beta  # mu, var: constants (the running statistics)
    assert sp.simplify((sp.diff(y, x) - gamma / sp.sqrt(var + eps)).rewrite(sp.exp)) == 0
    xv = np.array([[0.5, -2.0], [1.5, 3.0]])
    rm, rv, g = np.array([0.2, -1.0]), np.array([0.8, 2.5]), np.array([1.3, -0.6])
    _, cache = cpu.forward(xv, g, np.zeros(2), rm, rv, False, 0.99, 1e-3)
    dx, _, _ = cpu.backward(np.ones_like(xv), cache)
    expected = [[float(sp.diff(y, x).subs({gamma: g[j], var: rv[j], eps: 1e-3, mu: rm[j], x: xv[i, j]}))
                 for j in range(2)] for i in range(2)]
    assert_close(dx, expected, atol=1e-12, rtol=1e-10, name="dx (inference)")


# --- running statistics and the inference path ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_running_statistics_follow_keras_update(dtype, rng):
    x1, gamma, beta, _, _ = make_inputs(rng, (6, 4, 3), dtype)
    x2 = make_inputs(rng, (6, 4, 3), dtype, mean=-3.0)[0]
    rm, rv = np.zeros(3, dtype), np.ones(3, dtype)  # Keras' initial moving statistics
    expected_mean, expected_var = np.zeros(3), np.ones(3)
    for x in (x1, x2):
        bn.batchnorm_forward(x, gamma, beta, rm, rv, momentum=0.9)
        data = x.astype(np.float64).reshape(-1, 3)
        expected_mean = 0.9 * expected_mean + 0.1 * data.mean(axis=0)
        expected_var = 0.9 * expected_var + 0.1 * data.var(axis=0, ddof=0)  # biased, as Keras
    assert rm.dtype == dtype and rv.dtype == dtype
    assert_close(rm, expected_mean, **tolerance(dtype), name="running_mean")
    assert_close(rv, expected_var, **tolerance(dtype), name="running_var")


def test_momentum_extremes(rng):
    x, gamma, beta, rm, rv = make_inputs(rng, (10, 4), np.float64)
    old_mean, old_var = rm.copy(), rv.copy()
    bn.batchnorm_forward(x, gamma, beta, rm, rv, momentum=1.0)  # all weight on the old value
    assert np.array_equal(rm, old_mean) and np.array_equal(rv, old_var)
    bn.batchnorm_forward(x, gamma, beta, rm, rv, momentum=0.0)  # all weight on the batch
    assert_close(rm, x.mean(axis=0), atol=1e-14, rtol=1e-12, name="running_mean")
    assert_close(rv, x.var(axis=0), atol=1e-14, rtol=1e-12, name="running_var")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inference_uses_running_statistics_and_updates_nothing(dtype, rng):
    x, gamma, beta, rm, rv = make_inputs(rng, (5, 2, 4), dtype)
    rm.flags.writeable = rv.flags.writeable = False  # read-only is fine: nothing is written
    y, cache = bn.batchnorm_forward(x, gamma, beta, rm, rv, training=False, eps=1e-2)
    expected = gamma.astype(np.float64) * (x - rm.astype(np.float64)) / np.sqrt(rv.astype(np.float64) + 1e-2) + beta
    assert_close(y, expected, **tolerance(dtype), name="y (inference)")
    dy = random_array(rng, x.shape, dtype)
    dx, dgamma, dbeta = bn.batchnorm_backward(dy, cache)
    assert_close(dx, dy * gamma.astype(np.float64) / np.sqrt(rv.astype(np.float64) + 1e-2), **tolerance(dtype),
                 name="dx (inference)")
    assert_close(dbeta, dy.astype(np.float64).sum(axis=(0, 1)), **tolerance(dtype), name="dbeta")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_output_has_zero_mean_and_unit_variance(dtype, rng):
    x, _, _, rm, rv = make_inputs(rng, (200, 5), dtype, mean=7.0, scale=3.0)
    y, cache = bn.batchnorm_forward(x, np.ones(5, dtype), np.zeros(5, dtype), rm, rv, eps=1e-3)
    var = x.astype(np.float64).var(axis=0)
    assert_close(y.astype(np.float64).mean(axis=0), np.zeros(5), atol=1e-5, rtol=0, name="mean of y")
    assert_close(y.astype(np.float64).var(axis=0), var / (var + 1e-3), atol=1e-5, rtol=1e-5, name="var of y")


def test_batch_of_one_gives_beta_and_no_input_gradient(rng):
    x, gamma, beta, rm, rv = make_inputs(rng, (1, 5), np.float64)
    y, cache = bn.batchnorm_forward(x, gamma, beta, rm, rv)
    assert np.array_equal(y, beta[None, :])  # zero variance: x_hat = 0 exactly
    dy = random_array(rng, (1, 5))
    dx, dgamma, dbeta = bn.batchnorm_backward(dy, cache)
    assert np.array_equal(dx, np.zeros_like(dx)) and np.array_equal(dgamma, np.zeros(5))
    assert np.array_equal(dbeta, dy[0])


def test_float32_statistics_survive_a_large_mean(rng):
    # Values near 1e4 with unit spread: float32 E[x^2] - E[x]^2 loses every digit; two passes in float64 do not.
    x = (1e4 + rng.standard_normal((4096, 2))).astype(np.float32)
    exact = x.astype(np.float64).var(axis=0)
    _, cache = bn.batchnorm_forward(x, np.ones(2, np.float32), np.zeros(2, np.float32),
                                    np.zeros(2, np.float32), np.ones(2, np.float32))
    assert_close(cache.var, exact, atol=0, rtol=1e-6, name="variance")
    naive = (x * x).mean(axis=0, dtype=np.float32) - np.square(x.mean(axis=0, dtype=np.float32))
    assert np.max(np.abs(naive - exact) / exact) > 1e-2  # the formulation we avoid really is that bad


def test_parallel_reductions_are_reproducible_across_thread_counts(rng):
    x, gamma, beta, rm, rv = make_inputs(rng, (3000, 17), np.float64)
    dy = random_array(rng, x.shape)
    results = []
    previous = numba.get_num_threads()
    try:
        for threads in sorted({1, previous}):
            numba.set_num_threads(threads)
            y, cache = cpu.forward(x, gamma, beta, rm.copy(), rv.copy(), True, 0.9, 1e-3)
            results.append((y, cache.var) + cpu.backward(dy, cache))
    finally:
        numba.set_num_threads(previous)
    for a, b in zip(results[0], results[-1]):
        assert np.array_equal(a, b)


# --- NaN / Inf ------------------------------------------------------------------------------------------------------
def test_nan_and_inf_propagate_per_feature(rng):
    x, gamma, beta, rm, rv = make_inputs(rng, (6, 4), np.float64)
    x[2, 0], x[4, 1] = np.nan, np.inf
    rm_ref, rv_ref = rm.copy(), rv.copy()
    y, cache = bn.batchnorm_forward(x, gamma, beta, rm, rv)  # RuntimeWarnings would fail the test
    y_ref, cache_ref = reference.forward(x, gamma, beta, rm_ref, rv_ref, True, 0.99, 1e-3)
    assert np.isnan(y[:, :2]).all() and np.isfinite(y[:, 2:]).all()
    assert np.isnan(rm[0]) and rm[1] == np.inf and np.isfinite(rm[2:]).all()  # the mean of [.., inf, ..] is inf
    assert np.isnan(rv[:2]).all() and np.isfinite(rv[2:]).all()  # inf - inf = NaN in the variance
    assert_close(y, y_ref, atol=1e-12, rtol=1e-10, name="y")
    assert_close(rv, rv_ref, atol=1e-12, rtol=1e-10, name="running_var")
    dy = random_array(rng, x.shape)
    for ours, theirs in zip(bn.batchnorm_backward(dy, cache), reference.backward(dy, cache_ref)):
        assert_close(ours, theirs, atol=1e-12, rtol=1e-10, name="gradient")


# --- bad input ------------------------------------------------------------------------------------------------------
def _good(dtype=np.float64):
    return dict(x=np.ones((4, 3), dtype), gamma=np.ones(3, dtype), beta=np.zeros(3, dtype),
                running_mean=np.zeros(3, dtype), running_var=np.ones(3, dtype))


def _read_only(a):
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("change,error,words", [
    (dict(x=np.ones(3)), ValueError, r"x must have at least 2 dimensions \(batch, ..., features\); got shape \(3,\)"),
    (dict(x=np.ones((4, 3), np.int32)), TypeError, "x must have dtype float32 or float64; got int32"),
    (dict(x=np.ones((4, 3), np.complex64)), TypeError, r"x must have dtype float32 or float64; got complex64 \(complex\)"),
    (dict(x=np.ones((0, 3))), ValueError, r"x must not be empty; got shape \(0, 3\)"),
    (dict(x=[[1.0, 2.0, 3.0]]), TypeError, "x must be a NumPy or CuPy array; got list"),
    (dict(gamma=np.ones(4)), ValueError, r"gamma must have shape \(3,\); got \(4,\)"),
    (dict(beta=np.zeros((1, 3))), ValueError, r"beta must have shape \(3,\); got \(1, 3\)"),
    (dict(gamma=np.ones(3, np.float32)), TypeError, "gamma must have dtype float64 like the other inputs; got float32"),
    (dict(running_mean=np.zeros(2)), ValueError, r"running_mean must have shape \(3,\); got \(2,\)"),
    (dict(running_var=np.ones(3, np.int64)), TypeError, "running_var must have dtype float32 or float64; got int64"),
    (dict(running_var=np.array([1.0, -0.5, 2.0])), ValueError, r"running_var must be >= 0 \(it is a variance\); got a minimum of -0.5"),
    (dict(running_mean=_read_only(np.zeros(3))), ValueError, "running_mean is updated in place, so it must be writeable; got a read-only array"),
    (dict(running_var=np.ones(6)[::2]), ValueError, r"running_var is updated in place, so it must be C-contiguous; got a strided view of shape \(3,\)"),
    (dict(momentum=1.5), ValueError, "momentum must be <= 1.0; got 1.5"),
    (dict(momentum=-0.1), ValueError, "momentum must be >= 0.0; got -0.1"),
    (dict(momentum="0.9"), TypeError, "momentum must be a real number; got '0.9'"),
    (dict(eps=0.0), ValueError, "eps must be > 0.0; got 0.0"),
    (dict(eps=-1e-3), ValueError, "eps must be > 0.0; got -0.001"),
    (dict(eps=float("nan")), ValueError, "eps must be finite; got nan"),
    (dict(training="yes"), TypeError, "training must be True or False; got 'yes' \\(str\\)"),
])
def test_bad_input_is_named_before_any_update(change, error, words):
    args = {**_good(), **change}
    before = {k: np.array(v, copy=True) for k, v in args.items() if k in ("running_mean", "running_var")}
    with pytest.raises(error, match=words):
        bn.batchnorm_forward(**args)
    for k, v in before.items():  # nothing was updated
        assert np.array_equal(args[k], v, equal_nan=True)


def test_running_statistics_must_be_distinct_arrays():
    good = _good()
    both = np.ones(3)
    with pytest.raises(ValueError, match="running_mean and running_var are both updated in place"):
        bn.batchnorm_forward(good["x"], good["gamma"], good["beta"], both, both)
    bn.batchnorm_forward(good["x"], good["gamma"], good["beta"], both, both, training=False)  # reads only: fine


def test_bad_backward_input_is_named():
    _, cache = bn.batchnorm_forward(**_good())
    with pytest.raises(ValueError, match=r"dy must have shape \(4, 3\); got \(3, 4\)"):
        bn.batchnorm_backward(np.ones((3, 4)), cache)
    with pytest.raises(TypeError, match="dy must have dtype float64 like the other inputs; got float32"):
        bn.batchnorm_backward(np.ones((4, 3), np.float32), cache)
    with pytest.raises(TypeError, match="cache must be the BatchNormCache returned by batchnorm_forward; got tuple"):
        bn.batchnorm_backward(np.ones((4, 3)), tuple(cache))


def test_strided_and_read_only_inputs_are_copied_not_rejected(rng):
    base = random_array(rng, (8, 12))
    view = _read_only(base[::2, ::3])  # (4, 4), strided and read-only
    gamma = _read_only(np.linspace(0.5, 2.0, 4))
    rm, rv = np.zeros(4), np.ones(4)
    y, cache = bn.batchnorm_forward(view, gamma, np.zeros(4), rm, rv)
    y_ref, _ = reference.forward(np.ascontiguousarray(view), gamma, np.zeros(4), np.zeros(4), np.ones(4), True, 0.99, 1e-3)
    assert_close(y, y_ref, atol=1e-14, rtol=1e-12, name="y of a strided view")
    assert_close(rm, 0.01 * view.mean(axis=0), atol=1e-15, rtol=1e-12, name="running_mean")
    dx, _, _ = bn.batchnorm_backward(random_array(rng, (8, 8))[::2, ::2], cache)
    assert dx.shape == (4, 4)


# --- property-based ---------------------------------------------------------------------------------------------------
@given(x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=4, max_side=5),
                    elements=st.floats(-1e3, 1e3, allow_nan=False)),
       training=st.booleans(), momentum=st.floats(0.0, 1.0), eps=st.floats(1e-5, 1.0), data=st.data())
def test_property_numba_matches_reference(x, training, momentum, eps, data):
    c = x.shape[-1]
    vectors = hnp.arrays(np.float64, (c,), elements=st.floats(-10, 10, allow_nan=False))
    gamma, beta, rm = data.draw(vectors), data.draw(vectors), data.draw(vectors)
    rv = data.draw(hnp.arrays(np.float64, (c,), elements=st.floats(0, 100)))
    dy = data.draw(hnp.arrays(np.float64, x.shape, elements=st.floats(-10, 10, allow_nan=False)))
    rm_ref, rv_ref = rm.copy(), rv.copy()
    y, cache = bn.batchnorm_forward(x, gamma, beta, rm, rv, training=training, momentum=momentum, eps=eps)
    y_ref, cache_ref = reference.forward(x, gamma, beta, rm_ref, rv_ref, training, momentum, eps)
    tol = dict(atol=1e-9, rtol=1e-9)  # summation order differs: ulps of a 1e3 mean times 1/sqrt(eps)
    assert_close(y, y_ref, **tol, name="y")
    assert_close(rm, rm_ref, **tol, name="running_mean")
    assert_close(rv, rv_ref, **tol, name="running_var")
    dx, dgamma, dbeta = bn.batchnorm_backward(dy, cache)
    for name, ours, theirs in zip(("dx", "dgamma", "dbeta"), (dx, dgamma, dbeta), reference.backward(dy, cache_ref)):
        assert_close(ours, theirs, atol=1e-7, rtol=1e-9, name=name)
    assert_close(dbeta, dy.reshape(-1, c).sum(axis=0), atol=1e-9, rtol=1e-12, name="dbeta = sum dy")
    if training:  # shifting a feature column leaves y unchanged, so its input gradient sums to zero
        scale = np.abs(dy).sum() * np.abs(gamma).max() * cache.inv_std.max() + 1.0
        assert np.all(np.abs(dx.reshape(-1, c).sum(axis=0)) <= 1e-9 * scale)
