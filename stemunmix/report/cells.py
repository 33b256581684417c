"""The report's measurements per cell: what the error model says is
significant, as numbers (the page's summary and ``summary.json``) and as
figures (polarization, strain, octahedral tilt, quality control).

Lengths are pm on a calibrated image (px otherwise); every share "beyond 3
sigma" is against the columns' error model (1.1 % of cells by chance for a
2D displacement, 0.27 % for one number)."""

from __future__ import annotations

import numpy as np

from stemunmix.report.drawing import _subplots

CHANCE_2D = float(np.exp(-4.5))  # a 2D displacement beyond 3 sigma by chance
WHOLE = 0.995  # a lattice-presence mask keeping this share keeps the frame
MAD = 1.4826
# A share beyond 3 sigma of up to this many times chance is "isolated cells"
# (outliers, defects), not a distortion of the crystal.
ISOLATED = 5


def _pm_per_px(view) -> float | None:
    """pm per pixel on a calibrated image (lengths in nm there), else None."""
    return 1000 * view.scale[0] if view.units == "nm" else None


def _has(columns, *names) -> bool:
    return set(names) <= set(columns.class_names) and all(
        len(columns.select(n)) for n in names
    )


def _quantity(signal, name):
    return np.asarray(signal.data)[signal.metadata.Signal.quantities.index(name)]


def _polarization(columns):
    """The per-cell polarization map, or None where no cell is complete."""
    if not _has(columns, "A", "B") or columns.ij is None:
        return None
    try:
        return columns.polarization_map()
    except ValueError:
        return None


def _strain(columns):
    """The A lattice's strain map (without A, a crystal of one species, the
    first column class's: ``Columns.strain_map``'s default), or None where it
    cannot be measured."""
    if columns.ij is None or not [n for n in columns.class_names if n != "background"]:
        return None
    try:
        return columns.strain_map()
    except ValueError:
        return None


def _tilt(columns):
    """The octahedral map where O columns were found, else None."""
    if not _has(columns, "O", "B") or columns.ij is None:
        return None
    try:
        return columns.octahedral_map()
    except ValueError:
        return None


def polarization_numbers(columns, view) -> dict | None:
    """Is there a significant displacement, how large, where: the cells with
    a sigma, the share beyond 3 sigma (``significant``: beyond chance by a
    binomial test at p < 0.001 and more than :data:`ISOLATED` x chance;
    ``isolated_cells``: beyond chance, but fewer), the median length and sigma, the
    field's mean with its sigma and significance (a uniform offset: mistilt,
    scan or a uniform polarization), and the cells (i, j) the significant
    ones span."""
    from scipy.stats import binom

    from stemunmix.core.measure import significance

    cells = _polarization(columns)
    if cells is None:
        return None
    f = _pm_per_px(view) or 1.0
    dx, dy = _quantity(cells, "x"), _quantity(cells, "y")
    sx, sy = _quantity(cells, "sigma_x"), _quantity(cells, "sigma_y")
    sig = _quantity(cells, "significance")
    ok = np.isfinite(sig)
    n, k = int(ok.sum()), int((sig[ok] > 3).sum())
    out = {
        "unit": "pm" if _pm_per_px(view) else "px",
        "cells": int(np.isfinite(dx).sum()),
        "cells_with_sigma": n,
        "beyond_3_sigma": k / n if n else None,
        # beyond chance (binomial p < 0.001) and not a few isolated cells:
        # at least 5 x chance, so that the heavier tails of real images
        # (defects, contamination) do not make a distortion
        "significant": bool(
            n and binom.sf(k - 1, n, CHANCE_2D) < 1e-3 and k > ISOLATED * CHANCE_2D * n
        ),
        "isolated_cells": bool(
            n and binom.sf(k - 1, n, CHANCE_2D) < 1e-3 and k <= ISOLATED * CHANCE_2D * n
        ),
        "median_length": float(np.nanmedian(np.hypot(dx, dy)) * f),
        "median_sigma": float(np.nanmedian(0.5 * (sx + sy)) * f) if n else None,
    }
    if n:
        region = columns.polarization_region(ok)
        out["field_mean"] = (np.asarray(region["mean"]) * f).tolist()
        out["field_sigma"] = (np.asarray(region["sigma"]) * f).tolist()
        out["field_significance"] = float(region["significance"])
        # the same cells less the field's mean (a uniform offset removed)
        cov = np.stack(
            [
                np.stack([sx**2, _quantity(cells, "covariance_xy")], -1),
                np.stack([_quantity(cells, "covariance_xy"), sy**2], -1),
            ],
            -2,
        )
        rest = np.stack([dx, dy], -1) - np.asarray(region["mean"])
        z = significance(rest, cov)
        out["beyond_3_sigma_of_mean"] = float(np.mean(z[ok] > 3))
    if k:
        j, i = np.nonzero(ok & (sig > 3))
        out["significant_cells_span"] = {
            "i": [int(i.min()), int(i.max())],
            "j": [int(j.min()), int(j.max())],
        }
    return out


