"""2-D pooling: Numba vs the NumPy reference, backward vs finite differences, Keras padding semantics,
first-maximum ties, the notes' max-pooling example, bad input."""

import glob
import re

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import assert_close, check_gradient, random_array, tolerance
from toolkit.ops import pool2d as pool
from toolkit.ops.pool2d import cpu, geometry, reference

MODES = reference.MODES
# (x shape (N, H, W, C), pool_size, stride, padding): batch 1, odd sizes, stride > 1, overlapping
# windows (stride < pool), stride > pool (skipped cells), every padding spelling.
CASES = [
    ((1, 4, 4, 1), 2, None, "valid"),
    ((2, 7, 5, 3), 2, None, "valid"),  # odd sizes: the last row/column is dropped
    ((2, 7, 5, 3), 2, None, "same"),  # ... or padded at the bottom/right
    ((1, 6, 7, 2), 3, 1, "same"),  # overlapping windows, padding on both sides
    ((3, 9, 8, 4), (3, 2), (2, 1), "valid"),  # overlap along rows only, rectangular window
    ((2, 8, 9, 3), 2, 3, "valid"),  # stride > pool: some cells belong to no window
    ((2, 5, 6, 2), 3, 2, 1),  # int padding
    ((1, 5, 6, 3), (2, 3), (1, 2), (1, 2)),  # pair padding
    ((2, 6, 5, 2), 3, (2, 1), ((2, 0), (1, 2))),  # asymmetric ((top, bottom), (left, right))
    ((2, 33, 31, 16), 3, 2, "same"),  # bigger: many parallel iterations
]


def _normalised(x_shape, pool_size, stride, padding):
    pool_pair = (pool_size, pool_size) if isinstance(pool_size, int) else tuple(pool_size)
    stride_pair = pool_pair if stride is None else (stride, stride) if isinstance(stride, int) else tuple(stride)
    pads = geometry.resolve_padding(padding, x_shape[1:3], pool_pair, stride_pair)
    return pool_pair, stride_pair, pads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-p{c[1]}-s{c[2]}-{c[3]}" for c in CASES])
def test_numba_matches_reference(case, mode, dtype, rng):
    x_shape, pool_size, stride, padding = case
    x = random_array(rng, x_shape, dtype, scale=2.0)
    y, cache = pool.pool2d_forward(x, pool_size, stride, padding, mode)
    y_ref, cache_ref = reference.forward(x, *_normalised(x_shape, pool_size, stride, padding), mode)
    assert y.dtype == dtype and y.shape == y_ref.shape == cache.y_shape
    assert_close(y, y_ref, **tolerance(dtype), name=f"{mode} forward")
    if mode == "max":  # a selection: bit-identical, and the same cell selected
        assert np.array_equal(y, y_ref) and np.array_equal(cache.argmax, cache_ref.argmax)
    dy = random_array(rng, y.shape, dtype)
    dx = pool.pool2d_backward(dy, cache)
    assert dx.dtype == dtype and dx.shape == x.shape
    assert_close(dx, reference.backward(dy, cache_ref), **tolerance(dtype), name=f"{mode} backward")


GRAD_CASES = [((1, 4, 5, 2), 2, None, "valid"), ((2, 5, 5, 1), 3, 1, "same"),
              ((1, 5, 4, 2), (2, 3), (1, 2), ((1, 0), (2, 1)))]


