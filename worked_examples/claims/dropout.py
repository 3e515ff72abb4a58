"""Printed values of the topic ``dropout``."""

from ..documents import UNIVERSITY_MODULE
from ..registry import Claim

T = "dropout"
DROPOUT = "Dropout (its heading is lost): Solution to the problem"

CLAIMS = [
    Claim(id="dropout.scale-formula", topic=T, document=UNIVERSITY_MODULE, section=DROPOUT, form="formula",
          printed=r"\frac{1}{1-r_d}", transcription="1/(1 - r_d)",
          quote=r"The remaining neurons have their values multiplied by $\frac{1}{1-r_d}$ so that the overall sum of "
                r"the neuron values remains the same.",
          note="the scale that keeps each unit's expected value: solved by SymPy"),
    Claim(id="dropout.survivor-scale", topic=T, document=UNIVERSITY_MODULE, section=DROPOUT, printed="x1.5",
          quote="The dropout rate is 1/3, and the remaining 4 neurons at each training step have their value scaled "
                "by $x1.5$.",
          note="the value dropout_forward gives a surviving 1 at rate 1/3"),
    Claim(id="dropout.survivors", topic=T, document=UNIVERSITY_MODULE, section=DROPOUT, printed="4",
          quote="The dropout rate is 1/3, and the remaining 4 neurons at each training step have their value scaled "
                "by $x1.5$.",
          note="each unit is kept with probability 2/3 on its own (Keras, the toolkit), so the count varies "
               "from step to step; computed: its average over 100,000 masks of 6 units, the expectation is 4"),
]
