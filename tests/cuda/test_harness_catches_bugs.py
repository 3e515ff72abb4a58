"""The host harness catches the bugs GPU code really has.

Part 1: deliberately broken copies of the real sources (string edits of activations.cu and common.cuh,
each asserted to apply exactly once) must FAIL the same comparison against the reference that the real
sources pass: an off-by-one index, an off-by-one bound, a removed __syncthreads in the block reduction
(either of its two), a wrong shuffle offset, a removed grid-stride loop.

Part 2: small probe kernels pin down the emulator's semantics: shuffles and votes as CUDA defines
them, poisoned shared memory, dynamic shared memory and its overrun check, guard zones around array
arguments, divergent barriers, deadlocks, strict argument types, launch limits, build failures.
"""

import re

import numpy as np
import pytest

from tests.cuda.conftest import ORDERS, requires_cxx
from tests.helpers import assert_close, random_array, tolerance
from toolkit.cuda import compile_check, sources
from toolkit.cuda.host import harness
from toolkit.cuda.host.harness import HostBuildError, HostKernelError
from toolkit.ops.activations import gpu, reference

pytestmark = requires_cxx

CU_PATH = sources.op_source("activations")
CU_TEXT = CU_PATH.read_text()
COMMON_TEXT = sources.COMMON_HEADER.read_text()


def edited(text: str, old: str, new: str) -> str:
    """``text`` with ``old`` replaced by ``new``; the edit must match exactly once (else the test is void)."""
    assert text.count(old) == 1, f"the edit {old!r} matches {text.count(old)} times, not once"
    return text.replace(old, new)


# Each case: a named activation on a shape chosen to reach the code each bug lives in.
CASES = [("sigmoid", (1025,)), ("relu", (40,)), ("softmax", (5, 1025)), ("log_softmax", (7, 40)),
         ("softmax", (4, 20))]


def failures(module: harness.HostModule) -> list[str]:
    """Every mismatch or harness error of forward and backward, over CASES, in both orders."""
    found = []
    rng = np.random.default_rng(7)
    for order in ORDERS:
        target = harness.target(module, order=order)
        for name, shape in CASES:
            for dtype in (np.float32, np.float64):
                x = random_array(rng, shape, dtype, scale=3.0)
                dy = random_array(rng, shape, dtype)
                params = {"axis": len(shape) - 1} if "softmax" in name else reference.PARAMETERS.get(name, {})
                y_ref, cache_ref = reference.forward(name, x, **params)
                try:
                    y, cache = gpu.forward_on(target, name, x, **params)
                    assert_close(y, y_ref, **tolerance(dtype), name="forward")
                    dx = gpu.backward_on(target, dy, cache)
                    assert_close(dx, reference.backward(dy, cache_ref), **tolerance(dtype), name="backward")
                except (AssertionError, HostKernelError) as exc:
                    found.append(f"{order} {name}{shape} {np.dtype(dtype)}: {exc}")
    return found


BROKEN_CU = {
    "index off by one": ("dx[i] = dy[i] *", "dx[i] = dy[i + 1] *"),
    "bound off by one": ("j < n; j += blockDim.x) yr[j] = tk::exp", "j <= n; j += blockDim.x) yr[j] = tk::exp"),
    "grid-stride over rows removed": (
        "for (long long row = blockIdx.x; row < rows; row += gridDim.x) {  // the whole block",
        "for (long long row = blockIdx.x; row < rows; row += rows) {  // the whole block"),
}
BROKEN_COMMON = {
    "first __syncthreads of the block reduction removed": (
        "__syncthreads();  // all partials written", "/* removed */  // all partials written"),
    "second __syncthreads of the block reduction removed": (
        "__syncthreads();  // all partials read", "/* removed */  // all partials read"),
    "shuffle offset starts at 8 instead of 16": (
        "int offset = kWarpSize / 2;", "int offset = kWarpSize / 4;"),
    "grid-stride loop increment removed": (
        "i < (n); i += ::tk::grid_stride())", "i < (n); i += (n))"),
}
# What the comparison must report for each bug (the harness's message, or a wrong value).
EXPECTED = {
    "index off by one": "NaN pattern differs",                  # reads the poisoned guard after dy
    "bound off by one": "past its end (byte 0 after the last element) of argument 1",  # the last row writes y[n]
    "grid-stride over rows removed": "NaN pattern differs",      # rows past the 3 blocks stay poisoned
    "first __syncthreads of the block reduction removed": "forward",  # a warp reads unwritten partials
    "second __syncthreads of the block reduction removed": "backward",  # the next row overwrites them
    "shuffle offset starts at 8 instead of 16": "differ",
    "grid-stride loop increment removed": "NaN pattern differs",  # elements past 3 blocks never written
}


