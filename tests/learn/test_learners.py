"""stemunmix.learn.NMF: converged, as good as scikit-learn's, numpy = dask."""

import warnings

import dask.array as da
import numpy as np
import pytest

from stemunmix.learn import NMF


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    w = rng.gamma(1.0, 1.0, (3000, 4))
    h = rng.gamma(0.5, 1.0, (4, 200))
    return rng.poisson(20 * w @ h).astype(np.float32)


def test_reaches_scikit_learns_error_without_warning(data):
    from sklearn.decomposition import NMF as SkNMF

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = SkNMF(4, init="nndsvda", max_iter=1000).fit(data.astype(np.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConvergenceWarning, nothing
        ours = NMF(4, random_state=0).fit(data)
    assert ours.reconstruction_err_ <= 1.001 * sk.reconstruction_err_
    assert ours.n_iter_ < ours.max_iter  # converged by tol, not stopped
    assert (ours.components_ >= 0).all() and (ours.loadings_ >= 0).all()
    x = data.astype(np.float64)
    err = np.linalg.norm(x - ours.transform(data) @ ours.components_)
    assert err <= 1.001 * ours.reconstruction_err_


@pytest.mark.parametrize("max_memory", [1e9, 0])  # read once / chunk by chunk
def test_dask_equals_numpy(data, max_memory):
    eager = NMF(4, random_state=0).fit(data)
    lazy = NMF(4, max_memory=max_memory, presample=0, random_state=0).fit(
        da.from_array(data, chunks=(700, -1))
    )
    assert lazy.n_iter_ == eager.n_iter_
    np.testing.assert_allclose(lazy.components_, eager.components_, rtol=1e-4,
                               atol=1e-6 * eager.components_.max())  # fmt: skip
    w = lazy.transform(da.from_array(data, chunks=(700, -1)))
    np.testing.assert_allclose(w.compute(), eager.transform(data), rtol=1e-3, atol=1e-6)


def test_a_stack_too_large_for_memory_starts_from_a_presample(data):
    """Streaming with a presample: the components fitted on the presample
    held in memory, then a few passes over the whole stack reach the error
    of the fit in memory."""
    eager = NMF(4, random_state=0).fit(data)
    budget = 4 * data.shape[1] * (len(data) // 3)  # a third of the rows fits
    lazy = NMF(4, max_memory=budget, presample=len(data) // 4, random_state=0).fit(
        da.from_array(data, chunks=(700, -1))
    )
    assert lazy.presample == len(data) // 4  # the parameter is left as given
    assert lazy.reconstruction_err_ <= 1.005 * eager.reconstruction_err_
    assert lazy.n_iter_ < eager.n_iter_


def test_bad_input():
    with pytest.raises(ValueError, match="non-negative"):
        NMF(2).fit(-np.ones((10, 5)))
    with pytest.raises(ValueError, match="n_components"):
        NMF(9).fit(np.ones((10, 5)))
    with pytest.raises(TypeError, match="max_iter"):
        NMF(2, max_iter=2.5).fit(np.ones((10, 5)))


@pytest.mark.parametrize("batch_bytes", [1, 64e6])
def test_dask_subsample_takes_the_rows_numpy_takes(batch_bytes):
    # The seeded rows of a dask array are read a few chunks at a time
    # (batch_bytes) into one array: the same rows, in the same order, as from
    # numpy, whatever the chunks and batches.
    from stemunmix.learn import _subsample

    x = np.random.default_rng(0).random((10007, 3, 4)).astype(np.float32)
    lazy = da.from_array(x, chunks=(333, 2, 4))
    for rows in (1, 700, 10006):
        np.testing.assert_array_equal(
            _subsample.subsample(lazy, rows, 5), _subsample.subsample(x, rows, 5)
        )
    picked = np.array([0, 332, 333, 9999, 10006])
    got = _subsample._take_rows(lazy, picked, batch_bytes=batch_bytes)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, x[picked])


@pytest.mark.parametrize(
    "name", ["NMF", "GaussianMixture", "ManifoldEmbedding", "GramSVD"]
)
def test_learners_pass_scikit_learn_estimator_checks(name):
    """Every check of scikit-learn's check_estimator (their tags declared:
    NMF takes non-negative input only)."""
    import warnings

    from sklearn.utils.estimator_checks import check_estimator

    from stemunmix import learn

    est = {"NMF": learn.NMF(2, max_iter=50, random_state=0),
           "GaussianMixture": learn.GaussianMixture(2, random_state=0),
           "ManifoldEmbedding": learn.ManifoldEmbedding("isomap", 2, random_state=0),
           "GramSVD": learn.GramSVD(2)}[name]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(est, on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results
              if r["status"] == "failed"]  # fmt: skip
    assert len(results) > 40 and not failed, failed


# The rVAE turns and shifts its windows: its rows must be square windows (d * d
# values, d >= 3), which these checks' random data (1-10 features) never are.
SQUARE_WINDOWS_ONLY = (
    "check_dict_unchanged check_dont_overwrite_parameters check_dtype_object "
    "check_estimators_dtypes check_estimators_fit_returns_self "
    "check_estimators_nan_inf check_estimators_overwrite_params "
    "check_estimators_pickle check_f_contiguous_array_estimator "
    "check_fit2d_1feature check_fit2d_1sample check_fit2d_predict1d "
    "check_fit_check_is_fitted check_fit_idempotent check_fit_score_takes_y "
    "check_methods_sample_order_invariance check_methods_subset_invariance "
    "check_n_features_in check_n_features_in_after_fitting "
    "check_pipeline_consistency check_positive_only_tag_during_fit "
    "check_readonly_memmap_input check_transformer_data_not_an_array "
    "check_transformer_general check_transformer_preserve_dtypes"
).split()


def test_the_rvae_passes_every_check_its_input_allows():
    """scikit-learn's checks of the rVAE, those that cannot give it square
    windows named with the reason."""
    import warnings

    from sklearn.utils.estimator_checks import check_estimator

    from stemunmix.learn import RotationInvariantVAE

    why = "the rows must be square windows (d * d values); the check's are not"
    est = RotationInvariantVAE(n_latent=1, epochs=2, hidden=16, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(
            est,
            expected_failed_checks=dict.fromkeys(SQUARE_WINDOWS_ONLY, why),
            on_fail=None,
        )
    failed = [r["check_name"] for r in results if r["status"] == "failed"]
    passed = [r["check_name"] for r in results if r["status"] == "passed"]
    assert not failed and len(passed) >= 15, (failed, len(passed))
