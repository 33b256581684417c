"""What each domain differs in: its mean displacement, intensity and width
against the other domains, each with its sigma and significance."""

from __future__ import annotations

import numpy as np

from stemunmix.core.measure import grid_shape
from stemunmix.report.cells import CHANCE_2D, ISOLATED

# Above this many sigma a difference counts; below, it is within the noise.
SIGNIFICANT = 5.0


def domain_differences(result) -> list[dict]:
    """Per domain of ``result`` (an :class:`~stemunmix.report.Analysis`),
    against the other domains together:

    - ``displacement_pm`` (or ``_px`` uncalibrated): the difference of the
      mean polarization of its cells, [x, y], with ``displacement_sigma`` and
      ``displacement_significance`` (Columns.polarization_region with the
      other domains as the reference: the columns' error model);
    - ``height`` and ``width``: the difference of the mean fitted height and
      width of its window columns, with the standard error of that
      difference and its significance (difference / standard error);
    - ``differs_in``: the quantities beyond :data:`SIGNIFICANT` sigma, and
      ``structural``: whether the displacement is among them (a domain that
      differs only in intensity or width is thickness, contamination or the
      scan, not a structural domain).

    An empty list with fewer than two domains, or without a lattice.
    """
    ld, columns = result.descriptors, result.columns
    if result.domains < 2 or columns.ij is None or "B" not in columns.class_names:
        return []
    labels = ld.per_column("cluster").argmax(1)
    wc = ld.columns
    shape = grid_shape(columns.ij)
    on = (wc.ij >= 0).all(1)
    per_pm = _pm_per_pixel(result.image)
    out = []
    for d in range(int(labels.max()) + 1):
        mine = labels == d
        if not mine.any() or mine.all():
            continue
        row = {"domain": d, "windows": int(mine.sum())}
        row.update(_displacement(columns, wc.ij, on, mine, shape, per_pm))
        for name in ("height", "width"):
            row[name] = _difference(wc.quantities.get(name), mine)
        sig = {
            "displacement": row.get("displacement_significance"),
            "height": (row["height"] or {}).get("significance"),
            "width": (row["width"] or {}).get("significance"),
        }
        row["differs_in"] = [
            k for k, v in sig.items() if v is not None and v > SIGNIFICANT
        ]
        row["structural"] = "displacement" in row["differs_in"]
        out.append(row)
    return out


def _pm_per_pixel(image) -> float | None:
    from stemunmix.core.checks import calibrated, nm_per_unit

    ax = image.axes_manager.signal_axes[0]
    f = nm_per_unit(ax.units) if calibrated(ax) else None
    return None if f is None else float(ax.scale) * f * 1000


def _displacement(columns, ij, on, mine, shape, per_pm) -> dict:
    region, reference = np.zeros(shape, bool), np.zeros(shape, bool)
    region[ij[on & mine, 1], ij[on & mine, 0]] = True
    reference[ij[on & ~mine, 1], ij[on & ~mine, 0]] = True
    try:
        r = columns.polarization_region(region, reference)
    except ValueError:  # no complete cell on one side
        return {"displacement_significance": None}
    f, unit = (per_pm, "pm") if per_pm is not None else (1.0, "px")
    return {
        f"displacement_{unit}": (r["mean"] * f).tolist(),
        "displacement_sigma": (r["sigma"] * f).tolist(),
        "displacement_significance": float(r["significance"]),
        "cells": int(r["cells"]),
    }


def _difference(values, mine) -> dict | None:
    if values is None:
        return None
    v = np.asarray(values, float)
    a, b = v[mine & np.isfinite(v)], v[~mine & np.isfinite(v)]
    if len(a) < 2 or len(b) < 2:
        return None
    diff = float(a.mean() - b.mean())
    se = float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
    return {
        "difference": diff,
        "relative": diff / float(b.mean()) if b.mean() else None,
        "sigma": se,
        "significance": abs(diff) / se if se > 0 else None,
    }


def one_domain_why(result, numbers: dict) -> str | None:
    """Why the learned descriptor finds one domain where the measurements per
    cell vary across the field (``numbers``: the report's measurements);
    None where it finds more, or the measurements do not vary either."""
    if result.domains != 1:
        return None
    varies = _where_measurements_vary(numbers)
    if not varies:
        return None
    chosen = result.choices.get("domains")
    why = chosen["why"] if isinstance(chosen, dict) else "the domains were set to one"
    return (
        f"One domain, although the measurements per cell vary across the field "
        f"({'; '.join(varies)}): {why}. The windows vary as much within those "
        "regions as between them, so no domain map is drawn from them; the "
        "regions are told apart by the measurements per cell (the rows profile "
        "and the regions of the summary)."
    )


def _where_measurements_vary(numbers: dict) -> list[str]:
    """What in the measurements differs across the field, in words; nothing
    unless the cells vary beyond the field's mean (a null, isolated cells or
    a uniform offset do not)."""
    pol = numbers.get("polarization") or {}
    share = pol.get("beyond_3_sigma_of_mean", 0.0)
    if not (pol.get("significant") and share > ISOLATED * CHANCE_2D):
        return []
    said = [f"{share:.1%} of the cells beyond 3 sigma of the field's mean"]
    regions = numbers.get("regions") or []
    for a, b in zip(regions, regions[1:], strict=False):
        z = _apart(a, b)
        if z > SIGNIFICANT:
            said.append(f"the {a['region']} and the {b['region']} {z:.0f} sigma apart")
    rows = numbers.get("rows") or []
    if len(rows) > 1:
        z = max(_apart(a, b) for a in rows for b in rows)
        if z > SIGNIFICANT:
            said.append(f"rows of cells up to {z:.0f} sigma apart")
    return said


def _apart(a: dict, b: dict) -> float:
    """How many sigma two regions' mean displacements are apart (their
    errors taken as independent)."""
    d = np.subtract(a["mean"], b["mean"])
    var = np.square(a["sigma"]) + np.square(b["sigma"])
    return float(np.sqrt(np.sum(d * d / var)))
