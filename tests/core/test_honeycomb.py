"""2D honeycombs: the two sublattices by where their neighbours point, the
heavier species by height."""

import numpy as np
import pytest

from stemunmix.core import honeycomb as H
from stemunmix.synthetic import crystal


def _truth(ratio, rotation=13.0):
    _, truth = crystal("mos2", "0001", 0.316, shape=320, pixel_size=0.0127,
                       particle=None, ratio=ratio, rotation=rotation, dose=None,
                       seed=1)  # fmt: skip
    return truth


@pytest.mark.parametrize("rotation", [0.0, 13.0, 47.0])
def test_the_sublattices_are_told_apart_by_place(rotation):
    truth = _truth(1.0, rotation)
    sub, _ = H.sublattices(truth.columns.xy)
    inner = sub >= 0
    assert inner.mean() > 0.9
    same = np.mean(sub[inner] == truth.columns.labels[inner])
    assert max(same, 1 - same) == 1.0


def test_the_brighter_sublattice_is_the_metal():
    truth = _truth(0.4)
    rng = np.random.default_rng(0)
    heights = truth.amplitude * (1 + 0.1 * rng.standard_normal(len(truth.amplitude)))
    labels, rec = H.classes(truth.columns.xy, heights)
    assert rec["significant"] and 2.2 < rec["ratio"] < 2.8
    # label 1 the brighter: Mo (truth label 0, "metal")
    assert np.mean(labels == (truth.columns.labels == 0)) == 1.0


def test_one_height_is_not_split_by_height():
    truth = _truth(1.0)
    rng = np.random.default_rng(1)
    labels, rec = H.classes(
        truth.columns.xy, 1 + 0.1 * rng.standard_normal(len(truth.columns))
    )
    assert not rec["significant"] and abs(rec["ratio"] - 1) < 0.03
