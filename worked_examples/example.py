"""What a topic module writes into: ``Topic`` (its description) and ``Example`` (one run of it).

A topic module defines ``TOPIC = Topic(...)`` and ``run(ex: Example)``. ``run`` computes with the
toolkit's public functions and tells ``ex`` what to show::

    ex.inputs("The neuron", [("x", x, "004, worked example"), ...])
    ex.steps("Net input", [Step("y_in = b + Σ xᵢwᵢ", "0.35 + ...", y_in)])
    ex.claim("activations.net-input", y_in, label="net input y_in")      # judged against the registry
    ex.derivation("sigmoid derivative", lhs, rhs, spot=spot_check(...))  # SymPy + kernel
    ex.plot("Activations", [("sigmoid", xs, ys)], xlabel="x")

Each call appends a rich block (shown by the CLI) and records what ``--json`` exports. ``finish``
fails when a claim registered for the topic was never checked, so no registry entry goes untested.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from rich.console import RenderableType

from . import render
from .plotting import plot_panel
from .registry import ClaimResult, Registry, RegistryError, evaluate
from .symbolic import Derivation, SpotCheck, derive

Step = render.Step


@dataclass(frozen=True)
class Topic:
    name: str  # what the learner types: python -m worked_examples <name>
    title: str
    summary: str  # one line for the table of topics
    documents: tuple[str, ...]  # the seed files (and NOTES.md) it recomputes
    needs: tuple[str, ...]  # toolkit.ops families it calls
    order: int  # position in the table of topics


class Example:
    def __init__(self, topic: Topic, registry: Registry, *, plain: bool = False):
        self.topic = topic
        self.registry = registry
        self.plain = plain
        self.blocks: list[RenderableType] = []
        self.results: list[ClaimResult] = []
        self.derivations: list[Derivation] = []
        self.plots: list[str] = []
        self._checked: set[str] = set()

    # ------------------------------------------------------------------ text
    def section(self, title: str, text: str | None = None) -> None:
        self.blocks.append(render.heading(title))
        if text:
            self.blocks.append(render.paragraph(text))

    def text(self, text: str) -> None:
        self.blocks.append(render.paragraph(text))

    def inputs(self, title: str, rows: Sequence[tuple[str, Any, str]]) -> None:
        self.blocks.append(render.input_panel(title, rows, self.plain))

    def steps(self, title: str, steps: Sequence[Step]) -> None:
        self.blocks.append(render.step_table(title, steps, self.plain))

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.blocks.append(render.data_table(title, columns, rows, self.plain))

    # ------------------------------------------------------------------ claims
    def _own(self, claim_id: str):
        claim = self.registry[claim_id]
        if claim.topic != self.topic.name:
            raise RegistryError(f"claim {claim_id!r} belongs to topic {claim.topic!r}, not {self.topic.name!r}")
        return claim

    def claim(self, claim_id: str, computed: Any, *, label: str | None = None,
              namespace: Mapping[str, Any] | None = None) -> ClaimResult:
        """Judge a computed value against the printed one (status match / erratum / illustrative)."""
        claim = self._own(claim_id)
        if claim_id in self._checked:
            raise RegistryError(f"claim {claim_id!r} is checked twice in topic {self.topic.name!r}")
        self._checked.add(claim_id)
        result = evaluate(claim, computed, namespace)
        self.results.append(result)
        self.blocks.append(render.claim_block(result, label or claim_id))
        return result

    def printed_input(self, claim_id: str) -> np.ndarray:
        """The numbers of an *illustrative* claim, for use as inputs (the notes give them as an example).

        Reading them from the registry keeps printed values out of topic modules.
        """
        claim = self._own(claim_id)
        if claim.kind != "illustrative":
            raise RegistryError(f"claim {claim_id!r} is a result; only illustrative values may be used as inputs")
        return claim.values()

    # ------------------------------------------------------------------ derivations and plots
    def derivation(self, title: str, lhs: Any, rhs: Any, spot: SpotCheck | None = None, *, note: str = "",
                   steps: Sequence[Any] = ()) -> Derivation:
        d = derive(title, lhs, rhs, spot, note=note, steps=steps)
        self.derivations.append(d)
        self.blocks.append(render.derivation_panel(d, self.plain))
        return d

    def plot(self, title: str, series: Sequence[tuple[str, Any, Any]], *, xlabel: str = "", ylabel: str = "",
             height: int = 16) -> None:
        """A terminal plot of each (label, x, y), one glyph per series, the legend underneath."""
        self.plots.append(title)
        self.blocks.append(plot_panel(title, series, xlabel=xlabel, ylabel=ylabel, plain=self.plain, height=height))

    # ------------------------------------------------------------------ end of run
    def finish(self) -> None:
        expected = {c.id for c in self.registry.for_topic(self.topic.name)}
        missing = sorted(expected - self._checked)
        if missing:
            raise RegistryError(f"topic {self.topic.name!r} never checked its claims: {', '.join(missing)}")

    def as_json(self) -> dict:
        t = self.topic
        return {
            "name": t.name, "title": t.title, "summary": t.summary, "documents": list(t.documents),
            "needs": list(t.needs),
            "claims": [r.as_json() for r in self.results],
            "derivations": [d.as_json() for d in self.derivations],
            "plots": list(self.plots),
        }
