"""Recurrent layers: Keras' SimpleRNN and LSTM over the toolkit's rnn and lstm ops.

Input (batch, timesteps, features), batch first, as Keras. The initial state is zeros (Keras' default).

* ``return_sequences=False`` (Keras' default) outputs the last hidden state h_T (batch, units);
  ``True`` outputs every h_t (batch, timesteps, units), the input a second recurrent layer needs.
  In backward, a last-state-only layer receives dL/dh_T and feeds zeros to the other time steps.
* Weights (Keras' names and initialisers): kernel (features, units[*4]) glorot_uniform,
  recurrent_kernel (units, units[*4]) orthogonal, bias (units[*4],) zeros. LSTM packs its four gates
  side by side in Keras' order i, f, c, o, and ``unit_forget_bias=True`` (Keras' default) starts the
  forget-gate block of the bias at 1 so that early training does not forget everything.
* SimpleRNN's activation is tanh and LSTM's are sigmoid (gates) and tanh (cell): what the ops compute.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .. import backend, validate
from ..ops.lstm import lstm_backward, lstm_forward
from ..ops.rnn import rnn_backward, rnn_forward
from . import initializers
from .base import Layer, Shape, positive


class _Recurrent(Layer):
    input_ranks = (3,)
    input_axes = "(batch, timesteps, features)"
    gates = 1  # blocks of ``units`` columns in the kernels: 1 for SimpleRNN, 4 for LSTM

    def __init__(self, units: int, return_sequences: bool = False, kernel_initializer: Any = "glorot_uniform",
                 recurrent_initializer: Any = "orthogonal", bias_initializer: Any = "zeros", **kwargs: Any):
        super().__init__(**kwargs)
        self.units = positive("units", units)
        self.return_sequences = validate.flag("return_sequences", return_sequences)
        self._initializers = {"kernel": initializers.get(kernel_initializer),
                              "recurrent_kernel": initializers.get(recurrent_initializer),
                              "bias": initializers.get(bias_initializer)}

    def config(self) -> dict[str, Any]:
        return {"units": self.units, "return_sequences": self.return_sequences}

    def initializer_of(self, name: str) -> Callable:
        return self._initializers[name]

    def _output_shape(self, shape: Shape) -> Shape:
        n, t, _ = shape
        return (n, t, self.units) if self.return_sequences else (n, self.units)

    def _param_shapes(self, shape: Shape) -> dict[str, tuple[int, ...]]:
        width = self.gates * self.units
        return {"kernel": (shape[2], width), "recurrent_kernel": (self.units, width), "bias": (width,)}

    def _upstream(self, dy: Any) -> Any:
        """dL/dh for every time step: dy itself, or zeros with dy at the last step."""
        if self.return_sequences:
            return dy
        n, t = self._sequence_shape
        if tuple(dy.shape) != (n, self.units):
            raise ValueError(f"dy must have shape {(n, self.units)} (dL/dh_T); got {tuple(dy.shape)}")
        dh = backend.array_module(dy).zeros((n, t, self.units), dtype=dy.dtype)
        dh[:, -1] = dy
        return dh


class SimpleRNN(_Recurrent):
    """h_t = tanh(x_t kernel + h_{t-1} recurrent_kernel + bias): Keras' SimpleRNN (activation tanh)."""

    gates = 1

    def __init__(self, units: int, activation: str = "tanh", return_sequences: bool = False, **kwargs: Any):
        if activation != "tanh":
            raise ValueError(f"activation must be 'tanh' (the rnn op's); got {activation!r}")
        super().__init__(units, return_sequences, **kwargs)

    def _forward(self, x: Any, training: bool) -> Any:
        p = self._params
        _, h, self.cache = rnn_forward(x, None, p["kernel"], p["recurrent_kernel"], p["bias"])
        self._sequence_shape = (x.shape[0], x.shape[1])
        return h if self.return_sequences else h[:, -1].copy()  # a copy: the cache keeps h

    def _backward(self, dy: Any) -> Any:
        dx, _, dW, dU, db, _, _ = rnn_backward(None, self._upstream(dy), self.cache)
        self._grads = {"kernel": dW, "recurrent_kernel": dU, "bias": db}
        return dx


class LSTM(_Recurrent):
    """Keras' LSTM (gates i, f, c, o; sigmoid gates, tanh cell), zero initial states."""

    gates = 4

    def __init__(self, units: int, return_sequences: bool = False, unit_forget_bias: bool = True, **kwargs: Any):
        super().__init__(units, return_sequences, **kwargs)
        self.unit_forget_bias = validate.flag("unit_forget_bias", unit_forget_bias)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "unit_forget_bias": self.unit_forget_bias}

    def initializer_of(self, name: str) -> Callable:
        init = self._initializers[name]
        if name != "bias" or not self.unit_forget_bias:
            return init
        units = self.units

        def forget_bias_one(shape: tuple[int, ...], dtype: Any, seed: int) -> np.ndarray:
            b = np.array(init(shape, dtype, seed), dtype=dtype)
            b[units:2 * units] = 1  # the f block of i, f, c, o
            return b

        return forget_bias_one

    def _forward(self, x: Any, training: bool) -> Any:
        p = self._params
        h, _, self.cache = lstm_forward(x, None, None, p["kernel"], p["recurrent_kernel"], p["bias"])
        self._sequence_shape = (x.shape[0], x.shape[1])
        return h if self.return_sequences else h[:, -1].copy()  # a copy: the cache keeps h

    def _backward(self, dy: Any) -> Any:
        dx, _, _, dW, dU, db = lstm_backward(self._upstream(dy), self.cache)
        self._grads = {"kernel": dW, "recurrent_kernel": dU, "bias": db}
        return dx
