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

METHODS = ("pca", "nmf", "ica", "gmm")


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
    choices: dict = field(default_factory=dict)  # what was chosen from the data, why
    physical: object | None = None  # the neighbour-displacement descriptor, clustered
    physical_agreement: float | None = None  # ARI, learned against physical labels
    physical_truth_agreement: float | None = None  # ARI, physical against truth

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


WINDOW_FACTORS = (0.3, 0.4, 0.5, 0.65, 0.8, 1.0, 1.2)


def column_spacing(columns, classes="B") -> float:
    """Median nearest-neighbour distance (pixels) of the window class's
    columns (all columns when there is none of that class)."""
    from scipy.spatial import cKDTree

    sel = columns
    if classes is not None:
        name = classes if isinstance(classes, (str, int)) else list(classes)[0]
        try:
            sel = columns.select(name)
        except ValueError:
            sel = columns
    xy = sel.xy if len(sel) >= 2 else columns.xy
    if len(xy) < 2:
        raise ValueError("too few columns to choose a window size; pass window=")
    dist, _ = cKDTree(xy).query(xy, k=2)
    return float(np.median(dist[:, 1]))


def window_candidates(spacing: float) -> list[int]:
    """Odd window sizes from 0.3 to 1.2 column spacings (at least 5 px)."""
    return sorted({max(5, int(round(f * spacing)) | 1) for f in WINDOW_FACTORS})


def choose_window(scree, n_components: int) -> int:
    """The rule for the window size: the d whose first ``n_components``
    components explain the most variance on the scree against window size
    (``scree_by_window``, the study's Fig. 1a). A window the size of the
    distortion holds the signal and little else; a larger one adds pixels
    the components do not explain (other columns' noise), a smaller one cuts
    the column off."""
    curves = np.asarray(scree.data)
    d = scree.axes_manager.signal_axes[0].axis
    row = curves[min(n_components, len(curves)) - 1]
    return int(d[int(np.argmax(row))])


