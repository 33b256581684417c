"""Inputs that used to fail late, unclearly or silently (issue: nothing lost,
nothing stale, nothing late): each refused early with the parameter named,
or handled; warnings only where the user should act, at the user's line."""

import logging
import warnings

import hyperspy.api as hs
import numpy as np
import pytest
from helpers import refused as _refused

from stemunmix import Columns
from stemunmix.cli import main
from stemunmix.core.segmentation import NoLatticeError
from stemunmix.learn import GaussianMixture, GramSVD, ManifoldEmbedding
from stemunmix.report import analyze
from stemunmix.synthetic import from_columns, perovskite


@pytest.fixture(scope="module")
def found():
    """A small synthetic image with its columns found."""
    image, _ = perovskite(shape=192, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image.find_columns()
    return image


# --- stacks, and analyze's own arguments before any work ----------------------


def test_analyze_refuses_a_stack_up_front_with_what_works(forward_passes):
    image, _ = perovskite(shape=128, seed=0)
    stack = hs.stack([image] * 3)
    _refused(lambda: analyze(stack), ValueError, "stack of 3 frames", "inav[k]",
             "--frame")  # fmt: skip
    assert forward_passes == []


def test_cli_takes_one_frame_of_a_stack(tmp_path, capsys, forward_passes):
    image, _ = perovskite(shape=160, seed=0)
    path = tmp_path / "stack3.hspy"
    hs.stack([image] * 3).save(path)
    out = str(tmp_path / "r")
    assert main(["analyze", str(path), "--out", out]) == 2
    err = capsys.readouterr().err
    assert "stack of 3 frames" in err and "--frame K (0 to 2)" in err
    assert main(["analyze", str(path), "--out", out, "--frame", "3"]) == 2
    assert "--frame 3" in capsys.readouterr().err
    assert forward_passes == []
    code = main(["analyze", str(path), "--out", out, "--frame", "1", "--no-scree",
                 "--components", "2", "--domains", "1"])  # fmt: skip
    assert code == 0
    assert hs.load(tmp_path / "r" / "image.hspy").data.shape == (160, 160)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"window": 10**6}, "window: 1000000 px does not fit"),
        ({"window": 7, "components": 50}, "components: 50 is more than a 7 x 7"),
    ],
)
def test_analyze_checks_window_and_components_before_segmenting(
    forward_passes, kwargs, word
):
    image, _ = perovskite(shape=128, seed=0)
    _refused(lambda: analyze(image, **kwargs), ValueError, word)
    assert forward_passes == []


def test_too_few_cells_are_said_in_cells():
    image, _ = perovskite(shape=256, seed=0)
    small = image.isig[:48, :48]
    small.set_signal_type("atomic_resolution")
    _refused(lambda: analyze(small, show_progressbar=False, log=lambda *a: None),
             ValueError, "48 x 48 px", "too few cells", "spacing=")  # fmt: skip


# --- library errors the API now checks ------------------------------------------


def _square(n=4, spacing=10.0):
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    ij = np.stack([i.ravel(), j.ravel()], 1)
    return ij, ij * spacing + 5.0


def test_strain_of_a_degenerate_lattice_is_a_value_error():
    c = Columns(
        [[5.0, 5.0]] * 4, [0] * 4, ["A", "B"], ij=[[0, 0], [1, 0], [0, 1], [1, 1]]
    )
    _refused(c.strain_map, ValueError, "no area", "ij")


@pytest.mark.parametrize(
    "heights, error, word",
    [
        ({"A": -1.0}, ValueError, "heights['A']"),
        ({"A": np.nan}, ValueError, "heights['A']"),
        ("A", TypeError, "heights must be a dict"),
        ({"Z": 1.0}, ValueError, "'Z' is not a class"),
    ],
)
def test_from_columns_checks_heights(heights, error, word):
    ij, xy = _square()
    c = Columns(xy, [0] * len(xy), ["A", "B"], ij=ij)
    _refused(lambda: from_columns(c, heights=heights), error, word)


def test_from_columns_refuses_what_it_cannot_allocate_or_place():
    ij, xy = _square()
    c = Columns(xy, [0] * len(xy), ["A", "B"], ij=ij)
    _refused(lambda: from_columns(c, shape=200000), ValueError, "shape:", "GiB")
    far = Columns(np.vstack([xy, [[1e6, 1e6]]]), [0] * (len(xy) + 1), ["A", "B"])
    _refused(lambda: from_columns(far), ValueError, "shape=None", f"index {len(xy)}")
    neg = Columns(np.vstack([xy, [[-5.0, 10.0]]]), [0] * (len(xy) + 1), ["A", "B"])
    msg = _refused(lambda: from_columns(neg), ValueError, "outside the image")
    assert "drift" not in msg


def test_manifold_embedding_names_n_components():
    x = np.random.default_rng(0).normal(size=(60, 3))
    _refused(lambda: ManifoldEmbedding(n_components=100).fit(x), ValueError,
             "n_components=100", "at most 3")  # fmt: skip


# --- two regressions --------------------------------------------------------------


def test_pure_noise_with_a_scale_is_no_lattice(forward_passes):
    rng = np.random.default_rng(0)
    s = hs.signals.Signal2D(rng.poisson(50, (256, 256)).astype("float32"))
    s.set_signal_type("atomic_resolution")
    _refused(lambda: s.find_columns(scale=1), NoLatticeError, "no lattice")
    assert forward_passes == []


def test_a_unitless_string_window_needs_its_unit(found, forward_passes):
    _refused(lambda: found.local_descriptors("24"), TypeError, "needs its unit",
             '"24 px"')  # fmt: skip
    assert forward_passes == []


