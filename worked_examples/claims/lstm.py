"""Printed values of the topic ``lstm``."""

from ..documents import UNIVERSITY_MODULE
from ..registry import Claim

T = "lstm"

CLAIMS = [
    Claim(id="lstm.gate-range", topic=T, document=UNIVERSITY_MODULE,
          section="LSTM: Tanh Function (the sigmoid in the gates: 1. Decision Making)", printed="0 to 1",
          quote="Sigmoid's output range of 0 to 1 is perfect for making binary decisions.", form="range",
          note="the set of values of the gates i, f, o = σ(z); the kernel's gates stay inside it"),
    Claim(id="lstm.candidate-range", topic=T, document=UNIVERSITY_MODULE,
          section="LSTM: Tanh Function (1. Cell State Updates)", printed="between -1 and 1",
          quote="When new information is added to the cell state, tanh helps in scaling the values, ensuring that "
                "they remain normalized between -1 and 1.", form="range",
          note="the new information g = tanh(z_c) is bounded; the cell state c itself is not (shown below)"),
]
