"""AtomicResolutionImage: a HAADF/ADF image (or a stack) of atomic columns."""

from __future__ import annotations

import numpy as np
from hyperspy._signals.lazy import LazySignal

from stemunmix.core import checks, engine
from stemunmix.core import segmentation as seg
from stemunmix.core.segmentation import square_pixels
from stemunmix.signals._base import StemunmixSignal2D, check_image_axes, progress_bar


class AtomicResolutionImage(StemunmixSignal2D):
    """An atomically resolved STEM image, signal_type ``"atomic_resolution"``.

    Any navigation shape; signal axes are the image (x, y), calibrated from the
    file. Columns found on it are kept in ``.columns`` ([x, y] pixels).
    """

    _signal_type = "atomic_resolution"

    def plot(self, *args, columns: bool = True, **kwargs):
        """HyperSpy's ``plot``, with this image's columns (when it has them,
        one image) drawn as HyperSpy markers, one colour per class
        (``columns=False``: the image alone)."""
        super().plot(*args, **kwargs)
        found = self.columns if columns else None
        if (
            found is not None
            and len(found)
            and self.axes_manager.navigation_dimension == 0
        ):
            ax_x, ax_y = self.axes_manager.signal_axes
            self.add_marker(
                found.as_markers(
                    (ax_x.scale, ax_y.scale), (ax_x.offset, ax_y.offset), size=6
                ),
                permanent=False,
            )

    def segment(
        self,
        model=None,
        scale="auto",
        *,
        batch_size: int | None = None,
        device=None,
        tile: int = 1024,
        show_progressbar: bool | None = None,
        lazy_output: bool | None = None,
        lattice_prior: float = 0.2,
        spacing: float | None = None,
        contrast: str = "auto",
        store=None,
        structure: str = "auto",
        precision: str = "float32",
    ):
        """Per-class probability maps of the atomic columns.

        Each frame is normalised (1st/99th percentiles to 0/1), resampled so its
        columns sit at the model's training spacing, run through the network in
        overlapping tiles (a halo of half the receptive field on every side, so
        the result does not depend on the tiling), and mapped back onto the
        frame's own pixel grid. Then the lattice helps name the columns
        (``lattice_prior``).

        Parameters
        ----------
        model : str, path or torch.nn.Module, optional
            A model from :func:`stemunmix.load_model`. Default: the bundled
            ``"default"`` model (A, B, background; HAADF/ADF) for bright
            columns, the bundled ``"oxygen"`` model (A, B, O, background) for
            dark ones. Pass ``model="oxygen"`` for iDPC, whose columns are
            bright but whose O columns show.
        scale : "auto" or float
            ``"auto"`` measures the column spacing from the autocorrelation of
            each frame; a number resamples by that factor (1 = none, 2 doubles
            the pixels per column).
        batch_size : int, optional
            Tiles per network call (default 1 on the CPU, 4 on CUDA).
        device : str, optional
            ``"cpu"`` or ``"cuda"``; default CUDA when present.
        tile : int
            Size of the network's tiles, in its own (resampled) pixels, before
            the halo; bounds the memory used. The image is cut into blocks of
            about ``tile / factor`` of its pixels (one task each when lazy; the
            largest factor of a stack sets them), each run in tiles of
            ``tile``. Eager and lazy runs agree exactly.
        show_progressbar, lazy_output
            As in HyperSpy. Lazy input gives lazy output by default.
        lattice_prior : float
            How much the columns one lattice translation away name a column
            (:func:`stemunmix.core.lattice.relabel`): at every pixel, the
            log-odds between column classes gain this weight times those at the
            eight translations of the first shell of the lattice of the first
            column class (measured per frame on the central crop of its map),
            each clipped to odds of about 150:1. Where the network hesitates
            (a layer in which B is as bright as A), the lattice around names
            the column; a confident network is not overruled. Only the share
            between column classes changes: the background map, and so where
            columns are found, is the network's own. 0 turns it off.
        spacing : float, optional
            The column spacing in pixels, instead of measuring it.
        contrast : {"auto", "bright", "dark"}
            ``"bright"``: bright columns on a dark background (HAADF, ADF,
            iDPC). ``"dark"``: dark columns on a bright one (ABF, BF); the
            network sees each frame inverted, and ``find_columns`` fits the
            inverted image. ``"auto"`` (default) tells them apart on each
            frame's central crop
            (:func:`stemunmix.core.segmentation.contrast_asymmetry`). The one
            used is recorded as ``contrast_used`` in
            ``metadata.Signal.stemunmix.segment``.
        store : path, optional
            Lazy output: the zarr folder the maps are computed into once
            (default a temporary one).
        structure : {"auto", "perovskite", "one species", "dumbbell", "2D"}
            The kind of lattice, which decides the classes: the model's, and
            a model lists the structures it was trained on in its card
            (``structures``). Without ``model``, the bundled model for the
            contrast and the structure: ``"perovskite"`` (classes A, B and
            O where the model has it) or ``"one species"`` (a metal, one
            class ``column``; the ``one_species`` model, trained on fcc, bcc
            and hcp projections, particles on vacuum or an amorphous film,
            twins), ``"dumbbell"`` ([110] Si, GaAs: the same model, and
            ``find_columns`` splits the columns into the dumbbells' two
            ends, ``column 2`` the brighter where they differ) or ``"2D"``
            (MoS2 seen flat: the ``two_d`` model, and the honeycomb's two
            sublattices). ``"auto"`` (default): with a ``model``, its first
            structure; without, on bright columns, the perovskite network
            runs and its B columns are checked on the first frame's central
            crop, where the lattice-presence mask shows the crystal
            (:mod:`stemunmix.core.structure`): where they lie in the
            valleys between the image's columns, even once its A columns
            are taken away (a metal: B put between its atoms), are as
            bright as the A columns, do not alternate in height with them,
            or the bonds are hexagonal (MoS2), the one-species network runs
            instead and its columns name the structure (one species,
            dumbbells or 2D); where half of them are no peaks, that network
            looks too, and columns in pairs make dumbbells. Anything else
            keeps the perovskites: particles on a film are not told apart
            from them (pass ``structure=``). A
            structure no model here knows is refused, with those they know.
            Recorded as ``structure`` (asked), ``structure_used`` and, for
            ``"auto"``, the figures that decided (``structure_evidence``) in
            ``metadata.Signal.stemunmix.segment``.
        precision : {"float32", "bfloat16"}
            The network's arithmetic. ``"bfloat16"`` runs it about twice as
            fast on a CPU with native bfloat16 (AVX512-BF16 or AMX; refused
            on one without), its probabilities within about 0.01 of
            float32's (softmax in float32); columns fitted on real images
            from them can move by up to a sigma or two
            (``benchmarks/precision_columns.py``). Recorded as
            ``precision``.

        Returns
        -------
        ColumnProbabilities
            Data ``(..., class, y, x)``; calibration of this image; model and
            parameters in ``metadata.Signal.stemunmix.segment``; the raw image
            linked in ``metadata.Signal.stemunmix.image``. The image keeps them
            (:attr:`probabilities`): its ``find_columns``,
            ``local_descriptors`` and ``scree_by_window`` reuse them.
        """
        check_image_axes(self, "segment")
        knobs = dict(scale=scale, batch_size=batch_size, device=device, tile=tile,
                     lazy_output=lazy_output, lattice_prior=lattice_prior,
                     spacing=spacing, contrast=contrast, store=store,
                     precision=precision)  # fmt: skip
        model, settings, (maps, plans, block, vectors), evidence = _segment_maps(
            self, model, structure, knobs, show_progressbar
        )
        record = _segment_record(model, plans, block, settings, (contrast, structure))
        record |= _data_record(self, plans)
        if evidence is not None:
            record["structure_evidence"] = evidence
        if vectors is not None:
            record["lattice_vectors"] = vectors
        if not settings.lazy and engine.is_lazy(maps):
            maps = maps.compute()
        prob = _probabilities(self, maps, model.class_names, record)
        self._set_linked("probabilities", prob)  # the image owns its maps
        return prob

    @property
    def probabilities(self):
        """The ColumnProbabilities :meth:`segment` last made of this image (kept
        in its metadata, saved with it), or None where there are none or they
        no longer fit the image: another shape or calibration (a crop, a
        rebin), or data changed since (an in-place edit of an in-memory
        image, told by a checksum of its data; a lazy image's data are not
        read for this)."""
        prob = self._owned_maps()
        return prob if prob is not None and self._maps_fit(prob) else None

    def _owned_maps(self):
        prob = self._get_linked("probabilities")
        if prob is None or not hasattr(prob, "class_names"):
            return None
        if prob.image is None:  # saved by save() without it: link this image
            prob._set_linked("image", _raw_link(self))
        return prob

    def save(self, *args, **kwargs):
        """HyperSpy's ``save``. The maps this image owns are saved with it
        without a second copy of its data: their link to the raw image is
        left out of the file and made again, to this image, on load."""
        prob = self._get_linked("probabilities")
        raw = prob._get_state("image") if hasattr(prob, "class_names") else None
        if raw is not None:
            prob.metadata.Signal.stemunmix.__delattr__("image")
        try:
            return super().save(*args, **kwargs)
        finally:
            if raw is not None:
                prob._set_state("image", raw)

    def _maps_fit(self, prob) -> bool:
        fits = prob.data.shape[:-3] + prob.data.shape[-2:] == self.data.shape
        same = [
            (a.scale, a.offset) == (b.scale, b.offset)
            for a, b in zip(
                prob.axes_manager.signal_axes,
                self.axes_manager.signal_axes,
                strict=True,
            )
        ]
        if not (fits and all(same)):
            return False
        made_of = prob._get_state("segment", {}).get("data", "lazy")
        now = engine.fingerprint(self.data) if made_of != "lazy" else None
        return now is None or now == made_of

    def _own_columns(self):
        """The columns of this image's maps; after a crop or a rebin of the
        image (maps of another grid) moved onto its grid, those outside left
        out; None where the data changed in place (the maps are stale)."""
        prob = self._owned_maps()
        if prob is None or prob.columns is None:
            return None
        if self._maps_fit(prob):
            return prob.columns
        same_grid = prob.data.shape[-2:] == self.data.shape[-2:] and np.array_equal(
            prob._columns_frame()[1], self._columns_frame()[1]
        )
        if same_grid:  # same shape and scale: the data were edited, not cropped
            return None
        return self._on_grid(prob.columns, *prob._columns_frame())

    def _maps(
        self,
        model=None,
        scale=None,
        spacing=None,
        contrast=None,
        show_progressbar=None,
        structure=None,
    ):
        """The maps this image owns where they fit every argument given (None:
        not asked, so any), else new ones from :meth:`segment` (None: its
        default). The arguments are checked first either way."""
        checked, spacing = _check_scale(
            "auto" if scale is None else scale, spacing, self.data.shape
        )
        if contrast is not None:
            _check_contrast(contrast)
        if structure is not None:
            checks.one_of("structure", structure, STRUCTURES)
        prob = self.probabilities
        asked = (scale, spacing, contrast, structure)
        if prob is not None and _made_with(prob, model, *asked):
            return prob
        return self.segment(
            model=model,
            scale=checked,
            spacing=spacing,
            contrast=contrast or "auto",
            show_progressbar=show_progressbar,
            structure=structure or "auto",
        )

    def _class_names(self, model=None, contrast=None, structure=None) -> list:
        """The classes of the maps :meth:`_maps` would give, without making
        them: the owned maps', the model's, or (read from its card) the
        bundled model that segment() picks for the image's contrast."""
        from stemunmix.nn import inference
        from stemunmix.nn.model_io import bundled_card, check_model, model_for_contrast

        prob = self.probabilities
        if prob is not None and _made_with(
            prob, model, None, None, contrast, structure
        ):
            return list(prob.class_names)
        if model is not None:
            return list(check_model(model).class_names)
        used = contrast if contrast in ("bright", "dark") else None
        if used is None:
            used = inference.image_contrast(
                self.data, self.axes_manager.navigation_dimension, "auto", None
            )
        name = model_for_contrast(used, structure or "auto")
        return list(bundled_card(name)["class_names"])

    def square_pixels(self):
        """This image resampled onto square pixels: the coarser signal axis is
        linearly interpolated onto the finer pixel size (same first pixel
        centre, same field of view). Non-square pixels (rows binned, a fast
        scan at another sampling) must go through this before :meth:`segment`.
        Returns a new image (lazy for a lazy one); columns are not carried over.
        """

        check_image_axes(self, "square_pixels", square=False)
        axes = self.axes_manager.signal_axes
        scale = (abs(float(axes[0].scale)), abs(float(axes[1].scale)))
        data, fine = square_pixels(self.data, scale)
        out = self._deepcopy_with_new_data(data)
        out.columns = None
        for ax in out.axes_manager.signal_axes:
            ax.scale = float(np.sign(ax.scale) * fine)
        out.get_dimensions_from_data()
        out.metadata.set_item(
            "Signal.stemunmix.square_pixels",
            {"from_scale": list(scale), "to_scale": fine},
        )
        return out

    def scree_by_window(
        self,
        d_values,
        n_components: int = 10,
        *,
        classes=None,
        source: str = "probabilities",
        model=None,
        **kwargs,
    ):
        """Cumulative explained variance of the first ``n_components`` PCA
        components of the local descriptors, for each window size in
        ``d_values`` (pixels): the study's Fig. 1a. Returns a Signal1D over d.
        The maps and columns are this image's (made once if it has none).
        """
        prob = self._maps(model)
        columns = self.columns if self.columns is not None else self.find_columns(model)
        return prob.scree_by_window(
            d_values,
            n_components,
            classes=classes,
            source=source,
            columns=columns,
            **kwargs,
        )

    def find_columns(
        self,
        model=None,
        scale=None,
        *,
        threshold: float = 0.5,
        min_distance: float | None = None,
        refine: str = "gaussian",
        show_progressbar: bool | None = None,
        lattice: str | None = None,
        spacing: float | None = None,
        contrast: str | None = None,
        structure: str | None = None,
    ):
        """Locate the columns on this image's maps (made by :meth:`segment` if
        it has none that fit the arguments given): see
        :meth:`ColumnProbabilities.find_columns`; ``model``, ``scale``,
        ``spacing``, ``contrast`` and ``structure`` as in :meth:`segment`,
        None meaning "as the maps this image has" (segment's default where it
        has none).
        Returns the Columns, which ``self.columns`` then gives (they are kept
        with the maps this image owns).
        """
        from stemunmix.signals.column_probabilities import FindSettings

        settings = FindSettings.parse(threshold, min_distance, refine, lattice)
        asked = {"spacing": spacing, "contrast": contrast, "structure": structure}
        prob = self._maps(model, scale, show_progressbar=show_progressbar, **asked)
        columns = prob._find_columns(None, settings, show_progressbar)
        self.columns = None  # from now on the image's columns are its maps'
        self._set_state("find_columns", prob._get_state("find_columns"))
        return columns

    def displacement_descriptors(
        self, columns=None, centre="B", around="A", reach: float | None = None
    ):
        """The physical descriptor beside the learned windows: for every
        ``centre`` column, the offsets (pixels, [x, y]) of its ``around``
        neighbours from where the median cell puts them, as LocalDescriptors
        of shape (2, K) (axes ``xy`` and ``neighbour``), so
        ``decomposition``, ``cluster_analysis``, the stemunmix learners and
        ``get_domain_map`` take it like windows. For B centres and A around,
        minus the mean of the K offsets is the B column's polar displacement
        from the centre of its cell.

        ``columns``: default this image's (:meth:`find_columns`); ``reach``:
        the neighbour distance in pixels (default 1.3 times the median
        nearest distance). A centre with a neighbour missing gets none.
        """
        import stemunmix.signals._descriptors as _descriptors

        check_image_axes(self, "displacement_descriptors")
        columns = columns if columns is not None else self.columns
        if columns is None:
            columns = self.find_columns()
        return _descriptors.displacements(
            columns,
            centre,
            around,
            reach,
            self.axes_manager.signal_axes,
            self.data.shape[-2:],
            f"Neighbour displacements of {self.metadata.General.title}",
        )

    def local_descriptors(
        self,
        d,
        columns=None,
        *,
        classes=None,
        source: str = "probabilities",
        channels=None,
        edge: str = "drop",
        model=None,
        show_progressbar: bool | None = None,
        lazy_output: bool | None = None,
        spacing: float | None = None,
        navigation: str = "columns",
        centre: str = "column",
        contrast: str | None = None,
        normalize: str | None = None,
        structure: str | None = None,
    ):
        """A d x d window centred on every column (LocalDescriptors), cut from
        this image's maps (``source="probabilities"``) or from the image itself
        (``"image"``). The maps and columns are this image's own (segmented and
        found once if it has none). Lazy in, lazy out. See
        :meth:`ColumnProbabilities.local_descriptors` for the arguments;
        ``model``, ``spacing``, ``contrast`` and ``structure`` as in
        :meth:`find_columns`.
        """
        import stemunmix.signals._descriptors as _descriptors

        check_image_axes(self, "local_descriptors")
        if contrast is not None:
            _check_contrast(contrast)
        names = self._class_names(model, contrast, structure)  # no maps made
        windows = _descriptors.check_arguments(
            d, edge, source, self.axes_manager.signal_axes, self.data.shape,
            [n for n in names if n != "background"], classes, channels, names,
            navigation, self.axes_manager.navigation_dimension > 0, centre,
            normalize,
        )  # fmt: skip
        lazy = self._lazy if lazy_output is None else lazy_output
        columns = columns if columns is not None else self.columns
        if source == "image" and columns is not None:  # no maps needed
            title = f"Local descriptors of {self.metadata.General.title}"
            return _descriptors.build(self.data[..., None, :, :], ["image"], columns,
                                      windows, self.axes_manager.signal_axes, title,
                                      lazy, {"source": "image"})  # fmt: skip
        asked = {"spacing": spacing, "contrast": contrast, "structure": structure}
        prob = self._maps(model, show_progressbar=show_progressbar, **asked)
        if columns is None:
            columns = self.find_columns(
                model, show_progressbar=show_progressbar, **asked
            )
        return prob._windows(windows, columns, self, show_progressbar, lazy)