STRAIN = ("exx", "eyy", "exy", "rotation")


def strain_numbers(columns) -> dict | None:
    """Per strain quantity against the median cell of the field: the median
    and the robust spread (1.4826 MAD) over the cells, and the share of cells
    beyond 3 sigma of the median (0.27 % by chance); exx, eyy, exy in %,
    the rotation in degrees."""
    strain = _strain(columns)
    if strain is None:
        return None
    out = {"reference": "the median cell of the field"}
    for name in STRAIN:
        v, s = _quantity(strain, name), _quantity(strain, f"sigma_{name}")
        ok = np.isfinite(v)
        if not ok.any():
            continue
        f = np.degrees(1.0) if name == "rotation" else 100.0
        med = float(np.median(v[ok]))
        z = np.abs(v - med) / s
        out[name] = {
            "unit": "degrees" if name == "rotation" else "%",
            "median": med * f,
            "spread": float(MAD * np.median(np.abs(v[ok] - med)) * f),
            "median_sigma": float(np.nanmedian(s[ok]) * f),
            "beyond_3_sigma": float(np.mean(z[np.isfinite(z)] > 3))
            if np.isfinite(z).any()
            else None,
        }
    return out


def intensity_numbers(columns) -> dict | None:
    """Intensity classes of each cation class where the data hold more than
    one (:func:`_classes` of the columns' integrated intensity). Per class:
    the number, the share of columns in each and their mean intensities."""
    out = {}
    for name in columns.class_names:
        if name in ("background", "O") or not _has(columns, name):
            continue
        v = columns.select(name).quantities.get("intensity")
        found = None if v is None else _classes(np.asarray(v, float))
        if found is not None:
            out[name] = {k: found[k] for k in ("classes", "shares", "mean_intensities")}
    return out or None


def contrast_numbers(columns) -> dict | None:
    """Classes of the A sites by their Z contrast over B: each A column's
    integrated intensity over the mean of the B columns of the (up to four)
    cells it is a corner of, in log (:func:`_classes`). Thickness scales A
    and B alike, so two materials (PbTiO3 on SrRuO3: heavy A on light B
    against the reverse) separate where the A intensity alone follows a
    thickness gradient down the frame. The number of classes, the share in
    each, their mean ratios and the class of every A column (-1: none)."""
    from stemunmix.core.measure import grid_shape, site_grid

    if not (_has(columns, "A") and _has(columns, "B")) or columns.ij is None:
        return None
    a, b = columns.select("A"), columns.select("B")
    ia, ib = a.quantities.get("intensity"), b.quantities.get("intensity")
    if ia is None or ib is None:
        return None
    # Only columns measured on the raw image (an undetected one has no sigma).
    ia = np.where(np.isfinite(a.sigma).all(1) & (ia > 0), ia, np.nan)
    ib = np.where(np.isfinite(b.sigma).all(1) & (ib > 0), ib, np.nan)
    grid = site_grid(b.ij, ib, grid_shape(columns.ij))
    pad = np.pad(grid, 1, constant_values=np.nan)
    i, j = a.ij[:, 0], a.ij[:, 1]
    ok = (a.ij >= 0).all(1)
    around = np.stack([pad[j + dj, i + di] for dj in (0, 1) for di in (0, 1)], 1)
    with np.errstate(all="ignore"):
        ratio = np.where(ok, ia / np.nanmean(around, 1), np.nan)
    found = _classes(np.log(np.where(ratio > 0, ratio, np.nan)))
    if found is None:
        return None
    return {
        "classes": found["classes"],
        "shares": found["shares"],
        "mean_ratios": np.exp(found["mean_intensities"]),
        "per_column": found["labels"],
    }


def _classes(values: np.ndarray) -> dict | None:
    """A Gaussian mixture of 1 to 3 components on ``values`` (NaN left out,
    at least 30), the number chosen by BIC, kept only where the components
    are separated (Ashman's D > 2 between each neighbouring pair: two bumps,
    not a gradient cut in two); classes ordered by their mean, ``labels``
    per value (-1 for NaN). None for one class."""
    from sklearn.mixture import GaussianMixture

    finite = np.isfinite(values)
    v = values[finite].reshape(-1, 1)
    if len(v) < 30:
        return None
    fits = [GaussianMixture(k, random_state=0).fit(v) for k in (1, 2, 3)]
    best = min(fits, key=lambda g: g.bic(v))
    order = np.argsort(best.means_.ravel())
    means = best.means_.ravel()[order]
    sds = np.sqrt(best.covariances_.ravel()[order])
    separated = all(
        np.sqrt(2) * abs(means[i + 1] - means[i]) / np.hypot(sds[i], sds[i + 1]) > 2
        for i in range(len(means) - 1)
    )
    if best.n_components == 1 or not separated:
        return None
    label = np.argsort(order)[best.predict(v)]
    labels = np.full(len(values), -1)
    labels[finite] = label
    return {
        "classes": int(best.n_components),
        "shares": np.bincount(label, minlength=len(means)) / len(v),
        "mean_intensities": means,
        "labels": labels,
    }


