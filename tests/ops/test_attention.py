"""Attention: Numba vs the NumPy reference, backward vs finite differences, formulas vs SymPy, the notes' example."""

import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.helpers import assert_close, check_gradient, random_array, tolerance
from toolkit.ops import attention as att
from toolkit.ops.attention import cpu, reference

# (N, Tq, Tk, d, dv): a single token, N = 1 with Tq != Tk and odd d, Tq > Tk, a medium one, and one large
# enough (N*Tq*Tk >= cpu.PARALLEL_MIN_SIZE) for the parallel row kernels.
SHAPES = [(1, 1, 1, 1, 1), (1, 4, 6, 5, 3), (2, 7, 3, 3, 2), (3, 70, 66, 9, 4), (2, 150, 131, 17, 9)]
MASKS = [None, "causal", "shared", "per_batch"]
IMPLS = {"numba": cpu, "reference": reference}


def make_mask(kind, n, tq, tk, rng):
    """None, a causal (Tq, Tk) mask, a random shared (Tq, Tk) mask, or a random (N, Tq, Tk) mask.

    The random ones mask the first query row entirely, to exercise the fully masked convention."""
    if kind is None:
        return None
    if kind == "causal":
        return np.tril(np.ones((tq, tk), dtype=bool))
    shape = (tq, tk) if kind == "shared" else (n, tq, tk)
    mask = rng.random(shape) < 0.6
    mask[..., 0, :] = False
    return mask


def as_cache_mask(mask, tq, tk):
    return None if mask is None else np.ascontiguousarray(mask.reshape(-1, tq, tk))


def resolved(scale, d):
    return 1.0 / math.sqrt(d) if scale is True else 1.0 if scale is False else scale


def inputs(rng, shape, dtype, scale=1.0):
    n, tq, tk, d, dv = shape
    return (random_array(rng, (n, tq, d), dtype, scale), random_array(rng, (n, tk, d), dtype, scale),
            random_array(rng, (n, tk, dv), dtype), random_array(rng, (n, tq, dv), dtype))


# --- Numba vs reference ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [True, False, 0.37])
@pytest.mark.parametrize("mask_kind", MASKS)
@pytest.mark.parametrize("shape", SHAPES)
def test_numba_matches_reference(shape, mask_kind, scale, dtype, rng):
    q, k, v, dout = inputs(rng, shape, dtype)
    n, tq, tk, d, _ = shape
    mask = make_mask(mask_kind, n, tq, tk, rng)
    out, cache = att.attention_forward(q, k, v, mask=mask, scale=scale)
    out_ref, cache_ref = reference.forward(q, k, v, as_cache_mask(mask, tq, tk), resolved(scale, d))
    tol = tolerance(dtype)
    assert out.dtype == dtype and cache.weights.dtype == dtype
    assert_close(out, out_ref, **tol, name="out")
    assert_close(cache.weights, cache_ref.weights, **tol, name="weights")
    for name, ours, expected in zip(("dq", "dk", "dv"), att.attention_backward(dout, cache),
                                    reference.backward(dout, cache_ref)):
        assert ours.dtype == dtype
        assert_close(ours, expected, **tol, name=name)
    scores = att.attention_scores(q, k, mask=mask, scale=scale)
    assert_close(scores, reference.scores(q, k, as_cache_mask(mask, tq, tk), resolved(scale, d)), **tol, name="scores")


def test_shapes_cover_the_serial_and_the_parallel_row_kernels():
    sizes = [n * tq * tk for n, tq, tk, _, _ in SHAPES]
    assert min(sizes) < cpu.PARALLEL_MIN_SIZE <= max(sizes)