def _made_with(prob, model, scale, spacing, contrast, structure=None) -> bool:
    """Whether maps were made with each argument given (None: not asked)."""
    from stemunmix.nn.model_io import check_model

    state = prob._get_state("segment", {})
    if model is not None and any(
        state.get(k) != v for k, v in _model_id(check_model(model)).items()
    ):
        return False
    if scale is not None and state.get("scale") != scale:
        return False
    if spacing is not None and state.get("spacing") != float(spacing):
        return False
    used = state.get("structure_used", "perovskite")
    if structure not in (None, "auto", state.get("structure"), used):
        return False
    return contrast is None or contrast in (state.get("contrast"), prob.contrast)


def _segment_maps(image, model, structure, knobs, show_progressbar) -> tuple:
    """segment()'s arguments parsed and its network run: (model, settings,
    (maps, plans, block, vectors) of :func:`stemunmix.nn.inference.segment`,
    the evidence of ``structure="auto"`` or None). With no model given and
    ``structure="auto"`` on bright columns, the perovskite network's maps
    are checked (:func:`stemunmix.nn.inference.auto_structure`); where they
    show no perovskite, the network of the structure found runs instead."""
    from stemunmix.nn import inference
    from stemunmix.nn.model_io import training_spacing

    given = model
    model, settings = _parse_segment(image, model, structure=structure, **knobs)
    run = _run_network(image, model, settings, show_progressbar)
    if not (given is None and structure == "auto" and settings.contrast == "bright"):
        return model, settings, run, None
    nav = image.axes_manager.navigation_dimension
    names, training = list(model.class_names), training_spacing(model)
    found, evidence = inference.auto_structure(
        run[0], names, image.data, nav, run[1], training, settings.device
    )
    if found != settings.structure:
        model, settings = _parse_segment(image, None, structure=found, **knobs)
        run = _run_network(image, model, settings, show_progressbar)
    return model, settings, run, evidence


