"""Bad input to the signals (segment, find_columns, local_descriptors and the
learning results): a clear, typed error that names the parameter and the
fix, raised before the network runs (counted with a global forward hook),
or a correct result; never a silent wrong one."""

import warnings

import hyperspy.api as hs
import numpy as np
import pytest
from helpers import image as _image
from helpers import refused as _refused

from stemunmix import Columns
from stemunmix.core.peaks import match
from stemunmix.synthetic import perovskite


def test_non_square_pixels_refused_then_resampled(forward_passes):
    image, truth = perovskite(shape=512, seed=3)
    binned = image.data.reshape(256, 2, 512).mean(1)  # rows binned in pairs
    s = _image(binned, (0.02, 0.04), "nm")
    s.axes_manager.signal_axes[1].offset = 0.01  # centre of the first binned row
    _refused(s.segment, ValueError, "not square", "square_pixels()")
    _refused(lambda: s.local_descriptors(24), ValueError, "not square")
    assert forward_passes == []
    square = s.square_pixels()
    assert square.data.shape == (511, 512)
    assert square.axes_manager.signal_axes[1].scale == pytest.approx(0.02)
    columns = square.find_columns()
    # Row k of the square image is at 0.01 + 0.02 k nm, original row k + 0.5.
    true_xy = truth.columns.xy - [0.0, 0.5]
    ref, found = match(true_xy, columns.xy, 3.0)
    inside = (true_xy[:, 1] > 8) & (true_xy[:, 1] < 502) & (true_xy[:, 0] > 8)
    inside &= true_xy[:, 0] < 503
    assert np.isin(np.flatnonzero(inside), ref).mean() >= 0.99
    assert (columns.labels[found] == truth.columns.labels[ref]).mean() >= 0.98
    err = np.hypot(*(columns.xy[found] - true_xy[ref]).T)
    assert np.median(err) < 0.5


@pytest.mark.parametrize("pattern", ["stripes", "diagonal stripes", "noise", "smooth"])
def test_no_columns_is_said_not_invented(pattern, forward_passes):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:256, :256]
    data = {
        "stripes": np.cos(2 * np.pi * x / 16),
        "diagonal stripes": np.cos(2 * np.pi * (x + y) / 22.6),
        "noise": np.zeros((256, 256)),
        "smooth": np.sin(x / 40) + np.cos(y / 50),
    }[pattern] + rng.normal(0, 0.3, (256, 256))
    _refused(_image(data).find_columns, ValueError, "no lattice found")
    assert forward_passes == []


def test_dark_columns_need_an_oxygen_class(real_data, forward_passes):
    """ABF: detected as dark; a model without an O class is refused (it would
    name the O columns as cations), before the network runs."""
    from stemunmix.nn.inference import image_contrast

    abf = hs.load(real_data / "atomap_hist_STO110_ABF_full.hdf5", file_format="HSPY")
    abf = abf.isig[:512, :512]
    abf.set_signal_type("atomic_resolution")
    _refused(lambda: abf.find_columns(model="default"), ValueError, "dark columns",
             "ABF", "no O class", "model=None")  # fmt: skip
    assert forward_passes == []
    assert image_contrast(abf.data, 0) == "dark"
    adf = hs.load(real_data / "atomap_hist_STO110_ADF_full.hdf5", file_format="HSPY")
    assert image_contrast(adf.data[:512, :512], 0) == "bright"
    # iDPC: bright columns, a nearly symmetric histogram
    idpc = hs.load(real_data / "singleorigin_PMN_iDPC.tif")
    assert image_contrast(np.asarray(idpc.data, float), 0) == "bright"


def test_dark_contrast_option(forward_passes):
    image, _ = perovskite(shape=128, seed=0)
    _refused(lambda: image.segment(model="default", contrast="dark"), ValueError,
             "no O class")  # fmt: skip
    _refused(lambda: image.segment(contrast="sideways"), ValueError, "contrast")
    inverted = _image(image.data.max() - image.data, (0.02, 0.02), "nm")
    _refused(lambda: inverted.segment(model="default"), ValueError, "dark columns")
    assert forward_passes == []
    stack = _image(np.stack([image.data, image.data.max() - image.data]))
    _refused(stack.segment, ValueError, "bright columns in some frames")


