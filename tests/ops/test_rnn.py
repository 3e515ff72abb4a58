"""Simple RNN: Numba vs the NumPy reference, every gradient vs finite differences, BPTT vs SymPy,
both vs PyTorch's nn.RNN (when installed), stability, NaN/Inf and bad input."""

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import assert_close, check_gradient, random_array, tolerance
from toolkit.ops import rnn
from toolkit.ops.rnn import cpu, reference

GRAD_NAMES = ("dx", "dh0", "dW_xh", "dW_hh", "db_h", "dW_hy", "db_y")
# (N, T, D, H, O); O None = no read-out. H = 131 leaves a remainder after the vectorised loops.
SHAPES = [(1, 1, 1, 1, 1), (2, 3, 2, 3, 2), (1, 7, 5, 4, None), (5, 1, 3, 6, 3), (3, 9, 4, 7, 1), (6, 4, 9, 131, 5)]


def make_inputs(rng, N, T, D, H, O, dtype=np.float64, readout_bias=True):
    """Weights scaled by 1/sqrt(fan-in) so the recurrence neither saturates nor explodes."""
    args = dict(
        x=random_array(rng, (N, T, D), dtype),
        h0=random_array(rng, (N, H), dtype, 0.5),
        W_xh=random_array(rng, (D, H), dtype, 1 / np.sqrt(D)),
        W_hh=random_array(rng, (H, H), dtype, 0.9 / np.sqrt(H)),
        b_h=random_array(rng, (H,), dtype, 0.3),
        W_hy=None if O is None else random_array(rng, (H, O), dtype, 1 / np.sqrt(H)),
        b_y=None if O is None or not readout_bias else random_array(rng, (O,), dtype, 0.3),
    )
    return args


def assert_grads_close(ours, expected, tol, label):
    for name, a, e in zip(GRAD_NAMES, ours, expected):
        if e is None:
            assert a is None, f"{label} {name}: expected None, got an array"
        else:
            assert a.dtype == e.dtype, f"{label} {name}: dtype {a.dtype} vs {e.dtype}"
            assert_close(a, e, **tol, name=f"{label} {name}")


# --- Numba vs reference -------------------------------------------------------------------------------
# the `kernels` fixture (serial / forced-parallel cpu kernels) is in tests/ops/conftest.py


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_numba_matches_reference(shape, dtype, kernels, rng):
    N, T, D, H, O = shape
    args = make_inputs(rng, N, T, D, H, O, dtype)
    y, h, cache = rnn.rnn_forward(**args)
    y_ref, h_ref, cache_ref = reference.forward(**args)
    tol = tolerance(dtype)
    assert h.dtype == dtype and h.shape == (N, T, H)
    assert_close(h, h_ref, **tol, name="h")
    if O is None:
        assert y is None
    else:
        assert y.dtype == dtype
        assert_close(y, y_ref, **tol, name="y")
    dy = None if O is None else random_array(rng, (N, T, O), dtype)
    dh = random_array(rng, (N, T, H), dtype)
    assert_grads_close(rnn.rnn_backward(dy, dh, cache), reference.backward(dy, dh, cache_ref), tol, "rnn")


CASES = ["dy only", "dh only", "no read-out", "read-out without bias", "dh only with read-out"]


@pytest.mark.parametrize("case", CASES)
def test_backward_variants_match_reference(case, rng):
    O = None if case == "no read-out" else 2
    args = make_inputs(rng, 3, 4, 2, 5, O, readout_bias=case != "read-out without bias")
    _, _, cache = rnn.rnn_forward(**args)
    _, _, cache_ref = reference.forward(**args)
    dy = random_array(rng, (3, 4, 2)) if case in ("dy only", "read-out without bias") else None
    dh = None if dy is not None else random_array(rng, (3, 4, 5))
    ours = rnn.rnn_backward(dy, dh, cache)
    assert_grads_close(ours, reference.backward(dy, dh, cache_ref), tolerance(np.float64), case)
    if case == "no read-out":
        assert ours[5] is None and ours[6] is None
    if case == "read-out without bias":
        assert ours[5] is not None and ours[6] is None
    if case == "dh only with read-out":  # y does not reach the loss: its weights get exactly zero gradient
        assert not ours[5].any() and not ours[6].any()