def _run_network(image, model, settings, show_progressbar) -> tuple:
    """:func:`stemunmix.nn.inference.segment` of the image under a progress bar."""
    from stemunmix.nn import inference

    with progress_bar(show_progressbar, "segment") as bar:
        return inference.segment(
            image.data,
            inference.for_inference(model).to(settings.device),
            image.axes_manager.navigation_dimension,
            settings,
            bar,
        )


def _model_id(model) -> dict:
    """The name and version of a model, as segment() records them."""
    return {
        "model": model.card.get("name", "custom"),
        "model_version": model.card.get("version", "unknown"),
    }


def _parse_segment(image, model, scale, batch_size, device, tile, lazy_output,
                   lattice_prior, spacing, contrast, store, structure="auto",
                   precision="float32"):  # fmt: skip
    """segment()'s arguments, checked before any work and parsed once: (the
    model, :class:`stemunmix.nn.inference.Settings`). The contrast is
    measured here (central crops); it picks the model where none is given."""
    from stemunmix.nn import inference
    from stemunmix.nn.model_io import TRAINING_SPACING, check_model, model_for_contrast
    from stemunmix.nn.training import resolve_device

    scale, spacing = _check_scale(scale, spacing, image.data.shape)
    _check_segment_knobs(contrast, batch_size, tile, lattice_prior, store)
    checks.one_of("structure", structure, STRUCTURES)
    if not image._lazy:
        seg.check_finite(image.data)
    # the spacing a numeric scale implies, at the bundled models' training one
    implied = spacing or (None if isinstance(scale, str) else TRAINING_SPACING / scale)
    used = inference.image_contrast(
        image.data, image.axes_manager.navigation_dimension, contrast, implied
    )
    # Dark columns (ABF, BF) show the O columns, which only the oxygen model names.
    if model is None:
        model = model_for_contrast(used, structure)
    model = check_model(model)
    _check_model_contrast(model, used)
    structure = _structure_used(model, structure)
    dev = resolve_device(device)
    inference.check_precision(precision, dev)
    lazy = image._lazy if lazy_output is None else bool(lazy_output)
    return model, inference.Settings(
        scale=scale, spacing=spacing, contrast=used, tile=int(tile),
        batch_size=batch_size or (4 if dev.type == "cuda" else 1), device=dev,
        lattice_prior=float(lattice_prior), lazy=lazy,
        store=None if store is None or not lazy else str(store), structure=structure,
        precision=precision,
    )  # fmt: skip


