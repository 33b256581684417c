import numpy as np
import pytest
from scipy.optimize import least_squares

from stemunmix.synthetic import perovskite


def _fit_gaussian(image, xy, target, sigma=2.0, half=9):
    """[x, y] centre of column ``target`` from a joint least-squares fit.

    On a patch of +-``half`` pixels, every column whose tail reaches the patch
    is a Gaussian of width ``sigma`` with a free height; those centred inside the
    patch also have a free centre (started 0.3 px off the truth), those outside
    stay put. A free plane takes the background. So neighbouring tails do not
    bias the target.
    """
    xi, yi = np.round(xy[target]).astype(int)
    patch = image[yi - half : yi + half + 1, xi - half : xi + half + 1].astype(float)
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    xx, yy = (xx + xi).ravel(), (yy + yi).ravel()
    dist = np.abs(xy - [xi, yi]).max(axis=1)
    near = np.flatnonzero(dist < half + 4 * sigma)
    near = np.concatenate([[target], near[near != target]])
    free = dist[near] <= half
    near = np.concatenate([near[free], near[~free]])  # target stays first
    nf, k = int(free.sum()), len(near)
    pos0 = xy[near].copy()

    def model(p):
        pos = pos0.copy()
        pos[:nf] = p[k : k + 2 * nf].reshape(nf, 2)
        dx, dy = xx[None] - pos[:, :1], yy[None] - pos[:, 1:]
        g = np.exp(-(dx**2 + dy**2) / (2 * sigma**2))  # (k, npix)
        return g, dx, dy

    def residual(p):
        g, _, _ = model(p)
        b0, bx, by = p[-3:]
        return p[:k] @ g + b0 + bx * (xx - xi) + by * (yy - yi) - patch.ravel()

    def jacobian(p):
        g, dx, dy = model(p)
        amp = p[:k, None]
        dpos = np.empty((2 * nf, len(xx)))
        dpos[0::2] = (amp * g * dx / sigma**2)[:nf]
        dpos[1::2] = (amp * g * dy / sigma**2)[:nf]
        plane = np.stack([np.ones_like(xx), xx - xi, yy - yi]).astype(float)
        return np.vstack([g, dpos, plane]).T

    start = pos0[:nf] + 0.3
    ri = np.clip(np.round(pos0).astype(int), 0, np.array(image.shape[::-1]) - 1)
    heights = image[ri[:, 1], ri[:, 0]] - patch.min()
    p0 = np.concatenate([heights, start.ravel(), [patch.min(), 0.0, 0.0]])
    p = least_squares(residual, p0, jac=jacobian).x
    return p[k : k + 2]


def _interior(columns, shape, margin):
    h, w = shape
    return (
        (columns.x > margin)
        & (columns.x < w - 1 - margin)
        & (columns.y > margin)
        & (columns.y < h - 1 - margin)
    )


@pytest.mark.parametrize("projection", ["001", "110"])
def test_noiseless_columns_fit_within_005_px_of_truth(projection):
    image, truth = perovskite(shape=256, projection=projection, dose=None, seed=4)
    cols = truth.columns
    inner = np.flatnonzero(_interior(cols, (256, 256), 20))
    pick = np.random.default_rng(0).choice(inner, 100, replace=False)
    fitted = np.array([_fit_gaussian(image.data, cols.xy, i) for i in pick])
    err = np.hypot(*(fitted - cols.xy[pick]).T)
    assert err.max() < 0.05, err.max()
    # Both sublattices are among the checked columns.
    assert set(cols.labels[pick]) == {0, 1}


def test_truth_follows_scan_drift():
    # The same specimen with and without drift: the truth moves with the drift.
    kw = dict(shape=200, dose=None, jitter=0.0, seed=2, domains="none")
    _, still = perovskite(drift=(0.0, 0.0), **kw)
    _, drifted = perovskite(drift=(4.0, 0.0), **kw)
    from scipy.spatial import cKDTree

    moved = drifted.columns.xy
    undone = moved - np.stack([4.0 * moved[:, 1] / 199, 0 * moved[:, 1]], 1)
    inner = _interior(drifted.columns, (200, 200), 6)
    dist, _ = cKDTree(still.columns.xy).query(undone[inner])
    assert inner.sum() > 150
    np.testing.assert_allclose(dist, 0, atol=1e-9)