SEGMENT_CASES = [
    (dict(scale="big"), ValueError, "scale"),
    (dict(scale=-1.0), ValueError, "scale"),
    (dict(scale=True), TypeError, "scale"),
    (dict(scale=[1]), TypeError, "scale"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=1.5), TypeError, "batch_size"),
    (dict(tile=10), ValueError, "tile"),
    (dict(lattice_prior=-1), ValueError, "lattice_prior"),
    (dict(lattice_prior=float("nan")), ValueError, "lattice_prior"),
    (dict(lattice_prior="a"), TypeError, "lattice_prior"),
    (dict(spacing=-3), ValueError, "spacing"),
    (dict(spacing=1e6), ValueError, "spacing"),
    (dict(spacing="16"), TypeError, "spacing"),
    (dict(spacing=16.0, scale=2.0), ValueError, "not both"),
    (dict(model=42), TypeError, "model"),
    (dict(model="no-such-model"), ValueError, "bundled model"),
    (dict(device="tpu"), ValueError, "device"),
]


@pytest.mark.parametrize("kwargs, error, word", SEGMENT_CASES)
def test_segment_arguments(small, forward_passes, kwargs, error, word):
    image, _ = small
    _refused(lambda: image.segment(**kwargs), error, word)
    assert forward_passes == []


FIND_CASES = [
    (dict(threshold=5), ValueError, "threshold"),
    (dict(threshold=0), ValueError, "threshold"),
    (dict(threshold=1), ValueError, "threshold"),
    (dict(threshold="high"), TypeError, "threshold"),
    (dict(min_distance=0), ValueError, "min_distance"),
    (dict(refine="spline"), ValueError, "refine"),
    (dict(lattice="hexagonal"), ValueError, "lattice"),
]


@pytest.mark.parametrize("kwargs, error, word", FIND_CASES)
def test_find_columns_arguments(small, forward_passes, kwargs, error, word):
    image, _ = small
    _refused(lambda: image.find_columns(**kwargs), error, word)
    assert forward_passes == []


DESCRIPTOR_CASES = [
    (dict(d=1000), ValueError, "does not fit"),
    (dict(d=256), ValueError, "does not fit"),
    (dict(d=2), ValueError, "at least 3"),
    (dict(d=0), ValueError, "at least 3"),
    (dict(d=0.001), ValueError, "at least 3 pixels"),
    (dict(d=True), TypeError, "window size"),
    (dict(d=None), TypeError, "window size"),
    (dict(d="0.5 parsec"), ValueError, "cannot convert"),
    (dict(d="wide"), ValueError, "give a size"),
    (dict(d=24, classes="X"), ValueError, "classes"),
    (dict(d=24, classes="background"), ValueError, "classes"),
    (dict(d=24, classes=[]), ValueError, "classes"),
    (dict(d=24, channels=["Z"]), ValueError, "channels"),
    (dict(d=24, edge="wrap"), ValueError, "edge"),
    (dict(d=24, source="fft"), ValueError, "source"),
    (dict(d=24, source="image", channels=["A"]), ValueError, "channels"),
]


@pytest.mark.parametrize("kwargs, error, word", DESCRIPTOR_CASES)
def test_local_descriptors_arguments(small, forward_passes, kwargs, error, word):
    image, _ = small
    _refused(lambda: image.local_descriptors(**kwargs), error, word)
    assert forward_passes == []


def test_window_size_rule_is_explicit(small):
    image, _ = small  # 0.02 nm pixels
    cols = Columns([[128.0, 128.0]])
    for d, pixels in [(24, 24), (0.48, 24), ("0.48 nm", 24), ("4.8 Å", 24),
                      ("480 pm", 24), ("24 px", 24)]:  # fmt: skip
        ld = image.local_descriptors(d, columns=cols, source="image")
        assert ld.axes_manager.signal_shape == (pixels, pixels)
        read = ld.metadata.Signal.stemunmix.local_descriptors.d_read
        assert ("pixels" in read) and (str(d) in read or repr(d) in read)
    raw = _image(image.data)  # uncalibrated
    msg = _refused(lambda: raw.local_descriptors(0.5), ValueError, "not calibrated")
    assert "int number of pixels" in msg


