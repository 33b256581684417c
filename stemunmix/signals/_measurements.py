"""Per-cell measurements of Columns as HyperSpy signals, and their plots.

The core arrays come from :mod:`stemunmix.core.measure`; here they get axes,
units and titles: on the lattice grid (signal axes ``i`` and ``j``, one pixel
per cell, NaN where a cell is incomplete) or on the image grid (each cell's
value over the pixels nearest its B column, calibrated like the image).
"""

from __future__ import annotations

import numpy as np

from stemunmix.core import checks
from stemunmix.core.checks import calibrated
from stemunmix.core.maps import draw, map_reach
from stemunmix.core.measure import (
    cell_vectors,
    grid_shape,
    octahedral_cells,
    polarization_cells,
    region_polarization,
    significance,
    site_grid,
    strain_cells,
)
from stemunmix.core.windows import on_frame

POLARIZATION = ["x", "y", "sigma_x", "sigma_y", "significance", "covariance_xy"]
STRAIN = ["exx", "eyy", "exy", "rotation"]
# Appended after the quantities (DESIGN.md: the first keep their order).
STRAIN_SIGMA = ["sigma_exx", "sigma_eyy", "sigma_exy", "sigma_rotation"]
OCTAHEDRA = [
    "a_x",
    "a_y",
    "a_tilt",
    "a_sigma_tilt",
    "b_x",
    "b_y",
    "b_tilt",
    "b_sigma_tilt",
]


def _single(columns):
    if columns.nav_index is not None:
        raise ValueError(
            "these columns belong to an image stack: pick one frame first, "
            "columns.frame(index)"
        )
    if columns.ij is None or not (columns.ij >= 0).any():
        raise ValueError(
            "these columns have no lattice sites (Columns.ij): find them with "
            "find_columns(), which indexes the lattice, or give ij="
        )


def _calibration(image):
    """(shape (H, W), scale, units, offset (x, y)) of ``image``: a signal,
    an array or None."""
    if image is None:
        return None, 1.0, "px", (0.0, 0.0)
    if hasattr(image, "axes_manager"):
        ax = image.axes_manager.signal_axes
        units = str(ax[0].units) if calibrated(ax[0]) else "px"
        return (
            (ax[1].size, ax[0].size),
            float(ax[0].scale),
            units,
            (float(ax[0].offset), float(ax[1].offset)),
        )
    return np.shape(image)[-2:], 1.0, "px", (0.0, 0.0)


def _reference_mask(reference, shape, name, where=None, image=None):
    """None, or the boolean (nj, ni) mask of the cells a region names: a
    boolean mask on the lattice grid (j, i); a boolean mask on the image
    grid (H, W); or a HyperSpy ROI (``hs.roi.RectangularROI``,
    ``CircleROI``, ``PolygonROI``: in the image's calibrated units with
    ``image``, in pixels without). For the last two, the cells whose
    position ``where`` (nj, ni, 2, pixels [x, y]) lies inside."""
    if reference is None or isinstance(reference, str):
        return None
    from hyperspy.roi import BaseROI

    if isinstance(reference, BaseROI):
        if where is None:
            raise TypeError(f"{name}: an ROI needs the cells' positions")
        reference = _roi_pixels(reference, image, where)
    mask = np.asarray(reference)
    if mask.dtype == bool and mask.shape == tuple(shape):
        return mask
    if mask.dtype == bool and mask.ndim == 2 and where is not None:
        return _cells_inside(mask, where)
    raise ValueError(
        f"{name} must be None, 'mean', a boolean mask of shape {tuple(shape)} on "
        "the lattice grid (j, i), a boolean mask on the image grid (H, W) or a "
        f"HyperSpy ROI (hs.roi.RectangularROI, ...), got {mask.dtype} {mask.shape}"
    )


def _roi_pixels(roi, image, where) -> np.ndarray:
    """The (H, W) pixels inside ``roi``: the ROI applied to a signal of
    pixel numbers calibrated like ``image`` (pixels without one, covering
    ``where``)."""
    import hyperspy.api as hs

    if image is not None:
        h, w = image.axes_manager.signal_shape[::-1]
    else:
        top = np.nanmax(np.asarray(where, float).reshape(-1, 2), 0)
        w, h = (int(np.ceil(v)) + 2 for v in top)
    numbers = hs.signals.Signal2D(np.arange(h * w, dtype=float).reshape(h, w))
    if image is not None:
        for mine, theirs in zip(
            numbers.axes_manager.signal_axes,
            image.axes_manager.signal_axes,
            strict=True,
        ):
            mine.scale, mine.offset, mine.units = (
                theirs.scale,
                theirs.offset,
                theirs.units,
            )
    inside = np.asarray(roi(numbers, axes=numbers.axes_manager.signal_axes).data, float)
    mask = np.zeros(h * w, bool)
    mask[inside[np.isfinite(inside)].astype(np.int64)] = True
    return mask.reshape(h, w)


