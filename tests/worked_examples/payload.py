"""The --json format, checked field by field (used by the topic and CLI tests)."""

from __future__ import annotations

import json

from worked_examples.claims import REGISTRY
from worked_examples.documents import DOCUMENTS
from worked_examples.registry import STATUSES

TOPIC_KEYS = {"name", "title", "summary", "documents", "needs", "claims", "derivations", "plots"}
CLAIM_KEYS = {"id", "topic", "document", "section", "printed", "computed", "computed_text", "form", "kind",
              "tolerance", "abs_tolerance", "status", "detail", "reason", "note", "latex"}


def check_claim(c: dict) -> None:
    assert set(c) == CLAIM_KEYS, f"claim keys {sorted(c)}"
    registered = REGISTRY[c["id"]]
    assert c["printed"] == registered.printed and c["document"] == registered.document
    assert c["document"] in DOCUMENTS and c["section"] == registered.section
    assert c["status"] in STATUSES
    assert isinstance(c["tolerance"], str) and c["tolerance"]
    if c["form"] == "number":
        assert c["abs_tolerance"] is not None and c["abs_tolerance"] > 0
    assert isinstance(c["computed_text"], str) and c["computed_text"]
    assert isinstance(c["computed"], (float, int, list, str)) or (c["computed"] is None and c["kind"] == "illustrative")
    if c["status"] == "erratum":
        assert isinstance(c["reason"], str) and c["reason"]
    if c["form"] == "formula":
        assert isinstance(c["latex"], str) and c["latex"]


def check_topic(t: dict) -> None:
    assert set(t) == TOPIC_KEYS, f"topic keys {sorted(t)}"
    assert set(t["documents"]) <= set(DOCUMENTS)
    for c in t["claims"]:
        assert c["topic"] == t["name"]
        check_claim(c)
    assert sorted(c["id"] for c in t["claims"]) == sorted(c.id for c in REGISTRY.for_topic(t["name"]))
    for d in t["derivations"]:
        assert set(d) == {"title", "latex", "lhs_latex", "rhs_latex", "steps_latex", "symbolic_identity",
                          "spot_check", "note"}
        assert d["symbolic_identity"] is True and "=" in d["latex"]
        if d["spot_check"] is not None:
            assert d["spot_check"]["ok"] is True
            assert len(d["spot_check"]["symbolic"]) == len(d["spot_check"]["kernel"]) > 0


def check_payload(text: str) -> dict:
    payload = json.loads(text)
    assert payload["backend"] in ("cpu", "gpu")
    for t in payload["topics"]:
        check_topic(t)
    return payload
