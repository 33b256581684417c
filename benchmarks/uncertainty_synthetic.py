"""Do the reported error bars match the scatter over noise draws? (synthetic)

    python benchmarks/uncertainty_synthetic.py [--draws 50] [--size 256]

One [001] perovskite (planted polar displacement, seed 31000) rendered
``--draws`` times per case with fresh noise (and fresh scan jitter), each
draw through the whole ``image.find_columns()`` (the network included).
Cases: shot noise only at doses 20, 100 and 500; line jitter 0.1 and 0.3 px
along the fast scan; slow-scan drift (1.5, -1.0) px; non-Gaussian columns
(a probe with tails: 70 % of the intensity in the core, 30 % in a Gaussian
three times as wide), each at dose 100 unless named; and dose 500 on a flat
background (the renderer's background varies smoothly over the frame, and
its slope under a column moves the column and its neighbours alike).

The error of a column is its found position less where the specimen
position lands under the case's smooth drift (line jitter is error: it moves
a column but no atom). Per case, class and axis: the RMS error over all
draws and columns (away from the frame's edge) against the RMS of the
reported sigma (ratio reported / observed, within 0.85-1.15 is the target),
the same for the difference of the errors of same-class neighbours on
other scan lines (what a smooth
background's slope moves alike in neighbours drops out: it is no error of
any local quantity, and no image can tell it from a smooth displacement),
and for the shot-noise cases the reported sigma against the Cramer-Rao bound
of an isolated column (columns_vs_atomap.crb_displacement). Positions are
those of find_columns (its fit weighted by the noise model); the held-out
displacement errors are columns_vs_atomap.py's.
Writes benchmarks/results/uncertainty_synthetic.json.
"""

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
from _results import commit
from columns_vs_atomap import COLUMN_WIDTH, PIXEL_SIZE, crb_displacement
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree

HERE = Path(__file__).resolve().parent
CASES = {
    "shot, dose 20": {"dose": 20},
    "shot, dose 100": {"dose": 100},
    "shot, dose 500": {"dose": 500},
    "shot, dose 500, flat background": {"dose": 500, "flat": True},
    "jitter 0.1 px": {"jitter": 0.1},
    "jitter 0.3 px": {"jitter": 0.3},
    "drift (1.5, -1.0) px": {"drift": (1.5, -1.0)},
    "probe tails": {"tails": True},
}


def specimen(size):
    from stemunmix.synthetic import perovskite

    _, truth = perovskite(shape=size, dose=None, jitter=0.0, drift=(0.0, 0.0),
                          pixel_size=PIXEL_SIZE, column_width=COLUMN_WIDTH,
                          rotation=5.0, seed=31_000)  # fmt: skip
    return truth.columns


def render(
    columns,
    size,
    draw,
    dose=100,
    jitter=0.0,
    drift=(0.0, 0.0),
    tails=False,
    flat=False,
):
    """(image, reference positions, expected image) of one draw; ``flat``:
    the renderer's smooth background field held at its mean (no slope under
    any column)."""
    from unittest import mock

    from stemunmix.core import synthetic
    from stemunmix.synthetic import from_columns

    common = dict(shape=size, pixel_size=PIXEL_SIZE, column_width=COLUMN_WIDTH,
                  drift=drift)  # fmt: skip
    field = (lambda shape, rng: np.ones(shape)) if flat else synthetic.smooth_background
    with mock.patch.object(synthetic, "smooth_background", field):
        image, truth = from_columns(
            columns, dose=dose, jitter=jitter, seed=draw, **common
        )
    _, smooth = from_columns(columns, dose=None, jitter=0.0, seed=0, **common)
    expected = truth.expected
    if tails:
        sigma = COLUMN_WIDTH / PIXEL_SIZE
        wide = gaussian_filter(expected.astype(float), 2 * np.sqrt(2) * sigma)
        expected = 0.7 * expected + 0.3 * wide * expected.mean() / wide.mean()
        rng = np.random.default_rng(draw)
        data = rng.poisson(np.clip(expected, 0, None)) + rng.standard_normal(
            expected.shape
        )
        image = image.deepcopy()
        image.data = data.astype(np.float32)
    return image, smooth.columns, expected


def one_case(columns, size, draws, spec):
    names = columns.class_names
    err = {n: [] for n in "AB"}
    sig = {n: [] for n in "AB"}
    pair_err = {n: [] for n in "AB"}
    pair_sig = {n: [] for n in "AB"}
    cells = {}  # quantity -> {cell key: [(value, sigma), ...]}
    crb = None
    for draw in range(draws):
        image, ref, expected = render(columns, size, 1000 + draw, **spec)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = image.find_columns(show_progressbar=False)
        spacing = np.median(np.hypot(*np.asarray(found.lattice_vectors).T))
        for n in "AB":
            truth = ref.xy[ref.labels == names.index(n)]
            mine = found.select(n)
            dist, idx = cKDTree(truth).query(mine.xy)
            inner = ((mine.xy > spacing) & (mine.xy < size - 1 - spacing)).all(1)
            ok = (dist < 0.25 * spacing) & inner & np.isfinite(mine.sigma).all(1)
            err[n].append(mine.xy[ok] - truth[idx[ok]])
            sig[n].append(mine.sigma[ok])
            pairs = cKDTree(mine.xy[ok]).query_pairs(
                1.2 * spacing, output_type="ndarray"
            )
            # on other scan lines: no line noise shared
            dy = np.abs(np.diff(mine.xy[ok][pairs, 1], axis=1))[:, 0]
            pairs = pairs[dy > 0.5 * spacing]
            for store, v in ((pair_err, err[n][-1]), (pair_sig, sig[n][-1])):
                store[n].append(pair_half(v, pairs, store is pair_sig))
        per_cell(found, ref, size, spacing, cells)
        if draw == 0 and not {"jitter", "tails", "drift"} & set(spec):
            t = type("T", (), {"expected": expected, "columns": ref})
            crb = crb_displacement(t, COLUMN_WIDTH / PIXEL_SIZE, 1.0)[1]
    out = {}
    for n in "AB":
        e, s = np.concatenate(err[n]), np.concatenate(sig[n])
        observed = np.sqrt(np.mean(e**2, 0))
        reported = np.sqrt(np.mean(s**2, 0))
        out[n] = {"columns": len(e), "observed_rms_px": observed.tolist(),
                  "reported_rms_px": reported.tolist(),
                  "ratio": (reported / observed).tolist(),
                  "bias_px": np.mean(e, 0).tolist()}  # fmt: skip
        pe, ps = np.concatenate(pair_err[n]), np.concatenate(pair_sig[n])
        out[n]["neighbour_ratio"] = (
            np.sqrt(np.mean(ps**2, 0)) / np.sqrt(np.mean(pe**2, 0))
        ).tolist()
        if crb is not None:
            out[n]["crb_px"] = crb[n]
            out[n]["reported_over_crb"] = (reported / crb[n]).tolist()
    out["cells"] = cell_ratios(cells)
    return out