def test_real_sources_pass_the_comparison(activations_host):
    assert failures(activations_host) == []


@pytest.mark.parametrize("bug", sorted(BROKEN_CU))
def test_broken_kernel_source_fails(bug):
    module = harness.load_source(edited(CU_TEXT, *BROKEN_CU[bug]), name=str(CU_PATH), include_from=CU_PATH)
    found = failures(module)
    assert found, f"the harness missed the bug: {bug}"
    assert any(EXPECTED[bug] in f for f in found), found[:3]


@pytest.mark.parametrize("bug", sorted(BROKEN_COMMON))
def test_broken_common_header_fails(bug):
    module = harness.load("activations", headers={"common.cuh": edited(COMMON_TEXT, *BROKEN_COMMON[bug])})
    found = failures(module)
    assert found, f"the harness missed the bug: {bug}"
    assert any(EXPECTED[bug] in f for f in found), found[:3]


# --------------------------------------------------------------------------- part 2: probe kernels
PROBES = r'''
#include "common.cuh"

// mode 0..3: __shfl_sync, __shfl_up_sync, __shfl_down_sync, __shfl_xor_sync of v = 100 * warp + lane.
template <typename T>
__global__ void shuffles(T* out, int mode, int arg, int width) {
    const int lane = static_cast<int>(threadIdx.x) % 32;
    const T v = T(100 * (static_cast<int>(threadIdx.x) / 32) + lane);
    T r;
    if (mode == 0) r = __shfl_sync(tk::kFullMask, v, arg, width);
    else if (mode == 1) r = __shfl_up_sync(tk::kFullMask, v, static_cast<unsigned>(arg), width);
    else if (mode == 2) r = __shfl_down_sync(tk::kFullMask, v, static_cast<unsigned>(arg), width);
    else r = __shfl_xor_sync(tk::kFullMask, v, arg, width);
    out[threadIdx.x] = r;
}

template <typename T>
__global__ void votes(const T* x, T* out) {
    const int lane = static_cast<int>(threadIdx.x) % 32;
    const int predicate = x[threadIdx.x] > T(0);
    const unsigned ballot = __ballot_sync(tk::kFullMask, predicate);
    const int any = __any_sync(tk::kFullMask, predicate);
    const int all = __all_sync(tk::kFullMask, predicate);
    out[4 * threadIdx.x] = T(__popc(ballot));
    out[4 * threadIdx.x + 1] = T((ballot >> lane) & 1u);
    out[4 * threadIdx.x + 2] = T(any);
    out[4 * threadIdx.x + 3] = T(all);
}

template <typename T>
__global__ void block_sum(const T* x, T* out) {
    const T s = tk::block_all_reduce(x[blockIdx.x * blockDim.x + threadIdx.x], tk::Sum(), T(0));
    if (threadIdx.x == 0) out[blockIdx.x] = s;
}

// Block 0 fills the tile; every other block writes only its slot 0 and reads all of it.
template <typename T>
__global__ void read_shared_before_write(T* out) {
    __shared__ T tile[64];
    if (blockIdx.x == 0 || threadIdx.x == 0) tile[threadIdx.x] = T(1);
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = tile[threadIdx.x];
}

// Thread 0 publishes a value through shared memory; the barrier is optional to show what it prevents.
template <typename T>
__global__ void broadcast_from_thread0(const T* x, T* out, int with_barrier) {
    __shared__ T value;
    if (threadIdx.x == 0) value = x[blockIdx.x];
    if (with_barrier) __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = value;
}

template <typename T>
__global__ void reverse_in_shared(const T* x, T* y, int n, int overrun) {
    TK_DYNAMIC_SHARED(T, buffer);
    const int i = static_cast<int>(threadIdx.x);
    if (i < n) buffer[i + overrun] = x[i];
    __syncthreads();
    if (i < n) y[i] = buffer[n - 1 - i];
}

template <typename T>
__global__ void write_at(T* y, long long index) {
    if (tk::global_thread_index() == 0) y[index] = T(7);
}

template <typename T>
__global__ void atomic_sum(const T* x, T* total, long long n) {
    TK_GRID_STRIDE_LOOP(i, n) { atomicAdd(total, x[i]); }
}

template <typename T>
__global__ void coordinates(T* out) {
    const long long block = blockIdx.x + gridDim.x * (blockIdx.y + static_cast<long long>(gridDim.y) * blockIdx.z);
    const long long thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const long long threads = static_cast<long long>(blockDim.x) * blockDim.y * blockDim.z;
    out[block * threads + thread] = T(1000 * block + thread);
}

template <typename T>
__global__ void early_return_then_sync(T* out, int n) {
    if (static_cast<int>(threadIdx.x) >= n) return;
    __syncthreads();
    out[threadIdx.x] = T(1);
}

template <typename T>
__global__ void shuffle_in_branch(T* out) {
    const int lane = static_cast<int>(threadIdx.x) % 32;
    if (lane < 16) out[lane] = __shfl_down_sync(tk::kFullMask, T(lane), 1);
}

template <typename T>
__global__ void shuffle_then_barrier_deadlock(T* out) {
    T v = T(threadIdx.x);
    if (threadIdx.x >= 32 && threadIdx.x < 48) v = __shfl_xor_sync(tk::kFullMask, v, 1);
    __syncthreads();
    out[threadIdx.x] = v;
}

template <typename T>
__global__ void two_barriers(T* out) {
    if (threadIdx.x < 16) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = T(1);
}

template <typename T>
__global__ void mask_without_caller(T* out) {
    out[threadIdx.x] = __shfl_sync(1u, T(threadIdx.x), 0);
}

template <typename T>
__global__ void traps(T* out) {
    if (threadIdx.x == 3) __trap();
    out[threadIdx.x] = T(1);
}
'''


