"""Attention's masked path (toolkit/ops/attention/cpu.py): blocks of query rows skip the keys their mask
forbids for every row of the block. Held against the NumPy reference and finite differences, with the
masks that make the block stops interesting; plus the rules that decide when the path runs."""

import numba
import numpy as np
import pytest

from tests.helpers import assert_close, check_gradient, random_array, tolerance
from toolkit.ops.attention import blocks, cpu, reference

BLOCK_KERNELS = ("_forward_blocks_serial", "_forward_blocks_parallel", "_backward_blocks_serial",
                 "_backward_blocks_parallel")


def causal(tq, tk, offset=0):
    """(1, Tq, Tk): query i may attend to keys j <= i + offset."""
    return np.tril(np.ones((tq, tk), dtype=bool), k=offset)[None]


def one_far_key(t, row, n=1):
    """Causal, plus one row that may also attend to the last key: its block must keep every key."""
    mask = causal(t, t).repeat(n, axis=0)
    mask[0, row, t - 1] = True
    return mask


def dead_rows(t, rows, n=2):
    """Causal with the first `rows` queries fully masked in element 0 (a whole block of them when rows
    >= the block size) and every query of element n - 1 fully masked."""
    mask = causal(t, t).repeat(n, axis=0)
    mask[0, :rows] = False
    mask[n - 1] = False
    return mask


def key_lengths(tq, tk, lengths):
    """(N, Tq, Tk) padding masks: element n may attend to its first lengths[n] keys only, causally."""
    mask = causal(tq, tk).repeat(len(lengths), axis=0)
    for n, length in enumerate(lengths):
        mask[n, :, length:] = False
    return mask


# name -> (N, d, dv, mask); the masks hold Tq and Tk. Sizes: several blocks of cpu.BLOCK_ROWS rows, and
# Tq not a multiple of it.
CASES = {
    "causal 70x70": (2, 9, 4, causal(70, 70)),
    "causal Tq < Tk, bottom-right aligned": (2, 5, 3, causal(100, 160, offset=60)),
    "causal Tq > Tk": (2, 5, 3, causal(100, 80)),
    "per-element key lengths": (3, 7, 5, key_lengths(90, 80, [80, 37, 5])),
    "one far key in one row of a block": (2, 6, 3, one_far_key(150, row=70)),
    "fully masked rows and elements": (2, 6, 3, dead_rows(150, rows=40)),
}


def inputs(rng, n, tq, tk, d, dv, dtype):
    return (random_array(rng, (n, tq, d), dtype), random_array(rng, (n, tk, d), dtype),
            random_array(rng, (n, tk, dv), dtype), random_array(rng, (n, tq, dv), dtype))


@pytest.fixture
def block_calls(monkeypatch):
    """The names of the masked-path kernels that ran, in order."""
    calls = []
    for name in BLOCK_KERNELS:
        def spy(*args, _kernel=getattr(cpu, name), _name=name):
            calls.append(_name)
            return _kernel(*args)
        monkeypatch.setattr(cpu, name, spy)
    return calls


def expected_stops(mask, block):
    """1 + the last key any row of a block may attend to (0 for a block without any), by plain NumPy."""
    masks, tq, tk = mask.shape
    last = np.where(mask.any(axis=-1), tk - np.argmax(mask[..., ::-1], axis=-1), 0)  # (masks, Tq)
    return np.stack([last[:, b:b + block].max(axis=-1) for b in range(0, tq, block)], axis=-1)


# --- the block stops -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mask", [causal(70, 70), causal(100, 160, offset=60), causal(100, 80), one_far_key(150, 70),
                                  dead_rows(150, 40), key_lengths(90, 80, [80, 37, 5])],
                         ids=["causal", "Tq<Tk", "Tq>Tk", "far key", "dead rows", "lengths"])
@pytest.mark.parametrize("block", [1, 5, 32])
def test_block_stops_are_the_last_key_any_row_of_the_block_may_see(mask, block):
    stops, skipped = blocks.block_key_stops(mask, block)
    expected = expected_stops(mask, block)
    assert np.array_equal(stops, expected)
    starts = np.arange(expected.shape[1]) * block
    rows = np.minimum(mask.shape[1], starts + block) - starts  # the last block may be short
    assert skipped == int((rows * (mask.shape[2] - expected)).sum())


def test_block_stops_of_random_masks(rng):
    for density in (0.0, 0.02, 0.3, 0.97):
        mask = rng.random((3, 37, 29)) < density
        stops, _ = blocks.block_key_stops(mask, 8)
        assert np.array_equal(stops, expected_stops(mask, 8)), density


