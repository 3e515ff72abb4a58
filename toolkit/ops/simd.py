"""Explicit 64-byte vectors for Numba kernels: 16 float32 or 8 float64 lanes, two AVX2 registers.

Why: a register-blocked kernel keeps a tile of results in vector registers while it streams the inputs,
the way BLAS and oneDNN kernels do. Numba gives no vector type, and LLVM's auto-vectoriser does not find
such tiles in scalar loops: accumulating into an output array, LLVM must assume the array may alias the
inputs, and it vectorised LeNet's C3 convolution into 8.8 ms where these vectors give 0.7 ms (2 cores,
float32, forward, batch 128). Written with these intrinsics, a tile is a handful of local variables
that LLVM keeps in registers (mem2reg), and every load, broadcast and multiply-add is one instruction
(two on AVX2, whose registers hold 32 bytes; LLVM splits the 64-byte vectors itself).

    acc = wide_zeros(y)                       # a vector of y's dtype, all lanes 0
    acc = wide_fma(wide_splat(x, i), wide_load(w, j), acc)    # acc += x.flat[i] * w.flat[j : j + L]
    wide_store(y, k, acc)                     # y.flat[k : k + L] = acc

The arrays must be C-contiguous float32/float64 arrays of one dtype; indices are flat element indices.
**Nothing is bounds-checked** (the point is to drop Numba's per-access index arithmetic and its
negative-index wraparound, which cost the C3 forward half its speed): the calling kernel guarantees
every lane it touches exists, from shapes validated in Python before the launch.

``wide_fma`` is ``llvm.fmuladd``: one fused multiply-add where the CPU has FMA (then one rounding, not
two), a multiply and an add elsewhere. Results can therefore differ from NumPy's in the last bit, as
BLAS's do.
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

WIDE_BYTES = 64


class Wide(types.Type):
    """A 64-byte vector of ``dtype`` (float32 or float64) lanes, held in registers."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.lanes = WIDE_BYTES * 8 // dtype.bitwidth
        super().__init__(name=f"Wide({dtype} x {self.lanes})")


@register_model(Wide)
class _WideModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(dmm.lookup(fe_type.dtype).get_value_type(), fe_type.lanes))


def _float_array(arr) -> bool:
    return isinstance(arr, types.Array) and arr.layout == "C" and arr.dtype in (types.float32, types.float64)


def _index(idx) -> bool:
    return isinstance(idx, types.Integer)


def _element_ptr(context, builder, arr_type, arr, idx, idx_type):
    data = context.make_array(arr_type)(context, builder, value=arr).data
    return builder.gep(data, [context.cast(builder, idx, idx_type, types.intp)], inbounds=True)


def _wide_ptr(context, builder, arr_type, arr, idx, idx_type):
    vector = ir.VectorType(context.get_value_type(arr_type.dtype), Wide(arr_type.dtype).lanes)
    return builder.bitcast(_element_ptr(context, builder, arr_type, arr, idx, idx_type), vector.as_pointer())


def _align(arr_type) -> int:
    return arr_type.dtype.bitwidth // 8  # element alignment: flat indices need not be multiples of L


def _splat(builder, scalar, lanes):
    vector = ir.VectorType(scalar.type, lanes)
    one = builder.insert_element(ir.Constant(vector, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, ir.Constant(vector, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))


@intrinsic
def wide_lanes(typingctx, arr):
    """The number of lanes of arr's dtype (16 for float32, 8 for float64): a compile-time constant."""
    if not _float_array(arr):
        return None

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(types.intp), Wide(sig.args[0].dtype).lanes)
    return types.intp(arr), codegen


@intrinsic
def wide_zeros(typingctx, arr):
    """A vector of arr's dtype with every lane 0."""
    if not _float_array(arr):
        return None
    wide = Wide(arr.dtype)

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(wide), None)
    return wide(arr), codegen


@intrinsic
def wide_load(typingctx, arr, idx):
    """arr.flat[idx : idx + L] as one vector."""
    if not (_float_array(arr) and _index(idx)):
        return None

    def codegen(context, builder, sig, args):
        arr_type, idx_type = sig.args
        return builder.load(_wide_ptr(context, builder, arr_type, args[0], args[1], idx_type), align=_align(arr_type))
    return Wide(arr.dtype)(arr, idx), codegen


@intrinsic
def wide_splat(typingctx, arr, idx):
    """arr.flat[idx] in every lane (a broadcast straight from memory)."""
    if not (_float_array(arr) and _index(idx)):
        return None
    wide = Wide(arr.dtype)

    def codegen(context, builder, sig, args):
        arr_type, idx_type = sig.args
        value = builder.load(_element_ptr(context, builder, arr_type, args[0], args[1], idx_type),
                             align=_align(arr_type))
        return _splat(builder, value, wide.lanes)
    return wide(arr, idx), codegen


@intrinsic
def wide_fma(typingctx, a, b, c):
    """a * b + c lane by lane (fused where the CPU has FMA)."""
    if not (isinstance(a, Wide) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        vector = args[0].type
        bits = 32 if sig.args[0].dtype == types.float32 else 64
        fmuladd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3),
                                                 f"llvm.fmuladd.v{vector.count}f{bits}")
        return builder.call(fmuladd, args)
    return c(a, b, c), codegen


def _store_check(arr, idx, val) -> bool:
    return _float_array(arr) and _index(idx) and isinstance(val, Wide) and val.dtype == arr.dtype


