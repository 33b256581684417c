"""report.html and the saved signals of an analysis."""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

import numpy as np

from stemunmix.core.checks import calibrated, nm_per_unit
from stemunmix.report.cells import WHOLE, measurements, write_tables
from stemunmix.report.differences import domain_differences, one_domain_why
from stemunmix.report.drawing import _View
from stemunmix.report.figures import _figures
from stemunmix.report.pipeline import Analysis

SECTION_TITLES = {
    "summary": "Summary",
    "measurements": "Measurements per cell",
    "descriptor": "The learned descriptor",
    "quality": "Quality control",
}


def write_report(result: Analysis, out, title: str = "stemunmix report") -> Path:
    """Write the figures, ``report.html``, ``summary.json`` (the numbers
    of the page, for scripts: :func:`summary`), ``columns.csv`` and
    ``cells.csv`` (:func:`stemunmix.report.cells.write_tables`) into the
    folder ``out``.

    The page's sections, in order: the summary (the image, its columns and
    lattice, the error model, and the answer to "is there a significant
    distortion, how large, where"), the measurements per cell (polarization
    with its sigma and significance, strain, octahedral tilt), the learned
    descriptor (scree, components, loadings, domains and what each differs
    in) and quality control (sites filled, columns off the lattice or too
    faint, vacancies, the fit's residual, windows left out)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    differences = domain_differences(result)
    numbers = measurements(result, _View.of(result))
    (out / "summary.json").write_text(
        json.dumps(summary(result, differences, numbers), indent=1, default=_plain),
        encoding="utf-8",
    )
    write_tables(_View.of(result), out)
    figures = _figures(result, out)
    rows = _section_rows(result, differences, numbers)
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    rows["quality"].append(
        ("timings", timing + f", report {time.perf_counter() - t0:.1f} s")
    )
    body = "\n".join(
        _section(key, heading, rows[key], figures, numbers["answer"])
        for key, heading in SECTION_TITLES.items()
    )
    from stemunmix import __version__

    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
th{{text-align:left;padding-right:1em;vertical-align:top}} img{{max-width:100%}}
figure{{margin:2em 0}} figcaption{{color:#444}} p.answer{{font-size:1.1em}}</style>
</head>
<body><h1>{html.escape(title)}</h1>
{body}
<p><small>stemunmix {__version__}</small></p>
</body></html>
"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _section(key, heading, rows, figures, answer) -> str:
    """One section of the page: its heading, (the summary's answer), its
    table and its figures."""
    parts = [f'<section id="{key}"><h2>{html.escape(heading)}</h2>']
    if key == "summary":
        parts.append(f'<p class="answer">{html.escape(answer)}</p>')
    if rows:
        parts.append(
            "<table>\n"
            + "\n".join(
                f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                for k, v in rows
            )
            + "\n</table>"
        )
    parts += [
        f'<figure><img src="{html.escape(name)}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for section, name, caption in figures
        if section == key
    ]
    return "\n".join(parts) + "\n</section>"


def summary(
    result: Analysis, differences: list | None = None, numbers: dict | None = None
) -> dict:
    """The numbers of an analysis as plain JSON-able values: the image and
    its calibration, the columns per class and their lattice vectors, the
    windows, the method, what was chosen from the data and why, the test of
    the domains, the agreements and the timings, and the measurements per
    cell and quality control (:func:`stemunmix.report.cells.measurements`)
    (what ``summary.json`` holds; ``differences``, ``numbers``: made
    already)."""
    image, columns, ld = result.image, result.columns, result.descriptors
    if differences is None:
        differences = domain_differences(result)
    if numbers is None:
        numbers = measurements(result, _View.of(result))
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
        "one_domain_why": one_domain_why(result, numbers),
        "domain_agreement_with_truth": result.domain_agreement,
        "physical_agreement": result.physical_agreement,
        "timings_s": result.timings,
        **numbers,
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


def _section_rows(result: Analysis, differences: list, numbers: dict) -> dict:
    """The tables of the page's sections: {section: [(name, value)]}."""
    return {
        "summary": _summary_rows(result, numbers),
        "measurements": _measurement_rows(numbers),
        "descriptor": _descriptor_rows(result, differences, numbers),
        "quality": _quality_rows(numbers["quality"]),
    }


def _summary_rows(result: Analysis, numbers: dict) -> list[tuple[str, str]]:
    """The image, its columns and lattice, and the error model."""
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
    ]
    lattice = _lattice_text(result)
    if lattice:
        rows.append(("lattice", lattice))
    where = numbers["quality"].get("lattice_presence")
    if where is not None and where["share_of_frame"] < WHOLE:
        rows.append(
            (
                "where the lattice is",
                f"{where['share_of_frame']:.0%} of the frame; the rest shows no "
                "lattice (vacuum, an amorphous support, contamination) and no "
                "columns were searched there (Quality control)",
            )
        )
    model = numbers["error_model"]
    if model is not None:
        cx, cy = model["calibration"]
        rows.append(
            (
                "error model",
                f"noise variance = {model['noise_gain']:.3g} x signal + "
                f"{model['noise_variance0']:.3g}; columns move on their own by "
                f"{_sd(model.get('scan_own'))} px and with the scan lines by "
                f"{_sd(model.get('scan_lines'))} px (x, y); held-out "
                f"calibration {cx:.2f} / {cy:.2f} (x / y; 1 where the error "
                "bars hold: docs/measurements.md)" + _refitted_text(model),
            )
        )
    return rows


