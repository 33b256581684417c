"""AtomicResolutionImage: a HAADF/ADF image (or a stack) of atomic columns."""

from __future__ import annotations

import numpy as np
from hyperspy._signals.lazy import LazySignal

from stemunmix.signals._base import StemunmixSignal2D


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
    ):
        """Per-class probability maps of the atomic columns.

        Each frame is normalised (1st/99th percentiles to 0/1), resampled so its
        columns sit at the model's training spacing, run through the network in
        overlapping tiles (a halo of half the receptive field on every side, so
        the result does not depend on the tiling), and mapped back onto the
        frame's own pixel grid.

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
            Core size of a tile in (resampled) pixels; bounds the memory used.
        show_progressbar, lazy_output
            As in HyperSpy. Lazy input gives lazy output by default.

        Returns
        -------
        ColumnProbabilities
            Data ``(..., class, y, x)``; calibration of this image; model and
            parameters in ``metadata.Signal.stemunmix.segment``.
        """
        from stemunmix.nn import inference
        from stemunmix.nn.training import resolve_device

        model = _check_model(model)
        scale = _check_scale(scale)
        if batch_size is not None and (
            not isinstance(batch_size, (int, np.integer)) or batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        if not isinstance(tile, (int, np.integer)) or tile < 64:
            raise ValueError(f"tile must be an integer >= 64 pixels, got {tile}")
        dev = resolve_device(device)
        batch_size = batch_size or (4 if dev.type == "cuda" else 1)
        if not self._lazy:
            _check_frames(self.data)
        model = model.to(dev).eval()
        spacing = float(model.card.get("training_spacing", 16.0))
        n_classes = len(model.class_names)

        measured = []  # (spacing, factor) per frame

        def run_frame(frame):
            factor, found = inference.scale_factor(frame, scale, spacing)
            measured.append((found, factor))
            return inference.predict(model, frame, factor, tile, batch_size, dev)

        lazy = self._lazy if lazy_output is None else bool(lazy_output)
        nav_shape = self.data.shape[:-2]
        if self._lazy or lazy:
            import dask
            import dask.array as da

            data = self.data if self._lazy else da.from_array(self.data, chunks=-1)
            data = data.rechunk({-2: -1, -1: -1})
            # The scale of every frame is measured up front, on the central
            # crop the eager path measures, so lazy and eager agree and the
            # spacing is recorded either way.
            crops = [data[idx][inference.spacing_crop(data.shape[-2:])]
                     for idx in np.ndindex(nav_shape)]  # fmt: skip
            for crop in dask.compute(*crops):
                _check_frames(crop)
                measured.append(inference.scale_factor(crop, scale, spacing)[::-1])
            factors = np.array([m[1] for m in measured]).reshape(nav_shape)

            def block(arr, block_info=None):
                loc = block_info[0]["array-location"][: len(nav_shape)]
                out = np.empty(arr.shape[:-2] + (n_classes,) + arr.shape[-2:], "f4")
                for idx in np.ndindex(arr.shape[:-2]):
                    frame = np.asarray(arr[idx], dtype=np.float32)
                    _check_frames(frame)
                    factor = factors[tuple(lo + i for (lo, _), i in zip(loc, idx,
                                                                        strict=True))]  # fmt: skip
                    out[idx] = inference.predict(model, frame, float(factor), tile,
                                                 batch_size, dev)  # fmt: skip
                return out

            result = data.map_blocks(
                block,
                new_axis=len(nav_shape),
                chunks=data.chunks[:-2] + ((n_classes,),) + data.chunks[-2:],
                dtype=np.float32,
            )
            if not lazy:
                result = result.compute()
        else:
            from hyperspy.defaults_parser import preferences
            from tqdm.auto import tqdm

            show = preferences.General.show_progressbar
            show = show if show_progressbar is None else show_progressbar
            result = np.empty(nav_shape + (n_classes,) + self.data.shape[-2:], "f4")
            frames = list(np.ndindex(nav_shape))
            for idx in tqdm(
                frames, desc="segment", disable=not show or len(frames) < 2
            ):
                result[idx] = run_frame(np.asarray(self.data[idx], dtype=np.float32))
        out = self._probabilities_signal(result, model, scale, tile)
        if len(measured) == int(np.prod(nav_shape)):
            found = [m[0] for m in measured]
            if None not in found:
                out.metadata.set_item(
                    "Signal.stemunmix.segment.measured_spacing", np.array(found)
                )
            out.metadata.set_item(
                "Signal.stemunmix.segment.factor", np.array([m[1] for m in measured])
            )
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

    def _probabilities_signal(self, data, model, scale, tile):
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
             "scale": scale, "tile": int(tile)},
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
    ):
        """Segment, then locate the columns (see ColumnProbabilities.find_columns).

        Returns the Columns and stores them in ``self.columns``.
        """
        prob = self.segment(model=model, scale=scale, lazy_output=False,
                            show_progressbar=show_progressbar)  # fmt: skip
        columns = prob.find_columns(
            image=self, threshold=threshold, min_distance=min_distance,
            refine=refine, show_progressbar=show_progressbar,
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
    ):
        """A d x d window centred on every column (LocalDescriptors).

        ``source="probabilities"`` segments this image first; ``"image"`` cuts
        the windows from the image itself. Columns default to ``self.columns``
        (found with ``find_columns()`` if none). See
        :meth:`ColumnProbabilities.local_descriptors` for the other arguments.
        """
        from stemunmix.signals import _descriptors

        _descriptors.check_arguments(
            d, edge, source, self.axes_manager.signal_axes[0].scale
        )
        if columns is None:
            columns = self.columns
        if source == "image":
            if channels not in (None, ["image"], "image"):
                raise ValueError("source='image' has one channel, 'image'")
            if columns is None:
                columns = self.find_columns(model=model)
            return _descriptors.build(
                self.data[..., None, :, :], ["image"], columns, d, classes, edge,
                self.axes_manager.signal_axes,
                f"Local descriptors of {self.metadata.General.title}",
                lazy_output if lazy_output is not None else (True if self._lazy else None),
                {"source": "image"},
            )  # fmt: skip
        prob = self.segment(
            model=model, lazy_output=False, show_progressbar=show_progressbar
        )
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


def _check_scale(scale):
    if isinstance(scale, str):
        if scale != "auto":
            raise ValueError(f'scale must be "auto" or a number, got {scale!r}')
        return scale
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.number)):
        raise TypeError(f'scale must be "auto" or a number, got {type(scale).__name__}')
    if not (np.isfinite(scale) and 0.05 <= scale <= 20):
        raise ValueError(
            f"scale must be a resampling factor in [0.05, 20], got {scale}"
        )
    return float(scale)


def _check_frames(data):
    if data.size == 0:
        raise ValueError("the image is empty")
    if not np.all(np.isfinite(data)):
        raise ValueError(
            "the image has NaN or inf pixels; replace them (e.g. "
            "s.data[~np.isfinite(s.data)] = np.nanmedian(s.data)) before segmenting"
        )


class LazyAtomicResolutionImage(LazySignal, AtomicResolutionImage):
    """Lazy twin of :class:`AtomicResolutionImage`."""
