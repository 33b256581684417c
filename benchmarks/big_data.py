"""The whole lazy pipeline at growing image sizes: wall time, cost per pixel,
peak memory (the process and any dask workers, summed: RSS, and PSS, which
counts a page the processes share once).

    python benchmarks/big_data.py [--sizes 1024 4096 16384] [--repeats 3]
                                  [--repeat-max-size 4096]
                                  [--cluster [--worker-threads 2]]

Each size N is a .zspy of N x N pixels in 2048^2 chunks, written block by
block by tiling one 2048^2 synthetic image (seeds differ per block, so no two
blocks are equal). It is loaded lazily and goes through segment ->
find_columns -> local_descriptors (B windows, d = 20, saved and reloaded
lazily) -> lazy NMF (4; windows up to 2 GB read into memory once) ->
GaussianMixture (4) -> domain map written to .zspy, each run in a fresh
process. ``--cluster`` runs the same on a LocalCluster of two worker processes
of one dask thread each, with glibc's malloc tuned as docs/lazy.md advises;
``--worker-threads N`` lets torch and BLAS use N threads inside each worker
(dask's nanny sets OMP_NUM_THREADS=1).
Writes benchmarks/results/big_data[_cluster].json.
"""

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _results import merge_by_size

HERE = Path(__file__).resolve().parent
BLOCK = 2048
STEP = ["setup"]  # the step running now, for the memory sampler


