"""dropout.cu executed on the CPU by the host harness, through gpu.py's own launch code: the CUDA
Philox-4x32-10 against the Random123 known answers and philox.py, masks BIT-IDENTICAL to the reference
and cpu.py for seeds with a non-zero high word (> 2^32), outputs and gradients bit-identical too.

Sizes cover 1 element, a partial Philox block (sizes not a multiple of 4), a partial tile (sizes not a
multiple of 1024 = 4 * 256), exactly one tile, and more tiles than the capped grid's 3 blocks (the
grid-stride loop over tiles). Each check runs under three schedules: threads and blocks in forward and
in reverse order with the grid capped, and forward with an uncapped grid. A copy of dropout.cu without
its first barrier must fail the same checks: the tests see the shared-memory transposition's race.
"""

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.cuda import fakes
from tests.cuda.conftest import host_build, load_edited, requires_cxx, scheduled_targets
from tests.helpers import random_array
from tests.ops.test_dropout import KNOWN_ANSWERS, SEEDS
from toolkit.cuda import launch, sources
from toolkit.cuda.host import harness
from toolkit.ops.dropout import cpu, gpu, philox, reference

pytestmark = requires_cxx

RATES = [0.0, 1 / 3, 0.9, 1 - 1e-7]
SHAPES = [(1,), (3,), (4,), (5,), (7, 3), (1023,), (1024,), (1025,), (2, 3, 5, 7), (3 * 1024 + 5,)]


dropout_host = host_build("dropout")
target = scheduled_targets("dropout_host")


def bits(a):
    """The raw bits of a float array (signed zeros and NaN payloads included)."""
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def assert_bit_identical(ours, expected, name):
    """Equal bit for bit, except that any NaN matches any NaN (the payload of x / d with x NaN is the
    hardware's business); signed zeros must match."""
    assert ours.dtype == expected.dtype and ours.shape == expected.shape, name
    nan = np.isnan(expected)
    assert np.array_equal(np.isnan(ours), nan), f"{name}: NaN pattern differs"
    assert np.array_equal(bits(ours)[~nan], bits(expected)[~nan]), f"{name}: not bit-identical"


def assert_mask_equal(mask, expected, name):
    assert mask.dtype == np.bool_ and mask.shape == expected.shape, name
    assert mask.view(np.uint8).max(initial=0) <= 1, f"{name}: a bool byte other than 0 or 1"
    assert np.array_equal(mask, expected), f"{name}: masks differ at {np.flatnonzero(mask != expected)[:5]}"


# --- the generator ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_philox_known_answers(target, dtype):
    counters = np.array([c for c, _, _ in KNOWN_ANSWERS], dtype=np.uint32)
    keys = np.array([k for _, k, _ in KNOWN_ANSWERS], dtype=np.uint32)
    words, uniforms = gpu.philox_words_on(target, counters, keys, dtype)
    assert words.dtype == np.uint32 and uniforms.dtype == dtype
    assert words.tolist() == [list(e) for _, _, e in KNOWN_ANSWERS]
    assert np.array_equal(uniforms.astype(np.float64), philox.uniform(words))  # 24 bits: exact in both


def test_philox_matches_numpy_on_random_counters_and_keys(target):
    # 700 calls: more than the capped grid's 3 x 256 threads handle in one pass.
    rng = np.random.default_rng(7)
    counters = rng.integers(0, 2**32, size=(700, 4), dtype=np.uint64).astype(np.uint32)
    keys = rng.integers(0, 2**32, size=(700, 2), dtype=np.uint64).astype(np.uint32)
    words, _ = gpu.philox_words_on(target, counters, keys, np.float32)
    assert np.array_equal(words, philox.philox4x32_10(counters.T, keys.T).T)


@pytest.mark.parametrize("seed", SEEDS + [0xDEADBEEF_00C0FFEE])
def test_element_words_follow_the_documented_mapping(target, seed):
    # Indices past 2^34 exercise the counter's high word (no array that big is needed for this).
    indices = np.array([0, 1, 2, 3, 4, 7, 1001, 2**32 + 3, 2**34 + 5, 2**40 + 2, 2**62 + 3, 2**64 - 1], dtype=np.uint64)
    words, uniforms = gpu.element_words_on(target, indices, seed)
    assert np.array_equal(words, philox.element_words(indices, seed))
    k0, k1 = philox.seed_key(seed)
    assert [int(w) for w in words] == [int(cpu.element_word(i, np.uint64(k0), np.uint64(k1))) for i in indices]
    assert np.array_equal(uniforms, philox.uniform(words))


# --- masks ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
def test_mask_is_bit_identical_to_reference(target, shape):
    for seed in SEEDS:
        for rate in RATES:
            mask = gpu.dropout_mask_on(target, shape, rate, seed)
            assert_mask_equal(mask, reference.dropout_mask(shape, rate, seed), f"{shape} rate {rate} seed {seed}")


