"""`python -m bench [--quick] [--op NAME] [--device cpu|gpu]`: our kernels vs the NumPy reference vs
PyTorch (when installed), side by side in one run; a rich table of ratios and a JSON file under
bench/results/ with the machine, library versions and commit."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from . import cases as case_defs
from .timing import time_cpu, time_gpu

RESULTS = Path(__file__).parent / "results"


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
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def machine(device: str) -> dict:
    from toolkit.info import collect

    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "commit": _commit(), "versions": collect()}
    torch = _torch()
    info["torch"] = f"{torch.__version__} ({torch.get_num_threads()} threads)" if torch else "not installed"
    if device == "gpu":
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        info["driver"] = cupy.cuda.runtime.driverGetVersion()
    return info


def run_case(case, device: str, torch, budget_s: float) -> list[dict]:
    rng = np.random.default_rng(0)
    inputs = case.make_inputs(rng, case.dtype)
    timer = time_cpu
    ours_mod = case_defs.module(case.op, "cpu")
    if device == "gpu":
        import cupy

        inputs = {k: cupy.asarray(v) if isinstance(v, np.ndarray) else v for k, v in inputs.items()}
        ours_mod, timer = case_defs.module(case.op, "gpu"), time_gpu
    ours = case_defs.phases(case, ours_mod, inputs)
    rows = []
    ref = case_defs.phases(case, case_defs.module(case.op, "reference"), inputs) if device == "cpu" else {}
    tor = {}
    if torch is not None and case.torch is not None:
        t_inputs = inputs
        if device == "gpu":
            t_inputs = {k: torch.as_tensor(v, device="cuda") if hasattr(v, "__cuda_array_interface__") else v
                        for k, v in inputs.items()}
        tor = case_defs.torch_phases(case, torch, t_inputs)
    for phase, thunk in ours.items():
        row = {"op": case.op, "name": case.name, "size": case.size, "dtype": np.dtype(case.dtype).name,
               "phase": phase, "ours_s": timer(thunk, budget_s=budget_s).median_s}
        if phase in ref:
            row["reference_s"] = time_cpu(ref[phase], budget_s=budget_s).median_s
        if phase in tor:
            torch_timer = time_gpu if device == "gpu" else time_cpu
            row["torch_s"] = torch_timer(tor[phase], budget_s=budget_s).median_s
        if case.bytes_moved and phase == "forward+backward":
            row["ours_GBps"] = case.bytes_moved / row["ours_s"] / 1e9
        rows.append(row)
    return rows


def _ratio(a: float | None, b: float | None) -> str:
    return "" if a is None or b is None else f"{b / a:.2f}x"


def render(rows: list[dict], device: str, console: Console) -> None:
    table = Table(title=f"nn-toolkit benchmarks ({device}): speed-up of ours over each baseline (>1 = ours faster)")
    for col in ("op", "name", "size", "phase", "ours", "vs NumPy ref", "vs PyTorch"):
        table.add_column(col, justify="right" if col in ("ours", "vs NumPy ref", "vs PyTorch") else "left")
    for r in rows:
        table.add_row(r["op"], r["name"], r["size"], r["phase"], f"{r['ours_s'] * 1e3:.3f} ms",
                      _ratio(r["ours_s"], r.get("reference_s")), _ratio(r["ours_s"], r.get("torch_s")))
    console.print(table)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes only, short timing budget")
    parser.add_argument("--op", help="only this op family (e.g. activations, dense, conv2d)")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/<device>-<date>.json)")
    args = parser.parse_args(argv)
    console = Console()
    if args.device == "gpu":
        from toolkit import backend

        usable, reason = backend.gpu_status()
        if not usable:
            console.print(f"[red]--device gpu: the GPU is not usable here: {reason}[/red]")
            return 2
    selected = [c for c in case_defs.all_cases()
                if (not args.quick or c.quick) and (args.op is None or c.op == args.op)]
    if not selected:
        console.print(f"[red]no benchmark case matches --op {args.op!r}[/red]")
        return 2
    torch = _torch()
    if torch is None:
        console.print("[yellow]PyTorch is not installed: its column stays empty (pip install torch==2.13.0)[/yellow]")
    budget = 0.2 if args.quick else 1.0
    rows = []
    for case in selected:
        console.print(f"[dim]{case.op} {case.name} {case.size}...[/dim]")
        rows.extend(run_case(case, args.device, torch, budget))
    render(rows, args.device, console)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS / f"{args.device}-{'quick-' if args.quick else ''}{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(args.device), "rows": rows,
                               "argv": sys.argv[1:]}, indent=1))
    console.print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
