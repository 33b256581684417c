"""The report says where the lattice is and counts sites only there."""

import warnings

import numpy as np
from scipy.spatial import cKDTree

from stemunmix.columns import Columns
from stemunmix.report import analyze
from stemunmix.report.cells import quality_numbers
from stemunmix.report.figures import _figures
from stemunmix.synthetic import from_columns, perovskite


def test_a_crystal_in_a_corner_is_reported_with_what_was_left_out(tmp_path):
    _, truth = perovskite(shape=168, dose=None, seed=6, domains="none")
    c = truth.columns
    inside = ((c.xy >= 0) & (c.xy < 128)).all(1)
    cols = Columns(c.xy[inside], c.labels[inside], c.class_names)
    image, _ = from_columns(cols, shape=384, dose=100, seed=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = analyze(image, show_progressbar=False, log=lambda *a: None)
        kept = []
        _figures(result, tmp_path, keep=kept)
    assert "presence.png" in [n for n, _ in kept]
    q = quality_numbers(result, result.columns, image.data.shape)
    assert 0.05 < q["lattice_presence"]["share_of_frame"] < 0.2
    # the A sites counted are those on the mask (0.75 here; counted over the
    # whole frame, about the crystal's 11 % share of it)
    assert q["sites_filled"] > 0.6
    dd, _ = cKDTree(cols.xy).query(result.columns.xy)
    assert np.sum(dd > 0.5 * 0.396 / 0.02) <= 1
