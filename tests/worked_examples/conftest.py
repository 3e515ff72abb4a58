"""Shared fixtures: every topic run once per test session on the CPU backend (they take a few seconds)."""

from __future__ import annotations

import pytest

from toolkit import backend
from worked_examples.runner import missing, run_all
from worked_examples.topics import TOPICS


@pytest.fixture(scope="session")
def examples():
    """{topic name: Example} for every topic whose toolkit operations exist, run in plain mode."""
    with backend.use("cpu"):
        done, _ = run_all(plain=True)
    return {ex.topic.name: ex for ex in done}


def require(name: str) -> None:
    """Skip (not fail) a test of a topic whose toolkit operation has not been written yet."""
    problems = missing(TOPICS[name])
    if problems:
        pytest.skip("; ".join(problems))
