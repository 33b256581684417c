import warnings

import hyperspy.api as hs
import numpy as np
import pytest
from scipy.ndimage import map_coordinates
from scipy.spatial import cKDTree

from stemunmix import Columns
from stemunmix.core.windows import extract_windows, inside_mask
from stemunmix.learn import GaussianMixture
from stemunmix.signals import LazyLocalDescriptors, LocalDescriptors
from stemunmix.synthetic import perovskite


@pytest.mark.parametrize("d", [7, 8])
def test_windows_are_subpixel_interpolations(d):
    rng = np.random.default_rng(0)
    image = rng.random((2, 60, 70)).astype(np.float32)
    xy = rng.uniform(10, 50, (25, 2))
    win = extract_windows(image, xy, d)
    off = np.arange(d) - (d - 1) / 2  # the documented centre convention
    for i in range(len(xy)):
        yy, xx = np.meshgrid(xy[i, 1] + off, xy[i, 0] + off, indexing="ij")
        for c in range(2):
            ref = map_coordinates(image[c], [yy, xx], order=1)
            np.testing.assert_allclose(win[i, c], ref, atol=1e-5)


def test_window_centre_convention_for_odd_and_even_d():
    image = np.zeros((40, 40), np.float32)
    image[20, 21] = 1.0  # a point at x=21, y=20
    odd = extract_windows(image, np.array([[21.0, 20.0]]), 5)[0, 0]
    assert odd[2, 2] == 1.0
    even = extract_windows(image, np.array([[21.0, 20.0]]), 4)[0, 0]
    # Even d: the column sits where the four central pixels meet.
    np.testing.assert_allclose(even[1:3, 1:3], 0.25)


def test_edge_windows_inside_and_nearest():
    image = np.arange(100, dtype=np.float32).reshape(10, 10)
    xy = np.array([[2.0, 2.0], [4.5, 4.5], [8.0, 5.0]])
    assert inside_mask(xy, image.shape, 5).tolist() == [True, True, False]
    padded = extract_windows(image, xy[2:], 5, edge="nearest")[0, 0]
    assert padded[2, 4] == image[5, 9]  # right edge repeated
    assert padded[2, 2] == image[5, 8]


@pytest.fixture(scope="module")
def image_and_columns():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image, truth = perovskite(
            shape=320, dose=100, seed=8, domains="two_stripes", wall_width=0.2
        )
        image.find_columns()
    return image, truth


def test_local_descriptors_layout(image_and_columns):
    image, _ = image_and_columns
    ld = image.local_descriptors(20, classes="B")
    assert type(ld) is LocalDescriptors
    n = ld.axes_manager.navigation_size
    assert ld.data.shape == (n, 20, 40)  # A and B maps side by side
    assert (ld.columns.labels == 1).all() and len(ld.columns) == n
    meta = ld.metadata.Signal.stemunmix.local_descriptors
    assert meta.channels == ["A", "B"] and meta.edge == "drop" and meta.dropped > 0
    assert ld.source_shape == (320, 320)
    # Windows of B columns: the B channel peaks at the centre.
    b_mean = ld.data[:, :, 20:].mean(0)
    assert np.unravel_index(b_mean.argmax(), b_mean.shape) in [
        (9, 9),
        (9, 10),
        (10, 9),
        (10, 10),
    ]
    img = image.local_descriptors(15, source="image")
    assert img.data.shape[1:] == (15, 15)
    np.testing.assert_allclose(
        img.data[0], extract_windows(image.data, img.columns.xy[:1], 15)[0, 0]
    )


def test_lazy_descriptors_equal_eager(image_and_columns):
    image, _ = image_and_columns
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eager = image.local_descriptors(16)
        lazy = image.local_descriptors(16, lazy_output=True)
    assert type(lazy) is LazyLocalDescriptors
    np.testing.assert_array_equal(lazy.data.compute(), eager.data)
    assert lazy.columns == eager.columns


