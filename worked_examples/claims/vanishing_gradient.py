"""Printed values of the topic ``vanishing-gradient``."""

from ..documents import KERAS_COURSE, KERAS_COURSE_NOTES
from ..registry import Claim

T = "vanishing-gradient"
OVERVIEW = "Vanishing Gradient: The Vanishing Gradient Problem: Overview"
PROBLEMATIC = "Vanishing Gradient: Why Sigmoid is Problematic"
LIMITS = "Activation Functions: Limitations of the Sigmoid Function"
SIGMOID_002 = "Activation Functions in Neural Networks: Sigmoid Function"

CLAIMS = [
    Claim(id="vanishing-gradient.sigmoid-at-zero", topic=T, document=KERAS_COURSE_NOTES, section=LIMITS,
          printed="0.5", quote=r"- $\sigma(0) = 0.5$"),
    Claim(id="vanishing-gradient.derivative-range", topic=T, document=KERAS_COURSE_NOTES, section=OVERVIEW,
          printed="between 0 and 0.25", quote="The **derivative** of the sigmoid is also between 0 and 0.25",
          form="range", note="the set of values of σ'(z) = σ(z)(1 - σ(z)) over all z: (0, 1/4]"),
    Claim(id="vanishing-gradient.derivative-max", topic=T, document=KERAS_COURSE_NOTES, section=PROBLEMATIC,
          printed="0.25", quote="Their gradients are **less than or equal to 0.25**",
          note="the largest value of σ'(z), reached at z = 0"),
    Claim(id="vanishing-gradient.output-range", topic=T, document=KERAS_COURSE_NOTES, section=PROBLEMATIC,
          printed="between 0 and 1", quote="Their output is **bounded** between 0 and 1", form="range"),
    Claim(id="vanishing-gradient.saturation-003", topic=T, document=KERAS_COURSE_NOTES,
          section=LIMITS + ": Vanishing Gradient Issue", printed="± 3", kind="illustrative",
          quote="In these saturation zones (e.g., beyond ± 3), the derivative becomes **extremely small**",
          note="a rule of thumb: σ'(3) is shown"),
    Claim(id="vanishing-gradient.saturation-002", topic=T, document=KERAS_COURSE, section=SIGMOID_002,
          printed="±3", kind="illustrative", quote="Gradients become very small beyond the ±3 range",
          note="a rule of thumb: σ'(3) is shown"),
]
