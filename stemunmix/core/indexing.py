"""Lattice indexing: an integer site (i, j) for every column (numpy and scipy).

The lattice of one sublattice (the A columns of a perovskite) is indexed by
growing from a seed along its nearest-neighbour bonds: each bond that is one
lattice step (+-a or +-b, judged against the local lattice vectors of its two
ends) joins the graph, the minimum spanning tree of the graph by how far each
bond is from an exact step carries (i, j) from the seed outward, so the
poorest bonds (across a domain wall, next to a vacancy) are the last used.
Local lattice vectors follow drift, rotation and curved layers; vacancies only
remove bonds. Columns of the other sublattices take the (i, j) of the site at
the origin of their cell. Positions are [x, y] pixels.
"""

from __future__ import annotations

import numpy as np

STEPS = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]])
TOLERANCE = 0.3  # of a lattice step: a bond further from one is no bond


def lattice_vectors(xy: np.ndarray, min_columns: int = 12) -> np.ndarray | None:
    """The two shortest independent translations [a, b] (2, 2) of a set of
    columns, from their nearest-neighbour bonds; None with too few columns.

    Every column's bonds to its six nearest neighbours, up to 1.6 times the
    median nearest distance, are folded into one half plane; the most common
    bond (counted within 0.15 of that distance) and the most common one not
    parallel to it are the vectors, each the mean of its bonds. ``a`` is the
    more horizontal of the two, pointing to +x; ``b`` points to +y (down the
    image): i counts along a, j along b.
    """
    from scipy.spatial import cKDTree

    xy = np.asarray(xy, float)
    if len(xy) < min_columns:
        return None
    if len(xy) > 500:  # the 500 nearest the middle measure it as well
        keep = np.argsort(np.hypot(*(xy - np.median(xy, 0)).T))[:500]
        xy = xy[keep]
    k = min(7, len(xy))
    dist, idx = cKDTree(xy).query(xy, k=k)
    nearest = float(np.median(dist[:, 1]))
    bonds = (xy[idx[:, 1:]] - xy[:, None, :]).reshape(-1, 2)
    bonds = bonds[np.hypot(*bonds.T) < 1.6 * nearest]
    flip = (bonds[:, 0] < 0) | ((bonds[:, 0] == 0) & (bonds[:, 1] < 0))
    bonds[flip] *= -1
    # How common each bond is: how many fall in its bin of 0.15 nearest.
    bins = np.round(bonds / (0.15 * nearest)).astype(np.int64)
    _, where, counts = np.unique(bins, axis=0, return_inverse=True, return_counts=True)
    near = counts[where.ravel()]
    chosen = []
    for _ in range(2):
        ok = np.ones(len(bonds), bool)
        for v in chosen:
            cos = bonds @ v / (np.hypot(*bonds.T) * np.hypot(*v) + 1e-12)
            ok &= np.abs(cos) < 0.8
        if not ok.any():
            return None
        # The most common bonds; among those as common as half the best, the shortest.
        common = ok & (near >= 0.5 * near[ok].max())
        pick = np.flatnonzero(common)[np.argmin(np.hypot(*bonds[common].T))]
        members = np.hypot(*(bonds - bonds[pick]).T) < 0.15 * nearest
        chosen.append(bonds[members].mean(0))
    return orient(np.array(chosen))


def orient(vectors: np.ndarray) -> np.ndarray:
    """[a, b] with a the more horizontal (a_x > 0) and b pointing to +y."""
    a, b = np.asarray(vectors, float)
    if abs(b[0]) * np.hypot(*a) > abs(a[0]) * np.hypot(*b):
        a, b = b, a
    a = a if a[0] > 0 or (a[0] == 0 and a[1] > 0) else -a
    b = b if b[1] > 0 or (b[1] == 0 and b[0] < 0) else -b
    return np.array([a, b])


def _neighbour_pairs(xy):
    """(src, dst) of every column's six nearest neighbours (the four steps of a
    square or rectangular lattice among them, vacancies aside)."""
    from scipy.spatial import cKDTree

    n = len(xy)
    k = min(7, n)
    _, idx = cKDTree(xy).query(xy, k=k, workers=-1)
    # int32: half the memory of the 4 M pairs of a 16384^2 image
    return (
        np.repeat(np.arange(n, dtype=np.int32), k - 1),
        idx[:, 1:].ravel().astype(np.int32),
    )