def region_numbers(
    columns, view, intensity: dict | None, contrast: dict | None = None
) -> list | None:
    """Per region, the mean polarization with its sigma (the error model's,
    with the columns' shared scan lines) and significance, its direction and
    length. The regions are the cells whose four A corners are all of one
    class: of Z contrast over B (:func:`contrast_numbers`: two materials)
    where it finds more than one, else of intensity
    (:func:`intensity_numbers`: a doped layer), named by that class. None
    where the A sites hold one class."""
    if _polarization(columns) is None:
        return None
    own = columns.labels == columns.class_index("A")
    if contrast:
        kind, n, what = contrast["per_column"], contrast["classes"], "Z contrast over B"
        ends = ("lowest", "highest")
    elif intensity and "A" in intensity:
        n, what, ends = (
            intensity["A"]["classes"],
            "intensity",
            ("faintest", "brightest"),
        )
        kind = columns.intensity_classes("A", n)[own]
    else:
        return None
    out = []
    for k in range(n):
        name = ends[0] if k == 0 else ends[1] if k == n - 1 else "middle"
        r = _region(columns, view, np.asarray(kind) == k)
        if r is not None:
            out.append(
                {"region": f"cells on A sites of {what} class {k} ({name})", **r}
            )
    return out or None


def _region(columns, view, a_in) -> dict | None:
    """The polarization of the cells whose four A corners are ``a_in`` (per
    A column), in pm where calibrated; None without a complete cell."""
    from stemunmix.core.measure import corners, grid_shape

    ca = columns.select("A")
    corner = corners(np.asarray(a_in, float)[:, None], ca.ij, grid_shape(columns.ij))
    try:
        r = columns.polarization_region((corner[..., 0] == 1).all(-1))
    except ValueError:  # no complete cell of this class
        return None
    f = _pm_per_px(view) or 1.0
    mean = np.asarray(r["mean"]) * f
    return {
        "cells": int(r["cells"]),
        "mean": mean.tolist(),
        "sigma": (np.asarray(r["sigma"]) * f).tolist(),
        "length": float(np.hypot(*mean)),
        "direction_degrees": float(np.degrees(np.arctan2(mean[1], mean[0]))),
        "significance": float(r["significance"]),
        "polar": bool(r["significance"] > 3),
    }


def row_numbers(columns, view) -> list | None:
    """Per row of cells (lattice index j, with at least 3 complete cells):
    the mean polarization with its sigma (the columns of a row share their
    scan lines, which the sigma counts) and significance: the profile of a
    layered film or an interface."""
    cells = _polarization(columns)
    if cells is None:
        return None
    ok = np.isfinite(_quantity(cells, "significance"))
    f = _pm_per_px(view) or 1.0
    out = []
    for j in range(ok.shape[0]):
        if ok[j].sum() < 3:
            continue
        mask = np.zeros_like(ok)
        mask[j] = ok[j]
        r = columns.polarization_region(mask)
        out.append(
            {
                "j": j,
                "cells": int(r["cells"]),
                "mean": (np.asarray(r["mean"]) * f).tolist(),
                "sigma": (np.asarray(r["sigma"]) * f).tolist(),
                "significance": float(r["significance"]),
            }
        )
    return out or None


def tilt_numbers(columns) -> dict | None:
    """The octahedral tilt per bond direction where O columns were found: the
    median |tilt| and its median sigma (degrees), and the share of bonds
    beyond 3 sigma of zero."""
    tilt = _tilt(columns)
    if tilt is None:
        return None
    out = {}
    for bond in "ab":
        t, s = _quantity(tilt, f"{bond}_tilt"), _quantity(tilt, f"{bond}_sigma_tilt")
        ok = np.isfinite(t) & np.isfinite(s)
        if ok.any():
            out[bond] = {
                "bonds": int(ok.sum()),
                "median_abs_tilt": float(np.median(np.abs(t[ok]))),
                "median_sigma": float(np.median(s[ok])),
                "beyond_3_sigma": float(np.mean(np.abs(t[ok]) > 3 * s[ok])),
            }
    return out or None


