"""Self-attention on "The dog runs" (003): positional inputs, Q·K^T, softmax with and without scaling, outputs."""

from __future__ import annotations

import numpy as np
import sympy as sp

from toolkit.ops.attention import attention_backward, attention_forward, attention_scores
from toolkit.ops.dense import dense_forward

from ..arrays import host, tensor
from ..documents import KERAS_COURSE_NOTES
from ..example import Example, Step, Topic
from ..render import fmt
from ..symbolic import spot_check

TOPIC = Topic(
    name="attention",
    title="Self-attention: 'The dog runs', step by step",
    summary="003's 'The dog runs': Q·K^T, softmax, weighted values",
    documents=(KERAS_COURSE_NOTES,),
    needs=("dense", "attention"),
    order=170,
)

# 003, "Example of Self-Attention": one row per token, as the notes' tables print them
TOKENS = ("The", "Dog", "Runs")
EMBEDDINGS = np.array([[1, 0, 1, 0], [0, 2, 0, 2], [1, 1, 1, 1]], dtype=np.float64)
POSITIONS = np.array([[2, 1, 2, 1], [2, 4, 2, 4], [4, 4, 4, 4]], dtype=np.float64)
QUERIES = np.array([[1, 0, 2], [2, 2, 2], [2, 1, 3]], dtype=np.float64)
KEYS = np.array([[0, 1, 1], [4, 4, 0], [2, 3, 1]], dtype=np.float64)
VALUES = np.array([[1, 2, 3], [2, 8, 0], [2, 6, 3]], dtype=np.float64)
DOG, RUNS = 1, 2


def _batch(m: np.ndarray):
    """One sequence as a batch of one: (T, d) -> (1, T, d)."""
    return tensor(m[None])


def _positions(ex: Example) -> np.ndarray:
    ex.section("Embeddings plus positional encodings (003)",
               "A transformer reads all tokens at once, so each token's embedding gets a positional vector "
               "added to it. The sum is one dense layer: [embedding | position] times two stacked identity "
               "matrices.")
    ex.inputs("003's tables", [("embedding", EMBEDDINGS, "The, Dog, Runs"), ("position", POSITIONS, "")])
    stacked = np.hstack([EMBEDDINGS, POSITIONS])
    summed, _ = dense_forward(tensor(stacked), tensor(np.vstack([np.eye(4), np.eye(4)])))
    e = host(summed)
    ex.steps("position-aware inputs (toolkit: dense_forward)",
             [Step(f'"{t}"', f"{fmt(a)} + {fmt(b)}", r) for t, a, b, r in zip(TOKENS, EMBEDDINGS, POSITIONS, e)])
    for i, claim_id in enumerate(("attention.position-the", "attention.position-dog", "attention.position-runs")):
        ex.claim(claim_id, e[i], label=f'"{TOKENS[i]}" with its position')
    return e


def _projections(ex: Example, e: np.ndarray) -> None:
    ex.section("Q, K and V (003)",
               "003 says Q = E·W^Q, K = E·W^K, V = E·W^V with learned matrices, and then prints Q, K and V "
               "without the matrices. They are used below as printed. Can any matrix produce them? The three "
               "input rows are not independent, and a matrix must respect that:")
    ex.inputs("003's Q, K, V (rows: The, Dog, Runs)", [("Q", QUERIES, ""), ("K", KEYS, ""), ("V", VALUES, "")])
    # write the third input row as a combination of the first two (least squares; exact if it is one)
    coefficients = np.linalg.lstsq(e[:2].T, e[2], rcond=None)[0]
    mix = tensor(coefficients[None])
    rows = [(name, fmt(host(dense_forward(mix, tensor(m[:2]))[0])[0]), fmt(m[2]))
            for name, m in (("E", e), ("Q", QUERIES), ("K", KEYS), ("V", VALUES))]
    ex.table(f"row 3 against {fmt(coefficients[0])}·row 1 + {fmt(coefficients[1])}·row 2 (toolkit: dense_forward)",
             ["matrix", "the combination", "row 3"], rows)
    ex.text("'Runs' = a·'The' + b·'Dog' in E, so E·W would keep that relation in every column; Q, K and V do "
            "not, so no W^Q, W^K, W^V without a bias maps 003's E to its Q, K, V (with a bias one can). The "
            "example's numbers are illustrative from here on, which is all attention needs.")


def _scores(ex: Example) -> None:
    ex.section("Attention scores Q·K^T (003)",
               "Each query is dot-multiplied with every key; 003's example does not scale the scores "
               "(scale=False).")
    s = host(attention_scores(_batch(QUERIES), _batch(KEYS), scale=False))[0]
    ex.table("toolkit: attention_scores(q, k, scale=False)", ["query \\ key", *TOKENS],
             [(t, *row) for t, row in zip(TOKENS, s)])
    ex.claim("attention.scores", s, label="the score table")
    best = int(np.argmax(s[DOG]))
    order = np.argsort(-s[RUNS], kind="stable")
    ex.steps("reading the table", [
        Step("key with the highest score for the query 'Dog'", fmt(s[DOG]), f"{TOKENS[best]}: {fmt(s[DOG, best])}"),
        Step("keys for the query 'Runs', highest first", fmt(s[RUNS]),
             ", ".join(f"{TOKENS[j]} ({fmt(s[RUNS, j])})" for j in order)),
    ])
    ex.claim("attention.dog-itself", s[DOG, best], label=f"'Dog' attends most to '{TOKENS[best]}'")
    ex.claim("attention.runs-ranking", s[RUNS, order], label="the scores of 'Runs', highest first")