def test_missing_h0_means_zeros(rng):
    args = make_inputs(rng, 2, 3, 2, 4, None)
    y, h, cache = rnn.rnn_forward(**{**args, "h0": None})
    _, h_zero, _ = rnn.rnn_forward(**{**args, "h0": np.zeros((2, 4))})
    assert_close(h, h_zero, atol=0, rtol=0, name="h from h0=None")
    assert rnn.rnn_backward(None, np.ones_like(h), cache)[1].shape == (2, 4)


# --- finite differences (float64, tiny shapes) ---------------------------------------------------------
@pytest.mark.parametrize("readout", ["with bias", "without bias", "none"])
@pytest.mark.parametrize("impl", ["numba", "reference"])
def test_every_gradient_matches_finite_differences(impl, readout, rng):
    N, T, D, H, O = 2, 3, 2, 3, (None if readout == "none" else 2)
    args = make_inputs(rng, N, T, D, H, O, readout_bias=readout == "with bias")
    dy = None if O is None else random_array(rng, (N, T, O))
    dh = random_array(rng, (N, T, H))
    module = cpu if impl == "numba" else reference

    def loss():  # L = sum(y * dy) + sum(h * dh), so dL/dy = dy and dL/dh (direct) = dh
        y, h, _ = module.forward(**args)
        return float((h * dh).sum() + (0.0 if y is None else (y * dy).sum()))

    _, _, cache = module.forward(**args)
    grads = dict(zip(GRAD_NAMES, module.backward(dy, dh, cache)))
    for name in ("x", "h0", "W_xh", "W_hh", "b_h", "W_hy", "b_y"):
        if args[name] is None:
            assert grads["d" + name] is None
        else:
            check_gradient(loss, args[name], grads["d" + name], name=f"{name} ({impl})")


# --- SymPy: the one-step Jacobian, and the BPTT product/sum for T = 3 ------------------------------------
W, U, B, HPREV = sp.symbols("w u b h_prev", real=True)
XS = sp.symbols("x1:4", real=True)
KS = sp.symbols("k1:4", real=True)  # dL/dh_t given from outside: L = sum_t k_t h_t
H0 = sp.Symbol("h0", real=True)


def _step(x_t, h_prev):
    return sp.tanh(x_t * W + h_prev * U + B)


def test_one_step_jacobian_equals_sympy():
    """dh_t/dh_{t-1} = u (1 - h_t^2): the factor the kernel multiplies by at every step back in time."""
    symbolic = sp.diff(_step(XS[0], HPREV), HPREV)
    assert sp.simplify((symbolic - U * (1 - _step(XS[0], HPREV) ** 2)).rewrite(sp.exp)) == 0
    explicit = sp.diff(_step(XS[0], HPREV), U)  # dh_t^+/du: h_{t-1} held constant
    assert sp.simplify((explicit - HPREV * (1 - _step(XS[0], HPREV) ** 2)).rewrite(sp.exp)) == 0


