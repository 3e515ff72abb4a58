"""Printed formulas of the topic ``backprop``: the chain rule of the two-neuron sigmoid network.

The network (002, 003): z1 = x1 w1 + b1, a1 = σ(z1), z2 = a1 w2 + b2, a2 = σ(z2), error
E = 1/(2n) Σ (T - a2)^2, here for one sample (n = 1). The notes print no numbers for this example
(no target T, no learning rate), only the factors of each chain.
"""

from ..documents import KERAS_COURSE, KERAS_COURSE_NOTES
from ..registry import Claim

T = "backprop"
ROLE_003 = "Backpropagation: The Role of Backpropagation in Training"
W2_002 = "Backpropagation: Weight Update for w2"
B2_002 = "Backpropagation: Bias Update for b2"
W1_002 = "Backpropagation: Weight Update for w1"
B1_002 = "Backpropagation: Bias Update for b1"
MISSING_A2 = ("the factor ∂a2/∂z2 = a2(1 - a2) of the output sigmoid is missing: ∂E/∂b2 = ∂E/∂a2 · ∂a2/∂z2 · "
              "∂z2/∂b2 = -(T - a2) · a2(1 - a2) · 1. The w2 paragraph just above lists that factor, and 003 "
              "writes the full chain ∂E/∂a2 · ∂a2/∂z2 · ∂z2/∂b2.")


def _formula(id_, document, section, printed, transcription, quote, **extra):
    return Claim(id=f"{T}.{id_}", topic=T, document=document, section=section, printed=printed, quote=quote,
                 form="formula", transcription=transcription, **extra)


CLAIMS = [
    # 003: the chain for w2 and for w1, factor by factor
    _formula("dE-da2-003", KERAS_COURSE_NOTES, ROLE_003, "-(T - a_2)", "-(T - a2)",
             r"\frac{\delta E}{\delta a_2} = -(T - a_2)$", note="for one sample: with n samples each term carries 1/n"),
    _formula("da2-dz2-003", KERAS_COURSE_NOTES, ROLE_003, "a_2(1 - a_2)", "a2*(1 - a2)",
             r"\frac{\delta a_2}{\delta z_2} = a_2(1 - a_2)$"),
    _formula("dz2-dw2-003", KERAS_COURSE_NOTES, ROLE_003, "a_1", "a1", r"\frac{\delta z_2}{\delta w_2} = a_1$"),
    _formula("dz2-da1-003", KERAS_COURSE_NOTES, ROLE_003, "w_2", "w2", r"\frac{\delta z_2}{\delta a_1} = w_2$"),
    _formula("da1-dz1-003", KERAS_COURSE_NOTES, ROLE_003, "a_1(1 - a_1)", "a1*(1 - a1)",
             r"\frac{\delta a_1}{\delta z_1} = a_1(1 - a_1)$"),
    _formula("dz1-dw1-003", KERAS_COURSE_NOTES, ROLE_003, "x_1", "x1", r"\frac{\delta z_1}{\delta w_1} = x_1$"),
    # 002: the same, paragraph by paragraph
    _formula("dE-da2-002", KERAS_COURSE, W2_002, "-(T - a2)", "-(T - a2)",
             "The derivative of E with respect to a2 is -(T - a2)."),
    _formula("da2-dz2-002", KERAS_COURSE, W2_002, "a2(1 - a2)", "a2*(1 - a2)",
             "The derivative of a2 with respect to z2 is a2(1 - a2)."),
    _formula("dz2-dw2-002", KERAS_COURSE, W2_002, "a1", "a1", "The derivative of z2 with respect to w2 is a1."),
    _formula("dE-db2-002", KERAS_COURSE, B2_002, "-(T - a2)", "-(T - a2)",
             "The derivative of E with respect to b2 is -(T - a2).", reason=MISSING_A2),
    _formula("dE-da1-002", KERAS_COURSE, W1_002, "-(T - a2) * w2 * a1(1 - a1)", "-(T - a2)*w2*a1*(1 - a1)",
             "The derivative of E with respect to a1 is -(T - a2) * w2 * a1(1 - a1).",
             reason="∂E/∂a1 = ∂E/∂a2 · ∂a2/∂z2 · ∂z2/∂a1 = -(T - a2) · a2(1 - a2) · w2. The printed form lacks "
                    "a2(1 - a2) and carries a1(1 - a1), which is ∂a1/∂z1, the next line's factor; so it is "
                    "neither ∂E/∂a1 nor ∂E/∂z1 = -(T - a2) a2(1 - a2) w2 a1(1 - a1)."),
    _formula("da1-dz1-002", KERAS_COURSE, W1_002, "a1(1 - a1)", "a1*(1 - a1)",
             "The derivative of a1 with respect to z1 is a1(1 - a1)."),
    _formula("dz1-dw1-002", KERAS_COURSE, W1_002, "x1", "x1", "The derivative of z1 with respect to w1 is x1."),
    _formula("dE-db1-002", KERAS_COURSE, B1_002, "-(T - a2) * w2 * a1(1 - a1)", "-(T - a2)*w2*a1*(1 - a1)",
             "The derivative of E with respect to b1 is -(T - a2) * w2 * a1(1 - a1).",
             reason="∂E/∂b1 = -(T - a2) · a2(1 - a2) · w2 · a1(1 - a1) · 1: the factor a2(1 - a2) of the output "
                    "sigmoid is missing (the same slip as in ∂E/∂b2 and ∂E/∂a1)."),
]
