"""The error model of column positions (numpy only).

A fitted position is off by what the pixels' noise projects onto the fit
(:func:`stemunmix.core.refine.position_terms`), and by what moves a column as a
whole without adding pixel noise. Four terms, each measured on the image:

- ``shot``: the least-squares covariance under the fitted noise model
  (variance = gain x signal + variance0), the pixels independent;
- ``misfit``: the residuals' variance beyond that model, once the part of the
  misfit every cell repeats (the lattice-periodic mean residual, which moves no
  column relative to another) is taken out: the varying misfit of non-Gaussian
  columns and overlapping neighbours, as a factor on ``shot``;
- ``correlated``: the residuals' spatial autocorrelation (averaged, filtered,
  resampled frames; the detector's response along the scan), propagated
  through each column's own fit, as a factor on ``shot + misfit``;
- ``scan``: what moves whole columns: scan distortion at the columns' scale,
  and whatever else displaces a column without pixel noise. It is measured on
  the reference (A) lattice: its deviation from a locally smooth lattice (the
  second difference across the scan lines) beyond what the pixel terms
  predict, one 2 x 2 covariance per frame added to every column.

The pixel terms are measured on the middle of a frame (at most
:data:`PIXEL_CROP` squared pixels), whose fitted model the columns found there
render. Positions are [x, y] pixels; covariances (..., 2, 2) pixels^2.
"""

from __future__ import annotations

import functools
import zlib

import numpy as np
from scipy.fft import irfft2, next_fast_len, rfft2
from scipy.spatial import cKDTree

from stemunmix.core.refine import WEIGHT_FLOOR, refine_gaussian, render

MAD = 1.4826  # robust standard deviation of a normal distribution per MAD
FITTED = ("height", "width", "background")  # a column's fit, as the model reads it
FIT_KEY = {"height": "height", "width": "sigma", "background": "background"}
# The lattice's second difference across the scan lines: a site less the mean
# of its two neighbours along b (i, j -+ 1), the lattice vector more nearly
# along the slow scan. Its neighbours along a share the site's scan lines, so
# line jitter would cancel in a 4-neighbour Laplacian, though it moves a B
# column against its A corners (on other lines) in full.
LAPLACIAN_GAIN = 1.5  # variance of that second difference of iid positions
MIN_SNR = 3.0  # fitted height over its standard error: below, not detected
# The faintest B column relative to A in HAADF (Fe in BiFeO3: about 0.08).
FAINTEST_RATIO = 0.05
# The pixel factors of a class are measured on its columns of at least this
# height SNR, where it has FACTOR_COLUMNS of them in the crop.
FACTOR_SNR = 10.0
FACTOR_COLUMNS = 8
PIXEL_CROP = 256  # side of the frame's middle the pixel terms are measured on
# The pixel terms shrink at most to this share of their variance (a lattice
# smoother than they predict: a fit held near the network's regular guess).
MIN_SHRINK = 0.25
# A robust spread (MAD) of M normal values scatters by about 1.16 / sqrt(M)
# of its value: the lattice tests change a term only beyond two of those.
MAD_ERROR = 1.16


def _gate(m: int) -> float:
    """How far from 1 a robust spread of ``m`` values must be to count."""
    return 2 * MAD_ERROR / np.sqrt(max(m, 1))


def shot_covariance(terms: np.ndarray, noise: tuple[float, float]) -> np.ndarray:
    """(N, 2, 2) covariance of each fitted position [x, y] under the noise
    model ``noise`` (gain, variance0), from the (N, 6) ``position_terms`` of
    :func:`stemunmix.core.refine.refine_gaussian`; NaN where unknown."""
    gain, var0 = noise
    t = np.asarray(terms, float).reshape(-1, 6)
    xx, yy, xy = (gain * t[:, i] + var0 * t[:, 3 + i] for i in range(3))
    cov = np.stack([np.stack([xx, xy], -1), np.stack([xy, yy], -1)], -2)
    cov[:, 0, 0] = np.clip(cov[:, 0, 0], 0, None)
    cov[:, 1, 1] = np.clip(cov[:, 1, 1], 0, None)
    return cov


def line_width(quantities: dict, noise) -> np.ndarray:
    """(N,) the width (px) of each column's position information across the
    scan lines: sqrt(2) x the standard deviation of the weights with which
    the noise-weighted fit averages the lines' shifts (a line at dy from the
    centre weighs sum over its pixels of (dG/dx)^2 / variance, the variance
    read at no less than the half height, :data:`WEIGHT_FLOOR`). Where the
    background's noise dominates the weights fall as G^2 and the width is
    the fitted one; where the column's own shot noise does (a bright
    column), they fall more slowly on its peak and the width is up to 4 %
    larger (sqrt(2) times it were the variance read at every level). Columns
    sharing scan lines share line noise by the overlap of these weights
    (:func:`stemunmix.core.measure.line_cross`). ``quantities``: ``height``,
    ``width``, ``background``; ``noise``: (gain, variance0)."""
    gain, var0 = (float(v) for v in noise)
    width = np.asarray(quantities["width"], float)
    with np.errstate(invalid="ignore", divide="ignore"):
        floor = gain * np.clip(np.asarray(quantities["background"], float), 0, None)
        kappa = gain * np.asarray(quantities["height"], float) / (floor + var0)
    kappa = np.where(np.isfinite(kappa) & (kappa > 0), kappa, 0.0)
    grid, ratio = _line_width_table()
    return width * np.interp(np.log10(np.maximum(kappa, 10.0 ** grid[0])), grid, ratio)


