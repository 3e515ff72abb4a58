"""Losses: Numba vs the NumPy reference, backward vs finite differences, derivatives vs SymPy,
Keras' documented values, PyTorch where installed, stability, NaN, and bad input."""

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.helpers import assert_close, check_gradient, random_array, tolerance
from toolkit.ops import losses as L
from toolkit.ops.losses import cpu, reference

# (name, params): every loss, binary cross-entropy both ways.
CASES = [("mse", {}), ("mse_half", {}), ("quadratic", {}), ("categorical_crossentropy", {}),
         ("softmax_crossentropy", {}), ("binary_crossentropy", {}), ("binary_crossentropy", {"from_logits": True}),
         ("mape", {})]
CASE_IDS = [name + ("_logits" if params else "") for name, params in CASES]
SHAPES = [(1,), (7,), (3, 5), (2, 3, 4), (200, 300)]  # 60000 elements take the parallel kernels


def softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def inputs(name, params, shape, dtype, rng, axis=-1):
    """A prediction and a target each loss is meant for (probabilities, logits, one-hot/soft targets)."""
    if name == "categorical_crossentropy":
        y = softmax(random_array(rng, shape, scale=2.0), axis)
        t = softmax(random_array(rng, shape, scale=3.0), axis)  # soft targets, each sample sums to 1
    elif name == "softmax_crossentropy":
        y = random_array(rng, shape, scale=3.0)
        t = softmax(random_array(rng, shape, scale=3.0), axis)
    elif name == "binary_crossentropy":
        y = random_array(rng, shape, scale=3.0) if params.get("from_logits") else rng.uniform(0.02, 0.98, shape)
        t = rng.uniform(0, 1, shape)
    else:
        y, t = random_array(rng, shape), random_array(rng, shape)
    return y.astype(dtype), t.astype(dtype)


def full_params(name, params, ndim, axis=-1):
    out = {**reference.PARAMETERS.get(name, {}), **params}
    if "axis" in out:
        out["axis"] = axis % ndim
    return out


# --- Numba vs reference ------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name,params", CASES, ids=CASE_IDS)
def test_numba_matches_reference(name, params, shape, dtype, rng):
    y, t = inputs(name, params, shape, dtype, rng)
    loss, cache = L.loss_forward(name, y, t, **params)
    loss_ref, cache_ref = reference.forward(name, y, t, **full_params(name, params, y.ndim))
    assert loss.shape == () and loss.dtype == dtype
    assert_close(loss, loss_ref, **tolerance(dtype), name=f"{name} loss")
    dy = L.loss_backward(cache, dloss=0.7)
    assert dy.dtype == dtype
    assert_close(dy, reference.backward(cache_ref, 0.7), **tolerance(dtype), name=f"{name} gradient")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", [((4, 3), 0), ((2, 3, 5), 1), ((2, 3, 5), 0), ((1, 1), -1), ((40, 1000), -1)])
@pytest.mark.parametrize("name", ["categorical_crossentropy", "softmax_crossentropy"])
def test_class_axis(name, shape, axis, dtype, rng):
    y, t = inputs(name, {}, shape, dtype, rng, axis)
    loss, cache = L.loss_forward(name, y, t, axis=axis)
    loss_ref, cache_ref = reference.forward(name, y, t, axis=axis % y.ndim)
    assert_close(loss, loss_ref, **tolerance(dtype), name=f"{name} loss")
    assert_close(L.loss_backward(cache), reference.backward(cache_ref), **tolerance(dtype), name=f"{name} gradient")
    # the class axis moved last gives the same loss: only the layout differs
    moved, _ = L.loss_forward(name, np.moveaxis(y, axis, -1), np.moveaxis(t, axis, -1))
    assert_close(moved, loss, **tolerance(dtype), name="moved axis")


def test_serial_and_parallel_sums_are_the_same_bits(rng):
    # The chunks do not depend on the thread count: both kernels add the same partials in the same order.
    y, t = rng.standard_normal(3 * cpu.CHUNK + 5), rng.standard_normal(3 * cpu.CHUNK + 5)
    args = (cpu.MAPE, y, t, *cpu._constants(y.dtype))
    assert cpu._sum_of_terms_serial(*args) == cpu._sum_of_terms_parallel(*args)


