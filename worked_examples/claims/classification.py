"""Printed values of the topic ``classification``."""

from ..documents import KERAS_COURSE, KERAS_COURSE_NOTES
from ..registry import Claim

T = "classification"
KERAS_003 = "Classification Models with Keras"
PREDICT_002 = "Classification Models with Keras: Interpreting Predictions"

CLAIMS = [
    Claim(id="classification.one-hot", topic=T, document=KERAS_COURSE_NOTES, section=KERAS_003 + ": 1. Preparing data",
          printed="[0, 0, 1, 0]", quote="If there are 4 classes, each target row becomes a vector like [0, 0, 1, 0].",
          note="the one-hot row of class 2 among 4 classes"),
    Claim(id="classification.prediction", topic=T, document=KERAS_COURSE_NOTES,
          section=KERAS_003 + ": 4. Compiling the Model (fit and predict)", printed="[0.01, 0.92, 0.04, 0.03]",
          quote="-> [0.01, 0.92, 0.04, 0.03]", kind="illustrative",
          note="a prediction 'might look like' this: an example, used here as an input"),
    Claim(id="classification.probabilities-sum", topic=T, document=KERAS_COURSE, section=PREDICT_002, printed="1",
          quote="The probabilities should sum to 1 for each data point.", tolerance=1e-12,
          tolerance_note="an identity: exact up to floating-point rounding",
          note="the softmax outputs of a (seeded, untrained) 8-5-5-4 network, each row"),
]
