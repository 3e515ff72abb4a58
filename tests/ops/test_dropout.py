"""Dropout: Philox-4x32-10 known answers, Numba mask == reference mask bit for bit, keep fraction within a
binomial bound, inverted scaling, backward vs finite differences, inference identity, the notes' example."""

import math
import re

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.helpers import assert_close, check_gradient, random_array
from toolkit.ops import dropout as drop
from toolkit.ops.dropout import cpu, philox, reference

# Random123 known-answer vectors for Philox4x32-10 (kat_vectors): counter, key -> output.
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]
SEEDS = [0, 1, 2**32 - 1, 2**32, 0x0123456789ABCDEF, 2**64 - 1]  # the key's high word matters too


@pytest.mark.parametrize("counter,key,expected", KNOWN_ANSWERS)
def test_philox_known_answers(counter, key, expected):
    assert [int(w) for w in philox.philox4x32_10(counter, key)] == list(expected)
    words = cpu.philox4x32_10_words(*(np.uint64(v) for v in counter + key))
    assert [int(w) for w in words] == list(expected)


def test_element_words_follow_the_documented_mapping():
    """Element i uses counter (i >> 2 low word, high word, 0, 0), key (seed low, seed high), word i & 3."""
    seed = 0xDEADBEEF_00C0FFEE
    key = (seed & 0xFFFFFFFF, seed >> 32)
    # Indices past 2^34 exercise the counter's high word (no array that big is needed for this).
    indices = [0, 1, 2, 3, 4, 7, 1001, 2**34 + 5, 2**40 + 2, 2**62 + 3, 2**64 - 1]
    for i in indices:
        block = i >> 2
        expected = int(philox.philox4x32_10((block & 0xFFFFFFFF, block >> 32, 0, 0), key)[i & 3])
        assert int(philox.element_words([i], seed)[0]) == expected, i
        assert int(cpu.element_word(np.uint64(i), np.uint64(key[0]), np.uint64(key[1]))) == expected, i
    stream = philox.stream_words(23, seed)
    assert np.array_equal(stream, philox.element_words(np.arange(23), seed))


def test_keep_rule_is_u_at_least_rate_in_integers():
    words = np.array([0, 0xFF, 0x100, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF], dtype=np.uint32)
    u = philox.uniform(words)
    assert u.tolist() == [0.0, 0.0, 2.0**-24, 0.5 - 2.0**-24, 0.5, 1 - 2.0**-24]
    for rate in [0.0, 2.0**-24, 1 / 3, 0.5, 0.5 + 1e-12, 1 - 2.0**-24, 0.999999999]:
        keep_by_integers = (words >> 8) >= philox.keep_threshold(rate)
        assert np.array_equal(keep_by_integers, u >= rate), rate


@pytest.mark.parametrize("shape", [(1,), (3,), (4,), (5,), (7, 3), (2, 3, 5, 7), (129, 515)])
@pytest.mark.parametrize("rate", [0.0, 0.1, 1 / 3, 0.5, 0.9, 1 - 1e-7])
def test_numba_mask_equals_reference_bit_for_bit(shape, rate):
    for seed in SEEDS:
        mask = drop.dropout_mask(shape, rate, seed)
        assert mask.dtype == np.bool_ and mask.shape == shape
        assert np.array_equal(mask, reference.dropout_mask(shape, rate, seed)), (shape, rate, seed)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (6,), (3, 5), (2, 3, 4, 5), (300, 257)])
@pytest.mark.parametrize("rate", [0.0, 0.25, 1 / 3, 0.8])
def test_numba_matches_reference_exactly(shape, rate, dtype, rng):
    x = random_array(rng, shape, dtype, scale=3.0)
    dy = random_array(rng, shape, dtype)
    y, cache = drop.dropout_forward(x, rate, seed=2024)
    y_ref, cache_ref = reference.forward(x, rate, 2024, True)
    assert y.dtype == dtype and np.array_equal(cache.mask, cache_ref.mask)
    assert np.array_equal(y, y_ref)  # the same division in the same dtype: bit-identical
    dx = drop.dropout_backward(dy, cache)
    assert dx.dtype == dtype and np.array_equal(dx, reference.backward(dy, cache_ref))


