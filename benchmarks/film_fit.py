"""Which fit a column on an amorphous film allows, and whether the error bars hold.

    python benchmarks/film_fit.py

A diagnostic of issue #34's "position error within 1.2x the Cramer-Rao
bound" on a film (``structures.py --particles`` read 1.3-2.65x the bound
that counts the film as noise, 3-16x the shot-noise bound, with the
weighted fit alone; the refit with the film's covariance,
:mod:`stemunmix.core.texture`, followed from this):

1. One isolated column (a Gaussian 1.75 px wide, the particles' 0.035 nm
   at 0.02 nm/px; height ``dose`` counts over a background of 0.1 of it) on
   the film ``stemunmix.synthetic.crystal`` renders
   (:func:`stemunmix.core.synthetic.amorphous`: blobs of the column's width,
   six per nearest distance squared, heights up to 0.15 of the column),
   Poisson noise, 300 trials per dose. Two fits of its five parameters on
   its 11 x 11 patch: least squares weighted by the Poisson variance (what
   ``refine_gaussian`` does) and generalized least squares with the film's
   covariance added (measured on a film rendered alone). The RMS position
   error over the bound with the film as noise (the Fisher information
   with the pixels' covariance, Poisson plus film) and over the shot-noise
   bound.
2. Whether the reported error bars hold on the film: a 5 nm fcc [110]
   particle on vacuum and on the film, doses 20-500, through
   ``find_columns(structure="one species")``: the RMS of each column's
   error over its reported standard deviation (1: the bars hold).
3. What the refit with the film costs: ``find_columns`` on an 8 nm particle
   (931 columns) on the film at dose 100, with the refit and without it
   (``stemunmix.core.find._texture`` made to find none), median of 3 each,
   interleaved.

Writes benchmarks/results/film_fit.json.
"""

import json
import time
import warnings
from pathlib import Path

import numpy as np
from _results import commit
from scipy.optimize import least_squares
from scipy.spatial import cKDTree

HERE = Path(__file__).resolve().parent
SIGMA, AMPLITUDE = 1.75, 0.15
NEAR = 0.392 * np.sqrt(3 / 8) / 0.02  # fcc [110] nearest distance, pixels
R = int(np.ceil(3 * SIGMA))
YY, XX = np.mgrid[: 2 * R + 1, : 2 * R + 1] - R


def gaussian(p):
    h, x, y, s, b = p
    return h * np.exp(-((XX - x) ** 2 + (YY - y) ** 2) / (2 * s * s)) + b


def jacobian(p, eps=1e-5):
    m0 = gaussian(p).ravel()
    cols = []
    for k in range(5):
        q = np.array(p, float)
        q[k] += eps
        cols.append((gaussian(q).ravel() - m0) / eps)
    return np.array(cols).T


def film_patches(rng, shape=600):
    from stemunmix.core.synthetic import amorphous

    w = 2 * R + 1
    film = amorphous((shape, shape), NEAR, SIGMA, AMPLITUDE, rng)
    patches = np.lib.stride_tricks.sliding_window_view(film, (w, w))
    return patches[::3, ::3].reshape(-1, w * w)


