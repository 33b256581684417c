"""The error model of column positions (core/uncertainty.py) and its
propagation to per-cell and per-region polarization (core/measure.py)."""

import numpy as np
import pytest

from stemunmix import Columns
from stemunmix.core import uncertainty as U
from stemunmix.core.measure import (
    line_cross,
    octahedral_cells,
    polarization_cells,
    region_polarization,
    significance,
    strain_cells,
)
from stemunmix.core.refine import noise_model, refine_gaussian


def _lattice(n=24, spacing=10.0, jitter=0.0, seed=0):
    """A square A lattice (n x n sites) and its B columns at the cell centres,
    each position moved by iid Gaussian ``jitter`` (px)."""
    rng = np.random.default_rng(seed)
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    ij = np.stack([i.ravel(), j.ravel()], 1)
    xy_a = ij * spacing + rng.normal(0, jitter, (len(ij), 2))
    xy_b = ij * spacing + spacing / 2 + rng.normal(0, jitter, (len(ij), 2))
    return ij, xy_a, xy_b


def test_correlated_covariance_of_white_noise_is_the_white_one():
    params = np.array([[100.0, 20.2, 19.7, 2.0, 5.0]])
    var = np.full((40, 40), 3.0)
    acov = np.zeros((9, 9))
    acov[4, 4] = 1.0
    corr, white = U.correlated_covariance((40, 40), params, 5, var, acov)
    np.testing.assert_allclose(corr, white, rtol=1e-9)
    # noise smoothed along the row: both estimators sum smooth patterns along
    # x, so both variances rise, by less than the noise power at zero
    # frequency (1 + 2 x 0.5); anti-correlated (high-passed) noise lowers them
    acov[4, 3] = acov[4, 5] = 0.5
    corr, white = U.correlated_covariance((40, 40), params, 5, var, acov)
    ratio = np.diagonal(corr[0]) / np.diagonal(white[0])
    assert (ratio > 1.3).all() and (ratio < 2).all()
    acov[4, 3] = acov[4, 5] = -0.25
    corr, white = U.correlated_covariance((40, 40), params, 5, var, acov)
    assert (np.diagonal(corr[0]) < 0.9 * np.diagonal(white[0])).all()


def test_correlated_factor_matches_monte_carlo_scatter():
    """Noise smoothed along x: the factor predicts the fit's real scatter."""
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:96, :96]
    xy = np.array([[x, y] for x in range(16, 90, 16) for y in range(16, 90, 16)], float)
    clean = 20 + sum(300 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 8) for x, y in xy)
    kernel = np.array([0.25, 0.5, 0.25])

    def smooth(n):
        return sum(
            k * np.roll(n, s, 1) for k, s in zip(kernel, (-1, 0, 1), strict=True)
        )

    errs = []
    for _ in range(60):
        img = clean + smooth(rng.normal(0, 4.0, clean.shape))
        errs.append(refine_gaussian(img, xy, 2.0, 5, uncertainty=False)["xy"] - xy)
    observed = np.sqrt(np.mean(np.square(errs), (0, 1)))
    img = clean + smooth(rng.normal(0, 4.0, clean.shape))
    fit = refine_gaussian(img, xy, 2.0, 5)
    noise = noise_model(fit["noise_sums"])
    shot = U.shot_covariance(fit["position_terms"], noise)
    fitted = {"height": fit["height"], "width": fit["sigma"],
              "background": fit["background"]}  # fmt: skip
    f = U.pixel_factors(img, fit["xy"], np.zeros(len(xy), int), fitted, 5,
                        noise, None, None)[0]  # fmt: skip
    cov = U.scale_covariance(shot, *(f["misfit"] * c for c in f["correlated"]))
    predicted = np.sqrt(np.median(np.diagonal(cov, 0, 1, 2), 0))
    np.testing.assert_allclose(predicted, observed, rtol=0.2)
    # independent pixels would claim a smaller error along x
    assert np.sqrt(np.median(shot[:, 0, 0])) < 0.85 * observed[0]


