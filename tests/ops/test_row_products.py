"""toolkit/ops/row_products.py: rows of a strided matrix times a matrix, against NumPy, touching nothing else."""

import numpy as np
import pytest

from tests.helpers import assert_close, tolerance
from numba import njit

from toolkit.ops.row_products import fits, pack, rows_times, strided_rows_times


@pytest.mark.parametrize("rows", [0, 1, 3, 4, 5, 9])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_times_matches_numpy_on_strided_rows(rows, dtype, rng):
    lanes = 64 // np.dtype(dtype).itemsize
    k, m = 37, 2 * lanes
    a = rng.standard_normal((rows + 3) * 50 + k).astype(dtype)  # row r at 7 + r*50: strided, unaligned
    b = rng.standard_normal((k, m)).astype(dtype)
    out = np.full((rows + 2) * (m + 5) + 3, np.nan, dtype)  # row r at 3 + r*(m + 5); the rest must stay NaN
    rows_times(a, 7, 50, rows, pack(b), out, 3, m + 5)
    expected = np.stack([a[7 + r * 50:][:k].astype(np.float64) @ b for r in range(rows)]) if rows else np.zeros((0, m))
    written = np.zeros(out.shape, bool)
    for r in range(rows):
        written[3 + r * (m + 5):][:m] = True
    assert np.isnan(out[~written]).all(), "wrote outside the rows' columns"
    got = out[written].reshape(rows, m)
    assert_close(got, expected, **tolerance(dtype), name="rows @ b")


def test_a_row_has_the_same_bits_in_a_tile_or_alone(rng):
    """Rows 0-3 go through the 4-row tile, row 4 through the one-row loop: the same row gives the same bits."""
    a = np.tile(rng.standard_normal(64).astype(np.float32), 5)
    b = rng.standard_normal((64, 32)).astype(np.float32)
    out = np.empty((5, 32), np.float32)
    rows_times(a, 0, 64, 5, pack(b), out, 0, 32)
    for r in range(1, 5):
        np.testing.assert_array_equal(out[r], out[0])


def test_pack_puts_each_column_block_in_one_piece():
    b = np.arange(3 * 32, dtype=np.float32).reshape(3, 32)
    packed = pack(b)
    assert packed.shape == (2, 3, 16) and packed.flags.c_contiguous
    np.testing.assert_array_equal(packed[1], b[:, 16:])


@pytest.mark.parametrize("m,dtype,expected", [(16, np.float32, True), (8, np.float32, False), (8, np.float64, True),
                                              (1024, np.float32, True), (131, np.float64, False)])
def test_fits_whole_vectors_only(m, dtype, expected):
    assert fits(m, dtype) is expected


# --- strided_rows_times: columns of a (rows of a^T), ranges of k, accumulation -----------------------------
@njit(cache=False)
def _strided(a, a_start, a_row, a_step, rows, packed, k0, k1, out, out_start, out_stride, accumulate):
    blocks, k_size, _ = packed.shape
    strided_rows_times(a, a_start, a_row, a_step, rows, packed, 0, blocks, k_size, k0, k1, out, out_start,
                       out_stride, accumulate)


@pytest.mark.parametrize("rows", [1, 4, 7])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_columns_of_a_times_b_in_ranges_of_k_add_up_to_a_transposed_times_b(rows, dtype, rng):
    """Reading a by columns (a_row = 1, a_step = its row stride) is a^T without a copy; the k ranges
    [0, 5), [5, 11), [11, K) summed with accumulate give the whole product; nothing else is written."""
    lanes = 64 // np.dtype(dtype).itemsize
    k, m, stride = 13, 2 * lanes, rows + 6
    a = rng.standard_normal((k, stride)).astype(dtype)  # column c + 2 of a is row c of a^T
    b = rng.standard_normal((k, m)).astype(dtype)
    out = np.full((rows + 1, m + 3), np.nan, dtype)
    packed = pack(b)
    for k0, k1 in ((0, 5), (5, 11), (11, k)):
        _strided(a, 2, 1, stride, rows, packed, k0, k1, out, 1, m + 3, k0 > 0)
    expected = a[:, 2:2 + rows].T.astype(np.float64) @ b
    got = out.reshape(-1)[1:][:rows * (m + 3)].reshape(rows, m + 3)[:, :m]
    assert_close(got, expected, **tolerance(dtype), name="a^T @ b")
    written = np.zeros(out.size, bool)
    for r in range(rows):
        written[1 + r * (m + 3):][:m] = True
    assert np.isnan(out.reshape(-1)[~written]).all(), "wrote outside the rows' columns"


def test_accumulate_adds_to_what_out_holds(rng):
    a = rng.standard_normal((5, 8)).astype(np.float64)
    b = rng.standard_normal((8, 8)).astype(np.float64)
    start = rng.standard_normal((5, 8))
    out = start.copy()
    _strided(a, 0, 8, 1, 5, pack(b), 0, 8, out, 0, 8, True)
    assert_close(out, start + a @ b, **tolerance(np.float64), name="out + a @ b")
