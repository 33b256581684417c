import warnings

import hyperspy.api as hs
import numpy as np
import pytest
import torch

from stemunmix.nn import DilatedUNet
from stemunmix.signals import ColumnProbabilities, LazyColumnProbabilities
from stemunmix.synthetic import perovskite


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    model = DilatedUNet(widths=(4, 8, 8), bottleneck=8).eval()
    model.card = {"name": "tiny", "training_spacing": 16.0}
    return model


def _stack():
    frames = [perovskite(shape=160, seed=s)[0] for s in (1, 2)]
    stack = hs.stack(frames)
    stack.set_signal_type("atomic_resolution")
    return stack


def test_segment_output_layout_and_metadata(tiny_model):
    image, _ = perovskite(shape=160, pixel_size=0.025, seed=0)
    prob = image.segment(model=tiny_model)
    assert type(prob) is ColumnProbabilities
    assert prob.data.shape == (3, 160, 160)
    assert prob.axes_manager.navigation_axes[0].name == "class"
    assert prob.class_names == ["A", "B", "background"]
    assert prob.axes_manager.signal_axes[0].scale == 0.025
    np.testing.assert_allclose(prob.data.sum(0), 1, atol=1e-5)
    seg = prob.metadata.Signal.stemunmix.segment
    assert seg.model == "tiny" and seg.scale == "auto"


def test_lazy_equals_eager_on_a_two_frame_stack(tiny_model):
    stack = _stack()
    eager = stack.segment(model=tiny_model, show_progressbar=False)
    assert eager.data.shape == (2, 3, 160, 160)
    lazy = stack.as_lazy().segment(model=tiny_model)
    assert type(lazy) is LazyColumnProbabilities
    lazy.compute()
    np.testing.assert_allclose(lazy.data, eager.data, atol=1e-5)
    # Frame k of the stack equals frame k segmented on its own.
    alone = stack.inav[1].segment(model=tiny_model)
    np.testing.assert_allclose(eager.data[1], alone.data, atol=1e-5)
    # An eager image asked for lazy output gives a lazy result.
    assert stack.segment(model=tiny_model, lazy_output=True)._lazy


def test_fixed_scale_resamples(tiny_model):
    image, _ = perovskite(shape=128, seed=0)
    prob = image.segment(model=tiny_model, scale=1.5)
    assert prob.data.shape == (3, 128, 128)
    assert prob.metadata.Signal.stemunmix.segment.scale == 1.5


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(scale="big"), ValueError, "scale"),
        (dict(scale=0), ValueError, "scale"),
        (dict(scale=[2]), TypeError, "scale"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(device="cuda:7" if torch.cuda.is_available() else "cuda"),
         ValueError, "device"),
        (dict(device="tpu"), ValueError, "device"),
        (dict(model=42), TypeError, "model"),
        (dict(model="no-such-model"), ValueError, "name_or_path"),
        (dict(lattice_prior=-0.1), ValueError, "lattice_prior"),
        (dict(lattice_prior=float("nan")), ValueError, "lattice_prior"),
        (dict(lattice_prior="strong"), TypeError, "lattice_prior"),
        (dict(lattice_prior=True), TypeError, "lattice_prior"),
    ],
)  # fmt: skip
def test_bad_arguments(tiny_model, kwargs, error, match):
    image, _ = perovskite(shape=96, seed=0)
    kwargs.setdefault("model", tiny_model)
    if kwargs.get("device", "").startswith("cuda:7") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    with pytest.raises(error, match=match):
        image.segment(**kwargs)


