"""Columns of one frame from its probability maps and raw image (numpy only)."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import map_coordinates

from stemunmix.core import engine
from stemunmix.core.peaks import find_peaks
from stemunmix.core.presence import on_grid, on_mask
from stemunmix.core.refine import noise_model, refine_gaussian
from stemunmix.core.texture import refine_with_texture, texture_covariance
from stemunmix.core.uncertainty import PIXEL_CROP, line_width, shot_covariance
from stemunmix.core.windows import on_frame

REFINE = ("gaussian", "centroid")


def middle(shape, half: int = 256) -> tuple[slice, slice]:
    """Rows and columns of the (at most) 2 half x 2 half pixels at the middle
    of a frame of ``shape`` (..., H, W): where the fit's sizes are measured."""
    h, w = shape[-2:]
    cy, cx = h // 2, w // 2
    return slice(max(0, cy - half), cy + half), slice(max(0, cx - half), cx + half)


def frame_sizes(
    prob,
    image,
    column_classes,
    min_distance,
    threshold,
    ab_distance,
    patch: float = 0.5,
) -> dict:
    """:func:`column_sizes` measured on the :func:`middle` of a frame (maps
    ``prob`` and raw ``image`` already cut to it), the same for the eager and
    the block-by-block (lazy) search."""
    xy = find_columns_frame(
        prob, column_classes, min_distance, threshold, None, "centroid"
    )[0]
    return column_sizes(np.asarray(image, float), xy, ab_distance, patch)


def column_sizes(image, xy, ab_distance: float, patch: float = 0.5) -> dict:
    """Starting width and patch of the Gaussian fit, measured on the image.

    A first fit starts every column at 0.15 of the A-B distance ``d`` on
    patches of half size ``patch * d``; the median fitted width of its brighter
    half of the columns is the starting width of the real fit. Real columns
    are often wider (0.21-0.23 ``d`` on the images in ../shared/data) than the
    first guess, and started too narrow, weak B columns between wide A ones
    can collapse. The patch stays ``patch * d``: wider patches (four widths)
    narrowed the SrTiO3 [110] spread but let the unequal A tails at the
    PbTiO3/SrRuO3 interface pull Ti columns 2-4 px. The noise model of
    this first fit's residuals (:func:`stemunmix.core.refine.noise_model`)
    weights the real fit's pixels. Returns keyword arguments of
    :func:`stemunmix.core.refine.refine_gaussian` (``sigma``, ``radius``,
    ``noise``: (gain, variance0), None where it cannot be measured).
    """
    d = float(ab_distance)
    radius = max(2, round(patch * d))
    if len(xy) == 0:
        return {"sigma": 0.15 * d, "radius": radius, "noise": None}
    fit = refine_gaussian(image, xy, sigma=0.15 * d, radius=radius)
    bright = fit["height"] >= np.median(fit["height"])
    gain, var0 = noise_model(fit["noise_sums"])
    return {
        "sigma": float(np.median(fit["sigma"][bright])),
        "radius": radius,
        "noise": (gain, var0) if np.isfinite(var0) else None,
    }


