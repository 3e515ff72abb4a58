"""conv2d.cu executed on the CPU by the host harness, through gpu.py's own launch code, vs the NumPy
reference: forward (with and without bias) and backward (dx, dw, db), float32 and float64.

Geometries: batch 1, odd H/W, stride 2, (2, 1) and (1, 2), stride > kernel (pixels in no window), every
padding spelling ("valid", "same" with an odd total, int, pair, asymmetric), 1x1, 5x5 and non-square
kernels, a kernel as large as the input (one output pixel: dw's pixel counters wrap 8 times per step),
a single input channel. Sizes hit every branch of the implicit GEMMs: Cin/Cout/K not multiples of the
tiles (128 x 128 wide, 128 x 64 narrow, k steps of 8), both variants (Cout and Cin on either side of 64),
more tiles than the 3 blocks of a capped grid, more than one group of 8 tile-rows, dw's pixel split
(natural and forced, with a partial last range), db's chunked sum. Each check runs under three schedules:
threads and blocks in forward and in reverse order with the grid capped at 3 blocks, and forward with an
uncapped grid.

Tolerance: every output is a dot product, and any two summation orders of n products are within
2 (n + 1) eps sum|products| of each other, per element (n = KH*KW*Cin (+ the bias) for y, KH*KW*Cout for
dx, N*OH*OW for dw); sum|products| is the reference run on |x|, |w|, |dy|. db is summed in float64 and
rounded once, so it must be within one rounding (eps |db|) of the float64 sum.
"""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.cuda import fakes
from tests.cuda.conftest import host_build, load_edited, requires_cxx, scheduled_targets
from tests.helpers import assert_close, random_array
from toolkit.cuda import launch, reduce, sources
from toolkit.cuda.host import harness
from toolkit.ops.conv2d import cpu, geometry, gpu, reference

pytestmark = requires_cxx

# (id, x shape (N, H, W, Cin), w shape (KH, KW, Cin, Cout), stride, padding)
CASES = [
    ("batch1_valid_one_channel", (1, 5, 5, 1), (3, 3, 1, 1), 1, "valid"),
    ("odd_same", (2, 7, 9, 3), (3, 3, 3, 4), 1, "same"),
    ("stride2_same_odd_total", (2, 8, 9, 3), (3, 3, 3, 5), 2, "same"),  # rows padded (0, 1), columns (1, 1)
    ("stride2_1_int_pad", (2, 8, 7, 2), (3, 2, 2, 3), (2, 1), 1),
    ("pair_pad", (1, 6, 5, 2), (3, 3, 2, 2), 1, (1, 2)),
    ("asymmetric_pad_stride1_2", (2, 6, 7, 3), (3, 2, 3, 2), (1, 2), ((0, 2), (1, 0))),
    ("pointwise_1x1", (3, 4, 5, 6), (1, 1, 6, 2), 1, "valid"),
    ("1x1_stride2", (2, 5, 5, 3), (1, 1, 3, 4), 2, "valid"),
    ("5x5_same_stride2", (1, 9, 8, 2), (5, 5, 2, 3), 2, "same"),
    ("even_nonsquare_same", (2, 8, 8, 3), (2, 4, 3, 2), 1, "same"),  # odd total padding: extra bottom/right
    ("stride_gt_kernel", (1, 9, 9, 2), (2, 2, 2, 2), 3, "valid"),  # some pixels are in no window: dx = 0
    ("kernel_fills_input", (2, 4, 5, 3), (4, 5, 3, 7), 1, "valid"),  # a 1x1 output
    ("grid_strided_rows", (3, 12, 11, 4), (3, 3, 4, 9), 1, "same"),  # 396 pixels: 4 tile-rows > 3 blocks
    ("wide_tiles", (1, 5, 6, 65), (3, 2, 65, 129), (2, 1), ((1, 1), (0, 1))),  # 2 wide column tiles, K = 390
    ("narrow_edge", (1, 4, 3, 64), (2, 2, 64, 64), 1, "same"),  # exactly one narrow tile wide, both ways
]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def setup(rng, x_shape, w_shape, stride, padding, dtype, bias=True):
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[3],), dtype) if bias else None
    stride = _pair(stride)
    pads = geometry.resolve_padding(padding, x_shape[1:3], w_shape[:2], stride)
    geometry.output_shape(x_shape[1:3], w_shape[:2], stride, pads)
    return x, w, b, stride, pads


