"""Where the CUDA sources live and which kernels they define (no CuPy, no compiler needed).

The project's one kernel convention (see README.md): every kernel is

    template <typename T>
    __global__ void name(...)

instantiated for ``T = float`` and ``T = double``: NVRTC through the name expressions ``name<float>`` and
``name<double>``, the host harness through one generated launcher per instantiation. The kernel list is
read from the source itself, so a new kernel needs no registration anywhere.

A kernel may also live in a project header (toolkit/cuda/reduce.cuh, gemm.cuh) shared by several ops: it
belongs to every op whose .cu includes that header, directly or through another header. ``unit_kernels``
(and ``source_kernels`` for a file on disk) follow the ``#include "..."`` lines to find them; ``kernels``
reads one text only.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Sequence

import numpy as np

CUDA_DIR = Path(__file__).resolve().parent
OPS_DIR = CUDA_DIR.parent / "ops"
COMMON_HEADER = CUDA_DIR / "common.cuh"

# C++ type of T  ->  NumPy dtype of the arrays and float scalars of that instantiation.
CTYPES = {"float": np.dtype(np.float32), "double": np.dtype(np.float64)}
HEADER_SUFFIXES = (".cuh", ".h")

_TEMPLATE = re.compile(r"template\s*<\s*(?:typename|class)\s+\w+\s*>\s*$")
_KERNEL = re.compile(r"__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(")
_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"', re.M)
# common.cuh's definition of TK_DYNAMIC_SHARED (with its continuation lines): the one place allowed to write
# extern __shared__, since every kernel reaches dynamic shared memory through it.
_DYNAMIC_SHARED_DEFINITION = re.compile(r"^[ \t]*#[ \t]*define[ \t]+TK_DYNAMIC_SHARED\b(?:[^\n]*\\\n)*[^\n]*", re.M)


def cu_files() -> list[Path]:
    """Every .cu of every op, sorted: toolkit/ops/<op>/*.cu."""
    return sorted(OPS_DIR.glob("*/*.cu"))


def op_source(op: str) -> Path:
    """The kernel source of an op: toolkit/ops/<op>/<op>.cu."""
    path = OPS_DIR / op / f"{op}.cu"
    if not path.is_file():
        raise FileNotFoundError(f"op {op!r} has no CUDA source: expected {path}")
    return path


def include_dirs(path: Path) -> list[Path]:
    """Where a .cu's #include "..." is looked up: its own folder, then toolkit/cuda (common.cuh)."""
    return [Path(path).resolve().parent, CUDA_DIR]


def ctype(dtype) -> str:
    """'float' or 'double' for a float32 / float64 dtype (the kernels' T)."""
    dt = np.dtype(dtype)
    for name, d in CTYPES.items():
        if d == dt:
            return name
    raise TypeError(f"CUDA kernels are instantiated for float32 and float64 only; got dtype {dt}")


def name_expression(kernel: str, dtype) -> str:
    """The instantiation's name as NVRTC and RawModule.get_function take it, e.g. 'softmax_forward<float>'."""
    return f"{kernel}<{ctype(dtype)}>"


def _blank(match: re.Match) -> str:
    return re.sub(r"[^\n]", " ", match.group(0))


def strip_comments(text: str) -> str:
    """The source without // and /* */ comments (lines kept, so positions stay meaningful)."""
    return re.sub(r"//[^\n]*|/\*.*?\*/", _blank, text, flags=re.S)


def kernels(text: str) -> list[str]:
    """Names of the kernels a source defines, in order; raises ValueError where the convention is broken."""
    problems = convention_problems(text)
    if problems:
        raise ValueError("; ".join(problems))
    return _kernel_names(text)


def _kernel_names(text: str) -> list[str]:
    return [m.group(1) for m in _KERNEL.finditer(strip_comments(text))]


def convention_problems(text: str) -> list[str]:
    """What in a source breaks the project's conventions (empty when none)."""
    code = strip_comments(text)
    problems = []
    for m in re.finditer(r"__global__", code):
        line = code.count("\n", 0, m.start()) + 1
        if not _TEMPLATE.search(code[: m.start()]):
            problems.append(f"line {line}: a kernel must be 'template <typename T> __global__ void name(...)' "
                            f"(instantiated for float and double)")
        elif not _KERNEL.match(code, m.start()):
            problems.append(f"line {line}: cannot read the kernel's name after __global__ void")
    for m in re.finditer(r"extern\s+__shared__", _DYNAMIC_SHARED_DEFINITION.sub(_blank, code)):
        line = code.count("\n", 0, m.start()) + 1
        problems.append(f"line {line}: declare dynamic shared memory with TK_DYNAMIC_SHARED(T, name) "
                        f"from common.cuh, not extern __shared__")
    for m in re.finditer(r"#\s*include\s*<([^>]+)>", code):
        line = code.count("\n", 0, m.start()) + 1
        problems.append(f"line {line}: #include <{m.group(1)}>: NVRTC has no standard headers; "
                        f"use common.cuh's tk:: helpers")
    return problems