@pytest.mark.parametrize("rate", [0.1, 1 / 3, 0.5, 0.9])
def test_keep_fraction_within_binomial_bound(rate):
    n = 10**6
    keep_probability = 1 - philox.keep_threshold(rate) / 2**24  # exact for this generator
    assert abs(keep_probability - (1 - rate)) <= 2.0**-24
    sigma = math.sqrt(n * keep_probability * (1 - keep_probability))
    for seed in (7, 2**63 + 11):
        mask = drop.dropout_mask(n, rate, seed)
        assert abs(mask.sum() - n * keep_probability) <= 6 * sigma, (rate, seed, mask.sum())
        for lane in range(4):  # each of the 4 Philox output words on its own (catches a lane-mapping bug)
            lane_n = mask[lane::4].size
            lane_sigma = math.sqrt(lane_n * keep_probability * (1 - keep_probability))
            assert abs(mask[lane::4].sum() - lane_n * keep_probability) <= 6 * lane_sigma, (rate, lane)
    # different seeds give (nearly) independent masks: agreement rate p^2 + (1-p)^2
    a, b = drop.dropout_mask(n, rate, 1), drop.dropout_mask(n, rate, 2)
    agree = keep_probability**2 + (1 - keep_probability) ** 2
    assert abs((a == b).sum() - n * agree) <= 6 * math.sqrt(n * agree * (1 - agree))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_survivors_are_exactly_x_over_one_minus_rate_and_the_rest_zero(dtype, rng):
    rate = 0.3
    x = random_array(rng, (50, 40), dtype)
    y, cache = drop.dropout_forward(x, rate, seed=99)
    kept = cache.mask
    assert 0 < kept.sum() < kept.size
    assert np.array_equal(y[kept], x[kept] / dtype(1 - rate))
    assert np.all(y[~kept] == 0)


@pytest.mark.parametrize("impl", ["numba", "reference"])
def test_backward_matches_finite_differences(impl, rng):
    x = random_array(rng, (3, 5))
    dy = random_array(rng, (3, 5))
    module = cpu if impl == "numba" else reference
    y, cache = module.forward(x, 0.4, 5, True)
    dx = module.backward(dy, cache)
    assert_close(dx, dy * cache.mask / (1 - 0.4), atol=1e-15, rtol=1e-15, name="dy * mask / (1 - rate)")
    # the same seed reproduces the same mask, so the loss is a fixed linear function of x
    check_gradient(lambda: float((module.forward(x, 0.4, 5, True)[0] * dy).sum()), x, dx, name="dropout x")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inference_is_the_identity(dtype, rng):
    x = random_array(rng, (4, 7), dtype)
    y, cache = drop.dropout_forward(x, 0.5, seed=3, training=False)
    assert cache.mask is None and y is not x and np.array_equal(y, x)
    dy = random_array(rng, (4, 7), dtype)
    assert np.array_equal(drop.dropout_backward(dy, cache), dy)
    assert np.array_equal(reference.forward(x, 0.5, 3, False)[0], x)


def test_rate_zero_keeps_everything_and_rate_near_one_drops_almost_all(rng):
    x = random_array(rng, (1000,))
    y, cache = drop.dropout_forward(x, 0.0, seed=1)
    assert cache.mask.all() and np.array_equal(y, x)
    y, cache = drop.dropout_forward(x, 1 - 1e-9, seed=1)
    assert np.all(np.isfinite(y)) and cache.mask.sum() <= 1


def test_mask_depends_on_element_index_not_shape():
    assert np.array_equal(drop.dropout_mask((6, 4), 0.5, 11).reshape(-1), drop.dropout_mask(24, 0.5, 11))
    assert np.array_equal(drop.dropout_mask((24,), 0.5, 11)[:10], drop.dropout_mask(10, 0.5, 11))


# --- the notes -------------------------------------------------------------------------------------
# Document 004 ("Dropout"): "applied to a layer of 6 units ... The dropout rate is 1/3, and the remaining
# 4 neurons at each training step have their value scaled by x1.5".
NOTES_004_DROPOUT = {"units": 6, "rate": sp.Rational(1, 3), "printed_remaining": 4, "printed_scale": 1.5}


