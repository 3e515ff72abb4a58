"""Sizes and integers that cannot work are refused in validation, before any allocation or kernel (issue 11).

Every case here builds small real inputs (or broadcast views of a few bytes): the error must come from
toolkit.validate, naming the argument and the bytes needed, never from NumPy, Numba or a kernel after
terabytes were asked for. ``tiny_memory`` lowers the host limit to reach the temporaries of ops whose
huge cases would need huge inputs (the recurrent states, the batch-norm cache). GPU cases use a stand-in
CuPy array (shape, dtype and flags, no memory) and a stand-in device, and stop at the dispatch.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from toolkit import backend, nn, validate
from toolkit.ops.activations import activation_forward, activation_forward_backward
from toolkit.ops.attention import attention_forward, attention_scores
from toolkit.ops.batchnorm import batchnorm_forward
from toolkit.ops.conv2d import conv2d_forward
from toolkit.ops.dense import dense_forward
from toolkit.ops.dropout import dropout_forward, dropout_mask
from toolkit.ops.flatten import flatten_forward
from toolkit.ops.losses import loss_forward
from toolkit.ops.lstm import lstm_forward
from toolkit.ops.pool2d import pool2d_forward
from toolkit.ops.rnn import rnn_forward

pytestmark = pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")

F32 = np.float32
T = 2**20  # a side that makes an (N, T, T) or (T, T) array of 4 TiB


def ones(*shape):
    return np.ones(shape, dtype=F32)


def huge_view(*shape):
    """A broadcast view of one float: any shape, 4 bytes of memory."""
    return np.broadcast_to(F32(1), shape)


@pytest.fixture
def tiny_memory(monkeypatch):
    """The host's memory limit lowered to 4 kB for the test."""
    monkeypatch.setattr(validate, "_host_memory", lambda: (4096, "the test allows 4.1 kB"))


# ------------------------------------------------------------------ the exception
def test_allocation_error_is_a_value_error_and_a_memory_error():
    assert issubclass(validate.AllocationError, ValueError)
    assert issubclass(validate.AllocationError, MemoryError)


def test_host_limit_is_positive_and_described():
    limit, description = validate.memory_limit("cpu")
    assert 0 < limit <= validate.SIZE_LIMIT
    assert "memory" in description or "index" in description
    assert validate.memory_limit(ones(2)) == (limit, description)


@pytest.mark.parametrize("nbytes, text", [(12, "12 bytes"), (25_300_000_000, "25.3 GB"), (16 * 10**18, "16 EB")])
def test_bytes_are_shown_in_decimal_units(nbytes, text):
    assert validate._human(nbytes) == text


# ------------------------------------------------------------------ conv2d and pool2d
def test_conv2d_padding_of_a_billion_names_padding_and_the_padded_input():
    with pytest.raises(validate.AllocationError, match=r"padding \(\(1000000000, 1000000000\).*padded input.*1\.6e\+19 bytes"):
        conv2d_forward(ones(1, 3, 3, 1), ones(3, 3, 1, 1), padding=10**9)


def test_conv2d_million_output_channels_names_w_and_the_output():
    with pytest.raises(validate.AllocationError, match=r"w \(1, 1, 1, 1048576\).*output y \(N, OH, OW, Cout\).*bytes"):
        conv2d_forward(ones(1, 512, 512, 1), ones(1, 1, 1, 2**20))


def test_conv2d_huge_output_from_padding_and_channels():
    with pytest.raises(MemoryError, match="would need"):  # caught as a MemoryError too
        conv2d_forward(ones(1, 1, 1, 1), ones(1, 1, 1, 1024), padding=(60000, 60000))


