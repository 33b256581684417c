"""A real null under a film: the real SrTiO3 [110] ADF with an amorphous film.

    python benchmarks/film_real.py

The refit with the support's texture (``stemunmix.core.texture``) is
measured on synthetic particles (``structures.py --particles``,
``film_fit.py``); no real image in ../shared has a support beside its
crystal. This puts a film on a real one. The real SrTiO3 [110] ADF
(centrosymmetric: its per-cell polarization is measurement error only)
gets the texture ``stemunmix.synthetic.crystal`` renders
(:func:`stemunmix.core.synthetic.amorphous`: blobs of the columns' fitted
width, six per A-B distance squared, heights up to ``AMPLITUDES`` (0.05,
0.15) of the A columns' median fitted height) added everywhere, and its right
``SUPPORT`` share replaced by the film alone on the image's floor (its 2nd
percentile) with Gaussian noise of the image's noise model there. Then
``find_columns`` with the refit and without it
(``stemunmix.core.find._texture`` made to find none), and for each: the
columns refitted, the robust spread of each cell's polarization (x, y,
pixels; smaller is more precise) and of z = (P - median P) / sigma (1 where
the error bars hold), over the crystal's cells.

Writes benchmarks/results/film_real.json.
"""

import json
import time
import warnings
from pathlib import Path

import numpy as np
from _real_images import REAL, load
from _results import commit

HERE = Path(__file__).resolve().parent
AMPLITUDES = (0.05, 0.15)
SUPPORT = 0.4
MAD = 1.4826


def spread(v):
    v = np.asarray(v, float)
    v = v[np.isfinite(v)]
    return float(MAD * np.median(np.abs(v - np.median(v))))


def filmed(amplitude, seed=0):
    from stemunmix.core.synthetic import amorphous
    from stemunmix.signals import AtomicResolutionImage

    data = np.asarray(load("SrTiO3 [110] ADF"), float)
    image = AtomicResolutionImage(data.astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cols = image.find_columns(show_progressbar=False)
    q = cols.quantities
    a = np.asarray(cols.labels) == cols.class_names.index("A")
    width = float(np.nanmedian(q["width"][a]))
    height = float(np.nanmedian(q["height"][a]))
    b = cols.select("B").xy
    ab = float(np.median(np.hypot(*(b[:, None] - cols.select("A").xy[None]).T).min(0)))
    md = image.probabilities.metadata.Signal.stemunmix.find_columns
    gain = float(np.ravel(md.noise_gain)[0])
    var0 = float(np.ravel(md.noise_variance0)[0])
    rng = np.random.default_rng(seed)
    film = height * amorphous(data.shape, ab, width, amplitude, rng)
    out = data + film
    right = int(data.shape[1] * (1 - SUPPORT))
    floor = float(np.percentile(data, 2))
    level = floor + film[:, right:]
    noise = rng.standard_normal(level.shape) * np.sqrt(gain * level + var0)
    out[:, right:] = level + noise
    return out.astype(np.float32), right, {"width_px": width, "height": height,
                                           "ab_px": ab, "gain": gain,
                                           "variance0": var0}  # fmt: skip


def measure(data, right, refit=True):
    from stemunmix.core import find
    from stemunmix.signals import AtomicResolutionImage

    measured = find._texture
    if not refit:
        find._texture = lambda *args: None
    try:
        image = AtomicResolutionImage(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cols = image.find_columns(show_progressbar=False)
    finally:
        find._texture = measured
    md = image.probabilities.metadata.Signal.stemunmix.find_columns
    p = cols.polarization_map()
    pd = p.data
    # the cells whose columns are all on the crystal, clear of the support
    x = np.asarray(p.axes_manager[1].axis)[None, :] * np.ones(pd.shape[1:])
    ok = np.isfinite(pd[0]) & np.isfinite(pd[2]) & (x < right - 40)
    z = (pd[:2] - np.nanmedian(pd[:2][:, ok], 1)[:, None, None]) / pd[2:4]
    return {"refitted": int(np.ravel(md.refitted_with_texture)[0]),
            "columns": len(cols), "cells": int(ok.sum()),
            "scatter_px": [spread(pd[0][ok]), spread(pd[1][ok])],
            "z_spread": [spread(z[0][ok]), spread(z[1][ok])],
            "median_sigma_px": np.nanmedian(pd[2:4][:, ok], 1).tolist()}  # fmt: skip


def main():
    if not REAL.exists():
        print("../shared/data/real is absent: nothing to measure")
        return
    out = {"commit": commit(), "date": time.strftime("%Y-%m-%d")}
    for amplitude in AMPLITUDES:
        data, right, made = filmed(amplitude)
        case = out[f"film {amplitude}"] = {"film": made}
        for name, refit in (("with the refit", True), ("without", False)):
            r = case[name] = measure(data, right, refit)
            print(f"SrTiO3 [110] ADF under a film of {amplitude} of A, {name:14s}: "
                  f"{r['refitted']} of {r['columns']} columns refitted; "
                  f"{r['cells']} cells: polarization spread "
                  f"{r['scatter_px'][0]:.4f} / {r['scatter_px'][1]:.4f} px, z spread "
                  f"{r['z_spread'][0]:.2f} / {r['z_spread'][1]:.2f}, median sigma "
                  f"{r['median_sigma_px'][0]:.4f} / {r['median_sigma_px'][1]:.4f} px",
                  flush=True)  # fmt: skip
    (HERE / "results" / "film_real.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