def _cells_inside(mask, where) -> np.ndarray:
    """(nj, ni) bool: the cells whose position ``where`` (pixels [x, y])
    falls on a True pixel of ``mask`` (H, W)."""
    where = np.asarray(where, float)
    ok = np.isfinite(where).all(-1)
    col = np.where(ok, np.round(where[..., 0]), -1).astype(int)
    row = np.where(ok, np.round(where[..., 1]), -1).astype(int)
    h, w = mask.shape
    ok &= (row >= 0) & (row < h) & (col >= 0) & (col < w)
    out = np.zeros(where.shape[:-1], bool)
    out[ok] = mask[row[ok], col[ok]]
    return out


def shared(columns):
    """(N, 3) [width, sx, sy] of each column for
    :func:`stemunmix.core.measure.line_cross` (the width of its information
    across the scan lines, ``line_width``, else its fitted width, else the
    median of those of the class, else 2 px; the standard deviations of its
    line-shared scan term), or None where no column has line noise."""
    lines = columns.line_covariance
    if not (np.diagonal(lines, 0, 1, 2) > 0).any():
        return None
    q = columns.quantities
    width = q.get("line_width", q.get("width", np.full(len(columns), np.nan)))
    width = np.where(np.isfinite(width) & (width > 0), width, np.nan)
    fill = np.nanmedian(width) if np.isfinite(width).any() else 2.0
    width = np.where(np.isfinite(width), width, fill)
    return np.column_stack([width, np.sqrt(np.diagonal(lines, 0, 1, 2))])


def polarization(columns, a="A", b="B", reference=None, covariance=False, image=None):
    """(displacement (nj, ni, 2), sigma (nj, ni, 2), B positions (nj, ni, 2)),
    and with ``covariance`` the displacement's covariance (nj, ni, 2, 2)
    fourth (the reference's own uncertainty not included)."""
    _check_polarization(columns, a, b, reference)
    ca, cb = columns.select(a), columns.select(b)
    shape = grid_shape(columns.ij)
    disp, sigma, cov = polarization_cells(
        ca.xy,
        ca.covariance,
        ca.ij,
        cb.xy,
        cb.covariance,
        cb.ij,
        shape,
        return_covariance=True,
        shared_a=shared(ca),
        shared_b=shared(cb),
    )
    if not np.isfinite(disp).all(-1).any():
        _no_complete_cell(ca, cb, a, b)
    where = site_grid(cb.ij, cb.xy, shape)
    mask = _reference_mask(reference, shape, "reference", where, image)
    if reference is not None:
        sel = np.isfinite(disp).all(-1) & (True if mask is None else mask)
        if not sel.any():
            raise ValueError("reference holds no complete cell with a B column")
        disp = disp - np.median(disp[sel], 0)
    if covariance:
        return disp, sigma, where, cov
    return disp, sigma, where


def _check_polarization(columns, a, b, reference) -> None:
    _single(columns)
    from hyperspy.roi import BaseROI

    if not (
        reference is None
        or isinstance(reference, (str, BaseROI))
        or hasattr(reference, "shape")
    ):
        raise TypeError(
            "reference must be None, 'mean', a boolean mask array or a HyperSpy ROI"
        )
    if isinstance(reference, str) and reference != "mean":
        raise ValueError(f"reference must be None, 'mean' or a mask, got {reference!r}")
    missing = [n for n in (a, b) if n not in columns.class_names]
    if missing:
        raise ValueError(
            f"no {missing[0]!r} columns: the polarization is a perovskite "
            f"quantity (the {b!r} column's offset from the centre of its cell "
            f"of {a!r} columns), and these columns' classes are "
            f"{_column_classes(columns)} (a crystal of one species has no B "
            "site; strain_map measures its lattice); pass a= and b= the classes "
            "of two sublattices that form such cells"
        )
    if columns.class_index(a) == columns.class_index(b):
        raise ValueError(
            f"a and b name the same class ({a!r}): the polarization is the b "
            "columns' displacement from the cell of the a columns; e.g. a='A', b='B'"
        )


