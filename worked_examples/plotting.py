"""Terminal plots (plotext) inside rich panels.

plotext draws into one module-wide figure, so every plot starts by clearing it; its output is an
ANSI string that ``Text.from_ansi`` turns into rich text. In plain mode the plot is drawn with the
colourless theme and no escape codes at all.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import plotext
from rich import box
from rich.console import Group
from rich.panel import Panel
from rich.text import Text

from .render import WIDTH

PLOT_WIDTH = WIDTH - 4  # the panel's border and padding take 4 columns
# One glyph per series, so the curves stay apart without colour (--plain, colour-blind readers).
MARKERS = ("•", "+", "x", "o", "*", "#")


def plot_text(series: Sequence[tuple[str, Any, Any]], *, xlabel: str = "", ylabel: str = "",
              plain: bool = False, height: int = 16, width: int = PLOT_WIDTH) -> str:
    """The curves (x, y) of each series as a string, ANSI-coloured unless plain; no legend (see plot_panel)."""
    if len(series) > len(MARKERS):
        raise ValueError(f"at most {len(MARKERS)} series per plot; got {len(series)}")
    fig = plotext.figure
    fig.clear.all()
    fig.plot_size(width, height)
    fig.theme("colorless" if plain else "simple")
    for (_, x, y), marker in zip(series, MARKERS):
        xs = np.asarray(x, dtype=np.float64).ravel().tolist()
        ys = np.asarray(y, dtype=np.float64).ravel().tolist()
        fig.draw(fig.signal(xs, ys, marker=marker).lines())
    if xlabel:
        fig.label(xlabel, axis="x")
    if ylabel:
        fig.label(ylabel, axis="y")
    text = fig.build().string(colorless=plain)
    fig.clear.all()
    return text.rstrip()


def legend(series: Sequence[tuple[str, Any, Any]]) -> str:
    """'• first   + second ...': the glyph of each series and its label, printed under the plot."""
    return "   ".join(f"{marker} {label}" for (label, _, _), marker in zip(series, MARKERS))


def plot_panel(title: str, series: Sequence[tuple[str, Any, Any]], *, xlabel: str = "", ylabel: str = "",
               plain: bool = False, height: int = 16) -> Panel:
    """The plot in a rich panel, its legend below it (a legend drawn inside would hide the curves)."""
    text = plot_text(series, xlabel=xlabel, ylabel=ylabel, plain=plain, height=height)
    body = Text(text) if plain else Text.from_ansi(text)
    return Panel(Group(body, Text(legend(series), style="bold")), title=Text(title), title_align="left",
                 box=box.ASCII if plain else box.ROUNDED, width=WIDTH, padding=(0, 1))
