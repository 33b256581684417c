"""Tiled, resampled inference of a segmentation model on one image (numpy in/out)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from stemunmix.core import checks, engine, presence, threads
from stemunmix.core import segmentation as seg
from stemunmix.nn.model_io import training_spacing

MIN_SIZE = 32  # pixels, after resampling: about two unit cells


_PREPARED: dict = {}  # id(model) -> (weak reference, weight versions, prepared copy)


def for_inference(model):
    """:func:`prepare` once per model and state of its weights: a model
    segment() is called with again (the bundled one, every call) is not
    copied and folded again; one trained in between (its weights changed in
    place) is."""
    import weakref

    versions = tuple(p._version for p in model.parameters())
    versions += tuple(b._version for b in model.buffers())
    entry = _PREPARED.get(id(model))
    if entry is not None and entry[0]() is model and entry[1] == versions:
        return entry[2]
    prepared = prepare(model)
    for key in [k for k, e in _PREPARED.items() if e[0]() is None]:
        del _PREPARED[key]
    _PREPARED[id(model)] = (weakref.ref(model), versions, prepared)
    return prepared


def prepare(model):
    """A copy of ``model`` for inference: eval mode, every BatchNorm folded into
    the convolution before it (the same function, one pass less over each
    activation, no BatchNorm output held in memory), and weights in
    channels-last layout (oneDNN's fast convolutions on the CPU): faster, with
    the same probabilities to 1e-5 (tested). The
    caller's model is left as it is (it may still be trained)."""
    import copy

    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model).eval()
    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for first, second in zip(names, names[1:], strict=False):
            conv, norm = seq._modules[first], seq._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                seq._modules[first] = fuse_conv_bn_eval(conv, norm)
                seq._modules[second] = nn.Identity()
    return model.to(memory_format=torch.channels_last)


def halo_for(model) -> int:
    """Context on each side of a tile: half the receptive field, rounded up to 8."""
    return int(np.ceil(model.receptive_field() / 2 / 8) * 8)


def spacing_crop(shape, max_size: int = 512) -> tuple[slice, slice]:
    """The central crop of a frame that :func:`scale_factor` measures."""
    return seg.central(shape, max_size)


def scale_factor(
    image: np.ndarray,
    scale,
    training_spacing: float,
    spacing: float | None = None,
    frame=None,
) -> tuple:
    """(factor, column spacing in pixels, the spacing the image shows) of
    a frame.

    ``spacing`` given: the factor that brings it to ``training_spacing``; else
    the spacing is measured (:func:`stemunmix.core.segmentation.frame_spacing`
    on ``frame``, default ``image``: its central crop, tiles where that
    shows no lattice) and ``scale="auto"`` uses it, while a numeric
    ``scale`` implies the spacing ``training_spacing / scale`` (the frame is
    still checked for a lattice: :class:`NoLatticeError` without one). The
    spacing measured is the third value: where the lattice is looked for.
    """
    if spacing is not None:
        found, factor = float(spacing), training_spacing / float(spacing)
        return factor, found, found
    if not isinstance(scale, str):  # too small for the scale: said first
        check_size(image.shape, float(scale))
    crop = image[spacing_crop(image.shape)]
    shown = seg.frame_spacing(image if frame is None else frame, crop)
    if isinstance(scale, str):
        factor = training_spacing / shown
        factor = 1.0 if abs(factor - 1) < 0.03 else factor
        return factor, shown, shown
    # The scale sets the spacing; the frame must still show a lattice (a
    # noise image is refused as it is with scale="auto").
    return float(scale), training_spacing / float(scale), shown