def test_one_far_key_keeps_every_key_of_its_block_only():
    stops, _ = blocks.block_key_stops(one_far_key(150, row=70), 32)
    assert stops.tolist() == [[32, 64, 150, 128, 150]]  # row 70 is in block 2; the others stay causal


# --- against the reference -----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_masked_path_matches_reference(case, dtype, kernels, block_calls, rng):
    n, d, dv, mask = CASES[case]
    _, tq, tk = mask.shape
    q, k, v, dout = inputs(rng, n, tq, tk, d, dv, dtype)
    out, cache = cpu.forward(q, k, v, mask, 0.4)
    grads = cpu.backward(dout, cache)
    assert block_calls == [f"_forward_blocks_{kernels}", f"_backward_blocks_{kernels}"]
    out_ref, cache_ref = reference.forward(q, k, v, mask, 0.4)
    tol = tolerance(dtype)
    assert_close(out, out_ref, **tol, name="out")
    assert_close(cache.weights, cache_ref.weights, **tol, name="weights")
    assert np.all(cache.weights[~np.broadcast_to(mask, cache.weights.shape)] == 0), "masked weights must be exactly 0"
    for name, ours, expected in zip(("dq", "dk", "dv"), grads, reference.backward(dout, cache_ref)):
        assert ours.dtype == dtype
        assert_close(ours, expected, **tol, name=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_products_cut_into_key_pieces_match_reference(dtype, kernels, monkeypatch, rng):
    """A threading size small enough that each block's keys go in pieces of MIN_CHUNK_KEYS (partial sums
    of out and dq, several key ranges of dk and dv)."""
    n, d, dv, mask = CASES["one far key in one row of a block"]
    monkeypatch.setattr(cpu, "OPENBLAS_THREADED_MACS", cpu.BLOCK_ROWS * d * cpu.MIN_CHUNK_KEYS + 1)
    assert cpu._key_chunk(d) == cpu.MIN_CHUNK_KEYS
    q, k, v, dout = inputs(rng, n, 150, 150, d, dv, dtype)
    out, cache = cpu.forward(q, k, v, mask, 0.4)
    out_ref, cache_ref = reference.forward(q, k, v, mask, 0.4)
    assert_close(out, out_ref, **tolerance(dtype), name="out")
    for name, ours, expected in zip(("dq", "dk", "dv"), cpu.backward(dout, cache), reference.backward(dout, cache_ref)):
        assert_close(ours, expected, **tolerance(dtype), name=name)


def test_serial_and_parallel_blocks_give_the_same_bits(monkeypatch, rng):
    """Each output element is summed in one fixed order (no race, no order that depends on threads)."""
    n, d, dv, mask = CASES["per-element key lengths"]
    monkeypatch.setattr(cpu, "OPENBLAS_THREADED_MACS", cpu.BLOCK_ROWS * d * cpu.MIN_CHUNK_KEYS + 1)
    q, k, v, dout = inputs(rng, n, 90, 80, d, dv, np.float32)
    results = []
    for min_size in (1 << 62, 0):
        monkeypatch.setattr(cpu, "PARALLEL_MIN_SIZE", min_size)
        out, cache = cpu.forward(q, k, v, mask, 0.4)
        results.append((out, cache.weights, *cpu.backward(dout, cache)))
    for name, serial, parallel in zip(("out", "weights", "dq", "dk", "dv"), *results):
        assert np.array_equal(serial, parallel), name


# --- gradients vs finite differences (float64, tiny shapes, blocks of 3 rows) ---------------------------
TINY_MASKS = {
    "causal 7x8": causal(7, 8),
    "one far key": one_far_key(8, row=1, n=2),
    "fully masked rows": dead_rows(8, rows=4),
    "key lengths": key_lengths(7, 8, [8, 3]),
}


@pytest.mark.parametrize("case", TINY_MASKS)
def test_masked_path_gradients_match_finite_differences(case, monkeypatch, block_calls, rng):
    monkeypatch.setattr(cpu, "BLOCK_ROWS", 3)
    mask = TINY_MASKS[case]
    _, tq, tk = mask.shape
    q, k, v, dout = inputs(rng, 2, tq, tk, 3, 2, np.float64)
    _, cache = cpu.forward(q, k, v, mask, 0.7)
    dq, dk, dv = cpu.backward(dout, cache)
    assert block_calls == ["_forward_blocks_serial", "_backward_blocks_serial"]

    def loss():
        return float((cpu.forward(q, k, v, mask, 0.7)[0] * dout).sum())

    check_gradient(loss, q, dq, name="q")
    check_gradient(loss, k, dk, name="k")
    check_gradient(loss, v, dv, name="v")


# --- when the masked path runs ---------------------------------------------------------------------------
def test_masks_that_skip_little_take_the_whole_matrix_path(block_calls, rng):
    q, k, v, dout = inputs(rng, 2, 70, 70, 5, 3, np.float64)
    dense = rng.random((2, 70, 70)) < 0.6  # about 0.4^32 of a chance that a block loses its last key
    for mask in (None, dense, causal(70, 70, offset=60)):  # the last: about 1% of the entries masked
        _, cache = cpu.forward(q, k, v, mask, 0.5)
        cpu.backward(dout, cache)
    assert block_calls == []


@pytest.mark.parametrize("mask", [None, np.ones((1, 128, 128), dtype=bool)], ids=["unmasked", "all keys"])
def test_large_calls_that_skip_nothing_take_the_whole_matrix_path_on_two_threads(mask, block_calls, rng):
    """Large enough for the parallel block drivers, but nothing to skip: the whole-matrix path, which
    measured faster on two threads too (cpu.py's docstring)."""
    q, k, v, dout = inputs(rng, 2, 128, 128, 8, 4, np.float32)
    assert cpu._parallel_blocks((2, 128, 128), cpu._key_chunk(8)), "the case must be large enough"
    threads = numba.get_num_threads()
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    try:
        out, cache = cpu.forward(q, k, v, mask, 0.3)
        grads = cpu.backward(dout, cache)
    finally:
        numba.set_num_threads(threads)
    assert block_calls == []
    out_ref, cache_ref = reference.forward(q, k, v, mask, 0.3)
    assert_close(out, out_ref, **tolerance(np.float32), name="out")
    for name, ours, expected in zip(("dq", "dk", "dv"), grads, reference.backward(dout, cache_ref)):
        assert_close(ours, expected, **tolerance(np.float32), name=name)


def test_non_finite_values_where_keys_are_skipped_follow_the_reference(block_calls, rng):
    """A skipped term is 0 * x: NaN by IEEE when x is Inf or NaN, which the reference's full products
    give. Such inputs take the whole-matrix path, so NaN shows where the reference has it."""
    mask = causal(70, 70)
    q, k, v, dout = inputs(rng, 2, 70, 70, 5, 3, np.float64)
    v[0, 69, 1] = np.inf  # masked for every query but the last: 0 * inf in the other rows' outputs
    dout[1, 3, 0] = np.nan  # 0 * NaN in every key's dv
    out, cache = cpu.forward(q, k, v, mask, 0.5)
    grads = cpu.backward(dout, cache)
    assert block_calls == []
    out_ref, cache_ref = reference.forward(q, k, v, mask, 0.5)
    assert np.isnan(out_ref[0, :69, 1]).all(), "the case must produce the IEEE NaN it is about"
    assert_close(out, out_ref, atol=1e-12, rtol=1e-10, name="out")
    for name, ours, expected in zip(("dq", "dk", "dv"), grads, reference.backward(dout, cache_ref)):
        assert_close(ours, expected, atol=1e-12, rtol=1e-10, name=name)


@pytest.mark.parametrize("overflowing", ["scores q k^T", "dW = dout v^T"])
def test_products_that_overflow_follow_the_reference(overflowing, block_calls, rng):
    """Finite float32 inputs whose product overflows for query row 40 and key 10: the reference's row 40
    of dS is then NaN or Inf everywhere, its masked entries 0 * NaN or 0 * Inf = NaN, which reach dk of
    keys that row 40's block would skip. Such a backward takes the whole-matrix path."""
    mask = causal(70, 70)
    q, k, v, dout = inputs(rng, 2, 70, 70, 5, 3, np.float32)
    row_side, key_side = (q, k) if overflowing == "scores q k^T" else (dout, v)
    row_side[0, 40] = 3e19
    key_side[0, 10] = 3e19
    _, cache = cpu.forward(q, k, v, mask, 1.0)
    grads = cpu.backward(dout, cache)
    assert block_calls == ["_forward_blocks_serial"]  # v is finite: the forward may skip
    _, cache_ref = reference.forward(q, k, v, mask, 1.0)
    expected = reference.backward(dout, cache_ref)
    assert np.isnan(expected[1][0, 64:]).all(), "the case must produce the IEEE NaN it is about"
    for name, ours, theirs in zip(("dq", "dk", "dv"), grads, expected):
        assert np.array_equal(np.isnan(ours), np.isnan(theirs)), f"{name}: NaN pattern differs"
        finite = np.isfinite(theirs)
        assert np.array_equal(np.isfinite(ours), finite), f"{name}: Inf pattern differs"
        # huge finite entries: compare relative to the largest one, float32 rounding of sums of 1e20 terms
        assert_close(ours[finite], theirs[finite], atol=1e-4 * float(np.abs(theirs[finite]).max()), rtol=1e-4,
                     name=name)
