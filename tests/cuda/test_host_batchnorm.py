"""batchnorm.cu executed on the CPU by the host harness, through gpu.py's own launch code, vs the NumPy
reference: forward (y, every cache field, the running statistics updated in place) and backward (dx, dgamma,
dbeta), training and inference, float32 and float64.

Shapes hit every branch of the reduction layout (gpu.layout): one row, features below a warp (several rows
per warp: tile widths 1, 4, 8), exactly and just over a warp (33 features: a second, nearly empty column
tile), rank 2, 3 and 4 inputs, rows not a multiple of a chunk (a partial last chunk), more tiles than the 3
blocks of a capped grid, more chunks than row groups (stage 2 strides). Each check runs under three
schedules: threads and blocks in forward and in reverse order with the grid capped at 3 blocks, and forward
with an uncapped grid. Tolerances are tests/helpers.tolerance(dtype).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.cuda import fakes
from tests.cuda.conftest import host_build, load_edited, requires_cxx, scheduled_targets
from tests.helpers import assert_close, random_array, tolerance
from tests.ops.test_batchnorm import make_inputs
from toolkit.cuda import launch, sources
from toolkit.cuda.host import harness
from toolkit.ops.batchnorm import gpu, reference

pytestmark = requires_cxx

SHAPES = [
    (1, 3),          # one row (var = 0), tile width 4
    (5, 7),          # fewer rows than a chunk, width 8
    (2, 5, 4),       # rank 3: statistics over 10 rows
    (3, 4, 5, 6),    # rank 4 (N, H, W, C): 60 rows per channel
    (300, 1),        # one feature: width 1, 256 row groups, two chunks (the second partial)
    (70, 32),        # exactly a warp of features; 3 chunks of 32 rows, the last partial
    (70, 33),        # a second column tile with one live lane; 6 tiles over 3 blocks
    (2, 7, 9, 40),   # rank 4, 126 rows, 2 column tiles, 4 chunks (partial)
]
FIELDS = ("x_hat", "gamma", "mean", "var", "inv_std")


batchnorm_host = host_build("batchnorm")
target = scheduled_targets("batchnorm_host")


def check_pair(target, x, gamma, beta, rm, rv, dy, training, *, momentum=0.9, eps=1e-3, tol=None):
    """gpu.py's forward and backward on ``target`` against the reference (on copies of the running
    statistics); returns the GPU side's (y, cache, (dx, dgamma, dbeta))."""
    dtype = x.dtype
    tol = tol or tolerance(dtype)
    rm_ref, rv_ref = rm.copy(), rv.copy()
    y, cache = gpu.forward_on(target, x, gamma, beta, rm, rv, training, momentum, eps)
    y_ref, cache_ref = reference.forward(x, gamma, beta, rm_ref, rv_ref, training, momentum, eps)
    assert y.dtype == dtype and y.shape == x.shape and cache.training is training
    assert_close(y, y_ref, **tol, name="y")
    for field in FIELDS:
        ours = getattr(cache, field)
        assert ours.dtype == dtype and ours.shape == getattr(cache_ref, field).shape, field
        assert_close(ours, getattr(cache_ref, field), **tol, name=field)
    assert cache.gamma is not gamma  # a copy: an optimizer may update gamma before backward runs
    assert_close(rm, rm_ref, **tol, name="running_mean")
    assert_close(rv, rv_ref, **tol, name="running_var")
    grads = gpu.backward_on(target, dy, cache)
    for name, ours, theirs in zip(("dx", "dgamma", "dbeta"), grads, reference.backward(dy, cache_ref)):
        assert ours.dtype == dtype and ours.shape == theirs.shape, name
        assert_close(ours, theirs, **tol, name=name)
    return y, cache, grads


@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_kernels_match_reference(target, shape, dtype, training, rng):
    x, gamma, beta, rm, rv = make_inputs(rng, shape, dtype)
    check_pair(target, x, gamma, beta, rm, rv, random_array(rng, shape, dtype), training)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(50, 40), (200, 40), (130, 5), (3, 11, 13, 3)], ids=lambda s: "x".join(map(str, s)))
