"""Segmentation speed and memory, side by side with the CPU's matmul peak.

    python benchmarks/segmentation_speed.py [--repeats 3] [--device cpu]

Prints a table and writes benchmarks/results/segmentation_speed.json:
- matmul peak: median GFLOP/s of float32 2048x2048 matmuls on this machine, now;
- for 1024^2 and 4096^2 synthetic images at scale=1 (the network's own work):
  median wall time of `segment`, Mpx/s, achieved GFLOP/s (the network's FLOPs
  per pixel times the pixels; tile overlap is overhead, not counted) and its
  fraction of the matmul peak;
- peak RSS of a fresh process segmenting an 8192^2 image (scale=1), over the RSS
  of the same process with the image loaded.
"""

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def matmul_peak(device, repeats=5, n=2048) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        (a @ b).sum().item()
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / np.median(times[1:]) / 1e9


def tiled_image(size: int) -> np.ndarray:
    from stemunmix.synthetic import perovskite

    base, _ = perovskite(shape=1024, seed=0)
    reps = int(np.ceil(size / 1024))
    return np.tile(base.data, (reps, reps))[:size, :size].copy()


MEMORY_CHILD = """
import resource, sys, numpy as np
from stemunmix.signals import AtomicResolutionImage
image = np.load(sys.argv[1], mmap_mode="r")
image = AtomicResolutionImage(np.asarray(image))
import stemunmix; model = stemunmix.load_model()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
prob = image.segment(model=model, scale=1, device=sys.argv[2])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(base / 1024, peak / 1024)
"""


def main():
    import stemunmix
    from stemunmix.signals import AtomicResolutionImage

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=int, nargs="*", default=[1024, 4096])
    parser.add_argument("--memory-size", type=int, default=8192)
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()

    model = stemunmix.load_model()
    flops_px = model.flops_per_pixel()
    peak = matmul_peak(args.device)
    rows = []
    for size in args.sizes:
        image = AtomicResolutionImage(tiled_image(size))
        image.segment(model=model, scale=1, device=args.device)  # warm up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            image.segment(model=model, scale=1, device=args.device)
            times.append(time.perf_counter() - t0)
        t = float(np.median(times))
        gflops = flops_px * size**2 / t / 1e9
        rows.append({"size": size, "seconds_median": t, "seconds_all": times,
                     "mpx_per_s": size**2 / t / 1e6, "gflop_per_s": gflops,
                     "fraction_of_matmul_peak": gflops / peak})  # fmt: skip
        del image

    memory = None
    if args.memory_size:
        path = Path(args.out) / f"_image_{args.memory_size}.npy"
        Path(args.out).mkdir(parents=True, exist_ok=True)
        np.save(path, tiled_image(args.memory_size))
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_CHILD, str(path), args.device],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        path.unlink()
        base, peak_rss = map(float, out.stdout.split()[-2:])
        memory = {"size": args.memory_size, "rss_before_mb": base,
                  "peak_rss_mb": peak_rss, "segment_extra_mb": peak_rss - base}  # fmt: skip

    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, device {args.device}")  # fmt: skip
    print(f"network: {flops_px / 1e3:.1f} kFLOP/pixel, receptive field "
          f"{model.receptive_field()} px; matmul peak {peak:.1f} GFLOP/s")  # fmt: skip
    print(
        f"{'size':>6s} {'median s':>9s} {'Mpx/s':>7s} {'GFLOP/s':>8s} {'of peak':>8s}"
    )
    for r in rows:
        print(f"{r['size']:6d} {r['seconds_median']:9.2f} {r['mpx_per_s']:7.3f} "
              f"{r['gflop_per_s']:8.1f} {r['fraction_of_matmul_peak']:8.1%}")  # fmt: skip
    if memory:
        print(f"peak RSS segmenting {memory['size']}^2: {memory['peak_rss_mb']:.0f} MB "
              f"({memory['segment_extra_mb']:.0f} MB over the loaded image)")  # fmt: skip
    result = {"date": str(date.today()), "machine": platform.node(),
              "processor": platform.processor() or platform.machine(),
              "threads": torch.get_num_threads(), "device": args.device,
              "torch": torch.__version__, "flops_per_pixel": flops_px,
              "receptive_field": model.receptive_field(),
              "matmul_peak_gflop_per_s": peak, "rows": rows, "memory": memory}  # fmt: skip
    name = (
        "segmentation_speed.json"
        if args.device == "cpu"
        else f"segmentation_speed_{args.device}.json"
    )
    (Path(args.out) / name).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
