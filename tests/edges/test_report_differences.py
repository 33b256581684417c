"""What each domain differs in (report/differences.py): a structural domain
differs in displacement; one that differs only in intensity is named so."""

import warnings

import numpy as np

from stemunmix.report import analyze
from stemunmix.report.differences import domain_differences
from stemunmix.report.page import _differs
from stemunmix.synthetic import perovskite


def _analysis(image, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return analyze(image, show_progressbar=False, log=lambda *a: None, **kwargs)


def test_stripe_domains_differ_in_displacement():
    image, truth = perovskite(shape=384, seed=0, domains="two_stripes")
    rows = domain_differences(_analysis(image, domains=2))
    assert len(rows) == 2
    for row in rows:
        assert row["structural"] and "displacement" in row["differs_in"]
        assert row["displacement_significance"] > 20
        assert row["height"]["significance"] < 5  # same columns, same dose
        assert "a structural domain" in _differs(row)


def test_an_intensity_step_is_not_a_structural_domain():
    image, _ = perovskite(shape=384, seed=3, domains="none")
    image.data[:, 192:] *= 1.5  # thicker on the right: brighter, same lattice
    rows = domain_differences(_analysis(image, domains=2))
    assert len(rows) == 2
    for row in rows:
        assert row["differs_in"] == ["height"] and not row["structural"]
        assert row["displacement_significance"] < 5
        assert "not a structural domain" in _differs(row)


def test_one_domain_has_nothing_to_compare():
    image, _ = perovskite(shape=256, seed=3, domains="none")
    assert domain_differences(_analysis(image, domains=1)) == []


def test_a_centrosymmetric_image_answers_no_distortion():
    """A crystal without displacement: the summary says so, and its share of
    cells beyond 3 sigma is near chance (1.1 %)."""
    from stemunmix.report.cells import answer, polarization_numbers

    image, _ = perovskite(shape=384, domains="none", displacement=0.0, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image.find_columns(show_progressbar=False)
    view = type("V", (), {"columns": image.columns, "units": "nm",
                          "scale": (image.axes_manager[0].scale, 0)})()  # fmt: skip
    pol = polarization_numbers(image.columns, view)
    assert pol["cells_with_sigma"] > 100
    assert pol["beyond_3_sigma"] < 0.04 and not pol["significant"]
    assert answer(pol, None, None).startswith("No significant distortion")


def test_a_few_outlying_cells_are_not_a_distortion():
    from stemunmix.report.cells import answer

    pol = {"unit": "pm", "cells": 700, "cells_with_sigma": 700,
           "beyond_3_sigma": 0.035, "significant": False, "isolated_cells": True,
           "median_length": 4.0, "median_sigma": 4.0}  # fmt: skip
    assert answer(pol, None, None).startswith("Only isolated cells")


def test_real_centrosymmetric_srtio3_reports_no_distortion(real_data):
    """SrTiO3 [110] is centrosymmetric: its summary must not claim a
    distortion (a few cells beyond 3 sigma are outliers)."""
    import hyperspy.api as hs

    from stemunmix.report.cells import (
        answer,
        intensity_numbers,
        polarization_numbers,
        row_numbers,
    )

    s = hs.load(real_data / "atomap_hist_STO110_ADF_full.hdf5", file_format="HSPY")
    s.set_signal_type("atomic_resolution")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s.find_columns(show_progressbar=False)
    view = type("V", (), {"units": "px", "scale": (1.0, 1.0)})()
    pol = polarization_numbers(s.columns, view)
    assert pol["cells_with_sigma"] > 600
    assert not pol["significant"] and pol["beyond_3_sigma"] < 0.055
    assert not answer(pol, None, None).startswith("Yes")
    assert pol["field_significance"] < 3  # no uniform offset either
    assert intensity_numbers(s.columns) is None  # one kind of column per site
    # Row means are tested against zero: here half of them differ, by 0.1-0.4
    # px that change smoothly over many rows (a mistilt or bending field,
    # which the error model leaves out by design: docs/measurements.md); the
    # page says so beside them.
    rows = row_numbers(s.columns, view)
    assert len(rows) > 15 and all(0 < r["sigma"][0] < 0.2 for r in rows)


def test_each_stripe_domain_differs_by_its_planted_displacement():
    """The four-stripe demo: each domain's listed displacement against the
    others is the planted one (the planted displacement of the B column at
    each of its windows, against the other domains'), within 2 sigma."""
    from scipy.spatial import cKDTree

    image, truth = perovskite(shape=512, domains="four_stripes", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = analyze(image, truth=truth, show_progressbar=False,
                         log=lambda *a: None)  # fmt: skip
    rows = domain_differences(result)
    assert len(rows) == 4
    labels = result.descriptors.per_column("cluster").argmax(1)
    b = truth.columns.labels == 1
    pm = 1000 * image.axes_manager[0].scale
    _, near = cKDTree(truth.columns.xy[b]).query(result.descriptors.columns.xy)
    planted = truth.displacement[b][near] * pm
    for row in rows:
        mine = labels == row["domain"]
        want = planted[mine].mean(0) - planted[~mine].mean(0)
        z = (np.asarray(row["displacement_pm"]) - want) / row["displacement_sigma"]
        assert (np.abs(z) < 2).all(), (row["domain"], z)
        assert np.hypot(*want) > 15  # each differs by about 20 pm


def test_a_uniform_offset_is_named_so():
    from stemunmix.report.cells import answer

    pol = {"unit": "px", "cells": 700, "cells_with_sigma": 700,
           "beyond_3_sigma": 0.99, "significant": True, "isolated_cells": False,
           "median_length": 1.3, "median_sigma": 0.2, "field_mean": [0.5, 1.2],
           "field_sigma": [0.01, 0.01], "field_significance": 150.0,
           "beyond_3_sigma_of_mean": 0.045}  # fmt: skip
    assert answer(pol, None, None).startswith("A uniform offset only")
    pol["beyond_3_sigma_of_mean"] = 0.4
    assert answer(pol, None, None).startswith("Yes")


def test_an_uncalibrated_image_is_drawn_in_pixels():
    """A scale without a length unit is no calibration: the figures' axes
    span the pixels, not the scaled range."""
    import hyperspy.api as hs

    from stemunmix.report.drawing import _View

    image = hs.signals.Signal2D(np.zeros((100, 120)))
    for ax in image.axes_manager.signal_axes:
        ax.scale = 0.01  # units left undefined
    from stemunmix import Columns

    result = type("R", (), {"image": image, "columns": Columns([[5.0, 5.0]])})()
    view = _View.of(result)
    assert view.units == "px" and view.scale == (1.0, 1.0)
    assert view.extent == [-0.5, 119.5, 99.5, -0.5]


def _numbers(share, significant=True, rows=None):
    pol = {"significant": significant, "beyond_3_sigma_of_mean": share}
    return {"polarization": pol, "regions": None, "rows": rows}


def test_one_domain_is_explained_where_the_measurements_vary():
    """One domain while the cells vary beyond the field's mean: the report
    says so and why (the choice's reason); a null, isolated cells or a
    uniform offset need no such note, nor do several domains."""
    from stemunmix.report.differences import one_domain_why

    why = "no partition into 2 to 8 clusters reaches a silhouette of 0.25"
    result = type("R", (), {"domains": 1, "choices": {"domains": {"why": why}}})()
    rows = [{"mean": [0.0, 20.0], "sigma": [1.0, 1.0]},
            {"mean": [-3.0, 0.0], "sigma": [1.0, 1.0]}]  # fmt: skip
    said = one_domain_why(result, _numbers(0.3, rows=rows))
    assert why in said and "30.0% of the cells" in said
    assert "rows of cells up to 14 sigma apart" in said
    assert one_domain_why(result, _numbers(0.03, rows=rows)) is None  # isolated
    assert one_domain_why(result, _numbers(0.3, significant=False)) is None
    result.domains = 2
    assert one_domain_why(result, _numbers(0.3, rows=rows)) is None


def test_the_real_pbtio3_srruo3_report_says_why_one_domain(real_data, tmp_path, capsys):
    """PbTiO3/SrRuO3: the A sites' Z contrast over B tells the two materials
    apart, and the summary calls PbTiO3 polar and SrRuO3 not; the learned
    windows do not split them (one domain by default), and the summary says
    why."""
    import json

    from stemunmix.cli import main

    path = real_data / "temul_PTO-SRO_HAADF_Hadjimichael2020.hspy"
    code = main(["analyze", str(path), "--json", "--quiet", "--no-scree",
                 "--out", str(tmp_path / "pto")])  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["domains"] == 1  # were they told apart, nothing to explain
    said = summary["one_domain_why"]
    assert "silhouette" in said and "rows of cells up to" in said
    assert summary["answer"].startswith("Yes")
    low, high = summary["regions"]  # SrRuO3 (A/B about 1), PbTiO3 (about 3)
    assert summary["contrast_classes"]["classes"] == 2
    assert "Z contrast over B class 0" in low["region"] and not low["polar"]
    assert high["polar"] and high["length"] > 10 and high["significance"] > 10
    assert low["cells"] > 100 and high["cells"] > 100


def test_two_materials_are_told_apart_by_their_z_contrast_over_b():
    """A heavy-A layer above a light-A one, under a thickness gradient down
    the frame: the A intensity alone follows the gradient, the A/B ratio
    splits the two materials."""
    from stemunmix import Columns
    from stemunmix.report.cells import contrast_numbers

    rng = np.random.default_rng(0)
    i, j = np.meshgrid(np.arange(20), np.arange(20), indexing="ij")
    ij = np.stack([i.ravel(), j.ravel()], 1)
    thickness = 1 + 0.1 * ij[:, 1]  # the frame gets thicker downwards
    heavy = ij[:, 1] < 10  # PbTiO3-like rows on top: A / B about 3
    a = thickness * np.where(heavy, 3.0, 1.1) * rng.normal(1, 0.03, len(ij))
    b = thickness * rng.normal(1, 0.03, len(ij))
    xy = np.concatenate([ij * 10.0, ij * 10.0 + 5])
    cols = Columns(
        xy, np.repeat([0, 1], len(ij)), ["A", "B"], sigma=np.full((2 * len(ij), 2), 0.1),
        ij=np.concatenate([ij, ij]), quantities={"intensity": np.concatenate([a, b])},
    )  # fmt: skip
    found = contrast_numbers(cols)
    assert found["classes"] == 2
    np.testing.assert_array_equal(found["per_column"], np.where(heavy, 1, 0))
    np.testing.assert_allclose(found["mean_ratios"], [1.1, 3.0], rtol=0.05)