def _bonds(xy, local, pairs, chunk: int = 1 << 18):
    """Candidate bonds (k, m, step index into STEPS, misfit): the neighbour
    ``pairs`` that are one lattice step apart in the mean of the two ends'
    local lattice vectors ``local`` (N, 2, 2). Judged ``chunk`` pairs at a
    time: at once, the temporaries of the 4 M pairs of a 16384^2 image held
    0.35 GB."""
    src, dst = pairs
    parts = [
        _unit_bonds(xy, local, src[lo : lo + chunk], dst[lo : lo + chunk])
        for lo in range(0, len(src), chunk)
    ]
    if not parts:
        return src, dst, np.zeros(0, np.int8), np.zeros(0)
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))


def _unit_bonds(xy, local, src, dst):
    frac = _fractional(0.5 * (local[src] + local[dst]), xy[dst] - xy[src])
    step = np.round(frac).astype(int)
    misfit = np.hypot(*(frac - step).T)
    unit = (np.abs(step).sum(1) == 1) & (misfit < TOLERANCE)
    # STEPS: +a, -a, +b, -b
    which = np.where(
        step[:, 0] != 0, (step[:, 0] < 0).astype(int), 2 + (step[:, 1] < 0).astype(int)
    )
    return src[unit], dst[unit], which[unit].astype(np.int8), misfit[unit]


def _fractional(basis: np.ndarray, d: np.ndarray) -> np.ndarray:
    """(f_a, f_b) with d = f_a a + f_b b, for rows of bases (B, 2, 2) [a, b]
    and vectors d (B, 2): the 2 x 2 inverse written out."""
    ax, ay, bx, by = basis[:, 0, 0], basis[:, 0, 1], basis[:, 1, 0], basis[:, 1, 1]
    det = ax * by - ay * bx
    det = np.where(det == 0, 1e-12, det)
    return np.stack(
        [(by * d[:, 0] - bx * d[:, 1]) / det, (ax * d[:, 1] - ay * d[:, 0]) / det], 1
    )


def _local_vectors(xy, src, dst, which, n, fallback):
    """Per column: the mean of its bonds along a and along b (sign folded),
    ``fallback`` where it has none."""
    out = np.repeat(fallback[None], n, 0).astype(float)
    d = (xy[dst] - xy[src]) * np.where(which % 2 == 0, 1.0, -1.0)[:, None]
    for axis in (0, 1):
        sel = which // 2 == axis
        count = np.bincount(src[sel], minlength=n)
        has = count > 0
        for c in (0, 1):
            total = np.bincount(src[sel], weights=d[sel, c], minlength=n)
            out[has, axis, c] = total[has] / count[has]
    return out