# --- gradients vs finite differences ------------------------------------------------------------------
@pytest.mark.parametrize("name,params", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("impl", ["numba", "reference"])
def test_backward_matches_finite_differences(name, params, impl, rng):
    y, t = inputs(name, params, (3, 4), np.float64, rng)
    if name == "mape":  # |y - t| has a kink at y = t: keep away from it
        y = np.where(np.abs(y - t) < 1e-2, t + 0.1, y)
    if name == "categorical_crossentropy":  # log is too curved near 0 for differences with eps 1e-6
        y = rng.uniform(0.1, 0.9, y.shape)
    module = cpu if impl == "numba" else reference
    p = full_params(name, params, y.ndim)
    _, cache = module.forward(name, y, t, **p)
    dy = module.backward(cache, 1.3)
    check_gradient(lambda: 1.3 * float(module.forward(name, y, t, **p)[0]), y, dy, name=f"{name} y")


@pytest.mark.parametrize("impl", ["numba", "reference"])
def test_softmax_crossentropy_gradient_on_axis_0(impl, rng):
    z, t = inputs("softmax_crossentropy", {}, (3, 2, 2), np.float64, rng, axis=0)
    t[:, 0, 0] *= 1.7  # targets that do not sum to 1: the general gradient p sum(t) - t
    module = cpu if impl == "numba" else reference
    _, cache = module.forward("softmax_crossentropy", z, t, axis=0)
    check_gradient(lambda: float(module.forward("softmax_crossentropy", z, t, axis=0)[0]), z,
                   module.backward(cache), name="z")


@pytest.mark.parametrize("name", ["categorical_crossentropy", "binary_crossentropy"])
def test_clip_zeroes_the_gradient_outside_eps_and_keeps_it_at_the_bounds(name):
    eps = L.EPSILON
    y = np.array([0.0, 1e-9, eps, 0.5, 1 - eps, 1.0])
    t = np.full_like(y, 0.5)
    loss, cache = L.loss_forward(name, y, t)
    dy = L.loss_backward(cache)
    _, cache_ref = reference.forward(name, y, t, **full_params(name, {}, 1))
    assert np.isfinite(loss)
    assert dy[0] == 0 and dy[1] == 0 and dy[5] == 0  # the clip is flat there
    assert dy[2] != 0 and dy[4] != 0  # the bounds pass the gradient, as TensorFlow's clip does
    assert_close(dy, reference.backward(cache_ref), atol=1e-12, rtol=1e-10, name=name)
    # y = 0 and y = 1 cost the same as y = eps and y = 1 - eps
    clipped, _ = L.loss_forward(name, np.clip(y, eps, 1 - eps), t)
    assert_close(loss, clipped, atol=0, rtol=1e-15, name="clipped loss")


# --- SymPy: the derivative of each loss for one element / sample, and the kernels evaluate it ----------
Y, T, Z = sp.symbols("y t z", real=True)
N = sp.symbols("n", positive=True)
SIGMOID = 1 / (1 + sp.exp(-Z))
ELEMENT = {  # loss contribution of one element among n, and the derivative as the kernels write it
    "mse": ((Y - T) ** 2 / N, 2 * (Y - T) / N),
    "mse_half": ((Y - T) ** 2 / (2 * N), (Y - T) / N),
    "quadratic": ((Y - T) ** 2 / 2, Y - T),
    "binary_crossentropy": (-(T * sp.log(Y) + (1 - T) * sp.log(1 - Y)) / N, (-T / Y + (1 - T) / (1 - Y)) / N),
    "mape": (100 * sp.Abs(T - Y) / (sp.Abs(T) * N), 100 * sp.sign(Y - T) / (sp.Abs(T) * N)),
}


@pytest.mark.parametrize("name", sorted(ELEMENT))
def test_elementwise_derivative_equals_sympy(name, rng):
    loss, kernel_form = ELEMENT[name]
    symbolic = sp.diff(loss, Y)
    assert sp.simplify((symbolic - kernel_form).rewrite(sp.exp)) == 0
    y = rng.uniform(0.1, 0.9, 5)
    t = rng.uniform(0.1, 0.9, 5) * (1 if name == "binary_crossentropy" else np.array([1, -1, 1, -1, 1]))
    _, cache = cpu.forward(name, y, t, **full_params(name, {}, 1))
    expected = [float(symbolic.subs({Y: a, T: b, N: y.size})) for a, b in zip(y, t)]
    assert_close(cpu.backward(cache), expected, atol=1e-12, rtol=1e-10, name=f"d {name} / dy")


def test_binary_crossentropy_from_logits_equals_sympy(rng):
    loss = -(T * sp.log(SIGMOID) + (1 - T) * sp.log(1 - SIGMOID))
    symbolic = sp.diff(loss, Z)
    assert sp.simplify((symbolic - (SIGMOID - T)).rewrite(sp.exp)) == 0
    # the stable form max(z, 0) - z t + log(1 + exp(-|z|)) is the same function on both sides of 0
    a = sp.symbols("a", positive=True)
    for z, relu in ((a, a), (-a, 0)):
        stable = relu - z * T + sp.log(1 + sp.exp(-a))
        assert sp.simplify(sp.expand_log(loss.subs(Z, z) - stable, force=True)) == 0
    z, t = np.array([-30.0, -2.0, 0.0, 0.7, 25.0]), np.array([0.0, 0.3, 1.0, 0.5, 1.0])
    value, cache = cpu.forward("binary_crossentropy", z, t, from_logits=True)
    expected_loss = np.mean([float(loss.subs({Z: a_, T: b_}).evalf(30)) for a_, b_ in zip(z, t)])
    assert_close(value, expected_loss, atol=1e-12, rtol=1e-12, name="loss")
    expected = [float(symbolic.subs({Z: a_, T: b_})) / z.size for a_, b_ in zip(z, t)]
    assert_close(cpu.backward(cache), expected, atol=1e-12, rtol=1e-10, name="d bce / dz")


def test_categorical_crossentropy_derivative_equals_sympy(rng):
    ys, ts = sp.symbols("y1:4", positive=True), sp.symbols("t1:4", real=True)
    M = sp.symbols("M", positive=True)
    loss = -sum(tc * sp.log(yc) for tc, yc in zip(ts, ys)) / M
    for c in range(3):
        assert sp.simplify(sp.diff(loss, ys[c]) - (-ts[c] / (M * ys[c]))) == 0
    y, t = inputs("categorical_crossentropy", {}, (2, 3), np.float64, rng)
    _, cache = cpu.forward("categorical_crossentropy", y, t, axis=1)
    expected = [[float(sp.diff(loss, ys[c]).subs({**dict(zip(ys, y[m])), **dict(zip(ts, t[m])), M: 2}))
                 for c in range(3)] for m in range(2)]
    assert_close(cpu.backward(cache), expected, atol=1e-12, rtol=1e-10, name="d cce / dy")


def test_softmax_crossentropy_derivative_is_p_minus_t(rng):
    zs, ts = sp.symbols("z1:4", real=True), sp.symbols("t1:4", real=True)
    total = sum(sp.exp(v) for v in zs)
    p = [sp.exp(v) / total for v in zs]
    loss = -sum(tc * sp.log(pc) for tc, pc in zip(ts, p))
    grads = [sp.diff(loss, v) for v in zs]
    for c in range(3):
        # in general p sum(t) - t; when the targets sum to 1, the familiar p - t
        assert sp.simplify((grads[c] - (p[c] * sum(ts) - ts[c])).rewrite(sp.exp)) == 0
        assert sp.simplify((grads[c] - (p[c] - ts[c])).subs(ts[2], 1 - ts[0] - ts[1]).rewrite(sp.exp)) == 0
    z = np.array([[0.3, -1.2, 2.0]])
    t = np.array([[0.2, 0.5, 0.6]])  # sums to 1.3 on purpose
    _, cache = cpu.forward("softmax_crossentropy", z, t, axis=1)
    expected = [[float(g.subs({**dict(zip(zs, z[0])), **dict(zip(ts, t[0]))})) for g in grads]]
    assert_close(cpu.backward(cache), expected, atol=1e-12, rtol=1e-10, name="d sce / dz")


def test_the_notes_gradient_descent_step():
    # 004, "Loss Functions": L(w) = 1/2 (6 - w x1)^2 with x1 = 2, w = 5: gradient 8, w - 0.1*8 = 4.2, optimum 3.
    w = sp.symbols("w", real=True)
    loss = sp.Rational(1, 2) * (6 - 2 * w) ** 2
    assert sp.diff(loss, w).subs(w, 5) == 8 and sp.solve(sp.diff(loss, w), w) == [3]
    y = np.array([5.0 * 2.0])
    value, cache = L.quadratic_forward(y, np.array([6.0]))
    assert float(value) == 8.0  # 1/2 (10 - 6)^2
    dw = float(L.loss_backward(cache)[0]) * 2.0  # chain rule: dL/dw = dL/dy * x1
    assert dw == 8.0 and 5.0 - 0.1 * dw == pytest.approx(4.2)


# --- independent values: Keras' documented examples, PyTorch ---------------------------------------------
@pytest.mark.parametrize("name,params,t,y,printed", [
    ("mse", {}, [[0.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 0.0]], 0.5),
    ("categorical_crossentropy", {}, [[0, 1, 0], [0, 0, 1]], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]], 1.177),
    ("binary_crossentropy", {}, [[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]], 0.815),
    ("binary_crossentropy", {"from_logits": True}, [0, 1, 0, 0], [-18.6, 0.51, 2.94, -12.8], 0.865),
    ("mape", {}, [[2.0, 1.0], [2.0, 3.0]], [[1.0, 1.0], [1.0, 0.0]], 50.0),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_keras_documented_values(name, params, t, y, printed, dtype):
    loss, _ = L.loss_forward(name, np.array(y, dtype), np.array(t, dtype), **params)
    assert abs(float(loss) - printed) <= 5e-4  # Keras prints 3 decimals


def test_matches_pytorch(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    y, t = rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
    p, q = softmax(rng.standard_normal((6, 5))), rng.uniform(0, 1, (6, 5))

    def theirs(fn, a, b):
        a = torch.tensor(a, requires_grad=True)
        out = fn(a, torch.tensor(b))
        out.backward()
        return out.item(), a.grad.numpy()

    pairs = [
        (("mse", y, t, {}), theirs(F.mse_loss, y, t)),
        (("softmax_crossentropy", y, p, {}), theirs(F.cross_entropy, y, p)),  # soft targets, mean over samples
        (("binary_crossentropy", y, q, {"from_logits": True}), theirs(F.binary_cross_entropy_with_logits, y, q)),
        (("binary_crossentropy", p, q, {}), theirs(F.binary_cross_entropy, p, q)),  # p inside the clip range
    ]
    for (name, a, b, params), (loss_t, grad_t) in pairs:
        loss, cache = L.loss_forward(name, a, b, **params)
        assert_close(loss, loss_t, atol=1e-12, rtol=1e-10, name=f"{name} vs torch")
        assert_close(L.loss_backward(cache), grad_t, atol=1e-12, rtol=1e-10, name=f"{name} gradient vs torch")


def test_named_shortcuts_and_the_1_over_n_conventions(rng):
    y, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    mse = float(L.mse_forward(y, t)[0])
    assert mse == pytest.approx(np.mean((y - t) ** 2), rel=1e-14)
    assert float(L.mse_half_forward(y, t)[0]) == pytest.approx(mse / 2, rel=1e-14)
    assert float(L.quadratic_forward(y, t)[0]) == pytest.approx(mse * y.size / 2, rel=1e-14)
    assert float(L.mape_forward(y, t)[0]) == pytest.approx(float(L.loss_forward("mape", y, t)[0]), rel=0)
    p = softmax(y)
    target = np.eye(3)[[0, 2, 1, 1]]
    cce = float(L.categorical_crossentropy_forward(p, target)[0])
    assert float(L.softmax_crossentropy_forward(y, target)[0]) == pytest.approx(cce, rel=1e-12)
    sig = 1 / (1 + np.exp(-y))
    q = rng.uniform(0, 1, y.shape)
    assert float(L.binary_crossentropy_forward(y, q, from_logits=True)[0]) == pytest.approx(
        float(L.binary_crossentropy_forward(sig, q)[0]), rel=1e-12)


# --- numerical stability, NaN and Inf ---------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_crossentropy_of_huge_logits_does_not_overflow(dtype):
    # pytest turns RuntimeWarning into errors: any overflow warning fails this test.
    z = np.array([[-1e4, 0.0, 1e4], [1e4, 1e4, -1e4], [5.0, -3.0, 0.5]], dtype)
    t = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.2, 0.3, 0.5]], dtype)
    loss, cache = L.softmax_crossentropy_forward(z, t)
    dz = L.loss_backward(cache)
    assert np.isfinite(loss) and np.all(np.isfinite(dz))
    # exactly: row 0 costs 2e4, row 1 costs log 2, row 2 from the float64 reference
    row2 = -(t[2].astype(np.float64) * reference.log_softmax(z[2:].astype(np.float64), 1)[0]).sum()
    assert_close(loss, (2e4 + np.log(2) + row2) / 3, **tolerance(dtype), name="loss")
    assert_close(dz[:2], np.array([[-1, 0, 1], [0.5, -0.5, 0]]) / 3, **tolerance(dtype), name="gradient")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_crossentropy_from_huge_logits_does_not_overflow(dtype):
    z = np.array([-1e4, -100.0, 100.0, 1e4], dtype)
    t = np.array([1.0, 0.0, 1.0, 0.0], dtype)
    loss, cache = L.binary_crossentropy_forward(z, t, from_logits=True)
    assert_close(loss, (1e4 + 0 + 0 + 1e4) / 4, **tolerance(dtype), name="loss")
    assert_close(L.loss_backward(cache), np.array([-1.0, 0.0, 0.0, 1.0]) / 4, **tolerance(dtype), name="gradient")