def _checkerboard(rng, draws, line_jitter=0.0):
    """Poisson images of a 9 x 9 checkerboard of Gaussian columns (heights
    400 and 150, width 2 px, background 20), each scan line shifted along x
    by its own N(0, ``line_jitter``) px; and the columns [x, y], classes."""
    yy, xx = np.mgrid[:128, :128].astype(float)
    xy = np.array(
        [[x, y] for x in range(12, 120, 12) for y in range(12, 120, 12)], float
    )
    labels = ((xy[:, 0] // 12 + xy[:, 1] // 12) % 2).astype(int)
    heights = np.where(labels == 1, 150.0, 400.0)
    images = []
    for _ in range(draws):
        shifted = xx - rng.normal(0, line_jitter, (128, 1))
        clean = 20 + sum(
            a * np.exp(-((shifted - x) ** 2 + (yy - y) ** 2) / 8)
            for (x, y), a in zip(xy, heights, strict=True)
        )
        images.append(rng.poisson(clean).astype(float))
    return images, xy, labels


def _factor_products(rng, images, xy, labels, start_jitter=0.0):
    """Per image, per class: the misfit x correlated factors (x, y) of the
    fit started ``start_jitter`` px off the true positions."""
    product = []
    for img in images:
        fit = refine_gaussian(img, xy + rng.normal(0, start_jitter, xy.shape), 2.0, 5)
        fitted = {"height": fit["height"], "width": fit["sigma"],
                  "background": fit["background"]}  # fmt: skip
        f = U.pixel_factors(img, fit["xy"], labels, fitted, 5,
                            noise_model(fit["noise_sums"]), None, None)  # fmt: skip
        product.append([f[k]["misfit"] * np.array(f[k]["correlated"]) for k in (0, 1)])
    return np.array(product)


def _isolated_bound(height, background, width=2.0, radius=12):
    """Cramer-Rao bound of x (px) of an isolated Gaussian column in Poisson
    noise, height, x, y, width and background unknown."""
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1].astype(float)
    g = np.exp(-(xx**2 + yy**2) / (2 * width**2))
    jac = np.stack([g, height * g * xx / width**2, height * g * yy / width**2,
                    height * g * (xx**2 + yy**2) / width**3, np.ones_like(g)])  # fmt: skip
    jac = jac.reshape(5, -1)
    fisher = (jac / (background + height * g).ravel()) @ jac.T
    return float(np.sqrt(np.linalg.inv(fisher)[1, 1]))


def test_the_noise_weighted_fit_is_closer_to_the_bound():
    """Poisson columns on a patch of 2.5 widths: weighted by the noise model
    of a first fit (the variance read at no less than the half height), the
    bright columns scatter 5 % less than unweighted, 10-16 % from the
    Cramer-Rao bound, and the shot covariance says so."""
    rng = np.random.default_rng(5)
    images, xy, labels = _checkerboard(rng, 30)
    err = {True: [], False: []}
    sigma = []
    for img in images:
        noise = noise_model(refine_gaussian(img, xy, 2.0, 5)["noise_sums"])
        for weighted in (True, False):
            fit = refine_gaussian(img, xy, 2.0, 5, noise=noise if weighted else None)
            err[weighted].append(fit["xy"] - xy)
        fit = refine_gaussian(img, xy, 2.0, 5, noise=noise)
        shot = U.shot_covariance(fit["position_terms"], noise_model(fit["noise_sums"]))
        sigma.append(np.sqrt(np.diagonal(shot, 0, 1, 2)))
    inner = ((xy > 20) & (xy < 108)).all(1)
    for k, height in ((0, 400.0), (1, 150.0)):
        m = inner & (labels == k)
        bound = _isolated_bound(height, 20.0)
        weighted, plain = (
            np.sqrt(np.mean(np.array(err[w])[:, m] ** 2, (0, 1))) for w in (True, False)
        )
        assert (weighted / bound < 1.2).all(), (k, weighted / bound)
        assert (plain > weighted).all()
        reported = np.sqrt(np.mean(np.array(sigma)[:, m] ** 2, (0, 1)))
        np.testing.assert_allclose(reported / weighted, 1, atol=0.1)
        if k == 0:  # the bright class: there weighting matters
            assert (plain / weighted > 1.03).all(), plain / weighted


def test_the_factors_of_white_noise_are_one():
    """A fit's residuals are not its noise: it takes out what moves its
    columns, which read as anticorrelated residuals (factors 0.82-0.85 in
    variance, the mean of 20 draws, before the null was taken out; a null
    of one draw scatters by about 0.05). On Poisson noise the factors are
    about 1."""
    rng = np.random.default_rng(5)
    images, xy, labels = _checkerboard(rng, 20)
    mean = _factor_products(rng, images, xy, labels, start_jitter=0.3).mean(0)
    assert (mean > 0.88).all() and (mean < 1.12).all(), mean


def test_line_jitter_is_no_pixel_noise():
    """Scan lines shifted along x leave the model's x derivative on each row
    of a column, which a fit averages and which does not move y at all: the
    pixel factors leave it to the scan term (before: y read 1.3-1.5 under
    0.3 px of line jitter, and B's sigma in y was 1.23x its scatter)."""
    rng = np.random.default_rng(6)
    images, xy, labels = _checkerboard(rng, 6, line_jitter=0.3)
    mean = _factor_products(rng, images, xy, labels).mean(0)
    assert (mean > 0.85).all() and (mean < 1.15).all(), mean


def test_a_class_with_few_bright_columns_takes_the_others_factors():
    """The factors are measured on columns of at least FACTOR_SNR: a class
    with fewer than FACTOR_COLUMNS of them (the faint Ti of a low-dose
    SrTiO3) is left out of the measured ones and takes the pooled factors."""
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:96, :96]
    xy = np.array([[x, y] for x in range(16, 90, 16) for y in range(16, 90, 16)], float)
    labels = (np.arange(len(xy)) % 5 == 0).astype(int)  # 5 columns of class 1
    height = np.where(labels == 1, 9.0, 300.0)  # SNR about 7 and 230
    clean = 20 + sum(
        a * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 8)
        for (x, y), a in zip(xy, height, strict=True)
    )
    img = rng.poisson(clean).astype(float)
    fit = refine_gaussian(img, xy, 2.0, 5)
    noise = noise_model(fit["noise_sums"])
    fitted = {"height": fit["height"], "width": fit["sigma"],
              "background": fit["background"]}  # fmt: skip
    bright = ~U.undetected(fitted, noise, U.FACTOR_SNR)
    assert bright[labels == 0].all() and not bright[labels == 1].any()
    args = (img, fit["xy"], labels, fitted, 5, noise, None, None)
    every = U.pixel_factors(*args, min_columns=1)
    assert set(every) == {0, 1}
    strict = U.pixel_factors(*args, measured=bright, min_columns=U.FACTOR_COLUMNS)
    assert set(strict) == {0}
    assert U._pooled(strict) == {"misfit": strict[0]["misfit"],
                                 "correlated": strict[0]["correlated"]}  # fmt: skip


