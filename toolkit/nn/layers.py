"""Keras-style layers over the toolkit's ops: Dense, Conv2D, pooling, Flatten, Dropout, BatchNormalization,
Activation (and, from recurrent.py, SimpleRNN and LSTM).

Each layer calls only the public op pair of its family (``toolkit.ops.<op>.<op>_forward/_backward``), so
it runs wherever its arrays live (NumPy: Numba kernels; CuPy: CUDA kernels). Parameter names, shapes,
defaults and initialisers are Keras': Dense kernel (in, units) + bias (units,), Conv2D kernel
(KH, KW, Cin, filters) + bias (filters,), glorot_uniform kernels and zero biases.

Conventions a learner could trip on:

* ``activation=None`` (or "linear") means no activation at all, as in Keras.
* Dense takes rank-2 input (batch, features) only; put a Flatten before it for images (Keras would
  apply it to the last axis of a higher-rank input).
* Conv2D: cross-correlation (the kernel is not flipped); padding "valid" or "same" as Keras, and also
  the op's explicit int / pair / ((top, bottom), (left, right)) padding.
* Pooling: strides=None means strides = pool_size; padding "valid" or "same" (padded cells are never
  the maximum and are not counted in the average, as Keras).
* Dropout: ``rate`` is the fraction DROPPED. Every training call draws a fresh mask: the k-th training
  call of a layer with seed s uses the op's seed derive_seed(s, k) (``step`` counts the calls), so a
  run is reproducible from the seed; at inference the layer is the identity.
* BatchNormalization: features on the last axis only (axis=-1); the moving statistics are
  non-trainable weights, counted by count_params like Keras.
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any, Callable

import numpy as np

from .. import validate
from ..ops import activations as act_ops
from ..ops.batchnorm import batchnorm_backward, batchnorm_forward
from ..ops.conv2d import conv2d_backward, conv2d_forward
from ..ops.conv2d import geometry as conv_geometry
from ..ops.dense import dense_backward, dense_forward
from ..ops.dropout import dropout_backward, dropout_forward
from ..ops.flatten import flatten_backward, flatten_forward
from ..ops.pool2d import geometry as pool_geometry
from ..ops.pool2d import pool2d_backward, pool2d_forward
from . import initializers
from .base import Layer, Shape, derive_seed, format_shape, pair, positive

# Keras spellings that are not op names.
ACTIVATION_ALIASES = {"linear": None, "identity": None}


def resolve_activation(identifier: Any, params: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]] | None:
    """(op name, parameters) of an activation, or None for no activation (None / "linear")."""
    params = dict(params or {})
    if identifier is None or identifier in ACTIVATION_ALIASES:
        if params:
            raise TypeError(f"the linear activation takes no parameters; got {sorted(params)}")
        return None
    if not isinstance(identifier, str) or identifier not in act_ops.ALL:
        raise ValueError(f"activation must be None, 'linear' or one of {act_ops.ALL}; got {identifier!r}")
    # Check the parameters now rather than in the middle of training (the op checks them again).
    allowed = dict(act_ops.PARAMETERS.get(identifier, {}))
    if identifier in act_ops.ALONG_AXIS:
        allowed["axis"] = -1
    unknown = set(params) - set(allowed)
    if unknown:
        raise TypeError(f"activation {identifier!r} takes parameters {sorted(allowed) or 'none'}; got {sorted(unknown)}")
    for key, value in params.items():
        if key == "axis":
            if isinstance(value, bool) or not isinstance(value, Integral):
                raise TypeError(f"axis must be an integer; got {value!r}")
        else:
            params[key] = validate.real(key, value)
    if params.get("steepness", 1.0) <= 0:
        raise ValueError(f"steepness must be > 0; got {params['steepness']}")
    return identifier, params


def absorbable(activation: tuple[str, dict[str, Any]] | None) -> str | None:
    """"softmax" / "sigmoid" when a loss can fuse this activation (standard form, last axis), else None."""
    if activation is None:
        return None
    name, params = activation
    if name == "softmax" and params.get("axis", -1) == -1:
        return "softmax"
    if name == "sigmoid" and params.get("steepness", 1.0) == 1.0:
        return "sigmoid"
    return None


class Activated(Layer):
    """A layer whose output goes through an optional activation: a linear core, then f."""

    skips_dx = True  # the cores (dense, conv2d) take need_dx: a first layer's dx is not computed

    def __init__(self, activation: Any = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.activation = resolve_activation(activation)
        self._activation_cache = None

    @property
    def output_activation(self) -> str | None:
        return absorbable(self.activation)

    def _forward(self, x: Any, training: bool) -> Any:
        z = self._core_forward(x, training)
        self._activation_cache = None
        if self.activation is None or self._skip_activation:
            return z
        y, self._activation_cache = act_ops.activation_forward(z, self.activation[0], **self.activation[1])
        return y

    def _backward(self, dy: Any, need_dx: bool = True) -> Any:
        # dz is needed even without dx: the parameter gradients are computed from it.
        dz = dy if self._activation_cache is None else act_ops.activation_backward(dy, self._activation_cache)
        return self._core_backward(dz, need_dx)

    def _core_forward(self, x: Any, training: bool) -> Any:
        raise NotImplementedError

    def _core_backward(self, dz: Any, need_dx: bool = True) -> Any:
        raise NotImplementedError

    def _activation_config(self) -> dict[str, Any]:
        if self.activation is None:
            return {"activation": "linear"}
        return {"activation": self.activation[0], **self.activation[1]}


class Dense(Activated):
    """y = f(x W + b): x (batch, in), kernel W (in, units), bias b (units,)."""

    input_ranks = (2,)
    input_axes = "(batch, features): put a Flatten before a Dense that follows images"

    def __init__(self, units: int, activation: Any = None, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros", **kwargs: Any):
        super().__init__(activation, **kwargs)
        self.units = positive("units", units)
        self.use_bias = validate.flag("use_bias", use_bias)
        self._initializers = {"kernel": initializers.get(kernel_initializer), "bias": initializers.get(bias_initializer)}

    def config(self) -> dict[str, Any]:
        return {"units": self.units, **self._activation_config(), "use_bias": self.use_bias}

    def initializer_of(self, name: str) -> Callable:
        return self._initializers[name]

    def _output_shape(self, shape: Shape) -> Shape:
        return shape[0], self.units

    def _param_shapes(self, shape: Shape) -> dict[str, tuple[int, ...]]:
        out = {"kernel": (shape[1], self.units)}
        if self.use_bias:
            out["bias"] = (self.units,)
        return out

    def _core_forward(self, x: Any, training: bool) -> Any:
        y, self.cache = dense_forward(x, self._params["kernel"], self._params.get("bias"))
        return y

    def _core_backward(self, dz: Any, need_dx: bool = True) -> Any:
        dx, dW, db = dense_backward(dz, self.cache, need_dx=need_dx)
        self._grads = {"kernel": dW, **({"bias": db} if self.use_bias else {})}
        return dx


class Conv2D(Activated):
    """y = f(x (*) kernel + bias): x (batch, H, W, Cin), kernel (KH, KW, Cin, filters), channels last."""

    input_ranks = (4,)
    input_axes = "(batch, height, width, channels)"

    def __init__(self, filters: int, kernel_size: Any, strides: Any = (1, 1), padding: Any = "valid",
                 activation: Any = None, use_bias: bool = True, kernel_initializer: Any = "glorot_uniform",
                 bias_initializer: Any = "zeros", **kwargs: Any):
        super().__init__(activation, **kwargs)
        self.filters = positive("filters", filters)
        self.kernel_size = pair("kernel_size", kernel_size)
        self.strides = pair("strides", strides)
        self.padding = padding.lower() if isinstance(padding, str) else padding
        # Check the spelling now; the sizes are known only once the input shape is.
        conv_geometry.resolve_padding(self.padding, self.kernel_size, self.kernel_size, self.strides)
        self.use_bias = validate.flag("use_bias", use_bias)
        self._initializers = {"kernel": initializers.get(kernel_initializer), "bias": initializers.get(bias_initializer)}

    def config(self) -> dict[str, Any]:
        return {"filters": self.filters, "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding, **self._activation_config(), "use_bias": self.use_bias}

    def initializer_of(self, name: str) -> Callable:
        return self._initializers[name]

    def _output_shape(self, shape: Shape) -> Shape:
        n, h, w, _ = shape
        pads = conv_geometry.resolve_padding(self.padding, (h, w), self.kernel_size, self.strides)
        oh, ow = conv_geometry.output_shape((h, w), self.kernel_size, self.strides, pads, kernel_name="kernel_size")
        return n, oh, ow, self.filters

    def _param_shapes(self, shape: Shape) -> dict[str, tuple[int, ...]]:
        out = {"kernel": (*self.kernel_size, shape[3], self.filters)}
        if self.use_bias:
            out["bias"] = (self.filters,)
        return out

    def _core_forward(self, x: Any, training: bool) -> Any:
        y, self.cache = conv2d_forward(x, self._params["kernel"], self._params.get("bias"),
                                       stride=self.strides, padding=self.padding)
        return y

    def _core_backward(self, dz: Any, need_dx: bool = True) -> Any:
        dx, dw, db = conv2d_backward(dz, self.cache, need_dx=need_dx)
        self._grads = {"kernel": dw, **({"bias": db} if self.use_bias else {})}
        return dx


class _Pooling2D(Layer):
    mode = "max"
    input_ranks = (4,)
    input_axes = "(batch, height, width, channels)"

    def __init__(self, pool_size: Any = (2, 2), strides: Any = None, padding: str = "valid", **kwargs: Any):
        super().__init__(**kwargs)
        self.pool_size = pair("pool_size", pool_size)
        self.strides = self.pool_size if strides is None else pair("strides", strides)
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same' (Keras' pooling layers); got {padding!r}")
        self.padding = padding.lower()

    def config(self) -> dict[str, Any]:
        return {"pool_size": self.pool_size, "strides": self.strides, "padding": self.padding}

    def _output_shape(self, shape: Shape) -> Shape:
        n, h, w, c = shape
        pads = pool_geometry.resolve_padding(self.padding, (h, w), self.pool_size, self.strides)
        pool_geometry.check_windows((h, w), self.pool_size, pads)
        oh, ow = pool_geometry.output_hw((h, w), self.pool_size, self.strides, pads)
        return n, oh, ow, c

    def _forward(self, x: Any, training: bool) -> Any:
        y, self.cache = pool2d_forward(x, self.pool_size, self.strides, self.padding, mode=self.mode)
        return y

    def _backward(self, dy: Any) -> Any:
        return pool2d_backward(dy, self.cache)


class MaxPooling2D(_Pooling2D):
    """The maximum of each window (ties: the first maximum in row-major order receives the gradient)."""

    mode = "max"


class AveragePooling2D(_Pooling2D):
    """The mean of each window's real (non-padded) cells: LeNet-5's sub-sampling, without its weights."""

    mode = "avg"


class Flatten(Layer):
    """(batch, d1, d2, ...) -> (batch, d1 * d2 * ...), row-major (channels vary fastest), as Keras."""

    def _output_shape(self, shape: Shape) -> Shape:
        return shape[0], math.prod(shape[1:])  # Python ints: no int64 wraparound

    def _forward(self, x: Any, training: bool) -> Any:
        y, self.cache = flatten_forward(x)
        return y

    def _backward(self, dy: Any) -> Any:
        return flatten_backward(dy, self.cache)


class Activation(Layer):
    """y = f(x) for a named activation (and its parameters, e.g. Activation("leaky_relu", alpha=0.2))."""

    def __init__(self, activation: Any, name: str | None = None, dtype: Any = None, seed: Any = None,
                 input_shape: Any = None, trainable: bool = True, **params: Any):
        super().__init__(name=name, dtype=dtype, seed=seed, input_shape=input_shape, trainable=trainable)
        self.activation = resolve_activation(activation, params)

    @property
    def output_activation(self) -> str | None:
        return absorbable(self.activation)

    def config(self) -> dict[str, Any]:
        if self.activation is None:
            return {"activation": "linear"}
        return {"activation": self.activation[0], **self.activation[1]}

    def _forward(self, x: Any, training: bool) -> Any:
        if self.activation is None or self._skip_activation:
            self.cache = ("identity",)  # dx = dy
            return x
        y, self.cache = act_ops.activation_forward(x, self.activation[0], **self.activation[1])
        return y

    def _backward(self, dy: Any) -> Any:
        if isinstance(self.cache, act_ops.ActivationCache):
            return act_ops.activation_backward(dy, self.cache)
        return dy


class Dropout(Layer):
    """Inverted dropout: in training each element is zeroed with probability ``rate``, survivors / (1 - rate)."""

    def __init__(self, rate: float, **kwargs: Any):
        super().__init__(**kwargs)
        self.rate = validate.real("rate (the fraction dropped)", rate, low=0.0, high=1.0, high_open=True)
        self.step = 0  # training calls so far: the k-th call's mask uses derive_seed(seed, k)

    def config(self) -> dict[str, Any]:
        return {"rate": self.rate}

    def mask_seed(self, step: int) -> int:
        """The op seed of the mask of training call number ``step`` (0-based)."""
        return derive_seed(0 if self.seed is None else self.seed, step)

    def _forward(self, x: Any, training: bool) -> Any:
        seed = 0
        if training:
            seed = self.mask_seed(self.step)
            self.step += 1
        y, self.cache = dropout_forward(x, self.rate, seed, training=training)
        return y

    def _backward(self, dy: Any) -> Any:
        return dropout_backward(dy, self.cache)


class BatchNormalization(Layer):
    """y = gamma (x - mean) / sqrt(var + epsilon) + beta per feature (the last axis), Keras semantics.

    Training normalises with the batch statistics and updates the moving ones in place:
    moving = momentum * moving + (1 - momentum) * batch (momentum weighs the OLD value, Keras' 0.99).
    Inference normalises with the moving statistics.
    """

    input_axes = "(batch, ..., features)"

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3, **kwargs: Any):
        super().__init__(**kwargs)
        if axis != -1:
            raise ValueError(f"axis must be -1 (features on the last axis, channels last); got {axis!r}")
        self.axis = -1
        self.momentum = validate.real("momentum", momentum, low=0.0, high=1.0)
        self.epsilon = validate.real("epsilon", epsilon, low=0.0, low_open=True)

    def config(self) -> dict[str, Any]:
        return {"momentum": self.momentum, "epsilon": self.epsilon}

    def check_input_shape(self, input_shape: Any) -> Shape:
        shape = super().check_input_shape(input_shape)
        if len(shape) < 2:
            raise ValueError(f"{self.label} expects inputs of rank >= 2 {self.input_axes}; got input shape "
                             f"{format_shape(shape)}")
        return shape

    def initializer_of(self, name: str) -> Callable:
        return initializers.ones if name in ("gamma", "moving_variance") else initializers.zeros

    def _param_shapes(self, shape: Shape) -> dict[str, tuple[int, ...]]:
        return {"gamma": (shape[-1],), "beta": (shape[-1],)}

    def _state_shapes(self, shape: Shape) -> dict[str, tuple[int, ...]]:
        return {"moving_mean": (shape[-1],), "moving_variance": (shape[-1],)}

    def _forward(self, x: Any, training: bool) -> Any:
        p, s = self._params, self._state
        y, self.cache = batchnorm_forward(x, p["gamma"], p["beta"], s["moving_mean"], s["moving_variance"],
                                          training=training, momentum=self.momentum, eps=self.epsilon)
        return y

    def _backward(self, dy: Any) -> Any:
        dx, dgamma, dbeta = batchnorm_backward(dy, self.cache)
        self._grads = {"gamma": dgamma, "beta": dbeta}
        return dx


from .recurrent import LSTM, SimpleRNN  # noqa: E402  (recurrent.py builds on this module's helpers)

__all__ = ["Layer", "Dense", "Conv2D", "MaxPooling2D", "AveragePooling2D", "Flatten", "Activation", "Dropout",
           "BatchNormalization", "SimpleRNN", "LSTM", "resolve_activation"]
