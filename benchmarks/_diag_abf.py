import warnings; warnings.simplefilter("ignore")
import numpy as np, hyperspy.api as hs
from scipy.spatial import cKDTree
from _real_images import REAL
from oxygen_real import match
from uncertainty_real import spread, columns_of
cols = {}
for k in ("ADF", "ABF"):
    s = hs.load(REAL / f"atomap_hist_STO110_{k}_full.hdf5", file_format="HSPY")
    s.set_signal_type("atomic_resolution")
    c = columns_of(s)
    scan = np.asarray(s.probabilities.metadata.Signal.stemunmix.find_columns.scan_covariance)[0]
    cols[k] = (c, scan)
(adf, sa), (abf, sb) = cols["ADF"], cols["ABF"]
for n in "AB":
    a, b = adf.select(n), abf.select(n)
    sp = np.median(np.hypot(*np.asarray(adf.lattice_vectors).T))
    ri, gi, _ = match(a.xy, b.xy, 0.3 * sp)
    diff = b.xy[gi] - a.xy[ri]; diff -= np.median(diff, 0)
    pix = a.covariance[ri] + b.covariance[gi] - sa - sb
    sig = np.sqrt(np.diagonal(pix, 0, 1, 2))
    xy = a.xy[ri]
    tree = cKDTree(xy)
    _, nn = tree.query(xy, 9)
    # neighbour correlation of the difference field
    nb = diff[nn[:, 1:]].mean(1)
    corr = [np.corrcoef(diff[:, i], nb[:, i])[0, 1] for i in range(2)]
    print(n, "matched", len(ri), "z pixel", [round(spread(diff[:, i]/sig[:, i]), 2) for i in range(2)],
          "neighbour corr of diff (8 nn)", np.round(corr, 2))
    for R in (2, 3, 5, 8):
        idx = tree.query_ball_point(xy, R * sp)
        loc = np.array([np.median(diff[[j for j in ix if j != m]], 0) if len(ix) > 2 else [np.nan, np.nan] for m, ix in enumerate(idx)])
        m = np.array([len(ix) - 1 for ix in idx])
        hp = diff - loc
        infl = np.sqrt(1 + np.pi / (2 * np.maximum(m, 1)))
        print(f"   less the local median within {R} spacings (~{np.median(m):.0f} columns): z pixel",
              [round(spread(hp[:, i] / (sig[:, i] * infl)), 2) for i in range(2)],
              "smooth field spread px", [round(spread(loc[:, i]), 3) for i in range(2)])