conv_host = host_build("conv2d")
target = scheduled_targets("conv_host")


def dot_bound(magnitude, terms, dtype):
    """Per element: two summation orders of `terms` products differ by at most 2 (terms + 1) eps sum|products|."""
    return 2 * (terms + 1) * float(np.finfo(dtype).eps) * magnitude + 4 * terms * float(np.finfo(dtype).tiny)


def check_conv(target, x, w, b, stride, pads, dy=None, rng=None):
    """gpu.py's forward and backward on ``target`` against the reference, within the dot-product bound."""
    dtype = x.dtype
    y, cache = gpu.forward_on(target, x, w, b, stride, pads)
    y_ref, cache_ref = reference.forward(x, w, b, stride, pads)
    assert y.dtype == dtype and y.shape == y_ref.shape
    assert cache.x is x and cache.w is w and cache.has_bias == (b is not None)
    assert cache.stride == stride and cache.padding == pads
    if dy is None:
        dy = random_array(rng, y_ref.shape, dtype)
    dx, dw, db = gpu.backward_on(target, dy, cache)
    dx_ref, dw_ref, db_ref = reference.backward(dy, cache_ref)
    # The sums of |products| behind every output: the reference on absolute values, in float64.
    y_mag, cache_mag = reference.forward(*(None if a is None else np.abs(a).astype(np.float64) for a in (x, w, b)),
                                         stride, pads)
    dx_mag, dw_mag, _ = reference.backward(np.abs(dy).astype(np.float64), cache_mag)
    kh, kw, cin, cout = w.shape
    pixels = dy.shape[0] * dy.shape[1] * dy.shape[2]
    assert_close(y, y_ref, atol=dot_bound(y_mag, kh * kw * cin + 1, dtype), rtol=0, name="y")
    assert dx.dtype == dtype and dx.shape == x.shape
    assert_close(dx, dx_ref, atol=dot_bound(dx_mag, kh * kw * cout, dtype), rtol=0, name="dx")
    assert dw.dtype == dtype and dw.shape == w.shape
    assert_close(dw, dw_ref, atol=dot_bound(dw_mag, pixels, dtype), rtol=0, name="dw")
    if b is None:
        assert db is None
    else:
        exact = dy.astype(np.float64).sum(axis=(0, 1, 2))
        eps64 = float(np.finfo(np.float64).eps)
        magnitude = np.abs(dy).astype(np.float64).sum(axis=(0, 1, 2))
        assert db.dtype == dtype and db.shape == (cout,)
        assert_close(db, exact, atol=float(np.finfo(dtype).eps) * np.abs(exact) + 2 * pixels * eps64 * magnitude,
                     rtol=0, name="db (float64 sum, rounded once)")
        assert_close(db, db_ref, atol=dot_bound(magnitude, pixels, dtype), rtol=0, name="db vs reference")
    return y, dx, dw, db


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_conv2d_kernels_match_reference(target, case, dtype, rng):
    _, x_shape, w_shape, stride, padding = case
    check_conv(target, *setup(rng, x_shape, w_shape, stride, padding, dtype), rng=rng)