@pytest.mark.parametrize("kwargs, name", [
    ({"stride": 2**63}, "stride"), ({"stride": (1, 2**64 + 5)}, r"stride\[1\]"),
    ({"stride": np.uint64(2**64 - 1)}, "stride"), ({"padding": 2**63}, "padding"),
    ({"padding": np.uint64(2**63)}, "padding"), ({"padding": ((0, 2**100), (0, 0))}, r"padding\[0\]\[1\]"),
    ({"padding": (2**31, 0)}, r"padding\[0\]"),
])
def test_conv2d_integers_beyond_the_limit_are_a_clear_value_error(kwargs, name):
    with pytest.raises(ValueError, match=f"{name} must be a .* integer at most 2147483647"):
        conv2d_forward(ones(1, 3, 3, 1), ones(1, 1, 1, 1), **kwargs)


def test_conv2d_largest_stride_allowed_still_runs():
    y, _ = conv2d_forward(ones(1, 3, 3, 1), ones(1, 1, 1, 1), stride=validate.GEOMETRY_LIMIT)
    assert y.shape == (1, 1, 1, 1)


def test_pool2d_padding_of_a_billion_is_refused():
    with pytest.raises(validate.AllocationError, match=r"padding \(\(1000000000.*output y \(N, OH, OW, C\).*bytes"):
        pool2d_forward(ones(1, 3, 3, 1), pool_size=10**9 + 1, stride=1, padding=10**9)


@pytest.mark.parametrize("kwargs, name", [
    ({"pool_size": 2**63}, "pool_size"), ({"pool_size": np.uint64(2**63)}, "pool_size"),
    ({"pool_size": 2, "stride": 2**70}, "stride"), ({"pool_size": (2, 2**40)}, r"pool_size\[1\]"),
])
def test_pool2d_integers_beyond_the_limit_are_a_clear_value_error(kwargs, name):
    with pytest.raises(ValueError, match=f"{name} must be a positive integer at most 2147483647"):
        pool2d_forward(ones(1, 4, 4, 1), **kwargs)


def test_pool2d_max_counts_its_argmax(tiny_memory):
    with pytest.raises(validate.AllocationError, match="argmax"):
        pool2d_forward(ones(1, 20, 20, 1), pool_size=1, mode="max")  # y 1.6 kB fits, with argmax 4.8 kB not


# ------------------------------------------------------------------ dense, attention
def test_dense_output_of_four_tib_names_x_and_w():
    with pytest.raises(validate.AllocationError, match=r"x \(1048576, 1\) \(N = 1048576\) and W \(1, 1048576\) "
                                                       r"\(out = 1048576\).*4\.4e\+12 bytes"):
        dense_forward(ones(T, 1), ones(1, T))


def test_attention_of_a_million_steps_names_the_weights():
    q = ones(1, T, 1)
    with pytest.raises(validate.AllocationError, match=r"Tq = 1048576, Tk = 1048576.*attention weights \(N, Tq, Tk\)"):
        attention_forward(q, q, q)
    with pytest.raises(validate.AllocationError, match=r"attention scores \(N, Tq, Tk\).*bytes"):
        attention_scores(q, q)


def test_attention_broadcast_mask_copy_is_checked():
    q = ones(1, 4, 2)
    mask = np.broadcast_to(np.True_, (1, 4, 4))  # small: copied, fine
    out, _ = attention_forward(q, q, q, mask=mask)
    assert out.shape == (1, 4, 2)


def test_attention_masked_mask_is_refused():
    q = ones(1, 2, 2)
    mask = np.ma.masked_array(np.ones((2, 2), bool), [[0, 1], [0, 0]])
    with pytest.raises(TypeError, match=r"mask.*masked array.*filled"):
        attention_forward(q, q, q, mask=mask)


# ------------------------------------------------------------------ dropout
def test_dropout_mask_of_two_to_the_forty_names_shape():
    with pytest.raises(validate.AllocationError, match=r"shape \(1099511627776,\): the bool mask.*1\.1e\+12 bytes"):
        dropout_mask((2**40,), 0.5, 1)
    with pytest.raises(validate.AllocationError, match="shape"):
        dropout_mask((2**20, 2**20, 2**20), 0.5, 1)  # 2**60: the product in Python ints


@pytest.mark.parametrize("shape", [2**63, (2, 2**64), (np.uint64(2**63),)])
def test_dropout_mask_dimension_beyond_int64_is_a_value_error(shape):
    with pytest.raises(ValueError, match=r"shape\[\d\] must be a positive integer at most 9223372036854775807"):
        dropout_mask(shape, 0.5, 1)


