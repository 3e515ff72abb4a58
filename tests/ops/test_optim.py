"""Optimizers: Numba vs the NumPy reference, vs an independent scalar loop, SymPy, the notes' step,
convergence on a quadratic, bad input, properties."""

import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.helpers import assert_close, finite_difference, random_array, tolerance
from toolkit.ops import optim
from toolkit.ops.optim import reference

SHAPES = [(1,), (7,), (3, 5), (2, 3, 4), (40000,)]  # the parallel kernels: tests/ops/test_parallel_paths.py
SGD_VARIANTS = {"plain": dict(momentum=0.0), "momentum": dict(momentum=0.9),
                "nesterov": dict(momentum=0.8, nesterov=True)}


def _sgd_ref(param, grad, velocity, lr=0.01, momentum=0.0, nesterov=False):
    return reference.sgd_update(param, grad, velocity, lr, momentum, nesterov)


def _adam_ref(param, grad, m, v, step, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-7):
    return reference.adam_update(param, grad, m, v, step, lr, beta1, beta2, eps)


# --- Numba vs reference --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("variant", sorted(SGD_VARIANTS))
def test_sgd_numba_matches_reference(variant, shape, dtype, rng):
    hyper = dict(lr=0.05, **SGD_VARIANTS[variant])
    param = random_array(rng, shape, dtype)
    velocity = None if variant == "plain" else np.zeros(shape, dtype)
    param_ref = param.copy()
    velocity_ref = None if velocity is None else velocity.copy()
    for _ in range(3):
        grad = random_array(rng, shape, dtype)
        assert optim.sgd_update(param, grad, velocity, **hyper) is param  # in place, returned for chaining
        _sgd_ref(param_ref, grad, velocity_ref, **hyper)
    assert param.dtype == dtype
    assert_close(param, param_ref, **tolerance(dtype), name="param")
    if velocity is not None:
        assert_close(velocity, velocity_ref, **tolerance(dtype), name="velocity")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_adam_numba_matches_reference(shape, dtype, rng):
    param = random_array(rng, shape, dtype)
    m, v = np.zeros(shape, dtype), np.zeros(shape, dtype)
    param_ref, m_ref, v_ref = param.copy(), m.copy(), v.copy()
    for step in range(1, 4):
        grad = random_array(rng, shape, dtype)
        assert optim.adam_update(param, grad, m, v, step, lr=0.01) is param
        _adam_ref(param_ref, grad, m_ref, v_ref, step, lr=0.01)
    for name, ours, theirs in (("param", param, param_ref), ("m", m, m_ref), ("v", v, v_ref)):
        assert ours.dtype == dtype
        assert_close(ours, theirs, **tolerance(dtype), name=name)


# --- against an independent loop over Python floats --------------------------------------------------------------
def _hand_sgd(ws, gs_per_step, lr, momentum, nesterov):
    ws, vel = list(ws), [0.0] * len(ws)
    for gs in gs_per_step:
        for i, g in enumerate(gs):
            if momentum == 0.0:
                ws[i] = ws[i] - lr * g
                continue
            vel[i] = momentum * vel[i] - lr * g
            ws[i] = ws[i] + (momentum * vel[i] - lr * g if nesterov else vel[i])
    return ws


def _hand_adam(ws, gs_per_step, lr, b1, b2, eps):
    ws, ms, vs = list(ws), [0.0] * len(ws), [0.0] * len(ws)
    for t, gs in enumerate(gs_per_step, start=1):
        for i, g in enumerate(gs):
            ms[i] = b1 * ms[i] + (1 - b1) * g
            vs[i] = b2 * vs[i] + (1 - b2) * g * g
            m_hat, v_hat = ms[i] / (1 - b1**t), vs[i] / (1 - b2**t)  # Algorithm 1, with eps rescaled to match
            ws[i] = ws[i] - lr * m_hat / (math.sqrt(v_hat) + eps / math.sqrt(1 - b2**t))
    return ws


