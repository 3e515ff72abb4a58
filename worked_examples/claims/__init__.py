"""The registry of printed values: one module per topic, each defining ``CLAIMS``, collected here.

This package is the only place in worked_examples where a printed textbook value may be written.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..registry import Claim, Registry


def _collect() -> list[Claim]:
    claims: list[Claim] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        claims.extend(module.CLAIMS)
    return claims


REGISTRY = Registry(_collect())
