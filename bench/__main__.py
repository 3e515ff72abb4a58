"""`python -m bench [--quick] [--op NAME] [--case NAME] [--device cpu|gpu] [--smoke] [--list]`: our kernels vs
the NumPy reference vs PyTorch (when installed), side by side in one run; a rich table of ratios and a
JSON file under bench/results/ with the machine, library versions, the measured limits and the commit.
On the GPU the NumPy reference gives way to CuPy built-ins (cupy.matmul, reductions, elementwise
expressions) where a case has them, and attention's rows also get the peak device memory of an f+b.

See bench/README.md for the method and bench/cases.py for what the phases (fwd, bwd, f+b, upd) time.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import cases as case_defs
from . import memory
from .timing import time_cpu, time_gpu, time_once

RESULTS = Path(__file__).parent / "results"
WIDTH = 100  # the table is laid out to be read in 100 columns
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS",
                    "NUMBA_THREADING_LAYER", "CUPY_TF32")


Skipped = case_defs.Skipped  # the case cannot run here (no GPU kernels for the family, a missing package)
TORCH_DEVICE = {"cpu": "cpu", "gpu": "cuda"}
PEAK_MEMORY_OPS = ("attention",)  # the GPU target asks for attention memory linear in the sequence length
# Extras of the rare GPU session whose failure must not cost a case its other columns: the row records
# "<impl>_error" (or "peak_error") instead, and the run goes on.
SOFT_IMPLS = ("cupy",)


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=Path(__file__).parent).stdout.strip()
        return (out.stdout.strip() or "unknown") + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=1)
def _versions() -> dict:
    from toolkit.info import collect  # compiles a small parallel Numba function: once per process

    return collect()


def machine(device: str, torch) -> dict:
    info = {
        "cpu": _cpu_model(), "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(), "commit": _commit(), "versions": _versions(),
        "thread_variables": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
    }
    if torch is None:
        info["torch"] = "not installed"
    else:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    if device == "gpu":
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        info["gpu_l2_bytes"] = int(props["l2CacheSize"])
        info["driver"] = cupy.cuda.runtime.driverGetVersion()
        info["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
    return info


# ------------------------------------------------------------------------------------------- running
def _implementation(op: str, impl: str, case=None):
    if case is not None and case.implementation is not None:
        found = case.implementation(impl)
        if found is None:
            raise Skipped(f"{case.op} {case.name} has no {impl} implementation")
        return found
    try:
        return case_defs.module(op, impl)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith(f"toolkit.ops.{op}"):
            raise Skipped(f"toolkit/ops/{op} has no {impl}.py yet") from None
        raise


def _torch_inputs(torch, inputs: dict, device: str) -> dict:
    """Copies of the input arrays as tensors on the device (PyTorch's in-place updates, e.g. of running
    statistics or parameters, must not touch our arrays); other entries (parameters) as they are."""
    target = TORCH_DEVICE[device]
    return {key: torch.as_tensor(value, device=target).clone() if case_defs.is_array(value) else value
            for key, value in inputs.items()}


def _own_copies(inputs: dict) -> dict:
    """Copies of the input arrays for the CuPy built-ins, whose in-place updates (running statistics,
    optimizer state) must not touch ours either."""
    return {key: value.copy() if case_defs.is_array(value) else value for key, value in inputs.items()}


def run_case(case, device: str, torch, budget_s: float, smoke: bool = False) -> list[dict]:
    """One row per phase: the median seconds of ours, the NumPy reference (CPU only), the CuPy built-ins
    (GPU only) and PyTorch; on the GPU, attention's f+b row also gets the peak memory of each."""
    ours_mod = _implementation(case.op, "cpu" if device == "cpu" else "gpu", case)
    inputs = case.make_inputs(np.random.default_rng(0), case.dtype)
    # On the GPU, PyTorch and CuPy both queue on the legacy default stream: the same CUDA events time both.
    timer = time_once if smoke else time_gpu if device == "gpu" else time_cpu
    cupy = None
    if device == "gpu":
        import cupy

        inputs = {k: cupy.asarray(v) if isinstance(v, np.ndarray) else v for k, v in inputs.items()}
    impls = {"ours": case_defs.phases(case, ours_mod, inputs)}
    if device == "cpu" and (case.implementation is None or case.implementation("reference") is not None):
        impls["reference"] = case_defs.phases(case, _implementation(case.op, "reference", case), inputs)
    noted = {}  # what every row of the case says about its CuPy column on the GPU
    if device == "gpu":
        noted = _add_cupy_baseline(impls, case, cupy, inputs)
    if torch is not None and case.torch is not None:
        impls["torch"] = case_defs.torch_phases(case, torch, _torch_inputs(torch, inputs, device))
    rows = _timed_rows(case, impls, timer, budget_s)
    for row in rows:
        row.update(noted)
    if device == "gpu" and case.op in PEAK_MEMORY_OPS:
        _add_peak_memory(next(r for r in rows if r["phase"] == "f+b"), impls, inputs, cupy, torch)
    return rows