def _sites(a, shape, mask=None) -> dict:
    """The A lattice's sites inside the frame (half a cell from its edge,
    placed by the affine fit xy = origin + i a + j b of the A columns) and
    on the lattice-presence ``mask`` (bool (H, W), None: everywhere):
    the share that hold a column, and the vacancies (empty ones whose four
    neighbours hold one)."""
    ok = (a.ij >= 0).all(1)
    if ok.sum() < 3:
        return {}
    ij, xy = a.ij[ok], a.xy[ok]
    design = np.column_stack([np.ones(len(ij)), ij])
    coef, *_ = np.linalg.lstsq(design, xy, rcond=None)  # origin, a, b
    half = 0.5 * float(np.hypot(*coef[1:].T).max())
    lo = ij.min(0) - 2
    filled = np.zeros(tuple(ij.max(0) - lo + 3), bool)
    filled[tuple((ij - lo).T)] = True
    gi, gj = np.meshgrid(
        *(np.arange(n) + o for n, o in zip(filled.shape, lo, strict=True)),
        indexing="ij",
    )
    where = np.stack([np.ones_like(gi), gi, gj], -1) @ coef
    h, w = shape
    inside = (where >= half).all(-1) & (where[..., 0] <= w - 1 - half)
    inside &= where[..., 1] <= h - 1 - half
    if mask is not None:
        px = np.clip(np.round(where).astype(int), 0, [w - 1, h - 1])
        inside &= mask[px[..., 1], px[..., 0]]
    around = np.zeros_like(filled)
    around[1:-1, 1:-1] = (
        filled[:-2, 1:-1] & filled[2:, 1:-1] & filled[1:-1, :-2] & filled[1:-1, 2:]
    )
    if not inside.any():
        return {}
    return {
        "sites_filled": float(filled[inside].mean()),
        "vacancies": int((inside & ~filled & around).sum()),
    }


def quality_numbers(result, columns, shape) -> dict:
    """Quality control: per class the columns found, those off the lattice
    (no site), those too faint to measure on the raw image (sigma NaN); the
    share of the A lattice's sites inside the frame that hold a column, and
    the vacancies (:func:`_sites`); the windows left out of the descriptors,
    by reason."""
    fc = result.probabilities.metadata.get_item("Signal.stemunmix.find_columns")
    out = {"classes": {}}
    for name in columns.class_names:
        if name == "background":
            continue
        sel = columns.select(name)
        faint = None if fc is None else fc.get_item(f"undetected_{name}")
        out["classes"][name] = {
            "columns": len(sel),
            "off_lattice": None if sel.ij is None else int((sel.ij < 0).any(1).sum()),
            "undetected": None if faint is None else int(np.ravel(faint)[0]),
        }
    where = _presence(result)
    if _has(columns, "A") and columns.ij is not None:
        out.update(_sites(columns.select("A"), shape, where))
    if where is not None:
        out["lattice_presence"] = {
            "share_of_frame": float(where.mean()),
            "left_out": "where the image shows no lattice (vacuum, an amorphous "
            "support, contamination): no columns searched there",
        }
    ld = result.descriptors.metadata.get_item("Signal.stemunmix.local_descriptors")
    left = None if ld is None else ld.get_item("left_out")
    if left is not None:
        left = left.as_dictionary() if hasattr(left, "as_dictionary") else dict(left)
        out["windows_left_out"] = {str(k): int(v) for k, v in left.items()}
    return out


def error_model_numbers(result) -> dict | None:
    """The error model of the first frame (find_columns' record): the noise
    model, the held-out calibration figure (1 where the error bars hold),
    the terms beyond shot noise (px^2 or factors), and the columns refitted
    with the support's texture (:mod:`stemunmix.core.texture`)."""
    fc = result.probabilities.metadata.get_item("Signal.stemunmix.find_columns")
    if fc is None or fc.get_item("calibration") is None:
        return None

    def first(key):  # the record's arrays lead with the frames
        v = fc.get_item(key)
        return None if v is None else np.asarray(v, float)[0]

    out = {
        "noise_gain": float(first("noise_gain")),
        "noise_variance0": float(first("noise_variance0")),
        "calibration": first("calibration").tolist(),
    }
    for key in ("scan_own", "scan_lines"):
        v = first(key)
        if v is not None:
            out[key] = np.diag(v).tolist()
    refitted = first("refitted_with_texture")
    out["refitted_with_texture"] = 0 if refitted is None else int(refitted)
    for name in result.columns.class_names:
        for term in ("misfit", "correlated"):
            v = first(f"{term}_{name}")
            if v is not None:
                out[f"{term}_{name}"] = np.asarray(v).tolist()
    return out


def answer(
    pol: dict | None, strain: dict | None, tilt: dict | None, regions=None, rows=None
) -> str:
    """The summary's answer to "is there a significant distortion, how large,
    where, how sure", in one paragraph with numbers and sigma."""
    if pol is None:
        return (
            "No per-cell polarization: it needs A and B columns on an indexed "
            "lattice with complete cells."
        )
    if not pol["cells_with_sigma"]:
        return (
            f"{pol['cells']} cells, none with an error bar (their columns are "
            "too faint on the raw image to measure): no significance can be given."
        )
    u = pol["unit"]
    text = (
        f"{_verdict(pol)}: {pol['beyond_3_sigma']:.1%} of {pol['cells_with_sigma']} "
        f"cells have a B displacement beyond 3 sigma of zero ({CHANCE_2D:.1%} "
        f"expected by chance). Median length {pol['median_length']:.1f} {u}, "
        f"median sigma {pol['median_sigma']:.1f} {u}."
    )
    return text + "".join(
        (
            _field_text(pol),
            _regions_text(regions, u),
            _rows_text(rows),
            _strain_text(strain),
            _tilt_text(tilt),
        )
    )


