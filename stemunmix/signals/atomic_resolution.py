"""AtomicResolutionImage: a HAADF/ADF image (or a stack) of atomic columns."""

from __future__ import annotations

from hyperspy._signals.lazy import LazySignal

from stemunmix.signals._base import StemunmixSignal2D, not_yet


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
        batch_size=None,
        device=None,
        show_progressbar=None,
        lazy_output=None,
    ):
        """Per-class column probability maps (ColumnProbabilities)."""
        not_yet("AtomicResolutionImage.segment", "Segmentation")

    def find_columns(self, **kwargs):
        """Segment, then locate the atomic columns (stemunmix.Columns)."""
        not_yet("AtomicResolutionImage.find_columns", "Columns")

    def local_descriptors(self, d, columns=None, **kwargs):
        """A d x d window around every column (LocalDescriptors)."""
        not_yet("AtomicResolutionImage.local_descriptors", "Descriptors")


class LazyAtomicResolutionImage(LazySignal, AtomicResolutionImage):
    """Lazy twin of :class:`AtomicResolutionImage`."""
