"""Segmentation on real images, checked against Atomap's columns on the same image.

    python benchmarks/segmentation_real.py [--out benchmarks/results]

For each real image: stemunmix segments it with defaults only, A and B columns are
the maxima of the A and B maps. The reference is Atomap's: its columns found by
get_atom_positions and refined by centre of mass and 2D Gaussian fits, named A
and B by the lattice (they alternate along every bond; the strong contrast
names the colours), with the weak sublattice completed by Atomap's
second-sublattice recipe where it lost columns (see ``atomap_columns``).
Reported: the fraction of the reference columns matched by ours within 0.2 of
the A-B distance (per sublattice, away from the edges) and our extra columns
(ours with no reference column of that class within the tolerance, counted
where the reference has columns within one spacing). Also: how visible the B
columns are, as the height of the mean B column over that of the mean A column
(image patches averaged over the reference positions, less the lower of the
two patches' minima).
Writes JSON and overlay figures (docs/figures/segmentation_*.png).
"""

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np
from _real_images import NAMES, load

import stemunmix
from stemunmix.core.peaks import find_peaks, match

HERE = Path(__file__).resolve().parent


def atomap_columns(image: np.ndarray, spacing: float):
    """Atomap's columns on the image, named A and B by the lattice.

    ``get_atom_positions`` (separation below the A-B distance, as its window is
    square; with its PCA denoising and background subtraction, on the image
    lightly smoothed by a Gaussian of 5 % of the spacing, as one does for noisy
    data) finds the columns; centre of mass and 2D Gaussian fits on the image
    refine them (fits that fail are dropped).

    Naming. Brightness alone cannot name them: in SrRuO3 the B column (Ru) is
    brighter than the A column (Sr), in PbTiO3 far darker (Ti against Pb). But
    A and B alternate along every nearest-neighbour bond of an [001]
    perovskite, and the A lattice runs on through its interfaces. So the
    columns are two-coloured along their bonds (``stemunmix.core.lattice.
    checkerboard``, a lattice-topology tool that never looks at the network),
    and each colour is named by a vote of the columns' brightness against the
    median within three spacings, weighted by how far from it they are: the
    strong Pb/Ti contrast outvotes the weak Ru/Sr one.
    Where Atomap finds one sublattice only (its columns are a full spacing
    apart, not an A-B distance), they are A, but for the few that have a
    neighbour at the A-B distance (B columns it did find), which keep the
    lattice's name. Where it misses part of the weak sublattice (Ti beside Pb,
    Ti at low dose), Atomap's recipe for a second sublattice adds the missing
    B: the midpoints of the A cells, refined by centre of mass on the image
    with the A columns subtracted (``atomap_b_at_cell_centres``; for [001]
    projections, where B sits at the centre of the A cell).
    """
    import atomap.api as am
    import hyperspy.api as hs
    from scipy.ndimage import gaussian_filter
    from scipy.spatial import cKDTree

    from stemunmix.core.lattice import BOND, checkerboard

    d_ab = spacing / np.sqrt(2)
    data = image - image.min()
    smooth = hs.signals.Signal2D(gaussian_filter(data, 0.05 * spacing))
    # get_atom_positions(pca=True) denoises with scikit-learn's TruncatedSVD
    # (randomised, random_state=None: numpy's global generator). Seed it, or
    # the reference changes from run to run.
    np.random.seed(0)
    positions = am.get_atom_positions(
        smooth, separation=max(2, int(0.45 * d_ab)), pca=True, subtract_background=True
    )
    sub = am.Sublattice(positions, image=data)
    sub.find_nearest_neighbors()
    sub.refine_atom_positions_using_center_of_mass(show_progressbar=False)
    sub.refine_atom_positions_using_2d_gaussian(show_progressbar=False)
    xy = np.stack([sub.x_position, sub.y_position], 1)
    xy = xy[np.all(np.isfinite(xy), 1)]
    tree = cKDTree(xy)
    nearest = tree.query(xy, k=2)[0][:, 1]
    ij = np.clip(np.round(xy).astype(int), 0, np.array(image.shape[::-1]) - 1)
    bright = gaussian_filter(image.astype(float), 0.08 * spacing)[ij[:, 1], ij[:, 0]]
    near = tree.query_ball_point(xy, 3 * spacing)
    contrast = bright - np.array([np.median(bright[nb]) for nb in near])
    labels = checkerboard(xy, (contrast <= 0).astype(int), np.abs(contrast),
                          d_ab, (0, 1))  # fmt: skip
    if np.median(nearest) > 0.85 * spacing:
        # Atomap saw one sublattice (the weak one is lost in the noise) and a
        # few columns of the other: those have a neighbour at the A-B distance
        # and keep the lattice's name; every other column is A.
        labels[nearest > BOND * d_ab] = 0
    a, b = xy[labels == 0], xy[labels == 1]
    if len(b) < 0.95 * len(a):  # part of the weak sublattice is missing
        extra = atomap_b_at_cell_centres(a, data, spacing)
        far = tree.query(extra)[0] > 0.5 * d_ab
        b = np.concatenate([b, extra[far]])
    return a, b


