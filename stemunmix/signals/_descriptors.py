"""Building LocalDescriptors from an image or probability maps (layer 2 helper)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stemunmix.columns import Columns
from stemunmix.core import checks, engine
from stemunmix.core.measure import grid_shape
from stemunmix.core.neighbours import cell_centres, displacement_descriptors
from stemunmix.core.windows import EDGES, gather, inside_mask, on_frame

SOURCES = ("probabilities", "image")
NAVIGATIONS = ("columns", "lattice")
CENTRES = ("column", "cell")


@dataclass(frozen=True)
class Windows:
    """The window arguments of ``local_descriptors``, parsed once per call
    (:func:`check_arguments`): ``d`` in pixels and how it was read, the edge
    rule, the source, the classes and channels (tuples of names, or None for
    every column class), the navigation and where windows are centred."""

    d: int
    d_read: str
    edge: str = "drop"
    source: str = "probabilities"
    classes: tuple | None = None
    channels: tuple | None = None
    navigation: str = "columns"
    centre: str = "column"
    normalize: str | None = None


def check_arguments(
    d,
    edge,
    source,
    axes,
    shape,
    column_classes=None,
    classes=None,
    channels=None,
    channel_classes=None,
    navigation="columns",
    stack=False,
    centre="column",
    normalize=None,
) -> Windows:
    """Validate the cheap arguments of ``local_descriptors`` before any
    segmentation or column finding; returns them parsed (:class:`Windows`).

    ``column_classes``: the classes columns can have (the model's, less
    background); ``channel_classes``: the classes windows can be cut from.
    """
    from stemunmix.signals._base import window_pixels

    d_px, how = window_pixels(d, axes)
    checks.one_of("edge", edge, EDGES)
    checks.one_of("source", source, SOURCES)
    checks.one_of("navigation", navigation, NAVIGATIONS)
    checks.one_of("centre", centre, CENTRES)
    checks.one_of("normalize", normalize, (None, "mean"))
    if navigation == "lattice" and stack:
        raise ValueError(
            "navigation='lattice' takes one image, not a stack: pick a frame "
            "(image.inav[...]) or use navigation='columns'"
        )
    h, w = shape[-2:]
    if d_px >= min(h, w) if edge == "drop" else d_px > min(h, w):
        raise ValueError(
            f"d = {d_px} pixels does not fit in the image ({h} x {w}); use a window "
            "of about 1.2 column spacings"
        )
    classes = _check_classes(classes, column_classes, navigation)
    channels = _check_channels(channels, channel_classes, source)
    return Windows(
        d=d_px, d_read=how, edge=edge, source=source,
        classes=None if classes is None else tuple(classes),
        channels=None if channels is None else tuple(channels),
        navigation=navigation, centre=centre, normalize=normalize,
    )  # fmt: skip


def _check_classes(classes, column_classes, navigation):
    """``classes`` as a list of names among ``column_classes`` (None: all);
    one class on the lattice grid."""

    if classes is not None and column_classes is not None:
        classes = checks.class_names("classes", classes, column_classes)
    if navigation == "lattice" and column_classes is not None:
        wanted = column_classes if classes is None else classes
        if len(wanted) != 1:
            raise ValueError(
                "navigation='lattice' puts one window on each lattice site, and "
                f"the columns of {list(wanted)} share their sites: choose one "
                "class, e.g. classes='B'"
            )
    return [classes] if isinstance(classes, str) else classes


def _check_channels(channels, channel_classes, source):
    """The channels windows are cut from: ``["image"]`` for the image, class
    names among ``channel_classes`` for the maps (None: every column class)."""

    if source == "image":
        if channels not in (None, ["image"], "image"):
            raise ValueError(
                "channels: source='image' has one channel, 'image'; leave "
                "channels=None, or use source='probabilities' for class channels"
            )
        return ["image"]
    if channels is not None and channel_classes is not None:
        return checks.class_names("channels", channels, channel_classes)
    return channels


def build(frames, channel_names, columns: Columns, windows: Windows, axes, title,
          lazy_output, extra_metadata=None, block: int = 1024, progress=None):  # fmt: skip
    """LocalDescriptors from ``frames`` (nav..., C, H, W) numpy/dask and columns.

    ``axes``: the signal axes (x, y) of the source image, for calibration;
    ``block``: image pixels per side of a block of windows (one task when
    lazy; no effect on the values). Each window is centred on its column or
    on the centre of its column's cell (``windows.centre``,
    :func:`cell_centred`), gathered by :func:`stemunmix.core.windows.gather`
    on the engine.
    """
    from stemunmix.signals.local_descriptors import (
        LazyLocalDescriptors,
        LocalDescriptors,
    )

    w = windows
    d, (h, wd), nav_shape = w.d, frames.shape[-2:], frames.shape[:-3]
    classes = None if w.classes is None else list(w.classes)
    if w.navigation == "lattice":
        _check_sites(columns)
    columns, at, left_out = _window_centres(columns, classes, w.edge, (h, wd), d,
                                            w.centre)  # fmt: skip
    lazy = engine.is_lazy(frames) if lazy_output is None else lazy_output
    frame_of = (
        columns.nav_index[:, ::-1] if nav_shape else np.zeros((len(columns), 0), int)
    )
    order, data = gather(frames, at, frame_of, d, w.edge, block, lazy, progress)
    if w.normalize == "mean":  # each window less its own mean
        data = data - data.mean(axis=(-2, -1), keepdims=True)
    columns = columns[order]
    cls = LazyLocalDescriptors if lazy else LocalDescriptors
    sites = None
    if w.navigation == "lattice":
        data, columns, sites = _on_lattice(data, columns)
    grid_axes = _nav_axes(len(columns), sites) + _window_axes(
        d, len(channel_names), axes
    )
    out = cls(data, axes=grid_axes)
    out.metadata.General.title = title
    out._set_state("source", _source_state(axes, (h, wd), nav_shape))
    out.columns = columns
    if sites is not None:
        out._set_state("sites", sites)
    params = _record(w, channel_names, left_out)
    out._set_state("local_descriptors", params | (extra_metadata or {}))
    return out


def _record(w: Windows, channel_names, left_out: dict) -> dict:
    """What ``metadata.Signal.stemunmix.local_descriptors`` records."""
    return {
        "d": w.d,
        "d_read": w.d_read,
        "channels": list(channel_names),
        "edge": w.edge,
        "dropped": sum(left_out.values()),
        "left_out": left_out,
        "centre": "(d - 1) / 2",
        "normalize": str(w.normalize),
        "navigation": w.navigation,
        "centred_on": w.centre,
    }


def _nav_axes(n_columns: int, sites) -> list:
    """One axis of columns, or the lattice grid's j and i (``sites``)."""
    nav = (
        [("column", n_columns, "")]
        if sites is None
        else [(n, size, "site") for n, size in zip("ji", sites.shape, strict=True)]
    )
    return [
        {"name": n, "size": size, "scale": 1, "offset": 0, "units": u, "navigate": True}
        for n, size, u in nav
    ]


