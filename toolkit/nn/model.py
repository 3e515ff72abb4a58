"""Sequential: a linear stack of layers with Keras' add / build / summary / compile / fit / evaluate / predict.

    model = Sequential([Conv2D(6, 5, activation="tanh", input_shape=(32, 32, 1)), AveragePooling2D(),
                        Flatten(), Dense(10, activation="softmax")], seed=0)
    model.summary()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, to_categorical(labels), epochs=5, batch_size=32)   # {"loss": [...], "accuracy": [...]}

Conventions a learner could trip on:

* Shapes carry the batch axis first (None = any); ``input_shape=`` of a layer is per sample (Keras).
* Shapes are checked by arithmetic as layers are added (an impossible layer is refused at ``add``,
  named); parameters are allocated lazily, at ``build`` (explicit, or the first compile/fit/predict),
  so ``summary()`` and ``count_params()`` of VGG16 cost nothing.
* Seeds: layer i without its own seed gets derive_seed(model seed, i): same seed, same weights, same
  dropout masks, same shuffling (fit's ``seed`` defaults to the model's), hence the same training run.
* dtype: every layer computes in the model's dtype (float32 by default, float64 for gradient checks).
  fit / evaluate / predict cast x and y to it (integer images are fine) and move them to the device
  the parameters live on (the device in use when the model was built).
* Softmax/sigmoid outputs with a cross-entropy loss are trained through the fused, stable loss on the
  logits (see losses.py); predict still returns probabilities.
* The epoch loss and metrics in the history are batch means averaged with the batch sizes as weights,
  taken before each batch's update (Keras' running average); evaluate averages the same way.
* ``fit`` stops at the first batch whose loss is NaN or +-Inf (NaN/Inf in x or y, or a diverging run)
  with a ``NonFiniteLossError`` naming the epoch (1-based, as fit prints it), the batch (0-based, as
  Keras' TerminateOnNaN) and the loss, before that batch's backward pass and update: the weights, the
  optimizer state, BatchNormalization's moving statistics and Dropout's mask counter are those after
  the previous batch. (``train_on_batch`` returns the non-finite loss and updates, as Keras does.)
"""

from __future__ import annotations

import math
import time
from numbers import Integral
from typing import Any, Callable

import numpy as np

from .. import backend, validate
from ..ops import activations as act_ops
from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from . import summary as summary_module
from .base import Layer, Shape, check_dtype, check_seed, derive_seed, format_shape, normalize_shape


class NonFiniteLossError(FloatingPointError):
    """fit met a NaN or infinite loss (Keras' TerminateOnNaN, as an error). A FloatingPointError, like
    NumPy's under np.errstate(all="raise"): the cause is arithmetic (bad values in the data, or a diverging
    run), not an argument of the wrong kind. ``epoch`` is 1-based, ``batch`` 0-based."""

    def __init__(self, loss: float, epoch: int, epochs: int, batch: int, batches: int):
        self.loss, self.epoch, self.epochs, self.batch, self.batches = loss, epoch, epochs, batch, batches
        super().__init__(
            f"fit stopped: the loss is {loss} (expected a finite number) at epoch {epoch}/{epochs}, batch {batch} "
            f"(0-based, of {batches}); the weights and optimizer state are those before this batch. Look for "
            f"NaN/Inf in x and y (np.isfinite(x).all()), or lower the learning rate if training diverged")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable, so a Pool worker's error reaches the parent
        return type(self), (self.loss, self.epoch, self.epochs, self.batch, self.batches)