@functools.cache
def _line_width_table() -> tuple:
    """(log10 kappa, line width over the Gaussian's width) for a column of
    peak over background variance kappa (:func:`line_width`)."""
    grid = np.linspace(-4.0, 6.0, 81)
    u = np.linspace(-7.0, 7.0, 281)
    g = np.exp(-(u[:, None] ** 2 + u[None, :] ** 2) / 2)  # (dy, x), width 1
    ratio = []
    for kappa in 10.0**grid:
        var = np.maximum(1 + kappa * g, 1 + WEIGHT_FLOOR * kappa)
        line = (u[None, :] ** 2 * g**2 / var).sum(1)
        ratio.append(np.sqrt(2 * (u**2 * line).sum() / line.sum()))
    return grid, np.array(ratio)


def undetected(quantities: dict, noise, min_snr: float = MIN_SNR) -> np.ndarray:
    """(N,) bool: columns whose fitted height is below ``min_snr`` standard
    errors of the noise at their background (the height of a Gaussian of
    width s fitted to pixels of variance v has a standard error of about
    sqrt(v / (pi s^2))), or whose fit is missing. Their position is the
    network's guess, not a measurement on the raw image; their error bar is
    unknown (NaN)."""
    return ~(column_snr(quantities, noise) >= min_snr)


def column_snr(quantities: dict, noise) -> np.ndarray:
    """(N,) each column's fitted height over its standard error (NaN where
    the fit is missing); see :func:`undetected`."""
    gain, var0 = noise
    height = np.asarray(quantities["height"], float)
    width = np.asarray(quantities["width"], float)
    var = gain * np.clip(np.asarray(quantities["background"], float), 0, None) + var0
    with np.errstate(invalid="ignore", divide="ignore"):
        return height * np.sqrt(np.pi) * width / np.sqrt(var)


def residual_field(image, xy, fitted: dict, radius, noise):
    """(standardised residual u, variance per pixel) of ``image`` against the
    fitted model of its columns (:func:`fitted_model`); u = residual /
    sqrt(variance of the noise model). Columns with a NaN fit leave their
    pixels out (NaN)."""
    image = np.asarray(image, float)
    return _standardised(image, fitted_model(image.shape, xy, fitted, radius), noise)


def _standardised(image, mu, noise) -> tuple:
    gain, var0 = noise
    var = gain * np.clip(mu, 0, None) + var0
    var = np.where(var > 0, var, np.nan)
    return (image - mu) / np.sqrt(var), var


def fitted_model(shape, xy, fitted: dict, radius, near=None) -> np.ndarray:
    """(H, W) the fitted columns' Gaussians (``fitted`` ``height`` and
    ``width`` at ``xy``) on the ``background`` of the nearest column (NaN
    without a column with a finite fit). ``near``: the
    :func:`nearest_column` map of the columns with a finite fit, where it is
    known."""
    height, width, background = (fitted[k] for k in ("height", "width", "background"))
    ok = np.isfinite(height) & np.isfinite(width) & np.isfinite(background)
    params = np.column_stack([height, xy, width, background])[ok]
    model = np.zeros(shape)
    render(np.ascontiguousarray(params), int(radius), model)
    if len(params) == 0:
        return np.full(shape, np.nan)
    if near is None:
        near = nearest_column(shape, params[:, 1:3])
    return model + params[near, 4]


def nearest_column(shape, xy) -> np.ndarray:
    """(H, W) index of the column of ``xy`` nearest each pixel, looked up on
    a grid of every second pixel (the background it serves changes slowly
    between neighbours)."""
    h, w = shape
    rows, cols = np.mgrid[:h:2, :w:2]
    _, near = cKDTree(xy).query(np.column_stack([cols.ravel(), rows.ravel()]))
    return near.reshape(rows.shape).repeat(2, 0).repeat(2, 1)[:h, :w]


def aperiodic_part(u: np.ndarray, vectors, origin, cells: int = 4) -> np.ndarray:
    """``u`` (..., H, W) less its lattice-periodic mean, local: the mean of the
    pixels at the same fractional position (binned at about a pixel) in each
    block of ``cells`` x ``cells`` cells spanned by ``vectors`` (2, 2) [a, b]
    from ``origin`` [x, y]; what neighbouring cells repeat (two materials, a
    layer, a domain each have their own). The difference is scaled by
    sqrt(n / (n - 1)) (n the cells of the block: each pixel's own share of
    its mean), so that the noise left has its variance."""
    h, w = u.shape[-2:]
    inv = np.linalg.inv(np.asarray(vectors, float).T)  # pixels -> (a, b)
    x, y = np.arange(w) - origin[0], np.arange(h) - origin[1]
    whole = inv[:, 0, None, None] * x + inv[:, 1, None, None] * y[:, None]
    whole = whole.reshape(2, -1)
    cell = np.floor(whole)
    frac = whole - cell
    block = np.floor(cell / cells).astype(np.int64)
    block -= block.min(1, keepdims=True)
    bins = [max(4, int(np.hypot(*v))) for v in np.asarray(vectors, float)]
    ia = np.minimum((frac[0] * bins[0]).astype(np.int64), bins[0] - 1)
    ib = np.minimum((frac[1] * bins[1]).astype(np.int64), bins[1] - 1)
    nb = int(block[1].max()) + 1
    idx = ((block[0] * nb + block[1]) * bins[0] + ia) * bins[1] + ib
    out = np.empty(u.shape)
    for one, put in zip(u.reshape(-1, h * w), out.reshape(-1, h * w), strict=True):
        use = np.isfinite(one)
        n = np.bincount(idx[use], minlength=idx.max() + 1)
        s = np.bincount(idx[use], one[use], minlength=idx.max() + 1)
        mean = np.where(n > 1, s / np.maximum(n, 1), 0.0)
        own = np.where(n > 1, n / np.maximum(n - 1, 1), 1.0)
        put[:] = (one - mean[idx]) * np.sqrt(own[idx])
    return out


