"""CNN architectures (000, 003, 004): the notes' Keras CNN traced, AlexNet and VGG16 shapes and parameter counts."""

from __future__ import annotations

import numpy as np

from toolkit.nn import Conv2D, Dense, Flatten, MaxPooling2D, Sequential, zoo

from ..arrays import tensor
from ..documents import KERAS_COURSE_NOTES, MODULE4_SUMMARY, UNIVERSITY_MODULE
from ..example import Example, Topic
from ..render import fmt

TOPIC = Topic(
    name="cnn-architectures",
    title="CNN architectures: the notes' Keras CNN, AlexNet, VGG16",
    summary="Keras CNN traced; AlexNet, VGG16 shapes and parameters",
    documents=(UNIVERSITY_MODULE, MODULE4_SUMMARY, KERAS_COURSE_NOTES),
    needs=("conv2d", "pool2d", "flatten", "dense", "activations", "dropout"),
    order=120,
)

MILLION = 10**6
# VGG configurations of Simonyan & Zisserman (2015), Table 1: 3x3 convolutions per block (64, 128, 256, 512, 512)
VGG_CONFIGS = {"VGG11 (A)": (1, 1, 2, 2, 2), "VGG13 (B)": (2, 2, 2, 2, 2), "VGG16 (D)": (2, 2, 3, 3, 3),
               "VGG19 (E)": (2, 2, 4, 4, 4)}
VGG_FILTERS = (64, 128, 256, 512, 512)


def _rows(model) -> dict[str, dict]:
    """summary_dict's rows by layer name, each with the shape it receives added ("input_shape")."""
    info = model.summary_dict()
    shape, rows = info["input_shape"], {}
    for row in info["layers"]:
        rows[row["name"]] = {**row, "input_shape": shape}
        shape = row["output_shape"]
    return rows


def _summary_table(ex: Example, title: str, model) -> None:
    info = model.summary_dict()
    ex.table(title, ["layer", "type", "output shape", "parameters"],
             [(r["name"], r["type"], fmt(r["output_shape"][1:]), r["params"]) for r in info["layers"]]
             + [("total", "", "", info["total_params"])])


def _keras_cnn(ex: Example) -> None:
    ex.section("The notes' Keras CNN (000, 003)",
               "Conv2D(16, (2, 2), relu) on 128 × 128 × 3 colour images, MaxPooling2D 2 × 2 / 2, Conv2D(32, "
               "(2, 2), relu), MaxPooling2D, Flatten, Dense(100, relu), Dense(num_classes, softmax): the "
               "toolkit's zoo.keras_cnn, here with 10 classes (the notes leave num_classes open). One seeded "
               "image runs through it; the shapes are those of the arrays produced.")
    model = zoo.keras_cnn(num_classes=10, dtype="float64", seed=120)
    image = tensor(np.random.default_rng(120).uniform(size=(1, 128, 128, 3)))
    rows = model.trace(image)
    params = {r["name"]: r["params"] for r in model.summary_dict()["layers"]}
    ex.table("toolkit: zoo.keras_cnn().trace(x)", ["layer", "type", "output shape", "parameters"],
             [(r["name"], r["type"], fmt(r["output_shape"]), params.get(r["name"], "")) for r in rows]
             + [("total", "", "", model.count_params())])
    flat_dense = Sequential([Flatten(input_shape=(128, 128, 3)), Dense(100)], dtype="float64")
    convs = sum(r["params"] for r in model.summary_dict()["layers"] if r["type"] == "Conv2D")
    ex.table("why not flatten the image first? (003; toolkit: count_params)", ["first layers", "parameters"], [
        ("Dense(100) on the flattened 128·128·3 pixels", flat_dense.count_params()),
        ("both Conv2D layers of the CNN together", convs),
    ])
    pooled = next(r for r in rows if r["name"] == "flatten")
    ex.text("A 2 × 2 filter has 2·2·3 weights and a bias whatever the image size: convolution reuses it at "
            f"every position. The CNN's parameters sit in its Dense(100), which sees the {pooled['output_shape'][1]} "
            "values that pooling left.")


