"""LeNet-5 (004): an image traced through the toolkit's layers, the parameters of each layer, and C3's wiring."""

from __future__ import annotations

import numpy as np

from toolkit.nn import Conv2D, zoo
from toolkit.ops.conv2d import conv2d_forward
from toolkit.ops.flatten import flatten_forward

from ..arrays import host, tensor
from ..documents import UNIVERSITY_MODULE
from ..example import Example, Step, Topic
from ..render import fmt

TOPIC = Topic(
    name="lenet",
    title="LeNet-5: an image traced from 32 × 32 × 1 to 10 classes",
    summary="004's LeNet-5: shapes by a real forward pass; C3 wiring",
    documents=(UNIVERSITY_MODULE,),
    needs=("conv2d", "pool2d", "flatten", "dense", "activations"),
    order=110,
)

# LeCun, Bottou, Bengio, Haffner (1998), Table I: the S2 maps that each of the 16 C3 maps reads.
# Maps 0-5 read 3 neighbouring maps, 6-11 read 4 neighbours, 12-14 read 4 non-neighbours, 15 reads all.
C3_INPUTS = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)
KERNEL = 5  # C3's kernels are 5 x 5


def _channels_first(shape: tuple[int, ...]) -> list[int]:
    """(N, H, W, C) -> [C, H, W], the order the notes' table prints (maps, then size)."""
    return [shape[-1], *shape[1:-1]]


def _trace(ex: Example, model, images) -> dict[str, tuple[int, ...]]:
    ex.section("A forward pass through LeNet-5 (004)",
               "The toolkit's zoo.lenet5 is 004's table: C1 convolution 6@5×5, S2 average pooling 2×2/2, "
               "C3 convolution 16@5×5, S4 pooling, C5 convolution 120@5×5, F6 dense 84 (tanh), a softmax "
               "output of 10. Two 32 × 32 grey images (seeded noise: the shapes do not depend on the "
               "pixels) run through its layers; every shape below is the shape of an array the layers "
               "actually produced (Sequential.trace), not shape arithmetic.")
    rows = model.trace(images)
    info = {r["name"]: r for r in model.summary_dict()["layers"]}
    ex.table("toolkit: zoo.lenet5().trace(x), float64", ["layer", "type", "output shape", "parameters"],
             [(r["name"], r["type"], fmt(r["output_shape"]), info[r["name"]]["params"] if r["name"] in info else "")
              for r in rows])
    shapes = {r["name"]: r["output_shape"] for r in rows}
    ex.claim("lenet.c1-volume", shapes["c1"][1:], label="C1: 32 × 32 × 1 → (H, W, maps)")
    ex.claim("lenet.s2-volume", shapes["s2"][1:], label="S2: average pooling 2 × 2, stride 2")
    ex.claim("lenet.s4-volume", shapes["s4"][1:], label="S4: average pooling again")
    ex.claim("lenet.c5-maps", _channels_first(shapes["c5"]), label="C5: (maps, H, W)")
    ex.claim("lenet.f6-units", shapes["f6"][1:], label="F6: units")
    ex.claim("lenet.output-units", shapes["output"][1:], label="output: softmax units")
    for layer, name in enumerate(("c1", "s2", "c3", "s4", "c5"), start=1):
        ex.claim(f"lenet.table.layer{layer}", _channels_first(shapes[name]), label=f"table row {layer}: maps, size")
    kinds = [r["type"] for r in rows]
    ex.claim("lenet.alternating-layers", kinds.count("Conv2D") + kinds.count("AveragePooling2D"),
             label="convolution and pooling layers")
    probabilities = host(model.predict(images))
    ex.table("the (untrained) softmax output: 10 probabilities per image", ["image", "largest", "its digit", "sum"],
             [(i, p.max(), int(p.argmax()), p.sum()) for i, p in enumerate(probabilities)])
    ex.text("004 also says, in words, that the model has 'five convolution layers followed by two fully "
            "connected layers': LeNet-5 has three (C1, C3, C5) and two pooling layers, as its own table "
            "and the trace above show. And its pooling is average pooling (sub-sampling), not max-pooling.")
    return shapes


def _parameters(ex: Example, model) -> dict[str, int]:
    ex.section("Parameters of each layer",
               "A convolution with k × k kernels from c_in maps to c_out maps has (k·k·c_in + 1)·c_out "
               "parameters (one bias per map); a dense layer (n_in + 1)·n_out; pooling none (LeCun's "
               "sub-sampling had a trainable coefficient and bias per map; Keras-style pooling has none). "
               "The notes print no parameter counts.")
    info = model.summary_dict()
    rows = [(r["name"], r["type"], r["params"]) for r in info["layers"] if r["params"]]
    ex.table("toolkit: zoo.lenet5().summary_dict()", ["layer", "type", "parameters"],
             rows + [("total", "", info["total_params"])])
    return {r["name"]: r["params"] for r in info["layers"]} | {"total": info["total_params"]}