@pytest.mark.parametrize("name,params", CASES, ids=CASE_IDS)
def test_nan_propagates(name, params, rng):
    y, t = inputs(name, params, (2, 3), np.float64, rng)
    y[0, 1] = np.nan
    loss, cache = L.loss_forward(name, y, t, **params)
    dy = L.loss_backward(cache)
    assert np.isnan(loss)
    assert np.isnan(dy[0, 1])
    # only the NaN's element (its sample, for softmax) is touched
    assert np.all(np.isfinite(dy[1]))


def test_infinity_follows_ieee():
    y, t = np.array([np.inf, 1.0]), np.array([0.0, 1.0])
    loss, cache = L.mse_forward(y, t)
    assert loss == np.inf and list(L.loss_backward(cache)) == [np.inf, 0.0]
    loss, cache = L.mape_forward(np.array([-np.inf, 2.0]), np.array([1.0, 2.0]))
    assert loss == np.inf and list(L.loss_backward(cache)) == [-50.0, 0.0]  # sign(y - t) / |t| * 100/n
    # a +inf logit: inf - inf in the shifted logits; a -inf logit with target 0: 0 * -inf. Both NaN.
    for z in ([[np.inf, 0.0]], [[-np.inf, 0.0]]):
        loss, cache = L.softmax_crossentropy_forward(np.array(z), np.array([[0.0, 1.0]]))
        assert np.isnan(loss) and not np.isinf(L.loss_backward(cache)).any()


