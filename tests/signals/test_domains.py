"""Model selection, the physical descriptor and components as displacements
(#21): on planted data where the right answer is known."""

import warnings

import numpy as np
import pytest

from stemunmix.core.neighbours import (
    centroid_shifts,
    displacement_descriptors,
    reference_cell,
)
from stemunmix.core.selection import (
    count_domains,
    domain_test,
    parallel_analysis,
    spatial_coherence,
)
from stemunmix.synthetic import perovskite


def test_parallel_analysis_counts_the_planted_components():
    rng = np.random.default_rng(0)
    n, p = 3000, 100
    basis = rng.standard_normal((3, p))
    x = rng.standard_normal((n, 3)) * [3.0, 2.0, 1.5] @ basis
    x += rng.standard_normal((n, p))
    found = parallel_analysis(x, seed=1)
    assert found["n_components"] == 3
    assert found["variance"][3] < found["noise_floor"][3]
    assert parallel_analysis(rng.standard_normal((n, p)))["n_components"] == 1


def test_silhouette_counts_the_planted_clusters():
    rng = np.random.default_rng(0)
    for k in (2, 3, 4):
        centres = 6 * np.stack([np.cos(2 * np.pi * np.arange(k) / k),
                                np.sin(2 * np.pi * np.arange(k) / k)], 1)  # fmt: skip
        x = np.concatenate([c + rng.standard_normal((400, 2)) for c in centres])
        assert count_domains(x)["n_domains"] == k


def _cell_grid(shift):
    """A square lattice of A columns (spacing 20 px) with B at the cell
    centres, each B shifted by ``shift`` [x, y] px."""
    i, j = np.meshgrid(np.arange(12), np.arange(12))
    a = 20.0 * np.stack([i.ravel(), j.ravel()], 1) + 10
    b = a[(a < 220).all(1)] + 10 + np.asarray(shift, float)
    return a, b


def test_reference_cell_and_offsets_of_a_known_lattice():
    a, b = _cell_grid([1.5, -0.5])
    ref = reference_cell(b, a)
    np.testing.assert_allclose(np.sort(np.abs(ref).ravel()),
                               np.sort(np.abs(np.array([[11.5, 9.5], [8.5, 9.5],
                                                        [8.5, 10.5], [11.5, 10.5]])).ravel()))  # fmt: skip
    offsets, ok, _ = displacement_descriptors(b, a)
    assert ok.all()
    np.testing.assert_allclose(offsets, 0.0, atol=1e-9)  # every cell the median one
    # A moved B: minus the mean of its neighbours' offsets is its displacement.
    b2 = b.copy()
    b2[5] += [2.0, 1.0]
    offsets, ok, ref = displacement_descriptors(b2, a)
    np.testing.assert_allclose(-offsets[5].mean(0), [2.0, 1.0], atol=1e-9)


def test_centroid_shift_of_a_moved_gaussian():
    yy, xx = np.mgrid[0:21, 0:21]

    def blob(x0, y0):
        return np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 1.5**2))

    shift = centroid_shifts(blob(10.6, 9.7), blob(10.0, 10.0), [[10, 10]], 5.0)
    np.testing.assert_allclose(shift[0], [0.6, -0.3], atol=0.08)


