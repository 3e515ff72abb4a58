"""dropout on a real GPU: the device's Philox-4x32-10 against the Random123 known answers, masks and
outputs BIT-IDENTICAL to cpu.py for the same seed (the design's promise), the public API on CuPy arrays
(dropout_forward/backward, dropout_mask under backend.use("gpu")), the host harness vs the device,
dispatch and validation.

Deselected by default (pyproject: -m 'not gpu'). On a machine with a GPU:

    python -m pytest -m gpu tests/cuda/test_gpu_dropout.py
    compute-sanitizer --tool memcheck  python -m pytest -m gpu tests/cuda/test_gpu_dropout.py
    compute-sanitizer --tool racecheck python -m pytest -m gpu tests/cuda/test_gpu_dropout.py -k bit_identical
    compute-sanitizer --tool synccheck python -m pytest -m gpu tests/cuda/test_gpu_dropout.py

Asking for these tests where the GPU is not usable is an error (with the reason), not a skip.
"""

import numpy as np
import pytest

from tests.cuda.conftest import requires_cxx
from tests.helpers import random_array
from toolkit import backend
from toolkit.cuda import modules
from toolkit.ops import dropout as drop
from toolkit.ops.dropout import cpu, gpu, philox, reference

cp = pytest.importorskip("cupy")
pytestmark = pytest.mark.gpu

KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]
SEEDS = [0, 2**32 - 1, 2**32, 0x0123456789ABCDEF, 2**64 - 1]
# 1 element, a partial Philox block, a partial tile, many tiles, and sizes that fill the GPU.
SHAPES = [(1,), (5,), (1025,), (3, 5, 7), (257, 129), (16, 1024, 1024), (10_000_003,)]


def bits(a):
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def assert_bit_identical(ours, expected, name):
    """Bit for bit, except that any NaN matches any NaN; signed zeros must match."""
    assert ours.dtype == expected.dtype and ours.shape == expected.shape, name
    nan = np.isnan(expected)
    assert np.array_equal(np.isnan(ours), nan), f"{name}: NaN pattern differs"
    assert np.array_equal(bits(ours)[~nan], bits(expected)[~nan]), f"{name}: not bit-identical"


def test_dispatch_picks_the_gpu_module():
    assert backend.dispatch("dropout", x=cp.ones(3)) is gpu
    with pytest.raises(backend.DeviceMismatchError, match="two devices"):
        backend.dispatch("dropout", dy=np.ones(3), mask=cp.ones(3, dtype=bool))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_philox_known_answers_on_the_device(dtype):
    target = modules.target("dropout")
    counters = cp.asarray(np.array([c for c, _, _ in KNOWN_ANSWERS], dtype=np.uint32))
    keys = cp.asarray(np.array([k for _, k, _ in KNOWN_ANSWERS], dtype=np.uint32))
    words, uniforms = gpu.philox_words_on(target, counters, keys, dtype)
    assert cp.asnumpy(words).tolist() == [list(e) for _, _, e in KNOWN_ANSWERS]
    assert np.array_equal(cp.asnumpy(uniforms).astype(np.float64), philox.uniform(cp.asnumpy(words)))


def test_element_mapping_on_the_device():
    indices = np.array([0, 1, 3, 4, 1001, 2**32 + 3, 2**34 + 5, 2**62 + 3, 2**64 - 1], dtype=np.uint64)
    for seed in SEEDS:
        words, _ = gpu.element_words_on(modules.target("dropout"), cp.asarray(indices), seed)
        assert np.array_equal(cp.asnumpy(words), philox.element_words(indices, seed)), seed


