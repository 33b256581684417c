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
