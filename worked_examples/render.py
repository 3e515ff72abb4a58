"""Rich building blocks of a worked example: inputs, step tables, claim lines, derivations.

Everything here fits an 80-column terminal. Colour carries no meaning on its own: every status is
also a word (MATCH / ERRATUM / EXAMPLE), so ``--plain`` output (no colour) reads the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import sympy as sp
from rich import box
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .documents import SHORT
from .registry import ClaimResult
from .symbolic import Derivation

WIDTH = 80
STATUS_STYLE = {"match": "bold green", "erratum": "bold red", "illustrative": "bold yellow"}
STATUS_WORD = {"match": "MATCH", "erratum": "ERRATUM", "illustrative": "EXAMPLE"}


def make_console(*, plain: bool = False, record: bool = False, file: Any = None) -> Console:
    """An 80-column console; ``plain``: no colour, no terminal control codes (pipes, screen readers)."""
    if plain:
        return Console(width=WIDTH, no_color=True, force_terminal=False, color_system=None, highlight=False,
                       emoji=False, record=record, file=file, soft_wrap=False)
    # On a terminal use its width up to 80; elsewhere (pipes, tests) exactly 80.
    probe = Console(file=file)
    width = min(WIDTH, probe.width) if probe.is_terminal else WIDTH
    return Console(width=width, highlight=False, emoji=False, record=record, file=file)


def fmt(value: Any, digits: int = 6) -> str:
    """A number or array as a learner reads it: 6 significant digits, no trailing noise."""
    if isinstance(value, str):
        return value
    if isinstance(value, (sp.Basic,)):
        return sp.sstr(value)
    a = np.asarray(value)
    if a.ndim == 0:
        v = a.item()
        if isinstance(v, (bool, np.bool_)):
            return str(v)
        if isinstance(v, (int, np.integer)):
            return str(v)
        return f"{float(v) + 0.0:.{digits}g}"  # + 0.0: print -0.0 as 0
    if a.ndim == 1:
        return "[" + ", ".join(fmt(v, digits) for v in a) + "]"
    if a.ndim == 2:  # a matrix: one row per line
        return "\n".join(fmt(row, digits) for row in a)
    return "[" + ", ".join(fmt(row, digits) for row in a) + "]"


def _t(value: Any, style: str = "") -> Text:
    """Text, never markup: '[b; W]' in a header must print as written, not vanish as a style tag."""
    return Text(value if isinstance(value, str) else fmt(value), style=style)


def _table(title: str | None, plain: bool, **kwargs: Any) -> Table:
    return Table(title=_t(title, "bold") if title else None, title_justify="left",
                 box=box.ASCII2 if plain else box.SIMPLE_HEAD, header_style="bold", expand=False,
                 min_width=min(WIDTH, len(title or "")), **kwargs)


def heading(text: str) -> Text:
    return Text(f"\n{text}", style="bold underline")


def paragraph(text: str) -> Text:
    return Text(text)


def input_panel(title: str, rows: Sequence[tuple[str, Any, str]], plain: bool) -> Panel:
    """The inputs of a computation: name, value, where it comes from."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold cyan", no_wrap=True)
    grid.add_column(no_wrap=False)
    grid.add_column(style="dim")
    for name, value, source in rows:
        grid.add_row(_t(name), _t(value), _t(source))
    return Panel(grid, title=_t(title), title_align="left", box=box.ASCII if plain else box.ROUNDED, width=WIDTH)


@dataclass
class Step:
    expression: str  # the formula, in words or symbols
    substituted: str  # the same with the values written in
    result: Any  # what the toolkit computed


def step_table(title: str, steps: Sequence[Step], plain: bool) -> Table:
    table = _table(title, plain)
    table.add_column("expression", style="cyan", ratio=3)
    table.add_column("with the values", ratio=4)
    table.add_column("toolkit", justify="right", style="bold", ratio=2)
    for s in steps:
        table.add_row(_t(s.expression), _t(s.substituted), _t(s.result))
    return table


def data_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], plain: bool) -> Table:
    table = _table(title, plain)
    for i, c in enumerate(columns):
        table.add_column(_t(c), justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*[_t(v) for v in row])
    return table


def claim_block(result: ClaimResult, label: str) -> Table:
    """One claim: status word, what it is, printed vs computed, where it is printed (and why not, if not)."""
    c = result.claim
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=8, no_wrap=True)
    grid.add_column(ratio=1)
    grid.add_row(Text(STATUS_WORD[result.status], style=STATUS_STYLE[result.status]), Text(label, style="bold"))
    values = Text()
    values.append("notes ")
    values.append(c.printed, style="bold")
    values.append("  computed ")
    values.append(result.computed_text, style="bold")
    values.append(f"  ({c.precision_text()})", style="dim")
    grid.add_row("", values)
    grid.add_row("", Text(f"{SHORT.get(c.document, c.document)} · {c.section}", style="dim"))
    if result.status == "erratum":
        grid.add_row("", Text(f"why: {c.reason or 'NO REASON STORED: investigate'}", style="red"))
    elif c.note:
        grid.add_row("", Text(f"note: {c.note}", style="dim"))
    return grid


def derivation_panel(d: Derivation, plain: bool) -> Panel:
    """sympy.pretty of lhs = rhs, the symbolic check, and the spot check against the kernel."""
    parts: list[RenderableType] = []
    forms = [d.lhs, *d.steps, d.rhs]
    for i, form in enumerate(forms):
        lead = "  " if i == 0 else "= "
        text = sp.pretty(form, use_unicode=True, num_columns=WIDTH - 8)
        lines = text.split("\n")
        mid = len(lines) // 2
        parts.append(Text("\n".join((lead if j == mid else "  ") + line for j, line in enumerate(lines))))
    parts.append(Text("✔ simplify((lhs - rhs).rewrite(exp)) == 0", style="green"))
    if d.spot is not None:
        s = d.spot
        parts.append(Text(f"✔ toolkit kernel = SymPy at {len(s.points)} points (largest |difference| {s.difference_text()}, "
                          f"tolerance {s.atol:g} + {s.rtol:g}·|value|)", style="green"))
    if d.note:
        parts.append(Text(d.note, style="dim"))
    return Panel(Group(*parts), title=_t(f"derivation: {d.title}"), title_align="left",
                 box=box.ASCII if plain else box.ROUNDED, width=WIDTH)


def summary_table(results: Sequence[ClaimResult], plain: bool) -> Table:
    counts = {s: sum(r.status == s for r in results) for s in STATUS_WORD}
    table = _table("claims", plain)
    for s in STATUS_WORD:
        table.add_column(STATUS_WORD[s], justify="right")
    table.add_row(*[str(counts[s]) for s in STATUS_WORD])
    return table
