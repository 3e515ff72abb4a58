"""Every registry claim, frozen: the test fails when a claim's status changes or its computed value moves.

A change here is a decision: a kernel or a topic changed a number the notes print. Review it, then
update FROZEN (numbers are compared to 1e-9 relative, formulas and ranges as SymPy prints them, so a
SymPy upgrade that prints differently also lands here).
"""

from __future__ import annotations

import numpy as np
import pytest

from worked_examples.claims import REGISTRY

from .conftest import require

FROZEN = {
    'activations.products': ('match', [0.08, 0.18, -0.08]),
    'activations.net-input': ('match', 0.53),
    'activations.binary-sigmoid': ('erratum', 0.629483111967),
    'activations.bipolar-sigmoid': ('match', 0.258966223935),
    'activations.binary-sigmoid-derivative': ('match', 'lambda*exp(-lambda*x)/(1 + exp(-lambda*x))**2'),
    'activations.bipolar-sigmoid-rewritten': ('match', '-1 + 2/(1 + exp(-lambda*x))'),
    'activations.bipolar-sigmoid-derivative': ('match', '2*lambda*exp(-lambda*x)/(1 + exp(-lambda*x))**2'),
    'activations.range.sigmoid-004': ('match', '(0, 1)'),
    'activations.range.sigmoid-002': ('match', '(0, 1)'),
    'activations.range.sigmoid-003': ('match', '(0, 1)'),
    'activations.table.sigmoid': ('match', '(0, 1)'),
    'activations.range.bipolar-sigmoid-004': ('match', '(-1, 1)'),
    'activations.range.tanh-004': ('match', '(-1, 1)'),
    'activations.range.tanh-002': ('match', '(-1, 1)'),
    'activations.range.tanh-003': ('match', '(-1, 1)'),
    'activations.table.tanh': ('match', '(-1, 1)'),
    'activations.range.relu-003': ('erratum', '[0, ∞)'),
    'activations.table.relu': ('match', '[0, ∞)'),
    'activations.table.leaky-relu': ('match', '(-∞, ∞)'),
    'activations.table.linear': ('match', '(-∞, ∞)'),
    'activations.table.binary-step': ('match', '{0, 1}'),
    'activations.range.softmax-003': ('match', '(0, 1)'),
    'activations.table.softmax': ('match', '(0, 1)'),
    'activations.table.softmax-sum': ('match', 1.0),
    'forward-pass.single.z-002': ('match', 0.415),
    'forward-pass.single.a-002': ('match', 0.602286176889),
    'forward-pass.single.a-003': ('match', 0.602286176889),
    'forward-pass.chain.z1': ('match', 0.415),
    'forward-pass.chain.a1': ('match', 0.602286176889),
    'forward-pass.chain.output-figure': ('match', 0.715251680253),
    'forward-pass.chain.output': ('match', 0.715251680253),
    'forward-pass.matrix.layer': ('match', 'Matrix([[w11*x1 + w21*x2, w12*x1 + w22*x2, w13*x1 + w23*x2]])'),
    'backprop.dE-da2-003': ('match', '-T + a2'),
    'backprop.da2-dz2-003': ('match', 'exp(-z2)/(1 + exp(-z2))**2'),
    'backprop.dz2-dw2-003': ('match', 'a1'),
    'backprop.dz2-da1-003': ('match', 'w2'),
    'backprop.da1-dz1-003': ('match', 'exp(-z1)/(1 + exp(-z1))**2'),
    'backprop.dz1-dw1-003': ('match', 'x1'),
    'backprop.dE-da2-002': ('match', '-T + a2'),
    'backprop.da2-dz2-002': ('match', 'exp(-z2)/(1 + exp(-z2))**2'),
    'backprop.dz2-dw2-002': ('match', 'a1'),
    'backprop.dE-db2-002': ('erratum', '-(T - 1/(exp(-a1*w2 - b2) + 1))*exp(-a1*w2 - b2)/(exp(-a1*w2 - b2) + 1)**2'),
    'backprop.dE-da1-002': ('erratum', '-w2*(T - 1/(exp(-a1*w2 - b2) + 1))*exp(-a1*w2 - b2)/(exp(-a1*w2 - b2) + 1)**2'),
    'backprop.da1-dz1-002': ('match', 'exp(-z1)/(1 + exp(-z1))**2'),
    'backprop.dz1-dw1-002': ('match', 'x1'),
    'backprop.dE-db1-002': ('erratum', '-w2*(T - 1/(exp(-b2 - w2/(exp(-b1 - w1*x1) + 1)) + 1))*exp(-b1 - w1*x1)*exp(-b2 - w2/(exp(-b1 - w1*x1) + 1))/((exp(-b1 - w1*x1) + 1)**2*(exp(-b2 - w2/(exp(-b1 - w1*x1) + 1)) + 1)**2)'),
    'gradient-descent.gradient-formula': ('match', '-x1*(-w11*x1 + 6)'),
    'gradient-descent.gradient': ('match', 8.0),
    'gradient-descent.new-weight': ('match', 4.2),
    'gradient-descent.optimum-004': ('match', 3.0),
    'gradient-descent.optimum-003': ('match', 2.0),
    'gradient-descent.optimum-002': ('match', 2.0),
    'gradient-descent.four-iterations': ('illustrative', 1.98092651367),
    'classification.one-hot': ('match', [0.0, 0.0, 1.0, 0.0]),
    'classification.probabilities-sum': ('match', 1.0),
    'classification.prediction': ('illustrative', [0.01, 0.92, 0.04, 0.03]),
    'loss-functions.cross-entropy': ('match', '-log(y[0])*t[0] - log(y[1])*t[1] - log(y[2])*t[2] - log(y[3])*t[3]'),
    'loss-functions.mse': ('erratum', '(-t[0] + y[0])**2/4 + (-t[1] + y[1])**2/4 + (-t[2] + y[2])**2/4 + (-t[3] + y[3])**2/4'),
    'vanishing-gradient.sigmoid-at-zero': ('match', 0.5),
    'vanishing-gradient.derivative-max': ('match', 0.25),
    'vanishing-gradient.derivative-range': ('match', '(0, 1/4]'),
    'vanishing-gradient.output-range': ('match', '(0, 1)'),
    'vanishing-gradient.saturation-003': ('illustrative', 0.0451766597309),
    'vanishing-gradient.saturation-002': ('illustrative', 0.0451766597309),
    'convolution.feature-map': ('illustrative', [0.1, 0.0, 0.8, 0.4, 0.0, 0.5, 0.4, 1.6, 0.3, 0.2, 1.7, 1.1, 0.2, 0.4, 0.2, 1.7]),
    'convolution.valid-size-formula': ('match', '-f + n + 1'),
    'convolution.padded-size-formula': ('match', '-f + n + 2*p + 1'),
    'convolution.valid-8-by-3': ('match', [6.0, 6.0]),
    'convolution.padded-8-by-3': ('match', [8.0, 8.0]),
    'convolution.volume': ('match', [32.0, 32.0, 12.0]),
    'pooling.input': ('illustrative', [0.1, 0.0, 1.0, 0.4, 0.0, 0.5, 0.4, 1.6, 0.3, 0.2, 1.7, 1.1, 0.2, 0.4, 1.1, 1.7]),
    'pooling.max-2x2': ('match', [0.5, 1.6, 0.4, 1.7]),
    'pooling.second-figure': ('illustrative', None),
    'pooling.volume': ('match', [16.0, 16.0, 12.0]),
    'lenet.c1-volume': ('match', [28.0, 28.0, 6.0]),
    'lenet.s2-volume': ('match', [14.0, 14.0, 6.0]),
    'lenet.s4-volume': ('match', [5.0, 5.0, 16.0]),
    'lenet.c5-maps': ('match', [120.0, 1.0, 1.0]),
    'lenet.f6-units': ('match', [84.0]),
    'lenet.output-units': ('match', [10.0]),
    'lenet.table.layer1': ('match', [6.0, 28.0, 28.0]),
    'lenet.table.layer2': ('match', [6.0, 14.0, 14.0]),
    'lenet.table.layer3': ('match', [16.0, 10.0, 10.0]),
    'lenet.table.layer4': ('match', [16.0, 5.0, 5.0]),
    'lenet.table.layer5': ('match', [120.0, 1.0, 1.0]),
    'lenet.alternating-layers': ('match', 5.0),
    'lenet.c5-fan-in': ('match', 400.0),
    'lenet.c3-connections': ('match', [10.0, 16.0]),
    'cnn-architectures.alexnet-layers': ('match', [5.0, 3.0, 2.0]),
    'cnn-architectures.alexnet-dropout1': ('match', [6.0, 6.0, 256.0]),
    'cnn-architectures.alexnet-fc1': ('match', 4096.0),
    'cnn-architectures.alexnet-dropout2': ('match', 4096.0),
    'cnn-architectures.alexnet-fc2': ('match', 4096.0),
    'cnn-architectures.alexnet-fc3': ('erratum', 1000.0),
    'cnn-architectures.alexnet-params': ('match', 62.378344),
    'cnn-architectures.alexnet-params-two-gpus': ('match', 60.965224),
    'cnn-architectures.vgg16-block1': ('match', [224.0, 224.0, 64.0]),
    'cnn-architectures.vgg16-pool1': ('match', [112.0, 112.0, 64.0]),
    'cnn-architectures.vgg16-block2': ('match', [112.0, 112.0, 128.0]),
    'cnn-architectures.vgg16-pool2': ('match', [56.0, 56.0, 128.0]),
    'cnn-architectures.vgg16-pool3': ('match', [28.0, 28.0, 256.0]),
    'cnn-architectures.vgg16-pool5': ('match', [7.0, 7.0, 512.0]),
    'cnn-architectures.vgg16-top': ('match', [4096.0, 1000.0]),
    'cnn-architectures.vgg16-weight-layers': ('match', 16.0),
    'cnn-architectures.vgg16-params': ('erratum', 138.357544),
    'dropout.survivor-scale': ('match', 1.5),
    'dropout.survivors': ('match', 3.99847),
    'dropout.scale-formula': ('match', '-1/(r_d - 1)'),
    'rnn.bptt-expansion': ('match', "f'_3*(W*f'_2*(W*f'_1*h_0 + h_1) + h_2)"),
    'rnn.bptt-three-paths': ('match', "f'_3*(W*f'_2*(W*f'_1*h_0 + h_1) + h_2)"),
    'rnn.bptt-final': ('erratum', "f'_3*∂L/∂h_3*(W*f'_2*(W*f'_1*h_0 + h_1) + h_2)"),
    'rnn.bptt-loss-sum': ('erratum', "f'_3*∂L/∂h_3*(W*f'_2*(W*f'_1*h_0 + h_1) + h_2)"),
    'lstm.gate-range': ('match', '(0, 1)'),
    'lstm.candidate-range': ('match', '(-1, 1)'),
    'attention.position-the': ('match', [3.0, 1.0, 3.0, 1.0]),
    'attention.position-dog': ('match', [2.0, 6.0, 2.0, 6.0]),
    'attention.position-runs': ('match', [5.0, 5.0, 5.0, 5.0]),
    'attention.scores': ('match', [2.0, 4.0, 4.0, 4.0, 16.0, 12.0, 4.0, 12.0, 10.0]),
    'attention.dog-itself': ('match', 16.0),
    'attention.runs-ranking': ('match', [12.0, 10.0, 4.0]),
    'attention.weights-example': ('illustrative', [6.03366485456e-06, 0.982007864896, 0.0179861014393]),
    'attention.weights-sum': ('match', 1.0),
    'attention.output-dog': ('match', [1.95, 7.1, 1.05]),
}


def test_every_registry_claim_is_frozen():
    assert sorted(FROZEN) == sorted(c.id for c in REGISTRY)


@pytest.mark.parametrize("claim_id", sorted(FROZEN))
def test_claim_status_and_value_are_unchanged(claim_id, examples):
    claim = REGISTRY[claim_id]
    require(claim.topic)
    results = {r.claim.id: r for r in examples[claim.topic].results}
    assert claim_id in results, f"topic {claim.topic} did not check {claim_id}"
    result = results[claim_id]
    status, value = FROZEN[claim_id]
    assert result.status == status, f"{claim_id}: status {result.status} (frozen: {status}); {result.detail}"
    if value is None or isinstance(value, str):
        assert result.computed == value, f"{claim_id}: computed {result.computed!r}, frozen {value!r}"
    else:
        np.testing.assert_allclose(np.ravel(result.computed), np.ravel(value), rtol=1e-9, atol=1e-12,
                                   err_msg=f"{claim_id} moved")


def test_the_errata_are_these(examples):
    """The notes' known slips (see `python -m worked_examples errata`)."""
    found = sorted(r.claim.id for ex in examples.values() for r in ex.results if r.status == "erratum")
    assert found == sorted(k for k, (status, _) in FROZEN.items() if status == "erratum")