def image_contrast(
    data, nav_ndim: int, contrast: str = "auto", spacing: float | None = None
) -> str:
    """``"bright"`` or ``"dark"`` columns, for the whole stack: with
    ``"auto"`` the sign of each frame's column/background asymmetry
    (:func:`stemunmix.core.segmentation.contrast_asymmetry`) on its central
    crop (at ``spacing``, else the one measured there), the only pixels read;
    frames that disagree are refused. A ``contrast`` given is used as it is,
    with a warning (the measured asymmetry named) where the image plainly
    shows the other one."""
    found = {}
    for small in _central_crops(data, nav_ndim):
        small = np.asarray(small, np.float64)
        if not np.all(np.isfinite(small)) or not np.ptp(small) > 0:
            continue  # plan_frames names what is wrong with it
        try:
            d = spacing if spacing is not None else seg.measure_spacing(small)
        except seg.NoLatticeError:  # plan_frames says what is wrong with it
            continue
        ratio = seg.contrast_asymmetry(small, d)
        found.setdefault("dark" if ratio < seg.DARK_ASYMMETRY else "bright", ratio)
    if contrast != "auto":
        _check_forced(contrast, found)
        return contrast
    if len(found) > 1:
        raise ValueError(
            "contrast='auto' finds bright columns in some frames and dark ones "
            "(ABF, BF) in others; segment them apart, or pass contrast='bright' "
            "or 'dark' for all"
        )
    return next(iter(found), "bright")


# A forced contrast the image plainly contradicts: bright-column images
# measure 1.8-3.6 (the real HAADF/ADF), dark ones 0.57 (the real ABF).
PLAINLY_BRIGHT = 1.25


def _check_forced(contrast: str, found: dict) -> None:
    ratio = found.get("dark" if contrast == "bright" else "bright")
    if ratio is None or (contrast == "dark" and ratio < PLAINLY_BRIGHT):
        return
    shows = "bright columns (HAADF, ADF)" if contrast == "dark" else "dark columns"
    checks.warn(
        f"contrast={contrast!r}, but the image shows {shows}: its column/"
        f"background asymmetry is {ratio:.2f} (bright columns measure above 1, "
        f"dark ones below {seg.DARK_ASYMMETRY}); the columns found may be the "
        "spaces between them: leave contrast='auto' unless you know better",
    )


def _central_crops(data, nav_ndim: int) -> list:
    crop = spacing_crop(data.shape[-2:])
    crops = [data[f][crop] for f in np.ndindex(data.shape[:nav_ndim])]
    if engine.is_lazy(data):
        import dask

        crops = list(dask.compute(*crops))
    return crops