@pytest.mark.parametrize("shape", SHAPES)
def test_masks_bit_identical_to_cpu(shape):
    for seed in SEEDS:
        for rate in (0.0, 0.3, 0.9):
            mask = gpu.dropout_mask(shape, rate, seed)
            assert isinstance(mask, cp.ndarray) and mask.dtype == cp.bool_ and mask.shape == shape
            assert np.array_equal(cp.asnumpy(mask), cpu.dropout_mask(shape, rate, seed)), (shape, rate, seed)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_backward_bit_identical_to_cpu(shape, dtype, rng):
    x_np = random_array(rng, shape, dtype, scale=3.0)
    dy_np = random_array(rng, shape, dtype)
    for rate, seed in [(0.25, 2024), (1 / 3, 2**40 + 9), (0.8, 2**64 - 1)]:
        y, cache = drop.dropout_forward(cp.asarray(x_np), rate, seed)
        assert isinstance(y, cp.ndarray) and isinstance(cache.mask, cp.ndarray) and cache.mask.dtype == cp.bool_
        y_cpu, cache_cpu = cpu.forward(x_np, rate, seed, True)
        assert np.array_equal(cp.asnumpy(cache.mask), cache_cpu.mask)
        assert_bit_identical(cp.asnumpy(y), y_cpu, f"forward {shape} {rate} {seed}")
        dx = drop.dropout_backward(cp.asarray(dy_np), cache)
        assert_bit_identical(cp.asnumpy(dx), cpu.backward(dy_np, cache_cpu), f"backward {shape} {rate} {seed}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_inf_and_signed_zero_match_the_cpu(dtype):
    x_np = np.tile(np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1.5, np.finfo(dtype).max], dtype=dtype), 300)
    y, cache = drop.dropout_forward(cp.asarray(x_np), 0.5, 77)
    y_cpu, _ = cpu.forward(x_np, 0.5, 77, True)
    assert_bit_identical(cp.asnumpy(y), y_cpu, "specials")
    dropped = ~cp.asnumpy(cache.mask)
    assert np.all(bits(cp.asnumpy(y))[dropped] == 0)  # a dropped NaN/Inf becomes +0.0


def test_public_dropout_mask_follows_the_backend():
    with backend.use("gpu"):
        mask = drop.dropout_mask((33, 65), 0.4, 2**33)
    assert isinstance(mask, cp.ndarray)
    assert np.array_equal(cp.asnumpy(mask), drop.dropout_mask((33, 65), 0.4, 2**33))  # the CPU's, back on "cpu"


def test_inference_is_the_identity(rng):
    x = cp.asarray(random_array(rng, (4, 5), np.float32))
    y, cache = drop.dropout_forward(x, 0.5, 1, training=False)
    assert cache.mask is None and y is not x and bool((y == x).all())
    dx = drop.dropout_backward(x, cache)
    assert dx is not x and bool((dx == x).all())


@requires_cxx
def test_host_harness_agrees_with_the_device(rng):
    from toolkit.cuda.host import harness

    x_np = random_array(rng, (5, 1025), np.float32)
    y_host, cache_host = gpu.forward_on(harness.target("dropout"), x_np, 0.3, 2**35 + 3, True)
    y_gpu, cache_gpu = gpu.forward(cp.asarray(x_np), 0.3, 2**35 + 3, True)
    assert np.array_equal(cp.asnumpy(cache_gpu.mask), cache_host.mask)
    assert_bit_identical(cp.asnumpy(y_gpu), y_host, "GPU vs host harness")


def test_strided_gpu_input_is_copied(rng):
    base = cp.asarray(random_array(rng, (6, 8)))
    view = base[::2, ::3]
    y, _ = drop.dropout_forward(view, 0.5, 3)
    y_ref, _ = reference.forward(cp.asnumpy(view), 0.5, 3, True)
    assert_bit_identical(cp.asnumpy(y), y_ref, "strided view")


def test_bad_gpu_input_is_named():
    with pytest.raises(TypeError, match="x must have dtype float32 or float64; got int64"):
        drop.dropout_forward(cp.arange(4), 0.5, 1)
    with pytest.raises(ValueError, match=r"x must not be empty; got shape \(0, 3\)"):
        drop.dropout_forward(cp.ones((0, 3)), 0.5, 1)
    with pytest.raises(ValueError, match="rate must be < 1.0; got 1.0"):
        drop.dropout_forward(cp.ones(3), 1.0, 1)
    _, cache = drop.dropout_forward(cp.ones((2, 3)), 0.5, 1)
    with pytest.raises(backend.DeviceMismatchError, match="two devices"):
        drop.dropout_backward(np.ones((2, 3)), cache)
    with pytest.raises(TypeError, match="dy must have dtype float64 like the other inputs; got float32"):
        drop.dropout_backward(cp.ones((2, 3), cp.float32), cache)
