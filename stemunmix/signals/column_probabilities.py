"""ColumnProbabilities: per-class probability maps of the atomic columns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hyperspy._signals.lazy import LazySignal

from stemunmix.columns import Columns
from stemunmix.core import checks, dumbbells, engine, honeycomb
from stemunmix.core.find import REFINE, find_columns, unpack_fit
from stemunmix.core.indexing import index_columns
from stemunmix.core.lattice import LATTICES, checkerboard, on_lattice
from stemunmix.core.presence import (
    as_faint_as_strays,
    edge_band,
    faint_at_edge,
    off_lattice_at_edge,
    on_mask,
)
from stemunmix.core.segmentation import measure_spacing
from stemunmix.core.uncertainty import frame_covariance, record_arrays, warnings_of
from stemunmix.signals._base import StemunmixSignal2D, progress_bar

# The nearest-column distance over the spacing (the shortest translation) of
# each structure: A-B in a perovskite; a dumbbell's two columns (a / 4 over
# the fcc [110] centring, sqrt(3 / 8) a).
NEAREST = {
    "perovskite": 2**-0.5,
    "dumbbell": 0.25 / np.sqrt(3 / 8),
    "2D": 3**-0.5,  # a honeycomb's nearest columns
}
# Structures whose one column class find_columns splits into two
# sublattices: the split and the name of its record.
SPLITS = {
    "dumbbell": (dumbbells.classes, "dumbbells"),
    "2D": (honeycomb.classes, "honeycomb"),
}


class ColumnProbabilities(StemunmixSignal2D):
    """Per-class probability maps, signal_type ``"column_probabilities"``.

    The class is a navigation axis named ``class``; in the data array it sits
    right before the signal axes, ``(..., class, y, x)``, so for one image
    ``data[k]`` is the map of class ``class_names[k]``.
    """

    _signal_type = "column_probabilities"

    @property
    def class_names(self) -> list[str]:
        """Name of each class, in the order of the ``class`` axis."""
        names = self._get_state("class_names")
        if names is None:
            n = self.axes_manager["class"].size if self._has_class_axis() else 1
            return [f"class{i}" for i in range(n)]
        return [str(n) for n in names]

    @class_names.setter
    def class_names(self, names) -> None:
        names = [str(n) for n in names]
        if self._has_class_axis() and len(names) != self.axes_manager["class"].size:
            raise ValueError(
                f"class_names needs {self.axes_manager['class'].size} names, "
                f"got {len(names)}"
            )
        self._set_state("class_names", names)

    def _has_class_axis(self) -> bool:
        return any(ax.name == "class" for ax in self.axes_manager.navigation_axes)

    def find_columns(
        self,
        image=None,
        *,
        threshold: float = 0.5,
        min_distance: float | None = None,
        refine: str = "gaussian",
        show_progressbar: bool | None = None,
        lattice: str | None = None,
    ) -> Columns:
        """Locate the atomic columns of every class (all but ``background``).

        Per class, maxima of the probability map at least ``min_distance``
        apart, refined to probability-weighted centroids, then (``refine=
        "gaussian"``) by a batched 2D Gaussian fit of all columns at once on the
        raw image that accounts for neighbouring columns.

        Parameters
        ----------
        image : AtomicResolutionImage or ndarray, optional
            The raw image (same frames). Default: the one segment() linked in
            ``metadata.Signal.stemunmix.image``; with neither, the columns are
            centroids and a warning says so (the method used is recorded in
            ``metadata.Signal.stemunmix.find_columns.refine``).
        threshold : float
            Minimum class probability at a column.
        min_distance : float, optional
            Minimum separation of two columns in pixels; default half the A-B
            distance (the measured spacing / sqrt(2) / 2).
        refine : {"gaussian", "centroid"}
        lattice : {None, "checkerboard"}
            ``"checkerboard"``: the A and B columns alternate along every
            nearest-neighbour bond (a perovskite along [001]). Each connected
            patch of columns is two-coloured along its bonds and takes the
            A/B naming most of its columns agree with (weighted by score), so
            columns the network swapped (low dose, a layer where B is as bright
            as A) follow their patch. None (default): the network's classes.

        Returns
        -------
        Columns
            [x, y] pixels, labels into ``class_names``, the probability as
            score, ``nav_index`` for stacks. Also stored in ``self.columns``.
        """
        settings = FindSettings.parse(threshold, min_distance, refine, lattice)
        return self._find_columns(image, settings, show_progressbar)

    def _find_columns(self, image, settings, show_progressbar) -> Columns:
        """:meth:`find_columns` with its arguments parsed (``FindSettings``)."""

        threshold, min_distance = settings.threshold, settings.min_distance
        refine, lattice = settings.refine, settings.lattice
        names = self.class_names
        classes = [k for k, n in enumerate(names) if n != "background"]
        cations = _cation_pair(names, classes, lattice)
        frames_image, refine = self._raw_frames(image, refine)
        nav_shape = self.data.shape[:-3]
        distances = self._column_distances(list(cations or classes), min_distance)
        block = self._segment_block() if self._lazy else max(self.data.shape[-2:])
        where = self._presence() or {}
        masks = {f: w[:2] for f, w in where.items()}
        with progress_bar(show_progressbar, "find_columns") as bar:
            found = find_columns(self.data, frames_image, len(nav_shape), classes,
                                 threshold, refine, distances, block, bar, masks)  # fmt: skip
        split = SPLITS.get(self._structure())
        columns, noise, errors = _assemble(
            found, names, self.data.shape, lattice, cations, distances, where, split
        )
        settings = {"threshold": threshold, "refine": refine, "lattice": str(lattice),
                    "min_distance": "auto" if min_distance is None
                    else float(min_distance)}  # fmt: skip
        self._record_found(columns, settings, errors, noise)
        self.columns = columns
        return columns

    def _presence(self) -> dict | None:
        """{frame: (mask, bin, edge band)}: where segment() found the
        lattice (:mod:`stemunmix.core.presence`), or None (maps made
        elsewhere, or cropped or rebinned since: columns are searched
        everywhere)."""
        state = self._get_state("segment", {})
        masks, factor = state.get("presence"), state.get("presence_bin")
        shape = tuple(np.asarray(state.get("presence_shape", ())).tolist())
        if masks is None or factor is None or shape != self.data.shape[-2:]:
            return None
        masks = np.asarray(masks, bool)
        factor = np.asarray(factor, int).reshape(-1)
        spacing = state.get("presence_spacing", state.get("measured_spacing"))
        spacing = np.asarray(spacing, float).reshape(-1)
        out = {}
        for k, f in enumerate(np.ndindex(masks.shape[:-2])):
            b = int(factor[min(k, len(factor) - 1)])
            s = float(spacing[min(k, len(spacing) - 1)]) / b
            out[f] = (masks[f], b, edge_band(masks[f], s))
        return out

    def _record_found(self, columns, settings: dict, errors, noise) -> None:
        """find_columns' settings and error model into metadata, and what the
        user must hear: no columns, columns off the lattice, error-model
        warnings."""
        names, nav_shape = columns.class_names, self.data.shape[:-3]
        if len(columns) == 0:
            checks.warn(
                "no columns found: no class probability reaches the threshold "
                f"{settings['threshold']}; check the image and the model (or lower "
                "threshold)",
            )
        self._check_on_lattice(columns, nav_shape)
        self.metadata.set_item(
            "Signal.stemunmix.find_columns",
            settings
            | record_arrays(errors, names, nav_shape, noise)
            | _split_record(errors, nav_shape),
        )
        for message in warnings_of(errors, names):
            checks.warn(message)

    def scree_by_window(
        self,
        d_values,
        n_components: int = 10,
        *,
        classes=None,
        source: str = "probabilities",
        normalize=None,
        **kwargs,
    ):
        """Cumulative explained variance of the first ``n_components`` PCA
        components of the local descriptors, for each window size in
        ``d_values`` (pixels): the study's Fig. 1a. Returns a Signal1D over d.
        ``normalize="mean"``: each window less its own mean first; other
        keywords go to :meth:`local_descriptors` (e.g. ``centre="cell"``).
        """
        from stemunmix.signals._descriptors import scree_by_window

        return scree_by_window(
            lambda d: self.local_descriptors(
                d, classes=classes, source=source, **kwargs
            ),
            d_values,
            n_components,
            normalize,
        )

    def _check_on_lattice(self, columns, nav_shape, minimum: float = 0.7) -> None:
        """Warn where a class's columns do not sit on the lattice segment()
        measured (:func:`stemunmix.core.lattice.on_lattice`): real crystals
        measure 0.99-1.0 (0.85 for the B columns of the low-dose SrTiO3)."""

        vectors = self._get_state("segment", {}).get("lattice_vectors")
        if vectors is None:
            return
        vectors = np.asarray(vectors, float).reshape(nav_shape + (2, 2))
        for idx in np.ndindex(nav_shape):
            if not np.isfinite(vectors[idx]).all():
                continue
            frame = columns.frame(idx[::-1]) if nav_shape else columns
            for k in np.unique(frame.labels):
                xy = frame.xy[frame.labels == k]
                share = on_lattice(xy, vectors[idx]) if len(xy) >= 12 else 1.0
                if share < minimum:
                    checks.warn(
                        f"find_columns: only {share:.0%} of the "
                        f"{columns.class_names[k]} columns of frame {idx} have "
                        "another one lattice translation away: they may not be "
                        "atomic columns of a crystal; check the image (and the "
                        "threshold)",
                    )

    def _column_distances(self, classes, min_distance) -> dict:
        """{frame: (min_distance, A-B distance)} pixels: from ``min_distance``
        when given, else from the column spacing segment() recorded (or
        measured on the column maps): A-B = spacing / sqrt(2), min_distance
        half of it."""

        nav_shape = self.data.shape[:-3]
        spacing = self._get_state("segment", {}).get("measured_spacing")
        out = {}
        for n, idx in enumerate(np.ndindex(nav_shape)):
            if min_distance is not None:
                out[idx] = (float(min_distance), 2.0 * float(min_distance))
                continue
            if spacing is not None and np.isfinite(np.ravel(spacing)[n]):
                s = float(np.ravel(spacing)[n])
            else:
                s = measure_spacing(np.asarray(self.data[idx][classes].sum(0)))
            d_ab = s * NEAREST.get(self._structure(), 2**-0.5)
            out[idx] = (max(1.0, 0.5 * d_ab), d_ab)
        return out

    def _structure(self) -> str:
        """The structure segment() used (perovskite for maps made before
        structures were recorded)."""
        return str(self._get_state("segment", {}).get("structure_used", "perovskite"))

    def _segment_block(self) -> int:
        """Block side (pixels) the maps were computed in; column finding uses it."""
        state = self._get_state("segment", {})
        return state.get("block", state.get("tile", 1024))

    @property
    def contrast(self) -> str:
        """The columns' contrast these maps were made for, as segment()
        measured or was told it: ``"bright"`` or ``"dark"`` (ABF, BF; the
        raw image is negated for the column fit)."""
        return self._get_state("segment", {}).get("contrast_used", "bright")

    @property
    def image(self):
        """The raw image these maps were segmented from (a plain signal linked
        in ``metadata.Signal.stemunmix.image``, saved with the maps), or None."""
        return self._get_linked("image")

    def _raw_frames(self, image, refine):
        """(raw image data (nav..., y, x) or None, the refinement it allows):
        ``image`` or the linked one, negated where segment() found dark
        columns (the fit wants peaks). ``refine="gaussian"`` without either
        falls back to centroids with a warning that says how to pass it."""
        if image is None:
            image = self.image
        if image is None:
            if refine == "gaussian":
                checks.warn(
                    "find_columns: refine='gaussian' needs the raw image, and these "
                    "maps have none linked: the columns are probability centroids. "
                    "Pass image=<the AtomicResolutionImage>, or refine='centroid' "
                    "to choose it",
                )
            return None, "centroid"
        data = image.data if hasattr(image, "axes_manager") else np.asarray(image)
        want = self.data.shape[:-3] + self.data.shape[-2:]
        if tuple(data.shape) != want:
            raise ValueError(
                f"image has shape {tuple(data.shape)}, but these maps need {want} "
                "(the frames they were segmented from)"
            )
        if self.contrast == "dark":
            # float first: negating unsigned counts would wrap around
            data = -(
                data.astype(np.float32)
                if engine.is_lazy(data)
                else np.asarray(data, np.float32)
            )
        return data, refine

    def local_descriptors(
        self,
        d,
        columns: Columns | None = None,
        *,
        classes=None,
        source: str = "probabilities",
        channels=None,
        edge: str = "drop",
        image=None,
        show_progressbar: bool | None = None,
        lazy_output: bool | None = None,
        navigation: str = "columns",
        centre: str = "column",
        normalize: str | None = None,
    ):
        """A d x d window centred on every column (LocalDescriptors).

        Parameters
        ----------
        d : int, float or str
            Window size. The rule: an ``int`` is pixels; a ``float`` is in the
            axes' units (calibrated axes only); a string carries its unit
            (``"0.5 nm"``, ``"24 px"``). How it was read is recorded in
            ``metadata.Signal.stemunmix.local_descriptors.d_read``. The column
            sits at window pixel ((d - 1) / 2, (d - 1) / 2): the central pixel
            for odd d, the meeting point of the four central pixels for even d.
        columns : Columns, optional
            Default ``self.columns``, found with ``find_columns()`` if none.
        classes : str or list, optional
            Centre windows only on these classes (e.g. ``"B"``); default all.
        source : {"probabilities", "image"}
            Cut windows from the probability maps or from the raw image.
        channels : list of str, optional
            Probability classes tiled side by side; default every column class.
        edge : {"drop", "nearest"}
            ``"drop"`` leaves out (and reports) columns whose window crosses
            the edge; ``"nearest"`` pads with the edge values.
        image : AtomicResolutionImage, optional
            The raw image, for ``source="image"`` or to find columns.
        lazy_output : bool, optional
            Lazy windows, gathered by chunks of columns; default follows self.
        navigation : {"columns", "lattice"}
            ``"columns"``: one navigation axis, the columns. ``"lattice"``:
            navigation axes ``i`` and ``j``, the lattice sites of the columns
            (:attr:`Columns.ij`; windows of one class, e.g. ``classes="B"``,
            one image): HyperSpy's own ``plot_decomposition_results()``,
            ``get_decomposition_loadings()`` and ``plot_cluster_results()``
            then show maps as images. Sites without a window are zeros, masked
            (``navigation_mask``) in ``decomposition`` and
            ``cluster_analysis``; their loadings are NaN.
        centre : {"column", "cell"}
            ``"column"``: each window centred on its column. ``"cell"``: on
            the centre of the column's cell, the centroid of its neighbours of
            the other class on the median cell (for B windows, the four A
            corners in [001]), so a window shows its column's displacement from
            the cell; one class and one image. Columns without a full cell are
            left out (recorded in the metadata's ``left_out``).
        normalize : {None, "mean"}
            ``"mean"``: each window less its own mean (over its pixels and
            channels), which takes intensity and background out; recorded in
            the metadata.
        """
        import stemunmix.signals._descriptors as _descriptors

        names = self.class_names
        windows = _descriptors.check_arguments(
            d, edge, source, self.axes_manager.signal_axes, self.data.shape,
            [n for n in names if n != "background"], classes, channels, names,
            navigation, self.data.ndim > 3, centre, normalize,
        )  # fmt: skip
        return self._windows(windows, columns, image, show_progressbar, lazy_output)

    def _windows(self, windows, columns=None, image=None, show_progressbar=None,
                 lazy_output=None):  # fmt: skip
        """:meth:`local_descriptors` on arguments parsed once (a
        ``_descriptors.Windows``)."""
        import stemunmix.signals._descriptors as _descriptors

        names = self.class_names
        if columns is None:
            columns = self.columns
        if columns is None:
            columns = self.find_columns(image=image, show_progressbar=show_progressbar)
        if windows.source == "probabilities":
            channels = list(windows.channels or [n for n in names if n != "background"])
            frames = self.data[..., [names.index(c) for c in channels], :, :]
        else:
            channels = ["image"]
            raw, _ = self._raw_frames(image, "centroid")
            if raw is None:
                raise ValueError(
                    "source='image' needs the raw image: pass image=<the "
                    "AtomicResolutionImage> (these maps have none linked)"
                )
            frames = raw[..., None, :, :]
        lazy = self._lazy if lazy_output is None else lazy_output
        title = f"Local descriptors of {self.metadata.General.title}"
        with progress_bar(show_progressbar, "local_descriptors") as bar:
            return _descriptors.build(frames, channels, columns, windows,
                                      self.axes_manager.signal_axes, title, lazy,
                                      {"source": windows.source}, progress=bar)  # fmt: skip


def _cation_pair(names, classes, lattice=None):
    """The class indices of A and B (the two column classes when not so
    named), which alternate on a checkerboard; None if there are neither,
    which ``lattice="checkerboard"`` refuses."""
    if "A" in names and "B" in names:
        return names.index("A"), names.index("B")
    if len(classes) == 2:
        return tuple(classes)
    if lattice == "checkerboard":
        raise ValueError(
            "lattice='checkerboard' needs the column classes A and B (or "
            f"exactly two), these maps have {[names[k] for k in classes]}; "
            "use lattice=None"
        )
    return None


def _split_record(errors, nav_shape) -> dict:
    """{"dumbbells" or "honeycomb": the split's record (t, significant,
    ratio, ...) per frame (arrays of the navigation shape)} where the
    columns were split into two sublattices; else {}."""
    for name in ("dumbbells", "honeycomb"):
        recs = {idx: e[name] for idx, e in errors.items() if name in e}
        if not recs:
            continue
        out = {}
        first = next(iter(recs.values()))
        for k in [k for k, v in first.items() if np.isscalar(v)]:  # not per grain
            a = np.zeros(nav_shape, float if k in ("t", "ratio") else int)
            for idx, r in recs.items():
                a[idx] = r[k]
            out[k] = a if nav_shape else a.item()
        return {name: out}
    return {}


def _assemble(found, names, shape, lattice, cations, distances, where=None, split=None):
    """Columns of every frame in one container, with their fitted quantities,
    position covariances (:func:`stemunmix.core.uncertainty.frame_covariance`)
    and lattice sites, named on the checkerboard when asked; those the raw
    image does not show on the edge of where the lattice is (``where``
    {frame: (mask, bin, edge band)}) left out. Also returns each frame's
    noise model {frame: (gain, var0)} and error-model record {frame: dict}.
    ``split``, optional: (function, record name) that splits the column class
    into two sublattices: the two ends of the dumbbells
    (:func:`stemunmix.core.dumbbells.classes`) or of a honeycomb
    (:func:`stemunmix.core.honeycomb.classes`), ``column 2`` the brighter
    where they differ, recorded under the record name in each
    frame's record."""
    where = where or {}
    if split is not None:
        names = ["column 1", "column 2", *[n for n in names[1:]]]
    nav_shape = shape[:-3]
    reference = (
        names.index("A")
        if "A" in names
        else [k for k, n in enumerate(names) if n != "background"][0]
    )
    parts, noise, errors, vectors = [], {}, {}, []
    for idx in np.ndindex(nav_shape):
        frame = (lattice, cations, distances[idx][1], where.get(idx), split)
        arrays, quantities, vec, noise[idx], record = _frame_columns(
            found[idx], *frame, reference
        )
        xy, labels, scores, cov, ij = arrays
        if record is not None:
            errors[idx] = record
        vectors.append(vec)
        lines = (record or {}).get("lines", np.zeros((2, 2)))
        nav = np.tile(np.array(idx[::-1], int), (len(xy), 1))
        lines = np.broadcast_to(lines, (len(xy), 2, 2))
        parts.append((xy, labels, scores, nav, cov, ij, lines, quantities))
    return _joined(parts, names, vectors, nav_shape), noise, errors