def _verdict(pol: dict) -> str:
    """Yes; a uniform offset only (significant against zero, not against
    the field's mean); isolated cells; or no significant distortion."""
    uniform = (
        pol["significant"]
        and pol.get("beyond_3_sigma_of_mean", 1.0) <= ISOLATED * CHANCE_2D
    )
    if uniform:
        return (
            "A uniform offset only (specimen mistilt, a site the symmetric cell "
            "does not describe, or a uniform polarization: tell them apart with "
            "a reference region), nothing that varies across the field beyond "
            "a few cells"
        )
    if pol["significant"]:
        return "Yes"
    if pol["isolated_cells"]:
        return (
            "Only isolated cells (defects, contamination, or where the error "
            "model is exceeded), no distortion of the crystal"
        )
    return "No significant distortion"


def _field_text(pol: dict) -> str:
    u, text = pol["unit"], ""
    if "field_mean" in pol:
        (mx, my), (sx, sy) = pol["field_mean"], pol["field_sigma"]
        text += (
            f" The field's mean displacement is ({mx:.1f} +- {sx:.1f}, {my:.1f} "
            f"+- {sy:.1f}) {u}, {pol['field_significance']:.1f} sigma (a uniform "
            "offset: specimen mistilt, the scan, or a uniform polarization); "
            f"against that mean, {pol['beyond_3_sigma_of_mean']:.1%} of the cells "
            "are beyond 3 sigma."
        )
    span = pol.get("significant_cells_span")
    if span and pol["significant"]:
        text += (
            f" The significant cells span cells i = {span['i'][0]}-{span['i'][1]}, "
            f"j = {span['j'][0]}-{span['j'][1]} (maps below)."
        )
    return text


def _regions_text(regions, u) -> str:
    if not regions or len(regions) < 2:
        return ""
    text = ""
    for r in regions:
        (mx, my), (sx, sy) = r["mean"], r["sigma"]
        text += (
            f" The {r['cells']} {r['region']}: "
            + ("polar" if r["polar"] else "not polar")
            + f", mean ({mx:.1f} +- {sx:.1f}, {my:.1f} +- {sy:.1f}) {u}, "
            f"{r['length']:.1f} {u} at {r['direction_degrees']:.0f} degrees from "
            f"+x (y down), {r['significance']:.1f} sigma."
        )
    return text


def _rows_text(rows) -> str:
    if not rows or len(rows) < 2:
        return ""
    polar = [r["j"] for r in rows if r["significance"] > 3]
    calm = [r["j"] for r in rows if r["significance"] <= 3]
    said = (
        "every row differs from zero"
        if not calm
        else "no row differs from zero"
        if not polar
        else f"rows j = {_runs(polar)} differ from zero, j = {_runs(calm)} do not"
    )
    return (
        f" Per row of cells (the row's mean against zero, 3 sigma): {said} "
        "(a smooth mistilt or bending field moves rows too; it is not in the "
        "error bars)."
    )


def _strain_text(strain) -> str:
    if not strain or "exx" not in strain:
        return ""
    parts = [
        f"{n} {strain[n]['spread']:.2f} {strain[n]['unit']}"
        for n in STRAIN
        if n in strain
    ]
    return (
        f" Strain against {strain['reference']}: cell-to-cell spread "
        + ", ".join(parts)
        + "."
    )


def _tilt_text(tilt) -> str:
    if not tilt:
        return ""
    parts = [
        f"{b}-bonds median |tilt| {v['median_abs_tilt']:.1f} deg (sigma "
        f"{v['median_sigma']:.1f} deg, {v['beyond_3_sigma']:.0%} beyond 3 sigma)"
        for b, v in tilt.items()
    ]
    return " Octahedral tilt: " + "; ".join(parts) + "."


def _runs(values) -> str:
    """Integers as runs: [1, 2, 3, 7] -> "1-3, 7"."""
    out, start = [], None
    for k, v in enumerate(values):
        if start is None:
            start = v
        if k + 1 == len(values) or values[k + 1] != v + 1:
            out.append(f"{start}" if start == v else f"{start}-{v}")
            start = None
    return ", ".join(out)


def measurements(result, view) -> dict:
    """Every number of the measurements and quality-control sections."""
    columns = view.columns
    pol, strain = polarization_numbers(columns, view), strain_numbers(columns)
    tilt, intensity = tilt_numbers(columns), intensity_numbers(columns)
    contrast = contrast_numbers(columns)
    regions = region_numbers(columns, view, intensity, contrast)
    rows = row_numbers(columns, view)
    return {
        "answer": answer(pol, strain, tilt, regions, rows),
        "polarization": pol,
        "regions": regions,
        "rows": rows,
        "strain": strain,
        "octahedral_tilt": tilt,
        "intensity_classes": intensity,
        "contrast_classes": contrast
        and {k: v for k, v in contrast.items() if k != "per_column"},
        "error_model": error_model_numbers(result),
        "quality": quality_numbers(result, columns, view.raw.shape),
    }


