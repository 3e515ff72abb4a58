"""lstm.cu (and toolkit/cuda/gemm.cuh, shared with the RNN) executed on the CPU by the host harness, through
gpu.py's own launch code, vs the NumPy reference: forward and BPTT, float32 and float64, with dh, dc_last or
both.

Shapes hit every branch: N = 1 and T = 1; odd D and H; H = 9 and 17, not multiples of the 8 hidden units
of a fused forward tile (whose four gate blocks then straddle the end of each gate's columns) nor of the
32-wide backward step tile; H = 35: 5 forward unit tiles and 2 backward tiles; N = 33 > 32 (two step
tile-rows) with more tiles than the 3 blocks of a capped grid; D = 70, so x W has 5 k slices and dx two
column tiles; N*T = 264 rows, so dW, dU are split-k products and db a two-chunk column sum. Each check runs
under three schedules: threads and blocks in forward and in reverse order with the grid capped at 3
blocks, and forward with an uncapped grid.

Tolerance (as test_host_rnn.py): against the reference evaluated in float64 on the same inputs, with
tests/helpers.tolerance(dtype) whose atol is scaled by the array's largest magnitude (at least 1).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.cuda import fakes
from tests.cuda.conftest import host_build, load_edited, requires_cxx, scheduled_targets
from tests.helpers import assert_close, random_array, tolerance
from tests.ops.test_lstm import make_inputs
from toolkit.cuda import gemm, launch, reduce, sources
from toolkit.cuda.host import harness
from toolkit.ops.lstm import gpu, reference

pytestmark = requires_cxx

GRAD_NAMES = ("dx", "dh0", "dc0", "dW", "dU", "db")
# (N, T, D, H)
SHAPES = [
    (1, 1, 1, 1),     # one of everything: the four gates of the only unit sit 1 column apart
    (1, 1, 3, 5),     # T = 1: the only step reads h0, c0 and dc_last
    (3, 4, 5, 7),     # odd sizes, one tile
    (2, 3, 70, 3),    # D = 70: 5 k slices in x W, dx has 2 column tiles of 64
    (33, 3, 5, 9),    # N > 32, H = 9: 2 x 2 forward tiles (> 3 blocks), the second holding 1 unit
    (3, 2, 4, 35),    # H = 35: 5 forward unit tiles, 2 backward tiles, 4H = 140: 3 product column tiles
    (33, 8, 3, 17),   # N*T = 264: split-k dW and dU, a 2-chunk column sum for db
]
UPSTREAM = ["dh and dc_last", "dh only", "dc_last only"]


lstm_host = host_build("lstm")
target = scheduled_targets("lstm_host")


def upstream(rng, N, T, H, dtype, case):
    dh = None if case == "dc_last only" else random_array(rng, (N, T, H), dtype)
    dc_last = None if case == "dh only" else random_array(rng, (N, H), dtype)
    return dh, dc_last


def up(a):
    return None if a is None else a.astype(np.float64)


def assert_matches(ours, expected, dtype, name):
    assert ours.dtype == dtype and ours.shape == expected.shape, f"{name}: {ours.dtype} {ours.shape}"
    tol = tolerance(dtype)
    scale = max(1.0, float(np.nanmax(np.abs(expected), initial=0.0)))
    assert_close(ours, expected, atol=tol["atol"] * scale, rtol=tol["rtol"], name=name)


def check_lstm(target, args, dh, dc_last):
    """gpu.py's forward and backward on ``target`` against the float64 reference on the same inputs."""
    dtype = args["x"].dtype
    h, c, cache = gpu.forward_on(target, **args)
    h_ref, c_ref, cache_ref = reference.forward(**{k: up(v) for k, v in args.items()})
    assert_matches(h, h_ref, dtype, "h")
    assert_matches(c, c_ref, dtype, "c")
    assert type(cache) is reference.LSTMCache
    assert all(getattr(cache, f) is args[f] for f in ("x", "h0", "c0", "W", "U", "b"))
    assert cache.h is h and cache.c is c
    assert_matches(cache.gates, cache_ref.gates, dtype, "gates")
    grads = gpu.backward_on(target, dh, cache, dc_last)
    for name, ours, ref in zip(GRAD_NAMES, grads, reference.backward(up(dh), cache_ref, up(dc_last))):
        assert_matches(ours, ref, dtype, name)
    return (h, c, *grads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_lstm_kernels_match_reference(target, shape, dtype, rng):
    N, T, D, H = shape
    check_lstm(target, make_inputs(rng, N, T, D, H, dtype), *upstream(rng, N, T, H, dtype, "dh and dc_last"))


@pytest.mark.parametrize("case", UPSTREAM[1:])
@pytest.mark.parametrize("shape", [(1, 1, 3, 5), (3, 4, 5, 7)], ids=lambda s: "x".join(map(str, s)))
def test_one_upstream_gradient_matches_reference(target, shape, case, rng):
    N, T, D, H = shape
    check_lstm(target, make_inputs(rng, N, T, D, H), *upstream(rng, N, T, H, np.float64, case))


def test_gate_blocks_follow_keras_order(target):
    # One unit, x = 0, h0 = 0: z = b, so the cached gates are sigmoid(b_i), sigmoid(b_f), tanh(b_c), sigmoid(b_o).
    b = np.array([0.3, -1.2, 0.8, 2.0])
    h, c, cache = gpu.forward_on(target, np.zeros((1, 1, 1)), np.zeros((1, 1)), np.array([[0.5]]),
                                 np.zeros((1, 4)), np.zeros((1, 4)), b)
    sig = 1 / (1 + np.exp(-b))
    assert_close(cache.gates[0, 0], [sig[0], sig[1], np.tanh(b[2]), sig[3]], atol=1e-15, rtol=1e-14, name="gates")
    assert_close(c[0, 0, 0], sig[1] * 0.5 + sig[0] * np.tanh(b[2]), atol=1e-15, rtol=1e-14, name="c")
    assert_close(h[0, 0, 0], sig[3] * np.tanh(c[0, 0, 0]), atol=1e-15, rtol=1e-14, name="h")


def test_caches_are_interchangeable_with_the_cpu(target, rng):
    # The reference's cache (NumPy arrays, the CPU layout) drives the GPU backward and vice versa.
    args = make_inputs(rng, 3, 5, 4, 6)
    dh, dc_last = upstream(rng, 3, 5, 6, np.float64, "dh and dc_last")
    _, _, cache_ref = reference.forward(**args)
    _, _, cache_gpu = gpu.forward_on(target, **args)
    for name, a, b in zip(reference.LSTMCache._fields, cache_gpu, cache_ref):
        assert_close(a, b, **tolerance(np.float64), name=f"cache.{name}")
    expected = reference.backward(dh, cache_ref, dc_last)
    for name, a, b in zip(GRAD_NAMES, gpu.backward_on(target, dh, cache_ref, dc_last), expected):
        assert_close(a, b, **tolerance(np.float64), name=f"{name} from the reference's cache")
    for name, a, b in zip(GRAD_NAMES, reference.backward(dh, cache_gpu, dc_last), expected):
        assert_close(a, b, **tolerance(np.float64), name=f"{name} of the reference from the GPU cache")


def test_results_do_not_depend_on_the_schedule(lstm_host, rng):
    # Deterministic by design (no atomics; fixed tile, split and chunk assignment): the same bits for any
    # thread order and grid cap, split-k included (N*T = 264).
    args = make_inputs(rng, 33, 8, 3, 17, np.float32)
    dh, dc_last = upstream(rng, 33, 8, 17, np.float32, "dh and dc_last")
    runs = []
    for order, blocks in [("forward", 1), ("reverse", 2), ("forward", 1 << 20)]:
        target = harness.target(lstm_host, order=order, max_grid_blocks=blocks)
        h, c, cache = gpu.forward_on(target, **args)
        runs.append((h, c, cache.gates, *gpu.backward_on(target, dh, cache, dc_last)))
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert np.array_equal(a, b)


# --- numerical behaviour ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturated_gates_stay_finite(target, dtype, rng):
    # The sigmoid must not overflow at |z| = 1e4, and i and f saturate to exactly 0 and 1.
    args = make_inputs(rng, 2, 4, 3, 5, dtype)
    args["x"] = np.array([-1e4, 1e4], dtype=dtype)[:, None, None] * np.ones((2, 4, 3), dtype)
    h, c, cache = gpu.forward_on(target, **args)
    grads = gpu.backward_on(target, np.ones_like(h), cache, np.ones_like(c[:, -1]))
    assert np.all(np.isfinite(h)) and np.all(np.isfinite(c)) and np.all(np.abs(h) <= 1)
    assert set(np.unique(cache.gates[:, :, : 2 * 5])) <= {0.0, 1.0}
    assert all(np.all(np.isfinite(g)) for g in grads)
    h_ref, c_ref, _ = reference.forward(**{k: up(v) for k, v in args.items()})
    assert_matches(h, h_ref, dtype, "saturated h")
    assert_matches(c, c_ref, dtype, "saturated c")


def test_nan_and_inf_propagate_like_the_reference(target, rng):
    args = make_inputs(rng, 3, 4, 2, 3)
    args["x"][1, 2, 0] = np.nan
    args["x"][2, 1, 1] = np.inf
    h, c, cache = gpu.forward_on(target, **args)
    assert np.isnan(h[1, 2:]).all() and np.isnan(c[1, 2:]).all() and np.isfinite(h[1, :2]).all()
    assert np.isfinite(h[0]).all() and np.isfinite(c[0]).all()
    h_ref, c_ref, cache_ref = reference.forward(**args)
    assert_close(h, h_ref, atol=1e-12, rtol=1e-10, name="h with NaN/Inf")
    assert_close(c, c_ref, atol=1e-12, rtol=1e-10, name="c with NaN/Inf")
    dh, dc_last = np.ones_like(h), np.ones_like(c[:, -1])
    with np.errstate(invalid="ignore"):  # NaN * 0 in the reference is NaN by IEEE rules
        expected = reference.backward(dh, cache_ref, dc_last)
    for name, a, b in zip(GRAD_NAMES, gpu.backward_on(target, dh, cache, dc_last), expected):
        assert_close(a, b, atol=1e-12, rtol=1e-10, name=f"{name} with NaN/Inf")


def test_launch_math_exercised_by_these_tests():
    """The shapes above really cover what the module docstring says (guards against a silent change)."""
    fake = launch.Target("probe", np, lambda e: None, max_grid_blocks=3)
    assert gemm.step_grid(fake, 33, 9, gpu.UNITS_PER_TILE) == ((3,), (256,))  # 4 forward tiles, 3 blocks
    assert launch.blocks_for(35, gpu.UNITS_PER_TILE) == 5 and launch.blocks_for(35, gemm.STEP_TILE) == 2
    assert 9 % gpu.UNITS_PER_TILE and 17 % gpu.UNITS_PER_TILE and 35 % gemm.STEP_TILE
    assert gemm.split_k(17, 68, 264)[0] == 2 and gemm.split_k(3, 68, 264)[0] == 2  # dU and dW split
    assert reduce.column_sum_chunks(33 * 8)[1] == 2
    text = sources.op_source("lstm").read_text()
    assert "constexpr int kUnits = Step::kCols / kGates;  // hidden units per forward tile (8)" in text
    assert "using StepTiling = Tiling<32, 32, 16, 2, 2>;" in (sources.CUDA_DIR / "gemm.cuh").read_text()


def test_the_shared_header_is_the_rnn_one():
    # lstm.cu and rnn.cu include the one toolkit/cuda/gemm.cuh (no copy, no link in an op's folder), whose
    # kernels belong to both modules, and every cache key of lstm.cu hashes its text.
    shared = sources.CUDA_DIR / "gemm.cuh"
    for op in ("lstm", "rnn"):
        path = sources.op_source(op)
        assert not (path.parent / "gemm.cuh").exists()
        assert shared in sources.header_files(path)
        assert {"matmul", "shift_states"} <= set(sources.source_kernels(path))
    path = sources.op_source("lstm")
    text = shared.read_text()
    assert sources.headers_digest(path) != sources.headers_digest(path, {"gemm.cuh": text + "\n// edit"})


# --- the tests can fail: a broken copy of the real source is caught -------------------------------------------
def test_a_missing_barrier_before_the_cell_update_is_caught(rng):
    key = "__syncthreads();  // the whole tile is in z before a thread reads the four gates of its unit"
    broken = load_edited("lstm", key, "// " + key)
    # N = 33: the block's last threads own live rows too, so the reverse order reads unwritten z as well.
    args = make_inputs(rng, 33, 2, 4, 9)
    dh, dc_last = upstream(rng, 33, 2, 9, np.float64, "dh and dc_last")
    for order in ("forward", "reverse"):
        with pytest.raises((AssertionError, harness.HostKernelError)):
            check_lstm(harness.target(broken, order=order), args, dh, dc_last)


# --- property-based: any small shape, any schedule, any upstream gradient -----------------------------------
@settings(max_examples=15)
@given(N=st.integers(1, 40), T=st.integers(1, 5), D=st.integers(1, 20), H=st.integers(1, 20),
       case=st.sampled_from(UPSTREAM), order=st.sampled_from(["forward", "reverse"]),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_property_kernels_match_reference(lstm_host, N, T, D, H, case, order, dtype, seed):
    rng = np.random.default_rng(seed)
    check_lstm(harness.target(lstm_host, order=order), make_inputs(rng, N, T, D, H, dtype),
               *upstream(rng, N, T, H, dtype, case))


# --- the public CuPy path, wired to the host harness through a fake CuPy ------------------------------------
def test_public_gpu_path_wiring(fake_cupy, rng):
    args = make_inputs(rng, 3, 4, 5, 7)
    dh, dc_last = upstream(rng, 3, 4, 7, np.float64, "dh and dc_last")
    h, c, cache = gpu.forward(**args)
    h_ref, c_ref, cache_ref = reference.forward(**args)
    assert_close(h, h_ref, **tolerance(np.float64), name="h")
    assert_close(c, c_ref, **tolerance(np.float64), name="c")
    expected = reference.backward(dh, cache_ref, dc_last)
    for name, a, b in zip(GRAD_NAMES, gpu.backward(dh, cache, dc_last), expected):
        assert_close(a, b, **tolerance(np.float64), name=name)
    fakes.assert_compiled_once(fake_cupy, "lstm")
