"""Bad input to training and model files: refused up front, naming the
parameter; finished work never lost."""

import pytest
import torch
from helpers import refused as _refused

import stemunmix
from stemunmix.nn.model_io import save_model
from stemunmix.nn.unet import DilatedUNet


def test_train_checks_up_front(tmp_path):
    for kw, word in [
        (dict(validation_size=0), "validation_size"),
        (dict(checkpoint_every=0), "checkpoint_every"),
        (dict(steps=0), "steps"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(patch_size=36), "patch_size"),
        (dict(seed=-1), "seed"),
    ]:
        _refused(
            lambda kw=kw: stemunmix.train(out=tmp_path / "m", **kw), ValueError, word
        )
    _refused(lambda: stemunmix.train(steps=1.5), TypeError, "steps")
    (tmp_path / "file").write_text("x")
    _refused(
        lambda: stemunmix.train(out=tmp_path / "file"), ValueError, "out", "folder"
    )
    assert not (tmp_path / "m").exists()  # refused before anything was written


def test_training_never_loses_finished_work(tmp_path, monkeypatch):
    from stemunmix.nn import training

    def broken(*args, **kwargs):
        raise RuntimeError("validation failed")

    monkeypatch.setattr(training, "evaluate", broken)
    with pytest.raises(RuntimeError, match="validation failed"):
        stemunmix.train(out=tmp_path, steps=2, batch_size=1, patch_size=32,
                        validation_size=1, checkpoint_every=2,
                        widths=(4, 8, 8), bottleneck=8)  # fmt: skip
    # The weights of the finished steps were written before validation ran.
    model = stemunmix.load_model(tmp_path / "checkpoint.pt")
    assert model.card["validation"]["step"] == 2
    assert (
        stemunmix.load_model(tmp_path / "interrupted.pt").card["recipe"]["steps"] == 2
    )


def _saved(tmp_path, **card):
    torch.manual_seed(0)
    model = DilatedUNet(widths=(4, 8, 8), bottleneck=8)
    path = save_model(model, tmp_path / "m.pt", {"training_spacing": 16.0} | card)
    return path


@pytest.mark.parametrize("spacing", [0, -3.0, "16", float("nan")])
def test_model_card_with_impossible_spacing_refused_at_load(tmp_path, spacing):
    path = _saved(tmp_path, training_spacing=spacing)
    _refused(lambda: stemunmix.load_model(path), ValueError, "training_spacing")


def test_model_card_with_the_wrong_class_count_refused_at_load(tmp_path):
    path = _saved(tmp_path, class_names=["A", "B", "O", "background"])
    _refused(lambda: stemunmix.load_model(path), ValueError, "class", "3")


@pytest.mark.parametrize("bad", [3, 2.5, ["a"], object()])
def test_load_model_wrong_type(bad):
    with pytest.raises(TypeError, match="name_or_path"):
        stemunmix.load_model(bad)
