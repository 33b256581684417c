"""Building LocalDescriptors from an image or probability maps (layer 2 helper)."""

from __future__ import annotations

import warnings

import numpy as np

from stemunmix.columns import Columns
from stemunmix.core.windows import EDGES, extract_windows, inside_mask

SOURCES = ("probabilities", "image")
CHUNK = 65536  # windows per dask block


def window_size(d, scale: float) -> int:
    """``d``: int pixels, or float calibrated units (rounded to pixels)."""
    if isinstance(d, bool) or not isinstance(d, (int, float, np.integer, np.floating)):
        raise TypeError(
            f"d must be a window size (int pixels or float in the axes' units), got {type(d).__name__}"
        )
    if isinstance(d, (float, np.floating)):
        if not np.isfinite(d) or d <= 0:
            raise ValueError(f"d must be a positive size, got {d}")
        d = int(round(d / scale))
    if d < 3:
        raise ValueError(f"d must be at least 3 pixels, got {d}")
    return int(d)


def check_arguments(d, edge, source, scale) -> None:
    """Validate the cheap arguments before any segmentation or column finding."""
    window_size(d, scale)
    if edge not in EDGES:
        raise ValueError(f"edge must be one of {EDGES}, got {edge!r}")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")


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
):
    """LocalDescriptors from ``frames`` (nav..., C, H, W) numpy/dask and columns.

    ``axes``: the signal axes (x, y) of the source image, for calibration.
    """
    from stemunmix.signals.local_descriptors import (
        LazyLocalDescriptors,
        LocalDescriptors,
    )

    if edge not in EDGES:
        raise ValueError(f"edge must be one of {EDGES}, got {edge!r}")
    scale = axes[0].scale
    d = window_size(d, scale)
    h, w = frames.shape[-2:]
    if d > min(h, w):
        raise ValueError(
            f"d = {d} pixels is larger than the image ({h} x {w}); use a smaller window"
        )
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
    if dropped:
        warnings.warn(
            f"edge='drop': {dropped} of {n_before} columns whose {d} x {d} window crosses the image edge were left out",
            stacklevel=3,
        )
    nav_shape = frames.shape[:-3]
    lazy = (
        lazy_output if lazy_output is not None else not isinstance(frames, np.ndarray)
    )

    def windows_of(sel):
        """Windows (n, d, C*d) of the columns ``sel`` (indices into columns)."""
        cols = columns[sel]
        out = np.empty((len(cols), d, len(channel_names) * d), np.float32)
        # Array index of each column's frame (nav_index is in HyperSpy's x-first order).
        where = cols.nav_index[:, ::-1] if nav_shape else np.zeros((len(cols), 0), int)
        for key in np.unique(where, axis=0) if len(cols) else []:
            m = np.all(where == key, axis=1)
            key = tuple(int(k) for k in key)
            frame = np.asarray(frames[key])
            if not np.all(np.isfinite(frame)):
                raise ValueError(
                    "the image has NaN or inf pixels: windows would carry them; replace them first"
                )
            win = extract_windows(frame, cols.xy[m], d, edge)  # (n, C, d, d)
            out[m] = win.transpose(0, 2, 1, 3).reshape(len(win), d, -1)
        return out

    n = len(columns)
    if lazy:
        import dask
        import dask.array as da

        blocks = [
            da.from_delayed(
                dask.delayed(windows_of)(np.arange(s, min(n, s + CHUNK))),
                shape=(min(n, s + CHUNK) - s, d, len(channel_names) * d),
                dtype=np.float32,
            )
            for s in range(0, n, CHUNK)
        ]
        data = da.concatenate(blocks, axis=0)
        cls = LazyLocalDescriptors
    else:
        data = windows_of(np.arange(n))
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
        "channels": list(channel_names),
        "edge": edge,
        "dropped": int(dropped),
        "centre": "(d - 1) / 2",
    }
    params.update(extra_metadata or {})
    out._set_state("local_descriptors", params)
    return out


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
