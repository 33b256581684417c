"""How close can the column fit come to the Cramer-Rao bound? (diagnostic)

    python benchmarks/fit_efficiency.py [--timing]

The bound of uncertainty_synthetic.py is that of an isolated Gaussian column
(height, x, y, width, background unknown) in Poisson plus read noise, seen
through a patch of 4 widths and weighted by the noise (maximum likelihood).
find_columns fits on a patch of half the A-B distance (3.5 widths on this
specimen, 1.5-2.5 on the real images), each pixel weighted by the inverse of
its variance under the noise model read at no less than the column's half
height (it was unweighted until 2026-12-03).
This prints, for the A and B columns of that benchmark's specimen at dose
100, the standard error of x over the bound of three fits on patches of
1.5, 2, 2.5 and 3.5 widths: unweighted, weighted by the variance, and
weighted by the variance read at no less than the column's half height (the
fit's WEIGHT_FLOOR): what the estimator itself costs, before any noise the
model leaves out; and how far each fit moves a column when the background
slopes under it (the model's background is flat), which is the weights'
price: what the Gaussian misses lies in the flanks they favour.
``--timing``: find_columns on a 1024^2 [001] perovskite (dose 100) with the
fit weighted and unweighted, side by side in one process, median of 5.
"""

import numpy as np
from scipy.ndimage import minimum_filter
from uncertainty_synthetic import COLUMN_WIDTH, PIXEL_SIZE, render, specimen

READ_NOISE = 1.0  # the renderer's Gaussian read noise, counts


def jacobian(height, background, width, radius):
    """(5, P) derivatives of a Gaussian column on its patch and (P,) its mean."""
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1].astype(float)
    g = np.exp(-(xx**2 + yy**2) / (2 * width**2))
    r2 = xx**2 + yy**2
    rows = [
        g,
        height * g * xx / width**2,
        height * g * yy / width**2,
        height * g * r2 / width**3,
        np.ones_like(g),
    ]
    return np.stack(rows).reshape(5, -1), (background + height * g).ravel()


def weights(height, background, mean, floor):
    """1 / variance per pixel, read at no less than background + floor x
    height (floor None: unweighted, all 1)."""
    if floor is None:
        return np.ones_like(mean)
    return 1 / (np.maximum(mean, background + floor * height) + READ_NOISE**2)


def x_error(height, background, width, radius, floor):
    """Standard error of x of a least-squares fit on the patch, weighted as
    :func:`weights` (floor 0: by the true variance, maximum likelihood)."""
    jac, mean = jacobian(height, background, width, radius)
    w = weights(height, background, mean, floor)
    a = np.linalg.inv((jac * w) @ jac.T)
    var = mean + READ_NOISE**2
    return float(np.sqrt((a @ (jac * w * w * var) @ jac.T @ a)[1, 1]))


def slope_shift(height, background, width, radius, floor):
    """x shift (px) of the fit when the background slopes by 1 % of itself
    per pixel along x under the column (the model's background is flat)."""
    jac, mean = jacobian(height, background, width, radius)
    xx = np.mgrid[-radius : radius + 1, -radius : radius + 1][1].ravel()
    w = weights(height, background, mean, floor)
    a = (jac * w) @ jac.T
    return float(np.linalg.solve(a, (jac * w) @ (0.01 * background * xx))[1])


FITS = {"unweighted": None, "weighted": 0.0, "weighted from half height": 0.5}


def main():
    columns = specimen(256)
    _, ref, expected = render(columns, 256, 1000, dose=100)
    width = COLUMN_WIDTH / PIXEL_SIZE
    expected = expected.astype(float)
    floor = minimum_filter(expected, size=int(6 * width))
    ij = np.round(ref.xy).astype(int)
    for k, name in enumerate("AB"):
        at = ij[ref.labels == k]
        height = float(
            np.median(expected[at[:, 1], at[:, 0]] - floor[at[:, 1], at[:, 0]])
        )
        background = float(np.median(floor[at[:, 1], at[:, 0]]))
        bound = x_error(height, background, width, int(np.ceil(4 * width)), 0.0)
        print(
            f"{name}: width {width:.2f} px, height {height:.0f}, background "
            f"{background:.0f}, bound {bound:.4f} px; slope shift: the fit's x "
            "shift under a background sloping by 1 % of itself per px"
        )
        for f in (1.5, 2, 2.5, 3.5):
            r = int(np.ceil(f * width))
            print(
                f"  patch {f} widths: "
                + ", ".join(
                    f"{label} {x_error(height, background, width, r, fl) / bound:.3f}x"
                    f" (slope shift {slope_shift(height, background, width, r, fl):.4f}"
                    " px)"
                    for label, fl in FITS.items()
                )
            )


def timing(repeats=5):
    import time
    import warnings

    import stemunmix.core.refine as refine
    from stemunmix.synthetic import perovskite

    prob = perovskite(shape=1024, dose=100, seed=30001)[0].segment()
    weighted = refine._weights_of
    spent = {"weighted": [], "unweighted": []}
    try:
        for _ in range(repeats):
            for key in spent:
                refine._weights_of = (
                    weighted if key == "weighted" else (lambda noise: (0.0, 0.0))
                )
                t = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    prob.find_columns(show_progressbar=False)
                spent[key].append(time.perf_counter() - t)
    finally:
        refine._weights_of = weighted
    w, u = (float(np.median(v)) for v in spent.values())
    print(f"find_columns 1024^2, median of {repeats}: weighted {w:.3f} s, "
          f"unweighted {u:.3f} s ({w / u - 1:+.1%})")  # fmt: skip


if __name__ == "__main__":
    import sys

    timing() if "--timing" in sys.argv else main()
