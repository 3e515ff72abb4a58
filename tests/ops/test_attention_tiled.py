"""Attention's register-tiled path (toolkit/ops/attention/tiled.py): blocks of query rows and blocks of keys
on Numba's threads, products by toolkit.ops.row_products' tiles. Held against the NumPy reference and
finite differences, at shapes that make the blocks, the k ranges and the tile remainders interesting;
plus the rules that decide when cpu.py takes it."""

import numba
import numpy as np
import pytest

from tests.helpers import assert_close, check_gradient, random_array, tolerance
from toolkit.ops.attention import cpu, reference, tiled
from toolkit.ops.scratch import scratch

SLOTS = ("attention.tiled.kt", "attention.tiled.v", "attention.tiled.vt", "attention.tiled.k",
         "attention.tiled.q", "attention.tiled.dout", "attention.ds")


def lanes(dtype):
    return 64 // np.dtype(dtype).itemsize


def inputs(rng, n, tq, tk, d, dv, dtype):
    return (random_array(rng, (n, tq, d), dtype), random_array(rng, (n, tk, d), dtype),
            random_array(rng, (n, tk, dv), dtype), random_array(rng, (n, tq, dv), dtype))


def run_tiled(q, k, v, dout, mask, scale, skip=True):
    """tiled.forward and tiled.backward straight, as cpu.py calls them: (out, w, dq, dk, dv). skip: leave
    out of the products the keys a whole block may not attend to (cpu.py asks for it when that is exact)."""
    n, tq, tk = q.shape[0], q.shape[1], k.shape[1]
    w = np.empty((n, tq, tk), q.dtype)
    out = np.empty((n, tq, v.shape[2]), q.dtype)
    tiled.forward(q, k, v, mask, scale, skip, w, out)
    return (out, w, *tiled.backward(dout, q, k, v, w, mask, scale, skip))


def expected(q, k, v, dout, mask, scale):
    out, cache = reference.forward(q, k, v, mask, scale)
    return (out, cache.weights, *reference.backward(dout, cache))


def random_mask(rng, n, tq, tk, dead_row=True):
    """(n, Tq, Tk), about 30% of the keys masked, and query row 1 of element 0 fully masked."""
    mask = rng.random((n, tq, tk)) > 0.3
    if dead_row:
        mask[0, 1] = False
    return mask


def causal_mask(n, tq, tk, dead_rows=0):
    """(n, Tq, Tk) causal, bottom-right aligned (query i may see keys j <= i + Tk - Tq), the first dead_rows
    queries of element 0 and every query of element n - 1 (when n > 1) fully masked: the blocks skip keys,
    whole blocks of rows and whole blocks of keys."""
    mask = np.tril(np.ones((tq, tk), dtype=bool), k=tk - tq)[None].repeat(n, axis=0)
    mask[0, :dead_rows] = False
    if n > 1:
        mask[n - 1] = False
    return mask


def make_mask(kind, rng, n, tq, tk):
    if kind == "random":
        return random_mask(rng, n, tq, tk, dead_row=tq > 1)
    if kind == "causal":
        return causal_mask(n, tq, tk, dead_rows=min(tq, 12))
    return None


@pytest.fixture(params=["serial", "parallel"])
def twin(request, monkeypatch):
    monkeypatch.setattr(tiled, "PARALLEL_MIN_SIZE", 1 << 62 if request.param == "serial" else 0)
    return request.param


def use_small_blocks(monkeypatch):
    """Blocks of 8 query rows (and keys) and k ranges of 5, so that small shapes have several of each."""
    monkeypatch.setattr(tiled, "BLOCK_BYTES", 1)
    monkeypatch.setattr(tiled, "MAX_BLOCK_ROWS", 8)
    monkeypatch.setattr(tiled, "K_RANGE", 5)


@pytest.fixture
def small_blocks(monkeypatch):
    use_small_blocks(monkeypatch)


# (N, Tq, Tk in vectors, d in vectors, dv in vectors)
SHAPES = {
    "one query row": (2, 1, 1, 1, 1),
    "fewer rows than a tile": (1, 3, 2, 1, 2),
    "rows not a multiple of the block": (3, 21, 3, 2, 1),
    "Tq > Tk, dv > d": (2, 37, 1, 1, 3),
}