def find_columns_frame(
    prob: np.ndarray,
    column_classes: list[int],
    min_distance: float,
    threshold: float = 0.5,
    image: np.ndarray | None = None,
    refine: str = "gaussian",
    ab_distance: float | None = None,
    patch: float = 0.5,
    sizes: dict | None = None,
):
    """Columns of one frame.

    Per column class: maxima of its probability map at least ``min_distance``
    apart, refined to probability-weighted centroids; where two classes claim
    the same column, the more probable wins. With ``refine="gaussian"`` the
    positions are then refined on the raw ``image`` by the batched Gaussian fit
    of :func:`stemunmix.core.refine.refine_gaussian`, with the width and patch
    ``sizes`` (default: measured on the middle of this frame by
    :func:`frame_sizes`); a fit that wanders more than half ``min_distance``
    keeps its centroid, and one it carries off the frame is left out (as
    :func:`find_columns` leaves it out).

    Returns (xy (N, 2) [x, y] pixels, labels (N,) into the classes of ``prob``,
    scores (N,): the class probability at the column).
    """
    xy, labels = [], []
    for k in column_classes:
        peaks = find_peaks(prob[k], min_distance, threshold)
        xy.append(peaks)
        labels.append(np.full(len(peaks), k))
    xy = np.concatenate(xy) if xy else np.zeros((0, 2))
    labels = np.concatenate(labels).astype(int) if labels else np.zeros(0, int)
    if len(xy) == 0:
        return xy, labels, np.zeros(0)
    scores = _sample(prob, xy, labels)
    keep = _resolve_duplicates(xy, scores, min_distance)
    xy, labels, scores = xy[keep], labels[keep], scores[keep]
    order = np.lexsort((xy[:, 0], xy[:, 1]))
    xy, labels, scores = xy[order], labels[order], scores[order]
    if refine == "gaussian" and image is not None:
        d = ab_distance if ab_distance else 2 * min_distance
        if sizes is None:
            rows, cols = middle(prob.shape)
            sizes = frame_sizes(
                prob[:, rows, cols],
                image[rows, cols],
                column_classes,
                min_distance,
                threshold,
                d,
                patch,
            )
        fit = refine_gaussian(image, xy, **sizes, uncertainty=False)
        ok = fit["moved"] <= 0.5 * min_distance
        xy = np.where(ok[:, None], fit["xy"], xy)
        on = on_frame(xy, prob.shape[-2:])  # as find_columns: none carried off
        xy, labels, scores = xy[on], labels[on], scores[on]
    return xy, labels, scores


def _sample(prob, xy, labels):
    """Bilinear probability of each column's own class at its position."""
    out = np.empty(len(xy))
    for k in np.unique(labels):
        m = labels == k
        out[m] = map_coordinates(prob[k], [xy[m, 1], xy[m, 0]], order=1)
    return out


def _resolve_duplicates(xy, scores, min_distance):
    from scipy.spatial import cKDTree

    pairs = cKDTree(xy).query_pairs(min_distance, output_type="ndarray")
    drop = np.zeros(len(xy), bool)
    for i, j in pairs[
        np.argsort(-np.maximum(scores[pairs[:, 0]], scores[pairs[:, 1]]))
    ]:
        if drop[i] or drop[j]:
            continue
        drop[j if scores[i] >= scores[j] else i] = True
    return np.flatnonzero(~drop)


def find_columns_region(
    prob,
    column_classes,
    min_distance,
    threshold,
    image,
    refine,
    sizes,
    core,
    origin,
    presence=None,
):
    """:func:`find_columns_frame` on a region of a frame (its core plus a halo),
    keeping the columns whose starting centroid lies in ``core`` (y0, y1, x0,
    x1, frame pixels); ``origin`` (row, col) is the region's first pixel.
    ``sizes``: the fit's width and patch for the whole frame
    (:func:`column_sizes`), so that every region fits alike.

    With a halo wider than the reach of peak finding and of the neighbour-aware
    fit (:func:`region_halo`), the columns equal those of the whole frame.
    Returns (xy, labels, scores, centroids, fit) in frame pixels; centroids
    order the columns as the whole-frame call does; ``fit`` (N, FIT_WIDTH)
    packs each column's fitted quantities and the terms of its uncertainty
    (:func:`unpack_fit`), NaN where the fit was not kept. ``presence``:
    (mask, bin) of the frame (:mod:`stemunmix.core.presence`), the columns
    off the lattice left out before they are fitted; None keeps all.
    """
    xy, labels, scores = find_columns_frame(
        prob, column_classes, min_distance, threshold, None, "centroid"
    )
    if presence is not None and len(xy):
        on = on_mask(xy + np.array([origin[1], origin[0]], float), *presence)
        xy, labels, scores = xy[on], labels[on], scores[on]
    start = xy.copy()
    packed = np.full((len(xy), FIT_WIDTH), np.nan)
    if refine == "gaussian" and image is not None and len(xy):
        fit = _fit(image, xy, sizes)
        ok = fit["moved"] <= 0.5 * min_distance
        xy = np.where(ok[:, None], fit["xy"], xy)
        packed[ok] = _pack(fit)[ok]
    shift = np.array([origin[1], origin[0]], float)
    xy, start = xy + shift, start + shift
    packed[:, TEXTURE_AT : TEXTURE_AT + 2] += shift  # the refit's x, y
    own = (
        (start[:, 1] >= core[0])
        & (start[:, 1] < core[1])
        & (start[:, 0] >= core[2])
        & (start[:, 0] < core[3])
    )
    return xy[own], labels[own], scores[own], start[own], packed[own]