def make_file(path: Path, n: int) -> None:
    import dask.array as da
    import hyperspy.api as hs
    import numpy as np

    from stemunmix.synthetic import perovskite

    k = max(1, n // BLOCK)
    size = min(n, BLOCK)

    def block(block_id=None):
        seed = block_id[0] * k + block_id[1]
        image, _ = perovskite(shape=size, domains="two_stripes", seed=seed)
        return image.data.astype(np.float32)

    data = da.map_blocks(block, chunks=((size,) * k, (size,) * k), dtype=np.float32)
    signal = hs.signals.Signal2D(data).as_lazy()
    signal.data = data
    for ax in signal.axes_manager.signal_axes:
        ax.scale, ax.units = 0.02, "nm"
    signal.save(path, overwrite=True)


def _pipeline(image, work: Path):
    import hyperspy.api as hs

    from stemunmix.learn import GaussianMixture

    work.mkdir(exist_ok=True)
    steps = {}
    STEP[0] = "segment"
    t = time.perf_counter()
    # The documented out-of-core practice: the network's maps are computed
    # once into a zarr store (segment's store=), and the windows are written
    # to .zspy once and read back, so no step recomputes either.
    prob = image.segment(store=work / "maps.zarr")
    steps["segment"] = time.perf_counter() - t
    STEP[0] = "find_columns"
    t = time.perf_counter()
    columns = prob.find_columns(image=image)
    steps["find_columns"] = time.perf_counter() - t
    STEP[0] = "windows"  # the memory sampler's label; timed with the NMF
    t = time.perf_counter()
    prob.local_descriptors(20, columns, classes="B", lazy_output=True).save(
        work / "windows.zspy", overwrite=True
    )
    ld = hs.load(work / "windows.zspy", lazy=True)
    STEP[0] = "lazy NMF"
    # max_memory: windows up to 2 GB are read into memory once instead of
    # once per epoch (8192^2: 0.55 GB). The 16384^2 ones (682k x 800 float32,
    # 2.2 GB) stream: 100k of them are fitted in memory first (presample).
    ld.decomposition(algorithm="NMF", output_dimension=4, max_memory=2e9,
                     print_info=False)  # fmt: skip
    steps["windows + lazy NMF"] = time.perf_counter() - t
    STEP[0] = "GMM + domain map"
    t = time.perf_counter()
    ld.cluster_analysis("decomposition", number_of_components=4,
                        algorithm=GaussianMixture(4, random_state=0))  # fmt: skip
    domain = ld.get_domain_map()  # lazy for lazy windows: written block by block
    domain.save(work / "domain.zspy", overwrite=True)
    steps["GMM + domain map"] = time.perf_counter() - t
    return columns, ld, domain, steps


def _warm_process() -> None:
    """Run every step once, eagerly, on a 1024^2 image like the benchmark's:
    imports, numba compilation and torch's kernels for a 1024^2 block."""
    from stemunmix.synthetic import perovskite

    image, _ = perovskite(shape=1024, domains="two_stripes", seed=999)
    prob = image.segment()
    prob.local_descriptors(20, prob.find_columns(image=image), classes="B")


def _pss(pid: int, rss: int) -> int:
    """A process's proportional set size (bytes): its resident pages, those it
    shares with other processes (torch's and numba's libraries in every
    worker) counted as its share. The sum over the processes is the memory
    they take together; the sum of their RSS counts a shared page once per
    process. RSS where the kernel gives no smaps_rollup."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss


def _role(process) -> str:
    """A child process's role, from its command line."""
    try:
        cmd = " ".join(process.cmdline())
    except Exception:
        return "?"
    for word in ("spawn_main", "resource_tracker", "forkserver"):
        if word in cmd:
            return {"spawn_main": "worker"}.get(word, word)
    return cmd[:40]


def run_pipeline(path: str, cluster: bool, worker_threads: int = 1,
                 worker_env=()) -> dict:  # fmt: skip
    import warnings

    import hyperspy.api as hs
    import psutil

    warnings.simplefilter("ignore")
    peak, client_peak, by_step, by_process = [0], [0], {}, {}
    pss_peak = [0]
    stop = threading.Event()

    def sample():
        me = psutil.Process()
        while not stop.is_set():
            total = 0
            here = 0
            pss = 0
            for p in [me] + me.children(recursive=True):
                try:
                    rss = p.memory_info().rss
                except psutil.Error:
                    continue
                pss += _pss(p.pid, rss)
                total += rss
                here = rss if p is me else here
                key = f"{STEP[0]}: {'this process' if p is me else _role(p)} {p.pid}"
                by_process[key] = max(by_process.get(key, 0), rss)
            peak[0] = max(peak[0], total)
            pss_peak[0] = max(pss_peak[0], pss)
            by_step[STEP[0]] = max(by_step.get(STEP[0], 0), total)
            client_peak[0] = max(client_peak[0], here)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    client = None
    if cluster:
        import dask
        from dask.distributed import Client, LocalCluster

        # dask's nanny starts workers with OMP_NUM_THREADS=1 (and the same for
        # MKL and OpenBLAS), so torch and BLAS in a task use one core;
        # ``worker_threads`` sets that number.
        env = {f"distributed.nanny.pre-spawn-environ.{k}_NUM_THREADS": worker_threads
               for k in ("OMP", "MKL", "OPENBLAS")}  # fmt: skip
        # The nanny also sets MALLOC_TRIM_THRESHOLD_=65536, under which glibc
        # maps and unmaps every large buffer: the network ran 1.5x slower in
        # a worker than in this process. docs/lazy.md gives these values.
        env.update({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_":
                    2**28,
                    "distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_":
                    2**25})  # fmt: skip
        for item in worker_env:  # --worker-env NAME=VALUE, for experiments
            name, value = item.split("=", 1)
            env[f"distributed.nanny.pre-spawn-environ.{name}"] = value
        with dask.config.set(env):
            client = Client(LocalCluster(n_workers=2, threads_per_worker=1,
                                         processes=True, memory_limit="3GB"))  # fmt: skip
    image = hs.load(path, lazy=True)
    image.set_signal_type("atomic_resolution")
    # Warm-up pays the one-time costs (imports, numba compilation, torch's
    # kernels for each input shape) outside the timing, so the cost per pixel
    # compares like with like across sizes: in this process and on the
    # executor thread of every worker (a 1024^2 image is one block per step,
    # and the worker that gets it would otherwise pay them inside the
    # timing), then a 512^2 corner through the lazy pipeline.
    t = time.perf_counter()
    if client is None:
        _warm_process()
    else:
        for worker in client.scheduler_info()["workers"]:
            client.submit(_warm_process, workers=[worker], pure=False).result()
    _pipeline(image.isig[:512, :512], Path(path).parent / "warmup")
    warmup = time.perf_counter() - t
    STEP[0] = "setup"
    by_step.clear()
    t0 = time.perf_counter()
    columns, ld, domain, steps = _pipeline(image, Path(path).parent)
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    if client is not None:
        client.close()
    n_pixels = int(image.data.shape[-1] * image.data.shape[-2])
    return {
        "pixels": n_pixels,
        "columns": len(columns),
        "windows": int(ld.axes_manager.navigation_size),
        "domain_map_shape": list(domain.data.shape),
        "wall_s": wall,
        "us_per_pixel": 1e6 * wall / n_pixels,
        "steps_s": steps,
        "peak_rss_mb": peak[0] / 2**20,
        "peak_rss_mb_by_step": {k: v / 2**20 for k, v in by_step.items()},
        "peak_rss_mb_this_process": client_peak[0] / 2**20,
        "peak_pss_mb": pss_peak[0] / 2**20,
        "peak_rss_mb_by_process": {k: round(v / 2**20) for k, v in by_process.items()},
        "warmup_s": warmup,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--cluster", action="store_true")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="fresh-process runs per size (median reported)",
    )
    parser.add_argument("--repeat-max-size", type=int, default=4096,
                        help="larger sizes run once")  # fmt: skip
    parser.add_argument("--worker-threads", type=int, default=1,
                        help="with --cluster: torch/BLAS threads in each worker")  # fmt: skip
    parser.add_argument("--worker-env", nargs="*", default=[], metavar="NAME=VALUE",
                        help="with --cluster: more environment for the workers "
                             "(e.g. MALLOC_ARENA_MAX=2)")  # fmt: skip
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_pipeline(args.one, args.cluster, args.worker_threads,
                                      args.worker_env)))  # fmt: skip
        return
    scheduler = (
        f"LocalCluster (2 processes x 1 thread, OMP_NUM_THREADS={args.worker_threads}"
        + "".join(f", {e}" for e in args.worker_env)
        + ")"
        if args.cluster
        else "threads"
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            path = Path(tmp) / f"image_{n}.zspy"
            make_file(path, n)
            cmd = [sys.executable, __file__, "--one", str(path)]
            if args.cluster:
                cmd += ["--cluster", "--worker-threads", str(args.worker_threads)]
                if args.worker_env:
                    cmd += ["--worker-env", *args.worker_env]
            runs = []
            for _ in range(args.repeats if n <= args.repeat_max_size else 1):
                out = subprocess.run(cmd, capture_output=True, text=True, check=True)
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
                r = runs[-1]
                print(f"{n:>6}^2: {r['wall_s']:8.1f} s, {r['us_per_pixel']:6.2f} us/px, "
                      f"peak RSS {r['peak_rss_mb']:7.0f} MB (PSS {r['peak_pss_mb']:.0f}), "
                      f"{r['columns']} columns, "
                      f"steps {', '.join(f'{k} {v:.1f} s' for k, v in r['steps_s'].items())}; "
                      f"peak RSS by step {', '.join(f'{k} {v:.0f}' for k, v in r['peak_rss_mb_by_step'].items())} MB, "
                      f"this process {r['peak_rss_mb_this_process']:.0f} MB",
                      flush=True)  # fmt: skip
            # The median run by wall time; the peak RSS is the largest of all.
            r = sorted(runs, key=lambda x: x["wall_s"])[(len(runs) - 1) // 2]
            r["size"] = n
            r["wall_s_runs"] = [x["wall_s"] for x in runs]
            r["peak_rss_mb"] = max(x["peak_rss_mb"] for x in runs)
            r["peak_pss_mb"] = max(x["peak_pss_mb"] for x in runs)
            results.append(r)
            import shutil

            for p in Path(tmp).iterdir():
                shutil.rmtree(p, ignore_errors=True)
            _write(results, scheduler)
    base = results[0]["us_per_pixel"]
    for r in results:
        print(f"{r['size']:>6}^2: median of {len(r['wall_s_runs'])} run(s) "
              f"{r['us_per_pixel']:.2f} us/px = {r['us_per_pixel'] / base:.2f} x that at "
              f"{results[0]['size']}^2")  # fmt: skip
    _write(results, scheduler)


def _write(results, scheduler: str):
    """Write the results, keeping those of other sizes already in the file if
    they ran on the same scheduler (so sizes can be run separately); the date
    and commit go with each."""
    name = "big_data.json" if scheduler == "threads" else "big_data_cluster.json"
    path = HERE / "results" / name
    kept = []
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("scheduler") == scheduler:
            kept = old.get("results", [])
    record = {
        "machine": f"{platform.processor() or platform.machine()}, "
                   f"{__import__('os').cpu_count()} cores",
        "scheduler": scheduler,
        "results": merge_by_size(kept, results),
    }  # fmt: skip
    path.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
