"""Sequential: parameter counts of LeNet-5, the notes' Keras CNN, AlexNet and VGG16 against independent formulas
and published figures; shapes by arithmetic vs by running; whole-model gradients vs finite differences;
the fused softmax-cross-entropy; training, determinism, optimizers vs NumPy; bad input named."""

import importlib.util
import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from tests.helpers import assert_close, check_gradient, random_array
from toolkit import backend
from toolkit.nn import (LSTM, SGD, Activation, Adam, AveragePooling2D, BatchNormalization, CategoricalCrossentropy,
                        Conv2D, Dense, Dropout, Flatten, MaxPooling2D, Sequential, SimpleRNN, to_categorical, zoo)
from toolkit.nn import losses as nn_losses
from toolkit.nn.base import Layer
from toolkit.nn.model import NonFiniteLossError
from toolkit.ops.losses import loss_backward, loss_forward


# --- parameter counts: formulas written here, independently of the layers -------------------------------
def conv_params(k, c_in, c_out):
    return (k * k * c_in + 1) * c_out  # k x k x c_in weights per filter, plus its bias


def dense_params(n_in, n_out):
    return (n_in + 1) * n_out


def out_size(n, k, s, p=0):
    return (n + 2 * p - k) // s + 1  # the notes' (n + 2p - f) / s + 1


def test_lenet5_parameter_count_and_the_notes_shape_table():
    model = zoo.lenet5()
    expected = (conv_params(5, 1, 6) + conv_params(5, 6, 16) + conv_params(5, 16, 120)
                + dense_params(120, 84) + dense_params(84, 10))
    assert expected == 61_706  # the figure usually quoted for LeNet-5 with full C3 connectivity
    info = model.summary_dict()
    assert info["total_params"] == model.count_params() == expected
    assert info["trainable_params"] == expected and info["non_trainable_params"] == 0
    assert [r["params"] for r in info["layers"]] == [156, 0, 2416, 0, 48120, 0, 10164, 850]
    # the notes' table (004, "Summary of LeNet-5 architecture")
    assert [r["output_shape"] for r in info["layers"]] == [
        (None, 28, 28, 6), (None, 14, 14, 6), (None, 10, 10, 16), (None, 5, 5, 16), (None, 1, 1, 120),
        (None, 120), (None, 84), (None, 10)]


def test_lenet5_shapes_by_running_its_layers_equal_the_arithmetic(rng):
    model = zoo.lenet5()
    rows = model.trace(rng.random((2, 32, 32, 1)).astype(np.float32))
    assert rows[0]["output_shape"] == (2, 32, 32, 1)
    assert [r["output_shape"][1:] for r in rows[1:]] == [s[1:] for s in model.output_shapes()]
    assert sum(w.size for w in model.get_weights()) == 61_706


def test_the_notes_keras_cnn_128x128x3():
    model = zoo.keras_cnn(num_classes=10)
    h1 = out_size(128, 2, 1)  # 127
    p1 = out_size(h1, 2, 2)  # 63
    h2 = out_size(p1, 2, 1)  # 62
    p2 = out_size(h2, 2, 2)  # 31
    expected = conv_params(2, 3, 16) + conv_params(2, 16, 32) + dense_params(p2 * p2 * 32, 100) + dense_params(100, 10)
    assert model.count_params() == expected == 3_078_598
    assert model.output_shapes()[4] == (None, 31 * 31 * 32)


def test_vgg16_has_keras_published_138357544_parameters():
    model = zoo.vgg16()
    assert model.count_params() == 138_357_544  # keras.applications.VGG16(include_top=True)
    blocks = [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]
    convs, c_in = 0, 3
    for filters, n in blocks:
        for _ in range(n):
            convs += conv_params(3, c_in, filters)
            c_in = filters
    assert convs == 14_714_688  # Keras' VGG16(include_top=False)
    assert model.count_params() == convs + dense_params(7 * 7 * 512, 4096) + dense_params(4096, 4096) + dense_params(4096, 1000)
    assert model.output_shapes()[-5] == (None, 7, 7, 512)  # the notes: "7 x 7 x 512 volume is flattened"


def test_alexnet_single_tower_variant():
    model = zoo.alexnet()
    s1 = out_size(227, 11, 4)  # 55
    p1 = out_size(s1, 3, 2)  # 27
    p2 = out_size(p1, 3, 2)  # 13 ("same" convolutions keep 27 and 13)
    p5 = out_size(p2, 3, 2)  # 6
    expected = (conv_params(11, 3, 96) + conv_params(5, 96, 256) + conv_params(3, 256, 384) + conv_params(3, 384, 384)
                + conv_params(3, 384, 256) + dense_params(p5 * p5 * 256, 4096) + dense_params(4096, 4096)
                + dense_params(4096, 1000))
    assert (s1, p1, p2, p5) == (55, 27, 13, 6)
    assert model.count_params() == expected == 62_378_344
    assert model.output_shapes()[7] == (None, 6, 6, 256)  # the notes' table: 6 x 6 x 256 before dropout 1


