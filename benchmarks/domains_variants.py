"""What the defaults of report.analyze were chosen from (#21): variants of
the windows and of the domain count on one render of the measured Sm-BiFeO3
field (dose 100, 0.0216 nm/px, seed 0; see domains_real.py for the truth).

    python benchmarks/domains_variants.py

Each line: the adjusted Rand index of GaussianMixture(4) on the variant's
loadings against the 4-domain truth; then the number of domains each
criterion counts on the default loadings and on the true vectors.
"""

import warnings

import domains_real as dr
import numpy as np
from scipy.spatial import cKDTree
from sklearn.decomposition import PCA


def main():
    from stemunmix.core.selection import count_domains
    from stemunmix.learn import GaussianMixture
    from stemunmix.report import analyze
    from stemunmix.synthetic import from_columns

    warnings.simplefilter("ignore")
    given = dr.smbfo_columns()
    image, truth = from_columns(given, (1024, 1024), pixel_size=0.0216, dose=100,
                                drift=(4.0, -3.0), jitter=0.15, seed=0)  # fmt: skip
    true_xy, true_vectors, true_labels = dr.displacement_labels(given)
    _, gi = cKDTree(given.select("B").xy).query(true_xy)
    seen = truth.columns.select("B").xy[gi]
    prob = image.segment(show_progressbar=False)
    cols = prob.find_columns(image=image, show_progressbar=False)

    def ari(xy, values):
        labels = GaussianMixture(4, random_state=0).fit(values).labels_
        return dr.ari_at(xy, labels, seen, true_labels)[0]

    def pca(ld, n, mean_out):
        x = np.asarray(ld.data, float).reshape(len(ld.data), -1)
        if mean_out:
            x = x - x.mean(1, keepdims=True)
        return PCA(n).fit_transform(x)

    rows = []
    ld = prob.local_descriptors(22, cols, classes="B", show_progressbar=False)
    ld.decomposition(algorithm="NMF", output_dimension=4, print_info=False)
    rows.append(("B-centred 22 px probability windows, NMF 4 (the old defaults)",
                 ari(ld.columns.xy, ld.learning_results.loadings)))  # fmt: skip
    ld.decomposition(algorithm="SVD", output_dimension=4, print_info=False)
    rows.append(("the same, HyperSpy SVD 4 (not centred)",
                 ari(ld.columns.xy, ld.learning_results.loadings)))  # fmt: skip
    for d in (9, 22):
        ld = image.local_descriptors(d, cols, classes="B", source="image")
        rows.append((f"B-centred {d} px image windows less their mean, PCA 2",
                     ari(ld.columns.xy, pca(ld, 2, True))))  # fmt: skip
    for d in (5, 7, 9, 11):
        ld = image.local_descriptors(
            d, cols, classes="B", source="image", centre="cell"
        )
        rows.append((f"cell-centred {d} px image windows, PCA 2",
                     ari(ld.columns.xy, pca(ld, 2, False))))  # fmt: skip
        rows.append((f"cell-centred {d} px image windows less their mean, PCA 2",
                     ari(ld.columns.xy, pca(ld, 2, True))))  # fmt: skip
    ld = prob.local_descriptors(12, cols, classes="B", channels=["B"], centre="cell")
    rows.append(("cell-centred 12 px B probability windows, PCA 2",
                 ari(ld.columns.xy, pca(ld, 2, False))))  # fmt: skip
    phys = image.displacement_descriptors(cols)
    x = np.asarray(phys.data).reshape(len(phys.data), -1)
    rows.append(
        ("physical descriptor (four A offsets, 8 numbers)", ari(phys.columns.xy, x))
    )
    vec = -np.asarray(phys.data).mean(-1)
    rows.append(
        ("measured B displacement vectors (2 numbers)", ari(phys.columns.xy, vec))
    )
    for k in (3, 5, 9):
        _, idx = cKDTree(phys.columns.xy).query(phys.columns.xy, k=k)
        rows.append((f"measured vectors averaged over {k} nearest sites",
                     ari(phys.columns.xy, vec[idx].mean(1))))  # fmt: skip
    for name, value in rows:
        print(f"{name:64s} ARI {value:.3f}", flush=True)
    with warnings.catch_warnings():
        result = analyze(image, domains=4, show_progressbar=False, log=dr._quiet)
    loadings = result.descriptors._per_column("decomposition")[:, : result.components]
    for name, x in (("default loadings", loadings), ("true vectors", true_vectors)):
        found = count_domains(x)
        print(f"{name}: silhouette {found['n_domains']} domains, BIC "
              f"{int(np.argmin(found['bic'])) + 1}, ICL {int(np.argmin(found['icl'])) + 1}")  # fmt: skip
    _, _, labels3 = dr.displacement_labels(given, 3)
    from sklearn.metrics import adjusted_rand_score

    print(
        f"true vectors: GMM(3) against GMM(4), ARI {adjusted_rand_score(true_labels, labels3):.3f}"
    )


if __name__ == "__main__":
    main()
