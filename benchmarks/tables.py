"""Markdown tables of the JSON results, as pasted into BENCHMARKS.md.

python benchmarks/tables.py columns_vs_atomap|columns_real
"""

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def columns_vs_atomap():
    rows = json.loads((RESULTS / "columns_vs_atomap.json").read_text())["rows"]
    print("| method | size | dose | s | cold s | recall A / B | precision A / B | RMS A / B px "
          "| dB median / p90 px | CRB median px | dB / CRB | peak RSS MB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cold = r.get("cold_seconds", r["seconds"])
        print(f"| {r['method']} | {r['size']} | {r['dose']} | {r['seconds']:.2f} "
              f"| {cold:.2f} "
              f"| {r['A_recall']:.4f} / {r['B_recall']:.4f} "
              f"| {r['A_precision']:.4f} / {r['B_precision']:.4f} "
              f"| {r['A_rms_px']:.3f} / {r['B_rms_px']:.3f} "
              f"| {r['B_displacement_error_median_px']:.3f} / {r['B_displacement_error_p90_px']:.3f} "
              f"| {r['crb_displacement_median_px']:.3f} "
              f"| {r['B_displacement_error_median_px'] / r['crb_displacement_median_px']:.2f} "
              f"| {r['peak_rss_mb']:.0f} |")  # fmt: skip
    by = {(r["method"], r["size"], r["dose"]): r for r in rows}
    print()
    for (method, size, dose), r in by.items():
        if method == "atomap" and ("stemunmix", size, dose) in by:
            ours = by[("stemunmix", size, dose)]
            ratio = r["seconds"] / ours["seconds"]
            cold = r["seconds"] / ours.get("cold_seconds", ours["seconds"])
            print(f"- {size}^2, dose {dose}: Atomap / stemunmix wall time = "
                  f"{ratio:.1f}x (first call: {cold:.1f}x)")  # fmt: skip


def columns_real():
    rows = json.loads((RESULTS / "columns_real.json").read_text())["rows"]
    print("| image / layer | B columns | rows (p5-p95) | median offset x, y pm "
          "| its standard error x, y pm | std x, y pm | robust std x, y pm "
          "| median length pm |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        if "b_columns" not in r:
            continue  # the contrast profile, printed by the script itself
        fmt = lambda v: ", ".join(f"{x:.2f}" for x in v) if v else "-"  # noqa: E731
        length = r.get("offset_length_median_pm")
        band = r.get("rows_p5_p95")
        print(f"| {name} | {r['b_columns']} "
              f"| {'-' if band is None else f'{band[0]:.0f}-{band[1]:.0f}'} "
              f"| {fmt(r['offset_median_pm'])} | {fmt(r.get('offset_median_se_pm'))} "
              f"| {fmt(r.get('offset_std_pm'))} | {fmt(r['offset_robust_std_pm'])} "
              f"| {'-' if length is None else f'{length:.2f}'} |")  # fmt: skip


if __name__ == "__main__":
    {"columns_vs_atomap": columns_vs_atomap, "columns_real": columns_real}[
        sys.argv[1]
    ]()