# --- figures ---------------------------------------------------------------


def _lattice_panel(fig, ax, data, title, label, cmap="viridis", symmetric=False):
    """One map on the lattice grid (cells i, j) with its colourbar."""
    kw = {"cmap": cmap, "interpolation": "nearest"}
    if symmetric:
        top = (
            float(np.nanpercentile(np.abs(data), 99)) if np.isfinite(data).any() else 1
        )
        kw.update(vmin=-(top or 1.0), vmax=top or 1.0)
    shown = ax.imshow(data, **kw)
    fig.colorbar(shown, ax=ax, label=label, shrink=0.8)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("cell i")
    ax.set_ylabel("cell j")


def _quiver(ax, dx, dy, unit):
    """Arrows of the displacement on the lattice grid, in ``unit``, with a
    key of a round length near the median."""
    j, i = np.mgrid[: dx.shape[0], : dx.shape[1]]
    ok = np.isfinite(dx) & np.isfinite(dy)
    length = np.hypot(dx[ok], dy[ok])
    typical = float(np.median(length)) if ok.any() else 1.0
    scale = (typical or 1.0) / 0.8  # the median arrow: 0.8 cells
    ax.quiver(
        i[ok],
        j[ok],
        dx[ok],
        dy[ok],
        angles="xy",
        scale_units="xy",
        scale=scale,
        width=0.004,
    )
    step = 10 ** np.floor(np.log10(typical or 1.0))
    key = max(v * step for v in (1, 2, 5) if v * step <= max(typical, step))
    ax.set_xlim(-1, dx.shape[1])
    ax.set_ylim(dx.shape[0], -1)
    ax.set_aspect("equal")
    ax.set_title(
        f"displacement (arrow: {key:g} {unit} = {key / scale:.2f} cells)", fontsize=9
    )
    ax.set_xlabel("cell i")
    ax.set_ylabel("cell j")


def cells_figure(result, view):
    """Per cell: the polarization's direction and length (HSV), as arrows in
    pm, its sigma and its significance |P| / sigma."""
    from stemunmix.signals._measurements import hsv_image, hsv_key

    cells = _polarization(view.columns)
    if cells is None:
        return None
    f = _pm_per_px(view) or 1.0
    unit = "pm" if _pm_per_px(view) else "px"
    dx, dy = _quantity(cells, "x") * f, _quantity(cells, "y") * f
    sigma = 0.5 * (_quantity(cells, "sigma_x") + _quantity(cells, "sigma_y")) * f
    sig = _quantity(cells, "significance")
    aspect = dx.shape[0] / max(dx.shape[1], 1)
    fig, axes = _subplots(2, 2, figsize=(11, 2 * (4.4 * aspect + 0.9)))
    axes = axes.ravel()
    rgb, top = hsv_image(dx, dy)
    axes[0].imshow(rgb, interpolation="nearest")
    hsv_key(axes[0], top, unit)
    axes[0].set_title("direction (hue) and length (value)", fontsize=9)
    axes[0].set_xlabel("cell i")
    axes[0].set_ylabel("cell j")
    _quiver(axes[1], dx, dy, unit)
    _lattice_panel(fig, axes[2], sigma, f"sigma ({unit}, mean of x and y)", unit)
    _lattice_panel(fig, axes[3], sig, "significance |P| / sigma", "sigma")
    ok = np.isfinite(sig)
    beyond = float(np.mean(sig[ok] > 3)) if ok.any() else float("nan")
    caption = (
        f"Polarization per cell on the lattice (the B column from where its A "
        f"cell puts it; {int(ok.sum())} cells with a sigma from the error "
        f"model): {beyond:.0%} beyond 3 sigma ({CHANCE_2D:.1%} by chance "
        f"without a displacement); median length "
        f"{np.nanmedian(np.hypot(dx, dy)):.1f} {unit}."
    )
    return fig, "cells.png", caption


def strain_figure(result, view):
    """exx, eyy, exy (%) and the rotation (degrees) of the A lattice per
    cell against the median cell."""
    columns = view.columns
    strain = _strain(columns)
    if strain is None:
        return None
    aspect = strain.data.shape[1] / max(strain.data.shape[2], 1)
    fig, axes = _subplots(2, 2, figsize=(11, 2 * (4.4 * aspect + 0.9)))
    for ax, name in zip(axes.ravel(), STRAIN, strict=True):
        v = _quantity(strain, name)
        if name == "rotation":  # less its median: a rotation of the whole field
            v, unit = np.degrees(v - np.nanmedian(v)), "degrees"
        else:
            v, unit = 100 * v, "%"
        _lattice_panel(
            fig, ax, v, f"{name} ({unit})", unit, cmap="RdBu_r", symmetric=True
        )
    return (
        fig,
        "strain.png",
        f"{strain.metadata.General.title} per cell against the median cell of the field "
        "(exx, eyy, exy in %; the rotation in degrees, less its median); "
        "summary.json gives each one's spread, sigma and share beyond 3 sigma.",
    )


