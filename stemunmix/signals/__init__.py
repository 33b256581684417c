"""HyperSpy signal classes of stemunmix (layer 2: validate, delegate, annotate)."""

from stemunmix.signals.atomic_resolution import (
    AtomicResolutionImage,
    LazyAtomicResolutionImage,
)
from stemunmix.signals.column_probabilities import (
    ColumnProbabilities,
    LazyColumnProbabilities,
)
from stemunmix.signals.local_descriptors import LazyLocalDescriptors, LocalDescriptors

__all__ = [
    "AtomicResolutionImage",
    "LazyAtomicResolutionImage",
    "ColumnProbabilities",
    "LazyColumnProbabilities",
    "LocalDescriptors",
    "LazyLocalDescriptors",
]
