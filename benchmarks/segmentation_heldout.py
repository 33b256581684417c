"""Default model on held-out synthetic images: argmax class at the true columns.

    python benchmarks/segmentation_heldout.py

Seeds (20000+) and parameters never used in training; doses 20, 100, 500; both
projections; rotated, drifted, jittered, at three pixel sizes. Prints a table and
writes benchmarks/results/segmentation_heldout.json.
"""

import json
from datetime import date
from pathlib import Path

import numpy as np

from stemunmix.synthetic import perovskite

HERE = Path(__file__).resolve().parent


def main():
    rows = []
    for projection in ("001", "110"):
        for dose in (20, 100, 500):
            for k, pixel_size in enumerate((0.014, 0.02, 0.028)):
                seed = 20_000 + 10 * dose + k + (0 if projection == "001" else 5)
                image, truth = perovskite(
                    shape=512, projection=projection, dose=dose,
                    pixel_size=pixel_size, rotation=float(seed % 90),
                    drift=(3.0, -2.0), jitter=0.3, seed=seed,
                )  # fmt: skip
                prob = image.segment()
                ij = np.round(truth.columns.xy).astype(int)
                pred = prob.data.argmax(0)[ij[:, 1], ij[:, 0]]
                ok = pred == truth.columns.labels
                rows.append({"projection": projection, "dose": dose,
                             "pixel_size": pixel_size, "columns": len(ok),
                             "accuracy": float(ok.mean()),
                             "A": float(ok[truth.columns.labels == 0].mean()),
                             "B": float(ok[truth.columns.labels == 1].mean())})  # fmt: skip
    print(
        f"{'proj':>4s} {'dose':>5s} {'px nm':>6s} {'cols':>5s} {'acc':>7s} {'A':>7s} {'B':>7s}"
    )
    for r in rows:
        print(f"{r['projection']:>4s} {r['dose']:5d} {r['pixel_size']:6.3f} "
              f"{r['columns']:5d} {r['accuracy']:7.4f} {r['A']:7.4f} {r['B']:7.4f}")  # fmt: skip
    print(f"minimum accuracy: {min(r['accuracy'] for r in rows):.4f}")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "segmentation_heldout.json").write_text(
        json.dumps({"date": str(date.today()), "rows": rows}, indent=1)
    )


if __name__ == "__main__":
    main()