def test_bptt_sum_for_three_steps_equals_sympy_and_the_kernel():
    """dL/dp = sum_t k_t sum_{k<=t} (prod_{j=k+1..t} dh_j/dh_{j-1}) dh_k^+/dp for every parameter p,
    built from the derived one-step Jacobian, equals the derivative of the unrolled loss and the kernel."""
    hs = [H0]
    for t in range(3):
        hs.append(_step(XS[t], hs[-1]))
    loss = sum(k * h for k, h in zip(KS, hs[1:]))
    jacobian = sp.diff(_step(XS[0], HPREV), HPREV)  # generic step, then placed at step j
    at_step = lambda expr, j: expr.subs({XS[0]: XS[j - 1]}).subs(HPREV, hs[j - 1])

    def explicit(p, k):  # dh_k^+/dp with h_{k-1} held constant; x_j enters step j only
        if p in XS:
            return at_step(sp.diff(_step(XS[0], HPREV), XS[0]), k) if p == XS[k - 1] else 0
        return at_step(sp.diff(_step(XS[0], HPREV), p), k)

    def bptt(p):
        return sum(KS[t - 1] * sp.Mul(*[at_step(jacobian, j) for j in range(k + 1, t + 1)]) * explicit(p, k)
                   for t in range(1, 4) for k in range(1, t + 1))

    def bptt_h0():  # h0 reaches the loss only through h_1: the whole chain back to step 1, then dh_1/dh0
        return sum(KS[t - 1] * sp.Mul(*[at_step(jacobian, j) for j in range(1, t + 1)]) for t in range(1, 4))

    params = {"dW_hh": U, "dW_xh": W, "db_h": B}
    formulas = {name: bptt(p) for name, p in params.items()}
    formulas["dh0"] = bptt_h0()
    formulas.update({f"dx{t}": bptt(XS[t - 1]) for t in range(1, 4)})
    derivatives = {**{name: sp.diff(loss, p) for name, p in params.items()}, "dh0": sp.diff(loss, H0),
                   **{f"dx{t}": sp.diff(loss, XS[t - 1]) for t in range(1, 4)}}
    for name in formulas:
        # Exact symbolic identity. (simplify of the rewrite(exp) of three nested tanh takes minutes,
        # while both sides are polynomials in the same tanh terms, so expand decides it exactly.)
        assert sp.expand(formulas[name] - derivatives[name]) == 0, name

    values = {W: 0.7, U: -1.3, B: 0.2, H0: 0.4, XS[0]: 0.5, XS[1]: -1.1, XS[2]: 2.0,
              KS[0]: 0.3, KS[1]: -0.8, KS[2]: 1.5}
    x = np.array([[[0.5], [-1.1], [2.0]]])
    _, _, cache = rnn.rnn_forward(x, np.array([[0.4]]), np.array([[0.7]]), np.array([[-1.3]]), np.array([0.2]))
    dx, dh0, dW_xh, dW_hh, db_h, _, _ = rnn.rnn_backward(None, np.array([[[0.3], [-0.8], [1.5]]]), cache)
    kernel = {"dW_hh": dW_hh[0, 0], "dW_xh": dW_xh[0, 0], "db_h": db_h[0], "dh0": dh0[0, 0],
              **{f"dx{t}": dx[0, t - 1, 0] for t in range(1, 4)}}
    for name, formula in formulas.items():
        assert_close(kernel[name], float(formula.subs(values)), atol=1e-12, rtol=1e-10, name=name)


# --- gold: PyTorch's nn.RNN -----------------------------------------------------------------------------
def test_matches_pytorch_rnn(rng):
    torch = pytest.importorskip("torch")
    N, T, D, H, O = 3, 5, 4, 6, 2
    args = make_inputs(rng, N, T, D, H, O)
    layer = torch.nn.RNN(D, H, batch_first=True, dtype=torch.float64)
    with torch.no_grad():  # PyTorch stores the transposes and a second bias (set to 0 here)
        layer.weight_ih_l0.copy_(torch.from_numpy(args["W_xh"].T))
        layer.weight_hh_l0.copy_(torch.from_numpy(args["W_hh"].T))
        layer.bias_ih_l0.copy_(torch.from_numpy(args["b_h"]))
        layer.bias_hh_l0.zero_()
    x_t = torch.from_numpy(args["x"]).requires_grad_()
    h0_t = torch.from_numpy(args["h0"])[None].requires_grad_()
    h_t, _ = layer(x_t, h0_t)
    W_hy, b_y = torch.from_numpy(args["W_hy"]).requires_grad_(), torch.from_numpy(args["b_y"]).requires_grad_()
    y_t = h_t @ W_hy + b_y
    dy, dh = random_array(rng, (N, T, O)), random_array(rng, (N, T, H))
    ((y_t * torch.from_numpy(dy)).sum() + (h_t * torch.from_numpy(dh)).sum()).backward()
    y, h, cache = rnn.rnn_forward(**args)
    tol = dict(atol=1e-12, rtol=1e-10)
    assert_close(h, h_t.detach().numpy(), **tol, name="h vs PyTorch")
    assert_close(y, y_t.detach().numpy(), **tol, name="y vs PyTorch")
    dx, dh0, dW_xh, dW_hh, db_h, dW_hy, db_y = rnn.rnn_backward(dy, dh, cache)
    for ours, theirs, name in [(dx, x_t.grad, "dx"), (dh0, h0_t.grad[0], "dh0"),
                               (dW_xh, layer.weight_ih_l0.grad.T, "dW_xh"), (dW_hh, layer.weight_hh_l0.grad.T, "dW_hh"),
                               (db_h, layer.bias_ih_l0.grad, "db_h"), (dW_hy, W_hy.grad, "dW_hy"),
                               (db_y, b_y.grad, "db_y")]:
        assert_close(ours, theirs.numpy(), **tol, name=f"{name} vs PyTorch")


