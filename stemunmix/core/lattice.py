"""Class labels made consistent with the lattice (numpy and scipy only)."""

from __future__ import annotations

import numpy as np

from stemunmix.core import checks, engine
from stemunmix.core.peaks import find_peaks
from stemunmix.core.segmentation import central

LATTICES = (None, "checkerboard")
BOND = 1.2  # nearest unlike neighbours lie at 1, like ones at sqrt(2) A-B distances


def checkerboard(
    xy: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    ab_distance: float,
    pair: tuple[int, int],
) -> np.ndarray:
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
            order, parent = breadth_first_order(
                g, root, directed=False, return_predecessors=True
            )
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


# --- Naming the columns by the lattice, on the probability maps -------------
#
# A crystal repeats: the columns one lattice translation away are of the same
# class. Where the network hesitates between column classes (a layer where B is
# as bright as A, a noisy patch), the columns around it name it. Only the
# share between column classes moves; the background probability, and so
# where the columns are, is the network's own.

LOG_CLIP = 5.0  # no neighbour speaks louder than odds of e^5 (about 150:1)
_EPS = 1e-6


def translations(prob: np.ndarray, spacing: float, min_columns: int = 12):
    """The two shortest independent translations of the lattice of one class's
    columns (the maxima of its probability map ``prob``, (H, W)), as a (2, 2)
    array of [x, y] vectors in pixels; None where fewer than ``min_columns``
    columns or no two independent translations are found.

    Each column's vectors to its six nearest columns of the class (within 1.5
    ``spacing``, the expected column spacing in pixels) are folded into one
    half-plane; the most common vector (the one with most others within 0.15
    ``spacing``, refined to their median) is the first translation, the most
    common of those at least 30 degrees away from it the second. Both are
    rounded to 0.001 px.
    """
    from scipy.spatial import cKDTree

    if not (np.isfinite(spacing) and spacing > 2):
        raise ValueError(f"spacing must be a column spacing > 2 pixels, got {spacing}")
    xy = find_peaks(prob, max(1.0, 0.35 * spacing))
    if len(xy) < min_columns:
        return None
    _, idx = cKDTree(xy).query(xy, k=min(7, len(xy)))
    vec = (xy[idx[:, 1:]] - xy[:, None]).reshape(-1, 2)
    vec = vec[np.hypot(*vec.T) < 1.5 * spacing]
    flip = (vec[:, 1] < 0) | ((vec[:, 1] == 0) & (vec[:, 0] < 0))
    vec = np.where(flip[:, None], -vec, vec)
    radius = 0.15 * spacing

    def most_common(v):
        if len(v) < min_columns:
            return None
        count = cKDTree(v).query_ball_point(v, radius, return_length=True)
        centre = v[np.argmax(count)]
        return np.median(v[np.hypot(*(v - centre).T) < radius], 0)

    first = most_common(vec)
    if first is None:
        return None
    cross = vec[:, 0] * first[1] - vec[:, 1] * first[0]
    sine = np.abs(cross) / (np.hypot(*first) * np.hypot(*vec.T))
    second = most_common(vec[sine > 0.5])
    if second is None:
        return None
    # Rounded to 1e-3 px: maps that differ in their last bits (the network on
    # another number of threads, on a dask worker) give the same translations.
    return np.round(np.array([first, second]), 3)


def on_lattice(xy: np.ndarray, vectors: np.ndarray, tolerance: float = 0.2):
    """Fraction of the columns ``xy`` (N, 2) with another of them one lattice
    translation (+-a or +-b of ``vectors``, (2, 2) [x, y] pixels) away, within
    ``tolerance`` of the shorter translation: near 1 for the columns of a
    crystal (an edge column has a neighbour inwards), low for points that only
    look like columns. NaN for fewer than two columns."""
    from scipy.spatial import cKDTree

    xy = np.asarray(xy, float).reshape(-1, 2)
    if len(xy) < 2:
        return float("nan")
    vectors = np.asarray(vectors, float)
    reach = tolerance * float(np.min(np.hypot(*vectors.T)))
    tree = cKDTree(xy)
    found = np.zeros(len(xy), bool)
    for v in (vectors[0], -vectors[0], vectors[1], -vectors[1]):
        dist, _ = tree.query(xy + v, distance_upper_bound=reach)
        found |= np.isfinite(dist)
    return float(found.mean())


def _shifts(vectors: np.ndarray) -> np.ndarray:
    """The eight translations of the first shell: +-a, +-b, +-(a+b), +-(a-b)."""
    a, b = np.asarray(vectors, float)
    one = np.array([a, b, a + b, a - b])
    return np.concatenate([one, -one])


def lattice_halo(vectors: np.ndarray) -> int:
    """Pixels around a region that :func:`relabel` reads."""
    return int(np.ceil(np.abs(_shifts(vectors)).max())) + 1


