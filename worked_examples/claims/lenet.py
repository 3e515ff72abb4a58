"""Printed values of the topic ``lenet``."""

from ..documents import UNIVERSITY_MODULE
from ..registry import Claim

T = "lenet"
LENET = "LeNet – First CNN Architecture"
TABLE = LENET + ": Summary of LeNet-5 architecture (table)"
COMPARISON = "Different types of CNN architectures: comparison table"
TABLE_NOTE = ("the table's header has one column too few: each row holds layer, type, feature maps, size, "
              "kernel, stride; compared here: feature maps and size")

CLAIMS = [
    Claim(id="lenet.c1-volume", topic=T, document=UNIVERSITY_MODULE, section=LENET + ": (1) First Layer",
          printed=r"$28 \times 28 \times 6$",
          quote=r"The image dimensions changes from $32 \times 32 \times 1$ to $28 \times 28 \times 6$."),
    Claim(id="lenet.s2-volume", topic=T, document=UNIVERSITY_MODULE, section=LENET + ": (2) Second Layer",
          printed=r"$14 \times 14 \times 6$",
          quote=r"The resulting image dimensions will be reduced to $14 \times 14 \times 6$."),
    Claim(id="lenet.c3-connections", topic=T, document=UNIVERSITY_MODULE, section=LENET + ": (3) Third Layer",
          printed="10 out of 16",
          quote="In this layer, only 10 out of 16 feature maps are connected to 6 feature maps of the previous layer.",
          note="read as LeCun's Table I has it: each of the 6 S2 maps feeds 10 of the 16 C3 maps (only one C3 "
               "map sees all 6); computed by probing LeCun's sparse C3, built from conv2d_forward"),
    Claim(id="lenet.s4-volume", topic=T, document=UNIVERSITY_MODULE, section=LENET + ": (4) Fourth Layer",
          printed=r"$5 \times 5 \times 16$",
          quote=r"This layer is the same as the second layer (S2) except it has 16 feature maps so the output will "
                r"be reduced to $5 \times 5 \times 16$."),
    Claim(id="lenet.c5-maps", topic=T, document=UNIVERSITY_MODULE, section=LENET + ": (5) Fifth Layer",
          printed="120 feature maps each of size 1×1",
          quote="The fifth layer (C5) is a fully connected convolutional layer with 120 feature maps each of size "
                "1×1 ."),
    Claim(id="lenet.c5-fan-in", topic=T, document=UNIVERSITY_MODULE, section=LENET + ": (5) Fifth Layer",
          printed="400",
          quote=r"Each of the 120 units in C5 is connected to all the 400 nodes ($5 \times 5 \times 16$) in the "
                r"fourth layer S4.",
          note="the values S4 hands to each C5 unit: its output flattened"),
    Claim(id="lenet.f6-units", topic=T, document=UNIVERSITY_MODULE, section=LENET + ": (6) Sixth Layer",
          printed="84 units", quote="The sixth layer is a fully connected layer (F6) with 84 units."),
    Claim(id="lenet.output-units", topic=T, document=UNIVERSITY_MODULE, section=LENET + ": (7) Output Layer",
          printed="10 possible values",
          quote=r"Finally, there is a fully connected softmax output layer \hat{y} with 10 possible values "
                r"corresponding to the digits from 0 to 9."),
    Claim(id="lenet.table.layer1", topic=T, document=UNIVERSITY_MODULE, section=TABLE, printed="6, 28×28",
          quote="1\tConvolution\t6\t28×28\t5×5\t1", note=TABLE_NOTE),
    Claim(id="lenet.table.layer2", topic=T, document=UNIVERSITY_MODULE, section=TABLE, printed="6, 14×14",
          quote="2\tAverage pooling\t6\t14×14\t2×2\t2"),
    Claim(id="lenet.table.layer3", topic=T, document=UNIVERSITY_MODULE, section=TABLE, printed="16, 10×10",
          quote="3\tConvolution\t16\t10×10\t5×5\t1", note="C3's size is printed only here"),
    Claim(id="lenet.table.layer4", topic=T, document=UNIVERSITY_MODULE, section=TABLE, printed="16, 5×5",
          quote="4\tAverage Pooling\t16\t5×5\t2×2\t2"),
    Claim(id="lenet.table.layer5", topic=T, document=UNIVERSITY_MODULE, section=TABLE, printed="120, 1×1",
          quote="5\tConvolution\t120\t1×1\t5×5\t1"),
    Claim(id="lenet.alternating-layers", topic=T, document=UNIVERSITY_MODULE, section=COMPARISON,
          printed="5 layers",
          quote="LeNet\t1998\tFirst successful applications of CNNs, 5 layers (alternating between convolutional "
                "and pooling)",
          note="C1, S2, C3, S4, C5: the convolution and pooling layers of the toolkit's zoo.lenet5"),
]
