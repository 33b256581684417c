import warnings

import hyperspy.api as hs
import numpy as np
import pytest

from stemunmix import Columns
from stemunmix.core.peaks import find_peaks, match
from stemunmix.core.polarization import polarization
from stemunmix.core.refine import refine_gaussian
from stemunmix.synthetic import perovskite


def test_find_peaks_returns_xy_centroids():
    yy, xx = np.mgrid[0:60, 0:80]
    prob = np.zeros((60, 80))
    for x, y in [(10.3, 20.6), (50.0, 40.25)]:
        prob += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 4)
    xy = find_peaks(prob, 5, 0.5)
    # [x, y] order, not HyperSpy's [row, col]; centroids start the Gaussian fit,
    # a tenth of a pixel is their job.
    np.testing.assert_allclose(xy, [[10.3, 20.6], [50.0, 40.25]], atol=0.1)


def test_batched_refinement_reaches_noise_free_truth():
    image, truth = perovskite(shape=256, dose=None, seed=3)
    start = truth.columns.xy + np.random.default_rng(0).normal(
        0, 0.5, (len(truth.columns), 2)
    )
    fit = refine_gaussian(image.data, start, sigma=2.0)
    err = np.hypot(*(fit["xy"] - truth.columns.xy).T)
    inner = (truth.columns.xy.min(1) > 5) & (truth.columns.xy.max(1) < 250)
    assert np.sqrt(np.mean(err[inner] ** 2)) < 0.02


def test_refinement_accounts_for_neighbours():
    # A weak B column between two bright A columns: a lone-Gaussian fit would be
    # pulled towards the brighter tail; the joint fit is not.
    yy, xx = np.mgrid[0:40, 0:60].astype(float)
    cols = np.array([[20.0, 20.0], [29.0, 20.3], [38.5, 20.0]])
    height = np.array([1.0, 0.2, 0.6])
    image = sum(h * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.2**2))
                for (x, y), h in zip(cols, height, strict=True))  # fmt: skip
    fit = refine_gaussian(image, cols + 0.4, sigma=2.0, radius=3)
    np.testing.assert_allclose(fit["xy"], cols, atol=0.01)