def test_non_uniform_axes_refused(forward_passes):
    s = hs.signals.Signal2D(np.ones((64, 64), np.float32))
    s.axes_manager.signal_axes[0].convert_to_non_uniform_axis()
    s.set_signal_type("atomic_resolution")
    _refused(s.segment, ValueError, "non-uniform", "uniform axis")
    assert forward_passes == []


def test_nan_and_constant_images(forward_passes):
    data = np.random.default_rng(0).random((128, 128))
    data[3, 4] = np.nan
    _refused(_image(data).segment, ValueError, "NaN", "replace")
    _refused(_image(np.ones((128, 128))).segment, ValueError, "constant")
    assert forward_passes == []


def test_small_images_work_with_the_spacing():
    for shape in (64, 96):  # 3 and 5 unit cells
        for kwargs in ({}, {"spacing": 19.8}):
            image, truth = perovskite(shape=shape, seed=0)
            columns = image.find_columns(**kwargs)
            ref, found = match(truth.columns.xy, columns.xy, 3)
            assert len(ref) == len(truth.columns)  # recall 1
            assert len(columns) - len(found) <= 2  # partly visible edge columns
            assert (columns.labels[found] == truth.columns.labels[ref]).all()
        assert image.probabilities.metadata.Signal.stemunmix.segment.spacing == 19.8
    # Where the spacing cannot be measured, the message says what works.
    noise = _image(np.random.default_rng(1).normal(size=(96, 96)))
    _refused(noise.find_columns, ValueError, "no lattice", "spacing=")


def test_a_thin_strip_with_the_spacing():
    image, truth = perovskite(shape=(32, 1024), pixel_size=0.04, seed=0)
    columns = image.find_columns(spacing=9.9)
    ref, _ = match(truth.columns.xy, columns.xy, 2)
    assert len(ref) / len(truth.columns) > 0.98


def test_large_spacing_finds_no_spurious_columns():
    image, truth = perovskite(shape=700, pixel_size=0.396 / 100, seed=0)
    columns = image.find_columns()
    ref, found = match(truth.columns.xy, columns.xy, 15)
    assert len(ref) == len(truth.columns)
    extra = np.setdiff1d(np.arange(len(columns)), found)
    # Any extra column is a partly visible one on the image edge.
    xy = columns.xy[extra]
    on_edge = (xy.min(1) < 2) | (xy[:, 0] > 697) | (xy[:, 1] > 697)
    assert on_edge.all(), xy


def test_loading_maps_name_the_number_of_components(small):
    image, _ = small
    ld = image.local_descriptors(16, columns=Columns(np.random.default_rng(0).
                                 uniform(20, 230, (60, 2))), source="image")  # fmt: skip
    ld.decomposition(algorithm="SVD", output_dimension=3, print_info=False)
    _refused(lambda: ld.get_loading_maps(components=100), ValueError, "at most")
    _refused(lambda: ld.get_loading_maps(components=[0, 9999]), ValueError, "9999")
    _refused(lambda: ld.get_loading_maps(components=0), ValueError, "components")
    _refused(lambda: ld.get_loading_maps(components=2.5), TypeError, "components")
    _refused(lambda: ld.get_loading_maps(mode="contour"), ValueError, "mode")
    assert ld.get_loading_maps(components=2).axes_manager.navigation_size == 2


def test_columns_off_the_lattice_carry_a_warning(small):
    image, _ = small
    prob = image.segment()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a crystal: no warning
        prob.find_columns(image=image)
    # The same maps with the lattice translations of another crystal.
    prob.metadata.Signal.stemunmix.segment.lattice_vectors = np.array(
        [[13.7, 3.1], [-4.4, 11.9]]
    )
    with pytest.warns(UserWarning, match="lattice translation away"):
        prob.find_columns(image=image)


def test_segment_store_must_be_a_path(small, forward_passes):
    image, _ = small
    _refused(lambda: image.segment(store=123), TypeError, "store", "folder path")
    assert forward_passes == []