@pytest.mark.parametrize("mask_kind", MASKS)
def test_parallel_and_serial_row_kernels_agree(mask_kind, rng, monkeypatch):
    shape = (3, 9, 8, 5, 2)  # small: serial by default
    q, k, v, dout = inputs(rng, shape, np.float64)
    mask = as_cache_mask(make_mask(mask_kind, *shape[:3], rng), 9, 8)
    out_s, cache_s = cpu.forward(q, k, v, mask, 0.7)
    grads_s = cpu.backward(dout, cache_s)
    scores_s = cpu.scores(q, k, mask, 0.7)
    monkeypatch.setattr(cpu, "PARALLEL_MIN_SIZE", 0)
    out_p, cache_p = cpu.forward(q, k, v, mask, 0.7)
    assert_close(out_p, out_s, atol=1e-14, rtol=1e-12, name="out")
    assert_close(cache_p.weights, cache_s.weights, atol=1e-14, rtol=1e-12, name="weights")
    assert_close(cpu.scores(q, k, mask, 0.7), scores_s, atol=1e-14, rtol=1e-12, name="scores")
    for name, ours, expected in zip("qkv", cpu.backward(dout, cache_p), grads_s):
        assert_close(ours, expected, atol=1e-14, rtol=1e-12, name=f"d{name}")


@pytest.mark.parametrize("impl", IMPLS)
def test_weights_are_distributions_and_fully_masked_rows_are_zero(impl, rng):
    module = IMPLS[impl]
    n, tq, tk, d, dv = 2, 5, 6, 3, 2
    q, k, v, dout = inputs(rng, (n, tq, tk, d, dv), np.float64)
    mask = make_mask("per_batch", n, tq, tk, rng)  # query row 0 fully masked in every batch element
    mask[1, 3, :] = False
    mask[:, 1:3, 2] = True  # rows that surely attend somewhere
    out, cache = module.forward(q, k, v, mask, 0.5)
    w = cache.weights
    assert np.all(w[~mask] == 0.0), "a masked key must get weight exactly 0"
    dead = ~mask.any(axis=-1)
    assert_close(w.sum(axis=-1), np.where(dead, 0.0, 1.0), atol=1e-12, rtol=0, name="row sums")
    assert np.all(out[dead] == 0.0)
    dq, dk, dv_ = module.backward(dout, cache)
    assert np.all(dq[dead] == 0.0)
    # the dead rows' upstream gradient must not reach k or v either
    dout2 = dout.copy()
    dout2[dead] = 1e3
    _, dk2, dv2 = module.backward(dout2, cache)
    assert_close(dk2, dk, atol=1e-12, rtol=0, name="dk")
    assert_close(dv2, dv_, atol=1e-12, rtol=0, name="dv")


def test_scale_conventions(rng):
    q, k, v, _ = inputs(rng, (2, 3, 4, 7, 2), np.float64)
    out_true, cache = att.attention_forward(q, k, v)  # default: scale=True
    assert cache.scale == pytest.approx(1 / math.sqrt(7))
    out_float, _ = att.attention_forward(q, k, v, scale=1 / math.sqrt(7))
    assert_close(out_true, out_float, atol=0, rtol=0, name="scale=True vs 1/sqrt(d)")
    _, cache_raw = att.attention_forward(q, k, v, scale=False)
    assert cache_raw.scale == 1.0
    assert_close(att.attention_scores(q, k, scale=False), q @ k.transpose(0, 2, 1), atol=1e-14, rtol=1e-14,
                 name="unscaled scores")
    assert_close(att.attention_scores(q, k, scale=np.float32(2.0)), 2 * q @ k.transpose(0, 2, 1), atol=1e-14,
                 rtol=1e-14, name="scores scaled by 2")


def test_shared_mask_equals_the_same_mask_per_batch_element(rng):
    q, k, v, _ = inputs(rng, (3, 4, 5, 2, 3), np.float64)
    mask = make_mask("shared", 3, 4, 5, rng)
    out2, _ = att.attention_forward(q, k, v, mask=mask)
    out3, _ = att.attention_forward(q, k, v, mask=np.broadcast_to(mask, (3, 4, 5)))  # strided: copied
    assert_close(out2, out3, atol=0, rtol=0, name="2-d vs 3-d mask")


