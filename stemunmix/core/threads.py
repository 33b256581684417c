"""How many threads a step's compiled code may use, and holding it to them.

numba and torch share one OpenMP runtime: a numba parallel loop sets the
calling thread's OpenMP thread count to numba's, and torch then runs with it.
In a dask worker process (one task per core already, torch started on one
thread) that made two threads per task, and two workers on two cores ran the
network slower. Every compiled step therefore runs inside
:func:`limited`.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager


def budget() -> int:
    """The threads one call may use: the cores this process may use in the
    main thread; inside any other thread (a dask worker, the threaded
    scheduler: one task per core already) ``OMP_NUM_THREADS`` (dask's nanny
    sets it, 1 by default) or 1."""
    if threading.current_thread() is not threading.main_thread():
        try:
            return max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))
        except ValueError:
            return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def limited():
    """numba's thread count held to :func:`budget` inside a worker thread
    (the main thread keeps the user's), and torch's count restored after the
    block, so a numba loop never changes it. torch's own count is left as it
    is: it changes float32 rounding, and the threaded scheduler gives results
    equal to eager's bit for bit (a dask worker process starts torch on
    OMP_NUM_THREADS)."""
    import numba

    torch = sys.modules.get("torch")
    # torch's first: numba's first get_num_threads starts its OpenMP pool,
    # which sets the count torch reads.
    old_torch = torch.get_num_threads() if torch is not None else None
    old_numba = numba.get_num_threads()
    if threading.current_thread() is not threading.main_thread():
        numba.set_num_threads(min(budget(), numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(old_numba)
        if torch is not None and torch.get_num_threads() != old_torch:
            torch.set_num_threads(old_torch)
