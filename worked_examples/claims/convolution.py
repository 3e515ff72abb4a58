"""Printed values of the topic ``convolution``."""

from ..documents import UNIVERSITY_MODULE
from ..registry import Claim

T = "convolution"
PADDING = "Problem With Convolution Layers Without Padding"
EFFECT = "Effect Of Padding On Input Images"
LAYERS = "Layers used to build ConvNets: Types of layers (convolutional layers)"

CLAIMS = [
    Claim(id="convolution.feature-map", topic=T, document=UNIVERSITY_MODULE,
          section="Convolution Neural Network: Pooling layer (its input, the 'Convoluted Matrix')",
          printed="[[0.1, 0, 1.0, 0.4], [0, 0.5, 0.4, 1.6], [0.3, 0.2, 1.7, 1.1], [0.2, 0.4, 1.1, 1.7]]",
          quote="0.1\t0\t1.0\t0.4\n0\t0.5\t0.4\t1.6\n0.3\t0.2\t1.7\t1.1\n0.2\t0.4\t1.1\t1.7\n\n \nConvoluted Matrix",
          kind="illustrative",
          note="the kernel that made it (3x3, weights 0 and 1) was in a lost figure; the closest one is shown"),
    Claim(id="convolution.valid-size-formula", topic=T, document=UNIVERSITY_MODULE, section=PADDING,
          printed="(n - f + 1)", quote=r"- $(n - f + 1) \times (n - f + 1)$.", form="formula",
          transcription="n - f + 1", note="rows (and columns) of a valid convolution of n x n by f x f, stride 1"),
    Claim(id="convolution.valid-8-by-3", topic=T, document=UNIVERSITY_MODULE, section=PADDING, printed="(6×6)",
          quote="For example, for an (8×8) image and (3×3) filter, the output resulting after the convolution "
                "operation would be of size (6×6) ."),
    Claim(id="convolution.padded-size-formula", topic=T, document=UNIVERSITY_MODULE, section=EFFECT,
          printed="(n + 2p - f + 1)", form="formula", transcription="n + 2*p - f + 1",
          quote=r"\rightarrow \text{outputs } (n + 2p - f + 1) \times (n + 2p - f + 1) \text{ images}$"),
    Claim(id="convolution.padded-8-by-3", topic=T, document=UNIVERSITY_MODULE, section=EFFECT, printed="(8×8)",
          quote="using a (3×3) filter we would get an (8×8) output after performing a convolution operation."),
    Claim(id="convolution.volume", topic=T, document=UNIVERSITY_MODULE, section=LAYERS,
          printed=r"$32 \times 32 \times 12$",
          quote=r"Suppose we use a total of 12 filters for this layer we'll get an output volume of dimension "
                r"$32 \times 32 \times 12$.",
          note="a 32x32x3 image through 12 filters; the size is kept, so 'same' padding (the notes leave the "
               "filter size open: 3x3 here)"),
]