@pytest.mark.parametrize(
    "domains, n",
    [("none", 1), ("two_stripes", 2), ("four_stripes", 4), ("quadrants", 4)],
)
def test_planted_displacements_and_domains(domains, n):
    pixel_size, displacement, rotation = 0.02, 0.03, 7.0
    directions = [10.0, 100.0, 190.0, 280.0][:n]
    image, truth = perovskite(
        shape=320, domains=domains, displacement=displacement, rotation=rotation,
        directions=directions, wall_width=0.0, dose=None, jitter=0.0,
        drift=(0.0, 0.0), pixel_size=pixel_size, seed=5,
    )  # fmt: skip
    b = truth.columns.labels == 1
    assert set(np.unique(truth.domain)) == set(range(n))
    assert set(np.unique(truth.domain_map)) == set(range(n))
    # Each column's domain is the domain of the pixel it sits on.
    xi = np.round(truth.columns.x).astype(int)
    yi = np.round(truth.columns.y).astype(int)
    on_map = truth.domain_map[yi, xi] == truth.domain
    assert on_map.mean() > 0.97  # only columns right on a wall may differ
    # Sharp walls: every B moves by the asked length, in its domain's direction.
    d = truth.displacement[b]
    np.testing.assert_allclose(np.hypot(*d.T), displacement / pixel_size, rtol=1e-9)
    angle = np.rad2deg(np.arctan2(-d[:, 1], d[:, 0]))  # displayed CCW
    want = np.array(directions)[truth.domain[b]] + rotation
    diff = (angle - want + 180) % 360 - 180
    np.testing.assert_allclose(diff, 0, atol=1e-6)
    np.testing.assert_array_equal(truth.displacement[~b], 0)


def test_b_sits_at_planted_offset_from_its_a_neighbours():
    # Ties the image truth to the planted field: B minus the mean of its four
    # nearest A columns equals the planted displacement ([001] projection).
    _, truth = perovskite(shape=256, domains="none", dose=None, jitter=0.0, seed=6)
    a = truth.columns.select("A").xy
    bmask = truth.columns.labels == 1
    b = truth.columns.xy[bmask]
    inner = _interior(truth.columns, (256, 256), 25)[bmask]
    dist = np.linalg.norm(b[inner, None] - a[None], axis=2)
    nearest = np.argsort(dist, axis=1)[:, :4]
    offset = b[inner] - a[nearest].mean(axis=1)
    np.testing.assert_allclose(offset, truth.displacement[bmask][inner], atol=0.02)
    assert np.hypot(*offset.T).mean() == pytest.approx(0.02 / 0.02, rel=0.02)


def test_noise_matches_dose():
    image, truth = perovskite(shape=512, dose=50.0, read_noise=1.5, seed=7)
    assert truth.expected.mean() == pytest.approx(50.0, rel=1e-4)
    residual = image.data.astype(float) - truth.expected
    poisson_var = residual.var() - 1.5**2
    assert truth.expected.mean() / poisson_var == pytest.approx(1.0, abs=0.05)
    assert abs(residual.mean()) < 0.1


def test_same_seed_same_image():
    a, ta = perovskite(shape=128, seed=11)
    b, tb = perovskite(shape=128, seed=11)
    c, _ = perovskite(shape=128, seed=12)
    np.testing.assert_array_equal(a.data, b.data)
    assert ta.columns == tb.columns
    assert not np.array_equal(a.data, c.data)


def test_calibration_and_signal_type():
    image, _ = perovskite(shape=(100, 150), pixel_size=0.015, seed=1)
    assert image.metadata.Signal.signal_type == "atomic_resolution"
    assert image.data.shape == (100, 150)
    x, y = image.axes_manager.signal_axes
    assert (x.size, y.size) == (150, 100)
    assert x.scale == y.scale == 0.015 and x.units == "nm"


