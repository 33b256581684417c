"""Domains from unmixed windows: held-out synthetic four-stripe images, and the
PbTiO3/SrRuO3 layers of a real image.

    python benchmarks/domains.py [--size 2048] [--seeds 40001 40002 40003]

1. Held-out synthetic La-BiFeO3-like images (seeds 40000+, never used in
   training; four stripe domains, dose 100, 0.8 nm tanh walls, drift and
   jitter): ``stemunmix.report.analyze`` with its defaults (B-centred windows of
   the probability maps, 1.2 x the B-B distance) and NMF or PCA (4 components),
   then GaussianMixture(4) on the loadings; adjusted Rand index of the labels
   against the planted domains, each window's column matched to its true column.
   "nmf lazy": the same on the image as a lazy signal (lazy maps, windows and
   NMF), which must give the eager ARI.
2. Real PbTiO3/SrRuO3 (skipped when ../shared/data/real is absent): PCA (4
   components) of 20 x 20 windows of the image (``source="image"``: the layers
   differ in composition, which shows in the intensities and which the
   probability maps normalise away) centred on every column; for each
   component, the
   separation of its loadings between the PbTiO3 and the SrRuO3 columns:
   |mean difference| / pooled standard deviation. The layers are told apart
   by Z-contrast as in columns_real.py (columns from
   ``find_columns(lattice="checkerboard")``; each column takes the A/B
   contrast of its nearest B column: PbTiO3 > 1.6, SrRuO3 < 1.2, interfaces
   left out): the crop is PbTiO3 at the top and bottom, SrRuO3 in the middle.
   Writes docs/figures/pto_sro_components.png (components and loading maps).

Prints the figures and writes benchmarks/results/domains.json.
"""

import argparse
import json
import platform
import time
import warnings
from datetime import date
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def synthetic(size, seeds):
    from stemunmix.report import analyze
    from stemunmix.synthetic import perovskite

    rows = []
    for seed in seeds:
        image, truth = perovskite(shape=size, domains="four_stripes", dose=100,
                                  seed=seed)  # fmt: skip
        for method in ("nmf", "pca", "nmf lazy"):
            t = time.perf_counter()
            source = image.as_lazy() if method.endswith("lazy") else image.deepcopy()
            r = analyze(source, method=method.split()[0], components=4, domains=4,
                        scree=False, truth=truth, show_progressbar=False,
                        log=lambda *a: None)  # fmt: skip
            rows.append({"size": size, "seed": seed, "method": method,
                         "window": r.window, "windows": len(r.descriptors.columns),
                         "ari": r.domain_agreement,
                         "seconds": time.perf_counter() - t})  # fmt: skip
            print(f"{size}^2 seed {seed} {method}: ARI {r.domain_agreement:.4f} "
                  f"({rows[-1]['windows']} windows of {r.window} px, "
                  f"{rows[-1]['seconds']:.1f} s)", flush=True)  # fmt: skip
    return rows


def pto_sro(figure: Path):
    import hyperspy.api as hs
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from _real_images import REAL

    path = REAL / "temul_PTO-SRO_HAADF_Hadjimichael2020.hspy"
    if not path.exists():
        print(f"PbTiO3/SrRuO3: skipped ({path} absent)")
        return None
    image = hs.load(path)
    image.set_signal_type("atomic_resolution")
    from columns_real import contrast_ratio
    from scipy.spatial import cKDTree

    columns = image.find_columns(lattice="checkerboard")
    ld = image.local_descriptors(20, columns, source="image")
    ld.decomposition(output_dimension=4, print_info=False)
    loadings = np.asarray(ld.learning_results.loadings)
    xy_b = columns.select("B").xy
    ratio = contrast_ratio(image.data, columns.select("A").xy, xy_b)
    ratio = ratio[cKDTree(xy_b).query(ld.columns.xy)[1]]
    pto, sro = ratio > 1.6, ratio < 1.2
    separation = []
    for k in range(loadings.shape[1]):
        a, b = loadings[pto, k], loadings[sro, k]
        pooled = np.sqrt(0.5 * (a.var() + b.var()))
        separation.append(float(abs(a.mean() - b.mean()) / pooled))
    print("PbTiO3/SrRuO3 PCA separation of the layers per component: "
          + ", ".join(f"{s:.2f}" for s in separation))  # fmt: skip
    factors = np.asarray(ld.learning_results.factors)
    shape = ld.axes_manager.signal_shape[::-1]
    fig, axes = plt.subplots(2, 4, figsize=(14, 6))
    for k in range(4):
        axes[0, k].imshow(factors[:, k].reshape(shape), cmap="RdBu_r")
        axes[0, k].set_title(f"component {k}")
        axes[1, k].imshow(image.data, cmap="gray")
        sc = axes[1, k].scatter(ld.columns.x, ld.columns.y, c=loadings[:, k], s=8,
                                cmap="RdBu_r")  # fmt: skip
        axes[1, k].set_title(f"loading {k}: separation {separation[k]:.1f}")
        fig.colorbar(sc, ax=axes[1, k], shrink=0.6)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110)
    plt.close(fig)
    return {"windows": len(ld.columns), "pbtio3_windows": int(pto.sum()),
            "srruo3_windows": int(sro.sum()), "separation": separation}  # fmt: skip


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--seeds", type=int, nargs="+", default=[40001, 40002, 40003])
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    record = {
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{__import__('os').cpu_count()} cores",
        "date": date.today().isoformat(),
        "synthetic": synthetic(args.size, args.seeds),
        "pto_sro": pto_sro(HERE.parent / "docs" / "figures" / "pto_sro_components.png"),
    }
    for method in ("nmf", "pca", "nmf lazy"):
        ari = [r["ari"] for r in record["synthetic"] if r["method"] == method]
        print(f"{method}: ARI min {min(ari):.4f}, median {np.median(ari):.4f}")
    (HERE / "results" / "domains.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
