"""No topic module contains a printed textbook value as a literal: topics compute, the registry prints.

Every numeric literal of every topic module (and every decimal number inside its strings and
docstrings) is compared with the results the registry holds. A literal equal to one of them is an
error unless it is an *input* of that topic, listed below with where it comes from. Whole numbers
(sizes, counts, shapes: 2, 3, 8, 12, ...) are too common to compare; what guards them is the second
rule: the value a topic hands to ``ex.claim`` must be computed, never a literal (None only for an
example whose inputs are lost). Illustrative values are read with ``ex.printed_input``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import worked_examples.topics as topics_package
from worked_examples.claims import REGISTRY
from worked_examples.topics import MODULES

# Inputs each topic may write, though the registry also prints the same number for some claim.
ALLOWED_INPUTS: dict[str, set[float]] = {
    # x3 = 0.4 (004's neuron); 0.5: a sample point; 1.7: the steepness of the spot checks
    "activations": {0.4, 0.5, 1.7},
    # b1 = 0.4 (002, NOTES.md); 0.5: an illustrative input
    "forward-pass": {0.4, 0.5},
    # b1 = 0.4 (NOTES.md); T = 0.25 and the learning rate 0.4 are illustrative
    "backprop": {0.25, 0.4},
    # 0.25: an illustrative learning rate; 0.5, 1.5: illustrative data points (1.5 is also dropout's printed scale)
    "gradient-descent": {0.25, 0.5, 1.5},
    # 0.4, 0.5: illustrative scores and values
    "loss-functions": {0.4, 0.5},
    # 0.5: the learning rate of the perceptron rule
    "perceptron": {0.5},
    # 0.5: a pixel of 004's 6x6 image
    "convolution": {0.5},
    # 1.5: a sample point of the spot check (the printed 1.5 is dropout's survivor scale)
    "vanishing-gradient": {1.5},
    # 0.5: the rate of 003's Keras example, Dropout(rate=0.5)
    "dropout": {0.5},
}
DECIMAL = re.compile(r"(?<![\w.])-?\d+\.\d+(?![\w.])")


def _printed_numbers() -> set[float]:
    """The non-integer numbers the notes print as results."""
    return {v for c in REGISTRY if c.form == "number" and c.kind == "result" for v, _ in c.numbers()
            if v != int(v)}


def _numeric_literals(tree: ast.AST):
    """(value, line) of every int/float literal, with unary minus folded in; no bools."""
    negated = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            negated.add(id(node.operand))
            if isinstance(node.operand.value, (int, float)) and not isinstance(node.operand.value, bool):
                yield -node.operand.value, node.lineno
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and id(node) not in negated:
            if isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
                yield node.value, node.lineno


def _string_decimals(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for token in DECIMAL.findall(node.value):
                yield float(token), node.lineno


def _topic_sources():
    for name, module in MODULES.items():
        yield name, Path(module.__file__)


def test_every_topic_module_is_checked():
    files = {p.stem for p in Path(topics_package.__file__).parent.glob("*.py") if not p.stem.startswith("_")}
    assert files == {Path(m.__file__).stem for m in MODULES.values()}


@pytest.mark.parametrize("name,path", list(_topic_sources()), ids=[n for n, _ in _topic_sources()])
def test_no_printed_value_is_written_in_a_topic(name, path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    printed = _printed_numbers()
    allowed = ALLOWED_INPUTS.get(name, set())
    offenders = [(v, line) for v, line in [*_numeric_literals(tree), *_string_decimals(tree)]
                 if v in printed and v not in allowed]
    assert not offenders, (f"{path.name} writes printed values of the notes as literals (value, line): {offenders}; "
                           "compute them with the toolkit, or list a genuine input in ALLOWED_INPUTS")


@pytest.mark.parametrize("name,path", list(_topic_sources()), ids=[n for n, _ in _topic_sources()])
def test_claims_are_handed_computed_values(name, path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "claim":
            assert len(node.args) >= 2, f"{path.name}:{node.lineno}: claim(id, computed) needs the computed value"
            value = node.args[1]
            if isinstance(value, ast.Constant) and value.value is None:
                claim_id = node.args[0].value if isinstance(node.args[0], ast.Constant) else None
                assert claim_id and REGISTRY[claim_id].kind == "illustrative", \
                    f"{path.name}:{node.lineno}: only an illustrative claim may be checked with nothing computed"
                continue
            literal = isinstance(value, ast.Constant) or (
                isinstance(value, (ast.List, ast.Tuple)) and all(isinstance(e, ast.Constant) for e in value.elts))
            assert not literal, f"{path.name}:{node.lineno}: a claim is handed a literal instead of a computed value"


def test_the_check_catches_a_printed_value():
    tree = ast.parse("y = 0.6023\ntext = 'the notes print 0.7153'\nz = -0.08\n")
    printed = _printed_numbers()
    found = {v for v, _ in [*_numeric_literals(tree), *_string_decimals(tree)] if v in printed}
    assert found == {0.6023, 0.7153, -0.08}
