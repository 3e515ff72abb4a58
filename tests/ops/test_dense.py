"""Dense layer: Numba vs the NumPy reference, backward vs finite differences, gradients vs SymPy,
the notes' gradient-descent step, NaN, and bad input."""

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.helpers import assert_close, check_gradient, random_array
from toolkit.ops import dense as D
from toolkit.ops import losses as L
from toolkit.ops.dense import cpu, reference

# (N, in, out): batch 1, a single unit, odd sizes, and one big enough for the parallel bias kernels
SHAPES = [(1, 1, 1), (1, 5, 3), (7, 3, 4), (64, 33, 17), (300, 120, 150)]


def dense_inputs(rng, n, fan_in, fan_out, dtype, bias=True):
    x = random_array(rng, (n, fan_in), dtype)
    W = random_array(rng, (fan_in, fan_out), dtype, scale=fan_in ** -0.5)
    b = random_array(rng, (fan_out,), dtype) if bias else None
    return x, W, b


def assert_dense_close(x, W, b, dy, ours, theirs):
    """(y, dx, dW, db) against the reference with the classic dot-product error bound per element.

    Two sums of k products may each be off by k eps sum|products| whatever order BLAS adds them in (and
    BLAS's order changes with its thread count), so a fixed rtol is wrong for long sums in float32.
    """
    n, fan_in = x.shape
    fan_out = W.shape[1]
    eps = float(np.finfo(x.dtype).eps)
    floor = 4 * max(n, fan_in, fan_out) * float(np.finfo(x.dtype).tiny)
    ax, aw, ady = (np.abs(a.astype(np.float64)) for a in (x, W, dy))
    abs_b = np.abs(b.astype(np.float64)) if b is not None else 0.0
    bounds = {"y": 2 * (fan_in + 1) * eps * (ax @ aw + abs_b), "dx": 2 * fan_out * eps * (ady @ aw.T),
              "dW": 2 * n * eps * (ax.T @ ady), "db": 2 * n * eps * ady.sum(0)}
    for got, want, name in zip(ours, theirs, ("y", "dx", "dW", "db")):
        if want is None:
            assert got is None, f"{name} should be None"
        else:
            assert got.dtype == x.dtype
            assert_close(got, want, atol=bounds[name] + floor, rtol=0, name=name)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{n}x{i}x{o}" for n, i, o in SHAPES])
def test_numba_matches_reference(shape, dtype, bias, rng):
    x, W, b = dense_inputs(rng, *shape, dtype, bias)
    y, cache = D.dense_forward(x, W, b)
    y_ref, cache_ref = reference.forward(x, W, b)
    assert y.dtype == dtype and y.shape == (shape[0], shape[2])
    dy = random_array(rng, y.shape, dtype)
    assert_dense_close(x, W, b, dy, (y, *D.dense_backward(dy, cache)), (y_ref, *reference.backward(dy, cache_ref)))


def test_serial_and_parallel_bias_gradients_are_the_same_bits(rng):
    dy = rng.standard_normal((3 * cpu.ROWS_PER_BLOCK + 7, 40)).astype(np.float32)
    assert np.array_equal(cpu._column_sums_serial(dy), cpu._column_sums_parallel(dy))
    x, W, b = dense_inputs(rng, 9, 5, 4, np.float64)
    assert np.array_equal(cpu._affine_serial(x, W, b), cpu._affine_parallel(x, W, b))


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("impl", ["numba", "reference"])
def test_backward_matches_finite_differences(impl, bias, rng):
    module = cpu if impl == "numba" else reference
    x, W, b = dense_inputs(rng, 3, 4, 2, np.float64, bias)
    dy = random_array(rng, (3, 2))
    _, cache = module.forward(x, W, b)
    dx, dW, db = module.backward(dy, cache)

    def loss():  # L = sum(dy * y), so dL/dy = dy
        return float((module.forward(x, W, b)[0] * dy).sum())

    check_gradient(loss, x, dx, name="x")
    check_gradient(loss, W, dW, name="W")
    if bias:
        check_gradient(loss, b, db, name="b")
    else:
        assert db is None


