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
        lattice_prior: float = 0.2,
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

        scale = _check_scale(scale)
        if batch_size is not None and (
            not isinstance(batch_size, (int, np.integer)) or batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        if not isinstance(tile, (int, np.integer)) or tile < 64:
            raise ValueError(f"tile must be an integer >= 64 pixels, got {tile}")
        if isinstance(lattice_prior, bool) or not isinstance(
            lattice_prior, (int, float, np.number)
        ):
            raise TypeError(
                f"lattice_prior must be a number >= 0, got {type(lattice_prior).__name__}"
            )
        if not (np.isfinite(lattice_prior) and 0 <= lattice_prior <= 10):
            raise ValueError(
                f"lattice_prior must be a weight in [0, 10] (0 = off), got {lattice_prior}"
            )
        model = _check_model(model)  # the plain arguments first: this loads a file
        dev = resolve_device(device)
        batch_size = batch_size or (4 if dev.type == "cuda" else 1)
        if not self._lazy:
            _check_frames(self.data)
        model = inference.for_inference(model).to(dev)
        spacing = float(model.card.get("training_spacing", 16.0))
        n_classes = len(model.class_names)

        measured = []  # (spacing, factor) per frame

        lazy = self._lazy if lazy_output is None else bool(lazy_output)
        nav_shape = self.data.shape[:-2]
        if self._lazy or lazy:
            data = self.data
            if not self._lazy:
                import dask.array as da

                data = da.from_array(data, chunks=(1,) * len(nav_shape) + (-1, -1))
            result, block = _segment_lazy(data, model, scale, spacing, tile,
                                          batch_size, dev, measured)  # fmt: skip
            if not lazy:
                result = result.compute()
        else:
            from hyperspy.defaults_parser import preferences
            from tqdm.auto import tqdm

            show = preferences.General.show_progressbar
            show = show if show_progressbar is None else show_progressbar
            frames = list(np.ndindex(nav_shape))
            for idx in frames:  # the scale of every frame first, as the lazy path
                factor, found = inference.scale_factor(self.data[idx], scale, spacing)
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
            result, vectors = _name_by_lattice(result, model, spacing, measured,
                                               float(lattice_prior))  # fmt: skip
        out = self._probabilities_signal(result, model, scale, tile, block)
        out.metadata.set_item("Signal.stemunmix.segment.lattice_prior",
                              float(lattice_prior))  # fmt: skip
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
    ):
        """Segment, then locate the columns (see ColumnProbabilities.find_columns).

        Returns the Columns and stores them in ``self.columns``.
        """
        from stemunmix.core.lattice import LATTICES

        if lattice not in LATTICES:  # before segmenting
            raise ValueError(f"lattice must be one of {LATTICES}, got {lattice!r}")
        prob = self.segment(model=model, scale=scale, lazy_output=False,
                            show_progressbar=show_progressbar)  # fmt: skip
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


def _segment_lazy(data, model, scale, spacing, tile, batch_size, device, measured):
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
        measured.append(inference.scale_factor(small, scale, spacing)[::-1])
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