# The kinds of lattice segment() knows by name; a model's card lists those
# it was trained on (the bundled models: perovskites).
STRUCTURES = ("auto", "perovskite", "one species", "dumbbell", "2D")


def _structure_used(model, structure: str) -> str:
    """The structure segment() uses: with ``"auto"`` the first the model
    was trained on; one given must be among them (a network trained on
    perovskites splits one species into A and B, and puts B columns between
    its atoms: measured on fcc [110] particles, 86-323 columns off the
    atoms)."""
    from stemunmix.nn.model_io import structures_of

    known = structures_of(model)
    if structure == "auto":
        return known[0]
    if structure not in known:
        name = (getattr(model, "card", None) or {}).get("name", "given")
        raise ValueError(
            f"structure={structure!r}: the {name} model was trained on {known} "
            "only; pass model= one trained for it (stemunmix.train on images "
            "of that structure), or structure='auto'"
        )
    return structure


def _segment_record(model, plans, block, settings, asked) -> dict:
    """What segment() records in ``metadata.Signal.stemunmix.segment``
    (``contrast`` and ``structure``: as asked; ``contrast_used`` as
    measured, ``structure_used`` as resolved)."""
    contrast, structure = asked
    from stemunmix.nn.model_io import training_spacing

    frames = sorted(plans)
    o = settings
    return _model_id(model) | {
        "training_spacing": training_spacing(model),
        "scale": o.scale, "tile": o.tile, "block": int(block),
        "lattice_prior": o.lattice_prior, "contrast": contrast,
        "contrast_used": o.contrast,
        "structure": structure, "structure_used": o.structure,
        "spacing": "measured" if o.spacing is None else o.spacing,
        "measured_spacing": np.array([plans[f].spacing for f in frames]),
        "factor": np.array([plans[f].factor for f in frames]),
        "store": "none" if o.store is None else o.store, "precision": o.precision,
    }  # fmt: skip


