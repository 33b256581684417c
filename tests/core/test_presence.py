"""Where the crystal is: the lattice-presence map (core/presence.py)."""

import numpy as np
from scipy import ndimage

from stemunmix.core import presence as P

SPACING = 16.0


def _lattice(size, rotation=10.0, seed=0):
    """A square lattice of Gaussian columns (spacing 16 px) with shot noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(float)
    t = np.radians(rotation)
    u = (xx * np.cos(t) + yy * np.sin(t)) / SPACING
    v = (-xx * np.sin(t) + yy * np.cos(t)) / SPACING
    du, dv = (u - np.round(u)) * SPACING, (v - np.round(v)) * SPACING
    clean = 10 + 200 * np.exp(-(du**2 + dv**2) / (2 * 2.0**2))
    return rng.poisson(clean).astype(float)


def _mask(frame):
    masks, factor = P.frame_presence(frame, 0, {(): SPACING})
    return masks, factor


def test_a_crystal_in_a_corner_is_found_and_nothing_else():
    rng = np.random.default_rng(1)
    frame = rng.poisson(10.0, (384, 384)).astype(float)
    frame[:128, :128] = _lattice(128)
    mask, factor = _mask(frame)
    yy, xx = np.mgrid[:384, :384]
    on = P.on_mask(np.column_stack([xx.ravel(), yy.ravel()]), mask, factor)
    on = on.reshape(384, 384)
    crystal = np.zeros((384, 384), bool)
    crystal[:128, :128] = True
    assert on[crystal].mean() > 0.99
    # beyond a spacing of the crystal, nothing
    far = ~ndimage.binary_dilation(crystal, iterations=int(SPACING))
    assert on[far].mean() < 0.002


def test_a_frame_without_a_lattice_has_no_mask():
    rng = np.random.default_rng(2)
    noise = rng.poisson(50.0, (256, 256)).astype(float)
    texture = ndimage.gaussian_filter(rng.standard_normal((256, 256)), 1.5)
    for frame in (noise, 50 + 10 * texture / texture.std(), np.zeros((256, 256))):
        mask, _ = _mask(frame)
        assert not mask.any()


def test_a_lattice_edge_to_edge_is_kept_whole():
    mask, _ = _mask(_lattice(256, rotation=33.0))
    assert mask.all()


def test_lazy_frames_give_the_eager_mask():
    import dask.array as da

    frame = _lattice(256)
    frame[:, 160:] = 10.0
    eager, f1 = P.frame_presence(frame[None], 1, {(0,): SPACING})
    lazy, f2 = P.frame_presence(da.from_array(frame[None], chunks=(1, 64, 64)), 1,
                                {(0,): SPACING})  # fmt: skip
    assert f1 == f2
    np.testing.assert_array_equal(eager, lazy)
    assert 0.5 < eager.mean() < 0.75


def test_on_mask_reads_bins_and_refuses_nan():
    mask = np.zeros((4, 4), bool)
    mask[1, 2] = True
    xy = np.array([[8.5, 4.0], [2.0, 2.0], [np.nan, 4.0], [100.0, 5.0]])
    np.testing.assert_array_equal(P.on_mask(xy, mask, 4), [True, False, False, False])


def test_edge_columns_off_the_lattice_are_dropped():
    vectors = np.array([[16.0, 0.0], [0.0, 16.0]])
    ij = np.array([(i, j) for i in range(8) for j in range(8)], float)
    lattice = ij @ vectors + 8
    rng = np.random.default_rng(3)
    strays = rng.uniform(128, 150, (30, 2))
    strays = strays[
        (np.abs((strays - 8) / 16 - np.round((strays - 8) / 16)) > 0.25).any(1)
    ]
    xy = np.vstack([lattice, strays])
    labels = np.zeros(len(xy), int)
    band = (xy > 100).any(1)  # the outer columns of the lattice and the strays
    drop, named = P.off_lattice_at_edge(xy, labels, band, vectors)
    assert not drop[: len(lattice)].any()
    assert drop[len(lattice) :].all()
    np.testing.assert_array_equal(named, labels)
    # NaN vectors (no lattice indexed): nothing is judged
    drop, _ = P.off_lattice_at_edge(xy, labels, band, np.full((2, 2), np.nan))
    assert not drop.any()


def test_an_edge_column_on_another_class_lattice_is_renamed_not_dropped():
    """A perovskite's outermost B column named A (its A neighbours beyond
    the edge missing) sits on the B lattice: it is named B and kept; a
    stray on neither lattice is dropped."""
    vectors = np.array([[16.0, 0.0], [0.0, 16.0]])
    ij = np.array([(i, j) for i in range(8) for j in range(8)], float)
    a = ij @ vectors + 8
    b = a + 8.0  # the cell's centres
    stray = np.array([[140.0, 60.5]])  # a quarter cell off both
    xy = np.vstack([a, b, stray])
    labels = np.r_[np.zeros(len(a), int), np.ones(len(b), int), 0]
    edge_b = len(a) + int(np.flatnonzero((b[:, 0] > 120) & (b[:, 1] > 60))[0])
    labels[edge_b] = 0  # named A by mistake
    band = (xy > 110).any(1)
    height = np.r_[np.full(len(a), 1.0), np.full(len(b), 0.3), 0.3]
    drop, named = P.off_lattice_at_edge(xy, labels, band, vectors, height)
    assert named[edge_b] == 1 and not drop[edge_b]
    assert drop[-1] and drop.sum() == 1
    # one fainter than half its new class's inner columns: a stray, dropped
    height[edge_b] = 0.1
    drop, named = P.off_lattice_at_edge(xy, labels, band, vectors, height)
    assert drop[edge_b] and named[edge_b] == 0
    assert (
        named[np.arange(len(xy)) != edge_b] == labels[np.arange(len(xy)) != edge_b]
    ).all()


def test_erosion_and_dilation_by_distance_equal_scipys():
    """The mask's erosion and dilation by a disc, by the distance transform
    (in a time that does not grow with the disc), give scipy's pixels."""
    from scipy import ndimage

    from stemunmix.core.presence import _dilated, _disc, _eroded

    rng = np.random.default_rng(1)
    masks = [
        ndimage.gaussian_filter(rng.random((120, 140)), 5) > t for t in (0.45, 0.5)
    ]
    masks += [np.ones((40, 40), bool), np.zeros((40, 40), bool)]
    for m in masks:
        for r in (1, 2.6, 7, 15):
            erosion = ndimage.binary_erosion(m, _disc(r), border_value=1)
            np.testing.assert_array_equal(_eroded(m, r), erosion)
            np.testing.assert_array_equal(
                _dilated(m, r), ndimage.binary_dilation(m, _disc(r))
            )