@pytest.mark.parametrize("variant", sorted(SGD_VARIANTS))
def test_sgd_matches_hand_loop_over_several_steps(variant, rng):
    hyper = dict(lr=0.03, **SGD_VARIANTS[variant])
    w0 = rng.standard_normal(6)
    grads = rng.standard_normal((5, 6))
    param, velocity = w0.copy(), (None if variant == "plain" else np.zeros(6))
    for g in grads:
        optim.sgd_update(param, g, velocity, **hyper)
    expected = _hand_sgd(w0, grads.tolist(), hyper["lr"], hyper["momentum"], hyper.get("nesterov", False))
    assert_close(param, expected, atol=1e-14, rtol=1e-12, name=f"sgd {variant}")


@pytest.mark.parametrize("hyper", [dict(), dict(lr=0.02, beta1=0.5, beta2=0.9, eps=1e-3), dict(beta1=0.0, beta2=0.0)])
def test_adam_matches_hand_loop_over_several_steps(hyper, rng):
    full = {**dict(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-7), **hyper}  # Keras defaults, then overrides
    w0 = rng.standard_normal(6)
    grads = rng.standard_normal((6, 6))
    param, m, v = w0.copy(), np.zeros(6), np.zeros(6)
    for step, g in enumerate(grads, start=1):
        optim.adam_update(param, g, m, v, step, **full)
    expected = _hand_adam(w0, grads.tolist(), full["lr"], full["beta1"], full["beta2"], full["eps"])
    assert_close(param, expected, atol=1e-14, rtol=1e-11, name="adam")


def test_velocity_with_zero_momentum_is_plain_gradient_descent(rng):
    param, grad = random_array(rng, (4, 3)), random_array(rng, (4, 3))
    plain = param.copy()
    velocity = random_array(rng, (4, 3))  # any old value: momentum 0 forgets it
    optim.sgd_update(param, grad, velocity, lr=0.1)
    optim.sgd_update(plain, grad, lr=0.1)
    assert np.array_equal(param, plain)
    assert np.array_equal(velocity, -0.1 * grad)


# --- SymPy -----------------------------------------------------------------------------------------------------------
LR, B1, B2, EPS, G, M, V = sp.symbols("lr beta1 beta2 epsilon g m v", positive=True)


def test_keras_adam_form_equals_algorithm_1_with_rescaled_epsilon():
    # c1 = 1 - beta1^t and c2 = 1 - beta2^t are positive because the betas lie in [0, 1).
    c1, c2 = sp.symbols("c1 c2", positive=True)
    keras = LR * sp.sqrt(c2) / c1 * M / (sp.sqrt(V) + EPS)
    m_hat, v_hat = M / c1, V / c2
    algorithm_1 = LR * m_hat / (sp.sqrt(v_hat) + EPS / sp.sqrt(c2))
    assert sp.simplify((keras - algorithm_1).rewrite(sp.exp)) == 0
    # and not with the same epsilon: the difference is real, not an artefact of simplify
    plain = LR * m_hat / (sp.sqrt(v_hat) + EPS)
    assert sp.simplify((keras - plain).subs({LR: 1, c1: sp.Rational(1, 10), c2: sp.Rational(1, 1000),
                                             M: 1, V: 1, EPS: sp.Rational(1, 10)})) != 0
    # numeric spot check: the kernel's first step (m = (1 - beta1) g, v = (1 - beta2) g^2) is the Keras form
    param, m_state, v_state = np.zeros(1), np.zeros(1), np.zeros(1)
    optim.adam_update(param, np.array([0.5]), m_state, v_state, 1, lr=0.01, eps=1e-3)
    values = {LR: 0.01, c1: 0.1, c2: 0.001, M: 0.1 * 0.5, V: 0.001 * 0.25, EPS: 1e-3}
    assert -param[0] == pytest.approx(float(keras.subs(values)), rel=1e-12)


