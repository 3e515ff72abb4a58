"""Printed values of the topic ``rnn``."""

from ..documents import UNIVERSITY_MODULE
from ..registry import Claim

T = "rnn"
BPTT = "Backpropagation Through Time (BPTT)"
NAMES = ("W is the recurrent weight (W_hh) of a one-unit RNN h_k = f(W h_(k-1) + U x_k), L a loss of h_3; "
         "a superscript + marks the explicit derivative (h_(k-1) held constant), as the notes define it")

CLAIMS = [
    Claim(id="rnn.bptt-loss-sum", topic=T, document=UNIVERSITY_MODULE, section=BPTT, form="formula",
          printed=r"\sum_{t=1}^T \frac{\partial L(\theta)}{\partial W}",
          quote=r"$$\frac{\partial L(\theta)}{\partial W} = \sum_{t=1}^T \frac{\partial L(\theta)}{\partial W}$$",
          transcription="Sum(dL_dW, (t, 1, T))",
          reason="a subscript is lost: summed over t without one, the right side is T times the left (here "
                 "3 ∂L/∂W). Meant is a sum of per-step terms, either of per-step losses L_t (∂L/∂W = Σ_t "
                 "∂L_t/∂W when L = Σ_t L_t) or of the contributions of the copy of W used at step t, which is "
                 "the BPTT sum derived below.",
          note="L a loss of h_3 after three steps (T = 3), as in the notes' example"),
    Claim(id="rnn.bptt-expansion", topic=T, document=UNIVERSITY_MODULE, section=BPTT, form="formula",
          printed=r"\frac{\partial h_3^+}{\partial W} + \frac{\partial h_3}{\partial h_2} \frac{\partial h_2^+}"
                  r"{\partial W} + \frac{\partial h_3}{\partial h_2} \frac{\partial h_2}{\partial h_1} "
                  r"\left[\frac{\partial h_1^+}{\partial W} \right]",
          quote=r"&= \frac{\partial h_3^+}{\partial W} + \frac{\partial h_3}{\partial h_2} \frac{\partial h_2^+}"
                r"{\partial W} + \frac{\partial h_3}{\partial h_2} \frac{\partial h_2}{\partial h_1} "
                r"\left[\frac{\partial h_1^+}{\partial W} \right]\end{aligned}$$",
          transcription="dh3p_dW + dh3_dh2*dh2p_dW + dh3_dh2*dh2_dh1*dh1p_dW",
          note="the last line of the expansion of dh_3/dW; " + NAMES),
    Claim(id="rnn.bptt-three-paths", topic=T, document=UNIVERSITY_MODULE, section=BPTT, form="formula",
          printed=r"\frac{\partial h_3^+}{\partial W} + \frac{\partial h_3}{\partial h_2} \frac{\partial h_2^+}"
                  r"{\partial W} + \frac{\partial h_3}{\partial h_1} \frac{\partial h_1^+}{\partial W}",
          quote=r"$$\frac{\partial h_3}{\partial W} = \frac{\partial h_3^+}{\partial W} + \frac{\partial h_3}"
                r"{\partial h_2} \frac{\partial h_2^+}{\partial W} + \frac{\partial h_3}{\partial h_1} "
                r"\frac{\partial h_1^+}{\partial W}$$",
          transcription="dh3p_dW + dh3_dh2*dh2p_dW + dh3_dh1*dh1p_dW",
          note="dh_3/dW with the paths 'short-circuited': dh_3/dh_1 is the whole path through h_2; " + NAMES),
    Claim(id="rnn.bptt-final", topic=T, document=UNIVERSITY_MODULE, section=BPTT, form="formula",
          printed=r"\frac{\partial L(\theta)}{\partial h_3} \sum_{k=1}^3 \frac{\partial h_3}{\partial h_k} \cdot "
                  r"\frac{\partial h_k}{\partial W}",
          quote=r"$$\frac{\partial L(\theta)}{\partial W} = \frac{\partial L(\theta)}{\partial h_3} \sum_{k=1}^3 "
                r"\frac{\partial h_3}{\partial h_k} \cdot \frac{\partial h_k}{\partial W}$$",
          transcription="dL_dh3*(dh3_dh1*dh1_dW + dh3_dh2*dh2_dW + dh3_dh3*dh3_dW)",
          reason="the superscript + is lost: ∂h_k/∂W must be the explicit derivative ∂h_k^+/∂W (h_(k-1) held "
                 "constant), as in the line before it. Without the +, the notes' expansion just above uses "
                 "∂h_k/∂W for the total derivative (∂h_2/∂W = ∂h_2^+/∂W + ...), and read that way the sum "
                 "counts every path again: its k = 3 term alone is already the whole ∂h_3/∂W. With the + it is "
                 "the BPTT sum the toolkit's kernel computes.",
          note="judged as printed, ∂h_k/∂W the total derivative; " + NAMES),
]
