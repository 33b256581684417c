"""One execution path: every public method gives lazy output for lazy input,
equal to the eager result, and a whole analysis runs the network once."""

import warnings

import numpy as np
import pytest
import torch

from stemunmix.learn import GaussianMixture
from stemunmix.synthetic import perovskite


@pytest.fixture(scope="module")
def pair():
    image, _ = perovskite(shape=(300, 260), seed=21)
    lazy = image.as_lazy()
    lazy.data = lazy.data.rechunk((150, 130))
    return image, lazy


def _value(result):
    """Plain numbers of any result: signals, Columns, tuples of them."""
    if hasattr(result, "xy"):  # Columns
        return np.concatenate([result.xy.ravel(), result.labels.astype(float)])
    data = result.data
    return np.asarray(data.compute() if hasattr(data, "compute") else data, float)


def _windows(image, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # edge columns left out: said elsewhere
        return image.local_descriptors(16, classes="B", **kw)


def _learned(image, algorithm):
    ld = _windows(image)
    ld.decomposition(algorithm=algorithm, output_dimension=3, print_info=False)
    return ld


METHODS = {
    "segment": lambda im: im.segment(tile=128),
    "image.find_columns": lambda im: im.find_columns(),
    "image.local_descriptors": lambda im: _windows(im),
    "image.local_descriptors(source=image)": lambda im: _windows(im, source="image"),
    "image.scree_by_window": lambda im: im.scree_by_window([12, 16], 3, classes="B"),
    "prob.find_columns": lambda im: im.segment().find_columns(),
    "prob.local_descriptors": lambda im: im.segment().local_descriptors(12),
    "square_pixels": lambda im: im.square_pixels(),
    "NMF loadings": lambda im: _learned(im, "NMF").get_decomposition_loadings(),
    "SVD model": lambda im: _learned(im, "SVD").get_decomposition_model(3),
    "get_loading_maps": lambda im: _learned(im, "NMF").get_loading_maps(block=96),
    "get_domain_map": lambda im: _clustered(im).get_domain_map(block=96),
}


def _clustered(image):
    ld = _learned(image, "NMF")
    ld.cluster_analysis("decomposition", number_of_components=3,
                        algorithm=GaussianMixture(3, random_state=0))  # fmt: skip
    return ld


@pytest.mark.parametrize("name", list(METHODS))
def test_lazy_in_lazy_out_equal_to_eager(pair, name):
    image, lazy = pair
    eager_result = METHODS[name](image.deepcopy())
    lazy_result = METHODS[name](lazy.deepcopy())
    # HyperSpy keeps learning results (loadings, the scree) in memory.
    if hasattr(lazy_result, "_lazy") and name not in ("image.scree_by_window",
                                                      "NMF loadings"):  # fmt: skip
        assert lazy_result._lazy, f"{name} gave an eager result for lazy input"
    a, b = _value(eager_result), _value(lazy_result)
    assert a.shape == b.shape
    scale = max(1.0, float(np.nanmax(np.abs(a))))
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-6 * scale, equal_nan=True)


@pytest.mark.parametrize("lazy_input", [False, True])
def test_an_analysis_runs_the_network_once(pair, forward_passes, lazy_input):
    image, lazy = pair
    image = (lazy if lazy_input else image).deepcopy()
    image.segment(tile=128)
    one_pass = sum(forward_passes)
    forward_passes.clear()
    # The README's example: segment, find columns on the maps, windows from
    # the image (its maps and columns reused), a decomposition, the maps.
    prob = image.segment(tile=128)
    prob.find_columns()
    ld = _windows(image)
    ld.decomposition(algorithm="NMF", output_dimension=3, print_info=False)
    ld.cluster_analysis("decomposition", number_of_components=3,
                        algorithm=GaussianMixture(3, random_state=0))  # fmt: skip
    maps = ld.get_loading_maps()
    if maps._lazy:
        maps.data.compute()
    image.scree_by_window([12, 16], 3, classes="B")
    assert sum(forward_passes) == one_pass > 0


def test_the_image_owns_its_maps_and_columns(pair):
    image, _ = pair
    image = image.deepcopy()
    prob = image.segment()
    assert image.probabilities is prob
    columns = prob.find_columns()
    assert image.columns == columns  # the maps' columns are the image's
    assert prob.image.data is image.data  # a link, not a copy
    crop = image.isig[:200, :200]
    assert crop.probabilities is None  # maps of another shape are not reused


def test_the_link_survives_save_and_load(pair, tmp_path):
    import hyperspy.api as hs

    image, _ = pair
    prob = image.deepcopy().segment()
    prob.save(tmp_path / "maps.hspy")
    back = hs.load(tmp_path / "maps.hspy")
    np.testing.assert_array_equal(back.image.data, image.data)
    cols_a = prob.find_columns()
    cols_b = back.find_columns()  # refined on the saved raw image: no warning
    np.testing.assert_allclose(cols_b.xy, cols_a.xy, atol=1e-9)
    assert back.metadata.Signal.stemunmix.find_columns.refine == "gaussian"


def test_maps_made_with_other_arguments_are_reused_when_nothing_is_asked(
    pair, forward_passes
):
    """After segment(scale=...) or segment(contrast=...), a plain
    find_columns() or local_descriptors() takes those maps (None: not
    asked); an argument that differs makes new ones."""
    image, _ = pair
    for kwargs in ({"scale": 1.0}, {"contrast": "bright"}):
        im = image.deepcopy()
        prob = im.segment(**kwargs)
        forward_passes.clear()
        im.find_columns()
        _windows(im)
        assert sum(forward_passes) == 0, kwargs
        assert im.probabilities is prob
    im.find_columns(scale=1.2)  # asked for another scale: new maps
    assert sum(forward_passes) > 0
    assert im.probabilities.metadata.Signal.stemunmix.segment.scale == 1.2


