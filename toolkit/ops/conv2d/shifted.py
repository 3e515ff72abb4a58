"""Stride-1 "same" convolution as shifted matrix products over a padded copy of x: no im2col.

Why: im2col writes every window of x into a (N*OH*OW, KH*KW*Cin) matrix, KH*KW times the size of x
(58 MB for a 3x3, 64-channel 56x56 layer at batch 8), and the backward's ``dcols = dy w^T`` writes a
matrix as large again before col2im reads it back. With many channels those memory passes, not the
multiply-adds, were the gap to PyTorch (oneDNN's direct convolution makes no such copy).

The trick. Pad x once into a grid xp of Hp x Wp pixels per image (Hp = H + KH - 1, Wp = W + KW - 1 for
"same") and flatten the grid to a matrix of N*Hp*Wp rows and Cin columns. Output pixel (n, i, j) gets
the grid row p = (n*Hp + i)*Wp + j, and its window pixel (kh, kw) is grid row p + kh*Wp + kw: for a
fixed (kh, kw) the rows of all windows are one contiguous block of xp, shifted by kh*Wp + kw. So

    yg[p] = sum over (kh, kw) of  xp[p + kh*Wp + kw] @ w[kh, kw]                 (KH*KW products, K = Cin)

is KH*KW GEMMs on views of xp, accumulated into yg by BLAS itself (beta = 1). yg is y on the grid: the
rows with j >= W or i >= H mix pixels of two image rows and are dropped when y is copied out. They cost
(Hp*Wp) / (H*W) - 1 extra work: 7% for 3x3 on 56x56.

The backward is the same pattern twice:
* dx is the "full" correlation of dy with the filter rotated by 180 degrees: dy is placed on a zero grid
  of the same Hp x Wp shape (shifted by the bottom/right padding), and
  dxg[r] = sum over (kh, kw) of dyp[r + kh*Wp + kw] @ w[KH-1-kh, KW-1-kw]^T.
* dw[kh, kw] = sum over p of xp[p + kh*Wp + kw]^T dyg[p], where dyg is dy on the forward's grid with
  zeros on the dropped rows. One such product per (kh, kw) has a Cin x Cout output and an inner
  dimension of N*Hp*Wp: OpenBLAS runs that shape badly (137 ms for the nine of the 3x3 layer), so the
  KW shifts are gathered first (straight from x): x3[q] = (xp[q], xp[q + 1], ..., xp[q + KW - 1]) and
  dw[kh] (KW*Cin x Cout) = x3[rows shifted by kh*Wp]^T dyg: KH products.

The products go through ``toolkit.blas.gemm`` (NumPy's own OpenBLAS, called with beta = 1) because
NumPy's matmul cannot accumulate into its output: 9 matmuls plus 8 array additions took 24 ms for the
3x3 layer's forward, 9 GEMMs with beta = 1 took 21 ms. They run on OpenBLAS's threads: the path only
runs for products that are large anyway (``applies``). SciPy's gemm would accumulate too, but from a
second OpenBLAS with a second thread pool (see toolkit/blas.py): alternating the two pools doubled the
backward, and its dw products ran at 33 ms instead of 21.

Memory: xp, yg (forward) and dyp/dxg/x3 (backward) are grid-sized scratch kept per Python thread and
reused (``toolkit.ops.scratch`` explains why); none is kept in the cache.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ... import blas
from ..scratch import scratch

MIN_CHANNELS = 16  # each product's inner dimension is Cin (Cout for dx): below this BLAS runs it poorly
MIN_MACS = 1 << 24  # a layer this big, and its products, are on OpenBLAS's threads anyway


def applies(x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride, padding) -> bool:
    """Stride 1, output the size of the input (total padding KH-1 and KW-1, placed anyhow), enough
    channels for efficient products, and enough work for OpenBLAS's threads."""
    n, h, wd, cin = x_shape
    kh, kw, _, cout = w_shape
    (top, bottom), (left, right) = padding
    return (tuple(stride) == (1, 1) and top + bottom == kh - 1 and left + right == kw - 1
            and (kh, kw) != (1, 1) and min(cin, cout) >= MIN_CHANNELS
            and n * h * wd * kh * kw * cin * cout >= MIN_MACS)


def _grid(slot: str, rows: int, cols: int, dtype: np.dtype) -> np.ndarray:
    """A reusable (rows, cols) scratch matrix (``toolkit.ops.scratch``), one per slot name."""
    return scratch("conv2d.shifted." + slot, (rows, cols), dtype)


def _place(a: np.ndarray, grid: np.ndarray, hp: int, wp: int, top: int, left: int) -> None:
    """grid (N*Hp*Wp [+ tail], C) = a (N, H, W, C) at rows/columns offset by (top, left), zeros elsewhere."""
    n, h, wd, c = a.shape
    grid[:] = 0
    grid[:n * hp * wp].reshape(n, hp, wp, c)[:, top:top + h, left:left + wd] = a


def _accumulate_shifted(src: np.ndarray, filters, wp: int, rows: int, out: np.ndarray) -> None:
    """out[:rows] = sum over (kh, kw, f) in filters of src[p + kh*Wp + kw] @ f: the first product
    overwrites (beta = 0, so stale scratch values never leak in), the others add (beta = 1)."""
    for number, (kh, kw, f) in enumerate(filters):
        off = kh * wp + kw
        blas.gemm(src[off:off + rows], f, out[:rows], beta=0.0 if number == 0 else 1.0)