def test_mask_equals_cpu_mask_and_keeps_the_expected_fraction(target):
    shape, rate, seed = (3 * 1024 + 5,), 0.3, 2**40 + 17
    mask = gpu.dropout_mask_on(target, shape, rate, seed)
    assert_mask_equal(mask, cpu.dropout_mask(shape, rate, seed), "vs cpu.py")
    n = mask.size  # keep fraction within 5 binomial standard deviations of 1 - rate
    assert abs(mask.mean() - (1 - rate)) < 5 * np.sqrt(rate * (1 - rate) / n)
    assert gpu.dropout_mask_on(target, shape, 0.0, seed).all()


# --- forward and backward --------------------------------------------------------------------------------
RATE_SEEDS = [(0.0, 5), (0.25, 2024), (1 / 3, 2**32 + 9), (0.8, 2**64 - 1)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (6,), (3, 5), (2, 3, 4, 5), (1025,), (3 * 1024 + 5,)])
def test_forward_backward_bit_identical_to_reference(target, shape, dtype, rng):
    x = random_array(rng, shape, dtype, scale=3.0)
    dy = random_array(rng, shape, dtype)
    for rate, seed in RATE_SEEDS:
        y, cache = gpu.forward_on(target, x, rate, seed, True)
        y_ref, cache_ref = reference.forward(x, rate, seed, True)
        name = f"{shape} {np.dtype(dtype).name} rate {rate} seed {seed}"
        assert cache._replace(mask=None) == cache_ref._replace(mask=None)
        assert_mask_equal(cache.mask, cache_ref.mask, f"mask {name}")
        assert_bit_identical(y, y_ref, f"y {name}")
        assert_bit_identical(gpu.backward_on(target, dy, cache), reference.backward(dy, cache_ref), f"dx {name}")
        if rate == 0.0:
            assert_bit_identical(y, x, "rate 0 is the identity")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_backward_bit_identical_to_cpu(dropout_host, dtype, rng):
    # cpu.py directly (tests/ops/test_dropout.py proves cpu.py == reference.py bit for bit as well).
    # One schedule: Numba's parallel calls are costly on a loaded box.
    target = harness.target(dropout_host, order="reverse")
    for shape in [(7, 3), (3 * 1024 + 5,)]:
        x = random_array(rng, shape, dtype, scale=3.0)
        dy = random_array(rng, shape, dtype)
        for rate, seed in RATE_SEEDS[1:]:
            y, cache = gpu.forward_on(target, x, rate, seed, True)
            y_cpu, cache_cpu = cpu.forward(x, rate, seed, True)
            name = f"{shape} {np.dtype(dtype).name} rate {rate} seed {seed}"
            assert_mask_equal(cache.mask, cache_cpu.mask, f"mask {name}")
            assert_bit_identical(y, y_cpu, f"y {name}")
            assert_bit_identical(gpu.backward_on(target, dy, cache), cpu.backward(dy, cache_cpu), f"dx {name}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_inf_and_signed_zero(target, dtype):
    # Dropped elements are SET to 0 (+0.0, even for NaN/Inf); kept ones are x / (1 - rate) by IEEE.
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1.5, -2.5, np.finfo(dtype).max], dtype=dtype)
    x = np.tile(specials, 40)
    for seed in (3, 2**33 + 1):
        y, cache = gpu.forward_on(target, x, 0.5, seed, True)
        with np.errstate(over="ignore"):  # max / 0.5 overflows to inf by IEEE; NumPy warns
            y_ref, cache_ref = reference.forward(x, 0.5, seed, True)
            dx_ref = reference.backward(x, cache_ref)
        assert_bit_identical(y, y_ref, f"specials seed {seed}")
        kept = cache.mask
        assert 0 < kept.sum() < kept.size
        assert np.all(bits(y[~kept]) == 0)  # +0.0 exactly where dropped
        assert np.isnan(y[kept & np.isnan(x)]).all() and np.isinf(y[kept & np.isinf(x)]).all()
        assert np.all(np.signbit(y[kept & (x == 0)]) == np.signbit(x[kept & (x == 0)]))
        assert np.isinf(y[kept & (x == np.finfo(dtype).max)]).all()  # max / 0.5 overflows to inf
        assert_bit_identical(gpu.backward_on(target, x, cache), dx_ref, f"specials backward seed {seed}")


def test_inference_is_the_identity_and_copies(target, rng):
    x = random_array(rng, (4, 5), np.float32)
    y, cache = gpu.forward_on(target, x, 0.5, 11, False)
    assert cache.mask is None and cache.training is False and y is not x
    assert_bit_identical(y, x, "inference forward")
    dy = random_array(rng, (4, 5), np.float32)
    dx = gpu.backward_on(target, dy, cache)
    assert dx is not dy
    assert_bit_identical(dx, dy, "inference backward")


def test_caches_are_interchangeable_with_cpu(target, rng):
    x = random_array(rng, (33, 7))
    dy = random_array(rng, x.shape)
    _, cache_gpu = gpu.forward_on(target, x, 0.4, 99, True)
    _, cache_cpu = cpu.forward(x, 0.4, 99, True)
    assert_bit_identical(gpu.backward_on(target, dy, cache_cpu), cpu.backward(dy, cache_gpu), "swapped caches")


