"""Keras-style layers and models built on the toolkit's ops (they run where their arrays live: CPU or GPU).

    from toolkit.nn import Sequential, Conv2D, AveragePooling2D, Flatten, Dense, to_categorical
    model = Sequential([Conv2D(6, 5, activation="tanh", input_shape=(32, 32, 1)), AveragePooling2D(),
                        Flatten(), Dense(10, activation="softmax")])
    model.summary()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, to_categorical(labels, 10), epochs=3, batch_size=32, seed=0)

Modules: base.py (the Layer contract), layers.py and recurrent.py (the layers), model.py (Sequential),
initializers.py, losses.py, metrics.py, optimizers.py, utils.py (to_categorical), summary.py,
zoo.py (LeNet-5, the notes' Keras CNN, AlexNet, VGG16), datasets.py (the digits at 32x32, optional).
"""

from . import initializers, losses, metrics, optimizers, zoo
from .base import Layer, derive_seed
from .layers import (LSTM, Activation, AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten,
                     MaxPooling2D, SimpleRNN)
from .losses import BinaryCrossentropy, CategoricalCrossentropy, Loss, MeanSquaredError
from .model import NonFiniteLossError, Sequential
from .optimizers import SGD, Adam, Optimizer
from .utils import to_categorical

__all__ = [
    "Layer", "Dense", "Conv2D", "MaxPooling2D", "AveragePooling2D", "Flatten", "Dropout", "BatchNormalization",
    "Activation", "SimpleRNN", "LSTM", "Sequential", "NonFiniteLossError", "to_categorical", "SGD", "Adam", "Optimizer", "Loss",
    "CategoricalCrossentropy", "BinaryCrossentropy", "MeanSquaredError", "initializers", "losses", "metrics",
    "optimizers", "zoo", "derive_seed",
]
