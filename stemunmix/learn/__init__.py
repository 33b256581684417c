"""Learners for LocalDescriptors: scikit-learn estimators that also take dask arrays.

Usable as ``algorithm=`` in HyperSpy's ``decomposition`` (NMF: it sets
``components_``) and ``cluster_analysis`` (they set ``labels_``), eager and
lazy, and on their own.
"""

from stemunmix.learn.gmm import GaussianMixture
from stemunmix.learn.manifold import ManifoldEmbedding
from stemunmix.learn.nmf import NMF
from stemunmix.learn.rvae import RotationInvariantVAE
from stemunmix.learn.svd import GramSVD

__all__ = [
    "GaussianMixture",
    "GramSVD",
    "ManifoldEmbedding",
    "NMF",
    "RotationInvariantVAE",
]
