"""A seeded subsample of the rows of a numpy or dask array."""

from __future__ import annotations

import numpy as np

from stemunmix.core.engine import is_lazy


def is_dask(x) -> bool:
    """Whether ``x`` (numpy or dask, as ``check_2d`` leaves it) is lazy: the
    engine's one test (:func:`stemunmix.core.engine.is_lazy`)."""
    return is_lazy(x)


def subsample(x, max_samples: int | None, random_state) -> np.ndarray:
    """At most ``max_samples`` rows (sorted seeded choice), as numpy."""
    n = x.shape[0]
    if max_samples is None or n <= max_samples:
        return np.asarray(x.compute() if is_dask(x) else x)
    rng = np.random.default_rng(random_state)
    rows = np.sort(rng.choice(n, max_samples, replace=False))
    return _take_rows(x, rows) if is_dask(x) else np.asarray(x[rows])


def _take_rows(x, rows, batch_bytes: float = 64e6) -> np.ndarray:
    """Rows ``rows`` (sorted) of a dask array, filled into one numpy array a
    few row chunks at a time. ``x[rows].compute()`` joins the rows of every
    chunk in one task, which a dask.distributed worker then holds twice and
    sends whole: the 0.3 GB presample of the 16384^2 windows took one worker
    to 1.36 GB (0.7 GB without)."""
    import dask

    x = x.rechunk({i: -1 for i in range(1, x.ndim)})
    bounds = np.cumsum((0,) + x.chunks[0])
    out = np.empty((len(rows),) + x.shape[1:], x.dtype)
    per_row = x.dtype.itemsize * int(np.prod(x.shape[1:], dtype=np.int64))
    cut = np.searchsorted(rows, bounds)  # rows[cut[b]:cut[b + 1]] lie in chunk b
    pieces, size, done = [], 0, 0
    for b, block in enumerate(x.to_delayed().ravel()):
        mine = rows[cut[b] : cut[b + 1]] - bounds[b]
        if len(mine):
            pieces.append(block[mine])
            size += len(mine) * per_row
        if pieces and (size >= batch_bytes or b == len(bounds) - 2):
            for piece in dask.compute(*pieces):
                out[done : done + len(piece)] = piece
                done += len(piece)
            pieces, size = [], 0
    return out


def check_2d(x, name="X", finite: bool = True):
    """``x`` as (samples, features): a dask array checked by its shape (its
    values are read later, chunk by chunk), anything else through
    scikit-learn's ``check_array`` (numeric, 2D, dense, at least one sample
    and feature; finite unless ``finite=False``), so the messages are
    scikit-learn's own."""
    if is_dask(x):
        if x.ndim != 2:
            raise ValueError(
                f"{name} must be 2D (samples, features), got shape {x.shape}; "
                "Reshape your data"
            )
        if x.shape[0] == 0:
            raise ValueError(f"{name} has no samples")
        return x
    from sklearn.utils.validation import check_array

    return check_array(
        x, accept_sparse=False, dtype="numeric", ensure_all_finite=finite,
        input_name=name,
    )  # fmt: skip