def _axis_plan(c0, c1, n, factor, halo, multiple):
    """Along one axis, for output pixels [c0, c1) of a frame of n pixels: the
    resampled length, the resampled pixels [r0, r1) the output interpolates
    from, the network window [a0, a1) around them (a0 a multiple of
    ``multiple``), and the frame pixels [o0, o1) the window samples."""
    wn = n if factor == 1 else max(1, round(n * factor))
    if factor == 1:
        r0, r1 = c0, c1
    else:
        coords = np.clip(np.array([c0, c1 - 1]) * factor, 0, wn - 1)
        r0 = int(max(0, min(np.floor(coords[0]), wn - 2)))
        r1 = int(min(wn, np.floor(coords[1]) + 2))
    a0 = max(0, (r0 - halo) // multiple * multiple)
    a1 = min(wn, r1 + halo)
    if factor == 1:
        o0, o1 = a0, a1
    else:
        src = np.clip(np.array([a0, a1 - 1]) / factor, 0, n - 1)
        o0 = int(max(0, min(np.floor(src[0]), n - 2)))
        o1 = int(min(n, np.floor(src[1]) + 2))
    return wn, (r0, r1), (a0, a1), (o0, o1)


def block_plan(shape, box, factor, model):
    """Frame pixels (y0, y1, x0, x1) that output ``box`` of a frame needs."""
    halo, multiple = halo_for(model), model.multiple
    py = _axis_plan(box[0], box[1], shape[0], factor, halo, multiple)
    px = _axis_plan(box[2], box[3], shape[1], factor, halo, multiple)
    return py[3] + px[3]


@torch.no_grad()
def predict_block(
    model,
    region,
    origin,
    shape,
    box,
    factor,
    lo,
    hi,
    tile,
    batch_size,
    device,
    precision="float32",
) -> np.ndarray:
    """Class probabilities (C, y1 - y0, x1 - x0) of output ``box`` (y0, y1, x0,
    x1) of a frame of ``shape``, from ``region``: the frame's pixels
    :func:`block_plan` asks for, starting at ``origin`` (row, col).

    The result depends only on the frame and the box, not on how the frame is
    stored, so eager and lazy (any chunking) runs agree exactly.
    """
    halo, multiple = halo_for(model), model.multiple
    py = _axis_plan(box[0], box[1], shape[0], factor, halo, multiple)
    px = _axis_plan(box[2], box[3], shape[1], factor, halo, multiple)
    region = np.asarray(region, np.float32)
    lo, hi = float(lo), float(hi)  # Python floats keep the arithmetic in float32
    if factor == 1:
        work = region[
            py[2][0] - origin[0] : py[2][1] - origin[0],
            px[2][0] - origin[1] : px[2][1] - origin[1],
        ]
    else:
        rows = np.clip(np.arange(*py[2]) / factor, 0, shape[0] - 1) - origin[0]
        cols = np.clip(np.arange(*px[2]) / factor, 0, shape[1] - 1) - origin[1]
        work = seg._interp_axis(seg._interp_axis(region, rows, 0), cols, 1)
    probs = _run_network(model, work, lo, hi, tile, batch_size, device, precision)
    (r0, r1), (a0, _) = py[1], py[2]
    (s0, s1), (b0, _) = px[1], px[2]
    probs = probs[:, r0 - a0 : r1 - a0, s0 - b0 : s1 - b0]
    if factor == 1:
        return probs
    rows = np.clip(np.arange(box[0], box[1]) * factor, 0, py[0] - 1) - r0
    cols = np.clip(np.arange(box[2], box[3]) * factor, 0, px[0] - 1) - s0
    return seg._interp_axis(seg._interp_axis(probs, rows, 1), cols, 2)


def _run_network(
    model, work, lo, hi, tile, batch_size, device, precision="float32"
) -> np.ndarray:
    """Probabilities (C, h, w) of a resampled window, in overlapping tiles."""
    multiple = model.multiple
    # A block's window is ``tile`` plus its halo, plus up to a few pixels of
    # alignment and interpolation margin when resampled: the slack keeps it
    # one network call instead of two nearly equal ones.
    windows = seg.tile_windows(
        work.shape, tile + 2 * multiple, halo_for(model), multiple
    )
    out = np.empty((len(model.class_names),) + work.shape, np.float32)
    with threads.limited():
        _tiles(model, work, lo, hi, windows, batch_size, device, out, precision)
    return out


def _tiles(model, work, lo, hi, windows, batch_size, device, out, precision) -> None:
    multiple = model.multiple
    half = precision == "bfloat16"
    for start in range(0, len(windows), batch_size):
        group = windows[start : start + batch_size]
        patches = [
            (work[y0:y1, x0:x1] - lo) / (hi - lo) for (y0, y1, x0, x1), _ in group
        ]
        h, w = patches[0].shape
        ph, pw = -h % multiple, -w % multiple
        x = torch.from_numpy(np.stack(patches)[:, None]).to(device)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=half):
            logits = model(x)
        prob = torch.softmax(logits.float(), dim=1)[:, :, :h, :w].cpu().numpy()
        for p, ((y0, _, x0, _), (cy0, cy1, cx0, cx1)) in zip(prob, group, strict=True):
            out[:, cy0:cy1, cx0:cx1] = p[:, cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]


def check_size(shape, factor) -> None:
    work = (max(1, round(shape[0] * factor)), max(1, round(shape[1] * factor)))
    if min(work) < MIN_SIZE:
        raise ValueError(
            f"image of {tuple(shape)} pixels is {work} after resampling by "
            f"{factor:.3g}: too small (< {MIN_SIZE} pixels, about two unit cells); "
            "use a larger image or a larger scale"
        )


def block_size(tile: int, factor: float) -> int:
    """Image pixels per block side, so a block is about ``tile`` network pixels."""
    return max(64, int(round(tile / factor)))


def predict(
    model,
    image: np.ndarray,
    factor: float,
    tile: int,
    batch_size: int,
    device,
    out: np.ndarray | None = None,
    block: int | None = None,
) -> np.ndarray:
    """Class probabilities (C, H, W) float32 of one image on its own pixel grid,
    computed block by block (``block`` x ``block`` image pixels each, default
    :func:`block_size`) by the engine, written into ``out`` when given (no
    second copy of a large result)."""
    check_size(image.shape, factor)
    plan = FramePlan(
        factor=float(factor), spacing=None, range=seg.intensity_range(image)
    )
    step = network_step(model, {(): plan}, image.shape, tile, batch_size, device)
    block = block or block_size(tile, factor)
    return engine.run_image(step, image, (len(model.class_names),), block, 0, out=out)


