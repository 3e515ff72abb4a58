"""Smoke tests of the benchmark harness (bench/): every op family's cases are well formed and run end to
end, the PyTorch baselines compute the same function as ours (so the ratios compare like with like),
the JSON is complete, the table fits 100 columns, and a missing PyTorch is handled. Nothing here is
timed: --smoke runs each phase once."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
from rich.console import Console

from bench import __main__ as cli
from bench import cases as case_defs
from bench.timing import SLOW_REPEATS, time_cpu, time_once

FAMILIES = ("activations", "dense", "losses", "conv2d", "pool2d", "dropout", "batchnorm", "rnn", "lstm",
            "attention", "optim", "lenet")
ALL_CASES = case_defs.all_cases()


@pytest.fixture(autouse=True, scope="module")
def _one_thread_each():
    """Nothing here is timed: one thread for Numba and PyTorch keeps the tiny cases from waiting on
    thread pools of a busy shared machine. Restored afterwards."""
    import numba

    numba_threads = numba.get_num_threads()
    numba.set_num_threads(1)
    torch = cli._torch()
    torch_threads = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(1)
    yield
    numba.set_num_threads(numba_threads)
    if torch is not None:
        torch.set_num_threads(torch_threads)


def _first_quick(op: str):
    return next(c for c in ALL_CASES if c.op == op and c.quick)


def test_every_family_has_quick_and_full_size_cases():
    for op in FAMILIES:
        ops_cases = [c for c in ALL_CASES if c.op == op]
        assert any(c.quick for c in ops_cases), f"{op}: no --quick case"
        assert any(not c.quick for c in ops_cases), f"{op}: no full-size case"
    assert set(case_defs.families()) == set(FAMILIES)


def test_cases_are_well_formed():
    keys = [(c.op, c.name, c.size) for c in ALL_CASES]
    assert len(keys) == len(set(keys)), "two cases share op, name and size"
    for c in ALL_CASES:
        assert len(c.name) <= 14 and len(c.size) <= 20, f"{c.name!r} {c.size!r}: labels too long for the table"
        assert c.torch is not None, f"{c.op} {c.name}: no PyTorch equivalent"
        work = [w for w in (c.bytes_moved, c.flops) if w is not None]
        assert work, f"{c.op} {c.name}: neither bytes nor flops: no rate in the table"
        for w in work:
            assert w.fwd > 0 and (c.backward is None or w.bwd > 0)
    for op in ("dense", "conv2d", "attention", "lstm", "rnn"):
        assert all(c.flops is not None for c in ALL_CASES if c.op == op), f"{op}: GFLOP/s need a flops estimate"


def test_performance_issue_sizes_are_benchmarked():
    sizes = {(c.op, c.name, c.size) for c in ALL_CASES if not c.quick}
    for expected in [("activations", "sigmoid", "2^24"), ("losses", "softmax_xent", "4096x1000"),
                     ("dense", "dense", "256x1024>1024"), ("conv2d", "LeNet C1", "128x32x32x1 5x5>6"),
                     ("conv2d", "LeNet C3", "128x14x14x6 5x5>16"), ("conv2d", "3x3 same", "8x56x56x64 3x3>64"),
                     ("batchnorm", "train", "256x1024"), ("batchnorm", "train", "8x56x56x64"),
                     ("lstm", "lstm", "N32 T64 D128 H256"), ("attention", "sdpa", "N8 T512 d64"),
                     ("optim", "adam", "2^22"), ("dropout", "rate 0.5", "2^24")]:
        assert expected in sizes, f"missing {expected}"


def test_gpu_only_sizes_stay_off_the_cpu(tmp_path):
    gpu_only = [c for c in ALL_CASES if c.devices == ("gpu",)]
    assert {(c.op, c.size) for c in gpu_only} >= {("activations", "2^28"), ("dense", "4096x4096>4096"),
                                                  ("attention", "N8 T4096 d64")}
    assert not any(c.quick for c in gpu_only)
    _, _, text = _run_main(["--list"], tmp_path)
    assert "2^24" in text and "2^28" not in text and "T4096" not in text
    _, _, text = _run_main(["--list", "--device", "gpu", "--op", "activations"], tmp_path)
    assert "2^28" in text


def test_work_of_a_phase():
    w = case_defs.Work(fwd=3, bwd=5)
    assert (w.of("fwd"), w.of("bwd"), w.of("f+b"), w.of("upd")) == (3, 5, 8, 3)


def test_time_once_calls_once_and_time_cpu_takes_the_median():
    calls = []
    t = time_once(lambda: calls.append(1), budget_s=5.0)
    assert calls == [1] and t.repeats == 1 and t.median_s >= 0
    calls.clear()
    # a call slower than the budget: warm-up, the probe, then SLOW_REPEATS repeats
    t = time_cpu(lambda: calls.append(1), warmup=1, budget_s=0.0, min_repeats=5, max_repeats=9)
    assert t.repeats == SLOW_REPEATS and len(calls) == 1 + 1 + SLOW_REPEATS
    assert t.min_s <= t.median_s
    calls.clear()
    # a fast call fills the budget up to max_repeats
    t = time_cpu(lambda: calls.append(1), warmup=1, budget_s=0.05, min_repeats=2, max_repeats=7)
    assert t.repeats == 7 and len(calls) == 1 + 1 + 7


@pytest.mark.parametrize("op", FAMILIES)
def test_one_quick_case_per_family_runs(op):
    torch = cli._torch()
    case = _first_quick(op)
    rows = cli.run_case(case, "cpu", torch, budget_s=0.0, smoke=True)
    assert [r["phase"] for r in rows] == ([case.single_phase] if case.backward is None else ["fwd", "bwd", "f+b"])
    has_reference = case.implementation is None or case.implementation("reference") is not None
    for r in rows:
        assert r["ours_s"] > 0 and (r["reference_s"] > 0 if has_reference else "reference_s" not in r)
        assert ("torch_s" in r) == (torch is not None)
        assert ("ours_GBps" in r) or ("ours_GFLOPs" in r)


# What our forward returns first and how PyTorch lays it out (NCHW where ours is NHWC).
_OURS_OUTPUT = {"rnn": 1}  # rnn.forward returns (y None without read-out, h, cache)
_CHANNELS_FIRST = ("conv2d", "pool2d", "batchnorm")


def test_work_of_a_fused_phase_and_an_epoch():
    w = case_defs.Work(fwd=3, bwd=5, both=6)  # a fused forward_backward moves less than the two calls
    assert (w.of("f+b"), w.of("epoch")) == (6, 3)


def test_activations_f_and_b_runs_the_fused_kernel(monkeypatch):
    from toolkit.ops.activations import cpu

    case = next(c for c in ALL_CASES if c.op == "activations" and c.name == "sigmoid" and c.quick)
    inputs = case.make_inputs(np.random.default_rng(0), case.dtype)
    calls = []
    monkeypatch.setattr(cpu, "forward_backward", lambda *a, **k: calls.append(a) or (None, None))
    case_defs.phases(case, cpu, inputs)["f+b"]()
    assert len(calls) == 1 and calls[0][0] == "sigmoid"


def test_lenet_twins_start_from_the_same_weights_and_compute_the_same_logits():
    torch = pytest.importorskip("torch")
    from bench import cases_lenet

    ours = cases_lenet.ToolkitLeNet("cpu").model
    theirs = cases_lenet.torch_lenet(torch, ours)
    x = np.random.default_rng(3).random((5, 32, 32, 1)).astype(np.float32)
    logits = ours.forward(x, logits=True)
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)


def test_lenet_epoch_case_trains_both_models(tmp_path):
    torch = pytest.importorskip("torch")
    case = _first_quick("lenet")
    inputs = case.make_inputs(np.random.default_rng(0), case.dtype)
    runner = case.implementation("cpu")
    first = runner.epoch(inputs)["loss"][0]
    assert np.isfinite(first) and runner.epoch(inputs)["loss"][0] < first + 1.0
    step = case.torch(torch, cli._torch_inputs(torch, inputs, "cpu")).step
    assert np.isfinite(step()) and case.implementation("reference") is None


@pytest.mark.parametrize("op", [op for op in FAMILIES if op not in ("dropout", "optim", "lenet")])
def test_pytorch_baseline_computes_what_ours_computes(op):
    """Dropout's masks come from different generators and the optimizers' eps placement differs (Keras vs
    PyTorch): their work is the same, their values are not, so they are not compared here."""
    torch = pytest.importorskip("torch")
    for case in [c for c in ALL_CASES if c.op == op and c.quick]:
        inputs = case.make_inputs(np.random.default_rng(0), case.dtype)
        ours = case.forward(case_defs.module(op, "cpu"), inputs)[_OURS_OUTPUT.get(op, 0)]
        spec = case.torch(torch, cli._torch_inputs(torch, inputs, "cpu"))
        theirs = spec.run()[0][0].detach().numpy()
        if op in _CHANNELS_FIRST and theirs.ndim == 4:
            theirs = theirs.transpose(0, 2, 3, 1)
        np.testing.assert_allclose(ours, theirs, rtol=2e-4, atol=2e-5, err_msg=f"{case.name} {case.size}")


@pytest.fixture(autouse=True)
def _quick_versions(monkeypatch):
    """toolkit.info.collect() compiles a Numba probe (seconds on this box); it has its own tests. The
    harness's use of it is checked by test_machine_info_uses_toolkit_info without running it."""
    monkeypatch.setattr(cli, "_versions", lambda: {"NumPy": np.__version__, "Numba": "stub"})