def autocovariance(u: np.ndarray, max_lag: int) -> np.ndarray:
    """(2 L + 1, 2 L + 1) autocovariance of ``u`` at lags -L..L (rows: dy,
    columns: dx), NaN pixels left out; entry [L, L] is the variance."""
    ok = np.isfinite(u)
    v = np.where(ok, u - (u[ok].mean() if ok.any() else 0.0), 0.0)
    m = ok.astype(float)
    shape = tuple(next_fast_len(n + max_lag, real=True) for n in u.shape)

    def corr(a):
        f = rfft2(a, s=shape)
        c = irfft2(f * np.conj(f), s=shape)
        c = np.roll(np.roll(c, max_lag, 0), max_lag, 1)
        return c[: 2 * max_lag + 1, : 2 * max_lag + 1]

    pairs = corr(m)
    return np.where(pairs > 0.5, corr(v) / np.maximum(pairs, 1), 0.0)


def correlated_covariance(image_shape, params, radius, var, acov):
    """(N, 2, 2) position covariances of the columns' Gaussian fits
    (``params`` (N, 5): height, x, y, width, background) when the pixel noise
    has variance ``var`` (H, W) and the standardised autocovariance ``acov``
    (:func:`autocovariance`; a stack (..., 2 L + 1, 2 L + 1) gives a stack
    of results), and (N, 2, 2) the same for independent pixels of that
    variance (acov's centre only). A column's position error is the
    linear map A^-1 J^T of its patch's noise; its covariance sums that map's
    products at every lag weighted by the autocovariance (all columns at
    once, by FFT). NaN for columns whose patch leaves the image or the
    finite variance."""
    h, w = image_shape
    acov = np.asarray(acov, float)
    stack = acov.reshape(-1, *acov.shape[-2:])
    lag = acov.shape[-1] // 2
    m = 2 * int(radius) + 1
    params = np.asarray(params, float).reshape(-1, 5)
    out = np.full((len(stack), len(params), 2, 2), np.nan)
    white = np.full((len(stack), len(params), 2, 2), np.nan)
    shape = acov.shape[:-2] + (len(params), 2, 2)
    corner = np.round(params[:, 1:3]).astype(int) - int(radius)  # x0, y0
    inside = ((corner >= 0) & (corner + m <= np.array([w, h]))).all(1)
    inside &= np.isfinite(params).all(1)
    k = np.flatnonzero(inside)
    if len(k) == 0:
        return out.reshape(shape), white.reshape(shape)
    grid = np.arange(m)
    py = corner[k, 1, None, None] + grid[None, :, None]  # (K, m, 1)
    px = corner[k, 0, None, None] + grid[None, None, :]  # (K, 1, m)
    local = var[py, px]  # (K, m, m)
    good = np.isfinite(local).all((1, 2))
    k, py, px, local = k[good], py[good], px[good], local[good]
    a, cx, cy, s = (params[k, i, None, None] for i in range(4))
    dx, dy = px - cx, py - cy
    g = np.exp(-(dx * dx + dy * dy) / (2 * s * s))
    jac = np.stack(
        [
            g,
            a * g * dx / s**2,
            a * g * dy / s**2,
            a * g * (dx * dx + dy * dy) / s**3,
            np.ones_like(g),
        ],
        1,
    ).reshape(len(k), 5, -1)
    # Each parameter's row scaled to unit length, so that the condition
    # number judges the geometry, not the units (heights of 1e6 counts).
    norm = np.linalg.norm(jac, axis=2, keepdims=True)
    jac = jac / np.where(norm > 0, norm, 1.0)
    normal = jac @ np.swapaxes(jac, 1, 2)
    solvable = (np.linalg.cond(normal) < 1e10) & (norm[:, 1:3, 0] > 0).all(1)
    k, jac, normal, norm = k[solvable], jac[solvable], normal[solvable], norm[solvable]
    local = local[solvable]
    rows = np.linalg.inv(normal)[:, 1:3] @ jac / norm[:, 1:3]  # (K, 2, m^2)
    lin = rows * np.sqrt(local).reshape(len(k), 1, -1)
    white[:, k] = stack[:, lag, lag, None, None, None] * (lin @ np.swapaxes(lin, 1, 2))
    size = (m + lag + 1, m + lag + 1)
    f = np.fft.rfft2(lin.reshape(len(k), 2, m, m), s=size)
    for i in range(2):
        for j in range(i, 2):
            c = np.fft.irfft2(f[:, i] * np.conj(f[:, j]), s=size)
            # lags -lag..lag on both axes (negative lags wrap to the end)
            c = np.roll(c, (lag, lag), axis=(1, 2))[:, : 2 * lag + 1, : 2 * lag + 1]
            out[:, k, i, j] = out[:, k, j, i] = np.einsum("kab,nab->nk", c, stack)
    return out.reshape(shape), white.reshape(shape)


