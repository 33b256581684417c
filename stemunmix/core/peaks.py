"""Column candidates from probability maps (numpy, scipy and numba).

Positions are pixels in [x, y] order.
"""

from __future__ import annotations

import numba
import numpy as np

from stemunmix.core import threads


def find_peaks(
    prob: np.ndarray, min_distance: float, threshold: float = 0.5
) -> np.ndarray:
    """Maxima of a probability map, refined to probability-weighted centroids.

    Parameters
    ----------
    prob : ndarray (H, W)
        Probability map of one class.
    min_distance : float
        Minimum separation of two maxima in pixels (>= 1).
    threshold : float
        Minimum probability at a maximum.

    Returns
    -------
    ndarray (N, 2) of [x, y] positions, sorted by row then column.
    """
    prob = np.asarray(prob, dtype=np.float32)
    if prob.ndim != 2:
        raise ValueError(f"prob must be a 2D map, got shape {prob.shape}")
    if not min_distance >= 1:
        raise ValueError(f"min_distance must be >= 1 pixel, got {min_distance}")
    rows, cols = _maxima(prob, int(round(min_distance)), threshold)
    if len(rows) == 0:
        return np.zeros((0, 2))
    # Plateaus give several equal maxima: keep the first of each close group.
    keep = _thin(np.stack([cols, rows], 1).astype(float), min_distance)
    rows, cols = rows[keep], cols[keep]
    # Centroid weighted by the probability above half the peak's: continuous in
    # the pixel values, so no bias from which pixels a window includes.
    r = max(2, int(np.ceil(min_distance / 2)))
    off = np.arange(-r, r + 1)
    yy = np.clip(rows[:, None, None] + off[None, :, None], 0, prob.shape[0] - 1)
    xx = np.clip(cols[:, None, None] + off[None, None, :], 0, prob.shape[1] - 1)
    w = prob[yy, xx].astype(np.float64)  # float64 sums: the same at any offset
    w = np.clip(w - 0.5 * w[:, r : r + 1, r : r + 1], 0.0, None)
    total = w.sum(axis=(1, 2))
    # A flat top (every weight zero) keeps its maximum's own pixel.
    flat = total <= 0
    total = np.where(flat, 1.0, total)
    x = np.where(flat, cols, (w * xx).sum(axis=(1, 2)) / total)
    y = np.where(flat, rows, (w * yy).sum(axis=(1, 2)) / total)
    return np.stack([x, y], axis=1)


def _maxima(prob, reach: int, threshold: float):
    """(rows, cols) of the pixels at least ``threshold`` (and above zero) that
    no pixel within ``reach`` (a (2 reach + 1)^2 square, outside the map
    zero) exceeds: what ``prob == maximum_filter(prob, 2 reach + 1)`` finds,
    from two compiled passes, the 3 x 3 maxima and then each one's square."""
    with threads.limited():
        rows, cols = np.nonzero(_peaks3(prob, np.float32(threshold)))
        if len(rows) == 0 or reach < 2:
            return rows, cols
        keep = _square_max(prob, rows, cols, reach)
    return rows[keep], cols[keep]


@numba.njit(parallel=True, cache=True)
def _square_max(prob, rows, cols, reach):
    h, w = prob.shape
    out = np.ones(len(rows), np.bool_)
    for k in numba.prange(len(rows)):
        y, x = rows[k], cols[k]
        v = prob[y, x]
        for yy in range(max(0, y - reach), min(h, y + reach + 1)):
            for xx in range(max(0, x - reach), min(w, x + reach + 1)):
                if prob[yy, xx] > v:
                    out[k] = False
    return out


@numba.njit(parallel=True, cache=True)
def _peaks3(prob, threshold):
    """Pixels >= threshold and > 0 that no 3 x 3 neighbour exceeds."""
    h, w = prob.shape
    out = np.zeros((h, w), np.bool_)
    for y in numba.prange(h):
        for x in range(w):
            v = prob[y, x]
            if v < threshold or v <= 0:
                continue
            top = True
            for dy in range(-1, 2):
                yy = y + dy
                if yy < 0 or yy >= h:
                    continue
                for dx in range(-1, 2):
                    xx = x + dx
                    if 0 <= xx < w and prob[yy, xx] > v:
                        top = False
            out[y, x] = top
    return out


def _thin(xy: np.ndarray, min_distance: float) -> np.ndarray:
    """Indices of points, dropping any closer than ``min_distance`` to a kept one."""
    from scipy.spatial import cKDTree

    pairs = cKDTree(xy).query_pairs(min_distance * 0.999, output_type="ndarray")
    drop = np.zeros(len(xy), bool)
    for i, j in pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]:
        if not drop[i]:
            drop[j] = True
    return np.flatnonzero(~drop)


def match(reference: np.ndarray, found: np.ndarray, tolerance: float):
    """One-to-one nearest matches within ``tolerance`` pixels.

    Returns (index into reference, index into found) of matched pairs.
    """
    from scipy.spatial import cKDTree

    if len(reference) == 0 or len(found) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    dist, idx = cKDTree(found).query(reference, distance_upper_bound=tolerance)
    ok = np.isfinite(dist)
    ref_idx, found_idx = np.flatnonzero(ok), idx[ok]
    # Keep the closest reference where two claim the same found column.
    order = np.argsort(dist[ok])
    _, first = np.unique(found_idx[order], return_index=True)
    sel = order[first]
    return ref_idx[sel], found_idx[sel]