def test_adam_with_a_constant_gradient_steps_by_about_lr():
    # Unroll three steps from m = v = 0 symbolically: the step is lr * g * s / (s * g + eps), s = sqrt(1 - beta2^3).
    m, v = sp.Integer(0), sp.Integer(0)
    for t in range(1, 4):
        m = B1 * m + (1 - B1) * G
        v = B2 * v + (1 - B2) * G**2
        step = LR * sp.sqrt(1 - B2**t) / (1 - B1**t) * m / (sp.sqrt(v) + EPS)
    s = sp.sqrt(1 - B2**3)
    closed_form = LR * G * s / (s * G + EPS)
    assert sp.simplify((step - closed_form).rewrite(sp.exp)) == 0
    # numeric spot check against the kernel's third update
    values = {LR: 0.01, B1: 0.9, B2: 0.999, EPS: 1e-7, G: 0.37}
    param, m_state, v_state, g = np.zeros(1), np.zeros(1), np.zeros(1), np.full(1, 0.37)
    for t in range(1, 4):
        before = param[0]
        optim.adam_update(param, g, m_state, v_state, t, lr=0.01)
    assert before - param[0] == pytest.approx(float(closed_form.subs(values)), rel=1e-12)


# --- the notes' gradient-descent step (document 004) -----------------------------------------------------------------
def test_notes_single_gradient_descent_step():
    # 004 "Loss Functions in Deep Learning": x1 = 2, label 6, w = 5, L(w) = 1/2 (6 - w x1)^2, lr 0.1.
    w = sp.symbols("w", real=True)
    loss = sp.Rational(1, 2) * (6 - w * 2) ** 2
    gradient = sp.diff(loss, w).subs(w, 5)
    w_array = np.array([5.0])
    by_fd = finite_difference(lambda: float(loss.subs(w, w_array[0])), w_array)
    assert_close(by_fd, [float(gradient)], atol=1e-6, rtol=1e-6, name="dL/dw by finite differences")
    assert gradient == 8  # the notes print 8

    param = np.array([5.0])
    optim.sgd_update(param, np.array([float(gradient)]), lr=0.1)
    assert round(float(param[0]), 1) == 4.2  # the notes print 4.2 (one decimal)
    assert loss.subs(w, param[0]) < loss.subs(w, 5)  # "the loss for the new weight is smaller"

    optimum = sp.solve(sp.diff(loss, w), w)
    assert optimum == [3]  # the notes print the optimum 3
    for _ in range(60):
        optim.sgd_update(param, np.array([float(sp.diff(loss, w).subs(w, param[0]))]), lr=0.1)
    assert param[0] == pytest.approx(3.0, abs=1e-9)


# --- convergence on a quadratic -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", ["sgd", "momentum", "nesterov", "adam"])
def test_converges_on_a_quadratic(method, dtype, rng):
    # f(w) = 1/2 sum a_i (w_i - c_i)^2, condition number 4: minimum at c.
    a = np.linspace(0.5, 2.0, 8).astype(dtype)
    c = random_array(rng, (8,), dtype, scale=3.0)
    w = np.zeros(8, dtype)
    state = [np.zeros(8, dtype), np.zeros(8, dtype)]
    for step in range(1, 401):
        grad = a * (w - c)
        if method == "sgd":
            optim.sgd_update(w, grad, lr=0.5)
        elif method == "adam":
            optim.adam_update(w, grad, state[0], state[1], step, lr=0.1)
        else:
            optim.sgd_update(w, grad, state[0], lr=0.1, momentum=0.8, nesterov=method == "nesterov")
    assert_close(w, c, atol=1e-5, rtol=0, name=f"{method} minimum")