def _data_record(image, plans) -> dict:
    """What segment() records of the data: its fingerprint (the maps' cache
    key) and where the lattice is (``presence``: a mask per frame on bins of
    ``presence_bin`` pixels, :mod:`stemunmix.core.presence`, on frames of
    ``presence_shape``, at the spacing the frame shows, ``presence_spacing``),
    which find_columns honours."""
    masks = np.stack([plans[f].presence for f in sorted(plans)])
    masks = masks.reshape(image.data.shape[:-2] + masks.shape[-2:])
    for f in sorted(plans):
        if not plans[f].presence.any():
            checks.warn(
                f"segment: frame {f}: no lattice found (no region correlates "
                "with itself a column spacing away): find_columns will find "
                "no columns there"
            )
    return {
        "data": engine.fingerprint(image.data) or "lazy",
        "presence": masks,
        "presence_bin": np.array([int(plans[f].bin) for f in sorted(plans)]),
        "presence_spacing": np.array([plans[f].shown for f in sorted(plans)]),
        "presence_shape": np.array(image.data.shape[-2:]),
    }


def _raw_link(image):
    """A plain signal over the image's own data (no copy), for its maps to
    find the raw image by."""
    from hyperspy.signals import LazySignal2D, Signal2D

    raw = (LazySignal2D if image._lazy else Signal2D)(
        image.data, axes=[ax.get_axis_dictionary() for ax in image.axes_manager._axes]
    )
    raw.metadata.General.title = image.metadata.General.title
    return raw


