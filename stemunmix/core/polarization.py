"""Polar displacement of B columns from the centre of their A neighbours."""

from __future__ import annotations

import numpy as np


def polarization(xy_a: np.ndarray, xy_b: np.ndarray, tolerance: float = 1.25):
    """Displacement of each B column from the centroid of its nearest A columns.

    The A neighbours of a B column are those within ``tolerance`` times its
    nearest A distance (four in an [001] perovskite, two in [110]); the planted
    polar displacement of a B column is its offset from their centroid.

    Returns (vectors (N_B, 2) in pixels [x, y], n_neighbours (N_B,)).
    """
    from scipy.spatial import cKDTree

    xy_a, xy_b = np.asarray(xy_a, float), np.asarray(xy_b, float)
    if len(xy_a) == 0 or len(xy_b) == 0:
        return np.zeros((len(xy_b), 2)), np.zeros(len(xy_b), int)
    k = min(6, len(xy_a))
    dist, idx = cKDTree(xy_a).query(xy_b, k=k)
    dist, idx = dist.reshape(len(xy_b), k), idx.reshape(len(xy_b), k)
    near = dist <= tolerance * dist[:, :1]
    count = near.sum(1)
    centre = (xy_a[idx] * near[..., None]).sum(1) / count[:, None]
    return xy_b - centre, count