# --- bad input -------------------------------------------------------------------------------------------
def esc(s):
    return s.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")


@pytest.mark.parametrize("y,t,error,words", [
    (np.arange(4), np.ones(4), TypeError, "y must have dtype float32 or float64; got int64"),
    (np.ones(3, np.complex128), np.ones(3), TypeError, "complex"),
    (np.ones(3), np.ones(3, np.float32), TypeError, "t must have dtype float64 like the other inputs; got float32"),
    (np.ones((0, 3)), np.ones((0, 3)), ValueError, "y must not be empty; got shape (0, 3)"),
    (np.ones((2, 3)), np.ones((3, 2)), ValueError, "t must have the shape of y (2, 3); got (3, 2)"),
    (np.ones(6), np.ones((6, 1)), ValueError, "t must have the shape of y (6,); got (6, 1)"),
    ([0.5, 0.5], np.ones(2), TypeError, "y must be a NumPy or CuPy array; got list"),
])
def test_bad_arrays_are_named(y, t, error, words):
    with pytest.raises(error, match=esc(words)):
        L.loss_forward("mse", y, t)


def test_bad_parameters_are_named():
    y = np.full((2, 3), 0.5)
    with pytest.raises(ValueError, match="name must be one of"):
        L.loss_forward("hinge", y, y)
    with pytest.raises(TypeError, match=esc("loss 'mse' takes parameters none; got ['axis']")):
        L.loss_forward("mse", y, y, axis=0)
    with pytest.raises(TypeError, match=esc("takes parameters ['axis']; got ['from_logits']")):
        L.loss_forward("categorical_crossentropy", y, y, from_logits=True)
    with pytest.raises(ValueError, match=esc("axis must be in [-2, 1] for an array of 2 dimensions; got 2")):
        L.softmax_crossentropy_forward(y, y, axis=2)
    with pytest.raises(TypeError, match="axis must be an integer; got 1.0"):
        L.categorical_crossentropy_forward(y, y, axis=1.0)
    with pytest.raises(TypeError, match="from_logits must be True or False; got 1"):
        L.binary_crossentropy_forward(y, y, from_logits=1)
    with pytest.raises(ValueError, match="y must have at least 1 dimension"):
        L.softmax_crossentropy_forward(np.array(1.0), np.array(1.0))
    loss, cache = L.mse_forward(y, y)
    with pytest.raises(ValueError, match=esc("dloss must be a scalar (the loss is one number); "
                                             "got an array of shape (2,)")):
        L.loss_backward(cache, np.ones(2))
    with pytest.raises(ValueError, match="dloss must be finite; got nan"):
        L.loss_backward(cache, float("nan"))
    with pytest.raises(TypeError, match="dloss must be a real number; got '1'"):
        L.loss_backward(cache, "1")
    with pytest.raises(TypeError, match="cache must be the LossCache returned by loss_forward; got tuple"):
        L.loss_backward((y, y))
    assert L.loss_backward(cache, np.array(2.0)).shape == y.shape  # a 0-d array is a scalar


