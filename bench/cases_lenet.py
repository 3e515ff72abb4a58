"""LeNet-5: one training epoch of the whole network (the CPU target: within 1.5x of PyTorch).

Ours is ``toolkit.nn.zoo.lenet5()`` compiled with plain SGD (learning rate 0.01, Keras' default) and
categorical cross-entropy (trained through the fused softmax cross-entropy on the logits), run by
``Sequential.fit(epochs=1, batch_size=32)``. PyTorch's is the same network as ``torch.nn.Sequential``
(Conv2d 6@5x5, tanh, AvgPool2d 2, Conv2d 16@5x5, tanh, AvgPool2d 2, Conv2d 120@5x5, tanh, Flatten,
Linear 84, tanh, Linear 10) trained by the usual loop: zero_grad, forward, ``F.cross_entropy`` on the
logits with class-index targets, backward, ``torch.optim.SGD(lr=0.01).step()``, ``loss.item()`` per
batch (ours also reads each batch's loss for its history). Both start from the same weights (ours,
Glorot-uniform, copied into the PyTorch modules), shuffle with the same permutation, and see the
samples in NHWC (ours) or NCHW (PyTorch, converted once, outside the timed region).

The full case is scikit-learn's 1797 handwritten digits upsampled to 32x32
(``toolkit.nn.datasets.load_digits_32x32``; scikit-learn is optional: without it the case is skipped
with a message). The quick case trains on 64 random images of the same shape, so it needs nothing.
Each timed call is one more epoch of the same model: the cost of an epoch does not depend on the weights.
"""

from __future__ import annotations

import numpy as np

from .cases import Case, Skipped, TorchStep, Work

BATCH = 32
LEARNING_RATE = 0.01
# Multiply-adds of one sample's forward pass: C1 28*28*(5*5*1)*6, C3 10*10*(5*5*6)*16, C5 (5*5*16)*120,
# F6 120*84, output 84*10. A training step costs about three forwards (forward, dx and dW products).
MACS_PER_SAMPLE = 28 * 28 * 25 * 6 + 10 * 10 * 150 * 16 + 400 * 120 + 120 * 84 + 84 * 10


def _digits(rng, dtype) -> dict:
    try:
        from toolkit.nn.datasets import load_digits_32x32

        x, labels = load_digits_32x32()
    except ImportError as exc:
        raise Skipped(f"{exc}") from None
    return _inputs(x.astype(dtype), labels)


def _random(n: int):
    def make(rng, dtype) -> dict:
        return _inputs(rng.random((n, 32, 32, 1)).astype(dtype), rng.integers(0, 10, n))

    return make


def _inputs(x: np.ndarray, labels: np.ndarray) -> dict:
    from toolkit.nn import to_categorical

    return {"x": x, "labels": labels, "onehot": to_categorical(labels, 10).astype(x.dtype), "order_seed": 0}


class ToolkitLeNet:
    """Our side of the case: a LeNet-5 built once, trained one more epoch per call."""

    def __init__(self, device: str):
        from toolkit import backend
        from toolkit.nn import SGD, zoo

        with backend.use(device):
            self.model = zoo.lenet5(seed=0)
            self.model.build((None, 32, 32, 1))
        self.model.compile(optimizer=SGD(LEARNING_RATE), loss="categorical_crossentropy")
        self.epochs = 0

    def epoch(self, inputs: dict) -> dict:
        self.epochs += 1
        return self.model.fit(inputs["x"], inputs["onehot"], epochs=1, batch_size=BATCH, verbose=0,
                              shuffle=True, seed=inputs["order_seed"] + self.epochs)


def torch_lenet(torch, model):
    """The PyTorch twin of our ``model`` (a built lenet5), holding a copy of its current weights."""
    nn = torch.nn
    net = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2, 2),
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2, 2),
        nn.Conv2d(16, 120, 5), nn.Tanh(), nn.Flatten(),
        nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10),
    )
    from toolkit import backend

    ours = [backend.to_numpy(w) for w in model.get_weights()]  # kernel, bias per layer, in layer order
    theirs = [m for m in net if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        for module, kernel, bias in zip(theirs, ours[0::2], ours[1::2]):
            if isinstance(module, nn.Conv2d):  # (KH, KW, Cin, Cout) -> (Cout, Cin, KH, KW)
                module.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))))
            else:  # (in, out) -> (out, in)
                module.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.T)))
            module.bias.copy_(torch.from_numpy(bias))
    return net


def _torch_epoch(torch, inputs: dict) -> TorchStep:
    F = torch.nn.functional
    net = torch_lenet(torch, ToolkitLeNet("cpu").model)  # the same initial weights as ours
    optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE)
    x = inputs["x"].permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW, once
    labels = inputs["labels"].long()
    n = x.shape[0]
    state = {"epochs": 0}

    def epoch():
        state["epochs"] += 1
        order = torch.from_numpy(np.random.default_rng(inputs["order_seed"] + state["epochs"]).permutation(n))
        total = 0.0
        for start in range(0, n, BATCH):
            idx = order[start:start + BATCH]
            optimizer.zero_grad()
            loss = F.cross_entropy(net(x[idx]), labels[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        return total / n

    return TorchStep(step=epoch)


def _implementation(impl: str):
    if impl == "reference":
        return None  # a model runs on the toolkit's kernels (cpu or gpu); the NumPy oracle is per op
    return ToolkitLeNet(impl)


def _case(name: str, size: str, make, n: int, quick: bool) -> Case:
    macs = MACS_PER_SAMPLE * n
    return Case(
        op="lenet", name=name, size=size, make_inputs=make, quick=quick,
        forward=lambda runner, inp: runner.epoch(inp), backward=None, single_phase="epoch",
        implementation=_implementation, torch=_torch_epoch,
        flops=Work(fwd=3 * 2 * macs),  # forward, input-gradient and weight-gradient products per sample
    )


def cases() -> list[Case]:
    return [
        _case("epoch b32", "random 64x32x32", _random(64), 64, True),
        _case("epoch b32", "digits 1797x32x32", _digits, 1797, False),
    ]