def test_hyperspy_learning_runs_eager_and_lazy(image_and_columns):
    image, _ = image_and_columns
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ld = image.local_descriptors(16, classes="B")
    for signal in (ld, ld.as_lazy()):
        signal.decomposition(output_dimension=3, print_info=False)
        assert signal.learning_results.loadings.shape == (len(ld.columns), 3)
        signal.decomposition(algorithm="NMF", output_dimension=3, print_info=False)
        assert (np.asarray(signal.learning_results.factors) >= 0).all()
    ld.decomposition(output_dimension=3, print_info=False)
    ld.blind_source_separation(2, print_info=False)
    assert ld.learning_results.bss_loadings.shape == (len(ld.columns), 2)
    ld.cluster_analysis("decomposition", number_of_components=3,
                        algorithm=GaussianMixture(2, random_state=0))  # fmt: skip
    assert ld.learning_results.cluster_labels.shape == (2, len(ld.columns))


def test_two_domains_are_found_and_mapped(image_and_columns):
    from sklearn.metrics import adjusted_rand_score

    image, truth = image_and_columns
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ld = image.local_descriptors(24, classes="B")
    ld.decomposition(output_dimension=4, print_info=False)
    ld.cluster_analysis("decomposition", number_of_components=4,
                        algorithm=GaussianMixture(2, random_state=0))  # fmt: skip
    labels = ld.learning_results.cluster_labels.argmax(0)
    b = truth.columns.select("B")
    _, idx = cKDTree(b.xy).query(ld.columns.xy)
    truth_labels = truth.domain[truth.columns.labels == 1][idx]
    assert adjusted_rand_score(truth_labels, labels) > 0.98
    domain_map = ld.get_domain_map()
    assert domain_map.data.shape == (320, 320)
    x = domain_map.axes_manager.signal_axes[0]
    assert x.scale == image.axes_manager.signal_axes[0].scale
    # The map agrees with the true domain map where it is defined.
    ok = np.isfinite(domain_map.data)
    agree = (domain_map.data[ok] == np.take([0, 1] if
             np.mean(labels == truth_labels) > 0.5 else [1, 0], truth.domain_map[ok]))  # fmt: skip
    assert agree.mean() > 0.9
    maps = ld.get_loading_maps()
    assert maps.data.shape == (4, 320, 320)


def test_scree_by_window(image_and_columns):
    image, _ = image_and_columns
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scree = image.scree_by_window([8, 16, 24], n_components=3, classes="B")
    assert scree.data.shape == (3, 3)
    assert np.all(np.diff(scree.data, axis=0) >= 0)  # cumulative
    assert np.all((scree.data > 0) & (scree.data <= 1 + 1e-9))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(d=2), ValueError, "at least 3"),
        (dict(d=1000), ValueError, "does not fit in the image"),
        (dict(d="big"), ValueError, "d = 'big': give a size such as 24"),
        (dict(d=[3]), TypeError, "d must be a window size"),
        (dict(d=16, classes="C"), ValueError, "classes: 'C' is not one of"),
        (dict(d=16, edge="wrap"), ValueError, "edge"),
        (dict(d=16, source="fft"), ValueError, "source"),
        (dict(d=16, channels=["Z"]), ValueError, "channels"),
    ],
)
def test_bad_descriptor_arguments(image_and_columns, kwargs, error, match):
    image, _ = image_and_columns
    with pytest.raises(error, match=match):
        image.local_descriptors(**kwargs)


def test_no_columns_and_absent_class(image_and_columns):
    image, _ = image_and_columns
    with pytest.raises(ValueError, match="no columns"):
        image.local_descriptors(
            16,
            columns=Columns(np.zeros((0, 2)), class_names=["A", "B"]),
            source="image",
        )
    only_a = image.columns.select("A")
    only_a.class_names = image.columns.class_names
    with pytest.raises(ValueError, match="have no columns"):
        image.local_descriptors(16, columns=only_a, classes="B", source="image")


def test_nan_pixels_are_refused(image_and_columns):
    image, _ = image_and_columns
    broken = image.deepcopy()
    broken.data[100, 100] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        broken.local_descriptors(16, columns=image.columns, source="image")