@pytest.mark.parametrize("jitter", [0.0, 0.1, 0.3])
def test_scan_term_recovers_planted_column_jitter(jitter):
    ij, xy, _ = _lattice(40, jitter=np.hypot(jitter, 0.05), seed=3)
    pixel = np.tile(np.diag([0.05**2, 0.05**2]), (len(xy), 1, 1))
    scan = U.scan_term(xy, ij, pixel)
    got = np.sqrt(np.diag(scan["covariance"]))
    np.testing.assert_allclose(got, jitter, atol=0.02, rtol=0.12)
    z = U.split_half_calibration(xy, ij, pixel + scan["covariance"])
    np.testing.assert_allclose(z, 1.0, atol=0.15)
    if jitter == 0.3:
        assert min(scan["calibration"]) > 4  # the pixel terms alone: far off


def test_scan_term_needs_sites():
    ij, xy, _ = _lattice(4)
    scan = U.scan_term(xy, ij, np.tile(np.eye(2) * 0.01, (len(xy), 1, 1)))
    assert scan["sites"] < 20 and np.isnan(scan["calibration"]).all()
    np.testing.assert_array_equal(scan["covariance"], 0)


def test_polarization_covariance_and_significance_hold_by_monte_carlo():
    rng = np.random.default_rng(4)
    cov_col = np.array([[0.04, 0.015], [0.015, 0.02]])
    ij, xy_a, xy_b = _lattice(8)
    chol = np.linalg.cholesky(cov_col)
    disp = []
    for _ in range(400):
        a = xy_a + rng.standard_normal(xy_a.shape) @ chol.T
        b = xy_b + rng.standard_normal(xy_b.shape) @ chol.T
        disp.append(polarization_cells(a, np.tile(cov_col, (len(a), 1, 1)), ij, b,
                                       np.tile(cov_col, (len(b), 1, 1)), ij,
                                       site=(0.5, 0.5))[0])  # fmt: skip
    disp = np.array(disp)
    _, sigma, cov = polarization_cells(xy_a, np.tile(cov_col, (len(ij), 1, 1)), ij, xy_b,
                                       np.tile(cov_col, (len(ij), 1, 1)), ij,
                                       site=(0.5, 0.5), return_covariance=True)  # fmt: skip
    cell = (3, 4)
    np.testing.assert_allclose(np.cov(disp[:, 3, 4].T), cov[cell], rtol=0.2, atol=2e-3)
    np.testing.assert_allclose(cov[cell], 1.25 * cov_col, rtol=1e-12)
    sig = significance(disp[:, 3, 4], cov[cell][None])
    assert 0.003 < np.mean(sig > 3) < 0.03  # exp(-4.5) = 1.1 %


