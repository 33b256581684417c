"""Segmentation speed and memory, side by side with the CPU's matmul peak.

    python benchmarks/segmentation_speed.py [--repeats 3] [--device cpu]
        [--sizes 1024 4096] [--precisions float32 bfloat16]

Prints a table and writes benchmarks/results/segmentation_speed.json:
- matmul peak: median GFLOP/s of float32 2048x2048 matmuls on this machine, now;
- for 1024^2 and 4096^2 synthetic float32 images, median wall time of
  `segment`, Mpx/s of the image, achieved GFLOP/s (the network's FLOPs per
  pixel times the pixels it runs on; tile overlap is overhead, not counted) and
  its fraction of the matmul peak, in two cases: scale=1 on images of 19.8 px
  A-A spacing (the network's own work), and the defaults (scale="auto") on
  images of 25 px spacing, as the real images here are sampled (21-30 px):
  the network then runs at its training spacing (16 px) on fewer pixels;
- peak RSS of a fresh process segmenting a float32 8192^2 image (scale=1), and
  its RSS before, with the model and the image loaded; with the default tile
  (1024) and with tile=512.
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


def tiled_image(size: int, spacing: float = 19.8) -> np.ndarray:
    """A float32 synthetic image of ``size``^2 pixels, A-A spacing ``spacing``
    pixels (the generator's default is 0.396 nm / 0.02 nm = 19.8)."""
    from stemunmix.synthetic import perovskite

    base, _ = perovskite(shape=1024, seed=0, pixel_size=0.396 / spacing)
    reps = int(np.ceil(size / 1024))
    return np.tile(base.data.astype(np.float32), (reps, reps))[:size, :size].copy()


MEMORY_CHILD = """
import resource, sys, time, numpy as np
import stemunmix
from stemunmix.signals import AtomicResolutionImage
model = stemunmix.load_model()
image = AtomicResolutionImage(np.load(sys.argv[1]))
base = int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
t0 = time.perf_counter()
prob = image.segment(model=model, scale=1, device=sys.argv[2], tile=int(sys.argv[3]))
seconds = time.perf_counter() - t0
# VmHWM: this process's own peak. ru_maxrss would carry over the forking
# parent's RSS through exec (Linux keeps the larger of the two).
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0]
print(base / 2**20, int(hwm.split()[1]) / 1024, seconds)
"""


def main():
    import stemunmix
    from stemunmix.signals import AtomicResolutionImage

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=int, nargs="*", default=[1024, 4096])
    parser.add_argument("--memory-size", type=int, default=8192)
    parser.add_argument("--auto-spacing", type=float, default=25.0,
                        help="A-A spacing (px) of the scale='auto' images")  # fmt: skip
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--precisions", nargs="*", default=["float32"],
                        help="the network's arithmetic: float32, bfloat16")  # fmt: skip
    args = parser.parse_args()

    model = stemunmix.load_model()
    flops_px = model.flops_per_pixel()
    peak = matmul_peak(args.device)
    rows = []
    cases = [("1", 19.8, 1), ("auto", args.auto_spacing, "auto")]
    for size, precision in ((s, p) for s in args.sizes for p in args.precisions):
        for label, spacing, scale in cases:
            image = AtomicResolutionImage(tiled_image(size, spacing))
            kw = dict(model=model, scale=scale, device=args.device, precision=precision)
            prob = image.segment(**kw)  # warm-up
            factor = float(np.ravel(prob.metadata.Signal.stemunmix.segment.factor)[0])
            del prob
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                image.segment(**kw)
                times.append(time.perf_counter() - t0)
            t = float(np.median(times))
            # The network's pixels: the image resampled by ``factor``.
            gflops = flops_px * (factor * size) ** 2 / t / 1e9
            rows.append({"size": size, "scale": label, "spacing_px": spacing,
                         "precision": precision,
                         "factor": factor, "seconds_median": t, "seconds_all": times,
                         "mpx_per_s": size**2 / t / 1e6, "gflop_per_s": gflops,
                         "fraction_of_matmul_peak": gflops / peak})  # fmt: skip
            del image

    memory = []
    if args.memory_size:
        path = Path(args.out) / f"_image_{args.memory_size}.npy"
        Path(args.out).mkdir(parents=True, exist_ok=True)
        np.save(path, tiled_image(args.memory_size))
        for tile in (1024, 512):  # the default, and smaller tiles
            out = subprocess.run(
                [sys.executable, "-c", MEMORY_CHILD, str(path), args.device, str(tile)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            base, peak_rss, seconds = map(float, out.stdout.split()[-3:])
            memory.append({"size": args.memory_size, "tile": tile, "rss_before_mb": base,
                           "peak_rss_mb": peak_rss, "seconds": seconds})  # fmt: skip
        path.unlink()

    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, device {args.device}")  # fmt: skip
    print(f"network: {flops_px / 1e3:.1f} kFLOP/pixel, receptive field "
          f"{model.receptive_field()} px; matmul peak {peak:.1f} GFLOP/s")  # fmt: skip
    print(f"{'size':>6s} {'scale':>5s} {'precision':>9s} {'spacing':>7s} {'factor':>6s} "
          f"{'median s':>9s} {'Mpx/s':>7s} {'GFLOP/s':>8s} {'of peak':>8s}")  # fmt: skip
    for r in rows:
        print(f"{r['size']:6d} {r['scale']:>5s} {r['precision']:>9s} "
              f"{r['spacing_px']:7.1f} {r['factor']:6.3f} "
              f"{r['seconds_median']:9.2f} {r['mpx_per_s']:7.3f} "
              f"{r['gflop_per_s']:8.1f} {r['fraction_of_matmul_peak']:8.1%}")  # fmt: skip
    for m in memory:
        print(f"peak RSS segmenting a float32 {m['size']}^2 image (scale=1, tile="
              f"{m['tile']}): {m['peak_rss_mb']:.0f} MB ({m['rss_before_mb']:.0f} MB "
              f"with the model and image loaded), {m['seconds']:.1f} s")  # fmt: skip
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
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / name).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
