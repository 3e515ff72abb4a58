"""lstm on a real GPU: the public API on CuPy arrays vs the NumPy reference, CPU/GPU parity, the host
harness vs the device, determinism, dispatch and validation (speed is measured by bench/, never by tests).

Deselected by default (pyproject: -m 'not gpu'). On a machine with a GPU:

    python -m pytest -m gpu tests/cuda/test_gpu_lstm.py
    compute-sanitizer --tool memcheck  python -m pytest -m gpu tests/cuda/test_gpu_lstm.py
    compute-sanitizer --tool racecheck python -m pytest -m gpu tests/cuda/test_gpu_lstm.py -k "not large"

Asking for these tests where the GPU is not usable is an error (with the reason), not a skip.
Tolerance (as test_host_lstm.py): against the reference in float64 on the same inputs, with
tests/helpers.tolerance(dtype) whose atol is scaled by the array's largest magnitude (at least 1).
"""

import numpy as np
import pytest

from tests.cuda.conftest import requires_cxx
from tests.cuda.test_host_lstm import make_inputs, upstream
from tests.helpers import assert_close, tolerance
from toolkit import backend
from toolkit.ops import lstm
from toolkit.ops.lstm import cpu, gpu, reference

cp = pytest.importorskip("cupy")
pytestmark = pytest.mark.gpu

GRAD_NAMES = ("dx", "dh0", "dc0", "dW", "dU", "db")
# (N, T, D, H): the host-test shapes, then sizes that fill the GPU.
SHAPES = [(1, 1, 1, 1), (1, 1, 3, 5), (3, 4, 5, 7), (2, 3, 70, 3), (33, 3, 5, 9), (3, 2, 4, 35), (33, 8, 3, 17),
          (64, 50, 128, 256),    # a typical layer: 4H = 1024, split-k weight gradients
          (1, 200, 32, 512),     # batch 1, a long sequence
          (513, 7, 300, 129)]    # partial tiles everywhere at scale
UPSTREAM = ["dh and dc_last", "dh only", "dc_last only"]


def to_gpu(args):
    return {k: None if v is None else cp.asarray(v) for k, v in args.items()}


def gpu_or_none(a):
    return None if a is None else cp.asarray(a)