def test_tilt_sigma_uses_the_full_covariance_by_monte_carlo():
    # B columns on a square grid, O columns on the bond midpoints along a;
    # correlated column errors, so a diagonal sigma would misstate the
    # variance across a bond that is not along an axis (the grid is rotated).
    rng = np.random.default_rng(7)
    ij, _, _ = _lattice(6)
    rot = np.array([[np.cos(0.5), -np.sin(0.5)], [np.sin(0.5), np.cos(0.5)]])
    xy_b = (ij * 10.0) @ rot.T
    xy_o = (ij * 10.0 + [5.0, 0.0]) @ rot.T
    cov_col = np.array([[0.05, 0.04], [0.04, 0.05]])
    chol = np.linalg.cholesky(cov_col)
    covs = np.tile(cov_col, (len(ij), 1, 1))
    tilts = []
    for _ in range(600):
        b = xy_b + rng.standard_normal(xy_b.shape) @ chol.T
        o = xy_o + rng.standard_normal(xy_o.shape) @ chol.T
        tilts.append(octahedral_cells(b, covs, ij, o, covs)["a"]["tilt"][2, 2])
    sigma = octahedral_cells(xy_b, covs, ij, xy_o, covs)["a"]["sigma_tilt"][2, 2]
    assert np.std(tilts) == pytest.approx(sigma, rel=0.1)
    sig = np.sqrt([[0.05, 0.05]] * len(ij))
    diagonal = octahedral_cells(xy_b, sig, ij, xy_o, sig)
    assert abs(diagonal["a"]["sigma_tilt"][2, 2] / sigma - 1) > 0.2


