"""Manifold embeddings fitted on a subsample and applied to the rest by chunks."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from stemunmix.core import checks
from stemunmix.learn._subsample import check_2d, is_dask, subsample

METHODS = ("isomap", "tsne", "umap")


class ManifoldEmbedding(TransformerMixin, BaseEstimator):
    """Isomap, t-SNE or UMAP embedding of many samples in bounded memory.

    The embedding is learned on a seeded subsample of ``max_samples`` rows.
    Other rows are embedded with the learner's own ``transform`` (Isomap, UMAP)
    or, for t-SNE (which has none), as the distance-weighted mean embedding of
    their ``n_neighbors`` nearest subsample rows; dask arrays chunk by chunk,
    lazily.

    Parameters
    ----------
    method : {"isomap", "tsne", "umap"}
        UMAP needs the optional package umap-learn.
    n_components : int
    max_samples : int
    n_neighbors : int
        Neighbours of Isomap/UMAP and of the t-SNE extension.
    random_state : int, optional
    """

    def __init__(
        self,
        method="isomap",
        n_components=2,
        max_samples=5000,
        n_neighbors=15,
        random_state=None,
    ):
        self.method = method
        self.n_components = n_components
        self.max_samples = max_samples
        self.n_neighbors = n_neighbors
        self.random_state = random_state

    def _neighbours(self) -> int:
        """n_neighbors, at most the fitted rows less one (tiny inputs)."""
        rows = getattr(self, "_rows", None)
        return (
            self.n_neighbors
            if rows is None
            else max(1, min(self.n_neighbors, rows - 1))
        )

    def _learner(self):
        if self.method == "isomap":
            from sklearn.manifold import Isomap

            return Isomap(
                n_neighbors=self._neighbours(), n_components=self.n_components
            )
        if self.method == "tsne":
            from sklearn.manifold import TSNE

            return TSNE(
                n_components=self.n_components,
                random_state=self.random_state,
                init="pca",
            )
        if self.method == "umap":
            try:
                import umap
            except ImportError:
                raise ImportError(
                    "method='umap' needs umap-learn: pip install umap-learn"
                ) from None
            return umap.UMAP(
                n_components=self.n_components,
                n_neighbors=self._neighbours(),
                random_state=self.random_state,
            )
        raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")

    def _check_components(self, features: int) -> None:
        k = checks.count("n_components", self.n_components)
        most = min(features, 3) if self.method == "tsne" else features
        if k > most:
            why = (
                "t-SNE embeds in at most 3 dimensions"
                if self.method == "tsne" and features > 3
                else f"X has {features} features"
            )
            raise ValueError(
                f"n_components={k} is more than the embedding can hold ({why}); "
                f"use at most {most}"
            )

    def fit(self, X, y=None):
        from sklearn.neighbors import NearestNeighbors

        X = check_2d(X)
        self._check_components(X.shape[1])
        sample = subsample(X, self.max_samples, self.random_state)
        self._rows = len(sample)
        learner = self._learner()
        if not np.all(np.isfinite(sample)):
            raise ValueError("X contains NaN or inf; remove those rows first")
        self.embedding_sample_ = learner.fit_transform(sample)
        self.learner_ = learner
        self.sample_ = sample
        if self.method == "tsne":
            self.neighbors_ = NearestNeighbors(n_neighbors=self._neighbours()).fit(
                sample
            )
        self.n_features_in_ = X.shape[1]
        return self

    def _transform_block(self, block):
        if self.method != "tsne":
            return self.learner_.transform(block).astype(float)
        dist, idx = self.neighbors_.kneighbors(block)
        w = 1.0 / np.maximum(dist, 1e-12)
        return (self.embedding_sample_[idx] * w[..., None]).sum(1) / w.sum(
            1, keepdims=True
        )

    def transform(self, X):
        """Embedding of X (samples, n_components); lazy for a dask array."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "learner_")
        X = check_2d(X)
        if is_dask(X):
            X = X.rechunk({1: -1})
            return X.map_blocks(
                self._transform_block,
                chunks=(X.chunks[0], (self.n_components,)),
                dtype=float,
            )
        return self._transform_block(np.asarray(X))

    def fit_transform(self, X, y=None):
        return self.fit(X).transform(X)
