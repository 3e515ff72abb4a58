"""conv2d: Numba vs the NumPy reference, backward vs finite differences and SymPy, the geometry against
the notes' output sizes and Keras' "same", an independent oracle (SciPy), IEEE propagation, bad input."""

import re

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st
from scipy import signal

from tests.helpers import assert_close, check_gradient, random_array, tolerance
from toolkit.ops import conv2d as conv
from toolkit.ops.conv2d import cpu, geometry, reference, shifted

# (id, x shape (N, H, W, Cin), w shape (KH, KW, Cin, Cout), stride, padding)
CASES = [
    ("batch1_valid", (1, 5, 5, 1), (3, 3, 1, 1), 1, "valid"),
    ("odd_same", (2, 7, 9, 3), (3, 3, 3, 4), 1, "same"),
    ("stride2_same", (2, 7, 9, 3), (3, 3, 3, 4), 2, "same"),
    ("stride2_1_int_pad", (2, 8, 7, 2), (3, 2, 2, 3), (2, 1), 1),
    ("pair_pad", (1, 6, 5, 2), (3, 3, 2, 2), 1, (1, 2)),
    ("asymmetric_pad", (2, 6, 7, 3), (3, 2, 3, 2), (1, 2), ((0, 2), (1, 0))),
    ("pointwise_1x1", (3, 4, 5, 6), (1, 1, 6, 2), 1, "valid"),  # the no-im2col path
    ("1x1_stride2", (2, 5, 5, 3), (1, 1, 3, 4), 2, "valid"),
    ("5x5_valid", (2, 9, 9, 2), (5, 5, 2, 3), 1, "valid"),
    ("5x5_same_stride2", (1, 9, 8, 2), (5, 5, 2, 3), 2, "same"),
    ("even_nonsquare_same", (2, 8, 8, 3), (2, 4, 3, 2), 1, "same"),  # odd total pad: extra bottom/right
    ("stride_gt_kernel", (1, 9, 9, 2), (2, 2, 2, 2), 3, "valid"),  # some pixels are in no window
    ("kernel_fills_input", (2, 4, 5, 3), (4, 5, 3, 7), 1, "valid"),  # a 1x1 output: a dense layer
    ("lenet_c3_like", (4, 14, 14, 6), (5, 5, 6, 16), 1, "valid"),
    ("lenet_c1_like", (4, 12, 12, 1), (5, 5, 1, 6), 1, "same"),  # 6 of a vector's 16 channels (float32)
    ("wide_channels", (2, 12, 11, 16), (3, 3, 16, 24), 1, "same"),  # long dot products
    ("parallel_path", (3, 20, 18, 8), (3, 3, 8, 12), (1, 2), "same"),  # above cpu.PARALLEL_MIN_WORK
]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _setup(rng, x_shape, w_shape, stride, padding, dtype, bias=True):
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[3],), dtype) if bias else None
    stride = _pair(stride)
    pads = geometry.resolve_padding(padding, x_shape[1:3], w_shape[:2], stride)
    return x, w, b, stride, pads


def assert_within_dot_bound(actual, expected, magnitude, dtype, name):
    """|ours - reference| <= atol + rtol * magnitude, magnitude = the same sums over |terms|.

    Every output of a convolution is a dot product; two summation orders of sum(a_i b_i) can differ by
    up to about K * eps * sum |a_i b_i|, however small the result (cancellation). So the relative part of
    the tolerance (tests/helpers.tolerance) is taken of sum |a_i b_i|, computed by the reference on |a|, |b|.
    For float32, rtol 1e-4 covers that worst case for dot products of up to ~800 terms (2 * K * 2**-24).
    """
    tol = tolerance(dtype)
    a, e, m = (np.asarray(v, dtype=np.float64) for v in (actual, expected, magnitude))
    assert a.shape == e.shape, f"{name}: shape {a.shape} vs expected {e.shape}"
    err = np.abs(a - e)
    bound = tol["atol"] + tol["rtol"] * m
    bad = err > bound
    if bad.any():
        i = np.unravel_index(np.argmax(err - bound), a.shape)
        raise AssertionError(f"{name}: {int(bad.sum())} of {a.size} elements beyond atol + rtol*sum|terms| "
                             f"({tol}); worst at {i}: ours {a[i]!r} vs reference {e[i]!r}, bound {bound[i]:.3g}")


def _magnitudes(x, w, b, dy, stride, pads):
    """The sums of |terms| behind every y, dx, dw, db: the reference run on absolute values."""
    y_mag, cache = reference.forward(np.abs(x), np.abs(w), None if b is None else np.abs(b), stride, pads)
    return (y_mag, *reference.backward(np.abs(dy), cache))