def _alexnet(ex: Example) -> None:
    ex.section("AlexNet (004)",
               "zoo.alexnet: conv 96@11×11/4, max-pool 3×3/2, conv 256@5×5, max-pool, conv 384, 384, 256 @3×3, "
               "max-pool, dropout (rate one half), dense 4096, dropout, dense 4096, dense 1000 (softmax), on "
               "227 × 227 × 3. Shapes and counts by the layers' shape arithmetic (summary_dict): tens of "
               "millions of parameters are too many to initialise in a worked example. Local response "
               "normalisation (004's '2 normalization layers') has no parameters and is left out.")
    model = zoo.alexnet()
    _summary_table(ex, "toolkit: zoo.alexnet().summary_dict()", model)
    rows = _rows(model)
    kinds = [r["type"] for r in rows.values()]
    ex.claim("cnn-architectures.alexnet-layers", [kinds.count("Conv2D"), kinds.count("Dense"), kinds.count("Dropout")],
             label="Conv2D, Dense and Dropout layers")
    ex.claim("cnn-architectures.alexnet-dropout1", rows["pool5"]["output_shape"][1:], label="what dropout 1 receives")
    ex.claim("cnn-architectures.alexnet-fc1", rows["fc1"]["output_shape"][-1], label="fully connected 1: units")
    ex.claim("cnn-architectures.alexnet-dropout2", rows["dropout2"]["output_shape"][-1], label="dropout 2: units")
    ex.claim("cnn-architectures.alexnet-fc2", rows["fc2"]["output_shape"][-1], label="fully connected 2: units")
    ex.claim("cnn-architectures.alexnet-fc3", rows["fc3"]["output_shape"][-1],
             label="fully connected 3 (softmax): units")
    total = model.count_params()
    ex.claim("cnn-architectures.alexnet-params", total / MILLION, label="parameters (millions), one tower")
    # The paper split conv2, conv4 and conv5 across two GPUs: each half sees only the maps on its own GPU.
    split = []
    for name in ("conv2", "conv4", "conv5"):
        r = rows[name]
        layer = next(layer for layer in model.layers if layer.name == name)
        height, width, maps = r["input_shape"][1:]
        half = Conv2D(layer.filters // 2, layer.kernel_size, padding="same")
        split.append((name, r["params"], 2 * half.count_params((None, height, width, maps // 2))))
    two_gpus = total - sum(full for _, full, _ in split) + sum(halves for _, _, halves in split)
    ex.table("the paper's two-GPU split: two half convolutions instead of one (toolkit: count_params)",
             ["layer", "one tower", "two halves"], split + [("whole network", total, two_gpus)])
    ex.claim("cnn-architectures.alexnet-params-two-gpus", two_gpus / MILLION, label="parameters (millions), two GPUs")
    sizes = []
    for side in (224, 227):
        shapes = {layer.name: s for layer, s in zip(model.layers, model.output_shapes((None, side, side, 3)))}
        fc1 = Dense(4096).count_params(shapes["flatten"])
        sizes.append((f"{side} × {side} × 3", fmt(shapes["conv1"][1:]), fmt(shapes["pool5"][1:]), fc1))
    ex.table("224 or 227? (004; toolkit: output_shapes)", ["input", "conv1 output", "pool5 output", "fc1 parameters"],
             sizes)
    ex.text("An 11 × 11 filter moved 4 pixels at a time fits (n − 11)/4 + 1 times: a whole number for "
            "n = 227, not for n = 224, where a valid convolution drops the remainder (the last pixels are never "
            "read). Only 227 leads to the volume of the notes' table.")


def _vgg(blocks: tuple[int, ...]) -> Sequential:
    model = Sequential(name="vgg")
    for b, (filters, convs) in enumerate(zip(VGG_FILTERS, blocks)):
        for i in range(convs):
            extra = {"input_shape": (224, 224, 3)} if b == 0 and i == 0 else {}
            model.add(Conv2D(filters, 3, padding="same", activation="relu", **extra))
        model.add(MaxPooling2D(2, 2))
    model.add(Flatten())
    model.add(Dense(4096, activation="relu"))
    model.add(Dense(4096, activation="relu"))
    model.add(Dense(1000, activation="softmax"))
    return model


def _vgg16(ex: Example) -> None:
    ex.section("VGG16 (004)",
               "zoo.vgg16 is Keras' VGG16: five blocks of 3 × 3 'same' convolutions (64, 128, 256, 512, 512 "
               "filters; 2, 2, 3, 3, 3 of them) each closed by a 2 × 2 / 2 max-pool, then dense 4096, 4096 "
               "and a 1000-class softmax. Shapes and counts by shape arithmetic (summary_dict).")
    model = zoo.vgg16()
    _summary_table(ex, "toolkit: zoo.vgg16().summary_dict()", model)
    rows = _rows(model)
    shape = {name: r["output_shape"][1:] for name, r in rows.items()}
    ex.claim("cnn-architectures.vgg16-block1", shape["block1_conv2"], label="after the first two convolutions")
    ex.claim("cnn-architectures.vgg16-pool1", shape["block1_pool"], label="after the first max-pool")
    ex.claim("cnn-architectures.vgg16-block2", shape["block2_conv2"], label="after two 128-filter convolutions")
    ex.claim("cnn-architectures.vgg16-pool2", shape["block2_pool"], label="after the second max-pool")
    ex.claim("cnn-architectures.vgg16-pool3", shape["block3_pool"], label="after the 256-filter block and its pool")
    ex.claim("cnn-architectures.vgg16-pool5", shape["block5_pool"], label="after the final max-pool")
    ex.claim("cnn-architectures.vgg16-top", [shape["fc1"][-1], shape["predictions"][-1]],
             label="first dense layer, softmax output")
    weighted = [name for name, r in rows.items() if r["params"]]
    ex.claim("cnn-architectures.vgg16-weight-layers", len(weighted), label="layers with weights")
    ex.text(f"004 says block 3 has two 256-filter convolutions; VGG16 has "
            f"{sum(name.startswith('block3_conv') for name in rows)}, which is how it reaches 16 weight layers.")
    ex.claim("cnn-architectures.vgg16-params", model.count_params() / MILLION, label="parameters (millions)")
    family = [(name, _vgg(blocks).count_params()) for name, blocks in VGG_CONFIGS.items()]
    ex.table("every VGG of the paper, and where VGG16's weights sit (toolkit: count_params)", ["model", "parameters"],
             family + [("VGG16's fc1 alone (7·7·512 → 4096)", rows["fc1"]["params"]),
                       ("VGG16's 13 convolutions together",
                        sum(r["params"] for r in rows.values() if r["type"] == "Conv2D"))])
    _transfer(ex, rows)


def _transfer(ex: Example, rows: dict[str, dict]) -> None:
    ex.section("003's transfer learning: VGG16 without its top, frozen",
               "VGG16(include_top=False) keeps the five convolution blocks; 003 freezes them and trains a new "
               "head Flatten, Dense(256, relu), Dense(1, sigmoid) on the 7 × 7 × 512 features.")
    base = sum(r["params"] for name, r in rows.items() if name.startswith("block"))
    head = Sequential([Flatten(input_shape=rows["block5_pool"]["output_shape"][1:]), Dense(256, activation="relu"),
                       Dense(1, activation="sigmoid")])
    ex.table("parameters (toolkit: summary_dict, count_params)", ["part", "parameters", "trained?"], [
        ("VGG16 convolution base", base, "frozen"), ("new head", head.count_params(), "trained")])


def run(ex: Example) -> None:
    _keras_cnn(ex)
    _alexnet(ex)
    _vgg16(ex)
