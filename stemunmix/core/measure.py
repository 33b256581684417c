"""Measurements per unit cell on the lattice grid (numpy only).

Every quantity is an array on the lattice grid ``(j, i)`` (row j, column i,
the sites of :mod:`stemunmix.core.indexing`), NaN where the cell is not
complete. The cell with origin (i, j) has the reference (A) columns at
(i, j), (i + 1, j), (i, j + 1) and (i + 1, j + 1) as its corners. Positions are
[x, y] pixels.
"""

from __future__ import annotations

import numpy as np

# A lattice grid larger than this many cells per site present (and than
# MIN_GRID_CELLS) holds a site far from the others: refused, not allocated.
GRID_CELLS_PER_SITE = 16
MIN_GRID_CELLS = 10**6


def grid_shape(*ij) -> tuple[int, int]:
    """(nj, ni): the lattice grid that holds every indexed site of the given
    (N, 2) ``ij`` arrays (-1: unindexed, left out); (0, 0) without one.

    A grid far larger than the sites present (more than
    :data:`GRID_CELLS_PER_SITE` cells per site, and :data:`MIN_GRID_CELLS`)
    is refused with a ValueError naming the site farthest from the others
    (its index in the ``ij`` given, concatenated): one outlier would
    otherwise make maps of gigabytes.
    """
    both = np.concatenate([np.asarray(v, int).reshape(-1, 2) for v in ij])
    ok = (both >= 0).all(1)
    if not ok.any():
        return (0, 0)
    shape = tuple(int(v) for v in both[ok].max(0)[::-1] + 1)
    cells = float(shape[0]) * float(shape[1])
    if cells > max(MIN_GRID_CELLS, GRID_CELLS_PER_SITE * ok.sum()):
        centre = np.median(both[ok], 0)
        far = np.abs(both - centre).max(1)
        k = int(np.argmax(np.where(ok, far, -1)))
        raise ValueError(
            f"ij: the lattice sites span a grid of {shape[1]} x {shape[0]} cells "
            f"for {int(ok.sum())} sites; site {k} at ij = {both[k].tolist()} lies "
            f"far from the others (median ij {centre.round().astype(int).tolist()}): "
            "leave that column out (columns[mask]) or set its ij to -1 (unindexed)"
        )
    return shape


def site_grid(ij: np.ndarray, values: np.ndarray, shape=None) -> np.ndarray:
    """Per-site ``values`` (N, ...) on a (nj, ni, ...) grid, NaN where no site;
    ``ij`` (N, 2) with -1 for unindexed columns (left out)."""
    ij = np.asarray(ij, int)
    values = np.asarray(values, float)
    ok = (ij >= 0).all(1)
    if shape is None:
        shape = grid_shape(ij)
    grid = np.full(tuple(shape) + values.shape[1:], np.nan)
    grid[ij[ok, 1], ij[ok, 0]] = values[ok]
    return grid


def corners(xy_a: np.ndarray, ij_a: np.ndarray, shape) -> np.ndarray:
    """(nj, ni, 4, ...): the A positions (or any per-column values (N, ...))
    at the four corners of every cell (origin, +i, +j, +i+j), NaN where
    missing."""
    grid = site_grid(ij_a, xy_a, shape)
    out = np.full(tuple(shape) + (4,) + grid.shape[2:], np.nan)
    out[:, :, 0] = grid
    out[:, :-1, 1] = grid[:, 1:]
    out[:-1, :, 2] = grid[1:]
    out[:-1, :-1, 3] = grid[1:, 1:]
    return out