@pytest.mark.parametrize("impl", ["numba", "reference"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", GRAD_CASES, ids=[f"{c[0]}-p{c[1]}-s{c[2]}" for c in GRAD_CASES])
def test_backward_matches_finite_differences(case, mode, impl, rng):
    x_shape, pool_size, stride, padding = case
    # Distinct values at least 0.1 apart: a 1e-6 perturbation never changes which cell is the maximum.
    x = (rng.permutation(int(np.prod(x_shape))) * 0.1).reshape(x_shape).astype(np.float64)
    args = (*_normalised(x_shape, pool_size, stride, padding), mode)
    module = cpu if impl == "numba" else reference
    y, cache = module.forward(x, *args)
    dy = random_array(rng, y.shape)
    dx = module.backward(dy, cache)
    check_gradient(lambda: float((module.forward(x, *args)[0] * dy).sum()), x, dx, name=f"{mode} pool x")


# --- the notes -------------------------------------------------------------------------------------
# Document 004, "Pooling layer": "Application of max pooling with a stride of 2 using 2x2 filter".
NOTES_004_MATRIX = [[0.1, 0, 1.0, 0.4], [0, 0.5, 0.4, 1.6], [0.3, 0.2, 1.7, 1.1], [0.2, 0.4, 1.1, 1.7]]
NOTES_004_CLAIM = {"printed": [[0.5, 1.6], [0.4, 1.7]], "decimals": 1}  # "Pooling Result"


def test_notes_004_max_pool_example():
    x = np.array(NOTES_004_MATRIX, dtype=np.float64)[None, :, :, None]
    y, cache = pool.max_pool2d_forward(x, pool_size=2, stride=2)
    ours = np.round(y[0, :, :, 0], NOTES_004_CLAIM["decimals"])
    assert np.array_equal(ours, NOTES_004_CLAIM["printed"]), f"ours {ours.tolist()} vs the notes' {NOTES_004_CLAIM}"
    # The bottom-right window holds 1.7 twice (rows 2 and 3): the first in row-major order is selected.
    assert cache.argmax[0, 1, 1, 0] == 2 * 4 + 2
    assert np.array_equal(reference.forward(x, (2, 2), (2, 2), ((0, 0), (0, 0)), "max")[0], y)


def test_notes_004_matrices_are_the_ones_in_the_seed_text():
    """Guards the typed matrices above against typos, where the seed text is available."""
    files = glob.glob("/work/shared/seeds/004_*.txt")
    if not files:
        pytest.skip("the seed text of document 004 is not on this machine")
    text = open(files[0], encoding="utf-8").read()
    start = text.index("Application of max pooling with a stride of 2 using 2x2 filter")
    rows = [line for line in text[start:start + 400].splitlines() if re.fullmatch(r"[\d.]+(\t[\d.]+)+", line.strip())]
    numbers = [[float(v) for v in row.split()] for row in rows]
    assert numbers[:4] == NOTES_004_MATRIX
    assert numbers[4:6] == NOTES_004_CLAIM["printed"]


@pytest.mark.parametrize("shape,mode,expected", [
    ((1, 32, 32, 12), "max", (1, 16, 16, 12)),  # 004, "How Convolutional Layers works"
    ((1, 28, 28, 6), "avg", (1, 14, 14, 6)),  # 004, LeNet-5 S2
    ((1, 10, 10, 16), "avg", (1, 5, 5, 16)),  # 004, LeNet-5 S4
    ((1, 224, 224, 64), "max", (1, 112, 112, 64)),  # 004, VGG-16 first pooling
])
def test_notes_output_shapes_of_2x2_stride_2_pooling(shape, mode, expected):
    x = np.zeros(shape, dtype=np.float32)
    y, _ = pool.pool2d_forward(x, 2, 2, "valid", mode)
    assert y.shape == expected


# --- conventions ---------------------------------------------------------------------------------------
def test_ties_go_to_the_first_maximum_in_row_major_order():
    x = np.zeros((1, 2, 2, 2))
    x[0, :, :, 0] = [[1.0, 3.0], [3.0, 3.0]]  # three tied maxima: (0, 1) comes first
    x[0, :, :, 1] = [[-2.0, -2.0], [-2.0, -2.0]]  # all tied: the top-left cell
    for module in (cpu, reference):
        y, cache = module.forward(x, (2, 2), (2, 2), ((0, 0), (0, 0)), "max")
        dx = module.backward(np.ones_like(y), cache)
        assert list(y[0, 0, 0]) == [3.0, -2.0]
        assert dx[0, :, :, 0].tolist() == [[0.0, 1.0], [0.0, 0.0]]
        assert dx[0, :, :, 1].tolist() == [[1.0, 0.0], [0.0, 0.0]]


def test_keras_same_padding_puts_the_extra_cell_bottom_right():
    # out = ceil(n / s); total = (out - 1) * s + k - n; the odd cell goes after.
    assert geometry.same_padding(5, 2, 2) == (0, 1)
    assert geometry.same_padding(6, 3, 1) == (1, 1)
    assert geometry.same_padding(7, 4, 1) == (1, 2)
    assert geometry.same_padding(4, 2, 2) == (0, 0)
    assert geometry.same_padding(3, 1, 3) == (0, 0)
    assert geometry.resolve_padding("same", (5, 6), (2, 3), (2, 1)) == ((0, 1), (1, 1))
    assert geometry.resolve_padding(2, (5, 6), (3, 3), (1, 1)) == ((2, 2), (2, 2))
    assert geometry.resolve_padding((1, 2), (5, 6), (3, 3), (1, 1)) == ((1, 1), (2, 2))
    assert geometry.resolve_padding(((0, 1), (2, 0)), (5, 6), (3, 3), (1, 1)) == ((0, 1), (2, 0))
    for n in range(1, 12):
        for k in range(1, 5):
            for s in range(1, 5):
                before, after = geometry.same_padding(n, k, s)
                assert geometry.output_size(n, k, s, before, after) == -(-n // s)  # ceil(n / s)
                assert after - before in (0, 1)


def test_padded_cells_are_ignored_by_max_and_excluded_from_the_average():
    # 3x3 input, 2x2 windows, stride 2, 'same': padding (0, 1) on both axes, as TensorFlow pads.
    x = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    avg, _ = pool.avg_pool2d_forward(x, 2, 2, "same")
    # windows [1 2 4 5], [3 6], [7 8], [9]: the mean of the real cells only
    assert avg[0, :, :, 0].tolist() == [[3.0, 4.5], [7.5, 9.0]]
    total, _ = pool.sum_pool2d_forward(x, 2, 2, "same")
    assert total[0, :, :, 0].tolist() == [[12.0, 9.0], [15.0, 9.0]]
    negative = -x - 100.0  # padding is not a 0 that could beat negative values
    top, cache = pool.max_pool2d_forward(negative, 3, 1, "same")
    assert np.all(top < -100.0)
    assert np.all(cache.argmax >= 0) and np.all(cache.argmax < 9)
    # the average gradient spreads over real cells only, so it still sums to the output gradient
    _, cache = pool.avg_pool2d_forward(x, 2, 2, "same")
    dx = pool.pool2d_backward(np.ones((1, 2, 2, 1)), cache)
    assert dx[0, :, :, 0].tolist() == [[0.25, 0.25, 0.5], [0.25, 0.25, 0.5], [0.5, 0.5, 1.0]]


def test_overlapping_windows_accumulate_gradients():
    x = np.arange(16.0).reshape(1, 4, 4, 1)  # increasing: each 2x2 window's maximum is its bottom-right
    _, cache = pool.max_pool2d_forward(x, pool_size=2, stride=1)
    dx = pool.pool2d_backward(np.ones((1, 3, 3, 1)), cache)
    assert dx[0, :, :, 0].tolist() == [[0, 0, 0, 0], [0, 1, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1]]
    _, cache = pool.sum_pool2d_forward(x, pool_size=3, stride=1)
    dx = pool.pool2d_backward(np.ones((1, 2, 2, 1)), cache)
    assert dx[0, :, :, 0].tolist() == [[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]]


def test_average_pool_derivative_equals_sympy():
    """y = (1/|window|) sum of the window's real cells; dy/dx_ij = 1/|window| for each cell, summed over windows."""
    cells = sp.symbols("x0:9", real=True)
    grid = sp.Matrix(3, 3, cells)
    # stride 1, pool 2, 'same' -> padding (0, 1): windows clipped at the bottom/right edge
    outputs = []
    for oh in range(3):
        for ow in range(3):
            block = grid[oh:min(oh + 2, 3), ow:min(ow + 2, 3)]
            outputs.append(sum(block) / len(block))
    loss = sum(outputs)  # dy = 1 everywhere
    symbolic = [sp.diff(loss, c) for c in cells]
    x = np.arange(9.0).reshape(1, 3, 3, 1)
    y, cache = pool.avg_pool2d_forward(x, 2, 1, "same")
    assert sp.simplify(sum(outputs).subs(dict(zip(cells, range(9)))) - float(y.sum())) == 0
    dx = pool.pool2d_backward(np.ones_like(y), cache)
    assert_close(dx.reshape(-1), [float(d) for d in symbolic], atol=1e-15, rtol=1e-15, name="d avg pool")


def test_nan_and_inf_follow_ieee():
    x = np.array([[1.0, np.nan, 5.0, np.inf], [2.0, 7.0, -np.inf, 0.0],
                  [-np.inf, -np.inf, 3.0, 4.0], [-np.inf, -np.inf, np.inf, -np.inf]])[None, :, :, None]
    for dtype in (np.float32, np.float64):
        xd = x.astype(dtype)
        for mode in MODES:
            y, cache = pool.pool2d_forward(xd, 2, 2, "valid", mode)
            with np.errstate(invalid="ignore"):  # inf + (-inf) is NaN by IEEE; NumPy warns, Numba does not
                y_ref, cache_ref = reference.forward(xd, (2, 2), (2, 2), ((0, 0), (0, 0)), mode)
            assert_close(y, y_ref, atol=0, rtol=0, name=f"{mode} with NaN/Inf")
        max_y, max_cache = pool.max_pool2d_forward(xd)
        assert np.isnan(max_y[0, 0, 0, 0]) and max_cache.argmax[0, 0, 0, 0] == 1  # NaN wins, and is routed to
        assert max_y[0, 0, 1, 0] == np.inf and max_y[0, 1, 0, 0] == -np.inf  # an all -inf window is -inf
        dx = pool.pool2d_backward(np.ones_like(max_y), max_cache)
        assert dx[0, 0, 1, 0] == 1.0 and dx[0, 2, 0, 0] == 1.0  # the NaN cell; the first -inf


# --- bad input -------------------------------------------------------------------------------------
def _escape(words):
    return re.escape(words)


@pytest.mark.parametrize("kwargs,error,words", [
    (dict(x=np.ones((4, 4, 1))), ValueError, "x must have 4 dimensions; got shape (4, 4, 1)"),
    (dict(x=np.ones((1, 4, 4, 1), dtype=np.int32)), TypeError, "x must have dtype float32 or float64; got int32"),
    (dict(x=np.ones((1, 4, 4, 1), dtype=np.complex64)), TypeError, "complex"),
    (dict(x=np.ones((0, 4, 4, 1))), ValueError, "x must not be empty; got shape (0, 4, 4, 1)"),
    (dict(x=[[[[1.0]]]]), TypeError, "x must be a NumPy or CuPy array; got list"),
    (dict(pool_size=0), ValueError, "pool_size must be a positive integer; got 0"),
    (dict(pool_size=(2, -1)), ValueError, "pool_size[1] must be a positive integer; got -1"),
    (dict(pool_size=2.0), TypeError, "pool_size must be a positive integer; got 2.0 (float)"),
    (dict(pool_size=(2, 2, 2)), ValueError, "pool_size must be an int or a pair of ints; got (2, 2, 2)"),
    (dict(stride=0), ValueError, "stride must be a positive integer; got 0"),
    (dict(stride=True), TypeError, "stride must be a positive integer; got True (bool)"),
    (dict(padding="full"), ValueError, "padding must be 'valid', 'same', an int, (ph, pw) or ((top, bottom), (left, right)); got 'full'"),
    (dict(padding=-1), ValueError, "padding must be a non-negative integer; got -1"),
    (dict(padding=(1, 2, 3)), ValueError, "padding must be 'valid', 'same', an int, (ph, pw) or ((top, bottom), (left, right)); got (1, 2, 3)"),
    (dict(padding=((1, 1, 1), (0, 0))), ValueError, "padding[0] must be an int or a pair (before, after) of ints; got (1, 1, 1)"),
    (dict(padding=((0, 1), (0, 1.5))), TypeError, "padding[1][1] must be a non-negative integer; got 1.5"),
    (dict(pool_size=5), ValueError, "pool_size (5, 5) is larger than the padded input (4, 4)"),
    (dict(pool_size=(2, 7), padding=1), ValueError, "pool_size (2, 7) is larger than the padded input (6, 6)"),
    (dict(pool_size=2, padding=2), ValueError, "padding rows must be smaller than pool_size (2) on each side"),
    (dict(pool_size=3, padding=((0, 0), (0, 3))), ValueError, "padding cols must be smaller than pool_size (3)"),
    (dict(mode="min"), ValueError, "mode must be one of ('max', 'avg', 'sum'); got 'min'"),
])
def test_bad_input_is_named(kwargs, error, words):
    args = dict(x=np.ones((1, 4, 4, 1)), pool_size=2, stride=None, padding="valid", mode="max") | kwargs
    with pytest.raises(error, match=_escape(words)):
        pool.pool2d_forward(**args)


def test_bad_backward_input_is_named():
    y, cache = pool.max_pool2d_forward(np.ones((2, 4, 6, 3)))
    with pytest.raises(ValueError, match=_escape("dy must have shape (2, 2, 3, 3); got (2, 3, 2, 3)")):
        pool.pool2d_backward(np.ones((2, 3, 2, 3)), cache)
    with pytest.raises(TypeError, match="dy must have dtype float64 like the other inputs; got float32"):
        pool.pool2d_backward(np.ones(y.shape, np.float32), cache)
    with pytest.raises(TypeError, match="cache must be the Pool2DCache returned by pool2d_forward; got tuple"):
        pool.pool2d_backward(np.ones(y.shape), tuple(cache))


def test_strided_and_read_only_inputs_are_copied_not_rejected(rng):
    base = random_array(rng, (2, 10, 12, 6))
    view = base[:, ::2, 1::2, ::2]
    view.flags.writeable = False
    for mode in MODES:
        y, cache = pool.pool2d_forward(view, 2, 1, "same", mode)
        y_ref, cache_ref = reference.forward(np.ascontiguousarray(view), (2, 2), (1, 1), ((0, 1), (0, 1)), mode)
        assert_close(y, y_ref, atol=1e-15, rtol=1e-13, name=f"{mode} of a strided view")
        dy = random_array(rng, (*y.shape[:3], 2 * y.shape[3]))[..., ::2]  # a strided dy too
        assert_close(pool.pool2d_backward(dy, cache), reference.backward(np.ascontiguousarray(dy), cache_ref),
                     atol=1e-15, rtol=1e-13, name=f"{mode} backward of a strided dy")


# --- property-based --------------------------------------------------------------------------------
@st.composite
def configurations(draw):
    n, h, w, c = (draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9)), draw(st.integers(1, 3)))
    pool_size = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    padding = draw(st.one_of(st.sampled_from(["valid", "same"]), st.integers(0, 3),
                             st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)),
                                       st.tuples(st.integers(0, 3), st.integers(0, 3)))))
    return (n, h, w, c), pool_size, stride, padding