def index_sublattice(xy: np.ndarray, vectors: np.ndarray, passes: int = 1):
    """(i, j) of every column of one sublattice (N, 2) int, with its local
    lattice vectors (N, 2, 2).

    Bonds are one-step neighbours against each column's local vectors
    (re-measured from its own bonds ``passes`` times, starting from
    ``vectors``). The minimum spanning tree of the bonds by misfit carries
    (i, j) from the seed (the column nearest the middle) over each connected
    patch; a patch the bonds do not reach is placed by its position in the
    seed's lattice. Sites start at 0: the smallest i and j are 0.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import (
        breadth_first_order,
        connected_components,
        minimum_spanning_tree,
    )

    xy = np.asarray(xy, float)
    n = len(xy)
    vectors = np.asarray(vectors, float)
    if n == 0:
        return np.zeros((0, 2), int), np.zeros((0, 2, 2))
    local = np.repeat(vectors[None], n, 0)
    src = dst = which = misfit = np.zeros(0, int)
    if n > 1:
        pairs = _neighbour_pairs(xy)
        for _ in range(passes + 1):
            judged = local
            src, dst, which, misfit = _bonds(xy, judged, pairs)
            local = _local_vectors(xy, src, dst, which, n, vectors)
        local = judged
    graph = coo_matrix((misfit + 1e-6, (src, dst)), shape=(n, n)).tocsr()
    tree = minimum_spanning_tree(graph.maximum(graph.T))
    tree = (tree + tree.T).tocsr()
    n_patches, patch = connected_components(tree, directed=False)
    ij = np.zeros((n, 2), int)
    centre = xy.mean(0)
    origin = None
    for p in np.argsort(-np.bincount(patch)):
        members = np.flatnonzero(patch == p)
        root = members[np.argmin(np.hypot(*(xy[members] - centre).T))]
        order, pred = breadth_first_order(tree, root, directed=False)
        ij[order] = _sum_to_root(order, pred, root, xy, local)
        if origin is None:
            origin = xy[root]
        else:  # an unconnected patch: its root placed in the seed's lattice
            frac = np.linalg.solve(vectors.T, xy[root] - origin)
            ij[order] += np.round(frac).astype(int)
    return ij - ij.min(0), local


def _sum_to_root(order, pred, root, xy, local) -> np.ndarray:
    """(i, j) of the nodes ``order`` of a tree relative to ``root``: the sum
    of the steps on the path from the root (each tree bond's step, read off
    its two ends as :func:`_bonds` judged it), by pointer doubling."""
    n = len(pred)
    parent = np.where(pred >= 0, pred, np.arange(n))
    parent[root] = root
    kids = order[1:]
    step = np.zeros((n, 2), int)
    if len(kids):
        frac = _fractional(
            0.5 * (local[kids] + local[parent[kids]]), xy[kids] - xy[parent[kids]]
        )
        step[kids] = np.round(frac).astype(int)
    for _ in range(int(np.ceil(np.log2(max(n, 2)))) + 1):
        step = step + step[parent]
        parent = parent[parent]
        step[root] = 0
    return step[order]


def index_columns(
    xy: np.ndarray,
    labels: np.ndarray,
    reference: int,
    vectors: np.ndarray | None = None,
):
    """(i, j) of all columns (N, 2) int (from 0) and the lattice
    vectors [a, b] (2, 2) of the ``reference`` class (the A columns), or
    (None, None) where its lattice can't be measured.

    The reference class is indexed by :func:`index_sublattice`; a column of
    any other class takes the site of the reference column at the origin of
    its cell: its offset from the nearest reference column, in that column's
    local lattice vectors, less the class's usual offset (the circular mean
    of the fractional offsets), rounded.
    """
    from scipy.spatial import cKDTree

    xy = np.asarray(xy, float)
    labels = np.asarray(labels)
    ref = np.flatnonzero(labels == reference)
    if vectors is None:
        vectors = lattice_vectors(xy[ref])
    if vectors is None:
        return None, None
    ij = np.full((len(xy), 2), -1, int)
    ij_ref, local = index_sublattice(xy[ref], vectors)
    ij[ref] = ij_ref
    tree = cKDTree(xy[ref])
    for k in np.unique(labels):
        if k == reference:
            continue
        own = np.flatnonzero(labels == k)
        _, near = tree.query(xy[own], workers=-1)
        frac = _fractional(local[near], xy[own] - xy[ref][near])
        angle = 2 * np.pi * frac
        s, c = np.sin(angle).mean(0), np.cos(angle).mean(0)
        usual = np.mod(np.arctan2(s, c) / (2 * np.pi), 1.0)
        # A class on two sub-sites along an axis (the O columns of [001] at
        # 0 and 1/2) has no usual offset there: a quarter splits them.
        usual = np.where(np.hypot(s, c) < 0.5, 0.25, usual)
        ij[own] = ij_ref[near] + np.floor(frac - usual + 0.5).astype(int)
    # A column whose cell origin lies off the image (at the left or top edge)
    # has a site below the first reference one: count from the smallest.
    return ij - ij.min(0), vectors


def inconsistent_bonds(xy: np.ndarray, ij: np.ndarray, vectors: np.ndarray) -> tuple:
    """(inconsistent, bonds): of the nearest-neighbour bonds that are one
    lattice step (against the local vectors, as :func:`index_sublattice`
    judges them), how many join sites that do not differ by that step."""
    xy = np.asarray(xy, float)
    ij = np.asarray(ij, int)
    n = len(xy)
    if n < 2:
        return 0, 0
    local = np.repeat(np.asarray(vectors, float)[None], n, 0)
    pairs = _neighbour_pairs(xy)
    for _ in range(3):
        src, dst, which, _ = _bonds(xy, local, pairs)
        local = _local_vectors(xy, src, dst, which, n, vectors)
    bad = (ij[dst] - ij[src] != STEPS[which]).any(1)
    return int(bad.sum()), len(src)
