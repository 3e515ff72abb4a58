"""One package per operation family: reference.py (NumPy oracle), cpu.py (Numba), gpu.py (CUDA),
and __init__.py with the public forward/backward functions that validate and dispatch."""
