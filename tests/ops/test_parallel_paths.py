"""The parallel (prange) paths of the CPU kernels, forced on small inputs.

Since the performance work, each family runs its serial kernels below a PARALLEL_MIN_SIZE-like threshold
of about a millisecond of work (waking Numba's threads costs more than that, and on a busy machine a
parallel region can wait milliseconds for a descheduled thread). The families' own tests use inputs
below those thresholds, so here each threshold is set to 0 and the parallel kernels are held against
the NumPy reference, and against the serial kernels where the two must give the same bits (fixed
blocks: the sums do not depend on the thread count). conv2d's GEMM policy (row, column and inner-
dimension blocks below OpenBLAS's threading threshold) is checked against one plain product.
Activations' parallel paths are in test_activations.py.
"""

import numpy as np
import pytest

from tests.helpers import assert_close, random_array, tolerance
from toolkit.ops.batchnorm import cpu as bn_cpu
from toolkit.ops.batchnorm import reference as bn_ref
from toolkit.ops.conv2d import cpu as conv_cpu
from toolkit.ops.conv2d import reference as conv_ref
from toolkit.ops.dense import cpu as dense_cpu
from toolkit.ops.dropout import cpu as drop_cpu
from toolkit.ops.dropout import reference as drop_ref
from toolkit.ops.losses import cpu as loss_cpu
from toolkit.ops.losses import reference as loss_ref
from toolkit.ops.optim import cpu as optim_cpu
from toolkit.ops.optim import reference as optim_ref
from toolkit.ops.pool2d import cpu as pool_cpu
from toolkit.ops.pool2d import reference as pool_ref

DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["max", "avg", "sum"])
@pytest.mark.parametrize("pool,stride,padding", [((2, 2), (2, 2), ((0, 0), (0, 0))),
                                                 ((3, 3), (2, 1), ((1, 1), (0, 2)))])
def test_pool2d_parallel_matches_reference(mode, pool, stride, padding, dtype, rng, monkeypatch):
    x = random_array(rng, (3, 11, 10, 5), dtype)
    y_ser, cache_ser = pool_cpu.forward(x, pool, stride, padding, mode)
    dy = random_array(rng, y_ser.shape, dtype)
    dx_ser = pool_cpu.backward(dy, cache_ser)
    monkeypatch.setattr(pool_cpu, "PARALLEL_MIN_SIZE", 0)
    y, cache = pool_cpu.forward(x, pool, stride, padding, mode)
    dx = pool_cpu.backward(dy, cache)
    y_ref, cache_ref = pool_ref.forward(x, pool, stride, padding, mode)
    assert_close(y, y_ref, **tolerance(dtype), name=f"{mode} y")
    assert_close(dx, pool_ref.backward(dy, cache_ref), **tolerance(dtype), name=f"{mode} dx")
    assert np.array_equal(y, y_ser) and np.array_equal(dx, dx_ser)  # the same loops, split differently


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["mse", "binary_crossentropy", "softmax_crossentropy"])
def test_losses_parallel_matches_reference_and_serial_bits(name, dtype, rng, monkeypatch):
    shape = (37, 29)
    y = random_array(rng, shape, dtype)
    t = random_array(rng, shape, dtype)
    params = {"axis": 1} if name == "softmax_crossentropy" else {}
    if name == "binary_crossentropy":
        y, t, params = rng.uniform(0.05, 0.95, shape).astype(dtype), (rng.random(shape) < 0.5).astype(dtype), \
            {"from_logits": False}
    if name == "softmax_crossentropy":
        t = np.eye(shape[1], dtype=dtype)[rng.integers(0, shape[1], shape[0])]
    loss_ser, cache_ser = loss_cpu.forward(name, y, t, **params)
    grad_ser = loss_cpu.backward(cache_ser, 1.0)
    monkeypatch.setattr(loss_cpu, "PARALLEL_MIN_SIZE", 0)
    loss, cache = loss_cpu.forward(name, y, t, **params)
    grad = loss_cpu.backward(cache, 1.0)
    loss_r, cache_r = loss_ref.forward(name, y, t, **params)
    assert_close(loss, loss_r, **tolerance(dtype), name=f"{name} loss")
    assert_close(grad, loss_ref.backward(cache_r, 1.0), **tolerance(dtype), name=f"{name} dy")
    assert loss == loss_ser and np.array_equal(grad, grad_ser)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_parallel_masks_are_the_serial_masks(dtype, rng, monkeypatch):
    x = random_array(rng, (1001,), dtype)  # not a multiple of 4: a partial last Philox block
    dy = random_array(rng, x.shape, dtype)
    y_ser, cache_ser = drop_cpu.forward(x, 0.3, 7, True)
    mask_ser = drop_cpu.dropout_mask(x.shape, 0.3, 7)
    monkeypatch.setattr(drop_cpu, "PARALLEL_MIN_SIZE", 0)
    y, cache = drop_cpu.forward(x, 0.3, 7, True)
    assert np.array_equal(y, y_ser) and np.array_equal(cache.mask, cache_ser.mask)
    assert np.array_equal(drop_cpu.dropout_mask(x.shape, 0.3, 7), mask_ser)
    assert np.array_equal(mask_ser, drop_ref.dropout_mask(x.shape, 0.3, 7))
    assert np.array_equal(drop_cpu.backward(dy, cache), drop_cpu.backward(dy, cache_ser))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["sgd", "momentum", "nesterov", "adam"])