def test_the_mask_on_a_subsample_grid_equals_it_per_pixel():
    """on_grid (rows and columns indexed once) reads the same bins as
    on_mask of every pixel, ragged edges and all."""
    from stemunmix.core import presence

    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = rng.random((rng.integers(5, 60), rng.integers(5, 60))) > 0.5
        factor, step = int(rng.integers(1, 9)), int(rng.integers(1, 4))
        h = mask.shape[0] * factor + int(rng.integers(0, 7))
        w = mask.shape[1] * factor + int(rng.integers(0, 7))
        rows, cols = np.arange(0, h, step), np.arange(0, w, step)
        yy, xx = np.meshgrid(rows, cols, indexing="ij")
        per_pixel = presence.on_mask(
            np.column_stack([xx.ravel(), yy.ravel()]), mask, factor
        ).reshape(yy.shape)
        np.testing.assert_array_equal(
            presence.on_grid(mask, factor, rows, cols), per_pixel
        )


def test_edge_columns_as_faint_as_the_support_strays_are_left_out():
    rng = np.random.default_rng(0)
    height = np.r_[rng.uniform(0.8, 1.2, 20), rng.uniform(0.01, 0.1, 12)]
    labels = np.zeros(32, int)
    in_band = np.r_[np.zeros(15, bool), np.ones(17, bool)]  # 5 crystal, 12 strays
    strays = np.r_[np.zeros(20, bool), np.ones(10, bool), False, False]
    faint = P.as_faint_as_strays(height, labels, in_band, strays)
    assert not faint[:20].any()  # the crystal, inside and on the edge
    assert not faint[20:30].any()  # the strays themselves: already judged
    reach = np.quantile(height[20:30], 0.9)
    assert faint[30:].tolist() == (height[30:] <= reach).tolist()
    assert faint[30:].any()
    # too few strays to sample the support (vacuum): nothing judged
    few = strays & (np.arange(32) < 23)
    assert not P.as_faint_as_strays(height, labels, in_band, few).any()
    # a faint class as bright as the strays, not fainter than its own
    # inner columns, keeps its edge columns
    labels[[5, 6, 7, 18, 19]] = 1
    height[[5, 6, 7, 18, 19]] = 0.05
    faint = P.as_faint_as_strays(height, labels, in_band, strays)
    assert not faint[[18, 19]].any()


def test_padding_is_a_flat_run_of_the_minimum_not_shot_noise():
    from stemunmix.core.segmentation import padding
    from stemunmix.nn.inference import _padding_of

    rng = np.random.default_rng(0)
    sparse = rng.poisson(0.5, (256, 256)).astype(np.float32)  # 61 % zeros
    assert not padding(sparse).any()
    padded = rng.poisson(20.0, (256, 256)).astype(np.float32)
    padded[:40, 200:] = 0  # a corner a rotation padded
    found = padding(padded)
    assert found[:40, 200:].all() and found.sum() == 40 * 56
    value, fill, real = _padding_of(padded, dark=False)
    assert value == 0 and np.array_equal(real, ~found)
    assert 12 < fill < 20  # the rest's background (10th percentile of 20)
    _, dark_fill, _ = _padding_of(padded, dark=True)
    assert 20 < dark_fill < 28  # dark columns: the bright background
    assert _padding_of(sparse, dark=False)[0] is None
