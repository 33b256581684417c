"""The rotation-invariant VAE: the angle separates quarter-turned variants."""

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from stemunmix.learn import RotationInvariantVAE


def variants(n=800, d=15, shift=1.5, noise=0.1, seed=0):
    """Windows of a B column displaced by ``shift`` px in one of four
    directions a quarter turn apart, in a frame of four A columns."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:d, :d] - d // 2
    labels = rng.integers(0, 4, n)
    out = np.empty((n, d * d))
    for i, k in enumerate(labels):
        t = k * np.pi / 2
        dx, dy = shift * np.cos(t), shift * np.sin(t)
        img = 0.6 * np.exp(-((xx - dx) ** 2 + (yy - dy) ** 2) / 4.5)
        for cx, cy in ((-7, -7), (7, -7), (-7, 7), (7, 7)):
            img += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 4.5)
        out[i] = (img + noise * rng.standard_normal(img.shape)).ravel()
    return out, labels


@pytest.fixture(scope="module")
def fitted():
    X, y = variants()
    return RotationInvariantVAE(n_latent=1, epochs=15, random_state=0).fit(X), X, y


def test_the_angle_separates_quarter_turned_variants(fitted):
    model, X, y = fitted
    Z = model.transform(X)
    assert model.latent_names_ == ["angle", "shift_x", "shift_y", "z0"]
    assert Z.shape == (len(X), 4)
    a = Z[:, 0]
    km = KMeans(4, n_init=10, random_state=0).fit(
        np.column_stack([np.cos(a), np.sin(a)])
    )
    assert adjusted_rand_score(y, km.labels_) >= 0.95
    # a quarter turn of the variant: a quarter turn of the angle
    means = [np.angle(np.mean(np.exp(1j * a[y == k]))) for k in range(4)]
    steps = np.degrees(np.angle(np.exp(1j * np.diff(means))))
    np.testing.assert_allclose(np.abs(steps), 90, atol=10)


def test_decoded_windows_are_the_inputs(fitted):
    model, X, _ = fitted
    decoded = model.inverse_transform(model.transform(X))
    r = [np.corrcoef(a, b)[0, 1] for a, b in zip(decoded, X, strict=True)]
    assert np.median(r) >= 0.9
    # turning the angle by a quarter turns the decoded window by a quarter
    z = model.transform(X[:1])
    turned = z.copy()
    turned[0, 0] += np.pi / 2
    a = model.inverse_transform(z).reshape(15, 15)
    b = model.inverse_transform(turned).reshape(15, 15)
    assert np.corrcoef(np.rot90(a, 1).ravel(), b.ravel())[0, 1] > 0.9


def test_seeded_fits_are_equal_and_lazy_equals_eager(fitted):
    import dask.array as da

    model, X, y = fitted
    again = RotationInvariantVAE(n_latent=1, epochs=15, random_state=0).fit(X)
    np.testing.assert_array_equal(again.transform(X), model.transform(X))
    lazy = model.transform(da.from_array(X, chunks=(300, -1)))
    np.testing.assert_allclose(lazy, model.transform(X), rtol=1e-5, atol=1e-6)
    assert model.score(X) > model.score(X[:, ::-1].copy())  # mirrored: worse


def test_traversal_and_labels():
    X, y = variants(n=200, seed=2)
    model = RotationInvariantVAE(n_latent=1, epochs=2, random_state=1).fit(X, y % 2)
    stack = model.traversal("z0", [-2, 0, 2], y=[1])
    assert stack.shape == (3, 15, 15)
    assert model.transform(X, y % 2).shape == (200, 4)
    with pytest.raises(ValueError, match="fitted with labels"):
        model.transform(X)
    with pytest.raises(ValueError, match="not fitted on"):
        model.transform(X[:3], [0, 1, 7])


@pytest.mark.parametrize(
    "kwargs, X, match",
    [
        ({}, np.zeros((10, 20)), "square windows"),
        ({}, np.full((10, 9), np.nan), "NaN"),
        ({"epochs": 0}, np.zeros((10, 9)), "epochs"),
        ({"learning_rate": -1.0}, np.zeros((10, 9)), "learning_rate"),
        ({"device": "tpu"}, np.zeros((10, 9)), "device"),
        ({"equivariance": -1.0}, np.zeros((10, 9)), "equivariance"),
        ({"random_state": -3}, np.zeros((10, 9)), "random_state"),
    ],
)
def test_bad_input_is_refused(kwargs, X, match):
    with pytest.raises(ValueError, match=match):
        RotationInvariantVAE(**kwargs).fit(X)


def test_without_rotation_the_shift_reads_a_displaced_column():
    """A B column displaced from the centre of its frame of A columns, the
    window centred on the B column (as local_descriptors cuts it): with the
    angle held at 0, the shift latent follows the frame, so it reads the
    displacement linearly."""
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(4)
    d, n = 21, 600
    yy, xx = np.mgrid[:d, :d] - d // 2
    shift = rng.uniform(-1.5, 1.5, (n, 2))
    X = np.empty((n, d * d))
    for i, (dx, dy) in enumerate(shift):
        img = 0.6 * np.exp(-(xx**2 + yy**2) / 4.5)  # the B column, centred
        for cx, cy in ((-9, -9), (9, -9), (-9, 9), (9, 9)):  # the frame moved
            img += np.exp(-((xx - cx + dx) ** 2 + (yy - cy + dy) ** 2) / 4.5)
        X[i] = (img + 0.1 * rng.standard_normal(img.shape)).ravel()
    model = RotationInvariantVAE(rotation=False, epochs=15, random_state=0)
    Z = model.fit_transform(X)
    assert np.all(Z[:, 0] == 0)  # the angle held
    r2 = LinearRegression().fit(Z[:, 1:3], shift).score(Z[:, 1:3], shift)
    assert r2 >= 0.9, r2
    with pytest.raises(TypeError, match="rotation"):
        RotationInvariantVAE(rotation="no").fit(X[:10])
