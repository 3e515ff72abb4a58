"""rnn on a real GPU: the public API on CuPy arrays vs the NumPy reference, CPU/GPU parity, the host
harness vs the device, determinism, dispatch and validation (speed is measured by bench/, never by tests).

Deselected by default (pyproject: -m 'not gpu'). On a machine with a GPU:

    python -m pytest -m gpu tests/cuda/test_gpu_rnn.py
    compute-sanitizer --tool memcheck  python -m pytest -m gpu tests/cuda/test_gpu_rnn.py
    compute-sanitizer --tool racecheck python -m pytest -m gpu tests/cuda/test_gpu_rnn.py -k "not large"

Asking for these tests where the GPU is not usable is an error (with the reason), not a skip.
Tolerance (as test_host_rnn.py): against the reference in float64 on the same inputs, with
tests/helpers.tolerance(dtype) whose atol is scaled by the array's largest magnitude (at least 1).
"""

import numpy as np
import pytest

from tests.cuda.conftest import requires_cxx
from tests.cuda.test_host_rnn import make_inputs
from tests.helpers import assert_close, random_array, tolerance
from toolkit import backend
from toolkit.ops import rnn
from toolkit.ops.rnn import cpu, gpu, reference

cp = pytest.importorskip("cupy")
pytestmark = pytest.mark.gpu

GRAD_NAMES = ("dx", "dh0", "dW_xh", "dW_hh", "db_h", "dW_hy", "db_y")
# (N, T, D, H, O): the host-test shapes, then sizes that fill the GPU.
SHAPES = [(1, 1, 1, 1, 1), (1, 1, 3, 5, None), (3, 4, 5, 7, 3), (2, 3, 70, 3, 2), (33, 3, 5, 35, 2),
          (33, 8, 3, 66, 4),
          (64, 50, 128, 256, 10),    # a typical layer: split-k weight gradients, 16 step tiles
          (1, 200, 32, 512, None),   # batch 1, a long sequence
          (513, 7, 300, 129, 1)]     # partial tiles everywhere at scale


def to_gpu(args):
    return {k: None if v is None else cp.asarray(v) for k, v in args.items()}


