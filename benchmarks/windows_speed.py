"""Window extraction throughput: 32x32 windows, two channels, sub-pixel.

    python benchmarks/windows_speed.py [--n 200000] [--repeats 5]

Random sub-pixel centres on a 2048^2 two-channel float32 image; median of
``--repeats`` timed calls of ``stemunmix.core.windows.extract_windows`` after one
warm-up (numba compilation). Prints windows per second and writes
benchmarks/results/windows_speed.json.
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
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        extract_windows(image, xy, args.d)
        times.append(time.perf_counter() - t0)
    t = float(np.median(times))
    print(f"{args.n} windows of {args.d}x{args.d}, 2 channels: median {t:.3f} s "
          f"= {args.n / t:,.0f} windows/s (runs: {', '.join(f'{x:.3f}' for x in times)})")  # fmt: skip
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "windows_speed.json").write_text(json.dumps({
        "date": str(date.today()), "machine": platform.node(), "n": args.n,
        "d": args.d, "channels": 2, "seconds": times, "median_s": t,
        "windows_per_s": args.n / t}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