# --- the kernels' contracts ------------------------------------------------------------------------------
def test_block_size_constant_matches_the_kernel_source():
    text = sources.op_source("dropout").read_text()
    assert int(re.search(r"constexpr int kThreads = (\d+);", text).group(1)) == gpu.THREADS
    assert re.search(r"constexpr int kTile = 4 \* kThreads;", text) and gpu.TILE == 4 * gpu.THREADS


def test_launch_math_exercised_by_these_tests():
    """The sizes above really cover what the module docstring says (guards against a silent change)."""
    capped = harness.HOST_MAX_GRID_BLOCKS
    fake = launch.Target("probe", np, lambda e: None, max_grid_blocks=capped)
    sizes = [int(np.prod(s)) for s in SHAPES]
    assert 1 in sizes and any(n % 4 for n in sizes) and gpu.TILE in sizes
    assert any(n % gpu.TILE and n > gpu.TILE for n in sizes)
    assert max(sizes) > capped * gpu.TILE and gpu._tiled_grid(max(sizes), fake) == ((capped,), (gpu.THREADS,))
    assert gpu._tiled_grid(1025, launch.Target("probe", np, lambda e: None, 1 << 20)) == ((2,), (gpu.THREADS,))


def test_u32_arguments_are_range_checked():
    assert gpu.u32(2**32 - 1) == np.uint32(0xFFFFFFFF) and type(gpu.u32(5)) is np.uint32
    with pytest.raises(OverflowError, match="threshold = 4294967296 does not fit a 32-bit unsigned"):
        gpu.u32(2**32, "threshold")
    with pytest.raises(OverflowError, match="does not fit"):
        gpu.u32(-1)


def test_philox_words_rejects_mismatched_rows(target):
    with pytest.raises(ValueError, match="counter and key must have as many rows; got 2 and 1"):
        gpu.philox_words_on(target, np.zeros((2, 4)), np.zeros((1, 2)))


@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_a_missing_barrier_is_caught(order):
    """Without the barrier between writing and reading the shared keep flags, a thread reads flags that
    other threads have not written yet (the harness poisons shared memory): the masks must then differ."""
    barrier = "__syncthreads();  // every flag written before any thread reads another thread's flags"
    broken = load_edited("dropout", barrier, "")
    target = harness.target(broken, order=order)
    shape, rate, seed = (2048,), 0.5, 123
    x = np.ones(shape)
    y, cache = gpu.forward_on(target, x, rate, seed, True)
    assert not np.array_equal(cache.mask, reference.dropout_mask(shape, rate, seed))
    good_y, _ = gpu.forward_on(harness.target("dropout", order=order), x, rate, seed, True)
    assert np.array_equal(good_y, reference.forward(x, rate, seed, True)[0])


# --- property-based: any shape, seed, rate and values, either order --------------------------------------
@given(x=hnp.arrays(st.sampled_from([np.float32, np.float64]), hnp.array_shapes(min_dims=1, max_dims=3, max_side=40),
                    elements=st.floats(allow_nan=True, allow_infinity=True, width=32)),
       rate=st.one_of(st.sampled_from([0.0, 0.5, 1 - 2.0**-24]), st.floats(0.0, 1.0, exclude_max=True)),
       seed=st.integers(0, 2**64 - 1), order=st.sampled_from(["forward", "reverse"]))
def test_property_bit_identical_to_reference(dropout_host, x, rate, seed, order):
    target = harness.target(dropout_host, order=order)
    y, cache = gpu.forward_on(target, x, rate, seed, True)
    with np.errstate(over="ignore"):  # float32 max / (1 - rate) overflows to inf by IEEE; NumPy warns
        y_ref, cache_ref = reference.forward(x, rate, seed, True)
        dx_ref = reference.backward(x, cache_ref)
    assert_mask_equal(cache.mask, cache_ref.mask, "property mask")
    assert_bit_identical(y, y_ref, "property forward")
    assert_bit_identical(gpu.backward_on(target, x, cache), dx_ref, "property backward")
    assert_mask_equal(gpu.dropout_mask_on(target, x.shape, rate, seed), cache_ref.mask, "property dropout_mask")


# --- the public CuPy path, with a stand-in for CuPy ------------------------------------------------------
def test_public_gpu_path_wiring(fake_cupy, rng):
    x = random_array(rng, (5, 300), np.float32)
    y, cache = gpu.forward(x, 0.3, 2**40 + 1, True)
    y_ref, cache_ref = reference.forward(x, 0.3, 2**40 + 1, True)
    assert_bit_identical(y, y_ref, "public forward")
    assert_bit_identical(gpu.backward(x, cache), reference.backward(x, cache_ref), "public backward")
    assert_mask_equal(gpu.dropout_mask((5, 300), 0.3, 2**40 + 1), cache_ref.mask, "public dropout_mask")
    fakes.assert_compiled_once(fake_cupy, "dropout")
