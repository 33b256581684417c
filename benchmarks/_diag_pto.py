import warnings; warnings.simplefilter("ignore")
import numpy as np
from _real_images import load
from uncertainty_real import spread, columns_of
from stemunmix.core.measure import significance
from stemunmix.signals import AtomicResolutionImage
from stemunmix.signals._measurements import polarization
image = AtomicResolutionImage(load("PbTiO3/SrRuO3 HAADF"))
cols = columns_of(image)
pm = 15.0
disp, sigma, where, cov = polarization(cols, covariance=True)
ok = np.isfinite(disp).all(-1)
sro = (where[..., 1] > 92) & (where[..., 1] < 147) & ok
pto = ((where[..., 1] < 52) | (where[..., 1] > 147)) & ok
off = np.nanmean(disp[sro], 0)
s_sro = np.array([spread((disp - off)[..., i][sro]) for i in range(2)]) * pm
print("SRO robust scatter pm", s_sro.round(2), "reported median sigma pm", (np.nanmedian(sigma[sro], 0) * pm).round(2))
# neighbour differences along the grid in PTO: noise estimate where P is locally uniform
d = []
for ax in (0, 1):
    a = np.diff(disp, axis=ax) / np.sqrt(2)
    m = np.logical_and(np.take(pto, range(1, pto.shape[ax]), axis=ax), np.take(pto, range(pto.shape[ax] - 1), axis=ax))
    d.append(a[m])
d = np.concatenate(d)
s_pto = np.array([spread(d[:, i]) for i in range(2)]) * pm
print("PTO neighbour-difference scatter pm (upper bound on noise)", s_pto.round(2), "reported median sigma pm", (np.nanmedian(sigma[pto], 0) * pm).round(2))
P = disp * pm
strong = pto & (np.hypot(P[..., 0], P[..., 1]) > 15)
print("strong PTO cells", strong.sum(), "|P| median pm", np.median(np.hypot(*P[strong].T)).round(1))
for name, s in (("SRO scatter", s_sro), ("PTO neighbour scatter", s_pto)):
    zz = np.hypot(P[strong][:, 0] / s[0], P[strong][:, 1] / s[1])
    print(f"  share of strong PTO cells beyond 3 noise units if the noise were the {name}: {np.mean(zz > 3):.3f}")
sig = significance(disp, cov)[strong]
print("  reported: share beyond 3 sigma", np.mean(sig > 3).round(3))
