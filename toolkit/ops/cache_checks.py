"""The checks every public backward runs on its cache before any kernel: one function per operation.

A cache is a NamedTuple that learners read (``cache.weights``, ``cache.x``) and that nothing stops
them from building by hand or ``_replace``-ing. The kernels do no bounds checks: they take every size
from one field and index the others with it, so a cache whose arrays disagree (a w of another Cin, a
mask shorter than dy, an argmax pointing outside x) would read or write out of bounds. So each
function here checks, before a kernel runs:

* the cache's type and every field's type: NumPy or CuPy arrays where arrays belong (float32/float64,
  one dtype for the whole cache; bool masks; int64 indices), scalars of the right type and range;
* the fields' shapes against each other (the sizes the kernels will use);
* that all arrays live on one device (``toolkit.backend.DeviceMismatchError`` otherwise);
* index arrays' values (min and max only: they are read as offsets).

Each returns the cache with its arrays C-contiguous (a strided or subclass array, e.g. np.matrix, is
copied or viewed as a plain array, as ``toolkit.validate`` does for inputs) and its scalars
normalised. Errors name the field (``cache.W``), the expected and the received value. Costs: Python
checks on shapes and types, plus one min/max over pool2d's argmax; no pass over a float array.
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any, Sequence

import numpy as np

from .. import backend, validate
from .activations.reference import ALL as ACTIVATIONS, ALONG_AXIS as ACTIVATIONS_ALONG_AXIS
from .activations.reference import PARAMETERS as ACTIVATION_PARAMETERS, ActivationCache
from .attention.reference import AttentionCache
from .batchnorm.reference import BatchNormCache
from .conv2d.geometry import output_size
from .conv2d.reference import Conv2DCache
from .dense.reference import DenseCache
from .dropout.reference import DropoutCache
from .flatten.reference import FlattenCache
from .losses.reference import ALL as LOSSES, ALONG_AXIS as LOSSES_ALONG_AXIS
from .losses.reference import PARAMETERS as LOSS_PARAMETERS, LossCache
from .lstm.reference import LSTMCache
from .pool2d.reference import MODES as POOL_MODES, Pool2DCache
from .rnn.reference import RNNCache

INT64_MAX = 2**63 - 1  # the CPU kernels take sizes and offsets as int64
GEOMETRY_MAX = 2**31 - 1  # strides, padding, windows: the CUDA kernels' int (forward's bound, on every device)
SEED_LIMIT = 2**64  # dropout's seed range


# --------------------------------------------------------------------------- field helpers
def _describe(a: Any) -> str:
    if hasattr(a, "dtype") and hasattr(a, "shape"):
        return f"{type(a).__module__.split('.')[0]}.{type(a).__name__} of shape {tuple(a.shape)} and dtype {a.dtype}"
    return f"{a!r} ({type(a).__name__})" if isinstance(a, (int, float, str, bool)) or a is None else type(a).__name__


def _shown(shape: Sequence[int | None]) -> str:
    return "(" + ", ".join("any" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _kind(cache: Any, cls: type, forward: str) -> None:
    if not isinstance(cache, cls):
        raise TypeError(f"cache must be the {cls.__name__} returned by {forward}; got {type(cache).__name__}")


def _any_array(name: str, a: Any) -> Any:
    """A NumPy or CuPy array; NumPy subclasses (np.matrix, memmap) as plain ndarrays, whose reshape the
    kernels' flat indexing assumes (np.matrix would stay 2-D)."""
    if isinstance(a, np.ma.MaskedArray):  # np.asarray would drop the mask: the kernels would read hidden values
        raise TypeError(f"{name} must be a plain NumPy or CuPy array; got a masked array (numpy.ma) "
                        f"of shape {tuple(a.shape)}")
    if isinstance(a, np.ndarray):
        return a if type(a) is np.ndarray else np.asarray(a)
    if backend.is_gpu_array(a) and hasattr(a, "dtype") and hasattr(a, "shape"):
        return a
    raise TypeError(f"{name} must be a NumPy or CuPy array; got {_describe(a)}")


