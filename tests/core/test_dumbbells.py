"""Dumbbells: pairs, their two ends as sublattices, the species by height."""

import numpy as np
import pytest

from stemunmix.core import dumbbells as D
from stemunmix.synthetic import crystal


def _truth(structure, twin=None, seed=2):
    _, truth = crystal(structure, "110", 0.565, shape=384, pixel_size=0.01,
                       particle=None, twin=twin, dose=None, seed=seed,
                       column_width=0.03)  # fmt: skip
    return truth


def test_pairs_are_the_dumbbells():
    truth = _truth("zincblende")
    pairs = D.pair(truth.columns.xy)
    # every dumbbell a cation and an anion, 0.141 nm (14.1 px) apart
    assert (truth.columns.labels[pairs].sum(1) == 1).all()
    d = np.hypot(*(truth.columns.xy[pairs[:, 0]] - truth.columns.xy[pairs[:, 1]]).T)
    np.testing.assert_allclose(d, 0.565 / 4 / 0.01, rtol=1e-6)
    assert len(pairs) > 0.45 * len(truth.columns)  # the edges lose a few


@pytest.mark.parametrize("twin", [None, 30.0])
def test_the_brighter_end_is_the_heavier_species(twin):
    truth = _truth("zincblende", twin)
    rng = np.random.default_rng(0)
    # heights 10 % apart, each with 10 % noise: one dumbbell cannot tell
    heights = truth.amplitude * (1 + 0.1 * rng.standard_normal(len(truth.amplitude)))
    labels, rec = D.classes(truth.columns.xy, heights)
    assert rec["significant"] and rec["ratio"] > 1.05
    paired = np.zeros(len(labels), bool)
    paired[D.pair(truth.columns.xy).ravel()] = True
    assert np.mean(labels[paired] == truth.columns.labels[paired]) > 0.99


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_species_is_not_split_by_height(seed):
    truth = _truth("diamond", seed=seed)
    rng = np.random.default_rng(seed)
    heights = 1 + 0.1 * rng.standard_normal(len(truth.columns))
    labels, rec = D.classes(truth.columns.xy, heights)
    assert not rec["significant"]
    assert abs(rec["ratio"] - 1) < 0.03
    # still two sublattices by place: each a lattice of its own
    pairs = D.pair(truth.columns.xy)
    assert (labels[pairs].sum(1) == 1).all()


def test_no_pairs_in_too_few_columns():
    labels, rec = D.classes(np.array([[0.0, 0.0]]), np.array([1.0]))
    assert labels.tolist() == [0] and rec["pairs"] == 0 and not rec["significant"]