def _source_state(axes, shape, nav_shape) -> dict:
    """The source image's grid, kept so maps can be drawn back onto it."""
    x, y = axes
    return {
        "shape": [int(v) for v in shape],
        "offset": [x.offset, y.offset],
        "scale": [x.scale, y.scale],
        "units": [str(x.units), str(y.units)],
        "nav_shape": list(nav_shape),
    }


def _window_centres(columns, classes, edge, shape, d, centre):
    """The columns that get a window, where each window is centred (the
    column, or its cell: :func:`cell_centred`) and how many were left out,
    by reason: {"edge": window across the edge (or off the image),
    "no_cell": no full cell of neighbours}."""
    every = columns
    columns, dropped = _columns_for_windows(columns, classes, edge, shape, d)
    if centre != "cell":
        return columns, columns.xy, {"edge": int(dropped), "no_cell": 0}
    columns, at, more = cell_centred(every, columns, edge, shape, d)
    return columns, at, {"edge": int(dropped), "no_cell": int(more)}


def _columns_for_windows(columns, classes, edge, shape, d):
    """The columns that get a window, and how many the edge policy dropped
    (each drop reported with a warning)."""
    h, w = shape
    if columns is None or len(columns) == 0:
        raise ValueError("no columns: run find_columns() first or pass columns=")
    if classes is not None:
        wanted = [classes] if isinstance(classes, (str, int)) else list(classes)
        idx = [columns.class_index(c) for c in wanted]
        present = set(np.unique(columns.labels))
        absent = [columns.class_names[i] for i in idx if i not in present]
        if absent:
            names = [columns.class_names[i] for i in sorted(present)]
            raise ValueError(f"classes {absent} have no columns; present: {names}")
        columns = columns[np.isin(columns.labels, idx)]
    n_before = len(columns)
    off = ~on_frame(columns.xy, (h, w))
    if edge == "nearest" and off.any():
        # Padding by the edge value is for windows that cross the edge; a
        # column off the image has no pixels of its own to describe.
        checks.warn(
            f"edge='nearest': {int(off.sum())} of {n_before} columns lie outside "
            f"the {h} x {w} image and were left out"
        )
        columns = columns[~off]
    if edge == "drop":
        columns = columns[inside_mask(columns.xy, (h, w), d)]
    if len(columns) == 0:
        raise ValueError(
            f"every column's {d} x {d} window crosses the image edge; use "
            "edge='nearest' or a smaller d"
        )
    dropped = n_before - len(columns)
    if dropped and edge == "drop":
        checks.note(
            f"edge='drop': {dropped} of {n_before} columns whose {d} x {d} window "
            "crosses the image edge were left out"
        )
    return columns, dropped