def test_notes_004_dropout_example():
    claim = NOTES_004_DROPOUT
    rate = float(claim["rate"])
    steps = 4000  # one row per training step (or per sample of a batch): each row gets its own elements
    x = np.tile(np.arange(1.0, claim["units"] + 1), (steps, 1))
    y, cache = drop.dropout_forward(x, rate, seed=2013)
    survivors = cache.mask
    scale = y[survivors] / x[survivors]
    assert np.all(np.round(scale, 1) == claim["printed_scale"]), "survivor scale at the printed precision"
    exact_scale = 1 / (1 - claim["rate"])  # 3/2
    assert float(exact_scale) == claim["printed_scale"]
    expected_remaining = claim["units"] * (1 - claim["rate"])  # 4
    assert expected_remaining == claim["printed_remaining"]
    # The notes show 4 remaining "at each training step"; 4 is the MEAN of Binomial(6, 2/3), so a
    # step may keep any number from 0 to 6. Check the mean, and that the count does vary.
    kept_counts = survivors.sum(axis=1)
    sd = math.sqrt(claim["units"] * float((1 - claim["rate"]) * claim["rate"]))
    assert abs(kept_counts.mean() - float(expected_remaining)) <= 6 * sd / math.sqrt(steps)
    assert len(set(kept_counts.tolist())) > 1


def test_inverted_dropout_preserves_the_expectation_sympy():
    p, x = sp.symbols("p x", real=True)
    expectation = (1 - p) * (x / (1 - p)) + p * 0  # kept with probability 1 - p, scaled; else 0
    assert sp.simplify(expectation - x) == 0
    derivative = sp.diff(x / (1 - p), x)  # the backward factor of a survivor
    assert sp.simplify(derivative - 1 / (1 - p)) == 0
    # numeric spot check on the kernel: the mean over many independent elements approaches x
    rate, value, n = 0.25, 2.0, 400_000
    y, cache = drop.dropout_forward(np.full(n, value), rate, seed=12345)
    keep = 1 - philox.keep_threshold(rate) / 2**24
    sd = value / (1 - rate) * math.sqrt(keep * (1 - keep) / n)
    assert abs(y.mean() - float(expectation.subs({p: rate, x: value}))) <= 6 * sd
    dx = drop.dropout_backward(np.ones(n), cache)
    assert np.all(dx[cache.mask] == float(derivative.subs({p: rate})))


def test_nan_and_inf_follow_the_selection_rule():
    x = np.array([np.nan, np.inf, -np.inf, 1.0] * 8)
    y, cache = drop.dropout_forward(x, 0.5, seed=8)
    assert 0 < cache.mask.sum() < x.size
    kept = cache.mask
    assert np.array_equal(np.isnan(y), np.isnan(x) & kept)  # kept NaN stays NaN, dropped NaN becomes 0
    assert np.all(y[~kept] == 0)
    assert_close(y, reference.forward(x, 0.5, 8, True)[0], atol=0, rtol=0, name="NaN/Inf")
    # a kept float32 near its maximum overflows to inf when divided by 1 - rate: IEEE, no crash
    big = np.full(16, np.finfo(np.float32).max, dtype=np.float32)
    y, cache = drop.dropout_forward(big, 0.5, seed=8)
    assert np.all(y[cache.mask] == np.inf) and np.all(y[~cache.mask] == 0)