def test_summary_text_rich_table_and_print_fn():
    model = zoo.lenet5()
    text = model.summary_text()
    assert 'Model: "lenet5"' in text and "c3 (Conv2D)" in text and "(None, 10, 10, 16)" in text
    assert "Total params: 61,706 (241.04 KB)" in text and "Non-trainable params: 0" in text
    lines = []
    model.summary(print_fn=lines.append)
    assert "\n".join(lines) == text
    console = Console(record=True, width=100)
    from toolkit.nn import summary as summary_module

    console.print(summary_module.as_table(model.summary_dict()))
    rendered = console.export_text()
    assert "f6 (Dense)" in rendered and "10,164" in rendered and "Trainable params: 61,706" in rendered


def test_batchnorm_counts_as_non_trainable_like_keras():
    model = Sequential([Dense(4, input_shape=(3,)), BatchNormalization(), Dense(2)])
    info = model.summary_dict()
    assert (info["total_params"], info["trainable_params"], info["non_trainable_params"]) == (16 + 16 + 10, 34, 8)
    model.layers[0].trainable = False
    assert model.summary_dict()["trainable_params"] == 34 - 16


@settings(max_examples=20)
@given(widths=st.lists(st.integers(1, 50), min_size=2, max_size=5))
def test_property_dense_stack_count_matches_formula(widths):
    model = Sequential([Dense(w) for w in widths[1:]])
    model.build((None, widths[0]))
    assert model.count_params() == sum(dense_params(a, b) for a, b in zip(widths, widths[1:]))
    assert model.count_params() == sum(w.size for w in model.get_weights())


# --- whole-model gradients against finite differences (float64) -------------------------------------------
def check_model_gradients(model, x, y, before=lambda: None):
    before()
    _, grads = model.loss_and_gradients(x, y)
    params = model.params()
    assert len(grads) == len(params) > 0
    for i, (p, g) in enumerate(zip(params, grads)):
        def loss():
            before()
            return model.compute_loss(x, y, training=True)

        check_gradient(loss, p, g, name=f"param {i} of shape {p.shape}")


def test_cnn_model_gradient_with_fused_softmax_crossentropy(rng):
    model = Sequential([Conv2D(3, 3, activation="relu", input_shape=(6, 6, 2)), MaxPooling2D(2), Flatten(),
                        Dense(4, activation="softmax")], dtype="float64", seed=1)
    model.compile("sgd", "categorical_crossentropy")
    x = random_array(rng, (3, 6, 6, 2))
    y = to_categorical([0, 3, 1], 4, dtype="float64")
    check_model_gradients(model, x, y)
    # dL/dx through the whole stack, too
    model.loss_and_gradients(x, y)
    loss_obj, logits = model._objective()
    assert logits and loss_obj.op == "softmax_crossentropy"
    out = model.forward(x, training=True, logits=True)
    dx = model.backward(loss_obj.backward(loss_obj.forward(out, y)[1]))
    check_gradient(lambda: model.compute_loss(x, y, training=True), x, dx, name="x")


def test_dense_batchnorm_dropout_model_gradient_with_fused_sigmoid_bce(rng):
    model = Sequential([Dense(5, activation="tanh", input_shape=(3,)), BatchNormalization(), Dropout(0.3),
                        Dense(1, activation="sigmoid")], dtype="float64", seed=2)
    model.compile("sgd", "binary_crossentropy")
    dropout = model.layers[2]

    def same_mask():
        dropout.step = 0

    x = random_array(rng, (6, 3))
    y = (rng.random((6, 1)) > 0.5).astype(np.float64)
    check_model_gradients(model, x, y, before=same_mask)
    assert model._objective()[0].params == {"from_logits": True}


def test_recurrent_model_gradient_with_mse(rng):
    model = Sequential([LSTM(3, return_sequences=True, input_shape=(4, 2)), SimpleRNN(3), Dense(2)],
                       dtype="float64", seed=3)
    model.compile("adam", "mse")
    check_model_gradients(model, random_array(rng, (2, 4, 2)), random_array(rng, (2, 2)))


def test_conv_same_stride_avgpool_model_gradient_with_half_mse(rng):
    model = Sequential([Conv2D(2, 3, strides=2, padding="same", activation="tanh", input_shape=(5, 5, 1)),
                        AveragePooling2D(2, padding="same"), Flatten(), Dense(3), Activation("sigmoid")],
                       dtype="float64", seed=4)
    model.compile("sgd", "mse_half")  # sigmoid + mse: no fusion
    assert model._objective()[1] is False
    check_model_gradients(model, random_array(rng, (2, 5, 5, 1)), rng.random((2, 3)))


