"""Numerical core of segmentation: normalisation, spacing, resampling, tiling."""

from __future__ import annotations

import numpy as np


def normalize(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Robust per-image scaling: the ``low`` and ``high`` percentiles go to 0 and 1.

    Raises ValueError for non-finite pixels or a constant image.
    """
    image = np.asarray(image, dtype=np.float32)
    if not np.all(np.isfinite(image)):
        raise ValueError(
            "image contains NaN or inf pixels; replace them (e.g. with the median) "
            "before segmenting"
        )
    lo, hi = np.percentile(image, [low, high])
    if not hi > lo:
        lo, hi = float(image.min()), float(image.max())
    if not hi > lo:
        raise ValueError("image is constant: there are no atomic columns to find")
    return ((image - lo) / (hi - lo)).astype(np.float32)
