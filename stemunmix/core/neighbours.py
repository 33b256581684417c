"""The neighbours of every column as offsets on the mean cell: the physical
descriptor beside the learned windows, and where the columns sit in a
window (numpy and scipy)."""

from __future__ import annotations

import numpy as np


def nearest_spacing(xy, default: float = 1.0) -> float:
    """The median distance (pixels) from each of the points ``xy`` (N, 2) to
    its nearest other one: the column spacing; ``default`` for fewer than
    two points. The one definition every step uses."""
    from scipy.spatial import cKDTree

    xy = np.asarray(xy, float).reshape(-1, 2)
    if len(xy) < 2:
        return float(default)
    dist, _ = cKDTree(xy).query(xy, k=2)
    return float(np.median(dist[:, 1]))


def reference_cell(centre_xy, around_xy, reach: float | None = None, k_query: int = 12):
    """The offsets (K, 2) [x, y] of the ``around`` columns within ``reach``
    pixels (default 1.3 times the median distance to the nearest one) of a
    typical ``centre`` column: the median cell, in order of angle.

    Each offset seen within ``reach`` votes; the modal count of neighbours
    per column is K, and the reference offsets are refined as the medians of
    the offsets matched to them (two rounds).
    """
    from scipy.spatial import cKDTree

    centre_xy = np.asarray(centre_xy, float)
    around_xy = np.asarray(around_xy, float)
    k_query = int(min(k_query, len(around_xy)))
    if len(centre_xy) == 0 or k_query == 0:
        return np.zeros((0, 2))
    dist, idx = cKDTree(around_xy).query(centre_xy, k=k_query)
    dist, idx = dist.reshape(len(centre_xy), -1), idx.reshape(len(centre_xy), -1)
    other = dist > 1e-9  # a column is not its own neighbour
    if reach is None:
        nearest = np.where(other, dist, np.inf).min(1)
        reach = 1.3 * float(np.median(nearest[np.isfinite(nearest)]))
    near = other & (dist <= reach)
    counts = near.sum(1)
    k = int(np.bincount(counts).argmax())
    if k == 0:
        return np.zeros((0, 2))
    # Start from the column nearest the middle with the modal count.
    middle = np.median(centre_xy, 0)
    order = np.argsort(np.hypot(*(centre_xy - middle).T))
    first = next(i for i in order if counts[i] == k)
    ref = around_xy[idx[first][near[first]]] - centre_xy[first]
    for _ in range(2):
        offsets, ok = match_offsets(centre_xy, around_xy, ref)
        if ok.sum() < 1:
            break
        ref = np.median(offsets[ok], axis=0)
    return ref[np.argsort(np.arctan2(ref[:, 1], ref[:, 0]))]


def match_offsets(centre_xy, around_xy, reference, tolerance: float = 0.35):
    """Each centre's ``around`` column nearest every reference offset, as
    (N, K, 2) offsets [x, y]; ``ok`` (N,) where every reference offset found a
    column within ``tolerance`` times the shortest reference spacing and no
    column was matched twice."""
    from scipy.spatial import cKDTree

    centre_xy = np.asarray(centre_xy, float)
    reference = np.asarray(reference, float)
    n, k = len(centre_xy), len(reference)
    if n == 0 or k == 0 or len(around_xy) == 0:
        return np.zeros((n, k, 2)), np.zeros(n, bool)
    spacing = np.hypot(*reference.T).min()
    if k > 1:
        diff = reference[:, None] - reference[None]
        spacing = min(spacing, np.hypot(*diff[~np.eye(k, dtype=bool)].T).min())
    want = centre_xy[:, None] + reference[None]  # (N, K, 2)
    dist, idx = cKDTree(np.asarray(around_xy, float)).query(want.reshape(-1, 2))
    dist, idx = dist.reshape(n, k), idx.reshape(n, k)
    offsets = np.asarray(around_xy, float)[idx] - centre_xy[:, None]
    ok = (dist <= tolerance * spacing).all(1)
    if k > 1:
        s = np.sort(idx, 1)
        ok &= (np.diff(s, axis=1) > 0).all(1)
    return offsets, ok


