"""optim.cu executed on the CPU by the host harness, through gpu.py's own launch code, vs the NumPy
reference and the Numba kernels: SGD (plain, momentum, Nesterov) and Adam, float32 and float64, in place.

The kernels evaluate cpu.py's formulas in the same order with every product rounded on its own, so the
comparison is BIT-FOR-BIT (np.array_equal on param and every state array), not within a tolerance. Sizes:
one element, less than a warp, just over a warp, a partial last block (1025 = 4 * 256 + 1) and more
elements than threads of a capped grid (grid-stride loop), plus a rank-3 parameter. Each check runs under
three schedules: threads and blocks in forward and in reverse order with the grid capped at 3 blocks, and
forward with an uncapped grid.
"""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.cuda import fakes
from tests.cuda.conftest import host_build, load_edited, requires_cxx, scheduled_targets
from tests.helpers import random_array
from toolkit.cuda import compile_check, sources
from toolkit.cuda.host import harness
from toolkit.ops.optim import cpu, gpu, reference

pytestmark = requires_cxx

SHAPES = [(1,), (31,), (33,), (1025,), (3, 5, 7)]
SGD_VARIANTS = [  # (momentum, nesterov, with velocity)
    (0.0, False, False),  # plain gradient descent, no state
    (0.0, False, True),   # a velocity with momentum 0: becomes -lr * grad, param as plain descent
    (0.9, False, True),
    (0.9, True, True),
]


optim_host = host_build("optim")
target = scheduled_targets("optim_host")


def assert_same_bits(ours, theirs, name):
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, name
    same = (ours == theirs) | (np.isnan(ours) & np.isnan(theirs))
    if not same.all():
        i = np.unravel_index(np.argmin(same), ours.shape)
        raise AssertionError(f"{name}: {int((~same).sum())} of {ours.size} elements differ; first at {i}: "
                             f"ours {ours[i]!r} vs expected {theirs[i]!r}")


def run_sgd(impl, target, state, grads, lr, momentum, nesterov):
    """Several steps on copies of ``state`` (param, velocity or None); returns the final arrays."""
    param, velocity = (None if a is None else a.copy() for a in state)
    for grad in grads:
        if impl == "gpu":
            out = gpu.sgd_update_on(target, param, grad, velocity, lr, momentum, nesterov)
        else:
            out = impl.sgd_update(param, grad, velocity, lr, momentum, nesterov)
        assert out is param  # in place, the same object returned
    return param, velocity


def run_adam(impl, target, state, grads, first_step, lr, beta1, beta2, eps):
    param, m, v = (a.copy() for a in state)
    for k, grad in enumerate(grads):
        args = (param, grad, m, v, first_step + k, lr, beta1, beta2, eps)
        out = gpu.adam_update_on(target, *args) if impl == "gpu" else impl.adam_update(*args)
        assert out is param
    return param, m, v


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("momentum,nesterov,with_velocity", SGD_VARIANTS,
                         ids=["plain", "velocity-momentum-0", "momentum", "nesterov"])
