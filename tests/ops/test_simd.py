"""toolkit/ops/simd.py: the 64-byte vector intrinsics, lane by lane, in float32 and float64."""

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from toolkit.ops.simd import (wide_add, wide_add_f64, wide_add_head, wide_add_lanes, wide_fma, wide_fma4, wide_lanes,
                              wide_load, wide_splat, wide_store, wide_store4, wide_zeros)

DTYPES = [np.float32, np.float64]


def _lanes(dtype):
    return 64 // np.dtype(dtype).itemsize


@njit(cache=True)
def _lanes_of(a):
    return wide_lanes(a)


@njit(cache=True)
def _fma_at(a, b, c, out, i, j, k):
    """out[k : k + L] = a[i] * b[j : j + L] + c[k : k + L]."""
    wide_store(out, k, wide_fma(wide_splat(a, i), wide_load(b, j), wide_load(c, k)))


@njit(cache=True)
def _tile4(a, b, out, stride):
    """out rows r = 0..3 (stride apart) = sum over k < 3 of a[4k + r] * b[k*L : k*L + L]."""
    zero = wide_zeros(b)
    s0, s1, s2, s3 = zero, zero, zero, zero
    lanes = wide_lanes(b)
    for k in range(3):
        s0, s1, s2, s3 = wide_fma4(a, 4 * k, 4 * k + 1, 4 * k + 2, 4 * k + 3, wide_load(b, k * lanes), s0, s1, s2, s3)
    wide_store4(out, 1, stride, s0, s1, s2, s3)


@njit(cache=True)
def _zeros_into(out, k):
    wide_store(out, k, wide_zeros(out))


@njit(cache=True)
def _add(out, k, v, j):
    wide_add(out, k, wide_load(v, j))


@njit(cache=True)
def _add_head(out, k, v, count):
    wide_add_head(out, k, wide_load(v, 0), count)


@njit(cache=True)
def _add_lanes(out, k, v, count):
    wide_add_lanes(out, k, wide_load(v, 0), count)


@njit(cache=True)
def _add_f64(out, k, v):
    wide_add_f64(out, k, wide_load(v, 0))


@pytest.mark.parametrize("dtype", DTYPES)
def test_lanes_fill_64_bytes(dtype):
    assert _lanes_of(np.zeros(1, dtype)) == _lanes(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fma_load_splat_store_at_unaligned_offsets(dtype, rng):
    n = _lanes(dtype)
    a, b, c = (rng.standard_normal(3 * n).astype(dtype) for _ in range(3))
    out = np.full(3 * n, 7.0, dtype)
    _fma_at(a, b, c, out, 5, 3, 1)
    expected = a[5].astype(np.float64) * b[3:3 + n] + c[1:1 + n]
    np.testing.assert_allclose(out[1:1 + n], expected, rtol=4 * np.finfo(dtype).eps)
    assert (out[:1] == 7).all() and (out[1 + n:] == 7).all(), "a store wrote outside its lanes"
    _zeros_into(out, 2)
    assert (out[2:2 + n] == 0).all() and out[1] != 0 and (out[2 + n:] == 7).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_four_row_tile_is_four_rows_of_products(dtype, rng):
    n = _lanes(dtype)
    a, b = rng.standard_normal(12).astype(dtype), rng.standard_normal(3 * n).astype(dtype)
    stride = n + 3
    out = np.full(1 + 4 * stride, np.nan, dtype)
    _tile4(a, b, out, stride)
    expected = a.reshape(3, 4).T.astype(np.float64) @ b.reshape(3, n)  # row r: sum_k a[4k + r] b[k]
    for r in range(4):
        np.testing.assert_allclose(out[1 + r * stride:][:n], expected[r], rtol=8 * np.finfo(dtype).eps, atol=1e-12)
    written = np.zeros(out.shape, bool)
    for r in range(4):
        written[1 + r * stride:][:n] = True
    assert np.isnan(out[~written]).all(), "a tile store wrote outside its rows"


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_adds_every_lane(dtype, rng):
    n = _lanes(dtype)
    out, v = rng.standard_normal(2 * n).astype(dtype), rng.standard_normal(2 * n).astype(dtype)
    expected = out.copy()
    expected[3:3 + n] += v[1:1 + n]
    _add(out, 3, v, 1)
    np.testing.assert_array_equal(out, expected)


def _sentinels(dtype, n):
    """Values that an add of +0.0 or a stray lane would change: -0.0, infinities, NaN, a subnormal."""
    tiny = np.finfo(dtype).smallest_subnormal
    return np.resize(np.array([-0.0, np.inf, -np.inf, np.nan, tiny, -1.5], dtype), n)


@pytest.mark.parametrize("count", [0, 1, 5, 7, 8, 15, 16, 20])
@pytest.mark.parametrize("dtype", DTYPES)
def test_add_head_changes_only_the_first_count_lanes(dtype, count, rng):
    n = _lanes(dtype)
    v = rng.standard_normal(n).astype(dtype)
    v[n // 2:] = np.inf  # values the spare lanes must not carry
    out = np.concatenate([np.ones(2, dtype), _sentinels(dtype, n), np.ones(2, dtype)])
    before = out.copy()
    _add_head(out, 2, v, count)
    k = min(count, n)
    expected = before.copy()
    with np.errstate(invalid="ignore"):  # inf + -inf in a sentinel lane
        expected[2:2 + k] += v[:k]
    np.testing.assert_array_equal(out.view(np.uint8), expected.view(np.uint8))  # bit for bit: -0.0, NaN


@pytest.mark.parametrize("count", [-1, 0, 1, 3, 8, 16, 99])
@pytest.mark.parametrize("dtype", DTYPES)
def test_add_lanes_touches_nothing_past_count(dtype, count, rng):
    n = _lanes(dtype)
    v = rng.standard_normal(n).astype(dtype)
    out = _sentinels(dtype, n + 4)
    before = out.copy()
    _add_lanes(out, 1, v, count)
    k = max(0, min(count, n))
    expected = before.copy()
    with np.errstate(invalid="ignore"):
        expected[1:1 + k] += v[:k]
    np.testing.assert_array_equal(out.view(np.uint8), expected.view(np.uint8))


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_f64_widens_before_adding(dtype):
    n = _lanes(dtype)
    v = np.full(n, 1 + 2.0 ** -20, dtype)
    out = np.full(n + 2, 2.0 ** 30)
    _add_f64(out, 1, v)
    assert out[0] == out[-1] == 2.0 ** 30
    np.testing.assert_array_equal(out[1:-1], 2.0 ** 30 + v.astype(np.float64))  # float32 would round it away


def test_arrays_that_are_not_contiguous_floats_are_refused_at_compile_time():
    with pytest.raises(TypingError):
        _add(np.zeros(32)[::2], 0, np.zeros(16), 0)
    with pytest.raises(TypingError):
        _lanes_of(np.zeros(4, np.int32))
    with pytest.raises(TypingError):  # a float32 vector into a float64 array
        _add(np.zeros(32), 0, np.zeros(16, np.float32), 0)