def _joined(parts, names, vectors, nav_shape) -> Columns:
    """One container of the frames' columns (``parts``: per frame xy,
    labels, scores, navigation index, covariance, sites, line covariance,
    quantities, and its lattice ``vectors``)."""
    cat = lambda i: np.concatenate([p[i] for p in parts])  # noqa: E731
    quantities = {k: np.concatenate([p[7][k] for p in parts]) for k in parts[0][7]}
    single = not nav_shape
    frames = np.array([f[::-1] for f in np.ndindex(nav_shape)], int)
    return Columns(
        cat(0),
        cat(1),
        names,
        cat(2),
        None if single else cat(3),
        None,
        quantities,
        cat(5),
        vectors[0] if single else np.array(vectors),
        None if single else frames,
        covariance=cat(4),
        line_covariance=cat(6),
    )


def _frame_columns(found, lattice, cations, ab_distance, where, split, reference):
    """One frame's columns for :func:`_assemble`: ((xy, labels, scores,
    covariance, sites), quantities, lattice vectors, noise model, error-model
    record or None), from its ``found`` (xy, labels, scores, packed fits,
    middle) of :func:`stemunmix.core.find.find_columns`. The edge rules and
    the lattice judge the weighted fit; the columns refitted with the
    support's texture then take that fit's positions and covariances
    (:func:`_refitted`)."""
    xy, labels, scores, fits, middle = found
    if lattice == "checkerboard":
        labels = checkerboard(xy, labels, scores, ab_distance, cations)
    quantities, cov, noise, refit, refit_cov = unpack_fit(fits)
    split_record = None
    if split is not None:
        labels, split_record = split[0](xy, quantities["height"])
    arrays = (xy, labels, scores, cov, refit, refit_cov)
    arrays, quantities, vec = _indexed(arrays, quantities, noise, where, reference)
    xy, labels, scores, cov, refit, refit_cov, ij = arrays
    xy, cov, textured = _refitted(xy, cov, refit, refit_cov)
    record = None
    if middle["crop"] is not None and len(xy):
        cov, record = frame_covariance(
            middle, xy, labels, quantities, cov, noise, ij, vec, reference, textured
        )
    if split_record is not None:
        record = {**(record or {}), split[1]: split_record}
    return (xy, labels, scores, cov, ij), quantities, vec, noise, record


