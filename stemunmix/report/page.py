"""report.html and the saved signals of an analysis."""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

import numpy as np

from stemunmix.core.checks import calibrated
from stemunmix.report.differences import domain_differences
from stemunmix.report.figures import _figures
from stemunmix.report.pipeline import Analysis


def write_report(result: Analysis, out, title: str = "stemunmix report") -> Path:
    """Write the figures, ``report.html`` and ``results.json`` (the numbers
    of the page, for scripts: :func:`summary`) into the folder ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    differences = domain_differences(result)
    (out / "results.json").write_text(
        json.dumps(summary(result, differences), indent=1, default=_plain),
        encoding="utf-8",
    )
    figures = _figures(result, out)
    rows = _summary_rows(result, differences)
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    rows.append(("timings", timing + f", report {time.perf_counter() - t0:.1f} s"))
    table = "\n".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows
    )
    body = "\n".join(
        f'<figure><img src="{html.escape(name)}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for name, caption in figures
    )
    from stemunmix import __version__

    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
th{{text-align:left;padding-right:1em}} img{{max-width:100%}}
figure{{margin:2em 0}} figcaption{{color:#444}}</style></head>
<body><h1>{html.escape(title)}</h1>
<table>
{table}
</table>
{body}
<p><small>stemunmix {__version__}</small></p>
</body></html>
"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def summary(result: Analysis, differences: list | None = None) -> dict:
    """The numbers of an analysis as plain JSON-able values: the image and
    its calibration, the columns per class and their lattice vectors, the
    windows, the method, what was chosen from the data and why, the test of
    the domains, the agreements and the timings (what ``results.json``
    holds; ``differences``: :func:`domain_differences` made already)."""
    image, columns, ld = result.image, result.columns, result.descriptors
    if differences is None:
        differences = domain_differences(result)
    ax = image.axes_manager.signal_axes[0]
    names = [n for n in columns.class_names if n != "background"]
    return {
        "image": {
            "title": image.metadata.General.title or "",
            "shape": [int(s) for s in image.data.shape],
            "pixel_size": float(ax.scale) if calibrated(ax) else None,
            "units": str(ax.units) if calibrated(ax) else "px",
        },
        "columns": {n: len(columns.select(n)) for n in names},
        "lattice_vectors_px": columns.lattice_vectors,
        "windows": {
            "count": int(ld.axes_manager.navigation_size),
            "size_px": int(result.window),
            "centred_on": result.classes,
        },
        "method": result.method,
        "components": int(result.components),
        "domains": int(result.domains),
        "choices": result.choices,
        "domain_test": ld.domain_test,
        "domain_differences": differences,
        "domain_agreement_with_truth": result.domain_agreement,
        "physical_agreement": result.physical_agreement,
        "timings_s": result.timings,
    }


def _differs(row: dict) -> str:
    """One domain's differences from the others, in words with sigma."""
    unit = "pm" if "displacement_pm" in row else "px"
    parts = []
    if row.get("displacement_significance") is not None:
        (x, y), (sx, sy) = row[f"displacement_{unit}"], row["displacement_sigma"]
        parts.append(
            f"mean displacement ({x:.1f} +- {sx:.1f}, {y:.1f} +- {sy:.1f}) {unit}, "
            f"{row['displacement_significance']:.1f} sigma"
        )
    for name in ("height", "width"):
        d = row.get(name)
        if d is not None and d["significance"] is not None and d["relative"]:
            parts.append(
                f"{name} {100 * d['relative']:+.1f} % ({d['significance']:.1f} sigma)"
            )
    if row["structural"]:
        verdict = "a structural domain (its displacement differs)"
    elif row["differs_in"]:
        verdict = (
            f"not a structural domain: it differs only in {', '.join(row['differs_in'])} "
            "(thickness, contamination or the scan)"
        )
    else:
        verdict = "no difference beyond the noise"
    return f"{verdict}; " + "; ".join(parts) + f" ({row['windows']} windows)"


def _plain(value):
    """numpy values and arrays as JSON (NaN stays a float NaN)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _summary_rows(result: Analysis, differences: list) -> list[tuple[str, str]]:
    """The table at the top of the page: the image, the columns, the windows,
    the method, what was chosen and why, the tests and agreements."""
    columns = result.columns
    ax = result.image.axes_manager.signal_axes[0]
    rows = [
        (
            "image",
            f"{result.image.metadata.General.title or 'untitled'}, "
            f"{' x '.join(str(s) for s in result.image.data.shape)} px, "
            + (
                f"{ax.scale:.4g} {ax.units} per pixel"
                if calibrated(ax)
                else "uncalibrated (stemunmix analyze --pixel-size NM, or set "
                "the axes' scale and units)"
            ),
        ),
        (
            "columns found",
            ", ".join(
                f"{len(columns.select(n))} {n}"
                for n in columns.class_names
                if n != "background"
            ),
        ),
        (
            "windows",
            f"{result.descriptors.axes_manager.navigation_size} of "
            f"{result.window} x {result.window} px, centred on "
            f"{result.classes or 'all'} columns",
        ),
        (
            "method",
            f"{result.method.upper()}, {result.components} components, "
            f"Gaussian mixture of {result.domains} domains",
        ),
    ]
    for key, value in result.choices.items():
        if isinstance(value, dict):
            rows.append((f"{key} (chosen)", f"{value['value']}: {value['why']}"))
    test = result.descriptors.domain_test
    if test is not None and test.get("stability") is not None:
        rows.append(("domain test", f"{test['n_domains']} domains: {test['why']}"))
    for row in differences:
        rows.append((f"domain {row['domain']} differs in", _differs(row)))
    if result.domain_agreement is not None:
        rows.append(
            (
                "domain agreement with the truth",
                f"adjusted Rand index {result.domain_agreement:.3f}",
            )
        )
    if result.physical_agreement is not None:
        rows.append(
            (
                "learned and physical descriptors",
                f"their domains agree at an adjusted Rand index of "
                f"{result.physical_agreement:.3f}",
            )
        )
    return rows


def save_results(result: Analysis, out, lazy: bool = False) -> list[Path]:
    """Save the image (with its columns), the probability maps and the
    descriptors (with their learning results) as .hspy, or .zspy when lazy."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ext = "zspy" if lazy else "hspy"
    paths = []
    for name, signal in (
        ("image", result.image),
        ("probabilities", result.probabilities),
        ("descriptors", result.descriptors),
    ):
        path = out / f"{name}.{ext}"
        read_from = result.stored.get(name)
        if read_from is None or Path(read_from).resolve() != path.resolve():
            save_signal(signal, path)
        paths.append(path)
    return paths


def save_signal(signal, path) -> None:
    """``signal.save(path, overwrite=True)``, without the FutureWarning that
    HyperSpy's zspy writer (rosettasciio) triggers in zarr 2 for the store it
    uses: a library's internal choice, nothing a user can act on."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*NestedDirectoryStore", category=FutureWarning
        )
        signal.save(path, overwrite=True)