def tilt_figure(result, view):
    """The octahedral tilt per bond direction where O columns were found."""
    columns = view.columns
    tilt = _tilt(columns)
    if tilt is None:
        return None
    bonds = [b for b in "ab" if np.isfinite(_quantity(tilt, f"{b}_tilt")).any()]
    if not bonds:
        return None
    aspect = tilt.data.shape[1] / max(tilt.data.shape[2], 1)
    fig, axes = _subplots(
        len(bonds), 2, figsize=(11, len(bonds) * (4.4 * aspect + 0.9)), squeeze=False
    )
    for row, b in zip(axes, bonds, strict=True):
        t, s = _quantity(tilt, f"{b}_tilt"), _quantity(tilt, f"{b}_sigma_tilt")
        _lattice_panel(
            fig,
            row[0],
            t,
            f"{b}-bond tilt (degrees)",
            "degrees",
            cmap="RdBu_r",
            symmetric=True,
        )
        _lattice_panel(fig, row[1], np.abs(t) / s, f"{b}-bond |tilt| / sigma", "sigma")
    return (
        fig,
        "tilt.png",
        "Octahedral tilt from the O columns on the B-B bonds (atan(2 d / L), d "
        "the O column's offset across the bond), and its significance.",
    )


def _presence(result):
    """The first frame's lattice-presence mask on its own pixel grid (bool
    (H, W)), or None where segment() recorded none."""
    md = result.probabilities.metadata.get_item("Signal.stemunmix.segment")
    if md is None or md.get_item("presence") is None:
        return None
    masks = np.asarray(md.get_item("presence"), bool)
    bins = np.asarray(md.get_item("presence_bin"), int).reshape(-1)
    mask = masks.reshape((-1,) + masks.shape[-2:])[0]
    b = int(bins[0])
    h, w = result.probabilities.data.shape[-2:]
    rows = np.minimum(np.arange(h) // b, mask.shape[0] - 1)
    cols = np.minimum(np.arange(w) // b, mask.shape[1] - 1)
    return mask[np.ix_(rows, cols)]


def presence_figure(result, view):
    """The image with what the lattice-presence mask leaves out shaded; only
    where it leaves out anything."""
    where = _presence(result)
    if where is None or where.mean() > WHOLE:
        return None
    fig, ax = _subplots(figsize=(7, 7 * view.aspect + 0.5))
    ax.imshow(view.raw, cmap="gray", extent=view.extent)
    shade = np.zeros(where.shape + (4,))
    shade[~where] = (0.9, 0.2, 0.1, 0.45)
    ax.imshow(shade, extent=view.extent)
    ax.set_xlabel(f"x ({view.units})")
    ax.set_ylabel(f"y ({view.units})")
    ax.set_title("Where the lattice is (shaded: left out)", fontsize=10)
    return (
        fig,
        "presence.png",
        f"Where the image shows a lattice ({where.mean():.0%} of the frame): the "
        "shaded rest (vacuum, an amorphous support, contamination) correlates "
        "with nothing a column spacing away, and no columns were searched there.",
    )


def quality_figure(result, view):
    """The fit's residual (RMS of each column's patch over its height) on the
    lattice, per class, and the A sites filled."""
    columns = view.columns
    if columns.ij is None or "residual" not in columns.quantities:
        return None
    names = [n for n in columns.class_names if n != "background" and _has(columns, n)]
    if not names:
        return None
    q = columns.quantities
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = q["residual"] / np.abs(q["height"])
    maps = [(n, columns.site_map(relative, n).data) for n in names]
    aspect = maps[0][1].shape[0] / max(maps[0][1].shape[1], 1)
    fig, axes = _subplots(
        1, len(maps), figsize=(5.5 * len(maps), 4.4 * aspect + 1), squeeze=False
    )
    for ax, (n, m) in zip(axes[0], maps, strict=True):
        _lattice_panel(fig, ax, m, f"{n} sites: fit residual / height", "ratio")
    return (
        fig,
        "quality.png",
        "Quality of the fit per lattice site: the RMS residual of each column's "
        "patch over its fitted height (high where the Gaussian model misses: "
        "overlap, defects, contamination); empty sites are vacancies or "
        "columns off the lattice.",
    )


def intensity_figure(result, view):
    """The intensity classes on the lattice, for each cation class where the
    mixture finds more than one (:func:`intensity_numbers`)."""
    columns = view.columns
    found = intensity_numbers(columns) if columns.ij is not None else None
    if not found:
        return None
    fig, axes = _subplots(1, len(found), figsize=(5.5 * len(found), 5), squeeze=False)
    for ax, (name, info) in zip(axes[0], found.items(), strict=True):
        classes = columns.intensity_classes(name, info["classes"]).astype(float)
        classes[classes < 0] = np.nan
        m = columns.site_map(classes, name).data
        _lattice_panel(
            fig,
            ax,
            m,
            f"{name} sites: intensity class (0 faintest)",
            "class",
            cmap="viridis",
        )
    return (
        fig,
        "intensity.png",
        "Intensity classes of the columns (a Gaussian mixture on the integrated "
        "intensity, its size by BIC, kept where the classes are separated: "
        "dopants, vacancies or thickness steps).",
    )


def rows_figure(result, view):
    """The mean polarization of each row of cells with its +- 1 sigma: the
    profile across a layered film or an interface."""
    rows = row_numbers(view.columns, view)
    if not rows or len(rows) < 2:
        return None
    unit = "pm" if _pm_per_px(view) else "px"
    j = np.array([r["j"] for r in rows])
    mean, sigma = (
        np.array([r["mean"] for r in rows]),
        np.array([r["sigma"] for r in rows]),
    )
    fig, ax = _subplots(figsize=(6.5, 4))
    for a, name in enumerate("xy"):
        ax.errorbar(
            j, mean[:, a], yerr=sigma[:, a], fmt="o-", ms=4, capsize=3, label=f"P{name}"
        )
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("row of cells j")
    ax.set_ylabel(f"mean displacement ({unit})")
    ax.legend(fontsize=8)
    ax.set_title("Polarization per row of cells (+- 1 sigma)", fontsize=9)
    return (
        fig,
        "rows.png",
        "The mean polarization of each row of cells with its sigma (the error "
        "model's; the cells of a row share their scan lines, which the sigma "
        "counts): a row differs from zero where its bar does not reach it.",
    )


# --- tables ------------------------------------------------------------------


def write_tables(view, out) -> list[str]:
    """``columns.csv`` (one row per column of the first frame: position and
    its covariance in px, class, lattice site, fitted quantities) and
    ``cells.csv`` (one row per cell of the lattice with any value: the
    polarization with its sigma and significance, strain with its sigma,
    and the octahedral tilt with its sigma, in the units of the headers).
    Returns the names written."""
    import csv

    columns = view.columns
    cov = columns.covariance
    ij = columns.ij if columns.ij is not None else np.full((len(columns), 2), -1)
    head = [
        "x_px",
        "y_px",
        "sigma_x_px",
        "sigma_y_px",
        "covariance_xy_px2",
        "class",
        "i",
        "j",
        *columns.quantities,
    ]
    rows = zip(
        columns.xy[:, 0],
        columns.xy[:, 1],
        columns.sigma[:, 0],
        columns.sigma[:, 1],
        cov[:, 0, 1],
        (columns.class_names[k] for k in columns.labels),
        ij[:, 0],
        ij[:, 1],
        *columns.quantities.values(),
        strict=True,
    )
    with open(out / "columns.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(head)
        w.writerows(rows)
    names = ["columns.csv"]
    table = _cell_table(columns, view)
    if table:
        with open(out / "cells.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["i", "j", *table])
            values = np.stack(list(table.values()), -1)  # (nj, ni, K)
            keep = np.isfinite(values).any(-1)
            for j, i in zip(*np.nonzero(keep), strict=True):
                w.writerow([i, j, *values[j, i]])
        names.append("cells.csv")
    return names


def _cell_table(columns, view) -> dict:
    """{header: (nj, ni) values} of every per-cell measurement on one grid."""
    f = _pm_per_px(view) or 1.0
    unit = "pm" if _pm_per_px(view) else "px"
    out = {}
    cells = _polarization(columns)
    if cells is not None:
        for q, name in (
            ("x", "Px"),
            ("y", "Py"),
            ("sigma_x", "sigma_Px"),
            ("sigma_y", "sigma_Py"),
        ):
            out[f"{name}_{unit}"] = _quantity(cells, q) * f
        out["significance"] = _quantity(cells, "significance")
    strain = _strain(columns)
    if strain is not None:
        for q in STRAIN:
            scale, u = (np.degrees(1.0), "deg") if q == "rotation" else (100.0, "pct")
            out[f"{q}_{u}"] = _quantity(strain, q) * scale
            out[f"sigma_{q}_{u}"] = _quantity(strain, f"sigma_{q}") * scale
    tilt = _tilt(columns)
    if tilt is not None:
        for b in "ab":
            out[f"{b}_tilt_deg"] = _quantity(tilt, f"{b}_tilt")
            out[f"{b}_sigma_tilt_deg"] = _quantity(tilt, f"{b}_sigma_tilt")
    shapes = {v.shape for v in out.values()}
    if len(shapes) > 1:  # grids of different extent: crop to the common part
        nj, ni = (min(s[k] for s in shapes) for k in range(2))
        out = {k: v[:nj, :ni] for k, v in out.items()}
    return out