def test_bad_images(tiny_model):
    image, _ = perovskite(shape=96, seed=0)
    image.data[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        image.segment(model=tiny_model)
    image.data[:] = 7.0
    with pytest.raises(ValueError, match="constant"):
        image.segment(model=tiny_model, scale=1)
    small = image.isig[:20, :20]
    small.data = np.random.default_rng(0).random((20, 20)).astype("f4")
    with pytest.raises(ValueError, match="too small"):
        small.segment(model=tiny_model, scale=1)


def test_one_column_class_needs_no_naming():
    torch.manual_seed(0)
    model = DilatedUNet(class_names=("column", "background"), widths=(4, 8, 8),
                        bottleneck=8).eval()  # fmt: skip
    image, _ = perovskite(shape=96, seed=0)
    prob = image.segment(model=model, scale=1)
    assert prob.data.shape == (2, 96, 96)
    np.testing.assert_allclose(prob.data.sum(0), 1, atol=1e-5)
    assert "lattice_vectors" not in prob.metadata.Signal.stemunmix.segment


def test_model_whose_classes_do_not_fit(tiny_model):
    image, _ = perovskite(shape=96, seed=0)
    wrong = DilatedUNet(class_names=("A", "B"), widths=(4, 8, 8), bottleneck=8)
    with pytest.raises(ValueError, match="classes"):
        image.segment(model=wrong.eval())


def _column_accuracy(prob, truth):
    ij = np.round(truth.columns.xy).astype(int)
    pred = prob.data.argmax(0)[ij[:, 1], ij[:, 0]]
    return float(np.mean(pred == truth.columns.labels))


@pytest.mark.parametrize("projection", ["001", "110"])
@pytest.mark.parametrize("dose", [20, 100, 500])
def test_default_model_on_held_out_synthetic_images(projection, dose):
    # Seeds and parameters outside the training stream: rotated, drifted, noisy.
    image, truth = perovskite(
        shape=256, projection=projection, dose=dose, rotation=17.0 + dose / 10,
        drift=(2.5, -1.5), jitter=0.3, seed=10_000 + dose,
    )  # fmt: skip
    prob = image.segment()
    assert _column_accuracy(prob, truth) >= 0.995


# --- lattice_prior: the lattice helps name the columns ------------------------

SHEAR_A, SHEAR_B = np.array([16.0, 1.5]), np.array([-2.0, 15.0])


def _lattice_maps(shape=(200, 220), hesitant_row=None, antisite=None):
    """Probability maps (A, B, background) of a perovskite-like lattice with
    the A lattice spanned by SHEAR_A, SHEAR_B and B at the cell centres:
    columns are Gaussian blobs, the share between A and B is 0.98 for the
    right class, except the A columns of one lattice row (``hesitant_row``,
    0.4 A / 0.6 B: the network leans the wrong way) and one A column
    (``antisite``, named B at odds of 10^4:1)."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w].astype(float)
    col = np.zeros(shape)
    share_a = np.zeros(shape)
    sites = []
    for i in range(-20, 21):
        for j in range(-20, 21):
            a = i * SHEAR_A + j * SHEAR_B
            for xy, is_a in ((a, True), (a + (SHEAR_A + SHEAR_B) / 2, False)):
                if not (0 <= xy[0] < w and 0 <= xy[1] < h):
                    continue
                blob = np.exp(-((xx - xy[0]) ** 2 + (yy - xy[1]) ** 2) / (2 * 2.0**2))
                q = 0.98 if is_a else 0.02
                if is_a and j == hesitant_row:
                    q = 0.4
                if is_a and (i, j) == antisite:
                    q = 1e-4
                near = blob > col
                share_a[near] = q
                col = np.maximum(col, blob)
                sites.append((xy, is_a, i, j))
    col = 0.995 * col
    maps = np.stack([col * share_a, col * (1 - share_a), 1 - col]).astype(np.float32)
    return maps, sites


def _class_at(maps, xy):
    x, y = np.round(xy).astype(int)
    return int(maps[:, y, x].argmax())


def test_lattice_translations_are_measured_on_a_sheared_lattice():
    from stemunmix.core.lattice import translations

    maps, _ = _lattice_maps()
    found = translations(maps[0], spacing=16.0)
    expected = [SHEAR_A, SHEAR_B]
    for (
        v
    ) in found:  # each found vector is +- one of the two, or of their sum/difference
        best = min(np.hypot(*(v - s * e)) for e in expected for s in (1, -1))
        assert best < 0.1
    # The two span the lattice: same cell area.
    area = abs(np.linalg.det(found))
    assert abs(area - abs(np.linalg.det([SHEAR_A, SHEAR_B]))) < 1.0
    # Too few columns: no lattice.
    assert translations(maps[0][:30, :30], spacing=16.0) is None


def test_lattice_relabel_names_a_hesitant_row_and_keeps_a_confident_column():
    from stemunmix.core.lattice import relabel

    maps, sites = _lattice_maps(hesitant_row=5, antisite=(3, 8))
    vectors = np.array([SHEAR_A, SHEAR_B])
    out = relabel(maps, vectors, 0.2, background=2)
    # The background map, and so where the columns are, is untouched.
    np.testing.assert_array_equal(out[2], maps[2])
    np.testing.assert_allclose(out.sum(0), 1, atol=1e-5)
    inner = [s for s in sites if 20 < s[0][0] < 200 and 20 < s[0][1] < 180]
    hesitant = [s for s in inner if s[1] and s[3] == 5]
    assert len(hesitant) >= 5
    # Before: the hesitant row reads B; after: A, as the lattice around says.
    assert all(_class_at(maps, s[0]) == 1 for s in hesitant)
    assert all(_class_at(out, s[0]) == 0 for s in hesitant)
    # The confident antisite (odds 10^4:1 for B) is not overruled.
    (anti,) = [s for s in sites if s[1] and (s[2], s[3]) == (3, 8)]
    assert _class_at(out, anti[0]) == 1
    # Every other column keeps its class.
    others = [s for s in inner if not (s[1] and (s[3] == 5 or (s[2], s[3]) == (3, 8)))]
    assert all(_class_at(out, s[0]) == (0 if s[1] else 1) for s in others)
    # Weight 0: nothing moves.
    np.testing.assert_allclose(relabel(maps, vectors, 0.0, 2), maps, atol=1e-5)


def test_lattice_relabel_in_strips_equals_the_whole_frame():
    from stemunmix.core.lattice import relabel, relabel_frame

    maps, _ = _lattice_maps(hesitant_row=4)
    vectors = np.array([SHEAR_A, SHEAR_B])
    whole = relabel(maps, vectors, 0.3, background=2)
    strips = maps.copy()
    relabel_frame(strips, vectors, 0.3, background=2, rows=40)
    np.testing.assert_allclose(strips, whole, atol=1e-6)


def test_lattice_prior_lazy_equals_eager_and_is_recorded():
    frames = [perovskite(shape=192, dose=50, rotation=10.0 * s, seed=300 + s)[0]
              for s in (1, 2)]  # fmt: skip
    stack = hs.stack(frames)
    stack.set_signal_type("atomic_resolution")
    eager = stack.segment(tile=64, show_progressbar=False)
    seg = eager.metadata.Signal.stemunmix.segment
    assert seg.lattice_prior == 0.2
    vectors = np.asarray(seg.lattice_vectors)
    assert vectors.shape == (2, 2, 2) and np.isfinite(vectors).all()
    # Frame 2 is rotated by 10 degrees against frame 1: so are its translations.
    angle = lambda v: np.degrees(np.arctan2(v[1], v[0])) % 90  # noqa: E731
    turn = (angle(vectors[1, 0]) - angle(vectors[0, 0])) % 90
    assert min(abs(turn - 10), abs(turn - 80)) < 1.5
    plain = stack.segment(tile=64, lattice_prior=0, show_progressbar=False)
    assert np.abs(eager.data - plain.data).max() > 1e-4  # it did something
    np.testing.assert_array_equal(eager.data[:, 2], plain.data[:, 2])
    lazy = stack.as_lazy().segment(tile=64)
    assert lazy._lazy and lazy.data.numblocks[-1] > 1  # several blocks
    np.testing.assert_allclose(lazy.data.compute(), eager.data, atol=1e-5)


def test_precision_is_checked_before_any_work(forward_passes, monkeypatch):
    import torch

    from stemunmix.signals import AtomicResolutionImage
    from stemunmix.synthetic import perovskite

    image = AtomicResolutionImage(perovskite(shape=128, seed=1)[0].data)
    with pytest.raises(ValueError, match="precision"):
        image.segment(precision="float16")
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    with pytest.raises(ValueError, match="native bfloat16"):
        image.segment(precision="bfloat16", device="cpu")
    assert forward_passes == []


def test_bfloat16_maps_are_float32s_within_a_hundredth_and_give_the_same_columns():
    """The network in bfloat16 (where the CPU has it): the probabilities
    within about 0.01 of float32's and the columns, refined on the raw
    image, the same to a few thousandths of a pixel."""
    import torch
    from scipy.spatial import cKDTree

    from stemunmix.signals import AtomicResolutionImage
    from stemunmix.synthetic import perovskite

    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("this CPU has no native bfloat16")
    data = perovskite(shape=384, domains="four_stripes", dose=100, seed=7)[0].data
    maps, found = {}, {}
    for precision in ("float32", "bfloat16"):
        image = AtomicResolutionImage(data)
        prob = image.segment(precision=precision, show_progressbar=False)
        assert prob.metadata.Signal.stemunmix.segment.precision == precision
        maps[precision] = np.asarray(prob.data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found[precision] = image.find_columns(show_progressbar=False)
    assert np.abs(maps["float32"] - maps["bfloat16"]).max() < 0.05
    agree = maps["float32"].argmax(0) == maps["bfloat16"].argmax(0)
    assert agree.mean() > 0.999
    a, b = found["float32"], found["bfloat16"]
    assert len(a) == len(b)
    distance, nearest = cKDTree(a.xy).query(b.xy)
    assert distance.max() < 0.01 and (a.labels[nearest] == b.labels).all()


def test_a_bundled_model_is_built_and_prepared_once():
    """segment()'s bundled network is loaded once per state of its file and
    prepared for inference once: its second call does neither again."""
    from stemunmix.nn import inference
    from stemunmix.nn.model_io import check_model, load_model

    model = check_model(None)
    assert check_model("default") is model
    assert load_model("default") is not model  # the caller's is always fresh
    assert inference.for_inference(model) is inference.for_inference(check_model(None))
