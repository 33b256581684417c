"""2D honeycombs (MoS2, hBN seen flat): the two sublattices, told apart by
where their nearest neighbours point and, where their species differ in Z,
by their heights (numpy and scipy).

Each column of a honeycomb has three nearest neighbours 120 degrees apart;
those of one sublattice point along 0, 120 and 240 degrees from some axis,
those of the other along 60, 180 and 300. So the phase of the sum of
exp(3 i theta) over a column's neighbour bonds is one value on one sublattice
and its opposite on the other. Which sublattice is the heavier species comes
from each column's height against its three neighbours', averaged over the
frame (local differences: a thickness or contamination gradient cancels).
"""

from __future__ import annotations

import warnings

import numpy as np

from stemunmix.core.dumbbells import mean_t

SIGNIFICANT = 5.0  # |t| of the mean height difference that names the species
TOLERANCE = 0.25  # a bond within this share of the median nearest distance


def sublattices(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sublattice (N,) 0 or 1, and -1 for columns with fewer than 2 bonds;
    neighbours (N, 3) indices, -1 where there is no bond)."""
    from scipy.spatial import cKDTree

    xy = np.asarray(xy, float)
    out = np.full(len(xy), -1)
    if len(xy) < 4:
        return out, np.full((len(xy), 3), -1)
    dist, idx = cKDTree(xy).query(xy, k=4)
    near = np.median(dist[:, 1])
    bonded = np.abs(dist[:, 1:] - near) <= TOLERANCE * near
    idx = np.where(bonded, idx[:, 1:], -1)
    v = xy[np.clip(idx, 0, None)] - xy[:, None, :]
    theta = np.arctan2(v[..., 1], v[..., 0])
    phase = np.where(bonded, np.exp(3j * theta), 0).sum(1)
    ok = bonded.sum(1) >= 2
    if not ok.any():
        return out, idx
    axis = np.angle(np.sum(phase[ok] ** 2)) / 2  # the phase folded to a line
    side = np.real(phase * np.exp(-1j * axis))
    out[ok] = (side[ok] < 0).astype(int)
    return out, idx


def classes(xy, heights) -> tuple[np.ndarray, dict]:
    """(labels (N,): 0 and 1 the two sublattices, columns with too few bonds
    in the sublattice their nearest neighbour is not; the record: ``t`` of
    the mean height difference of sublattice 1 against its neighbours,
    ``significant``, ``ratio`` of the mean heights, ``columns`` bonded).
    Where significant, label 1 is the brighter sublattice."""
    xy = np.asarray(xy, float)
    heights = np.asarray(heights, float)
    sub, idx = sublattices(xy)
    around = np.where(idx >= 0, heights[np.clip(idx, 0, None)], np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column with no bond
        diff = (heights - np.nanmean(around, 1)) * np.where(sub == 1, 1.0, -1.0)
    diff = diff[(sub >= 0) & np.isfinite(diff)]
    t = mean_t(diff)
    labels = np.where(sub < 0, 0, sub)
    if t < -SIGNIFICANT:  # sublattice 0 is the brighter: turn the names round
        labels = 1 - labels
        t = -t
    lone = np.flatnonzero(sub < 0)
    if len(lone) and (sub >= 0).any():
        from scipy.spatial import cKDTree

        good = np.flatnonzero(sub >= 0)
        _, j = cKDTree(xy[good]).query(xy[lone])
        labels[lone] = 1 - labels[good[j]]
    mean = [
        np.nanmean(heights[labels == k]) if (labels == k).any() else np.nan
        for k in (0, 1)
    ]
    return labels, {
        "columns": int((sub >= 0).sum()),
        "t": t,
        "significant": bool(t > SIGNIFICANT),
        "ratio": float(mean[1] / mean[0]) if mean[0] else float("nan"),
    }
