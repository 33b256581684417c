"""ColumnProbabilities: per-class probability maps of the atomic columns."""

from __future__ import annotations

from hyperspy._signals.lazy import LazySignal

from stemunmix.signals._base import StemunmixSignal2D, not_yet


class ColumnProbabilities(StemunmixSignal2D):
    """Per-class probability maps, signal_type ``"column_probabilities"``.

    The class is a navigation axis named ``class``; in the data array it sits
    right before the signal axes, ``(..., class, y, x)``, so for one image
    ``data[k]`` is the map of class ``class_names[k]``.
    """

    _signal_type = "column_probabilities"

    @property
    def class_names(self) -> list[str]:
        """Name of each class, in the order of the ``class`` axis."""
        names = self._get_state("class_names")
        if names is None:
            n = self.axes_manager["class"].size if self._has_class_axis() else 1
            return [f"class{i}" for i in range(n)]
        return [str(n) for n in names]

    @class_names.setter
    def class_names(self, names) -> None:
        names = [str(n) for n in names]
        if self._has_class_axis() and len(names) != self.axes_manager["class"].size:
            raise ValueError(
                f"class_names needs {self.axes_manager['class'].size} names, "
                f"got {len(names)}"
            )
        self._set_state("class_names", names)

    def _has_class_axis(self) -> bool:
        return any(ax.name == "class" for ax in self.axes_manager.navigation_axes)

    def find_columns(self, **kwargs):
        """Locate the atomic columns (stemunmix.Columns)."""
        not_yet("ColumnProbabilities.find_columns", "Columns")

    def local_descriptors(self, d, columns=None, **kwargs):
        """A d x d window around every column (LocalDescriptors)."""
        not_yet("ColumnProbabilities.local_descriptors", "Descriptors")


class LazyColumnProbabilities(LazySignal, ColumnProbabilities):
    """Lazy twin of :class:`ColumnProbabilities`."""
