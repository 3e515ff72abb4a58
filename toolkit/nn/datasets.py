"""The handwritten digits of scikit-learn at LeNet-5's input size (scikit-learn is optional: not a dependency).

``load_digits_32x32()`` returns x (1797, 32, 32, 1) float32 in [0, 1] and the labels y (1797,) int64:
the 8x8 images of ``sklearn.datasets.load_digits`` (grey levels 0..16) divided by 16 and upsampled
4x by pixel repetition (nearest neighbour), so every original pixel becomes a 4x4 block.
"""

from __future__ import annotations

import numpy as np


def upsample_nearest(images: np.ndarray, factor: int) -> np.ndarray:
    """(N, H, W) -> (N, H*factor, W*factor): each pixel repeated factor x factor times."""
    if images.ndim != 3:
        raise ValueError(f"images must have shape (N, H, W); got {images.shape}")
    if isinstance(factor, bool) or not isinstance(factor, int) or factor <= 0:
        raise ValueError(f"factor must be a positive integer; got {factor!r}")
    return images.repeat(factor, axis=1).repeat(factor, axis=2)


def load_digits_32x32() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError("the digits come with scikit-learn, which the toolkit does not depend on: "
                          "pip install scikit-learn") from exc
    digits = load_digits()
    x = upsample_nearest(digits.images.astype(np.float32) / np.float32(16.0), 4)[..., None]
    return np.ascontiguousarray(x), digits.target.astype(np.int64)