def _sparse_c3(ex: Example, model, images, counts: dict[str, int]) -> None:
    ex.section("C3's wiring: '10 out of 16' (004)",
               "004: 'only 10 out of 16 feature maps are connected to 6 feature maps of the previous layer'. "
               "LeNet-5's C3 was sparse (LeCun et al. 1998, Table I): each C3 map reads 3, 4 or all 6 of "
               "the S2 maps. Below, that sparse C3 is built from conv2d_forward, one call per C3 map on the "
               "S2 maps it reads, and probed: S2 map m alone is switched on, and the C3 maps that respond "
               "are counted.")
    s2 = images
    for layer in model.layers[:2]:  # C1 and S2
        s2 = layer.forward(s2)
    s2_host = host(s2)
    rng = np.random.default_rng(110)
    outputs = []
    for inputs in C3_INPUTS:
        w = tensor(rng.normal(scale=0.2, size=(KERNEL, KERNEL, len(inputs), 1)))
        y, _ = conv2d_forward(tensor(s2_host[..., list(inputs)]), w, tensor(np.zeros(1)))
        outputs.append(host(y))
    sparse = np.concatenate(outputs, axis=-1)
    # probe: S2 map m = 1 everywhere, the others 0, all-ones kernels: C3 map j responds iff it reads m
    reach = np.zeros((6, len(C3_INPUTS)), dtype=bool)
    for m in range(6):
        probe = np.zeros((1, *s2_host.shape[1:3], 6))
        probe[..., m] = 1.0
        for j, inputs in enumerate(C3_INPUTS):
            y, _ = conv2d_forward(tensor(probe[..., list(inputs)]), tensor(np.ones((KERNEL, KERNEL, len(inputs), 1))))
            reach[m, j] = bool(np.any(host(y) != 0))
    fed = reach.sum(axis=1)
    ex.table("which C3 maps each S2 map reaches (toolkit: conv2d_forward probes)",
             ["S2 map", "C3 maps reached", "count"],
             [(m, " ".join(str(j) for j in np.flatnonzero(reach[m])), int(fed[m])) for m in range(6)])
    reads = reach.sum(axis=0)
    ex.table("how many S2 maps each C3 map reads", ["S2 maps read", "C3 maps"],
             [(int(k), int((reads == k).sum())) for k in np.unique(reads)])
    per_s2_map = np.unique(fed)
    ex.claim("lenet.c3-connections", [per_s2_map[0] if per_s2_map.size == 1 else np.nan, sparse.shape[-1]],
             label="C3 maps fed by each S2 map, of all C3 maps")
    sparse_params = sum(Conv2D(1, KERNEL).count_params((None, *s2_host.shape[1:3], len(inputs)))
                        for inputs in C3_INPUTS)
    ex.table("C3 parameters, full and sparse (toolkit: count_params)",
             ["C3 wiring", "C3 parameters", "LeNet-5 total"], [
        ("every map reads all 6 (zoo.lenet5, Keras-style)", counts["c3"], counts["total"]),
        ("LeCun's Table I (16 one-map convolutions)", sparse_params, counts["total"] - counts["c3"] + sparse_params),
    ])
    ex.text(f"The sparse C3 produces the same {fmt(sparse.shape[1:])} volume with fewer weights. Read the "
            "other way round ('10 of the 16 C3 maps see all 6 S2 maps'), the sentence would be wrong: only "
            f"{int((reads == 6).sum())} C3 map reads all six. Modern re-implementations, like zoo.lenet5, "
            "connect every map.")


def _fan_in(ex: Example, model, images) -> None:
    x = images
    for layer in model.layers[:4]:  # up to S4
        x = layer.forward(x)
    flat, _ = flatten_forward(x)
    ex.steps("what each C5 unit sees (toolkit: the first four layers, then flatten_forward)", [
        Step("S4's output, one image", fmt(host(x).shape[1:]), host(flat).shape[1])])
    ex.claim("lenet.c5-fan-in", host(flat).shape[1], label="values each C5 unit sees: S4 flattened")


def run(ex: Example) -> None:
    model = zoo.lenet5(dtype="float64", seed=110)
    images = tensor(np.random.default_rng(110).uniform(size=(2, 32, 32, 1)))
    _trace(ex, model, images)
    counts = _parameters(ex, model)
    _fan_in(ex, model, images)
    _sparse_c3(ex, model, images, counts)
