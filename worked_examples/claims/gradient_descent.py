"""Printed values of the topic ``gradient-descent``."""

from ..documents import KERAS_COURSE, KERAS_COURSE_NOTES, UNIVERSITY_MODULE
from ..registry import Claim

T = "gradient-descent"
STEP_004 = "Loss Functions in Deep Learning: one gradient-descent step"
COST_003 = "Gradient Descent: Understanding the Cost Function"
VISUAL_003 = "Gradient Descent: Visualizing the Iterative Optimization"
VISUAL_002 = "Gradient Descent: Visualizing Gradient Descent"
EXACT = "the minimum is exactly there; gradient descent runs until the step is below 1e-12"

CLAIMS = [
    Claim(id="gradient-descent.gradient-formula", topic=T, document=UNIVERSITY_MODULE, section=STEP_004,
          printed=r"-x_1(6 - w_{11} \cdot x_1)", quote=r"= -x_1(6 - w_{11} \cdot x_1) = 8", form="formula",
          transcription="-x1*(6 - w11*x1)", note="the derivative of L(w11) = 1/2 (6 - w11 x1)^2"),
    Claim(id="gradient-descent.gradient", topic=T, document=UNIVERSITY_MODULE, section=STEP_004, printed="8",
          quote=r"= -x_1(6 - w_{11} \cdot x_1) = 8"),
    Claim(id="gradient-descent.new-weight", topic=T, document=UNIVERSITY_MODULE, section=STEP_004, printed="4.2",
          quote=r"w_{11_{new}} = w_{11_{old}} - 0.1 \cdot 8 = 4.2"),
    Claim(id="gradient-descent.optimum-004", topic=T, document=UNIVERSITY_MODULE, section=STEP_004, printed="3",
          quote="In this case, the value for the optimal weight is 3", tolerance=1e-6, tolerance_note=EXACT),
    Claim(id="gradient-descent.optimum-003", topic=T, document=KERAS_COURSE_NOTES, section=COST_003, printed="2",
          quote="a unique global minimum at $w = 2$", tolerance=1e-6, tolerance_note=EXACT),
    Claim(id="gradient-descent.optimum-002", topic=T, document=KERAS_COURSE, section=VISUAL_002, printed="2",
          quote="approaches the optimal value of 2", tolerance=1e-6, tolerance_note=EXACT),
    Claim(id="gradient-descent.four-iterations", topic=T, document=KERAS_COURSE_NOTES, section=VISUAL_003,
          printed="2", quote="After four iterations, you can see how we're almost there at w equals 2",
          kind="illustrative",
          note="the data and the learning rate were in a lost figure; here w after four steps on illustrative ones"),
]