def pixel_factors(
    image,
    xy,
    labels,
    fitted,
    radius,
    noise,
    vectors,
    origin,
    measured=None,
    max_lag: int | None = None,
    per_class: int = 24,
    min_columns: int = 1,
) -> dict:
    """The ``misfit`` and ``correlated`` factors of every class, measured on
    ``image`` (a crop of a frame) with the columns fitted there (``xy``,
    ``labels``, ``fitted``: dict of ``height``, ``width``, ``background``).

    Returns {class: {"misfit": f, "correlated": (fxx, fyy)}}: the residual
    variance relative to the noise model, once the lattice-periodic residual
    is removed (``vectors`` (2, 2) and ``origin`` of the reference lattice;
    None leaves it in), and the ratio of each axis' position variance under
    the residuals' autocorrelation to that of independent pixels of the same
    variance (the median over at most ``per_class`` columns of the class,
    evenly spread over the crop's; only those ``measured``, default all),
    each over what the fit itself takes out of white noise of the noise
    model (:func:`_null_residuals`; a factor of 1 on white noise).
    Classes with fewer than ``min_columns`` such columns whose patch lies
    inside the crop are left out.
    """
    radius = int(radius)
    lag = int(max_lag or 2 * radius)
    ok = np.isfinite(np.column_stack([fitted[k] for k in FITTED])).all(1)
    near = nearest_column(image.shape, xy[ok]) if ok.any() else None
    mu = fitted_model(image.shape, xy, fitted, radius, near)
    u, var = _standardised(np.asarray(image, float), mu, noise)
    # The residuals of a fit are not its noise: the fit takes out the part
    # of the noise that moves its columns. The same fit of the fitted image
    # plus white noise of the noise model (seeded) says by how much; only a
    # loss counts (a null whose refit wanders, near the detection limit,
    # shows the fit's own error, which the real residuals carry too).
    seed = zlib.crc32(np.ascontiguousarray(image, float).tobytes())
    mine = {k: np.asarray(fitted[k], float)[ok] for k in FITTED}
    u0 = _null_residuals(mu, var, xy[ok], mine, radius, noise, seed, near)
    u, u0 = _inner_aperiodic(np.stack([u, u0]), radius, vectors, origin)
    if near is not None:
        u, u0 = _less_line_shifts(np.stack([u, u0]), mu, var, near)
    misfit = float(np.nanmean(u**2) / min(1.0, np.nanmean(u0**2)))
    acovs = np.stack([autocovariance(u, lag), autocovariance(u0, lag)])
    params = np.column_stack(
        [fitted["height"], xy, fitted["width"], fitted["background"]]
    )
    labels = np.asarray(labels)
    # The columns measured (detected) whose patch lies inside the crop, at
    # most per_class of each class, evenly spread over the crop's.
    h, w = image.shape
    usable = np.ones(len(labels), bool) if measured is None else np.asarray(measured)
    usable = usable & (np.round(xy) - radius >= 0).all(1)
    usable &= (np.round(xy) + radius < np.array([w, h])).all(1)
    keep = [np.flatnonzero(usable & (labels == k)) for k in np.unique(labels)]
    keep = [
        i[np.unique(np.linspace(0, len(i) - 1, per_class).astype(int))]
        for i in keep
        if len(i) >= min_columns
    ]
    keep = np.concatenate(keep) if keep else np.zeros(0, int)
    params, labels = params[keep], labels[keep]
    (corr, base), (white, white0) = correlated_covariance(
        image.shape, params, radius, var, acovs
    )
    lost = np.minimum(1.0, np.diagonal(base, 0, 1, 2) / np.diagonal(white0, 0, 1, 2))
    out = {}
    for k in np.unique(labels):
        sel = (labels == k) & np.isfinite(corr[:, 0, 0]) & (white[:, 0, 0] > 0)
        sel &= (white0[:, 0, 0] > 0) & (lost > 0).all(1)
        if not sel.any():
            continue
        ratio = [
            np.median(corr[sel, i, i] / white[sel, i, i] / lost[sel, i])
            for i in range(2)
        ]
        out[int(k)] = {
            "misfit": misfit,
            "correlated": tuple(float(r) for r in ratio),
        }
    return out


def _less_line_shifts(u, mu, var, near) -> np.ndarray:
    """Standardised residuals ``u`` (..., H, W) less what scan lines shifted
    along x leave: on each row of each column's cell (``near``, the
    :func:`nearest_column` map), the least-squares multiple of the model
    ``mu``'s x derivative. Line noise moves each column's rows by their own
    amounts, which its fit averages; the rest is no pixel noise (it does not
    move y at all), and the scan term measures it on the lattice."""
    h, w = u.shape[-2:]
    g = np.gradient(mu, axis=-1) / np.sqrt(var)
    g = np.where(np.isfinite(g), g, 0.0).ravel()
    key = (near * h + np.arange(h)[:, None]).ravel()
    gg = np.bincount(key, g * g)
    out = np.array(u, float)
    for one in out.reshape(-1, h * w):
        ok = np.isfinite(one)
        ug = np.bincount(key[ok], one[ok] * g[ok], minlength=len(gg))
        one -= np.divide(ug, gg, out=np.zeros_like(gg), where=gg > 0)[key] * g
    return out


def _inner_aperiodic(u, radius, vectors, origin) -> np.ndarray:
    """Standardised residuals ``u`` (..., H, W) of a crop less its border
    and its lattice-periodic part."""
    u = np.array(u, float)
    # Columns beyond the crop are not in its model: their tails leave a
    # border of residuals that is no noise.
    edge = 2 * radius
    u[..., :edge, :], u[..., -edge:, :] = np.nan, np.nan
    u[..., :edge], u[..., -edge:] = np.nan, np.nan
    if vectors is not None and np.isfinite(vectors).all():
        u = aperiodic_part(u, vectors, origin)
    return u