def _softmax(ex: Example) -> None:
    ex.section("Softmax: the attention weights (003)",
               "Each row of scores becomes a probability distribution over the keys. 003 then shows the "
               "weights of 'Dog' 'for example'; they are not what softmax gives for its scores, unscaled "
               "or scaled by 1/√d (d = 3), as attention_forward computes them:")
    weights = {}
    for label, scale in (("unscaled", False), ("1/√3", True)):
        _, cache = attention_forward(_batch(QUERIES), _batch(KEYS), _batch(VALUES), scale=scale)
        weights[label] = host(cache.weights)[0]
    example = ex.printed_input("attention.weights-example")
    ex.table("weights of the query 'Dog' over the keys The, Dog, Runs", ["", *TOKENS],
             [("003's example", *example)] + [(f"softmax, {k}", *w[DOG]) for k, w in weights.items()])
    ex.claim("attention.weights-example", weights["unscaled"][DOG],
             label="003's example weights (computed: softmax of the unscaled scores)")
    sums = np.concatenate([w.sum(axis=1) for w in weights.values()])
    ex.claim("attention.weights-sum", sums[np.argmax(np.abs(sums - 1))],
             label="row sums of the weights (the one farthest from 1)")
    # which scale would have given the example? scan c in softmax(c·scores)
    scales = np.linspace(0.01, 1.0, 100)
    errors = []
    for c in scales:
        _, cache = attention_forward(_batch(QUERIES), _batch(KEYS), _batch(VALUES), scale=float(c))
        errors.append(np.abs(host(cache.weights)[0, DOG] - example).max())
    c = scales[int(np.argmin(errors))]
    _, cache = attention_forward(_batch(QUERIES), _batch(KEYS), _batch(VALUES), scale=float(c))
    ex.text(f"Scanning the scale c of softmax(c·scores), the example is closest at c = {fmt(c, 3)}: weights "
            f"{fmt(host(cache.weights)[0, DOG], 3)} (largest gap {fmt(min(errors), 2)}). So the example looks "
            "like a rounded softmax of scores shrunk far more than by 1/√3; the notes do not say so.")


def _output(ex: Example) -> None:
    ex.section("The output for 'Dog': a weighted sum of the values (003)",
               "The output of a token is Σ weightⱼ·Vⱼ. With 003's example weights, a dense layer (weights "
               "as a 1 × 3 row times V):")
    example = ex.printed_input("attention.weights-example")
    out, _ = dense_forward(tensor(example[None]), tensor(VALUES))
    ex.steps("toolkit: dense_forward(weights, V)", [
        Step("Σⱼ wⱼ·Vⱼ", " + ".join(f"{fmt(w)}·{fmt(v)}" for w, v in zip(example, VALUES)), host(out)[0])])
    ex.claim("attention.output-dog", host(out)[0], label="output of 'Dog' with the example weights")
    rows = []
    for label, scale in (("softmax, unscaled", False), ("softmax, 1/√3", True)):
        o, _ = attention_forward(_batch(QUERIES), _batch(KEYS), _batch(VALUES), scale=scale)
        rows.append((label, fmt(host(o)[0, DOG], 4)))
    ex.table("what attention_forward gives for 'Dog'", ["weights", "output"], rows)


def _derivation(ex: Example) -> None:
    ex.section("How the output depends on a score (SymPy)",
               "With wᵢ = e^(sᵢ)/Σⱼ e^(sⱼ) and o = Σᵢ wᵢvᵢ, raising one score pulls the output towards that "
               "value: ∂o/∂sᵢ = wᵢ(vᵢ − o). Through sᵢ = q·kᵢ this is the gradient attention_backward sends "
               "to the query.")
    s = sp.symbols("s1:4", real=True)
    v = sp.symbols("v1:4", real=True)
    total = sp.Add(*[sp.exp(si) for si in s])
    w = [sp.exp(si) / total for si in s]
    o = sp.Add(*[wi * vi for wi, vi in zip(w, v)])
    # chain rule to the query (unscaled scores s_i = q·k_i), first component of the output
    q = sp.symbols("q1:4", real=True)
    on_q = {si: sum(qa * ka for qa, ka in zip(q, key)) for si, key in zip(s, KEYS.tolist())}
    first_values = {vi: value for vi, value in zip(v, VALUES[:, 0].tolist())}
    do_dq1 = sp.Add(*[sp.diff(o, si) * key[0] for si, key in zip(s, KEYS.tolist())]).subs(on_q).subs(first_values)
    dout = np.zeros((1, 3, 3))
    dout[..., 0] = 1.0  # each query row gets the gradient of its own output's first component
    _, cache = attention_forward(_batch(QUERIES), _batch(KEYS), _batch(VALUES), scale=False)
    dq, _, _ = attention_backward(tensor(dout), cache)
    ex.derivation("∂o/∂s₁ = w₁(v₁ − o)", sp.Derivative(o, s[0]), w[0] * (v[0] - o),
                  spot_check(do_dq1, list(q), [tuple(row) for row in QUERIES.tolist()], host(dq)[0, :, 0]),
                  note="spot check: ∂o₁/∂q₁ = Σᵢ wᵢ(vᵢ − o)·kᵢ₁ at the three queries of 003, against "
                       "attention_backward's dq (unscaled)")


def run(ex: Example) -> None:
    e = _positions(ex)
    _projections(ex, e)
    _scores(ex)
    _softmax(ex)
    _output(ex)
    _derivation(ex)
