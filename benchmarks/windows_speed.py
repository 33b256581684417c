"""Window extraction throughput: 32x32 windows, two channels, sub-pixel.

    python benchmarks/windows_speed.py [--n 200000] [--repeats 5]

Two cases on a 2048^2 two-channel float32 image, each the median of
``--repeats`` timed runs after one warm-up (numba compilation):

- random: ``--n`` uniformly random sub-pixel centres in one call of
  ``stemunmix.core.windows.extract_windows`` (one output array of n windows);
- lattice, by blocks: ``--n`` centres on a jittered lattice in raster order
  (as columns are), gathered the way ``local_descriptors`` gathers them, one
  call per 1024^2 image block.

Prints windows per second and writes benchmarks/results/windows_speed.json.
"""

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np

from stemunmix.core.windows import extract_windows

HERE = Path(__file__).resolve().parent


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--d", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    image = rng.random((2, 2048, 2048)).astype(np.float32)
    xy = rng.uniform(args.d, 2048 - args.d, (args.n, 2))
    extract_windows(image, xy[:100], args.d)
    # A lattice with as many sites as n, in raster order, split into the
    # 1024^2 blocks local_descriptors gathers separately.
    side = int(np.ceil(np.sqrt(args.n)))
    step = (2048 - 2 * args.d) / side
    gy, gx = np.mgrid[0:side, 0:side]
    lattice = args.d + step * np.stack([gx.ravel(), gy.ravel()], 1)[: args.n]
    lattice += rng.uniform(-0.5, 0.5, lattice.shape)
    block = (lattice // 1024).astype(int)
    order = np.lexsort((lattice[:, 0], lattice[:, 1], block[:, 0], block[:, 1]))
    lattice, block = lattice[order], block[order]
    keys = block[:, 1] * 2 + block[:, 0]
    groups = np.split(lattice, np.flatnonzero(np.diff(keys)) + 1)
    record = {"date": str(date.today()), "machine": platform.node(), "n": args.n,
              "d": args.d, "channels": 2}  # fmt: skip
    cases = {
        "random": lambda: extract_windows(image, xy, args.d),
        "lattice, by blocks": lambda: [
            extract_windows(image, g, args.d) for g in groups
        ],
    }
    for name, run in cases.items():
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        t = float(np.median(times))
        print(f"{name}: {args.n} windows of {args.d}x{args.d}, 2 channels: median "
              f"{t:.3f} s = {args.n / t:,.0f} windows/s "
              f"(runs: {', '.join(f'{x:.3f}' for x in times)})")  # fmt: skip
        record[name] = {"seconds": times, "median_s": t, "windows_per_s": args.n / t}
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "windows_speed.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
