"""What is benchmarked: one Case per (op, size). Each case runs the same forward/backward through every
implementation that has it: the NumPy reference, our CPU (Numba) or GPU (CUDA) kernels, and PyTorch.

reference.py, cpu.py and gpu.py of an op share names and signatures, so a case writes its forward and
backward once, against a module, and the harness hands it each module in turn. The cases call those
modules directly with arguments that are already in their validated form (C-contiguous arrays,
resolved padding, ...): input validation is not part of what is timed.

On the GPU a case may also have a CuPy built-in baseline (``Case.cupy``): the same op written with plain
array-module operations (xp.matmul, xp.exp, reductions, ...), what a CuPy user writes without custom
kernels. It takes the array module as an argument, so the tests run it with NumPy against the reference.

Phases (the labels of the table and the JSON):
  fwd  forward only (our forward also builds its cache; PyTorch's records its autograd graph)
  bwd  backward only, from the cache of one earlier forward (PyTorch: autograd.grad with retain_graph)
  f+b  a forward then its backward, as one training step runs them
  upd  an in-place update with no backward (optimizers)
  epoch  one training epoch of a whole model (bench/cases_lenet.py): forward, backward and update of
       every mini-batch

Each family's cases live in bench/cases_<family>.py and are listed in _CASE_MODULES.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

Thunk = Callable[[], Any]
PHASES = ("fwd", "bwd", "f+b", "upd", "epoch")
F32 = 4  # bytes per element: every case runs in float32, the default dtype


@dataclass(frozen=True)
class Work:
    """Minimum work of one forward and one backward: bytes that must cross memory (each input read once,
    each output written once) and floating-point operations (counted for the matrix products only)."""

    fwd: int
    bwd: int = 0
    both: int | None = None  # f+b when it is less than fwd + bwd (a fused forward_backward reads x once)

    def of(self, phase: str) -> int:
        both = self.fwd + self.bwd if self.both is None else self.both
        return {"fwd": self.fwd, "upd": self.fwd, "epoch": self.fwd, "bwd": self.bwd, "f+b": both}[phase]


@dataclass(frozen=True)
class TorchGraph:
    """A PyTorch version of a case. ``run()`` runs the forward with autograd recording and returns
    (outputs, grad_outputs); backward is ``torch.autograd.grad(outputs, inputs, grad_outputs)``: the
    gradients of every input our backward also returns, without accumulating into ``.grad``."""

    run: Callable[[], tuple[Sequence[Any], Sequence[Any] | None]]
    inputs: Sequence[Any]


@dataclass(frozen=True)
class ArrayGraph:
    """A case written with an array module's built-ins (``xp`` = cupy on the GPU, numpy in the tests).
    ``forward()`` returns (output, what the backward needs), as our forward does; ``backward(result)``
    returns the gradients in the order ours does. backward None: forward is the whole single phase (an
    in-place optimizer update)."""

    forward: Thunk
    backward: Callable[[Any], Any] | None = None


class Skipped(Exception):
    """The case cannot run here (the family has no GPU kernels yet, an optional package is missing)."""


@dataclass(frozen=True)
class TorchStep:
    """A PyTorch version of a single-phase case: an in-place update (an optimizer step, phase "upd") or
    a training epoch (phase "epoch")."""

    step: Thunk


@dataclass(frozen=True)
class Case:
    op: str                      # op family, as in toolkit/ops/<op>
    name: str                    # what runs, short (the table has 100 columns), e.g. "sigmoid", "LeNet C1"
    size: str                    # short human label of the problem size, e.g. "2^24", "256x1024>1024"
    make_inputs: Callable[[np.random.Generator, Any], dict]   # (rng, dtype) -> arrays and parameters
    forward: Callable[[Any, dict], Any]                      # (module, inputs) -> what backward needs
    backward: Callable[[Any, dict, Any], Any] | None         # (module, inputs, forward result) -> grads;
    #                                                          None: forward is an in-place update ("upd")
    # (torch, inputs as tensors on the device + the non-array parameters) -> TorchGraph | TorchStep
    torch: Callable[[Any, dict], TorchGraph | TorchStep] | None = None
    quick: bool = False          # part of --quick
    bytes_moved: Work | None = None  # for GB/s (elementwise, reductions, pooling, ...)
    flops: Work | None = None        # for GFLOP/s (dense, conv2d, attention, rnn, lstm)
    dtype: Any = field(default=np.float32)
    devices: tuple[str, ...] = ("cpu", "gpu")  # GPU-only sizes would take minutes (and GBs) on the CPU
    # (module, inputs) -> the f+b phase as one call, e.g. activations' forward_backward (y and dx in one
    # pass); None: f+b is backward(forward(...)). PyTorch's f+b is always its forward then autograd.
    fused: Callable[[Any, dict], Any] | None = None
    single_phase: str = "upd"    # the phase label of a case without backward: "upd", or "epoch" for a model
    # impl ("cpu", "gpu", "reference") -> what forward/backward receive as ``module``, or None when there
    # is no such implementation (its column stays empty); None: toolkit.ops.<op>.<impl>
    implementation: Callable[[str], Any] | None = None
    # (xp, inputs: the case's own copies as xp arrays) -> ArrayGraph: the CuPy built-in column of the GPU
    # run. None where CuPy has no honest built-in for the op (convolution, recurrences, attention).
    cupy: Callable[[Any, dict], ArrayGraph] | None = None


NO_CUPY_BASELINE = "no cupy baseline"  # what --list and the JSON rows of the GPU run say of the others


def module(op: str, impl: str):
    """toolkit.ops.<op>.reference / .cpu / .gpu."""
    return importlib.import_module(f"toolkit.ops.{op}.{impl}")


def _phase_thunks(forward: Thunk, backward: Callable[[Any], Any] | None, fused: Thunk | None,
                  single_phase: str) -> dict[str, Thunk]:
    if backward is None:
        return {single_phase: forward}
    primed = forward()  # the backward phase reuses one forward's cache
    return {"fwd": forward, "bwd": lambda: backward(primed),
            "f+b": fused if fused is not None else (lambda: backward(forward()))}


def phases(case: Case, mod: Any, inputs: dict) -> dict[str, Thunk]:
    return _phase_thunks(
        lambda: case.forward(mod, inputs),
        None if case.backward is None else (lambda result: case.backward(mod, inputs, result)),
        None if case.fused is None else (lambda: case.fused(mod, inputs)),
        case.single_phase)


def array_phases(case: Case, xp: Any, inputs: dict) -> dict[str, Thunk]:
    """The phases of the case's built-in baseline: f+b is its forward then its backward."""
    graph = case.cupy(xp, inputs)
    return _phase_thunks(graph.forward, graph.backward, None, case.single_phase)