def test_optim_parallel_matches_reference(kind, dtype, rng, monkeypatch):
    monkeypatch.setattr(optim_cpu, "PARALLEL_MIN_SIZE", 0)
    p = random_array(rng, (3, 333), dtype)
    g = random_array(rng, p.shape, dtype)
    ours, ref = p.copy(), p.copy()
    if kind == "adam":
        m, v = np.zeros_like(p), np.zeros_like(p)
        m2, v2 = m.copy(), v.copy()
        for step in (1, 2):
            optim_cpu.adam_update(ours, g, m, v, step, 0.01, 0.9, 0.999, 1e-7)
            optim_ref.adam_update(ref, g, m2, v2, step, 0.01, 0.9, 0.999, 1e-7)
    else:
        vel = None if kind == "sgd" else np.zeros_like(p)
        vel2 = None if vel is None else vel.copy()
        for _ in range(2):
            optim_cpu.sgd_update(ours, g, vel, 0.1, 0.0 if kind == "sgd" else 0.9, kind == "nesterov")
            optim_ref.sgd_update(ref, g, vel2, 0.1, 0.0 if kind == "sgd" else 0.9, kind == "nesterov")
    assert_close(ours, ref, **tolerance(dtype), name=kind)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_parallel_matches_reference_and_serial_bits(training, dtype, rng, monkeypatch):
    x = random_array(rng, (3000, 17), dtype, scale=2.0) + 1
    gamma, beta = random_array(rng, (17,), dtype), random_array(rng, (17,), dtype)
    stats = [random_array(rng, (17,), dtype) ** 2 + 0.5 for _ in range(2)]
    dy = random_array(rng, x.shape, dtype)

    def run(module):
        mean, var = stats[0].copy(), stats[1].copy()
        y, cache = module.forward(x, gamma, beta, mean, var, training, 0.9, 1e-3)
        return (y, *module.backward(dy, cache), mean, var)

    serial = run(bn_cpu)
    monkeypatch.setattr(bn_cpu, "PARALLEL_MIN_SIZE", 0)
    parallel = run(bn_cpu)
    for name, ours, ser, ref in zip(("y", "dx", "dgamma", "dbeta", "running mean", "running var"),
                                    parallel, serial, run(bn_ref)):
        assert_close(ours, ref, **tolerance(dtype), name=name)
        assert np.array_equal(ours, ser), name


def test_dense_parallel_bias_kernels_match_the_serial_bits(rng, monkeypatch):
    x, W, b = random_array(rng, (300, 40), np.float32), random_array(rng, (40, 50), np.float32), \
        random_array(rng, (50,), np.float32)
    dy = random_array(rng, (300, 50), np.float32)
    serial = (dense_cpu.forward(x, W, b)[0], *dense_cpu.backward(dy, dense_cpu.forward(x, W, b)[1]))
    monkeypatch.setattr(dense_cpu, "PARALLEL_MIN_SIZE", 0)
    parallel = (dense_cpu.forward(x, W, b)[0], *dense_cpu.backward(dy, dense_cpu.forward(x, W, b)[1]))
    for ours, ser in zip(parallel, serial):
        assert np.array_equal(ours, ser)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_parallel_kernels_match_reference(dtype, rng, monkeypatch):
    monkeypatch.setattr(conv_cpu, "PARALLEL_MIN_WORK", 0)
    x = random_array(rng, (3, 9, 8, 3), dtype)
    w = random_array(rng, (3, 2, 3, 4), dtype)
    b = random_array(rng, (4,), dtype)
    pads = ((1, 0), (2, 1))
    y, cache = conv_cpu.forward(x, w, b, (2, 1), pads)
    dy = random_array(rng, y.shape, dtype)
    y_ref, cache_ref = conv_ref.forward(x, w, b, (2, 1), pads)
    assert_close(y, y_ref, **tolerance(dtype), name="y")
    for name, ours, ref in zip(("dx", "dw", "db"), conv_cpu.backward(dy, cache), conv_ref.backward(dy, cache_ref)):
        assert_close(ours, ref, **tolerance(dtype), name=name)


@pytest.mark.parametrize("m,k,n", [(300, 7, 5), (3, 500, 4), (6, 5, 700), (1, 40, 1), (64, 64, 64)])
@pytest.mark.parametrize("transposed", [False, True])
def test_conv2d_matmul_blocks_equal_one_product(m, k, n, transposed, rng, monkeypatch):
    # Thresholds shrunk so that these small products are cut into blocks along m, n or k.
    monkeypatch.setattr(conv_cpu, "OPENBLAS_SERIAL_MACS", 37)
    monkeypatch.setattr(conv_cpu, "THREADED_GEMM_MIN_MACS", 1 << 30)
    a = random_array(rng, (k, m) if transposed else (m, k), np.float64)
    a = a.T if transposed else a  # a strided (Fortran-ordered) view, as cols.T in the backward pass
    b = random_array(rng, (k, n), np.float64)
    out = np.full((m, n), np.nan)
    assert conv_cpu.matmul(a, b, out) is out
    assert_close(out, a @ b, atol=1e-12, rtol=1e-12, name="blocked product")
