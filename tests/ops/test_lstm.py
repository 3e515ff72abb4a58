"""LSTM: Numba vs the NumPy reference, every gradient vs finite differences, the gate derivatives and a
two-step cell vs SymPy, both vs PyTorch's nn.LSTM (when installed), stability, NaN/Inf and bad input."""

import numba
import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import assert_close, check_gradient, random_array, tolerance
from toolkit.ops import lstm
from toolkit.ops.lstm import cpu, reference

GRAD_NAMES = ("dx", "dh0", "dc0", "dW", "dU", "db")
# (N, T, D, H). H = 131 leaves a remainder after the vectorised loops. H = 8 (float64), 16 and 32 fill whole
# vectors: the row-block path, with 9 rows in blocks of 5 (a tile of 4 and one row) on two threads.
SHAPES = [(1, 1, 1, 1), (2, 3, 2, 3), (1, 7, 5, 4), (5, 1, 3, 6), (3, 9, 4, 7), (6, 4, 9, 131),
          (2, 4, 3, 8), (9, 3, 5, 16), (6, 5, 4, 32)]


def make_inputs(rng, N, T, D, H, dtype=np.float64):
    """Weights scaled by 1/sqrt(fan-in) so the gates are neither all saturated nor all at 1/2."""
    return dict(
        x=random_array(rng, (N, T, D), dtype),
        h0=random_array(rng, (N, H), dtype, 0.5),
        c0=random_array(rng, (N, H), dtype, 0.5),
        W=random_array(rng, (D, 4 * H), dtype, 1 / np.sqrt(D)),
        U=random_array(rng, (H, 4 * H), dtype, 1 / np.sqrt(H)),
        b=random_array(rng, (4 * H,), dtype, 0.5),
    )


def assert_grads_close(ours, expected, tol, label):
    for name, a, e in zip(GRAD_NAMES, ours, expected):
        assert a.dtype == e.dtype, f"{label} {name}: dtype {a.dtype} vs {e.dtype}"
        assert_close(a, e, **tol, name=f"{label} {name}")


# --- Numba vs reference -------------------------------------------------------------------------------
# the `kernels` fixture (serial / forced-parallel cpu kernels) is in tests/ops/conftest.py


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_numba_matches_reference(shape, dtype, kernels, rng):
    N, T, D, H = shape
    args = make_inputs(rng, N, T, D, H, dtype)
    h, c, cache = lstm.lstm_forward(**args)
    h_ref, c_ref, cache_ref = reference.forward(**args)
    tol = tolerance(dtype)
    assert h.dtype == c.dtype == dtype and h.shape == c.shape == (N, T, H)
    assert_close(h, h_ref, **tol, name="h")
    assert_close(c, c_ref, **tol, name="c")
    assert_close(cache.gates, cache_ref.gates, **tol, name="gates")
    dh, dc_last = random_array(rng, (N, T, H), dtype), random_array(rng, (N, H), dtype)
    assert_grads_close(lstm.lstm_backward(dh, cache, dc_last), reference.backward(dh, cache_ref, dc_last), tol, "lstm")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_blocks_take_whole_vector_widths_and_give_the_same_bits_on_any_thread_count(dtype, rng, monkeypatch):
    N, T, D, H = 9, 4, 5, 16
    assert cpu._row_blocks(N, T, 15, dtype) is None  # 15 is no whole vector: the per-step BLAS path
    args = make_inputs(rng, N, T, D, H, dtype)
    dh = random_array(rng, (N, T, H), dtype)
    results = []
    for work in (1 << 62, 0):  # one block on the calling thread, then a block per thread
        monkeypatch.setattr(cpu, "TILED_PARALLEL_MIN_MACS", work)
        blocks, _, parallel = cpu._row_blocks(N, T, H, dtype)
        threads = numba.get_num_threads()
        assert parallel == (work == 0 and threads > 1) and blocks == (min(N, threads) if parallel else 1)
        h, c, cache = cpu.forward(**args)
        results.append((h, c, *cpu.backward(dh, cache)))
    for serial, parallel in zip(*results):
        assert np.array_equal(serial, parallel)


@pytest.mark.parametrize("case", ["dh only", "dc_last only"])
def test_backward_with_one_upstream_gradient_matches_reference(case, rng):
    args = make_inputs(rng, 3, 4, 2, 5)
    _, _, cache = lstm.lstm_forward(**args)
    _, _, cache_ref = reference.forward(**args)
    dh = random_array(rng, (3, 4, 5)) if case == "dh only" else None
    dc_last = random_array(rng, (3, 5)) if case == "dc_last only" else None
    assert_grads_close(lstm.lstm_backward(dh, cache, dc_last), reference.backward(dh, cache_ref, dc_last),
                       tolerance(np.float64), case)


