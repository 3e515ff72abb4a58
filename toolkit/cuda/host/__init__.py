"""Run CUDA kernels on the CPU for tests: cuda_host.h (the compatibility header) and harness.py."""
