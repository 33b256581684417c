import sys, time, warnings
import numpy as np
import hyperspy.api as hs
from _real_images import load
from stemunmix.report import analyze, _loadings
from stemunmix.synthetic import perovskite
warnings.simplefilter("ignore")
cases = sys.argv[1:]
for case in cases:
    t = time.perf_counter()
    truth = None
    if case.startswith("demo"):
        seed = int(case[4:])
        im, truth = perovskite(shape=512, domains="four_stripes", seed=seed)
    elif case == "stripes1024":
        im, truth = perovskite(shape=1024, domains="four_stripes", seed=7)
    elif case == "none512":
        im, truth = perovskite(shape=512, domains="none", seed=3)
    else:
        name = {"sto": "SrTiO3 [110] ADF", "pto": "PbTiO3/SrRuO3 HAADF", "nsmo": "NSMO [110] HAADF", "low": "SrTiO3 low dose"}[case]
        im = hs.signals.Signal2D(load(name))
    r = analyze(im, truth=truth, show_progressbar=False, log=lambda *a: None)
    L = _loadings(r.descriptors, r.method, r.components)
    labels = np.asarray(r.descriptors.learning_results.cluster_labels).argmax(0)
    np.savez(f"/tmp/dom/{case}.npz", L=L, xy=r.descriptors.columns.xy, labels=labels,
             ari=np.nan if r.domain_agreement is None else r.domain_agreement)
    print(case, r.components, r.domains, r.choices.get("domains"), r.domain_agreement, f"{time.perf_counter()-t:.0f}s", flush=True)