def test_render_2048_is_fast_enough():
    # Vectorised rendering: a 2048^2 image is a few seconds at most.
    import time

    t0 = time.perf_counter()
    image, truth = perovskite(shape=2048, seed=0)
    assert time.perf_counter() - t0 < 15
    assert len(truth.columns) > 20000


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(shape=40), "shape"),
        (dict(shape=(256, 256, 3)), "shape"),
        (dict(dose=-5), "dose"),
        (dict(dose=0), "dose"),
        (dict(domains="stripes"), "domains"),
        (dict(projection="111"), "projection"),
        (dict(pixel_size=0), "pixel_size"),
        (dict(column_width=float("nan")), "column_width"),
        (dict(dark_fraction=1.5), "dark_fraction"),
        (dict(directions=[0.0]), "directions"),
        (dict(drift=(1.0,)), "drift"),
    ],
)
def test_bad_input_names_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        perovskite(**kwargs)


def test_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match="dose"):
        perovskite(shape=128, dose="high")


@pytest.mark.parametrize(
    "projection, axis, normal",
    [("001", 1, None), ("110", 0, None), ("001", None, 37.0)],
)
def test_layer_of_another_material_follows_a_lattice_plane(projection, axis, normal):
    # The band of another material (training data for interfaces such as
    # SrRuO3 in PbTiO3): inside it A and B take the band's heights, outside
    # they keep 1 and the intensity ratio; along a lattice vector its edges
    # are lattice planes, and any other normal (as in training) works too.
    from stemunmix.core.synthetic import render_perovskite, rotation_matrix, unit_cell

    a_px, rotation, width = 20.0, 10.0, 50.0
    vectors = unit_cell(projection, a_px)[0] @ rotation_matrix(rotation).T
    if normal is None:  # along a lattice vector
        normal = np.rad2deg(np.arctan2(vectors[axis][1], vectors[axis][0]))
    unit = np.array([np.cos(np.deg2rad(normal)), np.sin(np.deg2rad(normal))])
    layer = dict(normal=normal, offset=12.0, width=width, a=0.4, b=0.6)
    out = render_perovskite(
        (200, 200), a_px, projection, rotation, 0.2, 0.0, 0.8, 2.5, 0.0, [45.0],
        "none", 0.0, None, 0.0, (0.0, 0.0), 0.0, 0.0, 0.0, 3, layer=layer,
    )  # fmt: skip
    depth = (out["xy"] - 100) @ unit - 12.0
    inside = np.abs(depth) < width / 2
    sub, amp = out["sublattice"], out["amplitude"]
    assert 0 < inside.sum() < len(inside) // 2
    np.testing.assert_allclose(amp[inside & (sub == 0)], 0.4, rtol=0.15)
    np.testing.assert_allclose(amp[inside & (sub == 1)], 0.6, rtol=0.15)
    np.testing.assert_allclose(amp[~inside & (sub == 0)], 1.0, rtol=0.15)
    np.testing.assert_allclose(amp[~inside & (sub == 1)], 0.2, rtol=0.15)
    if axis is not None:
        # Columns of one lattice plane share their depth: the band holds whole planes.
        planes = np.round(depth[inside & (sub == 0)], 6)
        spacing = np.linalg.norm(vectors[axis])
        assert len(np.unique(planes)) <= int(width / spacing) + 1