def test_region_mean_counts_a_shared_corner_once():
    rng = np.random.default_rng(5)
    ij, xy_a, xy_b = _lattice(10)
    s = 0.1
    cov = np.tile(np.eye(2) * s**2, (len(ij), 1, 1))
    region = np.zeros((10, 10), bool)
    region[2:6, 2:6] = True
    means = []
    for _ in range(400):
        a = xy_a + rng.normal(0, s, xy_a.shape)
        b = xy_b + rng.normal(0, s, xy_b.shape)
        means.append(region_polarization(a, cov, ij, b, cov, ij, region,
                                         site=(0.5, 0.5))["mean"])  # fmt: skip
    r = region_polarization(xy_a, cov, ij, xy_b, cov, ij, region, site=(0.5, 0.5))
    assert r["cells"] == 16
    np.testing.assert_allclose(np.std(means, 0), r["sigma"], rtol=0.12)
    # 16 B columns (1/16 each) and 25 corners: 9 shared by four cells (1/16),
    # 12 by two (1/32), 4 by one (1/64): more than independent cells' 1.25 / 16
    exact = s * np.sqrt(16 / 16**2 + 9 / 16**2 + 12 / 32**2 + 4 / 64**2)
    np.testing.assert_allclose(r["sigma"], exact, rtol=1e-12)
    assert exact > s * np.sqrt(1.25 / 16)
    np.testing.assert_allclose(r["mean"], 0, atol=1e-12)
    with pytest.raises(ValueError, match="region"):
        region_polarization(xy_a, cov, ij, xy_b, cov, ij, np.zeros((10, 10), bool))


def test_columns_covariance_survives_selection_and_dict():
    rng = np.random.default_rng(6)
    m = rng.normal(size=(5, 2, 2))
    cov = m @ np.swapaxes(m, 1, 2)
    lines = np.zeros((5, 2, 2))
    lines[:, 0, 0] = np.arange(5) * 0.01
    c = Columns(rng.uniform(0, 50, (5, 2)), [0, 1, 0, 1, 0], covariance=cov,
                line_covariance=lines)  # fmt: skip
    np.testing.assert_allclose(c.sigma, np.sqrt(np.diagonal(cov, 0, 1, 2)))
    np.testing.assert_array_equal(c.select("B").covariance, cov[[1, 3]])
    np.testing.assert_array_equal(c.select("B").line_covariance, lines[[1, 3]])
    back = Columns.from_dict(c.to_dict())
    assert back == c
    assert back != Columns.from_dict({**c.to_dict(), "line_covariance": None})
    with pytest.raises(ValueError, match="line_covariance"):
        Columns(c.xy, line_covariance=-lines)
    plain = Columns(c.xy, sigma=np.full((5, 2), 0.2))
    np.testing.assert_allclose(plain.covariance[:, 0, 0], 0.04)
    np.testing.assert_array_equal(plain.covariance[:, 0, 1], 0)
    with pytest.raises(ValueError, match="covariance"):
        Columns(c.xy, covariance=np.ones((4, 2, 2)))


def test_correlated_covariance_does_not_depend_on_the_units():
    # heights of 1e6 counts (a real ADF frame) give the same position
    # covariance as height 1 with the variance scaled alike
    params = np.array([[1.0, 20.2, 19.7, 2.0, 0.0], [1.0, 8.0, 30.0, 2.0, 0.0]])
    acov = np.zeros((9, 9))
    acov[4, 4], acov[4, 3], acov[4, 5] = 1.0, 0.3, 0.3
    var = np.full((40, 40), 0.01)
    small, _ = U.correlated_covariance((40, 40), params, 5, var, acov)
    big = params.copy()
    big[:, [0, 4]] *= 1e6
    large, _ = U.correlated_covariance((40, 40), big, 5, var * 1e12, acov)
    assert np.isfinite(small).all()
    np.testing.assert_allclose(large, small, rtol=1e-6, atol=1e-9)


def test_undetected_columns_are_the_faint_ones():
    # height SNR = h sqrt(pi) w / sqrt(gain bg + var0) = h * 0.354 here
    q = {"height": np.array([30.0, 5.0, np.nan, 0.0]),
         "width": np.array([2.0, 2.0, 2.0, 2.0]),
         "background": np.full(4, 100.0)}  # fmt: skip
    np.testing.assert_array_equal(
        U.undetected(q, (1.0, 0.0)), [False, True, True, True]
    )


