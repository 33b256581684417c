"""Tiled, resampled inference of a segmentation model on one image (numpy in/out)."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from stemunmix.core import segmentation as seg

MIN_SIZE = 32  # pixels, after resampling: about two unit cells


def halo_for(model) -> int:
    """Context on each side of a tile: half the receptive field, rounded up to 8."""
    return int(np.ceil(model.receptive_field() / 2 / 8) * 8)


def spacing_crop(shape, max_size: int = 512) -> tuple[slice, slice]:
    """The central crop of a frame that :func:`scale_factor` measures."""
    h, w = shape
    top, left = max(0, (h - max_size) // 2), max(0, (w - max_size) // 2)
    return slice(top, top + max_size), slice(left, left + max_size)


def scale_factor(image: np.ndarray, scale, training_spacing: float) -> tuple:
    """(factor, measured spacing or None) for ``scale="auto"`` or a number."""
    if isinstance(scale, str):
        spacing = seg.measure_spacing(image[spacing_crop(image.shape)])
        factor = training_spacing / spacing
        return (1.0 if abs(factor - 1) < 0.03 else factor), spacing
    return float(scale), None


@torch.no_grad()
def predict(
    model, image: np.ndarray, factor: float, tile: int, batch_size: int, device
) -> np.ndarray:
    """Class probabilities (C, H, W) float32 of one image on its own pixel grid."""
    shape = image.shape
    lo, hi = seg.intensity_range(image)
    work = seg.resample(image, factor)
    if min(work.shape) < MIN_SIZE:
        raise ValueError(
            f"image of {shape} pixels is {work.shape} after resampling by "
            f"{factor:.3g}: too small (< {MIN_SIZE} pixels, about two unit cells); "
            "use a larger image or a larger scale"
        )
    multiple = model.multiple
    windows = seg.tile_windows(work.shape, tile, halo_for(model), multiple)
    out = np.empty((len(model.class_names),) + work.shape, np.float32)
    for start in range(0, len(windows), batch_size):
        group = windows[start : start + batch_size]
        patches = [
            (np.asarray(work[y0:y1, x0:x1], np.float32) - lo) / (hi - lo)
            for (y0, y1, x0, x1), _ in group
        ]
        h, w = patches[0].shape
        ph, pw = -h % multiple, -w % multiple
        x = torch.from_numpy(np.stack(patches)[:, None]).to(device)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        prob = torch.softmax(model(x), dim=1)[:, :, :h, :w].float().cpu().numpy()
        for p, ((y0, _, x0, _), (cy0, cy1, cx0, cx1)) in zip(prob, group, strict=True):
            out[:, cy0:cy1, cx0:cx1] = p[:, cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    return seg.resample_back(out, factor, shape)
