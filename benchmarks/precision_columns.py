"""The columns found from bfloat16 maps against float32 ones (issue #36).

    python benchmarks/precision_columns.py

segment() can run the network in bfloat16 (about twice as fast on a CPU
with native bfloat16). Its probabilities differ from float32's by up to
about 0.01; the columns are then found on those maps and fitted on the raw
image. For synthetic held-out images (the four-stripe and [110]
perovskites at doses 20-500, a Pt particle on vacuum) and every real image
in ../shared/data/real, each through ``segment(precision=...)`` and
``find_columns()`` with the other defaults, this prints the columns found
in each precision, the share matched (within 1 px), the share whose class
differs, and the largest and 99th-percentile position difference in pixels
and in units of each column's reported sigma.

Writes benchmarks/results/precision_columns.json.
"""

import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _results import commit
from scipy.spatial import cKDTree

HERE = Path(__file__).resolve().parent


def synthetic():
    from stemunmix.synthetic import crystal, perovskite

    for dose in (20, 100, 500):
        image, _ = perovskite(shape=1024, domains="four_stripes", dose=dose, seed=7)
        yield f"four stripes 1024^2 dose {dose}", image.data, {}
    image, _ = perovskite(shape=1024, projection="110", dose=100, seed=3)
    yield "[110] perovskite 1024^2 dose 100", image.data, {}
    image, _ = crystal(
        "fcc", zone="110", shape=512, particle=5.0, dose=100, seed=1, pixel_size=0.02
    )
    yield "Pt particle 5 nm on vacuum dose 100", image.data, {}


def real():
    import hyperspy.api as hs
    from _real_images import NAMES, REAL, load

    for name in NAMES:
        try:
            yield name, load(name), {}
        except (FileNotFoundError, OSError, KeyError):
            continue
    extra = (
        ("SrTiO3 [110] ABF", "atomap_hist_STO110_ABF_full.hdf5", {}),
        ("PMN iDPC", "singleorigin_PMN_iDPC.tif", {"model": "oxygen"}),
        ("MoS2 ADF", "temul_Se_implanted_MoS2_ADF.dm3", {"structure": "2D"}),
    )
    for name, file, kwargs in extra:
        path = REAL / file
        if path.exists():
            data = hs.load(path, file_format="HSPY" if file.endswith("hdf5") else None)
            yield name, np.asarray(data.data, np.float32), kwargs


def compare(data, kwargs) -> dict:
    from stemunmix.signals import AtomicResolutionImage

    found = {}
    for precision in ("float32", "bfloat16"):
        image = AtomicResolutionImage(np.asarray(data, np.float32))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image.segment(precision=precision, show_progressbar=False, **kwargs)
            found[precision] = image.find_columns(show_progressbar=False)
    a, b = found["float32"], found["bfloat16"]
    out = {"float32": len(a), "bfloat16": len(b)}
    if not len(a) or not len(b):
        return out
    dist, idx = cKDTree(a.xy).query(b.xy)
    ok = dist < 1.0
    diff = np.abs(b.xy[ok] - a.xy[idx[ok]])
    sigma = np.asarray(a.sigma, float)[idx[ok]]
    with np.errstate(invalid="ignore", divide="ignore"):
        z = diff / sigma
    z = z[np.isfinite(z)]
    out.update(
        matched=float(ok.sum() / max(len(a), len(b))),
        class_differs=float(np.mean(a.labels[idx[ok]] != b.labels[ok])),
        max_px=float(diff.max()),
        p99_px=float(np.percentile(diff, 99)),
        max_sigma=float(z.max()) if len(z) else float("nan"),
        p99_sigma=float(np.percentile(z, 99)) if len(z) else float("nan"),
    )
    return out


def main():
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        print("this CPU has no native bfloat16: nothing to compare")
        return
    out = {"commit": commit(), "date": time.strftime("%Y-%m-%d"), "images": {}}
    for source in (synthetic(), real()):
        for name, data, kwargs in source:
            r = out["images"][name] = compare(data, kwargs)
            if "matched" not in r:
                print(f"{name}: {r['float32']} / {r['bfloat16']} columns", flush=True)
                continue
            print(f"{name}: {r['float32']} / {r['bfloat16']} columns (float32 / "
                  f"bfloat16), matched {r['matched']:.4f}, class differs "
                  f"{r['class_differs']:.4f}, position difference max "
                  f"{r['max_px']:.4f} px (99 % {r['p99_px']:.4f}), max "
                  f"{r['max_sigma']:.3f} sigma (99 % {r['p99_sigma']:.3f})",
                  flush=True)  # fmt: skip
    (HERE / "results" / "precision_columns.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
