"""Domains of a real distortion field, found with the defaults only (#21).

    python benchmarks/domains_real.py [--quick]

Renders the measured column positions of a real Sm-doped BiFeO3 image
(../shared/data/real/atomai_SmBFO_columns_rowcol_class.npy) with
``stemunmix.synthetic.from_columns`` (scan drift and line jitter) at doses
30, 100 and 300, three noise seeds and two pixel sizes, and runs
``stemunmix.report.analyze(image)`` on each with nothing chosen by hand.

The truth: a Gaussian mixture (4) of the true B displacement vectors, each B
column's offset from the centre of its four A neighbours on the median cell
(``stemunmix.core.neighbours``). Beside the defaults' adjusted Rand index
it prints the ceiling the image allows: the same mixture fitted to the B
displacement vectors *measured* by find_columns on that render. Then the
synthetic four stripes (2048^2, held-out seed) and the demo (512^2), and
from_columns on the columns measured on the real PbTiO3/SrRuO3 image
(recall and position error of find_columns on the render).
JSON in benchmarks/results/domains_real.json.
"""

import argparse
import json
import os
import platform
import sys
import time
import warnings
from datetime import date
from pathlib import Path

import numpy as np
from _results import commit

HERE = Path(__file__).resolve().parent
REAL = Path(
    os.environ.get("STEMUNMIX_REAL_DATA", HERE.parents[1] / "shared" / "data" / "real")
)


def _quiet(*args):
    pass


def smbfo_columns():
    from stemunmix import Columns

    rows = np.load(REAL / "atomai_SmBFO_columns_rowcol_class.npy")
    return Columns(rows[:, [1, 0]], rows[:, 2].astype(int), ["A", "B"])


def displacement_labels(columns, k=4):
    """(B positions, displacement vectors, mixture labels) of the B columns
    with all four A neighbours on the median cell."""
    from stemunmix.core.neighbours import displacement_descriptors
    from stemunmix.learn import GaussianMixture

    b, a = columns.select("B"), columns.select("A")
    offsets, ok, _ = displacement_descriptors(b.xy, a.xy)
    vectors = -offsets[ok].mean(1)
    labels = GaussianMixture(k, random_state=0).fit(vectors).labels_
    return b.xy[ok], vectors, labels


def ari_at(xy, labels, truth_xy, truth_labels, tol=3.0):
    from scipy.spatial import cKDTree
    from sklearn.metrics import adjusted_rand_score

    dist, idx = cKDTree(xy).query(truth_xy)
    near = dist < tol
    return float(adjusted_rand_score(truth_labels[near], labels[idx[near]])), float(
        near.mean()
    )


def smbfo_run(dose, factor, seed):
    from scipy.spatial import cKDTree

    from stemunmix import Columns
    from stemunmix.report import analyze
    from stemunmix.synthetic import from_columns

    given = smbfo_columns()
    given = Columns(given.xy * factor, given.labels, given.class_names)
    n = int(round(1024 * factor))
    image, truth = from_columns(given, (n, n), pixel_size=0.0216 / factor, dose=dose,
                                drift=(4.0 * factor, -3.0 * factor), jitter=0.15,
                                seed=seed)  # fmt: skip
    from stemunmix.core.selection import count_domains

    true_xy, true_vectors, true_labels = displacement_labels(given)
    # Truth positions as the scan saw them (where find_columns finds them).
    gb, seen = given.select("B").xy, truth.columns.select("B").xy
    _, gi = cKDTree(gb).query(true_xy)
    true_seen = seen[gi]
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = analyze(image, show_progressbar=False, log=_quiet)
    wall = time.perf_counter() - t
    ld = result.descriptors
    labels = np.asarray(ld.learning_results.cluster_labels).argmax(0)
    ari, matched = ari_at(ld.columns.xy, labels, true_seen, true_labels)
    phys = result.physical
    phys_labels = np.asarray(phys.learning_results.cluster_labels).argmax(0)
    phys_ari, _ = ari_at(phys.columns.xy, phys_labels, true_seen, true_labels)
    m_xy, _, m_labels = displacement_labels(result.columns)
    ceiling, _ = ari_at(m_xy, m_labels, true_seen, true_labels)
    # The truth's own number of separated groups (the silhouette on the true
    # vectors), and the defaults against a truth of that many.
    k_true = count_domains(true_vectors)["n_domains"]
    _, _, labels_k = displacement_labels(given, k_true)
    ari_k, _ = ari_at(ld.columns.xy, labels, true_seen, labels_k)
    return {
        "dose": dose, "pixel_size_nm": 0.0216 / factor, "seed": seed,
        "ari_defaults": ari, "matched": matched, "ari_physical_descriptor": phys_ari,
        "ari_measured_vectors_ceiling": ceiling,
        "truth_silhouette_domains": k_true, "ari_defaults_vs_truth_of_that_many": ari_k,
        "learned_vs_physical": result.physical_agreement,
        "chosen": {k: (v["value"] if isinstance(v, dict) else v)
                   for k, v in result.choices.items()},
        "wall_s": wall,
    }  # fmt: skip


