"""Printed values of the topic ``activations``."""

from ..documents import KERAS_COURSE, KERAS_COURSE_NOTES, UNIVERSITY_MODULE
from ..registry import Claim

T = "activations"
NEURON_Y = "Types of Neural Networks Activation Functions: worked example, output of the neuron Y"
SIGMOIDAL = "Types of Neural Networks Activation Functions: (4) Sigmoidal function"
OVERVIEW = "Activation Functions: Overview of Activation Function Types (table)"
COMMON = "Activation Functions: Commonly Used Activation Functions"

CLAIMS = [
    # --- 004: one neuron, three inputs, binary and bipolar sigmoid ---------------------------------
    Claim(id="activations.products", topic=T, document=UNIVERSITY_MODULE, section=NEURON_Y,
          printed="0.08 + 0.18 - 0.08", quote="&= 0.35 + 0.08 + 0.18 - 0.08 = 0.53",
          note="the three products x_i w_i of the net input"),
    Claim(id="activations.net-input", topic=T, document=UNIVERSITY_MODULE, section=NEURON_Y,
          printed="0.53", quote="&= 0.35 + 0.08 + 0.18 - 0.08 = 0.53"),
    Claim(id="activations.binary-sigmoid", topic=T, document=UNIVERSITY_MODULE, section=NEURON_Y,
          printed="0.625", quote=r"\frac{1}{1 + e^{-0.53}} = 0.625",
          reason="1/(1 + e^-0.53) = 0.62948, which is 0.629 at the printed three decimals. 0.625 is the "
                 "sigmoid of 0.511, not of 0.53; the bipolar value 0.259 printed next to it equals "
                 "2 * 0.62948 - 1, so the net input 0.53 is right and only this last step slipped."),
    Claim(id="activations.bipolar-sigmoid", topic=T, document=UNIVERSITY_MODULE, section=NEURON_Y,
          printed="0.259", quote=r"\left(\frac{2}{1 + e^{-0.53}} \right) - 1 = 0.259"),
    # --- 004: the derivations of the two sigmoids --------------------------------------------------
    Claim(id="activations.binary-sigmoid-derivative", topic=T, document=UNIVERSITY_MODULE, section=SIGMOIDAL,
          printed=r"\lambda f(x) [1 - f(x)]", quote=r"= \lambda f(x) [1 - f(x)]", form="formula",
          transcription="lam * f * (1 - f)",
          note="f(x) = 1/(1 + e^(-lambda x)), the binary (logistic) sigmoid with steepness lambda"),
    Claim(id="activations.bipolar-sigmoid-rewritten", topic=T, document=UNIVERSITY_MODULE, section=SIGMOIDAL,
          printed=r"\frac{1-e^{-\lambda x}}{1+e^{-\lambda x}}", form="formula",
          quote=r"= \frac{1-e^{-\lambda x}}{1+e^{-\lambda x}}",
          transcription="(1 - exp(-lam*x)) / (1 + exp(-lam*x))",
          note="the notes' rewriting of 2/(1 + e^(-lambda x)) - 1"),
    Claim(id="activations.bipolar-sigmoid-derivative", topic=T, document=UNIVERSITY_MODULE, section=SIGMOIDAL,
          printed=r"\frac{\lambda e^{-\lambda x} [1+e^{-\lambda x} + 1-e^{-\lambda x}]}{(1+e^{-\lambda x})^2}",
          quote=r"&= \frac{\lambda e^{-\lambda x} [1+e^{-\lambda x} + 1-e^{-\lambda x}]}{(1+e^{-\lambda x})^2}",
          form="formula",
          transcription="lam*exp(-lam*x) * (1 + exp(-lam*x) + 1 - exp(-lam*x)) / (1 + exp(-lam*x))**2",
          note="the notes stop here; it simplifies to (lambda/2)(1 + f)(1 - f)"),
    # --- ranges ---------------------------------------------------------------------------------------
    Claim(id="activations.range.sigmoid-004", topic=T, document=UNIVERSITY_MODULE, section=SIGMOIDAL,
          printed="0 to 1", quote="Range of this sigmoid function is 0 to 1", form="range"),
    Claim(id="activations.range.bipolar-sigmoid-004", topic=T, document=UNIVERSITY_MODULE, section=SIGMOIDAL,
          printed="between -1 and $+1$", quote="the range is between -1 and $+1$", form="range"),
    Claim(id="activations.range.tanh-004", topic=T, document=UNIVERSITY_MODULE, section="LSTM: Tanh Function",
          printed="between -1 and 1", quote="outputs values between -1 and 1", form="range"),
    Claim(id="activations.range.sigmoid-002", topic=T, document=KERAS_COURSE,
          section="Activation Functions in Neural Networks: Sigmoid Function",
          printed="0 to 1", quote="Sigmoid function ranges from 0 to 1.", form="range"),
    Claim(id="activations.range.tanh-002", topic=T, document=KERAS_COURSE,
          section="Activation Functions in Neural Networks: Hyperbolic Tangent (tanh) Function",
          printed="-1 to +1", quote="Similar to sigmoid but ranges from -1 to +1.", form="range"),
    Claim(id="activations.range.sigmoid-003", topic=T, document=KERAS_COURSE_NOTES, section=COMMON + ": Sigmoid",
          printed="(0,1)", quote="Range: (0,1)", form="range"),
    Claim(id="activations.range.tanh-003", topic=T, document=KERAS_COURSE_NOTES, section=COMMON + ": Tanh",
          printed="(-1,1)", quote="Range: (-1,1)", form="range"),
    Claim(id="activations.range.relu-003", topic=T, document=KERAS_COURSE_NOTES, section=COMMON + ": ReLU",
          printed="{0,∞)", quote="Range: {0,∞)", form="range",
          reason="typographical: an opening brace where a bracket belongs; ReLU takes every value from 0 "
                 "(included) upwards, [0, ∞), as the overview table of the same document prints."),
    Claim(id="activations.range.softmax-003", topic=T, document=KERAS_COURSE_NOTES, section=COMMON + ": Softmax",
          printed="(0, 1)", quote="Range: (0, 1), and all outputs sum to 1.", form="range",
          note="each output of a softmax over finite inputs"),
    Claim(id="activations.table.binary-step", topic=T, document=KERAS_COURSE_NOTES, section=OVERVIEW,
          printed="{0, 1}", quote="Binary Step\t{0, 1}\tSimple thresholding", form="range"),
    Claim(id="activations.table.linear", topic=T, document=KERAS_COURSE_NOTES, section=OVERVIEW,
          printed=r"$-\infty, \infty$", quote="Linear (Identity)\t$-\\infty, \\infty$\tRegression models",
          form="range", note="printed without brackets; unbounded ends are open"),
    Claim(id="activations.table.sigmoid", topic=T, document=KERAS_COURSE_NOTES, section=OVERVIEW,
          printed="(0, 1)", quote="Sigmoid\t(0, 1)\tHistorically in hidden layers", form="range"),
    Claim(id="activations.table.tanh", topic=T, document=KERAS_COURSE_NOTES, section=OVERVIEW,
          printed="(-1, 1)", quote="Tanh\t(-1, 1)\tHidden layers (less common now)", form="range"),
    Claim(id="activations.table.relu", topic=T, document=KERAS_COURSE_NOTES, section=OVERVIEW,
          printed=r"$[0, \infty)$", quote="ReLU\t$[0, \\infty)$\tHidden layers (standard today)", form="range"),
    Claim(id="activations.table.leaky-relu", topic=T, document=KERAS_COURSE_NOTES, section=OVERVIEW,
          printed=r"$(-\infty, \infty)$", quote="Leaky ReLU\t$(-\\infty, \\infty)$\tHidden layers", form="range"),
    Claim(id="activations.table.softmax", topic=T, document=KERAS_COURSE_NOTES, section=OVERVIEW,
          printed="(0, 1)", quote="Softmax\t(0, 1), sums to 1\tOutput layer of classifiers", form="range"),
    Claim(id="activations.table.softmax-sum", topic=T, document=KERAS_COURSE_NOTES, section=OVERVIEW,
          printed="1", quote="Softmax\t(0, 1), sums to 1\tOutput layer of classifiers",
          tolerance=1e-12, tolerance_note="an identity: exact up to floating-point rounding",
          note="the sum of the softmax outputs, here of random logits"),
]