def _fit(image, xy, sizes: dict) -> dict:
    """:func:`stemunmix.core.refine.refine_gaussian` with the frame's
    ``sizes``; where the frame's support has a texture (``sizes["texture"]``,
    :func:`stemunmix.core.texture.texture_covariance`), its ``texture`` entry
    holds :func:`stemunmix.core.texture.refine_with_texture`'s refit."""
    texture = sizes.get("texture")
    fit = refine_gaussian(image, xy, **{k: sizes[k] for k in REFINE_SIZES})
    if texture is not None:
        radius = texture_radius(sizes)
        fit["texture"] = refine_with_texture(
            image, fit, radius, sizes["noise"], texture, TEXTURE_ROUNDS
        )
    return fit


REFINE_SIZES = ("sigma", "radius", "noise")  # refine_gaussian's, of a frame's sizes
TEXTURE_ROUNDS = 4  # rounds of refine_with_texture after refine_gaussian's 4
FIT_KEYS = ("height", "sigma", "background", "rms")
TEXTURE_KEYS = ("height", "sigma", "background")
# the fit's quantities, position terms (6), noise sums (5), and the refit
# with the texture: x, y, its TEXTURE_KEYS and covariance (xx, xy, yy)
FIT_WIDTH = len(FIT_KEYS) + 6 + 5 + 2 + len(TEXTURE_KEYS) + 3
TEXTURE_AT = len(FIT_KEYS) + 11  # where the refit starts in a packed row


def _pack(fit: dict) -> np.ndarray:
    n = len(fit["xy"])
    refit = np.full((n, 8), np.nan)
    t = fit.get("texture")
    if t is not None:
        fitted = [t[k] for k in TEXTURE_KEYS]
        pairs = t["covariance"].reshape(n, 4)[:, [0, 1, 3]]
        refit = np.column_stack([t["xy"], *fitted, pairs])
    return np.concatenate(
        [
            np.stack([fit[k] for k in FIT_KEYS], 1),
            fit["position_terms"].reshape(n, 6),
            fit["noise_sums"].reshape(n, 5),
            refit,
        ],
        1,
    )