def test_missing_initial_states_mean_zeros(rng):
    args = make_inputs(rng, 2, 3, 2, 4)
    h, c, cache = lstm.lstm_forward(**{**args, "h0": None, "c0": None})
    zeros = np.zeros((2, 4))
    h_zero, c_zero, _ = lstm.lstm_forward(**{**args, "h0": zeros, "c0": zeros})
    assert_close(h, h_zero, atol=0, rtol=0, name="h from h0=None")
    assert_close(c, c_zero, atol=0, rtol=0, name="c from c0=None")
    assert [g.shape for g in lstm.lstm_backward(np.ones_like(h), cache)[1:3]] == [(2, 4), (2, 4)]


def test_gate_blocks_follow_keras_order(rng):
    """Only the forget gate's bias is huge and positive, the input gate's huge and negative: the cell
    must copy c_{t-1} exactly (f = 1, i = 0), which fails if the blocks are taken in another order."""
    N, T, D, H = 2, 4, 3, 2
    args = make_inputs(rng, N, T, D, H)
    args["W"][:] = 0
    args["U"][:] = 0
    args["b"][:] = 0
    args["b"][:H] = -50.0  # i -> 0
    args["b"][H:2 * H] = 50.0  # f -> 1
    h, c, _ = lstm.lstm_forward(**args)
    assert_close(c, np.repeat(args["c0"][:, None], T, axis=1), atol=1e-15, rtol=0, name="c carried unchanged")
    assert_close(h, 0.5 * np.tanh(c), atol=1e-15, rtol=1e-15, name="h with o = sigmoid(0) = 1/2")


# --- finite differences (float64, tiny shapes) ---------------------------------------------------------
@pytest.mark.parametrize("impl", ["numba", "reference"])
@pytest.mark.parametrize("H", [3, 8], ids=["H3", "H8_row_blocks"])  # 8 float64 lanes: the row-block path
def test_every_gradient_matches_finite_differences(impl, H, rng):
    N, T, D = 2, 3, 2
    assert (cpu._row_blocks(N, T, H, np.float64) is not None) == (H == 8)
    args = make_inputs(rng, N, T, D, H)
    dh, dc_last = random_array(rng, (N, T, H)), random_array(rng, (N, H))
    module = cpu if impl == "numba" else reference

    def loss():  # L = sum(h * dh) + sum(c_T * dc_last)
        h, c, _ = module.forward(**args)
        return float((h * dh).sum() + (c[:, -1] * dc_last).sum())

    _, _, cache = module.forward(**args)
    grads = dict(zip(GRAD_NAMES, module.backward(dh, cache, dc_last)))
    for name in ("x", "h0", "c0", "W", "U", "b"):
        check_gradient(loss, args[name], grads["d" + name], name=f"{name} ({impl})")


# --- SymPy ------------------------------------------------------------------------------------------------
def _sigmoid(z):
    return 1 / (1 + sp.exp(-z))


def _cell(x, h_prev, c_prev, w, u, b):
    """One scalar LSTM step; w, u, b are 4-tuples in gate order i, f, c, o."""
    z = [x * w[k] + h_prev * u[k] + b[k] for k in range(4)]
    i, f, g, o = _sigmoid(z[0]), _sigmoid(z[1]), sp.tanh(z[2]), _sigmoid(z[3])
    c = f * c_prev + i * g
    return o * sp.tanh(c), c


def test_gate_derivatives_equal_sympy():
    """d h / d z_gate for one step, as the backward kernel writes them, equal SymPy's derivatives."""
    zi, zf, zc, zo, c_prev = sp.symbols("z_i z_f z_c z_o c_prev", real=True)
    i, f, g, o = _sigmoid(zi), _sigmoid(zf), sp.tanh(zc), _sigmoid(zo)
    c = f * c_prev + i * g
    h = o * sp.tanh(c)
    dc = o * (1 - sp.tanh(c) ** 2)  # dh/dc
    kernel_forms = {zi: dc * g * i * (1 - i), zf: dc * c_prev * f * (1 - f),
                    zc: dc * i * (1 - g ** 2), zo: sp.tanh(c) * o * (1 - o)}
    for z, form in kernel_forms.items():
        assert sp.simplify((sp.diff(h, z) - form).rewrite(sp.exp)) == 0, z
    assert sp.simplify((sp.diff(c, c_prev) - f).rewrite(sp.exp)) == 0  # the cell's gradient highway
    # and the Numba kernel evaluates them: with D = H = 1, W = U = 0 and b = z, db is dh/dz per gate
    values = {zi: 0.3, zf: -1.2, zc: 0.8, zo: 2.1, c_prev: -0.7}
    zeros = np.zeros((1, 4))
    _, _, cache = lstm.lstm_forward(np.zeros((1, 1, 1)), np.zeros((1, 1)), np.array([[-0.7]]), zeros, zeros,
                                    np.array([0.3, -1.2, 0.8, 2.1]))
    db = lstm.lstm_backward(np.ones((1, 1, 1)), cache)[5]
    expected = [float(sp.diff(h, z).subs(values)) for z in (zi, zf, zc, zo)]
    assert_close(db, expected, atol=1e-12, rtol=1e-10, name="dh/dz per gate")