def cell_centred(every, columns, edge, shape, d):
    """The windows' columns, the centres of their cells (the centroid of
    their neighbours of the other class, on the median cell) and how many
    were left out (no full cell; for ``edge="drop"``, a cell window crossing
    the edge), with a warning when any were."""

    names = sorted(set(columns.labels.tolist()))
    if len(names) != 1:
        raise ValueError(
            "centre='cell' centres each window on its column's cell: choose one "
            "class, e.g. classes='B'"
        )
    others = [
        k
        for k, n in enumerate(every.class_names)
        if k != names[0] and n != "background" and (every.labels == k).any()
    ]
    if not others:
        raise ValueError(
            "centre='cell' needs the columns of another class around these "
            "(e.g. the A columns around B): find_columns() found none"
        )
    _one_image(columns, "centre='cell'")
    around = every[every.labels == others[0]]
    try:
        at, ok = cell_centres(columns.xy, around.xy)
    except ValueError:
        raise ValueError(
            f"centre='cell': no column has a full cell of "
            f"{every.class_names[others[0]]} neighbours ({len(columns)} window "
            f"columns, {len(around)} around them): the image holds too few cells; "
            "give a larger field of view, or centre='column'"
        ) from None
    if edge == "drop":
        ok &= inside_mask(at, shape, d)
    if not ok.any():
        raise ValueError("no column has a full cell of neighbours: use centre='column'")
    left = int((~ok).sum())
    if left:
        checks.note(
            f"centre='cell': {left} of {len(ok)} columns without a full cell of "
            f"{every.class_names[others[0]]} neighbours (or whose window would "
            "cross the edge) were left out"
        )
    return columns[ok], at[ok], left


def _one_image(columns, what: str) -> None:
    if columns.nav_index is not None and len(np.unique(columns.nav_index, axis=0)) > 1:
        raise ValueError(
            f"{what} describes one image: take one frame's columns with "
            "columns.frame(index)"
        )


def _check_sites(columns):
    if columns is not None and (columns.ij is None or (columns.ij < 0).any()):
        raise ValueError(
            "navigation='lattice' needs the lattice site of every column "
            "(Columns.ij, from find_columns()); these columns have none: use "
            "navigation='columns'"
        )


def _on_lattice(data, columns):
    """Windows (N, d, w) onto the lattice grid (nj, ni, d, w), zeros at the
    sites without a window; the columns in the grid's order (row j, then i)
    and the grid of column index per site (-1: none)."""
    _check_sites(columns)
    ij = columns.ij - columns.ij.min(0)
    nj, ni = grid_shape(ij)
    flat = ij[:, 1] * ni + ij[:, 0]
    if len(np.unique(flat)) != len(flat):
        raise ValueError(
            "two windows share a lattice site: use windows of one class "
            "(classes='B') or navigation='columns'"
        )
    order = np.argsort(flat)
    columns, flat = columns[order], flat[order]
    sites = np.full(nj * ni, -1, int)
    sites[flat] = np.arange(len(flat))
    zero = np.zeros((1,) + data.shape[1:], data.dtype)
    if not engine.is_lazy(data):
        padded = np.concatenate([data, zero])
    else:
        import dask.array as da

        padded = da.concatenate([data, da.from_array(zero)])
    pick = np.where(sites >= 0, order[np.maximum(sites, 0)], len(order))
    grid = padded[pick].reshape((nj, ni) + data.shape[1:])
    return grid, columns, sites.reshape(nj, ni)


