"""Building LocalDescriptors from an image or probability maps (layer 2 helper)."""

from __future__ import annotations

import warnings

import numpy as np

from stemunmix.columns import Columns
from stemunmix.core.windows import EDGES, extract_windows, inside_mask, on_image

SOURCES = ("probabilities", "image")
BLOCK = 1024  # image pixels per side of a block of windows (one task when lazy)


def check_arguments(d, edge, source, axes, shape, column_classes=None,
                    classes=None, channels=None, channel_classes=None) -> dict:  # fmt: skip
    """Validate the cheap arguments of ``local_descriptors`` before any
    segmentation or column finding; returns them resolved: ``d`` (pixels),
    ``d_read`` (how d was read), ``classes`` and ``channels`` (lists of names,
    or None for the defaults).

    ``column_classes``: the classes columns can have (the model's, less
    background); ``channel_classes``: the classes windows can be cut from.
    """
    from stemunmix.core import checks
    from stemunmix.signals._base import window_pixels

    d_px, how = window_pixels(d, axes)
    checks.one_of("edge", edge, EDGES)
    checks.one_of("source", source, SOURCES)
    h, w = shape[-2:]
    if d_px >= min(h, w) if edge == "drop" else d_px > min(h, w):
        raise ValueError(
            f"d = {d_px} pixels does not fit in the image ({h} x {w}); use a window "
            "of about 1.2 column spacings"
        )
    if classes is not None and column_classes is not None:
        classes = checks.class_names("classes", classes, column_classes)
    if source == "image":
        if channels not in (None, ["image"], "image"):
            raise ValueError(
                "channels: source='image' has one channel, 'image'; leave "
                "channels=None, or use source='probabilities' for class channels"
            )
        channels = ["image"]
    elif channels is not None and channel_classes is not None:
        channels = checks.class_names("channels", channels, channel_classes)
    return {"d": d_px, "d_read": how, "classes": classes, "channels": channels}


