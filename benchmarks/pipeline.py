"""The whole pipeline, step by step, against the network's own time.

    python benchmarks/pipeline.py [--sizes 1024 2048 8192] [--repeats 3]

Held-out four-stripe images (dose 100, seed 50000 + size), in memory: segment
(the network and the lattice naming), find_columns (peak finding and the
batched Gaussian fit), B-centred windows (24 px, the maps and columns the
image owns), NMF (4 components, stemunmix.learn.NMF through HyperSpy's
decomposition), GaussianMixture (4) through cluster_analysis, and the Voronoi
domain map. Each size runs in a fresh process, warmed on a 512^2 image first
(imports, numba, torch's kernels), ``--repeats`` times; the table gives the
median of each step, its ratio to segment's, the whole pipeline's ratio, and
the process's peak RSS (VmHWM). Writes benchmarks/results/pipeline.json.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from _results import merge_by_size

HERE = Path(__file__).resolve().parent
STEPS = ["segment", "find_columns", "windows", "NMF", "GMM", "domain map"]


def pipeline(image) -> dict:
    from stemunmix.learn import GaussianMixture

    times = {}

    def timed(name, fn):
        t = time.perf_counter()
        out = fn()
        times[name] = time.perf_counter() - t
        return out

    prob = timed("segment", lambda: image.segment(show_progressbar=False))
    columns = timed("find_columns", lambda: prob.find_columns(show_progressbar=False))
    ld = timed("windows", lambda: image.local_descriptors(24, classes="B",
                                                          show_progressbar=False))  # fmt: skip
    timed("NMF", lambda: ld.decomposition(algorithm="NMF", output_dimension=4,
                                          print_info=False))  # fmt: skip
    timed("GMM", lambda: ld.cluster_analysis(
        "decomposition", number_of_components=4,
        algorithm=GaussianMixture(4, random_state=0), print_info=False))  # fmt: skip
    timed("domain map", lambda: ld.get_domain_map())
    return {"steps_s": times, "columns": len(columns), "windows": len(ld.columns)}


def one_size(size: int, repeats: int) -> dict:
    warnings.simplefilter("ignore")
    from stemunmix.synthetic import perovskite

    pipeline(perovskite(shape=512, seed=1)[0])  # warm-up
    image, _ = perovskite(shape=size, seed=50000 + size)
    runs = [pipeline(image.deepcopy()) for _ in range(repeats)]
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
    med = {s: float(np.median([r["steps_s"][s] for r in runs])) for s in STEPS}
    return {"size": size, "repeats": repeats, "median_s": med,
            "runs": [r["steps_s"] for r in runs], "columns": runs[0]["columns"],
            "windows": runs[0]["windows"], "peak_rss_mb": peak / 1024}  # fmt: skip


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 8192])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_size(args.one, args.repeats)))
        return
    rows = []
    for size in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(size),
                              "--repeats", str(args.repeats)],
                             capture_output=True, text=True, check=True)  # fmt: skip
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        med, net = row["median_s"], row["median_s"]["segment"]
        total = sum(med.values())
        steps = ", ".join(f"{s} {med[s]:.2f} s ({med[s] / net:.2f}x)" for s in STEPS)
        print(f"{size}^2 ({row['columns']} columns, {row['windows']} windows, median "
              f"of {row['repeats']}): {steps}; whole {total:.2f} s = "
              f"{total / net:.2f}x the network; peak RSS {row['peak_rss_mb']:.0f} MB",
              flush=True)  # fmt: skip
    _write(rows)


def _write(rows):
    """Write the rows, keeping those of other sizes already in the file (so
    sizes can be run separately); the date and commit go with each row."""
    path = HERE / "results" / "pipeline.json"
    kept = []
    if path.exists():  # a file of one date for all rows gives each its date
        old = json.loads(path.read_text())
        kept = [{"date": old.get("date"), **r} for r in old["rows"]]
    record = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "rows": merge_by_size(kept, rows),
    }
    path.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