def _floats(name: str, a: Any, like: tuple[str, Any] | None = None) -> Any:
    """A float32/float64 array; with ``like`` = (name, array), of that array's dtype (one dtype per cache)."""
    a = _any_array(name, a)
    if a.dtype not in validate.FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64; got {a.dtype}")
    if like is not None and a.dtype != like[1].dtype:
        raise TypeError(f"{name} must have dtype {like[1].dtype} like {like[0]}; got {a.dtype}")
    return a


def _typed(name: str, a: Any, dtype: Any, what: str) -> Any:
    """An array of exactly ``dtype`` (bool masks, int64 indices): the kernels read its raw bytes."""
    a = _any_array(name, a)
    if a.dtype != np.dtype(dtype):
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)} ({what}); got {a.dtype}")
    return a


def _shape(name: str, a: Any, want: Sequence[int | None], why: str = "") -> None:
    """``a`` has shape ``want`` (None: any size); ``why`` says which fields fixed the sizes."""
    got = tuple(a.shape)
    if len(got) != len(want) or any(w is not None and w != s for w, s in zip(want, got)):
        raise ValueError(f"{name} must have shape {_shown(want)}{why}; got {got}")


def _ndim(name: str, a: Any, ndim: int, layout: str) -> None:
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions {layout}; got shape {tuple(a.shape)}")


def _one_device(**arrays: Any) -> str:
    """The device of all the cache's arrays (None skipped); DeviceMismatchError names them when mixed."""
    return backend.device_of(**arrays)


def _contiguous(name: str, a: Any) -> Any:
    """``a`` C-contiguous (copied when strided: the kernels index flat memory); empty arrays refused."""
    if a is None:
        return None
    if a.size == 0:
        raise ValueError(f"{name} must not be empty; got shape {tuple(a.shape)}")
    return a if a.flags.c_contiguous else backend.array_module(a).ascontiguousarray(a)


def _int(name: str, value: Any, low: int, high: int = INT64_MAX) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer; got {_describe(value)}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}]; got {value}")
    return int(value)


def _ints(name: str, value: Any, length: int | None, low: int, what: str, high: int = INT64_MAX) -> tuple[int, ...]:
    """A tuple (or list) of ``length`` ints in [low, high], as a tuple of Python ints."""
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"{name} must be a tuple {what}; got {_describe(value)}")
    if length is not None and len(value) != length:
        raise ValueError(f"{name} must be a tuple {what}; got {value!r} ({len(value)} entries)")
    return tuple(_int(f"{name}[{i}]", v, low, high) for i, v in enumerate(value))


def _pair(name: str, value: Any, low: int) -> tuple[int, int]:
    return _ints(name, value, 2, low, "of 2 ints (rows, columns)", GEOMETRY_MAX)  # type: ignore[return-value]