def test_scalar_and_strided_read_only_inputs(rng):
    loss, cache = L.quadratic_forward(np.array(3.0), np.array(1.0))  # 0-d arrays are one element
    assert float(loss) == 2.0 and float(L.loss_backward(cache)) == 2.0
    base = rng.standard_normal((6, 8))
    view = base[::2, ::3]
    view.flags.writeable = False
    loss, _ = L.mse_forward(view, np.zeros_like(view))
    assert_close(loss, np.mean(view ** 2), atol=1e-15, rtol=1e-14, name="mse of a strided view")


# --- property-based -------------------------------------------------------------------------------------
shapes = hnp.array_shapes(min_dims=1, max_dims=3, max_side=6)
unit = st.floats(0, 1, width=32)


@given(data=st.data(), case=st.sampled_from(CASES), shape=shapes)
def test_property_numba_matches_reference(data, case, shape):
    name, params = case
    wide = st.floats(-1e3, 1e3, allow_nan=False, width=32)
    probabilities = name in ("categorical_crossentropy", "binary_crossentropy") and not params
    y = data.draw(hnp.arrays(np.float64, shape, elements=unit if probabilities else wide))
    t = data.draw(hnp.arrays(np.float64, shape, elements=unit if "entropy" in name else wide))
    p = full_params(name, params, y.ndim)
    loss, cache = L.loss_forward(name, y, t, **params)
    loss_ref, cache_ref = reference.forward(name, y, t, **p)
    assert_close(loss, loss_ref, atol=1e-9, rtol=1e-10, name=name)
    assert_close(L.loss_backward(cache), reference.backward(cache_ref), atol=1e-9, rtol=1e-10, name=name)
    if name != "softmax_crossentropy" and name != "binary_crossentropy":  # the others cannot go below 0
        assert float(loss) >= 0


