"""conv2d's shifted-products path (toolkit/ops/conv2d/shifted.py): when it is taken, the reference's
values through it (float32 and float64, every placement of "same"'s padding), finite differences,
the non-finite detour to im2col, and scratch that holds garbage from an earlier call."""

import numpy as np
import pytest

from tests.helpers import random_array
from tests.ops.test_conv2d import _magnitudes, _setup, assert_within_dot_bound, check_gradients_by_finite_differences
from toolkit.ops import conv2d as conv
from toolkit.ops import scratch as scratch_module
from toolkit.ops.conv2d import cpu, reference, shifted

# (id, x shape (N, H, W, Cin), w shape (KH, KW, Cin, Cout), padding); stride is 1 on this path.
SMALL_CASES = [
    ("3x3_same", (2, 7, 6, 3), (3, 3, 3, 4), "same"),
    ("batch1_5x5_same", (1, 8, 9, 2), (5, 5, 2, 3), "same"),
    ("even_kernel_same", (2, 6, 7, 3), (2, 4, 3, 2), "same"),  # odd total padding: extra bottom/right
    ("explicit_top_heavy", (2, 6, 5, 2), (3, 3, 2, 3), ((2, 0), (0, 2))),  # total K-1, placed unevenly
    ("one_row_kernel", (3, 5, 8, 2), (1, 3, 2, 2), "same"),
    ("one_column_kernel", (2, 7, 4, 3), (3, 1, 3, 2), "same"),
]


@pytest.fixture
def force_shifted(monkeypatch):
    """Take the shifted path at test sizes (its thresholds are set for speed, not for correctness)."""
    monkeypatch.setattr(shifted, "MIN_MACS", 0)
    monkeypatch.setattr(shifted, "MIN_CHANNELS", 1)
    monkeypatch.setattr(cpu, "_direct", lambda *args: False)  # checked before the shifted path
    calls = []
    real_forward, real_backward = shifted.forward, shifted.backward
    monkeypatch.setattr(shifted, "forward", lambda *a: calls.append("forward") or real_forward(*a))
    monkeypatch.setattr(shifted, "backward", lambda *a: calls.append("backward") or real_backward(*a))
    return calls


