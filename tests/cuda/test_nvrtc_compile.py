"""Every .cu under toolkit/ops compiles with NVRTC for compute_80 and compute_90, warning-free, with
every kernel instantiated for float and double. No GPU needed (the nvidia-cuda-nvrtc wheel).

The files are discovered when the tests are collected, so a new op's .cu is checked without editing
this file. The checker itself is tested too: a warning, an error and each convention breach must fail.
"""

import re
import shutil

import pytest

from toolkit.cuda import compile_check, modules, sources

CU_FILES = sources.cu_files()


def test_discovery_finds_the_kernel_sources():
    names = {p.name for p in CU_FILES}
    assert "activations.cu" in names
    assert all(p.parent.parent == sources.OPS_DIR for p in CU_FILES)


@pytest.mark.parametrize("arch", compile_check.ARCHITECTURES)
@pytest.mark.parametrize("path", CU_FILES, ids=lambda p: p.parent.name + "/" + p.name)
def test_every_cu_compiles_without_warnings(path, arch):
    compiled = compile_check.check_file(path, arch)
    kernels = sources.source_kernels(path)  # its own and those of the shared headers it includes
    assert kernels, f"{path.name} defines no kernel"
    assert set(compiled.lowered_names) == {f"{k}<{t}>" for k in kernels for t in ("float", "double")}
    assert all(name.startswith("_Z") for name in compiled.lowered_names.values())  # really instantiated
    assert f".target sm_{arch.split('_')[1]}".encode() in compiled.ptx


def test_the_code_cupy_receives_compiles():
    # modules.code_for adds a header-hash comment and #line 1: it must stay valid and keep line numbers.
    path = sources.op_source("activations")
    code = modules.code_for(path)
    assert code.splitlines()[1] == '#line 1 "activations.cu"'
    ptx, lowered, log = compile_check.compile_source(
        code, name=path.name, include_dirs=sources.include_dirs(path), arch="compute_90",
        name_expressions=sources.source_name_expressions(path))
    assert log == "" and len(lowered) == 8 and ptx
    broken = code.replace("long long n, int code,", "long long n, int code, undefined_type u,", 1)
    with pytest.raises(compile_check.CompileError, match=r"activations.cu\(\d+\): error"):
        compile_check.compile_source(broken, name=path.name, include_dirs=sources.include_dirs(path),
                                     arch="compute_90", name_expressions=[])


def test_header_changes_change_the_cache_key():
    path = sources.op_source("activations")
    common = sources.COMMON_HEADER.read_text()
    assert sources.headers_digest(path) == sources.headers_digest(path, {"common.cuh": common})
    assert sources.headers_digest(path) != sources.headers_digest(path, {"common.cuh": common + "\n// edit"})
    assert modules.options_for(path) == ("-std=c++17", f"-I{path.parent}", f"-I{sources.CUDA_DIR}")


@pytest.mark.parametrize("header", ["reduce.cuh", "gemm.cuh"])
def test_shared_header_changes_change_every_cache_key(header):
    # An op that includes a shared header of toolkit/cuda: an edit there must reach CuPy's source comment,
    # the NVRTC check's key and the host build's key (a stale build would hide the edit).
    from toolkit.cuda.host import harness

    path = sources.op_source("rnn")
    text = (sources.CUDA_DIR / header).read_text()
    edited = {header: text + "\n// edit"}
    assert header in [name for name, _ in sources.included_headers(path.read_text(), sources.include_dirs(path))]
    assert sources.headers_digest(path) == sources.headers_digest(path, {header: text})
    assert sources.headers_digest(path) != sources.headers_digest(path, edited)
    assert sources.headers_digest(path) in modules.code_for(path)  # CuPy's key; compile_check's hashes it too
    args = dict(name=str(path), include_dirs=sources.include_dirs(path))
    if shutil.which("g++"):
        assert harness.build(path.read_text(), **args) != harness.build(path.read_text(), **args, headers=edited)