def test_gradients_equal_sympy(rng):
    # L = sum_nj G_nj y_nj with y = X W + b: differentiate every entry symbolically
    n, fan_in, fan_out = 2, 3, 2
    X = sp.Matrix(n, fan_in, lambda i, j: sp.Symbol(f"x{i}{j}", real=True))
    W = sp.Matrix(fan_in, fan_out, lambda i, j: sp.Symbol(f"w{i}{j}", real=True))
    b = sp.Matrix(1, fan_out, lambda i, j: sp.Symbol(f"b{j}", real=True))
    G = sp.Matrix(n, fan_out, lambda i, j: sp.Symbol(f"g{i}{j}", real=True))
    Y = X * W + sp.ones(n, 1) * b
    loss = sum(G[i, j] * Y[i, j] for i in range(n) for j in range(fan_out))
    dX = X.applyfunc(lambda s: sp.diff(loss, s))
    dW = W.applyfunc(lambda s: sp.diff(loss, s))
    db = b.applyfunc(lambda s: sp.diff(loss, s))
    assert sp.simplify(dX - G * W.T) == sp.zeros(n, fan_in)  # dx = dy W^T
    assert sp.simplify(dW - X.T * G) == sp.zeros(fan_in, fan_out)  # dW = x^T dy
    assert sp.simplify(db - sp.ones(1, n) * G) == sp.zeros(1, fan_out)  # db = sum over the batch
    # and the kernels evaluate them
    x, w, bias = dense_inputs(rng, n, fan_in, fan_out, np.float64)
    g = random_array(rng, (n, fan_out))
    values = {**{X[i]: v for i, v in enumerate(x.ravel())}, **{W[i]: v for i, v in enumerate(w.ravel())},
              **{b[i]: v for i, v in enumerate(bias)}, **{G[i]: v for i, v in enumerate(g.ravel())}}
    y, cache = cpu.forward(x, w, bias)
    assert_close(y, np.array(Y.subs(values), dtype=float), atol=1e-12, rtol=1e-12, name="y")
    for got, symbolic, name in zip(cpu.backward(g, cache), (dX, dW, db), ("dx", "dW", "db")):
        expected = np.array(symbolic.subs(values), dtype=float).reshape(got.shape)
        assert_close(got, expected, atol=1e-12, rtol=1e-12, name=name)


def test_the_notes_gradient_descent_step():
    # 004, "Loss Functions": one input x1 = 2, weight w = 5, label 6, L = 1/2 (6 - w x1)^2, rate 0.1:
    # the notes print the gradient 8, the new weight 4.2 and the optimum 3.
    x, W, t = np.array([[2.0]]), np.array([[5.0]]), np.array([[6.0]])
    for _ in range(200):
        y, cache = D.dense_forward(x, W)
        loss, loss_cache = L.quadratic_forward(y, t)
        _, dW, db = D.dense_backward(L.loss_backward(loss_cache), cache)
        if _ == 0:
            assert float(loss) == 8.0 and db is None
            assert float(dW[0, 0]) == 8.0
            assert float(W[0, 0] - 0.1 * dW[0, 0]) == pytest.approx(4.2, abs=1e-15)
        W = W - 0.1 * dW
    assert float(W[0, 0]) == pytest.approx(3.0, abs=1e-12)


def test_nan_propagates_along_its_row_and_column():
    x = np.array([[1.0, np.nan], [2.0, 3.0]])
    W = np.array([[1.0, 2.0], [3.0, 4.0]])
    y, cache = D.dense_forward(x, W, np.zeros(2))
    assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()
    dx, dW, db = D.dense_backward(np.ones((2, 2)), cache)
    assert np.isfinite(dx).all()  # dx = dy W^T does not see x
    assert np.isnan(dW[1]).all() and np.isfinite(dW[0]).all()  # dW row 1 = x[:, 1]^T dy
    assert np.isfinite(db).all()


# --- bad input -------------------------------------------------------------------------------------------
def esc(s):
    return s.replace("(", r"\(").replace(")", r"\)")


X53, W32 = np.ones((5, 3)), np.ones((3, 2))


@pytest.mark.parametrize("x,W,b,error,words", [
    (np.ones(3), W32, None, ValueError, "x must have 2 dimensions; got shape (3,) (1 dimensions)"),
    (np.ones((2, 3)), np.ones((3, 2, 1)), None, ValueError, "W must have 2 dimensions; got shape (3, 2, 1)"),
    (X53, np.ones((4, 2)), None, ValueError, "W must have shape (3, any) to match x's 3 features; got (4, 2)"),
    (X53, W32, np.ones(3), ValueError, "b must have shape (2,) to match W's 2 outputs; got (3,)"),
    (X53, W32, np.ones((1, 2)), ValueError, "b must have shape (2,) to match W's 2 outputs; got (1, 2)"),
    (X53, np.ones((3, 2), np.float32), None, TypeError, "W must have dtype float64 like the other inputs; got float32"),
    (X53, W32, np.ones(2, np.float32), TypeError, "b must have dtype float64 like the other inputs; got float32"),
    (np.ones((5, 3), np.int32), W32, None, TypeError, "x must have dtype float32 or float64; got int32"),
    (X53, np.ones((3, 2), np.complex64), None, TypeError, "W must have dtype float32 or float64; got complex64"),
    (np.ones((0, 3)), np.ones((3, 2)), None, ValueError, "x must not be empty; got shape (0, 3)"),
    (np.ones((5, 3)), np.ones((3, 0)), None, ValueError, "W must not be empty; got shape (3, 0)"),
    ([[1.0]], np.ones((1, 1)), None, TypeError, "x must be a NumPy or CuPy array; got list"),
])
def test_bad_input_is_named(x, W, b, error, words):
    with pytest.raises(error, match=esc(words)):
        D.dense_forward(x, W, b)


