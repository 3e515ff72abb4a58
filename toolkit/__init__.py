"""nn-toolkit: every operation of the course notes, forward and backward, on CPU (Numba) and GPU (CuPy).

    import toolkit
    toolkit.backend.use("cpu")           # or "gpu" / "auto"; also TOOLKIT_BACKEND=...
    from toolkit.ops.activations import sigmoid_forward, activation_backward
"""

from . import backend, threads, validate

threads.select()  # Numba's threading layer must be chosen before any parallel kernel runs

__version__ = "0.1.0"
__all__ = ["backend", "threads", "validate", "__version__"]