_STORES = []  # temporary stores made by keep(), removed when Python exits


def keep(maps, block: int, store=None):
    """Compute lazy ``maps`` once, block by block, into a zarr store, and
    return them read back lazily from it (same values, same chunks of
    ``block`` pixels): every later pass over them (the column search, windows,
    each pass of a lazy NMF) reads the store instead of running the network.

    ``store``: a folder path (kept; on shared storage for a remote dask
    cluster) or None for a temporary folder removed when Python exits.
    """
    import atexit
    import shutil
    import tempfile
    import warnings

    import dask.array as da

    if store is None:
        store = tempfile.mkdtemp(prefix="stemunmix-maps-")
        if not _STORES:
            atexit.register(lambda: [shutil.rmtree(p, True) for p in _STORES])
        _STORES.append(store)
    chunks = maps.shape[:-2] + (block, block)
    regular = maps.rechunk(
        tuple(min(c, n) for c, n in zip(chunks, maps.shape, strict=True))
    )
    with warnings.catch_warnings():
        # zarr 2's FutureWarning about a store it deprecates: not ours to act on.
        warnings.filterwarnings("ignore", category=FutureWarning)
        regular.to_zarr(str(store), component="maps", overwrite=True)
        kept = da.from_zarr(str(store), component="maps")
    engine.release_memory()
    return kept.rechunk(maps.chunks)


@dataclass(frozen=True)
class FramePlan:
    """What the network needs to know of one frame before it runs."""

    factor: float  # resampling factor to the training spacing
    spacing: float | None  # column spacing, pixels (measured or given)
    range: tuple[float, float]  # intensity mapped to 0 and 1 (reversed: dark)
    presence: np.ndarray | None = None  # where the lattice is, on bins of
    bin: int = 1  # this many pixels (core.presence.frame_presence), at the
    shown: float | None = None  # spacing the frame shows (pixels)
    pad: float | None = None  # the value of padding (segmentation.padding)
    fill: float | None = None  # what the network reads there instead


def plan_frames(
    data, nav_ndim, scale, training_spacing, spacing=None, contrast="bright"
) -> dict:
    """A :class:`FramePlan` per frame of ``data`` (numpy or dask), from its
    central crop (spacing) and a regular subsample (intensity range, finite
    pixels); only those small pieces are read (computed, for dask). With
    ``contrast="dark"`` the range is reversed: the network sees the frame
    inverted, dark columns bright (``"auto"`` is resolved first, by
    :func:`image_contrast`)."""
    shape = data.shape[-2:]
    step = max(1, int(np.ceil(np.sqrt(shape[0] * shape[1] / 4_000_000))))
    crop = spacing_crop(shape)
    frames = list(np.ndindex(data.shape[:nav_ndim]))
    pieces = [(data[f][crop], data[f][::step, ::step]) for f in frames]
    if engine.is_lazy(data):
        import dask

        pieces = dask.compute(*pieces)
    plans, dark = {}, contrast == "dark"
    if contrast == "auto":
        raise ValueError("plan_frames: resolve contrast='auto' with image_contrast")
    found = {}
    for f, (small, sample) in zip(frames, pieces, strict=True):
        seg.check_finite(np.asarray(sample))
        found[f] = scale_factor(
            np.asarray(small), scale, training_spacing, spacing, data[f]
        )
        check_size(shape, found[f][0])
    masks, bins = presence.frame_presence(
        data, nav_ndim, {f: v[2] for f, v in found.items()}
    )
    for f, (_, sample) in zip(frames, pieces, strict=True):
        # The intensity range of the crystal, not of the vacuum or support
        # around it (a small particle would be scaled as noise).
        rows, cols = (np.arange(n) * step for n in sample.shape)
        on = presence.on_grid(masks[f], bins[f], rows, cols)
        sample = np.asarray(sample)
        pad, fill, real = _padding_of(sample, dark)
        on &= real
        lo, hi = seg.intensity_range(sample[on][None] if on.sum() > 100 else sample)
        span = (hi, lo) if dark else (lo, hi)
        factor, spacing, shown = found[f]
        plans[f] = FramePlan(
            float(factor), spacing, span, masks[f], bins[f], shown, pad, fill
        )
    return plans


