"""Printed formulas of the topic ``loss-functions``."""

from ..documents import UNIVERSITY_MODULE
from ..registry import Claim

T = "loss-functions"
SECTION = "Loss Functions in Deep Learning"

CLAIMS = [
    Claim(id="loss-functions.cross-entropy", topic=T, document=UNIVERSITY_MODULE,
          section=SECTION + ": The Cross-Entropy Loss", printed=r"- \sum_{i=0}^N \hat{y}_i \cdot \log(y_i)",
          quote=r"\mathcal{L}(\theta) = - \sum_{i=0}^N \hat{y}_i \cdot \log(y_i)$$", form="formula",
          transcription="-Sum(t[i]*log(y[i]), (i, 0, N))",
          note="y the prediction, ŷ (t here) the truth; the N + 1 entries are numbered 0..N"),
    Claim(id="loss-functions.mse", topic=T, document=UNIVERSITY_MODULE,
          section=SECTION + ": Mean Squared Error Loss", printed=r"\frac{1}{N} \sum_{i=0}^N (y_i - \hat{y}_i)^2",
          quote=r"\mathcal{L}(\theta) = \frac{1}{N} \sum_{i=0}^N (y_i - \hat{y}_i)^2$$", form="formula",
          transcription="Sum((y[i] - t[i])**2, (i, 0, N)) / N",
          reason="the sum runs from i = 0 to N, N + 1 terms, but is divided by N, so it is not the mean "
                 "of the squared errors; with N entries the index runs over 0..N-1 (or 1..N). The toolkit's "
                 "'mse' (and Keras') is the mean."),
]
