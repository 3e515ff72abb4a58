"""C = alpha op(A) B + beta C on NumPy's own BLAS: the one matrix product NumPy cannot do in place.

Why: ``numpy.matmul(a, b, out=c)`` overwrites c; a sum of products (conv2d's shifted path adds nine)
then needs a temporary and an addition pass per term. BLAS's gemm accumulates (beta = 1) for free.
SciPy exposes gemm (``scipy.linalg.blas``), but SciPy's wheel carries its own OpenBLAS: a second
library with a second thread pool, whose threads spin after a product while NumPy's run the next one
(on 2 cores each waits for the other; see bench/README.md, "Threads"). And for the filter-gradient
shape of conv2d (a 192 x 64 result summed over 27,000 rows) SciPy's OpenBLAS 0.3.30 took 33 ms where
NumPy's 0.3.31 took 21 ms. So ``gemm`` calls the CBLAS entry point of the OpenBLAS that NumPy's wheel
loads (numpy.libs/libscipy_openblas64_*.so, 64-bit integers: ``scipy_cblas_sgemm64_``), through ctypes:
the same library and thread pool as every ``@`` in the toolkit.

Where NumPy was built against another BLAS (a distribution's or conda's), the symbol is not found and
``gemm`` falls back to SciPy's gemm: the same values, the second pool. ``source()`` says which.

The arguments are checked before the call (ctypes hands raw pointers to BLAS, which checks nothing a
wrong shape or stride would break): 2-D, one dtype (float32 or float64), unit stride along rows, a
row stride at least the row length, shapes that agree, and C writeable and apart from A and B.
"""

from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112  # CBLAS enum values
_SYMBOLS = {np.dtype(np.float32): ("scipy_cblas_sgemm64_", ctypes.c_float),
            np.dtype(np.float64): ("scipy_cblas_dgemm64_", ctypes.c_double)}


def _numpy_openblas() -> dict:
    """{dtype: ctypes function} for NumPy's bundled ILP64 OpenBLAS, or {} when it is not there."""
    folder = os.path.dirname(os.path.abspath(np.__file__)) + ".libs"
    for path in sorted(glob.glob(os.path.join(folder, "libscipy_openblas64_*"))):
        try:
            library = ctypes.CDLL(path)  # already loaded by NumPy: this only returns a handle to it
            functions = {}
            for dtype, (name, scalar) in _SYMBOLS.items():
                function = getattr(library, name)
                function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64,
                                     ctypes.c_int64, scalar, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
                                     ctypes.c_int64, scalar, ctypes.c_void_p, ctypes.c_int64]
                function.restype = None
                functions[dtype] = function
            return functions
        except (OSError, AttributeError):
            continue
    return {}


_CBLAS = _numpy_openblas()


def source() -> str:
    """Which BLAS ``gemm`` calls: NumPy's bundled OpenBLAS, or SciPy's as the fallback."""
    return "numpy's OpenBLAS (cblas, ILP64)" if _CBLAS else "scipy.linalg.blas (fallback)"


def _leading(name: str, a: np.ndarray, dtype: np.dtype) -> int:
    """The row stride, in elements, of a 2-D view whose rows are contiguous and do not overlap."""
    if not isinstance(a, np.ndarray) or a.ndim != 2 or a.dtype != dtype:
        raise ValueError(f"gemm: {name} must be a 2-D {dtype} array; got "
                         f"{getattr(a, 'ndim', '?')}-D {getattr(a, 'dtype', type(a).__name__)}")
    rows, cols = a.shape
    item = a.itemsize
    if a.size == 0:  # no element is read or written (NumPy may give such arrays zero strides)
        return max(cols, 1)
    if cols > 1 and a.strides[1] != item:
        raise ValueError(f"gemm: {name} must have contiguous rows; got strides {a.strides}")
    if rows <= 1:
        return max(cols, 1)
    if a.strides[0] % item or a.strides[0] < cols * item:
        raise ValueError(f"gemm: {name}'s row stride {a.strides[0]} bytes does not hold its {cols} columns")
    return a.strides[0] // item


def gemm(a: np.ndarray, b: np.ndarray, c: np.ndarray, *, trans_a: bool = False, beta: float = 0.0,
         alpha: float = 1.0) -> np.ndarray:
    """c = alpha * op(a) @ b + beta * c, in place; op(a) = a.T when trans_a. Returns c.

    a, b, c: 2-D views with contiguous rows (any row stride, e.g. a block of rows of a bigger matrix) of
    one float dtype. beta = 0 ignores c's old values, NaN included (BLAS semantics).
    """
    dtype = c.dtype if isinstance(c, np.ndarray) else None
    if dtype not in _SYMBOLS:
        raise ValueError(f"gemm: c must be a float32 or float64 array; got {getattr(c, 'dtype', type(c).__name__)}")
    lda, ldb, ldc = _leading("a", a, dtype), _leading("b", b, dtype), _leading("c", c, dtype)
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    if b.shape[0] != k or c.shape != (m, b.shape[1]):
        raise ValueError(f"gemm: op(a) {m}x{k} times b {b.shape[0]}x{b.shape[1]} does not give c of shape "
                         f"{c.shape[0]}x{c.shape[1]}")
    if not c.flags.writeable:
        raise ValueError("gemm: c must be writeable")
    if np.may_share_memory(c, a) or np.may_share_memory(c, b):  # BLAS would read what it is overwriting
        raise ValueError("gemm: c must not overlap a or b")
    n = b.shape[1]
    if m == 0 or n == 0:
        return c
    if k == 0:  # an empty sum: c = beta * c (0 when beta is 0, whatever c held)
        c[...] = c * beta if beta else 0
        return c
    if _CBLAS:
        _CBLAS[dtype](_ROW_MAJOR, _TRANS if trans_a else _NO_TRANS, _NO_TRANS, m, n, k, alpha,
                      a.ctypes.data, lda, b.ctypes.data, ldb, beta, c.ctypes.data, ldc)
        return c
    return _scipy_gemm(a, b, c, trans_a, beta, alpha)


def _scipy_gemm(a, b, c, trans_a, beta, alpha):
    """The fallback. SciPy's gemm is column-major: row-major c = op(a) b is column-major c^T = b^T op(a)^T."""
    from scipy.linalg import blas

    # b.T and a.T are Fortran-ordered views of b (n x k) and a; SciPy copies anything that is not.
    result = blas.get_blas_funcs("gemm", dtype=c.dtype)(alpha, b.T, a.T, beta=beta, c=c.T,
                                                        trans_b=1 if trans_a else 0, overwrite_c=1)
    if not np.shares_memory(result, c):  # c was not a Fortran view SciPy could write in place
        c[...] = result.T
    return c
