"""conv2d's direct path (toolkit/ops/conv2d/direct.py): which layers take it, the reference's values
through it (float32 and float64, strides, padding, pixel and tap remainders, one and two threads),
finite differences, need_dx, non-finite values, and scratch that holds garbage from an earlier call."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import assert_close, random_array, tolerance
from tests.ops.test_conv2d import _magnitudes, _setup, assert_within_dot_bound, check_gradients_by_finite_differences
from toolkit.ops import conv2d as conv
from toolkit.ops import scratch as scratch_module
from toolkit.ops.conv2d import cpu, direct, reference

# (id, x shape (N, H, W, Cin), w shape (KH, KW, Cin, Cout), stride, padding)
CASES = [
    ("lenet_c3", (4, 14, 14, 6), (5, 5, 6, 16), 1, "valid"),  # 100 pixels: whole tiles; a row of 30 taps
    ("remainder_pixels_padded", (3, 9, 11, 3), (3, 2, 3, 16), (2, 1), ((1, 2), (0, 1))),  # 5x11: 3 left over
    ("two_vectors_of_channels", (2, 7, 7, 5), (3, 3, 5, 32), (1, 2), 1),
    ("row_shorter_than_a_vector", (2, 6, 5, 1), (2, 2, 1, 16), 1, "same"),  # 2 taps a filter row
    ("taps_2_then_1", (2, 8, 8, 1), (3, 3, 1, 16), 1, "valid"),  # 3 taps a row: a tile of 2, then of 1
    ("tall_kernel_stride3", (2, 12, 9, 4), (4, 3, 4, 16), (3, 2), ((2, 0), (1, 1))),
    ("one_output_pixel", (2, 5, 5, 2), (5, 5, 2, 16), 1, "valid"),  # only the single-pixel loops
    ("eight_channels", (2, 6, 7, 2), (2, 3, 2, 8), 1, "same"),  # a whole vector in float64, half in float32
    ("lenet_c1", (3, 12, 12, 1), (5, 5, 1, 6), 1, "same"),  # 6 channels: 10 (float32) or 2 spare lanes
    ("one_channel_out", (2, 7, 6, 3), (3, 3, 3, 1), (1, 2), "valid"),
    ("one_by_one_stride2", (2, 7, 6, 5), (1, 1, 5, 20), 2, "valid"),  # 1x1 strided: no plain matrix product
]


@pytest.fixture(params=["serial", "parallel"])
def threads(request, monkeypatch):
    """Blocks of images one after another, or on Numba's threads (the thresholds are set for speed)."""
    monkeypatch.setattr(cpu, "IMAGE_PARALLEL_MIN_WORK", 1 << 62 if request.param == "serial" else 0)
    return request.param