@pytest.mark.parametrize("case", [CASES[i] for i in (1, 3, 5, 11)], ids=lambda c: c[0])
def test_without_bias(target, case, rng):
    _, x_shape, w_shape, stride, padding = case
    check_conv(target, *setup(rng, x_shape, w_shape, stride, padding, np.float64, bias=False), rng=rng)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_more_than_one_group_of_tile_rows(target, dtype, rng):
    # 2 x 24 x 24 = 1152 pixels: 9 tile-rows, a full group of 8 and a last group of 1; dx likewise.
    assert launch.blocks_for(2 * 24 * 24, gpu.TILE_M) == 9
    check_conv(target, *setup(rng, (2, 24, 24, 2), (3, 3, 2, 3), 1, "same", dtype), rng=rng)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_filter_gradient_split_over_pixels(target, dtype, rng):
    # 2 x 16 x 17 = 544 pixels, one dw tile: 2 ranges of 272 pixels, summed in order by sum_slices.
    assert gpu.split_rows(27, 5, 544) == (2, 272)
    check_conv(target, *setup(rng, (2, 16, 17, 3), (3, 3, 3, 5), 1, "same", dtype), rng=rng)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_filter_gradient_in_many_short_ranges(target, monkeypatch, dtype, rng):
    # Forced: 63 pixels (7 x 9) in 8 ranges of one k step each, the last range 7 pixels long; a range
    # starts mid-row and crosses rows (and, with 3 x 3 outputs below, images) inside one step.
    monkeypatch.setattr(gpu, "SPLIT_MIN_ROWS", 5)
    assert gpu.split_rows(27, 4, 63) == (8, 8)
    check_conv(target, *setup(rng, (1, 7, 9, 3), (3, 3, 3, 4), 1, "same", dtype), rng=rng)
    assert gpu.split_rows(8, 3, 3 * 3 * 3) == (4, 8)
    check_conv(target, *setup(rng, (3, 4, 4, 2), (2, 2, 2, 3), 1, "valid", dtype), rng=rng)


def test_split_rows_depends_on_the_shape_only():
    assert gpu.split_rows(27, 5, 511) == (1, 511)  # too few pixels for two ranges of 256
    assert gpu.split_rows(576, 64, 16 * 224 * 224) == (52, 15440)  # VGG conv1_2: 5 tiles -> 260 items
    assert gpu.split_rows(4608, 512, 16 * 28 * 28) == (2, 6272)  # VGG conv4_2: 144 tiles, 2 ranges
    splits, per = gpu.split_rows(25, 6, 128 * 28 * 28)  # LeNet C1 at batch 128: one tile, many ranges
    assert splits == gpu.MAX_SPLITS and per % gpu.TILE_K == 0 and (splits - 1) * per < 128 * 28 * 28 <= splits * per


def test_tile_variant_follows_the_product_width():
    assert gpu.tile_columns(1) == gpu.tile_columns(64) == gpu.TILE_N_NARROW == 64
    assert gpu.tile_columns(65) == gpu.tile_columns(4096) == gpu.TILE_N_WIDE == 128
    assert gpu._variant("conv2d_forward", 64) == "conv2d_forward_narrow"
    assert gpu._variant("conv2d_forward", 65) == "conv2d_forward"
    assert gpu.tiles(129, 65) == 2 * 1 and gpu.tiles(129, 64) == 2 * 1 and gpu.tiles(128, 129) == 1 * 2


def test_wide_and_narrow_kernels_give_the_same_bits(conv_host, monkeypatch, rng):
    # Each output element sums its k terms in the same order whatever the tile width: identical results.
    target = harness.target(conv_host)
    x, w, b, stride, pads = setup(rng, (2, 7, 9, 5), (3, 3, 5, 6), (2, 1), "same", np.float32)
    dy = random_array(rng, reference.forward(x, w, b, stride, pads)[0].shape, np.float32)
    y, cache = gpu.forward_on(target, x, w, b, stride, pads)
    narrow = (y, *gpu.backward_on(target, dy, cache))
    monkeypatch.setattr(gpu, "tile_columns", lambda cols: gpu.TILE_N_WIDE)
    assert gpu._variant("conv2d_forward", 6) == "conv2d_forward"
    y, cache = gpu.forward_on(target, x, w, b, stride, pads)
    wide = (y, *gpu.backward_on(target, dy, cache))
    for a, c in zip(narrow, wide):
        assert np.array_equal(a, c)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bias_gradient_with_many_chunks(target, monkeypatch, dtype, rng):
    monkeypatch.setattr(reduce, "SUM_ROWS_PER_CHUNK", 4)  # 37 pixels -> 10 chunks (the last of 1) x 3 groups
    assert reduce.column_sum_chunks(37) == (4, 10)
    dy = random_array(rng, (1, 37, 1, 70), dtype)
    exact = dy.astype(np.float64).sum(axis=(0, 1, 2))
    assert_close(gpu.bias_gradient_on(target, dy), exact, atol=float(np.finfo(dtype).eps) * np.abs(exact) + 1e-13,
                 rtol=0, name="db")


