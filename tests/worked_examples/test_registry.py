"""The claims registry: how printed values are parsed and judged, and that every claim is sound."""

from __future__ import annotations

import re

import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from worked_examples.claims import REGISTRY
from worked_examples.documents import DOCUMENTS, document_path
from worked_examples.registry import Claim, Registry, RegistryError, evaluate, format_set, parse_set
from worked_examples.topics import TOPICS


def claim(**kw) -> Claim:
    base = dict(id="t.x", topic="t", document="NOTES.md", section="s", printed="0.6023", quote="q")
    return Claim(**{**base, **kw})


# ---------------------------------------------------------------------------------- precision
@pytest.mark.parametrize("printed,expected", [
    ("0.6023", [(0.6023, 4)]), ("8", [(8.0, 0)]), ("7.10", [(7.10, 2)]),
    ("[[0.5, 1.6], [0.4, 1.7]]", [(0.5, 1), (1.6, 1), (0.4, 1), (1.7, 1)]),
    ("0.08 + 0.18 - 0.08", [(0.08, 2), (0.18, 2), (-0.08, 2)]), ("−1.5", [(-1.5, 1)]),
])
def test_printed_numbers_and_their_decimals(printed, expected):
    assert claim(printed=printed).numbers() == expected


def test_match_is_equality_at_the_printed_precision():
    c = claim(printed="0.7153")
    assert evaluate(c, 0.715252).status == "match"  # rounds to 0.7153 (|diff| 4.8e-5 <= 5e-5)
    assert evaluate(c, 0.71524).status == "erratum"  # rounds to 0.7152
    assert evaluate(c, 0.71535).status == "match"  # the boundary itself counts as equal
    assert evaluate(claim(printed="0.625"), 0.629483).status == "erratum"


def test_explicit_tolerance_replaces_the_printed_precision():
    c = claim(printed="2", tolerance=1e-6, tolerance_note="exact")
    assert evaluate(c, 2.0000004).status == "match"
    assert evaluate(c, 2.1).status == "erratum"  # would match at the printed 0 decimals


def test_arrays_are_judged_element_by_element():
    c = claim(printed="[1.95, 7.10, 1.05]")
    assert evaluate(c, [1.95, 7.1, 1.05]).status == "match"
    assert evaluate(c, [1.95, 7.2, 1.05]).status == "erratum"
    with pytest.raises(RegistryError, match="print 3 number"):
        evaluate(c, [1.95, 7.1])


def test_illustrative_claims_are_never_judged():
    assert evaluate(claim(kind="illustrative", printed="2"), 1.98).status == "illustrative"
    assert evaluate(claim(kind="illustrative", printed="2"), 100.0).status == "illustrative"


def test_nan_never_matches():
    assert evaluate(claim(printed="0.5"), float("nan")).status == "erratum"


# ---------------------------------------------------------------------------------- ranges and formulas
@pytest.mark.parametrize("printed,expected,ends_only", [
    ("(0, 1)", sp.Interval.open(0, 1), False), ("(0,1)", sp.Interval.open(0, 1), False),
    (r"$[0, \infty)$", sp.Interval(0, sp.oo), False), ("{0, 1}", sp.FiniteSet(0, 1), False),
    (r"$-\infty, \infty$", sp.Interval(-sp.oo, sp.oo), False), ("0 to 1", sp.Interval(0, 1), True),
    ("between -1 and $+1$", sp.Interval(-1, 1), True), ("{0,∞)", None, False),
])
def test_parse_set(printed, expected, ends_only):
    assert parse_set(printed) == (expected, ends_only)


def test_range_claims():
    relu = sp.Interval(0, sp.oo)
    assert evaluate(claim(form="range", printed="$[0, \\infty)$"), relu).status == "match"
    assert evaluate(claim(form="range", printed="(0, ∞)"), relu).status == "erratum"  # 0 is reached
    assert evaluate(claim(form="range", printed="{0,∞)"), relu).status == "erratum"
    assert evaluate(claim(form="range", printed="0 to 1"), sp.Interval.open(0, 1)).status == "match"
    assert format_set(sp.Interval.Lopen(0, sp.Rational(1, 4))) == "(0, 1/4]"


def test_formula_claims_are_symbolic_identities():
    x, lam = sp.symbols("x lambda", positive=True)
    f = 1 / (1 + sp.exp(-lam * x))
    ns = {"lam": lam, "x": x, "f": f}
    good = claim(form="formula", printed="λ f (1 - f)", transcription="lam*f*(1 - f)")
    bad = claim(form="formula", printed="f (1 - f)", transcription="f*(1 - f)")
    assert evaluate(good, sp.diff(f, x), ns).status == "match"
    assert evaluate(bad, sp.diff(f, x), ns).status == "erratum"