def _refitted_text(model: dict) -> str:
    n = model.get("refitted_with_texture", 0)
    if not n:
        return ""
    return (
        f"; {n} columns refitted with the texture of the support beside the "
        "crystal counted as noise, their error bars that fit's (docs/columns.md)"
    )


def _sd(variances) -> str:
    if variances is None:
        return "?"
    return " / ".join(f"{np.sqrt(max(v, 0)):.3f}" for v in variances)


def _lattice_text(result: Analysis) -> str | None:
    """The two lattice vectors' lengths (pm on a calibrated image) and the
    angle between them."""
    vectors = result.columns.lattice_vectors
    if vectors is None:
        return None
    v = np.asarray(vectors, float).reshape(-1, 2, 2)[0]
    if not np.isfinite(v).all():
        return None
    ax = result.image.axes_manager.signal_axes[0]
    f = nm_per_unit(str(ax.units)) if calibrated(ax) else None
    scale, unit = (1000 * ax.scale * f, "pm") if f else (1.0, "px")
    a, b = np.hypot(*v.T) * scale
    angle = np.degrees(np.arccos(np.clip(v[0] @ v[1] / np.prod(np.hypot(*v.T)), -1, 1)))
    return f"|a| = {a:.1f} {unit}, |b| = {b:.1f} {unit}, angle {angle:.1f} degrees"


def _measurement_rows(numbers: dict) -> list[tuple[str, str]]:
    rows = []
    pol = numbers["polarization"]
    if pol is not None and pol["cells_with_sigma"]:
        u = pol["unit"]
        rows.append(
            (
                "polarization",
                f"{pol['beyond_3_sigma']:.1%} of {pol['cells_with_sigma']} cells "
                f"beyond 3 sigma; median length {pol['median_length']:.1f} {u}, "
                f"median sigma {pol['median_sigma']:.1f} {u}",
            )
        )
    strain = numbers["strain"]
    for name in ("exx", "eyy", "exy", "rotation"):
        q = (strain or {}).get(name)
        if q is not None:
            beyond = q["beyond_3_sigma"]
            rows.append(
                (
                    f"{name} (against {strain['reference']})",
                    f"spread {q['spread']:.2f} {q['unit']} (median sigma "
                    f"{q['median_sigma']:.2f} {q['unit']})"
                    + ("" if beyond is None else f", {beyond:.1%} beyond 3 sigma"),
                )
            )
    for name, c in (numbers["intensity_classes"] or {}).items():
        rows.append(
            (
                f"{name} intensity classes",
                ", ".join(
                    f"{share:.0%} at {mean:.3g}"
                    for share, mean in zip(
                        c["shares"], c["mean_intensities"], strict=True
                    )
                ),
            )
        )
    contrast = numbers.get("contrast_classes")
    if contrast:
        rows.append(
            (
                "A classes by Z contrast over B (the regions)",
                ", ".join(
                    f"{share:.0%} at A/B {ratio:.2f}"
                    for share, ratio in zip(
                        contrast["shares"], contrast["mean_ratios"], strict=True
                    )
                ),
            )
        )
    for bond, t in (numbers["octahedral_tilt"] or {}).items():
        rows.append(
            (
                f"octahedral tilt, {bond}-bonds",
                f"median |tilt| {t['median_abs_tilt']:.2f} deg (sigma "
                f"{t['median_sigma']:.2f} deg), {t['beyond_3_sigma']:.0%} of "
                f"{t['bonds']} beyond 3 sigma",
            )
        )
    return rows


def _descriptor_rows(
    result: Analysis, differences: list, numbers: dict
) -> list[tuple[str, str]]:
    """The windows, the method, what was chosen and why, the tests and
    agreements, what each domain differs in, and why one domain where the
    cells vary."""
    rows = [
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
    why = one_domain_why(result, numbers)
    if why:
        rows.append(("why one domain", why))
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


def _quality_rows(quality: dict) -> list[tuple[str, str]]:
    rows = []
    for name, c in quality["classes"].items():
        parts = [f"{c['columns']} columns"]
        if c["off_lattice"] is not None:
            parts.append(f"{c['off_lattice']} off the lattice")
        if c["undetected"] is not None:
            parts.append(f"{c['undetected']} too faint to measure (sigma NaN)")
        rows.append((f"{name} columns", ", ".join(parts)))
    if "sites_filled" in quality:
        rows.append(
            (
                "A lattice",
                f"{quality['sites_filled']:.1%} of its sites inside the frame "
                f"hold a column; {quality['vacancies']} vacancies (empty sites "
                "with four filled neighbours)",
            )
        )
    left = quality.get("windows_left_out")
    if left:
        rows.append(
            (
                "windows left out",
                ", ".join(f"{n} ({why})" for why, n in left.items() if n) or "none",
            )
        )
    return rows


def save_results(result: Analysis, out, lazy: bool = False) -> list[Path]:
    """Save the image (with its columns), the probability maps and the
    descriptors (with their learning results) as .hspy, or .zspy when lazy;
    with method "rvae" also its latents (``latents``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ext = "zspy" if lazy else "hspy"
    paths = []
    signals = [
        ("image", result.image),
        ("probabilities", result.probabilities),
        ("descriptors", result.descriptors),
    ]
    if result.latents is not None:
        signals.append(("latents", result.latents))
    for name, signal in signals:
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
