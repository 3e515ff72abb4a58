"""attention.cu executed on the CPU by the host harness, through gpu.py's own launch code, vs the NumPy
reference: the fused forward, the deferred weights, the scores, the two backward kernels and the row dot,
float32 and float64.

Shapes hit every branch of the tiling (tiles of 64 queries, 64 keys, 64 output features; contraction
slices of 16): a single token; N = 1 with Tq != Tk and an odd d; sequences that are not a multiple of the
tile (70 queries = a full and a partial tile, 130 keys = two full tiles and one key); d and dv above 64,
so several feature chunks, including blocks with a dk chunk and no dv chunk (d = 130 > dv) and the
reverse (dv = 70 > d); Tk of exactly one tile; more work items than the 3 blocks of a capped grid. Masks:
none, causal, a random shared (Tq, Tk) one and a random per-batch one, the random ones with a fully masked
query row. Each check runs under three schedules: threads and blocks in forward and in reverse order with
the grid capped at 3 blocks (grid-stride loops loop), and forward with an uncapped grid.
"""

import inspect
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.cuda import fakes
from tests.cuda.conftest import host_build, requires_cxx, scheduled_targets, SCHEDULES
from tests.helpers import assert_close, random_array, tolerance
from toolkit.cuda import launch, sources
from toolkit.cuda.host import harness
from toolkit.ops import attention as att
from toolkit.ops.attention import cpu, gpu, reference

pytestmark = requires_cxx

# (N, Tq, Tk, d, dv)
SHAPES = [
    (1, 1, 1, 1, 1),        # one token: every tile is almost all padding
    (1, 5, 9, 3, 2),        # N = 1, Tq != Tk, odd d, less than a warp of anything
    (2, 70, 66, 9, 4),      # partial second query and key tiles
    (3, 33, 130, 17, 70),   # three key tiles (the last holds one key), two dv chunks, 6 forward items > 3 blocks
    (1, 65, 64, 130, 3),    # three d chunks: dk/dq chunks without a dv chunk; Tk exactly one tile
]
MASKS = [None, "causal", "shared", "per_batch"]


attention_host = host_build("attention")
target = scheduled_targets("attention_host")


def make_mask(kind, n, tq, tk, rng):
    """None, causal (Tq, Tk), or random shared (Tq, Tk) / per-batch (N, Tq, Tk) with query row 0 fully masked."""
    if kind is None:
        return None
    if kind == "causal":
        return np.tril(np.ones((1, tq, tk), dtype=bool))
    mask = rng.random((1 if kind == "shared" else n, tq, tk)) < 0.6
    mask[:, 0, :] = False
    return mask


def problem(rng, shape, dtype, scale=1.0):
    n, tq, tk, d, dv = shape
    return (random_array(rng, (n, tq, d), dtype, scale), random_array(rng, (n, tk, d), dtype, scale),
            random_array(rng, (n, tk, dv), dtype), random_array(rng, (n, tq, dv), dtype))


def check_against_reference(target, q, k, v, dout, mask, scale, tol):
    """Forward, weights, scores and backward of gpu.py on the host target vs reference.py."""
    dtype = q.dtype
    out, cache = gpu.forward_on(target, q, k, v, mask, scale)
    out_ref, cache_ref = reference.forward(q, k, v, mask, scale)
    assert type(cache) is reference.AttentionCache and out.dtype == dtype and out.shape == out_ref.shape
    assert_close(out, out_ref, **tol, name="out")
    assert_close(np.asarray(cache.weights), cache_ref.weights, **tol, name="weights")
    grads = gpu.backward_on(target, dout, cache)
    for name, ours, expected in zip(("dq", "dk", "dv"), grads, reference.backward(dout, cache_ref)):
        assert ours.dtype == dtype
        assert_close(ours, expected, **tol, name=name)
    assert_close(gpu.scores_on(target, q, k, mask, scale), reference.scores(q, k, mask, scale), **tol,
                 name="scores")
    return out, cache, grads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mask_kind", MASKS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_kernels_match_reference(target, shape, mask_kind, dtype, rng):
    q, k, v, dout = problem(rng, shape, dtype)
    n, tq, tk, d, _ = shape
    check_against_reference(target, q, k, v, dout, make_mask(mask_kind, n, tq, tk, rng), 1 / math.sqrt(d),
                            tolerance(dtype))


@pytest.mark.parametrize("scale", [1.0, 0.37, 3.0])
def test_scale_is_applied_in_every_kernel(target, scale, rng):
    q, k, v, dout = problem(rng, (2, 9, 11, 4, 3), np.float64)
    check_against_reference(target, q, k, v, dout, make_mask("per_batch", 2, 9, 11, rng), scale,
                            tolerance(np.float64))


