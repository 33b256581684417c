"""AtomicResolutionImage: a HAADF/ADF image (or a stack) of atomic columns."""

from __future__ import annotations

import numpy as np
from hyperspy._signals.lazy import LazySignal

from stemunmix.core import checks
from stemunmix.signals._base import StemunmixSignal2D, check_image_axes


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
        batch_size = batch_size or (4 if dev.type == "cuda" else 1)
        if not self._lazy:
            _check_frames(self.data)
        model = inference.for_inference(model).to(dev)
        training = float(model.card.get("training_spacing", 16.0))
        n_classes = len(model.class_names)

        measured = []  # (spacing, factor) per frame

        lazy = self._lazy if lazy_output is None else bool(lazy_output)
        nav_shape = self.data.shape[:-2]
        if self._lazy or lazy:
            data = self.data
            if not self._lazy:
                import dask.array as da

                data = da.from_array(data, chunks=(1,) * len(nav_shape) + (-1, -1))
            result, block = _segment_lazy(data, model, scale, training, tile,
                                          batch_size, dev, measured, spacing_px,
                                          contrast)  # fmt: skip
            if not lazy:
                result = result.compute()
        else:
            from hyperspy.defaults_parser import preferences
            from tqdm.auto import tqdm

            show = preferences.General.show_progressbar
            show = show if show_progressbar is None else show_progressbar
            frames = list(np.ndindex(nav_shape))
            for idx in frames:  # the scale of every frame first, as the lazy path
                factor, found = inference.scale_factor(
                    self.data[idx], scale, training, spacing_px, contrast
                )
                inference.check_size(self.data.shape[-2:], factor)
                measured.append((found, factor))
            block = inference.block_size(tile, max(f for _, f in measured))
            result = np.empty(nav_shape + (n_classes,) + self.data.shape[-2:], "f4")
            for (_, factor), idx in tqdm(
                list(zip(measured, frames, strict=True)),
                desc="segment", disable=not show or len(frames) < 2,
            ):  # fmt: skip
                # No float32 copy of the frame: each block converts its own
                # pixels (as the lazy path does), so memory stays bounded.
                inference.predict(model, np.asarray(self.data[idx]), factor, tile,
                                  batch_size, dev, out=result[idx], block=block)  # fmt: skip
        vectors = None
        if lattice_prior > 0:
            result, vectors = _name_by_lattice(result, model, training, measured,
                                               float(lattice_prior))  # fmt: skip
        out = self._probabilities_signal(result, model, scale, tile, block)
        out.metadata.set_item("Signal.stemunmix.segment.lattice_prior",
                              float(lattice_prior))  # fmt: skip
        out.metadata.set_item("Signal.stemunmix.segment.contrast", contrast)
        out.metadata.set_item("Signal.stemunmix.segment.spacing",
                              "measured" if spacing_px is None else spacing_px)  # fmt: skip
        if vectors is not None:
            out.metadata.set_item("Signal.stemunmix.segment.lattice_vectors", vectors)
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


def _check_frames(data):
    if data.size == 0:
        raise ValueError("the image is empty")
    if not np.all(np.isfinite(data)):
        raise ValueError(
            "the image has NaN or inf pixels; replace them (e.g. "
            "s.data[~np.isfinite(s.data)] = np.nanmedian(s.data)) before segmenting"
        )


def _name_by_lattice(result, model, training_spacing, measured, weight):
    """Maps with the column classes named with the help of the lattice
    (:func:`stemunmix.core.lattice.relabel`), eagerly in place for a numpy
    ``result``, as a dask graph (block by block, each with its halo) for a dask
    one; and the lattice translations per frame, (frames..., 2, 2) [x, y]
    pixels, NaN where a frame shows too few columns to measure them."""
    import warnings

    from stemunmix.core import lattice
    from stemunmix.nn import inference

    names = list(model.class_names)
    background = names.index("background")
    nav_shape, shape = result.shape[:-3], result.shape[-2:]
    if len(names) < 3:  # one column class: nothing to name
        return result, None
    first = next(k for k in range(len(names)) if k != background)
    frames = list(np.ndindex(nav_shape))
    spacings = [found if found is not None else training_spacing / factor
                for found, factor in measured]  # fmt: skip
    crops = [inference.spacing_crop(shape, max(512, int(20 * sp))) for sp in spacings]
    pieces = [
        result[idx + (first,) + crop] for idx, crop in zip(frames, crops, strict=True)
    ]
    if not isinstance(result, np.ndarray):
        import dask

        pieces = dask.compute(*pieces)
    vectors = np.full(nav_shape + (2, 2), np.nan)
    for idx, piece, sp in zip(frames, pieces, spacings, strict=True):
        found = lattice.translations(np.asarray(piece), sp)
        if found is None:
            warnings.warn(
                f"segment: frame {idx} shows too few {names[first]} columns to "
                "measure its lattice; its columns are named by the network alone",
                stacklevel=3,
            )
        else:
            vectors[idx] = found
    if isinstance(result, np.ndarray):
        for idx in frames:
            if np.isfinite(vectors[idx]).all():
                lattice.relabel_frame(result[idx], vectors[idx], weight, background)
        return result, vectors
    return _relabel_lazy(result, vectors, weight, background), vectors