def _add_cupy_baseline(impls: dict, case, cupy, inputs: dict) -> dict:
    """impls["cupy"] where the case has a CuPy built-in; returns the note for its rows where it has none
    or where building it failed (a soft extra: see SOFT_IMPLS)."""
    if case.cupy is None:
        return {"cupy_note": case_defs.NO_CUPY_BASELINE}
    try:
        impls["cupy"] = case_defs.array_phases(case, cupy, _own_copies(inputs))
    except Exception as exc:
        return {"cupy_error": _failure(exc)}
    return {}


def _failure(exc: Exception) -> str:
    """'Type: message (file:line)' at the innermost frame: enough to fix a GPU-only failure from the JSON."""
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    return f"{type(exc).__name__}: {exc} ({Path(frame.filename).name}:{frame.lineno})"


def _timed_rows(case, impls: dict, timer, budget_s: float) -> list[dict]:
    rows = []
    for phase in impls["ours"]:
        row = {"op": case.op, "name": case.name, "size": case.size, "dtype": np.dtype(case.dtype).name,
               "phase": phase}
        for impl, thunks in impls.items():
            if phase not in thunks:
                continue
            try:
                timing = timer(thunks[phase], budget_s=budget_s)
            except Exception as exc:
                if impl not in SOFT_IMPLS:
                    raise
                row[f"{impl}_error"] = _failure(exc)
                continue
            row[f"{impl}_s"] = timing.median_s
            row[f"{impl}_repeats"] = timing.repeats
        for work, unit in ((case.bytes_moved, "GBps"), (case.flops, "GFLOPs")):
            if work is not None:
                amount = work.of(phase)
                row["bytes" if unit == "GBps" else "flops"] = amount
                for impl in impls:
                    if f"{impl}_s" in row:
                        row[f"{impl}_{unit}"] = amount / row[f"{impl}_s"] / 1e9
        rows.append(row)
    return rows


def _add_peak_memory(row: dict, impls: dict, inputs: dict, cupy, torch) -> None:
    """<impl>_peak_bytes of one f+b (bench/memory.py says how each is read) and the inputs' bytes; a
    failed reading becomes "peak_error" (a soft extra: see SOFT_IMPLS)."""
    row["input_bytes"] = memory.input_bytes(inputs)
    try:
        for impl, thunks in impls.items():
            if impl == "torch":
                row["torch_peak_bytes"] = memory.torch_peak_bytes(torch, thunks["f+b"])
            else:  # ours and the CuPy built-ins allocate from CuPy's pool
                row[f"{impl}_peak_bytes"] = memory.cupy_pool_peak_bytes(cupy, thunks["f+b"])
    except Exception as exc:
        row["peak_error"] = _failure(exc)


def add_limit_fractions(rows: list[dict], limits: dict) -> None:
    """ours_copy_fraction: achieved GB/s over the measured copy; ours_gemm_fraction: GFLOP/s over the GEMM."""
    for row in rows:
        if "ours_GBps" in row:
            row["ours_copy_fraction"] = row["ours_GBps"] / limits["copy_GBps"]
        if "ours_GFLOPs" in row:
            row["ours_gemm_fraction"] = row["ours_GFLOPs"] / limits["gemm_GFLOPs"]


