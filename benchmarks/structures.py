"""A crystal in a corner of the frame, and where the lattice is on real images.

    python benchmarks/structures.py [--particles | --dumbbells | --2d]

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
4. Particles of one species (issue #34): fcc [110] Pt particles
   (``stemunmix.synthetic.crystal``, a = 0.392 nm, 0.02 nm/px, 512^2) of
   diameter 3, 5 and 8 nm, on vacuum and on an amorphous film (blobs up to
   0.15 of a column), doses 20, 100 and 500, through
   ``image.find_columns(structure="one species")``: the share of the
   particle's columns found (within a quarter of the nearest distance;
   target >= 0.99), the share of the found columns more than half a nearest
   distance from every particle column (on vacuum or film; target <= 0.01),
   the classes found (one), and the RMS position error per axis over the
   Cramer-Rao bound of each column (an isolated Gaussian of its own height
   on its own background in Poisson plus read noise, from the noise-free
   image; target <= 1.2).

5. Dumbbells (issue #34): [110] Si (a = 0.543 nm, one species) and GaAs
   (0.565 nm, the As column 1.1 times the Ga's height) filling the frame
   at 0.1 and 0.05 A/px (512^2 and 1024^2), doses 50 and 500, through
   ``image.find_columns(structure="dumbbell")``: the share of the inner
   dumbbells with both columns found (target >= 0.95), the height ratio of
   the two ends and its t, and for GaAs the share of columns whose species
   (the brighter end) is named right.

6. 2D (issue #34): MoS2 seen flat, synthetic (S2 at 0.4 of Mo) and the real
   Se-implanted MoS2 ADF image in ../shared, through
   ``find_columns(structure="2D")``: recall and the sublattices named right
   (synthetic), the columns found against a whole honeycomb's (real), and
   the height split's ratio and t.

Writes benchmarks/results/structures.json (1-3), with --particles
benchmarks/results/structures_particles.json (4 only), with --dumbbells
benchmarks/results/structures_dumbbells.json (5 only), with --2d
benchmarks/results/structures_2d.json (6 only).
"""

import json
import sys
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


def crb_columns(truth, xy, sigma_px, read_noise=1.0, film=None):
    """The Cramer-Rao bound (pixels, per axis) of each column at ``xy``: an
    isolated Gaussian (height, x, y, width, background unknown) of the
    noise-free image's height there over its local floor, in Poisson plus
    read noise; with ``film`` (the covariance of the film's texture over the
    column's patch, counts^2) that texture counts as noise too."""
    from scipy.ndimage import minimum_filter

    expected = truth.expected.astype(float)
    floor = minimum_filter(expected, size=int(6 * sigma_px))
    ij = np.round(xy).astype(int)
    r = patch_radius(sigma_px)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(float)
    g = np.exp(-(xx**2 + yy**2) / (2 * sigma_px**2))
    out = np.empty(len(xy))
    for n, (i, j) in enumerate(ij):
        b = floor[j, i]
        h = max(expected[j, i] - b, 1e-9)
        lam = b + h * g
        grads = np.stack([g, h * g * xx / sigma_px**2, h * g * yy / sigma_px**2,
                          h * g * (xx**2 + yy**2) / sigma_px**3, np.ones_like(g)])  # fmt: skip
        grads = grads.reshape(5, -1)
        cov = np.diag((lam + read_noise**2).ravel())
        if film is not None:
            cov = cov + film
        fisher = grads @ np.linalg.solve(cov, grads.T)
        out[n] = np.sqrt(np.linalg.inv(fisher)[1, 1])
    return out


def patch_radius(sigma_px):
    return int(np.ceil(4 * sigma_px))


def film_covariance(truth, support, sigma_px, near, seed=1):
    """The covariance (counts^2) of an amorphous film's texture over a
    column's patch: the film rendered alone (``core.synthetic.amorphous``,
    as ``crystal`` renders it), in the image's counts (the counts of a
    column of height 1 read from the truth), its patches' covariance."""
    from stemunmix.core.synthetic import amorphous

    rng = np.random.default_rng(seed)
    film = amorphous((SIZE, SIZE), near, sigma_px, support, rng)
    expected = truth.expected.astype(float)
    ij = np.round(truth.columns.xy).astype(int)
    from scipy.ndimage import minimum_filter

    floor = minimum_filter(expected, size=int(6 * sigma_px))
    peak = expected[ij[:, 1], ij[:, 0]] - floor[ij[:, 1], ij[:, 0]]
    counts = np.median(peak / truth.amplitude)  # counts per unit height
    r = patch_radius(sigma_px)
    w = 2 * r + 1
    patches = np.lib.stride_tricks.sliding_window_view(film * counts, (w, w))
    patches = patches[::3, ::3].reshape(-1, w * w)
    return np.cov(patches, rowvar=False)


PARTICLES = (3.0, 5.0, 8.0)
SUPPORTS = {"vacuum": None, "amorphous": 0.15}


