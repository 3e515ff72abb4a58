"""Loss functions for ``Sequential.compile``: Keras names over the toolkit's ``losses`` op.

    model.compile(loss="categorical_crossentropy")                # Keras name
    model.compile(loss=CategoricalCrossentropy(from_logits=True))  # a loss object, as Keras

Keras-name -> op: "mse"/"mean_squared_error" -> mse (1/n), "mse_half" (the notes' 1/(2n)), "quadratic"
(1/2 sum), "categorical_crossentropy" (probabilities, clipped to [1e-7, 1 - 1e-7] like Keras),
"softmax_crossentropy" (= categorical_crossentropy from logits), "binary_crossentropy", "mape".
Every loss is a mean over the batch (or over all elements), so its gradient already holds the 1/batch.

Fusion (``fused``): a model whose last layer ends in softmax, compiled with categorical cross-entropy,
trains on the stable fused softmax-cross-entropy of the logits (log-sum-exp, gradient p - t) instead
of softmax followed by the log of a clipped probability; likewise sigmoid + binary cross-entropy
becomes binary cross-entropy from logits. TensorFlow's Keras does the same behind the scenes (it
looks for the logits behind a softmax output). The values agree with the unfused ones whenever no
probability falls below Keras' clip 1e-7; beyond that the fused loss keeps growing (and keeps a
gradient) where the clipped one saturates.
"""

from __future__ import annotations

from typing import Any

from .. import validate
from ..ops.losses import loss_backward, loss_forward

ALIASES = {
    "mse": "mse", "mean_squared_error": "mse", "mse_half": "mse_half", "quadratic": "quadratic",
    "categorical_crossentropy": "categorical_crossentropy", "softmax_crossentropy": "softmax_crossentropy",
    "binary_crossentropy": "binary_crossentropy", "mape": "mape", "mean_absolute_percentage_error": "mape",
}


class Loss:
    """One loss of the op family: ``op`` is its name there, ``params`` its parameters (from_logits)."""

    def __init__(self, op: str, name: str | None = None, **params: Any):
        if op not in set(ALIASES.values()):
            raise ValueError(f"loss must be one of {tuple(ALIASES)}; got {op!r}")
        self.op = op
        self.name = name or op
        self.params = params

    def forward(self, y: Any, t: Any) -> tuple[Any, Any]:
        """(loss, cache): the loss of prediction y against target t (a 0-d array of y's dtype)."""
        return loss_forward(self.op, y, t, **self.params)

    def backward(self, cache: Any) -> Any:
        """dL/dy for the prediction of the forward pass."""
        return loss_backward(cache)

    @property
    def from_logits(self) -> bool:
        return self.op == "softmax_crossentropy" or bool(self.params.get("from_logits", False))

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.params.items())
        return f"Loss({self.op!r}{extra})"


class MeanSquaredError(Loss):
    def __init__(self) -> None:
        super().__init__("mse", name="mean_squared_error")


class CategoricalCrossentropy(Loss):
    """Cross-entropy of one-hot (or soft) targets; from_logits=True takes logits (fused softmax)."""

    def __init__(self, from_logits: bool = False) -> None:
        from_logits = validate.flag("from_logits", from_logits)
        super().__init__("softmax_crossentropy" if from_logits else "categorical_crossentropy",
                         name="categorical_crossentropy")


class BinaryCrossentropy(Loss):
    def __init__(self, from_logits: bool = False) -> None:
        super().__init__("binary_crossentropy", name="binary_crossentropy",
                         from_logits=validate.flag("from_logits", from_logits))


def get(identifier: Any) -> Loss:
    """A Loss from a Keras name or a Loss object."""
    if isinstance(identifier, Loss):
        return identifier
    if not isinstance(identifier, str) or identifier not in ALIASES:
        raise ValueError(f"loss must be one of {tuple(ALIASES)} or a toolkit.nn.losses.Loss; got {identifier!r}")
    op = ALIASES[identifier]
    if op == "binary_crossentropy":
        return BinaryCrossentropy()
    return Loss(op, name=identifier)


def fused(loss: Loss, activation: str | None) -> Loss | None:
    """The from-logits loss that absorbs the model's final ``activation``, or None when none applies."""
    if activation == "softmax" and loss.op == "categorical_crossentropy":
        return Loss("softmax_crossentropy", name=loss.name)
    if activation == "sigmoid" and loss.op == "binary_crossentropy" and not loss.from_logits:
        return Loss("binary_crossentropy", name=loss.name, from_logits=True)
    return None