@pytest.fixture
def direct_calls(monkeypatch):
    """Records the direct path's calls; takes it for images of any size (MIN_PIXELS is set for speed)."""
    monkeypatch.setattr(direct, "MIN_PIXELS", 1)
    calls = []
    real_forward, real_backward = direct.forward, direct.backward
    monkeypatch.setattr(direct, "forward", lambda *a: calls.append("forward") or real_forward(*a))
    monkeypatch.setattr(direct, "backward", lambda *a: calls.append("backward") or real_backward(*a))
    return calls


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_direct_path_matches_reference(case, dtype, threads, direct_calls, rng):
    _, x_shape, w_shape, stride, padding = case
    x, w, b, stride, pads = _setup(rng, x_shape, w_shape, stride, padding, dtype)
    y, cache = conv.conv2d_forward(x, w, b, stride=stride, padding=padding)
    y_ref, cache_ref = reference.forward(x, w, b, stride, pads)
    dy = random_array(rng, y_ref.shape, dtype)
    grads = conv.conv2d_backward(dy, cache)
    assert direct_calls == ["forward", "backward"]
    mags = _magnitudes(x, w, b, dy, stride, pads)
    for name, ours, ref, mag in zip(("y", "dx", "dw", "db"), (y, *grads), (y_ref, *reference.backward(dy, cache_ref)),
                                    mags):
        assert ours.dtype == dtype and ours.flags.c_contiguous, f"{name}: {ours.dtype}, {ours.flags}"
        assert_within_dot_bound(ours, ref, mag, dtype, name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bands_of_one_row_give_the_reference_values_and_the_same_forward_bits(dtype, rng, monkeypatch):
    """BAND_BYTES of 1: every output row is its own band (11 pixels a row: tiles of 4 and leftovers in each)."""
    x, w, b, stride, pads = _setup(rng, (3, 9, 11, 3), (3, 3, 3, 16), 1, "same", dtype)
    y_whole, _ = cpu.forward(x, w, b, stride, pads)
    monkeypatch.setattr(direct, "BAND_BYTES", 1)
    assert direct._geometry(x, w, stride, 9, 11)[-1] == 1
    y, cache = cpu.forward(x, w, b, stride, pads)
    np.testing.assert_array_equal(y, y_whole)  # a pixel's sum is the same operations in any band
    dy = random_array(rng, y.shape, dtype)
    y_ref, cache_ref = reference.forward(x, w, b, stride, pads)
    mags = _magnitudes(x, w, b, dy, stride, pads)
    for name, ours, ref, mag in zip(("y", "dx", "dw", "db"), (y, *cpu.backward(dy, cache)),
                                    (y_ref, *reference.backward(dy, cache_ref)), mags):
        assert_within_dot_bound(ours, ref, mag, dtype, name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dw_has_the_same_bits_on_one_thread_or_two(dtype, rng, monkeypatch):
    x, w, b, stride, pads = _setup(rng, (9, 10, 10, 3), (3, 3, 3, 16), 1, "same", dtype)
    results = []
    for work in (1 << 62, 0):
        monkeypatch.setattr(cpu, "IMAGE_PARALLEL_MIN_WORK", work)
        y, cache = cpu.forward(x, w, b, stride, pads)
        results.append((y, *cpu.backward(np.ones_like(y), cache)))
    for name, serial, parallel in zip(("y", "dx", "dw", "db"), *results):
        assert np.array_equal(serial, parallel), name


def test_backward_matches_finite_differences(rng, direct_calls):
    x, w, b, stride, pads = _setup(rng, (2, 5, 6, 2), (3, 2, 2, 8), (2, 1), ((1, 0), (2, 1)), np.float64)
    check_gradients_by_finite_differences(cpu, x, w, b, stride, pads, rng)
    assert direct_calls[:2] == ["forward", "backward"]  # the path under test ran


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_without_dx_dw_and_db_keep_their_bits(dtype, threads, rng):
    x, w, b, stride, pads = _setup(rng, (3, 9, 11, 3), (3, 2, 3, 16), (2, 1), ((1, 2), (0, 1)), dtype)
    y, cache = cpu.forward(x, w, b, stride, pads)
    dy = random_array(rng, y.shape, dtype)
    dx, dw, db = cpu.backward(dy, cache)
    none, dw_only, db_only = cpu.backward(dy, cache, need_dx=False)
    assert dx is not None and none is None
    assert np.array_equal(dw, dw_only) and np.array_equal(db, db_only)


@pytest.mark.parametrize("where", ["x", "w", "dy"])
@pytest.mark.parametrize("special", [np.inf, -np.inf, np.nan])
def test_non_finite_values_land_where_the_references_do(where, special, rng):
    """The reference multiplies exactly the terms the kernels do, so NaN and inf must appear in the same
    places and nowhere else: in particular the spare lanes of dx's last vector of a filter row, which
    add -0.0 to the neighbouring elements, must carry nothing there from an infinite dy or w."""
    x, w, b, stride, pads = _setup(rng, (2, 9, 8, 3), (3, 3, 3, 16), 1, "valid", np.float64)
    if where == "x":
        x[0, 4, 3, 1] = special
    elif where == "w":
        w[1, 2, 0, 5] = special
    y, cache = conv.conv2d_forward(x, w, b)
    y_ref, cache_ref = reference.forward(x, w, b, stride, pads)
    dy = random_array(rng, y.shape)
    if where == "dy":
        dy[1, 6, 5, 3] = special
    ours = (y, *conv.conv2d_backward(dy, cache))
    for name, a, ref in zip(("y", "dx", "dw", "db"), ours, (y_ref, *reference.backward(dy, cache_ref))):
        assert_close(a, ref, **tolerance(np.float64), name=name)  # NaN for NaN, the same infinities
    assert not all(np.isfinite(a).all() for a in ours), "the special value must reach the results"


def test_garbage_in_the_reused_grid_does_not_leak(rng):
    """The padded grid is scratch reused between calls: fill it with NaN (0xFF bytes) between calls
    and the results must not change (its zero border is rewritten every call)."""
    x, w, b, stride, pads = _setup(rng, (2, 6, 6, 3), (3, 3, 3, 16), 1, "same", np.float64)
    y0, cache = cpu.forward(x, w, b, stride, pads)
    dy = random_array(rng, y0.shape)
    grads0 = cpu.backward(dy, cache)
    grid = getattr(scratch_module._buffers, "conv2d.direct.grid")
    grid[...] = 0xFF
    y1, cache = cpu.forward(x, w, b, stride, pads)
    np.testing.assert_array_equal(y1, y0)
    grid[...] = 0xFF
    for before, after in zip(grads0, cpu.backward(dy, cache)):
        np.testing.assert_array_equal(after, before)


# --- which layers take the path -------------------------------------------------------------------------
@pytest.mark.parametrize("w_shape,dtype,out_hw,expected", [
    ((5, 5, 6, 16), np.float32, (10, 10), True),  # LeNet's C3
    ((5, 5, 1, 6), np.float32, (28, 28), True),  # C1: 6 channels padded to a vector of 16
    ((3, 3, 32, 64), np.float32, (30, 30), True),  # w 74 KB
    ((3, 3, 64, 64), np.float32, (56, 56), True),  # dy 800 KB an image: taken in bands
    ((3, 3, 128, 128), np.float32, (16, 16), False),  # w 590 KB
    ((3, 3, 120, 60), np.float32, (8, 8), False),  # w 253 KB with its 60 channels, 270 KB padded to 64
    ((5, 5, 16, 120), np.float32, (1, 1), False),  # LeNet's C5: one output pixel an image
    ((3, 3, 16, 32), np.float32, (4, 4), True),  # 16 pixels
])
def test_applies(w_shape, dtype, out_hw, expected):
    assert direct.applies(w_shape, dtype, *out_hw) is expected


def test_a_plain_1x1_layer_is_one_matrix_product_not_direct(rng, direct_calls):
    x, w, b, stride, pads = _setup(rng, (2, 5, 6, 8), (1, 1, 8, 16), 1, "valid", np.float32)
    y, cache = cpu.forward(x, w, b, stride, pads)
    cpu.backward(np.ones_like(y), cache)
    assert direct_calls == []


@pytest.mark.parametrize("driver", ["_backward_serial", "_backward_parallel"])
def test_without_need_dx_the_kernels_leave_dx_alone(driver, rng):
    """The kernels are Numba code (no spy inside): hand them a dx filled with a sentinel. With need_dx
    they add the gradient into it; without, every sentinel survives and dw has the same bits."""
    n, h, wd, cin, kh, kw, cout = 3, 9, 8, 3, 3, 3, 16
    oh, ow = h - kh + 1, wd - kw + 1
    x, w, dy = (random_array(rng, s) for s in ((n, h, wd, cin), (kh, kw, cin, cout), (n, oh, ow, cout)))
    run = kw * cin
    wt = np.zeros((kh, cout, -(-run // 8) * 8))
    wt[:, :, :run] = w.reshape(kh, run, cout).transpose(0, 2, 1)
    results = {}
    for need_dx, start in [(True, 0.0), (False, 7.0)]:
        dx = np.full(x.shape, start)
        dw_partial = np.zeros((n, kh * kw * cin * cout))  # one image per block
        getattr(direct, driver)(x.reshape(-1), wt.reshape(-1), dy.reshape(-1), dx.reshape(-1), dw_partial, need_dx,
                                h, wd, cin, kh, kw, cout, 1, 1, oh, ow, 2, 1)  # bands of 2 rows
        results[need_dx] = dx, dw_partial
    assert np.all(results[False][0] == 7.0), "the dx kernel ran without need_dx"
    assert np.array_equal(results[False][1], results[True][1])
    dx_ref, dw_ref, _ = reference.backward(dy, reference.Conv2DCache(x, w, False, (1, 1), ((0, 0), (0, 0))))
    assert_close(results[True][0], dx_ref, **tolerance(np.float64), name="dx with need_dx")
    assert_close(results[True][1].sum(axis=0).reshape(w.shape), dw_ref, **tolerance(np.float64), name="dw")


def test_one_large_image_goes_where_threads_split_it():
    w = np.zeros((3, 3, 16, 16), np.float32)
    assert 60 * 60 * 144 >= cpu.IMAGE_PARALLEL_MIN_WORK > 4 * 4 * 144
    assert cpu._direct(2, w, 60, 60, 144)
    assert not cpu._direct(1, w, 60, 60, 144)  # one image, much work: BLAS's threads, not one thread
    assert cpu._direct(1, w, 4, 4, 144)  # one small image: one thread is enough


# --- random geometries ----------------------------------------------------------------------------------------
side = st.integers(0, 2)


@given(n=st.integers(1, 3), h=st.integers(1, 9), wd=st.integers(1, 9), cin=st.integers(1, 4),
       cout=st.integers(1, 17), kh=st.integers(1, 4), kw=st.integers(1, 4),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       padding=st.tuples(st.tuples(side, side), st.tuples(side, side)), seed=st.integers(0, 2**16))
def test_property_direct_matches_reference(n, h, wd, cin, cout, kh, kw, stride, padding, seed):
    if kh > h + sum(padding[0]) or kw > wd + sum(padding[1]) or kh * kw == 1:  # 1x1: see its own test
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(direct, "MIN_PIXELS", 1)  # any image size
        _check_random_geometry(n, h, wd, cin, cout, kh, kw, stride, padding, seed)


def _check_random_geometry(n, h, wd, cin, cout, kh, kw, stride, padding, seed):
    rng = np.random.default_rng(seed)
    x, w, b = random_array(rng, (n, h, wd, cin)), random_array(rng, (kh, kw, cin, cout)), random_array(rng, (cout,))
    y, cache = cpu.forward(x, w, b, stride, padding)
    assert cpu._direct(n, w, *y.shape[1:3], kh * kw * cin)
    y_ref, cache_ref = reference.forward(x, w, b, stride, padding)
    assert_close(y, y_ref, **tolerance(np.float64), name="y")
    dy = random_array(rng, y.shape)
    for name, ours, ref in zip(("dx", "dw", "db"), cpu.backward(dy, cache), reference.backward(dy, cache_ref)):
        assert_close(ours, ref, **tolerance(np.float64), name=name)