def test_every_schedule_gives_the_same_bits(attention_host, rng):
    # No atomics and a fixed summation order per output element: the grid size and the thread order
    # change nothing, to the last bit.
    q, k, v, dout = problem(rng, (3, 33, 130, 17, 70), np.float32)
    mask = make_mask("per_batch", 3, 33, 130, rng)
    results = []
    for order, blocks in SCHEDULES + [("reverse", 1), ("forward", 5)]:
        target = harness.target(attention_host, order=order, max_grid_blocks=blocks)
        out, cache = gpu.forward_on(target, q, k, v, mask, 0.25)
        results.append((out, *gpu.backward_on(target, dout, cache)))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fully_masked_rows_give_zero_and_pass_no_gradient(target, dtype, rng):
    n, tq, tk, d, dv = 2, 6, 70, 3, 2  # two key tiles: the row stays dead across the online updates
    q, k, v, dout = problem(rng, (n, tq, tk, d, dv), dtype)
    mask = rng.random((n, tq, tk)) < 0.5
    mask[:, 0] = False
    mask[1, 4] = False
    mask[:, 1:3, 5] = True
    out, cache = gpu.forward_on(target, q, k, v, mask, 0.5)
    dead = ~mask.any(axis=-1)
    w = np.asarray(cache.weights)
    assert np.all(w[~mask] == 0.0), "a masked key must get weight exactly 0"
    assert np.all(out[dead] == 0.0)
    assert_close(w.sum(axis=-1), np.where(dead, 0.0, 1.0), **tolerance(dtype), name="row sums")
    assert np.all(cache.weights.row_max[dead] == -np.inf) and np.all(cache.weights.row_sum[dead] == 0.0)
    dq, dk, dv_ = gpu.backward_on(target, dout, cache)
    assert np.all(dq[dead] == 0.0)
    dout2 = dout.copy()
    dout2[dead] = 1e3  # the dead rows' upstream gradient must reach neither k nor v
    _, dk2, dv2 = gpu.backward_on(target, dout2, cache)
    assert np.array_equal(dk2, dk) and np.array_equal(dv2, dv_)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_scores_do_not_overflow(target, dtype, rng):
    # Scores up to 2.7e5, across two key tiles (the running max jumps between tiles): exact in float32 too.
    q = rng.integers(-300, 301, (2, 4, 3)).astype(dtype)
    k = rng.integers(-300, 301, (2, 70, 3)).astype(dtype)
    v, dout = random_array(rng, (2, 70, 2), dtype), random_array(rng, (2, 4, 2), dtype)
    mask = make_mask("per_batch", 2, 4, 70, rng)
    out, cache = gpu.forward_on(target, q, k, v, mask, 1.0)
    grads = gpu.backward_on(target, dout, cache)
    assert all(np.all(np.isfinite(a)) for a in (out, np.asarray(cache.weights), *grads))
    q64, k64, v64 = (a.astype(np.float64) for a in (q, k, v))
    out_ref, cache_ref = reference.forward(q64, k64, v64, mask, 1.0)
    assert_close(out, out_ref, **tolerance(dtype), name="out")
    assert_close(np.asarray(cache.weights), cache_ref.weights, **tolerance(dtype), name="weights")


@pytest.mark.parametrize("masked", [False, True])
def test_nan_and_inf_follow_ieee(target, masked, rng):
    # The CPU suite's case: a NaN query row, a row of +-inf scores (inf - inf = NaN), an infinite value.
    q, k, v, dout = problem(rng, (1, 4, 3, 2, 2), np.float64)
    q[0, 1, 0] = np.nan
    q[0, 2, :] = [np.inf, 0.0]
    v[0, 0, 1] = np.inf
    mask = None
    if masked:  # key 2 masked for every query: its weight stays exactly 0, even in the NaN rows
        mask = np.ones((1, 4, 3), dtype=bool)
        mask[..., 2] = False
    out, cache = gpu.forward_on(target, q, k, v, mask, 1.0)
    grads = gpu.backward_on(target, dout, cache)
    with np.errstate(invalid="ignore", over="ignore"):
        out_ref, cache_ref = reference.forward(q, k, v, mask, 1.0)
        grads_ref = reference.backward(dout, cache_ref)
    w = np.asarray(cache.weights)
    if masked:
        assert np.all(w[..., 2] == 0.0)
    assert np.all(np.isnan(out[0, 1:3])) and np.all(out[0, [0, 3], 1] == np.inf)
    assert_close(out, out_ref, atol=1e-12, rtol=1e-12, name="out with NaN/Inf")
    assert_close(w, cache_ref.weights, atol=1e-12, rtol=1e-12, name="weights with NaN/Inf")
    for name, ours, expected in zip("qkv", grads, grads_ref):
        assert_close(ours, expected, atol=1e-12, rtol=1e-12, name=f"d{name} with NaN/Inf")