def test_dropout_forward_counts_output_and_mask(tiny_memory):
    dropout_forward(ones(400), 0.5, 1, training=False)  # y 1.6 kB
    with pytest.raises(validate.AllocationError, match="keep mask|output y"):
        dropout_forward(ones(900), 0.5, 1)  # y 3.6 kB + mask 0.9 kB


@pytest.mark.parametrize("seed", [2**64, -1, 2**200])
def test_dropout_seed_out_of_range_is_a_value_error(seed):
    with pytest.raises(ValueError, match="seed must be an integer in"):
        dropout_forward(ones(4), 0.5, seed)


# ------------------------------------------------------------------ broadcast views: the input copy
@pytest.mark.parametrize("call", [
    lambda x: activation_forward(x, "relu"), lambda x: flatten_forward(x),
    lambda x: dropout_forward(x, 0.5, 1), lambda x: loss_forward("mse", x, x),
    lambda x: dense_forward(x, ones(T, 1)),
], ids=["activation", "flatten", "dropout", "loss", "dense"])
def test_broadcast_input_whose_copy_cannot_fit_is_refused(call):
    with pytest.raises(validate.AllocationError, match=r"(x|y) \(a strided or broadcast view.*C-contiguous copy.*bytes"):
        call(huge_view(T, T))


def test_small_strided_input_is_still_copied():
    x = ones(4, 6)[:, ::2]
    y, _ = activation_forward(x, "relu")
    assert y.flags.c_contiguous and y.shape == (4, 3)


# ------------------------------------------------------------------ activations, losses, batchnorm
def test_activation_output_counted(tiny_memory):
    activation_forward(ones(1000), "relu")  # 4 kB: at the limit
    with pytest.raises(validate.AllocationError, match=r"x \(1025,\): the output y"):
        activation_forward(ones(1025), "relu")


def test_softmax_along_first_axis_counts_its_row_copies(tiny_memory):
    activation_forward(ones(200, 2), "softmax", axis=-1)  # y: 1.6 kB
    with pytest.raises(validate.AllocationError, match="3 arrays of x's shape"):
        activation_forward(ones(200, 2), "softmax", axis=0)  # the rows of x, their softmax, y: 4.8 kB
    with pytest.raises(validate.AllocationError, match="6 arrays"):
        activation_forward_backward(ones(200, 2), ones(200, 2), "softmax", axis=0)


@pytest.mark.parametrize("axis", [2**63, -2**63, np.uint64(2**64 - 1), np.int64(5)])
def test_axis_out_of_range_is_a_value_error(axis):
    with pytest.raises(ValueError, match=r"axis must be in \[-2, 1\]"):
        activation_forward(ones(2, 2), "softmax", axis=axis)
    with pytest.raises(ValueError, match=r"axis must be in \[-2, 1\]"):
        loss_forward("softmax_crossentropy", ones(2, 2), ones(2, 2), axis=axis)


def test_real_parameter_beyond_float_range_is_a_value_error():
    with pytest.raises(ValueError, match="alpha must be finite"):
        activation_forward(ones(2), "leaky_relu", alpha=10**400)


def test_softmax_crossentropy_counts_its_probabilities(tiny_memory):
    loss_forward("mse", ones(2000), ones(2000))  # sums in place: nothing of y's size is made
    with pytest.raises(validate.AllocationError, match="probabilities"):
        loss_forward("softmax_crossentropy", ones(500, 3), ones(500, 3))


def test_batchnorm_counts_y_and_x_hat(tiny_memory):
    gamma, beta, mean, var = ones(2), ones(2), np.zeros(2, F32), ones(2)
    with pytest.raises(validate.AllocationError, match=r"x \(300, 2\): the output y and the cache's normalised x_hat"):
        batchnorm_forward(ones(300, 2), gamma, beta, mean, var)


