"""``python -m worked_examples`` (also the ``worked-examples`` console script).

    python -m worked_examples                 table of topics
    python -m worked_examples <topic>         one topic, step by step
    python -m worked_examples --all           every topic
    python -m worked_examples errata          every place the notes disagree with the computation
    options: --backend cpu|gpu|auto, --json (machine-readable), --plain (no colour)

Exit codes: 0 done; 2 usage error (unknown topic, GPU asked for where none works);
3 a topic needs a toolkit operation that is not built yet.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from typing import Any, Sequence

from rich import box
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from toolkit import backend

from . import render
from .claims import REGISTRY
from .documents import DOCUMENTS, SHORT
from .example import Example
from .runner import TopicUnavailable, errata, missing, run_all, run_topic
from .topics import TOPICS

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m worked_examples",
        description="The numbers of the course notes, recomputed by the toolkit step by step, each next to "
                    "the value the notes print.",
        epilog="Topics: " + ", ".join(TOPICS) + ". 'errata' lists every place the notes disagree with the "
               "computation.")
    p.add_argument("topic", nargs="?", help="a topic name, or 'errata'; leave out for the table of topics")
    p.add_argument("--all", action="store_true", help="run every topic")
    p.add_argument("--backend", choices=backend.CHOICES, help="where the toolkit computes (default: cpu, "
                   f"or ${backend.ENV_VAR})")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.add_argument("--plain", action="store_true", help="no colour (pipes, screen readers)")
    return p


def _emit_json(payload: Any) -> None:
    json.dump(payload, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _topics_payload() -> list[dict]:
    rows = []
    for name, t in TOPICS.items():
        rows.append({"name": name, "title": t.title, "summary": t.summary, "documents": list(t.documents),
                     "claims": len(REGISTRY.for_topic(name)), "unavailable": missing(t) or None})
    return rows


def _print_topics(console) -> None:
    table = Table(title="Worked examples: python -m worked_examples <topic>", title_justify="left",
                  box=box.ASCII2 if console.no_color else box.SIMPLE_HEAD, header_style="bold", expand=True)
    table.add_column("topic", style="bold cyan", no_wrap=True)
    table.add_column("what it computes", ratio=1)
    table.add_column("from", no_wrap=True)
    for row in _topics_payload():
        summary = row["summary"] + (f" [needs: {'; '.join(row['unavailable'])}]" if row["unavailable"] else "")
        table.add_row(row["name"], Text(summary), " ".join(SHORT[d] for d in row["documents"]))
    console.print(table)
    docs = Table.grid(padding=(0, 1))
    docs.add_column(style="bold", no_wrap=True)
    docs.add_column(style="dim")
    for name, description in DOCUMENTS.items():
        docs.add_row(SHORT[name], f"{name}: {description}")
    console.print(docs)


def _print_example(console, ex: Example) -> None:
    t = ex.topic
    console.print(Rule(Text(t.name, style="bold")))
    console.print(Text(t.title, style="bold"))
    console.print(Text("from " + ", ".join(f"{d} ({DOCUMENTS[d]})" for d in t.documents), style="dim"))
    for block in ex.blocks:
        console.print(block)
    console.print(render.summary_table(ex.results, console.no_color))


def _print_errata(console, examples: list[Example]) -> None:
    found = errata(examples)
    console.print(Rule(Text(f"Errata: {len(found)} place(s) where the notes disagree with the computation",
                            style="bold")))
    for r in found:
        console.print(render.claim_block(r, r.claim.id))


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name, list(TOPICS) + ["errata"], n=3, cutoff=0.4)
    return ("did you mean: " + ", ".join(close) + "?") if close else "topics: " + ", ".join(TOPICS)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    err = render.make_console(plain=True, file=sys.stderr)

    def fail(message: str, code: int) -> int:
        err.print(Text(f"worked_examples: {message}"))  # Text: '.[gpu]' in a message is not markup
        return code

    if args.topic and args.topic != "errata" and args.topic not in TOPICS:
        return fail(f"unknown topic {args.topic!r}; {_suggest(args.topic)}", EXIT_USAGE)
    if args.topic and args.all:
        return fail("give a topic or --all, not both", EXIT_USAGE)
    try:
        selection = backend.use(args.backend) if args.backend else None
    except backend.BackendError as exc:
        return fail(f"--backend {args.backend}: {exc}", EXIT_USAGE)
    try:
        return _run(args, fail)
    finally:
        if selection is not None:
            selection.__exit__(None, None, None)  # leave the caller's backend as it was


def _run(args: argparse.Namespace, fail) -> int:
    console = render.make_console(plain=args.plain)

    if args.topic == "errata" or args.all:
        examples, skipped = run_all(plain=args.plain)
        if args.json:
            payload = {"backend": backend.current(), "skipped": skipped}
            if args.topic == "errata":
                payload["errata"] = [r.as_json() for r in errata(examples)]
            else:
                payload["topics"] = [ex.as_json() for ex in examples]
            _emit_json(payload)
        elif args.topic == "errata":
            _print_errata(console, examples)
        else:
            for ex in examples:
                _print_example(console, ex)
            console.print(render.summary_table([r for ex in examples for r in ex.results], args.plain))
        for name, why in skipped.items():
            fail(f"skipped topic {name!r}: {why}", EXIT_UNAVAILABLE)
        return EXIT_UNAVAILABLE if skipped else 0

    if args.topic:
        try:
            ex = run_topic(args.topic, plain=args.plain)
        except TopicUnavailable as exc:
            return fail(str(exc), EXIT_UNAVAILABLE)
        if args.json:
            _emit_json({"backend": backend.current(), "topics": [ex.as_json()]})
        else:
            _print_example(console, ex)
        return 0

    if args.json:
        _emit_json({"topics": _topics_payload(), "documents": DOCUMENTS})
    else:
        _print_topics(console)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
