"""conv2d on a real GPU: the public API on CuPy arrays vs the NumPy reference, CPU/GPU parity at sizes
that fill the GPU (VGG layers), the host harness vs the device, determinism, NaN/Inf, dispatch and
validation (speed is measured by bench/, never by tests).

Deselected by default (pyproject: -m 'not gpu'). On a machine with a GPU:

    python -m pytest -m gpu tests/cuda/test_gpu_conv2d.py
    compute-sanitizer --tool memcheck  python -m pytest -m gpu tests/cuda/test_gpu_conv2d.py -k "not slow"
    compute-sanitizer --tool racecheck python -m pytest -m gpu tests/cuda/test_gpu_conv2d.py -k reference
    compute-sanitizer --tool initcheck python -m pytest -m gpu tests/cuda/test_gpu_conv2d.py -k reference

Asking for these tests where the GPU is not usable is an error (with the reason), not a skip.
Tolerance: per element 2 (n + 1) eps sum|products|, the dot-product bound of test_host_conv2d.py.
"""

import numpy as np
import pytest

from tests.cuda.conftest import requires_cxx
from tests.cuda.test_host_conv2d import CASES, dot_bound, setup
from tests.helpers import assert_close, random_array
from toolkit import backend
from toolkit.ops import conv2d as conv
from toolkit.ops.conv2d import cpu, gpu, reference

cp = pytest.importorskip("cupy")
pytestmark = pytest.mark.gpu

# Larger than the host tests: many tiles and tile groups, wide and narrow kernels, split dw.
MEDIUM_CASES = [
    ("wide_both_ways", (4, 30, 29, 70), (3, 3, 70, 130), 1, "same"),
    ("lenet_c1", (32, 32, 32, 1), (5, 5, 1, 6), 1, "valid"),
    ("lenet_c3", (32, 14, 14, 6), (5, 5, 6, 16), 1, "valid"),
    ("stem_7x7_stride2", (2, 64, 61, 3), (7, 7, 3, 64), 2, "same"),
    ("strided_asymmetric", (3, 33, 35, 40), (4, 3, 40, 96), (2, 3), ((2, 1), (0, 3))),
]
# Sizes that fill the GPU (the benchmark's VGG-16 layers at a smaller batch); held against cpu.py.
LARGE_CASES = [
    ("vgg_conv1_2", (4, 224, 224, 64), (3, 3, 64, 64), 1, "same"),
    ("vgg_conv4_2", (8, 28, 28, 512), (3, 3, 512, 512), 1, "same"),
]


def to_gpu(*arrays):
    return tuple(None if a is None else cp.asarray(a) for a in arrays)


def compare(got, want, x, w, b, dy, stride, pads, oracle):
    """(y, dx, dw, db) computed on the GPU against ``oracle``'s, within the dot-product bound."""
    dtype = x.dtype
    y_mag, cache_mag = oracle.forward(*(None if a is None else np.abs(a).astype(np.float64) for a in (x, w, b)),
                                      stride, pads)
    dx_mag, dw_mag, db_mag = oracle.backward(np.abs(dy).astype(np.float64), cache_mag)
    kh, kw, cin, cout = w.shape
    pixels = dy.shape[0] * dy.shape[1] * dy.shape[2]
    terms = (kh * kw * cin + 1, kh * kw * cout, pixels, pixels)
    for name, g, r, mag, n in zip(("y", "dx", "dw", "db"), got, want, (y_mag, dx_mag, dw_mag, db_mag), terms):
        if r is None:
            assert g is None
            continue
        assert isinstance(g, cp.ndarray) and g.dtype == dtype and g.shape == r.shape, name
        assert_close(cp.asnumpy(g), r, atol=dot_bound(mag, n, dtype), rtol=0, name=name)


def run_public(x, w, b, dy, stride, padding):
    y, cache = conv.conv2d_forward(*to_gpu(x, w, b), stride=stride, padding=padding)
    return (y, *conv.conv2d_backward(cp.asarray(dy), cache))