def pair_half(values, pairs, sigma):
    """Per pair of neighbours, the difference of their errors (x, y) over
    sqrt(2), or for their sigmas the root mean square: what is shared by
    the pair (a smooth background's slope moves neighbours alike) drops
    out of the first and is not in the second."""
    a, b = values[pairs[:, 0]], values[pairs[:, 1]]
    return np.sqrt((a**2 + b**2) / 2) if sigma else (a - b) / np.sqrt(2)


def per_cell(found, ref, size, spacing, cells):
    """Add one draw's per-cell polarization (x, y) and strain (exx, eyy,
    exy) with their sigmas to ``cells``, each cell keyed by the true column
    nearest its B column (polarization) or its origin A column (strain)."""
    from stemunmix.core.measure import site_grid

    names = ref.class_names
    p = found.polarization_map().data  # x, y, sigma_x, sigma_y, ...
    st = found.strain_map().data  # exx, eyy, exy, rotation, then sigmas
    ca, cb = found.select("A"), found.select("B")
    shape = p.shape[1:]
    for key_cls, where, values in (
        ("B", site_grid(cb.ij, cb.xy, shape), [(p[0], p[2], "Px"), (p[1], p[3], "Py")]),
        ("A", site_grid(ca.ij, ca.xy, shape),
         [(st[k], st[4 + k], n) for k, n in enumerate(("exx", "eyy", "exy"))]),
    ):  # fmt: skip
        truth = ref.xy[ref.labels == names.index(key_cls)]
        w = where.reshape(-1, 2)
        ok = np.isfinite(w).all(1)
        ok &= ((w > spacing) & (w < size - 1 - spacing)).all(1)
        dist, idx = cKDTree(truth).query(w[ok])
        rows = np.flatnonzero(ok)[dist < 0.25 * spacing]
        keys = idx[dist < 0.25 * spacing]
        for v, sg, name in values:
            v, sg = v.reshape(-1)[rows], sg.reshape(-1)[rows]
            book = cells.setdefault(name, {})
            for k, a, b in zip(keys, v, sg, strict=True):
                if np.isfinite(a) and np.isfinite(b):
                    book.setdefault(int(k), []).append((a, b))


def cell_ratios(cells, min_draws=5):
    """Per quantity: the RMS of the reported sigma over the RMS deviation of
    each cell from its own mean over the draws (n / (n - 1) corrected)."""
    out = {}
    for name, book in cells.items():
        dev, sig = [], []
        for rows in book.values():
            if len(rows) < min_draws:
                continue
            v = np.array(rows)
            dev.append((v[:, 0] - v[:, 0].mean()) * np.sqrt(len(v) / (len(v) - 1)))
            sig.append(v[:, 1])
        if dev:
            dev, sig = np.concatenate(dev), np.concatenate(sig)
            out[name] = float(np.sqrt(np.mean(sig**2)) / np.sqrt(np.mean(dev**2)))
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--draws", type=int, default=50)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    args = parser.parse_args()
    columns = specimen(args.size)
    out = {"commit": commit(), "date": time.strftime("%Y-%m-%d"),
           "draws": args.draws, "size": args.size, "cases": {}}  # fmt: skip
    for name in args.cases:
        r = out["cases"][name] = one_case(columns, args.size, args.draws, CASES[name])
        for n in "AB":
            row = r[n]
            line = (f"{name:22s} {n}: reported / observed {row['ratio'][0]:.2f} / "
                    f"{row['ratio'][1]:.2f} (x / y), observed "
                    f"{row['observed_rms_px'][0]:.3f} / {row['observed_rms_px'][1]:.3f} px")  # fmt: skip
            line += ", between neighbours {:.2f} / {:.2f}".format(
                *row["neighbour_ratio"]
            )
            if "crb_px" in row:
                line += (f", reported / CRB {row['reported_over_crb'][0]:.2f} / "
                         f"{row['reported_over_crb'][1]:.2f}")  # fmt: skip
            print(line, flush=True)
        print(f"{name:22s} per cell, reported / observed: "
              + ", ".join(f"{k} {v:.2f}" for k, v in r["cells"].items()), flush=True)  # fmt: skip
    (HERE / "results" / "uncertainty_synthetic.json").write_text(
        json.dumps(out, indent=1)
    )


if __name__ == "__main__":
    main()