def test_sgd_matches_reference_bit_for_bit(target, momentum, nesterov, with_velocity, shape, dtype, rng):
    param = random_array(rng, shape, dtype)
    velocity = random_array(rng, shape, dtype, scale=0.1) if with_velocity else None
    grads = [random_array(rng, shape, dtype) for _ in range(3)]
    ours = run_sgd("gpu", target, (param, velocity), grads, 0.03, momentum, nesterov)
    theirs = run_sgd(reference, None, (param, velocity), grads, 0.03, momentum, nesterov)
    for a, b, name in zip(ours, theirs, ("param", "velocity")):
        if b is None:
            assert a is None
        else:
            assert_same_bits(a, b, name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("first_step", [1, 1000])
def test_adam_matches_reference_bit_for_bit(target, first_step, shape, dtype, rng):
    state = (random_array(rng, shape, dtype), random_array(rng, shape, dtype, scale=0.1),
             rng.uniform(0, 0.5, shape).astype(dtype))
    grads = [random_array(rng, shape, dtype) for _ in range(3)]
    hyper = (first_step, 0.01, 0.8, 0.99, 1e-6)
    ours = run_adam("gpu", target, state, grads, *hyper)
    theirs = run_adam(reference, None, state, grads, *hyper)
    for a, b, name in zip(ours, theirs, ("param", "m", "v")):
        assert_same_bits(a, b, name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_bits_as_the_numba_kernels(optim_host, dtype, rng):
    # Numba's serial and parallel paths (PARALLEL_MIN_SIZE) against the harness, Keras default hyper-parameters.
    target = harness.target(optim_host, order="reverse")
    for n in (1025, cpu.PARALLEL_MIN_SIZE + 3):
        grads = [random_array(rng, (n,), dtype) for _ in range(2)]
        state = (random_array(rng, (n,), dtype), np.zeros(n, dtype), np.zeros(n, dtype))
        for a, b in zip(run_adam("gpu", target, state, grads, 1, 0.001, 0.9, 0.999, 1e-7),
                        run_adam(cpu, None, state, grads, 1, 0.001, 0.9, 0.999, 1e-7)):
            assert_same_bits(a, b, f"adam n={n}")
        for nesterov in (False, True):
            for a, b in zip(run_sgd("gpu", target, state[:2], grads, 0.01, 0.9, nesterov),
                            run_sgd(cpu, None, state[:2], grads, 0.01, 0.9, nesterov)):
                assert_same_bits(a, b, f"sgd nesterov={nesterov} n={n}")


def test_float32_hyper_parameters_are_rounded_to_the_dtype(target):
    # lr = 0.3 is not a float32: the update uses float32(0.3) in float32 arithmetic, as the reference and
    # Keras do; double arithmetic rounded at the end would give another float32 here.
    f = np.float32
    param, grad = np.ones(3, f), np.full(3, 3.0, f)
    gpu.sgd_update_on(target, param, grad, None, 0.3, 0.0, False)
    assert np.all(param == f(1) - f(0.3) * f(3)) and np.all(param != f(1 - 0.3 * 3))
    # Adam's first step moves every parameter by about lr (m / sqrt(v) = sign(grad) at step 1).
    param, m, v = np.zeros(4, np.float32), np.zeros(4, np.float32), np.zeros(4, np.float32)
    grad = np.array([2.0, -3.0, 1e-2, -1e3], np.float32)  # |grad| >> eps
    gpu.adam_update_on(target, param, grad, m, v, 1, 0.001, 0.9, 0.999, 1e-7)
    np.testing.assert_allclose(param, -0.001 * np.sign(grad), rtol=1e-3)


def test_nan_and_inf_follow_ieee(target):
    grad = np.array([np.nan, np.inf, -np.inf, 1.0, 0.0])
    for momentum, nesterov, with_velocity in SGD_VARIANTS:
        state = (np.ones(5), np.zeros(5) if with_velocity else None)
        with np.errstate(invalid="ignore", over="ignore"):
            theirs = run_sgd(reference, None, state, [grad], 0.1, momentum, nesterov)
        for a, b in zip(run_sgd("gpu", target, state, [grad], 0.1, momentum, nesterov), theirs):
            if b is not None:
                assert_same_bits(a, b, "sgd")
    state = (np.ones(5), np.zeros(5), np.zeros(5))
    with np.errstate(invalid="ignore", over="ignore"):
        theirs = run_adam(reference, None, state, [grad], 1, 0.001, 0.9, 0.999, 1e-7)
    ours = run_adam("gpu", target, state, [grad], 1, 0.001, 0.9, 0.999, 1e-7)
    for a, b in zip(ours, theirs):
        assert_same_bits(a, b, "adam")
    assert np.isnan(ours[0][:3]).all() and np.isfinite(ours[0][3:]).all()  # inf / inf = NaN for the infinities


def test_updates_reach_the_callers_multidimensional_arrays(target, rng):
    # reshape(-1) of a C-contiguous array is a view: the kernel writes land in the caller's arrays.
    param = random_array(rng, (4, 3, 2))
    velocity = np.zeros_like(param)
    kept = param.copy()
    grad = random_array(rng, param.shape)
    assert gpu.sgd_update_on(target, param, grad, velocity, 0.5, 0.5, False) is param
    assert np.array_equal(velocity, -0.5 * grad) and np.array_equal(param, kept - 0.5 * grad)


def test_adam_step_size_is_computed_in_float64_on_the_host(target):
    # step 1 with beta1 = 0.9, beta2 = 0.999: alpha_1 = lr sqrt(0.001) / 0.1, rounded once to float32.
    alpha = reference.adam_step_size(0.001, 0.9, 0.999, 1)
    assert alpha == pytest.approx(0.001 * np.sqrt(0.001) / 0.1, rel=1e-15)
    param, m, v = np.zeros(1, np.float32), np.zeros(1, np.float32), np.zeros(1, np.float32)
    grad = np.ones(1, np.float32)
    gpu.adam_update_on(target, param, grad, m, v, 1, 0.001, 0.9, 0.999, 1e-7)
    f = np.float32
    m1 = f(0.9) * f(0) + (f(1) - f(0.9)) * f(1)
    v1 = f(0.999) * f(0) + (f(1) - f(0.999)) * (f(1) * f(1))
    assert param[0] == f(0) - f(alpha) * m1 / (np.sqrt(v1) + f(1e-7))


@pytest.mark.parametrize("arch", compile_check.ARCHITECTURES)
def test_device_code_rounds_like_numpy(arch):
    # What the host harness cannot show: on the GPU no product is fused into an FMA (NVRTC's --fmad=true
    # would), and division and sqrt are IEEE-rounded. NVRTC's PTX, no GPU needed.
    ptx = compile_check.check_file(sources.op_source("optim"), arch).ptx.decode()
    float_ops = set(re.findall(r"\b((?:fma|mad|mul|div|sqrt|rsqrt|rcp|add|sub)\.[\w.]*f(?:32|64))\b", ptx))
    assert not {op for op in float_ops if op.startswith(("fma", "mad", "rsqrt", "rcp"))}, float_ops
    assert {"mul.rn.f32", "mul.rn.f64", "div.rn.f32", "div.rn.f64", "sqrt.rn.f32", "sqrt.rn.f64"} <= float_ops
    assert not {op for op in float_ops if op.startswith(("mul", "div", "sqrt")) and ".rn." not in op}, float_ops


# --- the checks above can fail: deliberately broken copies of optim.cu -------------------------------------
BROKEN = {
    # what NVRTC's default --fmad=true would do to m without optim::mul: one rounding instead of two
    "a product fused into an FMA": ("optim::mul(beta1, m[i]) + optim::mul(one_minus_beta1, g)",
                                    "std::fma(beta1, m[i], optim::mul(one_minus_beta1, g))"),
    "nesterov's look-ahead dropped": ("param[i] += optim::mul(momentum, v_new) - optim::mul(lr, g);",
                                      "param[i] += v_new;"),
    "no grid-stride loop": ("TK_GRID_STRIDE_LOOP(i, n) {\n        const T g = grad[i];\n        const T m_new",
                            "for (long long i = tk::global_thread_index(); i < n; i += n) {\n"
                            "        const T g = grad[i];\n        const T m_new"),
    "eps scaled by the bias correction (Algorithm 1 form)": ("(tk::sqrt(v_new) + eps)",
                                                             "(tk::sqrt(v_new) + eps * T(0.5))"),
}


@pytest.mark.parametrize("bug", [None, *BROKEN])
def test_broken_kernels_fail_these_checks(bug, rng):
    # bug None: the real source, which must pass the very same checks (the control).
    module = load_edited("optim", *BROKEN[bug]) if bug else harness.load("optim")
    target = harness.target(module)
    n = 1025
    grads = [random_array(rng, (n,)) for _ in range(2)]
    state = (random_array(rng, (n,)), np.zeros(n), rng.uniform(0, 1e-12, n))  # tiny v: eps matters
    results = [(run_adam("gpu", target, state, grads, 1, 0.01, 0.9, 0.999, 1e-7),
                run_adam(reference, None, state, grads, 1, 0.01, 0.9, 0.999, 1e-7))]
    results.append((run_sgd("gpu", target, state[:2], grads, 0.01, 0.9, True),
                    run_sgd(reference, None, state[:2], grads, 0.01, 0.9, True)))
    differs = any(not np.array_equal(a, b) for ours, theirs in results for a, b in zip(ours, theirs))
    assert differs == (bug is not None), f"{bug}: the broken kernel passed" if bug else "the real optim.cu failed"


# --- property-based: any shape, values with NaN/inf, any hyper-parameters, either order ------------------
@settings(max_examples=60, deadline=None)
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=10), dtype=st.sampled_from([np.float32, np.float64]),
       order=st.sampled_from(["forward", "reverse"]),
       optimizer=st.sampled_from(["sgd", "momentum", "nesterov", "adam"]),
       lr=st.floats(1e-6, 1.0), momentum=st.floats(0.0, 1.0), beta1=st.floats(0.0, 0.999),
       beta2=st.floats(0.0, 0.9999), eps=st.floats(1e-10, 1e-2), step=st.integers(1, 10**6), data=st.data())