@intrinsic
def wide_store(typingctx, arr, idx, val):
    """arr.flat[idx : idx + L] = val."""
    if not _store_check(arr, idx, val):
        return None

    def codegen(context, builder, sig, args):
        arr_type, idx_type, _ = sig.args
        ptr = _wide_ptr(context, builder, arr_type, args[0], args[1], idx_type)
        builder.store(args[2], ptr, align=_align(arr_type))
    return types.void(arr, idx, val), codegen


@intrinsic
def wide_add(typingctx, arr, idx, val):
    """arr.flat[idx : idx + L] += val."""
    if not _store_check(arr, idx, val):
        return None

    def codegen(context, builder, sig, args):
        arr_type, idx_type, _ = sig.args
        ptr = _wide_ptr(context, builder, arr_type, args[0], args[1], idx_type)
        align = _align(arr_type)
        builder.store(builder.fadd(builder.load(ptr, align=align), args[2]), ptr, align=align)
    return types.void(arr, idx, val), codegen


@intrinsic
def wide_add_head(typingctx, arr, idx, val, count):
    """arr.flat[idx + i] += val[i] for the lanes i < count, as ONE full-width load, add and store: the
    lanes from count on add -0.0, which leaves every value as it was (-0.0, +0.0, inf and NaN included).

    So all L elements arr.flat[idx : idx + L] must exist, and no other thread may write the lanes past
    count meanwhile (they are read and written back). Why not a select of old and new, or a masked
    store: LLVM turns either into vmaskmovps, which AMD's cores run as a slow microcoded store (the C3
    dx kernel took 3.8 ms with it, 1.0 ms with this)."""
    if not (_store_check(arr, idx, val) and _index(count)):
        return None

    def codegen(context, builder, sig, args):
        arr_type, idx_type, wide, count_type = sig.args
        bits = arr_type.dtype.bitwidth
        int_vector = ir.VectorType(ir.IntType(bits), wide.lanes)
        lane_ids = ir.Constant(int_vector, list(range(wide.lanes)))
        lane_int = types.int32 if bits == 32 else types.int64
        n = _splat(builder, context.cast(builder, args[3], count_type, lane_int), wide.lanes)
        keep = builder.sext(builder.icmp_signed("<", lane_ids, n), int_vector)  # all ones: add this lane
        minus_zero = ir.Constant(int_vector, [1 << (bits - 1)] * wide.lanes)
        addend_bits = builder.or_(builder.and_(builder.bitcast(args[2], int_vector), keep),
                                  builder.and_(minus_zero, builder.not_(keep)))
        ptr = _wide_ptr(context, builder, arr_type, args[0], args[1], idx_type)
        align = _align(arr_type)
        addend = builder.bitcast(addend_bits, args[2].type)
        builder.store(builder.fadd(builder.load(ptr, align=align), addend), ptr, align=align)
    return types.void(arr, idx, val, count), codegen


@intrinsic
def wide_add_lanes(typingctx, arr, idx, val, count):
    """arr.flat[idx + i] += val[i] for the lanes i < min(count, L), one element at a time: touches no
    element past them (for the end of an array, or of memory another thread owns)."""
    if not (_store_check(arr, idx, val) and _index(count)):
        return None

    def codegen(context, builder, sig, args):
        arr_type, idx_type, wide, count_type = sig.args
        base = _element_ptr(context, builder, arr_type, args[0], args[1], idx_type)
        n = context.cast(builder, args[3], count_type, types.intp)
        align = _align(arr_type)
        for lane in range(wide.lanes):
            with builder.if_then(builder.icmp_signed(">", n, ir.Constant(n.type, lane))):
                ptr = builder.gep(base, [ir.Constant(n.type, lane)], inbounds=True)
                value = builder.extract_element(args[2], ir.Constant(ir.IntType(32), lane))
                builder.store(builder.fadd(builder.load(ptr, align=align), value), ptr, align=align)
    return types.void(arr, idx, val, count), codegen


@intrinsic
def wide_add_f64(typingctx, arr, idx, val):
    """arr.flat[idx : idx + L] += val converted to float64 (arr float64): long sums of float32 vectors
    kept in float64."""
    if not (_float_array(arr) and arr.dtype == types.float64 and _index(idx) and isinstance(val, Wide)):
        return None

    def codegen(context, builder, sig, args):
        arr_type, idx_type, wide = sig.args
        doubles = ir.VectorType(ir.DoubleType(), wide.lanes)
        addend = args[2] if wide.dtype == types.float64 else builder.fpext(args[2], doubles)
        elem = _element_ptr(context, builder, arr_type, args[0], args[1], idx_type)
        ptr = builder.bitcast(elem, doubles.as_pointer())
        builder.store(builder.fadd(builder.load(ptr, align=8), addend), ptr, align=8)
    return types.void(arr, idx, val), codegen


@njit(cache=True, inline="always")
def wide_fma4(a, i0, i1, i2, i3, b, s0, s1, s2, s3):
    """One step of a 4-row register tile: (s_r + a.flat[i_r] * b for r = 0..3), a.flat[i_r] broadcast."""
    return (wide_fma(wide_splat(a, i0), b, s0), wide_fma(wide_splat(a, i1), b, s1),
            wide_fma(wide_splat(a, i2), b, s2), wide_fma(wide_splat(a, i3), b, s3))


@njit(cache=True, inline="always")
def wide_store4(arr, i, stride, s0, s1, s2, s3):
    """A 4-row tile out: arr.flat[i + r*stride : ... + L] = s_r for r = 0..3."""
    wide_store(arr, i, s0)
    wide_store(arr, i + stride, s1)
    wide_store(arr, i + 2 * stride, s2)
    wide_store(arr, i + 3 * stride, s3)