@pytest.mark.parametrize("skip", [True, False], ids=["skip", "whole"])
@pytest.mark.parametrize("mask_kind", [None, "random", "causal"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiled_path_matches_reference(shape, mask_kind, skip, dtype, twin, rng, monkeypatch):
    n, tq, tk, d, dv = SHAPES[shape]
    lane = lanes(dtype)
    q, k, v, dout = inputs(rng, n, tq, tk * lane, d * lane, dv * lane, dtype)
    mask = make_mask(mask_kind, rng, n, tq, tk * lane)
    for blocks in ("default", "small"):
        if blocks == "small":
            use_small_blocks(monkeypatch)
        for name, ours, ref in zip(("out", "weights", "dq", "dk", "dv"), run_tiled(q, k, v, dout, mask, 0.3, skip),
                                   expected(q, k, v, dout, mask, 0.3)):
            assert_close(ours, ref, **tolerance(dtype), name=f"{name} ({blocks} blocks)")


def test_serial_and_parallel_twins_give_the_same_bits_on_any_thread_count(small_blocks, monkeypatch, rng):
    """Every output value is computed by one block in one order."""
    q, k, v, dout = inputs(rng, 3, 29, 48, 32, 16, np.float32)
    mask = causal_mask(3, 29, 48, dead_rows=9)
    results = []
    threads = numba.get_num_threads()
    try:
        for min_size, count in ((1 << 62, threads), (0, 1), (0, min(2, numba.config.NUMBA_NUM_THREADS))):
            monkeypatch.setattr(tiled, "PARALLEL_MIN_SIZE", min_size)
            numba.set_num_threads(count)
            results.append(run_tiled(q, k, v, dout, mask, 0.25))
    finally:
        numba.set_num_threads(threads)
    for run in results[1:]:
        for name, first, other in zip(("out", "weights", "dq", "dk", "dv"), results[0], run):
            assert np.array_equal(first, other), name


@pytest.mark.parametrize("mask_kind", [None, "causal"])
def test_what_the_scratch_slots_held_before_does_not_matter(mask_kind, twin, small_blocks, rng):
    """The packed matrices and dS (its padding lanes, and the keys past a block's stop that a key block
    reads) are scratch: NaN left there by an earlier call must not reach a result."""
    q, k, v, dout = inputs(rng, 2, 29, 32, 16, 16, np.float32)
    mask = make_mask(mask_kind, rng, 2, 29, 32)
    clean = run_tiled(q, k, v, dout, mask, 0.5)
    for slot in SLOTS:
        scratch(slot, 1 << 16, np.float32)[:] = np.nan
    for name, first, again in zip(("out", "weights", "dq", "dk", "dv"), clean, run_tiled(q, k, v, dout, mask, 0.5)):
        assert np.array_equal(first, again), name


@pytest.mark.parametrize("mask_kind", [None, "random", "causal"])
def test_tiled_gradients_match_finite_differences(mask_kind, small_blocks, monkeypatch, rng):
    """Through cpu.forward/backward, with the tiled path forced on a tiny float64 problem (blocks of 8)."""
    monkeypatch.setattr(tiled, "PARALLEL_MIN_SIZE", 0)
    q, k, v, dout = inputs(rng, 3, 19, 24, 8, 16, np.float64)
    mask = make_mask(mask_kind, rng, 3, 19, 24)
    assert cpu._tiled(q, k, v)
    _, cache = cpu.forward(q, k, v, mask, 0.6)
    dq, dk, dv = cpu.backward(dout, cache)

    def loss():
        return float((cpu.forward(q, k, v, mask, 0.6)[0] * dout).sum())

    check_gradient(loss, q, dq, name="q")
    check_gradient(loss, k, dk, name="k")
    check_gradient(loss, v, dv, name="v")


def test_nan_and_inf_land_where_the_reference_has_them(twin, rng):
    """Every product is computed whole, so IEEE NaN/Inf spread as in the reference's products."""
    q, k, v, dout = inputs(rng, 1, 6, 16, 8, 8, np.float64)
    q[0, 1, 0] = np.nan  # query row 1 NaN
    q[0, 2, :] = 0.0
    q[0, 2, 0] = np.inf  # row 2: scores +-inf, inf - inf = NaN in its softmax
    v[0, 3, 1] = np.inf  # value column 1 of key 3: +inf in every finite row
    dout[0, 4, 2] = np.nan
    for name, ours, ref in zip(("out", "weights", "dq", "dk", "dv"), run_tiled(q, k, v, dout, None, 1.0),
                               expected(q, k, v, dout, None, 1.0)):
        assert_close(ours, ref, atol=1e-12, rtol=1e-12, name=name)


# --- when cpu.py takes the tiled path ----------------------------------------------------------------------
@pytest.fixture
def tiled_calls(monkeypatch):
    calls = []
    for name in ("forward", "backward"):
        def spy(*args, _function=getattr(tiled, name), _name=name):
            calls.append(_name)
            return _function(*args)
        monkeypatch.setattr(tiled, name, spy)
    return calls


@pytest.mark.parametrize("mask", [None, np.ones((1, 128, 128), dtype=bool)], ids=["unmasked", "all keys"])
def test_large_whole_vector_calls_take_the_tiled_path(mask, tiled_calls, rng):
    q, k, v, dout = inputs(rng, 2, 128, 128, 16, 32, np.float32)
    out, cache = cpu.forward(q, k, v, mask, 0.3)
    grads = cpu.backward(dout, cache)
    assert tiled_calls == ["forward", "backward"]
    for name, ours, ref in zip(("out", "weights", "dq", "dk", "dv"), (out, cache.weights, *grads),
                               expected(q, k, v, dout, mask, 0.3)):
        assert_close(ours, ref, **tolerance(np.float32), name=name)


@pytest.mark.parametrize("n,tq,tk,d,dv,dtype", [
    (2, 128, 128, 8, 16, np.float32),  # d is half a float32 vector
    (2, 128, 120, 16, 16, np.float32),  # Tk is no whole number of vectors
    (2, 128, 128, 16, 12, np.float64),  # nor dv
    (1, 16, 16, 16, 16, np.float32),  # too small for the threads
], ids=["d", "Tk", "dv", "small"])
def test_other_calls_keep_the_whole_matrix_path(n, tq, tk, d, dv, dtype, tiled_calls, rng):
    q, k, v, dout = inputs(rng, n, tq, tk, d, dv, dtype)
    _, cache = cpu.forward(q, k, v, None, 0.3)
    cpu.backward(dout, cache)
    assert tiled_calls == []


@pytest.fixture
def stops_used(monkeypatch):
    """The key stops the tiled kernels were given, call by call."""
    used = []

    def spy(*args, _stops=tiled._stops):
        used.append(_stops(*args))
        return used[-1]
    monkeypatch.setattr(tiled, "_stops", spy)
    return used


def test_masked_calls_skip_the_keys_whole_blocks_cannot_see(stops_used, rng):
    q, k, v, dout = inputs(rng, 2, 256, 256, 16, 16, np.float32)
    mask = causal_mask(1, 256, 256)
    _, cache = cpu.forward(q, k, v, mask, 0.3)
    cpu.backward(dout, cache)
    block = tiled.block_rows(256, 4)
    expected_stops = np.minimum(256, block * np.arange(1, 256 // block + 1))[None]
    assert len(stops_used) == 2 and all(np.array_equal(s, expected_stops) for s in stops_used)


@pytest.mark.parametrize("where", ["v", "dout"])
def test_non_finite_inputs_turn_skipping_off(where, stops_used, rng):
    """A skipped term is 0 * x: NaN by IEEE when x is Inf or NaN, which the reference's full products
    give; then every block runs over all keys and the NaN lands where the reference has it."""
    q, k, v, dout = inputs(rng, 2, 256, 256, 16, 16, np.float64)
    mask = causal_mask(1, 256, 256)
    if where == "v":
        v[1, 200, 2] = np.inf  # a key the first blocks of rows would skip: 0 * inf = NaN in their output
    else:
        dout[1, 3, 2] = np.inf  # a row of the first block: 0 * inf = NaN in dv of the keys it would skip
    out, cache = cpu.forward(q, k, v, mask, 0.3)
    grads = cpu.backward(dout, cache)
    assert np.all(stops_used[-1] == 256), "the backward must not skip"
    if where == "v":
        assert np.all(stops_used[0] == 256), "the forward must not skip"
    for name, ours, ref in zip(("out", "weights", "dq", "dk", "dv"), (out, cache.weights, *grads),
                               expected(q, k, v, dout, mask, 0.3)):
        assert_close(ours, ref, **tolerance(np.float64), name=name)


@pytest.mark.parametrize("tk,itemsize,rows", [(512, 4, 64), (4096, 4, 32), (1 << 20, 8, 4), (100, 8, 64),
                                              (3000, 4, 40)])
def test_a_block_holds_about_block_bytes_of_weights_in_whole_tiles(tk, itemsize, rows):
    assert tiled.block_rows(tk, itemsize) == rows
