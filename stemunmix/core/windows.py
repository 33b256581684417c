"""Sub-pixel windows around columns (numpy only).

A window of size d is centred on the column at sub-pixel precision: window pixel
(i, j) samples the image at ``(x + j - (d - 1) / 2, y + i - (d - 1) / 2)`` by
bilinear interpolation. For odd d the column sits on the central pixel; for even
d it sits at the meeting point of the four central pixels.
"""

from __future__ import annotations

import numpy as np

from stemunmix.core import engine, threads
from stemunmix.core.blocks import block_bounds

EDGES = ("drop", "nearest")


def on_frame(xy: np.ndarray, shape) -> np.ndarray:
    """(N,) bool: the [x, y] positions on a frame of ``shape`` (..., H, W),
    i.e. within its pixels' area, -0.5 to W - 0.5 and -0.5 to H - 0.5 (pixel
    centres at 0..W-1); NaN is off. The one test every step uses."""
    xy = np.asarray(xy, float).reshape(-1, 2)
    h, w = shape[-2:]
    with np.errstate(invalid="ignore"):
        return (
            (xy[:, 0] >= -0.5)
            & (xy[:, 0] <= w - 0.5)
            & (xy[:, 1] >= -0.5)
            & (xy[:, 1] <= h - 0.5)
        )


def inside_mask(xy: np.ndarray, shape, d: int) -> np.ndarray:
    """Columns whose whole window (and its interpolation support) is inside."""
    half = (d - 1) / 2
    h, w = shape[-2:]
    x0, y0 = xy[:, 0] - half, xy[:, 1] - half
    return (x0 >= 0) & (y0 >= 0) & (x0 + d - 1 <= w - 1) & (y0 + d - 1 <= h - 1)