@given(y=hnp.arrays(np.float32, shapes, elements=st.floats(-30, 30, width=32)), data=st.data())
def test_property_softmax_crossentropy_is_cce_of_softmax_and_gradient_rows_sum_to_zero(y, data):
    axis = data.draw(st.integers(-y.ndim, y.ndim - 1))
    t = softmax(data.draw(hnp.arrays(np.float32, y.shape, elements=st.floats(-3, 3, width=32))), axis)
    loss, cache = L.softmax_crossentropy_forward(y, t, axis=axis)
    dz = L.loss_backward(cache)
    assert loss >= -1e-5  # cross-entropy of a distribution against a distribution
    # p - t sums to 0 over the classes when the targets sum to 1
    assert_close(dz.sum(axis=axis), np.zeros(np.delete(y.shape, axis % y.ndim)), atol=1e-6, rtol=0, name="row sums")
    p = cache.probabilities
    if np.all((p >= L.EPSILON) & (p <= 1 - L.EPSILON)):  # where the clip does nothing, the two agree
        cce, _ = L.categorical_crossentropy_forward(p, t, axis=axis)
        assert_close(cce, loss, atol=1e-4, rtol=1e-4, name="cce of softmax")


@given(ys=st.tuples(shapes, shapes).filter(lambda s: s[0] != s[1]))
def test_property_mismatched_shapes_are_rejected_before_any_kernel(ys):
    a, b = np.ones(ys[0]), np.ones(ys[1])
    with pytest.raises(ValueError, match=esc(f"t must have the shape of y {a.shape}; got {b.shape}")):
        L.loss_forward("mse", a, b)