def test_an_in_place_edit_makes_the_maps_stale(pair):
    """A flip written into the image's own array: its maps and columns are
    those of the old data, so they are not reused; new ones fit the new data."""
    from scipy.spatial import cKDTree

    image, _ = pair
    im = image.deepcopy()
    im.segment()
    im.find_columns()
    im.data[:] = np.ascontiguousarray(im.data[:, ::-1])
    assert im.probabilities is None and im.columns is None
    columns = im.find_columns()
    fresh = image.deepcopy()
    fresh.data = np.ascontiguousarray(fresh.data[:, ::-1])
    truth = fresh.find_columns()
    dist, idx = cKDTree(truth.xy).query(columns.xy)
    assert len(columns) == len(truth)
    assert np.median(dist) < 0.01
    assert (truth.labels[idx] == columns.labels).mean() > 0.99


def test_columns_follow_a_crop_and_a_rebin(pair):
    """Columns owned through the maps follow isig crops and rebinning like
    columns set by hand: on the same atoms, those outside left out, sigmas
    in the new pixels."""
    image, _ = pair
    im = image.deepcopy()
    columns = im.find_columns()
    crop = im.isig[50:200, 30:230]
    moved = crop.columns
    assert moved is not None
    inside = ((columns.x >= 49.5) & (columns.x < 199.5)
              & (columns.y >= 29.5) & (columns.y < 229.5))  # fmt: skip
    assert len(moved) == inside.sum() > 50
    np.testing.assert_allclose(moved.xy, columns.xy[inside] - [50, 30], atol=1e-9)
    # the crop links the image's maps (and their raw image): no copy of them
    assert crop._owned_maps() is im.probabilities
    assert crop._owned_maps().image is im.probabilities.image
    by_hand = image.deepcopy()
    by_hand.columns = columns
    np.testing.assert_allclose(by_hand.isig[50:200, 30:230].columns.xy, moved.xy)
    half = im.rebin(scale=(2, 2))
    rebinned = half.columns
    assert rebinned is not None and len(rebinned) > 0.9 * len(columns)
    # each column on the same atom: the rebinned grid's own column fits agree
    refit = half.deepcopy()
    refit.metadata.Signal.stemunmix.__delattr__("probabilities")
    from scipy.spatial import cKDTree

    found = refit.find_columns()
    dist, _ = cKDTree(found.xy).query(rebinned.xy)
    assert np.median(dist) < 0.2
    np.testing.assert_allclose(np.median(rebinned.sigma), np.median(columns.sigma) / 2,
                               rtol=1e-9)  # fmt: skip


def test_the_model_file_is_read_once_per_process(monkeypatch):
    """load_model reads a file from disk once; each call still gets its own
    network (changing one does not change the next)."""
    import stemunmix.nn.model_io as mio

    reads = []
    real = torch.load
    monkeypatch.setattr(
        mio.torch, "load", lambda *a, **k: reads.append(1) or real(*a, **k)
    )
    monkeypatch.setattr(mio, "_READ", {})
    a = mio.load_model("default")
    b = mio.load_model("default")
    assert len(reads) == 1 and a is not b
    with torch.no_grad():
        next(a.parameters()).add_(1.0)
    c = mio.load_model("default")
    assert torch.equal(next(c.parameters()), next(b.parameters()))
    assert mio.bundled_card("oxygen")["class_names"] == ["A", "B", "O", "background"]


def test_a_saved_analysed_image_stores_its_data_once(tmp_path):
    """The image and the maps it owns in one file: the raw data once (the
    maps' link to it is made again on load), the columns kept."""
    import os

    import hyperspy.api as hs

    im, _ = perovskite(shape=512, seed=1)  # 1339 columns, about 280 B each
    im.data = im.data.astype(np.float32)
    prob = im.segment()
    columns = im.find_columns()
    path = tmp_path / "analysed.hspy"
    im.save(path, compression=None)
    assert os.path.getsize(path) <= 1.15 * (im.data.nbytes + prob.data.nbytes)
    assert im.probabilities.image is not None  # the live link is kept
    back = hs.load(path)
    assert back.probabilities.image.data is back.data  # linked, not copied
    assert back.columns == columns
    np.testing.assert_array_equal(back.probabilities.data, prob.data)


def test_the_model_registry_is_read_from_the_cards(tmp_path, monkeypatch):
    """segment's model for each contrast comes from the bundled cards (no
    weights loaded); a card for a new contrast is all the registry needs."""
    import json
    import shutil

    import stemunmix.nn.model_io as mio

    reg = mio.registry()
    assert (
        reg["default"]["contrast"] == "bright" and reg["oxygen"]["contrast"] == "dark"
    )
    assert reg["oxygen"]["class_names"] == ["A", "B", "O", "background"]
    assert mio.model_for_contrast("dark") == "oxygen"
    with pytest.raises(ValueError, match="no bundled model is for it"):
        mio.model_for_contrast("idpc")
    for p in mio.MODELS_DIR.glob("*.json"):
        shutil.copy(p, tmp_path / p.name)
    card = json.loads((tmp_path / "oxygen.json").read_text())
    (tmp_path / "idpc.json").write_text(json.dumps(card | {"contrast": "idpc"}))
    monkeypatch.setattr(mio, "MODELS_DIR", tmp_path)
    assert mio.model_for_contrast("idpc") == "idpc"