# --- numerical behaviour ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturated_inputs_stay_finite(dtype, rng):
    # pytest turns RuntimeWarning into errors: no overflow warning anywhere in forward or backward.
    args = make_inputs(rng, 2, 4, 3, 5, 2, dtype)
    args["x"] = np.array([-1e4, 1e4], dtype=dtype)[:, None, None] * np.ones((2, 4, 3), dtype)
    y, h, cache = rnn.rnn_forward(**args)
    grads = rnn.rnn_backward(np.ones_like(y), np.ones_like(h), cache)
    assert np.all(np.abs(h) <= 1) and np.all(np.isfinite(y))
    assert all(np.all(np.isfinite(g)) for g in grads)
    h_ref = reference.forward(**args)[1]
    assert_close(h, h_ref, **tolerance(dtype), name="saturated h")


def test_nan_propagates_along_its_own_sequence_only(rng):
    args = make_inputs(rng, 3, 4, 2, 3, 2)
    args["x"][1, 2, 0] = np.nan
    args["x"][2, 1, 1] = np.inf
    y, h, cache = rnn.rnn_forward(**args)
    assert np.isnan(h[1, 2:]).all() and np.isfinite(h[1, :2]).all()  # the state carries NaN onward
    assert np.isfinite(h[0]).all() and np.isfinite(h[2]).all()  # tanh(+-inf) = +-1, other rows untouched
    y_ref, h_ref, cache_ref = reference.forward(**args)
    assert_close(h, h_ref, atol=1e-12, rtol=1e-10, name="h with NaN/Inf")
    dy, dh = np.ones_like(y), np.ones_like(h)
    with np.errstate(invalid="ignore"):  # NaN * 0 in the reference is NaN by IEEE rules
        expected = reference.backward(dy, dh, cache_ref)
    assert_grads_close(rnn.rnn_backward(dy, dh, cache), expected, dict(atol=1e-12, rtol=1e-10), "NaN")


def test_strided_and_read_only_inputs_are_copied_not_rejected(rng):
    args = make_inputs(rng, 2, 3, 2, 4, 2)
    strided = {k: np.repeat(v, 2, axis=-1)[..., ::2] for k, v in args.items()}
    for v in strided.values():
        v.flags.writeable = False
    y, h, cache = rnn.rnn_forward(**strided)
    y_ref, h_ref, _ = reference.forward(**args)
    assert_close(h, h_ref, atol=1e-12, rtol=1e-10, name="h from strided views")
    assert_close(y, y_ref, atol=1e-12, rtol=1e-10, name="y from strided views")


# --- bad input ---------------------------------------------------------------------------------------------
def _good(rng):
    return make_inputs(rng, 2, 3, 4, 5, 2)


@pytest.mark.parametrize("change,error,words", [
    ({"x": np.ones((2, 3))}, ValueError, r"x must have 3 dimensions; got shape \(2, 3\)"),
    ({"x": np.ones((2, 0, 4))}, ValueError, r"x must not be empty; got shape \(2, 0, 4\)"),
    ({"x": np.ones((2, 3, 4), dtype=np.int64)}, TypeError, "x must have dtype float32 or float64; got int64"),
    ({"x": np.ones((2, 3, 4), dtype=np.complex128)}, TypeError, "complex"),
    ({"x": [[[1.0]]]}, TypeError, "x must be a NumPy or CuPy array; got list"),
    ({"W_xh": np.ones((3, 5))}, ValueError, r"W_xh must have shape \(D, H\) with D = 4.*got \(3, 5\)"),
    ({"W_xh": np.ones((4, 5), np.float32)}, TypeError,
     "W_xh must have dtype float64 like the other inputs; got float32"),
    ({"W_hh": np.ones((5, 4))}, ValueError, r"W_hh must have shape \(5, 5\); got \(5, 4\)"),
    ({"W_hh": np.ones((6, 6))}, ValueError, r"W_hh must have shape \(5, 5\); got \(6, 6\)"),
    ({"b_h": np.ones(4)}, ValueError, r"b_h must have shape \(5,\); got \(4,\)"),
    ({"b_h": None}, TypeError, "b_h must be a NumPy or CuPy array; got NoneType"),
    ({"h0": np.ones((3, 5))}, ValueError, r"h0 must have shape \(2, 5\); got \(3, 5\)"),
    ({"h0": np.ones((2, 5), np.float32)}, TypeError, "h0 must have dtype float64"),
    ({"W_hy": np.ones((4, 2))}, ValueError, r"W_hy must have shape \(H, O\) with H = 5.*got \(4, 2\)"),
    ({"b_y": np.ones(3)}, ValueError, r"b_y must have shape \(2,\); got \(3,\)"),
    ({"W_hy": None}, ValueError, "b_y was given without W_hy"),
    ({"W_hy": np.ones((5, 0))}, ValueError, r"W_hy must not be empty; got shape \(5, 0\)"),
])
def test_bad_forward_input_is_named(change, error, words, rng):
    with pytest.raises(error, match=words):
        rnn.rnn_forward(**{**_good(rng), **change})