@pytest.mark.parametrize("target", ["h_2", "c_2"])
def test_two_step_cell_gradient_equals_sympy(target):
    """A scalar cell run for two steps: SymPy differentiates h_2 (or c_2) by every weight, the initial
    states and both inputs; the kernel's BPTT gives the same numbers."""
    # real=True keeps SymPy's assumption queries cheap (plain symbols make this test minutes long)
    w, u, b = (sp.symbols(f"{p}_i {p}_f {p}_c {p}_o", real=True) for p in "wub")
    x1, x2, h0, c0 = sp.symbols("x1 x2 h0 c0", real=True)
    h1, c1 = _cell(x1, h0, c0, w, u, b)
    h2, c2 = _cell(x2, h1, c1, w, u, b)
    out = h2 if target == "h_2" else c2
    inputs = [*w, *u, *b, x1, x2, h0, c0]
    numbers = [0.5, -0.4, 0.9, 0.3, -0.6, 0.8, 0.2, -1.1, 0.1, 1.0, -0.3, 0.2, 0.7, -1.4, 0.25, -0.5]
    # SymPy differentiates the unrolled expression; lambdify only evaluates the derivatives numerically
    grads = dict(zip(inputs, sp.lambdify(inputs, [sp.diff(out, s) for s in inputs], cse=True)(*numbers)))
    _, _, cache = lstm.lstm_forward(
        np.array([[[0.7], [-1.4]]]), np.array([[0.25]]), np.array([[-0.5]]),
        np.array([[0.5, -0.4, 0.9, 0.3]]), np.array([[-0.6, 0.8, 0.2, -1.1]]), np.array([0.1, 1.0, -0.3, 0.2]))
    if target == "h_2":
        dx, dh0, dc0, dW, dU, db = lstm.lstm_backward(np.array([[[0.0], [1.0]]]), cache)
    else:
        dx, dh0, dc0, dW, dU, db = lstm.lstm_backward(None, cache, dc_last=np.array([[1.0]]))
    tol = dict(atol=1e-12, rtol=1e-10)
    assert_close(dW[0], [grads[s] for s in w], **tol, name=f"d{target}/dW")
    assert_close(dU[0], [grads[s] for s in u], **tol, name=f"d{target}/dU")
    assert_close(db, [grads[s] for s in b], **tol, name=f"d{target}/db")
    assert_close(dx[0, :, 0], [grads[x1], grads[x2]], **tol, name=f"d{target}/dx")
    assert_close([dh0[0, 0], dc0[0, 0]], [grads[h0], grads[c0]], **tol, name=f"d{target}/d(h0, c0)")


