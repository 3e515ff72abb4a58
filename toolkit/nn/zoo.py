"""Classic architectures as Sequential models (built lazily: summary and count_params allocate nothing).

* ``lenet5``: the notes' LeNet-5 table (004, "LeNet - First CNN Architecture"): 32x32x1 -> C1 conv 6@5x5
  -> 28x28x6 -> S2 avg-pool 2x2/2 -> 14x14x6 -> C3 conv 16@5x5 -> 10x10x16 -> S4 avg-pool -> 5x5x16 ->
  C5 conv 120@5x5 -> 1x1x120 -> F6 dense 84 (tanh) -> dense 10 (softmax): 61,706 parameters. As in
  Keras re-implementations, C3 connects every input map (2,416 parameters; LeCun's 1998 sparse table
  of "10 out of 16" connections had 1,516) and the pooling layers have no trainable coefficients.
* ``keras_cnn``: the notes' Keras CNN (000, "Building CNNs with Keras"): 128x128x3, Conv2D(16, 2x2) relu,
  MaxPooling 2x2/2, Conv2D(32, 2x2) relu, MaxPooling, Flatten, Dense(100) relu, Dense(classes) softmax.
* ``alexnet``: the single-tower AlexNet on 227x227x3 (Krizhevsky et al. 2012 without the two-GPU split,
  as torchvision and most Keras versions write it): conv 96@11x11/4, max-pool 3x3/2, conv 256@5x5 same,
  max-pool, conv 384, 384, 256 @3x3 same, max-pool -> 6x6x256, dropout 0.5, dense 4096, dropout 0.5,
  dense 4096, dense 1000: 62,378,344 parameters (the notes: "around 60 million"; the paper's grouped
  convolutions give 60,965,224). Local response normalisation is left out: it has no parameters and
  the toolkit has no op for it.
* ``vgg16``: Keras' ``keras.applications.VGG16`` (include_top=True, 224x224x3, 1000 classes), with its
  layer names: 138,357,544 parameters (the notes say "up to 95 million").
"""

from __future__ import annotations

from typing import Any

from .layers import AveragePooling2D, Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from .model import Sequential


def lenet5(input_shape: tuple[int, int, int] = (32, 32, 1), classes: int = 10, activation: str = "tanh",
           seed: int = 0, dtype: Any = "float32") -> Sequential:
    return Sequential([
        Conv2D(6, 5, activation=activation, input_shape=input_shape, name="c1"),
        AveragePooling2D(2, 2, name="s2"),
        Conv2D(16, 5, activation=activation, name="c3"),
        AveragePooling2D(2, 2, name="s4"),
        Conv2D(120, 5, activation=activation, name="c5"),
        Flatten(name="flatten"),
        Dense(84, activation=activation, name="f6"),
        Dense(classes, activation="softmax", name="output"),
    ], name="lenet5", seed=seed, dtype=dtype)


def keras_cnn(input_shape: tuple[int, int, int] = (128, 128, 3), num_classes: int = 10, seed: int = 0,
              dtype: Any = "float32") -> Sequential:
    return Sequential([
        Conv2D(16, (2, 2), strides=(1, 1), activation="relu", input_shape=input_shape),
        MaxPooling2D(pool_size=(2, 2), strides=(2, 2)),
        Conv2D(32, (2, 2), strides=(1, 1), activation="relu"),
        MaxPooling2D(pool_size=(2, 2), strides=(2, 2)),
        Flatten(),
        Dense(100, activation="relu"),
        Dense(num_classes, activation="softmax"),
    ], name="keras_cnn", seed=seed, dtype=dtype)


def alexnet(input_shape: tuple[int, int, int] = (227, 227, 3), classes: int = 1000, dropout: float = 0.5,
            seed: int = 0, dtype: Any = "float32") -> Sequential:
    return Sequential([
        Conv2D(96, 11, strides=4, activation="relu", input_shape=input_shape, name="conv1"),
        MaxPooling2D(3, 2, name="pool1"),
        Conv2D(256, 5, padding="same", activation="relu", name="conv2"),
        MaxPooling2D(3, 2, name="pool2"),
        Conv2D(384, 3, padding="same", activation="relu", name="conv3"),
        Conv2D(384, 3, padding="same", activation="relu", name="conv4"),
        Conv2D(256, 3, padding="same", activation="relu", name="conv5"),
        MaxPooling2D(3, 2, name="pool5"),
        Flatten(name="flatten"),
        Dropout(dropout, name="dropout1"),
        Dense(4096, activation="relu", name="fc1"),
        Dropout(dropout, name="dropout2"),
        Dense(4096, activation="relu", name="fc2"),
        Dense(classes, activation="softmax", name="fc3"),
    ], name="alexnet", seed=seed, dtype=dtype)


def vgg16(input_shape: tuple[int, int, int] = (224, 224, 3), classes: int = 1000, seed: int = 0,
          dtype: Any = "float32") -> Sequential:
    model = Sequential(name="vgg16", seed=seed, dtype=dtype)
    for block, (filters, convs) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], start=1):
        for i in range(1, convs + 1):
            extra = {"input_shape": input_shape} if block == 1 and i == 1 else {}
            model.add(Conv2D(filters, 3, padding="same", activation="relu", name=f"block{block}_conv{i}", **extra))
        model.add(MaxPooling2D(2, 2, name=f"block{block}_pool"))
    model.add(Flatten(name="flatten"))
    model.add(Dense(4096, activation="relu", name="fc1"))
    model.add(Dense(4096, activation="relu", name="fc2"))
    model.add(Dense(classes, activation="softmax", name="predictions"))
    return model
