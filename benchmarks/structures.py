"""A crystal in a corner of the frame, and where the lattice is on real images.

    python benchmarks/structures.py

1. The crystal-in-a-corner case of issue #34: the columns of a 128 px [001]
   perovskite (every column whose centre lies in the crystal, rendered
   whole by ``stemunmix.synthetic.from_columns``) in the corner of a 512 px
   frame whose rest is (a) shot noise at the crystal's background, (b)
   exact zeros (vacuum read as zero: every pixel beyond half a spacing of
   the crystal's outermost columns set to 0), (c) an amorphous texture
   (noise smoothed over 1.5 px, 25 % of the background, then shot noise).
   Doses 20, 100 and 500. Through ``image.find_columns()`` with the
   defaults: the share of the crystal's columns found (within a quarter of
   a spacing; target >= 0.99) and the share of all columns found more than
   half a spacing from every crystal column (target <= 0.01).
2. What the mask costs: a 2048^2 perovskite frame, median of 3.
3. The real images in ../shared/data/real: the share of each frame the
   lattice-presence mask keeps (they are crystal edge to edge: 1 expected).

Writes benchmarks/results/structures.json.
"""

import json
import time
import warnings
from pathlib import Path

import numpy as np
from _results import commit
from scipy import ndimage
from scipy.spatial import cKDTree

HERE = Path(__file__).resolve().parent
SIZE, CRYSTAL = 512, 128
KINDS = ("noise", "zeros", "amorphous")
DOSES = (20, 100, 500)


def corner(kind, dose, seed=0):
    """(image, crystal columns xy, spacing px) of one case."""
    from stemunmix.columns import Columns
    from stemunmix.synthetic import from_columns, perovskite

    _, truth = perovskite(shape=CRYSTAL + 40, dose=None, seed=seed, domains="none")
    c = truth.columns
    keep = ((c.xy >= 0) & (c.xy < CRYSTAL)).all(1)
    cols = Columns(c.xy[keep], c.labels[keep], c.class_names)
    image, _ = from_columns(cols, shape=SIZE, dose=dose, seed=seed)
    data = image.data.astype(np.float64)
    spacing = 0.396 / 0.02  # the perovskite's lattice parameter over its pixel
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    dist, _ = cKDTree(cols.xy).query(np.column_stack([xx.ravel(), yy.ravel()]))
    outside = dist.reshape(SIZE, SIZE) > 0.5 * spacing
    if kind == "zeros":
        data[outside] = 0.0
    elif kind == "amorphous":
        bg = np.median(data[outside])
        t = ndimage.gaussian_filter(rng.standard_normal((SIZE, SIZE)), 1.5)
        t = np.clip(bg * (1 + 0.25 * t / t.std()), 0, None)
        data[outside] = rng.poisson(t)[outside]
    image.data = data.astype(np.float32)
    return image, cols.xy, spacing


def one_case(kind, dose):
    from stemunmix.signals import AtomicResolutionImage

    image, truth, spacing = corner(kind, dose)
    image = AtomicResolutionImage(image)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = image.find_columns(show_progressbar=False)
    d, _ = cKDTree(found.xy).query(truth) if len(found) else (np.inf, None)
    dd, _ = cKDTree(truth).query(found.xy)
    mask = image.probabilities.metadata.Signal.stemunmix.segment.presence
    return {
        "columns": len(found),
        "crystal_columns": len(truth),
        "recall": float(np.mean(d < 0.25 * spacing)),
        "outside": int(np.sum(dd > 0.5 * spacing)),
        "outside_share": float(np.mean(dd > 0.5 * spacing)),
        "mask_share": float(np.mean(mask)),
    }


def real_masks():
    from _real_images import NAMES, load

    from stemunmix.core.presence import frame_presence
    from stemunmix.core.segmentation import measure_spacing

    out = {}
    for name in NAMES:
        try:
            image = np.asarray(load(name), float)
        except (FileNotFoundError, OSError, KeyError):
            continue
        image = image.reshape((-1,) + image.shape[-2:])[0]
        spacing = measure_spacing(image)
        mask, _ = frame_presence(image, 0, {(): spacing})
        out[name] = float(mask.mean())
    return out


def mask_cost(repeats=3):
    """Median seconds of the presence mask of a 2048^2 frame of a perovskite
    (19.8 px spacing): what it adds to segment()."""
    from stemunmix.core.presence import frame_presence
    from stemunmix.synthetic import perovskite

    image, _ = perovskite(shape=2048, seed=1, domains="none")
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        frame_presence(image.data, 0, {(): 0.396 / 0.02})
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main():
    out = {"commit": commit(), "date": time.strftime("%Y-%m-%d"), "corner": {}}
    for kind in KINDS:
        for dose in DOSES:
            r = out["corner"][f"{kind}, dose {dose}"] = one_case(kind, dose)
            print(f"crystal in a corner on {kind:9s} dose {dose:3d}: "
                  f"{r['columns']} columns, recall {r['recall']:.3f} of "
                  f"{r['crystal_columns']}, outside {r['outside']} "
                  f"({r['outside_share']:.1%}), mask {r['mask_share']:.3f} "
                  "of the frame", flush=True)  # fmt: skip
    out["cost_2048_s"] = mask_cost()
    print(f"the mask of a 2048^2 frame (spacing 19.8 px): {out['cost_2048_s']:.2f} s "
          "(median of 3)", flush=True)  # fmt: skip
    out["real"] = real_masks()
    for name, share in out["real"].items():
        print(f"real {name}: the mask keeps {share:.3f} of the frame", flush=True)
    (HERE / "results" / "structures.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