def one_column(dose, trials=300, seed=0):
    from stemunmix.core.synthetic import amorphous

    rng = np.random.default_rng(seed)
    patches = film_patches(rng)
    film_cov, film_mean = np.cov(patches, rowvar=False), patches.mean()
    height = float(dose)
    truth = np.array([height, 0.2, -0.3, SIGMA, 0.1 * height + film_mean * height])
    mu = gaussian(truth).ravel()
    cov = np.diag(mu) + film_cov * height**2
    whiten = np.linalg.inv(np.linalg.cholesky(cov))
    j = jacobian(truth)
    with_film = np.sqrt(np.diag(np.linalg.inv(j.T @ np.linalg.solve(cov, j)))[1:3])
    shot = np.sqrt(np.diag(np.linalg.inv(j.T @ (j / mu[:, None])))[1:3])
    errors = {"weighted": [], "generalized": []}
    w = 2 * R + 1
    for _ in range(trials):
        film = amorphous((w + 20, w + 20), NEAR, SIGMA, AMPLITUDE, rng)
        film = film[10 : 10 + w, 10 : 10 + w] * height
        counts = rng.poisson(
            np.clip(gaussian(truth) - film_mean * height + film, 0, None)
        )
        counts = counts.ravel()
        start = truth + [0, rng.normal(0, 0.3), rng.normal(0, 0.3), 0, 0]

        def weighted(p, counts=counts):
            m = gaussian(p).ravel()
            return (m - counts) / np.sqrt(np.maximum(m, 1))

        def generalized(p, counts=counts):
            return whiten @ (gaussian(p).ravel() - counts)

        for name, f in (("weighted", weighted), ("generalized", generalized)):
            errors[name].append(least_squares(f, start).x[1:3] - truth[1:3])
    out = {}
    for name, e in errors.items():
        rms = np.sqrt((np.array(e) ** 2).mean(0))
        out[name] = {"over_bound_with_film": (rms / with_film).tolist(),
                     "over_shot_bound": (rms / shot).tolist()}  # fmt: skip
    return out


def error_bars(support, dose):
    from stemunmix.synthetic import crystal

    image, truth = crystal("fcc", "110", 0.392, shape=512, particle=5.0,
                           support=support, dose=dose, seed=0)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = image.find_columns(structure="one species", show_progressbar=False)
    d, k = cKDTree(truth.columns.xy).query(found.xy)
    hit = d < 0.25 * NEAR
    err = found.xy[hit] - truth.columns.xy[k[hit]]
    sd = np.sqrt(np.diagonal(np.asarray(found.covariance)[hit], axis1=1, axis2=2))
    return np.sqrt(((err / sd) ** 2).mean(0)).tolist()


def cost(repeats=3):
    from stemunmix.core import find
    from stemunmix.synthetic import crystal

    image, _ = crystal("fcc", "110", 0.392, shape=512, particle=8.0,
                       support=AMPLITUDE, dose=100, seed=0)  # fmt: skip
    measured = find._texture
    times = {"with the refit": [], "without": []}
    for _ in range(repeats):
        for name in times:
            find._texture = measured if name == "with the refit" else _none
            copy = image.deepcopy()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                copy.segment(structure="one species", show_progressbar=False)
                t = time.perf_counter()
                copy.find_columns(show_progressbar=False)
            times[name].append(time.perf_counter() - t)
    find._texture = measured
    return {k: float(np.median(v)) for k, v in times.items()}


def _none(*args):
    return None


def main():
    out = {"commit": commit(), "date": time.strftime("%Y-%m-%d"), "column": {},
           "error_bars": {}}  # fmt: skip
    for dose in (20, 100, 500):
        r = out["column"][dose] = one_column(dose)
        for name, v in r.items():
            print(f"one column on the film, dose {dose:3d}, {name:11s} least squares: "
                  "error / the bound with the film {:.2f} / {:.2f}, / the shot-noise "
                  "bound {:.2f} / {:.2f}".format(*v["over_bound_with_film"],
                                                 *v["over_shot_bound"]), flush=True)  # fmt: skip
    for support, where in ((None, "vacuum"), (0.15, "the film")):
        for dose in (20, 100, 500):
            z = out["error_bars"][f"{where} {dose}"] = error_bars(support, dose)
            print(f"5 nm particle on {where:8s} dose {dose:3d}: error / reported "
                  f"sd (RMS) {z[0]:.2f} / {z[1]:.2f}", flush=True)  # fmt: skip
    c = out["cost_s"] = cost()
    print("find_columns on an 8 nm particle on the film (931 columns), median of "
          f"3: {c['with the refit']:.2f} s with the refit, {c['without']:.2f} s "
          "without", flush=True)  # fmt: skip
    (HERE / "results" / "film_fit.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
