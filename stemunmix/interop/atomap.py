"""Columns <-> Atomap sublattices. Positions stay [x, y] pixels on both sides."""

from __future__ import annotations

import numpy as np

from stemunmix.core.plotting import COLORS

# Columns arrive duck-typed (xy, labels, class_names, nav_index): this module
# never imports stemunmix.columns, whose methods call it.


# Fitted centres of columns cut by the frame edge may lie just outside it (the
# refinement moves a centroid inside the frame by at most 4 px).
EDGE_MARGIN = 5.0


def _check_columns(columns, shape) -> None:
    """Atomap works on one frame, with every column inside it (up to
    ``EDGE_MARGIN`` pixels beyond its edge)."""
    if columns.nav_index is not None and len(np.unique(columns.nav_index, axis=0)) > 1:
        raise ValueError(
            "columns span several frames of a stack; Atomap takes one frame: "
            "pass columns.frame(index) with image.inav[index]"
        )
    h, w = shape
    m = EDGE_MARGIN
    outside = (
        (columns.x < -m)
        | (columns.x > w - 1 + m)
        | (columns.y < -m)
        | (columns.y > h - 1 + m)
    )
    if outside.any():
        raise ValueError(
            f"{int(outside.sum())} of {len(columns)} columns lie outside the "
            f"{h} x {w} image (more than {m:g} px beyond its edge); pass the image "
            "they were found on, or keep the ones inside with columns[mask]"
        )


def _image_and_calibration(image, columns, pixel_size, units):
    """A 2D array for Atomap, and the pixel size / units to hand it; refuses
    columns Atomap cannot take on it (:func:`_check_columns`)."""
    data, pixel_size, units = _frame(image, columns, pixel_size, units)
    _check_columns(columns, data.shape)
    return data, pixel_size, units


def _frame(image, columns, pixel_size, units):
    if image is None:
        extent = np.ceil(columns.xy.max(0) + 2).astype(int) if len(columns) else (2, 2)
        return np.zeros((extent[1], extent[0])), pixel_size or 1.0, units or "pixel"
    if hasattr(image, "axes_manager"):
        ax = image.axes_manager.signal_axes[0]
        if image.axes_manager.navigation_dimension:
            raise ValueError(
                "image must be a single frame; select one with image.inav[...]"
            )
        units = units or (ax.units if isinstance(ax.units, str) and ax.units else None)
        return np.asarray(image.data), pixel_size or ax.scale, units or "pixel"
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image must be 2D, got shape {image.shape}")
    return image, pixel_size or 1.0, units or "pixel"


def to_sublattices(columns, image=None, pixel_size=None, units=None):
    """One ``atomap.Sublattice`` per class that has columns, named by class."""
    Sublattice = _atomap().Sublattice

    data, pixel_size, units = _image_and_calibration(image, columns, pixel_size, units)
    out = []
    for k, name in enumerate(columns.class_names):
        sel = columns.labels == k
        if name == "background" or not sel.any():
            continue
        out.append(
            Sublattice(
                columns.xy[sel],
                image=data,
                name=name,
                color=COLORS[k % len(COLORS)],
                pixel_size=pixel_size,
                units=units,
            )
        )
    return out


def to_atom_lattice(columns, image=None, pixel_size=None, units=None):
    """An ``atomap.Atom_Lattice`` holding :func:`to_sublattices`."""
    Atom_Lattice = _atomap().Atom_Lattice

    data, pixel_size, units = _image_and_calibration(image, columns, pixel_size, units)
    subs = to_sublattices(columns, data, pixel_size, units)
    return Atom_Lattice(image=data, name="stemunmix columns", sublattice_list=subs)


def read_atomap(obj) -> tuple[np.ndarray, np.ndarray, list]:
    """(xy (N, 2) [x, y] pixels, labels (N,), class names) of a Sublattice, a
    list of Sublattices, or an Atom_Lattice."""
    subs = getattr(obj, "sublattice_list", obj)
    if hasattr(subs, "x_position"):
        subs = [subs]
    try:
        subs = list(subs)
    except TypeError:
        raise TypeError(
            "obj must be an atomap Sublattice, a list of them or an Atom_Lattice, "
            f"got {type(obj).__name__}"
        ) from None
    if not subs or not all(hasattr(s, "x_position") for s in subs):
        raise TypeError(
            "obj must be an atomap Sublattice, a list of them or an Atom_Lattice"
        )
    names, xy, labels = [], [], []
    for k, sub in enumerate(subs):
        default = ["A", "B", "C", "D"][k] if k < 4 else f"class{k}"
        names.append(str(sub.name) if sub.name else default)
        pos = np.stack([np.asarray(sub.x_position), np.asarray(sub.y_position)], 1)
        xy.append(pos.reshape(-1, 2))
        labels.append(np.full(len(pos), k))
    return np.concatenate(xy), np.concatenate(labels), names


def _atomap():
    """``atomap.api``, imported without the VisibleDeprecationWarnings its
    imports of HyperSpy's old module paths raise (atomap's code, not the
    user's: nothing they can act on). Our own warnings are not touched."""
    import warnings

    from hyperspy.exceptions import VisibleDeprecationWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=VisibleDeprecationWarning)
        import atomap.api

    return atomap.api
