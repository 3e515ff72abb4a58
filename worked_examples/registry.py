"""The claims registry: every number (or formula, or range) the notes print, and how a computed value is judged.

A ``Claim`` records what a document prints, exactly as printed, with where it is printed. Its
status is decided at run time by comparing what a topic *computed* with the toolkit:

* ``match``: the computed value equals the printed one at the printed precision. A value printed
  with d decimals matches when |computed - printed| <= 0.5 * 10**-d (so "0.6023" allows 0.00005,
  "8" allows 0.5); a claim may state its own absolute ``tolerance`` instead (numbers printed as
  "about"/"~": the reason is in ``tolerance_note``). Arrays match element by element, each element
  at its own printed precision ("7.10" has two decimals).
* ``erratum``: it does not match; the registry stores the reason (``reason``) next to the claim.
* ``illustrative``: the notes give the number as an example, not as a result (``kind``).

Three forms of claim:

* ``number``: one or more numbers in ``printed`` ("0.6023", "[[0.5, 1.6], [0.4, 1.7]]").
* ``range``: a set of values in interval/set notation ("(0, 1)", "[0, ∞)", "{0, 1}"), or in
  words ("0 to 1", "between -1 and +1": then only the two end points are compared).
* ``formula``: a printed formula; ``transcription`` is the same formula in SymPy syntax, and it
  matches when it is symbolically identical to the formula the topic derived.

The registry is the ONLY place printed values live: topics compute, never copy (a test parses every
topic module and fails on a printed value written as a literal).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import sympy as sp

KINDS = ("result", "illustrative")
FORMS = ("number", "range", "formula")
STATUSES = ("match", "erratum", "illustrative")

# a sign may stand apart from its number in a printed sum ("0.18 - 0.08")
_NUMBER = re.compile(r"(?:([-−+])\s*)?(\d+(?:\.\d+)?)")


class RegistryError(ValueError):
    """A claim is malformed, unknown, checked twice, never checked, or checked with the wrong shape."""


@dataclass(frozen=True)
class Claim:
    id: str  # "<topic>.<what>", unique
    topic: str  # the topic that computes it
    document: str  # file name in ../shared/seeds (or NOTES.md)
    section: str  # the heading it is printed under
    printed: str  # the value exactly as printed
    quote: str  # a verbatim excerpt of the document that contains the printed value (tests check it)
    kind: str = "result"
    form: str = "number"
    transcription: str | None = None  # formula claims: the printed formula in SymPy syntax
    tolerance: float | None = None  # absolute, replacing the printed precision
    tolerance_note: str = ""  # why an explicit tolerance (e.g. printed as "about")
    reason: str | None = None  # errata: why the print and the computation differ
    note: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise RegistryError(f"claim {self.id}: kind must be one of {KINDS}; got {self.kind!r}")
        if self.form not in FORMS:
            raise RegistryError(f"claim {self.id}: form must be one of {FORMS}; got {self.form!r}")
        if self.form == "formula" and not self.transcription:
            raise RegistryError(f"claim {self.id}: a formula claim needs a transcription in SymPy syntax")
        if self.form == "number" and self.kind == "result" and not self.numbers():
            raise RegistryError(f"claim {self.id}: printed value {self.printed!r} holds no number")
        if self.tolerance is not None and not (self.tolerance > 0 and self.tolerance_note):
            raise RegistryError(f"claim {self.id}: an explicit tolerance must be > 0 and say why (tolerance_note)")

    # ------------------------------------------------------------------ printed numbers
    def numbers(self) -> list[tuple[float, int]]:
        """(value, decimals) of every number in the printed string, in reading order."""
        found = []
        for sign, digits in _NUMBER.findall(self.printed.replace("$", "")):
            decimals = len(digits.split(".")[1]) if "." in digits else 0
            found.append((-float(digits) if sign and sign in "-−" else float(digits), decimals))
        return found

    def values(self) -> np.ndarray:
        """The printed numbers as a flat float64 array (for illustrative inputs a topic reads)."""
        return np.array([v for v, _ in self.numbers()], dtype=np.float64)

    def abs_tolerance(self) -> float | None:
        """The largest |computed - printed| a number claim allows (None for ranges and formulas)."""
        if self.form != "number" or not self.numbers():
            return None
        if self.tolerance is not None:
            return self.tolerance
        return max(0.5 * 10.0 ** (-d) for _, d in self.numbers())

    def precision_text(self) -> str:
        if self.form == "range":
            return "end points" if parse_set(self.printed)[1] else "set equality"
        if self.form == "formula":
            return "symbolic identity"
        if self.tolerance is not None:
            return f"±{self.tolerance:g} ({self.tolerance_note})"
        decimals = sorted({d for _, d in self.numbers()})
        if not decimals:
            return "-"
        text = "/".join(str(d) for d in decimals)
        return f"{text} decimal{'s' if decimals != [1] else ''}"


@dataclass
class ClaimResult:
    claim: Claim
    status: str
    computed: Any  # JSON-ready: float, nested list, or text
    computed_text: str
    detail: str = ""  # how the comparison came out
    latex: str | None = None  # formula claims: the derived formula

    def as_json(self) -> dict:
        c = self.claim
        return {
            "id": c.id, "topic": c.topic, "document": c.document, "section": c.section,
            "printed": c.printed, "computed": self.computed, "computed_text": self.computed_text,
            "form": c.form, "kind": c.kind, "tolerance": c.precision_text(), "abs_tolerance": c.abs_tolerance(),
            "status": self.status, "detail": self.detail, "reason": c.reason if self.status == "erratum" else None,
            "note": c.note, "latex": self.latex,
        }


# ---------------------------------------------------------------------- evaluation
def evaluate(claim: Claim, computed: Any, namespace: Mapping[str, Any] | None = None) -> ClaimResult:
    """Judge ``computed`` against the printed value of ``claim``."""
    if claim.form == "number":
        return _evaluate_number(claim, computed)
    if claim.form == "range":
        return _evaluate_range(claim, computed)
    return _evaluate_formula(claim, computed, namespace or {})


def _format(value: float, decimals: int) -> str:
    """Two digits more than printed, so a reader sees which way it rounds (integers stay integers)."""
    if not math.isfinite(value):
        return str(value)
    if decimals == 0 and value == int(value):
        return str(int(value))
    return f"{value:.{decimals + 2}f}"


def _evaluate_number(claim: Claim, computed: Any) -> ClaimResult:
    if computed is None:  # an example whose inputs are lost: nothing to compute
        if claim.kind != "illustrative":
            raise RegistryError(f"claim {claim.id}: a result claim needs a computed value")
        return ClaimResult(claim, "illustrative", None, "-", "given as an example; its inputs are not in the notes")
    values = np.asarray(computed, dtype=np.float64)
    flat = values.ravel()
    printed = claim.numbers()
    if claim.kind == "illustrative":  # judged by nobody: shown at 6 significant digits
        text = ", ".join(f"{v:.6g}" for v in flat)
        text = f"[{text}]" if flat.size > 1 else text
        return ClaimResult(claim, "illustrative", values.tolist(), text, "given as an example, not as a result")
    if len(printed) != flat.size:
        raise RegistryError(f"claim {claim.id}: the notes print {len(printed)} number(s) ({claim.printed!r}) "
                            f"but the topic computed {flat.size}")
    pieces, worst = [], None
    matched = True
    for (expected, decimals), got in zip(printed, flat):
        tol = claim.tolerance if claim.tolerance is not None else 0.5 * 10.0 ** (-decimals)
        # a hair of slack for binary floating point: 4.2 is not exactly representable
        ok = bool(abs(got - expected) <= tol * (1 + 1e-9) + 1e-12)
        matched &= ok
        pieces.append(_format(float(got), decimals) if claim.tolerance is None else f"{float(got):.15g}")
        if not ok and worst is None:
            worst = f"|{_format(float(got), decimals)} - {expected:g}| = {abs(got - expected):.3g} > {tol:g}"
    text = ", ".join(pieces) if len(pieces) <= 6 else ", ".join(pieces[:6]) + ", ..."
    if len(pieces) > 1:
        text = f"[{text}]"
    status = "match" if matched else "erratum"
    detail = "equal at the printed precision" if matched else worst
    return ClaimResult(claim, status, values.tolist(), text, detail)


# ---- ranges
def _endpoint(token: str) -> sp.Expr:
    t = token.strip().replace("\\infty", "∞").replace("−", "-").replace("+", "")
    if t in ("∞", "oo", "inf"):
        return sp.oo
    if t in ("-∞", "-oo", "-inf"):
        return -sp.oo
    return sp.nsimplify(t)


def parse_set(printed: str) -> tuple[sp.Set | None, bool]:
    """The set a printed range means: (set or None when malformed, compare-end-points-only flag)."""
    t = printed.replace("$", "").replace("\\infty", "∞").strip()
    words = re.fullmatch(r"(?:between\s+)?(\S+)\s+(?:to|and)\s+(\S+)", t)
    if words:
        return sp.Interval(_endpoint(words.group(1)), _endpoint(words.group(2))), True
    if t.startswith("{") and t.endswith("}"):
        return sp.FiniteSet(*[_endpoint(p) for p in t[1:-1].split(",")]), False
    if t and t[0] in "([" and t[-1] in ")]":
        parts = t[1:-1].split(",")
        if len(parts) != 2:
            return None, False
        lo, hi = _endpoint(parts[0]), _endpoint(parts[1])
        return sp.Interval(lo, hi, left_open=t[0] == "(", right_open=t[-1] == ")"), False
    if t and t[0] not in "([{" and t[-1] not in ")]}":
        parts = t.split(",")
        if len(parts) == 2:
            lo, hi = _endpoint(parts[0]), _endpoint(parts[1])
            if lo.is_infinite and hi.is_infinite:  # "-∞, ∞": unbounded ends are open whatever the brackets
                return sp.Interval(lo, hi), False
    return None, False  # mismatched or missing brackets


def format_set(s: sp.Set) -> str:
    def end(v):
        return "∞" if v == sp.oo else "-∞" if v == -sp.oo else sp.sstr(v)

    if isinstance(s, sp.Interval):
        return f"{'(' if s.left_open or s.start.is_infinite else '['}{end(s.start)}, {end(s.end)}" \
               f"{')' if s.right_open or s.end.is_infinite else ']'}"
    if isinstance(s, sp.FiniteSet):
        return "{" + ", ".join(end(v) for v in sorted(s, key=float)) + "}"
    if isinstance(s, sp.Union):
        return " ∪ ".join(format_set(a) for a in s.args)
    return sp.sstr(s)


def _evaluate_range(claim: Claim, computed: sp.Set) -> ClaimResult:
    if not isinstance(computed, sp.Set):
        raise RegistryError(f"claim {claim.id}: a range claim needs a SymPy set; got {type(computed).__name__}")
    text = format_set(computed)
    if claim.kind == "illustrative":
        return ClaimResult(claim, "illustrative", text, text, "given as an example, not as a result")
    expected, ends_only = parse_set(claim.printed)
    if expected is None:
        return ClaimResult(claim, "erratum", text, text, f"{claim.printed!r} is not valid set notation")
    if ends_only:
        ok = bool(sp.simplify(computed.inf - expected.inf) == 0 and sp.simplify(computed.sup - expected.sup) == 0)
        detail = "same end points" if ok else f"end points {format_set(expected)} vs {text}"
    else:
        ok = bool(computed == expected)
        detail = "same set" if ok else f"{format_set(expected)} differs from {text}"
    return ClaimResult(claim, "match" if ok else "erratum", text, text, detail)


# ---- formulas
def _evaluate_formula(claim: Claim, computed: Any, namespace: Mapping[str, Any]) -> ClaimResult:
    from .symbolic import identical  # local: symbolic imports this module's error type

    printed = sp.parse_expr(claim.transcription, local_dict=dict(namespace))
    text = sp.sstr(computed)
    shown = text if len(text) <= 100 else text[:99] + "…"  # the whole formula is in --json
    latex = sp.latex(computed)
    if claim.kind == "illustrative":
        return ClaimResult(claim, "illustrative", text, shown, "given as an example, not as a result", latex)
    ok = identical(printed, computed)
    detail = "symbolically identical" if ok else f"printed {sp.sstr(printed)} differs from derived {text}"
    return ClaimResult(claim, "match" if ok else "erratum", text, shown, detail, latex)


@dataclass
class Registry:
    """All claims, checked for unique ids; lookups by id and by topic."""

    claims: list[Claim] = field(default_factory=list)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for c in self.claims:
            if c.id in seen:
                raise RegistryError(f"claim id {c.id!r} is registered twice")
            if not c.id.startswith(c.topic + "."):
                raise RegistryError(f"claim id {c.id!r} must start with its topic name {c.topic!r} and a dot")
            seen.add(c.id)
        self._by_id = {c.id: c for c in self.claims}

    def __getitem__(self, claim_id: str) -> Claim:
        try:
            return self._by_id[claim_id]
        except KeyError:
            raise RegistryError(f"no claim {claim_id!r} in the registry") from None

    def __iter__(self):
        return iter(self.claims)

    def __len__(self) -> int:
        return len(self.claims)

    def for_topic(self, topic: str) -> list[Claim]:
        return [c for c in self.claims if c.topic == topic]
