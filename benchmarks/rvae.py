"""The rotation-invariant VAE on variants, stripes and its speed.

    python benchmarks/rvae.py

1. Four polar variants a quarter turn apart (15 x 15 windows of a B column
   displaced 1.5 px in one of four directions in a frame of four A columns,
   noise 0.1 of the A height; 4000 windows): k-means (4) on (cos, sin) of
   the angle latent against the variants (ARI; target >= 0.95) and the
   correlation of each decoded window with its input (median; target >=
   0.9).
2. The four-stripe synthetic (512^2, seeds 0-2, and 1024^2 seed 7 as in
   domains.py, dose 100): the image windows (15 px) around the B columns,
   the latents, a 4-cluster k-means on (cos, sin) of the angle and the
   content latents against the planted domain of each window's column (ARI;
   target >= 0.98), PCA (2) with a Gaussian mixture on the same windows
   beside it, k-means on each B column's measured displacement from its
   four A neighbours (the physical descriptor: what the columns found
   support), and how many of the angle's wrong windows straddle a wall
   (reach a column of another domain within 15 px).
3. The Sm-BiFeO3 columns rendered (``synthetic.from_columns``, 0.0216
   nm/px, dose 100), windows of 15 and 21 px around the B columns: how
   well the latents explain each B column's true displacement
   (cross-validated linear R^2): the rVAE's defaults (cos and sin of the
   angle, the shift, 2 content latents), the rVAE without rotation (the
   shift, 2 content latents; the shift alone) against the first 4 and 6
   PCA loadings (target: at least as well).
4. Speed: 10 000 windows of 15 x 15 fitted (the defaults; target <= 60 s
   on this 2-core CPU), median of 3.

Writes benchmarks/results/rvae.json.
"""

import json
import time
import warnings
from pathlib import Path

import numpy as np
from _results import commit
from scipy.spatial import cKDTree
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from stemunmix.learn import RotationInvariantVAE

HERE = Path(__file__).resolve().parent


def variants(n, d=15, shift=1.5, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:d, :d] - d // 2
    labels = rng.integers(0, 4, n)
    out = np.empty((n, d * d))
    for i, k in enumerate(labels):
        t = k * np.pi / 2
        dx, dy = shift * np.cos(t), shift * np.sin(t)
        img = 0.6 * np.exp(-((xx - dx) ** 2 + (yy - dy) ** 2) / 4.5)
        for cx, cy in ((-7, -7), (7, -7), (-7, 7), (7, 7)):
            img += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 4.5)
        out[i] = (img + noise * rng.standard_normal(img.shape)).ravel()
    return out, labels


def angle_clusters(Z, k, content=False):
    a = Z[:, 0]
    features = [np.cos(a), np.sin(a)]
    if content:
        c = Z[:, 3:]
        features += list(((c - c.mean(0)) / (c.std(0) + 1e-12)).T)
    return KMeans(k, n_init=10, random_state=0).fit_predict(np.column_stack(features))


def on_variants():
    X, y = variants(4000)
    model = RotationInvariantVAE(random_state=0).fit(X)
    Z = model.transform(X)
    decoded = model.inverse_transform(Z)
    r = [np.corrcoef(a, b)[0, 1] for a, b in zip(decoded, X, strict=True)]
    return {
        "ari": float(adjusted_rand_score(y, angle_clusters(Z, 4))),
        "decoded_r_median": float(np.median(r)),
        "decoded_r_min": float(np.min(r)),
    }