def atomap_b_at_cell_centres(xy_a, data, spacing):
    """Atomap's recipe for a weak second sublattice of an [001] perovskite:
    the midpoints of the A cells (what ``find_missing_atoms_from_zone_vector``
    gives along a cell diagonal; Atomap's ``construct_zone_axes`` did not
    finish within 10 minutes on the scan-distorted low-dose lattice, so the
    cells are found here from each A column's four nearest A neighbours),
    refined by Atomap's centre of mass on the image with the A columns
    subtracted (2D Gaussians fitted to A)."""
    from itertools import combinations

    import atomap.api as am
    from atomap.tools import remove_atoms_from_image_using_2d_gaussian
    from scipy.spatial import cKDTree

    tree = cKDTree(xy_a)
    dist, nbs = tree.query(xy_a, k=5)
    centres = []
    for i in range(len(xy_a)):
        edges = [
            j for d, j in zip(dist[i, 1:], nbs[i, 1:], strict=True) if d < 1.3 * spacing
        ]
        for j, k in combinations(edges, 2):
            u, v = xy_a[j] - xy_a[i], xy_a[k] - xy_a[i]
            if abs(u @ v) > 0.5 * np.hypot(*u) * np.hypot(*v):
                continue  # not two sides of one cell (opposite, or a diagonal)
            d4, m = tree.query(xy_a[j] + v)
            if d4 < 0.3 * spacing:
                centres.append((xy_a[i] + xy_a[j] + xy_a[k] + xy_a[m]) / 4)
    centres = np.array(centres)
    # Each cell is found from each of its corners: merge the copies.
    groups = cKDTree(centres).query_ball_point(centres, 0.25 * spacing)
    first = np.array([min(g) for g in groups])
    cells = np.array([centres[groups[i]].mean(0) for i in np.unique(first)])
    sub_a = am.Sublattice(xy_a, image=data)
    sub_a.find_nearest_neighbors()
    without_a = remove_atoms_from_image_using_2d_gaussian(
        sub_a.image, sub_a, show_progressbar=False
    )
    sub_b = am.Sublattice(cells, image=without_a - without_a.min())
    sub_b.find_nearest_neighbors()
    sub_b.refine_atom_positions_using_center_of_mass(show_progressbar=False)
    xy = np.stack([sub_b.x_position, sub_b.y_position], 1)
    inside = np.all(np.isfinite(xy), 1) & (xy.min(1) >= 0)
    inside &= (xy[:, 0] <= data.shape[1] - 1) & (xy[:, 1] <= data.shape[0] - 1)
    return xy[inside]


def interior(xy, shape, margin):
    return (
        (xy[:, 0] >= margin)
        & (xy[:, 1] >= margin)
        & (xy[:, 0] <= shape[1] - 1 - margin)
        & (xy[:, 1] <= shape[0] - 1 - margin)
    )