def _no_complete_cell(ca, cb, a, b):
    raise ValueError(
        f"no complete cell: the polarization needs {b!r} columns with all four "
        f"{a!r} corners on the lattice, and these columns hold {len(ca)} {a!r} "
        f"and {len(cb)} {b!r} (indexed: {int((ca.ij >= 0).all(1).sum())} and "
        f"{int((cb.ij >= 0).all(1).sum())}); find the columns on an image of "
        "several unit cells"
    )


def polarization_region(
    columns, region, reference=None, a="A", b="B", image=None
) -> dict:
    _single(columns)
    ca, cb = columns.select(a), columns.select(b)
    shape = grid_shape(columns.ij)
    where = site_grid(cb.ij, cb.xy, shape)
    region = _reference_mask(region, shape, "region", where, image)
    if region is None:
        raise TypeError(
            f"region must be a boolean mask of shape {shape} (j, i), one on the "
            "image grid, or a HyperSpy ROI"
        )
    reference = _reference_mask(reference, shape, "reference", where, image)
    return region_polarization(
        ca.xy,
        ca.covariance,
        ca.ij,
        cb.xy,
        cb.covariance,
        cb.ij,
        region,
        reference,
        shape,
        shared_a=shared(ca),
        shared_b=shared(cb),
    )


def polarization_map(columns, a="A", b="B", reference=None, grid="lattice", image=None):
    disp, sigma, where, cov = polarization(
        columns, a, b, reference, covariance=True, image=image
    )
    stack = np.concatenate(
        [disp, sigma, significance(disp, cov)[..., None], cov[..., 0, 1, None]], -1
    )
    # lengths in the image's units; the significance a pure number; the
    # covariance an area (scaled twice below)
    out = _signal(
        stack,
        where,
        grid,
        image,
        POLARIZATION,
        f"Polarization ({b} from the centre of its {a} cell)",
        [True, True, True, True, False, True],
        "image units (significance: |P| / sigma; covariance_xy: image units^2)",
    )
    if image is not None:
        out.data[5] *= _calibration(image)[1]
    return out


def _column_classes(columns) -> list:
    return [n for n in columns.class_names if n != "background"]


def lattice_class(columns, a="A") -> str:
    """The class whose lattice strain is measured on: ``a``; the default
    ``"A"`` on columns without an A class (one species) is their first
    column class."""
    if a == "A" and a not in columns.class_names and _column_classes(columns):
        return _column_classes(columns)[0]
    return a


def strain_map(columns, a="A", reference=None, grid="lattice", image=None):
    _single(columns)
    a = lattice_class(columns, a)
    ca = columns.select(a)
    ok = (ca.ij >= 0).all(1)
    if not ok.any():
        raise ValueError(f"no {a} column has a lattice site")
    shape = grid_shape(columns.ij)
    av, bv = cell_vectors(ca.xy, ca.ij, shape)
    centre = site_grid(ca.ij, ca.xy, shape) + 0.5 * (av + bv)
    mask = _reference_mask(reference, shape, "reference", centre, image)
    strain = strain_cells(
        ca.xy, ca.ij, shape, mask, sigma_a=ca.covariance, shared_a=shared(ca)
    )
    stack = np.stack([strain[k] for k in STRAIN + STRAIN_SIGMA], -1)
    names, title = STRAIN + STRAIN_SIGMA, f"Strain of the {a} lattice"
    return _signal(stack, centre, grid, image, names, title, False)


def octahedral_map(columns, o="O", b="B", grid="lattice", image=None):
    _single(columns)
    co = columns.select(o) if o in columns.class_names else columns[:0]
    cb = columns.select(b)
    if len(co) == 0:
        raise ValueError(
            f"no {o} columns: find them with a model that has an O class "
            "(segment(model='oxygen'), the default for ABF/BF images)"
        )
    shape = grid_shape(columns.ij)
    cells = octahedral_cells(
        cb.xy,
        cb.covariance,
        cb.ij,
        co.xy,
        co.covariance,
        shape,
        shared_b=shared(cb),
        shared_o=shared(co),
    )
    parts = []
    for k in ("a", "b"):
        c = cells[k]
        parts += [
            c["displacement"][..., 0],
            c["displacement"][..., 1],
            c["tilt"],
            c["sigma_tilt"],
        ]
    return _signal(
        np.stack(parts, -1),
        site_grid(cb.ij, cb.xy, shape),
        grid,
        image,
        OCTAHEDRA,
        f"{o} columns on the {b}-{b} bonds",
        [not n.endswith("tilt") for n in OCTAHEDRA],
        "x, y: image units; tilt: degrees",
    )