def test_lattice_shrink_only_where_the_lattice_is_more_regular():
    ij, xy, _ = _lattice(jitter=0.1, seed=3)
    told = np.tile(np.diag([0.2**2, 0.05**2]), (len(xy), 1, 1))
    fx, fy = U.lattice_shrink(xy, ij, told)
    assert 0.15 < fx < 0.4  # (0.1 / 0.2)^2 = 0.25
    assert fy == 1.0  # the lattice scatters more than told: no shrink
    assert U.lattice_shrink(xy[:30], ij[:30], told[:30]) == (1.0, 1.0)


def test_polarization_of_columns_without_sigma_keeps_the_positions():
    ij, xy_a, xy_b = _lattice(n=6)
    xy = np.concatenate([xy_a, xy_b])
    labels = np.repeat([0, 1], len(ij))
    cols = Columns(xy, labels, ["A", "B"], ij=np.concatenate([ij, ij]),
                   lattice_vectors=np.diag([10.0, 10.0]))  # fmt: skip
    p = cols.polarization_map().data
    assert np.isfinite(p[0]).sum() == 25  # the complete cells
    assert np.isnan(p[2]).all()  # no sigma was given


def test_error_records_become_metadata_arrays_and_warnings():
    good = {"factors": {0: {"misfit": 1.4, "correlated": (3.0, 2.5)}},
            "scan": np.eye(2) * 0.03, "sites": 700, "calibration": (1.0, 1.02),
            "calibration_pixel": (2.7, 2.9), "lattice": {0: (1.0, 1.0), 1: (0.5, 1.0)},
            "undetected": {0: 0, 1: 60}, "counts": {0: 100, 1: 100}}  # fmt: skip
    bad = {**good, "calibration": (2.1, 1.0), "undetected": {0: 0, 1: 10}}
    noise = {(0,): (2.0, 1.0), (1,): (2.0, 3.0), (2,): (1.0, 0.5)}
    arrays = U.record_arrays(
        {(0,): good, (2,): bad}, ["A", "B", "background"], (3,), noise
    )
    np.testing.assert_array_equal(arrays["noise_variance0"], [1.0, 3.0, 0.5])
    assert arrays["misfit_A"][0] == 1.4 and np.isnan(arrays["misfit_A"][1])
    assert np.isnan(arrays["misfit_B"]).all()  # B's factor was not measured
    np.testing.assert_array_equal(arrays["undetected_B"], [60, 0, 10])
    assert arrays["scan_covariance"].shape == (3, 2, 2)
    assert "misfit_background" not in arrays
    said = U.warnings_of({(0,): good, (2,): bad}, ["A", "B", "background"])
    assert len(said) == 2
    assert "60 of 100 'B' columns are not detected" in said[0]
    assert "frame (2,)" in said[1] and "not locally regular" in said[1]
    assert "structure" not in said[0]  # no SNR recorded: no judgement


@pytest.mark.parametrize(
    "a_snr, b_snr, said",
    [(106.0, 0.4, True),  # fcc [110] through the perovskite model, dose 20
     (16.7, 0.6, False),  # the real low-dose SrTiO3: its Ti is there, faint
     (120.0, 12.4, False)],  # a perovskite with B at 0.1 of A, dose 20
)  # fmt: skip
def test_b_columns_missing_beside_bright_a_name_another_structure(a_snr, b_snr, said):
    rec = {"undetected": {0: 0, 1: 300}, "counts": {0: 500, 1: 400},
           "snr": {0: a_snr, 1: b_snr}}  # fmt: skip
    (message,) = U.warnings_of({(): rec}, ["A", "B", "background"])
    assert ("structure='one species'" in message) is said


