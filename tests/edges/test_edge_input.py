"""Bad input at the edges (the synthetic generator, Columns, the report, the
command line): typed errors naming the parameter or option, before any work."""

import warnings

import hyperspy.api as hs
import numpy as np
import pytest
from helpers import refused as _refused

from stemunmix import Columns
from stemunmix.cli import main
from stemunmix.synthetic import perovskite


@pytest.mark.parametrize(
    "kwargs, error, word",
    [
        (dict(seed="x"), TypeError, "seed"),
        (dict(seed=-1), TypeError, "seed"),
        (dict(shape=256.0), TypeError, "shape"),
        (dict(shape="256"), TypeError, "shape"),
        (dict(shape=(64, 64, 3)), ValueError, "shape"),
        (dict(rotation="x"), TypeError, "rotation"),
        (dict(rotation=float("inf")), ValueError, "rotation"),
        (dict(dose=-1), ValueError, "dose"),
        (dict(pixel_size=0), ValueError, "pixel_size"),
        (dict(drift="ab"), TypeError, "drift"),
        (dict(directions=[1, "a", 2, 3]), TypeError, "directions"),
    ],
)
def test_perovskite_names_the_parameter(kwargs, error, word):
    _refused(lambda: perovskite(**kwargs), error, word)


@pytest.mark.parametrize(
    "args, error, word",
    [
        (([[np.nan, 1]],), ValueError, "NaN"),
        (([1, 2, 3],), ValueError, "(N, 2)"),
        (([[1, 2]], [0.5]), ValueError, "labels"),
        (([[1, 2]], [3], ["A"]), ValueError, "labels"),
        (([[1, 2]], [0], "A"), TypeError, "class_names"),
        (([[1, 2]], [0], ["A"], [1, 2]), ValueError, "scores"),
    ],
)
def test_columns_constructor(args, error, word):
    _refused(lambda: Columns(*args), error, word)


def test_analyze_names_what_set_signal_type_left_alone():
    from stemunmix.report import analyze

    line = hs.signals.Signal1D(np.ones(100))
    line.set_signal_type("atomic_resolution")  # HyperSpy: silently nothing
    assert not hasattr(line, "segment")
    _refused(lambda: analyze(line), ValueError, "not an image", "set_signal_type")
    cube = hs.signals.BaseSignal(np.ones((8, 8, 8))).transpose(signal_axes=3)
    _refused(lambda: analyze(cube), ValueError, "3 dimension", "transpose")
    hologram = hs.signals.ComplexSignal2D(np.ones((64, 64), complex))
    _refused(lambda: analyze(hologram), ValueError, "complex", "signal.real")
    _refused(lambda: analyze(np.ones((64, 64))), TypeError, "hs.load")


@pytest.fixture
def small_file(tmp_path):
    image, _ = perovskite(shape=128, seed=0)
    path = tmp_path / "small.hspy"
    image.save(path)
    return path


@pytest.mark.parametrize(
    "argv, start",
    [
        (["analyze", "FILE", "--window", "0"], "stemunmix analyze: argument --window"),
        (["analyze", "FILE", "--window", "500"], "stemunmix analyze: --window 500"),
        (["analyze", "FILE", "--classes", "X"], "stemunmix analyze: --classes 'X'"),
        (
            ["analyze", "FILE", "--components", "0"],
            "stemunmix analyze: argument --comp",
        ),
        (
            ["analyze", "FILE", "--domains", "x"],
            "stemunmix analyze: argument --domains",
        ),
        (
            ["analyze", "FILE", "--method", "svd"],
            "stemunmix analyze: argument --method",
        ),
        (["demo", "--window", "-3"], "stemunmix demo: argument --window"),
        (["demo", "--size", "-10"], "stemunmix demo: argument --size"),
        (["demo", "--seed", "-1"], "stemunmix demo: argument --seed"),
        (["train", "--batch-size", "0"], "stemunmix train: argument --batch-size"),
    ],
)
def test_cli_names_the_option(small_file, capsys, forward_passes, argv, start):
    argv = [str(small_file) if a == "FILE" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(start), err
    assert "\n" not in err and "Traceback" not in err
    assert " d " not in err and "d=" not in err  # no Python argument names
    assert forward_passes == []


def test_cli_names_a_line_profile(tmp_path, capsys, forward_passes):
    path = tmp_path / "line.hspy"
    hs.signals.Signal1D(np.ones(100)).save(path)
    assert main(["analyze", str(path)]) == 2
    assert "holds no image" in capsys.readouterr().err
    assert forward_passes == []


def test_cli_shows_stemunmix_warnings(tmp_path, capsys, monkeypatch):
    """The CLI no longer silences every warning: stemunmix's own reach the user."""
    from stemunmix import report

    def analyze(*args, **kwargs):
        warnings.warn("stemunmix: the user should know", UserWarning, stacklevel=2)
        raise ValueError("stop here")

    monkeypatch.setattr(report, "analyze", analyze)
    with pytest.warns(UserWarning, match="the user should know"):
        assert main(["demo", "--size", "64", "--out", str(tmp_path)]) == 2
