"""exp and tanh that LLVM can vectorise, for the float32 loops of the Numba kernels.

Why: inside ``@njit`` a call to ``np.exp``/``np.tanh`` becomes one call to the C library per element
(Numba ships no vector math library unless Intel's SVML is installed), about 10 ns each here, so a
sigmoid over 2^24 values is bound by the library calls, not by memory. Written as plain arithmetic
(a polynomial, a floor and a bit trick for 2^n), the same function is inlined into the loop and
LLVM turns the loop into AVX2 code that handles 8 float32 values per instruction.

    exp(x), tanh(x)      float32 argument: the vectorisable versions below (about 1-2 ulp)
                         float64 argument: np.exp / np.tanh unchanged (the oracle's accuracy)

Use them from ``@njit`` code compiled with ``error_model="numpy"``: Python's error model puts a
zero-division check (a branch) in front of every division, and a branch stops the vectoriser.

IEEE behaviour is kept: exp(NaN) = NaN, exp(+inf) = inf, exp(-inf) = 0, results above float32's range
overflow to inf and tiny ones underflow gradually to 0 (never a warning: nothing here signals).
The polynomials are Cephes' (S. L. Moshier), the same ones many SIMD libraries use.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

_F = np.float32
LOG2E = _F(1.44269504088896341)
LN2_HI = _F(0.693359375)  # ln 2 split in two: n * LN2_HI is exact for |n| < 2^9 ...
LN2_LO = _F(-2.12194440e-4)  # ... and the rest of ln 2 is subtracted separately
EXP_LO = _F(-104.0)  # exp(-104) < the smallest float32 subnormal / 2: rounds to 0
EXP_HI = _F(89.0)  # exp(89) > float32's maximum: overflows to inf
TANH_SMALL = _F(0.625)  # below, tanh's odd polynomial; above, 1 - 2 / (exp(2|x|) + 1)


@intrinsic
def _pow2(typingctx, n):
    """2^n as a float32 for an integral float32 n in [-126, 127]: the exponent bits written directly."""
    if n != types.float32:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        k = builder.fptosi(args[0], i32)
        k = builder.add(k, ir.Constant(i32, 127))
        k = builder.shl(k, ir.Constant(i32, 23))
        return builder.bitcast(k, ir.FloatType())

    return types.float32(types.float32), codegen


@intrinsic
def _select(typingctx, condition, a, b):
    """``a if condition else b`` as one LLVM select: no branch, nothing for the vectoriser to undo."""
    if condition != types.boolean or a != b:
        return None

    def codegen(context, builder, signature, args):
        return builder.select(args[0], args[1], args[2])

    return a(types.boolean, a, b), codegen


def _exp_f32(x):
    # Below EXP_LO (and for NaN) the arithmetic runs on 0 instead and the result is replaced at the end:
    # computing those lanes on the real argument would go through subnormal numbers, which x86 handles
    # in microcode at ~100 cycles each (measured: a causal attention mask, -inf on half the scores, made
    # the softmax 3x slower). A NaN would also be undefined in the integer conversion.
    inside = x >= EXP_LO
    xc = _select(inside, x, _F(0.0))
    xc = _select(xc <= EXP_HI, xc, EXP_HI)
    n = np.floor(xc * LOG2E + _F(0.5))  # x = n ln2 + r, |r| <= ln2 / 2
    r = (xc - n * LN2_HI) - n * LN2_LO
    p = _F(1.9875691500e-4)
    p = p * r + _F(1.3981999507e-3)
    p = p * r + _F(8.3334519073e-3)
    p = p * r + _F(4.1665795894e-2)
    p = p * r + _F(1.6666665459e-1)
    p = p * r + _F(5.0000001201e-1)
    p = p * r * r + r + _F(1.0)  # exp(r)
    # 2^n in two factors so that n in [-150, 129] never leaves the exponent range of one factor:
    # the product then overflows to inf or underflows gradually to 0 exactly as IEEE arithmetic does.
    half = np.floor(n * _F(0.5))
    e = p * _pow2(half) * _pow2(n - half)
    e = _select(inside, e, _F(0.0))  # exp(x) < 2^-150 rounds to 0
    return _select(x == x, e, x)


def _tanh_f32(x):
    a = abs(x)
    s = x * x
    small = ((((_F(-5.70498872745e-3) * s + _F(2.06390887954e-2)) * s - _F(5.37397155531e-2)) * s
              + _F(1.33314422036e-1)) * s - _F(3.33332819422e-1)) * s * x + x
    small = math.copysign(small, x)  # tanh(-0.0) = -0.0 (the sum above would round it to +0.0)
    large = _F(1.0) - _F(2.0) / (exp(a + a) + _F(1.0))  # exp overflows to inf: 1 - 0 = 1
    large = math.copysign(large, x)
    return _select(a < TANH_SMALL, small, large)  # NaN: a < 0.625 is false, large is NaN


@njit(cache=True, inline="always")
def select(condition, a, b):
    """``a if condition else b`` without a branch (one LLVM select), for loops that must vectorise;
    a and b must have the same type."""
    return _select(condition, a, b)


def exp(x):
    """e^x; in @njit code vectorisable for float32 (see the module docstring)."""
    return np.exp(x)


def tanh(x):
    """tanh(x); in @njit code vectorisable for float32 (see the module docstring)."""
    return np.tanh(x)


@overload(exp, inline="always", jit_options={"error_model": "numpy"})
def _exp_overload(x):
    if x == types.float32:
        return _exp_f32
    return lambda x: np.exp(x)


@overload(tanh, inline="always", jit_options={"error_model": "numpy"})
def _tanh_overload(x):
    if x == types.float32:
        return _tanh_f32
    return lambda x: np.tanh(x)


# --------------------------------------------------------------------------- row reductions
# Sums over a row (softmax's normaliser, the dot products of its backward) accumulate in float64 for
# accuracy over long rows, but a float64 running sum fed by float32 terms is a single dependency chain
# the vectoriser will not split. So each block of REDUCE_BLOCK terms is summed in the row's dtype with
# the 'reassoc' flag (LLVM may then keep 8 lanes x 4 partial sums, a few terms each: float32 rounding of
# a sum of ~10 terms, about 1e-7 relative) and the block sums are added in float64. Only these small
# functions carry 'reassoc'; no other fast-math flag is set, so NaN and Inf follow IEEE rules (a NaN
# term makes the sum NaN whatever the order). The sum depends on the machine's vector width in its last
# bits: it is reproducible on one machine, not bit for bit across instruction sets.
REDUCE_BLOCK = 256
_REDUCE = dict(cache=True, error_model="numpy", fastmath={"reassoc"})


@njit(cache=True, error_model="numpy")
def row_max(row):
    """The largest element of a 1-D array (NaN elements are skipped unless the first one is NaN; a
    NaN anywhere still makes the softmax of its row NaN through exp(NaN - max))."""
    m = row[0]
    for j in range(1, row.shape[0]):
        v = row[j]
        m = v if v > m else m
    return m


@njit(**_REDUCE)
def exp_shifted_sum(row, shift, out, zero):
    """out[j] = exp(row[j] - shift); returns sum_j out[j] (float64). ``zero`` is 0 in the row's dtype."""
    n = row.shape[0]
    total = 0.0
    for start in range(0, n, REDUCE_BLOCK):
        part = zero
        for j in range(start, min(n, start + REDUCE_BLOCK)):
            e = exp(row[j] - shift)
            out[j] = e
            part += e
        total += part
    return total


@njit(**_REDUCE)
def exp_shifted_sum_inplace(row, shift, zero):
    """row[j] = exp(row[j] - shift) in place; returns the sum (float64). Two passes, a map then
    ``row_sum``: each loop vectorises on its own, while the exponential and the sum in one in-place loop
    did not (5x slower), and exponentials into a small buffer copied back (the former version) still
    ran at 4.7 ns per value against 1.9 for the two passes (4096 rows of 512 float32)."""
    for j in range(row.shape[0]):
        row[j] = exp(row[j] - shift)
    return row_sum(row, zero)


@njit(**_REDUCE)
def row_sum(row, zero):
    """sum_j row[j] (float64)."""
    n = row.shape[0]
    total = 0.0
    for start in range(0, n, REDUCE_BLOCK):
        part = zero
        for j in range(start, min(n, start + REDUCE_BLOCK)):
            part += row[j]
        total += part
    return total


@njit(**_REDUCE)
def row_dot(a, b, zero):
    """sum_j a[j] * b[j] (float64)."""
    n = a.shape[0]
    total = 0.0
    for start in range(0, n, REDUCE_BLOCK):
        part = zero
        for j in range(start, min(n, start + REDUCE_BLOCK)):
            part += a[j] * b[j]
        total += part
    return total