@pytest.fixture(scope="module")
def probes():
    return harness.load_source(PROBES, name="probes.cu")


def test_probe_kernels_are_valid_cuda():
    # The probes are real CUDA: NVRTC compiles them without a warning (the harness tests CUDA, not a dialect).
    _, lowered, log = compile_check.compile_source(PROBES, name="probes.cu", include_dirs=[sources.CUDA_DIR],
                                                    arch="compute_90", name_expressions=sources.name_expressions(PROBES))
    assert log == "" and len(lowered) == 2 * len(sources.kernels(PROBES))


def cuda_shuffle(mode: int, lane: int, arg: int, width: int) -> int:
    """The source lane of a shuffle, as the CUDA Programming Guide defines it."""
    base = lane - lane % width
    if mode == 0:
        return base + arg % width
    if mode == 1:
        return lane - arg if lane - base >= arg else lane
    if mode == 2:
        return lane + arg if lane - base + arg < width else lane
    j = lane ^ arg
    return j if j < base + width else lane  # later segments are out of reach


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("mode,arg,width", [(0, 5, 32), (0, 37, 32), (0, 3, 8), (1, 1, 32), (1, 3, 8),
                                            (2, 1, 32), (2, 16, 32), (2, 3, 8), (3, 1, 32), (3, 16, 32),
                                            (3, 4, 4), (3, 8, 4)])
