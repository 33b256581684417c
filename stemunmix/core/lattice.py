"""Class labels made consistent with the lattice (numpy and scipy only)."""

from __future__ import annotations

import numpy as np

LATTICES = (None, "checkerboard")
BOND = 1.2  # nearest unlike neighbours lie at 1, like ones at sqrt(2) A-B distances


def checkerboard(xy: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                 ab_distance: float, pair: tuple[int, int]) -> np.ndarray:  # fmt: skip
    """Labels of a two-sublattice projection (a perovskite along [001]) in which
    the columns of class ``pair[0]`` and ``pair[1]`` alternate along every
    nearest-neighbour bond.

    Columns closer than ``BOND`` x ``ab_distance`` are bonded. Each connected
    patch is two-coloured twice, along a breadth-first walk over all its bonds
    and along the minimum spanning tree of its bonds (by length), and keeps the
    colouring with fewer bonds joining like colours. (A like pair squeezed
    under the bond length by noise is longer than the true bonds around it, so
    the tree avoids it where the walk may flip everything beyond it; spurious
    extra columns, which make short bonds, mislead the tree instead.) The colouring that
    agrees best with the network's labels (each vote weighted by the column's
    score) names the two colours, so columns the network swapped (low dose, a
    layer where B is as bright as A) follow their patch. Columns of other
    classes, and columns with no bond, keep their labels.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import (
        breadth_first_order,
        connected_components,
        minimum_spanning_tree,
    )
    from scipy.spatial import cKDTree

    labels = np.asarray(labels).copy()
    members = np.flatnonzero(np.isin(labels, pair))
    n = len(members)
    if n < 2:
        return labels
    pts = np.asarray(xy, float)[members]
    bonds = cKDTree(pts).query_pairs(BOND * ab_distance, output_type="ndarray")
    if len(bonds) == 0:
        return labels
    length = np.hypot(*(pts[bonds[:, 0]] - pts[bonds[:, 1]]).T) + 1e-9  # 0 = none
    graph = coo_matrix((length, (bonds[:, 0], bonds[:, 1])), shape=(n, n)).tocsr()
    graph = (graph + graph.T).tocsr()
    tree = minimum_spanning_tree(graph)
    tree = (tree + tree.T).tocsr()
    n_patches, patch_of = connected_components(graph, directed=False)
    weight = np.asarray(scores, float)[members]
    first = labels[members] == pair[0]
    for p in range(n_patches):
        root = int(np.flatnonzero(patch_of == p)[0])
        best = None
        for g in (graph, tree):
            order, parent = breadth_first_order(g, root, directed=False,
                                                return_predecessors=True)  # fmt: skip
            colour = np.zeros(n, bool)
            for i in order[1:]:  # parents come before their children
                colour[i] = not colour[parent[i]]
            inside = patch_of[bonds[:, 0]] == p
            clash = int(np.sum(colour[bonds[inside, 0]] == colour[bonds[inside, 1]]))
            if best is None or clash < best[0]:
                best = (clash, order, colour)
        _, order, colour = best
        if len(order) < 2:
            continue  # a lone column
        c, w = colour[order], weight[order]
        # Agreement if colour False is pair[0], against it being pair[1].
        agree = np.sum(w * (first[order] == ~c))
        zero, one = pair if agree >= w.sum() - agree else pair[::-1]
        labels[members[order]] = np.where(c, one, zero)
    return labels
