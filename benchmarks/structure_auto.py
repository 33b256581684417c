"""What segment(structure="auto") takes each lattice for, and what it costs.

    python benchmarks/structure_auto.py

Synthetic images (``stemunmix.synthetic``): [001] and [110] perovskites at
doses 20 and 200; perovskites whose B columns are faint and wide (0.05-0.12
of A's height, 0.055-0.07 nm; BiFeO3's Fe is about 0.08); fcc, bcc and hcp
crystals filling the frame and an fcc [110] particle on vacuum and on an
amorphous film; [110] Si and GaAs dumbbells; MoS2 seen flat; the 128 px
perovskite in the corner of a 512 px frame of noise, zeros or an amorphous
texture of ``structures.py`` (its crop mostly no crystal); a perovskite
whose B is half its A under a thickness 3 and 12 times larger at one side. The real
images in ../shared/data/real (all perovskites but the nanoparticles and
MoS2; PMN iDPC shows its O columns). Each through ``image.segment()`` with
the defaults: the structure used and the figures that decided
(``metadata.Signal.stemunmix.segment.structure_evidence``): ``b_peaks``, the
share of the perovskite network's B columns that are peaks of the image,
and where that is below 0.15, ``b_peaks_less_a``, the same once the fitted
A columns are taken away, ``b_level``, the B columns' median level over
the A columns', ``local_height_correlation``, of the heights (over their
local mean) at the two ends of every bond between nearest columns, and
``hexagonal``, the share of
the angles between two bonds of a column near 60 or 120 degrees
(:mod:`stemunmix.core.structure`). Then the cost:
the check on the maps segment() made of a 2048^2 [001] perovskite (median of
5), beside segment()'s own time.

Writes benchmarks/results/structure_auto.json.

    python benchmarks/structure_auto.py --diagnose

Why a particle on a film (and the real moire particle 0) is taken for a
perovskite: the same cases, each with two more figures of the perovskite
network's columns, computed for every case: ``b_peaks_less_a`` (above, not
only where ``b_peaks`` is low) and ``on_bonds``, the share of B columns
nearer an A column than 0.6 of the A columns' nearest distance (a B in the
valley midway along a bond between two columns of one species; a
perovskite's B sits 0.71 ([001]) or 0.87 ([110]) of it away). Writes
benchmarks/results/structure_auto_diagnose.json.
"""

import json
import time
import warnings
from pathlib import Path

import numpy as np
from _results import commit

HERE = Path(__file__).resolve().parent


def synthetic_cases() -> dict:
    from stemunmix.synthetic import crystal, perovskite

    out = {}
    for proj in ("001", "110"):
        for dose in (20, 200):
            out[f"perovskite [{proj}] dose {dose}"] = ("perovskite", lambda p=proj, d=dose: perovskite(shape=256, projection=p, dose=d, seed=1)[0])  # fmt: skip
    for ratio in (0.05, 0.08, 0.12):
        for width in (0.055, 0.07):
            out[f"perovskite, B {ratio} of A, {width} nm wide"] = ("perovskite", lambda r=ratio, w=width: perovskite(shape=256, intensity_ratio=r, column_width=w, dose=50, seed=2)[0])  # fmt: skip
    for st, zone in (("fcc", "110"), ("fcc", "100"), ("fcc", "111"), ("bcc", "100"), ("bcc", "110"), ("hcp", "0001")):  # fmt: skip
        out[f"{st} [{zone}]"] = ("one species", lambda s=st, z=zone: crystal(s, z, 0.392, shape=256, particle=None, dose=100)[0])  # fmt: skip
    for support in (None, 0.3):
        where = "vacuum" if support is None else "a film"
        out[f"fcc [110] particle on {where}"] = ("one species", lambda s=support: crystal("fcc", "110", 0.392, shape=256, particle=4.0, support=s, dose=100)[0])  # fmt: skip
    for name, st, a in (("Si", "diamond", 0.543), ("GaAs", "zincblende", 0.565)):
        out[f"{name} [110] dumbbells"] = ("dumbbell", lambda s=st, a=a: crystal(s, "110", a, shape=512, pixel_size=0.01, particle=None, dose=100, column_width=0.035)[0])  # fmt: skip
    out["MoS2 [0001]"] = ("2D", lambda: crystal("mos2", "0001", 0.316, shape=256, pixel_size=0.0127, particle=None, dose=100)[0])  # fmt: skip
    for ratio in (3, 12):
        out[f"perovskite, B 0.5 of A, {ratio}x thicker across"] = ("perovskite", lambda r=ratio: _graded(r))  # fmt: skip
    for kind in ("noise", "zeros", "amorphous"):
        out[f"perovskite in a corner, on {kind}, dose 20"] = ("perovskite", lambda k=kind: _corner(k))  # fmt: skip
    return out


def _graded(ratio):
    """A [001] perovskite whose B is half its A (SrTiO3-like), its image
    scaled from 1 to ``ratio`` across (a thickness gradient), dose 50."""
    from stemunmix.signals import AtomicResolutionImage
    from stemunmix.synthetic import perovskite

    image, _ = perovskite(shape=512, dose=None, seed=1, domains="none",
                          intensity_ratio=0.5)  # fmt: skip
    data = np.asarray(image.data, float)
    data = data * np.linspace(1.0, ratio, data.shape[1])[None, :]
    rng = np.random.default_rng(0)
    return AtomicResolutionImage(
        rng.poisson(np.clip(data, 0, None) * 50).astype(np.float32)
    )