def test_machine_info_uses_toolkit_info(monkeypatch):
    import toolkit.info

    monkeypatch.undo()  # drop the stub of _versions (same monkeypatch object): the real one, on a fake collect
    monkeypatch.setattr(toolkit.info, "collect", lambda: {"NumPy": "9.9", "Numba": "x"})
    cli._versions.cache_clear()
    try:
        info = cli.machine("cpu", None)
    finally:
        cli._versions.cache_clear()
    assert info["versions"] == {"NumPy": "9.9", "Numba": "x"} and info["torch"] == "not installed"
    assert info["cores"] >= 1 and info["cores_usable"] >= 1 and info["commit"]


def _run_main(argv, tmp_path):
    out = tmp_path / "result.json"
    buffer = io.StringIO()
    console = Console(file=buffer, width=cli.WIDTH, force_terminal=False)
    code = cli.main([*argv, "--out", str(out)], console=console)
    return code, json.loads(out.read_text()) if out.exists() else None, buffer.getvalue()


def test_cli_end_to_end_writes_json(tmp_path):
    code, result, text = _run_main(["--quick", "--smoke", "--op", "pool2d", "--case", "S2 max"], tmp_path)
    assert code == 0, text
    assert result["mode"] == "smoke" and result["device"] == "cpu" and not result["errors"]
    machine = result["machine"]
    for key in ("cpu", "cores", "commit", "versions", "torch"):
        assert key in machine
    assert machine["versions"] == {"NumPy": np.__version__, "Numba": "stub"}
    assert [r["phase"] for r in result["rows"]] == ["fwd", "bwd", "f+b"]
    assert all(r["op"] == "pool2d" and r["name"] == "S2 max" for r in result["rows"])
    if machine["torch"] != "not installed":
        assert isinstance(machine["torch_threads"], int) and "torch_s" in result["rows"][0]
    assert "SMOKE" in text and "…" not in text


