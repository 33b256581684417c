"""The shared base of stemunmix's signals.

All state the package adds to a signal (columns, class names, processing
parameters) lives in ``metadata.Signal.stemunmix``. HyperSpy already carries
metadata through ``deepcopy``, ``as_lazy``, ``compute``, slicing and save/load, so
this state needs no special handling, and a file saved with stemunmix still loads
(as a plain Signal2D with that metadata) where stemunmix is not installed.
"""

from __future__ import annotations

import numpy as np
from hyperspy._signals.lazy import LazySignal
from hyperspy._signals.signal2d import Signal2D

from stemunmix.columns import Columns
from stemunmix.core.checks import UNITS, calibrated
from stemunmix.core.checks import unit_key as _unit
from stemunmix.core.windows import on_frame

STATE = "Signal.stemunmix"


class Linked:
    """A signal held in another's metadata by reference. Copies of the holder
    (a crop, a rebin, ``deepcopy``) share it rather than copy its data: an
    image's maps and the maps' raw image are read, never changed in place,
    once made. Saved as the signal itself (:meth:`StemunmixSignal2D.save`)."""

    __slots__ = ("signal",)

    def __init__(self, signal):
        self.signal = signal

    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self

    def __repr__(self):
        return f"<linked {self.signal!r}>"


class StemunmixSignal2D(Signal2D):
    """Base of the stemunmix signals; not meant to be used directly."""

    def __init__(self, data, **kwargs):
        ndim = data.ndim if hasattr(data, "ndim") else np.ndim(data)
        # HyperSpy's own copies pass `axes` and may hold placeholder data.
        if ndim < 2 and "axes" not in kwargs:
            raise ValueError(
                f"data must be an image (2D) or a stack of images, got {ndim}D data"
            )
        super().__init__(data, **kwargs)
        if np.iscomplexobj(self.data):
            raise ValueError(
                "data must be real-valued; take `.real` or `abs()` of a complex "
                f"image before setting signal_type {self._signal_type!r}"
            )
        if self.axes_manager.signal_dimension != 2:
            raise ValueError(
                "data must have two signal dimensions (an image or a stack of "
                f"images), got signal dimension {self.axes_manager.signal_dimension}"
            )

    # --- state in metadata -------------------------------------------------------

    def _get_linked(self, key: str):
        """A signal linked in the state (:class:`Linked`), or None; one read
        back from a file (saved as the signal itself) is linked again."""
        value = self._get_state(key)
        if isinstance(value, Linked):
            return value.signal
        if hasattr(value, "axes_manager"):
            self._set_state(key, Linked(value))
            return value
        return None

    def _set_linked(self, key: str, signal) -> None:
        self._set_state(key, Linked(signal))

    def save(self, *args, **kwargs):
        """HyperSpy's ``save``, with the signals this one links (its maps, its
        raw image) written as nested signals, once each, and linked again
        after."""
        node = self.metadata.get_item(STATE) if self.metadata.has_item(STATE) else None
        items = node.as_dictionary().items() if node is not None else ()
        links = {k: v for k, v in items if isinstance(v, Linked)}
        try:
            for k, v in links.items():
                self._set_state(k, v.signal)
            return super().save(*args, **kwargs)
        finally:
            for k, v in links.items():
                self._set_state(k, v)

    def _get_state(self, key: str, default=None):
        path = f"{STATE}.{key}"
        if not self.metadata.has_item(path):
            return default
        value = self.metadata.get_item(path)
        return value.as_dictionary() if hasattr(value, "as_dictionary") else value

    def _set_state(self, key: str, value) -> None:
        self.metadata.set_item(f"{STATE}.{key}", value)

    def _columns_frame(self) -> tuple[np.ndarray, np.ndarray]:
        """(offset, scale) of the pixel grid the columns refer to, [x, y] order."""
        axes = self.axes_manager.signal_axes
        return (
            np.array([axes[0].offset, axes[1].offset], float),
            np.array([axes[0].scale, axes[1].scale], float),
        )

    @property
    def columns(self) -> Columns | None:
        """The atomic columns attached to this signal, in its pixel grid, or None.

        Stored with the calibration of the grid they were found on, so a crop
        (``isig``) or a rebinning keeps them on the right atoms.
        """
        d = self._get_state("columns")
        if d is None:
            return self._own_columns()
        offset, scale = self._columns_frame()
        return self._on_grid(
            Columns.from_dict(d),
            np.asarray(d.get("frame_offset", offset), float),
            np.asarray(d.get("frame_scale", scale), float),
        )

    def _on_grid(self, columns, old_offset, old_scale) -> Columns:
        """``columns`` found on a pixel grid of (offset, scale), [x, y], on this
        signal's: positions, sigmas, covariances and lattice vectors moved
        and scaled (a crop, a rebin), the columns now outside left out. The
        one transform for columns whoever owns them."""
        offset, scale = self._columns_frame()
        if np.array_equal(old_offset, offset) and np.array_equal(old_scale, scale):
            return columns
        ratio = old_scale / scale
        columns.xy = (old_offset + old_scale * columns.xy - offset) / scale
        columns.sigma = columns.sigma * ratio
        columns.covariance = columns.covariance * np.outer(ratio, ratio)
        if columns.lattice_vectors is not None:
            columns.lattice_vectors = columns.lattice_vectors * ratio
        inside = on_frame(columns.xy, self.data.shape)
        return columns if inside.all() else columns[inside]

    def _own_columns(self):
        """Columns a signal has through what it owns (an image: its maps')."""
        return None

    @columns.setter
    def columns(self, value: Columns | None) -> None:
        if value is None:
            if self.metadata.has_item(f"{STATE}.columns"):
                self.metadata.get_item(STATE).__delattr__("columns")
            return
        if not isinstance(value, Columns):
            raise TypeError(
                f"columns must be a stemunmix.Columns, got {type(value).__name__}; "
                "use Columns.from_atomap(...) to convert Atomap objects"
            )
        d = value.to_dict()
        d["frame_offset"], d["frame_scale"] = self._columns_frame()
        self._set_state("columns", d)


