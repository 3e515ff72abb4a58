"""The source documents the worked examples cite (the files in ``../shared/seeds/`` and the notes on them).

A claim names its document by file name, so that a reader can open the file and find the number.
"""

from __future__ import annotations

import os
from pathlib import Path

MODULE4_SUMMARY = "000_5f5da1a4f02e4420.txt"
KERAS_COURSE = "002_0182c46d31d795df.txt"
KERAS_COURSE_NOTES = "003_c859b29597cf7ad3.txt"
UNIVERSITY_MODULE = "004_dbdc799774d4d44b.txt"
FIGURE_FACTS = "NOTES.md"

# file name -> one-line description, in the order a reader meets them
DOCUMENTS: dict[str, str] = {
    MODULE4_SUMMARY: "IBM/Coursera Keras course, Module 4 summary",
    KERAS_COURSE: "IBM/Coursera Keras course, video transcripts",
    KERAS_COURSE_NOTES: "IBM/Coursera Keras course, study notes",
    UNIVERSITY_MODULE: "University module on deep learning (VESIT, Module 4)",
    FIGURE_FACTS: "Facts of the figures lost from the documents above",
}

SHORT = {MODULE4_SUMMARY: "000", KERAS_COURSE: "002", KERAS_COURSE_NOTES: "003",
         UNIVERSITY_MODULE: "004", FIGURE_FACTS: "NOTES"}

ENV_VAR = "WORKED_EXAMPLES_SOURCES"


def sources_dir() -> Path | None:
    """Where the documents live: $WORKED_EXAMPLES_SOURCES, else ../shared next to the repository, if present.

    The seeds sit in ``<shared>/seeds`` and NOTES.md in ``<shared>``. Only the tests read them (to
    prove that every printed value is quoted from its document); the topics never do.
    """
    configured = os.environ.get(ENV_VAR)
    candidates = [Path(configured)] if configured else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared")
    for path in candidates:
        if (path / "seeds").is_dir():
            return path
    return None


def document_path(name: str) -> Path | None:
    root = sources_dir()
    if root is None:
        return None
    path = root / name if name == FIGURE_FACTS else root / "seeds" / name
    return path if path.exists() else None
