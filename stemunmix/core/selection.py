"""Model selection from the data: how many components, how many domains.

Plain numpy and scikit-learn on (samples, features) arrays; the signal
methods and the report call these when the user chooses nothing.
"""

from __future__ import annotations

import numpy as np


def _rows(x, max_samples: int, seed: int) -> np.ndarray:
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    if len(x) > max_samples:
        pick = np.sort(np.random.default_rng(seed).choice(len(x), max_samples, False))
        x = x[pick]
    return x


def parallel_analysis(
    x,
    max_components: int = 20,
    n_shuffles: int = 5,
    quantile: float = 0.95,
    max_samples: int = 5000,
    seed: int = 0,
) -> dict:
    """Horn's parallel analysis: the components whose variance exceeds what
    the same windows give with each pixel shuffled across windows (every
    pixel keeps its own distribution, no two pixels vary together).

    ``x``: (samples, features), numpy (a dask array is subsampled first by
    the caller). The leading components are counted while the data's
    explained variance is above the ``quantile`` of ``n_shuffles`` shuffles.

    Returns {"n_components", "variance" (the data's, leading
    ``max_components``), "noise_floor" (the shuffles' quantile)}.
    """
    x = _rows(x, max_samples, seed)
    x = x - x.mean(0)
    m = int(min(max_components, x.shape[0] - 1, x.shape[1]))
    if m < 1:
        raise ValueError("parallel analysis needs at least two samples and one feature")
    total = float((x**2).sum())
    if total <= 0:
        raise ValueError("every window is the same: there is nothing to decompose")

    def spectrum(a):
        s = np.linalg.svd(a, compute_uv=False)[:m]
        return s**2 / total

    variance = spectrum(x)
    rng = np.random.default_rng(seed)
    null = np.array([spectrum(rng.permuted(x, axis=0)) for _ in range(n_shuffles)])
    floor = np.quantile(null, quantile, axis=0)
    above = variance > floor
    n = int(m if above.all() else np.argmin(above))
    return {"n_components": max(1, n), "variance": variance, "noise_floor": floor}


def count_domains(
    x, max_domains: int = 8, max_samples: int = 4000, seed: int = 0
) -> dict:
    """The number of Gaussian-mixture clusters (2 to ``max_domains``) of ``x``
    (samples, features) whose partition has the highest mean silhouette
    (Rousseeuw 1987), on a seeded subsample of ``max_samples`` rows; 1 when
    no partition reaches a silhouette of 0.25 (no substantial structure).

    The BIC and the ICL (BIC plus twice the entropy of the memberships) are
    returned beside it: on stripe domains with tanh walls both added clusters
    for the walls and for domains that are not Gaussian (the BIC 3 to 7 for
    2 to 4 planted domains); the silhouette counted 2, 3 and 4.

    Returns {"n_domains", "silhouette" (from 2 clusters), "bic", "icl" (from
    1 cluster)}.
    """
    from sklearn.metrics import silhouette_score
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    x = _rows(x, max_samples, seed)
    ks = range(1, int(min(max_domains, len(x) - 1)) + 1)
    bic, icl, sil = [], [], []
    with threadpool_limits(limits=1):
        for k in ks:
            gmm = GaussianMixture(k, n_init=3, random_state=seed).fit(x)
            p = gmm.predict_proba(x)
            entropy = -float(np.sum(p * np.log(np.clip(p, 1e-300, None))))
            bic.append(float(gmm.bic(x)))
            icl.append(bic[-1] + 2 * entropy)
            if k > 1:
                labels = p.argmax(1)
                ok = len(np.unique(labels)) > 1
                sil.append(float(silhouette_score(x, labels)) if ok else -1.0)
    best = int(np.argmax(sil)) + 2 if sil else 1
    if not sil or max(sil) < 0.25:
        best = 1
    return {"n_domains": best, "silhouette": sil, "bic": bic, "icl": icl}
