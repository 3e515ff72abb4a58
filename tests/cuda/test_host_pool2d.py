"""pool2d.cu executed on the CPU by the host harness, through gpu.py's own launch code, vs the NumPy
reference and cpu.py: max/avg/sum, float32 and float64, forward and backward.

Geometries cover batch 1, odd sizes, every padding spelling ("valid", "same", int, pair, asymmetric),
stride > 1, overlapping windows (stride < pool: the gather backward sums several windows) and
stride > pool (cells in no window get 0). Sizes cover one output element, fewer outputs than a warp,
channels past a warp, a partial last block, and more elements than the capped grid's threads (3 blocks
of 256), so the grid-stride loops loop. Each check runs under three schedules: threads and blocks in
forward and in reverse order with the grid capped, and forward with an uncapped grid.

Max mode is a selection: y and argmax must equal the reference's exactly. Sum and average add the same
cells in the same order as cpu.py and divide by the same count in the same dtype, so the host build is
also checked to be bit-identical to cpu.py on a subset of cases (the gather has no atomics: nothing
depends on the schedule). Numba calls are costly on a loaded box, hence the subset.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.cuda import fakes
from tests.cuda.conftest import host_build, requires_cxx, scheduled_targets
from tests.helpers import assert_close, random_array, tolerance
from toolkit.cuda import launch
from toolkit.cuda.host import harness
from toolkit.ops.pool2d import cpu, geometry, gpu, reference

pytestmark = requires_cxx

MODES = reference.MODES
# (x shape (N, H, W, C), pool_size, stride, padding)
CASES = [
    ((1, 2, 2, 1), 2, None, "valid"),  # one output element
    ((1, 4, 4, 1), 2, None, "valid"),  # fewer outputs than a warp
    ((2, 7, 5, 3), 2, None, "valid"),  # odd sizes: the last row/column belongs to no window
    ((2, 7, 5, 3), 2, None, "same"),  # ... or is padded at the bottom/right
    ((1, 6, 7, 2), 3, 1, "same"),  # overlapping windows, padding on both sides
    ((3, 9, 8, 4), (3, 2), (2, 1), "valid"),  # overlap along rows only, rectangular window
    ((2, 8, 9, 3), 2, 3, "valid"),  # stride > pool: some cells belong to no window
    ((2, 5, 6, 2), 3, 2, 1),  # int padding
    ((1, 5, 6, 3), (2, 3), (1, 2), (1, 2)),  # pair padding
    ((2, 6, 5, 2), 3, (2, 1), ((2, 0), (1, 2))),  # asymmetric ((top, bottom), (left, right))
    ((1, 3, 3, 33), 3, 1, "same"),  # channels past a warp: 297 outputs, a partial second block
    ((2, 12, 10, 40), 2, None, "valid"),  # 2400 outputs, 9600 inputs: > 3 blocks of 256 threads
    ((1, 11, 13, 5), (4, 3), (3, 2), "same"),  # a 4x3 window with stride (3, 2): uneven same padding
]


def normalised(x_shape, pool_size, stride, padding):
    pool_pair = (pool_size, pool_size) if isinstance(pool_size, int) else tuple(pool_size)
    stride_pair = pool_pair if stride is None else (stride, stride) if isinstance(stride, int) else tuple(stride)
    pads = geometry.resolve_padding(padding, x_shape[1:3], pool_pair, stride_pair)
    geometry.check_windows(x_shape[1:3], pool_pair, pads)
    return pool_pair, stride_pair, pads


pool2d_host = host_build("pool2d")
target = scheduled_targets("pool2d_host")


def check_against_reference(target, x, dy_rng, args):
    """gpu.py's forward and backward on the host target against the reference."""
    dtype = x.dtype
    mode = args[-1]
    y, cache = gpu.forward_on(target, x, *args)
    y_ref, cache_ref = reference.forward(x, *args)
    assert y.dtype == dtype and y.shape == y_ref.shape == cache.y_shape
    assert cache._fields == cache_ref._fields and cache[:6] == cache_ref[:6]
    assert_close(y, y_ref, **tolerance(dtype), name=f"{mode} forward")
    if mode == "max":  # a selection: the very same values and cells
        assert cache.argmax.dtype == np.int64 and cache.argmax.shape == y.shape
        assert np.array_equal(y, y_ref) and np.array_equal(cache.argmax, cache_ref.argmax)
    else:
        assert cache.argmax is None
    dy = random_array(dy_rng, y.shape, dtype)
    dx = gpu.backward_on(target, dy, cache)
    assert dx.dtype == dtype and dx.shape == x.shape
    assert_close(dx, reference.backward(dy, cache_ref), **tolerance(dtype), name=f"{mode} backward")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-p{c[1]}-s{c[2]}-{c[3]}" for c in CASES])
