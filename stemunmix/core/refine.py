"""Batched sub-pixel refinement of column positions on the raw image (numpy).

Every column is a 2D Gaussian (height, centre, width) on a local constant
background. All columns are fitted at once: in each round, every column's patch
has the current model of its neighbours subtracted (so bright A tails do not pull
B), then one damped Gauss-Newton step updates all columns together, with the
5 x 5 normal equations of all columns solved as one batch. Positions are [x, y]
pixels.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

N_PARAMS = 5  # height, x, y, sigma, background


def _threads() -> int:
    """Threads for the fit: the cores this process may use, or one inside a
    worker thread (a dask worker or the threaded scheduler already runs one
    task per core; more would oversubscribe them)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _neighbours(xy: np.ndarray, reach: float, max_neighbours: int = 24):
    """(N, K) indices of the columns within ``reach`` of each (padded with -1)."""
    from scipy.spatial import cKDTree

    k = min(max_neighbours + 1, len(xy))
    dist, idx = cKDTree(xy).query(xy, k=k, distance_upper_bound=reach)
    # k = 1 (a single column) gives 1D arrays: keep the (N, K) layout.
    dist, idx = dist.reshape(len(xy), -1), idx.reshape(len(xy), -1)
    idx = np.where(np.isfinite(dist), idx, -1)[:, 1:]
    if idx.shape[1] == 0:  # a lone column: one empty slot
        idx = np.full((len(xy), 1), -1)
    # Keep only as many slots as the most crowded column needs.
    used = int((idx >= 0).sum(1).max()) if idx.size else 0
    return idx[:, : max(used, 1)]


def _gauss(xs, ys, params):
    """Gaussians of ``params`` (..., 5) on square patches, flattened to (..., P).

    ``xs`` and ``ys`` (..., m) are the patch's column and row coordinates; the
    Gaussian is separable, so only 2m exponentials per column are needed.
    """
    a, cx, cy, s = (params[..., i, None] for i in range(4))
    gx = np.exp(-((xs - cx) ** 2) / (2 * s**2))
    gy = a * np.exp(-((ys - cy) ** 2) / (2 * s**2))
    out = gy[..., :, None] * gx[..., None, :]
    return out.reshape(out.shape[:-2] + (-1,))