def test_column_sum_chunks_grow_for_huge_batches():
    assert reduce.column_sum_chunks(257) == (256, 2)
    assert reduce.column_sum_chunks(16 * 224 * 224) == (784, 1024)  # at most SUM_MAX_CHUNKS partials per channel


def test_results_do_not_depend_on_the_grid(conv_host, rng):
    # Deterministic by design (no atomics, fixed tile, split and chunk assignment): the same bits for any
    # grid cap and either schedule, split dw included.
    x, w, b, stride, pads = setup(rng, (2, 16, 17, 3), (3, 3, 3, 70), 1, "same", np.float32)
    dy = random_array(rng, (2, 16, 17, 70), np.float32)
    runs = []
    for order, blocks in [("forward", 1), ("reverse", 2), ("forward", 1 << 20)]:
        target = harness.target(conv_host, order=order, max_grid_blocks=blocks)
        y, cache = gpu.forward_on(target, x, w, b, stride, pads)
        runs.append((y, *gpu.backward_on(target, dy, cache)))
    for other in runs[1:]:
        for a, c in zip(runs[0], other):
            assert np.array_equal(a, c)


def test_caches_are_interchangeable_with_cpu(target, rng):
    # A cache made by cpu.py drives gpu.py's backward and vice versa: same fields, same conventions.
    x, w, b, stride, pads = setup(rng, (2, 6, 5, 3), (3, 3, 3, 4), (2, 1), "same", np.float64)
    _, cache_cpu = cpu.forward(x, w, b, stride, pads)
    _, cache_gpu = gpu.forward_on(target, x, w, b, stride, pads)
    assert cache_gpu == cache_cpu and type(cache_gpu) is type(cache_cpu)
    dy = random_array(rng, cache_cpu.y_shape)
    for got, want in zip(gpu.backward_on(target, dy, cache_cpu), cpu.backward(dy, cache_gpu)):
        assert_close(got, want, atol=1e-12, rtol=1e-12, name="backward from the other device's cache")


