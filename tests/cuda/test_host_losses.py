"""losses.cu executed on the CPU by the host harness, through gpu.py's own launch code, vs the NumPy
reference: every loss (binary cross-entropy both ways), float32 and float64, forward and backward.

Sizes hit every branch: one element, less than a warp, a partial last chunk, more chunks than the 3 blocks
of a capped grid (the chunk size is also shrunk so that small arrays make many chunks), the class axis
first, in the middle and last, softmax cross-entropy rows shorter than a warp, exactly 32 and 256 classes
(the widest rows one warp takes), 257 classes and wider rows than a block (one block per row, strided),
more rows than warps. Each check runs under three schedules: threads and blocks in forward and in
reverse order with the grid capped at 3 blocks, and forward with an uncapped grid. Tolerances are
tests/helpers.tolerance(dtype).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.cuda import fakes
from tests.cuda.conftest import host_build, requires_cxx, scheduled_targets
from tests.helpers import assert_close, tolerance
from tests.ops.test_losses import full_params, inputs
from toolkit.cuda import sources
from toolkit.cuda.host import harness
from toolkit.ops.losses import codes, gpu, reference

pytestmark = requires_cxx

CASES = [("mse", {}), ("mse_half", {}), ("quadratic", {}), ("categorical_crossentropy", {}),
         ("softmax_crossentropy", {}), ("binary_crossentropy", {}), ("binary_crossentropy", {"from_logits": True}),
         ("mape", {})]
CASE_IDS = [name + ("_logits" if params else "") for name, params in CASES]
SHAPES = [(1,), (3, 5), (2, 3, 33), (9000,)]  # 9000 elements: 3 chunks of 4096, the last partial


losses_host = host_build("losses")
target = scheduled_targets("losses_host")


def check_pair(target, name, params, y, t, dloss=0.7, tol=None):
    """gpu.py's forward and backward on ``target`` against the reference; returns (loss, dy)."""
    dtype = y.dtype
    tol = tol or tolerance(dtype)
    loss, cache = gpu.forward_on(target, name, y, t, **params)
    loss_ref, cache_ref = reference.forward(name, y, t, **params)
    assert loss.shape == () and loss.dtype == dtype
    assert_close(loss, loss_ref, **tol, name=f"{name} loss")
    assert cache.name == name and cache.y is y and cache.t is t and cache.params == params
    if name == "softmax_crossentropy":
        assert_close(cache.probabilities, cache_ref.probabilities, **tol, name="softmax probabilities")
    else:
        assert cache.probabilities is None
    dy = gpu.backward_on(target, cache, dloss)
    assert dy.dtype == dtype and dy.shape == y.shape
    assert_close(dy, reference.backward(cache_ref, dloss), **tol, name=f"{name} gradient")
    return loss, dy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name,params", CASES, ids=CASE_IDS)
def test_loss_kernels_match_reference(target, name, params, shape, dtype, rng):
    y, t = inputs(name, params, shape, dtype, rng)
    check_pair(target, name, full_params(name, params, y.ndim), y, t)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", [
    ((4, 3), 0),        # the class axis first: moved last, then back
    ((2, 3, 5), 1),     # a middle axis
    ((1, 1), -1),       # one sample of one class
    ((20, 32), -1),     # exactly a warp wide
    ((3, 256), -1),     # the widest rows a warp takes (8 classes per lane)
    ((2, 257), -1),     # one class more: a block per row
    ((3, 700), -1),     # a block per row with rows longer than the block (256 threads stride)
    ((300, 10), -1),    # more rows than warps: 300 rows in chunks of 409, 8 warps stride over them
])
@pytest.mark.parametrize("name", ["categorical_crossentropy", "softmax_crossentropy"])
def test_class_axis_and_row_widths(target, name, shape, axis, dtype, rng):
    y, t = inputs(name, {}, shape, dtype, rng, axis)
    check_pair(target, name, {"axis": axis % len(shape)}, y, t)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,params,shape", [
    ("mse", {}, (1000,)),                              # 16 chunks of 64 elements, the last partial
    ("binary_crossentropy", {"from_logits": True}, (10, 99)),
    ("softmax_crossentropy", {}, (50, 7)),             # 9 rows per chunk: 6 chunks over 3 blocks
    ("softmax_crossentropy", {}, (5, 300)),            # a block per row, one row per chunk
])
def test_many_chunks(target, monkeypatch, name, params, shape, dtype, rng):
    monkeypatch.setattr(gpu, "CHUNK", 64)
    y, t = inputs(name, params, shape, dtype, rng)
    check_pair(target, name, full_params(name, params, y.ndim), y, t)