# --- the fused loss equals the unfused one, and stays finite where the unfused one saturates ---------------
def test_fused_softmax_crossentropy_equals_softmax_then_crossentropy(rng):
    model = Sequential([Dense(4, input_shape=(5,)), Dense(3, activation="softmax")], dtype="float64", seed=5)
    model.compile("sgd", "categorical_crossentropy")
    x = random_array(rng, (4, 5))
    y = to_categorical([0, 1, 2, 1], 3, dtype="float64")
    fused_loss, fused_grads = model.loss_and_gradients(x, y)
    probabilities = model.forward(x, training=True)
    value, cache = loss_forward("categorical_crossentropy", probabilities, y)
    model.backward(loss_backward(cache))
    assert_close(fused_loss, value, atol=1e-12, rtol=1e-12, name="loss")
    for i, (a, b) in enumerate(zip(fused_grads, model.grads())):
        assert_close(a, b, atol=1e-12, rtol=1e-9, name=f"grad {i}")
    # a model ending in Activation("softmax") is fused the same way; from_logits=True takes a linear output
    assert Sequential([Dense(3, input_shape=(2,)), Activation("softmax")]).layers[-1].output_activation == "softmax"
    assert nn_losses.fused(CategoricalCrossentropy(from_logits=True), None) is None


def test_fused_loss_is_finite_for_huge_logits(rng):
    model = Sequential([Dense(3, activation="softmax", input_shape=(2,))], dtype="float32", seed=0)
    model.compile(SGD(learning_rate=1e-6), "categorical_crossentropy", metrics=["accuracy"])
    model.build()
    model.layers[0].params()[0][...] = np.float32(1e4)  # logits of size 1e4: exp would overflow
    model.layers[0].params()[0][:, 0] = np.float32(-1e4)
    x = np.ones((2, 2), np.float32)
    y = to_categorical([0, 1], 3)
    loss, acc = model.train_on_batch(x, y)
    # logits (-2e4, 2e4, 2e4) for both samples: -log p = 4e4 + log 2 for class 0, log 2 for class 1 (the clipped
    # unfused loss would give -log(1e-7) = 16.1 for the first); the mean is 2e4 + log 2
    assert np.isfinite(loss) and loss == pytest.approx(2e4 + np.log(2), rel=1e-6)
    assert acc == 0.5  # argmax ties go to the first maximum: class 1 for both samples
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert model.predict(x).sum(axis=1) == pytest.approx([1.0, 1.0])


# --- SymPy: the gradients the fused losses hand to the last layer ---------------------------------------------
Z = sp.symbols("z1:4", real=True)
T = sp.symbols("t1:4", real=True)


def test_fused_softmax_crossentropy_gradient_is_p_minus_t_by_sympy(rng):
    denominator = sum(sp.exp(z) for z in Z)
    p = [sp.exp(z) / denominator for z in Z]
    loss = -sum(t * sp.log(pi) for t, pi in zip(T, p))
    derived = [sp.diff(loss, z) for z in Z]
    for j in range(3):  # dL/dz_j = p_j * sum(t) - t_j, i.e. p - t for one-hot (or any normalised) targets
        assert sp.simplify((derived[j] - (p[j] * sum(T) - T[j])).rewrite(sp.exp)) == 0
    # spot check: for one sample, dL/dbias of the softmax Dense is dL/dz
    model = Sequential([Dense(3, activation="softmax", input_shape=(2,))], dtype="float64", seed=6)
    model.compile("sgd", "categorical_crossentropy")
    x = random_array(rng, (1, 2))
    t = np.array([[0.0, 1.0, 0.0]])
    _, (_, dbias) = model.loss_and_gradients(x, t)
    W, b = model.params()
    z = (x @ W + b)[0]
    values = {**dict(zip(Z, z)), **dict(zip(T, t[0]))}
    assert_close(dbias, [float(d.subs(values)) for d in derived], atol=1e-12, rtol=1e-10, name="dL/dz")


def test_fused_sigmoid_binary_crossentropy_gradient_is_sigmoid_minus_t_by_sympy(rng):
    z, t = Z[0], T[0]
    sigma = 1 / (1 + sp.exp(-z))
    loss = -(t * sp.log(sigma) + (1 - t) * sp.log(1 - sigma))
    derived = sp.diff(loss, z)
    assert sp.simplify((derived - (sigma - t)).rewrite(sp.exp)) == 0
    model = Sequential([Dense(1, activation="sigmoid", input_shape=(3,))], dtype="float64", seed=7)
    model.compile("sgd", "binary_crossentropy")
    x = random_array(rng, (1, 3))
    _, (_, dbias) = model.loss_and_gradients(x, np.array([[1.0]]))
    W, b = model.params()
    value = float(derived.subs({z: float((x @ W + b)[0, 0]), t: 1.0}))
    assert_close(dbias, [value], atol=1e-12, rtol=1e-10, name="dL/dz")


