"""What is benchmarked: one Case per (op, size). Each case runs the same forward/backward through every
implementation that has it: the NumPy reference, our CPU (Numba) or GPU (CUDA) kernels, and PyTorch.

reference.py, cpu.py and gpu.py of an op share names and signatures, so a case writes its forward and
backward once, against a module, and the harness hands it each module in turn.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

Thunk = Callable[[], Any]


@dataclass(frozen=True)
class Case:
    op: str                      # op family, as in toolkit/ops/<op>
    name: str                    # what runs, e.g. "sigmoid"
    size: str                    # human label of the problem size
    make_inputs: Callable[[np.random.Generator, Any], dict]
    forward: Callable[[Any, dict], Any]            # (module, inputs) -> whatever backward needs
    backward: Callable[[Any, dict, Any], Any]      # (module, inputs, forward result) -> grads
    torch: Callable[[Any, dict], tuple[Thunk, Thunk]] | None = None  # (torch, inputs) -> (fwd, fwd+bwd)
    quick: bool = False          # part of --quick
    bytes_moved: int | None = None  # minimum bytes a forward+backward must move (GPU bandwidth fraction)
    flops: int | None = None        # forward+backward floating-point operations
    dtype: Any = field(default=np.float32)


def module(op: str, impl: str):
    """toolkit.ops.<op>.reference / .cpu / .gpu."""
    return importlib.import_module(f"toolkit.ops.{op}.{impl}")


def phases(case: Case, mod: Any, inputs: dict) -> dict[str, Thunk]:
    primed = case.forward(mod, inputs)  # the backward phase reuses one forward's cache
    return {
        "forward": lambda: case.forward(mod, inputs),
        "backward": lambda: case.backward(mod, inputs, primed),
        "forward+backward": lambda: case.backward(mod, inputs, case.forward(mod, inputs)),
    }


def torch_phases(case: Case, torch: Any, inputs: dict) -> dict[str, Thunk]:
    forward, both = case.torch(torch, inputs)
    return {"forward": forward, "forward+backward": both}


# ----------------------------------------------------------------------------------- activations
def _activation_case(name: str, n: int, label: str, quick: bool, torch_fn: str) -> Case:
    def make(rng, dtype):
        return {"x": (rng.standard_normal(n) * 3).astype(dtype), "dy": rng.standard_normal(n).astype(dtype)}

    def torch_impl(torch, inp):
        x = torch.from_numpy(inp["x"]).requires_grad_(True)
        dy = torch.from_numpy(inp["dy"])
        fn = getattr(torch, torch_fn) if hasattr(torch, torch_fn) else getattr(torch.nn.functional, torch_fn)

        def both():
            x.grad = None
            fn(x).backward(dy)

        return (lambda: fn(x.detach())), both

    return Case(
        op="activations", name=name, size=label, make_inputs=make, quick=quick,
        forward=lambda mod, inp: mod.forward(name, inp["x"], **_defaults(name)),
        backward=lambda mod, inp, res: mod.backward(inp["dy"], res[1]),
        torch=torch_impl, bytes_moved=n * 4 * 5,  # read x, write y; read x, y, dy, write dx (as float32)
    )


def _defaults(name: str) -> dict:
    from toolkit.ops.activations.reference import PARAMETERS

    return dict(PARAMETERS.get(name, {}))


def _softmax_case(rows: int, cols: int, quick: bool) -> Case:
    def make(rng, dtype):
        return {"x": (rng.standard_normal((rows, cols)) * 3).astype(dtype),
                "dy": rng.standard_normal((rows, cols)).astype(dtype)}

    def torch_impl(torch, inp):
        x = torch.from_numpy(inp["x"]).requires_grad_(True)
        dy = torch.from_numpy(inp["dy"])

        def both():
            x.grad = None
            torch.softmax(x, -1).backward(dy)

        return (lambda: torch.softmax(x.detach(), -1)), both

    return Case(
        op="activations", name="softmax", size=f"{rows}x{cols}", make_inputs=make, quick=quick,
        forward=lambda mod, inp: mod.forward("softmax", inp["x"], axis=1),
        backward=lambda mod, inp, res: mod.backward(inp["dy"], res[1]),
        torch=torch_impl, bytes_moved=rows * cols * 4 * 5,
    )


def all_cases() -> list[Case]:
    cases = []
    for name, torch_fn in (("sigmoid", "sigmoid"), ("tanh", "tanh"), ("relu", "relu")):
        cases.append(_activation_case(name, 1 << 16, "2^16", True, torch_fn))
        cases.append(_activation_case(name, 1 << 24, "2^24", False, torch_fn))
    cases.append(_softmax_case(256, 1000, True))
    cases.append(_softmax_case(4096, 4096, False))
    for extra in _EXTRA_CASE_MODULES:
        try:
            cases.extend(importlib.import_module(extra).cases())
        except ModuleNotFoundError as exc:  # an op family not built yet is skipped, named in the report
            if not exc.name.startswith("toolkit.ops"):
                raise
    return cases


# Cases of the other op families live in their own modules (one file a family) and register here.
_EXTRA_CASE_MODULES: list[str] = []
