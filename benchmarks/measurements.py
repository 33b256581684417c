"""Measurements on the lattice: every figure of the "columns to measurements" step.

    python benchmarks/measurements.py [--draws 50] [--skip-real]

1. Position uncertainty, by Monte Carlo: ``--draws`` noise draws (Poisson
   plus read noise 1) of one held-out synthetic image (256^2, seed 5,
   rotation; no scan distortion: shot noise only) at doses 20, 100 and 500, each through the whole
   ``find_columns()`` (segmentation included). Per class, the median over
   the interior columns of reported sigma / observed scatter, and reported
   sigma against the Cramer-Rao bound of an isolated column with the class's
   height, width and background.
2. Polarization per cell (512^2, quadrants, 0.03 nm planted, dose 100): RMS
   error per component against the same cells from the true positions, over
   the CRB of the displacement; the reported sigma beside it.
3. A planted 2 % exx step (a square lattice rendered by
   ``synthetic.from_columns``), doses 100 and 500: RMS error of exx and eyy
   per cell against the left half as reference.
4. Intensity classes: 20 % of the A sites 20 % darker, dose 100: share of
   the dark sites found and of the bright ones called dark.
5. Lattice indexing on the real images (SrTiO3 [110] ADF, PbTiO3/SrRuO3,
   NSMO [110]): inconsistent bonds per sublattice; PbTiO3/SrRuO3 polarization
   per cell by row of cells (median vector and length, pm).
6. Cost: indexing plus uncertainties against the whole ``find_columns()`` on
   its maps, 512^2 to 2048^2, warm, median of 3: the lattice indexing and the
   noise model and sigma timed inside it; the covariance terms of the fit
   (gathered in its last round) as the difference of the same fit with and
   without them, side by side (medians of 3).

Prints every figure and writes benchmarks/results/measurements.json.
"""

import argparse
import json
import platform
import sys
import time
import warnings
from datetime import date
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "core"))  # test_lattice
sys.path.insert(0, str(HERE))


def quiet_columns(image):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return image.find_columns(show_progressbar=False)


def monte_carlo(draws):
    from test_lattice import _crb_position

    from stemunmix.core.peaks import match
    from stemunmix.signals import AtomicResolutionImage
    from stemunmix.synthetic import perovskite

    out = {}
    for dose in (20, 100, 500):
        # Shot noise only: the scan distortion of perovskite()'s defaults is
        # fixed by the seed, so draws of the noise alone would not show it,
        # though the error model rightly counts it (uncertainty_synthetic.py
        # draws it anew each time).
        image, truth = perovskite(shape=256, dose=dose, seed=5, rotation=7.0,
                                  jitter=0.0, drift=(0.0, 0.0))  # fmt: skip
        expected = truth.expected.astype(float)
        ref = truth.columns.xy
        rng = np.random.default_rng(dose)
        est = np.full((draws, len(ref), 2), np.nan)
        sig = np.full((draws, len(ref), 2), np.nan)
        for t in range(draws):
            data = rng.poisson(expected) + rng.standard_normal(expected.shape)
            img = AtomicResolutionImage(data.astype(np.float32))
            img.axes_manager.signal_axes[0].scale = 0.02
            img.axes_manager.signal_axes[1].scale = 0.02
            cols = quiet_columns(img)
            ri, oi = match(ref, cols.xy, 3.0)
            est[t, ri], sig[t, ri] = cols.xy[oi], cols.sigma[oi]
        found = np.isfinite(est).all((0, 2))
        observed = np.nanstd(est, 0, ddof=1)
        reported = np.nanmean(sig, 0)
        inner = found & (ref.min(1) > 16) & (ref.max(1) < 240)
        crb = _crb_position(truth, 0.04 / 0.02)
        row = {}
        for k, name in enumerate("AB"):
            sel = inner & (truth.columns.labels == k)
            row[name] = {
                "columns": int(sel.sum()),
                "reported_over_observed": float(
                    np.median(reported[sel] / observed[sel])
                ),
                "reported_over_crb": float(np.median(reported[sel]) / crb[k]),
                "observed_over_crb": float(np.median(observed[sel]) / crb[k]),
                "reported_px": float(np.median(reported[sel])),
                "crb_px": crb[k],
            }
        out[dose] = row
        print(f"sigma, dose {dose}: " + "; ".join(
            f"{n}: reported/observed {r['reported_over_observed']:.3f}, reported/CRB "
            f"{r['reported_over_crb']:.3f}, observed/CRB {r['observed_over_crb']:.3f} "
            f"({r['columns']} columns, CRB {r['crb_px']:.4f} px)" for n, r in row.items()),
            flush=True)  # fmt: skip
    return out


