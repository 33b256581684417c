"""An exact truncated SVD of tall, skinny data in a few passes over its chunks."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from stemunmix.core import checks
from stemunmix.learn._subsample import check_2d, is_dask


class GramSVD(TransformerMixin, BaseEstimator):
    """Truncated SVD from the Gram matrix X^T X, accumulated chunk by chunk.

    For data with many more rows than columns (windows: a row per column of
    the crystal, d x d pixels each) the right singular vectors are the
    eigenvectors of X^T X, in float64 exact to rounding for the leading
    components. One pass over the rows builds it (a dask array is reduced
    chunk by chunk, never gathered), a second fixes each component's sign as
    HyperSpy's SVD does (the loading largest in magnitude positive), so eager
    and lazy results agree.

    Parameters
    ----------
    n_components : int
        Components kept.
    centre : {None, "navigation", "signal"}
        HyperSpy's: subtract nothing (default), each column's mean over the
        rows (kept as ``mean_``) or each row's own mean.

    Attributes
    ----------
    components_ : (n_components, n_features)
    singular_values_, explained_variance_ : (n_components,)
        S and S^2 / n_rows (HyperSpy's convention).
    mean_ : (n_features,) or None
    """

    def __init__(self, n_components: int = 2, centre=None):
        self.n_components = n_components
        self.centre = centre

    def _centred(self, X):
        if self.centre == "signal":
            X = X - X.mean(1, keepdims=True)
        if self.mean_ is not None:
            X = X - self.mean_
        return X

    def fit(self, X, y=None):
        X = check_2d(X)
        k = checks.count("n_components", self.n_components)
        if k > min(X.shape):
            raise ValueError(
                f"n_components={k} is more than the data's rank can be "
                f"({X.shape[0]} rows, {X.shape[1]} features)"
            )
        if self.centre not in (None, "navigation", "signal"):
            raise ValueError(
                f"centre must be None, 'navigation' or 'signal', got {self.centre!r}"
            )
        X = X.astype(np.float64)
        self.mean_ = None
        if self.centre == "signal":
            X = X - X.mean(1, keepdims=True)
        n = X.shape[0]
        gram, total = X.T @ X, X.sum(0)
        if is_dask(X):
            import dask

            gram, total = dask.compute(gram, total)
        if self.centre == "navigation":
            self.mean_ = total / n
            gram = gram - n * np.outer(self.mean_, self.mean_)
        values, vectors = np.linalg.eigh(gram)
        order = np.argsort(values)[::-1][:k]
        values, vectors = np.clip(values[order], 0, None), vectors[:, order].T
        self.components_ = vectors * self._signs(X, vectors)[:, None]
        self.singular_values_ = np.sqrt(values)
        self.explained_variance_ = values / n
        self.n_features_in_ = X.shape[1]
        return self

    def _signs(self, X, vectors) -> np.ndarray:
        """Per component, the sign that makes its largest loading positive."""
        centred = X - self.mean_ if self.mean_ is not None else X
        rows = abs(centred @ vectors.T).argmax(0)
        if is_dask(X):
            import dask

            (rows,) = dask.compute(rows)
            chosen = centred[np.asarray(rows)].compute()
        else:
            chosen = centred[rows]
        values = np.einsum("kp,kp->k", np.asarray(chosen), vectors)
        return np.where(values < 0, -1.0, 1.0)

    def transform(self, X):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "components_")
        X = check_2d(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but GramSVD is expecting "
                f"{self.n_features_in_} features as input"
            )
        return self._centred(X.astype(np.float64)) @ self.components_.T