# --- training ------------------------------------------------------------------------------------------------
def blobs(rng, n=60):
    labels = np.arange(n) % 2
    x = rng.standard_normal((n, 2)) * 0.5 + np.where(labels[:, None] == 1, 2.0, -2.0)
    return x.astype(np.float32), to_categorical(labels, 2)


def test_training_on_separable_blobs_reduces_the_loss(rng):
    x, y = blobs(rng)
    model = Sequential([Dense(8, activation="relu", input_shape=(2,)), Dense(2, activation="softmax")], seed=0)
    model.compile(Adam(learning_rate=0.05), "categorical_crossentropy", metrics=["accuracy"])
    before = model.evaluate(x, y, return_dict=True)
    history = model.fit(x, y, epochs=15, batch_size=10, verbose=0)
    after = model.evaluate(x, y, return_dict=True)
    assert set(history) == {"loss", "accuracy"} and len(history["loss"]) == 15
    assert after["loss"] < 0.2 * before["loss"] and after["accuracy"] == 1.0
    assert history["loss"][-1] < history["loss"][0]
    assert np.array_equal(model.predict(x).argmax(axis=1), y.argmax(axis=1))


def test_a_small_cnn_learns_bar_orientation(rng, capsys):
    n = 24
    x = rng.random((n, 6, 6, 1)).astype(np.float32) * 0.2
    labels = np.arange(n) % 2
    for i in range(n):  # class 0: a horizontal bar, class 1: a vertical bar, at a random position
        j = rng.integers(0, 6)
        if labels[i]:
            x[i, :, j, 0] += 1
        else:
            x[i, j, :, 0] += 1
    y = to_categorical(labels, 2)
    model = Sequential([Conv2D(4, 3, activation="relu", input_shape=(6, 6, 1)), MaxPooling2D(2), Flatten(),
                        Dense(2, activation="softmax")], seed=0)
    model.compile(Adam(learning_rate=0.02), "categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=20, batch_size=8, verbose=1, validation_data=(x, y))
    assert "Epoch 20/20" in capsys.readouterr().out
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["val_accuracy"][-1] == 1.0
    assert len(history["val_loss"]) == 20


def test_fit_is_deterministic_for_a_seed(rng):
    x, y = blobs(rng, n=20)

    def trained(seed, fit_seed=None):
        model = Sequential([Dense(6, activation="relu", input_shape=(2,)), Dropout(0.5), BatchNormalization(),
                            Dense(2, activation="softmax")], seed=seed)
        model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
        history = model.fit(x, y, epochs=3, batch_size=6, verbose=0, seed=fit_seed)
        return model.get_weights(), history

    w1, h1 = trained(0)
    w2, h2 = trained(0)
    assert h1 == h2 and all(np.array_equal(a, b) for a, b in zip(w1, w2))  # bit for bit
    w3, _ = trained(1)
    assert not np.array_equal(w1[0], w3[0])  # another seed: other initial weights
    w4, _ = trained(0, fit_seed=123)
    assert not all(np.array_equal(a, b) for a, b in zip(w1, w4))  # same weights, other shuffling


def test_no_shuffle_is_the_given_order(rng):
    x, y = blobs(rng, n=8)
    a = Sequential([Dense(2, activation="softmax", input_shape=(2,))], seed=0)
    b = Sequential([Dense(2, activation="softmax", input_shape=(2,))], seed=0)
    for m in (a, b):
        m.compile("sgd", "categorical_crossentropy")
    a.fit(x, y, epochs=1, batch_size=4, shuffle=False, verbose=0)
    b.train_on_batch(x[:4], y[:4])
    b.train_on_batch(x[4:], y[4:])
    assert all(np.array_equal(p, q) for p, q in zip(a.get_weights(), b.get_weights()))


def test_sgd_and_adam_steps_equal_numpy(rng):
    x = random_array(rng, (5, 3))
    y = random_array(rng, (5, 2))
    for optimizer in (SGD(learning_rate=0.1), SGD(learning_rate=0.1, momentum=0.9, nesterov=True),
                      Adam(learning_rate=0.01)):
        model = Sequential([Dense(2, input_shape=(3,))], dtype="float64", seed=0)
        model.compile(optimizer, "mse")
        w = [a.copy() for a in model.get_weights()]
        velocity = [np.zeros_like(a) for a in w]
        m = [np.zeros_like(a) for a in w]
        v = [np.zeros_like(a) for a in w]
        for step in range(1, 4):
            residual = x @ w[0] + w[1] - y  # d mse / d output = 2 (y_hat - y) / n
            dout = 2 * residual / residual.size
            grads = [x.T @ dout, dout.sum(axis=0)]
            for i, g in enumerate(grads):
                if isinstance(optimizer, Adam):  # Keras' Adam
                    m[i] = 0.9 * m[i] + 0.1 * g
                    v[i] = 0.999 * v[i] + 0.001 * g * g
                    lr = 0.01 * np.sqrt(1 - 0.999**step) / (1 - 0.9**step)
                    w[i] = w[i] - lr * m[i] / (np.sqrt(v[i]) + 1e-7)
                elif optimizer.momentum:  # Keras' Nesterov SGD
                    velocity[i] = 0.9 * velocity[i] - 0.1 * g
                    w[i] = w[i] + 0.9 * velocity[i] - 0.1 * g
                else:
                    w[i] = w[i] - 0.1 * g
            model.train_on_batch(x, y)
        assert optimizer.iterations == 3
        for ours, theirs in zip(model.get_weights(), w):
            assert_close(ours, theirs, atol=1e-12, rtol=1e-10, name=type(optimizer).__name__)


def test_evaluate_is_the_batch_size_weighted_mean_and_predict_is_batched(rng):
    x, y = blobs(rng, n=10)
    model = Sequential([Dense(3, activation="tanh", input_shape=(2,)), Dense(2, activation="softmax")], seed=0)
    model.compile("sgd", "categorical_crossentropy", metrics=["accuracy", "mse"])
    full = model.evaluate(x, y, batch_size=10)
    in_threes = model.evaluate(x, y, batch_size=3)  # batches of 3, 3, 3, 1
    assert_close(np.array(in_threes), np.array(full), atol=1e-6, rtol=1e-5, name="evaluate")
    assert full[0] == pytest.approx(model.compute_loss(x, y), rel=1e-6)
    probabilities = model.predict(x, batch_size=4)
    assert isinstance(probabilities, np.ndarray) and probabilities.shape == (10, 2)
    assert_close(probabilities, model.forward(x), atol=1e-7, rtol=1e-6, name="predict")
    assert full[1] == np.mean(probabilities.argmax(1) == y.argmax(1))
    assert model.evaluate(x, y, return_dict=True).keys() == {"loss", "accuracy", "mse"}


def test_inputs_are_cast_to_the_model_dtype(rng):
    model = Sequential([Dense(2, activation="softmax", input_shape=(3,))], seed=0)
    model.compile("sgd", "categorical_crossentropy")
    images = rng.integers(0, 255, (4, 3)).astype(np.uint8)
    assert model.predict(images).dtype == np.float32
    model.fit(images, to_categorical([0, 1, 1, 0], 2, dtype="float64"), verbose=0)


def test_a_model_without_input_shape_builds_on_its_first_batch(rng):
    model = Sequential([Dense(4, activation="relu"), Dense(2)])
    with pytest.raises(ValueError, match="does not know its input shape yet"):
        model.summary_dict()
    model.compile("sgd", "mse")
    model.fit(random_array(rng, (6, 5), np.float32), random_array(rng, (6, 2), np.float32), verbose=0)
    assert model.input_shape == (None, 5) and model.count_params() == 5 * 4 + 4 + 4 * 2 + 2


@settings(max_examples=10)
@given(n=st.integers(1, 9), batch_size=st.integers(1, 12), epochs=st.integers(1, 3))
def test_property_fit_history_has_one_finite_entry_per_epoch(n, batch_size, epochs):
    rng = np.random.default_rng(n)
    model = Sequential([Dense(2, activation="sigmoid", input_shape=(3,))], seed=n)
    model.compile("sgd", "binary_crossentropy", metrics=["accuracy"])
    history = model.fit(rng.random((n, 3)), (rng.random((n, 2)) > 0.5), epochs=epochs, batch_size=batch_size,
                        verbose=0)
    assert [len(v) for v in history.values()] == [epochs, epochs]
    assert all(np.isfinite(history["loss"])) and all(0 <= a <= 1 for a in history["accuracy"])


# --- bad input ----------------------------------------------------------------------------------------------
def test_wrong_input_shape_for_the_model_names_the_layer(rng):
    model = zoo.lenet5()
    with pytest.raises(ValueError, match=r"layer 'c1' \(Conv2D\) was built for inputs of shape \(None, 32, 32, 1\); "
                                         r"got \(2, 28, 28, 1\)"):
        model.predict(np.zeros((2, 28, 28, 1), np.float32))
    with pytest.raises(ValueError, match=r"layer 'c1' \(Conv2D\) expects inputs of rank 4 \(batch, height, width, "
                                         r"channels\); got input shape \(2, 32, 32\)"):
        model.predict(np.zeros((2, 32, 32), np.float32))


def test_adding_an_impossible_layer_names_it_and_leaves_the_model_unchanged():
    model = Sequential([Conv2D(4, 3, input_shape=(8, 8, 1))])
    with pytest.raises(ValueError, match=r"layer 'dense' \(Dense\) expects inputs of rank 2 .* put a Flatten"):
        model.add(Dense(10))
    with pytest.raises(ValueError, match=r"layer 'big' \(Conv2D\): kernel_size height 7 is larger than the padded "
                                         r"input height 6"):
        model.add(Conv2D(2, 7, name="big"))
    assert len(model.layers) == 1
    with pytest.raises(ValueError, match=r"layer 'dense' \(Dense\) declares input_shape \(None, 5\) but the layer "
                                         r"before it outputs"):
        model.add(Dense(2, input_shape=(5,)))


@pytest.mark.parametrize("call,error,words", [
    (lambda m, x, y: m.fit(x, y[:, 0]), ValueError,
     r"y must have shape \(6, 2\) to match the output \(None, 2\) of layer 'dense_1' \(Dense\); got \(6,\) "
     r"\(one-hot encode class labels with toolkit.nn.to_categorical\)"),
    (lambda m, x, y: m.fit(x, y[:5]), ValueError, "x and y must hold the same number of samples; got 6 and 5"),
    (lambda m, x, y: m.fit(x, y, epochs=0), ValueError, "epochs must be a positive integer; got 0"),
    (lambda m, x, y: m.fit(x, y, batch_size=0), ValueError, "batch_size must be a positive integer; got 0"),
    (lambda m, x, y: m.fit(x, y, batch_size=2.0), TypeError, r"batch_size must be a positive integer; got 2.0"),
    (lambda m, x, y: m.fit(x, y, verbose=3), ValueError, "verbose must be 0, 1 or 2; got 3"),
    (lambda m, x, y: m.fit(x, y, seed=-2), ValueError, "seed must be a non-negative integer or None; got -2"),
    (lambda m, x, y: m.fit(x, y, validation_data=x), TypeError, r"validation_data must be a pair \(x_val, y_val\)"),
    (lambda m, x, y: m.fit(x.astype(np.complex64), y), TypeError, "x must hold real numbers; got dtype complex64"),
    (lambda m, x, y: m.fit(x[:0], y[:0]), ValueError, r"x must be a non-empty batch .*; got shape \(0, 3\)"),
    (lambda m, x, y: m.predict(x, batch_size=-1), ValueError, "batch_size must be a positive integer; got -1"),
    (lambda m, x, y: m.compile("rmsprop"), ValueError, r"optimizer must be one of \('sgd', 'adam'\)"),
    (lambda m, x, y: m.compile("sgd", "hinge"), ValueError, "loss must be one of"),
    (lambda m, x, y: m.compile("sgd", "mse", metrics=["f1"]), ValueError, "metrics must hold names from"),
    (lambda m, x, y: m.compile("sgd", "mse", metrics="accuracy"), TypeError, "metrics must be a list"),
    (lambda m, x, y: m.compile(SGD(learning_rate=0)), ValueError, "learning_rate must be > 0.0; got 0.0"),
    (lambda m, x, y: m.compile(Adam(beta_1=1.0)), ValueError, "beta_1 must be < 1.0; got 1.0"),
])
def test_bad_training_input_is_named(call, error, words, rng):
    model = Sequential([Dense(4, activation="relu", input_shape=(3,)), Dense(2, activation="softmax")])
    model.compile("sgd", "categorical_crossentropy")
    x = random_array(rng, (6, 3), np.float32)
    y = to_categorical([0, 1, 0, 1, 0, 1], 2)
    with pytest.raises(error, match=words):
        call(model, x, y)


def test_structural_mistakes_are_named():
    with pytest.raises(RuntimeError, match=r"model 'sequential' has no loss: call compile"):
        Sequential([Dense(1, input_shape=(2,))]).fit(np.ones((2, 2)), np.ones((2, 1)))
    no_optimizer = Sequential([Dense(1, input_shape=(2,))])
    with pytest.raises(RuntimeError, match=r"model 'sequential' is not compiled: call compile"):
        no_optimizer.train_on_batch(np.ones((2, 2)), np.ones((2, 1)))
    dense = Dense(2, name="head")
    model = Sequential([dense])
    with pytest.raises(ValueError, match=r"layer 'head' \(Dense\) is already in the model"):
        model.add(dense)
    with pytest.raises(ValueError, match="the model already has a layer named 'head'"):
        model.add(Dense(3, name="head"))
    with pytest.raises(TypeError, match=r"layer 'dense' \(Dense\) has dtype float64 but the model computes in float32"):
        model.add(Dense(3, dtype="float64"))
    with pytest.raises(TypeError, match="layer must be a toolkit.nn layer .*; got str"):
        model.add("dense")
    with pytest.raises(ValueError, match="has no layers; add some first"):
        Sequential().output_shapes((None, 3))
    auto = Sequential([Dense(2), Dense(2), Dense(2)])
    assert [layer.name for layer in auto.layers] == ["dense", "dense_1", "dense_2"]


def test_optional_digits_dataset_is_lenet_sized():
    pytest.importorskip("sklearn")
    from toolkit.nn.datasets import load_digits_32x32

    x, y = load_digits_32x32()
    assert x.shape == (1797, 32, 32, 1) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert set(np.unique(y)) == set(range(10))


# --- GPU: the same model runs where its arrays live ---------------------------------------------------------
@pytest.mark.gpu
def test_model_on_the_gpu_matches_the_cpu(rng):
    needed = ["dense", "activations", "losses", "optim"]
    missing = [op for op in needed if importlib.util.find_spec(f"toolkit.ops.{op}.gpu") is None]
    if missing or not backend.gpu_available():
        pytest.skip(f"GPU kernels missing for {missing} or no GPU: {backend.gpu_status()[1]}")
    x, y = blobs(rng, n=16)

    def trained(device):
        with backend.use(device):
            model = Sequential([Dense(4, activation="relu", input_shape=(2,)), Dense(2, activation="softmax")], seed=0)
            model.compile("adam", "categorical_crossentropy")
            model.fit(x, y, epochs=2, batch_size=8, verbose=0)
            assert model.device == device
            return model.get_weights()

    for a, b in zip(trained("cpu"), trained("gpu")):
        assert_close(a, b, atol=1e-5, rtol=1e-4, name="weights after training")


# --- training skips the first layer's dx --------------------------------------------------------------------
def _record_backward(monkeypatch, calls, force_dx=False):
    """Spy on every Layer.backward: (layer name, need_dx received, whether dx came back). ``force_dx``
    hands every layer need_dx=True instead: the training step as it was before need_dx existed."""
    real = Layer.backward

    def backward(self, dy, need_dx=True):
        dx = real(self, dy, need_dx=True if force_dx else need_dx)
        calls.append((self.name, need_dx, dx is not None))
        return dx

    monkeypatch.setattr(Layer, "backward", backward)


def _small_cnn():
    return Sequential([Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1), name="c1"), AveragePooling2D(2, name="s2"),
                       Conv2D(5, 2, activation="tanh", name="c3"), Flatten(name="flat"),
                       Dense(3, activation="softmax", name="out")], seed=3)