def torch_phases(case: Case, torch: Any, inputs: dict) -> dict[str, Thunk]:
    spec = case.torch(torch, inputs)
    if isinstance(spec, TorchStep):
        return {case.single_phase: spec.step}
    outputs, grad_outputs = spec.run()  # one graph kept alive for the backward-only phase

    def backward_only():
        return torch.autograd.grad(outputs, spec.inputs, grad_outputs, retain_graph=True)

    def both():
        outs, grads = spec.run()
        return torch.autograd.grad(outs, spec.inputs, grads)

    return {"fwd": spec.run, "bwd": backward_only, "f+b": both}


def is_array(value: Any) -> bool:
    """A NumPy or CuPy array (an input to copy or convert), not a parameter."""
    return isinstance(value, np.ndarray) or hasattr(value, "__cuda_array_interface__")


def requires_grad(*tensors: Any) -> list[Any]:
    """The tensors as autograd leaves (torch builders use it on the inputs they differentiate)."""
    return [t.detach().requires_grad_(True) for t in tensors]


# One module per op family, each with cases() -> list[Case].
_CASE_MODULES: list[str] = [
    "bench.cases_activations",
    "bench.cases_dense",
    "bench.cases_losses",
    "bench.cases_conv2d",
    "bench.cases_pool2d",
    "bench.cases_dropout",
    "bench.cases_batchnorm",
    "bench.cases_rnn",
    "bench.cases_lstm",
    "bench.cases_attention",
    "bench.cases_optim",
    "bench.cases_lenet",
]
_EXTRA_CASE_MODULES = _CASE_MODULES  # the name the harness was first written with


def all_cases() -> list[Case]:
    cases = []
    for name in _CASE_MODULES:
        cases.extend(importlib.import_module(name).cases())
    return cases


def families() -> list[str]:
    """Op families with cases, in the order they run."""
    return list(dict.fromkeys(c.op for c in all_cases()))
