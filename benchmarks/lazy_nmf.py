"""Lazy NMF of a million 32 x 32 windows in bounded memory.

    python benchmarks/lazy_nmf.py [--n 1000000] [--chunk 16384] [--components 4]

The windows are a lazy LocalDescriptors stack (n, 32, 32) whose chunks are
generated on demand (seeded by chunk, so every pass reads the same data): each
window is a random nonnegative mixture of four displaced-lattice patterns
(Gaussian columns at the corners and the centre, the centre shifted 3 px along
one of the four <111>-like directions, plus 0-5 % of the other three) with Poisson noise, like B-centred windows
of a four-domain image. HyperSpy's lazy ``decomposition(algorithm="NMF",
output_dimension=4)`` runs on it, then stemunmix's GaussianMixture(4) on the
loadings. Reports wall time and peak RSS (sampled every 0.2 s), and how well
the clusters recover the generating pattern (adjusted Rand index on the
dominant pattern). Writes benchmarks/results/lazy_nmf.json.
"""

import argparse
import json
import platform
import threading
import time
from datetime import date
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
D = 32


def patterns() -> np.ndarray:
    """Four (32, 32) window patterns: corner columns and a displaced centre."""
    yy, xx = np.mgrid[0:D, 0:D] - (D - 1) / 2
    out = []
    for angle in (45, 135, 225, 315):
        shift = 3.0 * np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
        img = np.zeros((D, D))
        for cx, cy in [(-12, -12), (12, -12), (-12, 12), (12, 12)]:
            img += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 3.0**2))
        img += 0.5 * np.exp(
            -((xx - shift[0]) ** 2 + (yy - shift[1]) ** 2) / (2 * 3.0**2)
        )
        out.append(img)
    return np.array(out, np.float32)


def make_chunk(block_id, size, total, chunk):
    rng = np.random.default_rng(1000 + block_id[0])
    n = min(chunk, total - block_id[0] * chunk)
    base = patterns().reshape(4, -1)
    label = rng.integers(0, 4, n)
    weights = rng.uniform(0, 0.05, (n, 4))
    weights[np.arange(n), label] = 1.0
    mean = 50 * (weights @ base) + 5
    return rng.poisson(mean).astype(np.float32).reshape(n, D, D)


def truth_labels(total, chunk):
    out = []
    for b in range(-(-total // chunk)):
        rng = np.random.default_rng(1000 + b)
        out.append(rng.integers(0, 4, min(chunk, total - b * chunk)))
    return np.concatenate(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=16384)
    parser.add_argument("--components", type=int, default=4)
    args = parser.parse_args()

    import dask.array as da
    import hyperspy.api as hs
    import psutil
    from sklearn.metrics import adjusted_rand_score

    from stemunmix.learn import GaussianMixture

    peak = [0]
    stop = threading.Event()

    def sample():
        me = psutil.Process()
        while not stop.is_set():
            peak[0] = max(peak[0], me.memory_info().rss)
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    rss_start = psutil.Process().memory_info().rss
    chunks = ((args.chunk,) * (args.n // args.chunk) + ((args.n % args.chunk,) if args.n % args.chunk else ()), (D,), (D,))  # fmt: skip
    data = da.map_blocks(
        lambda block_id=None: make_chunk(block_id, D, args.n, args.chunk),
        chunks=chunks, dtype=np.float32,
    )  # fmt: skip
    windows = hs.signals.Signal2D(data).as_lazy()
    windows.data = data
    windows.set_signal_type("local_descriptors")
    t0 = time.perf_counter()
    windows.decomposition(algorithm="NMF", output_dimension=args.components,
                          print_info=False)  # fmt: skip
    t_nmf = time.perf_counter() - t0
    t1 = time.perf_counter()
    windows.cluster_analysis("decomposition", number_of_components=args.components,
                             algorithm=GaussianMixture(4, random_state=0))  # fmt: skip
    t_gmm = time.perf_counter() - t1
    stop.set()
    labels = np.asarray(windows.learning_results.cluster_labels).argmax(0)
    ari = adjusted_rand_score(truth_labels(args.n, args.chunk), labels)
    record = {
        "date": str(date.today()),
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{__import__('os').cpu_count()} cores",
        "n": args.n, "d": D, "chunk": args.chunk, "nmf_s": t_nmf, "gmm_s": t_gmm,
        "peak_rss_mb": peak[0] / 2**20, "rss_start_mb": rss_start / 2**20,
        "data_gb": args.n * D * D * 4 / 1e9, "ari": ari,
    }  # fmt: skip
    print(f"{args.n} windows of {D}x{D} ({record['data_gb']:.1f} GB as float32), "
          f"chunks of {args.chunk}: lazy NMF ({args.components}) {t_nmf:.1f} s, "
          f"GaussianMixture {t_gmm:.1f} s, peak RSS {record['peak_rss_mb']:.0f} MB "
          f"(at start {record['rss_start_mb']:.0f} MB), ARI {ari:.4f}")  # fmt: skip
    (HERE / "results" / "lazy_nmf.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
