"""Batch normalisation (003): a small batch normalised, gamma and beta, running statistics, inference, the gradient."""

from __future__ import annotations

import numpy as np
import sympy as sp

from toolkit.nn import BatchNormalization, Dense, Sequential
from toolkit.ops.batchnorm import batchnorm_backward, batchnorm_forward

from ..arrays import host, tensor
from ..documents import KERAS_COURSE_NOTES
from ..example import Example, Step, Topic
from ..render import fmt
from ..symbolic import DerivationError, spot_check

TOPIC = Topic(
    name="batchnorm",
    title="Batch normalisation: mean 0, variance 1, then scale and shift",
    summary="a batch normalised; γ, β; running statistics, momentum",
    documents=(KERAS_COURSE_NOTES,),
    needs=("batchnorm",),
    order=140,
)

EPS = 1e-3  # Keras' default epsilon
MOMENTUM = 0.99  # Keras' default momentum: the weight of the OLD running value


def _state(features: int) -> tuple:
    """Keras' initial running statistics: mean 0, variance 1 (updated in place by training passes)."""
    return tensor(np.zeros(features)), tensor(np.ones(features))


def _normalise(ex: Example) -> None:
    ex.section("Normalising a batch (003)",
               "003: batch normalisation normalises the inputs of a layer 'to have a mean of zero and a "
               "variance of one' (in words: nothing to judge numerically), then 'two learnable parameters' "
               "scale (γ) and shift (β) the result. Per feature (column), over the batch: "
               "x_hat = (x − mean)/√(var + ε), y = γ·x_hat + β, with ε = 0.001 as Keras. The batch below is "
               "illustrative (seeded): 5 samples of 3 features with very different scales.")
    rng = np.random.default_rng(140)
    x = rng.normal(size=(5, 3)) * np.array([1.0, 10.0, 0.05]) + np.array([2.0, -30.0, 0.1])
    gamma, beta = np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0, -1.0])
    ex.inputs("illustrative inputs", [("x", x, "5 samples × 3 features"), ("γ", gamma, "scale, learned"),
                                      ("β", beta, "shift, learned")])
    running_mean, running_var = _state(3)
    y, cache = batchnorm_forward(tensor(x), tensor(gamma), tensor(beta), running_mean, running_var, training=True,
                                 momentum=MOMENTUM, eps=EPS)
    mean, var, x_hat, out = host(cache.mean), host(cache.var), host(cache.x_hat), host(y)
    ex.table("toolkit: batchnorm_forward (training): per feature", ["", "feature 1", "feature 2", "feature 3"], [
        ("batch mean", *mean), ("batch variance (÷ N, biased)", *var),
        ("mean of x_hat", *x_hat.mean(axis=0)), ("variance of x_hat", *x_hat.var(axis=0)),
        ("var/(var + ε)", *(var / (var + EPS))),
        ("mean of y (= β)", *out.mean(axis=0)), ("std of y (≈ γ)", *out.std(axis=0))])
    ex.text("The variance of x_hat is var/(var + ε), a little under one: ε keeps the division finite for a "
            "constant feature and costs most where the variance is small (feature 3). Keras divides by N, "
            "not N − 1.")


def _running(ex: Example) -> None:
    ex.section("Running statistics and momentum",
               "Training passes also update running estimates in place: running = m·running + (1 − m)·batch "
               "(Keras: momentum m = 0.99 is the weight of the OLD value; PyTorch's 0.1 is that of the new). "
               "Inference normalises with them. SymPy solves the update for n equal batches of mean μ, "
               "starting from 0; the kernel's in-place running mean must follow it.")
    n, m, mu = sp.symbols("n m mu", positive=True)
    r = sp.Function("r")
    solution = sp.rsolve(r(n + 1) - m * r(n) - (1 - m) * mu, r(n), {r(0): 0})
    batch = np.array([[4.0], [6.0]])  # mean 5 (μ below), variance 1: the same batch at every step
    checkpoints, kernel = [1, 10, 50, 200], []
    running_mean, running_var = _state(1)
    for step in range(1, max(checkpoints) + 1):
        batchnorm_forward(tensor(batch), tensor([1.0]), tensor([0.0]), running_mean, running_var, momentum=MOMENTUM,
                          eps=EPS)
        if step in checkpoints:
            kernel.append(host(running_mean).item())
    if solution.subs(n, 0) != 0:
        raise DerivationError(f"rsolve's running mean {solution} does not start at 0")
    ex.derivation("r_n = μ(1 − mⁿ) solves r_(n+1) = m·r_n + (1 − m)·μ, r_0 = 0", solution.subs(n, n + 1),
                  m * solution + (1 - m) * mu,
                  spot_check(solution, [n], [[c] for c in checkpoints], kernel, fixed={m: MOMENTUM, mu: float(batch.mean())}),
                  note="spot check: batchnorm_forward's in-place running_mean after 1, 10, 50, 200 steps on a batch "
                       "of mean 5, momentum 0.99")
    series = []
    for momentum in (0.9, MOMENTUM):
        running_mean, running_var = _state(1)
        trace = []
        for _ in range(200):
            batchnorm_forward(tensor(batch), tensor([1.0]), tensor([0.0]), running_mean, running_var,
                              momentum=momentum, eps=EPS)
            trace.append(host(running_mean).item())
        series.append((f"momentum {momentum}", np.arange(1, 201), trace))
    ex.plot("running mean over 200 steps, batch mean 5 (toolkit: batchnorm_forward)", series, xlabel="step",
            height=12)
    ex.text("With Keras' 0.99 the running mean needs hundreds of steps to settle, so early in training "
            "inference (which uses it) and training (which uses the batch) see different normalisations:")
    running_mean, running_var = _state(1)
    warm_up = 10
    for _ in range(warm_up):
        batchnorm_forward(tensor(batch), tensor([1.0]), tensor([0.0]), running_mean, running_var, eps=EPS)
    train, cache = batchnorm_forward(tensor(batch), tensor([1.0]), tensor([0.0]), running_mean, running_var,
                                     eps=EPS)
    infer, _ = batchnorm_forward(tensor(batch), tensor([1.0]), tensor([0.0]), running_mean, running_var,
                                 training=False, eps=EPS)
    ex.steps(f"after {warm_up + 1} training steps on the batch {fmt(batch.ravel())}", [
        Step("training mode: batch statistics", f"mean {fmt(host(cache.mean).item())}, var {fmt(host(cache.var).item())}",
             fmt(host(train).ravel())),
        Step("inference mode: running statistics",
             f"mean {fmt(host(running_mean).item(), 4)}, var {fmt(host(running_var).item(), 4)}",
             fmt(host(infer).ravel()))])