def unpack_fit(packed: np.ndarray) -> tuple:
    """(quantities, shot covariance (N, 2, 2), noise model, refit (N, 5)
    [x, y, height, width, background] and its covariance (N, 2, 2)) of one
    frame's columns from the packed fits of :func:`find_columns_region`.

    The noise model (gain, variance0) is fitted once to all the frame's
    columns (:func:`stemunmix.core.refine.noise_model`); the covariance is
    each position's under it, independent pixels
    (:func:`stemunmix.core.uncertainty.shot_covariance`). Quantities: ``height``,
    ``intensity`` (the Gaussian's integral, 2 pi height width^2, background
    excluded), ``width`` (the Gaussian's sigma, pixels), ``background``,
    ``residual`` (RMS of the patch), all in the image's units, and
    ``line_width`` (pixels, :func:`stemunmix.core.uncertainty.line_width`:
    how the fit shares scan lines with other columns); NaN where the column
    kept its centroid. The refit is the fit with the support's texture
    (:func:`stemunmix.core.texture.refine_with_texture`), its covariance
    that fit's with the texture counted; NaN where there was none.
    """
    n = len(packed)
    fitted = np.isfinite(packed[:, 0])
    q = {k: packed[:, i] for i, k in enumerate(FIT_KEYS)}
    quantities = {
        "height": q["height"],
        "intensity": 2 * np.pi * q["height"] * q["sigma"] ** 2,
        "width": q["sigma"],
        "background": q["background"],
        "residual": q["rms"],
    }
    k = len(FIT_KEYS)
    noise = noise_model(packed[fitted, k + 6 : k + 11])
    cov = np.full((n, 2, 2), np.nan)
    if fitted.any() and np.isfinite(noise[1]):
        cov[fitted] = shot_covariance(packed[fitted, k : k + 6], noise)
        quantities["line_width"] = line_width(quantities, noise)
    else:
        quantities["line_width"] = quantities["width"].copy()
    refit = packed[:, TEXTURE_AT : TEXTURE_AT + 5].copy()
    t = packed[:, TEXTURE_AT + 5 :]
    refit_cov = np.stack([t[:, [0, 1]], t[:, [1, 2]]], 1)
    return quantities, cov, noise, refit, refit_cov


def region_halo(min_distance: float, sizes: dict, n_iter: int = 4) -> int:
    """Halo (pixels) that makes :func:`find_columns_region` equal the whole frame:
    the neighbour-aware fit reaches one neighbour shell per iteration (and
    per round of the fit with the support's texture, where it runs)."""
    radius = sizes["radius"]
    if sizes.get("texture") is not None:
        n_iter, radius = n_iter + TEXTURE_ROUNDS, texture_radius(sizes)
    reach = 2 * radius + 4 * sizes["sigma"]
    return int(np.ceil((n_iter + 2) * reach + 4 * min_distance))