@pytest.mark.parametrize("drift", [(45.0, 12.0), (-45.0, -12.0)])
def test_strong_scan_drift_keeps_columns_where_the_truth_says(drift):
    # A strong slow-scan drift (the lattice sheared by ~20 degrees and scaled
    # along y, as in the low-dose SrTiO3 image): each column's centre of mass
    # on the noise-free image is its true image position, and its translations
    # show the shear and the scale.
    from scipy.spatial import cKDTree

    from stemunmix.core.synthetic import render_perovskite

    out = render_perovskite(
        (128, 128), 20.0, "001", 0.0, 0.5, 0.0, 0.8, 2.0, 0.0, [0.0],
        "none", 0.0, None, 0.0, drift, 0.0, 0.0, 0.0, 4,
    )  # fmt: skip
    image, xy = out["expected"].astype(float), out["xy"]
    inner = (xy.min(1) > 8) & (xy.max(1) < 119)
    yy, xx = np.mgrid[-5:6, -5:6]
    for x, y in xy[inner]:
        i, j = int(round(y)), int(round(x))
        patch = image[i - 5 : i + 6, j - 5 : j + 6]
        patch = patch - patch.min()
        centre = (
            (xx * patch).sum() / patch.sum() + j,
            (yy * patch).sum() / patch.sum() + i,
        )
        assert np.hypot(centre[0] - x, centre[1] - y) < 0.15
    a = xy[out["sublattice"] == 0]
    _, idx = cKDTree(a).query(a, k=5)
    steps = (a[idx[:, 1:]] - a[:, None]).reshape(-1, 2)
    # the vertical A translation (0, 20) becomes (20 kx / (1 - ky), 20 / (1 - ky))
    kx, ky = drift[0] / 127, drift[1] / 127
    vertical = steps[np.abs(steps[:, 1]) > 10]
    vertical *= np.sign(vertical[:, 1:])
    np.testing.assert_allclose(
        np.median(vertical, 0), [20 * kx / (1 - ky), 20 / (1 - ky)], atol=0.05
    )


@pytest.mark.parametrize(
    "structure, zone, near",
    [("fcc", "100", 0.5), ("fcc", "110", np.sqrt(3 / 8)), ("bcc", "110", np.sqrt(3) / 2),
     ("hcp", "0001", 1 / np.sqrt(3))],
)  # fmt: skip
def test_crystal_renders_its_projection_inside_the_particle(structure, zone, near):
    from scipy.spatial import cKDTree

    from stemunmix.synthetic import crystal

    a = 0.4
    image, truth = crystal(structure, zone, a, shape=256, particle=3.0, dose=None)
    xy = truth.columns.xy
    d, _ = cKDTree(xy).query(xy, k=2)
    np.testing.assert_allclose(np.median(d[:, 1]), near * a / 0.02, rtol=1e-6)
    # every column within the particle (3 nm wide, axes within 25 %), centred
    r = np.hypot(*(xy - 127.5).T) * 0.02
    assert r.max() < 1.5 * 1.25 + 0.05
    assert truth.columns.class_names == ["column"]
    assert 0.05 < truth.domain_map.mean() < 0.3
    assert image.data.shape == (256, 256)


def test_a_twin_mirrors_the_lattice_across_its_boundary():
    from stemunmix.core.indexing import lattice_vectors
    from stemunmix.synthetic import crystal

    _, truth = crystal("fcc", "110", shape=256, particle=None, twin=30.0, dose=None)
    xy, grain = truth.columns.xy, truth.domain
    assert set(np.unique(grain)) == {0, 1}
    v0, v1 = (lattice_vectors(xy[grain == g]) for g in (0, 1))
    angle = lambda v: np.degrees(np.arctan2(v[1], v[0])) % 180  # noqa: E731
    # mirrored across a line at 30 degrees: an angle t becomes 60 - t
    t0 = {round(angle(v)) for v in v0}
    t1 = {round((60 - angle(v)) % 180) for v in v1}
    assert any(abs(x - y) <= 1 or abs(x - y) >= 179 for x in t0 for y in t1)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"structure": "fcc", "zone": "123"}, "the crystals rendered"),
     ({"facets": 2}, "facets"), ({"particle": 0.1}, "holds no column"),
     ({"pixel_size": 0.1}, "pixels apart"), ({"support": -1.0}, "support")],
)  # fmt: skip
def test_crystal_refuses_what_it_cannot_render(kwargs, match):
    from stemunmix.synthetic import crystal

    with pytest.raises(ValueError, match=match):
        crystal(**({"shape": 128} | kwargs))