# --- bad input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,error,words", [
    (dict(x=np.arange(4)), TypeError, "x must have dtype float32 or float64; got int64"),
    (dict(x=np.ones(3, dtype=np.complex128)), TypeError, "complex"),
    (dict(x=np.ones((2, 0))), ValueError, "x must not be empty; got shape (2, 0)"),
    (dict(x=[1.0, 2.0]), TypeError, "x must be a NumPy or CuPy array; got list"),
    (dict(rate=1.0), ValueError, "rate must be < 1.0; got 1.0"),
    (dict(rate=-0.1), ValueError, "rate must be >= 0.0; got -0.1"),
    (dict(rate=float("nan")), ValueError, "rate must be finite; got nan"),
    (dict(rate="0.5"), TypeError, "rate must be a real number; got '0.5'"),
    (dict(seed=-1), ValueError, "seed must be an integer in [0, 2**64); got -1"),
    (dict(seed=2**64), ValueError, f"seed must be an integer in [0, 2**64); got {2**64}"),
    (dict(seed=1.5), TypeError, "seed must be an integer in [0, 2**64); got 1.5 (float)"),
    (dict(seed=True), TypeError, "seed must be an integer in [0, 2**64); got True (bool)"),
    (dict(training="yes"), TypeError, "training must be True or False; got 'yes' (str)"),
])
def test_bad_input_is_named(kwargs, error, words):
    args = dict(x=np.ones((2, 3)), rate=0.5, seed=0, training=True) | kwargs
    with pytest.raises(error, match=re.escape(words)):
        drop.dropout_forward(**args)


def test_bad_backward_and_mask_input_is_named():
    y, cache = drop.dropout_forward(np.ones((2, 3)), 0.5, seed=0)
    with pytest.raises(ValueError, match=re.escape("dy must have shape (2, 3); got (3, 2)")):
        drop.dropout_backward(np.ones((3, 2)), cache)
    with pytest.raises(TypeError, match="dy must have dtype float64 like the other inputs; got float32"):
        drop.dropout_backward(np.ones((2, 3), np.float32), cache)
    with pytest.raises(TypeError, match="cache must be the DropoutCache returned by dropout_forward; got tuple"):
        drop.dropout_backward(np.ones((2, 3)), tuple(cache))
    with pytest.raises(ValueError, match=re.escape("shape[1] must be a positive integer; got 0")):
        drop.dropout_mask((3, 0), 0.5, 1)
    with pytest.raises(TypeError, match="shape must be an int or a tuple of ints; got 'ab'"):
        drop.dropout_mask("ab", 0.5, 1)
    with pytest.raises(ValueError, match="rate must be < 1.0; got 1.0"):
        drop.dropout_mask((3,), 1.0, 1)


def test_strided_and_read_only_inputs_are_copied_not_rejected(rng):
    base = random_array(rng, (8, 12))
    view = base[::2, ::3]
    view.flags.writeable = False
    y, cache = drop.dropout_forward(view, 0.5, seed=4)
    y_ref, _ = reference.forward(np.ascontiguousarray(view), 0.5, 4, True)
    assert np.array_equal(y, y_ref)
    dy = random_array(rng, (4, 8))[:, ::2]
    assert np.array_equal(drop.dropout_backward(dy, cache), np.where(cache.mask, dy / 0.5, 0.0))


# --- property-based ------------------------------------------------------------------------------------
@given(x=hnp.arrays(st.sampled_from([np.float32, np.float64]), hnp.array_shapes(min_dims=1, max_dims=4, max_side=9),
                    elements=st.floats(-1e6, 1e6, allow_nan=False, width=32)),
       rate=st.floats(0.0, 1.0, exclude_max=True), seed=st.integers(0, 2**64 - 1))
def test_property_numba_equals_reference(x, rate, seed):
    y, cache = drop.dropout_forward(x, rate, seed)
    y_ref, cache_ref = reference.forward(x, rate, seed, True)
    assert np.array_equal(cache.mask, cache_ref.mask) and np.array_equal(y, y_ref)
    divisor = x.dtype.type(1 - rate)
    assert np.array_equal(y, np.where(cache.mask, x / divisor, x.dtype.type(0)))


@given(rate=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5)),
       seed=st.one_of(st.integers(-2**65, 2**65), st.floats(allow_nan=True)))
def test_property_bad_rates_and_seeds_raise_before_any_kernel(rate, seed):
    x = np.ones(5)
    good_rate = isinstance(rate, float) and 0.0 <= rate < 1.0 or rate == 0
    good_seed = isinstance(seed, int) and 0 <= seed < 2**64
    if good_rate and good_seed:
        drop.dropout_forward(x, rate, seed)
        return
    with pytest.raises((TypeError, ValueError), match="rate|seed"):
        drop.dropout_forward(x, rate, seed)
