"""Column positions on real images: the paraelectric null test and a ferroelectric.

    python benchmarks/columns_real.py

- SrTiO3 [110] ADF (paraelectric): offset of every B (Ti) column from the
  midpoint of its two A (SrO) neighbours; its spread (standard deviation per
  component, and a robust 1.4826 x MAD) in picometres; the same from Atomap's
  refined columns (the reference of segmentation_real.py) side by side; and,
  as a control, the same offset for the A columns (from the midpoint of the
  two A at the same lattice vector, twice as long): the bright A columns
  carry the least fitting noise, so their scatter is mostly distortion.
- PbTiO3/SrRuO3 HAADF: the same offset (B from the centre of its four A) in
  each layer, median vector with its standard error and median length in
  picometres, with the network's classes and with
  ``find_columns(lattice="checkerboard")``; and how many nearest-neighbour
  bonds join two columns of one class (none should). The layers are told
  apart by Z-contrast, column by column: the four A neighbours of a B column
  against the B column itself (smoothed image, above its 1st percentile). Pb
  (Z 82) against Ti (22) is a strong contrast (ratio > 1.6 here), Sr (38)
  against Ru (44) none (ratio < 1.2); columns in between (the interfaces) are
  left out. The ratio by row band is printed: this crop is PbTiO3 at the top
  and bottom and SrRuO3 in the middle (rows ~70-140), not "PbTiO3 in the top
  150 rows" as PROVENANCE.md has it (the bottom rows are also the brightest
  on average, as the heavier PbTiO3 should be).
Prints a table and writes benchmarks/results/columns_real.json.
"""

import json
import warnings
from datetime import date
from pathlib import Path

import numpy as np
from _real_images import load

HERE = Path(__file__).resolve().parent


def columns_of(name, pixel_size_nm):
    from stemunmix.signals import AtomicResolutionImage

    image = AtomicResolutionImage(load(name))
    for ax in image.axes_manager.signal_axes:
        ax.scale, ax.units = pixel_size_nm, "nm"
    prob = image.segment()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        columns = prob.find_columns(image=image)
    return image, prob, columns


def inner(xy, shape, margin):
    return (
        (xy.min(1) > margin)
        & (xy[:, 0] < shape[1] - 1 - margin)
        & (xy[:, 1] < shape[0] - 1 - margin)
    )


def a_midpoint_offsets(xy_a, xy_b):
    """The B statistic applied to A: offset of each A column from the midpoint
    of its two A neighbours at -v and +v, where v is half the vector between
    the two A neighbours of a B column (so the A pairs lie along the same
    lattice direction as those of B, twice as far apart). The A columns are
    the bright ones, so fitting noise is smallest there; what they scatter is
    mostly distortion of the scan or of the specimen, which moves B as well."""
    from scipy.spatial import cKDTree

    tree = cKDTree(xy_a)
    _, idx = tree.query(xy_b, k=2)
    pair = xy_a[idx[:, 1]] - xy_a[idx[:, 0]]
    pair = np.where(pair[:, 1:] < 0, -pair, pair)  # one sign per direction
    v = np.median(pair, 0)
    plus_d, plus = tree.query(xy_a + v)
    minus_d, minus = tree.query(xy_a - v)
    ok = (plus_d < 0.2 * np.hypot(*v)) & (minus_d < 0.2 * np.hypot(*v))
    return xy_a - (xy_a[plus] + xy_a[minus]) / 2, ok


def ab_distance(prob):
    """A-B distance in pixels from the spacing that segment() measured (the
    one find_columns sizes its search and fit by)."""
    spacing = prob.metadata.Signal.stemunmix.segment.measured_spacing
    return float(np.ravel(spacing)[0]) / np.sqrt(2)


def noise_floor(data, columns, d_ab):
    """Per-axis error of a B offset from the midpoint of two A that white noise
    as strong as the fit residual would give (pixels, median columns)."""
    from stemunmix.core.find import column_sizes
    from stemunmix.core.refine import refine_gaussian

    data = np.asarray(data, float)
    fit = refine_gaussian(data, columns.xy, **column_sizes(data, columns.xy, d_ab))
    err = np.sqrt(2 / np.pi) * fit["rms"] / fit["height"]
    e_a = np.median(err[columns.labels == columns.class_names.index("A")])
    e_b = np.median(err[columns.labels == columns.class_names.index("B")])
    return float(np.sqrt(e_b**2 + e_a**2 / 2))


def less_local_mean(xy, off, radius):
    """Offsets ``off`` less the mean offset of the other columns within ``radius``."""
    from scipy.spatial import cKDTree

    near = cKDTree(xy).query_ball_point(xy, radius)
    mean = np.array([off[[j for j in n if j != i]].mean(0) for i, n in enumerate(near)])
    return off - mean


def contrast_ratio(data, xy_a, xy_b):
    """Mean intensity of the four nearest A columns over that of the B column
    (image smoothed by a 2 px Gaussian, less its 1st percentile)."""
    from scipy.ndimage import gaussian_filter
    from scipy.spatial import cKDTree

    smooth = gaussian_filter(np.asarray(data, float), 2)
    smooth -= np.percentile(smooth, 1)

    def value(xy):
        ij = np.clip(np.round(xy).astype(int), 0, np.array(data.shape[::-1]) - 1)
        return smooth[ij[:, 1], ij[:, 0]]

    _, idx = cKDTree(xy_a).query(xy_b, k=4)
    return value(xy_a)[idx].mean(1) / value(xy_b)


