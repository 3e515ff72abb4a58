"""Optimizer updates (Keras SGD and Adam): validate, then update IN PLACE on the device the arrays live on.

    sgd_update(w, dw, lr=0.1)                                  # plain gradient descent: w -= lr * dw
    sgd_update(w, dw, velocity, lr=0.01, momentum=0.9, nesterov=True)
    adam_update(w, dw, m, v, step, lr=0.001)                  # step = 1, 2, 3, ... (1-based)

Both mutate ``param`` (and velocity / m / v) and also return ``param``, the same object, for chaining;
nothing is copied. Because the update is written into the caller's arrays, param and the state must
be C-contiguous and writeable (a ValueError otherwise: a copy would silently drop the update); grad
may be any float array of the same shape and dtype that shares no memory with them (a ValueError
otherwise: the kernels read grad while writing param, so grad = param, or a view shifted by one
element, would be read after being overwritten). Start velocity, m and v at zeros. An update is
its own "backward": there is no gradient to propagate. See reference.py for the exact formulas.
"""

from __future__ import annotations

from typing import Any

from ... import backend, validate

__all__ = ["sgd_update", "adam_update"]


def _state(name: str, a: Any, param: Any) -> Any:
    """An array updated in place alongside param: same shape and dtype, C-contiguous, writeable."""
    validate.array(name, a, dtype=param.dtype)
    validate.same_shape(name, a, "param", param)
    validate.writable(name, a)
    return a


def _overlap(a: Any, b: Any) -> bool:
    """Whether two arrays' memory ranges overlap (exact for the contiguous arrays written in place,
    conservative for a strided grad); arrays on two devices never do (dispatch then raises)."""
    if backend.device_of_array(a) != backend.device_of_array(b):
        return False
    return bool(backend.array_module(a).may_share_memory(a, b))


def _distinct(**arrays: Any) -> None:
    """Arrays written in place must not overlap: one update would overwrite the other's input."""
    named = [(k, a) for k, a in arrays.items() if a is not None]
    for i, (name_a, a) in enumerate(named):
        for name_b, b in named[i + 1:]:
            if _overlap(a, b):
                raise ValueError(f"{name_a} and {name_b} are both updated in place, so they must be different "
                                 f"arrays; got two views of the same memory")


def _grad_apart(grad: Any, **written: Any) -> None:
    """grad (as the caller passed it) must not overlap an array the update writes: each element of param
    and the state is written while grad is still being read, so grad = param, or a view shifted by one
    element, would silently give wrong values."""
    for name, a in written.items():
        if a is not None and _overlap(grad, a):
            raise ValueError(f"grad must not share memory with {name}, which the update writes in place; got "
                             f"{'the same array' if grad is a else 'overlapping views of one buffer'} "
                             f"(pass grad.copy())")


def _param_and_grad(param: Any, grad: Any) -> tuple[Any, Any]:
    validate.array("param", param)
    validate.writable("param", param)
    grad = validate.array("grad", grad, dtype=param.dtype)
    validate.same_shape("grad", grad, "param", param)
    return param, grad


def sgd_update(param: Any, grad: Any, velocity: Any = None, lr: float = 0.01, momentum: float = 0.0,
               nesterov: bool = False) -> Any:
    """Keras SGD, in place: velocity = momentum * velocity - lr * grad; param += velocity (or the
    Nesterov form param += momentum * velocity - lr * grad); with no velocity, param -= lr * grad.
    ``velocity`` is required when momentum > 0. Returns param (the same, updated, array)."""
    param, checked_grad = _param_and_grad(param, grad)
    lr = validate.real("lr", lr, low=0.0, low_open=True)
    momentum = validate.real("momentum", momentum, low=0.0, high=1.0)
    nesterov = validate.flag("nesterov", nesterov)
    if velocity is None:
        if momentum > 0:
            raise ValueError(f"velocity is required when momentum > 0 (got momentum={momentum} and velocity=None); "
                             f"pass an array of zeros shaped like param and keep it between steps")
        if nesterov:
            raise ValueError("velocity is required when nesterov=True (got velocity=None)")
    else:
        velocity = _state("velocity", velocity, param)
        _distinct(param=param, velocity=velocity)
    _grad_apart(grad, param=param, velocity=velocity)
    return backend.dispatch("optim", param=param, grad=checked_grad, velocity=velocity).sgd_update(
        param, checked_grad, velocity, lr, momentum, nesterov)


def adam_update(param: Any, grad: Any, m: Any, v: Any, step: int, lr: float = 0.001, beta1: float = 0.9,
                beta2: float = 0.999, eps: float = 1e-7) -> Any:
    """Keras Adam, in place, at the 1-based iteration ``step`` (the first update is step=1):
    m = beta1 m + (1 - beta1) grad; v = beta2 v + (1 - beta2) grad^2;
    param -= lr * sqrt(1 - beta2^step) / (1 - beta1^step) * m / (sqrt(v) + eps). Returns param."""
    param, checked_grad = _param_and_grad(param, grad)
    m = _state("m", m, param)
    v = _state("v", v, param)
    _distinct(param=param, m=m, v=v)
    _grad_apart(grad, param=param, m=m, v=v)
    step = validate.positive_int("step", step)
    lr = validate.real("lr", lr, low=0.0, low_open=True)
    beta1 = validate.real("beta1", beta1, low=0.0, high=1.0, high_open=True)
    beta2 = validate.real("beta2", beta2, low=0.0, high=1.0, high_open=True)
    eps = validate.real("eps", eps, low=0.0, low_open=True)
    return backend.dispatch("optim", param=param, grad=checked_grad, m=m, v=v).adam_update(
        param, checked_grad, m, v, step, lr, beta1, beta2, eps)
