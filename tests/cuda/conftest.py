"""Fixtures of the CUDA tests: host-harness targets (no GPU needed), the g++ requirement, a CuPy stand-in
for the public GPU path, and the GPU requirement of the tests marked ``gpu``."""

import shutil

import pytest

from tests.cuda import fakes
from toolkit import backend
from toolkit.cuda import sources
from toolkit.cuda.host import harness

# The host harness compiles the kernels with g++ (C++20); without a compiler there is nothing to run.
requires_cxx = pytest.mark.skipif(shutil.which("g++") is None, reason="the host harness needs g++ (C++20) on PATH")

ORDERS = ("forward", "reverse")
# The schedules every host test of an op runs under: threads (and blocks) in forward and in reverse order
# with the grid capped at 3 blocks (so grid-stride loops loop), and forward with an uncapped grid.
SCHEDULES = [("forward", harness.HOST_MAX_GRID_BLOCKS), ("reverse", harness.HOST_MAX_GRID_BLOCKS),
             ("forward", 1 << 20)]


def schedule_id(schedule):
    order, max_blocks = schedule
    return f"{order}-{'capped' if max_blocks < 100 else 'full'}"


def host_build(op):
    """A module-scoped fixture: the host build of toolkit/ops/<op>/<op>.cu (cached on disk by content).
    In a test module: ``dense_host = host_build("dense")``."""
    @pytest.fixture(scope="module")
    def fixture():
        return harness.load(op)

    return fixture


def scheduled_targets(build_fixture):
    """A module-scoped fixture parametrised by SCHEDULES: a launch target (for gpu.py's *_on functions) of the
    build that the fixture named ``build_fixture`` gives. In a test module:
    ``target = scheduled_targets("dense_host")``."""
    @pytest.fixture(scope="module", params=SCHEDULES, ids=schedule_id)
    def fixture(request):
        order, max_blocks = request.param
        return harness.target(request.getfixturevalue(build_fixture), order=order, max_grid_blocks=max_blocks)

    return fixture


def load_edited(op, old, new, *, header=None):
    """The host build of op's .cu with its one occurrence of ``old`` replaced by ``new`` (a deliberately broken
    copy: the tests' proof that they can fail), or with that edit in the project header named ``header``."""
    path = sources.op_source(op)
    edited = path if header is None else next(d / header for d in sources.include_dirs(path) if (d / header).is_file())
    text = edited.read_text()
    assert text.count(old) == 1, f"{edited.name} no longer holds exactly one {old!r}"
    if header is None:
        return harness.load_source(text.replace(old, new), name=str(path), include_from=path)
    return harness.load(op, headers={header: text.replace(old, new)})


@pytest.fixture(scope="session")
def activations_host():
    """The host build of activations.cu (built once, cached on disk by content)."""
    return harness.load("activations")


@pytest.fixture
def fake_cupy(monkeypatch):
    """A stand-in for CuPy (tests/cuda/fakes.py): NumPy arrays, and a RawModule that compiles the code it is
    given with the host harness instead of NVRTC. Enough to run an op's public gpu.forward/backward without a
    GPU; yields the RawModules created (check them with fakes.assert_compiled_once)."""
    yield fakes.install(monkeypatch)
    fakes.uninstall()


@pytest.fixture(autouse=True)
def _gpu_required(request):
    """Asking for the ``gpu`` tests where the GPU is not usable is an error (with the reason), not a skip."""
    if request.node.get_closest_marker("gpu") is None:
        return
    usable, reason = backend.gpu_status()
    if not usable:
        pytest.fail(f"the gpu tests need a usable GPU: {reason}")
