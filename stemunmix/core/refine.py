"""Batched sub-pixel refinement of column positions on the raw image (numba).

Every column is a 2D Gaussian (height, centre, width) on a local constant
background. All columns are fitted at once: in each round, every column's patch
has the current model of its neighbours subtracted (so bright A tails do not pull
B), then one damped Gauss-Newton (Levenberg-Marquardt) step updates every
column. The rounds are Jacobi rounds: each column reads its neighbours as the
round before left them, so the result does not depend on the order or on how
the columns are shared among threads. Each round first renders every column's
Gaussian into one model image (serially, so the sums are the same each run);
a column's neighbours on its patch are that model less its own Gaussian. One
compiled kernel then does a column's whole round in registers (its 5 x 5
normal equations, the trial step), in parallel over the columns.
Positions are [x, y] pixels.
"""

from __future__ import annotations

import numba
import numpy as np

from stemunmix.core import threads

N_PARAMS = 5  # height, x, y, sigma, background
# The fit's weights read each pixel's variance at no less than the column's
# half height: its peak, where the shot noise is, counts by its noise, and
# its flanks and the background (where what the Gaussian misses is: a
# sloping background, a tail along the scan) as the half height does. Full
# weighting (0) reaches the Cramer-Rao bound on synthetic columns but moved
# the real SrTiO3 [110] ADF's Ti columns as a whole by 0.03 px along the
# fast scan (its cells' mean displacement 3.85 sigma, 1.45 unweighted; 1.96
# at 0.5); benchmarks/fit_efficiency.py prints the trade.
WEIGHT_FLOOR = 0.5


