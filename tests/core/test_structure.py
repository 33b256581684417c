"""Which lattice an image shows (core/structure.py), on arrays."""

import numpy as np
import pytest

from stemunmix.core import structure as st


def _image(xy, heights, shape=(160, 160), width=2.0, background=10.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    out = np.full(shape, background)
    for (x, y), h in zip(xy, heights, strict=True):
        out += h * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * width**2))
    return out


def _square(spacing, n, offset=0.0):
    g = np.arange(n) * spacing + 12.0 + offset
    return np.array([[x, y] for x in g for y in g], float)


def _labels(a, b):
    return np.r_[a, b], np.r_[np.zeros(len(a), int), np.ones(len(b), int)]


def test_b_columns_between_atoms_are_in_valleys_and_faint_b_are_not():
    """One species on a square lattice, with B guessed at the cell centres:
    no B is a peak, with or without the atoms; a perovskite's faint, wide B
    (5 % of A) sits below the A tails but is a peak once they are gone."""
    a, b = _square(12.0, 12), _square(12.0, 11, 6.0)
    names = ["A", "B", "background"]
    metal = _image(a, np.full(len(a), 200.0), width=3.0)
    ev = st.perovskite_evidence(metal, *_labels(a, b), names)
    assert ev["b_columns"] == len(b)
    assert ev["b_peaks"] < 0.05 and ev["b_peaks_less_a"] < 0.7
    assert not st.is_perovskite(ev)
    xy, labels = _labels(a, b)
    heights = np.where(labels == 0, 200.0, 10.0)
    faint = _image(xy, heights, width=3.0)
    ev = st.perovskite_evidence(faint, xy, labels, names)
    assert ev["b_peaks"] < st.B_PEAKS  # under the A tails
    assert ev["b_peaks_less_a"] > 0.9 and st.is_perovskite(ev)
    bright = _image(xy, np.where(labels == 0, 200.0, 60.0))
    ev = st.perovskite_evidence(bright, xy, labels, names)
    assert ev["b_peaks"] > 0.9 and np.isnan(ev["b_peaks_less_a"])
    assert st.is_perovskite(ev)


def test_b_columns_as_bright_as_a_are_one_species_to_z_contrast():
    """A centred square lattice whose centre columns are real peaks: at the
    corners' height no perovskite (a metal split into A and B by the
    network), at half of it (SrTiO3's Ti-O against Sr) a perovskite."""
    a, b = _square(12.0, 12), _square(12.0, 11, 6.0)
    names = ["A", "B", "background"]
    xy, labels = _labels(a, b)
    for ratio, perovskite in ((1.0, False), (0.9, False), (0.5, True)):
        heights = np.where(labels == 0, 200.0, 200.0 * ratio)
        ev = st.perovskite_evidence(_image(xy, heights), xy, labels, names)
        assert ev["b_peaks"] > 0.9  # B columns are peaks: not the valleys
        assert ev["b_level"] == pytest.approx(ratio, abs=0.1)
        assert st.is_perovskite(ev) is perovskite, ratio


def test_neighbours_of_one_brightness_are_no_perovskite():
    """A and B alternate in height on a perovskite (the bond ends
    anti-correlate), whatever the thickness does across the crop: over the
    local mean of the heights, a perovskite whose B is half its A and whose
    thickness grows sixfold across the crop still alternates, though the raw
    heights then correlate; one species does not alternate."""
    a, b = _square(12.0, 12), _square(12.0, 11, 6.0)
    xy, labels = _labels(a, b)
    ramp = 1 + 5 * (xy[:, 0] - xy[:, 0].min()) / np.ptp(xy[:, 0])
    graded = _image(xy, np.where(labels == 0, 200.0, 100.0) * ramp)
    assert st.height_correlation(graded, xy) > -0.1  # the raw figure is fooled
    assert st.local_height_correlation(graded, xy) < -0.5
    rng = np.random.default_rng(0)
    one = _image(xy, 200.0 * ramp * rng.uniform(0.9, 1.1, len(xy)))
    assert st.local_height_correlation(one, xy) > -0.3
    ev = {"b_columns": 121, "b_peaks": 0.9, "b_peaks_less_a": np.nan}
    ev |= {"b_level": 0.4, "hexagonal": 0.0}
    assert st.is_perovskite(ev | {"local_height_correlation": -0.5})
    assert not st.is_perovskite(ev | {"local_height_correlation": 0.1})


def test_hexagonal_bonds_are_no_perovskite_the_models_know():
    square = _square(12.0, 10)
    rows = [
        [x + (6.0 if j % 2 else 0.0), j * 12.0 * np.sqrt(3) / 2]
        for j in range(10)
        for x in np.arange(10) * 12.0
    ]
    hexagonal = np.array(rows) + 12.0
    assert st.hexagonal_share(square) < 0.05
    assert st.hexagonal_share(hexagonal) > 0.7
    ev = {"b_columns": 121, "b_peaks": 0.9, "b_peaks_less_a": np.nan}
    ev |= {"b_level": 0.4, "local_height_correlation": -0.5}
    assert st.is_perovskite(ev | {"hexagonal": 0.3})
    assert not st.is_perovskite(ev | {"hexagonal": 0.8})


def test_too_few_columns_keep_the_perovskite():
    a, b = _square(12.0, 3), _square(12.0, 2, 6.0)
    ev = st.perovskite_evidence(
        _image(a, np.full(len(a), 100.0)), *_labels(a, b), ["A", "B"]
    )
    assert np.isnan(ev["b_peaks"]) and st.is_perovskite(ev)


@pytest.mark.parametrize(
    "kind, expected",
    [("pairs", "dumbbell"), ("honeycomb", "2D"), ("hexagonal", "one species")],
)
def test_what_is_no_perovskite_is_told_by_its_columns(kind, expected):
    rng = np.random.default_rng(0)
    i, j = np.meshgrid(np.arange(10), np.arange(10))
    base = np.stack([i.ravel() * 14.0 + 7 * (j.ravel() % 2), j.ravel() * 12.1], 1)
    base += 10
    if kind == "pairs":
        xy = np.r_[base, base + [4.0, 0.0]]
        heights = np.full(len(xy), 100.0)
    elif kind == "honeycomb":
        xy = np.r_[base, base + [7.0, 4.04]]  # two triangular sublattices
        heights = np.r_[np.full(len(base), 150.0), np.full(len(base), 60.0)]
    else:
        xy, heights = base, np.full(len(base), 100.0)
    xy = xy + rng.normal(0, 0.05, xy.shape)
    image = _image(xy, heights, shape=(150, 170), width=1.5)
    one = st.one_species_evidence(image, xy)
    none = {"coordination": float("nan"), "height_correlation": float("nan")}
    assert st.other_structure(none, one) == expected


def test_only_b_columns_mostly_no_peaks_are_looked_at_for_pairs():
    ev = {"b_columns": 100, "b_peaks": 0.4}
    assert st.may_be_pairs(ev)
    assert not st.may_be_pairs(ev | {"b_peaks": 0.9})
    assert not st.may_be_pairs(ev | {"b_columns": 5})
    assert st.pairs({"pair_ratio": 0.59}) and not st.pairs({"pair_ratio": 0.92})