# ------------------------------------------------------------------ recurrent layers
def test_rnn_counts_its_states(tiny_memory):
    with pytest.raises(validate.AllocationError, match=r"W_xh \(1, 32\) \(H = 32\): the states h"):
        rnn_forward(ones(4, 8, 1), None, ones(1, 32), ones(32, 32), ones(32))


def test_rnn_counts_the_read_out(tiny_memory):
    with pytest.raises(validate.AllocationError, match=r"W_hy \(2, 600\) \(O = 600\): the read-out y"):
        rnn_forward(ones(1, 2, 1), ones(1, 2), ones(1, 2), ones(2, 2), ones(2), ones(2, 600))


def test_lstm_counts_states_and_gates(tiny_memory):
    H = 8
    with pytest.raises(validate.AllocationError, match=r"\(H = 8\): the gates and the input projection"):
        lstm_forward(ones(4, 8, 1), None, None, ones(1, 4 * H), ones(H, 4 * H), ones(4 * H))


# ------------------------------------------------------------------ np.matrix and masked arrays
def test_matrix_inputs_are_taken_as_plain_arrays():
    y, cache = dense_forward(np.matrix([[1.0, -2.0]], dtype=F32), np.matrix([[1.0], [1.0]], dtype=F32))
    assert type(y) is np.ndarray and type(cache.x) is np.ndarray
    np.testing.assert_array_equal(y, [[-1.0]])
    y, _ = activation_forward(np.matrix([[1.0, -2.0]], dtype=F32), "relu")
    assert type(y) is np.ndarray and y.shape == (1, 2)
    y, _ = flatten_forward(np.matrix([[1.0, -2.0]], dtype=F32))
    assert type(y) is np.ndarray


@pytest.mark.parametrize("call", [
    lambda x: activation_forward(x, "relu"), lambda x: dense_forward(x, ones(2, 1)),
    lambda x: loss_forward("mse", x, ones(1, 2)), lambda x: dropout_forward(x, 0.5, 1),
    lambda x: flatten_forward(x),
], ids=["activation", "dense", "loss", "dropout", "flatten"])
def test_masked_arrays_are_refused_with_how_to_fill_them(call):
    x = np.ma.masked_array(ones(1, 2), [[0, 1]])
    with pytest.raises(TypeError, match=r"masked array \(numpy.ma\).*(x|y)\.filled\(0\.0\)"):
        call(x)


def test_other_array_likes_are_refused():
    class Tensorish:
        dtype, shape, ndim = np.dtype(F32), (2,), 1

    with pytest.raises(TypeError, match="must be a NumPy or CuPy array"):
        activation_forward(Tensorish(), "relu")


def test_numpy_scalar_is_a_zero_d_array():
    y, _ = activation_forward(F32(-1.5), "relu")
    assert y.shape == () and y == 0


# ------------------------------------------------------------------ nn layers
def test_layers_refuse_units_beyond_int64():
    with pytest.raises(ValueError, match="units must be a positive integer at most 9223372036854775807"):
        nn.Dense(2**63)
    with pytest.raises(ValueError, match="strides must be a positive integer at most 2147483647"):
        nn.Conv2D(1, 3, strides=2**40)
    with pytest.raises(ValueError, match="pool_size must be a positive integer at most 2147483647"):
        nn.MaxPooling2D(2**63)


def test_layer_parameters_that_cannot_fit_are_refused_before_drawing():
    with pytest.raises(validate.AllocationError, match=r"layer 'big' \(Dense\).*'kernel' = \(1, 1099511627776\)"):
        nn.Dense(2**40, name="big")(ones(1, 1))


def test_count_params_does_not_wrap():
    assert nn.Dense(2**62, use_bias=False).count_params((None, 4)) == 2**64


def test_layer_passes_the_op_allocation_error_with_its_name():
    with pytest.raises(validate.AllocationError, match=r"layer 'c' \(Conv2D\): padding .*padded input"):
        nn.Conv2D(1, 3, padding=10**9, name="c")(ones(1, 3, 3, 1))
    with pytest.raises(validate.AllocationError, match=r"layer 'd' \(Dropout\): x .*broadcast view"):
        nn.Dropout(0.5, name="d")(huge_view(T, T), training=True)