@pytest.mark.parametrize("name,params", CASES, ids=CASE_IDS)
def test_the_loss_does_not_depend_on_the_grid(losses_host, monkeypatch, name, params, rng):
    # Deterministic by design (fixed chunks, fixed summation order, no atomics): the same bits for any grid.
    monkeypatch.setattr(gpu, "CHUNK", 128)
    y, t = inputs(name, params, (40, 30), np.float32, rng)
    params = full_params(name, params, 2)
    results = []
    for order, blocks in [("forward", 1), ("reverse", 2), ("forward", 1 << 20)]:
        target = harness.target(losses_host, order=order, max_grid_blocks=blocks)
        loss, cache = gpu.forward_on(target, name, y, t, **params)
        results.append((loss, gpu.backward_on(target, cache)))
    for loss, dy in results[1:]:
        assert loss.tobytes() == results[0][0].tobytes()
        assert np.array_equal(dy, results[0][1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scalar_prediction(target, dtype):
    y, t = np.array(0.25, dtype), np.array(1.0, dtype)
    for name, params in [("mse", {}), ("mape", {}), ("binary_crossentropy", {"from_logits": False})]:
        check_pair(target, name, params, y, t)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["categorical_crossentropy", "binary_crossentropy"])
def test_clip_range_and_its_edges(target, name, dtype):
    # Inside the clip range the gradient flows, at the bounds too; outside it is exactly 0 (the clip is flat).
    lo, hi = reference._clip_bounds(dtype)
    y = np.array([0.0, lo / 2, lo, 0.5, hi, np.nextafter(hi, dtype(2)), 1.0, 1.5], dtype=dtype)
    t = np.full_like(y, 0.3)
    _, dy = check_pair(target, name, full_params(name, {}, 1), y, t, dloss=1.0)
    assert np.all(dy[[0, 1, 5, 6, 7]] == 0) and np.all(dy[[2, 3, 4]] != 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_logits_do_not_overflow(target, dtype):
    z = np.array([[-1e4, -50.0, 0.0, 50.0, 1e4], [1e4, 1e4, -1e4, 0.0, 3.0]], dtype=dtype)
    t = np.array([[0.0, 0.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.0, 0.0, 0.0]], dtype=dtype)
    for name, params in [("softmax_crossentropy", {"axis": 1}), ("binary_crossentropy", {"from_logits": True})]:
        loss, dz = check_pair(target, name, params, z, t)
        assert np.isfinite(loss) and np.all(np.isfinite(dz))


@pytest.mark.parametrize("name,params", CASES, ids=CASE_IDS)
def test_nan_and_inf_follow_the_reference(target, name, params):
    # NaN in y or t makes the loss NaN and the gradient NaN at that element; infinities follow IEEE.
    y = np.array([[0.5, np.nan, 0.2], [np.inf, 0.1, 0.3], [0.2, 0.3, 0.5], [-np.inf, 0.5, 0.5]])
    t = np.array([[0.2, 0.3, 0.5], [0.0, 1.0, 0.0], [np.nan, 0.5, 0.5], [0.0, 0.5, 0.5]])
    params = full_params(name, params, 2)
    loss, cache = gpu.forward_on(target, name, y, t, **params)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # the reference's IEEE arithmetic
        loss_ref, cache_ref = reference.forward(name, y, t, **params)
        dy_ref = reference.backward(cache_ref)
    assert_close(loss, loss_ref, atol=1e-12, rtol=1e-12, name=f"{name} loss")
    assert np.isnan(loss)
    assert_close(gpu.backward_on(target, cache), dy_ref, atol=1e-12, rtol=1e-12, name=f"{name} gradient")


def test_mape_zero_targets_and_exact_hits(target):
    y = np.array([1.0, 2.0, 0.0, -3.0, 5.0])
    t = np.array([0.0, 2.0, 0.0, -1e-9, 4.0])  # |t| below eps uses eps; y == t gives a 0 gradient (sign(0) = 0)
    _, dy = check_pair(target, "mape", {}, y, t, dloss=1.0)
    assert dy[1] == 0 and dy[2] == 0


def test_chunk_constants_agree_with_the_kernels():
    """The shared kernel codes (losses/codes.py) are the kernel's enum order; reduction blocks are full warps."""
    text = sources.op_source("losses").read_text()
    assert "enum Code : int { kSquared = 0, kCategorical, kBinary, kBinaryLogits, kMape };" in text
    assert (codes.SQUARED, codes.CATEGORICAL, codes.BINARY, codes.BINARY_LOGITS, codes.MAPE) == (0, 1, 2, 3, 4)
    assert gpu.REDUCE_THREADS % 32 == 0 and gpu.CHUNK % gpu.REDUCE_THREADS == 0
    assert gpu._row_kernel(256, "forward").endswith("warps") and gpu._row_kernel(257, "forward").endswith("blocks")


def loss_magnitude(name, y, t, params):
    """scale * sum of |terms| over the finite terms: the size of what the loss's sum may cancel."""
    with np.errstate(all="ignore"):
        if name == "softmax_crossentropy":
            terms = t * reference.log_softmax(y, params["axis"])
        else:
            terms = reference.terms(name, y, t, params)
    return reference.scale(name, y.shape, params) * float(np.abs(terms[np.isfinite(terms)]).sum())


# --- property-based: any shape, any axis, values including NaN/inf, either order ------------------------
@settings(max_examples=60, deadline=None)
@given(case=st.sampled_from(CASES), order=st.sampled_from(["forward", "reverse"]),
       shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=9), data=st.data())
def test_property_loss_kernels(losses_host, case, order, shape, data):
    name, params = case
    elements = st.floats(-30, 30, width=32) | st.sampled_from([0.0, 1e-8, 1.0, np.nan, np.inf, -np.inf])
    y = data.draw(hnp.arrays(np.float64, shape, elements=elements))
    t = data.draw(hnp.arrays(np.float64, shape, elements=elements))
    params = full_params(name, params, len(shape), axis=data.draw(st.integers(0, len(shape) - 1)))
    target = harness.target(losses_host, order=order)
    loss, cache = gpu.forward_on(target, name, y, t, **params)
    with np.errstate(all="ignore"):  # NaN/inf inputs: the reference's IEEE arithmetic may warn
        loss_ref, cache_ref = reference.forward(name, y, t, **params)
        dy_ref = reference.backward(cache_ref, 0.5)
    # Two float64 sums of up to 729 terms in different orders: within 1e-13 of the sum of |terms| (terms of
    # either sign cancel, and mape's reach 3e8 where |t| < eps); NaN and inf must match exactly.
    assert_close(loss, loss_ref, atol=1e-13 * loss_magnitude(name, y, t, params), rtol=1e-12, name=f"{name} loss")
    assert_close(gpu.backward_on(target, cache, 0.5), dy_ref, atol=1e-12, rtol=1e-12, name=f"{name} gradient")


# --- the public CuPy path, with a stand-in for CuPy that runs the host harness ---------------------------
def test_public_gpu_path_wiring(fake_cupy, rng):
    for (name, params), shape in zip(CASES, [(5,), (3, 4), (2, 3, 4), (4, 10), (6, 300), (33,), (33,), (7, 2)]):
        y, t = inputs(name, params, shape, np.float64, rng)
        params = full_params(name, params, len(shape))
        loss, cache = gpu.forward(name, y, t, **params)
        loss_ref, cache_ref = reference.forward(name, y, t, **params)
        assert_close(loss, loss_ref, **tolerance(np.float64), name=name)
        assert_close(gpu.backward(cache, 2.0), reference.backward(cache_ref, 2.0), **tolerance(np.float64), name=name)
    fakes.assert_compiled_once(fake_cupy, "losses")