def test_strided_and_read_only_inputs_are_copied_not_rejected(rng):
    base = random_array(rng, (2, 8, 6))
    q = base[:, ::2, :3]
    k = base[:, 1::2, 3:]
    v = base[:, ::2, ::2]
    for a in (q, k, v):
        a.flags.writeable = False
    mask = np.tril(np.ones((4, 8), dtype=bool))[:, ::2]  # a strided (4, 4) view
    out, _ = att.attention_forward(q, k, v, mask=mask)
    expected, _ = reference.forward(*(np.ascontiguousarray(a) for a in (q, k, v, mask[None])), 1 / math.sqrt(3))
    assert_close(out, expected, atol=1e-14, rtol=1e-12, name="out of strided views")


# --- gradients vs central finite differences (float64) -----------------------------------------------
@pytest.mark.parametrize("scale", [True, False, 0.6])
@pytest.mark.parametrize("mask_kind", [None, "causal", "per_batch"])
@pytest.mark.parametrize("impl", IMPLS)
def test_backward_matches_finite_differences(impl, mask_kind, scale, rng):
    module = IMPLS[impl]
    n, tq, tk, d, dv = 2, 3, 4, 3, 2
    q, k, v, dout = inputs(rng, (n, tq, tk, d, dv), np.float64)
    mask = as_cache_mask(make_mask(mask_kind, n, tq, tk, rng), tq, tk)
    s = resolved(scale, d)
    _, cache = module.forward(q, k, v, mask, s)
    dq, dk, dv_ = module.backward(dout, cache)

    def loss():
        return float((module.forward(q, k, v, mask, s)[0] * dout).sum())

    check_gradient(loss, q, dq, name="q")
    check_gradient(loss, k, dk, name="k")
    check_gradient(loss, v, dv_, name="v")


# --- SymPy ---------------------------------------------------------------------------------------------
def all_zero(matrix):
    """simplify((a - b).rewrite(exp)) == 0 for every entry; cancel() first puts each rational function of
    exponentials over one denominator (exact, and it makes simplify several times faster)."""
    return all(sp.simplify(sp.cancel(entry.rewrite(sp.exp))) == 0 for entry in matrix)


def test_softmax_jacobian_equals_sympy():
    z = sp.Matrix(sp.symbols("z1:4", real=True))
    y = z.applyfunc(sp.exp) / sum(z.applyfunc(sp.exp))
    jacobian = y.jacobian(z)
    claimed = sp.diag(*y) - y * y.T  # dy_i/dz_j = y_i (delta_ij - y_j)
    assert all_zero(jacobian - claimed)
    # The kernels' vector-Jacobian product dS = W * (dW - sum(dW * W)) is J^T g (J is symmetric).
    g = sp.Matrix(sp.symbols("g1:4", real=True))
    vjp = sp.Matrix([y[i] * (g[i] - sum(g[j] * y[j] for j in range(3))) for i in range(3)])
    assert all_zero(jacobian.T * g - vjp)
    # Spot check against the kernels: with q = [[1]], k = z (d = 1), v = I and no scaling, the scores are
    # z, the weights are softmax(z), dW = dout and dk = dS * q = dS: exactly J^T g.
    zs, gs = [0.3, -1.2, 2.0], [0.5, -0.7, 1.1]
    values = {**dict(zip(z, zs)), **dict(zip(g, gs))}
    expected = np.array([float(e.subs(values)) for e in jacobian.T * g])
    q = np.ones((1, 1, 1))
    k = np.array(zs).reshape(1, 3, 1)
    v = np.eye(3)[None]
    for module in IMPLS.values():
        _, cache = module.forward(q, k, v, None, 1.0)
        assert_close(cache.weights[0, 0], [float(e.subs(values)) for e in y], atol=1e-14, rtol=1e-13, name="softmax")
        _, dk, _ = module.backward(np.array(gs).reshape(1, 1, 3), cache)
        assert_close(dk[0, :, 0], expected, atol=1e-14, rtol=1e-12, name="J^T g")


