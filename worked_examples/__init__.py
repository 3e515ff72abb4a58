"""Worked examples: every number of the course notes recomputed by the toolkit, derived in SymPy, shown with rich.

    python -m worked_examples                  # table of topics
    python -m worked_examples activations      # one topic, step by step
    python -m worked_examples errata           # where the notes and the computation disagree

Layout: ``registry.py`` (what a claim is and how it is judged), ``claims/`` (the printed values,
one module per topic: the only place they are written), ``topics/`` (one module per topic: the
computation, with the toolkit), ``example.py`` (what a topic writes into), ``render.py`` and
``plotting.py`` (rich and plotext), ``symbolic.py`` (SymPy checks), ``__main__.py`` (the CLI).
See README.md for adding a topic.
"""

from .example import Example, Step, Topic
from .registry import Claim, ClaimResult

__all__ = ["Claim", "ClaimResult", "Example", "Step", "Topic"]
