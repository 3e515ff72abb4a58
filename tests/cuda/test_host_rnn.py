"""rnn.cu (and toolkit/cuda/gemm.cuh) executed on the CPU by the host harness, through gpu.py's own launch code, vs the
NumPy reference: forward (with and without read-out) and BPTT, float32 and float64.

Shapes hit every branch: N = 1 and T = 1; odd D and H; H not a multiple of the 32-wide step tile (35, 66)
and of the 64-wide product tile (66, 70); N > 32 (two step tile-rows) and N*T > 64 (two product
tile-rows); more tiles than the 3 blocks of a capped grid (grid-stride loops loop); D = 70, so x W_xh has
5 k slices and dx two column tiles; N*T = 264 rows, so the weight gradients are split-k products (two
slices, summed in order) and db_h, db_y two-chunk column sums. Each check runs under three schedules:
threads and blocks in forward and in reverse order with the grid capped at 3 blocks, and forward with an
uncapped grid.

Tolerance: the results are compared with the reference evaluated in float64 on the same inputs, so only
the kernels' rounding is measured (not the float32 reference's own), with tests/helpers.tolerance(dtype)
whose atol is scaled by the array's largest magnitude (at least 1): a weight gradient sums N*T products
and its small elements are differences of large ones, so an absolute error relative to the array is the
meaningful bound (float32: 1e-5 of max|value| + 1e-4 relative; float64: 1e-12 and 1e-10).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.cuda import fakes
from tests.cuda.conftest import host_build, load_edited, requires_cxx, scheduled_targets
from tests.helpers import assert_close, random_array, tolerance
from tests.ops.test_rnn import make_inputs
from toolkit.cuda import gemm, launch, reduce, sources
from toolkit.cuda.host import harness
from toolkit.ops.rnn import gpu, reference

pytestmark = requires_cxx

GRAD_NAMES = ("dx", "dh0", "dW_xh", "dW_hh", "db_h", "dW_hy", "db_y")
# (N, T, D, H, O); O None = no read-out.
SHAPES = [
    (1, 1, 1, 1, 1),      # one of everything: every tile is nearly all padding
    (1, 1, 3, 5, None),   # T = 1 (the only step is the first and the last), no read-out
    (3, 4, 5, 7, 3),      # odd sizes, all inside one tile
    (2, 3, 70, 3, 2),     # D = 70: 5 k slices in x W_xh, dx has 2 column tiles of 64
    (33, 3, 5, 35, 2),    # N > 32, H = 35 > 32: 4 step tiles (> 3 blocks), N*T = 99: 2 product tile-rows
    (33, 8, 3, 66, 4),    # N*T = 264: split-k weight gradients, 2-chunk column sums; H = 66 > 64
]


rnn_host = host_build("rnn")
target = scheduled_targets("rnn_host")


def upcast(args):
    return {k: None if v is None else v.astype(np.float64) for k, v in args.items()}


def scaled_tolerance(expected, dtype):
    tol = tolerance(dtype)
    scale = max(1.0, float(np.nanmax(np.abs(expected), initial=0.0)))
    return dict(atol=tol["atol"] * scale, rtol=tol["rtol"])


def assert_matches(ours, expected, dtype, name):
    if expected is None:
        assert ours is None, f"{name}: expected None, got an array"
        return
    assert ours.dtype == dtype and ours.shape == expected.shape, f"{name}: {ours.dtype} {ours.shape}"
    assert_close(ours, expected, **scaled_tolerance(expected, dtype), name=name)


def check_rnn(target, args, dy, dh):
    """gpu.py's forward and backward on ``target`` against the float64 reference on the same inputs."""
    dtype = args["x"].dtype
    y, h, cache = gpu.forward_on(target, **args)
    y_ref, h_ref, cache_ref = reference.forward(**upcast(args))
    assert_matches(h, h_ref, dtype, "h")
    assert_matches(y, y_ref, dtype, "y")
    assert type(cache) is reference.RNNCache
    assert all(getattr(cache, f) is args[f] for f in ("x", "h0", "W_xh", "W_hh", "b_h", "W_hy", "b_y"))
    assert cache.h is h
    grads = gpu.backward_on(target, dy, dh, cache)
    up = lambda a: None if a is None else a.astype(np.float64)  # noqa: E731
    expected = reference.backward(up(dy), up(dh), cache_ref)
    for name, ours, ref in zip(GRAD_NAMES, grads, expected):
        assert_matches(ours, ref, dtype, name)
    return (y, h, *grads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_rnn_kernels_match_reference(target, shape, dtype, rng):
    N, T, D, H, O = shape
    args = make_inputs(rng, N, T, D, H, O, dtype)
    dy = None if O is None else random_array(rng, (N, T, O), dtype)
    check_rnn(target, args, dy, random_array(rng, (N, T, H), dtype))


CASES = ["dy only", "dh only", "no read-out", "read-out without bias", "dh only with read-out"]


@pytest.mark.parametrize("case", CASES)
def test_backward_variants_match_reference(target, case, rng):
    O = None if case == "no read-out" else 2
    args = make_inputs(rng, 3, 4, 2, 5, O, readout_bias=case != "read-out without bias")
    dy = random_array(rng, (3, 4, 2)) if case in ("dy only", "read-out without bias") else None
    dh = None if dy is not None else random_array(rng, (3, 4, 5))
    _, _, dx, dh0, dW_xh, dW_hh, db_h, dW_hy, db_y = check_rnn(target, args, dy, dh)
    if case == "no read-out":
        assert dW_hy is None and db_y is None
    if case == "read-out without bias":
        assert dW_hy is not None and db_y is None
    if case == "dh only with read-out":  # y does not reach the loss: exactly zero gradient, as the reference
        assert not dW_hy.any() and not db_y.any()


def test_caches_are_interchangeable_with_the_cpu(target, rng):
    # The reference's cache (NumPy arrays, the CPU layout) drives the GPU backward and vice versa.
    args = make_inputs(rng, 3, 5, 4, 6, 2)
    dy, dh = random_array(rng, (3, 5, 2)), random_array(rng, (3, 5, 6))
    _, _, cache_ref = reference.forward(**args)
    _, _, cache_gpu = gpu.forward_on(target, **args)
    for name, a, b in zip(reference.RNNCache._fields, cache_gpu, cache_ref):
        assert_close(a, b, **tolerance(np.float64), name=f"cache.{name}")
    expected = reference.backward(dy, dh, cache_ref)
    for name, a, b in zip(GRAD_NAMES, gpu.backward_on(target, dy, dh, cache_ref), expected):
        assert_close(a, b, **tolerance(np.float64), name=f"{name} from the reference's cache")
    for name, a, b in zip(GRAD_NAMES, reference.backward(dy, dh, cache_gpu), expected):
        assert_close(a, b, **tolerance(np.float64), name=f"{name} of the reference from the GPU cache")


def test_results_do_not_depend_on_the_schedule(rnn_host, rng):
    # Deterministic by design (no atomics; fixed tile, split and chunk assignment): the same bits for any
    # thread order and grid cap, split-k included (N*T = 264).
    args = make_inputs(rng, 33, 8, 3, 66, 4, np.float32)
    dy, dh = random_array(rng, (33, 8, 4), np.float32), random_array(rng, (33, 8, 66), np.float32)
    runs = []
    for order, blocks in [("forward", 1), ("reverse", 2), ("forward", 1 << 20)]:
        target = harness.target(rnn_host, order=order, max_grid_blocks=blocks)
        y, h, cache = gpu.forward_on(target, **args)
        runs.append((y, h, *gpu.backward_on(target, dy, dh, cache)))
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert np.array_equal(a, b)


# --- the product, the column sums and the shift on their own (every operand layout) ---------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("a_t,b_t", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (70, 65, 17), (3, 130, 40), (5, 4, 300)])
def test_matmul_every_layout(target, m, n, k, a_t, b_t, dtype, rng):
    a = random_array(rng, (k, m) if a_t else (m, k), dtype)
    b = random_array(rng, (n, k) if b_t else (k, n), dtype)
    bias, addend = random_array(rng, (n,), dtype), random_array(rng, (m, n), dtype)
    op_a, op_b = (a.T if a_t else a), (b.T if b_t else b)
    exact = op_a.astype(np.float64) @ op_b.astype(np.float64)
    lda, ldb = a.shape[1], b.shape[1]
    for extra in ({}, {"bias": bias}, {"addend": addend}):
        out = gemm.matmul_on(target, a, b, m, n, k, lda=lda, ldb=ldb, a_transposed=a_t, b_transposed=b_t, **extra)
        expected = exact + extra.get("bias", 0.0) + extra.get("addend", 0.0)
        # k products in any order: within (k + 1) eps sum|a b| of the exact value, here per element
        bound = (k + 2) * float(np.finfo(dtype).eps) * (np.abs(op_a) @ np.abs(op_b) + np.abs(expected))
        assert out.dtype == dtype
        assert_close(out, expected, atol=bound, rtol=0, name=f"matmul {sorted(extra)}")


def test_split_k_depends_on_the_shape_only():
    assert gemm.split_k(64, 64, 127) == (1, 127)  # too shallow to split
    assert gemm.split_k(5, 4, 300) == (2, 160)  # one tile, k = 300: 2 slices of 10 k steps
    assert gemm.split_k(66, 66, 264) == (2, 144)  # dW_hh of SHAPES' last entry
    assert gemm.split_k(512, 512, 6400) == (2, 3200)  # dW_hh of N = 64, T = 100, H = 512: 64 tiles x 2
    assert gemm.split_k(256, 256, 6400) == (8, 800)  # ... H = 256: 16 tiles x 8
    assert gemm.split_k(1024, 1024, 10**6) == (1, 10**6)  # 256 tiles: enough blocks without splitting
    splits, per = gemm.split_k(3, 2, 10**5)
    assert splits == gemm.MAX_SPLITS and per % gemm.TILE_K == 0 and (splits - 1) * per < 10**5 <= splits * per


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_with_shallow_forced_splits(target, monkeypatch, dtype, rng):
    # k = 65 in 5 slices of 16 (the last 1 deep), bias and addend added once, in the slice sum.
    monkeypatch.setattr(gemm, "SPLIT_MIN_DEPTH", 13)
    assert gemm.split_k(33, 17, 65) == (5, 16)
    a, b = random_array(rng, (33, 65), dtype), random_array(rng, (65, 17), dtype)
    bias, addend = random_array(rng, (17,), dtype), random_array(rng, (33, 17), dtype)
    out = gemm.matmul_on(target, a, b, 33, 17, 65, lda=65, ldb=17, bias=bias, addend=addend)
    expected = a.astype(np.float64) @ b + bias + addend
    bound = 67 * float(np.finfo(dtype).eps) * (np.abs(a) @ np.abs(b) + np.abs(expected))
    assert_close(out, expected, atol=bound, rtol=0, name="split-k matmul")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_column_sums_with_many_chunks(target, monkeypatch, dtype, rng):
    monkeypatch.setattr(reduce, "SUM_ROWS_PER_CHUNK", 4)  # 37 rows -> 10 chunks (the last of 1 row) x 3 groups
    assert reduce.column_sum_chunks(37) == (4, 10)
    x = random_array(rng, (37, 70), dtype)
    exact = x.astype(np.float64).sum(axis=0)
    # float64 partial sums (error at most rows eps64 sum|x|, like the exact reference's), rounded once to dtype
    bound = float(np.finfo(dtype).eps) * np.abs(exact) + 2 * 37 * float(np.finfo(np.float64).eps) * np.abs(x).sum(0)
    assert_close(reduce.column_sums_on(target, x), exact, atol=bound, rtol=0, name="column sums")


def test_shift_states(target, rng):
    h0, h = random_array(rng, (3, 4)), random_array(rng, (3, 5, 4))
    previous = gemm.shift_states_on(target, h0, h)
    assert np.array_equal(previous, np.concatenate([h0[:, None], h[:, :-1]], axis=1))


# --- numerical behaviour ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturated_inputs_stay_finite(target, dtype, rng):
    args = make_inputs(rng, 2, 4, 3, 5, 2, dtype)
    args["x"] = np.array([-1e4, 1e4], dtype=dtype)[:, None, None] * np.ones((2, 4, 3), dtype)
    y, h, cache = gpu.forward_on(target, **args)
    grads = gpu.backward_on(target, np.ones_like(y), np.ones_like(h), cache)
    assert np.all(np.abs(h) <= 1) and np.all(np.isfinite(y))
    assert all(np.all(np.isfinite(g)) for g in grads)
    assert_matches(h, reference.forward(**upcast(args))[1], dtype, "saturated h")


def test_nan_and_inf_propagate_like_the_reference(target, rng):
    args = make_inputs(rng, 3, 4, 2, 3, 2)
    args["x"][1, 2, 0] = np.nan
    args["x"][2, 1, 1] = np.inf
    y, h, cache = gpu.forward_on(target, **args)
    assert np.isnan(h[1, 2:]).all() and np.isfinite(h[1, :2]).all()  # the state carries NaN onward
    assert np.isfinite(h[0]).all() and np.isfinite(h[2]).all()  # tanh(+-inf) = +-1, other rows untouched
    y_ref, h_ref, cache_ref = reference.forward(**args)
    assert_close(h, h_ref, atol=1e-12, rtol=1e-10, name="h with NaN/Inf")
    assert_close(y, y_ref, atol=1e-12, rtol=1e-10, name="y with NaN/Inf")
    dy, dh = np.ones_like(y), np.ones_like(h)
    with np.errstate(invalid="ignore"):  # NaN * 0 in the reference is NaN by IEEE rules
        expected = reference.backward(dy, dh, cache_ref)
    for name, a, b in zip(GRAD_NAMES, gpu.backward_on(target, dy, dh, cache), expected):
        assert_close(a, b, atol=1e-12, rtol=1e-10, name=f"{name} with NaN/Inf")


def test_launch_math_exercised_by_these_tests():
    """The shapes above really cover what the module docstring says (guards against a silent change)."""
    assert (gemm.STEP_TILE, gemm.WIDE_TILE, gemm.TILE_K, harness.HOST_MAX_GRID_BLOCKS) == (32, 64, 16, 3)
    fake = launch.Target("probe", np, lambda e: None, max_grid_blocks=3)
    assert gemm.step_grid(fake, 33, 35) == ((3,), (256,))  # 4 step tiles on 3 blocks: grid-strided
    assert 35 % gemm.STEP_TILE and 66 % gemm.WIDE_TILE and 70 % gemm.WIDE_TILE and 70 > 4 * gemm.TILE_K
    assert gemm.split_k(66, 66, 33 * 8)[0] == 2 and gemm.split_k(66, 4, 33 * 8)[0] == 2  # dW_hh and dW_hy split
    assert reduce.column_sum_chunks(33 * 8) == (256, 2)
    assert reduce.column_sum_chunks(10**6) == (977, 1024)  # chunks grow: the last pass adds at most 1024 per column
    text = (sources.CUDA_DIR / "gemm.cuh").read_text()
    assert "using StepTiling = Tiling<32, 32, 16, 2, 2>;" in text
    assert "using WideTiling = Tiling<64, 64, 16, 4, 4>;" in text
    assert "constexpr int kThreads = 256;" in text


# --- the tests can fail: broken copies of the real sources are caught ---------------------------------------
MUTATIONS = {
    "slice read before it is complete": "__syncthreads();  // the slice is complete before anyone multiplies it",
    "slice overwritten while being read": "__syncthreads();  // everyone has read the slice before the next one",
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_a_missing_barrier_in_the_product_is_caught(mutation, rng):
    broken = load_edited("rnn", MUTATIONS[mutation], "// " + MUTATIONS[mutation], header="gemm.cuh")
    args = make_inputs(rng, 3, 4, 40, 35, 2)  # D = 40 and H = 35: products of several k slices
    dy, dh = random_array(rng, (3, 4, 2)), random_array(rng, (3, 4, 35))
    for order in ("forward", "reverse"):
        with pytest.raises((AssertionError, harness.HostKernelError)):
            check_rnn(harness.target(broken, order=order), args, dy, dh)


# --- property-based: any small shape, any schedule -------------------------------------------------------------
dims = st.integers(1, 40)


@settings(max_examples=15)
@given(N=dims, T=st.integers(1, 6), D=dims, H=dims, O=st.none() | st.integers(1, 5), bias=st.booleans(),
       order=st.sampled_from(["forward", "reverse"]), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16))
def test_property_kernels_match_reference(rnn_host, N, T, D, H, O, bias, order, dtype, seed):
    rng = np.random.default_rng(seed)
    args = make_inputs(rng, N, T, D, H, O, dtype, readout_bias=bias)
    dy = None if O is None else random_array(rng, (N, T, O), dtype)
    check_rnn(harness.target(rnn_host, order=order), args, dy, random_array(rng, (N, T, H), dtype))


# --- the public CuPy path, wired to the host harness through a fake CuPy ------------------------------------
def test_public_gpu_path_wiring(fake_cupy, rng):
    args = make_inputs(rng, 3, 4, 5, 7, 2)
    dy, dh = random_array(rng, (3, 4, 2)), random_array(rng, (3, 4, 7))
    y, h, cache = gpu.forward(**args)
    y_ref, h_ref, cache_ref = reference.forward(**args)
    assert_close(h, h_ref, **tolerance(np.float64), name="h")
    assert_close(y, y_ref, **tolerance(np.float64), name="y")
    for name, a, b in zip(GRAD_NAMES, gpu.backward(dy, dh, cache), reference.backward(dy, dh, cache_ref)):
        assert_close(a, b, **tolerance(np.float64), name=name)
    fakes.assert_compiled_once(fake_cupy, "rnn")