class Sequential:
    def __init__(self, layers: list[Layer] | None = None, name: str = "sequential", seed: int = 0,
                 dtype: Any = "float32"):
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty string; got {name!r}")
        self.name = name
        self.seed = check_seed(seed)
        if self.seed is None:
            raise ValueError("seed must be a non-negative integer (a model is always seeded); got None")
        self.dtype = check_dtype(dtype)
        if self.dtype is None:
            raise TypeError("dtype must be float32 or float64; got None")
        self._layers: list[Layer] = []
        self._input_shape: Shape | None = None
        self.built = False
        self.optimizer: optimizers_module.Optimizer | None = None
        self.loss: losses_module.Loss | None = None
        self._metric_names: list[Any] = []
        for layer in layers or []:
            self.add(layer)

    # ------------------------------------------------------------------ structure
    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    def __repr__(self) -> str:
        return f"<Sequential {self.name!r}: {len(self._layers)} layers, {'built' if self.built else 'not built'}>"

    def add(self, layer: Layer) -> None:
        """Append a layer; when the input shape is known its shape arithmetic is checked now."""
        if not isinstance(layer, Layer):
            raise TypeError(f"layer must be a toolkit.nn layer (Dense, Conv2D, ...); got {type(layer).__name__}")
        if any(layer is other for other in self._layers):
            raise ValueError(f"{layer.label} is already in the model; create a new layer to stack another one")
        if layer.dtype is not None and layer.dtype != self.dtype:
            raise TypeError(f"{layer.label} has dtype {layer.dtype} but the model computes in {self.dtype}")
        self._unique_name(layer)
        if layer.declared_input_shape is not None:
            if not self._layers:
                self._input_shape = layer.declared_input_shape
            elif self._input_shape is not None:
                arriving = self.output_shapes()[-1]
                if arriving[1:] != layer.declared_input_shape[1:]:
                    raise ValueError(f"{layer.label} declares input_shape {format_shape(layer.declared_input_shape)} "
                                     f"but the layer before it outputs {format_shape(arriving)}")
        if self._input_shape is not None:
            shape = self.output_shapes()[-1] if self._layers else self._input_shape
            layer.compute_output_shape(shape)  # raises, naming the layer, before the model changes
        layer.dtype = self.dtype
        if layer.seed is None:
            layer.seed = derive_seed(self.seed, len(self._layers))
        self._layers.append(layer)
        self.built = False

    def _unique_name(self, layer: Layer) -> None:
        taken = {other.name for other in self._layers}
        if layer.name not in taken:
            return
        if not layer.auto_named:
            raise ValueError(f"the model already has a layer named {layer.name!r}; layer names must be unique")
        base, k = layer.name, 1
        while f"{base}_{k}" in taken:
            k += 1
        layer.name = f"{base}_{k}"

    @property
    def input_shape(self) -> Shape | None:
        return self._input_shape

    @property
    def output_shape(self) -> Shape:
        return self.output_shapes()[-1]

    def output_shapes(self, input_shape: Any = None) -> list[Shape]:
        """Each layer's output shape, by shape arithmetic (no arrays are made)."""
        if not self._layers:
            raise ValueError(f"model {self.name!r} has no layers; add some first")
        shape = self._resolve_input_shape(input_shape)
        shapes = []
        for layer in self._layers:
            shape = layer.compute_output_shape(shape)
            shapes.append(shape)
        return shapes

    def _resolve_input_shape(self, input_shape: Any) -> Shape:
        if input_shape is not None:
            return normalize_shape(input_shape)
        if self._input_shape is None:
            raise ValueError(f"model {self.name!r} does not know its input shape yet: give the first layer "
                             f"input_shape=(...) (one sample), call build((None, ...)), or fit/predict on data")
        return self._input_shape

    def build(self, input_shape: Any = None) -> None:
        """Allocate every layer's parameters for ``input_shape`` (batch axis first; default: the declared one)."""
        shape = self._resolve_input_shape(input_shape)
        self.output_shapes(shape)  # every check first, so a failure leaves nothing half-built
        for layer in self._layers:
            if not (layer.built and layer.input_shape[1:] == tuple(shape[1:])):
                layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self._input_shape = (None, *self._resolve_input_shape(input_shape)[1:])
        self.built = True

    def _ensure_built(self, sample_shape: tuple[int, ...] | None = None) -> None:
        if self.built:
            return
        if self._input_shape is None and sample_shape is not None:
            self.build((None, *sample_shape))
        else:
            self.build()

    # ------------------------------------------------------------------ parameters
    def count_params(self) -> int:
        """All parameters, trainable and not (Keras' count_params), by shape arithmetic."""
        return self.summary_dict()["total_params"]

    def params(self) -> list[Any]:
        """Every trainable-kind parameter array of every layer (frozen layers included), in layer order."""
        return [p for layer in self._layers for p in layer.params()]

    def grads(self) -> list[Any]:
        """The gradients of the last backward, aligned with params()."""
        return [g for layer in self._layers for g in layer.grads()]

    def trainable_params(self) -> list[Any]:
        return [p for layer in self._layers if layer.trainable for p in layer.params()]

    def trainable_grads(self) -> list[Any]:
        return [g for layer in self._layers if layer.trainable for g in layer.grads()]

    def get_weights(self) -> list[np.ndarray]:
        self._ensure_built()
        return [w for layer in self._layers for w in layer.get_weights()]

    def set_weights(self, values: list[Any]) -> None:
        self._ensure_built()
        counts = [len(layer.weights()) for layer in self._layers]
        if len(values) != sum(counts):
            raise ValueError(f"model {self.name!r} has {sum(counts)} weight arrays; got {len(values)}")
        start = 0
        for layer, count in zip(self._layers, counts):
            layer.set_weights(list(values[start:start + count]))
            start += count

    @property
    def device(self) -> str:
        """Where the parameters live ("cpu" or "gpu"); the backend in use before the model is built."""
        for layer in self._layers:
            for array in layer.weights().values():
                return backend.device_of_array(array)
        return backend.current()

    # ------------------------------------------------------------------ summary
    def summary_dict(self) -> dict[str, Any]:
        """{"name", "layers": [{"name", "type", "output_shape", "params", "trainable_params"}], totals}."""
        shape = self._resolve_input_shape(None)
        rows = []
        for layer in self._layers:
            out = layer.compute_output_shape(shape)
            rows.append({"name": layer.name, "type": type(layer).__name__, "output_shape": out,
                         "params": layer.count_params(shape),
                         "trainable_params": layer.count_trainable_params(shape)})
            shape = out
        total = sum(r["params"] for r in rows)
        trainable = sum(r["trainable_params"] for r in rows)
        return {"name": self.name, "input_shape": self._input_shape, "layers": rows, "total_params": total,
                "trainable_params": trainable, "non_trainable_params": total - trainable,
                "total_bytes": total * self.dtype.itemsize}

    def summary_text(self) -> str:
        return summary_module.as_text(self.summary_dict())

    def summary(self, print_fn: Callable[[str], Any] | None = None) -> None:
        """Print the summary: a rich Table, or plain-text lines through ``print_fn`` (Keras' argument)."""
        info = self.summary_dict()
        if print_fn is not None:
            for line in summary_module.as_text(info).splitlines():
                print_fn(line)
            return
        from rich.console import Console

        Console().print(summary_module.as_table(info))

    def trace(self, x: Any) -> list[dict[str, Any]]:
        """Run x through the layers (inference) and report each layer's ACTUAL output shape."""
        x = self._prepare(x, "x")
        self._ensure_built(tuple(x.shape[1:]))
        rows = [{"name": "input", "type": "Input", "output_shape": tuple(int(s) for s in x.shape)}]
        for layer in self._layers:
            x = layer.forward(x, training=False)
            rows.append({"name": layer.name, "type": type(layer).__name__,
                         "output_shape": tuple(int(s) for s in x.shape)})
        return rows

    # ------------------------------------------------------------------ running
    def forward(self, x: Any, training: bool = False, logits: bool = False) -> Any:
        """The model's output for x (already an array of the model's dtype on its device).

        ``logits=True`` leaves out the last layer's final softmax/sigmoid (see losses.fused).
        """
        self._ensure_built(tuple(x.shape[1:]) if hasattr(x, "shape") else None)
        last = len(self._layers) - 1
        for i, layer in enumerate(self._layers):
            x = layer.forward(x, training=training, logits=logits and i == last)
        return x

    __call__ = forward

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        """Backpropagate dL/doutput through every layer; returns dL/dx and leaves each layer's grads().

        ``need_dx=False`` (training: nothing uses dL/dx) returns None and skips work no gradient needs:
        the layer with the first parameters gets need_dx=False (Dense and Conv2D then compute no dx), and
        the parameter-free layers before it (a Flatten, a Dropout) are not run backward at all.
        """
        if not validate.flag("need_dx", need_dx):
            first = next((i for i, layer in enumerate(self._layers) if layer.params()), len(self._layers))
            for i in range(len(self._layers) - 1, first - 1, -1):
                dy = self._layers[i].backward(dy, need_dx=i > first)
            return None
        for layer in reversed(self._layers):
            dy = layer.backward(dy)
        return dy

    # ------------------------------------------------------------------ training
    def compile(self, optimizer: Any = "sgd", loss: Any = None, metrics: list[Any] | None = None) -> None:
        """Choose the optimizer ("sgd", "adam" or an Optimizer), the loss (a Keras name or a Loss) and metrics."""
        self.optimizer = optimizers_module.get(optimizer)
        self.loss = None if loss is None else losses_module.get(loss)
        if metrics is not None and not isinstance(metrics, (list, tuple)):
            raise TypeError(f"metrics must be a list of names such as ['accuracy']; got {metrics!r}")
        self._metric_names = list(metrics or [])
        for name in self._metric_names:  # check the names now
            metrics_module.get(name, self.loss, None)

    def _objective(self) -> tuple[losses_module.Loss, bool]:
        """(the loss to compute, whether it takes the logits of the last layer)."""
        if self.loss is None:
            raise RuntimeError(f"model {self.name!r} has no loss: call compile(optimizer=..., loss=...) first")
        fused = losses_module.fused(self.loss, self._layers[-1].output_activation)
        return (fused, True) if fused is not None else (self.loss, False)

    def _metrics(self) -> list[metrics_module.Metric]:
        units = self.output_shape[-1] if self._input_shape is not None else None
        return [metrics_module.get(m, self.loss, units) for m in self._metric_names]

    def _probabilities(self, out: Any, logits: bool) -> Any:
        if not logits:
            return out
        return act_ops.activation_forward(out, self._layers[-1].output_activation)[0]

    def _prepare(self, a: Any, name: str) -> Any:
        """``a`` as an array of the model's dtype on the model's device (Keras casts inputs the same way)."""
        if not hasattr(a, "dtype"):
            a = np.asarray(a)
        if a.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold real numbers; got dtype {a.dtype}")
        if a.ndim < 1 or a.shape[0] == 0:
            raise ValueError(f"{name} must be a non-empty batch (samples on the first axis); got shape {tuple(a.shape)}")
        return backend.to_device(a, self.device).astype(self.dtype, copy=False)

    def _prepare_xy(self, x: Any, y: Any) -> tuple[Any, Any]:
        x = self._prepare(x, "x")
        y = self._prepare(y, "y")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y must hold the same number of samples; got {x.shape[0]} and {y.shape[0]}")
        self._ensure_built(tuple(x.shape[1:]))
        self._layers[0].check_input_shape(tuple(x.shape))
        want = self.output_shape
        if tuple(y.shape[1:]) != tuple(want[1:]):
            hint = " (one-hot encode class labels with toolkit.nn.to_categorical)" if y.ndim == 1 else ""
            raise ValueError(f"y must have shape {format_shape((y.shape[0], *want[1:]))} to match the output "
                             f"{format_shape(want)} of {self._layers[-1].label}; got {tuple(y.shape)}{hint}")
        return x, y

    def loss_and_gradients(self, x: Any, y: Any, training: bool = True) -> tuple[float, list[Any]]:
        """(loss, gradients aligned with params()) for one batch, without updating anything."""
        x, y = self._prepare_xy(x, y)
        loss, logits = self._objective()
        value, cache = loss.forward(self.forward(x, training=training, logits=logits), y)
        self.backward(loss.backward(cache), need_dx=False)  # only the parameters' gradients are returned
        return float(value), self.grads()

    def compute_loss(self, x: Any, y: Any, training: bool = False) -> float:
        """The loss of one batch (the same computation fit differentiates)."""
        x, y = self._prepare_xy(x, y)
        loss, logits = self._objective()
        return float(loss.forward(self.forward(x, training=training, logits=logits), y)[0])

    def _training_state(self) -> list[tuple[Layer, list[Any], Any]]:
        """Copies of what a training forward pass changes in place: BatchNormalization's moving statistics
        and Dropout's call counter (small: one vector per feature, one int)."""
        return [(layer, [backend.array_module(a).copy(a) for a in layer.state()], getattr(layer, "step", None))
                for layer in self._layers if layer.state() or hasattr(layer, "step")]

    @staticmethod
    def _restore_training_state(saved: list[tuple[Layer, list[Any], Any]]) -> None:
        for layer, arrays, step in saved:
            for target, value in zip(layer.state(), arrays):
                target[...] = value  # in place: the arrays are the layer's own
            if step is not None:
                layer.step = step

    def _train_step(self, x: Any, y: Any, metrics: list[metrics_module.Metric],
                    position: tuple[int, int, int, int] | None = None) -> list[float]:
        """One update. With ``position`` = (epoch, epochs, batch, batches), fit's place: a non-finite loss
        raises NonFiniteLossError before the backward pass, with the forward pass's changes undone."""
        if self.optimizer is None:
            raise RuntimeError(f"model {self.name!r} is not compiled: call compile(optimizer=..., loss=...) first")
        loss, logits = self._objective()
        saved = self._training_state() if position is not None else []
        out = self.forward(x, training=True, logits=logits)
        value, cache = loss.forward(out, y)
        value = float(value)
        if position is not None and not math.isfinite(value):
            self._restore_training_state(saved)
            raise NonFiniteLossError(value, *position)
        self.backward(loss.backward(cache), need_dx=False)  # the first layer's dx would go nowhere
        scores = [value] + [m(self._probabilities(out, logits), y) for m in metrics]
        self.optimizer.apply_gradients(self.trainable_params(), self.trainable_grads())
        return scores

    def train_on_batch(self, x: Any, y: Any) -> float | list[float]:
        """One update on one batch; returns the loss (and the metrics) before the update."""
        x, y = self._prepare_xy(x, y)
        scores = self._train_step(x, y, self._metrics())
        return scores[0] if len(scores) == 1 else scores

    def fit(self, x: Any, y: Any, epochs: int = 1, batch_size: int = 32, verbose: int = 1, shuffle: bool = True,
            seed: int | None = None, validation_data: tuple[Any, Any] | None = None) -> dict[str, list[float]]:
        """Train for ``epochs`` passes over (x, y) in mini-batches; returns the history dict.

        history["loss"][e] (and each metric) is epoch e's average; "val_..." entries when
        validation_data=(x_val, y_val) is given. ``seed`` (default: the model's) fixes the shuffling.
        """
        epochs = _positive_int("epochs", epochs)
        batch_size = _positive_int("batch_size", batch_size)
        if verbose not in (0, 1, 2) or isinstance(verbose, bool):
            raise ValueError(f"verbose must be 0, 1 or 2; got {verbose!r}")
        shuffle = validate.flag("shuffle", shuffle)
        seed = self.seed if seed is None else check_seed(seed, "seed")
        if validation_data is not None and (not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2):
            raise TypeError("validation_data must be a pair (x_val, y_val)")
        x, y = self._prepare_xy(x, y)
        self._objective()
        if self.optimizer is None:
            raise RuntimeError(f"model {self.name!r} is not compiled: call compile(optimizer=..., loss=...) first")
        metrics = self._metrics()
        names = ["loss"] + [m.name for m in metrics]
        history: dict[str, list[float]] = {name: [] for name in names}
        if validation_data is not None:
            history.update({f"val_{name}": [] for name in names})
        rng = np.random.default_rng(seed)
        xp = backend.array_module(x)
        n = x.shape[0]
        for epoch in range(epochs):
            started = time.perf_counter()
            order = rng.permutation(n) if shuffle else np.arange(n)
            sums = np.zeros(len(names))
            batches = -(-n // batch_size)
            for batch, start in enumerate(range(0, n, batch_size)):
                idx = xp.asarray(order[start:start + batch_size])
                position = (epoch + 1, epochs, batch, batches)
                sums += np.asarray(self._train_step(x[idx], y[idx], metrics, position)) * len(idx)
            for name, total in zip(names, sums):
                history[name].append(float(total / n))
            if validation_data is not None:
                for name, value in zip(names, self._evaluate(*validation_data, batch_size=batch_size)):
                    history[f"val_{name}"].append(value)
            if verbose:
                scores = " - ".join(f"{k}: {v[-1]:.4f}" for k, v in history.items())
                print(f"Epoch {epoch + 1}/{epochs} - {time.perf_counter() - started:.2f}s - {scores}")
        return history

    def _evaluate(self, x: Any, y: Any, batch_size: int) -> list[float]:
        x, y = self._prepare_xy(x, y)
        loss, logits = self._objective()
        metrics = self._metrics()
        sums = np.zeros(1 + len(metrics))
        n = x.shape[0]
        for start in range(0, n, batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            out = self.forward(xb, training=False, logits=logits)
            scores = [float(loss.forward(out, yb)[0])] + [m(self._probabilities(out, logits), yb) for m in metrics]
            sums += np.asarray(scores) * xb.shape[0]
        return [float(s / n) for s in sums]

    def evaluate(self, x: Any, y: Any, batch_size: int = 32, return_dict: bool = False) -> Any:
        """The loss (and metrics) over (x, y) in inference mode: a float, a list [loss, *metrics], or a dict."""
        batch_size = _positive_int("batch_size", batch_size)
        scores = self._evaluate(x, y, batch_size)
        if return_dict:
            return dict(zip(["loss"] + [m.name for m in self._metrics()], scores))
        return scores[0] if len(scores) == 1 else scores

    def predict(self, x: Any, batch_size: int = 32) -> np.ndarray:
        """The model's outputs for x in inference mode (probabilities after a softmax), as a NumPy array."""
        batch_size = _positive_int("batch_size", batch_size)
        x = self._prepare(x, "x")
        self._ensure_built(tuple(x.shape[1:]))
        self._layers[0].check_input_shape(tuple(x.shape))
        outs = [backend.to_numpy(self.forward(x[start:start + batch_size], training=False))
                for start in range(0, x.shape[0], batch_size)]
        return np.concatenate(outs, axis=0)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be a positive integer; got {value!r} ({type(value).__name__})")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer; got {value}")
    return int(value)
