"""Flatten on the CPU: the NumPy reference *is* the fast version, so this module reuses it.

Inputs arrive C-contiguous (toolkit.validate copies strided ones), and reshaping a C-contiguous array is
a change of metadata only: no element is read or written, so a Numba kernel could only add a copy.
"""

from __future__ import annotations

from .reference import FlattenCache, backward, forward

__all__ = ["FlattenCache", "forward", "backward"]