# --- NaN / Inf ------------------------------------------------------------------------------------------------------------
def test_nan_and_inf_follow_ieee():
    grad = np.array([np.nan, np.inf, -np.inf, 0.5, 1e150, 1e200])
    for update in ("sgd", "adam"):
        param, m, v = np.ones(6), np.zeros(6), np.zeros(6)
        ref, m_ref, v_ref = param.copy(), m.copy(), v.copy()
        if update == "sgd":
            optim.sgd_update(param, grad, m, lr=0.1, momentum=0.5)
            _sgd_ref(ref, grad, m_ref, lr=0.1, momentum=0.5)
        else:
            optim.adam_update(param, grad, m, v, 1)
            _adam_ref(ref, grad, m_ref, v_ref, 1)
        assert_close(param, ref, atol=1e-15, rtol=1e-12, name=update)
        assert np.isnan(param[0]) and np.isfinite(param[3])
    assert np.isnan(param[1])  # Adam: m / sqrt(v) = inf / inf
    assert param[4] == pytest.approx(1 - 0.001, rel=1e-12)  # a huge gradient still steps by lr
    assert param[5] == 1.0  # g^2 overflows: v = inf, so the step m / sqrt(v) is 0


# --- bad input -------------------------------------------------------------------------------------------------------------
def _read_only(a):
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("change,error,words", [
    (dict(param=np.ones(4, np.int64)), TypeError, "param must have dtype float32 or float64; got int64"),
    (dict(grad=np.ones(4, np.complex128)), TypeError, r"grad must have dtype float32 or float64; got complex128 \(complex\)"),
    (dict(param=np.ones(0), grad=np.ones(0), velocity=np.ones(0)), ValueError, r"param must not be empty; got shape \(0,\)"),
    (dict(param=[1.0, 2.0]), TypeError, "param must be a NumPy or CuPy array; got list"),
    (dict(grad=np.ones(5)), ValueError, r"grad must have the shape of param \(4,\); got \(5,\)"),
    (dict(grad=np.ones(4, np.float32)), TypeError, "grad must have dtype float64 like the other inputs; got float32"),
    (dict(param=_read_only(np.ones(4))), ValueError, "param is updated in place, so it must be writeable; got a read-only array"),
    (dict(param=np.ones(8)[::2]), ValueError, r"param is updated in place, so it must be C-contiguous; got a strided view"),
    (dict(velocity=_read_only(np.zeros(4))), ValueError, "velocity is updated in place, so it must be writeable"),
    (dict(velocity=np.zeros((4, 1))), ValueError, r"velocity must have the shape of param \(4,\); got \(4, 1\)"),
    (dict(velocity=None), ValueError, r"velocity is required when momentum > 0 \(got momentum=0.9 and velocity=None\)"),
    (dict(velocity=None, momentum=0.0, nesterov=True), ValueError, "velocity is required when nesterov=True"),
    (dict(lr=0.0), ValueError, "lr must be > 0.0; got 0.0"),
    (dict(lr=-0.1), ValueError, "lr must be > 0.0; got -0.1"),
    (dict(lr=float("inf")), ValueError, "lr must be finite; got inf"),
    (dict(lr="0.1"), TypeError, "lr must be a real number; got '0.1' \\(str\\)"),
    (dict(momentum=1.5), ValueError, "momentum must be <= 1.0; got 1.5"),
    (dict(momentum=-0.5), ValueError, "momentum must be >= 0.0; got -0.5"),
    (dict(nesterov=1), TypeError, r"nesterov must be True or False; got 1 \(int\)"),
])
def test_sgd_bad_input_is_named_before_any_update(change, error, words):
    args = dict(param=np.ones(4), grad=np.ones(4), velocity=np.zeros(4), lr=0.1, momentum=0.9)
    args.update(change)
    before = {k: np.array(a, copy=True) for k, a in args.items() if isinstance(a, np.ndarray)}
    with pytest.raises(error, match=words):
        optim.sgd_update(**args)
    for k, a in before.items():
        assert np.array_equal(args[k], a)