def _relabel_lazy(result, vectors, weight, background):
    """Dask graph of :func:`stemunmix.core.lattice.relabel` on lazy maps: each
    output block reads its block plus the lattice halo (exactly as eager)."""
    import dask.array as da

    from stemunmix.core import lattice

    nav = result.ndim - 3
    ok = np.isfinite(vectors).all(axis=(-2, -1))
    if not ok.any():
        return result
    halo = max(lattice.lattice_halo(v) for v in vectors[ok])
    height, width = result.shape[-2:]

    def run(region, box, block_info=None):
        loc = block_info[0]["array-location"][:nav]
        y0, y1, x0, x1, ry0, rx0 = box
        out = np.empty(region.shape[:-2] + (y1 - y0, x1 - x0), np.float32)
        for idx in np.ndindex(region.shape[:-3]):
            frame = tuple(lo + i for (lo, _), i in zip(loc, idx, strict=True))
            maps = region[idx]
            if ok[frame]:
                maps = lattice.relabel(maps, vectors[frame], weight, background)
            out[idx] = maps[:, y0 - ry0 : y1 - ry0, x0 - rx0 : x1 - rx0]
        return out

    nav_chunks = result.chunks[:nav]
    ys = np.cumsum((0,) + result.chunks[-2])
    xs = np.cumsum((0,) + result.chunks[-1])
    rows = []
    for y0, y1 in zip(ys[:-1], ys[1:], strict=True):
        row = []
        for x0, x1 in zip(xs[:-1], xs[1:], strict=True):
            ry0, ry1 = max(0, y0 - halo), min(height, y1 + halo)
            rx0, rx1 = max(0, x0 - halo), min(width, x1 + halo)
            region = result[..., ry0:ry1, rx0:rx1].rechunk(nav_chunks + (-1, -1, -1))
            row.append(da.map_blocks(
                run, region, (int(y0), int(y1), int(x0), int(x1), int(ry0), int(rx0)),
                dtype=np.float32,
                chunks=nav_chunks + (result.shape[-3:-2], (y1 - y0,), (x1 - x0,)),
            ))  # fmt: skip
        rows.append(row)
    return da.block(rows)


def _segment_lazy(data, model, scale, spacing, tile, batch_size, device, measured,
                  spacing_px=None, contrast="auto"):  # fmt: skip
    """Dask graph of the probability maps: one task per output block of
    ``tile`` x ``tile`` pixels (and per chunk of frames), each reading its block
    plus the halo the network needs, so memory stays bounded at any image size
    and the values equal the eager ones exactly."""
    import dask
    import dask.array as da

    from stemunmix.core import segmentation as seg
    from stemunmix.nn import inference

    nav_shape, shape = data.shape[:-2], data.shape[-2:]
    n_classes = len(model.class_names)
    # Per frame, up front and small: the scale from the central crop and the
    # intensity range from the regular subsample the eager path uses.
    step = max(1, int(np.ceil(np.sqrt(shape[0] * shape[1] / 4_000_000))))
    crop = inference.spacing_crop(shape)
    pieces = [
        (data[idx][crop], data[idx][::step, ::step]) for idx in np.ndindex(nav_shape)
    ]
    factors, ranges = [], []
    for small, sample in dask.compute(*pieces):
        _check_frames(sample)
        measured.append(
            inference.scale_factor(small, scale, spacing, spacing_px, contrast)[::-1]
        )
        inference.check_size(shape, measured[-1][1])
        factors.append(measured[-1][1])
        ranges.append(seg.intensity_range(sample))
    factors = np.array(factors).reshape(nav_shape)
    ranges = np.array(ranges).reshape(nav_shape + (2,))
    model_in_graph = dask.delayed(model, pure=True)
    nav_chunks = data.chunks[:-2]

    def run(region, net, origin, box, block_info=None):
        loc = block_info[0]["array-location"][: len(nav_shape)]
        out = np.empty(region.shape[:-2] + (n_classes, box[1] - box[0], box[3] - box[2]),
                       np.float32)  # fmt: skip
        for idx in np.ndindex(region.shape[:-2]):
            frame_idx = tuple(lo + i for (lo, _), i in zip(loc, idx, strict=True))
            frame = np.asarray(region[idx], np.float32)
            _check_frames(frame)
            lo, hi = ranges[frame_idx]
            out[idx] = inference.predict_block(
                net, frame, origin, shape, box, float(factors[frame_idx]), lo, hi,
                tile, batch_size, device,
            )  # fmt: skip
        return out

    block = inference.block_size(tile, float(np.max(factors)))
    rows = []
    for y0, y1 in inference.block_bounds(shape[0], block):
        row = []
        for x0, x1 in inference.block_bounds(shape[1], block):
            box = (y0, y1, x0, x1)
            plans = np.array([inference.block_plan(shape, box, f, model)
                              for f in np.unique(factors)])  # fmt: skip
            oy0, ox0 = plans[:, 0].min(), plans[:, 2].min()
            oy1, ox1 = plans[:, 1].max(), plans[:, 3].max()
            region = data[..., oy0:oy1, ox0:ox1].rechunk(nav_chunks + (-1, -1))
            row.append(da.map_blocks(
                run, region, model_in_graph, (int(oy0), int(ox0)), box,
                new_axis=len(nav_shape), dtype=np.float32,
                chunks=nav_chunks + ((n_classes,), (y1 - y0,), (x1 - x0,)),
            ))  # fmt: skip
        rows.append(row)
    return da.block(rows), block


class LazyAtomicResolutionImage(LazySignal, AtomicResolutionImage):
    """Lazy twin of :class:`AtomicResolutionImage`."""