def _padding_of(sample: np.ndarray, dark: bool) -> tuple:
    """(padding value or None, the level the network reads there, (h, w)
    bool: the pixels of ``sample`` that are no padding). The level is the
    background of the rest: its :data:`~stemunmix.core.segmentation.FILL_QUANTILE`
    percentile (from the top, for dark columns)."""
    pad = seg.padding(sample)
    if not pad.any() or pad.all():
        return None, None, np.ones(sample.shape, bool)
    q = 100 - seg.FILL_QUANTILE if dark else seg.FILL_QUANTILE
    fill = float(np.percentile(sample[~pad], q))
    return float(sample.min()), fill, ~pad


def network_step(
    model, plans, shape, tile, batch_size, device, precision="float32"
) -> engine.Step:
    """The network as an engine step: each block reads the frame pixels
    :func:`block_plan` asks for at its frame's factor."""

    def region_of(frame, box):
        return block_plan(shape, box, plans[frame].factor, model)

    def run(region, frame, box, origin):
        seg.check_finite(region)  # a lazy frame is read here for the first time
        p = plans[frame]
        if p.pad is not None:
            region = np.array(region, np.float32)
            region[seg.padding(region, p.pad)] = p.fill
        return predict_block(
            model,
            region,
            origin,
            shape,
            box,
            p.factor,
            *p.range,
            tile,
            batch_size,
            device,
            precision,
        )

    # trim=False: a block's network buffers (0.5 GB) are reused by the next
    # one; returning them slows a worker's blocks down.
    return engine.Step(run, region_of=region_of, trim=False)


@dataclass(frozen=True)
class Settings:
    """How maps are made, parsed once per ``segment`` call: the resampling
    (``scale`` "auto" or a factor; ``spacing`` in pixels or None, measured),
    the contrast used ("bright" or "dark"), the tiles, the device, the
    lattice prior, whether the result is lazy (computed into ``store``), and
    the structure used (it decides the classes, after the network), and
    the network's arithmetic (``precision``: "float32", or "bfloat16"
    where the device computes it natively)."""

    scale: str | float = "auto"
    spacing: float | None = None
    contrast: str = "bright"
    tile: int = 1024
    batch_size: int = 1
    device: object = "cpu"
    lattice_prior: float = 0.0
    lazy: bool = False
    store: str | None = None
    structure: str = "perovskite"
    precision: str = "float32"


def segment(data, model, nav_ndim: int, settings: Settings, progress=None):
    """Probability maps (nav..., C, H, W) of ``data`` (nav..., H, W), numpy or
    dask (``settings.lazy``: a dask result either way), named with the lattice
    (:func:`stemunmix.core.lattice.name_by_lattice`) when the lattice prior
    is above 0. Lazy maps are computed once into a zarr ``settings.store``
    (:func:`keep`) and read from there, so later passes never run the network
    again.

    Returns (maps, plans per frame, block side, lattice vectors or None).
    """
    from stemunmix.core import lattice

    o = settings
    training = training_spacing(model)
    plans = plan_frames(data, nav_ndim, o.scale, training, o.spacing, o.contrast)
    block = block_size(o.tile, max(p.factor for p in plans.values()))
    if o.lazy and not engine.is_lazy(data):
        import dask.array as da

        data = da.from_array(data, chunks=(1,) * nav_ndim + (-1, -1))
    step = network_step(
        model, plans, data.shape[-2:], o.tile, o.batch_size, o.device, o.precision
    )
    names = list(model.class_names)
    maps = engine.run_image(
        step, data, (len(names),), block, nav_ndim, progress=progress
    )
    if engine.is_lazy(maps):
        maps = keep(maps, block, o.store)
    vectors = None
    if o.lattice_prior > 0 and len(names) >= 3:
        spacings = {
            f: p.spacing if p.spacing is not None else training / p.factor
            for f, p in plans.items()
        }
        maps, vectors = lattice.name_by_lattice(
            maps, names, spacings, float(o.lattice_prior), block
        )
    return maps, plans, block, vectors


