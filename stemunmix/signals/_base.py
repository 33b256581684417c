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

STATE = "Signal.stemunmix"


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
            return None
        columns = Columns.from_dict(d)
        offset, scale = self._columns_frame()
        old_offset = np.asarray(d.get("frame_offset", offset), float)
        old_scale = np.asarray(d.get("frame_scale", scale), float)
        if not (
            np.array_equal(old_offset, offset) and np.array_equal(old_scale, scale)
        ):
            columns.xy = (old_offset + old_scale * columns.xy - offset) / scale
        return columns

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
