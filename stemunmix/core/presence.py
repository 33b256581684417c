"""Where the crystal is: a lattice-presence mask of a frame (numpy only).

A crystal repeats: the image around a point correlates with itself shifted
by a lattice translation. Vacuum (no signal), shot noise, an amorphous
support and contamination do not. The score of a pixel is the local
correlation of the band-passed frame with itself shifted by one column
spacing, in the direction (of :data:`ANGLES` all round: any orientation, so
the grains of a twinned particle all count) where it is highest over a box
of :data:`WIDE` spacings; at a region's edge it is also taken over
:data:`FINE` of a spacing, which is sharp there. It is computed on the frame
binned to about :data:`PIXELS_PER_SPACING` pixels per spacing, cheap at any
size and needing only a coarse copy of the frame (read blockwise when lazy).

The mask (:func:`mask_of`) keeps the region whose score stands clear of what
a frame without a lattice reads (:data:`NULL_SCORE`), widened by
:data:`DILATE` of a spacing so that the columns on a crystal's edge stay in.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from stemunmix.core import engine
from stemunmix.core.uncertainty import undetected

PIXELS_PER_SPACING = 6.0  # the binned frame's sampling of a column spacing
ANGLES = 48  # directions all round (5.6 degrees apart: a frame's edge
# has a neighbour a spacing away on one side only)
MIN_POWER = 0.05  # a crystal's band-pass power is at least this share of the median
# The mask widened by this many spacings: at 0.25 the mask's edge (it
# resolves about a spacing) cut one edge column of 85 off the corner crystal
# on an amorphous texture (dose 500), and 1-3 of 363-931 off particles on
# vacuum and a film; at 0.5 none, and no column beside them (the edge rules
# judge what the wider band lets in; benchmarks/structures.py).
DILATE = 0.5
EDGE = 2.0  # the edge band, in spacings
MIN_GAP = 9.0  # a region left out spans at least this many cells (spacing^2)
WIDE = 1.75  # the wide average: a box this many spacings either side (the
# area of a Gaussian of a spacing)
FINE = 0.2  # the neighbourhood a pixel's score is taken over, in spacings
BAND = 0.5  # the local mean taken out, over this many spacings (a step in
# the mean, at a crystal's edge, leaves no tail that repeats a spacing away)
# What a frame of shot noise or an amorphous texture scores (the median
# 0.12-0.17, its 99.5th percentile 0.29-0.40 on 256^2 frames); a lattice's
# top scores must pass DETECT to count as one (real crystals: 0.90-1.00).
NULL_SCORE = 0.25
DETECT = 0.5
# The crystal must show this share of the highest scores to be told from a
# lattice-free frame: the 99.5th percentile decides whether there is one.
TOP = 99.5


def bin_factor(spacing: float) -> int:
    """Pixels per bin side so that a spacing spans about
    :data:`PIXELS_PER_SPACING` bins (at least 1)."""
    return max(1, int(spacing // PIXELS_PER_SPACING))


def binned(frame, factor: int):
    """``frame`` (H, W), numpy or dask, averaged over ``factor`` x ``factor``
    bins (the ragged edge dropped)."""
    h, w = (s // factor * factor for s in frame.shape)
    f = frame[:h, :w]
    shape = (h // factor, factor, w // factor, factor)
    return f.reshape(shape).mean((1, 3))


class _Field:
    """A binned frame band-passed (the local mean over :data:`BAND` spacings
    out), its wide score and, per pixel, the direction that gives it; the
    fine score is computed where it is asked for (the edge of a region)."""

    def __init__(self, coarse, spacing: float):
        img = ndimage.gaussian_filter(np.asarray(coarse, np.float32), 0.1 * spacing)
        self.s = s = float(spacing)
        self.d = d = img - ndimage.gaussian_filter(img, BAND * s)
        self.square = d * d
        self.floor = 1e-6 * float(self.square.max()) + np.finfo(np.float32).tiny
        self.shifts = [
            (-s * np.sin(t), -s * np.cos(t))
            for t in np.arange(ANGLES) * 2 * np.pi / ANGLES
        ]
        # A box of WIDE spacings either side (running sums: the cost does not
        # grow with the spacing); the moved frame's power is the frame's,
        # averaged once and moved.
        box = 2 * int(round(WIDE * s)) + 1

        def average(a):
            return ndimage.uniform_filter(a, box)

        power = average(self.square)
        wide = np.full(d.shape, -np.inf, np.float32)
        self.which = np.zeros(d.shape, np.int16)
        for k, shift in enumerate(self.shifts):
            c = self._correlation(shift, average, power)
            better = c > wide
            wide[better], self.which[better] = c[better], k
        # What carries a small share of the crystal's power is no crystal.
        local = ndimage.gaussian_filter(self.square, FINE * s)
        strong = wide > 0.5
        typical = float(np.median(local[strong])) if strong.any() else 0.0
        self.weak = local <= max(
            MIN_POWER * (typical or float(local.max())), self.floor
        )
        wide[self.weak] = 0.0
        self.wide = wide

    def _correlation(self, shift, average, power):
        """The local correlation a ``shift`` away (``average``: the local
        mean; ``power``: that of the squared frame), over the mean power of
        the two ends, not their geometric mean: a smooth tail that decays
        over a spacing (beside a crystal's edge) is the same shape at both
        ends and would correlate fully."""
        # the power is smooth: moved by whole bins
        whole = tuple(float(np.round(v)) for v in shift)
        ends = np.maximum(0.5 * (power + _moved(power, whole)), self.floor)
        return average(self.d * _moved(self.d, shift)) / ends

    def sharp(self, where: np.ndarray, fine: float = FINE) -> np.ndarray:
        """The fine score (over ``fine`` spacings) in the wide score's
        direction, on the pixels ``where``; 0 elsewhere."""
        out = np.zeros(self.d.shape, np.float32)

        def average(a):
            return ndimage.gaussian_filter(a, fine * self.s)

        power = average(self.square)
        for k in np.unique(self.which[where]):
            on = where & (self.which == k)
            out[on] = self._correlation(self.shifts[k], average, power)[on]
        out[self.weak] = 0.0
        return out


def _moved(a: np.ndarray, shift) -> np.ndarray:
    """``a`` shifted by ``shift`` (rows, columns; the value at p is a's at p
    - shift), bilinear, the edge repeated beyond the frame: four slices of
    the padded array (ndimage.shift's spline machinery costs as much as
    the filters here)."""
    dy, dx = -float(shift[0]), -float(shift[1])
    pad = int(np.ceil(max(abs(dy), abs(dx)))) + 1
    p = np.pad(a, pad, mode="edge")
    iy, ix = int(np.floor(dy)), int(np.floor(dx))
    fy, fx = dy - iy, dx - ix
    h, w = a.shape

    def at(oy, ox):
        return p[pad + oy : pad + oy + h, pad + ox : pad + ox + w]

    if fy == 0 and fx == 0:  # whole bins: one slice
        return at(iy, ix)

    top = (1 - fx) * at(iy, ix) + fx * at(iy, ix + 1)
    bottom = (1 - fx) * at(iy + 1, ix) + fx * at(iy + 1, ix + 1)
    return (1 - fy) * top + fy * bottom


def mask_of(field: _Field, spacing: float):
    """(h, w) bool: where the lattice is, on the grid of ``field`` (a binned
    frame whose spacing is ``spacing`` bins). The region scoring over the
    wide box above a threshold halfway between :data:`NULL_SCORE` and the
    crystal's own score (its :data:`TOP` percentile), holes filled and
    specks smaller than a cell left out; at its edge (within two spacings)
    only the pixels whose fine score passes the same threshold, widened by
    :data:`DILATE` spacings; regions left out smaller than :data:`MIN_GAP`
    cells put back. All False when the top scores do not pass
    :data:`DETECT` (no lattice in the frame)."""
    wide = field.wide
    top = float(np.percentile(wide, TOP)) if wide.size else 0.0
    if not top > DETECT:
        return np.zeros(wide.shape, bool)
    cut = 0.5 * (NULL_SCORE + top)
    region = ndimage.binary_fill_holes(wide > cut)
    # Opened on the frame mirrored at its border: a crystal up to the border
    # keeps its corners, and a speck at the border is no larger for it.
    r = max(1, int(round(0.5 * spacing)))
    region = ndimage.binary_opening(np.pad(region, r, mode="reflect"), _disc(r))
    region = region[r:-r, r:-r]
    inner = _eroded(region, 2 * spacing)
    edge = region & ~inner
    if edge.any():
        keep = inner | (edge & (field.sharp(edge) > cut))
    else:
        keep = region
    keep = _dilated(keep, DILATE * spacing)
    # What is left out must be larger than a few cells to be no crystal: a
    # patch of noise or contamination on a crystal, at its border too.
    gaps, n = ndimage.label(~keep)
    if n:
        sizes = np.bincount(gaps.ravel())
        small = sizes < MIN_GAP * spacing**2
        small[0] = False
        keep |= small[gaps]
    return keep


def _eroded(mask: np.ndarray, radius: float) -> np.ndarray:
    """``mask`` eroded by :func:`_disc` (``radius``), the outside counted in:
    the pixels farther than the disc's radius from any False one (the same
    pixels as ``binary_erosion``, in a time that does not grow with it)."""
    if mask.all():
        return mask.copy()
    return ndimage.distance_transform_edt(mask) > max(1, int(round(radius)))


def _dilated(mask: np.ndarray, radius: float) -> np.ndarray:
    """``mask`` dilated by :func:`_disc` (``radius``), by the distance
    transform as :func:`_eroded`."""
    if not mask.any():
        return mask.copy()
    return ndimage.distance_transform_edt(~mask) <= max(1, int(round(radius)))


def _disc(radius: float) -> np.ndarray:
    r = max(1, int(round(radius)))
    return np.hypot(*np.mgrid[-r : r + 1, -r : r + 1]) <= r


def on_mask(xy: np.ndarray, mask: np.ndarray, factor: int) -> np.ndarray:
    """(N,) bool: whether each position [x, y] (frame pixels) falls on a
    True bin of ``mask`` (bins of ``factor`` pixels; beyond the binned
    frame's ragged edge, the last bin)."""
    xy = np.asarray(xy, float).reshape(-1, 2)
    finite = np.isfinite(xy).all(1)
    cell = np.floor(np.where(finite[:, None], xy, 0) / factor).astype(int)
    col = np.clip(cell[:, 0], 0, mask.shape[1] - 1)
    row = np.clip(cell[:, 1], 0, mask.shape[0] - 1)
    return mask[row, col] & finite


def on_grid(mask: np.ndarray, factor: int, rows, cols) -> np.ndarray:
    """(len(rows), len(cols)) bool: :func:`on_mask` of every pixel of the
    grid of integer pixel ``rows`` x ``cols`` (a regular subsample of a
    frame), by indexing the mask's rows and columns once each instead of
    every pixel's (0.2 s for the 1024^2 pixels of a frame's subsample)."""
    r = np.clip(np.asarray(rows, int) // factor, 0, mask.shape[0] - 1)
    c = np.clip(np.asarray(cols, int) // factor, 0, mask.shape[1] - 1)
    return mask[np.ix_(r, c)]


MAX_BINS = 2048  # the stored mask's longest side, in bins
MIN_SPACINGS = 8  # a frame narrower than this many spacings is kept whole


def frame_presence(data, nav_ndim: int, spacings: dict) -> tuple:
    """(masks (nav..., h, w) bool, bins (nav...) int) of every frame of
    ``data`` (nav..., H, W; numpy or dask: only a binned copy of each frame
    is read): where the lattice is, each frame at its own spacing
    (``spacings`` {frame: pixels}) on bins of its own :func:`bin_factor`
    (coarser where it would need more than :data:`MAX_BINS` bins a side),
    so that a frame of a stack gets the mask it gets alone; the masks of
    finer bins set the shape, the others padded with their edge. A frame's
    mask is all True where its spacing is under 3 bins (the lattice too fine
    to be told from noise at that scale) or it spans fewer than
    :data:`MIN_SPACINGS` spacings (too few cells to tell a crystal's edge
    from its middle)."""
    shape = data.shape[-2:]
    frames = list(np.ndindex(data.shape[:nav_ndim]))
    factors = {
        f: max(bin_factor(spacings[f]), int(np.ceil(max(shape) / MAX_BINS)))
        for f in frames
    }
    coarse = [binned(data[f], factors[f]) for f in frames]
    if engine.is_lazy(data):
        import dask

        coarse = dask.compute(*coarse)
    size = (shape[0] // min(factors.values()), shape[1] // min(factors.values()))
    masks = np.ones(data.shape[:nav_ndim] + size, bool)
    bins = np.zeros(data.shape[:nav_ndim], int)
    for f, c in zip(frames, coarse, strict=True):
        bins[f] = factors[f]
        s = spacings[f] / factors[f]
        if s < 3 or min(shape) < MIN_SPACINGS * spacings[f]:
            continue
        m = mask_of(_Field(c, s), s)
        pad = [(0, size[0] - m.shape[0]), (0, size[1] - m.shape[1])]
        masks[f] = np.pad(m, pad, mode="edge")
    return masks, bins


def edge_band(mask: np.ndarray, spacing: float) -> np.ndarray:
    """(h, w) bool: the mask's pixels within :data:`EDGE` ``spacing`` (bins)
    of where the lattice ends (not of the frame's border, beyond which it
    may go on): the mask's own reach beyond a crystal's edge."""
    inner = _eroded(mask, EDGE * spacing)
    return mask & ~inner


def faint_at_edge(xy, quantities: dict, noise, band: np.ndarray, factor: int):
    """(N,) bool: the columns on the ``band`` (:func:`edge_band`, bins of
    ``factor`` pixels) that the raw image does not show
    (:func:`stemunmix.core.uncertainty.undetected`): beside a crystal's
    edge the network finds peaks in the vacuum or support that the mask's
    resolution (about a spacing) lets in; inside, a faint column is kept."""
    if not len(xy) or not band.any():
        return np.zeros(len(xy), bool)
    return on_mask(xy, band, factor) & undetected(quantities, noise)


RENAMED_HEIGHT = 0.5  # an edge column renamed is this bright as its new class


def off_lattice_at_edge(
    xy, labels, in_band, vectors, height=None, tolerance: float = 0.12
):
    """((N,) bool, (N,) labels): the columns on the edge band (``in_band``)
    that sit off the lattice the columns inside continue, and the labels
    with the edge columns that sit on another class's lattice given that
    class. Off the lattice: more than ``tolerance`` (a share of the cell,
    along a or b) from every site one lattice translation (``vectors`` (2,
    2) [a, b], pixels) apart from the nearest inner column of a class.
    Peaks of an amorphous support beside a crystal fall anywhere; the
    crystal's own edge columns continue its lattice (relative to their
    neighbour: a uniform displacement does not count). On the amorphous
    corner case of ``benchmarks/structures.py`` the columns left beside
    the crystal were 12 / 5 / 4 at tolerances 0.25 / 0.15 / 0.1, the
    crystal's recall the same. An outermost B column of a perovskite, its
    A neighbours beyond missing, can be named A by the network: it is on
    the B lattice, and is named B (on that case, one or two of 85 columns
    were lost so) where its fitted ``height`` (N,) is at least half the
    median of that class's inner columns: a peak of the support or a fit
    to the crystal's tail in the vacuum is fainter. A class with no inner
    column, or NaN vectors, keeps its columns."""
    xy, labels = np.asarray(xy, float), np.asarray(labels)
    drop = np.zeros(len(xy), bool)
    vectors = np.asarray(vectors, float)
    if not in_band.any() or not np.isfinite(vectors).all():
        return drop, labels
    inverse = np.linalg.inv(vectors.T)  # pixels -> (along a, along b)
    edge = np.flatnonzero(in_band)
    height = np.full(len(xy), np.inf) if height is None else np.asarray(height)
    off = {}  # class -> (edge,) bool: off that class's lattice
    bright = {}  # class -> (edge,) bool: as bright as half its inner median
    for c in np.unique(labels):
        inner = np.flatnonzero((labels == c) & ~in_band)
        if not len(inner):
            continue
        _, near = cKDTree(xy[inner]).query(xy[edge])
        frac = (xy[edge] - xy[inner[near]]) @ inverse.T
        off[c] = (np.abs(frac - np.round(frac)) > tolerance).any(1)
        inner_height = height[inner][np.isfinite(height[inner])]
        typical = np.median(inner_height) if len(inner_height) else 0.0
        with np.errstate(invalid="ignore"):
            bright[c] = height[edge] >= RENAMED_HEIGHT * typical
    named = labels.copy()
    if not off:
        return drop, named
    classes = np.array(list(off))
    table = np.column_stack([off[c] for c in classes])  # (edge, classes)
    own = labels[edge][:, None] == classes[None, :]
    # off its own class's lattice (a class with no inner column keeps its own)
    stray = (table & own).any(1)
    on_other = ~table & ~own & np.column_stack([bright[c] for c in classes])
    drop[edge[stray & ~on_other.any(1)]] = True
    moved = stray & on_other.any(1)
    named[edge[moved]] = classes[on_other[moved].argmax(1)]
    return drop, named


MIN_STRAYS = 5  # off-lattice columns on the edge band that sample a support
STRAY_QUANTILE = 0.9  # of their heights: what the support's peaks reach


def as_faint_as_strays(height, labels, in_band, strays) -> np.ndarray:
    """(N,) bool: the columns on the edge band (``in_band``) no brighter
    than the support's own peaks beside the crystal and fainter than half
    the inner columns of their class. The columns found off the lattice
    there (``strays``, :func:`off_lattice_at_edge`) are peaks of the support
    (an amorphous film, contamination), and some land on a lattice site by
    chance (about 6 % of them, at its tolerance); those cannot be told from
    the crystal by place, only by height. With at least :data:`MIN_STRAYS`
    strays, an edge column whose fitted ``height`` is at most their
    :data:`STRAY_QUANTILE` quantile, and under :data:`RENAMED_HEIGHT` of
    its class's inner median, is one of them. A faint class (a perovskite's
    B at low dose) as bright as the support's peaks keeps its edge columns:
    on a lattice site, a column is far likelier than a stray. On vacuum, or
    beside a crystal whose support shows no peaks, nothing is judged. On
    the amorphous corner case of ``benchmarks/structures.py`` at dose 100
    the strays reached 0.1 of the inner columns' median height, the
    crystal's own edge columns no less than 0.22."""
    height, labels = np.asarray(height, float), np.asarray(labels)
    in_band, strays = np.asarray(in_band, bool), np.asarray(strays, bool)
    out = np.zeros(len(height), bool)
    sample = height[strays & np.isfinite(height)]
    if len(sample) < MIN_STRAYS:
        return out
    reach = np.quantile(sample, STRAY_QUANTILE)
    for c in np.unique(labels):
        inner = height[(labels == c) & ~in_band]
        inner = inner[np.isfinite(inner)]
        if not len(inner):
            continue
        limit = min(reach, RENAMED_HEIGHT * np.median(inner))
        mine = (labels == c) & in_band & ~strays
        with np.errstate(invalid="ignore"):
            out |= mine & ~(height > limit)
    return out