@njit(cache=True)
def _gather_shifts(x, top, left, hp, wp, x3):
    """x3[q, j, :] = xp[q + j] for every row q of x3 (span, KW, Cin), read straight from x: the padded grid
    xp is never formed (one pass writing x3 instead of a pass writing xp and KW strided copies of it).
    Serial on purpose: the GEMMs around it keep OpenBLAS's threads busy (one thread pool at a time)."""
    n_size, h, w, c_size = x.shape
    per_image = hp * wp
    zero = x.dtype.type(0)
    for q in range(x3.shape[0]):
        for j in range(x3.shape[1]):
            p = q + j
            n = p // per_image
            a = (p % per_image) // wp - top
            b = p % wp - left
            if n < n_size and 0 <= a < h and 0 <= b < w:
                for c in range(c_size):
                    x3[q, j, c] = x[n, a, b, c]
            else:
                for c in range(c_size):
                    x3[q, j, c] = zero


def _same_geometry(x_shape, w_shape):
    n, h, wd, _ = x_shape
    kh, kw = w_shape[:2]
    hp, wp = h + kh - 1, wd + kw - 1
    rows = (n - 1) * hp * wp + (h - 1) * wp + wd  # grid rows up to the last real output pixel
    return n, h, wd, kh, kw, hp, wp, rows


def forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, padding) -> np.ndarray:
    """y (N, H, W, Cout) of a stride-1 "same" convolution (``applies`` holds)."""
    n, h, wd, kh, kw, hp, wp, rows = _same_geometry(x.shape, w.shape)
    (top, _), (left, _) = padding
    cin, cout = w.shape[2], w.shape[3]
    xp = _grid("xp", n * hp * wp, cin, x.dtype)
    _place(x, xp, hp, wp, top, left)
    yg = _grid("yg", n * hp * wp, cout, x.dtype)
    shifts = ((i, j, w[i, j]) for i in range(kh) for j in range(kw))
    _accumulate_shifted(xp, shifts, wp, rows, yg)
    y = np.empty((n, h, wd, cout), dtype=x.dtype)
    grid_y = yg[:n * hp * wp].reshape(n, hp, wp, cout)[:, :h, :wd]  # the rows of real output pixels
    if b is None:
        np.copyto(y, grid_y)
    else:
        np.add(grid_y, b, out=y)
    return y


def backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray, padding,
             need_dx: bool = True) -> tuple[np.ndarray | None, np.ndarray] | None:
    """(dx, dw) of a stride-1 "same" convolution (``applies`` holds); db is the caller's column sum.
    need_dx False: dx is None and its products are skipped (dy is still placed on the grid: dw reads it).

    None when an infinite or NaN value would make these products disagree with the reference, and
    the caller must use im2col instead: dx's windows multiply w by the zeros around dy (0 * inf is NaN
    where the reference, which only adds real dy terms, has +-inf), and dw's dropped grid rows
    multiply x by zeros of dyg. Both need a non-finite w or x; checking w (small) before and dw
    (small) after costs nothing next to the products, and finite inputs never take the detour.
    """
    if not np.isfinite(w).all():
        return None
    n, h, wd, kh, kw, hp, wp, rows = _same_geometry(x.shape, w.shape)
    (top, bottom), (left, right) = padding
    cin, cout = w.shape[2], w.shape[3]

    # dx: dy on a zero grid, placed (bottom, right) in so that every window of the rotated filter
    # reads dy where the forward's window wrote it.
    dyp = _grid("dyp", n * hp * wp, cout, x.dtype)
    _place(dy, dyp, hp, wp, bottom, right)
    dx = None
    if need_dx:
        dxg = _grid("dxg", n * hp * wp, cin, x.dtype)
        rotated = np.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2))  # (KH, KW, Cout, Cin): small
        _accumulate_shifted(dyp, ((i, j, rotated[i, j]) for i in range(kh) for j in range(kw)), wp, rows, dxg)
        dx = np.empty_like(x)
        np.copyto(dx, dxg[:n * hp * wp].reshape(n, hp, wp, cin)[:, :h, :wd])

    # dw: x3[q] = (xp[q], ..., xp[q + KW - 1]) for the q that the KH shifted blocks read.
    span = rows + (kh - 1) * wp  # x3 rows that the shifted blocks [kh*Wp, kh*Wp + rows) cover
    x3 = _grid("x3", span, kw * cin, x.dtype)
    _gather_shifts(x, top, left, hp, wp, x3.reshape(span, kw, cin))
    dyg = dyp[bottom * wp + right:]  # dy on the forward's grid: the same zero-bordered buffer, shifted
    dw = np.empty((kh, kw * cin, cout), dtype=x.dtype)
    for i in range(kh):
        blas.gemm(x3[i * wp:i * wp + rows], dyg[:rows], dw[i], trans_a=True)  # (KW*Cin, Cout)
    if not np.isfinite(dw).all():
        return None
    return dx, dw.reshape(w.shape)