def test_property_updates_bit_for_bit(optim_host, shape, dtype, order, optimizer, lr, momentum, beta1, beta2, eps,
                                      step, data):
    elements = st.floats(-1e3, 1e3, width=32) | st.sampled_from([0.0, -0.0, np.nan, np.inf, -np.inf])
    arrays = [data.draw(hnp.arrays(dtype, shape, elements=elements)) for _ in range(3)]
    grad = arrays[1]
    target = harness.target(optim_host, order=order)
    with np.errstate(all="ignore"):  # NaN/inf inputs: the reference's IEEE arithmetic may warn
        if optimizer == "adam":
            v = np.abs(data.draw(hnp.arrays(dtype, shape, elements=st.floats(0, 1e3, width=32))))
            state = (arrays[0], arrays[2], v)
            pairs = zip(run_adam("gpu", target, state, [grad], step, lr, beta1, beta2, eps),
                        run_adam(reference, None, state, [grad], step, lr, beta1, beta2, eps))
        else:
            mu, nesterov = (0.0, False) if optimizer == "sgd" else (momentum, optimizer == "nesterov")
            state = (arrays[0], None if optimizer == "sgd" else arrays[2])
            pairs = zip(run_sgd("gpu", target, state, [grad], lr, mu, nesterov),
                        run_sgd(reference, None, state, [grad], lr, mu, nesterov))
        for ours, theirs in pairs:
            if theirs is not None:
                assert_same_bits(ours, theirs, optimizer)