def test_dq_dk_formulas_equal_sympy():
    """For one query over two keys: dq = s dS k and dk = s dS^T q equal the symbolic derivatives."""
    d, tk, dv = 2, 2, 2
    q = sp.Matrix(1, d, sp.symbols("q1:3", real=True))
    k = sp.Matrix(tk, d, sp.symbols("k1:5", real=True))
    v = sp.Matrix(tk, dv, sp.symbols("v1:5", real=True))
    g = sp.Matrix(1, dv, sp.symbols("g1:3", real=True))  # dout
    s = sp.Symbol("s", positive=True)
    e = (q * k.T * s).applyfunc(sp.exp)
    w = e / sum(e)
    loss = (w * v * g.T)[0, 0]  # sum(out * dout)
    dw = g * v.T
    delta = sum(dw[j] * w[j] for j in range(tk))
    ds = sp.Matrix(1, tk, [w[j] * (dw[j] - delta) for j in range(tk)])
    kernel_dq = ds * k * s
    kernel_dk = ds.T * q * s
    symbolic_dq = sp.Matrix(1, d, [sp.diff(loss, x) for x in q])
    symbolic_dk = sp.Matrix(tk, d, [sp.diff(loss, x) for x in k])
    assert all_zero(symbolic_dq - kernel_dq)
    assert all_zero(symbolic_dk - kernel_dk)
    # numeric spot check against both implementations
    rng = np.random.default_rng(7)
    qn, kn, vn, gn = (rng.standard_normal(m.shape) for m in (q, k, v, g))
    sn = 0.8
    values = {s: sn, **{sym: float(val) for m, a in ((q, qn), (k, kn), (v, vn), (g, gn))
                        for sym, val in zip(m, a.reshape(-1))}}
    want_dq = np.array(symbolic_dq.subs(values), dtype=float)
    want_dk = np.array(symbolic_dk.subs(values), dtype=float)
    for module in IMPLS.values():
        _, cache = module.forward(qn[None], kn[None], vn[None], None, sn)
        dq, dk, _ = module.backward(gn[None], cache)
        assert_close(dq[0], want_dq, atol=1e-13, rtol=1e-12, name="dq")
        assert_close(dk[0], want_dk, atol=1e-13, rtol=1e-12, name="dk")


# --- the notes' example: "The dog runs" (document 003, "Example of Self-Attention") -----------------------
NOTES_Q = [[1, 0, 2], [2, 2, 2], [2, 1, 3]]  # Q1..Q3 for The, Dog, Runs
NOTES_K = [[0, 1, 1], [4, 4, 0], [2, 3, 1]]
NOTES_V = [[1, 2, 3], [2, 8, 0], [2, 6, 3]]
NOTES_SCORES = [[2, 4, 4], [4, 16, 12], [4, 12, 10]]  # the printed Q K^t table
NOTES_DOG_WEIGHTS = [0.05, 0.65, 0.30]  # "for example": illustrative, not derived (shared/NOTES.md)
NOTES_DOG_OUTPUT = [1.95, 7.10, 1.05]  # printed to 2 decimals


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_notes_dog_runs_scores(dtype):
    q, k = (np.array(a, dtype=dtype)[None] for a in (NOTES_Q, NOTES_K))
    scores = att.attention_scores(q, k, scale=False)  # the notes use raw dot products
    assert_close(scores[0], NOTES_SCORES, atol=0, rtol=0, name="Q K^t of 'The dog runs'")


def test_notes_dog_runs_output_for_the_illustrative_weights():
    # softmax(log w) = w for a distribution w: with q = log w, k = I and no scaling the toolkit's
    # attention uses exactly the notes' weights, so out = w V must be the printed context vector.
    q = np.log(np.array(NOTES_DOG_WEIGHTS))[None, None]
    out, cache = att.attention_forward(q, np.eye(3)[None], np.array(NOTES_V, dtype=float)[None], scale=False)
    assert_close(cache.weights[0, 0], NOTES_DOG_WEIGHTS, atol=1e-15, rtol=1e-14, name="weights")
    assert np.array_equal(np.round(out[0, 0], 2), NOTES_DOG_OUTPUT)


