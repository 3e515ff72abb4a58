"""Smoke tests of the benchmark harness (bench/): every op family's cases are well formed and run end to
end, the PyTorch baselines and the CuPy built-in baselines compute the same function as ours (so the
ratios compare like with like; the built-ins run here with NumPy as their array module), the JSON is
complete, the table fits 100 columns, and a missing PyTorch is handled. Nothing here is timed: --smoke
runs each phase once.

The GPU-only branches of the harness (the CuPy column, peak memory, CUDA-event timing, the GPU limits
and machine record) run here on fakes: NumPy dressed as CuPy and PyTorch with scripted torch.cuda
memory statistics. The tests marked ``gpu`` repeat the decisive checks on a real device
(bench/gpu_session.sh runs them)."""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import sys
import time
import types

import numpy as np
import pytest
from rich.console import Console

from bench import __main__ as cli
from bench import cases as case_defs
from bench import memory
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
    assert "vs ref" in text and "vs cupy" not in text and "peak" not in text  # the CuPy column is the GPU's


# ------------------------------------------------------------------------------ CuPy built-in baselines
BUILTIN_OPS = ("activations", "dense", "losses", "pool2d", "dropout", "batchnorm", "optim")


def _as_tuple(result) -> tuple:
    return result if isinstance(result, tuple) else (result,)


def _host(array) -> np.ndarray:
    from toolkit import backend

    return backend.to_numpy(array)


def _on(xp, inputs: dict) -> dict:
    return {k: xp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in inputs.items()}


def _check_builtin_against_reference(op: str, xp) -> None:
    """The built-in baseline of every quick case of ``op``, run with ``xp``, against the NumPy reference:
    the forward's output, the backward's gradients, and every input array afterwards (running statistics
    and optimizer state are updated in place), in the reference's dtype (float32 work, not float64)."""
    reference = case_defs.module(op, "reference")
    for case in [c for c in ALL_CASES if c.op == op and c.quick]:
        ours_inputs = case.make_inputs(np.random.default_rng(0), case.dtype)
        theirs_inputs = _on(xp, case.make_inputs(np.random.default_rng(0), case.dtype))
        graph = case.cupy(xp, theirs_inputs)
        ours, theirs = case.forward(reference, ours_inputs), graph.forward()
        pairs = []
        if case.backward is not None:  # an update's result is its parameter, compared with the inputs below
            pairs.append((ours[0], theirs[0]))
            pairs.extend(zip(_as_tuple(case.backward(reference, ours_inputs, ours)), _as_tuple(graph.backward(theirs)),
                             strict=True))
        pairs.extend((v, theirs_inputs[k]) for k, v in ours_inputs.items() if isinstance(v, np.ndarray))
        for expected, got in pairs:
            got = _host(got)
            assert got.dtype == expected.dtype, f"{case.name} {case.size}: {got.dtype} instead of {expected.dtype}"
            np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-5, err_msg=f"{case.name} {case.size}")


def _check_dropout_builtin(xp) -> None:
    """Dropout's built-in draws its own masks: it keeps about 1 - rate of the values, scales the kept ones
    by 1 / (1 - rate), zeroes the others, applies the same mask to dy, and draws a new mask per forward."""
    from bench.cases_dropout import RATE

    case = _first_quick("dropout")
    inputs = _on(xp, case.make_inputs(np.random.default_rng(0), case.dtype))
    graph = case.cupy(xp, inputs)
    result = graph.forward()
    y, keep, dx = _host(result[0]), _host(result[1]), _host(graph.backward(result))
    x, dy, scale = _host(inputs["x"]), _host(inputs["dy"]), np.float32(1 / (1 - RATE))
    assert y.dtype == dx.dtype == np.float32 and keep.dtype == np.bool_
    assert abs(keep.mean() - (1 - RATE)) < 0.02
    np.testing.assert_allclose(y, np.where(keep, x * scale, 0), rtol=1e-6)
    np.testing.assert_allclose(dx, np.where(keep, dy * scale, 0), rtol=1e-6)
    assert (_host(graph.forward()[1]) != keep).any()