def analyze(
    image,
    window=None,
    method: str = "pca",
    components: int | None = None,
    domains: int | None = None,
    classes="B",
    scree: bool = True,
    truth=None,
    show_progressbar: bool | None = None,
    log=print,
    store=None,
    source: str = "image",
    centre: str = "cell",
    normalize: str | None = "mean",
    model=None,
) -> Analysis:
    """Segment, find columns, cut windows, unmix and cluster, choosing what
    the user leaves out from the data.

    Parameters
    ----------
    image : Signal2D
        Any 2D image (stacks: every frame; figures show the first).
    window : int, optional
        Window size in pixels; default chosen by :func:`choose_window` on the
        scree against window size (``scree=True``), otherwise half the column
        spacing.
    method : {"pca", "nmf", "ica", "gmm"}
        PCA (SVD of the centred windows), NMF, FastICA on a PCA, or a
        Gaussian mixture on the PCA loadings; the domain map always comes
        from a Gaussian mixture on the method's loadings.
    components : int, optional
        Number of components; default from parallel analysis
        (:func:`stemunmix.core.selection.parallel_analysis`: the components
        above the noise floor of shuffled windows).
    domains : int, optional
        Number of domains (Gaussian-mixture clusters); default from the
        partition of the loadings with the highest silhouette
        (:func:`stemunmix.core.selection.count_domains`).
    classes : str or list
        The columns the windows are centred on (default the B columns, whose
        displacements carry the polarisation); ``None`` for all.
    scree : bool
        Also compute the explained variance against window size (needed to
        choose the window from the data).
    truth : SyntheticTruth, optional
        For synthetic images: report the domain agreement with the truth.
    store : path-like, optional
        A folder. For a lazy image the network's maps are computed there once
        (``maps.zarr``, segment's ``store=``) and read back; ignored for an
        in-memory image.
    model : str, path or module, optional
        segment()'s: None chooses by the image's contrast (``"default"`` for
        bright columns, ``"oxygen"`` for ABF/BF); ``"oxygen"`` for iDPC.
    source, centre, normalize
        The windows: cut from the ``"image"`` (default) or the
        ``"probabilities"``; centred on the ``"cell"`` (default: the centre of
        each column's cell, so a window shows its column's displacement) or
        the ``"column"``; ``normalize="mean"`` (default; not for NMF) takes
        each window less its own mean (intensity and background out).

    What was chosen, and why, is in ``result.choices``, in the descriptors'
    ``metadata.Signal.stemunmix.model_selection`` and in the report.
    """

    _check_choices(method, source, centre, normalize, components, domains, window)
    if method == "nmf":
        normalize = None  # NMF needs non-negative windows
    image = as_image(image)
    lazy = image._lazy
    choices = {}
    progress = _Progress(6 if scree else 5, show_progressbar, log)

    def windows(d):
        return prob.local_descriptors(
            d,
            columns,
            classes=classes,
            image=image,
            source=source,
            centre=centre,
            show_progressbar=False,
            lazy_output=lazy,
        )

    try:
        prob, columns, stored = _segment_and_find(image, store, progress, model)
        spacing = column_spacing(columns, classes)
        scree_signal = None
        if scree:
            progress.start("scree against window size")
            scree_signal = _scree(
                prob, columns, image, spacing, classes, source, centre, normalize
            )
            progress.done("scree against window size")
        if window is None:
            window = _window_from_data(
                windows, spacing, scree_signal, normalize, choices
            )
        progress.start("local descriptors")
        ld = windows(window)
        n = ld.axes_manager.navigation_size
        if normalize == "mean":
            ld.data = ld.data - ld.data.mean(axis=(-2, -1), keepdims=True)
        progress.done("local descriptors", f"{n} windows of {window} x {window} px")
        progress.start(method)
        if components is None:
            components = _components_above_noise(ld, None)
            choices["components"] = {
                "value": int(components),
                "why": "parallel analysis: the PCA components above the 95th "
                "percentile of 5 shuffles of the windows' pixels",
            }
        if n < components + 2:
            raise ValueError(
                f"only {n} windows for {components} components; use a larger image, "
                "a smaller window, or fewer components"
            )
        _decompose(ld, method, components)
        chosen = domains is None
        if chosen:
            domains = _domains_from_data(_loadings(ld, method, components), choices)
        domains = _cluster(ld, method, components, domains, chosen, choices, log)
        progress.done(method, f"{components} components, {domains} domains")
        choices.update(
            {
                "method": method,
                "source": source,
                "centre": centre,
                "normalize": str(normalize),
            }
        )
        ld._set_state("model_selection", choices)
        result = Analysis(
            image,
            prob,
            ld,
            method,
            components,
            domains,
            int(window),
            classes,
            timings=progress.timings,
            truth=truth,
            stored=stored,
            choices=choices,
            scree=scree_signal,
        )
        progress.start("physical descriptor")
        _physical(result)
        agree = result.physical_agreement
        progress.done(
            "physical descriptor",
            "" if agree is None else f"agreement with the learned domains {agree:.3f}",
        )
    finally:
        progress.close()
    for key, value in choices.items():
        if isinstance(value, dict):
            log(f"chosen {key}: {value['value']} ({value['why']})")
    if truth is not None:
        result.domain_agreement = domain_agreement(ld, truth)
        log(
            f"domains: adjusted Rand index {result.domain_agreement:.3f} "
            "against the truth"
        )
    return result


def _check_choices(
    method, source, centre, normalize, components, domains, window
) -> None:
    from stemunmix.core import checks

    checks.one_of("method", method, METHODS)
    checks.one_of("source", source, ("image", "probabilities"))
    checks.one_of("centre", centre, ("cell", "column"))
    checks.one_of("normalize", normalize, (None, "mean"))
    if components is not None:
        checks.count("components", components, 1, 50)
    if domains is not None:
        checks.count("domains", domains, 1, 50)
    if window is not None:
        checks.count("window", window, 3)


