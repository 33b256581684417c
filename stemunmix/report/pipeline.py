"""analyze(): segment, find columns, cut windows, unmix and cluster, through
the public signal methods; what it chose from the data is recorded."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stemunmix.core import checks
from stemunmix.core.selection import column_spacing
from stemunmix.learn import GaussianMixture
from stemunmix.report.choices import (
    _components_above_noise,
    _domains_from_data,
    _scree,
    _window_from_data,
)
from stemunmix.signals.atomic_resolution import STRUCTURES

METHODS = ("pca", "nmf", "ica", "gmm", "rvae")
RVAE_LATENTS = 3  # the content latents of method="rvae" at most


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
    latents: object | None = None  # method "rvae": the latents (Signal1D on the sites)

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
    structure: str = "auto",
    precision: str = "float32",
) -> Analysis:
    """Segment, find columns, cut windows, unmix and cluster, choosing what
    the user leaves out from the data.

    Parameters
    ----------
    image : Signal2D
        One 2D image. A stack is refused before any work, with what works:
        one frame (``image.inav[k]``; ``stemunmix analyze FILE --frame k``),
        or the steps themselves, which take every frame
        (``image.find_columns()``, ``local_descriptors(d, centre="column")``).
    window : int, optional
        Window size in pixels; default chosen by :func:`choose_window` on the
        scree against window size (``scree=True``), otherwise half the column
        spacing.
    method : {"pca", "nmf", "ica", "gmm", "rvae"}
        PCA (SVD of the centred windows), NMF, FastICA on a PCA, a
        Gaussian mixture on the PCA loadings, or the rotation- and
        shift-invariant VAE (:meth:`LocalDescriptors.invariant_latents`:
        ``components`` content latents, at most 3, beside the angle; the
        domains from its content latents and the angle's cosine and sine;
        the components drawn as latent traversals); the domain map always
        comes from a Gaussian mixture on the method's loadings.
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
        displacements carry the polarisation; where the structure has none,
        a crystal of one species, its first column class); ``None`` for all.
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
    structure, precision : str
        segment()'s: the kind of lattice (``"auto"`` tells a metal and
        dumbbells from a perovskite), and the network's arithmetic
        (``"bfloat16"`` about twice as fast where the CPU has it natively).
    source, centre, normalize
        The windows: cut from the ``"image"`` (default) or the
        ``"probabilities"``; centred on the ``"cell"`` (default: the centre of
        each column's cell, so a window shows its column's displacement) or
        the ``"column"``; ``normalize="mean"`` (default; not for NMF) takes
        each window less its own mean (intensity and background out).

    What was chosen, and why, is in ``result.choices``, in the descriptors'
    ``metadata.Signal.stemunmix.model_selection`` and in the report.
    """

    # precision is segment()'s to check (inference.check_precision), before
    # its network runs
    _check_choices(
        method, source, centre, normalize, components, domains, window, structure
    )
    if method == "nmf":
        normalize = None  # NMF needs non-negative windows
    image = as_image(image)
    _check_against_image(image, window, components, normalize)
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
            normalize=normalize,
        )

    try:
        prob, columns, stored = _segment_and_find(
            image, store, progress, model, structure, precision
        )
        classes, centre = _centre_class(columns, classes, centre, log)
        _check_enough(image, columns, classes)
        spacing = column_spacing(columns, classes)
        scree_signal = None
        if scree:
            progress.start("scree against window size")
            scree_signal = _scree(
                prob, columns, image, spacing, classes, source, centre, normalize
            )
            progress.done("scree against window size")
        if window is None:
            window = _window_from_data(windows, spacing, scree_signal, choices)
            _check_components(window, components, normalize)
        progress.start("local descriptors")
        ld = windows(window)
        n = ld.axes_manager.navigation_size
        progress.done("local descriptors", f"{n} windows of {window} x {window} px")
        progress.start(method)
        components, domains = _unmix(ld, method, components, domains, choices, log)
        progress.done(method, f"{components} components, {domains} domains")
        choices.update(
            {
                "method": method,
                "source": source,
                "centre": centre,
                "normalize": str(normalize),
            }
        )
        ld.metadata.set_item("Signal.stemunmix.model_selection", choices)
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
            latents=getattr(ld, "invariant_latents_", None),
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
    _say_choices(result, log)
    return result


def _unmix(ld, method, components, domains, choices, log) -> tuple[int, int]:
    """The decomposition and the domains of the windows ``ld``, the number
    of components and of domains chosen from the data where not given
    (recorded with why in ``choices``). Returns (components, domains)."""
    n = ld.axes_manager.navigation_size
    if components is None:
        components = _components_above_noise(ld)
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
    if method == "rvae":
        components = min(components, RVAE_LATENTS)
    source = _decompose(ld, method, components)
    chosen = domains is None
    if chosen:
        domains = _domains_from_data(_loadings(ld, source, components), choices)
    domains = _cluster(ld, source, components, domains, chosen, choices, log)
    return components, domains


def _say_choices(result, log) -> None:
    """What was chosen and why, and the agreement with a synthetic truth."""
    for key, value in result.choices.items():
        if isinstance(value, dict):
            log(f"chosen {key}: {value['value']} ({value['why']})")
    if result.truth is not None:
        result.domain_agreement = domain_agreement(result.descriptors, result.truth)
        log(
            f"domains: adjusted Rand index {result.domain_agreement:.3f} "
            "against the truth"
        )


def _check_choices(
    method, source, centre, normalize, components, domains, window, structure="auto"
) -> None:

    checks.one_of("method", method, METHODS)
    checks.one_of("source", source, ("image", "probabilities"))
    checks.one_of("centre", centre, ("cell", "column"))
    checks.one_of("normalize", normalize, (None, "mean"))
    checks.one_of("structure", structure, STRUCTURES)
    if components is not None:
        checks.count("components", components, 1, 50)
    if domains is not None:
        checks.count("domains", domains, 1, 50)
    if window is not None:
        checks.count("window", window, 3)


def _check_against_image(image, window, components, normalize) -> None:
    """One image, and a window and components that fit it, before any work."""
    nav = image.axes_manager.navigation_shape
    if len(nav) > 0:
        n = int(np.prod(nav))
        raise ValueError(
            f"image: analyze takes one image, this is a stack of {n} frames "
            f"(navigation shape {tuple(int(k) for k in nav)}); analyze one frame, "
            "analyze(image.inav[k]) (stemunmix analyze FILE --frame k), or run the "
            "steps, which take every frame: image.find_columns(), then "
            "image.local_descriptors(d, centre='column')"
        )
    h, w = (int(k) for k in image.axes_manager.signal_shape[::-1])
    if window is not None and window >= min(h, w):
        raise ValueError(
            f"window: {window} px does not fit in the image ({h} x {w} px); use "
            "about 1.2 column spacings, or leave window out (chosen from the data)"
        )
    _check_components(window, components, normalize)


# Fewer windows than this leave nothing to unmix or cluster.
MIN_WINDOWS = 20


def _check_enough(image, columns, classes) -> None:
    """Enough columns of the window class for an analysis, said in cells."""
    names = [n for n in columns.class_names if n != "background"]
    wanted = names if classes is None else [classes]
    wanted = [n for n in wanted if n in columns.class_names]
    n = int(np.isin(columns.labels, [columns.class_index(c) for c in wanted]).sum())
    if n >= MIN_WINDOWS:
        return
    h, w = (int(k) for k in image.axes_manager.signal_shape[::-1])
    raise ValueError(
        f"image: {h} x {w} px holds {n} {'/'.join(wanted)} columns ({len(columns)} "
        f"in all), too few cells to unmix (at least {MIN_WINDOWS} windows); give "
        "a larger field of view, or, if columns were missed, the column spacing: "
        "image.segment(spacing=<pixels>) before analyze"
    )


def _check_components(window, components, normalize) -> None:
    if window is None or components is None:
        return
    free = int(window) ** 2 - (1 if normalize == "mean" else 0)
    if components > free:
        raise ValueError(
            f"components: {components} is more than a {window} x {window} "
            f"window's {free} independent pixels; use at most {free}, a larger "
            "window, or leave components out (chosen from the data)"
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


def _centre_class(columns, classes, centre, log):
    """(classes, centre) of the windows: as given; the default B on columns
    without B (a crystal of one species, dumbbells, 2D) becomes their first
    column class, and where that is their only class the windows centre on
    the column (a cell needs another class around), said."""
    if classes != "B" or "B" in columns.class_names:
        return classes, centre
    names = [n for n in columns.class_names if n != "background"]
    if len(names) == 1:
        centre = "column"
    log(f"no B columns (classes {names}): windows centre on the {names[0]!r} {centre}")
    return names[0], centre


def _segment_and_find(
    image, store, progress, model=None, structure="auto", precision="float32"
):
    """The maps (for a lazy image computed once into ``store``/maps.zarr when
    given) and the columns, which the image then owns."""
    progress.start("segment")
    stored = {}
    if image._lazy and store is not None:
        Path(store).mkdir(parents=True, exist_ok=True)
        stored["maps"] = Path(store) / "maps.zarr"
    prob = image.segment(
        model,
        show_progressbar=False,
        store=stored.get("maps"),
        structure=structure,
        precision=precision,
    )
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


def _decompose(ld, method, components):
    """The method's learning on the windows ``ld``; returns what the domains
    are clustered on: a learning result's name, or (rvae) the latents to
    cluster, a signal on the sites (kept in ``ld.invariant_latents_``)."""
    if method == "rvae":
        latents = ld.invariant_latents(n_latent=components, random_state=0)
        ld.invariant_latents_ = latents
        return latents.isig[3:]  # the content latents, cos and sin of the angle
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
        return "bss"
    return "decomposition"


def _loadings(ld, source, components) -> np.ndarray:
    if not isinstance(source, str):  # a signal on the sites: its rows with a window
        values = np.asarray(source.data).reshape(-1, source.data.shape[-1])
        return values[np.isfinite(values).all(1)]
    return ld.per_column(source)[:, :components]


def _cluster(ld, source, components, domains, chosen, choices, log) -> int:
    """The Gaussian mixture (one shared covariance) on the method's loadings
    (``source``: a learning result's name, or a signal on the sites),
    in ``ld.learning_results``, and its test (``ld.domain_test``). A partition
    chosen from the data that is not significant becomes one domain (the
    test of the partition stays in ``ld.domain_test``); one the user asked
    for is kept, with a warning. Returns the number of domains."""

    def fit(k):
        by_name = isinstance(source, str)
        ld.cluster_analysis(
            source,
            number_of_components=components if by_name else None,
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
        checks.warn(message)
        log(message)
        return domains
    choices["domains"]["value"] = 1
    choices["domains"]["why"] = (
        f"no significant domain structure: the best "
        f"partition ({domains} clusters) is {test['why']}"
    )
    fit(1)
    ld.metadata.set_item("Signal.stemunmix.domain_test", test)
    return 1


def _physical(result: Analysis) -> None:
    """The physical descriptor (each window column's neighbour offsets on the
    median cell), clustered into as many domains, and its agreement with the
    learned domains (and with the truth, where there is one)."""

    from scipy.spatial import cKDTree
    from sklearn.metrics import adjusted_rand_score

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
