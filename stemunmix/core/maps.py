"""Per-column values back onto the image grid (numpy and numba)."""

from __future__ import annotations

import numpy as np

from stemunmix.core import engine
from stemunmix.core.neighbours import nearest_spacing

# How far (in column spacings) a map reaches from its nearest column before
# it is NaN: every per-column map on the image grid uses it.
MAP_REACH = 1.5


def map_reach(xy) -> float:
    """The distance (pixels) beyond which a per-column map is NaN:
    :data:`MAP_REACH` column spacings (1.5 pixels for fewer than 2 columns)."""

    return MAP_REACH * nearest_spacing(xy)


def voronoi_map(xy, values, shape, max_distance: float):
    """Each pixel takes the values of its nearest column (its Voronoi cell).

    Parameters
    ----------
    xy : (N, 2) [x, y] pixels
    values : (N,) or (N, K)
    shape : (H, W)
    max_distance : pixels this far or farther from every column get NaN.

    Returns (H, W) or (K, H, W) float32. Rasterised column by column (each
    column claims the pixels within ``max_distance`` that no nearer column
    has; ties go to the first): about N (2 max_distance)^2 steps, a few tens
    of ms for a 2048^2 map, where a nearest-neighbour query per pixel takes
    seconds.
    """
    values = np.asarray(values, dtype=np.float32)
    squeeze = values.ndim == 1
    values = values.reshape(len(values), -1)
    h, w = (int(v) for v in shape)
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    owner = np.full((h, w), len(xy), np.int32)  # len(xy): no column, NaN
    if len(xy) and h and w:
        _owners()(xy, float(max_distance), owner)
    table = np.concatenate([values, np.full((1, values.shape[1]), np.nan, np.float32)])
    out = np.ascontiguousarray(table.T)[:, owner]  # one gather: (K, H, W)
    return out[0] if squeeze else out


_COMPILED = []


def _owners():
    """The numba rasteriser of :func:`voronoi_map`, compiled on first use."""
    if not _COMPILED:
        import numba

        @numba.njit(cache=True)
        def owners(xy, radius, owner):
            h, w = owner.shape
            best = np.full((h, w), np.inf)
            r2 = radius * radius
            for k in range(xy.shape[0]):
                x, y = xy[k, 0], xy[k, 1]
                if not (np.isfinite(x) and np.isfinite(y)):
                    continue
                i0 = max(0, int(np.ceil(y - radius)))
                i1 = min(h - 1, int(np.floor(y + radius)))
                j0 = max(0, int(np.ceil(x - radius)))
                j1 = min(w - 1, int(np.floor(x + radius)))
                for i in range(i0, i1 + 1):
                    dy2 = (i - y) * (i - y)
                    for j in range(j0, j1 + 1):
                        d2 = dy2 + (j - x) * (j - x)
                        if d2 < r2 and d2 < best[i, j]:
                            best[i, j] = d2
                            owner[i, j] = k

        _COMPILED.append(owners)
    return _COMPILED[0]


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


def draw(
    per_frame: dict,
    nav_shape,
    shape,
    k: int,
    mode: str,
    spacing: float,
    block: int,
    lazy: bool,
):
    """Maps (nav..., k, H, W) of per-column values through the engine.

    ``per_frame``: {frame: (xy, values (N, k))}. ``mode="voronoi"``: each pixel
    takes its nearest column's values within ``spacing`` pixels (NaN beyond);
    ``"points"``: values at the columns' nearest pixels. Each block draws from
    the columns within reach of it, so any block size (and lazy, one task per
    block) gives the same map.
    """

    reach = spacing if mode == "voronoi" else 1.0
    extra = (spacing,) if mode == "voronoi" else ()
    fn = voronoi_map if mode == "voronoi" else point_map

    def run(_, frame, box, origin):
        xy, values = per_frame[frame]
        y0, y1, x0, x1 = box
        near = (
            (xy[:, 0] >= x0 - reach - 1)
            & (xy[:, 0] <= x1 + reach)
            & (xy[:, 1] >= y0 - reach - 1)
            & (xy[:, 1] <= y1 + reach)
        )
        local = xy[near] - np.array([x0, y0], float)
        out = np.full((k, y1 - y0, x1 - x0), np.nan, np.float32)
        if near.any():
            out[:] = fn(local, values[near].reshape(-1, k), (y1 - y0, x1 - x0), *extra)
        return out

    return engine.run_image(
        engine.Step(run),
        None,
        (k,),
        block,
        len(nav_shape),
        shape=tuple(nav_shape) + tuple(shape),
        lazy=lazy,
    )