def _gradient(ex: Example) -> None:
    ex.section("The gradient through the batch statistics",
               "Every x_hat depends on every x of its feature through the mean μ and the variance σ², so dL/dx is "
               "not just γ/√(σ² + ε)·dL/dy. For a batch of three values of one feature, SymPy first "
               "differentiates μ and σ², then carries the chain rule through them and checks the compact form "
               "the kernel uses (c = dL/dy).")
    xs, cs = sp.symbols("x1:4", real=True), sp.symbols("c1:4", real=True)
    gamma, beta, mu = sp.symbols("gamma beta mu", real=True)
    var, eps = sp.symbols("sigma^2 epsilon", positive=True)
    mean_x = sp.Add(*xs) / 3
    var_x = sp.Add(*[(x - mean_x) ** 2 for x in xs]) / 3
    ex.derivation("∂σ²/∂x₁ = 2(x₁ − μ)/3 (and ∂μ/∂x₁ = 1/3)", sp.Derivative(var_x, xs[0]), 2 * (xs[0] - mean_x) / 3,
                  None, note="σ² is the biased variance (÷ N), as Keras")
    # the chain rule with μ(x₁) and σ²(x₁) as functions, then their derivatives from above
    m_of, v_of = sp.Function("mu")(xs[0]), sp.Function("v")(xs[0])
    loss = sp.Add(*[c * (gamma * (x - m_of) / sp.sqrt(v_of + eps) + beta) for c, x in zip(cs, xs)])
    chain = sp.diff(loss, xs[0]).subs({sp.Derivative(m_of, xs[0]): sp.Rational(1, 3),
                                       sp.Derivative(v_of, xs[0]): 2 * (xs[0] - m_of) / 3}).subs({m_of: mu, v_of: var})
    x_hat = [(x - mu) / sp.sqrt(var + eps) for x in xs]
    mean_c, mean_c_x_hat = sp.Add(*cs) / 3, sp.Add(*[c * h for c, h in zip(cs, x_hat)]) / 3
    compact = gamma / sp.sqrt(var + eps) * (cs[0] - mean_c - x_hat[0] * mean_c_x_hat)
    rng = np.random.default_rng(141)
    points, kernel = [], []
    for _ in range(3):
        x, dy, g = rng.normal(size=3), rng.normal(size=3), rng.normal()
        running_mean, running_var = _state(1)
        _, cache = batchnorm_forward(tensor(x[:, None]), tensor([g]), tensor([0.0]), running_mean, running_var, eps=EPS)
        dx, _, _ = batchnorm_backward(tensor(dy[:, None]), cache)
        points.append((*x, *dy, g))
        kernel.append(host(dx)[0, 0])
    spot = spot_check(compact.subs({mu: mean_x, var: var_x}), [*xs, *cs, gamma], points, kernel, fixed={eps: EPS})
    ex.derivation("∂L/∂x₁ = γ/√(σ² + ε)·(c₁ − mean(c) − x_hat₁·mean(c·x_hat))", chain, compact, spot,
                  note="left: the chain rule through μ and σ²; spot check: batchnorm_backward at 3 random batches")


def _keras_model(ex: Example) -> None:
    ex.section("003's Keras model with a BatchNormalization layer",
               "Input(20), Dense(64, relu), BatchNormalization(), Dense(64, relu), Dense(1, sigmoid). Keras "
               "counts four numbers per feature in the normalisation layer: γ and β are trained, the running "
               "mean and variance are not.")
    model = Sequential([Dense(64, activation="relu", input_shape=(20,)), BatchNormalization(),
                        Dense(64, activation="relu"), Dense(1, activation="sigmoid")])
    info = model.summary_dict()
    ex.table("toolkit: Sequential.summary_dict()", ["layer", "output shape", "parameters", "trainable"],
             [(r["name"], fmt(r["output_shape"][1:]), r["params"], r["trainable_params"]) for r in info["layers"]]
             + [("total", "", info["total_params"], info["trainable_params"])])


def run(ex: Example) -> None:
    _normalise(ex)
    _running(ex)
    _gradient(ex)
    _keras_model(ex)
