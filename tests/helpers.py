"""Shared test tools: tolerances, closeness with readable failures, central finite differences."""

from __future__ import annotations

from typing import Callable

import numpy as np

# |computed - expected| <= atol + rtol * |expected|, per dtype, for kernel-vs-reference comparisons.
TOLERANCE = {np.float32: dict(atol=1e-5, rtol=1e-4), np.float64: dict(atol=1e-12, rtol=1e-10)}
# Finite differences in float64 with eps ~1e-6 agree to about 1e-7 relative.
GRAD_TOLERANCE = dict(atol=1e-6, rtol=1e-5)


def tolerance(dtype) -> dict:
    return TOLERANCE[np.dtype(dtype).type]


def assert_close(actual, expected, *, atol: float, rtol: float, name: str = "value") -> None:
    """Ours vs theirs, with the worst element named on failure. NaN must match NaN."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} vs expected {expected.shape}"
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    assert np.array_equal(nan_a, nan_e), f"{name}: NaN pattern differs"
    same_inf = np.isinf(e) & (a == e)
    with np.errstate(invalid="ignore"):  # inf - inf where both are the same infinity
        err = np.where(nan_e | same_inf, 0.0, np.abs(a - e))
    bound = atol + rtol * np.abs(np.where(np.isfinite(e), e, 0.0))
    bad = err > bound
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err - bound, -np.inf)), a.shape) if a.ndim else ()
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {a.size} elements differ beyond atol={atol}, rtol={rtol}; "
            f"worst at {i}: ours {a[i]!r} vs expected {e[i]!r} (|diff| {err[i]:.3g})"
        )


def finite_difference(loss: Callable[[], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences d loss / d x, perturbing x in place (float64 only)."""
    assert x.dtype == np.float64, "finite differences are taken in float64"
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        keep = flat[i]
        flat[i] = keep + eps
        up = loss()
        flat[i] = keep - eps
        down = loss()
        flat[i] = keep
        gflat[i] = (up - down) / (2 * eps)
    return grad


def check_gradient(loss: Callable[[], float], x: np.ndarray, analytic, *, name: str,
                   eps: float = 1e-6, atol: float = GRAD_TOLERANCE["atol"], rtol: float = GRAD_TOLERANCE["rtol"]) -> None:
    """The analytic gradient of loss w.r.t. x against central finite differences."""
    assert_close(analytic, finite_difference(loss, x, eps), atol=atol, rtol=rtol, name=f"d/d{name}")


def random_array(rng: np.random.Generator, shape, dtype=np.float64, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(dtype)