def test_fit_tells_only_the_first_layer_that_its_dx_is_unused_and_trains_the_same(rng, monkeypatch):
    x = rng.random((20, 8, 8, 1)).astype(np.float32)
    y = to_categorical(np.arange(20) % 3, 3)
    trained = {}
    for force_dx in (True, False):
        calls = []
        with monkeypatch.context() as patch:
            _record_backward(patch, calls, force_dx)
            model = _small_cnn()
            model.compile(Adam(learning_rate=0.01), "categorical_crossentropy", metrics=["accuracy"])
            history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
        trained[force_dx] = model.get_weights(), history, calls
    (w_old, h_old, _), (w_new, h_new, calls) = trained[True], trained[False]
    assert h_new == h_old and all(np.array_equal(a, b) for a, b in zip(w_new, w_old))  # bit for bit
    step = [("out", True, True), ("flat", True, True), ("c3", True, True), ("s2", True, True), ("c1", False, False)]
    assert calls == step * 6  # 2 epochs of 3 batches; c1 got need_dx=False and computed no dx


def test_layers_before_the_first_parameters_are_not_run_backward(rng, monkeypatch):
    # Flatten and Dropout have no gradients to store and nothing below them needs dx: training skips them,
    # and the first Dense is told that its dx is unused.
    calls = []
    _record_backward(monkeypatch, calls)
    model = Sequential([Flatten(input_shape=(3, 2), name="flat"), Dropout(0.2, name="drop"), Dense(4, name="d1"),
                        Dense(2, activation="softmax", name="d2")], seed=0)
    model.compile("sgd", "categorical_crossentropy")
    x, y = random_array(rng, (5, 3, 2), np.float32), to_categorical([0, 1, 1, 0, 1], 2)
    model.train_on_batch(x, y)
    assert calls == [("d2", True, True), ("d1", False, False)]
    calls.clear()
    _, grads = model.loss_and_gradients(x, y)  # only the parameters' gradients: no dx either
    assert calls == [("d2", True, True), ("d1", False, False)] and len(grads) == 4


