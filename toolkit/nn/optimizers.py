"""Optimizers for ``Sequential.compile``: Keras' SGD and Adam over the toolkit's ``optim`` op (in place).

Defaults are Keras': SGD(learning_rate=0.01, momentum=0.0, nesterov=False) and
Adam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7). Per-parameter state (velocity,
m, v) is created as zeros on the parameter's device the first time the parameter is updated and kept
for that very array: parameters are updated in place, so the layer and the optimizer share them.
``iterations`` counts the updates; Adam's bias correction uses it as its 1-based step.
(Keras' compile default is RMSprop, which the toolkit has no op for: compile defaults to "sgd".)
"""

from __future__ import annotations

from typing import Any

from .. import backend, validate
from ..ops.optim import adam_update, sgd_update


class Optimizer:
    def __init__(self, learning_rate: float):
        self.learning_rate = validate.real("learning_rate", learning_rate, low=0.0, low_open=True)
        self.iterations = 0
        self._slots: dict[int, tuple[Any, tuple[Any, ...]]] = {}

    def _state(self, param: Any, count: int) -> tuple[Any, ...]:
        key = id(param)
        held = self._slots.get(key)
        if held is None or held[0] is not param:  # keyed on the array itself (held, so its id stays unique)
            xp = backend.array_module(param)
            held = (param, tuple(xp.zeros_like(param) for _ in range(count)))
            self._slots[key] = held
        return held[1]

    def apply_gradients(self, params: list[Any], grads: list[Any]) -> None:
        """One update of every parameter with its gradient, in place."""
        if len(params) != len(grads):
            raise ValueError(f"apply_gradients needs one gradient per parameter; got {len(params)} parameters "
                             f"and {len(grads)} gradients")
        self.iterations += 1
        for param, grad in zip(params, grads):
            self._update(param, grad)

    def _update(self, param: Any, grad: Any) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """param -= lr * grad, or with momentum: v = momentum v - lr grad; param += v (Nesterov optional)."""

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False):
        super().__init__(learning_rate)
        self.momentum = validate.real("momentum", momentum, low=0.0, high=1.0)
        self.nesterov = validate.flag("nesterov", nesterov)

    def _update(self, param: Any, grad: Any) -> None:
        velocity = self._state(param, 1)[0] if (self.momentum > 0 or self.nesterov) else None
        sgd_update(param, grad, velocity, lr=self.learning_rate, momentum=self.momentum, nesterov=self.nesterov)


class Adam(Optimizer):
    """Keras' Adam: m, v moving averages of grad and grad^2, bias-corrected step size."""

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7):
        super().__init__(learning_rate)
        self.beta_1 = validate.real("beta_1", beta_1, low=0.0, high=1.0, high_open=True)
        self.beta_2 = validate.real("beta_2", beta_2, low=0.0, high=1.0, high_open=True)
        self.epsilon = validate.real("epsilon", epsilon, low=0.0, low_open=True)

    def _update(self, param: Any, grad: Any) -> None:
        m, v = self._state(param, 2)
        adam_update(param, grad, m, v, self.iterations, lr=self.learning_rate, beta1=self.beta_1,
                    beta2=self.beta_2, eps=self.epsilon)


NAMES = {"sgd": SGD, "adam": Adam}


def get(identifier: Any) -> Optimizer:
    """An optimizer from "sgd" / "adam" (Keras defaults) or an Optimizer object."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in NAMES:
        return NAMES[identifier.lower()]()
    raise ValueError(f"optimizer must be one of {tuple(NAMES)} or a toolkit.nn.optimizers.Optimizer; "
                     f"got {identifier!r}")