def _maps_at(xy, labels, shape, width=1.5):
    """Probability maps (A, B, background) peaked at the given columns."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    prob = np.zeros((3, *shape))
    for (x, y), k in zip(xy, labels, strict=True):
        sl = (
            slice(max(0, int(y) - 6), int(y) + 7),
            slice(max(0, int(x) - 6), int(x) + 7),
        )
        prob[k][sl] += np.exp(-((xx[sl] - x) ** 2 + (yy[sl] - y) ** 2) / (2 * width**2))
    prob[2] = 1 - prob[:2].sum(0)
    return prob


@pytest.fixture(scope="module")
def wide_columns():
    # Columns as wide as on real images (sigma 0.25 of the A-B distance of 7 px,
    # where the first guess of the fit is 0.15), with maps at the true columns.
    image, truth = perovskite(shape=(600, 640), pixel_size=0.04, column_width=0.07,
                              dose=200, seed=4)  # fmt: skip
    prob = _maps_at(truth.columns.xy, truth.columns.labels, image.data.shape)
    return image.data, truth, prob, 0.396 / 0.04 / np.sqrt(2)


def test_fit_measures_the_column_width_first(wide_columns):
    # Started at 0.15 of the A-B distance (1.05 px) on 4 px patches, weak B
    # columns between wide A ones collapse (median error 0.77 px before the
    # width was measured); the fit starts at the measured width (true 1.75 px).
    from stemunmix.core.find import column_sizes, find_columns_frame

    data, truth, prob, d = wide_columns
    xy, labels, _ = find_columns_frame(prob, [0, 1], d / 2, 0.5, data, "gaussian", d)
    sizes = column_sizes(data, truth.columns.xy, d)
    assert sizes["sigma"] == pytest.approx(1.75, rel=0.15)
    assert sizes["radius"] == round(d / 2)
    t = truth.columns
    near = np.argmin(((xy[:, None] - t.xy[None]) ** 2).sum(-1), 1)
    assert np.array_equal(labels, t.labels[near])
    err = np.hypot(*(xy - t.xy[near]).T)
    assert np.median(err[labels == 0]) < 0.05
    assert np.median(err[labels == 1]) < 0.15


@pytest.mark.parametrize("lazy", [False, True])
def test_block_by_block_search_equals_the_whole_frame(wide_columns, lazy):
    import dask.array as da

    from stemunmix.core.find import (
        find_columns,
        find_columns_frame,
        frame_sizes,
        middle,
        region_halo,
    )

    data, _, prob, d = wide_columns
    rows, cols = middle(prob.shape)
    sizes = frame_sizes(prob[:, rows, cols], data[rows, cols], [0, 1], d / 2, 0.5, d)
    assert 2 * region_halo(d / 2, sizes) + 200 < 600  # regions smaller than the frame
    whole = find_columns_frame(prob, [0, 1], d / 2, 0.5, data, "gaussian", d)
    if lazy:
        prob, data = da.from_array(prob, chunks=(3, 200, 200)), da.from_array(data)
    blocks = find_columns(prob, data, 0, [0, 1], 0.5, "gaussian", {(): (d / 2, d)}, 200)
    np.testing.assert_array_equal(blocks[()][1], whole[1])
    np.testing.assert_allclose(blocks[()][0], whole[0], atol=1e-5)


def test_polarization_recovers_planted_displacement():
    _, truth = perovskite(shape=256, domains="none", dose=None, jitter=0, seed=2)
    c = truth.columns
    vec, count = polarization(c.select("A").xy, c.select("B").xy)
    inner = count == 4
    np.testing.assert_allclose(
        np.median(vec[inner], 0), np.median(truth.displacement[c.labels == 1], 0),
        atol=0.02,
    )  # fmt: skip


@pytest.fixture(scope="module")
def found():
    image, truth = perovskite(shape=384, dose=100, seed=123, rotation=21)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        columns = image.find_columns()
    return image, truth, columns


def test_find_columns_recall_precision_and_accuracy(found):
    image, truth, columns = found
    assert columns.class_names == ["A", "B", "background"]
    assert image.columns == columns
    inner = lambda xy: (xy.min(1) > 6) & (xy.max(1) < 377)  # noqa: E731
    for k in (0, 1):
        ref = truth.columns.select(k).xy
        ours = columns.select(k).xy
        ri, oi = match(ref[inner(ref)], ours[inner(ours)], 2.0)
        assert len(ri) / inner(ref).sum() >= 0.995
        assert len(oi) / inner(ours).sum() >= 0.99
        err = np.hypot(*(ref[inner(ref)][ri] - ours[inner(ours)][oi]).T)
        assert np.sqrt(np.mean(err**2)) < (0.08 if k == 0 else 0.2)
    assert ((columns.scores > 0) & (columns.scores <= 1)).all()
    assert np.median(columns.scores) > 0.95


def test_columns_survive_save_load(found, tmp_path):
    image, _, columns = found
    image.save(tmp_path / "img.zspy")
    assert hs.load(tmp_path / "img.zspy").columns == columns


def test_columns_atomap_round_trip_is_exact(found):
    image, _, columns = found
    subs = columns.to_sublattices(image)
    assert [s.name for s in subs] == ["A", "B"]
    assert subs[0].pixel_size == pytest.approx(image.axes_manager[0].scale)
    back = Columns.from_atomap(subs)
    order = np.lexsort((columns.x, columns.y))
    back_order = np.lexsort((back.x, back.y))
    np.testing.assert_array_equal(back.xy[back_order], columns.xy[order])
    np.testing.assert_array_equal(back.labels[back_order], columns.labels[order])
    lattice = columns.to_atom_lattice(image)
    again = Columns.from_atomap(lattice)
    np.testing.assert_array_equal(np.sort(again.x), np.sort(columns.x))


def test_atomap_polarization_runs_on_our_columns(found):
    image, _, columns = found
    sub_a, sub_b = columns.to_sublattices(image)
    sub_a.construct_zone_axes()
    za0, za1 = sub_a.zones_axis_average_distances[0:2]
    signal = sub_a.get_polarization_from_second_sublattice(za0, za1, sub_b)
    vectors = np.array(signal.metadata.vector_list)  # x, y, dx, dy
    assert len(vectors) > 100
    # Atomap's vectors sit at the centre of four A and point from B to it: the
    # negative of ours, column by column.
    cols_b, ours = columns.polarization()
    ri, oi = match(vectors[:, :2], cols_b.xy - ours, 0.01)
    assert len(ri) > 0.9 * len(vectors)
    np.testing.assert_allclose(vectors[ri, 2:], -ours[oi], atol=1e-4)


def test_markers_are_calibrated(found):
    image, _, columns = found
    ax = image.axes_manager.signal_axes
    markers = columns.as_markers(scale=(ax[0].scale, ax[1].scale))
    np.testing.assert_allclose(markers.kwargs["offsets"], columns.xy * ax[0].scale)


def test_no_columns_warns_and_returns_empty():
    image, _ = perovskite(shape=128, seed=1)
    prob = image.segment()
    prob.data[:2] = 0.0  # no column class anywhere
    prob.data[2] = 1.0
    with pytest.warns(UserWarning, match="no columns found"):
        columns = prob.find_columns(refine="centroid", min_distance=5)
    assert len(columns) == 0


def test_find_columns_bad_input(found):
    image, _, _ = found
    prob = image.segment()
    with pytest.raises(ValueError, match="refine"):
        prob.find_columns(refine="magic")
    with pytest.raises(ValueError, match="shape"):
        prob.find_columns(image=np.zeros((10, 10)))
    with pytest.raises(ValueError, match="unknown class"):
        prob.find_columns().select("C")
    assert prob.metadata.Signal.stemunmix.find_columns.refine == "gaussian"
    del prob.metadata.Signal.stemunmix.image  # maps without their raw image
    with pytest.warns(UserWarning, match="Pass image="):
        prob.find_columns()
    assert prob.metadata.Signal.stemunmix.find_columns.refine == "centroid"


def test_nan_positions_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        Columns([[1.0, np.nan]])


def test_atomap_refuses_columns_outside_the_image_or_from_several_frames(found):
    image, _, columns = found
    moved = Columns(columns.xy + [0, 300], columns.labels, columns.class_names)
    with pytest.raises(ValueError, match=r"lie outside the 384 x 384 image"):
        moved.to_sublattices(image)
    stacked = Columns(columns.xy, columns.labels, columns.class_names,
                      nav_index=np.arange(len(columns))[:, None] % 2)  # fmt: skip
    with pytest.raises(ValueError, match=r"columns.frame\(index\)"):
        stacked.to_atom_lattice(image)
    one = stacked.frame(1)
    assert one.nav_index is None and len(one) == len(columns) // 2
    assert len(one.to_sublattices(image)[0].atom_list) == len(one.select("A"))


def test_stack_frames_with_different_numbers_of_columns(tmp_path):
    first, _ = perovskite(shape=256, seed=41, rotation=5)
    second, _ = perovskite(shape=256, seed=42, rotation=30, pixel_size=0.025)
    stack = hs.signals.Signal2D(np.stack([first.data, second.data]))
    stack.set_signal_type("atomic_resolution")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        columns = stack.find_columns()
        singles = [frame.find_columns() for frame in (first, second)]
        windows = stack.local_descriptors(16, columns, classes="B")
    counts = [len(columns.frame(i)) for i in range(2)]
    assert counts == [len(s) for s in singles] and counts[0] != counts[1]
    for i, single in enumerate(singles):
        np.testing.assert_array_equal(columns.frame(i).labels, single.labels)
        np.testing.assert_allclose(columns.frame(i).xy, single.xy, atol=1e-6)
    n_b = [len(s.select("B")) for s in singles]
    # Windows crossing the edge are dropped; each frame keeps its own.
    kept = windows.columns.nav_index[:, 0]
    assert 0 < (kept == 0).sum() <= n_b[0] and 0 < (kept == 1).sum() <= n_b[1]
    stack.columns = columns
    stack.save(tmp_path / "stack.zspy")
    assert hs.load(tmp_path / "stack.zspy").columns == columns


def test_checkerboard_labels_follow_their_patch():
    from stemunmix.core.lattice import checkerboard

    # A (0) on the even sites of a square lattice of A-B distance 10, B (1) on
    # the odd ones; a third class (2) and a lone column keep their labels. The
    # jitter (6 % of the A-B distance) squeezes a few like pairs under the bond
    # length, which a walk over all bonds would propagate.
    yy, xx = np.mgrid[0:40, 0:40]
    xy = np.c_[xx.ravel(), yy.ravel()] * 10.0
    xy += np.random.default_rng(0).normal(0, 0.6, xy.shape)
    from scipy.spatial import cKDTree

    bonds = cKDTree(xy).query_pairs(12.0, output_type="ndarray")
    like = (xx + yy).ravel() % 2
    assert np.sum(like[bonds[:, 0]] == like[bonds[:, 1]]) > 0  # the trap is set
    truth = (xx + yy).ravel() % 2
    labels = truth.copy()
    flip = np.random.default_rng(1).random(len(labels)) < 0.3  # 30 % swapped
    labels[flip] = 1 - labels[flip]
    labels[5] = 2
    xy = np.vstack([xy, [[500.0, 500.0]]])
    labels = np.append(labels, 1)
    scores = np.ones(len(labels))
    out = checkerboard(xy, labels, scores, 10.0, (0, 1))
    assert out[5] == 2 and out[-1] == 1
    keep = np.ones(len(truth), bool)
    keep[5] = False
    assert np.array_equal(out[:-1][keep], truth[keep])
    # The naming follows the (score-weighted) majority: swapped if most are.
    out = checkerboard(xy[:-1], 1 - truth, scores[:-1], 10.0, (0, 1))
    assert np.array_equal(out, 1 - truth)


def test_find_columns_checkerboard_repairs_swapped_classes(found):
    image, truth, _ = found
    prob = image.segment()
    left = slice(None, 150)  # about 40 % of the columns: A and B maps swapped
    prob.data[0, :, left], prob.data[1, :, left] = (
        prob.data[1, :, left].copy(), prob.data[0, :, left].copy())  # fmt: skip

    def right_class(columns):
        ref = truth.columns
        ri, oi = match(ref.xy, columns.xy, 2.0)
        return np.mean(ref.labels[ri] == columns.labels[oi]), len(ri) / len(ref.xy)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = right_class(prob.find_columns(image=image))
        fixed = right_class(prob.find_columns(image=image, lattice="checkerboard"))
    assert plain[0] < 0.75  # the swap shows without the lattice
    assert fixed[0] >= 0.995 and fixed[1] >= 0.98
    assert prob.metadata.Signal.stemunmix.find_columns.lattice == "checkerboard"
    with pytest.raises(ValueError, match="lattice"):
        prob.find_columns(image=image, lattice="hexagonal")
    # The image's own find_columns takes the same parameter, checked before it
    # segments.
    with pytest.raises(ValueError, match="lattice"):
        image.find_columns(lattice="hexagonal")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = image.find_columns(lattice="checkerboard")
    assert image.metadata.Signal.stemunmix.find_columns.lattice == "checkerboard"
    assert right_class(direct)[0] >= 0.995


def test_checkerboard_needs_two_cation_classes():
    from stemunmix.signals.column_probabilities import _cation_pair

    names = ["background", "A", "B", "O"]
    assert _cation_pair(names, [1, 2, 3], "checkerboard") == (1, 2)
    assert _cation_pair(["background", "X", "Y"], [1, 2], "checkerboard") == (1, 2)
    three = ["background", "X", "Y", "Z"]
    assert _cation_pair(three, [1, 2, 3]) is None
    with pytest.raises(ValueError, match="lattice=None"):
        _cation_pair(three, [1, 2, 3], "checkerboard")


def test_regions_are_masks_or_hyperspy_rois():
    """A region (polarization_region) or reference (polarization_map,
    strain_map) is a lattice mask, an image-grid mask, or a HyperSpy ROI
    in the image's units; all three name the same cells."""
    import warnings

    import hyperspy.api as hs

    from stemunmix.synthetic import perovskite

    image, _ = perovskite(shape=256, domains="two_stripes", seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cols = image.find_columns(show_progressbar=False)
    h, w = image.data.shape
    ax = image.axes_manager.signal_axes[0]
    pixels = np.zeros((h, w), bool)
    pixels[:, : w // 2] = True
    roi = hs.roi.RectangularROI(left=ax.offset, top=ax.offset, right=ax.offset +
                                ax.scale * (w // 2), bottom=ax.offset + ax.scale * h)  # fmt: skip
    from stemunmix.core.measure import grid_shape, site_grid

    b = cols.select("B")
    where = site_grid(b.ij, b.xy, grid_shape(cols.ij))
    lattice = np.isfinite(where[..., 0]) & (np.nan_to_num(where[..., 0]) < w // 2 - 0.5)
    r1 = cols.polarization_region(lattice)
    r2 = cols.polarization_region(pixels)
    r3 = cols.polarization_region(roi, image=image)
    assert r1["cells"] == r2["cells"] == r3["cells"] > 50
    np.testing.assert_allclose(r2["mean"], r1["mean"])
    np.testing.assert_allclose(r3["mean"], r1["mean"])
    a = cols.polarization_map(reference=roi, image=image).data
    b2 = cols.polarization_map(reference=lattice, image=image).data
    np.testing.assert_allclose(a[:2], b2[:2], equal_nan=True)
    assert np.isfinite(cols.strain_map(reference=roi, image=image).data[0]).any()
    with pytest.raises(ValueError, match="HyperSpy ROI"):
        cols.polarization_region(np.zeros((3, 3), int))
