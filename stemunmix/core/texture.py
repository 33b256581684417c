"""Columns on a textured support: the support's covariance and the fit that
counts it (numpy only).

An amorphous film under a particle is blobs of about a column's width: under
a column, a blob moves the fitted position. Least squares weighted by the
pixels' own noise treats the film as signal, and its error grows with the
dose, 1.0-2.3x the bound that counts the film as noise on one column at doses
20-500; generalized least squares with the film's covariance reaches
0.87-0.97x it (``benchmarks/film_fit.py``). The film shows beside the
crystal, off the lattice-presence mask, where its covariance is measured
(:func:`texture_covariance`); :func:`refine_with_texture` then fits each
column's patch with it, its neighbours' Gaussians taken away.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

MIN_PATCHES = 200  # patches wholly off the lattice needed to measure a texture
# The texture's mean variance over the noise model's at its level, below
# which a support counts as plain noise (vacuum) and the weighted fit stays.
TEXTURE_SHARE = 0.1
MAX_PATCHES = 20000
CHUNK = 128  # columns whose patch covariances are solved together


def texture_covariance(frame, off, radius: int, noise) -> np.ndarray | None:
    """(P, P) covariance (image units squared) of the support's texture over
    a fit patch of half size ``radius`` (P = (2 radius + 1)^2): the
    covariance of the patches of ``frame`` wholly where ``off`` (bool, the
    frame's shape: off the lattice) less the noise model's variance
    (``noise``: gain, variance0) at their mean level, its negative
    eigenvalues set to 0. None without a noise model, with fewer than
    :data:`MIN_PATCHES` such patches, or where the texture's mean variance
    is under :data:`TEXTURE_SHARE` of the noise's (vacuum)."""
    if noise is None:
        return None
    frame = np.asarray(frame, float)
    w = 2 * int(radius) + 1
    whole = ndimage.binary_erosion(np.asarray(off, bool), np.ones((w, w), bool))
    ys, xs = np.nonzero(whole)
    if len(ys) < MIN_PATCHES:
        return None
    pick = np.linspace(0, len(ys) - 1, min(len(ys), MAX_PATCHES)).astype(int)
    windows = np.lib.stride_tricks.sliding_window_view(frame, (w, w))
    patches = windows[ys[pick] - radius, xs[pick] - radius].reshape(len(pick), -1)
    gain, var0 = (float(v) for v in noise)
    level = max(gain * float(patches.mean()) + var0, 1e-12)
    cov = np.cov(patches, rowvar=False) - level * np.eye(w * w)
    values, vectors = np.linalg.eigh(cov)
    cov = (vectors * np.clip(values, 0, None)) @ vectors.T
    if np.mean(np.diag(cov)) < TEXTURE_SHARE * level:
        return None
    return cov


def refine_with_texture(image, fit: dict, radius: int, noise, texture, n_iter=3):
    """The Gaussian fits ``fit`` (:func:`stemunmix.core.refine.refine_gaussian`:
    ``xy``, ``height``, ``sigma``, ``background``) refined by generalized
    least squares: each column's patch (half size ``radius``), its
    neighbours' Gaussians taken away, weighted by the inverse of the noise
    model's variance (``noise``: gain, variance0) plus the support's
    ``texture`` covariance (:func:`texture_covariance`). ``n_iter`` rounds,
    each position step at most 0.3 widths. Columns whose patch leaves the
    image, or whose fit is not finite, keep theirs.

    Returns {``xy``, ``height``, ``sigma``, ``background``: refined;
    ``covariance`` (N, 2, 2): each position's under that model,
    (J^T C^-1 J)^-1}, NaN where the column kept its fit."""
    from stemunmix.core.refine import render

    image = np.asarray(image, float)
    h, w = image.shape
    params = np.column_stack(
        [fit["height"], fit["xy"], fit["sigma"], fit["background"]]
    ).astype(float)
    n = len(params)
    r = int(radius)
    centre = np.round(params[:, 1:3]).astype(int)
    inside = (
        np.isfinite(params).all(1)
        & (centre[:, 0] >= r)
        & (centre[:, 0] < w - r)
        & (centre[:, 1] >= r)
        & (centre[:, 1] < h - r)
        & (params[:, 3] > 0)
    )
    idx = np.flatnonzero(inside)
    gain, var0 = (float(v) for v in noise)
    texture = _modes(texture)
    off = np.arange(-r, r + 1)
    cov = np.full((n, 2, 2), np.nan)
    model = np.empty_like(image)
    for t in range(n_iter):
        render(np.where(np.isfinite(params), params, 0.0), r, model)
        last = t == n_iter - 1
        for start in range(0, len(idx), CHUNK):
            k = idx[start : start + CHUNK]
            step, fisher = _step(
                image, model, params[k], centre[k], off, gain, var0, texture
            )
            if last:  # the covariance at the fit, no step
                cov[k] = np.linalg.inv(fisher + 1e-9 * np.eye(5))[:, 1:3, 1:3]
            else:
                params[k] += step
    params[~inside] = np.nan
    return {
        "xy": params[:, 1:3],
        "height": params[:, 0],
        "sigma": params[:, 3],
        "background": params[:, 4],
        "covariance": cov,
    }


KEPT = 0.999  # share of the texture's variance its modes keep


def _modes(texture) -> tuple:
    """(vectors (P, K), variances (K,)): the texture's strongest eigenmodes,
    together :data:`KEPT` of its variance. A film's blobs are smooth over a
    patch, so a few dozen of a patch's hundreds of pixels carry it."""
    values, vectors = np.linalg.eigh(np.asarray(texture, float))
    order = np.argsort(values)[::-1]
    values, vectors = np.clip(values[order], 0, None), vectors[:, order]
    total = values.sum()
    k = int(np.searchsorted(np.cumsum(values), KEPT * total) + 1) if total > 0 else 0
    k = max(1, min(k, len(values)))
    return vectors[:, :k], np.maximum(values[:k], 1e-12 * max(total, 1e-300))


def _step(image, model, p, centre, off, gain, var0, texture):
    """(Gauss-Newton steps (n, 5), Fisher information (n, 5, 5)) of the
    columns ``p`` [height, x, y, width, background] on their patches, the
    pixels' covariance C = D + V L V^T (D: the noise model's variances,
    ``texture``: the modes V and variances L of :func:`_modes`), its
    inverse by Woodbury's identity: X^T C^-1 X = X^T D^-1 X - (V^T D^-1
    X)^T (L^-1 + V^T D^-1 V)^-1 (V^T D^-1 X)."""
    modes, variances = texture
    rows = centre[:, 1, None] + off[None, :]  # (n, m)
    cols = centre[:, 0, None] + off[None, :]
    data = image[rows[:, :, None], cols[:, None, :]]  # (n, m, m)
    total = model[rows[:, :, None], cols[:, None, :]]
    a, x, y, s, b = (p[:, i, None, None] for i in range(5))
    dx = cols[:, None, :] - x
    dy = rows[:, :, None] - y
    g = np.exp(-(dx * dx + dy * dy) / (2 * s * s))
    own = a * g
    target = data - (total - own)  # the neighbours taken away
    resid = target - own - b
    r2 = dx * dx + dy * dy
    parts = [g, own * dx / s**2, own * dy / s**2, own * r2 / s**3, np.ones_like(g)]
    x_all = np.stack(parts + [resid], -1).reshape(len(p), -1, 6)  # [J | r]
    inv_d = 1.0 / np.maximum(gain * (total + b) + var0, 1e-12).reshape(len(p), -1)
    dx_all = inv_d[..., None] * x_all
    vdx = modes.T @ dx_all  # (n, K, 6)
    inner = (modes.T[None] * inv_d[:, None, :]) @ modes  # (n, K, K)
    inner[:, np.arange(len(variances)), np.arange(len(variances))] += 1 / variances
    gram = x_all.transpose(0, 2, 1) @ dx_all
    gram -= vdx.transpose(0, 2, 1) @ np.linalg.solve(inner, vdx)
    fisher, grad = gram[:, :5, :5], gram[:, :5, 5]
    step = np.linalg.solve(fisher + 1e-9 * np.eye(5), grad[..., None])[..., 0]
    limit = 0.3 * p[:, 3]
    norm = np.hypot(step[:, 1], step[:, 2])
    scale = np.minimum(1.0, limit / np.maximum(norm, 1e-12))
    step[:, 1:3] *= scale[:, None]
    step[:, 3] = np.clip(step[:, 3], -0.3 * p[:, 3], 0.3 * p[:, 3])
    return step, fisher