def test_is_cross_correlation_not_flipped(target):
    x = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    w = np.array([[1.0, 0.0], [0.0, -1.0]]).reshape(2, 2, 1, 1)
    y, _ = gpu.forward_on(target, x, w, None, (1, 1), ((0, 0), (0, 0)))
    assert y[0, :, :, 0].tolist() == [[-4.0, -4.0], [-4.0, -4.0]]
    w = np.array([[0.0, 1.0], [0.0, 0.0]]).reshape(2, 2, 1, 1)  # the top-right pixel of each window
    y, cache = gpu.forward_on(target, x, w, None, (1, 1), ((0, 0), (0, 1)))
    assert y[0, :, :, 0].tolist() == [[2.0, 3.0, 0.0], [5.0, 6.0, 0.0]]  # 0: the padded column
    dx, dw, _ = gpu.backward_on(target, np.ones_like(y), cache)
    assert dx[0, :, :, 0].tolist() == [[0.0, 1.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    assert dw[:, :, 0, 0].tolist() == [[21.0, 16.0], [39.0, 28.0]]  # sums of the windows' pixels


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_inf_in_x_and_dy_propagate_like_the_reference(target, dtype, rng):
    x, w, b, stride, pads = setup(rng, (2, 6, 7, 3), (3, 3, 3, 4), (2, 1), "same", dtype)
    x[0, 2, 3, 1], x[1, 0, 0, 0], x[1, 5, 6, 2] = np.nan, np.inf, -np.inf
    y, cache = gpu.forward_on(target, x, w, b, stride, pads)
    with np.errstate(invalid="ignore", over="ignore"):
        y_ref, cache_ref = reference.forward(x, w, b, stride, pads)
    assert_close(y, y_ref, atol=1e-4, rtol=1e-4, name="y")  # the same NaN/Inf pattern, the rest close
    assert np.isnan(y).any() and np.isfinite(y).any()
    dy = random_array(rng, y.shape, dtype)
    dy[0, 1, 1, 2], dy[1, 2, 0, 0] = np.inf, np.nan
    dx, dw, db = gpu.backward_on(target, dy, cache)
    with np.errstate(invalid="ignore", over="ignore"):
        dx_ref, dw_ref, db_ref = reference.backward(dy, cache_ref)
    for got, want, name in [(dx, dx_ref, "dx"), (dw, dw_ref, "dw"), (db, db_ref, "db")]:
        assert_close(got, want, atol=1e-4, rtol=1e-4, name=name)
    assert np.isfinite(dx).any() and not np.isfinite(dx).all()


def test_non_finite_filters_propagate_to_dx(target, rng):
    # dx is evaluated as the textbook transposed convolution: each input pixel sums dy * w over all taps,
    # dy being 0 where a tap meets no output position (the border, or between strides). With w finite this
    # equals the reference exactly; an Inf or NaN weight makes those 0 * w terms NaN (IEEE), so dx is
    # non-finite wherever the reference's is, and possibly also at pixels the weight's tap never reaches.
    x, w, b, stride, pads = setup(rng, (1, 5, 6, 3), (3, 3, 3, 3), 2, "valid", np.float64)
    w[1, 2, 0, 1] = np.inf  # input channel 0
    w[0, 0, 1, 2] = np.nan  # input channel 1; channel 2's weights stay finite
    y, cache = gpu.forward_on(target, x, w, b, stride, pads)
    with np.errstate(invalid="ignore"):
        y_ref, cache_ref = reference.forward(x, w, b, stride, pads)
    assert_close(y, y_ref, atol=1e-12, rtol=1e-12, name="y")
    dy = random_array(rng, y.shape)
    dx, dw, _ = gpu.backward_on(target, dy, cache)
    with np.errstate(invalid="ignore"):
        dx_ref, dw_ref, _ = reference.backward(dy, cache_ref)
    assert_close(dw, dw_ref, atol=1e-12, rtol=1e-12, name="dw")  # dw does not involve w
    assert not np.isfinite(dx_ref[..., :2]).all() and np.isfinite(dx_ref[..., :2]).any()
    assert not np.isfinite(dx[..., :2]).any()  # every pixel of channels 0 and 1 meets a 0 * Inf or 0 * NaN
    assert_close(dx[..., 2], dx_ref[..., 2], atol=1e-12, rtol=1e-12, name="dx of the finite channel")


def test_geometry_must_fit_the_kernels_ints():
    # Per-image sizes are 32-bit ints in the kernels: a 65536 x 32769 image is refused before any launch.
    x = np.lib.stride_tricks.as_strided(np.zeros(1), shape=(1, 65536, 32769, 1), strides=(0, 0, 0, 0))
    w = np.zeros((1, 1, 1, 1))
    cache = reference.Conv2DCache(x, w, False, (1, 1), ((0, 0), (0, 0)))
    with pytest.raises(OverflowError, match=r"H\*W = 2147549184 does not fit a 32-bit int"):
        gpu._geometry(cache)


def test_launch_math_exercised_by_these_tests():
    """The shapes above really cover what the module docstring says (guards against a silent change)."""
    assert harness.HOST_MAX_GRID_BLOCKS == 3
    assert gpu.tiles(3 * 12 * 11, 9) == 4 > harness.HOST_MAX_GRID_BLOCKS  # grid_strided_rows: grid-strided
    assert gpu.tiles(1 * 3 * 6, 129) == 2 and 3 * 2 * 65 % gpu.TILE_K  # wide_tiles: 2 column tiles, partial k
    text = sources.op_source("conv2d").read_text() + (sources.op_source("conv2d").parent / "conv2d.cuh").read_text()
    for constant, value in [("kTileM", gpu.TILE_M), ("kWide", gpu.TILE_N_WIDE), ("kNarrow", gpu.TILE_N_NARROW),
                            ("kTileK", gpu.TILE_K), ("kThreads", gpu.GEMM_THREADS)]:
        assert f"constexpr int {constant} = {value};" in text  # gpu.py and the CUDA sources agree


def test_a_missing_barrier_is_caught(rng):
    # The comparisons above can fail: without the barrier that ends each k step, threads multiply slices
    # the others have not stored yet (shared memory is poisoned with NaN before every block).
    broken = load_edited("conv2d", "__syncthreads();  // next buffer written", "// (barrier removed)",
                         header="conv2d.cuh")
    x, w, b, stride, pads = setup(rng, (2, 7, 9, 3), (3, 3, 3, 4), 1, "same", np.float64)
    y, _ = gpu.forward_on(harness.target(broken), x, w, b, stride, pads)
    assert not np.allclose(y, reference.forward(x, w, b, stride, pads)[0], equal_nan=False)


# --- need_dx=False: no dx kernel launched, dw and db the same bits -----------------------------------------
def recording(target, launched):
    """``target`` whose kernel look-ups (one per launch in gpu.py) are appended to ``launched``."""
    def get_function(expression):
        launched.append(expression)
        return target.get_function(expression)
    return dataclasses.replace(target, get_function=get_function)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [CASES[i] for i in (2, 6, 13)], ids=lambda c: c[0])  # narrow, 1x1, wide dx
def test_without_dx_no_dx_kernel_runs_and_dw_db_keep_their_bits(target, case, dtype, rng):
    _, x_shape, w_shape, stride, padding = case
    x, w, b, stride, pads = setup(rng, x_shape, w_shape, stride, padding, dtype)
    y, cache = gpu.forward_on(target, x, w, b, stride, pads)
    dy = random_array(rng, y.shape, dtype)
    launched = {True: [], False: []}
    with_dx = gpu.backward_on(recording(target, launched[True]), dy, cache)
    without = gpu.backward_on(recording(target, launched[False]), dy, cache, need_dx=False)
    assert sum("conv2d_backward_data" in e for e in launched[True]) == 1
    assert [e for e in launched[True] if "conv2d_backward_data" not in e] == launched[False]
    assert with_dx[0] is not None and without[0] is None
    for got, want in zip(without[1:], with_dx[1:]):
        assert got.dtype == dtype and np.array_equal(got, want)


def test_public_gpu_path_passes_need_dx(fake_cupy, rng):
    x, w, b, stride, pads = setup(rng, (2, 7, 9, 3), (3, 3, 3, 4), 2, "same", np.float64)
    y, cache = gpu.forward(x, w, b, stride, pads)
    dy = random_array(rng, y.shape)
    dx, dw, db = gpu.backward(dy, cache)
    got = gpu.backward(dy, cache, need_dx=False)
    assert dx is not None and got[0] is None and np.array_equal(got[1], dw) and np.array_equal(got[2], db)


# --- property-based: any small geometry, either order, float32 or float64 --------------------------------
@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), h=st.integers(1, 9), wd=st.integers(1, 9), cin=st.integers(1, 5),
       cout=st.integers(1, 5), kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3),
       sw=st.integers(1, 3), pads=st.tuples(*[st.integers(0, 2)] * 4), bias=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), order=st.sampled_from(["forward", "reverse"]),
       seed=st.integers(0, 2**16))