def up(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def assert_matches(ours, expected, dtype, name):
    assert isinstance(ours, cp.ndarray) and ours.dtype == dtype and ours.shape == expected.shape, name
    tol = tolerance(dtype)
    scale = max(1.0, float(np.nanmax(np.abs(expected), initial=0.0)))
    assert_close(cp.asnumpy(ours), expected, atol=tol["atol"] * scale, rtol=tol["rtol"], name=name)


def test_dispatch_picks_the_gpu_module():
    assert backend.dispatch("lstm", x=cp.ones((1, 1, 1))) is gpu
    with pytest.raises(backend.DeviceMismatchError, match="two devices"):
        lstm.lstm_forward(cp.ones((1, 2, 3)), None, None, np.ones((3, 8)), cp.ones((2, 8)), cp.ones(8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_lstm_on_gpu_matches_reference(shape, dtype, rng):
    N, T, D, H = shape
    args = make_inputs(rng, N, T, D, H, dtype)
    dh, dc_last = upstream(rng, N, T, H, dtype, "dh and dc_last")
    h, c, cache = lstm.lstm_forward(**to_gpu(args))
    h_ref, c_ref, cache_ref = reference.forward(**{k: up(v) for k, v in args.items()})
    assert_matches(h, h_ref, dtype, "h")
    assert_matches(c, c_ref, dtype, "c")
    assert_matches(cache.gates, cache_ref.gates, dtype, "gates")
    grads = lstm.lstm_backward(cp.asarray(dh), cache, cp.asarray(dc_last))
    for name, ours, ref in zip(GRAD_NAMES, grads, reference.backward(up(dh), cache_ref, up(dc_last))):
        assert_matches(ours, ref, dtype, name)


@pytest.mark.parametrize("case", UPSTREAM[1:] + ["initial states None"])
def test_backward_variants_on_gpu(case, rng):
    args = make_inputs(rng, 3, 4, 2, 5)
    if case == "initial states None":
        args["h0"] = args["c0"] = None
    dh, dc_last = upstream(rng, 3, 4, 5, np.float64, "dh and dc_last" if case == "initial states None" else case)
    _, _, cache = lstm.lstm_forward(**to_gpu(args))
    if case == "initial states None":
        args["h0"] = args["c0"] = np.zeros((3, 5))
    _, _, cache_ref = reference.forward(**args)
    grads = lstm.lstm_backward(gpu_or_none(dh), cache, gpu_or_none(dc_last))
    for name, ours, ref in zip(GRAD_NAMES, grads, reference.backward(dh, cache_ref, dc_last)):
        assert_matches(ours, ref, np.float64, f"{case}: {name}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cpu_gpu_parity(dtype, rng):
    args = make_inputs(rng, 33, 9, 17, 70, dtype)
    dh, dc_last = upstream(rng, 33, 9, 70, dtype, "dh and dc_last")
    h_cpu, c_cpu, cache_cpu = cpu.forward(**args)
    h_gpu, c_gpu, cache_gpu = gpu.forward(**to_gpu(args))
    assert_matches(h_gpu, h_cpu.astype(np.float64), dtype, "h CPU vs GPU")
    assert_matches(c_gpu, c_cpu.astype(np.float64), dtype, "c CPU vs GPU")
    for name, got, want in zip(GRAD_NAMES, gpu.backward(cp.asarray(dh), cache_gpu, cp.asarray(dc_last)),
                               cpu.backward(dh, cache_cpu, dc_last)):
        assert_matches(got, want.astype(np.float64), dtype, f"{name} CPU vs GPU")


def test_caches_are_interchangeable(rng):
    # A forward on the CPU, its cache moved to the GPU field by field, then the GPU backward (and back).
    args = make_inputs(rng, 4, 5, 3, 6)
    dh, dc_last = upstream(rng, 4, 5, 6, np.float64, "dh and dc_last")
    _, _, cache_cpu = cpu.forward(**args)
    moved = reference.LSTMCache(*(cp.asarray(a) for a in cache_cpu))
    expected = cpu.backward(dh, cache_cpu, dc_last)
    for name, got, want in zip(GRAD_NAMES, gpu.backward(cp.asarray(dh), moved, cp.asarray(dc_last)), expected):
        assert_matches(got, want, np.float64, f"{name} from the CPU cache")
    _, _, cache_gpu = gpu.forward(**to_gpu(args))
    back = reference.LSTMCache(*(cp.asnumpy(a) for a in cache_gpu))
    for name, got, want in zip(GRAD_NAMES, cpu.backward(dh, back, dc_last), expected):
        assert_close(got, want, **tolerance(np.float64), name=f"{name} from the GPU cache")


@requires_cxx
def test_host_harness_agrees_with_the_device(rng):
    # The harness's claim: it runs the same source with the same launch code. Check it against the GPU.
    from toolkit.cuda.host import harness

    args = make_inputs(rng, 33, 8, 5, 17, np.float32)
    dh, dc_last = upstream(rng, 33, 8, 17, np.float32, "dh and dc_last")
    target = harness.target("lstm")
    h_host, c_host, cache_host = gpu.forward_on(target, **args)
    h_gpu, c_gpu, cache_gpu = gpu.forward(**to_gpu(args))
    assert_close(cp.asnumpy(h_gpu), h_host, atol=1e-5, rtol=1e-5, name="h GPU vs host harness")
    assert_close(cp.asnumpy(c_gpu), c_host, atol=1e-5, rtol=1e-5, name="c GPU vs host harness")
    for name, got, want in zip(GRAD_NAMES, gpu.backward(cp.asarray(dh), cache_gpu, cp.asarray(dc_last)),
                               gpu.backward_on(target, dh, cache_host, dc_last)):
        assert_close(cp.asnumpy(got), want, atol=1e-4, rtol=1e-4, name=f"{name} GPU vs host harness")


def test_results_are_deterministic(rng):
    # No atomics anywhere (split-k slices and column-sum chunks are added in a fixed order): the same bits.
    args = to_gpu(make_inputs(rng, 64, 50, 128, 256, np.float32))
    dh, dc_last = (cp.asarray(a) for a in upstream(rng, 64, 50, 256, np.float32, "dh and dc_last"))
    runs = []
    for _ in range(3):
        h, c, cache = lstm.lstm_forward(**args)
        runs.append([cp.asnumpy(a) for a in (h, c, cache.gates, *lstm.lstm_backward(dh, cache, dc_last))])
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturated_gates_stay_finite(dtype, rng):
    args = make_inputs(rng, 2, 4, 3, 5, dtype)
    args["x"] = np.array([-1e4, 1e4], dtype=dtype)[:, None, None] * np.ones((2, 4, 3), dtype)
    h, c, cache = lstm.lstm_forward(**to_gpu(args))
    grads = lstm.lstm_backward(cp.ones_like(h), cache, cp.ones_like(c[:, -1]))
    assert bool(cp.all(cp.isfinite(h))) and bool(cp.all(cp.isfinite(c))) and bool(cp.all(cp.abs(h) <= 1))
    assert set(np.unique(cp.asnumpy(cache.gates[:, :, : 2 * 5]))) <= {0.0, 1.0}
    assert all(bool(cp.all(cp.isfinite(g))) for g in grads)


def test_nan_and_inf_propagate_like_the_reference(rng):
    args = make_inputs(rng, 3, 4, 2, 3)
    args["x"][1, 2, 0] = np.nan
    args["x"][2, 1, 1] = np.inf
    h, c, cache = lstm.lstm_forward(**to_gpu(args))
    h_ref, c_ref, cache_ref = reference.forward(**args)
    assert_close(cp.asnumpy(h), h_ref, atol=1e-12, rtol=1e-10, name="h with NaN/Inf")
    assert_close(cp.asnumpy(c), c_ref, atol=1e-12, rtol=1e-10, name="c with NaN/Inf")
    dh, dc_last = np.ones_like(h_ref), np.ones_like(c_ref[:, -1])
    with np.errstate(invalid="ignore"):
        expected = reference.backward(dh, cache_ref, dc_last)
    for name, got, want in zip(GRAD_NAMES, lstm.lstm_backward(cp.asarray(dh), cache, cp.asarray(dc_last)), expected):
        assert_close(cp.asnumpy(got), want, atol=1e-12, rtol=1e-10, name=f"{name} with NaN/Inf")


def test_strided_gpu_input_is_copied(rng):
    args = make_inputs(rng, 2, 3, 2, 4)
    strided = {k: cp.repeat(cp.asarray(v), 2, axis=-1)[..., ::2] for k, v in args.items()}
    assert not strided["x"].flags.c_contiguous
    h, c, _ = lstm.lstm_forward(**strided)
    h_ref, c_ref, _ = reference.forward(**args)
    assert_close(cp.asnumpy(h), h_ref, atol=1e-12, rtol=1e-10, name="h from strided views")
    assert_close(cp.asnumpy(c), c_ref, atol=1e-12, rtol=1e-10, name="c from strided views")


def test_bad_gpu_input_is_named(rng):
    args = to_gpu(make_inputs(rng, 2, 3, 4, 5))
    with pytest.raises(TypeError, match="x must have dtype float32 or float64; got int64"):
        lstm.lstm_forward(**{**args, "x": cp.ones((2, 3, 4), dtype=cp.int64)})
    with pytest.raises(TypeError, match="U must have dtype float64 like the other inputs; got float32"):
        lstm.lstm_forward(**{**args, "U": cp.ones((5, 20), dtype=cp.float32)})
    with pytest.raises(ValueError, match=r"U must have shape \(5, 20\); got \(5, 16\)"):
        lstm.lstm_forward(**{**args, "U": cp.ones((5, 16))})
    h, c, cache = lstm.lstm_forward(**args)
    with pytest.raises(backend.DeviceMismatchError, match="two devices"):
        lstm.lstm_backward(np.ones((2, 3, 5)), cache)
    with pytest.raises(ValueError, match=r"dc_last must have shape \(2, 5\); got \(2, 3, 5\)"):
        lstm.lstm_backward(None, cache, cp.ones((2, 3, 5)))