def _null_residuals(mu, var, xy, fitted, radius, noise, seed, near, n_iter=2):
    """Standardised residuals of the fit of the fitted image ``mu`` plus
    white noise of its variance ``var``, refitted from the fitted positions
    ``xy`` (all with a finite fit, whose :func:`nearest_column` map is
    ``near``; ``n_iter`` rounds: it starts at its optimum; weighted as the
    fit is, by the noise model ``noise``); the noise drawn
    with ``seed`` (the crop's own digest: the same data give the same null,
    and the null's chance error is not the same on every image)."""
    noise_image = np.random.default_rng(seed).standard_normal(mu.shape)
    image = mu + np.sqrt(np.nan_to_num(var)) * noise_image
    if len(xy) == 0 or not np.isfinite(image).all():
        return np.full(mu.shape, np.nan)
    width = float(np.median(fitted["width"]))
    fit = refine_gaussian(
        image, xy, width, radius, n_iter, uncertainty=False, noise=noise
    )
    refit = {k: fit[FIT_KEY[k]] for k in FITTED}
    bad = ~np.isfinite(np.column_stack(list(refit.values()))).all(1)
    for k in FITTED:  # a refit that failed keeps the fit it started from
        refit[k] = np.where(bad, fitted[k], refit[k])
    mu0 = fitted_model(
        mu.shape, np.where(bad[:, None], xy, fit["xy"]), refit, radius, near
    )
    return _standardised(image, mu0, noise)[0]


def scale_covariance(cov: np.ndarray, fx: float, fy: float) -> np.ndarray:
    """``cov`` (..., 2, 2) with the x variance times ``fx``, the y variance
    times ``fy`` and the covariance times sqrt(fx fy)."""
    f = np.sqrt(np.array([fx, fy], float))
    return cov * f[:, None] * f[None, :]


def laplacian(xy, ij, values=None, along: str = "b"):
    """The lattice's second difference across the scan lines of positions
    ``xy`` (N, 2) on sites ``ij`` (N, 2): x_(i,j) - the mean of x at
    (i, j -+ 1), (M, 2) for the M sites with both neighbours, and the index
    of each such site's column. With ``values`` (N, 2, 2) covariances, also
    the covariance it has when the columns are independent. ``along="a"``:
    the second difference along the scan lines instead, x_(i,j) less the
    mean at (i -+ 1, j), neighbours that share the site's scan lines."""
    ij = np.asarray(ij, int)
    if along == "a":
        ij = ij[:, ::-1]
    ok = (ij >= 0).all(1)
    idx = np.flatnonzero(ok)
    if len(idx) == 0:
        return np.zeros((0, 2)), idx, np.zeros((0, 2, 2))
    origin = ij[ok].min(0)
    shape = tuple(ij[ok].max(0) - origin + 3)
    grid = np.full(shape, -1)
    grid[ij[ok, 0] - origin[0] + 1, ij[ok, 1] - origin[1] + 1] = idx
    i, j = ij[ok, 0] - origin[0] + 1, ij[ok, 1] - origin[1] + 1
    nb = np.stack([grid[i, j - 1], grid[i, j + 1]], 1)
    full = (nb >= 0).all(1)
    centre, nb = idx[full], nb[full]
    lap = xy[centre] - xy[nb].mean(1)
    cov = None
    if values is not None:
        cov = values[centre] + values[nb].sum(1) / nb.shape[1] ** 2
    return lap, centre, cov


def scan_term(xy, ij, pixel_cov, min_sites: int = 20) -> dict:
    """The ``scan`` term of one frame from its reference (A) lattice.

    ``xy``, ``ij``: the A columns and their sites; ``pixel_cov`` (N, 2, 2)
    their covariance from the pixel terms. The Laplacian of the positions
    (:func:`laplacian`) of a locally regular lattice scatters by the columns'
    errors alone. Per axis, the variance s every column has beyond the pixel
    terms is the smallest that brings the Laplacian's robust spread in units
    of its sigma (pixel terms plus :data:`LAPLACIAN_GAIN` s) to 1.

    Returns {"covariance": (2, 2) diagonal, "sites": M, "calibration":
    (zx, zy)}: ``calibration`` is that robust spread with the pixel terms
    alone (1 where the pixel noise explains the lattice's irregularity);
    NaN and a zero term with fewer than ``min_sites`` complete sites.
    """
    lap, _, pred = _laplacian_and_prediction(xy, ij, pixel_cov)
    return _scan_of(lap, pred, min_sites)


def _scan_of(lap, pred, min_sites: int = 20) -> dict:
    if len(lap) < min_sites:
        return {
            "covariance": np.zeros((2, 2)),
            "sites": int(len(lap)),
            "calibration": (np.nan, np.nan),
        }
    lap = lap - np.median(lap, 0)
    return {
        "covariance": _excess(lap, pred),
        "sites": int(len(lap)),
        "calibration": robust_spread(lap, pred),
    }


def _laplacian_and_prediction(xy, ij, pixel_cov, along: str = "b"):
    """:func:`laplacian` with its predicted covariance, where both are finite."""
    lap, centre, pred = laplacian(
        np.asarray(xy, float), ij, np.asarray(pixel_cov, float), along
    )
    good = np.isfinite(lap).all(1) & np.isfinite(pred).all((1, 2))
    return lap[good], centre[good], pred[good]