def site_fraction(xy_a, ij_a, xy_b, ij_b, shape) -> np.ndarray:
    """The high-symmetry fractional position (f_a, f_b) of the B columns in
    their cell: the median offset from the cell origin in the cell's own
    vectors, rounded to 0 or 1/2 (a symmetry position, so a polar
    displacement of the whole image is not taken for the site)."""
    c = corners(xy_a, ij_a, shape)
    ok = (ij_b >= 0).all(1)
    cell = c[ij_b[ok, 1], ij_b[ok, 0]]
    a = cell[:, 1] - cell[:, 0]
    b = cell[:, 2] - cell[:, 0]
    d = xy_b[ok] - cell[:, 0]
    det = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    frac = np.stack(
        [
            (b[:, 1] * d[:, 0] - b[:, 0] * d[:, 1]) / det,
            (a[:, 0] * d[:, 1] - a[:, 1] * d[:, 0]) / det,
        ],
        1,
    )
    frac = frac[np.isfinite(frac).all(1)]
    if len(frac) == 0:
        return np.array([0.5, 0.5])
    return np.round(2 * np.median(frac, 0)) / 2


def as_covariance(values) -> np.ndarray:
    """(N, 2, 2) covariances from (N, 2) sigmas (independent x and y) or
    from (N, 2, 2) covariances (returned as floats)."""
    v = np.asarray(values, float)
    if v.ndim == 3:
        return v
    cov = np.zeros(v.shape + (2,))
    cov[..., 0, 0], cov[..., 1, 1] = v[..., 0] ** 2, v[..., 1] ** 2
    return cov


def line_cross(y1, shared1, y2, shared2) -> np.ndarray:
    """(..., 2, 2) covariance between the positions of two columns of one
    frame from the scan lines they share.

    ``shared`` (..., 3) per column: [w, sx, sy], the width (px) of its
    position's information across the lines (the fitted Gaussian width of an
    unweighted fit; :func:`stemunmix.core.uncertainty.line_width`) and the
    standard deviations of its line-shared scan term along x and y
    (:attr:`stemunmix.columns.Columns.line_covariance`). A fitted position
    averages the shifts of the lines under the column, each line weighted by
    its share of the position's information (a Gaussian of std w / sqrt(2)
    across the lines), so two columns whose centres are dy apart
    share the fraction rho = sqrt(2 w1 w2 / (w1^2 + w2^2))
    exp(-dy^2 / (w1^2 + w2^2)) of their line noise (1 for one column; the
    same rho is used on both axes). 0 where a width or term is unknown."""
    s1, s2 = np.asarray(shared1, float), np.asarray(shared2, float)
    w1, w2 = s1[..., 0], s2[..., 0]
    q = w1**2 + w2**2
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        dy = np.asarray(y1, float) - np.asarray(y2, float)
        rho = np.sqrt(2 * w1 * w2 / q) * np.exp(-(dy**2) / q)
    rho = np.where(np.isfinite(rho), rho, 0.0)
    out = np.zeros(rho.shape + (2, 2))
    for a in range(2):
        out[..., a, a] = np.nan_to_num(rho * s1[..., 1 + a] * s2[..., 1 + a])
    return out