def test_notes_dog_runs_weights_are_illustrative_not_the_softmax_of_the_table():
    q, k, v = (np.array(a, dtype=float)[None] for a in (NOTES_Q, NOTES_K, NOTES_V))
    for scale in (False, True):
        _, cache = att.attention_forward(q, k, v, scale=scale)
        dog = cache.weights[0, 1]
        assert abs(dog.sum() - 1) < 1e-12
        assert not np.allclose(dog, NOTES_DOG_WEIGHTS, atol=0.005), f"scale={scale}: {dog}"
    _, cache = att.attention_forward(q, k, v, scale=False)
    # softmax([4, 16, 12]) = [e^-12, 1, e^-4] / (1 + e^-4 + e^-12)
    z = 1 + math.exp(-4) + math.exp(-12)
    assert_close(cache.weights[0, 1], [math.exp(-12) / z, 1 / z, math.exp(-4) / z], atol=1e-15, rtol=1e-13,
                 name="softmax of the 'dog' scores")


# --- numerical stability and IEEE -----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_scores_do_not_overflow(dtype, rng):
    # scores up to 3 * 300^2 = 2.7e5: a naive exp overflows (and pytest turns its RuntimeWarning into an
    # error). Integer q and k make the scores exact in float32 too, so float64 is a fair oracle.
    q = rng.integers(-300, 301, (2, 4, 3)).astype(dtype)
    k = rng.integers(-300, 301, (2, 5, 3)).astype(dtype)
    v, dout = random_array(rng, (2, 5, 2), dtype), random_array(rng, (2, 4, 2), dtype)
    mask = make_mask("per_batch", 2, 4, 5, rng)
    out, cache = att.attention_forward(q, k, v, mask=mask, scale=False)
    grads = att.attention_backward(dout, cache)
    assert all(np.all(np.isfinite(a)) for a in (out, cache.weights, *grads))
    out_ref, _ = reference.forward(*(a.astype(np.float64) for a in (q, k, v)), mask, 1.0)
    assert_close(out, out_ref, **tolerance(dtype), name="out")


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("impl", IMPLS)
def test_nan_and_inf_follow_ieee(impl, masked, rng):
    module = IMPLS[impl]
    q, k, v, dout = inputs(rng, (1, 4, 3, 2, 2), np.float64)
    q[0, 1, 0] = np.nan  # query row 1 becomes NaN, the others are untouched
    q[0, 2, :] = [np.inf, 0.0]  # scores +-inf: row 2 is inf - inf = NaN
    v[0, 0, 1] = np.inf  # value column 1 of key 0 is infinite: positive weights make it +inf
    mask = None
    if masked:  # key 2 masked for every query: its weight stays exactly 0, even in the NaN rows
        mask = np.ones((1, 4, 3), dtype=bool)
        mask[..., 2] = False
    out, cache = module.forward(q, k, v, mask, 1.0)
    if masked:
        assert np.all(cache.weights[..., 2] == 0.0)
    allowed = [0, 1] if masked else [0, 1, 2]
    for row in (1, 2):
        assert np.all(np.isnan(out[0, row])) and np.all(np.isnan(cache.weights[0, row, allowed]))
    assert np.all(np.isfinite(cache.weights[0, [0, 3]]))
    assert np.all(np.isfinite(out[0, [0, 3], 0])) and np.all(out[0, [0, 3], 1] == np.inf)
    grads = module.backward(dout, cache)  # must neither crash nor warn
    if module is cpu:
        out_ref, cache_ref = reference.forward(q, k, v, mask, 1.0)
        assert_close(out, out_ref, atol=1e-12, rtol=1e-12, name="out with NaN/Inf")
        for name, ours, expected in zip("qkv", grads, reference.backward(dout, cache_ref)):
            assert_close(ours, expected, atol=1e-12, rtol=1e-12, name=f"d{name} with NaN/Inf")


# --- bad input -------------------------------------------------------------------------------------------
def _ok(dtype=np.float64):
    return np.ones((2, 3, 4), dtype), np.ones((2, 5, 4), dtype), np.ones((2, 5, 6), dtype)