def spread_row(off):
    """Count, median, standard deviation and robust (1.4826 MAD) standard
    deviation per component of offsets (N, 2) in pm."""
    return {
        "b_columns": len(off),
        "offset_median_pm": np.median(off, 0).tolist(),
        "offset_std_pm": off.std(0).tolist(),
        "offset_robust_std_pm": (
            1.4826 * np.median(np.abs(off - np.median(off, 0)), 0)
        ).tolist(),
    }


def main():
    from stemunmix.core.polarization import polarization

    rows = {}
    # SrTiO3 [110]: two A neighbours per B.
    px = 0.009326 * 1000  # pm
    image, prob, cols = columns_of("SrTiO3 [110] ADF", 0.009326)
    vec, count = polarization(cols.select("A").xy, cols.select("B").xy)
    keep = (count == 2) & inner(cols.select("B").xy, image.data.shape, 40)
    rows["SrTiO3 [110] ADF"] = spread_row(vec[keep] * px)
    d_sto = ab_distance(prob)
    rows["SrTiO3 [110] ADF, less the local mean"] = spread_row(
        less_local_mean(cols.select("B").xy[keep], vec[keep] * px, 5 * d_sto)
    )
    floor_pm = noise_floor(image.data, cols, d_sto) * px
    print(f"SrTiO3 [110] ADF: white-noise floor of the offset std {floor_pm:.2f} pm")
    # Control: the same statistic for the A columns themselves.
    a = cols.select("A").xy
    off_a, ok_a = a_midpoint_offsets(a, cols.select("B").xy)
    keep = ok_a & inner(a, image.data.shape, 40)
    rows["SrTiO3 [110] ADF, A from its A neighbours"] = spread_row(off_a[keep] * px)
    # The same statistic from Atomap's refined columns on the same image.
    from segmentation_real import atomap_columns

    from stemunmix.core.segmentation import measure_spacing

    ref_a, ref_b = atomap_columns(image.data, measure_spacing(image.data))
    vec, count = polarization(ref_a, ref_b)
    keep = (count == 2) & inner(ref_b, image.data.shape, 40)
    rows["SrTiO3 [110] ADF, Atomap"] = spread_row(vec[keep] * px)
    # PbTiO3 / SrRuO3: four A neighbours per B, with the network's classes and
    # with lattice="checkerboard" (a perovskite along [001]).
    from scipy.spatial import cKDTree

    from stemunmix.core.lattice import BOND

    px = 15.0
    image, prob, cols = columns_of("PbTiO3/SrRuO3 HAADF", 0.015)  # segmented once
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lattice = prob.find_columns(image=image, lattice="checkerboard")
    d_ab = ab_distance(prob)
    bonds = cKDTree(cols.xy).query_pairs(BOND * d_ab, output_type="ndarray")
    sets = []
    for tag, c in (("", cols), (", checkerboard", lattice)):
        same = int(np.sum(c.labels[bonds[:, 0]] == c.labels[bonds[:, 1]]))
        print(f"PbTiO3/SrRuO3{tag}: {same} of {len(bonds)} nearest-neighbour bonds "
              f"join two columns of one class; {int(np.sum(c.labels != cols.labels))} "
              "labels differ from the network's")  # fmt: skip
        sets.append((tag, c.select("A").xy, c.select("B").xy, same))
    # Atomap's refined columns named by the lattice (segmentation_real.py).
    ref_a, ref_b = atomap_columns(image.data, d_ab * np.sqrt(2))
    sets.append((", Atomap", ref_a, ref_b, None))
    for tag, a, b, same in sets:
        vec, count = polarization(a, b)
        ok = (count == 4) & inner(b, image.data.shape, 20)
        ratio = contrast_ratio(image.data, a, b)
        if tag == ", checkerboard":
            bands = [(lo, round(float(np.median(ratio[ok & (abs(b[:, 1] - lo) < 10)])),
                                2)) for lo in range(30, 200, 20)]  # fmt: skip
            print("A/B contrast of B columns by row (row: ratio):", bands)
            rows["PbTiO3/SrRuO3 contrast by row"] = dict(bands)
        for layer, sel in (("PbTiO3", ratio > 1.6), ("SrRuO3", ratio < 1.2)):
            v = vec[ok & sel] * px
            spread = 1.4826 * np.median(np.abs(v - np.median(v, 0)), 0)
            rows[f"PbTiO3/SrRuO3: {layer}{tag}"] = {
                "b_columns": int((ok & sel).sum()),
                "rows_p5_p95": np.percentile(b[ok & sel, 1], [5, 95]).tolist(),
                "offset_median_pm": np.median(v, 0).tolist(),
                # standard error of a median: 1.2533 sigma / sqrt(n)
                "offset_median_se_pm": (1.2533 * spread / np.sqrt(len(v))).tolist(),
                "offset_length_median_pm": float(np.median(np.hypot(*v.T))),
                "offset_robust_std_pm": spread.tolist(),
            }
            if same is not None:
                rows[f"PbTiO3/SrRuO3: {layer}{tag}"]["same_class_bonds"] = same
    for name, r in rows.items():
        print(f"{name:26s} " + ", ".join(
            f"{k} {np.round(v, 2).tolist() if isinstance(v, list) else round(v, 2)}"
            for k, v in r.items()))  # fmt: skip
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "columns_real.json").write_text(
        json.dumps(
            {
                "date": str(date.today()),
                "rows": rows,
                "SrTiO3 [110] white-noise floor pm": floor_pm,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
