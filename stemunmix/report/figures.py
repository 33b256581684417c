"""The report's figures: matplotlib Figure objects (no pyplot), each with
its caption."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stemunmix.core.plotting import COLORS
from stemunmix.report import cells
from stemunmix.report.drawing import (
    _frame0,
    _grid,
    _scale_bar,
    _subplots,
    _View,
)

if TYPE_CHECKING:
    from stemunmix.report.pipeline import Analysis


def _figures(
    result: Analysis, out: Path, keep: list | None = None
) -> list[tuple[str, str, str]]:
    """Write the PNGs; returns [(section, file name, caption)] in the page's
    order (:data:`SECTIONS`); the Figure objects go into ``keep`` when given
    (the tests read them)."""
    view = _View.of(result)
    figures = []
    for section, draws in SECTIONS:
        for draw in draws:
            made = draw(result, view)
            if made is None:
                continue
            fig, name, caption = made
            fig.tight_layout()
            fig.savefig(out / name, dpi=110)
            figures.append((section, name, caption))
            if keep is not None:
                keep.append((name, fig))
    return figures


def _columns_figure(result, view):
    from matplotlib.patches import Rectangle

    (h, w), extent, (sx, sy), (ox, oy) = (
        view.raw.shape,
        view.extent,
        view.scale,
        view.offset,
    )
    strip = max(h, w) > 3 * min(h, w)  # a long strip: a zoomed square beside it
    if strip:
        fig, (ax, zoom) = _subplots(2, 1, figsize=(8, 8 * h / w + 4.5))
    else:
        fig, ax = _subplots(figsize=(7, 7 * h / w + 0.5))
    for panel in [ax] + ([zoom] if strip else []):
        panel.imshow(view.raw, cmap="gray", extent=extent)
        for k, name in enumerate(view.columns.class_names):
            sel = view.columns.select(name)
            if name == "background" or not len(sel):
                continue
            panel.scatter(
                sel.x * sx + ox,
                sel.y * sy + oy,
                s=10 if panel is ax else 40,
                facecolors="none",
                edgecolors=COLORS[k % len(COLORS)],
                linewidths=0.6,
                label=f"{name} ({len(sel)})",
            )
        panel.set_xlabel(f"x ({view.units})")
        panel.set_ylabel(f"y ({view.units})")
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.legend(loc="upper right", markerscale=2, fontsize=8)
    ax.set_title("Image and the columns found")
    if strip:
        side = min(h, w)  # a square of the short side, at the middle
        x0 = extent[0] + (w - side) // 2 * sx
        y0 = extent[3] + (h - side) // 2 * sy
        zoom.set_xlim(x0, x0 + side * sx)
        zoom.set_ylim(y0 + side * sy, y0)
        zoom.set_title("zoom: the middle of the strip", fontsize=9)
        ax.add_patch(
            Rectangle(
                (x0, y0),
                side * sx,
                side * sy,
                fill=False,
                edgecolor="yellow",
                linewidth=1,
            )
        )
    return fig, "columns.png", "The image with the atomic columns found, by class."


def _probabilities_figure(result, view):
    prob = np.asarray(result.probabilities.data)
    while prob.ndim > 3:
        prob = prob[0]
    names = result.probabilities.class_names
    fig, axes = _grid(len(names), aspect=view.aspect)
    for ax, k in zip(axes, range(len(names)), strict=True):
        shown = ax.imshow(prob[k], vmin=0, vmax=1, cmap="magma", extent=view.extent)
        ax.set_title(f"P({names[k]})")
        ax.axis("off")
        _scale_bar(ax, view.extent, view.units)
        fig.colorbar(shown, ax=ax, label="probability", shrink=0.8)
    return fig, "probabilities.png", "Per-class probability maps from the network."


def _scree_figure(result, view):
    if result.scree is None:
        return None
    d = result.scree.axes_manager.signal_axes[0].axis
    fig, ax = _subplots(figsize=(5, 3.6))
    for k, curve in enumerate(np.asarray(result.scree.data)):
        ax.plot(d, curve, "o-", ms=3, label=f"{k + 1} component{'s' if k else ''}")
    ax.axvline(result.window, color="0.6", ls="--", label=f"d = {result.window}")
    ax.set_xlabel("window size d (px)")
    ax.set_ylabel("cumulative explained variance (PCA)")
    ax.legend(fontsize=7)
    return (
        fig,
        "scree_window.png",
        "Explained variance of the first components against window size.",
    )


def _components_figure(result, view):
    """The components as column displacements (arrows on the mean cell), or,
    where none can be drawn (the Gaussian mixture's cluster means), as
    windows."""
    ld = result.descriptors
    if result.method == "rvae":
        return _traversals_figure(result)
    if result.method != "gmm":
        try:
            pictures = ld.component_displacements(
                result.columns, result.learning_source
            )
        except (ValueError, KeyError):
            pictures = None
        if pictures is not None:
            fig = _arrows_figure(pictures, view.scale[0], view.units)
            return fig, "components.png", _arrows_caption(result)
    if result.method == "gmm":
        factors, kind = ld.get_cluster_signals(signal="mean"), "cluster mean windows"
    elif result.method == "ica":
        factors, kind = ld.get_bss_factors(), "independent components"
    else:
        factors, kind = (
            ld.get_decomposition_factors(),
            f"{result.method.upper()} components",
        )
    fdata = np.asarray(factors.data)
    fig, axes = _grid(len(fdata), size=2.6, aspect=fdata.shape[1] / fdata.shape[2])
    for i, (ax, f) in enumerate(zip(axes, fdata, strict=True)):
        shown = ax.imshow(f, cmap="RdBu_r" if f.min() < 0 else "viridis")
        ax.set_title(f"{i}")
        ax.axis("off")
        fig.colorbar(shown, ax=ax, shrink=0.8)
    channels = ld.metadata.get_item("Signal.stemunmix.local_descriptors.channels")
    return (
        fig,
        "components.png",
        (
            f"The {kind} as windows"
            + (f" (channels side by side: {', '.join(channels)})" if channels else "")
            + "."
        ),
    )


def _traversals_figure(result):
    """The rotation-invariant VAE's components: each content latent traversed
    from -2 to 2 (the others at their prior's centre, the angle 0), and the
    angle a quarter turn at a time."""
    ld = result.descriptors
    every = list(result.latents.metadata.Signal.quantities)
    values = np.asarray(result.latents.data).reshape(-1, len(every))
    values = values[np.isfinite(values).all(1)]
    rows = [
        (n, np.percentile(values[:, k], [5, 25, 50, 75, 95]))
        for k, n in enumerate(every)
        if n[0] == "z"
    ]
    rows.append(("angle", np.radians([0.0, 90.0, 180.0, 270.0])))
    fig, axes = _subplots(len(rows), 5, figsize=(9, 1.9 * len(rows)), squeeze=False)
    for (name, values), row in zip(rows, axes, strict=True):
        stack = np.asarray(ld.latent_traversal(name, values).data)
        for k, ax in enumerate(row):
            ax.axis("off")
            if k < len(stack):
                ax.imshow(stack[k], cmap="viridis")
                degrees = np.degrees(values[k])
                label = f"{degrees:.0f} deg" if name == "angle" else f"{values[k]:+.2g}"
                ax.set_title(f"{name} {label}", fontsize=7)
    caption = (
        "The rotation-invariant VAE's components as latent traversals: each "
        "row one content latent set to its 5th, 25th, 50th, 75th and 95th "
        "percentile over the windows (the others at their prior's centre), "
        "the last the angle a quarter turn at a time; decoded windows."
    )
    return fig, "components.png", caption


def _latent_maps(result, view):
    """The rVAE's content latents and the angle at every column."""
    lat = result.latents
    names = list(lat.metadata.Signal.quantities)
    keep = [k for k, n in enumerate(names) if n[0] == "z" or n == "angle"]
    maps = result.descriptors.get_loading_maps(lat, components=keep)
    return np.asarray(maps.data), [names[k] for k in keep]


def _loadings_figure(result, view):
    if result.method == "rvae":
        mdata, titles = _latent_maps(result, view)
    else:
        source = "cluster" if result.method == "gmm" else result.learning_source
        mdata = np.asarray(result.descriptors.get_loading_maps(source).data)
        titles = [f"loading {i}" for i in range(len(mdata))]
    while mdata.ndim > 3:
        mdata = mdata[0]
    fig, axes = _grid(len(mdata), aspect=view.aspect)
    for i, (ax, m) in enumerate(zip(axes, mdata, strict=True)):
        signed = np.nanmin(m) < 0
        top = float(np.nanmax(np.abs(m))) or 1.0
        if titles[i] == "angle":  # cyclic: -pi and pi are one angle
            signed, top = True, np.pi
        shown = ax.imshow(
            m,
            cmap=("twilight" if titles[i] == "angle" else "RdBu_r")
            if signed
            else "viridis",
            extent=view.extent,
            vmin=-top if signed else 0,
            vmax=top,
        )
        ax.set_title(titles[i])
        ax.axis("off")
        _scale_bar(ax, view.extent, view.units)
        fig.colorbar(shown, ax=ax, label="loading", shrink=0.8)
    caption = (
        "Loading maps: each component's weight at every "
        "column, drawn over the column's Voronoi cell."
    )
    if result.method == "rvae":
        caption = (
            "Latent maps: each content latent and the angle (radians) of the "
            "rotation-invariant VAE at every column, drawn over its Voronoi cell."
        )
    return fig, "loading_maps.png", caption


def _domain_confidence(ld):
    """Each pixel's largest domain probability (first frame), None without
    probabilities or with one domain."""
    if ld.domain_probabilities is None:
        return None
    probabilities = ld.get_domain_probabilities()
    if probabilities.axes_manager.navigation_shape[-1] < 2:
        return None
    data = np.asarray(probabilities.data)
    first = data.reshape((-1,) + data.shape[-3:])[0]
    best = np.max(np.where(np.isfinite(first), first, -np.inf), axis=0)
    return np.where(np.isfinite(best), best, np.nan)  # NaN off the columns


def _domain_panels(result, truth_map) -> list:
    """(title, map) of the learned domains, the physical descriptor's (matched
    to the truth's or the learned colours) and the planted truth."""
    domain = _frame0(result.descriptors.get_domain_map().data)
    panels = [("domains found (learned descriptor)", _matched(domain, truth_map))]
    if result.physical is not None:
        phys = _frame0(result.physical.get_domain_map().data)
        panels.append(
            (
                "physical descriptor (neighbour offsets)",
                _matched(phys, truth_map if truth_map is not None else domain),
            )
        )
    if truth_map is not None:
        panels.append(("planted domains (truth)", truth_map.astype(float)))
    return panels


def _domains_figure(result, view):
    from matplotlib import colormaps
    from matplotlib.patches import Patch

    truth_map = None if result.truth is None else np.asarray(result.truth.domain_map)
    panels = _domain_panels(result, truth_map)
    confidence = _domain_confidence(result.descriptors)
    fig, axes = _grid(
        len(panels) + (confidence is not None), size=4.5, aspect=view.aspect
    )
    if confidence is not None:
        ax = axes[-1]
        shown = ax.imshow(
            confidence,
            cmap="magma",
            vmin=0,
            vmax=1,
            extent=view.extent,
            interpolation="nearest",
        )
        ax.set_title("domain probability (largest)", fontsize=9)
        ax.axis("off")
        _scale_bar(ax, view.extent, view.units)
        fig.colorbar(shown, ax=ax, label="probability", shrink=0.8)
        axes = axes[:-1]
    tab10 = colormaps["tab10"]
    for ax, (title, m) in zip(axes, panels, strict=True):
        ax.imshow(
            m,
            cmap="tab10",
            vmin=-0.5,
            vmax=9.5,
            extent=view.extent,
            interpolation="nearest",
        )
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        _scale_bar(ax, view.extent, view.units)
        present = sorted(int(v) for v in np.unique(m[np.isfinite(m)]))
        ax.legend(
            handles=[Patch(color=tab10(v), label=f"domain {v}") for v in present],
            loc="lower left",
            fontsize=7,
            framealpha=0.8,
        )
    return fig, "domain_map.png", _domains_caption(result, truth_map, confidence)


def _domains_caption(result, truth_map, confidence) -> str:
    caption = (
        f"Domain map: Gaussian-mixture clusters ({result.domains}) of the "
        "loadings, in categorical colours"
        + (", matched to the truth's" if truth_map is not None else "")
    )
    test = result.descriptors.domain_test
    if test is not None and test.get("stability") is not None:
        caption += (
            f"; the partition into {test['n_domains']} is {test['why']}; "
            "stability: the median adjusted Rand index of the mixture "
            "refitted on 10 bootstrap resamples"
        )
    if confidence is not None:
        caption += (
            "; the last panel: each window's probability of its domain "
            "(low on walls and where domains are not told apart)"
        )
    if result.domain_agreement is not None:
        caption += (
            f"; adjusted Rand index {result.domain_agreement:.3f} against the truth"
        )
    if result.physical_agreement is not None:
        caption += (
            f"; the physical descriptor's clusters (matched to the learned "
            f"ones) agree with them at {result.physical_agreement:.3f}"
        )
    return caption + "."


def _matched(labels, reference):
    """``labels`` (a map, NaN outside) renumbered to the ``reference`` map's
    labels they overlap most (the Hungarian assignment), so matched domains
    share a colour; unchanged without a reference."""
    from scipy.optimize import linear_sum_assignment

    labels = np.asarray(labels, float)
    if reference is None:
        return labels
    ref = np.asarray(reference, float)
    ok = np.isfinite(labels) & np.isfinite(ref)
    if not ok.any():
        return labels
    a, b = labels[ok].astype(int), ref[ok].astype(int)
    table = np.zeros((a.max() + 1, max(b.max() + 1, a.max() + 1)))
    np.add.at(table, (a, b), 1)
    rows, cols = linear_sum_assignment(-table)
    lookup = np.arange(table.shape[0], dtype=float)
    lookup[rows] = cols
    spare = [c for c in range(10) if c not in set(cols.tolist())]
    for r in range(table.shape[0]):
        if r not in set(rows.tolist()) and spare:
            lookup[r] = spare.pop(0)
    out = np.full(labels.shape, np.nan)
    fin = np.isfinite(labels)
    out[fin] = lookup[labels[fin].astype(int)]
    return out


def _arrows_figure(pictures, scale, units):
    """Each component as arrows on the mean cell: the columns of every class
    where they sit in the window, and how far each moves in the component."""

    moves = pictures["displacements"]
    n = len(next(iter(moves.values())))
    fig, axes = _grid(n, size=2.8)
    biggest = max(float(np.abs(m).max()) for m in moves.values()) or 1.0
    sites = pictures["sites"]
    reach = max(float(np.abs(xy).max()) for xy in sites.values()) + 1.0
    gain = 0.35 * reach / biggest
    for k, ax in enumerate(axes):
        for c, (name, xy) in enumerate(sites.items()):
            color = COLORS[c % len(COLORS)]
            ax.scatter(xy[:, 0], xy[:, 1], s=40, color=color, label=name)
            m = moves[name][k]
            ax.quiver(
                xy[:, 0],
                xy[:, 1],
                m[:, 0] * gain,
                m[:, 1] * gain,
                angles="xy",
                scale_units="xy",
                scale=1,
                color=color,
                width=0.02,
            )
        ax.set_xlim(-reach, reach)
        ax.set_ylim(reach, -reach)
        ax.set_aspect(1)
        size = float(np.hypot(*np.concatenate([moves[nm][k] for nm in moves]).T).max())
        label = (
            f"{size * scale * 1000:.0f} pm"
            if units == "nm"
            else f"{size * scale:.3g} {units}"
        )
        ax.set_title(f"{k}: up to {label}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].legend(fontsize=7, loc="lower right")
    return fig


def _arrows_caption(result):
    what = (
        "NMF components"
        if result.method == "nmf"
        else "independent components"
        if result.method == "ica"
        else "PCA components"
    )
    return (
        f"The {what} as the column displacements they encode: each column "
        "of the mean cell (dots, by class) and how far the component moves it "
        "(arrows, enlarged; the title gives the largest move for a typical "
        "loading)."
    )


# The page's sections and the figures of each, in order (report/page.py).
SECTIONS = (
    ("summary", (_columns_figure,)),
    (
        "measurements",
        (
            cells.cells_figure,
            cells.rows_figure,
            cells.strain_figure,
            cells.tilt_figure,
            cells.intensity_figure,
        ),
    ),
    (
        "descriptor",
        (_scree_figure, _components_figure, _loadings_figure, _domains_figure),
    ),
    ("quality", (cells.presence_figure, cells.quality_figure, _probabilities_figure)),
)
