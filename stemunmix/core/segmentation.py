"""Numerical core of segmentation: normalisation, spacing, resampling, tiling."""

from __future__ import annotations

import functools
import hashlib

import numpy as np

from stemunmix.core.engine import is_lazy


def intensity_range(
    image: np.ndarray, low: float = 1.0, high: float = 99.0, max_samples=4_000_000
) -> tuple[float, float]:
    """The ``low`` and ``high`` percentiles of an image (from a regular subsample
    of at most ``max_samples`` pixels, so large images need no full copy).

    Raises ValueError for non-finite pixels or a constant image.
    """
    step = max(1, int(np.ceil(np.sqrt(image.size / max_samples))))
    sample = np.asarray(image[::step, ::step], dtype=np.float64)
    if not (np.all(np.isfinite(sample)) and np.all(np.isfinite(image))):
        raise ValueError(
            "image contains NaN or inf pixels; replace them (e.g. with the median) "
            "before segmenting"
        )
    lo, hi = np.percentile(sample, [low, high])
    if not hi > lo:
        lo, hi = float(np.min(image)), float(np.max(image))
    if not hi > lo:
        raise ValueError("image is constant: there are no atomic columns to find")
    return float(lo), float(hi)


PAD_REACH = 3  # a pixel is padding inside a (2 * PAD_REACH + 1)^2 flat run
FILL_QUANTILE = 10  # percentile of the rest of the frame that padding reads


def padding(image: np.ndarray, value: float | None = None) -> np.ndarray:
    """(H, W) bool: the pixels of a flat run of ``value`` (default: the
    image's minimum) at least :data:`PAD_REACH` * 2 + 1 pixels square, and
    those of that value joined to one. Vacuum read as exact zeros, and the
    corners a drift or rotation correction pads, are no part of the image:
    a step from the crystal's background down to them reads to the network
    as an edge, and an outermost column beside one was placed three pixels
    off (``benchmarks/structures.py``, the corner on zeros). Shot noise has
    no such runs: 49 pixels of one value at a mean of 0.5 counts has odds
    of 2e-11."""
    from scipy import ndimage

    image = np.asarray(image)
    if not image.size:
        return np.zeros(image.shape, bool)
    flat = image == (image.min() if value is None else value)
    if not flat.any():
        return flat
    square = np.ones((2 * PAD_REACH + 1,) * 2, bool)
    core = ndimage.binary_erosion(flat, square, border_value=1)
    return ndimage.binary_dilation(core, square) & flat


def check_finite(image: np.ndarray) -> None:
    """ValueError naming the fix where ``image`` holds NaN or inf pixels."""
    if np.asarray(image).size == 0:
        raise ValueError("the image is empty")
    if not np.all(np.isfinite(image)):
        raise ValueError(
            "the image has NaN or inf pixels; replace them (e.g. "
            "s.data[~np.isfinite(s.data)] = np.nanmedian(s.data)) before segmenting"
        )