def find_columns(
    prob,
    image,
    nav_ndim: int,
    column_classes,
    threshold: float,
    refine: str,
    distances: dict,
    block: int,
    progress=None,
    presence: dict | None = None,
) -> dict:
    """Columns of every frame of ``prob`` (nav..., C, H, W) and the raw
    ``image`` (nav..., H, W, or None), numpy or dask, block by block through
    the engine: each block reads its region with the halo of
    :func:`region_halo`, so any block size gives the whole frame's columns.

    ``distances``: {frame: (min_distance, ab_distance)} pixels. The fit's
    width and patch are measured once per frame on its :func:`middle`.
    Returns {frame: (xy, labels, scores, fits, middle)}, each frame's columns
    in row order (those a fit carried off the frame left out), ``fits``
    packed as :func:`unpack_fit` reads them; ``middle``: the fit's ``sizes``,
    the raw image's ``crop`` on the frame's middle PIXEL_CROP^2 pixels (None
    without the image) and its first pixel ``origin`` (row, col), where the
    error model measures the pixel noise. ``presence``: {frame: (mask,
    bin)}, where the lattice is (:mod:`stemunmix.core.presence`); columns
    are searched there only.
    """
    presence = presence or {}

    frames = list(np.ndindex(prob.shape[:nav_ndim]))
    shape = prob.shape[-2:]
    use_image = refine == "gaussian" and image is not None
    sizes = {f: {"radius": 0, "sigma": 0, "noise": None} for f in frames}
    crops = {f: None for f in frames}
    rows, cols = middle(shape)
    # the error model's pixels: the middle PIXEL_CROP^2 of that middle
    e_rows, e_cols = middle(shape, PIXEL_CROP // 2)
    inner = (
        slice(e_rows.start - rows.start, e_rows.stop - rows.start),
        slice(e_cols.start - cols.start, e_cols.stop - cols.start),
    )
    if use_image:
        pieces = [(prob[f][:, rows, cols], image[f][rows, cols]) for f in frames]
        if engine.is_lazy((prob, image)):
            import dask

            pieces = dask.compute(*pieces)
        for f, (p, r) in zip(frames, pieces, strict=True):
            dist, d_ab = distances[f]
            sizes[f] = frame_sizes(
                np.asarray(p), r, column_classes, dist, threshold, d_ab
            )
            crops[f] = np.array(np.asarray(r)[inner], copy=True)
        for f in frames:
            sizes[f]["texture"] = _texture(image[f], presence.get(f), sizes[f])

    def region_of(frame, box):
        m = region_halo(distances[frame][0], sizes[frame])
        y0, y1, x0, x1 = box
        return (
            max(0, y0 - m),
            min(shape[0], y1 + m),
            max(0, x0 - m),
            min(shape[1], x1 + m),
        )

    def run(region, frame, box, origin):
        p, raw = region if use_image else (region, None)
        return find_columns_region(
            p,
            column_classes,
            distances[frame][0],
            threshold,
            raw,
            refine,
            sizes[frame],
            box,
            origin,
            presence.get(frame),
        )

    step = engine.Step(run, region_of=region_of)
    data = (prob, image) if use_image else prob
    parts = engine.run_items(
        step, data, nav_ndim, lambda f: engine.boxes(shape, block), progress=progress
    )
    by_frame = {f: [] for f in frames}
    for frame, _, r in parts:
        by_frame[frame].append(list(r))
    del parts  # the blocks' results live on in by_frame only, to be let go
    out = {}
    for f in frames:
        middle_of = {
            "sizes": sizes[f],
            "crop": crops[f],
            "origin": (e_rows.start, e_cols.start),
        }
        out[f] = _gather(by_frame.pop(f), shape) + (middle_of,)
    return out


TEXTURE_HALF = 1024  # the support's texture is measured on the middle 2048^2


def _texture(frame, where, sizes: dict):
    """The texture of the frame's support (:func:`stemunmix.core.texture.texture_covariance`)
    on its middle :data:`TEXTURE_HALF` * 2 pixels squared, off the lattice
    (``where``: (mask, bin), :mod:`stemunmix.core.presence`); None without a
    mask or without a texture there."""
    if where is None or sizes.get("noise") is None:
        return None
    rows, cols = middle(frame.shape, TEXTURE_HALF)
    r, c = np.arange(frame.shape[-2])[rows], np.arange(frame.shape[-1])[cols]
    off = ~on_grid(where[0], where[1], r, c)
    if not off.any():
        return None
    window = np.asarray(frame[rows, cols], float)
    return texture_covariance(window, off, texture_radius(sizes), sizes["noise"])


def texture_radius(sizes: dict) -> int:
    """Half size of the patch the fit with the texture reads: the weighted
    fit's, or four widths where that is more (its neighbours are taken
    away, so all of a column's pixels count)."""
    return int(max(sizes["radius"], np.ceil(4 * sizes["sigma"])))


def _gather(mine: list, shape) -> tuple:
    """One frame's columns (xy, labels, scores, fits) in row order from its
    blocks' results [xy, labels, scores, start, fits], less those a fit
    carried off the frame (``shape`` (H, W)): no pixels of their own there.
    A field is let go in the blocks as soon as it is gathered: the client
    holds 1.4 million columns at 16384^2, and it held the blocks' results
    and two whole copies of every field at once."""
    start = np.concatenate([p[3] for p in mine]).reshape(-1, 2)
    order = np.lexsort((start[:, 0], start[:, 1]))
    del start
    out = []
    for i, tail in ((0, (2,)), (1, ()), (2, ()), (4, (FIT_WIDTH,))):
        out.append(np.concatenate([p[i] for p in mine]).reshape((-1,) + tail)[order])
        for p in mine:
            p[i] = None
        if i == 0:
            on = on_frame(out[0], shape)
            if not on.all():
                order, out[0] = order[on], out[0][on]
    out[1] = out[1].astype(int, copy=False)
    return tuple(out)
