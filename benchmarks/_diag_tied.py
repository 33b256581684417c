import sys, warnings, functools
import numpy as np
warnings.simplefilter("ignore")
import stemunmix.learn as L
from stemunmix.report import analyze
from stemunmix.synthetic import perovskite
orig = L.GaussianMixture
for cov in ("full", "tied"):
    L.GaussianMixture = functools.partial(orig, covariance_type=cov)
    out = []
    for seed, size, dom in [(0,512,"four_stripes"),(1,512,"four_stripes"),(2,512,"four_stripes"),(7,1024,"four_stripes"),(7,1024,"two_stripes"),(40001,2048,"four_stripes")]:
        im, truth = perovskite(shape=size, domains=dom, seed=seed, **({"dose":100} if size==2048 else {}))
        r = analyze(im, truth=truth, show_progressbar=False, log=lambda *a: None, scree=size<2048, **({"components":4,"domains":4,"method":"nmf"} if size==2048 else {}))
        out.append(round(r.domain_agreement, 3))
    print(cov, out, flush=True)