@pytest.mark.parametrize("change,error,words", [
    (dict(m=np.zeros(3)), ValueError, r"m must have the shape of param \(4,\); got \(3,\)"),
    (dict(v=np.zeros(4, np.float32)), TypeError, "v must have dtype float64 like the other inputs; got float32"),
    (dict(v=_read_only(np.zeros(4))), ValueError, "v is updated in place, so it must be writeable"),
    (dict(step=0), ValueError, "step must be a positive integer; got 0"),
    (dict(step=1.0), TypeError, r"step must be a positive integer; got 1.0 \(float\)"),
    (dict(step=True), TypeError, r"step must be a positive integer; got True \(bool\)"),
    (dict(lr=0), ValueError, "lr must be > 0.0; got 0.0"),
    (dict(beta1=1.0), ValueError, "beta1 must be < 1.0; got 1.0"),
    (dict(beta1=-0.1), ValueError, "beta1 must be >= 0.0; got -0.1"),
    (dict(beta2=1.0), ValueError, "beta2 must be < 1.0; got 1.0"),
    (dict(eps=0.0), ValueError, "eps must be > 0.0; got 0.0"),
])
def test_adam_bad_input_is_named_before_any_update(change, error, words):
    args = dict(param=np.ones(4), grad=np.ones(4), m=np.zeros(4), v=np.zeros(4), step=1)
    args.update(change)
    before = {k: np.array(a, copy=True) for k, a in args.items() if isinstance(a, np.ndarray)}
    with pytest.raises(error, match=words):
        optim.adam_update(**args)
    for k, a in before.items():
        assert np.array_equal(args[k], a)


def test_state_arrays_must_not_overlap():
    param, grad, state = np.ones(4), np.ones(4), np.zeros(4)
    with pytest.raises(ValueError, match="m and v are both updated in place, so they must be different arrays"):
        optim.adam_update(param, grad, state, state, 1)
    with pytest.raises(ValueError, match="param and velocity are both updated in place"):
        optim.sgd_update(param, grad, param, momentum=0.9)
    with pytest.raises(ValueError, match="param and m are both updated in place"):
        optim.adam_update(param, grad, param, np.zeros(4), 1)
    buffer = np.zeros(8)
    with pytest.raises(ValueError, match="m and v are both updated in place"):  # overlapping views
        optim.adam_update(param, grad, buffer[:4], buffer[2:6], 1)
    optim.adam_update(param, grad, buffer[:4], buffer[4:], 1)  # disjoint halves of one buffer: fine


def test_strided_or_read_only_grad_is_copied_not_rejected(rng):
    param = random_array(rng, (3, 4))
    expected = param - 0.1 * random_array(np.random.default_rng(7), (6, 8))[::2, ::2]
    grad = _read_only(random_array(np.random.default_rng(7), (6, 8))[::2, ::2])
    assert optim.sgd_update(param, grad, lr=0.1) is param
    assert_close(param, expected, atol=1e-15, rtol=1e-15, name="param")


# --- property-based ------------------------------------------------------------------------------------------------------
values = st.floats(-1e3, 1e3, allow_nan=False)


@given(param=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6), elements=values),
       lr=st.floats(1e-4, 1.0), momentum=st.floats(0.0, 1.0), nesterov=st.booleans(),
       beta1=st.floats(0.0, 0.999), beta2=st.floats(0.0, 0.9999), eps=st.floats(1e-8, 1e-1),
       step=st.integers(1, 10_000), data=st.data())