def test_kernels_of_included_headers_belong_to_the_source(tmp_path):
    (tmp_path / "op").mkdir()
    (tmp_path / "shared").mkdir()
    kernel = "template <typename T>\n__global__ void {}(T* y) {{ y[0] = T(1); }}\n"
    (tmp_path / "shared" / "inner.cuh").write_text("#pragma once\n" + kernel.format("inner"))
    (tmp_path / "shared" / "outer.cuh").write_text('#pragma once\n#include "inner.cuh"\n' + kernel.format("outer"))
    (tmp_path / "op" / "inner.cuh").write_text("#pragma once\n" + kernel.format("shadowing"))  # not reached
    dirs = [tmp_path / "op", tmp_path / "shared"]
    text = ('#include "outer.cuh"\n#include "inner.cuh"\n// #include "commented_out.cuh"\n#include "missing.cuh"\n'
            + kernel.format("own"))
    # outer.cuh's "inner.cuh" is its own folder's (as the compilers look); the source's second include of it
    # finds op/inner.cuh first, a different file, so it is read too.
    assert [name for name, _ in sources.included_headers(text, dirs)] == ["inner.cuh", "outer.cuh", "inner.cuh"]
    assert sources.unit_kernels(text, dirs) == ["inner", "outer", "shadowing", "own"]
    assert sources.unit_kernels('#include "outer.cuh"\n' + kernel.format("own"), dirs) == ["inner", "outer", "own"]
    assert sources.unit_kernel_parameters(text, dirs)["outer"] == ["y"]
    overridden = {"outer.cuh": kernel.format("replacement")}
    assert sources.unit_kernels('#include "outer.cuh"\n', dirs, overridden) == ["replacement"]
    with pytest.raises(ValueError, match="kernel 'outer' is defined twice"):
        sources.unit_kernels('#include "outer.cuh"\n' + kernel.format("outer"), dirs)
    (tmp_path / "shared" / "bad.cuh").write_text('extern "C" __global__ void k(float* y) { y[0] = 1.0f; }\n')
    with pytest.raises(ValueError, match=r"bad.cuh: line 1: a kernel must be 'template <typename T>"):
        sources.unit_kernels('#include "bad.cuh"\n', dirs)


def test_the_shared_headers_own_the_shared_kernels():
    for header, names in [("reduce.cuh", {"column_sums_partial", "column_sums_finish", "sum_slices"}),
                          ("gemm.cuh", {"matmul", "shift_states"})]:
        assert set(sources.kernels((sources.CUDA_DIR / header).read_text())) == names
    for op in ("dense", "conv2d", "rnn", "lstm"):
        assert {"column_sums_partial", "column_sums_finish", "sum_slices"} <= set(sources.source_kernels(
            sources.op_source(op)))
    assert sources.source_kernels(sources.op_source("activations")) == sources.kernels(
        sources.op_source("activations").read_text())  # common.cuh defines no kernel
    assert sources.convention_problems(sources.COMMON_HEADER.read_text()) == []  # TK_DYNAMIC_SHARED's definition


def _check_text(tmp_path, text, arch="compute_80"):
    folder = tmp_path / "probe"
    folder.mkdir(exist_ok=True)
    cu = folder / "probe.cu"
    cu.write_text(text)
    return compile_check.check_file(cu, arch)


def test_a_warning_fails_the_check(tmp_path):
    text = '#include "common.cuh"\ntemplate <typename T>\n__global__ void k(T* y) { int unused = 0; y[0] = T(1); }\n'
    with pytest.raises(compile_check.CompileError, match=r"(?s)warnings count as failures.*#177-D.*unused"):
        _check_text(tmp_path, text)


def test_an_error_fails_the_check(tmp_path):
    text = "template <typename T>\n__global__ void k(T* y) { y[0] = T(1) }\n"
    with pytest.raises(compile_check.CompileError, match=r"(?s)probe.cu \(compute_80\) does not compile.*error: expected a \";\""):
        _check_text(tmp_path, text)