def test_kernels_match_reference(target, case, mode, dtype, rng):
    x_shape, pool_size, stride, padding = case
    x = random_array(rng, x_shape, dtype, scale=2.0)
    check_against_reference(target, x, rng, (*normalised(x_shape, pool_size, stride, padding), mode))


# Overlap, stride > pool, asymmetric padding, channels past a warp, the grid-stride loop.
PARITY_CASES = [CASES[i] for i in (4, 6, 9, 10, 11)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bit_identical_to_cpu(pool2d_host, dtype, rng):
    # Same cells, same order, same dtype, same division as cpu.py: not just close, equal (reverse schedule,
    # capped grid: the order in which threads run cannot matter, there are no atomics).
    target = harness.target(pool2d_host, order="reverse")
    for x_shape, pool_size, stride, padding in PARITY_CASES:
        x = random_array(rng, x_shape, dtype, scale=2.0)
        for mode in MODES:
            args = (*normalised(x_shape, pool_size, stride, padding), mode)
            y, cache = gpu.forward_on(target, x, *args)
            y_cpu, cache_cpu = cpu.forward(x, *args)
            assert np.array_equal(y, y_cpu), f"{mode} {x_shape} forward differs from cpu.py"
            dy = random_array(rng, y.shape, dtype)
            assert np.array_equal(gpu.backward_on(target, dy, cache), cpu.backward(dy, cache_cpu)), \
                f"{mode} {x_shape} backward differs from cpu.py"


@pytest.mark.parametrize("mode", MODES)
def test_caches_are_interchangeable_with_cpu(target, mode, rng):
    # A cache made by cpu.py drives gpu.py's backward and vice versa: same fields, same conventions.
    x = random_array(rng, (2, 6, 5, 3), scale=2.0)
    args = (*normalised(x.shape, 3, 1, "same"), mode)
    y_cpu, cache_cpu = cpu.forward(x, *args)
    y_gpu, cache_gpu = gpu.forward_on(target, x, *args)
    dy = random_array(rng, y_cpu.shape)
    assert np.array_equal(gpu.backward_on(target, dy, cache_cpu), cpu.backward(dy, cache_gpu))


def test_ties_go_to_the_first_maximum_in_row_major_order(target):
    x = np.zeros((1, 2, 2, 3))
    x[0, :, :, 0] = [[1.0, 3.0], [3.0, 3.0]]  # three tied maxima: (0, 1) comes first
    x[0, :, :, 1] = [[-2.0, -2.0], [-2.0, -2.0]]  # all tied: the top-left cell
    x[0, :, :, 2] = [[0.0, -0.0], [0.0, 0.0]]  # 0 and -0 compare equal: the first stays
    y, cache = gpu.forward_on(target, x, (2, 2), (2, 2), ((0, 0), (0, 0)), "max")
    assert list(y[0, 0, 0]) == [3.0, -2.0, 0.0] and list(cache.argmax[0, 0, 0]) == [1, 0, 0]
    assert not np.signbit(y[0, 0, 0, 2])
    dx = gpu.backward_on(target, np.ones_like(y), cache)
    assert dx[0, :, :, 0].tolist() == [[0.0, 1.0], [0.0, 0.0]]
    assert dx[0, :, :, 1].tolist() == [[1.0, 0.0], [0.0, 0.0]]


def test_padded_cells_are_never_selected_nor_counted(target):
    # All values negative: were a padded cell a 0, max would return 0; the average divides by real cells.
    x = -np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    pads = ((1, 1), (1, 1))
    y_max, cache = gpu.forward_on(target, x, (2, 2), (2, 2), pads, "max")
    assert y_max[0, :, :, 0].tolist() == [[-1.0, -2.0], [-4.0, -5.0]]
    assert cache.argmax[0, :, :, 0].tolist() == [[0, 1], [3, 4]]
    y_avg, _ = gpu.forward_on(target, x, (2, 2), (2, 2), pads, "avg")
    assert y_avg[0, :, :, 0].tolist() == [[-1.0, -2.5], [-5.5, -7.0]]  # 1, 2, 2 and 4 real cells
    y_sum, cache_sum = gpu.forward_on(target, x, (2, 2), (2, 2), pads, "sum")
    assert y_sum[0, :, :, 0].tolist() == [[-1.0, -5.0], [-11.0, -28.0]]
    dx = gpu.backward_on(target, np.ones_like(y_sum), cache_sum)
    assert dx.tolist() == np.ones_like(x).tolist()  # each real cell sits in exactly one window


def test_overlapping_windows_accumulate_gradients(target):
    # 3x3 windows, stride 1, on a 4x4 input: the 4 centre cells lie in all 4 windows.
    x = np.arange(16.0).reshape(1, 4, 4, 1)
    y, cache = gpu.forward_on(target, x, (3, 3), (1, 1), ((0, 0), (0, 0)), "sum")
    dx = gpu.backward_on(target, np.ones_like(y), cache)
    assert dx[0, :, :, 0].tolist() == [[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]]
    x = np.zeros((1, 4, 4, 1))
    x[0, 2, 2, 0] = 5.0  # a centre cell: the maximum of all 4 windows
    y, cache = gpu.forward_on(target, x, (3, 3), (1, 1), ((0, 0), (0, 0)), "max")
    assert y[0, :, :, 0].tolist() == [[5.0, 5.0], [5.0, 5.0]] and (cache.argmax == 2 * 4 + 2).all()
    dy = np.array([1.0, 2.0, 4.0, 8.0]).reshape(y.shape)
    dx = gpu.backward_on(target, dy, cache)
    assert dx[0, 2, 2, 0] == 15.0 and dx.sum() == 15.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_inf_follow_ieee(target, dtype):
    x = np.array([[1.0, np.nan, 5.0, np.inf], [2.0, 7.0, -np.inf, 0.0],
                  [-np.inf, -np.inf, 3.0, 4.0], [-np.inf, -np.inf, np.inf, -np.inf]], dtype=dtype)[None, :, :, None]
    args = ((2, 2), (2, 2), ((0, 0), (0, 0)))
    for mode in MODES:
        y, _ = gpu.forward_on(target, x, *args, mode)
        with np.errstate(invalid="ignore"):  # inf + (-inf) is NaN by IEEE; NumPy warns, the kernel does not
            y_ref, _ = reference.forward(x, *args, mode)
        assert_close(y, y_ref, atol=0, rtol=0, name=f"{mode} with NaN/Inf")
    y, cache = gpu.forward_on(target, x, *args, "max")
    assert np.isnan(y[0, 0, 0, 0]) and cache.argmax[0, 0, 0, 0] == 1  # the NaN wins
    assert y[0, 0, 1, 0] == np.inf and y[0, 1, 0, 0] == -np.inf  # an all -inf window is -inf
    dx = gpu.backward_on(target, np.ones_like(y), cache)
    assert dx[0, 0, 1, 0] == 1.0 and dx[0, 2, 0, 0] == 1.0  # the NaN cell; the first -inf
    assert dx.sum() == 4.0


def test_notes_004_max_pool_example(target):
    # Document 004, "Pooling layer": 2x2 max pooling with stride 2 (the matrices of tests/ops/test_pool2d.py).
    x = np.array([[0.1, 0, 1.0, 0.4], [0, 0.5, 0.4, 1.6], [0.3, 0.2, 1.7, 1.1], [0.2, 0.4, 1.1, 1.7]])[None, :, :, None]
    y, cache = gpu.forward_on(target, x, (2, 2), (2, 2), ((0, 0), (0, 0)), "max")
    assert y[0, :, :, 0].tolist() == [[0.5, 1.6], [0.4, 1.7]]
    assert cache.argmax[0, 1, 1, 0] == 2 * 4 + 2  # 1.7 twice in the window: the first one


def test_launch_math_exercised_by_these_tests():
    """The case list really covers what the module docstring says (guards against a silent change)."""
    capped = harness.HOST_MAX_GRID_BLOCKS
    fake = launch.Target("probe", np, lambda e: None, max_grid_blocks=capped)
    threads = launch.THREADS_PER_BLOCK
    outputs = []
    for x_shape, pool_size, stride, padding in CASES:
        pool_pair, stride_pair, pads = normalised(x_shape, pool_size, stride, padding)
        out = geometry.output_hw(x_shape[1:3], pool_pair, stride_pair, pads)
        outputs.append(x_shape[0] * out[0] * out[1] * x_shape[3])
    assert min(outputs) == 1 and any(1 < n < 32 for n in outputs)
    assert any(n % threads and threads < n < 2 * threads for n in outputs)  # a partial second block
    assert max(outputs) > capped * threads and launch.grid_1d(max(outputs), fake) == ((capped,), (threads,))
    pairs = [normalised(*case)[:2] for case in CASES]
    assert any(s[0] < p[0] or s[1] < p[1] for p, s in pairs)  # overlapping windows
    assert any(s[0] > p[0] or s[1] > p[1] for p, s in pairs)  # cells in no window


def test_int32_geometry_arguments_are_range_checked():
    with pytest.raises(OverflowError, match="H = 2147483648 does not fit a 32-bit int"):
        gpu._geometry((1, 2**31, 1, 1), (1, 1), (1, 1), (1, 1), ((0, 0), (0, 0)))


# --- property-based: any geometry, any values, either order --------------------------------------------
@st.composite
def configs(draw):
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 5))
    pool_pair = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride_pair = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    pads = tuple((draw(st.integers(0, k - 1)), draw(st.integers(0, k - 1))) for k in pool_pair)
    h = draw(st.integers(max(1, pool_pair[0] - sum(pads[0])), 9))
    w = draw(st.integers(max(1, pool_pair[1] - sum(pads[1])), 9))
    return (n, h, w, c), pool_pair, stride_pair, pads