def test_bad_backward_input_is_named(rng):
    y, h, cache = rnn.rnn_forward(**_good(rng))
    with pytest.raises(ValueError, match="needs dy .* or dh .*; both are None"):
        rnn.rnn_backward(None, None, cache)
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 3, 2\); got \(2, 3, 5\)"):
        rnn.rnn_backward(np.ones((2, 3, 5)), None, cache)
    with pytest.raises(ValueError, match=r"dh must have shape \(2, 3, 5\); got \(2, 5\)"):
        rnn.rnn_backward(None, np.ones((2, 5)), cache)
    with pytest.raises(TypeError, match="dh must have dtype float64 like the other inputs; got float32"):
        rnn.rnn_backward(None, np.ones((2, 3, 5), np.float32), cache)
    with pytest.raises(TypeError, match="cache must be the RNNCache returned by rnn_forward; got tuple"):
        rnn.rnn_backward(np.ones_like(y), None, tuple(cache))
    _, h, no_readout = rnn.rnn_forward(**{**_good(rng), "W_hy": None, "b_y": None})
    with pytest.raises(ValueError, match=r"dy was given but the forward pass had no read-out"):
        rnn.rnn_backward(np.ones((2, 3, 2)), None, no_readout)


# --- property-based ------------------------------------------------------------------------------------------
dims = st.integers(1, 5)


@given(N=dims, T=dims, D=dims, H=dims, O=st.none() | dims, bias=st.booleans(), seed=st.integers(0, 2**16),
       scale=st.sampled_from([0.1, 1.0, 3.0]))
def test_property_numba_matches_reference(N, T, D, H, O, bias, seed, scale):
    rng = np.random.default_rng(seed)
    args = make_inputs(rng, N, T, D, H, O, readout_bias=bias)
    args["x"] *= scale
    y, h, cache = rnn.rnn_forward(**args)
    y_ref, h_ref, cache_ref = reference.forward(**args)
    tol = tolerance(np.float64)
    assert_close(h, h_ref, **tol, name="h")
    assert np.all(np.abs(h) <= 1)
    dy = None if O is None else random_array(rng, (N, T, O))
    dh = random_array(rng, (N, T, H))
    assert_grads_close(rnn.rnn_backward(dy, dh, cache), reference.backward(dy, dh, cache_ref), tol, "rnn")


@given(N=dims, T=dims, D=dims, H=dims, which=st.sampled_from(["W_xh", "W_hh", "b_h", "h0"]),
       axis=st.integers(0, 1), delta=st.sampled_from([-1, 1, 2]))
def test_property_any_wrong_size_is_rejected_by_name(N, T, D, H, which, axis, delta):
    args = make_inputs(np.random.default_rng(0), N, T, D, H, None)
    shape = list(args[which].shape)
    axis = min(axis, len(shape) - 1)
    shape[axis] += delta
    if shape[axis] < 1 or (which == "W_xh" and axis == 1):  # W_xh's second dimension defines H
        return
    args[which] = np.ones(shape)
    with pytest.raises(ValueError, match=which):
        rnn.rnn_forward(**args)