def check_precision(precision: str, device) -> None:
    """ValueError where ``precision`` is not one segment() knows, or is
    "bfloat16" on a CPU without native bfloat16 (AVX512-BF16 or AMX), where
    it would be slower, not faster."""
    from stemunmix.core import checks

    checks.one_of("precision", precision, ("float32", "bfloat16"))
    if precision == "bfloat16" and torch.device(device).type == "cpu":
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            raise ValueError(
                "precision='bfloat16' needs a CPU with native bfloat16 (AVX512-BF16 "
                "or AMX), which this one lacks: use precision='float32'"
            )


def auto_structure(
    maps, names, data, nav_ndim: int, plans, training: float, device="cpu"
) -> tuple:
    """(structure, evidence) of the first frame, from the perovskite network's
    ``maps`` (class ``names``) and the raw ``data`` on its central crop
    (:func:`spacing_crop`; :mod:`stemunmix.core.structure`), at the frame's
    spacing (its plan's, else ``training`` over its factor), judged on the
    columns where the lattice-presence mask shows the crystal: "perovskite"
    unless :func:`stemunmix.core.structure.is_perovskite` says otherwise (B
    in the valleys, as bright as A, not alternating with it, hexagonal
    bonds), else what the one-species network's columns there show; where
    fewer than half the B columns are peaks, that network runs too, and its
    columns in pairs make dumbbells. ``evidence``: the figures that
    decided, flat (name: number)."""
    from stemunmix.core import structure as st
    from stemunmix.nn.model_io import check_model

    frame = (0,) * nav_ndim
    crop = spacing_crop(data.shape[-2:])
    raw, m = data[frame][crop], maps[frame][(slice(None),) + crop]
    if engine.is_lazy((raw, m)):
        import dask

        raw, m = dask.compute(raw, m)
    raw, m = np.asarray(raw, np.float64), np.asarray(m)
    plan = plans[frame]
    d = plan.spacing if plan.spacing is not None else training / plan.factor
    # judged where the crystal is: not on the vacuum or support of the crop
    on = _on_crystal(plan, crop)
    columns = _crop_columns(m, names, 0.25 * d, on)
    evidence = st.perovskite_evidence(raw, *columns)
    perovskite = st.is_perovskite(evidence)
    if perovskite and not st.may_be_pairs(evidence):
        return "perovskite", evidence
    model = check_model("one_species")
    ready = for_inference(model).to(device)
    one_maps = predict(ready, raw, training_spacing(model) / d, 1024, 1, device)
    one = st.one_species_evidence(
        raw, _crop_columns(one_maps, list(model.class_names), 0.25 * d, on)[0]
    )
    evidence |= {f"one_species_{k}": v for k, v in one.items()}
    if perovskite:  # only dumbbells' pairs overrule a perovskite's B columns
        return ("dumbbell" if st.pairs(one) else "perovskite"), evidence
    return st.other_structure(evidence, one), evidence


def _on_crystal(plan, crop):
    """A function of crop positions [x, y]: whether they fall where the
    frame's lattice-presence mask (``plan``) shows the crystal."""
    origin = np.array([crop[1].start, crop[0].start], float)
    if plan.presence is None:
        return lambda xy: np.ones(len(xy), bool)
    return lambda xy: presence.on_mask(xy + origin, plan.presence, plan.bin)


def _crop_columns(maps, names, min_distance, on=None) -> tuple:
    """(xy, labels, names): the columns of every column class of ``maps``
    (:func:`stemunmix.core.find.find_columns_frame`, centroids only), only
    those ``on`` (a function of positions) keeps where given."""
    from stemunmix.core.find import find_columns_frame

    classes = [k for k, name in enumerate(names) if name != "background"]
    xy, labels, _ = find_columns_frame(
        maps, classes, max(1.0, min_distance), 0.5, None, "centroid"
    )
    if on is not None and len(xy):
        keep = on(xy)
        xy, labels = xy[keep], labels[keep]
    return xy, labels, names
