"""dense.cu executed on the CPU by the host harness, through gpu.py's own launch code, vs the NumPy
reference: forward (with and without bias) and backward, float32 and float64.

Shapes hit every branch of the GEMM: a 1 x 1 x 1 product, partial tiles in M, N and K (the tile is
128 x 128 with k steps of 8: 33 x 17 x 65, 70 x 3 x 129, 130 x 260 x 7 ...), more tiles than the 3 blocks
of a capped grid (grid-stride over tiles), both transposed operand layouts (dx reads W transposed, dW
reads x transposed), more than one group of 8 tile-rows (the L2-friendly tile order), split-k with its
ordered slice sum, and db's two-stage column sum with many chunks. Each check runs under three schedules:
threads and blocks in forward and in reverse order with the grid capped at 3 blocks, and forward with an
uncapped grid.

Tolerance: the classic dot-product bound. Any summation order of k products is within k eps sum|products|
of the exact value (per element), so the kernel and the reference (BLAS, in the same dtype) are within
twice that of each other; the bound is computed per element from |A| |B| in float64.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.cuda import fakes
from tests.cuda.conftest import host_build, load_edited, requires_cxx, scheduled_targets
from tests.helpers import assert_close, random_array
from toolkit.cuda import launch, reduce, sources
from toolkit.cuda.host import harness
from toolkit.ops.dense import gpu, reference

pytestmark = requires_cxx

# (N, in, out): batch, fan-in (k of the forward product), fan-out.
SHAPES = [
    (1, 1, 1),        # one element everywhere: every tile is mostly padding
    (33, 65, 17),     # partial tiles in every dimension, k = 65 is 8 full k steps and one of 1
    (70, 129, 3),     # a thin output; dW's k (= batch 70) is 8 steps and a partial one
    (130, 7, 260),    # 2 x 3 output tiles (forward), dW 1 x 3 with k = 130: partial tiles past 128
    (1, 200, 1),      # a single dot product 200 deep: 25 k steps, double buffering for many steps
    (257, 9, 5),      # 3 tile-rows; dW (k = 257) in 2 split-k slices; db over 257 rows = 2 chunks of 256
]


dense_host = host_build("dense")
target = scheduled_targets("dense_host")


def gemm_bound(a, b, k, dtype, bias=None):
    """Per-element tolerance between two computations of a @ b (+ bias) in dtype: 2 (k + 1) eps |a||b|."""
    eps = float(np.finfo(dtype).eps)
    magnitude = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))
    if bias is not None:
        magnitude = magnitude + np.abs(bias.astype(np.float64))
    return 2 * (k + 1) * eps * magnitude + 4 * k * float(np.finfo(dtype).tiny)


def sum_tolerance(dy, dtype):
    """db against the float64 column sum: one rounding to dtype (eps |sum|) after a float64 sum whose own
    error, like the float64 reference's, is at most n eps64 sum|dy|."""
    exact = dy.astype(np.float64).sum(axis=0)
    eps64 = float(np.finfo(np.float64).eps)
    return dict(atol=float(np.finfo(dtype).eps) * np.abs(exact) + 2 * dy.shape[0] * eps64 * np.abs(dy).sum(axis=0),
                rtol=0)


def check_dense(target, x, W, b, dy):
    """gpu.py's forward and backward on ``target`` against the reference, within the GEMM bound."""
    dtype = x.dtype
    n, fan_in = x.shape
    fan_out = W.shape[1]
    y, cache = gpu.forward_on(target, x, W, b)
    y_ref, cache_ref = reference.forward(x, W, b)
    assert y.dtype == dtype and y.shape == (n, fan_out)
    assert cache.x is x and cache.W is W and cache.has_bias == (b is not None)
    assert_close(y, y_ref, atol=gemm_bound(x, W, fan_in, dtype, b), rtol=0, name="y")
    dx, dW, db = gpu.backward_on(target, dy, cache)
    dx_ref, dW_ref, db_ref = reference.backward(dy, cache_ref)
    assert dx.dtype == dW.dtype == dtype
    assert_close(dx, dx_ref, atol=gemm_bound(dy, W.T, fan_out, dtype), rtol=0, name="dx")
    assert_close(dW, dW_ref, atol=gemm_bound(x.T, dy, n, dtype), rtol=0, name="dW")
    if b is None:
        assert db is None
    else:
        assert db.dtype == dtype and db.shape == (fan_out,)
        # summed in float64 and rounded once to dtype
        assert_close(db, dy.astype(np.float64).sum(axis=0), **sum_tolerance(dy, dtype), name="db")
        assert_close(db, db_ref, atol=gemm_bound(np.ones((1, n)), dy, n, dtype)[0], rtol=0, name="db vs reference")
    return y, dx, dW, db