def test_property_conv2d_kernels(conv_host, n, h, wd, cin, cout, kh, kw, sh, sw, pads, bias, dtype, order, seed):
    top, bottom, left, right = pads
    kh, kw = min(kh, h + top + bottom), min(kw, wd + left + right)  # the window must fit the padded input
    rng = np.random.default_rng(seed)
    x, w, b, stride, pads = setup(rng, (n, h, wd, cin), (kh, kw, cin, cout), (sh, sw), ((top, bottom), (left, right)),
                                  dtype, bias)
    check_conv(harness.target(conv_host, order=order), x, w, b, stride, pads, rng=rng)


# --- the public CuPy path, with a stand-in for CuPy that runs the host harness ---------------------------
def test_public_gpu_path_wiring(fake_cupy, rng):
    for args, bias in [(((2, 7, 9, 3), (3, 3, 3, 4), 2, "same"), True), (((1, 5, 5, 70), (1, 1, 70, 66), 1, 0), False)]:
        x, w, b, stride, pads = setup(rng, *args, np.float64, bias)
        y, cache = gpu.forward(x, w, b, stride, pads)
        y_ref, cache_ref = reference.forward(x, w, b, stride, pads)
        assert_close(y, y_ref, atol=1e-12, rtol=1e-12, name="y")
        dy = random_array(rng, y.shape)
        for got, want, name in zip(gpu.backward(dy, cache), reference.backward(dy, cache_ref), ("dx", "dw", "db")):
            if want is None:
                assert got is None
            else:
                assert_close(got, want, atol=1e-12, rtol=1e-12, name=name)
    fakes.assert_compiled_once(fake_cupy, "conv2d")