def test_layers_take_matrix_and_refuse_masked_input():
    y = nn.Dense(2, activation="relu")(np.matrix([[1.0, 2.0]], dtype=F32))
    assert type(y) is np.ndarray
    with pytest.raises(TypeError, match=r"layer 'm' \(Dense\): x must be a plain .*masked"):
        nn.Dense(2, name="m")(np.ma.masked_array(ones(1, 2), [[0, 1]]))


# ------------------------------------------------------------------ the GPU side, on stand-ins
class GpuArray:
    """What validation reads of a CuPy array (shape, dtype, flags, device), without memory or CuPy."""

    __module__ = "cupy._core.core"  # backend.is_gpu_array goes by the module name

    def __init__(self, *shape, dtype=F32):
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)
        self.size = int(np.prod(shape, dtype=object))
        self.flags = types.SimpleNamespace(c_contiguous=True)
        self.device = types.SimpleNamespace(id=0)


class Dispatched(Exception):
    pass


@pytest.fixture
def gpu(monkeypatch):
    """A stand-in CuPy whose device 0 has 80 GB; dispatch raises Dispatched (validation passed)."""
    device = lambda i=0: types.SimpleNamespace(id=i, mem_info=(1, 80 * 10**9))  # noqa: E731
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(cuda=types.SimpleNamespace(Device=device)))
    validate._device_memory.cache_clear()

    def dispatch(op, **arrays):
        raise Dispatched(op)

    monkeypatch.setattr(backend, "dispatch", dispatch)
    yield
    validate._device_memory.cache_clear()


def test_gpu_limit_is_the_device_memory(gpu):
    assert validate.memory_limit(GpuArray(2)) == (80 * 10**9, "GPU 0 has 80 GB of memory")
    with pytest.raises(validate.AllocationError, match="GPU 0 has 80 GB of memory"):
        dense_forward(GpuArray(T, 1), GpuArray(1, T))
    with pytest.raises(Dispatched):
        dense_forward(GpuArray(2**13, 1), GpuArray(1, 2**13))


def test_gpu_attention_needs_linear_memory_only(gpu):
    q = GpuArray(1, T, 1)
    with pytest.raises(Dispatched):  # the fused forward keeps no (N, Tq, Tk) array
        attention_forward(q, q, q)
    with pytest.raises(validate.AllocationError, match="attention scores"):
        attention_scores(q, q)


@pytest.mark.parametrize("x_shape, w_shape, kwargs, name", [
    ((1, 2**16, 2**16, 1), (1, 1, 1, 1), {}, r"H\*W = 4294967296"),
    ((1, 3, 3, 1), (1, 1, 1, 1), {"padding": ((2**31 - 1, 0), (0, 0))}, "H \\+ top \\+ bottom = 2147483650"),
    ((1, 3, 3, 2**31), (1, 1, 2**31, 1), {}, "Cin = 2147483648"),
])
def test_gpu_conv2d_sizes_beyond_the_kernels_int_are_refused_before_launch(gpu, x_shape, w_shape, kwargs, name):
    with pytest.raises(ValueError, match=f"{name} does not fit the 32-bit int the CUDA kernels index with"):
        conv2d_forward(GpuArray(*x_shape), GpuArray(*w_shape), **kwargs)


def test_gpu_pool2d_padded_side_beyond_the_kernels_int_is_refused(gpu):
    with pytest.raises(ValueError, match="W \\+ left \\+ right = 2147483648 does not fit"):
        pool2d_forward(GpuArray(1, 2, 2**31 - 1, 1), pool_size=2, stride=2, padding="same")
    with pytest.raises(Dispatched):  # a narrower image passes
        pool2d_forward(GpuArray(1, 2, 2**20, 1), pool_size=2, stride=2, padding="same")


def test_kernel_ints_ignore_cpu_arrays():
    validate.kernel_ints(ones(1), [("N", 2**40)])  # NumPy inputs: int64 kernels
