"""A seeded subsample of the rows of a numpy or dask array."""

from __future__ import annotations

import numpy as np


def is_dask(x) -> bool:
    return type(x).__module__.startswith("dask")


def subsample(x, max_samples: int | None, random_state) -> np.ndarray:
    """At most ``max_samples`` rows (sorted seeded choice), as numpy."""
    n = x.shape[0]
    if max_samples is None or n <= max_samples:
        return np.asarray(x.compute() if is_dask(x) else x)
    rng = np.random.default_rng(random_state)
    rows = np.sort(rng.choice(n, max_samples, replace=False))
    return np.asarray(x[rows].compute() if is_dask(x) else x[rows])


def check_2d(x, name="X"):
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2D (samples, features), got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} has no samples")
    return x