def test_a_template_error_shows_only_when_instantiated(tmp_path):
    # Without the name expressions NVRTC would accept this: T::missing is only checked per instantiation.
    text = "template <typename T>\n__global__ void k(T* y) { y[0] = T::missing; }\n"
    with pytest.raises(compile_check.CompileError, match="error"):
        _check_text(tmp_path, text)


@pytest.mark.parametrize("text,words", [
    ('extern "C" __global__ void k(float* y) { y[0] = 1.0f; }\n', "a kernel must be 'template <typename T>"),
    ("template <typename T>\n__global__ void k(T* y) { extern __shared__ T s[]; y[0] = s[0]; }\n",
     "TK_DYNAMIC_SHARED"),
    ("#include <cmath>\ntemplate <typename T>\n__global__ void k(T* y) { y[0] = T(1); }\n", "no standard headers"),
])
def test_convention_breaches_fail_the_check(tmp_path, text, words):
    with pytest.raises(compile_check.CompileError, match=re.escape(words)):
        _check_text(tmp_path, text)


def test_a_convention_breach_in_an_included_header_fails_the_check(tmp_path):
    folder = tmp_path / "probe"
    folder.mkdir()
    (folder / "helpers.cuh").write_text("template <typename T>\n__global__ void k(T* y) { extern __shared__ T s[]; }\n")
    with pytest.raises(compile_check.CompileError, match=r"helpers.cuh: line 2: declare dynamic shared memory"):
        _check_text(tmp_path, '#include "helpers.cuh"\n')


def test_kernel_parsing():
    text = """
    // template <typename T> __global__ void commented_out(T* y) {}
    template <typename T>
    __global__ void __launch_bounds__(256) first(const T* __restrict__ x, T* y, long long n) {}
    template <class U> __global__ void second(U* y /* the output */, int flag) {}
    """
    assert sources.kernels(text) == ["first", "second"]
    assert sources.kernel_parameters(text) == {"first": ["x", "y", "n"], "second": ["y", "flag"]}
    assert sources.name_expressions(text) == ["first<float>", "first<double>", "second<float>", "second<double>"]


def test_command_line_reports_each_file_and_architecture(tmp_path, capsys):
    good, bad = tmp_path / "good.cu", tmp_path / "bad.cu"
    good.write_text("template <typename T>\n__global__ void k(T* y) { y[0] = T(1); }\n")
    bad.write_text("template <typename T>\n__global__ void k(T* y) { y[0] = T(1) }\n")
    assert compile_check.main([str(good)]) == 0
    assert capsys.readouterr().out.count("ok ") == len(compile_check.ARCHITECTURES)
    assert compile_check.main([str(good), str(bad)]) == 1
    assert capsys.readouterr().out.count("FAIL") == len(compile_check.ARCHITECTURES)


def test_clean_compiles_are_cached_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv(compile_check.CACHE_ENV, str(tmp_path / "cache"))
    folder = tmp_path / "op"
    folder.mkdir()
    cu = folder / "op.cu"
    cu.write_text("template <typename T>\n__global__ void k(T* y) { y[0] = T(1); }\n")
    first = compile_check.check_file(cu, "compute_80")
    assert len(list((tmp_path / "cache").iterdir())) == 2  # the PTX and the lowered names
    again = compile_check.check_file(cu, "compute_80")
    assert again.lowered_names == first.lowered_names and again.ptx == first.ptx
    cu.write_text("template <typename T>\n__global__ void k(T* y) { int unused = 0; y[0] = T(1); }\n")
    with pytest.raises(compile_check.CompileError, match="warning"):  # new content: compiled, not looked up
        compile_check.check_file(cu, "compute_80")
    monkeypatch.setenv(compile_check.CACHE_ENV, "off")
    cu.write_text("template <typename T>\n__global__ void k(T* y) { y[0] = T(2); }\n")
    compile_check.check_file(cu, "compute_80")
    assert len(list((tmp_path / "cache").iterdir())) == 2  # nothing written when the cache is off
