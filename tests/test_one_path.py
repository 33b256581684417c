"""One execution path: every public method gives lazy output for lazy input,
equal to the eager result, and a whole analysis runs the network once."""

import warnings

import numpy as np
import pytest
import torch

from stemunmix.learn import GaussianMixture
from stemunmix.nn.unet import DilatedUNet
from stemunmix.synthetic import perovskite


@pytest.fixture(scope="module")
def pair():
    image, _ = perovskite(shape=(300, 260), seed=21)
    lazy = image.as_lazy()
    lazy.data = lazy.data.rechunk((150, 130))
    return image, lazy


@pytest.fixture
def forward_passes():
    calls = []

    def hook(module, args, output):
        if isinstance(module, DilatedUNet):
            calls.append(args[0].shape[0])  # tiles in the batch

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    yield calls
    handle.remove()


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