def extract_windows(image: np.ndarray, xy: np.ndarray, d: int, edge: str = "drop"):
    """Windows (N, C, d, d) float32 of a (C, H, W) or (H, W) image.

    ``edge="drop"`` expects every window to be inside (use :func:`inside_mask`
    first); ``"nearest"`` pads the image with its edge values. Whatever the
    positions, the kernel never reads outside the (padded) array: a window
    that would cross it is clamped onto it (for ``"nearest"`` the same values,
    since the padding repeats the edge), and non-finite positions are refused.
    One fused,
    parallel pass (numba): each window has a single fractional shift, so its
    bilinear interpolation combines four integer-aligned windows.
    """
    image = np.ascontiguousarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[None]
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if edge not in EDGES:
        raise ValueError(f"edge must be one of {EDGES}, got {edge!r}")
    if not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d must be a positive integer number of pixels, got {d!r}")
    if not np.isfinite(xy).all():
        raise ValueError("xy holds NaN or inf positions; drop those columns first")
    start = xy - (d - 1) / 2
    if edge == "nearest":
        pad = d + 2
        image = np.pad(image, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
        start = start + pad
    if min(image.shape[1:]) < d + 1:
        raise ValueError(
            f"a {d} x {d} window needs an image of at least {d + 1} pixels per "
            f"side, got {image.shape[1:]}; use a smaller d"
        )
    # Clamp the window start onto the array: the kernel reads pixels
    # [start, start + d] along each axis, so start in [0, n - d - 1] keeps
    # every read inside (n - d - 1 is reached below with weight one).
    start[:, 0] = np.clip(start[:, 0], 0, image.shape[2] - d)
    start[:, 1] = np.clip(start[:, 1], 0, image.shape[1] - d)
    ix = np.floor(start[:, 0]).astype(np.int64)
    iy = np.floor(start[:, 1]).astype(np.int64)
    fx = (start[:, 0] - ix).astype(np.float32)
    fy = (start[:, 1] - iy).astype(np.float32)
    # A window ending exactly on the last pixel needs no pixel beyond it.
    at_x, at_y = ix + d >= image.shape[2], iy + d >= image.shape[1]
    ix, fx = np.where(at_x, ix - 1, ix), np.where(at_x, fx + 1, fx).astype(np.float32)
    iy, fy = np.where(at_y, iy - 1, iy), np.where(at_y, fy + 1, fy).astype(np.float32)
    out = np.empty((len(xy), image.shape[0], d, d), np.float32)
    with threads.limited():
        _kernel()(image, ix, iy, fx, fy, out)
    return out


_COMPILED = []


def _kernel():
    """The numba kernel, compiled on first use (keeps imports light)."""
    if not _COMPILED:
        import numba

        @numba.njit(parallel=True, fastmath=True, error_model="numpy", cache=True)
        def gather(image, ix, iy, fx, fy, out):
            n, c, d = out.shape[0], out.shape[1], out.shape[2]
            for k in numba.prange(n):
                x0, y0, wx, wy = ix[k], iy[k], fx[k], fy[k]
                # Bilinear weights of the four integer-aligned windows.
                w00 = (1 - wx) * (1 - wy)
                w01 = wx * (1 - wy)
                w10 = (1 - wx) * wy
                w11 = wx * wy
                for ch in range(c):
                    for i in range(d):
                        r0 = image[ch, y0 + i, x0 : x0 + d + 1]
                        r1 = image[ch, y0 + i + 1, x0 : x0 + d + 1]
                        o = out[k, ch, i]
                        for j in range(d):
                            o[j] = (
                                w00 * r0[j]
                                + w01 * r0[j + 1]
                                + w10 * r1[j]
                                + w11 * r1[j + 1]
                            )

        _COMPILED.append(gather)
    return _COMPILED[0]


def gather(
    frames,
    xy: np.ndarray,
    frame_of: np.ndarray,
    d: int,
    edge: str,
    block: int,
    lazy: bool,
    progress=None,
):
    """The windows of every column through the engine, block by block.

    ``frames``: (nav..., C, H, W) numpy or dask; ``xy`` (N, 2) [x, y] pixels;
    ``frame_of`` (N, nav) the numpy index of each column's frame. Each block
    of the image (``block`` pixels a side) reads itself plus a margin of
    d / 2 + 2 pixels and cuts the windows of its own columns, so ``"nearest"``
    pads only at the frame's edges. Returns (order, windows): the columns'
    order (by frame, block, then their own order) and the windows (N, d, C d),
    the channels side by side; numpy, or dask with one task per block when
    ``lazy``.
    """

    nav_ndim = frame_of.shape[1]
    h, w = frames.shape[-2:]
    n_channels = frames.shape[-3]
    rows, cols = block_bounds(h, block), block_bounds(w, block)
    by = np.clip(np.searchsorted([r[0] for r in rows], xy[:, 1], "right") - 1, 0, None)
    bx = np.clip(np.searchsorted([c[0] for c in cols], xy[:, 0], "right") - 1, 0, None)
    flat = (
        np.ravel_multi_index(tuple(frame_of.T), frames.shape[:nav_ndim])
        if nav_ndim
        else np.zeros(len(xy), int)
    )
    order = np.lexsort((np.arange(len(xy)), bx, by, flat))
    groups = {}
    for i in order:
        frame = tuple(int(v) for v in frame_of[i])
        box = rows[by[i]] + cols[bx[i]]
        groups.setdefault((frame, box), []).append(i)
    margin = d // 2 + 2

    def run(region, frame, box, origin):
        if not np.all(np.isfinite(region)):
            raise ValueError(
                "the image has NaN or inf pixels: windows would carry them; "
                "replace them first"
            )
        sel = groups[(frame, box)]
        local = xy[sel] - np.array([origin[1], origin[0]], float)
        win = extract_windows(region, local, d, edge)  # (n, C, d, d)
        return win.transpose(0, 2, 1, 3).reshape(len(win), d, n_channels * d)

    step = engine.Step(run, halo=margin)
    if lazy and not engine.is_lazy(frames):
        import dask.array as da

        frames = da.from_array(frames, chunks=(1,) * nav_ndim + (-1, -1, -1))
    parts = engine.run_items(
        step,
        frames,
        nav_ndim,
        lambda f: [b for g, b in groups if g == f],
        compute=False,
        progress=progress,
    )
    if not lazy:
        data = np.concatenate([p for _, _, p in parts]) if parts else None
        return order, data
    import dask.array as da

    blocks = [
        da.from_delayed(p, (len(groups[(f, b)]), d, n_channels * d), np.float32)
        for f, b, p in parts
    ]
    return order, da.concatenate(blocks, axis=0)
