"""Dumbbells: the two columns of a [110] diamond or zincblende dumbbell as two
sublattices, told apart by their place in the dumbbell and, where the
species differ in Z, by their heights (numpy and scipy).

A dumbbell is a pair of mutual nearest columns about the median nearest
distance apart. Its axis is folded into one half plane (the pairs of one
grain share it), so its two ends are the same two sublattices across the
grain: end 1 and end 2. In zincblende (GaAs) the ends are the two species,
and their height difference, averaged over every dumbbell of the grain,
tells which is which far beyond what one dumbbell could; in diamond (Si)
it is zero within its error.
"""

from __future__ import annotations

import numpy as np

TOLERANCE = 0.25  # a dumbbell's length within this share of the median
SIGNIFICANT = 5.0  # |t| of the mean height difference that names the species
GRAIN_ANGLE = 20.0  # degrees: pair axes this far apart are different grains


def pair(xy: np.ndarray, tolerance: float = TOLERANCE) -> np.ndarray:
    """(M, 2) indices of the dumbbells: mutual nearest neighbours whose
    distance is within ``tolerance`` of the median nearest distance."""
    from scipy.spatial import cKDTree

    xy = np.asarray(xy, float)
    if len(xy) < 2:
        return np.zeros((0, 2), int)
    dist, idx = cKDTree(xy).query(xy, k=2)
    d, j = dist[:, 1], idx[:, 1]
    i = np.arange(len(xy))
    mutual = (j[j] == i) & (i < j)
    typical = np.median(d)
    ok = mutual & (np.abs(d - typical) <= tolerance * typical)
    return np.stack([i[ok], j[ok]], 1)


def _axes(vectors: np.ndarray) -> np.ndarray:
    """The grain of each pair by its axis (folded to [0, 180) degrees): the
    axes within ``GRAIN_ANGLE`` of the most common one are grain 0, those
    within it of the most common of the rest grain 1, and so on."""
    angle = np.degrees(np.arctan2(vectors[:, 1], vectors[:, 0])) % 180.0
    grain = np.full(len(angle), -1)
    k = 0
    while (grain < 0).any():
        left = np.flatnonzero(grain < 0)
        diff = np.abs((angle[left, None] - angle[None, left] + 90) % 180 - 90)
        centre = left[np.argmax((diff < GRAIN_ANGLE).sum(1))]
        near = np.abs((angle[left] - angle[centre] + 90) % 180 - 90) < GRAIN_ANGLE
        grain[left[near]] = k
        k += 1
    return grain


def ends(xy: np.ndarray, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(end (N,) 1 or 2, and 0 for columns in no dumbbell; grain (M,) of
    each pair): in each grain the pairs are oriented along the grain's axis
    (the one nearest +x, then +y), end 1 first."""
    xy = np.asarray(xy, float)
    end = np.zeros(len(xy), int)
    if len(pairs) == 0:
        return end, np.zeros(0, int)
    v = xy[pairs[:, 1]] - xy[pairs[:, 0]]
    grain = _axes(v)
    for g in np.unique(grain):
        sel = grain == g
        axis = np.median(v[sel] * np.sign(v[sel] @ v[sel][0])[:, None], 0)
        if axis[0] < -1e-9 or (abs(axis[0]) <= 1e-9 and axis[1] < 0):
            axis = -axis
        flip = (v[sel] @ axis) < 0
        first = np.where(flip, pairs[sel, 1], pairs[sel, 0])
        second = np.where(flip, pairs[sel, 0], pairs[sel, 1])
        end[first], end[second] = 1, 2
    return end, grain


def polarity(heights, xy, pairs) -> dict:
    """Which end is brighter: the t of the mean of (height of end 2 - height
    of end 1) over the dumbbells of each grain (``grains``) and of all
    (``t``, each grain turned so that its brighter end is end 2 where it is
    significant), ``significant``, the ends (``end`` (N,)), and ``swap``
    (N,) bool: the columns of the grains whose end 1 is the brighter."""
    heights = np.asarray(heights, float)
    end, grain = ends(xy, pairs)
    swap = np.zeros(len(heights), bool)
    out = {"pairs": int(len(pairs)), "grains": []}
    diffs = []
    for g in np.unique(grain):
        sel = pairs[grain == g]
        a = np.where(end[sel[:, 0]] == 1, sel[:, 0], sel[:, 1])
        b = np.where(end[sel[:, 0]] == 1, sel[:, 1], sel[:, 0])
        d = heights[b] - heights[a]
        ok = np.isfinite(d)
        t = mean_t(d[ok])
        out["grains"].append({"pairs": int(ok.sum()), "t": t})
        if t < -SIGNIFICANT:  # end 1 brighter here: turn the grain round
            swap[a] = swap[b] = True
            d = -d
        diffs.append(d[ok])
    d = np.concatenate(diffs) if diffs else np.zeros(0)
    out["t"] = mean_t(d)
    out["significant"] = bool(out["t"] > SIGNIFICANT) or any(
        abs(g["t"]) > SIGNIFICANT for g in out["grains"]
    )
    out["end"], out["swap"] = end, swap
    return out


def mean_t(d) -> float:
    """The t of the mean of ``d`` (0 with fewer than 3 or no spread)."""
    if len(d) < 3 or not np.std(d) > 0:
        return 0.0
    return float(np.mean(d) / (np.std(d, ddof=1) / np.sqrt(len(d))))


def classes(xy, heights) -> tuple[np.ndarray, dict]:
    """(labels (N,): 0 for end 1 and unpaired columns, 1 for end 2; the
    record of :func:`polarity` without its arrays). Where the two ends
    differ significantly in height, label 1 is the brighter in every grain
    (``record["significant"]``): the two species. The record also holds
    ``ratio``, the mean height of label 1 over label 0's, and ``unpaired``."""
    pairs = pair(xy)
    rec = polarity(heights, xy, pairs)
    end = np.where(rec["swap"], 3 - rec["end"], rec["end"])
    end = np.where(rec["end"] == 0, 0, end)
    labels = (end == 2).astype(int)
    rec = {k: v for k, v in rec.items() if k not in ("end", "swap")}
    h = np.asarray(heights, float)
    mean = [
        np.nanmean(h[labels == k]) if (labels == k).any() else np.nan for k in (0, 1)
    ]
    rec["ratio"] = float(mean[1] / mean[0]) if mean[0] else float("nan")
    rec["unpaired"] = int(len(xy) - 2 * len(pairs))
    return labels, rec
