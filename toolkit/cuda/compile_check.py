"""Compile every .cu under toolkit/ops with NVRTC for each target architecture, without a GPU.

    python -m toolkit.cuda.compile_check            # all .cu files, compute_80 and compute_90
    python -m toolkit.cuda.compile_check toolkit/ops/activations/activations.cu

Uses NVRTC directly through ``cupy_backends.cuda.libs.nvrtc`` (the nvidia-cuda-nvrtc wheel):
``cupy.cuda.compiler`` would ask the (absent) device for its architecture. Every kernel is instantiated
for float and double through name expressions, so template code is really compiled. A compile passes
only when the log is free of warnings and errors: NVRTC prints its warnings by default (with their
numbers, e.g. ``warning #177-D: variable "i" was declared but never referenced``), and any of them
fails the check. The project's kernel conventions (sources.convention_problems) are checked too, in the
.cu and in the project headers it includes (whose kernels are instantiated with the .cu's own).

Clean compiles are remembered under $TOOLKIT_NVRTC_CACHE (default ~/.cache/nn-toolkit/nvrtc), keyed by
the source, every header it may include, the options and the NVRTC version: an unchanged file is not
recompiled on the next run (a fresh CI machine always compiles). TOOLKIT_NVRTC_CACHE=off disables it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from . import sources
from .modules import BASE_OPTIONS

ARCHITECTURES = ("compute_80", "compute_90")  # Ampere (A100) and Hopper (H100/H200)
CACHE_ENV = "TOOLKIT_NVRTC_CACHE"
_DIAGNOSTIC = re.compile(r"\b(warning|error)\b", re.IGNORECASE)


class CompileError(RuntimeError):
    """A .cu failed to compile, compiled with warnings, or broke the kernel conventions."""


@dataclass(frozen=True)
class Compiled:
    path: Path
    arch: str
    ptx: bytes
    lowered_names: dict[str, str]  # 'k<float>' -> mangled symbol
    log: str


def compile_source(text: str, *, name: str, include_dirs: list[Path], arch: str,
                   name_expressions: list[str]) -> tuple[bytes, dict[str, str], str]:
    """NVRTC-compile one source; returns (ptx, lowered names, log). Raises CompileError on failure."""
    from cupy_backends.cuda.libs import nvrtc

    options = [f"--gpu-architecture={arch}", *BASE_OPTIONS, *(f"-I{d}" for d in include_dirs)]
    program = nvrtc.createProgram(text, name, [], [])
    try:
        for expression in name_expressions:
            nvrtc.addNameExpression(program, expression)
        try:
            nvrtc.compileProgram(program, options)
        except nvrtc.NVRTCError as exc:
            raise CompileError(f"{name} ({arch}) does not compile: {exc}\n{nvrtc.getProgramLog(program)}") from None
        log = nvrtc.getProgramLog(program)
        lowered = {e: nvrtc.getLoweredName(program, e) for e in name_expressions}
        return nvrtc.getPTX(program), lowered, log
    finally:
        nvrtc.destroyProgram(program)


def _cache_dir() -> Path | None:
    setting = os.environ.get(CACHE_ENV, "")
    if setting.lower() == "off":
        return None
    d = Path(setting or Path.home() / ".cache" / "nn-toolkit" / "nvrtc")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _cache_key(path: Path, text: str, arch: str) -> str:
    from cupy_backends.cuda.libs import nvrtc

    h = hashlib.sha256()
    for part in (text, sources.headers_digest(path), arch, " ".join(BASE_OPTIONS), str(nvrtc.getVersion())):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def check_file(path: Path | str, arch: str) -> Compiled:
    """Compile one .cu for ``arch``; CompileError on a convention problem, an error or any warning."""
    path = Path(path).resolve()
    text = path.read_text()
    problems = sources.unit_convention_problems(text, sources.include_dirs(path))
    if problems:
        raise CompileError(f"{path.name} breaks the kernel conventions (toolkit/cuda/README.md):\n  "
                           + "\n  ".join(problems))
    cache = _cache_dir()
    key = _cache_key(path, text, arch) if cache else ""
    if cache and (cache / f"{key}.json").exists() and (cache / f"{key}.ptx").exists():
        lowered = json.loads((cache / f"{key}.json").read_text())
        return Compiled(path, arch, (cache / f"{key}.ptx").read_bytes(), lowered, "")
    expressions = sources.source_name_expressions(path)  # the kernels of the included headers too
    ptx, lowered, log = compile_source(text, name=path.name, include_dirs=sources.include_dirs(path), arch=arch,
                                       name_expressions=expressions)
    if _DIAGNOSTIC.search(log):
        raise CompileError(f"{path.name} ({arch}) compiles with diagnostics; warnings count as failures:\n{log}")
    if cache:  # only clean compiles are remembered; written .ptx first, so a .json always has its .ptx
        tmp = cache / f"{key}.{os.getpid()}.tmp"
        tmp.write_bytes(ptx)
        os.replace(tmp, cache / f"{key}.ptx")
        tmp.write_text(json.dumps(lowered))
        os.replace(tmp, cache / f"{key}.json")
    return Compiled(path, arch, ptx, lowered, log)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    files = [Path(a) for a in argv] or sources.cu_files()
    if not files:
        print("no .cu files found under", sources.OPS_DIR)
        return 1
    failed = 0
    for path in files:
        for arch in ARCHITECTURES:
            try:
                compiled = check_file(path, arch)
            except CompileError as exc:
                failed += 1
                print(f"FAIL {path} [{arch}]\n{exc}\n")
            else:
                print(f"ok   {path} [{arch}]: {len(compiled.lowered_names)} kernel instantiations, "
                      f"{len(compiled.ptx)} bytes of PTX")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