class LazyStemunmixSignal2D(LazySignal, StemunmixSignal2D):
    """Lazy twin of :class:`StemunmixSignal2D`."""


# --- HyperSpy conventions shared by every method ------------------------------


class progress_bar:
    """A progress bar honouring ``show_progressbar`` (None: HyperSpy's
    preference), as a context manager. The engine calls ``reset(total)`` and
    ``update(n)``; the tqdm bar appears only for two or more blocks, so a
    small image shows none."""

    def __init__(self, show_progressbar, desc: str):
        from hyperspy.defaults_parser import preferences

        show = preferences.General.show_progressbar
        self.show = show if show_progressbar is None else bool(show_progressbar)
        self.desc = desc
        self.bar = None

    def __enter__(self):
        return self if self.show else None

    def reset(self, total: int) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if total >= 2:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=self.desc, leave=False)

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        return False


# --- checks of the image geometry, shared by every method --------------------

SQUARE_TOLERANCE = 1e-3  # relative difference of the x and y pixel sizes


def check_image_axes(signal, method: str, square: bool = True) -> None:
    """Refuse, before any work, signal axes stemunmix cannot measure on:
    non-uniform axes, and pixels that are not square (the network, the column
    search and the windows all assume one pixel size); name the fix."""
    axes = signal.axes_manager.signal_axes
    for ax in axes:
        if not getattr(ax, "is_uniform", True):
            raise ValueError(
                f"{method}: signal axis {ax.name!r} is non-uniform; stemunmix needs "
                "a regular pixel grid: interpolate onto a uniform axis first (e.g. "
                "signal.interpolate_on_axis(new_axis, axis)), or use "
                "axes_manager[...].convert_to_uniform_axis()"
            )
    sx, sy = abs(float(axes[0].scale)), abs(float(axes[1].scale))
    if not (np.isfinite(sx) and np.isfinite(sy) and sx > 0 and sy > 0):
        raise ValueError(
            f"{method}: the pixel sizes must be finite and non-zero, got x {sx:g}, "
            f"y {sy:g}; set axes_manager[...].scale"
        )
    if square and abs(sx - sy) > SQUARE_TOLERANCE * max(sx, sy):
        raise ValueError(
            f"{method}: the pixels are not square (x {sx:g}, y {sy:g} "
            f"{axes[0].units}); the network and the column fit assume square "
            "pixels: resample first with image.square_pixels(), which "
            "interpolates the coarser axis onto the finer pixel size"
        )