def test_gaussian_mixture_on_dask_equals_numpy():
    import dask.array as da

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (500, 3)), rng.normal(6, 1, (500, 3))])
    eager = GaussianMixture(2, random_state=1).fit(x)
    lazy = GaussianMixture(2, random_state=1).fit(da.from_array(x, chunks=128))
    np.testing.assert_array_equal(eager.labels_, lazy.labels_)
    pred = lazy.predict(da.from_array(x, chunks=100))
    assert hasattr(pred, "compute")
    np.testing.assert_array_equal(pred.compute(), eager.labels_)
    sub = GaussianMixture(2, random_state=1, max_samples=200).fit(x)
    agree = max(
        (sub.labels_ == eager.labels_).mean(), (sub.labels_ != eager.labels_).mean()
    )
    assert agree > 0.99
    with pytest.raises(ValueError, match="n_components"):
        GaussianMixture(0).fit(x)
    with pytest.raises(ValueError, match="NaN"):
        GaussianMixture(2).fit(np.full((10, 2), np.nan))


def test_window_arguments_are_checked_before_segmenting():
    # NaN pixels would fail in segment(); the bad d must be named first.
    image, _ = perovskite(shape=96, seed=0)
    image.data[5, 5] = np.nan
    with pytest.raises(ValueError, match="at least 3"):
        image.local_descriptors(2)
    with pytest.raises(ValueError, match="edge"):
        image.local_descriptors(8, edge="wrap")


def test_lazy_maps_equal_eager_block_by_block(image_and_columns):
    image, _ = image_and_columns
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ld = image.local_descriptors(16, classes="B")
    ld.decomposition(output_dimension=3, print_info=False)
    ld.cluster_analysis("decomposition", number_of_components=3,
                        algorithm=GaussianMixture(2, random_state=0))  # fmt: skip
    lazy = ld.as_lazy()
    for mode in ("voronoi", "points"):
        eager_maps = ld.get_loading_maps(mode=mode)
        lazy_maps = lazy.get_loading_maps(mode=mode, block=96)  # several blocks
        assert lazy_maps._lazy and len(lazy_maps.data.chunks[-1]) == 3
        np.testing.assert_array_equal(lazy_maps.data.compute(), eager_maps.data)
        domain = lazy.get_domain_map(mode=mode, block=96)
        assert domain._lazy
        np.testing.assert_array_equal(domain.data.compute(),
                                      ld.get_domain_map(mode=mode).data)  # fmt: skip
    assert np.isfinite(eager_maps.data).sum() > 100


def test_four_stripe_domains_held_out_nmf_gmm():
    """Issue acceptance: NMF + GaussianMixture on B-centred windows of a
    held-out 2048^2 four-stripe image at dose 100 (analyze's defaults)."""
    from stemunmix.report import analyze

    image, truth = perovskite(shape=2048, domains="four_stripes", dose=100,
                              seed=40001)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = analyze(image, method="nmf", components=4, domains=4, scree=False,
                         truth=truth, show_progressbar=False, log=lambda *a: None)  # fmt: skip
    assert len(result.descriptors.columns) > 9000
    assert result.domain_agreement >= 0.98


def test_pca_components_carry_the_displacement():
    """The first PCA loadings of B-centred windows predict each column's true
    polar displacement linearly (the components are displacement patterns)."""
    image, truth = perovskite(shape=1024, domains="four_stripes", dose=100,
                              seed=40002)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ld = image.local_descriptors(24, classes="B")
    ld.decomposition(output_dimension=4, print_info=False)
    loadings = np.asarray(ld.learning_results.loadings)
    b = truth.columns.labels == 1
    _, idx = cKDTree(truth.columns.xy[b]).query(ld.columns.xy)
    target = truth.displacement[b][idx]
    design = np.column_stack([loadings, np.ones(len(loadings))])
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    residual = target - design @ coef
    r2 = 1 - residual.var(0) / target.var(0)
    assert (r2 > 0.9).all(), r2