def _refitted(xy, cov, refit, refit_cov) -> tuple:
    """(xy, covariance, textured (N,) bool): the columns refitted with the
    support's texture (:func:`stemunmix.core.find.unpack_fit`'s ``refit``
    [x, y, ...] and ``refit_cov``) take that fit's position and covariance.
    Their heights, widths and backgrounds stay the weighted fit's: whether
    the raw image shows a column is judged on that fit, as on vacuum."""
    textured = np.isfinite(refit[:, :2]).all(1) & np.isfinite(refit_cov).all((1, 2))
    if not textured.any():
        return xy, cov, textured
    xy, cov = xy.copy(), cov.copy()
    xy[textured], cov[textured] = refit[textured, :2], refit_cov[textured]
    return xy, cov, textured


def _indexed(arrays, quantities, noise, where, reference):
    """One frame's columns (``arrays``: xy, labels, scores, covariance, and
    their ``quantities``) with their lattice sites appended to the arrays,
    and the lattice vectors. On the edge of where the lattice is (``where``:
    mask, bin, edge band; None: no mask), the columns the raw image does not
    show, and those the fit carried off the mask, are left out before
    indexing (an outer one would be an inner column of the lattice rule),
    and those off the lattice the inner columns continue after."""

    def take(keep, arrays, quantities):
        return [a[keep] for a in arrays], {k: v[keep] for k, v in quantities.items()}

    if where is not None:
        faint = faint_at_edge(arrays[0], quantities, noise, where[2], where[1])
        # searched on the mask, carried off it by the fit: beside the crystal
        # (and no inner column for the lattice rule below to judge by)
        faint |= ~on_mask(arrays[0], where[0], where[1])
        arrays, quantities = take(~faint, arrays, quantities)
    xy, labels = arrays[0], arrays[1]
    ij, vec = _index_or_none(xy, labels, reference)
    arrays = [*arrays, ij]
    if where is not None:
        on = on_mask(xy, where[2], where[1])
        off, named = off_lattice_at_edge(xy, labels, on, vec, quantities["height"])
        if (named != labels).any():  # edge columns on another class's lattice
            arrays[1] = named
            arrays[-1], vec = _index_or_none(xy, named, reference)
        off |= as_faint_as_strays(quantities["height"], arrays[1], on, off)
        arrays, quantities = take(~off, arrays, quantities)
    return arrays, quantities, vec


def _index_or_none(xy, labels, reference):
    """(lattice sites (N, 2), vectors (2, 2)) of the columns; -1 and NaN
    where no lattice is indexed."""
    ij, vec = index_columns(xy, labels, reference)
    if ij is None:
        return np.full((len(xy), 2), -1, int), np.full((2, 2), np.nan)
    return ij, vec


@dataclass(frozen=True)
class FindSettings:
    """``find_columns``' cheap arguments, checked once, before any work."""

    threshold: float
    min_distance: float | None
    refine: str
    lattice: str | None

    @classmethod
    def parse(cls, threshold, min_distance, refine, lattice) -> FindSettings:

        checks.one_of("refine", refine, REFINE)
        checks.one_of("lattice", lattice, LATTICES)
        threshold = checks.real("threshold", threshold, 0, 1, low_open=True)
        if threshold == 1:
            raise ValueError("threshold must be a probability in (0, 1), got 1")
        if min_distance is not None:
            min_distance = checks.real("min_distance", min_distance, 1)
        return cls(threshold, min_distance, refine, lattice)


class LazyColumnProbabilities(LazySignal, ColumnProbabilities):
    """Lazy twin of :class:`ColumnProbabilities`."""