# --- the public CuPy path, with a stand-in for CuPy that runs the host harness ---------------------------
def test_public_gpu_path_wiring(fake_cupy, rng):
    for dtype in (np.float32, np.float64):
        param, grad = random_array(rng, (40, 9), dtype), random_array(rng, (40, 9), dtype)
        m, v, velocity = np.zeros_like(param), np.zeros_like(param), np.zeros_like(param)
        expected = [a.copy() for a in (param, m, v, velocity)]
        assert gpu.adam_update(param, grad, m, v, 3, 0.001, 0.9, 0.999, 1e-7) is param
        reference.adam_update(expected[0], grad, expected[1], expected[2], 3, 0.001, 0.9, 0.999, 1e-7)
        assert gpu.sgd_update(param, grad, velocity, 0.01, 0.9, True) is param
        reference.sgd_update(expected[0], grad, expected[3], 0.01, 0.9, True)
        assert gpu.sgd_update(param, grad, None, 0.01, 0.0, False) is param
        reference.sgd_update(expected[0], grad, None, 0.01, 0.0, False)
        for ours, theirs, name in zip((param, m, v, velocity), expected, ("param", "m", "v", "velocity")):
            assert_same_bits(ours, theirs, name)
    fakes.assert_compiled_once(fake_cupy, "optim")