def _excess(lap, pred) -> np.ndarray:
    """Diagonal 2 x 2: per axis the variance s >= 0 with robust spread of
    lap / sqrt(pred + LAPLACIAN_GAIN s) equal to 1 (the spread falls as s
    grows), where the spread with s = 0 exceeds 1 by more than its own
    scatter (:func:`_gate`; 0 otherwise): found on a grid of candidates,
    refined once on a finer grid inside the bracket, three times (to about
    1e-4 of s)."""
    out = np.zeros((2, 2))
    for a in range(2):
        v, p = lap[:, a], pred[:, a, a]

        def spread(s, v=v, p=p):  # s (K,) -> (K,)
            z = v / np.sqrt(p + LAPLACIAN_GAIN * s[:, None])
            return MAD * np.median(np.abs(z - np.median(z, 1, keepdims=True)), 1)

        if not spread(np.zeros(1))[0] > 1 + _gate(len(v)):
            continue
        hi = float(np.median(v * v)) + float(np.median(p))
        while spread(np.array([hi]))[0] > 1:
            hi *= 2
        grid = np.linspace(0.0, hi, 17)
        for _ in range(3):
            above = spread(grid) > 1
            i = int(np.flatnonzero(above)[-1])  # grid[i] too small, grid[i + 1] not
            grid = np.linspace(grid[i], grid[i + 1], 17)
        out[a, a] = 0.5 * (grid[0] + grid[-1])
    return out


def robust_spread(v: np.ndarray, cov: np.ndarray) -> tuple[float, float]:
    """Per axis, MAD x 1.4826 of ``v`` (M, 2) in units of the sigma the
    covariances ``cov`` (M, 2, 2) give it: 1 when they are right."""
    out = []
    for a in range(2):
        z = v[:, a] / np.sqrt(cov[:, a, a])
        z = z[np.isfinite(z)]
        out.append(
            float(MAD * np.median(np.abs(z - np.median(z)))) if len(z) else np.nan
        )
    return tuple(out)


def lattice_shrink(xy, ij, pixel_cov, min_sites: int = 50) -> tuple:
    """Per axis, the factor (at most 1) on the pixel terms' variance that
    brings the robust spread of a sublattice's second difference along the
    scan lines (:func:`laplacian` ``along="a"``: line noise cancels there),
    in units of its sigma, to 1 where it is below 1: the pixel terms then
    over-predict the columns' scatter (a fit that stays near its start, the
    network's lattice-regular guess; noise the residuals overstate). Real
    structure only adds to the Laplacian, so the factor never shrinks an
    error bar below what the lattice shows. (1, 1) with fewer than
    ``min_sites`` complete sites."""
    lap, _, pred = _laplacian_and_prediction(xy, ij, pixel_cov, "a")
    return _shrink_of(lap, pred, min_sites)


def _shrink_of(lap, pred, min_sites: int = 50, extra=(0.0, 0.0)) -> tuple:
    """Per axis the factor k in [:data:`MIN_SHRINK`, 1] on ``pred`` that
    brings the robust spread of lap / sqrt(k pred + extra) to 1 where it is
    below 1 at k = 1 by more than its own scatter (:func:`_gate`); 1 with
    fewer than ``min_sites`` sites."""
    if len(lap) < min_sites:
        return (1.0, 1.0)
    lap = lap - np.median(lap, 0)
    out = []
    for a in range(2):
        v, p, e = lap[:, a], pred[:, a, a], float(extra[a])

        def spread(k, v=v, p=p, e=e):
            z = v / np.sqrt(k * p + e)
            z = z[np.isfinite(z)]
            return MAD * np.median(np.abs(z - np.median(z))) if len(z) else np.nan

        if not spread(1.0) < 1 - _gate(len(v)):
            out.append(1.0)
        elif e == 0:
            out.append(max(MIN_SHRINK, float(spread(1.0)) ** 2))
        elif spread(MIN_SHRINK) < 1:
            out.append(MIN_SHRINK)
        else:
            lo, hi = MIN_SHRINK, 1.0  # spread(lo) >= 1 > spread(hi)
            for _ in range(30):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if spread(mid) >= 1 else (lo, mid)
            out.append(0.5 * (lo + hi))
    return tuple(out)


def split_half_calibration(xy, ij, pixel_cov, min_sites: int = 20) -> tuple:
    """The :func:`scan_term` checked on data it was not measured on: the term
    from the sites of even i applied to those of odd i and the other way
    round; the robust spread of the Laplacian in units of its predicted sigma
    (pixel terms plus the other half's scan term), per axis, averaged over
    the two halves (of i, so that the halves share no column). Near 1 where
    the error model holds across the field."""
    lap, centre, pred = _laplacian_and_prediction(xy, ij, pixel_cov)
    return _split_half_of(lap, centre, pred, ij, min_sites)


def _split_half_of(lap, centre, pred, ij, min_sites: int = 20) -> tuple:
    half = np.asarray(ij)[centre, 0] % 2 == 0  # disjoint columns of sites
    if min(half.sum(), (~half).sum()) < min_sites:
        return (np.nan, np.nan)
    z = []
    for test in (half, ~half):
        train = ~test
        excess = _excess(lap[train] - np.median(lap[train], 0), pred[train])
        full = pred[test] + LAPLACIAN_GAIN * excess
        z.append(np.array(robust_spread(lap[test] - np.median(lap[test], 0), full)))
    return tuple(float(v) for v in np.mean(z, 0))


