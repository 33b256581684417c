"""Gaussian mixture clustering that fits numpy or dask arrays."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from threadpoolctl import threadpool_limits

from stemunmix.learn._subsample import check_2d, is_dask, subsample


class _single_blas_thread:
    """Call ``fn`` with BLAS and OpenMP limited to one thread (picklable)."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args, **kwargs):
        with threadpool_limits(limits=1):
            return self.fn(*args, **kwargs)


class GaussianMixture(ClusterMixin, BaseEstimator):
    """A Gaussian mixture model with the scikit-learn estimator API.

    ``fit`` takes a numpy or dask array (samples, features). A dask array (or
    any array with more than ``max_samples`` rows) is fitted on a seeded random
    subsample of ``max_samples`` rows, then every row is labelled chunk by
    chunk, so memory stays bounded; ``predict`` on a dask array is lazy.
    ``labels_`` is set, so HyperSpy's ``cluster_analysis(algorithm=...)`` takes
    it.

    Parameters
    ----------
    n_components, covariance_type, tol, reg_covar, max_iter, n_init
        As :class:`sklearn.mixture.GaussianMixture`.
    max_samples : int or None
        Rows used for fitting; None uses all.
    random_state : int, optional
        Seeds the subsample and the mixture's initialisation.

    Examples
    --------
    >>> import numpy as np
    >>> from stemunmix.learn import GaussianMixture
    >>> rng = np.random.default_rng(0)
    >>> x = np.concatenate([rng.normal(0, 1, (200, 2)), rng.normal(8, 1, (200, 2))])
    >>> gmm = GaussianMixture(2, covariance_type="tied", random_state=0).fit(x)
    >>> np.bincount(gmm.labels_).tolist()
    [200, 200]
    >>> gmm.predict_proba(x[:1]).round(3).max()
    np.float64(1.0)
    """

    def __init__(
        self,
        n_components: int = 2,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 200,
        n_init: int = 3,
        max_samples: int | None = 200_000,
        random_state=None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.max_samples = max_samples
        self.random_state = random_state

    def _validate(self):
        if (
            not isinstance(self.n_components, (int, np.integer))
            or self.n_components < 1
        ):
            raise ValueError(
                f"n_components must be a positive integer, got {self.n_components!r}"
            )
        if self.max_samples is not None and self.max_samples < self.n_components:
            raise ValueError("max_samples must be at least n_components")

    def fit(self, X, y=None):
        from sklearn.mixture import GaussianMixture as SkGMM

        self._validate()
        X = check_2d(X)
        if X.shape[0] < self.n_components:
            raise ValueError(
                f"X has {X.shape[0]} samples, fewer than n_components={self.n_components}"
            )
        sample = subsample(X, self.max_samples, self.random_state)
        if not np.all(np.isfinite(sample)):
            raise ValueError("X contains NaN or inf; remove those rows first")
        gmm = SkGMM(
            n_components=self.n_components,
            covariance_type=self.covariance_type,
            tol=self.tol,
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            n_init=self.n_init,
            random_state=self.random_state,
        )
        # The mixture works on tiny (features x features) matrices and its
        # k-means start on few features: BLAS and OpenMP threads only add
        # overhead there (20x slower measured on 2 busy cores).
        with threadpool_limits(limits=1):
            gmm.fit(sample)
        self.model_ = gmm
        self.weights_, self.means_ = gmm.weights_, gmm.means_
        self.covariances_ = gmm.covariances_
        self.converged_, self.n_iter_ = gmm.converged_, gmm.n_iter_
        self.n_features_in_ = X.shape[1]
        labels = self.predict(X)
        self.labels_ = np.asarray(labels.compute() if is_dask(labels) else labels)
        return self

    def _apply(self, X, method):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "model_")
        X = check_2d(X)
        fn = _single_blas_thread(getattr(self.model_, method))
        if is_dask(X):
            X = X.rechunk({1: -1})
            if method == "predict":
                return X.map_blocks(fn, drop_axis=1, dtype=np.int64)
            return X.map_blocks(
                fn, chunks=(X.chunks[0], (self.n_components,)), dtype=float
            )
        return fn(np.asarray(X))

    def predict(self, X):
        """Component of each row; lazy for a dask array."""
        return self._apply(X, "predict")

    def predict_proba(self, X):
        """Membership probabilities (samples, n_components); lazy for dask."""
        return self._apply(X, "predict_proba")

    def bic(self, X):
        """Bayesian information criterion on X (numpy or dask, subsampled)."""
        return self.model_.bic(
            subsample(check_2d(X), self.max_samples, self.random_state)
        )