def test_model_backward_returns_dx_unless_told_otherwise(rng):
    model = _small_cnn()
    model.compile("sgd", "categorical_crossentropy")
    x = random_array(rng, (2, 8, 8, 1), np.float32)
    out = model.forward(x, training=True)
    dy = random_array(rng, out.shape, np.float32)
    dx = model.backward(dy)
    assert dx.shape == x.shape
    grads = model.grads()
    assert model.backward(dy, need_dx=False) is None
    assert all(np.array_equal(a, b) for a, b in zip(model.grads(), grads))
    with pytest.raises(TypeError, match="need_dx must be True or False; got 'no'"):
        model.backward(dy, need_dx="no")


# --- fit stops at the first non-finite loss (issue 11) -------------------------------------------------------------
def _recording_model(seed=0):
    """Dense -> BatchNormalization -> Dropout -> Dense under Adam: every kind of state a step changes (weights,
    moving statistics, Dropout's counter, Adam's m, v and iterations). ``snapshots`` holds a copy of all of it
    taken after each update, and the initial one."""
    model = Sequential([Dense(6, activation="relu", input_shape=(2,)), BatchNormalization(), Dropout(0.25),
                        Dense(2, activation="softmax")], seed=seed)
    model.compile(Adam(learning_rate=0.05), "categorical_crossentropy", metrics=["accuracy"])
    model.build()
    snapshots = []

    def snapshot():
        slots = [backend.to_numpy(s).copy() for _, state in model.optimizer._slots.values() for s in state]
        steps = [layer.step for layer in model.layers if isinstance(layer, Dropout)]
        snapshots.append((model.get_weights(), slots, model.optimizer.iterations, steps))

    apply = model.optimizer.apply_gradients

    def apply_and_record(params, grads):
        apply(params, grads)
        snapshot()

    model.optimizer.apply_gradients = apply_and_record
    snapshot()
    return model, snapshots