def window_pixels(d, axes, name: str = "d") -> tuple[int, str]:
    """The window size in pixels and how it was read.

    The rule: an ``int`` is pixels; a ``float`` is in the axes' units; a string
    such as ``"0.5 nm"`` (or ``"24 px"``) carries its unit. Calibrated sizes
    need calibrated, square pixels. Returns (pixels, a sentence saying which).
    """
    if isinstance(d, str):
        return _from_text(d, axes, name)
    if isinstance(d, (bool, np.bool_)) or not isinstance(
        d, (int, float, np.integer, np.floating)
    ):
        raise TypeError(
            f"{name} must be a window size: an int (pixels), a float (the axes' "
            f'units) or a string like "0.5 nm", got {type(d).__name__}'
        )
    if isinstance(d, (float, np.floating)):
        return _from_units(float(d), str(axes[0].units), axes, name, d)
    if d < 3:
        raise ValueError(f"{name} must be at least 3 pixels, got {d}")
    return int(d), f"{name} = {d} pixels"


def _from_text(d: str, axes, name: str) -> tuple[int, str]:
    """:func:`window_pixels` of a size given with its unit ("24 px", "0.5 nm")."""
    import re

    m = re.fullmatch(r"\s*([-+0-9.eE]+)\s*(\S*)\s*", d)
    try:
        value, unit = float(m.group(1)), m.group(2)
    except (AttributeError, ValueError):
        raise ValueError(
            f'{name} = {d!r}: give a size such as 24 (pixels), "24 px" or "0.5 nm"'
        ) from None
    if unit == "":
        raise TypeError(
            f'{name} = {d!r}: a string needs its unit, e.g. "{d.strip()} px" '
            f'or "0.5 nm"; or pass the int {d.strip()} for pixels'
        )
    if unit != "px":
        return _from_units(value, unit, axes, name, d)
    if value != int(value) or value < 3:
        raise ValueError(f"{name} = {d!r}: a size in px must be a whole number >= 3")
    return int(value), f"{name} = {d!r} read as {int(value)} pixels"


def _from_units(value, unit, axes, name, given):
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive size, got {given!r}")
    if not calibrated(axes[0]):
        raise ValueError(
            f"{name} = {given!r} is read in the axes' units, but these axes are "
            "not calibrated; pass an int number of pixels (e.g. 24), or calibrate "
            "the axes (axes_manager[-1].scale = ..., .units = 'nm')"
        )
    axis_unit = str(axes[0].units)
    unit, axis_key = _unit(unit), _unit(axis_unit)
    if unit and unit != axis_key:
        if unit not in UNITS or axis_key not in UNITS:
            raise ValueError(
                f"{name} = {given!r}: cannot convert {unit!r} to the axes' units "
                f"{axis_unit!r}; give the size in {axis_unit} or in px"
            )
        value = value * UNITS[unit] / UNITS[axis_key]
    scales = [abs(float(ax.scale)) for ax in axes]
    if abs(scales[0] - scales[1]) > SQUARE_TOLERANCE * max(scales):
        raise ValueError(
            f"{name} = {given!r} in calibrated units is ambiguous on non-square "
            "pixels; pass an int number of pixels, or image.square_pixels() first"
        )
    pixels = int(round(value / scales[0]))
    if pixels < 3:
        raise ValueError(
            f"{name} = {given!r} is {pixels} pixels of {scales[0]:g} {axis_unit}; "
            "a window needs at least 3 pixels"
        )
    return pixels, f"{name} = {given!r} read as {value:g} {axis_unit} = {pixels} pixels"