def test_dispatch_picks_the_gpu_module():
    assert backend.dispatch("conv2d", x=cp.ones((1, 3, 3, 1)), w=cp.ones((1, 1, 1, 1))) is gpu
    with pytest.raises(backend.DeviceMismatchError, match="two devices"):
        conv.conv2d_forward(cp.ones((1, 3, 3, 1)), np.ones((1, 1, 1, 1)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("case", CASES + MEDIUM_CASES, ids=lambda c: c[0])
def test_conv2d_on_gpu_matches_reference(case, bias, dtype, rng):
    _, x_shape, w_shape, stride, padding = case
    x, w, b, stride_pair, pads = setup(rng, x_shape, w_shape, stride, padding, dtype, bias)
    y_ref, cache_ref = reference.forward(x, w, b, stride_pair, pads)
    dy = random_array(rng, y_ref.shape, dtype)
    got = run_public(x, w, b, dy, stride, padding)
    compare(got, (y_ref, *reference.backward(dy, cache_ref)), x, w, b, dy, stride_pair, pads, reference)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", LARGE_CASES, ids=lambda c: c[0])
def test_cpu_gpu_parity_on_vgg_layers(case, dtype, rng):
    _, x_shape, w_shape, stride, padding = case
    x, w, b, stride_pair, pads = setup(rng, x_shape, w_shape, stride, padding, dtype)
    y_cpu, cache_cpu = cpu.forward(x, w, b, stride_pair, pads)
    dy = random_array(rng, y_cpu.shape, dtype)
    got = run_public(x, w, b, dy, stride, padding)
    compare(got, (y_cpu, *cpu.backward(dy, cache_cpu)), x, w, b, dy, stride_pair, pads, cpu)


@requires_cxx
def test_host_harness_agrees_with_the_device(rng):
    # The harness's claim: it runs the same source with the same launch code. Each output element sums
    # its terms in the same order on both (tile order does not matter, there are no atomics), so only
    # FMA contraction, which the GPU does and g++ -O1 need not, may differ: a few ulps of the magnitudes.
    from toolkit.cuda.host import harness

    x, w, b, stride, pads = setup(rng, (2, 16, 17, 70), (3, 2, 70, 66), (2, 1), "same", np.float32)
    target = harness.target("conv2d")
    y_host, cache_host = gpu.forward_on(target, x, w, b, stride, pads)
    dy = random_array(rng, y_host.shape, np.float32)
    host = (y_host, *gpu.backward_on(target, dy, cache_host))
    y_gpu, cache_gpu = gpu.forward(*to_gpu(x, w, b), stride, pads)
    device = (y_gpu, *gpu.backward(cp.asarray(dy), cache_gpu))
    compare(device, host, x, w, b, dy, stride, pads, reference)


def test_results_are_deterministic(rng):
    # No atomics anywhere (dw's pixel ranges and db's chunks are summed in a fixed order): the same bits
    # every run, dw split into many ranges here.
    x, w, b, stride, pads = setup(rng, (64, 32, 32, 3), (3, 3, 3, 32), 1, "same", np.float32)
    assert gpu.split_rows(27, 32, 64 * 32 * 32)[0] > 1
    dy = cp.asarray(random_array(rng, (64, 32, 32, 32), np.float32))
    runs = []
    for _ in range(3):
        y, cache = conv.conv2d_forward(*to_gpu(x, w, b), padding="same")
        runs.append([cp.asnumpy(a) for a in (y, *conv.conv2d_backward(dy, cache))])
    for other in runs[1:]:
        for a, c in zip(runs[0], other):
            assert np.array_equal(a, c)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_inf_propagate_like_the_reference(dtype, rng):
    x, w, b, stride, pads = setup(rng, (2, 6, 7, 3), (3, 3, 3, 4), (2, 1), "same", dtype)
    x[0, 2, 3, 1], x[1, 0, 0, 0], x[1, 5, 6, 2] = np.nan, np.inf, -np.inf
    y, cache = conv.conv2d_forward(*to_gpu(x, w, b), stride=stride, padding=pads)
    with np.errstate(invalid="ignore", over="ignore"):
        y_ref, cache_ref = reference.forward(x, w, b, stride, pads)
    assert_close(cp.asnumpy(y), y_ref, atol=1e-4, rtol=1e-4, name="y")
    dy = random_array(rng, y_ref.shape, dtype)
    dy[0, 1, 1, 2], dy[1, 2, 0, 0] = np.inf, np.nan
    with np.errstate(invalid="ignore", over="ignore"):
        want = reference.backward(dy, cache_ref)
    for got, ref, name in zip(conv.conv2d_backward(cp.asarray(dy), cache), want, ("dx", "dw", "db")):
        assert_close(cp.asnumpy(got), ref, atol=1e-4, rtol=1e-4, name=name)


def test_strided_gpu_input_is_copied(rng):
    base = cp.asarray(random_array(rng, (4, 12, 10, 6)))
    x = base[::2, 1::2, ::2, ::2]  # (2, 6, 5, 3), not contiguous
    w = cp.asfortranarray(cp.asarray(random_array(rng, (3, 3, 3, 4))))
    y, cache = conv.conv2d_forward(x, w, padding="same")
    x_np, w_np = cp.asnumpy(x), cp.asnumpy(w)
    y_ref, cache_ref = reference.forward(x_np, w_np, None, (1, 1), ((1, 1), (1, 1)))
    assert_close(cp.asnumpy(y), y_ref, atol=1e-12, rtol=1e-12, name="y of strided inputs")
    dy = cp.asarray(random_array(rng, (2, 6, 5, 4)))[:, :, ::-1]  # a strided dy as well
    dx, dw, db = conv.conv2d_backward(dy, cache)
    dx_ref, dw_ref, _ = reference.backward(cp.asnumpy(dy), cache_ref)
    assert db is None
    assert_close(cp.asnumpy(dx), dx_ref, atol=1e-12, rtol=1e-12, name="dx")
    assert_close(cp.asnumpy(dw), dw_ref, atol=1e-12, rtol=1e-12, name="dw")


def test_bad_gpu_input_is_named():
    with pytest.raises(TypeError, match="x must have dtype float32 or float64; got int64"):
        conv.conv2d_forward(cp.ones((1, 4, 4, 1), dtype=cp.int64), cp.ones((1, 1, 1, 1)))
    with pytest.raises(TypeError, match="w must have dtype float64 like the other inputs; got float32"):
        conv.conv2d_forward(cp.ones((1, 4, 4, 1)), cp.ones((1, 1, 1, 1), cp.float32))
    with pytest.raises(ValueError, match="w must have 2 input channels to match x; got 3"):
        conv.conv2d_forward(cp.ones((1, 4, 4, 2)), cp.ones((3, 3, 3, 1)))
    with pytest.raises(ValueError, match="kernel \\(w\\) height 5 is larger than the padded input height 4"):
        conv.conv2d_forward(cp.ones((1, 4, 4, 1)), cp.ones((5, 1, 1, 1)))
    with pytest.raises(ValueError, match=r"x must not be empty; got shape \(0, 4, 4, 1\)"):
        conv.conv2d_forward(cp.ones((0, 4, 4, 1)), cp.ones((1, 1, 1, 1)))
    _, cache = conv.conv2d_forward(cp.ones((1, 4, 4, 2)), cp.ones((3, 3, 2, 3)))
    with pytest.raises(backend.DeviceMismatchError, match="two devices"):
        conv.conv2d_backward(np.ones((1, 2, 2, 3)), cache)
    with pytest.raises(ValueError, match=r"dy must have shape \(1, 2, 2, 3\); got \(1, 2, 2, 2\)"):
        conv.conv2d_backward(cp.ones((1, 2, 2, 2)), cache)