def test_shuffles_follow_cuda_semantics(probes, order, mode, arg, width):
    out = np.zeros(64)
    probes.with_order(order).get_function("shuffles<double>")((1,), (64,), (out, np.int32(mode), np.int32(arg),
                                                                            np.int32(width)))
    expected = [100 * (t // 32) + cuda_shuffle(mode, t % 32, arg, width) for t in range(64)]
    assert out.tolist() == expected


def test_votes(probes):
    x = np.where(np.arange(64) % 3 == 0, 1.0, -1.0)
    x[32:] = 1.0  # warp 1: all true
    out = np.zeros(4 * 64)
    probes.get_function("votes<double>")((1,), (64,), (x, out))
    out = out.reshape(64, 4)
    assert out[:32, 0].tolist() == [11] * 32 and out[32:, 0].tolist() == [32] * 32
    assert out[:, 1].tolist() == (x > 0).astype(float).tolist()
    assert out[:, 2].tolist() == [1] * 64
    assert out[:32, 3].tolist() == [0] * 32 and out[32:, 3].tolist() == [1] * 32


@pytest.mark.parametrize("threads", [32, 64, 96, 1024])
def test_block_reduction_with_full_warps(probes, threads, rng):
    x = random_array(rng, (2 * threads,))
    out = np.zeros(2)
    probes.get_function("block_sum<double>")((2,), (threads,), (x, out))
    assert_close(out, x.reshape(2, threads).sum(axis=1), atol=1e-12, rtol=1e-12, name="block sum")


def test_partial_warp_in_a_block_reduction_is_reported(probes):
    x, out = np.ones(48), np.zeros(1)
    with pytest.raises(HostKernelError, match=r"names lanes that do not exist: warp 1 has only 16 threads"):
        probes.get_function("block_sum<double>")((1,), (48,), (x, out))


def test_shared_memory_is_poisoned_before_every_block(probes):
    out = np.zeros(2 * 64)
    probes.get_function("read_shared_before_write<double>")((2,), (64,), (out,))
    assert (out[:64] == 1).all()                          # block 0 wrote every slot
    assert out[64] == 1 and np.isnan(out[65:]).all()     # block 1 sees NaN, not block 0's leftovers


def test_a_race_that_only_the_reverse_order_shows(probes):
    # Why every check runs in both orders: run first, thread 0 publishes before anyone reads, which hides
    # the missing barrier; run last, the others read the poisoned slot first.
    x = np.array([5.0, 6.0])
    for order, with_barrier, expect_nan in [("forward", 1, False), ("reverse", 1, False),
                                            ("forward", 0, False), ("reverse", 0, True)]:
        out = np.zeros(2 * 64)
        probes.with_order(order).get_function("broadcast_from_thread0<double>")(
            (2,), (64,), (x, out, np.int32(with_barrier)))
        if expect_nan:
            assert np.isnan(out[1:64]).all() and out[0] == 5.0
        else:
            assert out.tolist() == [5.0] * 64 + [6.0] * 64, (order, with_barrier)


def test_each_library_keeps_its_own_shared_memory(probes):
    # Two builds of the same kernels in one process (a real and a broken copy, in practice) must not share
    # __shared__ arrays or runtime state: else one would poison the other's arrays and not its own.
    twin = harness.load_source(PROBES + "\n// a second build\n", name="probes_twin.cu")
    assert twin.path != probes.path
    for module in (probes, twin, probes):
        out = np.zeros(2 * 64)
        module.get_function("read_shared_before_write<double>")((2,), (64,), (out,))
        assert out[64] == 1 and np.isnan(out[65:]).all()


def test_dynamic_shared_memory_and_its_overrun(probes):
    x = np.arange(40.0)
    y = np.zeros(40)
    kernel = probes.get_function("reverse_in_shared<double>")
    kernel((1,), (64,), (x, y, np.int32(40), np.int32(0)), shared_mem=40 * 8)
    assert y.tolist() == x[::-1].tolist()
    with pytest.raises(HostKernelError, match="wrote past the end of its 320 bytes of dynamic shared memory"):
        kernel((1,), (64,), (x, y, np.int32(40), np.int32(1)), shared_mem=40 * 8)


@pytest.mark.parametrize("index,words", [(5, None), (-1, "before its start"), (5 + 1, "past its end"),
                                         (5 + 30, "past its end")])
def test_guard_zones_catch_out_of_bounds_writes(probes, index, words):
    y = np.zeros(6)
    kernel = probes.get_function("write_at<double>")
    if words is None:
        kernel((1,), (32,), (y, np.int64(index)))
        assert y[5] == 7
    else:
        with pytest.raises(HostKernelError, match=f"wrote {words} .*argument 0"):
            kernel((1,), (32,), (y, np.int64(index)))
        assert (y == 0).all()  # a failed launch leaves the arrays untouched


def test_atomic_add_over_the_grid(probes, rng):
    x = random_array(rng, (1000,))
    total = np.zeros(1)
    probes.get_function("atomic_sum<double>")((3,), (128,), (x, total, np.int64(x.size)))
    assert_close(total, [x.sum()], atol=1e-10, rtol=1e-12, name="atomicAdd total")


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("grid,block", [((2, 3, 1), (4, 2, 2)), ((1, 1, 2), (32, 1, 1)), ((3,), (5, 3))])
def test_multi_dimensional_grids_and_blocks(probes, order, grid, block):
    blocks = int(np.prod(grid))
    threads = int(np.prod(block))
    out = np.zeros(blocks * threads)
    probes.with_order(order).get_function("coordinates<double>")(grid, block, (out,))
    assert out.tolist() == [1000 * b + t for b in range(blocks) for t in range(threads)]


@pytest.mark.parametrize("order", ORDERS)
def test_divergent_barrier_is_reported(probes, order):
    kernel = probes.with_order(order).get_function("early_return_then_sync<double>")
    kernel((1,), (32,), (np.zeros(32), np.int32(32)))  # every thread reaches it: fine
    with pytest.raises(HostKernelError, match=r"__syncthreads\(\) at probes.cu:\d+ was reached by 20 of 32 threads"):
        kernel((1,), (32,), (np.zeros(32), np.int32(20)))


@pytest.mark.parametrize("order", ORDERS)
def test_shuffle_with_exited_lanes_is_reported(probes, order):
    with pytest.raises(HostKernelError, match="returned"):
        probes.with_order(order).get_function("shuffle_in_branch<double>")((1,), (32,), (np.zeros(32),))


def test_deadlock_is_reported(probes):
    with pytest.raises(HostKernelError, match=r"deadlock: .*warp 1: lanes 0x0000ffff wait at __shfl_xor_sync "
                                              r"\(probes.cu:\d+\) for lanes 0xffff0000; 48 threads wait at __syncthreads"):
        probes.get_function("shuffle_then_barrier_deadlock<double>")((1,), (64,), (np.zeros(64),))


def test_different_barriers_are_reported(probes):
    with pytest.raises(HostKernelError, match=r"different __syncthreads\(\)"):
        probes.get_function("two_barriers<double>")((1,), (32,), (np.zeros(32),))


def test_mask_without_the_caller_is_reported(probes):
    with pytest.raises(HostKernelError, match="does not include the calling lane 1"):
        probes.get_function("mask_without_caller<double>")((1,), (32,), (np.zeros(32),))


def test_trap_is_reported(probes):
    with pytest.raises(HostKernelError, match=r"__trap\(\) was called.*block \(0,0,0\)"):
        probes.get_function("traps<float>")((1,), (32,), (np.zeros(32, np.float32),))


# --------------------------------------------------------------------------- arguments and launches
def test_arguments_are_checked_like_a_strict_raw_kernel(probes):
    kernel = probes.get_function("write_at<float>")
    y = np.zeros(4, np.float32)
    with pytest.raises(TypeError, match=r"argument 1 \(int64 index\): .*Python int .*64-bit long long"):
        kernel((1,), (32,), (y, 2))
    with pytest.raises(TypeError, match=r"argument 1 \(int64 index\): expected a NumPy scalar of dtype int64; got int32"):
        kernel((1,), (32,), (y, np.int32(2)))
    with pytest.raises(TypeError, match=r"argument 0 \(float32\* y\): expected an array of dtype float32; got float64"):
        kernel((1,), (32,), (np.zeros(4), np.int64(2)))
    with pytest.raises(TypeError, match=r"takes 2 arguments \(float32\* y, int64 index\); got 1"):
        kernel((1,), (32,), (y,))
    with pytest.raises(ValueError, match="not C-contiguous; a RawKernel ignores strides"):
        kernel((1,), (32,), (np.zeros(8, np.float32)[::2], np.int64(2)))
    read_only = np.zeros(4, np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        kernel((1,), (32,), (read_only, np.int64(2)))
    with pytest.raises(KeyError, match="no kernel instantiation 'write_at<int>'"):
        probes.get_function("write_at<int>")


def test_overlapping_and_aliased_arguments(probes):
    x = np.arange(8.0)
    with pytest.raises(ValueError, match="overlaps another argument"):
        probes.get_function("atomic_sum<double>")((1,), (32,), (x[:6], x[4:5], np.int64(6)))
    # The same array twice is one buffer (in-place kernels): total = x[0] + sum(x[0:1]) seen through it.
    one = np.array([3.0])
    probes.get_function("atomic_sum<double>")((1,), (32,), (one, one, np.int64(1)))
    assert one[0] == 6.0


@pytest.mark.parametrize("grid,block,shared,words", [
    ((0,), (32,), 0, "must be positive"),
    ((1,), (1025,), 0, "exceeds 1024 threads"),
    ((1,), (32, 1, 65), 0, "exceeds 1024 threads"),
    ((1, 65536), (32,), 0, "exceeds"),
    ((1,), (32,), 48 * 1024 + 1, "too much dynamic shared memory"),
])
def test_launch_limits(probes, grid, block, shared, words):
    with pytest.raises(HostKernelError, match=words):
        probes.get_function("write_at<double>")(grid, block, (np.zeros(2), np.int64(0)), shared_mem=shared)


def test_build_failures_are_reported():
    with pytest.raises(HostBuildError, match="error"):
        harness.load_source("template <typename T>\n__global__ void k(T* y) { y[0] = undefined_name; }\n",
                            name="broken.cu")
    with pytest.raises(HostBuildError, match="unused"):  # host warnings are errors too
        harness.load_source("template <typename T>\n__global__ void k(T* y) { int unused = 1; y[0] = T(0); }\n",
                            name="warns.cu")
    with pytest.raises(ValueError, match=re.escape("a kernel must be 'template <typename T> __global__")):
        harness.load_source('extern "C" __global__ void k(float* y) { y[0] = 0; }\n', name="plain.cu")
