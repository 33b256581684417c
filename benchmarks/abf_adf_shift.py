"""Diagnostic: do the A and B columns of the SrTiO3 [110] ABF image sit where
the simultaneous ADF image puts them, up to one rigid offset?

    python benchmarks/abf_adf_shift.py

For each image, the cation columns found by stemunmix (ADF: default model;
ABF: contrast detected, oxygen model) are also refined by Atomap's recipe
(centre of mass, then 2D Gaussians; on the ABF image inverted by hand), from
the same starting positions. For each method the mean ABF - ADF offset of
the A columns and of the B columns is printed, and their difference: the
shift of the B sublattice against the A sublattice between the two images,
which no rigid offset removes. If both methods measure the same shift, it is
in the data (ABF column positions move with specimen mistilt, differently
for heavy and light columns), not in either method.
Writes benchmarks/results/abf_adf_shift.json.
"""

import json
import warnings
from datetime import date
from pathlib import Path

import numpy as np
from _real_images import REAL
from oxygen_real import match

HERE = Path(__file__).resolve().parent


def atomap_refine(data, xy):
    import atomap.api as am

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sub = am.Sublattice(xy, image=data, fix_negative_values=True)
        sub.find_nearest_neighbors()
        sub.refine_atom_positions_using_center_of_mass(show_progressbar=False)
        sub.refine_atom_positions_using_2d_gaussian(show_progressbar=False)
    return np.stack([sub.x_position, sub.y_position], 1)


def main():
    import hyperspy.api as hs

    adf = hs.load(REAL / "atomap_hist_STO110_ADF_full.hdf5", file_format="HSPY")
    abf = hs.load(REAL / "atomap_hist_STO110_ABF_full.hdf5", file_format="HSPY")
    pm = 1000 * float(adf.axes_manager.signal_axes[0].scale)
    for s in (adf, abf):
        s.set_signal_type("atomic_resolution")
    ours = {"ADF": adf.find_columns(), "ABF": abf.find_columns()}
    spacing = float(np.ravel(abf.probabilities.metadata.Signal.stemunmix.segment
                             .measured_spacing)[0])  # fmt: skip
    d_ab = spacing / np.sqrt(2)
    h, w = adf.data.shape
    data = {
        "ADF": adf.data.astype(float),
        "ABF": abf.data.max() - abf.data.astype(float),
    }
    out = {"date": date.today().isoformat(), "pixel_pm": pm}
    positions = {("stemunmix", k): {n: c.select(n).xy for n in "AB"}
                 for k, c in ours.items()}  # fmt: skip
    for k in ("ADF", "ABF"):
        positions[("atomap", k)] = {n: atomap_refine(data[k], ours[k].select(n).xy)
                                    for n in "AB"}  # fmt: skip
    for method in ("stemunmix", "atomap"):
        res = {}
        for n in "AB":
            ref, got = positions[(method, "ADF")][n], positions[(method, "ABF")][n]
            inner = ((ref > d_ab) & (ref < np.array([w, h]) - 1 - d_ab)).all(1)
            ri, gi, off = match(ref[inner], got, d_ab / 3)
            diff = got[gi] - ref[inner][ri]
            res[n] = {"mean_offset_pm": (diff.mean(0) * pm).tolist(),
                      "scatter_rms_pm": float(np.sqrt(((diff - diff.mean(0)) ** 2)
                                                      .sum(1).mean()) * pm),
                      "matched": len(ri)}  # fmt: skip
        shift = np.subtract(res["B"]["mean_offset_pm"], res["A"]["mean_offset_pm"])
        res["B_minus_A_shift_pm"] = shift.tolist()
        res["B_minus_A_shift_length_pm"] = float(np.hypot(*shift))
        out[method] = res
        print(method, json.dumps(res), flush=True)
    (HERE / "results" / "abf_adf_shift.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
