"""What every GPU op shares (see README.md in this folder).

* ``sources``: where the .cu files are and which kernels they define (the kernel convention).
* ``launch``: ``Target`` (array module + kernels), grid/block helpers, scalar casting (i32, i64, scalar).
* ``modules``: CuPy RawModule per .cu, compiled once per process; ``modules.target(op)``.
* ``compile_check``: NVRTC compile of every .cu for compute_80/compute_90, warnings are failures.
* ``host``: the host harness that runs the same .cu on the CPU for tests without a GPU.
* ``common.cuh``: device helpers every .cu includes (math in T, grid-stride loop, reductions).
* ``reduce.cuh`` / ``reduce``: kernels and launchers several ops share (column sums, split-k slice sums).
* ``gemm.cuh`` / ``gemm``: the tiled product of the recurrent layers (rnn, lstm) and its launchers.

Nothing here imports CuPy at import time.
"""