@pytest.fixture(params=["auto", "im2col"])
def cpu_path(request, monkeypatch):
    """Every case twice: as routed (direct.py takes most test-sized layers), and with direct.py kept out,
    so that im2col, the 1x1 product and the shifted products run on the same cases."""
    if request.param == "im2col":
        monkeypatch.setattr(cpu, "_direct", lambda *args: False)
    return request.param


@pytest.fixture
def im2col_only(monkeypatch):
    monkeypatch.setattr(cpu, "_direct", lambda *args: False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_numba_matches_reference(case, dtype, rng, cpu_path):
    _, x_shape, w_shape, stride, padding = case
    x, w, b, stride_pair, pads = _setup(rng, x_shape, w_shape, stride, padding, dtype)
    y, cache = conv.conv2d_forward(x, w, b, stride=stride, padding=padding)
    y_ref, cache_ref = reference.forward(x, w, b, stride_pair, pads)
    dy = random_array(rng, y_ref.shape, dtype)
    grads = conv.conv2d_backward(dy, cache)
    grads_ref = reference.backward(dy, cache_ref)
    mags = _magnitudes(x, w, b, dy, stride_pair, pads)
    for name, ours, ref, mag in zip(("y", "dx", "dw", "db"), (y, *grads), (y_ref, *grads_ref), mags):
        assert ours.dtype == dtype, f"{name} dtype {ours.dtype}"
        assert_within_dot_bound(ours, ref, mag, dtype, name)


def test_without_bias_db_is_none(rng):
    x, w, _, stride, pads = _setup(rng, (2, 5, 6, 2), (3, 3, 2, 3), 1, "same", np.float64, bias=False)
    y, cache = conv.conv2d_forward(x, w, None, padding="same")
    dx, dw, db = conv.conv2d_backward(np.ones_like(y), cache)
    assert db is None and dx.shape == x.shape and dw.shape == w.shape
    assert_close(y, reference.forward(x, w, None, stride, pads)[0], **tolerance(np.float64), name="y")


@pytest.mark.parametrize("threads", ["serial", "parallel"])
def test_chunked_batch_matches_reference(threads, rng, monkeypatch, im2col_only):
    # A cols budget of two images: chunks of 2, 2 and a last one of 1, each with its own im2col.
    x, w, b, stride, pads = _setup(rng, (5, 6, 7, 3), (3, 3, 3, 4), 2, 1, np.float64)
    monkeypatch.setattr(cpu, "CHUNK_BYTES", 2 * 3 * 4 * 27 * 8)
    monkeypatch.setattr(cpu, "PARALLEL_MIN_WORK", 0 if threads == "parallel" else 1 << 60)
    assert cpu._chunk_images(5, 3 * 4, 27, 8) == 2
    y, cache = cpu.forward(x, w, b, stride, pads)
    dy = random_array(rng, y.shape)
    y_ref, cache_ref = reference.forward(x, w, b, stride, pads)
    assert_close(y, y_ref, **tolerance(np.float64), name="y")
    for name, ours, ref in zip(("dx", "dw", "db"), cpu.backward(dy, cache), reference.backward(dy, cache_ref)):
        assert_close(ours, ref, **tolerance(np.float64), name=name)


# --- an oracle that shares no code with ours: SciPy's 2-D cross-correlation ------------------------------
@pytest.mark.parametrize("stride,padding", [(1, "valid"), (2, ((1, 0), (2, 1))), ((1, 3), 2)])
def test_reference_matches_scipy_correlate(stride, padding, rng):
    x, w, b, stride, pads = _setup(rng, (2, 7, 8, 3), (3, 2, 3, 2), stride, padding, np.float64)
    y, _ = reference.forward(x, w, b, stride, pads)
    xp = reference.pad(x, pads)
    expected = np.zeros_like(y)
    for n in range(x.shape[0]):
        for co in range(w.shape[3]):
            full = sum(signal.correlate2d(xp[n, :, :, ci], w[:, :, ci, co], mode="valid") for ci in range(x.shape[3]))
            expected[n, :, :, co] = full[::stride[0], ::stride[1]] + b[co]  # stride = every s-th position
    assert_close(y, expected, atol=1e-12, rtol=1e-12, name="y vs scipy.signal.correlate2d")


def test_is_cross_correlation_not_flipped():
    # y[i, j] = x[i, j] - x[i+1, j+1] with this filter: on 1..9 every window gives 1 - 5 = -4 etc.
    x = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    w = np.array([[1.0, 0.0], [0.0, -1.0]]).reshape(2, 2, 1, 1)
    y, _ = conv.conv2d_forward(x, w)
    assert y[0, :, :, 0].tolist() == [[-4.0, -4.0], [-4.0, -4.0]]
    w = np.array([[0.0, 1.0], [0.0, 0.0]]).reshape(2, 2, 1, 1)  # picks the top-right pixel of each window
    y, _ = conv.conv2d_forward(x, w, padding=((0, 0), (0, 1)))
    assert y[0, :, :, 0].tolist() == [[2.0, 3.0, 0.0], [5.0, 6.0, 0.0]]  # 0: the padded column


# --- gradients vs central finite differences (float64, tiny shapes) ----------------------------------------
FD_CASES = [
    ((2, 4, 5, 2), (3, 2, 2, 2), (2, 1), "same"),
    ((1, 5, 4, 2), (2, 3, 2, 3), 2, ((1, 0), (2, 1))),
    ((2, 3, 3, 3), (1, 1, 3, 2), 1, "valid"),  # the pointwise path
]


def check_gradients_by_finite_differences(module, x, w, b, stride, pads, rng):
    """dx, dw, db of module.backward against central differences of L = sum(y * dy), float64."""
    y, cache = module.forward(x, w, b, stride, pads)
    dy = random_array(rng, y.shape)
    dx, dw, db = module.backward(dy, cache)

    def loss():
        return float((module.forward(x, w, b, stride, pads)[0] * dy).sum())

    check_gradient(loss, x, dx, name="x")
    check_gradient(loss, w, dw, name="w")
    check_gradient(loss, b, db, name="b")


@pytest.mark.parametrize("impl", ["numba", "reference"])
@pytest.mark.parametrize("x_shape,w_shape,stride,padding", FD_CASES)
def test_backward_matches_finite_differences(impl, x_shape, w_shape, stride, padding, rng, cpu_path):
    x, w, b, stride, pads = _setup(rng, x_shape, w_shape, stride, padding, np.float64)
    check_gradients_by_finite_differences(cpu if impl == "numba" else reference, x, w, b, stride, pads, rng)


# --- SymPy: the backward formulas of reference.py are the derivatives of the forward sum ------------------
def test_backward_formulas_equal_sympy_derivatives(rng):
    n_, h, wd, cin, kh, kw, cout = 1, 4, 3, 2, 3, 2, 2
    (sh, sw), pads = (2, 1), ((1, 0), (0, 1))
    (top, bottom), (left, right) = pads
    xs = sp.symbols(f"x:{h * wd * cin}")
    ws = sp.symbols(f"w:{kh * kw * cin * cout}")
    X, W = sp.Array(xs).reshape(h, wd, cin), sp.Array(ws).reshape(kh, kw, cin, cout)
    oh = geometry.output_size(h, kh, sh, top, bottom)
    ow = geometry.output_size(wd, kw, sw, left, right)
    gs = sp.symbols(f"g:{oh * ow * cout}")
    G = sp.Array(gs).reshape(oh, ow, cout)  # dy

    def xp(r, c, ci):  # the zero-padded input
        r, c = r - top, c - left
        return X[r, c, ci] if 0 <= r < h and 0 <= c < wd else 0

    def y(i, j, co):  # the forward sum of reference.py's docstring
        return sum(xp(i * sh + a, j * sw + q, ci) * W[a, q, ci, co]
                   for a in range(kh) for q in range(kw) for ci in range(cin))

    loss = sum(G[i, j, co] * y(i, j, co) for i in range(oh) for j in range(ow) for co in range(cout))
    x_points = [(0, 0, 0), (1, 2, 1), (3, 1, 0), (2, 0, 1), (3, 2, 1)]  # corners, edges and the middle
    w_points = [(0, 0, 0, 0), (2, 1, 1, 1), (1, 0, 0, 1)]
    dloss_dx = {p: sp.diff(loss, X[p]) for p in x_points}
    dloss_dw = {p: sp.diff(loss, W[p]) for p in w_points}
    # The closed forms of the docstring: dx gathers dy * w over the windows covering a pixel; dw sums
    # the windows weighted by dy.
    for r, c, ci in x_points:
        closed = sum(G[i, j, co] * W[a, q, ci, co] for i in range(oh) for j in range(ow) for co in range(cout)
                     for a in range(kh) for q in range(kw) if i * sh + a == r + top and j * sw + q == c + left)
        assert sp.simplify((dloss_dx[r, c, ci] - closed).rewrite(sp.exp)) == 0
    for a, q, ci, co in w_points:
        closed = sum(G[i, j, co] * xp(i * sh + a, j * sw + q, ci) for i in range(oh) for j in range(ow))
        assert sp.simplify((dloss_dw[a, q, ci, co] - closed).rewrite(sp.exp)) == 0
    # Numeric spot check of the Numba kernels against the symbolic derivatives.
    xv, wv, gv = (random_array(rng, s) for s in ((1, h, wd, cin), (kh, kw, cin, cout), (1, oh, ow, cout)))
    values = {**dict(zip(xs, xv.ravel())), **dict(zip(ws, wv.ravel())), **dict(zip(gs, gv.ravel()))}
    y_num, cache = cpu.forward(xv, wv, None, (sh, sw), pads)
    assert y_num.shape == (1, oh, ow, cout)
    dx, dw, _ = cpu.backward(gv, cache)
    assert_close([dx[(0, *p)] for p in x_points], [float(dloss_dx[p].xreplace(values)) for p in x_points],
                 atol=1e-12, rtol=1e-10, name="dx vs SymPy")
    assert_close([dw[p] for p in w_points], [float(dloss_dw[p].xreplace(values)) for p in w_points],
                 atol=1e-12, rtol=1e-10, name="dw vs SymPy")


# --- geometry: the notes' sizes and Keras' "same" --------------------------------------------------------
def test_notes_output_size_examples():
    # 004 "Problem With Convolution Layers Without Padding": an 8x8 image and a 3x3 filter give 6x6 (n - f + 1).
    y, _ = conv.conv2d_forward(np.ones((1, 8, 8, 1)), np.ones((3, 3, 1, 1)))
    assert y.shape[1:3] == (6, 6)
    # ... and one layer of zeros (p = 1) gives back 8x8: (n + 2p - f + 1).
    y, _ = conv.conv2d_forward(np.ones((1, 8, 8, 1)), np.ones((3, 3, 1, 1)), padding=1)
    assert y.shape[1:3] == (8, 8)
    # 004 "Convolutional Layers": a 32x32x3 input and 12 filters give 32x32x12 ("same" keeps the size).
    y, _ = conv.conv2d_forward(np.ones((1, 32, 32, 3), np.float32), np.ones((3, 3, 3, 12), np.float32), padding="same")
    assert y.shape[1:] == (32, 32, 12)
    # 004 LeNet-5 table: 32x32x1 -> (6 filters 5x5) 28x28x6; 14x14x6 -> (16 of 5x5) 10x10x16; 5x5x16 -> 1x1x120.
    for (h, cin), cout, expected in [((32, 1), 6, 28), ((14, 6), 16, 10), ((5, 16), 120, 1)]:
        y, _ = conv.conv2d_forward(np.ones((1, h, h, cin), np.float32), np.ones((5, 5, cin, cout), np.float32))
        assert y.shape[1:] == (expected, expected, cout)
    # 004 VGG: 3x3 "same" convolutions with stride 1 keep 224x224.
    same = geometry.resolve_padding("same", (224, 224), (3, 3), (1, 1))
    assert same == ((1, 1), (1, 1))
    assert geometry.output_shape((224, 224), (3, 3), (1, 1), same) == (224, 224)


@pytest.mark.parametrize("n,f,p,s", [(8, 3, 0, 1), (8, 3, 1, 1), (7, 3, 1, 2), (32, 5, 2, 1), (10, 4, 0, 3),
                                     (9, 1, 0, 2)])
def test_output_size_is_the_notes_formula(n, f, p, s):
    expected = (n + 2 * p - f) // s + 1  # the notes' (n + 2p - f)/s + 1, the division floored
    assert geometry.output_size(n, f, s, p, p) == expected
    y, _ = conv.conv2d_forward(np.ones((1, n, n, 1)), np.ones((f, f, 1, 1)), stride=s, padding=p)
    assert y.shape[1:3] == (expected, expected)


def test_same_padding_is_keras():
    # Keras/TensorFlow: output ceil(n/s); total pad max((out-1)*s + k - n, 0), the extra pixel after.
    for n in range(1, 14):
        for k in range(1, 7):
            for s in range(1, 5):
                before, after = geometry.same_padding(n, k, s)
                out = -(-n // s)
                assert geometry.output_size(n, k, s, before, after) == out
                assert before + after == max((out - 1) * s + k - n, 0)
                assert after - before in (0, 1)  # the extra pixel goes to the bottom/right
    assert geometry.same_padding(8, 4, 1) == (1, 2)
    assert geometry.resolve_padding("SAME", (8, 7), (4, 3), (1, 2)) == ((1, 2), (1, 1))  # Keras lowercases it


def test_resolve_padding_spellings():
    args = ((6, 6), (3, 3), (1, 1))
    assert geometry.resolve_padding("valid", *args) == ((0, 0), (0, 0))
    assert geometry.resolve_padding(2, *args) == ((2, 2), (2, 2))
    assert geometry.resolve_padding((1, 3), *args) == ((1, 1), (3, 3))
    assert geometry.resolve_padding(((0, 1), (2, 3)), *args) == ((0, 1), (2, 3))
    assert geometry.resolve_padding([np.int64(1), [0, 2]], *args) == ((1, 1), (0, 2))


# --- IEEE: NaN and Inf propagate, no warnings (pytest turns RuntimeWarning into errors) -------------------
@pytest.mark.parametrize("special", [np.nan, np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_inf_propagate(special, dtype, rng):
    x, w, b, stride, pads = _setup(rng, (1, 5, 5, 2), (3, 3, 2, 2), 1, "same", dtype)
    x[0, 1, 3, 1] = special
    y, cache = conv.conv2d_forward(x, w, b, padding="same")
    y_ref, cache_ref = reference.forward(x, w, b, stride, pads)
    assert_close(y, y_ref, **tolerance(dtype), name="y")
    # Exactly the windows covering the pixel are non-finite (rows 0..2, columns 2..4 of the output).
    hit = np.zeros(y.shape, bool)
    hit[0, 0:3, 2:5, :] = True
    assert np.array_equal(~np.isfinite(y), hit)
    dy = random_array(rng, y.shape, dtype)
    dy[0, 4, 0, 1] = special
    for name, ours, ref in zip(("dx", "dw", "db"), conv.conv2d_backward(dy, cache), reference.backward(dy, cache_ref)):
        assert_close(ours, ref, **tolerance(dtype), name=name)
        assert not np.isfinite(ours).all(), f"{name}: the special value in dy must reach it"


def test_float32_overflow_is_inf_without_warning():
    x = np.full((1, 3, 3, 1), 3e38, np.float32)
    y, cache = conv.conv2d_forward(x, np.ones((2, 2, 1, 1), np.float32), np.ones(1, np.float32))
    assert np.isinf(y).all()
    _, _, db = conv.conv2d_backward(np.full(y.shape, 3e38, np.float32), cache)
    assert np.isinf(db).all()


# --- inputs the op must accept -----------------------------------------------------------------------------
def test_strided_and_read_only_inputs_are_copied_not_rejected(rng):
    base = random_array(rng, (2, 10, 12, 6))
    x = base[:, ::2, 1::2, ::2]  # strided in every axis
    x.flags.writeable = False
    w = np.asfortranarray(random_array(rng, (3, 3, 3, 2)))
    y, cache = conv.conv2d_forward(x, w, padding="same")
    y_ref, _ = reference.forward(np.ascontiguousarray(x), np.ascontiguousarray(w), None, (1, 1), ((1, 1), (1, 1)))
    assert_close(y, y_ref, **tolerance(np.float64), name="y of strided input")
    dx, _, _ = conv.conv2d_backward(np.ones(y.shape), cache)
    assert dx.shape == x.shape


def test_numpy_integer_hyper_parameters_are_accepted():
    x, w = np.ones((1, 6, 6, 1)), np.ones((3, 3, 1, 1))
    y, _ = conv.conv2d_forward(x, w, stride=np.int64(2), padding=(np.int32(1), 0))
    assert y.shape == (1, 3, 2, 1)


# --- bad input: a clear error naming the argument, before any kernel runs ------------------------------------
X, W, B = np.ones((2, 5, 5, 3)), np.ones((3, 3, 3, 4)), np.ones(4)
BAD_FORWARD = [
    (dict(x=np.ones((5, 5, 3))), ValueError, r"x must have 4 dimensions; got shape \(5, 5, 3\)"),
    (dict(w=np.ones((3, 3, 3))), ValueError, r"w must have 4 dimensions; got shape \(3, 3, 3\)"),
    (dict(w=np.ones((3, 3, 2, 4))), ValueError, "w must have 3 input channels to match x; got 2"),
    (dict(b=np.ones(3)), ValueError, r"b must have shape \(4,\); got \(3,\)"),
    (dict(b=np.ones((1, 4))), ValueError, r"b must have shape \(4,\); got \(1, 4\)"),
    (dict(x=np.ones((2, 5, 5, 3), np.int64)), TypeError, "x must have dtype float32 or float64; got int64"),
    (dict(w=np.ones((3, 3, 3, 4), np.complex128)), TypeError, "w must have dtype float32 or float64; got complex128"),
    (dict(w=np.ones((3, 3, 3, 4), np.float32)), TypeError,
     "w must have dtype float64 like the other inputs; got float32"),
    (dict(b=np.ones(4, np.float32)), TypeError, "b must have dtype float64 like the other inputs; got float32"),
    (dict(x=np.ones((0, 5, 5, 3))), ValueError, r"x must not be empty; got shape \(0, 5, 5, 3\)"),
    (dict(w=np.ones((3, 3, 3, 0))), ValueError, r"w must not be empty; got shape \(3, 3, 3, 0\)"),
    (dict(x=[[1.0]]), TypeError, "x must be a NumPy or CuPy array; got list"),
    (dict(stride=0), ValueError, "stride must be a positive integer; got 0"),
    (dict(stride=(2, -1)), ValueError, r"stride\[1\] must be a positive integer; got -1"),
    (dict(stride=1.5), TypeError, r"stride must be a positive integer; got 1.5 \(float\)"),
    (dict(stride=(1, 1, 1)), ValueError, r"stride must be an int or a pair of ints; got \(1, 1, 1\)"),
    (dict(padding=-1), ValueError, "padding must be a non-negative integer; got -1"),
    (dict(padding="full"), ValueError, "padding must be 'valid', 'same', an int, .*; got 'full'"),
    (dict(padding=(1, 2, 3)), ValueError, r"padding must be 'valid', 'same', an int, .*; got \(1, 2, 3\)"),
    (dict(padding=((1, -1), (0, 0))), ValueError, r"padding\[0\]\[1\] must be a non-negative integer; got -1"),
    (dict(padding=((1,), (0, 0))), ValueError, r"padding\[0\] must be an int or a pair \(before, after\)"),
    (dict(padding=1.0), TypeError, r"padding must be 'valid', 'same', an int, .*; got 1.0 \(float\)"),
    (dict(padding=None), TypeError, r"padding must be 'valid', 'same', an int, .*; got None \(NoneType\)"),
    (dict(w=np.ones((7, 3, 3, 4))), ValueError,
     r"kernel \(w\) height 7 is larger than the padded input height 5 \(input 5 \+ padding 0 \+ 0\)"),
    (dict(w=np.ones((3, 9, 3, 4)), padding=(0, 1)), ValueError,
     r"kernel \(w\) width 9 is larger than the padded input width 7 \(input 5 \+ padding 1 \+ 1\)"),
]


@pytest.mark.parametrize("changes,error,words", BAD_FORWARD, ids=[w[:40] for _, _, w in BAD_FORWARD])
def test_bad_forward_input_is_named_before_any_kernel(changes, error, words, monkeypatch):
    def kernel_must_not_run(*args, **kwargs):
        raise AssertionError("a kernel ran before validation failed")

    monkeypatch.setattr(cpu, "forward", kernel_must_not_run)
    monkeypatch.setattr(reference, "forward", kernel_must_not_run)
    args = dict(x=X, w=W, b=B, stride=1, padding="valid") | changes
    with pytest.raises(error, match=words):
        conv.conv2d_forward(**args)


def test_bad_backward_input_is_named():
    y, cache = conv.conv2d_forward(X, W, B, stride=2, padding="same")
    assert y.shape == (2, 3, 3, 4)
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 3, 3, 4\); got \(2, 3, 4, 3\)"):
        conv.conv2d_backward(np.ones((2, 3, 4, 3)), cache)
    with pytest.raises(TypeError, match="dy must have dtype float64 like the other inputs; got float32"):
        conv.conv2d_backward(np.ones(y.shape, np.float32), cache)
    with pytest.raises(TypeError, match="dy must have dtype float32 or float64; got int32"):
        conv.conv2d_backward(np.ones(y.shape, np.int32), cache)
    with pytest.raises(TypeError, match="cache must be the Conv2DCache returned by conv2d_forward; got tuple"):
        conv.conv2d_backward(np.ones(y.shape), tuple(cache))


# --- property-based: random geometries -------------------------------------------------------------------------
side = st.integers(0, 2)
paddings = st.one_of(st.sampled_from(["valid", "same"]), side, st.tuples(side, side),
                     st.tuples(st.tuples(side, side), st.tuples(side, side)))


@given(n=st.integers(1, 2), h=st.integers(1, 7), wd=st.integers(1, 7), cin=st.integers(1, 3),
       cout=st.integers(1, 3), kh=st.integers(1, 4), kw=st.integers(1, 4),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)), padding=paddings, seed=st.integers(0, 2**16))
def test_property_numba_matches_reference_or_rejects(n, h, wd, cin, cout, kh, kw, stride, padding, seed):
    for im2col in (False, True):
        with pytest.MonkeyPatch.context() as patch:
            if im2col:  # keep direct.py out: the im2col paths on the same geometry
                patch.setattr(cpu, "_direct", lambda *args: False)
            _check_random_geometry(n, h, wd, cin, cout, kh, kw, stride, padding, seed)


def _check_random_geometry(n, h, wd, cin, cout, kh, kw, stride, padding, seed):
    rng = np.random.default_rng(seed)
    x, w, b = random_array(rng, (n, h, wd, cin)), random_array(rng, (kh, kw, cin, cout)), random_array(rng, (cout,))
    pads = geometry.resolve_padding(padding, (h, wd), (kh, kw), stride)
    fits = kh <= h + sum(pads[0]) and kw <= wd + sum(pads[1])
    if not fits:
        with pytest.raises(ValueError, match="is larger than the padded input"):
            conv.conv2d_forward(x, w, b, stride=stride, padding=padding)
        return
    y, cache = conv.conv2d_forward(x, w, b, stride=stride, padding=padding)
    y_ref, cache_ref = reference.forward(x, w, b, stride, pads)
    assert y.shape == (n, (h + sum(pads[0]) - kh) // stride[0] + 1, (wd + sum(pads[1]) - kw) // stride[1] + 1, cout)
    assert_close(y, y_ref, **tolerance(np.float64), name="y")
    dy = random_array(rng, y.shape)
    dx, dw, db = conv.conv2d_backward(dy, cache)
    for name, ours, ref in zip(("dx", "dw", "db"), (dx, dw, db), reference.backward(dy, cache_ref)):
        assert_close(ours, ref, **tolerance(np.float64), name=name)
    # Adjoint identity: the convolution is linear in x and in w, so <dy, conv(x, w)> = <dx, x> = <dw, w>.
    inner = float((dy * (y - b)).sum())
    assert float((dx * x).sum()) == pytest.approx(inner, rel=1e-10, abs=1e-10)
    assert float((dw * w).sum()) == pytest.approx(inner, rel=1e-10, abs=1e-10)


# --- need_dx=False: a model's first layer gets dw and db only ---------------------------------------------
def _spy(monkeypatch, module, name, calls):
    """Replace module.name by a wrapper that records its name in ``calls`` (looked up at call time)."""
    real = getattr(module, name)

    def spy(*args, **kwargs):
        calls.append(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)


def _two_images(dtype):
    """The cols of two of the chunked cases' images (3 x 4 output pixels, K = 27)."""
    return 2 * 3 * 4 * 27 * np.dtype(dtype).itemsize


# (id, x shape, w shape, stride, padding, module attributes set (a callable: of the dtype), the calls to count)
NEED_DX_PATHS = [
    # A cols budget of two images: chunks of 2, 2 and 1, each with its own products (and col2im with dx).
    ("chunked_serial", (5, 6, 7, 3), (3, 3, 3, 4), 2, 1,
     {"CHUNK_BYTES": _two_images, "PARALLEL_MIN_WORK": 1 << 60}, ["_im2col", "matmul", "_col2im"]),
    ("chunked_parallel", (5, 6, 7, 3), (3, 3, 3, 4), 2, 1,
     {"CHUNK_BYTES": _two_images, "PARALLEL_MIN_WORK": 0}, ["_im2col", "matmul", "_col2im"]),
    ("pointwise", (3, 4, 5, 6), (1, 1, 6, 2), 1, "valid", {}, ["matmul"]),
]
# What each path calls with dx and without: the dx product and col2im are the calls that disappear.
NEED_DX_CALLS = {
    "chunked_serial": ({"_im2col": 3, "matmul": 6, "_col2im": 3}, {"_im2col": 3, "matmul": 3}),
    "chunked_parallel": ({"_im2col": 3, "matmul": 6, "_col2im": 3}, {"_im2col": 3, "matmul": 3}),
    "pointwise": ({"matmul": 2}, {"matmul": 1}),
}


def _backward_both_ways(module, dy, cache):
    with_dx = module.backward(dy, cache)
    without = module.backward(dy, cache, need_dx=False)
    return with_dx, without


def _assert_same_bits(with_dx, without, has_bias):
    dx, dw, db = with_dx
    assert dx is not None and without[0] is None
    assert without[1].dtype == dw.dtype and np.array_equal(without[1], dw), "dw changed without dx"
    if has_bias:
        assert without[2].dtype == db.dtype and np.array_equal(without[2], db), "db changed without dx"
    else:
        assert db is None and without[2] is None


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", NEED_DX_PATHS, ids=[c[0] for c in NEED_DX_PATHS])
def test_without_dx_every_cpu_path_gives_the_same_dw_db_bits_and_skips_dx(case, dtype, bias, rng, monkeypatch,
                                                                           im2col_only):
    path, x_shape, w_shape, stride, padding, settings, spied = case
    for name, value in settings.items():
        monkeypatch.setattr(cpu, name, value(dtype) if callable(value) else value)
    x, w, b, stride, pads = _setup(rng, x_shape, w_shape, stride, padding, dtype, bias)
    y, cache = cpu.forward(x, w, b, stride, pads)
    dy = random_array(rng, y.shape, dtype)
    calls = []
    for name in spied:
        _spy(monkeypatch, cpu, name, calls)
    with_dx = cpu.backward(dy, cache)
    calls_with, calls[:] = list(calls), []
    without = cpu.backward(dy, cache, need_dx=False)
    counts = ({n: calls_with.count(n) for n in set(calls_with)}, {n: calls.count(n) for n in set(calls)})
    assert counts == NEED_DX_CALLS[path], f"{path}: calls with dx, without: {counts}"
    _assert_same_bits(with_dx, without, bias)
    # ... and the dx it still computes by default is the reference's.
    dx_ref = reference.backward(dy, reference.forward(x, w, b, stride, pads)[1])[0]
    assert_within_dot_bound(with_dx[0], dx_ref, _magnitudes(x, w, b, dy, stride, pads)[1], dtype, "dx")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_without_dx_the_reference_gives_the_same_dw_db_bits(dtype, rng):
    x, w, b, stride, pads = _setup(rng, (2, 7, 9, 3), (3, 3, 3, 4), (2, 1), "same", dtype)
    y, cache = reference.forward(x, w, b, stride, pads)
    dy = random_array(rng, y.shape, dtype)
    _assert_same_bits(*_backward_both_ways(reference, dy, cache), True)


def test_public_backward_passes_need_dx_and_checks_its_type(rng, monkeypatch):
    x, w, b, stride, pads = _setup(rng, (2, 6, 6, 2), (3, 3, 2, 3), 1, "same", np.float64)
    y, cache = conv.conv2d_forward(x, w, b, padding="same")
    dy = random_array(rng, y.shape)
    dx, dw, db = conv.conv2d_backward(dy, cache)
    for flag in (False, np.bool_(False)):
        _assert_same_bits((dx, dw, db), conv.conv2d_backward(dy, cache, need_dx=flag), True)
    assert conv.conv2d_backward(dy, cache, need_dx=np.bool_(True))[0] is not None

    def kernel_must_not_run(*args, **kwargs):
        raise AssertionError("a kernel ran before validation failed")

    monkeypatch.setattr(cpu, "backward", kernel_must_not_run)
    for bad in (0, 1, "False", None, np.float64(0.0)):
        with pytest.raises(TypeError, match=rf"need_dx must be True or False; got {re.escape(repr(bad))}"):
            conv.conv2d_backward(dy, cache, need_dx=bad)


SHIFTED_CASES = [  # stride 1, total padding KH-1 and KW-1: the shifted path once its size thresholds are lifted
    ("3x3_same", (2, 7, 6, 3), (3, 3, 3, 4), "same"),
    ("even_kernel_same", (2, 6, 7, 3), (2, 4, 3, 2), "same"),  # odd total padding: extra bottom/right
    ("explicit_top_heavy", (2, 6, 5, 2), (3, 3, 2, 3), ((2, 0), (0, 2))),
]


@pytest.fixture
def forced_shifted(monkeypatch):
    """The shifted path at test sizes, as tests/ops/test_conv2d_shifted.py forces it."""
    monkeypatch.setattr(shifted, "MIN_MACS", 0)
    monkeypatch.setattr(shifted, "MIN_CHANNELS", 1)
    monkeypatch.setattr(cpu, "_direct", lambda *args: False)  # checked before the shifted path


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", SHIFTED_CASES, ids=[c[0] for c in SHIFTED_CASES])
def test_without_dx_the_shifted_path_gives_the_same_dw_db_bits_and_skips_dx(case, dtype, bias, rng, monkeypatch,
                                                                            forced_shifted):
    _, x_shape, w_shape, padding = case
    x, w, b, stride, pads = _setup(rng, x_shape, w_shape, 1, padding, dtype, bias)
    assert shifted.applies(x.shape, w.shape, stride, pads)
    y, cache = cpu.forward(x, w, b, stride, pads)
    dy = random_array(rng, y.shape, dtype)
    calls = []
    for name in ("backward", "_accumulate_shifted"):  # the dx products are the _accumulate_shifted call
        _spy(monkeypatch, shifted, name, calls)
    _spy(monkeypatch, cpu, "_im2col", calls)  # the im2col fallback must not run either
    with_dx = cpu.backward(dy, cache)
    assert sorted(calls) == ["_accumulate_shifted", "backward"]
    calls.clear()
    without = cpu.backward(dy, cache, need_dx=False)
    assert calls == ["backward"], "without dx the shifted backward runs no dx products (_accumulate_shifted)"
    _assert_same_bits(with_dx, without, bias)


@pytest.mark.parametrize("where", ["w", "x"])
def test_without_dx_the_shifted_paths_non_finite_detour_is_the_same(where, rng, monkeypatch, forced_shifted):
    # A non-finite w (checked first) or x (seen in dw) sends dw to im2col, with dx or without: same bits.
    x, w, b, stride, pads = _setup(rng, (2, 7, 6, 3), (3, 3, 3, 4), 1, "same", np.float64)
    (w if where == "w" else x)[1, 1, 2, 0] = np.inf
    y, cache = cpu.forward(x, w, b, stride, pads)
    dy = random_array(rng, y.shape)
    calls = []
    _spy(monkeypatch, cpu, "_im2col", calls)
    with_dx, without = _backward_both_ways(cpu, dy, cache)
    assert calls == ["_im2col", "_im2col"], "both must detour to im2col"
    assert without[0] is None
    assert np.isfinite(without[1]).all() == (where == "w")  # dw = x^T dy: only a non-finite x reaches it
    assert np.array_equal(without[1], with_dx[1], equal_nan=True) and np.array_equal(without[2], with_dx[2])
