"""O columns: rendering, the oxygen model's training images, contrast, and
the octahedral measurements."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from stemunmix import Columns
from stemunmix.core.indexing import index_columns
from stemunmix.synthetic import perovskite


def _indexed(truth):
    c = truth.columns
    ij, vectors = index_columns(c.xy, c.labels, 0)
    sigma = np.full((len(c), 2), 0.05)
    return Columns(c.xy, c.labels, c.class_names, sigma=sigma, ij=ij,
                   lattice_vectors=vectors)  # fmt: skip


@pytest.mark.parametrize("projection", ["001", "110"])
def test_pure_oxygen_columns_sit_midway_between_b_columns(projection):
    _, truth = perovskite(shape=200, projection=projection, oxygen_ratio=0.3,
                          dose=None, drift=(0, 0), jitter=0, displacement=0)  # fmt: skip
    c = truth.columns
    b, o = c.xy[c.labels == 1], c.xy[c.labels == 2]
    per_cell = 2 if projection == "001" else 1  # pure-O columns per A column
    assert len(o) / len(c.xy[c.labels == 0]) == pytest.approx(per_cell, rel=0.05)
    dist, near = cKDTree(b).query(o, k=2)
    inner = (o > 30).all(1) & (o < 170).all(1)
    # the two nearest B columns are equidistant, on either side of the O column
    assert np.allclose(dist[inner, 0], dist[inner, 1], atol=1e-6)
    mid = 0.5 * (b[near[inner, 0]] + b[near[inner, 1]])
    assert np.abs(mid - o[inner]).max() < 1e-6


@pytest.mark.parametrize("projection", ["001", "110"])
def test_octahedral_tilt_of_the_true_columns(projection):
    _, truth = perovskite(shape=256, projection=projection, oxygen_ratio=0.3,
                          tilt=6.0, dose=None, drift=(0, 0), jitter=0,
                          displacement=0)  # fmt: skip
    m = _indexed(truth).octahedral_map()
    q = m.metadata.Signal.quantities
    a_tilt = m.data[q.index("a_tilt")]
    ok = np.isfinite(a_tilt)
    assert ok.sum() > 50
    assert np.abs(np.abs(a_tilt[ok]) - 6.0).max() < 0.01
    # antiphase: neighbouring cells along a turn the other way
    both = ok[:, 1:] & ok[:, :-1]
    assert (np.sign(a_tilt[:, 1:][both]) == -np.sign(a_tilt[:, :-1][both])).all()
    b_tilt = m.data[q.index("b_tilt")]
    if projection == "001":
        assert np.abs(np.abs(b_tilt[np.isfinite(b_tilt)]) - 6.0).max() < 0.01
    else:  # the bond along [001] passes an AO column, not a pure-O one
        assert not np.isfinite(b_tilt).any()
    sigma = m.data[q.index("a_sigma_tilt")][ok]
    # sigma 0.05 px on O and both B: d has sqrt(0.05^2 (1 + 1/2)) px, over L / 2
    bond = float(np.hypot(*truth.parameters["lattice_parameter"] / 0.02 * np.array(
        [1.0, 0.0] if projection == "001" else [2**-0.5, 0.0])))  # fmt: skip
    expected = np.degrees(2 * np.sqrt(1.5) * 0.05 / bond)
    assert np.median(sigma) == pytest.approx(expected, rel=0.02)


def test_octahedral_map_calibrated_and_refused_without_oxygen():
    image, truth = perovskite(shape=200, oxygen_ratio=0.3, tilt=4.0, dose=None,
                              drift=(0, 0), jitter=0, displacement=0)  # fmt: skip
    cols = _indexed(truth)
    px = cols.octahedral_map()
    nm = cols.octahedral_map(image=image)
    q = px.metadata.Signal.quantities
    k, t = q.index("a_x"), q.index("a_tilt")
    assert np.allclose(nm.data[k], 0.02 * px.data[k], equal_nan=True)
    assert np.allclose(nm.data[t], px.data[t], equal_nan=True)  # degrees stay
    assert "nm" in nm.metadata.Signal.quantity_units
    on_image = cols.octahedral_map(grid="image", image=image)
    assert on_image.data.shape[1:] == image.data.shape
    _, plain = perovskite(shape=200, dose=None)
    with pytest.raises(ValueError, match="no O columns"):
        _indexed(plain).octahedral_map()


def test_oxygen_training_images_show_o_bright_where_labelled():
    """The oxygen model's images: O labelled only where it shows; dark
    (ABF) images enter inverted, so every labelled column is brighter than
    the background the network sees."""
    from stemunmix.nn import data

    rng = np.random.default_rng(5)
    kinds = {"O shown": 0, "O hidden": 0}
    for _ in range(24):
        image, labels = data.random_sample(rng, 96, oxygen=True)
        assert set(np.unique(labels)) <= {0, 1, 2, 3}
        back = image[labels == 3].mean()
        assert image[labels == 0].mean() > back
        if (labels == 2).any():
            kinds["O shown"] += 1
            assert image[labels == 2].mean() > back
        else:
            kinds["O hidden"] += 1
    assert min(kinds.values()) >= 3, kinds
    plain, labels = data.random_sample(np.random.default_rng(5), 96)
    assert set(np.unique(labels)) <= {0, 1, 2}


def test_dark_synthetic_image_detected_dark():
    from stemunmix.nn.inference import image_contrast

    image, _ = perovskite(shape=256, projection="110", oxygen_ratio=0.5,
                          contrast="dark", dip=0.3, dose=300)  # fmt: skip
    assert image_contrast(image.data, 0) == "dark"
    bright, _ = perovskite(shape=256, oxygen_ratio=0.3)
    assert image_contrast(bright.data, 0) == "bright"


def test_oxygen_model_starts_from_the_default_weights():
    import torch

    from stemunmix import load_model
    from stemunmix.nn.training import OXYGEN_CLASSES, _start_from
    from stemunmix.nn.unet import DilatedUNet

    source = load_model("default")
    model = DilatedUNet(OXYGEN_CLASSES)
    assert _start_from(model, "default") == "default"
    s, m = source.state_dict(), model.state_dict()
    assert all(torch.equal(s[k], m[k]) for k in s if not k.startswith("head."))
    for k, name in enumerate(OXYGEN_CLASSES):
        j = source.class_names.index(name if name != "O" else "A")
        assert torch.equal(model.head.weight[k], source.head.weight[j])
    with pytest.raises(ValueError, match="init: .*neither a bundled model"):
        _start_from(DilatedUNet(OXYGEN_CLASSES), "nosuch")
    with pytest.raises(ValueError, match="network shape"):
        _start_from(DilatedUNet(OXYGEN_CLASSES, widths=(8, 16, 32)), "default")


def _found_fraction(truth, found, name, radius, margin=20):
    """Of the true ``name`` columns away from the edge: the fraction found
    as ``name`` within ``radius`` px, and their RMS error (px)."""
    t = truth.columns.select(name).xy
    shape = np.array(truth.domain_map.shape[::-1])
    t = t[((t > margin) & (t < shape - 1 - margin)).all(1)]
    if name not in found.class_names or len(found.select(name)) == 0:
        return 0.0, np.inf
    d, _ = cKDTree(found.select(name).xy).query(t)
    ok = d < radius
    return ok.mean(), float(np.sqrt((d[ok] ** 2).mean()))


def test_abf_image_gets_the_oxygen_model_and_its_columns():
    """A dark-column [110] image: detected dark, segmented by the oxygen
    model, A, B and the pure-O columns found where they are."""
    image, truth = perovskite(shape=320, projection="110", oxygen_ratio=0.5,
                              intensity_ratio=0.7, contrast="dark", dip=0.3,
                              dose=500, seed=2)  # fmt: skip
    found = image.find_columns()
    seg = image.probabilities.metadata.Signal.stemunmix.segment
    assert (seg.contrast_used, seg.model) == ("dark", "oxygen")
    assert found.class_names[:3] == ["A", "B", "O"]
    for name in ("A", "B", "O"):
        fraction, rms = _found_fraction(truth, found, name, radius=2.0)
        assert fraction > 0.95, (name, fraction)
        assert rms < 0.5, (name, rms)


def test_octahedral_tilt_measured_on_found_columns():
    # no line jitter: it moves the O and B columns of different scan lines
    # apart, and the tilt with them, beyond what the positions' sigma says
    image, truth = perovskite(shape=320, projection="001", oxygen_ratio=0.35,
                              intensity_ratio=0.6, tilt=6.0, displacement=0.0,
                              dose=300, jitter=0.0, seed=3)  # fmt: skip
    found = image.find_columns(model="oxygen")
    m = found.octahedral_map()
    q = m.metadata.Signal.quantities
    tilt = np.abs(m.data[[q.index("a_tilt"), q.index("b_tilt")]])
    ok = np.isfinite(tilt)
    assert ok.mean() > 0.7
    assert np.median(tilt[ok]) == pytest.approx(6.0, abs=0.6)
    # the error bars say how far the cells scatter
    sigma = m.data[[q.index("a_sigma_tilt"), q.index("b_sigma_tilt")]][ok]
    assert 0.7 < np.std(tilt[ok]) / np.nanmedian(sigma) < 1.5


def test_haadf_image_shows_no_oxygen_to_the_oxygen_model():
    """O sites rendered at 2 % of A (HAADF; Bi against O is 1.9 % by Z^1.7):
    invisible at dose 100, and the oxygen model invents none; the cations
    as before."""
    image, truth = perovskite(shape=320, oxygen_ratio=0.02, seed=4)
    found = image.find_columns(model="oxygen")
    o_sites = len(truth.columns.select("O"))
    found_o = len(found.select("O")) if "O" in found.class_names else 0
    assert found_o < 0.05 * o_sites
    for name in ("A", "B"):
        assert _found_fraction(truth, found, name, radius=2.0)[0] > 0.95


def test_dark_image_lazy_equals_eager():
    image, _ = perovskite(shape=256, projection="110", oxygen_ratio=0.5,
                          intensity_ratio=0.7, contrast="dark", dip=0.3,
                          dose=500, seed=6)  # fmt: skip
    eager = image.find_columns()
    lazy_image = image.as_lazy()
    lazy_image.data = lazy_image.data.rechunk(128)
    lazy = lazy_image.find_columns()
    seg = lazy_image.probabilities.metadata.Signal.stemunmix.segment
    assert seg.contrast_used == "dark"
    assert len(eager) == len(lazy) > 100
    assert np.allclose(eager.xy, lazy.xy, atol=1e-6)
    assert np.array_equal(eager.labels, lazy.labels)


def test_windows_on_oxygen_columns_of_a_dark_image_in_one_call():
    """image.local_descriptors(d, classes="O") on a dark image: the class check
    uses the model segment() picks for the contrast (read from its card, no
    maps made for the check), as image.segment().local_descriptors does."""
    import warnings

    image, _ = perovskite(shape=256, projection="110", oxygen_ratio=0.5,
                          intensity_ratio=0.7, contrast="dark", dip=0.3,
                          dose=500, seed=3)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ld = image.local_descriptors(11, classes="O")
        assert len(ld.columns) > 20 and set(ld.columns.labels) == {2}
        with pytest.raises(ValueError, match="contrast"):
            image.local_descriptors(11, classes="O", contrast="purple")
        # bright asked for: the default model, which has no O class
        with pytest.raises(ValueError, match="'O' is not one of"):
            image.deepcopy().local_descriptors(11, classes="O", contrast="bright")


def test_real_abf_windows_on_oxygen_columns(real_data):
    import warnings

    import hyperspy.api as hs

    s = hs.load(real_data / "atomap_hist_STO110_ABF_full.hdf5", file_format="HSPY")
    image = hs.signals.Signal2D(s.data[:384, :384].astype(np.float32))
    image.set_signal_type("atomic_resolution")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ld = image.local_descriptors(11, classes="O")
    assert image.probabilities.metadata.Signal.stemunmix.segment.model == "oxygen"
    assert len(ld.columns) > 50
