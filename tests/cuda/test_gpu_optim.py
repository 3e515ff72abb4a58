"""optim on a real GPU: the public API on CuPy arrays, in place, BIT-FOR-BIT against the NumPy reference
and the Numba kernels (the kernels keep cpu.py's operation order and never fuse a product into an FMA),
the host harness vs the device, dispatch and validation.

Deselected by default (pyproject: -m 'not gpu'). On a machine with a GPU:

    python -m pytest -m gpu tests/cuda/test_gpu_optim.py
    compute-sanitizer --tool memcheck python -m pytest -m gpu tests/cuda/test_gpu_optim.py

Asking for these tests where the GPU is not usable is an error (with the reason), not a skip.
"""

import numpy as np
import pytest

from tests.cuda.conftest import requires_cxx
from tests.cuda.test_host_optim import assert_same_bits as assert_same_bits_on_host
from tests.helpers import random_array
from toolkit import backend
from toolkit.ops import optim
from toolkit.ops.optim import cpu, gpu, reference

cp = pytest.importorskip("cupy")
pytestmark = pytest.mark.gpu

SHAPES = [(1,), (31,), (33,), (1025,), (3, 5, 7), ((1 << 20) + 3,)]
SGD_VARIANTS = [(0.0, False, False), (0.0, False, True), (0.9, False, True), (0.9, True, True)]
SGD_IDS = ["plain", "velocity-momentum-0", "momentum", "nesterov"]


def assert_same_bits(ours, theirs, name):
    """test_host_optim's check, for a CuPy or NumPy ``ours``."""
    assert_same_bits_on_host(cp.asnumpy(ours) if isinstance(ours, cp.ndarray) else ours, theirs, name)


