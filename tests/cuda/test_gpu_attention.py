"""attention on a real GPU: the public API on CuPy arrays vs the NumPy reference, CPU/GPU parity, the host
harness vs the device, the deferred weights, memory linear in the sequence length, dispatch and validation.

Deselected by default (pyproject: -m 'not gpu'). On a machine with a GPU:

    python -m pytest -m gpu tests/cuda/test_gpu_attention.py
    compute-sanitizer --tool memcheck  python -m pytest -m gpu tests/cuda/test_gpu_attention.py -k "matches"
    compute-sanitizer --tool racecheck python -m pytest -m gpu tests/cuda/test_gpu_attention.py -k "matches"

Asking for these tests where the GPU is not usable is an error (with the reason), not a skip.
"""

import math

import numpy as np
import pytest

from tests.cuda.conftest import requires_cxx
from tests.cuda.test_host_attention import problem
from tests.helpers import assert_close, random_array, tolerance
from tests.ops.test_attention import as_cache_mask, make_mask, resolved
from toolkit import backend
from toolkit.ops import attention as att
from toolkit.ops.attention import cpu, gpu, reference

cp = pytest.importorskip("cupy")
pytestmark = pytest.mark.gpu

# (N, Tq, Tk, d, dv): one token, Tq != Tk with odd d, partial tiles, several feature chunks (d, dv > 64),
# the feature limit, and sequences long enough for many tiles per block row.
SHAPES = [(1, 1, 1, 1, 1), (1, 4, 6, 5, 3), (2, 70, 66, 9, 4), (3, 65, 130, 65, 130), (2, 33, 20, 256, 256),
          (4, 300, 257, 64, 64)]
MASKS = [None, "causal", "shared", "per_batch"]


def check(ours, expected, dtype, name):
    """float64: the project's tolerance. float32: ``expected`` is the float64 reference of the same (float32)
    inputs, and atol is scaled by its largest magnitude. Unscaled scores over d = 256 features have a
    standard deviation of 16, so the gradients are ill-conditioned: there the float32 NumPy reference
    itself is about 1e-4 from the truth (gradients up to about 40), as far as the kernels are."""
    tol = tolerance(dtype)
    if np.dtype(dtype) == np.float32:
        finite = np.abs(np.where(np.isfinite(expected), expected, 0.0))
        tol = dict(atol=tol["atol"] * max(1.0, float(finite.max())), rtol=tol["rtol"])
    assert_close(ours, expected, **tol, name=name)