def one_particle(diameter, support, dose, seed=0):
    from stemunmix.synthetic import crystal

    image, truth = crystal("fcc", "110", 0.392, shape=SIZE, particle=diameter,
                           support=SUPPORTS[support], dose=dose, seed=seed)  # fmt: skip
    near = 0.392 * np.sqrt(3 / 8) / 0.02
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = image.find_columns(structure="one species", show_progressbar=False)
    xy = truth.columns.xy
    d, k = (
        cKDTree(found.xy).query(xy) if len(found) else (np.full(len(xy), np.inf), None)
    )
    hit = d < 0.25 * near
    dd, _ = cKDTree(xy).query(found.xy) if len(found) else (np.zeros(0), None)
    err = found.xy[k[hit]] - xy[hit] if hit.any() else np.zeros((0, 2))
    crb = crb_columns(truth, xy[hit], 0.035 / 0.02)
    ratio = np.sqrt((err**2).mean(0)) / np.sqrt((crb**2).mean())
    with_film = None
    if SUPPORTS[support] is not None:
        film = film_covariance(truth, SUPPORTS[support], 0.035 / 0.02, near)
        bound = crb_columns(truth, xy[hit], 0.035 / 0.02, film=film)
        with_film = (np.sqrt((err**2).mean(0)) / np.sqrt((bound**2).mean())).tolist()
    names = sorted({found.class_names[i] for i in np.unique(found.labels)})
    return {
        "columns": len(found), "particle_columns": len(xy),
        "recall": float(hit.mean()), "outside": int(np.sum(dd > 0.5 * near)),
        "outside_share": float(np.mean(dd > 0.5 * near)) if len(found) else 0.0,
        "classes": names, "error_over_crb": ratio.tolist(),
        "error_over_bound_with_film": with_film,
    }  # fmt: skip


