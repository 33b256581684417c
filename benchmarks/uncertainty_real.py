"""Do the error bars hold on real images? Real nulls of the error model.

    python benchmarks/uncertainty_real.py

- SrTiO3 [110] ADF and the low-dose SrTiO3: centrosymmetric, so the per-cell
  polarization is measurement error only; the robust spread (1.4826 x MAD)
  of z = (P - median P) / sigma per axis should be 1 (over the cells with a
  sigma: a cell whose B column is not detected on the raw image has none).
  Unstrained single crystals too: the same for each strain quantity against
  its propagated sigma. And the mean displacement of all cells with a sigma
  against zero (the region test): a uniform offset the fit reads into the
  columns (a mistilt or an asymmetric tail along the scan moves them too).
- The ABF and ADF images of one scan: the ABF - ADF column differences (each
  class's median offset removed) in units of the combined sigma of the pixel
  terms (shot, misfit, correlated; the scan term is common to both detectors
  and cancels), per axis and class; with the scan term too, for contrast.
  Whether the difference is a null at all: its correlation between
  neighbouring columns (a smooth field, such as a local tilt that moves the
  ABF columns against the ADF ones, is not noise), and the z spread once the
  local median (2 spacings) is taken off.
- PbTiO3/SrRuO3: the SrRuO3 cells (the middle layer, B at rows 92-147: the
  cell rows j = 5, 6 of docs/measurements.md) less their mean (the mistilt
  offset): the share beyond 3 sigma (significance > 3, 1.1 % by chance); the
  PbTiO3 cells (B above row 52 or below row 147) with |P| > 15 pm: the share
  beyond 3 sigma. The SrRuO3 region's mean against zero (region test).
- Each image's held-out calibration figure (find_columns' metadata) and the
  error model's share of find_columns' time (median of 5 runs).

Writes benchmarks/results/uncertainty_real.json.
"""

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from _real_images import REAL, load
from _results import commit
from oxygen_real import match

HERE = Path(__file__).resolve().parent
MAD = 1.4826


def spread(z):
    z = np.asarray(z, float)
    z = z[np.isfinite(z)]
    return float(MAD * np.median(np.abs(z - np.median(z))))


def columns_of(image):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return image.find_columns()


def error_record(image):
    md = image.probabilities.metadata.Signal.stemunmix.find_columns
    return {k: np.asarray(v).tolist() for k, v in md.as_dictionary().items()
            if k.startswith(("misfit", "correlated", "lattice_", "scan", "calibration"))}  # fmt: skip


def null_polarization(name):
    from stemunmix.signals import AtomicResolutionImage

    image = AtomicResolutionImage(load(name))
    cols = columns_of(image)
    p = cols.polarization_map().data
    z = (p[:2] - np.nanmedian(p[:2], (1, 2), keepdims=True)) / p[2:4]
    strain = cols.strain_map().data  # exx, eyy, exy, rotation, then their sigmas
    zs = [(strain[k] - np.nanmedian(strain[k])) / strain[4 + k] for k in range(4)]
    field = cols.polarization_region(np.isfinite(p[0]) & np.isfinite(p[2]))
    return {"cells": int(np.isfinite(p[0]).sum()),
            "field_mean_px": np.asarray(field["mean"]).tolist(),
            "field_significance": float(field["significance"]),
            "strain_z_spread": [spread(z) for z in zs],
            "cells_with_sigma": int(np.isfinite(p[2]).sum()),
            "z_spread": [spread(z[0]), spread(z[1])],
            "median_sigma_px": np.nanmedian(p[2:4], (1, 2)).tolist(),
            "scatter_px": [spread(p[0]), spread(p[1])],
            "error_model": error_record(image)}  # fmt: skip


def abf_minus_adf():
    import hyperspy.api as hs

    out = {}
    cols = {}
    for k in ("ADF", "ABF"):
        s = hs.load(REAL / f"atomap_hist_STO110_{k}_full.hdf5", file_format="HSPY")
        s.set_signal_type("atomic_resolution")
        cols[k] = columns_of(s)
        out[f"{k}_error_model"] = error_record(s)
        md = s.probabilities.metadata.Signal.stemunmix.find_columns
        cols[k] = (cols[k], np.asarray(md.scan_covariance)[0],  # own + lines
                   np.asarray(md.scan_lines)[0])  # fmt: skip
    (adf, scan_adf, lines_adf), (abf, scan_abf, lines_abf) = cols["ADF"], cols["ABF"]
    for n in "AB":
        a, b = adf.select(n), abf.select(n)
        d_ab = 0.3 * np.median(np.hypot(*np.asarray(adf.lattice_vectors).T))
        ri, gi, _ = match(a.xy, b.xy, d_ab)
        diff = b.xy[gi] - a.xy[ri]
        diff -= np.median(diff, 0)
        total = a.covariance[ri] + b.covariance[gi]
        pixel = total - scan_adf - scan_abf
        row = {"matched": len(ri)}
        own = total - lines_adf - lines_abf
        for label, cov in (("pixel_terms", pixel), ("all_terms", total),
                           ("all_but_lines", own)):  # fmt: skip
            sig = np.sqrt(np.diagonal(cov, 0, 1, 2))
            row[label] = [spread(diff[:, i] / sig[:, i]) for i in range(2)]
        row["scatter_px"] = [spread(diff[:, 0]), spread(diff[:, 1])]
        row.update(smooth_part(a.xy[ri], diff, np.sqrt(np.diagonal(pixel, 0, 1, 2)),
                               d_ab / 0.3))  # fmt: skip
        out[n] = row
    return out


