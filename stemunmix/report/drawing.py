"""What every report figure draws with: figures without pyplot, the first
frame, its calibration (lengths in nm whatever the file's unit) and its
columns, grids of panels and scale bars."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stemunmix.core.checks import calibrated, nm_per_unit


def _frame0(data):
    data = np.asarray(data)
    while data.ndim > 2:
        data = data[0]
    return data


def _first_frame_columns(columns):
    if columns.nav_index is None:
        return columns
    return columns[np.all(columns.nav_index == 0, axis=1)]


def _pixel_frame(image) -> tuple:
    """(scale x, scale y, offset x, offset y) the figures draw in: the
    axes' own on a calibrated image, pixels (1, 1, 0, 0) on one that is not
    (a scale without a length unit is no calibration)."""
    ax_x, ax_y = image.axes_manager.signal_axes
    if calibrated(ax_x):
        return ax_x.scale, ax_y.scale, ax_x.offset, ax_y.offset
    return 1.0, 1.0, 0.0, 0.0


def _extent(image):
    ax_x, ax_y = image.axes_manager.signal_axes
    sx, sy, ox, oy = _pixel_frame(image)
    x0, y0 = ox - sx / 2, oy - sy / 2
    return [x0, x0 + ax_x.size * sx, y0 + ax_y.size * sy, y0], (
        ax_x.units if calibrated(ax_x) else "px"
    )


def _subplots(rows=1, cols=1, figsize=(6, 4), squeeze=True):
    """A figure and its axes with no pyplot: nothing global (the user's
    backend, open figures) is touched, and the file is written by Agg."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, cols, squeeze=squeeze)


def _grid(n, size=3.2, max_cols=4, aspect=1.0):
    cols = min(n, max_cols)
    rows = int(np.ceil(n / cols))
    fig, axes = _subplots(
        rows, cols, figsize=(size * cols, size * rows * aspect + 0.4), squeeze=False
    )
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return fig, axes.ravel()[:n]


@dataclass
class _View:
    """What every report figure draws on: the first frame, its calibration
    and its columns."""

    raw: np.ndarray
    extent: list
    units: str
    scale: tuple  # (x, y) per pixel
    offset: tuple
    columns: object

    @classmethod
    def of(cls, result):
        sx, sy, ox, oy = _pixel_frame(result.image)
        extent, units = _extent(result.image)
        # Lengths in nm whatever the file's unit (a TIFF in m: not "1e-8 m").
        f = nm_per_unit(units) if units != "px" else None
        f, units = (f, "nm") if f is not None else (1.0, units)
        return cls(
            _frame0(result.image.data),
            [v * f for v in extent],
            units,
            (sx * f, sy * f),
            (ox * f, oy * f),
            _first_frame_columns(result.columns),
        )

    @property
    def aspect(self) -> float:
        return self.raw.shape[0] / self.raw.shape[1]


def _scale_bar(ax, extent, units, per_data_unit: float = 1.0) -> None:
    """A scale bar of a round length (about a fifth of the width), in the
    image's units (nm, or px when uncalibrated); ``per_data_unit``: those
    units per data unit of ``ax`` (the pixel size when it is drawn in pixels)."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    width = abs(extent[1] - extent[0]) * per_data_unit
    if not width > 0:
        return
    target = width / 5
    step = 10 ** np.floor(np.log10(target))
    length = max(v * step for v in (1, 2, 5) if v * step <= target)
    bar = AnchoredSizeBar(
        ax.transData,
        length / per_data_unit,
        f"{length:g} {units}",
        "lower right",
        pad=0.3,
        color="white",
        frameon=False,
        size_vertical=width / per_data_unit / 150,
    )
    ax.add_artist(bar)
