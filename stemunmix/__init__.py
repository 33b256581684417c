"""stemunmix: learn the structural building blocks of a crystal from STEM images.

A HyperSpy extension. Importing this package is cheap: torch, HyperSpy and Atomap
are imported only by the functions that need them.
"""

__version__ = "0.1.0"

from stemunmix.columns import Columns

__all__ = [
    "__version__",
    "Columns",
    "AtomicResolutionImage",
    "LazyAtomicResolutionImage",
    "ColumnProbabilities",
    "LazyColumnProbabilities",
    "LocalDescriptors",
    "LazyLocalDescriptors",
    "load_model",
    "train",
]

_LAZY = {
    "AtomicResolutionImage": "stemunmix.signals.atomic_resolution",
    "LazyAtomicResolutionImage": "stemunmix.signals.atomic_resolution",
    "ColumnProbabilities": "stemunmix.signals.column_probabilities",
    "LazyColumnProbabilities": "stemunmix.signals.column_probabilities",
    "LocalDescriptors": "stemunmix.signals.local_descriptors",
    "LazyLocalDescriptors": "stemunmix.signals.local_descriptors",
    "load_model": "stemunmix.nn.model_io",
    "train": "stemunmix.nn.training",
}


def __getattr__(name):
    # PEP 562: keep `import stemunmix` (which HyperSpy triggers) free of torch.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'stemunmix' has no attribute {name!r}")
