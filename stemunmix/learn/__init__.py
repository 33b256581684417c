"""Learners for LocalDescriptors: scikit-learn estimators that also take dask arrays.

Usable as ``algorithm=`` in HyperSpy's ``cluster_analysis`` (they set
``labels_``) and on their own.
"""

from stemunmix.learn.gmm import GaussianMixture
from stemunmix.learn.manifold import ManifoldEmbedding

__all__ = ["GaussianMixture", "ManifoldEmbedding"]