def test_many_chunks(target, monkeypatch, shape, dtype, rng):
    # One row per thread: small inputs make many chunks. (200, 40): 25 chunks of 8 rows, more than the 8 row
    # groups of a stage-2 block, so stage 2 strides too; (50, 40): 7 chunks, the last of 2 rows.
    monkeypatch.setattr(gpu, "MIN_ROWS_PER_THREAD", 1)
    rows = int(np.prod(shape[:-1]))
    assert gpu.layout(rows, shape[-1]).chunks > 1
    x, gamma, beta, rm, rv = make_inputs(rng, shape, dtype)
    for training in (True, False):
        check_pair(target, x, gamma, beta, rm, rv, random_array(rng, shape, dtype), training)


def test_layout_covers_the_rows_and_is_a_function_of_the_shape():
    for rows, features in [(1, 1), (1, 3), (5, 7), (300, 1), (70, 33), (256, 1024), (25088, 64), (802816, 64),
                           (10**7, 2048), (3, 10**5)]:
        lay = gpu.layout(rows, features)
        width, groups = lay.block
        assert width * groups == gpu.REDUCE_THREADS and width & (width - 1) == 0 and width <= 32
        assert width >= min(features, 32) and (width == 1 or width // 2 < features)  # the narrowest tile that fits
        assert lay.chunk_rows % groups == 0 and lay.chunk_rows >= groups * gpu.MIN_ROWS_PER_THREAD
        assert (lay.chunks - 1) * lay.chunk_rows < rows <= lay.chunks * lay.chunk_rows
        assert lay.column_tiles == -(-features // width)
    # enough tiles to fill a big GPU when the rows allow it: the bench's convolution-sized input
    lay = gpu.layout(8 * 56 * 56, 64)
    assert lay.chunks * lay.column_tiles >= gpu.TARGET_TILES * 3 // 4


def test_results_do_not_depend_on_the_grid(batchnorm_host, monkeypatch, rng):
    # Deterministic by design (chunks from the shape, fixed summation order, no atomics): the same bits for
    # any grid and any schedule.
    monkeypatch.setattr(gpu, "MIN_ROWS_PER_THREAD", 1)
    x, gamma, beta, rm, rv = make_inputs(rng, (90, 37), np.float32)
    dy = random_array(rng, x.shape, np.float32)
    results = []
    for order, blocks in [("forward", 1), ("reverse", 2), ("forward", 5), ("forward", 1 << 20)]:
        target = harness.target(batchnorm_host, order=order, max_grid_blocks=blocks)
        rm_i, rv_i = rm.copy(), rv.copy()
        y, cache = gpu.forward_on(target, x, gamma, beta, rm_i, rv_i, True, 0.99, 1e-3)
        results.append([y, *cache[:5], rm_i, rv_i, *gpu.backward_on(target, dy, cache)])
    for other in results[1:]:
        for ours, first in zip(other, results[0]):
            assert ours.tobytes() == first.tobytes()


@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_statistics_are_two_pass_in_float64(batchnorm_host, order, rng):
    # float32 pixels around 1e4 with a std of 1e-2: the one-pass E[x^2] - E[x]^2 loses the variance to
    # cancellation even in float64; the two-pass float64 statistics match NumPy's to 1e-12.
    target = harness.target(batchnorm_host, order=order)
    x = (1e4 + 1e-2 * rng.standard_normal((600, 3))).astype(np.float32)
    mean, var = gpu.statistics_on(target, x)
    mean_ref, var_ref = reference.statistics(x)
    assert mean.dtype == var.dtype == np.float64
    assert_close(mean, mean_ref, atol=0, rtol=1e-14, name="mean")
    assert_close(var, var_ref, atol=0, rtol=1e-10, name="var")
    x64 = x.astype(np.float64)
    one_pass = (x64 * x64).mean(axis=0) - x64.mean(axis=0) ** 2
    assert np.max(np.abs(one_pass - var_ref) / var_ref) > 1e-6  # the test can tell the two apart


def test_float32_sums_accumulate_in_float64(batchnorm_host, rng):
    # 30000 float32 values per feature: a float32 accumulator would drift by ~1e-6 relative; ours is double.
    target = harness.target(batchnorm_host)
    x = (rng.standard_normal((30000, 2)) + 3.0).astype(np.float32)
    mean, var = gpu.statistics_on(target, x)
    mean_ref, var_ref = reference.statistics(x)
    assert_close(mean, mean_ref, atol=0, rtol=1e-13, name="mean")
    assert_close(var, var_ref, atol=0, rtol=1e-12, name="var")
    dy = rng.standard_normal(x.shape).astype(np.float32)
    _, cache = gpu.forward_on(target, x, np.ones(2, np.float32), np.zeros(2, np.float32), np.zeros(2, np.float32),
                              np.ones(2, np.float32), True, 0.99, 1e-3)
    _, dgamma, dbeta = gpu.backward_on(target, dy, cache)
    assert_close(dbeta, dy.sum(axis=0, dtype=np.float64), atol=0, rtol=1e-7, name="dbeta (rounded once)")
    assert_close(dgamma, (dy.astype(np.float64) * cache.x_hat).sum(axis=0), atol=0, rtol=1e-7, name="dgamma")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_of_one_and_constant_features(target, dtype, rng):
    # var = 0: x_hat = 0 and y = beta exactly; dx = gamma / sqrt(eps) * (dy - mean(dy)), which a batch of one
    # makes exactly 0 (its only row is its mean).
    for shape in [(1, 5), (4, 3)]:
        x, gamma, beta, rm, rv = make_inputs(rng, shape, dtype)
        x[:] = x[:1]  # every row the same
        dy = random_array(rng, shape, dtype)
        y, cache, (dx, _, _) = check_pair(target, x, gamma, beta, rm, rv, dy, True)
        assert np.array_equal(cache.var, np.zeros(shape[-1], dtype)) and np.array_equal(cache.x_hat, np.zeros_like(x))
        assert np.array_equal(y, np.broadcast_to(beta, shape))
        assert np.array_equal(dx, np.zeros_like(dx)) == (shape[0] == 1)


def test_running_statistics_are_updated_in_place_and_read_only_in_inference(target, rng):
    x, gamma, beta, rm, rv = make_inputs(rng, (6, 4, 3), np.float64)
    rm_before, rv_before = rm.copy(), rv.copy()
    _, cache = gpu.forward_on(target, x, gamma, beta, rm, rv, True, 0.9, 1e-3)
    mean, var = reference.statistics(x)
    assert_close(rm, 0.9 * rm_before + 0.1 * mean, **tolerance(np.float64), name="running_mean (Keras momentum)")
    assert_close(rv, 0.9 * rv_before + 0.1 * var, **tolerance(np.float64), name="running_var (biased variance)")
    # Inference reads the running statistics only: read-only arrays work and stay as they were.
    rm.setflags(write=False)
    rv.setflags(write=False)
    kept = rm.copy(), rv.copy()
    y, cache = gpu.forward_on(target, x, gamma, beta, rm, rv, False, 0.9, 1e-3)
    assert np.array_equal(rm, kept[0]) and np.array_equal(rv, kept[1])
    assert np.array_equal(cache.mean, rm) and np.array_equal(cache.var, rv) and cache.training is False
    assert_close(y, gamma * (x - rm) / np.sqrt(rv + 1e-3) + beta, **tolerance(np.float64), name="inference y")


def test_momentum_extremes(target, rng):
    x, gamma, beta, rm, rv = make_inputs(rng, (10, 4), np.float64)
    kept = rm.copy(), rv.copy()
    gpu.forward_on(target, x, gamma, beta, rm, rv, True, 1.0, 1e-3)  # all weight on the old value
    assert np.array_equal(rm, kept[0]) and np.array_equal(rv, kept[1])
    gpu.forward_on(target, x, gamma, beta, rm, rv, True, 0.0, 1e-3)  # all weight on the batch
    mean, var = reference.statistics(x)
    assert_close(rm, mean, atol=1e-15, rtol=1e-15, name="running_mean")
    assert_close(rv, var, atol=1e-15, rtol=1e-15, name="running_var")


def test_nan_and_inf_poison_only_their_feature(target):
    # A NaN (or an Inf: inf - inf = NaN) makes that feature's statistics NaN, by IEEE rules; others untouched.
    x = np.array([[1.0, np.nan, 2.0, np.inf], [2.0, 0.5, 3.0, 1.0], [4.0, 0.25, -1.0, 0.0]])
    gamma, beta = np.ones(4), np.zeros(4)
    rm, rv = np.zeros(4), np.ones(4)
    rm_ref, rv_ref = rm.copy(), rv.copy()
    y, cache = gpu.forward_on(target, x, gamma, beta, rm, rv, True, 0.9, 1e-3)
    y_ref, cache_ref = reference.forward(x, gamma, beta, rm_ref, rv_ref, True, 0.9, 1e-3)
    dy = np.ones_like(x)
    with np.errstate(invalid="ignore"):
        grads_ref = reference.backward(dy, cache_ref)
    for ours, theirs, name in [(y, y_ref, "y"), (rm, rm_ref, "running_mean"), (rv, rv_ref, "running_var"),
                               *zip(gpu.backward_on(target, dy, cache), grads_ref, ("dx", "dgamma", "dbeta"))]:
        assert_close(ours, theirs, atol=1e-12, rtol=1e-12, name=name)
    assert np.isnan(y[:, 1]).all() and np.isnan(y[:, 3]).all() and np.isfinite(y[:, [0, 2]]).all()


def test_gamma_updated_after_forward_does_not_change_backward(target, rng):
    x, gamma, beta, rm, rv = make_inputs(rng, (8, 5), np.float32)
    dy = random_array(rng, x.shape, np.float32)
    _, cache = gpu.forward_on(target, x, gamma, beta, rm, rv, True, 0.99, 1e-3)
    before = gpu.backward_on(target, dy, cache)
    gamma -= 0.5  # e.g. an optimizer step between forward and backward
    after = gpu.backward_on(target, dy, cache)
    for a, b in zip(before, after):
        assert np.array_equal(a, b)


def test_constants_agree_with_the_kernels():
    text = sources.op_source("batchnorm").read_text()
    assert f"constexpr int kThreads = {gpu.REDUCE_THREADS};" in text
    assert gpu.REDUCE_THREADS % launch.WARP_SIZE == 0 and gpu.REDUCE_THREADS <= launch.MAX_BLOCK_THREADS


# --- the checks above can fail: deliberately broken copies of batchnorm.cu ----------------------------
BROKEN = {
    "tree level without a barrier": (
        "sums[ty * width + tx] += sums[(ty + half) * width + tx];\n        __syncthreads();",
        "sums[ty * width + tx] += sums[(ty + half) * width + tx];\n"),
    "row-group values read before written": (
        "sums[ty * width + tx] = value;\n    __syncthreads();", "sums[ty * width + tx] = value;\n"),
    "feature index not wrapped in the grid-stride loop": ("if (value >= features) value -= features;", ""),
    "float32 accumulation": (
        "const double d = static_cast<double>(a[r * features + t.feature]) - mu;",
        "const double d = static_cast<float>(a[r * features + t.feature]) - static_cast<float>(mu);"),
    "each chunk's last row skipped (off by one)": (
        "const long long end = min(rows, (t.chunk + 1) * chunk_rows);\n            const long long first",
        "const long long end = min(rows, (t.chunk + 1) * chunk_rows) - 1;\n            const long long first"),
}


@pytest.mark.parametrize("bug", [None, *BROKEN])
def test_broken_kernels_fail_these_checks(bug, rng):
    # bug None: the real source, which must pass the very same checks (the control).
    module = load_edited("batchnorm", *BROKEN[bug]) if bug else harness.load("batchnorm")
    x = (1e3 + rng.standard_normal((70, 33))).astype(np.float32)  # a large mean: float32 sums lose digits
    _, gamma, beta, rm, rv = make_inputs(rng, x.shape, np.float32)
    failures = 0
    for order in ("forward", "reverse"):
        target = harness.target(module, order=order)
        try:
            check_pair(target, x, gamma, beta, rm.copy(), rv.copy(), random_array(rng, x.shape, np.float32), True)
            assert_close(gpu.statistics_on(target, x)[1], reference.statistics(x)[1], atol=0, rtol=1e-12, name="var")
        except (AssertionError, harness.HostKernelError):
            failures += 1
    if bug is None:
        assert failures == 0, "the real batchnorm.cu failed the checks"
    else:
        assert failures > 0, f"{bug}: the broken kernel passed"


# --- property-based: any rank 2-4 shape, values with NaN/inf, both modes, either order ------------------
@settings(max_examples=40, deadline=None)
@given(shape=hnp.array_shapes(min_dims=2, max_dims=4, max_side=7), order=st.sampled_from(["forward", "reverse"]),
       training=st.booleans(), momentum=st.floats(0, 1), eps=st.floats(1e-5, 1.0), data=st.data())
def test_property_kernels(batchnorm_host, shape, order, training, momentum, eps, data):
    elements = st.floats(-100, 100, width=32) | st.sampled_from([0.0, np.nan, np.inf, -np.inf])
    x = data.draw(hnp.arrays(np.float64, shape, elements=elements))
    c = shape[-1]
    gamma = data.draw(hnp.arrays(np.float64, (c,), elements=st.floats(-3, 3)))
    beta = data.draw(hnp.arrays(np.float64, (c,), elements=st.floats(-3, 3)))
    rm = data.draw(hnp.arrays(np.float64, (c,), elements=st.floats(-3, 3)))
    rv = data.draw(hnp.arrays(np.float64, (c,), elements=st.floats(0, 3)))
    dy = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-3, 3)))
    target = harness.target(batchnorm_host, order=order)
    rm_ref, rv_ref = rm.copy(), rv.copy()
    y, cache = gpu.forward_on(target, x, gamma, beta, rm, rv, training, momentum, eps)
    with np.errstate(all="ignore"):  # NaN/inf inputs: the reference's IEEE arithmetic may warn
        y_ref, cache_ref = reference.forward(x, gamma, beta, rm_ref, rv_ref, training, momentum, eps)
        grads_ref = reference.backward(dy, cache_ref)
    # float64 sums of up to 343 values in two orders; values up to 100 and inv_std up to 1/sqrt(1e-5):
    # an absolute 1e-9 next to the 1e-10 relative bound (NaN and inf must match exactly).
    tol = dict(atol=1e-9, rtol=1e-10)
    pairs = [(y, y_ref, "y"), (rm, rm_ref, "running_mean"), (rv, rv_ref, "running_var"),
             *((getattr(cache, f), getattr(cache_ref, f), f) for f in FIELDS),
             *zip(gpu.backward_on(target, dy, cache), grads_ref, ("dx", "dgamma", "dbeta"))]
    for ours, theirs, name in pairs:
        assert_close(ours, theirs, **tol, name=name)


# --- the public CuPy path, with a stand-in for CuPy that runs the host harness ---------------------------
def test_public_gpu_path_wiring(fake_cupy, rng):
    for shape, training in [((5, 7), True), ((2, 3, 4, 33), True), ((9, 2), False)]:
        x, gamma, beta, rm, rv = make_inputs(rng, shape, np.float64)
        dy = random_array(rng, shape)
        rm_ref, rv_ref = rm.copy(), rv.copy()
        y, cache = gpu.forward(x, gamma, beta, rm, rv, training, 0.9, 1e-3)
        y_ref, cache_ref = reference.forward(x, gamma, beta, rm_ref, rv_ref, training, 0.9, 1e-3)
        assert_close(y, y_ref, **tolerance(np.float64), name="y")
        assert_close(rm, rm_ref, **tolerance(np.float64), name="running_mean")
        for ours, theirs in zip(gpu.backward(dy, cache), reference.backward(dy, cache_ref)):
            assert_close(ours, theirs, **tolerance(np.float64), name="gradients")
        mean, var = gpu.statistics(x.reshape(-1, shape[-1]))
        assert_close(var, reference.statistics(x)[1], **tolerance(np.float64), name="statistics")
    fakes.assert_compiled_once(fake_cupy, "batchnorm")