def on_stripes(seed, size=512, d=15):
    """The rVAE's angle (and content) clusters of the B windows against the
    planted domains, PCA (2) and a Gaussian mixture on the same windows
    beside it, and where the rVAE's errors are: windows that reach columns
    of another domain (within d px of their centre) straddle a wall."""
    from scipy.optimize import linear_sum_assignment
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    from stemunmix.synthetic import perovskite

    image, truth = perovskite(shape=size, domains="four_stripes", dose=100, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ld = image.local_descriptors(d, classes="B", source="image",
                                     show_progressbar=False)  # fmt: skip
    windows = np.asarray(ld.data).reshape(len(ld.columns), -1)
    true_b = truth.columns.xy
    _, nearest = cKDTree(true_b).query(ld.columns.xy)
    planted = truth.domain[nearest]
    out = {}
    for name, content in (("angle", False), ("angle and content", True)):
        model = RotationInvariantVAE(random_state=0)
        Z = model.fit_transform(windows)
        labels = angle_clusters(Z, 4, content)
        out[name] = float(adjusted_rand_score(planted, labels))
        if not content:
            table = np.zeros((4, 4))
            np.add.at(table, (labels, planted), 1)
            rows, cols = linear_sum_assignment(-table)
            wrong = dict(zip(rows, cols, strict=True))
            wrong = np.array([wrong[k] for k in labels]) != planted
    reach = cKDTree(true_b).query_ball_point(ld.columns.xy, r=d)
    wall = np.array([len(set(truth.domain[n])) > 1 for n in reach])
    out["physical"] = physical_ari(image, truth)
    loadings = PCA(2).fit_transform(windows - windows.mean(1, keepdims=True))
    linear = GaussianMixture(4, random_state=0).fit_predict(loadings)
    out["pca and mixture"] = float(adjusted_rand_score(planted, linear))
    out["wrong"], out["wrong_at_walls"] = int(wrong.sum()), int((wrong & wall).sum())
    out["wall_windows"] = int(wall.sum())
    out["windows"] = len(windows)
    return out


def physical_ari(image, truth) -> float:
    """The ceiling a window learner works under: k-means (4) on each B
    column's measured displacement from its four A neighbours (the columns
    ``find_columns`` finds) against the planted domains (ARI)."""
    from stemunmix.core.neighbours import displacement_descriptors

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = image.find_columns(show_progressbar=False)
    b, a = found.select("B"), found.select("A")
    offsets, ok, _ = displacement_descriptors(b.xy, a.xy)
    vectors = -offsets[ok].mean(1)
    true_b = truth.columns.labels == list(truth.columns.class_names).index("B")
    _, nearest = cKDTree(truth.columns.xy[true_b]).query(b.xy[ok])
    planted = np.asarray(truth.domain)[true_b][nearest]
    labels = KMeans(4, n_init=10, random_state=0).fit_predict(vectors)
    return float(adjusted_rand_score(planted, labels))


def smbfo_r2(dose=100, sizes=(15, 21), seed=0):
    """Cross-validated R^2 (5 folds, linear; the mean over x and y) of each
    B column's true displacement from the latents of windows centred on the
    found B columns (the Sm-BiFeO3 columns rendered), for each window side
    in ``sizes``: the rVAE's defaults (cos and sin of the angle, the shift,
    2 content latents), the rVAE with ``rotation=False`` (the shift and 2
    content latents) and the first 4 and 6 PCA loadings of the same
    windows. At 15 px the four A neighbours (9.2 px along x and y) lie
    outside the window; at 21 px their peaks are inside it."""
    from domains_real import displacement_labels, smbfo_columns
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import cross_val_score

    from stemunmix.signals import AtomicResolutionImage
    from stemunmix.synthetic import from_columns

    given = smbfo_columns()
    image, truth = from_columns(given, (1024, 1024), pixel_size=0.0216, dose=dose,
                                drift=(4.0, -3.0), jitter=0.15, seed=seed)  # fmt: skip
    true_xy, vectors, _ = displacement_labels(given)
    _, gi = cKDTree(given.select("B").xy).query(true_xy)
    seen = truth.columns.select("B").xy[gi]
    signal = AtomicResolutionImage(image)
    out = {}
    for d in sizes:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ld = signal.local_descriptors(
                d, classes="B", source="image", show_progressbar=False
            )
        windows = np.asarray(ld.data).reshape(len(ld.columns), -1)
        dist, idx = cKDTree(seen).query(ld.columns.xy)
        near = dist < 3.0
        target = vectors[idx[near]]

        def r2(features, target=target):
            return float(np.mean([
                cross_val_score(LinearRegression(), features, target[:, k], cv=5,
                                scoring="r2").mean()
                for k in range(2)
            ]))  # fmt: skip

        Z = RotationInvariantVAE(random_state=0).fit_transform(windows)[near]
        turned = np.column_stack([np.cos(Z[:, 0]), np.sin(Z[:, 0]), Z[:, 1:]])
        fixed = RotationInvariantVAE(random_state=0, rotation=False)
        F = fixed.fit_transform(windows)[near][:, 1:]
        out[str(d)] = {
            "windows": int(near.sum()),
            "rvae": r2(turned),
            "rvae_no_rotation": r2(F),
            "rvae_no_rotation_shift": r2(F[:, :2]),
            "pca4": r2(PCA(4, random_state=0).fit_transform(windows)[near]),
            "pca6": r2(PCA(6, random_state=0).fit_transform(windows)[near]),
        }
    return out


def speed(repeats=3):
    X, _ = variants(10_000, seed=1)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        RotationInvariantVAE(random_state=0).fit(X)
        times.append(time.perf_counter() - t)
    return float(np.median(times)), times


def main():
    out = {"commit": commit(), "date": time.strftime("%Y-%m-%d")}
    out["variants"] = v = on_variants()
    print(f"four variants a quarter turn apart: ARI {v['ari']:.3f}, decoded r median "
          f"{v['decoded_r_median']:.3f} (min {v['decoded_r_min']:.3f})", flush=True)  # fmt: skip
    out["stripes"] = {}
    for size, seed in ((512, 0), (512, 1), (512, 2), (1024, 7)):
        s = out["stripes"][f"{size} {seed}"] = on_stripes(seed, size)
        print(f"four stripes {size}^2 seed {seed} ({s['windows']} B windows): ARI "
              f"from the angle {s['angle']:.3f}, from the angle and content "
              f"{s['angle and content']:.3f}, PCA (2) and a mixture on the same "
              f"windows {s['pca and mixture']:.3f}; the measured displacement "
              f"of each B column (k-means) {s['physical']:.3f}; the angle's "
              f"{s['wrong']} wrong "
              f"windows: {s['wrong_at_walls']} straddle a wall (of "
              f"{s['wall_windows']} that do)", flush=True)  # fmt: skip
    out["smbfo"] = smbfo_r2()
    for d, m in out["smbfo"].items():
        print(f"Sm-BiFeO3 render, {d} px windows ({m['windows']} B windows), "
              f"cross-validated R^2 of the true B displacement: rVAE defaults "
              f"{m['rvae']:.3f} (6 features), rotation=False "
              f"{m['rvae_no_rotation']:.3f} (4; its shift alone "
              f"{m['rvae_no_rotation_shift']:.3f}), PCA loadings {m['pca4']:.3f} "
              f"(4), {m['pca6']:.3f} (6)", flush=True)  # fmt: skip
    median, times = speed()
    out["speed_10k_s"] = {"median": median, "runs": times}
    print(f"fit of 10000 windows of 15 x 15: median {median:.1f} s (runs "
          + ", ".join(f"{t:.1f}" for t in times) + ")", flush=True)  # fmt: skip
    (HERE / "results" / "rvae.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