@given(config=configurations(), mode=st.sampled_from(MODES), seed=st.integers(0, 2**32 - 1))
def test_property_valid_configs_match_reference_and_invalid_ones_raise(config, mode, seed):
    shape, pool_size, stride, padding = config
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    pads = geometry.resolve_padding(padding, shape[1:3], pool_size, stride)
    padded = (shape[1] + sum(pads[0]), shape[2] + sum(pads[1]))
    fits = pool_size[0] <= padded[0] and pool_size[1] <= padded[1]
    small_pads = all(p < k for k, side in zip(pool_size, pads) for p in side)
    if not (fits and small_pads):
        with pytest.raises(ValueError, match="pool_size|padding"):
            pool.pool2d_forward(x, pool_size, stride, padding, mode)
        return
    y, cache = pool.pool2d_forward(x, pool_size, stride, padding, mode)
    y_ref, cache_ref = reference.forward(x, pool_size, stride, pads, mode)
    assert_close(y, y_ref, atol=1e-12, rtol=1e-12, name=mode)
    dy = rng.standard_normal(y.shape)
    dx = pool.pool2d_backward(dy, cache)
    assert_close(dx, reference.backward(dy, cache_ref), atol=1e-12, rtol=1e-12, name=f"{mode} backward")
    # every output's gradient is passed on in full (max: to one cell; avg: weights summing to 1; sum: to each cell)
    weights = geometry.real_cell_counts(shape[1:3], y.shape[1:3], pool_size, stride, pads, np.float64)
    passed_on = (dy * weights[None, :, :, None]).sum() if mode == "sum" else dy.sum()
    assert_close(dx.sum(), passed_on, atol=1e-10, rtol=1e-10, name="gradient mass")
    if mode == "avg":  # the mean lies between the window's min and max
        top, _ = pool.max_pool2d_forward(x, pool_size, stride, padding)
        bottom, _ = pool.max_pool2d_forward(-x, pool_size, stride, padding)
        assert np.all(y <= top + 1e-12) and np.all(y >= -bottom - 1e-12)