# ------------------------------------------------------------------------------------------- report
def _seconds(s: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            break
    value = s / scale
    return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"


def _ratio(ours: float | None, other: float | None) -> str:
    if ours is None or other is None:
        return ""
    r = other / ours
    return f"{r:.0f}x" if r >= 100 else f"{r:.2f}x" if r < 10 else f"{r:.1f}x"


def _rate(row: dict) -> str:
    for key, unit in (("ours_GFLOPs", "GF/s"), ("ours_GBps", "GB/s")):
        if key in row:
            return f"{row[key]:.3g} {unit}" if row[key] >= 0.01 else f"<0.01 {unit}"
    return ""


# The ratio columns: the NumPy reference on the CPU; on the GPU (no reference there) the CuPy built-ins.
RATIO_COLUMNS = {"cpu": (("vs ref", "reference"), ("vs torch", "torch")),
                 "gpu": (("vs cupy", "cupy"), ("vs torch", "torch"))}


def render(rows: list[dict], device: str, console: Console, *, smoke: bool = False,
           limits: dict | None = None) -> Table:
    """The table fits 100 columns: short labels, the op and case printed once, no column ellipsised."""
    title = f"nn-toolkit {device} benchmarks: speed-up of ours over each baseline (>1 = ours faster)"
    if smoke:
        title = f"nn-toolkit {device} SMOKE run: single calls incl. compilation, NOT benchmarks"
    caption = ("fwd forward, bwd backward, f+b both, upd in-place update, epoch a training epoch; "
               "rate: ours (GF/s matrix products)")
    if device == "gpu":
        caption += "\nvs cupy: CuPy built-ins (cupy.matmul = cuBLAS, reductions, elementwise expressions)"
    if limits:
        caption += (f"\nlimits measured: copy {limits['copy_GBps']:.3g} GB/s, "
                    f"float32 GEMM {limits['gemm_GFLOPs']:.3g} GFLOP/s")
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for col in ("op", "case", "size", "ph"):
        table.add_column(col, no_wrap=True, overflow="fold")
    ratios = RATIO_COLUMNS[device]
    for col in ("ours", "rate", *(label for label, _ in ratios)):
        table.add_column(col, justify="right", no_wrap=True, overflow="fold")
    last_op, last_case = None, None
    for r in rows:
        case_key = (r["op"], r["name"], r["size"])
        if r["op"] != last_op and last_op is not None:
            table.add_section()
        table.add_row(r["op"] if r["op"] != last_op else "",
                      r["name"] if case_key != last_case else "", r["size"] if case_key != last_case else "",
                      r["phase"], _seconds(r["ours_s"]), _rate(r),
                      *(_ratio(r["ours_s"], r.get(f"{impl}_s")) or ("error" if f"{impl}_error" in r else "")
                        for _, impl in ratios))
        last_op, last_case = r["op"], case_key
    console.print(table)
    render_peak_memory(rows, console)
    return table


def _bytes(amount: int | None) -> str:
    if amount is None:
        return ""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10), ("B", 1)):
        if amount >= scale or unit == "B":
            break
    value = amount / scale
    return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"


