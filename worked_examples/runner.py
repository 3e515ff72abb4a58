"""Running topics: availability of the toolkit operations they need, one run, all runs, the errata."""

from __future__ import annotations

import importlib
import importlib.util
from functools import lru_cache

from toolkit import backend

from .claims import REGISTRY
from .example import Example, Topic
from .registry import ClaimResult
from .topics import MODULES, TOPICS


class TopicUnavailable(RuntimeError):
    """A topic needs a toolkit operation that is not built (or does not import) yet."""


@lru_cache(maxsize=None)
def op_problem(op: str, device: str = "cpu") -> str | None:
    """Why toolkit.ops.<op> cannot be used on ``device``, or None when it can."""
    try:
        importlib.import_module(f"toolkit.ops.{op}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith(f"toolkit.ops.{op}"):
            return f"toolkit.ops.{op} is not built yet"
        return f"toolkit.ops.{op} does not import: {exc}"
    except Exception as exc:  # a half-written module: say so rather than crash the table
        return f"toolkit.ops.{op} does not import: {type(exc).__name__}: {exc}"
    if device == "gpu" and importlib.util.find_spec(f"toolkit.ops.{op}.gpu") is None:
        return f"toolkit.ops.{op} has no GPU kernels yet (toolkit/ops/{op}/gpu.py)"
    return None


def missing(topic: Topic) -> list[str]:
    """What keeps ``topic`` from running on the backend in use (empty when nothing does)."""
    return [p for p in (op_problem(op, backend.current()) for op in topic.needs) if p]


def run_topic(name: str, *, plain: bool = False) -> Example:
    topic = TOPICS[name]
    problems = missing(topic)
    if problems:
        raise TopicUnavailable(f"topic {name!r} cannot run: " + "; ".join(problems))
    ex = Example(topic, REGISTRY, plain=plain)
    MODULES[name].run(ex)
    ex.finish()
    return ex


def run_all(*, plain: bool = False) -> tuple[list[Example], dict[str, str]]:
    """Every topic that can run, and for the others why not."""
    done, skipped = [], {}
    for name, topic in TOPICS.items():
        problems = missing(topic)
        if problems:
            skipped[name] = "; ".join(problems)
            continue
        done.append(run_topic(name, plain=plain))
    return done, skipped


def errata(examples: list[Example]) -> list[ClaimResult]:
    return [r for ex in examples for r in ex.results if r.status == "erratum"]