def _check_against_reference(x, w, b, stride, pads, dtype, rng):
    y, cache = cpu.forward(x, w, b, stride, pads)
    y_ref, cache_ref = reference.forward(x, w, b, stride, pads)
    dy = random_array(rng, y_ref.shape, dtype)
    mags = _magnitudes(x, w, b, dy, stride, pads)
    for name, ours, ref, mag in zip(("y", "dx", "dw", "db"), (y, *cpu.backward(dy, cache)),
                                    (y_ref, *reference.backward(dy, cache_ref)), mags):
        assert ours.dtype == dtype, f"{name} dtype {ours.dtype}"
        assert_within_dot_bound(ours, ref, mag, dtype, name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", SMALL_CASES, ids=[c[0] for c in SMALL_CASES])
def test_shifted_path_matches_reference(case, dtype, rng, force_shifted):
    _, x_shape, w_shape, padding = case
    x, w, b, stride, pads = _setup(rng, x_shape, w_shape, 1, padding, dtype)
    _check_against_reference(x, w, b, stride, pads, dtype, rng)
    assert force_shifted == ["forward", "backward"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_layer_big_enough_takes_the_path_unforced(dtype, rng, monkeypatch):
    # 2 x 12 x 12 pixels, 3x3, 128 -> 128 channels: 42 million multiply-adds, above shifted.MIN_MACS, and a
    # w of 590 KB (float32), too big for direct.py, which is checked first.
    x, w, b, stride, pads = _setup(rng, (2, 12, 12, 128), (3, 3, 128, 128), 1, "same", dtype)
    assert shifted.applies(x.shape, w.shape, stride, pads) and not cpu._direct(2, w, 12, 12, 9 * 128)
    calls = []
    real_forward = shifted.forward
    monkeypatch.setattr(shifted, "forward", lambda *a: calls.append("forward") or real_forward(*a))
    _check_against_reference(x, w, b, stride, pads, dtype, rng)
    assert calls == ["forward"]


@pytest.mark.parametrize("x_shape,w_shape,stride,padding", [
    ((8, 56, 56, 64), (3, 3, 64, 64), (1, 1), ((1, 1), (1, 1))),  # the benchmark's layer
    ((1, 224, 224, 64), (3, 3, 64, 64), (1, 1), ((1, 1), (1, 1))),  # VGG16 conv1_2
])
def test_applies_to_large_same_layers(x_shape, w_shape, stride, padding):
    assert shifted.applies(x_shape, w_shape, stride, padding)


@pytest.mark.parametrize("x_shape,w_shape,stride,padding,why", [
    ((8, 56, 56, 64), (3, 3, 64, 64), (2, 2), ((1, 1), (1, 1)), "stride 2"),
    ((8, 56, 56, 64), (3, 3, 64, 64), (1, 1), ((0, 0), (0, 0)), "valid: the output shrinks"),
    ((8, 56, 56, 64), (3, 3, 64, 64), (1, 1), ((2, 2), (1, 1)), "more padding than KH - 1"),
    ((8, 56, 56, 64), (1, 1, 64, 64), (1, 1), ((0, 0), (0, 0)), "1x1: the pointwise path"),
    ((128, 32, 32, 1), (5, 5, 1, 6), (1, 1), ((2, 2), (2, 2)), "LeNet C1 as same: one input channel"),
    ((2, 8, 8, 64), (3, 3, 64, 64), (1, 1), ((1, 1), (1, 1)), "too little work for OpenBLAS's threads"),
])
def test_does_not_apply(x_shape, w_shape, stride, padding, why):
    assert not shifted.applies(x_shape, w_shape, stride, padding), why


def test_backward_matches_finite_differences(rng, force_shifted):
    x, w, b, stride, pads = _setup(rng, (2, 4, 5, 2), (3, 2, 2, 3), 1, "same", np.float64)
    check_gradients_by_finite_differences(cpu, x, w, b, stride, pads, rng)
    assert force_shifted[:2] == ["forward", "backward"]  # the path under test ran


@pytest.mark.parametrize("where", ["x_corner", "w"])
@pytest.mark.parametrize("special", [np.inf, np.nan])
def test_non_finite_values_give_the_reference_result(where, special, rng, force_shifted):
    """An infinite x pixel on the border is multiplied by the zeros of dw's dropped grid rows; an infinite
    weight by the zeros around dy in dx's windows. The reference never forms those products: the
    backward must detour to im2col and return what the reference returns (finite where it is)."""
    x, w, b, stride, pads = _setup(rng, (2, 5, 6, 2), (3, 3, 2, 3), 1, "same", np.float64)
    if where == "x_corner":
        x[0, 0, 0, 1] = special
    else:
        w[0, 2, 1, 0] = special
    y, cache = conv.conv2d_forward(x, w, b, padding="same")
    y_ref, cache_ref = reference.forward(x, w, b, stride, pads)
    dy = random_array(rng, y.shape)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    for name, ours, ref in zip(("dx", "dw", "db"), conv.conv2d_backward(dy, cache),
                               reference.backward(dy, cache_ref)):
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12, err_msg=name)  # NaN and inf in place
    if where == "x_corner":  # dw[0, 2] never sees pixel (0, 0): the reference keeps it finite
        assert np.isfinite(reference.backward(dy, cache_ref)[1][0, 2]).all()


def _poison_shifted_scratch():
    """Every byte 0xFF: a NaN in float32 and float64 alike."""
    slots = [name for name in vars(scratch_module._buffers) if name.startswith("conv2d.shifted.")]
    assert sorted(slots) == sorted(f"conv2d.shifted.{s}" for s in ("xp", "yg", "dyp", "dxg", "x3"))
    for name in slots:
        getattr(scratch_module._buffers, name)[...] = 0xFF


def test_garbage_in_the_reused_scratch_does_not_leak(rng, force_shifted):
    """The grid scratch is reused between calls: fill it with NaN (what any earlier call could leave in
    the dropped rows) and the results must still be the reference's."""
    x, w, b, stride, pads = _setup(rng, (2, 6, 6, 3), (3, 3, 3, 4), 1, "same", np.float64)
    cpu.forward(x, w, b, stride, pads)  # sizes the scratch
    y0, cache = cpu.forward(x, w, b, stride, pads)
    dy = random_array(rng, y0.shape)
    grads0 = cpu.backward(dy, cache)
    _poison_shifted_scratch()
    y1, cache = cpu.forward(x, w, b, stride, pads)
    np.testing.assert_array_equal(y1, y0)
    _poison_shifted_scratch()
    for before, after in zip(grads0, cpu.backward(dy, cache)):
        np.testing.assert_array_equal(after, before)