def smooth_part(xy, diff, sigma, spacing) -> dict:
    """Is the ABF - ADF difference a null? Noise is independent from column
    to column; a field that varies smoothly over the image (a local tilt,
    which moves ABF columns against ADF ones) is not. The correlation of
    each column's difference with the mean of its 8 nearest neighbours', and
    the z spread of the pixel terms once the median of the neighbours within
    2 spacings (the column itself left out) is taken off (sigma inflated by
    sqrt(1 + pi / 2m) for a median of m)."""
    from scipy.spatial import cKDTree

    tree = cKDTree(xy)
    _, near = tree.query(xy, 9)
    mean = diff[near[:, 1:]].mean(1)
    corr = [float(np.corrcoef(diff[:, i], mean[:, i])[0, 1]) for i in range(2)]
    local = np.full_like(diff, np.nan)
    m = np.zeros(len(xy))
    for k, around in enumerate(tree.query_ball_point(xy, 2 * spacing)):
        around = [j for j in around if j != k]
        if len(around) >= 3:
            local[k], m[k] = np.median(diff[around], 0), len(around)
    inflate = np.sqrt(1 + np.pi / (2 * np.maximum(m, 1)))[:, None]
    z = (diff - local) / (sigma * inflate)
    return {"neighbour_correlation": corr,
            "pixel_terms_less_local_median": [spread(z[:, 0]), spread(z[:, 1])]}  # fmt: skip


def pto_sro():
    from stemunmix.core.measure import significance
    from stemunmix.signals import AtomicResolutionImage
    from stemunmix.signals._measurements import polarization

    image = AtomicResolutionImage(load("PbTiO3/SrRuO3 HAADF"))
    cols = columns_of(image)
    pm = 15.0  # pixel size (PROVENANCE.md; the file is not calibrated)
    disp, sigma, where, cov = polarization(cols, covariance=True)
    sro = (where[..., 1] > 92) & (where[..., 1] < 147)
    pto = (where[..., 1] < 52) | (where[..., 1] > 147)
    ok = np.isfinite(disp).all(-1)
    offset = np.nanmean(disp[sro & ok], 0)
    sig_sro = significance(disp - offset, cov)[sro & ok]
    strong = pto & ok & (np.hypot(*np.moveaxis(disp, -1, 0)) * pm > 15)
    sig_pto = significance(disp, cov)[strong]
    region = cols.polarization_region(sro & ok)
    local = {}
    for name, mask in (("sro", sro & ok), ("pto", pto & ok)):
        rest, inflate = less_local_median(disp, mask)
        z = rest / (sigma * inflate[..., None])
        local[f"{name}_less_local_median_z_spread"] = [spread(z[..., i][mask])
                                                      for i in range(2)]  # fmt: skip
        local[f"{name}_less_local_median_beyond_3_sigma"] = float(
            np.mean(significance(rest / inflate[..., None], cov)[mask] > 3)
        )
    return {"sro_cells": int((sro & ok).sum()),
            "sro_offset_pm": (offset * pm).tolist(),
            "sro_beyond_3_sigma": float(np.mean(sig_sro > 3)),
            "sro_z_spread": [spread(((disp - offset)[..., i] / sigma[..., i])[sro & ok])
                             for i in range(2)],
            "pto_cells_over_15pm": int(strong.sum()),
            "pto_beyond_3_sigma": float(np.mean(sig_pto > 3)),
            "sro_region_mean_pm": (region["mean"] * pm).tolist(),
            "sro_region_sigma_pm": (region["sigma"] * pm).tolist(),
            "sro_region_significance": region["significance"],
            **local,
            "error_model": error_record(image)}  # fmt: skip


def less_local_median(disp, mask, half=4):
    """Is a region a null? ``disp`` (nj, ni, 2) less, per cell of ``mask``,
    the median of the other cells of its row within ``half`` cells (a
    coherent patch of real displacement, several cells wide, is taken off;
    noise is not), and the factor sqrt(1 + pi / 2m) by which that median of
    m cells inflates the noise."""
    rest = np.full_like(disp, np.nan)
    inflate = np.ones(disp.shape[:2])
    for r in np.unique(np.nonzero(mask)[0]):
        idx = np.flatnonzero(mask[r])
        for n, i in enumerate(idx):
            others = np.delete(idx[max(0, n - half) : n + half + 1], min(n, half))
            if len(others) >= 3:
                rest[r, i] = disp[r, i] - np.median(disp[r, others], 0)
                inflate[r, i] = np.sqrt(1 + np.pi / (2 * len(others)))
    return rest, inflate


