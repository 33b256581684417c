"""LocalDescriptors: a stack of d x d windows, one per atomic column."""

from __future__ import annotations

import numpy as np
from hyperspy._signals.lazy import LazySignal

from stemunmix.signals._base import StemunmixSignal2D, not_yet


class LocalDescriptors(StemunmixSignal2D):
    """One window per column, signal_type ``"local_descriptors"``.

    Navigation: the columns, in the order of ``.columns``. Signal: the d x d
    window (channels tiled side by side). The source image's shape and
    calibration are kept so loadings can be mapped back onto it.
    """

    _signal_type = "local_descriptors"

    def _columns_frame(self):
        source = self._get_state("source")
        if source is None:
            return np.zeros(2), np.ones(2)
        return np.asarray(source["offset"], float), np.asarray(source["scale"], float)

    @property
    def source_shape(self) -> tuple[int, ...] | None:
        """Shape (rows, cols) of the image the windows were cut from."""
        source = self._get_state("source")
        return None if source is None else tuple(int(v) for v in source["shape"])

    def get_loading_maps(self, **kwargs):
        """Loadings of a decomposition/BSS/cluster result on the image grid."""
        not_yet("LocalDescriptors.get_loading_maps", "Descriptors")


class LazyLocalDescriptors(LazySignal, LocalDescriptors):
    """Lazy twin of :class:`LocalDescriptors`."""