def evaluate(name, out_dir):
    from scipy.spatial import cKDTree

    from stemunmix.signals import AtomicResolutionImage

    data = load(name)
    t0 = time.perf_counter()
    prob = AtomicResolutionImage(data).segment()
    t_seg = time.perf_counter() - t0
    spacing = float(prob.metadata.Signal.stemunmix.segment.measured_spacing[0])
    d_ab = spacing / np.sqrt(2)
    ours = [find_peaks(prob.data[k], 0.5 * d_ab) for k in (0, 1)]
    t0 = time.perf_counter()
    ref = atomap_columns(data, spacing)
    t_atomap = time.perf_counter() - t0
    d_ab_ref = float(np.median(cKDTree(ref[0]).query(ref[1])[0]))
    tol, margin = 0.2 * d_ab_ref, 0.6 * spacing
    # Extras count only where Atomap found columns too (within one spacing).
    covered = cKDTree(np.concatenate(ref))
    row = {"image": name, "shape": list(data.shape), "spacing_px": spacing,
           "ab_distance_px": d_ab_ref, "segment_s": t_seg, "atomap_s": t_atomap}  # fmt: skip
    for k, label in enumerate("AB"):
        r = ref[k][interior(ref[k], data.shape, margin)]
        o = ours[k][interior(ours[k], data.shape, margin)]
        o = o[np.isfinite(covered.query(o, distance_upper_bound=spacing)[0])]
        ri, oi = match(r, o, tol)
        row[f"{label}_atomap"] = len(r)
        row[f"{label}_ours"] = len(o)
        row[f"{label}_matched"] = len(ri) / max(1, len(r))
        row[f"{label}_extra"] = (len(o) - len(oi)) / max(1, len(o))
        row[f"{label}_median_offset_px"] = (
            float(np.median(np.hypot(*(r[ri] - o[oi]).T))) if len(ri) else None
        )
    row["B_over_A_height"] = mean_column_ratio(data, ref, round(0.5 * d_ab_ref))
    overlay(name, data, prob.data, ours, ref, out_dir)
    return row


def mean_column_ratio(data, ref, r):
    """Height of the mean B column over the mean A column: patches of half
    size ``r`` averaged over the reference positions of each sublattice."""
    data = np.asarray(data, float)
    h, w = data.shape

    def mean_patch(xy):
        ij = np.round(xy).astype(int)
        ij = ij[(ij.min(1) >= r) & (ij[:, 0] < w - r) & (ij[:, 1] < h - r)]
        return np.mean([data[j - r : j + r + 1, i - r : i + r + 1] for i, j in ij], 0)

    a, b = mean_patch(ref[0]), mean_patch(ref[1])
    floor = min(a.min(), b.min())
    return float((b[r, r] - floor) / (a[r, r] - floor))


def overlay(name, data, prob, ours, ref, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    crop = (slice(0, min(400, data.shape[0])), slice(0, min(400, data.shape[1])))
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.2))
    axes[0].imshow(data[crop], cmap="gray")
    for xy, c, m in ((ref[0], "yellow", "+"), (ref[1], "cyan", "+"),
                     (ours[0], "red", "o"), (ours[1], "blue", "o")):  # fmt: skip
        keep = (xy[:, 0] < crop[1].stop) & (xy[:, 1] < crop[0].stop)
        axes[0].scatter(*xy[keep].T, s=14 if m == "o" else 40, marker=m,
                        facecolors="none" if m == "o" else c, edgecolors=c,
                        linewidths=0.8)  # fmt: skip
    axes[0].set_xlim(-0.5, crop[1].stop - 0.5)
    axes[0].set_ylim(crop[0].stop - 0.5, -0.5)
    axes[0].set_title(f"{name}: ours (o) vs Atomap (+)")
    rgb = np.stack([prob[0][crop], prob[1][crop], 0 * prob[0][crop]], -1)
    axes[1].imshow(np.clip(rgb, 0, 1))
    axes[1].set_title("probability maps: A red, B green")
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    slug = "".join(ch if ch.isalnum() else "_" for ch in name).strip("_")
    fig.savefig(out_dir / f"segmentation_{slug}.png", dpi=80)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--figures", default=str(HERE.parent / "docs" / "figures"))
    parser.add_argument("--images", nargs="*", default=NAMES)
    args = parser.parse_args()
    Path(args.figures).mkdir(parents=True, exist_ok=True)
    rows = [evaluate(name, Path(args.figures)) for name in args.images]
    header = (
        f"{'image':22s} {'A match':>8s} {'A extra':>8s} {'B match':>8s} {'B extra':>8s}"
        f" {'B/A':>6s}"
    )
    print(header)
    for r in rows:
        print(f"{r['image']:22s} {r['A_matched']:8.4f} {r['A_extra']:8.4f} "
              f"{r['B_matched']:8.4f} {r['B_extra']:8.4f} {r['B_over_A_height']:6.3f}")  # fmt: skip
    result = {
        "date": str(date.today()),
        "machine": f"{platform.node()} {platform.machine()} {platform.processor()}",
        "model": stemunmix.load_model().card.get("validation"),
        "rows": rows,
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "segmentation_real.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