def displacement_descriptors(centre_xy, around_xy, reach: float | None = None):
    """Per centre column: the offset of each of its ``around`` neighbours
    (within ``reach`` on the median cell) from where the median cell puts
    it, (N, K, 2) pixels [x, y]; ``ok`` (N,) for the columns with every
    neighbour found; and the reference offsets (K, 2)."""
    ref = reference_cell(centre_xy, around_xy, reach)
    if len(ref) == 0:
        raise ValueError(
            "no neighbours near the centre columns: "
            "check the classes, or the columns found"
        )
    offsets, ok = match_offsets(centre_xy, around_xy, ref)
    return offsets - ref[None], ok, ref


def window_sites(centre_xy, classes_xy: dict, d: int, centre_class=None) -> dict:
    """Where each class's columns sit in a d x d window centred on a typical
    ``centre`` column (of class ``centre_class``, which sits at the centre):
    {class name: (M, 2) offsets [x, y] from the window centre}, from the
    median cell; only those at least half a pixel inside."""
    half = (d - 1) / 2 - 0.5
    out = {}
    for name, xy in classes_xy.items():
        if len(xy) < 2:
            continue
        ref = reference_cell(
            centre_xy, xy, reach=float(np.sqrt(2) * (half + 0.5)), k_query=32
        )
        ref = ref.reshape(-1, 2)
        if name == centre_class:
            ref = np.vstack([np.zeros((1, 2)), ref[np.hypot(*ref.T) >= 1.0]])
        inside = (np.abs(ref) <= half).all(1)
        if inside.any():
            out[name] = ref[inside]
    return out


def centroid_shifts(picture, reference, sites, radius: float) -> np.ndarray:
    """(M, 2) [x, y]: how far the centroid of each column in ``picture``
    (a window, (h, w)) lies from that in ``reference``, each column the
    pixels within ``radius`` of its site (``sites`` (M, 2), window pixels
    [x, y]), weighted by their height above the disc's lowest pixel."""
    picture = np.asarray(picture, float)
    reference = np.asarray(reference, float)
    h, w = picture.shape
    yy, xx = np.mgrid[0:h, 0:w]

    def centroid(img, x0, y0):
        disc = np.hypot(xx - x0, yy - y0) <= radius
        wts = np.clip(img[disc] - img[disc].min(), 0, None)
        if wts.sum() <= 0:
            return np.array([x0, y0], float)
        return np.array([(wts * xx[disc]).sum(), (wts * yy[disc]).sum()]) / wts.sum()

    return np.array(
        [
            centroid(picture, x, y) - centroid(reference, x, y)
            for x, y in np.asarray(sites, float)
        ]
    )


def cell_centres(centre_xy, around_xy, reach: float | None = None):
    """The centroid of each centre column's ``around`` neighbours on the
    median cell (for a B column, the centre of its A cell), (N, 2) [x, y];
    ``ok`` (N,) where every neighbour was found."""
    offsets, ok, ref = displacement_descriptors(centre_xy, around_xy, reach)
    return np.asarray(centre_xy, float) + (offsets + ref[None]).mean(1), ok


def component_moves(
    factors,
    spread,
    mean,
    sites: dict,
    d: int,
    channels: list,
    radius: float | None = None,
) -> dict:
    """How far each component moves each column of the mean window:
    {class: (n_components, M, 2) px}. ``factors`` (components, features) of
    windows (d, C d) with the ``channels`` side by side; ``spread`` the
    loadings' standard deviation per component; ``sites`` from
    :func:`window_sites`. Non-negative factors (NMF) are compared with the
    mean window; signed ones as mean +/- spread x factor, half the shift.
    ``radius``: of each column's disc (default 0.35 of the closest two sites,
    at least 1.5 px)."""
    every = np.vstack(list(sites.values()))
    gaps = np.hypot(*(every[:, None] - every[None]).T)
    gaps = gaps[gaps > 0]
    if radius is None:
        radius = max(1.5, 0.35 * float(gaps.min())) if len(gaps) else d / 4
    positive = bool((np.asarray(factors) >= 0).all())
    out = {}
    for name, offsets in sites.items():
        tile = channels.index(name) if name in channels else 0
        at = offsets + (d - 1) / 2 + np.array([tile * d, 0.0])
        moves = []
        for f, s in zip(factors, spread, strict=True):
            f = np.reshape(f, mean.shape)
            if positive:
                moves.append(centroid_shifts(f, mean, at, radius))
            else:
                moves.append(
                    0.5 * centroid_shifts(mean + s * f, mean - s * f, at, radius)
                )
        out[name] = np.array(moves)
    return out
