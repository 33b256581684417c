"""AtomicResolutionImage: a HAADF/ADF image (or a stack) of atomic columns."""

from __future__ import annotations

import numpy as np
from hyperspy._signals.lazy import LazySignal

from stemunmix.core import checks, engine
from stemunmix.core import segmentation as seg
from stemunmix.signals._base import StemunmixSignal2D, check_image_axes, progress_bar


class AtomicResolutionImage(StemunmixSignal2D):
    """An atomically resolved STEM image, signal_type ``"atomic_resolution"``.

    Any navigation shape; signal axes are the image (x, y), calibrated from the
    file. Columns found on it are kept in ``.columns`` ([x, y] pixels).
    """

    _signal_type = "atomic_resolution"

    def segment(
        self,
        model=None,
        scale="auto",
        batch_size: int | None = None,
        device=None,
        tile: int = 1024,
        show_progressbar: bool | None = None,
        lazy_output: bool | None = None,
        lattice_prior: float = 0.2,
        spacing: float | None = None,
        contrast: str = "auto",
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
            A model from :func:`stemunmix.load_model` (default: the bundled one).
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

        Returns
        -------
        ColumnProbabilities
            Data ``(..., class, y, x)``; calibration of this image; model and
            parameters in ``metadata.Signal.stemunmix.segment``.
        """
        from stemunmix.nn import inference
        from stemunmix.nn.training import resolve_device

        check_image_axes(self, "segment")
        scale, spacing_px = _check_scale(scale, spacing, self.data.shape)
        _check_contrast(contrast)
        if batch_size is not None:
            checks.count("batch_size", batch_size)
        checks.count("tile", tile, 64)
        checks.real("lattice_prior", lattice_prior, 0, 10)
        model = _check_model(model)  # the plain arguments first: this loads a file
        dev = resolve_device(device)
        if not self._lazy:
            seg.check_finite(self.data)
        model = inference.for_inference(model).to(dev)
        lazy = self._lazy if lazy_output is None else bool(lazy_output)
        with progress_bar(show_progressbar, "segment") as bar:
            maps, plans, block, vectors = inference.segment(
                self.data, model, self.axes_manager.navigation_dimension, scale,
                tile, batch_size or (4 if dev.type == "cuda" else 1), dev, lazy,
                spacing_px, contrast, float(lattice_prior), bar,
            )  # fmt: skip
        if not lazy and engine.is_lazy(maps):
            maps = maps.compute()
        out = self._probabilities_signal(maps, model, scale, tile, block)
        nav_shape = self.data.shape[:-2]
        record = {
            "lattice_prior": float(lattice_prior),
            "contrast": contrast,
            "spacing": "measured" if spacing_px is None else spacing_px,
            "measured_spacing": np.array([plans[f].spacing for f in np.ndindex(nav_shape)]),
            "factor": np.array([plans[f].factor for f in np.ndindex(nav_shape)]),
        }  # fmt: skip
        if vectors is not None:
            record["lattice_vectors"] = vectors
        for key, value in record.items():
            out.metadata.set_item(f"Signal.stemunmix.segment.{key}", value)
        return out

    def square_pixels(self):
        """This image resampled onto square pixels: the coarser signal axis is
        linearly interpolated onto the finer pixel size (same first pixel
        centre, same field of view). Non-square pixels (rows binned, a fast
        scan at another sampling) must go through this before :meth:`segment`.
        Returns a new image (lazy for a lazy one); columns are not carried over.
        """
        from stemunmix.core.segmentation import square_pixels

        check_image_axes(self, "square_pixels", square=False)
        axes = self.axes_manager.signal_axes
        scale = (abs(float(axes[0].scale)), abs(float(axes[1].scale)))
        data, fine = square_pixels(self.data, scale)
        out = self._deepcopy_with_new_data(data)
        out.columns = None
        for ax in out.axes_manager.signal_axes:
            ax.scale = float(np.sign(ax.scale) * fine)
        out.get_dimensions_from_data()
        out.metadata.set_item("Signal.stemunmix.square_pixels",
                              {"from_scale": list(scale), "to_scale": fine})  # fmt: skip
        return out

    def scree_by_window(self, d_values, n_components: int = 10, classes=None,
                        source: str = "probabilities", model=None, **kwargs):  # fmt: skip
        """Cumulative explained variance of the first ``n_components`` PCA
        components of the local descriptors, for each window size in
        ``d_values`` (pixels): the study's Fig. 1a. Returns a Signal1D over d.
        """
        if source == "probabilities":
            # Segment (and find columns) once, not once per window size.
            prob = self.segment(model=model, lazy_output=False)
            columns = self.columns
            if columns is None:
                columns = self.columns = prob.find_columns(image=self)
            return prob.scree_by_window(d_values, n_components, classes,
                                        columns=columns, **kwargs)  # fmt: skip
        from stemunmix.signals._descriptors import scree_by_window

        return scree_by_window(
            lambda d: self.local_descriptors(d, classes=classes, source=source,
                                             model=model, **kwargs),
            d_values, n_components,
        )  # fmt: skip

    def _probabilities_signal(self, data, model, scale, tile, block):
        from stemunmix.signals.column_probabilities import (
            ColumnProbabilities,
            LazyColumnProbabilities,
        )

        axes = [ax.get_axis_dictionary() for ax in self.axes_manager._axes]
        class_axis = {"name": "class", "size": len(model.class_names),
                      "navigate": True, "scale": 1, "offset": 0, "units": ""}  # fmt: skip
        axes.insert(len(axes) - 2, class_axis)
        lazy = not isinstance(data, np.ndarray)
        cls = LazyColumnProbabilities if lazy else ColumnProbabilities
        out = cls(data, axes=axes)
        out.metadata.General.title = (
            f"Column probabilities of {self.metadata.General.title}"
        )
        out.class_names = model.class_names
        out.metadata.set_item(
            "Signal.stemunmix.segment",
            {"model": model.card.get("name", "custom"),
             "model_version": model.card.get("version", "unknown"),
             "training_spacing": model.card.get("training_spacing", 16.0),
             "scale": scale, "tile": int(tile), "block": int(block)},
        )  # fmt: skip
        if self.columns is not None:
            out.columns = self.columns
        out._source_image = self  # for find_columns; not saved with the maps
        return out

    def find_columns(
        self,
        model=None,
        scale="auto",
        threshold: float = 0.5,
        min_distance: float | None = None,
        refine: str = "gaussian",
        show_progressbar: bool | None = None,
        lattice: str | None = None,
        spacing: float | None = None,
        contrast: str = "auto",
    ):
        """Segment, then locate the columns (see ColumnProbabilities.find_columns;
        ``spacing`` and ``contrast`` as in :meth:`segment`).

        Returns the Columns and stores them in ``self.columns``.
        """
        from stemunmix.signals.column_probabilities import check_find_arguments

        check_find_arguments(
            threshold, min_distance, refine, lattice
        )  # before segmenting
        prob = self.segment(model=model, scale=scale, lazy_output=False, spacing=spacing,
                            show_progressbar=show_progressbar, contrast=contrast)  # fmt: skip
        columns = prob.find_columns(
            image=self, threshold=threshold, min_distance=min_distance,
            refine=refine, show_progressbar=show_progressbar, lattice=lattice,
        )  # fmt: skip
        self.columns = columns
        self.metadata.set_item("Signal.stemunmix.segment", prob._get_state("segment"))
        self.metadata.set_item(
            "Signal.stemunmix.find_columns", prob._get_state("find_columns")
        )
        return columns

    def local_descriptors(
        self,
        d,
        columns=None,
        classes=None,
        source: str = "probabilities",
        channels=None,
        edge: str = "drop",
        model=None,
        show_progressbar: bool | None = None,
        lazy_output: bool | None = None,
        spacing: float | None = None,
    ):
        """A d x d window centred on every column (LocalDescriptors).

        ``source="probabilities"`` segments this image first; ``"image"`` cuts
        the windows from the image itself. Columns default to ``self.columns``
        (found with ``find_columns()`` if none). See
        :meth:`ColumnProbabilities.local_descriptors` for the other arguments.
        """
        from stemunmix.signals import _descriptors

        check_image_axes(self, "local_descriptors")
        model = _check_model(model)  # cheap: its class names check the arguments
        names = list(model.class_names)
        column_classes = [n for n in names if n != "background"]
        checked = _descriptors.check_arguments(
            d, edge, source, self.axes_manager.signal_axes, self.data.shape,
            column_classes, classes, channels, names,
        )  # fmt: skip
        if columns is None:
            columns = self.columns
        if source == "image":
            if columns is None:
                columns = self.find_columns(model=model, spacing=spacing)
            return _descriptors.build(
                self.data[..., None, :, :], ["image"], columns, checked["d"],
                checked["classes"], edge, self.axes_manager.signal_axes,
                f"Local descriptors of {self.metadata.General.title}",
                lazy_output if lazy_output is not None else (True if self._lazy else None),
                {"source": "image"}, checked["d_read"],
            )  # fmt: skip
        prob = self.segment(model=model, lazy_output=False, spacing=spacing,
                            show_progressbar=show_progressbar)  # fmt: skip
        if columns is None:
            columns = prob.find_columns(image=self)
            self.columns = columns
        return prob.local_descriptors(
            d, columns, classes, "probabilities", channels, edge, image=self,
            show_progressbar=show_progressbar, lazy_output=lazy_output,
        )  # fmt: skip


def _check_model(model):
    from torch import nn

    from stemunmix.nn.model_io import load_model

    if model is None or isinstance(model, str) or hasattr(model, "__fspath__"):
        model = load_model(model)
    if not isinstance(model, nn.Module) or not hasattr(model, "class_names"):
        raise TypeError(
            "model must be a name, a path or a model from stemunmix.load_model, "
            f"got {type(model).__name__}"
        )
    names = list(model.class_names)
    if "background" not in names or len(names) < 2:
        raise ValueError(
            f"model classes {names} do not fit: a segmentation model needs column "
            "classes and a 'background' class (e.g. ['A', 'B', 'background'])"
        )
    if getattr(model, "config", {}).get("in_channels", 1) != 1:
        raise ValueError("model must take one input channel (a single image)")
    if not hasattr(model, "card"):
        model.card = {}
    return model


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


CONTRASTS = ("auto", "bright")


def _check_contrast(contrast):
    if contrast == "dark":
        raise ValueError(
            "contrast='dark' (ABF, BF) is not supported yet: the bundled model is "
            "trained on bright columns; use the simultaneous HAADF/ADF image"
        )
    checks.one_of("contrast", contrast, CONTRASTS)


class LazyAtomicResolutionImage(LazySignal, AtomicResolutionImage):
    """Lazy twin of :class:`AtomicResolutionImage`."""
