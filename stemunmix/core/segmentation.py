"""Numerical core of segmentation: normalisation, spacing, resampling, tiling."""

from __future__ import annotations

import numpy as np


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


def normalize(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Robust per-image scaling: the ``low`` and ``high`` percentiles go to 0 and 1.

    Raises ValueError for non-finite pixels or a constant image.
    """
    lo, hi = intensity_range(image, low, high)
    return ((np.asarray(image, np.float32) - lo) / (hi - lo)).astype(np.float32)


def measure_spacing(image: np.ndarray, max_size: int = 512) -> float:
    """Shortest lattice period of an image in pixels, from its autocorrelation.

    The central ``max_size`` crop is high-passed and windowed. Beyond the central
    lobe of its autocorrelation, the nearest peak at least 0.8 times as high as
    the strongest one is the shortest translation that maps the pattern onto
    itself (peaks between unlike columns, e.g. A-B, are lower).
    """
    from scipy.ndimage import maximum_filter

    img = np.asarray(image, dtype=np.float64)
    h, w = img.shape
    top, left = max(0, (h - max_size) // 2), max(0, (w - max_size) // 2)
    img = img[top : top + max_size, left : left + max_size]
    # High-pass: subtract a Gaussian blur (sigma 1/8 of the crop) taken in
    # Fourier space (periodic edges; the window below hides them).
    sigma = min(img.shape) / 8
    fy = np.fft.fftfreq(img.shape[0])[:, None]
    fx = np.fft.rfftfreq(img.shape[1])[None, :]
    blur = np.exp(-2 * (np.pi * sigma) ** 2 * (fy**2 + fx**2))
    img = img - np.fft.irfft2(np.fft.rfft2(img) * blur, s=img.shape)
    img *= np.outer(np.hanning(img.shape[0]), np.hanning(img.shape[1]))
    spectrum = np.abs(np.fft.rfft2(img, s=(2 * img.shape[0], 2 * img.shape[1]))) ** 2
    acf = np.fft.fftshift(np.fft.irfft2(spectrum))
    cy, cx = np.array(acf.shape) // 2
    yy, xx = np.indices(acf.shape)
    r = np.hypot(yy - cy, xx - cx)
    radial = np.bincount(r.astype(int).ravel(), acf.ravel()) / np.bincount(
        r.astype(int).ravel()
    )
    below = np.flatnonzero(radial <= 0.5 * radial[0])
    if len(below) == 0:
        raise ValueError("no lattice found: the image autocorrelation has no period")
    r0 = 2 * below[0]
    limit = min(img.shape) / 3
    local_max = maximum_filter(acf, size=5)
    peaks = (acf == local_max) & (r > r0) & (r < limit)
    if not peaks.any():
        raise ValueError(
            "no lattice found: no periodic columns within a third of the image; "
            "pass scale=<factor> explicitly"
        )
    candidates = np.flatnonzero(peaks.ravel())
    height = acf.ravel()[candidates]
    strong = candidates[height >= 0.8 * height.max()]
    best = strong[np.argmin(r.ravel()[strong])]
    py, px = np.unravel_index(best, acf.shape)
    # A lattice repeats: the correlation at the period stands out of the noise,
    # and it comes back at twice the period (random texture does neither).
    second = local_max[2 * py - cy, 2 * px - cx]
    if acf[py, px] < 0.05 * acf[cy, cx] or second < 0.5 * acf[py, px]:
        raise ValueError(
            "no lattice found: the image shows no periodic atomic columns; "
            "check it is an atomic-resolution image, or pass scale=<factor>"
        )
    # Sub-pixel: parabola through the peak along each axis.
    dy = _parabola(acf[py - 1, px], acf[py, px], acf[py + 1, px])
    dx = _parabola(acf[py, px - 1], acf[py, px], acf[py, px + 1])
    return float(np.hypot(py + dy - cy, px + dx - cx))


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


def tile_windows(shape, tile: int, halo: int, multiple: int):
    """Overlapping windows that cover an image; each keeps its core.

    Returns a list of ``(window, core)`` pairs of ``(y0, y1, x0, x1)`` boxes in
    image pixels: the network runs on ``window``, and the result is kept on
    ``core`` (which tiles the image exactly). Each core has at least ``halo``
    pixels of context wherever the image extends that far. Window sizes are
    multiples of ``multiple`` or the whole image.
    """

    def spans(n):
        win = int(np.ceil((tile + 2 * halo) / multiple) * multiple)
        if n <= win:
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
