"""Every op's CUDA module on a real GPU: CuPy compiles each .cu and every kernel instantiation loads, the
kernels of the shared headers it includes (toolkit/cuda/reduce.cuh, gemm.cuh) among them.

Deselected by default (pyproject: -m 'not gpu'). On a machine with a GPU:

    python -m pytest -m gpu tests/cuda/test_gpu_modules.py
"""

import pytest

from toolkit.cuda import modules, sources

cp = pytest.importorskip("cupy")
pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("path", sources.cu_files(), ids=lambda p: p.parent.name)
def test_every_kernel_instantiation_loads(path):
    module = modules.module(path.parent.name)
    for expression in sources.source_name_expressions(path):
        assert module.get_function(expression) is not None
