"""The one blockwise executor every step of stemunmix runs on (numpy and dask).

A *step* is a plain function of a region of one frame (its block plus the halo
the step declares) that returns the block's result::

    fn(region, frame, box, origin) -> result

``region`` is ``data[frame][..., ry0:ry1, rx0:rx1]`` as a numpy array (the
leading axes of a frame, e.g. the class axis of probability maps, come whole),
``frame`` the numpy index of the frame in the navigation shape, ``box`` the
block (y0, y1, x0, x1) in frame pixels and ``origin`` the region's first pixel
(ry0, rx0). Where the region comes from is the step's ``region_of(frame, box)``
(by default the box grown by a halo and clipped to the frame).

:func:`run_image` stitches image-shaped block results into maps; :func:`run_items`
returns one result per block (columns, windows). Over numpy input both run in
process (optionally on threads) and write into a preallocated result; over dask
input they build the dask graph, one task per block. The result of a block
depends only on the frame and the box, never on how the data is stored or
chunked, so eager and lazy runs are equal by construction: one code path over
two kinds of array.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from stemunmix.core.blocks import block_bounds


@dataclass(frozen=True)
class Step:
    """A blockwise step: ``fn`` and the region each block reads.

    ``halo``: pixels read around a block on every side (clipped to the frame),
    unless ``region_of(frame, box)`` gives the region (y0, y1, x0, x1) itself.
    ``trim``: on a dask.distributed worker, hand the memory a block freed
    back to the system when it ends (many small buffers; off for a step that
    reuses a few large ones block after block, as the network does, which
    would fault them in again).
    """

    fn: Callable
    halo: int = 0
    region_of: Callable | None = None
    trim: bool = True

    def region(self, frame, box, shape) -> tuple[int, int, int, int]:
        if self.region_of is not None:
            return tuple(int(v) for v in self.region_of(frame, box))
        h, w = shape
        y0, y1, x0, x1 = box
        m = int(self.halo)
        return max(0, y0 - m), min(h, y1 + m), max(0, x0 - m), min(w, x1 + m)


def is_lazy(data) -> bool:
    """Whether ``data`` (an array, or a tuple of arrays read together) holds
    a dask array: the one test of laziness every step uses."""
    if isinstance(data, (tuple, list)):
        return any(is_lazy(d) for d in data)
    return type(data).__module__.partition(".")[0] == "dask"


def fingerprint(data) -> str | None:
    """A short digest of an in-memory array's contents (CRC-32 of its bytes,
    about 4 GB/s), so maps made from it can tell that the data changed in
    place; None for a lazy array, whose contents would have to be computed."""
    import zlib

    if is_lazy(data):
        return None
    data = np.ascontiguousarray(data)
    crc = zlib.crc32(memoryview(data).cast("B"))
    return f"{crc:08x}-{data.dtype.str}-{'x'.join(map(str, data.shape))}"


def _first(data):
    return data[0] if isinstance(data, (tuple, list)) else data


def _cut(data, frame, ry0, ry1, rx0, rx1):
    if isinstance(data, (tuple, list)):
        return tuple(_cut(d, frame, ry0, ry1, rx0, rx1) for d in data)
    return None if data is None else data[frame][..., ry0:ry1, rx0:rx1]


def _numpy(region):
    if isinstance(region, tuple):
        return tuple(_numpy(r) for r in region)
    return None if region is None else np.asarray(region)


def _whole(region):
    """A lazy region as one chunk (one task reads it)."""
    if isinstance(region, tuple):
        return tuple(_whole(r) for r in region)
    return region.rechunk(-1) if is_lazy(region) else region


def boxes(shape, block: int) -> list[tuple[int, int, int, int]]:
    """The blocks (y0, y1, x0, x1) that tile a frame of ``shape`` (H, W)."""
    return [
        (y0, y1, x0, x1)
        for y0, y1 in block_bounds(shape[0], block)
        for x0, x1 in block_bounds(shape[1], block)
    ]


def _regions(step, data, frame, box_list):
    """(box, origin, region) of each block of one frame (region lazy or numpy)."""
    out = []
    for box in box_list:
        if data is None:  # a data-free step: it draws from its own inputs
            out.append((box, (box[0], box[2]), None))
            continue
        ry0, ry1, rx0, rx1 = step.region(frame, box, _first(data).shape[-2:])
        out.append((box, (ry0, rx0), _cut(data, frame, ry0, ry1, rx0, rx1)))
    return out


def run_image(
    step: Step,
    data,
    lead: tuple[int, ...],
    block: int,
    nav_ndim: int,
    shape=None,
    lazy: bool | None = None,
    dtype=np.float32,
    out: np.ndarray | None = None,
    threads: int = 1,
    progress=None,
):
    """Image-valued ``step`` over every block of every frame.

    ``data``: (nav..., inner..., H, W) numpy or dask (``nav_ndim`` navigation
    axes); or None for a step that draws from inputs of its own, with
    ``shape`` = (nav..., H, W) and ``lazy`` saying which kind of array to make.
    Each block's result has shape ``lead + (y1 - y0, x1 - x0)``. Returns numpy
    (into ``out`` when given) for numpy input, a dask array for dask input:
    (nav..., lead..., H, W).
    """
    if data is not None:
        shape = _first(data).shape[:nav_ndim] + _first(data).shape[-2:]
        lazy = is_lazy(data)
    nav_shape, frame_shape = tuple(shape[:-2]), tuple(shape[-2:])
    box_list = boxes(frame_shape, block)
    if lazy:
        return _image_graph(step, data, lead, nav_shape, frame_shape, box_list, dtype)
    if out is not None and out is data:
        _in_place(step, data, nav_shape, frame_shape, box_list, progress)
        return data
    if out is None:
        out = np.empty(nav_shape + tuple(lead) + frame_shape, dtype)

    def one(job):
        frame, box, origin, region = job
        y0, y1, x0, x1 = box
        out[frame][..., y0:y1, x0:x1] = step.fn(_numpy(region), frame, box, origin)

    jobs = [
        (frame,) + r
        for frame in np.ndindex(nav_shape)
        for r in _regions(step, data, frame, box_list)
    ]
    _run(one, jobs, threads, progress)
    return out


def _in_place(step, data, nav_shape, frame_shape, box_list, progress):
    """``run_image`` writing its result over its input (same shape), band of
    blocks by band: each band's original rows, and the halo rows above it as
    they were before the band above was written, are kept aside, so every
    block reads the input it would read from a copy. Memory: one band."""
    if step.region_of is not None:
        raise ValueError("an in-place run needs a step with a plain halo")
    m = int(step.halo)
    h = frame_shape[0]
    bands = sorted({(b[0], b[1]) for b in box_list})
    if progress is not None:
        progress.reset(total=len(box_list) * int(np.prod(nav_shape)))
    for frame in np.ndindex(nav_shape):
        maps = data[frame]
        above = None  # original rows [y0 - m, y0) of the band being written
        for y0, y1 in bands:
            lo, hi = max(0, y0 - m), min(h, y1 + m)
            band = np.array(maps[..., lo:hi, :])
            if above is not None:
                band[..., : y0 - lo, :] = above
            above = band[..., max(0, y1 - m) - lo : y1 - lo, :].copy()
            for box in (b for b in box_list if (b[0], b[1]) == (y0, y1)):
                ry0, ry1, rx0, rx1 = step.region(frame, box, frame_shape)
                region = band[..., ry0 - lo : ry1 - lo, rx0:rx1]
                maps[..., y0:y1, box[2] : box[3]] = step.fn(
                    region, frame, box, (ry0, rx0)
                )
                if progress is not None:
                    progress.update(1)


def _image_graph(step, data, lead, nav_shape, frame_shape, box_list, dtype):
    import dask.array as da

    fn = _delayed_step(step)
    ys = sorted({(b[0], b[1]) for b in box_list})
    xs = sorted({(b[2], b[3]) for b in box_list})
    frames = []
    for frame in np.ndindex(nav_shape):
        parts = {}
        for box, origin, region in _regions(step, data, frame, box_list):
            y0, y1, x0, x1 = box
            region = _whole(region)
            parts[box] = da.from_delayed(
                fn(region, frame, box, origin), tuple(lead) + (y1 - y0, x1 - x0), dtype
            )
        # Leading axes are whole in every block: block joins the last two.
        frames.append(da.block([[parts[y + x] for x in xs] for y in ys]))
    if not nav_shape:
        return frames[0]
    return da.stack(frames).reshape(nav_shape + tuple(lead) + frame_shape)


def run_items(
    step: Step,
    data,
    nav_ndim: int,
    blocks_of,
    compute: bool = True,
    threads: int = 1,
    progress=None,
    shape=None,
) -> list:
    """One result per block: ``blocks_of(frame)`` lists the boxes of a frame.

    Returns [(frame, box, result)] in frame then box order. Over dask input the
    block tasks run in one ``dask.compute`` (``compute=True``; each input block
    computed once) or come back as ``dask.delayed`` results.
    """
    if data is not None:
        shape = _first(data).shape[:nav_ndim] + _first(data).shape[-2:]
    nav_shape = tuple(shape[:-2])
    jobs = [
        (frame,) + r
        for frame in np.ndindex(nav_shape)
        for r in _regions(step, data, frame, blocks_of(frame))
    ]
    if not is_lazy(data):
        results = [None] * len(jobs)

        def one(i):
            frame, box, origin, region = jobs[i]
            results[i] = step.fn(_numpy(region), frame, box, origin)

        _run(one, range(len(jobs)), threads, progress)
        return [(j[0], j[1], r) for j, r in zip(jobs, results, strict=True)]
    import dask

    fn = _delayed_step(step)
    tasks = [
        fn(_whole(region), frame, box, origin) for frame, box, origin, region in jobs
    ]
    if compute:
        tasks = dask.compute(*tasks)
        release_memory()
    return [(j[0], j[1], t) for j, t in zip(jobs, tasks, strict=True)]


def release_memory() -> None:
    """Hand memory a step has freed back to the system: glibc's
    ``malloc_trim(0)`` here and, where a dask.distributed client is active,
    on every worker (dask's own remedy for unmanaged memory). glibc keeps
    freed memory for reuse, and a worker idle between steps would hold it
    while the client works (1.37 M columns, or the NMF's presample of the
    windows, at 16384^2). A no-op elsewhere, and cheap: the lazy steps call it when
    their results are in."""
    _malloc_trim()
    try:
        from distributed import get_client

        client = get_client()
    except (ImportError, ValueError):  # no distributed, or no client
        return
    client.run(_malloc_trim)


def _malloc_trim() -> int:
    import ctypes
    import ctypes.util

    try:
        return int(
            ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
        )
    except (OSError, AttributeError):  # not glibc
        return 0


def _call(fn, *args):
    return fn(*args)


def _call_trim(fn, *args):
    out = fn(*args)
    if _in_worker():
        # A worker runs block after block: without this, the memory freed by
        # each stays with the process (1.7 GB a worker at 16384^2 in the column
        # search, whose blocks need 0.1 GB each).
        _malloc_trim()
    return out


def _in_worker() -> bool:
    """Running inside a dask.distributed worker's task."""
    import sys

    if "distributed" not in sys.modules:
        return False
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return False
    return True


def _delayed_step(step: Step):
    """``step.fn`` for a dask graph: the function (with what it closes over:
    a model, the columns of every block) is one key of the graph, which each
    worker receives once, and every block task calls it. Embedded in each
    task instead, a distributed scheduler pickled it once per task: 256
    copies of 1.4 million columns for the windows of a 16384^2 image."""
    import dask

    fn = dask.delayed(step.fn, pure=True, traverse=False)
    call = dask.delayed(_call_trim if step.trim else _call, pure=True)
    return lambda *args: call(fn, *args)


def _run(one, jobs, threads, progress):
    jobs = list(jobs)
    if progress is not None:
        progress.reset(total=len(jobs))
    if threads <= 1 or len(jobs) < 2:
        for job in jobs:
            one(job)
            if progress is not None:
                progress.update(1)
        return
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(one, jobs):
            if progress is not None:
                progress.update(1)
