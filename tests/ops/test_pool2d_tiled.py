"""pool2d's 2x2 / stride 2 / unpadded kernels (cpu._tiled_*): the same bits as the generic window loops
(NaN, infinities, ties, signed zeros, odd sizes whose last row/column is in no window), serial and
parallel, and taken exactly when the geometry allows."""

import numpy as np
import pytest

from toolkit.ops.pool2d import cpu

MODES = ["max", "avg", "sum"]
SHAPES = [(2, 6, 8, 3), (3, 7, 9, 6), (1, 2, 2, 1), (2, 29, 28, 16)]  # odd H/W: the last row/column is dropped


def _special_input(rng, shape, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    flat = x.reshape(-1)
    picks = rng.choice(flat.size, size=min(flat.size, max(4, flat.size // 10)), replace=False)
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1.0, 1.0], dtype=dtype)  # 1.0 twice: ties
    flat[picks] = specials[np.arange(picks.size) % specials.size]
    return x


def _both_ways(x, dy_of, mode, monkeypatch):
    geometry = ((2, 2), (2, 2), ((0, 0), (0, 0)))
    y, cache = cpu.forward(x, *geometry, mode)
    dy = dy_of(y.shape)
    dx = cpu.backward(dy, cache)
    with monkeypatch.context() as patch:
        patch.setattr(cpu, "_tiled", lambda *args: False)  # the generic window loops
        y_generic, cache_generic = cpu.forward(x, *geometry, mode)
        dx_generic = cpu.backward(dy, cache_generic)
    return (y, cache.argmax, dx), (y_generic, cache_generic.argmax, dx_generic)


@pytest.mark.parametrize("threads", ["serial", "parallel"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", MODES)
def test_tiled_kernels_give_the_generic_bits(mode, shape, dtype, threads, rng, monkeypatch):
    monkeypatch.setattr(cpu, "PARALLEL_MIN_SIZE", 0 if threads == "parallel" else 1 << 60)
    x = _special_input(rng, shape, dtype)
    ours, generic = _both_ways(x, lambda s: _special_input(rng, s, dtype), mode, monkeypatch)
    for name, a, b in zip(("y", "argmax", "dx"), ours, generic):
        if a is None:
            assert b is None and mode != "max"
            continue
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert np.array_equal(a.view(np.uint8), b.view(np.uint8)), f"{name}: bits differ from the generic kernel"


def test_the_tiled_kernels_run_only_for_2x2_stride_2_unpadded(rng, monkeypatch):
    calls = []
    for name in ("_tiled_sum_forward", "_tiled_max_forward", "_tiled_backward"):
        real = getattr(cpu, name)
        monkeypatch.setattr(cpu, name, lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))
    x = rng.standard_normal((2, 8, 8, 3))
    for mode in ("max", "avg"):
        y, cache = cpu.forward(x, (2, 2), (2, 2), ((0, 0), (0, 0)), mode)
        cpu.backward(np.ones_like(y), cache)
    assert calls == ["_tiled_max_forward", "_tiled_backward", "_tiled_sum_forward", "_tiled_backward"]
    calls.clear()
    for pool, stride, padding in [((2, 2), (1, 1), ((0, 0), (0, 0))), ((3, 3), (2, 2), ((0, 0), (0, 0))),
                                  ((2, 2), (2, 2), ((0, 1), (0, 1))), ((2, 1), (2, 2), ((0, 0), (0, 0)))]:
        y, cache = cpu.forward(x, pool, stride, padding, "avg")
        cpu.backward(np.ones_like(y), cache)
    assert calls == []
