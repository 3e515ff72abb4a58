"""The Layer base class: parameters, shape arithmetic, forward/backward around one op's cache.

Shape convention (Keras'): a *shape* here includes the batch axis first, which may be None
("any batch size"), e.g. (None, 32, 32, 1). The ``input_shape=`` keyword of a layer is the Keras one:
the shape of ONE sample, without the batch axis, e.g. ``Conv2D(6, 5, input_shape=(32, 32, 1))``.

Life of a layer:

* ``compute_output_shape(input_shape)`` (alias ``output_shape``): pure shape arithmetic, no arrays;
  it also checks that the layer can take that input (rank, sizes) and says why not.
* ``param_shapes(input_shape)`` / ``state_shapes(input_shape)``: the trainable parameters and the
  non-trainable state (BatchNormalization's moving statistics) the layer will create; so
  ``count_params()`` of VGG16 costs nothing and allocates nothing.
* ``build(input_shape)``: allocates the parameters with the layer's seeded initialisers, in the
  layer's dtype, on the device in use (``toolkit.backend.use``). ``forward`` builds on first call.
* ``forward(x, training=False)``: runs the op(s), keeps the cache; ``backward(dy)`` returns dx and
  stores the parameter gradients, in the order of ``params()``, for ``grads()``. ``backward(dy,
  need_dx=False)`` says dx will not be used (a model's first layer, see Sequential.backward): layers
  that can skip computing it (``skips_dx``: Dense, Conv2D) then return None, the others still return dx.

Every error raised by a layer, including the op's own validation errors, starts with
``layer '<name>' (<Type>)`` so that in a deep model the culprit is named.
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any, Callable

import numpy as np

from .. import backend, validate
from . import initializers

Shape = tuple[Any, ...]  # (None or int, int, ...)

DEFAULT_DTYPE = np.dtype(np.float32)
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def derive_seed(seed: int, *path: int) -> int:
    """An independent 63-bit seed for the sub-stream ``path`` of ``seed`` (NumPy's SeedSequence spawning)."""
    state = np.random.SeedSequence([int(seed), *map(int, path)]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def check_seed(seed: Any, name: str = "seed") -> int | None:
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, Integral):
        raise TypeError(f"{name} must be a non-negative integer or None; got {seed!r} ({type(seed).__name__})")
    if seed < 0:
        raise ValueError(f"{name} must be a non-negative integer or None; got {seed}")
    return int(seed)


def check_dtype(dtype: Any, name: str = "dtype") -> np.dtype | None:
    if dtype is None:
        return None
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64; got {dtype!r}")
    return resolved


def positive(name: str, value: Any) -> int:
    """A positive int at most validate.SIZE_LIMIT (2**63 - 1): units, filters, sizes of a shape."""
    return validate.positive_int(name, value)


def pair(name: str, value: Any) -> tuple[int, int]:
    """An int or a pair of positive ints (rows, cols), as Keras' kernel_size / strides / pool_size; at most
    validate.GEOMETRY_LIMIT (2**31 - 1), the ops' bound on window geometry."""
    def window(label: str, v: Any) -> int:
        return validate.positive_int(label, v, high=validate.GEOMETRY_LIMIT)

    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair (rows, cols) of ints; got {value!r}")
        return window(f"{name}[0]", value[0]), window(f"{name}[1]", value[1])
    v = window(name, value)
    return v, v


def normalize_shape(shape: Any, name: str = "input_shape") -> Shape:
    """A shape with its batch axis: a tuple whose first entry is None or a positive int, the rest positive ints."""
    if not isinstance(shape, (tuple, list)) or len(shape) < 1:
        raise TypeError(f"{name} must be a tuple (batch, ...) such as (None, 32, 32, 1); got {shape!r}")
    batch, *rest = shape
    out: list[Any] = [None if batch is None else positive(f"{name}[0] (the batch size)", batch)]
    for i, s in enumerate(rest, start=1):
        out.append(positive(f"{name}[{i}]", s))
    return tuple(out)


def format_shape(shape: Shape) -> str:
    inner = ", ".join("None" if s is None else str(s) for s in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def _renamed(exc: Exception, prefix: str) -> Exception | None:
    """The same kind of exception with ``prefix`` in front of its message; None when it already has it."""
    text = str(exc)
    if text.startswith(prefix):
        return None
    try:
        return type(exc)(f"{prefix}: {text}")
    except Exception:  # an exception class whose constructor wants other arguments
        return (TypeError if isinstance(exc, TypeError) else ValueError)(f"{prefix}: {text}")


class Layer:
    """Base class of every layer. Subclasses define the shape arithmetic and ``_forward``/``_backward``."""

    #: allowed ranks of the input (batch axis included); None = any rank >= 1
    input_ranks: tuple[int, ...] | None = None
    #: what the axes mean, for error messages
    input_axes: str = ""
    #: whether ``_backward`` takes ``need_dx`` and skips dx's work when it is False (a layer whose op can,
    #: Dense and Conv2D); other layers keep the one-argument ``_backward`` and always compute dx
    skips_dx: bool = False

    def __init__(self, *, name: str | None = None, dtype: Any = None, seed: Any = None,
                 input_shape: Any = None, trainable: bool = True):
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"name must be a non-empty string or None; got {name!r}")
        self.name = name or self.default_name()
        self.auto_named = name is None  # a model may add a suffix (dense_1) to keep names unique
        self.dtype = check_dtype(dtype)  # None: the model's dtype, or the first input's, else float32
        self.seed = check_seed(seed)  # None: derived from the model's seed and the layer's position, else 0
        self.declared_input_shape: Shape | None = None
        if input_shape is not None:
            self.declared_input_shape = normalize_shape((None, *tuple(input_shape)), "input_shape")
        self.trainable = validate.flag("trainable", trainable)
        self.built = False
        self.input_shape: Shape | None = None
        self._params: dict[str, Any] = {}
        self._state: dict[str, Any] = {}
        self._grads: dict[str, Any] = {}
        self.cache: Any = None
        self._skip_activation = False

    # ------------------------------------------------------------------ naming and reporting
    @classmethod
    def default_name(cls) -> str:
        """Keras' snake_case name of the class: Conv2D -> conv2d, MaxPooling2D -> max_pooling2d."""
        out = []
        name = cls.__name__
        for i, ch in enumerate(name):
            if ch.isupper() and i > 0 and (name[i - 1].islower() or (i + 1 < len(name) and name[i + 1].islower())):
                out.append("_")
            out.append(ch.lower())
        return "".join(out)

    @property
    def label(self) -> str:
        return f"layer {self.name!r} ({type(self).__name__})"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}{' built for ' + format_shape(self.input_shape) if self.built else ''}>"

    def config(self) -> dict[str, Any]:
        """The hyper-parameters, for summaries and tests."""
        return {}

    # ------------------------------------------------------------------ shape arithmetic (subclasses)
    def _output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def _param_shapes(self, input_shape: Shape) -> dict[str, tuple[int, ...]]:
        return {}

    def _state_shapes(self, input_shape: Shape) -> dict[str, tuple[int, ...]]:
        return {}

    def initializer_of(self, name: str) -> Callable:
        return initializers.zeros

    # ------------------------------------------------------------------ shape arithmetic (public)
    def check_input_shape(self, input_shape: Any) -> Shape:
        """The normalised input shape, or a ValueError naming the layer, the expected and the received shape."""
        shape = normalize_shape(input_shape)
        if self.input_ranks is not None and len(shape) not in self.input_ranks:
            want = " or ".join(str(r) for r in self.input_ranks)
            axes = f" {self.input_axes}" if self.input_axes else ""
            raise ValueError(f"{self.label} expects inputs of rank {want}{axes}; got input shape "
                             f"{format_shape(shape)} (rank {len(shape)})")
        if self.built and shape[1:] != self.input_shape[1:]:
            raise ValueError(f"{self.label} was built for inputs of shape {format_shape(self.input_shape)}; "
                             f"got {format_shape(shape)}")
        return shape

    def compute_output_shape(self, input_shape: Any) -> Shape:
        """The output shape (batch axis first) for ``input_shape``, by arithmetic; checks the input fits."""
        shape = self.check_input_shape(input_shape)
        try:
            return self._output_shape(shape)
        except (ValueError, TypeError) as exc:
            renamed = _renamed(exc, self.label)
            if renamed is None:
                raise
            raise renamed from exc

    output_shape = compute_output_shape

    def _shape_for_params(self, input_shape: Any) -> Shape:
        if input_shape is None:
            if self.input_shape is None:
                if self.declared_input_shape is None:
                    raise ValueError(f"{self.label} is not built and has no input_shape: pass input_shape "
                                     f"(batch axis first) or build the layer")
                return self.declared_input_shape
            return self.input_shape
        return self.check_input_shape(input_shape)

    def param_shapes(self, input_shape: Any = None) -> dict[str, tuple[int, ...]]:
        """Trainable parameters, name -> shape, for ``input_shape`` (default: the built or declared one)."""
        shape = self._shape_for_params(input_shape)
        self.compute_output_shape(shape)
        return self._param_shapes(shape)

    def state_shapes(self, input_shape: Any = None) -> dict[str, tuple[int, ...]]:
        """Non-trainable state updated by forward (BatchNormalization's moving statistics), name -> shape."""
        shape = self._shape_for_params(input_shape)
        self.compute_output_shape(shape)
        return self._state_shapes(shape)

    def count_params(self, input_shape: Any = None) -> int:
        """Number of parameters, trainable and not (Keras' count_params), for ``input_shape`` or the built one."""
        shapes = {**self.param_shapes(input_shape), **self.state_shapes(input_shape)}
        return sum(math.prod(s) for s in shapes.values())  # Python ints: no int64 wraparound

    def count_trainable_params(self, input_shape: Any = None) -> int:
        """Parameters an optimizer updates: 0 for a frozen layer (trainable=False), like Keras."""
        if not self.trainable:
            self.param_shapes(input_shape)  # still checks the shape
            return 0
        return sum(math.prod(s) for s in self.param_shapes(input_shape).values())

    # ------------------------------------------------------------------ building
    @property
    def compute_dtype(self) -> np.dtype:
        return self.dtype or DEFAULT_DTYPE

    def build(self, input_shape: Any) -> None:
        """Create the parameters (seeded, in the layer's dtype, on the device in use) for ``input_shape``."""
        self.built = False
        shape = self.check_input_shape(input_shape)
        self.compute_output_shape(shape)
        dtype = self.compute_dtype
        seed = 0 if self.seed is None else self.seed
        device = backend.current()
        made: dict[str, Any] = {}
        trainable = self._param_shapes(shape)
        self._check_param_memory({**trainable, **self._state_shapes(shape)}, dtype, device)
        for index, (name, pshape) in enumerate({**trainable, **self._state_shapes(shape)}.items()):
            value = self.initializer_of(name)(tuple(pshape), dtype, derive_seed(seed, index))
            made[name] = backend.to_device(np.ascontiguousarray(value, dtype=dtype), device)
        self._params = {k: v for k, v in made.items() if k in trainable}
        self._state = {k: v for k, v in made.items() if k not in trainable}
        self._grads = {}
        self.cache = None
        self.input_shape = (None, *shape[1:])
        self.built = True

    def _check_param_memory(self, shapes: dict[str, tuple[int, ...]], dtype: np.dtype, device: str) -> None:
        """Refuse parameters that cannot fit before drawing any: all of them on ``device``, and the largest
        one's float64 draw on the host (the initialisers draw there, then round)."""
        if not shapes:
            return
        needs = [(f"{self.label}: the configuration {self.config()}", f"the parameter {name!r}", pshape, dtype)
                 for name, pshape in shapes.items()]
        validate.fits(device, needs)
        largest = max(needs, key=lambda need: math.prod(need[2]))
        validate.fits("cpu", [(largest[0], f"the float64 draw of {largest[1]}", largest[2], np.float64)])

    # ------------------------------------------------------------------ parameters
    def params(self) -> list[Any]:
        """The trainable parameter arrays (the layer's own: updated in place by optimizers)."""
        return list(self._params.values())

    def param_names(self) -> list[str]:
        return list(self._params)

    def grads(self) -> list[Any]:
        """dL/dparam from the last backward, in the order of params()."""
        if not self._params:
            return []
        if not self._grads:
            raise RuntimeError(f"{self.label} has no gradients yet: call forward then backward first")
        return [self._grads[k] for k in self._params]

    def state(self) -> list[Any]:
        """Non-trainable arrays (BatchNormalization's moving mean and variance)."""
        return list(self._state.values())

    def weights(self) -> dict[str, Any]:
        """Every array of the layer by name: trainable first, then the non-trainable state (Keras' order)."""
        return {**self._params, **self._state}

    def get_weights(self) -> list[np.ndarray]:
        """NumPy copies of every array of the layer (Keras' get_weights order)."""
        return [backend.to_numpy(a).copy() for a in self.weights().values()]

    def set_weights(self, values: list[Any]) -> None:
        """Copy ``values`` INTO the existing arrays (so optimizer state keyed on them stays valid)."""
        current = self.weights()
        if len(values) != len(current):
            raise ValueError(f"{self.label} has {len(current)} weight arrays {list(current)}; got {len(values)} values")
        for (name, target), value in zip(current.items(), values):
            if tuple(np.shape(value)) != tuple(target.shape):
                raise ValueError(f"{self.label}: weight {name!r} must have shape {tuple(target.shape)}; "
                                 f"got {tuple(np.shape(value))}")
        for target, value in zip(current.values(), values):
            target[...] = backend.to_device(np.asarray(backend.to_numpy(value), dtype=target.dtype),
                                            backend.device_of_array(target))

    # ------------------------------------------------------------------ running
    def _check_array(self, x: Any) -> None:
        if not (hasattr(x, "dtype") and hasattr(x, "shape")):
            raise TypeError(f"{self.label} takes a NumPy or CuPy array; got {type(x).__name__}")
        if x.dtype != self.compute_dtype:
            raise TypeError(f"{self.label} computes in {self.compute_dtype}; got an input of dtype {x.dtype} "
                            f"(cast it, or give the layer dtype={str(x.dtype)!r})")
        if x.ndim < 1 or x.shape[0] == 0:
            raise ValueError(f"{self.label} got an empty batch of shape {tuple(x.shape)}")

    #: the activation a loss may absorb (see Sequential.compile): "softmax", "sigmoid" or None
    @property
    def output_activation(self) -> str | None:
        return None

    def forward(self, x: Any, training: bool = False, logits: bool = False) -> Any:
        """y = layer(x); keeps the cache for backward. Builds the layer on the first call (a layer given
        no dtype then takes x's: float32 or float64); afterwards x must have the layer's dtype.

        ``logits=True`` returns the output BEFORE the layer's final activation (its logits), for a loss
        that applies that activation itself, stably (softmax + cross-entropy fused); backward then
        expects dL/dlogits. Only layers whose ``output_activation`` is not None accept it.
        """
        training, logits = validate.flag("training", training), validate.flag("logits", logits)
        if logits and self.output_activation is None:
            raise ValueError(f"{self.label} has no final activation to leave out, so logits=True makes no sense")
        self._skip_activation = bool(logits)
        if not self.built and self.dtype is None and getattr(x, "dtype", None) in FLOAT_DTYPES:
            self.dtype = np.dtype(x.dtype)  # a layer given no dtype adopts its first input's
        self._check_array(x)
        shape = tuple(int(s) for s in x.shape)
        if not self.built:
            self.build((None, *shape[1:]))
        self.check_input_shape(shape)
        try:
            return self._forward(x, bool(training))
        except (ValueError, TypeError) as exc:
            renamed = _renamed(exc, self.label)
            if renamed is None:
                raise
            raise renamed from exc

    __call__ = forward

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        """dx = dL/dx given dy = dL/dy; stores the parameter gradients (see grads()).

        ``need_dx=False``: the caller will not use dx (the model's first layer in training); a layer
        with ``skips_dx`` then skips its work and returns None, any other layer still returns dx.
        """
        need_dx = validate.flag("need_dx", need_dx)
        if self.cache is None:
            raise RuntimeError(f"{self.label}: backward needs the cache of a forward pass; call forward first")
        try:
            return self._backward(dy, need_dx) if self.skips_dx else self._backward(dy)
        except (ValueError, TypeError) as exc:
            renamed = _renamed(exc, self.label)
            if renamed is None:
                raise
            raise renamed from exc

    def _forward(self, x: Any, training: bool) -> Any:
        raise NotImplementedError

    def _backward(self, dy: Any) -> Any:
        raise NotImplementedError