def test_cupy_baselines_exist_exactly_where_cupy_has_a_builtin():
    """conv2d, rnn, lstm and attention have no honest CuPy built-in (nor does a whole LeNet epoch)."""
    for c in ALL_CASES:
        assert (c.cupy is not None) == (c.op in BUILTIN_OPS), f"{c.op} {c.name} {c.size}"


@pytest.mark.parametrize("op", [op for op in BUILTIN_OPS if op != "dropout"])
def test_cupy_baseline_computes_what_the_reference_computes(op):
    _check_builtin_against_reference(op, np)


def test_dropout_cupy_baseline_keeps_scales_and_masks():
    _check_dropout_builtin(np)


def test_max_pool_builtin_sends_a_tie_to_the_first_maximum_as_ours():
    case = next(c for c in ALL_CASES if c.op == "pool2d" and c.name == "S2 max" and c.quick)
    inputs = case.make_inputs(np.random.default_rng(0), case.dtype)
    inputs["x"][:, :2, :2, :] = 1.0  # the first window of every image and channel: a four-way tie
    expected = case.backward(case_defs.module("pool2d", "reference"), inputs,
                             case.forward(case_defs.module("pool2d", "reference"), inputs))
    graph = case.cupy(np, inputs)
    np.testing.assert_array_equal(graph.backward(graph.forward()), expected)


@pytest.mark.parametrize("op", BUILTIN_OPS)
def test_cupy_baseline_phases_run_with_numpy(op):
    for case in [c for c in ALL_CASES if c.op == op and c.quick]:
        thunks = case_defs.array_phases(case, np, case.make_inputs(np.random.default_rng(0), case.dtype))
        assert list(thunks) == ([case.single_phase] if case.backward is None else ["fwd", "bwd", "f+b"])
        for thunk in thunks.values():
            assert thunk() is not None


def test_the_cupy_baseline_gets_its_own_copies_of_the_arrays():
    inputs = {"param": np.ones(3, np.float32), "step": 10}
    copies = cli._own_copies(inputs)
    copies["param"] += 1
    assert inputs["param"][0] == 1 and copies["step"] == 10


# ------------------------------------------------------------------------------ GPU branches, on fakes
class _FakeCupy(types.ModuleType):
    """NumPy in CuPy's clothes: arrays stay on the host (asarray copies, as a transfer would), the memory
    pool reports scripted sizes in turn, CUDA events read perf_counter, and the calls the peak-memory
    readers make are logged in order."""

    def __init__(self, pool_sizes=(1000, 1000 + 4096), l2_bytes=4096):
        super().__init__("cupy")
        self.calls: list[str] = []  # not "log": the harness calls cupy.log (the logarithm)
        self._pool_sizes = itertools.cycle(pool_sizes)
        device = types.SimpleNamespace(id=0, synchronize=lambda: self.calls.append("synchronize"))
        properties = {"name": b"Fake GPU", "l2CacheSize": l2_bytes}
        self.cuda = types.SimpleNamespace(
            Device=lambda: device, Event=_FakeEvent, get_elapsed_time=lambda a, b: (b.at - a.at) * 1e3,
            runtime=types.SimpleNamespace(getDeviceProperties=lambda index: properties,
                                          driverGetVersion=lambda: 13000, runtimeGetVersion=lambda: 13000))

    def __getattr__(self, name):
        return getattr(np, name)

    def asarray(self, a):
        return np.array(a)

    def get_default_memory_pool(self):
        return types.SimpleNamespace(free_all_blocks=lambda: self.calls.append("free_all_blocks"),
                                     total_bytes=self._total_bytes)

    def _total_bytes(self) -> int:
        self.calls.append("total_bytes")
        return next(self._pool_sizes)


