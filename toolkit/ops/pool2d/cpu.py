"""2-D pooling as Numba kernels (CPU). Same signatures and cache as reference.py.

Forward runs one output row (n, oh) per parallel iteration; backward is written as a GATHER, one
input row (n, h) per parallel iteration: each input cell sums the gradients of the windows that
contain it. Every iteration therefore writes its own rows only, so overlapping windows
(stride < pool_size) need no atomics and have no races. The channel loop is innermost because
channels are contiguous in memory (N, H, W, C). Float32 stays float32 (windows are small sums).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .geometry import Padding, output_hw, real_cell_counts
from .reference import Pool2DCache


@njit(cache=True, parallel=True)
def _max_forward(x, y, argmax, ph, pw, sh, sw, top, left):
    n_batch, h_in, w_in, channels = x.shape
    out_h, out_w = y.shape[1], y.shape[2]
    for row in prange(n_batch * out_h):
        n = row // out_h
        oh = row % out_h
        h_start = max(oh * sh - top, 0)
        h_stop = min(oh * sh - top + ph, h_in)
        for ow in range(out_w):
            w_start = max(ow * sw - left, 0)
            w_stop = min(ow * sw - left + pw, w_in)
            # The first real cell of the window seeds the maximum (validation guarantees one exists);
            # padded cells are never visited, so they can never be selected.
            for c in range(channels):
                y[n, oh, ow, c] = x[n, h_start, w_start, c]
                argmax[n, oh, ow, c] = h_start * w_in + w_start
            for h in range(h_start, h_stop):
                for w in range(w_start, w_stop):
                    for c in range(channels):
                        v = x[n, h, w, c]
                        best = y[n, oh, ow, c]
                        # strictly greater: ties keep the first maximum; v != v is NaN, which wins
                        if v > best or (v != v and best == best):
                            y[n, oh, ow, c] = v
                            argmax[n, oh, ow, c] = h * w_in + w


@njit(cache=True, parallel=True)
def _sum_forward(x, y, counts, ph, pw, sh, sw, top, left, average):
    n_batch, h_in, w_in, channels = x.shape
    out_h, out_w = y.shape[1], y.shape[2]
    for row in prange(n_batch * out_h):
        n = row // out_h
        oh = row % out_h
        h_start = max(oh * sh - top, 0)
        h_stop = min(oh * sh - top + ph, h_in)
        for ow in range(out_w):
            w_start = max(ow * sw - left, 0)
            w_stop = min(ow * sw - left + pw, w_in)
            for c in range(channels):
                y[n, oh, ow, c] = 0
            for h in range(h_start, h_stop):
                for w in range(w_start, w_stop):
                    for c in range(channels):
                        y[n, oh, ow, c] += x[n, h, w, c]
            if average:  # counts has x's dtype, so float32 stays float32
                for c in range(channels):
                    y[n, oh, ow, c] = y[n, oh, ow, c] / counts[oh, ow]


@njit(cache=True, inline="always")
def _windows_containing(i, stride, pool, before, n_out):
    """Output indices [first, last] of the windows (along one axis) that contain input index i."""
    reach = i + before - pool + 1  # window o contains i iff o*stride - before <= i < o*stride - before + pool
    first = 0 if reach <= 0 else (reach + stride - 1) // stride
    last = min((i + before) // stride, n_out - 1)
    return first, last


@njit(cache=True, parallel=True)
def _max_backward(dy, argmax, dx, ph, pw, sh, sw, top, left):
    n_batch, h_in, w_in, channels = dx.shape
    out_h, out_w = dy.shape[1], dy.shape[2]
    for row in prange(n_batch * h_in):
        n = row // h_in
        h = row % h_in
        oh_first, oh_last = _windows_containing(h, sh, ph, top, out_h)
        for w in range(w_in):
            ow_first, ow_last = _windows_containing(w, sw, pw, left, out_w)
            cell = h * w_in + w
            for c in range(channels):
                dx[n, h, w, c] = 0
            for oh in range(oh_first, oh_last + 1):
                for ow in range(ow_first, ow_last + 1):
                    for c in range(channels):
                        if argmax[n, oh, ow, c] == cell:
                            dx[n, h, w, c] += dy[n, oh, ow, c]


@njit(cache=True, parallel=True)
def _sum_backward(dy, counts, dx, ph, pw, sh, sw, top, left, average):
    n_batch, h_in, w_in, channels = dx.shape
    out_h, out_w = dy.shape[1], dy.shape[2]
    for row in prange(n_batch * h_in):
        n = row // h_in
        h = row % h_in
        oh_first, oh_last = _windows_containing(h, sh, ph, top, out_h)
        for w in range(w_in):
            ow_first, ow_last = _windows_containing(w, sw, pw, left, out_w)
            for c in range(channels):
                dx[n, h, w, c] = 0
            for oh in range(oh_first, oh_last + 1):
                for ow in range(ow_first, ow_last + 1):
                    for c in range(channels):
                        if average:
                            dx[n, h, w, c] += dy[n, oh, ow, c] / counts[oh, ow]
                        else:
                            dx[n, h, w, c] += dy[n, oh, ow, c]


def forward(x: np.ndarray, pool: tuple[int, int], stride: tuple[int, int], padding: Padding,
            mode: str) -> tuple[np.ndarray, Pool2DCache]:
    out = output_hw(x.shape[1:3], pool, stride, padding)
    y = np.empty((x.shape[0], *out, x.shape[3]), dtype=x.dtype)
    geometry = (pool[0], pool[1], stride[0], stride[1], padding[0][0], padding[1][0])
    argmax = None
    if mode == "max":
        argmax = np.empty(y.shape, dtype=np.int64)
        _max_forward(x, y, argmax, *geometry)
    else:
        counts = real_cell_counts(x.shape[1:3], out, pool, stride, padding, x.dtype)
        _sum_forward(x, y, counts, *geometry, mode == "avg")
    return y, Pool2DCache(mode, tuple(x.shape), x.dtype, pool, stride, padding, argmax)


def backward(dy: np.ndarray, cache: Pool2DCache) -> np.ndarray:
    mode, x_shape, dtype, pool, stride, padding, argmax = cache
    dx = np.empty(x_shape, dtype=dtype)
    geometry = (pool[0], pool[1], stride[0], stride[1], padding[0][0], padding[1][0])
    if mode == "max":
        _max_backward(dy, argmax, dx, *geometry)
    else:
        counts = real_cell_counts(x_shape[1:3], dy.shape[1:3], pool, stride, padding, dtype)
        _sum_backward(dy, counts, dx, *geometry, mode == "avg")
    return dx