def _pads(name: str, value: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    """((top, bottom), (left, right)) of non-negative ints: the resolved padding forward stores."""
    what = "((top, bottom), (left, right)) of non-negative ints"
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be {what}; got {_describe(value)}")
    rows = _ints(f"{name}[0]", value[0], 2, 0, "(top, bottom) of non-negative ints", GEOMETRY_MAX)
    cols = _ints(f"{name}[1]", value[1], 2, 0, "(left, right) of non-negative ints", GEOMETRY_MAX)
    return (rows[0], rows[1]), (cols[0], cols[1])


def _array_shape(name: str, value: Any, ndim: int | None = None) -> tuple[int, ...]:
    """The shape of a non-empty array: positive ints, at most INT64_MAX elements in all."""
    what = "of positive ints (an array's shape)" if ndim is None else f"of {ndim} positive ints (an array's shape)"
    shape = _ints(name, value, ndim, 1, what)
    if ndim is None and not shape:
        raise ValueError(f"{name} must be a tuple {what} with at least 1 entry; got ()")
    if math.prod(shape) > INT64_MAX:  # Python ints: no int64 wrap-around in the product
        raise ValueError(f"{name} must describe at most 2**63 - 1 elements; got {shape}")
    return shape


def _float_dtype(name: str, value: Any) -> np.dtype:
    """float32 or float64 given as a dtype or a type (None would mean float64 to NumPy: refused)."""
    if not isinstance(value, (np.dtype, type, str)):
        raise TypeError(f"{name} must be the dtype float32 or float64; got {_describe(value)}")
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise TypeError(f"{name} must be the dtype float32 or float64; got {value!r}") from None
    if dtype not in validate.FLOAT_DTYPES:
        raise TypeError(f"{name} must be the dtype float32 or float64; got {dtype}")
    return dtype


def _params(name: str, params: Any, allowed: dict[str, Any]) -> dict[str, Any]:
    """A dict of known parameter names; missing ones take their defaults (as forward fills them in)."""
    if not isinstance(params, dict):
        raise TypeError(f"{name} must be a dict of parameters; got {_describe(params)}")
    unknown = sorted(str(k) for k in params if k not in allowed)
    if unknown:
        raise TypeError(f"{name} may hold {sorted(allowed) or 'no parameters'}; got {unknown}")
    return {**allowed, **params}


# --------------------------------------------------------------------------- activations
def activation(cache: Any) -> ActivationCache:
    """name one of ALL, x and y of one shape and dtype, params of that activation."""
    _kind(cache, ActivationCache, "activation_forward")
    name, x, y, params = cache
    if not isinstance(name, str):
        raise TypeError(f"cache.name must be an activation name (str); got {_describe(name)}")
    validate.choice("cache.name", name, ACTIVATIONS)
    y = _floats("cache.y", y)  # the reference: dy is checked against it
    x = _floats("cache.x", x, like=("cache.y", y))
    _one_device(**{"cache.x": x, "cache.y": y})
    _shape("cache.x", x, y.shape, " like cache.y")
    allowed = dict(ACTIVATION_PARAMETERS.get(name, {}))
    if name in ACTIVATIONS_ALONG_AXIS:
        allowed["axis"] = -1
    params = _params("cache.params", params, allowed)
    for key in ("threshold", "steepness", "alpha"):
        if key in params:
            params[key] = validate.real(f"cache.params['{key}']", params[key])
    if "steepness" in params and params["steepness"] <= 0:
        raise ValueError(f"cache.params['steepness'] must be > 0; got {params['steepness']}")
    if "axis" in params:
        params["axis"] = validate.axis("cache.params['axis']", params["axis"], x.ndim)
    return ActivationCache(name, _contiguous("cache.x", x), _contiguous("cache.y", y), params)


# --------------------------------------------------------------------------- dense
def dense(cache: Any) -> DenseCache:
    """x (N, in), W (in, out) of x's dtype, has_bias a bool."""
    _kind(cache, DenseCache, "dense_forward")
    x = _floats("cache.x", cache.x)
    W = _floats("cache.W", cache.W, like=("cache.x", x))
    has_bias = validate.flag("cache.has_bias", cache.has_bias)
    _one_device(**{"cache.x": x, "cache.W": W})
    _ndim("cache.x", x, 2, "(N, in)")
    _shape("cache.W", W, (x.shape[1], None), f" = (in, out) to match cache.x {tuple(x.shape)} = (N, in)")
    return DenseCache(_contiguous("cache.x", x), _contiguous("cache.W", W), has_bias)


# --------------------------------------------------------------------------- losses
def loss(cache: Any) -> LossCache:
    """name one of ALL, y and t of one shape and dtype, params of that loss, probabilities (softmax
    cross-entropy only) of y's shape and dtype."""
    _kind(cache, LossCache, "loss_forward")
    name, y, t, params, probabilities = cache
    if not isinstance(name, str):
        raise TypeError(f"cache.name must be a loss name (str); got {_describe(name)}")
    validate.choice("cache.name", name, LOSSES)
    y = _floats("cache.y", y)
    t = _floats("cache.t", t, like=("cache.y", y))
    if name == "softmax_crossentropy":
        if probabilities is None:
            raise TypeError("cache.probabilities must be an array of cache.y's shape for softmax_crossentropy "
                            "(softmax of the logits); got None")
        probabilities = _floats("cache.probabilities", probabilities, like=("cache.y", y))
    elif probabilities is not None:
        raise TypeError(f"cache.probabilities must be None for loss {name!r} (only softmax_crossentropy keeps "
                        f"them); got {_describe(probabilities)}")
    _one_device(**{"cache.y": y, "cache.t": t, "cache.probabilities": probabilities})
    _shape("cache.t", t, y.shape, " like cache.y")
    if probabilities is not None:
        _shape("cache.probabilities", probabilities, y.shape, " like cache.y")
    params = _params("cache.params", params, dict(LOSS_PARAMETERS.get(name, {})))
    if name in LOSSES_ALONG_AXIS:
        if y.ndim == 0:
            raise ValueError(f"cache.y must have at least 1 dimension (the class axis) for {name}; got a 0-d array")
        params["axis"] = validate.axis("cache.params['axis']", params["axis"], y.ndim)
    if "from_logits" in params:
        params["from_logits"] = validate.flag("cache.params['from_logits']", params["from_logits"])
    return LossCache(name, _contiguous("cache.y", y), _contiguous("cache.t", t), params,
                     _contiguous("cache.probabilities", probabilities))


# --------------------------------------------------------------------------- conv2d
def conv2d(cache: Any) -> Conv2DCache:
    """x (N, H, W, Cin), w (KH, KW, Cin, Cout) of x's dtype, has_bias a bool, stride a pair of positive
    ints, padding ((top, bottom), (left, right)), and the kernel within the padded input."""
    _kind(cache, Conv2DCache, "conv2d_forward")
    x = _floats("cache.x", cache.x)
    w = _floats("cache.w", cache.w, like=("cache.x", x))
    has_bias = validate.flag("cache.has_bias", cache.has_bias)
    stride = _pair("cache.stride", cache.stride, 1)
    padding = _pads("cache.padding", cache.padding)
    _one_device(**{"cache.x": x, "cache.w": w})
    _ndim("cache.x", x, 4, "(N, H, W, Cin)")
    _ndim("cache.w", w, 4, "(KH, KW, Cin, Cout)")
    _shape("cache.w", w, (None, None, x.shape[3], None),
           f" = (KH, KW, Cin, Cout) with the Cin of cache.x {tuple(x.shape)} = (N, H, W, Cin)")
    for axis, size, k, (before, after) in (("height", x.shape[1], w.shape[0], padding[0]),
                                           ("width", x.shape[2], w.shape[1], padding[1])):
        if k > size + before + after:
            raise ValueError(f"cache.w's kernel {axis} {k} must fit in cache.x's padded {axis} {size + before + after} "
                             f"(input {size} + cache.padding {before} + {after}); got a kernel larger than the input")
    return Conv2DCache(_contiguous("cache.x", x), _contiguous("cache.w", w), has_bias, stride, padding)


# --------------------------------------------------------------------------- pool2d
def pool2d(cache: Any) -> Pool2DCache:
    """mode one of MODES, x_shape 4 positive ints, dtype float, pool/stride pairs, padding smaller than
    the window on every side (every window holds a real cell), argmax (max mode only) int64 of the
    output's shape with every value a cell of the input (0 <= argmax < H * W)."""
    _kind(cache, Pool2DCache, "pool2d_forward")
    mode, x_shape, dtype, pool, stride, padding, argmax = cache
    if not isinstance(mode, str):
        raise TypeError(f"cache.mode must be one of {POOL_MODES}; got {_describe(mode)}")
    validate.choice("cache.mode", mode, POOL_MODES)
    x_shape = _array_shape("cache.x_shape", x_shape, 4)
    dtype = _float_dtype("cache.dtype", dtype)
    pool = _pair("cache.pool", pool, 1)
    stride = _pair("cache.stride", stride, 1)
    padding = _pads("cache.padding", padding)
    for axis, size, k, (before, after) in (("rows", x_shape[1], pool[0], padding[0]),
                                           ("cols", x_shape[2], pool[1], padding[1])):
        if k > size + before + after:
            raise ValueError(f"cache.pool {axis} {k} must fit in the padded input {size + before + after} "
                             f"(cache.x_shape {x_shape}, cache.padding {padding}); got a larger window")
        if before >= k or after >= k:
            raise ValueError(f"cache.padding {axis} must be smaller than cache.pool ({k}) on each side so every "
                             f"window holds a real cell; got {(before, after)}")
    if mode != "max":
        if argmax is not None:
            raise TypeError(f"cache.argmax must be None in {mode!r} mode (only max pooling keeps it); "
                            f"got {_describe(argmax)}")
        return Pool2DCache(mode, x_shape, dtype, pool, stride, padding, None)
    if argmax is None:
        raise TypeError("cache.argmax must be the int64 array of max pooling's selected cells; got None")
    argmax = _typed("cache.argmax", argmax, np.int64, "flat spatial indices h*W + w")
    y_shape = Pool2DCache(mode, x_shape, dtype, pool, stride, padding, None).y_shape
    _shape("cache.argmax", argmax, y_shape, f" (the output's) for cache.x_shape {x_shape}")
    argmax = _contiguous("cache.argmax", argmax)
    cells = x_shape[1] * x_shape[2]
    low, high = int(argmax.min()), int(argmax.max())  # read as offsets: a cell outside x is out of bounds
    if low < 0 or high >= cells:
        raise ValueError(f"cache.argmax must hold cells of the input, 0 <= argmax < H*W = {cells}; "
                         f"got values in [{low}, {high}]")
    return Pool2DCache(mode, x_shape, dtype, pool, stride, padding, argmax)


# --------------------------------------------------------------------------- flatten
def flatten(cache: Any) -> FlattenCache:
    """x_shape a non-empty array shape, dtype float32/float64."""
    _kind(cache, FlattenCache, "flatten_forward")
    return FlattenCache(_array_shape("cache.x_shape", cache.x_shape), _float_dtype("cache.dtype", cache.dtype))


# --------------------------------------------------------------------------- dropout
def dropout(cache: Any) -> DropoutCache:
    """training a bool; rate in [0, 1); seed in [0, 2**64); x_shape; dtype float; mask a bool array of
    x_shape when training, None otherwise."""
    _kind(cache, DropoutCache, "dropout_forward")
    mask, rate, seed, training, x_shape, dtype = cache
    training = validate.flag("cache.training", training)
    rate = validate.real("cache.rate", rate, low=0.0, high=1.0, high_open=True)
    seed = _int("cache.seed", seed, 0, SEED_LIMIT - 1)
    x_shape = _array_shape("cache.x_shape", x_shape)
    dtype = _float_dtype("cache.dtype", dtype)
    if not training:
        if mask is not None:
            raise TypeError(f"cache.mask must be None after an inference pass (cache.training False); "
                            f"got {_describe(mask)}")
        return DropoutCache(None, rate, seed, False, x_shape, dtype)
    if mask is None:
        raise TypeError(f"cache.mask must be a bool array of shape {x_shape} after a training pass "
                        f"(cache.training True); got None")
    mask = _typed("cache.mask", mask, np.bool_, "True = kept")
    _shape("cache.mask", mask, x_shape, " (cache.x_shape)")
    return DropoutCache(_contiguous("cache.mask", mask), rate, seed, True, x_shape, dtype)


# --------------------------------------------------------------------------- batchnorm
def batchnorm(cache: Any) -> BatchNormCache:
    """x_hat (..., C) with at least 2 dimensions; gamma, mean, var, inv_std (C,) of its dtype."""
    _kind(cache, BatchNormCache, "batchnorm_forward")
    x_hat = _floats("cache.x_hat", cache.x_hat)
    like = ("cache.x_hat", x_hat)
    names = ("gamma", "mean", "var", "inv_std")
    vectors = {f"cache.{n}": _floats(f"cache.{n}", getattr(cache, n), like=like) for n in names}
    training = validate.flag("cache.training", cache.training)
    _one_device(**{"cache.x_hat": x_hat}, **vectors)
    if x_hat.ndim < 2:
        raise ValueError(f"cache.x_hat must have at least 2 dimensions (batch, ..., features); "
                         f"got shape {tuple(x_hat.shape)}")
    why = f" (the features of cache.x_hat {tuple(x_hat.shape)})"
    for name, a in vectors.items():
        _shape(name, a, (x_hat.shape[-1],), why)
    gamma, mean, var, inv_std = (_contiguous(name, a) for name, a in vectors.items())
    return BatchNormCache(_contiguous("cache.x_hat", x_hat), gamma, mean, var, inv_std, training)


# --------------------------------------------------------------------------- rnn
def rnn(cache: Any) -> RNNCache:
    """x (N, T, D), h0 (N, H), W_xh (D, H), W_hh (H, H), b_h (H,), W_hy (H, O) or None, b_y (O,) or None
    (None without W_hy), h (N, T, H); one dtype."""
    _kind(cache, RNNCache, "rnn_forward")
    x = _floats("cache.x", cache.x)
    like = ("cache.x", x)
    fields = {"h0": cache.h0, "W_xh": cache.W_xh, "W_hh": cache.W_hh, "b_h": cache.b_h, "h": cache.h}
    a = {n: _floats(f"cache.{n}", v, like=like) for n, v in fields.items()}
    if cache.W_hy is None and cache.b_y is not None:
        raise TypeError(f"cache.b_y must be None when cache.W_hy is None (no read-out); got {_describe(cache.b_y)}")
    W_hy = None if cache.W_hy is None else _floats("cache.W_hy", cache.W_hy, like=like)
    b_y = None if cache.b_y is None else _floats("cache.b_y", cache.b_y, like=like)
    _one_device(**{"cache.x": x}, **{f"cache.{n}": v for n, v in a.items()}, **{"cache.W_hy": W_hy, "cache.b_y": b_y})
    _ndim("cache.x", x, 3, "(N, T, D)")
    _ndim("cache.h", a["h"], 3, "(N, T, H)")
    N, T, D = x.shape
    H = a["h"].shape[2]
    sizes = f" with N, T, D = {N}, {T}, {D} from cache.x and H = {H} from cache.h"
    _shape("cache.h", a["h"], (N, T, H), sizes)
    _shape("cache.h0", a["h0"], (N, H), sizes)
    _shape("cache.W_xh", a["W_xh"], (D, H), sizes)
    _shape("cache.W_hh", a["W_hh"], (H, H), sizes)
    _shape("cache.b_h", a["b_h"], (H,), sizes)
    if W_hy is not None:
        _shape("cache.W_hy", W_hy, (H, None), f" = (H, O) with H = {H} from cache.h")
        if b_y is not None:
            _shape("cache.b_y", b_y, (W_hy.shape[1],), f" = (O,) with O = {W_hy.shape[1]} from cache.W_hy")
    c = {n: _contiguous(f"cache.{n}", v) for n, v in a.items()}
    return RNNCache(_contiguous("cache.x", x), c["h0"], c["W_xh"], c["W_hh"], c["b_h"],
                    _contiguous("cache.W_hy", W_hy), _contiguous("cache.b_y", b_y), c["h"])


# --------------------------------------------------------------------------- lstm
def lstm(cache: Any) -> LSTMCache:
    """x (N, T, D), h0 and c0 (N, H), W (D, 4H), U (H, 4H), b (4H,), h and c (N, T, H), gates (N, T, 4H);
    one dtype."""
    _kind(cache, LSTMCache, "lstm_forward")
    x = _floats("cache.x", cache.x)
    like = ("cache.x", x)
    a = {n: _floats(f"cache.{n}", getattr(cache, n), like=like) for n in LSTMCache._fields if n != "x"}
    _one_device(**{"cache.x": x}, **{f"cache.{n}": v for n, v in a.items()})
    _ndim("cache.x", x, 3, "(N, T, D)")
    _ndim("cache.h", a["h"], 3, "(N, T, H)")
    N, T, D = x.shape
    H = a["h"].shape[2]
    sizes = f" with N, T, D = {N}, {T}, {D} from cache.x and H = {H} from cache.h"
    for name, want in (("h", (N, T, H)), ("c", (N, T, H)), ("gates", (N, T, 4 * H)), ("h0", (N, H)),
                       ("c0", (N, H)), ("W", (D, 4 * H)), ("U", (H, 4 * H)), ("b", (4 * H,))):
        _shape(f"cache.{name}", a[name], want, sizes)
    c = {n: _contiguous(f"cache.{n}", v) for n, v in a.items()}
    return LSTMCache(_contiguous("cache.x", x), **c)


# --------------------------------------------------------------------------- attention
def attention(cache: Any, deferred: type | None = None) -> AttentionCache:
    """q (N, Tq, d), k (N, Tk, d), v (N, Tk, dv), mask None or bool (Tq, Tk) / (1 or N, Tq, Tk), scale > 0,
    one dtype; weights (N, Tq, Tk), or, when the implementation keeps them deferred (``deferred``, the GPU's
    DeferredWeights class), one of those with row statistics (N, Tq) and the output (N, Tq, dv)."""
    _kind(cache, AttentionCache, "attention_forward")
    q, k, v, mask, weights, scale = cache
    q = _floats("cache.q", q)
    k = _floats("cache.k", k, like=("cache.q", q))
    v = _floats("cache.v", v, like=("cache.q", q))
    if mask is not None:
        mask = _typed("cache.mask", mask, np.bool_, "True = may attend")
    scale = validate.real("cache.scale", scale, low=0.0, low_open=True)
    if deferred is not None:
        if not isinstance(weights, deferred):
            raise TypeError(f"cache.weights must be the {deferred.__name__} of a GPU attention_forward; "
                            f"got {_describe(weights)}")
        stats = {f"cache.weights.{n}": _floats(f"cache.weights.{n}", getattr(weights, n), like=("cache.q", q))
                 for n in ("row_max", "row_sum", "out")}
    else:
        if type(weights).__name__ == "DeferredWeights":
            raise TypeError("cache.weights must be a NumPy array (N, Tq, Tk) here; got the DeferredWeights of a "
                            "GPU forward (cache.weights.get() gives the array)")
        stats = {"cache.weights": _floats("cache.weights", weights, like=("cache.q", q))}
    _one_device(**{"cache.q": q, "cache.k": k, "cache.v": v, "cache.mask": mask}, **stats)
    for name, a, layout in (("cache.q", q, "(N, Tq, d)"), ("cache.k", k, "(N, Tk, d)"), ("cache.v", v, "(N, Tk, dv)")):
        _ndim(name, a, 3, layout)
    n, tq, d = q.shape
    tk = k.shape[1]
    _shape("cache.k", k, (n, None, d), f" = (N, Tk, d) with the N and d of cache.q {tuple(q.shape)}")
    _shape("cache.v", v, (n, tk, None), f" = (N, Tk, dv) with the N and Tk of cache.k {tuple(k.shape)}")
    dv = v.shape[2]
    if mask is not None:
        if mask.ndim == 2:  # (Tq, Tk) shared by the batch, as attention_forward accepts it
            mask = mask.reshape((1,) + tuple(mask.shape))
        if mask.ndim != 3 or tuple(mask.shape[1:]) != (tq, tk) or mask.shape[0] not in (1, n):
            raise ValueError(f"cache.mask must have shape (Tq, Tk) = ({tq}, {tk}) or (1 or N, Tq, Tk) = "
                             f"(1 or {n}, {tq}, {tk}) from cache.q and cache.k; got {tuple(mask.shape)}")
        mask = _contiguous("cache.mask", mask)
    sizes = f" with N, Tq = {n}, {tq} from cache.q, Tk = {tk} from cache.k and dv = {dv} from cache.v"
    if deferred is None:
        _shape("cache.weights", stats["cache.weights"], (n, tq, tk), sizes)
        weights = _contiguous("cache.weights", stats["cache.weights"])
    else:
        wanted = {"row_max": (n, tq), "row_sum": (n, tq), "out": (n, tq, dv)}
        fixed = {}
        for name, want in wanted.items():
            full = f"cache.weights.{name}"
            _shape(full, stats[full], want, sizes)
            fixed[name] = _contiguous(full, stats[full])
        if any(fixed[name] is not getattr(weights, name) for name in wanted):
            weights = deferred(weights.target, q, k, mask, scale, fixed["row_max"], fixed["row_sum"], fixed["out"])
    return AttentionCache(_contiguous("cache.q", q), _contiguous("cache.k", k), _contiguous("cache.v", v), mask,
                          weights, scale)
