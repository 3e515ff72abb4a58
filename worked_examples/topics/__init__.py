"""The topics: one module each, found automatically.

A topic module defines ``TOPIC`` (a ``worked_examples.example.Topic``) and ``run(ex)``. Add a
module here (and its claims in ``worked_examples/claims/``) and it appears in the CLI.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from ..example import Topic


def _discover() -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        topic = getattr(module, "TOPIC", None)
        if not isinstance(topic, Topic) or not callable(getattr(module, "run", None)):
            raise TypeError(f"topic module {module.__name__} must define TOPIC = Topic(...) and run(ex)")
        if topic.name in found:
            raise ValueError(f"two topic modules are named {topic.name!r}")
        found[topic.name] = module
    return dict(sorted(found.items(), key=lambda item: (item[1].TOPIC.order, item[0])))


MODULES: dict[str, ModuleType] = _discover()
TOPICS: dict[str, Topic] = {name: module.TOPIC for name, module in MODULES.items()}