def synthetic_run(shape, seed, domains="four_stripes"):
    from stemunmix.report import analyze
    from stemunmix.synthetic import perovskite

    image, truth = perovskite(shape=shape, domains=domains, dose=100, seed=seed)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = analyze(image, truth=truth, show_progressbar=False, log=_quiet)
    return {
        "shape": shape, "seed": seed, "domains": domains,
        "ari_defaults": result.domain_agreement,
        "ari_physical_descriptor": result.physical_truth_agreement,
        "chosen": {k: (v["value"] if isinstance(v, dict) else v)
                   for k, v in result.choices.items()},
        "wall_s": time.perf_counter() - t,
    }  # fmt: skip


def pto_render():
    """from_columns on the columns find_columns measured on the real
    PbTiO3/SrRuO3 image: the columns found again on the render."""
    import hyperspy.api as hs

    from stemunmix.core.peaks import match
    from stemunmix.synthetic import from_columns

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        real = hs.load(REAL / "temul_PTO-SRO_HAADF_Hadjimichael2020.hspy")
        real.set_signal_type("atomic_resolution")
        measured = real.find_columns(show_progressbar=False)
        scale = real.axes_manager.signal_axes[0].scale
        image, truth = from_columns(measured, real.data.shape, pixel_size=scale,
                                    dose=100, seed=0)  # fmt: skip
        found = image.find_columns(show_progressbar=False)
    h, w = real.data.shape
    inner = ((truth.columns.xy > 15).all(1) & (truth.columns.xy[:, 0] < w - 15)
             & (truth.columns.xy[:, 1] < h - 15))  # fmt: skip
    ref = truth.columns.xy[inner]
    ri, oi = match(ref, found.xy, 3.0)
    err = np.hypot(*(ref[ri] - found.xy[oi]).T)
    return {"measured_columns": len(measured), "recall": len(ri) / len(ref),
            "median_position_error_px": float(np.median(err))}  # fmt: skip


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="dose 100, one seed")
    args = parser.parse_args()
    if not REAL.is_dir():
        sys.exit(f"real data not found at {REAL}")
    doses = (100,) if args.quick else (30, 100, 300)
    seeds = (0,) if args.quick else (0, 1, 2)
    factors = (1.0,) if args.quick else (1.0, 0.75)
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "date": date.today().isoformat(),
           "commit": commit(),
           "smbfo": [], "synthetic": []}  # fmt: skip
    for factor in factors:
        for dose in doses:
            for seed in seeds:
                r = smbfo_run(dose, factor, seed)
                out["smbfo"].append(r)
                print(f"SmBFO {r['pixel_size_nm']:.4f} nm/px dose {dose:>3} seed {seed}: "
                      f"ARI defaults {r['ari_defaults']:.3f}, physical descriptor "
                      f"{r['ari_physical_descriptor']:.3f}, measured vectors (ceiling) "
                      f"{r['ari_measured_vectors_ceiling']:.3f}; the true vectors' "
                      f"silhouette: {r['truth_silhouette_domains']} domains, defaults "
                      f"against that truth {r['ari_defaults_vs_truth_of_that_many']:.3f}; "
                      f"chosen {r['chosen']} "
                      f"({r['wall_s']:.0f} s)", flush=True)  # fmt: skip
    for dose in doses:
        rows = [r for r in out["smbfo"] if r["dose"] == dose]
        print(f"SmBFO dose {dose:>3}: ARI defaults min {min(r['ari_defaults'] for r in rows):.3f} "
              f"median {np.median([r['ari_defaults'] for r in rows]):.3f}; ceiling median "
              f"{np.median([r['ari_measured_vectors_ceiling'] for r in rows]):.3f}")  # fmt: skip
    synth = (
        [(2048, 40001, "four_stripes")]
        + [(512, s, "four_stripes") for s in seeds]
        + [(1024, 7, p) for p in ("two_stripes", "three_stripes", "four_stripes")]
    )
    for shape, seed, pattern in synth:
        r = synthetic_run(shape, seed, pattern)
        out["synthetic"].append(r)
        print(f"{pattern} {shape}^2 seed {seed}: ARI defaults {r['ari_defaults']:.3f}, "
              f"physical descriptor {r['ari_physical_descriptor']:.3f}; chosen "
              f"{r['chosen']} ({r['wall_s']:.0f} s)", flush=True)  # fmt: skip
    out["pto_render"] = pto_render()
    print(f"from_columns on the PbTiO3/SrRuO3 columns: {out['pto_render']}")
    (HERE / "results").mkdir(exist_ok=True)
    name = "domains_real_quick.json" if args.quick else "domains_real.json"
    (HERE / "results" / name).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