def _signal(stack, where, grid, image, names, title, lengths, units_note=None):
    """A Signal2D (len(names), ...) of per-cell values on the lattice or the
    image grid; ``lengths`` (one bool, or one per quantity): the values are
    pixel lengths, calibrated with the image."""
    import hyperspy.api as hs

    if grid not in ("lattice", "image"):
        raise ValueError(f"grid must be 'lattice' or 'image', got {grid!r}")
    shape, scale, units, offset = _calibration(image)
    per = np.broadcast_to(np.asarray(lengths, bool), (len(names),))
    factor = np.where(per, scale, 1.0)[:, None, None]
    values = np.moveaxis(stack, -1, 0) * factor
    if grid == "image":
        if shape is None:
            raise ValueError("grid='image' needs image= (the image, for its shape)")

        _check_on_image(where, shape)
        ok = np.isfinite(where).all(-1) & np.isfinite(values).all(0)
        xy, vals = where[ok], values[:, ok].T
        # the one map-drawing path (the engine, block by block)
        frames = {(): (xy, vals)}
        reach = map_reach(xy)
        data = draw(frames, (), shape, len(names), "voronoi", reach, 2048, False)
        axes_units, axes_scale, axes_offset = units, scale, offset
        axis_names = ("x", "y")
    else:
        data = values
        axes_units, axes_scale, axes_offset = "site", 1.0, (0.0, 0.0)
        axis_names = ("i", "j")
    out = hs.signals.Signal2D(data)
    out.axes_manager.navigation_axes[0].name = "quantity"
    for ax, name, off in zip(
        out.axes_manager.signal_axes, axis_names, axes_offset, strict=True
    ):
        ax.name, ax.units, ax.scale, ax.offset = name, axes_units, axes_scale, off
    out.metadata.General.title = title
    out.metadata.set_item("Signal.quantities", list(names))
    if units_note is None:
        units_note = units if per.all() else "strain (rotation: rad)"
    out.metadata.set_item(
        "Signal.quantity_units", units_note.replace("image units", units)
    )
    return out


def _check_on_image(where, shape) -> None:
    """The cells' positions lie on the image given."""

    xy = where[np.isfinite(where).all(-1)]
    if len(xy) == 0 or on_frame(xy, shape).all():
        return
    lo, hi = xy.min(0), xy.max(0)
    h, w = (int(v) for v in shape)
    raise ValueError(
        f"image: the columns span x {lo[0]:.0f} to {hi[0]:.0f}, y {lo[1]:.0f} "
        f"to {hi[1]:.0f} px, outside this {h} x {w} px image; give the image "
        "the columns were found on"
    )


def hsv_image(dx, dy, max_length=None):
    """RGB (..., 3) of displacement: hue the direction, value the length
    (saturating at ``max_length``, default the 99th percentile); black where NaN."""
    from matplotlib.colors import hsv_to_rgb

    length = np.hypot(dx, dy)
    finite = np.isfinite(length)
    top = max_length or (np.percentile(length[finite], 99) if finite.any() else 1.0)
    hue = (np.arctan2(dy, dx) / (2 * np.pi)) % 1.0
    value = np.clip(length / (top or 1.0), 0, 1)
    rgb = hsv_to_rgb(
        np.stack([np.nan_to_num(hue), np.ones_like(hue), np.nan_to_num(value)], -1)
    )
    rgb[~finite] = 0.0
    return rgb, top


def hsv_key(ax, top, unit=""):
    """A colour wheel beside ``ax``, where a colour bar would be: the colour
    of each direction and length of an HSV map drawn with ``imshow`` (rows
    down), full at ``top``; white outside the disc."""
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    r = np.linspace(-1, 1, 65)
    dx, dy = np.meshgrid(r, r)
    rgb, _ = hsv_image(dx, dy, max_length=1.0)
    rgb[np.hypot(dx, dy) > 1] = 1.0
    key = make_axes_locatable(ax).append_axes("right", size="12%", pad=0.1)
    key.imshow(rgb, extent=(-1, 1, 1, -1), interpolation="bilinear")
    key.set_xticks([])
    key.set_yticks([])
    key.set_xlabel(f"full: {top:.3g} {unit}".strip(), fontsize=7)
    key.set_ylabel("hue: direction", fontsize=7)
    return key