def _corner(kind):
    """The 128 px perovskite in the corner of a 512 px frame of
    ``benchmarks/structures.py`` (dose 20): most of the crop is no crystal."""
    from structures import corner

    from stemunmix.signals import AtomicResolutionImage

    return AtomicResolutionImage(corner(kind, 20)[0])


def real_cases() -> dict:
    from _real_images import NAMES, REAL, load

    from stemunmix.signals import AtomicResolutionImage

    if not REAL.exists():
        return {}
    out = {f"real {n}": ("perovskite", lambda n=n: AtomicResolutionImage(load(n))) for n in NAMES}  # fmt: skip
    for k in range(4):
        out[f"real nanoparticles {k}"] = ("one species", lambda k=k: AtomicResolutionImage(load(f"nanoparticles {k}")))  # fmt: skip

    def hspy(name):
        import hyperspy.api as hs

        return AtomicResolutionImage(np.asarray(hs.load(REAL / name).data, np.float32))

    out["real MoS2 ADF"] = ("2D", lambda: hspy("temul_Se_implanted_MoS2_ADF.dm3"))
    out["real PMN iDPC"] = ("perovskite", lambda: hspy("singleorigin_PMN_iDPC.tif"))
    return out


def one(make) -> dict:
    image = make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        md = image.segment(show_progressbar=False).metadata.Signal.stemunmix.segment
    ev = md.get_item("structure_evidence")
    ev = ev.as_dictionary() if ev is not None else {}
    return {"structure_used": md.structure_used, "model": md.model, **ev}


def with_more_figures():
    """Wrap :func:`stemunmix.core.structure.perovskite_evidence` to add
    ``b_peaks_less_a`` for every crop and ``on_bonds`` (``--diagnose``)."""
    from scipy.spatial import cKDTree

    from stemunmix.core import structure as st

    plain = st.perovskite_evidence

    def evidence(image, xy, labels, class_names):
        out = plain(image, xy, labels, class_names)
        xy, labels = np.asarray(xy, float), np.asarray(labels, int)
        a, b = (xy[labels == list(class_names).index(k)] for k in ("A", "B"))
        if min(len(a), len(b)) < st.MIN_COLUMNS:
            return out
        image = np.asarray(image, float)
        if not np.isfinite(out["b_peaks_less_a"]):
            out["b_peaks_less_a"] = st.peak_share(
                image - st._a_model(image, a, b), b, xy
            )
        nearest_a = np.median(cKDTree(a).query(a, k=2)[0][:, 1])
        out["on_bonds"] = float(np.mean(cKDTree(a).query(b)[0] < 0.6 * nearest_a))
        return out

    st.perovskite_evidence = evidence


def cost(repeats=5) -> dict:
    """The check's own time on a 2048^2 [001] perovskite (the maps segment()
    made, median of ``repeats``), and segment()'s (one run, for scale: on
    this shared machine two runs of it differ by more than the check)."""
    from stemunmix.nn import inference
    from stemunmix.nn.inference import FramePlan

    image = perovskite_2048()
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prob = image.segment(structure="perovskite", show_progressbar=False)
    whole = time.perf_counter() - t
    md = prob.metadata.Signal.stemunmix.segment
    plans = {(): FramePlan(factor=float(np.ravel(md.factor)[0]), spacing=None,
                           range=(0.0, 1.0))}  # fmt: skip
    spent = []
    for _ in range(repeats):
        t = time.perf_counter()
        inference.auto_structure(
            prob.data, list(prob.class_names), image.data, 0, plans, 16.0
        )
        spent.append(time.perf_counter() - t)
    return {"check_s": float(np.median(spent)), "segment_s": whole}


def perovskite_2048():
    from stemunmix.synthetic import perovskite

    return perovskite(shape=2048, dose=100, seed=30002)[0]


FIGURES = (
    "b_peaks",
    "b_peaks_less_a",
    "b_level",
    "local_height_correlation",
    "hexagonal",
)


def main(diagnose=False):
    out = {"commit": commit(), "date": time.strftime("%Y-%m-%d"), "cases": {}}
    figures_of = FIGURES + (("on_bonds",) if diagnose else ())
    if diagnose:
        with_more_figures()
    right = 0
    cases = synthetic_cases() | real_cases()
    for name, (truth, make) in cases.items():
        r = out["cases"][name] = {"truth": truth, **one(make)}
        right += r["structure_used"] == truth
        figures = ", ".join(
            f"{k} {r[k]:.2f}" for k in figures_of if np.isfinite(r.get(k, np.nan))
        )  # fmt: skip
        print(f"{name:40s} {truth:12s} -> {r['structure_used']:12s} ({figures})", flush=True)  # fmt: skip
    print(f"named right: {right} of {len(cases)}", flush=True)
    if diagnose:
        name = "structure_auto_diagnose.json"
        (HERE / "results" / name).write_text(json.dumps(out, indent=1))
        return
    out["cost_2048_s"] = cost()
    c = out["cost_2048_s"]
    print(f"the check on a 2048^2 perovskite: {c['check_s'] * 1000:.0f} ms "
          f"(median of 5; segment() itself {c['segment_s']:.2f} s)", flush=True)  # fmt: skip
    (HERE / "results" / "structure_auto.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    import sys

    main(diagnose="--diagnose" in sys.argv[1:])
