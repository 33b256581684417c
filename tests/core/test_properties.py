"""Property-based tests of the numerical core (hypothesis): random shapes,
positions inside, on the edge and far outside, dtypes and values. No unhandled
exception, no read outside the array, outputs within the input's range where
they must be."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from stemunmix import Columns
from stemunmix.core.maps import point_map, voronoi_map
from stemunmix.core.peaks import find_peaks
from stemunmix.core.refine import refine_gaussian
from stemunmix.core.windows import extract_windows, inside_mask, on_frame

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])  # fmt: skip

dtypes = st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64])


@st.composite
def images(draw, min_side=4, max_side=48):
    h = draw(st.integers(min_side, max_side))
    w = draw(st.integers(min_side, max_side))
    dtype = draw(dtypes)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        elements = st.integers(max(info.min, -1000), min(info.max, 1000))
    else:
        elements = st.floats(-1e6, 1e6, width=32)
    return draw(arrays(dtype, (h, w), elements=elements))


def positions(h, w, n_max=12):
    """Positions inside, on the edge, just outside and far outside."""
    coord = st.one_of(
        st.floats(-1.0, max(h, w) + 1.0),
        st.sampled_from([0.0, w - 1.0, h - 1.0, -0.5, w - 0.5]),
        st.floats(-1e7, 1e7),
    )
    return st.lists(st.tuples(coord, coord), min_size=0, max_size=n_max)


@SETTINGS
@given(data=st.data(), image=images(), d=st.integers(1, 40),
       edge=st.sampled_from(["drop", "nearest"]))  # fmt: skip
def test_windows_stay_in_the_image_range(data, image, d, edge):
    h, w = image.shape
    xy = np.array(data.draw(positions(h, w)), float).reshape(-1, 2)
    if edge == "drop" and d + 1 > min(h, w):
        with pytest.raises(ValueError, match="smaller d"):
            extract_windows(image, xy, d, edge)
        return
    win = extract_windows(image, xy, d, edge)
    assert win.shape == (len(xy), 1, d, d)
    if len(xy):
        lo, hi = np.float32(image.min()), np.float32(image.max())
        tol = 1e-3 * max(1.0, abs(float(lo)), abs(float(hi)))
        assert np.isfinite(win).all()
        assert win.min() >= lo - tol and win.max() <= hi + tol


@SETTINGS
@given(data=st.data(), image=images(min_side=8), d=st.integers(3, 7))
def test_windows_inside_equal_bilinear_samples(data, image, d):
    h, w = image.shape
    xy = np.array(data.draw(positions(h, w)), float).reshape(-1, 2)
    xy = xy[inside_mask(xy, image.shape, d)] if len(xy) else xy
    win = extract_windows(image, xy, d, "drop")
    from scipy.ndimage import map_coordinates

    img = image.astype(np.float64)
    for k, (x, y) in enumerate(xy):
        off = np.arange(d) - (d - 1) / 2
        yy, xx = np.meshgrid(y + off, x + off, indexing="ij")
        ref = map_coordinates(img, [yy, xx], order=1)
        scale = max(1.0, np.abs(img).max())
        np.testing.assert_allclose(win[k, 0], ref, atol=2e-5 * scale)


@SETTINGS
@given(image=images(min_side=3), min_distance=st.floats(1, 12),
       threshold=st.floats(0, 1))  # fmt: skip
def test_peaks_lie_on_the_map_above_threshold(image, min_distance, threshold):
    prob = image.astype(np.float64)
    span = np.ptp(prob)
    prob = (prob - prob.min()) / span if span > 0 else np.zeros_like(prob)
    peaks = find_peaks(prob, min_distance, threshold)
    assert peaks.ndim == 2 and peaks.shape[1] == 2
    assert np.isfinite(peaks).all()
    h, w = prob.shape
    assert (peaks[:, 0] >= 0).all() and (peaks[:, 0] <= w - 1).all()
    assert (peaks[:, 1] >= 0).all() and (peaks[:, 1] <= h - 1).all()
    nearest = np.round(peaks).astype(int)
    # A centroid stays within the support of its maximum (its own patch).
    assert len(peaks) <= prob.size
    if len(peaks):
        assert prob[nearest[:, 1], nearest[:, 0]].max() <= 1.0


def test_peaks_refuse_bad_arguments():
    with pytest.raises(ValueError, match="min_distance"):
        find_peaks(np.zeros((8, 8)), 0.5)
    with pytest.raises(ValueError, match="2D"):
        find_peaks(np.zeros((2, 8, 8)), 2)


@SETTINGS
@given(data=st.data(), h=st.integers(12, 40), w=st.integers(12, 40),
       sigma=st.floats(0.8, 3.0), noise=st.floats(0, 0.2))  # fmt: skip
def test_refinement_returns_finite_positions_near_the_image(data, h, w, sigma, noise):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    xy = np.array(data.draw(positions(h, w, 6)), float).reshape(-1, 2)
    xy = np.clip(xy, -50, max(h, w) + 50)  # the fit starts from found peaks
    yy, xx = np.mgrid[:h, :w]
    image = noise * rng.standard_normal((h, w))
    for x, y in xy:
        image += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    fit = refine_gaussian(image, xy, sigma)
    assert fit["xy"].shape == xy.shape
    for key in ("xy", "height", "sigma", "background", "rms", "moved"):
        assert np.isfinite(fit[key]).all(), key
    np.testing.assert_allclose(fit["moved"], np.hypot(*(fit["xy"] - xy).T), atol=1e-9)


@SETTINGS
@given(data=st.data(), h=st.integers(1, 40), w=st.integers(1, 40),
       k=st.integers(1, 3), max_distance=st.floats(0.5, 30))  # fmt: skip
def test_maps_take_values_of_the_columns(data, h, w, k, max_distance):
    xy = np.array(data.draw(positions(h, w, 10)), float).reshape(-1, 2)
    if len(xy) == 0:
        xy = np.array([[0.0, 0.0]])
    values = data.draw(arrays(np.float64, (len(xy), k), elements=st.floats(-1e3, 1e3)))
    vor = voronoi_map(xy, values, (h, w), max_distance)
    pts = point_map(xy, values, (h, w))
    for m in (vor, pts):
        assert m.shape == (k, h, w)
        finite = m[np.isfinite(m)]
        if finite.size:
            assert finite.min() >= values.min() - 1e-3 * (1 + abs(values.min()))
            assert finite.max() <= values.max() + 1e-3 * (1 + abs(values.max()))
    # Pixels farther than max_distance from every column are NaN.
    yy, xx = np.mgrid[:h, :w]
    dist = np.min(np.hypot(xx[..., None] - xy[:, 0], yy[..., None] - xy[:, 1]), -1)
    assert np.isnan(vor[0][dist > max_distance + 1e-6]).all()


@SETTINGS
@given(xy=arrays(np.float64, st.tuples(st.integers(0, 20), st.just(2)),
                 elements=st.floats(allow_nan=True, allow_infinity=True, width=64)),
       n_classes=st.integers(1, 5))  # fmt: skip
def test_columns_constructor_accepts_or_refuses_clearly(xy, n_classes):
    labels = np.arange(len(xy)) % n_classes
    names = [f"c{i}" for i in range(n_classes)]
    if not np.isfinite(xy).all():
        with pytest.raises(ValueError, match="NaN or inf"):
            Columns(xy, labels, names)
        return
    cols = Columns(xy, labels, names)
    assert len(cols) == len(xy)
    assert Columns.from_dict(cols.to_dict()) == cols
    assert on_frame(cols.xy, (10, 10)).shape == (len(xy),)
