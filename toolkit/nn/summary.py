"""Keras-like model summaries: a dict (for tests and programs), plain text, and a rich Table."""

from __future__ import annotations

from typing import Any

from .base import format_shape


def as_text(info: dict[str, Any]) -> str:
    """Plain-text summary in Keras 2's layout."""
    rows = [(f"{row['name']} ({row['type']})", format_shape(row["output_shape"]), f"{row['params']:,}")
            for row in info["layers"]]
    head = ("Layer (type)", "Output Shape", "Param #")
    widths = [max(len(r[i]) for r in [head, *rows]) + 3 for i in range(3)]
    line = "".join(cell.ljust(w) for cell, w in zip(head, widths)).rstrip()
    rule = "=" * sum(widths)
    out = [f'Model: "{info["name"]}"', rule, line, rule]
    out += ["".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    out += [rule, *totals_lines(info)]
    return "\n".join(out)


def totals_lines(info: dict[str, Any]) -> list[str]:
    return [f"Total params: {info['total_params']:,} ({_size(info['total_bytes'])})",
            f"Trainable params: {info['trainable_params']:,}",
            f"Non-trainable params: {info['non_trainable_params']:,}"]


def _size(n_bytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.2f} {unit}" if unit != "B" else f"{n_bytes} B"
        n_bytes /= 1024
    return ""  # unreachable


def as_table(info: dict[str, Any]) -> Any:
    """A rich Table (rendered by rich.console.Console().print), the totals in its caption."""
    from rich.table import Table

    table = Table(title=f'Model: "{info["name"]}"', caption="\n".join(totals_lines(info)),
                  caption_justify="left")
    table.add_column("Layer (type)", style="cyan")
    table.add_column("Output Shape", style="magenta")
    table.add_column("Param #", justify="right", style="green")
    for row in info["layers"]:
        table.add_row(f"{row['name']} ({row['type']})", format_shape(row["output_shape"]), f"{row['params']:,}")
    return table