def test_minus_infinity_scores_follow_the_reference(target):
    # Row 0: its first key tile holds only -inf scores, a later tile a finite one: the row is valid (the
    # -inf keys get weight 0). Row 1: every allowed score is -inf: -inf - -inf = NaN, as in the reference.
    tk = 70
    q = np.array([[[1.0], [1.0]]])
    k = np.full((1, tk, 1), -np.inf)
    k[0, 68] = 2.0
    v = np.arange(tk, dtype=np.float64).reshape(1, tk, 1)
    mask = np.ones((1, 2, tk), dtype=bool)
    mask[0, 1, 68] = False
    out, cache = gpu.forward_on(target, q, k, v, mask, 1.0)
    with np.errstate(invalid="ignore"):
        out_ref, cache_ref = reference.forward(q, k, v, mask, 1.0)
    assert out[0, 0, 0] == 68.0 and np.isnan(out[0, 1, 0])
    assert_close(out, out_ref, atol=0, rtol=0, name="out")
    assert_close(np.asarray(cache.weights), cache_ref.weights, atol=0, rtol=0, name="weights")


def test_deferred_weights(target, rng):
    q, k, v, _ = problem(rng, (2, 5, 7, 3, 2), np.float64)
    out, cache = gpu.forward_on(target, q, k, v, None, 0.5)
    w = cache.weights
    assert isinstance(w, gpu.DeferredWeights) and not w.materialized
    assert "not computed yet" in repr(w)
    assert (w.shape, w.dtype, w.ndim, w.size, len(w)) == ((2, 5, 7), np.float64, 3, 70, 2)
    assert w.row_max.shape == w.row_sum.shape == (2, 5) and w.out is out
    dense = w.materialize()
    assert w.materialized and w.materialize() is dense and "materialized" in repr(w)
    assert not hasattr(w, "__cuda_array_interface__")  # host memory here; a CuPy array on a GPU
    assert_close(w[1, 2], dense[1, 2], atol=0, rtol=0, name="indexing")
    assert np.asarray(w, dtype=np.float32).dtype == np.float32
    assert_close(w.get(), reference.forward(q, k, v, None, 0.5)[1].weights, **tolerance(np.float64), name="w")


def test_backward_needs_a_gpu_cache(target, rng):
    q, k, v, dout = problem(rng, (1, 3, 4, 2, 2), np.float64)
    _, cpu_cache = cpu.forward(q, k, v, None, 1.0)
    with pytest.raises(TypeError, match="cache.weights must be the DeferredWeights of a GPU attention_forward"):
        gpu.backward_on(target, dout, cpu_cache)


@pytest.mark.parametrize("d,dv,words", [
    (257, 4, r"q and k must have at most d=256 features on the GPU .*got d=257"),
    (4, 300, r"v must have at most dv=256 features on the GPU .*got dv=300"),
])
def test_feature_limit_is_checked_before_any_launch(d, dv, words):
    def no_kernel(expression):
        raise AssertionError(f"{expression} was requested before the features were checked")

    target = launch.Target("probe", harness.poisoned_numpy, no_kernel, max_grid_blocks=3)
    q, k, v = np.ones((1, 2, d)), np.ones((1, 3, d)), np.ones((1, 3, dv))
    with pytest.raises(ValueError, match=words):
        gpu.forward_on(target, q, k, v, None, 1.0)
    cache = reference.AttentionCache(q, k, v, None, None, 1.0)
    with pytest.raises(ValueError, match=words):
        gpu.backward_on(target, np.ones((1, 2, dv)), cache._replace(
            weights=gpu.DeferredWeights(target, q, k, None, 1.0, None, None, None)))


def test_features_at_the_limit(attention_host, rng):
    # d = dv = 256: four feature chunks in every kernel, one forward block per chunk.
    target = harness.target(attention_host, order="reverse")
    q, k, v, dout = problem(rng, (1, 3, 5, 256, 256), np.float64, scale=0.2)
    check_against_reference(target, q, k, v, dout, make_mask("shared", 1, 3, 5, rng), 1 / 16, tolerance(np.float64))


def test_row_dot_kernel(target, rng):
    # D = rowsum(dout * out): rows of more than a warp (lanes stride), more rows than a capped grid's warps.
    for rows, n in [(1, 1), (5, 31), (40, 70)]:
        a, b = random_array(rng, (rows, n)), random_array(rng, (rows, n))
        out = target.xp.empty((rows,))
        target.kernel("attention_row_dot", np.float64)((min(rows, target.max_grid_blocks),), (64,),
                                                      (a, b, out, launch.i64(rows), launch.i64(n)))
        assert_close(out, (a * b).sum(axis=1), atol=1e-13, rtol=1e-12, name=f"row dot {rows}x{n}")