class _FakeEvent:
    at = 0.0

    def record(self):
        self.at = time.perf_counter()

    def synchronize(self):
        pass


class _TorchOnFakeCuda:
    """PyTorch (CPU, or None where it is not installed) whose torch.cuda memory statistics are scripted:
    ``allocated`` bytes before a call, ``peak`` bytes at most; each call is logged."""

    def __init__(self, torch, calls: list, allocated=500, peak=500 + 8192):
        self._torch = torch

        def logged(name, value=None):
            return lambda: calls.append(name) or value

        self.cuda = types.SimpleNamespace(
            synchronize=logged("synchronize"), memory_allocated=logged("memory_allocated", allocated),
            reset_peak_memory_stats=logged("reset_peak_memory_stats"),
            max_memory_allocated=logged("max_memory_allocated", peak))

    def __getattr__(self, name):
        return getattr(self._torch, name)


@pytest.fixture
def fake_gpu(monkeypatch):
    """A fake CuPy as ``cupy``, PyTorch's "GPU" tensors on the CPU, and our CPU kernels as the gpu modules."""
    cupy = _FakeCupy()
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(cli.TORCH_DEVICE, "gpu", "cpu")
    real_module = case_defs.module
    monkeypatch.setattr(case_defs, "module", lambda op, impl: real_module(op, "cpu" if impl == "gpu" else impl))
    return cupy


def test_cupy_pool_peak_is_the_growth_over_one_call_after_freeing_cached_blocks():
    cupy = _FakeCupy(pool_sizes=(1000, 5096))
    assert memory.cupy_pool_peak_bytes(cupy, lambda: cupy.calls.append("f+b")) == 4096
    assert cupy.calls == ["synchronize", "free_all_blocks", "total_bytes", "f+b", "synchronize", "total_bytes"]


def test_torch_peak_is_the_maximum_allocated_after_a_reset_less_what_was_allocated():
    calls = []
    torch = _TorchOnFakeCuda(None, calls, allocated=500, peak=8692)
    assert memory.torch_peak_bytes(torch, lambda: calls.append("f+b")) == 8192
    assert calls == ["synchronize", "memory_allocated", "reset_peak_memory_stats", "f+b", "synchronize",
                   "max_memory_allocated"]


def test_input_bytes_counts_arrays_not_parameters():
    assert memory.input_bytes({"q": np.zeros((2, 3), np.float32), "mask": None, "scale": 0.5}) == 24


@pytest.mark.parametrize("op", [*BUILTIN_OPS, "conv2d", "attention"])
def test_gpu_branches_of_run_case_on_fakes(fake_gpu, op):
    """The CuPy column where a case has a built-in ("no cupy baseline" noted where not), no NumPy
    reference, and the peak memory of one f+b on attention's f+b row only."""
    real_torch = cli._torch()
    torch = None if real_torch is None else _TorchOnFakeCuda(real_torch, fake_gpu.calls)
    case = _first_quick(op)
    rows = cli.run_case(case, "gpu", torch, budget_s=0.0, smoke=True)
    assert [r["phase"] for r in rows] == ([case.single_phase] if case.backward is None else ["fwd", "bwd", "f+b"])
    rate = "GFLOPs" if case.flops is not None else "GBps"
    for r in rows:
        assert "reference_s" not in r and ("torch_s" in r) == (torch is not None)
        if case.cupy is not None:
            assert r["cupy_repeats"] == 1 and r["cupy_s"] > 0 and r[f"cupy_{rate}"] > 0 and "cupy_note" not in r
        else:
            assert r["cupy_note"] == "no cupy baseline" and "cupy_s" not in r
    measured = [r for r in rows if "ours_peak_bytes" in r]
    if op != "attention":
        assert not measured
        return
    assert [r["phase"] for r in measured] == ["f+b"]
    inputs = case.make_inputs(np.random.default_rng(0), case.dtype)
    assert measured[0]["input_bytes"] == sum(v.nbytes for v in inputs.values() if isinstance(v, np.ndarray))
    assert measured[0]["ours_peak_bytes"] == 4096  # the fake pool grows by 4096 bytes over each call
    assert measured[0].get("torch_peak_bytes") == (None if torch is None else 8192)