def normalize(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Robust per-image scaling: the ``low`` and ``high`` percentiles go to 0 and 1.

    Raises ValueError for non-finite pixels or a constant image.
    """
    lo, hi = intensity_range(image, low, high)
    return ((np.asarray(image, np.float32) - lo) / (hi - lo)).astype(np.float32)


def central(shape, size: int) -> tuple[slice, slice]:
    """The slices of the central ``size`` x ``size`` crop of a frame of
    ``shape`` (all of a smaller one): where the spacing is measured."""
    h, w = shape[-2:]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return slice(top, top + size), slice(left, left + size)


_MEASURED: dict = {}  # (shape, max_size, digest) -> spacing, the last few


def measure_spacing(image: np.ndarray, max_size: int = 512) -> float:
    """:func:`spacing_of` once per crop: segment() reads the central crop of
    each frame twice (the contrast, then the plan), and the crop's digest
    (about 1 ms for 512^2) costs less than measuring it again."""
    img = np.ascontiguousarray(
        np.asarray(image)[central(np.shape(image), max_size)], np.float64
    )  # the central crop spacing_of reads, and only that
    key = (img.shape, max_size, hashlib.blake2b(img.tobytes(), digest_size=16).digest())
    if key not in _MEASURED:
        value = spacing_of(img, max_size)  # raises for no lattice: not kept
        if len(_MEASURED) >= 16:
            _MEASURED.pop(next(iter(_MEASURED)))
        _MEASURED[key] = value
    return _MEASURED[key]


def frame_spacing(frame, crop=None, max_size: int = 512) -> float:
    """The column spacing of a frame (numpy or dask): on its central crop
    (``crop`` where already read); where that shows no lattice (a crystal
    off centre, in vacuum or on a support), the median over the overlapping
    tiles of a quarter of the frame that show one (the whole frame read
    only then)."""
    if crop is None:
        crop = np.asarray(frame[central(frame.shape, max_size)])
    try:
        return measure_spacing(crop, max_size)
    except NoLatticeError:
        if (
            tuple(np.shape(frame)) == tuple(np.shape(crop))
            and min(np.shape(crop)) < 128
        ):
            raise
    frame = np.asarray(frame, np.float64)
    h, w = frame.shape
    side = max(64, min(h, w) // 4)
    found = []
    for top in range(0, max(1, h - side + 1), side // 2):
        for left in range(0, max(1, w - side + 1), side // 2):
            try:
                found.append(spacing_of(frame[top : top + side, left : left + side]))
            except (NoLatticeError, ValueError):
                continue
    if not found:
        return measure_spacing(crop, max_size)  # says why there is no lattice
    return float(np.median(found))


# Peaks are looked for beyond LOBE times the radius where the
# autocorrelation's radial mean falls to half (the central lobe, a column's
# own width); a peak beyond FINE_LOBE times it, at half the period found, is
# the period, where it passes as a lattice too. With LOBE alone the real
# tk_r_em particle 1 (columns 7-8 px apart, their lobe 4-5 px) lost its
# lattice peak (8.0 px) and read its moire (15.9); FINE_LOBE alone found a
# period in the central crop of particle 2, which shows none (32.1 px), and
# every other image here reads the same spacing either way
# (benchmarks/particle_lattice.py).
LOBE, FINE_LOBE = 2.0, 1.5


def spacing_of(image: np.ndarray, max_size: int = 512) -> float:
    """Shortest lattice period of an image in pixels, from its autocorrelation.

    The central ``max_size`` crop is high-passed and windowed. Beyond the central
    lobe of its autocorrelation, the nearest peak at least 0.8 times as high as
    the strongest one is the shortest translation that maps the pattern onto
    itself (peaks between unlike columns, e.g. A-B, are lower); one at half
    that period, closer to the lobe (:data:`FINE_LOBE`), is taken instead
    where it passes as a lattice (closely packed columns under a moire).
    """
    from scipy.ndimage import maximum_filter

    img = np.asarray(image, dtype=np.float64)[central(np.shape(image), max_size)]
    if not np.isfinite(img).all():
        raise ValueError("image contains NaN or inf pixels; replace them first")
    if not np.ptp(img) > 0:
        raise ValueError("image is constant: there are no atomic columns to find")
    # High-pass: subtract a Gaussian blur (sigma 1/8 of the crop) taken in
    # Fourier space (periodic edges; the window below hides them).
    sigma = min(img.shape) / 8
    fy = np.fft.fftfreq(img.shape[0])[:, None]
    fx = np.fft.rfftfreq(img.shape[1])[None, :]
    blur = np.exp(-2 * (np.pi * sigma) ** 2 * (fy**2 + fx**2))
    img = img - np.fft.irfft2(np.fft.rfft2(img) * blur, s=img.shape)
    img *= np.outer(np.hanning(img.shape[0]), np.hanning(img.shape[1]))
    spectrum_shape = (2 * img.shape[0], 2 * img.shape[1])
    spectrum = np.abs(np.fft.rfft2(img, s=spectrum_shape)) ** 2
    acf = np.fft.fftshift(np.fft.irfft2(spectrum))
    cy, cx = np.array(acf.shape) // 2
    yy, xx = np.indices(acf.shape)
    r = np.hypot(yy - cy, xx - cx)
    radial = np.bincount(r.astype(int).ravel(), acf.ravel()) / np.bincount(
        r.astype(int).ravel()
    )
    below = np.flatnonzero(radial <= 0.5 * radial[0])
    if len(below) == 0:
        raise NoLatticeError(
            "no lattice found: the image autocorrelation has no period"
        )
    limit = min(img.shape) / 3
    local_max = maximum_filter(acf, size=5)
    peak = _nearest_strong(acf, local_max, r, LOBE * below[0], limit)
    if peak is None:
        raise NoLatticeError(
            "no lattice found: no periodic columns within a third of the image; "
            "for a small image pass spacing=<column spacing in pixels>"
        )
    _check_lattice(acf, local_max, peak, img.shape)
    # a period whose peak the central lobe hid: half the one found
    finer = _nearest_strong(acf, local_max, r, FINE_LOBE * below[0], limit)
    if finer is not None and 0.45 < r[finer] / r[peak] < 0.55:
        try:
            _check_lattice(acf, local_max, finer, img.shape)
            peak = finer
        except NoLatticeError:
            pass
    py, px = peak
    # Sub-pixel: parabola through the peak along each axis.
    dy = _parabola(acf[py - 1, px], acf[py, px], acf[py + 1, px])
    dx = _parabola(acf[py, px - 1], acf[py, px], acf[py, px + 1])
    return float(np.hypot(py + dy - cy, px + dx - cx))


def _nearest_strong(acf, local_max, r, r0, limit):
    """(row, col) of the nearest autocorrelation peak beyond ``r0`` and
    within ``limit`` at least 0.8 times as high as the strongest there (peaks
    between unlike columns, e.g. A-B, are lower); None without a peak."""
    peaks = (acf == local_max) & (r > r0) & (r < limit)
    if not peaks.any():
        return None
    candidates = np.flatnonzero(peaks.ravel())
    height = acf.ravel()[candidates]
    strong = candidates[height >= 0.8 * height.max()]
    return np.unravel_index(strong[np.argmin(r.ravel()[strong])], acf.shape)


def _check_lattice(acf, local_max, peak, shape) -> None:
    """NoLatticeError where the autocorrelation's ``peak`` (row, col) is no
    2D lattice's period."""
    py, px = peak
    cy, cx = np.array(acf.shape) // 2
    # A lattice repeats: the correlation at the period stands out of the noise,
    # and it comes back at twice the period (random texture does neither).
    # Both against the window's own autocorrelation at their lags, which
    # falls with the lag: a large spacing (a few periods in the crop) then
    # counts as the lattice it is.
    wacf = _window_acf(shape)
    first = acf[py, px] / wacf[py, px]
    second = local_max[2 * py - cy, 2 * px - cx] / wacf[2 * py - cy, 2 * px - cx]
    # Noise correlates by chance at about 6 / sqrt(pixels) of the zero lag
    # (measured: 0.07-0.09 on 64^2, 0.01-0.015 on 512^2); lattices at 0.15
    # (the real low-dose SrTiO3) to 0.99.
    relative = first / (acf[cy, cx] / wacf[cy, cx])
    floor = max(0.05, 10 / np.sqrt(shape[0] * shape[1]))
    if acf[py, px] < 0.05 * acf[cy, cx] or relative < floor or second < 0.5 * first:
        raise NoLatticeError(
            "no lattice found: the image shows no periodic atomic columns; "
            "check it is an atomic-resolution image, or pass spacing=<column "
            "spacing in pixels>"
        )
    # A 2D lattice: halfway to the next row of lattice points, across the
    # shortest translation, the correlation is low; fringes, stripes and other
    # 1D patterns correlate along the whole ridge through the peak.
    if ridge_ratio(acf, (py, px), (cy, cx)) > MAX_RIDGE:
        raise NoLatticeError(
            "no lattice found: the image repeats along one direction only "
            "(stripes, fringes or lattice planes), not as columns on a 2D "
            "lattice; check it is an atomic-resolution image of columns"
        )


DARK_ASYMMETRY = 0.8  # bright-column images measure 1.8-3.6, the real ABF 0.57


def contrast_asymmetry(image: np.ndarray, spacing: float) -> float:
    """How far the columns stand above (> 1) or below (< 1) the background.

    The image is smoothed over a tenth of the column ``spacing`` (shot noise
    out) and its background, a blur over two spacings, subtracted; the ratio
    of the 99th percentile's distance above the median to the 1st one's below
    it is then well above 1 for bright columns on a dark background (HAADF,
    ADF: 1.8-3.6 on the central crops of the real images in ../shared/data,
    including low dose and MoS2; 8-9 on synthetic ones) and below 1 for dark
    columns on a bright one (the real SrTiO3 ABF: 0.57; the PMN iDPC image,
    bright columns with a symmetric histogram: 0.98).
    """
    img = np.asarray(image, np.float64)
    spacing = float(spacing)
    # Both blurs in one pass in Fourier space (periodic edges; only the
    # histogram counts): a spatial blur over two spacings is slow.
    fy = np.fft.fftfreq(img.shape[0])[:, None] ** 2
    fx = np.fft.rfftfreq(img.shape[1])[None, :] ** 2
    f2 = 2 * np.pi**2 * (fy + fx)
    band = np.exp(-f2 * max(1.0, 0.1 * spacing) ** 2) - np.exp(-f2 * (2 * spacing) ** 2)
    rest = np.fft.irfft2(np.fft.rfft2(img) * band, s=img.shape)
    lo, mid, hi = np.percentile(rest, [1, 50, 99])
    return float((hi - mid) / max(mid - lo, 1e-12 * max(abs(hi), 1.0)))


class ContrastError(ValueError):
    """The image's contrast is not one the model can segment (dark columns,
    where the O columns show, with a model without an O class)."""


class NoLatticeError(ValueError):
    """The image shows no 2D lattice of atomic columns."""


MAX_RIDGE = 0.7  # see ridge_ratio: real lattices measure <= 0.45, stripes 0.92


def ridge_ratio(acf: np.ndarray, peak, centre) -> float:
    """Autocorrelation half a period across the shortest translation (both
    sides, the larger), over its value at the translation: about 0.1-0.3 for
    columns on a 2D lattice, near 1 for a 1D pattern (a ridge)."""
    from scipy.ndimage import map_coordinates

    vy, vx = peak[0] - centre[0], peak[1] - centre[1]
    pts = [[peak[0] + t * vx, peak[1] - t * vy] for t in (-0.5, 0.5)]
    across = map_coordinates(acf, np.array(pts).T, order=1, mode="nearest")
    return float(np.max(across) / acf[peak])


@functools.lru_cache(maxsize=8)
def _window_acf(shape) -> np.ndarray:
    """Autocorrelation of the Hann window of a crop of ``shape``, on the
    zero-padded grid of :func:`measure_spacing` (the same for every crop of
    that shape: computed once)."""
    win = np.outer(np.hanning(shape[0]), np.hanning(shape[1]))
    spectrum = np.abs(np.fft.rfft2(win, s=(2 * shape[0], 2 * shape[1]))) ** 2
    out = np.fft.fftshift(np.fft.irfft2(spectrum))
    out.setflags(write=False)
    return out


def _parabola(a, b, c) -> float:
    denom = a - 2 * b + c
    return 0.0 if denom == 0 else 0.5 * (a - c) / denom


def _interp_axis(a: np.ndarray, coords: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of ``a`` at fractional ``coords`` along ``axis``
    (edge values beyond the ends)."""
    n = a.shape[axis]
    coords = np.clip(coords, 0, n - 1)
    i0 = np.minimum(np.floor(coords).astype(int), n - 2) if n > 1 else coords * 0
    w = (coords - i0).astype(np.float32)
    shape = [1] * a.ndim
    shape[axis] = len(coords)
    w = w.reshape(shape)
    lo = np.take(a, i0, axis=axis)
    if n == 1:
        return lo
    hi = np.take(a, i0 + 1, axis=axis)  # a new array: safe to work in place
    hi = hi.astype(np.result_type(a.dtype, np.float32), copy=False)
    # lo + (hi - lo) * w, in place: three passes, no temporaries.
    hi -= lo
    hi *= w
    hi += lo
    return hi


def resample(image: np.ndarray, factor: float) -> np.ndarray:
    """Resample by ``factor`` (> 1 enlarges): output pixel j samples input j / factor.

    Separable linear interpolation over the last two axes, float32; with the
    inverse mapping of :func:`resample_back` the pixel centres of both grids line
    up exactly.
    """
    if factor == 1:
        return image
    h, w = image.shape[-2:]
    out_h, out_w = max(1, round(h * factor)), max(1, round(w * factor))
    image = np.asarray(image, np.float32)
    rows = _interp_axis(image, np.arange(out_h) / factor, image.ndim - 2)
    return _interp_axis(rows, np.arange(out_w) / factor, image.ndim - 1)


def resample_back(maps: np.ndarray, factor: float, shape) -> np.ndarray:
    """Sample resampled ``maps`` (..., h, w) back at the pixels of ``shape``."""
    if factor == 1:
        return maps
    rows = _interp_axis(maps, np.arange(shape[0]) * factor, maps.ndim - 2)
    return _interp_axis(rows, np.arange(shape[1]) * factor, maps.ndim - 1)


def square_pixels(data, scale):
    """``data`` (..., H, W), numpy or dask, with pixels ``scale`` = (x, y) in
    any one unit, linearly interpolated along its coarser axis onto the finer
    pixel size: (new data, the pixel size). Output pixel k of that axis samples
    input pixel k * fine / coarse, so the first pixel centre stays put."""
    sx, sy = (float(v) for v in scale)
    fine = min(sx, sy)
    axis = data.ndim - 1 if sx > sy else data.ndim - 2
    coarse = max(sx, sy)
    if coarse == fine:
        return data, fine
    n = data.shape[axis]
    m = int(np.floor((n - 1) * coarse / fine + 1e-9)) + 1
    coords = np.arange(m) * fine / coarse
    if not is_lazy(data):
        return _interp_axis(np.asarray(data, np.float32), coords, axis), fine
    import dask.array as da

    data = data.rechunk({axis: -1})
    chunks = list(data.chunks)
    chunks[axis] = (m,)
    return da.map_blocks(
        lambda b: _interp_axis(np.asarray(b, np.float32), coords, axis),
        data,
        chunks=tuple(chunks),
        dtype=np.float32,
    ), fine


def tile_windows(shape, tile: int, halo: int, multiple: int):
    """Overlapping windows that cover an image; each keeps its core.

    Returns a list of ``(window, core)`` pairs of ``(y0, y1, x0, x1)`` boxes in
    image pixels: the network runs on ``window``, and the result is kept on
    ``core`` (which tiles the image exactly). Each core has at least ``halo``
    pixels of context wherever the image extends that far. Window sizes are
    multiples of ``multiple`` or the whole image. An axis up to a quarter of
    a tile longer than one window is one window: two would each carry a
    whole tile and its halo (a 1317 px axis in 1312 px windows ran the
    network on four times its pixels).
    """

    def spans(n):
        win = int(np.ceil((tile + 2 * halo) / multiple) * multiple)
        if n <= win + tile // 4:
            return [((0, n), (0, n))]
        out = []
        for c0 in range(0, n, tile):
            c1 = min(n, c0 + tile)
            w0 = int(np.clip(c0 - halo, 0, n - win))
            out.append(((w0, w0 + win), (c0, c1)))
        return out

    return [
        ((wy[0], wy[1], wx[0], wx[1]), (cy[0], cy[1], cx[0], cx[1]))
        for wy, cy in spans(shape[0])
        for wx, cx in spans(shape[1])
    ]