def cost(repeats=5):
    """Share of find_columns' time spent in the error model (frame_covariance),
    on SrTiO3 [110] ADF with its maps computed once."""
    from stemunmix.signals import AtomicResolutionImage
    from stemunmix.signals import column_probabilities as cp

    image = AtomicResolutionImage(load("SrTiO3 [110] ADF"))
    prob = image.segment()
    inner = cp.frame_covariance
    spent = []

    def timed(*args, **kwargs):
        t = time.perf_counter()
        out = inner(*args, **kwargs)
        spent.append(time.perf_counter() - t)
        return out

    shares = []
    cp.frame_covariance = timed
    try:
        for _ in range(repeats):
            spent.clear()
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                prob.find_columns()
            whole = time.perf_counter() - t
            shares.append(sum(spent) / (whole - sum(spent)))
    finally:
        cp.frame_covariance = inner
    return {"error_model_over_rest": float(np.median(shares)), "runs": shares}


def main():
    if not REAL.exists():
        sys.exit(f"no real images at {REAL}")
    out = {"commit": commit(), "date": time.strftime("%Y-%m-%d")}
    for name in ("SrTiO3 [110] ADF", "SrTiO3 low dose"):
        out[name] = null_polarization(name)
        r = out[name]
        print(f"{name}: {r['cells']} cells ({r['cells_with_sigma']} with a sigma), "
              f"polarization z spread "
              f"{r['z_spread'][0]:.2f} / {r['z_spread'][1]:.2f} (x / y); calibration "
              f"{np.round(r['error_model']['calibration'], 2).tolist()}; strain z "
              f"spread (exx, eyy, exy, rotation) "
              f"{np.round(r['strain_z_spread'], 2).tolist()}; the cells' mean "
              f"{np.round(r['field_mean_px'], 4).tolist()} px, "
              f"{r['field_significance']:.2f} sigma", flush=True)  # fmt: skip
    out["ABF - ADF"] = abf_minus_adf()
    for n in "AB":
        r = out["ABF - ADF"][n]
        print(f"ABF - ADF, {n} ({r['matched']} columns): z spread pixel terms "
              f"{r['pixel_terms'][0]:.2f} / {r['pixel_terms'][1]:.2f}, all terms "
              f"{r['all_terms'][0]:.2f} / {r['all_terms'][1]:.2f}, all but the "
              f"line noise {r['all_but_lines'][0]:.2f} / {r['all_but_lines'][1]:.2f}; neighbour "
              f"correlation of the difference {r['neighbour_correlation'][0]:.2f} / "
              f"{r['neighbour_correlation'][1]:.2f}; pixel terms less the local median "
              f"{r['pixel_terms_less_local_median'][0]:.2f} / "
              f"{r['pixel_terms_less_local_median'][1]:.2f}", flush=True)  # fmt: skip
    out["PbTiO3/SrRuO3"] = r = pto_sro()
    print(f"PbTiO3/SrRuO3: SrRuO3 {r['sro_cells']} cells, {r['sro_beyond_3_sigma']:.1%} "
          f"beyond 3 sigma after the offset {np.round(r['sro_offset_pm'], 1).tolist()} pm; "
          f"PbTiO3 cells over 15 pm: {r['pto_cells_over_15pm']}, "
          f"{r['pto_beyond_3_sigma']:.1%} beyond 3 sigma; SrRuO3 mean "
          f"{np.round(r['sro_region_mean_pm'], 2).tolist()} +- "
          f"{np.round(r['sro_region_sigma_pm'], 2).tolist()} pm, significance "
          f"{r['sro_region_significance']:.1f}", flush=True)  # fmt: skip
    print("  less the local median of the row (9 cells): SrRuO3 "
          f"{100 * r['sro_less_local_median_beyond_3_sigma']:.1f}% beyond 3 sigma, "
          f"z spread {np.round(r['sro_less_local_median_z_spread'], 2).tolist()}; "
          f"PbTiO3 {100 * r['pto_less_local_median_beyond_3_sigma']:.1f}%, z spread "
          f"{np.round(r['pto_less_local_median_z_spread'], 2).tolist()}", flush=True)  # fmt: skip
    out["cost"] = cost()
    print(f"error model / rest of find_columns: {out['cost']['error_model_over_rest']:.1%} "
          f"(median of {len(out['cost']['runs'])})", flush=True)  # fmt: skip
    (HERE / "results" / "uncertainty_real.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