@pytest.mark.parametrize("method", ["isomap", "tsne", "umap"])
def test_manifold_embedding_fits_a_subsample_and_embeds_dask_by_chunks(method):
    import dask.array as da

    from stemunmix.learn import ManifoldEmbedding

    if method == "umap":
        pytest.importorskip("umap", reason="umap-learn is not installed")
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 8, (3, 6))
    truth = rng.integers(0, 3, 1500)
    x = centres[truth] + rng.normal(0, 1, (1500, 6))
    learner = ManifoldEmbedding(method, 2, max_samples=400, random_state=0).fit(x)
    assert len(learner.sample_) == 400
    eager = learner.transform(x)
    lazy = learner.transform(da.from_array(x, chunks=300))
    assert hasattr(lazy, "compute") and eager.shape == (1500, 2)
    np.testing.assert_allclose(lazy.compute(), eager, rtol=1e-6, atol=1e-6)
    # The embedding keeps the three clusters apart.
    from sklearn.metrics import adjusted_rand_score

    labels = GaussianMixture(3, random_state=0).fit(eager).labels_
    assert adjusted_rand_score(truth, labels) > 0.95


def test_manifold_learning_gives_a_cluster_source(image_and_columns):
    from stemunmix.report import domain_agreement

    image, truth = image_and_columns
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ld = image.local_descriptors(24, classes="B")
    ld.decomposition(output_dimension=4, print_info=False)
    embedding = ld.manifold_learning("isomap", 2, max_samples=300)
    assert embedding.axes_manager.navigation_size == len(ld.columns)
    assert embedding.axes_manager.signal_shape == (2,)
    ld.cluster_analysis(embedding, algorithm=GaussianMixture(2, random_state=0))
    assert domain_agreement(ld, truth) > 0.9
    with pytest.raises(ValueError, match="source"):
        ld.manifold_learning(source="loadings")
    # a signal on the windows maps like a learning result: the loadings as one
    loadings = ld.learning_results.loadings[:, :2]
    as_signal = hs.signals.Signal1D(loadings)
    np.testing.assert_array_equal(
        ld.get_loading_maps(as_signal).data,
        ld.get_loading_maps("decomposition", components=2).data,
    )
    assert ld.get_loading_maps(embedding).axes_manager.navigation_shape[-1] == 2
    with pytest.raises(ValueError, match="navigation positions"):
        ld.get_loading_maps(hs.signals.Signal1D(loadings[:-1]))
    with pytest.raises(TypeError, match="source must be"):
        ld.get_loading_maps(loadings)


def test_invariant_latents_cluster_the_four_stripes_through_hyperspy():
    """The latents as a signal HyperSpy clusters on (the cosine and sine of
    the angle), the traversals as an image stack."""
    from sklearn.metrics import adjusted_rand_score

    image, truth = perovskite(shape=512, domains="four_stripes", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ld = image.local_descriptors(15, classes="B", source="image",
                                     show_progressbar=False)  # fmt: skip
    with pytest.raises(ValueError, match="invariant_latents"):
        ld.latent_traversal("angle", [0.0])
    with pytest.raises(ValueError, match="channel"):
        ld.invariant_latents(channel="O")
    latents = ld.invariant_latents()
    names = latents.metadata.Signal.quantities
    assert names[:3] == ["angle", "shift_x", "shift_y"]
    assert names[-2:] == ["cos_angle", "sin_angle"]
    assert latents.data.shape == (len(ld.columns), len(names))
    ld.cluster_analysis(latents.isig[-2:], n_clusters=4, algorithm="kmeans",
                        test=False)  # fmt: skip
    labels = ld.learning_results.cluster_labels.argmax(0)
    _, near = cKDTree(truth.columns.xy).query(ld.columns.xy)
    assert adjusted_rand_score(truth.domain[near], labels) > 0.9  # 0.956
    stack = ld.latent_traversal("angle", np.linspace(-np.pi, np.pi, 5))
    assert stack.data.shape == (5, 15, 15)
