"""A simple (Elman) recurrent layer in plain NumPy: the readable oracle for the Numba and CUDA kernels.

Shapes are Keras's, batch first: x (N, T, D), hidden states h (N, T, H), outputs y (N, T, O).

Forward, for t = 1 .. T (h_0 = h0, the initial state):

    a_t = x_t W_xh + h_{t-1} W_hh + b_h        (N, H)   pre-activation
    h_t = tanh(a_t)                             (N, H)   hidden state
    y_t = h_t W_hy + b_y                        (N, O)   optional linear read-out (no activation)

This is Keras's SimpleRNN (kernel = W_xh, recurrent_kernel = W_hh, bias = b_h) followed by a
TimeDistributed Dense(O) without activation. Row vectors multiply from the left (x_t W), the
transpose of the notes' column convention h = tanh(W_hh h_{t-1} + W_xh x_t).

Backward is backpropagation through time (BPTT). The loss L reaches h_t directly (through y_t and
the extra upstream gradient dh_t) and indirectly through every later state, so the gradient that
arrives at h_t is accumulated from the end of the sequence:

    g_t      = dL/dh_t (total) = dh_t + dy_t W_hy^T + delta_{t+1} W_hh^T     (delta_{T+1} = 0)
    delta_t  = dL/da_t         = g_t * (1 - h_t^2)                           tanh' written with h_t

and the weights, shared by all time steps, collect one term per step:

    dL/dW_hh = sum_t h_{t-1}^T delta_t      dL/dW_xh = sum_t x_t^T delta_t      dL/db_h = sum_t sum_n delta_t
    dL/dx_t  = delta_t W_xh^T               dL/dh0   = delta_1 W_hh^T
    dL/dW_hy = sum_t h_t^T dy_t             dL/db_y  = sum_t sum_n dy_t

Unrolled, the first sum is the notes' BPTT formula: dL/dW_hh = sum_t sum_{k<=t} (dL/dh_t)_direct
(prod_{j=k+1..t} dh_j/dh_{j-1}) dh_k^+/dW_hh with the one-step Jacobian dh_j/dh_{j-1} =
diag(1 - h_j^2) W_hh^T; the backward recursion evaluates that double sum in O(T) instead of O(T^2).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..ieee import ieee_quiet


class RNNCache(NamedTuple):
    x: Any  # (N, T, D) input sequence
    h0: Any  # (N, H) initial state (zeros when the caller gave none)
    W_xh: Any  # (D, H)
    W_hh: Any  # (H, H)
    b_h: Any  # (H,)
    W_hy: Any  # (H, O) or None: no read-out, y is None
    b_y: Any  # (O,) or None: read-out without bias, db_y is None
    h: Any  # (N, T, H) every hidden state h_1 .. h_T


@ieee_quiet
def forward(x: np.ndarray, h0: np.ndarray, W_xh: np.ndarray, W_hh: np.ndarray, b_h: np.ndarray,
            W_hy: np.ndarray | None = None, b_y: np.ndarray | None = None):
    """Run the recurrence over the whole sequence; returns (y or None, h, cache)."""
    N, T, _ = x.shape
    h = np.empty((N, T, W_hh.shape[0]), dtype=x.dtype)
    h_prev = h0
    for t in range(T):
        h_prev = np.tanh(x[:, t] @ W_xh + h_prev @ W_hh + b_h)
        h[:, t] = h_prev
    y = None
    if W_hy is not None:
        y = h @ W_hy
        if b_y is not None:
            y = y + b_y
    return y, h, RNNCache(x, h0, W_xh, W_hh, b_h, W_hy, b_y, h)


@ieee_quiet
def backward(dy: np.ndarray | None, dh: np.ndarray | None, cache: RNNCache):
    """BPTT over the whole sequence; returns (dx, dh0, dW_xh, dW_hh, db_h, dW_hy, db_y).

    dy (N, T, O) is dL/dy, dh (N, T, H) an extra upstream dL/dh_t on every hidden state (e.g. from a
    layer stacked on top); either may be None (no gradient from that side). dW_hy and db_y are None
    when the forward pass had no read-out (resp. no read-out bias); zeros when it had one but dy is None.
    """
    x, h0, W_xh, W_hh, _, W_hy, b_y, h = cache
    N, T, _ = x.shape
    direct = np.zeros_like(h) if dh is None else dh.copy()  # (dL/dh_t) from outside the recurrence
    dW_hy = db_y = None
    if W_hy is not None:
        if dy is None:
            dW_hy = np.zeros_like(W_hy)
            db_y = None if b_y is None else np.zeros_like(b_y)
        else:
            direct += dy @ W_hy.T
            dW_hy = np.einsum("nth,nto->ho", h, dy)
            db_y = None if b_y is None else dy.sum(axis=(0, 1))
    dx = np.empty_like(x)
    dW_xh = np.zeros_like(W_xh)
    dW_hh = np.zeros_like(W_hh)
    db_h = np.zeros_like(W_hh[0])
    from_later = np.zeros_like(h0)  # delta_{t+1} W_hh^T: what h_t receives from step t+1
    for t in reversed(range(T)):
        h_prev = h0 if t == 0 else h[:, t - 1]
        delta = (direct[:, t] + from_later) * (1 - h[:, t] * h[:, t])  # dL/da_t
        dW_xh += x[:, t].T @ delta
        dW_hh += h_prev.T @ delta
        db_h += delta.sum(axis=0)
        dx[:, t] = delta @ W_xh.T
        from_later = delta @ W_hh.T
    return dx, from_later, dW_xh, dW_hh, db_h, dW_hy, db_y