@pytest.mark.parametrize("text", ["0.48 nm", "4.8 \u212b", "4.8 \u00c5", "480 pm"])
def test_window_units_on_axes_in_metres(text):
    from stemunmix.signals._base import window_pixels

    image, _ = perovskite(shape=64, pixel_size=0.02, lattice_parameter=0.2)
    for ax in image.axes_manager.signal_axes:
        ax.units, ax.scale = "m", ax.scale * 1e-9
    assert window_pixels(text, image.axes_manager.signal_axes)[0] == 24


# --- a forced contrast the image contradicts ----------------------------------------


def test_forced_dark_contrast_on_bright_columns_warns_with_the_asymmetry():
    image, _ = perovskite(shape=192, seed=0)
    with pytest.warns(UserWarning, match=r"contrast='dark'.*asymmetry is \d") as w:
        image.segment(contrast="dark")
    assert w[0].filename == __file__  # the user's line, not the package's


def test_forced_bright_contrast_on_the_real_abf_warns(real_data):
    abf = hs.load(real_data / "atomap_hist_STO110_ABF_full.hdf5", file_format="HSPY")
    abf = abf.isig[:256, :256]
    abf.set_signal_type("atomic_resolution")
    with pytest.warns(UserWarning, match=r"contrast='bright'.*dark columns"):
        abf.segment(contrast="bright")


# --- measurements: refused where they would be empty or enormous --------------------


def test_polarization_without_complete_cells_or_with_one_class(found):
    cols = found.columns
    no_b = cols[cols.labels == cols.class_index("A")]
    _refused(no_b.polarization_map, ValueError, "no complete cell", "0 'B'")
    _refused(lambda: cols[:1].polarization_map(), ValueError, "no complete cell")
    _refused(lambda: cols.polarization_map(a="B", b="B"), ValueError, "same class")


def test_image_grid_on_another_image_is_refused(found):
    other, _ = perovskite(shape=64, seed=0)
    _refused(lambda: found.columns.polarization_map(grid="image", image=other),
             ValueError, "outside this 64 x 64 px image")  # fmt: skip


def test_a_far_lattice_site_is_named_not_allocated(found):
    cols = found.columns
    ij = cols.ij.copy()
    k = int(np.flatnonzero((ij >= 0).all(1))[5])
    ij[k] = [10**6, 3]
    bad = Columns(cols.xy, cols.labels, cols.class_names, ij=ij, sigma=cols.sigma)
    for call in (bad.polarization_map, bad.strain_map,
                 lambda: bad.site_map(np.zeros(len(bad)), "A")):  # fmt: skip
        _refused(call, ValueError, f"site {k} at ij = [1000000, 3]")
    two = Columns([[5.0, 5.0], [15.0, 5.0]], [0, 0], ["A", "B"],
                  ij=[[0, 0], [40000, 40000]])  # fmt: skip
    _refused(lambda: two.site_map(np.zeros(2), "A"), ValueError, "far from the others")


# --- saving, messages and warnings -------------------------------------------------


def test_descriptors_after_nmf_save_without_an_error(found, tmp_path, caplog):
    ld = found.local_descriptors(11, classes="B").as_lazy()
    ld.decomposition(algorithm="NMF", output_dimension=3, print_info=False)
    ld.cluster_analysis("decomposition", number_of_components=3,
                        algorithm=GaussianMixture(2, random_state=0))  # fmt: skip
    with caplog.at_level(logging.WARNING):
        ld.save(tmp_path / "w.zspy")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    back = hs.load(tmp_path / "w.zspy")
    np.testing.assert_allclose(back.learning_results.factors,
                               ld.learning_results.factors)  # fmt: skip
    assert "NMF" in str(back.learning_results.decomposition_algorithm)
    # the signal keeps its estimators
    assert hasattr(ld.learning_results.decomposition_algorithm, "transform")


def test_edge_columns_left_out_are_recorded_not_warned(found, caplog):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with caplog.at_level(logging.INFO, logger="stemunmix"):
            ld = found.local_descriptors(15, classes="B")
    left = ld.metadata.Signal.stemunmix.local_descriptors.left_out.as_dictionary()
    assert left["edge"] + left["no_cell"] > 0
    assert any("were left out" in r.getMessage() for r in caplog.records)


def test_lazy_svd_is_exact_without_deprecated_solvers():
    image, _ = perovskite(shape=320, seed=3)  # more windows than pixels each
    ld = image.local_descriptors(9, classes="B")
    ld.decomposition(output_dimension=6, print_info=False)
    lazy = ld.as_lazy()
    lazy.data = lazy.data.rechunk((50, -1, -1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lazy.decomposition(output_dimension=6, print_info=False)
    ev, lz = ld.learning_results, lazy.learning_results
    np.testing.assert_allclose(lz.explained_variance[:6], ev.explained_variance[:6],
                               rtol=1e-8)  # fmt: skip
    np.testing.assert_allclose(np.asarray(lz.factors), ev.factors[:, :6], atol=1e-6)
    np.testing.assert_allclose(np.asarray(lz.loadings), ev.loadings[:, :6], atol=1e-5)


def test_gram_svd_matches_lapack_with_centring():
    x = np.random.default_rng(1).normal(size=(300, 20)) @ np.diag(np.arange(20, 0, -1))
    svd = GramSVD(5, centre="navigation").fit(x)
    c = x - x.mean(0)
    _, s, vt = np.linalg.svd(c, full_matrices=False)
    np.testing.assert_allclose(svd.singular_values_, s[:5], rtol=1e-10)
    np.testing.assert_allclose(abs(svd.components_), abs(vt[:5]), atol=1e-8)
    loadings = svd.transform(x)
    assert (loadings[abs(loadings).argmax(0), range(5)] > 0).all()