def render_peak_memory(rows: list[dict], console: Console) -> Table | None:
    """The rows with a peak-memory measurement (attention on the GPU), one line each."""
    measured = [r for r in rows if "ours_peak_bytes" in r]
    if not measured:
        return None
    impls = [impl for impl in ("ours", "cupy", "torch") if any(f"{impl}_peak_bytes" in r for r in measured)]
    table = Table(title=f"peak device memory of one {measured[0]['phase']}, above the inputs",
                  caption="ours/cupy: CuPy pool growth after free_all_blocks() (an upper bound); "
                          "torch: max_memory_allocated (JSON: peak_memory_method)",
                  box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for col in ("op", "case", "size"):
        table.add_column(col, no_wrap=True, overflow="fold")
    for col in ("inputs", *impls):
        table.add_column(col, justify="right", no_wrap=True, overflow="fold")
    for r in measured:
        table.add_row(r["op"], r["name"], r["size"], _bytes(r.get("input_bytes")),
                      *(_bytes(r.get(f"{impl}_peak_bytes")) for impl in impls))
    console.print(table)
    return table


# ------------------------------------------------------------------------------------------- CLI
def _select(args, console: Console) -> list | None:
    every = case_defs.all_cases()
    known_ops = list(dict.fromkeys(c.op for c in every))
    if args.op is not None and args.op not in known_ops:
        console.print(f"[red]--op {args.op!r}: no such op family; known: {', '.join(known_ops)}[/red]")
        return None
    selected = [c for c in every
                if args.device in c.devices and (not args.quick or c.quick) and (args.op is None or c.op == args.op)
                and (args.case is None or c.name == args.case)]
    if not selected:
        console.print(f"[red]no benchmark case matches --op {args.op!r} --case {args.case!r} "
                      f"--device {args.device}{' --quick' if args.quick else ''} (see --list)[/red]")
        return None
    return selected


def _warn_soft_failures(case_rows: list[dict], label: str, console: Console) -> None:
    problems = [f"{key}: {value}" for r in case_rows for key, value in r.items() if key.endswith("_error")]
    for problem in dict.fromkeys(problems):  # once each, in order: a failing backward fails bwd and f+b alike
        console.print(f"[yellow]{escape(label)}: {escape(problem)}[/yellow]")


def main(argv=None, console: Console | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="textbook-small sizes only, short timing budget")
    parser.add_argument("--op", help="only this op family (e.g. activations, dense, conv2d)")
    parser.add_argument("--case", help="only cases of this name (e.g. 'LeNet C1', sigmoid)")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--smoke", action="store_true",
                        help="run every phase once, untimed: checks that the cases run (for tests)")
    parser.add_argument("--list", action="store_true", help="list the selected cases and exit")
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/<device>-<date>.json)")
    args = parser.parse_args(argv)
    if console is None:
        console = Console()
        if not console.is_terminal and console.width < WIDTH:  # piped: rich would assume 80 columns
            console = Console(width=WIDTH)
    selected = _select(args, console)
    if selected is None:
        return 2
    if args.list:
        for c in selected:
            line = f"{c.op:12} {c.name:14} {c.size:18} {'quick' if c.quick else ''}"
            if args.device == "gpu":  # which cases have the CuPy built-in column
                line = f"{line:51} {'cupy' if c.cupy is not None else case_defs.NO_CUPY_BASELINE}"
            console.print(line)
        return 0
    if args.device == "gpu":
        from toolkit import backend

        usable, reason = backend.gpu_status()
        if not usable:
            console.print(f"[red]--device gpu: the GPU is not usable here: {reason}[/red]")
            return 2
    torch = _torch()
    if torch is None:
        console.print("[yellow]PyTorch is not installed: its column stays empty (pip install torch==2.13.0)[/yellow]")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if not args.smoke and load > (os.cpu_count() or 1):
        console.print(f"[yellow]the machine is busy (load {load:.1f} on {os.cpu_count()} cores): "
                      f"timings will be unreliable[/yellow]")
    budget = 0.2 if args.quick else 1.0
    rows, errors, skipped = [], [], []
    for case in selected:
        label = f"{case.op} {case.name} {case.size}"
        console.print(f"[dim]{label}...[/dim]")
        try:
            case_rows = run_case(case, args.device, torch, budget, smoke=args.smoke)
            rows.extend(case_rows)
            _warn_soft_failures(case_rows, label, console)
        except Skipped as why:
            skipped.append({"case": label, "reason": str(why)})
            console.print(f"[yellow]skipped {label}: {why}[/yellow]")
        except Exception as exc:  # one broken family must not hide the others' results
            errors.append({"case": label, "error": f"{type(exc).__name__}: {exc}",
                           "traceback": traceback.format_exc()})
            console.print(f"[red]FAILED {label}: {type(exc).__name__}: {exc}[/red]")
    limits = None
    if not args.smoke and rows:
        from .limits import cpu_limits, gpu_limits

        limits = (gpu_limits if args.device == "gpu" else cpu_limits)(budget)
        add_limit_fractions(rows, limits)
    if rows:
        render(rows, args.device, console, smoke=args.smoke, limits=limits)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS / f"{args.device}-{'' if mode == 'full' else mode + '-'}{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"created": stamp, "mode": mode, "device": args.device, "machine": machine(args.device, torch),
              "limits": limits, "rows": rows, "skipped": skipped, "errors": errors,
              "argv": list(sys.argv[1:] if argv is None else argv)}
    if args.device == "gpu":
        result["peak_memory_method"] = memory.METHOD
    out.write_text(json.dumps(result, indent=1))
    console.print(f"results written to {out}")
    if errors:
        console.print(f"[red]{len(errors)} case(s) failed: {', '.join(e['case'] for e in errors)}[/red]")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