def frame_covariance(
    middle: dict,
    xy,
    labels,
    quantities,
    shot,
    noise,
    ij,
    vectors,
    reference: int,
    textured=None,
) -> tuple[np.ndarray, dict]:
    """(N, 2, 2) covariance of every column of one frame, and the record of
    its terms.

    ``middle``: the raw image's ``crop`` (at most :data:`PIXEL_CROP` squared
    pixels, :func:`stemunmix.core.find.find_columns`), its first pixel
    ``origin`` (row, col) and the fit's ``sizes`` (``radius``: its patch);
    ``xy``, ``labels``, ``quantities`` (``height``, ``width``,
    ``background``), ``ij``: the frame's columns; ``shot`` (N, 2, 2) their
    :func:`shot_covariance` under ``noise`` (gain, var0); ``vectors``: the
    lattice of the ``reference`` class, whose columns measure the scan term.
    ``textured`` (N,) bool, optional: the columns fitted with the support's
    texture (:func:`stemunmix.core.texture.refine_with_texture`), whose
    ``shot`` is that fit's covariance, the texture counted: the misfit and
    correlated factors, which carry such a texture for the weighted fit,
    are not applied to them again.

    Columns :func:`undetected` on the raw image get a NaN covariance. What
    moves whole columns is measured on the reference lattice in two parts,
    each added to every column: ``own``, what moves each column on its own
    (the excess of the lattice's second difference along the scan lines,
    where line noise cancels, over the pixel terms), and ``lines``, the
    line noise (the further excess across the lines), which the columns on
    the same scan lines share (:func:`stemunmix.core.measure.line_cross`).
    The record holds the number of ``textured`` columns and, per class
    index, the ``misfit`` and ``correlated``
    ``factors`` and the ``lattice`` shrink (:func:`lattice_shrink`, given
    the own term), the ``undetected`` and all columns (``counts``), and the
    frame's ``scan`` covariance (own + lines), its ``own`` and ``lines``
    parts, the number of ``sites`` the line term was measured on and the
    calibration figures (:func:`scan_term`, :func:`split_half_calibration`).
    """
    xy, labels, ij = np.asarray(xy, float), np.asarray(labels, int), np.asarray(ij)
    crop = np.asarray(middle["crop"], float)
    h, w = crop.shape
    local = xy - np.array(middle["origin"][::-1], float)
    inside = ((local >= 0) & (local <= np.array([w - 1, h - 1]))).all(1)
    ref = np.flatnonzero(inside & (labels == reference))
    snr = column_snr(quantities, noise)
    lost = ~(snr >= MIN_SNR)
    factors = {}
    if inside.any() and np.isfinite(noise[1]):
        args = (
            crop,
            local[inside],
            labels[inside],
            {
                k: np.asarray(quantities[k], float)[inside]
                for k in ("height", "width", "background")
            },
            middle["sizes"]["radius"],
            noise,
            vectors if len(ref) else None,
            local[ref[0]] if len(ref) else None,
        )
        # The factors are measured on columns whose fit is in its linear
        # regime; a class with too few of those takes the other classes'
        # (a faint column's fit stays near its start: measured on the real
        # low-dose SrTiO3's Ti, the correlated factor read half the Sr one).
        bright = ~undetected(quantities, noise, FACTOR_SNR)[inside]
        factors = pixel_factors(*args, measured=bright, min_columns=FACTOR_COLUMNS)
        if not factors:  # a faint image: every detected column measures
            factors = pixel_factors(*args, measured=~lost[inside])
    pooled = _pooled(factors)
    cov = np.array(shot, float, copy=True)
    cov[lost] = np.nan
    classes = [int(k) for k in np.unique(labels)]
    plain = np.ones(len(xy), bool) if textured is None else ~np.asarray(textured)
    for k in classes:
        sel = (labels == k) & plain
        f = factors.get(k, pooled)
        cov[sel] = scale_covariance(
            cov[sel], *(f["misfit"] * c for c in f["correlated"])
        )
    # Along the scan lines (a) line noise cancels: what scatters there is the
    # pixel terms and what moves each column on its own. The reference class
    # measures that "own" term (the other classes carry the displacements to
    # be measured, so their lattices are no null); every class's pixel terms
    # shrink where, with the own term, they over-predict their lattice.
    order = sorted(classes, key=lambda k: k != reference)
    lattice, own = {}, np.zeros((2, 2))
    for k in order:
        sel = labels == k
        lap, _, pred = _laplacian_and_prediction(xy[sel], ij[sel], cov[sel], "a")
        lattice[k] = _shrink_of(lap, pred, extra=LAPLACIAN_GAIN * np.diag(own))
        cov[sel] = scale_covariance(cov[sel], *lattice[k])
        if k == reference and len(lap) >= 50:
            own = _excess(lap - np.median(lap, 0), scale_covariance(pred, *lattice[k]))
    cov += own
    # Across the scan lines (b) of the reference: the line noise beyond that.
    ref = labels == reference
    lap, centre, pred = _laplacian_and_prediction(xy[ref], ij[ref], cov[ref])
    lines = _scan_of(lap, pred)
    record = {
        "factors": factors,
        "scan": own + lines["covariance"],
        "own": own,
        "lines": lines["covariance"],
        "sites": lines["sites"],
        "calibration_pixel": lines["calibration"],
        "calibration": _split_half_of(lap, centre, pred, ij[ref]),
        "lattice": lattice,
        "undetected": {k: int((lost & (labels == k)).sum()) for k in classes},
        "counts": {k: int((labels == k).sum()) for k in classes},
        "textured": int((~plain).sum()),
        "snr": {k: _median(snr[labels == k]) for k in classes},
    }
    return cov + lines["covariance"], record


def _median(values) -> float:
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else float("nan")


