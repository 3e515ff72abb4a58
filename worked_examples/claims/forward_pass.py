"""Printed values of the topic ``forward-pass``."""

from ..documents import FIGURE_FACTS, KERAS_COURSE, KERAS_COURSE_NOTES, UNIVERSITY_MODULE
from ..registry import Claim

T = "forward-pass"
EXAMPLE_002 = "Artificial Neural Networks: Example Calculation"
SINGLE_003 = "Forward Propagation in Detail: Example: Single Neuron Forward Propagation"
CHAIN_003 = "Forward Propagation in Detail: Example: Two-Neuron Chain"
CHAIN_FIGURE = "Two-neuron chain (003, 'Example: Two-Neuron Chain'): the lost figure"
FACTS = ("The notes print z1 = 0.415, a1 = 0.6023 and a final output of about 0.7153.")
MATRIX_004 = "How Does Deep Learning Work?: Forward propagation (a 2-to-3 layer)"

CLAIMS = [
    Claim(id="forward-pass.single.z-002", topic=T, document=KERAS_COURSE, section=EXAMPLE_002, printed="0.415",
          quote="Linear Combination (z) = (0.1 * 0.15) + 0.4 = 0.415"),
    Claim(id="forward-pass.single.a-002", topic=T, document=KERAS_COURSE, section=EXAMPLE_002, printed="0.6023",
          quote="Output (a) = Sigmoid(z) = 0.6023"),
    Claim(id="forward-pass.single.a-003", topic=T, document=KERAS_COURSE_NOTES, section=SINGLE_003,
          printed="0.6023", quote="This value (0.6023) is the output of the neuron."),
    Claim(id="forward-pass.chain.z1", topic=T, document=FIGURE_FACTS, section=CHAIN_FIGURE, printed="0.415",
          quote=FACTS),
    Claim(id="forward-pass.chain.a1", topic=T, document=FIGURE_FACTS, section=CHAIN_FIGURE, printed="0.6023",
          quote=FACTS),
    Claim(id="forward-pass.chain.output-figure", topic=T, document=FIGURE_FACTS, section=CHAIN_FIGURE,
          printed="0.7153", quote=FACTS, note="printed as 'about'; judged at its four printed decimals"),
    Claim(id="forward-pass.chain.output", topic=T, document=KERAS_COURSE_NOTES, section=CHAIN_003,
          printed="0.7153", quote="the network outputs a final prediction of approximately **0.7153**",
          note="printed as 'approximately'; judged at its four printed decimals (0.715252 rounds to 0.7153)"),
    Claim(id="forward-pass.matrix.layer", topic=T, document=UNIVERSITY_MODULE, section=MATRIX_004,
          printed=r"\begin{pmatrix} x_1 w_{11} + x_2 w_{21}, & x_1 w_{12} + x_2 w_{22}, & x_1 w_{13} + x_2 w_{23} "
                  r"\end{pmatrix}",
          quote=r"&= \begin{pmatrix} x_1 w_{11} + x_2 w_{21}, & x_1 w_{12} + x_2 w_{22}, & x_1 w_{13} + x_2 w_{23} "
                r"\end{pmatrix} \\",
          form="formula",
          transcription="Matrix([[x1*w11 + x2*w21, x1*w12 + x2*w22, x1*w13 + x2*w23]])",
          note="x^T W for two inputs and three outputs: W has one row per input, one column per output"),
]