def _pairs_cross(y, shared, coef, axes=None) -> np.ndarray:
    """(2, 2): sum over i != j of c_i c_j (:func:`line_cross` of columns i,
    j) for a linear combination sum_i c_i x_i of the columns with
    positions' y ``y`` (M,), ``shared`` (M, 3) and coefficients ``coef``
    (M,) (scalars on both axes, or (M, 2) per axis): the part of its
    variance the independent columns' covariances miss. Only pairs closer
    than 5 widths in y are summed (beyond, rho < exp(-12))."""
    from scipy.spatial import cKDTree

    y, shared = np.asarray(y, float), np.asarray(shared, float)
    coef = np.asarray(coef, float)
    keep = np.isfinite(y) & np.isfinite(shared).all(1) & (shared[:, 1:] > 0).any(1)
    if coef.ndim == 1:
        keep &= coef != 0
        coef = np.repeat(coef[:, None], 2, 1)
    else:
        keep &= (coef != 0).any(1)
    y, shared, coef = y[keep], shared[keep], coef[keep]
    if len(y) < 2:
        return np.zeros((2, 2))
    reach = 5 * float(np.max(shared[:, 0]))
    pairs = cKDTree(y[:, None]).query_pairs(reach, output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros((2, 2))
    i, j = pairs[:, 0], pairs[:, 1]
    x = line_cross(y[i], shared[i], y[j], shared[j])  # (P, 2, 2), diagonal
    out = np.zeros((2, 2))
    for a in range(2):
        out[a, a] = 2 * np.sum(coef[i, a] * coef[j, a] * x[:, a, a])
    return out


def _site_weights(site):
    fa, fb = site
    return np.array([(1 - fa) * (1 - fb), fa * (1 - fb), (1 - fa) * fb, fa * fb])


def polarization_cells(
    xy_a,
    sigma_a,
    ij_a,
    xy_b,
    sigma_b,
    ij_b,
    shape=None,
    site=None,
    return_covariance: bool = False,
    shared_a=None,
    shared_b=None,
):
    """Per cell: the B column's displacement from where the symmetric cell
    puts it, and its standard deviation.

    The symmetric position is the bilinear mix of the cell's four A corners at
    the B site's fractional position ``site`` (default :func:`site_fraction`;
    (1/2, 1/2), the cell centre, in an [001] perovskite). Only complete cells
    (a B column and all four corners) get a value; its sigma is NaN where a
    column's uncertainty is unknown. ``sigma_a``, ``sigma_b``:
    (N, 2) standard deviations or (N, 2, 2) covariances of the columns; the
    displacement's covariance is the B column's plus the weighted corners'
    (weights squared), plus, with ``shared_a`` and ``shared_b`` ((N, 3)
    per column, :func:`line_cross`), the covariances between the five
    columns through the scan lines they share (the two A corners on one
    row of the cell share their lines; the errors are otherwise
    independent).

    Returns (displacement (nj, ni, 2), sigma (nj, ni, 2)), pixels [x, y], and
    with ``return_covariance`` the covariance (nj, ni, 2, 2) third.
    """
    ij_a, ij_b = np.asarray(ij_a, int), np.asarray(ij_b, int)
    if shape is None:
        shape = grid_shape(ij_a, ij_b)
    if site is None:
        site = site_fraction(xy_a, ij_a, xy_b, ij_b, shape)
    w = _site_weights(site)
    pos = corners(xy_a, ij_a, shape)
    cov_a = corners(as_covariance(sigma_a).reshape(-1, 4), ij_a, shape)
    expected = np.einsum("k,jikc->jic", w, pos)
    expected_cov = np.einsum("k,jikc->jic", w**2, np.nan_to_num(cov_a))
    # Corners of weight zero may be missing: the cell is then still complete.
    used = w > 0
    complete = np.isfinite(pos[:, :, used]).all((2, 3))
    # Positions make the displacement; a corner of unknown uncertainty (not
    # given, or a column not detected on the raw image) leaves its sigma NaN.
    known = np.isfinite(cov_a[:, :, used]).all((2, 3))
    expected_cov = np.where(known[..., None], expected_cov, np.nan)
    b = site_grid(ij_b, xy_b, shape)
    b_cov = site_grid(ij_b, as_covariance(sigma_b).reshape(-1, 4), shape)
    disp = b - np.where(complete[..., None], expected, np.nan)
    cov = (b_cov + expected_cov).reshape(tuple(shape) + (2, 2))
    if shared_a is not None and shared_b is not None:
        cov = cov + _cell_cross(pos, b, w, shared_a, ij_a, shared_b, ij_b, shape)
    cov = np.where(np.isfinite(disp).all(-1)[..., None, None], cov, np.nan)
    sigma = np.sqrt(np.diagonal(cov, 0, -2, -1))
    sigma = np.where(np.isfinite(disp), sigma, np.nan)
    if return_covariance:
        return disp, sigma, cov
    return disp, sigma


def _cell_cross(pos, b, w, shared_a, ij_a, shared_b, ij_b, shape) -> np.ndarray:
    """(nj, ni, 2, 2): what the scan lines the columns of each cell share
    add to its displacement's covariance (B less the weighted corners):
    -2 w_k X(B, A_k) + 2 w_k w_l X(A_k, A_l), X of :func:`line_cross`."""
    sa = corners(np.asarray(shared_a, float), ij_a, shape)  # (nj, ni, 4, 3)
    sb = site_grid(ij_b, np.asarray(shared_b, float), shape)
    out = np.zeros(tuple(shape) + (2, 2))
    used = np.flatnonzero(w > 0)
    for n, k in enumerate(used):
        out -= 2 * w[k] * line_cross(b[..., 1], sb, pos[..., k, 1], sa[..., k, :])
        for m in used[n + 1 :]:
            out += (
                2
                * w[k]
                * w[m]
                * line_cross(
                    pos[..., k, 1], sa[..., k, :], pos[..., m, 1], sa[..., m, :]
                )
            )
    return out


def significance(value: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """|value| in units of its uncertainty: sqrt(v^T C^-1 v) for vectors
    ``value`` (..., 2) with covariances ``cov`` (..., 2, 2) (the Mahalanobis
    length; without a displacement it exceeds 3 with probability
    exp(-4.5) = 1.1 %); NaN where either is."""
    v = np.asarray(value, float)
    c = np.asarray(cov, float)
    det = c[..., 0, 0] * c[..., 1, 1] - c[..., 0, 1] * c[..., 1, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        q = (
            c[..., 1, 1] * v[..., 0] ** 2
            - 2 * c[..., 0, 1] * v[..., 0] * v[..., 1]
            + c[..., 0, 0] * v[..., 1] ** 2
        ) / det
        return np.where(det > 0, np.sqrt(np.clip(q, 0, None)), np.nan)


def region_polarization(
    xy_a,
    cov_a,
    ij_a,
    xy_b,
    cov_b,
    ij_b,
    region,
    reference=None,
    shape=None,
    site=None,
    shared_a=None,
    shared_b=None,
) -> dict:
    """The mean displacement of the complete cells in ``region`` (bool
    (nj, ni)), less that of ``reference`` (a second mask) if given, with
    its covariance and significance.

    The mean is a linear combination of the columns' positions (a corner
    shared by neighbouring cells counts once, with its summed weight), so its
    covariance is sum c_k^2 C_k for independent columns, plus with
    ``shared_a`` and ``shared_b`` (:func:`line_cross`) the covariances of
    the columns that share scan lines: a row of cells shares its line
    noise, which averaging along the row does not beat.

    Returns {"mean": (2,), "covariance": (2, 2), "sigma": (2,),
    "significance": sqrt(m^T C^-1 m), "p_value": exp(-significance^2 / 2)
    (no displacement: chi-square with 2 degrees of freedom), "cells": n}.
    """
    ij_a, ij_b = np.asarray(ij_a, int), np.asarray(ij_b, int)
    if shape is None:
        shape = grid_shape(ij_a, ij_b)
    if site is None:
        site = site_fraction(xy_a, ij_a, xy_b, ij_b, shape)
    disp, _ = polarization_cells(xy_a, cov_a, ij_a, xy_b, cov_b, ij_b, shape, site)
    complete = np.isfinite(disp).all(-1)
    w = _site_weights(site)
    idx_a = corners(np.arange(len(ij_a), dtype=float)[:, None], ij_a, shape)[..., 0]
    idx_b = site_grid(ij_b, np.arange(len(ij_b), dtype=float), shape)
    coef_a, coef_b = np.zeros(len(ij_a)), np.zeros(len(ij_b))
    counts = []
    for mask, sign in ((region, 1.0), (reference, -1.0)):
        if mask is None:
            continue
        cells = complete & np.asarray(mask, bool)
        n = int(cells.sum())
        counts.append(n)
        if n == 0:
            raise ValueError(
                "region holds no complete cell (a B column and its corners): "
                "choose cells of the lattice grid (j, i) with values"
            )
        np.add.at(coef_b, idx_b[cells].astype(int), sign / n)
        for c in np.flatnonzero(w > 0):
            np.add.at(coef_a, idx_a[cells][:, c].astype(int), -sign * w[c] / n)
    mean = coef_b @ np.asarray(xy_b, float) + coef_a @ np.asarray(xy_a, float)
    # only the columns the mean uses: another column's unknown (NaN)
    # covariance times a zero weight must not make the sum NaN
    ub, ua = coef_b != 0, coef_a != 0
    cov = np.einsum("k,kij->ij", coef_b[ub] ** 2, as_covariance(cov_b)[ub]) + np.einsum(
        "k,kij->ij", coef_a[ua] ** 2, as_covariance(cov_a)[ua]
    )
    if shared_a is not None and shared_b is not None:
        cov = cov + _pairs_cross(
            np.concatenate(
                [np.asarray(xy_b, float)[:, 1], np.asarray(xy_a, float)[:, 1]]
            ),
            np.concatenate([np.asarray(shared_b, float), np.asarray(shared_a, float)]),
            np.concatenate([coef_b, coef_a]),
        )
    sig = float(significance(mean, cov))
    return {
        "mean": mean,
        "covariance": cov,
        "sigma": np.sqrt(np.diag(cov)),
        "significance": sig,
        "p_value": float(np.exp(-0.5 * sig**2)),
        "cells": counts[0],
    }


def cell_vectors(xy_a, ij_a, shape) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) per cell (nj, ni, 2): the mean of each cell's two edges along
    i and along j; NaN where a corner is missing."""
    c = corners(xy_a, ij_a, shape)
    a = 0.5 * ((c[:, :, 1] - c[:, :, 0]) + (c[:, :, 3] - c[:, :, 2]))
    b = 0.5 * ((c[:, :, 2] - c[:, :, 0]) + (c[:, :, 3] - c[:, :, 1]))
    return a, b


def strain_cells(
    xy_a, ij_a, shape=None, reference=None, sigma_a=None, shared_a=None
) -> dict:
    """Strain of the A lattice per cell against a reference cell.

    The deformation gradient F of a cell maps the reference vectors onto the
    cell's own (F [a0 b0] = [a b]); the small-strain tensor is
    (F + F^T) / 2 - 1 and the rotation (F_yx - F_xy) / 2 (radians, positive
    from +x towards +y, which is clockwise on screen). ``reference``: a boolean
    (nj, ni) mask of cells whose median vectors are the reference, or None for
    the median of all cells. Returns {"exx", "eyy", "exy", "rotation"}
    (nj, ni), image axes, NaN where a cell is incomplete.

    With ``sigma_a`` ((N, 2) sigmas or (N, 2, 2) covariances of the A
    columns) also ``sigma_exx``, ``sigma_eyy``, ``sigma_exy`` and
    ``sigma_rotation``: each quantity is linear in the four corners'
    positions, so its variance is the corners' covariances through those
    weights (the columns' errors independent; the reference, a median over
    many cells, taken as exact). NaN where a corner's uncertainty is unknown.
    With ``shared_a`` ((N, 3), :func:`line_cross`) the corners' covariances
    through the scan lines they share are added: the line noise of two
    corners on one row cancels in the edge between them.
    """
    ij_a = np.asarray(ij_a, int)
    if shape is None:
        shape = grid_shape(ij_a)
    a, b = cell_vectors(xy_a, ij_a, shape)
    good = np.isfinite(a).all(-1) & np.isfinite(b).all(-1)
    sel = good if reference is None else good & np.asarray(reference, bool)
    if not sel.any():
        raise ValueError(
            "reference holds no complete cell: choose a region of the lattice "
            "with all four corners of some cells found"
        )
    ref = np.stack([np.median(a[sel], 0), np.median(b[sel], 0)], 1)  # columns a0, b0
    area = abs(np.linalg.det(ref))
    if not area > 1e-6 * max(np.sum(ref**2), 1e-300):
        raise ValueError(
            f"the reference cells have no area (median cell vectors a = "
            f"{ref[:, 0].round(3).tolist()}, b = {ref[:, 1].round(3).tolist()} px): "
            "the columns' lattice indices ij do not match their positions; give "
            "ij that index the lattice (as find_columns does) or a reference of "
            "real cells"
        )
    g = np.linalg.inv(ref)
    cells = np.stack([a, b], -1)  # (nj, ni, 2, 2), columns a, b
    f = cells @ g
    eye = np.eye(2)
    eps = 0.5 * (f + np.swapaxes(f, -1, -2)) - eye
    out = {
        "exx": eps[..., 0, 0],
        "eyy": eps[..., 1, 1],
        "exy": eps[..., 0, 1],
        "rotation": 0.5 * (f[..., 1, 0] - f[..., 0, 1]),
    }
    if sigma_a is not None:
        cov = corners(as_covariance(sigma_a).reshape(-1, 4), ij_a, shape)
        cov = cov.reshape(tuple(shape) + (4, 2, 2))
        cross = _corner_cross(xy_a, ij_a, shape, shared_a)
        for name, u in _strain_weights(g).items():  # u (4 corners, 2)
            var = np.einsum("kp,jikpq,kq->ji", u, cov, u)
            for (k, m), x in cross.items():  # x (nj, ni, 2): diagonal
                var = var + 2 * np.einsum("p,jip,p->ji", u[k], x, u[m])
            out[f"sigma_{name}"] = np.where(good, np.sqrt(var), np.nan)
    return out


def _corner_cross(xy_a, ij_a, shape, shared_a) -> dict:
    """{(k, m): (nj, ni, 2)} for corner pairs k < m of every cell: the
    diagonal of their :func:`line_cross` covariance (zero where unknown);
    empty without ``shared_a``."""
    if shared_a is None:
        return {}
    pos = corners(np.asarray(xy_a, float), ij_a, shape)
    sa = corners(np.asarray(shared_a, float), ij_a, shape)
    out = {}
    for k in range(4):
        for m in range(k + 1, 4):
            x = line_cross(pos[..., k, 1], sa[..., k, :], pos[..., m, 1], sa[..., m, :])
            out[(k, m)] = np.diagonal(x, 0, -2, -1)
    return out


# How a cell's a and b vectors take its four corners (origin, +i, +j, +i+j).
_EDGE_A = np.array([-0.5, 0.5, -0.5, 0.5])
_EDGE_B = np.array([-0.5, -0.5, 0.5, 0.5])


def _strain_weights(g) -> dict:
    """Each strain quantity as sum_k u_k . corner_k: u (4, 2) per quantity,
    from F = [a b] g with g the inverse of the reference vectors."""
    gamma = _EDGE_A[:, None] * g[0][None] + _EDGE_B[:, None] * g[1][None]  # (4, 2)
    zero = np.zeros(4)
    return {
        "exx": np.stack([gamma[:, 0], zero], 1),
        "eyy": np.stack([zero, gamma[:, 1]], 1),
        "exy": 0.5 * np.stack([gamma[:, 1], gamma[:, 0]], 1),
        "rotation": 0.5 * np.stack([-gamma[:, 1], gamma[:, 0]], 1),
    }


def _along(n, cov):
    """n^T C n per cell: the variance along unit vectors ``n`` (..., 2)."""
    return np.einsum("...p,...pq,...q->...", n, cov, n)


def octahedral_cells(
    xy_b,
    sigma_b,
    ij_b,
    xy_o,
    sigma_o,
    shape=None,
    tolerance: float = 0.25,
    shared_b=None,
    shared_o=None,
) -> dict:
    """The pure-O columns on the B-B bonds of every cell.

    For each cell (i, j) and each of its two bonds from the B column (i, j),
    to (i + 1, j) (``"a"``) and to (i, j + 1) (``"b"``): the O column nearest
    the bond's midpoint, within ``tolerance`` x the bond length (else NaN: a
    bond through no pure-O column, such as the vertical one in [110]), its
    displacement from the midpoint [x, y] (pixels), and the octahedral tilt
    ``atan(2 d / L)`` in degrees, d the displacement across the bond (positive
    counter-clockwise from the bond as displayed, y down), L the bond length,
    with its standard deviation propagated from the columns' uncertainty:
    ``sigma_b``, ``sigma_o`` are (N, 2) standard deviations or (N, 2, 2)
    covariances; the variance of d is n^T C n of the O column plus a quarter
    of each B column's (n the bond's unit normal), and with ``shared_b``
    and ``shared_o`` ((N, 3), :func:`line_cross`) the covariances of the
    three columns through the scan lines they share.

    Returns {"a": {...}, "b": {...}}, each with ``displacement`` (nj, ni, 2),
    ``tilt`` and ``sigma_tilt`` (nj, ni) and ``midpoint`` (nj, ni, 2).
    """
    from scipy.spatial import cKDTree

    b_grid = site_grid(ij_b, xy_b, shape)
    shape = b_grid.shape[:2]
    s_grid = site_grid(ij_b, as_covariance(sigma_b).reshape(-1, 4), shape)
    s_grid = s_grid.reshape(tuple(shape) + (2, 2))
    xy_o = np.asarray(xy_o, float)
    cov_o = as_covariance(sigma_o).reshape(-1, 2, 2)
    tree = cKDTree(xy_o) if len(xy_o) else None
    lines = shared_b is not None and shared_o is not None
    if lines:
        sh_b = site_grid(ij_b, np.asarray(shared_b, float), shape)
        sh_o_all = np.asarray(shared_o, float).reshape(-1, 3)
    out = {}
    for name, (di, dj) in (("a", (1, 0)), ("b", (0, 1))):
        start = b_grid
        end = np.full_like(b_grid, np.nan)
        s_end = np.full_like(s_grid, np.nan)
        end[: shape[0] - dj, : shape[1] - di] = b_grid[dj:, di:]
        s_end[: shape[0] - dj, : shape[1] - di] = s_grid[dj:, di:]
        sh_o = np.full(tuple(shape) + (3,), np.nan)
        if lines:
            sh_end = np.full_like(sh_b, np.nan)
            sh_end[: shape[0] - dj, : shape[1] - di] = sh_b[dj:, di:]
        bond = end - start
        length = np.hypot(bond[..., 0], bond[..., 1])
        mid = 0.5 * (start + end)
        disp = np.full_like(mid, np.nan)
        s_o = np.full(tuple(shape) + (2, 2), np.nan)
        ok = np.isfinite(mid).all(-1)
        if tree is not None and ok.any():
            dist, near = tree.query(mid[ok])
            hit = dist <= tolerance * length[ok]
            rows = np.flatnonzero(ok.ravel())[hit]
            disp.reshape(-1, 2)[rows] = xy_o[near[hit]] - mid[ok][hit]
            s_o.reshape(-1, 2, 2)[rows] = cov_o[near[hit]]
            if lines:
                sh_o.reshape(-1, 3)[rows] = sh_o_all[near[hit]]
        with np.errstate(invalid="ignore", divide="ignore"):
            normal = np.stack([bond[..., 1], -bond[..., 0]], -1) / length[..., None]
            across = (disp * normal).sum(-1)
            tilt = np.degrees(np.arctan2(2 * across, length))

            # var of d: the O column's, plus a quarter of each B column's
            var = _along(normal, s_o) + 0.25 * (
                _along(normal, s_grid) + _along(normal, s_end)
            )
            if lines:  # d = n . (O - (B1 + B2) / 2)
                y_o = mid[..., 1] + disp[..., 1]
                var = var + _along(
                    normal,
                    0.5 * line_cross(start[..., 1], sh_b, end[..., 1], sh_end)
                    - line_cross(y_o, sh_o, start[..., 1], sh_b)
                    - line_cross(y_o, sh_o, end[..., 1], sh_end),
                )
            slope = 2 * length / (length**2 + 4 * across**2)
            sigma_tilt = np.degrees(slope * np.sqrt(var))
        out[name] = {
            "displacement": disp,
            "tilt": tilt,
            "sigma_tilt": sigma_tilt,
            "midpoint": mid,
        }
    return out