def polarization():
    from test_lattice import _crb_position

    from stemunmix import Columns
    from stemunmix.core.peaks import match
    from stemunmix.synthetic import perovskite

    image, truth = perovskite(shape=512, dose=100, seed=21, displacement=0.03,
                              domains="quadrants")  # fmt: skip
    cols = quiet_columns(image)
    p = cols.polarization_map()
    disp, sig = np.moveaxis(p.data[:2], 0, -1), np.moveaxis(p.data[2:], 0, -1)
    ri, oi = match(truth.columns.xy, cols.xy, 3.0)
    xy_true = cols.xy.copy()
    xy_true[oi] = truth.columns.xy[ri]
    true = Columns(xy_true, cols.labels, cols.class_names, ij=cols.ij, sigma=cols.sigma)
    ref = np.moveaxis(true.polarization_map().data[:2], 0, -1)
    ok = np.isfinite(disp).all(-1) & np.isfinite(ref).all(-1)
    rms = float(np.sqrt(np.mean((disp - ref)[ok] ** 2)))
    crb_a, crb_b = _crb_position(truth, 2.0)
    crb = float(np.sqrt(crb_b**2 + crb_a**2 / 4))
    row = {"cells": int(ok.sum()), "rms_px": rms, "crb_px": crb, "rms_over_crb": rms / crb,
           "median_sigma_px": float(np.median(sig[ok])),
           "median_length_px": float(np.median(np.hypot(*disp[ok].T)))}  # fmt: skip
    print(f"polarization per cell: {row['cells']} cells, RMS error {rms:.4f} px per "
          f"component = {rms / crb:.2f} x CRB ({crb:.4f} px); reported sigma "
          f"{row['median_sigma_px']:.4f} px; median length {row['median_length_px']:.3f} px "
          "(planted 1.5)", flush=True)  # fmt: skip
    return row