@pytest.fixture(scope="module")
def stripes():
    image, truth = perovskite(shape=512, domains="two_stripes", seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        columns = image.find_columns(show_progressbar=False)
    return image, truth, columns


def test_displacement_descriptors_separate_the_planted_domains(stripes):
    from scipy.spatial import cKDTree
    from sklearn.metrics import adjusted_rand_score

    from stemunmix.learn import GaussianMixture

    image, truth, columns = stripes
    phys = image.displacement_descriptors(columns)
    assert phys.axes_manager.signal_shape == (4, 2)  # four A neighbours, x and y
    assert phys.metadata.Signal.signal_type == "local_descriptors"
    phys.cluster_analysis("signal", n_clusters=2,
                          algorithm=GaussianMixture(2, random_state=0))  # fmt: skip
    labels = np.asarray(phys.learning_results.cluster_labels).argmax(0)
    tb = truth.columns.select("B")
    _, idx = cKDTree(tb.xy).query(phys.columns.xy)
    planted = truth.domain[truth.columns.labels == truth.columns.class_index("B")][idx]
    assert adjusted_rand_score(planted, labels) > 0.9
    domain = phys.get_domain_map()
    assert domain.data.shape == image.data.shape
    # Minus the mean neighbour offset is the polar displacement found by
    # Columns.polarization, column for column (up to the cell's own).
    b, vec = columns.polarization()
    _, idx = cKDTree(b.xy).query(phys.columns.xy)
    own = -phys.data.mean(-1)  # (N, 2): less the median cell's
    dev = (own - own.mean(0)) - (vec[idx] - vec[idx].mean(0))
    assert np.median(np.hypot(*dev.T)) < 0.1


def test_displacement_descriptors_refuse_bad_input(stripes):
    image, _, columns = stripes
    with pytest.raises(ValueError, match="reach"):
        image.displacement_descriptors(columns, reach=-1)
    with pytest.raises(TypeError, match="reach"):
        image.displacement_descriptors(columns, reach="far")
    with pytest.raises(ValueError, match="at least two"):
        image.displacement_descriptors(columns[:1])
    with pytest.raises(ValueError, match="class"):
        image.displacement_descriptors(columns, centre="X")


def test_components_as_column_displacements(stripes):
    """Two domains polarised in opposite directions: the first PCA component
    of B-centred windows moves the four A corners together along the planted
    axis (B relative to A, so either sign)."""
    image, truth, columns = stripes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ld = image.local_descriptors(24, columns, classes="B", source="image")
    ld.decomposition(algorithm="SVD", output_dimension=4, centre="navigation",
                     print_info=False)  # fmt: skip
    pictures = ld.component_displacements(columns)
    assert len(pictures["sites"]["A"]) == 4 and len(pictures["sites"]["B"]) == 1
    corners = pictures["displacements"]["A"][0]  # first component: (4, 2)
    mean = corners.mean(0)
    b = truth.columns.labels == truth.columns.class_index("B")
    planted = truth.displacement[b]
    axis = planted[truth.domain[b] == 1].mean(0) - planted[truth.domain[b] == 0].mean(0)
    axis /= np.hypot(*axis)
    assert abs(mean @ axis) / np.hypot(*mean) > 0.9
    # All four corners move alike (a shift of B, not a strain of the cell),
    # by a fraction of a pixel for a typical loading.
    along = corners @ (mean / np.hypot(*mean))
    assert np.all(along > 0.5 * np.hypot(*mean))
    assert 0.05 < np.hypot(*mean) < 2.0


@pytest.mark.parametrize("pattern", ["two_stripes", "three_stripes", "four_stripes"])
def test_analyze_picks_the_planted_number_of_domains(pattern):
    """Nothing chosen by hand: the window from the scree, the components by
    parallel analysis, the domains by the silhouette; the planted number of
    domains is found and the choices are recorded."""
    from stemunmix.report import analyze

    image, truth = perovskite(shape=1024, domains=pattern, dose=100, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = analyze(image, truth=truth, show_progressbar=False,
                         log=lambda *a: None)  # fmt: skip
    assert result.domains == truth.n_domains
    assert result.domain_agreement > 0.95
    test = result.descriptors.domain_test
    assert test["significant"] and test["n_domains"] == truth.n_domains
    assert test["stability"] >= 0.95 and test["coherence"] > 0.8
    recorded = result.descriptors.metadata.Signal.stemunmix.model_selection
    assert recorded.domains.value == truth.n_domains
    assert 5 <= recorded.window.value <= 25 and recorded.components.value >= 2
    assert result.physical_agreement is not None and result.physical_agreement > 0.8


def test_every_report_figure_with_values_has_a_colourbar_or_scale_bar(tmp_path):
    """From the figure objects: every panel that shows an image carries a
    scale bar or its colourbar; categorical maps carry a legend."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    from stemunmix.report import analyze
    from stemunmix.report.figures import _figures

    image, truth = perovskite(shape=256, domains="two_stripes", seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = analyze(image, truth=truth, show_progressbar=False,
                         log=lambda *a: None)  # fmt: skip
        kept = []
        _figures(result, tmp_path, keep=kept)
    names = [n for n, _ in kept]
    assert {"columns.png", "probabilities.png", "loading_maps.png",
            "domain_map.png", "components.png"} <= set(names)  # fmt: skip
    checked = 0
    for name, fig in kept:
        bars = [a for a in fig.axes if hasattr(a, "_colorbar")]
        for ax in fig.axes:
            if not ax.images or ax in bars:
                continue
            scale = any(isinstance(a, AnchoredSizeBar) for a in ax.artists)
            labelled = bool(ax.get_xlabel()) and bool(ax.get_ylabel())
            colourbar = any(b._colorbar.mappable in ax.images for b in bars)
            assert scale or labelled or colourbar, (name, ax.get_title())
            if name == "domain_map.png":  # categories: a legend; probability: a bar
                assert ax.get_legend() is not None or colourbar, ax.get_title()
            checked += 1
    assert checked >= 5


def test_hyperspy_plots_show_columns_and_maps(stripes):
    """image.plot() draws the columns as HyperSpy markers; on column
    navigation plot_decomposition_results and plot_cluster_results show the
    loading and cluster maps as images on the image grid."""
    import matplotlib

    matplotlib.use("Agg")
    from stemunmix.learn import GaussianMixture

    image, _, columns = stripes
    image = image.deepcopy()
    image.columns = columns
    image.plot()
    markers = image._plot.signal_plot.ax_markers
    assert len(markers) == 1 and len(markers[0].get_current_kwargs()["offsets"]) == len(
        columns
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ld = image.local_descriptors(16, columns, classes="B", source="image")
    ld.decomposition(output_dimension=3, print_info=False)
    factors, maps = ld.plot_decomposition_results()
    assert maps.axes_manager.signal_shape == image.axes_manager.signal_shape
    assert maps.axes_manager.navigation_size == factors.axes_manager.navigation_size
    assert maps._plot is not None and maps._plot.is_active
    ld.cluster_analysis("decomposition", number_of_components=3,
                        algorithm=GaussianMixture(2, random_state=0))  # fmt: skip
    means, members = ld.plot_cluster_results()
    assert members.axes_manager.navigation_size == 2
    import matplotlib.pyplot as plt

    plt.close("all")


def _halves(rng, n=600, separation=6.0):
    """Two Gaussian populations of loadings (2 features), the left and the
    right half of a 30 x 20 grid of positions."""
    i, j = np.meshgrid(np.arange(30), np.arange(n // 30))
    positions = np.stack([i.ravel(), j.ravel()], 1).astype(float)
    labels = (positions[:, 0] >= 15).astype(int)
    x = rng.standard_normal((n, 2)) + separation * labels[:, None] * [1, 0]
    return x, labels, positions


def test_domain_test_tells_domains_from_noise_and_from_one_population():
    from stemunmix.learn import GaussianMixture

    rng = np.random.default_rng(0)
    gmm = GaussianMixture(2, covariance_type="tied", random_state=0)
    x, labels, positions = _halves(rng)
    found = gmm.fit(x).labels_
    real = domain_test(x, found, gmm, positions=positions)
    assert real["significant"], real["why"]
    assert real["stability"] > 0.95 and real["coherence"] > 0.9
    assert real["silhouette"] > real["null_silhouette"] + 0.2
    # The same two populations scattered over the grid: noise, not domains.
    scattered = rng.permutation(len(x))
    mixed = domain_test(x[scattered], found[scattered], gmm, positions=positions)
    assert not mixed["significant"] and abs(mixed["coherence"]) < 0.1
    assert "coherence" in mixed["why"]
    # One elongated Gaussian cut in two (a gradient): contiguous, stable, and
    # still one population, told by its silhouette against one Gaussian's.
    one = rng.standard_normal((600, 2)) * [3.0, 1.0]
    one = one[np.argsort(one[:, 0])]  # left to right along the grid's x
    order = np.lexsort((positions[:, 1], positions[:, 0]))
    cut = gmm.fit(one).labels_
    gradient = domain_test(one, cut, gmm, positions=positions[order])
    assert gradient["coherence"] > 0.5
    assert not gradient["significant"], gradient
    assert gradient["silhouette"] <= gradient["null_silhouette"] + 0.05


def test_domain_test_refuses_bad_input_and_passes_one_domain():
    from stemunmix.learn import GaussianMixture

    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 2))
    gmm = GaussianMixture(2, random_state=0)
    with pytest.raises(ValueError, match="labels"):
        domain_test(x, np.zeros(49, int), gmm)
    with pytest.raises(ValueError, match="positions"):
        domain_test(x, np.zeros(50, int), gmm, positions=np.zeros((50, 3)))
    one = domain_test(x, np.zeros(50, int), gmm)
    assert not one["significant"] and one["why"].startswith("one domain")
    # Coherence: 1 for contiguous halves, about 0 for scattered labels.
    _, labels, positions = _halves(rng)
    assert spatial_coherence(positions, labels) > 0.9
    assert abs(spatial_coherence(positions, rng.permutation(labels))) < 0.1


def test_cluster_analysis_gives_soft_domain_maps_and_a_test(stripes):
    """The mixture's posterior per window, in HyperSpy's cluster order, as
    maps on the image grid; the test of the partition in metadata; an
    algorithm without probabilities (k-means) gives labels only."""
    from stemunmix.learn import GaussianMixture

    image, truth, columns = stripes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ld = image.local_descriptors(7, columns, classes="B", show_progressbar=False)
    ld.decomposition(output_dimension=2, print_info=False)
    ld.cluster_analysis("decomposition", number_of_components=2,
                        algorithm=GaussianMixture(2, covariance_type="tied",
                                                  random_state=0))  # fmt: skip
    p = ld.per_column("probability")
    labels = ld.per_column("cluster").argmax(1)
    assert p.shape == (len(ld.columns), 2)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    assert (p.argmax(1) == labels).mean() > 0.99
    maps = ld.get_domain_probabilities(mode="points")
    assert maps.axes_manager.navigation_shape == (2,)
    assert maps.axes_manager.signal_shape == image.axes_manager.signal_shape
    test = ld.metadata.Signal.stemunmix.domain_test.as_dictionary()
    assert test == ld.domain_test and test["significant"], test
    assert ld.learning_results.cluster_algorithm.__class__ is GaussianMixture
    ld.cluster_analysis("decomposition", number_of_components=2,
                        algorithm="kmeans", n_clusters=2, test=False)  # fmt: skip
    assert ld.domain_test is None
    with pytest.raises(ValueError, match="Gaussian mixture"):
        ld.get_domain_probabilities()


def test_a_null_image_is_not_split_into_domains():
    """A synthetic crystal without domains, its windows forced onto 2
    components: the best partition's clusters are scattered over the image,
    so analyze reports one domain and says why; asked for 4, it warns."""
    from stemunmix.report import analyze

    image, truth = perovskite(shape=512, domains="none", seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = analyze(image, components=2, truth=truth, show_progressbar=False,
                         log=lambda *a: None)  # fmt: skip
    assert result.domains == 1
    why = result.choices["domains"]["why"]
    assert why.startswith("no significant domain structure"), why
    assert result.descriptors.domain_test["n_domains"] >= 2
    with pytest.warns(UserWarning, match="not significant"):
        analyze(image, components=2, domains=4, scree=False,
                show_progressbar=False, log=lambda *a: None)  # fmt: skip


def test_real_srtio3_reports_no_domain_structure(real_data):
    """SrTiO3 [110] is centrosymmetric: no domains, on the defaults and on
    two components (where its loadings split in two, scattered)."""
    import hyperspy.api as hs

    from stemunmix.report import analyze

    image = hs.load(real_data / "atomap_hist_STO110_ADF_full.hdf5", file_format="HSPY")
    image = hs.signals.Signal2D(image.data.astype(np.float32))
    for components in (None, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = analyze(image, components=components, show_progressbar=False,
                             log=lambda *a: None)  # fmt: skip
        assert result.domains == 1, result.choices["domains"]
        assert "no significant" in result.choices["domains"]["why"]
