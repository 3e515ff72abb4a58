"""Printed values of the topic ``attention``."""

from ..documents import KERAS_COURSE_NOTES
from ..registry import Claim

T = "attention"
EXAMPLE = "Self-Attention Mechanism (for Text): Example of Self-Attention"

CLAIMS = [
    Claim(id="attention.position-the", topic=T, document=KERAS_COURSE_NOTES,
          section=EXAMPLE + ": 2. Positional encoding", printed="[3, 1, 3, 1]",
          quote='"The" = [1 0 1 0] + [2 1 2 1] = [3, 1, 3, 1]'),
    Claim(id="attention.position-dog", topic=T, document=KERAS_COURSE_NOTES,
          section=EXAMPLE + ": 2. Positional encoding", printed="[2, 6, 2, 6]",
          quote='"Dog" = [0 2 0 2] + [2 4 2 4] = [2, 6, 2, 6]'),
    Claim(id="attention.position-runs", topic=T, document=KERAS_COURSE_NOTES,
          section=EXAMPLE + ": 2. Positional encoding", printed="[5, 5, 5, 5]",
          quote='"Runs" = [1 1 1 1] + [4 4 4 4] = [5, 5, 5, 5]'),
    Claim(id="attention.scores", topic=T, document=KERAS_COURSE_NOTES, section=EXAMPLE + ": 4. Attention scores",
          printed="[[2, 4, 4], [4, 16, 12], [4, 12, 10]]",
          quote="Q\\K\tThe\tdog\truns\nThe\t2\t4\t4\ndog\t4\t16\t12\nruns\t4\t12\t10",
          note="Q K^T of the notes' Q and K, unscaled: row = query, column = key"),
    Claim(id="attention.dog-itself", topic=T, document=KERAS_COURSE_NOTES, section=EXAMPLE + ": 4. Attention scores",
          printed="16", quote='The **query for "Dog"** gives **highest relevance to itself (16)**.',
          note="the largest score in the query row of 'dog' (its key is shown next to it)"),
    Claim(id="attention.runs-ranking", topic=T, document=KERAS_COURSE_NOTES, section=EXAMPLE + ": 4. Attention scores",
          printed='"Dog" (12), then "Runs" (10), then "The" (4)',
          quote='The **query for "Runs"** is most related to "Dog" (12), then "Runs" (10), then "The" (4).',
          note="the query row of 'runs', sorted from the highest score down (the keys in that order are shown)"),
    Claim(id="attention.weights-sum", topic=T, document=KERAS_COURSE_NOTES,
          section=EXAMPLE + ": 5. Softmax normalization", printed="1",
          quote="This produces a **probability distribution** over the tokens, summing to 1, for example:",
          tolerance=1e-12, tolerance_note="an identity: exact up to floating-point rounding",
          note="the row sums of attention_forward's weights, unscaled and scaled (the one farthest from 1)"),
    Claim(id="attention.weights-example", topic=T, document=KERAS_COURSE_NOTES,
          section=EXAMPLE + ": 5. Softmax normalization", printed="The: 0.05, Dog: 0.65, Runs: 0.30",
          quote="- o The: 0.05\n- o Dog: 0.65\n- o Runs: 0.30", kind="illustrative",
          note="'for example' (NOTES.md: given, not derived); computed: the softmax of dog's unscaled scores"),
    Claim(id="attention.output-dog", topic=T, document=KERAS_COURSE_NOTES, section=EXAMPLE + ": 6. Weighted sums",
          printed="[1.95, 7.10, 1.05]", quote="&= [1.95, 7.10, 1.05]",
          note="0.05·V1 + 0.65·V2 + 0.30·V3 with the notes' example weights (not softmax outputs)"),
]