@given(config=configs(), mode=st.sampled_from(MODES), order=st.sampled_from(["forward", "reverse"]),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16),
       specials=st.booleans())
def test_property_any_geometry_matches_reference(pool2d_host, config, mode, order, dtype, seed, specials):
    x_shape, pool_pair, stride_pair, pads = config
    rng = np.random.default_rng(seed)
    # Values on a coarse grid make ties common; optionally sprinkle NaN and +-inf.
    x = (rng.integers(-3, 4, size=x_shape) * 0.5).astype(dtype)
    if specials:
        special_values = np.array([np.nan, np.inf, -np.inf], dtype)
        x.reshape(-1)[rng.integers(0, x.size, size=3)] = special_values[rng.integers(0, 3, size=3)]
    target = harness.target(pool2d_host, order=order)
    args = (pool_pair, stride_pair, pads, mode)
    with np.errstate(invalid="ignore"):  # inf - inf in the reference's sums
        y, cache = gpu.forward_on(target, x, *args)
        y_ref, cache_ref = reference.forward(x, *args)
        assert_close(y, y_ref, **tolerance(dtype), name=f"{mode} forward")
        if mode == "max":
            assert np.array_equal(cache.argmax, cache_ref.argmax)
        dy = rng.standard_normal(y.shape).astype(dtype)
        assert_close(gpu.backward_on(target, dy, cache), reference.backward(dy, cache_ref), **tolerance(dtype),
                     name=f"{mode} backward")


# --- the public CuPy path, with a stand-in for CuPy ------------------------------------------------------
def test_public_gpu_path_wiring(fake_cupy, rng):
    for mode in MODES:
        x = random_array(rng, (2, 7, 6, 3), scale=2.0)
        args = (*normalised(x.shape, 3, 2, "same"), mode)
        y, cache = gpu.forward(x, *args)
        y_ref, cache_ref = reference.forward(x, *args)
        assert_close(y, y_ref, **tolerance(np.float64), name=mode)
        dy = random_array(rng, y.shape)
        assert_close(gpu.backward(dy, cache), reference.backward(dy, cache_ref), **tolerance(np.float64), name=mode)
    fakes.assert_compiled_once(fake_cupy, "pool2d")
