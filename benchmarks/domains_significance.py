"""Uncertain domains: is a partition structure or noise, and how stable is it.

    python benchmarks/domains_significance.py

``stemunmix.report.analyze`` with its defaults (and, where named, fewer
components or a number of domains forced) on:

1. Synthetic images with planted domains: the 512^2 demo (four stripes,
   seeds 0-2) and four stripes at 1024^2 (seed 7): the domains must be found,
   called significant, agree with the truth (adjusted Rand index) and be
   stable (the median ARI of the mixture refitted on 10 bootstrap
   resamples, target >= 0.95).
2. Nulls, where no domain exists: a synthetic crystal without domains
   (seeds 3, 4) and the real centrosymmetric SrTiO3 [110] ADF, the low-dose
   SrTiO3 and NSMO [110] (skipped without ../shared/data/real): one domain,
   "no significant domain structure", also on 2 components (where the
   loadings of a null split most easily); forced into 4 domains, the test
   says not significant.

Each row: the domains reported, the test of the partition (silhouette
against the largest of 9 on one Gaussian with the loadings' mean and
covariance, stability, spatial coherence) and its verdict. Writes
benchmarks/results/domains_significance.json.
"""

import json
import platform
import time
import warnings
from datetime import date
from pathlib import Path

from _results import commit

HERE = Path(__file__).resolve().parent


def row(name, image, truth=None, **kw):
    from stemunmix.report import analyze

    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = analyze(image, truth=truth, show_progressbar=False, log=lambda *a: None,
                    **kw)  # fmt: skip
    test = r.descriptors.domain_test or {}
    out = {
        "case": name, "options": kw, "domains": r.domains,
        "ari": r.domain_agreement,
        **{k: test.get(k) for k in ("n_domains", "silhouette", "null_silhouette",
                                     "stability", "coherence", "significant")},
        "why": r.choices.get("domains", {}).get("why") or test.get("why"),
        "seconds": round(time.perf_counter() - t, 1),
    }  # fmt: skip
    f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    print(f"{name:28s} {str(kw):34s} domains {r.domains} ARI {f(r.domain_agreement)} "
          f"tested {test.get('n_domains')}: silhouette {f(test.get('silhouette'))} "
          f"(one Gaussian {f(test.get('null_silhouette'))}) stability "
          f"{f(test.get('stability'))} coherence {f(test.get('coherence'))} "
          f"significant {test.get('significant')} | {out['why']}", flush=True)  # fmt: skip
    return out


def main():
    import hyperspy.api as hs

    from stemunmix.synthetic import perovskite

    rows = []
    for seed in (0, 1, 2):
        image, truth = perovskite(shape=512, domains="four_stripes", seed=seed)
        rows.append(row(f"demo 512^2 seed {seed}", image, truth))
    image, truth = perovskite(shape=1024, domains="four_stripes", seed=7)
    rows.append(row("four stripes 1024^2 seed 7", image, truth))
    for seed in (3, 4):
        image, truth = perovskite(shape=512, domains="none", seed=seed)
        for kw in ({}, {"components": 2}, {"domains": 4}):
            rows.append(row(f"no domains 512^2 seed {seed}", image, truth, **kw))
    try:
        from _real_images import REAL, load
    except ImportError:
        REAL = None
    if REAL is not None and REAL.is_dir():
        for name in ("SrTiO3 [110] ADF", "SrTiO3 low dose", "NSMO [110] HAADF"):
            image = hs.signals.Signal2D(load(name))
            for kw in ({}, {"components": 2}, {"domains": 4}):
                rows.append(row(name, image, **kw))
    else:
        print("real images skipped: ../shared/data/real not found")
    out = {"date": date.today().isoformat(), "commit": commit(),
           "machine": f"{platform.processor() or platform.machine()}, "
                      f"{platform.system()}", "rows": rows}  # fmt: skip
    path = HERE / "results" / "domains_significance.json"
    path.write_text(json.dumps(out, indent=1, default=float))
    print(f"written {path}")


if __name__ == "__main__":
    main()