def _assert_same_state(model, snapshot):
    weights, slots, iterations, steps = snapshot
    now = [backend.to_numpy(s) for _, state in model.optimizer._slots.values() for s in state]
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), weights, strict=True))  # bit for bit
    assert all(np.array_equal(a, b) for a, b in zip(now, slots, strict=True))
    assert model.optimizer.iterations == iterations
    assert [layer.step for layer in model.layers if isinstance(layer, Dropout)] == steps


def test_fit_stops_at_a_nan_in_a_later_batch_with_the_previous_batchs_state(rng):
    x, y = blobs(rng, n=20)
    x[13, 1] = np.nan  # batch 3 of 5 (0-based) with batch_size 4 and no shuffling
    model, snapshots = _recording_model()
    with pytest.raises(NonFiniteLossError, match=r"the loss is nan \(expected a finite number\) at epoch 1/3, "
                                                 r"batch 3 \(0-based, of 5\).*NaN/Inf in x and y") as caught:
        model.fit(x, y, epochs=3, batch_size=4, shuffle=False, verbose=0)
    assert isinstance(caught.value, FloatingPointError)
    assert (caught.value.epoch, caught.value.batch, math.isnan(caught.value.loss)) == (1, 3, True)
    assert len(snapshots) == 1 + 3  # three updates ran, the fourth batch's did not
    _assert_same_state(model, snapshots[-1])


