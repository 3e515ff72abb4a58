"""Every public backward checks its cache before any kernel runs (toolkit/ops/cache_checks.py).

A cache is a NamedTuple anyone can build by hand or ``_replace``; the kernels take their sizes from one
field and index the others with them. So a cache whose fields disagree must raise a TypeError/ValueError
(DeviceMismatchError for two devices) naming the field, the expected and the received value, and never
read or write out of bounds. The cases that used to kill the interpreter (a segmentation fault) run in a
subprocess here, so that a regression fails its test instead of taking pytest down.
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.helpers import random_array
from toolkit.backend import DeviceMismatchError
from toolkit.ops import activations as act
from toolkit.ops import attention as att
from toolkit.ops import batchnorm as bn
from toolkit.ops import cache_checks
from toolkit.ops import conv2d as conv
from toolkit.ops import dense as D
from toolkit.ops import dropout as drop
from toolkit.ops import flatten as flat
from toolkit.ops import losses as L
from toolkit.ops import lstm
from toolkit.ops import pool2d as pool
from toolkit.ops import rnn


class FakeGpuArray:
    """Looks like a CuPy array to toolkit.backend (its module's name starts with "cupy"), holding a NumPy
    array: the device checks without a GPU. No kernel ever sees one (the checks refuse it first)."""

    def __init__(self, a):
        self._a = a

    def __getattr__(self, name):
        return getattr(self._a, name)


FakeGpuArray.__module__ = "cupy._fake"


# --- one valid cache per op, and the call of its public backward -----------------------------------------
def make(op, rng=None, dtype=np.float64):
    """(cache, backward): a cache from the public forward and a function running the public backward on it."""
    rng = rng or np.random.default_rng(7)
    r = lambda *shape: random_array(rng, shape, dtype)  # noqa: E731
    if op == "relu":
        y, cache = act.activation_forward(r(4, 5), "relu")
        return cache, lambda c: act.activation_backward(np.ones(y.shape, dtype), c)
    if op == "softmax":
        y, cache = act.activation_forward(r(4, 5), "softmax", axis=0)
        return cache, lambda c: act.activation_backward(np.ones(y.shape, dtype), c)
    if op == "dense":
        y, cache = D.dense_forward(r(4, 5), r(5, 6), r(6))
        return cache, lambda c: D.dense_backward(np.ones(y.shape, dtype), c)
    if op in ("mse", "categorical_crossentropy", "softmax_crossentropy", "binary_crossentropy"):
        probs = np.full((4, 5), 0.2, dtype)
        _, cache = L.loss_forward(op, probs, probs)
        return cache, lambda c: L.loss_backward(c)
    if op == "conv2d":
        y, cache = conv.conv2d_forward(r(2, 6, 7, 3), r(3, 3, 3, 4), r(4), stride=(1, 2), padding="same")
        return cache, lambda c: conv.conv2d_backward(np.ones(y.shape, dtype), c)
    if op in ("maxpool", "avgpool"):
        y, cache = pool.pool2d_forward(r(2, 6, 6, 3), 2, mode=op[:3])
        return cache, lambda c: pool.pool2d_backward(np.ones(y.shape, dtype), c)
    if op == "flatten":
        y, cache = flat.flatten_forward(r(2, 3, 4))
        return cache, lambda c: flat.flatten_backward(np.ones(y.shape, dtype), c)
    if op == "dropout":
        y, cache = drop.dropout_forward(r(20, 30), 0.5, seed=3)
        return cache, lambda c: drop.dropout_backward(np.ones(y.shape, dtype), c)
    if op == "batchnorm":
        y, cache = bn.batchnorm_forward(r(8, 6), np.ones(6, dtype), np.zeros(6, dtype), np.zeros(6, dtype),
                                        np.ones(6, dtype))
        return cache, lambda c: bn.batchnorm_backward(np.ones(y.shape, dtype), c)
    if op == "rnn":
        y, h, cache = rnn.rnn_forward(r(2, 3, 4), None, r(4, 5), r(5, 5), r(5), r(5, 2), r(2))
        return cache, lambda c: rnn.rnn_backward(np.ones(y.shape, dtype), np.ones(h.shape, dtype), c)
    if op == "lstm":
        h, _, cache = lstm.lstm_forward(r(2, 3, 4), None, None, r(4, 20), r(5, 20), r(20))
        return cache, lambda c: lstm.lstm_backward(np.ones(h.shape, dtype), c, np.ones((2, 5), dtype))
    if op == "attention":
        mask = np.tril(np.ones((3, 4), bool), 1)
        out, cache = att.attention_forward(r(2, 3, 8), r(2, 4, 8), r(2, 4, 5), mask=mask)
        return cache, lambda c: att.attention_backward(np.ones(out.shape, dtype), c)
    raise ValueError(op)


OPS = ["relu", "softmax", "dense", "mse", "categorical_crossentropy", "softmax_crossentropy", "binary_crossentropy",
       "conv2d", "maxpool", "avgpool", "flatten", "dropout", "batchnorm", "rnn", "lstm", "attention"]


def _grads(result):
    return [None if g is None else np.asarray(g) for g in (result if isinstance(result, tuple) else (result,))]


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x is None and y is None) or np.array_equal(x, y)


# --- the crashes of issue 11, in a subprocess ------------------------------------------------------------
CRASHES = {
    "conv2d_w_of_another_cin": """
        from toolkit.ops import conv2d as C
        y, cache = C.conv2d_forward(np.ones((2, 8, 8, 3)), np.ones((3, 3, 3, 4)))
        C.conv2d_backward(np.ones(y.shape), cache._replace(w=np.ones((3, 3, 300, 4))))
    """,
    "dropout_short_mask": """
        from toolkit.ops import dropout as D
        y, cache = D.dropout_forward(np.ones((4000, 4000), np.float32), 0.5, 1)
        D.dropout_backward(np.ones(y.shape, np.float32), cache._replace(mask=np.ones(3, bool)))
    """,
    "categorical_crossentropy_small_t": """
        from toolkit.ops import losses as L
        y = np.full((4000, 4000), 0.5, np.float32)
        _, cache = L.loss_forward("categorical_crossentropy", y, y)
        L.loss_backward(cache._replace(t=np.ones(3, np.float32)))
    """,
    "lstm_U_of_another_H": """
        from toolkit.ops import lstm as L
        r = np.random.default_rng(0).random
        h, c, cache = L.lstm_forward(r((4, 5, 3)), None, None, r((3, 32)), r((8, 32)), r(32))
        L.lstm_backward(np.ones(h.shape), cache._replace(U=np.ones((1000, 4000))))
    """,
}
CRASH_ERRORS = {
    "conv2d_w_of_another_cin": r"ValueError: cache.w must have shape (any, any, 3, any)",
    "dropout_short_mask": r"ValueError: cache.mask must have shape (4000, 4000) (cache.x_shape); got (3,)",
    "categorical_crossentropy_small_t": r"ValueError: cache.t must have shape (4000, 4000) like cache.y; got (3,)",
    "lstm_U_of_another_H": r"ValueError: cache.U must have shape (8, 32)",
}


@pytest.mark.parametrize("case", sorted(CRASHES))
def test_former_segfaults_now_raise_in_a_subprocess(case):
    script = ("import numpy as np\ntry:\n" + textwrap.indent(textwrap.dedent(CRASHES[case]), "    ")
              + "except Exception as e:\n    print(f'{type(e).__name__}: {e}')\nelse:\n    print('no error')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"the interpreter died (return code {done.returncode}): {done.stderr[-2000:]}"
    assert CRASH_ERRORS[case] in done.stdout, done.stdout


# --- valid caches keep working ---------------------------------------------------------------------------
@pytest.mark.parametrize("op", OPS)
def test_a_forward_cache_passes_and_is_returned_equal(op):
    cache, backward = make(op)
    checked = getattr(cache_checks, _check_name(op))(cache)
    assert type(checked) is type(cache)
    for got, want in zip(checked, cache):
        assert got is want or (hasattr(want, "shape") and np.array_equal(got, want)) or got == want
    assert all(g is None or np.isfinite(g).all() for g in _grads(backward(cache)))


def _check_name(op):
    return {"relu": "activation", "softmax": "activation", "maxpool": "pool2d", "avgpool": "pool2d",
            "mse": "loss", "categorical_crossentropy": "loss", "softmax_crossentropy": "loss",
            "binary_crossentropy": "loss"}.get(op, op)


def _strided_read_only(a):
    if not isinstance(a, np.ndarray) or a.ndim == 0:
        return a
    view = np.repeat(a, 2, axis=-1)[..., ::2]  # the same values, not contiguous
    view.flags.writeable = False
    return view


@pytest.mark.parametrize("op", OPS)
def test_strided_and_read_only_cache_arrays_are_copied_not_rejected(op):
    cache, backward = make(op)
    expected = _grads(backward(cache))
    _same(_grads(backward(type(cache)(*(_strided_read_only(f) for f in cache)))), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", ["dense", "lstm", "attention", "conv2d", "maxpool"])
def test_both_float_dtypes_pass(op, dtype):
    cache, backward = make(op, dtype=dtype)
    assert all(g is None or g.dtype == dtype for g in _grads(backward(cache)))


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix is what the test feeds
def test_matrix_fields_are_taken_as_plain_arrays():
    cache, backward = make("dense")
    expected = _grads(backward(cache))
    _same(_grads(backward(cache._replace(x=np.asmatrix(cache.x), W=np.asmatrix(cache.W)))), expected)


def test_hand_built_caches_with_normalisable_scalars_pass(rng):
    x, w = random_array(rng, (1, 5, 5, 2)), random_array(rng, (3, 3, 2, 1))
    y, cache = conv.conv2d_forward(x, w, padding=1)
    dy = np.ones(y.shape)
    expected = _grads(conv.conv2d_backward(dy, cache))
    by_hand = conv.Conv2DCache(x, w, np.bool_(False), [np.int64(1), 1], [[1, np.int32(1)], (1, 1)])
    _same(_grads(conv.conv2d_backward(dy, by_hand)), expected)
    # a (Tq, Tk) attention mask, as attention_forward accepts it, and parameters left to their defaults
    cache, backward = make("attention")
    _same(_grads(backward(cache._replace(mask=cache.mask[0]))), _grads(backward(cache)))
    y, cache = act.activation_forward(x, "leaky_relu")
    _same(_grads(act.activation_backward(y, cache._replace(params={}))), _grads(act.activation_backward(y, cache)))


# --- a cache of another op -------------------------------------------------------------------------------
BACKWARDS = {
    "ActivationCache": lambda c: act.activation_backward(np.ones((4, 6)), c),
    "DenseCache": lambda c: D.dense_backward(np.ones((4, 6)), c),
    "LossCache": lambda c: L.loss_backward(c),
    "Conv2DCache": lambda c: conv.conv2d_backward(np.ones((4, 6)), c),
    "Pool2DCache": lambda c: pool.pool2d_backward(np.ones((4, 6)), c),
    "FlattenCache": lambda c: flat.flatten_backward(np.ones((4, 6)), c),
    "DropoutCache": lambda c: drop.dropout_backward(np.ones((4, 6)), c),
    "BatchNormCache": lambda c: bn.batchnorm_backward(np.ones((4, 6)), c),
    "RNNCache": lambda c: rnn.rnn_backward(None, np.ones((4, 6)), c),
    "LSTMCache": lambda c: lstm.lstm_backward(np.ones((4, 6)), c),
    "AttentionCache": lambda c: att.attention_backward(np.ones((4, 6)), c),
}


@pytest.mark.parametrize("expected", sorted(BACKWARDS))
def test_a_cache_of_another_op_is_refused(expected):
    other = make("flatten" if expected == "DenseCache" else "dense")[0]
    with pytest.raises(TypeError, match=f"cache must be the {expected} returned by .*_forward; got "
                                        f"{type(other).__name__}"):
        BACKWARDS[expected](other)


# --- corrupted caches ------------------------------------------------------------------------------------
def case(op, change, error, words, id_):
    return pytest.param(op, change, error, words, id=f"{op}-{id_}")


f16, f32, i64 = np.float16, np.float32, np.int64
BAD = [
    # activations: x and y must agree (the kernels read x.size elements of x, y and dy)
    case("relu", lambda c: c._replace(x=np.ones(3)), ValueError,
         r"cache.x must have shape \(4, 5\) like cache.y; got \(3,\)", "small_x"),
    case("relu", lambda c: c._replace(y=np.ones((40, 50))), ValueError,
         r"cache.x must have shape \(40, 50\) like cache.y; got \(4, 5\)", "big_y"),
    case("relu", lambda c: c._replace(x=c.x.tolist()), TypeError, r"cache.x must be a NumPy or CuPy array; got list",
         "list"),
    case("relu", lambda c: c._replace(y=None), TypeError, r"cache.y must be a NumPy or CuPy array; got None", "none"),
    case("relu", lambda c: c._replace(x=2.5), TypeError, r"cache.x must be a NumPy or CuPy array; got 2.5 \(float\)",
         "float"),
    case("relu", lambda c: c._replace(y=c.y.astype(f16)), TypeError,
         r"cache.y must have dtype float32 or float64; got float16", "float16"),
    case("relu", lambda c: c._replace(x=c.x.astype(f32)), TypeError,
         r"cache.x must have dtype float64 like cache.y; got float32", "mixed_dtype"),
    case("relu", lambda c: c._replace(x=c.x.astype(i64)), TypeError,
         r"cache.x must have dtype float32 or float64; got int64", "int"),
    case("relu", lambda c: c._replace(name="swish"), ValueError, r"cache.name must be one of \(.*\); got 'swish'",
         "name"),
    case("relu", lambda c: c._replace(name=None), TypeError, r"cache.name must be an activation name \(str\); got None",
         "name_none"),
    case("relu", lambda c: c._replace(params=[]), TypeError, r"cache.params must be a dict of parameters; got list",
         "params_list"),
    case("relu", lambda c: c._replace(params={"alpha": 1.0}), TypeError,
         r"cache.params may hold no parameters; got \['alpha'\]", "params_unknown"),
    case("relu", lambda c: c._replace(name="sigmoid", params={"steepness": "2"}), TypeError,
         r"cache.params\['steepness'\] must be a real number; got '2'", "steepness_str"),
    case("relu", lambda c: c._replace(name="sigmoid", params={"steepness": -1.0}), ValueError,
         r"cache.params\['steepness'\] must be > 0; got -1.0", "steepness_negative"),
    case("relu", lambda c: c._replace(name="leaky_relu", params={"alpha": float("nan")}), ValueError,
         r"cache.params\['alpha'\] must be finite; got nan", "alpha_nan"),
    case("softmax", lambda c: c._replace(params={"axis": 2}), ValueError,
         r"cache.params\['axis'\] must be in \[-2, 1\] for an array of 2 dimensions; got 2", "axis_range"),
    case("softmax", lambda c: c._replace(params={"axis": 1.0}), TypeError,
         r"cache.params\['axis'\] must be an integer; got 1.0", "axis_float"),
    case("softmax", lambda c: c._replace(x=np.ones((5, 4))), ValueError,
         r"cache.x must have shape \(4, 5\) like cache.y; got \(5, 4\)", "transposed_x"),
    case("relu", lambda c: c._replace(x=FakeGpuArray(c.x)), DeviceMismatchError, r"cache.x on the GPU", "device"),
    # dense: W (in, out) with x's in, one dtype
    case("dense", lambda c: D.DenseCache(c.x, np.ones((2, 6)), True), ValueError,
         r"cache.W must have shape \(5, any\) = \(in, out\) to match cache.x \(4, 5\) = \(N, in\); got \(2, 6\)",
         "hand_built_W"),
    case("dense", lambda c: c._replace(W=np.ones((50, 6))), ValueError, r"cache.W must have shape \(5, any\)", "big_W"),
    case("dense", lambda c: c._replace(x=np.ones((4, 5, 1))), ValueError,
         r"cache.x must have 2 dimensions \(N, in\); got shape \(4, 5, 1\)", "x_3d"),
    case("dense", lambda c: c._replace(W=np.ones(5)), ValueError, r"cache.W must have shape \(5, any\)", "W_1d"),
    case("dense", lambda c: c._replace(W=c.W.astype(f32)), TypeError,
         r"cache.W must have dtype float64 like cache.x; got float32", "mixed_dtype"),
    case("dense", lambda c: c._replace(x=c.x.astype(np.int32)), TypeError,
         r"cache.x must have dtype float32 or float64; got int32", "int"),
    case("dense", lambda c: c._replace(W=None), TypeError, r"cache.W must be a NumPy or CuPy array; got None", "none"),
    case("dense", lambda c: c._replace(has_bias=1), TypeError, r"cache.has_bias must be True or False; got 1", "flag"),
    case("dense", lambda c: c._replace(has_bias=None), TypeError, r"cache.has_bias must be True or False; got None",
         "flag_none"),
    case("dense", lambda c: c._replace(x=np.ones((4, 0)), W=np.ones((0, 6))), ValueError,
         r"cache.x must not be empty; got shape \(4, 0\)", "empty"),
    case("dense", lambda c: c._replace(x=np.ma.masked_array(c.x)), TypeError, r"cache.x must be a plain NumPy",
         "masked"),
    case("dense", lambda c: c._replace(W=FakeGpuArray(c.W)), DeviceMismatchError,
         r"cache.x on the CPU \(NumPy\) and cache.W on the GPU \(CuPy\)", "device"),
    # losses: t (and probabilities) of y's shape and dtype
    case("categorical_crossentropy", lambda c: c._replace(t=np.ones(3)), ValueError,
         r"cache.t must have shape \(4, 5\) like cache.y; got \(3,\)", "small_t"),
    case("mse", lambda c: c._replace(t=np.ones((4, 5, 1))), ValueError,
         r"cache.t must have shape \(4, 5\) like cache.y; got \(4, 5, 1\)", "t_3d"),
    case("mse", lambda c: c._replace(t=c.t.astype(f32)), TypeError,
         r"cache.t must have dtype float64 like cache.y; got float32", "mixed_dtype"),
    case("mse", lambda c: c._replace(y=[1.0]), TypeError, r"cache.y must be a NumPy or CuPy array; got list", "list"),
    case("mse", lambda c: c._replace(name="hinge"), ValueError, r"cache.name must be one of .*; got 'hinge'", "name"),
    case("mse", lambda c: c._replace(name=0), TypeError, r"cache.name must be a loss name \(str\); got 0", "name_int"),
    case("mse", lambda c: c._replace(probabilities=c.y), TypeError,
         r"cache.probabilities must be None for loss 'mse' \(only softmax_crossentropy keeps them\)", "stray_probs"),
    case("softmax_crossentropy", lambda c: c._replace(probabilities=None), TypeError,
         r"cache.probabilities must be an array of cache.y's shape for softmax_crossentropy", "no_probs"),
    case("softmax_crossentropy", lambda c: c._replace(probabilities=np.ones((2, 5))), ValueError,
         r"cache.probabilities must have shape \(4, 5\) like cache.y; got \(2, 5\)", "small_probs"),
    case("softmax_crossentropy", lambda c: c._replace(params={"axis": -3}), ValueError,
         r"cache.params\['axis'\] must be in \[-2, 1\]", "axis"),
    case("categorical_crossentropy", lambda c: c._replace(params={"axis": "last"}), TypeError,
         r"cache.params\['axis'\] must be an integer; got 'last'", "axis_str"),
    case("binary_crossentropy", lambda c: c._replace(params={"from_logits": 1}), TypeError,
         r"cache.params\['from_logits'\] must be True or False; got 1", "from_logits"),
    case("binary_crossentropy", lambda c: c._replace(params=None), TypeError,
         r"cache.params must be a dict of parameters; got None", "params_none"),
    case("mse", lambda c: c._replace(params={"axis": 0}), TypeError, r"cache.params may hold no parameters",
         "params_unknown"),
    case("softmax_crossentropy", lambda c: c._replace(probabilities=FakeGpuArray(c.probabilities)),
         DeviceMismatchError, r"cache.probabilities on the GPU", "device"),
    # conv2d: w's Cin is x's, the kernel fits the padded input, geometry scalars
    case("conv2d", lambda c: c._replace(w=np.ones((3, 3, 300, 4))), ValueError,
         r"cache.w must have shape \(any, any, 3, any\) = \(KH, KW, Cin, Cout\) with the Cin of cache.x "
         r"\(2, 6, 7, 3\) = \(N, H, W, Cin\); got \(3, 3, 300, 4\)", "w_cin"),
    case("conv2d", lambda c: c._replace(w=np.ones((9, 3, 3, 4))), ValueError,
         r"cache.w's kernel height 9 must fit in cache.x's padded height 8", "w_too_big"),
    case("conv2d", lambda c: c._replace(x=np.ones((2, 6, 7))), ValueError,
         r"cache.x must have 4 dimensions \(N, H, W, Cin\); got shape \(2, 6, 7\)", "x_3d"),
    case("conv2d", lambda c: c._replace(w=c.w.astype(f32)), TypeError,
         r"cache.w must have dtype float64 like cache.x; got float32", "mixed_dtype"),
    case("conv2d", lambda c: c._replace(stride=(0, 1)), ValueError,
         r"cache.stride\[0\] must be an integer in \[1, 2147483647\]; got 0", "stride_0"),
    case("conv2d", lambda c: c._replace(stride=(1, 2**40)), ValueError,
         r"cache.stride\[1\] must be an integer in \[1, 2147483647\]; got 1099511627776", "stride_huge"),
    case("conv2d", lambda c: c._replace(stride=1.5), TypeError,
         r"cache.stride must be a tuple of 2 ints \(rows, columns\); got 1.5 \(float\)", "stride_float"),
    case("conv2d", lambda c: c._replace(stride=(1, 2.0)), TypeError, r"cache.stride\[1\] must be an integer; got 2.0",
         "stride_entry_float"),
    case("conv2d", lambda c: c._replace(stride=(1,)), ValueError, r"cache.stride must be a tuple of 2 ints", "stride_1"),
    case("conv2d", lambda c: c._replace(padding="same"), TypeError,
         r"cache.padding must be \(\(top, bottom\), \(left, right\)\) of non-negative ints; got 'same'", "padding_str"),
    case("conv2d", lambda c: c._replace(padding=((1, 1), (-1, 0))), ValueError,
         r"cache.padding\[1\]\[0\] must be an integer in \[0, 2147483647\]; got -1", "padding_negative"),
    case("conv2d", lambda c: c._replace(padding=((1, 1), 1)), TypeError,
         r"cache.padding\[1\] must be a tuple \(left, right\) of non-negative ints; got 1", "padding_flat"),
    case("conv2d", lambda c: c._replace(has_bias="yes"), TypeError, r"cache.has_bias must be True or False", "flag"),
    case("conv2d", lambda c: c._replace(w=FakeGpuArray(c.w)), DeviceMismatchError, r"cache.w on the GPU", "device"),
    # pool2d: argmax int64 of the output's shape, every value a cell of x; geometry
    case("maxpool", lambda c: c._replace(argmax=np.full(c.argmax.shape, 10**9, i64)), ValueError,
         r"cache.argmax must hold cells of the input, 0 <= argmax < H\*W = 36; got values in \[1000000000, 1000000000\]",
         "argmax_big"),
    case("maxpool", lambda c: c._replace(argmax=c.argmax - 1), ValueError,
         r"cache.argmax must hold cells of the input, 0 <= argmax < H\*W = 36; got values in \[-1, ", "argmax_negative"),
    case("maxpool", lambda c: c._replace(argmax=c.argmax.astype(np.int32)), TypeError,
         r"cache.argmax must have dtype int64 \(flat spatial indices h\*W \+ w\); got int32", "argmax_int32"),
    case("maxpool", lambda c: c._replace(argmax=c.argmax.astype(float)), TypeError,
         r"cache.argmax must have dtype int64 .*; got float64", "argmax_float"),
    case("maxpool", lambda c: c._replace(argmax=c.argmax[:1]), ValueError,
         r"cache.argmax must have shape \(2, 3, 3, 3\) \(the output's\) for cache.x_shape \(2, 6, 6, 3\); "
         r"got \(1, 3, 3, 3\)", "argmax_short"),
    case("maxpool", lambda c: c._replace(argmax=None), TypeError, r"cache.argmax must be the int64 array .*; got None",
         "argmax_none"),
    case("maxpool", lambda c: c._replace(argmax=c.argmax.tolist()), TypeError,
         r"cache.argmax must be a NumPy or CuPy array; got list", "argmax_list"),
    case("avgpool", lambda c: c._replace(argmax=np.zeros((2, 3, 3, 3), i64)), TypeError,
         r"cache.argmax must be None in 'avg' mode", "stray_argmax"),
    case("maxpool", lambda c: c._replace(mode="median"), ValueError, r"cache.mode must be one of .*; got 'median'",
         "mode"),
    case("maxpool", lambda c: c._replace(x_shape=(2, 6, 6)), ValueError,
         r"cache.x_shape must be a tuple of 4 positive ints \(an array's shape\); got \(2, 6, 6\) \(3 entries\)",
         "x_shape_3"),
    case("maxpool", lambda c: c._replace(x_shape=(2, 0, 6, 3)), ValueError,
         r"cache.x_shape\[1\] must be an integer in \[1, ", "x_shape_0"),
    case("maxpool", lambda c: c._replace(x_shape=(2, 6.0, 6, 3)), TypeError, r"cache.x_shape\[1\] must be an integer",
         "x_shape_float"),
    case("maxpool", lambda c: c._replace(x_shape=(2, 60, 60, 3)), ValueError,
         r"cache.argmax must have shape \(2, 30, 30, 3\)", "x_shape_big"),
    case("maxpool", lambda c: c._replace(dtype=None), TypeError,
         r"cache.dtype must be the dtype float32 or float64; got None", "dtype_none"),
    case("maxpool", lambda c: c._replace(dtype=np.dtype(np.int64)), TypeError,
         r"cache.dtype must be the dtype float32 or float64; got int64", "dtype_int"),
    case("maxpool", lambda c: c._replace(pool=(0, 2)), ValueError, r"cache.pool\[0\] must be an integer in \[1, ",
         "pool_0"),
    case("maxpool", lambda c: c._replace(pool=(7, 2)), ValueError,
         r"cache.pool rows 7 must fit in the padded input 6", "pool_big"),
    case("maxpool", lambda c: c._replace(padding=((2, 0), (0, 0))), ValueError,
         r"cache.padding rows must be smaller than cache.pool \(2\) on each side", "padding_wide"),
    case("maxpool", lambda c: c._replace(stride=None), TypeError, r"cache.stride must be a tuple of 2 ints", "stride"),
    case("maxpool", lambda c: c._replace(argmax=FakeGpuArray(c.argmax)), DeviceMismatchError,
         r"dy on the CPU \(NumPy\) and argmax on the GPU", "device"),
    # flatten: a shape and a float dtype
    case("flatten", lambda c: c._replace(x_shape=[2, 3.0, 4]), TypeError, r"cache.x_shape\[1\] must be an integer",
         "x_shape_float"),
    case("flatten", lambda c: c._replace(x_shape=None), TypeError,
         r"cache.x_shape must be a tuple of positive ints \(an array's shape\); got None", "x_shape_none"),
    case("flatten", lambda c: c._replace(x_shape=()), ValueError, r"cache.x_shape must be a tuple .* at least 1 entry",
         "x_shape_empty"),
    case("flatten", lambda c: c._replace(x_shape=(2, -3, -4)), ValueError, r"cache.x_shape\[1\] must be an integer in",
         "x_shape_negative"),
    case("flatten", lambda c: c._replace(x_shape=(2, 2**40, 2**40)), ValueError,
         r"cache.x_shape must describe at most 2\*\*63 - 1 elements", "x_shape_huge"),
    case("flatten", lambda c: c._replace(dtype="int8"), TypeError,
         r"cache.dtype must be the dtype float32 or float64; got int8", "dtype_int"),
    case("flatten", lambda c: c._replace(dtype=1.5), TypeError, r"cache.dtype must be the dtype float32 or float64",
         "dtype_float"),
    # dropout: a bool mask of x_shape while training, None otherwise; rate, seed
    case("dropout", lambda c: c._replace(mask=np.ones(3, bool)), ValueError,
         r"cache.mask must have shape \(20, 30\) \(cache.x_shape\); got \(3,\)", "short_mask"),
    case("dropout", lambda c: c._replace(mask=c.mask.T), ValueError,
         r"cache.mask must have shape \(20, 30\) \(cache.x_shape\); got \(30, 20\)", "transposed_mask"),
    case("dropout", lambda c: c._replace(mask=c.mask.astype(f32)), TypeError,
         r"cache.mask must have dtype bool \(True = kept\); got float32", "mask_float"),
    case("dropout", lambda c: c._replace(mask=c.mask.astype(np.uint8)), TypeError,
         r"cache.mask must have dtype bool .*; got uint8", "mask_uint8"),
    case("dropout", lambda c: c._replace(mask=None), TypeError,
         r"cache.mask must be a bool array of shape \(20, 30\) after a training pass", "mask_none"),
    case("dropout", lambda c: c._replace(training=False), TypeError,
         r"cache.mask must be None after an inference pass", "stray_mask"),
    case("dropout", lambda c: c._replace(training=1), TypeError, r"cache.training must be True or False; got 1",
         "training"),
    case("dropout", lambda c: c._replace(rate=1.0), ValueError, r"cache.rate must be < 1.0; got 1.0", "rate_1"),
    case("dropout", lambda c: c._replace(rate="0.5"), TypeError, r"cache.rate must be a real number", "rate_str"),
    case("dropout", lambda c: c._replace(seed=-1), ValueError, r"cache.seed must be an integer in \[0, ", "seed"),
    case("dropout", lambda c: c._replace(seed=1.5), TypeError, r"cache.seed must be an integer; got 1.5", "seed_float"),
    case("dropout", lambda c: c._replace(x_shape=(600,)), ValueError,
         r"cache.mask must have shape \(600,\) \(cache.x_shape\); got \(20, 30\)", "x_shape"),
    case("dropout", lambda c: c._replace(dtype=f16), TypeError, r"cache.dtype must be the dtype float32 or float64",
         "dtype"),
    case("dropout", lambda c: c._replace(mask=FakeGpuArray(c.mask)), DeviceMismatchError, r"mask on the GPU", "device"),
    # batchnorm: every (C,) vector matches x_hat's features
    case("batchnorm", lambda c: c._replace(gamma=np.ones(1)), ValueError,
         r"cache.gamma must have shape \(6,\) \(the features of cache.x_hat \(8, 6\)\); got \(1,\)", "small_gamma"),
    case("batchnorm", lambda c: c._replace(inv_std=np.ones((6, 1))), ValueError,
         r"cache.inv_std must have shape \(6,\)", "inv_std_2d"),
    case("batchnorm", lambda c: c._replace(x_hat=np.ones(6)), ValueError,
         r"cache.x_hat must have at least 2 dimensions", "x_hat_1d"),
    case("batchnorm", lambda c: c._replace(gamma=c.gamma.astype(f32)), TypeError,
         r"cache.gamma must have dtype float64 like cache.x_hat; got float32", "mixed_dtype"),
    case("batchnorm", lambda c: c._replace(mean=list(c.mean)), TypeError, r"cache.mean must be a NumPy or CuPy array",
         "list"),
    case("batchnorm", lambda c: c._replace(training=None), TypeError, r"cache.training must be True or False",
         "training"),
    case("batchnorm", lambda c: c._replace(gamma=FakeGpuArray(c.gamma)), DeviceMismatchError, r"cache.gamma on the GPU",
         "device"),
    # rnn
    case("rnn", lambda c: c._replace(W_hh=np.ones((4, 4))), ValueError,
         r"cache.W_hh must have shape \(5, 5\) with N, T, D = 2, 3, 4 from cache.x and H = 5 from cache.h; "
         r"got \(4, 4\)", "W_hh"),
    case("rnn", lambda c: c._replace(h0=np.ones((1, 5))), ValueError, r"cache.h0 must have shape \(2, 5\)", "h0"),
    case("rnn", lambda c: c._replace(W_xh=np.ones((40, 5))), ValueError, r"cache.W_xh must have shape \(4, 5\)", "W_xh"),
    case("rnn", lambda c: c._replace(x=np.ones((2, 3))), ValueError, r"cache.x must have 3 dimensions \(N, T, D\)",
         "x_2d"),
    case("rnn", lambda c: c._replace(W_hy=np.ones((4, 2))), ValueError,
         r"cache.W_hy must have shape \(5, any\) = \(H, O\)", "W_hy"),
    case("rnn", lambda c: c._replace(b_y=np.ones(3)), ValueError, r"cache.b_y must have shape \(2,\) = \(O,\)", "b_y"),
    case("rnn", lambda c: c._replace(W_hy=None), TypeError, r"cache.b_y must be None when cache.W_hy is None", "b_y_alone"),
    case("rnn", lambda c: c._replace(h=c.h.astype(f32)), TypeError,
         r"cache.h must have dtype float64 like cache.x; got float32", "mixed_dtype"),
    case("rnn", lambda c: c._replace(b_h=None), TypeError, r"cache.b_h must be a NumPy or CuPy array; got None", "none"),
    case("rnn", lambda c: c._replace(W_xh=FakeGpuArray(c.W_xh)), DeviceMismatchError, r"cache.W_xh", "device"),
    # lstm
    case("lstm", lambda c: c._replace(U=np.ones((1000, 4000))), ValueError,
         r"cache.U must have shape \(5, 20\) with N, T, D = 2, 3, 4 from cache.x and H = 5 from cache.h; "
         r"got \(1000, 4000\)", "U"),
    case("lstm", lambda c: c._replace(gates=c.gates[:, :, :4]), ValueError, r"cache.gates must have shape \(2, 3, 20\)",
         "gates"),
    case("lstm", lambda c: c._replace(c0=np.ones((2, 4))), ValueError, r"cache.c0 must have shape \(2, 5\)", "c0"),
    case("lstm", lambda c: c._replace(W=np.ones((4, 16))), ValueError, r"cache.W must have shape \(4, 20\)", "W"),
    case("lstm", lambda c: c._replace(c=c.c.astype(f32)), TypeError,
         r"cache.c must have dtype float64 like cache.x; got float32", "mixed_dtype"),
    case("lstm", lambda c: c._replace(b=None), TypeError, r"cache.b must be a NumPy or CuPy array; got None", "none"),
    case("lstm", lambda c: c._replace(h=np.ones((2, 3))), ValueError, r"cache.h must have 3 dimensions \(N, T, H\)",
         "h_2d"),
    case("lstm", lambda c: c._replace(x=FakeGpuArray(c.x)), DeviceMismatchError, r"cache.x on the GPU", "device"),
    # attention
    case("attention", lambda c: c._replace(weights=np.ones((1, 1, 1))), ValueError,
         r"cache.weights must have shape \(2, 3, 4\) with N, Tq = 2, 3 from cache.q, Tk = 4 from cache.k and dv = 5 "
         r"from cache.v; got \(1, 1, 1\)", "small_weights"),
    case("attention", lambda c: c._replace(mask=np.ones((1, 2, 2), bool)), ValueError,
         r"cache.mask must have shape \(Tq, Tk\) = \(3, 4\) or \(1 or N, Tq, Tk\) = \(1 or 2, 3, 4\) from cache.q and "
         r"cache.k; got \(1, 2, 2\)", "small_mask"),
    case("attention", lambda c: c._replace(mask=np.ones((3, 3, 4), bool)), ValueError,
         r"cache.mask must have shape .*; got \(3, 3, 4\)", "mask_batch"),
    case("attention", lambda c: c._replace(mask=c.mask.astype(np.uint8)), TypeError,
         r"cache.mask must have dtype bool \(True = may attend\); got uint8", "mask_uint8"),
    case("attention", lambda c: c._replace(k=np.ones((2, 4, 7))), ValueError,
         r"cache.k must have shape \(2, any, 8\) = \(N, Tk, d\) with the N and d of cache.q \(2, 3, 8\); got \(2, 4, 7\)",
         "k_d"),
    case("attention", lambda c: c._replace(v=np.ones((2, 6, 5))), ValueError,
         r"cache.v must have shape \(2, 4, any\) = \(N, Tk, dv\) with the N and Tk of cache.k", "v_tk"),
    case("attention", lambda c: c._replace(q=np.ones((2, 3))), ValueError, r"cache.q must have 3 dimensions", "q_2d"),
    case("attention", lambda c: c._replace(weights=c.weights.astype(f32)), TypeError,
         r"cache.weights must have dtype float64 like cache.q; got float32", "mixed_dtype"),
    case("attention", lambda c: c._replace(scale=0.0), ValueError, r"cache.scale must be > 0.0; got 0.0", "scale_0"),
    case("attention", lambda c: c._replace(scale="1"), TypeError, r"cache.scale must be a real number", "scale_str"),
    case("attention", lambda c: c._replace(scale=True), TypeError, r"cache.scale must be a real number; got True",
         "scale_bool"),
    case("attention", lambda c: c._replace(weights=None), TypeError, r"cache.weights must be a NumPy or CuPy array",
         "weights_none"),
    case("attention", lambda c: c._replace(k=FakeGpuArray(c.k)), DeviceMismatchError, r"cache.k on the GPU", "device"),
]


@pytest.mark.parametrize("op,change,error,words", BAD)
def test_corrupted_cache_is_refused_naming_the_field(op, change, error, words):
    cache, backward = make(op)
    with pytest.raises(error, match=words):
        backward(change(cache))


@pytest.mark.parametrize("op", ["relu", "dense", "conv2d", "dropout", "lstm"])
def test_dy_on_another_device_than_the_cache_is_refused(op):
    cache, _ = make(op)
    on_gpu = type(cache)(*(FakeGpuArray(f) if isinstance(f, np.ndarray) else f for f in cache))
    calls = {"relu": lambda: act.activation_backward(FakeGpuArray(cache.y), cache),
             "dense": lambda: D.dense_backward(FakeGpuArray(np.ones((cache.x.shape[0], cache.W.shape[1]))), cache),
             "conv2d": lambda: conv.conv2d_backward(np.ones(cache.y_shape), on_gpu),
             "dropout": lambda: drop.dropout_backward(np.ones(cache.x_shape), on_gpu),
             "lstm": lambda: lstm.lstm_backward(np.ones(cache.h.shape), on_gpu)}
    with pytest.raises(DeviceMismatchError, match="live on two devices"):
        calls[op]()


def test_a_kernel_never_runs_on_a_refused_cache(monkeypatch):
    # The checks come first: with dispatch unreachable, every refusal above is a cache check's.
    cache, backward = make("conv2d")
    monkeypatch.setattr(conv.backend, "dispatch", lambda *a, **k: pytest.fail("dispatch reached"))
    with pytest.raises(ValueError, match="cache.w must have shape"):
        backward(cache._replace(w=np.ones((3, 3, 300, 4))))


# --- the GPU's deferred attention weights, checked without a GPU -------------------------------------------
def _deferred(rng, **change):
    from toolkit.ops.attention.gpu import DeferredWeights

    q, k = random_array(rng, (2, 3, 8)), random_array(rng, (2, 4, 8))
    stats = {**dict(row_max=np.zeros((2, 3)), row_sum=np.ones((2, 3)), out=np.zeros((2, 3, 5))), **change}
    weights = DeferredWeights(None, q, k, None, 0.5, stats["row_max"], stats["row_sum"], stats["out"])
    return DeferredWeights, att.AttentionCache(q, k, random_array(rng, (2, 4, 5)), None, weights, 0.5)


def test_deferred_weights_are_checked_for_the_gpu_implementation(rng):
    cls, cache = _deferred(rng)
    assert cache_checks.attention(cache, deferred=cls).weights is cache.weights
    _, strided = _deferred(rng, out=np.zeros((2, 3, 10))[:, :, ::2])
    fixed = cache_checks.attention(strided, deferred=cls).weights
    assert isinstance(fixed, cls) and fixed.out.flags.c_contiguous and fixed.out.shape == (2, 3, 5)
    with pytest.raises(ValueError, match=r"cache.weights.row_sum must have shape \(2, 3\) .*; got \(2, 2\)"):
        cache_checks.attention(_deferred(rng, row_sum=np.ones((2, 2)))[1], deferred=cls)
    with pytest.raises(ValueError, match=r"cache.weights.out must have shape \(2, 3, 5\)"):
        cache_checks.attention(_deferred(rng, out=np.ones((2, 3, 4)))[1], deferred=cls)
    with pytest.raises(TypeError, match=r"cache.weights.row_max must have dtype float64 like cache.q; got float32"):
        cache_checks.attention(_deferred(rng, row_max=np.zeros((2, 3), f32))[1], deferred=cls)
    with pytest.raises(DeviceMismatchError, match=r"cache.weights.row_max on the GPU"):
        cache_checks.attention(_deferred(rng, row_max=FakeGpuArray(np.zeros((2, 3))))[1], deferred=cls)
    with pytest.raises(TypeError, match=r"cache.weights must be the DeferredWeights of a GPU attention_forward; got "
                                        r"numpy.ndarray"):
        cache_checks.attention(cache._replace(weights=np.zeros((2, 3, 4))), deferred=cls)


def test_deferred_weights_on_the_cpu_path_are_refused(rng):
    _, cache = _deferred(rng)
    with pytest.raises(TypeError, match=r"cache.weights must be a NumPy array \(N, Tq, Tk\) here; got the "
                                        r"DeferredWeights of a GPU forward"):
        att.attention_backward(np.ones((2, 3, 5)), cache)