# ---------------------------------------------------------------------------------- malformed claims
def test_malformed_claims_are_refused():
    with pytest.raises(RegistryError, match="kind"):
        claim(kind="result!")
    with pytest.raises(RegistryError, match="transcription"):
        claim(form="formula")
    with pytest.raises(RegistryError, match="holds no number"):
        claim(printed="about half")
    with pytest.raises(RegistryError, match="say why"):
        claim(tolerance=0.1)
    with pytest.raises(RegistryError, match="twice"):
        Registry([claim(), claim()])
    with pytest.raises(RegistryError, match="must start with its topic"):
        Registry([claim(id="other.x")])
    with pytest.raises(RegistryError, match="no claim"):
        REGISTRY["activations.no-such-claim"]


# ---------------------------------------------------------------------------------- the registry itself
def test_every_claim_belongs_to_a_topic_and_a_known_document():
    for c in REGISTRY:
        assert c.topic in TOPICS, f"{c.id}: unknown topic {c.topic!r}"
        assert c.document in DOCUMENTS, f"{c.id}: unknown document {c.document!r}"
        assert c.document in TOPICS[c.topic].documents, f"{c.id}: topic {c.topic} does not list {c.document}"
        assert c.section.strip(), f"{c.id}: no section"


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_every_claim_is_quoted_verbatim_from_its_document():
    """The quote is in the document, and the printed value is in the quote: no number is made up."""
    texts = {}
    for c in REGISTRY:
        path = document_path(c.document)
        if path is None:
            pytest.skip("the source documents (../shared) are not present")
        text = texts.setdefault(c.document, _normal(path.read_text(encoding="utf-8")))
        assert _normal(c.quote) in text, f"{c.id}: quote not found in {c.document}: {c.quote!r}"
        if c.form == "number":  # the printed numbers, in order, among the quote's (a table loses its commas)
            quoted = iter(v for v, _ in claim(printed=c.quote).numbers())
            assert all(any(v == q for q in quoted) for v, _ in c.numbers()), \
                f"{c.id}: printed {c.printed!r} is not in its quote"
        else:
            assert _normal(c.printed) in _normal(c.quote), f"{c.id}: printed {c.printed!r} is not in its quote"


def test_a_reason_is_stored_exactly_for_the_claims_that_are_errata(examples):
    statuses = {r.claim.id: r.status for ex in examples.values() for r in ex.results}
    for c in REGISTRY:
        if c.id not in statuses:
            continue  # its topic's toolkit operation is not built yet
        if statuses[c.id] == "erratum":
            assert c.reason and len(c.reason) > 40, f"{c.id} is an erratum without a reason"
        else:
            assert c.reason is None, f"{c.id} stores a reason but is {statuses[c.id]}"


# ---------------------------------------------------------------------------------- the SymPy helper
def test_identical_proves_identities_and_refutes_the_rest():
    from worked_examples.symbolic import identical, sigma

    x = sp.Symbol("x", real=True)
    assert identical(sp.tanh(x), 2 / (1 + sp.exp(-2 * x)) - 1)
    assert identical(sp.Derivative(sigma(x), x), sigma(x) * (1 - sigma(x)))
    assert identical(sp.Matrix([[x, 1]]), sp.Matrix([[x, sp.exp(x) * sp.exp(-x)]]))
    assert not identical(sp.Derivative(sigma(x), x), sigma(x))
    assert not identical(x ** 2, x)
    assert not identical(sp.Matrix([[x, 1]]), sp.Matrix([[x, 1, 0]]))


def test_derive_refuses_a_wrong_derivation_or_a_disagreeing_kernel():
    from worked_examples.symbolic import DerivationError, derive, spot_check

    x = sp.Symbol("x", real=True)
    with pytest.raises(DerivationError, match="not identical"):
        derive("wrong", sp.Derivative(x ** 3, x), 3 * x, None)
    with pytest.raises(DerivationError, match="kernel disagrees"):
        derive("kernel off", sp.Derivative(x ** 3, x), 3 * x ** 2, spot_check(3 * x ** 2, [x], [[2.0]], [12.1]))


# ---------------------------------------------------------------------------------- properties
@given(value=st.floats(-1e4, 1e4, allow_nan=False), decimals=st.integers(0, 6))
def test_a_value_matches_its_own_rounding_and_not_a_neighbour(value, decimals):
    printed = f"{value:.{decimals}f}"
    c = claim(printed=printed)
    assert evaluate(c, value).status == "match"
    step = 10.0 ** (-decimals)
    assert evaluate(c, float(printed) + 1.01 * step).status == "erratum"
    assert evaluate(c, float(printed) - 1.01 * step).status == "erratum"


@given(st.lists(st.floats(-100, 100, allow_nan=False), min_size=1, max_size=6))
def test_arrays_round_trip(values):
    c = claim(printed="[" + ", ".join(f"{v:.3f}" for v in values) + "]")
    assert evaluate(c, values).status == "match"


def test_wrong_kinds_of_computed_values_are_refused():
    with pytest.raises(RegistryError, match="needs a SymPy set"):
        evaluate(claim(form="range", printed="(0, 1)"), 0.5)
    with pytest.raises(RegistryError, match="needs a computed value"):
        evaluate(claim(), None)
    with pytest.raises((TypeError, ValueError)):
        evaluate(claim(), "not a number")