def test_bad_backward_input_is_named():
    y, cache = D.dense_forward(np.ones((5, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match=esc("dy must have shape (5, 2); got (2, 5)")):
        D.dense_backward(np.ones((2, 5)), cache)
    with pytest.raises(TypeError, match="dy must have dtype float64 like the other inputs; got float32"):
        D.dense_backward(np.ones((5, 2), np.float32), cache)
    with pytest.raises(TypeError, match="cache must be the DenseCache returned by dense_forward; got tuple"):
        D.dense_backward(y, tuple(cache))


def test_strided_and_read_only_inputs_are_copied_not_rejected(rng):
    base = random_array(rng, (8, 9))
    x = base[::2, ::3]  # (4, 3), strided
    W = random_array(rng, (6, 2))[::2]  # (3, 2), strided rows
    x.flags.writeable = False
    y, cache = D.dense_forward(x, W, np.arange(2.0))
    assert_close(y, x @ W + np.arange(2.0), atol=1e-14, rtol=1e-14, name="y")
    dx, dW, db = D.dense_backward(np.ones((4, 2))[:, ::-1], cache)
    assert_close(dW, x.T @ np.ones((4, 2)), atol=1e-14, rtol=1e-14, name="dW")


# --- property-based -------------------------------------------------------------------------------------
@given(n=st.integers(1, 6), fan_in=st.integers(1, 6), fan_out=st.integers(1, 6), bias=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), data=st.data())
def test_property_numba_matches_reference(n, fan_in, fan_out, bias, dtype, data):
    def arr(shape):
        return data.draw(hnp.arrays(dtype, shape, elements=st.floats(-100, 100, width=32)))

    x, W, dy = arr((n, fan_in)), arr((fan_in, fan_out)), arr((n, fan_out))
    b = arr((fan_out,)) if bias else None
    y, cache = D.dense_forward(x, W, b)
    y_ref, cache_ref = reference.forward(x, W, b)
    assert_dense_close(x, W, b, dy, (y, *D.dense_backward(dy, cache)),
                       (y_ref, *reference.backward(dy, cache_ref)))


@given(x_shape=hnp.array_shapes(min_dims=2, max_dims=2, max_side=5),
       w_shape=hnp.array_shapes(min_dims=2, max_dims=2, max_side=5))
def test_property_mismatched_features_are_rejected(x_shape, w_shape):
    x, W = np.ones(x_shape), np.ones(w_shape)
    if x_shape[1] == w_shape[0]:
        assert D.dense_forward(x, W)[0].shape == (x_shape[0], w_shape[1])
    else:
        with pytest.raises(ValueError, match=esc(f"W must have shape ({x_shape[1]}, any) to match x's")):
            D.dense_forward(x, W)


# --- need_dx=False: a model's first layer gets dW and db only -----------------------------------------------
class _Unreadable:
    """Stands in for W in a cache: backward reads W only for dx = dy W^T, so a read means dx was computed."""

    def __getattr__(self, name):
        raise AssertionError(f"W.{name} was read: dy W^T was computed")


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("module", [cpu, reference], ids=["numba", "reference"])
def test_without_dx_dW_db_are_the_same_bits_and_dy_WT_is_skipped(module, dtype, bias, kernels, rng):
    x, W, b = dense_inputs(rng, 300, 120, 150, dtype, bias)
    y, cache = module.forward(x, W, b)
    dy = random_array(rng, y.shape, dtype)
    dx, dW, db = module.backward(dy, cache)
    assert dx is not None
    blind = cache._replace(W=_Unreadable())
    got_dx, got_dW, got_db = module.backward(dy, blind, need_dx=False)
    assert got_dx is None
    assert got_dW.dtype == dtype and np.array_equal(got_dW, dW)
    assert (got_db is None and db is None) if not bias else (got_db.dtype == dtype and np.array_equal(got_db, db))
    with pytest.raises(AssertionError, match=r"dy W\^T was computed"):  # the stand-in does catch a read
        module.backward(dy, blind)


def test_public_backward_passes_need_dx_and_checks_its_type(rng, monkeypatch):
    x, W, b = dense_inputs(rng, 7, 3, 4, np.float64)
    y, cache = D.dense_forward(x, W, b)
    dy = random_array(rng, y.shape)
    dx, dW, db = D.dense_backward(dy, cache)
    for flag in (False, np.bool_(False)):
        got = D.dense_backward(dy, cache, need_dx=flag)
        assert got[0] is None and np.array_equal(got[1], dW) and np.array_equal(got[2], db)
    assert_close(D.dense_backward(dy, cache, need_dx=np.bool_(True))[0], dx, atol=0, rtol=0, name="dx")

    def kernel_must_not_run(*args, **kwargs):
        raise AssertionError("a kernel ran before validation failed")

    monkeypatch.setattr(cpu, "backward", kernel_must_not_run)
    for bad in (0, 1, "False", None, np.float64(0.0)):
        with pytest.raises(TypeError, match=rf"need_dx must be True or False; got {esc(repr(bad))}"):
            D.dense_backward(dy, cache, need_dx=bad)
