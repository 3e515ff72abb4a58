"""toolkit.nn layers: shape arithmetic vs running, the op wiring vs independent oracles (float32 and float64),
every backward vs central finite differences (float64), Keras' initialisers, bad input named before any kernel."""

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import assert_close, check_gradient, random_array, tolerance
from toolkit.nn import (LSTM, Activation, AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten,
                        MaxPooling2D, SimpleRNN, initializers, to_categorical)
from toolkit.nn.datasets import upsample_nearest
from toolkit.ops.conv2d import geometry
from toolkit.ops.conv2d import reference as conv_reference
from toolkit.ops.dropout import dropout_mask
from toolkit.ops.lstm import reference as lstm_reference
from toolkit.ops.pool2d import reference as pool_reference
from toolkit.ops.rnn import reference as rnn_reference


def loose(dtype):
    """Layer (Numba) vs oracle (NumPy) sum dot products in different orders: 10x the op tolerance."""
    tol = tolerance(dtype)
    return {"atol": 10 * tol["atol"], "rtol": 10 * tol["rtol"]}


def run(layer, x, training=False):
    y = layer.forward(x, training=training)
    assert y.dtype == x.dtype
    assert y.shape == (x.shape[0], *layer.compute_output_shape((None, *x.shape[1:]))[1:])
    assert layer.count_params() == sum(w.size for w in layer.weights().values())
    assert all(w.dtype == x.dtype for w in layer.weights().values())
    return y