@pytest.mark.parametrize("change,error,words", [
    (dict(q=np.ones((3, 4))), ValueError, r"q must have 3 dimensions; got shape \(3, 4\)"),
    (dict(k=np.ones((2, 5, 4, 1))), ValueError, r"k must have 3 dimensions; got shape \(2, 5, 4, 1\)"),
    (dict(k=np.ones((2, 5, 3))), ValueError, r"k must have the feature size d=4 of q .*got shape \(2, 5, 3\)"),
    (dict(k=np.ones((1, 5, 4))), ValueError, r"k must have the batch size N=2 of q .*got shape \(1, 5, 4\)"),
    (dict(v=np.ones((2, 4, 6))), ValueError, r"v must have shape \(N, Tk, dv\) = \(2, 5, dv\).*got \(2, 4, 6\)"),
    (dict(v=np.ones((3, 5, 6))), ValueError, r"v must have shape \(N, Tk, dv\) = \(2, 5, dv\).*got \(3, 5, 6\)"),
    (dict(q=np.ones((2, 3, 4), np.int64)), TypeError, "q must have dtype float32 or float64; got int64"),
    (dict(v=np.ones((2, 5, 6), np.complex128)), TypeError,
     r"v must have dtype float32 or float64; got complex128 \(complex\)"),
    (dict(k=np.ones((2, 5, 4), np.float32)), TypeError, "k must have dtype float64 like the other inputs; got float32"),
    (dict(q=np.ones((2, 0, 4))), ValueError, r"q must not be empty; got shape \(2, 0, 4\)"),
    (dict(k=np.ones((2, 0, 4)), v=np.ones((2, 0, 6))), ValueError, r"k must not be empty; got shape \(2, 0, 4\)"),
    (dict(q=[[[1.0]]]), TypeError, "q must be a NumPy or CuPy array; got list"),
    (dict(mask=np.ones((3, 5))), TypeError, r"mask must have dtype bool \(True = may attend\); got float64"),
    (dict(mask=[[True] * 5] * 3), TypeError,
     r"mask must be None or a bool array of shape \(3, 5\) or \(2, 3, 5\); got list"),
    (dict(mask=np.ones((5, 3), bool)), ValueError,
     r"mask must have shape \(Tq, Tk\) = \(3, 5\) or \(N, Tq, Tk\) = \(2, 3, 5\); got \(5, 3\)"),
    (dict(mask=np.ones((1, 3, 5), bool)), ValueError, r"mask must have shape .* got \(1, 3, 5\)"),
    (dict(scale=0.0), ValueError, "scale must be > 0.0; got 0.0"),
    (dict(scale=-1), ValueError, "scale must be > 0.0; got -1.0"),
    (dict(scale=float("nan")), ValueError, "scale must be finite; got nan"),
    (dict(scale=float("inf")), ValueError, "scale must be finite; got inf"),
    (dict(scale="sqrt"), TypeError,
     r"scale must be True \(1/sqrt\(d\)\), False \(no scaling\) or a positive float; got 'sqrt'"),
    (dict(scale=None), TypeError, "scale must be True .* got None"),
])
def test_bad_input_is_named_before_any_kernel(change, error, words, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("a kernel ran before the input was validated")

    monkeypatch.setattr(cpu, "forward", must_not_run)
    monkeypatch.setattr(cpu, "scores", must_not_run)
    q, k, v = _ok()
    args = dict(q=q, k=k, v=v, mask=None, scale=True)
    args.update(change)
    with pytest.raises(error, match=words):
        att.attention_forward(**args)
    if "v" not in change:  # attention_scores validates q, k, mask and scale the same way
        del args["v"]
        with pytest.raises(error, match=words):
            att.attention_scores(**args)


def test_bad_backward_input_is_named(rng):
    q, k, v = _ok()
    out, cache = att.attention_forward(q, k, v)
    with pytest.raises(ValueError, match=r"dout must have shape \(2, 3, 6\); got \(2, 3, 4\)"):
        att.attention_backward(np.ones((2, 3, 4)), cache)
    with pytest.raises(TypeError, match="dout must have dtype float64 like the other inputs; got float32"):
        att.attention_backward(out.astype(np.float32), cache)
    with pytest.raises(TypeError, match="cache must be the AttentionCache returned by attention_forward; got tuple"):
        att.attention_backward(out, tuple(cache))
    with pytest.raises(ValueError, match="k must have the feature size d=4"):
        att.attention_scores(q, np.ones((2, 5, 2)))


# --- property-based ---------------------------------------------------------------------------------------
dims = st.integers(1, 5)
values = st.floats(-8, 8, allow_nan=False, width=32)


@st.composite
def problems(draw, dtype=np.float64):
    n, tq, tk, d, dv = (draw(dims) for _ in range(5))
    arr = lambda shape: draw(hnp.arrays(dtype, shape, elements=values))  # noqa: E731
    q, k, v, dout = arr((n, tq, d)), arr((n, tk, d)), arr((n, tk, dv)), arr((n, tq, dv))
    mask = draw(st.one_of(st.none(), hnp.arrays(np.bool_, st.sampled_from([(tq, tk), (n, tq, tk)]))))
    scale = draw(st.one_of(st.booleans(), st.floats(0.01, 4.0)))
    return q, k, v, dout, mask, scale


@given(problems())
def test_property_numba_matches_reference(problem):
    q, k, v, dout, mask, scale = problem
    tq, tk = q.shape[1], k.shape[1]
    out, cache = att.attention_forward(q, k, v, mask=mask, scale=scale)
    out_ref, cache_ref = reference.forward(q, k, v, as_cache_mask(mask, tq, tk), resolved(scale, q.shape[2]))
    assert_close(out, out_ref, atol=1e-12, rtol=1e-10, name="out")
    assert_close(cache.weights, cache_ref.weights, atol=1e-12, rtol=1e-10, name="weights")
    for name, ours, expected in zip("qkv", att.attention_backward(dout, cache), reference.backward(dout, cache_ref)):
        assert_close(ours, expected, atol=1e-10, rtol=1e-9, name=f"d{name}")
    if mask is None:
        dead = np.zeros(out.shape[:2], bool)
    else:
        dead = ~np.broadcast_to(as_cache_mask(mask, tq, tk), cache.weights.shape).any(-1)
    assert_close(cache.weights.sum(-1), np.where(dead, 0.0, 1.0), atol=1e-12, rtol=0, name="row sums")


@given(problems(), st.data())
def test_property_masking_equals_dropping_the_masked_keys(problem, data):
    q, k, v, _, _, scale = problem
    tk = k.shape[1]
    keep = data.draw(hnp.arrays(np.bool_, (tk,)).filter(lambda m: m.any()))
    out, _ = att.attention_forward(q, k, v, mask=np.broadcast_to(keep, (q.shape[1], tk)), scale=scale)
    out_sub, _ = att.attention_forward(q, k[:, keep], v[:, keep], scale=scale)
    assert_close(out, out_sub, atol=1e-12, rtol=1e-10, name="masked vs dropped keys")


@given(problems(), st.data())
def test_property_causal_outputs_ignore_the_future(problem, data):
    q, _, _, _, _, scale = problem
    n, t, d = q.shape
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    k, v = rng.standard_normal((n, t, d)), rng.standard_normal((n, t, 3))
    causal = np.tril(np.ones((t, t), bool))
    out, _ = att.attention_forward(q, k, v, mask=causal, scale=scale)
    cut = data.draw(st.integers(0, t - 1))  # rewrite every key and value after position `cut`
    k2, v2 = k.copy(), v.copy()
    k2[:, cut + 1:] = rng.standard_normal(k2[:, cut + 1:].shape)
    v2[:, cut + 1:] = rng.standard_normal(v2[:, cut + 1:].shape)
    out2, _ = att.attention_forward(q, k2, v2, mask=causal, scale=scale)
    # a dependence on the rewritten (random) future would differ by O(1), not by rounding
    assert_close(out2[:, :cut + 1], out[:, :cut + 1], atol=1e-13, rtol=1e-13, name="outputs up to the cut")


@given(d=dims, d_k=dims, tk=dims, tk_v=dims)
def test_property_mismatched_shapes_raise_value_error(d, d_k, tk, tk_v):
    q, k, v = np.ones((1, 2, d)), np.ones((1, tk, d_k)), np.ones((1, tk_v, 3))
    if d == d_k and tk == tk_v:
        att.attention_forward(q, k, v)
    else:
        with pytest.raises(ValueError, match=r"(k must have the feature size|v must have shape)"):
            att.attention_forward(q, k, v)