def plot_polarization(
    columns,
    image=None,
    a="A",
    b="B",
    kind="quiver",
    reference=None,
    scale=None,
    ax=None,
):
    import matplotlib.pyplot as plt

    checks.one_of("kind", kind, ("quiver", "hsv"))
    disp, _, where = polarization(columns, a, b, reference)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    if kind == "quiver":
        _quiver(ax, columns, image, disp, where, scale)
    elif image is not None:
        sig = polarization_map(columns, a, b, reference, "image", image)
        rgb, top = hsv_image(sig.data[0], sig.data[1])
        ax.imshow(np.asarray(getattr(image, "data", image)), cmap="gray")
        ax.imshow(rgb, alpha=0.6)
    else:
        rgb, top = hsv_image(disp[..., 0], disp[..., 1])
        ax.imshow(rgb, origin="upper")
        ax.set_xlabel("i")
        ax.set_ylabel("j")
    if kind == "hsv":
        ax.set_title(f"hue: direction, brightness: length (full at {top:.3g})")
        hsv_key(ax, top)
    ax.set_aspect("equal")
    return ax


def _quiver(ax, columns, image, disp, where, scale) -> None:
    """Arrows at the cells over ``image``: colour in pm on a calibrated image
    (nm), else px; enlarged so the median one is a third of a lattice step,
    unless ``scale`` is given (matplotlib's quiver scale)."""
    ok = np.isfinite(disp).all(-1)
    if image is not None:
        ax.imshow(np.asarray(getattr(image, "data", image)), cmap="gray")
    length = np.hypot(*disp[ok].T)
    per_px, unit = 1.0, "px"
    axes = getattr(getattr(image, "axes_manager", None), "signal_axes", None)
    if axes and str(axes[0].units) == "nm":
        per_px, unit = 1000.0 * float(axes[0].scale), "pm"
    vectors = columns.lattice_vectors
    step = (
        float(np.hypot(*np.asarray(vectors).reshape(-1, 2).T).min())
        if vectors is not None
        else 10.0
    )
    gain = None
    if scale is None and len(length) and np.median(length) > 0:
        gain = step / 3 / float(np.median(length))
        scale = 1 / gain
    q = ax.quiver(
        where[ok][:, 0],
        where[ok][:, 1],
        disp[ok][:, 0],
        disp[ok][:, 1],
        length * per_px,
        cmap="viridis",
        scale=scale,
        angles="xy",
        scale_units="xy" if gain else None,
    )
    label = f"displacement ({unit})" + (f"; arrows x{gain:.0f}" if gain else "")
    ax.figure.colorbar(q, ax=ax, label=label)
    if image is None:
        ax.invert_yaxis()


def intensity_classes(columns, name, n_classes, quantity, random_state) -> np.ndarray:
    """:meth:`stemunmix.Columns.intensity_classes`: a Gaussian mixture of the
    ``name`` columns' fitted ``quantity``, classes ranked by their mean."""
    from stemunmix.learn import GaussianMixture

    n_classes = checks.count("n_classes", n_classes, 2)
    if quantity not in columns.quantities:
        raise ValueError(
            f"quantity {quantity!r} is not among these columns' quantities "
            f"{sorted(columns.quantities)}; find_columns(refine='gaussian') "
            "fits height, intensity, width, background and residual"
        )
    own = columns.labels == columns.class_index(name)
    values = columns.quantities[quantity]
    use = own & np.isfinite(values)
    if use.sum() < 2 * n_classes:
        raise ValueError(
            f"{int(use.sum())} {name} columns with a fitted {quantity}: too "
            f"few for {n_classes} classes"
        )
    x = values[use][:, None]
    gmm = GaussianMixture(n_classes, random_state=random_state).fit(x)
    raw = gmm.predict(x)
    rank = np.argsort(
        np.argsort(
            [
                x[raw == k].mean() if (raw == k).any() else np.inf
                for k in range(n_classes)
            ]
        )
    )
    out = np.full(len(columns), -1, int)
    out[use] = rank[raw]
    return out


def site_map(columns, values, name, title):
    """:meth:`stemunmix.Columns.site_map`: per-column values of the ``name``
    columns on the lattice grid, NaN at sites without one."""
    import hyperspy.api as hs

    _single(columns)
    values = np.asarray(values, float)
    if values.shape != (len(columns),):
        raise ValueError(
            f"values must have shape ({len(columns)},), got {values.shape}"
        )
    own = columns.labels == columns.class_index(name)
    shape = grid_shape(columns.ij)
    grid = site_grid(columns.ij[own], values[own], shape)
    out = hs.signals.Signal2D(grid)
    for ax, n in zip(out.axes_manager.signal_axes, "ij", strict=True):
        ax.name, ax.units = n, "site"
    out.metadata.General.title = title or f"{name} sites"
    return out