# --- every layer: arithmetic shape == the shape of running it, params counted == params made --------
# (id, layer factory, input shape with the batch)
SHAPE_CASES = [
    ("dense_batch1", lambda: Dense(3), (1, 5)),
    ("dense_relu_nobias", lambda: Dense(4, activation="relu", use_bias=False), (3, 7)),
    ("conv_valid", lambda: Conv2D(3, 3), (2, 7, 6, 2)),
    ("conv_same_stride2_odd", lambda: Conv2D(4, (3, 2), strides=2, padding="same", activation="tanh"), (1, 7, 9, 3)),
    ("conv_int_padding", lambda: Conv2D(2, 3, strides=(2, 1), padding=1), (2, 6, 5, 1)),
    ("conv_asymmetric_padding", lambda: Conv2D(2, 2, padding=((0, 2), (1, 0))), (1, 4, 5, 2)),
    ("conv_kernel_fills_input", lambda: Conv2D(5, (4, 3)), (2, 4, 3, 2)),
    ("maxpool_default", lambda: MaxPooling2D(), (2, 6, 6, 3)),
    ("maxpool_3_stride2_odd", lambda: MaxPooling2D(3, 2), (1, 7, 9, 2)),
    ("maxpool_same", lambda: MaxPooling2D(2, padding="same"), (2, 5, 7, 1)),
    ("avgpool_same_stride1", lambda: AveragePooling2D((2, 3), strides=1, padding="same"), (1, 4, 5, 2)),
    ("avgpool_valid", lambda: AveragePooling2D(2), (3, 5, 5, 2)),
    ("flatten_4d", lambda: Flatten(), (2, 3, 4, 5)),
    ("flatten_2d", lambda: Flatten(), (3, 4)),
    ("dropout", lambda: Dropout(0.5), (4, 6)),
    ("batchnorm_2d", lambda: BatchNormalization(), (5, 3)),
    ("batchnorm_4d", lambda: BatchNormalization(), (2, 3, 3, 4)),
    ("activation_softmax", lambda: Activation("softmax"), (2, 5)),
    ("activation_leaky", lambda: Activation("leaky_relu", alpha=0.2), (2, 3, 2)),
    ("rnn_last", lambda: SimpleRNN(4), (2, 5, 3)),
    ("rnn_sequences_batch1", lambda: SimpleRNN(3, return_sequences=True), (1, 4, 2)),
    ("lstm_last", lambda: LSTM(3), (2, 4, 3)),
    ("lstm_sequences", lambda: LSTM(2, return_sequences=True), (3, 2, 4)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case,make,shape", SHAPE_CASES, ids=[c[0] for c in SHAPE_CASES])
def test_output_shape_arithmetic_matches_running(case, make, shape, dtype, rng):
    layer = make()
    layer.dtype = np.dtype(dtype)
    run(layer, random_array(rng, shape, dtype), training=True)
    run(layer, random_array(rng, shape, dtype), training=False)


# --- the layers compute what the ops' oracles compute with the layer's own parameters --------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_is_x_kernel_plus_bias_then_activation(dtype, rng):
    layer = Dense(4, activation="relu", dtype=dtype, seed=3)
    x = random_array(rng, (5, 6), dtype)
    y = run(layer, x)
    W, b = layer.weights()["kernel"], layer.weights()["bias"]
    b[...] = random_array(rng, b.shape, dtype)  # in place: the layer sees it
    y = layer.forward(x)
    assert_close(y, np.maximum(x.astype(np.float64) @ W + b, 0), **loose(dtype), name="Dense relu")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("strides,padding", [(1, "valid"), (2, "same"), ((1, 2), 1)])
def test_conv2d_matches_the_conv_oracle(strides, padding, dtype, rng):
    layer = Conv2D(3, (3, 2), strides=strides, padding=padding, activation="tanh", dtype=dtype)
    x = random_array(rng, (2, 7, 6, 2), dtype)
    layer.build((None, 7, 6, 2))
    layer.weights()["bias"][...] = random_array(rng, (3,), dtype)
    y = run(layer, x)
    w, b = (a.astype(np.float64) for a in layer.params())
    stride = (strides, strides) if isinstance(strides, int) else strides
    pads = geometry.resolve_padding(padding, (7, 6), (3, 2), stride)
    z, _ = conv_reference.forward(x.astype(np.float64), w, b, stride, pads)
    assert_close(y, np.tanh(z), **loose(dtype), name="Conv2D")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls,mode", [(MaxPooling2D, "max"), (AveragePooling2D, "avg")])
def test_pooling_matches_the_pool_oracle(cls, mode, dtype, rng):
    x = random_array(rng, (2, 5, 7, 3), dtype)
    layer = cls(3, 2, padding="same", dtype=dtype)
    y = run(layer, x)
    pads = geometry.resolve_padding("same", (5, 7), (3, 3), (2, 2))
    expected, _ = pool_reference.forward(x, (3, 3), (2, 2), pads, mode)
    assert_close(y, expected, **tolerance(dtype), name=cls.__name__)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_train_and_inference_follow_keras(dtype, rng):
    layer = BatchNormalization(momentum=0.9, epsilon=1e-3, dtype=dtype)
    x = random_array(rng, (6, 2, 2, 3), dtype, scale=2.0) + dtype(1.5)
    y = run(layer, x, training=True)
    x64 = x.astype(np.float64)
    mean, var = x64.mean(axis=(0, 1, 2)), x64.var(axis=(0, 1, 2))
    assert_close(y, (x64 - mean) / np.sqrt(var + 1e-3), **loose(dtype), name="BN training")
    state = layer.weights()
    assert_close(state["moving_mean"], 0.1 * mean, **loose(dtype), name="moving mean (Keras momentum 0.9)")
    assert_close(state["moving_variance"], 0.9 + 0.1 * var, **loose(dtype), name="moving variance")
    y_inf = layer.forward(x, training=False)
    expected = (x64 - state["moving_mean"]) / np.sqrt(state["moving_variance"].astype(np.float64) + 1e-3)
    assert_close(y_inf, expected, **loose(dtype), name="BN inference")
    assert layer.count_params() == 12 and layer.count_trainable_params() == 6  # Keras: 4C, 2C trainable


def test_dropout_draws_a_fresh_seeded_mask_per_training_call(rng):
    x = np.ones((50, 40), np.float32)
    layer = Dropout(0.25, seed=7)
    y0 = layer.forward(x, training=True)
    y1 = layer.forward(x, training=True)
    assert layer.step == 2
    for k, y in enumerate((y0, y1)):
        mask = dropout_mask(x.shape, 0.25, layer.mask_seed(k))
        assert np.array_equal(y != 0, mask)
        assert_close(y[mask], np.full(int(mask.sum()), 1 / 0.75), atol=0, rtol=1e-7, name="survivors / (1 - rate)")
    assert not np.array_equal(y0, y1)
    assert 0.2 < (y0 == 0).mean() < 0.3
    assert np.array_equal(layer.forward(x, training=False), x) and layer.step == 2  # inference: identity
    again = Dropout(0.25, seed=7)
    assert np.array_equal(again.forward(x, training=True), y0)  # the seed decides


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls", [SimpleRNN, LSTM])
def test_recurrent_layers_match_their_oracles(cls, dtype, rng):
    x = random_array(rng, (2, 4, 3), dtype)
    seq = cls(5, return_sequences=True, dtype=dtype, seed=1)
    last = cls(5, dtype=dtype, seed=1)
    h_all = run(seq, x)
    h_last = run(last, x)
    assert_close(h_last, h_all[:, -1], atol=0, rtol=0, name="last state = last of the sequence")
    p = [a.astype(np.float64) for a in seq.params()]
    x64, zeros = x.astype(np.float64), np.zeros((2, 5))
    if cls is SimpleRNN:
        _, h, _ = rnn_reference.forward(x64, zeros, p[0], p[1], p[2], None, None)
    else:
        h, _, _ = lstm_reference.forward(x64, zeros, zeros, p[0], p[1], p[2])
    assert_close(h_all, h, **loose(dtype), name=cls.__name__)


# --- backward: every layer's dx and parameter gradients against central finite differences ----------
def check_layer_gradients(layer, x, rng, training=True, before=lambda: None):
    before()
    y = layer.forward(x, training=training)
    r = random_array(rng, y.shape)
    dx = layer.backward(r)
    grads = layer.grads()

    def loss():
        before()
        return float((layer.forward(x, training=training) * r).sum())

    check_gradient(loss, x, dx, name=f"{layer.name} x")
    for pname, p, g in zip(layer.param_names(), layer.params(), grads):
        check_gradient(loss, p, g, name=f"{layer.name} {pname}")


GRAD_CASES = [
    ("dense_softmax", lambda: Dense(3, activation="softmax"), (2, 4)),
    ("dense_sigmoid_nobias", lambda: Dense(2, activation="sigmoid", use_bias=False), (3, 3)),
    ("conv_same_stride2_relu", lambda: Conv2D(2, 3, strides=2, padding="same", activation="relu"), (2, 5, 4, 2)),
    ("conv_valid_tanh", lambda: Conv2D(2, (2, 3), activation="tanh"), (1, 4, 5, 2)),
    ("maxpool", lambda: MaxPooling2D(2), (2, 4, 4, 2)),
    ("avgpool_same", lambda: AveragePooling2D(3, 2, padding="same"), (1, 5, 4, 2)),
    ("flatten", lambda: Flatten(), (2, 2, 3, 2)),
    ("batchnorm_train", lambda: BatchNormalization(), (4, 2, 2, 3)),
    ("activation_log_softmax", lambda: Activation("log_softmax"), (3, 4)),
    ("rnn_last", lambda: SimpleRNN(3), (2, 3, 2)),
    ("rnn_sequences", lambda: SimpleRNN(2, return_sequences=True), (2, 3, 2)),
    ("lstm_last", lambda: LSTM(2), (2, 3, 2)),
    ("lstm_sequences", lambda: LSTM(2, return_sequences=True), (1, 3, 2)),
]


@pytest.mark.parametrize("case,make,shape", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_layer_backward_matches_finite_differences(case, make, shape, rng):
    layer = make()
    layer.dtype = np.dtype(np.float64)
    layer.seed = 5
    x = random_array(rng, shape)
    layer.build((None, *shape[1:]))
    for b in [w for n, w in layer.weights().items() if n in ("bias", "beta")]:
        b[...] = random_array(rng, b.shape, scale=0.3)  # non-zero biases exercise more of the op
    check_layer_gradients(layer, x, rng)


def test_batchnorm_inference_backward_matches_finite_differences(rng):
    layer = BatchNormalization(dtype="float64")
    layer.build((None, 3))
    layer.weights()["moving_variance"][...] = [0.5, 2.0, 1.5]
    check_layer_gradients(layer, random_array(rng, (4, 3)), rng, training=False)


def test_dropout_backward_with_a_frozen_mask(rng):
    layer = Dropout(0.4, seed=11, dtype="float64")

    def same_mask():
        layer.step = 0  # the mask of training call 0 at every evaluation

    check_layer_gradients(layer, random_array(rng, (3, 5)), rng, before=same_mask)


def test_logits_flag_leaves_out_only_the_final_activation(rng):
    layer = Dense(3, activation="softmax", dtype="float64")
    x = random_array(rng, (2, 4))
    z = layer.forward(x, logits=True)
    W, b = layer.params()
    assert_close(z, x @ W + b, atol=1e-12, rtol=1e-12, name="logits")
    dz = random_array(rng, z.shape)
    assert_close(layer.backward(dz), dz @ W.T, atol=1e-12, rtol=1e-12, name="dx from dlogits")
    assert layer.output_activation == "softmax"
    assert Dense(2, activation="relu").output_activation is None
    assert Activation("sigmoid").output_activation == "sigmoid"
    assert Activation("sigmoid", steepness=2.0).output_activation is None  # not the fusable form
    with pytest.raises(ValueError, match=r"layer 'dense' \(Dense\) has no final activation to leave out"):
        Dense(2, dtype="float64").forward(x, logits=True)


# --- initialisers: Keras' formulas, seeded ------------------------------------------------------------
def test_glorot_uniform_limit_fans_and_seed():
    shape = (3, 3, 16, 32)  # fan_in 144, fan_out 288
    assert initializers.compute_fans(shape) == (144, 288)
    assert initializers.compute_fans((20, 30)) == (20, 30)
    w = initializers.glorot_uniform(shape, np.float64, seed=1)
    limit = np.sqrt(6 / (144 + 288))
    assert w.dtype == np.float64 and np.abs(w).max() <= limit
    assert abs(w.var() - limit**2 / 3) < 0.05 * limit**2 / 3  # the variance of U(-l, l), 4608 samples
    assert np.array_equal(w, initializers.glorot_uniform(shape, np.float64, seed=1))
    assert not np.array_equal(w, initializers.glorot_uniform(shape, np.float64, seed=2))
    assert initializers.glorot_uniform((4, 5), np.float32, seed=0).dtype == np.float32


def test_glorot_variance_is_two_over_fan_sum_by_sympy():
    """Glorot's condition Var(w) = 2 / (fan_in + fan_out), derived for U(-limit, limit) with Keras' limit."""
    w, a, b = sp.symbols("w fan_in fan_out", positive=True)
    limit = sp.sqrt(6 / (a + b))
    variance = sp.integrate(w**2 / (2 * limit), (w, -limit, limit))  # the mean is 0 by symmetry
    assert sp.simplify(variance - 2 / (a + b)) == 0
    sample = initializers.glorot_uniform((200, 300), np.float64, seed=4)
    expected = float(variance.subs({a: 200, b: 300}))
    assert abs(sample.var() - expected) < 0.02 * expected  # 60000 draws: the sampling error is ~0.6%


def test_orthogonal_square_and_packed_gates():
    q = initializers.orthogonal((6, 6), np.float64, seed=3)
    assert_close(q.T @ q, np.eye(6), atol=1e-12, rtol=0, name="Q^T Q")
    u = initializers.orthogonal((3, 12), np.float64, seed=3)  # an LSTM recurrent kernel (H, 4H)
    assert_close(u @ u.T, np.eye(3), atol=1e-12, rtol=0, name="orthonormal rows")


def test_keras_default_initial_values(rng):
    lstm = LSTM(3, seed=0)
    lstm.build((None, 4, 2))
    b = lstm.weights()["bias"]
    assert np.array_equal(b, np.r_[np.zeros(3), np.ones(3), np.zeros(6)])  # unit_forget_bias: the f block
    assert_close(lstm.weights()["recurrent_kernel"] @ lstm.weights()["recurrent_kernel"].T, np.eye(3),
                 atol=1e-6, rtol=0, name="orthogonal recurrent kernel")
    bn = BatchNormalization()
    bn.build((None, 4))
    assert [list(w) for w in bn.get_weights()] == [[1] * 4, [0] * 4, [0] * 4, [1] * 4]
    dense = Dense(3, seed=9)
    dense.build((None, 5))
    assert np.array_equal(dense.get_weights()[1], np.zeros(3))
    assert np.abs(dense.get_weights()[0]).max() <= np.sqrt(6 / 8)
    other = Dense(3, seed=9)
    other.build((None, 5))
    assert np.array_equal(dense.get_weights()[0], other.get_weights()[0])


def test_set_weights_writes_into_the_same_arrays(rng):
    layer = Dense(2, seed=0)
    layer.build((None, 3))
    kernel = layer.params()[0]
    new = [np.arange(6.0).reshape(3, 2), np.array([1.0, -1.0])]
    layer.set_weights(new)
    assert layer.params()[0] is kernel and np.array_equal(kernel, new[0]) and kernel.dtype == np.float32
    with pytest.raises(ValueError, match=r"weight 'kernel' must have shape \(3, 2\); got \(2, 3\)"):
        layer.set_weights([np.zeros((2, 3)), np.zeros(2)])
    with pytest.raises(ValueError, match=r"has 2 weight arrays \['kernel', 'bias'\]; got 1"):
        layer.set_weights([np.zeros((3, 2))])


# --- IEEE and copies ------------------------------------------------------------------------------------
def test_nan_and_inf_propagate_without_warnings(rng):
    layer = Dense(3, activation="softmax", dtype="float64", seed=0)
    x = random_array(rng, (3, 4))
    x[1, 2] = np.nan
    x[2, 0] = np.inf
    y = layer.forward(x)
    assert np.isfinite(y[0]).all() and np.isnan(y[1]).all()
    pool = MaxPooling2D(2)
    img = random_array(rng, (1, 2, 2, 1))
    img[0, 0, 1, 0] = np.inf
    assert pool.forward(img)[0, 0, 0, 0] == np.inf


def test_strided_and_read_only_inputs_work(rng):
    base = random_array(rng, (4, 6, 6, 2))
    view = base[:, ::2, ::2, :]
    view.flags.writeable = False
    layer = Conv2D(2, 2, dtype="float64", seed=0)
    assert_close(layer.forward(view), layer.forward(np.ascontiguousarray(view)), atol=0, rtol=0, name="view")


# --- bad input: a clear error naming the layer, the expected and the received value -------------------
@pytest.mark.parametrize("make,error,words", [
    (lambda: Dense(0), ValueError, "units must be a positive integer; got 0"),
    (lambda: Dense(2.5), TypeError, r"units must be a positive integer; got 2.5 \(float\)"),
    (lambda: Dense(2, activation="swish"), ValueError, "activation must be None, 'linear' or one of"),
    (lambda: Dense(2, use_bias=1), TypeError, "use_bias must be True or False; got 1"),
    (lambda: Dense(2, kernel_initializer="lecun"), ValueError, "initializer must be one of"),
    (lambda: Dense(2, dtype="int32"), TypeError, "dtype must be float32 or float64; got 'int32'"),
    (lambda: Dense(2, seed=-1), ValueError, "seed must be a non-negative integer or None; got -1"),
    (lambda: Conv2D(-1, 3), ValueError, "filters must be a positive integer; got -1"),
    (lambda: Conv2D(2, (3,)), ValueError, r"kernel_size must be an int or a pair \(rows, cols\) of ints; got \(3,\)"),
    (lambda: Conv2D(2, 3, strides=0), ValueError, "strides must be a positive integer; got 0"),
    (lambda: Conv2D(2, 3, padding="full"), ValueError, "padding must be 'valid', 'same'"),
    (lambda: MaxPooling2D(0), ValueError, "pool_size must be a positive integer; got 0"),
    (lambda: MaxPooling2D(2, strides=(1, -1)), ValueError, r"strides\[1\] must be a positive integer; got -1"),
    (lambda: AveragePooling2D(2, padding=1), ValueError, r"padding must be 'valid' or 'same' \(Keras' pooling layers\); got 1"),
    (lambda: Dropout(1.0), ValueError, r"rate \(the fraction dropped\) must be < 1.0; got 1.0"),
    (lambda: Dropout(-0.1), ValueError, r"rate \(the fraction dropped\) must be >= 0.0; got -0.1"),
    (lambda: Dropout("half"), TypeError, "rate .* must be a real number; got 'half'"),
    (lambda: BatchNormalization(axis=1), ValueError, "axis must be -1"),
    (lambda: BatchNormalization(momentum=1.5), ValueError, "momentum must be <= 1.0; got 1.5"),
    (lambda: BatchNormalization(epsilon=0), ValueError, "epsilon must be > 0.0; got 0.0"),
    (lambda: Activation("sigmoid", alpha=1.0), TypeError, r"takes parameters \['steepness'\]; got \['alpha'\]"),
    (lambda: Activation("sigmoid", steepness=0), ValueError, "steepness must be > 0"),
    (lambda: SimpleRNN(3, activation="relu"), ValueError, "activation must be 'tanh'"),
    (lambda: LSTM(3, return_sequences="yes"), TypeError, "return_sequences must be True or False"),
])
def test_bad_hyper_parameters_are_named(make, error, words):
    with pytest.raises(error, match=words):
        make()


@pytest.mark.parametrize("make,input_shape,words", [
    (lambda: Dense(3), (None, 4, 4, 2),
     r"layer 'dense' \(Dense\) expects inputs of rank 2 \(batch, features\): put a Flatten before a Dense that "
     r"follows images; got input shape \(None, 4, 4, 2\) \(rank 4\)"),
    (lambda: Conv2D(2, 3), (None, 8, 8),
     r"layer 'conv2d' \(Conv2D\) expects inputs of rank 4 \(batch, height, width, channels\); got input shape "
     r"\(None, 8, 8\)"),
    (lambda: Conv2D(2, 5), (None, 4, 6, 1),
     r"layer 'conv2d' \(Conv2D\): kernel_size height 5 is larger than the padded input height 4"),
    (lambda: MaxPooling2D(3), (None, 2, 5, 1), r"layer 'max_pooling2d' \(MaxPooling2D\): pool_size \(3, 3\) is larger"),
    (lambda: SimpleRNN(2), (None, 5), r"layer 'simple_rnn' \(SimpleRNN\) expects inputs of rank 3"),
    (lambda: BatchNormalization(), (None,), r"layer 'batch_normalization' \(BatchNormalization\) expects inputs of rank >= 2"),
    (lambda: Dense(3), (None, 0), r"input_shape\[1\] must be a positive integer; got 0"),
])
def test_impossible_input_shapes_are_named(make, input_shape, words):
    with pytest.raises(ValueError, match=words):
        make().compute_output_shape(input_shape)


def test_bad_arrays_are_named_before_any_kernel(rng):
    layer = Dense(3, seed=0)
    x = random_array(rng, (2, 4), np.float32)
    layer.forward(x)
    with pytest.raises(TypeError, match=r"layer 'dense' \(Dense\) computes in float32; got an input of dtype float64"):
        layer.forward(x.astype(np.float64))
    with pytest.raises(TypeError, match=r"computes in float32; got an input of dtype int64"):
        layer.forward(np.ones((2, 4), dtype=np.int64))
    with pytest.raises(TypeError, match="computes in float32; got an input of dtype complex128"):
        layer.forward(np.ones((2, 4), dtype=np.complex128))
    with pytest.raises(TypeError, match=r"layer 'dense' \(Dense\) takes a NumPy or CuPy array; got list"):
        layer.forward([[1.0, 2.0, 3.0, 4.0]])
    with pytest.raises(ValueError, match=r"got an empty batch of shape \(0, 4\)"):
        layer.forward(np.ones((0, 4), np.float32))
    with pytest.raises(ValueError, match=r"was built for inputs of shape \(None, 4\); got \(2, 5\)"):
        layer.forward(np.ones((2, 5), np.float32))
    with pytest.raises(ValueError, match=r"layer 'dense' \(Dense\): dy must have shape \(2, 3\); got \(3, 2\)"):
        layer.backward(np.ones((3, 2), np.float32))
    with pytest.raises(TypeError, match="training must be True or False; got 1"):
        layer.forward(x, training=1)


def test_backward_and_grads_before_forward_are_refused():
    layer = Dense(2)
    with pytest.raises(RuntimeError, match=r"layer 'dense' \(Dense\): backward needs the cache of a forward pass"):
        layer.backward(np.ones((1, 2), np.float32))
    layer.build((None, 3))
    with pytest.raises(RuntimeError, match="has no gradients yet: call forward then backward first"):
        layer.grads()
    with pytest.raises(ValueError, match="is not built and has no input_shape"):
        Dense(2).count_params()
    assert Dense(2, input_shape=(7,)).count_params() == 16


# --- to_categorical and the digits' upsampling -------------------------------------------------------
def test_to_categorical_like_keras():
    assert np.array_equal(to_categorical([0, 2, 1]), [[1, 0, 0], [0, 0, 1], [0, 1, 0]])
    y = to_categorical(np.array([[3], [0]]), num_classes=5)
    assert y.shape == (2, 5) and y.dtype == np.float32 and y[0, 3] == 1 and y.sum() == 2
    assert to_categorical(np.array([1.0, 0.0]), 2, dtype="float64").dtype == np.float64
    with pytest.raises(ValueError, match=r"class labels must be in \[0, 3\); got labels from 0 to 3"):
        to_categorical([0, 3], num_classes=3)
    with pytest.raises(ValueError, match=r"class labels must be in \[0, 4\); got labels from -1 to 3"):
        to_categorical([-1, 3])
    with pytest.raises(ValueError, match="non-integral floats"):
        to_categorical(np.array([0.5, 1.0]))
    with pytest.raises(TypeError, match="integer class labels; got dtype complex128"):
        to_categorical(np.array([1j]))
    with pytest.raises(ValueError, match="must not be empty"):
        to_categorical(np.array([], dtype=int))
    with pytest.raises(ValueError, match="num_classes must be a positive integer; got 0"):
        to_categorical([0], num_classes=0)


@given(labels=st.lists(st.integers(0, 9), min_size=1, max_size=30))
def test_property_to_categorical_round_trips(labels):
    y = to_categorical(labels, 10)
    assert np.array_equal(y.argmax(axis=1), labels) and np.array_equal(y.sum(axis=1), np.ones(len(labels)))


def test_upsample_nearest_repeats_each_pixel_in_a_block():
    img = np.arange(4.0).reshape(1, 2, 2)
    up = upsample_nearest(img, 4)
    assert up.shape == (1, 8, 8)
    assert np.array_equal(up[0, :4, :4], np.zeros((4, 4))) and np.array_equal(up[0, 4:, 4:], np.full((4, 4), 3.0))
    with pytest.raises(ValueError, match="factor must be a positive integer; got 0"):
        upsample_nearest(img, 0)


# --- property-based: the arithmetic and the kernels agree on every geometry, or both refuse -------------
@settings(max_examples=25)
@given(h=st.integers(1, 9), w=st.integers(1, 9), k=st.integers(1, 4), s=st.integers(1, 3),
       padding=st.sampled_from(["valid", "same", 0, 1, 2]), n=st.integers(1, 2))
def test_property_conv2d_shape_arithmetic(h, w, k, s, padding, n):
    layer = Conv2D(2, k, strides=s, padding=padding, dtype="float64", seed=0)
    x = np.ones((n, h, w, 1))
    try:
        expected = layer.compute_output_shape((None, h, w, 1))
    except ValueError as exc:
        assert "layer 'conv2d' (Conv2D): kernel_size" in str(exc)
        with pytest.raises(ValueError, match="kernel_size"):
            layer.forward(x)
        return
    assert layer.forward(x).shape == (n, *expected[1:])


@settings(max_examples=25)
@given(h=st.integers(1, 8), w=st.integers(1, 8), p=st.integers(1, 4), s=st.integers(1, 3),
       padding=st.sampled_from(["valid", "same"]), mode=st.sampled_from([MaxPooling2D, AveragePooling2D]))
def test_property_pooling_shape_arithmetic(h, w, p, s, padding, mode):
    layer = mode(p, s, padding=padding, dtype="float64")
    x = np.arange(h * w * 2, dtype=np.float64).reshape(1, h, w, 2)
    try:
        expected = layer.compute_output_shape((None, h, w, 2))
    except ValueError:
        with pytest.raises(ValueError):
            layer.forward(x)
        return
    y = layer.forward(x)
    assert y.shape == (1, *expected[1:])
    if mode is MaxPooling2D and padding == "valid":  # increasing input: each window's max is its last cell
        assert y[0, -1, -1, 0] == x[0, (expected[1] - 1) * s + p - 1, (expected[2] - 1) * s + p - 1, 0]


# --- backward(dy, need_dx=False): Dense and Conv2D skip dx, the rest still return it -------------------------
@pytest.mark.parametrize("make,shape", [
    (lambda: Dense(3, activation="tanh"), (4, 5)),
    (lambda: Conv2D(3, 3, padding="same", activation="relu"), (2, 6, 5, 2)),
    (lambda: Conv2D(2, 2, use_bias=False), (2, 4, 4, 3)),
], ids=["dense", "conv2d", "conv2d_no_bias"])
def test_layers_that_skip_dx_return_none_and_the_same_gradients(make, shape, rng):
    layer = make()
    x = random_array(rng, shape, np.float32)
    y = layer.forward(x, training=True)
    dy = random_array(rng, y.shape, np.float32)
    dx = layer.backward(dy)  # a direct call still returns dx
    assert layer.skips_dx and dx.shape == x.shape
    grads = layer.grads()
    assert layer.backward(dy, need_dx=False) is None
    assert all(np.array_equal(a, b) for a, b in zip(layer.grads(), grads))  # bit for bit


@pytest.mark.parametrize("make,shape", [
    (lambda: Flatten(), (2, 3, 4, 2)),
    (lambda: MaxPooling2D(2), (2, 4, 4, 3)),
    (lambda: BatchNormalization(), (6, 4)),
    (lambda: Activation("sigmoid"), (3, 5)),
    (lambda: SimpleRNN(3), (2, 4, 3)),
], ids=["flatten", "max_pool", "batchnorm", "activation", "simple_rnn"])
def test_other_layers_ignore_need_dx_and_return_dx(make, shape, rng):
    layer = make()
    x = random_array(rng, shape, np.float64)
    y = layer.forward(x, training=True)
    dy = random_array(rng, y.shape)
    dx = layer.backward(dy)
    assert not layer.skips_dx
    assert np.array_equal(layer.backward(dy, need_dx=False), dx)


def test_need_dx_must_be_a_bool(rng):
    layer = Dense(2)
    layer.forward(random_array(rng, (3, 4)))
    for bad in (0, "no", None):
        with pytest.raises(TypeError, match=f"need_dx must be True or False; got {bad!r}"):
            layer.backward(random_array(rng, (3, 2)), need_dx=bad)
