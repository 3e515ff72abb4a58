"""Printed values of the topic ``pooling``."""

from ..documents import FIGURE_FACTS, UNIVERSITY_MODULE
from ..registry import Claim

T = "pooling"
MAX_004 = "Convolution Neural Network: Pooling layer (max pooling with a stride of 2 using 2x2 filter)"
LAYERS_004 = "Layers used to build ConvNets: Types of layers (pooling layer)"

CLAIMS = [
    Claim(id="pooling.input", topic=T, document=UNIVERSITY_MODULE, section=MAX_004 + ": its input",
          printed="[[0.1, 0, 1.0, 0.4], [0, 0.5, 0.4, 1.6], [0.3, 0.2, 1.7, 1.1], [0.2, 0.4, 1.1, 1.7]]",
          quote="0.1\t0\t1.0\t0.4\n0\t0.5\t0.4\t1.6\n0.3\t0.2\t1.7\t1.1\n0.2\t0.4\t1.1\t1.7\n\n \nConvoluted Matrix",
          kind="illustrative", note="the 4x4 'convoluted matrix' that 004 pools: an input, read from here"),
    Claim(id="pooling.max-2x2", topic=T, document=UNIVERSITY_MODULE, section=MAX_004,
          printed="[[0.5, 1.6], [0.4, 1.7]]", quote="0.5\t1.6\n0.4\t1.7\n\n \nPooling Result",
          note="pooling the 4x4 'convoluted matrix' printed above it (NOTES.md confirms the pairing)"),
    Claim(id="pooling.second-figure", topic=T, document=FIGURE_FACTS, section=LAYERS_004 + ": the lost figure",
          printed="[[6, 8], [3, 4]]", quote="a second figure shows only the result [[6, 8], [3, 4]]",
          kind="illustrative", note="its input matrix was in the lost figure: nothing to recompute"),
    Claim(id="pooling.volume", topic=T, document=UNIVERSITY_MODULE, section=LAYERS_004,
          printed=r"$16 \times 16 \times 12$",
          quote=r"If we use a max pool with 2×2 filters and stride 2, the resultant volume will be of dimension "
                r"$16 \times 16 \times 12$.",
          note="a 32x32x12 volume, max-pooled with 2x2 windows and stride 2"),
]