def test_gpu_module_mirrors_cpu():
    for name in ("forward", "backward", "scores"):
        assert inspect.signature(getattr(gpu, name)).parameters.keys() == \
            inspect.signature(getattr(cpu, name)).parameters.keys()
    assert gpu.TILE == 64 and gpu.THREADS == 256  # attn::kTile, attn::kThreads in attention.cu
    text = sources.op_source("attention").read_text()
    assert "constexpr int kTile = 64;" in text and "constexpr int kMicro = 4;" in text
    assert "enum MaskMode : int { kNoMask = 0, kSharedMask = 1, kPerBatchMask = 2 };" in text
    assert gpu.MASK_MODE == {"none": 0, "shared": 1, "per_batch": 2}


# --- property-based: any small shape, mask, scale and schedule, float64 --------------------------------
dims = st.integers(1, 5)


@st.composite
def problems(draw):
    n, d, dv = draw(dims), draw(dims), draw(dims)
    tq, tk = draw(st.integers(1, 70)), draw(st.integers(1, 70))
    arr = lambda shape: draw(hnp.arrays(np.float64, shape, elements=st.floats(-6, 6, width=32)))  # noqa: E731
    q, k, v, dout = arr((n, tq, d)), arr((n, tk, d)), arr((n, tk, dv)), arr((n, tq, dv))
    mask = draw(st.one_of(st.none(), hnp.arrays(np.bool_, st.sampled_from([(1, tq, tk), (n, tq, tk)]))))
    scale = draw(st.floats(0.05, 2.0))
    return q, k, v, dout, mask, scale


@given(problem_=problems(), order=st.sampled_from(["forward", "reverse"]))
def test_property_kernels_match_reference(attention_host, problem_, order):
    q, k, v, dout, mask, scale = problem_
    target = harness.target(attention_host, order=order)
    _, cache, _ = check_against_reference(target, q, k, v, dout, mask, scale, dict(atol=1e-11, rtol=1e-10))
    dead = np.zeros(q.shape[:2], bool) if mask is None else ~np.broadcast_to(mask, cache.weights.shape).any(-1)
    assert_close(np.asarray(cache.weights).sum(-1), np.where(dead, 0.0, 1.0), atol=1e-12, rtol=0, name="row sums")


# --- the public path: gpu.forward/backward/scores through a stand-in for CuPy --------------------------
def test_public_gpu_path_wiring(fake_cupy, rng):
    q, k, v, dout = problem(rng, (2, 70, 66, 9, 4), np.float64)
    mask = make_mask("per_batch", 2, 70, 66, rng)
    out, cache = gpu.forward(q, k, v, mask, 1 / 3)
    out_ref, cache_ref = reference.forward(q, k, v, mask, 1 / 3)
    tol = tolerance(np.float64)
    assert_close(out, out_ref, **tol, name="out")
    assert_close(cache.weights.get(), cache_ref.weights, **tol, name="weights")
    for name, ours, expected in zip("qkv", gpu.backward(dout, cache), reference.backward(dout, cache_ref)):
        assert_close(ours, expected, **tol, name=f"d{name}")
    assert_close(gpu.scores(q, k, mask, 1 / 3), reference.scores(q, k, mask, 1 / 3), **tol, name="scores")
    fakes.assert_compiled_once(fake_cupy, "attention")


def test_public_functions_reach_the_gpu_module(fake_cupy, rng, monkeypatch):
    # The validating public API hands the gpu module contiguous arrays, the (1 or N, Tq, Tk) mask and the
    # resolved scale; with dispatch pointed at gpu.py it runs end to end.
    monkeypatch.setattr(att.backend, "dispatch", lambda op, **arrays: gpu)
    q, k, v, dout = problem(rng, (2, 5, 7, 3, 2), np.float64)
    mask = np.tril(np.ones((5, 14), dtype=bool), 6)[:, ::2]  # strided views: copied by validation
    out, cache = att.attention_forward(np.repeat(q, 2, axis=2)[:, :, ::2], k, v, mask=mask)
    out_ref, cache_ref = reference.forward(q, k, v, mask[None], 1 / math.sqrt(3))
    assert_close(out, out_ref, **tolerance(np.float64), name="out")
    for name, ours, expected in zip("qkv", att.attention_backward(dout, cache), reference.backward(dout, cache_ref)):
        assert_close(ours, expected, **tolerance(np.float64), name=f"d{name}")