@pytest.mark.parametrize(
    "kwargs, match",
    [({"covariance": [[[1.0, 0.5], [0.0, 1.0]]]}, "symmetric"),
     ({"covariance": [[[-1.0, 0.0], [0.0, 1.0]]]}, "symmetric"),
     ({"sigma": [[-0.1, 0.1]]}, ">= 0"),
     ({"sigma": [[0.5, 0.5]], "covariance": [[[1.0, 0.0], [0.0, 1.0]]]}, "disagree")],
)  # fmt: skip
def test_columns_refuse_impossible_uncertainties(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Columns([[1.0, 2.0]], [0], ["A"], **kwargs)


def test_the_error_model_is_the_same_lazy_and_eager():
    """A lazy image gives the eager covariance, record and calibration."""
    import warnings

    from stemunmix.synthetic import perovskite

    image, _ = perovskite(shape=384, domains="none", seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eager = image.deepcopy()
        lazy = image.as_lazy()
        ce = eager.find_columns(show_progressbar=False)
        cl = lazy.find_columns(show_progressbar=False)
    assert len(ce) == len(cl) > 500
    np.testing.assert_array_equal(ce.xy, cl.xy)
    np.testing.assert_allclose(cl.covariance, ce.covariance, rtol=1e-12, atol=0)
    re = eager.probabilities.metadata.Signal.stemunmix.find_columns.as_dictionary()
    rl = lazy.probabilities.metadata.Signal.stemunmix.find_columns.as_dictionary()
    for key in (
        "calibration",
        "scan_covariance",
        "scan_lines",
        "correlated_A",
        "misfit_B",
    ):
        np.testing.assert_allclose(np.asarray(rl[key]), np.asarray(re[key]))
    np.testing.assert_array_equal(cl.line_covariance, ce.line_covariance)


def test_line_jitter_is_told_from_what_moves_columns_alone():
    # Line jitter along the fast scan moves every column on a line alike: it
    # is measured as line noise (across the lines), not as each column's own,
    # and the columns carry it for the measurements to correlate.
    import warnings

    from stemunmix.synthetic import perovskite

    image, _ = perovskite(shape=384, domains="none", jitter=0.3, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cols = image.find_columns(show_progressbar=False)
    md = image.probabilities.metadata.Signal.stemunmix.find_columns
    lines, own = np.asarray(md.scan_lines)[0], np.asarray(md.scan_own)[0]
    assert lines[0, 0] > 4 * own[0, 0]
    assert lines[0, 0] > 4 * lines[1, 1]  # jitter along x only
    np.testing.assert_allclose(
        cols.line_covariance, np.broadcast_to(lines, (len(cols), 2, 2))
    )
    np.testing.assert_allclose(np.asarray(md.scan_covariance)[0], own + lines)


def _line_noise(xy, width, jitter, rng):
    """Each column's shift from scan-line noise: iid shifts of every line
    (``jitter`` px on x and on y), averaged over the lines under the column
    with the weights of its position's information (a Gaussian of std
    width / sqrt(2) across the lines)."""
    lines = np.arange(int(xy[:, 1].min()) - 20, int(xy[:, 1].max()) + 21)
    shifts = rng.normal(0, jitter, (len(lines), 2))
    g = np.exp(-((lines[None] - xy[:, 1:2]) ** 2) / width**2)
    g /= g.sum(1, keepdims=True)
    return g @ shifts, (g**2).sum(1) * jitter**2  # shifts (N, 2), variance (N,)


def test_line_noise_is_shared_by_the_columns_on_the_same_lines():
    one = np.array([2.0, 0.3, 0.1])
    np.testing.assert_allclose(line_cross(5.0, one, 5.0, one), np.diag([0.09, 0.01]))
    assert line_cross(5.0, one, 7.0, one)[0, 0] == pytest.approx(0.09 * np.exp(-4 / 8))
    assert line_cross(5.0, one, 40.0, one)[0, 0] < 1e-12
    # unknown widths or terms share nothing
    assert not line_cross(5.0, np.array([np.nan, 0.3, 0.1]), 5.0, one).any()


def test_shared_line_noise_propagates_by_monte_carlo():
    # A rotated lattice whose columns carry own noise plus scan-line noise:
    # the corners of a cell's edge along a share their lines, so the line
    # noise cancels in exx, and every column of a row of cells shares it,
    # so a region's mean does not average it away.
    rng = np.random.default_rng(11)
    ij, xy_a, xy_b = _lattice(8, spacing=12.0)
    rot = np.array([[np.cos(0.05), -np.sin(0.05)], [np.sin(0.05), np.cos(0.05)]])
    xy_a, xy_b = (xy_a + 20) @ rot.T, (xy_b + 20) @ rot.T
    width, jitter, own = 2.5, 0.3, 0.03
    both = np.concatenate([xy_a, xy_b])
    _, line_var = _line_noise(both, width, jitter, rng)
    cov = np.zeros((len(both), 2, 2))
    cov[:, 0, 0] = cov[:, 1, 1] = own**2 + line_var
    shared = np.column_stack(
        [np.full(len(both), width), np.sqrt(line_var), np.sqrt(line_var)]
    )
    n = len(ij)
    region = np.zeros((8, 8), bool)
    region[2:4, 1:7] = True
    p, e, m = [], [], []
    for _ in range(500):
        shift, _ = _line_noise(both, width, jitter, rng)
        moved = both + shift + rng.normal(0, own, both.shape)
        a, b = moved[:n], moved[n:]
        p.append(
            polarization_cells(a, cov[:n], ij, b, cov[n:], ij, site=(0.5, 0.5))[0][3, 4]
        )
        e.append(strain_cells(a, ij)["exx"][3, 4])
        m.append(region_polarization(a, cov[:n], ij, b, cov[n:], ij, region,
                                     site=(0.5, 0.5))["mean"])  # fmt: skip
    args = (xy_a, cov[:n], ij, xy_b, cov[n:], ij)
    lines = dict(shared_a=shared[:n], shared_b=shared[n:])
    sig_p = polarization_cells(*args, site=(0.5, 0.5), **lines)[1][3, 4]
    sig_e = strain_cells(xy_a, ij, sigma_a=cov[:n], shared_a=shared[:n])["sigma_exx"][
        3, 4
    ]
    sig_m = region_polarization(*args, region, site=(0.5, 0.5), **lines)["sigma"]
    np.testing.assert_allclose(np.std(p, 0), sig_p, rtol=0.1)
    assert np.std(e) == pytest.approx(sig_e, rel=0.1)
    np.testing.assert_allclose(np.std(m, 0), sig_m, rtol=0.12)
    # Taken as independent, the columns misstate exx and the region mean
    alone_e = strain_cells(xy_a, ij, sigma_a=cov[:n])["sigma_exx"][3, 4]
    alone_m = region_polarization(*args, region, site=(0.5, 0.5))["sigma"]
    assert alone_e / np.std(e) > 1.5
    assert (np.std(m, 0) / alone_m > 1.5).all()


def test_a_region_mean_ignores_unknown_columns_outside_it():
    """A column too faint to measure (NaN covariance) outside the region
    leaves the region's sigma alone; inside it, the sigma is unknown."""
    ij, xy_a, xy_b = _lattice(6)
    cov = np.tile(np.eye(2) * 0.01, (len(ij), 1, 1))
    lost = cov.copy()
    far = np.flatnonzero((ij == 5).all(1))[0]  # the last site, outside
    lost[far] = np.nan
    region = np.zeros((6, 6), bool)
    region[1:3, 1:3] = True
    r = region_polarization(xy_a, lost, ij, xy_b, lost, ij, region, site=(0.5, 0.5))
    full = region_polarization(xy_a, cov, ij, xy_b, cov, ij, region, site=(0.5, 0.5))
    np.testing.assert_allclose(r["sigma"], full["sigma"])