def up(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def assert_matches(ours, expected, dtype, name):
    if expected is None:
        assert ours is None, f"{name}: expected None"
        return
    assert isinstance(ours, cp.ndarray) and ours.dtype == dtype and ours.shape == expected.shape, name
    tol = tolerance(dtype)
    scale = max(1.0, float(np.nanmax(np.abs(expected), initial=0.0)))
    assert_close(cp.asnumpy(ours), expected, atol=tol["atol"] * scale, rtol=tol["rtol"], name=name)


def test_dispatch_picks_the_gpu_module():
    assert backend.dispatch("rnn", x=cp.ones((1, 1, 1))) is gpu
    with pytest.raises(backend.DeviceMismatchError, match="two devices"):
        rnn.rnn_forward(cp.ones((1, 2, 3)), None, np.ones((3, 4)), cp.ones((4, 4)), cp.ones(4))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_rnn_on_gpu_matches_reference(shape, dtype, rng):
    N, T, D, H, O = shape
    args = make_inputs(rng, N, T, D, H, O, dtype)
    dy = None if O is None else random_array(rng, (N, T, O), dtype)
    dh = random_array(rng, (N, T, H), dtype)
    y, h, cache = rnn.rnn_forward(**to_gpu(args))
    y_ref, h_ref, cache_ref = reference.forward(**{k: up(v) for k, v in args.items()})
    assert_matches(h, h_ref, dtype, "h")
    assert_matches(y, y_ref, dtype, "y")
    assert isinstance(cache.h, cp.ndarray) and isinstance(cache.x, cp.ndarray)
    grads = rnn.rnn_backward(None if dy is None else cp.asarray(dy), cp.asarray(dh), cache)
    for name, ours, ref in zip(GRAD_NAMES, grads, reference.backward(up(dy), up(dh), cache_ref)):
        assert_matches(ours, ref, dtype, name)


@pytest.mark.parametrize("case", ["dy only", "dh only", "no read-out", "read-out without bias", "h0 None"])
def test_backward_variants_on_gpu(case, rng):
    O = None if case == "no read-out" else 2
    args = make_inputs(rng, 3, 4, 2, 5, O, readout_bias=case != "read-out without bias")
    if case == "h0 None":
        args["h0"] = None
    dy = random_array(rng, (3, 4, 2)) if case in ("dy only", "read-out without bias") else None
    dh = None if dy is not None else random_array(rng, (3, 4, 5))
    _, _, cache = rnn.rnn_forward(**to_gpu(args))
    if case == "h0 None":
        args["h0"] = np.zeros((3, 5))
    _, _, cache_ref = reference.forward(**args)
    grads = rnn.rnn_backward(None if dy is None else cp.asarray(dy), None if dh is None else cp.asarray(dh), cache)
    for name, ours, ref in zip(GRAD_NAMES, grads, reference.backward(dy, dh, cache_ref)):
        assert_matches(ours, ref, np.float64, f"{case}: {name}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cpu_gpu_parity(dtype, rng):
    args = make_inputs(rng, 33, 9, 17, 70, 3, dtype)
    dy, dh = random_array(rng, (33, 9, 3), dtype), random_array(rng, (33, 9, 70), dtype)
    y_cpu, h_cpu, cache_cpu = cpu.forward(**args)
    y_gpu, h_gpu, cache_gpu = gpu.forward(**to_gpu(args))
    assert_matches(h_gpu, h_cpu.astype(np.float64), dtype, "h CPU vs GPU")
    assert_matches(y_gpu, y_cpu.astype(np.float64), dtype, "y CPU vs GPU")
    for name, got, want in zip(GRAD_NAMES, gpu.backward(cp.asarray(dy), cp.asarray(dh), cache_gpu),
                               cpu.backward(dy, dh, cache_cpu)):
        assert_matches(got, want.astype(np.float64), dtype, f"{name} CPU vs GPU")


def test_caches_are_interchangeable(rng):
    # A forward on the CPU, its cache moved to the GPU field by field, then the GPU backward (and back).
    args = make_inputs(rng, 4, 5, 3, 6, 2)
    dy, dh = random_array(rng, (4, 5, 2)), random_array(rng, (4, 5, 6))
    _, _, cache_cpu = cpu.forward(**args)
    moved = reference.RNNCache(*(None if a is None else cp.asarray(a) for a in cache_cpu))
    expected = cpu.backward(dy, dh, cache_cpu)
    for name, got, want in zip(GRAD_NAMES, gpu.backward(cp.asarray(dy), cp.asarray(dh), moved), expected):
        assert_matches(got, want, np.float64, f"{name} from the CPU cache")
    _, _, cache_gpu = gpu.forward(**to_gpu(args))
    back = reference.RNNCache(*(None if a is None else cp.asnumpy(a) for a in cache_gpu))
    for name, got, want in zip(GRAD_NAMES, cpu.backward(dy, dh, back), expected):
        assert_close(got, want, **tolerance(np.float64), name=f"{name} from the GPU cache")


@requires_cxx
def test_host_harness_agrees_with_the_device(rng):
    # The harness's claim: it runs the same source with the same launch code. Check it against the GPU.
    from toolkit.cuda.host import harness

    args = make_inputs(rng, 33, 8, 5, 66, 4, np.float32)
    dy, dh = random_array(rng, (33, 8, 4), np.float32), random_array(rng, (33, 8, 66), np.float32)
    target = harness.target("rnn")
    y_host, h_host, cache_host = gpu.forward_on(target, **args)
    y_gpu, h_gpu, cache_gpu = gpu.forward(**to_gpu(args))
    assert_close(cp.asnumpy(h_gpu), h_host, atol=1e-5, rtol=1e-5, name="h GPU vs host harness")
    assert_close(cp.asnumpy(y_gpu), y_host, atol=1e-5, rtol=1e-5, name="y GPU vs host harness")
    for name, got, want in zip(GRAD_NAMES, gpu.backward(cp.asarray(dy), cp.asarray(dh), cache_gpu),
                               gpu.backward_on(target, dy, dh, cache_host)):
        assert_close(cp.asnumpy(got), want, atol=1e-4, rtol=1e-4, name=f"{name} GPU vs host harness")


def test_results_are_deterministic(rng):
    # No atomics anywhere (split-k slices and column-sum chunks are added in a fixed order): the same bits.
    args = to_gpu(make_inputs(rng, 64, 50, 128, 256, 10, np.float32))
    dy, dh = cp.asarray(random_array(rng, (64, 50, 10), np.float32)), cp.asarray(random_array(rng, (64, 50, 256),
                                                                                               np.float32))
    runs = []
    for _ in range(3):
        y, h, cache = rnn.rnn_forward(**args)
        runs.append([cp.asnumpy(a) for a in (y, h, *rnn.rnn_backward(dy, dh, cache))])
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturated_inputs_stay_finite(dtype, rng):
    args = make_inputs(rng, 2, 4, 3, 5, 2, dtype)
    args["x"] = np.array([-1e4, 1e4], dtype=dtype)[:, None, None] * np.ones((2, 4, 3), dtype)
    y, h, cache = rnn.rnn_forward(**to_gpu(args))
    grads = rnn.rnn_backward(cp.ones_like(y), cp.ones_like(h), cache)
    assert bool(cp.all(cp.abs(h) <= 1)) and bool(cp.all(cp.isfinite(y)))
    assert all(bool(cp.all(cp.isfinite(g))) for g in grads)


def test_nan_and_inf_propagate_like_the_reference(rng):
    args = make_inputs(rng, 3, 4, 2, 3, 2)
    args["x"][1, 2, 0] = np.nan
    args["x"][2, 1, 1] = np.inf
    y, h, cache = rnn.rnn_forward(**to_gpu(args))
    y_ref, h_ref, cache_ref = reference.forward(**args)
    assert_close(cp.asnumpy(h), h_ref, atol=1e-12, rtol=1e-10, name="h with NaN/Inf")
    dy, dh = np.ones_like(y_ref), np.ones_like(h_ref)
    with np.errstate(invalid="ignore"):
        expected = reference.backward(dy, dh, cache_ref)
    for name, got, want in zip(GRAD_NAMES, rnn.rnn_backward(cp.asarray(dy), cp.asarray(dh), cache), expected):
        assert_close(cp.asnumpy(got), want, atol=1e-12, rtol=1e-10, name=f"{name} with NaN/Inf")


def test_strided_gpu_input_is_copied(rng):
    args = make_inputs(rng, 2, 3, 2, 4, 2)
    strided = {k: cp.repeat(cp.asarray(v), 2, axis=-1)[..., ::2] for k, v in args.items()}
    assert not strided["x"].flags.c_contiguous
    y, h, _ = rnn.rnn_forward(**strided)
    y_ref, h_ref, _ = reference.forward(**args)
    assert_close(cp.asnumpy(h), h_ref, atol=1e-12, rtol=1e-10, name="h from strided views")
    assert_close(cp.asnumpy(y), y_ref, atol=1e-12, rtol=1e-10, name="y from strided views")


def test_bad_gpu_input_is_named(rng):
    args = to_gpu(make_inputs(rng, 2, 3, 4, 5, 2))
    with pytest.raises(TypeError, match="x must have dtype float32 or float64; got int64"):
        rnn.rnn_forward(**{**args, "x": cp.ones((2, 3, 4), dtype=cp.int64)})
    with pytest.raises(TypeError, match="W_hh must have dtype float64 like the other inputs; got float32"):
        rnn.rnn_forward(**{**args, "W_hh": cp.ones((5, 5), dtype=cp.float32)})
    with pytest.raises(ValueError, match=r"W_hh must have shape \(5, 5\); got \(5, 4\)"):
        rnn.rnn_forward(**{**args, "W_hh": cp.ones((5, 4))})
    _, h, cache = rnn.rnn_forward(**args)
    with pytest.raises(backend.DeviceMismatchError, match="two devices"):
        rnn.rnn_backward(None, np.ones((2, 3, 5)), cache)
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 3, 2\); got \(2, 3, 5\)"):
        rnn.rnn_backward(cp.ones((2, 3, 5)), None, cache)