def refine_gaussian(
    image: np.ndarray,
    xy: np.ndarray,
    sigma: float,
    radius: int | None = None,
    n_iter: int = 4,
    chunk: int = 8192,
) -> dict:
    """Refine all column positions at once by 2D Gaussian fits with neighbours.

    Parameters
    ----------
    image : ndarray (H, W)
        The raw image.
    xy : ndarray (N, 2)
        Starting positions, [x, y] pixels (e.g. probability-weighted centroids).
    sigma : float
        Starting Gaussian width in pixels.
    radius : int, optional
        Half size of each column's fitting patch; default ``ceil(1.5 * sigma)``,
        at least 2.
    n_iter : int
        Rounds of neighbour subtraction and Gauss-Newton.

    Returns
    -------
    dict with ``xy`` (N, 2), ``height``, ``sigma``, ``background``, ``rms``
    (residual per column) and ``moved`` (distance from the start, pixels).
    """
    image = np.asarray(image, dtype=np.float64)
    xy = np.asarray(xy, dtype=np.float64)
    n = len(xy)
    if n == 0:
        empty = np.zeros(0)
        return {"xy": xy.reshape(0, 2), "height": empty, "sigma": empty,
                "background": empty, "rms": empty, "moved": empty}  # fmt: skip
    radius = int(radius or max(2, np.ceil(1.5 * sigma)))
    h, w = image.shape
    off = np.arange(-radius, radius + 1)
    centre = np.round(xy).astype(int)
    centre[:, 0] = np.clip(centre[:, 0], 0, w - 1)
    centre[:, 1] = np.clip(centre[:, 1], 0, h - 1)
    ys = (centre[:, 1, None] + off[None, :]).astype(float)  # (n, m) patch rows
    xs = (centre[:, 0, None] + off[None, :]).astype(float)  # (n, m) patch columns
    py = np.repeat(ys, len(off), axis=1)
    px = np.tile(xs, (1, len(off)))
    inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
    data = image[np.clip(py, 0, h - 1).astype(int), np.clip(px, 0, w - 1).astype(int)]

    # Starting parameters: height over the patch minimum, given width.
    bg0 = np.where(inside, data, np.inf).min(1)
    peak = image[centre[:, 1], centre[:, 0]]
    params = np.stack(
        [np.maximum(peak - bg0, 1e-6), xy[:, 0], xy[:, 1], np.full(n, sigma), bg0], 1
    )
    nb = _neighbours(xy, 2 * radius + 4 * sigma)
    sig_lo, sig_hi = 0.3 * sigma, 3.0 * sigma
    lam = np.full(n, 1e-3)

    # Jacobi rounds: every column is updated from the previous round's model of
    # its neighbours, so the result does not depend on how columns are split
    # into chunks; chunks run on threads (numpy releases the GIL).
    size = max(256, min(chunk, -(-n // _threads())))
    slices = [slice(s0, min(n, s0 + size)) for s0 in range(0, n, size)]

    def update(sl, previous):
        idx = nb[sl]
        valid = idx >= 0
        other = previous[np.where(valid, idx, 0)]  # (c, K, 5)
        other[..., 0] *= valid
        neigh = _gauss(xs[sl, None], ys[sl, None], other).sum(1)  # (c, P)
        new, lam[sl] = _gauss_newton_step(
            previous[sl], px[sl], py[sl], data[sl] - neigh, inside[sl], lam[sl]
        )
        new[:, 3] = np.clip(new[:, 3], sig_lo, sig_hi)
        params[sl] = new

    with ThreadPoolExecutor(len(slices)) as pool:
        for _ in range(n_iter):
            previous = params.copy()
            list(pool.map(update, slices, [previous] * len(slices)))
    model = _gauss(xs, ys, params) + params[:, 4, None]
    valid = nb >= 0
    other = params[np.where(valid, nb, 0)]
    other[..., 0] *= valid
    resid = np.where(
        inside, data - model - _gauss(xs[:, None], ys[:, None], other).sum(1), 0
    )
    rms = np.sqrt((resid**2).sum(1) / inside.sum(1))
    return {
        "xy": params[:, 1:3].copy(),
        "height": params[:, 0].copy(),
        "sigma": params[:, 3].copy(),
        "background": params[:, 4].copy(),
        "rms": rms,
        "moved": np.hypot(*(params[:, 1:3] - xy).T),
    }


def _gauss_newton_step(params, px, py, target, inside, lam):
    """One damped Gauss-Newton (Levenberg-Marquardt) step for every column."""
    a, cx, cy, s, b = params.T
    dx, dy = px - cx[:, None], py - cy[:, None]
    d2 = dx**2 + dy**2
    g = np.exp(-d2 / (2 * s[:, None] ** 2))
    model = a[:, None] * g + b[:, None]
    r = np.where(inside, model - target, 0.0)
    ag = a[:, None] * g
    jac = np.stack(
        [g, ag * dx / s[:, None] ** 2, ag * dy / s[:, None] ** 2,
         ag * d2 / s[:, None] ** 3, np.ones_like(g)],
        axis=-1,
    )  # fmt: skip
    jac = jac * inside[..., None]
    jac_t = jac.transpose(0, 2, 1)
    jtj = jac_t @ jac  # batched BLAS: several times faster than einsum here
    jtr = (jac_t @ r[..., None])[..., 0]
    cost = (r**2).sum(1)
    damp = jtj + lam[:, None, None] * (jtj * np.eye(N_PARAMS) + 1e-9 * np.eye(N_PARAMS))
    step = -np.linalg.solve(damp, jtr[..., None])[..., 0]
    # At most one pixel of movement per step keeps the batch stable.
    move = np.hypot(step[:, 1], step[:, 2])
    step[:, 1:3] *= np.minimum(1.0, 1.0 / np.maximum(move, 1e-12))[:, None]
    trial = params + step
    trial[:, 0] = np.maximum(trial[:, 0], 1e-9)
    trial[:, 3] = np.maximum(trial[:, 3], 1e-3)
    ta, tcx, tcy, ts, tb = trial.T
    tg = np.exp(
        -((px - tcx[:, None]) ** 2 + (py - tcy[:, None]) ** 2) / (2 * ts[:, None] ** 2)
    )
    tr = np.where(inside, ta[:, None] * tg + tb[:, None] - target, 0.0)
    better = (tr**2).sum(1) <= cost
    new = np.where(better[:, None], trial, params)
    lam = np.where(better, lam * 0.3, lam * 10.0)
    return new, np.clip(lam, 1e-7, 1e7)
