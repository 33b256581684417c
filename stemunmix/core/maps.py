"""Per-column values back onto the image grid (numpy/scipy only)."""

from __future__ import annotations

import numpy as np


def voronoi_map(xy, values, shape, max_distance: float, chunk_rows: int = 256):
    """Each pixel takes the values of its nearest column (its Voronoi cell).

    Parameters
    ----------
    xy : (N, 2) [x, y] pixels
    values : (N,) or (N, K)
    shape : (H, W)
    max_distance : pixels farther than this from every column get NaN.

    Returns (H, W) or (K, H, W) float32.
    """
    from scipy.spatial import cKDTree

    values = np.asarray(values, dtype=np.float32)
    squeeze = values.ndim == 1
    values = values.reshape(len(values), -1)
    h, w = shape
    out = np.full((values.shape[1], h, w), np.nan, np.float32)
    tree = cKDTree(xy)
    xx = np.arange(w)
    for r0 in range(0, h, chunk_rows):
        rows = np.arange(r0, min(h, r0 + chunk_rows))
        pix = np.stack(np.broadcast_arrays(xx[None, :], rows[:, None]), -1).reshape(
            -1, 2
        )
        dist, idx = tree.query(pix, distance_upper_bound=max_distance)
        ok = np.isfinite(dist)
        block = np.full((values.shape[1], len(pix)), np.nan, np.float32)
        block[:, ok] = values[idx[ok]].T
        out[:, rows] = block.reshape(values.shape[1], len(rows), w)
    return out[0] if squeeze else out


def point_map(xy, values, shape):
    """Values at the nearest pixel of each column, NaN elsewhere."""
    values = np.asarray(values, dtype=np.float32)
    squeeze = values.ndim == 1
    values = values.reshape(len(values), -1)
    out = np.full((values.shape[1],) + tuple(shape), np.nan, np.float32)
    ij = np.round(np.asarray(xy)).astype(int)
    ok = (
        (ij[:, 0] >= 0)
        & (ij[:, 1] >= 0)
        & (ij[:, 0] < shape[1])
        & (ij[:, 1] < shape[0])
    )
    out[:, ij[ok, 1], ij[ok, 0]] = values[ok].T
    return out[0] if squeeze else out


def draw(per_frame: dict, nav_shape, shape, k: int, mode: str, spacing: float,
         block: int, lazy: bool):  # fmt: skip
    """Maps (nav..., k, H, W) of per-column values through the engine.

    ``per_frame``: {frame: (xy, values (N, k))}. ``mode="voronoi"``: each pixel
    takes its nearest column's values within ``spacing`` pixels (NaN beyond);
    ``"points"``: values at the columns' nearest pixels. Each block draws from
    the columns within reach of it, so any block size (and lazy, one task per
    block) gives the same map.
    """
    from stemunmix.core import engine

    reach = spacing if mode == "voronoi" else 1.0
    extra = (spacing,) if mode == "voronoi" else ()
    fn = voronoi_map if mode == "voronoi" else point_map

    def run(_, frame, box, origin):
        xy, values = per_frame[frame]
        y0, y1, x0, x1 = box
        near = (
            (xy[:, 0] >= x0 - reach - 1) & (xy[:, 0] <= x1 + reach)
            & (xy[:, 1] >= y0 - reach - 1) & (xy[:, 1] <= y1 + reach)
        )  # fmt: skip
        local = xy[near] - np.array([x0, y0], float)
        out = np.full((k, y1 - y0, x1 - x0), np.nan, np.float32)
        if near.any():
            out[:] = fn(local, values[near].reshape(-1, k), (y1 - y0, x1 - x0), *extra)
        return out

    return engine.run_image(engine.Step(run), None, (k,), block, len(nav_shape),
                            shape=tuple(nav_shape) + tuple(shape), lazy=lazy)  # fmt: skip