def _window_axes(d, n_channels, axes):
    """Signal axes of a window stack: y and x of the window (channels side by
    side along x), centred on the column, calibrated as the image."""
    x, y = axes
    return [
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
            "size": n_channels * d,
            "scale": x.scale,
            "offset": -(d - 1) / 2 * x.scale,
            "units": x.units,
            "navigate": False,
        },
    ]


def scree_by_window(
    make_descriptors, d_values, n_components: int = 10, normalize: str | None = None
):
    """Explained variance of the first components against the window size.

    ``make_descriptors(d)`` builds the LocalDescriptors for size d. Returns a
    Signal1D: navigation = component (1..n), signal = d (a non-uniform axis),
    value = cumulative explained variance ratio (PCA by SVD, centred);
    ``normalize="mean"`` takes each window less its own mean first.
    """

    checks.one_of("normalize", normalize, (None, "mean"))
    from hyperspy._signals.signal1d import Signal1D

    d_values = [int(d) for d in d_values]
    if not d_values:
        raise ValueError("d_values must list at least one window size")
    curves = []
    for d in d_values:
        ld = make_descriptors(d)
        x = np.asarray(ld.data.compute() if ld._lazy else ld.data)
        x = x.reshape(len(x), -1).astype(np.float64)
        if normalize == "mean":
            x -= x.mean(1, keepdims=True)
        x -= x.mean(0)
        s = np.linalg.svd(x, compute_uv=False) ** 2
        ratio = np.cumsum(s) / s.sum()
        curves.append(
            np.pad(
                ratio[:n_components],
                (0, max(0, n_components - len(ratio))),
                mode="edge",
            )
        )
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


def displacements(columns, centre, around, reach, axes, shape, title):
    """The physical descriptor: LocalDescriptors of (2, K) per ``centre``
    column, the offsets [x; y] (pixels) of its K ``around`` neighbours from
    where the median cell puts them (:mod:`stemunmix.core.neighbours`).
    Signal axes: ``xy`` (x, y) and ``neighbour`` (in order of angle on the
    median cell). The columns with a neighbour missing (the edge, vacancies)
    get none; the learners and the maps take it like a window stack."""
    from stemunmix.signals.local_descriptors import LocalDescriptors

    if columns is None or len(columns) == 0:
        raise ValueError("no columns: run find_columns() first or pass columns=")
    _one_image(columns, "displacement_descriptors")
    if reach is not None:
        reach = checks.real("reach", reach, 0, low_open=True)
    cols_c, cols_a = columns.select(centre), columns.select(around)
    if len(cols_c) < 2 or len(cols_a) < 2:
        raise ValueError(
            f"need at least two {centre!r} and two {around!r} columns, found "
            f"{len(cols_c)} and {len(cols_a)}"
        )
    offsets, ok, ref = displacement_descriptors(cols_c.xy, cols_a.xy, reach)
    if not ok.any():
        raise ValueError(
            f"no {centre!r} column has all {len(ref)} of its {around!r} neighbours; "
            "check the classes or give reach="
        )
    data = np.ascontiguousarray(offsets[ok].transpose(0, 2, 1))  # (N, 2, K)
    out = LocalDescriptors(
        data,
        axes=[
            {"name": "column", "size": int(ok.sum()), "navigate": True},
            {
                "name": "xy",
                "size": 2,
                "scale": 1,
                "offset": 0,
                "units": "",
                "navigate": False,
            },
            {
                "name": "neighbour",
                "size": len(ref),
                "scale": 1,
                "offset": 0,
                "units": "",
                "navigate": False,
            },
        ],
    )
    out.metadata.General.title = title
    out._set_state("source", _source_state(axes, shape, ()))
    out.columns = cols_c[ok]
    out._set_state(
        "local_descriptors",
        {
            "kind": "displacements",
            "centre": str(centre),
            "around": str(around),
            "reference": ref.tolist(),
            "units": "px",
            "dropped": int((~ok).sum()),
        },
    )
    return out