def test_dispatch_picks_the_gpu_module():
    assert backend.dispatch("attention", q=cp.ones((1, 2, 3))) is gpu
    with pytest.raises(backend.DeviceMismatchError, match="two devices"):
        att.attention_forward(cp.ones((1, 2, 3)), np.ones((1, 2, 3)), cp.ones((1, 2, 3)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [True, False, 0.37])
@pytest.mark.parametrize("mask_kind", MASKS)
@pytest.mark.parametrize("shape", SHAPES)
def test_public_api_on_gpu_matches_reference(shape, mask_kind, scale, dtype, rng):
    q, k, v, dout = problem(rng, shape, dtype)
    n, tq, tk, d, _ = shape
    mask = make_mask(mask_kind, n, tq, tk, rng)
    out, cache = att.attention_forward(cp.asarray(q), cp.asarray(k), cp.asarray(v),
                                       mask=None if mask is None else cp.asarray(mask), scale=scale)
    assert isinstance(out, cp.ndarray) and out.dtype == dtype and type(cache) is att.AttentionCache
    grads = att.attention_backward(cp.asarray(dout), cache)
    q64, k64, v64, dout64 = (a.astype(np.float64) for a in (q, k, v, dout))
    m, s = as_cache_mask(mask, tq, tk), resolved(scale, d)
    out_ref, cache_ref = reference.forward(q64, k64, v64, m, s)
    check(cp.asnumpy(out), out_ref, dtype, "out")
    check(cache.weights.get(), cache_ref.weights, dtype, "weights")
    for name, ours, expected in zip(("dq", "dk", "dv"), grads, reference.backward(dout64, cache_ref)):
        assert isinstance(ours, cp.ndarray) and ours.dtype == dtype
        check(cp.asnumpy(ours), expected, dtype, name)
    scores = att.attention_scores(cp.asarray(q), cp.asarray(k), mask=None if mask is None else cp.asarray(mask),
                                  scale=scale)
    check(cp.asnumpy(scores), reference.scores(q64, k64, m, s), dtype, "scores")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cpu_gpu_parity(dtype, rng):
    shape = (4, 257, 190, 64, 48)
    q, k, v, dout = problem(rng, shape, dtype)
    mask = make_mask("per_batch", *shape[:3], rng)
    out_c, cache_c = cpu.forward(q, k, v, mask, 0.125)
    out_g, cache_g = gpu.forward(cp.asarray(q), cp.asarray(k), cp.asarray(v), cp.asarray(mask), 0.125)
    tol = tolerance(dtype)
    assert_close(cp.asnumpy(out_g), out_c, **tol, name="out CPU vs GPU")
    assert_close(np.asarray(cache_g.weights), cache_c.weights, **tol, name="weights CPU vs GPU")
    for name, g, c in zip("qkv", gpu.backward(cp.asarray(dout), cache_g), cpu.backward(dout, cache_c)):
        assert_close(cp.asnumpy(g), c, **tol, name=f"d{name} CPU vs GPU")


def test_results_are_deterministic(rng):
    q, k, v, dout = (cp.asarray(a) for a in problem(rng, (2, 300, 300, 64, 64), np.float32))
    first = gpu.forward(q, k, v, None, 0.125)
    grads = gpu.backward(dout, first[1])
    for _ in range(3):
        again = gpu.forward(q, k, v, None, 0.125)
        assert bool((again[0] == first[0]).all())
        assert all(bool((a == b).all()) for a, b in zip(gpu.backward(dout, again[1]), grads))


def test_deferred_weights_are_computed_once_on_demand(rng):
    q, k, v, _ = (cp.asarray(a) for a in problem(rng, (2, 5, 7, 3, 2), np.float64))
    _, cache = att.attention_forward(q, k, v)
    w = cache.weights
    assert isinstance(w, gpu.DeferredWeights) and not w.materialized
    assert w.shape == (2, 5, 7) and w.dtype == np.float64 and w.ndim == 3 and len(w) == 2
    dense = cp.asarray(w)  # __cuda_array_interface__
    assert w.materialized and w.materialize() is w.materialize()
    assert_close(cp.asnumpy(dense.sum(axis=-1)), np.ones((2, 5)), atol=1e-12, rtol=0, name="row sums")
    assert_close(cp.asnumpy(w[1, 2]), cp.asnumpy(dense[1, 2]), atol=0, rtol=0, name="indexing")
    assert_close(backend.to_numpy(w), cp.asnumpy(dense), atol=0, rtol=0, name="to_numpy")


def test_forward_and_backward_memory_is_linear_in_the_sequence(rng):
    # T = 16384: a (1, T, T) float32 weights matrix would take 1 GiB; the fused kernels allocate O(T d).
    n, t, d = 1, 16384, 64
    q, k, v, dout = (cp.asarray(random_array(rng, (n, t, d), np.float32)) for _ in range(4))
    causal = cp.asarray(np.tril(np.ones((t, t), bool)))  # the mask itself is the caller's (T, T) input
    pool = cp.get_default_memory_pool()
    cp.cuda.Device().synchronize()
    pool.free_all_blocks()
    base = pool.used_bytes()
    out, cache = att.attention_forward(q, k, v, mask=causal)
    grads = att.attention_backward(dout, cache)
    cp.cuda.Device().synchronize()
    grown = pool.total_bytes() - base
    quadratic = n * t * t * 4
    assert grown < quadratic // 16, f"{grown} bytes allocated; the weights alone would be {quadratic}"
    assert not cache.weights.materialized
    assert all(bool(cp.isfinite(g).all()) for g in (out, *grads))


@requires_cxx
def test_host_harness_agrees_with_the_device(rng):
    from toolkit.cuda.host import harness

    q, k, v, dout = problem(rng, (2, 70, 66, 9, 4), np.float32)
    mask = make_mask("per_batch", 2, 70, 66, rng)
    target = harness.target("attention")
    out_h, cache_h = gpu.forward_on(target, q, k, v, mask, 0.5)
    out_g, cache_g = gpu.forward(cp.asarray(q), cp.asarray(k), cp.asarray(v), cp.asarray(mask), 0.5)
    assert_close(cp.asnumpy(out_g), out_h, atol=1e-6, rtol=1e-5, name="out GPU vs host harness")
    for name, g, h in zip("qkv", gpu.backward(cp.asarray(dout), cache_g), gpu.backward_on(target, dout, cache_h)):
        assert_close(cp.asnumpy(g), h, atol=1e-6, rtol=1e-5, name=f"d{name} GPU vs host harness")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_scores_do_not_overflow(dtype, rng):
    q = rng.integers(-300, 301, (2, 4, 3)).astype(dtype)
    k = rng.integers(-300, 301, (2, 5, 3)).astype(dtype)
    v, dout = random_array(rng, (2, 5, 2), dtype), random_array(rng, (2, 4, 2), dtype)
    mask = make_mask("per_batch", 2, 4, 5, rng)
    out, cache = att.attention_forward(*(cp.asarray(a) for a in (q, k, v)), mask=cp.asarray(mask), scale=False)
    grads = att.attention_backward(cp.asarray(dout), cache)
    assert all(bool(cp.isfinite(a).all()) for a in (out, cache.weights.materialize(), *grads))
    out_ref, _ = reference.forward(*(a.astype(np.float64) for a in (q, k, v)), mask, 1.0)
    assert_close(cp.asnumpy(out), out_ref, **tolerance(dtype), name="out")


@pytest.mark.parametrize("masked", [False, True])
def test_nan_and_inf_follow_ieee(masked, rng):
    q, k, v, dout = problem(rng, (1, 4, 3, 2, 2), np.float64)
    q[0, 1, 0] = np.nan
    q[0, 2, :] = [np.inf, 0.0]
    v[0, 0, 1] = np.inf
    mask = None
    if masked:
        mask = np.ones((1, 4, 3), dtype=bool)
        mask[..., 2] = False
    out, cache = gpu.forward(*(cp.asarray(a) for a in (q, k, v)), None if mask is None else cp.asarray(mask), 1.0)
    grads = gpu.backward(cp.asarray(dout), cache)
    with np.errstate(invalid="ignore", over="ignore"):
        out_ref, cache_ref = reference.forward(q, k, v, mask, 1.0)
        grads_ref = reference.backward(dout, cache_ref)
    assert_close(cp.asnumpy(out), out_ref, atol=1e-12, rtol=1e-12, name="out with NaN/Inf")
    assert_close(cache.weights.get(), cache_ref.weights, atol=1e-12, rtol=1e-12, name="weights with NaN/Inf")
    for name, ours, expected in zip("qkv", grads, grads_ref):
        assert_close(cp.asnumpy(ours), expected, atol=1e-12, rtol=1e-12, name=f"d{name} with NaN/Inf")


def test_strided_gpu_input_is_copied(rng):
    base = cp.asarray(random_array(rng, (2, 8, 6)))
    q, k, v = base[:, ::2, :3], base[:, 1::2, 3:], base[:, ::2, ::2]
    out, _ = att.attention_forward(q, k, v)
    expected, _ = reference.forward(*(cp.asnumpy(cp.ascontiguousarray(a)) for a in (q, k, v)), None, 1 / math.sqrt(3))
    assert_close(cp.asnumpy(out), expected, atol=1e-14, rtol=1e-12, name="out of strided views")


def test_bad_gpu_input_is_named():
    ones = cp.ones((2, 3, 4))
    with pytest.raises(TypeError, match="q must have dtype float32 or float64; got int64"):
        att.attention_forward(cp.ones((2, 3, 4), cp.int64), ones, ones)
    with pytest.raises(ValueError, match=r"v must have at most dv=256 features on the GPU.*got dv=257"):
        att.attention_forward(ones, ones, cp.ones((2, 3, 257)))
    with pytest.raises(ValueError, match=r"q and k must have at most d=256 features on the GPU.*got d=300"):
        att.attention_forward(cp.ones((2, 3, 300)), cp.ones((2, 3, 300)), ones)
    _, cache = att.attention_forward(ones, ones, ones)
    with pytest.raises(backend.DeviceMismatchError, match="two devices"):
        att.attention_backward(np.ones((2, 3, 4)), cache)
    with pytest.raises(TypeError, match="dout must have dtype float64 like the other inputs; got float32"):
        att.attention_backward(cp.ones((2, 3, 4), cp.float32), cache)