def inputs(rng, n, fan_in, fan_out, dtype, bias=True):
    return (random_array(rng, (n, fan_in), dtype), random_array(rng, (fan_in, fan_out), dtype),
            random_array(rng, (fan_out,), dtype) if bias else None, random_array(rng, (n, fan_out), dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_dense_kernels_match_reference(target, shape, bias, dtype, rng):
    check_dense(target, *inputs(rng, *shape, dtype, bias))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_more_than_one_group_of_tile_rows(target, dtype, rng):
    # 1100 rows = 9 tile-rows: a full group of 8 and a last group of 1 (the grouped order's edge case).
    check_dense(target, *inputs(rng, 1100, 5, 3, dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_split_k_for_a_deep_weight_gradient(target, dtype, rng):
    # dW = x^T dy of a 3 -> 2 layer over a batch of 2100: one output tile, k = 2100 -> 16 slices of 136.
    assert gpu.split_k(3, 2, 2100) == (16, 136)
    check_dense(target, *inputs(rng, 2100, 3, 2, dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_split_k_slices_and_bias(target, monkeypatch, bias, dtype, rng):
    # Shallow slices forced: k = 65 in 5 slices of 16 (the last one 1 deep), the bias added in the slice sum.
    monkeypatch.setattr(gpu, "SPLIT_MIN_DEPTH", 13)
    assert gpu.split_k(33, 17, 65) == (5, 16)
    check_dense(target, *inputs(rng, 33, 65, 17, dtype, bias))


def test_split_k_depends_on_the_shape_only():
    assert gpu.split_k(4096, 4096, 4096) == (1, 4096)  # 1024 tiles: plenty of work, no split
    assert gpu.split_k(128, 128, 255) == (1, 255)  # too shallow to split
    assert gpu.split_k(256, 1024, 1024) == (8, 128)  # 16 tiles of a mid-sized layer: 8 slices each
    assert gpu.split_k(257, 5, 9) == (1, 9) and gpu.split_k(9, 5, 257) == (2, 136)  # SHAPES' last dW splits
    splits, per = gpu.split_k(784, 10, 60000)  # an MNIST-sized dW over a whole epoch's batch
    assert splits == gpu.MAX_SPLITS and per % gpu.TILE_K == 0 and (splits - 1) * per < 60000 <= splits * per


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_column_sums_with_many_chunks(target, monkeypatch, dtype, rng):
    monkeypatch.setattr(reduce, "SUM_ROWS_PER_CHUNK", 4)  # 37 rows -> 10 chunks (the last of 1 row) x 3 groups
    assert reduce.column_sum_chunks(37) == (4, 10)
    dy = random_array(rng, (37, 70), dtype)
    assert_close(reduce.column_sums_on(target, dy), dy.astype(np.float64).sum(axis=0), **sum_tolerance(dy, dtype),
                 name="db")


def test_column_sum_chunks_grow_for_huge_batches(target, monkeypatch, rng):
    assert reduce.column_sum_chunks(257) == (256, 2)  # as cpu.py's blocks of 256 rows ...
    assert reduce.column_sum_chunks(10**6) == (977, 1024)  # ... grown so the last pass adds at most 1024 per column
    monkeypatch.setattr(reduce, "SUM_MAX_CHUNKS", 3)
    assert reduce.column_sum_chunks(1000) == (334, 3)
    dy = random_array(rng, (1000, 2))
    assert_close(reduce.column_sums_on(target, dy), dy.sum(axis=0), **sum_tolerance(dy, np.float64), name="db")


def test_results_do_not_depend_on_the_grid(dense_host, rng):
    # Deterministic by design (no atomics, fixed tile and chunk assignment): the same bits for any grid cap.
    x, W, b, dy = inputs(rng, 70, 129, 3, np.float32)
    runs = []
    for order, blocks in [("forward", 1), ("reverse", 2), ("forward", 1 << 20)]:
        target = harness.target(dense_host, order=order, max_grid_blocks=blocks)
        y, cache = gpu.forward_on(target, x, W, b)
        runs.append((y, *gpu.backward_on(target, dy, cache)))
    for other in runs[1:]:
        for a, c in zip(runs[0], other):
            assert np.array_equal(a, c)


def test_nan_and_inf_propagate_like_the_reference(target):
    x = np.array([[1.0, np.nan, 2.0], [np.inf, 0.0, 1.0], [1.0, 2.0, 3.0], [np.inf, -np.inf, 0.0]])
    W = np.array([[1.0, 0.0], [2.0, -1.0], [0.5, 0.25]])
    b = np.array([0.5, -0.5])
    y, cache = gpu.forward_on(target, x, W, b)
    with np.errstate(invalid="ignore"):  # inf * 0 and inf - inf are NaN by IEEE in the reference as well
        y_ref, cache_ref = reference.forward(x, W, b)
    assert_close(y, y_ref, atol=1e-12, rtol=1e-12, name="y")
    assert np.isnan(y[0]).all() and np.isfinite(y[2]).all()  # a NaN spoils its row only
    dy = np.ones_like(y_ref)
    dx, dW, db = gpu.backward_on(target, dy, cache)
    with np.errstate(invalid="ignore"):
        dx_ref, dW_ref, db_ref = reference.backward(dy, cache_ref)
    assert_close(dx, dx_ref, atol=1e-12, rtol=1e-12, name="dx")
    assert_close(dW, dW_ref, atol=1e-12, rtol=1e-12, name="dW")
    assert_close(db, db_ref, atol=1e-12, rtol=1e-12, name="db")


def test_launch_math_exercised_by_these_tests():
    """The shapes above really cover what the module docstring says (guards against a silent change)."""
    assert gpu.TILE == 128 and gpu.TILE_K == 8 and harness.HOST_MAX_GRID_BLOCKS == 3
    assert gpu._tiles(130, 260) == 6 > harness.HOST_MAX_GRID_BLOCKS  # forward of (130, 7, 260): grid-strided
    assert 33 % gpu.TILE and 17 % gpu.TILE and 65 % gpu.TILE_K  # partial tiles in M, N and K
    assert launch.blocks_for(1100, gpu.TILE) == 9  # two groups of tile-rows
    text = sources.op_source("dense").read_text()
    for constant, value in [("kTile", gpu.TILE), ("kTileK", gpu.TILE_K), ("kThreads", gpu.GEMM_THREADS)]:
        assert f"constexpr int {constant} = {value};" in text  # gpu.py and dense.cu agree


def test_a_missing_barrier_is_caught(rng):
    # The comparison above can fail: without the barrier that ends each k step, threads multiply slices the
    # others have not stored yet (shared memory is poisoned with NaN before every block).
    broken = load_edited("dense", "__syncthreads();  // next buffer written", "// (barrier removed)")
    x, W, b, dy = inputs(rng, 33, 65, 17, np.float64)
    y, _ = gpu.forward_on(harness.target(broken), x, W, b)
    assert not np.allclose(y, x @ W + b, equal_nan=False)


# --- need_dx=False: the dx GEMM is not launched, dW and db the same bits -----------------------------------
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(33, 65, 17), (257, 9, 5)], ids=["partial_tiles", "split_k_dW"])
def test_without_dx_no_dx_gemm_runs_and_dW_db_keep_their_bits(target, shape, dtype, bias, monkeypatch, rng):
    x, W, b, dy = inputs(rng, *shape, dtype, bias)
    _, cache = gpu.forward_on(target, x, W, b)
    products = []
    real_gemm = gpu.gemm_on

    def gemm_spy(target, a, b, bias, **flags):
        products.append("dx" if flags.get("b_transposed") else "dW" if flags.get("a_transposed") else "other")
        return real_gemm(target, a, b, bias, **flags)

    monkeypatch.setattr(gpu, "gemm_on", gemm_spy)
    dx, dW, db = gpu.backward_on(target, dy, cache)
    assert products == ["dx", "dW"]
    products.clear()
    got = gpu.backward_on(target, dy, cache, need_dx=False)
    assert products == ["dW"]
    assert dx is not None and got[0] is None
    assert got[1].dtype == dtype and np.array_equal(got[1], dW)
    assert (got[2] is None and db is None) if not bias else np.array_equal(got[2], db)


def test_public_gpu_path_passes_need_dx(fake_cupy, rng):
    x, W, b, dy = inputs(rng, 33, 65, 17, np.float64)
    _, cache = gpu.forward(x, W, b)
    dx, dW, db = gpu.backward(dy, cache)
    got = gpu.backward(dy, cache, need_dx=False)
    assert dx is not None and got[0] is None and np.array_equal(got[1], dW) and np.array_equal(got[2], db)


# --- property-based: any small shape, either order, float32 or float64 -----------------------------------
@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), fan_in=st.integers(1, 40), fan_out=st.integers(1, 40), bias=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), order=st.sampled_from(["forward", "reverse"]),
       data=st.data())
def test_property_dense_kernels(dense_host, n, fan_in, fan_out, bias, dtype, order, data):
    def arr(shape):
        return data.draw(hnp.arrays(dtype, shape, elements=st.floats(-100, 100, width=32)))

    x, W, dy = arr((n, fan_in)), arr((fan_in, fan_out)), arr((n, fan_out))
    check_dense(harness.target(dense_host, order=order), x, W, arr((fan_out,)) if bias else None, dy)


# --- the public CuPy path, with a stand-in for CuPy that runs the host harness ---------------------------
def test_public_gpu_path_wiring(fake_cupy, rng):
    for shape, bias in [((33, 65, 17), True), ((5, 3, 2), False)]:
        x, W, b, dy = inputs(rng, *shape, np.float64, bias)
        y, cache = gpu.forward(x, W, b)
        y_ref, cache_ref = reference.forward(x, W, b)
        assert_close(y, y_ref, atol=1e-12, rtol=1e-12, name="y")
        for got, want, name in zip(gpu.backward(dy, cache), reference.backward(dy, cache_ref), ("dx", "dW", "db")):
            if want is None:
                assert got is None
            else:
                assert_close(got, want, atol=1e-12, rtol=1e-12, name=name)
    fakes.assert_compiled_once(fake_cupy, "dense")
