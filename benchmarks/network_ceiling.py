"""The network's own ceiling at 2048^2 with the defaults (a diagnostic for #36).

    python benchmarks/network_ceiling.py [--repeats 5]

segment() with the defaults on a 2048^2 image of 25 px spacing (as the real
images here are sampled) resamples it by 0.643 to the bundled model's
training spacing and runs the network on about 1317^2 pixels. This script
times that forward pass alone (the bundled model prepared as segment()
prepares it, one call on the whole resampled image, no tiles, no halo, no
resampling, no mask, no relabelling): no end-to-end run can be faster. It
prints, side by side with the float32 matmul peak measured in the same run,
median of ``--repeats``:

- the network's time, and the image's Mpx/s if nothing else took any time
  (the end-to-end rate's ceiling; target #36: >= 3.5 Mpx/s end to end);
- the network's GFLOP/s and its fraction of the matmul peak;
- the fraction of the peak that 3.5 Mpx/s would need with this network.

float32, and bfloat16 where the CPU has it natively. Then, in float32,
the decoders' first convolution split over its two inputs (what the
network does) against one convolution of the two concatenated, in
interleaved pairs: the median time ratio.
"""

import argparse
import platform
import time

import numpy as np
import torch
from segmentation_speed import matmul_peak

SIZE, SPACING, TARGET = 2048, 25.0, 3.5e6


def forward_times(model, side: int, precision: str, repeats: int) -> list:
    from stemunmix.core import threads

    x = torch.rand(1, 1, side, side).contiguous(memory_format=torch.channels_last)
    half = precision == "bfloat16"
    times = []
    with torch.no_grad(), threads.limited():
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=half):
                model(x).float().sum().item()
            times.append(time.perf_counter() - t0)
    return times[1:]


def split_against_cat(model, side: int, repeats: int) -> list:
    """float32 forward times per pair, (split, cat): the decoders' first
    convolution as the sum over its two inputs (stemunmix.nn.unet's
    ``_first_conv``) and as one convolution of the two concatenated,
    interleaved in one process (this machine's load changes between runs)."""
    from torch.nn import functional as F

    from stemunmix.core import threads
    from stemunmix.nn import unet

    split = unet._first_conv

    def cat(conv, up, skip):
        geometry = (conv.stride, conv.padding, conv.dilation)
        return F.conv2d(torch.cat([up, skip], 1), conv.weight, conv.bias, *geometry)

    x = torch.rand(1, 1, side, side).contiguous(memory_format=torch.channels_last)
    pairs = []
    try:
        with torch.no_grad(), threads.limited():
            for way in (split, cat):
                unet._first_conv = way
                model(x)
            for _ in range(repeats):
                times = []
                for way in (split, cat):
                    unet._first_conv = way
                    t0 = time.perf_counter()
                    model(x)
                    times.append(time.perf_counter() - t0)
                pairs.append(tuple(times))
    finally:
        unet._first_conv = split
    return pairs


def main():
    import stemunmix
    from stemunmix.nn.inference import check_precision, for_inference
    from stemunmix.nn.model_io import training_spacing

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model = stemunmix.load_model()
    factor = training_spacing(model) / SPACING
    m = model.multiple
    side = int(np.ceil(SIZE * factor / m) * m)
    flops = model.flops_per_pixel() * side**2
    net = for_inference(model)
    peak = matmul_peak("cpu")
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads; "
          f"2048^2 at {SPACING} px spacing, factor {factor:.3f}: the network on "
          f"{side}^2 px, {flops / 1e9:.1f} GFLOP; matmul peak {peak:.1f} GFLOP/s; "
          f"3.5 Mpx/s needs {flops * TARGET / SIZE**2 / 1e9:.1f} GFLOP/s, "
          f"{flops * TARGET / SIZE**2 / 1e9 / peak:.1%} of it")  # fmt: skip
    for precision in ("float32", "bfloat16"):
        try:
            check_precision(precision, "cpu")
        except ValueError as err:
            print(f"{precision}: not run ({err})")
            continue
        times = forward_times(net, side, precision, args.repeats)
        t = float(np.median(times))
        print(f"{precision}: network alone {t:.2f} s (runs "
              + ", ".join(f"{v:.2f}" for v in times)
              + f"), ceiling {SIZE**2 / t / 1e6:.2f} Mpx/s end to end, "
              f"{flops / t / 1e9:.1f} GFLOP/s = {flops / t / 1e9 / peak:.1%} of the "
              "float32 matmul peak", flush=True)  # fmt: skip
    pairs = split_against_cat(net, side, 2 * args.repeats)
    ratio = np.median([a / b for a, b in pairs])
    print(f"float32, the decoders' first convolution split over its two inputs "
          f"against one convolution of them concatenated: median time ratio "
          f"{ratio:.3f} over {len(pairs)} interleaved pairs (split "
          f"{np.median([a for a, _ in pairs]):.2f} s, cat "
          f"{np.median([b for _, b in pairs]):.2f} s)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