def test_dispatch_picks_the_gpu_module():
    assert backend.dispatch("optim", param=cp.ones(3)) is gpu


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("momentum,nesterov,with_velocity", SGD_VARIANTS, ids=SGD_IDS)
def test_sgd_on_gpu_matches_reference_bit_for_bit(momentum, nesterov, with_velocity, shape, dtype, rng):
    param = random_array(rng, shape, dtype)
    velocity = random_array(rng, shape, dtype, scale=0.1) if with_velocity else None
    param_gpu = cp.asarray(param)
    velocity_gpu = None if velocity is None else cp.asarray(velocity)
    for _ in range(3):
        grad = random_array(rng, shape, dtype)
        out = optim.sgd_update(param_gpu, cp.asarray(grad), velocity_gpu, lr=0.03, momentum=momentum,
                               nesterov=nesterov)
        assert out is param_gpu  # in place on the device
        reference.sgd_update(param, grad, velocity, 0.03, momentum, nesterov)
    assert_same_bits(param_gpu, param, "param")
    if velocity is not None:
        assert_same_bits(velocity_gpu, velocity, "velocity")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_adam_on_gpu_matches_reference_bit_for_bit(shape, dtype, rng):
    param = random_array(rng, shape, dtype)
    m, v = np.zeros(shape, dtype), np.zeros(shape, dtype)
    on_gpu = [cp.asarray(a) for a in (param, m, v)]
    for step in (1, 2, 3, 1000):
        grad = random_array(rng, shape, dtype)
        assert optim.adam_update(on_gpu[0], cp.asarray(grad), on_gpu[1], on_gpu[2], step) is on_gpu[0]
        reference.adam_update(param, grad, m, v, step, 0.001, 0.9, 0.999, 1e-7)
    for ours, theirs, name in zip(on_gpu, (param, m, v), ("param", "m", "v")):
        assert_same_bits(ours, theirs, name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cpu_gpu_parity_bit_for_bit(dtype, rng):
    n = (1 << 22) + 5  # Numba's parallel path, a GPU-filling grid
    grad = random_array(rng, (n,), dtype)
    param = random_array(rng, (n,), dtype)
    state_cpu = [param.copy(), np.zeros(n, dtype), np.zeros(n, dtype)]
    state_gpu = [cp.asarray(a) for a in state_cpu]
    cpu.adam_update(*state_cpu[:1], grad, *state_cpu[1:], 7, 0.001, 0.9, 0.999, 1e-7)
    gpu.adam_update(*state_gpu[:1], cp.asarray(grad), *state_gpu[1:], 7, 0.001, 0.9, 0.999, 1e-7)
    for ours, theirs, name in zip(state_gpu, state_cpu, ("param", "m", "v")):
        assert_same_bits(ours, theirs, f"adam {name} CPU vs GPU")
    for nesterov in (False, True):
        p_cpu, vel_cpu = param.copy(), np.zeros(n, dtype)
        p_gpu, vel_gpu = cp.asarray(param), cp.zeros(n, dtype)
        cpu.sgd_update(p_cpu, grad, vel_cpu, 0.01, 0.9, nesterov)
        gpu.sgd_update(p_gpu, cp.asarray(grad), vel_gpu, 0.01, 0.9, nesterov)
        assert_same_bits(p_gpu, p_cpu, f"sgd param nesterov={nesterov}")
        assert_same_bits(vel_gpu, vel_cpu, f"sgd velocity nesterov={nesterov}")


@requires_cxx
def test_host_harness_agrees_with_the_device(rng):
    from toolkit.cuda.host import harness

    host = harness.target("optim")
    for dtype in (np.float32, np.float64):
        param, grad = random_array(rng, (5000,), dtype), random_array(rng, (5000,), dtype)
        m, v = np.zeros_like(param), np.zeros_like(param)
        on_gpu = [cp.asarray(a) for a in (param, m, v)]
        gpu.adam_update_on(host, param, grad, m, v, 1, 0.001, 0.9, 0.999, 1e-7)
        gpu.adam_update(on_gpu[0], cp.asarray(grad), on_gpu[1], on_gpu[2], 1, 0.001, 0.9, 0.999, 1e-7)
        for ours, theirs in zip(on_gpu, (param, m, v)):
            assert_same_bits(ours, theirs, "GPU vs host harness")


def test_nan_and_inf_follow_ieee():
    grad_np = np.array([np.nan, np.inf, -np.inf, 1.0, 0.0])
    param = cp.ones(5)
    m, v = cp.zeros(5), cp.zeros(5)
    optim.adam_update(param, cp.asarray(grad_np), m, v, 1)
    expected = [np.ones(5), np.zeros(5), np.zeros(5)]
    with np.errstate(invalid="ignore", over="ignore"):
        reference.adam_update(expected[0], grad_np, expected[1], expected[2], 1, 0.001, 0.9, 0.999, 1e-7)
    for ours, theirs in zip((param, m, v), expected):
        assert_same_bits(ours, theirs, "adam with NaN/inf")


def test_bad_gpu_input_is_named():
    param = cp.ones((4, 3))
    with pytest.raises(TypeError, match="param must have dtype float32 or float64; got int64"):
        optim.sgd_update(cp.arange(3), cp.ones(3))
    with pytest.raises(ValueError, match="param is updated in place, so it must be C-contiguous"):
        optim.sgd_update(cp.ones((4, 6))[:, ::2], param)
    with pytest.raises(TypeError, match="grad must have dtype float64 like the other inputs; got float32"):
        optim.sgd_update(param, cp.ones((4, 3), cp.float32))
    with pytest.raises(ValueError, match=r"m must have the shape of param \(4, 3\); got \(3, 4\)"):
        optim.adam_update(param, cp.ones((4, 3)), cp.zeros((3, 4)), cp.zeros((4, 3)), 1)
    with pytest.raises(ValueError, match="m and v are both updated in place"):
        state = cp.zeros((4, 3))
        optim.adam_update(param, cp.ones((4, 3)), state, state, 1)
    with pytest.raises(backend.DeviceMismatchError, match="two devices"):
        optim.sgd_update(param, np.ones((4, 3)))


def test_gpu_grad_overlapping_a_written_array_is_rejected():
    buf = cp.arange(1.0, 10.0)
    param, grad = buf[1:], buf[:-1]
    before = buf.copy()
    with pytest.raises(ValueError, match="grad must not share memory with param"):
        optim.sgd_update(param, grad, lr=0.1)
    with pytest.raises(ValueError, match="grad must not share memory with param"):
        optim.adam_update(param, param, cp.zeros(8), cp.zeros(8), 1)
    m = cp.zeros(8)
    with pytest.raises(ValueError, match="grad must not share memory with m"):
        optim.adam_update(param, m, m, cp.zeros(8), 1)
    assert bool((buf == before).all())
    optim.sgd_update(param, grad.copy(), lr=0.1)  # a copy is fine
    assert_same_bits(param, cp.asnumpy(before[1:] - 0.1 * before[:-1]), "param")
