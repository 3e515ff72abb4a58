"""toolkit.blas.gemm: c = alpha op(a) b + beta c in place, on NumPy's OpenBLAS and on the SciPy fallback;
row-block views without copies; arguments that would hand BLAS a wrong pointer are refused first."""

import numpy as np
import pytest

from toolkit import blas


@pytest.fixture(params=["numpy_openblas", "scipy_fallback"])
def library(request, monkeypatch):
    if request.param == "scipy_fallback":
        monkeypatch.setattr(blas, "_CBLAS", {})
    elif not blas._CBLAS:
        pytest.skip("NumPy is not linked to its bundled ILP64 OpenBLAS here: only the fallback exists")
    return request.param


def test_numpy_wheels_openblas_is_found():
    # The CI machine installs NumPy's manylinux wheel: the fast path must be the one that runs there.
    assert blas._CBLAS, blas.source()
    assert "numpy" in blas.source()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("beta", [0.0, 1.0, -0.5])
def test_matches_numpy_on_row_block_views(dtype, trans_a, beta, library, rng):
    # Row blocks of bigger matrices with an offset and a row stride larger than the row: what shifted.py passes.
    big_a = rng.standard_normal((40, 13)).astype(dtype)
    a = big_a[3:3 + 9, 2:9] if trans_a else big_a[5:5 + 7, 1:10]  # (k=9, m=7) or (m=7, k=9)
    b = rng.standard_normal((30, 11)).astype(dtype)[4:13, :6]  # (9, 6)
    c_big = rng.standard_normal((20, 10)).astype(dtype)
    c = c_big[2:9, 3:9]  # (7, 6), row stride 10
    before, untouched = c.copy(), c_big.copy()
    out = blas.gemm(a, b, c, trans_a=trans_a, beta=beta, alpha=2.0)
    expected = 2.0 * ((a.T if trans_a else a) @ b) + beta * before
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(c, expected, rtol=tol, atol=tol)
    assert out is c
    untouched[2:9, 3:9] = c
    np.testing.assert_array_equal(c_big, untouched)  # nothing outside the view was written


def test_beta_zero_ignores_nan_in_c(library, rng):
    a, b = rng.standard_normal((5, 4)), rng.standard_normal((4, 3))
    c = np.full((5, 3), np.nan)
    blas.gemm(a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-12)


def test_accumulating_sums_products(library, rng):
    terms = [(rng.standard_normal((6, 5)).astype(np.float32), rng.standard_normal((5, 4)).astype(np.float32))
             for _ in range(4)]
    c = np.empty((6, 4), np.float32)
    for number, (a, b) in enumerate(terms):
        blas.gemm(a, b, c, beta=0.0 if number == 0 else 1.0)
    np.testing.assert_allclose(c, sum(a @ b for a, b in terms), rtol=1e-5, atol=1e-5)


def test_empty_sum_gives_beta_c(library):
    c = np.full((2, 3), 4.0)
    blas.gemm(np.empty((2, 0)), np.empty((0, 3)), c, beta=0.5)
    np.testing.assert_array_equal(c, np.full((2, 3), 2.0))
    c[0, 0] = np.nan
    blas.gemm(np.empty((2, 0)), np.empty((0, 3)), c)
    np.testing.assert_array_equal(c, np.zeros((2, 3)))


@pytest.mark.parametrize("make,words", [
    (lambda: (np.ones((3, 4), np.float32), np.ones((4, 2)), np.ones((3, 2), np.float32)), "b must be a 2-D float32"),
    (lambda: (np.ones((3, 4)), np.ones((4, 2)), np.ones((3, 2), np.int64)), "c must be a float32 or float64"),
    (lambda: (np.ones((3, 4)), np.ones((5, 2)), np.ones((3, 2))), "does not give c"),
    (lambda: (np.ones((3, 4)), np.ones((4, 2)), np.ones((2, 2))), "does not give c"),
    (lambda: (np.ones((4, 3)).T, np.ones((4, 2)), np.ones((3, 2))), "a must have contiguous rows"),
    (lambda: (np.ones((3, 4, 1)), np.ones((4, 2)), np.ones((3, 2))), "a must be a 2-D"),
    (lambda: (np.lib.stride_tricks.as_strided(np.ones(20), (3, 4), (8, 8)), np.ones((4, 2)), np.ones((3, 2))),
     "row stride 8 bytes does not hold its 4 columns"),
])
def test_bad_arguments_are_refused_before_blas(make, words):
    a, b, c = make()
    with pytest.raises(ValueError, match=words):
        blas.gemm(a, b, c)


def test_read_only_c_is_refused():
    c = np.zeros((3, 2))
    c.flags.writeable = False
    with pytest.raises(ValueError, match="c must be writeable"):
        blas.gemm(np.ones((3, 4)), np.ones((4, 2)), c)


def test_c_overlapping_an_operand_is_refused():
    m = np.ones((6, 4))
    with pytest.raises(ValueError, match="c must not overlap a or b"):
        blas.gemm(m[:4], np.ones((4, 4)), m[2:6])