def test_property_numba_matches_reference(param, lr, momentum, nesterov, beta1, beta2, eps, step, data):
    arrays = hnp.arrays(np.float64, param.shape, elements=values)
    grad, velocity, m = data.draw(arrays), data.draw(arrays), data.draw(arrays)
    v = np.abs(data.draw(arrays))

    ours, ref, vel_ref = param.copy(), param.copy(), velocity.copy()
    optim.sgd_update(ours, grad, velocity, lr=lr, momentum=momentum, nesterov=nesterov)
    _sgd_ref(ref, grad, vel_ref, lr, momentum, nesterov)
    assert_close(ours, ref, atol=1e-12, rtol=1e-12, name="sgd param")
    assert_close(velocity, vel_ref, atol=1e-12, rtol=1e-12, name="sgd velocity")

    ours, ref, m_ref, v_ref = param.copy(), param.copy(), m.copy(), v.copy()
    optim.adam_update(ours, grad, m, v, step, lr=lr, beta1=beta1, beta2=beta2, eps=eps)
    _adam_ref(ref, grad, m_ref, v_ref, step, lr, beta1, beta2, eps)
    for name, a, b in (("param", ours, ref), ("m", m, m_ref), ("v", v, v_ref)):
        assert_close(a, b, atol=1e-12, rtol=1e-12, name=f"adam {name}")
    assert np.all(v >= 0)  # the second moment stays a mean of squares
    # one Adam step moves each weight by at most lr * sqrt(1 - b2^t) / (1 - b1^t) * |m| / (sqrt(v) + eps)
    bound = reference.adam_step_size(lr, beta1, beta2, step) * np.abs(m) / (np.sqrt(v) + eps)
    assert np.all(np.abs(ours - param) <= bound * (1 + 1e-12) + 1e-12)


# --- grad must not overlap what the update writes (issue 11) ---------------------------------------------------
def _overlapping_cases():
    """(update, kwargs, the array grad overlaps): the same array and a view shifted by one element."""
    buf = np.arange(1.0, 10.0)
    p, g = buf[1:], buf[:-1]  # p[i] is written before g[i + 1] = p[i] is read
    yield "sgd shifted", optim.sgd_update, dict(param=p, grad=g, lr=0.1), "param"
    same = np.ones(4)
    yield "sgd same", optim.sgd_update, dict(param=same, grad=same, lr=0.1), "param"
    buf2 = np.zeros(9)
    yield "sgd velocity", optim.sgd_update, dict(param=np.ones(8), grad=buf2[:-1], velocity=buf2[1:], momentum=0.9), \
        "velocity"
    yield "adam shifted", optim.adam_update, dict(param=p, grad=g, m=np.zeros(8), v=np.zeros(8), step=1), "param"
    yield "adam same", optim.adam_update, dict(param=same, grad=same, m=np.zeros(4), v=np.zeros(4), step=1), "param"
    m = np.zeros(4)
    yield "adam m", optim.adam_update, dict(param=np.ones(4), grad=m, m=m, v=np.zeros(4), step=1), "m"
    buf3 = np.ones(5)
    yield "adam v", optim.adam_update, dict(param=np.ones(4), grad=buf3[1:], m=np.zeros(4), v=buf3[:-1], step=1), "v"


@pytest.mark.parametrize("case", list(_overlapping_cases()), ids=lambda c: c[0])
def test_grad_overlapping_a_written_array_is_rejected_before_any_update(case):
    _, update, kwargs, written = case
    before = {k: a.copy() for k, a in kwargs.items() if isinstance(a, np.ndarray)}
    with pytest.raises(ValueError, match=f"grad must not share memory with {written}, which the update writes "
                                         f"in place; got .* \\(pass grad.copy\\(\\)\\)"):
        update(**kwargs)
    for k, a in before.items():
        assert np.array_equal(kwargs[k], a), f"{k} changed"


def test_a_copy_of_the_shifted_grad_gives_the_reference_values():
    """What the check protects: with a copy, param -= lr * grad reads every grad value before any write."""
    buf = np.arange(1.0, 10.0)
    param, grad = buf[1:], buf[:-1].copy()
    expected = param - 0.1 * grad
    optim.sgd_update(param, grad, lr=0.1)
    assert np.array_equal(param, expected)


def test_grad_in_a_disjoint_part_of_params_buffer_is_fine():
    buf = np.ones(8)
    param, grad = buf[:4], buf[4:]
    optim.adam_update(param, grad, np.zeros(4), np.zeros(4), 1, lr=0.5)
    assert np.array_equal(buf[4:], np.ones(4)) and np.all(buf[:4] < 1)