def relabel(
    region: np.ndarray, vectors: np.ndarray, weight: float, background: int
) -> np.ndarray:
    """Class probabilities (C, H, W) with the column classes named with the
    help of the lattice.

    For each column class k but the last (r), the log-odds log(p_k / p_r) at
    a pixel gain ``weight`` times the sum, over the eight translations of the
    first shell (:func:`_shifts` of ``vectors``, bilinear), of the log-odds
    there, clipped to +-``LOG_CLIP`` and weighted by the probability that a
    column is there (1 - background). The column probability at the pixel is
    then shared out by the new odds; the background map is unchanged. Outside
    ``region`` counts as no evidence, so a region with a halo of
    :func:`lattice_halo` pixels gives its inner part exactly as the whole
    frame would.
    """
    p = np.asarray(region, np.float32)
    n, h, w = p.shape
    column = [k for k in range(n) if k != background]
    ref = column[-1]
    log_ref = np.log(p[ref] + _EPS)
    odds = np.stack([np.log(p[k] + _EPS) - log_ref for k in column[:-1]])
    col = 1 - p[background]
    m = lattice_halo(vectors)
    evidence = np.zeros((len(odds), h + 2 * m, w + 2 * m), np.float32)
    evidence[:, m : m + h, m : m + w] = np.clip(odds, -LOG_CLIP, LOG_CLIP) * col
    total = odds.copy()
    for dx, dy in _shifts(vectors):
        ix, iy = int(np.floor(dx)), int(np.floor(dy))
        fx, fy = dx - ix, dy - iy
        for oy, ox, c in (
            (0, 0, (1 - fy) * (1 - fx)),
            (0, 1, (1 - fy) * fx),
            (1, 0, fy * (1 - fx)),
            (1, 1, fy * fx),
        ):
            if c == 0:
                continue
            y0, x0 = m + iy + oy, m + ix + ox
            total += np.float32(weight * c) * evidence[:, y0 : y0 + h, x0 : x0 + w]
    # Share out the column probability by the odds (the last column class at 0).
    top = np.maximum(total.max(0), 0)
    e = np.exp(total - top)
    e_ref = np.exp(-top)
    norm = col / (e.sum(0) + e_ref)
    out = np.empty_like(p)
    out[background] = p[background]
    for i, k in enumerate(column[:-1]):
        out[k] = e[i] * norm
    out[ref] = e_ref * norm
    return out


def name_by_lattice(maps, names, spacings, weight: float, block: int):
    """Maps (nav..., C, H, W), numpy or dask, with the column classes named
    with the help of the lattice (:func:`relabel`), block by block with the
    lattice halo through the engine (numpy: in place, a band of blocks held
    aside); and the translations per frame, (nav..., 2, 2) [x, y] pixels, NaN
    where a frame shows too few columns of the first class to measure them
    (a warning says so; that frame keeps the network's naming).

    ``spacings``: the column spacing (pixels) per frame index.
    """

    background = names.index("background")
    nav_shape, shape = maps.shape[:-3], maps.shape[-2:]
    first = next(k for k in range(len(names)) if k != background)
    frames = list(np.ndindex(nav_shape))
    crops = [central(shape, max(512, int(20 * spacings[f]))) for f in frames]
    pieces = [maps[f + (first,) + crop] for f, crop in zip(frames, crops, strict=True)]
    if engine.is_lazy(maps):
        import dask

        pieces = dask.compute(*pieces)
    vectors = np.full(nav_shape + (2, 2), np.nan)
    for f, piece in zip(frames, pieces, strict=True):
        found = translations(np.asarray(piece), spacings[f])
        if found is None:
            checks.warn(
                f"segment: frame {f} shows too few {names[first]} columns to "
                "measure its lattice; its columns are named by the network alone",
            )
        else:
            vectors[f] = found
    ok = np.isfinite(vectors).all(axis=(-2, -1))
    if not ok.any():
        return maps, vectors
    halo = max(lattice_halo(vectors[f]) for f in frames if ok[f])

    def run(region, frame, box, origin):
        y0, y1, x0, x1 = box
        if ok[frame]:
            region = relabel(region, vectors[frame], weight, background)
        return region[
            :, y0 - origin[0] : y1 - origin[0], x0 - origin[1] : x1 - origin[1]
        ]

    step = engine.Step(run, halo=halo)
    out = maps if not engine.is_lazy(maps) else None
    maps = engine.run_image(
        step, maps, (len(names),), max(block, 2 * halo), len(nav_shape), out=out
    )
    return maps, vectors


def relabel_frame(
    maps: np.ndarray,
    vectors: np.ndarray,
    weight: float,
    background: int,
    rows: int = 256,
) -> None:
    """:func:`relabel` of a whole frame's maps (C, H, W), in place, in blocks
    of ``rows`` pixels (with their halo) through the engine, so memory stays
    one band of blocks."""

    def run(region, frame, box, origin):
        y0, y1, x0, x1 = box
        out = relabel(region, vectors, weight, background)
        return out[:, y0 - origin[0] : y1 - origin[0], x0 - origin[1] : x1 - origin[1]]

    halo = lattice_halo(vectors)
    engine.run_image(
        engine.Step(run, halo=halo),
        maps,
        (maps.shape[0],),
        max(rows, halo),
        0,
        out=maps,
    )
