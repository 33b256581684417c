"""Which kind of lattice an image shows, from the columns two networks find on
its central crop (numpy only).

``segment(structure="auto")`` runs the perovskite network. Its B columns sit
between the A columns whatever the image holds: on a perovskite they are
columns of their own, peaks of the image, while on a crystal of one species
they fall in the valleys between its atoms. Measured on the first frame's
central crop (``benchmarks/structure_auto.py``), the share of B columns that
are peaks is 0.00-0.08 on fcc, bcc and hcp crystals and a particle on
vacuum, 0.87-1.00 on most perovskites, but 0.27 on the real low-dose
SrTiO3 (its Ti columns are at the noise), 0.47 on the real PMN iDPC and
0.00-0.12 on perovskites whose B is faint and wide (under the A tails);
dumbbells read 0.19-0.22, MoS2 0.38 and the real nanoparticles 0.19-0.99.
So only the valleys, on the image and once the A columns are taken away,
are taken as proof (:func:`is_perovskite`), and so are B columns as bright
as the A ones (a metal particle whose columns the network split into A and
B: Z-contrast tells no two species apart), neighbours that do not
alternate in height as A and B do, and hexagonal bonds (MoS2; no
perovskite in [001] or [110]); the rest keeps the perovskite network, its
figures recorded. Where the crop is no
perovskite, the columns of the one-species network tell the rest:
dumbbells are pairs (the nearest neighbour at about half the distance of
the next), a 2D crystal a honeycomb of two alternating heights (MoS2: Mo
and S2), and everything else is a crystal of one species. Pairs are
distinct enough to overrule a perovskite whose B columns are mostly no
peaks (:func:`may_be_pairs`); the honeycomb is not (a real PMN iDPC image,
its O columns showing, reads a honeycomb of nearly alternating heights).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates
from scipy.spatial import cKDTree

MIN_COLUMNS = 20  # fewer B (or one-species) columns on the crop: no decision
B_PEAKS = 0.15  # B columns that are peaks, below which the crop is no perovskite
B_PEAKS_LESS_A = 0.7  # ... unless this share are peaks once A is taken away
PAIRS = 0.7  # nearest over second-nearest distance, below which: dumbbells
MAYBE = 0.5  # B columns that are peaks, below which dumbbells are looked for
ALTERNATING = -0.3  # neighbours' height correlation, below which: two species
# B columns as bright as A (median level over the crop's darkest): from this
# share on, Z-contrast tells no two species apart. Perovskites measured
# 0.02-0.54 (the real SrTiO3 and PbTiO3/SrRuO3 the highest), the real
# nanoparticles 1 and 2 of tk_r_em 0.90-0.98 (benchmarks/structure_auto.py).
SAME_LEVEL = 0.75
# Neighbours' local height correlation (:func:`local_height_correlation`)
# of the perovskite network's columns from which they are of one
# brightness, not A and B alternating: perovskites measured -0.99 to -0.17
# (the real PMN iDPC, its O columns showing, the highest; with a thickness
# three to twelve times larger at one side of the crop, -0.95 to -0.63),
# the real tk_r_em particle 2 0.13 (benchmarks/structure_auto.py).
ONE_BRIGHTNESS = 0.0
# Share of the angles between two bonds of a column within 10 degrees of 60
# or 120, from which the lattice is hexagonal: no perovskite the bundled
# models know ([001], [110]: 0.00-0.32 measured, the real PMN iDPC the
# highest), while MoS2 reads 0.78-0.83 and hcp [0001] 0.79.
HEXAGONAL = 0.6


def peak_share(image: np.ndarray, xy: np.ndarray, others: np.ndarray) -> float:
    """Share of the columns ``xy`` (N, 2) [x, y] that are peaks of ``image``:
    brighter, on the image smoothed by 0.08 of their nearest spacing, than the mean
    of the midpoints to their four nearest columns among ``others`` (M, 2),
    which include them. NaN without columns."""
    xy, others = np.asarray(xy, float), np.asarray(others, float)
    if len(xy) == 0 or len(others) < 5:
        return float("nan")
    d, i = cKDTree(others).query(xy, k=5)
    smooth = gaussian_filter(np.asarray(image, float), 0.08 * np.median(d[:, 1]))
    at = _sample(smooth, xy)
    mids = (xy[:, None, :] + others[i[:, 1:]]) / 2
    around = _sample(smooth, mids.reshape(-1, 2)).reshape(len(xy), 4).mean(1)
    return float(np.mean(at > around))


def neighbours(xy: np.ndarray) -> tuple[float, float]:
    """(coordination, pair ratio) of columns ``xy``: the median number of
    columns within 1.25 of each column's nearest distance (a honeycomb 3, a
    square lattice 4, a hexagonal one 6, dumbbells 1), and the median of the
    nearest over the second-nearest distance."""
    d, _ = cKDTree(xy).query(xy, k=min(8, len(xy)))
    near = d[:, 1:2]
    coordination = float(np.median((d[:, 1:] < 1.25 * near).sum(1)))
    return coordination, float(np.median(d[:, 1] / d[:, 2]))


def hexagonal_share(xy: np.ndarray) -> float:
    """Share of the angles between two bonds of the same column (bonds to
    the columns within 1.25 of its nearest distance, at most 6) that lie
    within 10 degrees of 60 or 120: about 0.8 on a hexagonal or honeycomb
    lattice, 0 on a square or rectangular one. NaN without two bonds."""
    xy = np.asarray(xy, float)
    k = min(7, len(xy))
    d, i = cKDTree(xy).query(xy, k=k)
    near = d[:, 1:] < 1.25 * np.median(d[:, 1])
    v = xy[i[:, 1:]] - xy[:, None, :]
    angle = np.arctan2(v[..., 1], v[..., 0])
    p, q = np.triu_indices(k - 1, 1)
    both = near[:, p] & near[:, q]
    between = np.degrees(
        np.abs((angle[:, p] - angle[:, q] + np.pi) % (2 * np.pi) - np.pi)
    )
    hexagonal = (np.abs(between - 60) < 10) | (np.abs(between - 120) < 10)
    if not both.any():
        return float("nan")
    return float(hexagonal[both].mean())


def height_correlation(image: np.ndarray, xy: np.ndarray) -> float:
    """Correlation of the image's (smoothed) height at the two ends of every
    bond between nearest neighbours (within 1.25 of a column's nearest
    distance): negative where two species alternate, near zero or positive
    (thickness) for one."""
    tree, near, h = _heights(image, xy)
    return _bond_correlation(h, tree, near)


def local_height_correlation(image: np.ndarray, xy: np.ndarray) -> float:
    """:func:`height_correlation` of each column's height (above the
    smoothed crop's 5th percentile) over the mean of the columns within 2.5
    nearest distances of it: a thickness that changes across the crop
    scales every column near a bond alike and is taken out, and only the
    alternation of two species is left (on a perovskite whose B is half
    its A, a thickness three times larger at one side of the crop read
    -0.01 to 0.27 without it)."""
    tree, near, h = _heights(image, xy)
    i, j = tree.query_pairs(2.5 * near, output_type="ndarray").T
    n = len(h)
    total = h + np.bincount(i, h[j], n) + np.bincount(j, h[i], n)
    mean = total / (1 + np.bincount(i, minlength=n) + np.bincount(j, minlength=n))
    if not np.all(mean > 0):
        return float("nan")
    return _bond_correlation(h / mean, tree, near)


def _heights(image, xy) -> tuple:
    """(KD-tree of ``xy``, their median nearest distance, the image's height
    at each, smoothed over 0.08 of that distance, above the smoothed
    image's 5th percentile)."""
    xy = np.asarray(xy, float)
    tree = cKDTree(xy)
    d, _ = tree.query(xy, k=2)
    near = float(np.median(d[:, 1]))
    smooth = gaussian_filter(np.asarray(image, float), 0.08 * near)
    return tree, near, _sample(smooth, xy) - np.percentile(smooth, 5)


def _bond_correlation(values, tree, near) -> float:
    """Correlation of ``values`` at the two ends of every bond (columns
    within 1.25 ``near`` of each other), both ways; NaN under 3 bonds."""
    pairs = tree.query_pairs(1.25 * near, output_type="ndarray")
    if len(pairs) < 3:
        return float("nan")
    v = np.asarray(values)[pairs]
    v = np.vstack([v, v[:, ::-1]])
    return float(np.corrcoef(v.T)[0, 1])


def perovskite_evidence(image, xy, labels, class_names) -> dict:
    """What the perovskite network's columns (``xy``, ``labels`` into
    ``class_names``, which hold ``"A"`` and ``"B"``) on ``image`` say:
    ``b_peaks``, the :func:`peak_share` of the B columns; where that is
    below :data:`B_PEAKS`, ``b_peaks_less_a``, the same on the image less
    the fitted Gaussians of the A columns (a faint B column between wide A
    ones sits below their tails, in a valley, but is a peak once they are
    gone: measured 0.95-1.00 on synthetic B of 0.05-0.12 of A's height and
    0.07 nm wide, while a B placed between atoms reads 0.48-0.55, chance);
    ``b_level`` (:func:`level_ratio`), and the ``coordination``,
    ``height_correlation``, ``local_height_correlation`` and
    ``hexagonal`` share of all the columns."""
    xy, labels = np.asarray(xy, float), np.asarray(labels, int)
    names = list(class_names)
    a, b = (xy[labels == names.index(k)] for k in ("A", "B"))
    out = {"b_columns": len(b), "b_peaks": float("nan")}
    out["b_peaks_less_a"], out["b_level"] = float("nan"), float("nan")
    out["coordination"], out["height_correlation"] = float("nan"), float("nan")
    out["hexagonal"], out["local_height_correlation"] = float("nan"), float("nan")
    if len(b) < MIN_COLUMNS or len(a) < MIN_COLUMNS:
        return out
    image = np.asarray(image, float)
    out["b_peaks"] = peak_share(image, b, xy)
    out["b_level"] = level_ratio(image, a, b)
    out["coordination"] = neighbours(xy)[0]
    out["height_correlation"] = height_correlation(image, xy)
    out["local_height_correlation"] = local_height_correlation(image, xy)
    out["hexagonal"] = hexagonal_share(xy)
    if out["b_peaks"] < B_PEAKS:  # only where it may be no perovskite
        out["b_peaks_less_a"] = peak_share(image - _a_model(image, a, b), b, xy)
    return out


def level_ratio(image, a, b) -> float:
    """The median level of the image (smoothed over a pixel) at the columns
    ``b`` over that at ``a``, each above the smoothed crop's 5th percentile
    (its vacuum or the floor between columns): 1 where the two are one
    species to Z-contrast."""
    smooth = gaussian_filter(np.asarray(image, float), 1.0)
    floor = np.percentile(smooth, 5)
    at_a = np.median(_sample(smooth, a)) - floor
    if not at_a > 0:
        return float("nan")
    return float((np.median(_sample(smooth, b)) - floor) / at_a)


def _a_model(image, a, b) -> np.ndarray:
    """The fitted Gaussians of the columns ``a`` (no background), rendered."""
    from stemunmix.core.find import column_sizes
    from stemunmix.core.refine import refine_gaussian, render

    sizes = column_sizes(image, a, float(np.median(cKDTree(a).query(b)[0])))
    fit = refine_gaussian(image, a, sizes["sigma"], sizes["radius"], uncertainty=False)
    params = np.column_stack([fit["height"], fit["xy"], fit["sigma"], 0 * fit["sigma"]])
    model = np.empty_like(image)
    render(params[np.isfinite(params).all(1)], sizes["radius"], model)
    return model


def is_perovskite(evidence: dict) -> bool:
    """False where the perovskite network's B columns lie in the valleys
    between the image's columns (fewer than :data:`B_PEAKS` of them are
    peaks) and stay no peaks once its A columns are taken away (fewer than
    :data:`B_PEAKS_LESS_A`), or where the columns are of one brightness:
    the B columns as bright as the A ones (``b_level`` at least
    :data:`SAME_LEVEL`: one species to Z-contrast, such as a metal particle
    whose columns the network split into A and B), or neighbours that do
    not alternate in height (``local_height_correlation`` at least
    :data:`ONE_BRIGHTNESS`), or where the columns' bonds are hexagonal
    (``hexagonal`` at least :data:`HEXAGONAL`: MoS2, hcp [0001], no
    perovskite in the projections the bundled models know); True
    otherwise, too few columns to tell included (the bundled default)."""
    if evidence["b_columns"] < MIN_COLUMNS:
        return True
    valleys = (
        evidence["b_peaks"] < B_PEAKS and evidence["b_peaks_less_a"] < B_PEAKS_LESS_A
    )
    one = evidence.get("b_level", 0.0) >= SAME_LEVEL
    one |= evidence.get("local_height_correlation", -1.0) >= ONE_BRIGHTNESS
    hexagonal = evidence.get("hexagonal", 0.0) >= HEXAGONAL
    return not (valleys or one or hexagonal)


def may_be_pairs(evidence: dict) -> bool:
    """Whether a crop :func:`is_perovskite` keeps may still hold dumbbells:
    fewer than :data:`MAYBE` of the B columns are peaks (dumbbells measured
    0.19-0.22, while the perovskites read 0.87-1.00 but for the real
    low-dose SrTiO3, 0.27, and PMN iDPC, 0.47: their columns are no
    pairs)."""
    return evidence["b_columns"] >= MIN_COLUMNS and evidence["b_peaks"] < MAYBE


def pairs(one: dict) -> bool:
    """Whether the one-species network's columns are dumbbells: each one's
    nearest neighbour at under :data:`PAIRS` of the second-nearest's
    distance (Si and GaAs [110] measured 0.59; every other crystal here
    0.92-1.00)."""
    return one["pair_ratio"] < PAIRS


def one_species_evidence(image, xy) -> dict:
    """What the one-species network's columns ``xy`` on ``image`` say."""
    xy = np.asarray(xy, float)
    out = {"columns": len(xy), "coordination": float("nan")}
    out["pair_ratio"], out["height_correlation"] = float("nan"), float("nan")
    if len(xy) >= MIN_COLUMNS:
        out["coordination"], out["pair_ratio"] = neighbours(xy)
        out["height_correlation"] = height_correlation(image, xy)
    return out


def other_structure(perovskite: dict, one: dict) -> str:
    """The structure of a crop that is no perovskite (:func:`is_perovskite`):
    ``"dumbbell"``, ``"2D"`` or ``"one species"``."""
    if pairs(one):
        return "dumbbell"
    for ev in (one, perovskite):
        if ev["coordination"] == 3 and ev["height_correlation"] < ALTERNATING:
            return "2D"
    return "one species"


def _sample(image, xy) -> np.ndarray:
    xy = np.asarray(xy, float).reshape(-1, 2)
    return map_coordinates(image, [xy[:, 1], xy[:, 0]], order=1, mode="nearest")