def _probabilities(image, maps, class_names, record):
    """ColumnProbabilities of ``maps`` on the axes of ``image``, with the
    segment record and a link to the raw image (a plain signal over the same
    data) in its metadata: refinement and image windows read it, and it is
    saved with the maps."""

    from stemunmix.signals.column_probabilities import (
        ColumnProbabilities,
        LazyColumnProbabilities,
    )

    axes = [ax.get_axis_dictionary() for ax in image.axes_manager._axes]
    class_axis = {
        "name": "class",
        "size": len(class_names),
        "navigate": True,
        "scale": 1,
        "offset": 0,
        "units": "",
    }
    axes.insert(len(axes) - 2, class_axis)
    cls = LazyColumnProbabilities if engine.is_lazy(maps) else ColumnProbabilities
    out = cls(maps, axes=axes)
    out.metadata.General.title = (
        f"Column probabilities of {image.metadata.General.title}"
    )
    out.class_names = class_names
    out.metadata.set_item("Signal.stemunmix.segment", record)
    out._set_linked("image", _raw_link(image))
    columns = image._get_state("columns")
    if columns is not None:  # columns the user gave the image
        out.columns = image.columns
    return out


def _check_scale(scale, spacing=None, shape=None):
    """(scale, spacing in pixels or None), checked."""
    if isinstance(scale, str):
        checks.one_of("scale", scale, ("auto",))
    else:
        scale = checks.real("scale", scale, 0.05, 20)
    if spacing is not None:
        high = None if shape is None else max(shape[-2:]) / 2
        spacing = checks.real("spacing", spacing, 2, high)
        if scale != "auto":
            raise ValueError(
                "pass either spacing (the column spacing in pixels) or a numeric "
                f"scale (a resampling factor), not both; got scale={scale}"
            )
    return scale, spacing


