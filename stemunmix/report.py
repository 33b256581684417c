"""The whole analysis in one call, and its report (PNG figures + report.html).

This is an edge of the package (DESIGN.md layer 3): it only calls the public
signal methods, so what ``stemunmix demo`` and ``stemunmix analyze`` do is what
a notebook user can do step by step.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

METHODS = ("nmf", "pca", "ica", "gmm")


@dataclass
class Analysis:
    """Everything :func:`analyze` made, ready for :func:`write_report`."""

    image: object  # AtomicResolutionImage (with .columns)
    probabilities: object  # ColumnProbabilities
    descriptors: object  # LocalDescriptors with learning results
    method: str
    components: int
    domains: int
    window: int
    classes: str | list | None
    scree: object | None = None  # Signal1D over window size
    timings: dict = field(default_factory=dict)
    truth: object | None = None  # SyntheticTruth, for the demo
    domain_agreement: float | None = None  # adjusted Rand index against truth
    stored: dict = field(default_factory=dict)  # name -> file written by analyze

    @property
    def columns(self):
        return self.image.columns

    @property
    def learning_source(self) -> str:
        return "bss" if self.method == "ica" else "decomposition"


def as_image(signal):
    """The signal as an AtomicResolutionImage, or a ValueError saying why not."""
    from hyperspy.signal import BaseSignal

    if not isinstance(signal, BaseSignal):
        raise TypeError(
            f"expected a HyperSpy signal, got {type(signal).__name__}; "
            "load the file with hs.load"
        )
    dim = signal.axes_manager.signal_dimension
    if dim != 2:
        raise ValueError(
            f"this is not an image (its signal has {dim} dimension(s), so "
            "set_signal_type('atomic_resolution') leaves it as it is); stemunmix "
            "needs a 2D atomic-resolution image, e.g. a HAADF or ADF frame: make "
            "the two image axes the signal axes with signal.transpose(signal_axes=2)"
        )
    if signal.data.dtype.kind not in "iuf":
        raise ValueError(
            f"the image has {signal.data.dtype} pixels, so "
            "set_signal_type('atomic_resolution') leaves it as it is; stemunmix "
            "needs real numbers: take signal.real, signal.amplitude or signal.phase"
        )
    if signal.metadata.Signal.get_item("signal_type") != "atomic_resolution":
        signal = signal.deepcopy() if not signal._lazy else signal
        signal.set_signal_type("atomic_resolution")
    return signal


def default_window(columns) -> int:
    """1.2 times the median nearest-neighbour distance of the first class's
    columns: a B-centred window then holds its B column and the four A corners."""
    from scipy.spatial import cKDTree

    first = columns.select(0)
    xy = first.xy if len(first) >= 2 else columns.xy
    if len(xy) < 2:
        raise ValueError("too few columns to choose a window size; pass window=")
    dist, _ = cKDTree(xy).query(xy, k=2)
    return max(3, int(round(1.2 * float(np.median(dist[:, 1])))))


def analyze(
    image,
    window=None,
    method: str = "nmf",
    components: int = 4,
    domains: int | None = None,
    classes="B",
    scree: bool = True,
    truth=None,
    show_progressbar: bool | None = None,
    log=print,
    store=None,
) -> Analysis:
    """Segment, find columns, cut windows, unmix and cluster, with defaults.

    Parameters
    ----------
    image : Signal2D
        Any 2D image (stacks: every frame; figures show the first).
    window : int, optional
        Window size in pixels; default :func:`default_window`.
    method : {"nmf", "pca", "ica", "gmm"}
        NMF or PCA (SVD) decomposition, FastICA on a PCA, or a Gaussian
        mixture on the PCA loadings; the domain map always comes from a
        Gaussian mixture on the method's loadings.
    components : int
        Number of components (and of clusters for ``"gmm"``).
    domains : int, optional
        Number of domains (Gaussian-mixture clusters); default ``components``.
    classes : str or list
        The columns the windows are centred on (default the B columns, whose
        displacements carry the polarisation); ``None`` for all.
    scree : bool
        Also compute the explained variance against window size.
    truth : SyntheticTruth, optional
        For synthetic images: report the domain agreement with the truth.
    store : path-like, optional
        A folder. For a lazy image the network's maps are computed there once
        (``maps.zarr``, segment's ``store=``) and read back, so the later steps
        do not run the network again (default: a temporary folder); ignored
        for an in-memory image.
    """

    from stemunmix.core import checks

    checks.one_of("method", method, METHODS)
    checks.count("components", components, 1, 50)
    if domains is not None:
        checks.count("domains", domains, 1, 50)
    domains = components if domains is None else int(domains)
    from hyperspy.defaults_parser import preferences
    from tqdm.auto import tqdm

    image = as_image(image)
    lazy = image._lazy
    timings = {}
    show = preferences.General.show_progressbar
    show = show if show_progressbar is None else show_progressbar
    bar = tqdm(total=5 if scree else 4, desc="stemunmix", disable=not show,
               leave=False)  # fmt: skip
    say = bar.write if show else log

    def step(name):
        timings[name] = time.perf_counter()
        bar.set_description(name)

    def done(name, text=""):
        timings[name] = time.perf_counter() - timings[name]
        bar.update(1)
        say(f"{name}: {text}{' ' if text else ''}({timings[name]:.1f} s)")

    try:
        step("segment")
        stored = {}
        if lazy and store is not None:
            Path(store).mkdir(parents=True, exist_ok=True)
            stored["maps"] = Path(store) / "maps.zarr"
        # A lazy image's maps are computed once, into the store (segment's
        # store=): no later step runs the network again.
        prob = image.segment(show_progressbar=False, store=stored.get("maps"))
        done("segment", f"{' / '.join(prob.class_names)} maps")
        step("find columns")
        columns = prob.find_columns(image=image, show_progressbar=False)
        if len(columns) == 0:
            raise ValueError(
                "no atomic columns found; check that this is an atomic-resolution image"
            )
        image.columns = columns
        counts = {n: len(columns.select(n)) for n in columns.class_names
                  if n != "background"}  # fmt: skip
        done("find columns", ", ".join(f"{v} {k}" for k, v in counts.items()))
        if window is None:
            window = default_window(columns)
        step("local descriptors")
        ld = prob.local_descriptors(
            window, columns, classes=classes, image=image,
            show_progressbar=False, lazy_output=lazy,
        )  # fmt: skip
        n = ld.axes_manager.navigation_size
        if n < max(components, domains) + 1:
            raise ValueError(
                f"only {n} windows for {components} components; use a larger image, "
                "a smaller window, or fewer components"
            )
        done("local descriptors", f"{n} windows of {window} x {window} px")
        step(method)
        _unmix(ld, method, components, domains)
        done(method, f"{components} components, {domains} domains")
        result = Analysis(image, prob, ld, method, components, domains, int(window),
                          classes, timings=timings, truth=truth, stored=stored)  # fmt: skip
        if scree:
            step("scree against window size")
            d_values = sorted({max(3, int(round(window * f))) for f in
                               (0.5, 0.75, 1.0, 1.25, 1.5)})  # fmt: skip
            result.scree = prob.scree_by_window(
                d_values, n_components=components, classes=classes, columns=columns,
                image=image, lazy_output=lazy,
            )  # fmt: skip
            done("scree against window size")
    finally:
        bar.close()
    if truth is not None:
        result.domain_agreement = domain_agreement(ld, truth)
        log(f"domains: adjusted Rand index {result.domain_agreement:.3f} "
            "against the truth")  # fmt: skip
    return result


def _unmix(ld, method, components, domains) -> None:
    """The decomposition (NMF or SVD, then FastICA for "ica") and the
    Gaussian mixture on its loadings, in ``ld.learning_results``."""
    from stemunmix.learn import GaussianMixture

    algorithm = "NMF" if method == "nmf" else "SVD"
    ld.decomposition(algorithm=algorithm, output_dimension=components, print_info=False)
    source = "decomposition"
    if method == "ica":
        ld.blind_source_separation(components, print_info=False)
        source = "bss"
    ld.cluster_analysis(source, number_of_components=components,
                        algorithm=GaussianMixture(domains, random_state=0))  # fmt: skip


def domain_agreement(descriptors, truth) -> float:
    """Adjusted Rand index of the cluster labels against the planted domains
    (each window's column matched to the nearest true column of its class)."""
    from scipy.spatial import cKDTree
    from sklearn.metrics import adjusted_rand_score

    cols = descriptors.columns
    labels = np.asarray(descriptors.learning_results.cluster_labels).argmax(0)
    names = truth.columns.class_names
    true_label = np.empty(len(cols), int)
    for k, name in enumerate(cols.class_names):
        mine = cols.labels == k
        if not mine.any():
            continue
        ref = truth.columns.labels == names.index(name)
        _, idx = cKDTree(truth.columns.xy[ref]).query(cols.xy[mine])
        true_label[mine] = truth.domain[ref][idx]
    return float(adjusted_rand_score(true_label, labels))


# --- the report --------------------------------------------------------------


def _frame0(data):
    data = np.asarray(data)
    while data.ndim > 2:
        data = data[0]
    return data


def _first_frame_columns(columns):
    if columns.nav_index is None:
        return columns
    return columns[np.all(columns.nav_index == 0, axis=1)]


def _extent(image):
    ax_x, ax_y = image.axes_manager.signal_axes
    x0, y0 = ax_x.offset - ax_x.scale / 2, ax_y.offset - ax_y.scale / 2
    return [x0, x0 + ax_x.size * ax_x.scale, y0 + ax_y.size * ax_y.scale, y0], (
        ax_x.units if isinstance(ax_x.units, str) and ax_x.units else "px"
    )


def _subplots(rows=1, cols=1, figsize=(6, 4), squeeze=True):
    """A figure and its axes with no pyplot: nothing global (the user's
    backend, open figures) is touched, and the file is written by Agg."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, cols, squeeze=squeeze)


def _grid(n, size=3.2, max_cols=4, aspect=1.0):
    cols = min(n, max_cols)
    rows = int(np.ceil(n / cols))
    fig, axes = _subplots(
        rows, cols, figsize=(size * cols, size * rows * aspect + 0.4), squeeze=False
    )
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return fig, axes.ravel()[:n]


def _figures(result: Analysis, out: Path) -> list[tuple[str, str]]:
    """Write the PNGs; returns [(file name, caption)]."""
    from stemunmix.interop.atomap import COLORS

    image, ld = result.image, result.descriptors
    columns = _first_frame_columns(result.columns)
    extent, units = _extent(image)
    sx = image.axes_manager.signal_axes[0].scale
    ox = image.axes_manager.signal_axes[0].offset
    sy = image.axes_manager.signal_axes[1].scale
    oy = image.axes_manager.signal_axes[1].offset
    raw = _frame0(image.data)
    figures = []

    def save(fig, name, caption):
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        figures.append((name, caption))

    fig, ax = _subplots(figsize=(7, 7 * raw.shape[0] / raw.shape[1] + 0.5))
    ax.imshow(raw, cmap="gray", extent=extent)
    for k, name in enumerate(columns.class_names):
        sel = columns.select(name)
        if name == "background" or not len(sel):
            continue
        ax.scatter(sel.x * sx + ox, sel.y * sy + oy, s=6, color=COLORS[k % len(COLORS)],
                   label=f"{name} ({len(sel)})")  # fmt: skip
    ax.legend(loc="upper right", markerscale=2, fontsize=8)
    ax.set_xlabel(units)
    ax.set_title("Image and the columns found")
    save(fig, "columns.png", "The image with the atomic columns found, by class.")

    prob = np.asarray(result.probabilities.data)
    while prob.ndim > 3:
        prob = prob[0]
    names = result.probabilities.class_names
    fig, axes = _grid(len(names), aspect=raw.shape[0] / raw.shape[1])
    for ax, k in zip(axes, range(len(names)), strict=True):
        ax.imshow(prob[k], vmin=0, vmax=1, cmap="magma", extent=extent)
        ax.set_title(f"P({names[k]})")
        ax.axis("off")
    save(fig, "probabilities.png", "Per-class probability maps from the network.")

    if result.scree is not None:
        s = result.scree
        d = s.axes_manager.signal_axes[0].axis
        fig, ax = _subplots(figsize=(5, 3.6))
        for k, curve in enumerate(np.asarray(s.data)):
            ax.plot(d, curve, "o-", ms=3, label=f"{k + 1} component{'s' if k else ''}")
        ax.axvline(result.window, color="0.6", ls="--", label=f"d = {result.window}")
        ax.set_xlabel("window size d (px)")
        ax.set_ylabel("cumulative explained variance (PCA)")
        ax.legend(fontsize=7)
        save(fig, "scree_window.png",
             "Explained variance of the first components against window size.")  # fmt: skip

    if result.method == "gmm":
        factors = ld.get_cluster_signals(signal="mean")
        kind = "cluster mean windows"
    elif result.method == "ica":
        factors = ld.get_bss_factors()
        kind = "independent components"
    else:
        factors = ld.get_decomposition_factors()
        kind = f"{result.method.upper()} components"
    fdata = np.asarray(factors.data)
    fig, axes = _grid(len(fdata), size=2.6, aspect=fdata.shape[1] / fdata.shape[2])
    for i, (ax, f) in enumerate(zip(axes, fdata, strict=True)):
        ax.imshow(f, cmap="RdBu_r" if f.min() < 0 else "viridis")
        ax.set_title(f"{i}")
        ax.axis("off")
    channels = ld._get_state("local_descriptors", {}).get("channels")
    save(fig, "components.png",
         f"The {kind} as windows"
         + (f" (channels side by side: {', '.join(channels)})" if channels else "")
         + ".")  # fmt: skip

    if result.method == "gmm":
        maps = ld.get_loading_maps("cluster")
    else:
        maps = ld.get_loading_maps(result.learning_source)
    mdata = np.asarray(maps.data)
    while mdata.ndim > 3:
        mdata = mdata[0]
    fig, axes = _grid(len(mdata), aspect=raw.shape[0] / raw.shape[1])
    for i, (ax, m) in enumerate(zip(axes, mdata, strict=True)):
        ax.imshow(m, cmap="RdBu_r" if np.nanmin(m) < 0 else "viridis", extent=extent)
        ax.set_title(f"loading {i}")
        ax.axis("off")
    save(fig, "loading_maps.png", "Loading maps: each component's weight at every "
         "column, drawn over the column's Voronoi cell.")  # fmt: skip

    domain = _frame0(ld.get_domain_map().data)
    panels = [("domains found", domain)]
    if result.truth is not None:
        panels.append(("planted domains (truth)", result.truth.domain_map))
    fig, axes = _grid(len(panels), size=4.5, aspect=raw.shape[0] / raw.shape[1])
    for ax, (title, m) in zip(axes, panels, strict=True):
        ax.imshow(
            m, cmap="tab10", vmin=0, vmax=9, extent=extent, interpolation="nearest"
        )
        ax.set_title(title)
        ax.axis("off")
    caption = (
        f"Domain map: Gaussian-mixture clusters ({result.domains}) of the loadings"
    )
    if result.domain_agreement is not None:
        caption += (
            f"; adjusted Rand index {result.domain_agreement:.3f} against the truth"
        )
    save(fig, "domain_map.png", caption + ".")

    if {"A", "B"} <= set(columns.class_names) and len(columns.select("B")):
        fig, ax = _subplots(figsize=(7, 7 * raw.shape[0] / raw.shape[1] + 0.5))
        columns.plot_polarization(raw, ax=ax)
        ax.set_title("B displacement from the centre of its A neighbours")
        save(fig, "polarization.png",
             "Polarization: displacement of every B column from the centre of its "
             "A neighbours (pixels; arrows scaled for visibility).")  # fmt: skip
    return figures


def write_report(result: Analysis, out, title: str = "stemunmix report") -> Path:
    """Write the figures and ``report.html`` into the folder ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    figures = _figures(result, out)
    columns = result.columns
    ax = result.image.axes_manager.signal_axes[0]
    rows = [
        ("image", f"{result.image.metadata.General.title or 'untitled'}, "
                  f"{' x '.join(str(s) for s in result.image.data.shape)} px, "
                  f"{ax.scale:.4g} {ax.units} per pixel"),
        ("columns found", ", ".join(f"{len(columns.select(n))} {n}"
                                    for n in columns.class_names if n != "background")),
        ("windows", f"{result.descriptors.axes_manager.navigation_size} of "
                    f"{result.window} x {result.window} px, centred on "
                    f"{result.classes or 'all'} columns"),
        ("method", f"{result.method.upper()}, {result.components} components, "
                   f"Gaussian mixture of {result.domains} domains"),
    ]  # fmt: skip
    if result.domain_agreement is not None:
        rows.append(("domain agreement with the truth",
                     f"adjusted Rand index {result.domain_agreement:.3f}"))  # fmt: skip
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


def save_results(result: Analysis, out, lazy: bool = False) -> list[Path]:
    """Save the image (with its columns), the probability maps and the
    descriptors (with their learning results) as .hspy, or .zspy when lazy."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ext = "zspy" if lazy else "hspy"
    lr = result.descriptors.learning_results
    for key, value in vars(lr).items():
        if hasattr(value, "get_params"):
            # HyperSpy keeps scikit-learn estimators here, which no file holds.
            setattr(lr, key, repr(value))
    paths = []
    for name, signal in (("image", result.image), ("probabilities", result.probabilities),
                         ("descriptors", result.descriptors)):  # fmt: skip
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
