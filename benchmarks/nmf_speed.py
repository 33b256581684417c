"""stemunmix.learn.NMF against scikit-learn's NMF at equal reconstruction error.

    python benchmarks/nmf_speed.py [--size 2048] [--repeats 3]

The B-centred 24 px windows of a held-out four-stripe image (dose 100, seed
40001, as domains.py), 4 components. scikit-learn: ``NMF(4)`` as HyperSpy's
eager ``decomposition(algorithm="NMF")`` builds it (init NNDSVDa, coordinate
descent, tol 1e-4, max_iter 200), and the same with max_iter 1000. Ours: the
defaults (tol 1e-4), and the fewest epochs that reach each scikit-learn
error. Relative error ||X - W H|| / ||X||; median wall time of ``repeats``
fits, measured side by side in one process; whether scikit-learn warned that
it had not converged. Writes benchmarks/results/nmf_speed.json.
"""

import argparse
import json
import os
import platform
import time
import warnings
from datetime import date
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def timed(fit, repeats):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fit()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from sklearn.decomposition import NMF as SkNMF

    from stemunmix.learn import NMF
    from stemunmix.synthetic import perovskite

    warnings.simplefilter("ignore")
    image, _ = perovskite(shape=args.size, seed=40001)
    ld = image.local_descriptors(24, classes="B", show_progressbar=False)
    x = np.asarray(ld.data, np.float64).reshape(len(ld.data), -1)
    norm = np.linalg.norm(x)
    rows = []
    for max_iter in (200, 1000):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t_sk, sk = timed(lambda mi=max_iter: SkNMF(4, init="nndsvda",
                                                       max_iter=mi).fit(x), args.repeats)  # fmt: skip
        warned = any("converge" in str(w.message).lower() for w in caught)
        e_sk = sk.reconstruction_err_ / norm
        # Our fewest epochs to reach scikit-learn's error (tol 0: run them all).
        lo, hi = 1, 2000
        while lo < hi:
            mid = (lo + hi) // 2
            m = NMF(4, max_iter=mid, tol=0.0, random_state=0).fit(x)
            lo, hi = (mid + 1, hi) if m.reconstruction_err_ / norm > e_sk else (lo, mid)
        t_ours, ours = timed(lambda e=lo: NMF(4, max_iter=e, tol=0.0,
                                              random_state=0).fit(x), args.repeats)  # fmt: skip
        rows.append({"sklearn_max_iter": max_iter, "sklearn_s": t_sk,
                     "sklearn_error": e_sk, "sklearn_iter": int(sk.n_iter_),
                     "sklearn_warned": warned, "ours_epochs": lo, "ours_s": t_ours,
                     "ours_error": ours.reconstruction_err_ / norm,
                     "speedup": t_sk / t_ours})  # fmt: skip
        print(f"scikit-learn max_iter {max_iter}: error {e_sk:.5f} in {t_sk:.2f} s "
              f"({sk.n_iter_} iterations{', not converged' if warned else ''}); ours: "
              f"{rows[-1]['ours_error']:.5f} in {t_ours:.2f} s ({lo} epochs): "
              f"{t_sk / t_ours:.1f}x faster", flush=True)  # fmt: skip
    t_def, default = timed(lambda: NMF(4, random_state=0).fit(x), args.repeats)
    print(f"ours with the defaults (tol 1e-4): error "
          f"{default.reconstruction_err_ / norm:.5f} in {t_def:.2f} s "
          f"({default.n_iter_} epochs)")  # fmt: skip
    record = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "date": date.today().isoformat(), "size": args.size, "windows": len(x),
        "features": x.shape[1], "rows": rows,
        "defaults": {"s": t_def, "epochs": int(default.n_iter_),
                     "error": default.reconstruction_err_ / norm},
    }  # fmt: skip
    (HERE / "results" / "nmf_speed.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