# --------------------------------------------------------------------------- kernels of included headers
def included_headers(text: str, include_dirs: Sequence[Path],
                     overrides: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(name, text) of every project header a source reaches through ``#include "..."``, directly or through
    another header, each once (the headers are ``#pragma once``), in the order their code enters the
    translation unit (a header's own includes before it).

    Looked up as the compilers do: in the including header's own folder (the source itself has none: NVRTC
    compiles a string), then in ``include_dirs``. ``overrides`` (name -> text) replace headers by name, as
    ``harness.build``'s ``headers`` do. A name found nowhere is left for the compiler to report.
    """
    overrides = overrides or {}
    seen: set[object] = set()
    found: list[tuple[str, str]] = []

    def visit(code: str, folder: Path | None) -> None:
        for name in _INCLUDE.findall(strip_comments(code)):
            if name in overrides:
                key, header, header_folder = ("override", name), overrides[name], None
            else:
                folders = ([folder] if folder else []) + [Path(d) for d in include_dirs]
                path = next((d / name for d in folders if (d / name).is_file()), None)
                if path is None:
                    continue
                key, header, header_folder = path.resolve(), path.read_text(), path.resolve().parent
            if key not in seen:
                seen.add(key)
                visit(header, header_folder)
                found.append((name, header))

    visit(text, None)
    return found


def _unit(text: str, include_dirs: Sequence[Path], overrides: dict[str, str] | None) -> list[tuple[str, str]]:
    return [*included_headers(text, include_dirs, overrides), ("", text)]


def unit_convention_problems(text: str, include_dirs: Sequence[Path],
                             overrides: dict[str, str] | None = None) -> list[str]:
    """convention_problems of a source and of every project header it includes (prefixed with its name)."""
    return [f"{name}: {p}" if name else p for name, code in _unit(text, include_dirs, overrides)
            for p in convention_problems(code)]


def unit_kernels(text: str, include_dirs: Sequence[Path], overrides: dict[str, str] | None = None) -> list[str]:
    """The kernels of a source's translation unit: those of the project headers it includes (include
    order), then its own. ValueError where a convention is broken or two files define the same kernel."""
    problems = unit_convention_problems(text, include_dirs, overrides)
    where: dict[str, str] = {}
    for name, code in _unit(text, include_dirs, overrides):
        for kernel in _kernel_names(code):
            if kernel in where:
                problems.append(f"kernel {kernel!r} is defined twice ({where[kernel] or 'the source'} and "
                                f"{name or 'the source'})")
            where[kernel] = name
    if problems:
        raise ValueError("; ".join(problems))
    return list(where)


def unit_kernel_parameters(text: str, include_dirs: Sequence[Path],
                           overrides: dict[str, str] | None = None) -> dict[str, list[str]]:
    """kernel_parameters of every kernel of the translation unit (see unit_kernels)."""
    found: dict[str, list[str]] = {}
    for _, code in _unit(text, include_dirs, overrides):
        found.update(kernel_parameters(code))
    return found


def source_kernels(path: Path) -> list[str]:
    """The kernels of a .cu file: its own and those of the project headers it includes."""
    path = Path(path).resolve()
    return unit_kernels(path.read_text(), include_dirs(path))


def source_name_expressions(path: Path) -> list[str]:
    """All instantiations of all kernels of a .cu file (source_kernels): what NVRTC must instantiate."""
    return name_expressions_of(source_kernels(path))


def name_expressions(text: str) -> list[str]:
    """All instantiations of all kernels of a source: ['k<float>', 'k<double>', ...]."""
    return name_expressions_of(kernels(text))


def name_expressions_of(kernel_names: list[str]) -> list[str]:
    return [f"{k}<{t}>" for k in kernel_names for t in CTYPES]


def kernel_parameters(text: str) -> dict[str, list[str]]:
    """Each kernel's parameter names, in order (for readable argument errors)."""
    code = strip_comments(text)
    found = {}
    for m in _KERNEL.finditer(code):
        depth, i = 1, m.end()
        while depth and i < len(code):
            depth += {"(": 1, ")": -1}.get(code[i], 0)
            i += 1
        params = [p.strip() for p in code[m.end():i - 1].split(",") if p.strip()]
        found[m.group(1)] = [re.findall(r"\w+", p)[-1] for p in params]
    return found


def header_files(path: Path) -> list[Path]:
    """The headers a .cu may include: those in its own folder and in toolkit/cuda (not host/)."""
    found = []
    for d in include_dirs(path):
        found += sorted(p for p in d.iterdir() if p.suffix in HEADER_SUFFIXES and p.is_file())
    return found


def headers_digest(path: Path, overrides: dict[str, str] | None = None) -> str:
    """A hash of every header a .cu may include (with overridden texts), for cache keys."""
    h = hashlib.sha256()
    overrides = overrides or {}
    for header in header_files(path):
        h.update(header.name.encode())
        h.update(overrides.get(header.name, header.read_text()).encode())
    for name in sorted(set(overrides) - {p.name for p in header_files(path)}):
        h.update(name.encode())
        h.update(overrides[name].encode())
    return h.hexdigest()