def build(
    frames,
    channel_names,
    columns: Columns,
    d,
    classes,
    edge,
    axes,
    title,
    lazy_output,
    extra_metadata=None,
    d_read=None,
):
    """LocalDescriptors from ``frames`` (nav..., C, H, W) numpy/dask and columns.

    ``axes``: the signal axes (x, y) of the source image, for calibration.
    """
    from stemunmix.signals.local_descriptors import (
        LazyLocalDescriptors,
        LocalDescriptors,
    )

    checked = check_arguments(d, edge, "image", axes, frames.shape)
    d = checked["d"]
    h, w = frames.shape[-2:]
    if columns is None or len(columns) == 0:
        raise ValueError("no columns: run find_columns() first or pass columns=")
    if classes is not None:
        wanted = [classes] if isinstance(classes, (str, int)) else list(classes)
        idx = [columns.class_index(c) for c in wanted]
        present = set(np.unique(columns.labels))
        absent = [columns.class_names[i] for i in idx if i not in present]
        if absent:
            raise ValueError(
                f"classes {absent} have no columns; present: {[columns.class_names[i] for i in sorted(present)]}"
            )
        columns = columns[np.isin(columns.labels, idx)]
    n_before = len(columns)
    off = ~on_image(columns.xy, (h, w))
    if edge == "nearest" and off.any():
        # Padding by the edge value is for windows that cross the edge; a
        # column off the image has no pixels of its own to describe.
        warnings.warn(
            f"edge='nearest': {int(off.sum())} of {n_before} columns lie outside "
            f"the {h} x {w} image and were left out",
            stacklevel=3,
        )
        columns = columns[~off]
    keep = (
        inside_mask(columns.xy, (h, w), d)
        if edge == "drop"
        else np.ones(len(columns), bool)
    )
    columns = columns[keep]
    dropped = n_before - len(columns)
    if len(columns) == 0:
        raise ValueError(
            f"every column's {d} x {d} window crosses the image edge; use edge='nearest' or a smaller d"
        )
    if dropped and edge == "drop":
        warnings.warn(
            f"edge='drop': {dropped} of {n_before} columns whose {d} x {d} window crosses the image edge were left out",
            stacklevel=3,
        )
    nav_shape = frames.shape[:-3]
    lazy = (
        lazy_output if lazy_output is not None else not isinstance(frames, np.ndarray)
    )

    # Windows are gathered block by block (one task per block of the image
    # when lazy, reading the block and a margin of d / 2): the order is by
    # frame, then block, then the columns' own order, eager and lazy alike,
    # and ``.columns`` of the result follows it.
    groups = _block_groups(columns, nav_shape, BLOCK)
    columns = columns[np.concatenate(groups)]
    n_channels = len(channel_names)

    def region_of(sel):
        cols = columns[sel]
        key = tuple(int(k) for k in cols.nav_index[0, ::-1]) if nav_shape else ()
        r = d // 2 + 2
        (x0, y0), (x1, y1) = np.floor(cols.xy.min(0)), np.ceil(cols.xy.max(0))
        oy0, oy1 = int(max(0, y0 - r)), int(min(h, y1 + r + 1))
        ox0, ox1 = int(max(0, x0 - r)), int(min(w, x1 + r + 1))
        region = frames[key][..., oy0:oy1, ox0:ox1]
        xy = cols.xy - np.array([ox0, oy0], float)
        return region, xy, (oy0, oy1, ox0, ox1)

    def windows_of(region, xy, box):
        region = np.asarray(region)
        if not np.all(np.isfinite(region)):
            raise ValueError(
                "the image has NaN or inf pixels: windows would carry them; replace them first"
            )
        # The margin keeps every window off the region's edges except where
        # they are the frame's, so edge="nearest" pads with the frame's edge.
        win = extract_windows(region, xy, d, edge)  # (n, C, d, d)
        return win.transpose(0, 2, 1, 3).reshape(len(win), d, n_channels * d)

    n = len(columns)
    bounds = np.cumsum([0] + [len(g) for g in groups])
    selections = [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    if lazy:
        import dask
        import dask.array as da

        gather = dask.delayed(windows_of, pure=True)
        blocks = []
        for sel in selections:
            region, xy, box = region_of(sel)
            blocks.append(da.from_delayed(gather(region, xy, box),
                                          shape=(len(sel), d, n_channels * d),
                                          dtype=np.float32))  # fmt: skip
        data = da.concatenate(blocks, axis=0)
        cls = LazyLocalDescriptors
    else:
        data = np.empty((n, d, n_channels * d), np.float32)
        for sel in selections:
            region, xy, box = region_of(sel)
            data[sel] = windows_of(region, xy, box)
        cls = LocalDescriptors
    x, y = axes
    sig_axes = [
        {
            "name": "y",
            "size": d,
            "scale": y.scale,
            "offset": -(d - 1) / 2 * y.scale,
            "units": y.units,
            "navigate": False,
        },
        {
            "name": "x",
            "size": len(channel_names) * d,
            "scale": x.scale,
            "offset": -(d - 1) / 2 * x.scale,
            "units": x.units,
            "navigate": False,
        },
    ]
    nav_axis = {
        "name": "column",
        "size": n,
        "scale": 1,
        "offset": 0,
        "units": "",
        "navigate": True,
    }
    out = cls(data, axes=[nav_axis] + sig_axes)
    out.metadata.General.title = title
    out._set_state(
        "source",
        {
            "shape": [h, w],
            "offset": [x.offset, y.offset],
            "scale": [x.scale, y.scale],
            "units": [str(x.units), str(y.units)],
            "nav_shape": list(nav_shape),
        },
    )
    out.columns = columns
    params = {
        "d": d,
        "d_read": checked["d_read"] if d_read is None else d_read,
        "channels": list(channel_names),
        "edge": edge,
        "dropped": int(dropped),
        "centre": "(d - 1) / 2",
    }
    params.update(extra_metadata or {})
    out._set_state("local_descriptors", params)
    return out


def _block_groups(columns, nav_shape, block: int) -> list[np.ndarray]:
    """Indices of the columns per (frame, block row, block column), in order."""
    n = len(columns)
    frame = (
        np.ravel_multi_index(tuple(columns.nav_index[:, ::-1].T), nav_shape)
        if nav_shape else np.zeros(n, int)
    )  # fmt: skip
    by = np.floor(columns.xy[:, 1] / block).astype(int)
    bx = np.floor(columns.xy[:, 0] / block).astype(int)
    order = np.lexsort((np.arange(n), bx, by, frame))
    key = np.stack([frame, by, bx], 1)[order]
    cuts = np.flatnonzero(np.any(np.diff(key, axis=0) != 0, axis=1)) + 1
    return np.split(order, cuts)


def scree_by_window(make_descriptors, d_values, n_components: int = 10):
    """Explained variance of the first components against the window size.

    ``make_descriptors(d)`` builds the LocalDescriptors for size d. Returns a
    Signal1D: navigation = component (1..n), signal = d (a non-uniform axis),
    value = cumulative explained variance ratio (PCA by SVD, centred).
    """
    from hyperspy._signals.signal1d import Signal1D

    d_values = [int(d) for d in d_values]
    if not d_values:
        raise ValueError("d_values must list at least one window size")
    curves = []
    for d in d_values:
        ld = make_descriptors(d)
        x = np.asarray(ld.data.compute() if ld._lazy else ld.data)
        x = x.reshape(len(x), -1).astype(np.float64)
        x -= x.mean(0)
        s = np.linalg.svd(x, compute_uv=False) ** 2
        ratio = np.cumsum(s) / s.sum()
        curves.append(np.pad(ratio[:n_components], (0, max(0, n_components - len(ratio))),
                             mode="edge"))  # fmt: skip
    data = np.array(curves).T  # (component, d)
    axes = [
        {
            "name": "components",
            "size": n_components,
            "offset": 1,
            "scale": 1,
            "navigate": True,
        },
        {
            "name": "d",
            "axis": np.array(d_values, float),
            "units": "px",
            "navigate": False,
        },
    ]
    out = Signal1D(data, axes=axes)
    out.metadata.General.title = "explained variance against window size"
    return out