# --- gold: PyTorch's nn.LSTM (same gate order i, f, g, o; it stores the transposes) -----------------------
def test_matches_pytorch_lstm(rng):
    torch = pytest.importorskip("torch")
    N, T, D, H = 3, 5, 4, 6
    args = make_inputs(rng, N, T, D, H)
    layer = torch.nn.LSTM(D, H, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        layer.weight_ih_l0.copy_(torch.from_numpy(args["W"].T))
        layer.weight_hh_l0.copy_(torch.from_numpy(args["U"].T))
        layer.bias_ih_l0.copy_(torch.from_numpy(args["b"]))
        layer.bias_hh_l0.zero_()
    x_t = torch.from_numpy(args["x"]).requires_grad_()
    h0_t = torch.from_numpy(args["h0"])[None].requires_grad_()
    c0_t = torch.from_numpy(args["c0"])[None].requires_grad_()
    out, (h_n, c_n) = layer(x_t, (h0_t, c0_t))
    dh, dc_last = random_array(rng, (N, T, H)), random_array(rng, (N, H))
    ((out * torch.from_numpy(dh)).sum() + (c_n[0] * torch.from_numpy(dc_last)).sum()).backward()
    h, c, cache = lstm.lstm_forward(**args)
    tol = dict(atol=1e-12, rtol=1e-10)
    assert_close(h, out.detach().numpy(), **tol, name="h vs PyTorch")
    assert_close(c[:, -1], c_n[0].detach().numpy(), **tol, name="c_T vs PyTorch")
    dx, dh0, dc0, dW, dU, db = lstm.lstm_backward(dh, cache, dc_last)
    for ours, theirs, name in [(dx, x_t.grad, "dx"), (dh0, h0_t.grad[0], "dh0"), (dc0, c0_t.grad[0], "dc0"),
                               (dW, layer.weight_ih_l0.grad.T, "dW"), (dU, layer.weight_hh_l0.grad.T, "dU"),
                               (db, layer.bias_ih_l0.grad, "db")]:
        assert_close(ours, theirs.numpy(), **tol, name=f"{name} vs PyTorch")


# --- numerical behaviour ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturated_gates_stay_finite(dtype, rng):
    # pytest turns RuntimeWarning into errors: the sigmoid must not overflow at |z| = 1e4.
    args = make_inputs(rng, 2, 4, 3, 5, dtype)
    args["x"] = np.array([-1e4, 1e4], dtype=dtype)[:, None, None] * np.ones((2, 4, 3), dtype)
    h, c, cache = lstm.lstm_forward(**args)
    grads = lstm.lstm_backward(np.ones_like(h), cache, np.ones_like(c[:, -1]))
    assert np.all(np.isfinite(h)) and np.all(np.isfinite(c)) and np.all(np.abs(h) <= 1)
    assert set(np.unique(cache.gates[:, :, : 2 * 5])) <= {0.0, 1.0}  # i and f saturate exactly
    assert all(np.all(np.isfinite(g)) for g in grads)
    h_ref, c_ref, _ = reference.forward(**args)
    assert_close(h, h_ref, **tolerance(dtype), name="saturated h")
    assert_close(c, c_ref, **tolerance(dtype), name="saturated c")


def test_nan_propagates_along_its_own_sequence_only(rng):
    args = make_inputs(rng, 3, 4, 2, 3)
    args["x"][1, 2, 0] = np.nan
    args["x"][2, 1, 1] = np.inf
    h, c, cache = lstm.lstm_forward(**args)
    assert np.isnan(h[1, 2:]).all() and np.isnan(c[1, 2:]).all() and np.isfinite(h[1, :2]).all()
    assert np.isfinite(h[0]).all() and np.isfinite(c[0]).all()
    h_ref, c_ref, cache_ref = reference.forward(**args)
    assert_close(h, h_ref, atol=1e-12, rtol=1e-10, name="h with NaN/Inf")
    assert_close(c, c_ref, atol=1e-12, rtol=1e-10, name="c with NaN/Inf")
    dh, dc_last = np.ones_like(h), np.ones_like(c[:, -1])
    with np.errstate(invalid="ignore"):  # NaN * 0 in the reference is NaN by IEEE rules
        expected = reference.backward(dh, cache_ref, dc_last)
    assert_grads_close(lstm.lstm_backward(dh, cache, dc_last), expected, dict(atol=1e-12, rtol=1e-10), "NaN")


def test_strided_and_read_only_inputs_are_copied_not_rejected(rng):
    args = make_inputs(rng, 2, 3, 2, 4)
    strided = {k: np.repeat(v, 2, axis=-1)[..., ::2] for k, v in args.items()}
    for v in strided.values():
        v.flags.writeable = False
    h, c, _ = lstm.lstm_forward(**strided)
    h_ref, c_ref, _ = reference.forward(**args)
    assert_close(h, h_ref, atol=1e-12, rtol=1e-10, name="h from strided views")
    assert_close(c, c_ref, atol=1e-12, rtol=1e-10, name="c from strided views")


# --- bad input ---------------------------------------------------------------------------------------------
def _good(rng):
    return make_inputs(rng, 2, 3, 4, 5)


@pytest.mark.parametrize("change,error,words", [
    ({"x": np.ones((2, 3, 4, 1))}, ValueError, r"x must have 3 dimensions; got shape \(2, 3, 4, 1\)"),
    ({"x": np.ones((2, 0, 4))}, ValueError, r"x must not be empty; got shape \(2, 0, 4\)"),
    ({"x": np.ones((2, 3, 4), dtype=np.int32)}, TypeError, "x must have dtype float32 or float64; got int32"),
    ({"x": np.ones((2, 3, 4), dtype=np.complex64)}, TypeError, "complex"),
    ({"W": np.ones((3, 20))}, ValueError, r"W must have shape \(D, 4H\) with D = 4.*got \(3, 20\)"),
    ({"W": np.ones((4, 18))}, ValueError, r"W must have shape \(D, 4H\).*multiple of 4.*got \(4, 18\)"),
    ({"W": np.ones((4, 20), np.float32)}, TypeError, "W must have dtype float64 like the other inputs; got float32"),
    ({"U": np.ones((5, 5))}, ValueError, r"U must have shape \(5, 20\); got \(5, 5\)"),
    ({"U": np.ones((20, 5))}, ValueError, r"U must have shape \(5, 20\); got \(20, 5\)"),
    ({"b": np.ones(5)}, ValueError, r"b must have shape \(20,\); got \(5,\)"),
    ({"b": np.ones((20,), np.float32)}, TypeError, "b must have dtype float64"),
    ({"h0": np.ones((2, 4))}, ValueError, r"h0 must have shape \(2, 5\); got \(2, 4\)"),
    ({"c0": np.ones((1, 5))}, ValueError, r"c0 must have shape \(2, 5\); got \(1, 5\)"),
    ({"c0": np.ones((2, 5), np.float32)}, TypeError, "c0 must have dtype float64"),
    ({"U": (1.0, 2.0)}, TypeError, "U must be a NumPy or CuPy array; got tuple"),
])
def test_bad_forward_input_is_named(change, error, words, rng):
    with pytest.raises(error, match=words):
        lstm.lstm_forward(**{**_good(rng), **change})


def test_bad_backward_input_is_named(rng):
    h, c, cache = lstm.lstm_forward(**_good(rng))
    with pytest.raises(ValueError, match=r"needs dh .* or dc_last .*; both are None"):
        lstm.lstm_backward(None, cache)
    with pytest.raises(ValueError, match=r"dh must have shape \(2, 3, 5\); got \(2, 5\)"):
        lstm.lstm_backward(np.ones((2, 5)), cache)
    with pytest.raises(ValueError, match=r"dc_last must have shape \(2, 5\); got \(2, 3, 5\)"):
        lstm.lstm_backward(None, cache, dc_last=np.ones((2, 3, 5)))
    with pytest.raises(TypeError, match="dc_last must have dtype float64 like the other inputs; got float32"):
        lstm.lstm_backward(np.ones_like(h), cache, dc_last=np.ones((2, 5), np.float32))
    with pytest.raises(TypeError, match="dh must have dtype float32 or float64; got int64"):
        lstm.lstm_backward(np.ones((2, 3, 5), np.int64), cache)
    with pytest.raises(TypeError, match="cache must be the LSTMCache returned by lstm_forward; got tuple"):
        lstm.lstm_backward(np.ones_like(h), tuple(cache))


# --- property-based ------------------------------------------------------------------------------------------
dims = st.integers(1, 5)


@given(N=dims, T=dims, D=dims, H=dims, seed=st.integers(0, 2**16), scale=st.sampled_from([0.1, 1.0, 4.0]),
       with_dh=st.booleans())
def test_property_numba_matches_reference(N, T, D, H, seed, scale, with_dh):
    rng = np.random.default_rng(seed)
    args = make_inputs(rng, N, T, D, H)
    args["x"] *= scale
    h, c, cache = lstm.lstm_forward(**args)
    h_ref, c_ref, cache_ref = reference.forward(**args)
    tol = tolerance(np.float64)
    assert_close(h, h_ref, **tol, name="h")
    assert_close(c, c_ref, **tol, name="c")
    assert np.all(np.abs(h) <= 1) and np.all((cache.gates >= 0)[..., : 2 * H])
    dh = random_array(rng, (N, T, H)) if with_dh else None
    dc_last = random_array(rng, (N, H))
    assert_grads_close(lstm.lstm_backward(dh, cache, dc_last), reference.backward(dh, cache_ref, dc_last), tol, "lstm")


@given(N=dims, T=dims, D=dims, H=dims, which=st.sampled_from(["U", "b", "h0", "c0"]),
       axis=st.integers(0, 1), delta=st.sampled_from([-1, 1, 3]))
def test_property_any_wrong_size_is_rejected_by_name(N, T, D, H, which, axis, delta):
    args = make_inputs(np.random.default_rng(0), N, T, D, H)
    shape = list(args[which].shape)
    axis = min(axis, len(shape) - 1)
    shape[axis] += delta
    if shape[axis] < 1:
        return
    args[which] = np.ones(shape)
    with pytest.raises(ValueError, match=which):
        lstm.lstm_forward(**args)