def strain():
    from test_lattice import _strain_step

    out = {}
    for dose in (100, 500):
        image, _ = _strain_step(dose)
        cols = quiet_columns(image)
        ni, nj = cols.ij.max(0) + 1
        left = np.zeros((nj, ni), bool)
        left[:, : ni // 2 - 1] = True
        s = cols.strain_map(reference=left)
        planted = np.where(np.arange(ni) < ni // 2, 0.0, 0.02)[None].repeat(nj, 0)
        ok = np.isfinite(s.data[0])
        ok[:, ni // 2 - 1 : ni // 2 + 1] = False
        # What the positions allow: a cell's a vector is the mean of two edges,
        # so its x has the variance of one A position's x; exx = a_x / |a0|.
        a_sigma = np.nanmedian(cols.select("A").sigma[:, 0])
        row = {"cells": int(ok.sum()),
               "exx_predicted_sd": float(a_sigma / np.hypot(*cols.lattice_vectors[0])),
               "exx_rms": float(np.sqrt(np.mean((s.data[0] - planted)[ok] ** 2))),
               "eyy_rms": float(np.sqrt(np.mean(s.data[1][ok] ** 2))),
               "exy_rms": float(np.sqrt(np.mean(s.data[2][ok] ** 2))),
               "exx_right_median": float(np.median(s.data[0][ok & (planted > 0)]))}  # fmt: skip
        out[dose] = row
        print(f"strain step 2 %, dose {dose}: exx RMS error {100 * row['exx_rms']:.3f} %, "
              f"eyy {100 * row['eyy_rms']:.3f} %, exy {100 * row['exy_rms']:.3f} % "
              f"({row['cells']} cells; the positions' sigma allows "
              f"{100 * row['exx_predicted_sd']:.3f} %); right half median exx "
              f"{100 * row['exx_right_median']:.3f} %", flush=True)  # fmt: skip
    return out


def intensity():
    from stemunmix.core.peaks import match
    from stemunmix.synthetic import perovskite

    image, truth = perovskite(
        shape=512, dose=100, seed=8, dark_fraction=0.2, dark_ratio=0.8
    )
    cols = quiet_columns(image)
    classes = cols.intensity_classes("A", 2)
    a_true = truth.columns.labels == 0
    ri, oi = match(truth.columns.xy[a_true], cols.xy, 3.0)
    dark = truth.amplitude[a_true][ri] < 0.9
    inner = (cols.xy[oi].min(1) > 12) & (cols.xy[oi].max(1) < 500)
    found = classes[oi] == 0
    row = {"dark_sites": int((inner & dark).sum()),
           "dark_found": float(found[inner & dark].mean()),
           "bright_called_dark": float(found[inner & ~dark].mean())}  # fmt: skip
    print(f"intensity classes, dose 100: {100 * row['dark_found']:.1f} % of "
          f"{row['dark_sites']} dark A sites found, {100 * row['bright_called_dark']:.2f} % "
          "of bright ones called dark", flush=True)  # fmt: skip
    return row


def real_images():
    from _real_images import load

    from stemunmix.core.indexing import inconsistent_bonds
    from stemunmix.signals import AtomicResolutionImage

    out = {}
    for name, px in (("SrTiO3 [110] ADF", None), ("PbTiO3/SrRuO3 HAADF", 15.0),
                     ("NSMO [110] HAADF", None)):  # fmt: skip
        cols = quiet_columns(AtomicResolutionImage(load(name)))
        row = {"columns": len(cols)}
        for k, cls in enumerate(cols.class_names[:2]):
            sel = cols.labels == k
            bad, bonds = inconsistent_bonds(
                cols.xy[sel], cols.ij[sel], cols.lattice_vectors
            )
            row[cls] = {"inconsistent_bonds": bad, "bonds": bonds,
                        "duplicate_sites": int(sel.sum() - len(np.unique(cols.ij[sel], axis=0)))}  # fmt: skip
        print(f"{name}: " + "; ".join(f"{c} {r['inconsistent_bonds']} of {r['bonds']} bonds "
              f"inconsistent, {r['duplicate_sites']} duplicate sites"
              for c, r in row.items() if isinstance(r, dict)), flush=True)  # fmt: skip
        if px:
            p = cols.polarization_map().data * px
            by_row = []
            for j in range(p.shape[1]):
                ok = np.isfinite(p[0, j])
                if ok.sum() < 5:
                    continue
                v = np.median(p[:2, j][:, ok], 1)
                by_row.append({"j": j, "cells": int(ok.sum()), "median_pm": v.tolist(),
                               "median_length_pm": float(np.median(np.hypot(*p[:2, j][:, ok]))),
                               "median_sigma_pm": float(np.median(p[2:, j][:, ok]))})  # fmt: skip
            row["polarization_by_row"] = by_row
            print("  PbTiO3/SrRuO3 polarization per cell row j: " + ", ".join(
                f"j {r['j']}: ({r['median_pm'][0]:.1f}, {r['median_pm'][1]:.1f}) pm, "
                f"length {r['median_length_pm']:.1f} +- {r['median_sigma_pm']:.1f}"
                for r in by_row), flush=True)  # fmt: skip
            # Edge artefacts: in every row of cells, how far the outermost
            # complete cells (left and right) stray from the row's median
            # vector, against the row's other cells (rows differ by layer).
            edge_dev, inner_dev = [], []
            for j in range(p.shape[1]):
                ok = np.flatnonzero(np.isfinite(p[0, j]))
                if len(ok) < 5:
                    continue
                v = p[:2, j][:, ok]
                dev = np.hypot(*(v - np.median(v, 1, keepdims=True)))
                edge_dev += dev[[0, -1]].tolist()
                inner_dev += dev[1:-1].tolist()
            row["edge_cells"] = {"cells": len(edge_dev),
                                 "edge_median_deviation_pm": float(np.median(edge_dev)),
                                 "edge_max_deviation_pm": float(np.max(edge_dev)),
                                 "inner_median_deviation_pm": float(np.median(inner_dev)),
                                 "inner_p95_deviation_pm": float(np.percentile(inner_dev, 95))}  # fmt: skip
            e = row["edge_cells"]
            print(f"  edge cells ({e['cells']}, the first and last of each row): median "
                  f"deviation from their row's median vector {e['edge_median_deviation_pm']:.1f} pm "
                  f"(max {e['edge_max_deviation_pm']:.1f}); the rows' other cells: median "
                  f"{e['inner_median_deviation_pm']:.1f} pm (p95 {e['inner_p95_deviation_pm']:.1f})",
                  flush=True)  # fmt: skip
        out[name] = row
    return out


def cost():
    import stemunmix.core.find as find
    import stemunmix.core.indexing as indexing
    from stemunmix.core.find import frame_sizes, middle
    from stemunmix.core.refine import refine_gaussian
    from stemunmix.synthetic import perovskite

    spent = {}

    def timed(module, name, key):
        fn = getattr(module, name)

        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            out = fn(*args, **kwargs)
            spent[key] = spent.get(key, 0.0) + time.perf_counter() - t
            return out

        setattr(module, name, wrapper)

    timed(find, "unpack_fit", "noise model and sigma")
    timed(indexing, "index_columns", "indexing")
    out = {}
    for size in (512, 1024, 2048):
        image, _ = perovskite(shape=size, dose=100, seed=50_000 + size)
        prob = image.segment(show_progressbar=False)
        runs = []
        for _ in range(4):
            spent.clear()
            t = time.perf_counter()
            cols = prob.find_columns(show_progressbar=False)
            runs.append((time.perf_counter() - t, dict(spent)))
        runs = sorted(runs[1:], key=lambda r: r[0])  # the first: warm-up
        total, parts = runs[1]
        # The covariance terms, side by side: the same fit with and without.
        raw = image.data.astype(float)
        d_ab = prob._column_distances([0, 1], None)[()][1]
        rows, cols_ = middle(raw.shape)
        sizes = frame_sizes(prob.data[:, rows, cols_], raw[rows, cols_], [0, 1],
                            0.5 * d_ab, 0.5, d_ab)  # fmt: skip
        with_, without = [], []
        for _ in range(3):
            for flag, into in ((True, with_), (False, without)):
                t = time.perf_counter()
                refine_gaussian(raw, cols.xy, **sizes, uncertainty=flag)
                into.append(time.perf_counter() - t)
        parts["covariance terms"] = max(
            0.0, float(np.median(with_) - np.median(without))
        )
        share = sum(parts.values()) / total
        out[size] = {"columns": len(cols), "find_columns_s": total,
                     "parts_s": parts, "share": share}  # fmt: skip
        print(f"cost {size}^2 ({len(cols)} columns): find_columns {total:.3f} s, of which "
              + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in parts.items())
              + f": {100 * share:.1f} %", flush=True)  # fmt: skip
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--draws", type=int, default=50)
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--only-real", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    result = {"date": str(date.today()), "machine": platform.node(),
              "processor": platform.processor() or platform.machine()}  # fmt: skip
    if args.only_real:
        print(json.dumps(real_images()["PbTiO3/SrRuO3 HAADF"]["edge_cells"]))
        return
    result["cost"] = cost()
    result["sigma_monte_carlo"] = monte_carlo(args.draws)
    result["polarization"] = polarization()
    result["strain"] = strain()
    result["intensity_classes"] = intensity()
    if not args.skip_real:
        result["real"] = real_images()
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "measurements.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
