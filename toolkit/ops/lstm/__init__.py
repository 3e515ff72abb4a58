"""Long short-term memory layer (Keras LSTM, gate order i, f, c, o): validate, then run on the device
the inputs live on.

    h, c, cache = lstm_forward(x, h0, c0, W, U, b)      # x (N, T, D), W (D, 4H), U (H, 4H), b (4H,)
    dx, dh0, dc0, dW, dU, db = lstm_backward(dh, cache, dc_last=None)

See reference.py for the gate equations and their backward pass. Conventions a learner could trip on:

* The gates are packed side by side in the columns of W, U and b in Keras's order: input, forget,
  candidate ("c" in Keras's names, "g" in most texts), output; each block is H wide.
* Gates use the logistic sigmoid (modern Keras, PyTorch), not Keras 1/2's old hard_sigmoid default.
* h and c hold h_1 .. h_T and c_1 .. c_T (not the initial states); the final states are h[:, -1]
  and c[:, -1] (Keras's return_state).
* h0=None / c0=None start from zeros (Keras's default); dh0 and dc0 are returned either way.
* dh (N, T, H) is the upstream gradient on every hidden state (for a many-to-one model: zeros except
  dh[:, -1]); dc_last (N, H) one on the final cell state only. Either may be None, not both.
"""

from __future__ import annotations

from typing import Any

from ... import backend, validate
from .. import cache_checks
from .reference import LSTMCache

__all__ = ["LSTMCache", "lstm_forward", "lstm_backward"]


def lstm_forward(x: Any, h0: Any, c0: Any, W: Any, U: Any, b: Any):
    """Run the LSTM over x (N, T, D); returns (h (N, T, H), c (N, T, H), cache)."""
    x = validate.array("x", x, ndim=3)
    N, T, D = x.shape
    dtype = x.dtype
    W = validate.array("W", W, ndim=2, dtype=dtype)
    if W.shape[0] != D or W.shape[1] % 4 != 0:
        raise ValueError(f"W must have shape (D, 4H) with D = {D}, the last dimension of x {tuple(x.shape)}, "
                         f"and 4H a multiple of 4 (gates i, f, c, o side by side); got {tuple(W.shape)}")
    H = W.shape[1] // 4
    U = validate.array("U", U, shape=(H, 4 * H), dtype=dtype)
    b = validate.array("b", b, shape=(4 * H,), dtype=dtype)
    h0 = None if h0 is None else validate.array("h0", h0, shape=(N, H), dtype=dtype)
    c0 = None if c0 is None else validate.array("c0", c0, shape=(N, H), dtype=dtype)
    _check_limits(x, W, H, zero_states=(h0 is None) + (c0 is None))
    xp = backend.array_module(x)
    h0 = xp.zeros((N, H), dtype=dtype) if h0 is None else h0
    c0 = xp.zeros((N, H), dtype=dtype) if c0 is None else c0
    return backend.dispatch("lstm", x=x, h0=h0, c0=c0, W=W, U=U, b=b).forward(x, h0, c0, W, U, b)


def _check_limits(x: Any, W: Any, H: int, zero_states: int) -> None:
    """Refuse what cannot fit before allocating: the state sequences h, c (N, T, H), the gates and the
    input projection x W + b (N, T, 4H each), the recurrent product (N, 4H) and the zero initial states."""
    N, T, _ = (int(s) for s in x.shape)
    def sizes() -> str:  # formatted only for an error
        return f"x {tuple(x.shape)} (N = {N}, T = {T}) and W {tuple(W.shape)} (H = {H})"

    validate.fits(x, [(sizes, "the state sequences h and c (2, N, T, H)", (2, N, T, H), x.dtype),
                      (sizes, "the gates and the input projection (2, N, T, 4H)", (2, N, T, 4 * H), x.dtype),
                      (sizes, "the recurrent product and zero initial states (N, 4H + 2H)",
                       (N, 4 * H + zero_states * H), x.dtype)])


def lstm_backward(dh: Any, cache: LSTMCache, dc_last: Any = None):
    """BPTT through the whole sequence; returns (dx, dh0, dc0, dW, dU, db)."""
    cache = cache_checks.lstm(cache)  # before any kernel: its fields agree (shapes, dtypes, device)
    if dh is None and dc_last is None:
        raise ValueError("lstm_backward needs dh (N, T, H) or dc_last (N, H); both are None")
    N, T, H = cache.h.shape
    dtype = cache.h.dtype
    if dh is not None:
        dh = validate.array("dh", dh, shape=(N, T, H), dtype=dtype)
    if dc_last is not None:
        dc_last = validate.array("dc_last", dc_last, shape=(N, H), dtype=dtype)
    return backend.dispatch("lstm", dh=dh, dc_last=dc_last, x=cache.x).backward(dh, cache, dc_last)
