"""The rendered text of two topics, exactly as a learner sees it in an 80-column terminal (--plain).

Set WORKED_EXAMPLES_UPDATE_SNAPSHOTS=1 to rewrite the snapshots after a deliberate change, and
review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worked_examples import __main__ as cli
from worked_examples.render import make_console

from .conftest import require

SNAPSHOTS = Path(__file__).parent / "snapshots"
# Compared character for character: the text must be the same on every machine. A rounding-level
# difference is rendered as a bound (symbolic.difference_text), never as its last-bit digits, and
# tests/test_portability.py runs this test under each OpenBLAS kernel the CPU supports.
pytestmark = pytest.mark.portability


@pytest.mark.parametrize("name", ["forward-pass", "perceptron"])
def test_rendered_text_is_unchanged(name, examples):
    require(name)
    console = make_console(plain=True, record=True, file=open(os.devnull, "w"))
    cli._print_example(console, examples[name])
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("WORKED_EXAMPLES_UPDATE_SNAPSHOTS") == "1" or not path.exists():
        path.write_text(text, encoding="utf-8")
        if not os.environ.get("WORKED_EXAMPLES_UPDATE_SNAPSHOTS"):
            pytest.fail(f"no snapshot for {name} yet: wrote {path}; review it and run again")
    assert text == path.read_text(encoding="utf-8"), f"the rendering of {name} changed (see {path})"