def real_particles():
    """The real nanoparticle images (tk_r_em indices 0-3) through
    ``find_columns(structure="one species")``: columns found, the spacing
    measured and the share of the frame the presence mask keeps."""
    from _real_images import load

    from stemunmix.signals import AtomicResolutionImage

    out = {}
    for k in range(4):
        try:
            data = load(f"nanoparticles {k}")
        except (FileNotFoundError, OSError):
            return out
        image = AtomicResolutionImage(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                found = image.find_columns(structure="one species")
            except ValueError as error:
                out[k] = {"refused": str(error)[:120]}
                continue
        md = image.probabilities.metadata.Signal.stemunmix.segment
        out[k] = {
            "columns": len(found),
            "spacing_px": float(np.ravel(md.measured_spacing)[0]),
            "mask_share": float(np.mean(md.presence)),
        }
    return out


DUMBBELL_CASES = {"Si": ("diamond", 0.543), "GaAs": ("zincblende", 0.565)}
DUMBBELL_PIXELS = {0.01: 512, 0.005: 1024}  # nm per pixel: frame side


def one_dumbbell(name, pixel_size, dose, seed=0):
    """Both columns of how many dumbbells are found, and (GaAs) the species
    named right by the brighter end."""
    from stemunmix.core import dumbbells
    from stemunmix.synthetic import crystal

    structure, a = DUMBBELL_CASES[name]
    image, truth = crystal(structure, "110", a, shape=DUMBBELL_PIXELS[pixel_size],
                           pixel_size=pixel_size, particle=None, dose=dose,
                           seed=seed, column_width=0.035)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = image.find_columns(structure="dumbbell", show_progressbar=False)
    sep = a / 4 / pixel_size
    xy = truth.columns.xy
    pairs = dumbbells.pair(xy)
    margin = (xy[pairs].min(1) > 2 * sep).all(1)
    margin &= (xy[pairs].max(1) < image.data.shape[0] - 1 - 2 * sep).all(1)
    pairs = pairs[margin]
    d, k = cKDTree(found.xy).query(xy)
    hit = d < 0.25 * sep
    both = hit[pairs].all(1)
    out = {"dumbbells": int(len(pairs)), "both_found": float(both.mean()),
           "columns": len(found)}  # fmt: skip
    md = image.probabilities.metadata.Signal.stemunmix.find_columns.dumbbells
    out.update(t=float(md.t), significant=bool(md.significant), ratio=float(md.ratio))
    if structure == "zincblende":
        cols = pairs[both].ravel()
        named = found.labels[k[cols]] == truth.columns.labels[cols]
        out["species_right"] = float(named.mean())
    return out


def dumbbell_cases(out):
    out["dumbbells"] = {}
    for name in DUMBBELL_CASES:
        for pixel_size in DUMBBELL_PIXELS:
            for dose in (50, 500):
                r = one_dumbbell(name, pixel_size, dose)
                out["dumbbells"][f"{name} {pixel_size * 10:g} A/px dose {dose}"] = r
                right = r.get("species_right")
                print(f"{name:4s} [110] {pixel_size * 10:g} A/px dose {dose:3d}: "
                      f"both columns of {r['both_found']:.3f} of {r['dumbbells']} "
                      f"dumbbells, height ratio {r['ratio']:.3f} (t {r['t']:.1f}, "
                      f"split {r['significant']})"
                      + ("" if right is None else f", species right {right:.3f}"),
                      flush=True)  # fmt: skip


def two_d(out):
    """MoS2 seen flat: synthetic (a = 0.316 nm at the real image's 0.0127
    nm/px, S2 at 0.4 of Mo, doses 50 and 500) and the real Se-implanted MoS2
    ADF image, through ``find_columns(structure="2D")``: columns found over
    those of a whole honeycomb, the split's t and ratio, and (synthetic) the
    share of columns found and named right."""
    from stemunmix.synthetic import crystal

    out["2D"] = {}
    near = 0.316 / np.sqrt(3) / 0.0127
    for dose in (50, 500):
        image, truth = crystal("mos2", "0001", 0.316, shape=512, pixel_size=0.0127,
                               particle=None, ratio=0.4, dose=dose, seed=0)  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = image.find_columns(structure="2D", show_progressbar=False)
        d, k = cKDTree(found.xy).query(truth.columns.xy)
        hit = d < 0.25 * near
        metal = truth.columns.labels[hit] == 0
        md = image.probabilities.metadata.Signal.stemunmix.find_columns.honeycomb
        r = {"recall": float(hit.mean()), "columns": len(found),
             "named_right": float(np.mean((found.labels[k[hit]] == 1) == metal)),
             "t": float(md.t), "ratio": float(md.ratio)}  # fmt: skip
        out["2D"][f"synthetic dose {dose}"] = r
        print(f"synthetic MoS2 dose {dose:3d}: recall {r['recall']:.3f}, "
              f"named right {r['named_right']:.3f}, brighter over dimmer "
              f"{r['ratio']:.2f} (t {r['t']:.1f})", flush=True)  # fmt: skip
    real = real_mos2()
    if real:
        out["2D"]["real"] = real
        print(f"real MoS2 ADF: {real}", flush=True)


def real_mos2():
    """The real MoS2 image: columns found, how many a whole honeycomb of the
    measured spacing would hold, the split's record."""
    import hyperspy.api as hs
    from _real_images import REAL

    from stemunmix.signals import AtomicResolutionImage

    path = REAL / "temul_Se_implanted_MoS2_ADF.dm3"
    if not path.exists():
        return {}
    image = AtomicResolutionImage(hs.load(path).data.astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = image.find_columns(structure="2D", show_progressbar=False)
    spacing = float(
        np.ravel(
            image.probabilities.metadata.Signal.stemunmix.segment.measured_spacing
        )[0]
    )
    whole = 2 * image.data.size / (np.sqrt(3) / 2 * spacing**2)
    md = image.probabilities.metadata.Signal.stemunmix.find_columns.honeycomb
    return {"columns": len(found), "honeycomb_columns": round(whole),
            "spacing_px": spacing, "t": float(md.t), "ratio": float(md.ratio),
            "significant": bool(md.significant)}  # fmt: skip


def particles(out):
    out["real_particles"] = real_particles()
    for k, r in out["real_particles"].items():
        print(f"real nanoparticles {k}: {r}", flush=True)
    out["particles"] = {}
    for support in SUPPORTS:
        for diameter in PARTICLES:
            for dose in DOSES:
                r = one_particle(diameter, support, dose)
                out["particles"][f"{diameter:g} nm on {support}, dose {dose}"] = r
                print(f"fcc [110] particle {diameter:g} nm on {support:9s} dose "
                      f"{dose:3d}: {r['columns']} columns, recall {r['recall']:.3f} "
                      f"of {r['particle_columns']}, outside {r['outside']} "
                      f"({r['outside_share']:.1%}), classes {r['classes']}, "
                      "error / CRB {:.2f} / {:.2f}".format(*r["error_over_crb"])
                      + ("" if r["error_over_bound_with_film"] is None else
                         ", / the bound with the film as noise {:.2f} / {:.2f}"
                         .format(*r["error_over_bound_with_film"])),
                      flush=True)  # fmt: skip


def main():
    out = {"commit": commit(), "date": time.strftime("%Y-%m-%d"), "corner": {}}
    if "--2d" in sys.argv:
        two_d(out)
        (HERE / "results" / "structures_2d.json").write_text(json.dumps(out, indent=1))
        return
    if "--dumbbells" in sys.argv:
        dumbbell_cases(out)
        name = "structures_dumbbells.json"
        (HERE / "results" / name).write_text(json.dumps(out, indent=1))
        return
    if "--particles" in sys.argv:
        particles(out)
        name = "structures_particles.json"
        (HERE / "results" / name).write_text(json.dumps(out, indent=1))
        return
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
