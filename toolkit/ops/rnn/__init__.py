"""Simple recurrent layer (Elman RNN, Keras SimpleRNN + optional linear read-out): validate, then run
on the device the inputs live on.

    y, h, cache = rnn_forward(x, h0, W_xh, W_hh, b_h, W_hy, b_y)     # x (N, T, D), batch first
    dx, dh0, dW_xh, dW_hh, db_h, dW_hy, db_y = rnn_backward(dy, dh, cache)

h_t = tanh(x_t W_xh + h_{t-1} W_hh + b_h) and y_t = h_t W_hy + b_y; see reference.py for the BPTT
formulas. Conventions a learner could trip on:

* h holds h_1 .. h_T (not h0); the last state is h[:, -1].
* h0=None starts from zeros (Keras's default initial state); dh0 is returned either way.
* W_hy=None (and b_y=None) means no read-out: y is None, and dW_hy, db_y are None. W_hy without
  b_y is a read-out without bias (db_y None). The read-out has no activation: apply one after.
* rnn_backward takes dy (N, T, O) and/or dh (N, T, H), an extra upstream gradient on every hidden
  state (a layer stacked on h); None means no gradient from that side, but one must be given.
  For a many-to-one model, pass dh with zeros everywhere except dh[:, -1].
"""

from __future__ import annotations

from typing import Any

from ... import backend, validate
from .. import cache_checks
from .reference import RNNCache

__all__ = ["RNNCache", "rnn_forward", "rnn_backward"]


def rnn_forward(x: Any, h0: Any, W_xh: Any, W_hh: Any, b_h: Any, W_hy: Any = None, b_y: Any = None):
    """Run the recurrence over x (N, T, D); returns (y (N, T, O) or None, h (N, T, H), cache)."""
    x = validate.array("x", x, ndim=3)
    N, T, D = x.shape
    dtype = x.dtype
    W_xh = validate.array("W_xh", W_xh, ndim=2, dtype=dtype)
    if W_xh.shape[0] != D:
        raise ValueError(f"W_xh must have shape (D, H) with D = {D}, the last dimension of x {tuple(x.shape)}; "
                         f"got {tuple(W_xh.shape)}")
    H = W_xh.shape[1]
    W_hh = validate.array("W_hh", W_hh, shape=(H, H), dtype=dtype)
    b_h = validate.array("b_h", b_h, shape=(H,), dtype=dtype)
    if h0 is not None:
        h0 = validate.array("h0", h0, shape=(N, H), dtype=dtype)
    if W_hy is None:
        if b_y is not None:
            raise ValueError("b_y was given without W_hy: the read-out bias needs the read-out weights W_hy (H, O)")
    else:
        W_hy = validate.array("W_hy", W_hy, ndim=2, dtype=dtype)
        if W_hy.shape[0] != H:
            raise ValueError(f"W_hy must have shape (H, O) with H = {H} (from W_xh); got {tuple(W_hy.shape)}")
        if b_y is not None:
            b_y = validate.array("b_y", b_y, shape=(W_hy.shape[1],), dtype=dtype)
    _check_limits(x, W_xh, W_hy, zero_state=h0 is None)
    if h0 is None:
        h0 = backend.array_module(x).zeros((N, H), dtype=dtype)
    return backend.dispatch("rnn", x=x, h0=h0, W_xh=W_xh, W_hh=W_hh, b_h=b_h, W_hy=W_hy, b_y=b_y).forward(
        x, h0, W_xh, W_hh, b_h, W_hy, b_y)


def _check_limits(x: Any, W_xh: Any, W_hy: Any | None, zero_state: bool) -> None:
    """Refuse what cannot fit before allocating: the input projection x W_xh + b_h and the states h
    (N, T, H each), the recurrent product and the zero initial state (N, H each), the read-out y (N, T, O)."""
    N, T, _ = (int(s) for s in x.shape)
    H = int(W_xh.shape[1])
    def sizes() -> str:  # formatted only for an error
        return f"x {tuple(x.shape)} (N = {N}, T = {T}) and W_xh {tuple(W_xh.shape)} (H = {H})"

    needs = [(sizes, "the states h and the input projection (2, N, T, H)", (2, N, T, H), x.dtype),
             (sizes, "the recurrent product and zero initial state (N, H + H)", (N, H + zero_state * H), x.dtype)]
    if W_hy is not None:
        O = int(W_hy.shape[1])
        needs.append((lambda: f"x {tuple(x.shape)} (N = {N}, T = {T}) and W_hy {tuple(W_hy.shape)} (O = {O})",
                      "the read-out y (N, T, O)", (N, T, O), x.dtype))
    validate.fits(x, needs)


def rnn_backward(dy: Any, dh: Any, cache: RNNCache):
    """BPTT through the whole sequence; returns (dx, dh0, dW_xh, dW_hh, db_h, dW_hy, db_y)."""
    cache = cache_checks.rnn(cache)  # before any kernel: its fields agree (shapes, dtypes, device)
    if dy is None and dh is None:
        raise ValueError("rnn_backward needs dy (N, T, O) or dh (N, T, H); both are None")
    N, T, H = cache.h.shape
    dtype = cache.h.dtype
    if dy is not None:
        if cache.W_hy is None:
            raise ValueError("dy was given but the forward pass had no read-out (W_hy was None, so y is None); "
                             "pass the gradient on the hidden states as dh")
        dy = validate.array("dy", dy, shape=(N, T, cache.W_hy.shape[1]), dtype=dtype)
    if dh is not None:
        dh = validate.array("dh", dh, shape=(N, T, H), dtype=dtype)
    return backend.dispatch("rnn", dy=dy, dh=dh, x=cache.x).backward(dy, dh, cache)
