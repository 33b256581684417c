"""Measurements on the lattice: sites (i, j), uncertainties, polarization and
strain per cell, intensity classes."""

import warnings

import numpy as np
import pytest

from stemunmix import Columns
from stemunmix.core.indexing import inconsistent_bonds, index_columns
from stemunmix.core.refine import noise_model, refine_gaussian
from stemunmix.core.uncertainty import shot_covariance
from stemunmix.synthetic import from_columns, perovskite


def _affine_misfit(xy, ij, vectors):
    """Largest distance (in lattice steps) of a column from the best affine
    map of its (i, j): a site one step wrong is a whole step off."""
    x = np.c_[np.ones(len(ij)), ij]
    coef, *_ = np.linalg.lstsq(x, xy, rcond=None)
    return np.hypot(*(xy - x @ coef).T).max() / np.hypot(*vectors[0])


@pytest.mark.parametrize(
    "kw",
    [
        {"drift": (30.0, -20.0)},  # strong drift: a 6 % shear
        {"rotation": 23.0, "domains": "quadrants", "displacement": 0.04},
        {"projection": "110", "rotation": -8.0},
    ],
)
def test_found_columns_are_indexed_right_with_vacancies(kw):
    """Synthetic images with drift, rotation, domain walls and 2 % of the
    columns removed (vacancies): every column's (i, j) is right (no column a
    step off the affine lattice map, per sublattice) and no bond is
    inconsistent."""
    image, _ = perovskite(shape=384, seed=11, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = image.find_columns(show_progressbar=False)
    keep = np.random.default_rng(0).random(len(found)) > 0.02
    cols = found[keep]
    ij, vectors = index_columns(cols.xy, cols.labels, 0)
    assert (ij >= 0).all()
    for k in (0, 1):
        sel = cols.labels == k
        assert _affine_misfit(cols.xy[sel], ij[sel], vectors) < 0.35
    a = cols.labels == 0
    bad, bonds = inconsistent_bonds(cols.xy[a], ij[a], vectors)
    assert bonds > 300 and bad == 0
    # The columns find_columns returned were indexed the same way.
    assert found.ij is not None and (found.ij >= 0).all()
    np.testing.assert_allclose(np.abs(found.lattice_vectors), np.abs(vectors), atol=0.5)


def test_a_b_column_shares_the_site_of_its_cell_origin():
    a = 20.0
    ii, jj = np.meshgrid(np.arange(6), np.arange(5))
    xy_a = np.c_[ii.ravel(), jj.ravel()] * a + 10
    xy_b = xy_a[(ii.ravel() < 5) & (jj.ravel() < 4)] + a / 2
    xy = np.r_[xy_a, xy_b]
    labels = np.r_[np.zeros(len(xy_a), int), np.ones(len(xy_b), int)]
    ij, vectors = index_columns(xy, labels, 0)
    np.testing.assert_allclose(vectors, [[a, 0], [0, a]], atol=1e-9)
    np.testing.assert_array_equal(ij[: len(xy_a)], np.c_[ii.ravel(), jj.ravel()])
    np.testing.assert_array_equal(
        ij[len(xy_a) :], ij[: len(xy_a)][(ii.ravel() < 5) & (jj.ravel() < 4)]
    )


def _crb_position(truth, sigma_px, read_noise=1.0):
    """Per class: the Cramer-Rao bound (pixels, one component) of an isolated
    Gaussian column with the class's median height and local background."""
    from scipy.ndimage import minimum_filter

    expected = truth.expected.astype(float)
    floor = minimum_filter(expected, size=int(6 * sigma_px))
    ij = np.round(truth.columns.xy).astype(int)
    out = []
    for k in (0, 1):
        sel = truth.columns.labels == k
        peak = expected[ij[sel, 1], ij[sel, 0]]
        bg = floor[ij[sel, 1], ij[sel, 0]]
        h, b = float(np.median(peak - bg)), float(np.median(bg))
        r = int(np.ceil(4 * sigma_px))
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(float)
        g = np.exp(-(xx**2 + yy**2) / (2 * sigma_px**2))
        grads = np.stack([g, h * g * xx / sigma_px**2, h * g * yy / sigma_px**2,
                          h * g * (xx**2 + yy**2) / sigma_px**3, np.ones_like(g)])  # fmt: skip
        fisher = np.einsum("ipq,jpq->ij", grads, grads / (b + h * g + read_noise**2))
        out.append(float(np.sqrt(np.linalg.inv(fisher)[1, 1])))
    return out


@pytest.mark.parametrize("dose", [20, 100, 500])
def test_reported_sigma_matches_the_scatter_and_the_bound(dose):
    """50 noise draws of one synthetic image (line jitter included): the
    reported position sigma matches the observed scatter within 15 % and the
    Cramer-Rao bound within 20 % (medians over the interior columns)."""
    image, truth = perovskite(shape=256, dose=dose, seed=5, rotation=7.0)
    expected = truth.expected.astype(float)
    start = truth.columns.xy
    rng = np.random.default_rng(dose)
    est, sig = [], []
    for _ in range(50):
        img = rng.poisson(expected) + rng.standard_normal(expected.shape)
        fit = refine_gaussian(img, start, sigma=2.0, radius=7)
        est.append(fit["xy"])
        cov = shot_covariance(fit["position_terms"], noise_model(fit["noise_sums"]))
        sig.append(np.sqrt(np.diagonal(cov, 0, 1, 2)))
    observed = np.std(est, 0, ddof=1)
    reported = np.mean(sig, 0)
    inner = (start.min(1) > 16) & (start.max(1) < 240)
    crb = _crb_position(truth, 0.04 / 0.02)
    for k in (0, 1):
        sel = inner & (truth.columns.labels == k)
        ratio = np.median(reported[sel] / observed[sel])
        assert 0.85 <= ratio <= 1.15, (k, ratio)
        to_bound = np.median(reported[sel]) / crb[k]
        assert 0.8 <= to_bound <= 1.2, (k, to_bound)


def test_noise_model_recovers_poisson_gain_and_read_noise():
    image, truth = perovskite(shape=256, dose=10, seed=2, read_noise=3.0)
    expected = truth.expected.astype(float)
    rng = np.random.default_rng(0)
    img = 2.0 * rng.poisson(expected) + 3.0 * rng.standard_normal(expected.shape)
    fit = refine_gaussian(img, truth.columns.xy, sigma=2.0, radius=7)
    gain, var0 = noise_model(fit["noise_sums"])
    # signal 2 x counts, variance 4 x counts: variance = 2 x signal + 9
    assert gain == pytest.approx(2.0, rel=0.1)
    assert var0 == pytest.approx(9.0, rel=0.3)


@pytest.fixture(scope="module")
def polar():
    image, truth = perovskite(shape=512, dose=100, seed=21, displacement=0.03,
                              domains="quadrants")  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cols = image.find_columns(show_progressbar=False)
    return image, truth, cols


def test_polarization_per_cell_recovers_the_planted_pattern(polar):
    """Per complete cell, the B displacement from its A cell centre matches
    the one the true positions give, with an RMS error within 1.2 x the
    Cramer-Rao bound of the displacement; the reported sigma agrees."""
    from stemunmix.core.peaks import match

    image, truth, cols = polar
    p = cols.polarization_map()
    assert p.axes_manager.navigation_axes[0].name == "quantity"
    assert [a.name for a in p.axes_manager.signal_axes] == ["i", "j"]
    disp, sig = np.moveaxis(p.data[:2], 0, -1), np.moveaxis(p.data[2:4], 0, -1)
    # The same cells from the true positions, given our sites.
    ri, oi = match(truth.columns.xy, cols.xy, 3.0)
    xy_true = cols.xy.copy()
    xy_true[oi] = truth.columns.xy[ri]
    true = Columns(xy_true, cols.labels, cols.class_names, ij=cols.ij,
                   sigma=cols.sigma)  # fmt: skip
    ref = np.moveaxis(true.polarization_map().data[:2], 0, -1)
    ok = np.isfinite(disp).all(-1) & np.isfinite(ref).all(-1)
    assert ok.sum() > 500
    err = (disp - ref)[ok]
    rms = np.sqrt(np.mean(err**2))  # per component
    crb_a, crb_b = _crb_position(truth, 0.04 / 0.02)
    crb = np.sqrt(crb_b**2 + crb_a**2 / 4)
    assert rms <= 1.2 * crb, (rms, crb)
    # sigma also counts the image's line jitter (0.15 px a line), which the
    # true positions seen through the scan include: a column moved by it is
    # off its atom, but not off those positions
    assert 0.8 * rms <= np.median(sig[ok]) <= 1.5 * rms, (np.median(sig[ok]), rms)
    # The planted pattern itself: 0.03 nm = 1.5 px in four directions.
    assert np.median(np.hypot(*disp[ok].T)) == pytest.approx(1.5, rel=0.1)
    # Incomplete cells (the edge) are NaN, never half-cells.
    assert np.isnan(p.data[0]).any()


def test_polarization_reference_and_image_grid(polar):
    image, truth, cols = polar
    raw = cols.polarization_map()
    mean = cols.polarization_map(reference="mean")
    ok = np.isfinite(raw.data[0])
    shift = raw.data[:2, ok] - mean.data[:2, ok]
    assert np.ptp(shift, 1).max() < 1e-9  # one offset for all cells
    mask = np.zeros(raw.data.shape[1:], bool)
    mask[:5, :5] = True
    region = cols.polarization_map(reference=mask)
    for c in (0, 1):
        assert abs(np.median(region.data[c][mask & ok])) < 1e-9
    on_image = cols.polarization_map(grid="image", image=image)
    # x, y, sigma_x, sigma_y first; significance and covariance_xy appended
    assert on_image.data.shape == (6, 512, 512)
    assert on_image.metadata.Signal.quantities[:4] == ["x", "y", "sigma_x", "sigma_y"]
    assert on_image.axes_manager.signal_axes[0].units == "nm"
    # Calibrated: pixels x 0.02 nm.
    assert np.nanmax(np.abs(on_image.data[:2])) == pytest.approx(
        0.02 * np.nanmax(np.abs(raw.data[:2])), rel=1e-6
    )
    with pytest.raises(ValueError, match="reference"):
        cols.polarization_map(reference=np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="grid"):
        cols.polarization_map(grid="pixels")
    with pytest.raises(ValueError, match="image="):
        cols.polarization_map(grid="image")
    with pytest.raises(ValueError, match="lattice sites"):
        Columns(cols.xy, cols.labels, cols.class_names).polarization_map()


def _strain_step(dose, step=0.02, a=20.0, n=24):
    """A square A/B lattice whose cells are ``step`` longer along x right of
    the middle column."""
    x_edges = np.cumsum(
        np.r_[0, np.where(np.arange(n - 1) < n // 2, a, a * (1 + step))]
    )
    ii, jj = np.meshgrid(np.arange(n), np.arange(n))
    xy_a = np.c_[x_edges[ii.ravel()], jj.ravel() * a] + 12
    inner = (ii.ravel() < n - 1) & (jj.ravel() < n - 1)
    mid = 0.5 * (x_edges[ii.ravel()[inner]] + x_edges[ii.ravel()[inner] + 1])
    xy_b = np.c_[mid + 12, jj.ravel()[inner] * a + 12 + a / 2]
    cols = Columns(np.r_[xy_a, xy_b], np.r_[np.zeros(len(xy_a), int),
                                             np.ones(len(xy_b), int)], ["A", "B"])  # fmt: skip
    shape = (int(xy_a[:, 1].max()) + 13, int(xy_a[:, 0].max()) + 13)
    return from_columns(cols, shape, pixel_size=0.02, dose=dose, seed=3)


def test_a_planted_strain_step_is_recovered():
    """exx 0 left of the step and 2 % right of it, against the left half as
    reference: the per-cell RMS error is at most 0.1 % strain (dose 500)."""
    image, truth = _strain_step(500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cols = image.find_columns(show_progressbar=False)
    ni = int(cols.ij[:, 0].max()) + 1
    nj = int(cols.ij[:, 1].max()) + 1
    left = np.zeros((nj, ni), bool)
    left[:, : ni // 2 - 1] = True
    s = cols.strain_map(reference=left)
    exx, eyy = s.data[0], s.data[1]
    planted = np.where(np.arange(ni) < ni // 2, 0.0, 0.02)[None].repeat(nj, 0)
    ok = np.isfinite(exx)
    ok[:, ni // 2 - 1 : ni // 2 + 1] = False  # cells at the step itself
    assert ok.sum() > 300
    assert np.sqrt(np.mean((exx - planted)[ok] ** 2)) <= 0.001
    assert np.sqrt(np.mean(eyy[ok] ** 2)) <= 0.001
    assert np.abs(np.nanmedian(s.data[3][ok])) < 0.001  # no rotation


def test_columns_with_measurements_survive_save_and_load(tmp_path, polar):
    import hyperspy.api as hs

    image, _, cols = polar
    path = tmp_path / "measured.zspy"
    image.save(path)
    back = hs.load(path)
    back_cols = back.probabilities.columns
    assert back_cols == cols
    np.testing.assert_array_equal(back_cols.ij, cols.ij)
    np.testing.assert_array_equal(back_cols.sigma, cols.sigma)
    np.testing.assert_allclose(back_cols.lattice_vectors, cols.lattice_vectors)
    assert set(back_cols.quantities) == {"height", "intensity", "width", "background",
                                         "residual", "line_width"}  # fmt: skip


def test_lazy_columns_carry_the_same_measurements(polar):
    image, _, cols = polar
    lazy = image.as_lazy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = lazy.find_columns(show_progressbar=False)
    assert got == cols
    np.testing.assert_allclose(got.sigma, cols.sigma, rtol=1e-6)


def test_intensity_classes_find_the_darker_a_sites():
    """20 % of the A sites 20 % darker (dose 100): at least 95 % of them are
    found, and few bright ones are called dark."""
    image, truth = perovskite(shape=512, dose=100, seed=8, dark_fraction=0.2,
                              dark_ratio=0.8)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cols = image.find_columns(show_progressbar=False)
    from stemunmix.core.peaks import match

    classes = cols.intensity_classes("A", 2)
    assert (classes[cols.labels == 1] == -1).all()
    a_true = truth.columns.labels == 0
    ri, oi = match(truth.columns.xy[a_true], cols.xy, 3.0)
    dark_true = truth.amplitude[a_true][ri] < 0.9
    inner = (cols.xy[oi].min(1) > 12) & (cols.xy[oi].max(1) < 500)
    found = classes[oi] == 0
    assert dark_true[inner].sum() > 60
    assert found[inner & dark_true].mean() >= 0.95
    assert found[inner & ~dark_true].mean() <= 0.05
    dopants = cols.site_map(classes == 0, "A", "dark A sites")
    assert dopants.data.shape == tuple(cols.ij.max(0)[::-1] + 1)
    assert np.nansum(dopants.data) == (classes == 0).sum()
    with pytest.raises(ValueError, match="quantity"):
        cols.intensity_classes("A", quantity="counts")


@pytest.fixture(scope="module")
def windows():
    image, truth = perovskite(shape=384, dose=100, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image.find_columns(show_progressbar=False)
        by_site = image.local_descriptors(20, classes="B", navigation="lattice",
                                          show_progressbar=False)  # fmt: skip
        by_column = image.local_descriptors(20, classes="B", show_progressbar=False)
    return image, by_site, by_column


def test_descriptors_on_the_lattice_grid(windows):
    """navigation='lattice': axes i and j, one window per B site, the same
    windows as column navigation; missing sites are zeros and masked, so SVD
    gives the same loadings per column (up to sign) and NaN at missing sites."""
    image, by_site, by_column = windows
    nav = by_site.axes_manager.navigation_axes
    assert [a.name for a in nav] == ["i", "j"]
    sites = by_site.sites
    assert sites.shape == by_site.data.shape[:2]
    present = sites >= 0
    assert present.sum() == len(by_column.columns) == len(by_site.columns)
    assert (~present).any()
    np.testing.assert_array_equal(by_site.data[~present], 0)
    # The same windows, by position.
    order = np.lexsort(by_column.columns.xy.T[::-1])
    order_site = np.lexsort(by_site.columns.xy.T[::-1])
    np.testing.assert_array_equal(by_site.data[present][order_site],
                                  by_column.data[order])  # fmt: skip
    for s in (by_site, by_column):
        s.decomposition(output_dimension=3, print_info=False)
    ls = by_site.learning_results.loadings
    assert np.isnan(ls[~present.ravel()]).all()
    a = ls[present.ravel()][order_site, :3]
    b = by_column.learning_results.loadings[order, :3]
    for k in range(3):
        assert abs(np.corrcoef(a[:, k], b[:, k])[0, 1]) > 0.999
    # HyperSpy's own loadings are images on the lattice grid.
    loadings = by_site.get_decomposition_loadings()
    assert loadings.axes_manager.signal_shape == (sites.shape[1], sites.shape[0])


def test_lattice_descriptors_cluster_and_map_like_columns(windows):
    from stemunmix.learn import GaussianMixture

    image, by_site, by_column = windows
    maps = []
    for s in (by_site, by_column):
        s.decomposition(output_dimension=3, print_info=False)
        s.cluster_analysis("decomposition", number_of_components=3,
                           algorithm=GaussianMixture(3, random_state=0),
                           print_info=False)  # fmt: skip
        maps.append(s.get_loading_maps().data)
    a, b = maps
    ok = np.isfinite(a) & np.isfinite(b)
    assert ok.mean() > 0.5
    for k in range(3):
        assert abs(np.corrcoef(a[k][ok[k]], b[k][ok[k]])[0, 1]) > 0.999
    labels = by_site.learning_results.cluster_labels
    assert labels.shape[1] == by_site.sites.size
    assert not labels[:, (by_site.sites < 0).ravel()].any()  # masked: no cluster
    import matplotlib

    matplotlib.use("Agg")
    by_site.plot_decomposition_results()
    by_site.plot_cluster_results()


def test_lattice_navigation_lazy_equals_eager(windows):
    image, by_site, _ = windows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lazy = image.as_lazy().local_descriptors(20, classes="B", navigation="lattice",
                                                 show_progressbar=False)  # fmt: skip
    assert lazy._lazy
    np.testing.assert_array_equal(np.asarray(lazy.data.compute()), by_site.data)
    np.testing.assert_array_equal(lazy.sites, by_site.sites)
    for s in (lazy, by_site):
        s.decomposition(algorithm="NMF", output_dimension=3, print_info=False)
    np.testing.assert_allclose(np.asarray(lazy.learning_results.loadings),
                               by_site.learning_results.loadings, atol=1e-5)  # fmt: skip


def test_lattice_navigation_refuses_what_it_cannot_index(windows):
    image, _, _ = windows
    with pytest.raises(ValueError, match="classes='B'"):
        image.local_descriptors(20, navigation="lattice")
    with pytest.raises(ValueError, match="navigation must be one of"):
        image.local_descriptors(20, classes="B", navigation="grid")
    with pytest.raises(ValueError, match="Columns.ij"):
        image.local_descriptors(20, classes="B", navigation="lattice",
                                columns=Columns(image.columns.xy, image.columns.labels,
                                                image.columns.class_names))  # fmt: skip


def test_strain_and_hsv_on_the_image_grid(polar):
    import matplotlib

    matplotlib.use("Agg")
    image, _, cols = polar
    s = cols.strain_map(grid="image", image=image)
    assert s.data.shape == (8, 512, 512)
    assert s.metadata.Signal.quantities == ["exx", "eyy", "exy", "rotation",
                                            "sigma_exx", "sigma_eyy", "sigma_exy",
                                            "sigma_rotation"]  # fmt: skip
    lattice = cols.strain_map()
    # The same values, painted (as float32): every finite value on the image is a cell's.
    cells = lattice.data[0][np.isfinite(lattice.data[0])].astype(np.float32)
    cell_values = set(np.round(cells, 7).tolist())
    painted = np.unique(
        np.round(s.data[0][np.isfinite(s.data[0])].astype(np.float32), 7)
    )
    painted = set(painted.tolist())
    assert set(painted) <= cell_values and len(painted) > 0.9 * len(cell_values)
    for kw in ({"kind": "hsv"}, {"kind": "hsv", "image": image}, {"kind": "quiver"}):
        ax = cols.plot_polarization(**kw)
        assert ax.images or ax.collections
    with pytest.raises(ValueError, match="kind"):
        cols.plot_polarization(kind="arrows")


def test_the_hsv_key_shows_the_colour_of_each_direction():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stemunmix.signals._measurements import hsv_image, hsv_key

    _, ax = plt.subplots()
    key = hsv_key(ax, 12.0, "pm")
    wheel = key.images[0].get_array()
    n = wheel.shape[0]
    # Right of the centre at the rim: a full-length +x displacement; below
    # it (rows down, as the maps are drawn): +y.
    for (row, col), (dx, dy) in {(n // 2, n - 2): (1, 0), (n - 2, n // 2): (0, 1),
                                 (n // 2, 1): (-1, 0)}.items():  # fmt: skip
        expected = hsv_image(np.array([dx]), np.array([dy]), max_length=1.0)[0][0]
        assert np.allclose(wheel[row, col], expected, atol=0.08)
    assert np.allclose(wheel[0, 0], 1.0)  # outside the disc
    assert key.get_xlabel() == "full: 12 pm"
    plt.close("all")


def test_a_stack_indexes_every_frame():
    import hyperspy.api as hs

    frames = [
        perovskite(shape=256, seed=s, rotation=r)[0] for s, r in ((1, 5.0), (2, 20.0))
    ]
    stack = hs.stack(frames)
    stack.set_signal_type("atomic_resolution")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cols = stack.find_columns(show_progressbar=False)
    assert cols.lattice_vectors.shape == (2, 2, 2)
    for k, angle in enumerate((5.0, 20.0)):
        frame = cols.frame(k)
        a = frame.lattice_vectors[0]
        assert np.degrees(np.arctan2(-a[1], a[0])) == pytest.approx(angle, abs=1.0)
        assert (frame.ij >= 0).all()
        single = frames[k].find_columns(show_progressbar=False)
        np.testing.assert_array_equal(frame.ij, single.ij)


def test_measurement_methods_refuse_bad_input(polar):
    image, _, cols = polar
    with pytest.raises(ValueError, match="n_classes"):
        cols.intensity_classes("A", 1)
    with pytest.raises(TypeError, match="n_classes"):
        cols.intensity_classes("A", "2")
    with pytest.raises(ValueError, match="unknown class name"):
        cols.intensity_classes("O")
    with pytest.raises(ValueError, match="values must have shape"):
        cols.site_map(np.ones(3))
    with pytest.raises(ValueError, match="ij must be integers"):
        Columns(cols.xy, cols.labels, cols.class_names, ij=cols.ij.astype(float) + 0.5)
    with pytest.raises(ValueError, match="sigma must have shape"):
        Columns(cols.xy, cols.labels, cols.class_names, sigma=np.ones(3))
    stacked = Columns(cols.xy, cols.labels, cols.class_names,
                      nav_index=np.zeros((len(cols), 1), int), ij=cols.ij)  # fmt: skip
    with pytest.raises(ValueError, match="frame"):
        stacked.polarization_map()
    with pytest.raises(ValueError, match="strain|reference"):
        cols.strain_map(reference=np.zeros((2, 2), bool))


def test_lattice_navigation_refuses_a_stack():
    import hyperspy.api as hs

    frames = [perovskite(shape=128, seed=s)[0] for s in (1, 2)]
    stack = hs.stack(frames)
    stack.set_signal_type("atomic_resolution")
    with pytest.raises(ValueError, match="one image"):
        stack.local_descriptors(16, classes="B", navigation="lattice")


def test_from_columns_renders_a_real_distortion_field(real_data):
    """The measured Sm-BiFeO3 columns (../shared/data/real) rendered at dose
    100 with drift and jitter: find_columns recovers them (recall, a small
    position error against the scan-distorted truth) and indexes them with no
    inconsistent bond."""
    from stemunmix.core.peaks import match

    rows = np.load(real_data / "atomai_SmBFO_columns_rowcol_class.npy")
    given = Columns(rows[:, [1, 0]], rows[:, 2].astype(int), ["A", "B"])
    image, truth = from_columns(given, (1024, 1024), pixel_size=0.0216, dose=100,
                                drift=(4.0, -3.0), jitter=0.15, seed=1)  # fmt: skip
    assert image.axes_manager.signal_axes[0].scale == pytest.approx(0.0216)
    moved = np.hypot(*(truth.columns.xy - given.xy).T)
    assert 0.5 < moved.max() < 6.0  # the scan moved them
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cols = image.find_columns(show_progressbar=False)
    inner = (truth.columns.xy.min(1) > 20) & (truth.columns.xy.max(1) < 1000)
    ref = truth.columns.xy[inner]
    ri, oi = match(ref, cols.xy, 3.0)
    assert len(ri) / len(ref) > 0.99
    assert np.median(np.hypot(*(ref[ri] - cols.xy[oi]).T)) < 0.15
    for k in (0, 1):
        sel = cols.labels == k
        bad, bonds = inconsistent_bonds(
            cols.xy[sel], cols.ij[sel], cols.lattice_vectors
        )
        assert bonds > 2000 and bad == 0


def test_from_columns_checks_its_input():
    cols = Columns(np.array([[10.0, 10.0], [30.0, 10.0]]), [0, 1], ["A", "B"])
    with pytest.raises(TypeError, match="Columns"):
        from_columns(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="empty"):
        from_columns(cols[np.zeros(2, bool)])
    with pytest.raises(ValueError, match="blur"):
        from_columns(cols, (64, 64), blur=-1.0)
    with pytest.raises(TypeError, match="drift"):
        from_columns(cols, (64, 64), drift="none")
    image, truth = from_columns(
        cols, (64, 64), dose=None, heights={"B": 0.5}, background=0.0
    )
    peak = image.data[10, 30] / image.data[10, 10]
    assert peak == pytest.approx(0.5, rel=0.05)


def test_bonds_judged_in_chunks_equal_all_at_once():
    # _bonds bounds its memory by judging the neighbour pairs in chunks; the
    # chunk size (here 1000 and one larger than all pairs) must not matter.
    from stemunmix.core import indexing

    rng = np.random.default_rng(3)
    grid = np.stack(np.meshgrid(np.arange(30), np.arange(30)), -1).reshape(-1, 2)
    xy = grid * [19.8, 20.3] + rng.normal(0, 1.5, grid.shape)
    vectors = np.array([[19.8, 0.0], [0.0, 20.3]])
    local = np.repeat(vectors[None], len(xy), 0)
    pairs = indexing._neighbour_pairs(xy)
    whole = indexing._bonds(xy, local, pairs, chunk=len(pairs[0]) + 1)
    parts = indexing._bonds(xy, local, pairs, chunk=1000)
    assert 0.6 * len(pairs[0]) < len(whole[0]) < len(pairs[0])  # some pairs fail
    for a, b in zip(whole, parts, strict=True):
        np.testing.assert_array_equal(a, b)


def test_strain_sigma_matches_the_scatter_of_an_unstrained_lattice():
    """A regular lattice (no strain): each cell's strain is measurement error
    only, and its propagated sigma explains it (robust z spread 0.8-1.25 for
    exx, eyy, exy and the rotation); the sigmas follow the strain values."""
    image, _ = _strain_step(200, step=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cols = image.find_columns(show_progressbar=False)
    s = cols.strain_map()
    assert s.data.shape[0] == 8 and len(s.metadata.Signal.quantities) == 8
    for k in range(4):
        v, sigma = s.data[k], s.data[4 + k]
        ok = np.isfinite(v) & np.isfinite(sigma)
        assert ok.sum() > 400
        z = (v[ok] - np.median(v[ok])) / sigma[ok]
        spread = 1.4826 * np.median(np.abs(z - np.median(z)))
        assert 0.8 <= spread <= 1.25, (k, spread)
    # Unknown column uncertainties leave the strain but not its sigma.
    blind = Columns(cols.xy, cols.labels, cols.class_names, ij=cols.ij)
    d = blind.strain_map().data
    assert np.isfinite(d[0]).sum() > 400 and not np.isfinite(d[4]).any()