CONTRASTS = ("auto", "bright", "dark")  # the bundled model of each: its card


def _check_segment_knobs(contrast, batch_size, tile, lattice_prior, store) -> None:
    """segment()'s plain arguments besides the scale, before any work."""
    import os

    _check_contrast(contrast)
    if batch_size is not None:
        checks.count("batch_size", batch_size)
    checks.count("tile", tile, 64)
    checks.real("lattice_prior", lattice_prior, 0, 10)
    if store is not None and not isinstance(store, (str, os.PathLike)):
        raise TypeError(
            f"store must be a folder path for the zarr store (or None for a "
            f"temporary one), got {type(store).__name__}"
        )


def _check_contrast(contrast):
    checks.one_of("contrast", contrast, CONTRASTS)


def _check_model_contrast(model, used) -> None:
    """Dark columns (ABF, BF) with a model without an O class: the O columns
    would be found as cations. Refused, with the fix."""
    if used == "dark" and "O" not in model.class_names:
        raise seg.ContrastError(
            "the image shows dark columns on a bright background (ABF or BF), "
            "where the O columns show too, and this model has no O class "
            f"({list(model.class_names)}): it would name them A or B. Leave "
            "model=None (the bundled 'oxygen' model), or pass a model with an "
            "'O' class; contrast='bright' if the columns really are bright"
        )


class LazyAtomicResolutionImage(LazySignal, AtomicResolutionImage):
    """Lazy twin of :class:`AtomicResolutionImage`."""