def _scree(prob, columns, image, spacing, classes, source, centre, normalize):
    """The scree against window size (``scree_by_window``, the study's Fig.
    1a) of windows like the analysis's, over :func:`window_candidates`."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # windows dropped at the edge
        return prob.scree_by_window(
            window_candidates(spacing),
            n_components=10,
            classes=classes,
            columns=columns,
            image=image,
            source=source,
            centre=centre,
            normalize=normalize,
            lazy_output=image._lazy,
        )


class _Progress:
    """One progress bar over the steps of :func:`analyze`, their timings, and
    a line per step (through the bar when it shows, else ``log``)."""

    def __init__(self, total: int, show, log):
        from hyperspy.defaults_parser import preferences
        from tqdm.auto import tqdm

        show = preferences.General.show_progressbar if show is None else show
        self.bar = tqdm(total=total, desc="stemunmix", disable=not show, leave=False)
        self.say = self.bar.write if show else log
        self.timings = {}

    def start(self, name):
        self.timings[name] = time.perf_counter()
        self.bar.set_description(name)

    def done(self, name, text=""):
        self.timings[name] = time.perf_counter() - self.timings[name]
        self.bar.update(1)
        self.say(f"{name}: {text}{' ' if text else ''}({self.timings[name]:.1f} s)")

    def close(self):
        self.bar.close()


def _segment_and_find(image, store, progress, model=None):
    """The maps (for a lazy image computed once into ``store``/maps.zarr when
    given) and the columns, which the image then owns."""
    progress.start("segment")
    stored = {}
    if image._lazy and store is not None:
        Path(store).mkdir(parents=True, exist_ok=True)
        stored["maps"] = Path(store) / "maps.zarr"
    prob = image.segment(model, show_progressbar=False, store=stored.get("maps"))
    progress.done("segment", f"{' / '.join(prob.class_names)} maps")
    progress.start("find columns")
    columns = prob.find_columns(image=image, show_progressbar=False)
    if len(columns) == 0:
        raise ValueError(
            "no atomic columns found; check that this is an atomic-resolution image"
        )
    image.columns = columns
    counts = {
        n: len(columns.select(n)) for n in columns.class_names if n != "background"
    }
    progress.done("find columns", ", ".join(f"{v} {k}" for k, v in counts.items()))
    return prob, columns, stored


def _window_from_data(windows, spacing, scree, normalize, choices) -> int:
    """The window size by :func:`choose_window` on the scree (half the
    spacing without one), recorded with why in ``choices``."""
    half = int(round(0.5 * spacing)) | 1
    if scree is None:
        choices["window"] = {
            "value": half,
            "why": f"half the {spacing:.1f} px column spacing (no scree computed)",
        }
        return half
    n_floor = _components_above_noise(windows(half), normalize)
    window = choose_window(scree, n_floor)
    choices["window"] = {
        "value": int(window),
        "why": f"the most variance in the first {n_floor} components (those "
        f"above the noise floor) on the scree against window size, d = "
        f"{window_candidates(spacing)} px (0.3 to 1.2 x the "
        f"{spacing:.1f} px column spacing)",
    }
    return window


def _domains_from_data(loadings, choices) -> int:
    """The number of domains by :func:`stemunmix.core.selection.count_domains`,
    recorded with why in ``choices``."""
    from stemunmix.core.selection import count_domains

    found = count_domains(loadings, max_domains=8)
    why = (
        "the Gaussian mixture (2 to 8 clusters, one shared covariance) of the "
        "loadings whose partition has the highest mean silhouette"
    )
    if found["n_domains"] == 1 and found["silhouette"]:
        best = int(np.argmax(found["silhouette"]))
        why = (
            f"no significant domain structure: no partition into 2 to 8 "
            f"clusters reaches a silhouette of 0.25 (best "
            f"{found['silhouette'][best]:.2f}, {best + 2} clusters)"
        )
    choices["domains"] = {
        "value": int(found["n_domains"]),
        "why": why,
        "silhouette": [round(v, 3) for v in found["silhouette"]],
    }
    return found["n_domains"]


def _components_above_noise(ld, normalize) -> int:
    """Parallel analysis on (a subsample of) the windows, 2 to 10 components."""
    from stemunmix.core.selection import parallel_analysis

    n = ld.axes_manager.navigation_size
    data = ld.data.reshape((n, -1))
    pick = np.sort(np.random.default_rng(0).choice(n, min(n, 5000), replace=False))
    x = np.asarray(data[pick].compute() if ld._lazy else data[pick], np.float64)
    if normalize == "mean":
        x = x - x.mean(1, keepdims=True)
    found = parallel_analysis(x, max_components=10)
    return int(np.clip(found["n_components"], 2, 10))


def _decompose(ld, method, components) -> None:
    if method == "nmf":
        ld.decomposition(algorithm="NMF", output_dimension=components, print_info=False)
    else:
        ld.decomposition(
            algorithm="SVD",
            output_dimension=components,
            centre="navigation",
            print_info=False,
        )
    if method == "ica":
        ld.blind_source_separation(components, print_info=False)


def _loadings(ld, method, components) -> np.ndarray:
    source = "bss" if method == "ica" else "decomposition"
    return ld._per_column(source)[:, :components]


def _cluster(ld, method, components, domains, chosen, choices, log) -> int:
    """The Gaussian mixture (one shared covariance) on the method's loadings,
    in ``ld.learning_results``, and its test (``ld.domain_test``). A partition
    chosen from the data that is not significant becomes one domain (the
    test of the partition stays in ``ld.domain_test``); one the user asked
    for is kept, with a warning. Returns the number of domains."""
    import warnings

    from stemunmix.learn import GaussianMixture

    source = "bss" if method == "ica" else "decomposition"

    def fit(k):
        ld.cluster_analysis(
            source,
            number_of_components=components,
            algorithm=GaussianMixture(k, covariance_type="tied", random_state=0),
        )
        return ld.domain_test

    test = fit(domains)
    if domains < 2 or test["significant"]:
        return domains
    if not chosen:
        message = (
            f"the {domains} domains asked for are not significant "
            f"({test['why']}): they may be noise or a gradient"
        )
        warnings.warn(message, UserWarning, stacklevel=3)
        log(message)
        return domains
    choices["domains"]["value"] = 1
    choices["domains"]["why"] = (
        f"no significant domain structure: the best "
        f"partition ({domains} clusters) is {test['why']}"
    )
    fit(1)
    ld._set_state("domain_test", test)
    return 1


def _physical(result: Analysis) -> None:
    """The physical descriptor (each window column's neighbour offsets on the
    median cell), clustered into as many domains, and its agreement with the
    learned domains (and with the truth, where there is one)."""
    import warnings

    from scipy.spatial import cKDTree
    from sklearn.metrics import adjusted_rand_score

    from stemunmix.learn import GaussianMixture

    ld, columns = result.descriptors, result.columns
    names = sorted(set(ld.columns.labels.tolist()))
    others = [
        n
        for k, n in enumerate(columns.class_names)
        if k not in names and n != "background" and len(columns.select(n))
    ]
    if len(names) != 1 or not others or columns.nav_index is not None:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            phys = result.image.displacement_descriptors(
                columns, centre=columns.class_names[names[0]], around=others[0]
            )
    except ValueError:
        return
    if phys.axes_manager.navigation_size < result.domains + 1 or result.domains < 2:
        return  # one domain: nothing to compare
    phys.cluster_analysis(
        "signal",
        test=False,
        algorithm=GaussianMixture(
            result.domains, covariance_type="tied", random_state=0
        ),
    )
    result.physical = phys
    mine = np.asarray(ld.learning_results.cluster_labels).argmax(0)
    theirs = np.asarray(phys.learning_results.cluster_labels).argmax(0)
    dist, idx = cKDTree(ld.columns.xy).query(phys.columns.xy)
    near = dist < 0.5
    if near.sum() > result.domains:
        result.physical_agreement = float(
            adjusted_rand_score(theirs[near], mine[idx[near]])
        )
    if result.truth is not None:
        result.physical_truth_agreement = domain_agreement(phys, result.truth)


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
        ax_x.units
        if isinstance(ax_x.units, str) and ax_x.units not in ("", "<undefined>")
        else "px"
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


@dataclass
class _View:
    """What every report figure draws on: the first frame, its calibration
    and its columns."""

    raw: np.ndarray
    extent: list
    units: str
    scale: tuple  # (x, y) per pixel
    offset: tuple
    columns: object

    @classmethod
    def of(cls, result):
        ax_x, ax_y = result.image.axes_manager.signal_axes
        extent, units = _extent(result.image)
        return cls(
            _frame0(result.image.data),
            extent,
            units,
            (ax_x.scale, ax_y.scale),
            (ax_x.offset, ax_y.offset),
            _first_frame_columns(result.columns),
        )

    @property
    def aspect(self) -> float:
        return self.raw.shape[0] / self.raw.shape[1]


def _figures(
    result: Analysis, out: Path, keep: list | None = None
) -> list[tuple[str, str]]:
    """Write the PNGs; returns [(file name, caption)]; the Figure objects go
    into ``keep`` when given (the tests read them)."""
    view = _View.of(result)
    figures = []
    for draw in (
        _columns_figure,
        _probabilities_figure,
        _scree_figure,
        _components_figure,
        _loadings_figure,
        _domains_figure,
        _polarization_figure,
    ):
        made = draw(result, view)
        if made is None:
            continue
        fig, name, caption = made
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        figures.append((name, caption))
        if keep is not None:
            keep.append((name, fig))
    return figures


def _columns_figure(result, view):
    from matplotlib.patches import Rectangle

    from stemunmix.core.plotting import COLORS

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
    channels = ld._get_state("local_descriptors", {}).get("channels")
    return (
        fig,
        "components.png",
        (
            f"The {kind} as windows"
            + (f" (channels side by side: {', '.join(channels)})" if channels else "")
            + "."
        ),
    )


def _loadings_figure(result, view):
    source = "cluster" if result.method == "gmm" else result.learning_source
    mdata = np.asarray(result.descriptors.get_loading_maps(source).data)
    while mdata.ndim > 3:
        mdata = mdata[0]
    fig, axes = _grid(len(mdata), aspect=view.aspect)
    for i, (ax, m) in enumerate(zip(axes, mdata, strict=True)):
        signed = np.nanmin(m) < 0
        top = float(np.nanmax(np.abs(m))) or 1.0
        shown = ax.imshow(
            m,
            cmap="RdBu_r" if signed else "viridis",
            extent=view.extent,
            vmin=-top if signed else 0,
            vmax=top,
        )
        ax.set_title(f"loading {i}")
        ax.axis("off")
        _scale_bar(ax, view.extent, view.units)
        fig.colorbar(shown, ax=ax, label="loading", shrink=0.8)
    return (
        fig,
        "loading_maps.png",
        (
            "Loading maps: each component's weight at every "
            "column, drawn over the column's Voronoi cell."
        ),
    )


def _domain_confidence(ld):
    """Each pixel's largest domain probability (first frame), None without
    probabilities or with one domain."""
    if ld._get_state("domain_probabilities") is None:
        return None
    probabilities = ld.get_domain_probabilities()
    if probabilities.axes_manager.navigation_shape[-1] < 2:
        return None
    data = np.asarray(probabilities.data)
    return np.nanmax(data.reshape((-1,) + data.shape[-3:])[0], axis=0)


def _domains_figure(result, view):
    from matplotlib import colormaps
    from matplotlib.patches import Patch

    domain = _frame0(result.descriptors.get_domain_map().data)
    truth_map = None if result.truth is None else np.asarray(result.truth.domain_map)
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
    return fig, "domain_map.png", caption + "."


def _polarization_figure(result, view):
    columns = view.columns
    if not ({"A", "B"} <= set(columns.class_names) and len(columns.select("B"))):
        return None
    fig, ax = _subplots(figsize=(7, 7 * view.aspect + 0.5))
    image = result.image
    columns.plot_polarization(
        image if image.axes_manager.navigation_dimension == 0 else view.raw, ax=ax
    )
    h, w = view.raw.shape
    _scale_bar(ax, [0, w, h, 0], view.units, view.scale[0])
    ax.set_title("B displacement from the centre of its A neighbours")
    return (
        fig,
        "polarization.png",
        (
            "Polarization: displacement of every B column from the centre of its A "
            "cell (colour: pm on a calibrated image; arrows enlarged as the colourbar "
            "says)."
        ),
    )


def _scale_bar(ax, extent, units, per_data_unit: float = 1.0) -> None:
    """A scale bar of a round length (about a fifth of the width), in the
    image's units (nm, or px when uncalibrated); ``per_data_unit``: those
    units per data unit of ``ax`` (the pixel size when it is drawn in pixels)."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    width = abs(extent[1] - extent[0]) * per_data_unit
    if not width > 0:
        return
    target = width / 5
    step = 10 ** np.floor(np.log10(target))
    length = max(v * step for v in (1, 2, 5) if v * step <= target)
    bar = AnchoredSizeBar(
        ax.transData,
        length / per_data_unit,
        f"{length:g} {units}",
        "lower right",
        pad=0.3,
        color="white",
        frameon=False,
        size_vertical=width / per_data_unit / 150,
    )
    ax.add_artist(bar)


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
    from stemunmix.core.plotting import COLORS

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


def write_report(result: Analysis, out, title: str = "stemunmix report") -> Path:
    """Write the figures and ``report.html`` into the folder ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    figures = _figures(result, out)
    columns = result.columns
    ax = result.image.axes_manager.signal_axes[0]
    rows = [
        (
            "image",
            f"{result.image.metadata.General.title or 'untitled'}, "
            f"{' x '.join(str(s) for s in result.image.data.shape)} px, "
            + (
                f"{ax.scale:.4g} {ax.units} per pixel"
                if str(ax.units) not in ("", "<undefined>", "px")
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