def record_arrays(errors: dict, names, nav_shape, noise: dict) -> dict:
    """The noise models ({frame: (gain, var0)}: ``noise_gain``,
    ``noise_variance0``) and the records of :func:`frame_covariance`
    ({frame: record}) as metadata arrays, frames in navigation order (NaN
    where a frame has none):
    ``misfit_<class>`` and ``correlated_<class>`` (x, y) factors,
    ``lattice_<class>`` (x, y) the shrink of a class's pixel terms,
    ``undetected_<class>`` the columns too faint to measure (sigma NaN),
    ``scan_covariance`` (2, 2) px^2 what moves whole columns (own +
    lines), ``scan_own`` its part that moves each column on its own,
    ``scan_lines`` its part shared along the scan lines, and
    ``scan_sites``, ``calibration``
    (x, y): the reference lattice's robust spread in units of its sigma on
    the held-out half of its sites (near 1 where the error model holds) and
    ``calibration_pixel`` the same with the pixel terms alone;
    ``refitted_with_texture``: the columns refitted with the support's
    texture (:mod:`stemunmix.core.texture`)."""
    order = list(np.ndindex(tuple(nav_shape)))
    frames = [errors.get(i, {}) for i in order]
    nan2 = np.full(2, np.nan)
    out = {
        "noise_gain": np.array([noise.get(i, nan2)[0] for i in order]),
        "noise_variance0": np.array([noise.get(i, nan2)[1] for i in order]),
    }
    for k, name in enumerate(names):
        if name == "background":
            continue
        f = [r.get("factors", {}).get(k) for r in frames]
        out[f"misfit_{name}"] = np.array([v["misfit"] if v else np.nan for v in f])
        out[f"correlated_{name}"] = np.array(
            [v["correlated"] if v else nan2 for v in f]
        )
        out[f"lattice_{name}"] = np.array(
            [r.get("lattice", {}).get(k, nan2) for r in frames]
        )
        out[f"undetected_{name}"] = np.array(
            [r.get("undetected", {}).get(k, 0) for r in frames]
        )
    for key, name, fill in (
        ("scan", "scan_covariance", np.full((2, 2), np.nan)),
        ("own", "scan_own", np.full((2, 2), np.nan)),
        ("lines", "scan_lines", np.full((2, 2), np.nan)),
        ("sites", "scan_sites", 0),
        ("calibration", "calibration", nan2),
        ("calibration_pixel", "calibration_pixel", nan2),
        ("textured", "refitted_with_texture", 0),
    ):
        out[name] = np.array([r.get(key, fill) for r in frames])
    return out


def warnings_of(
    errors: dict,
    names,
    low: float = 0.7,
    high: float = 1.5,
    undetected_share: float = 0.2,
) -> list[str]:
    """What a user must hear about the records of :func:`frame_covariance`:
    a held-out ``calibration`` outside [``low``, ``high``] (the error bars
    do not hold; the likely cause named), and more than ``undetected_share``
    of a class too faint on the raw image to measure."""
    out = []
    for idx, rec in errors.items():
        z = np.asarray(rec.get("calibration", (np.nan, np.nan)), float)
        if np.isfinite(z).all() and (z.min() < low or z.max() > high):
            cause = (
                "the lattice is not locally regular (a strain gradient, a domain "
                "wall, defects or a curved layer in the reference sublattice) or "
                "the scan distortion changes across the field"
                if z.max() > high
                else "the noise differs across the field (a thickness gradient, "
                "vacuum or a second phase)"
            )
            out.append(
                f"find_columns: frame {idx}: the reference columns deviate from a "
                f"locally smooth lattice by {z[0]:.2f} / {z[1]:.2f} (x / y) times "
                f"their sigma on held-out sites (1 where the error bars hold): "
                f"likely {cause}; read the uncertainties with care"
            )
        counts, undetected = rec.get("counts", {}), rec.get("undetected", {})
        snr = rec.get("snr", {})
        # classes so bright that a B column at the faintest HAADF ratio would show
        plain = [k for k, v in snr.items() if v >= MIN_SNR / FAINTEST_RATIO]
        faint = [k for k, v in snr.items() if v < MIN_SNR]
        for k, lost in undetected.items():
            total = counts.get(k, 0)
            if total and lost > undetected_share * total:
                out.append(
                    f"find_columns: frame {idx}: {lost} of {total} {names[k]!r} "
                    f"columns are not detected on the raw image (fitted height "
                    f"below {MIN_SNR:g} standard errors of the noise): their "
                    "positions are the network's guess and their sigma is NaN, "
                    "so measurements on them have no error bar; a higher dose "
                    "or a sum of frames measures them"
                    + _another_structure(names, k, plain, k in faint)
                )
    return out


def _another_structure(names, k, plain, faint) -> str:
    """Where most of one class is missing from the image (its median fitted
    height below ``MIN_SNR`` standard errors: ``faint``) while another class
    is so bright that even the faintest B column (``FAINTEST_RATIO`` of it)
    would show, the lattice is not the model's: said, with what was tried and
    what to pass (a perovskite network puts B columns between the atoms of a
    crystal of one species: their median fitted height 0.4-0.5 standard
    errors beside A at 106-546; a real low-dose SrTiO3, whose faint Ti is
    there, has its Sr at 17)."""
    plain = [j for j in plain if j != k]
    if names[k] != "B" or not faint or not plain:
        return ""
    return (
        f"; the {[names[j] for j in plain]} columns are so bright that "
        f"{names[k]!r} columns at {FAINTEST_RATIO:g} of their height would "
        "show: this lattice is likely not the model's structure (tried: "
        "perovskite); a crystal of one species (a metal) needs "
        "structure='one species'"
    )


def _pooled(factors: dict) -> dict:
    """The median factors over the classes measured (1 where none was)."""
    if not factors:
        return {"misfit": 1.0, "correlated": (1.0, 1.0)}
    return {
        "misfit": float(np.median([f["misfit"] for f in factors.values()])),
        "correlated": tuple(
            float(np.median([f["correlated"][i] for f in factors.values()]))
            for i in range(2)
        ),
    }
