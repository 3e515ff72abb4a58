"""A stand-in for CuPy that runs the public GPU path (gpu.forward, gpu.backward, ...) without a GPU.

``install(monkeypatch)`` puts a fake ``cupy`` module in sys.modules: its arrays are NumPy's (through the
harness's NaN-poisoned ``empty``), and its ``RawModule`` builds the code it is given with the host harness
instead of NVRTC. So toolkit/cuda/modules.py really runs: the code, options and name expressions it hands
to CuPy are recorded, compiled and used, and ``assert_compiled_once`` checks them. Tests use it through the
``fake_cupy`` fixture of conftest.py.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

from toolkit.cuda import modules, sources
from toolkit.cuda.host import harness

# modules.py's per-process caches: cleared before and after, so no test sees another's (fake or real) CuPy.
_CACHES = (modules._module, modules.target, modules._max_grid_blocks)


class RawModule:
    """cupy.RawModule's constructor and get_function, on the host harness. Every instance is recorded."""

    created: list["RawModule"]  # set per installation

    def __init__(self, code: str, options: tuple[str, ...], name_expressions: list[str]):
        self.code, self.options, self.name_expressions = code, options, list(name_expressions)
        op_dir = Path(next(o for o in options if o.startswith("-I"))[2:])  # the op's folder comes first
        path = sources.op_source(op_dir.name)
        self.host = harness.load_source(code, name=str(path), include_from=path)
        self.created.append(self)

    def get_function(self, expression: str):
        assert expression in self.name_expressions, f"{expression} was not among the name expressions"
        return self.host.get_function(expression)


def install(monkeypatch) -> list[RawModule]:
    """Replace CuPy for the rest of the test (undone by monkeypatch); returns the list of RawModules the
    code under test creates. Call ``uninstall`` afterwards to drop modules.py's caches of the fake."""
    created: list[RawModule] = []
    fake = types.ModuleType("cupy")
    fake.__getattr__ = lambda name: getattr(harness.poisoned_numpy, name)
    fake.RawModule = type("RawModule", (RawModule,), {"created": created})
    fake.cuda = types.SimpleNamespace(
        Device=lambda: types.SimpleNamespace(id=0),
        runtime=types.SimpleNamespace(getDeviceProperties=lambda i: {"multiProcessorCount": 1}))
    uninstall()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    return created


def uninstall() -> None:
    for cache in _CACHES:
        cache.cache_clear()


def assert_compiled_once(created: list[RawModule], op: str) -> None:
    """The public path of ``op`` compiled its .cu once, with exactly what modules.py promises CuPy gets."""
    path = sources.op_source(op)
    assert len(created) == 1  # compiled once per process
    module = created[0]
    assert module.code == modules.code_for(path)
    assert module.options == modules.options_for(path)
    assert module.name_expressions == sources.source_name_expressions(path)