def test_fit_stops_at_a_nan_in_x_before_the_first_update(rng):
    x, y = blobs(rng, n=12)
    x[0, 0] = np.nan
    model, snapshots = _recording_model()
    with pytest.raises(NonFiniteLossError, match=r"at epoch 1/2, batch \d \(0-based, of 3\)") as caught:
        model.fit(x, y, epochs=2, batch_size=4, verbose=0)  # shuffled: the NaN's batch is the seed's
    assert caught.value.batch == len(snapshots) - 1
    _assert_same_state(model, snapshots[-1])


def test_fit_stops_at_an_inf_in_y(rng):
    x = random_array(rng, (8, 3), np.float32)
    y = random_array(rng, (8, 2), np.float32)
    y[5, 1] = np.inf
    model = Sequential([Dense(2, input_shape=(3,))], seed=0)
    model.compile(SGD(learning_rate=0.1, momentum=0.9), "mse")
    before = model.get_weights()
    words = r"the loss is inf .* at epoch 1/1, batch 1 \(0-based, of 2\)"
    with pytest.raises(NonFiniteLossError, match=words) as caught:
        model.fit(x, y, epochs=1, batch_size=4, shuffle=False, verbose=0)
    assert caught.value.loss == np.inf
    after_first = Sequential([Dense(2, input_shape=(3,))], seed=0)
    after_first.compile(SGD(learning_rate=0.1, momentum=0.9), "mse")
    after_first.train_on_batch(x[:4], y[:4])  # the one update fit made
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), after_first.get_weights()))
    assert not all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before))


def test_non_finite_loss_error_pickles(rng):
    import pickle

    err = pickle.loads(pickle.dumps(NonFiniteLossError(float("nan"), 2, 5, 7, 10)))
    assert (err.epoch, err.epochs, err.batch, err.batches) == (2, 5, 7, 10) and "epoch 2/5, batch 7" in str(err)
