"""A long short-term memory (LSTM) layer in plain NumPy: the readable oracle for the Numba and CUDA kernels.

Shapes are Keras's, batch first: x (N, T, D); hidden and cell states h, c (N, T, H). The four gates
are packed side by side in Keras's order i, f, c, o (input, forget, candidate "g", output), so the
kernel W is (D, 4H), the recurrent kernel U is (H, 4H) and the bias b is (4H,): columns [0, H) feed
the input gate, [H, 2H) the forget gate, [2H, 3H) the candidate and [3H, 4H) the output gate.
(PyTorch uses the same order i, f, g, o but stores the transposes, weight_ih (4H, D).)

Forward, for t = 1 .. T (h_0 = h0, c_0 = c0):

    z_t = x_t W + h_{t-1} U + b                  (N, 4H)
    i = sigmoid(z_i)   f = sigmoid(z_f)   g = tanh(z_c)   o = sigmoid(z_o)
    c_t = f * c_{t-1} + i * g                    the cell: a gated running sum
    h_t = o * tanh(c_t)

The gate activation is the logistic sigmoid, as in modern Keras (tf.keras 2.x, Keras 3) and PyTorch;
Keras 1/2 defaulted to recurrent_activation="hard_sigmoid" (a piecewise-linear approximation), which
gives different numbers. Keras's unit_forget_bias=True only initialises b_f to 1; it is not part of
the op. The sigmoid is evaluated so that exp never sees a positive argument (no overflow).

Backward (BPTT). With dh_t the total gradient reaching h_t (upstream dh plus what step t+1 sends
back through U) and dc_t the gradient reaching c_t (from step t+1 through the forget gate, plus the
path through h_t):

    do = dh_t * tanh(c_t)                              dz_o = do * o (1 - o)
    dc_t = dc_t(from t+1) + dh_t * o * (1 - tanh(c_t)^2)
    di = dc_t * g      dz_i = di * i (1 - i)
    df = dc_t * c_{t-1}     dz_f = df * f (1 - f)
    dg = dc_t * i      dz_c = dg * (1 - g^2)
    sent back: dc_{t-1} += dc_t * f,   dh_{t-1} += dz_t U^T,   dx_t = dz_t W^T
    dW = sum_t x_t^T dz_t   dU = sum_t h_{t-1}^T dz_t   db = sum_t sum_n dz_t

``dc_last`` is an extra upstream gradient on the final cell state c_T (Keras's return_state=True);
gradients on intermediate cell states are not taken (Keras does not return them).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..ieee import ieee_quiet


class LSTMCache(NamedTuple):
    x: Any  # (N, T, D)
    h0: Any  # (N, H) (zeros when the caller gave none)
    c0: Any  # (N, H) (zeros when the caller gave none)
    W: Any  # (D, 4H) gate order i, f, c, o
    U: Any  # (H, 4H)
    b: Any  # (4H,)
    h: Any  # (N, T, H) hidden states h_1 .. h_T
    c: Any  # (N, T, H) cell states c_1 .. c_T
    gates: Any  # (N, T, 4H) activated gates i, f, g, o (after sigmoid / tanh)


def sigmoid(z: np.ndarray) -> np.ndarray:
    # exp of a non-positive number only: never overflows, no RuntimeWarning at |z| = 1e4.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)


@ieee_quiet
def forward(x: np.ndarray, h0: np.ndarray, c0: np.ndarray, W: np.ndarray, U: np.ndarray, b: np.ndarray):
    """Run the LSTM over the whole sequence; returns (h, c, cache)."""
    N, T, _ = x.shape
    H = U.shape[0]
    h = np.empty((N, T, H), dtype=x.dtype)
    c = np.empty((N, T, H), dtype=x.dtype)
    gates = np.empty((N, T, 4 * H), dtype=x.dtype)
    h_prev, c_prev = h0, c0
    for t in range(T):
        z = x[:, t] @ W + h_prev @ U + b
        i, f = sigmoid(z[:, :H]), sigmoid(z[:, H:2 * H])
        g, o = np.tanh(z[:, 2 * H:3 * H]), sigmoid(z[:, 3 * H:])
        c_prev = f * c_prev + i * g
        h_prev = o * np.tanh(c_prev)
        h[:, t], c[:, t] = h_prev, c_prev
        gates[:, t] = np.concatenate([i, f, g, o], axis=1)
    return h, c, LSTMCache(x, h0, c0, W, U, b, h, c, gates)


@ieee_quiet
def backward(dh: np.ndarray | None, cache: LSTMCache, dc_last: np.ndarray | None = None):
    """BPTT over the whole sequence; returns (dx, dh0, dc0, dW, dU, db).

    dh (N, T, H) is dL/dh_t on every hidden state (None: zero), dc_last (N, H) dL/dc_T (None: zero).
    """
    x, h0, c0, W, U, _, h, c, gates = cache
    N, T, _ = x.shape
    H = U.shape[0]
    dx = np.empty_like(x)
    dW, dU, db = np.zeros_like(W), np.zeros_like(U), np.zeros_like(W[0])
    dh_next = np.zeros_like(h0)  # what h_t receives from step t+1 (through U)
    dc_next = np.zeros_like(c0) if dc_last is None else dc_last.copy()  # what c_t receives from t+1
    for t in reversed(range(T)):
        i, f, g, o = (gates[:, t, k * H:(k + 1) * H] for k in range(4))
        h_prev = h0 if t == 0 else h[:, t - 1]
        c_prev = c0 if t == 0 else c[:, t - 1]
        tanh_c = np.tanh(c[:, t])
        dh_t = dh_next if dh is None else dh[:, t] + dh_next
        dc_t = dc_next + dh_t * o * (1 - tanh_c * tanh_c)
        dz = np.concatenate([
            dc_t * g * i * (1 - i),          # input gate
            dc_t * c_prev * f * (1 - f),     # forget gate
            dc_t * i * (1 - g * g),          # candidate
            dh_t * tanh_c * o * (1 - o),     # output gate
        ], axis=1)
        dW += x[:, t].T @ dz
        dU += h_prev.T @ dz
        db += dz.sum(axis=0)
        dx[:, t] = dz @ W.T
        dh_next = dz @ U.T
        dc_next = dc_t * f
    return dx, dh_next, dc_next, dW, dU, db