def refine_gaussian(
    image: np.ndarray,
    xy: np.ndarray,
    sigma: float,
    radius: int | None = None,
    n_iter: int = 4,
    uncertainty: bool = True,
    noise: tuple | None = None,
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
    uncertainty : bool
        Also compute the terms of the uncertainties (``position_terms``,
        ``noise_sums``); False leaves them out (and ``rms`` NaN).
    noise : (gain, variance0), optional
        The image's noise model (:func:`noise_model`): each pixel's residual
        is weighted by the inverse of its variance under the model of the
        round before, read at no less than the column's half height
        (:data:`WEIGHT_FLOOR`): on a bright column 9 % from the Cramer-Rao
        bound where unweighted least squares is 13 % from it
        (``benchmarks/fit_efficiency.py``). None: unweighted.

    Returns
    -------
    dict with ``xy`` (N, 2), ``height``, ``sigma``, ``background``, ``rms``
    (residual per column), ``moved`` (distance from the start, pixels), and
    for the uncertainties (:func:`noise_model`,
    :func:`stemunmix.core.uncertainty.shot_covariance`)
    ``position_terms`` (N, 6) and ``noise_sums`` (N, 5) of :func:`lm_round`'s
    last round.
    """
    image = np.ascontiguousarray(image, dtype=np.float64)
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    n = len(xy)
    if n == 0:
        empty = np.zeros(0)
        return {
            "xy": xy.reshape(0, 2),
            "height": empty,
            "sigma": empty,
            "background": empty,
            "rms": empty,
            "moved": empty,
            "position_terms": np.zeros((0, 6)),
            "noise_sums": np.zeros((0, 5)),
        }
    radius = int(radius or max(2, np.ceil(1.5 * sigma)))
    gain, var0 = _weights_of(noise)
    h, w = image.shape
    centre = np.round(xy).astype(np.int64)
    centre[:, 0] = np.clip(centre[:, 0], 0, w - 1)
    centre[:, 1] = np.clip(centre[:, 1], 0, h - 1)
    kernels = _kernels()
    params = kernels["start"](image, xy, centre, radius, float(sigma))
    model = np.empty((h, w))
    lam = np.full(n, 1e-3)
    previous = np.empty_like(params)
    # The last round also measures the uncertainties, at the parameters it
    # starts from: its step moves the columns by thousandths of a pixel, far
    # below what changes the covariance or the residuals.
    terms, sums, rms = (
        np.full((n, 6), np.nan),
        np.full((n, 5), np.nan),
        np.full(n, np.nan),
    )
    with threads.limited():
        for t in range(n_iter):
            previous[:] = params
            kernels["render"](previous, radius, model)
            kernels["round"](
                image,
                model,
                previous,
                params,
                lam,
                centre,
                radius,
                0.3 * sigma,
                3.0 * sigma,
                uncertainty and t == n_iter - 1,
                gain,
                var0,
                terms,
                sums,
                rms,
            )
    return {
        "xy": params[:, 1:3].copy(),
        "height": params[:, 0].copy(),
        "sigma": params[:, 3].copy(),
        "background": params[:, 4].copy(),
        "rms": rms,
        "moved": np.hypot(*(params[:, 1:3] - xy).T),
        "position_terms": terms if uncertainty else None,
        "noise_sums": sums if uncertainty else None,
    }


def _weights_of(noise) -> tuple[float, float]:
    """(gain, variance0) of the fit's weights; (0, 0): unweighted."""
    if noise is None:
        return 0.0, 0.0
    gain, var0 = (float(v) for v in noise)
    if not (np.isfinite(gain) and np.isfinite(var0)) or gain < 0 or var0 < 0:
        return 0.0, 0.0
    return gain, var0


# The kernels are module-level so numba caches them on disk (cache=True):
# a fresh process loads them instead of compiling them again.


@numba.njit(parallel=True, cache=True, fastmath=True)
def start(image, xy, centre, radius, sigma):
    """Height over the patch minimum, the given width and position."""
    h, w = image.shape
    n = xy.shape[0]
    out = np.empty((n, 5))
    for k in numba.prange(n):
        cx, cy = centre[k, 0], centre[k, 1]
        low = np.inf
        for i in range(max(0, cy - radius), min(h, cy + radius + 1)):
            for j in range(max(0, cx - radius), min(w, cx + radius + 1)):
                low = min(low, image[i, j])
        out[k, 0] = max(image[cy, cx] - low, 1e-6)
        out[k, 1] = xy[k, 0]
        out[k, 2] = xy[k, 1]
        out[k, 3] = sigma
        out[k, 4] = low
    return out


@numba.njit(cache=True, fastmath=True)
def render(params, radius, out):
    """Every column's Gaussian (no background) summed into ``out`` (H, W),
    each over at least its patch and four widths (serial: the same sums in
    the same order every time)."""
    h, w = out.shape
    out[:] = 0.0
    for k in range(params.shape[0]):
        a, cx, cy, s = params[k, 0], params[k, 1], params[k, 2], params[k, 3]
        r = max(radius, int(np.ceil(4.0 * s)))
        x0, y0 = int(np.round(cx)) - r, int(np.round(cy)) - r
        m = 2 * r + 1
        inv = 1.0 / (2.0 * s * s)
        gx = np.empty(m)
        gy = np.empty(m)
        for q in range(m):
            d = x0 + q - cx
            gx[q] = np.exp(-d * d * inv)
            d = y0 + q - cy
            gy[q] = a * np.exp(-d * d * inv)
        for p in range(max(0, -y0), min(m, h - y0)):
            for q in range(max(0, -x0), min(m, w - x0)):
                out[y0 + p, x0 + q] += gy[p] * gx[q]


@numba.njit(cache=True, fastmath=True)
def own_gaussian(params, k, x0, y0, m, out, gx, gy):
    """Column k's own Gaussian (no background) on its patch, ``out``; its
    unit-height factors along x and y in ``gx`` and ``gy``."""
    a, cx, cy, s = params[k, 0], params[k, 1], params[k, 2], params[k, 3]
    separable(cx, cy, s, x0, y0, m, gx, gy)
    for p in range(m):
        for q in range(m):
            out[p, q] = a * gy[p] * gx[q]


@numba.njit(cache=True, fastmath=True)
def separable(cx, cy, s, x0, y0, m, gx, gy):
    """exp(-d^2 / 2 s^2) along x and along y of a patch: the Gaussian at
    pixel (p, q) is gy[p] gx[q]."""
    inv = 1.0 / (2.0 * s * s)
    for q in range(m):
        d = x0 + q - cx
        gx[q] = np.exp(-d * d * inv)
        d = y0 + q - cy
        gy[q] = np.exp(-d * d * inv)


@numba.njit(cache=True, fastmath=True)
def solve5(a, r):
    """-a^-1 r for a 5 x 5 system, Gaussian elimination with partial
    pivoting, in place (no LAPACK call per column)."""
    x = -r.copy()
    for c in range(5):
        piv = c
        for i in range(c + 1, 5):
            if abs(a[i, c]) > abs(a[piv, c]):
                piv = i
        if piv != c:
            for j in range(5):
                a[c, j], a[piv, j] = a[piv, j], a[c, j]
            x[c], x[piv] = x[piv], x[c]
        d = a[c, c] if a[c, c] != 0.0 else 1e-300
        for i in range(c + 1, 5):
            f = a[i, c] / d
            for j in range(c, 5):
                a[i, j] -= f * a[c, j]
            x[i] -= f * x[c]
    for c in range(4, -1, -1):
        t = x[c]
        for j in range(c + 1, 5):
            t -= a[c, j] * x[j]
        x[c] = t / (a[c, c] if a[c, c] != 0.0 else 1e-300)
    return x


@numba.njit(cache=True, fastmath=True)
def cost_of(image, target, weight, x0, y0, m, a, cx, cy, s, b):
    h, w = image.shape
    gx, gy = np.empty(m), np.empty(m)
    separable(cx, cy, s, x0, y0, m, gx, gy)
    total = 0.0
    for p in range(m):
        yy = y0 + p
        if yy < 0 or yy >= h:
            continue
        for q in range(m):
            xx = x0 + q
            if xx < 0 or xx >= w:
                continue
            r = a * gy[p] * gx[q] + b - target[p, q]
            total += weight[p, q] * r * r
    return total


@numba.njit(cache=True, fastmath=True)
def weight_of(mu, height, background, gain, var0):
    """1 / the variance of a pixel of mean ``mu`` under the noise model
    (gain, var0), its mean held at least at the column's ``background`` plus
    :data:`WEIGHT_FLOOR` of its ``height``; 1 where the model is (0, 0) or
    gives no positive variance."""
    if gain == 0.0 and var0 == 0.0:
        return 1.0
    v = gain * max(mu, background + WEIGHT_FLOOR * height) + var0
    return 1.0 / v if v > 0.0 else 1.0


@numba.njit(parallel=True, cache=True, fastmath=True)
def lm_round(
    image,
    model,
    prev,
    params,
    lam,
    centre,
    radius,
    sig_lo,
    sig_hi,
    collect,
    gain,
    var0,
    terms,
    sums,
    rms,
):
    """One damped Gauss-Newton step of every column (Jacobi: reads prev,
    whose Gaussians ``model`` holds summed, :func:`render`), each pixel
    weighted by 1 / its variance under the noise model (``gain``, ``var0``)
    at prev (:func:`weight_of`; (0, 0): unweighted).

    With ``collect`` (the last round), also per column at ``prev``: ``rms``,
    the RMS residual of its patch, neighbours included; ``terms`` (N, 6), the
    position block of the weighted least-squares covariance
    A^-1 (sum J J^T w^2 var) A^-1 (A = sum J J^T w, J the Jacobian of the
    column's own Gaussian, w the pixel's weight) split by the noise model
    var = gain mu + var0 (mu the whole model on the patch): its ``gain`` part
    (xx, yy, xy of A^-1 (sum J J^T w^2 mu) A^-1) and its ``var0`` part (of
    A^-1 (sum J J^T w^2) A^-1); ``sums`` (N, 5) for :func:`noise_model`: pixels, sum mu,
    sum mu^2, sum e^2 and sum mu e^2, e the residual high-passed along the
    row ((2 r - left - right) / sqrt(6): white noise keeps its variance, while
    what the model misses (a tail, an unmodelled column, line jitter) is
    smooth along a row and drops out)."""
    h, w = image.shape
    n = prev.shape[0]
    m = 2 * radius + 1
    for k in numba.prange(n):
        x0, y0 = centre[k, 0] - radius, centre[k, 1] - radius
        own = np.empty((m, m))
        gx, gy = np.empty(m), np.empty(m)
        own_gaussian(prev, k, x0, y0, m, own, gx, gy)
        target = np.empty((m, m))
        less_neighbours(image, model, own, x0, y0, target)
        a, cx, cy, s, b = prev[k, 0], prev[k, 1], prev[k, 2], prev[k, 3], prev[k, 4]
        jtj = np.zeros((5, 5))
        jmu = np.zeros((5, 5))
        jw2 = np.zeros((5, 5))
        jtr = np.zeros(5)
        weight = np.ones((m, m))
        plain = 0.0
        jac = np.empty(5)
        res = np.zeros((m, m))
        mus = np.zeros((m, m))
        inside = np.zeros((m, m), np.bool_)
        cost = 0.0
        count = 0
        for p in range(m):
            yy = y0 + p
            if yy < 0 or yy >= h:
                continue
            for q in range(m):
                xx = x0 + q
                if xx < 0 or xx >= w:
                    continue
                dx, dy = xx - cx, yy - cy
                d2 = dx * dx + dy * dy
                g = gy[p] * gx[q]
                r = a * g + b - target[p, q]
                ag = a * g
                mu = model[yy, xx] + b  # the model holds this column too
                wt = weight_of(mu, a, b, gain, var0)
                weight[p, q] = wt
                jac[0] = g
                jac[1] = ag * dx / (s * s)
                jac[2] = ag * dy / (s * s)
                jac[3] = ag * d2 / (s * s * s)
                jac[4] = 1.0
                for u in range(5):
                    jtr[u] += jac[u] * r * wt
                add_outer(jtj, jac, wt)
                cost += wt * r * r
                plain += r * r
                count += 1
                if collect:
                    add_outer(jmu, jac, wt * wt * mu)
                    add_outer(jw2, jac, wt * wt)
                    res[p, q] = -r
                    mus[p, q] = mu
                    inside[p, q] = True
        for acc in (jtj, jmu, jw2):
            mirror(acc)
        if collect:
            position_terms(jtj, jmu, jw2, terms[k])
            noise_sums(res, mus, inside, sums[k])
            rms[k] = np.sqrt(plain / max(count, 1))
        take_step(
            image,
            target,
            weight,
            x0,
            y0,
            m,
            prev,
            params,
            lam,
            k,
            jtj,
            jtr,
            cost,
            sig_lo,
            sig_hi,
        )


@numba.njit(cache=True, fastmath=True)
def less_neighbours(image, model, own, x0, y0, out):
    """``out`` (m, m): the patch at (x0, y0) of the image less the model,
    plus the column's ``own`` Gaussian: the image less its neighbours (edge
    pixels repeated beyond the frame)."""
    h, w = image.shape
    m = out.shape[0]
    for p in range(m):
        for q in range(m):
            yy = min(max(y0 + p, 0), h - 1)
            xx = min(max(x0 + q, 0), w - 1)
            out[p, q] = image[yy, xx] - model[yy, xx] + own[p, q]


@numba.njit(cache=True, fastmath=True)
def add_outer(acc, jac, f):
    """The upper triangle of ``acc`` (5, 5) += ``f`` jac jac^T."""
    for u in range(5):
        for v in range(u, 5):
            acc[u, v] += jac[u] * jac[v] * f


@numba.njit(cache=True, fastmath=True)
def mirror(acc):
    """``acc``'s lower triangle from its upper one."""
    for u in range(acc.shape[0]):
        for v in range(u):
            acc[u, v] = acc[v, u]


@numba.njit(cache=True, fastmath=True)
def take_step(
    image,
    target,
    weight,
    x0,
    y0,
    m,
    prev,
    params,
    lam,
    k,
    jtj,
    jtr,
    cost,
    sig_lo,
    sig_hi,
):
    """Column k's damped Gauss-Newton step from its normal equations (``jtj``
    damped in place): kept where it lowers the patch's cost, the damping
    eased; else the start kept, the damping raised."""
    a, cx, cy, s, b = prev[k, 0], prev[k, 1], prev[k, 2], prev[k, 3], prev[k, 4]
    for u in range(5):
        jtj[u, u] += lam[k] * (jtj[u, u] + 1e-9)
    step = solve5(jtj, jtr)
    # At most one pixel of movement per step keeps the batch stable.
    move = np.hypot(step[1], step[2])
    if move > 1.0:
        step[1] /= move
        step[2] /= move
    ta = max(a + step[0], 1e-9)
    tcx, tcy = cx + step[1], cy + step[2]
    ts = max(s + step[3], 1e-3)
    tb = b + step[4]
    trial = cost_of(image, target, weight, x0, y0, m, ta, tcx, tcy, ts, tb)
    if trial <= cost:
        params[k, 0], params[k, 1], params[k, 2] = ta, tcx, tcy
        params[k, 3], params[k, 4] = ts, tb
        lam[k] = max(lam[k] * 0.3, 1e-7)
    else:
        params[k, :] = prev[k, :]
        lam[k] = min(lam[k] * 10.0, 1e7)
    params[k, 3] = min(max(params[k, 3], sig_lo), sig_hi)


@numba.njit(cache=True, fastmath=True)
def noise_sums(res, mus, inside, out):
    """``out`` (5,): pixels, sum mu, sum mu^2, sum e^2, sum mu e^2 over a
    patch, e the residual ``res`` high-passed along the row and mu the
    model's mean under that filter's squared weights (the variance e has
    where the signal curves, as on a column's peak)."""
    norm = 1.0 / np.sqrt(6.0)
    out[:] = 0.0
    m = res.shape[1]
    for p in range(res.shape[0]):
        for q in range(1, m - 1):
            if inside[p, q - 1] and inside[p, q] and inside[p, q + 1]:
                e = (2.0 * res[p, q] - res[p, q - 1] - res[p, q + 1]) * norm
                mu = (4.0 * mus[p, q] + mus[p, q - 1] + mus[p, q + 1]) / 6.0
                out[0] += 1.0
                out[1] += mu
                out[2] += mu * mu
                out[3] += e * e
                out[4] += mu * e * e


@numba.njit(cache=True, fastmath=True)
def position_terms(a, jmu, jw2, out):
    """``out`` (6,) = the x, y block (xx, yy, xy) of a^-1 jmu a^-1 and of
    a^-1 jw2 a^-1; NaN where a column of zero height leaves x, y
    undetermined."""
    if not (a[1, 1] > 1e-12 * a[4, 4] and a[2, 2] > 1e-12 * a[4, 4]):
        out[:] = np.nan
        return
    rows = np.empty((2, 5))  # rows x and y of a^-1 (a is symmetric)
    for t in range(2):
        e = np.zeros(5)
        e[1 + t] = -1.0
        rows[t] = solve5(a.copy(), e)  # solve5 gives -a^-1 r
    for i, inner in enumerate((jmu, jw2)):
        for t, u, j in ((0, 0, 0), (1, 1, 1), (0, 1, 2)):
            acc = 0.0
            for p in range(5):
                for q in range(5):
                    acc += rows[t, p] * inner[p, q] * rows[u, q]
            out[3 * i + j] = acc


def noise_model(sums: np.ndarray) -> tuple[float, float]:
    """(gain, variance at zero signal) of the image's noise, variance =
    gain * signal + variance0 (Poisson counts plus Gaussian read noise), fitted
    by least squares to the high-passed squared residuals of the columns'
    fits against their model (``sums`` of :func:`lm_round`, rows of many
    columns). A negative fit of either term is refitted without it."""
    sums = np.asarray(sums, float).reshape(-1, 5)
    sums = sums[sums[:, 0] > 0]
    if len(sums) == 0:
        return 0.0, float("nan")
    s0, s1, s2, r0, r1 = sums.sum(0).tolist()
    det = s2 * s0 - s1 * s1
    gain = (r1 * s0 - r0 * s1) / det if det > 0 else -1.0
    var0 = (s2 * r0 - s1 * r1) / det if det > 0 else -1.0
    if gain < 0:  # no Poisson term: Gaussian noise only
        gain, var0 = 0.0, r0 / s0
    elif var0 < 0:  # no read noise: Poisson only
        gain, var0 = r1 / s2, 0.0
    return float(gain), float(var0)


def _kernels() -> dict:
    return {"start": start, "render": render, "round": lm_round}