def test_gpu_cli_end_to_end_on_fakes(fake_gpu, monkeypatch, tmp_path):
    from toolkit import backend

    monkeypatch.setattr(backend, "gpu_status", lambda: (True, "a fake GPU"))
    real_torch = cli._torch()
    if real_torch is not None:
        monkeypatch.setattr(cli, "_torch", lambda: _TorchOnFakeCuda(real_torch, fake_gpu.calls))
    code, result, text = _run_main(["--device", "gpu", "--quick", "--smoke", "--op", "attention"], tmp_path)
    assert code == 0, text
    machine = result["machine"]
    assert result["device"] == "gpu" and machine["gpu"] == "Fake GPU" and machine["gpu_l2_bytes"] == 4096
    assert machine["driver"] == machine["cuda_runtime"] == 13000
    assert result["peak_memory_method"] == memory.METHOD and not result["errors"]
    both = [r for r in result["rows"] if r["phase"] == "f+b"]
    assert len(both) == 2 and all(r["ours_peak_bytes"] == 4096 for r in both)
    assert all(r["cupy_note"] == "no cupy baseline" for r in result["rows"])
    assert "vs cupy" in text and "vs ref" not in text and "peak device memory of one f+b" in text
    assert "4 KiB" in text and "…" not in text and max(len(line) for line in text.splitlines()) <= cli.WIDTH


def test_a_failing_cupy_baseline_or_peak_reading_keeps_the_rest_of_the_case(fake_gpu, monkeypatch, tmp_path):
    """On the rare GPU session a broken extra must not cost a case our and PyTorch's timings."""
    from toolkit import backend

    def broken_backward(xp, inp):
        return case_defs.ArrayGraph(forward=lambda: (inp["x"], None), backward=lambda result: 1 / 0)

    dense = dataclasses.replace(_first_quick("dense"), cupy=broken_backward)
    monkeypatch.setattr(case_defs, "all_cases", lambda: [dense, _first_quick("attention")])
    monkeypatch.setattr(memory, "cupy_pool_peak_bytes", lambda cupy, thunk: cupy.no_such_reading())
    monkeypatch.setattr(backend, "gpu_status", lambda: (True, "a fake GPU"))
    monkeypatch.setattr(cli, "_torch", lambda: None)
    code, result, text = _run_main(["--device", "gpu", "--smoke"], tmp_path)
    assert code == 0 and not result["errors"], text
    rows = {(r["op"], r["phase"]): r for r in result["rows"]}
    assert rows["dense", "fwd"]["cupy_s"] > 0 and "cupy_error" not in rows["dense", "fwd"]
    for phase in ("bwd", "f+b"):
        assert rows["dense", phase]["ours_s"] > 0 and "cupy_s" not in rows["dense", phase]
        assert rows["dense", phase]["cupy_error"].startswith("ZeroDivisionError: division by zero (test_bench.py:")
    assert rows["attention", "f+b"]["ours_s"] > 0 and "AttributeError" in rows["attention", "f+b"]["peak_error"]
    assert "dense dense 64x784>128: cupy_error: ZeroDivisionError" in text and "peak_error: AttributeError" in text
    assert "error" in text.split("vs cupy", 1)[1]  # the table's cell


def test_list_on_the_gpu_says_which_cases_have_a_cupy_column(tmp_path):
    code, _, text = _run_main(["--list", "--device", "gpu"], tmp_path)
    assert code == 0
    lines = text.splitlines()
    for c in [c for c in ALL_CASES if "gpu" in c.devices]:
        line = next(line for line in lines if line.startswith(f"{c.op:12} {c.name:14} {c.size:18}"))
        assert line.endswith("no cupy baseline" if c.cupy is None else " cupy"), line
    _, _, text = _run_main(["--list"], tmp_path)
    assert "cupy" not in text  # the CPU listing is as it was


