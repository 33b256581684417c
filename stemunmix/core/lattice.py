"""Class labels made consistent with the lattice (numpy and scipy only)."""

from __future__ import annotations

from collections import deque

import numpy as np

LATTICES = (None, "checkerboard")
BOND = 1.2  # nearest unlike neighbours lie at 1, like ones at sqrt(2) A-B distances


def checkerboard(xy: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                 ab_distance: float, pair: tuple[int, int]) -> np.ndarray:  # fmt: skip
    """Labels of a two-sublattice projection (a perovskite along [001]) in which
    the columns of class ``pair[0]`` and ``pair[1]`` alternate along every
    nearest-neighbour bond.

    Columns closer than ``BOND`` x ``ab_distance`` are bonded; each connected
    patch of bonded columns is two-coloured by a breadth-first walk, and the
    colouring that agrees best with the network's labels (each vote weighted
    by the column's score) names the two colours. So a patch where the network
    swapped the classes of a few columns (low dose, or a layer where B is as
    bright as A) follows the rest of its patch. Columns of other classes, and
    columns with no bond, keep their labels.
    """
    from scipy.spatial import cKDTree

    labels = np.asarray(labels).copy()
    members = np.flatnonzero(np.isin(labels, pair))
    if len(members) < 2:
        return labels
    pts = np.asarray(xy, float)[members]
    bonds = cKDTree(pts).query_pairs(BOND * ab_distance, output_type="ndarray")
    n = len(members)
    both = np.concatenate([bonds, bonds[:, ::-1]])
    both = both[np.argsort(both[:, 0], kind="stable")]
    start = np.searchsorted(both[:, 0], np.arange(n + 1))
    colour = np.full(n, -1)
    for seed in range(n):
        if colour[seed] >= 0 or start[seed] == start[seed + 1]:
            continue
        colour[seed] = 0
        patch, queue = [seed], deque([seed])
        while queue:
            i = queue.popleft()
            for j in both[start[i] : start[i + 1], 1]:
                if colour[j] < 0:
                    colour[j] = 1 - colour[i]
                    patch.append(j)
                    queue.append(j)
        patch = np.array(patch)
        first = labels[members[patch]] == pair[0]
        weight = np.asarray(scores, float)[members[patch]]
        # Agreement if colour 0 is pair[0], against colour 0 being pair[1].
        agree = np.sum(weight * (first == (colour[patch] == 0)))
        zero, one = pair if agree >= weight.sum() - agree else pair[::-1]
        labels[members[patch]] = np.where(colour[patch] == 0, zero, one)
    return labels
