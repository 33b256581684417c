import subprocess
import sys
import textwrap

import hyperspy.api as hs
import numpy as np
import pytest

import stemunmix
from stemunmix import Columns
from stemunmix.signals import (
    AtomicResolutionImage,
    ColumnProbabilities,
    LazyAtomicResolutionImage,
    LazyColumnProbabilities,
    LazyLocalDescriptors,
    LocalDescriptors,
)

TYPES = [
    ("atomic_resolution", AtomicResolutionImage, LazyAtomicResolutionImage),
    ("AtomicResolutionImage", AtomicResolutionImage, LazyAtomicResolutionImage),
    ("column_probabilities", ColumnProbabilities, LazyColumnProbabilities),
    ("ColumnProbabilities", ColumnProbabilities, LazyColumnProbabilities),
    ("local_descriptors", LocalDescriptors, LazyLocalDescriptors),
    ("LocalDescriptors", LocalDescriptors, LazyLocalDescriptors),
]


def _image(nav=()):
    rng = np.random.default_rng(0)
    s = hs.signals.Signal2D(rng.random(nav + (40, 50)).astype(np.float32))
    for ax, name in zip(s.axes_manager.signal_axes, "xy", strict=True):
        ax.name, ax.scale, ax.offset, ax.units = name, 0.02, 0.1, "nm"
    s.set_signal_type("atomic_resolution")
    return s


def _columns():
    xy = np.array([[3.5, 4.25], [10.0, 20.0], [30.1, 12.7], [45.0, 35.5]])
    return Columns(xy, [0, 1, 0, 1], ["A", "B"], scores=[0.9, 0.8, 0.7, 0.6])


@pytest.mark.parametrize("name, eager, lazy", TYPES)
def test_signal_type_and_alias_give_the_classes(name, eager, lazy):
    s = hs.signals.Signal2D(np.zeros((3, 8, 8)))
    s.set_signal_type(name)
    assert type(s) is eager
    assert type(s.as_lazy()) is lazy
    s2 = hs.signals.Signal2D(np.zeros((8, 8))).as_lazy()
    s2.set_signal_type(name)
    assert type(s2) is lazy


def test_version():
    assert stemunmix.__version__.count(".") == 2


@pytest.mark.parametrize("ext", ["hspy", "zspy"])
def test_save_load_restores_type_calibration_and_state(tmp_path, ext):
    s = _image()
    s.columns = _columns()
    s.metadata.set_item("Signal.stemunmix.segment.threshold", 0.5)
    f = tmp_path / f"img.{ext}"
    s.save(f)
    for lazy in (False, True):
        r = hs.load(f, lazy=lazy)
        assert type(r) is (LazyAtomicResolutionImage if lazy else AtomicResolutionImage)
        assert r.axes_manager.signal_axes[0].scale == pytest.approx(0.02)
        assert r.axes_manager.signal_axes[1].offset == pytest.approx(0.1)
        assert r.axes_manager.signal_axes[0].units == "nm"
        assert r.columns == s.columns
        assert r.metadata.Signal.stemunmix.segment.threshold == 0.5


def test_probability_class_names_survive_save(tmp_path):
    p = hs.signals.Signal2D(np.random.default_rng(1).random((3, 16, 16)))
    p.axes_manager.navigation_axes[0].name = "class"
    p.set_signal_type("column_probabilities")
    p.class_names = ["A", "B", "background"]
    p.save(tmp_path / "p.zspy")
    r = hs.load(tmp_path / "p.zspy")
    assert type(r) is ColumnProbabilities
    assert r.class_names == ["A", "B", "background"]
    with pytest.raises(ValueError, match="class_names"):
        r.class_names = ["A", "B"]


def test_state_survives_deepcopy_lazy_compute_and_slicing():
    s = _image(nav=(2,))
    s.columns = _columns()
    assert s.deepcopy().columns == s.columns
    lazy = s.as_lazy()
    assert lazy.columns == s.columns
    lazy.compute()
    assert type(lazy) is AtomicResolutionImage and lazy.columns == s.columns
    assert s.inav[1].columns == s.columns
    # A crop keeps the columns on the same atoms: pixel positions shift, and
    # the column now left of the crop is left out.
    crop = s.isig[10:, 5:]
    inside = (s.columns.xy >= [9.5, 4.5]).all(1)
    assert inside.sum() == len(crop.columns) == len(s.columns) - 1
    np.testing.assert_allclose(crop.columns.xy, s.columns.xy[inside] - [10, 5])
    np.testing.assert_array_equal(crop.columns.labels, s.columns.labels[inside])
    # Rebinning by 2 halves pixel positions (pixel centres move with the bins).
    binned = s.rebin(scale=(1, 2, 2))
    offset, scale = binned._columns_frame()
    want = (0.1 + 0.02 * s.columns.xy - offset) / scale
    np.testing.assert_allclose(binned.columns.xy, want)


def test_columns_setter_rejects_foreign_objects():
    s = _image()
    with pytest.raises(TypeError, match="columns"):
        s.columns = np.zeros((3, 2))
    s.columns = _columns()
    s.columns = None
    assert s.columns is None


@pytest.mark.parametrize(
    "data, match",
    [(np.zeros(10), "2D"), (np.ones((10, 10), complex), "real")],
)
def test_bad_data_is_refused(data, match):
    with pytest.raises(ValueError, match=match):
        AtomicResolutionImage(data)


def _run(code):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_file_loads_as_plain_signal2d_without_stemunmix(tmp_path):
    s = _image()
    s.columns = _columns()
    s.save(tmp_path / "img.hspy")
    # Hide the stemunmix entry point from HyperSpy, as if it were not installed.
    code = f"""
    import importlib.metadata as md
    _orig = md.entry_points
    def entry_points(**kw):
        eps = _orig(**kw)
        if kw.get("group") == "hyperspy.extensions":
            return [e for e in eps if e.name != "stemunmix"]
        return eps
    md.entry_points = entry_points
    import hyperspy.api as hs
    s = hs.load(r"{tmp_path / "img.hspy"}")
    print(type(s).__name__, s.data.shape, s.metadata.Signal.signal_type)
    print(s.metadata.Signal.stemunmix.columns.xy.shape)
    """
    out = _run(code)
    assert out.returncode == 0, out.stderr
    # HyperSpy logs that it does not know the type; the last two lines are ours.
    last = " ".join(out.stdout.strip().splitlines()[-2:])
    assert last == "Signal2D (40, 50) atomic_resolution (4, 2)"


def test_hyperspy_import_is_clean_and_torch_free():
    code = """
    import sys, warnings
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        import hyperspy.api as hs
        import numpy as np
        s = hs.signals.Signal2D(np.zeros((32, 32)))
        s.set_signal_type("atomic_resolution")
        from stemunmix.synthetic import perovskite
        perovskite(shape=96)
    ours = [str(w.message) for w in caught if "stemunmix" in str(w.filename)]
    print(type(s).__name__, "torch" in sys.modules, ours)
    """
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "AtomicResolutionImage False []"