def test_gpu_table_shows_cupy_ratios_and_peak_memory_in_100_columns():
    gpu_cases = [c for c in ALL_CASES if "gpu" in c.devices]
    rows = [{"op": c.op, "name": c.name, "size": c.size, "phase": phase, "ours_s": 123.4e-3, "cupy_s": 1234.0,
             "torch_s": 1e-9, "ours_GFLOPs": 12345.6} for c in gpu_cases for phase in ("fwd", "bwd", "f+b")]
    for r in rows:
        if r["op"] == "attention" and r["phase"] == "f+b":
            r.update(input_bytes=999 * 2**20, ours_peak_bytes=123.4 * 2**30, torch_peak_bytes=1023)
    buffer = io.StringIO()
    cli.render(rows, "gpu", Console(file=buffer, width=100, force_terminal=False),
               limits={"copy_GBps": 3012.3, "gemm_GFLOPs": 51234.0})
    text = buffer.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 100 and "…" not in text
    assert "vs cupy" in text and "vs ref" not in text and "10000x" in text
    assert "peak device memory" in text and "123 GiB" in text and "999 MiB" in text and "1023 B" in text


def test_time_gpu_and_gpu_limits_on_a_fake_cupy(fake_gpu, monkeypatch):
    from bench import limits, timing

    monkeypatch.setattr(timing, "_flusher", None)  # built on the fake here, dropped afterwards
    calls = []
    t = timing.time_gpu(lambda: calls.append(1), budget_s=0.0)  # slower than the budget: SLOW_REPEATS
    assert t.repeats == SLOW_REPEATS and len(calls) == 3 + 1 + SLOW_REPEATS and 0 <= t.min_s <= t.median_s
    assert timing._flusher.buffer.nbytes >= 2 * 4096  # twice the L2 the fake reports
    measured = limits.gpu_limits(0.0, copy_values=1 << 10, gemm_n=8)
    assert measured["copy_GBps"] > 0 and measured["gemm_GFLOPs"] > 0
    assert "2^10" in measured["copy_what"] and "8^3" in measured["gemm_what"]


# ------------------------------------------------------------------------------ on a real GPU (-m gpu)
@pytest.mark.gpu
@pytest.mark.parametrize("op", [op for op in BUILTIN_OPS if op != "dropout"])
def test_cupy_baseline_on_the_gpu_computes_what_the_reference_computes(op):
    import cupy

    _check_builtin_against_reference(op, cupy)


@pytest.mark.gpu
def test_dropout_cupy_baseline_on_the_gpu_keeps_scales_and_masks():
    import cupy

    _check_dropout_builtin(cupy)


@pytest.mark.gpu
def test_peak_memory_readers_on_the_gpu():
    import cupy

    n = 1 << 24  # 64 MiB of float32
    assert n * 4 <= memory.cupy_pool_peak_bytes(cupy, lambda: cupy.empty(n, cupy.float32)) < 2 * n * 4
    torch = pytest.importorskip("torch")
    assert memory.torch_peak_bytes(torch, lambda: torch.empty(n, device="cuda")) == n * 4


@pytest.mark.gpu
@pytest.mark.parametrize("op", ["dense", "attention"])
def test_run_case_on_the_gpu(op):
    torch = cli._torch()
    rows = cli.run_case(_first_quick(op), "gpu", torch, budget_s=0.0, smoke=True)
    both = next(r for r in rows if r["phase"] == "f+b")
    assert both["ours_s"] > 0 and ("torch_s" in both) == (torch is not None)
    if op == "dense":
        assert both["cupy_s"] > 0
    else:
        assert both["ours_peak_bytes"] > 0 and both["input_bytes"] > 0
        assert torch is None or both["torch_peak_bytes"] > 0