def test_cli_without_pytorch(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    assert cli._torch() is None
    code, result, text = _run_main(["--quick", "--smoke", "--op", "optim", "--case", "adam"], tmp_path)
    assert code == 0, text
    assert "PyTorch is not installed" in text
    assert result["machine"]["torch"] == "not installed"
    assert result["rows"] and all("torch_s" not in r for r in result["rows"])


def test_cli_rejects_unknown_op_and_empty_selection(tmp_path):
    code, result, text = _run_main(["--op", "convolution"], tmp_path)
    assert code == 2 and result is None and "no such op family" in text and "conv2d" in text
    code, result, text = _run_main(["--op", "dense", "--case", "nope"], tmp_path)
    assert code == 2 and result is None and "no benchmark case matches" in text


def test_a_failing_case_is_reported_and_the_others_still_run(monkeypatch, tmp_path):
    def broken(mod, inp):
        raise RuntimeError("kernel exploded")

    bad = case_defs.Case(op="optim", name="broken", size="1", make_inputs=lambda rng, dtype: {},
                         forward=broken, backward=None, bytes_moved=case_defs.Work(1))
    good = _first_quick("optim")
    monkeypatch.setattr(case_defs, "all_cases", lambda: [bad, good])
    code, result, text = _run_main(["--smoke", "--op", "optim"], tmp_path)
    assert code == 1 and "FAILED optim broken 1: RuntimeError: kernel exploded" in text
    assert result["errors"][0]["case"] == "optim broken 1" and "kernel exploded" in result["errors"][0]["error"]
    assert {r["name"] for r in result["rows"]} == {good.name}


def test_a_family_without_the_implementation_is_skipped(monkeypatch, tmp_path):
    ghost = case_defs.Case(op="no_such_family", name="x", size="1", make_inputs=lambda rng, dtype: {},
                           forward=lambda mod, inp: None, backward=None)
    with pytest.raises(cli.Skipped, match="toolkit/ops/no_such_family has no cpu.py"):
        cli.run_case(ghost, "cpu", None, budget_s=0.0, smoke=True)


def test_table_fits_100_columns_with_every_label():
    """The widest labels of every case, with worst-case numbers, render in 100 columns unclipped."""
    rows = [{"op": c.op, "name": c.name, "size": c.size, "phase": phase, "ours_s": 123.4e-3,
             "reference_s": 1234.0, "torch_s": 1e-9, "ours_GFLOPs": 12345.6}
            for c in ALL_CASES for phase in ("fwd", "bwd", "f+b")]
    buffer = io.StringIO()
    cli.render(rows, "cpu", Console(file=buffer, width=100, force_terminal=False),
               limits={"copy_GBps": 12.3, "gemm_GFLOPs": 456.0})
    lines = buffer.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 100
    text = buffer.getvalue()
    assert "…" not in text
    for c in ALL_CASES:
        assert c.name in text and c.size in text
    assert "123 ms" in text and "1e+04x" not in text and "10000x" in text
