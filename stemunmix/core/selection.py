"""Model selection from the data: how many components, how many domains.

Plain numpy and scikit-learn on (samples, features) arrays; the signal
methods and the report call these when the user chooses nothing.
"""

from __future__ import annotations

import numpy as np

from stemunmix.core.neighbours import nearest_spacing


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
    x,
    max_domains: int = 8,
    max_samples: int = 4000,
    seed: int = 0,
    covariance_type: str = "tied",
) -> dict:
    """The number of Gaussian-mixture clusters (2 to ``max_domains``) of ``x``
    (samples, features) whose partition has the highest mean silhouette
    (Rousseeuw 1987), on a seeded subsample of ``max_samples`` rows; 1 when
    no partition reaches a silhouette of 0.25 (no substantial structure).

    The BIC and the ICL (BIC plus twice the entropy of the memberships) are
    returned beside it (on stripe domains with tanh walls both add clusters
    for the walls and for domains that are not Gaussian).

    The clusters share one covariance (``"tied"``): domains differ in their
    mean distortion, the scatter about it is the same noise in all of them.

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
            gmm = GaussianMixture(
                k, covariance_type=covariance_type, n_init=3, random_state=seed
            ).fit(x)
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


# A partition is called significant when all three hold (see domain_test).
MIN_SILHOUETTE = 0.25
MIN_STABILITY = 0.9
MIN_COHERENCE = 0.2


def domain_test(
    x,
    labels,
    estimator,
    positions=None,
    n_resamples: int = 10,
    n_null: int = 9,
    max_samples: int = 4000,
    seed: int = 0,
) -> dict:
    """Whether a partition of ``x`` (samples, features) into domains is
    structure or noise, and how stable it is.

    ``labels``: the partition (one label per row); ``estimator``: the
    clustering that made it (anything with the scikit-learn ``fit`` /
    ``predict`` API and ``n_components`` or ``n_clusters``); it is cloned and
    refitted, never changed. On a seeded subsample of ``max_samples`` rows:

    - ``silhouette``: the partition's mean silhouette (Rousseeuw 1987);
    - ``null_silhouette``: the largest of ``n_null`` silhouettes that the same
      clustering gives on one Gaussian with the rows' mean and covariance (a
      single population, elongated as the data are: what a smooth gradient or
      noise alone would give);
    - ``stability``: the median adjusted Rand index between the partition and
      the clustering refitted (from a fresh start) on ``n_resamples``
      bootstrap resamples, each predicting every row;
    - ``coherence`` (with ``positions``, (samples, 2), on every row): how
      much more often a window shares its domain with its 4 nearest
      neighbours than chance, (agreement - chance) / (1 - chance), chance
      from the domains' sizes: about 0 where the labels are scattered as
      noise scatters them, 1 for contiguous domains;
    - ``significant``: two or more domains, a silhouette of at least
      ``MIN_SILHOUETTE`` and above the null's, a stability of at least
      ``MIN_STABILITY`` and (with positions) a coherence of at least
      ``MIN_COHERENCE``; ``why`` says which held and which did not.

    Why coherence too: the loadings of a null can split into clusters that
    are distinct and stable yet scattered over the image (noise is
    independent from window to window); domains are contiguous.
    """
    from sklearn.metrics import adjusted_rand_score, silhouette_score
    from threadpoolctl import threadpool_limits

    x = np.asarray(x, np.float64).reshape(len(x), -1)
    labels = np.asarray(labels).ravel()
    if len(labels) != len(x):
        raise ValueError(f"labels has {len(labels)} entries for {len(x)} rows of x")
    keep = np.all(np.isfinite(x), 1)
    x, labels = x[keep], labels[keep]
    coherence = None
    if positions is not None:
        positions = np.asarray(positions, np.float64)
        if positions.shape != (len(keep), 2):
            raise ValueError(
                f"positions must be ({len(keep)}, 2), got {positions.shape}"
            )
        coherence = spatial_coherence(positions[keep], labels)
    if len(x) > max_samples:
        pick = np.sort(np.random.default_rng(seed).choice(len(x), max_samples, False))
        x, labels = x[pick], labels[pick]
    k = len(np.unique(labels))
    record = {"n_domains": int(k), "rows": int(len(x))}
    if k < 2 or len(x) <= k + 1:
        record.update(
            silhouette=None,
            null_silhouette=None,
            stability=None,
            coherence=coherence,
            significant=False,
            why="one domain: nothing to test",
        )
        return record

    rng = np.random.default_rng(seed)
    with threadpool_limits(limits=1):
        silhouette = float(silhouette_score(x, labels))
        mean, cov = x.mean(0), np.atleast_2d(np.cov(x.T))
        null = []
        for r in range(n_null):
            g = rng.multivariate_normal(mean, cov, len(x), method="eigh")
            gl = _fresh(estimator, r).fit(g).predict(g)
            ok = len(np.unique(gl)) > 1
            null.append(float(silhouette_score(g, gl)) if ok else -1.0)
        aris = []
        for r in range(n_resamples):
            boot = x[rng.integers(0, len(x), len(x))]
            again = _fresh(estimator, r).fit(boot).predict(x)
            aris.append(float(adjusted_rand_score(labels, again)))
    stability = float(np.median(aris))
    checks = {
        f"silhouette {silhouette:.2f} >= {MIN_SILHOUETTE}": silhouette
        >= MIN_SILHOUETTE,
        f"silhouette {silhouette:.2f} above one Gaussian's {max(null):.2f}": silhouette
        > max(null),
        f"stability {stability:.2f} >= {MIN_STABILITY}": stability >= MIN_STABILITY,
    }
    if coherence is not None:
        checks[f"coherence {coherence:.2f} >= {MIN_COHERENCE}"] = (
            coherence >= MIN_COHERENCE
        )
    failed = [
        c.replace(">=", "<").replace("above", "not above")
        for c, ok in checks.items()
        if not ok
    ]
    why = (
        "not significant: " + "; ".join(failed)
        if failed
        else "significant: " + "; ".join(checks)
    )
    record.update(
        silhouette=silhouette,
        null_silhouette=float(max(null)),
        stability=stability,
        stability_resamples=aris,
        coherence=coherence,
        significant=not failed,
        why=why,
    )
    return record


def spatial_coherence(positions, labels, neighbours: int = 4) -> float:
    """(agreement - chance) / (1 - chance): agreement, the share of each
    point's ``neighbours`` nearest points (by ``positions``) with its label;
    chance, the same for labels scattered at random (the sum of the squared
    label shares). 0 for scattered labels, 1 for contiguous regions.

    Examples
    --------
    >>> import numpy as np
    >>> grid = np.stack(np.meshgrid(np.arange(20), np.arange(10)), -1).reshape(-1, 2)
    >>> halves = (grid[:, 0] >= 10).astype(int)
    >>> round(spatial_coherence(grid, halves), 2)  # two halves: contiguous
    0.95
    >>> shuffled = np.random.default_rng(0).permutation(halves)
    >>> abs(spatial_coherence(grid, shuffled)) < 0.1  # scattered as noise
    True
    """
    from scipy.spatial import cKDTree

    positions = np.asarray(positions, np.float64)
    labels = np.asarray(labels).ravel()
    n = min(neighbours, len(labels) - 1)
    _, near = cKDTree(positions).query(positions, n + 1)
    agreement = float((labels[near[:, 1:]] == labels[:, None]).mean())
    _, counts = np.unique(labels, return_counts=True)
    chance = float(((counts / len(labels)) ** 2).sum())
    return (agreement - chance) / (1 - chance) if chance < 1 else 0.0


def _fresh(estimator, seed: int):
    """An unfitted copy of ``estimator``, reseeded where it takes a seed."""
    from sklearn.base import clone

    est = clone(estimator)
    if "random_state" in est.get_params():
        est.set_params(random_state=seed)
    return est


# Window sizes tried, in column spacings (report.analyze's scree).
WINDOW_FACTORS = (0.3, 0.4, 0.5, 0.65, 0.8, 1.0, 1.2)


def column_spacing(columns, classes="B") -> float:
    """Median nearest-neighbour distance (pixels) of the window class's
    columns (all columns when there is none of that class)."""
    sel = columns
    if classes is not None:
        name = classes if isinstance(classes, (str, int)) else list(classes)[0]
        try:
            sel = columns.select(name)
        except ValueError:
            sel = columns
    xy = sel.xy if len(sel) >= 2 else columns.xy
    if len(xy) < 2:
        raise ValueError("too few columns to choose a window size; pass window=")
    return nearest_spacing(xy)


def window_candidates(spacing: float) -> list[int]:
    """Odd window sizes from 0.3 to 1.2 column spacings (at least 5 px)."""
    return sorted({max(5, int(round(f * spacing)) | 1) for f in WINDOW_FACTORS})
